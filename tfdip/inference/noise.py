"""The likelihood's noise level as an unknown: an inverse-gamma prior and its Gibbs update.

With a Gaussian likelihood ``y_i = (A G_w(z))_i + N(0, s2)`` over ``n`` observed entries and an
inverse-gamma prior ``s2 ~ InvGamma(a, b)`` (density proportional to ``s2^(-a-1) exp(-b / s2)``),
the conditional posterior of the noise variance given the weights is again inverse-gamma:

    s2 | w, y  ~  InvGamma(a + n / 2,  b + SSE(w) / 2),      SSE(w) = ||m * (A G_w(z) - y)||^2.

A sampler that alternates a Langevin step on ``w`` (at the current ``s2``) with a draw of ``s2``
from this conditional (Metropolis-within-Gibbs, exact for the ``s2`` block) samples the joint
posterior ``p(w, s2 | y)`` and so the noise level is integrated out, not guessed. ``a = b = 0`` is
Jeffreys' prior ``p(s2) ~ 1 / s2``.

For noise-free data (inpainting, super-resolution without noise) the true ``s2`` is 0 and the
conditional concentrates on the network's current misfit ``SSE / n``: the likelihood sharpens as the
network fits the observed entries and never asks the chain for an exact fit it cannot reach. A floor
``min_sigma`` keeps ``s2 >= min_sigma^2`` (the quantisation noise of 8-bit data, 1/255/sqrt(12), by
default), so the chain cannot collapse onto an exact interpolation of the known pixels.
"""
from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError

tfd = tfp.distributions

# Standard deviation of the rounding error of 8-bit data on the [0, 1] scale.
QUANTISATION_SIGMA = 1.0 / 255.0 / math.sqrt(12.0)


class NoiseVariancePrior:
    """``s2 ~ InvGamma(concentration, scale)``, truncated below at ``min_sigma^2``.

    Args:
        concentration: ``a >= 0``.
        scale: ``b >= 0`` (``a = b = 0`` is Jeffreys' prior).
        min_sigma: the smallest noise std the sampler may take (>= 0).
    """

    def __init__(self, concentration: float = 0.0, scale: float = 0.0,
                 min_sigma: float = QUANTISATION_SIGMA):
        for label, value in (("concentration", concentration), ("scale", scale),
                             ("min_sigma", min_sigma)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise TfdipError(f"the noise prior's {label} must be a finite number >= 0, "
                                 f"got {value!r}")
        self.concentration = float(concentration)
        self.scale = float(scale)
        self.min_sigma = float(min_sigma)

    def conditional(self, sse, num_observed) -> tfd.InverseGamma:
        """``p(s2 | w, y)`` without the floor: InvGamma(a + n/2, b + SSE/2) (tensors of sse's dtype)."""
        sse = tf.convert_to_tensor(sse)
        n = tf.cast(num_observed, sse.dtype)
        return tfd.InverseGamma(concentration=self.concentration + 0.5 * n,
                                scale=self.scale + 0.5 * sse)

    def sample(self, sse, num_observed, seed) -> tf.Tensor:
        """One draw of ``s2`` from the conditional, floored at ``min_sigma^2``.

        ``seed`` is a stateless seed (an int tensor of shape (2,), entries below 2^31); the draw is a pure function of
        ``(sse, num_observed, seed)``, so runs resume and replay exactly.
        """
        s2 = self.conditional(sse, num_observed).sample(seed=tf.cast(seed, tf.int32))
        return tf.maximum(s2, tf.cast(self.min_sigma**2, s2.dtype))

    def get_config(self) -> dict:
        return {"concentration": self.concentration, "scale": self.scale,
                "min_sigma": self.min_sigma}
