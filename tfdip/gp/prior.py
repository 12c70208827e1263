"""The GP prior of an image: a kernel, a constant mean per channel and an observation noise.

Model (channels share the kernel and the noise, each has its own constant mean)::

    f_c ~ GP(m_c, k),    y_c(x_i) = f_c(x_i) + e_ci,    e_ci ~ N(0, s^2)    (c = 1..C, i = 1..N)

so that the log marginal likelihood of the observations is
``log p(y) = sum_c log N(y_c; m_c 1, K + s^2 I)`` with ``K = k(X, X)`` (``[N, N]``).

Hyper-parameters (names used everywhere in :mod:`tfdip.gp`):

- ``amplitude``: the output standard deviation ``a`` (TFP's convention; ``a^2`` is GPyTorch's
  "outputscale"). For ``"rbf"`` ``k(x, x') = a^2 exp(-|x - x'|^2 / (2 l^2))``; for ``"matern52"``
  ``k = a^2 (1 + sqrt(5) d / l + 5 d^2 / (3 l^2)) exp(-sqrt(5) d / l)``, ``d = |x - x'|`` (and
  ``"matern12"``, ``"matern32"`` likewise); any other kernel ``k0`` (the DIP kernel among them)
  becomes ``a^2 k0`` (``a = 1``: the kernel as given).
- ``length_scale``: ``l`` in pixels (the named stationary kernels only).

Kernels (:func:`resolve_kernel`): a name of :data:`STATIONARY_KERNELS`; ``"dip"``, the analytic
kernel (:class:`tfdip.kernels.DIPKernel`) of :data:`DIP_KERNEL_SPEC`, the paper's GP-experiment net;
an architecture description (``SkipSpec`` / ``ConvStackSpec``), its analytic kernel; or any float64
``tfp.math.psd_kernels`` kernel over ``(row, column)`` points.
- ``noise_variance``: ``s^2``.
- ``mean``: ``m_c``, one value per channel (absent for a zero-mean prior).

A fitted hyper-parameter is a :class:`tfp.util.TransformedVariable` (Softplus for the positive
ones, identity for the mean), so that it stays positive while the optimiser works on an
unconstrained variable; a fixed one is a constant. Everything is float64.
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Union

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError
from tfdip.kernels import DIPKernel
from tfdip.kernels.psd import BASELINES
from tfdip.nets.spec import ConvStackSpec, SkipSpec

tfd = tfp.distributions
tfpk = tfp.math.psd_kernels

DTYPE = tf.float64
JITTER = 1e-6
"""Added to the diagonal of ``K + s^2 I`` before its Cholesky factorisation."""
STATIONARY_KERNELS = BASELINES
"""Name -> TFP kernel class (``amplitude``, ``length_scale``): rbf, matern12, matern32, matern52."""
DIP_KERNEL_SPEC = SkipSpec(channels_down=(1024, 1024), channels_up=(1024, 1024),
                           channels_skip=(4, 4), output_channels=1, init="gaussian")
"""The 2-level skip net of 1024 channels whose kernel the paper's GP experiment estimated."""
KERNEL_NAMES = tuple(STATIONARY_KERNELS) + ("dip",)
HYPERPARAMETERS = ("amplitude", "length_scale", "noise_variance", "mean")


def cholesky_with_jitter(matrix):
    """The Cholesky factor of ``matrix + JITTER * I`` (``matrix``: ``[..., N, N]``)."""
    return tf.linalg.cholesky(tf.linalg.set_diag(matrix, tf.linalg.diag_part(matrix) + JITTER))


def resolve_kernel(kernel) -> Union[str, tfpk.PositiveSemidefiniteKernel]:
    """A stationary kernel's name, or a float64-capable psd kernel (see the module docstring).

    ``"dip"`` and architecture descriptions become a :class:`~tfdip.kernels.DIPKernel` named
    ``"dip"``; names of :data:`STATIONARY_KERNELS` and kernels are returned as they are.

    Raises:
      TfdipError: for an unknown name, another type or a kernel whose parameters are not float64.
    """
    if isinstance(kernel, str):
        if kernel == "dip":
            return DIPKernel(DIP_KERNEL_SPEC, name="dip")
        if kernel not in STATIONARY_KERNELS:
            raise TfdipError(f"unknown kernel {kernel!r}; use one of {', '.join(KERNEL_NAMES)}, "
                             f"an architecture description or a psd_kernels kernel")
        return kernel
    if isinstance(kernel, (SkipSpec, ConvStackSpec)):
        return DIPKernel(kernel, name="dip")
    if not isinstance(kernel, tfpk.PositiveSemidefiniteKernel):
        raise TfdipError(f"kernel must be a name ({', '.join(KERNEL_NAMES)}), an architecture "
                         f"description or a psd_kernels kernel, got {type(kernel).__name__}")
    if kernel.dtype not in (None, DTYPE):
        raise TfdipError(f"the {kernel.name} kernel is {tf.as_dtype(kernel.dtype).name}; GP "
                         f"restoration works in float64: build the kernel with float64 parameters")
    return kernel


