"""tfdip batch with the single-image commands' budget options: ``--iterations auto`` and
``--max-iterations``, ``--stop wmv``, ``--schedule``, ``--precision`` / ``--xla``, batch-wide
and per manifest line.

An automatic-budget item is checked against every step's output of the direct run recorded in
NumPy (its samples are the outputs from the step burn-in ended to the step it stopped), also after
its worker was interrupted mid-chain; refusals are checked against the single-image command's own
message for the same options.
"""
import csv
import dataclasses
import json
import warnings
from concurrent.futures import Future

import numpy as np
import pytest

import tfdip.batch.runner
from test_auto_budget import MINI, RULES, _InterruptAt, _Outputs
from test_batch import SIGMA_255, _noisy, _summary, _write_items, run
from tfdip.batch import BatchResult, Defaults, read_items, run_batch
from tfdip.batch.items import settings_hash
from tfdip.batch.work import run_job
from tfdip.errors import TfdipError, TfdipWarning
from tfdip.physics import Denoising
from tfdip.recipes import make_recipe
from tfdip.restoration import restore, restore_chain

# RULES: small budget rules, so that a 24x24 item decides within a few hundred steps (the
# defaults need thousands: a 400-step drift window, 50 trace rows); MINI: a 2-level net.
DENOISE = ["--task", "denoise", "--sigma", SIGMA_255, "--channels", 8, "--quiet"]


class _InProcessEngine:
    """Runs every job in this process; the first job of an item named in ``interrupt`` is first
    run into its checkpoint folder until the given step and interrupted there (a worker killed
    mid-chain), then run again as a fresh worker would."""

    capacity, threads = 1, None

    def __init__(self, interrupt=None):
        self.interrupt = dict(interrupt or {})

    def submit(self, job):
        if job.name in self.interrupt:
            with warnings.catch_warnings(), pytest.raises(KeyboardInterrupt):
                warnings.simplefilter("ignore", TfdipWarning)  # nothing saved yet: it starts
                restore_chain(job.observation, job.physics, job.recipe, seed=job.seed,
                              net_options=job.net_options, checkpoint_dir=job.checkpoint_dir,
                              checkpoint_every=job.checkpoint_every, resume=True,
                              callbacks=[_InterruptAt(self.interrupt.pop(job.name))])
        future = Future()
        future.set_result(run_job(job))
        return future

    def worker_died(self, future, error):
        return None

    def may_retry_alone(self):
        return False


def _manifest(folder, rows):
    """A CSV manifest of ``rows`` (dicts) in ``folder``."""
    path = folder / "items.csv"
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=sorted({key for row in rows for key in row}))
        writer.writeheader()
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------ automatic budget
CAP = 350  # after burn-in ends (step 340 for this chain), before the rule holds (step 370)


def test_auto_budget_items_stop_by_themselves_resume_and_match_the_direct_run(tmp_path):
    _write_items(tmp_path / "in", 1)
    manifest = _manifest(tmp_path / "in", [
        {"input": "noisy0.npy", "reference": "clean0.npy", "iterations": "auto",
         "max_iterations": CAP},
        {"input": "noisy0.npy", "reference": "clean0.npy", "iterations": "auto",
         "max_iterations": 500}])
    items = read_items(manifest, Defaults(task="denoise", sigma=SIGMA_255, method="psgld", thin=1,
                                          budget=RULES, net_options=MINI, checkpoint_every=7))
    assert [(i.name, i.recipe.is_auto, i.recipe.iterations) for i in items] == [
        ("noisy0", True, CAP), ("noisy0-2", True, 500)]
    # The second item's worker is interrupted at step 355; the item resumes from step 350.
    result = run_batch(items, tmp_path / "out", _InProcessEngine({"noisy0-2": 355}),
                       progress_stream=None)
    assert [row["status"] for row in result.rows] == ["ok", "ok"]

    record = _Outputs()
    direct = restore(_noisy(0), Denoising(SIGMA_255 / 255), method="psgld", iterations="auto",
                     max_iterations=500, thin=1, budget=RULES, net_options=MINI,
                     callbacks=[record])
    chain = direct.budget["chains"][0]
    start, stop = chain["burn_in_end"], chain["stopped_at"]
    assert chain["reason"] == "rule met" and start < CAP < stop == direct.iterations < 500
    outputs = np.stack(record.outputs)
    rows = {row["name"]: row for row in _summary(tmp_path / "out")}
    # The capped item ran the same chain up to its cap: burn-in ended at the same step and the
    # rule had not held by then (it first held at `stop`), so the cap stopped it.
    for name, end, reason in (("noisy0", CAP, "cap reached"), ("noisy0-2", stop, "rule met")):
        samples = outputs[start:end]
        row, folder = rows[name], tmp_path / "out" / name
        assert int(row["iterations"]) == end and int(row["samples"]) == len(samples)
        assert row["stop"] == f"burn-in ended at step {start}, stopped at step {end} ({reason})"
        np.testing.assert_allclose(np.load(folder / "restored.npy"),
                                   np.clip(samples.mean(axis=0), 0, 1), atol=1e-5)
        np.testing.assert_allclose(np.load(folder / "std.npy"), samples.std(axis=0), atol=1e-5)
        report = json.loads((folder / "report.json").read_text())
        assert report["budget"]["chains"][0] == dict(chain, stopped_at=end, steps=end,
                                                     reason=reason)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "noisy0-2" / "restored.npy"),
                               direct.image, atol=1e-5)
    assert f"reached the cap of {CAP} steps" in (tmp_path / "out" / "noisy0" / "log.txt").read_text()
    log = (tmp_path / "out" / "noisy0-2" / "log.txt").read_text()
    assert "at most 500 steps (automatic budget)" in log
    assert "chain 1/1 resumed from the checkpoint at step 350" in log
    assert f"finished at step {stop}" in log
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert f"stopped at step {CAP} (cap reached) |" in summary and "| steps |" in summary


