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
    assert result["mixed"] and result["verdict"].startswith("mixed")


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_ar1_chain_ess_matches_theory(phi):
    n = 2000
    samples = _ar1(n, (100,), phi, seed=1)  # one chain, 100 independent "pixels"
    result = chain_diagnostics(samples, has_chain_axis=False)
    expected = n * (1 - phi) / (1 + phi)
    assert result["rhat_max"] is None and result["num_chains"] == 1
    assert abs(result["ess_median"] / expected - 1) < 0.1
    assert "R-hat needs 2+ chains" in result["verdict"]


def test_chains_with_different_means_are_not_mixed():
    samples = np.random.default_rng(2).normal(size=(400, 3, 50))
    samples[:, 1] += 2.0
    result = chain_diagnostics(samples)
    assert result["rhat_max"] > 1.5
    assert not result["mixed"]
    assert result["verdict"].startswith("not yet mixed: R-hat")
    assert "run longer or add chains" in result["verdict"]


def test_few_effective_samples_are_not_mixed():
    samples = _ar1(200, (2, 10), 0.99, seed=3)
    result = chain_diagnostics(samples, min_ess=100)
    assert result["ess_min"] < 100 and not result["mixed"]
    assert "min ESS" in result["verdict"]


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
