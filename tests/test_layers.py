"""The DIP layers against NumPy implementations of the reference (PyTorch) semantics."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdip.nets.layers import CenterCropConcat, ImageBatchNorm, ReflectionPad2D, Resize2D, erf


def numpy_resize_half_pixel(x, factor):
    """PyTorch ``interpolate(mode="bilinear", align_corners=False)`` on NHWC, separably.

    Source coordinate ``(i + 0.5) / factor - 0.5``, clamped below at 0; neighbours i0 = floor,
    i1 = min(i0 + 1, n - 1); weight of i1 is the fractional part.
    """
    for axis in (1, 2):
        n = x.shape[axis]
        src = np.maximum((np.arange(n * factor) + 0.5) / factor - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        lam = (src - i0).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
        x = np.take(x, i0, axis=axis) * (1 - lam) + np.take(x, i1, axis=axis) * lam
    return x


def numpy_image_batch_norm(x, gamma, beta, epsilon):
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))
    return gamma * (x - mean) / np.sqrt(var + epsilon) + beta


def random_images(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def call_with_unknown_size(layer, x):
    """Run ``layer`` in a graph where H and W are unknown, as a DIP net with variable sizes does."""
    fn = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, x.shape[-1]),
                                                           tf.as_dtype(x.dtype))])
    return fn(x).numpy()


def roundtrip(layer):
    """A fresh layer from ``layer``'s serialised form, through Keras' own (de)serialiser."""
    return keras.layers.deserialize(keras.layers.serialize(layer))


@pytest.mark.parametrize("pad", [1, 2])
def test_reflection_pad_matches_numpy_reflect(pad):
    x = random_images((2, 5, 7, 3))
    expected = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
    np.testing.assert_array_equal(call_with_unknown_size(ReflectionPad2D(pad), x), expected)
    assert ReflectionPad2D(pad).compute_output_shape((2, 5, None, 3)) == (2, 5 + 2 * pad, None, 3)
    np.testing.assert_array_equal(roundtrip(ReflectionPad2D(pad))(x).numpy(), expected)


@pytest.mark.parametrize("factor", [2, 3])
def test_bilinear_resize_is_pytorch_half_pixel(factor):
    x = random_images((1, 6, 9, 4), seed=1)
    out = call_with_unknown_size(Resize2D(factor, "bilinear"), x)
    assert out.shape == (1, 6 * factor, 9 * factor, 4)
    np.testing.assert_allclose(out, numpy_resize_half_pixel(x.astype(np.float64), factor),
                               atol=1e-5)


def test_nearest_resize_repeats_pixels_and_serialises():
    x = random_images((1, 4, 5, 2), seed=2)
    layer = roundtrip(Resize2D(2, "nearest"))
    assert (layer.factor, layer.method) == (2, "nearest")
    expected = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(call_with_unknown_size(layer, x), expected)


def test_resize_keeps_float64():
    x = random_images((1, 3, 3, 1), seed=3, dtype=np.float64)
    out = Resize2D(2, dtype="float64")(x)
    assert out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), numpy_resize_half_pixel(x, 2), atol=1e-6)


def test_image_batch_norm_uses_current_statistics_in_training_and_inference():
    rng = np.random.default_rng(4)
    x = (3.0 + 2.0 * rng.normal(size=(2, 6, 5, 4))).astype(np.float32)
    gamma = rng.uniform(0.5, 2.0, size=4).astype(np.float32)
    beta = rng.normal(size=4).astype(np.float32)
    layer = ImageBatchNorm(epsilon=1e-5)
    layer.build(x.shape)
    layer.set_weights([gamma, beta])
    expected = numpy_image_batch_norm(x.astype(np.float64), gamma, beta, 1e-5)
    for training in (True, False):
        np.testing.assert_allclose(layer(x, training=training).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(call_with_unknown_size(layer, x), expected, atol=1e-5)
    # Only gamma and beta: no moving statistics to drift or to be counted as parameters.
    assert [w.name for w in layer.weights] == ["gamma", "beta"]
    assert all(w.trainable for w in layer.weights)


def test_image_batch_norm_epsilon_and_serialisation():
    x = random_images((1, 4, 4, 3), seed=5) * 0.01  # variance ~1e-4, so epsilon matters
    layer = ImageBatchNorm(epsilon=1e-3, gamma_initializer=keras.initializers.Constant(2.0))
    out = layer(x).numpy()
    np.testing.assert_allclose(out, numpy_image_batch_norm(x.astype(np.float64), 2.0, 0.0, 1e-3),
                               atol=1e-5)
    copy = roundtrip(layer)
    assert copy.epsilon == 1e-3
    np.testing.assert_allclose(copy(x).numpy(), out, atol=1e-6)


def test_image_batch_norm_gradient_matches_finite_differences():
    x = tf.constant(random_images((1, 3, 4, 2), seed=6, dtype=np.float64))
    layer = ImageBatchNorm(epsilon=1e-5, dtype="float64")
    weights = tf.constant(random_images((1, 3, 4, 2), seed=7, dtype=np.float64))
    theoretical, numerical = tf.test.compute_gradient(
        lambda t: tf.reduce_sum(layer(t) ** 3 * weights), [x])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-5)


def test_image_batch_norm_float32_gradient_matches_float64():
    """float32 runs the fused kernel, float64 the moments path checked above: same gradients."""
    rng = np.random.default_rng(13)
    x = rng.normal(size=(1, 6, 5, 3))
    weights = rng.normal(size=(1, 6, 5, 3))
    gamma, beta = rng.uniform(0.5, 2, size=3), rng.normal(size=3)
    gradients = []
    for dtype in ("float32", "float64"):
        layer = ImageBatchNorm(epsilon=1e-5, dtype=dtype)
        layer.build(x.shape)
        layer.set_weights([gamma.astype(dtype), beta.astype(dtype)])
        inputs = tf.constant(x, dtype)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(layer(inputs) ** 3 * tf.constant(weights, dtype))
        gradients.append([g.numpy() for g in tape.gradient(loss, [inputs, *layer.weights])])
    for g32, g64 in zip(*gradients):
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4)


def test_image_batch_norm_under_bfloat16_policy():
    x = random_images((1, 8, 8, 3), seed=8)
    layer = ImageBatchNorm(dtype="mixed_bfloat16")
    out = layer(x)
    assert out.dtype == tf.bfloat16 and layer.gamma.dtype == "float32"
    expected = numpy_image_batch_norm(x.astype(np.float64), 1.0, 0.0, 1e-3)
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), expected, atol=0.05)


def test_erf_activation():
    x = np.linspace(-3, 3, 13).astype(np.float32)
    np.testing.assert_allclose(erf(x).numpy(), [math.erf(v) for v in x], atol=1e-6)
    layer = roundtrip(keras.layers.Activation(erf))
    np.testing.assert_allclose(layer(x).numpy(), [math.erf(v) for v in x], atol=1e-6)


def test_center_crop_concat_crops_to_smallest():
    a = random_images((1, 7, 6, 2), seed=9)
    b = random_images((1, 5, 8, 3), seed=10)
    # Target 5 x 6: a loses row 1 on top (start (7-5)//2 = 1), b loses column 1 (start (8-6)//2).
    expected = np.concatenate([a[:, 1:6, 0:6], b[:, 0:5, 1:7]], axis=-1)
    layer = CenterCropConcat()
    np.testing.assert_array_equal(layer([a, b]).numpy(), expected)
    assert layer.compute_output_shape([(1, 7, 6, 2), (1, 5, 8, 3)]) == (1, 5, 6, 5)
    assert layer.compute_output_shape([(1, None, 6, 2), (1, 5, 8, 3)]) == (1, None, 6, 5)

    spec = tf.TensorSpec((None, None, None, None), tf.float32)
    fn = tf.function(lambda u, v: roundtrip(layer)([u, v]), input_signature=[spec, spec])
    np.testing.assert_array_equal(fn(a, b).numpy(), expected)


def test_center_crop_concat_equal_sizes_is_plain_concat():
    a, b = random_images((2, 4, 4, 1), seed=11), random_images((2, 4, 4, 2), seed=12)
    np.testing.assert_array_equal(CenterCropConcat()([a, b]).numpy(),
                                  np.concatenate([a, b], axis=-1))
