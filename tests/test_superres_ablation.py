"""The ablation benchmarks' pure logic: superres_ablation.py's bicubic baseline against Keys' cubic
convolution in NumPy, and benchmarks/ablation.py's table means and resumable results."""
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from tfdip.errors import TfdipError

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def benchmarks():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield (importlib.import_module("ablation"),
               importlib.import_module("superres_ablation"))
    finally:
        sys.path.remove(str(BENCHMARKS))


def keys_upsample_1d(values, factor, a=-0.5):
    """Keys' cubic convolution along axis 0: output j samples x = (j + 1/2)/factor - 1/2,
    weights W(x - i) for the four nearest i, W(t) = (a+2)|t|^3 - (a+3)|t|^2 + 1 for |t| <= 1,
    a|t|^3 - 5a|t|^2 + 8a|t| - 4a for 1 < |t| < 2 (edge indices clamped)."""
    def weight(t):
        t = np.abs(t)
        return np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                        np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))
    n = values.shape[0]
    x = (np.arange(factor * n) + 0.5) / factor - 0.5
    base = np.floor(x).astype(int)
    out = np.zeros((factor * n,) + values.shape[1:])
    for offset in (-1, 0, 1, 2):
        index = base + offset
        w = weight(x - index).reshape((-1,) + (1,) * (values.ndim - 1))
        out += w * values[np.clip(index, 0, n - 1)]
    return out


def test_bicubic_is_keys_cubic_convolution_away_from_the_edges(benchmarks):
    _, superres = benchmarks
    observation = np.random.default_rng(0).uniform(0.2, 0.8, size=(9, 11, 3)).astype(np.float32)
    image = superres.bicubic(observation)
    f = superres.FACTOR
    assert image.shape == (f * 9, f * 11, 3)
    expected = keys_upsample_1d(keys_upsample_1d(observation.astype(np.float64), f)
                                .swapaxes(0, 1), f).swapaxes(0, 1)
    # interior: all four taps inside the observation on both axes (PIL renormalises at edges)
    inner = slice(2 * f, -2 * f)
    np.testing.assert_allclose(image[inner, inner], np.clip(expected, 0, 1)[inner, inner],
                               atol=1e-5)


def test_table_means_over_complete_rows_and_blanks(benchmarks):
    ablation, _ = benchmarks
    runs = {"a/x": {"psnr": 20.0, "seconds": 1.0}, "b/x": {"psnr": 23.0, "seconds": 4.0},
            "a/y": {"psnr": 30.0, "seconds": 10.0, "coverage": 0.5}}
    columns = [ablation.Column("mean", "psnr"), ablation.Column("cov", "coverage"),
               ablation.Column("s", "seconds", "{:.1f}", complete=False)]
    lines = ablation.markdown_table(runs, ["x", "y", "z"], ["a", "b", "c"],
                                    lambda record: f"{record['psnr']:.1f}", columns)
    assert lines == ["| row | a | b | mean | cov | s |", "|---|---|---|---|---|---|",
                     f"| x | 20.0 | 23.0 | {np.mean([20.0, 23.0]):.2f} |  | 2.5 |",
                     "| y | 30.0 |  |  |  | 10.0 |"]


def test_results_resume_and_refuse_another_header(benchmarks, tmp_path):
    ablation, _ = benchmarks
    out, ran = tmp_path / "ablation", []

    def job(key):
        return key, lambda: ran.append(key) or {"psnr": float(len(ran))}

    def markdown(results, path):
        path.write_text(str(sorted(results["runs"])))

    ablation.run_ablation(out, {"size": 8}, [job("a/x"), job("b/x")], markdown)
    results = ablation.run_ablation(out, {"size": 8}, [job("a/x"), job("a/y")], markdown)
    assert ran == ["a/x", "b/x", "a/y"]
    assert results["runs"] == {"a/x": {"psnr": 1.0}, "b/x": {"psnr": 2.0}, "a/y": {"psnr": 3.0}}
    assert out.with_suffix(".md").read_text() == str(["a/x", "a/y", "b/x"])
    with pytest.raises(TfdipError, match="size 8 \\(asked 16\\)"):
        ablation.run_ablation(out, {"size": 16}, [job("c/x")], markdown)
    assert ran == ["a/x", "b/x", "a/y"]
