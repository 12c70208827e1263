"""Dense GP restoration: inpainting and denoising with an exact Gaussian-process posterior.

With the prior of :mod:`tfdip.gp.prior` and the observed pixels ``X`` (``[N, 2]``, values ``y_c``),
the posterior of the clean channel ``f_c`` at the pixels ``X*`` (``[P, 2]``) is Gaussian with

    mean_c = m_c + K*^T (K + s^2 I)^-1 (y_c - m_c),     var = diag(K** - K*^T (K + s^2 I)^-1 K*)

where ``K = k(X, X)``, ``K* = k(X, X*)``, ``K** = k(X*, X*)`` (computed by
:class:`tfp.distributions.GaussianProcessRegressionModel`, in float64, with a jitter of
:data:`~tfdip.gp.prior.JITTER` on the diagonal of ``K + s^2 I``). The variance is the same for
every channel (channels share the kernel, the noise and the known pixels). This is the latent
image's uncertainty: the observation noise is not added back.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError
from tfdip.gp.cg import DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE
from tfdip.gp.data import MAX_DENSE_PIXELS, PixelData, pixel_data
from tfdip.gp.fit import FitSummary, fit_prior
from tfdip.gp.grid_fit import NOISE_FLOOR, fit_on_grid, torus_log_likelihood
from tfdip.gp.grid_posterior import Progress, check_grid_memory, grid_posterior
from tfdip.gp.prior import DTYPE, GPPrior, cholesky_with_jitter, resolve_kernel
from tfdip.gp.sampling import DEFAULT_SAMPLES

tfd = tfp.distributions

INITIAL_LENGTH_SCALE = 2.0
"""Starting length scale of the named kernels, in pixels."""
INITIAL_NOISE_FRACTION = 0.1
"""A fitted noise variance starts at this fraction of the observed values' variance."""
MEANS = ("constant", "zero")
SOLVERS = ("auto", "dense", "grid")
"""``auto``: dense up to :data:`~tfdip.gp.data.MAX_DENSE_PIXELS` pixels, the grid solver above."""


@dataclasses.dataclass(frozen=True)
class GPResult:
    """The outcome of :func:`gp_restore`.

    Attributes:
      mean: the restored image (posterior mean clipped to [0, 1]; for noise-free inpainting the
        known pixels keep their observed values), float32, shaped like the observation.
      std: the posterior standard deviation of the clean image per pixel, float32 ``(H, W)``
        (the same for every channel).
      kernel_name: the kernel's name (``"rbf"``, ..., ``"dip"`` for DIP kernels) or the given
        kernel's ``name``.
      hyperparameters: the hyper-parameters used (see :mod:`tfdip.gp.prior`): ``amplitude``,
        ``length_scale`` (named kernels), ``noise_variance`` and ``mean`` (one per channel, absent
        for a zero-mean prior).
      log_marginal_likelihood: ``log p(y)`` of the observed values under those hyper-parameters
        (grid solver: exact on a full grid's torus, by SLQ after a masked fit, None for a masked
        grid solve without a fit).
      seconds: wall time of the whole restoration (fit and posterior).
      fit: the fit's summary, or None if nothing was fitted.
      solver: ``"dense"`` or ``"grid"``.
      seconds_fit, seconds_mean, seconds_std: wall time of the fit, the posterior mean (dense: with
        the exact std) and the sampled std map.
      cg_iterations, cg_residual: the grid solver's CG iterations for the mean and its largest
        true relative residual (None for the dense solver).
      samples: posterior samples behind the std map (0: exact std or no std map).
      std_relative_error: the std map's Monte Carlo relative error (0: exact; None: no std map).
      cg_converged_samples: False when a sample's CG stopped at the iteration cap, so that the
        std map is less exact than its Monte Carlo error says (the mean's CG raises instead).
      notes: what the solver had to do (fit method, noise floor, circulant embedding).
    """

    mean: np.ndarray
    std: Optional[np.ndarray]
    kernel_name: str
    hyperparameters: Dict[str, object]
    log_marginal_likelihood: Optional[float]
    seconds: float
    fit: Optional[FitSummary] = None
    solver: str = "dense"
    seconds_fit: float = 0.0
    seconds_mean: float = 0.0
    seconds_std: float = 0.0
    cg_iterations: Optional[int] = None
    cg_residual: Optional[float] = None
    samples: int = 0
    std_relative_error: Optional[float] = 0.0
    cg_converged_samples: bool = True
    notes: List[str] = dataclasses.field(default_factory=list)

    def report(self) -> Dict[str, object]:
        """Everything but the images, for a JSON report."""
        return {"kernel": self.kernel_name, "hyperparameters": self.hyperparameters,
                "log_marginal_likelihood": self.log_marginal_likelihood,
                "seconds": self.seconds, "solver": self.solver, "seconds_fit": self.seconds_fit,
                "seconds_mean": self.seconds_mean, "seconds_std": self.seconds_std,
                "cg_iterations": self.cg_iterations, "cg_residual": self.cg_residual,
                "samples": self.samples, "std_relative_error": self.std_relative_error,
                "cg_converged_samples": self.cg_converged_samples, "notes": list(self.notes),
                "fit": None if self.fit is None else dataclasses.asdict(self.fit)}


