"""Is a stopping time needed? Long runs of the samplers on the 64x64 denoising crops.

Problem: the crops, noise (sigma 25/255, seed 0) and net seed of ``bayes_denoising.py``. Per crop
and method (``psgld``, ``sgld``, ``paper``), one run of ``--steps`` steps (default 15,000) logs
every 50 steps the PSNR of the current sample, its fit to the observation (PSNR of A x_t against
y) and the loss, and keeps every 10th output (steps 0, 10, 20, ...). The chain's dynamics do not
depend on the burn-in or thinning (they only choose which outputs are averaged), so from the
kept outputs:

- ``mean65(T)``: the posterior mean over the last 65% of the first T steps, i.e. what a run of T
  steps with the default 35% burn-in returns (a sample every 10 steps here, every T/400 in the
  library's default), for T every 250 steps; the issue's claim is
  ``|PSNR mean65(15000) - PSNR mean65(3000)| <= 0.3 dB``;
- ``window``: the mean over sliding windows of 1,000 steps (is the chain still moving?).

Beside them, per crop: the DIP recipe (``sgd``) for the same number of steps with its EMA and
ES-WMV (window 100, patience 1000) tracked on its iterates (the run continues past ES-WMV's stop,
to show the whole curve; the tracker freezes at the stop); and, per method, a second run with
``iterations="auto"`` (cap ``--steps``) whose stop, PSNR and wall time are compared with the
3,000-step default (``mean65(3000)``, and 3,000 x the long run's seconds per step). The step sizes
are those of ``bayes_denoising.py`` (pSGLD 1e-3, SGLD 1e-5, paper 1e-2).

Results are cached per (crop, row) in ``results/long_runs.json`` (interrupt and rerun to
continue); ``long_runs.md`` and ``figures/long_runs.png`` are written from the cache.

Usage::

    python benchmarks/long_runs.py                                    # 5 crops x 3 methods
    python benchmarks/long_runs.py --crops house --methods psgld      # one row at a time
    python benchmarks/long_runs.py --steps 300 --channels 8 --out /tmp/long  # smoke test
    python benchmarks/long_runs.py --report                           # tables and figure only
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from bayes_denoising import CROPS, NET_SEED, RESULTS, machine, problem
from tfdip.chains import make_dip
from tfdip.errors import TfdipError
from tfdip.io import write_json
from tfdip.metrics import psnr
from tfdip.recipes import make_recipe
from tfdip.restoration import restore
from tfdip.stopping import wmv_record
from tfdip.viz import save_figure

import matplotlib.pyplot as plt  # noqa: E402 - after tfdip.viz, which selects the Agg backend

NAME = "long_runs"
STEPS = 15000
SHORT = 3000            # today's default budget of the Langevin methods
KEEP_EVERY = 10         # outputs kept (the samples of a run with thin 10)
LOG_EVERY = 50
PREFIX_EVERY = 250      # T of mean65(T)
WINDOW = 1000           # sliding-window mean, steps
BURN_FRACTION = 0.35
METHODS = ("psgld", "sgld", "paper")
LEARNING_RATES = {"psgld": 1e-3, "sgld": 1e-5, "paper": 1e-2, "sgd": 0.01}


class KeepOutputs(keras.callbacks.Callback):
    """The output of every ``every``-th step (steps 0, every, 2 every, ...), float32."""

    def __init__(self, every):
        super().__init__()
        self.every = every
        self.steps, self.outputs = [], []

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.step.numpy()) - 1     # the step whose output this is
        if step % self.every == 0:
            self.steps.append(step)
            self.outputs.append(self.model.last_output.numpy()[0])


def net_options(channels):
    return {"channels_down": channels, "channels_up": channels}


def prefix_means(outputs, clean, steps_total):
    """PSNR of mean65(T) for T = PREFIX_EVERY, 2 PREFIX_EVERY, ... (outputs kept every
    KEEP_EVERY steps, index i = step i * KEEP_EVERY)."""
    cumulative = np.cumsum(np.asarray(outputs, np.float64), axis=0)
    rows = []
    for total in range(PREFIX_EVERY, steps_total + 1, PREFIX_EVERY):
        first = -(-int(BURN_FRACTION * total) // KEEP_EVERY)    # first kept index >= burn-in
        last = -(-total // KEEP_EVERY)                           # kept indices < total
        if last <= first:
            continue
        before = cumulative[first - 1] if first > 0 else 0.0
        mean = (cumulative[last - 1] - before) / (last - first)
        rows.append((total, psnr(np.clip(mean, 0, 1).astype(np.float32), clean)))
    return rows


def window_means(outputs, clean):
    """PSNR of the mean over each window of WINDOW steps ending at a multiple of WINDOW / 2."""
    size, half = WINDOW // KEEP_EVERY, WINDOW // (2 * KEEP_EVERY)
    rows = []
    for end in range(size, len(outputs) + 1, half):
        mean = np.mean(outputs[end - size:end], axis=0)
        rows.append((end * KEEP_EVERY, psnr(np.clip(mean, 0, 1), clean)))
    return rows


def history_curve(history, key):
    return [float(v) for v in history.get(key, [])]


def run_long(crop, method, steps, channels):
    """One long run of a sampler: logged curves and the mean65 / window curves."""
    clean, noisy, physics = problem(crop)
    keep = KeepOutputs(KEEP_EVERY)
    load = os.getloadavg()
    result = restore(noisy, physics, method=method, iterations=steps, burn_in=0, thin=KEEP_EVERY,
                     learning_rate=LEARNING_RATES[method], reference=clean, seed=NET_SEED,
                     net_options=net_options(channels), log_every=LOG_EVERY, callbacks=[keep])
    history = result.history[0]
    outputs = np.stack(keep.outputs)
    prefix = prefix_means(outputs, clean, steps)
    at = dict(prefix)
    short = min(SHORT, steps)
    return {
        "crop": crop, "row": method, "steps": steps, "learning_rate": LEARNING_RATES[method],
        "seconds": result.seconds, "seconds_per_step": result.seconds_per_iteration,
        "load_average_at_start": load,
        "log_steps": [LOG_EVERY * (i + 1) for i in range(len(history["loss"]))],
        "psnr_sample": history_curve(history, "psnr"), "psnr_obs": history_curve(history, "psnr_obs"),
        "loss": history_curve(history, "loss"),
        "prefix": prefix, "window": window_means(outputs, clean),
        "psnr_mean65_short": at.get(short - short % PREFIX_EVERY),
        "psnr_mean65_long": at.get(steps - steps % PREFIX_EVERY),
        "short_steps": short,
    }


def run_auto(crop, method, steps, channels):
    """The same chain with ``iterations="auto"`` (cap ``steps``)."""
    clean, noisy, physics = problem(crop)
    load = os.getloadavg()
    start = time.perf_counter()
    result = restore(noisy, physics, method=method, iterations="auto", max_iterations=steps,
                     learning_rate=LEARNING_RATES[method], reference=clean, seed=NET_SEED,
                     net_options=net_options(channels))
    chain = result.budget["chains"][0]
    diagnostics = result.diagnostics
    return {"crop": crop, "row": f"{method}-auto", "cap": steps, **chain,
            "psnr": psnr(result.image, clean), "samples": result.samples,
            "seconds": time.perf_counter() - start, "seconds_per_step": result.seconds_per_iteration,
            "mc_error_ratio": diagnostics["mc_error_ratio"],
            "mc_error_cost_db": diagnostics["mc_error_cost_db"],
            "verdict": diagnostics["verdict"], "load_average_at_start": load}


def run_dip(crop, steps, channels):
    """The DIP recipe (sgd) for ``steps`` steps with ES-WMV tracked on its iterates."""
    clean, noisy, physics = problem(crop)
    recipe = make_recipe("sgd", "denoising", iterations=steps, stop="wmv")
    dip = make_dip(noisy, physics, recipe, net_options=net_options(channels), reference=clean,
                   seed=NET_SEED)
    load = os.getloadavg()
    start = time.perf_counter()
    history = dip.fit(steps, log_every=LOG_EVERY).history
    seconds = time.perf_counter() - start
    wmv = wmv_record(dip)
    last, ema = history_curve(history, "psnr"), history_curve(history, "psnr_ema")
    log_steps = [LOG_EVERY * (i + 1) for i in range(len(last))]
    best_last, best_ema = int(np.argmax(last)), int(np.argmax(ema))
    return {"crop": crop, "row": "dip", "steps": steps, "seconds": seconds,
            "load_average_at_start": load, "log_steps": log_steps, "psnr_last": last,
            "psnr_ema": ema, "psnr_ema_end": ema[-1],
            "oracle_last": [last[best_last], log_steps[best_last]],
            "oracle_ema": [ema[best_ema], log_steps[best_ema]],
            "wmv": wmv, "psnr_wmv": psnr(np.clip(dip.wmv.best.numpy(), 0, 1), clean)}


# ------------------------------------------------------------------ cache

def load_results(out: Path, name: str = NAME) -> dict:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {"runs": {}}


def cache(out: Path, key: str, record: dict, settings: dict, name: str = NAME) -> None:
    """Add one run's record to ``out/<name>.json`` (read-modify-write under a lock, atomic)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = load_results(out, name)
        results["runs"][key] = record
        results["machine"] = machine()
        results["settings"] = settings
        write_json(out / f"{name}.json", results)


