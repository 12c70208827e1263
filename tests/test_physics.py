"""Degradation operators against NumPy transcriptions, adjointness, noise model and likelihood."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from tfdip.errors import TfdipError
from tfdip.physics import Denoising, Inpainting, SuperResolution, lanczos2_kernel, make_physics


def reference_lanczos2_kernel(factor):
    """Loop transcription of DIP's get_kernel(factor, 'lanczos', phase=0.5, 4f+1, support=2)."""
    support, kernel_width = 2, 4 * factor + 1
    kernel = np.zeros([kernel_width - 1, kernel_width - 1])
    center = (kernel_width + 1) / 2.0
    for i in range(1, kernel.shape[0] + 1):
        for j in range(1, kernel.shape[1] + 1):
            di = abs(i + 0.5 - center) / factor
            dj = abs(j + 0.5 - center) / factor
            val = 1.0
            if di != 0:
                val *= support * np.sin(np.pi * di) * np.sin(np.pi * di / support) / (np.pi * di) ** 2
            if dj != 0:
                val *= support * np.sin(np.pi * dj) * np.sin(np.pi * dj / support) / (np.pi * dj) ** 2
            kernel[i - 1, j - 1] = val
    return kernel / kernel.sum()


def reference_downsample(image, factor):
    """NumPy: replication pad (ReplicationPad2d(pad) on all sides), then strided filtering."""
    kernel = reference_lanczos2_kernel(factor)
    size = kernel.shape[0]
    pad_before = (size - factor) // 2
    pad_after = 3 * factor - pad_before      # equals pad_before for even factors (the reference)
    padded = np.pad(image, ((pad_before, pad_after), (pad_before, pad_after), (0, 0)), mode="edge")
    h, w = image.shape[0] // factor, image.shape[1] // factor
    out = np.zeros((h, w, image.shape[2]))
    for i in range(h):
        for j in range(w):
            window = padded[i * factor:i * factor + size, j * factor:j * factor + size]
            out[i, j] = np.einsum("ab,abc->c", kernel, window)
    return out


def random_image(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).random(shape).astype(dtype)


def bernoulli_inpainting(shape_hw=(16, 24), **kwargs):
    return Inpainting.bernoulli(shape_hw, 0.5, seed=3, **kwargs)


# --- the operators against NumPy ------------------------------------------------------------------
def test_denoising_is_identity():
    x = random_image((2, 8, 12, 3))
    np.testing.assert_array_equal(Denoising(0.1)(x).numpy(), x)
    np.testing.assert_array_equal(Denoising(0.1).adjoint(x).numpy(), x)


def test_inpainting_multiplies_by_the_mask():
    mask = np.random.default_rng(1).random((16, 24)) < 0.5
    x = random_image((1, 16, 24, 3))
    physics = Inpainting(mask.astype(np.uint8) * 7)      # any nonzero value means known
    np.testing.assert_array_equal(physics(x).numpy(), x * mask[None, :, :, None])
    per_channel = np.random.default_rng(2).random((16, 24, 3)) < 0.5
    np.testing.assert_array_equal(Inpainting(per_channel)(x).numpy(), x * per_channel[None])


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_lanczos2_kernel_matches_reference_and_is_normalised_and_symmetric(factor):
    kernel = lanczos2_kernel(factor)
    assert kernel.shape == (4 * factor, 4 * factor)
    np.testing.assert_allclose(kernel, reference_lanczos2_kernel(factor), rtol=1e-12, atol=1e-15)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(kernel, kernel[::-1], atol=1e-15)
    np.testing.assert_allclose(kernel, kernel[:, ::-1], atol=1e-15)
    np.testing.assert_allclose(kernel, kernel.T, atol=1e-15)


