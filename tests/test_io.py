"""Image, mask, array and report I/O: exact round trips, modes, validation and atomic writes."""
import errno
import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

import tfdip.io
from tfdip.errors import TfdipError
from tfdip.io import check_output_path, read_image, read_mask, write_image, write_json


def levels(shape, top, seed=0):
    """Random integer samples 0..top as floats in [0, 1] (exactly representable after quantising)."""
    return np.random.default_rng(seed).integers(0, top + 1, shape) / top


# --- round trips ----------------------------------------------------------------------------------
def test_rgb_8_bit_png_round_trip(tmp_path):
    pixels = levels((6, 7, 3), 255)
    write_image(tmp_path / "x.png", pixels)
    image = read_image(tmp_path / "x.png")
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (6, 7, 3)
    assert (image.alpha, image.bit_depth, image.source_mode) == (None, 8, "RGB")
    np.testing.assert_array_equal(np.round(image.pixels * 255), np.round(pixels * 255))
    assert np.abs(image.pixels - pixels).max() < 1e-6


def test_gray_8_bit_round_trip_keeps_one_channel(tmp_path):
    pixels = levels((5, 9), 255)
    write_image(tmp_path / "g.png", pixels)
    image = read_image(tmp_path / "g.png")
    assert image.pixels.shape == (5, 9, 1) and image.source_mode == "L"
    np.testing.assert_array_equal(np.round(image.pixels[:, :, 0] * 255), np.round(pixels * 255))


def test_16_bit_gray_png_is_exact(tmp_path):
    pixels = levels((8, 5, 1), 65535)
    write_image(tmp_path / "g16.png", pixels, bit_depth=16)
    raw = np.asarray(PILImage.open(tmp_path / "g16.png"))
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, np.round(pixels[:, :, 0] * 65535).astype(np.uint16))
    image = read_image(tmp_path / "g16.png")
    assert image.bit_depth == 16 and image.source_mode.startswith("I;16")
    np.testing.assert_array_equal(np.round(image.pixels.astype(np.float64) * 65535),
                                  np.round(pixels * 65535))


@pytest.mark.parametrize("extension", [".png", ".tif"])
def test_16_bit_colour_is_not_cut_to_8_bits(tmp_path, extension):
    pixels = levels((4, 6, 3), 65535, seed=2)
    alpha = levels((4, 6, 1), 65535, seed=3)
    write_image(tmp_path / f"c16{extension}", pixels, alpha=alpha, bit_depth=16)
    image = read_image(tmp_path / f"c16{extension}")
    assert image.bit_depth == 16
    np.testing.assert_array_equal(np.round(image.pixels.astype(np.float64) * 65535),
                                  np.round(pixels * 65535))
    np.testing.assert_array_equal(np.round(image.alpha.astype(np.float64) * 65535),
                                  np.round(alpha * 65535))


def test_rgba_alpha_is_split_off_and_written_back(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (6, 4, 4), dtype=np.uint8)
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "in.png")
    image = read_image(tmp_path / "in.png")
    assert image.pixels.shape == (6, 4, 3) and image.alpha.shape == (6, 4, 1)
    assert image.source_mode == "RGBA"
    np.testing.assert_array_equal(np.round(image.alpha[:, :, 0] * 255), rgba[:, :, 3])
    write_image(tmp_path / "out.png", image.pixels, alpha=image.alpha)
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "out.png")), rgba)


def test_gray_with_alpha(tmp_path):
    la = np.random.default_rng(2).integers(0, 256, (5, 5, 2), dtype=np.uint8)
    PILImage.fromarray(la, "LA").save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.pixels.shape == (5, 5, 1)
    np.testing.assert_array_equal(np.round(image.pixels[:, :, 0] * 255), la[:, :, 0])
    np.testing.assert_array_equal(np.round(image.alpha[:, :, 0] * 255), la[:, :, 1])


def test_npy_round_trip_is_exact(tmp_path):
    pixels = np.random.default_rng(3).random((7, 5, 3)).astype(np.float32)
    alpha = np.random.default_rng(4).random((7, 5, 1)).astype(np.float32)
    write_image(tmp_path / "x.npy", pixels, alpha=alpha)
    image = read_image(tmp_path / "x.npy")
    np.testing.assert_array_equal(image.pixels, pixels)
    np.testing.assert_array_equal(image.alpha, alpha)
    assert image.source_mode == "npy"
    np.save(tmp_path / "gray.npy", pixels[:, :, 0].astype(np.float64))
    np.testing.assert_array_equal(read_image(tmp_path / "gray.npy").pixels, pixels[:, :, :1])


