"""What the ablation benchmarks (``inpainting_ablation.py``, ``superres_ablation.py``) share.

* :func:`data_folder`   a task's benchmark images, found from this file's location.
* :func:`machine`       platform, CPU count and package versions, for the results header.
* :func:`run_ablation`  the resumable loop: every (image, row) run whose key ``image/row`` the
                        results file lacks is run, and the JSON and markdown are rewritten after
                        each run, so an interrupted benchmark keeps what it finished.
* :func:`markdown_table`  one line per row, one cell per image, then means over the images.

Results files hold ``{**header, "machine": ..., "runs": {"image/row": record}}``.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from tfdip.errors import TfdipError
from tfdip.io import write_json

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PACKAGES = ("numpy", "tensorflow", "keras", "tensorflow-probability", "scikit-image")


def data_folder(task: str) -> Path:
    """``shared/data/<task>`` in the nearest folder above this file that has one."""
    for parent in HERE.parents:
        if (parent / "shared" / "data" / task).is_dir():
            return parent / "shared" / "data" / task
    raise TfdipError(f"no shared/data/{task} folder above {HERE}; the benchmark images are missing")


def machine(packages=PACKAGES) -> dict:
    """Platform, logical CPU count and the versions of Python and ``packages``."""
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return {"platform": platform.platform(), "logical_cpus": os.cpu_count(), "versions": versions}


def open_results(json_path: Path, header: dict, packages=PACKAGES) -> dict:
    """The results saved at ``json_path`` (to resume them), else fresh ones with ``header``.

    A saved file whose header differs from ``header`` (another crop size, budget, ...) is refused:
    its runs are not comparable with the ones to come.
    """
    if not json_path.exists():
        return {**header, "machine": machine(packages), "runs": {}}
    results = json.loads(json_path.read_text())
    differ = [f"{key} {results.get(key)!r} (asked {value!r})" for key, value in header.items()
              if results.get(key) != value]
    if differ:
        raise TfdipError(f"{json_path} holds runs with {', '.join(differ)}; give another --out")
    return results


def run_ablation(out: Path, header: dict, jobs, write_markdown, packages=PACKAGES) -> dict:
    """Run the ``jobs`` (pairs ``(key, run)``, ``run()`` returning a record) whose key
    ``out.json`` lacks; after each, save the JSON (keeping runs another process saved meanwhile)
    and ``write_markdown(results, out.md)``. Returns the results."""
    json_path = out.with_suffix(".json")
    results = open_results(json_path, header, packages)
    for key, run in jobs:
        if key in results["runs"]:
            continue
        record = run()
        print(key, {k: v for k, v in record.items() if k.startswith(("psnr", "cov", "sigma"))},
              flush=True)
        if json_path.exists():  # keep what other runs wrote meanwhile
            results["runs"] = {**json.loads(json_path.read_text())["runs"], **results["runs"]}
        results["runs"][key] = record
        write_json(json_path, results)
        write_markdown(results, out.with_suffix(".md"))
    return results


@dataclass(frozen=True)
class Column:
    """A summary column: the mean of ``record[key]`` over the images, printed with ``pattern``
    (only once every image has a run when ``complete``; blank when no run has ``key``)."""

    title: str
    key: str
    pattern: str = "{:.2f}"
    complete: bool = True


def markdown_table(runs: dict, rows, images, cell, columns) -> list:
    """Lines of a markdown table of ``runs`` (keyed ``image/row``): a line per row that has a
    run, a column per image that has one (``cell(record)``, blank when missing), then
    ``columns``."""
    images = [name for name in images if any(key.startswith(name + "/") for key in runs)]
    lines = ["| row | " + " | ".join([*images, *(column.title for column in columns)]) + " |",
             "|---|" + "---|" * (len(images) + len(columns))]
    for row in rows:
        records = [runs.get(f"{name}/{row}") for name in images]
        present = [record for record in records if record is not None]
        if not present:
            continue
        complete = len(present) == len(images)
        cells = ["" if record is None else cell(record) for record in records]
        for column in columns:
            values = [record[column.key] for record in present if column.key in record]
            shown = values and (complete or not column.complete)
            cells.append(column.pattern.format(np.mean(values)) if shown else "")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def report_errors(main):
    """``main`` that ends with ``tfdip: error: ...`` on stderr and status 2 on a TfdipError."""
    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except TfdipError as error:
            print(f"tfdip: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    return guarded
