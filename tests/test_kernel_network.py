"""kernel_of(model) reads the covariance from a Keras model's layer graph: the values of the former
spec-based recursion for every tfdip net, initialiser variances against sampled weights, Monte
Carlo over random networks (the GP experiment's net and a model defined here), closed forms, and
one-line errors for what it cannot map."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.gp.prior import DIP_KERNEL_SPEC
from tfdip.kernels import DIPKernel, InputNoise, kernel_of, monte_carlo_covariance, offset_grid
from tfdip.kernels.initializers import moments
from tfdip.nets import ConvStackSpec, SkipSpec, spec_for
from tfdip.nets.layers import erf

from conftest import TEST_DATA

L = keras.layers
TWO = dict(channels_down=(16, 16), channels_up=(16, 16), channels_skip=4, output_channels=1)
NETS = {
    "conv_stack_default": (spec_for("conv_stack"), {}),
    "conv_stack_relu_depth3_smooth": (ConvStackSpec(depth=3), dict(input_smoothing=1.5)),
    "conv_stack_erf_bias": (ConvStackSpec(depth=2, activation="erf", sigma_b=0.2), {}),
    "conv_stack_leaky_sigmoid": (ConvStackSpec(depth=2, activation="leaky_relu", need_sigmoid=True),
                                 dict(input_smoothing=0.7)),
    "conv_stack_torch": (ConvStackSpec(depth=2, init="torch", filter_size=5),
                         dict(input_variance=1.0, input_mean=0.0, input_smoothing=1.0)),
    "conv_stack_keras_nobias": (ConvStackSpec(depth=2, init="keras", need_bias=False),
                                dict(input_smoothing=1.0)),
    "conv_stack_override": (ConvStackSpec(depth=2, activation="leaky_relu"),
                            dict(sigma_w=1.3, sigma_b=0.2, input_variance=0.8, input_mean=0.4,
                                 input_smoothing=1.5)),
    "skip_default": (spec_for("skip"), {}),
    "skip_default_image64": (spec_for("skip"), dict(image_size=64)),
    "skip_default_torch": (SkipSpec(init="torch"), {}),
    "skip_default_torch_smooth": (SkipSpec(init="torch"), dict(input_smoothing=1.0)),
    "encoder_decoder_default": (spec_for("encoder_decoder"), {}),
    "skip_bilinear_gaussian": (SkipSpec(init="gaussian", **TWO), {}),
    "skip_nearest_avg": (SkipSpec(channels_down=(16, 16, 16), channels_up=(16, 16, 16),
                                  channels_skip=(0, 4, 4), upsample="nearest", downsample="avg",
                                  init="gaussian", output_channels=1), dict(input_smoothing=1.0)),
    "skip_finite_image": (SkipSpec(init="gaussian", **TWO), dict(image_size=16)),
    "skip_erf_keras": (SkipSpec(activation="erf", **TWO), {}),
    "skip_variants": (SkipSpec(channels_down=(8, 12), channels_up=(10, 6), channels_skip=(3, 5),
                               filter_size_down=5, filter_size_up=1, filter_skip_size=3,
                               need1x1_up=False, need_bias=False, pad="zero", activation="relu",
                               init="gaussian", sigma_w=1.2, need_sigmoid=False),
                      dict(input_smoothing=0.5)),
    "skip_override": (SkipSpec(init="gaussian", **TWO), dict(sigma_w=1.4, sigma_b=0.3)),
    "gp_experiment_net": (DIP_KERNEL_SPEC, {}),
    "gp_experiment_net_image64": (DIP_KERNEL_SPEC, dict(image_size=64)),
}
"""Every net of tfdip.nets (defaults, inits, variants) and the GP experiment's net."""


