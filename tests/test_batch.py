"""tfdip batch: manifests, summaries checked against NumPy, failure isolation, skip and resume
after a kill, the Ray engine, and chains pooled across Ray tasks against the in-process run."""
import csv
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
from skimage import data

import tfdip
from tfdip.batch import Defaults, read_items, run_batch
from tfdip.batch.engines import available_cores
from tfdip.batch.items import settings_hash
from tfdip.batch.work import run_job
from tfdip.cli import main
from tfdip.errors import TfdipError
from tfdip.physics import Denoising
from tfdip.recipes import make_recipe
from tfdip.restoration import pool_chains, restore, restore_chain

SIZE = 24
SIGMA_255 = 25.0
TINY = {"channels_down": 8, "channels_up": 8}
RUN = ["--task", "denoise", "--sigma", SIGMA_255, "--channels", 8, "--quiet"]


def _clean(index):
    crop = data.astronaut()[80 + 60 * index:80 + 60 * index + 4 * SIZE:4,
                            140:140 + 4 * SIZE:4]
    return (crop / 255.0).astype(np.float32)


def _noisy(index):
    return np.clip(Denoising(SIGMA_255 / 255).simulate(_clean(index), seed=index), 0, 1)


def _write_items(folder: Path, count: int, *, corrupt: bool = False) -> Path:
    """``count`` noisy crops as .npy with clean references, and a CSV manifest listing them
    (plus a damaged PNG when ``corrupt``); returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        np.save(folder / f"noisy{index}.npy", _noisy(index))
        np.save(folder / f"clean{index}.npy", _clean(index))
        rows.append({"input": f"noisy{index}.npy", "reference": f"clean{index}.npy"})
    if corrupt:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 8)
        rows.insert(1, {"input": "broken.png", "reference": ""})
    manifest = folder / "items.csv"
    with open(manifest, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["input", "reference"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _summary(out: Path):
    with open(out / "summary.csv", newline="") as file:
        return list(csv.DictReader(file))


def run(*argv):
    return main([str(a) for a in argv])


# ------------------------------------------------------------------ items and manifests
def test_manifests_resolve_paths_overrides_and_defaults(tmp_path):
    (tmp_path / "data").mkdir()
    for name in ("a.png", "b.npy", "m.png"):
        (tmp_path / "data" / name).write_bytes(b"x")
    (tmp_path / "data" / "items.jsonl").write_text(
        '{"input": "a.png", "sigma": 10, "seed": 3}\n\n'
        '{"input": "b.npy", "task": "inpaint", "mask": "m.png", "method": "sgd", '
        '"iterations": 50}\n{"input": "a.png", "iterations": 20.0}\n')
    items = read_items(tmp_path / "data" / "items.jsonl",
                       Defaults(task="denoise", sigma=25, method="paper", seed=1))
    assert [i.name for i in items] == ["a", "b", "a-2"]
    assert items[0].input == str(tmp_path / "data" / "a.png")
    assert (items[0].sigma, items[0].seed, items[0].recipe.method) == (10, 3, "paper")
    assert items[1].task == "inpaint" and items[1].mask == str(tmp_path / "data" / "m.png")
    assert (items[1].recipe.method, items[1].recipe.iterations) == ("sgd", 50)
    assert items[2].recipe.iterations == 20 and items[2].sigma == 25
    assert items[0].recipe == make_recipe("paper", "denoising", sigma=10 / 255)

    folder_items = read_items(tmp_path / "data", Defaults(task="denoise", sigma=5))
    assert [i.name for i in folder_items] == ["a", "b", "m"]  # images only, sorted


@pytest.mark.parametrize("manifest, message", [
    ("input,colour\na.png,red\n", "unknown column 'colour'"),
    ("input,sigma\na.png,loud\n", "items.csv line 2: sigma must be a number"),
    ("input,iterations\na.png,2.5\n", "iterations must be a whole number"),
    ("input,task\na.png,deblur\n", "unknown task 'deblur'"),
    ("input,task\na.png,inpaint\n", "inpaint needs a --mask"),
    ("input,sigma\n,3\n", "no input"),
    ("input,method\na.png,sgd\n", "several chains need a sampling method"),
])
def test_bad_manifests_are_refused_before_any_work(tmp_path, manifest, message):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "items.csv").write_text(manifest)
    with pytest.raises(TfdipError, match=message):
        read_items(tmp_path / "items.csv", Defaults(task="denoise", sigma=25, chains=2))


def test_checkpoint_interval_is_refused_for_an_mcmc_item_of_the_manifest(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "items.csv").write_text("input,method\na.png,psgld\na.png,mala\n")
    defaults = Defaults(task="denoise", sigma=25, checkpoint_every=50)
    with pytest.raises(TfdipError, match="items.csv line 3: --checkpoint-every works with the "
                                         "optimizer methods .* not with method mala"):
        read_items(tmp_path / "items.csv", defaults)
    assert len(read_items(tmp_path / "items.csv", dataclasses.replace(
        defaults, checkpoint_every=None))) == 2


def test_settings_hash_follows_file_contents_and_settings(tmp_path):
    (tmp_path / "a.png").write_bytes(b"one")
    defaults = Defaults(task="denoise", sigma=25, iterations=30)

    def digest(**changes):
        return settings_hash(read_items(tmp_path, dataclasses.replace(defaults, **changes))[0]
                             .settings())

    first = digest()
    assert digest() == first
    assert digest(seed=1) != first and digest(sigma=20) != first and digest(chains=2) != first
    assert digest(iterations=None) != first  # the method's default length differs
    (tmp_path / "a.png").write_bytes(b"two")
    assert digest() != first


def test_command_line_refuses_options_of_the_other_engine(tmp_path, capsys):
    manifest = _write_items(tmp_path / "in", 1)
    assert run("batch", manifest, "-o", tmp_path / "out", *RUN, "--ray-address", "auto") == 2
    assert "--ray-address does not apply to --engine local" in capsys.readouterr().err
    assert run("batch", manifest, "-o", tmp_path / "out", *RUN, "--engine", "ray",
               "--workers", 2) == 2
    assert "--workers does not apply to --engine ray" in capsys.readouterr().err


def test_ray_engine_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    manifest = _write_items(tmp_path / "in", 1)
    assert run("batch", manifest, "-o", tmp_path / "out", *RUN, "--engine", "ray") == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and 'pip install "tfdip[ray]"' in error


# ------------------------------------------------------------------ pooling chains
def test_pooled_chains_equal_the_pooled_samples_and_the_in_process_run():
    observation, physics = _noisy(0), Denoising(SIGMA_255 / 255)
    recipe = make_recipe("psgld", "denoising", iterations=24, burn_in=8, thin=2, sigma=physics.sigma)
    chains = [restore_chain(observation, physics, recipe, chain=k, seed=4, net_options=TINY)
              for k in (1, 0)]  # any order
    pooled = pool_chains(chains, recipe, seed=4)
    # Law of total variance over the chains' own means and variances (not Chan's update).
    counts = np.array([c.count for c in chains], float)[:, None, None, None]
    means = np.stack([c.mean for c in chains]).astype(np.float64)
    second = np.stack([c.m2 for c in chains]) / counts + means**2
    mean = (counts * means).sum(0) / counts.sum()
    variance = (counts * second).sum(0) / counts.sum() - mean**2
    assert pooled.samples == 16
    np.testing.assert_allclose(pooled.image, np.clip(mean, 0, 1), atol=1e-6)
    np.testing.assert_allclose(pooled.std, np.sqrt(np.maximum(variance, 0)), atol=1e-4)
    assert pooled.diagnostics["num_chains"] == 2 and pooled.models == []

    in_process = restore(observation, physics, method="psgld", iterations=24, burn_in=8, thin=2,
                         chains=2, seed=4, net_options=TINY)
    np.testing.assert_allclose(pooled.image, in_process.image, atol=1e-6)
    np.testing.assert_allclose(pooled.std, in_process.std, atol=1e-6)
    assert len(in_process.models) == 2


# ------------------------------------------------------------------ local engine
@pytest.fixture(scope="module")
def local_batch(tmp_path_factory):
    """A 3-image batch plus one damaged image on two local workers, run once."""
    folder = tmp_path_factory.mktemp("local")
    manifest = _write_items(folder / "in", 3, corrupt=True)
    out = folder / "out"
    code = run("batch", manifest, "-o", out, *RUN, "--method", "paper", "--iterations", 30,
               "--burn-in", 10, "--thin", 2, "--workers", 2)
    return manifest, out, code


def test_local_batch_writes_every_item_and_a_summary_checked_against_numpy(local_batch):
    _, out, code = local_batch
    assert code == 1  # the damaged image failed
    rows = {row["name"] or row["input"]: row for row in _summary(out)}  # then "mean", "std"
    psnrs = []
    for index in range(3):
        folder, row = out / f"noisy{index}", rows[f"noisy{index}"]
        restored, std = np.load(folder / "restored.npy"), np.load(folder / "std.npy")
        clean = _clean(index)
        assert restored.shape == std.shape == clean.shape and (folder / "std.png").is_file()
        psnr = 10 * np.log10(1 / np.mean((restored.astype(np.float64) - clean) ** 2))
        coverage = np.mean(np.abs(restored - clean) <= 2 * std)
        assert row["status"] == "ok" and row["error"] == ""
        assert float(row["psnr"]) == pytest.approx(psnr, abs=1e-4)
        assert float(row["coverage_2std"]) == pytest.approx(coverage, abs=1e-9)
        assert int(row["samples"]) == 10 and float(row["seconds"]) > 0
        report = json.loads((folder / "report.json").read_text())
        assert report["settings_hash"] and report["method"] == "paper"
        last_psnr = 10 * np.log10(1 / np.mean((np.load(folder / "last.npy") - clean) ** 2))
        assert report["psnr_last"] == pytest.approx(last_psnr, abs=1e-4)
        assert "chain 1/1 step 30/30" in (folder / "log.txt").read_text()
        assert not (folder / "checkpoints").exists()  # removed once finished
        psnrs.append(psnr)
    assert float(rows["mean"]["psnr"]) == pytest.approx(np.mean(psnrs), abs=1e-4)
    assert float(rows["std"]["psnr"]) == pytest.approx(np.std(psnrs, ddof=1), abs=1e-4)
    assert "| **mean** |" in (out / "summary.md").read_text()


def test_a_corrupt_image_fails_alone_with_its_error(local_batch):
    _, out, _ = local_batch
    rows = _summary(out)
    assert [row["name"] for row in rows[:4]] == ["noisy0", "broken", "noisy1", "noisy2"]
    broken = rows[1]
    assert broken["status"] == "failed" and "broken.png" in broken["error"]
    assert "damaged" in broken["error"] or "cannot read" in broken["error"] or \
        "not an image" in broken["error"]
    assert "\n" not in broken["error"] and not (out / "broken" / "report.json").exists()
    assert "failed: " in (out / "broken" / "log.txt").read_text()
    assert [row["status"] for row in rows[:4]].count("ok") == 3


def test_rerun_skips_finished_items_and_retries_failed_ones(local_batch, capsys):
    manifest, out, _ = local_batch
    reports = {i: (out / f"noisy{i}" / "report.json") for i in range(3)}
    before = {i: path.stat().st_mtime_ns for i, path in reports.items()}
    code = run("batch", manifest, "-o", out, *RUN, "--method", "paper", "--iterations", 30,
               "--burn-in", 10, "--thin", 2, "--workers", 2)
    assert code == 1
    assert "3 ok (3 already finished), 1 failed" in capsys.readouterr().out
    assert {i: path.stat().st_mtime_ns for i, path in reports.items()} == before
    assert (out / "broken" / "log.txt").read_text().count(" start ") == 2


class _EngineWithAKiller:
    """Runs jobs in this process, except item ``noisy1``'s, whose worker dies every time."""

    capacity, threads = 2, None

    def __init__(self):
        self.submitted = []

    def submit(self, job):
        self.submitted.append(job.name)
        future = Future()
        if job.name == "noisy1":
            future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
        else:
            future.set_result(run_job(job))
        return future

    def worker_died(self, future, error):
        return "the worker process died" if isinstance(error, BrokenProcessPool) else None

    def may_retry_alone(self):
        return True


