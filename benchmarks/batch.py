"""Throughput of ``tfdip batch``: images per hour on this machine, one worker process against
``--workers 2`` against the Ray engine, and Ray's overhead per task.

The batch: 8 centre crops of 64x64 pixels from the denoising images (``shared/data/denoising``),
noised with sigma 25/255 (seed i for image i, stored as float ``.npy`` with the clean crop as the
reference). Every configuration restores the same 8 items with the same small fixed budget
(``--method psgld``, ``--iterations``, ``--channels``, seed 0, one chain) through the real command
(``python -m tfdip.cli batch``) in a fresh process, so the wall time includes everything a user
waits for: Python and TensorFlow start-up, worker processes (or the local Ray instance) starting,
graph tracing per item, training, and writing the outputs. Images per hour = 8 / wall time.

Ray's overhead per task is measured twice: the round trip of an empty Ray task (the median of
``--noop-tasks`` sequential tasks on a running local instance), and the start-up of a local Ray
instance (``ray.init``). The machine's load average is recorded before and after every
configuration: the machine may be shared, so compare the configurations as ratios within one run.

Usage::

    python benchmarks/batch.py                       # writes benchmarks/results/batch.{json,md}
    python benchmarks/batch.py --iterations 50 --out /tmp/batch_bench
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA_CANDIDATES = (REPO.parent / "shared" / "data", Path("/work/shared/data"))
IMAGES = ("baboon.png", "f16.png", "house.png", "kodim01.png", "kodim02.png", "kodim03.png",
          "lena.png", "peppers.png")
CROP = 64
SIGMA_255 = 25.0
CONFIGURATIONS = {
    "one process": ["--engine", "local", "--workers", "1"],
    "--workers 2": ["--engine", "local", "--workers", "2"],
    "ray (local instance, 1 CPU per task)": ["--engine", "ray", "--cpus-per-task", "1"],
}


def find_data() -> Path:
    for candidate in DATA_CANDIDATES:
        if (candidate / "denoising").is_dir():
            return candidate / "denoising"
    sys.exit("benchmarks/batch.py: the benchmark images (shared/data/denoising) are not here")


def write_items(folder: Path, data: Path) -> Path:
    """The 8 noisy crops and their references as .npy, and a CSV manifest of them."""
    from tfdip import io
    from tfdip.physics import Denoising

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, name in enumerate(IMAGES):
        pixels = io.read_image(data / name).pixels
        top, left = (pixels.shape[0] - CROP) // 2, (pixels.shape[1] - CROP) // 2
        clean = pixels[top:top + CROP, left:left + CROP]
        noisy = Denoising(SIGMA_255 / 255).simulate(clean, seed=index)
        stem = Path(name).stem
        np.save(folder / f"{stem}.npy", noisy)
        np.save(folder / f"{stem}_clean.npy", clean)
        rows.append({"input": f"{stem}.npy", "reference": f"{stem}_clean.npy"})
    manifest = folder / "items.csv"
    with open(manifest, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["input", "reference"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def run_configuration(manifest: Path, out: Path, options, budget) -> dict:
    command = [sys.executable, "-m", "tfdip.cli", "batch", str(manifest), "-o", str(out),
               "--task", "denoise", "--sigma", str(SIGMA_255), "--method", "psgld",
               "--iterations", str(budget["iterations"]), "--channels", str(budget["channels"]),
               "--seed", "0", "--quiet", *options]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    load_before = os.getloadavg()
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{completed.stderr}")
    with open(out / "summary.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["status"] == "ok"]
    item_seconds = [float(row["seconds"]) for row in rows]
    return {
        "options": options, "wall_seconds": wall, "images": len(rows),
        "images_per_hour": len(rows) / wall * 3600.0,
        "item_seconds_sum": sum(item_seconds), "item_seconds_median": statistics.median(item_seconds),
        "psnr_mean": float(np.mean([float(row["psnr"]) for row in rows])),
        "load_before": load_before, "load_after": os.getloadavg(),
    }


def ray_overhead(noop_tasks: int) -> dict:
    """Start-up of a local Ray instance and the round trip of an empty task."""
    import logging

    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    startup = time.perf_counter() - start

    @ray.remote(num_cpus=1)
    def noop(value):
        return value

    ray.get(noop.remote(0))  # a worker process is up
    round_trips = []
    for index in range(noop_tasks):
        start = time.perf_counter()
        ray.get(noop.remote(index))
        round_trips.append(time.perf_counter() - start)
    ray.shutdown()
    return {"ray_init_seconds": startup, "noop_task_round_trip_median_seconds":
            statistics.median(round_trips), "noop_tasks": noop_tasks}


def machine() -> dict:
    import ray
    import tensorflow as tf

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "tensorflow": tf.__version__, "ray": ray.__version__,
            "commit": commit or "unknown",
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def markdown(results) -> str:
    budget = results["budget"]
    lines = [
        "# `tfdip batch` throughput", "",
        f"8 centre crops of {CROP}x{CROP} from `shared/data/denoising` "
        f"({', '.join(IMAGES)}), sigma 25/255, psgld, {budget['iterations']} iterations, "
        f"{budget['channels']}-channel skip net, seed 0, one chain per image: a small fixed "
        f"budget, so start-up and tracing weigh more than in a real run "
        f"(3000 iterations, 128 channels).", "",
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs, "
        f"TensorFlow {results['machine']['tensorflow']}, Ray {results['machine']['ray']}, "
        f"{results['machine']['date_utc']} UTC, tfdip at commit "
        f"{results['machine'].get('commit', 'unknown')}. The machine was shared with other jobs during "
        f"the run (load averages below): compare the rows as ratios, not as absolute speeds.", "",
        "| configuration | wall (s) | images / hour | vs one process | sum of item seconds "
        "| mean PSNR (dB) | load avg before -> after (1 min) |",
        "|---|---:|---:|---:|---:|---:|---|"]
    base = results["configurations"]["one process"]["images_per_hour"]
    for name, row in results["configurations"].items():
        lines.append(
            f"| {name} | {row['wall_seconds']:.1f} | {row['images_per_hour']:.0f} | "
            f"{row['images_per_hour'] / base:.2f}x | {row['item_seconds_sum']:.1f} | "
            f"{row['psnr_mean']:.2f} | {row['load_before'][0]:.2f} -> {row['load_after'][0]:.2f} |")
    overhead = results["ray_overhead"]
    ray_row = results["configurations"]["ray (local instance, 1 CPU per task)"]
    local_row = results["configurations"]["--workers 2"]
    lines += [
        "", "Ray's overhead:", "",
        f"- an empty Ray task's round trip on a running local instance: "
        f"{overhead['noop_task_round_trip_median_seconds'] * 1000:.1f} ms (median of "
        f"{overhead['noop_tasks']});",
        f"- starting a local Ray instance (`ray.init`): {overhead['ray_init_seconds']:.1f} s;",
        f"- the whole batch on Ray against two local workers (same two CPUs): "
        f"{(ray_row['wall_seconds'] - local_row['wall_seconds']) / 8:+.1f} s per image "
        f"(Ray start-up included).",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--noop-tasks", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    budget = {"iterations": args.iterations, "channels": args.channels, "method": "psgld",
              "seed": 0, "chains": 1, "sigma_255": SIGMA_255, "crop": CROP}
    results = {"budget": budget, "machine": machine(), "configurations": {}}
    with tempfile.TemporaryDirectory() as scratch:
        manifest = write_items(Path(scratch) / "items", find_data())
        for name, options in CONFIGURATIONS.items():
            print(f"{name} ...", flush=True)
            results["configurations"][name] = run_configuration(
                manifest, Path(scratch) / name.split()[0].strip("-"), options, budget)
            print(f"  {results['configurations'][name]['wall_seconds']:.1f} s", flush=True)
    results["ray_overhead"] = ray_overhead(args.noop_tasks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "batch.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
