"""DeepImagePrior and restore(): fitting, padding, roll-back, sampling schedule, resumption."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data

from tfdip import metrics
from tfdip.errors import TfdipError
from tfdip.physics import Denoising, Inpainting, SuperResolution
from tfdip.recipes import make_recipe
from tfdip.restoration import make_dip, restore

TINY = dict(channels_down=(16, 16, 16), channels_up=(16, 16, 16), channels_skip=(4, 4, 4))
# For the mechanics (schedules, roll-back, resumption): fewer layers trace faster.
MINI = dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))


def astronaut(size, gray=False):
    face = data.astronaut()[20:220, 120:320]
    image = np.asarray(Image.fromarray(face).resize((size, size), Image.LANCZOS), np.float32) / 255
    return image.mean(axis=-1, keepdims=True) if gray else image


def test_tiny_dip_fit_beats_its_observation():
    clean = astronaut(32)
    physics = Denoising(0.1)
    noisy = physics.simulate(clean, seed=0)
    result = restore(noisy, physics, method="sgd", iterations=300, net_options=TINY, seed=0)
    assert result.image.shape == clean.shape
    gain = metrics.psnr(result.image, clean) - metrics.psnr(noisy, clean)
    assert gain > 2.0, gain
    assert result.rollbacks == 0
    assert result.seconds_per_iteration > 0


def test_history_records_loss_and_psnr_against_the_reference():
    clean = astronaut(32)
    physics = Denoising(0.1)
    noisy = physics.simulate(clean, seed=1)
    result = restore(noisy, physics, method="sgd", iterations=60, net_options=MINI,
                     reference=clean, log_every=20)
    history = result.history[0]
    assert len(history["loss"]) == 3
    assert all(loss > 0 for loss in history["loss"])
    last = result.models[0].restored("last")
    ema = result.models[0].restored("ema")
    # The logged PSNRs are those of the model's own outputs against the reference.
    assert history["psnr_ema"][-1] == pytest.approx(metrics.psnr(ema, clean), abs=1e-3)
    assert history["psnr"][-1] < 40 and np.isfinite(metrics.psnr(last, clean))


@pytest.mark.parametrize("shape", [(30, 27, 3), (17, 40, 1)])
def test_sizes_that_are_not_multiples_of_the_net_are_padded_and_cropped(shape):
    rng = np.random.default_rng(0)
    observation = rng.uniform(size=shape).astype(np.float32)
    dip = make_dip(observation, Denoising(0.1), make_recipe("sgd", "denoising", iterations=2),
                   net_options=MINI)
    assert dip.z.shape[1] % 4 == 0 and dip.z.shape[2] % 4 == 0
    assert dip.z.shape[1] >= shape[0] and dip.z.shape[2] >= shape[1]
    dip.fit(2, log_every=1)
    assert dip.restored("last").shape == shape


def test_superresolution_restores_the_high_resolution_size():
    clean = astronaut(32)
    physics = SuperResolution(2)
    low = physics.simulate(clean, seed=0)
    result = restore(low, physics, method="sgd", iterations=4, net_options=MINI)
    assert low.shape == (16, 16, 3)
    assert result.image.shape == (32, 32, 3)


def test_rollback_restores_the_last_good_weights_and_counts_it():
    clean = astronaut(32)
    physics = Denoising(0.1)
    dip = make_dip(physics.simulate(clean, seed=0), physics,
                   make_recipe("sgd", "denoising", iterations=3), net_options=MINI)
    dip.fit(1, log_every=1)
    # The last weights whose output passed the test are those of step 0 (kept in the shadow).
    last_good = [s.numpy().copy() for s in dip.shadow]
    dip.last_good_psnr.assign(1000.0)  # any PSNR now counts as a collapse of more than 5 dB
    dip.fit(1, log_every=1)
    after = [w.numpy() for w in dip.generator.trainable_variables]
    assert int(dip.rollbacks.numpy()) == 1
    for good, a in zip(last_good, after):
        np.testing.assert_array_equal(a, good)


def test_non_finite_loss_rolls_back_even_without_psnr_test():
    clean = astronaut(32)
    physics = Denoising(0.1)
    recipe = make_recipe("sgld", "denoising", iterations=3)
    assert recipe.rollback_db is None
    observation = physics.simulate(clean, seed=0)
    dip = make_dip(observation, physics, recipe, net_options=MINI)
    dip.fit(1, log_every=1)
    last_good = [s.numpy().copy() for s in dip.shadow]
    dip.y.assign(np.full((1, 32, 32, 3), np.nan, np.float32))
    dip.fit(1, log_every=1)
    assert int(dip.rollbacks.numpy()) == 1
    for good, w in zip(last_good, dip.generator.trainable_variables):
        np.testing.assert_array_equal(w.numpy(), good)
        assert np.all(np.isfinite(w.numpy()))


def test_posterior_samples_follow_burn_in_and_thinning():
    clean = astronaut(32)
    physics = Denoising(0.1)
    recipe = make_recipe("paper", "denoising", iterations=40, burn_in=10, thin=3)
    dip = make_dip(physics.simulate(clean, seed=0), physics, recipe, net_options=MINI)
    dip.fit(40, log_every=10)
    expected = len(range(10, 40, 3))
    assert int(dip.moments.count.numpy()) == expected
    trace = dip.trace.numpy()[:expected]
    mean = dip.moments.mean.numpy().reshape(-1)[dip.trace_index.numpy()]
    np.testing.assert_allclose(trace.mean(axis=0), mean, rtol=1e-4, atol=1e-6)
    std = dip.moments.std.numpy().reshape(-1)[dip.trace_index.numpy()]
    np.testing.assert_allclose(trace.std(axis=0), std, rtol=1e-3, atol=1e-6)


def test_two_fits_continue_one_run():
    clean = astronaut(32)
    physics = Denoising(0.1)
    observation = physics.simulate(clean, seed=0)
    recipe = make_recipe("paper", "denoising", iterations=20, burn_in=4, thin=2)
    one = make_dip(observation, physics, recipe, net_options=MINI, seed=3)
    one.fit(20, log_every=10)
    two = make_dip(observation, physics, recipe, net_options=MINI, seed=3)
    two.fit(10, log_every=10)
    two.fit(10, log_every=10)
    np.testing.assert_allclose(two.moments.mean.numpy(), one.moments.mean.numpy(), atol=1e-5)
    assert int(two.step.numpy()) == 20


def test_killed_and_resumed_run_gives_the_same_posterior(tmp_path):
    clean = astronaut(32)
    physics = Inpainting.bernoulli((32, 32), 0.5, seed=0)
    observation = physics.simulate(clean, seed=0)
    recipe = make_recipe("paper", "inpainting", iterations=24, burn_in=6, thin=2)
    straight = make_dip(observation, physics, recipe, net_options=MINI, seed=5)
    straight.fit(24, log_every=6)

    first = make_dip(observation, physics, recipe, net_options=MINI, seed=5)
    first.fit(12, log_every=6)
    first._build_optimizer()
    path = first.checkpoint().save(str(tmp_path / "run"))
    del first  # the process "dies" here

    resumed = make_dip(observation, physics, recipe, net_options=MINI, seed=99)  # other init
    resumed._build_optimizer()
    resumed.checkpoint().restore(path).assert_existing_objects_matched()
    resumed.fit(12, log_every=6)
    assert int(resumed.step.numpy()) == 24
    np.testing.assert_allclose(resumed.moments.mean.numpy(), straight.moments.mean.numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(resumed.moments.std.numpy(), straight.moments.std.numpy(), atol=1e-5)
    for a, b in zip(resumed.generator.trainable_variables, straight.generator.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_bad_requests_raise_one_line_errors():
    observation = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(TfdipError, match="iterations"):
        make_recipe("sgd", "denoising", iterations=0)
    with pytest.raises(TfdipError, match="burn-in"):
        make_recipe("paper", "denoising", iterations=10, burn_in=10)
    with pytest.raises(TfdipError, match="method"):
        make_recipe("adamw", "denoising")
    with pytest.raises(TfdipError, match="chains"):
        restore(observation, Denoising(0.1), chains=0)
    dip = make_dip(observation, Denoising(0.1), make_recipe("sgd", "denoising"), net_options=MINI)
    with pytest.raises(TfdipError, match="iterations"):
        dip.fit(0)


def test_memory_check_refuses_an_image_too_large_for_the_machine(monkeypatch):
    import tfdip.resources as resources

    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 64 * 2**20)
    observation = np.zeros((256, 256, 3), np.float32)
    with pytest.raises(TfdipError, match="GiB"):
        make_dip(observation, Denoising(0.1), make_recipe("sgd", "denoising"))


@pytest.mark.parametrize("method", ["mala", "ula"])
def test_mcmc_methods_restore_through_the_same_api(method):
    """The chains leave their random starts for the data: the posterior mean fits the observation
    at least 3 dB better than the same net at a random initialisation (measured: about 5 dB)."""
    clean = astronaut(16)
    physics = Denoising(0.1)
    noisy = physics.simulate(clean, seed=0)
    net_options = dict(channels=8, depth=1, output_channels=3)
    result = restore(noisy, physics, method=method, iterations=60, burn_in=30, thin=3, chains=2,
                     learning_rate=1e-5, net="conv_stack", net_options=net_options)
    assert result.image.shape == clean.shape and result.std.shape == clean.shape
    assert result.samples == 2 * 10
    assert result.diagnostics["rhat_max"] is not None
    start = make_dip(noisy, physics, make_recipe(method, "denoising", iterations=60, burn_in=30),
                     net="conv_stack", net_options=net_options).restored("last")
    assert metrics.psnr(result.image, noisy) > metrics.psnr(start, noisy) + 3.0
    assert np.all(result.std >= 0) and result.std.mean() > 0
    if method == "mala":
        assert 0.5 <= result.diagnostics["accept_rate"] <= 1.0
