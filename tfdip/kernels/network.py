"""The infinite-width covariance of a Keras network, read from the network's own layer graph.

:func:`kernel_of` walks a functional (or ``Sequential``) Keras model from its input to its output
and replaces every layer by its covariance map (the nodes of :mod:`tfdip.kernels.algebra`), with
the weight and bias variances read from the layer's initialisers (:mod:`tfdip.kernels.initializers`).
The Keras model is the one description of an architecture: the network that is trained and the
kernel that describes it cannot drift apart.

Each tensor of the network becomes a :class:`~tfdip.kernels.field.Field` (the covariance of its
channels and what the maps need to stay exact); layers map fields to fields:

- tfdip's own layers declare their map as a method ``covariance_map(self, inputs)`` (``inputs`` a
  ``Field``, or a list of them for a layer of several inputs), written with the methods of
  ``Field``; so can any user layer;
- Keras' built-in layers are mapped in one registry,
  :data:`~tfdip.kernels.keras_layers.KERAS_LAYERS`: ``Conv2D`` (any
  padding, stride and dilation, any built-in activation), ``Dense`` (a 1 x 1 convolution),
  ``ReLU``, ``LeakyReLU``, ``Activation`` (``relu``, ``leaky_relu``, ``sigmoid``, ``linear``,
  tfdip's ``erf``), ``BatchNormalization`` (training mode: the statistics of each image, as DIP
  runs it), ``UpSampling2D`` (nearest, bilinear), ``AveragePooling2D``, ``Concatenate``,
  ``Add``, ``ZeroPadding2D``, ``Cropping2D``, ``Identity``; a nested functional or ``Sequential``
  model is walked in place.

Any other layer (``MaxPooling2D``, ``Dropout``, ``Conv2DTranspose``, a Lambda, a ``keras.ops``
call ...) stops the walk with a one-line :class:`~tfdip.errors.TfdipError` naming it.

The maps check their own assumptions (see :mod:`tfdip.kernels.field`) and refuse the rest.
Approximations (as :mod:`tfdip.kernels.algebra` states): borders and padding are ignored (an
infinite image), nearest / bilinear up-sampling is phase-averaged, BatchNorm uses the statistics
of an infinite image or, given ``image_size``, a stationary approximation of the finite one.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.kernels import algebra, maps
from tfdip.kernels.field import OTHER, Context, Field, Group
from tfdip.kernels.keras_layers import KERAS_LAYERS

def _apply(operation, inputs, context):
    """The field(s) out of ``operation`` given its input fields."""
    if isinstance(operation, keras.Model):
        return _propagate(operation, inputs, context)
    context.layer = operation.name
    arguments = inputs[0] if len(inputs) == 1 else list(inputs)
    declared = getattr(operation, "covariance_map", None)
    if declared is not None:
        return declared(arguments)
    if type(operation) in KERAS_LAYERS:
        return KERAS_LAYERS[type(operation)](operation, arguments)
    raise TfdipError(f"kernel_of: layer {operation.name!r} ({type(operation).__name__}) has no "
                     "covariance map; see tfdip.kernels.network for the supported layers")


def _propagate(model, inputs, context):
    """The field of ``model``'s output, given the fields of its inputs."""
    if isinstance(model, keras.Sequential):
        (field,) = inputs
        for layer in model.layers:
            field = _apply(layer, [field], context)
        return field
    try:
        model_inputs, model_outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        model_inputs = model_outputs = None
    if not model_inputs or not model_outputs:
        raise TfdipError(f"kernel_of needs a functional or Sequential Keras model; "
                         f"{model.name!r} ({type(model).__name__}) has no layer graph")
    if len(model_inputs) != len(inputs) or len(model_outputs) != 1:
        raise TfdipError(f"kernel_of needs a model of one input and one output; {model.name!r} "
                         f"has {len(model_inputs)} and {len(model_outputs)}")
    fields = {id(t): f for t, f in zip(model_inputs, inputs)}

    def field_of(tensor):
        if id(tensor) not in fields:
            operation, node_index, tensor_index = tensor._keras_history
            if tensor_index != 0:
                raise TfdipError(f"kernel_of: layer {operation.name!r} has several outputs")
            node = operation._inbound_nodes[node_index]
            fields[id(tensor)] = _apply(operation, [field_of(t) for t in node.input_tensors],
                                        context)
        return fields[id(tensor)]

    return field_of(model_outputs[0])


def as_model(network) -> keras.Model:
    """A Keras model, or an architecture description (``SkipSpec`` ...) built with ``build()``."""
    if isinstance(network, keras.Model):
        return network
    if callable(getattr(network, "build", None)):
        return network.build()
    raise TfdipError(f"kernel_of needs a Keras model or an architecture description, got "
                     f"{type(network).__name__}")


