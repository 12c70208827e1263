"""The covariance algebra against independent computations: Gaussian quadrature for every
non-linearity, exact linear algebra through the networks' own resize / pooling layers, Monte Carlo
for convolutions and BatchNorm, the sanity values of reference.md section 5, positive-definiteness."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, special, stats

from tfdip.errors import TfdipError
from tfdip.kernels import (InputNoise, channel_average, kernel_of, maps, offset_grid,
                           sample_input)
from tfdip.kernels.algebra import Activation, Upsample
from tfdip.nets import ConvStackSpec, SkipSpec
from tfdip.nets.layers import Resize2D

# (k11, k12, k22): equal and unequal variances, positive, negative, zero and full correlation.
COVARIANCES = [(1.0, 0.3, 2.0), (0.5, -0.4, 0.7), (2.0, 2.0, 2.0), (1.0, 0.0, 1.0), (4.0, 3.9, 4.0),
               (0.05, 0.01, 0.08)]


def gauss_hermite_expectation(f, k11, k12, k22, nodes=240):
    """E[f(u1) f(u2)] for a zero-mean Gaussian pair by 2-D Gauss-Hermite quadrature."""
    x, w = hermegauss(nodes)
    w = w / np.sqrt(2.0 * np.pi)
    eigenvalues, vectors = np.linalg.eigh(np.array([[k11, k12], [k12, k22]]))
    a = vectors * np.sqrt(np.maximum(eigenvalues, 0.0))
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    return np.sum(np.outer(w, w) * f(a[0, 0] * z1 + a[0, 1] * z2) * f(a[1, 0] * z1 + a[1, 1] * z2))


def leaky_relu_expectation(slope, k11, k12, k22):
    """E[phi(u1) phi(u2)] for phi = LeakyReLU(slope), integrating u1 numerically and u2 | u1 in
    closed form (u2 | u1 ~ N(mu, s^2): E relu = mu Phi(mu/s) + s phi(mu/s)); exact to ~1e-10
    where 2-D Gauss-Hermite converges slowly at the kink."""
    if np.isclose(k12 * k12, k11 * k22):  # u2 = (k12 / k11) u1
        c = k12 / k11
        f = lambda u: np.maximum(u, slope * u) * np.maximum(c * u, slope * c * u)
        return sum(integrate.quad(lambda u: f(u) * stats.norm.pdf(u, scale=np.sqrt(k11)), a, b)[0]
                   for a, b in ((-np.inf, 0.0), (0.0, np.inf)))
    s = np.sqrt(k22 - k12 * k12 / k11)

    def integrand(u1):
        mu = k12 / k11 * u1
        relu_mean = mu * stats.norm.cdf(mu / s) + s * stats.norm.pdf(mu / s)
        conditional = slope * mu + (1.0 - slope) * relu_mean
        return max(u1, slope * u1) * conditional * stats.norm.pdf(u1, scale=np.sqrt(k11))

    return sum(integrate.quad(integrand, a, b, epsabs=1e-12)[0]
               for a, b in ((-np.inf, 0.0), (0.0, np.inf)))


def evaluate(fn, k):
    return float(fn(*(tf.constant(v, tf.float64) for v in k)))


@pytest.mark.parametrize("k", COVARIANCES)
@pytest.mark.parametrize("slope", [0.0, 0.2, 0.5])
def test_relu_and_leaky_relu_maps_match_integration(k, slope):
    expected = leaky_relu_expectation(slope, *k)
    got = evaluate(lambda *a: maps.leaky_relu(*a, negative_slope=slope), k)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-7)
    if slope == 0.0:
        assert evaluate(maps.relu, k) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_leaky_relu_map_matches_large_monte_carlo():
    rng = np.random.default_rng(0)
    k11, k12, k22 = 1.0, 0.3, 2.0
    u = rng.multivariate_normal([0, 0], [[k11, k12], [k12, k22]], size=2_000_000)
    phi = np.maximum(u, 0.2 * u)
    products = phi[:, 0] * phi[:, 1]
    expected, error = products.mean(), products.std() / np.sqrt(len(products))
    assert evaluate(lambda *a: maps.leaky_relu(*a, negative_slope=0.2), (k11, k12, k22)) == \
        pytest.approx(expected, abs=4 * error)


@pytest.mark.parametrize("k", COVARIANCES)
def test_erf_map_matches_quadrature(k):
    expected = gauss_hermite_expectation(special.erf, *k)
    assert evaluate(maps.erf, k) == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("k", COVARIANCES)
def test_sigmoid_map_matches_quadrature(k):
    expected = gauss_hermite_expectation(lambda u: 1.0 / (1.0 + np.exp(-u)), *k)
    assert evaluate(maps.sigmoid, k) - 0.25 == pytest.approx(expected - 0.25, rel=2e-3, abs=1e-6)


def test_erf_large_variance_form_is_the_limit_of_the_exact_form():
    k = (1.0, 0.37, 1.5)
    for scale, tolerance in ((1e2, 2e-2), (1e4, 2e-4)):
        exact = evaluate(maps.erf, tuple(scale * v for v in k))
        assert exact == pytest.approx(evaluate(maps.erf_large_variance, k), abs=tolerance)


def test_leaky_relu_with_slope_one_is_the_identity():
    assert evaluate(lambda *a: maps.leaky_relu(*a, negative_slope=1.0), (1.0, 0.3, 2.0)) == \
        pytest.approx(0.3)


def white_noise_two_layer(activation):
    """conv-act-conv on unit white noise, sigma_w = 1, no bias (reference.md section 5)."""
    spec = ConvStackSpec(depth=1, activation=activation, sigma_w=1.0, sigma_b=0.0)
    return kernel_of(spec.build(), InputNoise(1.0, 0.0))


def test_sanity_values_erf():
    values = white_noise_two_layer("erf")(offset_grid(3, tf.float64)).numpy()
    assert values[3, 3] == pytest.approx(2.0 / np.pi * np.arcsin(2.0 / 3.0), abs=1e-9)
    assert values[3, 3] == pytest.approx(0.464559, abs=1e-6)
    off_diagonal = np.delete(values.ravel(), values.size // 2)
    np.testing.assert_allclose(off_diagonal, 0.0, atol=1e-12)


def test_sanity_values_relu():
    values = white_noise_two_layer("relu")(offset_grid(3, tf.float64)).numpy()
    assert values[3, 3] == pytest.approx(0.5, abs=1e-9)
    off_diagonal = np.delete(values.ravel(), values.size // 2)
    np.testing.assert_allclose(off_diagonal, 1.0 / (2.0 * np.pi), atol=1e-12)
    assert off_diagonal[0] == pytest.approx(0.159155, abs=1e-6)


def test_fluent_algebra_gives_the_same_two_layer_kernel():
    offsets = offset_grid(2, tf.float64)
    fluent = InputNoise(variance=1.0).conv().relu().conv()
    np.testing.assert_allclose(fluent(offsets), white_noise_two_layer("relu")(offsets), atol=1e-12)


def stationary_average(covariance_matrix, size, radius, start, stop):
    """Average of Cov[y(t), y(t + r)] over rows / columns t in [start, stop) for r in [-R, R]^2."""
    cov = covariance_matrix.reshape(size, size, size, size)
    out = np.zeros((2 * radius + 1, 2 * radius + 1))
    for i, dr in enumerate(range(-radius, radius + 1)):
        for j, dc in enumerate(range(-radius, radius + 1)):
            out[i, j] = np.mean([cov[a, b, a + dr, b + dc]
                                 for a in range(start, stop) for b in range(start, stop)])
    return out


def input_covariance_matrix(size, variance, mean, smoothing):
    """NumPy: v exp(-|r|^2 / (4 s^2)) + m^2 between the pixels of a size x size grid."""
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    points = np.stack([rows.ravel(), cols.ravel()], axis=-1).astype(float)
    squared = np.sum((points[:, None] - points[None]) ** 2, axis=-1)
    return variance * np.exp(-squared / (4.0 * smoothing ** 2)) + mean ** 2


def linear_map_matrix(layer, size):
    """The matrix of a linear image layer, from its responses to the size^2 basis images."""
    basis = np.eye(size * size, dtype=np.float64).reshape(size * size, size, size, 1)
    responses = layer(tf.constant(basis)).numpy()
    return responses.reshape(size * size, -1).T


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_upsampling_is_the_phase_average_of_the_exact_covariance(method):
    size, radius, v, m, s = 12, 3, 1.3, 0.4, 0.9
    up = linear_map_matrix(Resize2D(2, method), size)
    exact = up @ input_covariance_matrix(size, v, m, s) @ up.T
    # Interior rows / columns 4 .. 17 (an even count: every phase equally often), away from the
    # clamped border.
    expected = stationary_average(exact, 2 * size, radius, 4, 18)
    got = Upsample(InputNoise(v, m, s), 2, method)(offset_grid(radius, tf.float64)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_average_pooling_matches_the_exact_covariance():
    size, radius, v, m, s = 24, 2, 0.7, 0.2, 1.4
    pool = linear_map_matrix(keras.layers.AveragePooling2D(2, dtype="float64"), size)
    exact = pool @ input_covariance_matrix(size, v, m, s) @ pool.T
    expected = stationary_average(exact, size // 2, radius, 3, 9)
    got = InputNoise(v, m, s).avg_pool(2)(offset_grid(radius, tf.float64)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_stride_two_subsampling_reads_the_covariance_at_twice_the_offset():
    offsets = offset_grid(3, tf.float64)
    cov = InputNoise(1.0, 0.1, 1.7).erf()
    np.testing.assert_allclose(cov.downsample(2)(offsets), cov(2.0 * offsets), atol=1e-12)


def test_band_limited_upsampling_reads_the_covariance_at_the_scaled_offset():
    offsets = offset_grid(3, tf.float64)
    cov = InputNoise(1.0, 0.0, 2.0).relu()
    np.testing.assert_allclose(Upsample(cov, 2, "band_limited")(offsets), cov(offsets / 2.0),
                               atol=1e-12)


def empirical_products(fields, radius):
    """Per replicate, mean over channels and positions of y(t) y(t + r): [replicates, 2R+1, 2R+1]."""
    h, w = fields.shape[1:3]
    out = np.zeros((fields.shape[0], 2 * radius + 1, 2 * radius + 1))
    for i, dr in enumerate(range(-radius, radius + 1)):
        for j, dc in enumerate(range(-radius, radius + 1)):
            a = fields[:, max(0, -dr): h - max(0, dr), max(0, -dc): w - max(0, dc)]
            b = fields[:, max(0, dr): h + min(0, dr), max(0, dc): w + min(0, dc)]
            out[:, i, j] = np.mean(a * b, axis=(1, 2, 3))
    return out


def smooth_fields(rng, shape, variance, mean, smoothing):
    return sample_input(shape, smoothing, variance, mean, rng).astype(np.float64)


def random_conv(x, channels_out, size, sigma_w, sigma_b, rng):
    """A VALID convolution with weights N(0, sigma_w^2 / fan_in) and biases N(0, sigma_b^2)."""
    fan_in = x.shape[-1] * size * size
    kernel = rng.normal(0.0, sigma_w / np.sqrt(fan_in), (size, size, x.shape[-1], channels_out))
    bias = rng.normal(0.0, sigma_b, channels_out)
    return tf.nn.conv2d(x, kernel, 1, "VALID").numpy() + bias


def test_convolution_of_any_filter_size_keeps_the_shape_of_a_stationary_covariance():
    rng = np.random.default_rng(1)
    radius, sigma_w, sigma_b = 3, 1.3, 0.5
    inputs = dict(variance=1.0, mean=0.3, smoothing=1.0)
    replicates = []
    for _ in range(12):
        x = smooth_fields(rng, (1, 40, 40, 64), **inputs)
        replicates.append(random_conv(x, 128, 5, sigma_w, sigma_b, rng))
    products = empirical_products(np.concatenate(replicates), radius)
    mean, error = products.mean(0), products.std(0, ddof=1) / np.sqrt(len(products))
    expected = InputNoise(**inputs).conv(sigma_w, sigma_b)(offset_grid(radius, tf.float64)).numpy()
    assert np.all(np.abs(mean - expected) < 4 * error + 1e-12)


def test_concatenation_then_conv_is_the_channel_weighted_average():
    rng = np.random.default_rng(2)
    radius, sigma_w, sigma_b = 2, 0.9, 0.3
    a, b = dict(variance=1.0, mean=0.0, smoothing=0.6), dict(variance=2.0, mean=0.5, smoothing=2.0)
    replicates = []
    for _ in range(12):
        x = np.concatenate([smooth_fields(rng, (1, 36, 36, 16), **a),
                            smooth_fields(rng, (1, 36, 36, 48), **b)], axis=-1)
        replicates.append(random_conv(x, 128, 3, sigma_w, sigma_b, rng))
    products = empirical_products(np.concatenate(replicates), radius)
    mean, error = products.mean(0), products.std(0, ddof=1) / np.sqrt(len(products))
    cov = channel_average([InputNoise(**a), InputNoise(**b)], [16, 48]).conv(sigma_w, sigma_b)
    expected = cov(offset_grid(radius, tf.float64)).numpy()
    assert np.all(np.abs(mean - expected) < 4 * error + 1e-12)


def test_batch_norm_over_one_image_removes_the_constant_part_and_normalises():
    rng = np.random.default_rng(3)
    radius, size, epsilon = 3, 96, 1e-3
    v, m, s, constant_std = 0.5, 0.7, 1.5, 0.8
    x = smooth_fields(rng, (8, size, size, 32), v, m, s)
    x = x + rng.normal(0.0, constant_std, (8, 1, 1, 32))  # a random constant per image and channel
    mean = x.mean(axis=(1, 2), keepdims=True)
    y = (x - mean) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + epsilon)
    products = empirical_products(np.moveaxis(y, -1, 0).reshape(-1, size, size, 1), radius)
    estimate, error = products.mean(0), products.std(0, ddof=1) / np.sqrt(len(products))
    cov = InputNoise(v, m, s).bias(constant_std).batch_norm(epsilon=epsilon)
    expected = cov(offset_grid(radius, tf.float64)).numpy()
    np.testing.assert_allclose(expected[radius], v / (v + epsilon) * np.exp(
        -np.arange(-radius, radius + 1) ** 2 / (4 * s * s)), rtol=1e-12)
    # Subtracting the image mean also lowers every entry by about sum_r rho(r) / pixels.
    finite_image_bias = 4 * np.pi * s * s / size ** 2
    assert np.all(np.abs(estimate - expected) < 4 * error + finite_image_bias)


def test_batch_norm_on_a_small_image_is_closer_with_the_image_mean():
    rng = np.random.default_rng(7)
    radius, size, epsilon, v, m, s = 3, 24, 1e-3, 0.5, 0.7, 1.5
    x = smooth_fields(rng, (8, size, size, 32), v, m, s)
    y = (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + epsilon)
    estimate = empirical_products(np.moveaxis(y, -1, 0).reshape(-1, size, size, 1), radius).mean(0)
    offsets = offset_grid(radius, tf.float64)
    infinite = InputNoise(v, m, s).batch_norm(epsilon=epsilon)(offsets).numpy()
    finite = InputNoise(v, m, s).batch_norm(epsilon=epsilon, image_shape=(size, size))(offsets).numpy()
    assert np.linalg.norm(estimate - finite) < 0.6 * np.linalg.norm(estimate - infinite)
    # the image mean is the covariance averaged over pairs of pixels of the image
    field = InputNoise(v, m, s)
    points = grid_points(size)
    pair_mean = kernel_matrix(field, points).mean()
    variance = v + m * m
    assert finite[radius, radius] == pytest.approx((variance - pair_mean) / (variance - pair_mean + epsilon))


def test_depth_and_input_smoothing_lengthen_the_correlation():
    offset = tf.constant([0.0, 3.0], tf.float64)
    correlations = [kernel_of(ConvStackSpec(depth=d).build(), InputNoise(1.0, 0.0, 1.0))
                    .correlation(offset).numpy() for d in (1, 2, 3, 4)]
    assert np.all(np.diff(correlations) > 0)
    by_smoothing = [kernel_of(ConvStackSpec(depth=2).build(), InputNoise(1.0, 0.0, s))
                    .correlation(offset).numpy() for s in (0.5, 1, 2, 4)]
    assert np.all(np.diff(by_smoothing) > 0)


ARCHITECTURES = {
    "relu_stack": (ConvStackSpec(depth=3), dict(input=InputNoise.dip(1.5))),
    "erf_stack_white": (ConvStackSpec(depth=2, activation="erf", sigma_b=0.2), {}),
    "leaky_stack_sigmoid": (ConvStackSpec(depth=2, activation="leaky_relu", need_sigmoid=True),
                            dict(input=InputNoise.dip(0.7))),
    "skip_bilinear": (SkipSpec(channels_down=(16, 16), channels_up=(16, 16), channels_skip=4,
                               init="gaussian", output_channels=1), {}),
    "skip_nearest_avg": (SkipSpec(channels_down=(16, 16, 16), channels_up=(16, 16, 16),
                                  channels_skip=(0, 4, 4), upsample="nearest", downsample="avg",
                                  init="gaussian", output_channels=1), dict(input=InputNoise.dip(1.0))),
    "skip_default_torch": (SkipSpec(init="torch"), {}),
    "skip_finite_image": (SkipSpec(channels_down=(16, 16), channels_up=(16, 16), channels_skip=4,
                                   init="gaussian", output_channels=1), dict(image_size=16)),
    "skip_erf_keras": (SkipSpec(channels_down=(16, 16), channels_up=(16, 16), channels_skip=4,
                                activation="erf",
                                output_channels=1), {}),
}


def grid_points(size):
    rows, cols = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float),
                             indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=-1)


def kernel_matrix(cov, points):
    return cov(tf.constant(points[None, :, :] - points[:, None, :])).numpy()


def architecture_kernel(name):
    spec, kwargs = ARCHITECTURES[name]
    return kernel_of(spec.build(), **kwargs)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_kernel_matrices_are_positive_definite(name):
    cov = architecture_kernel(name)
    rng = np.random.default_rng(4)
    for points in (grid_points(16), rng.uniform(0.0, 12.0, (120, 2))):  # lattice and real coordinates
        matrix = kernel_matrix(cov, points)
        np.testing.assert_allclose(matrix, matrix.T, rtol=1e-12, atol=1e-14)
        eigenvalues = np.linalg.eigvalsh(matrix)
        assert eigenvalues.min() > -1e-10 * eigenvalues.max()
        np.linalg.cholesky(matrix + 1e-9 * eigenvalues.max() * np.eye(len(points)))


def test_real_offsets_are_exact_for_pointwise_architectures_and_interpolate_lattice_ones():
    offsets = tf.constant([[0.25, 1.5], [2.0, -0.75]], tf.float64)
    stack = kernel_of(ConvStackSpec(depth=2).build(), InputNoise(1.0, 0.0, 1.2))
    squared = np.sum(offsets.numpy() ** 2, axis=-1)
    first = np.exp(-squared / (4 * 1.2 ** 2))  # the first conv's covariance, then two ReLU maps
    relu = lambda k12, k0: evaluate(maps.relu, (k0, k12, k0))
    for i in range(2):
        k, k0 = first[i], 1.0
        for _ in range(2):
            k, k0 = relu(k, k0), relu(k0, k0)
        assert stack(offsets).numpy()[i] == pytest.approx(k, rel=1e-10)
    up = Upsample(InputNoise(1.0, 0.0, 0.0), 2, "nearest")
    corners = up(tf.constant([[0.0, 1.0], [0.0, 2.0]], tf.float64)).numpy()
    middle = up(tf.constant([0.0, 1.5], tf.float64)).numpy()
    assert middle == pytest.approx(corners.mean())


def test_float32_and_float64_agree():
    cov = architecture_kernel("skip_bilinear")
    np.testing.assert_allclose(cov(offset_grid(4, tf.float32)).numpy(),
                               cov(offset_grid(4, tf.float64)).numpy(), rtol=2e-5, atol=1e-7)
    assert cov(offset_grid(1, tf.float32)).dtype == tf.float32


def test_tabulated_and_direct_evaluations_agree():
    cov = architecture_kernel("skip_nearest_avg")
    points = grid_points(10)
    offsets = tf.constant(points[None] - points[:, None])
    np.testing.assert_allclose(cov(offsets), cov.moments(offsets, 2).value, rtol=1e-12)


def test_bad_input_raises_tfdip_errors():
    with pytest.raises(TfdipError, match="'level0_down1_pool' .MaxPooling2D."):
        kernel_of(SkipSpec(downsample="max", init="gaussian"))
    with pytest.raises(TfdipError, match="init='gaussian'"):
        kernel_of(SkipSpec(), sigma_w=2.0)
    with pytest.raises(TfdipError, match="erf of a randomly scaled field"):
        kernel_of(SkipSpec(activation="erf", init="torch"))
    with pytest.raises(TfdipError, match="15 x 15 pixels here, not a multiple of its stride 2"):
        kernel_of(SkipSpec(channels_down=(8, 8), channels_up=(8, 8), channels_skip=2), image_size=30)
    with pytest.raises(TfdipError, match="unknown activation"):
        Activation(InputNoise(), "tanh")
    with pytest.raises(TfdipError, match=r"\[..., 2\]"):
        InputNoise()(tf.zeros([4, 3]))
    with pytest.raises(TfdipError, match="up-sampling"):
        Upsample(InputNoise(), 2, "bicubic")


def test_plot_kernel_writes_a_figure(tmp_path):
    import matplotlib.image

    from tfdip.kernels import plot_kernel

    path = plot_kernel(ConvStackSpec(depth=2), tmp_path / "nested" / "kernel.png", max_offset=4,
                       input_smoothing=1.0)
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05  # something was drawn
    with pytest.raises(TfdipError, match="suffixes"):
        plot_kernel(ConvStackSpec(), tmp_path / "kernel.xyz")
    with pytest.raises(TfdipError, match="max_offset"):
        plot_kernel(ConvStackSpec(), tmp_path / "kernel.png", max_offset=0)
