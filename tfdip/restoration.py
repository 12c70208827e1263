"""One call from a damaged image to a restored one: :func:`restore`.

``restore(observation, physics, method=...)`` builds the generator, the :class:`DeepImagePrior`
model and the recipe's optimizer, runs one or more chains and returns a :class:`Restoration`:
the restored image (EMA for ``sgd``, posterior mean otherwise), the per-pixel posterior std,
the last iterate, sampling diagnostics and timings.
"""
from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from tfdip.chains import (ChainResult, build_generator, make_dip, net_spec,  # noqa: F401 (API)
                          run_chain)
from tfdip.checkpoints import RunCheckpoints, run_settings
from tfdip.errors import TfdipError, TfdipWarning
from tfdip.inference import RunningMoments, chain_diagnostics, combine
from tfdip.mcmc_restore import run_mcmc_chain
from tfdip.precision import check_jit_compile, check_precision
from tfdip.recipes import MCMC_METHODS, make_recipe, refuse_for_mcmc
from tfdip.seeds import chain_seeds


@dataclasses.dataclass
class Restoration:
    """The outcome of :func:`restore`. Arrays are (H, W, C) float32 in [0, 1].

    ``iterations`` is the steps run (the longest chain's, with an automatic budget or ES-WMV,
    which may stop before their cap); ``budget``
    (automatic budget only) says per chain when burn-in ended and why sampling stopped, and the
    rules and cap it ran under (:func:`pool_chains`)."""

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
    budget: dict | None = None
    early_stop: dict | None = None

    @property
    def std_channel_mean(self):
        """The std map averaged over colour channels, (H, W), for display."""
        return None if self.std is None else self.std.mean(axis=-1)


def restore(observation, physics, *, method="psgld", iterations=None, learning_rate=None,
            net="skip", net_options=None, reference=None, seed=0, burn_in=None, thin=None,
            chains=1, input_noise_std=None, log_every=None, callbacks=None, verbose=0,
            checkpoint_dir=None, checkpoint_every=None, resume=False,
            check_resources=True, noise="fixed", max_iterations=None,
            budget=None, stop=None, schedule=None, precision="float32",
            jit_compile=False) -> Restoration:
    """Restore ``observation`` (h, w, C) degraded by ``physics`` with ``method``.

    ``chains`` independent chains (chain ``k`` as :func:`restore_chain` runs it alone) are
    pooled by :func:`pool_chains`: their posterior moments are combined (Chan et al.) and their
    traces give R-hat. Chain k's random streams (weights, input, jitter, sampler noise,
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

    ``iterations="auto"`` (the default of ``sgld`` and ``psgld``) reads every chain's budget from
    the chain itself (:mod:`tfdip.stopping`): burn-in ends when its loss stops drifting and it
    stops when the Monte Carlo error of its posterior mean is below a tenth of the posterior std,
    or at ``max_iterations`` steps (a :class:`tfdip.errors.TfdipWarning` says so); ``budget``
    (a :class:`tfdip.inference.budget.BudgetRules`) changes the rules. Checkpoints hold the
    decisions, so a resumed automatic run equals the uninterrupted one.

    ``stop="wmv"`` (``sgd`` only) stops by ES-WMV (:mod:`tfdip.inference.wmv`, Wang et al. 2023)
    and returns the iterate of smallest windowed variance (``early_stop`` records its step).

    ``schedule`` (``sgld``, ``psgld``): ``"constant"`` step size, ``"cyclical"`` (cSGLD's cosine
    cycles) or ``"decay"`` (a decreasing step); default (None) ``"decay"`` for psgld on noise-free
    observations, else ``"constant"`` (:mod:`tfdip.recipes`).

    ``noise="sampled"`` (``sgld`` and ``psgld`` only) samples the likelihood's noise level with the
    weights instead of fixing it (:mod:`tfdip.inference.noise`).

    ``precision`` (``"float32"``, ``"bfloat16"`` or ``"float16"``) is the generator's compute
    precision (:mod:`tfdip.precision`: weights, loss and sampler state stay float32; float16 scales
    the loss). ``jit_compile=True`` compiles the training steps with XLA (default False: on this
    project's CPUs XLA was slower, ``benchmarks/results/speed.md``; Keras' "auto" is never used).

    The MCMC methods (``mala``, ``ula``) run each chain as one TFP graph: they refuse
    ``callbacks``, ``log_every``, ``input_noise_std``, the checkpoint options, a precision other
    than float32 and ``jit_compile``.
    """
    if isinstance(chains, bool) or not isinstance(chains, (int, np.integer)) or chains < 1:
        raise TfdipError(f"chains must be a whole number >= 1, got {chains!r}")
    chain_seeds(seed)  # a bad seed fails here, before any file is written
    check_precision(precision)
    check_jit_compile(jit_compile)
    recipe = make_recipe(method, physics.name, iterations=iterations, learning_rate=learning_rate,
                         burn_in=burn_in, thin=thin, sigma=physics.sigma,
                         input_noise_std=input_noise_std, noise=noise,
                         max_iterations=max_iterations, budget=budget, stop=stop,
                         schedule=schedule)
    if chains > 1 and not recipe.is_bayesian:
        raise TfdipError(f"several chains need a sampling method (paper, sgld, psgld, mala, ula), "
                         f"not {method}")
    observation = np.asarray(observation, np.float32)
    run = dict(net=net, net_options=net_options, seed=seed, check_resources=check_resources)
    if method in MCMC_METHODS:
        refuse_for_mcmc(method, dict(callbacks=callbacks, log_every=log_every,
                                     input_noise_std=input_noise_std, checkpoint_dir=checkpoint_dir,
                                     checkpoint_every=checkpoint_every, resume=resume,
                                     precision=precision != "float32", jit_compile=jit_compile))
        return restore_mcmc(observation, physics, recipe, chains=chains, **run)
    start = time.perf_counter()
    checkpoint_every = _checkpoint_interval(recipe, checkpoint_dir, checkpoint_every)
    checkpoints = _open_checkpoints(observation, physics, recipe, net, net_options, seed,
                                    checkpoint_dir, resume)
    runs = []
    for chain in range(chains):
        extra = callbacks(chain) if callable(callbacks) else list(callbacks or [])
        runs.append(run_chain(observation, physics, recipe, chain=chain, reference=reference,
                              callbacks=extra, log_every=log_every, checkpoints=checkpoints,
                              checkpoint_every=checkpoint_every, verbose=verbose,
                              precision=precision, jit_compile=jit_compile, **run))
    return pool_chains([run.result() for run in runs], recipe, seed=seed,
                       seconds=time.perf_counter() - start, models=[run.model for run in runs])


