"""The training loop on a minimal contract model: NaN guard, exact resume, XLA, mixed precision, the input iterator."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from train import randomness
from train.config import TrainConfig
from train.loop import LOG_FILE, NonFiniteLossError, Trainer, input_options


class ContractModel(keras.Model):
    """Smallest model of the contract: a 'text encoder' Dense, dropout, an embedding head."""

    def __init__(self):
        super().__init__()
        self.text_encoder = keras.layers.Dense(8, name="text")
        self.drop = keras.layers.Dropout(0.5)
        self.head = keras.layers.Dense(4, name="head")

    def call(self, features, training=False):
        hidden = self.drop(self.text_encoder(features["x"]), training=training)
        return {"embedding": tf.cast(self.head(hidden), tf.float32)}

    def pretrain_losses(self, features, training=True):
        embedding = self(features, training=training)["embedding"]
        return {"l2": tf.reduce_mean(tf.square(embedding - 1.0)) + features["poison"][0]}

    def text_encoder_variables(self):
        return self.text_encoder.trainable_variables

    def restore_targets(self):
        return {"model": self}


def _dataset(poison_from: int | None = None):
    """Step ``s`` reads batch ``s``; ``poison`` is NaN from step ``poison_from`` (0-based) on."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)

    def dataset_fn(start, context):
        steps = tf.data.Dataset.range(start, 10_000)

        def batch(step):
            rows = tf.math.floormod(step * 4 + tf.range(4, dtype=tf.int64), 64)
            bad = tf.constant(False) if poison_from is None else step >= poison_from
            poison = tf.where(bad, float("nan"), 0.0) * tf.ones([4])
            return {"x": tf.gather(x, rows), "poison": poison}

        return steps.map(batch)

    return dataset_fn, {"x": tf.constant(x[:2]), "poison": tf.zeros([2])}


