"""A tensor of a network as the covariance maps see it: :class:`Field`, and the layer maps' vocabulary.

Each tensor ``(N, H, W, C)`` of a network becomes a :class:`Field`: the covariance of its channels
(in groups of channels that share one covariance, as a concatenation makes them), its spatial size
when the image size is known, and what the maps need to know to stay exact (mean, Gaussianity,
which random layers it is an odd function of). The methods of :class:`Field` (``conv``,
``activation``, ``batch_norm``, ``upsample``, ``avg_pool``, ``downsample``, ``concatenate``,
``add``) are the vocabulary in which layers declare their covariance maps
(:mod:`tfdip.kernels.network`); they build the nodes of :mod:`tfdip.kernels.algebra` and refuse,
in one line naming the layer, what they cannot map exactly:

- a non-linearity needs a zero-mean Gaussian input (a convolution, BatchNorm, a linear resampling
  of those), or for ReLU / LeakyReLU (positively homogeneous) a Gaussian scaled by BatchNorm's
  random ``gamma``;
- weights and biases must be zero-mean (their variances come from the initialisers,
  :mod:`tfdip.kernels.initializers`);
- the inputs of a sum must be uncorrelated: one of them an odd function of a random layer that
  the others do not depend on (e.g. ``x + conv(relu(x))``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import keras
import numpy as np

from tfdip.errors import TfdipError
from tfdip.kernels import algebra, initializers

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


class Context:
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
    context: Context = dataclasses.field(compare=False, repr=False)

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
