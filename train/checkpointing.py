"""Checkpoints of a run directory: resumable ``ckpt/``, model-only ``final/`` and ``best/``.

``ckpt/``  model + both optimizers (slots, iterations, loss scale) + the step counter, written every
           ``checkpoint_every_steps`` and at the end by `tf.train.CheckpointManager` (keeps the
           last ``keep_checkpoints``). Rerunning the same command restores the latest one.
``final/`` and ``best/``  the model only, in a layout later stages restore without optimizers:
           the object graph holds ``model`` and ``pretrain_targets`` (the model's
           ``restore_targets()``), so a finetune restores just what its model names.

TensorFlow writes each checkpoint to temporary files and renames them, and updates the
``checkpoint`` index file atomically: a run killed while saving leaves the previous checkpoint
usable. In a multi-worker cluster every worker takes part in saving (it is a collective) but only
the chief writes into the run directory (`train.strategy.write_dir`).
"""
from __future__ import annotations

import os

import tensorflow as tf

from tfrecord_tools import layout
from train import strategy as strategy_lib

RESUME_DIR = layout.RESUME_DIR
FINAL_DIR = layout.FINAL_DIR
BEST_DIR = layout.BEST_DIR
CHECKPOINT_NAME = "ckpt"  # checkpoint file prefix inside RESUME_DIR


def model_checkpoint(model) -> tf.train.Checkpoint:
    """The model-only checkpoint object: ``model`` plus ``pretrain_targets`` (restore_targets)."""
    return tf.train.Checkpoint(model=model, pretrain_targets=tf.train.Checkpoint(**model.restore_targets()))


def latest_checkpoint(directory: str | os.PathLike) -> str:
    """Path prefix of the newest checkpoint in ``directory``; FileNotFoundError naming it otherwise."""
    directory = os.fspath(directory)
    path = tf.train.latest_checkpoint(directory)
    if path is None:
        raise FileNotFoundError(f"{directory}: no checkpoint (expected a 'checkpoint' index file written by training)")
    return path


def restore_model(model, directory: str | os.PathLike) -> str:
    """Restore a model-only checkpoint (``final/``, ``best/``) into a built ``model``; returns its path.

    Raises when a variable of ``model`` has no value in the checkpoint (another architecture).
    """
    path = latest_checkpoint(directory)
    _restore(tf.train.Checkpoint(model=model), path, "the model").expect_partial()
    return path


def restore_pretrained(model, directory: str | os.PathLike) -> str:
    """Restore ``model.restore_targets()`` from a pretrain run's model-only checkpoint (``final/``).

    Only what the model names as restore targets is read (``expect_partial`` for the rest, e.g.
    pretraining heads a finetune model lacks). Raises when a target variable is missing there.
    """
    path = latest_checkpoint(directory)
    targets = model.restore_targets()
    checkpoint = tf.train.Checkpoint(pretrain_targets=tf.train.Checkpoint(**targets))
    _restore(checkpoint, path, f"restore targets {sorted(targets)}").expect_partial()
    return path


def _restore(checkpoint: tf.train.Checkpoint, path: str, what: str):
    """``checkpoint.restore(path)``, checked: every existing variable must get a value of its shape."""
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise ValueError(f"{path}: checkpoint does not match {what} (different model config?): "
                         f"{str(error)[:500]}") from None
    return status


class RunCheckpoints:
    """The checkpoints of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike, strategy: tf.distribute.Strategy, model,
                 optimizer, step: tf.Variable, keep: int = 3):
        self.run_dir = os.fspath(run_dir)
        self.strategy = strategy
        self.model = model
        self.step = step
        self.resume_dir = os.path.join(self.run_dir, RESUME_DIR)
        self.checkpoint = tf.train.Checkpoint(model=model, step=step, **optimizer.checkpoint_items())
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, strategy_lib.write_dir(self.resume_dir, strategy), max_to_keep=keep,
            step_counter=step, checkpoint_name=CHECKPOINT_NAME)
        self._model_managers: dict[str, tf.train.CheckpointManager] = {}

    def restore_latest(self) -> int:
        """Restore the newest ``ckpt/`` checkpoint if there is one; returns the step to start from."""
        path = tf.train.latest_checkpoint(self.resume_dir)
        if path is None:
            return 0
        _restore(self.checkpoint, path, "the model and optimizers of this run")
        return int(self.step.numpy())

    def save(self) -> str | None:
        """Write a resumable checkpoint at the current step (every worker must call it)."""
        path = self.manager.save(checkpoint_number=self.step)
        strategy_lib.remove_temporary(self.resume_dir, self.strategy)
        return path

    def has_model(self, name: str) -> bool:
        """Whether ``run_dir/name`` holds a model-only checkpoint of the current step."""
        path = tf.train.latest_checkpoint(os.path.join(self.run_dir, name))
        return path is not None and path.endswith(f"-{int(self.step.numpy())}")

    def save_model(self, name: str) -> str | None:
        """Write a model-only checkpoint to ``run_dir/name`` (``final`` or ``best``), keeping one."""
        directory = os.path.join(self.run_dir, name)
        if name not in self._model_managers:
            self._model_managers[name] = tf.train.CheckpointManager(
                model_checkpoint(self.model), strategy_lib.write_dir(directory, self.strategy), max_to_keep=1,
                checkpoint_name=CHECKPOINT_NAME)
        path = self._model_managers[name].save(checkpoint_number=self.step)
        strategy_lib.remove_temporary(directory, self.strategy)
        return path
