"""Memory estimate for a DIP run, checked before any work starts.

Training keeps every forward activation for the backward pass and needs about as much again for
the gradients flowing back, so the estimate is

    bytes ~= 2 * (sum of the forward graph's float tensor sizes) + 4 copies of the weights
             (weights, gradients, two optimizer moments) + the roll-back shadow,

with the forward graph traced (not run) at the padded image size.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError

# Fraction of the available memory a run may plan to use.
MEMORY_HEADROOM = 0.8


def estimate_memory_bytes(generator, input_shape) -> int:
    """Estimated peak bytes of training ``generator`` on one input of shape (1, H, W, C_in)."""
    spec = tf.TensorSpec(tuple(int(s) for s in input_shape), tf.float32)
    graph = tf.function(lambda z: generator(z, training=True)).get_concrete_function(spec).graph
    activations = 0
    for op in graph.get_operations():
        for out in op.outputs:
            if out.dtype.is_floating and out.shape.is_fully_defined():
                activations += int(np.prod(out.shape)) * out.dtype.size
    weights = sum(int(np.prod(w.shape)) * 4 for w in generator.trainable_variables)
    return 2 * activations + 5 * weights


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo, or physical memory where that file does not exist."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(generator, input_shape, image_shape) -> int:
    """Raise :class:`TfdipError` if training would not fit in memory; return the estimate."""
    need = estimate_memory_bytes(generator, input_shape)
    have = available_memory_bytes()
    if need > MEMORY_HEADROOM * have:
        height, width = image_shape[:2]
        raise TfdipError(
            f"a {height}x{width} image needs about {need / 2**30:.1f} GiB for this network but "
            f"{have / 2**30:.1f} GiB is available; crop or downscale the image, or use a narrower net")
    return need
