"""The grid GP solver against dense matrices, NumPy solves, closed forms and Monte Carlo with error bars."""
import importlib

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError
from tfdip.gp import (GPPrior, GridKernel, ObservedGridKernel, circulant_embedding,
                      conjugate_gradients, gp_posterior, gp_restore, grid_posterior,
                      pixel_coordinates, pixel_data, prior_samples, resolve_kernel, wiener_filter)
from tfdip.gp.grid import fast_fft_size, truncation_radii
from tfdip.gp.grid_fit import fit_masked, rademacher_probes, slq_log_det, torus_log_likelihood
from tfdip.gp.prior import JITTER
from tfdip.gp.sampling import exact_variances, std_relative_error

tfpk = tfp.math.psd_kernels


def rbf(amplitude=0.3, length_scale=2.0):
    return tfpk.ExponentiatedQuadratic(np.float64(amplitude), np.float64(length_scale))


def kernels():
    return {"rbf": rbf(), "matern52": tfpk.MaternFiveHalves(np.float64(0.5), np.float64(3.0)),
            "dip": resolve_kernel("dip")}


def dense_matrix(kernel, height, width):
    points = pixel_coordinates(height, width)
    return kernel.matrix(points, points).numpy()


def smooth_image(height, width, seed=0):
    """Low-pass filtered noise scaled to [0, 1]."""
    noise = np.random.default_rng(seed).standard_normal((height, width))
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
    image = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.exp(-(fy ** 2 + fx ** 2) * 80)))
    return (image - image.min()) / (image.max() - image.min())


def mask(height, width, seed=1, keep=0.5):
    return np.random.default_rng(seed).random((height, width)) < keep


# --- the operators -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rbf", "matern52", "dip"])
def test_grid_products_equal_dense_kernel_matrix_products(name):
    kernel, (height, width) = kernels()[name], (13, 17)
    grid = GridKernel(kernel, height, width)
    dense = dense_matrix(kernel, height, width)
    vectors = np.random.default_rng(2).standard_normal((3, height * width))
    expected = vectors @ dense
    np.testing.assert_allclose(grid.apply(tf.constant(vectors)).numpy(), expected,
                               rtol=0, atol=1e-10 * np.abs(expected).max())
    # The LinearOperator interface: column vectors, dense form.
    np.testing.assert_allclose(grid.matmul(tf.constant(vectors.T)).numpy(), expected.T,
                               atol=1e-10 * np.abs(expected).max())
    np.testing.assert_allclose(grid.to_dense().numpy(), dense, atol=1e-12)

    known, noise = mask(height, width), 0.01
    observed = ObservedGridKernel(grid, known, noise)
    index = np.flatnonzero(known.ravel())
    matrix = dense[np.ix_(index, index)] + noise * np.eye(index.size)
    rows = vectors[:, index]
    np.testing.assert_allclose(observed.apply(tf.constant(rows)).numpy(), rows @ matrix,
                               atol=1e-10 * np.abs(rows @ matrix).max())
    np.testing.assert_allclose(observed.diag_part().numpy(), np.diag(matrix), rtol=1e-12)


def test_float32_products_match_to_single_precision():
    kernel32 = tfpk.ExponentiatedQuadratic(np.float32(0.3), np.float32(2.0))
    grid = GridKernel(kernel32, 20, 24, dtype=tf.float32)
    vectors = np.random.default_rng(3).standard_normal((2, 480)).astype(np.float32)
    expected = vectors.astype(np.float64) @ dense_matrix(rbf(), 20, 24)
    result = grid.apply(tf.constant(vectors))
    assert result.dtype == tf.float32
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-5 * np.abs(expected).max())


def test_truncation_keeps_the_tail_below_tolerance_and_shrinks_the_fft():
    grid = GridKernel(rbf(length_scale=2.0), 200, 90)
    offsets = np.arange(-199, 200)[:, None] ** 2 + np.arange(-89, 90)[None, :] ** 2
    values = 0.09 * np.exp(-offsets / 8.0)      # the same kernel tabulated in NumPy

    def outside(radii):
        inside = values[199 - radii[0]: 200 + radii[0], 89 - radii[1]: 90 + radii[1]]
        return values.sum() - inside.sum()

    assert outside(grid.radii) <= 1e-12 * 0.09
    assert outside((grid.radii[0] - 1, grid.radii[1])) > 0.5e-12 * 0.09   # the smallest radius
    assert truncation_radii(values, 1e-12) == grid.radii
    assert grid.radii[0] < 20 and grid.fft_shape == (fast_fft_size(200 + grid.radii[0]),
                                                     fast_fft_size(90 + grid.radii[1]))
    assert (fast_fft_size(512), fast_fft_size(513), fast_fft_size(528)) == (512, 525, 540)


