"""Super-resolution x4: the Langevin default against the DIP recipe and bicubic, one factor at a time.

Protocol: centre SIZE x SIZE crops (SIZE a multiple of 4, default 128) of the images of
``../shared/data/superres/`` (set5, set14), down-sampled by tfdip's ``SuperResolution(4)`` (DIP's
Lanczos-2 anti-aliased down-sampler) without noise, so the observation is SIZE/4 x SIZE/4. Gray
images (set14's bridge, stored with one channel, and man, stored as three equal channels) are
restored as one channel. Each row is one ``tfdip.restore`` run (network seed 0) that differs from
the ``psgld`` default (3000 steps) in one setting; the references are the DIP recipe (``sgd``:
Adam lr 0.01, jitter 0.03, EMA, 2000 steps as the DIP paper's x4 runs) and ``bicubic``: PIL's
bicubic resize (Keys' cubic convolution, a = -0.5, the kernel of MATLAB's ``imresize``) of every
channel of the float observation, clipped to [0, 1].

For every run: PSNR of the BT.601 luma Y with a 4-pixel border cropped (the super-resolution
protocol, ``tfdip.metrics.psnr_y``; for gray images the PSNR of the gray values with the same
border), PSNR over all pixels and channels, SSIM, 2-std coverage of the posterior std over all
pixels and its mean, seconds, seconds per step and the load average. Results go to
``benchmarks/results/superres_ablation.json`` and ``.md`` after every run, so an interrupted run
keeps what it finished and a rerun continues it.

Usage::

    python benchmarks/superres_ablation.py                          # every row on 3 images
    python benchmarks/superres_ablation.py --rows psgld sgd --images baby zebra --size 64
    python benchmarks/superres_ablation.py --iterations-scale 0.01 --out /tmp/sr  # a smoke run
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

import tfdip
from tfdip.errors import TfdipError
from tfdip.inference.calibration import uncertainty_report
from tfdip.io import read_image, write_text
from tfdip.metrics import psnr, psnr_y, ssim
from tfdip.physics import SuperResolution

from ablation import (PACKAGES, RESULTS, Column, data_folder, markdown_table, report_errors,
                      run_ablation)

# image -> its folder under shared/data/superres
IMAGES = {**{name: "set5" for name in ("baby", "bird", "butterfly", "head", "woman")},
          **{name: "set14" for name in ("baboon", "barbara", "bridge", "coastguard", "comic",
                                        "face", "flowers", "foreman", "lenna", "man", "monarch",
                                        "pepper", "ppt3", "zebra")}}
FACTOR = 4
BORDER = FACTOR  # the protocol crops as many pixels as the scale factor from every side
NET_SEED = 0
# the protocol's steps per method, unless a row sets its own
STEPS = {"sgd": 2000, "psgld": 3000}

# row -> (method, restore() keyword arguments, likelihood sigma or None for the default)
ROWS = {
    "psgld": ("psgld", {}, None),  # today's noise-free default (decreasing step from 4e-2, jitter)
    "psgld_former": ("psgld", {"learning_rate": 1e-3, "schedule": "constant",
                              "input_noise_std": 0.0}, None),
    "psgld_lr2e-2_jitter": ("psgld", {"learning_rate": 2e-2, "schedule": "constant",
                                      "input_noise_std": 0.03}, None),
    "psgld_sampled": ("psgld", {"noise": "sampled", "input_noise_std": 0.0}, None),
    "sgd": ("sgd", {}, None),
    "sgd_3000": ("sgd", {"iterations": 3000}, None),
}


def problem(name: str, size: int):
    """(clean (size, size, C), observation (size/4, size/4, C)) for one image's centre crop;
    C = 1 for gray images, 3 for colour ones."""
    image = read_image(data_folder("superres") / IMAGES[name] / f"{name}.png").pixels
    height, width = image.shape[:2]
    if min(height, width) < size:
        raise TfdipError(f"{name} is {height}x{width} pixels, smaller than --size {size}")
    gray = image.shape[2] == 1 or all(np.array_equal(image[:, :, 0], image[:, :, k])
                                      for k in range(1, image.shape[2]))
    top, left = (height - size) // 2, (width - size) // 2
    clean = np.ascontiguousarray(image[top:top + size, left:left + size, :1 if gray else 3])
    return clean, SuperResolution(FACTOR).simulate(clean, seed=0)


def bicubic(observation) -> np.ndarray:
    """PIL's bicubic up-sampling by FACTOR of every channel of an (h, w, C) float image,
    clipped to [0, 1]: (FACTOR h, FACTOR w, C)."""
    height, width, channels = observation.shape
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(observation[:, :, k], np.float32))
                         .resize((FACTOR * width, FACTOR * height), Image.Resampling.BICUBIC))
              for k in range(channels)]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0)


def scores(clean, image, std) -> dict:
    record = {"psnr_y": psnr_y(image, clean, border=BORDER), "psnr": psnr(image, clean),
              "ssim": ssim(image, clean)}
    if std is not None:
        record["coverage"] = uncertainty_report(image, std, clean)["coverage_2std"]
        record["std_mean"] = float(np.mean(std))
    return record


def steps(method: str, options: dict, scale: float) -> int:
    """The row's steps (its own, else the protocol's) times ``scale``, at least one."""
    return max(1, round(scale * options.get("iterations", STEPS[method])))


def run(name: str, row: str, size: int, scale: float) -> dict:
    clean, observation = problem(name, size)
    start = time.perf_counter()
    if row == "bicubic":
        record = scores(clean, bicubic(observation), None)
        record.update(seconds=time.perf_counter() - start, channels=clean.shape[2],
                      load_average=os.getloadavg())
        return record
    method, options, sigma = ROWS[row]
    physics = SuperResolution(FACTOR, sigma=sigma or 0.0)
    options = {**options, "iterations": steps(method, options, scale)}
    result = tfdip.restore(observation, physics, method=method, seed=NET_SEED, **options)
    record = scores(clean, result.image, result.std)
    if result.ema is not None and method != "sgd":
        record["psnr_y_ema"] = psnr_y(result.ema, clean, border=BORDER)
    record.update(seconds=result.seconds, seconds_per_iteration=result.seconds_per_iteration,
                  iterations=result.iterations, samples=result.samples,
                  rollbacks=result.rollbacks, channels=clean.shape[2],
                  load_average=os.getloadavg())
    if "sigma" in result.history[0]:
        record["sigma_final"] = float(result.history[0]["sigma"][-1])
    return record


def write_markdown(results: dict, path: Path) -> None:
    size, scale = results["size"], results["iterations_scale"]
    budget = ", ".join(f"{method} {steps(method, {}, scale)} steps" for method in STEPS)
    lines = [f"# Super-resolution x{FACTOR} ablation ({size}x{size} centre crops of set5/set14, "
             f"{size // FACTOR}x{size // FACTOR} noise-free observations)", "",
             "Generated by `benchmarks/superres_ablation.py`. PSNR in dB of the luma Y with a "
             f"{BORDER}-pixel border cropped (PSNR over all pixels and channels in brackets); "
             "SSIM over all channels; cov = 2-std coverage of the posterior std over all pixels; "
             "std = its mean; s = seconds and s/step = seconds per step, on a machine shared "
             "with other jobs (load averages in the JSON): compare them as ratios.", "",
             f"Budget: {budget} unless the row sets its own (psgld: burn-in 35%, a sample every "
             f"steps/400); network seed {results['network_seed']}; bicubic = PIL's "
             "(a = -0.5)." + (f" Steps scaled by {scale}: a smoke run, not the protocol."
                              if scale != 1 else ""), "",
             f"Machine: {json.dumps(results['machine'])}", ""]
    lines += markdown_table(
        results["runs"], ["bicubic", *ROWS], IMAGES,
        lambda record: f"{record['psnr_y']:.2f} ({record['psnr']:.2f})",
        [Column("mean Y", "psnr_y"), Column("mean RGB", "psnr"), Column("SSIM", "ssim", "{:.3f}"),
         Column("cov", "coverage"), Column("std", "std_mean", "{:.4f}"),
         Column("s", "seconds", "{:.0f}", complete=False),
         Column("s/step", "seconds_per_iteration", "{:.3f}", complete=False)])
    write_text(path, "\n".join(lines) + "\n")


@report_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["baby", "bird", "butterfly"],
                        choices=IMAGES)
    parser.add_argument("--rows", nargs="+", default=["bicubic", *ROWS],
                        choices=["bicubic", *ROWS])
    parser.add_argument("--size", type=int, default=128,
                        help=f"side of the high-resolution crop, a multiple of {FACTOR}")
    parser.add_argument("--iterations-scale", type=float, default=1.0,
                        help="multiply every row's steps (for smoke runs; needs --out)")
    parser.add_argument("--out", type=Path, default=RESULTS / "superres_ablation",
                        help="results path without suffix (.json and .md are written)")
    args = parser.parse_args(argv)
    if args.size < FACTOR or args.size % FACTOR:
        raise TfdipError(f"--size must be a positive multiple of {FACTOR}, got {args.size}")
    if not 0 < args.iterations_scale <= 1:
        raise TfdipError(f"--iterations-scale must be in (0, 1], got {args.iterations_scale}")
    if args.iterations_scale != 1 and args.out == parser.get_default("out"):
        raise TfdipError("--iterations-scale is for smoke runs; give them an --out away from "
                         "the benchmark's results")
    header = {"size": args.size, "factor": FACTOR, "network_seed": NET_SEED, "steps": STEPS,
              "iterations_scale": args.iterations_scale}
    jobs = ((f"{name}/{row}", functools.partial(run, name, row, args.size, args.iterations_scale))
            for row in args.rows for name in args.images)
    run_ablation(args.out, header, jobs, write_markdown, packages=(*PACKAGES, "pillow"))


if __name__ == "__main__":
    main()
