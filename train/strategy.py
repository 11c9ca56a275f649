"""The tf.distribute strategy of a run, and who writes files in a multi-worker cluster.

* One host: `tf.distribute.MirroredStrategy` over every visible GPU (or the CPU when there is
  none), TensorFlow's own all-reduce.
* Several hosts: `tf.distribute.MultiWorkerMirroredStrategy`, chosen when the ``TF_CONFIG``
  environment variable describes a cluster with more than one task. It must be created before
  any other TensorFlow op runs, so entry points call `make_strategy` first.

In a cluster every worker runs the same program and takes part in every collective (checkpoint
saving included), but only the chief writes the real files: the others write into a temporary
directory that they delete afterwards (the pattern of the TensorFlow multi-worker tutorial).
The run directory must be on a filesystem every worker sees: a resumed run restores the chief's
checkpoint on every worker, and all workers read the chief's ``metrics.json``.
"""
from __future__ import annotations

import json
import os
import shutil

import tensorflow as tf


def cluster_spec_from_env() -> dict | None:
    """The parsed ``TF_CONFIG`` when it describes more than one task, else None."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw[:200]!r}") from None
    cluster = config.get("cluster") or {}
    tasks = sum(len(addresses) for addresses in cluster.values())
    if tasks <= 1:
        return None
    task = config.get("task") or {}
    if "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG has a cluster of {tasks} tasks but no task type/index: {raw[:200]!r}")
    return config


def make_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy under a multi-task TF_CONFIG, else MirroredStrategy.

    MirroredStrategy takes every visible GPU, or the CPU when there is none.
    """
    if cluster_spec_from_env() is not None:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [device.name for device in gpus] or ["/cpu:0"]
    return tf.distribute.MirroredStrategy(devices)


def task_of(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """``(task_type, task_id)`` of this process (``(None, 0)`` on a single host)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on a single host, on the ``chief`` task, or on worker 0 of a cluster without a chief."""
    task_type, task_id = task_of(strategy)
    if task_type is None or task_type == "chief":
        return True
    if task_type == "worker":
        resolver = strategy.cluster_resolver
        has_chief = "chief" in resolver.cluster_spec().as_dict()
        return not has_chief and task_id == 0
    return False


def write_dir(directory: str | os.PathLike, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes ``directory``: the chief writes the real one, others a temporary one."""
    directory = os.fspath(directory)
    if is_chief(strategy):
        return directory
    task_type, task_id = task_of(strategy)
    parent, name = os.path.split(directory.rstrip(os.sep))
    return os.path.join(parent, f".{name}.{task_type}_{task_id}.tmp")


def remove_temporary(directory: str | os.PathLike, strategy: tf.distribute.Strategy) -> None:
    """Delete the temporary directory a non-chief worker wrote (no-op on the chief)."""
    if not is_chief(strategy):
        shutil.rmtree(write_dir(directory, strategy), ignore_errors=True)
