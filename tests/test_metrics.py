"""PSNR, SSIM and Y-PSNR against hand computations and scikit-image."""
import math

import numpy as np
import pytest
import tensorflow as tf
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tfdip.errors import TfdipError
from tfdip.metrics import psnr, psnr_y, rgb_to_y, ssim, tf_psnr


def pair(shape, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    x = rng.random(shape).astype(np.float32)
    return x, np.clip(x + noise * rng.standard_normal(shape), 0, 1).astype(np.float32)


def test_psnr_hand_computation():
    x = np.zeros((2, 2, 1))
    y = np.array([[0.1, 0.0], [0.0, 0.3]])[:, :, None]
    mse = (0.1 ** 2 + 0.3 ** 2) / 4            # 0.025
    assert psnr(x, y) == pytest.approx(10 * math.log10(1 / mse), rel=1e-12)
    assert psnr(x, y) == pytest.approx(16.0206, abs=1e-4)
    assert psnr(x * 255, y * 255, data_range=255) == pytest.approx(psnr(x, y), rel=1e-12)
    assert psnr(y, y) == math.inf


def test_psnr_agrees_with_skimage_over_all_channels():
    x, y = pair((16, 24, 3))
    assert psnr(x, y) == pytest.approx(peak_signal_noise_ratio(x.astype(np.float64), y, data_range=1),
                                       rel=1e-6)


def test_tf_psnr_matches_numpy_inside_tf_function():
    x, y = pair((1, 16, 16, 3))
    value = tf.function(tf_psnr)(tf.constant(x), tf.constant(y))
    assert value.dtype == tf.float32
    assert value.numpy() == pytest.approx(psnr(x, y), rel=1e-5)
    assert tf_psnr(x.astype(np.float64), y).numpy() == pytest.approx(psnr(x, y), rel=1e-12)
    assert tf_psnr(x, x).numpy() == np.inf


def test_ssim_of_an_image_with_itself_is_one():
    x, _ = pair((32, 32, 3))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x[:, :, :1], x[:, :, :1]) == pytest.approx(1.0, abs=1e-12)


def test_ssim_agrees_with_skimage_and_drops_with_noise():
    x, y = pair((32, 40, 3))
    expected = structural_similarity(x.astype(np.float64), y.astype(np.float64), data_range=1.0,
                                     channel_axis=2)
    assert ssim(x, y) == pytest.approx(expected, rel=1e-12)
    gray_x, gray_y = x[:, :, 0], y[:, :, 0]
    gray = structural_similarity(gray_x.astype(np.float64), gray_y.astype(np.float64), data_range=1.0)
    assert ssim(gray_x[:, :, None], gray_y[:, :, None]) == pytest.approx(gray, rel=1e-12)
    _, noisier = pair((32, 40, 3), noise=0.2)
    assert ssim(x, noisier) < ssim(x, y) < 1


def test_luma_of_primaries_and_extremes():
    corners = np.array([[[0, 0, 0], [1, 1, 1]], [[1, 0, 0], [0, 1, 0]]], dtype=np.float64)
    np.testing.assert_allclose(rgb_to_y(corners),
                               [[16 / 255, 235 / 255], [(16 + 65.481) / 255, (16 + 128.553) / 255]],
                               rtol=1e-12)


def test_psnr_y_known_case():
    # Two gray RGB images differing by 0.1 in every channel inside the crop and by 0.5 on the
    # 2-pixel border: Y differs by 0.1 * 219/255 inside, the border is cut away.
    x = np.full((12, 12, 3), 0.4)
    y = x.copy()
    y[2:-2, 2:-2] += 0.1
    y[:2] += 0.5
    expected = 10 * math.log10(1 / (0.1 * 219 / 255) ** 2)
    assert psnr_y(x, y, border=2) == pytest.approx(expected, rel=1e-12)
    assert psnr_y(x, y, border=0) < expected
    assert psnr_y(x[:, :, :1], y[:, :, :1], border=2) == pytest.approx(20.0, rel=1e-12)


def test_mismatched_or_bad_input_raises():
    with pytest.raises(TfdipError, match="same shape"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 4, 1)))
    with pytest.raises(TfdipError, match="same shape"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(TfdipError, match="same shape"):
        psnr_y(np.zeros((8, 8, 3)), np.zeros((8, 8)))
    with pytest.raises(TfdipError, match="same shape"):
        tf_psnr(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 4, 1)))
    with pytest.raises(TfdipError, match="7x7"):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))
    with pytest.raises(TfdipError, match="border"):
        psnr_y(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), border=4)
    with pytest.raises(TfdipError, match="RGB"):
        psnr_y(np.zeros((8, 8, 2)), np.zeros((8, 8, 2)))
