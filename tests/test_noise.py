"""The sampled noise level: its Gibbs conditional, and the joint sampler on a model with a known
posterior (Bayesian linear regression with unknown noise, marginal of the noise variance by
quadrature)."""
import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from tfdip.dip import DeepImagePrior
from tfdip.errors import TfdipError
from tfdip.inference import PSGLD, SGLD
from tfdip.inference.noise import QUANTISATION_SIGMA, NoiseVariancePrior
from tfdip.physics import Denoising
from tfdip.recipes import make_recipe


def test_conditional_draws_follow_the_inverse_gamma_posterior():
    prior = NoiseVariancePrior(concentration=2.0, scale=0.01, min_sigma=0.0)
    sse, n = 0.37, 40
    draws = np.array([float(prior.sample(tf.constant(sse), n, tf.constant([7, i])))
                      for i in range(2000)])
    exact = scipy.stats.invgamma(a=2.0 + n / 2, scale=0.01 + sse / 2)
    assert scipy.stats.kstest(draws, exact.cdf).pvalue > 1e-3


def test_floor_binds_below_min_sigma():
    prior = NoiseVariancePrior(min_sigma=0.05)
    draws = [float(prior.sample(tf.constant(1e-9), 1000, tf.constant([1, i]))) for i in range(20)]
    assert min(draws) == pytest.approx(0.05**2)


@pytest.mark.parametrize("bad", [{"concentration": -1.0}, {"scale": float("nan")},
                                 {"min_sigma": -0.1}])
def test_invalid_priors_are_refused(bad):
    with pytest.raises(TfdipError):
        NoiseVariancePrior(**bad)


def test_noise_prior_needs_the_gaussian_likelihood_and_a_langevin_method():
    with pytest.raises(TfdipError, match="Langevin"):
        make_recipe("sgd", "inpainting", noise="sampled")
    with pytest.raises(TfdipError, match="noise must be"):
        make_recipe("psgld", "inpainting", noise="guessed")


@pytest.mark.parametrize("task, sigma, noise, learning_rate, schedule, jitter", [
    # noise-free: larger, decreasing steps and DIP's jitter
    ("inpainting", None, "fixed", 1e-2, "decay", 0.03),
    ("superresolution", 0.0, "fixed", 1e-2, "decay", 0.03),
    ("inpainting", None, "sampled", 1e-2, "decay", 0.0),  # a sampled level reads the misfit
    ("inpainting", 0.05, "fixed", 1e-3, "constant", 0.0),  # noisy: the denoising defaults
    ("denoising", 0.1, "fixed", 1e-3, "constant", 0.0),
])
def test_psgld_defaults_for_noise_free_and_noisy_observations(task, sigma, noise, learning_rate,
                                                              schedule, jitter):
    recipe = make_recipe("psgld", task, sigma=sigma, noise=noise)
    assert (recipe.learning_rate, recipe.schedule, recipe.input_noise_std) == (
        learning_rate, schedule, jitter)
    assert recipe.likelihood_sigma == (sigma or 0.01)
    # given values win; the other methods keep theirs
    assert make_recipe("psgld", task, sigma=sigma, learning_rate=1e-4,
                       input_noise_std=0.0).input_noise_std == 0.0
    assert make_recipe("psgld", task, sigma=sigma, schedule="constant").schedule == "constant"
    other = make_recipe("sgld", task, sigma=sigma)
    assert (other.input_noise_std, other.schedule) == (0.0, "constant")


SIZE, CHANNELS, PRIOR_SIGMA = 16, 3, 1.0


def _linear_problem(noise_sigma, seed=0):
    """A 1x1-conv generator x = z w (no bias) and an observation y = z w_true + noise."""
    keras.utils.set_random_seed(seed)
    generator = keras.Sequential([keras.Input((SIZE, SIZE, CHANNELS)),
                                  keras.layers.Conv2D(1, 1, use_bias=False)])
    rng = np.random.default_rng(seed)
    z = rng.uniform(0, 0.1, (SIZE, SIZE, CHANNELS))
    w_true = np.array([2.0, -1.0, 1.5])
    y = z @ w_true + noise_sigma * rng.standard_normal((SIZE, SIZE))
    return generator, z, y[..., None].astype(np.float32)


def _run_chain(generator, z, y, steps, optimizer, prior):
    dip = DeepImagePrior(generator, Denoising(0.1), y, likelihood="gaussian", likelihood_sigma=0.1,
                         ema_decay=None, rollback_db=None, noise_prior=prior, seed=3)
    dip.z.assign(z[None].astype(np.float32))
    dip.compile(optimizer=optimizer)
    history = dip.fit(steps, log_every=10)
    return np.square(np.array(history.history["sigma"]))


