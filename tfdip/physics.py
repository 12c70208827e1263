"""Degradations: a linear forward operator A, a Gaussian noise model and the likelihood of y.

An observation of a clean image x is

    y = A(x) + n,    n ~ N(0, sigma^2) on every observed entry,

with images in [0, 1] and tensors NHWC. Three operators are provided, all linear:

* :class:`Denoising`        A = identity                                 (H, W, C) -> (H, W, C)
* :class:`Inpainting`       A(x) = m * x, m a 0/1 mask (1 = known)       (H, W, C) -> (H, W, C)
* :class:`SuperResolution`  A = the DIP reference's Lanczos-2 anti-aliased down-sampler with
                            stride f                                     (H, W, C) -> (H/f, W/f, C)

Each gives the DIP loss (:meth:`Physics.mse`, a mean as the reference computes it) and the
Gaussian log-likelihood summed over observed entries (:meth:`Physics.log_likelihood`), both as tf
scalars usable inside ``tf.function``; float32 and float64 are supported.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfdip.errors import TfdipError

Shape3 = Tuple[int, int, int]


def _check_sigma(sigma) -> float:
    """A noise std for images in [0, 1]: finite, >= 0 and at most 1."""
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise TfdipError(f"noise level sigma must be a number, got {sigma!r}") from None
    if not math.isfinite(sigma) or sigma < 0:
        raise TfdipError(f"noise level sigma must be a finite number >= 0 (images in [0, 1], "
                         f"e.g. 25/255), got {sigma}")
    if sigma > 1:
        raise TfdipError(f"noise level sigma = {sigma} is larger than the whole [0, 1] range of "
                         f"the image; give it in [0, 1] units (e.g. 25/255 = {25 / 255:.4f})")
    return sigma


def _as_float_tensor(x) -> tf.Tensor:
    """A tensor of floats (integers become float32)."""
    x = tf.convert_to_tensor(x)
    return x if x.dtype.is_floating else tf.cast(x, tf.float32)


def _as_batch(x) -> tf.Tensor:
    """A float tensor of rank 4 (N, H, W, C); a clear error for any other static rank."""
    x = _as_float_tensor(x)
    if x.shape.rank is not None and x.shape.rank != 4:
        raise TfdipError(f"expected a batch of images of shape (N, H, W, C), got shape "
                         f"{tuple(x.shape)}; add a batch axis with x[None]")
    return x


def _static_hwc(x: tf.Tensor):
    """The (H, W, C) of an NHWC tensor, entries None where unknown."""
    return tuple(x.shape[1:])


def _image_hwc(shape: Sequence[int]) -> Shape3:
    """Validate an (H, W, C) shape of positive integers."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise TfdipError(f"expected an image shape (H, W, C) of positive sizes, got {shape}")
    return shape


