"""One call from a damaged image to a restored one: :func:`restore`.

``restore(observation, physics, method=...)`` builds the generator, the :class:`DeepImagePrior`
model and the recipe's optimizer, runs one or more chains and returns a :class:`Restoration`:
the restored image (EMA for ``sgd``, posterior mean otherwise), the per-pixel posterior std,
the last iterate, sampling diagnostics and timings.
"""
from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfdip import nets
from tfdip.callbacks import CheckpointEvery
from tfdip.dip import DeepImagePrior
from tfdip.errors import TfdipError
from tfdip.inference import RunningMoments, chain_diagnostics, combine
from tfdip.recipes import MCMC_METHODS, OPTIMIZER_METHODS, make_recipe
from tfdip.resources import check_memory


@dataclasses.dataclass
class Restoration:
    """The outcome of :func:`restore`. Arrays are (H, W, C) float32 in [0, 1]."""

    image: np.ndarray
    last: np.ndarray
    ema: np.ndarray | None
    std: np.ndarray | None
    samples: int
    diagnostics: dict | None
    method: str
    iterations: int
    seed: int
    seconds: float
    seconds_per_iteration: float
    rollbacks: int
    history: list
    models: list

    @property
    def std_channel_mean(self):
        """The std map averaged over colour channels, (H, W), for display."""
        return None if self.std is None else self.std.mean(axis=-1)


class StepTimer(keras.callbacks.Callback):
    """Wall time per training step, excluding the first step (which traces the graph)."""

    def __init__(self):
        super().__init__()
        self.first_end = None
        self.last_end = None
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.first_end is None:
            self.first_end = now
        else:
            self.steps += 1
        self.last_end = now

    @property
    def seconds_per_step(self) -> float:
        if not self.steps:
            return float("nan")
        return (self.last_end - self.first_end) / self.steps


def build_generator(net, output_channels: int, net_options=None, seed: int = 0):
    """The generator for ``net`` (a registry name or a spec) with ``output_channels`` outputs.
    ``seed`` seeds the weight initialisation."""
    keras.utils.set_random_seed(seed)
    if isinstance(net, str):
        spec = nets.spec_for(net, **{"output_channels": output_channels, **(net_options or {})})
    else:
        spec = dataclasses.replace(net, output_channels=output_channels)
    return spec, spec.build()


def make_dip(observation, physics, recipe, *, net="skip", net_options=None, reference=None,
             seed=0, chain=0, check_resources=True) -> DeepImagePrior:
    """A :class:`DeepImagePrior` for chain ``chain`` of the run seeded ``seed`` with ``recipe``
    (see :mod:`tfdip.recipes`), compiled with the recipe's optimizer for the optimizer methods.

    Chain ``k``'s randomness (weight init, input z, jitter, sampler noise, traced pixels) is a
    function of ``(seed, k)`` alone, so a chain can run anywhere and be pooled with the others."""
    observation = np.asarray(observation, np.float32)
    chain_seed = _chain_seed(seed, chain)
    spec, generator = build_generator(net, observation.shape[-1], net_options, chain_seed)
    dip = DeepImagePrior(
        generator, physics, observation, size_multiple=spec.size_multiple, min_size=spec.min_size,
        input_noise_std=recipe.input_noise_std, likelihood=recipe.likelihood,
        likelihood_sigma=recipe.likelihood_sigma, ema_decay=recipe.ema_decay,
        rollback_db=recipe.rollback_db, reference=reference, burn_in=recipe.burn_in,
        thin=recipe.thin, max_samples=_expected_samples(recipe), seed=chain_seed)
    if check_resources:
        check_memory(generator, dip.z.shape, dip.image_shape)
    if recipe.method in OPTIMIZER_METHODS:
        dip.compile(optimizer=recipe.optimizer(seed=chain_seed))
    return dip


def _chain_seed(seed: int, chain: int) -> int:
    """The seed of chain ``chain`` of a run seeded ``seed``."""
    if chain < 0:
        raise TfdipError(f"the chain index must be >= 0, got {chain}")
    return seed + chain


def _expected_samples(recipe) -> int:
    if recipe.burn_in is None:
        return 1
    return (recipe.iterations - recipe.burn_in + recipe.thin - 1) // recipe.thin


