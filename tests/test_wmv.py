"""ES-WMV (Wang et al. 2023) on a synthetic U-shaped variance curve with a known minimum, its
in-graph tracker against the NumPy rule, and the ``sgd`` method's ``stop="wmv"``."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdip.chains import build_generator
from tfdip.dip import DeepImagePrior
from tfdip.errors import TfdipError
from tfdip.inference.wmv import WindowedVarianceTracker, windowed_variances, wmv_stop
from tfdip.physics import Denoising
from tfdip.recipes import make_recipe
from tfdip.restoration import restore
from tfdip.stopping import WmvStop, wmv_record

MINI = dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))


def u_shaped_iterates(steps=3000, lowest=1200, seed=0, shape=(6, 5, 1)):
    """Iterates x_t = m + s_t e_t with e_t iid N(0, 1) and s_t^2 = 0.01 + ((t - lowest) / 1000)^2:
    the windowed variance of a window of W around t is close to the mean of s^2 over it."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    scale = np.sqrt(0.01 + ((t - lowest) / 1000.0) ** 2)
    return 0.5 + scale[:, None, None, None] * rng.normal(size=(steps, *shape)), scale**2


def test_windowed_variance_follows_the_variance_curve_and_its_minimum():
    iterates, variance = u_shaped_iterates()
    curve = windowed_variances(iterates, 100)
    assert np.isnan(curve[:99]).all() and np.isfinite(curve[99:]).all()
    # Expected: mean of s^2 over the window, times (W - 1) / W for the population variance.
    expected = np.convolve(variance, np.ones(100) / 100, mode="valid") * 99 / 100
    assert np.median(np.abs(curve[99:] / expected - 1)) < 0.05  # 30 entries x 100 draws each
    best, stop = wmv_stop(curve, 1000)
    # The window ending at t is centred at t - 49.5: the minimum of s^2 at 1200 puts the best
    # window's end near 1250 (the curve is flat there: within +-150 steps).
    assert abs(best - 1250) < 150
    assert stop == best + 1000


def test_wmv_stop_never_stops_before_patience_and_keeps_ties_early():
    assert wmv_stop([np.nan, 3.0, 2.0, 2.0, 5.0, 6.0], patience=3) == (2, 5)
    assert wmv_stop([3.0, 2.0, 1.0], patience=5) == (2, None)


def test_tracker_in_a_tf_function_equals_the_numpy_rule():
    iterates, _ = u_shaped_iterates(steps=700, lowest=300, seed=1, shape=(4, 3, 2))
    iterates = iterates.astype(np.float32)
    tracker = WindowedVarianceTracker((4, 3, 2), window=20, patience=150)
    update = tf.function(tracker.update)
    for x in iterates:
        update(x)
    curve = windowed_variances(iterates, 20)
    best, stop = wmv_stop(curve, 150)
    assert stop is not None and int(tracker.best_step.numpy()) == best
    assert bool(tracker.done.numpy())
    assert int(tracker.seen.numpy()) == stop + 1   # frozen after the step that ran out of patience
    np.testing.assert_allclose(tracker.best.numpy(), iterates[best])
    assert float(tracker.best_variance.numpy()) == pytest.approx(curve[best], rel=1e-4)


def test_sgd_with_wmv_returns_the_iterate_of_smallest_windowed_variance():
    rng = np.random.default_rng(0)
    clean = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    noisy = Denoising(0.1).simulate(clean, seed=1)
    record = []

    class Outputs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            record.append(self.model.last_output.numpy()[0])

    result = restore(noisy, Denoising(0.1), method="sgd", stop="wmv", iterations=400,
                     net_options=MINI, seed=2, callbacks=[Outputs()], log_every=10)
    dip = result.models[0]
    assert (dip.wmv.window, dip.wmv.patience) == (100, 1000)
    best, _ = wmv_stop(windowed_variances(np.stack(record), 100), 1000)
    assert result.early_stop["best_step"] == best + 1
    assert result.early_stop["reason"] == "cap reached"  # 400 steps < the patience
    np.testing.assert_allclose(result.image, np.clip(record[best], 0, 1), atol=1e-6)


def test_a_run_stops_at_the_first_check_after_its_patience_ran_out():
    _, generator = build_generator("skip", 3, MINI)
    noisy = Denoising(0.1).simulate(np.full((16, 16, 3), 0.5, np.float32), seed=1)
    dip = DeepImagePrior(generator, Denoising(0.1), noisy, size_multiple=4, early_stop="wmv",
                         wmv_window=10, wmv_patience=30, input_noise_std=1 / 30)
    dip.compile(optimizer=keras.optimizers.Adam(0.01))
    record = []

    class Outputs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            record.append(self.model.last_output.numpy()[0])

    dip.fit(600, log_every=25, callbacks=[WmvStop(25), Outputs()])
    best, stop = wmv_stop(windowed_variances(np.stack(record), 10), 30)
    assert stop is not None, "the variance kept falling for 600 steps"
    assert int(dip.step.numpy()) == (stop // 25 + 1) * 25   # the first check after the stop
    assert wmv_record(dip)["best_step"] == best + 1 and wmv_record(dip)["reason"] == "patience"
    np.testing.assert_allclose(dip.wmv.best.numpy(), record[best], atol=1e-6)


def test_wmv_applies_to_sgd_only():
    with pytest.raises(TfdipError, match="not a stopping rule of psgld"):
        make_recipe("psgld", "denoising", stop="wmv")
    with pytest.raises(TfdipError, match="unknown stopping rule"):
        make_recipe("sgd", "denoising", stop="early")
    assert make_recipe("sgd", "denoising", stop="wmv").iterations == 5000