def gp_posterior(prior: GPPrior, observed_points, observed_values, points):
    """Posterior mean ``[C, P]`` and standard deviation ``[P]`` of the clean image at ``points``.

    Args:
      prior: kernel, mean and noise variance.
      observed_points: ``[N, 2]`` pixel coordinates of the observations.
      observed_values: ``[C, N]`` observed values.
      points: ``[P, 2]`` pixel coordinates to predict.

    Returns:
      ``(mean, std)`` as float64 NumPy arrays (the formulas in the module docstring).
    """
    values = tf.convert_to_tensor(observed_values, DTYPE)
    prior_mean = prior.mean(values.shape[0])[:, tf.newaxis]
    model = tfd.GaussianProcessRegressionModel.precompute_regression_model(
        kernel=prior.kernel(),
        observation_index_points=tf.convert_to_tensor(observed_points, DTYPE),
        observations=values - prior_mean,
        index_points=tf.convert_to_tensor(points, DTYPE),
        observation_noise_variance=prior.noise_variance,
        predictive_noise_variance=tf.zeros([], DTYPE),
        cholesky_fn=cholesky_with_jitter)
    return (model.mean() + prior_mean).numpy(), model.stddev().numpy()


def _starting_values(data: PixelData, kernel, mean: str, fit: bool) -> Dict[str, object]:
    """Hyper-parameters from the data: the observed mean and spread, a length scale of 2 pixels.

    The amplitude starts where ``a^2 k(0) = Var(y)`` (named kernels, and other kernels when
    fitted; an unfitted given kernel is used as it is); a fitted noise variance starts at
    ``0.1 Var(y)``; a known noise level ``sigma`` fixes it to ``sigma^2``.
    """
    observed = data.observed_values
    channel_means = observed.mean(axis=1)
    variance = max(float(np.var(observed - channel_means[:, None])), 1e-6)
    values: Dict[str, object] = {}
    if mean == "constant":
        values["mean"] = channel_means
    if isinstance(kernel, str):
        values["length_scale"] = INITIAL_LENGTH_SCALE
        values["amplitude"] = np.sqrt(variance)
    elif fit:
        origin = tf.zeros([1, 2], DTYPE)
        values["amplitude"] = np.sqrt(variance / float(kernel.apply(origin, origin)[0]))
    if data.sigma is not None:
        values["noise_variance"] = data.sigma ** 2
    elif fit:
        values["noise_variance"] = INITIAL_NOISE_FRACTION * variance
    return values


def choose_solver(solver: str, height: int, width: int) -> str:
    """``"dense"`` or ``"grid"`` for ``solver`` in :data:`SOLVERS` and an ``H x W`` image."""
    if solver not in SOLVERS:
        raise TfdipError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if solver == "auto":
        return "dense" if height * width <= MAX_DENSE_PIXELS else "grid"
    return solver