def restore(observation, physics, *, method="psgld", iterations=None, learning_rate=None,
            net="skip", net_options=None, reference=None, seed=0, burn_in=None, thin=None,
            chains=1, input_noise_std=None, log_every=None, callbacks=None, verbose=0,
            checkpoint_dir=None, checkpoint_every=None, resume=False,
            check_resources=True) -> Restoration:
    """Restore ``observation`` (h, w, C) degraded by ``physics`` with ``method``.

    ``chains`` independent runs (chain ``k`` of :func:`run_chain`, seeded by ``(seed, k)``) are
    pooled by :func:`pool_chains`: their posterior moments are combined (Chan et al.) and their
    traces give R-hat. ``callbacks`` are Keras callbacks (or a function ``chain -> list of
    callbacks``) passed to every chain's ``fit``.

    With ``checkpoint_dir``, each chain saves its whole state every ``checkpoint_every`` steps
    (into ``checkpoint_dir/chain<k>``); ``resume=True`` continues from the newest checkpoints, and
    gives the same result as an uninterrupted run with the same seed.
    """
    if chains < 1:
        raise TfdipError(f"chains must be at least 1, got {chains}")
    recipe = make_recipe(method, physics.name, iterations=iterations, learning_rate=learning_rate,
                         burn_in=burn_in, thin=thin, sigma=physics.sigma,
                         input_noise_std=input_noise_std)
    if chains > 1 and not recipe.is_bayesian:
        raise TfdipError(f"several chains need a sampling method (paper, sgld, psgld, mala, ula), "
                         f"not {method}")
    if method in MCMC_METHODS:
        from tfdip.mcmc_restore import restore_mcmc

        return restore_mcmc(observation, physics, recipe, net=net, net_options=net_options,
                            seed=seed, chains=chains)
    start = time.perf_counter()
    models, results = [], []
    for chain in range(chains):
        dip, result = _train_chain(
            observation, physics, recipe, chain=chain, seed=seed, net=net,
            net_options=net_options, reference=reference, log_every=log_every,
            callbacks=callbacks(chain) if callable(callbacks) else list(callbacks or []),
            verbose=verbose, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
            resume=resume, check_resources=check_resources)
        models.append(dip)
        results.append(result)
    return pool_chains(results, recipe, seed=seed, seconds=time.perf_counter() - start,
                       models=models)


@dataclasses.dataclass
class ChainResult:
    """What one chain of a run leaves behind, as NumPy arrays: picklable, so a chain can run in
    another process or on another machine and be pooled with the others by :func:`pool_chains`.

    Attributes:
        chain: the chain's index ``k`` (its randomness is a function of the run's seed and k).
        count, mean, m2: the chain's posterior moments (Welford): number of samples, their mean
            and sum of squared deviations, (H, W, C) float32 (0 and zeros without sampling).
        trace: (n, P) values of the P traced output entries in each of the chain's first
            n = min(count, trace capacity) samples, for ESS / R-hat.
        last: (H, W, C) the output at the final weights; ema: (H, W, C) output moving average,
            or None when the recipe keeps none.
        history: the chain's Keras ``History.history`` (logs every ``log_every`` steps).
        seconds: wall time of the chain; seconds_per_iteration: per step, without the first
            (tracing) step; rollbacks: steps rolled back to the last good weights.
    """

    chain: int
    count: int
    mean: np.ndarray
    m2: np.ndarray
    trace: np.ndarray
    last: np.ndarray
    ema: np.ndarray | None
    history: dict
    seconds: float
    seconds_per_iteration: float
    rollbacks: int


def run_chain(observation, physics, recipe, *, chain=0, seed=0, net="skip", net_options=None,
              reference=None, log_every=None, callbacks=None, verbose=0, checkpoint_dir=None,
              checkpoint_every=None, resume=False, check_resources=True) -> ChainResult:
    """Run chain ``chain`` of the run seeded ``seed`` alone: ``recipe`` (an optimizer method, see
    :func:`tfdip.recipes.make_recipe`) on ``observation`` degraded by ``physics``.

    ``restore(..., chains=K)`` is ``pool_chains([run_chain(..., chain=k) for k in range(K)])``, so
    the chains of one image can run in separate processes or machines and be pooled afterwards
    with the same result (given the same TensorFlow thread count, see :func:`pool_chains`).
    Checkpoints go to ``checkpoint_dir/chain<k>`` (see :func:`restore`).
    """
    return _train_chain(observation, physics, recipe, chain=chain, seed=seed, net=net,
                        net_options=net_options, reference=reference, log_every=log_every,
                        callbacks=callbacks, verbose=verbose, checkpoint_dir=checkpoint_dir,
                        checkpoint_every=checkpoint_every, resume=resume,
                        check_resources=check_resources)[1]


