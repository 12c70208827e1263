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
``d(-log p) = 1/2 sum_c [tr(A^-1 dA) - alpha_c^T dA alpha_c]`` (``alpha_c = A^-1 (y_c - m_c)``) takes the Hutchinson
estimate ``tr(A^-1 dA) ~ 1/p sum_z (A^-1 z)^T dA z``; both solves are one batched CG per step
(warm-started from the last step), and the gradient is taken by automatic differentiation of
``1/2 sum_c [1/p sum_z u_z^T A(theta) z - alpha_c^T A(theta) alpha_c]`` with ``u_z = A^-1 z`` and ``alpha``
held fixed. The constant mean is profiled: ``m_c = 1^T A^-1 y_c / 1^T A^-1 1`` (its exact maximiser
given the rest), from one more CG column. The steps are Newton steps on the unconstrained variables
with the average-information matrix ``AI_ij = 1/2 sum_c (dA_i alpha_c)^T A^-1 (dA_j alpha_c)``
(Gilmour, Thompson & Cullis 1995; its expectation is the Fisher information), damped
(:data:`DAMPING`) and capped (:data:`MAX_STEP`), with a safeguard: when the new gradient shows that
the last step overshot along its direction (``g . step > 0``) half of it is taken back, the cap
shrinks and the next step is a Newton step from there (a step back below :data:`STEP_TOLERANCE`
ends the fit). A handful of steps where a first-order method needs a hundred. ``dA_j v`` is the operator with its operands differentiated in forward mode. The log
marginal likelihood (by SLQ) is reported before and after.

Precision. The objective is deterministic given the probes, but it is an estimate: Hutchinson's
trace of a symmetric ``M`` (n x n) has variance ``2 (||M||_F^2 - sum_i M_ii^2) / p``, a relative
error of order ``sqrt(2 / (p n_eff))`` for the hundreds of thousands of pixels of a photograph, so a
few probes suffice; and the solves inside the fit stop at relative residual :data:`FIT_TOLERANCE`
(1e-3), whose error in the gradient is below that of the step tolerance. The posterior mean that
follows the fit is solved to its own, tighter tolerance. (On a 512x512 photograph with half its
pixels missing, 4 probes at 1e-3 gave the same hyper-parameters within 0.2% as 8 probes at 1e-4,
in half the time: ``benchmarks/gp_scaling.py``.)

A fitted noise variance is floored (:data:`NOISE_FLOOR`: CG needs more than thousands of iterations
below it), with a note when the floor binds.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np
import tensorflow as tf

from tfdip.gp.cg import DEFAULT_MAX_ITERATIONS, conjugate_gradients
from tfdip.gp.data import PixelData
from tfdip.gp.fit import FitSummary, maximise_likelihood
from tfdip.gp.grid import TRUNCATION, GridKernel, ObservedGridKernel, as_complex
from tfdip.gp.prior import DTYPE, JITTER, GPPrior
from tfdip.gp.sampling import torus_eigenvalues

PROBES = 4
"""Hutchinson / SLQ probe vectors (module docstring: their error is far below the fit's needs)."""
PROBE_SEED = 1234
"""Seed of the probes (the objective is deterministic given it)."""
NOISE_FLOOR = 1e-5
"""A fitted noise variance stays above this (images in [0, 1])."""
MAX_STEP = 1.0
"""A masked fit's Newton step moves no unconstrained variable by more than this."""
DAMPING = 1e-3
"""Levenberg damping of the average-information matrix (relative to its diagonal)."""
FIT_TOLERANCE = 1e-3
"""Relative CG residual of the masked fit's solves (module docstring)."""
STEP_TOLERANCE = 1e-2
"""A masked fit stops when its step moves no unconstrained variable by more than this."""


def torus_log_likelihood(prior: GPPrior, data: PixelData) -> tf.Tensor:
    """``log p(y)`` of a full image under the torus model (module docstring), float64 scalar."""
    height, width, channels = data.shape
    grid = GridKernel(prior.kernel(), height, width, periodic=True, check=False)
    eigenvalues = tf.maximum(torus_eigenvalues(grid.table), 0.0) + prior.noise_variance + JITTER
    centred = (tf.constant(np.transpose(data.image, (2, 0, 1)), DTYPE)
               - prior.mean(channels)[:, None, None])
    spectrum = tf.signal.fft2d(as_complex(centred))
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
        GridKernel(prior.kernel(), self.height, self.width, truncation=truncation)  # checks
        self.truncation = truncation
        self.warm = None
        self.total_iterations = 0

    def operator(self) -> ObservedGridKernel:
        """``A`` at the current hyper-parameters (truncation radii chosen anew: they grow with
        the length scale)."""
        grid = GridKernel(self.prior.kernel(), self.height, self.width, check=False,
                          truncation=self.truncation)
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


