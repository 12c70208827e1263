"""Keras callbacks for DIP runs: a one-line progress bar, TensorBoard logging and checkpoints.

All three read the :class:`tfdip.DeepImagePrior` they are attached to (``self.model``): its
``step``, ``last_output``, ``moments`` and the logs its ``train_step`` returns (``loss``,
``psnr_obs``, and with a reference ``psnr``, ``psnr_ema``, ``psnr_mean``).
"""
from __future__ import annotations

import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfdip.checkpoints import ChainCheckpoint
from tfdip.errors import TfdipError


class ProgressBar(keras.callbacks.Callback):
    """``[#####.....] 1200/3000 loss 0.0021 PSNR(obs) 27.31 dB 0.12 s/it`` on one line of ``stream``.

    Updated at the end of every Keras epoch (``log_every`` steps); ``prefix`` names the chain.
    """

    def __init__(self, total_steps: int, prefix: str = "", stream=None, width: int = 24):
        super().__init__()
        self.total = int(total_steps)
        self.prefix = prefix
        self.stream = stream or sys.stderr
        self.width = width
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        self.start_step = int(self.model.step.numpy())

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        step = int(self.model.step.numpy())
        done = min(step / max(self.total, 1), 1.0)
        filled = int(round(done * self.width))
        rate = (time.perf_counter() - self.start) / max(step - self.start_step, 1)
        parts = [f"{self.prefix}[{'#' * filled}{'.' * (self.width - filled)}] {step}/{self.total}"]
        if "loss" in logs:
            parts.append(f"loss {float(logs['loss']):.4g}")
        for key, label in (("psnr", "PSNR"), ("psnr_mean", "PSNR(mean)"), ("psnr_obs", "PSNR(obs)")):
            if key in logs and float(logs[key]) > 0:
                parts.append(f"{label} {float(logs[key]):.2f} dB")
                break
        parts.append(f"{rate:.3f} s/it")
        self.stream.write("\r" + "  ".join(parts) + " " * 4)
        self.stream.flush()

    def on_train_end(self, logs=None):
        self.stream.write("\n")
        self.stream.flush()


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes scalars every ``log_every`` steps (Keras epoch) and images every ``image_every`` steps.

    Scalars: every numeric entry of the logs (``loss``, ``psnr_obs``, ``psnr``, ``psnr_ema``,
    ``psnr_mean``, ``samples``, ``rollbacks``). Images: ``sample`` (the current output),
    ``ema`` and, once samples exist, ``posterior_mean`` and ``posterior_std`` (the channel-mean std
    scaled to its maximum). Open with ``tensorboard --logdir LOGDIR``.
    """

    def __init__(self, logdir: str, image_every: int = 100):
        super().__init__()
        self.logdir = logdir
        self.image_every = int(image_every)
        self.writer = None
        self._last_image_step = -1

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(self.logdir)

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.step.numpy())
        with self.writer.as_default(step=step):
            for key, value in (logs or {}).items():
                value = np.asarray(value)
                if value.size == 1 and np.isfinite(value):
                    tf.summary.scalar(key, float(value))
            if step // self.image_every != self._last_image_step // self.image_every:
                self._write_images()
                self._last_image_step = step
        self.writer.flush()

    def _write_images(self):
        model = self.model
        tf.summary.image("sample", _displayable(model.last_output))
        if model.ema_decay is not None:
            tf.summary.image("ema", _displayable(model.ema))
        if model.burn_in is not None and int(model.moments.count.numpy()) > 0:
            tf.summary.image("posterior_mean", _displayable(model.moments.mean[None]))
            std = tf.reduce_mean(model.moments.std, axis=-1, keepdims=True)[None]
            tf.summary.image("posterior_std", std / tf.maximum(tf.reduce_max(std), 1e-12))

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


def _displayable(x):
    return tf.clip_by_value(tf.convert_to_tensor(x), 0.0, 1.0)


class CheckpointEvery(keras.callbacks.Callback):
    """Saves the model's whole run state (``DeepImagePrior.checkpoint()``) into ``directory``
    after every ``every`` steps of the run (any ``every >= 1``, whatever the logging interval)
    and when training ends, atomically (:class:`tfdip.checkpoints.ChainCheckpoint`).

    ``DeepImagePrior.fit`` calls :meth:`on_step_interval` at the multiples of ``step_interval``.
    """

    def __init__(self, directory, every: int):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise TfdipError(f"the checkpoint interval must be a whole number of steps >= 1, "
                             f"got {every!r}")
        self.store = ChainCheckpoint(directory)
        self.step_interval = int(every)
        self._checkpoint = None
        self._saved_step = None

    def on_train_begin(self, logs=None):
        self._checkpoint = self.model.checkpoint()
        latest = self.store.latest()
        self._saved_step = None if latest is None else latest[0]

    def on_step_interval(self, step):
        self.store.save(self._checkpoint, step)
        self._saved_step = step

    def on_train_end(self, logs=None):
        step = int(self.model.step.numpy())
        if step != self._saved_step:
            self.on_step_interval(step)
