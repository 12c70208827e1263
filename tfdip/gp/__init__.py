"""Gaussian-process image restoration with TensorFlow Probability.

    from tfdip.gp import gp_restore
    result = gp_restore(observation, mask, kernel="rbf")      # hyper-parameters fitted
    result.mean, result.std, result.hyperparameters

Modules: :mod:`~tfdip.gp.data` (observation -> regression data), :mod:`~tfdip.gp.prior` (kernel,
mean, noise), :mod:`~tfdip.gp.fit` (marginal-likelihood fit), :mod:`~tfdip.gp.dense` (the exact
posterior and :func:`gp_restore`). At full image size (any stationary kernel): :mod:`~tfdip.gp.grid`
(FFT kernel operators on the pixel grid), :mod:`~tfdip.gp.cg` (batched conjugate gradients),
:mod:`~tfdip.gp.sampling` (circulant-embedding and pathwise samples), :mod:`~tfdip.gp.grid_posterior`
(posterior mean and std map) and :mod:`~tfdip.gp.grid_fit` (hyper-parameters by torus spectra and
stochastic Lanczos quadrature).
"""
from tfdip.gp.cg import CGResult, conjugate_gradients
from tfdip.gp.data import MAX_DENSE_PIXELS, PixelData, pixel_coordinates, pixel_data
from tfdip.gp.dense import SOLVERS, GPResult, choose_solver, gp_posterior, gp_restore
from tfdip.gp.fit import FitSummary, fit_prior
from tfdip.gp.grid import GridKernel, ObservedGridKernel, wiener_filter
from tfdip.gp.grid_fit import fit_on_grid
from tfdip.gp.grid_posterior import GridPosterior, grid_posterior
from tfdip.gp.prior import (DIP_KERNEL_SPEC, HYPERPARAMETERS, KERNEL_NAMES, STATIONARY_KERNELS,
                            GPPrior, resolve_kernel)
from tfdip.gp.sampling import Embedding, circulant_embedding, prior_samples

__all__ = ["CGResult", "DIP_KERNEL_SPEC", "Embedding", "FitSummary", "GPPrior", "GPResult",
           "GridKernel", "GridPosterior", "HYPERPARAMETERS", "KERNEL_NAMES", "MAX_DENSE_PIXELS",
           "ObservedGridKernel", "PixelData", "SOLVERS", "STATIONARY_KERNELS", "choose_solver",
           "circulant_embedding", "conjugate_gradients", "fit_on_grid", "fit_prior",
           "gp_posterior", "gp_restore", "grid_posterior", "pixel_coordinates", "pixel_data",
           "prior_samples", "resolve_kernel", "wiener_filter"]