class Physics:
    """A linear degradation ``y = A(x) + N(0, sigma^2)`` of images in [0, 1].

    Subclasses define :meth:`forward`, :meth:`adjoint`, :meth:`observation_shape` and
    :meth:`image_shape`; inpainting also restricts the residual to its observed entries.

    Attributes:
        sigma: std of the additive Gaussian observation noise; 0 means noise-free.
        name: the task name used by :func:`make_physics`.
    """

    name = "physics"

    def __init__(self, sigma: float = 0.0):
        self.sigma = _check_sigma(sigma)

    # --- the operator -------------------------------------------------------------------------
    def forward(self, x) -> tf.Tensor:
        """A(x) for x of shape (N, H, W, C) -> (N, h, w, C), in x's float type."""
        raise NotImplementedError

    def __call__(self, x) -> tf.Tensor:
        return self.forward(x)

    def adjoint(self, y) -> tf.Tensor:
        """A^T y for y of shape (N, h, w, C) -> (N, H, W, C): <A x, y> = <x, A^T y>."""
        raise NotImplementedError

    def observation_shape(self, image_shape: Sequence[int]) -> Shape3:
        """(h, w, C) of the observation of an (H, W, C) image."""
        return _image_hwc(image_shape)

    def image_shape(self, observation_shape: Sequence[int]) -> Shape3:
        """(H, W, C) of the image restored from an (h, w, C) observation."""
        return _image_hwc(observation_shape)

    def _observed(self, r: tf.Tensor) -> tf.Tensor:
        """r with its unobserved entries set to 0 (all entries are observed by default)."""
        return r

    def num_observed(self, observation_shape: Sequence[int]) -> int:
        """Number of observed scalar entries in an (h, w, C) observation."""
        return int(np.prod(_image_hwc(observation_shape)))

    # --- the noise model ----------------------------------------------------------------------
    def simulate(self, x: np.ndarray, seed: int, clip: bool = True) -> np.ndarray:
        """An observation of the clean (H, W, C) image ``x``: A(x) + N(0, sigma^2), deterministic in seed.

        With ``clip`` (default, the DIP protocol) the noisy observation is clipped to [0, 1].
        Unobserved entries (inpainting) are 0. Returns an (h, w, C) array in x's float type
        (float32 for integer input).
        """
        x = np.asarray(x)
        if x.ndim != 3:
            raise TfdipError(f"simulate expects one image of shape (H, W, C), got shape {x.shape}")
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        clean = self.forward(tf.constant(x[None], dtype=dtype))
        noise = np.random.default_rng(seed).standard_normal(tuple(clean.shape)) * self.sigma
        y = clean + tf.constant(noise, dtype=dtype)
        if clip:
            y = tf.clip_by_value(y, 0.0, 1.0)
        return self._observed(y)[0].numpy()

    def residual(self, y, x_hat) -> tf.Tensor:
        """m * (A(x_hat) - y): the misfit on observed entries, shape (N, h, w, C), in x_hat's type."""
        x_hat = _as_batch(x_hat)
        return self._observed(self.forward(x_hat) - tf.cast(y, x_hat.dtype))

    def mse(self, y, x_hat) -> tf.Tensor:
        """The DIP loss: mean over all N*h*w*C entries of (m * (A(x_hat) - y))^2 (tf scalar).

        For inpainting this is the reference's mean over all pixels of (m*x_hat - m*y)^2.
        """
        return tf.reduce_mean(tf.square(self.residual(y, x_hat)))

    def log_likelihood(self, y, x_hat, sigma=None) -> tf.Tensor:
        """log p(y | x_hat) of the Gaussian noise model, summed over the n_obs observed entries:

            -||m * (A(x_hat) - y)||^2 / (2 sigma^2) - n_obs / 2 * log(2 pi sigma^2)

        ``sigma`` overrides the operator's own noise level: a number (checked; it must not be 0)
        or a positive scalar tensor (e.g. a sampled noise level inside a ``tf.function``).
        Returns a tf scalar in x_hat's float type.
        """
        if tf.is_tensor(sigma):
            return self._gaussian_log_likelihood(y, x_hat, sigma)
        sigma = self.sigma if sigma is None else _check_sigma(sigma)
        if sigma == 0:
            raise TfdipError("the log-likelihood needs a noise level but sigma is 0; give a noise "
                             "level (e.g. sigma=25/255, or a small value such as 0.01 for clean data)")
        return self._gaussian_log_likelihood(y, x_hat, sigma)

    def _gaussian_log_likelihood(self, y, x_hat, sigma) -> tf.Tensor:
        r = self.residual(y, x_hat)
        sigma = tf.cast(sigma, r.dtype) if tf.is_tensor(sigma) else tf.constant(sigma, r.dtype)
        variance = tf.square(sigma)
        n_obs = tf.reduce_sum(self._observed(tf.ones_like(r)))
        return (-tf.reduce_sum(tf.square(r)) / (2 * variance)
                - 0.5 * n_obs * tf.math.log(2 * math.pi * variance))

    # --- serialisation ------------------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-friendly constructor arguments: ``type(self).from_config(self.get_config())``."""
        return {"sigma": self.sigma}

    @classmethod
    def from_config(cls, config: dict) -> "Physics":
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "mask")
        return f"{type(self).__name__}({arguments})"


class Denoising(Physics):
    """A = identity: y = x + N(0, sigma^2) on every entry."""

    name = "denoising"

    def __init__(self, sigma: float):
        super().__init__(sigma)

    def forward(self, x) -> tf.Tensor:
        return _as_batch(x)

    def adjoint(self, y) -> tf.Tensor:
        return _as_batch(y)


