"""tfdip: the Deep Image Prior, the Bayesian way, in TensorFlow / Keras 3 / TensorFlow Probability.

    import tfdip
    physics = tfdip.physics.Denoising(25 / 255)
    result = tfdip.restore(observation, physics, method="paper")   # posterior mean + std map

Public names are imported lazily, so ``import tfdip`` (and the ``tfdip`` command's ``--help``)
does not load TensorFlow until it is needed.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {
    "DeepImagePrior": ("tfdip.dip", "DeepImagePrior"),
    "restore": ("tfdip.restoration", "restore"),
    "Restoration": ("tfdip.restoration", "Restoration"),
    "make_recipe": ("tfdip.recipes", "make_recipe"),
    "TfdipError": ("tfdip.errors", "TfdipError"),
}
_SUBMODULES = ("callbacks", "dip", "errors", "gp", "inference", "io", "kernels", "metrics", "nets",
               "physics", "recipes", "restoration", "viz", "export")

__all__ = sorted(_LAZY) + list(_SUBMODULES)


def __getattr__(name):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    if name in _SUBMODULES:
        return importlib.import_module(f"tfdip.{name}")
    raise AttributeError(f"module 'tfdip' has no attribute {name!r}")
