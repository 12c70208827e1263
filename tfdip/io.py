"""Reading and writing images, masks, arrays and reports, with validation and atomic writes.

Images come back as float32 arrays (H, W, C) on the [0, 1] scale with C = 1 (gray) or 3 (RGB);
an alpha channel is split off so it can be passed through a restoration unchanged. Integer files
give values in [0, 1]; float files (``.npy``, float TIFF) may hold noisy values a little outside
it (within ``NOISY_RANGE``, kept as they are, since noise in real data is rarely clipped); NaN,
inf and data on another scale (0..255, 0..65535) are refused with a hint. Supported inputs:

* PNG, JPEG, TIFF, BMP, GIF and whatever else Pillow opens, in modes 1, L, P, LA, PA, RGB, RGBA,
  CMYK, YCbCr, 16-bit gray (I;16*, I), float (F, values in [0, 1]); the first frame of
  multi-frame files; the EXIF orientation is applied.
* 16-bit colour PNG and TIFF, which Pillow would cut to 8 bits: decoded with TensorFlow's PNG
  decoder and tifffile instead.
* ``.npy`` float arrays (H, W) or (H, W, C), C in {1, 2, 3, 4} (2 and 4 carry alpha).

Every write goes to a temporary file in the destination folder that is renamed over the target
(``os.replace``) only once complete, so a failed or interrupted write leaves nothing behind.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import uuid
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tifffile
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from tfdip.errors import TfdipError

#: Extensions :func:`write_image` can write, mapped to their format.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                 ".bmp": "BMP", ".npy": "NPY"}

#: Extensions :func:`check_output_path` accepts by default: the images and reports io writes.
WRITABLE_EXTENSIONS = (*IMAGE_FORMATS, ".json")

#: How far outside [0, 1] float input may stray (rounding) and still be clipped to [0, 1].
RANGE_TOLERANCE = 1e-4

#: Float input within this range is accepted unclipped (noisy observations of a [0, 1] image,
#: noise std up to about 1/3); beyond it, the data is on another scale and refused with a hint.
NOISY_RANGE = (-1.0, 2.0)

_GRAY_16_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@dataclasses.dataclass
class Image:
    """An image read from disk.

    Attributes:
        pixels: float32 (H, W, C), C = 1 or 3, in [0, 1] (float sources: within NOISY_RANGE).
        alpha: float32 (H, W, 1) in [0, 1], or None when the file has no alpha channel.
        bit_depth: bits per channel of the source, 8 or 16 (16 also for float sources: ``.npy``
            and float TIFF), the depth to write results back with.
        source_mode: the Pillow mode of the file (e.g. "RGB", "I;16", "P") or "npy".
    """

    pixels: np.ndarray
    alpha: Optional[np.ndarray]
    bit_depth: int
    source_mode: str

    @property
    def shape(self):
        return self.pixels.shape


# --- reading -----------------------------------------------------------------------------------
def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise TfdipError(f"no such file: {path}")
    if path.is_dir():
        raise TfdipError(f"{path} is a folder, not a file; give the path of a file in it")
    if path.stat().st_size == 0:
        raise TfdipError(f"{path} is empty (0 bytes); give a valid image file")


def _scale_hint(low: float, high: float) -> str:
    """What float values far outside [0, 1] probably are, and how to rescale them."""
    if low >= -RANGE_TOLERANCE and high <= 255 * 1.25:
        return "they look like 0..255 data: divide by 255"
    if low >= -RANGE_TOLERANCE and high <= 65535 * 1.25:
        return "they look like 0..65535 data: divide by 65535"
    return "rescale them to [0, 1]"


def _float_samples(array: np.ndarray, path: Path) -> np.ndarray:
    """Validate float samples of an image on the [0, 1] scale; return float32.

    Values within ``RANGE_TOLERANCE`` of [0, 1] are clipped to it (rounding). Values further
    out but inside ``NOISY_RANGE`` are kept as they are: noisy observations are rarely clipped.
    NaN, inf and values beyond ``NOISY_RANGE`` (another scale) are refused.
    """
    if not np.issubdtype(array.dtype, np.floating):
        scale = {np.dtype(np.uint8): " (0..255 data? save as PNG or divide by 255)",
                 np.dtype(np.uint16): " (0..65535 data? save as PNG or divide by 65535)"}
        raise TfdipError(f"{path} holds {array.dtype} values{scale.get(array.dtype, '')}; save "
                         f"float values in [0, 1]")
    if array.size == 0:
        raise TfdipError(f"{path} holds no pixels (shape {array.shape}); give a non-empty image")
    if not np.all(np.isfinite(array)):
        raise TfdipError(f"{path} contains NaN or inf values; give finite values in [0, 1]")
    low, high = float(array.min()), float(array.max())
    if low >= -RANGE_TOLERANCE and high <= 1 + RANGE_TOLERANCE:
        return np.clip(array, 0, 1).astype(np.float32)
    if NOISY_RANGE[0] <= low and high <= NOISY_RANGE[1]:
        return array.astype(np.float32)
    raise TfdipError(f"{path} has values in [{low:.4g}, {high:.4g}], far outside the [0, 1] "
                     f"scale of images; {_scale_hint(low, high)}")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise TfdipError(f"cannot read {path} as a NumPy .npy array ({error})") from None


def _split_alpha(samples: np.ndarray, bit_depth: int, source_mode: str) -> Image:
    """An :class:`Image` from (H, W, C) samples; C = 2 or 4 means the last channel is alpha."""
    has_alpha = samples.shape[2] in (2, 4)
    return Image(pixels=samples[:, :, :-1] if has_alpha else samples,
                 alpha=np.clip(samples[:, :, -1:], 0, 1) if has_alpha else None,
                 bit_depth=bit_depth,
                 source_mode=source_mode)


def _read_npy_image(path: Path) -> Image:
    array = _load_npy(path)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise TfdipError(f"{path} has shape {array.shape}; an image array must be (H, W) or "
                         f"(H, W, C) with C = 1, 3 (or 2, 4 with alpha)")
    return _split_alpha(_float_samples(array, path), 16, "npy")


def _raw_mode(image: PILImage.Image) -> str:
    """The file's own sample layout as Pillow's decoder sees it (e.g. "RGB;16B")."""
    if not image.tile:
        return image.mode
    args = image.tile[0].args
    return args if isinstance(args, str) else str(args[0])


def _unit_samples(array: np.ndarray, path: Path):
    """(float32 (H, W, C) in [0, 1], bit depth) of uint8, uint16 or float samples (H, W[, C])."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] > 4:
        raise TfdipError(f"{path} has samples of shape {array.shape}; expected a single "
                         f"gray, gray+alpha, RGB or RGBA image")
    if array.dtype == np.uint8:
        return (array / 255.0).astype(np.float32), 8
    if array.dtype == np.uint16:
        return (array / 65535.0).astype(np.float32), 16
    return _float_samples(array, path), 16


