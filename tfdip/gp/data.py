"""An image restoration problem as Gaussian-process regression data.

A pixel is a point ``x = (row, column)`` of the plane (integer coordinates, in pixels); channel
``c`` of the image is a function ``f_c(x)``. The known pixels of an inpainting mask (nonzero =
known), or every pixel for denoising, are the regression's observations ``y_c(x_i)``; every pixel
is a prediction point.

Dense GP inference costs ``O(N^3)`` in the number of observed pixels and ``O(P N)`` memory for the
``P`` prediction points, so the dense solver refuses images of more than :data:`MAX_DENSE_PIXELS`;
the grid solver (:mod:`tfdip.gp.grid_posterior`) takes any size.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from tfdip.errors import TfdipError

MAX_DENSE_PIXELS = 64 * 64
"""Dense GP restoration handles at most this many pixels (64x64)."""


def pixel_coordinates(height: int, width: int) -> np.ndarray:
    """The ``(row, column)`` coordinates of every pixel in row-major order, shape ``[H * W, 2]``, float64."""
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows.ravel(), columns.ravel()], axis=-1).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class PixelData:
    """A validated observation: the image, which pixels are known and the noise level.

    Attributes:
      image: the observation as float64, shape ``(H, W, C)``.
      known: boolean ``(H, W)``, True where the pixel is observed (every channel of it).
      sigma: the noise std of the observed values, or None if unknown.
      gray: True if the observation was given as an ``(H, W)`` array.
    """

    image: np.ndarray
    known: np.ndarray
    sigma: Optional[float]
    gray: bool

    @property
    def shape(self):
        """``(H, W, C)``."""
        return self.image.shape

    @property
    def points(self) -> np.ndarray:
        """Every pixel, shape ``[H * W, 2]`` (row-major)."""
        return pixel_coordinates(*self.known.shape)

    @property
    def observed_points(self) -> np.ndarray:
        """The known pixels, shape ``[N, 2]`` (row-major order)."""
        return self.points[self.known.ravel()]

    @property
    def observed_values(self) -> np.ndarray:
        """The known values per channel, shape ``[C, N]``, float64."""
        return self.image[self.known].T

    def as_image(self, per_channel: np.ndarray) -> np.ndarray:
        """Values per channel and pixel ``[C, H * W]`` as an ``(H, W, C)`` image."""
        return np.reshape(np.transpose(per_channel), self.shape)

    def like_observation(self, image: np.ndarray) -> np.ndarray:
        """An ``(H, W, C)`` image shaped like the observation (``(H, W)`` if it was given so)."""
        return image[:, :, 0] if self.gray else image


def _check_sigma(sigma) -> Optional[float]:
    if sigma is None:
        return None
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise TfdipError(f"noise level sigma must be a number, got {sigma!r}") from None
    if not math.isfinite(sigma) or not 0 <= sigma <= 1:
        raise TfdipError(f"noise level sigma must be a number in [0, 1] (images in [0, 1], "
                         f"e.g. 25/255), got {sigma}")
    return sigma


def _check_image(observation, max_pixels: Optional[int]) -> np.ndarray:
    try:
        image = np.asarray(observation, dtype=np.float64)
    except (TypeError, ValueError):
        raise TfdipError(f"the observation must be an array of numbers, got "
                         f"{type(observation).__name__}") from None
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or 0 in image.shape:
        raise TfdipError(f"the observation must be an (H, W) or (H, W, C) image, got shape "
                         f"{image.shape}")
    if not np.isfinite(image).all():
        raise TfdipError("the observation contains NaN or inf; give finite values in [0, 1]")
    height, width = image.shape[:2]
    if max_pixels is not None and height * width > max_pixels:
        raise TfdipError(f"the observation is {height}x{width}; dense GP restoration handles at "
                         f"most {MAX_DENSE_PIXELS} pixels (64x64); crop or resize the image, or "
                         f"use the grid solver")
    return image


def _check_mask(mask, height: int, width: int) -> np.ndarray:
    if mask is None:
        return np.ones((height, width), dtype=bool)
    mask = np.asarray(mask)
    if not (np.issubdtype(mask.dtype, np.number) or mask.dtype == bool):
        raise TfdipError(f"the mask holds {mask.dtype} values; give 0 for missing and 1 for known")
    if mask.ndim == 3:
        if mask.shape[2] > 1 and np.any((mask != 0) != (mask[:, :, :1] != 0)):
            raise TfdipError("the mask differs between channels; GP restoration needs the "
                             "same known pixels in every channel: give an (H, W) mask")
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise TfdipError(f"the mask must have shape (H, W) or (H, W, C), got {mask.shape}")
    if mask.shape != (height, width):
        raise TfdipError(f"the mask is {mask.shape[0]}x{mask.shape[1]} but the observation is "
                         f"{height}x{width}; give a mask of the observation's size")
    if np.issubdtype(mask.dtype, np.floating) and not np.isfinite(mask).all():
        raise TfdipError("the mask contains NaN or inf; give 0 for missing and 1 for known pixels")
    known = mask != 0
    if not known.any():
        raise TfdipError("the mask has no known pixel (all zero); mark known pixels with nonzero "
                         "values")
    return known


def pixel_data(observation, mask=None, sigma=None,
               max_pixels: Optional[int] = MAX_DENSE_PIXELS) -> PixelData:
    """Validate an observation, its mask of known pixels (nonzero = known; None = all) and sigma.

    ``max_pixels``: the most pixels allowed (None: any size, for the grid solver).

    Raises:
      TfdipError: for a malformed image or mask, a mask of another size or with channels that
        differ, an image of more than ``max_pixels`` pixels, or a sigma outside [0, 1].
    """
    image = _check_image(observation, max_pixels)
    known = _check_mask(mask, *image.shape[:2])
    return PixelData(image=image, known=known, sigma=_check_sigma(sigma),
                     gray=np.ndim(observation) == 2)
