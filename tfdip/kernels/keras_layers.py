"""Keras' built-in layers as covariance maps: the registry :data:`KERAS_LAYERS`.

Each entry maps a layer and its input :class:`~tfdip.kernels.field.Field` (a list of them for a
layer of several inputs) to its output field, reading the layer's configuration and initialisers.
tfdip's own layers declare their maps as methods (``covariance_map``) instead.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfdip.kernels.field import Field
from tfdip.nets.layers import erf as tfdip_erf

def _keras_activation(field: Field, function) -> Field:
    """The field after a Keras activation function (``layer.activation``)."""
    known = {keras.activations.linear: ("linear", 0.0), keras.activations.relu: ("relu", 0.0),
             keras.activations.leaky_relu: ("leaky_relu", 0.2),
             keras.activations.sigmoid: ("sigmoid", 0.0), tfdip_erf: ("erf", 0.0),
             tf.math.erf: ("erf", 0.0)}
    if function not in known:
        name = getattr(function, "__name__", type(function).__name__)
        raise field.error(f"the activation {name!r} has no covariance map; use relu, "
                          "leaky_relu, sigmoid, tfdip's erf or linear")
    name, slope = known[function]
    return field.activation(name, slope)


def _conv(layer, field):
    field = field.conv(layer.kernel.shape, layer.kernel_initializer,
                       layer.bias_initializer if layer.use_bias else None, layer.strides)
    return _keras_activation(field, layer.activation)


def _dense(layer, field):
    field = field.conv(layer.kernel.shape, layer.kernel_initializer,
                       layer.bias_initializer if layer.use_bias else None)
    return _keras_activation(field, layer.activation)


def _relu(layer, field):
    if layer.max_value is not None or float(layer.threshold) != 0.0:
        raise field.error("ReLU with max_value or threshold has no covariance map")
    slope = float(layer.negative_slope)
    return field.activation("leaky_relu", slope) if slope else field.activation("relu")


def _batch_norm(layer, field):
    if layer.axis not in (-1, 3):
        raise field.error(f"BatchNormalization over axis {layer.axis} has no covariance map; "
                          "normalise channels (axis=-1)")
    return field.batch_norm(layer.epsilon, layer.gamma_initializer if layer.scale else None,
                            layer.beta_initializer if layer.center else None)


def _average_pooling(layer, field):
    if tuple(layer.strides) != tuple(layer.pool_size):
        raise field.error("average pooling with strides other than its pool size has no "
                          "covariance map")
    return field.avg_pool(layer.pool_size)


def _concatenate(layer, fields):
    if layer.axis not in (-1, 3):
        raise fields[0].error(f"concatenation on axis {layer.axis} has no covariance map; "
                              "concatenate channels (axis=-1)")
    return fields[0].concatenate(fields[1:])


KERAS_LAYERS = {
    keras.layers.Conv2D: _conv,
    keras.layers.Dense: _dense,
    keras.layers.ReLU: _relu,
    keras.layers.LeakyReLU: lambda layer, field: field.activation("leaky_relu",
                                                                  float(layer.negative_slope)),
    keras.layers.Activation: lambda layer, field: _keras_activation(field, layer.activation),
    keras.layers.BatchNormalization: _batch_norm,
    keras.layers.UpSampling2D: lambda layer, field: field.upsample(layer.size, layer.interpolation),
    keras.layers.AveragePooling2D: _average_pooling,
    keras.layers.Concatenate: _concatenate,
    keras.layers.Add: lambda layer, fields: fields[0].add(fields[1:]),
    keras.layers.ZeroPadding2D: lambda layer, field: field,
    keras.layers.Cropping2D: lambda layer, field: field,
    keras.layers.Identity: lambda layer, field: field,
}
"""Keras layer class (exactly; subclasses may change the computation) -> ``map(layer, inputs)``.

Padding and cropping leave the covariance of an infinite image unchanged."""
