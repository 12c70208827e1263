"""Covariances on the integer lattice of pixel offsets: the linear maps that mix offsets.

Nearest and bilinear up-sampling and average pooling are linear filters on the pixel grid; the
covariance they produce is a finite weighted sum of the input covariance at lattice offsets. Here a
covariance is tabulated on a window of integer offsets, filtered, and read back at real offsets by
bilinear interpolation between lattice points (exact at integer offsets; the interpolant of a
positive-definite lattice function is positive-definite on the plane, its spectrum being the
lattice spectrum times ``sinc^4``). Offsets are ``(row, column)`` pairs in the last axis.

A table has shape ``batch + [rows, columns]``: ``batch`` comes from the kernel parameters, the last
two axes are the offsets ``lo .. lo + rows - 1`` and ``lo' .. lo' + columns - 1``.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def offset_grid(radius: int, dtype=tf.float32):
    """Integer offsets ``[-radius, radius]^2`` as a float tensor of shape ``[2 radius + 1, 2 radius + 1, 2]``."""
    return window_grid([-radius, -radius], [radius, radius], dtype)


def window_grid(lo, hi, dtype):
    """The integer offsets ``lo .. hi`` (int32 pairs) as a float grid of shape ``[rows, columns, 2]``."""
    rows, columns = tf.range(lo[0], hi[0] + 1), tf.range(lo[1], hi[1] + 1)
    return tf.cast(tf.stack(tf.meshgrid(rows, columns, indexing="ij"), axis=-1), dtype)


def upsampling_filter(method: str, factor: int) -> np.ndarray:
    """Per-axis covariance filter of up-sampling by ``factor``, phase-averaged.

    The up-sampler is ``y(t) = sum_n h(t - factor n) z(n)``: ``h`` is ``factor`` ones for
    ``"nearest"`` (every pixel repeated) and, for ``"bilinear"`` with half-pixel centres,
    ``h(k) = max(0, 1 - |(k + 1/2) / factor - 1/2|)``. Averaged over the phase ``t mod factor``,
    ``K_y(n) = sum_j g(n - factor j) K_z(j) / factor^2`` per pair of axes with ``g = h * h(-.)``
    (autocorrelation). Returns ``g / factor`` (odd length, centred), which sums to ``factor``.
    """
    taps = np.arange(-factor, 2 * factor)
    if method == "nearest":
        h = ((taps >= 0) & (taps < factor)).astype(float)
    else:
        h = np.maximum(0.0, 1.0 - np.abs((taps + 0.5) / factor - 0.5))
    h = np.trim_zeros(h)
    return np.correlate(h, h, mode="full") / factor


def pooling_filter(size: int) -> np.ndarray:
    """Per-axis covariance filter of ``size`` x ``size`` average pooling with stride ``size``.

    ``K'(n) = sum_k w(k) K(size n + k)`` with ``w(k) = (size - |k|) / size^2``, ``|k| < size``.
    """
    box = np.full(size, 1.0 / size)
    return np.correlate(box, box, mode="full")


def window(offsets):
    """The integer offsets ``lo`` and ``hi`` (int32, shape [2]) of a window holding 0, every offset and its +1 neighbour."""
    flat = tf.reshape(offsets, [-1, 2])
    lo = tf.floor(tf.minimum(tf.reduce_min(flat, axis=0), 0.0))
    hi = tf.floor(tf.maximum(tf.reduce_max(flat, axis=0), 0.0)) + 1.0
    return tf.cast(lo, tf.int32), tf.cast(hi, tf.int32)


def inner_window(lo, hi, upsample: int, taps: np.ndarray, downsample: int):
    """The input offsets ``[j_lo, j_hi]`` that :func:`filter_table` needs for outputs ``[lo, hi]``."""
    half = (len(taps) - 1) // 2
    j_lo = tf.math.floordiv(downsample * lo - half, upsample)
    j_hi = -tf.math.floordiv(-(downsample * hi + half), upsample)
    return j_lo, j_hi


def filter_table(table, j_lo, lo, hi, upsample: int, taps: np.ndarray, downsample: int):
    """``K'(n) = sum_k taps(k) U(downsample n + k)`` on both axes, ``U`` = ``table`` with ``upsample - 1`` zeros inserted.

    ``table`` holds the input offsets ``j_lo .. j_lo + size - 1`` on its last two axes (as
    :func:`inner_window` chose them); the result holds the output offsets ``lo .. hi``.
    """
    for axis in (1, 0):  # columns (the last axis), then rows (the last axis once transposed)
        table = tf.linalg.matrix_transpose(
            _filter_last_axis(table, j_lo[axis], lo[axis], hi[axis], upsample, taps, downsample))
    return table


def _filter_last_axis(table, j_lo, lo, hi, upsample, taps, downsample):
    dtype = table.dtype
    if upsample > 1:
        size = tf.shape(table)[-1]
        zeros = tf.zeros(tf.concat([tf.shape(table), [upsample - 1]], axis=0), dtype)
        spread = tf.concat([table[..., tf.newaxis], zeros], axis=-1)
        spread = tf.reshape(spread, tf.concat([tf.shape(table)[:-1], [size * upsample]], axis=0))
        table = spread[..., : (size - 1) * upsample + 1]
    half = (len(taps) - 1) // 2
    length = tf.shape(table)[-1] - 2 * half
    correlated = tf.add_n([tf.constant(tap, dtype) * table[..., k: k + length]
                           for k, tap in enumerate(taps)])
    start = downsample * lo - upsample * j_lo - half
    stop = start + downsample * (hi - lo) + 1
    return correlated[..., start:stop:downsample]


def _flat_index(table, rows, columns, example_ndims: int):
    """Index into ``reshape(table, [-1])`` of table rows / columns (int32), per batch member."""
    size = tf.shape(table)[-2:]
    batch_shape = tf.shape(table)[:-2]
    batch_index = tf.reshape(tf.range(tf.reduce_prod(batch_shape)),
                             tf.concat([batch_shape, tf.ones([example_ndims], tf.int32)], axis=0))
    return (batch_index * size[0] + rows) * size[1] + columns


def gather(table, lo, offsets, example_ndims: int):
    """``table`` (offsets from ``lo``) read at integer-valued ``offsets`` of shape ``[..., 2]``.

    ``table`` has shape ``batch + [rows, columns]``; ``batch`` lines up with the batch axes of
    ``offsets.shape[:-1]`` that precede its ``example_ndims`` example axes. The result has their
    broadcast shape. Offsets must lie in the table (see :func:`window`).
    """
    index = tf.cast(offsets, tf.int32) - lo
    return tf.gather(tf.reshape(table, [-1]),
                     _flat_index(table, index[..., 0], index[..., 1], example_ndims))


def interpolate(table, lo, offsets, example_ndims: int):
    """Bilinear interpolation of ``table`` between lattice points at real ``offsets``; shapes as :func:`gather`."""
    dtype = table.dtype
    size = tf.shape(table)[-2:]
    positions = offsets - tf.cast(lo, dtype)
    corner = tf.clip_by_value(tf.cast(tf.floor(positions), tf.int32), 0, size - 2)
    fraction = positions - tf.cast(corner, dtype)
    flat = tf.reshape(table, [-1])
    base = _flat_index(table, corner[..., 0], corner[..., 1], example_ndims)
    row_weights = (1.0 - fraction[..., 0], fraction[..., 0])
    column_weights = (1.0 - fraction[..., 1], fraction[..., 1])
    return tf.add_n([row_weights[dr] * column_weights[dc] * tf.gather(flat, base + dr * size[1] + dc)
                     for dr in (0, 1) for dc in (0, 1)])


def value_at_zero(table, lo, example_ndims: int):
    """The table's entry at offset (0, 0), shape ``batch + [1] * example_ndims``."""
    return table[..., -lo[0], -lo[1]][(...,) + (tf.newaxis,) * example_ndims]
