"""benchmarks/gpu_check.py in its CPU mode: every requested run is made, compared with the float32
run without XLA, and written to a results table."""
import importlib.util
import json
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_mode_times_and_checks_every_setting(gpu_check, tmp_path):
    out = tmp_path / "check"
    code = gpu_check.main(["--small", "--methods", "psgld", "--precisions", "float32", "float16",
                           "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    runs = {(r["precision"], r["xla"]): r for r in report["results"]}
    assert set(runs) == {(p, x) for p in ("float32", "float16") for x in (False, True)}
    assert code == 0 and not any("error" in r for r in runs.values())
    base = runs[("float32", False)]
    assert base["psnr_change"] == 0.0 and base["speedup"] == 1.0
    for run in runs.values():
        assert run["size"] == 16 and run["seconds_per_iteration"] > 0
        assert run["psnr_change"] == pytest.approx(run["psnr"] - base["psnr"])
        assert run["speedup"] == pytest.approx(base["seconds_per_iteration"]
                                               / run["seconds_per_iteration"])
    # XLA draws the same noise: float32 with and without it agree to float tolerance.
    assert runs[("float32", True)]["psnr"] == pytest.approx(base["psnr"], abs=1e-3)
    table = out.with_suffix(".md").read_text()
    assert table.count("| psgld |") == 4 and "## 16 x 16" in table