def test_float32_posterior_mean_matches_float64_to_the_cg_tolerance():
    image, known = smooth_image(24, 24, seed=17), mask(24, 24, seed=18)
    prior = GPPrior("rbf", {"amplitude": 0.2, "length_scale": 2.0, "noise_variance": 1e-3,
                            "mean": 0.5})
    data = pixel_data(image * known, known, max_pixels=None)
    double = grid_posterior(prior, data, tolerance=1e-8)
    single = grid_posterior(prior, data, tolerance=1e-4, dtype=tf.float32)
    assert single.cg_residual < 1e-4
    np.testing.assert_allclose(single.mean, double.mean, atol=1e-3)


def test_non_stationary_kernel_is_refused():
    linear = tfpk.Linear(bias_amplitude=np.float64(1.0), slope_amplitude=np.float64(1.0))
    with pytest.raises(TfdipError, match="not stationary"):
        GridKernel(linear, 16, 16)
    with pytest.raises(TfdipError, match="not stationary"):
        gp_restore(smooth_image(16, 16), mask(16, 16), kernel=linear, fit=False, solver="grid",
                   samples=0, hyperparameters={"noise_variance": 1e-3})


# --- conjugate gradients -----------------------------------------------------------------------


def test_cg_reaches_its_tolerance_per_column_and_reports_the_true_residual():
    grid = GridKernel(rbf(), 20, 20)
    known = mask(20, 20, seed=4)
    operator = ObservedGridKernel(grid, known, 1e-3)
    index = np.flatnonzero(known.ravel())
    matrix = dense_matrix(rbf(), 20, 20)[np.ix_(index, index)] + 1e-3 * np.eye(index.size)
    rng = np.random.default_rng(5)
    rhs = rng.standard_normal((4, index.size))
    rhs[1] = 0.0                        # solved at once, no 0/0
    rhs[2] *= 1e-6                      # a small column converges on its own scale
    result = conjugate_gradients(operator, rhs, tolerance=1e-6)
    solution = result.solution.numpy()
    assert np.all(np.isfinite(solution)) and result.all_converged
    np.testing.assert_array_equal(solution[1], 0.0)
    assert result.iterations[1] == 0 and result.iterations[0] > 10
    true = np.linalg.norm(rhs - solution @ matrix, axis=1) / np.maximum(
        np.linalg.norm(rhs, axis=1), 1e-300)
    true[1] = 0.0
    np.testing.assert_allclose(result.residual, true, rtol=1e-6, atol=1e-14)
    assert np.all(result.residual <= 1e-6 * 1.01)
    np.testing.assert_allclose(solution, np.linalg.solve(matrix, rhs.T).T,
                               atol=1e-3 * np.abs(solution).max())


def test_cg_stops_at_its_cap_and_says_so():
    operator = ObservedGridKernel(GridKernel(rbf(), 16, 16), mask(16, 16), 1e-4)
    result = conjugate_gradients(operator, np.ones((1, operator.num_known)), max_iterations=3)
    assert not result.all_converged and result.iterations[0] == 3 and result.residual[0] > 1e-4


def test_slq_log_det_is_within_its_hutchinson_error():
    known = mask(12, 12, seed=6)
    operator = ObservedGridKernel(GridKernel(rbf(), 12, 12), known, 0.01)
    matrix = operator.to_dense().numpy()
    values, vectors = np.linalg.eigh(matrix)
    log_matrix = (vectors * np.log(values)) @ vectors.T
    probes = rademacher_probes(64, known.sum())
    result = conjugate_gradients(operator, probes, tolerance=1e-10, lanczos=True)
    estimate = slq_log_det(result.tridiagonals, (probes ** 2).sum(1))
    # Var of the Rademacher Hutchinson estimator: 2 sum_{i != j} L_ij^2 / p.
    error = np.sqrt(2 * (np.sum(log_matrix ** 2) - np.sum(np.diag(log_matrix) ** 2)) / 64)
    assert abs(estimate - np.linalg.slogdet(matrix)[1]) < 4 * error
    # Each probe's quadrature z^T log(A) z is exact to the CG tolerance.
    single = slq_log_det(result.tridiagonals[:1], [(probes[0] ** 2).sum()])
    assert single == pytest.approx(probes[0] @ log_matrix @ probes[0], rel=1e-6)


