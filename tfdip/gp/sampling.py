"""Exact GP samples on a pixel grid: circulant-embedding prior samples and pathwise posterior samples.

Prior (Dietrich & Newsam 1997; Wood & Chan 1994). The ``H x W`` covariance ``K`` is the top-left
block of the circulant covariance ``C`` of an ``L1 x L2`` torus whose first row is ``k`` at the
offsets wrapped to their nearest image, provided ``L >= H + R`` (``R``: the truncation radius of
:mod:`tfdip.gp.grid`). ``C = F^H diag(lambda) F / (L1 L2)`` with ``lambda`` the FFT of that row; if
every ``lambda >= 0``, ``f = Re / Im of FFT(sqrt(lambda / (L1 L2)) (z1 + i z2))`` (``z1, z2``
standard normal) are two independent ``N(0, C)`` fields and their top-left ``H x W`` blocks are
exact ``N(0, K)`` samples. When the spectrum has negative values the torus is grown (by half, to a
2,3,5,7-smooth size, up to :data:`MAX_EMBEDDING_GROWTH` times the first size per axis); eigenvalues
below :data:`EIGENVALUE_CLAMP` of the largest are then set to 0 and :class:`Embedding` says how many
and how much negative mass that removed (0 for an exact embedding).

Posterior (Matheron's rule, pathwise; Wilson et al. 2020). With ``A = P K P^T + s^2 I``, a prior
sample ``f ~ N(0, K)`` and noise ``e ~ N(0, s^2 I)``,
``f - K P^T A^-1 (P f + e)`` is a sample of the posterior deviation from the posterior mean
``m + K P^T A^-1 (y - m)``; both solves share one batched CG (:mod:`tfdip.gp.cg`).

Std map. From ``S`` posterior deviations ``d_j`` the per-pixel std is the sample std (``S - 1``
degrees of freedom); for Gaussian samples its relative Monte Carlo error is about
``1 / sqrt(2 (S - 1))`` (:func:`std_relative_error`), 8.9% at the default :data:`DEFAULT_SAMPLES`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Tuple

import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.gp.grid import GridKernel, ObservedGridKernel, as_complex, fast_fft_size, torus_table

EIGENVALUE_CLAMP = 1e-12
"""Eigenvalues of the embedding below this fraction of the largest are set to 0."""
MAX_EMBEDDING_GROWTH = 4
"""The torus grows to at most this many times its first size per axis."""
DEFAULT_SAMPLES = 64
"""Posterior samples of the std map by default: Monte Carlo relative error 1/sqrt(126) = 8.9%."""


def std_relative_error(samples: int) -> float:
    """``1 / sqrt(2 (S - 1))``: the relative standard error of a Gaussian sample std from ``S`` draws."""
    if samples < 2:
        raise TfdipError(f"a std map needs at least 2 samples, got {samples}")
    return 1.0 / math.sqrt(2.0 * (samples - 1))


@dataclasses.dataclass(frozen=True)
class Embedding:
    """A circulant embedding of a grid kernel.

    Attributes:
      shape: the torus ``(L1, L2)``.
      root: ``sqrt(lambda / (L1 L2))`` after clamping, ``[L1, L2]`` (real, the sampler's filter).
      clamped: how many eigenvalues were set to 0 (below :data:`EIGENVALUE_CLAMP` of the largest).
      negative_mass: the sum of the negative eigenvalues removed, relative to the sum of all
        positive ones (0: the embedding was exact).
      growths: how many times the torus was grown.
    """

    shape: Tuple[int, int]
    root: tf.Tensor
    clamped: int
    negative_mass: float
    growths: int

    def message(self) -> str:
        """One line on what the embedding needed."""
        text = f"circulant embedding {self.shape[0]}x{self.shape[1]}"
        if self.growths:
            text += f" (grown {self.growths} time(s) to make its spectrum non-negative)"
        if self.clamped:
            text += (f"; {self.clamped} eigenvalue(s) below {EIGENVALUE_CLAMP:g} of the largest "
                     f"clamped to 0 (negative mass removed: {self.negative_mass:.2e} of the total)")
        return text


def circulant_embedding(kernel, grid_kernel: GridKernel) -> Embedding:
    """The smallest non-negative circulant embedding of ``grid_kernel`` found by growing (module docstring)."""
    shape = grid_kernel.fft_shape
    first = shape
    growths = 0
    while True:
        values = torus_eigenvalues(torus_table(kernel, shape[0], shape[1],
                                               grid_kernel.dtype)).numpy()
        largest = float(values.max())
        if values.min() >= -EIGENVALUE_CLAMP * largest:
            break
        grown = (fast_fft_size(math.ceil(1.5 * shape[0])), fast_fft_size(math.ceil(1.5 * shape[1])))
        if grown[0] > MAX_EMBEDDING_GROWTH * first[0] or grown[1] > MAX_EMBEDDING_GROWTH * first[1]:
            break
        shape, growths = grown, growths + 1
    small = values < EIGENVALUE_CLAMP * largest
    negative_mass = float(-values[values < 0].sum() / values[values > 0].sum())
    kept = np.where(small, 0.0, values)
    root = tf.constant(np.sqrt(kept / (shape[0] * shape[1])), grid_kernel.dtype)
    return Embedding(shape=shape, root=root, clamped=int(small.sum()),
                     negative_mass=negative_mass, growths=growths)


def torus_eigenvalues(circular_table) -> tf.Tensor:
    """All eigenvalues of the circulant covariance with first row ``circular_table`` ``[L1, L2]``: its FFT's real part."""
    return tf.math.real(tf.signal.fft2d(as_complex(circular_table)))


def prior_samples(embedding: Embedding, height: int, width: int, count: int, seed) -> tf.Tensor:
    """``count`` exact ``N(0, K)`` fields on the ``H x W`` grid, ``[count, H, W]`` (``seed``: a stateless seed pair)."""
    pairs = (count + 1) // 2
    dtype = embedding.root.dtype
    noise = tf.random.stateless_normal([2, pairs] + list(embedding.shape), seed=seed, dtype=dtype)
    weighted = tf.complex(noise[0] * embedding.root, noise[1] * embedding.root)
    fields = tf.signal.fft2d(weighted)[:, :height, :width]
    both = tf.concat([tf.math.real(fields), tf.math.imag(fields)], axis=0)
    return both[:count]


def posterior_deviations(operator: ObservedGridKernel, prior_fields, solutions) -> tf.Tensor:
    """``f_j - K P^T v_j`` for prior fields ``[S, N]`` and solutions ``v_j = A^-1 (P f_j + e_j)`` ``[S, n]``."""
    return prior_fields - operator.grid_kernel.apply(operator.scatter(solutions))


def sample_right_hand_sides(operator: ObservedGridKernel, prior_fields, seed) -> tf.Tensor:
    """``P f_j + e_j`` with ``e_j ~ N(0, s^2 I)`` (``s^2`` the operator's noise variance), ``[S, n]``."""
    observed = operator.gather(prior_fields)
    noise = tf.random.stateless_normal(tf.shape(observed), seed=seed, dtype=observed.dtype)
    return observed + tf.sqrt(operator.noise_variance) * noise


def std_from_deviations(deviations) -> np.ndarray:
    """Per-pixel sample std (``S - 1`` degrees of freedom) of posterior deviations ``[S, N]``."""
    values = np.asarray(deviations, np.float64)
    return values.std(axis=0, ddof=1)


def exact_variances(operator: ObservedGridKernel, pixels, solve) -> np.ndarray:
    """Posterior variances ``k(0) - (P K e_i)^T A^-1 (P K e_i)`` at flat pixel indices ``pixels``.

    ``solve`` maps right-hand sides ``[M, n]`` to ``A^-1`` of them (e.g. a CG solve).
    """
    grid = operator.grid_kernel
    units = tf.one_hot(np.asarray(pixels), grid.num_pixels, dtype=grid.dtype)
    columns = operator.gather(grid.apply(units))
    solved = solve(columns)
    return (grid.variance - tf.reduce_sum(columns * solved, axis=-1)).numpy()
