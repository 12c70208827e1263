"""The automatic budget's rules on synthetic traces with known answers: batch means and ESS
against the AR(1) closed forms, the drift test on a trend and on a drifting-then-stationary
AR(1) process, the pooled Monte Carlo error of several chains and the stopping rule."""
import numpy as np
import pytest

from tfdip.errors import TfdipError
from tfdip.inference.budget import (DRIFT_WINDOW, batch_means_mcse, detect_burn_in, drift_test,
                                    mcse_rule_met)
from tfdip.inference.diagnostics import monte_carlo_error


def ar1(num_steps, phi, seed, columns=None):
    """Stationary AR(1) x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t (unit marginal variance)."""
    rng = np.random.default_rng(seed)
    shape = (num_steps,) if columns is None else (num_steps, columns)
    noise = rng.normal(size=shape) * np.sqrt(1 - phi**2)
    x = np.empty(shape)
    x[0] = rng.normal(size=shape[1:])
    for t in range(1, num_steps):
        x[t] = phi * x[t - 1] + noise[t]
    return x


def ar1_mcse(phi, n):
    """Closed form: the mean of n AR(1) draws of unit variance has variance (1+phi)/((1-phi) n)."""
    return np.sqrt((1 + phi) / ((1 - phi) * n))


def test_batch_means_mcse_matches_the_ar1_closed_form():
    phi, n = 0.9, 20000
    mcse = batch_means_mcse(ar1(n, phi, seed=0, columns=200))
    # 20 batches: each column's estimate has ~16% relative error; the mean over 200 columns ~1%,
    # plus a bias of about tau / batch length ~ 2% (tau = 19, batches of 1000).
    assert abs(mcse.mean() / ar1_mcse(phi, n) - 1) < 0.05


@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_monte_carlo_error_of_one_chain_matches_the_ar1_closed_form(phi):
    n = 4000
    trace = ar1(n, phi, seed=1, columns=100)
    error = monte_carlo_error([trace])
    assert abs(np.median(error.mcse) / ar1_mcse(phi, n) - 1) < 0.1
    assert abs(np.median(error.ess) / (n * (1 - phi) / (1 + phi)) - 1) < 0.1
    np.testing.assert_allclose(error.std, trace.std(axis=0))
    # ESS-based and batch-means MCSE are independent estimators of one quantity.
    assert abs(np.median(error.mcse / batch_means_mcse(trace)) - 1) < 0.15


def test_pooled_chains_of_different_lengths_have_the_mcse_of_all_their_draws():
    phi, lengths = 0.8, (1500, 3000, 4500)
    traces = [ar1(n, phi, seed=10 + k, columns=100) for k, n in enumerate(lengths)]
    pooled = monte_carlo_error(traces)
    # sum_k (n_k / N)^2 (1+phi)/((1-phi) n_k) = (1+phi)/((1-phi) N)
    assert abs(np.median(pooled.mcse) / ar1_mcse(phi, sum(lengths)) - 1) < 0.1
    single = monte_carlo_error(traces[:1])
    assert np.median(pooled.mcse) < np.median(single.mcse)


def test_stopping_rule_needs_about_a_hundred_effective_draws():
    phi = 0.5  # ESS = n / 3
    enough = monte_carlo_error([ar1(900, phi, seed=2, columns=64)])   # ESS ~ 300: ratio ~ 0.058
    short = monte_carlo_error([ar1(150, phi, seed=3, columns=64)])    # ESS ~ 50: ratio ~ 0.14
    assert mcse_rule_met(enough) and not mcse_rule_met(short)
    assert abs(enough.median_ratio - 1 / np.sqrt(300)) < 0.015
    assert abs(short.median_ratio - 1 / np.sqrt(50)) < 0.03


def test_error_in_db_follows_its_definitions():
    rng = np.random.default_rng(4)
    trace = rng.normal(0.5, 0.05, size=(400, 32))  # iid: ESS = n, MCSE = sd / 20
    error = monte_carlo_error([trace])
    mcse = trace.std(axis=0) / np.sqrt(error.ess)
    np.testing.assert_allclose(error.mcse, mcse, rtol=1e-9)
    assert error.psnr_db == pytest.approx(10 * np.log10(1 / np.mean(mcse**2)))
    assert error.cost_db == pytest.approx(
        10 * np.log10(1 + np.mean(mcse**2) / np.mean(trace.std(axis=0)**2)))
    # iid: MCSE^2 / sd^2 = 1 / ESS ~ 1 / 400, so the cost is about 10 log10(1 + 1/400) dB
    assert error.cost_db == pytest.approx(10 * np.log10(1 + 1 / 400), rel=0.3)
    worst = error.least_settled(2)
    assert list(worst) == list(np.argsort(-error.ratio)[:2])


def test_constant_pixels_have_no_error_and_short_traces_are_refused():
    trace = np.random.default_rng(5).normal(size=(100, 3))
    trace[:, 1] = 0.25
    error = monte_carlo_error([trace])
    assert error.mcse[1] == 0 and error.ratio[1] == 0
    with pytest.raises(TfdipError, match="n >= 4"):
        monte_carlo_error([trace[:3]])
    with pytest.raises(TfdipError, match="one"):
        monte_carlo_error([trace, trace[:, :2]])


def test_drift_test_of_a_noise_free_trend_has_its_closed_form_z():
    batches = 10
    z = drift_test(-0.5 * np.arange(400.0), num_batches=batches).z
    assert z == pytest.approx(batches * np.sqrt(6 / (batches + 1)))
    assert not drift_test(np.arange(400.0)[::-1]).stationary
    assert drift_test(np.full(400, 3.0)).stationary


def test_burn_in_of_a_drifting_then_stationary_ar1_ends_after_the_drift():
    drift_end, steps = 2000, 6000
    t = np.arange(1, steps + 1)
    trend = 20.0 * np.clip(1 - t / drift_end, 0, None)  # 0.01 per step, 4 sd of noise per window
    found = [detect_burn_in(trend + ar1(steps, 0.9, seed=seed)) for seed in range(6)]
    # The window must hold mostly stationary steps, so the end is after the drift, within a few
    # windows (batches of 20 steps are about one autocorrelation time: errs late, not early).
    assert all(drift_end <= end <= drift_end + 3 * DRIFT_WINDOW for end in found), found
    # A stationary trace ends burn-in at the first two checks that can see a whole window.
    assert detect_burn_in(ar1(3000, 0.5, seed=7)) == DRIFT_WINDOW + 100
    # A trace that drifts to the end never ends burn-in.
    assert detect_burn_in(-0.01 * t[:3000] + ar1(3000, 0.9, seed=8)) is None


def test_drift_test_needs_a_window_of_whole_batches():
    with pytest.raises(TfdipError, match="at least 40"):
        drift_test(np.zeros(30))
