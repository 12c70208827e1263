"""Prior samples of DIP networks beside samples of the Gaussian process with their analytic kernel.

For two architectures on 64 x 64 images: the DIP skip generator (default layout, Gaussian weights,
sigmoid output, DIP's U(0, 0.1) input) and a conv-only ReLU stack on a smoothed input. Each gets a
row of outputs of randomly drawn networks and a row of draws from
``tfp.distributions.GaussianProcess`` with ``tfdip.kernels.DIPKernel`` of the same spec (mean 1/2
after a sigmoid, else 0), over the 4096 pixel coordinates. Matching texture and contrast between
the rows is the theory's claim: wide random networks are Gaussian processes with that kernel.

    python examples/fig_prior_samples.py [--out examples/figures] [--samples 4]
"""
from __future__ import annotations

import argparse
import pathlib

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tfdip.kernels import DIP_INPUT_MEAN, DIP_INPUT_VARIANCE, DIPKernel, sample_input
from tfdip.kernels.montecarlo import redraw_weights
from tfdip.nets import ConvStackSpec, SkipSpec

SIZE = 64
ARCHITECTURES = {
    "DIP skip net (5 levels, sigmoid)": (
        SkipSpec(output_channels=1, init="gaussian"),
        dict(input_smoothing=0.0, input_variance=DIP_INPUT_VARIANCE, input_mean=DIP_INPUT_MEAN)),
    "conv-only ReLU stack (depth 4), input smoothing 2": (
        ConvStackSpec(input_channels=32, channels=256, depth=4, output_channels=1),
        dict(input_smoothing=2.0, input_variance=1.0, input_mean=0.0)),
}


def network_samples(spec, inputs, count: int, seed: int) -> np.ndarray:
    """Outputs ``(count, SIZE, SIZE)`` of ``count`` networks with freshly drawn weights and inputs."""
    model = spec.build()
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        redraw_weights(model, seed=seed * 1000 + index)
        z = sample_input((1, SIZE, SIZE, spec.input_channels), inputs["input_smoothing"],
                         inputs["input_variance"], inputs["input_mean"], rng)
        samples.append(model(z).numpy()[0, :, :, 0])
    return np.stack(samples)


def gp_samples(spec, inputs, count: int, seed: int) -> np.ndarray:
    """``count`` draws ``(SIZE, SIZE)`` of the GP with the spec's analytic kernel (float64)."""
    rows, cols = np.meshgrid(np.arange(SIZE, dtype=np.float64), np.arange(SIZE, dtype=np.float64),
                             indexing="ij")
    points = np.stack([rows.ravel(), cols.ravel()], axis=-1)
    mean = 0.5 if spec.need_sigmoid else 0.0
    gp = tfp.distributions.GaussianProcess(
        DIPKernel(spec, **inputs), index_points=points, jitter=1e-8,
        mean_fn=lambda x: tf.fill(tf.shape(x)[:-1], tf.constant(mean, tf.float64)))
    return gp.sample(count, seed=(seed, 0)).numpy().reshape(count, SIZE, SIZE)


def main(out: pathlib.Path, count: int) -> pathlib.Path:
    figure = Figure(figsize=(2.3 * count, 2.5 * 2 * len(ARCHITECTURES)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2 * len(ARCHITECTURES), count, squeeze=False)
    for row, (name, (spec, inputs)) in enumerate(ARCHITECTURES.items()):
        nets = network_samples(spec, inputs, count, seed=row + 1)
        gps = gp_samples(spec, inputs, count, seed=row + 1)
        centre = 0.5 if spec.need_sigmoid else 0.0
        spread = 3.0 * np.std(gps)
        for offset, (label, images) in enumerate((("DIP prior", nets), ("GP prior", gps))):
            for column, image in enumerate(images):
                axis = axes[2 * row + offset, column]
                axis.imshow(image, cmap="gray", vmin=centre - spread, vmax=centre + spread)
                axis.set_xticks([])
                axis.set_yticks([])
            axes[2 * row + offset, 0].set_ylabel(f"{label}\nstd {np.std(images):.3f}", fontsize=9)
        axes[2 * row, 0].set_title(name, loc="left", fontsize=10)
    figure.suptitle("DIP prior (random weights) vs GP prior (analytic kernel), 64 x 64")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "prior_samples.png"
    figure.savefig(path, dpi=100)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).parent / "figures")
    parser.add_argument("--samples", type=int, default=4, help="samples per row")
    args = parser.parse_args()
    print(main(args.out, args.samples))
