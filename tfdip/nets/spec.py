"""Architecture descriptions: one frozen object describes a DIP generator.

A description builds the Keras network (``spec.build()``); the network in turn gives its
infinite-width covariance (``tfdip.kernels.kernel_of(spec.build())``, read from the layer graph).
Tensors are NHWC, images in [0, 1].

Common fields
-------------
init:
    ``"keras"`` (Keras defaults: Glorot-uniform kernels, zero biases),
    ``"torch"`` (the reference PyTorch 0.4 numerics: kernel and bias ~ U(+-1/sqrt(fan_in)),
    BatchNorm gamma ~ U(0, 1), BN epsilon 1e-5) or
    ``"gaussian"`` (the kernel theory's prior: kernel ~ N(0, sigma_w^2 / fan_in), bias ~ N(0, sigma_b^2)).
sigma_w, sigma_b:
    standard deviations for ``init="gaussian"``.
activation:
    ``"leaky_relu"`` (slope ``negative_slope``), ``"relu"`` or ``"erf"``.
pad:
    ``"reflection"`` or ``"zero"``: padding of (k - 1) / 2 before every VALID convolution.

BatchNorm (where present) always normalises with the statistics of the current image over its
spatial axes, as the reference does (PyTorch modules left in training mode).
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

from tfdip.errors import TfdipError
from tfdip.nets.conv_stack_net import build_conv_stack
from tfdip.nets.skip_net import build_skip

ACTIVATIONS = ("leaky_relu", "relu", "erf")
INITS = ("keras", "torch", "gaussian")
PADS = ("reflection", "zero")
UPSAMPLES = ("bilinear", "nearest")
DOWNSAMPLES = ("stride", "avg", "max")


def _per_level(value, levels: int, name: str) -> Tuple[int, ...]:
    """An int becomes ``levels`` copies; a sequence must have ``levels`` entries."""
    if isinstance(value, int):
        return (value,) * levels
    value = tuple(int(v) for v in value)
    if len(value) != levels:
        raise TfdipError(f"{name} has {len(value)} entries but the net has {levels} levels; "
                         "give one entry per level or a single int")
    return value


@dataclasses.dataclass(frozen=True)
class SkipSpec:
    """The DIP hourglass with skip branches (reference.md section 2).

    Level i (0 = top) with input depth in_i: skip branch conv1x1(in_i -> skip_i), BN, act (only if
    skip_i > 0); deep branch conv k_d stride-2 (in_i -> down_i), BN, act, conv k_d (down_i -> down_i),
    BN, act, level i+1, upsample x2; concat, BN; conv k_u (skip_i + k -> up_i), BN, act;
    conv 1x1 (up_i -> up_i), BN, act if ``need1x1_up``. Top: conv 1x1 (up_0 -> output_channels),
    sigmoid if ``need_sigmoid``. With the defaults: 2,217,831 parameters.
    ``channels_skip = 0`` at every level gives the plain encoder-decoder.
    """

    input_channels: int = 32
    output_channels: int = 3
    channels_down: Tuple[int, ...] = (128, 128, 128, 128, 128)
    channels_up: Tuple[int, ...] = (128, 128, 128, 128, 128)
    channels_skip: Tuple[int, ...] = (4, 4, 4, 4, 4)
    filter_size_down: int = 3
    filter_size_up: int = 3
    filter_skip_size: int = 1
    upsample: str = "bilinear"
    downsample: str = "stride"
    pad: str = "reflection"
    activation: str = "leaky_relu"
    negative_slope: float = 0.2
    need_sigmoid: bool = True
    need1x1_up: bool = True
    need_bias: bool = True
    init: str = "keras"
    sigma_w: float = 1.0
    sigma_b: float = 0.0

    def __post_init__(self):
        levels = len(tuple(self.channels_down)) if not isinstance(self.channels_down, int) else None
        if levels is None:
            levels = len(tuple(self.channels_up)) if not isinstance(self.channels_up, int) else 5
        for name in ("channels_down", "channels_up", "channels_skip"):
            object.__setattr__(self, name, _per_level(getattr(self, name), levels, name))
        _check_common(self)
        if self.levels < 1 or min(self.channels_down + self.channels_up) < 1:
            raise TfdipError("channels_down and channels_up need at least one level, each >= 1")
        if min(self.channels_skip) < 0:
            raise TfdipError(f"channels_skip must be >= 0, got {self.channels_skip}")
        _check_filter_sizes(self, "filter_size_down", "filter_size_up", "filter_skip_size")
        if self.upsample not in UPSAMPLES:
            raise TfdipError(f"upsample must be one of {UPSAMPLES}, got {self.upsample!r}")
        if self.downsample not in DOWNSAMPLES:
            raise TfdipError(f"downsample must be one of {DOWNSAMPLES}, got {self.downsample!r}")

    @property
    def levels(self) -> int:
        return len(self.channels_down)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (2 ** levels)."""
        return 2 ** self.levels

    @property
    def min_size(self) -> int:
        """Smallest input height / width: reflection padding of the deepest level's convolutions
        needs at least 2 pixels there, i.e. 2 ** (levels + 1) at the input."""
        needs_two = self.pad == "reflection" and max(self.filter_size_down, self.filter_size_up) > 1
        return self.size_multiple * (2 if needs_two else 1)

    def build(self, name: str = "skip"):
        """The Keras model (:func:`tfdip.nets.skip_net.build_skip`)."""
        return build_skip(self, name=name)


