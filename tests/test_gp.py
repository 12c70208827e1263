"""Dense GP restoration against direct NumPy solves, closed-form kernels and data drawn from a GP."""
import numpy as np
import pytest
import scipy.stats
import tensorflow_probability as tfp

from tfdip.errors import TfdipError
from tfdip.gp import DIP_KERNEL_SPEC, GPPrior, fit_prior, gp_posterior, gp_restore, pixel_coordinates
from tfdip.gp.prior import JITTER, resolve_kernel
from tfdip.kernels import DIPKernel, kernel_of
from tfdip.metrics import psnr
from tfdip.nets.spec import ConvStackSpec, SkipSpec

tfpk = tfp.math.psd_kernels


def squared_distances(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def rbf(a, b, amplitude, length_scale):
    return amplitude ** 2 * np.exp(-squared_distances(a, b) / (2 * length_scale ** 2))


def matern52(a, b, amplitude, length_scale):
    d = np.sqrt(5 * squared_distances(a, b)) / length_scale
    return amplitude ** 2 * (1 + d + d ** 2 / 3) * np.exp(-d)


def numpy_posterior(kernel, x_obs, y, x_new, noise_variance, mean):
    """K*^T (K + s^2 I)^-1 (y - m) + m and the diagonal of K** - K*^T (K + s^2 I)^-1 K*."""
    k = kernel(x_obs, x_obs) + (noise_variance + JITTER) * np.eye(len(x_obs))
    k_star = kernel(x_obs, x_new)
    post_mean = mean[:, None] + np.linalg.solve(k, (y - mean[:, None]).T).T @ k_star
    post_var = np.diag(kernel(x_new, x_new)) - np.einsum("ij,ij->j", k_star, np.linalg.solve(k, k_star))
    return post_mean, np.sqrt(post_var)


def numpy_log_marginal_likelihood(kernel, x, y, noise_variance, mean):
    cov = kernel(x, x) + (noise_variance + JITTER) * np.eye(len(x))
    return sum(scipy.stats.multivariate_normal(mean=np.full(len(x), m), cov=cov).logpdf(yc)
               for yc, m in zip(y, mean))


def smooth_image(size=8, channels=None, seed=0):
    """A smooth random image in [0, 1]: low-pass filtered noise."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels is None else (size, size, channels)
    noise = rng.standard_normal(shape)
    spectrum = np.fft.fft2(noise, axes=(0, 1))
    f = np.fft.fftfreq(size)
    low_pass = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) * 60)
    if channels is not None:
        low_pass = low_pass[:, :, None]
    image = np.real(np.fft.ifft2(spectrum * low_pass, axes=(0, 1)))
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def random_mask(size, seed=1, keep=0.5):
    return np.random.default_rng(seed).random((size, size)) < keep


# --- the posterior against a direct solve ---------------------------------------------------


@pytest.mark.parametrize("name, numpy_kernel", [("rbf", rbf), ("matern52", matern52)])
def test_posterior_matches_numpy_solve(name, numpy_kernel):
    image, known = smooth_image(8), random_mask(8)
    x = pixel_coordinates(8, 8)
    values = {"amplitude": 0.3, "length_scale": 1.7, "noise_variance": 0.01, "mean": 0.45}
    prior = GPPrior(name, values)
    mean, std = gp_posterior(prior, x[known.ravel()], image[known][None], x)

    def kernel(a, b):
        return numpy_kernel(a, b, 0.3, 1.7)

    expected_mean, expected_std = numpy_posterior(kernel, x[known.ravel()], image[known][None].astype(float),
                                                  x, 0.01, np.array([0.45]))
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(std, expected_std, rtol=1e-7, atol=1e-10)


def test_given_kernel_is_scaled_by_amplitude_squared():
    image, known = smooth_image(8), random_mask(8, seed=3)
    x = pixel_coordinates(8, 8)
    base = tfpk.MaternFiveHalves(amplitude=np.float64(1.0), length_scale=np.float64(2.5))
    prior = GPPrior(base, {"amplitude": 0.2, "noise_variance": 0.0})
    mean, std = gp_posterior(prior, x[known.ravel()], image[known][None], x)

    def kernel(a, b):
        return matern52(a, b, 0.2, 2.5)

    expected_mean, expected_std = numpy_posterior(kernel, x[known.ravel()], image[known][None].astype(float),
                                                  x, 0.0, np.zeros(1))
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(std, expected_std, rtol=1e-5, atol=1e-7)


def test_dip_kernel_posterior_matches_numpy_solve():
    """Noise-free zero-mean GP with the analytic kernel of a skip net, against K_*^T K^-1 y."""
    spec = SkipSpec(channels_down=(16, 16), channels_up=(16, 16), channels_skip=(4, 4),
                    output_channels=1, init="gaussian")
    image, known = smooth_image(8, seed=13), random_mask(8, seed=14)
    x = pixel_coordinates(8, 8)
    covariance = kernel_of(spec)(x[None, :, :] - x[:, None, :]).numpy()

    def kernel(a, b):
        rows = [np.flatnonzero((x == point).all(1))[0] for point in a]
        columns = [np.flatnonzero((x == point).all(1))[0] for point in b]
        return covariance[np.ix_(rows, columns)]

    result = gp_restore(image * known, known, kernel=spec, fit=False, mean="zero")
    expected_mean, expected_std = numpy_posterior(kernel, x[known.ravel()],
                                                  image[known][None].astype(float), x, 0.0,
                                                  np.zeros(1))
    assert result.kernel_name == "dip"
    np.testing.assert_allclose(result.mean[~known],
                               np.clip(expected_mean.reshape(8, 8)[~known], 0, 1), atol=1e-5)
    np.testing.assert_allclose(result.std, expected_std.reshape(8, 8), rtol=1e-5, atol=1e-7)


def test_kernel_names_and_descriptions_resolve():
    assert resolve_kernel("rbf") == "rbf"
    dip = resolve_kernel("dip")
    assert isinstance(dip, DIPKernel) and dip.spec == DIP_KERNEL_SPEC and dip.name == "dip"
    stack = ConvStackSpec(channels=8, depth=2)
    assert resolve_kernel(stack).spec == stack
    base = tfpk.MaternOneHalf(np.float64(1.0), np.float64(1.0))
    assert resolve_kernel(base) is base


def test_denoising_restores_the_posterior_mean_everywhere():
    clean = smooth_image(8)
    noisy = np.clip(clean + 0.05 * np.random.default_rng(4).standard_normal(clean.shape), 0, 1)
    given = {"amplitude": 0.25, "length_scale": 1.5, "mean": 0.5}
    result = gp_restore(noisy, sigma=0.05, kernel="rbf", fit=False, hyperparameters=given)
    x = pixel_coordinates(8, 8)

    def kernel(a, b):
        return rbf(a, b, 0.25, 1.5)

    expected_mean, expected_std = numpy_posterior(kernel, x, noisy.reshape(1, -1), x, 0.05 ** 2,
                                                  np.array([0.5]))
    assert result.mean.shape == (8, 8) and result.mean.dtype == np.float32
    np.testing.assert_allclose(result.mean, np.clip(expected_mean.reshape(8, 8), 0, 1), atol=1e-6)
    np.testing.assert_allclose(result.std, expected_std.reshape(8, 8), rtol=1e-5)
    assert result.hyperparameters["noise_variance"] == pytest.approx(0.05 ** 2)
    assert result.log_marginal_likelihood == pytest.approx(
        numpy_log_marginal_likelihood(kernel, x, noisy.reshape(1, -1), 0.05 ** 2, [0.5]), rel=1e-8)
    assert result.fit is None
    assert psnr(result.mean, clean) > psnr(noisy, clean)


# --- noise-free inpainting -------------------------------------------------------------------


def test_noise_free_inpainting_keeps_known_pixels_and_is_certain_there():
    image, known = smooth_image(16), random_mask(16, seed=5)
    given = {"amplitude": 0.3, "length_scale": 1.0}
    result = gp_restore(image * known, known, kernel="rbf", fit=False, mean="zero",
                        hyperparameters=given)
    np.testing.assert_array_equal(result.mean[known], image[known])
    assert "mean" not in result.hyperparameters
    assert result.hyperparameters["noise_variance"] == 0.0
    # sqrt(jitter) = 1e-3 bounds the std at an observed pixel; missing pixels are uncertain.
    assert result.std[known].max() < 2e-3
    assert np.median(result.std[~known]) > 10 * result.std[known].max()
    assert result.std.max() <= 0.3 + 1e-6
    assert psnr(result.mean, image) > psnr(image * known, image) + 5


def test_paper_rbf_hyperparameters_reproduce_the_paper_psnr(shared_data):
    """The paper's fitted RBF (output scale 0.0307, length 1.957 px, noise 0.0045, mean 0.474): 25.78 dB."""
    image = np.load(shared_data / "gp" / "cameraman64.npy")
    mask = np.load(shared_data / "gp" / "cameraman64_mask.npy")
    paper = {"amplitude": np.sqrt(0.0307), "length_scale": 1.957, "noise_variance": 0.0045,
             "mean": 0.474}
    result = gp_restore(image * mask, mask, kernel="rbf", fit=False, hyperparameters=paper)
    assert psnr(result.mean, image) == pytest.approx(25.78, abs=0.05)


# --- fitting ---------------------------------------------------------------------------------


def test_fit_recovers_the_length_scale_of_gp_samples():
    """Three channels drawn from one GP prior: the fit raises log p(y) and finds its parameters."""
    size, amplitude, length_scale, noise_variance = 20, 0.2, 3.0, 1e-3
    x = pixel_coordinates(size, size)
    rng = np.random.default_rng(6)

    def kernel(a, b, amp=amplitude, ls=length_scale):
        return rbf(a, b, amp, ls)

    cov = kernel(x, x) + noise_variance * np.eye(len(x))
    means = np.array([0.3, 0.5, 0.7])
    values = means[:, None] + rng.standard_normal((3, len(x))) @ np.linalg.cholesky(cov).T
    start = {"amplitude": 0.1, "length_scale": 1.5, "noise_variance": 0.01, "mean": values.mean(1)}
    prior = GPPrior("rbf", start, trainable=list(start))
    summary = fit_prior(prior, x, values)
    fitted = prior.values()

    assert summary.log_marginal_likelihood > summary.initial_log_marginal_likelihood + 100
    assert fitted["length_scale"] == pytest.approx(length_scale, rel=0.1)
    assert fitted["amplitude"] == pytest.approx(amplitude, rel=0.35)
    assert fitted["noise_variance"] == pytest.approx(noise_variance, rel=0.3)
    np.testing.assert_allclose(fitted["mean"], means, atol=0.25)
    # An independent evaluation of log p(y) at the fitted values, and the fit beats the truth.
    lml = numpy_log_marginal_likelihood(
        lambda a, b: kernel(a, b, fitted["amplitude"], fitted["length_scale"]), x, values,
        fitted["noise_variance"], fitted["mean"])
    assert summary.log_marginal_likelihood == pytest.approx(lml, rel=1e-8)
    truth = numpy_log_marginal_likelihood(kernel, x, values, noise_variance, means)
    assert summary.log_marginal_likelihood >= truth


def test_gp_restore_fit_improves_on_its_starting_point():
    image, known = smooth_image(12, seed=7), random_mask(12, seed=8)
    result = gp_restore(image * known, known, kernel="matern52", num_fit_steps=50)
    assert result.fit is not None and result.fit.iterations >= 1
    assert result.log_marginal_likelihood > result.fit.initial_log_marginal_likelihood
    assert set(result.hyperparameters) == {"amplitude", "length_scale", "noise_variance", "mean"}
    assert result.seconds > 0
    assert result.report()["kernel"] == "matern52"


# --- colour ----------------------------------------------------------------------------------


def test_colour_channels_are_independent_gps_with_shared_hyperparameters():
    image, known = smooth_image(8, channels=3, seed=9), random_mask(8, seed=10)
    given = {"amplitude": 0.3, "length_scale": 1.8, "noise_variance": 1e-3}
    colour = gp_restore(image * known[:, :, None], np.repeat(known[:, :, None], 3, axis=2),
                        kernel="rbf", fit=False,
                        hyperparameters={**given, "mean": [0.2, 0.5, 0.8]})
    assert colour.mean.shape == (8, 8, 3) and colour.std.shape == (8, 8)
    for c, channel_mean in enumerate([0.2, 0.5, 0.8]):
        gray = gp_restore(image[:, :, c] * known, known, kernel="rbf", fit=False,
                          hyperparameters={**given, "mean": channel_mean})
        np.testing.assert_allclose(colour.mean[:, :, c], gray.mean, atol=1e-6)
        np.testing.assert_allclose(colour.std, gray.std, atol=1e-7)


def test_colour_fit_maximises_the_summed_likelihood():
    image, known = smooth_image(10, channels=3, seed=11), random_mask(10, seed=12)
    result = gp_restore(image * known[:, :, None], known, kernel="rbf", num_fit_steps=60)
    fitted = result.hyperparameters
    assert len(fitted["mean"]) == 3
    x = pixel_coordinates(10, 10)[known.ravel()]
    lml = numpy_log_marginal_likelihood(
        lambda a, b: rbf(a, b, fitted["amplitude"], fitted["length_scale"]), x,
        image[known].T.astype(float), fitted["noise_variance"], fitted["mean"])
    assert result.log_marginal_likelihood == pytest.approx(lml, rel=1e-8)
    # A stationary point: nudging the length scale either way lowers log p(y).
    for factor in (0.9, 1.1):
        nudged = numpy_log_marginal_likelihood(
            lambda a, b: rbf(a, b, fitted["amplitude"], factor * fitted["length_scale"]), x,
            image[known].T.astype(float), fitted["noise_variance"], fitted["mean"])
        assert nudged < lml


# --- bad input -------------------------------------------------------------------------------


def test_oversize_image_raises_with_the_dense_solver():
    with pytest.raises(TfdipError, match="is 128x128; dense GP restoration handles at most 4096 "
                                         r"pixels \(64x64\); crop or resize"):
        gp_restore(np.zeros((128, 128)), np.ones((128, 128)), solver="dense")
    with pytest.raises(TfdipError, match="65x64"):
        gp_restore(np.zeros((65, 64, 3)), sigma=0.1, solver="dense")


@pytest.mark.parametrize("mask, message", [
    (np.ones((8, 9)), "mask is 8x9 but the observation is 8x8"),
    (np.zeros((8, 8)), "no known pixel"),
    (np.stack([np.ones((8, 8)), np.zeros((8, 8))], axis=2), "differs between channels"),
    (np.ones((8,)), "shape"),
])
def test_bad_mask_raises(mask, message):
    with pytest.raises(TfdipError, match=message):
        gp_restore(np.zeros((8, 8, 2)), mask)


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel": "cubic"}, "unknown kernel 'cubic'"),
    ({"mean": "linear"}, "mean must be one of"),
    ({"sigma": -0.1}, "sigma must be a number in"),
    ({"sigma": 0.1, "hyperparameters": {"noise_variance": 0.1}}, "either sigma or"),
    ({"hyperparameters": {"lengthscale": 2.0}}, "unknown hyper-parameter"),
    ({"hyperparameters": {"mean": [0.1, 0.2]}}, "2 values for 1 channels"),
    ({"hyperparameters": {"amplitude": float("nan")}}, "amplitude must be finite"),
    ({"kernel": tfpk.ExponentiatedQuadratic(np.float64(1), np.float64(1)),
      "hyperparameters": {"length_scale": 2.0}}, "length_scale only applies"),
    ({"kernel": tfpk.ExponentiatedQuadratic(1.0, 1.0)}, "works in float64"),
    ({"fit": False}, "nothing to restore"),
    ({"sigma": 0.0}, "nothing to restore"),
    ({"num_fit_steps": 0}, "num_fit_steps must be at least 1"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(TfdipError, match=message):
        gp_restore(smooth_image(8), **kwargs)


def test_non_finite_observation_raises():
    image = smooth_image(8)
    image[2, 3] = np.nan
    with pytest.raises(TfdipError, match="NaN or inf"):
        gp_restore(image, sigma=0.1)
