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
             seed=0, check_resources=True) -> DeepImagePrior:
    """A :class:`DeepImagePrior` for ``recipe`` (see :mod:`tfdip.recipes`), compiled with the
    recipe's optimizer for the optimizer methods."""
    observation = np.asarray(observation, np.float32)
    spec, generator = build_generator(net, observation.shape[-1], net_options, seed)
    dip = DeepImagePrior(
        generator, physics, observation, size_multiple=spec.size_multiple, min_size=spec.min_size,
        input_noise_std=recipe.input_noise_std, likelihood=recipe.likelihood,
        likelihood_sigma=recipe.likelihood_sigma, ema_decay=recipe.ema_decay,
        rollback_db=recipe.rollback_db, reference=reference, burn_in=recipe.burn_in,
        thin=recipe.thin, max_samples=_expected_samples(recipe), seed=seed,
        noise_prior=recipe.noise_prior)
    if check_resources:
        check_memory(generator, dip.z.shape, dip.image_shape)
    if recipe.method in OPTIMIZER_METHODS:
        dip.compile(optimizer=recipe.optimizer(seed=seed))
    return dip


def _expected_samples(recipe) -> int:
    if recipe.burn_in is None:
        return 1
    return (recipe.iterations - recipe.burn_in + recipe.thin - 1) // recipe.thin


def restore(observation, physics, *, method="psgld", iterations=None, learning_rate=None,
            net="skip", net_options=None, reference=None, seed=0, burn_in=None, thin=None,
            chains=1, input_noise_std=None, log_every=None, callbacks=None, verbose=0,
            checkpoint_dir=None, checkpoint_every=None, resume=False,
            check_resources=True, noise="fixed") -> Restoration:
    """Restore ``observation`` (h, w, C) degraded by ``physics`` with ``method``.

    ``chains`` independent runs (seeds ``seed``, ``seed + 1``, ...) are pooled: their posterior
    moments are combined (Chan et al.) and their traces give R-hat. ``callbacks`` are Keras
    callbacks (or a function ``chain -> list of callbacks``) passed to every chain's ``fit``.

    With ``checkpoint_dir``, each chain saves its whole state every ``checkpoint_every`` steps
    (into ``checkpoint_dir/chain<k>``); ``resume=True`` continues from the newest checkpoints, and
    gives the same result as an uninterrupted run with the same seed.
    """
    if chains < 1:
        raise TfdipError(f"chains must be at least 1, got {chains}")
    recipe = make_recipe(method, physics.name, iterations=iterations, learning_rate=learning_rate,
                         burn_in=burn_in, thin=thin, sigma=physics.sigma,
                         input_noise_std=input_noise_std, noise=noise)
    if chains > 1 and not recipe.is_bayesian:
        raise TfdipError(f"several chains need a sampling method (paper, sgld, psgld, mala, ula), "
                         f"not {method}")
    if method in MCMC_METHODS:
        from tfdip.mcmc_restore import restore_mcmc

        return restore_mcmc(observation, physics, recipe, net=net, net_options=net_options,
                            seed=seed, chains=chains)
    log_every = log_every or _log_every(recipe.iterations)
    if checkpoint_dir is not None:
        checkpoint_every = checkpoint_every or max(log_every, recipe.iterations // 10)
        if checkpoint_every % log_every:
            raise TfdipError(f"checkpoint_every ({checkpoint_every}) must be a multiple of "
                             f"log_every ({log_every})")
    elif resume:
        raise TfdipError("resume needs the checkpoint folder of the run")
    start = time.perf_counter()
    models, histories, timers = [], [], []
    for chain in range(chains):
        dip = make_dip(observation, physics, recipe, net=net, net_options=net_options,
                       reference=reference, seed=seed + chain, check_resources=check_resources)
        timer = StepTimer()
        extra = callbacks(chain) if callable(callbacks) else list(callbacks or [])
        if checkpoint_dir is not None:
            folder = os.path.join(checkpoint_dir, f"chain{chain}")
            if resume:
                _resume(dip, folder)
            extra.append(CheckpointEvery(folder, checkpoint_every))
        remaining = recipe.iterations - int(dip.step.numpy())
        history = dip.fit(remaining, log_every=log_every, callbacks=[timer, *extra],
                          verbose=verbose) if remaining > 0 else _no_history()
        models.append(dip)
        histories.append(history.history)
        timers.append(timer)
    return _summarise(models, recipe, histories, timers, seed, time.perf_counter() - start)


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


def _summarise(models, recipe, histories, timers, seed, seconds) -> Restoration:
    last = models[0].restored("last")
    ema = models[0].restored("ema") if recipe.ema_decay is not None else None
    std, samples, diagnostics = None, 0, None
    if recipe.is_bayesian:
        pooled = combine([m.moments for m in models]) if len(models) > 1 else models[0].moments
        samples = int(pooled.count.numpy())
        if samples == 0:
            raise TfdipError("no posterior sample was collected; lower --burn-in or --thin")
        image = pooled.mean.numpy()
        std = pooled.std.numpy()
        diagnostics = chain_diagnostics(_traces(models))
    else:
        image = ema if ema is not None else last
    per_step = float(np.nanmean([t.seconds_per_step for t in timers]))
    return Restoration(
        image=np.clip(image, 0.0, 1.0), last=last, ema=ema, std=std, samples=samples,
        diagnostics=diagnostics, method=recipe.method, iterations=recipe.iterations, seed=seed,
        seconds=seconds, seconds_per_iteration=per_step,
        rollbacks=int(sum(int(m.rollbacks.numpy()) for m in models)),
        history=histories, models=models)


def _traces(models) -> np.ndarray:
    """Traced pixel values of every chain as (num_samples, num_chains, num_pixels)."""
    counts = [min(int(m.moments.count.numpy()), int(m.trace.shape[0])) for m in models]
    n = min(counts)
    return np.stack([m.trace.numpy()[:n] for m in models], axis=1)