# --- the posterior mean ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 48])
@pytest.mark.parametrize("kernel", ["rbf", "dip"])
def test_grid_posterior_mean_equals_the_dense_posterior(size, kernel):
    image, known = smooth_image(size, size, seed=size), mask(size, size, seed=size + 1)
    if kernel == "rbf":
        options = {"kernel": "rbf", "hyperparameters": {"amplitude": 0.17, "length_scale": 1.96,
                                                        "noise_variance": 0.0045, "mean": 0.47}}
    else:  # the paper's setting: noise-free, zero mean
        options = {"kernel": "dip", "mean": "zero"}
    dense_prior = GPPrior(resolve_kernel(options["kernel"]),
                          {"length_scale": 1.96, "amplitude": 0.17, "noise_variance": 0.0045,
                           "mean": 0.47} if kernel == "rbf" else {})
    data = pixel_data(image * known, known, max_pixels=None)
    expected, _ = gp_posterior(dense_prior, data.observed_points, data.observed_values,
                               data.points)
    grid = gp_restore(image * known, known, fit=False, solver="grid", samples=0,
                      tolerance=1e-9, **options)
    restored = np.clip(expected.reshape(size, size), 0, 1)
    np.testing.assert_allclose(grid.mean[~known], restored[~known], atol=1e-5)
    np.testing.assert_array_equal(grid.mean[known], (image * known)[known].astype(np.float32))
    assert grid.solver == "grid" and grid.cg_residual < 1e-9 and grid.std is None


