"""uncertainty_report on synthetic predictions with calibrated and miscalibrated errors."""
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from tfdip.errors import TfdipError
from tfdip.inference import uncertainty_report


def _synthetic(error_scale, shape=(64, 64, 3), seed=0):
    """Reference, predicted std (varying per pixel) and a mean whose error is
    N(0, (error_scale * std)^2)."""
    rng = np.random.default_rng(seed)
    reference = rng.uniform(size=shape)
    std = rng.uniform(0.01, 0.1, size=shape)
    mean = reference + error_scale * std * rng.normal(size=shape)
    return mean, std, reference


def test_calibrated_errors():
    mean, std, reference = _synthetic(1.0)
    report = uncertainty_report(mean, std, reference)
    n = report["num_entries"]
    assert n == mean.size
    assert abs(report["coverage_2std"] - 0.9545) < 4 * np.sqrt(0.9545 * 0.0455 / n)
    np.testing.assert_allclose(report["observed"], report["levels"], atol=0.015)
    assert report["calibration_error"] < 0.01
    assert report["uce_normalised"] < 0.05
    # Each bin's MSE matches its mean predicted variance.
    np.testing.assert_allclose(report["bin_mse"], report["bin_variance"], rtol=0.1)
    np.testing.assert_allclose(sum(report["bin_fraction"]), 1.0)
    assert report["pearson"] > 0.3 and report["spearman"] > 0.3


def test_overconfident_std_under_covers():
    mean, std, reference = _synthetic(2.0)
    report = uncertainty_report(mean, std, reference)
    expected = 2 * NormalDist().cdf(1.0) - 1  # |e| <= 2 std  <=>  |N(0, 1)| <= 1
    assert abs(report["coverage_2std"] - expected) < 0.01
    assert np.all(np.array(report["observed"]) < np.array(report["levels"]))
    assert report["calibration_error"] > 0.1
    # UCE = E|4 var - var| over bins = 3 * mean variance.
    assert abs(report["uce_normalised"] - 3.0) < 0.15


def test_correlations_match_scipy_and_uce_matches_a_direct_computation():
    mean, std, reference = _synthetic(1.0, shape=(16, 16, 1), seed=1)
    std = np.round(std, 2)  # ties, which Spearman's rho must average
    report = uncertainty_report(mean, std, reference, num_bins=5)
    abs_error = np.abs(mean - reference).ravel()
    assert report["pearson"] == pytest.approx(stats.pearsonr(std.ravel(), abs_error)[0])
    assert report["spearman"] == pytest.approx(stats.spearmanr(std.ravel(), abs_error)[0])
    variance, squared = std.ravel() ** 2, abs_error**2
    edges = np.linspace(variance.min(), variance.max(), 6)
    uce = 0.0
    for k in range(5):
        last = k == 4
        inside = (variance >= edges[k]) & ((variance <= edges[k + 1]) if last
                                           else (variance < edges[k + 1]))
        if inside.any():
            uce += inside.mean() * abs(squared[inside].mean() - variance[inside].mean())
    assert report["uce"] == pytest.approx(uce)
    assert report["uce_normalised"] == pytest.approx(uce / variance.mean())


def test_mask_and_broadcast_std():
    mean, std, reference = _synthetic(1.0, shape=(32, 32, 3), seed=2)
    gray_std = std.mean(-1, keepdims=True)
    mask = np.zeros((32, 32, 1), bool)
    mask[:16] = True
    report = uncertainty_report(mean, gray_std, reference, mask=mask)
    assert report["num_entries"] == 16 * 32 * 3
    top = uncertainty_report(mean[:16], np.broadcast_to(gray_std[:16], mean[:16].shape),
                             reference[:16])
    assert report == top


def test_constant_std_gives_undefined_correlation():
    mean, _, reference = _synthetic(1.0, shape=(8, 8, 1), seed=3)
    report = uncertainty_report(mean, np.full(mean.shape, 0.05), reference)
    assert report["pearson"] is None and report["spearman"] is None
    assert len(report["bin_mse"]) == 1


def test_bad_input_raises():
    mean, std, reference = _synthetic(1.0, shape=(8, 8, 1))
    with pytest.raises(TfdipError, match="reference shape"):
        uncertainty_report(mean, std, reference[:4])
    with pytest.raises(TfdipError, match="broadcast"):
        uncertainty_report(mean, std[:3], reference)
    with pytest.raises(TfdipError, match="non-negative"):
        uncertainty_report(mean, -std, reference)
    with pytest.raises(TfdipError, match="levels"):
        uncertainty_report(mean, std, reference, levels=(0.5, 1.0))
