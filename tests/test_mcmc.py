"""TFP MCMC over generator weights: a linear generator has a closed-form Gaussian posterior."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.inference import McmcResult, sample_posterior_mcmc

NOISE_SIGMA, PRIOR_SIGMA = 1.0, 1.0


def _linear_problem(size=8, in_channels=2, seed=0):
    """Generator x = Dense(1)(z) on an (size x size x in_channels) code: outputs are linear in the
    weights w = (kernel, bias), so with y = x + N(0, s^2) and prior N(0, p^2) the output
    posterior is Gaussian with mean Phi mu and variance diag(Phi Sigma Phi^T)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(1, size, size, in_channels)).astype(np.float32)
    keras.utils.set_random_seed(seed)
    generator = keras.Sequential([keras.Input((size, size, in_channels)), keras.layers.Dense(1)])
    generator(z)
    phi = np.concatenate([z.reshape(-1, in_channels), np.ones((size * size, 1))], axis=1)
    y = phi @ rng.normal(size=in_channels + 1) + NOISE_SIGMA * rng.normal(size=size * size)
    covariance = np.linalg.inv(phi.T @ phi / NOISE_SIGMA**2 + np.eye(in_channels + 1)
                               / PRIOR_SIGMA**2)
    mean = covariance @ phi.T @ y / NOISE_SIGMA**2
    observation = tf.constant(y.reshape(1, size, size, 1), tf.float32)

    def log_likelihood(x_hat):
        return -tf.reduce_sum(tf.square(x_hat - observation)) / (2 * NOISE_SIGMA**2)

    output_variance = np.einsum("ij,jk,ik->i", phi, covariance, phi)
    return generator, z, log_likelihood, phi @ mean, output_variance, (mean, covariance)


def mala_acceptance(mean, covariance, step_size, draws=200_000, seed=0):
    """Stationary acceptance rate of MALA on N(mean, covariance), by NumPy Monte Carlo: x from the
    target, proposal ``x' = x + (h/2) grad log p(x) + sqrt(h) xi`` (TFP's), Metropolis-Hastings
    ratio ``p(x') q(x | x') / (p(x) q(x' | x))``."""
    rng = np.random.default_rng(seed)
    precision = np.linalg.inv(covariance)
    x = rng.multivariate_normal(mean, covariance, size=draws)
    grad = lambda v: -(v - mean) @ precision  # noqa: E731
    log_p = lambda v: -0.5 * np.einsum("ni,ij,nj->n", v - mean, precision, v - mean)  # noqa: E731
    proposal = x + 0.5 * step_size * grad(x) + np.sqrt(step_size) * rng.standard_normal(x.shape)
    log_q = lambda to, frm: -np.sum((to - frm - 0.5 * step_size * grad(frm)) ** 2,  # noqa: E731
                                    axis=-1) / (2 * step_size)
    log_ratio = log_p(proposal) + log_q(x, proposal) - log_p(x) - log_q(proposal, x)
    return float(np.mean(np.minimum(1.0, np.exp(log_ratio))))


def _assert_close(values, expected, tolerance_in_se=4.5):
    """``values`` (num_results, num_chains, pixels): pooled mean within a few standard errors of
    ``expected``, the standard error taken from the spread of the independent chains' means."""
    chain_means = values.mean(axis=0)
    se = chain_means.std(axis=0, ddof=1) / np.sqrt(chain_means.shape[0])
    error = np.abs(chain_means.mean(axis=0) - expected)
    assert np.all(error < tolerance_in_se * se + 1e-3 * np.abs(expected)), (error / se).max()
    return se