def _operand_derivatives(objective: "_MaskedObjective", variables):
    """Per variable ``theta_j``: the operator and ``(d spectrum / d theta_j, d s^2 / d theta_j)``.

    ``A`` is linear in its operands, so ``dA/dtheta_j v = apply_with(derivatives_j, v)``; the
    derivatives come from forward-mode differentiation of the operator's construction.
    """
    derivatives = []
    for variable in variables:
        with tf.autodiff.ForwardAccumulator(variable, tf.ones_like(variable)) as accumulator:
            operator = objective.operator()
        derivatives.append(tuple(
            tf.zeros_like(operand) if tangent is None else tangent
            for operand, tangent in zip(operator.operands,
                                        (accumulator.jvp(t) for t in operator.operands))))
    return operator, derivatives


def fit_masked(prior: GPPrior, data: PixelData, *, max_steps: int = 30, probes: int = PROBES,
               tolerance: float = FIT_TOLERANCE,
               max_iterations: int = DEFAULT_MAX_ITERATIONS, truncation: float = TRUNCATION,
               progress=None) -> FitSummary:
    """Fit ``prior`` (in place) to an observation with missing pixels (module docstring).

    Returns a :class:`~tfdip.gp.fit.FitSummary` (``iterations``: Newton steps; ``evaluations``:
    CG iterations in all).
    """
    objective = _MaskedObjective(prior, data, probes, tolerance, max_iterations, truncation)
    initial = objective.log_likelihood()
    mean_variable = prior.mean_variable
    variables = [v for v in prior.trainable_variables if v is not mean_variable]
    channels, count = objective.channels, float(objective.probes.shape[0])
    steps, converged, warm_directions = 0, not variables, None
    previous_step, radius = None, MAX_STEP
    for steps in range(1, (max_steps if variables else 0) + 1):
        operator, derivatives = _operand_derivatives(objective, variables)
        solution = objective.solve(operator).solution
        mean = objective.profiled_mean(solution)
        objective.assign_mean(mean)
        alpha = objective.alphas(solution, mean)
        probe_solutions = solution[channels + 1:]
        gradient, directions = [], []
        for operands in derivatives:
            moved_alpha = operator.apply_with(operands, alpha)
            trace = tf.reduce_sum(probe_solutions * operator.apply_with(operands, objective.probes))
            gradient.append(0.5 * (channels * float(trace) / count
                                   - float(tf.reduce_sum(alpha * moved_alpha))))
            directions.append(moved_alpha)
        gradient = np.asarray(gradient)
        if previous_step is not None and float(gradient @ previous_step) > 0:
            # The last step overshot the optimum along its direction: go back half of it, shrink.
            # The next step is a Newton step from there (halving again and again could go on
            # for ever where an inexact gradient keeps a tiny overshoot).
            radius = max(radius / 4.0, STEP_TOLERANCE)
            back = previous_step / 2.0
            for variable, change in zip(variables, back):
                variable.assign_sub(tf.cast(change, variable.dtype))
            previous_step = None
            if progress is not None:
                progress("fit", steps, max_steps, f"step back {np.max(np.abs(back)):.1e}")
            if np.max(np.abs(back)) < STEP_TOLERANCE:
                converged = True
                break
            continue
        stacked = tf.concat(directions, axis=0)
        result = conjugate_gradients(operator, stacked, tolerance=tolerance,
                                     max_iterations=max_iterations, initial=warm_directions)
        solved = warm_directions = result.solution
        objective.total_iterations += result.max_iterations_used
        shape = (len(variables), channels, -1)
        information = 0.5 * np.einsum("icn,jcn->ij", tf.reshape(stacked, shape).numpy(),
                                      tf.reshape(solved, shape).numpy())
        information += DAMPING * np.diag(np.diag(information)) + 1e-12 * np.eye(len(variables))
        step = -np.linalg.solve(information, gradient)
        step *= min(1.0, radius / max(float(np.max(np.abs(step))), 1e-300))
        for variable, change in zip(variables, step):
            variable.assign_add(tf.cast(change, variable.dtype))
        previous_step, radius = step, min(2.0 * radius, MAX_STEP)
        if progress is not None:
            progress("fit", steps, max_steps, f"step {np.max(np.abs(step)):.1e}")
        if np.max(np.abs(step)) < STEP_TOLERANCE:
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
                 f"Rademacher probes (seed {PROBE_SEED}), {summary.iterations} "
                 f"average-information Newton steps"]
    noise = prior.values()["noise_variance"]
    if prior.noise_floor > 0 and noise <= 1.01 * prior.noise_floor:
        notes.append(f"the fitted noise variance sits at its floor {prior.noise_floor:g} "
                     f"(the data would have it lower)")
    return summary, notes

