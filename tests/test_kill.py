"""A checkpointed run killed with SIGKILL at three points (one inside a checkpoint save) and
resumed each time gives the result of the uninterrupted run."""
import json
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from tfdip.physics import Denoising
from tfdip.restoration import restore

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import kill_driver  # noqa: E402

DRIVER = pathlib.Path(__file__).with_name("kill_driver.py")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(spec):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(DRIVER), json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=300)


# (method, chains, kill points): each kill is (kind, chain, step); checkpoints every 4 steps
# of 12. With two chains the kills hit chain 0 mid-run, chain 1 in its first save (it restarts
# from nothing) and chain 1 after a save.
SCENARIOS = [
    ("sgd", 1, [("step", 0, 6), ("save", 0, 8), ("step", 0, 10)]),
    ("psgld", 1, [("save", 0, 4), ("step", 0, 7), ("save", 0, 12)]),
    ("paper", 2, [("step", 0, 6), ("save", 1, 4), ("step", 1, 10)]),
]


@pytest.mark.parametrize("method, chains, kills", SCENARIOS)
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, method, chains, kills):
    folder = str(tmp_path / "run")
    for attempt, kill in enumerate(kills):
        spec = dict(method=method, chains=chains, checkpoint_dir=folder, resume=attempt > 0,
                    out=str(tmp_path / "never.npz"), kill=list(kill))
        finished = _run(spec)
        assert finished.returncode == -signal.SIGKILL, finished.stderr[-2000:]
    assert not (tmp_path / "never.npz").exists()
    options = kill_driver.options(method, chains)
    resumed = restore(kill_driver.observation(), Denoising(0.1), checkpoint_dir=folder,
                      checkpoint_every=4, resume=True, **options)
    straight = restore(kill_driver.observation(), Denoising(0.1), **options)
    np.testing.assert_allclose(resumed.image, straight.image, atol=1e-6)
    np.testing.assert_allclose(resumed.last, straight.last, atol=1e-6)
    if straight.std is not None:
        np.testing.assert_allclose(resumed.std, straight.std, atol=1e-6)
