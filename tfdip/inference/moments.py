"""Running posterior moments of a stream of samples (Welford), mergeable across chains (Chan).

All state lives in ``tf.Variable`` s, so a :class:`RunningMoments` can be updated inside a
``tf.function`` train step and saved / restored with ``tf.train.Checkpoint`` mid-stream.
"""
from __future__ import annotations

import functools

import tensorflow as tf

from tfdip.errors import TfdipError


class RunningMoments(tf.Module):
    """Mean and variance of samples ``x_1, ..., x_n`` of a fixed shape, one sample at a time.

    Welford's update for sample ``x`` (``n`` counts it)::

        delta = x - mean;   mean += delta / n;   M2 += delta * (x - mean)

    so ``mean = (1/n) sum x_i`` and ``M2 = sum (x_i - mean)^2`` element-wise, without storing the
    samples. ``variance`` is the *population* variance ``M2 / n`` (the spread of the samples
    actually drawn, as the GP-DIP authors report it; multiply by ``n / (n - 1)`` for the unbiased
    estimate). Before any sample, mean, variance and std are zeros.

    Args:
        shape: shape of one sample, e.g. ``(H, W, C)``.
        keep_samples: size of a ring buffer keeping the last samples (0: none).
        dtype: ``tf.float32`` or ``tf.float64``.
        name: module name.
    """

    def __init__(self, shape, keep_samples: int = 0, dtype=tf.float32, name=None):
        super().__init__(name=name)
        try:
            self.shape = tf.TensorShape(shape)
        except (TypeError, ValueError) as error:
            raise TfdipError(f"shape must be a sequence of ints, got {shape!r}") from error
        if not self.shape.is_fully_defined():
            raise TfdipError(f"shape must be fully defined, got {shape!r}")
        if not isinstance(keep_samples, int) or keep_samples < 0:
            raise TfdipError(f"keep_samples must be a non-negative int, got {keep_samples!r}")
        self.dtype = tf.as_dtype(dtype)
        if not self.dtype.is_floating:
            raise TfdipError(f"dtype must be a float type, got {self.dtype.name}")
        self.keep_samples = keep_samples
        self.count = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="count")
        self._mean = tf.Variable(tf.zeros(self.shape, self.dtype), trainable=False, name="mean")
        self._m2 = tf.Variable(tf.zeros(self.shape, self.dtype), trainable=False, name="m2")
        self._buffer = tf.Variable(tf.zeros([keep_samples, *self.shape], self.dtype),
                                   trainable=False, name="buffer")

    def update(self, x):
        """Add one sample ``x`` of shape ``self.shape`` (works eagerly and in ``tf.function``)."""
        x = tf.convert_to_tensor(x, self.dtype)
        if not x.shape.is_compatible_with(self.shape):
            raise TfdipError(f"sample of shape {x.shape} does not match the moments' shape "
                             f"{self.shape}; pass one sample at a time")
        if self.keep_samples:
            slot = tf.math.floormod(self.count, self.keep_samples)
            self._buffer.scatter_nd_update(tf.reshape(slot, [1, 1]), x[None])
        count = self.count.assign_add(1)
        delta = x - self._mean
        mean = self._mean.assign_add(delta / tf.cast(count, self.dtype))
        self._m2.assign_add(delta * (x - mean))

    @property
    def mean(self):
        """Sample mean, shape ``self.shape``."""
        return tf.convert_to_tensor(self._mean)

    @property
    def m2(self):
        """Sum of squared deviations from the mean, shape ``self.shape``."""
        return tf.convert_to_tensor(self._m2)

    @property
    def variance(self):
        """Population variance ``M2 / n`` (zeros before any sample)."""
        return tf.math.divide_no_nan(self._m2, tf.cast(self.count, self.dtype))

    @property
    def std(self):
        """Population standard deviation ``sqrt(M2 / n)``."""
        return tf.sqrt(self.variance)

    @property
    def std_channel_mean(self):
        """Std averaged over the last axis (colour channels), for display: shape ``shape[:-1]``."""
        return tf.reduce_mean(self.std, axis=-1)

    @property
    def samples(self):
        """The last ``min(count, keep_samples)`` samples, oldest first: ``(k, *shape)``."""
        if not self.keep_samples:
            raise TfdipError("these moments keep no samples; create them with keep_samples > 0")
        kept = tf.minimum(self.count, self.keep_samples)
        start = tf.math.floormod(self.count - kept, self.keep_samples)
        order = tf.math.floormod(start + tf.range(kept), self.keep_samples)
        return tf.gather(self._buffer, order)

    def reset(self):
        """Forget every sample."""
        self.count.assign(0)
        self._mean.assign(tf.zeros_like(self._mean))
        self._m2.assign(tf.zeros_like(self._m2))
        self._buffer.assign(tf.zeros_like(self._buffer))

    @classmethod
    def from_arrays(cls, count, mean, m2, dtype=tf.float32) -> "RunningMoments":
        """Moments with the given state (no sample buffer): ``count`` samples with element-wise
        ``mean`` and sum of squared deviations ``m2`` (arrays of one shape), e.g. the moments of a
        chain that ran in another process."""
        mean = tf.convert_to_tensor(mean, dtype)
        m2 = tf.convert_to_tensor(m2, dtype)
        if mean.shape != m2.shape:
            raise TfdipError(f"mean {mean.shape} and m2 {m2.shape} must have the same shape")
        if int(count) < 0:
            raise TfdipError(f"count must be >= 0, got {count}")
        moments = cls(mean.shape, dtype=dtype)
        moments.count.assign(int(count))
        moments._mean.assign(mean)
        moments._m2.assign(m2)
        return moments

    def merge(self, other: "RunningMoments") -> "RunningMoments":
        """Moments of the pooled samples of ``self`` and ``other`` (Chan et al. 1979), as a new
        :class:`RunningMoments` without a sample buffer; neither input changes.

        With counts ``n_a, n_b``, ``n = n_a + n_b`` and ``delta = mean_b - mean_a``::

            mean = mean_a + delta * n_b / n,   M2 = M2_a + M2_b + delta^2 * n_a * n_b / n
        """
        if other.shape != self.shape or other.dtype != self.dtype:
            raise TfdipError(f"cannot merge moments of shape {other.shape} ({other.dtype.name}) "
                             f"into {self.shape} ({self.dtype.name}); shapes and dtypes must match")
        n_a = tf.cast(self.count, self.dtype)
        n_b = tf.cast(other.count, self.dtype)
        n = n_a + n_b
        delta = other.mean - self.mean
        merged = RunningMoments(self.shape, dtype=self.dtype)
        merged.count.assign(self.count + other.count)
        merged._mean.assign(self.mean + tf.math.divide_no_nan(delta * n_b, n))
        merged._m2.assign(self.m2 + other.m2 + tf.math.divide_no_nan(delta**2 * n_a * n_b, n))
        return merged


def combine(moments_list) -> RunningMoments:
    """Pool the moments of several chains (pairwise :meth:`RunningMoments.merge`)."""
    moments_list = list(moments_list)
    if not moments_list:
        raise TfdipError("combine needs at least one RunningMoments")
    empty = RunningMoments(moments_list[0].shape, dtype=moments_list[0].dtype)
    return functools.reduce(RunningMoments.merge, moments_list, empty)
