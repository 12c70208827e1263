"""Langevin optimizers: updates against NumPy transcriptions and TFP, noise statistics,
serialisation, checkpoint resumption and sampling of a conjugate Gaussian posterior."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError
from tfdip.inference import PSGLD, SGLD, LangevinDecay, NoisyAdam


def _step(optimizer, variables, grads):
    """One ``apply_gradients`` inside ``tf.function`` (building the optimizer first)."""
    optimizer.build(variables)

    @tf.function
    def apply():
        optimizer.apply_gradients(zip(grads, variables))

    apply()


def _noise_of_next_step(optimizer, variable):
    """The standard normal draw the next update of ``variable`` will use."""
    return optimizer.standard_normal(variable).numpy()


# ----------------------------------------------------------------------------- SGLD
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgld_update_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    w0, g = rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=(3, 4)).astype(dtype)
    eps, prior_sigma, temperature = 2.0**-7, 0.7, 0.5  # eps exact in the float32 lr variable
    w = tf.Variable(w0)
    opt = SGLD(eps, prior_sigma=prior_sigma, temperature=temperature, seed=3)
    opt.build([w])
    xi = _noise_of_next_step(opt, w)
    _step(opt, [w], [tf.constant(g)])
    expected = w0 - eps / 2 * (g + w0 / prior_sigma**2) + np.sqrt(eps * temperature) * xi
    assert w.dtype == dtype
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_sgld_noise_is_standard_normal_and_fresh_each_step():
    w = tf.Variable(tf.zeros(20000))
    opt = SGLD(0.04, prior_sigma=None, seed=5)
    increments = []
    for _ in range(2):
        before = w.numpy()
        _step(opt, [w], [tf.zeros(20000)])
        increments.append((w.numpy() - before) / np.sqrt(0.04))
    for xi in increments:
        assert abs(xi.mean()) < 4 / np.sqrt(xi.size)
        assert abs(xi.std() - 1) < 4 / np.sqrt(2 * xi.size)
    assert abs(np.corrcoef(*increments)[0, 1]) < 4 / np.sqrt(xi.size)


def test_sgld_schedule_and_flat_prior_at_zero_temperature():
    schedule = LangevinDecay(a=0.1, b=2.0, gamma=0.6)
    w = tf.Variable([1.0, -2.0], dtype=tf.float64)
    opt = SGLD(schedule, prior_sigma=None, temperature=0.0, seed=0)
    expected = np.array([1.0, -2.0])
    for t in range(4):
        grad = np.array([0.5, 1.0]) * expected  # gradient of 0.25 w_0^2 + 0.5 w_1^2
        _step(opt, [w], [tf.constant(grad)])
        expected = expected - 0.5 * 0.1 * (2.0 + t) ** -0.6 * grad
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)


# ----------------------------------------------------------------------------- PSGLD
def test_psgld_matches_numpy_over_several_steps():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=6)
    eps, rho, bias, prior_sigma, n, temperature = 2.0**-6, 0.9, 1e-6, 1.5, 4.0, 0.8
    w = tf.Variable(w0)
    opt = PSGLD(eps, rho=rho, diagonal_bias=bias, prior_sigma=prior_sigma,
                temperature=temperature, burnin=2, data_size=n, seed=7)
    opt.build([w])
    expected, v = w0.copy(), np.ones(6)
    for t in range(5):
        loss_grad = 0.3 * expected**3 - 1.0  # a non-quadratic loss
        xi = _noise_of_next_step(opt, w)
        _step(opt, [w], [tf.constant(loss_grad)])
        g = loss_grad + expected / (prior_sigma**2 * n)
        v = rho * v + (1 - rho) * g**2
        G = 1 / np.sqrt(v + bias)
        noise = np.sqrt(eps * G * temperature) * xi if t >= 2 else 0.0
        expected = expected - eps * 0.5 * G * g * n + noise
        np.testing.assert_allclose(w.numpy(), expected, rtol=1e-10)


def _tfp_sgld(w0, gradients, *, learning_rate, rho, data_size, burnin):
    """TFP's (tf_keras legacy, graph-mode) SGLD applied to the given gradient sequence."""
    with tf.Graph().as_default():
        w = tf.compat.v1.Variable(w0)
        grad = tf.compat.v1.placeholder(w0.dtype, w0.shape)
        opt = tfp.optimizer.StochasticGradientLangevinDynamics(
            learning_rate=learning_rate, preconditioner_decay_rate=rho, data_size=data_size,
            burnin=burnin)
        train = opt.apply_gradients([(grad, w)])
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            values = []
            for g in gradients:
                session.run(train, {grad: g})
                values.append(session.run(w))
    return values