def run_all(out, crops, methods, steps, channels, with_dip, with_auto):
    settings = {"steps": steps, "channels": channels, "keep_every": KEEP_EVERY,
                "log_every": LOG_EVERY, "burn_fraction": BURN_FRACTION, "window": WINDOW,
                "learning_rates": LEARNING_RATES, "net_seed": NET_SEED}
    for crop in crops:
        jobs = [(f"{crop}/{m}", lambda m=m: run_long(crop, m, steps, channels)) for m in methods]
        if with_auto:
            jobs += [(f"{crop}/{m}-auto", lambda m=m: run_auto(crop, m, steps, channels))
                     for m in methods]
        if with_dip:
            jobs.append((f"{crop}/dip", lambda: run_dip(crop, steps, channels)))
        for key, job in jobs:
            if key in load_results(out)["runs"]:
                continue
            try:
                record = job()
            except TfdipError as error:   # e.g. an automatic budget whose cap binds: a result
                record = {"crop": crop, "row": key.split("/")[1], "error": str(error)}
            cache(out, key, record, settings)
            done = record.get("error") or f"done in {record['seconds']:.0f} s"
            print(f"{key}: {done}", flush=True)


# ------------------------------------------------------------------ report

def _fmt(value, pattern="{:.2f}"):
    return "" if value is None else pattern.format(value)