def test_wiener_filter_equals_cg_and_the_dense_circulant_posterior():
    height, width, noise = 24, 20, 0.02
    kernel = rbf(length_scale=1.5)
    grid = GridKernel(kernel, height, width, periodic=True)
    image = smooth_image(height, width, seed=7)
    wiener = wiener_filter(grid, noise, tf.constant(image[None])).numpy()[0]
    operator = ObservedGridKernel(grid, np.ones((height, width), bool), noise)
    solved = conjugate_gradients(operator, image.reshape(1, -1), tolerance=1e-12)
    by_cg = grid.apply(solved.solution).numpy().reshape(height, width)
    np.testing.assert_allclose(wiener, by_cg, atol=1e-9)
    # The torus covariance built independently: k at offsets wrapped to their nearest image.
    points = pixel_coordinates(height, width)
    offsets = points[None, :, :] - points[:, None, :]
    wrapped = (offsets + [height // 2, width // 2]) % [height, width] - [height // 2, width // 2]
    circulant = kernel.apply(np.zeros((1, 1, 2)), wrapped, example_ndims=2).numpy()
    expected = circulant @ np.linalg.solve(circulant + noise * np.eye(height * width),
                                           image.ravel())
    np.testing.assert_allclose(wiener.ravel(), expected, atol=1e-9)
    # The closed-form path of gp_restore: mean and the constant torus variance.
    result = gp_restore(image, sigma=np.sqrt(noise - JITTER), kernel=kernel, fit=False,
                        solver="grid", periodic=True, mean="zero")
    posterior_covariance = circulant - circulant @ np.linalg.solve(
        circulant + noise * np.eye(height * width), circulant)
    np.testing.assert_allclose(result.std, np.sqrt(np.diag(posterior_covariance)).reshape(
        height, width), rtol=1e-6)   # GPResult.std is float32
    np.testing.assert_allclose(result.mean, np.clip(expected.reshape(height, width), 0, 1),
                               atol=1e-6)


# --- samples and the std map -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rbf", "dip"])
def test_prior_samples_have_the_kernel_covariance(name):
    kernel = rbf(length_scale=3.0) if name == "rbf" else resolve_kernel("dip")
    height, width, count = 9, 8, 4000
    grid = GridKernel(kernel, height, width)
    embedding = circulant_embedding(kernel, grid)
    fields = prior_samples(embedding, height, width, count, (3, 4)).numpy().reshape(count, -1)
    dense = dense_matrix(kernel, height, width)
    empirical = fields.T @ fields / count
    # Standard error of a second moment of a zero-mean Gaussian pair: sqrt((K_ii K_jj + K_ij^2) / S).
    variance = np.diag(dense)
    error = np.sqrt((variance[:, None] * variance[None, :] + dense ** 2) / count)
    assert np.max(np.abs(empirical - dense) / error) < 5.0
    assert np.mean(np.abs(empirical - dense) / error) < 1.0
    if name == "rbf":  # length 3 on a 9x8 grid: the first torus has negative eigenvalues
        assert embedding.growths >= 1 and "grown" in embedding.message()


def test_sampled_std_agrees_with_the_dense_std_within_its_monte_carlo_error():
    size, samples = 24, 200
    image, known = smooth_image(size, size, seed=8), mask(size, size, seed=9)
    values = {"amplitude": 0.17, "length_scale": 1.96, "noise_variance": 0.0045, "mean": 0.47}
    dense = gp_restore(image * known, known, fit=False, hyperparameters=values, solver="dense")
    grid = gp_restore(image * known, known, fit=False, hyperparameters=values, solver="grid",
                      samples=samples, tolerance=1e-8, seed=3)
    stated = std_relative_error(samples)
    assert grid.std_relative_error == pytest.approx(1 / np.sqrt(2 * 199))
    relative = grid.std / dense.std - 1
    # Per pixel the relative error has sd ~ stated; over all pixels its RMS must match it.
    assert 0.7 * stated < np.sqrt(np.mean(relative ** 2)) < 1.3 * stated
    assert np.max(np.abs(relative)) < 5 * stated
    assert grid.samples == samples and grid.seconds_std > 0


def test_exact_variances_from_unit_vector_solves_match_the_dense_std():
    size = 32
    image, known = smooth_image(size, size, seed=10), mask(size, size, seed=11)
    values = {"amplitude": 0.17, "length_scale": 1.96, "noise_variance": 0.0045, "mean": 0.47}
    prior = GPPrior("rbf", values)
    data = pixel_data(image * known, known, max_pixels=None)
    _, dense_std = gp_posterior(prior, data.observed_points, data.observed_values, data.points)
    operator = ObservedGridKernel(GridKernel(prior.kernel(), size, size), known,
                                  prior.noise_variance + JITTER)
    pixels = [0, 37, 500, 1023]

    def solve(rhs):
        return conjugate_gradients(operator, rhs, tolerance=1e-10).solution

    variances = exact_variances(operator, pixels, solve)
    np.testing.assert_allclose(np.sqrt(variances), dense_std[pixels], rtol=1e-5)


# --- hyper-parameters --------------------------------------------------------------------------


def test_torus_log_likelihood_equals_the_dense_circulant_density():
    height, width = 10, 12
    image = smooth_image(height, width, seed=12)
    prior = GPPrior("rbf", {"amplitude": 0.3, "length_scale": 1.4, "noise_variance": 0.01,
                            "mean": 0.4})
    data = pixel_data(image, None, 0.1, max_pixels=None)
    points = pixel_coordinates(height, width)
    offsets = points[None, :, :] - points[:, None, :]
    wrapped = (offsets + [height // 2, width // 2]) % [height, width] - [height // 2, width // 2]
    covariance = prior.kernel().apply(np.zeros((1, 1, 2)), wrapped, example_ndims=2).numpy()
    covariance += (0.01 + JITTER) * np.eye(height * width)
    expected = scipy.stats.multivariate_normal(np.full(height * width, 0.4),
                                               covariance).logpdf(image.ravel())
    assert float(torus_log_likelihood(prior, data)) == pytest.approx(expected, rel=1e-10)


def test_full_grid_fit_maximises_the_torus_likelihood():
    """Denoising with an unknown noise level: L-BFGS on the exact torus log-likelihood."""
    image = smooth_image(24, 24, seed=15)
    noisy = np.clip(image + 0.03 * np.random.default_rng(16).standard_normal(image.shape), 0, 1)
    result = gp_restore(noisy, kernel="rbf", solver="grid", samples=0, periodic=True)
    fitted = result.hyperparameters
    data = pixel_data(noisy, None, None, max_pixels=None)

    def torus(**changes):
        values = {**fitted, **changes, "mean": np.array(fitted["mean"])}
        return float(torus_log_likelihood(GPPrior("rbf", values), data))

    assert result.log_marginal_likelihood == pytest.approx(torus(), rel=1e-10)
    assert result.fit.log_marginal_likelihood > result.fit.initial_log_marginal_likelihood
    for name in ("amplitude", "length_scale", "noise_variance"):
        for factor in (0.9, 1.1):
            assert torus(**{name: factor * fitted[name]}) < torus()
    assert any("torus model" in note for note in result.notes)


def test_masked_fit_finds_the_dense_likelihood_optimum_of_gp_samples():
    """Two channels drawn from one RBF prior on a 32x32 grid, half the pixels kept."""
    size, amplitude, length_scale, noise = 32, 0.2, 2.5, 1e-3
    kernel = rbf(amplitude, length_scale)
    grid = GridKernel(kernel, size, size)
    fields = prior_samples(circulant_embedding(kernel, grid), size, size, 2, (5, 6)).numpy()
    rng = np.random.default_rng(13)
    image = np.moveaxis(fields, 0, -1) + [0.3, 0.6] + np.sqrt(noise) * rng.standard_normal(
        (size, size, 2))
    known = mask(size, size, seed=14)
    data = pixel_data(image * known[:, :, None], known, max_pixels=None)
    start = {"amplitude": 0.1, "length_scale": 1.5, "noise_variance": 0.01, "mean": [0.45, 0.45]}
    prior = GPPrior("rbf", start, trainable=list(start), noise_floor=1e-5)
    summary = fit_masked(prior, data)
    fitted = prior.values()
    assert summary.converged and summary.iterations < 20
    assert summary.log_marginal_likelihood > summary.initial_log_marginal_likelihood + 100
    assert fitted["length_scale"] == pytest.approx(length_scale, rel=0.15)
    assert fitted["amplitude"] == pytest.approx(amplitude, rel=0.35)
    assert fitted["noise_variance"] == pytest.approx(noise, rel=0.5)

    def dense_log_likelihood(amplitude, length_scale, noise_variance, mean):
        return float(GPPrior("rbf", {"amplitude": amplitude, "length_scale": length_scale,
                                     "noise_variance": noise_variance, "mean": np.array(mean)})
                     .log_marginal_likelihood(data.observed_points, data.observed_values))

    # Exact (dense) log p(y): the grid fit beats the truth and sits at a stationary point.
    best = dense_log_likelihood(**fitted)
    assert best > dense_log_likelihood(amplitude, length_scale, noise, [0.3, 0.6])
    for name in ("amplitude", "length_scale", "noise_variance"):
        for factor in (0.8, 1.25):
            assert dense_log_likelihood(**{**fitted, name: factor * fitted[name]}) < best
    # The profiled mean is the GLS estimate 1^T A^-1 y / 1^T A^-1 1 (checked against NumPy).
    index = np.flatnonzero(known.ravel())
    matrix = (dense_matrix(prior.kernel(), size, size)[np.ix_(index, index)]
              + (fitted["noise_variance"] + JITTER) * np.eye(index.size))
    weights = np.linalg.solve(matrix, np.ones(index.size))
    gls = data.observed_values @ weights / weights.sum()
    np.testing.assert_allclose(fitted["mean"], gls, atol=1e-3)


# --- gp_restore's solver options ---------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"solver": "dense", "samples": 8}, "only apply to the grid solver"),
    ({"solver": "dense", "periodic": True}, "only apply to the grid solver"),
    ({"solver": "sparse"}, "solver must be one of"),
    ({"solver": "grid", "samples": 1}, "at least 2 samples"),
    ({"solver": "grid", "samples": 0, "max_iterations": 2}, "CG did not reach"),
])
def test_bad_solver_options_raise(kwargs, message):
    image, known = smooth_image(16, 16), mask(16, 16)
    with pytest.raises(TfdipError, match=message):
        gp_restore(image * known, known, fit=False,
                   hyperparameters={"amplitude": 0.2, "length_scale": 2.0,
                                    "noise_variance": 1e-4}, **kwargs)


def test_auto_picks_the_grid_above_the_dense_limit_and_memory_is_checked(monkeypatch):
    grid_posterior = importlib.import_module("tfdip.gp.grid_posterior")  # the module, not the function
    image, known = smooth_image(72, 72), mask(72, 72)
    given = {"amplitude": 0.2, "length_scale": 2.0, "noise_variance": 1e-3}
    result = gp_restore(image * known, known, fit=False, hyperparameters=given, samples=0)
    assert result.solver == "grid" and result.cg_iterations > 0
    monkeypatch.setattr(grid_posterior, "available_memory_bytes", lambda: 2 ** 20)
    with pytest.raises(TfdipError, match="needs about .* GiB but 0.0 GiB is available"):
        gp_restore(image * known, known, fit=False, hyperparameters=given, samples=0)
