"""One chain of a restoration: its model, built from (seed, chain), and its checkpointed run.

Chain ``k`` of a run seeded with ``s`` is a pure function of ``(s, k)`` (:mod:`tfdip.seeds`):
:func:`make_dip` seeds the generator's weights, the input z, the jitter, the traced pixels and
the optimizer's noise from their own streams, and :func:`run_chain` runs (or resumes) that chain
alone, so chains can be run in any order, any subset, on any machine.
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from tfdip import nets
from tfdip.callbacks import CheckpointEvery
from tfdip.dip import DeepImagePrior
from tfdip.precision import precision_policy
from tfdip.recipes import OPTIMIZER_METHODS
from tfdip.resources import check_memory
from tfdip.seeds import chain_seeds
from tfdip.stopping import AutoBudget, WmvStop, budget_record, wmv_record

#: Trace rows of a chain whose length is not known in advance (``iterations="auto"``): the trace
#: thins itself when full (:class:`tfdip.dip.DeepImagePrior`).
AUTO_TRACE_ROWS = 1024


class StepTimer(keras.callbacks.Callback):
    """Wall time per training step, without the model's first call (its one step traces the
    function, see :meth:`tfdip.DeepImagePrior.fit`).

    ``marks`` holds ``(step, seconds)`` at the start of every call of the compiled steps and at
    the end of training (``clock`` is ``time.perf_counter``); it hooks the start, not the end, of
    calls, so Keras need not read every call's logs back to the host, and it reads the step
    counter only between calls (``whole_calls``: several steps per call are fine).
    """

    whole_calls = True

    def __init__(self, clock=time.perf_counter):
        super().__init__()
        self.clock = clock
        self.marks = []

    def on_train_batch_begin(self, batch, logs=None):
        self._mark()

    def on_train_end(self, logs=None):
        self._mark()

    def _mark(self):
        self.marks.append((int(self.model.step.numpy()), self.clock()))

    @property
    def steps(self) -> int:
        """Steps timed: those after the first call."""
        return self.marks[-1][0] - self.marks[1][0] if len(self.marks) > 2 else 0

    @property
    def seconds_per_step(self) -> float:
        if not self.steps:
            return float("nan")
        return (self.marks[-1][1] - self.marks[1][1]) / self.steps


def net_spec(net, output_channels: int, net_options=None):
    """The architecture spec of ``net`` (a registry name or a spec) with ``output_channels``."""
    if isinstance(net, str):
        return nets.spec_for(net, **{"output_channels": output_channels, **(net_options or {})})
    return dataclasses.replace(net, output_channels=output_channels)


def build_generator(net, output_channels: int, net_options=None, seed: int = 0,
                    precision: str = "float32"):
    """``(spec, generator)`` for ``net`` with ``output_channels`` outputs, computing in
    ``precision`` (:mod:`tfdip.precision`); ``seed`` (an int in [0, 2^31)) seeds the weight
    initialisation through Keras' global seed (the weights are float32 in every precision)."""
    keras.utils.set_random_seed(seed)
    spec = net_spec(net, output_channels, net_options)
    with precision_policy(precision):
        return spec, spec.build()


def make_dip(observation, physics, recipe, *, net="skip", net_options=None, reference=None,
             seed=0, chain=0, check_resources=True, precision="float32",
             jit_compile=False) -> DeepImagePrior:
    """The :class:`DeepImagePrior` of chain ``chain`` of a run seeded with ``seed``, for
    ``recipe`` (see :mod:`tfdip.recipes`), compiled with the recipe's optimizer for the optimizer
    methods. Its weights and optimizer noise come from the ``weights`` and ``sampler`` streams of
    :func:`tfdip.seeds.chain_seeds` ``(seed, chain)``. ``precision`` is the generator's
    (:mod:`tfdip.precision`); ``jit_compile`` compiles the steps with XLA."""
    seeds = chain_seeds(seed, chain)
    observation = np.asarray(observation, np.float32)
    spec, generator = build_generator(net, observation.shape[-1], net_options, seeds.weights,
                                      precision)
    dip = DeepImagePrior(
        generator, physics, observation, size_multiple=spec.size_multiple, min_size=spec.min_size,
        input_noise_std=recipe.input_noise_std, likelihood=recipe.likelihood,
        likelihood_sigma=recipe.likelihood_sigma, ema_decay=recipe.ema_decay,
        rollback_db=recipe.rollback_db, reference=reference, burn_in=recipe.burn_in,
        thin=recipe.thin, max_samples=expected_samples(recipe), seed=seed, chain=chain,
        noise_prior=recipe.noise_prior, early_stop=recipe.stop,
        **({"drift_window": recipe.budget.window} if recipe.is_auto else {}))
    if check_resources:
        check_memory(generator, dip.z.shape, dip.image_shape)
    if recipe.method in OPTIMIZER_METHODS:
        dip.compile(optimizer=recipe.optimizer(seed=seeds.sampler), jit_compile=jit_compile)
    return dip


