"""How long to sample, read from the chain itself: the end of burn-in and the stopping rule.

**Burn-in: a windowed drift test on the loss** (:func:`drift_test`, :func:`detect_burn_in`).
The loss of a Langevin chain is its negative log-likelihood ``-log p(y | w_t)`` (up to a
constant); while the chain still travels towards the posterior's typical set it drifts down, and
once there it fluctuates around a level. At every check (every ``check_every`` steps) the last
``W`` per-step losses are split into an older and a newer half, each half into ``B`` batches,
and Geweke's z-score (Geweke 1992) of the two halves' means is formed with batch-means standard
errors::

    z = (mean(older) - mean(newer)) / sqrt(se_older^2 + se_newer^2),
    se_h^2 = var(batch means of half h) / B

Burn-in ends at the second of two consecutive checks with ``|z| < z_max`` (2 by default): the
loss no longer drifts by more than its own Monte Carlo noise over the window (one check alone
passes by chance too often while a slow drift is still under way). Batches shorter than the
loss's autocorrelation time make the test see drift that is not there: then burn-in ends later
than it could (it errs late, not early). A steady drift cannot hide in the batch means' spread: a
noise-free linear trend gives ``z = B sqrt(6 / (B + 1))`` (7.4 for B = 10).

**Stopping: the Monte Carlo error of the posterior mean** (:func:`mcse_rule_met`). For each
traced output pixel ``i`` of chain ``k`` (``n_k`` samples), the effective sample size
``ESS_ki`` (Geyer's initial positive sequence) gives the Monte Carlo standard error of the
chain's mean ``MCSE_ki = sd_ki / sqrt(ESS_ki)``, pooled over chains
(:func:`tfdip.inference.diagnostics.monte_carlo_error`). Sampling stops when the median over
traced pixels of ``MCSE_i / sd_i`` (``sd_i``: the pixel's posterior std) is below ``threshold``
(0.1: the mean is known to a tenth of the posterior's own uncertainty, i.e. about 100 effective
draws; it then costs about 0.04 dB of PSNR).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tfdip.errors import TfdipError
from tfdip.inference.diagnostics import MonteCarloError

#: Drift test defaults: window of per-step losses, batches per half window, z-score bound, and
#: how many consecutive checks must find no drift.
DRIFT_WINDOW = 400
DRIFT_BATCHES = 10
DRIFT_Z = 2.0
DRIFT_CONFIRMATIONS = 2
#: The stopping rule's bound on the median of MCSE / posterior std over traced pixels.
MCSE_THRESHOLD = 0.1
#: Fewest trace rows per chain before the ESS (and so the stopping rule) is trusted.
MIN_TRACE_ROWS = 50


def batch_means_mcse(x, num_batches: int = 20) -> np.ndarray:
    """Monte Carlo standard error of the mean of ``x`` by non-overlapping batch means.

    ``x`` is ``(n,)`` or ``(n, P)`` (P series along axis 0). With ``b = num_batches`` batches of
    ``m = n // b`` values (the first ``n - b m`` values are left out) and batch means
    ``Y_1..Y_b``, ``MCSE^2 = var(Y) / b`` with the unbiased variance of the batch means; it is
    consistent when ``m`` is much longer than the autocorrelation time. Shape ``x.shape[1:]``.
    """
    x = np.asarray(x, np.float64)
    if x.ndim < 1 or num_batches < 2 or x.shape[0] < num_batches:
        raise TfdipError(f"batch means need at least {max(num_batches, 2)} values along axis 0 "
                         f"and 2 batches, got shape {x.shape} and {num_batches} batches")
    size = x.shape[0] // num_batches
    batches = x[x.shape[0] - size * num_batches:].reshape(num_batches, size, *x.shape[1:])
    return np.sqrt(batches.mean(axis=1).var(axis=0, ddof=1) / num_batches)


@dataclasses.dataclass(frozen=True)
class DriftTest:
    """Geweke's z-score of the two halves of a window of losses (see the module docstring)."""

    z: float
    older_mean: float
    newer_mean: float
    standard_error: float
    z_max: float

    @property
    def stationary(self) -> bool:
        return bool(abs(self.z) < self.z_max)


