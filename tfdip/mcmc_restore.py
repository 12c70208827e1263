"""One chain of TFP MCMC over the generator's weights (methods ``mala`` and ``ula``).

The same :class:`tfdip.DeepImagePrior` set-up as the optimizer methods (generator, fixed input
z, padding and crop, physics; :func:`tfdip.chains.make_dip` for chain k of the run's seed)
provides the target ``log p(w | y) = log p(y | crop(G_w(z))) + log N(w; 0, I)`` with the
Gaussian likelihood of the recipe's noise level. :func:`tfdip.inference.sample_posterior_mcmc`
runs the chain from the chain's initial weights with the kernel noise of the chain's ``sampler``
stream, so chain k depends on (seed, k) only, as for the other methods. The whole chain runs in
one TFP graph: it has no checkpoints, callbacks or logs (:func:`tfdip.restore` refuses them).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from tfdip.chains import make_dip
from tfdip.inference import sample_posterior_mcmc


@dataclasses.dataclass
class McmcChain:
    """The traced outputs of one chain, cropped to the image: ``samples`` (num_results, H, W, C);
    the MALA acceptance rate (None for ULA) and the wall time in seconds."""

    samples: np.ndarray
    accept_rate: float | None
    seconds: float


def run_mcmc_chain(observation, physics, recipe, *, chain=0, seed=0, net="skip",
                   net_options=None, check_resources=True) -> McmcChain:
    """Run chain ``chain`` of the run seeded with ``seed`` for ``recipe.method`` in
    {"mala", "ula"}: ``recipe.burn_in`` steps discarded, then every ``recipe.thin``-th state
    traced up to ``recipe.iterations`` steps."""
    dip = make_dip(observation, physics, recipe, net=net, net_options=net_options, seed=seed,
                   chain=chain, check_resources=check_resources)
    sigma = recipe.likelihood_sigma

    def log_likelihood(x_hat):
        return physics.log_likelihood(dip.y, dip.crop(x_hat), sigma=sigma)

    start = time.perf_counter()
    result = sample_posterior_mcmc(
        dip.generator, dip.z, log_likelihood, kernel=recipe.method,
        step_size=recipe.learning_rate,
        num_results=(recipe.iterations - recipe.burn_in) // recipe.thin,
        num_burnin_steps=recipe.burn_in, num_chains=1, thin=recipe.thin,
        seed=dip.seeds.sampler, init="current")
    return McmcChain(samples=np.asarray(dip.crop(result.samples[:, 0])),
                     accept_rate=result.accept_rate, seconds=time.perf_counter() - start)
