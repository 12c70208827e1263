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
