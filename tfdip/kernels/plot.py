"""A figure of an architecture's kernel: its correlation map and its profile against distance."""
from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.kernels.algebra import DIP_INPUT_MEAN, DIP_INPUT_VARIANCE, InputNoise
from tfdip.kernels.lattice import offset_grid
from tfdip.kernels.network import as_model, kernel_of


def plot_kernel(network, path, *, max_offset: int = 16, input_smoothing: float = 0.0,
                input_variance: float = DIP_INPUT_VARIANCE, input_mean: float = DIP_INPUT_MEAN,
                image_size=None, title: str | None = None) -> pathlib.Path:
    """Draw the kernel of ``network`` (a Keras model or an architecture description) to ``path``
    (PNG, PDF, SVG ... by suffix) and return the path.

    Left: the correlation ``K(r) / K(0)`` over offsets ``[-max_offset, max_offset]^2``. Right:
    the correlation against distance along a row (``r = (0, d)``) and a diagonal
    (``r = (d, d) / sqrt(2)`` on the lattice), with ``K(0)`` in the legend. Uses matplotlib's Agg
    canvas (no display needed); parent folders are created. The keyword arguments are those of
    :func:`~tfdip.kernels.kernel_of`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = pathlib.Path(path)
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    canvas = FigureCanvasAgg(figure)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in canvas.get_supported_filetypes():
        raise TfdipError(f"cannot write a figure as {path.name!r}; use one of the suffixes "
                         f"{', '.join('.' + f for f in sorted(canvas.get_supported_filetypes()))}")
    if max_offset < 1:
        raise TfdipError(f"max_offset must be >= 1, got {max_offset}")

    model = as_model(network)
    cov = kernel_of(model, InputNoise(input_variance, input_mean, input_smoothing),
                    image_size=image_size)
    grid = offset_grid(max_offset, tf.float64)
    values = cov(grid).numpy()
    variance = values[max_offset, max_offset]
    correlation = values / variance
    distance = np.arange(max_offset + 1, dtype=np.float64)
    along_row = correlation[max_offset, max_offset:]
    along_diagonal = np.diag(correlation)[max_offset:]

    left, right = figure.subplots(1, 2)
    image = left.imshow(correlation, extent=(-max_offset - 0.5, max_offset + 0.5,
                                             max_offset + 0.5, -max_offset - 0.5), cmap="viridis")
    left.set_xlabel("column offset (px)")
    left.set_ylabel("row offset (px)")
    left.set_title("correlation K(r) / K(0)")
    figure.colorbar(image, ax=left, shrink=0.85)
    right.plot(distance, along_row, "o-", label="along a row")
    right.plot(distance * np.sqrt(2.0), along_diagonal, "s--", label="along a diagonal")
    right.axhline(0.0, color="0.7", lw=0.8)
    right.set_xlabel("distance |r| (px)")
    right.set_ylabel("K(r) / K(0)")
    right.set_title(f"K(0) = {variance:.4g}")
    right.legend()
    figure.suptitle(title or f"{model.name} kernel, input smoothing {input_smoothing:g} px")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
