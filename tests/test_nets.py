"""The generator networks: reference parameter counts, layer shapes, a NumPy forward pass,
initialisation statistics, variable input sizes, saving and the registry."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdip.nets as nets
from tfdip.errors import TfdipError
from tfdip.nets import ConvStackSpec, SkipSpec
from tfdip.nets.layers import CenterCropConcat, ImageBatchNorm

from test_layers import numpy_image_batch_norm, numpy_resize_half_pixel

SMALL = dict(channels_down=(16, 16, 16), channels_up=(16, 16, 16), channels_skip=4)


def count_skip_parameters(spec: SkipSpec) -> int:
    """Parameters of the skip net counted from reference.md section 2 (conv weights + biases,
    BatchNorm gamma + beta), independently of the Keras model."""
    def conv(c_in, c_out, k):
        return c_in * c_out * k * k + c_out

    total, c_in = 0, spec.input_channels
    for i in range(spec.levels):
        down, up, skip = spec.channels_down[i], spec.channels_up[i], spec.channels_skip[i]
        if skip:
            total += conv(c_in, skip, spec.filter_skip_size) + 2 * skip
        total += conv(c_in, down, spec.filter_size_down) + 2 * down
        total += conv(down, down, spec.filter_size_down) + 2 * down
        k = spec.channels_up[i + 1] if i + 1 < spec.levels else down
        total += 2 * (skip + k) + conv(skip + k, up, spec.filter_size_up) + 2 * up
        if spec.need1x1_up:
            total += conv(up, up, 1) + 2 * up
        c_in = down
    return total + conv(spec.channels_up[0], spec.output_channels, 1)


def seeded(seed=0):
    keras.utils.set_random_seed(seed)


def code(shape, seed=0):
    """A DIP input: z ~ U(0, 0.1)."""
    return np.random.default_rng(seed).uniform(0, 0.1, size=shape).astype(np.float32)


# ---------------------------------------------------------------- parameter counts

@pytest.mark.parametrize("kwargs, expected", [
    ({}, 2_217_831),
    ({"output_channels": 1}, 2_217_573),
    ({"channels_down": 64, "channels_up": 64}, 572_455),
    ({"channels_down": (1024, 1024), "channels_up": (1024, 1024), "channels_skip": 4,
      "output_channels": 1},
     49_685_673),
])
def test_reference_parameter_counts(kwargs, expected):
    spec = SkipSpec(**kwargs)
    assert count_skip_parameters(spec) == expected
    assert spec.build().count_params() == expected


def test_default_net_conv_kernels_and_trainable_weights():
    net = nets.skip()
    assert sum(int(np.prod(w.shape)) for w in net.weights if len(w.shape) == 4) == 2_208_768
    assert not net.non_trainable_weights  # BatchNorm keeps no moving statistics


@pytest.mark.parametrize("kwargs", [
    dict(SMALL, downsample="avg"),
    dict(SMALL, downsample="max", upsample="nearest"),
    dict(SMALL, need1x1_up=False, filter_size_up=5, filter_skip_size=3),
    dict(SMALL, need_bias=False),
])
def test_variant_parameter_counts(kwargs):
    spec = SkipSpec(**kwargs)
    bias_free = 0
    if not spec.need_bias:  # one bias vector per conv disappears
        convs = [layer for layer in spec.build().layers if isinstance(layer, keras.layers.Conv2D)]
        bias_free = sum(layer.filters for layer in convs)
    assert spec.build().count_params() == count_skip_parameters(spec) - bias_free


def test_encoder_decoder_has_no_skip_branch():
    net = nets.encoder_decoder()
    assert net.count_params() == count_skip_parameters(SkipSpec(channels_skip=0))
    assert not any(isinstance(layer, CenterCropConcat) for layer in net.layers)


def test_conv_stack_parameter_count_and_any_size():
    spec = ConvStackSpec(input_channels=3, channels=8, depth=3, filter_size=5, output_channels=2)
    net = spec.build()
    expected = (3 * 8 * 25 + 8) + 2 * (8 * 8 * 25 + 8) + (8 * 2 + 2)
    assert net.count_params() == expected
    assert not any(isinstance(layer, ImageBatchNorm) for layer in net.layers)
    assert net(code((1, 7, 9, 3))).shape == (1, 7, 9, 2)


# ---------------------------------------------------------------- shapes

def expected_default_shape(name: str, size: int = 64):
    """Output shape of each named layer of the default net on a ``size``^2 input (reference.md)."""
    if name.startswith("output"):
        return (1, size, size, 3)
    level, role = name.split("_", 1)
    i = int(level[len("level"):])
    s = size // 2 ** i                       # resolution entering level i
    c_in = 32 if i == 0 else 128
    k = 128                                  # up_{i+1}, or down_i at the deepest level
    table = {
        "down1_conv_pad": (s + 2, c_in),
        "down1_conv": (s // 2, 128), "down1_bn": (s // 2, 128), "down1_act": (s // 2, 128),
        "down2_conv_pad": (s // 2 + 2, 128),
        "down2_conv": (s // 2, 128), "down2_bn": (s // 2, 128), "down2_act": (s // 2, 128),
        "upsample": (s, k),
        "skip_conv": (s, 4), "skip_bn": (s, 4), "skip_act": (s, 4),
        "concat": (s, 4 + k), "merge_bn": (s, 4 + k),
        "up_conv_pad": (s + 2, 4 + k),
        "up_conv": (s, 128), "up_bn": (s, 128), "up_act": (s, 128),
        "up1x1_conv": (s, 128), "up1x1_bn": (s, 128), "up1x1_act": (s, 128),
    }
    spatial, channels = table[role]
    return (1, spatial, spatial, channels)


def test_every_layer_shape_of_default_net():
    seeded()
    net = nets.skip()
    layers = net.layers[1:]  # after the input
    probe = keras.Model(net.input, [layer.output for layer in layers])
    outputs = probe(code((1, 64, 64, 32)))
    for layer, output in zip(layers, outputs):
        assert tuple(output.shape) == expected_default_shape(layer.name), layer.name
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds.count("Conv2D") == 5 * 5 + 1
    assert kinds.count("ImageBatchNorm") == 5 * 6
    assert kinds.count("Resize2D") == kinds.count("CenterCropConcat") == 5
    assert kinds.count("ReflectionPad2D") == 5 * 3


@pytest.mark.parametrize("height, width", [(32, 32), (64, 96), (16, 24)])
def test_net_accepts_any_multiple_of_size_multiple(height, width):
    seeded()
    spec = SkipSpec(**SMALL)
    assert spec.size_multiple == 8
    net = spec.build()
    y = net(code((1, height, width, 32))).numpy()
    assert y.shape == (1, height, width, 3)
    assert np.all((y > 0) & (y < 1)) and y.std() > 0


def test_min_size_is_the_smallest_size_reflection_padding_allows():
    seeded()
    spec = SkipSpec(**SMALL)
    net = spec.build()
    assert spec.min_size == 2 * spec.size_multiple == 16
    assert net(code((1, spec.min_size, spec.min_size, 32))).shape[1:3] == (16, 16)
    too_small = spec.min_size - spec.size_multiple
    with pytest.raises(tf.errors.InvalidArgumentError):
        net(code((1, too_small, too_small, 32)))
    zero_padded = SkipSpec(**SMALL, pad="zero")
    assert zero_padded.min_size == 8
    assert zero_padded.build()(code((1, 8, 8, 32))).shape[1:3] == (8, 8)


def test_one_traced_function_serves_several_sizes():
    seeded()
    net = SkipSpec(**SMALL).build()
    forward = tf.function(net, input_signature=[tf.TensorSpec((1, None, None, 32))])
    for height, width in [(16, 16), (24, 40)]:
        z = code((1, height, width, 32))
        np.testing.assert_allclose(forward(z).numpy(), net(z).numpy(), atol=1e-6)
    assert len(forward._list_all_concrete_functions_for_serialization()) == 1


def test_batch_norm_is_per_image_in_training_and_inference():
    seeded()
    net = SkipSpec(**SMALL, init="torch").build()
    z = code((1, 16, 16, 32))
    np.testing.assert_allclose(net(z, training=True).numpy(), net(z, training=False).numpy(),
                               atol=1e-6)


@pytest.fixture
def dtype_policy():
    """Set a global Keras dtype policy for one test; float32 is restored afterwards."""
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("policy, output_dtype, atol", [
    ("mixed_bfloat16", "float32", 0.02),
    ("float64", "float64", 1e-5),
])
def test_dtype_policies_match_float32(dtype_policy, policy, output_dtype, atol):
    seeded(11)
    reference = SkipSpec(**SMALL, init="torch").build()
    z = code((1, 32, 32, 32), seed=12)
    expected = reference(z).numpy()
    dtype_policy(policy)
    net = SkipSpec(**SMALL, init="torch").build()
    net.set_weights(reference.get_weights())
    y = net(z)
    assert y.dtype == output_dtype
    assert net.get_layer("level0_up_conv").compute_dtype == policy.replace("mixed_", "")
    np.testing.assert_allclose(y.numpy(), expected, atol=atol)
    assert np.abs(y.numpy() - expected).mean() < atol / 5


# ---------------------------------------------------------------- NumPy forward pass

def numpy_conv(x, kernel, bias, pad_mode, stride=1):
    """(N, H, W, C_in) -> VALID conv of the padded input with a (k, k, C_in, C_out) kernel."""
    k = kernel.shape[0]
    p = (k - 1) // 2
    x = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)], mode="reflect" if pad_mode == "reflection"
               else "constant")
    out_h, out_w = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]))
    for di in range(k):
        for dj in range(k):
            patch = x[:, di:di + stride * out_h:stride, dj:dj + stride * out_w:stride]
            out += patch @ kernel[di, dj]
    return out + bias


def numpy_skip_forward(net, spec: SkipSpec, z):
    """The skip net of reference.md section 2 in float64 NumPy, reading the Keras weights."""
    def conv(x, name, stride=1):
        kernel, bias = net.get_layer(name).get_weights()
        return numpy_conv(x, kernel, bias, spec.pad, stride)

    def bn_act(x, name):
        gamma, beta = net.get_layer(name).get_weights()
        x = numpy_image_batch_norm(x, gamma, beta, net.get_layer(name).epsilon)
        return np.where(x > 0, x, spec.negative_slope * x)

    def level(x, i):
        if spec.downsample == "stride":
            deep = conv(x, f"level{i}_down1_conv", stride=2)
        else:
            deep = conv(x, f"level{i}_down1_conv")
            blocks = deep.reshape(deep.shape[0], deep.shape[1] // 2, 2, deep.shape[2] // 2, 2, -1)
            deep = blocks.mean(axis=(2, 4)) if spec.downsample == "avg" else blocks.max(axis=(2, 4))
        deep = bn_act(deep, f"level{i}_down1_bn")
        deep = bn_act(conv(deep, f"level{i}_down2_conv"), f"level{i}_down2_bn")
        if i + 1 < spec.levels:
            deep = level(deep, i + 1)
        if spec.upsample == "bilinear":
            deep = numpy_resize_half_pixel(deep, 2)
        else:
            deep = np.repeat(np.repeat(deep, 2, axis=1), 2, axis=2)
        if spec.channels_skip[i]:
            branch = bn_act(conv(x, f"level{i}_skip_conv"), f"level{i}_skip_bn")
            deep = np.concatenate([branch, deep], axis=-1)
        gamma, beta = net.get_layer(f"level{i}_merge_bn").get_weights()
        x = numpy_image_batch_norm(deep, gamma, beta, net.get_layer(f"level{i}_merge_bn").epsilon)
        x = bn_act(conv(x, f"level{i}_up_conv"), f"level{i}_up_bn")
        return bn_act(conv(x, f"level{i}_up1x1_conv"), f"level{i}_up1x1_bn")

    y = conv(level(z.astype(np.float64), 0), "output_conv")
    return 1 / (1 + np.exp(-y))


@pytest.mark.parametrize("downsample, upsample, pad", [
    ("stride", "bilinear", "reflection"),
    ("avg", "nearest", "zero"),
    ("max", "bilinear", "reflection"),
])
def test_forward_pass_matches_numpy_reference(downsample, upsample, pad):
    seeded(1)
    spec = SkipSpec(input_channels=4, channels_down=(8, 6), channels_up=(6, 8),
                    channels_skip=(2, 0), downsample=downsample, upsample=upsample, pad=pad,
                    init="torch")
    net = spec.build()
    rng = np.random.default_rng(2)
    for layer in net.layers:  # non-trivial BatchNorm shifts, so a misplaced BN shows
        if isinstance(layer, ImageBatchNorm):
            gamma, beta = layer.get_weights()
            layer.set_weights([gamma, rng.normal(size=beta.shape).astype(np.float32)])
    z = rng.uniform(0, 1, size=(1, 16, 12, 4)).astype(np.float32)
    np.testing.assert_allclose(net(z).numpy(), numpy_skip_forward(net, spec, z), atol=2e-5)


# ---------------------------------------------------------------- initialisation

def conv_layers(net):
    return [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]


def fan_in(layer):
    kernel = layer.kernel.shape
    return kernel[0] * kernel[1] * kernel[2]


def test_torch_init_ranges_and_variance():
    seeded(3)
    net = SkipSpec(channels_down=32, channels_up=32, channels_skip=4, init="torch").build()
    scaled = []  # every weight times sqrt(fan_in): U(-1, 1), variance 1/3
    for layer in conv_layers(net):
        kernel, bias = (w.numpy() * np.sqrt(fan_in(layer)) for w in (layer.kernel, layer.bias))
        assert np.abs(kernel).max() <= 1 and np.abs(bias).max() <= 1
        scaled += [kernel.ravel(), bias.ravel()]
    scaled = np.concatenate(scaled)
    assert scaled.size > 100_000
    assert abs(scaled.min() + 1) < 1e-3 and abs(scaled.max() - 1) < 1e-3
    assert abs(scaled.var() - 1 / 3) < 0.01 and abs(scaled.mean()) < 0.01

    gammas = np.concatenate([layer.gamma.numpy() for layer in net.layers
                             if isinstance(layer, ImageBatchNorm)])
    assert gammas.min() >= 0 and gammas.max() <= 1 and abs(gammas.mean() - 0.5) < 0.05
    assert {layer.epsilon for layer in net.layers if isinstance(layer, ImageBatchNorm)} == {1e-5}


def test_gaussian_init_variances():
    seeded(4)
    sigma_w, sigma_b = 1.5, 0.3
    net = ConvStackSpec(channels=256, depth=2, sigma_w=sigma_w, sigma_b=sigma_b).build()
    kernels = np.concatenate([layer.kernel.numpy().ravel() * np.sqrt(fan_in(layer)) / sigma_w
                              for layer in conv_layers(net)])
    biases = np.concatenate([layer.bias.numpy().ravel() / sigma_b for layer in conv_layers(net)])
    # Standard normal after scaling; tolerances are ~5 standard errors of the estimates.
    assert abs(kernels.var() - 1) < 5 * np.sqrt(2 / kernels.size)
    assert abs(kernels.mean()) < 5 / np.sqrt(kernels.size)
    assert abs(biases.var() - 1) < 5 * np.sqrt(2 / biases.size)


def test_gaussian_init_without_bias_noise_has_zero_biases():
    seeded(5)
    net = ConvStackSpec(channels=8, sigma_b=0.0).build()
    assert all(not layer.bias.numpy().any() for layer in conv_layers(net))


def test_keras_init_is_glorot_with_zero_bias_and_unit_gamma():
    seeded(6)
    net = SkipSpec(**SMALL).build()
    for layer in conv_layers(net):
        fan_out = layer.kernel.shape[0] * layer.kernel.shape[1] * layer.kernel.shape[3]
        limit = np.sqrt(6 / (fan_in(layer) + fan_out))
        assert np.abs(layer.kernel.numpy()).max() <= limit
        assert not layer.bias.numpy().any()
    for layer in net.layers:
        if isinstance(layer, ImageBatchNorm):
            assert np.all(layer.gamma.numpy() == 1) and layer.epsilon == 1e-3


def test_global_seed_makes_builds_reproducible():
    weights = []
    for _ in range(2):
        seeded(7)
        weights.append(SkipSpec(**SMALL, init="torch").build().get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- saving

@pytest.mark.parametrize("make", [
    lambda: SkipSpec(**SMALL, init="torch").build(),
    lambda: SkipSpec(**SMALL, activation="erf", upsample="nearest", pad="zero").build(),
    lambda: ConvStackSpec(channels=8, activation="erf", init="gaussian", sigma_b=0.1).build(),
])
def test_keras_file_round_trip(tmp_path, make):
    seeded(8)
    net = make()
    path = tmp_path / "net.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    z = code((1, 24, 16, 32), seed=9)
    np.testing.assert_array_equal(loaded(z).numpy(), net(z).numpy())
    assert loaded.count_params() == net.count_params()


def test_savedmodel_export_serves_variable_sizes(tmp_path):
    seeded(10)
    net = SkipSpec(**SMALL).build()
    net.export(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    for height, width in [(16, 16), (24, 40)]:
        z = code((1, height, width, 32), seed=height)
        np.testing.assert_allclose(served.serve(z).numpy(), net(z).numpy(), atol=1e-6)


# ---------------------------------------------------------------- registry and errors

def test_registry_builds_and_describes():
    assert set(nets.NETS) == {"skip", "encoder_decoder", "conv_stack"}
    assert nets.spec_for("skip", output_channels=1) == SkipSpec(output_channels=1)
    assert nets.spec_for("encoder_decoder").channels_skip == (0,) * 5
    assert nets.spec_for("conv_stack", depth=3) == ConvStackSpec(depth=3)
    net = nets.get("conv_stack", channels=8)
    assert net.name == "conv_stack" and isinstance(net, keras.Model)
    assert nets.skip(**SMALL).count_params() == count_skip_parameters(SkipSpec(**SMALL))
    assert nets.conv_stack(channels=8).count_params() == net.count_params()


@pytest.mark.parametrize("call", [
    lambda: nets.get("unet"),
    lambda: nets.skip(levels=3),
    lambda: nets.encoder_decoder(channels_skip=4),
    lambda: nets.skip(activation="tanh"),
    lambda: nets.skip(channels_down=(8, 8), channels_up=(8, 8, 8)),
    lambda: nets.skip(filter_size_down=4),
    lambda: nets.skip(upsample="bicubic"),
    lambda: nets.conv_stack(depth=0),
    lambda: nets.conv_stack(init="he"),
])
def test_bad_requests_raise_tfdip_error(call):
    with pytest.raises(TfdipError) as error:
        call()
    assert "\n" not in str(error.value)

