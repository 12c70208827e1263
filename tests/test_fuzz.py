"""Property-based tests of input validation: whatever image, mask or parameter comes in, tfdip.io
and the command line give either a result of the right shape or one line of error (exit 2),
never a traceback."""
import io as _io

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image as PILImage

from tfdip.cli import main
from tfdip.errors import TfdipError
from tfdip.io import read_image, read_mask

DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64,
          np.bool_, np.complex64]
SIDES = st.integers(1, 70)


def fuzz(examples: int):
    """Bounded, derandomised runs: the same examples every time, no example database."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@st.composite
def arrays(draw, max_side=70):
    """Any dtype NumPy gives, shape (H, W) or (H, W, C), NaN / inf / huge values included."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    if draw(st.booleans()):
        shape += (draw(st.integers(1, 5)),)
    if draw(st.booleans()):   # a constant-ish fill keeps examples fast
        fill = draw(hnp.from_dtype(dtype))
        return np.full(shape, fill, dtype)
    elements = None
    if dtype.kind == "f":
        elements = st.one_of(st.floats(-0.5, 1.5, width=dtype.itemsize * 8),
                             st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, 255.0]))
    return draw(hnp.arrays(dtype, shape, elements=elements))


def _one_line(error: Exception) -> None:
    message = str(error)
    assert message and "\n" not in message, message


def _check_image(image, shape) -> None:
    assert image.pixels.dtype == np.float32 and image.pixels.shape[:2] == shape[:2]
    assert image.pixels.shape[2] in (1, 3) and np.all(np.isfinite(image.pixels))
    if image.alpha is not None:
        assert image.alpha.shape == shape[:2] + (1,)
        assert image.alpha.min() >= 0 and image.alpha.max() <= 1


@fuzz(150)
@given(array=arrays())
def test_any_npy_array_reads_or_fails_in_one_line(tmp_path, array):
    path = tmp_path / "x.npy"
    np.save(path, array)
    try:
        image = read_image(path, min_size=1)
    except TfdipError as error:
        _one_line(error)
        return
    _check_image(image, array.shape)


MODES = ["1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F", "La",
         "RGBa", "LAB", "HSV"]
FORMATS = ["PNG", "TIFF", "BMP", "JPEG", "GIF"]


@fuzz(120)
@given(mode=st.sampled_from(MODES), fmt=st.sampled_from(FORMATS), height=SIDES, width=SIDES,
       seed=st.integers(0, 2**16))
def test_any_pillow_image_reads_or_fails_in_one_line(tmp_path, mode, fmt, height, width, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = _io.BytesIO()
    try:
        PILImage.fromarray(rgb).convert(mode).save(buffer, format=fmt)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)        # a combination Pillow itself cannot write
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(buffer.getvalue())
    try:
        image = read_image(path, min_size=1)
    except TfdipError as error:
        _one_line(error)
        return
    _check_image(image, (height, width))


@fuzz(120)
@given(mask=arrays(max_side=12), height=st.integers(1, 12), width=st.integers(1, 12))
def test_any_mask_gives_a_boolean_mask_of_the_image_or_one_line(tmp_path, mask, height, width):
    path = tmp_path / "m.npy"
    np.save(path, mask)
    try:
        known = read_mask(path, (height, width))
    except TfdipError as error:
        _one_line(error)
        return
    assert known.dtype == bool and known.shape == (height, width) and known.any()


NUMBERS = st.sampled_from(["-5", "0", "0.5", "1", "2", "3", "25", "1e9", "nan", "inf", "-inf",
                           "abc"])


def _option(draw, valid, good, bad=NUMBERS):
    """A good value for a valid call; any value, often absurd, otherwise."""
    return draw(st.sampled_from(good)) if valid else draw(bad)


@st.composite
def cli_calls(draw, folder):
    """A restoration command on a random small image; half of the calls get sensible options
    (they must succeed or fail in one line), the other half random, often absurd, ones."""
    valid = draw(st.booleans())
    if valid:
        shape = (draw(st.integers(2, 24)), draw(st.integers(2, 24)), draw(st.sampled_from([1, 3])))
        array = np.random.default_rng(draw(st.integers(0, 99))).uniform(-0.1, 1.1, shape)
        array = array.astype(draw(st.sampled_from([np.float32, np.float64, np.float16])))
    else:
        array = draw(arrays(max_side=40))
    np.save(folder / "obs.npy", array)
    command = draw(st.sampled_from(["denoise", "inpaint", "superres"]))
    argv = [command, str(folder / "obs.npy"), "-o", str(folder / "out.npy"), "--quiet",
            "--channels", "8",
            "--iterations", _option(draw, valid, ["1", "2", "3"], st.sampled_from(["0", "-1", "2"])),
            "--method", draw(st.sampled_from(["sgd", "paper", "psgld", "sgld"]))]
    if command == "denoise" or draw(st.booleans()):
        argv += ["--sigma", _option(draw, valid, ["0", "5", "25", "50"])]
    if command == "inpaint":
        mask = (np.random.default_rng(draw(st.integers(0, 99))).uniform(size=array.shape[:2]) > 0.5
                if valid else draw(arrays(max_side=40)))
        np.save(folder / "mask.npy", mask)
        argv += ["--mask", str(folder / "mask.npy")]
    if command == "superres":
        argv += ["--factor", _option(draw, valid, ["2", "3"])]
    for flag in () if valid else ("--burn-in", "--thin", "--lr", "--seed"):
        if draw(st.booleans()):
            argv += [flag, draw(NUMBERS)]
    if draw(st.booleans()):
        argv += ["--chains", _option(draw, valid, ["1", "2"], st.sampled_from(["1", "2", "0"]))]
    return array, argv


@fuzz(12)
@given(data=st.data())
def test_the_command_line_never_gives_a_traceback(tmp_path, capsys, data):
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    array, argv = data.draw(cli_calls(tmp_path))
    try:
        code = main(argv)
    except SystemExit as exit:           # argparse: bad option values
        code = exit.code
    err = capsys.readouterr().err.strip()
    assert code in (0, 2), (argv, err)
    event(f"exit status {code}")
    if code == 2:
        assert err.startswith("tfdip") and "error:" in err and "\n" not in err, (argv, err)
        assert not (tmp_path / "out.npy").exists()
        return
    restored = np.load(tmp_path / "out.npy")
    height, width = array.shape[:2]
    factor = int(argv[argv.index("--factor") + 1]) if "--factor" in argv else 1
    assert restored.shape[:2] == (height * factor, width * factor)
    assert restored.shape[2] in (1, 3) and restored.min() >= 0 and restored.max() <= 1


@pytest.mark.parametrize("argv", [
    ["kernel", "--net", "skip", "--levels", "0", "--plot", "{d}/k.png"],
    ["kernel", "--max-offset", "-3", "--plot", "{d}/k.png"],
    ["corrupt", "{d}/x.png", "-o", "{d}/o.png", "--downscale", "0"],
    ["corrupt", "{d}/x.png", "-o", "{d}/o.png", "--downscale", "-2"],
    ["corrupt", "{d}/x.png", "-o", "{d}/o.png", "--noise", "1e9"],
    ["corrupt", "{d}/x.png", "-o", "{d}/o.png", "--drop", "nan"],
    ["gp", "{d}/x.png", "-o", "{d}/o.png", "--sigma", "-1"],
])
def test_absurd_parameters_of_the_other_commands_fail_in_one_line(tmp_path, argv, capsys):
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    try:
        code = main([a.format(d=tmp_path) for a in argv])
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "error:" in err and "\n" not in err, err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "k.png").exists()