@pytest.mark.parametrize("factor,shape", [(2, (16, 20, 3)), (4, (32, 16, 1)), (3, (12, 18, 2))])
def test_superresolution_matches_numpy_downsampler(factor, shape):
    x = random_image(shape, seed=factor)
    got = SuperResolution(factor)(x[None]).numpy()[0]
    assert got.shape == (shape[0] // factor, shape[1] // factor, shape[2])
    np.testing.assert_allclose(got, reference_downsample(x, factor), rtol=1e-10, atol=1e-12)


def test_superresolution_preserves_constants_and_dtype():
    constant = np.full((1, 16, 16, 3), 0.3, np.float32)
    low = SuperResolution(4)(constant)
    assert low.dtype == tf.float32
    np.testing.assert_allclose(low.numpy(), 0.3, atol=1e-6)


# --- adjointness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("physics", [Denoising(0.0), bernoulli_inpainting(), SuperResolution(2),
                                     SuperResolution(4), SuperResolution(3)],
                         ids=["denoising", "inpainting", "sr2", "sr4", "sr3"])
def test_adjoint_identity(physics):
    rng = np.random.default_rng(5)
    image_shape = (16, 24, 3) if physics.name != "superresolution" else (
        4 * physics.factor, 6 * physics.factor, 3)
    x = rng.standard_normal((2,) + image_shape)
    y = rng.standard_normal((2,) + physics.observation_shape(image_shape))
    forward_dot = np.sum(physics(x).numpy() * y)
    adjoint = physics.adjoint(y).numpy()
    assert adjoint.shape == x.shape
    assert forward_dot == pytest.approx(np.sum(x * adjoint), rel=1e-12, abs=1e-12)


def test_operators_work_in_tf_function_with_unknown_size():
    physics = SuperResolution(2)
    signature = [tf.TensorSpec([1, None, None, 3], tf.float32)]
    forward = tf.function(physics.forward, input_signature=signature)
    adjoint = tf.function(physics.adjoint, input_signature=signature)
    x = random_image((1, 8, 12, 3), dtype=np.float32)
    np.testing.assert_allclose(forward(x).numpy(), physics(x).numpy(), atol=1e-6)
    y = random_image((1, 4, 6, 3), dtype=np.float32)
    np.testing.assert_allclose(adjoint(y).numpy(), physics.adjoint(y).numpy(), atol=1e-6)
    loss = tf.function(physics.mse, input_signature=signature * 2)
    assert np.isfinite(loss(y, x).numpy())


def test_static_shapes_are_kept_in_graphs():
    physics = SuperResolution(4)
    traced = tf.function(lambda x: physics.adjoint(physics(x))).get_concrete_function(
        tf.TensorSpec([1, 32, 16, 3], tf.float32))
    assert traced.output_shapes.as_list() == [1, 32, 16, 3]


# --- shapes ---------------------------------------------------------------------------------------
def test_observation_and_image_shapes():
    assert SuperResolution(4).observation_shape((64, 32, 3)) == (16, 8, 3)
    assert SuperResolution(4).image_shape((16, 8, 3)) == (64, 32, 3)
    assert Denoising(0.1).observation_shape((5, 7, 1)) == (5, 7, 1)
    assert bernoulli_inpainting().image_shape((16, 24, 3)) == (16, 24, 3)


def test_num_observed():
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:5] = True
    assert Inpainting(mask).num_observed((4, 5, 3)) == 6 * 3
    per_channel = np.zeros((4, 5, 3), bool)
    per_channel[0, 0, 1] = per_channel[2, 3, :] = True
    assert Inpainting(per_channel).num_observed((4, 5, 3)) == 4
    assert Denoising(0.1).num_observed((4, 5, 3)) == 60
    assert SuperResolution(2).num_observed((4, 5, 3)) == 60


