"""How the psgld defaults for inpainting were chosen: one factor at a time, against the DIP recipe.

Protocol: centre SIZE x SIZE crops of the gray images of ``../shared/data/inpainting/``, 50% of the
pixels dropped by a Bernoulli mask (seed = MASK_SEED + index of the image), no noise. Each row is one
``tfdip.restore`` run (network seed 0) that differs from the former ``psgld`` default (step 1e-3, no
input jitter) in one or two settings: the likelihood noise level sigma, the input jitter, the step
size, the budget. The DIP recipe (``sgd``:
Adam, jitter 0.03, EMA) and scikit-image's biharmonic inpainting are the references.

For every run: PSNR of the restoration over the whole crop, raw and with the known pixels copied
back from the observation ("kept"); SSIM (kept); 2-std coverage of the posterior std over the missing
pixels and over all pixels; seconds. Results go to ``benchmarks/results/inpainting_ablation.json``
and ``.md`` after every run, so an interrupted run keeps what it finished.

Usage::

    python benchmarks/inpainting_ablation.py                        # every row on 3 images
    python benchmarks/inpainting_ablation.py --rows psgld_lr2e-2_jitter sgd --images barbara boat
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
from skimage.restoration import inpaint_biharmonic

import tfdip
from tfdip.errors import TfdipError
from tfdip.inference.calibration import uncertainty_report
from tfdip.io import read_image, write_text
from tfdip.metrics import psnr, ssim
from tfdip.physics import Inpainting

from ablation import RESULTS, Column, data_folder, markdown_table, report_errors, run_ablation

DATA = data_folder("inpainting")
# The paper's GP experiment (its Fig. 6): the authors' 64x64 Cameraman and mask, used as they are.
GP_EXPERIMENT = "gp_cameraman64"
IMAGES = ("barbara", "boat", "cameraman", "couple", "fingerprint", "hill", "house", "lena", "man",
          "montage", "peppers", GP_EXPERIMENT)
MASK_SEED = 1000
KEEP = 0.5

# The psgld recipe the ablation started from (the default until it: constant step 1e-3, no input
# jitter).
FORMER = {"learning_rate": 1e-3, "schedule": "constant", "input_noise_std": 0.0}
# row -> (method, restore() keyword arguments, likelihood sigma or None for the default). The
# psgld rows change FORMER one or two settings at a time; psgld_decay1e-2_jitter is today's
# default for noise-free observations (tfdip.recipes.NOISE_FREE_PSGLD_LEARNING_RATE).
ROWS = {
    "psgld_lr1e-3": ("psgld", FORMER, None),
    "psgld_jitter": ("psgld", {**FORMER, "input_noise_std": 0.03}, None),
    "psgld_sigma0.03": ("psgld", FORMER, 0.03),
    "psgld_sigma0.03_jitter": ("psgld", {**FORMER, "input_noise_std": 0.03}, 0.03),
    "psgld_sigma0.1": ("psgld", FORMER, 0.1),
    "psgld_lr3e-4": ("psgld", {**FORMER, "learning_rate": 3e-4}, None),
    "psgld_6000": ("psgld", {**FORMER, "iterations": 6000}, None),
    "psgld_sampled": ("psgld", {**FORMER, "noise": "sampled"}, None),
    "psgld_sampled_jitter": ("psgld", {**FORMER, "noise": "sampled", "input_noise_std": 0.03},
                             None),
    "psgld_lr3e-3": ("psgld", {**FORMER, "learning_rate": 3e-3}, None),
    "psgld_lr1e-2": ("psgld", {**FORMER, "learning_rate": 1e-2}, None),
    "psgld_lr1e-2_jitter": ("psgld", {**FORMER, "learning_rate": 1e-2,
                                      "input_noise_std": 0.03}, None),
    "psgld_lr1e-2_sampled": ("psgld", {**FORMER, "learning_rate": 1e-2, "noise": "sampled"},
                             None),
    "psgld_lr1e-2_sampled_jitter": ("psgld", {**FORMER, "learning_rate": 1e-2,
                                              "noise": "sampled", "input_noise_std": 0.03}, None),
    "psgld_lr2e-2_jitter": ("psgld", {**FORMER, "learning_rate": 2e-2,
                                      "input_noise_std": 0.03}, None),
    "psgld_lr4e-2_jitter": ("psgld", {**FORMER, "learning_rate": 4e-2,
                                      "input_noise_std": 0.03}, None),
    "psgld_decay1e-2_jitter": ("psgld", {}, None),
    "psgld_cyclical2e-2_jitter": ("psgld", {**FORMER, "learning_rate": 2e-2,
                                            "schedule": "cyclical", "input_noise_std": 0.03},
                                  None),
    "sgd": ("sgd", {}, None),
    "sgd_3000": ("sgd", {"iterations": 3000}, None),
    "paper": ("paper", {}, None),
}


def problem(name: str, index: int, size: int):
    """(clean (size, size, 1), observation, mask (size, size)) for one image's centre crop, or for
    the GP experiment's image and mask (64x64 only)."""
    if name == GP_EXPERIMENT:
        if size != 64:
            raise TfdipError(f"{GP_EXPERIMENT} is 64x64; run it with --size 64")
        folder = data_folder("gp")
        clean = np.load(folder / "cameraman64.npy").astype(np.float32)[:, :, None]
        physics = Inpainting(np.load(folder / "cameraman64_mask.npy") != 0)
        return clean, physics.simulate(clean, seed=0), physics.mask[:, :, 0]
    image = read_image(DATA / f"{name}.png").pixels
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    clean = np.ascontiguousarray(image[top:top + size, left:left + size, :1])
    physics = Inpainting.bernoulli((size, size), KEEP, seed=MASK_SEED + index)
    return clean, physics.simulate(clean, seed=0), physics.mask[:, :, 0]


