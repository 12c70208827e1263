"""Marginal-likelihood fits of an image GP's hyper-parameters on its pixel grid, without dense matrices.

``-log p(y) = 1/2 sum_c [(y_c - m_c)^T A^-1 (y_c - m_c) + log det A + n log 2 pi]``,
``A = P K P^T + (s^2 + jitter) I``.

Full grid (every pixel observed): the image is modelled on its torus (:class:`GridKernel` with
``periodic=True``), where ``A`` is circulant with eigenvalues ``lambda_k + s^2`` (``lambda``: the
FFT of the kernel's torus table): ``log det A = sum_k log(lambda_k + s^2)`` and the quadratic form is
``sum_k |FFT(y - m)_k|^2 / (lambda_k + s^2) / N``, both exact and differentiable;
:func:`tfdip.gp.fit.maximise_likelihood` (L-BFGS) maximises it. The open grid differs from the
torus only by its boundary (a term of relative order ``length scale / image size``).

With a mask: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017) with :data:`PROBES`
Rademacher probes ``z`` (fixed seed :data:`PROBE_SEED`): ``log det A ~ n / p sum_z e_1^T log(T_z)
e_1``, ``T_z`` the Lanczos matrix of ``A`` and ``z`` from CG (:mod:`tfdip.gp.cg`). The gradient
``d(-log p) = 1/2 [tr(A^-1 dA) - alpha^T dA alpha]`` (``alpha = A^-1 (y - m)``) takes the Hutchinson
estimate ``tr(A^-1 dA) ~ 1/p sum_z (A^-1 z)^T dA z``; both solves are one batched CG per step
(warm-started from the last step), and the gradient is taken by automatic differentiation of
``1/2 [1/p sum_z u_z^T A(theta) z - alpha^T A(theta) alpha]`` with ``u_z = A^-1 z`` and ``alpha``
held fixed. The constant mean is profiled: ``m_c = 1^T A^-1 y_c / 1^T A^-1 1`` (its exact maximiser
given the rest), from one more CG column. Adam (:data:`LEARNING_RATE`) takes the steps on the
unconstrained variables; the log marginal likelihood (by SLQ) is reported before and after.

A fitted noise variance is floored (:data:`NOISE_FLOOR`: CG needs more than thousands of iterations
below it), with a note when the floor binds.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import keras
import numpy as np
import tensorflow as tf

from tfdip.gp.cg import DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE, conjugate_gradients
from tfdip.gp.data import PixelData
from tfdip.gp.fit import FitSummary, maximise_likelihood
from tfdip.gp.grid import GridKernel, ObservedGridKernel, TRUNCATION
from tfdip.gp.prior import DTYPE, JITTER, GPPrior
from tfdip.gp.sampling import torus_eigenvalues

PROBES = 8
"""Hutchinson / SLQ probe vectors."""
PROBE_SEED = 1234
"""Seed of the probes (the objective is deterministic given it)."""
NOISE_FLOOR = 1e-5
"""A fitted noise variance stays above this (images in [0, 1])."""
LEARNING_RATE = 0.05
"""Adam's step size on the unconstrained hyper-parameters (masked fits)."""
STEP_TOLERANCE = 2e-3
"""A masked fit stops when no unconstrained variable moved more than this in 3 steps running."""


def torus_log_likelihood(prior: GPPrior, data: PixelData) -> tf.Tensor:
    """``log p(y)`` of a full image under the torus model (module docstring), float64 scalar."""
    height, width, channels = data.shape
    grid = GridKernel(prior.kernel(), height, width, periodic=True, check=False)
    eigenvalues = tf.maximum(torus_eigenvalues(grid.table), 0.0) + prior.noise_variance + JITTER
    centred = (tf.constant(np.transpose(data.image, (2, 0, 1)), DTYPE)
               - prior.mean(channels)[:, None, None])
    spectrum = tf.signal.fft2d(tf.cast(centred, tf.complex128))
    power = tf.math.real(spectrum * tf.math.conj(spectrum))
    quadratic = tf.reduce_sum(power / eigenvalues) / (height * width)
    log_det = tf.reduce_sum(tf.math.log(eigenvalues))
    return -0.5 * (quadratic + channels * log_det
                   + channels * height * width * math.log(2.0 * math.pi))


