"""Where a worker process's output goes: stdout and stderr pointed at a file (file descriptors
1 and 2, so TensorFlow's C++ messages follow too). Imports nothing heavy, so a worker can call
:func:`send_output_to` before it loads TensorFlow."""
from __future__ import annotations

import contextlib
import os
import sys


def send_output_to(path) -> None:
    """Point this process's stdout and stderr at ``path`` (appended) for good."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)


@contextlib.contextmanager
def output_to(path):
    """This process's stdout and stderr appended to ``path`` for the ``with`` block; yields the
    file (line-buffered text), or a null stream when ``path`` is None."""
    if path is None:
        with open(os.devnull, "w") as null:
            yield null
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", buffering=1, encoding="utf-8") as log:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield log
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
