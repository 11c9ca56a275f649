"""What every package sets before TensorFlow is first imported: Keras 2, and the pooling (BFC) host allocator."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "ensemble", "infer", "models", "search", "tfrecord_tools", "train")
KEY = "TF_CPU_ALLOCATOR_USE_BFC"

_EACH_PACKAGE = f"""
import importlib, json, os
out = {{}}
for name in {PACKAGES!r}:
    os.environ.pop("{KEY}", None)
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    importlib.import_module(name)
    out[name] = [os.environ.get("{KEY}"), os.environ.get("TF_USE_LEGACY_KERAS")]
print(json.dumps(out))
"""

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
    env = {key: value for key, value in os.environ.items() if key not in (KEY, "TF_USE_LEGACY_KERAS")}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", **env_overrides)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_every_package_sets_keras_2_and_the_pooling_allocator_on_import():
    import json

    seen = json.loads(_run(_EACH_PACKAGE))
    assert seen == {name: ["true", "1"] for name in PACKAGES}


@pytest.mark.slow
def test_tensorflow_uses_the_pooling_host_allocator_unless_the_user_opts_out():
    assert _run(_ALLOCATOR) == "pooled True"
    assert _run(_ALLOCATOR, **{KEY: "false"}) == "malloc"
