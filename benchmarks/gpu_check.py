"""Check a GPU (or this CPU) for tfdip: every method at every precision, with and without XLA.

For each image size, method (sgd, paper, sgld, psgld), precision (float32, bfloat16, float16) and
XLA setting (off, on) the script runs ``tfdip.restore`` on a denoising problem (scikit-image's
``astronaut`` resized to the size, Gaussian noise of std 25/255, seed 0; nothing is downloaded)
for ``--iterations`` steps, with the sampling methods keeping every step after the first half as
a posterior sample. It records

- seconds per step (``Restoration.seconds_per_iteration``: without the step that traces and
  compiles) and the wall time of the run including tracing / XLA compilation;
- the PSNR of the result (EMA for sgd, posterior mean otherwise) against the clean image, and its
  difference to the float32, no-XLA run of the same method and size: runs in another precision
  follow other trajectories (rounding differs, Langevin dynamics amplify it), so the check is
  that the difference stays within ``--tolerance`` dB (default 0.3), not that images match;
- the speed-up against that float32, no-XLA run.

Results: ``OUT.json`` (every run, the device, versions) and ``OUT.md`` (one table per size).
The default (256 and 512 px, 120 steps, the reference 128-channel skip net) is meant for a GPU;
``--small`` runs the same grid at 16 px with a 2-layer, 8-channel conv stack, for a CPU (CI).

Usage::

    pip install "tensorflow[and-cuda]"           # then, from the repository:
    python benchmarks/gpu_check.py                # GPU: writes benchmarks/results/gpu_check.*
    python benchmarks/gpu_check.py --small --out /tmp/gpu_check     # CPU smoke run
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

METHODS = ("sgd", "paper", "sgld", "psgld")
NETS = {False: "the reference skip net, 128 channels", True: "a 2-layer 8-channel conv stack"}
PRECISIONS = ("float32", "bfloat16", "float16")
SIGMA = 25 / 255
SMALL_NET = {"net": "conv_stack", "net_options": {"channels": 8, "depth": 2},
             "check_resources": False}


def clean_image(size: int) -> np.ndarray:
    """scikit-image's astronaut (512x512 RGB) resized to (size, size, 3), float32 in [0, 1]."""
    from PIL import Image
    from skimage import data

    resized = Image.fromarray(data.astronaut()).resize((size, size), Image.LANCZOS)
    return np.asarray(resized, np.float32) / 255.0


