"""Weight initialisation schemes selected by a spec's ``init`` field.

- ``"keras"``: Keras defaults; Glorot-uniform kernels, zero biases, BatchNorm gamma 1, epsilon 1e-3.
- ``"torch"``: PyTorch's conv defaults, as in the DIP reference; kernel and bias
  ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in)) (variance 1 / (3 fan_in)), BatchNorm gamma ~ U(0, 1)
  (PyTorch <= 1.1) and epsilon 1e-5.
- ``"gaussian"``: the prior of the kernel theory; kernel ~ N(0, sigma_w^2 / fan_in),
  bias ~ N(0, sigma_b^2), BatchNorm gamma 1, epsilon 1e-3.

``fan_in = C_in * k * k`` for a k x k convolution with C_in input channels. Draws follow Keras'
global seed (``keras.utils.set_random_seed``).
"""
from __future__ import annotations

import math

import keras

TORCH_BN_EPSILON = 1e-5
KERAS_BN_EPSILON = 1e-3


def conv_initializers(spec, fan_in: int):
    """``(kernel_initializer, bias_initializer)`` for a convolution with the given fan-in."""
    if spec.init == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        return (keras.initializers.RandomUniform(-bound, bound),
                keras.initializers.RandomUniform(-bound, bound))
    if spec.init == "gaussian":
        kernel = keras.initializers.RandomNormal(0.0, spec.sigma_w / math.sqrt(fan_in))
        bias = (keras.initializers.RandomNormal(0.0, spec.sigma_b) if spec.sigma_b > 0
                else keras.initializers.Zeros())
        return kernel, bias
    return keras.initializers.GlorotUniform(), keras.initializers.Zeros()


def bn_gamma_initializer(spec):
    """BatchNorm scale initialiser: U(0, 1) for ``"torch"``, ones otherwise."""
    if spec.init == "torch":
        return keras.initializers.RandomUniform(0.0, 1.0)
    return keras.initializers.Ones()


def bn_epsilon(spec) -> float:
    """BatchNorm epsilon: PyTorch's 1e-5 for ``"torch"``, Keras' 1e-3 otherwise."""
    return TORCH_BN_EPSILON if spec.init == "torch" else KERAS_BN_EPSILON