def _wide_colour_samples(path: Path, image: PILImage.Image) -> Optional[np.ndarray]:
    """uint16 samples of a 16-bit colour PNG or TIFF, which Pillow would cut to 8 bits, else None."""
    if image.mode in _GRAY_16_BIT_MODES or ";16" not in _raw_mode(image):
        return None
    if image.format == "PNG":
        return tf.io.decode_png(tf.io.read_file(str(path)), dtype=tf.uint16).numpy()
    if image.format == "TIFF":
        return tifffile.imread(path, key=0)
    return None


def _pillow_samples(image: PILImage.Image, path: Path):
    """(float32 (H, W, C) in [0, 1] with alpha as last channel if any, bit depth) of a Pillow image."""
    mode = image.mode
    if mode in _GRAY_16_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise TfdipError(f"{path} holds 32-bit integers outside 0..65535; save it as 8- or "
                             f"16-bit or as a float .npy array")
        return _unit_samples(values.astype(np.uint16), path)
    if mode == "F":
        return _unit_samples(np.asarray(image), path)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in image.info)
    is_gray = mode in ("1", "L", "LA", "La")
    samples = np.asarray(image.convert(("LA" if has_alpha else "L") if is_gray
                                       else ("RGBA" if has_alpha else "RGB")))
    if mode in ("P", "PA") and np.array_equal(samples[:, :, 0], samples[:, :, 1]) \
            and np.array_equal(samples[:, :, 0], samples[:, :, 2]):
        samples = samples[:, :, [0, 3] if has_alpha else [0]]    # a gray palette
    return _unit_samples(samples, path)


