"""The tfdip command line: round trips, reports, pass-through of alpha / bit depth, bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from tfdip import io, metrics
from tfdip.cli import main

TINY = ["--channels", "8"]


@pytest.fixture
def clean_png(tmp_path):
    face = data.astronaut()[20:220, 120:320]
    path = tmp_path / "clean.png"
    Image.fromarray(face).resize((40, 32), Image.LANCZOS).save(path)
    return path


def run(*argv):
    return main([str(a) for a in argv])


def test_corrupt_then_denoise_round_trip_with_report_and_std(tmp_path, clean_png, capsys):
    noisy = tmp_path / "noisy.npy"
    assert run("corrupt", clean_png, "-o", noisy, "--noise", 25, "--seed", 3) == 0
    observation = np.load(noisy)
    clean = io.read_image(clean_png).pixels
    assert observation.shape == clean.shape and observation.dtype == np.float32
    assert np.std(observation - clean) == pytest.approx(25 / 255, rel=0.15)  # clipped noise

    out, report, std_png, std_npy = (tmp_path / n for n in ("out.png", "r.json", "s.png", "s.npy"))
    code = run("denoise", noisy, "--sigma", 25, "-o", out, "--method", "paper", "--iterations", 30,
               "--burn-in", 10, "--thin", 2, "--reference", clean_png, "--report", report,
               "--std-out", std_png, "--std-npy", std_npy, "--quiet", *TINY)
    assert code == 0
    restored = io.read_image(out).pixels
    assert restored.shape == clean.shape
    fields = json.loads(report.read_text())
    for key in ("task", "method", "iterations", "seconds", "seconds_per_iteration", "psnr", "ssim",
                "psnr_observed", "image_shape", "seed", "tfdip_version", "samples", "psnr_last",
                "ess_min", "calibration"):
        assert key in fields, key
    assert fields["samples"] == 10
    assert fields["psnr_observed"] == pytest.approx(metrics.psnr(observation, clean), abs=1e-6)
    assert fields["psnr"] == pytest.approx(metrics.psnr(restored, clean), abs=0.05)  # 8-bit file
    std = np.load(std_npy)
    assert std.shape == clean.shape and np.all(std >= 0) and std.max() > 0
    assert io.read_image(std_png).pixels.shape == clean.shape
    assert "PSNR" in capsys.readouterr().out


def test_inpaint_gray_16_bit_keeps_bit_depth(tmp_path):
    rng = np.random.default_rng(0)
    gray = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "clean16.png")
    mask_path, obs = tmp_path / "mask.png", tmp_path / "obs.png"
    assert run("corrupt", tmp_path / "clean16.png", "-o", obs, "--drop", 0.5, "--seed", 1,
               "--mask-out", mask_path) == 0
    mask = io.read_mask(mask_path, (32, 32))
    assert 0.35 < mask.mean() < 0.65
    out = tmp_path / "out.png"
    assert run("inpaint", tmp_path / "obs.png", "--mask", mask_path, "-o", out, "--iterations", 4,
               "--quiet", *TINY) == 0
    del rng
    image = io.read_image(out)
    assert image.pixels.shape == (32, 32, 1)
    assert image.bit_depth == io.read_image(obs).bit_depth


def test_superres_passes_alpha_through(tmp_path, clean_png):
    rgb = np.asarray(Image.open(clean_png))
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA").save(tmp_path / "rgba.png")
    low = tmp_path / "low.png"
    assert run("corrupt", tmp_path / "rgba.png", "-o", low, "--downscale", 2) == 0
    assert io.read_image(low).pixels.shape == (16, 20, 3)
    Image.fromarray(np.concatenate(
        [np.asarray(Image.open(low)), np.full((16, 20, 1), 200, np.uint8)], -1), "RGBA").save(
        tmp_path / "low_rgba.png")
    out = tmp_path / "sr.png"
    assert run("superres", tmp_path / "low_rgba.png", "--factor", 2, "-o", out, "--iterations", 4,
               "--quiet", *TINY) == 0
    result = io.read_image(out)
    assert result.pixels.shape == (32, 40, 3)
    np.testing.assert_allclose(result.alpha, 200 / 255, atol=1 / 255)


@pytest.fixture
def bad_inputs(tmp_path, clean_png):
    (tmp_path / "text.png").write_text("not an image")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "pixel.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small_mask.png")
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(tmp_path / "empty_mask.png")
    nan = np.full((32, 40, 3), 0.5, np.float32)
    nan[3, 4, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    return tmp_path


@pytest.mark.parametrize("argv, word", [
    (["denoise", "{d}/missing.png", "--sigma", "25", "-o", "{d}/o.png"], "missing.png"),
    (["denoise", "{d}/text.png", "--sigma", "25", "-o", "{d}/o.png"], "image"),
    (["denoise", "{d}/pixel.png", "--sigma", "25", "-o", "{d}/o.png"], "1x1"),
    (["inpaint", "{d}/clean.png", "--mask", "{d}/small_mask.png", "-o", "{d}/o.png"], "mask"),
    (["inpaint", "{d}/clean.png", "--mask", "{d}/empty_mask.png", "-o", "{d}/o.png"], "known"),
    (["denoise", "{d}/nan.npy", "--sigma", "25", "-o", "{d}/o.png"], "NaN"),
    (["denoise", "{d}/clean.png", "--sigma", "-5", "-o", "{d}/o.png"], "sigma"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/nowhere/o.png"], "does not exist"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.txt"], "extension"),
    (["superres", "{d}/clean.png", "--factor", "1", "-o", "{d}/o.png"], "factor"),
    (["corrupt", "{d}/clean.png", "-o", "{d}/o.png", "--drop", "1.5"], "drop"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--method", "sgd",
      "--std-out", "{d}/s.png"], "std"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--method", "mala",
      "--checkpoint-dir", "{d}/ck"], "--checkpoint-dir"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--method", "ula",
      "--resume"], "--resume"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--checkpoint-every", "5"],
     "needs --checkpoint-dir"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--resume"],
     "needs --checkpoint-dir"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--seed", "-1"], "seed"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--method", "sgd",
      "--iterations", "auto"], "give sgd a number of iterations"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--iterations", "30",
      "--max-iterations", "90"], "apply to iterations 'auto'"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--iterations", "auto",
      "--max-iterations", "90"], "must be more than 500 steps"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--max-iterations", "900"],
     "apply to iterations 'auto'"),
    (["denoise", "{d}/clean.png", "--sigma", "25", "-o", "{d}/o.png", "--iterations", "soon"],
     "whole number"),
    (["denoise", "{d}/clean.png", "--sigma", "nan", "-o", "{d}/o.png"], "sigma"),
    (["corrupt", "{d}/clean.png", "-o", "{d}/o.png", "--noise", "25", "--seed", "-3"], "seed"),
    (["kernel", "--net", "skip", "--depth", "3", "--plot", "{d}/o.png"], "--depth does not apply"),
    (["kernel", "--net", "conv_stack", "--levels", "3", "--plot", "{d}/o.png"], "--levels"),
    (["kernel", "--net", "conv_stack", "--upsample", "nearest", "--plot", "{d}/o.png"],
     "--upsample"),
])
def test_bad_input_gives_one_line_and_exit_2(bad_inputs, argv, word, capsys):
    argv = [a.format(d=bad_inputs) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfdip") and "error:" in err and "\n" not in err, err
    assert word.lower() in err.lower(), err
    assert not (bad_inputs / "o.png").exists()


def test_zero_iterations_is_refused_in_one_line(clean_png):
    result = subprocess.run(
        [sys.executable, "-m", "tfdip.cli", "denoise", str(clean_png), "--sigma", "25", "-o",
         str(clean_png.parent / "o.png"), "--iterations", "0"],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "iterations" in result.stderr


def test_terminal_stays_clean(tmp_path, clean_png):
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "tfdip.cli", "corrupt", str(clean_png), "-o",
         str(tmp_path / "n.png"), "--noise", "10"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("wrote")


def test_gp_inpainting_command_writes_image_std_and_report(tmp_path):
    rows, cols = np.mgrid[0:12, 0:12]
    clean = (0.5 + 0.4 * np.sin(rows / 3.0) * np.cos(cols / 4.0)).astype(np.float32)[..., None]
    mask = (np.random.default_rng(0).uniform(size=(12, 12)) < 0.6).astype(np.float32)
    np.save(tmp_path / "clean.npy", clean)
    np.save(tmp_path / "obs.npy", clean * mask[..., None])
    np.save(tmp_path / "mask.npy", mask)
    out, std, report = tmp_path / "gp.npy", tmp_path / "std.png", tmp_path / "gp.json"
    assert run("gp", tmp_path / "obs.npy", "--mask", tmp_path / "mask.npy", "--kernel", "rbf",
               "-o", out, "--std-out", std, "--reference", tmp_path / "clean.npy",
               "--report", report) == 0
    restored = np.load(out)
    known = mask.astype(bool)
    np.testing.assert_allclose(restored[known], clean[known], atol=1e-6)  # known pixels kept
    fields = json.loads(report.read_text())
    assert fields["kernel"] == "rbf" and fields["psnr"] > fields["psnr_observed"] + 5
    assert io.read_image(std).pixels.shape == (12, 12, 3)


def test_gp_refuses_images_beyond_dense_inference(tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.zeros((80, 80), np.float32))
    assert run("gp", tmp_path / "big.npy", "--sigma", "10", "-o", tmp_path / "o.png",
               "--solver", "dense") == 2
    assert "64x64" in capsys.readouterr().err


def test_kernel_command_draws_a_figure(tmp_path):
    plot = tmp_path / "kernel.png"
    assert run("kernel", "--net", "conv_stack", "--depth", "2", "--max-offset", "4",
               "--plot", plot) == 0
    with Image.open(plot) as figure:
        assert figure.format == "PNG" and figure.size[0] > 200


def test_demo_writes_the_files_a_person_looks_at(tmp_path, capsys):
    """100 steps of the demo already denoise: the posterior mean beats the noisy input and the
    last iterate (measured: 21.27 dB from 20.61 dB, last iterate 20.09 dB, 95% coverage)."""
    out = tmp_path / "demo"
    assert run("demo", "--out", out, "--iterations", 100, "--quiet") == 0
    for name in ("clean.png", "observation.png", "restored.png", "last_iterate.png", "std.png",
                 "comparison.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    clean, noisy = io.read_image(out / "clean.png").pixels, io.read_image(out / "observation.png")
    assert report["psnr_observed"] == pytest.approx(metrics.psnr(noisy.pixels, clean), abs=0.1)
    assert report["samples"] > 0 and 0.8 <= report["coverage_2std"] <= 1
    restored = io.read_image(out / "restored.png").pixels
    assert report["psnr_posterior_mean"] == pytest.approx(metrics.psnr(restored, clean), abs=0.1)
    assert report["psnr_posterior_mean"] > report["psnr_observed"] + 0.3
    assert report["psnr_posterior_mean"] > report["psnr_last_iterate"]
    assert "posterior mean" in capsys.readouterr().out


def test_noisy_npy_outside_0_1_is_restored_and_the_output_clipped(tmp_path, capsys):
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.1, 0.9, size=(16, 16, 3)).astype(np.float32)
    noisy = clean + 0.1 * rng.standard_normal(clean.shape).astype(np.float32)
    noisy[0, 0], noisy[1, 1] = -0.2, 1.2                       # unclipped noise, as data comes
    np.save(tmp_path / "noisy.npy", noisy)
    out = tmp_path / "out.npy"
    code = run("denoise", tmp_path / "noisy.npy", "--sigma", 25, "-o", out, "--method", "psgld",
               "--iterations", 3, "--burn-in", 1, "--quiet", *TINY)
    assert code == 0, capsys.readouterr().err
    restored = np.load(out)
    assert restored.shape == clean.shape and restored.min() >= 0 and restored.max() <= 1


def test_corrupt_adds_noise_to_known_pixels_only(tmp_path, clean_png):
    obs, mask_out = tmp_path / "obs.npy", tmp_path / "mask.png"
    assert run("corrupt", clean_png, "-o", obs, "--drop", 0.5, "--noise", 25, "--seed", 2,
               "--mask-out", mask_out) == 0
    observation = np.load(obs)
    known = io.read_mask(mask_out, observation.shape[:2])
    assert np.all(observation[~known] == 0)                     # dropped pixels carry no noise
    clean = io.read_image(clean_png).pixels
    residual = (observation - clean)[known]
    assert np.std(residual) == pytest.approx(25 / 255, rel=0.15)


def test_sigma_below_one_gets_a_scale_warning(tmp_path, clean_png, capsys):
    assert run("denoise", clean_png, "--sigma", 0.1, "-o", tmp_path / "o.png", "--method", "sgd",
               "--iterations", 2, "--quiet", *TINY) == 0
    err = capsys.readouterr().err
    assert "tfdip: warning: --sigma 0.1 is on the 0..255 scale" in err
    assert "did you mean --sigma 25.5?" in err


def test_checkpoints_and_resume_from_the_command_line(tmp_path, clean_png, capsys):
    folder = tmp_path / "ck"
    argv = ["denoise", clean_png, "--sigma", 25, "--method", "sgd", "--iterations", 7,
            "--checkpoint-dir", folder, "--checkpoint-every", 3, "--quiet", *TINY]
    # --resume before anything was saved: starts the run and says so.
    assert run(*argv, "-o", tmp_path / "a.npy", "--resume") == 0
    assert "no checkpoint in" in capsys.readouterr().err
    assert json.loads((folder / "chain0" / "latest.json").read_text())["step"] == 7
    # Resuming the finished run gives its result again, without steps.
    assert run(*argv, "-o", tmp_path / "b.npy", "--resume") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    capsys.readouterr()
    assert run(*argv, "-o", tmp_path / "c.npy") == 2                      # no silent overwrite
    assert "already holds" in capsys.readouterr().err
    assert run(*argv, "--seed", 1, "--resume", "-o", tmp_path / "d.npy") == 2
    err = capsys.readouterr().err.strip()
    assert "seed (0 there, 1 now)" in err and "\n" not in err


def test_full_disk_gives_one_line_and_no_partial_output(tmp_path, clean_png, monkeypatch, capsys):
    import errno

    import tfdip.io

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfdip.io.os, "fsync", full_disk)
    code = run("denoise", clean_png, "--sigma", 25, "-o", tmp_path / "o.png", "--method", "sgd",
               "--iterations", 2, "--quiet", *TINY)
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfdip: error: no space left") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.png"]
