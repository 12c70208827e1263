"""Monte-Carlo check of the kernel algebra: the empirical output covariance of many random networks.

Draw ``num_nets`` networks of one Keras model (every weight re-drawn from the model's own
initialisers), feed each fresh inputs from the input model, and average ``y(t) y(t + r)`` over
positions, images, output channels and nets. Each net gives one average ``z_n(r)``; nets are
independent, so the standard error of the mean is ``std_n z_n(r) / sqrt(num_nets)`` and the squared
Frobenius error of the estimate is about ``sum_r se(r)^2`` when the analytic kernel is exact.
What remains above that is the finite-width error of the theory (and the approximations that
:func:`~tfdip.kernels.kernel_of` states).
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.kernels.algebra import DIP_INPUT_MEAN, DIP_INPUT_VARIANCE, InputNoise
from tfdip.kernels.lattice import offset_grid
from tfdip.kernels.network import as_model, output_mean

_INITIALISED_WEIGHTS = ("kernel", "bias", "gamma", "beta")


@dataclasses.dataclass(frozen=True)
class CovarianceEstimate:
    """``mean[i, j]`` estimates ``K(offsets[i, j])``, offsets ``(row, column)`` in ``[-R, R]^2``."""

    offsets: np.ndarray
    mean: np.ndarray
    standard_error: np.ndarray
    num_nets: int

    def compare(self, covariance) -> "Comparison":
        """Relative Frobenius error against an analytic :class:`~tfdip.kernels.algebra.Covariance`."""
        analytic = np.asarray(covariance(tf.constant(self.offsets, tf.float64)), np.float64)
        norm = np.linalg.norm(analytic)
        return Comparison(relative_error=float(np.linalg.norm(self.mean - analytic) / norm),
                          statistical_error=float(np.linalg.norm(self.standard_error) / norm),
                          analytic=analytic)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``relative_error = ||K_mc - K||_F / ||K||_F``; ``statistical_error = ||se||_F / ||K||_F``, its expected size
    from Monte-Carlo noise alone."""

    relative_error: float
    statistical_error: float
    analytic: np.ndarray


