"""Two MultiWorkerMirroredStrategy workers compute the same losses as one worker with the same global batch.

Two processes on 127.0.0.1 (free ports, one TF_CONFIG each) pretrain the tiny baseline with a
global batch of 8 (4 per worker); one process in this test does the same with all 8 on a single
replica. The input stream gives both set-ups the same records per global batch, losses are
divided by the number of replicas and batch norm is synchronised, so the per-step losses agree to
float32 round-off. Dropout is off: each replica draws its own dropout masks, so with dropout the
two set-ups would differ by design.
"""
import json

import pytest
import tensorflow as tf

from models.config import ModelConfig
from train.config import TrainConfig, apply_overrides
from train.pretrain import run_pretrain
from tests.train.helpers import TINY_RUN, free_port, start

SETTINGS = [*TINY_RUN, "max_steps=6", "model.dropout=0", "model.nextvlad_dropout=0", "lr_other=3e-3"]


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_two_workers_match_one_worker(synthetic_data, tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = [start("train.pretrain", "--model", "baseline", "--data", str(synthetic_data), "--preset", "tiny",
                     "--out", str(tmp_path / "two"), *SETTINGS, log=tmp_path / f"worker{index}.log",
                     TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
               for index in range(2)]
    try:
        config = apply_overrides(TrainConfig(model=ModelConfig.tiny("baseline"), data_dir=str(synthetic_data)),
                                 SETTINGS)
        run_pretrain(config, str(tmp_path / "one"), tf.distribute.MirroredStrategy(["/cpu:0"]))
        for index, worker in enumerate(workers):
            assert worker.wait(timeout=300) == 0, (tmp_path / f"worker{index}.log").read_text()[-3000:]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    assert two == pytest.approx(one, rel=1e-4)
    assert len(set(round(loss, 3) for loss in one)) > 1  # different batches, not one repeated number
    # only the chief (worker 0) wrote the run directory; worker 1's temporary files are gone
    assert tf.train.latest_checkpoint(tmp_path / "two" / "final") is not None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert not any(p.name.startswith(".") for p in (tmp_path / "two").iterdir())
