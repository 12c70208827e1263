"""Image quality metrics for images in [0, 1].

* :func:`psnr`     10 log10(data_range^2 / MSE), MSE over all pixels and channels (NumPy, float64).
* :func:`tf_psnr`  the same with tf ops, for use inside ``tf.function``.
* :func:`ssim`     scikit-image's SSIM (7x7 uniform window, data range 1), channels averaged.
* :func:`psnr_y`   the super-resolution protocol: PSNR of the ITU-R BT.601 luma (MATLAB
                   ``rgb2ycbcr``) with a border cropped.

How well a posterior std predicts the error is measured in :mod:`tfdip.inference.calibration`.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from skimage.metrics import structural_similarity

from tfdip.errors import TfdipError

#: ITU-R BT.601 luma of RGB in [0, 1], as MATLAB's rgb2ycbcr: Y = (16 + 65.481 R + 128.553 G
#: + 24.966 B) / 255, a value in [16/255, 235/255].
BT601_LUMA_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
BT601_LUMA_OFFSET = 16.0 / 255.0


def _pair(x, y, what: str):
    """Both images as float64 arrays of the same shape."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise TfdipError(f"{what} needs two images of the same shape, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise TfdipError(f"{what} needs non-empty images, got shape {x.shape}")
    return x, y


def psnr(x, y, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / mean((x - y)^2)).

    The mean runs over every pixel and channel; identical images give ``inf``.
    """
    x, y = _pair(x, y, "psnr")
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def tf_psnr(x, y, data_range: float = 1.0) -> tf.Tensor:
    """:func:`psnr` as a tf scalar (in x's float type) over all entries of x and y, any shape.

    Usable inside ``tf.function``; identical inputs give ``inf``.
    """
    x = tf.convert_to_tensor(x)
    y = tf.cast(y, x.dtype)
    if x.shape.is_fully_defined() and y.shape.is_fully_defined() and x.shape != y.shape:
        raise TfdipError(f"tf_psnr needs two images of the same shape, got {x.shape} and {y.shape}")
    mse = tf.reduce_mean(tf.math.squared_difference(x, y))
    return 10.0 * tf.math.log(data_range ** 2 / mse) / math.log(10.0)


def ssim(x, y) -> float:
    """Structural similarity with data range 1, via ``skimage.metrics.structural_similarity``.

    Its defaults: a 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariances; for colour
    images (H, W, C) the SSIM of every channel is averaged. Gray images may be (H, W) or
    (H, W, 1). Both sides must be at least 7 pixels.
    """
    x, y = _pair(x, y, "ssim")
    if x.ndim == 3 and x.shape[2] == 1:
        x, y = x[:, :, 0], y[:, :, 0]
    if x.ndim not in (2, 3):
        raise TfdipError(f"ssim needs images of shape (H, W) or (H, W, C), got {x.shape}")
    if min(x.shape[:2]) < 7:
        raise TfdipError(f"ssim uses a 7x7 window and needs images of at least 7x7 pixels, "
                         f"got {x.shape[0]}x{x.shape[1]}")
    return float(structural_similarity(x, y, data_range=1.0,
                                       channel_axis=2 if x.ndim == 3 else None))


def rgb_to_y(rgb) -> np.ndarray:
    """BT.601 luma (MATLAB ``rgb2ycbcr``'s Y, scaled to [0, 1]) of an (H, W, 3) image, shape (H, W)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise TfdipError(f"luma needs an RGB image of shape (H, W, 3), got {rgb.shape}")
    return BT601_LUMA_OFFSET + rgb @ BT601_LUMA_WEIGHTS


def psnr_y(x, y, border: int = 0) -> float:
    """The super-resolution protocol: PSNR (data range 1) of the BT.601 luma Y of RGB images,
    after cropping ``border`` pixels from every side.

    Gray images, (H, W) or (H, W, 1), are compared as they are (they are their own luma).
    """
    x, y = _pair(x, y, "psnr_y")
    if x.ndim == 3 and x.shape[2] == 3:
        x, y = rgb_to_y(x), rgb_to_y(y)
    elif x.ndim == 3 and x.shape[2] == 1:
        x, y = x[:, :, 0], y[:, :, 0]
    elif x.ndim != 2:
        raise TfdipError(f"psnr_y needs RGB (H, W, 3) or gray images, got shape {x.shape}")
    border = int(border)
    if border < 0 or 2 * border >= min(x.shape):
        raise TfdipError(f"border {border} must be >= 0 and leave pixels of the "
                         f"{x.shape[0]}x{x.shape[1]} image after cropping it from every side")
    crop = (slice(border, x.shape[0] - border), slice(border, x.shape[1] - border))
    return psnr(x[crop], y[crop])

