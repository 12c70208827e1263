"""Runs you can trust: independent random streams per chain and purpose, checkpoints checked and
resumed in every situation, float64 runs, full disks."""
import errno
import itertools
import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdip import checkpoints as checkpoints_module
from tfdip.checkpoints import ChainCheckpoint
from tfdip.errors import TfdipError, TfdipWarning
from tfdip.inference.draws import standard_normal
from tfdip.physics import Denoising, Inpainting
from tfdip.recipes import make_recipe
from tfdip.restoration import make_dip, restore, run_chain
from tfdip.seeds import PURPOSES, chain_seeds

MINI = dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))


def _noisy(size=16, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(size=(size, size, 3)).astype(np.float32)
    return Denoising(0.1).simulate(clean, seed=seed)


# --- independent randomness -----------------------------------------------------------------------
def test_chain_seeds_follow_the_seed_sequence_contract():
    """Chain k's seeds are those of SeedSequence(seed).spawn(n)[k].spawn(len(PURPOSES)),
    whatever n: a pure function of (seed, k)."""
    for chains in (1, 3, 7):
        for k, child in enumerate(np.random.SeedSequence(11).spawn(chains)):
            states = [int(c.generate_state(1, np.uint64)[0] >> np.uint64(33))
                      for c in child.spawn(len(PURPOSES))]
            seeds = chain_seeds(11, k)
            assert [getattr(seeds, p) for p in PURPOSES] == states
    values = [getattr(chain_seeds(s, k), p) for s in (0, 1) for k in range(4) for p in PURPOSES]
    assert len(set(values)) == len(values)
    with pytest.raises(TfdipError, match="seed"):
        chain_seeds(-1)
    with pytest.raises(TfdipError, match="chain"):
        chain_seeds(0, -2)


def _streams(seed, chain, draws=3):
    """Standard-normal-ish draws of every random stream of one chain, through the real code:
    {(purpose, t): 1-D array}."""
    recipe = make_recipe("paper", "denoising", iterations=10, burn_in=2)
    dip = make_dip(_noisy(), Denoising(0.1), recipe, net_options=MINI, seed=seed, chain=chain)
    dip._build_optimizer()
    streams = {("input", 0): (dip.z.numpy().ravel() - 0.05) / (0.1 / np.sqrt(12))}
    kernels = [v for v in dip.generator.trainable_variables if len(v.shape) == 4]
    streams[("weights", 0)] = np.concatenate([k.numpy().ravel() / np.std(k.numpy())
                                              for k in kernels])
    for t in range(draws):
        streams[("jitter", t)] = standard_normal(
            dip.z.shape, dip.jitter_seed.next(), dip.z.dtype).numpy().ravel()
    optimizer = dip.optimizer
    for t in range(draws):
        optimizer.iterations.assign(t)
        for i, variable in enumerate(kernels):
            streams[("sampler", t * 100 + i)] = optimizer.standard_normal(variable).numpy().ravel()
    return streams


def test_streams_of_chains_and_purposes_are_uncorrelated():
    chain0, chain1 = _streams(0, 0), _streams(0, 1)
    pooled = {(0, *key): v for key, v in chain0.items()}
    pooled.update({(1, *key): v for key, v in chain1.items()})
    worst = 0.0
    for (a, x), (b, y) in itertools.combinations(pooled.items(), 2):
        n = min(x.size, y.size, 2000)
        corr = np.corrcoef(x[:n], y[:n])[0, 1]
        worst = max(worst, abs(corr) * np.sqrt(n))
    # ~700 pairs of independent streams: max |corr| sqrt(n) ~ sqrt(2 log 1400) = 3.8 under
    # independence; shared keys (the old seed + k scheme) give |corr| = 1, i.e. sqrt(n) >= 20.
    assert worst < 5.5, worst


def test_chain_k_jitter_is_not_chain_k_plus_1_sampler_noise():
    """The old scheme seeded chain k's jitter with seed + k + 1, chain k+1's optimizer noise
    with seed + k + 1: the same Philox keys, identical draws."""
    for k in range(3):
        jitter = _streams(5, k)
        noise = _streams(5, k + 1)
        for (jp, jt), x in jitter.items():
            if jp != "jitter":
                continue
            for (sp, st), y in noise.items():
                if sp == "sampler":
                    n = min(x.size, y.size)
                    assert not np.allclose(x[:n], y[:n])
                    assert abs(np.corrcoef(x[:n], y[:n])[0, 1]) < 5.5 / np.sqrt(n)


def test_running_chain_k_alone_reproduces_chain_k_of_a_run():
    noisy = _noisy()
    options = dict(method="paper", iterations=8, burn_in=2, thin=1, net_options=MINI, seed=3)
    both = restore(noisy, Denoising(0.1), chains=2, **options)
    recipe = make_recipe("paper", "denoising", iterations=8, burn_in=2, thin=1)
    alone = run_chain(noisy, Denoising(0.1), recipe, chain=1, seed=3, net_options=MINI).model
    np.testing.assert_array_equal(both.models[1].moments.mean.numpy(), alone.moments.mean.numpy())
    np.testing.assert_array_equal(both.models[1].trace.numpy(), alone.trace.numpy())
    assert not np.allclose(both.models[0].moments.mean.numpy(), alone.moments.mean.numpy())


# --- float64 --------------------------------------------------------------------------------------
@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


@pytest.mark.parametrize("method", ["paper", "psgld"])
def test_a_float64_policy_runs_in_float64(float64, method):
    recipe = make_recipe(method, "denoising", iterations=6, burn_in=2)
    dip = make_dip(_noisy(), Denoising(0.1), recipe, net_options=MINI)
    dip.fit(6)
    for variable in (dip.ema, dip.last_output, dip.trace, dip.moments.mean):
        assert variable.dtype == tf.float64
    assert int(dip.moments.count.numpy()) == 4


# --- checkpoints and resume -----------------------------------------------------------------------
def test_resume_with_nothing_saved_starts_from_the_beginning_and_says_so(tmp_path):
    noisy = _noisy()
    options = dict(method="sgd", iterations=6, net_options=MINI, seed=1)
    straight = restore(noisy, Denoising(0.1), **options)
    with pytest.warns(TfdipWarning, match="starting the run from the beginning"):
        resumed = restore(noisy, Denoising(0.1), checkpoint_dir=str(tmp_path / "new"),
                          resume=True, **options)
    np.testing.assert_array_equal(resumed.image, straight.image)
    assert ChainCheckpoint(tmp_path / "new" / "chain0").latest()[0] == 6


def test_resume_starts_chains_that_had_not_saved_and_keeps_finished_ones(tmp_path):
    noisy = _noisy()
    options = dict(method="psgld", iterations=8, burn_in=2, net_options=MINI, seed=2,
                   checkpoint_dir=str(tmp_path), checkpoint_every=3)
    straight = restore(noisy, Denoising(0.1), chains=2, **{k: v for k, v in options.items()
                                                           if not k.startswith("checkpoint")})
    # A run of one chain finished; chain 1 never started. Resuming with two chains completes it.
    restore(noisy, Denoising(0.1), chains=1, **options)
    resumed = restore(noisy, Denoising(0.1), chains=2, resume=True, **options)
    assert resumed.history[0] == {}      # chain 0 was finished: nothing rerun
    np.testing.assert_allclose(resumed.image, straight.image, atol=1e-6)
    np.testing.assert_allclose(resumed.std, straight.std, atol=1e-6)


@pytest.mark.parametrize("change, word", [
    (dict(seed=9), "seed"), (dict(method="paper"), "method"), (dict(iterations=9), "iterations"),
    (dict(burn_in=3), "burn_in"), (dict(net_options=dict(MINI, channels_skip=(1, 1))), "net"),
    (dict(learning_rate=0.5), "learning_rate"), (dict(image=True), "observation"),
    (dict(physics=Denoising(0.2)), "sigma"),
])
def test_resume_refuses_the_checkpoints_of_another_run(tmp_path, change, word, capsys):
    noisy = _noisy()
    base = dict(method="psgld", iterations=6, burn_in=2, net_options=MINI, seed=1,
                checkpoint_dir=str(tmp_path))
    restore(noisy, Denoising(0.1), **base)
    changed = dict(base, **change)
    physics = changed.pop("physics", Denoising(0.1))
    observation = noisy[::-1] if changed.pop("image", False) else noisy
    with pytest.raises(TfdipError, match=word) as raised:
        restore(observation, physics, resume=True, **changed)
    message = str(raised.value)
    assert "\n" not in message and "another run" in message


def test_a_new_run_does_not_overwrite_the_checkpoints_of_another(tmp_path):
    noisy = _noisy()
    options = dict(method="sgd", iterations=4, net_options=MINI, checkpoint_dir=str(tmp_path))
    restore(noisy, Denoising(0.1), **options)
    with pytest.raises(TfdipError, match="already holds"):
        restore(noisy, Denoising(0.1), **options)


def test_settings_name_the_mask_of_inpainting(tmp_path):
    noisy = _noisy()
    mask = np.ones((16, 16), bool)
    mask[::3] = False
    base = dict(method="sgd", iterations=4, net_options=MINI, checkpoint_dir=str(tmp_path))
    restore(noisy, Inpainting(mask), **base)
    with pytest.raises(TfdipError, match="mask"):
        restore(noisy, Inpainting(~mask), resume=True, **base)
    settings = json.loads((tmp_path / "run.json").read_text())["settings"]
    assert settings["task"] == "inpainting" and settings["method"] == "sgd"


@pytest.mark.parametrize("option", [dict(callbacks=[keras.callbacks.History()]),
                                    dict(log_every=2), dict(checkpoint_dir="{d}"),
                                    dict(checkpoint_dir="{d}", resume=True),
                                    dict(input_noise_std=0.1)])
def test_mcmc_methods_refuse_options_they_cannot_honour(tmp_path, option):
    option = {k: v.format(d=tmp_path) if isinstance(v, str) else v for k, v in option.items()}
    with pytest.raises(TfdipError, match="not with method mala"):
        restore(_noisy(), Denoising(0.1), method="mala", iterations=4, burn_in=2, **option)
    assert list(tmp_path.iterdir()) == []


def test_options_without_their_folder_are_refused():
    with pytest.raises(TfdipError, match="checkpoint_dir"):
        restore(_noisy(), Denoising(0.1), method="sgd", iterations=2, checkpoint_every=1)
    with pytest.raises(TfdipError, match="checkpoint"):
        restore(_noisy(), Denoising(0.1), method="sgd", iterations=2, resume=True)


@pytest.mark.parametrize("every", [0, -3, 2.5, True])
def test_checkpoint_intervals_below_one_step_are_refused(tmp_path, every):
    with pytest.raises(TfdipError, match="checkpoint_every"):
        restore(_noisy(), Denoising(0.1), method="sgd", iterations=2, checkpoint_every=every,
                checkpoint_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


# --- full disk ------------------------------------------------------------------------------------
def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    noisy = _noisy()
    options = dict(method="paper", iterations=8, burn_in=2, net_options=MINI, seed=4,
                   checkpoint_dir=str(tmp_path), checkpoint_every=4)
    original = tf.train.Checkpoint.write

    def full_after_step_4(self, prefix, *args, **kwargs):
        path = original(self, prefix, *args, **kwargs)   # files half written, then the disk fills
        if "step000000008" in prefix:
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return path

    monkeypatch.setattr(tf.train.Checkpoint, "write", full_after_step_4)
    with pytest.raises(TfdipError, match="no space left") as raised:
        restore(noisy, Denoising(0.1), **options)
    assert "\n" not in str(raised.value) and "previous checkpoint is kept" in str(raised.value)
    folder = tmp_path / "chain0"
    assert ChainCheckpoint(folder).latest()[0] == 4
    assert not [p for p in os.listdir(folder) if "step000000008" in p]   # nothing half written
    monkeypatch.setattr(tf.train.Checkpoint, "write", original)
    resumed = restore(noisy, Denoising(0.1), resume=True, **options)
    straight = restore(noisy, Denoising(0.1), **{k: v for k, v in options.items()
                                                 if not k.startswith("checkpoint")})
    np.testing.assert_allclose(resumed.image, straight.image, atol=1e-6)


def test_full_disk_while_publishing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    noisy = _noisy()
    recipe = make_recipe("sgd", "denoising", iterations=4)
    dip = make_dip(noisy, Denoising(0.1), recipe, net_options=MINI)
    dip.fit(2)
    dip._build_optimizer()
    store = ChainCheckpoint(tmp_path)
    store.save(dip.checkpoint(), 2)
    dip.fit(2)

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints_module.os, "fsync", full_disk)
    with pytest.raises(TfdipError, match="no space left"):
        store.save(dip.checkpoint(), 4)
    assert store.latest()[0] == 2
    assert len([p for p in os.listdir(tmp_path) if p.startswith("step")]) == 2  # .index, .data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other = make_dip(noisy, Denoising(0.1), recipe, net_options=MINI)
        other._build_optimizer()
        assert store.restore(other.checkpoint()) == 2
