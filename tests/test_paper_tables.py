"""The seed aggregation of benchmarks/paper_tables.py against plain NumPy on a table of values."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def paper_tables():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("paper_tables", BENCHMARKS / "paper_tables.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_seed_statistics_match_numpy_over_seeds_images_and_per_seed_averages(paper_tables):
    rng = np.random.default_rng(3)
    table = 30 + rng.normal(size=(4, 3))  # 4 images x seeds 0, 1, 2
    values = {f"image{i}": {seed: float(table[i, seed]) for seed in range(3)} for i in range(4)}
    values["image4"] = {0: 31.0, 2: 29.0}  # seed 1 missing: no per-seed average for seed 1
    stats = paper_tables.seed_statistics(values)

    for i in range(4):
        mean, std = stats["per_image"][f"image{i}"]
        assert mean == pytest.approx(table[i].mean()) and std == pytest.approx(table[i].std(ddof=1))
    assert stats["per_image"]["image4"] == pytest.approx((30.0, np.sqrt(2.0)))
    means = np.append(table.mean(axis=1), 30.0)
    assert stats["mean"] == pytest.approx(means.mean())
    assert stats["std_images"] == pytest.approx(means.std(ddof=1))
    averages = [np.append(table[:, seed], values["image4"][seed]).mean() for seed in (0, 2)]
    assert stats["per_seed"] == pytest.approx({0: averages[0], 2: averages[1]})
    assert stats["std_seeds"] == pytest.approx(np.std(averages, ddof=1))


def test_one_seed_has_no_seed_std(paper_tables):
    stats = paper_tables.seed_statistics({"a": {0: 30.0}, "b": {0: 32.0}})
    assert stats["per_image"]["a"] == (30.0, None)
    assert stats["std_seeds"] is None and stats["mean"] == 31.0
    assert stats["std_images"] == pytest.approx(np.sqrt(2.0))