@dataclasses.dataclass(frozen=True)
class ConvStackSpec:
    """A conv-only stack: ``depth`` x [conv k (stride 1), act], then conv 1x1 to the output.

    This is the network the kernel theory describes layer by layer: no BatchNorm, no sigmoid by
    default, Gaussian weights ``N(0, sigma_w^2 / fan_in)`` and biases ``N(0, sigma_b^2)``.
    """

    input_channels: int = 32
    output_channels: int = 1
    channels: int = 128
    depth: int = 2
    filter_size: int = 3
    pad: str = "reflection"
    activation: str = "relu"
    negative_slope: float = 0.2
    need_sigmoid: bool = False
    need_bias: bool = True
    init: str = "gaussian"
    sigma_w: float = 1.0
    sigma_b: float = 0.0

    def __post_init__(self):
        _check_common(self)
        if self.depth < 1 or self.channels < 1:
            raise TfdipError(f"depth and channels must be >= 1, "
                             f"got {self.depth} and {self.channels}")
        _check_filter_sizes(self, "filter_size")

    @property
    def size_multiple(self) -> int:
        return 1

    @property
    def min_size(self) -> int:
        """Reflection padding of (k - 1) / 2 needs more than (k - 1) / 2 pixels."""
        return (self.filter_size - 1) // 2 + 1

    def build(self, name: str = "conv_stack"):
        """The Keras model (:func:`tfdip.nets.conv_stack_net.build_conv_stack`)."""
        return build_conv_stack(self, name=name)


def _check_filter_sizes(spec, *names: str) -> None:
    for name in names:
        size = getattr(spec, name)
        if size < 1 or size % 2 == 0:
            raise TfdipError(f"{name} must be a positive odd number (the padding keeps H, W), "
                             f"got {size}")


def _check_common(spec) -> None:
    if spec.activation not in ACTIVATIONS:
        raise TfdipError(f"activation must be one of {ACTIVATIONS}, got {spec.activation!r}")
    if spec.init not in INITS:
        raise TfdipError(f"init must be one of {INITS}, got {spec.init!r}")
    if spec.pad not in PADS:
        raise TfdipError(f"pad must be one of {PADS}, got {spec.pad!r}")
    if spec.input_channels < 1 or spec.output_channels < 1:
        raise TfdipError("input_channels and output_channels must be >= 1")
