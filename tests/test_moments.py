"""RunningMoments against NumPy on random streams; Chan merge; ring buffer; checkpoints."""
import numpy as np
import pytest
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.inference import RunningMoments, combine


def _stream(n, shape=(4, 5, 3), seed=0, offset=0.5):
    """Samples with a large common offset, where a naive sum-of-squares variance loses digits."""
    rng = np.random.default_rng(seed)
    return offset + rng.normal(scale=0.01, size=(n, *shape)) * rng.uniform(0.5, 2.0, shape)


@pytest.mark.parametrize("dtype, rtol", [(tf.float32, 2e-4), (tf.float64, 1e-10)])
def test_mean_and_variance_match_numpy(dtype, rtol):
    samples = _stream(300)
    moments = RunningMoments((4, 5, 3), dtype=dtype)
    for x in samples:
        moments.update(x)
    assert int(moments.count.numpy()) == 300
    assert moments.mean.dtype == dtype
    np.testing.assert_allclose(moments.mean.numpy(), samples.mean(0), rtol=rtol)
    np.testing.assert_allclose(moments.variance.numpy(), samples.var(0), rtol=50 * rtol)
    np.testing.assert_allclose(moments.std.numpy(), samples.std(0), rtol=50 * rtol)
    np.testing.assert_allclose(moments.std_channel_mean.numpy(), samples.std(0).mean(-1),
                               rtol=50 * rtol)


def test_update_inside_tf_function():
    samples = _stream(50, seed=1).astype(np.float32)
    moments = RunningMoments((4, 5, 3))

    @tf.function
    def run(stream):
        for x in stream:
            moments.update(x)

    run(tf.constant(samples))
    np.testing.assert_allclose(moments.mean.numpy(), samples.mean(0), rtol=1e-5)
    np.testing.assert_allclose(moments.variance.numpy(), samples.var(0), rtol=1e-2)


def test_empty_moments_are_zero_and_reset_forgets():
    moments = RunningMoments((2, 3), keep_samples=2)
    np.testing.assert_array_equal(moments.variance.numpy(), 0.0)
    moments.update(np.ones((2, 3)))
    moments.update(3 * np.ones((2, 3)))
    np.testing.assert_allclose(moments.variance.numpy(), 1.0)
    moments.reset()
    assert int(moments.count.numpy()) == 0
    np.testing.assert_array_equal(moments.mean.numpy(), 0.0)
    np.testing.assert_array_equal(moments.m2.numpy(), 0.0)
    assert moments.samples.shape[0] == 0


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_merge_equals_pooled_stream(dtype):
    chains = [_stream(n, seed=seed, offset=seed) for seed, n in enumerate([40, 7, 100])]
    parts = []
    for chain in chains:
        moments = RunningMoments((4, 5, 3), dtype=dtype)
        for x in chain:
            moments.update(x)
        parts.append(moments)
    pooled = np.concatenate(chains)
    for merged in (parts[0].merge(parts[1]).merge(parts[2]), combine(parts)):
        assert int(merged.count.numpy()) == pooled.shape[0]
        np.testing.assert_allclose(merged.mean.numpy(), pooled.mean(0), rtol=1e-5)
        np.testing.assert_allclose(merged.variance.numpy(), pooled.var(0), rtol=1e-4)
    # Inputs are unchanged and a single chain combines to a copy.
    assert int(parts[0].count.numpy()) == 40
    single = combine(parts[:1])
    np.testing.assert_allclose(single.variance.numpy(), chains[0].var(0), rtol=1e-4)


def test_merge_rejects_mismatched_shapes():
    with pytest.raises(TfdipError, match="shapes and dtypes must match"):
        RunningMoments((2, 2)).merge(RunningMoments((2, 3)))
    with pytest.raises(TfdipError, match="at least one"):
        combine([])


def test_ring_buffer_keeps_the_last_samples_in_order():
    moments = RunningMoments((2,), keep_samples=4)
    values = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    for n, x in enumerate(values, start=1):
        moments.update(x)
        np.testing.assert_array_equal(moments.samples.numpy(), values[max(0, n - 4):n])
    with pytest.raises(TfdipError, match="keep_samples"):
        RunningMoments((2,)).samples  # noqa: B018


def test_checkpoint_mid_stream_continues_identically(tmp_path):
    samples = _stream(30, seed=3).astype(np.float32)
    moments = RunningMoments((4, 5, 3), keep_samples=5)
    for x in samples[:13]:
        moments.update(x)
    path = tf.train.Checkpoint(moments=moments).save(str(tmp_path / "ckpt"))
    for x in samples[13:]:
        moments.update(x)

    resumed = RunningMoments((4, 5, 3), keep_samples=5)
    tf.train.Checkpoint(moments=resumed).restore(path).assert_consumed()
    assert int(resumed.count.numpy()) == 13
    for x in samples[13:]:
        resumed.update(x)
    for name in ("count", "mean", "m2", "samples"):
        np.testing.assert_array_equal(getattr(resumed, name).numpy(),
                                      getattr(moments, name).numpy())


def test_bad_input_raises():
    with pytest.raises(TfdipError, match="does not match"):
        RunningMoments((2, 3)).update(np.zeros((3, 2)))
    with pytest.raises(TfdipError, match="keep_samples"):
        RunningMoments((2,), keep_samples=-1)
    with pytest.raises(TfdipError, match="float"):
        RunningMoments((2,), dtype=tf.int32)
