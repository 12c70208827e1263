"""Full-batch MCMC over generator weights with TFP kernels (MALA or ULA).

The target is the weight posterior

    log p(w | y) = log_likelihood_fn(G_w(z)) - ||w||^2 / (2 prior_sigma^2) + const,

over all trainable weights ``w`` of a Keras generator ``G``. Several chains start from
independent re-initialisations of the generator (its initialisers re-seeded per chain) and run
together: every state tensor has a leading chain axis. Only the outputs ``G_w(z)`` are traced
(thinned), never the weights. This path is exact (MALA) but costs a full forward and backward
pass per step; it is meant for small nets and images (the Langevin optimizers of
:mod:`tfdip.inference.optimizers` scale further).

TFP's Langevin step with step size ``eps`` is ``w' = w + (eps/2) grad log p(w | y) + sqrt(eps) xi``,
the same convention as :class:`tfdip.inference.SGLD`; MALA adds a Metropolis-Hastings correction.
"""
from __future__ import annotations

import copy
import dataclasses
import warnings

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError
from tfdip.inference.diagnostics import chain_diagnostics

KERNELS = ("mala", "ula")
INITS = ("random", "current")
MAX_TRACE_BYTES = 2**30


@dataclasses.dataclass
class McmcResult:
    """Output of :func:`sample_posterior_mcmc`.

    Attributes:
        mean: posterior mean of the output image over chains and samples, (H, W, C).
        std: posterior std (population) over chains and samples, (H, W, C).
        samples: traced outputs, (num_results, num_chains, H, W, C).
        accept_rate: mean Metropolis acceptance rate (MALA); ``None`` for ULA.
        diagnostics: :func:`tfdip.inference.chain_diagnostics` of ``samples``.
    """

    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray
    accept_rate: float | None
    diagnostics: dict


def sample_posterior_mcmc(generator, z, log_likelihood_fn, *, kernel="mala", step_size,
                          num_results, num_burnin_steps, num_chains=1, thin=1, prior_sigma=1.0,
                          seed, init="random") -> McmcResult:
    """Sample the weight posterior of ``generator`` with TFP's MALA or ULA; trace its outputs.

    Args:
        generator: a built ``keras.Model`` mapping ``z`` to an image (1, H, W, C). It is called
            in training mode (BatchNorm uses the statistics of the current output).
        z: the fixed input, (1, H, W, C_in).
        log_likelihood_fn: ``x_hat (1, H, W, C) -> scalar`` log-likelihood (a sum over pixels,
            e.g. ``-||y - A x_hat||^2 / (2 sigma^2)``), written with TensorFlow ops.
        kernel: ``"mala"`` (``tfp.mcmc.MetropolisAdjustedLangevinAlgorithm``) or ``"ula"``
            (``tfp.mcmc.UncalibratedLangevin``, no accept/reject step).
        step_size: Langevin step ``eps`` (float).
        num_results: number of traced outputs per chain.
        num_burnin_steps: steps discarded before the first trace.
        num_chains: independent chains.
        thin: steps per traced output (TFP's ``num_steps_between_results + 1``).
        prior_sigma: std of the Gaussian prior on every trainable weight; ``None`` for a flat prior.
        seed: int seed of the initialisations and of the chains.
        init: ``"random"``: chain c starts from the generator's initialisers re-seeded with
            ``(seed, c)``; ``"current"``: every chain starts at the generator's current weights
            (e.g. after a DIP fit; R-hat then says less about mixing).

    Returns:
        :class:`McmcResult`.
    """
    _check_arguments(generator, kernel, step_size, num_results, num_burnin_steps, num_chains,
                     thin, prior_sigma, seed, init)
    z = tf.cast(z, generator.compute_dtype)
    output_shape = tuple(generator(z, training=True).shape)
    if len(output_shape) != 4 or output_shape[0] != 1:
        raise TfdipError(f"the generator must map z to one image (1, H, W, C), got {output_shape}")
    trace_bytes = num_results * num_chains * np.prod(output_shape) * 4
    if trace_bytes > MAX_TRACE_BYTES:
        raise TfdipError(f"tracing {num_results} outputs of {num_chains} chains needs "
                         f"{trace_bytes / 2**30:.1f} GiB; lower num_results or raise thin")

    initial_state = _initial_state(generator, z, num_chains, seed, init)
    non_trainable = [tf.convert_to_tensor(v) for v in generator.non_trainable_variables]

    def output(weights):
        x_hat, _ = generator.stateless_call(weights, non_trainable, z, training=True)
        return x_hat

    def log_prob(weights):
        log_prior = 0.0
        if prior_sigma is not None:
            log_prior = -sum(tf.reduce_sum(tf.square(w)) for w in weights) / (2 * prior_sigma**2)
        return tf.cast(log_likelihood_fn(output(weights)), weights[0].dtype) + log_prior

    def per_chain(fn, states):
        return tf.stack([fn([s[c] for s in states]) for c in range(num_chains)])

    def target_log_prob(*states):
        return per_chain(log_prob, states)

    kernel_class = {"mala": tfp.mcmc.MetropolisAdjustedLangevinAlgorithm,
                    "ula": tfp.mcmc.UncalibratedLangevin}[kernel]
    transition = kernel_class(target_log_prob, step_size=step_size)

    def trace(states, results):
        outputs = per_chain(lambda w: output(w)[0], states)
        return (outputs, results.is_accepted) if kernel == "mala" else (outputs,)

    @tf.function(autograph=False)
    def run(state):
        return tfp.mcmc.sample_chain(
            num_results=num_results, current_state=state, kernel=transition,
            num_burnin_steps=num_burnin_steps, num_steps_between_results=thin - 1,
            trace_fn=trace, seed=tf.constant([seed, num_chains], tf.int32))

    with warnings.catch_warnings():  # ULA is uncalibrated by choice; TFP warns about it
        warnings.filterwarnings("ignore", message=".*not calibrated")
        _, traced = run(initial_state)
    samples = traced[0].numpy()
    return McmcResult(
        mean=samples.mean(axis=(0, 1)), std=samples.std(axis=(0, 1)), samples=samples,
        accept_rate=float(np.mean(traced[1].numpy())) if kernel == "mala" else None,
        diagnostics=chain_diagnostics(samples))