@pytest.mark.parametrize("bit_depth,top", [(8, 255), (16, 65535)])
def test_tiff_round_trip(tmp_path, bit_depth, top):
    for pixels in (levels((6, 5, 3), top), levels((6, 5, 1), top)):
        write_image(tmp_path / "x.tiff", pixels, bit_depth=bit_depth)
        image = read_image(tmp_path / "x.tiff")
        assert image.bit_depth == bit_depth and image.pixels.shape == pixels.shape
        np.testing.assert_array_equal(np.round(image.pixels.astype(np.float64) * top),
                                      np.round(pixels * top))


def test_8_bit_tiff_keeps_gray_alpha(tmp_path):
    pixels, alpha = levels((5, 6, 1), 255, seed=8), levels((5, 6, 1), 255, seed=9)
    write_image(tmp_path / "la.tif", pixels, alpha=alpha)
    image = read_image(tmp_path / "la.tif")
    assert image.bit_depth == 8 and image.pixels.shape == (5, 6, 1)
    np.testing.assert_array_equal(np.round(image.alpha * 255), np.round(alpha * 255))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[0, :] = 255                                    # a white top row
    exif = PILImage.Exif()
    exif[0x0112] = 6                                      # stored rotated: display turned 90 degrees
    PILImage.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
    image = read_image(tmp_path / "rotated.png")
    assert image.pixels.shape == (8, 4, 3)
    np.testing.assert_array_equal(image.pixels[:, -1], 1.0)   # the top row is now the right column


def test_jpeg_and_bmp_are_8_bit_without_alpha(tmp_path):
    smooth = np.tile(np.linspace(0.2, 0.8, 16), (16, 1))[:, :, None].repeat(3, axis=2)
    write_image(tmp_path / "x.jpg", smooth, alpha=np.ones((16, 16)), bit_depth=16)
    image = read_image(tmp_path / "x.jpg")
    assert (image.source_mode, image.bit_depth, image.alpha) == ("RGB", 8, None)
    assert np.abs(image.pixels - smooth).max() < 0.03          # lossy, but close
    write_image(tmp_path / "x.bmp", smooth)
    assert np.abs(read_image(tmp_path / "x.bmp").pixels - smooth).max() < 1 / 255


def test_other_pillow_modes(tmp_path):
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    PILImage.fromarray(gray).convert("P").save(tmp_path / "gray_palette.png")
    image = read_image(tmp_path / "gray_palette.png")
    assert image.source_mode == "P" and image.pixels.shape == (6, 6, 1)
    np.testing.assert_array_equal(np.round(image.pixels[:, :, 0] * 255), gray)

    colours = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    palette = PILImage.fromarray(colours).quantize(8)
    palette.save(tmp_path / "palette.png")
    image = read_image(tmp_path / "palette.png")
    assert image.pixels.shape == (6, 6, 3)
    np.testing.assert_array_equal(np.round(image.pixels * 255), np.asarray(palette.convert("RGB")))

    cmyk = PILImage.fromarray(colours).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.tif")
    image = read_image(tmp_path / "cmyk.tif")
    assert image.source_mode == "CMYK" and image.pixels.shape == (6, 6, 3)
    np.testing.assert_array_equal(np.round(image.pixels * 255), np.asarray(cmyk.convert("RGB")))

    wide = rng.integers(0, 65536, (6, 6)).astype(np.int32)
    PILImage.fromarray(wide, "I").save(tmp_path / "int32.tif")
    image = read_image(tmp_path / "int32.tif")
    assert image.bit_depth == 16
    np.testing.assert_array_equal(np.round(image.pixels[:, :, 0].astype(np.float64) * 65535), wide)


# --- masks ----------------------------------------------------------------------------------------
def test_read_mask_from_image_and_npy(tmp_path):
    known = np.random.default_rng(6).random((8, 6)) < 0.5
    PILImage.fromarray(known.astype(np.uint8)).save(tmp_path / "m.png")   # 0/1 values: nonzero = known
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", (8, 6)), known)
    np.save(tmp_path / "m.npy", known.astype(np.float32))
    mask = read_mask(tmp_path / "m.npy", (8, 6))
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, known)
    rgb = np.zeros((8, 6, 3), np.uint8)
    rgb[known, 1] = 200
    PILImage.fromarray(rgb).save(tmp_path / "rgb_mask.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb_mask.png", (8, 6)), known)


