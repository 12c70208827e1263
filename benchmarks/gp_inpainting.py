"""GP inpainting of the paper's full-size inpainting set with the grid solver, beside classical and DIP numbers.

Data: the 11 gray images of ``../shared/data/inpainting/`` at full size (256x256 and 512x512), 50%
of the pixels dropped by a Bernoulli mask with one fixed seed per image (:data:`SEEDS`). PSNR (data
range 1) over the whole image with the known pixels kept. Rows per image, each timed end to end:

- GP, RBF kernel, hyper-parameters fitted by marginal likelihood (stochastic Lanczos quadrature
  and average-information Newton steps), then the CG posterior mean (``gp_restore(solver="grid")``);
- GP with the analytic DIP kernel of the paper's GP experiment (2-level, 1024-channel skip net;
  noise-free, zero mean, as in the paper's Fig. 6), CG posterior mean;
- scikit-image's ``inpaint_biharmonic``;
- the paper's DIP / SGD / SGLD numbers (reference.md section 4; not re-run here: a 512x512 DIP run
  takes hours on this machine).

Writes ``benchmarks/results/gp_inpainting.json`` and ``.md`` after every image (the machine is
shared: the load average is recorded per image).

Usage::

    python benchmarks/gp_inpainting.py                  # all 11 images (about an hour here)
    python benchmarks/gp_inpainting.py --images house peppers
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.restoration import inpaint_biharmonic

from tfdip.gp import gp_restore
from tfdip.io import write_json
from tfdip.metrics import psnr

HERE = Path(__file__).resolve().parent
DATA = next((root / "shared" / "data" / "inpainting" for root in (HERE.parent.parent, HERE.parents[2])
             if (root / "shared" / "data").is_dir()), HERE.parent.parent / "shared" / "data")
# The paper's column order, its labels and its numbers (reference.md section 4).
IMAGES = ["barbara", "boat", "house", "lena", "peppers", "cameraman", "couple", "fingerprint",
          "hill", "man", "montage"]
PAPER = {
    "SGD (poster)": [28.48, 31.54, 35.34, 35.00, 30.40, 27.05, 30.55, 32.24, 31.37, 31.32, 30.21],
    "SGLD (poster)": [33.82, 34.26, 40.13, 37.73, 33.97, 30.33, 33.72, 33.41, 34.03, 33.54, 34.65],
    "DIP paper": [32.22, 33.06, 39.16, 36.16, 33.05, 29.8, 32.52, 32.84, 32.77, 32.20, 34.54],
}
SEEDS = {name: 100 + index for index, name in enumerate(IMAGES)}
"""Mask seed per image."""
METHODS = ("GP, RBF fitted", "GP, DIP kernel", "biharmonic")


def load(name: str):
    clean = np.asarray(Image.open(DATA / f"{name}.png").convert("L"), np.float64) / 255.0
    known = np.random.default_rng(SEEDS[name]).random(clean.shape) < 0.5
    return clean, known


def run_image(name: str) -> dict:
    clean, known = load(name)
    observation = clean * known
    row = {"image": name, "shape": list(clean.shape), "seed": SEEDS[name],
           "known_fraction": float(known.mean()), "load": os.getloadavg(), "methods": {}}
    rbf = gp_restore(observation, known, kernel="rbf", solver="grid", samples=0)
    row["methods"]["GP, RBF fitted"] = {
        "psnr": psnr(rbf.mean, clean), "seconds": rbf.seconds, "seconds_fit": rbf.seconds_fit,
        "seconds_mean": rbf.seconds_mean, "cg_iterations": rbf.cg_iterations,
        "cg_residual": rbf.cg_residual, "hyperparameters": rbf.hyperparameters,
        "fit": {"iterations": rbf.fit.iterations, "converged": rbf.fit.converged},
        "notes": rbf.notes}
    dip = gp_restore(observation, known, kernel="dip", fit=False, mean="zero", solver="grid",
                     samples=0)
    row["methods"]["GP, DIP kernel"] = {
        "psnr": psnr(dip.mean, clean), "seconds": dip.seconds, "cg_iterations": dip.cg_iterations,
        "cg_residual": dip.cg_residual, "notes": dip.notes}
    start = time.perf_counter()
    biharmonic = np.where(known, observation, inpaint_biharmonic(observation, ~known))
    row["methods"]["biharmonic"] = {"psnr": psnr(biharmonic, clean),
                                    "seconds": time.perf_counter() - start}
    return row


def markdown(report) -> str:
    lines = [
        "# GP inpainting of the paper's inpainting set at full size",
        "",
        f"50% Bernoulli masks (seed 100 + the image's index in the paper's order); PSNR (dB) over "
        f"the whole image with the known pixels kept; seconds are wall time on {report['machine']} "
        f"({report['versions']}), shared with other jobs (load average per image). GP rows: the "
        f"grid solver (FFT operators, CG to relative residual 1e-4). The paper's rows are its "
        f"numbers (reference.md), not re-run here.",
        "",
        "| image | size | GP RBF fitted | s | GP DIP kernel | s | biharmonic | s | DIP paper | SGD | SGLD | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    done = {row["image"]: row for row in report["rows"]}
    sums = {method: [] for method in METHODS}
    paper_sums = {label: [] for label in PAPER}
    for index, name in enumerate(IMAGES):
        if name not in done:
            continue
        row = done[name]
        cells = []
        for method in METHODS:
            result = row["methods"][method]
            sums[method].append(result["psnr"])
            cells += [f"{result['psnr']:.2f}", f"{result['seconds']:.1f}"]
        paper = [PAPER[label][index] for label in ("DIP paper", "SGD (poster)", "SGLD (poster)")]
        for label in PAPER:
            paper_sums[label].append(PAPER[label][index])
        lines.append(f"| {name} | {row['shape'][0]}x{row['shape'][1]} | " + " | ".join(cells)
                     + " | " + " | ".join(f"{value:.2f}" for value in paper)
                     + f" | {row['load'][0]:.1f} |")
    if done:
        cells = []
        for method in METHODS:
            cells += [f"**{np.mean(sums[method]):.2f}**", ""]
        paper = [f"{np.mean(paper_sums[label]):.2f}"
                 for label in ("DIP paper", "SGD (poster)", "SGLD (poster)")]
        lines.append(f"| average of {len(done)} | | " + " | ".join(cells + paper) + " | |")
    fitted = [(row["image"], row["methods"]["GP, RBF fitted"]) for row in report["rows"]]
    if fitted:
        lines += ["", "Fitted RBF hyper-parameters and CG iterations of the posterior means:", ""]
        for name, result in fitted:
            values = result["hyperparameters"]
            dip = done[name]["methods"]["GP, DIP kernel"]
            lines.append(
                f"- {name}: amplitude^2 {values['amplitude'] ** 2:.4f}, length "
                f"{values['length_scale']:.2f} px, noise variance {values['noise_variance']:.2e}, "
                f"mean {values['mean'][0]:.3f}; fit {result['seconds_fit']:.0f} s "
                f"({result['fit']['iterations']} Newton steps), mean {result['seconds_mean']:.1f} s "
                f"({result['cg_iterations']} CG iterations); DIP kernel {dip['cg_iterations']} CG "
                f"iterations")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", nargs="*", default=IMAGES, choices=IMAGES)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    import tensorflow as tf
    import tensorflow_probability as tfp

    report = {"benchmark": "GP inpainting, full-size inpainting set",
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
              "versions": f"TensorFlow {tf.__version__}, TFP {tfp.__version__}",
              "seeds": SEEDS, "paper": PAPER, "rows": []}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.images:
        row = run_image(name)
        report["rows"].append(row)
        summary = ", ".join(f"{m} {r['psnr']:.2f} dB {r['seconds']:.0f} s"
                            for m, r in row["methods"].items())
        print(f"{name}: {summary}", flush=True)
        write_json(args.out / "gp_inpainting.json", report)
        (args.out / "gp_inpainting.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
