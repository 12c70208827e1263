"""Convergence diagnostics of posterior output samples: effective sample size and R-hat.

Each output pixel (each entry of a sample) is treated as one scalar quantity; the summary takes
the worst case over pixels (min ESS, max R-hat), the median ESS, and the Monte Carlo error of the
posterior mean against the posterior std (:func:`monte_carlo_error`), which says what the ESS
means for the image.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError

RHAT_THRESHOLD = 1.1
# With ESS = 100 the Monte-Carlo standard error of a posterior mean is a tenth of the posterior
# std (Vehtari et al. 2021 ask for at least 100 effective draws per quantity).
DEFAULT_MIN_ESS = 100.0
# The verdict warns when the Monte Carlo error of the mean is this large against the posterior
# std (median over pixels): it then adds about 10 log10(1 + 0.3^2) = 0.37 dB of error.
LARGE_MC_ERROR = 0.3
MIN_SAMPLES = 4


def chain_diagnostics(samples, *, has_chain_axis: bool = True, max_pixels: int | None = 4096,
                      seed: int = 0, min_ess: float = DEFAULT_MIN_ESS, counts=None,
                      pixel_index=None, image_shape=None) -> dict:
    """ESS, R-hat and the Monte Carlo error of the posterior mean of sampled outputs.

    Args:
        samples: array of shape ``(num_samples, num_chains, ...)``, or ``(num_samples, ...)``
            for one chain with ``has_chain_axis=False``; the trailing axes are pixels (any shape).
            Or a list of one ``(n_k, P)`` array per chain, of any lengths (a run's traces): R-hat
            then uses each chain's first ``min n_k`` samples, ESS and the MC error all of them.
        has_chain_axis: whether axis 1 indexes chains (arrays only).
        max_pixels: if there are more pixels, a random subset of this many (drawn with ``seed``)
            is analysed; ``None`` analyses all.
        seed: seed of the pixel subset.
        min_ess: the ESS reported as ``ess_ok`` (over all chains together).
        counts: samples in each chain's mean (their weights in the pooled mean; default the
            traces' lengths, see :func:`monte_carlo_error`).
        pixel_index, image_shape: the flat index in an image of ``image_shape`` of every traced
            pixel (column), to name the least settled pixels; for an array of whole images they
            are inferred from its trailing axes.

    Returns:
        dict with ``ess_min``, ``ess_median`` (``tfp.mcmc.effective_sample_size``, Geyer's
        initial positive sequence, pooled across chains when there are several), ``rhat_max``
        (``tfp.mcmc.potential_scale_reduction``; ``None`` for one chain), ``num_samples`` (per
        chain, the shortest), ``num_chains``, ``num_pixels`` (analysed), the Monte Carlo error
        of the pooled mean (:func:`monte_carlo_error`): ``mc_error_ratio`` (median over pixels
        of MCSE / posterior std), ``mc_error_ratio_max``, ``mc_error_psnr_db``,
        ``mc_error_cost_db`` and ``least_settled`` (up to 3 pixels ``[row, col, channel]`` with
        the largest ratio, with their ratio); ``mixed`` (R-hat below 1.1 when defined and a
        ratio at most ``LARGE_MC_ERROR``) and a one-line ``verdict`` saying what the numbers
        mean for the image (a warning only when the error is large or the chains disagree).
        Pixels that never change (e.g. a saturated sigmoid) are left out; a pixel that is
        constant within every chain but differs between chains counts as ESS 0 and R-hat
        infinity. When nothing can be measured (fewer than 4 samples per chain, or every pixel
        constant) the numbers are ``None``, ``mixed`` is False and the verdict says why.
    """
    chains, pixel_index, image_shape = _per_chain(samples, has_chain_axis, pixel_index,
                                                  image_shape)
    num_chains = len(chains)
    num_samples = min(chain.shape[0] for chain in chains)
    summary = {"num_samples": int(num_samples), "num_chains": int(num_chains)}
    if num_samples < MIN_SAMPLES:
        return _unmeasurable(summary, f"too few samples to diagnose: {num_samples} per chain < "
                                      f"{MIN_SAMPLES}; run longer or keep more samples")
    num_pixels = chains[0].shape[1]
    selected = np.arange(num_pixels)
    if max_pixels is not None and num_pixels > max_pixels:
        selected = np.sort(np.random.default_rng(seed).choice(num_pixels, max_pixels,
                                                              replace=False))
    first = np.stack([chain[:num_samples, selected] for chain in chains], axis=1)
    varying = np.ptp(first, axis=(0, 1)) > 0
    if not varying.any():
        return _unmeasurable(summary, "every analysed pixel is constant across samples: the "
                                      "chain does not move (zero step size or saturated output)")
    selected = selected[varying]
    first = first[..., varying]
    traces = [chain[:, selected] for chain in chains]
    if num_chains > 1 and len({len(t) for t in traces}) == 1:
        ess = ess_per_pixel(first, has_chain_axis=True)
    else:
        ess = sum(ess_per_pixel(trace) for trace in traces)
    rhat_max = None
    if num_chains > 1:
        rhat = tfp.mcmc.potential_scale_reduction(tf.constant(first),
                                                  independent_chain_ndims=1).numpy()
        rhat_max = float(np.max(np.where(np.isnan(rhat), np.inf, rhat)))
    error = monte_carlo_error(traces, counts)
    ratio = error.ratio
    worst = error.least_settled(3)
    least_settled = [{"pixel": _pixel_name(pixel_index[selected[i]], image_shape),
                      "ratio": _finite(ratio[i])} for i in worst]
    ess_min, ess_median = float(np.min(ess)), float(np.median(ess))
    rhat_ok = rhat_max is None or rhat_max < RHAT_THRESHOLD
    return {
        "ess_min": ess_min,
        "ess_median": ess_median,
        "ess_ok": bool(ess_min >= min_ess),
        "rhat_max": rhat_max,
        **summary,
        "num_pixels": int(varying.sum()),
        "mc_error_ratio": _finite(error.median_ratio),
        "mc_error_ratio_max": _finite(np.max(ratio)),
        "mc_error_psnr_db": _finite(error.psnr_db),
        "mc_error_cost_db": _finite(error.cost_db),
        "least_settled": least_settled,
        "mixed": bool(rhat_ok and error.median_ratio <= LARGE_MC_ERROR),
        "verdict": _verdict(rhat_max, error, least_settled, int(varying.sum()), num_chains),
    }


def _per_chain(samples, has_chain_axis, pixel_index, image_shape):
    """``(list of (n_k, P) float arrays, flat pixel index (P,), image shape)`` of ``samples``."""
    if isinstance(samples, (list, tuple)):
        chains = [np.asarray(chain) for chain in samples]
        if not chains or any(c.ndim != 2 or c.shape[1] != chains[0].shape[1] for c in chains):
            raise TfdipError(f"per-chain traces must be (n_k, P) arrays with one P, got shapes "
                             f"{[c.shape for c in chains]}")
    else:
        samples = np.asarray(samples)
        min_ndim = 2 if has_chain_axis else 1
        if samples.ndim < min_ndim:
            raise TfdipError(f"samples must have shape (num_samples, "
                             f"{'num_chains, ' * has_chain_axis}...), got {samples.shape}")
        if not has_chain_axis:
            samples = samples[:, None]
        if image_shape is None:
            image_shape = samples.shape[2:]
        flat = samples.reshape(samples.shape[0], samples.shape[1], -1)
        chains = [flat[:, k] for k in range(flat.shape[1])]
    chains = [c if np.issubdtype(c.dtype, np.floating) else c.astype(np.float64) for c in chains]
    num_pixels = chains[0].shape[1]
    pixel_index = np.arange(num_pixels) if pixel_index is None else np.asarray(pixel_index)
    return chains, pixel_index, tuple(image_shape) if image_shape is not None else (num_pixels,)


def _pixel_name(flat_index, image_shape) -> list:
    """``[row, col, channel]`` (or the index tuple of any other shape) of a flat index."""
    return [int(i) for i in np.unravel_index(int(flat_index), image_shape)]


def _finite(value):
    """A float for JSON, or None when it is not finite."""
    value = float(value)
    return value if np.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class MonteCarloError:
    """Monte Carlo error of a (pooled) posterior mean at the traced pixels.

    Attributes:
        mcse: (P,) Monte Carlo standard error of the pooled mean per traced pixel.
        std: (P,) posterior std per traced pixel (population std of the pooled traces).
        ess: (P,) effective sample size of the pooled mean, ``(std / mcse)^2``.

    In dB: with mean squared MC error ``e^2 = mean_i MCSE_i^2`` and posterior variance
    ``s^2 = mean_i sd_i^2``, :attr:`psnr_db` ``= 10 log10(1 / e^2)`` is the PSNR of the Monte
    Carlo mean against the exact posterior mean, and :attr:`cost_db` ``= 10 log10(1 + e^2 / s^2)``
    the PSNR it costs against the truth when the posterior std is the scale of the error (a
    calibrated posterior): 0.04 dB at a ratio of 0.1.
    """

    mcse: np.ndarray
    std: np.ndarray
    ess: np.ndarray

    @property
    def ratio(self) -> np.ndarray:
        """(P,) ``MCSE / posterior std`` per traced pixel (inf where the std is 0 but not the
        MCSE, 0 where both are)."""
        positive = self.std > 0
        return np.where(positive, self.mcse / np.where(positive, self.std, 1.0),
                        np.where(self.mcse > 0, np.inf, 0.0))

    @property
    def median_ratio(self) -> float:
        return float(np.median(self.ratio))

    @property
    def psnr_db(self) -> float:
        """PSNR of the Monte Carlo mean against the exact posterior mean, ``10 log10(1 / e^2)``."""
        error = float(np.mean(self.mcse**2))
        with np.errstate(divide="ignore"):
            return float(10 * np.log10(1.0 / error)) if error > 0 else float("inf")

    @property
    def cost_db(self) -> float:
        """PSNR lost to the Monte Carlo error when the posterior std is the error's scale,
        ``10 log10(1 + e^2 / s^2)``."""
        variance = float(np.mean(self.std**2))
        if variance == 0:
            return 0.0
        return float(10 * np.log10(1.0 + float(np.mean(self.mcse**2)) / variance))

    def least_settled(self, count: int = 3) -> np.ndarray:
        """Indices (into the traced pixels) of the ``count`` largest ratios, largest first."""
        return np.argsort(-self.ratio, kind="stable")[:count]


def monte_carlo_error(traces, counts=None) -> MonteCarloError:
    """The Monte Carlo error of the pooled posterior mean from the chains' traces.

    For pixel ``i`` of chain ``k`` (``n_k`` samples), ``MCSE_ki = sd_ki / sqrt(ESS_ki)`` with the
    ESS of :func:`ess_per_pixel`; the pooled mean of independent chains, weighted by their sample
    counts ``n_k / N``, has ``MCSE_i^2 = sum_k (n_k / N)^2 MCSE_ki^2``. Chains of equal length
    and count use the cross-chain ESS instead, ``MCSE_i = sd_i / sqrt(ESS_i)`` with the pooled
    std: it also counts the spread between chains that have not mixed, which each chain's own
    MCSE cannot see.

    Args:
        traces: one ``(n_k, P)`` array per chain (the same P traced pixels, any lengths
            ``n_k >= 4``), oldest sample first.
        counts: the number of samples each chain's mean holds (its weight ``n_k / N`` in the
            pooled mean); default the traces' lengths. A trace may be a thinned subset of its
            chain's samples: its ESS then underestimates theirs, so the MCSE errs on the safe side.
    """
    traces = [np.asarray(trace, np.float64) for trace in traces]
    if not traces or any(t.ndim != 2 or t.shape[1] != traces[0].shape[1] or t.shape[0] < 4
                         for t in traces):
        raise TfdipError(f"monte_carlo_error needs one (n, P) trace per chain with n >= 4 and one "
                         f"P, got shapes {[t.shape for t in traces]}")
    counts = np.asarray([t.shape[0] for t in traces] if counts is None else counts, np.float64)
    std = np.concatenate(traces, axis=0).std(axis=0)
    if len(traces) > 1 and len({t.shape[0] for t in traces}) == 1 and np.all(counts == counts[0]):
        ess = ess_per_pixel(np.stack(traces, axis=1), has_chain_axis=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            mcse = np.where(std > 0, std / np.sqrt(ess), 0.0)
        return MonteCarloError(mcse=mcse, std=std, ess=np.where(std > 0, ess, np.inf))
    weights = counts / counts.sum()
    variance = np.zeros(traces[0].shape[1])
    for weight, trace in zip(weights, traces):
        ess = ess_per_pixel(trace)
        sd = trace.std(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            chain_variance = np.where(sd > 0, sd**2 / ess, 0.0)
        variance += weight**2 * np.where(np.isfinite(chain_variance), chain_variance, np.inf)
    mcse = np.sqrt(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        ess = np.where(mcse > 0, (std / mcse)**2, np.inf)
    return MonteCarloError(mcse=mcse, std=std, ess=ess)


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
    return {"ess_min": None, "ess_median": None, "ess_ok": False, "rhat_max": None, **summary,
            "num_pixels": 0, "mc_error_ratio": None, "mc_error_ratio_max": None,
            "mc_error_psnr_db": None, "mc_error_cost_db": None, "least_settled": [],
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


def _verdict(rhat_max, error, least_settled, num_pixels, num_chains) -> str:
    """What the numbers mean for the image, one line; starts with "warning:" only when the
    chains disagree (R-hat) or the Monte Carlo error of the mean is large."""
    ratio = error.median_ratio
    where = ", ".join(f"({', '.join(map(str, p['pixel']))}) at "
                      f"{'inf' if p['ratio'] is None else format(p['ratio'], '.2f')}"
                      for p in least_settled)
    error_text = (f"Monte Carlo error of the mean {ratio:.2f} of the posterior std (median over "
                  f"{num_pixels} traced pixels; costs about {error.cost_db:.2f} dB)")
    problems = []
    if rhat_max is not None and not rhat_max < RHAT_THRESHOLD:
        problems.append(f"the {num_chains} chains disagree (R-hat {rhat_max:.2f} > "
                        f"{RHAT_THRESHOLD}): they have not reached the same posterior")
    if not ratio <= LARGE_MC_ERROR:
        problems.append(f"the posterior mean is still noisy: {error_text}; least settled pixels "
                        f"(row, col, channel) {where}")
    if problems:
        return f"warning: {'; '.join(problems)}; run longer or add chains"
    rhat = "" if rhat_max is None else f", {num_chains} chains agree (R-hat {rhat_max:.2f})"
    settled = "" if ratio <= 0.1 else f"; least settled (row, col, channel) {where}"
    return f"{error_text}{rhat}{settled}"
