"""export_dip(): SavedModel outputs against the in-process model, loading without tfdip, folders."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import keras
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.export import check_export_target, export_dip
from tfdip.physics import Denoising
from tfdip.recipes import make_recipe
from tfdip.restoration import make_dip

TINY = dict(channels_down=(16, 16, 16), channels_up=(16, 16, 16), channels_skip=(4, 4, 4))
SIZE = 32


def tiny_dip(method, iterations, seed=0, **recipe_options):
    """A tiny DIP fitted for ``iterations`` steps to a noisy smooth 32x32 colour image."""
    rows, cols = np.meshgrid(np.linspace(0, 1, SIZE), np.linspace(0, 1, SIZE), indexing="ij")
    clean = np.stack([rows, cols, 0.5 + 0.4 * np.sin(6 * rows * cols)], axis=-1).astype(np.float32)
    physics = Denoising(0.1)
    recipe = make_recipe(method, "denoising", iterations=iterations, **recipe_options)
    dip = make_dip(physics.simulate(clean, seed=seed), physics, recipe, net_options=TINY, seed=seed)
    dip.fit(iterations, log_every=iterations)
    return dip


@pytest.fixture(scope="module")
def bayesian_run(tmp_path_factory):
    """A run of the authors' recipe that collected posterior samples, and its export."""
    dip = tiny_dip("paper", 20, burn_in=8, thin=2)
    folder = export_dip(dip, tmp_path_factory.mktemp("export") / "paper")
    return dip, folder


@pytest.fixture(scope="module")
def sgd_dip():
    """A run of the DIP baseline (no posterior samples); tests may fit it further."""
    return tiny_dip("sgd", 2)


def int64(value):
    return tf.constant(value, tf.int64)


def call_exported(folder, function, *args):
    """``function(*args)`` of the SavedModel in ``folder``, as NumPy arrays. The loaded object
    must outlive the call (its functions hold only weak references to its variables)."""
    loaded = tf.saved_model.load(str(folder))
    return {key: value.numpy() for key, value in getattr(loaded, function)(*args).items()}


def test_restore_reloads_the_in_process_output(bayesian_run):
    dip, folder = bayesian_run
    expected = dip.restored("last")[None]
    loaded = tf.saved_model.load(folder)
    outputs = [loaded.signatures["serving_default"]()["image"],
               loaded.signatures["restore"]()["image"],
               loaded.restore()["image"],
               loaded.serving_default(tf.zeros((4, 2)))["image"]]
    for image in outputs:
        assert image.dtype == tf.float32 and image.shape == (1, SIZE, SIZE, 3)
        np.testing.assert_allclose(image.numpy(), expected, atol=1e-5)


def test_export_is_a_snapshot_of_the_run_at_export_time(sgd_dip, tmp_path):
    dip = sgd_dip
    before = dip.restored("last")
    folder = export_dip(dip, tmp_path / "snapshot")
    dip.fit(2, log_every=2)  # the live model moves on; the SavedModel does not
    image = call_exported(folder, "restore")["image"][0]
    np.testing.assert_allclose(image, before, atol=1e-5)
    assert np.abs(dip.restored("last") - before).max() > 1e-4


def test_sample_is_deterministic_per_seed_and_differs_across_seeds(bayesian_run):
    dip, folder = bayesian_run
    loaded = tf.saved_model.load(folder)
    first = loaded.signatures["sample"](seed=int64(7))["image"].numpy()
    np.testing.assert_array_equal(loaded.sample(int64(7))["image"].numpy(), first)
    other = loaded.sample(int64(8))["image"].numpy()
    assert np.abs(other - first).max() > 1e-4
    # The draw is crop(G(z + s eps)) with eps the stateless normal keyed on [seed, 0].
    eps = tf.random.stateless_normal(tf.shape(dip.z), seed=tf.constant([7, 0], tf.int64))
    (top, left), (height, width, _) = dip.crop_offset, dip.image_shape
    jittered = dip.generator(dip.z + dip.input_noise_std * eps, training=True).numpy()
    np.testing.assert_allclose(first, jittered[:, top:top + height, left:left + width], atol=1e-5)
    # The default noise level is the run's input jitter std; with no noise, a draw is G(z).
    explicit = loaded.signatures["sample_with_noise_std"](
        seed=int64(7), noise_std=tf.constant(dip.input_noise_std, tf.float32))["image"]
    np.testing.assert_array_equal(explicit.numpy(), first)
    noiseless = loaded.sample(int64(7), tf.constant(0.0))["image"].numpy()
    np.testing.assert_allclose(noiseless, dip.restored("last")[None], atol=1e-5)