def test_an_item_that_kills_its_worker_is_retried_alone_then_fails_alone(tmp_path):
    manifest = _write_items(tmp_path / "in", 3)
    items = read_items(manifest, Defaults(task="denoise", sigma=SIGMA_255, method="sgd",
                                          iterations=4, net_options=TINY))
    engine = _EngineWithAKiller()
    result = run_batch(items, tmp_path / "out", engine, progress_stream=None)
    assert [row["status"] for row in result.rows] == ["ok", "failed", "ok"]
    assert result.rows[1]["error"] == "the worker process died"
    assert engine.submitted.count("noisy1") == 2  # once among others, once alone
    assert "retrying this job alone" in (tmp_path / "out" / "noisy1" / "log.txt").read_text()


def _batch_until(argv, path):
    """``tfdip batch argv`` started in a session of its own (stderr piped), once ``path`` exists."""
    env = {**os.environ, "PYTHONPATH": str(Path(tfdip.__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "tfdip.cli", *map(str, argv)], env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not path.exists() and time.monotonic() < deadline:
        assert process.poll() is None, f"the batch ended before {path.name} was written"
        time.sleep(0.02)
    return process


def test_killed_batch_reruns_only_unfinished_items_and_resumes_from_checkpoints(tmp_path):
    manifest = _write_items(tmp_path / "in", 3)
    out = tmp_path / "out"
    argv = ["batch", manifest, "-o", out, *RUN, "--method", "psgld", "--iterations", 300,
            "--checkpoint-every", 100]
    first_checkpoint = out / "noisy1" / "checkpoints" / "chain0" / "latest.json"
    process = _batch_until(argv, first_checkpoint)
    os.killpg(process.pid, signal.SIGKILL)  # the batch and its worker
    process.wait()
    assert first_checkpoint.exists()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/report.json")}
    assert "noisy0" in finished and "noisy1" not in finished  # killed mid-way through noisy1

    assert run(*argv) == 0
    for name, mtime in finished.items():  # finished items were not run again
        assert (out / name / "report.json").stat().st_mtime_ns == mtime
    assert all((out / f"noisy{i}" / "report.json").is_file() for i in range(3))
    log = (out / "noisy1" / "log.txt").read_text()
    assert "chain 1/1 resumed from the checkpoint at step" in log
    uninterrupted = restore(_noisy(1), Denoising(SIGMA_255 / 255), method="psgld",
                            iterations=300, net_options=TINY)
    np.testing.assert_allclose(np.load(out / "noisy1" / "restored.npy"), uninterrupted.image,
                               atol=1e-5)
    np.testing.assert_allclose(np.load(out / "noisy1" / "std.npy"), uninterrupted.std, atol=1e-5)


def test_interrupted_batch_stops_its_workers_at_once_and_keeps_the_checkpoints(tmp_path):
    manifest = _write_items(tmp_path / "in", 1)
    out = tmp_path / "out"
    argv = ["batch", manifest, "-o", out, *RUN, "--method", "psgld", "--iterations", 100000,
            "--checkpoint-every", 20]
    checkpoint = out / "noisy0" / "checkpoints" / "chain0" / "latest.json"
    process = _batch_until(argv, checkpoint)
    os.kill(process.pid, signal.SIGINT)  # Ctrl-C reaching the batch driver only
    try:  # a driver waiting for its item would run for hours
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the interrupted batch kept running")
    assert process.returncode == 130
    assert "interrupted after" in err and "run the same command again" in err
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the worker process ended with its driver
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("a worker process outlived the interrupted batch")
    assert checkpoint.exists() and not (out / "noisy0" / "report.json").exists()


# ------------------------------------------------------------------ Ray engine
# TensorFlow's float sums depend on its thread count, and Langevin steps amplify the difference,
# so a chain reproduces the in-process one exactly when it runs with as many threads (one per
# CPU of its Ray task) as this process has (one per core).
THREADS = available_cores()


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=max(2, THREADS), include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def test_ray_batch_pools_chains_run_as_separate_tasks_like_the_in_process_run(ray_session,
                                                                            tmp_path):
    manifest = _write_items(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert run("batch", manifest, "-o", out, *RUN, "--method", "psgld", "--iterations", 30,
               "--burn-in", 10, "--thin", 2, "--chains", 2, "--seed", 7,
               "--engine", "ray", "--cpus-per-task", THREADS) == 0
    assert ray_session.is_initialized()  # the caller's session is left running
    rows = _summary(out)
    assert [row["status"] for row in rows[:3]] == ["ok"] * 3
    for index in range(3):
        folder = out / f"noisy{index}"
        in_process = restore(_noisy(index), Denoising(SIGMA_255 / 255), method="psgld",
                             iterations=30, burn_in=10, thin=2, chains=2, seed=7,
                             net_options=TINY)
        np.testing.assert_allclose(np.load(folder / "restored.npy"), in_process.image, atol=1e-6)
        np.testing.assert_allclose(np.load(folder / "std.npy"), in_process.std, atol=1e-6)
        report = json.loads((folder / "report.json").read_text())
        assert report["samples"] == in_process.samples == 20 and report["chains"] == 2
        assert report["rhat_max"] == pytest.approx(in_process.diagnostics["rhat_max"], rel=1e-5)
        log = (folder / "log.txt").read_text()
        assert "chain 1/2 step 30/30" in log and "chain 2/2 step 30/30" in log
