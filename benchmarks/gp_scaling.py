"""How GP inpainting scales with image size: dense against the grid solver (FFT operators + CG).

Task: 50% Bernoulli inpainting (mask seed 0) of a centre crop of ``boat.png`` from the paper's
inpainting set (``../shared/data/inpainting/``) at 64, 128, 256 and 512 pixel squares, with the GP
experiment's RBF hyper-parameters (output scale 0.0307, length 1.957 px, constant mean 0.474) at
noise variance 0.0045 (the paper's fit) and 1e-4. Rows, each in a fresh process (so that its peak
resident memory is its own; TensorFlow alone takes the "baseline" row's memory):

- ``dense``: ``gp_restore(solver="dense")`` (exact mean and std; 64x64 only, its limit);
- ``grid mean``: the posterior mean by CG (tolerance 1e-4), float64; with ``--float32`` also float32;
- ``grid mean, circulant preconditioner``: the same solve preconditioned with
  :class:`tfdip.gp.grid.CirculantPreconditioner` (kept out of the library's default unless it pays);
- ``grid std``: mean and a 64-sample std map;
- ``grid fit``: the RBF hyper-parameters fitted (amplitude, length, noise, mean) then the mean.

Seconds are wall time inside the process (including the first tracing of the compiled CG chunk).
The machine is shared: the load average is recorded per row; compare rows as ratios.
Writes ``benchmarks/results/gp_scaling.json`` and ``.md`` after every row.

Usage::

    python benchmarks/gp_scaling.py                  # every row (about 15 minutes here)
    python benchmarks/gp_scaling.py --sizes 64 128   # a subset
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = next((root / "shared" / "data" / "inpainting" for root in (HERE.parent.parent, HERE.parents[2])
             if (root / "shared" / "data").is_dir()), HERE.parent.parent / "shared" / "data")
PAPER_RBF = {"amplitude": float(np.sqrt(0.0307)), "length_scale": 1.957, "mean": 0.474}
NOISE_LEVELS = (0.0045, 1e-4)
SAMPLES = 64


def crop(size: int):
    from PIL import Image

    image = np.asarray(Image.open(DATA / "boat.png").convert("L"), np.float64) / 255.0
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    clean = image[top: top + size, left: left + size]
    known = np.random.default_rng(0).random(clean.shape) < 0.5
    return clean, known


def run_task(task: dict) -> dict:
    """One measurement (in this process): returns its numbers."""
    import tensorflow as tf

    from tfdip.gp import GPPrior, gp_restore, pixel_data
    from tfdip.gp.cg import conjugate_gradients
    from tfdip.gp.grid import CirculantPreconditioner
    from tfdip.gp.grid_posterior import grid_operator
    from tfdip.metrics import psnr

    if task["kind"] == "baseline":
        tf.constant(1.0)
        return {}
    clean, known = crop(task["size"])
    observation = clean * known
    values = {**PAPER_RBF, "noise_variance": task.get("noise_variance", 0.0045)}
    start = time.perf_counter()
    if task["kind"] == "preconditioner":
        data = pixel_data(observation, known, max_pixels=None)
        prior = GPPrior("rbf", values)
        operator = grid_operator(prior, data)
        rhs = data.observed_values - values["mean"]
        plain_start = time.perf_counter()
        plain = conjugate_gradients(operator, rhs)
        plain_seconds = time.perf_counter() - plain_start
        pre_start = time.perf_counter()
        pre = conjugate_gradients(operator, rhs, preconditioner=CirculantPreconditioner(operator))
        pre_seconds = time.perf_counter() - pre_start
        return {"seconds": plain_seconds, "cg_iterations": int(plain.iterations[0]),
                "cg_residual": float(plain.residual[0]),
                "preconditioned_seconds": pre_seconds,
                "preconditioned_iterations": int(pre.iterations[0]),
                "preconditioned_residual": float(pre.residual[0])}
    options = {"kernel": "rbf", "hyperparameters": values, "fit": False}
    if task["kind"] == "dense":
        result = gp_restore(observation, known, solver="dense", **options)
    elif task["kind"] == "fit":
        result = gp_restore(observation, known, solver="grid", samples=0, kernel="rbf")
    else:
        result = gp_restore(observation, known, solver="grid",
                            samples=SAMPLES if task["kind"] == "std" else 0, **options)
    seconds = time.perf_counter() - start
    row = {"seconds": seconds, "seconds_fit": result.seconds_fit,
           "seconds_mean": result.seconds_mean, "seconds_std": result.seconds_std,
           "cg_iterations": result.cg_iterations, "cg_residual": result.cg_residual,
           "samples": result.samples, "std_relative_error": result.std_relative_error,
           "psnr": psnr(result.mean, clean), "hyperparameters": result.hyperparameters,
           "notes": result.notes}
    if result.std is not None:
        row["std_missing_mean"] = float(result.std[~known].mean())
    if result.fit is not None:
        row["fit"] = {"iterations": result.fit.iterations, "converged": result.fit.converged,
                      "log_marginal_likelihood": result.fit.log_marginal_likelihood}
    return row


def tasks(sizes):
    yield {"kind": "baseline", "size": 0}
    for size in sizes:
        if size <= 64:
            for noise in NOISE_LEVELS:
                yield {"kind": "dense", "size": size, "noise_variance": noise}
        for noise in NOISE_LEVELS:
            yield {"kind": "mean", "size": size, "noise_variance": noise}
        if size >= 256:
            for noise in NOISE_LEVELS:
                yield {"kind": "preconditioner", "size": size, "noise_variance": noise}
        yield {"kind": "std", "size": size, "noise_variance": 0.0045}
        yield {"kind": "fit", "size": size}


LABELS = {"baseline": "baseline (TensorFlow loaded)", "dense": "dense (exact mean and std)",
          "mean": "grid mean", "preconditioner": "grid mean: plain CG / circulant-preconditioned CG",
          "std": f"grid mean + std map ({SAMPLES} samples)", "fit": "grid fit + mean"}


def markdown(report) -> str:
    lines = [
        "# GP inpainting: dense against the grid solver",
        "",
        f"Centre crops of boat.png, 50% Bernoulli mask (seed 0), RBF with output scale 0.0307, "
        f"length 1.957 px, mean 0.474 (fit rows: fitted). CG relative residual 1e-4. Machine: "
        f"{report['machine']}; {report['versions']}. The machine was shared with other jobs: "
        f"load average (1 min) per row; compare rows as ratios. Peak memory is the process's "
        f"maximum resident set, TensorFlow included (baseline row).",
        "",
        "| size | row | noise var | seconds | fit s | mean s | std s | CG its | CG residual | peak MiB | PSNR | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        def cell(name, fmt):
            value = row.get(name)
            return "" if value is None else format(value, fmt)
        seconds = cell("seconds", ".2f")
        iterations = cell("cg_iterations", "d")
        if row["kind"] == "preconditioner":
            seconds += f" / {row['preconditioned_seconds']:.2f}"
            iterations += f" / {row['preconditioned_iterations']}"
        noise = row.get("noise_variance", "fitted" if row["kind"] == "fit" else "")
        lines.append(
            f"| {row['size'] or ''} | {LABELS[row['kind']]} | {noise} | {seconds} | "
            f"{cell('seconds_fit', '.1f')} | {cell('seconds_mean', '.2f')} | "
            f"{cell('seconds_std', '.1f')} | {iterations} | {cell('cg_residual', '.1e')} | "
            f"{row['peak_mib']:.0f} | {cell('psnr', '.2f')} | {row['load'][0]:.1f} |")
    fits = [row for row in report["rows"] if row["kind"] == "fit"]
    if fits:
        lines += ["", "Fitted hyper-parameters:", ""]
        for row in fits:
            values = row["hyperparameters"]
            lines.append(f"- {row['size']}x{row['size']}: amplitude^2 {values['amplitude'] ** 2:.4f}, "
                         f"length {values['length_scale']:.3f} px, noise variance "
                         f"{values['noise_variance']:.2e}, mean {values['mean'][0]:.3f} "
                         f"({row['fit']['iterations']} Newton steps)")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 256, 512])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--task", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        row = run_task(json.loads(args.task))
        row["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(row))
        return
    import tensorflow as tf
    import tensorflow_probability as tfp

    from tfdip.io import write_json

    report = {"benchmark": "GP inpainting scaling", "image": "boat.png (centre crops)",
              "mask": "Bernoulli 0.5, seed 0", "hyperparameters": PAPER_RBF,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
              "versions": f"TensorFlow {tf.__version__}, TFP {tfp.__version__}, "
                          f"Python {platform.python_version()}", "rows": []}
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for task in tasks(args.sizes):
        load = os.getloadavg()
        done = subprocess.run([sys.executable, __file__, "--task", json.dumps(task)],
                              capture_output=True, text=True, env=env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            print(f"{task}: failed\n{done.stderr[-2000:]}", flush=True)
            continue
        row = {**task, **json.loads(lines[-1][len("RESULT "):]), "load": load}
        report["rows"].append(row)
        print(f"{task}: {row.get('seconds', 0):.2f} s, {row['peak_mib']:.0f} MiB", flush=True)
        write_json(args.out / "gp_scaling.json", report)
        (args.out / "gp_scaling.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
