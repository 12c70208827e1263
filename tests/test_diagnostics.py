"""chain_diagnostics on chains with known ESS and R-hat."""
import numpy as np
import pytest

from tfdip.errors import TfdipError
from tfdip.inference import chain_diagnostics


def _ar1(num_samples, shape, phi, seed):
    """Stationary AR(1) chains x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t along axis 0."""
    rng = np.random.default_rng(seed)
    x = np.empty((num_samples, *shape))
    x[0] = rng.normal(size=shape)
    scale = np.sqrt(1 - phi**2)
    for t in range(1, num_samples):
        x[t] = phi * x[t - 1] + scale * rng.normal(size=shape)
    return x


def test_iid_draws_have_full_ess_and_unit_rhat():
    n = 1000
    samples = np.random.default_rng(0).normal(size=(n, 4, 8, 8, 1))
    result = chain_diagnostics(samples)
    assert result["num_samples"] == n and result["num_chains"] == 4
    assert result["num_pixels"] == 64
    # Total ESS over 4 chains ~ 4000; the minimum over 64 pixels dips a few percent below.
    assert 0.85 * 4 * n < result["ess_median"] < 1.15 * 4 * n
    assert result["ess_min"] > 0.7 * 4 * n
    assert 1.0 - 1e-3 < result["rhat_max"] < 1.01
    assert result["mixed"] and result["verdict"].startswith("Monte Carlo error of the mean 0.0")
    # iid: MCSE / std = 1 / sqrt(n chains) per pixel
    assert result["mc_error_ratio"] == pytest.approx(1 / np.sqrt(4 * n), rel=0.1)
    assert "4 chains agree" in result["verdict"] and "warning" not in result["verdict"]


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_ar1_chain_ess_matches_theory(phi):
    n = 2000
    samples = _ar1(n, (100,), phi, seed=1)  # one chain, 100 independent "pixels"
    result = chain_diagnostics(samples, has_chain_axis=False)
    expected = n * (1 - phi) / (1 + phi)
    assert result["rhat_max"] is None and result["num_chains"] == 1
    assert abs(result["ess_median"] / expected - 1) < 0.1
    # MCSE / std = 1 / sqrt(ESS) with ESS = n (1 - phi) / (1 + phi); small, so no warning
    assert result["mc_error_ratio"] == pytest.approx(1 / np.sqrt(expected), rel=0.1)
    assert result["mixed"] and not result["verdict"].startswith("warning")


def test_chains_with_different_means_are_not_mixed():
    samples = np.random.default_rng(2).normal(size=(400, 3, 50))
    samples[:, 1] += 2.0
    result = chain_diagnostics(samples)
    assert result["rhat_max"] > 1.5
    assert not result["mixed"]
    assert result["verdict"].startswith("warning: the 3 chains disagree (R-hat")
    assert "run longer or add chains" in result["verdict"]


def test_few_effective_samples_warn_with_the_error_they_cost_and_name_the_worst_pixels():
    samples = _ar1(200, (4, 5, 1), 0.99, seed=3)
    samples[:, 2, 3, 0] = np.linspace(-2, 2, 200)  # a pixel still drifting: the least settled
    result = chain_diagnostics(samples, has_chain_axis=False, min_ess=100)
    assert result["ess_min"] < 100 and not result["ess_ok"] and not result["mixed"]
    assert result["mc_error_ratio"] > 0.3
    assert result["verdict"].startswith("warning: the posterior mean is still noisy")
    assert result["least_settled"][0]["pixel"] == [2, 3, 0]
    assert "(2, 3, 0) at" in result["verdict"]
    cost = 10 * np.log10(1 + result["mc_error_ratio"]**2)  # equal ratios: the cost's form
    assert 0.3 * cost < result["mc_error_cost_db"] < 3 * cost


def test_moderate_error_is_reported_without_a_warning():
    samples = _ar1(800, (30,), 0.9, seed=5)  # ESS ~ 800 x 0.1 / 1.9 = 42: ratio ~ 0.15
    result = chain_diagnostics(samples, has_chain_axis=False)
    assert 0.1 < result["mc_error_ratio"] < 0.3 and result["mixed"]
    assert not result["verdict"].startswith("warning") and "least settled" in result["verdict"]


def test_chains_of_different_lengths_pool_their_whole_traces():
    short, long = _ar1(300, (40,), 0.5, seed=6), _ar1(900, (40,), 0.5, seed=7)
    result = chain_diagnostics([short, long], pixel_index=np.arange(40) + 100,
                               image_shape=(10, 20, 1))
    assert result["num_samples"] == 300 and result["num_chains"] == 2
    # pooled MCSE / std = 1 / sqrt(ESS of all 1200 draws) = sqrt(3 / 1200)
    assert result["mc_error_ratio"] == pytest.approx(np.sqrt(3 / 1200), rel=0.15)
    row, col, channel = result["least_settled"][0]["pixel"]
    assert 100 <= row * 20 + col < 140 and channel == 0


def test_pixel_subset_is_seeded_and_constant_pixels_are_ignored():
    samples = np.random.default_rng(4).normal(size=(100, 2, 30, 30))
    samples[..., 0, :] = 1.0  # a saturated row
    first = chain_diagnostics(samples, max_pixels=200, seed=5)
    assert first == chain_diagnostics(samples, max_pixels=200, seed=5)
    assert first["num_pixels"] <= 200
    full = chain_diagnostics(samples, max_pixels=None)
    assert full["num_pixels"] == 29 * 30


def test_unmeasurable_chains_say_why():
    short = chain_diagnostics(np.random.default_rng(6).normal(size=(3, 2, 5)))
    assert short["ess_min"] is None and not short["mixed"] and short["num_samples"] == 3
    assert short["verdict"].startswith("too few samples")
    stuck = chain_diagnostics(np.ones((10, 2, 5)))
    assert stuck["rhat_max"] is None and not stuck["mixed"]
    assert "constant" in stuck["verdict"]


def test_bad_shape_raises():
    with pytest.raises(TfdipError, match="num_samples"):
        chain_diagnostics(np.zeros(10))