def test_psgld_drift_equals_tfp_optimizer():
    # A linear loss has a gradient independent of w, so TFP's diagonal-Jacobian term is zero
    # and the two updates must agree exactly while TFP's burn-in keeps the noise off.
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=8).astype(np.float32)
    gradients = rng.normal(size=(6, 8)).astype(np.float32)
    tfp_values = _tfp_sgld(w0, gradients, learning_rate=0.05, rho=0.8, data_size=3, burnin=100)
    w = tf.Variable(w0)
    opt = PSGLD(0.05, rho=0.8, prior_sigma=None, data_size=3, burnin=100, seed=0)
    for g, reference in zip(gradients, tfp_values):
        _step(opt, [w], [tf.constant(g)])
        np.testing.assert_allclose(w.numpy(), reference, rtol=1e-5, atol=1e-6)


def test_psgld_noise_statistics_match_tfp():
    # TFP adds noise once iterations > burnin: with burnin=0 its first update is noise-free,
    # which is ours with burnin=1. Compare the second update's increments across entries.
    size, eps, rho, gradient = 40000, 0.01, 0.9, 0.3
    w0 = np.zeros(size, np.float32)
    gradients = np.full((2, size), gradient, np.float32)
    first, second = _tfp_sgld(w0, gradients, learning_rate=eps, rho=rho, data_size=1, burnin=0)
    tfp_increment = second - first
    w = tf.Variable(w0)
    opt = PSGLD(eps, rho=rho, prior_sigma=None, burnin=1, seed=11)
    _step(opt, [w], [tf.constant(gradients[0])])
    before = w.numpy()
    _step(opt, [w], [tf.constant(gradients[1])])
    ours = w.numpy() - before
    v = rho * (rho + (1 - rho) * gradient**2) + (1 - rho) * gradient**2
    G = 1 / np.sqrt(v + 1e-8)
    mean, std = -eps * 0.5 * G * gradient, np.sqrt(eps * G)
    for increments in (ours, tfp_increment):
        assert abs(increments.mean() - mean) < 4 * std / np.sqrt(size)
        assert abs(increments.std() / std - 1) < 4 / np.sqrt(2 * size)