def expected_samples(recipe) -> int:
    """Posterior samples a full run of ``recipe`` collects (1 for a non-sampling recipe), or the
    trace rows of an automatic budget's run."""
    if recipe.burn_in is None:
        return 1
    if recipe.is_auto:
        return AUTO_TRACE_ROWS
    return (recipe.iterations - recipe.burn_in + recipe.thin - 1) // recipe.thin


@dataclasses.dataclass
class ChainResult:
    """What one chain of a run leaves behind, as NumPy arrays: picklable, so a chain can run in
    another process or on another machine and be pooled with the others
    (:func:`tfdip.restoration.pool_chains`).

    Attributes:
        chain: the chain's index ``k`` (its randomness is a function of the run's seed and k).
        count, mean, m2: the chain's posterior moments (Welford): number of samples, their mean
            and sum of squared deviations, (H, W, C) float32 (0 and zeros without sampling).
        trace: (n, P) values of the P traced output entries in the chain's samples 0, s, 2s, ...
            (s = 1 until the trace filled up and thinned itself), for ESS / R-hat.
        last: (H, W, C) the output at the final weights; ema: (H, W, C) output moving average,
            or None when the recipe keeps none.
        history: the chain's Keras ``History.history`` of the steps run in this process.
        seconds: wall time of the chain in this process; seconds_per_iteration: per step,
            without the first (tracing) step; rollbacks: steps rolled back to the last good weights.
        steps: the steps the chain has run (its step counter).
        trace_index: (P,) flat indices in the (H, W, C) image of the traced entries.
        budget: with ``iterations="auto"``, what :func:`tfdip.stopping.budget_record` says
            (burn-in end, stop step and reason); else None.
        early_stop, early_stop_image: with ES-WMV, :func:`tfdip.stopping.wmv_record` and the
            (H, W, C) iterate it keeps; else None.
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
    steps: int = 0
    trace_index: np.ndarray | None = None
    budget: dict | None = None
    early_stop: dict | None = None
    early_stop_image: np.ndarray | None = None


@dataclasses.dataclass
class ChainRun:
    """A finished chain: its model (in its final state), the Keras History dict of the steps
    run in this process, its :class:`StepTimer` and its wall time in seconds."""

    model: DeepImagePrior
    history: dict
    timer: StepTimer
    seconds: float

    def result(self) -> ChainResult:
        """The chain as a picklable :class:`ChainResult` (NumPy arrays, no model)."""
        dip = self.model
        count = int(dip.moments.count.numpy())
        return ChainResult(
            chain=dip.chain, count=count, mean=dip.moments.mean.numpy(),
            m2=dip.moments.m2.numpy(), trace=dip.traced_samples(),
            last=dip.restored("last"),
            ema=dip.restored("ema") if dip.ema_decay is not None else None,
            history=self.history, seconds=self.seconds,
            seconds_per_iteration=self.timer.seconds_per_step,
            rollbacks=int(dip.rollbacks.numpy()), steps=int(dip.step.numpy()),
            trace_index=dip.trace_index.numpy(),
            budget=budget_record(dip) if dip.burn_in == "auto" else None,
            early_stop=None if dip.wmv is None else wmv_record(dip),
            early_stop_image=None if dip.wmv is None else dip.wmv.best.numpy())


def run_chain(observation, physics, recipe, *, chain=0, seed=0, net="skip", net_options=None,
              reference=None, callbacks=(), log_every=None, checkpoints=None,
              checkpoint_every=None, check_resources=True, verbose=0, precision="float32",
              jit_compile=False) -> ChainRun:
    """Run chain ``chain`` of the run seeded with ``seed`` to ``recipe.iterations`` steps, or with
    an automatic budget until :class:`tfdip.stopping.AutoBudget` stops it (at most that many).

    With ``checkpoints`` (an opened :class:`tfdip.checkpoints.RunCheckpoints`) the chain first
    loads its newest checkpoint, if any, and then saves every ``checkpoint_every`` steps and at
    the end; a resumed chain continues exactly where the saved one stopped.
    """
    start = time.perf_counter()
    dip = make_dip(observation, physics, recipe, net=net, net_options=net_options,
                   reference=reference, seed=seed, chain=chain, check_resources=check_resources,
                   precision=precision, jit_compile=jit_compile)
    timer = StepTimer()
    extra = [timer, *callbacks]
    if recipe.is_auto:  # before the checkpoints: a step's decision is saved with its state
        extra.append(AutoBudget(recipe.budget, recipe.iterations))
        log_every = log_every or recipe.budget.check_every
    if recipe.stop == "wmv":
        log_every = log_every or min(recipe.iterations, 100)
        extra.append(WmvStop(log_every))
    if checkpoints is not None:
        store = checkpoints.chain(chain)
        dip._build_optimizer()
        store.restore(dip.checkpoint())
        extra.append(CheckpointEvery(store.folder, checkpoint_every))
    remaining = recipe.iterations - int(dip.step.numpy())
    history = {}
    finished = int(dip.stop_reason.numpy()) or (dip.wmv is not None and bool(dip.wmv.done.numpy()))
    if remaining > 0 and not finished:
        history = dip.fit(remaining, log_every=log_every, callbacks=extra, verbose=verbose).history
    return ChainRun(model=dip, history=history, timer=timer,
                    seconds=time.perf_counter() - start)