@pytest.fixture(scope="module")
def recorded():
    """``K(r)`` of the nets above, recorded with the spec-based recursion that ``kernel_of(spec)``
    was before it read Keras models (tfdip commit 479eaff): 169 lattice and 4 real offsets."""
    return np.load(TEST_DATA / "kernels_of_nets.npz")


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_net_keeps_the_covariance_it_had(name, recorded):
    spec, options = NETS[name]
    options = dict(options)
    code = InputNoise(*(options.pop(key, default) for key, default in (
        ("input_variance", 0.01 / 12), ("input_mean", 0.05), ("input_smoothing", 0.0))))
    cov = kernel_of(spec.build(), code, **options)
    offsets = tf.constant(recorded["offsets"])
    np.testing.assert_allclose(cov.moments(offsets, 1).value.numpy(), recorded[name], rtol=1e-10,
                               atol=1e-14)


SAMPLED_INITIALIZERS = [
    (keras.initializers.GlorotUniform(), (3, 3, 16, 48)),
    (keras.initializers.GlorotNormal(), (3, 3, 16, 48)),
    (keras.initializers.HeUniform(), (5, 5, 8, 32)),
    (keras.initializers.HeNormal(), (5, 5, 8, 32)),
    (keras.initializers.LecunNormal(), (1, 1, 64, 64)),
    (keras.initializers.VarianceScaling(2.5, "fan_out", "truncated_normal"), (3, 3, 24, 40)),
    (keras.initializers.VarianceScaling(0.7, "fan_avg", "untruncated_normal"), (3, 3, 24, 40)),
    (keras.initializers.RandomNormal(0.3, 0.2), (4096,)),
    (keras.initializers.TruncatedNormal(-0.1, 0.5), (4096,)),
    (keras.initializers.RandomUniform(-0.3, 0.5), (4096,)),
]


@pytest.mark.parametrize("initializer, shape", SAMPLED_INITIALIZERS,
                         ids=[type(i).__name__ for i, _ in SAMPLED_INITIALIZERS])
def test_initializer_moments_match_drawn_weights(initializer, shape):
    draws = np.concatenate([
        np.asarray(type(initializer).from_config({**initializer.get_config(), "seed": seed})(
            shape, "float64")).ravel() for seed in range(8)])
    mean, variance = moments(initializer, shape)
    assert draws.mean() == pytest.approx(mean, abs=5 * draws.std() / np.sqrt(draws.size))
    assert draws.var() == pytest.approx(variance, rel=5 * np.sqrt(2.0 / draws.size) * 2)
    assert moments("zeros", shape) == (0.0, 0.0)
    assert moments(keras.initializers.Constant(0.25), shape) == (0.25, 0.0)


def test_torch_uniform_initialisation_has_variance_one_third_over_fan_in():
    net = ConvStackSpec(input_channels=8, channels=16, depth=1, init="torch").build()
    conv = net.get_layer("conv0")
    _, variance = moments(conv.kernel_initializer, conv.kernel.shape)
    assert variance == pytest.approx(1.0 / (3.0 * 8 * 9))


def within_error_bars(comparison, allowance=0.0):
    """The relative Frobenius error is below 3 Monte-Carlo standard errors (plus ``allowance``)."""
    return comparison.relative_error < 3.0 * comparison.statistical_error + allowance


def test_gp_experiment_net_matches_monte_carlo():
    """The GP experiment's net (2 levels, bilinear up-sampling, skip branches of 4 channels,
    Gaussian init, sigmoid head), 64 channels wide instead of 1024, as a TFP kernel against the
    covariance of 40 random nets on 64 x 64 codes (BatchNorm at that image size). The theory takes
    infinite width and an infinite image and phase-averages the bilinear up-sampling: here the
    measured covariance is 8.6% (relative Frobenius) off it with a standard error of 1.5%; at 128
    channels the gap is 6.6%, so it shrinks with width. ``allowance`` admits that gap beside three
    standard errors; a wrong map is far off (the nearest-neighbour kernel of the same net: 45%)."""
    spec = dataclasses.replace(DIP_KERNEL_SPEC, channels_down=(64, 64), channels_up=(64, 64),
                               output_channels=16)
    model = spec.build()
    estimate = monte_carlo_covariance(model, num_nets=40, image_size=64, max_offset=3, margin=4,
                                      seed=11)
    kernel = DIPKernel(model, image_size=64)
    comparison = estimate.compare(lambda r: kernel.apply(tf.zeros_like(r), r))
    assert within_error_bars(comparison, allowance=0.06), comparison
    nearest = dataclasses.replace(spec, upsample="nearest").build()
    wrong = estimate.compare(kernel_of(nearest, image_size=64))
    assert wrong.relative_error > 4 * comparison.relative_error


