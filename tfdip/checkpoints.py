"""Checkpoints of a restoration run: the run's settings, checked on resume, and atomic saves.

A checkpoint folder holds one run:

    DIR/run.json              {"format": 1, "settings": {...}}, written before any chain starts
    DIR/chain<k>/latest.json  {"format": 1, "step": N, "prefix": "step<N>-<random hex>"}
    DIR/chain<k>/<prefix>.index, <prefix>.data-*   a ``tf.train.Checkpoint`` of chain k's whole
                                                   state (``DeepImagePrior.checkpoint()``)

``settings`` (:func:`run_settings`) name everything that decides the result: a SHA-256 of the
observation, the task and its operator (noise level, mask hash, factor), the method and its
whole recipe (iterations, step size, likelihood, jitter, EMA, roll-back, burn-in, thinning), the
network and the seed. The number of chains is not among them: chain k depends on (seed, k) only
(:mod:`tfdip.seeds`), so a run may be resumed with more or fewer chains.

A save writes the state under a fresh prefix, flushes it to disk, then replaces ``latest.json``
atomically (temporary file, fsync, rename) and only then deletes the files ``latest.json`` no
longer names (and temporary files a killed save left behind). A process killed at any point
therefore leaves ``latest.json`` naming a complete checkpoint (or no ``latest.json``: the chain
starts from the beginning); a save that fails (full disk) removes what it wrote and leaves the
previous checkpoint in place.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError, TfdipWarning
from tfdip.io import write_json

FORMAT = 1
SETTINGS_FILE = "run.json"
LATEST_FILE = "latest.json"
_PREFIX = "step"


def _sha256(array) -> str:
    array = np.ascontiguousarray(array, dtype=np.float32)
    digest = hashlib.sha256(str(array.shape).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def run_settings(observation, physics, recipe, spec, seed: int) -> dict:
    """The settings that decide a run's result, as a flat JSON-able dict (see module docstring).

    ``spec`` is the generator's architecture (a :class:`tfdip.nets` spec dataclass).
    """
    settings = {"observation": _sha256(observation), "task": physics.name,
                "sigma": float(physics.sigma)}
    if getattr(physics, "mask", None) is not None:
        settings["mask"] = _sha256(physics.mask)
    if getattr(physics, "factor", None) is not None:
        settings["factor"] = int(physics.factor)
    settings.update(dataclasses.asdict(recipe))
    settings["net"] = repr(spec)
    settings["seed"] = int(seed)
    settings["seed_scheme"] = "SeedSequence(seed, spawn_key=(chain, purpose))"
    return json.loads(json.dumps(settings))


def _shorten(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:10] + "..." + text[-10:]


def _differences(saved: dict, current: dict) -> list:
    keys = sorted(set(saved) | set(current))
    return [f"{key} ({_shorten(saved.get(key))} there, {_shorten(current.get(key))} now)"
            for key in keys if saved.get(key) != current.get(key)]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TfdipError(f"cannot read {path} ({error}); the checkpoint folder is damaged") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TfdipError(f"{path} is not a tfdip checkpoint file of format {FORMAT}")
    return data


class RunCheckpoints:
    """The checkpoint folder of one run: its settings and one :class:`ChainCheckpoint` per chain."""

    def __init__(self, directory, settings: dict):
        self.directory = Path(directory)
        self.settings = settings

    def open(self, resume: bool) -> None:
        """Start (``resume=False``) or continue (``resume=True``) the run in the folder.

        Starting refuses a folder that already holds a run; continuing checks the saved settings
        against this run's (one-line error naming what differs) and, when nothing was saved yet,
        starts from the beginning with a :class:`TfdipWarning` saying so.
        """
        path = self.directory / SETTINGS_FILE
        if path.exists():
            if not resume:
                raise TfdipError(f"{self.directory} already holds the checkpoints of a run; resume "
                                 f"it (resume=True, --resume) or choose another checkpoint folder")
            saved = _read_json(path).get("settings", {})
            differences = _differences(saved, self.settings)
            if differences:
                raise TfdipError(f"the checkpoints in {self.directory} are of another run: "
                                 f"{'; '.join(differences)}")
            return
        if resume:
            warnings.warn(f"no checkpoint in {self.directory} yet; starting the run from the "
                          f"beginning", TfdipWarning, stacklevel=3)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TfdipError(f"cannot create the checkpoint folder {self.directory} "
                             f"({error.strerror or error})") from None
        write_json(path, {"format": FORMAT, "settings": self.settings})

    def chain(self, index: int) -> "ChainCheckpoint":
        return ChainCheckpoint(self.directory / f"chain{index}")


class ChainCheckpoint:
    """The newest saved state of one chain, in ``folder`` (see the module docstring)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def latest(self):
        """``(step, path prefix)`` of the newest complete checkpoint, or None."""
        path = self.folder / LATEST_FILE
        if not path.exists():
            return None
        data = _read_json(path)
        return int(data["step"]), str(self.folder / data["prefix"])

    def restore(self, checkpoint: tf.train.Checkpoint) -> int:
        """Load the newest state into ``checkpoint``'s objects; return its step (0: none saved)."""
        latest = self.latest()
        if latest is None:
            return 0
        step, prefix = latest
        try:
            checkpoint.read(prefix).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise TfdipError(f"the checkpoint {prefix} does not fit this run's model ({first})") \
                from None
        return step

    def save(self, checkpoint: tf.train.Checkpoint, step: int) -> None:
        """Write ``checkpoint`` as the state after ``step`` steps, atomically (module docstring)."""
        name = f"{_PREFIX}{int(step):09d}-{uuid.uuid4().hex[:12]}"
        prefix = self.folder / name
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            checkpoint.write(str(prefix))
            for path in self._files(name):
                _fsync(path)
            write_json(self.folder / LATEST_FILE, {"format": FORMAT, "step": int(step),
                                                   "prefix": name})
        except (OSError, tf.errors.OpError, TfdipError) as error:
            self._remove(lambda entry: entry.startswith(name))
            raise TfdipError(f"cannot save the checkpoint of step {step} in {self.folder}: "
                             f"{_reason(error)}; the previous checkpoint is kept") from None
        self._remove(lambda entry: (entry.startswith(_PREFIX) and not entry.startswith(name))
                     or (entry.startswith(f".{LATEST_FILE}.") and entry.endswith(".tmp")))

    def _files(self, name):
        return [p for p in self.folder.iterdir() if p.name.startswith(name) and p.is_file()]

    def _remove(self, selected) -> None:
        for path in self.folder.iterdir() if self.folder.is_dir() else ():
            if selected(path.name):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _reason(error) -> str:
    text = getattr(error, "message", None) or str(error)
    if "no space left" in text.lower() or getattr(error, "errno", None) == errno.ENOSPC:
        return "no space left on the device"
    return (text.strip().splitlines() or [type(error).__name__])[0]