def drift_test(losses, *, num_batches: int = DRIFT_BATCHES, z_max: float = DRIFT_Z) -> DriftTest:
    """The drift test on one window of per-step losses (oldest first), shape (W,), W >= 4 B."""
    losses = np.asarray(losses, np.float64)
    half = losses.shape[0] // 2
    if losses.ndim != 1 or half < 2 * num_batches:
        raise TfdipError(f"the drift test needs a window of at least {4 * num_batches} losses, "
                         f"got shape {losses.shape}")
    older, newer = losses[-2 * half:-half], losses[-half:]
    se = float(np.hypot(batch_means_mcse(older, num_batches), batch_means_mcse(newer, num_batches)))
    difference = float(older.mean() - newer.mean())
    z = difference / se if se > 0 else (0.0 if difference == 0 else np.copysign(np.inf, difference))
    return DriftTest(z=float(z), older_mean=float(older.mean()), newer_mean=float(newer.mean()),
                     standard_error=se, z_max=z_max)


def detect_burn_in(losses, *, window: int = DRIFT_WINDOW, check_every: int = 100,
                   num_batches: int = DRIFT_BATCHES, z_max: float = DRIFT_Z,
                   confirmations: int = DRIFT_CONFIRMATIONS) -> int | None:
    """The end of burn-in of a whole loss trace ``losses`` (one per step, step 1 first): the
    check step ``t`` (a multiple of ``check_every``, ``t >= window``) that completes the first
    run of ``confirmations`` consecutive checks at which :func:`drift_test` of
    ``losses[t - window:t]`` finds no drift; None if there is none.

    A run decides online with the same test at the same steps (:class:`tfdip.stopping.AutoBudget`
    through :func:`next_streak`), so this is also what a run over this trace decides.
    """
    losses = np.asarray(losses, np.float64)
    first = -(-window // check_every) * check_every
    streak = 0
    for step in range(first, losses.shape[0] + 1, check_every):
        test = drift_test(losses[step - window:step], num_batches=num_batches, z_max=z_max)
        streak = next_streak(streak, test)
        if streak >= confirmations:
            return step
    return None


def next_streak(streak: int, test: DriftTest) -> int:
    """The count of consecutive drift-free checks after ``test``: one more, or back to 0."""
    return streak + 1 if test.stationary else 0


def mcse_rule_met(error: MonteCarloError, threshold: float = MCSE_THRESHOLD) -> bool:
    """The stopping rule: median over traced pixels of ``MCSE / posterior std`` below
    ``threshold``."""
    return bool(error.median_ratio < threshold)


@dataclasses.dataclass(frozen=True)
class BudgetRules:
    """The settings of an automatic budget (``iterations="auto"``).

    Attributes:
        check_every: steps between checks (the run's log interval); a decision is taken only at
            its multiples, so the host reads nothing back in between.
        window, num_batches, z_max, confirmations: the burn-in drift test (module docstring).
        threshold: the stopping rule's bound on the median of MCSE / posterior std.
        min_rows: trace rows per chain before the stopping rule is applied.
    """

    check_every: int = 100
    window: int = DRIFT_WINDOW
    num_batches: int = DRIFT_BATCHES
    z_max: float = DRIFT_Z
    confirmations: int = DRIFT_CONFIRMATIONS
    threshold: float = MCSE_THRESHOLD
    min_rows: int = MIN_TRACE_ROWS

    def __post_init__(self):
        for name in ("check_every", "confirmations", "min_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TfdipError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.num_batches, int) or self.num_batches < 2:
            raise TfdipError(f"num_batches must be a whole number >= 2, got {self.num_batches!r}")
        if not isinstance(self.window, int) or self.window < 4 * self.num_batches:
            raise TfdipError(f"the drift window must hold at least 4 x num_batches = "
                             f"{4 * self.num_batches} steps, got {self.window!r}")
        if not self.z_max > 0 or not self.threshold > 0:
            raise TfdipError(f"z_max and threshold must be > 0, got {self.z_max!r} and "
                             f"{self.threshold!r}")
        if self.min_rows < 4:
            raise TfdipError(f"min_rows must be at least 4, got {self.min_rows}")
