"""A conv-only stack, the network the kernel theory follows layer by layer (no BatchNorm).

``(N, H, W, input_channels)`` -> ``depth`` x [conv ``filter_size`` stride 1 (padded to keep H, W), act]
-> conv 1x1 -> ``(N, H, W, output_channels)``, then a sigmoid if ``need_sigmoid``. With
``init="gaussian"`` each conv has kernel ~ N(0, sigma_w^2 / fan_in) and bias ~ N(0, sigma_b^2).
"""
from __future__ import annotations

import keras

from tfdip.nets.layers import activation_layer, output_head, padded_conv


def build_conv_stack(spec, name: str = "conv_stack") -> keras.Model:
    """Build the Keras functional model that ``spec`` (a :class:`~tfdip.nets.spec.ConvStackSpec`)
    describes; H and W may be any size."""
    z = keras.Input((None, None, spec.input_channels), name="z")
    x = z
    for layer in range(spec.depth):
        x = padded_conv(x, spec, spec.channels, spec.filter_size, name=f"conv{layer}")
        x = activation_layer(spec, name=f"act{layer}")(x)
    return keras.Model(z, output_head(x, spec), name=name)
