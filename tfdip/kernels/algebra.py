"""The covariance algebra: the stationary covariance of a wide random conv net, one layer at a time.

A :class:`Covariance` is the second moment ``K(r) = E[f(t) f(t + r)]`` of one channel of a layer, as a
function of the 2-D offset ``r = t2 - t1`` (``(row, column)``, real values allowed), in the limit of
infinitely many channels with weights ``N(0, sigma_w^2 / fan_in)`` and biases ``N(0, sigma_b^2)``
(reference.md section 5; the idea of neural-tangents' ``stax``). Each layer is a node wrapping the
covariance of its input; nodes are cheap Python objects, evaluated lazily in TensorFlow so that
gradients reach every parameter (floats, tensors or ``tf.Variable``\\ s). For zero-mean pre-activations
the second moment is the covariance; :class:`Centered` turns a second moment into a covariance.

Evaluation: ``cov(offsets)`` with ``offsets`` of shape ``E + [2]`` returns ``batch + E`` where
``batch`` is the broadcast shape of the parameters. ``cov.moments(offsets, example_ndims)`` is the
general form: parameters are padded with ``example_ndims`` trailing ones and broadcast against
``offsets.shape[:-1]`` (the convention of TFP kernels), and it also returns ``K(0)`` and
``K(infinity)`` (what the non-linearities and BatchNorm need), each of shape
``batch + [1] * example_ndims``.

Approximations (the docstrings of the nodes say where): borders and their padding are ignored (the
covariance is that of an infinite image); nearest / bilinear up-sampling makes the covariance
cyclostationary and :class:`Upsample` keeps its phase average, so the maps after it see the
phase-averaged kernel; :class:`BatchNorm` uses the statistics of an infinite image or a stationary
approximation of those of a finite one.

Example, the two-layer conv-ReLU-conv net on white noise (``K(0) = 1/2``, ``K(r != 0) = 1/(2 pi)``)::

    cov = InputNoise(variance=1.0).conv().relu().conv()
    cov(offset_grid(2))
"""
from __future__ import annotations

import abc
from typing import NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.kernels import lattice, maps

UPSAMPLE_METHODS = ("band_limited", "nearest", "bilinear")
ACTIVATIONS = ("leaky_relu",) + tuple(maps.ACTIVATION_MAPS)
DIP_INPUT_MEAN = 0.05
"""Mean of DIP's input code z ~ U(0, 0.1)."""
DIP_INPUT_VARIANCE = 0.01 / 12.0
"""Variance of DIP's input code z ~ U(0, 0.1)."""


class Moments(NamedTuple):
    """A second moment at the requested offsets, at offset 0 and far away (``|r| -> infinity``)."""

    value: tf.Tensor
    at_zero: tf.Tensor
    at_infinity: tf.Tensor


def _parameter(x, dtype, example_ndims: int):
    """``x`` as a ``dtype`` tensor padded with ``example_ndims`` trailing axes of size 1."""
    return tf.convert_to_tensor(x, dtype=dtype)[(...,) + (tf.newaxis,) * example_ndims]


def as_offsets(offsets):
    """Offsets as a float tensor of shape ``[..., 2]`` (integer input becomes float32)."""
    offsets = tf.convert_to_tensor(offsets, dtype_hint=tf.float32)
    if not offsets.dtype.is_floating:
        offsets = tf.cast(offsets, tf.float32)
    if offsets.shape.rank is None or offsets.shape.rank < 1 or offsets.shape[-1] != 2:
        raise TfdipError(f"offsets must have shape [..., 2] (row, column), got {offsets.shape}")
    return offsets


