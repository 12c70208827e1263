"""The infinite-width covariance of a whole DIP generator, from the description that also builds it.

:func:`kernel_of` walks a :class:`~tfdip.nets.spec.ConvStackSpec` or :class:`~tfdip.nets.spec.SkipSpec`
layer by layer with the nodes of :mod:`tfdip.kernels.algebra`, so that one description gives both
the Keras network (``spec.build()``) and its kernel.

Weight variances per initialisation (``fan_in = C_in k^2``, ``fan_out = C_out k^2``); the limit of
infinitely many channels is Gaussian whatever the weight distribution, with these variances:

- ``"gaussian"``: ``sigma_w^2 = spec.sigma_w^2``, ``sigma_b^2 = spec.sigma_b^2`` (the theory's prior);
- ``"torch"``: U(+-1/sqrt(fan_in)) for weights and biases: ``sigma_w^2 = 1/3``,
  ``sigma_b^2 = 1 / (3 fan_in)``; BatchNorm gamma ~ U(0, 1) gives a gain ``E[gamma^2] = 1/3``;
- ``"keras"``: Glorot-uniform weights, ``sigma_w^2 = 2 fan_in / (fan_in + fan_out)``, zero biases.
"""
from __future__ import annotations

import numpy as np

from tfdip.errors import TfdipError
from tfdip.kernels import algebra
from tfdip.nets import init as net_init
from tfdip.nets.spec import ConvStackSpec, SkipSpec

DIP_INPUT_MEAN = 0.05
"""Mean of DIP's input code z ~ U(0, 0.1)."""
DIP_INPUT_VARIANCE = 0.01 / 12.0
"""Variance of DIP's input code z ~ U(0, 0.1)."""


def kernel_of(spec, input_smoothing=0.0, input_variance=DIP_INPUT_VARIANCE,
              input_mean=DIP_INPUT_MEAN, sigma_w=None, sigma_b=None,
              image_size=None) -> algebra.Covariance:
    """The covariance ``K(r)`` of one output channel of the network ``spec`` describes, for random weights.

    Args:
      spec: a ``ConvStackSpec`` or ``SkipSpec``.
      input_smoothing, input_variance, input_mean: the input code, i.i.d. per channel (see
        :class:`algebra.InputNoise`); the defaults are DIP's U(0, 0.1), unsmoothed.
      sigma_w, sigma_b: override ``spec.sigma_w`` / ``spec.sigma_b`` (``init="gaussian"`` only),
        e.g. with ``tf.Variable``\\ s to fit them.
      image_size: ``None`` (an infinite image) or the image's ``H`` (square) or ``(H, W)``:
        BatchNorm then removes the mean covariance over the image at each level's resolution
        instead of ``K(infinity)`` (:class:`algebra.BatchNorm`), which matters when the deep
        levels are only a few pixels wide. Must be a multiple of ``spec.size_multiple``.

    Returns:
      An :class:`algebra.Covariance`. With ``need_sigmoid`` it is the covariance of the sigmoid
      output about its mean 1/2 (a probit-mixture approximation, :func:`maps.sigmoid`); otherwise
      that of the zero-mean last convolution. Approximations: borders and padding are ignored (an
      infinite image), nearest / bilinear up-sampling is phase-averaged (:class:`algebra.Upsample`),
      BatchNorm's image statistics are those of an infinite image or, with ``image_size``, a
      stationary approximation of the finite one.
    """
    if spec.init != "gaussian" and (sigma_w is not None or sigma_b is not None):
        raise TfdipError(f"sigma_w / sigma_b only apply to init='gaussian', the spec has "
                         f"init={spec.init!r}; set init='gaussian' or drop them")
    layers = _Layers(spec, spec.sigma_w if sigma_w is None else sigma_w,
                     spec.sigma_b if sigma_b is None else sigma_b, _image_shape(spec, image_size))
    cov = algebra.InputNoise(input_variance, input_mean, input_smoothing)
    if isinstance(spec, ConvStackSpec):
        channels = spec.input_channels
        for _ in range(spec.depth):
            cov = layers.act(layers.conv(cov, channels, spec.channels, spec.filter_size))
            channels = spec.channels
    elif isinstance(spec, SkipSpec):
        if spec.downsample == "max":
            raise TfdipError("max-pool down-sampling has no closed-form kernel; "
                             "use downsample='stride' or 'avg'")
        if spec.activation == "erf" and spec.init == "torch":
            raise TfdipError("init='torch' scales BatchNorm outputs by gamma ~ U(0, 1), for which the "
                             "erf kernel has no closed form; use init='gaussian' or 'keras'")
        cov = _skip_level(cov, spec, layers, 0, spec.input_channels)
        channels = spec.channels_up[0]
    else:
        raise TfdipError(f"kernel_of needs a ConvStackSpec or SkipSpec, got {type(spec).__name__}")
    cov = layers.conv(cov, channels, spec.output_channels, 1)
    if spec.need_sigmoid:
        cov = algebra.Activation(cov, "sigmoid").centered(0.5)
    return cov


