"""Langevin samplers as Keras 3 optimizers.

A training step computes the gradient ``g`` of a loss ``U(w)`` and calls
``optimizer.apply_gradients(zip(grads, variables))``; these optimizers turn that step into a
Markov-chain transition over the weights ``w``. For the Langevin samplers the loss is the negative
log-likelihood ``U(w) = -log p(y | w)`` (for DIP: ``||y - A G_w(z)||^2 / (2 sigma^2)``, a *sum*
over pixels with the known noise sigma); the optimizer adds the Gaussian weight prior
``N(0, prior_sigma^2)`` and the injected noise.

- :class:`SGLD` (Welling & Teh 2011), stationary density ``p(w | y)^(1 / temperature)``.
- :class:`PSGLD` (Li et al. 2016), the update of TFP's ``StochasticGradientLangevinDynamics``.
- :class:`NoisyAdam`, the GP-DIP authors' "SGLD": an Adam step plus noise on the conv kernels.

The noise of one update is one fused draw: a single Philox draw
(:func:`tfdip.inference.draws.standard_normal`) of ``n_1 + ... + n_V`` values keyed on
``(noise_seed, iteration)``, cut into the V variables' shapes
in the order the optimizer was built with. ``noise_seed`` and ``iterations`` are int64 optimizer
variables, so a ``tf.train.Checkpoint`` (or ``model.save``) of the optimizer restores the exact
noise stream. The updates of all variables (and the draw) run as one XLA computation, so a step
costs a few fused loops over the weights, and gives the same numbers with and without XLA on the
step around it.
"""
from __future__ import annotations

import numbers
import random

import keras
import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.inference.draws import standard_normal

PACKAGE = "tfdip"


def _check_positive(name: str, value, *, allow_none: bool = False, allow_zero: bool = False):
    if value is None and allow_none:
        return None
    if value is None or not (value > 0 or (allow_zero and value == 0)):
        bound = ">= 0" if allow_zero else "> 0"
        extra = " (or None for a flat prior)" if allow_none else ""
        raise TfdipError(f"{name} must be {bound}{extra}, got {value!r}")
    return float(value)