class Covariance(abc.ABC):
    """A stationary (or phase-averaged) second moment ``K(r)`` of one channel; see the module docstring."""

    @abc.abstractmethod
    def moments(self, offsets, example_ndims: int) -> Moments:
        """``K`` at ``offsets`` (shape ``[..., 2]``, float), at 0 and at infinity."""

    def __call__(self, offsets, example_ndims: int | None = None):
        """``K(offsets)``; by default every axis of ``offsets`` but the last is an example axis.

        Same values as :meth:`moments`, faster for many offsets: when they are all integers and
        the window holding them is no larger than their number (pixel coordinates), ``K`` is
        tabulated once on that window and gathered.
        """
        offsets = as_offsets(offsets)
        if example_ndims is None:
            example_ndims = offsets.shape.rank - 1
        lo, hi = lattice.window(offsets)
        tabulate = tf.logical_and(
            tf.reduce_all(tf.equal(offsets, tf.round(offsets))),
            tf.reduce_prod(tf.cast(hi - lo + 1, tf.int64)) <= tf.size(offsets, tf.int64) // 2)
        return tf.cond(tabulate, lambda: self._tabulated(offsets, lo, hi, example_ndims),
                       lambda: self.moments(offsets, example_ndims).value)

    def _tabulated(self, offsets, lo, hi, example_ndims):
        table = self.moments(lattice.window_grid(lo, hi, offsets.dtype), example_ndims=2).value
        return lattice.gather(table, lo, offsets, example_ndims)

    def correlation(self, offsets, example_ndims: int | None = None):
        """``K(r) / K(0)``."""
        offsets = as_offsets(offsets)
        if example_ndims is None:
            example_ndims = offsets.shape.rank - 1
        moments = self.moments(offsets, example_ndims)
        return moments.value / moments.at_zero

    # Layers, written after the covariance they act on (``cov.conv().relu().conv()``).
    def conv(self, sigma_w=1.0, sigma_b=0.0) -> "Covariance":
        """Convolution of any filter size, stride 1: ``sigma_b^2 + sigma_w^2 K``."""
        return Affine(self, sigma_w * sigma_w, sigma_b * sigma_b)

    def bias(self, sigma_b) -> "Covariance":
        """Adding a random bias ``N(0, sigma_b^2)``: ``K + sigma_b^2``."""
        return Affine(self, 1.0, sigma_b * sigma_b)

    def activation(self, name: str, negative_slope=0.2, centered: bool = False) -> "Covariance":
        return Activation(self, name, negative_slope, centered)

    def relu(self) -> "Covariance":
        return Activation(self, "relu")

    def leaky_relu(self, negative_slope=0.2) -> "Covariance":
        return Activation(self, "leaky_relu", negative_slope)

    def erf(self) -> "Covariance":
        return Activation(self, "erf")

    def batch_norm(self, gain=1.0, epsilon=0.0, image_shape=None) -> "Covariance":
        return BatchNorm(self, gain, epsilon, image_shape)

    def downsample(self, stride=2) -> "Covariance":
        return Downsample(self, stride)

    def avg_pool(self, size: int = 2) -> "Covariance":
        return AvgPool(self, size)

    def upsample(self, factor: int = 2, method: str = "bilinear") -> "Covariance":
        return Upsample(self, factor, method)

    def centered(self, mean) -> "Covariance":
        return Centered(self, mean)


class InputNoise(Covariance):
    """The network input: per channel, white noise (``variance``, ``mean``) smoothed by a Gaussian of std ``smoothing``.

    ``K(r) = variance * rho_s(r) + mean^2`` with ``rho_s(r) = exp(-|r|^2 / (4 s^2))`` (the filter is
    normalised to keep the variance) and, for ``s = 0``, the lattice delta (:func:`maps.hat` between
    lattice points). DIP's input U(0, 0.1) is ``variance = 0.01 / 12``, ``mean = 0.05``.
    """

    def __init__(self, variance=1.0, mean=0.0, smoothing=0.0):
        self.variance, self.mean, self.smoothing = variance, mean, smoothing

    @classmethod
    def dip(cls, smoothing=0.0) -> "InputNoise":
        """DIP's input code U(0, 0.1): ``variance = 0.01 / 12``, ``mean = 0.05``."""
        return cls(DIP_INPUT_VARIANCE, DIP_INPUT_MEAN, smoothing)

    def moments(self, offsets, example_ndims):
        variance, mean, smoothing = (_parameter(p, offsets.dtype, example_ndims)
                                     for p in (self.variance, self.mean, self.smoothing))
        return Moments(maps.input_noise(offsets, variance, mean, smoothing),
                       variance + tf.square(mean), tf.square(mean))


class Affine(Covariance):
    """``bias_variance + weight_variance * K``: a convolution (stride 1, any filter size) or a bias."""

    def __init__(self, inner: Covariance, weight_variance, bias_variance):
        self.inner, self.weight_variance, self.bias_variance = inner, weight_variance, bias_variance

    def moments(self, offsets, example_ndims):
        inner = self.inner.moments(offsets, example_ndims)
        weight, bias = (_parameter(p, offsets.dtype, example_ndims)
                        for p in (self.weight_variance, self.bias_variance))
        return Moments(*(maps.affine(k, weight, bias) for k in inner))


class Activation(Covariance):
    """A point-wise non-linearity (``relu``, ``leaky_relu``, ``erf``, ``erf_large_variance``, ``sigmoid``)
    of a zero-mean Gaussian field.

    ``C(r) = map(K(0), K(r), K(0))`` with the maps of :mod:`tfdip.kernels.maps`: the second moment
    of the activations (they are not zero-mean). ``centered=True`` gives their covariance
    ``C - m^2`` instead, ``m = E[phi(u)]`` the activation's mean (:func:`maps.activation_mean`).
    """

    def __init__(self, inner: Covariance, name: str, negative_slope=0.2, centered: bool = False):
        if name not in ACTIVATIONS:
            raise TfdipError(f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}")
        self.inner, self.name, self.negative_slope = inner, name, negative_slope
        self.subtract_mean = bool(centered)

    def moments(self, offsets, example_ndims):
        inner = self.inner.moments(offsets, example_ndims)
        slope = _parameter(self.negative_slope, offsets.dtype, example_ndims)
        variance = inner.at_zero
        removed = (tf.square(maps.activation_mean(self.name, variance, slope)) if self.subtract_mean
                   else 0.0)
        return Moments(*(maps.activation(self.name, variance, k, variance, slope) - removed
                         for k in inner))


class BatchNorm(Covariance):
    """BatchNorm over the spatial axes of one image: ``gain (K - L) / (K(0) - L + epsilon)``.

    ``gain`` is ``E[gamma^2]`` (1 for gamma = 1, 1/3 for gamma ~ U(0, 1)). ``L`` is what the image
    mean takes away: ``K(infinity)`` for an infinite image (:func:`maps.batch_norm`) or, given the
    ``image_shape`` ``(H, W)`` at this layer, the mean covariance of two pixels of the image,
    ``L = sum_r K(r) (H - |r_0|)(W - |r_1|) / (H W)^2``. The finite-image form still treats the
    result as stationary (it drops the position dependence of ``mean_t K(t1, t)``).
    """

    def __init__(self, inner: Covariance, gain=1.0, epsilon=0.0, image_shape=None):
        self.inner, self.gain, self.epsilon = inner, gain, epsilon
        self.image_shape = None if image_shape is None else tuple(int(n) for n in image_shape)

    def moments(self, offsets, example_ndims):
        if self.image_shape is None:
            inner = self.inner.moments(offsets, example_ndims)
            removed = inner.at_infinity
        else:
            inner, removed = self._moments_and_image_mean(offsets, example_ndims)
        gain, epsilon = (_parameter(p, offsets.dtype, example_ndims) for p in (self.gain, self.epsilon))
        normalise = lambda k: maps.batch_norm(k, inner.at_zero, removed, gain, epsilon)
        return Moments(*(normalise(k) for k in inner))

    def _moments_and_image_mean(self, offsets, example_ndims):
        """The inner moments at ``offsets`` and the image-mean covariance ``L``, in one evaluation
        (the offsets and the image's offsets share one example axis)."""
        rows, columns = self.image_shape
        window = tf.reshape(lattice.window_grid([1 - rows, 1 - columns], [rows - 1, columns - 1],
                                                offsets.dtype), [-1, 2])
        overlap = np.outer(rows - np.abs(np.arange(1 - rows, rows)),
                           columns - np.abs(np.arange(1 - columns, columns))).ravel()
        weights = tf.constant(overlap / float(rows * columns) ** 2, offsets.dtype)
        shape = tf.shape(offsets)
        lead = offsets.shape.rank - 1 - example_ndims
        queries = tf.reshape(offsets, tf.concat([shape[:lead], [-1, 2]], axis=0))
        window = tf.broadcast_to(window, tf.concat([shape[:lead], tf.shape(window)], axis=0))
        both = self.inner.moments(tf.concat([queries, window], axis=-2), example_ndims=1)
        count = tf.shape(queries)[-2]
        value = tf.reshape(both.value[..., :count],
                           tf.concat([tf.shape(both.value)[:-1], shape[lead:-1]], axis=0))
        repad = lambda k: k[..., 0][(...,) + (tf.newaxis,) * example_ndims]
        image_mean = tf.reduce_sum(both.value[..., count:] * weights, axis=-1)
        return (Moments(value, repad(both.at_zero), repad(both.at_infinity)),
                image_mean[(...,) + (tf.newaxis,) * example_ndims])


class Centered(Covariance):
    """``K - mean^2``: the covariance of a field with the given (known) mean, from its second moment."""

    def __init__(self, inner: Covariance, mean):
        self.inner, self.mean = inner, mean

    def moments(self, offsets, example_ndims):
        inner = self.inner.moments(offsets, example_ndims)
        mean_square = tf.square(_parameter(self.mean, offsets.dtype, example_ndims))
        return Moments(*(k - mean_square for k in inner))


class Downsample(Covariance):
    """Sub-sampling by ``stride`` (a strided convolution is a convolution then this): ``K'(r) = K(stride r)``.

    ``stride`` is one integer or a ``(row, column)`` pair.
    """

    def __init__(self, inner: Covariance, stride=2):
        self.inner = inner
        self.stride = (int(stride),) * 2 if np.ndim(stride) == 0 else tuple(int(s) for s in stride)

    def moments(self, offsets, example_ndims):
        return self.inner.moments(offsets * tf.constant(self.stride, offsets.dtype), example_ndims)


class WeightedSum(Covariance):
    """``sum_i w_i K_i``: a sum of independent branches (``w_i = 1``, a skip connection ``z = sum_i z_i``)
    or a concatenation followed by a fan-in-normalised convolution (``w_i = C_i / sum_j C_j``, the
    channel-weighted average; apply :meth:`Covariance.conv` after it)."""

    def __init__(self, branches: Sequence[Covariance], weights: Sequence):
        if len(branches) != len(weights) or not branches:
            raise TfdipError("WeightedSum needs one weight per branch and at least one branch")
        self.branches, self.weights = tuple(branches), tuple(weights)

    def moments(self, offsets, example_ndims):
        terms = [b.moments(offsets, example_ndims) for b in self.branches]
        weights = [_parameter(w, offsets.dtype, example_ndims) for w in self.weights]
        return Moments(*(sum(w * getattr(t, field) for w, t in zip(weights, terms))
                         for field in Moments._fields))


def add(*branches: Covariance) -> Covariance:
    """A skip connection ``z = sum_i z_i`` of independent branches: ``K = sum_i K_i``."""
    return WeightedSum(branches, [1.0] * len(branches))


def channel_average(branches: Sequence[Covariance], channels: Sequence[int]) -> Covariance:
    """The concatenation of branches with ``channels[i]`` channels each, as the next convolution sees it.

    A fan-in-normalised convolution over the concatenation weighs each channel's covariance by
    ``1 / sum_j C_j``: follow this with :meth:`Covariance.conv`.
    """
    total = float(sum(channels))
    return WeightedSum(branches, [c / total for c in channels])


class _LatticeFilter(Covariance):
    """A linear filter of the pixel grid, acting on the covariance tabulated at integer offsets.

    ``K'(n) = sum_k taps(k) U(downsample n + k)``, ``U`` the inner covariance with ``upsample - 1``
    zeros inserted between lattice points, on both axes; real offsets interpolate bilinearly between
    lattice points (see :mod:`tfdip.kernels.lattice`). The filters preserve constants, so
    ``K'(infinity) = K(infinity)``.
    """

    upsample = 1
    downsample = 1
    taps = None

    def moments(self, offsets, example_ndims):
        lo, hi = lattice.window(offsets)
        j_lo, j_hi = lattice.inner_window(lo, hi, self.upsample, self.taps, self.downsample)
        inner = self.inner.moments(lattice.window_grid(j_lo, j_hi, offsets.dtype), example_ndims=2)
        table = lattice.filter_table(inner.value, j_lo, lo, hi, self.upsample, self.taps,
                                     self.downsample)
        # The inner K(infinity) carries the inner parameters' axes padded for 2 example axes.
        at_infinity = inner.at_infinity[..., 0, 0][(...,) + (tf.newaxis,) * example_ndims]
        return Moments(lattice.interpolate(table, lo, offsets, example_ndims),
                       lattice.value_at_zero(table, lo, example_ndims), at_infinity)


class AvgPool(_LatticeFilter):
    """``size`` x ``size`` average pooling with stride ``size``: ``K'(r) = sum_{d, d'} K(size r + d - d') / size^4``."""

    def __init__(self, inner: Covariance, size: int = 2):
        self.inner, self.downsample = inner, int(size)
        self.taps = lattice.pooling_filter(self.downsample)


class Upsample(_LatticeFilter):
    """Up-sampling by an integer ``factor``.

    ``"band_limited"`` (an ideal low-pass interpolator): ``K'(r) = K(r / factor)``, stationary.
    ``"nearest"`` and ``"bilinear"`` (half-pixel centres, as ``tf.image.resize``): the output is
    cyclostationary, its covariance depends on the phase ``t mod factor`` of the first pixel (for
    nearest, two pixels in one block are copies, neighbours across blocks are not). This node gives
    the phase average ``K'(n) = sum_j g(n - factor j) K(j) / factor^2`` per axis pair, ``g`` the
    autocorrelation of the interpolation filter (:func:`lattice.upsampling_filter`), which is what
    averaging over positions measures. Layers after it receive the averaged kernel; the exact
    infinite-width result would carry every phase through them.
    """

    def __init__(self, inner: Covariance, factor: int = 2, method: str = "bilinear"):
        if method not in UPSAMPLE_METHODS:
            raise TfdipError(f"unknown up-sampling {method!r}; use one of {', '.join(UPSAMPLE_METHODS)}")
        self.inner, self.factor, self.method = inner, int(factor), method
        self.upsample = self.factor
        if method != "band_limited":
            self.taps = lattice.upsampling_filter(method, self.factor)

    def moments(self, offsets, example_ndims):
        if self.method == "band_limited":
            return self.inner.moments(offsets / self.factor, example_ndims)
        return super().moments(offsets, example_ndims)