class Inpainting(Physics):
    """A(x) = m * x with a 0/1 mask m of known pixels; the noise only touches known entries.

    Args:
        mask: array of shape (H, W), (H, W, 1) or (H, W, C); nonzero marks a known entry.
            A one-channel mask applies to every channel of the image.
        sigma: noise std on the known entries.
    """

    name = "inpainting"

    def __init__(self, mask, sigma: float = 0.0):
        super().__init__(sigma)
        mask = np.asarray(mask)
        if mask.ndim == 2:
            mask = mask[:, :, None]
        if mask.ndim != 3 or mask.size == 0:
            raise TfdipError(f"an inpainting mask must have shape (H, W) or (H, W, C), got shape "
                             f"{mask.shape}")
        if np.issubdtype(mask.dtype, np.floating) and not np.isfinite(mask).all():
            raise TfdipError("the inpainting mask contains NaN or inf; give 0 for missing and 1 "
                             "for known pixels")
        self.mask = (mask != 0).astype(np.float32)
        if not self.mask.any():
            raise TfdipError("the inpainting mask has no known pixel; mark known pixels with "
                             "nonzero values")

    @classmethod
    def bernoulli(cls, shape_hw: Sequence[int], keep_fraction: float, seed: int,
                  sigma: float = 0.0) -> "Inpainting":
        """A random (H, W) mask keeping each pixel independently with probability keep_fraction.

        The paper's protocol drops 50% of the pixels: ``keep_fraction=0.5``.
        """
        if not 0 < keep_fraction <= 1:
            raise TfdipError(f"keep_fraction is the share of known pixels and must be in (0, 1], "
                             f"got {keep_fraction}")
        shape_hw = tuple(int(s) for s in shape_hw)
        if len(shape_hw) != 2 or min(shape_hw) < 1:
            raise TfdipError(f"shape_hw must be (H, W) of positive sizes, got {shape_hw}")
        return cls(np.random.default_rng(seed).random(shape_hw) < keep_fraction, sigma)

    def _check_fits(self, image_hwc) -> None:
        """A clear error if the mask cannot be applied to an image of this (H, W, C)."""
        mask_h, mask_w, mask_c = self.mask.shape
        h, w, c = image_hwc
        if (h is not None and h != mask_h) or (w is not None and w != mask_w):
            raise TfdipError(f"mask is {mask_h}x{mask_w} but the image is {h}x{w}; give a mask "
                             f"of the image's size")
        if mask_c != 1 and c is not None and c != mask_c:
            raise TfdipError(f"mask has {mask_c} channels but the image has {c}; give an (H, W) "
                             f"mask or one with the image's channels")

    def _mask_like(self, x: tf.Tensor) -> tf.Tensor:
        self._check_fits(_static_hwc(x))
        return tf.constant(self.mask, dtype=x.dtype)

    def forward(self, x) -> tf.Tensor:
        x = _as_batch(x)
        return self._mask_like(x) * x

    def adjoint(self, y) -> tf.Tensor:
        return self.forward(y)

    def _observed(self, r: tf.Tensor) -> tf.Tensor:
        return self._mask_like(r) * r

    def observation_shape(self, image_shape: Sequence[int]) -> Shape3:
        image_shape = _image_hwc(image_shape)
        self._check_fits(image_shape)
        return image_shape

    image_shape = observation_shape

    def num_observed(self, observation_shape: Sequence[int]) -> int:
        h, w, c = self.observation_shape(observation_shape)
        return int(np.broadcast_to(self.mask, (h, w, c)).sum())

    def get_config(self) -> dict:
        mask = self.mask[:, :, 0] if self.mask.shape[2] == 1 else self.mask
        return {"mask": mask.astype(np.uint8).tolist(), "sigma": self.sigma}


def lanczos2_kernel(factor: int) -> np.ndarray:
    """The reference's Lanczos-2 down-sampling filter for ``factor``, shape (4f, 4f), sum 1.

    DIP's ``get_kernel(factor, 'lanczos', phase=0.5, kernel_width=4f+1, support=2)``: taps at
    half-pixel offsets d_i = |i - 2f - 1/2| / f, i = 1..4f, weight
    L(d) = 2 sin(pi d) sin(pi d / 2) / (pi d)^2 per axis, the 2-D kernel the outer product
    L(d_i) L(d_j), normalised to sum 1. It is symmetric under flips of either axis.
    """
    offsets = np.abs(np.arange(1, 4 * factor + 1) - 2 * factor - 0.5) / factor
    taps = 2 * np.sin(np.pi * offsets) * np.sin(np.pi * offsets / 2) / (np.pi * offsets) ** 2
    kernel = np.outer(taps, taps)
    return kernel / kernel.sum()


def _replicate_pad(x: tf.Tensor, before: int, after: int, axis: int) -> tf.Tensor:
    """Extend ``axis`` by repeating its first entry ``before`` times and its last ``after`` times."""
    size = tf.shape(x)[axis]
    return tf.gather(x, tf.clip_by_value(tf.range(-before, size + after), 0, size - 1), axis=axis)


def _replicate_pad_adjoint(z: tf.Tensor, before: int, after: int, axis: int) -> tf.Tensor:
    """Adjoint of :func:`_replicate_pad`: add each copied border back onto the edge it came from.

    Needs an unpadded size of at least 2 along ``axis``.
    """
    padded = tf.shape(z)[axis]
    first_stop, last_start = before + 1, padded - after - 1

    def part(start, stop):
        return tf.gather(z, tf.range(start, stop), axis=axis)

    return tf.concat([tf.reduce_sum(part(0, first_stop), axis=axis, keepdims=True),
                      part(first_stop, last_start),
                      tf.reduce_sum(part(last_start, padded), axis=axis, keepdims=True)], axis=axis)


