"""Two AdamW optimizers (text encoder / everything else), warmup + decay, global-norm clipping.

The official baseline trains the BERT text encoder with a small learning rate (3e-5) and the rest
of the model with a large one (5e-4). `TwoGroupOptimizer` holds one Keras AdamW per variable group
and applies one training step to both:

1. the per-replica gradients are summed over the replicas (``all_reduce``): each replica's loss is
   already divided by the number of replicas, so the sum is the gradient of the global-batch mean;
2. with mixed precision they are unscaled (dynamic loss scaling, Keras `LossScaleOptimizer`);
3. they are clipped by their *joint* global norm (both groups together);
4. each optimizer applies its group.

Mixed precision: each AdamW is wrapped in its own dynamic `LossScaleOptimizer`. Both always see
the same finiteness (when any gradient is not finite, every gradient of the step is made NaN), so
both skip the same steps and their loss scales stay equal; the loss is scaled with one of them.

Learning rate (`WarmupDecay`), with ``s`` the optimizer step (0 for the first update), ``W``
warmup steps and ``T`` total steps::

    s <  W:  peak * (s + 1) / W
    s >= W:  p = min(1, (s - W) / max(1, T - W))
             cosine: floor + (peak - floor) * 0.5 * (1 + cos(pi * p))
             linear: floor + (peak - floor) * (1 - p)

with ``floor = peak * min_lr_ratio``.
"""
from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf
import tf_keras as keras

# Variables whose name contains one of these get no weight decay (biases and normalisation).
NO_DECAY_NAMES = ("bias", "LayerNorm", "layer_norm", "layernorm", "gamma", "beta", "batch_norm")


class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to ``peak`` then cosine or linear decay to ``peak * min_ratio`` (see module)."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, decay: str = "cosine",
                 min_ratio: float = 0.0):
        super().__init__()
        if decay not in ("cosine", "linear"):
            raise ValueError(f"decay must be 'cosine' or 'linear', got {decay!r}")
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.min_ratio = float(min_ratio)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.peak, tf.float32)
        floor = peak * self.min_ratio
        warmup = float(self.warmup_steps)
        progress = tf.clip_by_value((step - warmup) / max(1.0, float(self.total_steps - self.warmup_steps)), 0.0, 1.0)
        if self.decay == "cosine":
            decayed = floor + (peak - floor) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        else:
            decayed = floor + (peak - floor) * (1.0 - progress)
        if self.warmup_steps == 0:
            return decayed
        warm = peak * (step + 1.0) / warmup
        return tf.where(step < warmup, warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "decay": self.decay, "min_ratio": self.min_ratio}


def warmup_steps_for(total_steps: int, warmup_steps: int, warmup_ratio: float) -> int:
    """Explicit ``warmup_steps`` when > 0, else ``round(warmup_ratio * total_steps)``."""
    if warmup_steps > 0:
        return int(min(warmup_steps, total_steps))
    return int(round(warmup_ratio * total_steps))


def make_adamw(schedule, weight_decay: float, epsilon: float) -> keras.optimizers.Optimizer:
    """Keras AdamW without decay on biases / normalisation weights."""
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay, epsilon=epsilon)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    return optimizer


def split_variables(model) -> tuple[list[tf.Variable], list[tf.Variable]]:
    """``(text encoder variables, other trainable variables)`` by the model contract."""
    trainable = list(model.trainable_variables)
    text = list(model.text_encoder_variables())
    trainable_ids = {id(v) for v in trainable}
    foreign = [v.name for v in text if id(v) not in trainable_ids]
    if foreign:
        raise ValueError(f"text_encoder_variables() returned variables that are not trainable variables of "
                         f"the model: {foreign[:5]}")
    text_ids = {id(v) for v in text}
    return text, [v for v in trainable if id(v) not in text_ids]


def _scale(gradient, factor: tf.Tensor):
    """``gradient * factor`` for dense and sparse (IndexedSlices) gradients."""
    if isinstance(gradient, tf.IndexedSlices):
        values = gradient.values * tf.cast(factor, gradient.values.dtype)
        return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)
    return gradient * tf.cast(factor, gradient.dtype)


