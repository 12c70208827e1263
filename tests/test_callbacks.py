"""TensorBoard logging, progress bar and periodic checkpoints of a DIP run."""
import glob
import io as _io
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdip.callbacks import CheckpointEvery, ProgressBar, TensorBoardLogger
from tfdip.checkpoints import ChainCheckpoint
from tfdip.physics import Denoising
from tfdip.recipes import make_recipe
from tfdip.restoration import make_dip, restore

TINY = dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))


def _events(logdir):
    """{tag: [(step, kind, value)]} of every event file below ``logdir``."""
    found = {}
    for path in glob.glob(f"{logdir}/**/events.out.tfevents.*", recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                kind = value.metadata.plugin_data.plugin_name
                tensor = tf.make_ndarray(value.tensor)
                found.setdefault(value.tag, []).append((event.step, kind, tensor))
    return found


def test_tensorboard_event_files_hold_scalars_and_images(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.uniform(size=(24, 24, 3)).astype(np.float32)
    physics = Denoising(0.1)
    noisy = physics.simulate(clean, seed=0)
    restore(noisy, physics, method="paper", iterations=20, burn_in=5, thin=1, net_options=TINY,
            reference=clean, log_every=5, callbacks=[TensorBoardLogger(str(tmp_path), 10)])
    events = _events(tmp_path)
    for tag in ("loss", "psnr_obs", "psnr", "psnr_mean", "samples"):
        assert tag in events, tag
        assert [step for step, _, _ in events[tag]] == [5, 10, 15, 20]
    for tag in ("sample", "ema", "posterior_mean", "posterior_std"):
        assert tag in events, tag
        assert all(kind == "images" for _, kind, _ in events[tag])
    # Images at steps 5 (first epoch), 10 and 20; the posterior ones once samples exist.
    assert [step for step, _, _ in events["sample"]] == [5, 10, 20]
    # Image summaries store [width, height, png...]: decode one and check its size.
    png = events["posterior_std"][-1][2][2]
    decoded = tf.io.decode_png(png).numpy()
    assert decoded.shape[:2] == (24, 24)
    samples = events["samples"][-1][2]
    assert float(samples) == 15  # steps 5, 6, ..., 19 (0-based) after a burn-in of 5


def test_progress_bar_writes_one_updating_line():
    rng = np.random.default_rng(1)
    noisy = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    stream = _io.StringIO()
    restore(noisy, Denoising(0.1), method="sgd", iterations=6, net_options=TINY, log_every=3,
            callbacks=[ProgressBar(6, stream=stream)])
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "6/6" in text and "s/it" in text


class _EpochSteps(keras.callbacks.Callback):
    """Records the run's step at every Keras epoch end."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_epoch_end(self, epoch, logs=None):
        self.steps.append(int(self.model.step.numpy()))


def test_checkpoints_at_any_interval_independent_of_logging(tmp_path, monkeypatch):
    saved = []
    original = ChainCheckpoint.save

    def recording(self, checkpoint, step):
        saved.append(step)
        original(self, checkpoint, step)

    monkeypatch.setattr(ChainCheckpoint, "save", recording)
    rng = np.random.default_rng(2)
    noisy = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    dip = make_dip(noisy, Denoising(0.1), make_recipe("sgd", "denoising", iterations=13),
                   net_options=TINY)
    epochs = _EpochSteps()
    # 13 is prime: the last Keras epoch is a partial one, not 13 epochs of one step.
    dip.fit(13, log_every=4, callbacks=[epochs, CheckpointEvery(str(tmp_path), every=5)])
    assert epochs.steps == [4, 8, 12, 13]
    assert saved == [5, 10, 13]                  # every 5 steps, and at the end
    step, prefix = ChainCheckpoint(tmp_path).latest()
    assert step == 13
    # Only the newest checkpoint is kept, and it holds the final weights.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "latest.json") == sorted(
        [f"{pathlib.Path(prefix).name}.index", f"{pathlib.Path(prefix).name}.data-00000-of-00001"])
    other = make_dip(noisy, Denoising(0.1), make_recipe("sgd", "denoising", iterations=13),
                     net_options=TINY, seed=4)
    other._build_optimizer()
    assert ChainCheckpoint(tmp_path).restore(other.checkpoint()) == 13
    for a, b in zip(other.generator.weights, dip.generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(other.trace_index.numpy(), dip.trace_index.numpy())


def test_default_log_interval_of_a_prime_run_is_not_one_step():
    rng = np.random.default_rng(5)
    noisy = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    result = restore(noisy, Denoising(0.1), method="sgd", iterations=101, net_options=TINY)
    assert len(result.history[0]["loss"]) == 2    # steps 100 and 101, not 101 epochs


class _Interrupt(keras.callbacks.Callback):
    """Stops the process (a KeyboardInterrupt) once the run reaches ``step``."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_epoch_end(self, epoch, logs=None):
        if int(self.model.step.numpy()) >= self.step:
            raise KeyboardInterrupt


def test_restore_resumes_an_interrupted_run(tmp_path):
    rng = np.random.default_rng(3)
    clean = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    physics = Denoising(0.1)
    noisy = physics.simulate(clean, seed=0)
    options = dict(method="paper", iterations=16, burn_in=4, thin=2, net_options=TINY, seed=7,
                   log_every=3)
    straight = restore(noisy, physics, **options)
    with pytest.raises(KeyboardInterrupt):
        restore(noisy, physics, checkpoint_dir=str(tmp_path), checkpoint_every=5,
                callbacks=[_Interrupt(9)], **options)
    assert ChainCheckpoint(tmp_path / "chain0").latest()[0] == 5
    resumed = restore(noisy, physics, checkpoint_dir=str(tmp_path), checkpoint_every=5,
                      resume=True, **options)
    np.testing.assert_allclose(resumed.image, straight.image, atol=1e-6)
    np.testing.assert_allclose(resumed.std, straight.std, atol=1e-6)
    assert resumed.samples == straight.samples == 6