def test_mala_recovers_the_closed_form_output_posterior():
    generator, z, log_likelihood, mean, variance, posterior = _linear_problem()
    result = sample_posterior_mcmc(
        generator, z, log_likelihood, kernel="mala", step_size=0.02, num_results=300,
        num_burnin_steps=200, num_chains=8, thin=3, prior_sigma=PRIOR_SIGMA, seed=1)
    assert isinstance(result, McmcResult)
    assert result.samples.shape == (300, 8, 8, 8, 1)
    assert result.mean.shape == result.std.shape == (8, 8, 1)
    samples = result.samples.reshape(300, 8, -1).astype(np.float64)
    se = _assert_close(samples, mean)
    assert np.all(se < 0.1 * np.sqrt(variance))  # the check has teeth
    _assert_close((samples - mean) ** 2, variance)
    np.testing.assert_allclose(result.mean.ravel(), samples.mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(result.std.ravel() ** 2, variance, rtol=0.15)
    # The acceptance rate is that of MALA at stationarity on the closed-form weight posterior.
    expected_rate = mala_acceptance(*posterior, step_size=0.02)
    assert 0.2 < expected_rate < 0.95  # neither trivial nor degenerate at this step size
    assert result.accept_rate == pytest.approx(expected_rate, abs=0.05)
    diagnostics = result.diagnostics
    assert diagnostics["num_chains"] == 8 and diagnostics["num_samples"] == 300
    assert diagnostics["rhat_max"] < 1.1 and diagnostics["mixed"]


def test_ula_with_a_small_step_is_close_and_has_no_acceptance():
    generator, z, log_likelihood, mean, variance, _ = _linear_problem(seed=2)
    result = sample_posterior_mcmc(
        generator, z, log_likelihood, kernel="ula", step_size=0.002, num_results=200,
        num_burnin_steps=300, num_chains=4, thin=10, prior_sigma=PRIOR_SIGMA, seed=2)
    assert result.accept_rate is None
    samples = result.samples.reshape(200, 4, -1).astype(np.float64)
    np.testing.assert_allclose(samples.mean(axis=(0, 1)), mean, atol=0.3 * np.sqrt(variance).max())
    np.testing.assert_allclose(samples.var(axis=(0, 1)), variance, rtol=0.3)


def _conv_generator(seed=0):
    keras.utils.set_random_seed(seed)
    generator = keras.Sequential([
        keras.Input((8, 8, 2)), keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(1, 1, activation="sigmoid")])
    z = np.random.default_rng(seed).uniform(0, 0.1, (1, 8, 8, 2)).astype(np.float32)
    generator(z)
    return generator, z


def _starts(generator, z, *, seed, init="random", num_chains=3):
    """The chains' initial outputs (a single result after a negligible step)."""
    return sample_posterior_mcmc(
        generator, z, lambda x: -tf.reduce_sum(tf.square(x - 0.5)), kernel="mala",
        step_size=1e-12, num_results=1, num_burnin_steps=0, num_chains=num_chains,
        seed=seed, init=init).samples[0]


def test_chains_start_from_independent_seeded_reinitialisations():
    generator, z = _conv_generator()
    starts = _starts(generator, z, seed=3)
    assert not np.allclose(starts[0], starts[1]) and not np.allclose(starts[1], starts[2])
    np.testing.assert_array_equal(starts, _starts(generator, z, seed=3))
    assert not np.allclose(starts, _starts(generator, z, seed=4))
    current = _starts(generator, z, seed=3, init="current")
    expected = generator(z, training=True).numpy()[0]
    for chain in range(3):
        np.testing.assert_allclose(current[chain], expected, rtol=1e-5, atol=1e-6)


def test_conv_generator_chains_are_deterministic_and_diagnosed():
    generator, z = _conv_generator(seed=1)
    target = np.random.default_rng(1).uniform(size=(1, 8, 8, 1)).astype(np.float32)

    def log_likelihood(x_hat):
        return -tf.reduce_sum(tf.square(x_hat - target)) / (2 * 0.1**2)

    def run():
        return sample_posterior_mcmc(generator, z, log_likelihood, kernel="mala", step_size=1e-4,
                                     num_results=20, num_burnin_steps=20, num_chains=2, thin=2,
                                     seed=5)

    first, second = run(), run()
    np.testing.assert_array_equal(first.samples, second.samples)
    assert np.all(np.isfinite(first.samples)) and first.samples.shape == (20, 2, 8, 8, 1)
    assert first.diagnostics["rhat_max"] is not None
    assert np.all(first.std > 0)


def test_bad_arguments_raise():
    generator, z = _conv_generator()
    log_likelihood = lambda x: -tf.reduce_sum(x)  # noqa: E731
    common = dict(step_size=0.1, num_results=2, num_burnin_steps=0, seed=0)
    with pytest.raises(TfdipError, match="kernel"):
        sample_posterior_mcmc(generator, z, log_likelihood, kernel="hmc", **common)
    with pytest.raises(TfdipError, match="num_chains"):
        sample_posterior_mcmc(generator, z, log_likelihood, num_chains=0, **common)
    with pytest.raises(TfdipError, match="built"):
        sample_posterior_mcmc(keras.Sequential([keras.layers.Dense(1)]), z, log_likelihood,
                              **common)
    with pytest.raises(TfdipError, match="step_size"):
        sample_posterior_mcmc(generator, z, log_likelihood,
                              **{**common, "step_size": 0.0})