class TwoGroupOptimizer(tf.Module):
    """Applies one step to the text-encoder group and to the rest (see the module docstring)."""

    def __init__(self, text_optimizer, other_optimizer, clip_norm: float = 0.0, mixed_precision: bool = False):
        super().__init__(name="two_group_optimizer")
        self.mixed_precision = bool(mixed_precision)
        if self.mixed_precision:
            text_optimizer = keras.mixed_precision.LossScaleOptimizer(text_optimizer)
            other_optimizer = keras.mixed_precision.LossScaleOptimizer(other_optimizer)
        self.text = text_optimizer
        self.other = other_optimizer
        self.clip_norm = float(clip_norm)

    @classmethod
    def from_config(cls, config, total_steps: int) -> "TwoGroupOptimizer":
        """Both AdamW with `WarmupDecay` schedules from a `TrainConfig`; create inside strategy.scope()."""
        warmup = warmup_steps_for(total_steps, config.warmup_steps, config.warmup_ratio)

        def schedule(peak):
            return WarmupDecay(peak, total_steps, warmup, config.decay, config.min_lr_ratio)

        return cls(make_adamw(schedule(config.lr_text), config.weight_decay, config.adam_epsilon),
                   make_adamw(schedule(config.lr_other), config.weight_decay, config.adam_epsilon),
                   clip_norm=config.clip_norm, mixed_precision=config.mixed_precision)

    # ---------------------------------------------------------------- state
    def build(self, text_vars: Sequence[tf.Variable], other_vars: Sequence[tf.Variable]) -> None:
        """Create the slot variables now (eagerly, inside strategy.scope())."""
        self.text.build(list(text_vars))
        self.other.build(list(other_vars))

    def checkpoint_items(self) -> dict:
        return {"text_optimizer": self.text, "other_optimizer": self.other}

    @property
    def iterations(self) -> tf.Variable:
        return self.other.iterations

    def learning_rates(self) -> dict[str, tf.Tensor]:
        """The learning rates of both groups' last update (for logging)."""
        return {name: tf.convert_to_tensor(getattr(optimizer, "inner_optimizer", optimizer).learning_rate)
                for name, optimizer in (("lr_text", self.text), ("lr_other", self.other))}

    # ---------------------------------------------------------------- one step (replica context)
    def scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
        return self.other.get_scaled_loss(loss) if self.mixed_precision else loss

    def apply(self, grads_text: Sequence, text_vars: Sequence[tf.Variable],
              grads_other: Sequence, other_vars: Sequence[tf.Variable]) -> tf.Tensor:
        """All-reduce, unscale, clip by the joint global norm and apply; returns the norm before clipping.

        Gradients may be None for variables the loss does not reach; those pairs are dropped.
        Call in replica context (inside ``strategy.run``) with gradients of the scaled loss.
        """
        text_pairs = [(g, v) for g, v in zip(grads_text, text_vars) if g is not None]
        other_pairs = [(g, v) for g, v in zip(grads_other, other_vars) if g is not None]
        grads = [g for g, _ in text_pairs] + [g for g, _ in other_pairs]
        if not grads:
            raise ValueError("the loss reaches no trainable variable")
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if self.mixed_precision:
            grads = self.other.get_unscaled_gradients(grads)
        norm = tf.linalg.global_norm(grads)
        if self.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
        if self.mixed_precision:
            poison = tf.where(tf.math.is_finite(norm), 1.0, float("nan"))
            grads = [_scale(g, poison) for g in grads]
        split = len(text_pairs)
        if text_pairs:
            self.text.apply_gradients(zip(grads[:split], [v for _, v in text_pairs]), skip_gradients_aggregation=True)
        if other_pairs:
            self.other.apply_gradients(zip(grads[split:], [v for _, v in other_pairs]), skip_gradients_aggregation=True)
        return norm
