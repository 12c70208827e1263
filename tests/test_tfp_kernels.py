"""The TFP kernels against NumPy evaluations of the same formulas and values recorded from the former
spec-based kernel recursion (never against the kernel_of they call), and as TFP kernels: composite
tensors, parameter bijectors, batch shapes, dtypes, gradients for marginal-likelihood fitting,
Gaussian-process use. Monte Carlo of DIPKernel: tests/test_kernel_network.py."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError
import tfdip.kernels.psd
from tfdip.kernels import (ArcCosineKernel, ArcSineKernel, DIPKernel, InputNoiseKernel,
                           baseline_kernel)
from tfdip.nets import ConvStackSpec, SkipSpec

from conftest import TEST_DATA

SKIP = SkipSpec(channels_down=(16, 16), channels_up=(16, 16), channels_skip=4, init="gaussian",
                output_channels=1)


def numpy_input_noise(r, variance, mean, smoothing):
    if smoothing > 0:
        rho = np.exp(-np.sum(r ** 2, axis=-1) / (4.0 * smoothing ** 2))
    else:
        rho = np.prod(np.maximum(0.0, 1.0 - np.abs(r)), axis=-1)
    return variance * rho + mean ** 2


def numpy_leaky_relu(k11, k12, k22, slope):
    norm = np.sqrt(k11 * k22)
    t = np.arccos(np.clip(k12 / norm, -1.0, 1.0))
    return slope * k12 + (1 - slope) ** 2 * norm / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))


def numpy_erf(k11, k12, k22):
    return 2 / np.pi * np.arcsin(2 * k12 / np.sqrt((1 + 2 * k11) * (1 + 2 * k22)))


def numpy_layered(x1, x2, phi, depth, sigma_w, sigma_b, amplitude, **noise):
    """amplitude^2 K_depth with K_0 = b^2 + w^2 k_noise, K_l = b^2 + w^2 phi(K_{l-1})."""
    k12 = numpy_input_noise(x2[None, :, :] - x1[:, None, :], **noise)
    k11 = np.full((len(x1), 1), numpy_input_noise(np.zeros(2), **noise))
    k22 = np.full((1, len(x2)), numpy_input_noise(np.zeros(2), **noise))
    affine = lambda k: sigma_b ** 2 + sigma_w ** 2 * k
    k11, k12, k22 = affine(k11), affine(k12), affine(k22)
    for _ in range(depth):
        k11, k12, k22 = affine(phi(k11, k11, k11)), affine(phi(k11, k12, k22)), affine(phi(k22, k22, k22))
    return amplitude ** 2 * k12


def points(n, seed=0, high=10.0):
    return np.random.default_rng(seed).uniform(0.0, high, (n, 2))


def grid(size):
    rows, cols = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float),
                             indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=-1)


NOISE = dict(variance=1.3, mean=0.2, smoothing=1.1)


@pytest.mark.parametrize("smoothing", [0.0, 1.1])
def test_input_noise_kernel_matches_numpy(smoothing):
    x1, x2 = points(20, 1), np.concatenate([points(10, 2), grid(3)])
    noise = dict(NOISE, smoothing=smoothing)
    expected = numpy_input_noise(x2[None] - x1[:, None], **noise)
    np.testing.assert_allclose(InputNoiseKernel(**noise).matrix(x1, x2), expected, rtol=1e-12)


def test_arc_cosine_kernel_matrix_matches_numpy():
    x1, x2 = points(25, 3), points(15, 4)
    kernel = ArcCosineKernel(InputNoiseKernel(**NOISE), depth=3, negative_slope=0.2, sigma_w=1.4,
                             sigma_b=0.3, amplitude=0.7)
    expected = numpy_layered(x1, x2, lambda a, b, c: numpy_leaky_relu(a, b, c, 0.2), 3, 1.4, 0.3,
                             0.7, **NOISE)
    np.testing.assert_allclose(kernel.matrix(x1, x2), expected, rtol=1e-10)


@pytest.mark.parametrize("large_variance", [False, True])
def test_arc_sine_kernel_matrix_matches_numpy(large_variance):
    x1, x2 = points(25, 5), points(15, 6)
    phi = (lambda a, b, c: 2 / np.pi * np.arcsin(b / np.sqrt(a * c))) if large_variance else numpy_erf
    kernel = ArcSineKernel(InputNoiseKernel(**NOISE), depth=2, sigma_w=1.2, sigma_b=0.4,
                           amplitude=1.5, large_variance=large_variance)
    expected = numpy_layered(x1, x2, phi, 2, 1.2, 0.4, 1.5, **NOISE)
    np.testing.assert_allclose(kernel.matrix(x1, x2), expected, rtol=1e-9, atol=1e-12)


def test_default_arc_cosine_kernel_gives_the_two_layer_sanity_values():
    x = grid(3)
    matrix = ArcCosineKernel().matrix(x, x).numpy()
    np.testing.assert_allclose(np.diag(matrix), 0.5, atol=1e-9)
    np.testing.assert_allclose(matrix[~np.eye(9, dtype=bool)], 1 / (2 * np.pi), atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "erf"])
def test_dip_kernel_of_a_conv_stack_matches_numpy(activation):
    """The DIP kernel of a conv stack read from its Keras layers against the NumPy recursion."""
    spec = ConvStackSpec(depth=2, activation=activation, negative_slope=0.3, sigma_w=1.3,
                         sigma_b=0.2)
    noise = dict(input_variance=0.8, input_mean=0.4, input_smoothing=1.5)
    dip = DIPKernel(spec, amplitude=0.9, **noise)
    slope = 0.3 if activation == "leaky_relu" else 0.0
    phi = numpy_erf if activation == "erf" else (lambda a, b, c: numpy_leaky_relu(a, b, c, slope))
    for x1, x2 in ((points(20, 7), points(12, 8)), (grid(5), grid(5))):
        expected = numpy_layered(x1, x2, phi, 2, 1.3, 0.2, 0.9, variance=0.8, mean=0.4,
                                 smoothing=1.5)
        np.testing.assert_allclose(dip.matrix(x1, x2), expected, rtol=1e-9)


@pytest.fixture(scope="module")
def recorded():
    """Kernel values recorded from the former spec-based recursion (see test_kernel_network.py)."""
    data = np.load(TEST_DATA / "kernels_of_nets.npz")
    lattice = {tuple(r): i for i, r in enumerate(data["offsets"])}
    return lambda name, offsets: data[name][[lattice[tuple(r)] for r in offsets.reshape(-1, 2)]
                                            ].reshape(offsets.shape[:-1])


def test_dip_kernel_matrix_matches_the_recorded_covariance(recorded):
    x1, x2 = grid(4), grid(4) + 1.0
    expected = recorded("skip_bilinear_gaussian", x2[None] - x1[:, None])
    np.testing.assert_allclose(DIPKernel(SKIP, amplitude=2.0).matrix(x1, x2), 4.0 * expected,
                               rtol=1e-10)
    np.testing.assert_allclose(DIPKernel(SKIP).apply(x1, x2), np.diag(expected), rtol=1e-10)


def test_kernels_work_inside_tf_function():
    x = tf.constant(grid(4))
    matrix = tf.function(lambda kernel, points: kernel.matrix(points, points))
    for kernel in (DIPKernel(SKIP, amplitude=tf.Variable(1.5, dtype=tf.float64)),
                   ArcCosineKernel(InputNoiseKernel(smoothing=np.float64(1.0)), depth=2)):
        np.testing.assert_allclose(matrix(kernel, x), kernel.matrix(x, x), rtol=1e-12)


def test_dip_kernel_passes_the_image_size_to_batch_norm(recorded):
    x = grid(4)
    finite = DIPKernel(SKIP, image_size=16).matrix(x, x).numpy()
    np.testing.assert_allclose(finite, recorded("skip_finite_image", x[None] - x[:, None]),
                               rtol=1e-10)
    assert not np.allclose(finite, DIPKernel(SKIP).matrix(x, x), rtol=1e-3)


def test_dip_kernel_is_a_composite_tensor_that_builds_its_covariance_once(monkeypatch):
    """Variables flatten into the kernel's components; a tf.function traces once for new values;
    evaluating the kernel never rebuilds the covariance graph (only construction walks the net)."""
    amplitude = tf.Variable(1.5, dtype=tf.float64)
    smoothing = tf.Variable(0.5, dtype=tf.float64)
    kernel = DIPKernel(ConvStackSpec(depth=2), amplitude=amplitude, input_smoothing=smoothing)
    components = tf.nest.flatten(kernel, expand_composites=True)
    assert any(c is amplitude for c in components) and any(c is smoothing for c in components)
    x = tf.constant(grid(3))
    traces = []

    @tf.function
    def matrix(k):
        traces.append(1)
        return k.matrix(x, x)

    first = matrix(kernel).numpy()
    walks = []
    monkeypatch.setattr(tfdip.kernels.psd, "kernel_of",
                        lambda *a, **k: walks.append(1) or pytest.fail("rebuilt"))
    amplitude.assign(3.0)
    np.testing.assert_allclose(kernel.matrix(x, x), 4.0 * first, rtol=1e-12)
    np.testing.assert_allclose(matrix(kernel), 4.0 * first, rtol=1e-12)
    assert len(traces) == 1 and not walks
    smoothing.assign(2.0)
    assert not np.allclose(kernel.matrix(x, x), 4.0 * first, rtol=1e-3)


def test_parameters_have_the_bijectors_of_their_domains():
    """Softplus for the positive parameters with non-zero defaults; identity where the default is 0
    (the kernels depend on ``sigma_b^2``, ``|smoothing|``; the slope and the mean are any real)."""
    properties = DIPKernel.parameter_properties()
    for name in ("amplitude", "input_variance", "sigma_w"):
        bijector = properties[name].default_constraining_bijector_fn()
        assert isinstance(bijector, tfp.bijectors.Softplus), name
    for name in ("input_smoothing", "sigma_b", "input_mean"):
        bijector = properties[name].default_constraining_bijector_fn()
        assert isinstance(bijector, tfp.bijectors.Identity), name
    assert isinstance(ArcCosineKernel.parameter_properties()["negative_slope"]
                      .default_constraining_bijector_fn(), tfp.bijectors.Identity)
    x = points(8, 14, high=5.0)
    spec = ConvStackSpec(depth=2, activation="leaky_relu")
    np.testing.assert_allclose(DIPKernel(spec, sigma_b=-0.3, input_smoothing=-1.2).matrix(x, x),
                               DIPKernel(spec, sigma_b=0.3, input_smoothing=1.2).matrix(x, x),
                               rtol=1e-12)


def test_batch_shapes_follow_the_parameters():
    x = points(6, 10)
    kernel = ArcCosineKernel(sigma_w=np.array([1.0, 2.0, 3.0]), amplitude=np.array([[1.0], [2.0]]))
    assert kernel.batch_shape == (2, 3)
    matrix = kernel.matrix(x, x)
    assert matrix.shape == (2, 3, 6, 6)
    single = ArcCosineKernel(sigma_w=2.0, amplitude=2.0).matrix(x, x)
    np.testing.assert_allclose(matrix[1, 1], single, rtol=1e-12)
    np.testing.assert_allclose(kernel[1, 1].matrix(x, x), single, rtol=1e-12)
    assert kernel.apply(x, x, example_ndims=1).shape == (2, 3, 6)

    with_base = ArcSineKernel(InputNoiseKernel(smoothing=np.array([0.5, 1.0, 2.0])), sigma_b=0.1)
    assert with_base.batch_shape == (3,)
    np.testing.assert_allclose(with_base.matrix(x, x)[2],
                               ArcSineKernel(InputNoiseKernel(smoothing=2.0), sigma_b=0.1).matrix(x, x),
                               rtol=1e-12)

    dip = DIPKernel(SKIP, input_smoothing=np.array([0.0, 1.0, 2.5]), amplitude=np.array([[1.0], [3.0]]))
    assert dip.batch_shape == (2, 3)
    lattice_points = grid(4)
    matrix = dip.matrix(lattice_points, lattice_points)
    assert matrix.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(
        matrix[1, 2], DIPKernel(SKIP, input_smoothing=2.5, amplitude=3.0).matrix(
            lattice_points, lattice_points), rtol=1e-12)
    real_points = points(5, 11)
    np.testing.assert_allclose(
        dip.matrix(real_points, real_points)[0, 1],
        DIPKernel(SKIP, input_smoothing=1.0).matrix(real_points, real_points), rtol=1e-12)


def test_dtypes():
    x = grid(4)
    untyped = DIPKernel(SKIP)
    assert untyped.dtype is None
    m32 = untyped.matrix(x.astype(np.float32), x.astype(np.float32))
    m64 = untyped.matrix(x, x)
    assert m32.dtype == tf.float32 and m64.dtype == tf.float64
    np.testing.assert_allclose(m32, m64, rtol=2e-5, atol=1e-7)
    typed = DIPKernel(SKIP, amplitude=tf.constant(1.0, tf.float64))
    assert typed.dtype == tf.float64
    assert ArcCosineKernel(sigma_w=np.float32(1.0)).dtype == tf.float32
    assert ArcCosineKernel(sigma_w=np.float32(1.0)).matrix(x.astype(np.float32),
                                                           x.astype(np.float32)).dtype == tf.float32


def negative_log_likelihood(kernel, x, y):
    gp = tfp.distributions.GaussianProcess(kernel, index_points=x, observation_noise_variance=0.01)
    return -gp.log_prob(y)


def check_gradients(make_kernel, variables, x, y):
    """Tape gradients are finite, non-zero and match central finite differences."""
    with tf.GradientTape() as tape:
        loss = negative_log_likelihood(make_kernel(), x, y)
    gradients = tape.gradient(loss, variables)
    for variable, gradient in zip(variables, gradients):
        assert gradient is not None and np.isfinite(gradient.numpy()) and gradient.numpy() != 0
        step = 1e-5
        value = variable.numpy()
        variable.assign(value + step)
        up = negative_log_likelihood(make_kernel(), x, y).numpy()
        variable.assign(value - step)
        down = negative_log_likelihood(make_kernel(), x, y).numpy()
        variable.assign(value)
        assert gradient.numpy() == pytest.approx((up - down) / (2 * step), rel=1e-4, abs=1e-6)


def test_gradients_of_the_marginal_likelihood_wrt_dip_kernel_parameters():
    x = np.concatenate([grid(5), points(6, 12, high=4.0)])
    y = np.sin(x[:, 0]) * np.cos(0.5 * x[:, 1])
    variables = [tf.Variable(v, dtype=tf.float64) for v in (1.3, 0.4, 1.2, 0.8, 0.9, 0.3)]
    amplitude, sigma_b, smoothing, variance, sigma_w, mean = variables
    check_gradients(lambda: DIPKernel(ConvStackSpec(depth=2, activation="leaky_relu"),
                                      amplitude=amplitude, sigma_w=sigma_w, sigma_b=sigma_b,
                                      input_smoothing=smoothing, input_variance=variance,
                                      input_mean=mean), variables, x, y)


def test_gradients_through_the_skip_kernel_and_the_layered_kernels():
    x, y = grid(5), np.cos(grid(5)[:, 0])
    amplitude, smoothing = tf.Variable(1.1, dtype=tf.float64), tf.Variable(0.7, dtype=tf.float64)
    check_gradients(lambda: DIPKernel(SKIP, amplitude=amplitude, input_smoothing=smoothing),
                    [amplitude, smoothing], x, y)
    slope, sigma_w = tf.Variable(0.2, dtype=tf.float64), tf.Variable(1.1, dtype=tf.float64)
    check_gradients(lambda: ArcCosineKernel(InputNoiseKernel(smoothing=np.float64(1.0)), depth=2,
                                            negative_slope=slope, sigma_w=sigma_w),
                    [slope, sigma_w], x, y)


def test_smoothing_gradient_is_finite_at_white_noise():
    smoothing = tf.Variable(0.0, dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(InputNoiseKernel(smoothing=smoothing).matrix(grid(3), grid(3)))
    assert np.isfinite(tape.gradient(value, smoothing).numpy())


def test_transformed_variables_are_trainable_parameters():
    amplitude = tfp.util.TransformedVariable(1.5, tfp.bijectors.Softplus(), dtype=tf.float64)
    kernel = DIPKernel(SKIP, amplitude=amplitude)
    assert len(kernel.trainable_variables) == 1
    np.testing.assert_allclose(kernel.matrix(grid(3), grid(3)),
                               2.25 * DIPKernel(SKIP).matrix(grid(3), grid(3)), rtol=1e-12)


def test_gaussian_process_with_the_dip_kernel_samples_and_scores():
    x = grid(16)
    gp = tfp.distributions.GaussianProcess(DIPKernel(SKIP, amplitude=np.float64(1.0)),
                                           index_points=x, jitter=1e-8)
    sample = gp.sample(seed=(1, 2))
    assert sample.shape == (256,) and np.isfinite(gp.log_prob(sample).numpy())
    eigenvalues = np.linalg.eigvalsh(gp.covariance().numpy())
    assert eigenvalues.min() > 0


def test_baseline_kernels():
    x = points(8, 13)
    rbf = baseline_kernel("rbf", amplitude=2.0, length_scale=1.5)
    d2 = np.sum((x[:, None] - x[None]) ** 2, axis=-1)
    np.testing.assert_allclose(rbf.matrix(x, x), 4.0 * np.exp(-d2 / (2 * 1.5 ** 2)), rtol=2e-5)
    assert isinstance(baseline_kernel("matern52"), tfp.math.psd_kernels.MaternFiveHalves)
    with pytest.raises(TfdipError, match="unknown baseline"):
        baseline_kernel("cubic")


def test_bad_kernel_arguments_raise_tfdip_errors():
    with pytest.raises(TfdipError, match="depth"):
        ArcCosineKernel(depth=0)
    with pytest.raises(TfdipError, match="init='gaussian'"):
        DIPKernel(SkipSpec(), sigma_w=1.0)
    with pytest.raises(TfdipError, match="MaxPooling2D"):
        DIPKernel(SkipSpec(downsample="max"))