def gp_restore(observation, mask=None, sigma: Optional[float] = None, kernel="rbf", *,
               fit: bool = True, mean: str = "constant",
               hyperparameters: Optional[Mapping[str, object]] = None,
               num_fit_steps: int = 100, solver: str = "auto", samples: Optional[int] = None,
               tolerance: float = DEFAULT_TOLERANCE, max_iterations: int = DEFAULT_MAX_ITERATIONS,
               seed: int = 0, periodic: bool = False,
               progress: Optional[Progress] = None) -> GPResult:
    """Restore an image with the posterior of a Gaussian process over its pixels.

    Inpainting: give ``mask`` (nonzero = known pixel; ``(H, W)``, or ``(H, W, C)`` equal in every
    channel). Denoising: give ``sigma`` and no mask. Both: a mask and ``sigma``.

    Noise: ``sigma > 0`` fixes the noise variance to ``sigma^2`` and the restored image is the
    posterior mean everywhere. Without ``sigma`` (or ``sigma = 0``) the known pixels of a mask are
    exact: they are kept in the restored image, and the GP's noise variance (a model misfit term,
    as in the paper's RBF baseline) is fitted when ``fit`` or 0 (plus jitter) otherwise. Without
    mask and sigma the noise variance is fitted (denoising with an unknown noise level).

    Solvers: ``"dense"`` (exact, at most 64x64 pixels: :func:`gp_posterior` and
    :func:`tfdip.gp.fit.fit_prior`), ``"grid"`` (any size, stationary kernels only: FFT operators,
    CG and pathwise samples, :mod:`tfdip.gp.grid_posterior` and :mod:`tfdip.gp.grid_fit`; a fitted
    noise variance is floored at :data:`~tfdip.gp.grid_fit.NOISE_FLOOR`), ``"auto"`` (dense when
    it fits the dense limit).

    Args:
      observation: ``(H, W)`` or ``(H, W, C)`` image in [0, 1]; channels are independent GPs
        that share the kernel and noise variance, each with its own constant mean.
      mask: known pixels, or None when every pixel is observed.
      sigma: noise std of the observed values (images in [0, 1]), or None.
      kernel: a name (``"rbf"``, ``"matern12"``, ``"matern32"``, ``"matern52"``, ``"dip"``), an
        architecture description (its analytic DIP kernel) or a float64 ``tfp.math.psd_kernels``
        kernel over ``(row, column)`` pixel coordinates (see :func:`tfdip.gp.prior.resolve_kernel`).
      fit: fit the hyper-parameters by maximising the log marginal likelihood (amplitude, length
        scale, mean, the noise variance unless ``sigma`` fixes it, and a given kernel's own
        trainable variables); otherwise use the starting values.
      mean: ``"constant"`` (one mean per channel, fitted, starting at the observed mean) or
        ``"zero"``.
      hyperparameters: starting values (``fit=True``) or fixed values (``fit=False``) that
        override the data-driven ones: ``amplitude``, ``length_scale``, ``noise_variance``,
        ``mean`` (see :mod:`tfdip.gp.prior`).
      num_fit_steps: L-BFGS iterations (Adam steps for a masked grid fit) at most.
      solver: ``"auto"``, ``"dense"`` or ``"grid"`` (above).
      samples: grid solver: posterior samples for the std map (default
        :data:`~tfdip.gp.sampling.DEFAULT_SAMPLES`; 0: no std map). The dense std is exact.
      tolerance, max_iterations: grid solver: CG's relative residual tolerance (of the
          posterior solves; the fit's own solves stop at
          :data:`tfdip.gp.grid_fit.FIT_TOLERANCE`) and iteration cap (of every solve).
      seed: grid solver: seed of the posterior samples.
      periodic: grid solver: model the image on a torus (closed form without a mask).
      progress: grid solver: a :data:`~tfdip.gp.grid_posterior.Progress` callback.

    Returns:
      A :class:`GPResult`.

    Raises:
      TfdipError: for bad input (see :func:`tfdip.gp.data.pixel_data`), an unknown kernel, mean
        or solver, options that do not apply to the solver, hyper-parameters that conflict with
        ``sigma`` or ``mean``, a non-stationary kernel on the grid, more memory than available,
        a CG that does not converge, or nothing to restore.
    """
    start = time.perf_counter()
    if np.ndim(observation) not in (2, 3):
        raise TfdipError(f"the observation must be an (H, W) or (H, W, C) image, got shape "
                         f"{np.shape(observation)}")
    solver = choose_solver(solver, *np.shape(observation)[:2])
    grid_only = {"samples": samples is not None, "periodic": periodic,
                 "progress": progress is not None}
    if solver == "dense" and any(grid_only.values()):
        given = [name for name, set_ in grid_only.items() if set_]
        raise TfdipError(f"{', '.join(given)} only apply to the grid solver (the dense solver "
                         f"gives the exact std); use solver='grid'")
    data = pixel_data(observation, mask, sigma,
                      max_pixels=MAX_DENSE_PIXELS if solver == "dense" else None)
    kernel = resolve_kernel(kernel)
    if mean not in MEANS:
        raise TfdipError(f"mean must be one of {MEANS}, got {mean!r}")
    given = dict(hyperparameters or {})
    if "noise_variance" in given and data.sigma is not None:
        raise TfdipError("give either sigma or hyperparameters['noise_variance'], not both")
    if "mean" in given and mean == "zero":
        raise TfdipError("hyperparameters['mean'] conflicts with mean='zero'; drop one of them")
    if "mean" in given and np.size(given["mean"]) not in (1, data.shape[2]):
        raise TfdipError(f"hyperparameters['mean'] has {np.size(given['mean'])} values for "
                         f"{data.shape[2]} channels; give one value or one per channel")
    if int(num_fit_steps) < 1:
        raise TfdipError(f"num_fit_steps must be at least 1, got {num_fit_steps}")
    if solver == "grid":
        samples = DEFAULT_SAMPLES if samples is None else int(samples)
        check_grid_memory(*data.shape, samples)
    values = {**_starting_values(data, kernel, mean, fit), **given}
    trainable = [name for name in values if fit and not (name == "noise_variance"
                                                         and data.sigma is not None)]
    if (data.known.all() and "noise_variance" not in trainable
            and not values.get("noise_variance")):
        raise TfdipError("nothing to restore: every pixel is known and noise-free; give a mask, "
                         "sigma, or fit=True to estimate the noise level")
    noise_floor = NOISE_FLOOR if solver == "grid" and "noise_variance" in trainable else 0.0
    prior = GPPrior(kernel, values, trainable, noise_floor=noise_floor)

    summary, notes = None, []
    if fit and solver == "dense":
        summary = fit_prior(prior, data.observed_points, data.observed_values,
                            max_iterations=int(num_fit_steps))
    elif fit:
        summary, notes = fit_on_grid(prior, data, max_steps=int(num_fit_steps),
                                     progress=progress, max_iterations=max_iterations)
    seconds_fit = time.perf_counter() - start
    if summary is not None:
        log_marginal_likelihood = summary.log_marginal_likelihood
    elif solver == "dense":
        log_marginal_likelihood = float(
            prior.log_marginal_likelihood(data.observed_points, data.observed_values))
    elif data.known.all():
        log_marginal_likelihood = float(torus_log_likelihood(prior, data))
    else:
        log_marginal_likelihood = None
    grid = None
    if solver == "dense":
        posterior_mean, posterior_std = gp_posterior(prior, data.observed_points,
                                                     data.observed_values, data.points)
    else:
        grid = grid_posterior(prior, data, samples=samples, tolerance=tolerance,
                              max_iterations=max_iterations, seed=seed, periodic=periodic,
                              progress=progress)
        posterior_mean, posterior_std = grid.mean, grid.std
        notes = notes + grid.notes
    restored = np.clip(data.as_image(posterior_mean), 0.0, 1.0)
    if data.sigma in (None, 0.0) and mask is not None:
        restored = np.where(data.known[:, :, np.newaxis], data.image, restored)
    std = None if posterior_std is None else posterior_std.reshape(data.known.shape).astype(np.float32)
    seconds = time.perf_counter() - start
    common = dict(mean=data.like_observation(restored).astype(np.float32), std=std,
                  kernel_name=prior.kernel_name, hyperparameters=prior.values(),
                  log_marginal_likelihood=log_marginal_likelihood, seconds=seconds, fit=summary,
                  solver=solver, seconds_fit=seconds_fit, notes=notes)
    if grid is None:
        return GPResult(**common, seconds_mean=seconds - seconds_fit)
    return GPResult(**common, seconds_mean=grid.seconds_mean, seconds_std=grid.seconds_std,
                    cg_iterations=grid.cg_iterations, cg_residual=grid.cg_residual,
                    samples=grid.samples, std_relative_error=grid.std_relative_error,
                    cg_converged_samples=grid.cg_converged_samples)