def rademacher_probes(count: int, size: int, seed: int = PROBE_SEED) -> np.ndarray:
    """``count`` vectors of ``size`` random signs ``+-1`` (float64)."""
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=(count, size))


def slq_log_det(tridiagonals, probe_norms_squared) -> float:
    """``log det A ~ mean_z ||z||^2 e_1^T log(T_z) e_1`` from the Lanczos matrices of the probes."""
    estimates = []
    for (diagonal, off_diagonal), norm_squared in zip(tridiagonals, probe_norms_squared):
        matrix = np.diag(diagonal) + np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1)
        values, vectors = np.linalg.eigh(matrix)
        estimates.append(norm_squared * np.sum(vectors[0] ** 2 * np.log(np.maximum(values, 1e-300))))
    return float(np.mean(estimates))


class _MaskedObjective:
    """The pieces of the masked fit (module docstring) for one prior and observation."""

    def __init__(self, prior: GPPrior, data: PixelData, probes: int, tolerance: float,
                 max_iterations: int, truncation: float):
        self.prior, self.data = prior, data
        self.tolerance, self.max_iterations = tolerance, max_iterations
        self.height, self.width, self.channels = data.shape
        self.observed = tf.constant(data.observed_values, DTYPE)
        self.num_known = int(data.known.sum())
        self.probes = tf.constant(rademacher_probes(probes, self.num_known), DTYPE)
        self.ones = tf.ones([1, self.num_known], DTYPE)
        first = GridKernel(prior.kernel(), self.height, self.width, truncation=truncation)
        self.radii = first.radii
        self.warm = None
        self.total_iterations = 0

    def operator(self) -> ObservedGridKernel:
        grid = GridKernel(self.prior.kernel(), self.height, self.width, check=False,
                          radii=self.radii)
        return ObservedGridKernel(grid, self.data.known, self.prior.noise_variance + JITTER)

    def centred(self, mean) -> tf.Tensor:
        return self.observed - tf.cast(mean, DTYPE)[:, None]

    def solve(self, operator, lanczos: bool = False):
        """``A^-1`` of ``[y_c; 1; z]`` (rows), warm-started unless Lanczos matrices are wanted."""
        rhs = tf.concat([self.observed, self.ones, self.probes], axis=0)
        result = conjugate_gradients(operator, rhs, tolerance=self.tolerance,
                                     max_iterations=self.max_iterations, lanczos=lanczos,
                                     initial=None if lanczos else self.warm)
        self.warm = result.solution
        self.total_iterations += result.max_iterations_used
        return result

    def profiled_mean(self, solution) -> tf.Tensor:
        """``m_c = 1^T A^-1 y_c / 1^T A^-1 1`` when the mean is fitted, else the prior's."""
        if self.prior.mean_variable is None:
            return self.prior.mean(self.channels)
        weights = solution[self.channels]
        return (tf.reduce_sum(solution[:self.channels], axis=-1)
                / tf.reduce_sum(weights))

    def assign_mean(self, mean) -> None:
        variable = self.prior.mean_variable
        if variable is not None:
            variable.assign(tf.reshape(tf.cast(mean, DTYPE), variable.shape))

    def alphas(self, solution, mean) -> tf.Tensor:
        """``A^-1 (y_c - m_c) = A^-1 y_c - m_c A^-1 1``, ``[C, n]``."""
        return solution[:self.channels] - tf.cast(mean, DTYPE)[:, None] * solution[self.channels]

    def log_likelihood(self) -> float:
        """``log p(y)`` with the log-determinant by SLQ (a cold CG with Lanczos matrices); a
        fitted mean is set to its profile value."""
        result = self.solve(self.operator(), lanczos=True)
        mean = self.profiled_mean(result.solution)
        self.assign_mean(mean)
        quadratic = float(tf.reduce_sum(self.alphas(result.solution, mean) * self.centred(mean)))
        log_det = slq_log_det(result.tridiagonals[self.channels + 1:],
                              [self.num_known] * int(self.probes.shape[0]))
        return -0.5 * (quadratic + self.channels * log_det
                       + self.channels * self.num_known * math.log(2.0 * math.pi))