# ----------------------------------------------------------------------------- NoisyAdam
def _torch_adam(w, grads, lr, weight_decay, beta1=0.9, beta2=0.999, eps=1e-8):
    """NumPy transcription of torch.optim.Adam.step (L2 weight decay, no amsgrad)."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for step, grad in enumerate(grads, start=1):
        grad = grad + weight_decay * w
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad * grad
        denom = np.sqrt(v) / np.sqrt(1 - beta2**step) + eps
        w = w - lr / (1 - beta1**step) * m / denom
    return w


def test_noisy_adam_without_noise_is_torch_adam():
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=(2, 2, 3, 4))
    grads = rng.normal(size=(7, 2, 2, 3, 4)) * 1e-3
    w = tf.Variable(w0)
    lr = 2.0**-7  # exact in the float32 learning-rate variable
    opt = NoisyAdam(lr, weight_decay=0.3, noise_scale=0.0, seed=0)
    for g in grads:
        _step(opt, [w], [tf.constant(g)])
    np.testing.assert_allclose(w.numpy() - w0, _torch_adam(w0, grads, lr, 0.3) - w0, rtol=1e-9)


def test_noisy_adam_step_is_adam_plus_kernel_noise():
    rng = np.random.default_rng(4)
    kernel0, bias0 = rng.normal(size=(3, 3, 2, 4)), rng.normal(size=4)
    g_kernel, g_bias = rng.normal(size=kernel0.shape), rng.normal(size=4)
    kernel, bias = tf.Variable(kernel0), tf.Variable(bias0)
    lr = 2.0**-7
    opt = NoisyAdam(lr, weight_decay=5e-8, noise_scale=2.0, seed=2)
    opt.build([kernel, bias])
    xi = _noise_of_next_step(opt, kernel)
    _step(opt, [kernel, bias], [tf.constant(g_kernel), tf.constant(g_bias)])
    expected_kernel = _torch_adam(kernel0, [g_kernel], lr, 5e-8) + 2.0 * lr * xi
    np.testing.assert_allclose(kernel.numpy() - kernel0, expected_kernel - kernel0, rtol=1e-9)
    np.testing.assert_allclose(bias.numpy() - bias0,
                               _torch_adam(bias0, [g_bias], lr, 5e-8) - bias0, rtol=1e-9)


def test_noisy_adam_noise_only_on_conv_kernels_with_std_noise_scale_times_lr():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 16)), keras.layers.Conv2D(32, 3),
                              keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    before = [v.numpy() for v in model.trainable_variables]
    lr, noise_scale = 0.01, 2.0
    opt = NoisyAdam(lr, weight_decay=0.0, noise_scale=noise_scale, seed=1)
    # Zero gradients and no weight decay: the Adam part does not move, only the noise does.
    _step(opt, model.trainable_variables, [tf.zeros_like(v) for v in model.trainable_variables])
    for variable, old in zip(model.trainable_variables, before):
        change = variable.numpy() - old
        if variable.shape.rank == 4:
            assert abs(change.std() / (noise_scale * lr) - 1) < 4 / np.sqrt(2 * change.size)
            assert abs(change.mean()) < 4 * noise_scale * lr / np.sqrt(change.size)
        else:
            np.testing.assert_array_equal(change, 0.0)


# ----------------------------------------------------------------------------- all optimizers
OPTIMIZERS = [
    lambda: SGLD(1e-3, prior_sigma=2.0, temperature=0.5, seed=4),
    lambda: SGLD(LangevinDecay.from_endpoints(1e-2, 1e-4, 100), prior_sigma=None, seed=4),
    lambda: PSGLD(1e-3, rho=0.99, diagonal_bias=1e-5, prior_sigma=1.0, burnin=3, data_size=10,
                  seed=4),
    lambda: NoisyAdam(0.01, weight_decay=5e-8, noise_scale=2.0, seed=4),
]


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_config_round_trip_gives_identical_updates(make):
    opt = make()
    config = opt.get_config()
    clone = type(opt).from_config(dict(config))  # Keras deserialises the schedule in place
    assert clone.get_config() == config
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(restored) is type(opt) and restored.get_config() == config
    results = []
    for optimizer in (opt, clone, restored):
        w = tf.Variable(tf.reshape(tf.range(24, dtype=tf.float32), (1, 2, 3, 4)) / 24.0)
        for _ in range(3):
            _step(optimizer, [w], [tf.sin(w)])
        results.append(w.numpy())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_compile_and_fit_a_tiny_keras_model(make):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(8, 3, padding="same"),
                              keras.layers.Conv2D(1, 1)])
    before = [v.numpy() for v in model.trainable_variables]
    model.compile(optimizer=make(), loss="mse")
    x = np.random.default_rng(0).random((2, 8, 8, 2)).astype(np.float32)
    history = model.fit(x, x[..., :1], epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(model.optimizer.iterations.numpy()) == 2
    assert any(np.any(v.numpy() != b) for v, b in zip(model.trainable_variables, before))


@pytest.mark.parametrize("make", OPTIMIZERS)
@pytest.mark.parametrize("seeded", [True, False])
def test_checkpoint_restores_the_next_noise_draw(make, seeded, tmp_path):
    def fresh():
        opt = make()
        if not seeded:
            opt = type(opt).from_config({**opt.get_config(), "seed": None})
        return opt, tf.Variable(tf.ones((2, 2, 3, 4)))

    opt, w = fresh()
    for _ in range(4):
        _step(opt, [w], [0.1 * w])
    path = tf.train.Checkpoint(optimizer=opt, w=w).save(str(tmp_path / "ckpt"))
    _step(opt, [w], [0.1 * w])
    expected = w.numpy()

    other, w2 = fresh()
    other.build([w2])
    tf.train.Checkpoint(optimizer=other, w=w2).restore(path).assert_consumed()
    _step(other, [w2], [0.1 * w2])
    np.testing.assert_array_equal(w2.numpy(), expected)


def test_bad_arguments_raise_tfdip_error():
    with pytest.raises(TfdipError, match="prior_sigma"):
        SGLD(1e-3, prior_sigma=0.0)
    with pytest.raises(TfdipError, match="temperature"):
        SGLD(1e-3, temperature=-1.0)
    with pytest.raises(TfdipError, match="rho"):
        PSGLD(1e-3, rho=1.5)
    with pytest.raises(TfdipError, match="burnin"):
        PSGLD(1e-3, burnin=-1)
    with pytest.raises(TfdipError, match="beta_1"):
        NoisyAdam(beta_1=1.0)
    with pytest.raises(TfdipError, match="seed"):
        SGLD(1e-3, seed="zero")
    with pytest.raises(TfdipError, match="learning_rate"):
        SGLD(0.0)
    assert SGLD(np.float32(0.5)).get_config()["learning_rate"] == 0.5


# ----------------------------------------------------------------------------- sampling
def _linear_regression_problem():
    """y = X w + N(0, s^2) with prior N(0, p^2): posterior N(mu, Sigma) in closed form."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(12, 2))
    y = X @ np.array([0.8, -0.5]) + 0.6 * rng.normal(size=12)
    noise_sigma, prior_sigma = 0.6, 1.2
    precision = X.T @ X / noise_sigma**2 + np.eye(2) / prior_sigma**2
    covariance = np.linalg.inv(precision)
    mean = covariance @ X.T @ y / noise_sigma**2
    return X, y, noise_sigma, prior_sigma, mean, covariance


