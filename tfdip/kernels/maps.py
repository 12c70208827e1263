"""Second-moment maps of the layers of an infinitely wide random network.

Every function here is the arithmetic of one layer on second moments ``K(t1, t2) = E[f(t1) f(t2)]``
of one channel; for the zero-mean pre-activations of a network with zero-mean weights these are
covariances. Arguments are broadcastable float tensors (float32 or float64) and results keep their
dtype. Non-linearities take the three entries of the 2 x 2 covariance of a zero-mean Gaussian pair
``(u1, u2)``: ``k11 = Var u1``, ``k12 = Cov(u1, u2)``, ``k22 = Var u2``, and return ``E[phi(u1) phi(u2)]``.
"""
from __future__ import annotations

import math

import tensorflow as tf

SIGMOID_PROBIT_MIXTURE = ((0.161083, 0.363621), (0.583137, 0.576373), (0.25578, 0.905426))
"""``(c_i, l_i)`` with ``sigmoid(x) ~ sum_i c_i Phi(l_i x)`` (max error 5e-5; ``sum_i c_i = 1``)."""


def _clipped(inverse_trig, x):
    """``inverse_trig(x)`` for a correlation ``x``, safe at ``|x| = 1``.

    The value uses ``x`` clipped to ``[-1, 1]`` (rounding can push a correlation past 1); the
    gradient is taken at ``x`` clipped to ``[-1 + eps, 1 - eps]`` (``eps`` = 1e-6 in float32,
    1e-12 in float64), where it is finite.
    """
    eps = 1e-12 if x.dtype == tf.float64 else 1e-6
    safe = inverse_trig(tf.clip_by_value(x, -1.0 + eps, 1.0 - eps))
    exact = inverse_trig(tf.clip_by_value(x, -1.0, 1.0))
    return safe + tf.stop_gradient(exact - safe)


def safe_acos(x):
    """arccos of a correlation, finite gradients (see :func:`_clipped`)."""
    return _clipped(tf.acos, x)


def safe_asin(x):
    """arcsin of a correlation, finite gradients (see :func:`_clipped`)."""
    return _clipped(tf.asin, x)


def relu(k11, k12, k22):
    """ReLU, the arc-cosine kernel of degree 1 (Cho and Saul 2009).

    ``E[relu(u1) relu(u2)] = sqrt(k11 k22) / (2 pi) * (sin t + (pi - t) cos t)``,
    ``cos t = k12 / sqrt(k11 k22)``.
    """
    norm = tf.sqrt(k11 * k22)
    theta = safe_acos(k12 / norm)
    return norm / (2.0 * math.pi) * (tf.sin(theta) + (math.pi - theta) * tf.cos(theta))


def leaky_relu(k11, k12, k22, negative_slope):
    """LeakyReLU with slope ``a`` for negative inputs: ``a k12 + (1 - a)^2 relu(k11, k12, k22)``.

    Derivation: ``max(u, a u) = a u + (1 - a) relu(u)``, and ``E[u1 relu(u2)] = k12 / 2`` by the
    symmetry ``(u1, u2) -> (-u1, -u2)``, so the cross terms add ``2 a (1 - a) k12 / 2``; with
    ``a^2 k12`` from the linear part this is ``a k12``.
    """
    a = tf.convert_to_tensor(negative_slope, dtype=k12.dtype)
    return a * k12 + tf.square(1.0 - a) * relu(k11, k12, k22)


def erf(k11, k12, k22):
    """erf, the arcsine kernel (Williams 1997): ``(2/pi) arcsin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22)))``."""
    return (2.0 / math.pi) * safe_asin(2.0 * k12 / tf.sqrt((1.0 + 2.0 * k11) * (1.0 + 2.0 * k22)))


def erf_large_variance(k11, k12, k22):
    """The poster's form of the erf map, the limit of :func:`erf` for large variances.

    ``(2/pi) arcsin(k12 / sqrt(k11 k22))``: scale-free, it depends on the correlation only.
    """
    return (2.0 / math.pi) * safe_asin(k12 / tf.sqrt(k11 * k22))


def sigmoid(k11, k12, k22):
    """The logistic sigmoid, through a mixture of probits ``sigmoid(x) ~ sum_i c_i Phi(l_i x)``.

    For a zero-mean Gaussian pair, ``E[Phi(a u1) Phi(b u2)] = 1/4 + arcsin(rho_ab) / (2 pi)`` with
    ``rho_ab = a b k12 / sqrt((1 + a^2 k11)(1 + b^2 k22))``, so (the ``c_i`` summing to 1)
    ``E[sigmoid(u1) sigmoid(u2)] ~ 1/4 + sum_ij c_i c_j arcsin(rho_{l_i l_j}) / (2 pi)``.
    The mean of ``sigmoid(u)`` is exactly 1/2; the covariance is the sum. The three terms
    (:data:`SIGMOID_PROBIT_MIXTURE`, a least-squares fit on [-12, 12]) match the logistic curve to
    5e-5, and the covariance to a few 1e-4 relative.
    """
    total = 0.25
    for c_i, l_i in SIGMOID_PROBIT_MIXTURE:
        for c_j, l_j in SIGMOID_PROBIT_MIXTURE:
            rho = l_i * l_j * k12 / tf.sqrt((1.0 + l_i * l_i * k11) * (1.0 + l_j * l_j * k22))
            total += c_i * c_j * safe_asin(rho) / (2.0 * math.pi)
    return total


