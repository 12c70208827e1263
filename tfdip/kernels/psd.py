"""TFP positive-semidefinite kernels of the DIP theory, over 2-D pixel coordinates.

- :class:`DIPKernel`: the covariance of a whole network (``kernel_of(model)``), stationary.
- :class:`InputNoiseKernel`: the input code's covariance (smoothed white noise plus a mean).
- :class:`ArcCosineKernel` (ReLU / LeakyReLU) and :class:`ArcSineKernel` (erf): ``depth`` layers of
  a wide conv net composed over any base kernel (by default :class:`InputNoiseKernel`).
- :func:`baseline_kernel`: TFP's RBF and Matern kernels, the GP baselines.

Index points have shape ``[..., 2]`` (``(row, column)``, ``feature_ndims = 1``). Parameters may be
Python numbers, tensors or ``tf.Variable``\\ s (to fit them by marginal likelihood); their shapes
give the kernel's ``batch_shape``. With only Python numbers the kernel's ``dtype`` is ``None`` and
it computes in the dtype of the index points (float32 or float64); otherwise the parameters share
one dtype and the index points must have it.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import dtype_util, parameter_properties, tensor_util

from tfdip.errors import TfdipError
from tfdip.kernels import maps
from tfdip.kernels.algebra import DIP_INPUT_MEAN, DIP_INPUT_VARIANCE, InputNoise
from tfdip.kernels.network import as_model, image_shape, kernel_of

psd_kernels = tfp.math.psd_kernels
BASELINES = {
    "rbf": psd_kernels.ExponentiatedQuadratic,
    "matern12": psd_kernels.MaternOneHalf,
    "matern32": psd_kernels.MaternThreeHalves,
    "matern52": psd_kernels.MaternFiveHalves,
}


def baseline_kernel(name: str, amplitude=1.0, length_scale=1.0):
    """A TFP baseline kernel by name: ``"rbf"`` (``ExponentiatedQuadratic``) or ``"matern12/32/52"``."""
    if name not in BASELINES:
        raise TfdipError(f"unknown baseline kernel {name!r}; use one of {', '.join(BASELINES)}")
    return BASELINES[name](amplitude=amplitude, length_scale=length_scale)


def _convert(parameters: dict):
    """``(dtype, converted)``: tensors, variables and NumPy values fix the dtype and the rest follow it;
    with Python numbers only the dtype is ``None`` and they stay numbers."""
    typed = [v for v in parameters.values()
             if tf.is_tensor(v) or isinstance(v, (tf.Variable, np.ndarray, np.generic))]
    if not typed:
        return None, dict(parameters)
    dtype = dtype_util.common_dtype(typed, tf.float32)
    return dtype, {name: tensor_util.convert_nonref_to_tensor(v, dtype=dtype, name=name)
                   for name, v in parameters.items()}


def _pad(x, example_ndims: int, dtype):
    return tf.convert_to_tensor(x, dtype=dtype)[(...,) + (tf.newaxis,) * example_ndims]


def _positive():
    """A positive parameter whose default is not 0 (Softplus, as TFP's own kernels)."""
    return parameter_properties.ParameterProperties(
        default_constraining_bijector_fn=tfp.bijectors.Softplus)


def _unconstrained():
    """A parameter the kernel depends on through its square or absolute value, or any real one
    (identity bijector: its default may be 0, which Softplus cannot reach)."""
    return parameter_properties.ParameterProperties()


class InputNoiseKernel(psd_kernels.AutoCompositeTensorPsdKernel):
    """``k(x, x') = variance * rho_s(x' - x) + mean^2``: a network input channel (see :func:`maps.input_noise`).

    ``rho_s(r) = exp(-|r|^2 / (4 s^2))`` for ``smoothing = s > 0`` (white noise smoothed by a
    normalised Gaussian of std ``s`` pixels) and the lattice delta for ``s = 0``. DIP's input
    U(0, 0.1) is ``variance = 0.01 / 12``, ``mean = 0.05``.
    """

    def __init__(self, variance=1.0, mean=0.0, smoothing=0.0, validate_args=False,
                 name="InputNoiseKernel"):
        parameters = dict(locals())
        with tf.name_scope(name):
            dtype, p = _convert(dict(variance=variance, mean=mean, smoothing=smoothing))
            self._variance, self._mean, self._smoothing = p["variance"], p["mean"], p["smoothing"]
            super().__init__(feature_ndims=1, dtype=dtype, name=name, validate_args=validate_args,
                             parameters=parameters)

    @property
    def variance(self):
        return self._variance

    @property
    def mean(self):
        return self._mean

    @property
    def smoothing(self):
        return self._smoothing

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(variance=_positive(), mean=_unconstrained(), smoothing=_unconstrained())

    def _apply(self, x1, x2, example_ndims=0):
        pad = lambda v: _pad(v, example_ndims, x1.dtype)
        return maps.input_noise(x2 - x1, pad(self.variance), pad(self.mean), pad(self.smoothing))


class _LayeredKernel(psd_kernels.AutoCompositeTensorPsdKernel):
    """``depth`` conv + non-linearity layers of a wide net over a base kernel.

    ``K_0 = sigma_b^2 + sigma_w^2 k_base`` (the first convolution acting on the input, whose second
    moment is ``k_base``), ``K_l = sigma_b^2 + sigma_w^2 phi(K_{l-1})`` for ``l = 1 .. depth``, and
    ``k = amplitude^2 K_depth``: the output covariance of ``depth`` x [conv, act] then conv. ``phi``
    maps ``(K(x, x), K(x, x'), K(x', x'))`` to ``E[phi(u) phi(u')]``; subclasses say which.
    """

    def __init__(self, base_kernel, depth, sigma_w, sigma_b, amplitude, extra, validate_args,
                 parameters, name):
        if int(depth) < 1:
            raise TfdipError(f"depth must be >= 1, got {depth}")
        with tf.name_scope(name):
            base_kernel = InputNoiseKernel() if base_kernel is None else base_kernel
            if base_kernel.feature_ndims != 1:
                raise TfdipError("the base kernel must have feature_ndims = 1")
            dtype, p = _convert(dict(sigma_w=sigma_w, sigma_b=sigma_b, amplitude=amplitude, **extra))
            if dtype is None:
                dtype = base_kernel.dtype
            self._base_kernel, self._depth = base_kernel, int(depth)
            self._sigma_w, self._sigma_b, self._amplitude = p["sigma_w"], p["sigma_b"], p["amplitude"]
            self._extra = {k: p[k] for k in extra}
            super().__init__(feature_ndims=1, dtype=dtype, name=name, validate_args=validate_args,
                             parameters=parameters)

    @property
    def base_kernel(self):
        return self._base_kernel

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def sigma_w(self):
        return self._sigma_w

    @property
    def sigma_b(self):
        return self._sigma_b

    @property
    def amplitude(self):
        return self._amplitude

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(base_kernel=parameter_properties.BatchedComponentProperties(),
                    sigma_w=_positive(), sigma_b=_unconstrained(), amplitude=_positive())

    def _phi(self, k11, k12, k22, example_ndims):
        raise NotImplementedError

    def _apply(self, x1, x2, example_ndims=0):
        base = self.base_kernel
        k11, k12, k22 = (base.apply(a, b, example_ndims) for a, b in ((x1, x1), (x1, x2), (x2, x2)))
        dtype = k12.dtype
        weight = tf.square(_pad(self.sigma_w, example_ndims, dtype))
        bias = tf.square(_pad(self.sigma_b, example_ndims, dtype))
        k11, k12, k22 = (maps.affine(k, weight, bias) for k in (k11, k12, k22))
        for _ in range(self.depth):
            k11, k12, k22 = (maps.affine(self._phi(a, b, c, example_ndims), weight, bias)
                             for a, b, c in ((k11, k11, k11), (k11, k12, k22), (k22, k22, k22)))
        return tf.square(_pad(self.amplitude, example_ndims, dtype)) * k12


class ArcCosineKernel(_LayeredKernel):
    """ReLU (``negative_slope = 0``) or LeakyReLU layers over a base kernel: the arc-cosine kernel.

    ``phi = a K12 + (1 - a)^2 sqrt(K11 K22) / (2 pi) (sin t + (pi - t) cos t)``,
    ``cos t = K12 / sqrt(K11 K22)`` (see :func:`maps.leaky_relu`); layered as :class:`_LayeredKernel`
    says. With the default base (unit white noise), ``depth = 1``, ``sigma_w = 1``: ``k(x, x) = 1/2``
    and ``k(x, x') = 1 / (2 pi)`` off the diagonal.
    """

    def __init__(self, base_kernel=None, depth=1, negative_slope=0.0, sigma_w=1.0, sigma_b=0.0,
                 amplitude=1.0, validate_args=False, name="ArcCosineKernel"):
        parameters = dict(locals())
        super().__init__(base_kernel, depth, sigma_w, sigma_b, amplitude,
                         dict(negative_slope=negative_slope), validate_args, parameters, name)

    @property
    def negative_slope(self):
        return self._extra["negative_slope"]

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(super()._parameter_properties(dtype), negative_slope=_unconstrained())

    def _phi(self, k11, k12, k22, example_ndims):
        slope = _pad(self.negative_slope, example_ndims, k12.dtype)
        return maps.leaky_relu(k11, k12, k22, slope)


class ArcSineKernel(_LayeredKernel):
    """erf layers over a base kernel: the arcsine kernel (Williams 1997).

    ``phi = (2/pi) arcsin(2 K12 / sqrt((1 + 2 K11)(1 + 2 K22)))``, or with ``large_variance=True``
    the poster's scale-free form ``(2/pi) arcsin(K12 / sqrt(K11 K22))``; layered as
    :class:`_LayeredKernel` says.
    """

    def __init__(self, base_kernel=None, depth=1, sigma_w=1.0, sigma_b=0.0, amplitude=1.0,
                 large_variance=False, validate_args=False, name="ArcSineKernel"):
        parameters = dict(locals())
        self._large_variance = bool(large_variance)
        super().__init__(base_kernel, depth, sigma_w, sigma_b, amplitude, {}, validate_args,
                         parameters, name)

    @property
    def large_variance(self) -> bool:
        return self._large_variance

    def _phi(self, k11, k12, k22, example_ndims):
        if self.large_variance:
            return maps.erf_large_variance(k11, k12, k22)
        return maps.erf(k11, k12, k22)


class DIPKernel(psd_kernels.AutoCompositeTensorPsdKernel):
    """The covariance of a network's output over pixel coordinates: ``amplitude^2 K(x' - x)``.

    ``K = kernel_of(network, InputNoise(input_variance, input_mean, input_smoothing),
    image_size=image_size, sigma_w=sigma_w, sigma_b=sigma_b)`` (see :func:`tfdip.kernels.kernel_of`
    for the networks it reads and the approximations it makes): stationary, exact at integer
    offsets, bilinearly interpolated between them where the network up-samples or pools. The
    covariance graph is built once, at construction; parameters that are variables are read at
    every evaluation.

    Args:
      network: a Keras model of supported layers (e.g. from :mod:`tfdip.nets`), or an
        architecture description (``SkipSpec`` / ``ConvStackSpec``), built once here.
      amplitude: output scale (``None``: 1). Positive (Softplus bijector).
      input_smoothing, input_variance, input_mean: the input code (DIP's U(0, 0.1) by default).
        ``input_variance`` is positive (Softplus); ``input_mean`` and ``input_smoothing`` are
        unconstrained (the kernel depends on ``|input_smoothing|``, 0 is white noise).
      sigma_w, sigma_b: the scales of Gaussian weights and biases (``None``: the network's; see
        :func:`tfdip.kernels.kernel_of`). ``sigma_w`` is positive (Softplus); ``sigma_b``
        (default 0) is unconstrained, the kernel depending on ``sigma_b^2``.
      image_size: ``None`` or the image's ``H`` or ``(H, W)``, for BatchNorm's finite-image
        statistics.
    """

    def __init__(self, network, amplitude=None, input_smoothing=0.0,
                 input_variance=DIP_INPUT_VARIANCE, input_mean=DIP_INPUT_MEAN, sigma_w=None,
                 sigma_b=None, image_size=None, validate_args=False, name="DIPKernel"):
        parameters = dict(locals())
        with tf.name_scope(name):
            self._spec = None if isinstance(network, keras.Model) else network
            network = as_model(network)
            parameters["network"] = network
            image_size = image_shape(image_size)
            parameters["image_size"] = image_size
            dtype, p = _convert(dict(amplitude=amplitude, input_smoothing=input_smoothing,
                                     input_variance=input_variance, input_mean=input_mean,
                                     sigma_w=sigma_w, sigma_b=sigma_b))
            self._network, self._image_size = network, image_size
            for key, value in p.items():
                setattr(self, f"_{key}", value)
            self._covariance = kernel_of(
                network, InputNoise(self._input_variance, self._input_mean, self._input_smoothing),
                image_size=image_size, sigma_w=self._sigma_w, sigma_b=self._sigma_b)
            super().__init__(feature_ndims=1, dtype=dtype, name=name, validate_args=validate_args,
                             parameters=parameters)

    @property
    def network(self) -> keras.Model:
        """The Keras model whose output covariance this kernel is."""
        return self._network

    @property
    def spec(self):
        """The architecture description the network was built from (``None`` if given a model)."""
        return self._spec

    @property
    def image_size(self):
        return self._image_size

    @property
    def amplitude(self):
        return self._amplitude

    @property
    def input_smoothing(self):
        return self._input_smoothing

    @property
    def input_variance(self):
        return self._input_variance

    @property
    def input_mean(self):
        return self._input_mean

    @property
    def sigma_w(self):
        return self._sigma_w

    @property
    def sigma_b(self):
        return self._sigma_b

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(amplitude=_positive(), input_smoothing=_unconstrained(),
                    input_variance=_positive(), input_mean=_unconstrained(), sigma_w=_positive(),
                    sigma_b=_unconstrained())

    def covariance(self):
        """The :class:`~tfdip.kernels.algebra.Covariance` this kernel evaluates (without the amplitude)."""
        return self._covariance

    def _apply(self, x1, x2, example_ndims=0):
        value = self._covariance(x2 - x1, example_ndims)
        if self.amplitude is None:
            return value
        return tf.square(_pad(self.amplitude, example_ndims, value.dtype)) * value
