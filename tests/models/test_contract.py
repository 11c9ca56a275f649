"""The model contract (docs/architecture.md), checked for every family of the registry.

One parametrised set of checks instead of a copy per family: output shapes and dtypes, config
round trips (Keras `get_config`, the JSON `ModelConfig`, the flat layout of older runs), padding
ignored, the two variable groups, one distributed train step, a checkpoint round trip, a
mixed_float16 step, and (slow) the pretraining loss falling on a fixed batch. A toy family
defined in tests/models/toy_family.py is registered with one line and checked like the rest.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import registry
from models.base import example_features
from models.config import LEGACY_KEYS, ModelConfig
from tests.models.helpers import (assert_same_outputs, check_padding_ignored, check_variable_groups,
                                  make_train_step)
from tests.models.toy_family import ToyMeanPoolModel

registry.register("toy_mean_pool")(ToyMeanPoolModel)  # a new family: its module and this line

FAMILIES = sorted(registry.MODELS)
# what only a finetune trains (single_stream's pretraining never reaches its embedding projection)
FINETUNE_ONLY = {"single_stream": ("/embedding/",)}


def tiny_config(name: str) -> ModelConfig:
    return ModelConfig.tiny(name, frame_dim=64, num_tags=50)


class Built:
    """A tiny model of one family under a one-device MirroredStrategy, and its optimizer."""

    def __init__(self, name: str):
        self.name = name
        self.config = tiny_config(name)
        self.strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        with self.strategy.scope():
            self.model = registry.build_model(self.config)
            self.optimizer = keras.optimizers.Adam(3e-3)
        self.built_variables = {v.ref() for v in self.model.variables}
        self.features = example_features(self.config, 8, seed=1)
        self.eval_features = example_features(self.config, 4, seed=2)
        self.step = make_train_step(self.model, self.strategy, self.optimizer, FINETUNE_ONLY.get(name, ()))


@pytest.fixture(scope="module", params=FAMILIES)
def built(request) -> Built:
    return Built(request.param)


def test_the_registry_holds_the_toy_family():
    assert "toy_mean_pool" in FAMILIES and len(FAMILIES) >= 8


def test_outputs(built):
    out = built.model(built.eval_features, training=False)
    assert tuple(out["embedding"].shape) == (4, built.config.embedding_dim)
    assert tuple(out["tag_logits"].shape) == (4, built.config.num_tags)
    assert out["embedding"].dtype == tf.float32 and out["tag_logits"].dtype == tf.float32
    again = built.model({k: v[:2] for k, v in built.eval_features.items()}, training=False)
    np.testing.assert_allclose(again["embedding"].numpy(), out["embedding"].numpy()[:2], rtol=1e-4, atol=1e-4)


def test_config_round_trips(built):
    config = built.model.get_config()
    assert config == built.config.to_dict() and config["name"] == built.name
    clone = type(built.model).from_config(config)
    assert clone.get_config() == config and clone.model_config == built.config
    clone(built.eval_features, training=False)
    clone.set_weights(built.model.get_weights())
    assert_same_outputs(clone(built.eval_features, training=False), built.model(built.eval_features, training=False),
                        atol=1e-5)
    assert ModelConfig.from_json(built.config.to_json()) == built.config
    # the flat layout of config.json files written before the config was nested
    flat = {key: getattr(built.config, key) for key in LEGACY_KEYS}
    flat.update({key: value for key, value in config.items() if not isinstance(value, dict)})
    assert ModelConfig.from_dict(flat) == built.config
    rebuilt = registry.build_model(ModelConfig.from_dict(flat))
    assert type(rebuilt) is type(built.model)
    assert [v.shape for v in rebuilt.weights] == [v.shape for v in built.model.weights]


def test_padding_is_ignored(built):
    check_padding_ignored(built.model, built.eval_features)


def test_text_encoder_variables_are_a_separate_group(built):
    check_variable_groups(built.model)


@pytest.mark.slow  # tracing a distributed train step takes 10-60 s a family on 2 cores
def test_one_train_step_and_checkpoint_round_trip(built, tmp_path):
    before = [v.numpy().copy() for v in built.model.trainable_variables]
    losses = {key: float(value) for key, value in built.step(built.features).items()}
    assert losses and all(np.isfinite(value) for value in losses.values())
    changed = [not np.array_equal(a, v.numpy()) for a, v in zip(before, built.model.trainable_variables)]
    assert sum(changed) >= len(changed) // 2
    assert {v.ref() for v in built.model.variables} == built.built_variables  # build_model made them all

    expected = built.model(built.eval_features, training=False)
    assert built.model.restore_targets() == {"model": built.model}
    path = tf.train.Checkpoint(model=built.model).save(str(tmp_path / "ckpt"))
    with built.strategy.scope():
        fresh = registry.build_model(built.config)
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    assert_same_outputs(fresh(built.eval_features, training=False), expected, atol=1e-5)


@pytest.mark.slow
def test_pretraining_loss_falls_on_a_fixed_batch(built):
    history = [sum(float(v) for v in built.step(built.features).values()) for _ in range(25)]
    assert np.isfinite(history).all()
    assert np.mean(history[-3:]) < 0.6 * history[0], f"loss did not fall: {history}"


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_mixed_float16_step(name):
    """Under mixed_float16 the layers compute in float16; outputs, losses and gradients stay finite float32."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        config = tiny_config(name)
        model = registry.build_model(config)
        features = example_features(config, 4)
        with tf.GradientTape() as tape:
            got = model.pretrain_losses(features)
            total = tf.add_n(list(got.values()))
        variables = model.trainable_variables
        grads = tape.gradient(total, variables)
        out = model(features)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert model.text_encoder.compute_dtype == "float16"
    assert all(v.dtype == tf.float32 for v in got.values()) and out["embedding"].dtype == tf.float32
    assert np.isfinite(float(total))
    only_finetune = FINETUNE_ONLY.get(name, ())
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads if g is not None)
    assert all(g is not None for v, g in zip(variables, grads) if not any(p in v.name for p in only_finetune))