ACTIVATION_MAPS = {
    "relu": relu,
    "erf": erf,
    "erf_large_variance": erf_large_variance,
    "sigmoid": sigmoid,
}
"""Name -> map of the parameter-free non-linearities (``leaky_relu`` also needs a slope)."""


def activation(name: str, k11, k12, k22, negative_slope=0.2):
    """The map of non-linearity ``name``: a key of :data:`ACTIVATION_MAPS` or ``"leaky_relu"``."""
    if name == "leaky_relu":
        return leaky_relu(k11, k12, k22, negative_slope)
    return ACTIVATION_MAPS[name](k11, k12, k22)


def activation_mean(name: str, k11, negative_slope=0.2):
    """``E[phi(u)]`` for ``u ~ N(0, k11)``: ``(1 - a) sqrt(k11 / (2 pi))`` for LeakyReLU(a) (``a = 0``:
    ReLU), 1/2 for the sigmoid (``sigmoid(u) - 1/2`` is odd), 0 for erf."""
    if name in ("relu", "leaky_relu"):
        a = tf.convert_to_tensor(negative_slope if name == "leaky_relu" else 0.0, dtype=k11.dtype)
        return (1.0 - a) * tf.sqrt(k11 / (2.0 * math.pi))
    return tf.fill(tf.shape(k11), tf.constant(0.5 if name == "sigmoid" else 0.0, k11.dtype))


def affine(c, weight_variance, bias_variance):
    """A convolution or dense layer: ``K' = sigma_b^2 + sigma_w^2 C``.

    Weights ``N(0, sigma_w^2 / fan_in)`` and biases ``N(0, sigma_b^2)``, independent: for a k x k
    filter ``K'(t1, t2) = sigma_b^2 + sigma_w^2 / k^2 * sum_d C(t1 + d, t2 + d)``, which is
    ``sigma_b^2 + sigma_w^2 C(r)`` when ``C`` is stationary (any filter size, stride 1).
    """
    return bias_variance + weight_variance * c


def batch_norm(k, k_zero, k_infinity, gain=1.0, epsilon=0.0):
    """BatchNorm over the spatial axes of one image: ``gain (K - K_inf) / (K(0) - K_inf + epsilon)``.

    A stationary field whose second moment tends to ``K_inf`` far away is a random constant of
    variance ``K_inf`` (the mean, and the long-range part) plus a field whose correlations decay;
    the image mean removes the constant and the image variance ``K(0) - K_inf`` rescales. ``gain``
    is ``E[gamma^2]`` of the BatchNorm scale (``beta = 0``); ``epsilon`` is the layer's.
    Exact for an image much larger than the correlation length; on a finite image subtracting the
    mean also lowers every entry by about ``mean(K - K_inf)`` over the image.
    """
    return gain * (k - k_infinity) / (k_zero - k_infinity + epsilon)


def hat(offsets):
    """The lattice delta extended to real offsets: ``prod_i max(0, 1 - |r_i|)``, shape ``offsets.shape[:-1]``.

    Equal to 1 at ``r = 0`` and 0 at the other integer offsets; between lattice points it is the
    bilinear interpolation, which keeps the kernel positive semi-definite on real coordinates.
    """
    return tf.reduce_prod(tf.nn.relu(1.0 - tf.abs(offsets)), axis=-1)


def input_noise(offsets, variance, mean, smoothing):
    """Second moment of the network input: ``variance * rho_s(r) + mean^2``, shape ``offsets.shape[:-1]``.

    Each input channel is white noise of the given variance and mean (DIP's U(0, 0.1) has mean 0.05,
    variance 0.01/12) smoothed by a Gaussian filter of standard deviation ``s`` pixels, normalised to
    keep the variance: ``rho_s(r) = exp(-|r|^2 / (4 s^2))`` for ``s != 0`` and :func:`hat` for ``s = 0``
    (only ``|s|`` matters, so ``s`` may be fitted unconstrained).
    ``offsets`` has shape ``[..., 2]``; the parameters broadcast against ``offsets.shape[:-1]``.
    The gradient with respect to ``s`` is finite (zero at ``s = 0``).
    """
    smoothing = tf.convert_to_tensor(smoothing, dtype=offsets.dtype)
    smoothed = tf.not_equal(smoothing, 0.0)
    safe = tf.where(smoothed, smoothing, tf.ones_like(smoothing))
    squared_distance = tf.reduce_sum(tf.square(offsets), axis=-1)
    rho = tf.where(smoothed, tf.exp(-squared_distance / (4.0 * tf.square(safe))), hat(offsets))
    return variance * rho + tf.square(mean)