def test_sample_statistics_match_in_process_jittered_outputs(bayesian_run):
    dip, folder = bayesian_run
    loaded = tf.saved_model.load(folder)
    draws = 64
    noise_std = tf.constant(dip.input_noise_std, tf.float32)
    exported = np.stack([loaded.sample(int64(seed))["image"].numpy()[0] for seed in range(draws)])
    rng = np.random.default_rng(0)
    in_process = np.stack([dip(dip.z + noise_std * rng.standard_normal(dip.z.shape, np.float32))
                           .numpy()[0] for _ in range(draws)])
    exported_std, in_process_std = exported.std(axis=0), in_process.std(axis=0)
    # The jitter spreads the outputs, and by as much in both: the mean std agrees to 25 %
    # (over 64 draws its Monte-Carlo error is about 10 %: pixels move together).
    assert in_process_std.mean() > 1e-3
    assert exported_std.mean() == pytest.approx(in_process_std.mean(), rel=0.25)
    # Per-pixel means differ by Monte-Carlo error only: z-scores of the difference have an
    # RMS near 1 (pixels are correlated, hence the loose band), far below that of a 2x noise level.
    standard_error = np.sqrt((exported.var(axis=0) + in_process.var(axis=0)) / draws)
    z_scores = (exported.mean(axis=0) - in_process.mean(axis=0)) / standard_error
    assert 0.5 < np.sqrt(np.mean(z_scores ** 2)) < 2.0
    doubled = np.stack([loaded.sample(int64(seed), 2 * noise_std)["image"].numpy()[0]
                        for seed in range(draws)])
    assert doubled.std(axis=0).mean() > 1.5 * in_process_std.mean()


