"""A Deep Image Prior restoration as a self-contained TF SavedModel: :func:`export_dip`.

The SavedModel holds a snapshot of the run: the generator's weights, the fixed input ``z``
(1, Hp, Wp, C_in), the run's input-jitter std, its posterior moments and its output EMA. The
generator's graph is traced into concrete functions, so loading needs neither tfdip nor Keras
(``tf.saved_model.load(path)``), or only Keras
(``keras.layers.TFSMLayer(path, call_endpoint=...)``).
Every image output is float32 of shape (1, H, W, C); the generator runs as in training, with
BatchNorm on the statistics of the one image it produces.

Functions of the loaded object (``ignored`` is an optional float32 tensor of any shape that is
not used: ``TFSMLayer`` always passes one input):

* ``restore(ignored=None)`` (alias ``serving_default``): ``{"image": crop(G(z))}``, the run's
  restoration at its last weights (``DeepImagePrior.restored("last")``);
* ``sample(seed, noise_std=None)``: ``{"image": crop(G(z + noise_std * eps))}`` with
  ``eps ~ N(0, I)`` drawn by ``tf.random.stateless_normal`` keyed on ``[seed, 0]`` (``seed`` an
  int64 scalar; same seed, same image). ``noise_std`` (float32 scalar) defaults to the run's
  ``input_noise_std``: the DIP input jitter, whose outputs are draws of the predictive spread
  that the jitter induces (0 for the Langevin recipes on denoising, which have no jitter);
* ``posterior(ignored=None)``: ``{"mean", "std"}`` (1, H, W, C), the posterior moments the run
  collected, ``"samples"`` (int64 scalar) their count (zeros and 0 for a run that collected none),
  and ``"ema"`` (1, H, W, C), the exponential moving average of the outputs.

Serving signatures (keyword inputs): ``serving_default`` and ``restore`` (no input), ``sample``
(``seed``), ``sample_with_noise_std`` (``seed``, ``noise_std``) and ``posterior`` (no input).
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import tensorflow as tf

from tfdip.errors import TfdipError

IGNORED_INPUT = tf.TensorSpec(None, tf.float32, name="ignored")
SEED = tf.TensorSpec((), tf.int64, name="seed")
NOISE_STD = tf.TensorSpec((), tf.float32, name="noise_std")
SAVED_MODEL_FILE = "saved_model.pb"
RUN_STATE = ("generator", "z", "input_noise_std", "moments", "ema", "crop")
"""What :func:`export_dip` reads of a :class:`~tfdip.dip.DeepImagePrior`."""


def _copy(value, name: str, trainable: bool = False) -> tf.Variable:
    """A new ``tf.Variable`` holding the current value of ``value`` (a tensor or a variable)."""
    return tf.Variable(tf.convert_to_tensor(value), trainable=trainable, name=name)


class ExportedRestoration(tf.Module):
    """The exported state of a :class:`~tfdip.dip.DeepImagePrior` run and its serving functions.

    The weights are copies taken at construction; the generator is evaluated on them with
    ``stateless_call``, so tracing captures these copies only (not the live model).
    """

    def __init__(self, dip):
        super().__init__(name="deep_image_prior")
        generator = dip.generator
        self.generator_trainable = [_copy(v, v.path, trainable=True)
                                    for v in generator.trainable_variables]
        self.generator_non_trainable = [_copy(v, v.path)
                                        for v in generator.non_trainable_variables]
        self.z = _copy(dip.z, "z")
        self.input_noise_std = _copy(tf.constant(dip.input_noise_std, tf.float32),
                                     "input_noise_std")
        self.posterior_mean = _copy(dip.moments.mean[None], "posterior_mean")
        self.posterior_std = _copy(dip.moments.std[None], "posterior_std")
        self.posterior_samples = _copy(dip.moments.count, "posterior_samples")
        self.ema = _copy(dip.ema, "ema")
        self._generator = generator.stateless_call
        self._crop = dip.crop
        self.serving_default = self.restore

    def _render(self, z):
        """``crop(G(z))`` at the exported weights: (1, Hp, Wp, C_in) -> (1, H, W, C) float32."""
        image, _ = self._generator(list(self.generator_trainable),
                                   list(self.generator_non_trainable), z, training=True)
        return tf.cast(self._crop(image), tf.float32)

    @tf.function(autograph=False)
    def restore(self, ignored=None):
        """``{"image": crop(G(z))}``, (1, H, W, C) float32; ``ignored`` is not used."""
        del ignored
        return {"image": self._render(self.z)}

    @tf.function(autograph=False)
    def sample(self, seed, noise_std=None):
        """``{"image": crop(G(z + noise_std * eps))}``, eps ~ N(0, I) keyed on ``[seed, 0]``."""
        if noise_std is None:
            noise_std = self.input_noise_std
        key = tf.stack([seed, tf.zeros_like(seed)])
        eps = tf.random.stateless_normal(tf.shape(self.z), seed=key, dtype=self.z.dtype)
        return {"image": self._render(self.z + tf.cast(noise_std, self.z.dtype) * eps)}

    @tf.function(autograph=False)
    def posterior(self, ignored=None):
        """The run's posterior mean, std, sample count and output EMA; ``ignored`` is not used."""
        del ignored
        return {"mean": tf.identity(self.posterior_mean), "std": tf.identity(self.posterior_std),
                "samples": tf.identity(self.posterior_samples), "ema": tf.identity(self.ema)}

    def trace_signatures(self) -> dict:
        """Trace every call form of the functions; return the serving signatures."""
        self.restore.get_concrete_function(IGNORED_INPUT)
        self.posterior.get_concrete_function(IGNORED_INPUT)
        restore = self.restore.get_concrete_function()
        return {
            "serving_default": restore,
            "restore": restore,
            "sample": self.sample.get_concrete_function(SEED),
            "sample_with_noise_std": self.sample.get_concrete_function(SEED, NOISE_STD),
            "posterior": self.posterior.get_concrete_function(),
        }


