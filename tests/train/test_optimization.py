"""Learning-rate schedule values, two learning rates on the right variables, joint clipping, loss scaling."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from train.config import TrainConfig
from train.optimization import TwoGroupOptimizer, WarmupDecay, split_variables, warmup_steps_for


def test_warmup_then_cosine_and_linear_values():
    cosine = WarmupDecay(peak=1.0, total_steps=110, warmup_steps=10, decay="cosine")
    expected = {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 35: 0.5 * (1 + math.cos(math.pi * 0.25)), 60: 0.5, 110: 0.0, 500: 0.0}
    for step, value in expected.items():
        assert float(cosine(step)) == pytest.approx(value, abs=1e-6), step
    linear = WarmupDecay(peak=2.0, total_steps=110, warmup_steps=10, decay="linear", min_ratio=0.1)
    for step, value in {0: 0.2, 10: 2.0, 35: 0.2 + 1.8 * 0.75, 60: 1.1, 110: 0.2, 200: 0.2}.items():
        assert float(linear(step)) == pytest.approx(value, abs=1e-6), step
    no_warmup = WarmupDecay(peak=1.0, total_steps=10, warmup_steps=0, decay="linear")
    assert float(no_warmup(0)) == pytest.approx(1.0) and float(no_warmup(5)) == pytest.approx(0.5)
    assert warmup_steps_for(100, 0, 0.06) == 6 and warmup_steps_for(100, 20, 0.06) == 20
    assert warmup_steps_for(10, 50, 0.0) == 10
    with pytest.raises(ValueError, match="decay must be"):
        WarmupDecay(1.0, 10, 0, "step")


class TwoPart(keras.Model):
    """The smallest model with the contract's variable split: a 'text encoder' and a head."""

    def __init__(self):
        super().__init__()
        self.text = keras.layers.Dense(3, name="text")
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        return self.head(self.text(x))

    def text_encoder_variables(self):
        return self.text.trainable_variables


def _one_step(strategy, model, optimizer, x):
    text_vars, other_vars = split_variables(model)

    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x) ** 2)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, text_vars + other_vars)
        return optimizer.apply(grads[:len(text_vars)], text_vars, grads[len(text_vars):], other_vars)

    return strategy.run(tf.function(step))


def test_two_learning_rates_apply_to_the_right_variables():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    config = TrainConfig(lr_text=1e-3, lr_other=1e-1, warmup_steps=0, warmup_ratio=0.0, weight_decay=0.0,
                         clip_norm=0.0)
    with strategy.scope():
        model = TwoPart()
        x = tf.constant(np.random.default_rng(0).normal(size=(4, 5)), tf.float32)
        model(x)
        optimizer = TwoGroupOptimizer.from_config(config, total_steps=10)
    text_vars, other_vars = split_variables(model)
    assert [v.name for v in text_vars] == [v.name for v in model.text.trainable_variables]
    assert {v.name for v in other_vars} == {v.name for v in model.head.trainable_variables}
    before = [v.numpy() for v in model.trainable_variables]
    _one_step(strategy, model, optimizer, x)
    # Adam's first step moves every parameter with a non-zero gradient by ~lr (times its sign).
    for variable, old in zip(model.trainable_variables, before):
        moved = np.abs(variable.numpy() - old)
        lr = config.lr_text if any(variable is v for v in text_vars) else config.lr_other
        np.testing.assert_allclose(moved[moved > 0], lr, rtol=1e-2)
    assert optimizer.text.iterations.numpy() == 1 and optimizer.other.iterations.numpy() == 1
    rates = optimizer.learning_rates()  # of the update just made (step 0 of the schedule)
    assert float(rates["lr_text"]) == pytest.approx(1e-3) and float(rates["lr_other"]) == pytest.approx(1e-1)
    _one_step(strategy, model, optimizer, x)
    rates = optimizer.learning_rates()
    assert float(rates["lr_text"]) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.1)), rel=1e-5)


def test_clipping_uses_the_joint_global_norm_of_both_groups():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = TwoPart()
        x = tf.constant(np.random.default_rng(1).normal(size=(4, 5)), tf.float32)
        model(x)
        optimizer = TwoGroupOptimizer(keras.optimizers.SGD(1.0), keras.optimizers.SGD(1.0), clip_norm=0.5)
    before = [v.numpy() for v in model.trainable_variables]
    norm = float(_one_step(strategy, model, optimizer, x))
    deltas = [v.numpy() - old for v, old in zip(model.trainable_variables, before)]
    assert norm > 0.5  # the reported norm is the one before clipping
    joint = math.sqrt(sum(float(np.sum(d ** 2)) for d in deltas))
    assert joint == pytest.approx(0.5, rel=1e-5)
    assert all(np.any(d != 0) for d in deltas)  # both groups moved


def test_mixed_precision_both_groups_skip_together_and_keep_one_loss_scale():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = TwoPart()
        model(tf.zeros([1, 5]))
        optimizer = TwoGroupOptimizer(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1), mixed_precision=True)
    text_vars, other_vars = split_variables(model)
    before = [v.numpy() for v in model.trainable_variables]
    scale = float(optimizer.text.loss_scale)

    def apply(text_value):
        def step():
            grads_text = [tf.fill(v.shape, text_value) for v in text_vars]
            grads_other = [tf.ones(v.shape) for v in other_vars]
            return optimizer.apply(grads_text, text_vars, grads_other, other_vars)
        return strategy.run(tf.function(step))

    assert not math.isfinite(float(apply(float("inf"))))  # only the text group overflows ...
    for variable, old in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(variable.numpy(), old)  # ... and neither group is updated
    assert float(optimizer.text.loss_scale) == float(optimizer.other.loss_scale) == scale / 2
    apply(1.0)
    assert all(np.any(v.numpy() != old) for v, old in zip(model.trainable_variables, before))
