"""Mixed precision and XLA keep the samplers right; several steps per call; the step timer; the
GPU's memory in the memory check.

The samplers are checked through the real training step of :class:`tfdip.DeepImagePrior` on a
conjugate model: a 1x1 convolution without bias is a linear map, so with K output channels that
all observe the same data it runs K independent chains of Bayesian linear regression, whose
posterior is known in closed form (tests/test_optimizers.py).
"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_optimizers import _linear_regression_problem

from tfdip import DeepImagePrior
from tfdip.chains import StepTimer
from tfdip.cli import main
from tfdip.errors import TfdipError
from tfdip.inference import SGLD
from tfdip.physics import Denoising
from tfdip.precision import precision_policy
from tfdip.recipes import make_recipe
from tfdip.restoration import make_dip, restore, run_chain

MINI = dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))
CHAINS = 256


def _noisy(size=16, seed=0):
    rng = np.random.default_rng(seed)
    return Denoising(0.1).simulate(rng.uniform(size=(size, size, 3)).astype(np.float32), seed=seed)


def _regression_dip(precision, optimizer, *, burn_in, thin, samples):
    """A DIP whose generator is x = Z w (1x1 conv, 2 inputs, CHAINS outputs) on the 12 rows of
    the regression problem laid out as a 3x4 image; Z is rounded to multiples of 1/8 so that it
    is exact in bfloat16 and float16. Returns the model and the closed-form posterior of the
    output's entries (mean (12,), variance (12,))."""
    X, y, noise_sigma, prior_sigma, _, _ = _linear_regression_problem()
    X = np.round(X * 8) / 8
    covariance = np.linalg.inv(X.T @ X / noise_sigma**2 + np.eye(2) / prior_sigma**2)
    mean = covariance @ X.T @ y / noise_sigma**2
    keras.utils.set_random_seed(0)
    with precision_policy(precision):
        generator = keras.Sequential([keras.Input((3, 4, 2)),
                                      keras.layers.Conv2D(CHAINS, 1, use_bias=False)])
    observation = np.repeat(y.reshape(3, 4, 1), CHAINS, axis=-1).astype(np.float32)
    dip = DeepImagePrior(generator, Denoising(noise_sigma), observation, likelihood="gaussian",
                         rollback_db=None, ema_decay=None, burn_in=burn_in, thin=thin,
                         trace_pixels=4, max_samples=samples)
    dip.z.assign(X.reshape(1, 3, 4, 2).astype(np.float32))
    dip.compile(optimizer=optimizer(prior_sigma))
    return dip, X @ mean, np.einsum("ij,jk,ik->i", X, covariance, X)


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_sgld_reaches_the_conjugate_posterior_in_every_precision(precision):
    _, _, noise_sigma, prior_sigma, _, covariance = _linear_regression_problem()
    largest = np.linalg.eigvalsh(np.linalg.inv(covariance)).max()
    eps = 0.04 / largest  # Euler bias of the covariance ~ eps * lambda / 4 = 1%
    burn_in, thin, samples = 1500, 10, 150
    dip, mean, variance = _regression_dip(
        precision, lambda sigma: SGLD(eps, prior_sigma=sigma, seed=3), burn_in=burn_in,
        thin=thin, samples=samples)
    dip.fit(burn_in + thin * samples, log_every=burn_in + thin * samples)
    assert dip.moments.mean.dtype == tf.float32
    assert int(dip.moments.count.numpy()) == samples
    if precision == "float16":
        assert isinstance(dip.optimizer, keras.optimizers.LossScaleOptimizer)
    # Per chain k (channel) and entry i: the chain's sample mean and population variance.
    chain_means = dip.moments.mean.numpy().reshape(12, CHAINS)
    chain_vars = (dip.moments.m2.numpy() / samples).reshape(12, CHAINS)
    grand = chain_means.mean(axis=1, keepdims=True)
    # Pooled over the chains (law of total variance): within-chain + between-chain spread.
    pooled = chain_vars + (chain_means - grand) ** 2 * CHAINS / (CHAINS - 1)
    for estimates, expected, rel_bias in ((chain_means, mean, 0.0), (pooled, variance, 0.02)):
        centre = estimates.mean(axis=1)
        se = estimates.std(axis=1, ddof=1) / np.sqrt(CHAINS)
        assert np.all(se < 0.05 * np.sqrt(variance)), se
        assert np.all(np.abs(centre - expected) < 4 * se + rel_bias * np.abs(expected)), (
            precision, centre, expected, se)