# --- the noise model ------------------------------------------------------------------------------
def test_simulate_is_deterministic_and_has_the_right_noise_std():
    x = np.full((64, 64, 3), 0.5, np.float32)
    physics = Denoising(0.1)
    first, again, other = (physics.simulate(x, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.dtype == np.float32 and first.shape == x.shape
    noise = (first - x).ravel()
    # 12288 draws: std error of the mean 0.1/sqrt(n) ~ 9e-4, of the std ~ 6.4e-4
    assert abs(noise.mean()) < 4e-3
    assert noise.std() == pytest.approx(0.1, abs=3e-3)


def test_simulate_clips_to_unit_range_by_default():
    x = np.full((32, 32, 1), 0.95, np.float64)
    physics = Denoising(0.2)
    clipped = physics.simulate(x, seed=0)
    raw = physics.simulate(x, seed=0, clip=False)
    assert clipped.max() <= 1.0 and raw.max() > 1.0
    np.testing.assert_array_equal(clipped, np.clip(raw, 0, 1))


def test_simulate_inpainting_and_superresolution():
    x = random_image((16, 24, 3), dtype=np.float32)
    physics = bernoulli_inpainting(sigma=0.05)
    y = physics.simulate(x, seed=1)
    unknown = physics.mask[:, :, 0] == 0
    assert np.all(y[unknown] == 0)
    assert np.abs(y[~unknown] - x[~unknown]).max() > 0
    sr = SuperResolution(2)
    np.testing.assert_allclose(sr.simulate(x, seed=0), np.clip(sr(x[None]).numpy()[0], 0, 1),
                               atol=1e-6)


def test_bernoulli_mask_keeps_the_requested_fraction():
    physics = Inpainting.bernoulli((64, 64), 0.5, seed=0)
    assert physics.mask.shape == (64, 64, 1)
    assert physics.mask.mean() == pytest.approx(0.5, abs=0.03)     # 4096 draws: 4 std errors
    np.testing.assert_array_equal(physics.mask, Inpainting.bernoulli((64, 64), 0.5, seed=0).mask)


# --- the loss and the likelihood ------------------------------------------------------------------
def test_mse_is_the_reference_mean():
    rng = np.random.default_rng(4)
    x_hat, y = rng.random((1, 16, 24, 3)), rng.random((1, 16, 24, 3))
    physics = bernoulli_inpainting()
    mask = physics.mask[None]
    expected = np.mean((mask * x_hat - mask * y) ** 2)
    assert physics.mse(y, x_hat).numpy() == pytest.approx(expected, rel=1e-12)
    assert Denoising(0.1).mse(y, x_hat).numpy() == pytest.approx(np.mean((x_hat - y) ** 2), rel=1e-12)
    low = rng.random((1, 8, 12, 3))
    sr = SuperResolution(2)
    expected = np.mean((reference_downsample(x_hat[0], 2) - low[0]) ** 2)
    assert sr.mse(low, x_hat).numpy() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("physics", [Denoising(0.1), bernoulli_inpainting(sigma=0.05),
                                     SuperResolution(2, sigma=0.02)],
                         ids=["denoising", "inpainting", "superresolution"])
def test_log_likelihood_matches_scipy(physics):
    x_hat = random_image((1, 16, 24, 3), seed=1)
    y = physics.simulate(random_image((16, 24, 3), seed=2), seed=3)[None]
    predicted = physics(x_hat).numpy()
    observed = np.ones_like(y, bool)
    if isinstance(physics, Inpainting):
        observed = np.broadcast_to(physics.mask[None] != 0, y.shape)
    expected = stats.norm.logpdf(y[observed], loc=predicted[observed], scale=physics.sigma).sum()
    assert physics.log_likelihood(y, x_hat).numpy() == pytest.approx(expected, rel=1e-10)
    assert observed.sum() == physics.num_observed(y.shape[1:])
    override = stats.norm.logpdf(y[observed], loc=predicted[observed], scale=0.3).sum()
    assert physics.log_likelihood(y, x_hat, sigma=0.3).numpy() == pytest.approx(override, rel=1e-10)


def test_log_likelihood_in_float32_inside_tf_function():
    physics = Denoising(0.1)
    x_hat = random_image((1, 8, 8, 1), dtype=np.float32)
    y = random_image((1, 8, 8, 1), seed=1, dtype=np.float32)
    value = tf.function(physics.log_likelihood)(y, x_hat)
    assert value.dtype == tf.float32
    expected = stats.norm.logpdf(y, loc=x_hat, scale=0.1).sum()
    assert value.numpy() == pytest.approx(expected, rel=1e-5)


def test_log_likelihood_gradient_is_the_adjoint_residual():
    physics = SuperResolution(2, sigma=0.1)
    x_hat = tf.Variable(random_image((1, 8, 8, 1)))
    y = random_image((1, 4, 4, 1), seed=1)
    with tf.GradientTape() as tape:
        value = physics.log_likelihood(y, x_hat)
    expected = -physics.adjoint(physics(x_hat) - y).numpy() / 0.1 ** 2
    np.testing.assert_allclose(tape.gradient(value, x_hat).numpy(), expected, rtol=1e-10)


# --- serialisation --------------------------------------------------------------------------------
@pytest.mark.parametrize("physics", [Denoising(0.1), bernoulli_inpainting(sigma=0.05),
                                     SuperResolution(4, sigma=0.01)],
                         ids=["denoising", "inpainting", "superresolution"])
def test_config_round_trip(physics):
    config = physics.get_config()
    rebuilt = make_physics(physics.name, **config)
    assert type(rebuilt) is type(physics)
    assert rebuilt.get_config() == config
    assert type(physics).from_config(config).get_config() == config
    x = random_image((1, 16, 24, 3))
    np.testing.assert_array_equal(rebuilt(x).numpy(), physics(x).numpy())


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf"), 25])
def test_bad_sigma(sigma):
    with pytest.raises(TfdipError, match="sigma"):
        Denoising(sigma)


def test_log_likelihood_needs_a_noise_level():
    with pytest.raises(TfdipError, match="noise level"):
        Denoising(0.0).log_likelihood(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)))


