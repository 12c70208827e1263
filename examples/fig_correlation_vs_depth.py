"""Correlation K(r) / K(0) against distance for DIP architectures: depth and input smoothing.

Four panels, as in the poster's figure: a conv-only ReLU stack (theory's setting: zero-mean,
unit-variance input) for depths 1-4 and for input smoothing widths, and the DIP encoder-decoder
(LeakyReLU, BatchNorm, stride-2 down-sampling, bilinear up-sampling, DIP's U(0, 0.1) input) for
1-4 levels and for smoothing widths. Lines: the analytic kernel (``tfdip.kernels.kernel_of``);
points: Monte Carlo over random networks built from the same specs (error bars: one standard
error). The encoder-decoder points come from the real reflection-padded networks on 128 x 128
images; its solid lines are the infinite-image kernel, its dashed lines the kernel with
BatchNorm's statistics over a 128 x 128 image (``image_size=128``). What remains between points
and lines at 3-4 levels comes from the few-pixel-wide deep levels: their borders (reflection
padding, clamped bilinear up-sampling) and BatchNorm over a handful of pixels.

    python examples/fig_correlation_vs_depth.py [--out examples/figures] [--nets 24]
"""
from __future__ import annotations

import argparse
import pathlib

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tfdip.kernels import (DIP_INPUT_MEAN, DIP_INPUT_VARIANCE, InputNoise, kernel_of,
                           monte_carlo_covariance)
from tfdip.nets import ConvStackSpec, SkipSpec

MAX_DISTANCE = 10
UNIT_INPUT = dict(input_variance=1.0, input_mean=0.0)


def conv_stack(depth: int) -> ConvStackSpec:
    return ConvStackSpec(input_channels=32, channels=64, depth=depth, activation="relu",
                         output_channels=8)


def encoder_decoder(levels: int) -> SkipSpec:
    return SkipSpec(input_channels=32, output_channels=8, channels_down=(64,) * levels,
                    channels_up=(64,) * levels, channels_skip=0, init="gaussian",
                    need_sigmoid=False)


def analytic_curve(spec, inputs, image_size=None):
    """Correlation along a row at real distances 0 .. MAX_DISTANCE."""
    distance = np.linspace(0.0, MAX_DISTANCE, 201)
    offsets = tf.constant(np.stack([np.zeros_like(distance), distance], axis=-1))
    inputs = dict(dict(input_variance=DIP_INPUT_VARIANCE, input_mean=DIP_INPUT_MEAN), **inputs)
    code = InputNoise(inputs["input_variance"], inputs["input_mean"], inputs["input_smoothing"])
    cov = kernel_of(spec.build(), code, image_size=image_size)
    return distance, cov.correlation(offsets).numpy()


def monte_carlo_points(spec, inputs, nets: int, image_size: int, margin: int, seed: int):
    """Correlation along a row at integer distances, with standard errors (ratio, first order)."""
    estimate = monte_carlo_covariance(spec, num_nets=nets, image_size=image_size,
                                      max_offset=MAX_DISTANCE, margin=margin, seed=seed, **inputs)
    row = estimate.mean[MAX_DISTANCE, MAX_DISTANCE:]
    error = estimate.standard_error[MAX_DISTANCE, MAX_DISTANCE:]
    return np.arange(MAX_DISTANCE + 1), row / row[0], error / row[0]


def panel(axis, title, cases, nets: int):
    for seed, (label, spec, inputs, image_size, margin) in enumerate(cases):
        distance, curve = analytic_curve(spec, inputs)
        line, = axis.plot(distance, curve, label=label)
        if isinstance(spec, SkipSpec):
            axis.plot(*analytic_curve(spec, inputs, image_size), "--", lw=1,
                      color=line.get_color())
        r, points, error = monte_carlo_points(spec, inputs, nets, image_size, margin, seed)
        axis.errorbar(r, points, yerr=error, fmt="o", ms=3.5, color=line.get_color(), capsize=2)
    axis.set_title(title)
    axis.set_xlabel("distance |t1 - t2| (px, along a row)")
    axis.set_ylabel("K(r) / K(0)")
    axis.set_ylim(-0.05, 1.02)
    axis.legend(fontsize=8)


def main(out: pathlib.Path, nets: int) -> pathlib.Path:
    figure = Figure(figsize=(12, 9), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)
    panel(axes[0, 0], "conv-only ReLU stack, input smoothing s = 2",
          [(f"d = {d}", conv_stack(d), dict(UNIT_INPUT, input_smoothing=2.0), 48, d)
           for d in (1, 2, 3, 4)], nets)
    panel(axes[0, 1], "conv-only ReLU stack, depth d = 3",
          [(f"s = {s:g}", conv_stack(3), dict(UNIT_INPUT, input_smoothing=s), 48, 3)
           for s in (0.0, 1.0, 2.0, 4.0)], nets)
    panel(axes[1, 0], "encoder-decoder (BN, LeakyReLU, bilinear), DIP input, s = 0",
          [(f"{levels} level{'s' * (levels > 1)}", encoder_decoder(levels),
            dict(input_smoothing=0.0), 128, 16) for levels in (1, 2, 3, 4)], nets)
    panel(axes[1, 1], "encoder-decoder, 2 levels, DIP input",
          [(f"s = {s:g}", encoder_decoder(2), dict(input_smoothing=s), 128, 16)
           for s in (0.0, 1.0, 2.0, 4.0)], nets)
    figure.suptitle("DIP kernels: correlation vs distance (lines: analytic, points: "
                    f"{nets} random networks of width 64)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "correlation_vs_depth.png"
    figure.savefig(path, dpi=100)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).parent / "figures")
    parser.add_argument("--nets", type=int, default=24, help="random networks per Monte-Carlo curve")
    args = parser.parse_args()
    print(main(args.out, args.nets))