def test_bad_masks(tmp_path):
    np.save(tmp_path / "small.npy", np.ones((30, 40)))
    with pytest.raises(TfdipError, match="mask is 30x40 but the image is 32x32; give a mask"):
        read_mask(tmp_path / "small.npy", (32, 32))
    np.save(tmp_path / "empty.npy", np.zeros((4, 4)))
    with pytest.raises(TfdipError, match="no known pixel"):
        read_mask(tmp_path / "empty.npy", (4, 4))
    np.save(tmp_path / "nan.npy", np.full((4, 4), np.nan))
    with pytest.raises(TfdipError, match="NaN"):
        read_mask(tmp_path / "nan.npy", (4, 4))


# --- bad input files ------------------------------------------------------------------------------
def test_bad_image_files(tmp_path):
    with pytest.raises(TfdipError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(TfdipError, match="folder"):
        read_image(tmp_path)
    (tmp_path / "text.png").write_text("this is not a picture\n")
    with pytest.raises(TfdipError, match="not an image"):
        read_image(tmp_path / "text.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(TfdipError, match="empty"):
        read_image(tmp_path / "empty.png")
    write_image(tmp_path / "x.png", levels((16, 16, 3), 255))
    (tmp_path / "cut.png").write_bytes((tmp_path / "x.png").read_bytes()[:60])
    with pytest.raises(TfdipError, match="damaged or truncated"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "text.npy").write_text("nope")
    with pytest.raises(TfdipError, match="npy"):
        read_image(tmp_path / "text.npy")


def test_too_small_images(tmp_path):
    write_image(tmp_path / "one.png", np.ones((1, 1, 3)))
    with pytest.raises(TfdipError, match="1x1 pixels"):
        read_image(tmp_path / "one.png")
    write_image(tmp_path / "small.png", np.ones((20, 40, 3)))
    with pytest.raises(TfdipError, match="at least 32x32"):
        read_image(tmp_path / "small.png", min_size=32)
    assert read_image(tmp_path / "small.png", min_size=20).shape == (20, 40, 3)


@pytest.mark.parametrize("array,word", [
    (np.array([[0.5, np.nan], [0.1, 0.2]]), "NaN"),
    (np.array([[0.5, np.inf], [0.1, 0.2]]), "NaN or inf"),
    (np.array([[0.5, 2.5], [0.1, 0.2]]), "0..255 data: divide by 255"),
    (np.array([[0.5, 250.0], [0.0, 3.0]]), "0..255 data: divide by 255"),
    (np.array([[0.5, 40000.0], [0.0, 3.0]]), "0..65535 data: divide by 65535"),
    (np.array([[0.5, -1.5], [0.1, 0.2]]), "[0, 1]"),
    (np.zeros((0, 4)), "no pixels"),
    (np.zeros((2, 2, 2, 1)), "shape"),
    (np.zeros((2, 2, 5)), "shape"),
    (np.zeros(4), "shape"),
    (np.array([[0, 255], [3, 4]], dtype=np.uint8), "float"),
    (np.array([[0, 255], [3, 4]], dtype=np.uint16), "0..65535"),
])
def test_bad_npy_images(tmp_path, array, word):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(TfdipError, match=word.replace("[", r"\[").replace("]", r"\]")):
        read_image(tmp_path / "bad.npy")


def test_noisy_observations_outside_0_1_are_kept_as_they_are(tmp_path):
    rng = np.random.default_rng(0)
    noisy = (rng.uniform(size=(8, 8, 3)) + 0.1 * rng.standard_normal((8, 8, 3))).astype(np.float32)
    noisy[0, 0, 0], noisy[1, 1, 1] = -0.2, 1.2
    np.save(tmp_path / "noisy.npy", noisy)
    np.testing.assert_array_equal(read_image(tmp_path / "noisy.npy").pixels, noisy)


def test_npy_rounding_noise_is_tolerated_and_clipped(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[-1e-6, 1 + 1e-6], [0.0, 0.5]]))
    pixels = read_image(tmp_path / "x.npy").pixels
    assert pixels.min() == 0.0 and pixels.max() == 1.0


