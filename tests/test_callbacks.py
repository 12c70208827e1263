"""TensorBoard logging, progress bar and periodic checkpoints of a DIP run."""
import io as _io
import glob

import numpy as np
import tensorflow as tf

from tfdip.callbacks import CheckpointEvery, ProgressBar, TensorBoardLogger
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


def test_checkpoints_are_written_every_n_steps(tmp_path):
    rng = np.random.default_rng(2)
    noisy = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    dip = make_dip(noisy, Denoising(0.1), make_recipe("sgd", "denoising", iterations=12),
                   net_options=TINY)
    dip.fit(12, log_every=2, callbacks=[CheckpointEvery(str(tmp_path), every=4, max_to_keep=5)])
    state = tf.train.get_checkpoint_state(str(tmp_path))
    steps = sorted(int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths)
    assert steps == [4, 8, 12]


def test_restore_resumes_a_checkpointed_run(tmp_path):
    rng = np.random.default_rng(3)
    clean = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    physics = Denoising(0.1)
    noisy = physics.simulate(clean, seed=0)
    options = dict(method="paper", iterations=16, burn_in=4, thin=2, net_options=TINY, seed=7,
                   log_every=4)
    straight = restore(noisy, physics, **options)
    # A run that "died" after 8 steps: only its first 8 steps were checkpointed.
    partial = dict(options, iterations=16)
    dip = make_dip(noisy, physics, make_recipe("paper", "denoising", iterations=16, burn_in=4,
                                               thin=2), net_options=TINY, seed=7)
    dip.fit(8, log_every=4, callbacks=[CheckpointEvery(str(tmp_path / "chain0"), every=4)])
    resumed = restore(noisy, physics, checkpoint_dir=str(tmp_path), checkpoint_every=4,
                      resume=True, **partial)
    np.testing.assert_allclose(resumed.image, straight.image, atol=1e-5)
    np.testing.assert_allclose(resumed.std, straight.std, atol=1e-5)
    assert resumed.samples == straight.samples == 6
