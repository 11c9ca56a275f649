"""Randomness as a function of ``(seed, step)``, so that a resumed run is exact.

Two things draw random numbers while training: the input order (handled by `train.data`) and the
model itself (dropout, MLM / frame masking). TF1-style stateful random ops keep their state
inside kernels that a checkpoint does not save, so a resumed run would replay the masks of step 0.
Instead:

1. `seed_everything(seed)` makes Keras use `tf.random.Generator`-backed random layers
   (`keras.backend.experimental.enable_tf_random_generator`) and seeds Python, NumPy and
   TensorFlow. Call it before any model is built.
2. `StepRandomness(model, seed)` finds every `tf.random.Generator` of the model (those behind
   Keras random layers such as Dropout, including the transformers encoders' dropout, and any
   generator a model keeps as an attribute) and `reset(step)` sets each one's state from a
   stateless hash of ``(seed, generator index, step)`` at the start of every training step.

The random numbers of step ``s`` are then the same whether the run got there in one go or was
interrupted and resumed. Under a distribution strategy each replica still draws its own stream
(TensorFlow folds the replica id into the generator key), so per-replica randomness depends on how
the global batch is split across replicas.
"""
from __future__ import annotations

from typing import Iterable

import tensorflow as tf
import tf_keras as keras
from tf_keras.src.backend import RandomGenerator as KerasRandomGenerator  # not exported publicly

_SEED_STRIDE = 1_000_003


def seed_everything(seed: int) -> None:
    """Generator-backed Keras random layers and seeded Python/NumPy/TF; call before building models."""
    keras.backend.experimental.enable_tf_random_generator()
    keras.utils.set_random_seed(int(seed))


def model_generators(model: tf.Module) -> list[tf.random.Generator]:
    """Every `tf.random.Generator` used by ``model``'s layers, in a deterministic order.

    Looks at the Keras random generator of each (sub)layer (created now if still lazy) and at
    generators held directly as attributes. Build the model first, inside the strategy scope.
    """
    found: list[tf.random.Generator] = []
    seen: set[int] = set()

    def add(generator) -> None:
        if isinstance(generator, tf.random.Generator) and id(generator) not in seen:
            seen.add(id(generator))
            found.append(generator)

    for module in _modules(model):
        for value in list(vars(module).values()):
            if isinstance(value, KerasRandomGenerator):
                value._maybe_init()
                add(getattr(value, "_generator", None))
            else:
                add(value)
    return found


def _modules(model: tf.Module) -> Iterable[tf.Module]:
    yield model
    yield from model.submodules


class StepRandomness:
    """Resets a model's random generators to a state that depends only on (seed, step)."""

    def __init__(self, model: tf.Module, seed: int):
        self.generators = model_generators(model)
        self.seed = int(seed)

    def reset(self, step: tf.Tensor) -> None:
        """Call at the start of a training step (in cross-replica context, inside the step's tf.function)."""
        step = tf.cast(step, tf.int64)
        for number, generator in enumerate(self.generators):
            base = tf.constant(self.seed * _SEED_STRIDE + number, tf.int64)
            key = tf.random.stateless_uniform([1], seed=tf.stack([base, step]), minval=None, maxval=None,
                                              dtype=tf.int64)
            state_size = int(generator.state.shape[0])
            generator.reset(tf.concat([tf.zeros([state_size - 1], tf.int64), key], axis=0))
