"""ES-WMV: stop plain DIP where the windowed moving variance of its iterates is smallest.

Wang, Li, Zhuang, Chen, Liang and Sun, "Early Stopping for Deep Image Prior" (TMLR 2023). With
iterates ``x_t`` (the network's outputs, N entries each) and a window of ``W`` iterates::

    VAR_t = (1 / W) sum_{w=0}^{W-1} mean_entries (x_{t-w} - xbar_t)^2,   xbar_t = (1/W) sum_w x_{t-w}

(defined from ``t = W - 1`` on; averaging over the N entries only rescales it). The variance is
large while the network still learns the image, small once it has fitted it and large again when
it fits the noise; ES-WMV keeps the iterate ``x_{t*}`` at the smallest ``VAR_t`` seen so far and
stops when ``patience`` steps pass without a smaller one, returning ``x_{t*}``. The paper's
setting is ``W = 100``, patience 1000.

:func:`windowed_variances` and :func:`wmv_stop` compute the rule on a whole sequence (NumPy);
:class:`WindowedVarianceTracker` keeps it step by step inside a ``tf.function`` train step, in
variables that a checkpoint holds.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError

WINDOW = 100
PATIENCE = 1000


def windowed_variances(iterates, window: int = WINDOW) -> np.ndarray:
    """``VAR_t`` of a sequence of iterates ``(T, ...)``, shape (T,), NaN before ``t = W - 1``."""
    iterates = np.asarray(iterates, np.float64)
    flat = iterates.reshape(iterates.shape[0], -1)
    out = np.full(flat.shape[0], np.nan)
    for t in range(window - 1, flat.shape[0]):
        block = flat[t - window + 1:t + 1]
        out[t] = np.mean((block - block.mean(axis=0)) ** 2)
    return out


def wmv_stop(variances, patience: int = PATIENCE) -> tuple[int | None, int | None]:
    """``(t*, stop)``: the index of the smallest variance seen until the stop, and the first
    index ``stop`` with ``stop - t* >= patience`` (None if the sequence ends first). Ties keep
    the earlier index; NaN entries (before the first full window) are skipped."""
    best, best_value = None, np.inf
    for t, value in enumerate(np.asarray(variances, np.float64)):
        if np.isfinite(value) and value < best_value:
            best, best_value = t, value
        if best is not None and t - best >= patience:
            return best, t
    return best, None


class WindowedVarianceTracker(tf.Module):
    """ES-WMV step by step: a ring buffer of the last ``window`` iterates (shape ``shape``), the
    smallest ``VAR_t`` so far, its step and iterate, and whether ``patience`` steps have passed
    without a smaller one (then nothing changes any more: the result does not depend on when the
    host notices).

    Memory: ``window + 1`` iterates (the paper's W = 100: 101 images).
    """

    def __init__(self, shape, window: int = WINDOW, patience: int = PATIENCE, dtype=tf.float32,
                 name=None):
        super().__init__(name=name)
        if window < 2 or patience < 1:
            raise TfdipError(f"ES-WMV needs a window >= 2 and a patience >= 1, got {window} and "
                             f"{patience}")
        self.window = int(window)
        self.patience = int(patience)
        self.buffer = tf.Variable(tf.zeros([self.window, *shape], dtype), trainable=False,
                                  name="wmv_buffer")
        self.seen = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="wmv_seen")
        self.best_variance = tf.Variable(tf.constant(np.inf, dtype), trainable=False,
                                         name="wmv_best_variance")
        self.best_step = tf.Variable(tf.constant(-1, tf.int64), trainable=False,
                                     name="wmv_best_step")
        self.best = tf.Variable(tf.zeros(shape, dtype), trainable=False, name="wmv_best")

    @property
    def done(self):
        """Whether ``patience`` iterates have passed since the smallest variance (a bool tensor)."""
        return (self.best_step >= 0) & (self.seen - 1 - self.best_step >= self.patience)

    def update(self, x):
        """Add the next iterate ``x`` (index ``seen``); inside ``tf.function`` or eagerly."""
        x = tf.convert_to_tensor(x, self.buffer.dtype)

        def track():
            t = self.seen
            self.buffer.scatter_nd_update([[tf.math.floormod(t, self.window)]], [x])
            variance = tf.reduce_mean(tf.math.reduce_variance(self.buffer, axis=0))
            better = (t >= self.window - 1) & (variance < self.best_variance)
            self.best_variance.assign(tf.where(better, variance, self.best_variance))
            self.best_step.assign(tf.where(better, t, self.best_step))
            self.best.assign(tf.where(better, x, self.best))
            self.seen.assign_add(1)
            return tf.constant(True)

        return tf.cond(self.done, lambda: tf.constant(False), track)
