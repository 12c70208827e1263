"""Gaussian-process image restoration with TensorFlow Probability.

    from tfdip.gp import gp_restore
    result = gp_restore(observation, mask, kernel="rbf")      # hyper-parameters fitted
    result.mean, result.std, result.hyperparameters

Modules: :mod:`~tfdip.gp.data` (observation -> regression data), :mod:`~tfdip.gp.prior` (kernel,
mean, noise), :mod:`~tfdip.gp.fit` (marginal-likelihood fit), :mod:`~tfdip.gp.dense` (the exact
posterior and :func:`gp_restore`).
"""
from tfdip.gp.data import MAX_DENSE_PIXELS, PixelData, pixel_coordinates, pixel_data
from tfdip.gp.dense import GPResult, gp_posterior, gp_restore, resolve_kernel
from tfdip.gp.fit import FitSummary, fit_prior
from tfdip.gp.prior import HYPERPARAMETERS, STATIONARY_KERNELS, GPPrior

__all__ = ["FitSummary", "GPPrior", "GPResult", "HYPERPARAMETERS", "MAX_DENSE_PIXELS", "PixelData",
           "STATIONARY_KERNELS", "fit_prior", "gp_posterior", "gp_restore", "pixel_coordinates",
           "pixel_data", "resolve_kernel"]