def restore_chain(observation, physics, recipe, *, chain=0, seed=0, net="skip", net_options=None,
                  reference=None, callbacks=(), log_every=None, checkpoint_dir=None,
                  checkpoint_every=None, resume=False, check_resources=True,
                  verbose=0, precision="float32", jit_compile=False) -> ChainResult:
    """Run chain ``chain`` of the run seeded with ``seed`` alone and return it as a picklable
    :class:`ChainResult`; ``recipe`` is an optimizer method's (:func:`tfdip.recipes.make_recipe`).

    ``restore(..., chains=K)`` is ``pool_chains([restore_chain(..., chain=k) for k in range(K)])``,
    so the chains of one image can run in separate processes or machines and be pooled afterwards
    with the same result (given the same TensorFlow thread count, see :func:`pool_chains`).
    ``checkpoint_dir``, ``checkpoint_every`` and ``resume`` are :func:`restore`'s: the folder holds
    the run (its settings in ``run.json``, chain k's checkpoints in ``chain<k>``); with
    ``resume=True`` the chain continues from its newest checkpoint, or starts when it has none.
    Several chains of one run may run at the same time on one folder with ``resume=True``.
    ``precision`` and ``jit_compile`` are :func:`restore`'s.
    """
    if recipe.method in MCMC_METHODS:
        raise TfdipError(f"restore_chain runs the optimizer methods (sgd, paper, sgld, psgld); "
                         f"{recipe.method} runs as one graph per chain: use restore()")
    chain_seeds(seed, chain)  # a bad seed or chain index fails here, before any file is written
    observation = np.asarray(observation, np.float32)
    checkpoint_every = _checkpoint_interval(recipe, checkpoint_dir, checkpoint_every)
    checkpoints = _open_checkpoints(observation, physics, recipe, net, net_options, seed,
                                    checkpoint_dir, resume)
    return run_chain(observation, physics, recipe, chain=chain, seed=seed, net=net,
                     net_options=net_options, reference=reference, callbacks=list(callbacks),
                     log_every=log_every, checkpoints=checkpoints,
                     checkpoint_every=checkpoint_every, check_resources=check_resources,
                     verbose=verbose, precision=check_precision(precision),
                     jit_compile=check_jit_compile(jit_compile)).result()


def restore_mcmc(observation, physics, recipe, *, chains=1, seed=0, net="skip", net_options=None,
                 check_resources=True) -> Restoration:
    """Chains ``0 .. chains-1`` of a TFP MCMC method (``recipe.method`` in {"mala", "ula"}),
    each sampled as one graph (:func:`tfdip.mcmc_restore.run_mcmc_chain`), pooled."""
    start = time.perf_counter()
    runs = [run_mcmc_chain(observation, physics, recipe, chain=chain, seed=seed, net=net,
                           net_options=net_options, check_resources=check_resources)
            for chain in range(chains)]
    return _summarise_mcmc(runs, recipe, seed, time.perf_counter() - start)