# ------------------------------------------------------------------ ES-WMV and precision
def test_sgd_with_wmv_in_bfloat16_runs_as_the_single_image_command(tmp_path):
    manifest = _write_items(tmp_path / "in", 1)
    out = tmp_path / "out"
    items = read_items(manifest, Defaults(task="denoise", sigma=SIGMA_255, method="sgd",
                                          stop="wmv", iterations=120, precision="bfloat16",
                                          net_options=MINI))
    assert run_batch(items, out, _InProcessEngine(), progress_stream=None).failed == 0
    direct = restore(_noisy(0), Denoising(SIGMA_255 / 255), method="sgd", stop="wmv",
                     iterations=120, precision="bfloat16", net_options=MINI)
    report = json.loads((out / "noisy0" / "report.json").read_text())
    assert report["early_stop"] == direct.early_stop and direct.early_stop["reason"] == "cap reached"
    assert report["settings"]["precision"] == "bfloat16"
    assert report["settings"]["recipe"]["stop"] == "wmv"
    np.testing.assert_allclose(np.load(out / "noisy0" / "restored.npy"), direct.image, atol=1e-5)
    row = _summary(out)[0]
    assert int(row["iterations"]) == 120  # 120 steps < ES-WMV's patience of 1000: the cap
    assert row["stop"] == f"ES-WMV kept step {direct.early_stop['best_step']} (cap reached)"


# ------------------------------------------------------------------ command line
def test_batch_wide_options_reach_every_item(tmp_path, monkeypatch, capsys):
    given = []

    def record_items(items, out_dir, engine, progress_stream=None):
        given.append(items)
        return BatchResult([], 0)

    monkeypatch.setattr(tfdip.batch.runner, "run_batch", record_items)
    manifest = _write_items(tmp_path / "in", 2)
    assert run("batch", manifest, "-o", tmp_path / "out", *DENOISE, "--method", "sgld",
               "--iterations", "auto", "--max-iterations", 900, "--schedule", "cyclical",
               "--precision", "bfloat16", "--xla") == 0
    assert run("batch", manifest, "-o", tmp_path / "out", *DENOISE, "--method", "sgd",
               "--stop", "wmv") == 0
    auto, wmv = given
    for item in auto:
        assert item.recipe == make_recipe("sgld", "denoising", iterations="auto",
                                          max_iterations=900, schedule="cyclical",
                                          sigma=SIGMA_255 / 255)
        assert (item.precision, item.jit_compile) == ("bfloat16", True)
    for item in wmv:
        assert item.recipe == make_recipe("sgd", "denoising", stop="wmv")
        assert (item.precision, item.jit_compile) == ("float32", False)


