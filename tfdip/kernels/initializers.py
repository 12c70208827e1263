"""The mean and variance of one entry of a weight drawn by a Keras initialiser.

The infinite-width covariance of a layer depends on its random weights only through these two
numbers per weight tensor: a convolution with ``fan_in`` inputs per output and i.i.d. zero-mean
weights of variance ``v`` has ``sigma_w^2 = fan_in * v`` (reference.md section 5), whatever the
distribution. :func:`moments` reads them from the initialiser and the weight's shape:

- ``Zeros``, ``Ones``, ``Constant(c)``: mean ``c``, variance 0;
- ``RandomNormal(m, s)``: ``m``, ``s^2``; ``TruncatedNormal(m, s)`` (cut at 2 s): ``m``,
  ``s^2 (1 - 4 phi(2) / (2 Phi(2) - 1)) = 0.7737 s^2``;
- ``RandomUniform(a, b)``: ``(a + b) / 2``, ``(b - a)^2 / 12`` (tfdip's ``init="torch"``,
  U(+-1/sqrt(fan_in)), has variance ``1 / (3 fan_in)``);
- ``VarianceScaling(scale, mode)`` and its subclasses (``GlorotUniform`` / ``GlorotNormal``:
  ``scale = 1``, ``"fan_avg"``; ``HeUniform`` / ``HeNormal``: 2, ``"fan_in"``; ``LecunUniform`` /
  ``LecunNormal``: 1, ``"fan_in"``): mean 0, variance ``scale / n`` with ``n`` the fan-in, the
  fan-out or their average (at least 1), for every distribution (Keras rescales the truncated
  normal to keep that variance).

Fans follow Keras: for a kernel of shape ``(k_1, ..., k_d, C_in, C_out)``,
``fan_in = C_in prod k``, ``fan_out = C_out prod k``; ``input_axes`` / ``output_axes`` override.
"""
from __future__ import annotations

import math

import keras

from tfdip.errors import TfdipError

TRUNCATED_NORMAL_VARIANCE = 1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(
    2.0 / math.sqrt(2.0))
"""Variance of a standard normal truncated to [-2, 2] (Keras' truncation): 0.7737."""


def fans(shape, input_axes=None, output_axes=None):
    """``(fan_in, fan_out)`` of a weight of ``shape``, as Keras' ``VarianceScaling`` counts them."""
    shape = tuple(int(n) for n in shape)
    if input_axes is not None and output_axes is not None:
        return (math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes))
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def moments(initializer, shape):
    """``(mean, variance)`` of each entry of a weight of ``shape`` drawn by ``initializer``.

    ``initializer`` is a ``keras.initializers.Initializer`` or its name (``"zeros"``,
    ``"glorot_uniform"``, ...). Raises :class:`TfdipError` for an initialiser with no rule here
    (``Orthogonal``, ``Identity``, a custom one).
    """
    init = keras.initializers.get(initializer)
    if isinstance(init, keras.initializers.Zeros):
        return 0.0, 0.0
    if isinstance(init, keras.initializers.Ones):
        return 1.0, 0.0
    if isinstance(init, keras.initializers.Constant):
        return float(init.value), 0.0
    if isinstance(init, keras.initializers.RandomNormal):
        return float(init.mean), float(init.stddev) ** 2
    if isinstance(init, keras.initializers.TruncatedNormal):
        return float(init.mean), float(init.stddev) ** 2 * TRUNCATED_NORMAL_VARIANCE
    if isinstance(init, keras.initializers.RandomUniform):
        low, high = float(init.minval), float(init.maxval)
        return (low + high) / 2.0, (high - low) ** 2 / 12.0
    if isinstance(init, keras.initializers.VarianceScaling):
        fan_in, fan_out = fans(shape, init.input_axes, init.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[init.mode]
        return 0.0, float(init.scale) / max(1.0, fan)
    raise TfdipError(f"the initializer {type(init).__name__} has no variance rule; use a normal, "
                     "uniform, constant or variance-scaling initializer")
