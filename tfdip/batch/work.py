"""The work a batch hands to a worker (a local process or a Ray task): chains of one item.

A :class:`Job` carries arrays, not file names, so it runs on any machine; it returns an
:class:`Outcome` (the chains' :class:`tfdip.chains.ChainResult` s, or the whole
:class:`tfdip.Restoration` of a TFP MCMC method, whose chains are sampled together) and never
raises: a failure comes back as its one-line description. While a job runs, everything the worker
prints (TensorFlow's messages included) and one progress line per logged step go to the item's log.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfdip.batch.output import output_to
from tfdip.errors import TfdipError, TfdipWarning
from tfdip.recipes import MCMC_METHODS, Recipe
from tfdip.restoration import Restoration, restore_chain, restore_mcmc

OUT_OF_MEMORY = "out of memory; crop or downscale the image, or use a narrower net (--channels 64)"


@dataclasses.dataclass
class Job:
    """Chains ``chains`` of one item (picklable: NumPy arrays, a physics object, a recipe).

    Attributes:
        name: the item's name (for the log).
        observation: (h, w, C) float32 in [0, 1]; physics: its :class:`tfdip.physics.Physics`;
        reference: clean (H, W, C) image or None (the log then shows PSNRs).
        recipe, seed, net_options: as for :func:`tfdip.restoration.restore_chain`.
        chains: the chain indices to run here; total_chains: the item's number of chains.
        checkpoint_dir: the item's checkpoint folder (:mod:`tfdip.checkpoints`; a chain with a
            checkpoint there resumes from it), or None; checkpoint_every: steps between saves.
        log_path: the item's log file, or None.
        threads: TensorFlow intra- and inter-op threads of the worker process (set before
            TensorFlow starts; a worker that already runs keeps its setting), or None.
        precision, jit_compile: as for :func:`tfdip.restoration.restore_chain`.
    """

    name: str
    observation: np.ndarray
    physics: object
    reference: np.ndarray | None
    recipe: Recipe
    seed: int
    chains: tuple
    total_chains: int
    net_options: dict
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    log_path: str | None = None
    threads: int | None = None
    precision: str = "float32"
    jit_compile: bool = False


@dataclasses.dataclass
class Outcome:
    """What a job gives back: ``results`` (a list of ChainResults, or a Restoration without
    models) or ``error``, the failure in one line (the traceback is in the item's log)."""

    results: list | Restoration | None
    error: str | None = None


def run_job(job: Job) -> Outcome:
    """Run ``job`` in this process and return its :class:`Outcome`."""
    set_threads(job.threads)
    with output_to(job.log_path) as log:
        try:
            keras.utils.clear_session()  # a worker runs many jobs; keep no stale graphs
            return Outcome(_run(job, log))
        except Exception as error:  # noqa: BLE001 -- any failure stays with its item
            log.write(traceback.format_exc())
            return Outcome(None, failure_line(error))


def set_threads(threads) -> None:
    """Give TensorFlow ``threads`` intra-op and inter-op threads, if it has not started yet."""
    if not threads:
        return
    with contextlib.suppress(RuntimeError):  # already started: this worker keeps its threads
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))


def failure_line(error: BaseException) -> str:
    """A failure as one line: a TfdipError's message, an out-of-memory advice, or the type and
    first line of an unexpected error."""
    if isinstance(error, TfdipError):
        text = str(error)
    elif isinstance(error, (MemoryError, tf.errors.ResourceExhaustedError)):
        text = OUT_OF_MEMORY
    else:
        text = f"{type(error).__name__}: {error}"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _run(job: Job, log):
    recipe = job.recipe
    if recipe.method in MCMC_METHODS:
        log.write(f"{_now()} {job.name}: {recipe.method}, {len(job.chains)} chain(s) sampled "
                  f"one graph each, {planned_steps(recipe)}\n")
        return restore_mcmc(job.observation, job.physics, recipe, net_options=job.net_options,
                            seed=job.seed, chains=len(job.chains))
    results = []
    for chain in job.chains:
        with warnings.catch_warnings():
            # The item's chains share one folder and may start at once: each resumes the run
            # (its settings are checked), and a chain with nothing saved yet simply starts.
            warnings.filterwarnings("ignore", category=TfdipWarning, message="no checkpoint in")
            results.append(restore_chain(
                job.observation, job.physics, recipe, chain=chain, seed=job.seed,
                net_options=job.net_options, reference=job.reference,
                callbacks=[StepLog(log, f"chain {chain + 1}/{job.total_chains}", recipe)],
                checkpoint_dir=job.checkpoint_dir, checkpoint_every=job.checkpoint_every,
                resume=job.checkpoint_dir is not None, precision=job.precision,
                jit_compile=job.jit_compile))
    return results


def planned_steps(recipe: Recipe) -> str:
    """The length of a run of ``recipe`` in words: ``"3000 steps"``, or the cap of a run that
    stops by itself (``"at most 10000 steps (automatic budget)"``, ``"... (ES-WMV)"``)."""
    if recipe.is_auto:
        return f"at most {recipe.iterations} steps (automatic budget)"
    if recipe.stop:
        return f"at most {recipe.iterations} steps (ES-WMV)"
    return f"{recipe.iterations} steps"


class StepLog(keras.callbacks.Callback):
    """One line per logged step on ``stream``, e.g.
    ``chain 1/2 step 300/3000  loss 512.3  PSNR(obs) 20.11 dB  PSNR 27.02 dB  0.041 s/it``
    (the total is the cap of a run that stops by itself), for a run of ``recipe``."""

    def __init__(self, stream, prefix: str, recipe: Recipe):
        super().__init__()
        self.stream = stream
        self.prefix = prefix
        self.total = int(recipe.iterations)
        self.planned = planned_steps(recipe)

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        self.start_step = int(self.model.step.numpy())
        how = (f"resumed from the checkpoint at step {self.start_step}" if self.start_step
               else "started")
        self.stream.write(f"{_now()} {self.prefix} {how}, {self.planned}\n")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        step = int(self.model.step.numpy())
        parts = [f"{self.prefix} step {step}/{self.total}"]
        for key, label in (("loss", "loss"), ("psnr_obs", "PSNR(obs)"), ("psnr", "PSNR"),
                           ("psnr_mean", "PSNR(mean)"), ("samples", "samples")):
            if key in logs:
                value = float(logs[key])
                parts.append(f"{label} {value:.0f}" if key == "samples" else
                             f"{label} {value:.4g}" if key == "loss" else
                             f"{label} {value:.2f} dB")
        rate = (time.perf_counter() - self.start) / max(step - self.start_step, 1)
        parts.append(f"{rate:.3f} s/it")
        self.stream.write("  ".join(parts) + "\n")

    def on_train_end(self, logs=None):
        self.stream.write(f"{_now()} {self.prefix} finished at step "
                          f"{int(self.model.step.numpy())}\n")


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
