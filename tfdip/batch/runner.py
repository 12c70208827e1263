"""Run the items of a batch on an engine: skip finished ones, isolate failures, pool chains.

For every item the output folder ``DIR/<name>/`` receives ``restored.<ext>`` (the input's
format for PNG, TIFF and ``.npy``, else PNG), ``std.png`` (colour-mapped) and ``std.npy`` (the
posterior std, for the sampling methods), ``last.npy`` (the last iterate, float), ``report.json``
(written last: its presence with the same settings hash marks the item finished), ``log.txt``
(the item's progress and errors) and, while it runs, ``checkpoints/`` (removed once the item is
finished). ``DIR/summary.csv`` and ``DIR/summary.md`` are rewritten after every item.

An item runs as one job (all its chains in one worker), or, with several chains of an optimizer
method, as one job per chain whose results are pooled here (:func:`tfdip.restoration.pool_chains`).
A failing item (unreadable file, wrong mask, out of memory, a dead worker) is recorded with its
one-line error and the others go on.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
import traceback
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

from tfdip import io
from tfdip.batch.items import settings_hash
from tfdip.batch.summary import failed_row, ok_row, write_summary
from tfdip.batch.work import Job, failure_line, planned_steps
from tfdip.errors import TfdipWarning
from tfdip.outputs import restoration_report, write_restoration
from tfdip.problem import load_problem
from tfdip.recipes import MCMC_METHODS
from tfdip.restoration import Restoration, pool_chains

REPORT = "report.json"
LOG = "log.txt"
CHECKPOINTS = "checkpoints"
SETTINGS_STAMP = "settings_hash"
_KEPT_EXTENSIONS = (".png", ".tif", ".tiff", ".npy")


@dataclasses.dataclass
class BatchResult:
    """Summary rows of every item in input order, and how many were skipped as finished."""

    rows: list
    skipped: int

    @property
    def failed(self) -> int:
        return sum(row["status"] == "failed" for row in self.rows)


def item_paths(folder: Path, item) -> dict:
    """The output files of ``item`` in its folder."""
    suffix = Path(item.input).suffix.lower()
    extension = suffix if suffix in _KEPT_EXTENSIONS else ".png"
    return {"image": folder / f"restored{extension}", "std_png": folder / "std.png",
            "std_npy": folder / "std.npy", "last_npy": folder / "last.npy",
            "report": folder / REPORT, "log": folder / LOG, "checkpoints": folder / CHECKPOINTS}


def finished_report(paths: dict, settings_hash: str) -> dict | None:
    """The item's report if it finished with these settings (and its image exists), else None."""
    try:
        report = json.loads(paths["report"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if report.get("settings_hash") != settings_hash or not paths["image"].is_file():
        return None
    return report


@dataclasses.dataclass
class _Running:
    """An item whose jobs are out."""

    item: object
    paths: dict
    settings: dict
    problem: object
    jobs_left: int = 0
    results: list = dataclasses.field(default_factory=list)
    error: str | None = None


class _Progress:
    """``batch [#####.......] 3/8 done, 1 failed, 2 skipped  2m10s elapsed, ETA 3m15s`` on one
    line of ``stream``, redrawn whenever an item finishes."""

    def __init__(self, to_run: int, skipped: int, stream=None, width: int = 24):
        self.to_run, self.skipped = to_run, skipped
        self.stream = stream
        self.width = width
        self.done = self.failed = self.ran = 0
        self.start = time.perf_counter()

    def item_done(self, failed: bool, ran: bool) -> None:
        """Count an item; ``ran``: it ran (an item failing as it is read does not count for the
        ETA)."""
        self.done += 1
        self.failed += failed
        self.ran += ran
        self.draw()

    def draw(self) -> None:
        if self.stream is None:
            return
        elapsed = time.perf_counter() - self.start
        fraction = self.done / max(self.to_run, 1)
        filled = int(round(fraction * self.width))
        eta = (f", ETA {_duration(elapsed / self.ran * (self.to_run - self.done))}"
               if self.ran and self.done < self.to_run else "")
        self.stream.write(f"\rbatch [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{self.done}/{self.to_run} done, {self.failed} failed, "
                          f"{self.skipped} skipped  {_duration(elapsed)} elapsed{eta}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def run_batch(items, out_dir, engine, *, progress_stream=sys.stderr) -> BatchResult:
    """Restore ``items`` (see :func:`tfdip.batch.items.read_items`) into ``out_dir`` on
    ``engine`` (:class:`tfdip.batch.engines.LocalEngine` or ``RayEngine``); returns the summary
    rows. Items finished before with the same settings are skipped; items with checkpoints
    resume from them. ``progress_stream=None`` draws no progress bar."""
    out_dir = Path(out_dir).resolve()  # workers may run in another folder (Ray)
    out_dir.mkdir(exist_ok=True)
    rows, pending, settings, paths_of = {}, deque(), {}, {}
    for item in items:
        paths_of[item.index] = item_paths(out_dir / item.name, item)
        settings[item.index] = item.settings()
        report = finished_report(paths_of[item.index], settings_hash(settings[item.index]))
        if report is not None:
            rows[item.index] = ok_row(item, report)
        else:
            pending.append(item)
    skipped = len(rows)
    progress = _Progress(len(pending), skipped, progress_stream)
    progress.draw()

    def finish(item, row, ran=True):
        rows[item.index] = row
        _log(paths_of[item.index]["log"], f"failed: {row['error']}" if row["status"] == "failed"
             else "finished")
        write_summary([rows[i] for i in sorted(rows)], out_dir)
        progress.item_done(row["status"] == "failed", ran)

    def start(item):
        return _start(item, paths_of[item.index], settings[item.index])

    queue, suspects, in_flight = deque(), deque(), {}
    try:
        while pending or queue or suspects or in_flight:
            _submit_what_fits(engine, pending, queue, suspects, in_flight, start, finish)
            if not in_flight:
                continue
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            complete = []
            for future in done:
                state, job, alone = in_flight.pop(future)
                _collect(engine, future, state, job, alone, suspects)
                if state.jobs_left == 0:
                    complete.append(state)
            # Refill the workers first: pooling and writing an item takes the driver a while.
            _submit_what_fits(engine, pending, queue, suspects, in_flight, start, finish)
            for state in complete:
                finish(state.item, _finalise(state))
    finally:
        for future in in_flight:
            future.cancel()
        progress.close()
    write_summary([rows[i] for i in sorted(rows)], out_dir)
    return BatchResult([rows[i] for i in sorted(rows)], skipped)


def _submit_what_fits(engine, pending, queue, suspects, in_flight, start, finish):
    """Start items and submit their jobs while the engine has room. A job suspected of killing
    its worker runs alone: nothing else is submitted while it runs."""
    if any(alone for _, _, alone in in_flight.values()):
        return
    if suspects:
        if not in_flight:
            state, job = suspects.popleft()
            in_flight[engine.submit(job)] = (state, job, True)
        return
    while len(in_flight) < engine.capacity and (queue or pending):
        if not queue:
            item = pending.popleft()
            state = start(item)
            if isinstance(state, dict):
                finish(item, state, ran=False)
            else:
                queue.extend((state, job) for job in _jobs(state))
            continue
        state, job = queue.popleft()
        in_flight[engine.submit(job)] = (state, job, False)


def _start(item, paths, settings):
    """Prepare ``item``: its folder, checkpoints of these settings only, the problem read from
    its files. Returns a :class:`_Running`, or the failed summary row."""
    try:
        paths["log"].parent.mkdir(parents=True, exist_ok=True)
        _log(paths["log"], f"start {item.input} ({item.task}, {item.recipe.method}, "
                           f"{planned_steps(item.recipe)}, {item.chains} chain(s), seed "
                           f"{item.seed}; settings {settings_hash(settings)})")
        _keep_matching_checkpoints(paths, settings_hash(settings))
        problem = load_problem(item.input, item.task, sigma=item.sigma, mask=item.mask,
                               factor=item.factor, reference=item.reference)
    except Exception as error:  # noqa: BLE001 -- a bad file fails its item only
        return failed_row(item, failure_line(error))
    return _Running(item, paths, settings, problem)


def _jobs(state) -> list:
    """The jobs of a started item (counted in ``state.jobs_left``): one per chain for several
    chains of an optimizer method, else one."""
    item, problem = state.item, state.problem
    mcmc = item.recipe.method in MCMC_METHODS
    groups = ([tuple(range(item.chains))] if mcmc or item.chains == 1
              else [(chain,) for chain in range(item.chains)])
    jobs = [Job(name=item.name, observation=problem.observed.pixels, physics=problem.physics,
                reference=problem.reference, recipe=item.recipe, seed=item.seed, chains=chains,
                total_chains=item.chains, net_options=item.net_options,
                checkpoint_dir=None if mcmc else str(state.paths["checkpoints"]),
                checkpoint_every=item.checkpoint_every, log_path=str(state.paths["log"]),
                precision=item.precision, jit_compile=item.jit_compile)
            for chains in groups]
    state.jobs_left = len(jobs)
    return jobs


def _keep_matching_checkpoints(paths, settings_hash) -> None:
    """Remove checkpoints left by other settings; stamp the folder with these settings."""
    folder = paths["checkpoints"]
    stamp = folder / SETTINGS_STAMP
    if folder.exists():
        try:
            same = stamp.read_text().strip() == settings_hash
        except OSError:
            same = False
        if same:
            return
        shutil.rmtree(folder)
        _log(paths["log"], "the settings changed: checkpoints of the earlier run removed")
    folder.mkdir()
    io.write_text(stamp, settings_hash + "\n")


def _collect(engine, future, state, job, alone, suspects) -> None:
    """Take a finished job's outcome into its item's state (or queue the job to run alone, when
    its worker died next to others)."""
    try:
        outcome = future.result()
    except Exception as error:  # noqa: BLE001 -- the worker died or the job could not be sent
        death = engine.worker_died(future, error)
        if death is not None and not alone and engine.may_retry_alone():
            _log(state.paths["log"], f"{death}; retrying this job alone")
            suspects.append((state, job))
            return
        state.error = state.error or death or failure_line(error)
        state.jobs_left -= 1
        return
    state.jobs_left -= 1
    if outcome.error is not None:
        state.error = state.error or outcome.error
    elif isinstance(outcome.results, Restoration):
        state.results = outcome.results
    else:
        state.results.extend(outcome.results)


def _finalise(state) -> dict:
    """Pool the item's chains, write its outputs and report (last); its summary row."""
    item, paths, problem = state.item, state.paths, state.problem
    if state.error is not None:
        return failed_row(item, state.error)
    try:
        with warnings.catch_warnings(record=True) as caught:  # e.g. a binding cap: into the log
            warnings.simplefilter("always", TfdipWarning)
            result = (state.results if isinstance(state.results, Restoration)
                      else pool_chains(state.results, item.recipe, seed=item.seed))
        for warning in caught:
            _log(paths["log"], f"warning: {warning.message}")
        write_restoration(result, problem.observed, paths["image"], std_png=paths["std_png"],
                          std_npy=paths["std_npy"])
        io.write_image(paths["last_npy"], result.last)
        report = restoration_report(result, task=problem.physics.name, chains=item.chains,
                                    observation=problem.observed.pixels,
                                    reference=problem.reference)
        report.update(input=item.input, settings_hash=settings_hash(state.settings),
                      settings=state.settings)
        io.write_json(paths["report"], report)
    except Exception as error:  # noqa: BLE001 -- e.g. a full disk fails this item only
        _log(paths["log"], traceback.format_exc())
        return failed_row(item, failure_line(error))
    shutil.rmtree(paths["checkpoints"], ignore_errors=True)
    return ok_row(item, report)


def _log(path: Path, line: str) -> None:
    """Append a time-stamped line to an item's log; a log that cannot be written is skipped (the
    summary still records the item's outcome)."""
    try:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
    except OSError:
        pass
