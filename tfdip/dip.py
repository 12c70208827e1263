"""The Deep Image Prior as a Keras model: ``x_hat = crop(G_w(z))`` fitted to ``y = A(x) + n``.

:class:`DeepImagePrior` owns a generator ``G`` (a ``keras.Model`` from :mod:`tfdip.nets`), its fixed
random input ``z ~ U(0, 0.1)`` of shape (1, Hp, Wp, C_in), a physics object (forward operator ``A``
and noise model) and the observation ``y``. ``Hp, Wp`` are the image size rounded up to the
generator's size multiple (2^levels) and at least its minimum size; the output is centre-cropped
back to (H, W), so any image size works and the padded border is left free.

One training step (inside ``tf.function``), at step t with weights w_t:

1. input jitter: ``z_t = z + N(0, input_noise_std^2)`` (the DIP regulariser; 0 switches it off);
2. ``x_t = crop(G_{w_t}(z_t))`` with BatchNorm on the statistics of this image;
3. loss: ``mean((A x_t - y)^2)`` (``likelihood="mse"``, the DIP loss) or
   ``-log p(y | x_t) = ||A x_t - y||^2 / (2 sigma^2) + const`` summed over observed entries
   (``likelihood="gaussian"``, what the Langevin samplers need; the prior lives in the optimizer).
   With a ``noise_prior`` the noise variance ``s2`` is a variable of the chain: the loss uses the
   current ``s2`` and, after the weight update, ``s2`` is drawn from its conditional posterior given
   this step's residual (:mod:`tfdip.inference.noise`), so the noise level is sampled, not fixed;
4. roll-back guard: if the loss is not finite, or the PSNR of ``A x_t`` against ``y`` fell more than
   ``rollback_db`` below the last good value, the weights return to the last good ones, the
   optimizer does not move (its step counter, moments and noise stream stay where they were) and
   the step is reported in ``rollbacks``; otherwise the weights are kept as the last good ones and
   the optimizer applies the gradient (an Adam step, an SGLD step, ...);
5. ``ema <- d * ema + (1 - d) * x_t`` (exponential moving average of outputs, DIP's smoothing);
6. from step ``sampling_start`` on (``burn_in``, or with ``burn_in="auto"`` the step at which
   :class:`tfdip.stopping.AutoBudget` found the loss stationary), every ``thin``-th good output is a
   posterior sample: a Welford update of the running mean and variance of the output, and its
   values at a fixed random subset of pixels go to ``trace`` (for effective sample size, R-hat and
   the Monte Carlo error). The trace holds every ``trace_stride``-th sample: when it is full,
   every other row is dropped and the stride doubles, so a run of unknown length keeps an evenly
   thinned record of all its samples in a fixed memory;
7. with ``early_stop="wmv"``, the output enters ES-WMV's window (:mod:`tfdip.inference.wmv`),
   which keeps the output of smallest windowed variance.

Precision: the generator may compute in bfloat16 or float16 (built under a mixed Keras policy,
:mod:`tfdip.precision`); its output is cast to the weights' dtype (float32) before the loss, so the
loss, the roll-back test, the EMA and the posterior moments are float32. With a float16 generator
the optimizer is a ``LossScaleOptimizer``: the loss is scaled before the backward pass
(``optimizer.scale_loss``) and the gradients unscaled before the update, so the Langevin drift is
the true gradient. ``fit`` runs several steps per call of one ``tf.function`` (a ``tf.while_loop``),
compiled with XLA when ``compile(jit_compile=True)``.

All state (z, weights, optimizer moments, RNG states, EMA, moments, traced pixels and their
values, step counter, and the automatic budget's decisions: start of sampling, recent losses,
stop) lives in variables, so a ``tf.train.Checkpoint`` of the model and its
optimizer resumes a run exactly. The random streams of chain ``k`` of a run with seed ``s`` (input
z, jitter; the generator's weights and the optimizer's noise in :func:`tfdip.chains.make_dip`)
come from :func:`tfdip.seeds.chain_seeds` ``(s, k)``; the traced pixels from chain 0's, so that
every chain of a run traces the same pixels (R-hat compares them across chains).
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.export import export_dip
from tfdip.inference.budget import DRIFT_WINDOW
from tfdip.inference.draws import standard_normal, xla_compiled
from tfdip.inference.moments import RunningMoments
from tfdip.inference.wmv import PATIENCE, WINDOW, WindowedVarianceTracker
from tfdip.metrics import tf_psnr
from tfdip.precision import with_loss_scaling
from tfdip.seeds import chain_seeds

LIKELIHOODS = ("mse", "gaussian")
#: ``sampling_start`` while an automatic burn-in has not ended.
NOT_STARTED = np.iinfo(np.int64).max
#: ``stop_reason`` codes of an automatic budget.
STOP_REASONS = {0: None, 1: "rule met", 2: "cap reached"}


def padded_size(size: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``size``."""
    return int(math.ceil(size / multiple) * multiple)


