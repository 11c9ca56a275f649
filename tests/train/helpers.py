"""Helpers of the training tests: tiny run settings and training subprocesses."""
from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# Tiny run settings shared by the tests (with --preset tiny the model keeps the official frame
# size and takes the tag count of the data, so it runs on the synthetic records as they are).
TINY_RUN = ["batch_size=8", "progress=false", "log_every_steps=1", "checkpoint_every_steps=1000",
            "shuffle_buffer=64", "max_vocab=400", "model.nextvlad_expansion=1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def subprocess_env(**extra: str) -> dict:
    # One TensorFlow thread pool thread each: the test runs several processes on two cores.
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_NUM_INTRAOP_THREADS="1")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def start(module: str, *args: str, log: pathlib.Path, **env: str) -> subprocess.Popen:
    """Start ``python -m module args`` in the repository with its output in ``log``."""
    handle = open(log, "w")
    return subprocess.Popen(python_command(module, *args), cwd=REPO_ROOT, env=subprocess_env(**env),
                            stdout=handle, stderr=subprocess.STDOUT)