def _read_with_pillow(path: Path):
    """(samples, bit depth, mode) of an image file; TIFFs Pillow cannot open go to tifffile."""
    try:
        with PILImage.open(path) as image:
            wide = _wide_colour_samples(path, image)      # before load(), which drops the tile
            if wide is not None:
                return (*_unit_samples(wide, path), image.mode)
            image.load()
            return (*_pillow_samples(ImageOps.exif_transpose(image), path), image.mode)
    except UnidentifiedImageError:
        if path.suffix.lower() in (".tif", ".tiff"):
            return (*_unit_samples(tifffile.imread(path, key=0), path), "tifffile")
        raise


def _read_image_file(path: Path) -> Image:
    try:
        samples, bit_depth, mode = _read_with_pillow(path)
    except TfdipError:
        raise
    except UnidentifiedImageError:
        raise TfdipError(f"{path} is not an image file Pillow can read; give a PNG, JPEG, TIFF, "
                         f"BMP or .npy file") from None
    except PILImage.DecompressionBombError as error:
        raise TfdipError(f"{path} is too large to read safely ({error})") from None
    except (OSError, SyntaxError, ValueError, tifffile.TiffFileError, tf.errors.OpError) as error:
        message = getattr(error, "message", None) or str(error)
        raise TfdipError(f"cannot read {path}: the file is damaged or truncated ({message})") from None
    return _split_alpha(samples, bit_depth, mode)


def read_image(path, min_size: int = 2) -> Image:
    """Read an image file or ``.npy`` array as an :class:`Image` (float32 (H, W, C) in [0, 1]).

    Both sides must be at least ``min_size`` pixels (pass the network's requirement).
    Raises TfdipError for a missing, empty, unreadable or too small file.
    """
    path = Path(path)
    _check_readable_file(path)
    image = _read_npy_image(path) if path.suffix.lower() == ".npy" else _read_image_file(path)
    h, w = image.pixels.shape[:2]
    if min(h, w) < max(min_size, 1):
        raise TfdipError(f"image {path} is {h}x{w} pixels but must be at least "
                         f"{min_size}x{min_size}; give a larger image")
    return image


def read_mask(path, shape_hw: Sequence[int]) -> np.ndarray:
    """A boolean (H, W) mask of known pixels from an image or ``.npy`` file; nonzero = known.

    Colour masks count a pixel as known if any channel is nonzero (an alpha channel is
    ignored). Use a lossless format: JPEG noise turns black pixels into small nonzero values.
    """
    path = Path(path)
    _check_readable_file(path)
    if path.suffix.lower() == ".npy":
        values = _load_npy(path)
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            raise TfdipError(f"{path} holds {values.dtype} values; a mask must be numbers or booleans")
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            raise TfdipError(f"mask {path} contains NaN or inf; give 0 for missing and 1 for known")
    else:
        values = read_image(path, min_size=1).pixels
    if values.ndim == 3:
        values = np.any(values != 0, axis=2)
    if values.ndim != 2:
        raise TfdipError(f"mask {path} has shape {values.shape}; give an (H, W) mask")
    known = values != 0
    height, width = (int(s) for s in shape_hw)
    if known.shape != (height, width):
        raise TfdipError(f"mask is {known.shape[0]}x{known.shape[1]} but the image is "
                         f"{height}x{width}; give a mask of the image's size")
    if not known.any():
        raise TfdipError(f"mask {path} has no known pixel (all zero); mark known pixels with "
                         f"nonzero values")
    return known


# --- writing -----------------------------------------------------------------------------------
def _format_of(path: Path) -> str:
    extension = path.suffix.lower()
    if extension not in IMAGE_FORMATS:
        raise TfdipError(f"cannot write {path}: unsupported extension {extension or '(none)'}; "
                         f"use one of {', '.join(IMAGE_FORMATS)}")
    return IMAGE_FORMATS[extension]