def fit_masked(prior: GPPrior, data: PixelData, *, max_steps: int = 60, probes: int = PROBES,
               tolerance: float = DEFAULT_TOLERANCE,
               max_iterations: int = DEFAULT_MAX_ITERATIONS, truncation: float = TRUNCATION,
               progress=None) -> FitSummary:
    """Fit ``prior`` (in place) to an observation with missing pixels (module docstring).

    Returns a :class:`~tfdip.gp.fit.FitSummary` (``evaluations``: CG iterations in all).
    """
    objective = _MaskedObjective(prior, data, probes, tolerance, max_iterations, truncation)
    initial = objective.log_likelihood()
    mean_variable = prior.mean_variable
    variables = [v for v in prior.trainable_variables if v is not mean_variable]
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE)
    still, steps, converged = 0, 0, False
    for steps in range(1, max_steps + 1):
        solution = objective.solve(objective.operator()).solution
        mean = objective.profiled_mean(solution)
        objective.assign_mean(mean)
        if not variables:
            converged = True
            break
        alpha = objective.alphas(solution, mean)
        probe_solutions = solution[objective.channels + 1:]
        with tf.GradientTape() as tape:
            operator = objective.operator()
            surrogate = 0.5 * (
                tf.reduce_sum(probe_solutions * operator.apply(objective.probes))
                / float(objective.probes.shape[0])
                - tf.reduce_sum(alpha * operator.apply(alpha)))
        gradients = tape.gradient(surrogate, variables,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
        before = [v.numpy() for v in variables]
        optimizer.apply_gradients(zip(gradients, variables))
        moved = max(float(np.max(np.abs(v.numpy() - b))) for v, b in zip(variables, before))
        still = still + 1 if moved < STEP_TOLERANCE else 0
        if progress is not None:
            progress("fit", steps, max_steps, f"step {moved:.1e}")
        if still >= 3:
            converged = True
            break
    final = objective.log_likelihood()
    return FitSummary(initial_log_marginal_likelihood=initial, log_marginal_likelihood=final,
                      iterations=steps, evaluations=objective.total_iterations,
                      converged=converged)


def fit_on_grid(prior: GPPrior, data: PixelData, *, max_steps: int = 60,
                progress=None, **masked_options) -> Tuple[FitSummary, List[str]]:
    """Fit ``prior`` in place: the exact torus likelihood for a full grid, SLQ with a mask.

    Returns the summary and notes (e.g. that the noise floor binds).
    """
    if data.known.all():
        summary = maximise_likelihood(prior, lambda: torus_log_likelihood(prior, data),
                                      max_iterations=max_steps)
        notes = ["fit: exact log-likelihood of the torus model (full grid)"]
    else:
        summary = fit_masked(prior, data, max_steps=max_steps, progress=progress, **masked_options)
        notes = [f"fit: stochastic Lanczos quadrature, {masked_options.get('probes', PROBES)} "
                 f"Rademacher probes (seed {PROBE_SEED}), {summary.iterations} Adam steps"]
    noise = prior.values()["noise_variance"]
    if prior.noise_floor > 0 and noise <= 1.01 * prior.noise_floor:
        notes.append(f"the fitted noise variance sits at its floor {prior.noise_floor:g} "
                     f"(the data would have it lower)")
    return summary, notes

