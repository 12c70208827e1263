"""Restore many images: items from a folder or a manifest, run on local worker processes or a
Ray cluster, resumable, with failures isolated and chains pooled across workers.

    from tfdip.batch import Defaults, LocalEngine, read_items, run_batch
    items = read_items("noisy/", Defaults(task="denoise", sigma=25, method="psgld"))
    engine = LocalEngine(workers=2)
    try:
        result = run_batch(items, "restored/", engine)
    finally:
        engine.close()

``tfdip batch`` is the command-line face of this package. Modules: :mod:`~tfdip.batch.items`
(items, settings hash), :mod:`~tfdip.batch.work` (what a worker runs),
:mod:`~tfdip.batch.engines` (local processes, Ray), :mod:`~tfdip.batch.runner` (skip, submit,
isolate, pool, write), :mod:`~tfdip.batch.summary` (summary.csv / summary.md),
:mod:`~tfdip.batch.output` (a worker's stdout and stderr into a log file).
"""
import importlib

_LAZY = {"Defaults": "items", "Item": "items", "read_items": "items", "LocalEngine": "engines",
         "RayEngine": "engines", "run_batch": "runner", "BatchResult": "runner"}

__all__ = sorted(_LAZY)


def __getattr__(name):
    # Lazy, so that a worker process can load tfdip.batch.output before TensorFlow.
    if name in _LAZY:
        return getattr(importlib.import_module(f"tfdip.batch.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tfdip.batch' has no attribute {name!r}")