def _train_chain(observation, physics, recipe, *, chain, seed, net, net_options, reference,
                 log_every, callbacks, verbose, checkpoint_dir, checkpoint_every, resume,
                 check_resources):
    """(the trained DeepImagePrior, its ChainResult) of :func:`run_chain`."""
    if recipe.method not in OPTIMIZER_METHODS:
        raise TfdipError(f"run_chain runs the optimizer methods ({', '.join(OPTIMIZER_METHODS)}); "
                         f"{recipe.method} samples all its chains at once: use restore()")
    log_every, checkpoint_every = _schedule(recipe, log_every, checkpoint_dir, checkpoint_every,
                                            resume)
    start = time.perf_counter()
    dip = make_dip(observation, physics, recipe, net=net, net_options=net_options,
                   reference=reference, seed=seed, chain=chain, check_resources=check_resources)
    timer = StepTimer()
    extra = list(callbacks or [])
    if checkpoint_dir is not None:
        folder = os.path.join(checkpoint_dir, f"chain{chain}")
        if resume:
            _resume(dip, folder)
        extra.append(CheckpointEvery(folder, checkpoint_every))
    remaining = recipe.iterations - int(dip.step.numpy())
    history = dip.fit(remaining, log_every=log_every, callbacks=[timer, *extra],
                      verbose=verbose) if remaining > 0 else _no_history()
    moments = dip.moments
    count = int(moments.count.numpy())
    return dip, ChainResult(
        chain=chain, count=count, mean=moments.mean.numpy(), m2=moments.m2.numpy(),
        trace=dip.trace.numpy()[:min(count, int(dip.trace.shape[0]))],
        last=dip.restored("last"),
        ema=dip.restored("ema") if recipe.ema_decay is not None else None,
        history=history.history, seconds=time.perf_counter() - start,
        seconds_per_iteration=timer.seconds_per_step, rollbacks=int(dip.rollbacks.numpy()))


def _schedule(recipe, log_every, checkpoint_dir, checkpoint_every, resume):
    """(log_every, checkpoint_every) of a chain: logs every ``log_every`` steps (default: the
    largest divisor of the run's length up to 100); checkpoints every ``checkpoint_every`` steps
    (default: about a tenth of the run), a multiple of ``log_every``."""
    log_every = log_every or _log_every(recipe.iterations)
    if checkpoint_dir is None:
        if resume:
            raise TfdipError("resume needs the checkpoint folder of the run")
        return log_every, None
    checkpoint_every = checkpoint_every or log_every * max(1, recipe.iterations // 10 // log_every)
    if checkpoint_every % log_every:
        raise TfdipError(f"checkpoint_every ({checkpoint_every}) must be a multiple of "
                         f"log_every ({log_every})")
    return log_every, checkpoint_every


def pool_chains(results, recipe, *, seed, seconds=None, models=()) -> Restoration:
    """One :class:`Restoration` from the :class:`ChainResult` s of a run's chains, in any order.

    The chains' moments are merged in chain order with Chan et al.'s pairwise update
    (:func:`tfdip.inference.combine`): the pooled mean and population std of all their samples.
    R-hat and ESS come from the chains' traces, cut to the shortest. ``last`` and ``ema`` are
    chain 0's (the first chain given). ``seconds`` defaults to the chains' summed time; ``models``
    are the chains' :class:`DeepImagePrior` s when they ran in this process (else empty).

    Chains run elsewhere reproduce the in-process ones when TensorFlow has the same number of
    threads there: its float sums depend on how many threads share them, and Langevin dynamics
    amplify such differences within tens of steps (the chains stay statistically equivalent).
    """
    results = sorted(results, key=lambda result: result.chain)
    indices = [result.chain for result in results]
    if not results or len(set(indices)) != len(indices):
        raise TfdipError(f"pool_chains needs the results of distinct chains, got chains {indices}")
    first = results[0]
    std, samples, diagnostics = None, 0, None
    if recipe.is_bayesian:
        moments = [RunningMoments.from_arrays(r.count, r.mean, r.m2) for r in results]
        pooled = combine(moments) if len(moments) > 1 else moments[0]
        samples = int(pooled.count.numpy())
        if samples == 0:
            raise TfdipError("no posterior sample was collected; lower --burn-in or --thin")
        image = pooled.mean.numpy()
        std = pooled.std.numpy()
        length = min(len(r.trace) for r in results)
        diagnostics = chain_diagnostics(np.stack([r.trace[:length] for r in results], axis=1))
    else:
        image = first.ema if first.ema is not None else first.last
    if seconds is None:
        seconds = sum(r.seconds for r in results)
    return Restoration(
        image=np.clip(image, 0.0, 1.0), last=first.last, ema=first.ema, std=std, samples=samples,
        diagnostics=diagnostics, method=recipe.method, iterations=recipe.iterations, seed=seed,
        seconds=seconds,
        seconds_per_iteration=float(np.nanmean([r.seconds_per_iteration for r in results])),
        rollbacks=sum(r.rollbacks for r in results), history=[r.history for r in results],
        models=list(models))


def _resume(dip, folder: str) -> None:
    """Load the newest checkpoint of ``folder`` into ``dip`` (a fresh model of the same run)."""
    latest = tf.train.latest_checkpoint(folder)
    if latest is None:
        raise TfdipError(f"no checkpoint to resume from in {folder}; run without resume first")
    dip._build_optimizer()
    try:
        dip.checkpoint().restore(latest).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise TfdipError(f"the checkpoint in {folder} does not belong to this run "
                         f"(other image, net or method): {str(error).splitlines()[0]}")


def _no_history():
    return keras.callbacks.History()


def _log_every(iterations: int) -> int:
    """The largest divisor of ``iterations`` that is at most 100."""
    return max(d for d in range(1, min(iterations, 100) + 1) if iterations % d == 0)