def scores(clean, observation, mask, image, std) -> dict:
    known = mask[:, :, None] > 0
    kept = np.where(known, observation, image)
    record = {"psnr": psnr(image, clean), "psnr_kept": psnr(kept, clean), "ssim_kept": ssim(kept, clean)}
    if std is not None:
        missing = np.broadcast_to(~known, clean.shape)
        record["coverage_missing"] = uncertainty_report(image, std, clean, mask=missing)["coverage_2std"]
        record["coverage_all"] = uncertainty_report(image, std, clean)["coverage_2std"]
        record["std_missing"] = float(std[missing].mean())
        record["std_known"] = float(std[~missing].mean())
    return record


def run(name: str, index: int, row: str, size: int) -> dict:
    clean, observation, mask = problem(name, index, size)
    start = time.perf_counter()
    if row == "biharmonic":
        image = inpaint_biharmonic(observation[:, :, 0], mask == 0)[:, :, None]
        record = scores(clean, observation, mask, image, None)
        record["seconds"] = time.perf_counter() - start
        return record
    method, options, sigma = ROWS[row]
    physics = Inpainting(mask, sigma=sigma or 0.0)
    if method == "psgld":  # the ablation's protocol: 3000 steps, not the automatic budget
        options = {"iterations": 3000, **options}
    result = tfdip.restore(observation, physics, method=method, seed=0, **options)
    record = scores(clean, observation, mask, result.image, result.std)
    if result.ema is not None and method != "sgd":
        record["psnr_ema_kept"] = scores(clean, observation, mask, result.ema, None)["psnr_kept"]
    record.update(seconds=result.seconds, seconds_per_iteration=result.seconds_per_iteration,
                  iterations=result.iterations, samples=result.samples,
                  rollbacks=result.rollbacks, load_average=os.getloadavg())
    if "sigma" in result.history[0]:
        record["sigma_final"] = float(result.history[0]["sigma"][-1])
    return record


def write_markdown(results: dict, path: Path) -> None:
    lines = [f"# Inpainting ablation ({results['size']}x{results['size']} centre crops, 50% Bernoulli masks)",
             "", "Generated by `benchmarks/inpainting_ablation.py`. PSNR in dB with the known pixels "
             "kept (raw PSNR in brackets); cov = 2-std coverage over the missing / all pixels; "
             "s = seconds (shared machine: upper bounds).", "",
             f"Machine: {json.dumps(results['machine'])}", ""]
    lines += markdown_table(
        results["runs"], ["biharmonic", *ROWS], IMAGES,
        lambda record: f"{record['psnr_kept']:.2f} ({record['psnr']:.2f})",
        [Column("mean (kept)", "psnr_kept"), Column("cov missing", "coverage_missing"),
         Column("cov all", "coverage_all"), Column("s", "seconds", "{:.0f}", complete=False)])
    write_text(path, "\n".join(lines) + "\n")


@report_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["barbara", "boat", "cameraman"],
                        choices=IMAGES)
    parser.add_argument("--rows", nargs="+", default=["biharmonic", *ROWS],
                        choices=["biharmonic", *ROWS])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS / "inpainting_ablation")
    args = parser.parse_args(argv)
    jobs = ((f"{name}/{row}", functools.partial(run, name, IMAGES.index(name), row, args.size))
            for row in args.rows for name in args.images)
    run_ablation(args.out, {"size": args.size}, jobs, write_markdown)


if __name__ == "__main__":
    main()
