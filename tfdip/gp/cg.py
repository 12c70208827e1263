"""Batched conjugate gradients with per-column convergence, for ``A X = B`` with ``A`` symmetric positive definite.

The right-hand sides are rows: ``B`` is ``[M, n]`` (colour channels, Hutchinson probes and sample
paths side by side), solved together so that each iteration does one batched product ``A P``.
Every column stops on its own when its residual ``||b - A x|| <= tolerance ||b||`` and is taken
out of the batch (``tf.linalg.experimental.conjugate_gradient`` runs a fixed number of steps on all
columns and divides 0 by 0 once a column has converged); a zero right-hand side is solved by
``x = 0`` at once. Iterations run in compiled chunks (:data:`CHUNK` steps inside a
``tf.function``), between which converged columns are dropped and progress is reported. At the end
the true residual ``b - A x`` is recomputed (the recursive one drifts) and reported per column.

With a preconditioner ``M ~ A^-1`` the iteration is preconditioned CG. Without one (and from
``x0 = 0``) the CG coefficients of each column give the Lanczos tridiagonal matrix ``T`` of ``A`` and
``b`` (``T_jj = 1/alpha_j + beta_{j-1}/alpha_{j-1}``, ``T_j,j+1 = sqrt(beta_j)/alpha_j``; Saad 2003,
section 6.7.3), which :mod:`tfdip.gp.grid_fit` uses for stochastic Lanczos quadrature.

Operators are duck-typed: ``apply_with(operands, rows)`` computes ``A`` on rows ``[M, n]``,
``operands`` are its tensors, ``structure`` a hashable description of everything else (the compiled
chunk is cached per structure, so a new operator with new operand values does not retrace).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

DEFAULT_TOLERANCE = 1e-4
"""Relative residual at which a column stops."""
DEFAULT_MAX_ITERATIONS = 5000
"""Iteration cap per column."""
CHUNK = 25
"""CG iterations per compiled call."""

_COMPILED: Dict[tuple, Callable] = {}


@dataclasses.dataclass(frozen=True)
class CGResult:
    """The solution and how it was reached.

    Attributes:
      solution: ``X``, ``[M, n]`` tensor.
      iterations: CG iterations per column, int ``[M]``.
      residual: true relative residual ``||b - A x|| / ||b||`` per column (0 for ``b = 0``), ``[M]``.
      converged: per column, True when its recursive residual reached the tolerance.
      tolerance: the relative residual tolerance asked for.
      tridiagonals: with ``lanczos=True``, per column the Lanczos matrix ``(diagonal, off_diagonal)``.
    """

    solution: tf.Tensor
    iterations: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    tolerance: float
    tridiagonals: Optional[List[Tuple[np.ndarray, np.ndarray]]] = None

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))

    @property
    def max_iterations_used(self) -> int:
        return int(np.max(self.iterations)) if self.iterations.size else 0

    @property
    def max_residual(self) -> float:
        return float(np.max(self.residual)) if self.residual.size else 0.0


def _chunk_function(operator, preconditioner, steps: int):
    key = (operator.structure, None if preconditioner is None else preconditioner.structure, steps,
           type(operator), type(preconditioner))
    if key in _COMPILED:
        return _COMPILED[key]

    def precondition(pre_operands, residual):
        return residual if preconditioner is None else preconditioner.apply_with(pre_operands,
                                                                                   residual)

    @tf.function(reduce_retracing=True)
    def run(operands, pre_operands, x, r, z, p, rz, threshold, active, count, steps_left):
        dtype = x.dtype
        alphas = tf.TensorArray(dtype, size=steps)
        betas = tf.TensorArray(dtype, size=steps)
        live = tf.TensorArray(tf.bool, size=steps)
        for step in tf.range(steps):
            running = tf.logical_and(active, step < steps_left)
            ap = operator.apply_with(operands, p)
            curvature = tf.reduce_sum(p * ap, axis=-1)
            ok = tf.logical_and(running, curvature > 0)
            live = live.write(step, ok)
            alpha = tf.where(ok, rz / tf.where(ok, curvature, tf.ones_like(curvature)),
                             tf.zeros_like(rz))
            x = x + alpha[:, None] * p
            r = r - alpha[:, None] * ap
            z = precondition(pre_operands, r)
            rz_new = tf.reduce_sum(r * z, axis=-1)
            positive = tf.logical_and(ok, rz > 0)
            beta = tf.where(positive, rz_new / tf.where(positive, rz, tf.ones_like(rz)),
                            tf.zeros_like(rz))
            p = tf.where(ok[:, None], z + beta[:, None] * p, p)
            rz = tf.where(ok, rz_new, rz)
            alphas = alphas.write(step, alpha)
            betas = betas.write(step, beta)
            count = count + tf.cast(ok, tf.int32)
            norm = tf.sqrt(tf.reduce_sum(r * r, axis=-1))
            # Columns past the chunk's last step stay as they were; a breakdown (p^T A p <= 0) stops.
            active = tf.where(running, tf.logical_and(ok, norm > threshold), active)
        return x, r, z, p, rz, active, count, alphas.stack(), betas.stack(), live.stack()

    _COMPILED[key] = run
    return run


def _apply_function(operator):
    key = ("apply", operator.structure, type(operator))
    if key not in _COMPILED:
        _COMPILED[key] = tf.function(operator.apply_with, reduce_retracing=True)
    return _COMPILED[key]


def conjugate_gradients(operator, rhs, *, tolerance: float = DEFAULT_TOLERANCE,
                        max_iterations: int = DEFAULT_MAX_ITERATIONS, preconditioner=None,
                        initial=None, lanczos: bool = False,
                        progress: Optional[Callable[[int, int, float], None]] = None) -> CGResult:
    """Solve ``A X = B`` column by column (see the module docstring).

    Args:
      operator: ``A`` (``apply_with``, ``operands``, ``structure``), symmetric positive definite.
      rhs: ``B``, ``[M, n]``.
      tolerance: relative residual at which a column stops.
      max_iterations: iteration cap per column.
      preconditioner: an operator applying ``M ~ A^-1``, or None.
      initial: a starting guess ``[M, n]`` (warm start), or None for 0.
      lanczos: also return each column's Lanczos tridiagonal matrix (needs no preconditioner and
        no starting guess).
      progress: called after every chunk with ``(iterations, max_iterations, worst relative
        residual among the running columns / tolerance)``.

    Returns:
      A :class:`CGResult`.
    """
    if lanczos and (preconditioner is not None or initial is not None):
        raise ValueError("Lanczos coefficients need plain CG from x0 = 0")
    b = tf.cast(rhs, operator.dtype)
    operands = tuple(operator.operands)
    pre_operands = tuple(preconditioner.operands) if preconditioner is not None else ()
    apply = _apply_function(operator)
    b_norm = tf.sqrt(tf.reduce_sum(b * b, axis=-1))
    threshold = tolerance * b_norm
    x = tf.zeros_like(b) if initial is None else tf.cast(initial, operator.dtype)
    r = b if initial is None else b - apply(operands, x)
    z = r if preconditioner is None else preconditioner.apply_with(pre_operands, r)
    p, rz = z, tf.reduce_sum(r * z, axis=-1)
    active = tf.sqrt(tf.reduce_sum(r * r, axis=-1)) > threshold
    count = tf.zeros(b.shape[0], tf.int32)
    columns = np.arange(b.shape[0])
    solution = x.numpy()
    iterations = np.zeros(b.shape[0], np.int64)
    converged = ~active.numpy()
    coefficients = [([], []) for _ in columns]
    run = _chunk_function(operator, preconditioner, CHUNK)
    done = 0
    while columns.size and done < max_iterations:
        keep = np.flatnonzero(active.numpy())
        finished = np.flatnonzero(~active.numpy())
        solution[columns[finished]] = x.numpy()[finished]
        iterations[columns[finished]] = count.numpy()[finished]
        if keep.size == 0:
            columns = columns[:0]
            break
        if keep.size < columns.size:
            x, r, z, p, rz, threshold, active, count = (
                tf.gather(t, keep) for t in (x, r, z, p, rz, threshold, active, count))
            columns = columns[keep]
        steps_left = tf.constant(min(CHUNK, max_iterations - done), tf.int32)
        x, r, z, p, rz, active, count, alphas, betas, live = run(
            operands, pre_operands, x, r, z, p, rz, threshold, active, count, steps_left)
        done += int(steps_left)
        if lanczos:
            alphas, betas, live = alphas.numpy(), betas.numpy(), live.numpy()
            for position, column in enumerate(columns):
                steps = live[:, position]
                coefficients[column][0].extend(alphas[steps, position])
                coefficients[column][1].extend(betas[steps, position])
        norms = np.sqrt(np.sum(r.numpy() ** 2, axis=-1))
        converged[columns] = norms <= threshold.numpy()
        if progress is not None:
            to_target = norms / np.maximum(threshold.numpy(), np.finfo(np.float64).tiny)
            progress(done, max_iterations,
                     tolerance * float(np.max(to_target[active.numpy()], initial=0.0)))
    if columns.size:
        solution[columns] = x.numpy()
        iterations[columns] = count.numpy()
    solution = tf.constant(solution)
    true_residual = b - apply(operands, solution)
    norms = np.sqrt(np.sum(true_residual.numpy() ** 2, axis=-1))
    b_norm = b_norm.numpy()
    relative = np.where(b_norm > 0, norms / np.where(b_norm > 0, b_norm, 1.0), 0.0)
    tridiagonals = None
    if lanczos:
        tridiagonals = [lanczos_tridiagonal(np.asarray(a), np.asarray(bt))
                        for a, bt in coefficients]
    return CGResult(solution=solution, iterations=iterations, residual=relative,
                    converged=converged, tolerance=float(tolerance), tridiagonals=tridiagonals)


def lanczos_tridiagonal(alphas: np.ndarray, betas: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The Lanczos matrix of a CG run from its step sizes ``alpha_j`` and ``beta_j`` (module docstring).

    Returns ``(diagonal [k], off_diagonal [k - 1])``.
    """
    alphas = np.asarray(alphas, np.float64)
    betas = np.asarray(betas, np.float64)
    if alphas.size == 0:
        return np.zeros(0), np.zeros(0)
    diagonal = 1.0 / alphas
    diagonal[1:] += betas[:-1] / alphas[:-1]
    off_diagonal = np.sqrt(np.maximum(betas[:-1], 0.0)) / alphas[:-1]
    return diagonal, off_diagonal
