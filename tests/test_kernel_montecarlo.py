"""Monte Carlo over random networks built from the same specs converges to the analytic kernels:
within the statistical error measured from the samples themselves, shrinking with the number of
nets, and with a finite-width error that disappears as the nets get wider."""
import numpy as np
import pytest
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.kernels import InputNoise, kernel_of, monte_carlo_covariance, offset_grid, sample_input
from tfdip.kernels.montecarlo import offset_products, redraw_weights
from tfdip.nets import ConvStackSpec, SkipSpec

UNIT_INPUT = dict(input_variance=1.0, input_mean=0.0, input_smoothing=1.0)


def erf_stack(width, input_channels):
    return ConvStackSpec(input_channels=input_channels, channels=width, depth=2, activation="erf",
                         sigma_w=1.5, output_channels=16)


def run(spec, num_nets, seed=1, image_size=24, max_offset=3, margin=2, **inputs):
    inputs = inputs or UNIT_INPUT
    model = spec.build()
    estimate = monte_carlo_covariance(model, num_nets=num_nets, image_size=image_size,
                                      max_offset=max_offset, margin=margin, seed=seed, **inputs)
    code = InputNoise(inputs["input_variance"], inputs["input_mean"], inputs["input_smoothing"])
    return estimate.compare(kernel_of(model, code))


@pytest.fixture(scope="module")
def erf_runs():
    """Wide nets with 16 and 64 draws, narrow nets with 64 draws (erf: zero-mean activations)."""
    return {"wide16": run(erf_stack(128, 32), 16), "wide64": run(erf_stack(128, 32), 64),
            "narrow64": run(erf_stack(2, 2), 64)}


def test_wide_nets_match_the_kernel_within_statistical_error(erf_runs):
    for name in ("wide16", "wide64"):
        comparison = erf_runs[name]
        assert comparison.relative_error < 3 * comparison.statistical_error


def test_statistical_error_shrinks_like_one_over_square_root_of_the_number_of_nets(erf_runs):
    ratio = erf_runs["wide64"].statistical_error / erf_runs["wide16"].statistical_error
    assert 0.35 < ratio < 0.75  # 1/sqrt(4) = 0.5
    assert erf_runs["wide64"].relative_error < erf_runs["wide16"].relative_error


def test_narrow_nets_depart_from_the_infinite_width_kernel(erf_runs):
    narrow, wide = erf_runs["narrow64"], erf_runs["wide64"]
    margin = 2 * np.hypot(narrow.statistical_error, wide.statistical_error)
    assert narrow.relative_error - wide.relative_error > margin


def test_relu_stack_with_bias_input_mean_and_smoothing():
    spec = ConvStackSpec(input_channels=32, channels=128, depth=2, activation="leaky_relu",
                         sigma_w=1.2, sigma_b=0.3, output_channels=16)
    comparison = run(spec, 48, seed=2, input_variance=1.0, input_mean=0.3, input_smoothing=1.5)
    assert comparison.relative_error < 3 * comparison.statistical_error


@pytest.mark.parametrize("init", ["torch", "keras"])
def test_initialisation_variances(init):
    spec = ConvStackSpec(input_channels=32, channels=128, depth=2, activation="relu", init=init,
                         output_channels=16)
    comparison = run(spec, 48, seed=3)
    assert comparison.relative_error < 3 * comparison.statistical_error


def test_skip_net_with_batch_norm_and_upsampling():
    """One level, nearest up-sampling: border effects of the real (reflection-padded) net stay
    below the statistical error at 64 x 64 with an 8-pixel margin."""
    spec = SkipSpec(input_channels=32, output_channels=32, channels_down=(128,),
                    channels_up=(128,), channels_skip=(32,), upsample="nearest", init="gaussian",
                    need_sigmoid=False)
    comparison = run(spec, 24, seed=4, image_size=64, max_offset=3, margin=8,
                     input_variance=1.0, input_mean=0.0, input_smoothing=0.0)
    assert comparison.relative_error < 3 * comparison.statistical_error


def test_uniform_input_is_dips_code():
    rng = np.random.default_rng(5)
    z = sample_input((4, 32, 32, 8), rng=rng).astype(np.float64)
    assert z.min() >= 0.0 and z.max() <= 0.1
    assert z.mean() == pytest.approx(0.05, abs=4 * z.std() / np.sqrt(z.size))
    assert z.var() == pytest.approx(0.01 / 12, rel=0.05)


def test_smoothed_input_has_the_input_kernel():
    rng = np.random.default_rng(6)
    v, m, s, radius = 0.7, 0.2, 1.5, 3
    fields = [offset_products(sample_input((1, 48, 48, 16), s, v, m, rng), radius)
              for _ in range(16)]
    estimate = np.mean(fields, 0)
    error = np.std(fields, 0, ddof=1) / np.sqrt(len(fields))
    expected = InputNoise(v, m, s)(offset_grid(radius, tf.float64)).numpy()
    assert np.all(np.abs(estimate - expected) < 4 * error)


def test_redrawn_weights_follow_the_spec_and_the_seed():
    spec = ConvStackSpec(input_channels=8, channels=64, depth=1, sigma_w=1.7, sigma_b=0.4)
    model = spec.build()
    kernel = model.get_layer("conv0").kernel
    bias = model.get_layer("conv0").bias
    redraw_weights(model, seed=1)
    first = kernel.numpy().copy()
    redraw_weights(model, seed=2)
    second = kernel.numpy().copy()
    redraw_weights(model, seed=1)
    np.testing.assert_array_equal(kernel.numpy(), first)
    assert not np.allclose(first, second)
    expected_std = 1.7 / np.sqrt(8 * 9)
    assert first.std() == pytest.approx(expected_std, rel=4 / np.sqrt(2 * first.size))
    assert bias.numpy().std() == pytest.approx(0.4, rel=0.3)


def test_bad_monte_carlo_requests_raise_tfdip_errors():
    with pytest.raises(TfdipError, match="num_nets"):
        monte_carlo_covariance(ConvStackSpec(channels=8), num_nets=1)
    with pytest.raises(TfdipError, match="not a multiple of its stride 2"):
        monte_carlo_covariance(SkipSpec(channels_down=(8, 8), channels_up=(8, 8), channels_skip=2),
                               image_size=30)
    with pytest.raises(TfdipError, match="too small"):
        offset_products(np.zeros((1, 10, 10, 1)), max_offset=4, margin=3)