def device() -> dict:
    """What TensorFlow computes on: the first GPU's name and compute capability, or the CPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {"device": "CPU", "name": platform.processor() or platform.machine()}
    details = tf.config.experimental.get_device_details(gpus[0])
    return {"device": "GPU", "name": details.get("device_name", "GPU"),
            "compute_capability": details.get("compute_capability"), "gpus": len(gpus)}


def run_one(size, method, precision, xla, args) -> dict:
    """One restoration; its timings and PSNR (or the one-line error it stopped with)."""
    from tfdip import metrics, restore
    from tfdip.errors import TfdipError
    from tfdip.physics import Denoising

    clean = clean_image(size)
    physics = Denoising(SIGMA)
    noisy = physics.simulate(clean, seed=0)
    sampling = {} if method == "sgd" else {"burn_in": args.iterations // 2, "thin": 1}
    record = {"size": size, "method": method, "precision": precision, "xla": xla}
    start = time.perf_counter()
    try:
        result = restore(noisy, physics, method=method, iterations=args.iterations, seed=0,
                         precision=precision, jit_compile=xla, **sampling,
                         **(SMALL_NET if args.small else {}))
    except (TfdipError, ValueError, RuntimeError) as error:  # e.g. an op XLA cannot compile
        record["error"] = str(error).strip().splitlines()[0][:300]
        return record
    record.update(seconds=time.perf_counter() - start,
                  seconds_per_iteration=result.seconds_per_iteration,
                  psnr=metrics.psnr(result.image, clean), rollbacks=result.rollbacks)
    return record


def compare(records: list) -> list:
    """Each run's PSNR difference and speed-up against the float32, no-XLA run of its method
    and size."""
    baselines = {(r["size"], r["method"]): r for r in records
                 if r["precision"] == "float32" and not r["xla"] and "error" not in r}
    for r in records:
        base = baselines.get((r["size"], r["method"]))
        if base is not None and "error" not in r:
            r["psnr_change"] = r["psnr"] - base["psnr"]
            r["speedup"] = base["seconds_per_iteration"] / r["seconds_per_iteration"]
    return records


def markdown(report: dict) -> str:
    config, dev = report["config"], report["device"]
    lines = [f"# tfdip on {dev['device']}: {dev['name']}", "",
             f"Denoising (sigma 25/255) of scikit-image's astronaut resized to each size; "
             f"{config['iterations']} steps per run ({NETS[config['small']]}); "
             f"sampling methods average the last half. PSNR change and speed-up are against the "
             f"float32, no-XLA run of the same method and size; |PSNR change| > "
             f"{config['tolerance']} dB is flagged. TensorFlow {report['versions']['tensorflow']}, "
             f"Keras {report['versions']['keras']}; {report['date']}; load average "
             f"{report['load_before']:.2f} before, {report['load_after']:.2f} after; total "
             f"{report['seconds']:.0f} s.", ""]
    for size in config["sizes"]:
        lines += [f"## {size} x {size}", "",
                  "| method | precision | XLA | ms / step | speed-up | run s (with tracing) "
                  "| PSNR (dB) | PSNR change | check |", "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in report["results"] if r["size"] == size):
            head = f"| {r['method']} | {r['precision']} | {'on' if r['xla'] else 'off'} |"
            if "error" in r:
                lines.append(f"{head} failed: {r['error']} | | | | | |")
                continue
            change = r.get("psnr_change")
            flag = "-" if change is None else ("ok" if abs(change) <= config["tolerance"]
                                               else "CHECK")
            lines.append(
                f"{head} {1e3 * r['seconds_per_iteration']:.1f} | "
                f"{r.get('speedup', float('nan')):.2f} | {r['seconds']:.1f} | {r['psnr']:.2f} | "
                f"{'-' if change is None else f'{change:+.2f}'} | {flag} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="CPU smoke run: 16 px, a 2-layer 8-channel conv stack, 6 steps")
    parser.add_argument("--sizes", type=int, nargs="+", help="default 256 512 (--small: 16)")
    parser.add_argument("--iterations", type=int, help="steps per run (default 120; --small: 6)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--xla", nargs="+", choices=("off", "on"), default=["off", "on"])
    parser.add_argument("--tolerance", type=float, default=0.3,
                        help="largest |PSNR change| in dB against float32 without XLA")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu_check",
                        help="results path without extension (.json and .md are written)")
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([16] if args.small else [256, 512])
    args.iterations = args.iterations or (6 if args.small else 120)
    if args.iterations < 2:
        parser.error("--iterations must be at least 2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one model per run: TensorFlow's retracing notes are noise
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg()[0],
              "device": device(), "versions": {"tensorflow": tf.__version__,
                                               "keras": keras.__version__,
                                               "python": platform.python_version()},
              "config": {"sizes": args.sizes, "iterations": args.iterations,
                         "methods": args.methods, "precisions": args.precisions,
                         "xla": args.xla, "tolerance": args.tolerance, "small": args.small}}
    start = time.perf_counter()
    grid = list(itertools.product(args.sizes, args.methods, args.precisions, args.xla))
    records = []
    for index, (size, method, precision, xla) in enumerate(grid, 1):
        record = run_one(size, method, precision, xla == "on", args)
        records.append(record)
        summary = record.get("error") or (f"{1e3 * record['seconds_per_iteration']:.1f} ms/step, "
                                          f"PSNR {record['psnr']:.2f} dB")
        print(f"[{index}/{len(grid)}] {size}px {method} {precision} XLA {xla}: {summary}",
              flush=True)
    report.update(results=compare(records), seconds=time.perf_counter() - start,
                  load_after=os.getloadavg()[0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