def markdown(results) -> str:
    runs, settings, m = results["runs"], results.get("settings", {}), results.get("machine", {})
    crops = sorted({r["crop"] for r in runs.values()}, key=list(CROPS).index)
    lines = [
        "# Long runs: is a stopping time needed?", "",
        f"Generated by `benchmarks/long_runs.py`: 64x64 denoising crops of "
        f"`bayes_denoising.py` (sigma 25/255), {settings.get('steps')} steps per run, skip net "
        f"with {settings.get('channels')} channels, step sizes {settings.get('learning_rates')}. "
        f"mean65(T) is the posterior mean over the last 65% of the first T steps (a sample every "
        f"{KEEP_EVERY} steps). Machine: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs, "
        f"shared with other jobs (load averages at the start of each run are in the JSON); "
        f"timings are upper bounds.", "",
        "| crop | method | mean65(3000) dB | mean65(end) dB | difference | within 0.3 dB | "
        "auto: burn-in end | auto: stop (reason) | auto dB | auto s | 3000-step default s |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for crop in crops:
        for method in METHODS:
            long, auto = runs.get(f"{crop}/{method}"), runs.get(f"{crop}/{method}-auto")
            if long is None:
                continue
            short, end = long["psnr_mean65_short"], long["psnr_mean65_long"]
            diff = None if short is None or end is None else end - short
            default_seconds = long["seconds_per_step"] * long["short_steps"]
            cells = ["", "", "", "", ""]
            if auto and "error" in auto:
                cells = ["", auto["error"], "", "", ""]
            elif auto:
                cells = [_fmt(auto["burn_in_end"], "{}"),
                         f"{auto['stopped_at']} ({auto['reason']})", _fmt(auto["psnr"]),
                         _fmt(auto["seconds"], "{:.0f}"), ""]
            cells[4] = _fmt(default_seconds, "{:.0f}")
            lines.append(f"| {crop} | {method} | {_fmt(short)} | {_fmt(end)} | "
                         f"{_fmt(diff, '{:+.2f}')} | "
                         f"{'' if diff is None else ('yes' if abs(diff) <= 0.3 else 'no')} | "
                         + " | ".join(cells) + " |")
    dips = [runs[f"{c}/dip"] for c in crops if f"{c}/dip" in runs]
    if dips:
        lines += ["", "DIP recipe (`sgd`) and ES-WMV on the same crops:", "",
                  "| crop | EMA at the end | EMA best (oracle) @ step | last iterate best @ step | "
                  "ES-WMV keeps step | ES-WMV dB | ES-WMV stop (reason) |", "|---|---|---|---|---|---|---|"]
        for d in dips:
            w = d["wmv"]
            lines.append(f"| {d['crop']} | {d['psnr_ema_end']:.2f} | {d['oracle_ema'][0]:.2f} @ "
                         f"{d['oracle_ema'][1]} | {d['oracle_last'][0]:.2f} @ {d['oracle_last'][1]} "
                         f"| {w['best_step']} | {d['psnr_wmv']:.2f} | {w['stopped_at']} "
                         f"({w['reason']}) |")
    return "\n".join(lines) + "\n"


def figure(results, path) -> None:
    runs = results["runs"]
    crops = sorted({r["crop"] for r in runs.values()}, key=list(CROPS).index)
    fig, axes = plt.subplots(len(crops), 1, figsize=(9, 3.2 * len(crops)), squeeze=False)
    colours = {"psgld": "tab:green", "sgld": "tab:purple", "paper": "tab:red"}
    for ax, crop in zip(axes[:, 0], crops):
        for method, colour in colours.items():
            long = runs.get(f"{crop}/{method}")
            if long is None:
                continue
            ax.plot(long["log_steps"], long["psnr_sample"], color=colour, lw=0.5, alpha=0.35)
            ax.plot(*zip(*long["prefix"]), color=colour, lw=1.8, label=f"{method}: mean65(T)")
            if long["window"]:
                ax.plot(*zip(*long["window"]), color=colour, lw=1.0, ls="--",
                        label=f"{method}: {WINDOW}-step window mean")
            auto = runs.get(f"{crop}/{method}-auto")
            if auto and auto.get("stopped_at"):
                ax.axvline(auto["stopped_at"], color=colour, lw=1.0, ls=":")
        dip = runs.get(f"{crop}/dip")
        if dip:
            ax.plot(dip["log_steps"], dip["psnr_ema"], color="tab:blue", lw=1.4, label="DIP EMA")
            if dip["wmv"]["best_step"]:
                ax.plot([dip["wmv"]["best_step"]], [dip["psnr_wmv"]], "o", color="tab:blue",
                        label="ES-WMV's iterate")
        ax.set_title(f"{crop} (dotted: the automatic budget's stop; thin: sample PSNR)")
        ax.set_xlabel("step")
        ax.set_ylabel("PSNR (dB)")
        ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)


def report(out: Path) -> None:
    results = load_results(out)
    if not results["runs"]:
        print("nothing cached yet")
        return
    text = markdown(results)
    (out / f"{NAME}.md").write_text(text)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figure(results, out / "figures" / f"{NAME}.png")
    print(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", nargs="+", choices=list(CROPS), default=list(CROPS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--no-dip", action="store_true", help="skip the DIP / ES-WMV row")
    parser.add_argument("--no-auto", action="store_true", help="skip the automatic-budget runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report", action="store_true", help="only write the table and figure")
    args = parser.parse_args(argv)
    if not args.report:
        run_all(args.out, args.crops, args.methods, args.steps, args.channels, not args.no_dip,
                not args.no_auto)
    report(args.out)


if __name__ == "__main__":
    main()
