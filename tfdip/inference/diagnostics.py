"""Convergence diagnostics of posterior output samples: effective sample size and R-hat.

Each output pixel (each entry of a sample) is treated as one scalar quantity; the summary takes
the worst case over pixels (min ESS, max R-hat) and the median ESS.
"""
from __future__ import annotations

import contextlib
import logging

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError

RHAT_THRESHOLD = 1.1
# With ESS = 100 the Monte-Carlo standard error of a posterior mean is a tenth of the posterior
# std (Vehtari et al. 2021 ask for at least 100 effective draws per quantity).
DEFAULT_MIN_ESS = 100.0
MIN_SAMPLES = 4


def chain_diagnostics(samples, *, has_chain_axis: bool = True, max_pixels: int | None = 4096,
                      seed: int = 0, min_ess: float = DEFAULT_MIN_ESS) -> dict:
    """ESS and R-hat of sampled outputs.

    Args:
        samples: array of shape ``(num_samples, num_chains, ...)``, or ``(num_samples, ...)``
            for one chain with ``has_chain_axis=False``; the trailing axes are pixels (any shape).
        has_chain_axis: whether axis 1 indexes chains.
        max_pixels: if there are more pixels, a random subset of this many (drawn with ``seed``)
            is analysed; ``None`` analyses all.
        seed: seed of the pixel subset.
        min_ess: smallest acceptable effective sample size (over all chains together).

    Returns:
        dict with ``ess_min``, ``ess_median`` (``tfp.mcmc.effective_sample_size``, Geyer's
        initial positive sequence, pooled across chains when there are several), ``rhat_max``
        (``tfp.mcmc.potential_scale_reduction``; ``None`` for one chain), ``num_samples``,
        ``num_chains``, ``num_pixels`` (analysed), ``mixed`` (``rhat_max < 1.1`` (when defined) and
        ``ess_min >= min_ess``) and a one-line ``verdict``. Pixels that never change (e.g. a
        saturated sigmoid) are left out; a pixel that is constant within every chain but differs
        between chains counts as ESS 0 and R-hat infinity. When nothing can be measured (fewer
        than 4 samples per chain, or every pixel constant) the numbers are ``None``, ``mixed`` is
        False and the verdict says why.
    """
    samples = np.asarray(samples)
    if not np.issubdtype(samples.dtype, np.floating):
        samples = samples.astype(np.float64)
    min_ndim = 2 if has_chain_axis else 1
    if samples.ndim < min_ndim:
        raise TfdipError(f"samples must have shape (num_samples, {'num_chains, ' * has_chain_axis}"
                         f"...), got {samples.shape}")
    if not has_chain_axis:
        samples = samples[:, None]
    num_samples, num_chains = samples.shape[:2]
    summary = {"num_samples": int(num_samples), "num_chains": int(num_chains)}
    if num_samples < MIN_SAMPLES:
        return _unmeasurable(summary, f"too few samples to diagnose: {num_samples} per chain < "
                                      f"{MIN_SAMPLES}; run longer or keep more samples")
    pixels = samples.reshape(num_samples, num_chains, -1)
    if max_pixels is not None and pixels.shape[-1] > max_pixels:
        subset = np.random.default_rng(seed).choice(pixels.shape[-1], max_pixels, replace=False)
        pixels = pixels[..., np.sort(subset)]
    varying = np.ptp(pixels, axis=(0, 1)) > 0
    if not varying.any():
        return _unmeasurable(summary, "every analysed pixel is constant across samples: the "
                                      "chain does not move (zero step size or saturated output)")
    pixels = pixels[..., varying]

    ess = ess_per_pixel(pixels if num_chains > 1 else pixels[:, 0], has_chain_axis=num_chains > 1)
    rhat_max = None
    if num_chains > 1:
        rhat = tfp.mcmc.potential_scale_reduction(tf.constant(pixels),
                                                  independent_chain_ndims=1).numpy()
        rhat_max = float(np.max(np.where(np.isnan(rhat), np.inf, rhat)))
    ess_min, ess_median = float(np.min(ess)), float(np.median(ess))
    rhat_ok = rhat_max is None or rhat_max < RHAT_THRESHOLD
    ess_ok = ess_min >= min_ess
    return {
        "ess_min": ess_min,
        "ess_median": ess_median,
        "rhat_max": rhat_max,
        **summary,
        "num_pixels": int(varying.sum()),
        "mixed": bool(rhat_ok and ess_ok),
        "verdict": _verdict(rhat_max, ess_min, min_ess, num_samples * num_chains, num_chains),
    }


def ess_per_pixel(samples, *, has_chain_axis: bool = False) -> np.ndarray:
    """Effective sample size of every pixel: ``tfp.mcmc.effective_sample_size`` with Geyer's
    initial positive sequence, pooled across chains (axis 1) with ``has_chain_axis``.

    ``samples`` is ``(n, P)`` (one chain) or ``(n, chains, P)``; the result is ``(P,)``. Pixels
    whose estimate is not finite (constant within a chain: no effective draws) get 0, and the
    estimate is clipped at 0 (Geyer's truncation can dip below it on short runs).
    """
    samples = tf.constant(np.asarray(samples))
    with _quiet_tf_warnings():  # TFP's FFT autocorrelation warns about its own complex cast
        ess = tfp.mcmc.effective_sample_size(
            samples, filter_beyond_positive_pairs=True,
            cross_chain_dims=1 if has_chain_axis else None).numpy()
    return np.clip(np.where(np.isfinite(ess), ess, 0.0), 0.0, None)


def _unmeasurable(summary, verdict) -> dict:
    return {"ess_min": None, "ess_median": None, "rhat_max": None, **summary, "num_pixels": 0,
            "mixed": False, "verdict": verdict}


@contextlib.contextmanager
def _quiet_tf_warnings():
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _verdict(rhat_max, ess_min, min_ess, total, num_chains) -> str:
    rhat_bad = rhat_max is not None and not rhat_max < RHAT_THRESHOLD
    problems = [f"R-hat {rhat_max:.2f} > {RHAT_THRESHOLD}"] if rhat_bad else []
    if ess_min < min_ess:
        problems.append(f"min ESS {ess_min:.0f} < {min_ess:.0f} of {total} samples")
    if problems:
        advice = "run longer or add chains" if rhat_bad else "run longer or keep more samples"
        return f"not yet mixed: {', '.join(problems)}; {advice}"
    rhat = ("R-hat needs 2+ chains" if rhat_max is None
            else f"R-hat {rhat_max:.2f} < {RHAT_THRESHOLD} over {num_chains} chains")
    return f"mixed: min ESS {ess_min:.0f} >= {min_ess:.0f} of {total} samples, {rhat}"
