"""``iterations="auto"``: burn-in and stopping read from the chain, as state a resumed run keeps.

The decisions of a run are checked against independent computations on what the run did: the
drift test on the Gaussian negative log-likelihood recomputed in NumPy from every step's output,
the Monte Carlo error of the collected samples, and the self-thinning trace against every sample.
"""
import json

import keras
import numpy as np
import pytest

from tfdip.errors import TfdipError, TfdipWarning
from tfdip.inference.budget import BudgetRules, detect_burn_in
from tfdip.inference.diagnostics import monte_carlo_error
from tfdip.outputs import restoration_report
from tfdip.physics import Denoising
from tfdip.recipes import DEFAULT_MAX_ITERATIONS, make_recipe
from tfdip.chains import build_generator
from tfdip.dip import DeepImagePrior
from tfdip.restoration import restore

MINI = dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))
SIGMA = 0.1
# Small rules so that a 16x16 run decides within a few hundred steps.
RULES = BudgetRules(check_every=10, window=40, num_batches=4, min_rows=30, threshold=0.4)


def _noisy():
    clean = np.random.default_rng(0).uniform(size=(16, 16, 3)).astype(np.float32)
    return Denoising(SIGMA).simulate(clean, seed=1)


def _auto(**extra):
    return dict(method="psgld", iterations="auto", max_iterations=1500, budget=RULES, thin=1,
                net_options=MINI, seed=3, **extra)


class _Outputs(keras.callbacks.Callback):
    """Every step's output (the sample a step may contribute), read back after the step."""

    def __init__(self):
        super().__init__()
        self.outputs = []

    def on_train_batch_end(self, batch, logs=None):
        self.outputs.append(self.model.last_output.numpy()[0])


def test_auto_run_starts_sampling_after_the_drift_and_stops_by_the_rule():
    noisy = _noisy()
    record = _Outputs()
    result = restore(noisy, Denoising(SIGMA), callbacks=[record], **_auto())
    chain = result.budget["chains"][0]
    assert chain["reason"] == "rule met" and chain["stopped_at"] == result.iterations < 1500
    outputs = np.stack(record.outputs)
    assert len(outputs) == result.iterations
    # The loss of step t is -log p(y | x_t) = ||x_t - y||^2 / (2 sigma^2) + const.
    losses = ((outputs - noisy) ** 2).sum(axis=(1, 2, 3)) / (2 * SIGMA**2)
    assert chain["burn_in_end"] == detect_burn_in(losses, window=40, check_every=10,
                                                  num_batches=4)
    # Samples are the outputs of steps burn_in_end, ..., stopped_at - 1 (thin 1).
    samples = outputs[chain["burn_in_end"]:chain["stopped_at"]]
    assert result.samples == len(samples)
    np.testing.assert_allclose(result.image, np.clip(samples.mean(axis=0), 0, 1), atol=1e-5)
    np.testing.assert_allclose(result.std, samples.std(axis=0), atol=1e-5)
    # The rule held at the stop, and not at the check before it.
    index = result.models[0].trace_index.numpy()
    flat = samples.reshape(len(samples), -1)[:, index]
    assert monte_carlo_error([flat]).median_ratio < RULES.threshold
    assert (len(flat) - 10 < RULES.min_rows
            or monte_carlo_error([flat[:-10]]).median_ratio >= RULES.threshold)
    assert result.diagnostics["mc_error_ratio"] == pytest.approx(
        monte_carlo_error([flat]).median_ratio, rel=1e-6)
    report = json.loads(json.dumps(restoration_report(result, task="denoising", chains=1,
                                                      observation=noisy)))
    assert report["budget"]["chains"][0] == dict(chain, chain=0, steps=result.iterations)
    assert report["iterations"] == result.iterations
    cost = monte_carlo_error([flat]).cost_db  # infinite when a pixel's ESS is 0: null in JSON
    assert report["mc_error_cost_db"] == (pytest.approx(cost) if np.isfinite(cost) else None)


