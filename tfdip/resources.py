"""Memory estimate for a DIP run, checked before any work starts.

Training keeps every forward activation for the backward pass and needs about as much again for
the gradients flowing back, so the estimate is

    bytes ~= 2 * (sum of the forward graph's float tensor sizes) + 4 copies of the weights
             (weights, gradients, two optimizer moments) + the roll-back shadow,

with the forward graph traced (not run) at the padded image size (at the generator's compute
precision: bfloat16 / float16 activations count 2 bytes). The budget is the memory of the device
the run uses: the first visible GPU's (``nvidia-smi``, honouring ``CUDA_VISIBLE_DEVICES``) when
TensorFlow sees a GPU, else the host's available memory.
"""
from __future__ import annotations

import os
import subprocess

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


def gpu_memory_bytes() -> int | None:
    """Total memory of the first GPU TensorFlow uses, or None when TensorFlow sees no GPU or
    ``nvidia-smi`` cannot tell (``CUDA_VISIBLE_DEVICES`` picks which physical GPU that is)."""
    if not tf.config.list_physical_devices("GPU"):
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    command = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    if visible:
        command += ["--id", visible]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
        return int(float(done.stdout.split()[0]) * 2**20) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def check_memory(generator, input_shape, image_shape) -> int:
    """Raise :class:`TfdipError` if training would not fit in the memory of the device it runs
    on (the GPU's when one is visible, else the host's); return the estimate."""
    need = estimate_memory_bytes(generator, input_shape)
    gpu = gpu_memory_bytes()
    have, where = (available_memory_bytes(), "") if gpu is None else (gpu, " on the GPU")
    if need > MEMORY_HEADROOM * have:
        height, width = image_shape[:2]
        raise TfdipError(
            f"a {height}x{width} image needs about {need / 2**30:.1f} GiB for this network but "
            f"{have / 2**30:.1f} GiB is available{where}; crop or downscale the image, or use a "
            f"narrower net")
    return need