def test_bad_masks():
    with pytest.raises(TfdipError, match="no known pixel"):
        Inpainting(np.zeros((8, 8)))
    with pytest.raises(TfdipError, match="keep_fraction"):
        Inpainting.bernoulli((8, 8), 0.0, seed=0)
    with pytest.raises(TfdipError, match="keep_fraction"):
        Inpainting.bernoulli((8, 8), 1.5, seed=0)
    physics = Inpainting(np.ones((30, 40)))
    with pytest.raises(TfdipError, match="mask is 30x40 but the image is 32x32"):
        physics.simulate(np.zeros((32, 32, 1)), seed=0)
    with pytest.raises(TfdipError, match="mask is 30x40"):
        physics(np.zeros((1, 32, 32, 1)))
    with pytest.raises(TfdipError, match="mask is 30x40"):
        physics.mse(np.zeros((1, 32, 32, 1)), np.zeros((1, 32, 32, 1)))
    with pytest.raises(TfdipError, match="channels"):
        Inpainting(np.ones((4, 4, 3)))(np.zeros((1, 4, 4, 1)))


def test_bad_superresolution_input():
    for factor in (1, 0, 2.5, True, "4"):
        with pytest.raises(TfdipError, match="factor"):
            SuperResolution(factor)
    with pytest.raises(TfdipError, match="multiples of 4; crop it to 28x40"):
        SuperResolution(4)(np.zeros((1, 30, 40, 3)))
    with pytest.raises(TfdipError, match="multiples"):
        SuperResolution(4).observation_shape((30, 40, 3))


def test_bad_rank_and_task():
    with pytest.raises(TfdipError, match="batch"):
        Denoising(0.1)(np.zeros((8, 8, 3)))
    with pytest.raises(TfdipError, match="simulate"):
        Denoising(0.1).simulate(np.zeros((8, 8)), seed=0)
    with pytest.raises(TfdipError, match="unknown task"):
        make_physics("deblurring")
    with pytest.raises(TfdipError, match="superresolution"):
        make_physics("superresolution")

