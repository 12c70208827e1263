"""What a restoration leaves on disk: the restored image, its std maps and the JSON report.

Every file is written atomically (:mod:`tfdip.io`), so an interrupted run leaves no half-written
output; the report is meant to be written last, so its presence marks a finished restoration.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import numpy as np


#: The sampler diagnostics a report carries (:func:`tfdip.inference.chain_diagnostics`).
DIAGNOSTICS = ("ess_min", "ess_median", "rhat_max", "mc_error_ratio", "mc_error_cost_db",
               "mc_error_psnr_db", "least_settled", "mixed", "verdict")


def package_version() -> str:
    """The installed tfdip version ("unknown" when running from a source tree)."""
    try:
        return version("tfdip")
    except PackageNotFoundError:
        return "unknown"


def write_restoration(result, observed, image_path, *, std_png=None, std_npy=None) -> None:
    """Write ``result.image`` to ``image_path`` with ``observed``'s alpha channel (resized when
    super-resolving) and bit depth, and its posterior std as a colour-mapped ``std_png`` and a
    float (H, W, C) ``std_npy`` (where given and the method has a std)."""
    from tfdip import io

    pixels = result.image
    alpha = None if observed.alpha is None else _resize_alpha(observed.alpha, pixels.shape[:2])
    io.write_image(image_path, pixels, alpha=alpha, bit_depth=observed.bit_depth)
    if result.std is None:
        return
    if std_npy:
        io.write_image(std_npy, result.std)
    if std_png:
        from tfdip.viz import colormap

        io.write_image(std_png, colormap(result.std))


def _resize_alpha(alpha, shape_hw):
    """The alpha channel (H, W, 1), passed through; resized (bicubic) when super-resolving."""
    if alpha.shape[:2] == tuple(shape_hw):
        return alpha
    from PIL import Image

    resized = Image.fromarray(alpha[..., 0].astype(np.float32), mode="F").resize(
        (shape_hw[1], shape_hw[0]), Image.BICUBIC)
    return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)[..., None]


def restoration_report(result, *, task: str, chains: int, observation, reference=None) -> dict:
    """The JSON-ready report of a :class:`tfdip.Restoration` of ``observation`` (h, w, C) for
    ``task`` (a physics name): method, timings, samples, sampler diagnostics (ESS, R-hat, the
    Monte Carlo error of the mean against the posterior std and in dB, the least settled pixels,
    verdict), the automatic budget's decisions (``budget``: per chain the step burn-in ended, the
    step sampling stopped and why), ES-WMV's stop (``early_stop``) and, with the clean ``reference`` (H, W, C), PSNR / SSIM of the result, its last iterate, EMA
    and the observation, and the calibration of the std map (2-std coverage, UCE, ...)."""
    from tfdip import metrics

    report = {
        "task": task, "method": result.method, "iterations": result.iterations,
        "seconds": round(result.seconds, 3),
        "seconds_per_iteration": round(result.seconds_per_iteration, 5),
        "image_shape": list(result.image.shape), "seed": result.seed, "chains": chains,
        "samples": result.samples, "rollbacks": result.rollbacks,
        "tfdip_version": package_version(),
    }
    if result.diagnostics:
        report.update({k: result.diagnostics[k] for k in DIAGNOSTICS if k in result.diagnostics})
    for key in ("budget", "early_stop"):
        if getattr(result, key, None):
            report[key] = getattr(result, key)
    if reference is not None:
        report["psnr"] = metrics.psnr(result.image, reference)
        report["ssim"] = metrics.ssim(result.image, reference)
        report["psnr_last"] = metrics.psnr(result.last, reference)
        if result.ema is not None:
            report["psnr_ema"] = metrics.psnr(result.ema, reference)
        if observation.shape == reference.shape:
            report["psnr_observed"] = metrics.psnr(observation, reference)
        if result.std is not None:
            from tfdip.inference import uncertainty_report

            report["calibration"] = uncertainty_report(result.image, result.std, reference)
    return report


def stopping_notes(report: dict) -> list[str]:
    """How a run's length was decided, from its :func:`restoration_report`: per chain of an
    automatic budget the step burn-in ended, the step it stopped and why (``"rule met"`` or
    ``"cap reached"``), and ES-WMV's kept step and why it ended; empty for a fixed budget."""
    notes = []
    chains = (report.get("budget") or {}).get("chains", [])
    for chain in chains:
        where = "" if len(chains) == 1 else f"chain {chain['chain']}: "
        notes.append(f"{where}burn-in ended at step {chain['burn_in_end']}, stopped at step "
                     f"{chain['stopped_at']} ({chain['reason']})")
    stop = report.get("early_stop")
    if stop:
        notes.append(f"ES-WMV kept step {stop['best_step']} ({stop['reason']})")
    return notes
