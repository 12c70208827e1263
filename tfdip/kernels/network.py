"""The infinite-width covariance of a Keras network, read from the network's own layer graph.

:func:`kernel_of` walks a functional (or ``Sequential``) Keras model from its input to its output
and replaces every layer by its covariance map (the nodes of :mod:`tfdip.kernels.algebra`), with
the weight and bias variances read from the layer's initialisers (:mod:`tfdip.kernels.initializers`).
The Keras model is the one description of an architecture: the network that is trained and the
kernel that describes it cannot drift apart.

Each tensor of the network becomes a :class:`Field`: the covariance of its channels (in groups of
channels that share one covariance, as a concatenation makes them), its spatial size when the
image size is known, and what the maps need to know to stay exact (mean, Gaussianity, which random
layers it is an odd function of). Layers map fields to fields:

- tfdip's own layers declare their map as a method ``covariance_map(self, inputs)`` (``inputs`` a
  :class:`Field`, or a list of them for a layer of several inputs), written with the methods of
  :class:`Field`; so can any user layer;
- Keras' built-in layers are mapped in one registry, :data:`KERAS_LAYERS`: ``Conv2D`` (any
  padding, stride and dilation, any built-in activation), ``Dense`` (a 1 x 1 convolution),
  ``ReLU``, ``LeakyReLU``, ``Activation`` (``relu``, ``leaky_relu``, ``sigmoid``, ``linear``,
  tfdip's ``erf``), ``BatchNormalization`` (training mode: the statistics of each image, as DIP
  runs it), ``UpSampling2D`` (nearest, bilinear), ``AveragePooling2D``, ``Concatenate``,
  ``Add``, ``ZeroPadding2D``, ``Cropping2D``, ``Identity``; a nested functional or ``Sequential``
  model is walked in place.

Any other layer (``MaxPooling2D``, ``Dropout``, ``Conv2DTranspose``, a Lambda, a ``keras.ops``
call ...) stops the walk with a one-line :class:`~tfdip.errors.TfdipError` naming it.

The maps check their own assumptions and refuse what they cannot do exactly: a non-linearity needs
a zero-mean Gaussian input (a convolution, BatchNorm, a linear resampling of those), or for
ReLU / LeakyReLU (positively homogeneous) a Gaussian scaled by BatchNorm's random ``gamma``;
weights and biases must be zero-mean; the branches of an ``Add`` must be uncorrelated (one of them
an odd function of a random layer that the others do not depend on, e.g. ``x + conv(relu(x))``).
Approximations (as :mod:`tfdip.kernels.algebra` states): borders and padding are ignored (an
infinite image), nearest / bilinear up-sampling is phase-averaged, BatchNorm uses the statistics
of an infinite image or, given ``image_size``, a stationary approximation of the finite one.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.kernels import algebra, initializers, maps
from tfdip.nets.layers import erf as tfdip_erf

GAUSSIAN, SCALE_MIXTURE, OTHER = "gaussian", "scale_mixture", "other"
"""What a group's values are, across random networks: zero-mean Gaussian (a convolution of many
independent terms), a Gaussian times an independent random per-channel scale (BatchNorm with a
random ``gamma``), or anything else (an activation's output, the input code)."""
HOMOGENEOUS = ("relu", "leaky_relu")
"""Activations with ``phi(c u) = c phi(u)`` for ``c > 0``: exact on a scale mixture."""


@dataclasses.dataclass(frozen=True)
class Group:
    """Channels of a tensor that share one covariance.

    ``mean`` is the known constant mean of the values (``None``: a non-zero mean that depends on
    the variance, as after ReLU); ``distribution`` is one of :data:`GAUSSIAN`,
    :data:`SCALE_MIXTURE`, :data:`OTHER`.
    """

    covariance: algebra.Covariance
    channels: int
    mean: Optional[float]
    distribution: str


class _Context:
    """What a walk shares: the sigma overrides and the layer being mapped (for error messages)."""

    def __init__(self, sigma_w, sigma_b):
        self.sigma_w, self.sigma_b = sigma_w, sigma_b
        self.layer = "the input"


@dataclasses.dataclass(frozen=True)
class Field:
    """The infinite-width description of one tensor ``(N, H, W, C)`` of a network.

    ``groups`` split the ``C`` channels (in order) into runs that share a covariance; ``shape`` is
    ``(H, W)`` when the image size is known, else ``None``; ``odd_in`` names the random layers the
    tensor is an odd function of (flipping the sign of their weights and biases flips it) and
    ``depends_on`` every random layer upstream (both decide whether the branches of a sum are
    uncorrelated). Layers build new fields with the methods below.
    """

    groups: Tuple[Group, ...]
    shape: Optional[Tuple[int, int]]
    odd_in: frozenset
    depends_on: frozenset
    context: _Context = dataclasses.field(compare=False, repr=False)

    @property
    def channels(self) -> int:
        return sum(g.channels for g in self.groups)

    def error(self, message: str) -> TfdipError:
        return TfdipError(f"kernel_of: layer {self.context.layer!r}: {message}")

    def _replace_groups(self, update, **changes) -> "Field":
        groups = tuple(dataclasses.replace(g, **update(g)) for g in self.groups)
        return dataclasses.replace(self, groups=groups, **changes)

    # ---------------------------------------------------------------- linear layers
    def conv(self, kernel_shape, kernel_initializer, bias_initializer=None, strides=1) -> "Field":
        """A convolution (or dense layer) with i.i.d. zero-mean weights: ``sigma_b^2 + sigma_w^2 C``.

        ``kernel_shape`` is ``(k_1, ..., C_in, C_out)``: ``fan_in = C_in prod k`` and
        ``sigma_w^2 = fan_in Var(w)``, ``sigma_b^2 = Var(b)`` (``bias_initializer=None``: no bias).
        ``C`` is the channel average of the input groups' covariances (each input channel has its
        own independent weights). ``strides`` (one int or a pair) sub-samples the output.
        With the walk's ``sigma_w`` / ``sigma_b`` overrides, Gaussian weights are
        ``N(0, sigma_w^2 / fan_in)`` and biases ``N(0, sigma_b^2)``.
        """
        kernel_shape = tuple(int(n) for n in kernel_shape)
        fan_in = math.prod(kernel_shape[:-1])
        if kernel_shape[-2] != self.channels:
            raise self.error(f"its kernel takes {kernel_shape[-2]} channels but its input has "
                             f"{self.channels} (grouped convolutions have no covariance map)")
        weight_mean, weight_variance = self._moments(kernel_initializer, kernel_shape, "kernel")
        weight_variance *= fan_in
        bias_variance = 0.0
        if bias_initializer is not None:
            bias_variance = self._moments(bias_initializer, kernel_shape[-1:], "bias")[1]
        weight_variance, bias_variance = self._overridden(kernel_initializer, weight_variance,
                                                          bias_variance, bias_initializer)
        inner = self.groups[0].covariance
        if len(self.groups) > 1:
            inner = algebra.channel_average([g.covariance for g in self.groups],
                                            [g.channels for g in self.groups])
        covariance = algebra.Affine(inner, weight_variance, bias_variance)
        field = dataclasses.replace(
            self, groups=(Group(covariance, kernel_shape[-1], 0.0, GAUSSIAN),),
            odd_in=frozenset([self.context.layer]),
            depends_on=self.depends_on | {self.context.layer})
        return field.downsample(strides)

    def _moments(self, initializer, shape, what: str, zero_mean: bool = True):
        """``(mean, variance)`` of the entries of weight ``what``, checked to be zero-mean."""
        try:
            mean, variance = initializers.moments(initializer, shape)
        except TfdipError as error:
            raise self.error(f"{what}: {error}") from None
        if zero_mean and mean != 0.0:
            raise self.error(f"its {what} initializer has mean {mean:g}; the covariance maps "
                             "need zero-mean weights and biases")
        return mean, variance

    def _overridden(self, kernel_initializer, weight_variance, bias_variance, bias_initializer):
        sigma_w, sigma_b = self.context.sigma_w, self.context.sigma_b
        if sigma_w is None and sigma_b is None:
            return weight_variance, bias_variance
        init = keras.initializers.get(kernel_initializer)
        if not isinstance(init, keras.initializers.RandomNormal):
            raise self.error(f"sigma_w / sigma_b set the scale of Gaussian N(0, sigma_w^2 / fan_in) "
                             f"weights, but its kernel initializer is {type(init).__name__} (build "
                             "the net with init='gaussian')")
        if sigma_w is not None:
            weight_variance = sigma_w * sigma_w
        if sigma_b is not None and bias_initializer is not None:
            bias_variance = sigma_b * sigma_b
        return weight_variance, bias_variance

    def downsample(self, strides) -> "Field":
        """Sub-sampling by ``strides`` (one int or a ``(row, column)`` pair): ``K'(r) = K(stride r)``."""
        strides = _pair(strides)
        if strides == (1, 1):
            return self
        return self._replace_groups(lambda g: dict(covariance=g.covariance.downsample(strides)),
                                    shape=self._shrunk(strides, "stride"))

    def avg_pool(self, size) -> "Field":
        """``size`` x ``size`` average pooling with stride ``size``."""
        size = _pair(size)
        if size[0] != size[1]:
            raise self.error(f"average pooling needs a square window, got {size}")
        shape = self._shrunk(size, "pool size")
        return self._replace_groups(lambda g: dict(covariance=g.covariance.avg_pool(size[0])),
                                    shape=shape)

    def upsample(self, factor, method: str) -> "Field":
        """Up-sampling by an integer ``factor`` (nearest or bilinear, phase-averaged)."""
        factor = _pair(factor)
        if factor[0] != factor[1]:
            raise self.error(f"up-sampling needs the same factor on both axes, got {factor}")
        if method not in ("nearest", "bilinear"):
            raise self.error(f"up-sampling by {method!r} has no covariance map; use nearest or "
                             "bilinear")
        shape = None if self.shape is None else tuple(n * factor[0] for n in self.shape)
        return self._replace_groups(
            lambda g: dict(covariance=g.covariance.upsample(factor[0], method)), shape=shape)

    def _shrunk(self, strides, what: str):
        if self.shape is None:
            return None
        if any(n % s for n, s in zip(self.shape, strides)):
            raise self.error(f"the image is {self.shape[0]} x {self.shape[1]} pixels here, not a "
                             f"multiple of its {what} {strides[0]}; choose an image_size that is")
        return tuple(n // s for n, s in zip(self.shape, strides))

    # ---------------------------------------------------------------- non-linear layers
    def activation(self, name: str, negative_slope=0.2) -> "Field":
        """A point-wise non-linearity: ``relu``, ``leaky_relu`` (``negative_slope``), ``erf``,
        ``sigmoid`` or ``linear`` (the identity)."""
        if name == "linear":
            return self
        if name not in algebra.ACTIVATIONS:
            raise self.error(f"the activation {name!r} has no covariance map; use relu, "
                             "leaky_relu, sigmoid, erf or linear")
        for g in self.groups:
            scaled = g.distribution == SCALE_MIXTURE and name in HOMOGENEOUS
            if g.mean != 0.0 or not (g.distribution == GAUSSIAN or scaled):
                what = ("a randomly scaled field (BatchNorm with a random gamma)"
                        if g.distribution == SCALE_MIXTURE else "a field that is not zero-mean Gaussian")
                raise self.error(f"{name} of {what} has no closed-form covariance; put a "
                                 "convolution before it")
        mean = {"erf": 0.0, "sigmoid": 0.5}.get(name)
        odd_in = self.odd_in if name == "erf" else frozenset()
        return self._replace_groups(
            lambda g: dict(covariance=g.covariance.activation(name, negative_slope),
                           mean=mean, distribution=OTHER), odd_in=odd_in)

    def batch_norm(self, epsilon, gamma_initializer=None, beta_initializer=None) -> "Field":
        """BatchNorm over the spatial axes of each image, per channel:
        ``gamma (x - mean) / sqrt(var + epsilon) + beta``.

        Covariance ``E[gamma^2] (K - L) / (K(0) - L + epsilon) + Var(beta)`` (see
        :class:`algebra.BatchNorm`); ``None`` initialisers mean ``gamma = 1``, ``beta = 0``.
        """
        gamma_mean, gamma_variance = 1.0, 0.0
        if gamma_initializer is not None:
            gamma_mean, gamma_variance = self._moments(gamma_initializer, (self.channels,),
                                                       "gamma", zero_mean=False)
        beta_variance = 0.0
        if beta_initializer is not None:
            beta_variance = self._moments(beta_initializer, (self.channels,), "beta")[1]
        odd = beta_variance == 0.0
        gain = gamma_mean * gamma_mean + gamma_variance

        def normalise(g):
            covariance = g.covariance.batch_norm(gain, epsilon, self.shape)
            if beta_variance:
                covariance = covariance.bias(math.sqrt(beta_variance))
            if g.distribution == OTHER:
                distribution = OTHER
            else:
                distribution = SCALE_MIXTURE if gamma_variance else GAUSSIAN
            return dict(covariance=covariance, mean=0.0, distribution=distribution)

        return self._replace_groups(normalise, odd_in=self.odd_in if odd else frozenset(),
                                    depends_on=self.depends_on | {self.context.layer})

    # ---------------------------------------------------------------- several inputs
    def concatenate(self, others: Sequence["Field"]) -> "Field":
        """Concatenation on channels (after centre-cropping to the smallest size, if any)."""
        fields = (self,) + tuple(others)
        shapes = {f.shape for f in fields}
        shape = None if None in shapes else tuple(min(s[i] for s in shapes) for i in (0, 1))
        return Field(sum((f.groups for f in fields), ()), shape,
                     frozenset.intersection(*(f.odd_in for f in fields)),
                     frozenset.union(*(f.depends_on for f in fields)), self.context)

    def add(self, others: Sequence["Field"]) -> "Field":
        """The element-wise sum of uncorrelated tensors: ``K = sum_i K_i`` per channel."""
        fields = (self,) + tuple(others)
        if len({f.channels for f in fields}) != 1:
            raise self.error("its inputs have different numbers of channels")
        for i, a in enumerate(fields):
            for b in fields[i + 1:]:
                if not (a.odd_in - b.depends_on or b.odd_in - a.depends_on):
                    raise self.error("its inputs may be correlated (neither is an odd function of "
                                     "a random layer the other does not depend on); the "
                                     "covariance of such a sum has no map here")
        bounds = sorted(set().union(*(_boundaries(f) for f in fields)))
        split = [_split(f, bounds) for f in fields]
        groups = []
        for parts in zip(*split):
            means = [g.mean for g in parts]
            gaussian = all(g.distribution == GAUSSIAN for g in parts)
            groups.append(Group(algebra.add(*(g.covariance for g in parts)), parts[0].channels,
                                None if None in means else float(sum(means)),
                                GAUSSIAN if gaussian else OTHER))
        return Field(tuple(groups), self.shape, frozenset.intersection(*(f.odd_in for f in fields)),
                     frozenset.union(*(f.depends_on for f in fields)), self.context)


def _pair(value) -> Tuple[int, int]:
    return (int(value),) * 2 if np.ndim(value) == 0 else tuple(int(v) for v in value)


def _boundaries(field: Field):
    """Channel indices where ``field``'s groups end."""
    return set(np.cumsum([g.channels for g in field.groups]).tolist())


def _split(field: Field, bounds):
    """``field``'s groups cut at every channel index in ``bounds`` (sorted, ending at C)."""
    pieces, start, index = [], 0, 0
    ends = np.cumsum([g.channels for g in field.groups])
    for end in bounds:
        while ends[index] < end:
            index += 1
        pieces.append(dataclasses.replace(field.groups[index], channels=end - start))
        start = end
    return pieces


# -------------------------------------------------------------------- Keras' built-in layers

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


# -------------------------------------------------------------------- the walk

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
    context = _Context(sigma_w, sigma_b)
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
