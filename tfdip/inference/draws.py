"""Standard normal draws that are the same with and without XLA.

TensorFlow's stateless random ops give different numbers inside an XLA cluster than in its own
CPU / GPU kernels (the same Philox bits, another transform to normals). Every normal draw of a
training step (the input jitter, the samplers' noise) is therefore made by one XLA-compiled
function, :func:`standard_normal`, whether or not the step around it is compiled with XLA: a run
and its ``jit_compile=True`` twin see the same noise, and the draw is one fused kernel. :func:`xla_compiled` does the same for other samplers
(TFP's gamma sampler for a sampled noise level).
"""
from __future__ import annotations

import tensorflow as tf


@tf.function(jit_compile=True, autograph=False)
def _philox_normal(shape, key, dtype):
    return tf.random.stateless_normal(shape, seed=key, dtype=dtype, alg="philox")


def standard_normal(shape, key, dtype=tf.float32) -> tf.Tensor:
    """N(0, I) of static ``shape`` (a tuple of ints) and float ``dtype``, a pure function of
    ``key`` (an int32 or int64 tensor of shape (2,)): Philox, compiled with XLA (traced once
    per shape and dtype in a process)."""
    return _philox_normal(tuple(int(s) for s in shape), key, tf.as_dtype(dtype))


def xla_compiled(sampler):
    """``sampler`` (a pure function of tensors and a stateless seed) as an XLA-compiled
    ``tf.function``, so that its draws are the same inside and outside an XLA-compiled step."""
    return tf.function(sampler, jit_compile=True)
