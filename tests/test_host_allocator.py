"""The host allocator: TensorFlow's default (malloc) unless asked, and its pooling (BFC) allocator where
`TF_CPU_ALLOCATOR_USE_BFC=true` asks for it, as demo.sh does."""
import pathlib
import subprocess
import sys

import pytest

from tests.train.helpers import subprocess_env

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEY = "TF_CPU_ALLOCATOR_USE_BFC"

_ALLOCATOR = """
import train, tensorflow as tf
x = tf.random.normal([256, 256])
_ = (x @ x).numpy()
try:
    print("pooled", tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0)
except ValueError:  # allocator statistics exist only for a pooling allocator
    print("malloc")
"""


def _run(code: str, **env_overrides) -> str:
    env = subprocess_env(**env_overrides)
    if KEY not in env_overrides:
        env.pop(KEY, None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_training_code_keeps_malloc_and_the_demo_setting_selects_the_pooling_allocator():
    # malloc by default, under which a killed and resumed run is shown bit-identical to an uninterrupted
    # one (tests/train/test_resume.py); the pooling allocator is the demo's speed setting
    assert _run(_ALLOCATOR) == "malloc"
    assert _run(_ALLOCATOR, **{KEY: "true"}) == "pooled True"