def _run_chains(optimizer, X, y, noise_sigma, *, num_chains, burn_in, num_samples, thin):
    """Parallel chains (rows of one variable) sampling U(w) = ||y - X w||^2 / (2 s^2)."""
    w = tf.Variable(tf.zeros((num_chains, 2), tf.float64))
    X, y = tf.constant(X), tf.constant(y)
    optimizer.build([w])

    @tf.function
    def run():
        samples = tf.TensorArray(tf.float64, size=num_samples)
        for t in tf.range(burn_in + num_samples * thin):
            with tf.GradientTape() as tape:
                residual = y[None, :] - tf.linalg.matmul(w, X, transpose_b=True)
                loss = tf.reduce_sum(residual**2) / (2 * noise_sigma**2)
            optimizer.apply_gradients([(tape.gradient(loss, w), w)])
            k = t - burn_in
            if k >= 0 and k % thin == 0:
                samples = samples.write(k // thin, tf.identity(w))
        return samples.stack()

    return run().numpy()


def _assert_expectation(values, expected, *, rel_bias=0.0, max_rel_se=0.05):
    """``values`` (num_samples, num_chains) of f(w): the chains' pooled average must be within
    4 standard errors (+ an allowed relative bias) of ``expected``. The standard error comes
    from the spread of the per-chain averages (the chains are independent), and must be small
    enough for the comparison to mean something."""
    chain_means = values.mean(axis=0)
    se = chain_means.std(ddof=1) / np.sqrt(chain_means.size)
    assert se < max_rel_se * values.std()
    assert abs(chain_means.mean() - expected) < 4 * se + rel_bias * abs(expected), (
        chain_means.mean(), expected, se)


def _assert_posterior(samples, mean, covariance, *, rel_bias):
    """First and second moments of (num_samples, num_chains, 2) samples."""
    centred = samples - mean
    for i in range(2):
        _assert_expectation(samples[..., i], mean[i])
        for j in range(i, 2):
            _assert_expectation(centred[..., i] * centred[..., j], covariance[i, j],
                                rel_bias=rel_bias)


def test_sgld_samples_the_conjugate_gaussian_posterior():
    X, y, noise_sigma, prior_sigma, mean, covariance = _linear_regression_problem()
    largest = np.linalg.eigvalsh(np.linalg.inv(covariance)).max()
    eps = 0.04 / largest  # Euler bias of the covariance ~ eps * lambda / 4 = 1%
    samples = _run_chains(SGLD(eps, prior_sigma=prior_sigma, seed=0), X, y, noise_sigma,
                          num_chains=500, burn_in=1500, num_samples=50, thin=30)
    _assert_posterior(samples, mean, covariance, rel_bias=0.015)


def test_psgld_recovers_the_conjugate_posterior_mean():
    X, y, noise_sigma, prior_sigma, mean, covariance = _linear_regression_problem()
    samples = _run_chains(PSGLD(5e-3, rho=0.999, prior_sigma=prior_sigma, seed=1), X, y,
                          noise_sigma, num_chains=500, burn_in=1500, num_samples=50, thin=30)
    for i in range(2):
        _assert_expectation(samples[..., i], mean[i])
    # Without TFP's diagonal-Jacobian term the spread is only approximately right.
    np.testing.assert_allclose(samples.reshape(-1, 2).std(0), np.sqrt(np.diag(covariance)),
                               rtol=0.1)


# ----------------------------------------------------------------------------- schedules
def test_langevin_decay_values_endpoints_and_serialisation():
    schedule = LangevinDecay(a=0.3, b=5.0, gamma=0.55)
    steps = np.array([0, 1, 10, 1000])
    np.testing.assert_allclose([float(schedule(t)) for t in steps],
                               0.3 * (5.0 + steps) ** -0.55, rtol=1e-6)
    fitted = LangevinDecay.from_endpoints(1e-2, 1e-4, 2000, gamma=0.8)
    np.testing.assert_allclose([float(fitted(0)), float(fitted(2000))], [1e-2, 1e-4], rtol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fitted))
    assert isinstance(restored, LangevinDecay)
    assert restored.get_config() == fitted.get_config()
    with pytest.raises(TfdipError, match="initial > final"):
        LangevinDecay.from_endpoints(1e-4, 1e-2, 100)
    with pytest.raises(TfdipError, match="gamma"):
        LangevinDecay(0.1, gamma=1.5)