def _train(run_dir, total_steps, poison_from=None, **overrides):
    steps_per_epoch = overrides.pop("steps_per_epoch", 2)
    config = TrainConfig(batch_size=4, lr_other=1e-2, lr_text=1e-2, warmup_steps=1, progress=False, seed=7,
                         log_every_steps=overrides.pop("log_every_steps", 1),
                         checkpoint_every_steps=overrides.pop("checkpoint_every_steps", 1), **overrides)
    randomness.seed_everything(config.seed)
    keras.mixed_precision.set_global_policy("mixed_float16" if config.mixed_precision else "float32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    dataset_fn, build_batch = _dataset(poison_from)
    with strategy.scope():
        model = ContractModel()
        model(build_batch)
        trainer = Trainer(config=config, strategy=strategy, model=model, loss_fn=lambda m, b, training: m.pretrain_losses(b, training),
                          run_dir=str(run_dir), dataset_fn=dataset_fn, build_batch=build_batch,
                          total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    return trainer, trainer.run()


def test_non_finite_loss_stops_naming_the_step_and_saves_nothing_of_it(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3 .*last checkpoint \(step 2\)") as caught:
        _train(tmp_path, total_steps=6, poison_from=2)
    assert caught.value.step == 3
    latest = tf.train.latest_checkpoint(tmp_path / "ckpt")
    assert latest.endswith("ckpt-2")
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name
    assert not (tmp_path / "final").exists()


def test_resume_in_process_is_exact_with_dropout(tmp_path):
    whole, values = _train(tmp_path / "whole", total_steps=6)
    # a crash at step 4 (a NaN loss) after the checkpoint of step 3; then the same command again
    with pytest.raises(NonFiniteLossError, match="step 4"):
        _train(tmp_path / "parts", total_steps=6, poison_from=3, checkpoint_every_steps=3)
    assert tf.train.latest_checkpoint(tmp_path / "parts" / "ckpt").endswith("ckpt-3")
    resumed, resumed_values = _train(tmp_path / "parts", total_steps=6, checkpoint_every_steps=3)
    for a, b in zip(whole.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert resumed_values == values
    log = [json.loads(line) for line in (tmp_path / "parts" / LOG_FILE).read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3, 4, 5, 6]  # steps 4-6 logged once, not twice
    # without the per-step generator reset the resumed steps would replay the first dropout masks
    assert len(resumed.randomness.generators) == 1


@pytest.mark.parametrize("switch", ["xla", "mixed_precision"])
def test_xla_and_mixed_precision_switches_train(tmp_path, switch):
    trainer, values = _train(tmp_path, total_steps=3, **{switch: True})
    assert np.isfinite(values["loss"])
    if switch == "mixed_precision":
        assert trainer.model.head.compute_dtype == "float16"
        assert float(trainer.optimizer.other.loss_scale) > 1.0
    assert tf.train.latest_checkpoint(tmp_path / "final") is not None


def test_several_steps_per_loop_are_bit_identical_and_still_name_the_bad_step(tmp_path, monkeypatch):
    every = dict(log_every_steps=4, checkpoint_every_steps=4, steps_per_epoch=8)
    one, values = _train(tmp_path / "one", total_steps=12, **every)
    calls = []
    original = Trainer.train_steps
    monkeypatch.setattr(Trainer, "train_steps", lambda self, it, n: calls.append(n) or original(self, it, n))
    many, many_values = _train(tmp_path / "many", total_steps=12, steps_per_loop=3, **every)
    assert calls == [3, 1, 3, 1, 3, 1]  # 3 steps a loop, cut where the host logs / checkpoints (every 4)
    for a, b in zip(one.model.weights, many.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert many_values == values
    logged = [json.loads(line)["step"] for line in (tmp_path / "many" / LOG_FILE).read_text().splitlines()]
    assert logged == [4, 8, 12]
    # a NaN at step 7, found in the graph in the middle of a loop: the error names step 7, and the
    # checkpoint of step 4 is the last one
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 7 .*last checkpoint \(step 4\)"):
        _train(tmp_path / "parts", total_steps=12, poison_from=6, steps_per_loop=4, **every)
    # the same command without the NaN resumes from step 4, with yet another steps_per_loop: the
    # weights are those of one step at a time
    resumed, resumed_values = _train(tmp_path / "parts", total_steps=12, steps_per_loop=2, **every)
    for a, b in zip(one.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert resumed_values == values


def test_one_cpu_replica_reads_through_a_plain_iterator_and_others_keep_the_default():
    options = input_options(tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert options.experimental_fetch_to_device is False
    assert options.experimental_replication_mode == tf.distribute.InputReplicationMode.PER_REPLICA

    def fake(replicas, *devices):
        return SimpleNamespace(num_replicas_in_sync=replicas, extended=SimpleNamespace(worker_devices=devices))
    assert input_options(fake(2, "/job:localhost/replica:0/task:0/device:CPU:0")) is None  # two workers
    assert input_options(fake(2, "/device:GPU:0", "/device:GPU:1")) is None
    assert input_options(fake(1, "/job:localhost/replica:0/task:0/device:GPU:0")) is None


def test_the_plain_iterator_gives_the_batches_of_the_default_one(tmp_path):
    trainer, _ = _train(tmp_path, total_steps=2)
    # no autotuning thread whose end the run's last step would wait for (input_options)
    assert trainer.training_dataset(3).options().autotune.enabled is False
    plain = trainer.iterator(start_step=3)
    assert "MultiDevice" not in type(plain._iterators[0]._iterator).__name__
    default = iter(trainer.strategy.distribute_datasets_from_function(lambda context: trainer.dataset_fn(3, context)))
    assert "MultiDevice" in type(default._iterators[0]._iterator).__name__
    dataset_fn, _ = _dataset()
    expected = iter(dataset_fn(3, None))
    for _ in range(3):
        a, b, want = next(plain), next(default), next(expected)
        for key in want:
            np.testing.assert_array_equal(a[key].numpy(), want[key].numpy())
            np.testing.assert_array_equal(b[key].numpy(), want[key].numpy())
