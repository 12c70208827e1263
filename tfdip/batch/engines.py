"""Where a batch's jobs run: local worker processes or a Ray cluster.

Both engines take a :class:`tfdip.batch.work.Job` and give back a ``concurrent.futures.Future``
of its :class:`tfdip.batch.work.Outcome`; the batch runner does not know which one it drives.

* :class:`LocalEngine`: ``workers`` processes on this machine (``concurrent.futures`` with the
  spawn start method, so each starts its own TensorFlow), each with ``cores // workers``
  TensorFlow threads, so that workers x threads = cores.
* :class:`RayEngine`: every job is a Ray task with ``num_cpus`` / ``num_gpus`` resources, on the
  cluster at ``address`` (``"auto"`` or ``HOST:PORT``) or on a local Ray instance; the task runs
  with as many TensorFlow threads as it has CPUs. Ray schedules and retries the tasks.
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from tfdip.batch.output import send_output_to
from tfdip.batch.work import run_job
from tfdip.errors import TfdipError

RAY_INSTALL = 'the ray engine needs Ray: pip install "tfdip[ray]" (or pip install "ray>=2.40")'
# Ray retries a task whose worker died (node lost, killed for memory) this many times.
RAY_TASK_RETRIES = 2


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class LocalEngine:
    """``workers`` local processes; a job that kills its process (e.g. the system's out-of-memory
    killer) breaks the pool, which is then replaced (:meth:`worker_died`). The workers' own
    output (TensorFlow's start-up lines) goes to ``log_path`` when given, each job's to its
    item's log."""

    def __init__(self, workers: int = 1, log_path=None):
        if workers < 1:
            raise TfdipError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.log_path = None if log_path is None else str(log_path)
        self.threads = max(1, available_cores() // workers)
        self.capacity = workers
        self._pool = self._new_pool()
        self._generation = {}

    def _new_pool(self):
        return ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=None if self.log_path is None else send_output_to,
            initargs=() if self.log_path is None else (self.log_path,))

    def describe(self) -> str:
        return (f"{self.workers} local worker process{'es' * (self.workers > 1)} x "
                f"{self.threads} TensorFlow thread{'s' * (self.threads > 1)}")

    def submit(self, job):
        future = self._pool.submit(run_job, dataclasses.replace(job, threads=self.threads))
        self._generation[future] = self._pool
        return future

    def worker_died(self, future, error) -> str | None:
        """If ``error`` (raised by ``future``) means its worker process died, start a fresh pool
        (once per broken pool) and describe the death in one line; else None."""
        if not isinstance(error, BrokenProcessPool):
            return None
        if self._generation.pop(future, None) is self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return "the worker process died (killed by the system, e.g. out of memory)"

    def may_retry_alone(self) -> bool:
        """Jobs that were running when a worker died are retried one at a time, to find the one
        that killed it."""
        return True

    def abort(self):
        """Stop at once (Ctrl-C): cancel the queued jobs and end the running ones; their items
        resume from their checkpoints on the next run."""
        running = list((self._pool._processes or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in running:
            process.terminate()

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayEngine:
    """Jobs as Ray tasks with ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs each.

    Connects to the cluster at ``address`` (``"auto"``: the one started on this machine with
    ``ray start``), or starts a local Ray instance without one; a Ray session already running in
    this process is used as it is. Checkpoints and logs are written under the output folder as
    the worker sees it: put it on a shared filesystem for a cluster of several machines.
    """

    def __init__(self, address: str | None = None, cpus_per_task: float = 1.0,
                 gpus_per_task: float = 0.0):
        ray = import_ray()
        if not cpus_per_task > 0:
            raise TfdipError(f"--cpus-per-task must be > 0, got {cpus_per_task}")
        if not gpus_per_task >= 0:
            raise TfdipError(f"--gpus-per-task must be >= 0, got {gpus_per_task}")
        self._ray = ray
        self._owns_session = not ray.is_initialized()
        if self._owns_session:
            try:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                         include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = f"at {address}" if address else "on this machine"
                raise TfdipError(f"cannot start or reach a Ray cluster {where}: "
                                 f"{str(error).splitlines()[0]} (start one with `ray start "
                                 f"--head`)") from None
        elif address:
            raise TfdipError("Ray is already running in this process; leave out --ray-address")
        resources = ray.cluster_resources()
        self.cpus = float(resources.get("CPU", 0))
        gpus = float(resources.get("GPU", 0))
        if cpus_per_task > self.cpus:
            self.close()
            raise TfdipError(f"--cpus-per-task {cpus_per_task:g} but the Ray cluster has "
                             f"{self.cpus:g} CPUs")
        if gpus_per_task > gpus:
            self.close()
            raise TfdipError(f"--gpus-per-task {gpus_per_task:g} but the Ray cluster has "
                             f"{gpus:g} GPUs")
        self.threads = max(1, int(cpus_per_task))
        self.cpus_per_task, self.gpus_per_task = cpus_per_task, gpus_per_task
        # Keep every slot busy and one more job queued per slot; Ray schedules them.
        self.capacity = 2 * max(1, int(self.cpus // cpus_per_task))
        self._task = ray.remote(run_job).options(
            num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=RAY_TASK_RETRIES)

    def describe(self) -> str:
        gpus = f", {self.gpus_per_task:g} GPU" if self.gpus_per_task else ""
        return (f"Ray ({self.cpus:g} CPUs; {self.cpus_per_task:g} CPU{gpus} and "
                f"{self.threads} TensorFlow thread{'s' * (self.threads > 1)} per task)")

    def submit(self, job):
        return self._task.remote(dataclasses.replace(job, threads=self.threads)).future()

    def worker_died(self, future, error) -> str | None:
        if isinstance(error, self._ray.exceptions.RayError):
            lines = str(error).strip().splitlines()
            return f"the Ray task failed: {type(error).__name__}: {lines[0] if lines else ''}"
        return None

    def may_retry_alone(self) -> bool:
        return False  # Ray has retried the task already

    def abort(self):
        """Stop at once (Ctrl-C): a local Ray instance is shut down with its workers; on a
        cluster, Ray cancels the tasks of this driver when it disconnects."""
        self.close()

    def close(self):
        if self._owns_session and self._ray.is_initialized():
            self._ray.shutdown()


def import_ray():
    """The ``ray`` module, or a one-line TfdipError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise TfdipError(RAY_INSTALL) from None
    return ray
