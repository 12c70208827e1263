"""One call from a damaged image to a restored one: :func:`restore`.

``restore(observation, physics, method=...)`` builds the generator, the :class:`DeepImagePrior`
model and the recipe's optimizer, runs one or more chains and returns a :class:`Restoration`:
the restored image (EMA for ``sgd``, posterior mean otherwise), the per-pixel posterior std,
the last iterate, sampling diagnostics and timings.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from tfdip.chains import build_generator, make_dip, net_spec, run_chain  # noqa: F401 (API)
from tfdip.checkpoints import RunCheckpoints, run_settings
from tfdip.errors import TfdipError
from tfdip.inference import chain_diagnostics, combine
from tfdip.mcmc_restore import run_mcmc_chain
from tfdip.recipes import MCMC_METHODS, make_recipe
from tfdip.seeds import chain_seeds


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


def restore(observation, physics, *, method="psgld", iterations=None, learning_rate=None,
            net="skip", net_options=None, reference=None, seed=0, burn_in=None, thin=None,
            chains=1, input_noise_std=None, log_every=None, callbacks=None, verbose=0,
            checkpoint_dir=None, checkpoint_every=None, resume=False,
            check_resources=True, noise="fixed") -> Restoration:
    """Restore ``observation`` (h, w, C) degraded by ``physics`` with ``method``.

    ``chains`` independent chains are pooled: their posterior moments are combined (Chan et al.)
    and their traces give R-hat. Chain k's random streams (weights, input, jitter, sampler noise,
    traced pixels) come from ``SeedSequence(seed, spawn_key=(k, ...))`` (:mod:`tfdip.seeds`), so
    chain k is the same whatever the number of chains. ``callbacks`` are Keras callbacks (or a
    function ``chain -> list of callbacks``) passed to every chain's ``fit``; ``log_every`` is
    their epoch length (default ``min(iterations, 100)`` steps).

    With ``checkpoint_dir``, each chain saves its whole state atomically every
    ``checkpoint_every`` steps (any interval >= 1; default a tenth of the run) and when it ends
    (:mod:`tfdip.checkpoints`). ``resume=True`` checks that the folder holds this run (same
    image, task, method, recipe, net and seed; a one-line error names what differs), then
    continues every chain from its newest checkpoint, starts the chains that had not saved yet,
    and gives the same result as an uninterrupted run. With nothing saved yet it starts from the
    beginning and warns (:class:`tfdip.errors.TfdipWarning`).

    ``noise="sampled"`` (``sgld`` and ``psgld`` only) samples the likelihood's noise level with the
    weights instead of fixing it (:mod:`tfdip.inference.noise`).

    The MCMC methods (``mala``, ``ula``) run each chain as one TFP graph: they refuse
    ``callbacks``, ``log_every``, ``input_noise_std`` and the checkpoint options.
    """
    if isinstance(chains, bool) or not isinstance(chains, (int, np.integer)) or chains < 1:
        raise TfdipError(f"chains must be a whole number >= 1, got {chains!r}")
    chain_seeds(seed)  # a bad seed fails here, before any file is written
    recipe = make_recipe(method, physics.name, iterations=iterations, learning_rate=learning_rate,
                         burn_in=burn_in, thin=thin, sigma=physics.sigma,
                         input_noise_std=input_noise_std, noise=noise)
    if chains > 1 and not recipe.is_bayesian:
        raise TfdipError(f"several chains need a sampling method (paper, sgld, psgld, mala, ula), "
                         f"not {method}")
    observation = np.asarray(observation, np.float32)
    run = dict(net=net, net_options=net_options, seed=seed, check_resources=check_resources)
    start = time.perf_counter()
    if method in MCMC_METHODS:
        _refuse_for_mcmc(method, callbacks=callbacks, log_every=log_every,
                         input_noise_std=input_noise_std, checkpoint_dir=checkpoint_dir,
                         checkpoint_every=checkpoint_every, resume=resume)
        runs = [run_mcmc_chain(observation, physics, recipe, chain=chain, **run)
                for chain in range(chains)]
        return _summarise_mcmc(runs, recipe, seed, time.perf_counter() - start)
    if checkpoint_every is not None:
        if checkpoint_dir is None:
            raise TfdipError("checkpoint_every needs checkpoint_dir, the folder to save into")
        if isinstance(checkpoint_every, bool) or not isinstance(
                checkpoint_every, (int, np.integer)) or checkpoint_every < 1:
            raise TfdipError(f"checkpoint_every must be a whole number of steps >= 1, got "
                             f"{checkpoint_every!r}")
    else:
        checkpoint_every = max(1, recipe.iterations // 10)
    checkpoints = _open_checkpoints(observation, physics, recipe, net, net_options, seed,
                                    checkpoint_dir, resume)
    runs = []
    for chain in range(chains):
        extra = callbacks(chain) if callable(callbacks) else list(callbacks or [])
        runs.append(run_chain(observation, physics, recipe, chain=chain, reference=reference,
                              callbacks=extra, log_every=log_every, checkpoints=checkpoints,
                              checkpoint_every=checkpoint_every, verbose=verbose, **run))
    return _summarise(runs, recipe, seed, time.perf_counter() - start)


def _refuse_for_mcmc(method, **options) -> None:
    given = [name for name, value in options.items() if value]
    if given:
        raise TfdipError(f"{', '.join(given)} work with the optimizer methods (sgd, paper, sgld, "
                         f"psgld), not with method {method}, which runs each chain as one graph")


def _open_checkpoints(observation, physics, recipe, net, net_options, seed, checkpoint_dir,
                      resume):
    """The run's opened :class:`RunCheckpoints`, or None without ``checkpoint_dir``."""
    if checkpoint_dir is None:
        if resume:
            raise TfdipError("resume needs the checkpoint folder of the run (checkpoint_dir)")
        return None
    spec = net_spec(net, observation.shape[-1], net_options)
    checkpoints = RunCheckpoints(checkpoint_dir, run_settings(observation, physics, recipe, spec,
                                                              seed))
    checkpoints.open(resume)
    return checkpoints


