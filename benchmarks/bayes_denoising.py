"""Bayesian DIP against early-stopped DIP on 64x64 denoising crops (reference.md sections 3-4).

Problem: a 64x64 crop of a colour image of the denoising set (``CROPS``: the centre crop, which
holds texture in each of them), additive Gaussian noise of std 25/255 clipped to [0, 1] (seed
``NOISE_SEED``). Every row runs the default skip net (128 channels, 2,217,831 parameters) for the
same budget of 2000 steps through :func:`tfdip.restore` with the clean crop as reference, logging
PSNRs every 50 steps; the Bayesian rows discard 700 steps of burn-in and keep a sample every 10
steps (130 samples). Rows (``ROWS``):

- ``adam``   plain Adam (``sgd`` without input noise), last iterate;
- ``dip``    the DIP recipe (``sgd``: input jitter 1/30, EMA 0.99, roll-back), last iterate and EMA;
- ``paper``  the GP-DIP authors' recipe (Adam + weight noise), posterior mean and last sample;
- ``psgld``, ``sgld``  the Langevin samplers on the Gaussian likelihood with the known sigma,
  posterior mean, at the step size picked by ``--tune`` on one crop (``house``, 1000-step runs:
  pSGLD 1e-3, SGLD 1e-5; see the tuning table).

Per row: PSNR and SSIM at the end of the budget, the best logged PSNR and its step (what an
oracle early stop would give), seconds per step; for the Bayesian rows the calibration of the
posterior std (:func:`tfdip.inference.calibration.uncertainty_report`: std/|error| correlation,
2-std coverage, UCE) and the effective sample size of the traced pixels. Baseline: CBM3D (the
``bm3d`` package) given the true sigma.

Runs are cached one (crop, row, step size) at a time in ``results/bayes_denoising.json`` (numbers
and curves) and ``results/bayes_denoising.npz`` (the restored images, float16), so an interrupted
benchmark resumes where it stopped, a partial run still gives tables and figures, and several
processes (e.g. one per row) can fill the same cache.

Usage::

    python benchmarks/bayes_denoising.py --crops house --rows adam dip paper
    python benchmarks/bayes_denoising.py --tune psgld --crops house --learning-rates 1e-4 1e-3 \
        --iterations 1000
    python benchmarks/bayes_denoising.py --crops house lena --rows psgld sgld \
        --learning-rate psgld=1e-3 sgld=1e-5
    python benchmarks/bayes_denoising.py --report        # tables and figures from the cache only
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from tfdip import restore
from tfdip.inference.calibration import uncertainty_report
from tfdip.io import read_image, write_json
from tfdip.metrics import psnr, ssim
from tfdip.physics import Denoising
from tfdip.viz import save_figure

import matplotlib.pyplot as plt  # noqa: E402 - after tfdip.viz, which selects the Agg backend

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "denoising"
RESULTS = HERE / "results"
NAME = "bayes_denoising"

SIZE = 64
SIGMA = 25.0 / 255.0
NOISE_SEED = 0
NET_SEED = 0
ITERATIONS = 2000
BURN_IN = 700  # 35% of the budget, as the reference's SGLD crop run
THIN = 10
LOG_EVERY = 50

#: crop name -> (file in the denoising set, what the centre 64x64 crop shows).
CROPS = {
    "house": ("house.png", "brick wall, window frame and gutter"),
    "lena": ("lena.png", "eye, eyelashes and the hat's brim"),
    "peppers": ("peppers.png", "pepper edges and a dark stem"),
    "baboon": ("baboon.png", "ridged nose with fine stripes"),
    "kodim01": ("kodim01.png", "stone wall and a red door"),
}

#: row name -> arguments of tfdip.restore and the outputs it reports: ``curves`` maps an output
#: (``last``, ``ema`` or posterior ``mean``) to the History key of its logged PSNR.
ROWS = {
    "adam": {"restore": {"method": "sgd", "input_noise_std": 0.0}, "curves": {"last": "psnr"}},
    "dip": {"restore": {"method": "sgd"}, "curves": {"last": "psnr", "ema": "psnr_ema"}},
    "paper": {"restore": {"method": "paper"}, "curves": {"mean": "psnr_mean", "last": "psnr"}},
    "psgld": {"restore": {"method": "psgld"}, "curves": {"mean": "psnr_mean", "last": "psnr"}},
    "sgld": {"restore": {"method": "sgld"}, "curves": {"mean": "psnr_mean", "last": "psnr"}},
}
BAYESIAN_ROWS = ("paper", "psgld", "sgld")


# ------------------------------------------------------------------ the problem

def crop_box(name: str) -> list:
    """[top, left, height, width] of the centre SIZE x SIZE crop in the named image."""
    height, width = read_image(DATA / CROPS[name][0]).pixels.shape[:2]
    return [(height - SIZE) // 2, (width - SIZE) // 2, SIZE, SIZE]


def clean_crop(name: str) -> np.ndarray:
    """The centre SIZE x SIZE crop of the named image, float32 (SIZE, SIZE, 3) in [0, 1]."""
    top, left, height, width = crop_box(name)
    image = read_image(DATA / CROPS[name][0]).pixels
    return np.ascontiguousarray(image[top:top + height, left:left + width])


def problem(name: str):
    """(clean, noisy, physics) for a crop: y = clip(x + N(0, SIGMA^2), 0, 1), seed NOISE_SEED."""
    physics = Denoising(SIGMA)
    clean = clean_crop(name)
    return clean, physics.simulate(clean, seed=NOISE_SEED), physics


# ------------------------------------------------------------------ the cache

def load_results(out: Path) -> dict:
    path = out / f"{NAME}.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"runs": {}, "baselines": {}, "tuning": {}}


def load_images(out: Path) -> dict:
    path = out / f"{NAME}.npz"
    if not path.exists():
        return {}
    with np.load(path) as stored:
        return {key: stored[key] for key in stored.files}


def cache_result(out: Path, section: str, key: str, record: dict, images: dict,
                 iterations: int) -> None:
    """Add one result (and its images, stored as float16; none for tuning runs) to the cache.

    Read-modify-write under an exclusive lock, so several benchmark processes can fill the same
    cache; both files are replaced atomically (temporary file, then rename).
    """
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = load_results(out)
        results[section][key] = record
        results["machine"] = machine()
        if section != "tuning":  # tuning runs may use a shorter budget than the benchmark
            results["protocol"] = protocol(iterations)
        write_json(out / f"{NAME}.json", results)
        if images:
            stored = {name: image for name, image in load_images(out).items()
                      if "@" not in name}  # images of tuning runs are not kept
            stored.update({f"{key}/{name}": np.asarray(image, np.float16)
                           for name, image in images.items()})
            tmp = out / f"{NAME}.tmp.npz"
            np.savez_compressed(tmp, **stored)
            os.replace(tmp, out / f"{NAME}.npz")


def tuning_key(crop: str, row: str, learning_rate: float, iterations: int) -> str:
    return f"{crop}/{row}@{learning_rate:g}/{iterations}"


def machine() -> dict:
    """CPU model, core count, platform and library versions of this machine."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    versions = {"python": platform.python_version()}
    for package in ("numpy", "tensorflow", "keras", "tensorflow-probability", "scikit-image",
                    "bm3d"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "versions": versions,
            "note": "shared machine: other jobs ran at the same time, so timings are upper bounds"}


