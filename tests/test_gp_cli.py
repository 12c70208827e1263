"""`tfdip gp` with the grid solver: the report's fields and one-line errors that leave no output."""
import importlib
import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from tfdip import io
from tfdip.cli import main


def run(*argv):
    return main([str(a) for a in argv])


@pytest.fixture
def inpainting(tmp_path):
    """A 72x72 crop of scikit-image's camera (above the dense limit), half its pixels known."""
    clean = np.asarray(Image.fromarray(data.camera()[40:328, 110:398]).resize(
        (72, 72), Image.LANCZOS), np.float32) / 255.0
    known = np.random.default_rng(0).random((72, 72)) < 0.5
    np.save(tmp_path / "clean.npy", clean)
    np.save(tmp_path / "obs.npy", clean * known)
    np.save(tmp_path / "mask.npy", known.astype(np.float32))
    return tmp_path


def test_grid_solver_report_has_timings_cg_and_samples(inpainting, capsys):
    out, std, report = inpainting / "gp.npy", inpainting / "std.png", inpainting / "gp.json"
    assert run("gp", inpainting / "obs.npy", "--mask", inpainting / "mask.npy", "-o", out,
               "--std-out", std, "--samples", 8, "--reference", inpainting / "clean.npy",
               "--report", report) == 0
    fields = json.loads(report.read_text())
    assert fields["solver"] == "grid" and fields["samples"] == 8
    assert fields["std_relative_error"] == pytest.approx(1 / np.sqrt(14))
    assert fields["cg_residual"] < 1e-4 and fields["cg_iterations"] > 0
    assert fields["cg_converged_samples"] is True
    for name in ("seconds", "seconds_fit", "seconds_mean", "seconds_std"):
        assert fields[name] > 0
    assert fields["seconds"] >= fields["seconds_fit"]
    assert fields["fit"]["converged"] and fields["psnr"] > fields["psnr_observed"] + 8
    assert 0 < fields["ssim"] <= 1
    known = np.load(inpainting / "mask.npy") != 0
    np.testing.assert_allclose(np.load(out)[..., 0][known], np.load(inpainting / "clean.npy")[known],
                               atol=1e-6)
    assert io.read_image(std).pixels.shape == (72, 72, 3)
    err = capsys.readouterr().err
    assert "posterior mean (CG)" in err and "std samples" in err  # the progress bar


def _bad(inpainting, *extra):
    return run("gp", inpainting / "obs.npy", "-o", inpainting / "out.png", "--report",
               inpainting / "r.json", *extra)


@pytest.mark.parametrize("extra, message", [
    (("--mask", "small.npy"), "mask is 8x8 but the image is 72x72"),
    (("--mask", "empty.npy"), "no known pixel"),
    (("--mask", "mask.npy", "--solver", "dense"), "dense GP restoration handles at most"),
    (("--mask", "mask.npy", "--solver", "grid", "--cg-max-iterations", "2", "--no-fit"),
     "CG did not reach relative residual"),
    (("--mask", "mask.npy", "--samples", "8"), "give --std-out too"),
    (("--mask", "mask.npy", "--std-out", "s.png", "--samples", "1"), "at least 2"),
    (("--mask", "mask.npy", "--cg-tolerance", "2"), "--cg-tolerance must be in"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(inpainting, capsys, extra, message):
    np.save(inpainting / "small.npy", np.ones((8, 8), np.float32))
    np.save(inpainting / "empty.npy", np.zeros((72, 72), np.float32))
    extra = [inpainting / e if e.endswith((".npy", ".png")) else e for e in extra]
    assert _bad(inpainting, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tfdip: error:") and message in err[-1]
    assert not (inpainting / "out.png").exists() and not (inpainting / "r.json").exists()


def test_dense_only_options_are_refused_on_small_images(tmp_path, capsys):
    np.save(tmp_path / "obs.npy", np.full((16, 16), 0.5, np.float32))
    assert run("gp", tmp_path / "obs.npy", "--sigma", 10, "-o", tmp_path / "o.png",
               "--cg-tolerance", "1e-6") == 2
    assert "only apply to the grid solver" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_an_image_beyond_memory_is_refused_before_any_work(inpainting, capsys, monkeypatch):
    grid_posterior = importlib.import_module("tfdip.gp.grid_posterior")
    monkeypatch.setattr(grid_posterior, "available_memory_bytes", lambda: 2 ** 20)
    assert _bad(inpainting, "--mask", inpainting / "mask.npy") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GiB is available" in err[0]
    assert not (inpainting / "out.png").exists()