def check_output_path(path, extensions: Optional[Sequence[str]] = None) -> Path:
    """Validate an output path before a long computation so that a run fails fast.

    The folder must exist and be writable, the path must not be a folder, and its extension
    must be one of ``extensions`` (default ``WRITABLE_EXTENSIONS``: the image formats of
    :func:`write_image` and ``.json``; pass ``IMAGE_FORMATS`` for an image output).
    Returns the path as a :class:`Path`.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise TfdipError(f"output folder {folder} does not exist; create it or choose another -o")
    if path.is_dir():
        raise TfdipError(f"output {path} is a folder; give a file name such as {path / 'out.png'}")
    if not os.access(folder, os.W_OK):
        raise TfdipError(f"output folder {folder} is not writable; choose another -o")
    allowed = WRITABLE_EXTENSIONS if extensions is None else tuple(e.lower() for e in extensions)
    if path.suffix.lower() not in allowed:
        raise TfdipError(f"cannot write {path}: unsupported extension "
                         f"{path.suffix or '(none)'}; use one of {', '.join(allowed)}")
    return path


def _atomic_write(path: Path, write: Callable) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary file is removed on any failure; OSErrors become TfdipErrors.
    """
    if not path.parent.is_dir():
        raise TfdipError(f"output folder {path.parent} does not exist; create it or choose "
                         f"another -o")
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(temporary, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            if error.errno == errno.ENOSPC:
                raise TfdipError(f"no space left on the device while writing {path}; free some "
                                 f"space or choose another -o") from None
            raise TfdipError(f"cannot write {path}: {error.strerror or error}") from None
        raise


def _quantise(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """[0, 1] floats to rounded uint8 / uint16."""
    top, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    return np.round(np.clip(values, 0, 1) * top).astype(dtype)


def _image_channels(pixels, alpha):
    """pixels (H, W, C) with alpha appended as a last channel, float32; validated."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or pixels.size == 0:
        raise TfdipError(f"can only write images of shape (H, W), (H, W, 1) or (H, W, 3), "
                         f"got {pixels.shape}")
    if alpha is not None:
        alpha = np.asarray(alpha, dtype=np.float32)
        alpha = alpha[:, :, None] if alpha.ndim == 2 else alpha
        if alpha.shape != pixels.shape[:2] + (1,):
            raise TfdipError(f"alpha must have shape (H, W) or (H, W, 1) of the image's size "
                             f"{pixels.shape[0]}x{pixels.shape[1]}, got {alpha.shape}")
        pixels = np.concatenate([pixels, alpha], axis=2)
    if not np.all(np.isfinite(pixels)):
        raise TfdipError("the image to write contains NaN or inf values")
    return pixels


def write_image(path, pixels, alpha=None, bit_depth: int = 8) -> Path:
    """Write an image atomically; the format follows the extension (see ``IMAGE_FORMATS``).

    Args:
        path: output file; its folder must exist.
        pixels: (H, W), (H, W, 1) or (H, W, 3) floats in [0, 1] (clipped when quantised).
        alpha: optional (H, W) or (H, W, 1) alpha in [0, 1], stored as an alpha channel
            (``.npy``: appended as the last channel). JPEG and BMP cannot store it: it is dropped.
        bit_depth: 8 or 16 for PNG and TIFF (gray or colour); JPEG and BMP are always 8-bit;
            ``.npy`` always stores the float32 values.
    Returns the path written.
    """
    path = Path(path)
    image_format = _format_of(path)
    if bit_depth not in (8, 16):
        raise TfdipError(f"bit_depth must be 8 or 16, got {bit_depth}")
    channels = _image_channels(pixels, alpha)
    if image_format == "NPY":
        _atomic_write(path, lambda file: np.save(file, channels, allow_pickle=False))
        return path
    if image_format in ("JPEG", "BMP"):
        colour_channels = 3 if channels.shape[2] >= 3 else 1
        channels, bit_depth = channels[:, :, :colour_channels], 8
    samples = _quantise(channels, bit_depth)
    if image_format == "PNG":
        encoded = tf.io.encode_png(samples).numpy()
        _atomic_write(path, lambda file: file.write(encoded))
    elif image_format == "TIFF" and bit_depth == 16:
        _atomic_write(path, lambda file: tifffile.imwrite(
            file, samples[:, :, 0] if samples.shape[2] == 1 else samples,
            photometric="minisblack" if samples.shape[2] <= 2 else "rgb",
            planarconfig="contig",
            extrasamples=(2,) if samples.shape[2] in (2, 4) else None))
    else:
        image = PILImage.fromarray(samples[:, :, 0] if samples.shape[2] == 1 else samples)
        _atomic_write(path, lambda file: image.save(file, format=image_format))
    return path


def _json_default(value):
    """JSON for NumPy scalars and arrays and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically. NumPy scalars and arrays and paths are
    converted; non-finite floats are written as ``Infinity`` / ``NaN`` (as Python's json does).
    """
    return write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; returns the path written."""
    path = Path(path)
    data = text.encode("utf-8")
    _atomic_write(path, lambda file: file.write(data))
    return path