# --- writing: validation and atomicity ------------------------------------------------------------
def test_check_output_path(tmp_path):
    assert check_output_path(tmp_path / "out.png") == tmp_path / "out.png"
    with pytest.raises(TfdipError, match="output folder .* does not exist; create it or choose another -o"):
        check_output_path(tmp_path / "nowhere" / "out.png")
    with pytest.raises(TfdipError, match="extension"):
        check_output_path(tmp_path / "out.gif")
    with pytest.raises(TfdipError, match="is a folder"):
        (tmp_path / "dir.png").mkdir()
        check_output_path(tmp_path / "dir.png")
    assert check_output_path(tmp_path / "r.json").suffix == ".json"
    with pytest.raises(TfdipError, match="extension"):
        check_output_path(tmp_path / "r.json", extensions=tfdip.io.IMAGE_FORMATS)
    assert check_output_path(tmp_path / "OUT.PNG", extensions=tfdip.io.IMAGE_FORMATS).name == "OUT.PNG"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_check_output_path_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(TfdipError, match="not writable"):
            check_output_path(locked / "out.png")
    finally:
        locked.chmod(0o700)


def test_write_to_missing_folder_or_with_bad_arguments(tmp_path):
    with pytest.raises(TfdipError, match="does not exist"):
        write_image(tmp_path / "nowhere" / "out.png", np.zeros((4, 4, 3)))
    with pytest.raises(TfdipError, match="does not exist"):
        write_json(tmp_path / "nowhere" / "r.json", {})
    with pytest.raises(TfdipError, match="extension"):
        write_image(tmp_path / "out.xyz", np.zeros((4, 4, 3)))
    with pytest.raises(TfdipError, match="bit_depth"):
        write_image(tmp_path / "out.png", np.zeros((4, 4, 3)), bit_depth=12)
    with pytest.raises(TfdipError, match="alpha"):
        write_image(tmp_path / "out.png", np.zeros((4, 4, 3)), alpha=np.zeros((4, 5)))
    with pytest.raises(TfdipError, match="shape"):
        write_image(tmp_path / "out.png", np.zeros((4, 4, 2)))
    with pytest.raises(TfdipError, match="NaN"):
        write_image(tmp_path / "out.png", np.full((4, 4, 3), np.nan))
    with pytest.raises(TfdipError, match="NaN"):
        write_image(tmp_path / "out.png", np.zeros((4, 4, 3)), alpha=np.full((4, 4), np.inf))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.png", "out.tif", "out.jpg", "out.npy", "report.json"])
def test_no_space_leaves_nothing_behind(tmp_path, monkeypatch, name):
    original_fsync = os.fsync

    def full_disk(fd):
        original_fsync(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfdip.io.os, "fsync", full_disk)
    with pytest.raises(TfdipError, match="no space left"):
        if name.endswith(".json"):
            write_json(tmp_path / name, {"psnr": 30.0})
        else:
            write_image(tmp_path / name, np.zeros((8, 8, 3)))
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_image(target, np.zeros((4, 4, 3)))
    before = target.read_bytes()

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(tfdip.io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(target, np.ones((4, 4, 3)))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_write_json_handles_numpy(tmp_path):
    report = {"psnr": np.float32(28.5), "steps": np.int64(2000), "curve": np.arange(3.0),
              "path": tmp_path / "x.png", "best": float("inf")}
    write_json(tmp_path / "r.json", report)
    loaded = json.loads((tmp_path / "r.json").read_text())
    assert loaded == {"psnr": 28.5, "steps": 2000, "curve": [0.0, 1.0, 2.0],
                      "path": str(tmp_path / "x.png"), "best": float("inf")}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_written_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_image(tmp_path / "x.png", np.zeros((4, 4, 1)))
    finally:
        os.umask(umask)
    assert (tmp_path / "x.png").stat().st_mode & 0o777 == 0o644


def test_tiff_that_pillow_cannot_open_is_read_with_tifffile(tmp_path):
    gray_alpha = np.random.default_rng(7).integers(0, 65536, (5, 4, 2)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "la16.tif", gray_alpha, photometric="minisblack",
                     planarconfig="contig", extrasamples=(2,))
    image = read_image(tmp_path / "la16.tif")
    assert image.bit_depth == 16 and image.pixels.shape == (5, 4, 1)
    np.testing.assert_array_equal(np.round(image.alpha[:, :, 0].astype(np.float64) * 65535),
                                  gray_alpha[:, :, 1])