def sample_input(shape, smoothing=0.0, variance=DIP_INPUT_VARIANCE, mean=DIP_INPUT_MEAN,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Input codes ``(N, H, W, C)`` (float32) from the input model of :class:`~tfdip.kernels.algebra.InputNoise`.

    ``smoothing = 0``: i.i.d. uniform with the given mean and variance (the defaults are DIP's
    U(0, 0.1)). ``smoothing = s > 0``: a stationary Gaussian field per channel with covariance
    ``variance * exp(-|r|^2 / (4 s^2))`` plus ``mean``, drawn exactly by circulant embedding on a
    periodic grid padded by ``8 s``.
    """
    rng = np.random.default_rng() if rng is None else rng
    n, h, w, c = shape
    if smoothing == 0:
        half_width = np.sqrt(3.0 * variance)
        return rng.uniform(mean - half_width, mean + half_width, shape).astype(np.float32)
    rows, cols = (int(2 ** np.ceil(np.log2(size + 8 * smoothing))) for size in (h, w))
    dr = np.minimum(np.arange(rows), rows - np.arange(rows))[:, None]
    dc = np.minimum(np.arange(cols), cols - np.arange(cols))[None, :]
    spectrum = np.fft.fft2(np.exp(-(dr ** 2 + dc ** 2) / (4.0 * smoothing ** 2))).real
    amplitude = np.sqrt(np.maximum(spectrum, 0.0))[None, :, :, None]
    white = rng.standard_normal((n, rows, cols, c))
    field = np.fft.ifft2(amplitude * np.fft.fft2(white, axes=(1, 2)), axes=(1, 2)).real
    return (mean + np.sqrt(variance) * field[:, :h, :w, :]).astype(np.float32)


def _layers(model: keras.Model):
    """Every layer of ``model``, those of nested models included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def redraw_weights(model: keras.Model, seed: int) -> None:
    """Re-draw every kernel, bias and BatchNorm scale / offset of ``model`` from its own initialisers.

    Each initialiser is cloned with an integer seed derived from ``seed``, so the draw is
    deterministic and follows whatever distribution the network was built with. Layers of
    nested models are re-drawn too.
    """
    for layer_index, layer in enumerate(_layers(model)):
        for weight_index, name in enumerate(_INITIALISED_WEIGHTS):
            variable = getattr(layer, name, None)
            initializer = getattr(layer, f"{name}_initializer", None)
            if variable is None or initializer is None:
                continue
            config = initializer.get_config()
            if "seed" in config:
                config["seed"] = int(np.random.SeedSequence([seed, layer_index, weight_index])
                                     .generate_state(1)[0] >> 1)
            variable.assign(type(initializer).from_config(config)(variable.shape, variable.dtype))


def offset_products(outputs: np.ndarray, max_offset: int, margin: int = 0) -> np.ndarray:
    """``mean_t y(t) y(t + r)`` over images, channels and interior positions, ``r`` in ``[-R, R]^2``.

    ``outputs``: ``(N, H, W, C)``; positions ``t`` and ``t + r`` both stay ``margin`` pixels away
    from the border. Returns ``(2R + 1, 2R + 1)``, float64.
    """
    y = np.asarray(outputs, np.float64)
    if margin:
        y = y[:, margin:-margin, margin:-margin, :]
    h, w = y.shape[1:3]
    if min(h, w) <= max_offset:
        raise TfdipError(f"the interior ({h} x {w} pixels) is too small for offsets up to {max_offset}; "
                         "use a larger image_size or a smaller margin / max_offset")
    size = 2 * max_offset + 1
    products = np.empty((size, size))
    for i, dr in enumerate(range(-max_offset, max_offset + 1)):
        for j, dc in enumerate(range(-max_offset, max_offset + 1)):
            a = y[:, max(0, -dr): h - max(0, dr), max(0, -dc): w - max(0, dc)]
            b = y[:, max(0, dr): h + min(0, dr), max(0, dc): w + min(0, dc)]
            products[i, j] = np.mean(a * b)
    return products


def monte_carlo_covariance(network, num_nets: int = 64, image_size: int = 32, max_offset: int = 6,
                           input_smoothing=0.0, input_variance=DIP_INPUT_VARIANCE,
                           input_mean=DIP_INPUT_MEAN, images_per_net: int = 1, margin: int = 0,
                           seed: int = 0) -> CovarianceEstimate:
    """Estimate the output covariance of random networks on ``[-max_offset, max_offset]^2``.

    ``network`` is a Keras model (or an architecture description, built first). Comparable with
    ``kernel_of(network, InputNoise(input_variance, input_mean, input_smoothing))``: the outputs
    are centred on the mean that :func:`~tfdip.kernels.kernel_of` centres them on (1/2 after a
    sigmoid, 0 after a convolution). The network runs in training mode (BatchNorm on the
    statistics of each image, as DIP runs it). ``image_size`` must be divisible by every stride
    and pooling of the network. ``margin`` drops that many border pixels (where padding makes
    the covariance differ from the stationary one). Cost: ``num_nets`` forward passes of one
    image batch.
    """
    if num_nets < 2:
        raise TfdipError(f"num_nets must be >= 2 to estimate a standard error, got {num_nets}")
    model = as_model(network)
    input_covariance = InputNoise(input_variance, input_mean, input_smoothing)
    centre = output_mean(model, input_covariance, image_size=image_size)  # also checks the size
    forward = tf.function(lambda z: model(z, training=True), autograph=False)
    rng = np.random.default_rng(seed)
    shape = (images_per_net, image_size, image_size, model.inputs[0].shape[-1])
    per_net = []
    for net in range(num_nets):
        redraw_weights(model, seed=seed * 1_000_003 + net)
        inputs = sample_input(shape, input_smoothing, input_variance, input_mean, rng)
        outputs = forward(tf.constant(inputs)).numpy() - centre
        per_net.append(offset_products(outputs, max_offset, margin))
    per_net = np.stack(per_net)
    return CovarianceEstimate(offsets=offset_grid(max_offset, tf.float64).numpy(),
                              mean=per_net.mean(axis=0),
                              standard_error=per_net.std(axis=0, ddof=1) / np.sqrt(num_nets),
                              num_nets=num_nets)
