"""Inpainting with Gaussian processes: an RBF kernel fitted by marginal likelihood against the
analytic DIP kernel, on the paper's 64x64 Cameraman (Cheng et al. 2019, Fig. 6).

Draws the observation, each restoration with its PSNR, and the GP posterior std maps into
``examples/figures/gp_experiment.png`` (the committed figure was made with ``--dip 1800``). The
known pixels are kept in every restoration. The full table with timings and more kernels is
``benchmarks/gp_experiment.py``.

Usage::

    python examples/gp_experiment.py                 # GPs and the biharmonic baseline (~2 min)
    python examples/gp_experiment.py --dip 1800      # and DIP itself, 1800 iterations (~5 min more)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.restoration import inpaint_biharmonic  # noqa: E402

import tfdip  # noqa: E402
from tfdip.gp import gp_restore  # noqa: E402
from tfdip.metrics import psnr  # noqa: E402
from tfdip.viz import save_figure  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "gp"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dip", type=int, default=0, metavar="ITERATIONS",
                        help="also run DIP (tfdip.restore) for this many iterations")
    parser.add_argument("--out", type=Path, default=HERE / "figures" / "gp_experiment.png")
    args = parser.parse_args()

    clean = np.load(DATA / "cameraman64.npy")
    known = np.load(DATA / "cameraman64_mask.npy") != 0
    observation = clean * known

    rbf = gp_restore(observation, known, kernel="rbf")                # fitted by marginal likelihood
    dip_kernel = gp_restore(observation, known, kernel="dip", fit=False, mean="zero")
    start = time.perf_counter()
    biharmonic = np.where(known, observation, inpaint_biharmonic(observation, ~known))
    panels = [
        ("observation", observation, None),
        ("GP, RBF kernel (fitted)", rbf.mean, rbf.seconds),
        ("GP, DIP kernel", dip_kernel.mean, dip_kernel.seconds),
        ("biharmonic", biharmonic, time.perf_counter() - start),
    ]
    if args.dip:
        dip = tfdip.restore(observation[:, :, None], tfdip.physics.Inpainting(known),
                            method="sgd", iterations=args.dip, seed=0)
        panels.append((f"DIP ({args.dip} iterations)",
                       np.where(known, observation, dip.image[:, :, 0]), dip.seconds))
    panels.append(("clean", clean, None))

    fig, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels), 5.6))
    for ax, (title, image, seconds) in zip(axes[0], panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if seconds is not None:
            title = f"{title}\n{psnr(image, clean):.2f} dB, {seconds:.1f} s"
        ax.set_title(title, fontsize=8)
    stds = [("GP posterior std, RBF", rbf.std), ("GP posterior std, DIP kernel", dip_kernel.std)]
    for ax, (title, std) in zip(axes[1], stds):
        shown = ax.imshow(std, cmap="magma", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"64x64 Cameraman, {1 - known.mean():.0%} of the pixels missing", fontsize=10)
    fig.tight_layout()
    save_figure(fig, str(args.out))
    print(f"RBF hyper-parameters: {rbf.hyperparameters}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
