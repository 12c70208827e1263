"""Step-size schedules for the Langevin samplers (Keras ``LearningRateSchedule`` objects):
:class:`LangevinDecay` (a decreasing step) and :class:`CyclicalStepSize` (cSGLD's cosine cycles).

Welling & Teh (2011) decay the SGLD step as ``eps_t = a (b + t)^(-gamma)`` with
``gamma`` in (0.5, 1]: then ``sum eps_t = inf`` and ``sum eps_t^2 < inf``, so the
discretisation bias vanishes while the chain keeps moving.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.inference.optimizers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class LangevinDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``eps_t = a * (b + t)^(-gamma)`` at optimizer step ``t`` (Welling & Teh 2011).

    Args:
        a: scale, > 0.
        b: offset, > 0 (so that ``eps_0 = a b^(-gamma)`` is finite).
        gamma: decay exponent; in (0.5, 1] for the Robbins-Monro conditions, 0 gives a constant.
    """

    def __init__(self, a: float, b: float = 1.0, gamma: float = 0.55):
        if not a > 0 or not b > 0:
            raise TfdipError(f"a and b must be > 0, got a={a!r}, b={b!r}")
        if not 0.0 <= gamma <= 1.0:
            raise TfdipError(f"gamma must be in [0, 1] (Welling & Teh use (0.5, 1]), got {gamma!r}")
        self.a = float(a)
        self.b = float(b)
        self.gamma = float(gamma)

    @classmethod
    def from_endpoints(cls, initial: float, final: float, num_steps: int, gamma: float = 0.55):
        """The schedule with ``eps_0 = initial`` and ``eps_{num_steps} = final``.

        From ``initial / final = ((b + T) / b)^gamma``: ``b = T / ((initial/final)^(1/gamma) - 1)``
        and ``a = initial * b^gamma``.
        """
        if not initial > final > 0:
            raise TfdipError(f"need initial > final > 0, got initial={initial!r}, final={final!r}")
        if not gamma > 0:
            raise TfdipError(f"gamma must be > 0 to decay from initial to final, got {gamma!r}")
        if not isinstance(num_steps, int) or num_steps < 1:
            raise TfdipError(f"num_steps must be a positive int, got {num_steps!r}")
        b = num_steps / ((initial / final) ** (1.0 / gamma) - 1.0)
        return cls(a=initial * b**gamma, b=b, gamma=gamma)

    def __call__(self, step):
        t = tf.cast(step, tf.float32)
        return self.a * tf.pow(self.b + t, -self.gamma)

    def get_config(self):
        return {"a": self.a, "b": self.b, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CyclicalStepSize(keras.optimizers.schedules.LearningRateSchedule):
    """The cosine cycles of cyclical SG-MCMC (cSGLD, Zhang et al. 2020), with a cycle length in
    steps instead of a number of cycles in a known budget::

        eps_t = (peak / 2) * (cos(pi * (t mod L) / L) + 1)

    Each cycle of ``L`` steps starts at ``peak`` (large steps that move the chain far, to a new
    mode) and shrinks towards 0 (small steps that sample around it); the mean step over a cycle
    is ``peak / 2``. Zhang et al. also run the first part of each cycle without noise; here the
    noise follows the step size along the whole cycle, so every step is a Langevin step.

    Args:
        peak: the step size at the start of each cycle, > 0.
        cycle: the cycle length L in steps, >= 2.
    """

    def __init__(self, peak: float, cycle: int):
        if not peak > 0:
            raise TfdipError(f"peak must be > 0, got {peak!r}")
        if isinstance(cycle, bool) or not isinstance(cycle, int) or cycle < 2:
            raise TfdipError(f"cycle must be a whole number of steps >= 2, got {cycle!r}")
        self.peak = float(peak)
        self.cycle = int(cycle)

    def __call__(self, step):
        phase = tf.cast(tf.math.floormod(tf.cast(step, tf.int64), self.cycle), tf.float32)
        return 0.5 * self.peak * (tf.cos(np.pi * phase / self.cycle) + 1.0)

    def get_config(self):
        return {"peak": self.peak, "cycle": self.cycle}
