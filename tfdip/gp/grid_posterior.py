"""The GP posterior on a pixel grid without dense matrices: CG posterior mean, pathwise std map.

With ``A = P K P^T + (s^2 + jitter) I`` (:class:`~tfdip.gp.grid.ObservedGridKernel`, the jitter is
:data:`~tfdip.gp.prior.JITTER` as in the dense solver) and the centred observations ``y_c - m_c``:

    mean_c = m_c + K P^T A^-1 (y_c - m_c)

solved by batched CG (:mod:`tfdip.gp.cg`) with one column per channel. The per-pixel std comes from
``S`` pathwise posterior samples (:mod:`tfdip.gp.sampling`) whose right-hand sides join the
channels' in the first CG batch (later batches of :data:`SAMPLE_BATCH` run on their own to bound
memory). On a full periodic grid (the torus model, ``periodic=True`` and every pixel observed)
everything is closed form in the Fourier domain: the mean is the Wiener filter and the variance
``mean_k lambda_k s^2 / (lambda_k + s^2)`` is the same at every pixel (no sampling).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, List, Optional

import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.gp.cg import DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE, conjugate_gradients
from tfdip.gp.data import PixelData
from tfdip.gp.grid import (TRUNCATION, GridKernel, ObservedGridKernel, memory_bytes,
                           required_fft_shape, wiener_filter)
from tfdip.gp.prior import JITTER, GPPrior
from tfdip.gp.sampling import (circulant_embedding, posterior_deviations, prior_samples,
                               sample_right_hand_sides, std_from_deviations, std_relative_error,
                               torus_eigenvalues)
from tfdip.resources import MEMORY_HEADROOM, available_memory_bytes

SAMPLE_BATCH = 32
"""Posterior samples solved together in one CG batch."""

Progress = Callable[[str, int, int, str], None]
"""``progress(stage, done, total, detail)``: stage ``"mean"`` (CG iterations) or ``"samples"``."""


@dataclasses.dataclass(frozen=True)
class GridPosterior:
    """The outcome of :func:`grid_posterior`.

    Attributes:
      mean: posterior mean per channel, ``[C, N]`` float64.
      std: posterior std per pixel ``[N]`` (None without samples and not closed form).
      samples: posterior samples behind ``std`` (0: none or closed form).
      std_relative_error: Monte Carlo relative error of ``std`` (0 when exact, None without std).
      cg_iterations: CG iterations of the mean's solve (the most over channels).
      cg_residual: the largest true relative residual over all CG columns (mean and samples).
      cg_converged_samples: False when a sample's CG stopped at the cap (its std is less exact).
      seconds_mean, seconds_std: wall time of the mean (with the first sample batch when they
        share the CG) and of the remaining samples and the std.
      notes: what the solver had to do (embedding growth, clamped eigenvalues, ...).
    """

    mean: np.ndarray
    std: Optional[np.ndarray]
    samples: int
    std_relative_error: Optional[float]
    cg_iterations: int
    cg_residual: float
    cg_converged_samples: bool
    seconds_mean: float
    seconds_std: float
    notes: List[str]


def grid_memory_bytes(height: int, width: int, channels: int, samples: int,
                      dtype=tf.float64) -> int:
    """The working set of :func:`grid_posterior` at the worst FFT shape (no truncation)."""
    columns = channels + min(samples, SAMPLE_BATCH)
    return memory_bytes(height, width, required_fft_shape(height, width), columns, dtype)


def check_grid_memory(height: int, width: int, channels: int, samples: int, dtype=tf.float64) -> int:
    """Raise :class:`TfdipError` when the grid solver would not fit in memory; return the estimate."""
    need = grid_memory_bytes(height, width, channels, samples, dtype)
    have = available_memory_bytes()
    if need > MEMORY_HEADROOM * have:
        raise TfdipError(f"a {height}x{width} GP solve with {samples} samples needs about "
                         f"{need / 2**30:.1f} GiB but {have / 2**30:.1f} GiB is available; crop "
                         f"or downscale the image, or ask for fewer --samples")
    return need


def grid_operator(prior: GPPrior, data: PixelData, *, periodic: bool = False,
                  dtype=tf.float64, truncation: float = TRUNCATION,
                  check: bool = True) -> ObservedGridKernel:
    """``A = P K P^T + (s^2 + jitter) I`` for the prior's kernel on the data's grid."""
    height, width = data.known.shape
    grid = GridKernel(prior.kernel(), height, width, dtype=dtype, truncation=truncation,
                      periodic=periodic, check=check)
    return ObservedGridKernel(grid, data.known, prior.noise_variance + JITTER)


def _torus_posterior(operator: ObservedGridKernel, centred, prior_mean):
    grid = operator.grid_kernel
    images = tf.reshape(tf.constant(centred, grid.dtype), [-1, grid.height, grid.width])
    mean = wiener_filter(grid, operator.noise_variance, images)
    eigenvalues = tf.maximum(torus_eigenvalues(grid.table), 0.0)
    noise = operator.noise_variance
    variance = tf.reduce_mean(eigenvalues * noise / (eigenvalues + noise))
    std = np.full(grid.num_pixels, np.sqrt(float(variance)))
    return prior_mean[:, None] + tf.reshape(mean, [len(centred), -1]).numpy().astype(np.float64), std


def grid_posterior(prior: GPPrior, data: PixelData, *, samples: int = 0,
                   tolerance: float = DEFAULT_TOLERANCE,
                   max_iterations: int = DEFAULT_MAX_ITERATIONS, seed: int = 0,
                   periodic: bool = False, dtype=tf.float64, truncation: float = TRUNCATION,
                   progress: Optional[Progress] = None) -> GridPosterior:
    """Posterior mean (and with ``samples >= 2`` a sampled std map) of the image GP on its pixel grid.

    Args:
      prior: kernel (stationary), mean and noise variance.
      data: the observation (any size).
      samples: posterior samples for the std map (0: no std map; otherwise at least 2).
      tolerance, max_iterations: CG's relative residual tolerance and iteration cap.
      seed: seed of the prior samples and their noise.
      periodic: model the image on a torus (closed form for a full grid).
      dtype: float64 (default) or float32 for the FFTs and CG.
      truncation: the kernel table's truncation tolerance (:mod:`tfdip.gp.grid`).
      progress: a :data:`Progress` callback.

    Raises:
      TfdipError: for a non-stationary kernel, fewer than 2 samples, or a mean whose CG did not
        reach the tolerance within ``max_iterations`` (say so and what to change).
    """
    if samples == 1 or samples < 0:
        raise TfdipError(f"a std map needs at least 2 samples (or 0 for none), got {samples}")
    notes: List[str] = []
    start = time.perf_counter()
    operator = grid_operator(prior, data, periodic=periodic, dtype=dtype, truncation=truncation)
    grid = operator.grid_kernel
    channels = data.shape[2]
    prior_mean = prior.mean(channels).numpy()
    centred = data.observed_values - prior_mean[:, None]
    if operator.full and periodic:
        mean, std = _torus_posterior(operator, centred, prior_mean)
        notes.append("full periodic grid: Wiener filter and exact torus variance (closed form)")
        return GridPosterior(mean=mean, std=std, samples=0, std_relative_error=0.0,
                             cg_iterations=0, cg_residual=0.0, cg_converged_samples=True,
                             seconds_mean=time.perf_counter() - start, seconds_std=0.0,
                             notes=notes)
    embedding = None
    first_batch = min(samples, SAMPLE_BATCH)
    rhs = tf.constant(centred, grid.dtype)
    if first_batch:
        embedding = circulant_embedding(prior.kernel(), grid)
        notes.append(embedding.message())
        fields = tf.reshape(prior_samples(embedding, grid.height, grid.width, first_batch,
                                          (seed, 0)), [first_batch, -1])
        rhs = tf.concat([rhs, sample_right_hand_sides(operator, fields, (seed, 1))], axis=0)

    def report(stage):
        if progress is None:
            return None
        return lambda done, total, residual: progress(stage, done, total,
                                                      f"residual {residual:.1e}")

    solved = conjugate_gradients(operator, rhs, tolerance=tolerance,
                                 max_iterations=max_iterations, progress=report("mean"))
    if not np.all(solved.converged[:channels]):
        raise TfdipError(
            f"CG did not reach relative residual {tolerance:g} within {max_iterations} iterations "
            f"(residual {solved.residual[:channels].max():.1e}); raise the iteration cap or the "
            f"tolerance, or a larger noise variance")
    lifted = grid.apply(operator.scatter(solved.solution))
    mean = prior_mean[:, None] + lifted[:channels].numpy().astype(np.float64)
    seconds_mean = time.perf_counter() - start
    residuals = [solved.residual]
    converged = [solved.converged[channels:]]
    std = None
    if samples:
        deviations = [(fields - lifted[channels:]).numpy()]
        if progress is not None:
            progress("samples", first_batch, samples, "")
        for batch_start in range(first_batch, samples, SAMPLE_BATCH):
            count = min(SAMPLE_BATCH, samples - batch_start)
            fields = tf.reshape(prior_samples(embedding, grid.height, grid.width, count,
                                              (seed, 2 + batch_start)), [count, -1])
            batch = conjugate_gradients(
                operator, sample_right_hand_sides(operator, fields, (seed, 3 + batch_start)),
                tolerance=tolerance, max_iterations=max_iterations)
            deviations.append(posterior_deviations(operator, fields, batch.solution).numpy())
            residuals.append(batch.residual)
            converged.append(batch.converged)
            if progress is not None:
                progress("samples", batch_start + count, samples, "")
        std = std_from_deviations(np.concatenate(deviations))
    all_converged = bool(np.all(np.concatenate(converged))) if samples else True
    if not all_converged:
        notes.append(f"some sample solves stopped at the cap of {max_iterations} CG iterations; "
                     f"the std map is less exact than its Monte Carlo error says")
    return GridPosterior(
        mean=mean, std=std, samples=int(samples),
        std_relative_error=std_relative_error(samples) if samples else None,
        cg_iterations=int(solved.iterations[:channels].max()),
        cg_residual=float(np.max(np.concatenate(residuals))),
        cg_converged_samples=all_converged, seconds_mean=seconds_mean,
        seconds_std=time.perf_counter() - start - seconds_mean, notes=notes)
