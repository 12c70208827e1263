"""Figures for people: colour-mapped uncertainty maps and side-by-side comparisons (matplotlib, Agg)."""
from __future__ import annotations

import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def colormap(values, cmap: str = "magma", vmax: float | None = None) -> np.ndarray:
    """An (H, W) map (or (H, W, C), averaged over C) as an (H, W, 3) RGB image in [0, 1],
    scaled to [0, vmax] (vmax defaults to the map's maximum)."""
    values = np.asarray(values, np.float32)
    if values.ndim == 3:
        values = values.mean(axis=-1)
    vmax = float(values.max()) if vmax is None else float(vmax)
    scaled = values / vmax if vmax > 0 else np.zeros_like(values)
    return plt.get_cmap(cmap)(np.clip(scaled, 0.0, 1.0))[..., :3].astype(np.float32)


def _show(ax, image, title):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(np.clip(image, 0, 1), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def comparison_figure(path: str, panels, std=None, title: str | None = None) -> None:
    """Save a row of images (``panels``: list of (title, image)) and, if given, the std map with a
    colour bar, as one PNG, written atomically."""
    count = len(panels) + (std is not None)
    fig, axes = plt.subplots(1, count, figsize=(3.0 * count, 3.4), squeeze=False)
    for ax, (name, image) in zip(axes[0], panels):
        _show(ax, image, name)
    if std is not None:
        std_map = np.asarray(std).mean(axis=-1) if np.ndim(std) == 3 else np.asarray(std)
        shown = axes[0][-1].imshow(std_map, cmap="magma", interpolation="nearest")
        axes[0][-1].set_title("posterior std", fontsize=9)
        axes[0][-1].axis("off")
        fig.colorbar(shown, ax=axes[0][-1], fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: str, dpi: int = 110) -> None:
    """``fig.savefig`` through a temporary file in the same folder, then an atomic rename."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(handle)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
