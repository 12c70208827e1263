"""Gaussian-process image restoration with TensorFlow Probability.

    from tfdip.gp import gp_restore
    result = gp_restore(observation, mask, kernel="rbf")      # hyper-parameters fitted
    result.mean, result.std, result.hyperparameters

Modules: :mod:`~tfdip.gp.data` (observation -> regression data), :mod:`~tfdip.gp.prior` (kernel,
mean, noise), :mod:`~tfdip.gp.fit` (marginal-likelihood fit), :mod:`~tfdip.gp.dense` (the exact
posterior and :func:`gp_restore`).
"""
from tfdip.gp.data import MAX_DENSE_PIXELS, PixelData, pixel_coordinates, pixel_data
from tfdip.gp.dense import GPResult, gp_posterior, gp_restore
from tfdip.gp.fit import FitSummary, fit_prior
from tfdip.gp.prior import (DIP_KERNEL_SPEC, HYPERPARAMETERS, KERNEL_NAMES, STATIONARY_KERNELS,
                            GPPrior, resolve_kernel)

__all__ = ["DIP_KERNEL_SPEC", "FitSummary", "GPPrior", "GPResult", "HYPERPARAMETERS", "KERNEL_NAMES",
           "MAX_DENSE_PIXELS", "PixelData", "STATIONARY_KERNELS", "fit_prior", "gp_posterior",
           "gp_restore", "pixel_coordinates", "pixel_data", "resolve_kernel"]
