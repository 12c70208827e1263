"""The batch summary: one row per item, then the mean and std over the finished items.

``summary.csv`` (machine-readable) and ``summary.md`` (a table) hold, per item: ``input``,
``name`` (its output folder), ``status`` (``ok`` or ``failed``), ``error`` (one line),
``psnr`` / ``ssim`` / ``coverage_2std`` (when a reference was given; the coverage is the
fraction of pixels whose error is within two posterior stds), ``samples``, ``iterations`` (the
steps run: the longest chain's when an automatic budget or ES-WMV stopped it before its cap),
``rhat_max``, ``seconds`` and ``stop`` (how a run that stops by itself ended, as the single-image
commands print it: per chain the step burn-in ended, the step it stopped and why, ``rule met`` or
``cap reached``; ES-WMV's kept step; empty for a fixed number of iterations). The last two rows
hold the mean and the sample std (n - 1) of every numeric column over the items that have a value.
"""
from __future__ import annotations

import csv
import io as text_io
import math

import numpy as np

from tfdip import io
from tfdip.outputs import stopping_notes

COLUMNS = ("input", "name", "status", "error", "psnr", "ssim", "coverage_2std", "samples",
           "iterations", "rhat_max", "seconds", "stop")
NUMERIC = ("psnr", "ssim", "coverage_2std", "samples", "iterations", "rhat_max", "seconds")


def ok_row(item, report: dict) -> dict:
    """The summary row of an item finished with ``report`` (see :mod:`tfdip.outputs`)."""
    calibration = report.get("calibration") or {}
    return {"input": item.input, "name": item.name, "status": "ok", "error": "",
            "psnr": report.get("psnr"), "ssim": report.get("ssim"),
            "coverage_2std": calibration.get("coverage_2std"), "samples": report.get("samples"),
            "iterations": report.get("iterations"), "rhat_max": report.get("rhat_max"),
            "seconds": report.get("seconds"), "stop": "; ".join(stopping_notes(report))}


def failed_row(item, error: str) -> dict:
    """The summary row of an item that failed with the one-line ``error``."""
    return {**{column: None for column in COLUMNS}, "input": item.input, "name": item.name,
            "status": "failed", "error": error}


def aggregate(rows) -> tuple[dict, dict]:
    """(mean, std) of each numeric column over the rows with a finite value (std with n - 1;
    None where fewer than 1, resp. 2, values exist)."""
    mean, std = {}, {}
    for column in NUMERIC:
        values = np.array([float(row[column]) for row in rows
                           if row[column] is not None and math.isfinite(float(row[column]))])
        mean[column] = float(values.mean()) if values.size else None
        std[column] = float(values.std(ddof=1)) if values.size > 1 else None
    return mean, std


def write_summary(rows, folder) -> None:
    """Write ``summary.csv`` and ``summary.md`` of ``rows`` (in item order) into ``folder``."""
    mean, std = aggregate(rows)
    io.write_text(folder / "summary.csv", _csv(rows, mean, std))
    io.write_text(folder / "summary.md", _markdown(rows, mean, std))


def _csv(rows, mean, std) -> str:
    buffer = text_io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    for label, values in (("mean", mean), ("std", std)):
        writer.writerow([label if c == "input" else "" if values.get(c) is None else values[c]
                         for c in COLUMNS])
    return buffer.getvalue()


def _markdown(rows, mean, std) -> str:
    failed = sum(row["status"] == "failed" for row in rows)
    lines = [f"# Batch summary: {len(rows) - failed} ok, {failed} failed", "",
             "| input | status | error | PSNR (dB) | SSIM | 2-std coverage | samples | steps "
             "| R-hat max | seconds | stop |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        error, stop = (_escaped(row[c]) for c in ("error", "stop"))
        lines.append(f"| {row['input']} | {row['status']} | {error} | {_cells(row)} {stop} |")
    for label, values in (("mean", mean), ("std", std)):
        lines.append(f"| **{label}** | | | {_cells(values)} |")
    lines += ["", "Mean and std (n - 1) over the items with a value; PSNR, SSIM and coverage "
                  "need a reference. Steps: those run (a run that stops by itself may end before "
                  "its cap); stop: how it ended."]
    return "\n".join(lines) + "\n"


def _escaped(text) -> str:
    return (text or "").replace("|", "\\|")


def _cells(values) -> str:
    formats = {"psnr": "{:.2f}", "ssim": "{:.4f}", "coverage_2std": "{:.3f}", "samples": "{:.0f}",
               "iterations": "{:.0f}", "rhat_max": "{:.3f}", "seconds": "{:.1f}"}
    return " | ".join("" if values[c] is None else formats[c].format(float(values[c]))
                      for c in NUMERIC) + " |"
