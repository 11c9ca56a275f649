"""The host allocator: TensorFlow's default unless asked (the training code does not change it), and its
pooling (BFC) allocator where `TF_CPU_ALLOCATOR_USE_BFC=true` asks for it, as demo.sh does.

TensorFlow's default depends on the machine: malloc on the Intel machines this was written on, the pooling
allocator on an AMD EPYC one (2026-12-07), so the test compares with TensorFlow imported alone."""
import pathlib
import subprocess
import sys

import pytest

from tests.train.helpers import subprocess_env

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEY = "TF_CPU_ALLOCATOR_USE_BFC"

_ALLOCATOR = """
import os, sys
if sys.argv[1:] == ["train"]:
    import train
    assert "TF_CPU_ALLOCATOR_USE_BFC" not in os.environ or os.environ.get("ASKED") == "1"
import tensorflow as tf
x = tf.random.normal([256, 256])
_ = (x @ x).numpy()
try:
    print("pooled", tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0)
except ValueError:  # allocator statistics exist only for a pooling allocator
    print("malloc")
"""


def _run(code: str, *args: str, **env_overrides) -> str:
    env = subprocess_env(**env_overrides)
    if KEY not in env_overrides:
        env.pop(KEY, None)
    else:
        env["ASKED"] = "1"
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_training_code_keeps_tensorflows_default_and_the_demo_setting_selects_the_pooling_allocator():
    # TensorFlow's default (malloc where this was written, under which a killed and resumed run is shown
    # bit-identical to an uninterrupted one: tests/train/test_resume.py); the pooling allocator is the demo's
    # speed setting
    assert _run(_ALLOCATOR, "train") == _run(_ALLOCATOR) in ("malloc", "pooled True")
    assert _run(_ALLOCATOR, "train", **{KEY: "true"}) == "pooled True"

