"""The custom distributed training loop shared by pretrain and finetune.

One step (`Trainer.train_step`, a `tf.function`):

1. reset the model's random generators from ``(seed, step)`` (`train.randomness`);
2. on every replica: ``losses = loss_fn(model, batch)`` (a dict of weighted local-batch means),
   total = their sum, divided by ``num_replicas_in_sync`` -- with equal per-replica batches this
   is the global-batch mean, so results do not depend on the number of replicas; gradients of it
   (scaled under mixed precision), optionally XLA-compiled (``jit_compile``);
3. `TwoGroupOptimizer.apply`: all-reduce, unscale, joint global-norm clipping, two AdamW;
4. the losses are averaged over replicas and returned with the gradient norm.

Several steps per host round trip (``steps_per_loop``): `Trainer.train_steps` runs up to ``n``
steps inside one `tf.function` (a graph while loop), so the host does not wait for the device
after every step. The NaN/Inf check runs in the graph after each step: the loop stops at the
first step with a non-finite loss and returns which step it was, and the host raises
`NonFiniteLossError` naming it, exactly as with one step per call. A loop never crosses a step
where the host has work (a log line, an epoch end, a checkpoint), so logs, validation and
checkpoints happen at the same steps whatever ``steps_per_loop`` is, and since every step still
resets its random generators from ``(seed, step)`` and reads the same batch, a run (or a resumed
run) gives bit-identical weights for any ``steps_per_loop``.

Around it (`Trainer.run`): resume from the latest ``ckpt/`` checkpoint, a dataset that starts at
the resumed step, a tqdm bar with loss and steps/s, TensorBoard scalars, a checkpoint every N
steps and at the end, an ``on_epoch_end`` hook (finetune validation) and the NaN guard: a
non-finite loss (or, in float32, gradient norm) stops training with `NonFiniteLossError` naming the
step *before* anything is saved, so no checkpoint ever holds NaN weights. (Under mixed precision a
non-finite gradient is normal: the loss scaler skips that update and lowers the scale.)
A record that breaks the layout stops training with `RecordError` naming its file and record.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Mapping

import tensorflow as tf
from tensorflow.core.framework import summary_pb2
from tqdm.auto import tqdm

from tfrecord_tools import layout, reader
from tfrecord_tools.atomic import write_text_atomic
from train import strategy as strategy_lib
from train.checkpointing import FINAL_DIR, RunCheckpoints
from train.optimization import TwoGroupOptimizer, split_variables
from train.randomness import StepRandomness

LossFn = Callable[[Any, Mapping, bool], Mapping[str, tf.Tensor]]  # (model, batch, training)
LOG_FILE = layout.TRAIN_LOG
TOTAL = "loss"
GRAD_NORM = "grad_norm"


def write_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar through the default `tf.summary` writer.

    `tf.summary.scalar` needs the tensorboard package; this writes the same record (a float32
    tensor summary tagged for TensorBoard's scalars plugin) with TensorFlow alone.
    """
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=metadata)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss (or float32 gradient norm); nothing of that step was saved."""

    def __init__(self, step: int, values: Mapping[str, float], last_checkpoint_step: int | None):
        self.step = step
        self.values = dict(values)
        shown = ", ".join(f"{key}={value:.6g}" for key, value in values.items())
        saved = (f"the last checkpoint (step {last_checkpoint_step}) is unaffected"
                 if last_checkpoint_step else "no checkpoint was written")
        super().__init__(f"non-finite loss at step {step} ({shown}): training stopped; {saved}. "
                         f"Lower the learning rates, check the data, or resume from the checkpoint.")


def input_options(strategy: tf.distribute.Strategy) -> tf.distribute.InputOptions | None:
    """How the strategy feeds the batches: a plain dataset iterator for one replica on the host CPU.

    When a training iterator is deleted at the end of a run, TensorFlow 2.21 waits for each tf.data
    autotuning thread under it to sleep out its optimisation period (up to 60 s): on 2 CPU cores
    some finetunes paused 46-58 s after their last step (docs/benchmarks.md, "Pauses at the end of a
    training run"). `Trainer.training_dataset` turns autotuning off in the dataset itself; by
    default every strategy also reads through a multi-device iterator whose per-device datasets
    autotune out of our reach. With a single CPU replica there is no device to prefetch to, so the
    plain iterator reads the same batches without them. Several replicas, GPUs and clusters keep
    TensorFlow's default (None).
    """
    devices = strategy.extended.worker_devices
    if strategy.num_replicas_in_sync != 1 or len(devices) != 1:
        return None
    if tf.DeviceSpec.from_string(devices[0]).device_type != "CPU":
        return None
    return tf.distribute.InputOptions(experimental_fetch_to_device=False,
                                      experimental_replication_mode=tf.distribute.InputReplicationMode.PER_REPLICA)


class Trainer:
    """Runs ``total_steps`` steps of ``loss_fn`` on a model under ``strategy`` (see the module docstring).

    ``loss_fn(model, batch, training)`` returns the weighted local-batch mean losses;
    ``dataset_fn(start_step, input_context)`` returns per-replica batches from ``start_step`` on;
    ``build_batch`` is one (small) batch used to create every variable eagerly before tracing
    (with ``training=False``: no state such as batch-norm statistics changes).
    Build the model and call the constructor inside ``strategy.scope()``.
    """

    def __init__(self, *, config, strategy: tf.distribute.Strategy, model, loss_fn: LossFn, run_dir: str,
                 dataset_fn, build_batch: Mapping, total_steps: int, steps_per_epoch: int,
                 on_epoch_end: Callable[[int, int], Mapping[str, float] | None] | None = None):
        self.config = config
        self.strategy = strategy
        self.model = model
        self.loss_fn = loss_fn
        self.run_dir = os.fspath(run_dir)
        self.dataset_fn = dataset_fn
        self.total_steps = int(total_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.on_epoch_end = on_epoch_end
        self.chief = strategy_lib.is_chief(strategy)
        if self.total_steps < 1 or self.steps_per_epoch < 1:
            raise ValueError(f"need total_steps and steps_per_epoch >= 1, got {total_steps}, {steps_per_epoch}")

        # Create every variable now (eagerly): model, pretraining heads, random generators, slots.
        loss_fn(model, build_batch, False)
        self.text_vars, self.other_vars = split_variables(model)
        self.optimizer = TwoGroupOptimizer.from_config(config, self.total_steps)
        self.optimizer.build(self.text_vars, self.other_vars)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.randomness = StepRandomness(model, config.seed)
        self.checkpoints = RunCheckpoints(self.run_dir, strategy, model, self.optimizer, self.step,
                                          keep=config.keep_checkpoints)
        grads_fn = self._loss_and_grads
        self._grads_fn = tf.function(grads_fn, jit_compile=True) if config.xla else grads_fn
        self._compiled_step = tf.function(self._step_fn)
        self._compiled_loop = tf.function(self._loop_fn)

    # ---------------------------------------------------------------- one step
    def _loss_and_grads(self, batch):
        variables = self.text_vars + self.other_vars
        with tf.GradientTape() as tape:
            losses = {key: tf.cast(value, tf.float32) for key, value in self.loss_fn(self.model, batch, True).items()}
            total = tf.add_n(list(losses.values()))
            scaled = self.optimizer.scale_loss(total / self.strategy.num_replicas_in_sync)
        grads = tape.gradient(scaled, variables)
        if self.config.xla:  # XLA returns dense tensors only
            grads = [tf.convert_to_tensor(g) if g is not None else None for g in grads]
        return {**losses, TOTAL: total}, grads

    def _replica_step(self, batch):
        losses, grads = self._grads_fn(batch)
        split = len(self.text_vars)
        norm = self.optimizer.apply(grads[:split], self.text_vars, grads[split:], self.other_vars)
        return {**losses, GRAD_NORM: norm}

    def _step_fn(self, iterator):
        self.randomness.reset(self.step)
        per_replica = self.strategy.run(self._replica_step, args=(next(iterator),))
        replicas = self.strategy.num_replicas_in_sync
        results = {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) / replicas
                   for key, value in per_replica.items()}
        self.step.assign_add(1)
        return results

    def _all_finite(self, results) -> tf.Tensor:
        checked = [value for key, value in results.items()
                   if key != GRAD_NORM or not self.config.mixed_precision]
        return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(value)) for value in checked]))

    def _loop_fn(self, iterator, steps):
        """Up to ``steps`` steps in the graph; stops after the first non-finite one. Returns the
        last step's values, how many steps ran and whether they were all finite."""
        results = self._step_fn(iterator)
        finite = self._all_finite(results)
        done = tf.constant(1)
        while tf.logical_and(done < steps, finite):
            results = self._step_fn(iterator)
            finite = self._all_finite(results)
            done += 1
        return results, done, finite

    # ---------------------------------------------------------------- the loop
    def training_dataset(self, start_step: int, context=None) -> tf.data.Dataset:
        """``dataset_fn``'s batches from ``start_step`` on, without tf.data autotuning (see
        `input_options`): its AUTOTUNE values then mean min(16, cores) parallel calls, and prefetch
        buffers still grow as needed (the same steps/s on 2 cores)."""
        options = tf.data.Options()
        options.autotune.enabled = False
        return self.dataset_fn(start_step, context).with_options(options)

    def iterator(self, start_step: int = 0):
        """An iterator over the distributed training batches from ``start_step`` on."""
        return iter(self.strategy.distribute_datasets_from_function(
            lambda context: self.training_dataset(start_step, context), options=input_options(self.strategy)))

    def train_step(self, iterator) -> dict[str, float]:
        """Run one training step; returns the global-batch mean losses and the gradient norm."""
        return {key: float(value) for key, value in self._compiled_step(iterator).items()}

    def train_steps(self, iterator, steps: int) -> tuple[dict[str, float], int]:
        """Run up to ``steps`` steps in one call (one host round trip); returns the values of the
        last step run and how many ran (fewer only when that last step was not finite)."""
        if steps == 1:
            return self.train_step(iterator), 1
        results, done, _ = self._compiled_loop(iterator, tf.constant(steps))
        return {key: float(value) for key, value in results.items()}, int(done)

    def _loop_length(self, step: int) -> int:
        """Steps of the next loop from ``step`` (the last one done): ``steps_per_loop``, cut at the
        next step where the host logs, validates or checkpoints, and at the end."""
        config = self.config
        length = min(config.steps_per_loop, self.total_steps - step)
        for every in (config.log_every_steps, config.checkpoint_every_steps, self.steps_per_epoch):
            length = min(length, every - step % every)
        return max(length, 1)

    def run(self) -> dict:
        """Train (resuming if a checkpoint exists) up to ``total_steps``; returns the last step's values."""
        start = self.checkpoints.restore_latest()
        last_saved = start or None
        values: dict[str, float] = {}
        if start >= self.total_steps:  # finished before; write final/ only if the run died before it
            if not self.checkpoints.has_model(FINAL_DIR):
                self._finish()
            return values
        iterator = self.iterator(start)
        writer = None
        if self.chief:
            writer = tf.summary.create_file_writer(os.path.join(self.run_dir, layout.TENSORBOARD_DIR))
            self._truncate_log(start)
        bar = tqdm(total=self.total_steps, initial=start, unit="step", dynamic_ncols=True,
                   disable=not (self.chief and self.config.progress), desc=f"{self.config.stage} {self.config.model.name}")
        window_start, window_steps = time.perf_counter(), 0
        steps_per_sec = float("nan")
        step = start
        try:
            while step < self.total_steps:
                with reader.record_errors():  # a bad input record -> RecordError(file, record, problem)
                    values, done = self.train_steps(iterator, self._loop_length(step))
                step += done
                self._check_finite(step, values, last_saved)
                window_steps += done
                elapsed = time.perf_counter() - window_start
                if elapsed >= 1.0 or step == self.total_steps:
                    steps_per_sec = window_steps / max(elapsed, 1e-9)
                    window_start, window_steps = time.perf_counter(), 0
                bar.update(done)
                bar.set_postfix(loss=f"{values[TOTAL]:.4f}", steps_s=f"{steps_per_sec:.2f}", refresh=False)
                if writer is not None and (step % self.config.log_every_steps == 0 or step == self.total_steps):
                    self._log(writer, step, values, steps_per_sec)
                if step % self.steps_per_epoch == 0 and self.on_epoch_end is not None:
                    metrics = self.on_epoch_end(step // self.steps_per_epoch, step) or {}
                    if writer is not None:
                        with writer.as_default():
                            for key, value in metrics.items():
                                write_scalar(key, value, step)
                    if metrics:
                        bar.write(f"epoch {step // self.steps_per_epoch} (step {step}): "
                                  + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
                if step % self.config.checkpoint_every_steps == 0 or step == self.total_steps:
                    self.checkpoints.save()
                    last_saved = step
        finally:
            bar.close()
            if writer is not None:
                writer.flush()
        self._finish()
        return values

    def _finish(self) -> None:
        self.checkpoints.save_model(FINAL_DIR)

    def _check_finite(self, step: int, values: Mapping[str, float], last_saved: int | None) -> None:
        checked = {key: value for key, value in values.items()
                   if key != GRAD_NORM or not self.config.mixed_precision}
        if not all(math.isfinite(value) for value in checked.values()):
            raise NonFiniteLossError(step, values, last_saved)

    def _truncate_log(self, start: int) -> None:
        """Forget log lines of steps after ``start`` (a resumed run logs them again)."""
        path = os.path.join(self.run_dir, LOG_FILE)
        if not os.path.isfile(path):
            return
        kept = []
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line torn by a crash while it was appended
                    continue
                if line.endswith("\n") and entry["step"] <= start:
                    kept.append(line)
        write_text_atomic(path, "".join(kept))

    def _log(self, writer, step: int, values: Mapping[str, float], steps_per_sec: float) -> None:
        """TensorBoard scalars and one JSON line in ``train_log.jsonl`` (chief only)."""
        record = dict(values)
        record.update({key: float(value) for key, value in self.optimizer.learning_rates().items()})
        if math.isfinite(steps_per_sec):
            record["steps_per_sec"] = steps_per_sec
        with writer.as_default():
            for key, value in record.items():
                write_scalar(f"train/{key}", value, step)
        with open(os.path.join(self.run_dir, LOG_FILE), "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **record}) + "\n")
