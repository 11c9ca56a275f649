"""Shared checks for Keras layers and model families (used by the tests of models/)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf
import tf_keras as keras


def check_layer(layer: keras.layers.Layer, args: tuple, expected_shape: tuple,
                kwargs: Mapping[str, Any] | None = None, atol: float = 1e-5) -> tf.Tensor:
    """The standard layer checks; returns the layer's output (inference mode).

    1. output shape == ``expected_shape``;
    2. config round trip: ``from_config(get_config())`` rebuilds a layer that, given the same
       weights, gives the same output;
    3. one train step: every trainable weight receives a gradient, and one SGD step changes
       the output.
    """
    kwargs = dict(kwargs or {})
    out = layer(*args, **kwargs, training=False) if _takes_training(layer) else layer(*args, **kwargs)
    assert tuple(out.shape) == tuple(expected_shape), (out.shape, expected_shape)
    assert layer.trainable_weights, f"{layer.name} has no trainable weights"

    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    _call(clone, args, kwargs)  # builds the clone's weights
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_call(clone, args, kwargs).numpy(), out.numpy(), atol=atol)

    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        train_out = _call(layer, args, kwargs, training=True)
        loss = tf.reduce_mean(tf.square(tf.cast(train_out, tf.float32) - 1.0))
    grads = tape.gradient(loss, layer.trainable_weights)
    missing = [w.name for w, g in zip(layer.trainable_weights, grads) if g is None]
    assert not missing, f"no gradient for {missing}"
    optimizer.apply_gradients(zip(grads, layer.trainable_weights))
    assert not np.allclose(_call(layer, args, kwargs).numpy(), out.numpy())
    return out


def _takes_training(layer: keras.layers.Layer) -> bool:
    return "training" in layer._call_spec.arg_names


def _call(layer, args, kwargs, training: bool = False):
    if _takes_training(layer):
        return layer(*args, **kwargs, training=training)
    return layer(*args, **kwargs)


def make_train_step(model, strategy: tf.distribute.Strategy,
                    optimizer: keras.optimizers.Optimizer,
                    finetune_only: tuple[str, ...] = ()) -> Callable:
    """A compiled distributed train step on ``model.pretrain_losses`` (contract: the summed
    losses divided by the replica count); returns the per-loss dict (mean over replicas).

    Every trainable variable must get a gradient, except those whose name contains one of
    ``finetune_only`` (layers that only a finetune trains), which must get none."""

    @tf.function
    def step(features):
        def replica_step(features):
            with tf.GradientTape() as tape:
                losses = model.pretrain_losses(features, training=True)
                total = tf.add_n(list(losses.values())) / strategy.num_replicas_in_sync
            variables = model.trainable_variables
            grads = tape.gradient(total, variables)
            later = [any(part in v.name for part in finetune_only) for v in variables]
            missing = [v.name for v, g, f in zip(variables, grads, later) if g is None and not f]
            if missing:
                raise AssertionError(f"no gradient for {missing}")
            unexpected = [v.name for v, g, f in zip(variables, grads, later) if g is not None and f]
            if unexpected:
                raise AssertionError(f"finetune-only variables got a gradient: {unexpected}")
            optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
            return losses

        per_replica = strategy.run(replica_step, args=(features,))
        return {key: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for key, value in per_replica.items()}

    return step


def assert_same_outputs(a: Mapping[str, tf.Tensor], b: Mapping[str, tf.Tensor],
                        atol: float = 1e-6) -> None:
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), atol=atol,
                                   err_msg=key)


class FamilyHarness:
    """One tiny model of a family under MirroredStrategy for a family's own tests; `history`
    trains it ``steps`` steps on a fixed batch the first time it is read. (The checks every
    family shares are in tests/models/test_contract.py.)"""

    def __init__(self, config, steps: int = 25, batch_size: int = 8, learning_rate: float = 3e-3,
                 finetune_only: tuple[str, ...] = ()):
        from models.base import example_features
        from models.registry import build_model

        self.config = config
        self.strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        with self.strategy.scope():
            self.model = build_model(config)
            self.optimizer = keras.optimizers.Adam(learning_rate)
        self.built_variables = {v.ref() for v in self.model.variables}
        self.features = example_features(config, batch_size, seed=1)
        self.eval_features = example_features(config, 4, seed=2)
        self._step = make_train_step(self.model, self.strategy, self.optimizer, finetune_only)
        self._steps = steps
        self._history: list[dict] | None = None

    @property
    def history(self) -> list[dict]:
        if self._history is None:
            self._history = [{k: float(v) for k, v in self._step(self.features).items()}
                             for _ in range(self._steps)]
        return self._history

    # ---------------------------------------------------------------- checks
    def check_outputs(self, extra: Mapping[str, tuple] = ()) -> dict:
        out = self.model(self.eval_features, training=False)
        expected = {"embedding": (4, self.config.embedding_dim),
                    "tag_logits": (4, self.config.num_tags), **dict(extra)}
        for key, shape in expected.items():
            assert tuple(out[key].shape) == shape, (key, out[key].shape, shape)
        assert out["embedding"].dtype == tf.float32 and out["tag_logits"].dtype == tf.float32
        # inference is deterministic and batch-independent (no padding leaks between videos)
        again = self.model({k: v[:2] for k, v in self.eval_features.items()}, training=False)
        np.testing.assert_allclose(again["embedding"].numpy(), out["embedding"].numpy()[:2],
                                   rtol=1e-4, atol=1e-4)
        return out

    def check_losses(self, expected_keys: set) -> None:
        first = self.history[0]
        assert set(first) == set(expected_keys)
        assert all(np.isfinite(v) for row in self.history for v in row.values())
        total = [sum(row.values()) for row in self.history]
        assert np.mean(total[-3:]) < 0.6 * total[0], f"loss did not fall: {total}"

    def check_variable_groups(self) -> None:
        check_variable_groups(self.model)
        # build_model created every variable: training added none
        assert {v.ref() for v in self.model.variables} == self.built_variables


def check_variable_groups(model) -> None:
    """The text encoder's variables and the rest partition the trainable variables."""
    text = model.text_encoder_variables()
    rest = model.other_trainable_variables()
    assert text and rest
    text_refs, rest_refs = {v.ref() for v in text}, {v.ref() for v in rest}
    assert not text_refs & rest_refs
    assert text_refs | rest_refs == {v.ref() for v in model.trainable_variables}
    assert len(text) == len(model.text_encoder.hf_model.trainable_variables)

def check_padding_ignored(model, features: Mapping[str, tf.Tensor],
                          keys=("embedding", "tag_logits"), atol: float = 1e-5) -> None:
    """Mask-awareness: noise in padded frames, other ids at padded title positions and other
    string fields leave ``keys`` of the model's (inference) outputs unchanged."""
    features = dict(features)
    out = model(features, training=False)
    rng = np.random.default_rng(0)
    frame_pad = 1.0 - features["frame_mask"].numpy()
    assert frame_pad.any(), "the batch needs padded frames"
    noise = rng.normal(size=features["frames"].shape).astype(np.float32) * 3.0
    features["frames"] = features["frames"] + noise * frame_pad[..., None]
    text_pad = features["attention_mask"].numpy() == 0
    ids = features["input_ids"].numpy().copy()
    ids[text_pad] = rng.integers(5, model.text_encoder.vocab_size, size=int(text_pad.sum()))
    features["input_ids"] = tf.constant(ids)
    features["title"] = features["title"] + "!"
    again = model(features, training=False)
    for key in keys:
        np.testing.assert_allclose(again[key].numpy(), out[key].numpy(), rtol=1e-5, atol=atol,
                                   err_msg=key)