def test_float16_drift_is_the_true_gradient():
    """A noise-free SGLD step (T = 0) under mixed_float16 moves the weights by
    -eps / 2 * (grad U + w / prior_sigma^2) computed in NumPy: the loss is scaled before the
    backward pass and the gradient unscaled after it (without the scaling the drift would be
    2^15 times too small). Steps whose scaled gradient overflows float16 are skipped (the loss
    scale halves); the first applied step is compared."""
    eps = 2.0**-10
    dip, _, _ = _regression_dip("float16", lambda sigma: SGLD(eps, prior_sigma=sigma,
                                                              temperature=0.0),
                                burn_in=None, thin=1, samples=1)
    assert isinstance(dip.optimizer, keras.optimizers.LossScaleOptimizer)
    kernel = dip.generator.trainable_variables[0]
    for _ in range(20):
        before = kernel.numpy().astype(np.float64)
        dip.fit(1)
        if int(dip.optimizer.iterations.numpy()) == 1:
            break
    assert int(dip.optimizer.iterations.numpy()) == 1
    X, y, noise_sigma, prior_sigma, _, _ = _linear_regression_problem()
    X = np.round(X * 8) / 8
    w = before.reshape(2, CHAINS)
    grad = -X.T @ (y[:, None] - X @ w) / noise_sigma**2 + w / prior_sigma**2
    expected = -0.5 * eps * grad
    np.testing.assert_allclose(kernel.numpy().reshape(2, CHAINS) - w, expected, rtol=0,
                               atol=0.02 * np.abs(expected).max())


def test_the_precision_policy_does_not_leak_and_bad_values_are_refused():
    before = keras.mixed_precision.global_policy().name
    recipe = make_recipe("psgld", "denoising", iterations=2, burn_in=1)
    dip = make_dip(_noisy(), Denoising(0.1), recipe, net_options=MINI, precision="bfloat16")
    assert dip.generator.compute_dtype == "bfloat16"
    assert dip.generator.trainable_variables[0].dtype == "float32"
    assert keras.mixed_precision.global_policy().name == before
    dip.fit(2)
    for variable in (dip.ema, dip.moments.mean, dip.last_output, dip.optimizer.variables[-1]):
        assert variable.dtype == tf.float32
    with pytest.raises(TfdipError, match="precision"):
        restore(_noisy(), Denoising(0.1), method="psgld", precision="float8")
    with pytest.raises(TfdipError, match="precision"):
        restore(_noisy(), Denoising(0.1), method="mala", precision="bfloat16")
    with pytest.raises(TfdipError, match="jit_compile"):
        restore(_noisy(), Denoising(0.1), method="sgd", jit_compile="auto")


# --------------------------------------------------------------------------- XLA
# The skip net (reflection padding, BatchNorm, bilinear up-sampling) compiles slowly: the
# methods run on the small conv stack, the skip net once.
CONV_STACK = dict(net="conv_stack", net_options=dict(channels=8, depth=2))
SKIP = dict(net="skip", net_options=MINI)


@pytest.mark.parametrize("method, noise, net", [
    ("sgd", "fixed", CONV_STACK), ("paper", "fixed", CONV_STACK), ("sgld", "fixed", CONV_STACK),
    ("psgld", "fixed", CONV_STACK), ("psgld", "sampled", SKIP)],
    ids=["sgd", "paper", "sgld", "psgld", "psgld-sampled-noise-skip-net"])
def test_every_method_under_xla_matches_its_run_without_xla(method, noise, net):
    bayesian = {} if method == "sgd" else dict(burn_in=2)
    recipe = make_recipe(method, "denoising", iterations=5, noise=noise, **bayesian)
    runs = []
    for xla in (False, True):
        dip = make_dip(_noisy(), Denoising(0.1), recipe, seed=1, jit_compile=xla, **net)
        assert dip._train_function._jit_compile is xla
        dip.fit(5, log_every=5)
        runs.append(dip)
    plain, xla = runs
    for which in ("last", "ema") + (("mean",) if bayesian else ()):
        np.testing.assert_allclose(xla.restored(which), plain.restored(which), atol=1e-3)
    if bayesian:
        np.testing.assert_allclose(xla.moments.std.numpy(), plain.moments.std.numpy(), atol=1e-3)
    np.testing.assert_allclose(xla.noise_variance.numpy(), plain.noise_variance.numpy(),
                               rtol=1e-3)
    assert int(xla.optimizer.iterations.numpy()) == int(plain.optimizer.iterations.numpy()) == 5