def _hyperparameter(name: str, value, trainable: bool, floor: float = 0.0):
    """A float64 variable (``floor + Softplus``-constrained unless it is the mean) or a constant."""
    value = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(value)):
        raise TfdipError(f"{name} must be finite, got {value}")
    if name != "mean" and not np.all(value >= 0):
        raise TfdipError(f"{name} must be a number >= 0, got {value}")
    if name != "mean" and trainable and not np.all(value > 0):
        raise TfdipError(f"{name} must start > 0 to be fitted, got {value}")
    if not trainable:
        return tf.constant(value, dtype=DTYPE)
    if name == "mean":
        return tf.Variable(value, dtype=DTYPE, name=name)
    bijector = tfp.bijectors.Softplus()
    if floor > 0:
        value = np.maximum(value, 2.0 * floor)
        bijector = tfp.bijectors.Chain([tfp.bijectors.Shift(np.float64(floor)), bijector])
    return tfp.util.TransformedVariable(value, bijector, dtype=DTYPE, name=name)


class GPPrior(tf.Module):
    """Kernel, per-channel constant mean and noise variance of an image GP (see the module docstring).

    Args:
      kernel: see :func:`resolve_kernel` (a given kernel's own trainable variables are fitted
        with the rest).
      values: initial (or, if not trainable, fixed) hyper-parameters, keyed by the names in the
        module docstring. ``amplitude`` defaults to 1, ``noise_variance`` to 0; ``length_scale``
        is required for the named kernels and refused for others; ``mean`` (a number or one per
        channel) present means a constant-mean prior, absent a zero-mean one.
      trainable: the names of the hyper-parameters to fit.
      noise_floor: a fitted noise variance stays above this (it starts at least at twice it).
    """

    def __init__(self, kernel: Union[str, tfpk.PositiveSemidefiniteKernel],
                 values: Mapping[str, object], trainable: Sequence[str] = (),
                 noise_floor: float = 0.0, name=None):
        super().__init__(name=name)
        unknown = (set(values) | set(trainable)) - set(HYPERPARAMETERS)
        if unknown:
            raise TfdipError(f"unknown hyper-parameter(s) {sorted(unknown)}; use "
                             f"{', '.join(HYPERPARAMETERS)}")
        missing = set(trainable) - set(values)
        if missing:
            raise TfdipError(f"hyper-parameter(s) {sorted(missing)} to fit need a starting value")
        kernel = resolve_kernel(kernel)
        self.kernel_name = kernel if isinstance(kernel, str) else kernel.name
        self._base_kernel = None if isinstance(kernel, str) else kernel
        if self._base_kernel is None and "length_scale" not in values:
            raise TfdipError(f"the {kernel!r} kernel needs a length_scale")
        if self._base_kernel is not None and "length_scale" in values:
            raise TfdipError(f"length_scale only applies to the named kernels "
                             f"({', '.join(STATIONARY_KERNELS)}); the {kernel.name} kernel "
                             f"has its own parameters")
        values = {"amplitude": 1.0, "noise_variance": 0.0, **values}
        self.noise_floor = float(noise_floor)
        self._values = {name: _hyperparameter(name, value, name in trainable,
                                              self.noise_floor if name == "noise_variance" else 0.0)
                        for name, value in values.items()}

    @property
    def has_mean(self) -> bool:
        """True for a constant-mean prior, False for a zero-mean one."""
        return "mean" in self._values

    @property
    def noise_variance(self) -> tf.Tensor:
        """``s^2``, a float64 scalar."""
        return tf.convert_to_tensor(self._values["noise_variance"])

    @property
    def mean_variable(self):
        """The fitted constant mean's ``tf.Variable``, or None when the mean is fixed or zero."""
        value = self._values.get("mean")
        return value if isinstance(value, tf.Variable) else None

    def mean(self, num_channels: int) -> tf.Tensor:
        """``m_c`` as a float64 vector of shape ``[num_channels]`` (zeros for a zero-mean prior)."""
        mean = self._values["mean"] if self.has_mean else tf.zeros([], DTYPE)
        return tf.broadcast_to(tf.convert_to_tensor(mean), [num_channels])

    def kernel(self) -> tfpk.PositiveSemidefiniteKernel:
        """The covariance ``k`` with the current hyper-parameters."""
        amplitude = self._values["amplitude"]
        if self._base_kernel is None:
            return STATIONARY_KERNELS[self.kernel_name](amplitude=amplitude,
                                                        length_scale=self._values["length_scale"])
        if isinstance(amplitude, tf.Tensor) and float(amplitude) == 1.0:
            return self._base_kernel
        return tfpk.Constant(tf.square(tf.convert_to_tensor(amplitude))) * self._base_kernel

    def log_marginal_likelihood(self, points, values) -> tf.Tensor:
        """``sum_c log N(y_c; m_c, K + s^2 I)`` for ``points`` ``[N, 2]`` and ``values`` ``[C, N]``."""
        values = tf.convert_to_tensor(values, DTYPE)
        centred = values - self.mean(values.shape[0])[:, tf.newaxis]
        gp = tfd.GaussianProcess(self.kernel(), index_points=tf.convert_to_tensor(points, DTYPE),
                                 observation_noise_variance=self.noise_variance,
                                 cholesky_fn=cholesky_with_jitter)
        return tf.reduce_sum(gp.log_prob(centred))

    def values(self) -> Dict[str, object]:
        """The current hyper-parameters as Python floats (``mean`` as a list, one per channel)."""
        values = {name: np.asarray(tf.convert_to_tensor(value)).tolist()
                  for name, value in self._values.items()}
        if self.has_mean:
            values["mean"] = np.atleast_1d(values["mean"]).tolist()
        return values
