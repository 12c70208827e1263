"""One checkpointed restoration in its own process, killed with SIGKILL at a chosen point.

    python kill_driver.py '{"method": "sgd", "chains": 1, "checkpoint_dir": "...", "out": "...",
                            "resume": false, "kill": ["step", 0, 6]}'

``kill`` is ``["step", chain, k]`` (SIGKILL right after chain ``chain`` finishes step ``k``),
``["save", chain, k]`` (SIGKILL inside the checkpoint save of step ``k``: after the state files
and the temporary ``latest.json`` are written, just before the rename that publishes them) or
null (run to the end and write the result to ``out``, an .npz of image, last and std).
"""
import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfdip import checkpoints  # noqa: E402
from tfdip.physics import Denoising  # noqa: E402
from tfdip.restoration import restore  # noqa: E402

MINI = dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))
SIZE = 16


def observation():
    rng = np.random.default_rng(0)
    clean = rng.uniform(size=(SIZE, SIZE, 3)).astype(np.float32)
    return Denoising(0.1).simulate(clean, seed=1)


def options(method, chains):
    bayesian = {} if method == "sgd" else dict(burn_in=4, thin=1)
    return dict(method=method, chains=chains, iterations=12, net_options=MINI, seed=3,
                log_every=5, **bayesian)


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterStep(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.step.numpy()) == self.step:
            _die()


def kill_inside_save(chain, step):
    """Make the rename that publishes chain ``chain``'s checkpoint of ``step`` kill the process."""
    replace = os.replace

    def dying_replace(source, destination):
        target = str(destination)
        if target.endswith(os.path.join(f"chain{chain}", checkpoints.LATEST_FILE)):
            with open(source) as file:
                if json.load(file)["step"] == step:
                    _die()
        replace(source, destination)

    os.replace = dying_replace


def main(spec):
    kind, chain, step = spec.get("kill") or (None, None, None)
    callbacks = None
    if kind == "step":
        callbacks = lambda index: [KillAfterStep(step)] if index == chain else []  # noqa: E731
    elif kind == "save":
        kill_inside_save(chain, step)
    result = restore(observation(), Denoising(0.1), checkpoint_dir=spec["checkpoint_dir"],
                     checkpoint_every=4, resume=spec["resume"], callbacks=callbacks,
                     **options(spec["method"], spec["chains"]))
    np.savez(spec["out"], image=result.image, last=result.last,
             std=np.zeros(0) if result.std is None else result.std)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