def test_a_float64_generator_serves_float32_images(tmp_path):
    keras.config.set_floatx("float64")
    try:
        dip = make_dip(np.full((SIZE, SIZE, 1), 0.5, np.float32), Denoising(0.1),
                       make_recipe("sgd", "denoising", iterations=1), net_options=TINY)
    finally:
        keras.config.set_floatx("float32")
    assert dip.generator.trainable_variables[0].dtype == "float64"
    expected = dip(dip.z).numpy()
    assert expected.dtype == np.float64
    image = call_exported(export_dip(dip, tmp_path / "float64"), "restore")["image"]
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_posterior_signature_returns_the_run_moments_and_ema(bayesian_run):
    dip, folder = bayesian_run
    loaded = tf.saved_model.load(folder)
    posterior = loaded.signatures["posterior"]()
    assert int(dip.moments.count.numpy()) == len(range(8, 20, 2))
    assert posterior["samples"].dtype == tf.int64
    assert int(posterior["samples"].numpy()) == int(dip.moments.count.numpy())
    np.testing.assert_allclose(posterior["mean"].numpy()[0], dip.moments.mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(posterior["std"].numpy()[0], dip.moments.std.numpy(), atol=1e-6)
    np.testing.assert_allclose(posterior["ema"].numpy(), dip.ema.numpy(), atol=1e-6)
    assert posterior["std"].numpy().max() > 0


def test_posterior_of_a_run_without_samples_is_zero(sgd_dip, tmp_path):
    dip = sgd_dip
    posterior = call_exported(export_dip(dip, tmp_path / "sgd"), "posterior")
    assert int(posterior["samples"]) == 0
    assert not posterior["mean"].any() and not posterior["std"].any()
    np.testing.assert_allclose(posterior["ema"], dip.ema.numpy(), atol=1e-6)


LOAD_WITHOUT_TFDIP = textwrap.dedent("""
    import sys
    sys.modules["tfdip"] = None  # any import of tfdip now fails
    import numpy as np
    import keras
    import tensorflow as tf

    folder, out = sys.argv[1], sys.argv[2]
    seed = tf.constant(5, tf.int64)
    loaded = tf.saved_model.load(folder)
    restore = keras.layers.TFSMLayer(folder, call_endpoint="serving_default")
    sample = keras.layers.TFSMLayer(folder, call_endpoint="sample")
    posterior = keras.layers.TFSMLayer(folder, call_endpoint="posterior")
    inputs = keras.Input(shape=())
    model = keras.Model(inputs, restore(inputs)["image"])
    np.savez(out,
             tf_restore=loaded.signatures["serving_default"]()["image"].numpy(),
             tf_sample=loaded.signatures["sample"](seed=seed)["image"].numpy(),
             keras_restore=restore(tf.zeros(()))["image"].numpy(),
             keras_model=model(tf.zeros((1,))).numpy(),
             keras_sample=sample(seed)["image"].numpy(),
             keras_mean=posterior(tf.zeros(()))["mean"].numpy(),
             keras_samples=posterior(tf.zeros(()))["samples"].numpy())
    assert not any(name.startswith("tfdip") and module for name, module in sys.modules.items())
""")


def test_loads_with_tf_and_keras_tfsmlayer_in_a_process_without_tfdip(bayesian_run, tmp_path):
    dip, folder = bayesian_run
    out = tmp_path / "outputs.npz"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_TFDIP, folder, str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = np.load(out)
    expected = dip.restored("last")[None]
    for key in ("tf_restore", "keras_restore", "keras_model"):
        np.testing.assert_allclose(outputs[key], expected, atol=1e-5, err_msg=key)
    in_process_sample = call_exported(folder, "sample", int64(5))["image"]
    np.testing.assert_allclose(outputs["tf_sample"], in_process_sample, atol=1e-6)
    np.testing.assert_allclose(outputs["keras_sample"], in_process_sample, atol=1e-6)
    np.testing.assert_allclose(outputs["keras_mean"][0], dip.moments.mean.numpy(), atol=1e-6)
    assert int(outputs["keras_samples"]) == int(dip.moments.count.numpy())


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_existing_folders_are_refused_unless_overwriting_a_saved_model(sgd_dip, tmp_path):
    dip = sgd_dip
    (tmp_path / "empty").mkdir()
    export_dip(dip, tmp_path / "empty")  # an empty folder is fine
    with pytest.raises(TfdipError, match="not empty.*overwrite=True"):
        export_dip(dip, tmp_path / "empty")
    before = dip.restored("last")
    dip.fit(2, log_every=2)
    export_dip(dip, tmp_path / "empty", overwrite=True)
    image = call_exported(tmp_path / "empty", "restore")["image"][0]
    np.testing.assert_allclose(image, dip.restored("last"), atol=1e-5)
    assert np.abs(image - before).max() > 1e-4

    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.png").write_bytes(b"not a saved model")
    for overwrite in (False, True):
        with pytest.raises(TfdipError, match=str(other)):
            export_dip(dip, other, overwrite=overwrite)
    assert [p.name for p in other.iterdir()] == ["holiday.png"]
    assert leftovers(tmp_path) == []


def test_bad_targets_raise_tfdip_errors(bayesian_run, tmp_path):
    dip, _ = bayesian_run
    (tmp_path / "file").write_text("x")
    with pytest.raises(TfdipError, match="is a file"):
        export_dip(dip, tmp_path / "file")
    with pytest.raises(TfdipError, match="does not exist"):
        export_dip(dip, tmp_path / "missing" / "model")
    with pytest.raises(TfdipError, match="empty path"):
        export_dip(dip, "")
    with pytest.raises(TfdipError, match="needs a DeepImagePrior"):
        export_dip(dip.generator, tmp_path / "generator")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_check_export_target_accepts_new_empty_and_saved_model_folders(bayesian_run, tmp_path):
    _, exported = bayesian_run
    assert check_export_target(tmp_path / "new") == tmp_path / "new"
    assert check_export_target(tmp_path) == tmp_path  # empty
    assert check_export_target(exported, overwrite=True) == Path(exported)
    with pytest.raises(TfdipError, match="not empty"):
        check_export_target(exported)
    assert not (tmp_path / "new").exists()


def test_a_failed_write_leaves_the_previous_export_intact(bayesian_run, tmp_path, monkeypatch):
    dip, exported = bayesian_run
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    previous = call_exported(folder, "restore")["image"]
    save = tf.saved_model.save

    def save_then_fail(module, directory, **kwargs):
        save(module, directory, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
    with pytest.raises(TfdipError, match="No space left"):
        export_dip(dip, folder, overwrite=True)
    np.testing.assert_array_equal(
        call_exported(folder, "restore")["image"], previous)
    assert leftovers(tmp_path) == []