def test_interrupted_auto_run_resumes_to_the_same_decisions_and_result(tmp_path):
    noisy = _noisy()
    straight = restore(noisy, Denoising(SIGMA), **_auto())
    end = straight.budget["chains"][0]["burn_in_end"]
    # Interrupt once before burn-in ends and once while sampling; checkpoints every 7 steps.
    for stop in (end - 15, end + 12):
        with pytest.raises(KeyboardInterrupt):
            restore(noisy, Denoising(SIGMA), checkpoint_dir=str(tmp_path), checkpoint_every=7,
                    resume=stop != end - 15, callbacks=[_InterruptAt(stop)], **_auto())
    resumed = restore(noisy, Denoising(SIGMA), checkpoint_dir=str(tmp_path), checkpoint_every=7,
                      resume=True, **_auto())
    assert resumed.budget == straight.budget and resumed.samples == straight.samples
    np.testing.assert_allclose(resumed.image, straight.image, atol=1e-6)
    np.testing.assert_allclose(resumed.std, straight.std, atol=1e-6)
    again = restore(noisy, Denoising(SIGMA), checkpoint_dir=str(tmp_path), resume=True, **_auto())
    assert again.history[0] == {} and again.budget == straight.budget  # finished: not rerun


class _InterruptAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.step.numpy()) >= self.step:
            raise KeyboardInterrupt


@pytest.mark.filterwarnings("ignore:chain\\(s\\) 1 reached the cap")  # chain 1 may need longer
def test_several_chains_decide_each_and_pool_their_samples():
    result = restore(_noisy(), Denoising(SIGMA), chains=2, **_auto())
    chains = result.budget["chains"]
    assert [c["chain"] for c in chains] == [0, 1]
    counts = [int(m.moments.count.numpy()) for m in result.models]
    assert result.samples == sum(counts)
    for chain, count in zip(chains, counts):
        assert count == chain["stopped_at"] - chain["burn_in_end"]
    assert result.iterations == max(c["steps"] for c in chains)
    assert result.diagnostics["num_chains"] == 2 and result.diagnostics["rhat_max"] is not None


def test_a_binding_cap_says_so_and_a_run_that_never_settles_is_refused():
    strict = BudgetRules(check_every=10, window=40, num_batches=4, min_rows=10, threshold=1e-3)
    with pytest.warns(TfdipWarning, match="reached the cap of 350 steps"):
        result = restore(_noisy(), Denoising(SIGMA), **dict(_auto(), budget=strict,
                                                             max_iterations=350))
    assert result.budget["chains"][0]["reason"] == "cap reached"
    assert result.budget["chains"][0]["stopped_at"] == result.iterations == 350
    with pytest.raises(TfdipError, match=r"max_iterations \(50\) must be more than 50 steps"):
        restore(_noisy(), Denoising(SIGMA), **dict(_auto(), max_iterations=50))


def test_the_trace_thins_itself_when_full_and_keeps_every_stride_th_sample():
    _, generator = build_generator("skip", 3, MINI)
    dip = DeepImagePrior(generator, Denoising(SIGMA), _noisy(), size_multiple=4, burn_in=3,
                         thin=1, max_samples=5)
    dip.compile(optimizer=keras.optimizers.Adam(0.01))
    record = _Outputs()
    dip.fit(40, log_every=40, callbacks=[record])
    samples = np.stack(record.outputs)[3:].reshape(37, -1)[:, dip.trace_index.numpy()]
    # 37 samples in 5 rows: the stride doubles at samples 5, 10 and 20; kept: 0, 8, 16, 24, 32.
    assert int(dip.trace_stride.numpy()) == 8
    np.testing.assert_allclose(dip.traced_samples(), samples[::8], atol=1e-6)


@pytest.mark.parametrize("method, options, message", [
    ("sgd", {}, "give sgd a number of iterations"),
    ("mala", {}, "give mala a number of iterations"),
    ("psgld", {"burn_in": 100}, "burn-in is read from the chain"),
])
def test_auto_is_refused_where_it_does_not_apply(method, options, message):
    with pytest.raises(TfdipError, match=message):
        make_recipe(method, "denoising", iterations="auto", **options)


def test_auto_budget_is_chosen_by_name_and_a_number_still_works():
    assert not make_recipe("psgld", "denoising").is_auto  # not the default (README)
    recipe = make_recipe("psgld", "denoising", iterations="auto")
    assert recipe.is_auto and recipe.burn_in == "auto"
    assert recipe.iterations == DEFAULT_MAX_ITERATIONS
    fixed = make_recipe("psgld", "denoising", iterations=300)
    assert not fixed.is_auto and fixed.burn_in == 105
    with pytest.raises(TfdipError, match="max_iterations .*apply to iterations 'auto'"):
        make_recipe("psgld", "denoising", iterations=300, max_iterations=500)
    with pytest.raises(TfdipError, match="whole number >= 1 or 'auto'"):
        make_recipe("psgld", "denoising", iterations="soon")