def _check_arguments(generator, kernel, step_size, num_results, num_burnin_steps, num_chains,
                     thin, prior_sigma, seed, init):
    if not isinstance(generator, keras.Model) or not generator.built:
        raise TfdipError("generator must be a built keras.Model; call it once on z first")
    if not generator.trainable_variables:
        raise TfdipError("the generator has no trainable weights to sample")
    if kernel not in KERNELS:
        raise TfdipError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if init not in INITS:
        raise TfdipError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if not step_size > 0:
        raise TfdipError(f"step_size must be > 0, got {step_size!r}")
    for name, value, low in (("num_results", num_results, 1), ("num_chains", num_chains, 1),
                             ("thin", thin, 1), ("num_burnin_steps", num_burnin_steps, 0)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise TfdipError(f"{name} must be an int >= {low}, got {value!r}")
    if prior_sigma is not None and not prior_sigma > 0:
        raise TfdipError(f"prior_sigma must be > 0 or None, got {prior_sigma!r}")
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31:
        raise TfdipError(f"seed must be an int in [0, 2^31), got {seed!r}")


def _initial_state(generator, z, num_chains, seed, init):
    """Initial weights of every chain, stacked on a leading chain axis (one tensor per weight)."""
    if init == "current":
        chains = [[tf.convert_to_tensor(v) for v in generator.trainable_variables]] * num_chains
    else:
        chains = [_reinitialised_weights(generator, z, seed, chain) for chain in range(num_chains)]
        if num_chains > 1 and all(np.array_equal(a, b) for a, b in zip(chains[0], chains[1])):
            raise TfdipError("re-initialising the generator gives identical weights for every "
                             "chain (its initialisers ignore seeds); use init='current' or "
                             "num_chains=1")
    return [tf.stack(weights) for weights in zip(*chains)]


def _reinitialised_weights(generator, z, seed, chain):
    """Trainable weights of a copy of ``generator`` whose initialiser seeds are replaced by
    seeds drawn from ``(seed, chain)`` (one per initialiser, so layers stay independent)."""
    config = copy.deepcopy(keras.saving.serialize_keras_object(generator))
    seeds = iter(np.random.SeedSequence([seed, chain]).generate_state(_count_seeds(config)))
    _reseed(config, seeds)
    clone = keras.saving.deserialize_keras_object(config)
    clone(z, training=True)
    weights = [tf.convert_to_tensor(v) for v in clone.trainable_variables]
    if [w.shape for w in weights] != [v.shape for v in generator.trainable_variables]:
        raise TfdipError("the generator could not be re-created from its config with the same "
                         "weights; use init='current'")
    return weights


def _count_seeds(config) -> int:
    if isinstance(config, dict):
        return ("seed" in config) + sum(_count_seeds(v) for v in config.values())
    if isinstance(config, (list, tuple)):
        return sum(_count_seeds(v) for v in config)
    return 0


def _reseed(config, seeds) -> None:
    """Replace, in place and depth-first, every ``"seed"`` entry of a serialised config."""
    if isinstance(config, dict):
        if "seed" in config:
            config["seed"] = int(next(seeds) % 2**31)
        for key, value in config.items():
            if key != "seed":
                _reseed(value, seeds)
    elif isinstance(config, (list, tuple)):
        for value in config:
            _reseed(value, seeds)
