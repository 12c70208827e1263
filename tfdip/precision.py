"""Numerical precision of a run: which Keras dtype policy builds the generator.

``precision`` is one of

* ``"float32"``: the global Keras policy as it is (float32 unless the user changed ``floatx``);
* ``"bfloat16"``: Keras' ``mixed_bfloat16`` policy, convolutions and activations in bfloat16,
  weights in float32 (same exponent range as float32: no loss scaling needed);
* ``"float16"``: ``mixed_float16``, activations in float16 (5 exponent bits): the loss is scaled
  before the backward pass and the gradients unscaled before the update, by a
  ``keras.optimizers.LossScaleOptimizer`` (dynamic scale, steps with non-finite scaled gradients
  are skipped and halve the scale).

The policy only applies while the generator is built (:func:`precision_policy`), so nothing leaks
into the next run. Everything else of a run stays at the weights' dtype (float32): the output is
cast to it before the loss, and the samplers' state (Langevin noise, Adam / pSGLD moments,
preconditioner, EMA, posterior moments) is float32, so mixed precision changes the rounding of
the network's forward and backward passes, not the sampler's arithmetic.
"""
from __future__ import annotations

import contextlib

import keras

from tfdip.errors import TfdipError

PRECISIONS = ("float32", "bfloat16", "float16")
MIXED_POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a one-line :class:`TfdipError`."""
    if precision not in PRECISIONS:
        raise TfdipError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def check_jit_compile(jit_compile) -> bool:
    """``jit_compile`` if it is True or False (never Keras' ``"auto"``), else a one-line
    :class:`TfdipError`."""
    if not isinstance(jit_compile, bool):
        raise TfdipError(f"jit_compile must be True or False, got {jit_compile!r}")
    return jit_compile


@contextlib.contextmanager
def precision_policy(precision: str):
    """Within the block, layers are built with ``precision``'s Keras policy; the global policy
    in force before the block is restored when it ends (also on error)."""
    check_precision(precision)
    saved = keras.mixed_precision.global_policy()
    if precision in MIXED_POLICIES:
        keras.mixed_precision.set_global_policy(MIXED_POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(saved)


def needs_loss_scaling(model) -> bool:
    """True when ``model`` (a Keras layer or model) computes in float16."""
    return model.dtype_policy.compute_dtype == "float16"


def with_loss_scaling(optimizer, model):
    """``optimizer`` wrapped in a dynamic ``LossScaleOptimizer`` when ``model`` computes in
    float16 (unless it already is one); otherwise ``optimizer`` itself."""
    optimizer = keras.optimizers.get(optimizer)
    if needs_loss_scaling(model) and not isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