@pytest.mark.parametrize("options", [
    ("--method", "psgld", "--stop", "wmv"),
    ("--method", "sgd", "--schedule", "cyclical"),
    ("--iterations", "300", "--max-iterations", "500"),
    ("--max-iterations", "500"),
    ("--method", "mala", "--precision", "bfloat16"),
    ("--method", "mala", "--xla"),
])
def test_batch_refuses_options_as_the_single_image_command_does(tmp_path, capsys, options):
    manifest = _write_items(tmp_path / "in", 1)
    assert run("denoise", tmp_path / "in" / "noisy0.npy", "-o", tmp_path / "x.png",
               "--sigma", SIGMA_255, "--quiet", *options) == 2
    single = capsys.readouterr().err
    assert run("batch", manifest, "-o", tmp_path / "out", *DENOISE, *options) == 2
    error = capsys.readouterr().err
    assert single.startswith("tfdip: error: ") and single.count("\n") == error.count("\n") == 1
    assert error == single.replace("tfdip: error: ", "tfdip: error: items.csv line 2: ")
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("row, message", [
    ({"iterations": "300", "max_iterations": "500"},
     "max_iterations .* apply to iterations 'auto'"),
    ({"max_iterations": "500"}, "max_iterations .* apply to iterations 'auto'"),
    ({"method": "sgd", "schedule": "cyclical"}, "a cyclical step-size schedule applies to the "
                                                 "Langevin optimizers .* not to sgd"),
    ({"stop": "wmv"}, "stop='wmv' is not a stopping rule of psgld"),
    ({"method": "sgd", "stop": "soon"}, "unknown stopping rule 'soon'"),
    ({"schedule": "sometimes"}, "schedule must be one of constant, cyclical, decay"),
    ({"iterations": "soon"}, "iterations must be a whole number or 'auto', got 'soon'"),
    ({"iterations": "auto", "max_iterations": "auto"}, "max_iterations must be a whole number,"),
    ({"method": "sgd", "iterations": "auto"}, "iterations .auto. reads .*give sgd a number"),
])
def test_manifest_budget_values_are_refused_naming_their_line(tmp_path, row, message):
    (tmp_path / "a.png").write_bytes(b"x")
    manifest = _manifest(tmp_path, [{"input": "a.png"}, {"input": "a.png", **row}])
    with pytest.raises(TfdipError, match=f"^items.csv line 3: {message}"):
        read_items(manifest, Defaults(task="denoise", sigma=SIGMA_255))


# ------------------------------------------------------------------ manifests and settings
def test_manifest_rows_set_auto_budgets_stops_and_schedules(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "items.jsonl").write_text(
        '{"input": "a.png", "iterations": "auto", "max_iterations": 600}\n'
        '{"input": "a.png", "method": "sgd", "stop": "wmv", "iterations": 900}\n'
        '{"input": "a.png", "method": "sgld", "schedule": "cyclical"}\n'
        '{"input": "a.png", "iterations": 300}\n')
    (tmp_path / "items.csv").write_text("input,iterations,max_iterations\na.png,auto,700\n")
    defaults = Defaults(task="denoise", sigma=SIGMA_255, iterations="auto")
    auto, wmv, cyclical, fixed = read_items(tmp_path / "items.jsonl", defaults)
    sigma = SIGMA_255 / 255
    assert auto.recipe == make_recipe("psgld", "denoising", iterations="auto", max_iterations=600,
                                      sigma=sigma)
    assert (auto.recipe.iterations, auto.recipe.burn_in) == (600, "auto")
    assert wmv.recipe == make_recipe("sgd", "denoising", iterations=900, stop="wmv")
    assert cyclical.recipe == make_recipe("sgld", "denoising", iterations="auto",
                                          schedule="cyclical", sigma=sigma)
    assert fixed.recipe == make_recipe("psgld", "denoising", iterations=300, sigma=sigma)
    [from_csv] = read_items(tmp_path / "items.csv", Defaults(task="denoise", sigma=SIGMA_255))
    assert from_csv.recipe == make_recipe("psgld", "denoising", iterations="auto",
                                          max_iterations=700, sigma=sigma)
    # A batch-wide option that does not apply to a line's own method or budget is refused there.
    for option, message in (({"max_iterations": 800}, "line 2: max_iterations .*apply to "),
                            ({"budget": RULES}, "line 2: budget .*apply to iterations"),
                            ({"schedule": "decay"}, "line 2: a decay step-size schedule .* sgd"),
                            ({"precision": "float8"}, "line 1: precision must be one of")):
        with pytest.raises(TfdipError, match=f"^items.jsonl {message}"):
            read_items(tmp_path / "items.jsonl", dataclasses.replace(defaults, **option))


def test_settings_hash_follows_the_budget_schedule_and_precision(tmp_path):
    (tmp_path / "a.png").write_bytes(b"one")
    defaults = Defaults(task="denoise", sigma=SIGMA_255, iterations="auto")

    def digest(**changes):
        return settings_hash(read_items(tmp_path, dataclasses.replace(defaults, **changes))[0]
                             .settings())

    first = digest()
    assert digest() == first
    assert digest(schedule="cyclical") != first and digest(schedule="decay") != first
    assert digest(schedule="cyclical") != digest(schedule="decay")
    assert digest(max_iterations=5000) != first and digest(budget=RULES) != first
    assert digest(iterations=3000) != first and digest(precision="bfloat16") != first
    assert digest(jit_compile=True) == first  # XLA changes the floats only, as threads do
    # float32 is not named, so items finished before precision was a batch option stay finished.
    assert "precision" not in read_items(tmp_path, defaults)[0].settings()
    fixed = dataclasses.replace(defaults, method="sgd", iterations=300)
    assert (settings_hash(read_items(tmp_path, fixed)[0].settings())
            != settings_hash(read_items(tmp_path, dataclasses.replace(fixed, stop="wmv"))[0]
                             .settings()))