def _image_shape(spec, image_size):
    """``(H, W)`` or ``None``, checked against the spec's size multiple."""
    if image_size is None:
        return None
    shape = (int(image_size),) * 2 if np.ndim(image_size) == 0 else tuple(int(n) for n in image_size)
    if len(shape) != 2 or min(shape) < 1 or any(n % spec.size_multiple for n in shape):
        raise TfdipError(f"image_size must be H or (H, W), multiples of {spec.size_multiple} for "
                         f"this architecture, got {image_size}")
    return shape


class _Layers:
    """The spec's convolution, activation and BatchNorm as covariance maps."""

    def __init__(self, spec, sigma_w, sigma_b, image_shape):
        self.spec, self.sigma_w, self.sigma_b = spec, sigma_w, sigma_b
        self.image_shape = image_shape

    def conv(self, cov, channels_in: int, channels_out: int, size: int):
        fan_in, fan_out = channels_in * size * size, channels_out * size * size
        if self.spec.init == "gaussian":
            weight, bias = self.sigma_w * self.sigma_w, self.sigma_b * self.sigma_b
        elif self.spec.init == "torch":
            weight, bias = 1.0 / 3.0, 1.0 / (3.0 * fan_in)
        else:
            weight, bias = 2.0 * fan_in / (fan_in + fan_out), 0.0
        return algebra.Affine(cov, weight, bias if self.spec.need_bias else 0.0)

    def act(self, cov):
        return algebra.Activation(cov, self.spec.activation, self.spec.negative_slope)

    def bn(self, cov, level: int):
        """BatchNorm at ``level`` (resolution divided by ``2 ** level``)."""
        gain = 1.0 / 3.0 if self.spec.init == "torch" else 1.0
        shape = None if self.image_shape is None else tuple(n >> level for n in self.image_shape)
        return algebra.BatchNorm(cov, gain, net_init.bn_epsilon(self.spec), shape)

    def conv_bn_act(self, cov, channels_in: int, channels_out: int, size: int, level: int):
        return self.act(self.bn(self.conv(cov, channels_in, channels_out, size), level))


def _skip_level(cov, spec: SkipSpec, layers: _Layers, i: int, channels_in: int):
    """Level ``i`` of the hourglass (see :mod:`tfdip.nets.skip`) as covariance maps."""
    down, up, skip = spec.channels_down[i], spec.channels_up[i], spec.channels_skip[i]
    deep = layers.conv(cov, channels_in, down, spec.filter_size_down)
    deep = deep.downsample(2) if spec.downsample == "stride" else deep.avg_pool(2)
    deep = layers.act(layers.bn(deep, i + 1))
    deep = layers.conv_bn_act(deep, down, down, spec.filter_size_down, i + 1)
    deep_channels = down
    if i + 1 < spec.levels:
        deep = _skip_level(deep, spec, layers, i + 1, down)
        deep_channels = spec.channels_up[i + 1]
    merged = layers.bn(deep.upsample(2, spec.upsample), i)
    if skip > 0:
        branch = layers.bn(layers.conv_bn_act(cov, channels_in, skip, spec.filter_skip_size, i), i)
        merged = algebra.channel_average([branch, merged], [skip, deep_channels])
    cov = layers.conv_bn_act(merged, skip + deep_channels, up, spec.filter_size_up, i)
    if spec.need1x1_up:
        cov = layers.conv_bn_act(cov, up, up, 1, i)
    return cov
