"""Restoration with TFP's MCMC kernels over the generator's weights (methods ``mala`` and ``ula``).

The same :class:`tfdip.DeepImagePrior` set-up (generator, fixed input z, padding and crop, physics)
provides the target: ``log p(w | y) = log p(y | crop(G_w(z))) + log N(w; 0, I)``, with the Gaussian
likelihood of the recipe's noise level. :func:`tfdip.inference.sample_posterior_mcmc` runs the
chains; its traced outputs give the posterior mean, std and the ESS / R-hat diagnostics.
"""
from __future__ import annotations

import time

from tfdip.inference import chain_diagnostics, sample_posterior_mcmc


def restore_mcmc(observation, physics, recipe, *, net="skip", net_options=None, reference=None,
                 seed=0, chains=1, check_resources=True):
    """:func:`tfdip.restore` for ``recipe.method`` in {"mala", "ula"}; returns a Restoration."""
    from tfdip.restoration import Restoration, make_dip

    dip = make_dip(observation, physics, recipe, net=net, net_options=net_options,
                   reference=reference, seed=seed, check_resources=check_resources)
    sigma = recipe.likelihood_sigma

    def log_likelihood(x_hat):
        return physics.log_likelihood(dip.y, dip.crop(x_hat), sigma=sigma)

    num_results = (recipe.iterations - recipe.burn_in) // recipe.thin
    start = time.perf_counter()
    result = sample_posterior_mcmc(
        dip.generator, dip.z, log_likelihood, kernel=recipe.method,
        step_size=recipe.learning_rate, num_results=num_results,
        num_burnin_steps=recipe.burn_in, num_chains=chains, thin=recipe.thin, seed=seed)
    seconds = time.perf_counter() - start
    (top, left), (height, width, _) = dip.crop_offset, dip.image_shape

    def crop(x):
        return x[..., top:top + height, left:left + width, :]

    samples = crop(result.samples)
    diagnostics = chain_diagnostics(samples)  # on the image itself, not the padded border
    if result.accept_rate is not None:
        diagnostics["accept_rate"] = result.accept_rate
    return Restoration(
        image=crop(result.mean).clip(0.0, 1.0), last=samples[-1, 0], ema=None,
        std=crop(result.std),
        samples=int(samples.shape[0] * samples.shape[1]), diagnostics=diagnostics,
        method=recipe.method, iterations=recipe.iterations, seed=seed, seconds=seconds,
        seconds_per_iteration=seconds / (recipe.iterations * chains), rollbacks=0, history=[],
        models=[])