def _hooks_batches(callback) -> bool:
    """True for a callback that overrides a per-batch hook of training and does not declare
    ``whole_calls = True`` (that it is fine with one hook call per call of several steps)."""
    if getattr(callback, "whole_calls", False):
        return False
    return any(getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook)
               for hook in ("on_batch_begin", "on_batch_end", "on_train_batch_begin",
                            "on_train_batch_end"))


def _copy(sources, targets):
    """Assign every source variable's value to its target variable (one grouped op)."""
    return tf.group([target.assign(source) for source, target in zip(sources, targets)])


class DeepImagePrior(keras.Model):
    """Deep Image Prior restoration of one image, trained with ``compile()`` / ``fit()``.

    Args:
        generator: a ``keras.Model`` mapping (1, Hp, Wp, C_in) to (1, Hp, Wp, C).
        physics: a :class:`tfdip.physics.Physics` (``forward``, ``mse``, ``log_likelihood``,
            ``image_shape``, ``sigma``).
        observation: the observation y, array (h, w, C) on the [0, 1] scale (noisy values a
            little outside it are fine), finite.
        size_multiple: the generator's input size must be a multiple of this (2^levels).
        min_size: the generator's smallest input height and width.
        input_noise_std: std of the per-step input jitter (DIP: 1/30 denoising, 0.03 otherwise).
        likelihood: ``"mse"`` or ``"gaussian"`` (see the module docstring).
        likelihood_sigma: noise std for ``"gaussian"``; default the physics' sigma.
        ema_decay: decay d of the output moving average (DIP: 0.99).
        rollback_db: PSNR drop that triggers a roll-back (DIP: 5 dB); None disables the PSNR test
            (non-finite losses always roll back).
        reference: the clean image (H, W, C), only to report PSNRs while training.
        burn_in, thin: posterior sampling schedule (steps); ``burn_in=None`` collects no samples,
            ``burn_in="auto"`` starts when :class:`tfdip.stopping.AutoBudget` decides (the
            per-step loss of the last ``drift_window`` steps is kept for its drift test).
        trace_pixels: how many random output entries to trace per sample (for ESS / R-hat).
        max_samples: capacity of the trace in rows (beyond it the trace thins itself, see the
            module docstring; every sample still enters the moments).
        drift_window: steps of loss kept for the burn-in test (``burn_in="auto"``).
        early_stop: ``"wmv"`` tracks ES-WMV (:mod:`tfdip.inference.wmv`) with ``wmv_window`` and
            ``wmv_patience`` over the outputs (``self.wmv``); None (default) does not.
        seed, chain: the run's seed and this chain's index; z and the jitter come from their
            streams in :func:`tfdip.seeds.chain_seeds` ``(seed, chain)``, the traced pixel subset
            from chain 0's (the same pixels in every chain).

        noise_prior: a :class:`tfdip.inference.noise.NoiseVariancePrior` to sample the Gaussian
            likelihood's noise variance (it starts at ``likelihood_sigma^2``); None keeps it fixed.

    Float variables (EMA, last output, trace, moments) take the generator's variable dtype
    (``state_dtype``): float32 under a mixed policy, float64 under a float64 policy.
    """

    def __init__(self, generator, physics, observation, *, size_multiple=1, min_size=1,
                 input_channels=None,
                 input_noise_std=0.0, likelihood="mse", likelihood_sigma=None, ema_decay=0.99,
                 rollback_db=5.0, reference=None, burn_in=None, thin=1, trace_pixels=256,
                 max_samples=512, seed=0, chain=0, noise_prior=None, drift_window=DRIFT_WINDOW,
                 early_stop=None, wmv_window=WINDOW, wmv_patience=PATIENCE, **kwargs):
        super().__init__(**kwargs)
        if likelihood not in LIKELIHOODS:
            raise TfdipError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        observation = np.asarray(observation, np.float32)
        if observation.ndim != 3:
            raise TfdipError(f"the observation must be an (h, w, C) array, got shape {observation.shape}")
        if not np.all(np.isfinite(observation)):
            raise TfdipError("the observation contains NaN or inf values; give finite values")
        if thin < 1:
            raise TfdipError(f"thin must be >= 1, got {thin}")
        if isinstance(burn_in, str) and burn_in != "auto":
            raise TfdipError(f"burn_in must be a number of steps, 'auto' or None, got {burn_in!r}")
        if burn_in is not None and burn_in != "auto" and burn_in < 0:
            raise TfdipError(f"burn_in must be >= 0, got {burn_in}")
        if early_stop not in (None, "wmv"):
            raise TfdipError(f"early_stop must be None or 'wmv', got {early_stop!r}")
        if max_samples < 1:
            raise TfdipError(f"max_samples must be at least 1, got {max_samples}")
        if likelihood == "gaussian":
            sigma = physics.sigma if likelihood_sigma is None else likelihood_sigma
            if not sigma or sigma <= 0:
                raise TfdipError("the Gaussian likelihood needs a noise level > 0; give sigma")
            likelihood_sigma = float(sigma)
        elif noise_prior is not None:
            raise TfdipError("a noise prior needs the Gaussian likelihood (likelihood='gaussian')")
        self.generator = generator
        self.physics = physics
        self.likelihood = likelihood
        self.likelihood_sigma = likelihood_sigma
        self.input_noise_std = float(input_noise_std)
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.rollback_db = None if rollback_db is None else float(rollback_db)
        self.burn_in = burn_in
        self.thin = int(thin)
        self.seeds = chain_seeds(seed, chain)
        self.seed, self.chain = self.seeds.seed, self.seeds.chain
        self.noise_prior = noise_prior
        dtype = self.state_dtype = tf.as_dtype(generator.dtype_policy.variable_dtype)

        self.image_shape = tuple(int(s) for s in physics.image_shape(observation.shape))
        height, width, channels = self.image_shape
        self.padded_shape = (padded_size(max(height, min_size), size_multiple),
                             padded_size(max(width, min_size), size_multiple))
        self.crop_offset = ((self.padded_shape[0] - height) // 2, (self.padded_shape[1] - width) // 2)
        in_channels = input_channels or generator.input_shape[-1]

        self.y = tf.Variable(tf.constant(observation[None], dtype), trainable=False,
                             name="observation")
        self.reference = None if reference is None else tf.constant(
            np.asarray(reference, np.float32)[None], dtype)
        z0 = self.seeds.rng("input").uniform(0.0, 0.1, (1, *self.padded_shape, in_channels))
        self.z = tf.Variable(tf.constant(z0, dtype), trainable=False, name="z")
        self.jitter_seed = keras.random.SeedGenerator(self.seeds.jitter, name="jitter_seed")
        image = (1, height, width, channels)
        self.ema = tf.Variable(tf.zeros(image, dtype), trainable=False, name="ema")
        self.last_output = tf.Variable(tf.zeros(image, dtype), trainable=False, name="last_output")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.rollbacks = tf.Variable(0, dtype=tf.int64, trainable=False, name="rollbacks")
        self.last_good_psnr = tf.Variable(tf.constant(-np.inf, dtype), trainable=False,
                                          name="last_good_psnr")
        self.moments = RunningMoments((height, width, channels), dtype=dtype)
        num_entries = height * width * channels
        self.trace_index = tf.Variable(np.sort(chain_seeds(seed, 0).rng("trace").choice(
            num_entries, size=min(trace_pixels, num_entries), replace=False)).astype(np.int32),
            trainable=False, name="trace_index")
        self.trace = tf.Variable(tf.zeros((max_samples, int(self.trace_index.shape[0])), dtype),
                                 trainable=False, name="trace")
        self.trace_stride = tf.Variable(tf.constant(1, tf.int64), trainable=False,
                                        name="trace_stride")
        start = NOT_STARTED if burn_in in (None, "auto") else int(burn_in)
        self.sampling_start = tf.Variable(tf.constant(start, tf.int64), trainable=False,
                                          name="sampling_start")
        self.loss_window = tf.Variable(tf.zeros((int(drift_window),), dtype), trainable=False,
                                       name="loss_window")
        self.drift_streak = tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                        name="drift_streak")
        self.stop_step = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="stop_step")
        self.stop_reason = tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                       name="stop_reason")
        self.wmv = None if early_stop is None else WindowedVarianceTracker(
            (height, width, channels), wmv_window, wmv_patience, dtype=dtype)
        self.shadow = [tf.Variable(w, trainable=False, name="shadow")
                       for w in generator.trainable_variables]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.noise_variance = tf.Variable(tf.constant((likelihood_sigma or 0.0)**2, dtype),
                                          trainable=False, name="noise_variance")
        self.num_observed = physics.num_observed(observation.shape)
        self.xla = False               # compile(jit_compile=...) chooses
        self._compiled_steps = None    # the traced steps function (see _train_function)

    @property
    def metrics(self):
        return [self.loss_tracker]

    # ------------------------------------------------------------------ forward
    def call(self, inputs, training=False):
        """The restoration ``crop(G(inputs))`` of an input code ``inputs`` (N, Hp, Wp, C_in),
        shape (N, H, W, C); ``self(self.z)`` is the run's output. BatchNorm always uses the
        statistics of the image (the generator runs in training mode whatever ``training``)."""
        del training
        return self._output(inputs)

    def _output(self, z):
        """``crop(G(z))`` in ``state_dtype`` (the generator may compute in bfloat16 / float16)."""
        return tf.cast(self.crop(self.generator(z, training=True)), self.state_dtype)

    def crop(self, x):
        """Centre crop of a generator output (N, Hp, Wp, C) to the image size (N, H, W, C)."""
        top, left = self.crop_offset
        height, width, _ = self.image_shape
        return x[:, top:top + height, left:left + width, :]

    def _loss(self, x_hat):
        """The DIP MSE, or the Gaussian negative log-likelihood at the noise std of the run (the
        current sample of it with a ``noise_prior``)."""
        if self.likelihood == "mse":
            return self.physics.mse(self.y, x_hat)
        sigma = self.likelihood_sigma if self.noise_prior is None else tf.sqrt(self.noise_variance)
        return -self.physics.log_likelihood(self.y, x_hat, sigma=sigma)

    # ------------------------------------------------------------------ training
    def train_step(self, data):
        """One training step (the module docstring's steps 1-6); returns its logs."""
        del data
        return self._logs(self._update())

    def _update(self):
        """Steps 1-6 of the module docstring on the model's variables; returns the PSNR (dB) of
        ``A x_t`` against ``y``."""
        z = self.z
        if self.input_noise_std > 0:
            z = z + self.input_noise_std * standard_normal(z.shape, self.jitter_seed.next(),
                                                           z.dtype)
        weights = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            x_hat = self._output(z)
            loss = self._loss(x_hat)
            scaled_loss = self.optimizer.scale_loss(loss)  # the loss scale of float16, else loss
        grads = tape.gradient(scaled_loss, weights)

        psnr_obs = tf_psnr(self.physics.forward(x_hat), self.y)
        good = tf.math.is_finite(loss) & tf.reduce_all(tf.math.is_finite(x_hat))
        if self.rollback_db is not None:
            good &= ~(psnr_obs < self.last_good_psnr - self.rollback_db)

        def accept():  # these weights become the last good ones, then the optimizer moves
            with tf.control_dependencies([_copy(weights, self.shadow)]):
                self.optimizer.apply_gradients(zip(grads, weights))
            return tf.constant(True)

        def reject():
            _copy(self.shadow, weights)
            return tf.constant(False)

        tf.cond(good, accept, reject)
        self.rollbacks.assign_add(1 - tf.cast(good, tf.int64))
        self.last_good_psnr.assign(tf.where(good, psnr_obs, self.last_good_psnr))

        x_safe = tf.where(good, x_hat, self.last_output)
        self.last_output.assign(x_safe)
        if self.ema_decay is not None:
            first = tf.cast(tf.equal(self.step, 0), x_hat.dtype)
            decay = self.ema_decay * (1.0 - first)
            self.ema.assign(decay * self.ema + (1.0 - decay) * x_safe)
        if self.burn_in is not None:
            self._collect(x_hat[0], good)
        self._track_budget(loss, x_safe, good)
        if self.noise_prior is not None:
            self._sample_noise_variance(x_hat, good)
        self.step.assign_add(1)
        self.loss_tracker.update_state(tf.where(good, loss, 0.0),
                                       sample_weight=tf.cast(good, loss.dtype))
        return psnr_obs

    def _logs(self, psnr_obs):
        """The logs after a step whose observation PSNR was ``psnr_obs``, read from the state."""
        logs = {"loss": self.loss_tracker.result(), "psnr_obs": psnr_obs,
                "rollbacks": tf.identity(self.rollbacks)}
        if self.reference is not None:
            logs["psnr"] = tf_psnr(self.last_output, self.reference)
            if self.ema_decay is not None:
                logs["psnr_ema"] = tf_psnr(self.ema, self.reference)
            if self.burn_in is not None:
                logs["psnr_mean"] = tf.cond(
                    self.moments.count > 0,
                    lambda: tf_psnr(self.moments.mean[None], self.reference),
                    lambda: tf.constant(0.0, self.state_dtype))
        if self.burn_in is not None:
            logs["samples"] = tf.identity(self.moments.count)
        if self.noise_prior is not None:
            logs["sigma"] = tf.sqrt(self.noise_variance)
        return logs

    def _sample_noise_variance(self, x_hat, good):
        """Gibbs step for the noise variance: s2 ~ p(s2 | w_t, y), keyed on (seed, step); drawn
        by XLA with and without ``jit_compile`` (TFP's gamma sampler differs between the two)."""
        sse = tf.reduce_sum(tf.square(self.physics.residual(self.y, x_hat)))
        key = tf.stack([tf.constant(self.seeds.noise_level, tf.int64), self.step])
        draw = xla_compiled(self.noise_prior.sample)(sse, self.num_observed, key)
        self.noise_variance.assign(tf.where(good, tf.cast(draw, self.noise_variance.dtype),
                                            self.noise_variance))

    def _track_budget(self, loss, x, good):
        """State of the automatic budget (the loss window) and of ES-WMV (the iterate window)."""
        if self.burn_in == "auto":
            self._record_loss(loss, good)
        if self.wmv is not None:
            self.wmv.update(x[0])

    def _record_loss(self, loss, good):
        """Keep step t's loss in slot ``t mod drift_window`` of ``loss_window`` (the last good
        loss again on a rolled-back step), for the burn-in drift test."""
        size = tf.shape(self.loss_window, out_type=tf.int64)[0]
        previous = self.loss_window[tf.math.floormod(self.step - 1, size)]
        value = tf.where(good, tf.cast(loss, self.loss_window.dtype), previous)
        self.loss_window.scatter_nd_update([[tf.math.floormod(self.step, size)]], [value])

    def recent_losses(self) -> np.ndarray:
        """The losses of the last ``min(step, drift_window)`` steps, oldest first (host side)."""
        window = self.loss_window.numpy()
        step, size = int(self.step.numpy()), window.shape[0]
        return np.roll(window, -(step % size))[size - min(step, size):]

    def _collect(self, x, good):
        """Posterior sample bookkeeping for output x (H, W, C) of step ``self.step``."""
        since = self.step - self.sampling_start
        take = good & (since >= 0) & tf.equal(tf.math.floormod(since, self.thin), 0)

        def update():
            index = self.moments.count   # the sample's number, 0 first
            capacity = tf.shape(self.trace, out_type=tf.int64)[0]
            full = tf.equal(tf.math.floormod(index, self.trace_stride), 0) & (
                index // self.trace_stride >= capacity)
            tf.cond(full, self._thin_trace, tf.no_op)
            stride = self.trace_stride
            keep = tf.equal(tf.math.floormod(index, stride), 0)
            values = tf.gather(tf.reshape(x, [-1]), self.trace_index)
            row = tf.minimum(index // stride, capacity - 1)
            tf.cond(keep, lambda: tf.group(self.trace.scatter_nd_update([[row]], [values])),
                    tf.no_op)
            self.moments.update(x)
            return tf.constant(True)

        tf.cond(take, update, lambda: tf.constant(False))

    def _thin_trace(self):
        """Keep every other trace row (rows 0, 2, 4, ... move to 0, 1, 2, ...), double the stride."""
        kept = self.trace[::2]
        rest = tf.zeros_like(self.trace[tf.shape(kept)[0]:])
        return tf.group(self.trace.assign(tf.concat([kept, rest], axis=0)),
                        self.trace_stride.assign(self.trace_stride * 2))

    def traced_samples(self) -> np.ndarray:
        """The trace's filled rows ``(n, P)``: samples 0, s, 2s, ... of the chain (s the
        ``trace_stride``), oldest first."""
        count, stride = int(self.moments.count.numpy()), int(self.trace_stride.numpy())
        rows = min(-(-count // stride), int(self.trace.shape[0]))
        return self.trace.numpy()[:rows]

    # ------------------------------------------------------------------ user API
    def fit(self, iterations, *, log_every=None, callbacks=None, verbose=0):
        """Run ``iterations`` training steps (each one ``train_step`` inside ``tf.function``).

        A Keras epoch ends at every multiple of ``log_every`` steps of the run (default
        ``min(iterations, 100)``) and after the last step: that is the granularity of History,
        callbacks' ``on_epoch_end`` and progress. A callback with an integer attribute
        ``step_interval`` gets ``on_step_interval(step)`` after every step of the run that is a
        multiple of it (checkpoints at any interval); the steps in between run back to back,
        several per call of the compiled function, without reading anything back to the host.
        ``on_train_batch_begin`` / ``end`` then come once per call (batch indices of its first
        and last step, as Keras' ``steps_per_execution``), unless a callback hooks them without
        declaring ``whole_calls = True``: then every step is its own call. The first step of a
        model runs alone (it traces the function). A callback that sets ``stop_training`` in
        ``on_step_interval`` ends the run at that step. The step counter continues across calls, so
        ``fit`` twice for n steps equals once for 2n.
        """
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
                or iterations < 1:
            raise TfdipError(f"iterations must be a positive integer, got {iterations!r}")
        log_every = int(log_every or min(iterations, 100))
        if log_every < 1:
            raise TfdipError(f"log_every must be a positive integer, got {log_every}")
        self._build_optimizer()
        callbacks = list(callbacks or [])
        intervals = sorted({int(c.step_interval) for c in callbacks
                            if getattr(c, "step_interval", None)})
        step = int(self.step.numpy())
        end = step + int(iterations)
        callback_list = keras.callbacks.CallbackList(
            callbacks, add_history=True, add_progbar=verbose != 0, model=self,
            verbose=verbose, epochs=-(-end // log_every), steps=log_every)
        self.stop_training = False
        one_per_call = any(_hooks_batches(c) for c in callback_list.callbacks)
        callback_list.on_train_begin()
        logs = {}
        while step < end and not self.stop_training:
            epoch = step // log_every
            epoch_end = min((epoch + 1) * log_every, end)
            self.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            while step < epoch_end and not self.stop_training:
                stop = min([epoch_end] + [(step // n + 1) * n for n in intervals])
                while step < stop:
                    steps = 1 if one_per_call or self._compiled_steps is None else stop - step
                    callback_list.on_train_batch_begin(step - epoch * log_every)
                    logs = self._train_function(tf.constant(steps, tf.int32))
                    step += steps
                    callback_list.on_train_batch_end(step - 1 - epoch * log_every, logs)
                for callback in callbacks:
                    interval = getattr(callback, "step_interval", None)
                    if interval and step % int(interval) == 0:
                        callback.on_step_interval(step)
            callback_list.on_epoch_end(epoch, dict(logs))
        callback_list.on_train_end(dict(logs))
        return self.history

    @property
    def _train_function(self):
        """``steps -> logs``: ``steps`` (an int32 scalar tensor >= 1) training steps in a
        ``tf.while_loop`` inside one ``tf.function`` (XLA-compiled with ``jit_compile``), traced
        once; returns the logs of the last step."""
        if self._compiled_steps is None:
            def run(steps):
                _, psnr_obs = tf.while_loop(
                    lambda i, _: i < steps, lambda i, _: (i + 1, self._update()),
                    (tf.constant(0, tf.int32), tf.constant(0.0, self.state_dtype)))
                return self._logs(psnr_obs)

            self._compiled_steps = tf.function(
                run, jit_compile=self.xla, input_signature=[tf.TensorSpec([], tf.int32)])
        return self._compiled_steps

    def _build_optimizer(self):
        if self.optimizer is None:
            raise TfdipError("call compile(optimizer=...) before fit()")
        if not self.optimizer.built:
            self.optimizer.build(self.generator.trainable_variables)

    def compile(self, optimizer="adam", *, jit_compile=False, **kwargs):
        """Keras' ``compile`` with XLA chosen explicitly: ``jit_compile`` is True or False (never
        Keras' ``"auto"``, which turns XLA on whenever a GPU is visible). A float16 generator
        gets its optimizer wrapped in a dynamic ``LossScaleOptimizer`` (:mod:`tfdip.precision`)."""
        if not isinstance(jit_compile, bool):
            raise TfdipError(f"jit_compile must be True or False, got {jit_compile!r}")
        optimizer = with_loss_scaling(optimizer, self.generator)
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        if self.jit_compile != jit_compile:
            raise TfdipError("XLA (jit_compile=True) is not supported for this network; "
                             "use jit_compile=False")
        self.xla = jit_compile
        self._compiled_steps = None  # the next fit traces the steps with this optimizer

    def restored(self, which="last"):
        """The restoration as an (H, W, C) NumPy array: ``"last"`` (G(z) at the current weights),
        ``"ema"`` (output moving average) or ``"mean"`` (posterior mean)."""
        if which == "last":
            return self(self.z).numpy()[0]
        if which == "ema":
            return self.ema.numpy()[0]
        if which == "mean":
            return self.moments.mean.numpy()
        raise TfdipError(f"unknown restoration {which!r}; use 'last', 'ema' or 'mean'")

    def export(self, directory, *, overwrite=False):
        """Write a self-contained TF SavedModel of this restoration (see :mod:`tfdip.export`)."""
        return export_dip(self, directory, overwrite=overwrite)

    def checkpoint(self):
        """A ``tf.train.Checkpoint`` holding every piece of state of a run (weights, optimizer and
        sampler state, RNG states, EMA, moments, traced pixels and trace, step, the automatic
        budget's decisions)."""
        return tf.train.Checkpoint(
            generator=self.generator, optimizer=self.optimizer, z=self.z,
            jitter_seed=self.jitter_seed.state, ema=self.ema, last_output=self.last_output,
            step=self.step, rollbacks=self.rollbacks, last_good_psnr=self.last_good_psnr,
            moments=self.moments, trace=self.trace, trace_index=self.trace_index,
            shadow=list(self.shadow), noise_variance=self.noise_variance,
            trace_stride=self.trace_stride, sampling_start=self.sampling_start,
            loss_window=self.loss_window, drift_streak=self.drift_streak,
            stop_step=self.stop_step, stop_reason=self.stop_reason,
            **({} if self.wmv is None else {"wmv": self.wmv}))
