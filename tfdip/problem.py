"""One restoration problem read from files: the observation, its degradation and a reference.

The single-image commands and ``tfdip batch`` describe a problem the same way: a task
(``denoise``, ``inpaint`` or ``superres``), the noise std on the 0..255 scale, an inpainting mask
file, a super-resolution factor and optionally the clean image, to measure the result against.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from tfdip import io, physics
from tfdip.errors import TfdipError, TfdipWarning

#: The command-line task names and the :mod:`tfdip.physics` task each one is.
TASKS = {"denoise": "denoising", "inpaint": "inpainting", "superres": "superresolution"}


@dataclasses.dataclass
class Problem:
    """An observation (``observed.pixels`` (h, w, C) in [0, 1], with its alpha channel and bit
    depth), the physics that degraded it and the clean reference (H, W, C) or None."""

    observed: io.Image
    physics: physics.Physics
    reference: np.ndarray | None


def sigma01(sigma_255) -> float:
    """A noise std given on the 0..255 scale, on the [0, 1] scale of the images. A std in (0, 1)
    is most likely given on the [0, 1] scale by mistake: it is kept, with a TfdipWarning."""
    _check_sigma(sigma_255)
    if 0 < sigma_255 < 1:
        warnings.warn(f"--sigma {sigma_255:g} is on the 0..255 scale ({sigma_255 / 255:.2g} on "
                      f"[0, 1]); did you mean --sigma {sigma_255 * 255:g}?", TfdipWarning,
                      stacklevel=2)
    return sigma_255 / 255.0


def _check_sigma(sigma_255) -> None:
    if sigma_255 is None or not 0 <= sigma_255 < float("inf"):
        raise TfdipError(f"--sigma must be a number >= 0 (on the 0..255 scale), got {sigma_255}")


def check_task_options(task: str, *, sigma=None, mask=None, factor=None) -> None:
    """Refuse a task name or an option the task does not take, and a missing required one:
    denoise needs ``sigma``; inpaint needs ``mask``; superres needs ``factor``."""
    if task not in TASKS:
        raise TfdipError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "denoise" and sigma is None:
        raise TfdipError("denoise needs the noise level --sigma (on the 0..255 scale)")
    if task == "inpaint" and mask is None:
        raise TfdipError("inpaint needs a --mask (nonzero = known pixel)")
    if task != "inpaint" and mask is not None:
        raise TfdipError(f"a mask applies to inpaint only, not to {task}")
    if task == "superres" and factor is None:
        raise TfdipError("superres needs the --factor")
    if task != "superres" and factor is not None:
        raise TfdipError(f"a factor applies to superres only, not to {task}")
    if factor is not None:
        physics.SuperResolution(factor)  # validates the factor
    if sigma is not None:
        _check_sigma(sigma)


def load_problem(observation, task: str, *, sigma=None, mask=None, factor=None,
                 reference=None) -> Problem:
    """Read the observation file, the mask (inpaint) and the reference, and build the physics.

    ``sigma`` is the noise std on the 0..255 scale (default 0 for inpaint and superres); raises
    TfdipError for an unreadable file, a mask or reference of the wrong size.
    """
    check_task_options(task, sigma=sigma, mask=mask, factor=factor)
    observed = io.read_image(observation)
    noise = sigma01(sigma or 0.0)
    if task == "denoise":
        phys = physics.Denoising(noise)
    elif task == "inpaint":
        phys = physics.Inpainting(io.read_mask(mask, observed.pixels.shape[:2]), sigma=noise)
    else:
        phys = physics.SuperResolution(factor, sigma=noise)
    clean = None
    if reference is not None:
        clean = io.read_image(reference).pixels
        expected = tuple(phys.image_shape(observed.pixels.shape))
        if clean.shape != expected:
            raise TfdipError(f"the reference is {clean.shape[1]}x{clean.shape[0]}x{clean.shape[2]} "
                             f"but the restored image will be {expected[1]}x{expected[0]}x"
                             f"{expected[2]}; give the matching clean image")
    return Problem(observed, phys, clean)