def user_model(width=128):
    """A model as a user would write it with plain Keras layers and initialisers: BatchNorm,
    a strided conv, nearest up-sampling, a concatenation, a residual sum, a conv with a built-in
    activation, pooling, erf, and a Dense sigmoid head."""
    z = keras.Input((None, None, 8))
    x = L.Conv2D(width, 3, padding="same", kernel_initializer="he_normal",
                 bias_initializer=keras.initializers.RandomNormal(0.0, 0.1))(z)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(0.1)(x)
    down = L.Conv2D(width, 3, strides=2, padding="same")(x)
    up = L.UpSampling2D(2)(L.ReLU()(down))
    skip = L.Conv2D(width // 4, 1, use_bias=False, activation="relu",
                    kernel_initializer=keras.initializers.TruncatedNormal(0.0, 0.2))(x)
    y = L.Conv2D(width, 3, padding="same",
                 kernel_initializer=keras.initializers.VarianceScaling(1.5, "fan_avg", "uniform"),
                 bias_initializer=keras.initializers.RandomUniform(-0.2, 0.2))(
        L.Concatenate()([skip, up]))
    residual = L.Conv2D(width, 3, padding="same", kernel_initializer="lecun_normal")(
        L.Activation("relu")(y))
    y = L.AveragePooling2D(2)(L.Add()([y, residual]))
    y = L.Activation(erf)(y)
    out = L.Dense(16, activation="sigmoid",
                  kernel_initializer=keras.initializers.RandomNormal(0.0, 0.3))(y)
    return keras.Model(z, out, name="user_model")


def test_a_user_functional_model_matches_monte_carlo():
    model = user_model()
    estimate = monte_carlo_covariance(model, num_nets=32, image_size=32, max_offset=3, margin=2,
                                      seed=12, input_variance=1.0, input_mean=0.0,
                                      input_smoothing=1.0)
    comparison = estimate.compare(kernel_of(model, InputNoise(1.0, 0.0, 1.0)))
    assert within_error_bars(comparison), comparison


def test_sequential_and_nested_models_give_the_closed_form_sanity_values():
    """conv 1x1 - ReLU - conv 1x1 on unit white noise, sigma_w = 1 (reference.md section 5):
    ``K(0) = 1/2``, ``K(r != 0) = 1/(2 pi)``, as a Sequential and nested in a functional model."""
    def unit_conv(channels):
        return L.Conv2D(channels, 1, kernel_initializer=keras.initializers.RandomNormal(
            0.0, 1.0 / np.sqrt(channels)), bias_initializer="zeros")

    sequential = keras.Sequential([keras.Input((None, None, 16)), unit_conv(16), L.ReLU(),
                                   L.Conv2D(4, 1, kernel_initializer="he_normal")])
    z = keras.Input((None, None, 16))
    nested = keras.Model(z, L.Identity()(sequential(L.ZeroPadding2D(1)(z))))
    for model, relu_scale in ((sequential, 2.0), (nested, 2.0)):
        values = kernel_of(model, InputNoise(1.0, 0.0))(offset_grid(2, tf.float64)).numpy()
        # he_normal has sigma_w^2 = 2 on the last layer
        assert values[2, 2] == pytest.approx(relu_scale * 0.5, rel=1e-12)
        off_diagonal = np.delete(values.ravel(), values.size // 2)
        np.testing.assert_allclose(off_diagonal, relu_scale / (2 * np.pi), rtol=1e-12)


def test_a_relu_output_is_centred_on_its_mean():
    """conv 1x1 then ReLU on unit white noise: ``Var relu(u) = 1/2 - 1/(2 pi)`` at 0, uncorrelated
    elsewhere."""
    model = keras.Sequential([keras.Input((None, None, 16)), L.Conv2D(
        8, 1, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.25)), L.ReLU()])
    values = kernel_of(model, InputNoise(1.0, 0.0))(offset_grid(1, tf.float64)).numpy()
    assert values[1, 1] == pytest.approx(0.5 - 1.0 / (2.0 * np.pi), rel=1e-12)
    np.testing.assert_allclose(np.delete(values.ravel(), 4), 0.0, atol=1e-12)