def image_shape(image_size):
    """``image_size`` (``None``, ``H`` or ``(H, W)``) as ``None`` or an ``(H, W)`` tuple of ints."""
    if image_size is None:
        return None
    shape = (int(image_size),) * 2 if np.ndim(image_size) == 0 else tuple(int(n) for n in image_size)
    if len(shape) != 2 or min(shape) < 1:
        raise TfdipError(f"image_size must be H or (H, W), positive, got {image_size}")
    return shape


def output_field(network, input: algebra.Covariance | None = None, image_size=None,
                 sigma_w=None, sigma_b=None) -> Field:
    """The :class:`Field` of the output of ``network`` (arguments as :func:`kernel_of`)."""
    model = as_model(network)
    input = algebra.InputNoise.dip() if input is None else input
    context = Context(sigma_w, sigma_b)
    model_inputs = getattr(model, "inputs", None)
    if not model_inputs or len(model_inputs) != 1:
        raise TfdipError(f"kernel_of needs a functional or Sequential Keras model of one input; "
                         f"{model.name!r} ({type(model).__name__}) has no layer graph")
    channels = model_inputs[0].shape[-1]
    start = Field((Group(input, channels, None, OTHER),), image_shape(image_size), frozenset(),
                  frozenset(), context)
    return _propagate(model, [start], context)


def kernel_of(network, input: algebra.Covariance | None = None, *, image_size=None, sigma_w=None,
              sigma_b=None) -> algebra.Covariance:
    """The covariance ``K(r)`` of one output channel of ``network`` over random weights.

    Args:
      network: a functional or ``Sequential`` Keras model of one input ``(N, H, W, C_in)`` and one
        output ``(N, H, W, C)`` made of supported layers (see the module docstring), e.g. one of
        :mod:`tfdip.nets`; or an architecture description (``SkipSpec``, ``ConvStackSpec``),
        which is built first (``spec.build()``).
      input: the covariance of every input channel, a :class:`algebra.Covariance` (default
        :meth:`algebra.InputNoise.dip`, DIP's code U(0, 0.1)); e.g.
        ``InputNoise(variance, mean, smoothing)`` with ``tf.Variable`` parameters to fit them.
      image_size: ``None`` (an infinite image) or the input's ``H`` or ``(H, W)``: BatchNorm then
        removes the mean covariance over the image at its layer's resolution instead of
        ``K(infinity)``, which matters where deep levels are only a few pixels wide. Every stride
        and pooling must divide the image size where it acts.
      sigma_w, sigma_b: replace the scales of Gaussian weights ``N(0, sigma_w^2 / fan_in)`` and
        biases ``N(0, sigma_b^2)`` of every convolution (numbers, tensors or variables; the
        network's kernel initialisers must be ``RandomNormal``, as ``init="gaussian"`` builds).

    Returns:
      The output's covariance about its mean: after a sigmoid head about 1/2 (a probit-mixture
      approximation, :func:`maps.sigmoid`), after a final ReLU about its mean; otherwise that of
      the zero-mean last convolution.

    Raises:
      TfdipError: naming the first layer that has no covariance map or whose map's assumptions
        fail (one line).
    """
    group = _output_group(network, input, image_size, sigma_w, sigma_b)
    if group.mean is None:
        activation = group.covariance
        return algebra.Activation(activation.inner, activation.name, activation.negative_slope,
                                  centered=True)
    if group.mean == 0.0:
        return group.covariance
    return group.covariance.centered(group.mean)


def _output_group(network, input, image_size, sigma_w=None, sigma_b=None) -> Group:
    """The output's one :class:`Group`; its mean is known or that of its final activation."""
    field = output_field(network, input, image_size, sigma_w, sigma_b)
    if len({id(g.covariance) for g in field.groups}) != 1:
        raise TfdipError("kernel_of: the output's channels have different covariances (a "
                         "concatenation reaches the output); end the model with a convolution")
    group = field.groups[0]
    if group.mean is None and not isinstance(group.covariance, algebra.Activation):
        raise TfdipError("kernel_of: the output's mean is not known (it is not that of an "
                         "activation or of a zero-mean layer); end the model with a "
                         "convolution or an activation")
    return group


def output_mean(network, input: algebra.Covariance | None = None, image_size=None) -> float:
    """The mean of every output value of ``network`` over random weights (as :func:`kernel_of` centres it)."""
    group = _output_group(network, input, image_size)
    if group.mean is not None:
        return float(group.mean)
    activation = group.covariance
    at_zero = activation.inner.moments(tf.zeros([1, 2], tf.float64), 1).at_zero
    return float(tf.reshape(maps.activation_mean(activation.name, at_zero,
                                                 activation.negative_slope), [-1])[0])
