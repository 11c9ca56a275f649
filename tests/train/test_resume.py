"""A pretrain run killed with SIGKILL after a checkpoint resumes to exactly the uninterrupted result.

Exactness (bit-identical weights) holds because everything random is a function of (seed, step):
the input order (`train.data.TrainStream`: per-epoch shuffle seeds, resume skips to the step) and
the model's dropout (`train.randomness.StepRandomness` resets every generator each step), while
the checkpoint carries model, optimizer slots and step. See docs/reliability.md.
"""
import json
import signal
import time

import numpy as np
import tensorflow as tf

from tests.train.helpers import TINY_RUN, start


def _weights(run_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(run_dir / "final"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "model/" in name and "OPTIMIZER" not in name}


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_weights(synthetic_data, tmp_path):
    args = ["--model", "baseline", "--data", str(synthetic_data), "--preset", "tiny", *TINY_RUN,
            "max_steps=24", "checkpoint_every_steps=8", "lr_other=3e-3"]
    killed_dir = tmp_path / "killed"
    # the uninterrupted run, meanwhile, in a process like the killed one (one TensorFlow thread: the
    # weights are bit-identical for one thread count, not across counts on every CPU)
    whole = start("train.pretrain", *args, "--out", str(tmp_path / "whole"), log=tmp_path / "whole.log")
    killed = start("train.pretrain", *args, "--out", str(killed_dir), log=tmp_path / "killed.log")
    deadline = time.time() + 240
    while not (killed_dir / "ckpt" / "ckpt-8.index").exists() or "ckpt-8" not in _state(killed_dir):
        assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    assert killed.poll() is None  # still training when killed
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert not (killed_dir / "final").exists()
    assert whole.wait(timeout=300) == 0

    resumed = start("train.pretrain", *args, "--out", str(killed_dir), log=tmp_path / "resumed.log")
    assert resumed.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-3000:]

    reference, result = _weights(tmp_path / "whole"), _weights(killed_dir)
    assert len(reference) > 10 and reference.keys() == result.keys()
    for name, value in reference.items():
        np.testing.assert_array_equal(result[name], value, err_msg=name)
    log = [json.loads(line)["step"] for line in (killed_dir / "train_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, 25))


def _state(run_dir) -> str:
    path = run_dir / "ckpt" / "checkpoint"
    return path.read_text() if path.exists() else ""