class TwiceLarger(L.Layer):
    """A user layer that declares its own covariance map."""

    def call(self, x):
        return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)

    def covariance_map(self, field):
        return field.upsample(2, "nearest")


def test_a_user_layer_declares_its_own_covariance_map():
    def model(upsampling):
        z = keras.Input((None, None, 4))
        x = L.Conv2D(32, 3, padding="same", activation="relu")(z)
        return keras.Model(z, L.Conv2D(2, 1)(upsampling(x)))

    offsets = offset_grid(3, tf.float64)
    np.testing.assert_allclose(kernel_of(model(TwiceLarger()))(offsets),
                               kernel_of(model(L.UpSampling2D(2)))(offsets), rtol=1e-12)


def single_layer_model(*layers, channels=4):
    z = keras.Input((None, None, channels))
    x = L.Conv2D(8, 3, padding="same")(z)
    for layer in layers:
        x = layer(x)
    return keras.Model(z, x)


def correlated_sum():
    z = keras.Input((None, None, 4))
    x = L.Conv2D(8, 3, padding="same")(z)
    return keras.Model(z, L.Add()([x, L.BatchNormalization()(x)]))


def activation_of_the_input():
    z = keras.Input((None, None, 4))
    return keras.Model(z, L.Conv2D(2, 1)(L.ReLU()(z)))


class Subclassed(keras.Model):
    def call(self, x):
        return x


@pytest.mark.parametrize("make, message", [
    (lambda: single_layer_model(L.MaxPooling2D(2, name="pool")), "'pool' .MaxPooling2D. has no"),
    (lambda: single_layer_model(L.Dropout(0.5, name="drop")), "'drop' .Dropout."),
    (lambda: single_layer_model(L.Lambda(lambda x: 2 * x, name="twice")), "'twice' .Lambda."),
    (lambda: single_layer_model(L.Activation("tanh", name="tanh")), "'tanh'.*'tanh' has no"),
    (lambda: single_layer_model(L.Conv2D(4, 1, bias_initializer="ones", name="c")),
     "'c'.*bias initializer has mean 1"),
    (lambda: single_layer_model(L.Conv2D(4, 1, kernel_initializer="orthogonal", name="o")),
     "'o'.*Orthogonal has no variance rule"),
    (lambda: single_layer_model(L.Conv2DTranspose(4, 2, strides=2, name="t")),
     "'t' .Conv2DTranspose."),
    (lambda: single_layer_model(L.ReLU(), L.ReLU(name="again")),
     "'again'.*not zero-mean Gaussian"),
    (correlated_sum, "may be correlated"),
    (activation_of_the_input, "not zero-mean Gaussian"),
    (lambda: Subclassed(), "no layer graph"),
])
def test_what_has_no_covariance_map_is_refused_in_one_line(make, message):
    with pytest.raises(TfdipError, match=message) as error:
        kernel_of(make())
    assert "\n" not in str(error.value)


def test_a_residual_sum_of_uncorrelated_branches_adds_the_covariances():
    """``y = x + conv(relu(x))`` on unit white noise with unit weights, 1 x 1 convs:
    ``K_y(0) = 1 + 1/2`` and ``K_y(r != 0) = 1/(2 pi)`` (x is white, relu(x) has the constant
    second moment 1/(2 pi) between distinct pixels)."""
    unit = lambda: L.Conv2D(64, 1, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.125))
    z = keras.Input((None, None, 64))
    x = unit()(z)
    model = keras.Model(z, L.Add()([x, unit()(L.ReLU()(x))]))
    values = kernel_of(model, InputNoise(1.0, 0.0))(offset_grid(1, tf.float64)).numpy()
    assert values[1, 1] == pytest.approx(1.5, rel=1e-12)
    np.testing.assert_allclose(np.delete(values.ravel(), 4), 1 / (2 * np.pi), rtol=1e-12)
