"""Strategy choice from TF_CONFIG, chief detection and where non-chief workers write."""
import json
import types

import pytest
import tensorflow as tf

from train import strategy as strategy_lib


def _cluster(task_type: str, index: int, with_chief: bool = False) -> dict:
    cluster = {"worker": ["127.0.0.1:1111", "127.0.0.1:2222"]}
    if with_chief:
        cluster["chief"] = ["127.0.0.1:3333"]
    return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def test_single_host_gets_mirrored_strategy_on_the_cpu(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = strategy_lib.make_strategy()
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == max(1, len(tf.config.list_logical_devices("GPU")))
    assert strategy_lib.is_chief(strategy) and strategy_lib.task_of(strategy) == (None, 0)
    assert strategy_lib.write_dir("/runs/a/ckpt", strategy) == "/runs/a/ckpt"


def test_tf_config_parsing(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}))
    assert strategy_lib.cluster_spec_from_env() is None  # one task: no cluster
    monkeypatch.setenv("TF_CONFIG", json.dumps(_cluster("worker", 1)))
    assert strategy_lib.cluster_spec_from_env()["task"]["index"] == 1
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        strategy_lib.cluster_spec_from_env()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": _cluster("worker", 0)["cluster"]}))
    with pytest.raises(ValueError, match="no task type/index"):
        strategy_lib.cluster_spec_from_env()


def _fake_strategy(task_type: str, index: int, with_chief: bool = False):
    spec = tf.train.ClusterSpec(_cluster(task_type, index, with_chief)["cluster"])
    resolver = types.SimpleNamespace(task_type=task_type, task_id=index, cluster_spec=lambda: spec)
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_only_the_chief_writes_the_run_directory(tmp_path):
    worker0, worker1 = _fake_strategy("worker", 0), _fake_strategy("worker", 1)
    assert strategy_lib.is_chief(worker0) and not strategy_lib.is_chief(worker1)
    assert not strategy_lib.is_chief(_fake_strategy("worker", 0, with_chief=True))
    assert strategy_lib.is_chief(_fake_strategy("chief", 0, with_chief=True))
    target = str(tmp_path / "run" / "ckpt")
    assert strategy_lib.write_dir(target, worker0) == target
    temporary = strategy_lib.write_dir(target, worker1)
    assert temporary == str(tmp_path / "run" / ".ckpt.worker_1.tmp")
    (tmp_path / "run" / ".ckpt.worker_1.tmp").mkdir(parents=True)
    strategy_lib.remove_temporary(target, worker1)
    assert not (tmp_path / "run" / ".ckpt.worker_1.tmp").exists()
