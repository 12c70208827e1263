"""The items of a batch: read from a folder of images or a manifest, with their settings and hash.

A manifest is a CSV file with a header, or JSON lines (``.jsonl`` / ``.json``: one object per
line), with the columns

    input (required), mask, reference, sigma, factor, task, method, iterations, max_iterations,
    stop, schedule, seed

relative paths being relative to the manifest's folder; ``iterations`` is a whole number or
``auto`` (the automatic budget, capped at ``max_iterations``), ``stop`` is ``wmv`` (ES-WMV, sgd
only) and ``schedule`` a Langevin step-size schedule (:data:`tfdip.recipes.SCHEDULES`). A missing
or empty value takes the batch's default (its command-line option); the item's options are then
checked together as :func:`tfdip.recipes.make_recipe` checks them, so a batch-wide option that
does not apply to an item (``--max-iterations`` for an item with a number of iterations,
``--stop wmv`` for a sampling item, ...) is refused, naming its line. Each item gets its own
output folder, named after the input file (``name``, ``name-2``, ... when names repeat).

An item's *settings* are everything its result depends on: the content (SHA-256) of its input,
mask and reference files, the task and noise level, the resolved recipe (method, iterations or
the automatic budget's cap and rules, step size and its schedule, burn-in, thinning, stopping
rule, ...), the net, its compute precision (when not float32), the seed and the number of
chains. Their hash marks a finished item: a rerun skips an item whose report carries the same
hash. XLA compilation (``jit_compile``) is not among them: like the number of threads, it changes
the floats only.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from pathlib import Path

from tfdip.errors import TfdipError
from tfdip.precision import check_jit_compile, check_precision
from tfdip.problem import TASKS, check_task_options, sigma01
from tfdip.recipes import METHODS, make_recipe, refuse_for_mcmc

#: Image files a folder input picks up.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".npy")
#: A column of steps that may also say "auto" (the automatic budget).
STEPS_OR_AUTO = "steps or auto"
MANIFEST_COLUMNS = {"input": str, "mask": str, "reference": str, "sigma": float, "factor": int,
                    "task": str, "method": str, "iterations": STEPS_OR_AUTO,
                    "max_iterations": int, "stop": str, "schedule": str, "seed": int}
_PATH_COLUMNS = ("input", "mask", "reference")


@dataclasses.dataclass(frozen=True)
class Defaults:
    """The batch-wide settings (the command-line options); a manifest overrides the per-item ones
    (task, sigma, mask, factor, method, iterations, max_iterations, stop, schedule, seed).

    ``iterations`` (a number or ``"auto"``), ``max_iterations``, ``budget`` (the automatic
    budget's :class:`tfdip.inference.budget.BudgetRules`), ``stop`` and ``schedule`` are
    :func:`tfdip.recipes.make_recipe`'s; ``precision`` and ``jit_compile`` are
    :func:`tfdip.restore`'s (optimizer methods only)."""

    task: str | None = None
    sigma: float | None = None
    mask: str | None = None
    factor: int | None = None
    method: str = "psgld"
    iterations: int | str | None = None
    max_iterations: int | None = None
    budget: object = None
    stop: str | None = None
    schedule: str | None = None
    learning_rate: float | None = None
    burn_in: int | None = None
    thin: int | None = None
    seed: int = 0
    chains: int = 1
    net_options: dict = dataclasses.field(default_factory=dict)
    checkpoint_every: int | None = None
    precision: str = "float32"
    jit_compile: bool = False


@dataclasses.dataclass(frozen=True)
class Item:
    """One image of a batch with everything needed to restore it.

    Attributes:
        index: position in the input (0-based); ``line`` names it in messages.
        name: the item's output folder name.
        input, mask, reference: file paths (mask and reference may be None).
        task: ``denoise``, ``inpaint`` or ``superres``; sigma: noise std on 0..255 (or None);
        factor: super-resolution factor (or None).
        recipe: the resolved :class:`tfdip.recipes.Recipe`; seed, chains, net_options,
        checkpoint_every, precision, jit_compile: as for :func:`tfdip.restore`.
    """

    index: int
    line: str
    name: str
    input: str
    mask: str | None
    reference: str | None
    task: str
    sigma: float | None
    factor: int | None
    recipe: object
    seed: int
    chains: int
    net_options: dict
    checkpoint_every: int | None
    precision: str = "float32"
    jit_compile: bool = False

    def settings(self) -> dict:
        """Everything the item's result depends on, JSON-ready (file contents as SHA-256). The
        precision is named when it is not float32 only, so that items finished in float32 before
        it was a batch option keep their hash."""
        settings = {
            "input": _file_digest(self.input), "mask": _file_digest(self.mask),
            "reference": _file_digest(self.reference), "task": self.task, "sigma": self.sigma,
            "factor": self.factor, "recipe": dataclasses.asdict(self.recipe), "seed": self.seed,
            "chains": self.chains, "net_options": self.net_options,
        }
        if self.precision != "float32":
            settings["precision"] = self.precision
        return settings



def settings_hash(settings: dict) -> str:
    """SHA-256 (first 16 hex digits) of an item's :meth:`Item.settings`."""
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _file_digest(path) -> str | None:
    """SHA-256 of a file's bytes; None without a path or for a file that cannot be read (the
    item then fails when it is read, with the reason)."""
    if path is None:
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def read_items(source, defaults: Defaults) -> list[Item]:
    """The items of ``source`` (a folder of images or a manifest file), settings resolved.

    Raises TfdipError (before any work) for an empty folder, a malformed manifest, an unknown
    column, a value of the wrong type, or settings that cannot work (a missing --sigma for
    denoise, several chains with sgd, burn-in beyond the run, ...), naming the manifest line.
    """
    source = Path(source)
    if source.is_dir():
        rows = _folder_rows(source)
    elif source.is_file():
        rows = _manifest_rows(source)
    else:
        raise TfdipError(f"no such folder or manifest: {source}")
    items, taken = [], set()
    for index, (line, row) in enumerate(rows):
        try:
            item = _item(index, line, row, defaults)
        except TfdipError as error:
            raise TfdipError(f"{line}: {error}") from None
        name = _unique_name(Path(item.input).stem or "item", taken)
        items.append(dataclasses.replace(item, name=name))
    return items


def _folder_rows(folder: Path):
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise TfdipError(f"folder {folder} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    return [(f"{path.name}", {"input": str(path)}) for path in files]


def _manifest_rows(path: Path):
    """(where, row dict of typed values) per manifest entry, paths made absolute."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        raw = _csv_rows(path)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        raw = _json_rows(path)
    else:
        raise TfdipError(f"{path} is neither a folder nor a manifest (.csv, .jsonl, .json)")
    rows = []
    for where, values in raw:
        unknown = sorted(set(values) - set(MANIFEST_COLUMNS))
        if unknown:
            raise TfdipError(f"{where}: unknown column {unknown[0]!r}; the columns are "
                             f"{', '.join(MANIFEST_COLUMNS)}")
        row = {}
        for key, value in values.items():
            if value is None or value == "":
                continue
            row[key] = _typed(key, value, where)
            if key in _PATH_COLUMNS:
                row[key] = str(path.parent / row[key])
        if "input" not in row:
            raise TfdipError(f"{where}: no input (the image to restore)")
        rows.append((where, row))
    if not rows:
        raise TfdipError(f"manifest {path} lists no item")
    return rows


def _csv_rows(path: Path):
    try:
        with open(path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            if reader.fieldnames is None:
                return []
            rows = []
            for number, row in enumerate(reader, start=2):
                if None in row:
                    raise TfdipError(f"{path.name} line {number}: more values than columns")
                rows.append((f"{path.name} line {number}", {k.strip(): v.strip() if v else v
                                                            for k, v in row.items()}))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise TfdipError(f"cannot read the manifest {path}: {error}") from None


def _json_rows(path: Path):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise TfdipError(f"cannot read the manifest {path}: {error}") from None
    rows = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise TfdipError(f"{where}: not a JSON object ({error.msg}); write one object per "
                             f"line") from None
        if not isinstance(values, dict):
            raise TfdipError(f"{where}: not a JSON object; write one object per line")
        rows.append((where, values))
    return rows


def _typed(key, value, where):
    kind = MANIFEST_COLUMNS[key]
    if kind is STEPS_OR_AUTO:
        if value == "auto":
            return value
        kind = int
    if kind is str:
        if not isinstance(value, str):
            raise TfdipError(f"{where}: {key} must be text, got {value!r}")
        return value
    try:
        number = None if isinstance(value, bool) else kind(value)
        if kind is int and float(value) != number:  # 2.5 is not a whole number
            number = None
    except (TypeError, ValueError):
        number = None
    if number is None:
        expected = "a number" if kind is float else "a whole number"
        if MANIFEST_COLUMNS[key] is STEPS_OR_AUTO:
            expected += " or 'auto'"
        raise TfdipError(f"{where}: {key} must be {expected}, got {value!r}")
    return number


def _item(index, line, row, defaults: Defaults) -> Item:
    task = row.get("task", defaults.task)
    if task is None:
        raise TfdipError("no task: give --task or a task column")
    method = row.get("method", defaults.method)
    if method not in METHODS:
        raise TfdipError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    sigma = row.get("sigma", defaults.sigma)
    mask = row.get("mask", defaults.mask)
    factor = row.get("factor", defaults.factor)
    check_task_options(task, sigma=sigma, mask=mask, factor=factor)
    recipe = make_recipe(method, TASKS[task], iterations=row.get("iterations", defaults.iterations),
                         max_iterations=row.get("max_iterations", defaults.max_iterations),
                         budget=defaults.budget, stop=row.get("stop", defaults.stop),
                         schedule=row.get("schedule", defaults.schedule),
                         learning_rate=defaults.learning_rate, burn_in=defaults.burn_in,
                         thin=defaults.thin, sigma=sigma01(sigma or 0.0))
    check_precision(defaults.precision)
    check_jit_compile(defaults.jit_compile)
    refuse_for_mcmc(method, {"--checkpoint-every": defaults.checkpoint_every,
                             "--precision": defaults.precision != "float32",
                             "--xla": defaults.jit_compile})
    if defaults.chains > 1 and not recipe.is_bayesian:
        raise TfdipError(f"several chains need a sampling method (paper, sgld, psgld, mala, ula), "
                         f"not {method}")
    return Item(index=index, line=line, name="", input=row["input"], mask=mask,
                reference=row.get("reference"), task=task, sigma=sigma, factor=factor,
                recipe=recipe, seed=row.get("seed", defaults.seed), chains=defaults.chains,
                net_options=dict(defaults.net_options),
                checkpoint_every=defaults.checkpoint_every, precision=defaults.precision,
                jit_compile=defaults.jit_compile)


def _unique_name(stem: str, taken: set) -> str:
    name, number = stem, 1
    while name in taken:
        number += 1
        name = f"{stem}-{number}"
    taken.add(name)
    return name