def _checkpoint_interval(recipe, checkpoint_dir, checkpoint_every):
    """Steps between checkpoints: ``checkpoint_every`` (checked), else a tenth of the run."""
    if checkpoint_every is None:
        return max(1, recipe.iterations // 10)
    if checkpoint_dir is None:
        raise TfdipError("checkpoint_every needs checkpoint_dir, the folder to save into")
    if isinstance(checkpoint_every, bool) or not isinstance(
            checkpoint_every, (int, np.integer)) or checkpoint_every < 1:
        raise TfdipError(f"checkpoint_every must be a whole number of steps >= 1, got "
                         f"{checkpoint_every!r}")
    return int(checkpoint_every)


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


def pool_chains(results, recipe, *, seed, seconds=None, models=()) -> Restoration:
    """One :class:`Restoration` from the :class:`ChainResult` s of a run's chains, in any order.

    The chains' moments are merged in chain order with Chan et al.'s pairwise update
    (:func:`tfdip.inference.combine`): the pooled mean and population std of all their samples.
    R-hat and ESS come from the chains' traces, cut to the shortest. ``last`` and ``ema`` are
    those of the lowest-numbered chain. ``seconds`` defaults to the chains' summed time;
    ``models`` are the chains' :class:`DeepImagePrior` s when they ran in this process (else
    empty).

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
        moments = [RunningMoments.from_arrays(r.count, r.mean, r.m2, dtype=r.mean.dtype.name)
                   for r in results]
        pooled = combine(moments) if len(moments) > 1 else moments[0]
        samples = int(pooled.count.numpy())
        if samples == 0:
            if recipe.is_auto:
                raise TfdipError(f"the loss was still drifting after {recipe.iterations} steps, so "
                                 f"burn-in never ended and no posterior sample was collected; "
                                 f"raise --max-iterations")
            raise TfdipError("no posterior sample was collected; lower --burn-in or --thin")
        image = pooled.mean.numpy()
        std = pooled.std.numpy()
        diagnostics = chain_diagnostics([r.trace for r in results],
                                        counts=[r.count for r in results],
                                        pixel_index=first.trace_index, image_shape=image.shape)
    elif first.early_stop_image is not None:
        image = first.early_stop_image
    else:
        image = first.ema if first.ema is not None else first.last
    if seconds is None:
        seconds = sum(r.seconds for r in results)
    budget = _budget_summary(results, recipe, diagnostics) if recipe.is_auto else None
    timed = [r.seconds_per_iteration for r in results if np.isfinite(r.seconds_per_iteration)]
    return Restoration(
        image=np.clip(image, 0.0, 1.0), last=np.clip(first.last, 0.0, 1.0),
        ema=None if first.ema is None else np.clip(first.ema, 0.0, 1.0), std=std,
        samples=samples, diagnostics=diagnostics, method=recipe.method,
        iterations=(max(r.steps for r in results) if recipe.is_auto or recipe.stop
                    else recipe.iterations),
        seed=seed, seconds=seconds,
        seconds_per_iteration=float(np.mean(timed)) if timed else float("nan"),  # nan: no step ran
        rollbacks=int(sum(r.rollbacks for r in results)), history=[r.history for r in results],
        models=list(models), budget=budget, early_stop=first.early_stop)


def _budget_summary(results, recipe, diagnostics) -> dict:
    """The automatic budget's record of a run: rules, cap and each chain's decisions; warns
    (:class:`TfdipWarning`) when a chain stopped at the cap before the rule held."""
    capped = [r.chain for r in results if r.budget["reason"] == "cap reached"]
    if capped:
        ratio, cost = diagnostics.get("mc_error_ratio"), diagnostics.get("mc_error_cost_db")
        # The cost is None (infinite) while some traced pixel has no effective sample yet.
        cost = "" if cost is None else f", costing about {cost:.2f} dB"
        now = "" if ratio is None else f" (it is {ratio:.2f}{cost})"
        warnings.warn(f"chain(s) {', '.join(map(str, capped))} reached the cap of "
                      f"{recipe.iterations} steps before the Monte Carlo error of the mean fell "
                      f"below {recipe.budget.threshold:g} of the posterior std{now}; raise "
                      f"--max-iterations to sample longer", TfdipWarning, stacklevel=3)
    return {"max_iterations": recipe.iterations, "rules": dataclasses.asdict(recipe.budget),
            "chains": [{"chain": r.chain, "steps": r.steps, **r.budget} for r in results]}


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
