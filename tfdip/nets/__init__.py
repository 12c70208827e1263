"""DIP generator networks (Keras 3) and a small registry of them by name.

Every net maps a fixed code ``z`` of shape ``(N, H, W, input_channels)`` to an image
``(N, H, W, output_channels)``; H and W may vary from call to call (multiples of
``spec.size_multiple``). Build one from keyword arguments::

    net = tfdip.nets.skip(output_channels=1)             # the default DIP generator
    net = tfdip.nets.get("conv_stack", channels=64)      # by name
    spec = tfdip.nets.spec_for("encoder_decoder")        # the description only

Nets are built in Keras' float type (``keras.config.floatx()``, float32 unless set to float64)
and follow the global mixed-precision policy.
"""
from __future__ import annotations

import dataclasses

import keras

from tfdip.errors import TfdipError
from tfdip.nets.spec import ConvStackSpec, SkipSpec


def _check_parameters(net: str, spec_type, kwargs: dict, reserved=()) -> None:
    allowed = [f.name for f in dataclasses.fields(spec_type) if f.name not in reserved]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TfdipError(f"net {net!r} has no parameter {', '.join(unknown)}; "
                         f"use one of: {', '.join(allowed)}")


def _skip_spec(**kwargs) -> SkipSpec:
    _check_parameters("skip", SkipSpec, kwargs)
    return SkipSpec(**kwargs)


def _encoder_decoder_spec(**kwargs) -> SkipSpec:
    _check_parameters("encoder_decoder", SkipSpec, kwargs, reserved=("channels_skip",))
    return SkipSpec(channels_skip=0, **kwargs)


def _conv_stack_spec(**kwargs) -> ConvStackSpec:
    _check_parameters("conv_stack", ConvStackSpec, kwargs)
    return ConvStackSpec(**kwargs)


NETS = {
    "skip": _skip_spec,
    "encoder_decoder": _encoder_decoder_spec,
    "conv_stack": _conv_stack_spec,
}
"""Net name -> function of keyword arguments returning the net's spec."""


def spec_for(name: str, **kwargs):
    """The spec (:class:`SkipSpec` or :class:`ConvStackSpec`) of net ``name`` with ``kwargs``."""
    if name not in NETS:
        raise TfdipError(f"unknown net {name!r}; choose one of: {', '.join(NETS)}")
    return NETS[name](**kwargs)


def get(name: str, **kwargs) -> keras.Model:
    """Build net ``name`` (a key of :data:`NETS`) with ``kwargs``; the model is named ``name``."""
    return spec_for(name, **kwargs).build(name=name)


def skip(**kwargs) -> keras.Model:
    """The DIP skip net, ``SkipSpec(**kwargs).build()`` (2,217,831 parameters by default)."""
    return get("skip", **kwargs)


def encoder_decoder(**kwargs) -> keras.Model:
    """The skip net without skip branches (``channels_skip = 0`` at every level)."""
    return get("encoder_decoder", **kwargs)


def conv_stack(**kwargs) -> keras.Model:
    """The conv-only stack of :class:`ConvStackSpec` that the kernel theory describes."""
    return get("conv_stack", **kwargs)


__all__ = ["NETS", "ConvStackSpec", "SkipSpec", "conv_stack", "encoder_decoder", "get", "skip",
           "spec_for"]