def _planes(x: tf.Tensor) -> tf.Tensor:
    """(N, H, W, C) -> (N*C, H, W, 1): every channel becomes a one-channel image."""
    shape = tf.shape(x)
    return tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [shape[0] * shape[3], shape[1], shape[2], 1])


def _unplanes(planes: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Inverse of :func:`_planes`; N and C are taken from ``like``."""
    n, c = tf.shape(like)[0], tf.shape(like)[3]
    shape = tf.shape(planes)
    return tf.transpose(tf.reshape(planes, [n, c, shape[1], shape[2]]), [0, 2, 3, 1])


class SuperResolution(Physics):
    """A = the DIP reference's anti-aliased down-sampler by an integer factor f >= 2.

    As ``Downsampler(n_planes, f, kernel_type='lanczos2', phase=0.5, preserve_size=True)`` of
    DIP's ``models/downsampler.py``: every channel is replication-padded by 3f/2 pixels on each
    side, then filtered with :func:`lanczos2_kernel` (4f x 4f) at stride f (a depthwise VALID
    convolution), so an (H, W, C) image gives an (H/f, W/f, C) observation. H and W must be
    multiples of f. For odd f, where the reference's symmetric pad of floor(3f/2) would lose the
    last output row and column, the bottom/right pad is one pixel wider so the output is H/f.
    """

    name = "superresolution"

    def __init__(self, factor: int, sigma: float = 0.0):
        super().__init__(sigma)
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 2:
            raise TfdipError(f"the super-resolution factor must be an integer >= 2, got {factor!r}")
        self.factor = int(factor)
        self.kernel = lanczos2_kernel(self.factor)
        self._pad_before = 3 * self.factor // 2
        self._pad_after = 3 * self.factor - self._pad_before

    def _check_divisible(self, h, w) -> None:
        f = self.factor
        if (h is not None and h % f) or (w is not None and w % f):
            cropped = "x".join("?" if s is None else str(s - s % f) for s in (h, w))
            raise TfdipError(f"image is {h}x{w} but super-resolution x{f} needs sides that are "
                             f"multiples of {f}; crop it to {cropped}")

    def _filter(self, dtype) -> tf.Tensor:
        return tf.constant(self.kernel[:, :, None, None], dtype=dtype)

    def forward(self, x) -> tf.Tensor:
        x = _as_batch(x)
        h, w, _ = _static_hwc(x)
        self._check_divisible(h, w)
        padded = _planes(x)
        for axis in (1, 2):
            padded = _replicate_pad(padded, self._pad_before, self._pad_after, axis)
        low = tf.nn.conv2d(padded, self._filter(x.dtype), strides=self.factor, padding="VALID")
        return _unplanes(low, x)

    def adjoint(self, y) -> tf.Tensor:
        y = _as_batch(y)
        planes = _planes(y)
        shape = tf.shape(planes)
        padded_shape = tf.stack([shape[0], self.factor * shape[1] + 3 * self.factor,
                                 self.factor * shape[2] + 3 * self.factor, 1])
        spread = tf.nn.conv2d_transpose(planes, self._filter(y.dtype), padded_shape,
                                        strides=self.factor, padding="VALID")
        for axis in (1, 2):
            spread = _replicate_pad_adjoint(spread, self._pad_before, self._pad_after, axis)
        return _unplanes(spread, y)

    def observation_shape(self, image_shape: Sequence[int]) -> Shape3:
        h, w, c = _image_hwc(image_shape)
        self._check_divisible(h, w)
        return h // self.factor, w // self.factor, c

    def image_shape(self, observation_shape: Sequence[int]) -> Shape3:
        h, w, c = _image_hwc(observation_shape)
        return self.factor * h, self.factor * w, c

    def get_config(self) -> dict:
        return {"factor": self.factor, "sigma": self.sigma}


TASKS = {cls.name: cls for cls in (Denoising, Inpainting, SuperResolution)}


def make_physics(task: str, **kwargs) -> Physics:
    """The operator for ``task`` ("denoising", "inpainting" or "superresolution").

    ``kwargs`` are the class's constructor arguments, e.g. ``make_physics("superresolution",
    factor=4)``; ``make_physics(p.name, **p.get_config())`` rebuilds ``p``.
    """
    if task not in TASKS:
        raise TfdipError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    try:
        return TASKS[task](**kwargs)
    except TypeError as error:
        raise TfdipError(f"wrong arguments for task {task!r}: {error}") from None