class _NoisyOptimizer(keras.optimizers.Optimizer):
    """Shared machinery: the seeded, checkpointable standard-normal noise of every sampler.

    Args:
        seed: int seed of the noise stream; ``None`` draws one when the optimizer is built
            (it is then stored in the ``noise_seed`` variable, so checkpoints still resume exactly).
    """

    def __init__(self, learning_rate, *, seed=None, name=None, **kwargs):
        if isinstance(learning_rate, numbers.Real):  # Keras wants a Python float or a schedule
            learning_rate = _check_positive("learning_rate", learning_rate)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
            raise TfdipError(f"seed must be an int or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._step_noise = None  # the current update's fused draw, while it is being traced

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        seed = random.SystemRandom().randrange(2**31) if self.seed is None else self.seed
        self._noise_seed = self.add_variable(
            shape=(), dtype="int64", initializer=keras.initializers.Constant(seed),
            name="noise_seed")

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """All per-variable updates of one step as one XLA computation (whether or not the step
        around it is compiled with XLA): the element-wise update formulas of every variable fuse
        into a few loops instead of a dozen TensorFlow ops per variable, and the numbers are the
        same with and without ``jit_compile`` on the step."""
        update = tf.function(
            lambda grads: self._update_variables(grads, trainable_variables, learning_rate),
            jit_compile=True, autograph=False)
        update(list(grads))

    def _update_variables(self, grads, trainable_variables, learning_rate):
        """The per-variable updates of one step, sharing one fused noise draw (made on first use)."""
        self._step_noise = {}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_noise = None

    def _fused_standard_normal(self):
        """N(0, I) noise for every variable of the optimizer at the current iteration: one
        draw keyed on ``(noise_seed, iterations)`` in the widest float dtype of the variables,
        split into their shapes (list in the optimizer's variable order)."""
        variables = self._trainable_variables
        sizes = [int(np.prod(v.shape)) for v in variables]
        dtype = max((tf.as_dtype(v.dtype) for v in variables), key=lambda d: d.size)
        key = tf.stack([tf.convert_to_tensor(self._noise_seed),
                        tf.cast(self.iterations, tf.int64)])
        flat = standard_normal((sum(sizes),), key, dtype)
        return [tf.cast(tf.reshape(part, v.shape), v.dtype)
                for part, v in zip(tf.split(flat, sizes), variables)]

    def standard_normal(self, variable):
        """N(0, I) noise of ``variable``'s shape and dtype for the current iteration: its part of
        the step's fused draw (drawn once per step however many variables ask for it; outside an
        update, the part the next update will use)."""
        index = self._get_variable_index(variable)
        if self._step_noise is None:
            return self._fused_standard_normal()[index]
        if "draw" not in self._step_noise:
            self._step_noise["draw"] = self._fused_standard_normal()
        return self._step_noise["draw"][index]

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class SGLD(_NoisyOptimizer):
    """Stochastic gradient Langevin dynamics (Welling & Teh 2011).

    With ``eps`` the current learning rate (a float or a ``LearningRateSchedule``, e.g.
    :class:`tfdip.inference.LangevinDecay`), gradient ``g = grad U(w)`` of the loss, prior
    ``N(0, prior_sigma^2 I)`` and temperature ``T``, every variable is updated as

        w <- w - (eps / 2) * (g + w / prior_sigma^2) + sqrt(eps * T) * xi,   xi ~ N(0, I).

    For small ``eps`` the chain samples ``p(w | y)^(1/T)`` with ``p(w | y)`` proportional to
    ``exp(-U(w)) N(w; 0, prior_sigma^2 I)``; ``T = 1`` is the posterior, ``T = 0`` gradient
    descent on the negative log posterior. ``prior_sigma=None`` is a flat prior.
    The loss must be the full negative log-likelihood (a sum, not a mean), or the posterior
    is tempered by the number of terms.

    Args:
        learning_rate: step size ``eps`` (float or ``LearningRateSchedule``).
        prior_sigma: std of the Gaussian weight prior, or ``None``.
        temperature: ``T >= 0``, scales the noise variance.
        seed: int seed of the noise stream (see :class:`_NoisyOptimizer`).
        **kwargs: Keras optimizer arguments (``name``, ``clipnorm``, ...).
    """

    def __init__(self, learning_rate=1e-6, prior_sigma=1.0, temperature=1.0, seed=None,
                 name=None, **kwargs):
        super().__init__(learning_rate, seed=seed, name=name, **kwargs)
        self.prior_sigma = _check_positive("prior_sigma", prior_sigma, allow_none=True)
        self.temperature = _check_positive("temperature", temperature, allow_zero=True)

    def update_step(self, gradient, variable, learning_rate):
        eps = tf.cast(learning_rate, variable.dtype)
        drift = tf.cast(gradient, variable.dtype)
        if self.prior_sigma is not None:
            drift += variable / self.prior_sigma**2
        noise = tf.sqrt(eps * self.temperature) * self.standard_normal(variable)
        self.assign_add(variable, noise - 0.5 * eps * drift)

    def get_config(self):
        config = super().get_config()
        config.update(prior_sigma=self.prior_sigma, temperature=self.temperature)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class PSGLD(_NoisyOptimizer):
    """Preconditioned SGLD (Li et al. 2016): the update of TFP's
    ``tfp.optimizer.StochasticGradientLangevinDynamics``, as a Keras 3 optimizer.

    With ``eps`` the learning rate, ``n = data_size`` and ``g`` the gradient of the loss plus the
    prior term ``w / (prior_sigma^2 n)`` (TFP asks for the prior scaled by ``1/data_size`` in the
    loss; here the optimizer adds it), each variable carries a moving average ``v`` of ``g^2``:

        v <- rho v + (1 - rho) g^2                       (v starts at 1, as in TFP)
        G  = 1 / sqrt(v + diagonal_bias)
        w <- w - eps * (0.5 * G * g * n) + sqrt(eps * G * T) * xi,   xi ~ N(0, I).

    The chain targets ``exp(-n U(w) / T) N(w; 0, prior_sigma^2)^(1/T)``: with ``n = 1`` and the
    negative log-likelihood sum as loss, the posterior at ``T = 1``. No noise is added during the
    first ``burnin`` updates (TFP adds none while ``iterations <= burnin``, i.e. one update more).

    Omitted on purpose: TFP also subtracts ``0.5 * eps * d G / d w`` (its ``diag_jacobian`` term,
    one extra backward pass per parameter group and step). ``G`` depends on ``w`` only through
    the gradient moving average, so the term is negligible for ``rho`` close to 1 and costly.

    Args:
        learning_rate: step size ``eps`` (float or ``LearningRateSchedule``).
        rho: decay of the squared-gradient average (TFP's ``preconditioner_decay_rate``), in (0, 1].
        diagonal_bias: added to ``v`` before the inverse square root.
        prior_sigma: std of the Gaussian weight prior, or ``None``.
        temperature: ``T >= 0``, scales the noise variance.
        burnin: number of initial noise-free updates (preconditioner warm-up).
        data_size: TFP's ``data_size``; the loss is a mean over that many terms.
        seed: int seed of the noise stream.
        **kwargs: Keras optimizer arguments (``name``, ``clipnorm``, ...).
    """

    def __init__(self, learning_rate=1e-4, rho=0.95, diagonal_bias=1e-8, prior_sigma=1.0,
                 temperature=1.0, burnin=0, data_size=1, seed=None, name=None, **kwargs):
        super().__init__(learning_rate, seed=seed, name=name, **kwargs)
        if not 0.0 < rho <= 1.0:
            raise TfdipError(f"rho must be in (0, 1], got {rho!r}")
        if not isinstance(burnin, int) or burnin < 0:
            raise TfdipError(f"burnin must be a non-negative int, got {burnin!r}")
        self.rho = float(rho)
        self.diagonal_bias = _check_positive("diagonal_bias", diagonal_bias, allow_zero=True)
        self.prior_sigma = _check_positive("prior_sigma", prior_sigma, allow_none=True)
        self.temperature = _check_positive("temperature", temperature, allow_zero=True)
        self.burnin = burnin
        self.data_size = _check_positive("data_size", data_size)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._mean_squares = self.add_optimizer_variables(var_list, "mean_square", "ones")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        eps = tf.cast(learning_rate, dtype)
        grad = tf.cast(gradient, dtype)
        if self.prior_sigma is not None:
            grad += variable / (self.prior_sigma**2 * self.data_size)
        mean_square = self._mean_squares[self._get_variable_index(variable)]
        new_mean_square = self.rho * mean_square + (1.0 - self.rho) * tf.square(grad)
        self.assign(mean_square, new_mean_square)
        preconditioner = tf.math.rsqrt(new_mean_square + self.diagonal_bias)
        noise_on = tf.cast(tf.cast(self.iterations, tf.int64) >= self.burnin, dtype)
        noise = noise_on * tf.sqrt(eps * preconditioner * self.temperature) * (
            self.standard_normal(variable))
        self.assign_add(variable, noise - eps * 0.5 * preconditioner * grad * self.data_size)

    def get_config(self):
        config = super().get_config()
        config.update(rho=self.rho, diagonal_bias=self.diagonal_bias,
                      prior_sigma=self.prior_sigma, temperature=self.temperature,
                      burnin=self.burnin, data_size=self.data_size)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class NoisyAdam(_NoisyOptimizer):
    """The GP-DIP authors' "SGLD" exactly as their code ran it: Adam plus weight noise.

    This is *not* a Langevin sampler with a known stationary distribution: the Adam step
    rescales the gradient per coordinate and the noise is not matched to the step. It is the
    recipe behind the paper's numbers (reference.md section 3). One update:

        g  = grad U(w) + weight_decay * w          (L2 added to the gradient, as torch.optim.Adam;
                                                    not AdamW's decoupled decay)
        m <- beta_1 m + (1 - beta_1) g,   v <- beta_2 v + (1 - beta_2) g^2,   t = iteration + 1
        w <- w - lr * (m / (1 - beta_1^t)) / (sqrt(v / (1 - beta_2^t)) + epsilon)
        w <- w + noise_scale * lr * xi,   xi ~ N(0, I),   for 4-D variables (conv kernels) only.

    Biases, BatchNorm parameters and dense kernels get no noise, as in the authors' ``add_noise``
    (``param_noise_sigma = 2`` times the learning rate, on parameters with 4 dimensions). The
    authors add the noise just before each forward pass; adding it after each Adam step gives the
    same sequence of weights. With a learning-rate schedule the noise follows the current rate.
    ``noise_scale=0`` is plain PyTorch Adam (the DIP baseline).

    Args:
        learning_rate: Adam step size (the authors: 0.01).
        weight_decay: L2 coefficient added to the gradient (the authors: 5e-8).
        noise_scale: noise std in units of the learning rate (the authors: 2).
        beta_1, beta_2, epsilon: Adam constants, PyTorch's defaults.
        seed: int seed of the noise stream.
        **kwargs: Keras optimizer arguments (``name``, ``clipnorm``, ...).
    """

    def __init__(self, learning_rate=0.01, weight_decay=5e-8, noise_scale=2.0, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, seed=None, name=None, **kwargs):
        # Keras' own ``weight_decay`` is AdamW-style decoupled decay; ours is torch's L2 term.
        super().__init__(learning_rate, seed=seed, name=name, weight_decay=None, **kwargs)
        self.l2_weight_decay = _check_positive("weight_decay", weight_decay, allow_zero=True)
        self.noise_scale = _check_positive("noise_scale", noise_scale, allow_zero=True)
        for label, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= beta < 1.0:
                raise TfdipError(f"{label} must be in [0, 1), got {beta!r}")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = _check_positive("epsilon", epsilon, allow_zero=True)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"])

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        grad = tf.cast(gradient, dtype) + self.l2_weight_decay * variable
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        step = tf.cast(self.iterations + 1, dtype)
        new_m = self.beta_1 * m + (1.0 - self.beta_1) * grad
        new_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad)
        self.assign(m, new_m)
        self.assign(v, new_v)
        m_hat = new_m / (1.0 - tf.pow(tf.constant(self.beta_1, dtype), step))
        v_hat = new_v / (1.0 - tf.pow(tf.constant(self.beta_2, dtype), step))
        update = -lr * m_hat / (tf.sqrt(v_hat) + self.epsilon)
        if len(variable.shape) == 4 and self.noise_scale > 0:
            update += self.noise_scale * lr * self.standard_normal(variable)
        self.assign_add(variable, update)

    def get_config(self):
        config = super().get_config()
        config.update(weight_decay=self.l2_weight_decay, noise_scale=self.noise_scale,
                      beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return config
