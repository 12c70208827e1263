"""The paper's inpainting and denoising tables at CPU scale, run through ``tfdip batch``.

Protocol (reference.md section 4, scaled to a 2-core CPU):

- **Inpainting**: the 11 gray images of ``../shared/data/inpainting/`` (the paper's order), a
  centre crop of ``--crop`` pixels (default 64). The 50% Bernoulli mask of every image is drawn at
  full size with the image's fixed seed (``gp_inpainting.SEEDS``: 100 + its index, the masks of
  ``benchmarks/gp_inpainting.py``) and cropped, so every method and every network seed sees the
  same mask. No noise.
- **Denoising**: the 9 colour images at the top of ``../shared/data/denoising/``, centre crops,
  additive Gaussian noise of std 25/255 clipped to [0, 1], one fixed noise draw per image (seed =
  its index in :data:`DENOISING_IMAGES`), shared by every method.
- **DIP rows**, each one ``python -m tfdip.cli batch`` run per (method, network seed) over a
  manifest of the crops (observation ``.npy``, mask PNG, clean reference ``.npy``): ``sgd`` (the
  DIP recipe; its EMA, the restored image, and its last iterate, ``last.npy``), ``paper`` (the
  authors' recipe, posterior mean) and ``psgld`` (the default, posterior mean and std). Budgets,
  step sizes, burn-in (35%) and thinning (iterations // 400) are the recipes' defaults
  (:mod:`tfdip.recipes`): sgd 1800 steps; paper and psgld 3000 steps, burn-in 1050, a sample
  every 7 steps (279 samples). The default skip net (128 channels). Network seeds 0, 1, 2 for
  ``sgd`` and ``psgld``, 0 for ``paper``. ``--workers 1`` (one process with both cores' threads:
  ``benchmarks/results/batch.md`` found it the fastest layout on 2 cores).
- **Classical rows**, run in this process on the same crops: scikit-image's
  ``inpaint_biharmonic`` (inpainting), CBM3D (``bm3d.bm3d_rgb`` with the true sigma; denoising,
  when the ``bm3d`` package is installed), and GP restoration (``tfdip.gp.gp_restore``) with an
  RBF kernel whose hyper-parameters are fitted by marginal likelihood (``GP-RBF``) and with the
  analytic DIP kernel of the paper's GP experiment (``GP-DIP``: noise-free and zero mean for
  inpainting, as in ``gp_experiment.py``; for denoising with the known sigma and a fitted
  amplitude and constant mean).

Scores, against the clean crop: PSNR (data range 1) of the output, and for inpainting also with
the known pixels copied back from the observation ("kept", the paper's protocol); SSIM (kept for
inpainting); the 2-std coverage of the posterior std over all pixels and, for inpainting, over
the missing pixels; seconds (the batch report's wall time of the restoration). Per image and
method: mean and sample std over the seeds. Over the images: the mean of the per-image means, the
std over images of those means, and the std over seeds of the per-seed averages over all images
(how much the table's average moves with the network seed).

Cost (measured with ``tfdip batch`` on a 64x64 inpainting crop, default net, pSGLD, 150 steps,
at ``nice 19`` beside another benchmark, load average 4-6): 0.34 s per step. On the idle machine
the README's speed benchmark gives 67 ms for the full DIP step at 64x64 (221 ms at 128x128).
Steps per image: sgd 3 x 1800 + psgld 3 x 3000 + paper 3000 = 17,400. Inpainting: 11 x 17,400 =
191,400 steps = 3.6 h at 67 ms (denoising: 9 x 17,400 = 156,600 steps = 2.9 h), plus about 15 s
per item for start-up and tracing (77 + 63 items: 0.6 h), plus the classical rows (measured
on 64x64 crops beside another job: the fitted RBF GP of a colour denoising crop 60 s, CBM3D 5 s,
biharmonic under 0.1 s; the fitted RBF GP of the 64x64 inpainting crop of ``gp_experiment.py``
86-335 s): 0.5-1 h for inpainting, 0.3 h for denoising. In all about 4.5-5 hours for the
inpainting table and 3.5 hours for the denoising table on the idle machine, about five times that
beside another job of the same size (0.34 s per step). At 128x128 the DIP rows cost 3.3 times
as much (about 21 hours for both), hence 64x64.

Everything is resumable: the crops, masks and references are written once into the work folder
(``--work``, default ``benchmarks/work/paper_tables``), each batch skips the items it finished (its
settings hash), and each classical result is cached. The tables, figures and JSON are rebuilt
from the work folder after every run, or alone with ``--report-only``.

Usage::

    python benchmarks/paper_tables.py --table inpainting            # the full inpainting table
    python benchmarks/paper_tables.py --table denoising
    python benchmarks/paper_tables.py --table inpainting --methods sgd --seeds 0 --images boat
    python benchmarks/paper_tables.py --report-only                 # results from the work folder
    python benchmarks/paper_tables.py --table inpainting --images boat house --crop 32 \
        --iterations 20 --channels 8 --work /tmp/pt/work --out /tmp/pt/results   # smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bayes_denoising import machine
from gp_inpainting import DATA as INPAINTING_DATA
from gp_inpainting import IMAGES as INPAINTING_IMAGES
from gp_inpainting import PAPER as PAPER_INPAINTING
from gp_inpainting import SEEDS as MASK_SEEDS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DENOISING_DATA = INPAINTING_DATA.parent / "denoising"
DENOISING_IMAGES = ["house", "peppers", "lena", "baboon", "f16", "kodim01", "kodim02", "kodim03",
                    "kodim12"]
SIGMA_255 = 25.0
TABLES = {
    "inpainting": {"task": "inpaint", "images": INPAINTING_IMAGES,
                   "classical": ("biharmonic", "gp_rbf", "gp_dip")},
    "denoising": {"task": "denoise", "images": DENOISING_IMAGES,
                  "classical": ("cbm3d", "gp_rbf", "gp_dip")},
}
DIP_METHODS = ("sgd", "paper", "psgld")
SEEDS = {"sgd": (0, 1, 2), "paper": (0,), "psgld": (0, 1, 2)}
#: Table rows: (label, method, which output of its batch item); classical rows read "restored".
ROWS = {
    "sgd_ema": ("DIP recipe (`sgd`), EMA", "sgd", "restored"),
    "sgd_last": ("DIP recipe (`sgd`), last iterate", "sgd", "last"),
    "paper": ("authors' recipe (`paper`), posterior mean", "paper", "restored"),
    "psgld": ("`psgld` (default), posterior mean", "psgld", "restored"),
    "biharmonic": ("scikit-image biharmonic", "biharmonic", "restored"),
    "cbm3d": ("CBM3D (`bm3d`, true sigma)", "cbm3d", "restored"),
    "gp_rbf": ("GP, RBF fitted", "gp_rbf", "restored"),
    "gp_dip": ("GP, DIP kernel", "gp_dip", "restored"),
}
SEEDED_ROWS = ("sgd_ema", "sgd_last", "paper", "psgld")
#: The paper's numbers (reference.md section 4), per image where known, and its averages.
PAPER_DENOISING = {
    "SGD (poster)": {"house": 26.74, "peppers": 28.42, "lena": 29.17},
    "SGLD (poster)": {"house": 30.86, "peppers": 30.82, "lena": 32.05},
}
PAPER_DENOISING_AVERAGES = {"DIP, 1800 steps": 29.22, "DIP + EMA": 30.43,
                            "DIP, two runs averaged": 31.00, "CBM3D": 31.42,
                            "non-local means": 30.26}


# ------------------------------------------------------------------ aggregation (pure)
def seed_statistics(values: dict) -> dict:
    """Statistics of ``values[image][seed]`` (floats) over seeds and images.

    Returns ``per_image[image] = (mean over seeds, sample std over seeds or None with one seed)``,
    ``mean`` (the mean over images of the per-image means), ``std_images`` (sample std over
    images of the per-image means), ``per_seed[seed]`` (the average over all images, for the
    seeds that every image has) and ``std_seeds`` (sample std over seeds of those averages, None
    with fewer than two such seeds).
    """
    per_image = {}
    for image, by_seed in values.items():
        runs = np.array(list(by_seed.values()), dtype=np.float64)
        per_image[image] = (float(runs.mean()), float(runs.std(ddof=1)) if runs.size > 1 else None)
    means = np.array([mean for mean, _ in per_image.values()], dtype=np.float64)
    common = set.intersection(*(set(by_seed) for by_seed in values.values())) if values else set()
    per_seed = {seed: float(np.mean([values[image][seed] for image in values]))
                for seed in sorted(common)}
    averages = np.array(list(per_seed.values()), dtype=np.float64)
    return {"per_image": per_image,
            "mean": float(means.mean()) if means.size else None,
            "std_images": float(means.std(ddof=1)) if means.size > 1 else None,
            "per_seed": per_seed,
            "std_seeds": float(averages.std(ddof=1)) if averages.size > 1 else None}


# ------------------------------------------------------------------ problems on disk
def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size`` x ``size`` window of an (H, W, ...) array."""
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    if top < 0 or left < 0:
        raise SystemExit(f"paper_tables: error: crop {size} is larger than an image "
                         f"({image.shape[1]}x{image.shape[0]})")
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def write_problems(table: str, images, crop: int, folder: Path) -> Path:
    """Write the clean crops, observations and masks of ``images`` into ``folder`` (once) and a
    manifest listing them; returns the manifest."""
    from tfdip.io import write_image
    from tfdip.physics import Denoising

    for sub in ("observed", "clean", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    lines = ["input,mask,reference"] if table == "inpainting" else ["input,reference"]
    for name in images:
        observed, clean_path = folder / "observed" / f"{name}.npy", folder / "clean" / f"{name}.npy"
        mask_path = folder / "masks" / f"{name}.png"
        if table == "inpainting":
            full = np.asarray(Image.open(INPAINTING_DATA / f"{name}.png").convert("L"),
                              np.float32) / 255.0
            known_full = np.random.default_rng(MASK_SEEDS[name]).random(full.shape) < 0.5
            clean = centre_crop(full, crop)[:, :, None]
            known = centre_crop(known_full, crop)
            if not observed.exists():
                write_image(clean_path, clean)
                Image.fromarray(known.astype(np.uint8) * 255).save(mask_path)
                write_image(observed, clean * known[:, :, None])
            lines.append(f"observed/{name}.npy,masks/{name}.png,clean/{name}.npy")
        else:
            full = np.asarray(Image.open(DENOISING_DATA / f"{name}.png").convert("RGB"),
                              np.float32) / 255.0
            clean = centre_crop(full, crop)
            if not observed.exists():
                write_image(clean_path, clean)
                noisy = Denoising(SIGMA_255 / 255.0).simulate(
                    clean, seed=DENOISING_IMAGES.index(name))
                write_image(observed, noisy)
            lines.append(f"observed/{name}.npy,clean/{name}.npy")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def load_problem_files(folder: Path, name: str):
    """(clean (H, W, C), observation (H, W, C), known (H, W) bool or None) of one crop."""
    clean = np.load(folder / "clean" / f"{name}.npy")
    observation = np.load(folder / "observed" / f"{name}.npy")
    mask_path = folder / "masks" / f"{name}.png"
    known = np.asarray(Image.open(mask_path)) > 0 if mask_path.exists() else None
    return clean, observation, known


# ------------------------------------------------------------------ running the rows
def run_batch(table: str, method: str, seed: int, manifest: Path, out: Path, args) -> dict:
    """``tfdip batch`` over the manifest for one (method, seed) in a subprocess; its record."""
    command = [sys.executable, "-m", "tfdip.cli", "batch", str(manifest), "--out", str(out),
               "--task", TABLES[table]["task"], "--method", method, "--seed", str(seed),
               "--workers", str(args.workers)]
    if table == "denoising":
        command += ["--sigma", f"{SIGMA_255:g}"]
    if args.iterations:
        command += ["--iterations", str(args.iterations)]
    if args.channels:
        command += ["--channels", str(args.channels)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    out.parent.mkdir(parents=True, exist_ok=True)
    load_before, start = os.getloadavg(), time.perf_counter()
    print(f"[{time.strftime('%H:%M:%S')}] {table} {method} seed {seed}: {' '.join(command[1:])}",
          flush=True)
    finished = subprocess.run(command, env=env, check=False)
    if finished.returncode not in (0, 1):  # 1: some item failed (recorded in its summary)
        raise SystemExit(f"paper_tables: error: tfdip batch exited with status "
                         f"{finished.returncode} for {table} {method} seed {seed}")
    return {"table": table, "method": method, "seed": seed, "exit_status": finished.returncode,
            "seconds": time.perf_counter() - start, "load_before": load_before,
            "load_after": os.getloadavg(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def run_classical(table: str, method: str, name: str, problems: Path, out: Path) -> None:
    """One classical restoration of one crop, cached as ``out/<name>.json`` + ``.npy`` files."""
    record_path = out / f"{name}.json"
    if record_path.exists():
        return
    from tfdip.io import write_image, write_json

    clean, observation, known = load_problem_files(problems, name)
    load, start = os.getloadavg(), time.perf_counter()
    std, extra = None, {}
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        image = inpaint_biharmonic(observation[:, :, 0], ~known)[:, :, None]
    elif method == "cbm3d":
        import bm3d

        image = np.clip(bm3d.bm3d_rgb(observation.astype(np.float64), SIGMA_255 / 255.0), 0, 1)
    else:
        from tfdip.gp import gp_restore

        if table == "inpainting" and method == "gp_rbf":
            result = gp_restore(observation, known, kernel="rbf")
        elif table == "inpainting":
            result = gp_restore(observation, known, kernel="dip", fit=False, mean="zero")
        else:
            result = gp_restore(observation, sigma=SIGMA_255 / 255.0,
                                kernel="rbf" if method == "gp_rbf" else "dip")
        image, std = result.mean, np.broadcast_to(result.std[:, :, None], result.mean.shape)
        extra = {"hyperparameters": result.hyperparameters, "solver": result.solver,
                 "notes": result.notes}
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    write_image(out / f"{name}.npy", np.asarray(image, np.float32))
    if std is not None:
        write_image(out / f"{name}_std.npy", np.ascontiguousarray(std, np.float32))
    write_json(record_path, {"seconds": seconds, "load_average": load, **extra})
    print(f"[{time.strftime('%H:%M:%S')}] {table} {method} {name}: {seconds:.1f} s", flush=True)


# ------------------------------------------------------------------ scores from disk
def scores(clean, observation, known, image, std) -> dict:
    """PSNR (raw and with the known pixels kept), SSIM, 2-std coverage (all / missing pixels)."""
    from tfdip.inference.calibration import uncertainty_report
    from tfdip.metrics import psnr, ssim

    record = {"psnr": psnr(image, clean)}
    kept = image
    if known is not None:
        kept = np.where(known[:, :, None], observation, image)
        record["psnr_kept"] = psnr(kept, clean)
    record["ssim"] = ssim(kept, clean)
    if std is not None:
        record["coverage_all"] = uncertainty_report(image, std, clean)["coverage_2std"]
        if known is not None:
            missing = np.broadcast_to(~known[:, :, None], clean.shape)
            record["coverage_missing"] = uncertainty_report(image, std, clean,
                                                            mask=missing)["coverage_2std"]
    return record


def collect(table: str, work: Path) -> dict:
    """Every finished run of ``table`` in the work folder: ``runs[row][image][seed] = scores``."""
    problems = work / table / "problems"
    runs = {row: {} for row in ROWS}
    images = [name for name in TABLES[table]["images"]
              if (problems / "observed" / f"{name}.npy").exists()]
    for name in images:
        clean, observation, known = load_problem_files(problems, name)
        for method in DIP_METHODS:
            for folder in sorted((work / table / "batch").glob(f"{method}-seed*")):
                item = folder / name
                report_path = item / "report.json"
                if not report_path.exists():
                    continue
                report = json.loads(report_path.read_text())
                seed = int(folder.name.split("seed")[1])
                std = np.load(item / "std.npy") if (item / "std.npy").exists() else None
                for row, (_, row_method, output) in ROWS.items():
                    if row_method != method or not (item / f"{output}.npy").exists():
                        continue
                    record = scores(clean, observation, known, np.load(item / f"{output}.npy"),
                                    std if output == "restored" else None)
                    record.update(seconds=report["seconds"], iterations=report["iterations"],
                                  samples=report["samples"],
                                  seconds_per_iteration=report["seconds_per_iteration"])
                    runs[row].setdefault(name, {})[seed] = record
        for method in TABLES[table]["classical"]:
            folder = work / table / "classical" / method
            if not (folder / f"{name}.json").exists():
                continue
            cached = json.loads((folder / f"{name}.json").read_text())
            std_path = folder / f"{name}_std.npy"
            record = scores(clean, observation, known, np.load(folder / f"{name}.npy"),
                            np.load(std_path) if std_path.exists() else None)
            record["seconds"] = cached["seconds"]
            runs[method].setdefault(name, {})[0] = record
    return {row: by_image for row, by_image in runs.items() if by_image}


METRICS = ("psnr_kept", "psnr", "ssim", "coverage_all", "coverage_missing", "seconds")


def summarise(runs: dict) -> dict:
    """:func:`seed_statistics` of every metric of every row."""
    summary = {}
    for row, by_image in runs.items():
        summary[row] = {}
        for metric in METRICS:
            values = {image: {seed: record[metric] for seed, record in by_seed.items()
                              if record.get(metric) is not None}
                      for image, by_seed in by_image.items()}
            values = {image: by_seed for image, by_seed in values.items() if by_seed}
            if values:
                summary[row][metric] = seed_statistics(values)
    return summary


# ------------------------------------------------------------------ tables and figures
def _cell(stats, image) -> str:
    if image not in stats["per_image"]:
        return ""
    mean, std = stats["per_image"][image]
    return f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")


def table_markdown(table: str, protocol: dict, runs: dict, summary: dict, stages: list) -> list:
    images = [name for name in TABLES[table]["images"]
              if any(name in by_image for by_image in runs.values())]
    headline = "psnr_kept" if table == "inpainting" else "psnr"
    what = ("PSNR (dB) with the known pixels kept" if table == "inpainting" else "PSNR (dB)")
    lines = [f"## {table.capitalize()}", "",
             f"Protocol: {protocol_text(table, protocol)}", "",
             f"{what}, mean ± std over network seeds (seeds per row in the last column). The "
             f"average is the mean over the images with a value; ± its std over the seeds of the "
             f"per-seed averages (rows with several seeds that cover every image). The paper's "
             f"rows (*in italics*: reference.md section 4) are on the full-size images with the "
             f"paper's budgets, not re-run here.", "",
             "| row | " + " | ".join(images) + " | average | std over images | seeds |",
             "|---|" + "---:|" * (len(images) + 3)]
    for row, stats_by_metric in summary.items():
        stats = stats_by_metric.get(headline)
        if stats is None:
            continue
        seeds = ", ".join(str(seed) for seed in sorted(
            {seed for by_seed in runs[row].values() for seed in by_seed}))
        complete = len(stats["per_image"]) == len(images)
        average = "" if not complete else f"**{stats['mean']:.2f}**" + (
            "" if stats["std_seeds"] is None else f" ± {stats['std_seeds']:.2f}")
        spread = "" if stats["std_images"] is None or not complete else f"{stats['std_images']:.2f}"
        lines.append(f"| {ROWS[row][0]} | " + " | ".join(_cell(stats, n) for n in images)
                     + f" | {average} | {spread} | {seeds if row in SEEDED_ROWS else '–'} |")
    lines += paper_rows(table, images) + [""]
    if table == "denoising":
        lines += ["The paper's averages over the 9 full-size images: " + ", ".join(
            f"{label} {value:.2f}" for label, value in PAPER_DENOISING_AVERAGES.items()) + ".", ""]
    metrics = METRICS if table == "inpainting" else ("psnr", "ssim", "coverage_all", "seconds")
    labels = {"psnr_kept": "PSNR kept", "psnr": "PSNR", "ssim": "SSIM",
              "coverage_all": "coverage (all)", "coverage_missing": "coverage (missing)",
              "seconds": "seconds"}
    lines += ["Averages of every score over the images with a value (mean of the per-image seed "
              "means; coverage = fraction of pixels within 2 posterior stds; seconds = wall time "
              "of one restoration):", "",
              "| row | " + " | ".join(labels[m] for m in metrics) + " |",
              "|---|" + "---:|" * len(metrics)]
    for row, stats_by_metric in summary.items():
        cells = []
        for metric in metrics:
            stats = stats_by_metric.get(metric)
            pattern = "{:.3f}" if metric.startswith(("ssim", "coverage")) else (
                "{:.1f}" if metric == "seconds" else "{:.2f}")
            cells.append("" if stats is None else pattern.format(stats["mean"]))
        lines.append(f"| {ROWS[row][0]} | " + " | ".join(cells) + " |")
    if stages:
        loads = [stage["load_before"][0] for stage in stages] + [stage["load_after"][0]
                                                                 for stage in stages]
        hours = sum(stage["seconds"] for stage in stages) / 3600
        lines += ["", f"{len(stages)} batch run(s), {hours:.2f} h in all; 1-minute load average "
                      f"{min(loads):.1f}-{max(loads):.1f} at their starts and ends (2 cores, "
                      f"shared with other jobs: seconds are upper bounds)."]
    return lines


def paper_rows(table: str, images) -> list:
    """The paper's numbers for ``images`` as rows of the main table, with their average."""
    lines = []
    if table == "inpainting":
        for label, numbers in PAPER_INPAINTING.items():
            values = [numbers[INPAINTING_IMAGES.index(name)] for name in images]
            lines.append(f"| *paper: {label}* | " + " | ".join(f"*{v:.2f}*" for v in values)
                         + f" | *{np.mean(values):.2f}* | | |")
    else:
        for label, numbers in PAPER_DENOISING.items():
            lines.append(f"| *paper: {label}* | " + " | ".join(
                f"*{numbers[name]:.2f}*" if name in numbers else "" for name in images)
                + " | | | |")
    return lines


def protocol_text(table: str, protocol: dict) -> str:
    """The protocol of a table's runs as one paragraph."""
    crop, budgets = protocol["crop"], protocol["budgets"]
    parts = [f"centre crops of {crop}x{crop} pixels",
             protocol["mask"] if table == "inpainting" else protocol["noise"],
             f"skip net with {protocol['channels']} channels"]
    for method, budget in budgets.items():
        text = (f"`{method}` {budget['iterations']} steps at step size {budget['learning_rate']:g}"
                f", input jitter {budget['input_noise_std']:.3g}")
        if budget["burn_in"] is not None:
            text += f", burn-in {budget['burn_in']}, a sample every {budget['thin']} steps"
        parts.append(text + f", network seeds {', '.join(map(str, protocol['seeds'][method]))}")
    parts.append(f"`tfdip batch --workers {protocol['workers']}`")
    return "; ".join(parts) + "."


def bar_chart(table: str, summary: dict, path: Path) -> None:
    from tfdip.viz import save_figure
    import matplotlib.pyplot as plt

    headline = "psnr_kept" if table == "inpainting" else "psnr"
    rows = [row for row in summary if headline in summary[row]]
    images = [name for name in TABLES[table]["images"]
              if any(name in summary[row][headline]["per_image"] for row in rows)]
    if not rows or not images:
        return
    figure, axis = plt.subplots(figsize=(max(8, 1.1 * len(images) * len(rows) / 3), 4.5))
    width = 0.8 / len(rows)
    for index, row in enumerate(rows):
        per_image = summary[row][headline]["per_image"]
        means = [per_image.get(name, (np.nan, None))[0] for name in images]
        errors = [per_image.get(name, (np.nan, None))[1] or 0.0 for name in images]
        axis.bar(np.arange(len(images)) + (index - (len(rows) - 1) / 2) * width, means, width,
                 yerr=errors, capsize=2, label=ROWS[row][0].replace("`", ""))
    axis.set_xticks(np.arange(len(images)), images, rotation=30)
    axis.set_ylabel("PSNR (dB)" + (", known pixels kept" if table == "inpainting" else ""))
    low = min(np.nanmin([v[0] for v in summary[r][headline]["per_image"].values()]) for r in rows)
    axis.set_ylim(max(0.0, low - 3), None)
    axis.set_title(f"{table}: mean over network seeds, error bars = std over seeds")
    axis.legend(fontsize=7, ncol=2)
    save_figure(figure, path)


def panels(table: str, work: Path, images, path: Path) -> None:
    """Clean, observation, DIP EMA, pSGLD mean and std, the classical reference, per image."""
    from tfdip.viz import save_figure
    import matplotlib.pyplot as plt

    problems = work / table / "problems"
    classical = "biharmonic" if table == "inpainting" else "cbm3d"
    batch = work / table / "batch"
    columns = [("clean", None), ("observation", None), ("sgd EMA", batch / "sgd-seed0"),
               ("psgld mean", batch / "psgld-seed0"), ("psgld std", batch / "psgld-seed0"),
               (classical, work / table / "classical" / classical)]
    shown = [name for name in images if (batch / "psgld-seed0" / name / "std.npy").exists()]
    if not shown:
        return
    figure, axes = plt.subplots(len(shown), len(columns), figsize=(2.2 * len(columns),
                                                                   2.3 * len(shown)), squeeze=False)
    for r, name in enumerate(shown):
        clean, observation, _ = load_problem_files(problems, name)
        for c, (label, folder) in enumerate(columns):
            axis = axes[r, c]
            axis.axis("off")
            if label == "clean":
                picture = clean
            elif label == "observation":
                picture = observation
            elif label == "psgld std":
                picture = np.load(folder / name / "std.npy").mean(axis=-1)
            elif folder == work / table / "classical" / classical:
                file = folder / f"{name}.npy"
                if not file.exists():
                    continue
                picture = np.load(file)
            else:
                file = folder / name / "restored.npy"
                if not file.exists():
                    continue
                picture = np.load(file)
            if picture.ndim == 2:
                figure.colorbar(axis.imshow(picture, cmap="magma"), ax=axis, fraction=0.046)
            else:
                picture = np.clip(picture, 0, 1)
                axis.imshow(picture[:, :, 0] if picture.shape[2] == 1 else picture, cmap="gray",
                            vmin=0, vmax=1)
            axis.set_title(f"{name}: {label}" if c == 0 else label, fontsize=8)
    save_figure(figure, path)


def report(args) -> None:
    """Rebuild ``paper_tables.json`` / ``.md`` and the figures from the work folder."""
    from tfdip.io import write_json

    results = {"benchmark": "the paper's inpainting and denoising tables through tfdip batch",
               "machine": machine(), "load_average_now": os.getloadavg(), "tables": {}}
    lines = ["# The paper's tables at CPU scale (`benchmarks/paper_tables.py`)", "",
             "Every DIP row ran through `tfdip batch`; the classical rows in-process on the same "
             "crops. The protocol is in the script's docstring and below each table.", "",
             f"Machine: {json.dumps(results['machine'])}", ""]
    figures = args.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        protocol_path = args.work / table / "protocol.json"
        if not protocol_path.exists():
            continue
        protocol = json.loads(protocol_path.read_text())
        stages_path = args.work / table / "stages.json"
        stages = json.loads(stages_path.read_text()) if stages_path.exists() else []
        runs = collect(table, args.work)
        summary = summarise(runs)
        results["tables"][table] = {"protocol": protocol, "stages": stages, "runs": runs,
                                    "summary": summary}
        lines += table_markdown(table, protocol, runs, summary, stages) + [""]
        bar_chart(table, summary, figures / f"paper_tables_{table}.png")
        panels(table, args.work, TABLES[table]["images"][:3],
               figures / f"paper_tables_{table}_panels.png")
        lines += [f"![{table}: PSNR per image](figures/paper_tables_{table}.png)",
                  f"![{table}: restorations and std maps](figures/paper_tables_{table}_panels.png)",
                  ""]
    results["paper"] = {"inpainting": PAPER_INPAINTING, "denoising": PAPER_DENOISING,
                        "denoising_averages": PAPER_DENOISING_AVERAGES}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "paper_tables.json", _json_ready(results))
    (args.out / "paper_tables.md").write_text("\n".join(lines) + "\n")
    print(f"results in {args.out / 'paper_tables.md'}", flush=True)


def _json_ready(value):
    """Seeds (int keys) and tuples as JSON has them."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


# ------------------------------------------------------------------ command line
def protocol_of(table: str, args) -> dict:
    from tfdip.recipes import make_recipe

    task = {"inpainting": "inpainting", "denoising": "denoising"}[table]
    budgets = {}
    for method in DIP_METHODS:
        recipe = make_recipe(method, task, iterations=args.iterations or None)
        budgets[method] = {"iterations": recipe.iterations, "learning_rate": recipe.learning_rate,
                           "burn_in": recipe.burn_in, "thin": recipe.thin,
                           "input_noise_std": recipe.input_noise_std}
    protocol = {"crop": args.crop, "channels": args.channels or 128, "budgets": budgets,
                "seeds": {m: list(SEEDS[m]) for m in DIP_METHODS}, "workers": args.workers}
    if table == "inpainting":
        protocol.update(mask="50% Bernoulli, drawn at full size with seed 100 + image index "
                             "(gp_inpainting.SEEDS), centre-cropped", noise=0)
    else:
        protocol.update(noise="Gaussian sigma 25/255, clipped to [0, 1], seed = image index")
    return protocol


def check_request(table: str, args) -> tuple[list, list, dict]:
    """(images, methods, protocol) of a run of ``table``; SystemExit with one line, before any
    work, for an image or method that is not part of the table or a work folder that holds runs
    under another protocol."""
    images = args.images or TABLES[table]["images"]
    unknown = sorted(set(images) - set(TABLES[table]["images"]))
    if unknown:
        raise SystemExit(f"paper_tables: error: {unknown[0]} is not an image of the {table} "
                         f"table ({', '.join(TABLES[table]['images'])})")
    methods = args.methods or [*DIP_METHODS, *TABLES[table]["classical"]]
    wrong = [m for m in methods if m not in (*DIP_METHODS, *TABLES[table]["classical"])]
    if wrong:
        raise SystemExit(f"paper_tables: error: method {wrong[0]} does not apply to the {table} "
                         f"table")
    protocol = protocol_of(table, args)
    protocol_path = args.work / table / "protocol.json"
    if protocol_path.exists():
        saved = json.loads(protocol_path.read_text())
        differ = [key for key in ("crop", "channels", "budgets") if saved[key] != protocol[key]]
        if differ:
            raise SystemExit(f"paper_tables: error: {protocol_path.parent} holds runs with another "
                             f"{differ[0]} ({saved[differ[0]]}); give another --work or the same "
                             f"--crop, --channels and --iterations")
    return images, methods, protocol


def run_table(table: str, images, methods, protocol: dict, args) -> None:
    """Write the table's problems and run ``methods`` on ``images``; results after each method."""
    from tfdip.io import write_json

    folder = args.work / table
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "protocol.json", protocol)
    manifest = write_problems(table, images, args.crop, folder / "problems")
    for method in methods:
        if method in DIP_METHODS:
            for seed in (args.seeds if args.seeds is not None else SEEDS[method]):
                stage = run_batch(table, method, seed, manifest,
                                  folder / "batch" / f"{method}-seed{seed}", args)
                stages_path = folder / "stages.json"
                stages = json.loads(stages_path.read_text()) if stages_path.exists() else []
                write_json(stages_path, stages + [stage])
        elif method == "cbm3d" and not _has_bm3d():
            print("cbm3d skipped: the bm3d package is not installed (pip install bm3d)")
            continue
        else:
            for name in images:
                run_classical(table, method, name, folder / "problems",
                              folder / "classical" / method)
        report(args)


def _has_bm3d() -> bool:
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=list(TABLES), action="append",
                        help="the table(s) to run (repeat for both; default both)")
    parser.add_argument("--methods", nargs="+",
                        choices=[*DIP_METHODS, "biharmonic", "cbm3d", "gp_rbf", "gp_dip"])
    parser.add_argument("--images", nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="network seeds of the DIP rows (default 0 1 2 for sgd and psgld, "
                             "0 for paper)")
    parser.add_argument("--crop", type=int, default=64, help="centre crop size in pixels")
    parser.add_argument("--iterations", type=int, help="override every DIP budget (smoke runs)")
    parser.add_argument("--channels", type=int, help="skip-net width (default 128)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "paper_tables")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the results from the work folder, run nothing")
    args = parser.parse_args(argv)
    if args.report_only:
        report(args)
        return
    plans = {table: check_request(table, args) for table in args.table or list(TABLES)}
    for table, (images, methods, protocol) in plans.items():
        run_table(table, images, methods, protocol, args)


if __name__ == "__main__":
    main()
