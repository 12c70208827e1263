"""The DIP ``skip`` generator: an hourglass encoder-decoder with skip branches (reference.md section 2).

Level i (0 = top) maps ``(N, H, W, in_i) -> (N, H, W, up_i)``:

- skip branch (if ``skip_i > 0``): conv ``filter_skip_size`` (in_i -> skip_i), BN, act;
- deep branch: conv ``filter_size_down`` with stride 2 (in_i -> down_i) (or stride 1 followed by
  2 x 2 average / max pooling when ``downsample`` is ``"avg"`` / ``"max"``), BN, act;
  conv ``filter_size_down`` (down_i -> down_i), BN, act; level i + 1 (if any); up-sample x 2;
- centre-cropped concat (skip first, deep second), BN over the ``skip_i + k`` channels, where
  ``k = up_{i+1}`` (``down_i`` at the deepest level);
- conv ``filter_size_up`` (skip_i + k -> up_i), BN, act; if ``need1x1_up``: conv 1x1, BN, act.

The top adds conv 1x1 (up_0 -> output_channels) and a sigmoid if ``need_sigmoid``. H and W should
be multiples of ``spec.size_multiple`` (2 ** levels) so that every level's halves add up.
"""
from __future__ import annotations

import keras

from tfdip.nets.layers import (CenterCropConcat, Resize2D, activation_layer, batch_norm,
                               output_head, padded_conv)

POOLING = {"avg": keras.layers.AveragePooling2D, "max": keras.layers.MaxPooling2D}


def build_skip(spec, name: str = "skip") -> keras.Model:
    """Build the Keras functional model that ``spec`` (a :class:`~tfdip.nets.spec.SkipSpec`) describes.

    Input ``z``: ``(N, H, W, spec.input_channels)`` with H, W unknown; output
    ``(N, H, W, spec.output_channels)``, in (0, 1) when ``need_sigmoid``. Layers follow the global
    Keras dtype policy; the output head computes in its variable dtype (float32 under
    ``mixed_bfloat16``).
    """
    z = keras.Input((None, None, spec.input_channels), name="z")
    return keras.Model(z, output_head(_level(z, spec, 0), spec), name=name)


def _conv_bn_act(x, spec, filters: int, kernel_size: int, name: str, strides: int = 1):
    """conv -> BN -> activation, the unit every branch of the skip net repeats."""
    x = padded_conv(x, spec, filters, kernel_size, name=f"{name}_conv", strides=strides)
    return _bn_act(x, spec, name)


def _bn_act(x, spec, name: str):
    x = batch_norm(x, spec, name=f"{name}_bn")
    return activation_layer(spec, name=f"{name}_act")(x)


def _level(x, spec, i: int):
    """Level ``i`` of the hourglass and, recursively, every level below it."""
    prefix = f"level{i}"
    down, up, skip = spec.channels_down[i], spec.channels_up[i], spec.channels_skip[i]

    if spec.downsample == "stride":
        deep = padded_conv(x, spec, down, spec.filter_size_down, name=f"{prefix}_down1_conv",
                           strides=2)
    else:
        deep = padded_conv(x, spec, down, spec.filter_size_down, name=f"{prefix}_down1_conv")
        deep = POOLING[spec.downsample](2, name=f"{prefix}_down1_pool")(deep)
    deep = _bn_act(deep, spec, f"{prefix}_down1")
    deep = _conv_bn_act(deep, spec, down, spec.filter_size_down, f"{prefix}_down2")
    if i + 1 < spec.levels:
        deep = _level(deep, spec, i + 1)
    deep = Resize2D(2, spec.upsample, name=f"{prefix}_upsample")(deep)

    if skip > 0:
        branch = _conv_bn_act(x, spec, skip, spec.filter_skip_size, f"{prefix}_skip")
        deep = CenterCropConcat(name=f"{prefix}_concat")([branch, deep])
    x = batch_norm(deep, spec, name=f"{prefix}_merge_bn")

    x = _conv_bn_act(x, spec, up, spec.filter_size_up, f"{prefix}_up")
    if spec.need1x1_up:
        x = _conv_bn_act(x, spec, up, 1, f"{prefix}_up1x1")
    return x