# --------------------------------------------------------------------------- calls and timing
class _EveryStep(keras.callbacks.Callback):
    """Hooks the end of every batch: fit must then run one step per call."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(int(self.model.step.numpy()))


def test_several_steps_per_call_give_the_one_step_per_call_result():
    recipe = make_recipe("psgld", "denoising", iterations=12, burn_in=3, thin=2)
    chunked = run_chain(_noisy(), Denoising(0.1), recipe, seed=2, net_options=MINI,
                        log_every=5, checkpoint_every=None)
    every = _EveryStep()
    stepped = run_chain(_noisy(), Denoising(0.1), recipe, seed=2, net_options=MINI,
                        log_every=5, callbacks=[every])
    assert every.steps == list(range(1, 13))
    # The timer marks the start of every call and the end: the first step alone (it traces),
    # then the rest of the first epoch, then the next epochs (5 steps each, the last 2).
    assert [step for step, _ in chunked.timer.marks] == [0, 1, 5, 10, 12]
    assert chunked.timer.steps == 11
    for a, b in ((chunked.model.moments.mean, stepped.model.moments.mean),
                 (chunked.model.moments.m2, stepped.model.moments.m2)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert chunked.history["loss"] == pytest.approx(stepped.history["loss"], rel=1e-5)


def test_step_timer_leaves_out_the_first_call():
    class Clock:
        now = 0.0

        def __call__(self):
            self.now += 1.0
            return self.now

    clock = Clock()
    timer = StepTimer(clock=clock)

    class Model:
        step = tf.Variable(0, dtype=tf.int64)

    timer.set_model(Model())
    for step, seconds in ((0, 0.0), (1, 500.0), (4, 3.0), (9, 5.0)):   # the first call traces
        Model.step.assign(step)
        clock.now += seconds
        timer.on_train_batch_begin(0)
    timer.on_train_end()
    marks = timer.marks
    assert [s for s, _ in marks] == [0, 1, 4, 9, 9]
    assert timer.steps == 8
    assert timer.seconds_per_step == pytest.approx((marks[-1][1] - marks[1][1]) / 8)
    assert timer.seconds_per_step < 2.0   # 3 + 5 s of later calls (+ 1 per mark) over 8 steps


def test_cli_seconds_per_iteration_leaves_out_tracing(tmp_path, monkeypatch):
    """A run whose tracing takes 3 s more: the report's seconds include them, its seconds per
    iteration do not (the extra time is known; the steps themselves are not timed here)."""
    import time

    original = DeepImagePrior._update

    def slow_to_trace(self):
        time.sleep(3.0)   # Python: runs while tracing, not in the traced steps
        return original(self)

    monkeypatch.setattr(DeepImagePrior, "_update", slow_to_trace)
    noisy = tmp_path / "noisy.npy"
    np.save(noisy, _noisy(size=32))
    report = tmp_path / "r.json"
    assert main(["denoise", str(noisy), "--sigma", "25", "-o", str(tmp_path / "out.png"),
                 "--method", "sgd", "--iterations", "9", "--channels", "8", "--quiet",
                 "--report", str(report), "--precision", "bfloat16"]) == 0
    fields = json.loads(report.read_text())
    assert fields["seconds"] > 3.0
    assert fields["seconds_per_iteration"] * 8 < fields["seconds"] - 3.0


def test_cli_refuses_precision_and_xla_for_mcmc(tmp_path, capsys):
    noisy = tmp_path / "noisy.npy"
    np.save(noisy, _noisy())
    code = main(["denoise", str(noisy), "--sigma", "25", "-o", str(tmp_path / "o.png"),
                 "--method", "mala", "--precision", "float16", "--xla"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--precision, --xla" in err[0]


# --------------------------------------------------------------------------- GPU memory
def test_memory_check_reads_the_gpu_when_one_is_visible(monkeypatch):
    import subprocess

    import tfdip.resources as resources

    calls = []

    def fake_smi(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, stdout="24576\n", stderr="")

    monkeypatch.setattr(resources.tf.config, "list_physical_devices",
                        lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    monkeypatch.setattr(resources.subprocess, "run", fake_smi)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert resources.gpu_memory_bytes() == 24576 * 2**20
    assert calls[0][0] == "nvidia-smi" and calls[0][-2:] == ["--id", "3"]
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 2**50)  # host: plenty
    monkeypatch.setattr(resources, "gpu_memory_bytes", lambda: 64 * 2**20)
    with pytest.raises(TfdipError, match="on the GPU"):
        make_dip(np.zeros((256, 256, 3), np.float32), Denoising(0.1),
                 make_recipe("sgd", "denoising"))