def check_export_target(directory, overwrite: bool = False) -> Path:
    """Check, before any work, that a SavedModel can be written to the folder ``directory``.

    The parent folder must exist and be writable; ``directory`` must be new or an empty folder,
    or, with ``overwrite``, a folder holding a SavedModel (a folder of anything else is never
    replaced). Returns ``directory`` as an absolute path; raises :class:`TfdipError` otherwise.
    """
    if not os.fspath(directory):
        raise TfdipError("the export folder is an empty path; give a folder name")
    target = Path(directory).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise TfdipError(f"{target} is a file; give a folder path for the SavedModel")
    if not target.parent.is_dir():
        raise TfdipError(f"folder {target.parent} does not exist; create it or choose another path")
    if not os.access(target.parent, os.W_OK):
        raise TfdipError(f"folder {target.parent} is not writable; choose another path")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise TfdipError(f"folder {target} is not empty; choose a new or empty folder, "
                             f"or pass overwrite=True to replace the SavedModel in it")
        if not (target / SAVED_MODEL_FILE).is_file():
            raise TfdipError(f"folder {target} is not empty and holds no SavedModel; refusing "
                             f"to replace it, choose another folder")
    return target


def _move_into_place(temporary: Path, target: Path) -> None:
    """Rename ``temporary`` to ``target``; an existing ``target`` is set aside, then removed."""
    if not target.exists():
        os.replace(temporary, target)
        return
    old = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.old"
    os.replace(target, old)
    try:
        os.replace(temporary, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_dip(dip, directory, *, overwrite: bool = False) -> str:
    """Write ``dip``'s restoration (a :class:`~tfdip.dip.DeepImagePrior`, or anything holding its
    :data:`RUN_STATE`) as a TF SavedModel into the folder ``directory``.

    The SavedModel is written into a temporary folder next to ``directory`` and then renamed into
    place, so no reader ever sees a partial SavedModel, and a failed write leaves the folder as it
    was. An existing folder must be empty, unless ``overwrite`` is true and it holds a SavedModel,
    which is replaced (see :func:`check_export_target`). Returns the folder's absolute path.
    See the module docstring for what the SavedModel serves.
    """
    if not all(hasattr(dip, name) for name in RUN_STATE):
        raise TfdipError(f"export_dip needs a DeepImagePrior, got {type(dip).__name__}")
    target = check_export_target(directory, overwrite)
    module = ExportedRestoration(dip)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        tf.saved_model.save(module, str(temporary), signatures=module.trace_signatures())
        _move_into_place(temporary, target)
    except (OSError, tf.errors.OpError) as error:
        raise TfdipError(f"cannot write the SavedModel to {target}: "
                         f"{getattr(error, 'strerror', None) or error}") from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return str(target)