def _summarise(runs, recipe, seed, seconds) -> Restoration:
    models = [run.model for run in runs]
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
    per_step = float(np.nanmean([run.timer.seconds_per_step for run in runs]))
    return Restoration(
        image=np.clip(image, 0.0, 1.0), last=np.clip(last, 0.0, 1.0),
        ema=None if ema is None else np.clip(ema, 0.0, 1.0), std=std, samples=samples,
        diagnostics=diagnostics, method=recipe.method, iterations=recipe.iterations, seed=seed,
        seconds=seconds, seconds_per_iteration=per_step,
        rollbacks=int(sum(int(m.rollbacks.numpy()) for m in models)),
        history=[run.history for run in runs], models=models)


def _summarise_mcmc(runs, recipe, seed, seconds) -> Restoration:
    samples = np.stack([run.samples for run in runs], axis=1)  # (results, chains, H, W, C)
    diagnostics = chain_diagnostics(samples)
    rates = [run.accept_rate for run in runs if run.accept_rate is not None]
    if rates:
        diagnostics["accept_rate"] = float(np.mean(rates))
    return Restoration(
        image=samples.mean(axis=(0, 1)).clip(0.0, 1.0), last=samples[-1, 0].clip(0.0, 1.0),
        ema=None, std=samples.std(axis=(0, 1)),
        samples=int(samples.shape[0] * samples.shape[1]), diagnostics=diagnostics,
        method=recipe.method, iterations=recipe.iterations, seed=seed, seconds=seconds,
        seconds_per_iteration=seconds / (recipe.iterations * len(runs)), rollbacks=0, history=[],
        models=[])


def _traces(models) -> np.ndarray:
    """Traced pixel values of every chain as (num_samples, num_chains, num_pixels)."""
    counts = [min(int(m.moments.count.numpy()), int(m.trace.shape[0])) for m in models]
    n = min(counts)
    return np.stack([m.trace.numpy()[:n] for m in models], axis=1)
