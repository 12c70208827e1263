"""How well a per-pixel uncertainty (posterior std) predicts the actual error.

Every entry (pixel x channel) is one prediction ``mean`` with predicted std ``std`` and
error ``e = mean - reference``. A calibrated Gaussian predictive has ``e ~ N(0, std^2)``.
"""
from __future__ import annotations

from statistics import NormalDist

import numpy as np

from tfdip.errors import TfdipError

DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def uncertainty_report(mean, std, reference, num_bins: int = 10, *, mask=None,
                       levels=DEFAULT_LEVELS) -> dict:
    """Correlation, coverage and calibration of ``std`` as a predictor of ``|mean - reference|``.

    Args:
        mean: predicted image, e.g. (H, W, C).
        std: predicted std, broadcastable to ``mean`` (e.g. (H, W, 1) for a channel-mean map).
        reference: ground truth, same shape as ``mean``.
        num_bins: number of equal-width bins of predicted variance for the UCE.
        mask: optional boolean array broadcastable to ``mean``; only entries where it is True are
            evaluated (e.g. the missing pixels of an inpainting problem).
        levels: nominal central probabilities ``p`` of the calibration curve, in (0, 1).

    Returns:
        dict with
        ``pearson``, ``spearman``: correlation of std with |error| over entries (``None`` when
        std or the error is constant);
        ``coverage_2std``: fraction with ``|e| <= 2 std`` (0.954 for a calibrated Gaussian);
        ``levels``, ``observed``: the calibration curve, fraction with ``|e| <= z_p std`` where
        ``z_p = Phi^-1((1 + p) / 2)`` (the diagonal when calibrated);
        ``calibration_error``: mean over levels of ``|observed - p|``;
        ``uce``: uncertainty calibration error (Laves et al. 2020), ``sum_m (|B_m| / N)
        |MSE(B_m) - mean variance(B_m)|`` over ``num_bins`` equal-width bins of predicted
        variance ``std^2`` between its min and max;
        ``uce_normalised``: ``uce`` divided by the mean predicted variance;
        ``bin_variance``, ``bin_mse``, ``bin_fraction``: the per-bin values behind the UCE
        (empty bins omitted), for reliability plots;
        ``num_entries``: number of entries evaluated.
    """
    mean = np.asarray(mean, np.float64)
    reference = np.asarray(reference, np.float64)
    if reference.shape != mean.shape:
        raise TfdipError(f"reference shape {reference.shape} differs from mean shape {mean.shape}")
    try:
        std = np.broadcast_to(np.asarray(std, np.float64), mean.shape)
        keep = (np.ones(mean.shape, bool) if mask is None
                else np.broadcast_to(np.asarray(mask, bool), mean.shape))
    except ValueError as error:
        raise TfdipError(f"std and mask must broadcast to the image shape {mean.shape}") from error
    if not isinstance(num_bins, int) or num_bins < 1:
        raise TfdipError(f"num_bins must be a positive int, got {num_bins!r}")
    levels = np.asarray(levels, np.float64)
    if levels.ndim != 1 or not np.all((levels > 0) & (levels < 1)):
        raise TfdipError("levels must be a 1-D sequence of probabilities in (0, 1)")
    std, error = std[keep], (mean - reference)[keep]
    if error.size < 2:
        raise TfdipError(f"need at least 2 entries to evaluate, got {error.size}; check the mask")
    if not (np.all(np.isfinite(std)) and np.all(np.isfinite(error))):
        raise TfdipError("mean, std and reference must be finite")
    if np.any(std < 0):
        raise TfdipError("std must be non-negative")

    abs_error = np.abs(error)
    z = np.array([NormalDist().inv_cdf((1.0 + p) / 2.0) for p in levels])
    observed = np.mean(abs_error[None, :] <= z[:, None] * std[None, :], axis=1)
    uce, bin_variance, bin_mse, bin_fraction = _uce(std**2, error**2, num_bins)
    mean_variance = float(np.mean(std**2))
    return {
        "pearson": _correlation(std, abs_error),
        "spearman": _correlation(_average_ranks(std), _average_ranks(abs_error)),
        "coverage_2std": float(np.mean(abs_error <= 2.0 * std)),
        "levels": levels.tolist(),
        "observed": observed.tolist(),
        "calibration_error": float(np.mean(np.abs(observed - levels))),
        "uce": uce,
        "uce_normalised": uce / mean_variance if mean_variance > 0 else None,
        "bin_variance": bin_variance,
        "bin_mse": bin_mse,
        "bin_fraction": bin_fraction,
        "num_entries": int(error.size),
    }


def _uce(variance, squared_error, num_bins):
    """Laves et al.'s UCE over equal-width bins of predicted variance."""
    low, high = variance.min(), variance.max()
    edges = np.linspace(low, high, num_bins + 1) if high > low else np.array([low, high])
    bins = np.clip(np.searchsorted(edges, variance, side="right") - 1, 0, len(edges) - 2)
    size = len(edges) - 1
    counts = np.bincount(bins, minlength=size)
    used = counts > 0
    fraction = counts[used] / variance.size
    bin_variance = np.bincount(bins, weights=variance, minlength=size)[used] / counts[used]
    bin_mse = np.bincount(bins, weights=squared_error, minlength=size)[used] / counts[used]
    uce = float(np.sum(fraction * np.abs(bin_mse - bin_variance)))
    return uce, bin_variance.tolist(), bin_mse.tolist(), fraction.tolist()


def _correlation(a, b):
    """Pearson correlation, ``None`` if either input is constant."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    a, b = a - a.mean(), b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def _average_ranks(values):
    """Ranks 1..n with ties given their average rank (as Spearman's rho requires)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2.0)[inverse]