def schedule(iterations: int) -> dict:
    """Burn-in, thinning and logging interval for a budget, in the proportions of the
    benchmark's (2000 steps: burn-in 700, thin 10, a log every 50 steps)."""
    return {"burn_in": iterations * BURN_IN // ITERATIONS,
            "thin": max(1, iterations * THIN // ITERATIONS),
            "log_every": max(1, iterations * LOG_EVERY // ITERATIONS)}


def protocol_of(results) -> dict:
    """The protocol of the cached benchmark runs (the default one if only tuning ran)."""
    return results.get("protocol") or protocol(ITERATIONS)


def protocol(iterations: int) -> dict:
    return {"crop_size": SIZE, "sigma": SIGMA, "noise": "additive Gaussian, clipped to [0, 1]",
            "noise_seed": NOISE_SEED, "net_seed": NET_SEED, "net": "skip, default (128 channels)",
            "iterations": iterations, **schedule(iterations),
            "crops": {name: {"file": CROPS[name][0], "box_top_left_height_width": crop_box(name),
                             "content": CROPS[name][1]} for name in CROPS},
            "best": "maximum over the PSNRs logged every log_every steps (an oracle early stop)"}


# ------------------------------------------------------------------ one run

def run_row(crop: str, row: str, learning_rate: float | None = None,
            iterations: int = ITERATIONS) -> tuple[dict, dict]:
    """Restore the crop with one row's recipe; (numbers and curves, images)."""
    clean, noisy, physics = problem(crop)
    options = dict(ROWS[row]["restore"])
    plan = schedule(iterations)
    if options["method"] != "sgd":
        options.update(burn_in=plan["burn_in"], thin=plan["thin"])
    load = os.getloadavg()[0]
    result = restore(noisy, physics, iterations=iterations, learning_rate=learning_rate,
                     reference=clean, log_every=plan["log_every"], seed=NET_SEED, **options)
    history = result.history[0]
    steps = [plan["log_every"] * (i + 1) for i in range(len(history["psnr"]))]
    finals = {"last": result.last, "ema": result.ema,
              "mean": result.image if result.std is not None else None}
    outputs, images = {}, {}
    for output, key in ROWS[row]["curves"].items():
        image = images[output] = np.clip(finals[output], 0.0, 1.0)
        curve = [float(v) for v in history[key]]
        final = psnr(image, clean)
        # psnr_mean is logged as 0 before the first posterior sample
        candidates = [(v, s) for v, s in zip(curve, steps) if not (key == "psnr_mean" and v == 0)]
        best, best_step = max(candidates + [(final, iterations)], key=lambda vs: vs[0])
        outputs[output] = {"psnr": final, "ssim": ssim(image, clean), "best_psnr": best,
                           "best_step": best_step, "curve": curve}
    record = {"crop": crop, "row": row, "method": result.method,
              "learning_rate": learning_rate, "iterations": result.iterations,
              "noisy_psnr": psnr(noisy, clean), "seconds_per_step": result.seconds_per_iteration,
              "seconds": result.seconds, "load_average_at_start": load,
              "rollbacks": result.rollbacks, "steps": steps, "outputs": outputs,
              "final_loss": float(history["loss"][-1]) if history.get("loss") else None}
    if result.std is not None:
        report = uncertainty_report(result.image, result.std, clean)
        record["samples"] = result.samples
        record["calibration"] = {k: report[k] for k in (
            "pearson", "spearman", "coverage_2std", "calibration_error", "uce",
            "uce_normalised", "levels", "observed")}
        record["mean_std"] = float(result.std.mean())
        record["rmse"] = float(np.sqrt(np.mean((result.image - clean) ** 2)))
        record["diagnostics"] = {k: result.diagnostics[k] for k in (
            "ess_min", "ess_median", "num_samples", "num_pixels", "verdict")}
        images["std"] = result.std
    return record, images


def run_cbm3d(crop: str) -> tuple[dict, np.ndarray]:
    """CBM3D (bm3d.bm3d_rgb, default profile, opponent colour space) with the true sigma."""
    import bm3d  # only here: the rest runs without it

    clean, noisy, _ = problem(crop)
    start = time.perf_counter()
    denoised = np.clip(bm3d.bm3d_rgb(noisy.astype(np.float64), SIGMA), 0.0, 1.0)
    seconds = time.perf_counter() - start
    return ({"psnr": psnr(denoised, clean), "ssim": ssim(denoised, clean), "seconds": seconds,
             "noisy_psnr": psnr(noisy, clean)}, denoised.astype(np.float32))


def run_all(out: Path, crops, rows, learning_rates: dict, iterations: int, tune: str | None,
            tune_rates) -> None:
    """Run every (crop, row) (or, with ``tune``, every step size of one sampler) not yet cached."""
    for crop in crops:
        if crop not in load_results(out)["baselines"]:
            record, denoised = run_cbm3d(crop)
            cache_result(out, "baselines", crop, {"cbm3d": record}, {"cbm3d": denoised},
                         iterations)
            print(f"{crop} cbm3d {record['psnr']:.2f} dB in {record['seconds']:.2f} s", flush=True)
        jobs = ([(tune, rate) for rate in tune_rates] if tune
                else [(row, learning_rates.get(row)) for row in rows])
        section = "tuning" if tune else "runs"
        for row, rate in jobs:
            key = tuning_key(crop, row, rate, iterations) if tune else f"{crop}/{row}"
            if key in load_results(out)[section]:
                continue
            try:
                record, images = run_row(crop, row, rate, iterations)
            except Exception as error:  # noqa: BLE001 - a failed setting is a result too
                record, images = {"crop": crop, "row": row, "learning_rate": rate,
                                  "iterations": iterations,
                                  "error": f"{type(error).__name__}: {error}"}, {}
            cache_result(out, section, key, record, {} if tune else images, iterations)
            if "error" in record:
                print(f"{key} failed: {record['error']}", flush=True)
                continue
            summary = ", ".join(f"{o} {v['psnr']:.2f} (best {v['best_psnr']:.2f} @ "
                                f"{v['best_step']})" for o, v in record["outputs"].items())
            print(f"{key}: {summary}; {record['seconds_per_step']:.3f} s/step", flush=True)


# ------------------------------------------------------------------ tables


#: (row, output) -> label in tables and figures, in table order.
LABELS = {
    ("adam", "last"): "(a) Adam, last iterate",
    ("dip", "last"): "(b) DIP recipe, last iterate",
    ("dip", "ema"): "(b) DIP recipe, EMA",
    ("paper", "mean"): "(c) authors' SGLD, posterior mean",
    ("paper", "last"): "(c) authors' SGLD, last sample",
    ("psgld", "mean"): "(d) pSGLD, posterior mean",
    ("psgld", "last"): "(d) pSGLD, last sample",
    ("sgld", "mean"): "(d) SGLD, posterior mean",
    ("sgld", "last"): "(d) SGLD, last sample",
}


def _fmt(value, pattern="{:.2f}"):
    return "-" if value is None else pattern.format(value)


def _best(output) -> str:
    return f"{output['best_psnr']:.2f} @ {output['best_step']}"


def crops_in(results) -> list:
    """Crops with cached results, in CROPS order."""
    done = {run["crop"] for run in results["runs"].values()} | set(results["baselines"])
    return [crop for crop in CROPS if crop in done]


def result_table(results, crop) -> list:
    lines = ["| row | PSNR at the end | best PSNR @ step | SSIM at the end | s / step | lr |",
             "|---|---|---|---|---|---|"]
    baseline = results["baselines"].get(crop, {}).get("cbm3d")
    if baseline:
        lines.append(f"| noisy observation | {baseline['noisy_psnr']:.2f} | | | | |")
    for (row, output), label in LABELS.items():
        run = results["runs"].get(f"{crop}/{row}")
        if run is None or output not in run.get("outputs", {}):
            continue
        values = run["outputs"][output]
        rate = "default" if run["learning_rate"] is None else f"{run['learning_rate']:g}"
        lines.append(f"| {label} | {values['psnr']:.2f} | {_best(values)} | {values['ssim']:.3f} "
                     f"| {run['seconds_per_step']:.3f} | {rate} |")
    if baseline:
        lines.append(f"| CBM3D (bm3d, true sigma) | {baseline['psnr']:.2f} | | "
                     f"{baseline['ssim']:.3f} | {baseline['seconds']:.2f} s total | |")
    return lines


def calibration_table(results) -> list:
    lines = ["| crop | row | samples | mean std | RMSE | Pearson std/abs err | Spearman "
             "| 2-std coverage | UCE | ESS min / median |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for crop in crops_in(results):
        for row in BAYESIAN_ROWS:
            run = results["runs"].get(f"{crop}/{row}")
            if run is None or "calibration" not in run:
                continue
            c, d = run["calibration"], run["diagnostics"]
            lines.append(
                f"| {crop} | {row} | {run['samples']} | {run['mean_std']:.4f} | {run['rmse']:.4f} "
                f"| {_fmt(c['pearson'], '{:.3f}')} | {_fmt(c['spearman'], '{:.3f}')} "
                f"| {c['coverage_2std']:.3f} | {c['uce']:.2e} "
                f"| {_fmt(d['ess_min'], '{:.1f}')} / {_fmt(d['ess_median'], '{:.1f}')} |")
    return lines


def summary_table(results) -> list:
    """Mean over the crops on which every listed row ran."""
    complete = [crop for crop in crops_in(results)
                if all(f"{crop}/{row}" in results["runs"] for row in ("adam", "dip", "paper"))]
    if not complete:
        return []
    lines = [f"Mean over {len(complete)} crops ({', '.join(complete)}):", "",
             "| row | PSNR at the end | best PSNR (oracle stop) | SSIM at the end | crops |",
             "|---|---|---|---|---|"]
    noisy = [results["baselines"][c]["cbm3d"]["noisy_psnr"] for c in complete
             if c in results["baselines"]]
    if len(noisy) == len(complete):
        lines.append(f"| noisy observation | {np.mean(noisy):.2f} | | | {len(noisy)} |")
    for (row, output), label in LABELS.items():
        runs = [results["runs"].get(f"{c}/{row}") for c in complete]
        runs = [r for r in runs if r and output in r.get("outputs", {})]
        if len(runs) != len(complete):
            continue
        values = [r["outputs"][output] for r in runs]
        lines.append(f"| {label} | {np.mean([v['psnr'] for v in values]):.2f} "
                     f"| {np.mean([v['best_psnr'] for v in values]):.2f} "
                     f"| {np.mean([v['ssim'] for v in values]):.3f} | {len(values)} |")
    baselines = [results["baselines"][c]["cbm3d"] for c in complete if c in results["baselines"]]
    if len(baselines) == len(complete):
        lines.append(f"| CBM3D | {np.mean([b['psnr'] for b in baselines]):.2f} | "
                     f"| {np.mean([b['ssim'] for b in baselines]):.3f} | {len(baselines)} |")
    return lines


def shape_check(results) -> list:
    """Per crop: how far each output fell from its best PSNR by the end of the budget, and by
    how much each posterior mean beats the last iterate and the EMA of the DIP recipe there."""
    lines = ["| crop | output | best PSNR @ step | at the end | drop (dB) | mean - DIP last "
             "| mean - DIP EMA | mean - Adam last |", "|---|---|---|---|---|---|---|---|"]
    for crop in crops_in(results):
        ends = {}
        for (row, output), label in LABELS.items():
            run = results["runs"].get(f"{crop}/{row}")
            if run is None or output not in run.get("outputs", {}):
                continue
            values = run["outputs"][output]
            ends[(row, output)] = values["psnr"]
            gains = ["", "", ""]
            if output == "mean":
                gains = [_fmt(None if ends.get(base) is None else values["psnr"] - ends[base],
                              "{:+.2f}")
                         for base in (("dip", "last"), ("dip", "ema"), ("adam", "last"))]
            lines.append(f"| {crop} | {label} | {_best(values)} | {values['psnr']:.2f} "
                         f"| {values['best_psnr'] - values['psnr']:.2f} | {' | '.join(gains)} |")
    return lines if len(lines) > 2 else []


def tuning_table(results) -> list:
    if not results["tuning"]:
        return []
    lines = ["| crop | sampler | step size | steps (burn-in) | mean PSNR at the end "
             "| best mean PSNR @ step | last sample PSNR | 2-std coverage | ESS median | s / step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, run in sorted(results["tuning"].items(),
                           key=lambda kv: (kv[1]["crop"], kv[1]["row"], kv[1]["learning_rate"])):
        head = (f"| {run['crop']} | {run['row']} | {run['learning_rate']:g} "
                f"| {run['iterations']} ({schedule(run['iterations'])['burn_in']}) ")
        if "error" in run:
            lines.append(head + f"| failed: {run['error']} | | | | | |")
            continue
        mean, last = run["outputs"]["mean"], run["outputs"]["last"]
        lines.append(head + f"| {mean['psnr']:.2f} | {_best(mean)} | {last['psnr']:.2f} "
                     f"| {run['calibration']['coverage_2std']:.3f} "
                     f"| {_fmt(run['diagnostics']['ess_median'], '{:.1f}')} "
                     f"| {run['seconds_per_step']:.3f} |")
    return lines


def write_markdown(results, path: Path) -> None:
    m, p = results["machine"], protocol_of(results)
    v = m["versions"]
    parts = [
        "# Bayesian DIP on 64x64 denoising crops",
        "",
        f"Generated by `benchmarks/bayes_denoising.py`. Crops of {SIZE}x{SIZE} (centre of each "
        f"image), Gaussian noise sigma = 25/255 clipped to [0, 1] (seed {NOISE_SEED}); the "
        f"default skip net (128 channels) seeded {NET_SEED}; {p['iterations']} steps for every "
        f"row; Bayesian rows: burn-in {p['burn_in']}, a sample every {p['thin']} steps; PSNRs "
        f"logged every {p['log_every']} steps (the best PSNR is the maximum of those: an oracle "
        f"early stop). Every row starts from the same initial weights and input. Logged "
        f"PSNRs of the last iterate are those of the training step's output (with the input "
        f"jitter of the DIP and authors' recipes, i.e. the very outputs the posterior mean "
        f"averages); the value at the end is G(z) without jitter.",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, shared with other jobs while "
        f"this ran (timings are upper bounds). TensorFlow {v['tensorflow']}, Keras {v['keras']}, "
        f"TFP {v['tensorflow-probability']}, bm3d {v['bm3d']}, Python {v['python']}.",
        "",
        "Crops: " + "; ".join(
            f"{c} ({CROPS[c][0]}, rows/cols from {crop_box(c)[0]}/{crop_box(c)[1]}: "
            f"{CROPS[c][1]})" for c in crops_in(results)) + ".",
        "",
    ]
    summary = summary_table(results)
    if summary:
        parts += ["## Summary", "", *summary, ""]
    for crop in crops_in(results):
        parts += [f"## {crop}", "", *result_table(results, crop), ""]
    calibration = calibration_table(results)
    if len(calibration) > 2:
        parts += ["## Posterior std as an error bar", "",
                  "Per entry (pixel x channel): Pearson / Spearman correlation of the posterior "
                  "std with the absolute error of the posterior mean, fraction of entries with "
                  "|error| <= 2 std (0.954 if calibrated), UCE (Laves et al., 10 bins of "
                  "predicted variance) and the effective sample size over 256 traced entries "
                  "(TFP, one chain).", "", *calibration, ""]
    tuning = tuning_table(results)
    if tuning:
        parts += ["## Step-size tuning of the Langevin samplers (one crop)", "", *tuning, ""]
    shape = shape_check(results)
    if shape:
        parts += ["## Does the expected shape hold?", "",
                  "Over-fitting: drop from the best logged PSNR to the PSNR at the end of the "
                  "budget. Bayesian advantage: posterior mean minus the early-stopping rows at "
                  "the end of the budget.", "", *shape, ""]
    path.write_text("\n".join(parts))


# ------------------------------------------------------------------ figures

CURVE_STYLE = {
    ("adam", "last"): dict(color="tab:gray", lw=1.0),
    ("dip", "last"): dict(color="tab:blue", lw=0.8, alpha=0.6),
    ("dip", "ema"): dict(color="tab:blue", lw=1.6),
    ("paper", "mean"): dict(color="tab:red", lw=1.8),
    ("paper", "last"): dict(color="tab:red", lw=0.8, alpha=0.4),
    ("psgld", "mean"): dict(color="tab:green", lw=1.8),
    ("sgld", "mean"): dict(color="tab:purple", lw=1.8),
}


def curves_figure(results, path) -> None:
    """PSNR against iteration for every crop (one panel each), like the paper's Figure 4."""
    crops = [c for c in crops_in(results) if any(k.startswith(c + "/") for k in results["runs"])]
    if not crops:
        return
    cols = 2 if len(crops) in (2, 4) else min(len(crops), 3)
    rows = -(-len(crops) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.8 * cols, 9.0), 3.6 * rows + 0.8),
                             squeeze=False)
    for ax, crop in zip(axes.flat, crops):
        for (row, output), style in CURVE_STYLE.items():
            run = results["runs"].get(f"{crop}/{row}")
            if run is None or output not in run.get("outputs", {}):
                continue
            pairs = [(s, v) for s, v in zip(run["steps"], run["outputs"][output]["curve"])
                     if v > 0]
            ax.plot(*zip(*pairs), label=LABELS[(row, output)], **style)
        baseline = results["baselines"].get(crop, {}).get("cbm3d")
        if baseline:
            ax.axhline(baseline["psnr"], color="black", ls="--", lw=1.0, label="CBM3D")
            ax.axhline(baseline["noisy_psnr"], color="black", ls=":", lw=1.0, label="noisy")
        ax.axvline(protocol_of(results)["burn_in"], color="tab:red", ls=":", lw=0.8)
        ax.set_title(f"{crop} (64x64, sigma 25)", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(crops):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.7 / (3.6 * rows + 0.8), 1, 1))
    save_figure(fig, str(path))


def panel_figure(results, images, crop, path) -> None:
    """clean / noisy / DIP recipe's EMA / posterior mean / posterior std / |error| for one crop,
    all at the end of the budget."""
    needed = [f"{crop}/dip/ema", f"{crop}/paper/mean", f"{crop}/paper/std"]
    if not all(k in images for k in needed):
        return
    clean, noisy, _ = problem(crop)
    mean = images[f"{crop}/paper/mean"].astype(np.float32)
    std = images[f"{crop}/paper/std"].astype(np.float32).mean(axis=-1)
    error = np.abs(mean - clean).mean(axis=-1)
    dip_ema = images[f"{crop}/dip/ema"].astype(np.float32)
    runs = results["runs"]
    panels = [
        ("clean", clean),
        (f"noisy ({results['baselines'][crop]['cbm3d']['noisy_psnr']:.2f} dB)", noisy),
        (f"DIP recipe (EMA) at the end ({runs[f'{crop}/dip']['outputs']['ema']['psnr']:.2f} dB)",
         dip_ema),
        (f"posterior mean ({runs[f'{crop}/paper']['outputs']['mean']['psnr']:.2f} dB)", mean),
    ]
    fig, axes = plt.subplots(1, 6, figsize=(17, 3.4))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    vmax = float(max(np.percentile(std, 99), np.percentile(error, 99)))  # shared colour scale
    for ax, (title, values) in zip(axes[4:], [("posterior std (channel mean)", std),
                                               ("|error| of the mean (channel mean)", error)]):
        shown = ax.imshow(values, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    p = protocol_of(results)
    fig.suptitle(f"{crop}: the authors' SGLD recipe, {p['iterations']} steps, burn-in "
                 f"{p['burn_in']}, thin {p['thin']}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, str(path))


def calibration_figure(results, path) -> None:
    """Observed against nominal coverage of the central intervals mean +- z std."""
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    drawn = False
    styles = {"paper": "tab:red", "psgld": "tab:green", "sgld": "tab:purple"}
    for key, run in results["runs"].items():
        if "calibration" not in run:
            continue
        c = run["calibration"]
        ax.plot(c["levels"], c["observed"], marker="osD^v"[list(CROPS).index(run["crop"])],
                markersize=3, color=styles[run["row"]], alpha=0.7,
                label=f"{run['row']} ({run['crop']})")
        drawn = True
    if not drawn:
        plt.close(fig)
        return
    ax.plot([0, 1], [0, 1], color="black", ls="--", lw=1.0, label="calibrated")
    ax.set_xlabel("nominal coverage of mean +- z std")
    ax.set_ylabel("observed coverage")
    ax.set_title("Posterior std calibration", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, str(path))


def report(out: Path, panel_crop: str | None) -> None:
    """The markdown tables and the figures from the cache in ``out``."""
    results = load_results(out)
    if not results["runs"] and not results["tuning"]:
        print("nothing cached yet")
        return
    markdown = out / f"{NAME}.md"
    write_markdown(results, markdown)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    curves_figure(results, figures / "bayes_curves.png")
    calibration_figure(results, figures / "bayes_calibration.png")
    images = load_images(out)
    for crop in [panel_crop] if panel_crop else crops_in(results)[:1]:
        panel_figure(results, images, crop, figures / f"bayes_panel_{crop}.png")
    print(markdown.read_text())


# ------------------------------------------------------------------ command line

def parse_rates(pairs) -> dict:
    """``["psgld=1e-3", ...]`` as ``{"psgld": 0.001}``."""
    rates = {}
    for pair in pairs or []:
        row, _, value = pair.partition("=")
        if row not in ROWS or not value:
            raise SystemExit(f"--learning-rate wants ROW=VALUE with ROW in {', '.join(ROWS)}, "
                             f"got {pair!r}")
        rates[row] = float(value)
    return rates


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", nargs="+", choices=list(CROPS), default=["house"])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=["adam", "dip", "paper"])
    parser.add_argument("--learning-rate", nargs="*", metavar="ROW=VALUE",
                        help="step size of a row (default: tfdip.recipes.DEFAULT_LEARNING_RATE)")
    parser.add_argument("--tune", choices=("psgld", "sgld"),
                        help="run this sampler at every --learning-rates value (tuning table)")
    parser.add_argument("--learning-rates", nargs="*", type=float, default=[])
    parser.add_argument("--iterations", type=int, default=ITERATIONS,
                        help="steps per run; burn-in, thinning and logging scale with it "
                             "(for a smoke test, with --out elsewhere)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the cache, tables "
                        "and figures (default benchmarks/results)")
    parser.add_argument("--panel", choices=list(CROPS), help="crop of the image panel figure")
    parser.add_argument("--report", action="store_true", help="only write tables and figures")
    args = parser.parse_args(argv)
    if not args.report:
        if args.tune and not args.learning_rates:
            raise SystemExit("--tune needs --learning-rates")
        run_all(args.out, args.crops, args.rows, parse_rates(args.learning_rate), args.iterations,
                args.tune, args.learning_rates)
    report(args.out, args.panel)


if __name__ == "__main__":
    main()