def _exact_noise_variance_mean(z, y):
    """E[s2 | y] under Jeffreys' prior p(s2) ~ 1/s2 and w ~ N(0, PRIOR_SIGMA^2 I), by quadrature
    of p(s2 | y) ~ p(s2) N(y; 0, s2 I + PRIOR_SIGMA^2 Z Z^T)."""
    design = z.reshape(-1, CHANNELS).astype(np.float64)
    target = y.reshape(-1).astype(np.float64)
    eigenvalues, vectors = np.linalg.eigh(PRIOR_SIGMA**2 * design @ design.T)
    projected = vectors.T @ target
    grid = np.linspace(1e-4, 0.02, 4000)
    log_post = np.array([-np.log(s2) - 0.5 * np.sum(np.log(eigenvalues + s2))
                         - 0.5 * np.sum(projected**2 / (eigenvalues + s2)) for s2 in grid])
    weights = np.exp(log_post - log_post.max())
    return float(np.sum(grid * weights) / np.sum(weights))


def test_sampled_noise_level_recovers_the_exact_posterior_of_linear_regression():
    generator, z, y = _linear_problem(noise_sigma=0.05)
    exact = _exact_noise_variance_mean(z, y)
    sgld = SGLD(learning_rate=2e-4, prior_sigma=PRIOR_SIGMA, seed=5)
    s2 = _run_chain(generator, z, y, steps=6000, optimizer=sgld,
                    prior=NoiseVariancePrior(min_sigma=0.0))[100:]
    batches = s2[: len(s2) // 10 * 10].reshape(10, -1).mean(axis=1)
    mc_error = batches.std(ddof=1) / np.sqrt(len(batches))
    assert abs(s2.mean() - exact) < 4 * mc_error + 0.01 * exact
    assert abs(np.sqrt(exact) - 0.05) < 0.01  # the posterior itself is near the true level


def test_noise_free_data_drives_the_noise_level_to_its_floor():
    # pSGLD's preconditioner follows the sharpening likelihood; plain SGLD at a fixed step would
    # become unstable as the noise variance falls.
    generator, z, y = _linear_problem(noise_sigma=0.0)
    psgld = PSGLD(learning_rate=1e-2, prior_sigma=PRIOR_SIGMA, seed=5)
    s2 = _run_chain(generator, z, y, steps=1000, optimizer=psgld, prior=NoiseVariancePrior())
    s2 = s2[len(s2) // 2:]
    assert np.all(s2 >= QUANTISATION_SIGMA**2 * (1 - 1e-6))
    assert np.mean(s2 < 1.5 * QUANTISATION_SIGMA**2) > 0.9


class _WeightTrace(keras.callbacks.Callback):
    """The generator's kernel after every ``step_interval``-th step."""

    step_interval = 5

    def __init__(self, generator):
        super().__init__()
        self.generator, self.trace = generator, []

    def on_step_interval(self, step):
        self.trace.append(self.generator.weights[0].numpy().reshape(-1))


def test_noise_free_data_with_a_fixed_sigma_give_the_gaussian_posterior_around_the_interpolant():
    # The default for noise-free observations keeps the likelihood sigma fixed (NOISE_FREE_SIGMA):
    # on the linear model the posterior is then N(m, S), S = (Z^T Z / sigma^2 + I / p^2)^-1,
    # m = S Z^T y / sigma^2: centred on the noise-free weights, with a spread proportional to
    # sigma. The chain starts at m (pSGLD's drift, about lr / 2 per weight and step, would take
    # thousands of steps to get there) and must keep that spread: without the noise it would stay
    # put, with sigma twice as large its stds would double.
    sigma = make_recipe("psgld", "inpainting").likelihood_sigma
    generator, z, y = _linear_problem(noise_sigma=0.0)
    design = z.reshape(-1, CHANNELS).astype(np.float64)
    covariance = np.linalg.inv(design.T @ design / sigma**2 + np.eye(CHANNELS) / PRIOR_SIGMA**2)
    mean = covariance @ design.T @ y.reshape(-1) / sigma**2
    np.testing.assert_allclose(mean, [2.0, -1.0, 1.5], atol=1e-3)  # the noise-free weights
    generator.weights[0].assign(mean.reshape(1, 1, CHANNELS, 1).astype(np.float32))
    dip = DeepImagePrior(generator, Denoising(sigma), y, likelihood="gaussian",
                         likelihood_sigma=sigma, ema_decay=None, rollback_db=None, seed=3)
    dip.z.assign(z[None].astype(np.float32))
    dip.compile(optimizer=PSGLD(learning_rate=1e-3, prior_sigma=PRIOR_SIGMA, seed=5))
    trace = _WeightTrace(generator)
    dip.fit(6000, callbacks=[trace])
    # In the posterior's principal axes: means within 4 Monte Carlo errors (batch means); stds
    # from 0.9 to 1.45 times the closed form (pSGLD without its Gamma term runs a little wide).
    eigenvalues, axes = np.linalg.eigh(covariance)
    projected = (np.array(trace.trace[100:], np.float64) - mean) @ axes
    batches = projected[: len(projected) // 10 * 10].reshape(10, -1, CHANNELS).mean(axis=1)
    mc_error = batches.std(axis=0, ddof=1) / np.sqrt(10)
    assert np.all(np.abs(projected.mean(axis=0)) < 4 * mc_error)
    ratio = projected.std(axis=0) / np.sqrt(eigenvalues)
    assert np.all((ratio > 0.9) & (ratio < 1.45)), ratio
