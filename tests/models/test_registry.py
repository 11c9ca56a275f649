"""Registry: names, build_model, register, the six variants; mixed precision on the families."""
import numpy as np
import pytest

from models import registry
from models.base import VideoSimModel, example_features
from models.baseline import BaselineModel
from models.config import ModelConfig

TINY = dict(frame_dim=64, num_tags=50)
EXPECTED_LOSSES = {"baseline": {"tag"}, "mix_nextvlad": {"tag", "expert_tag", "kl", "infonce"},
                   "uniter": {"tag", "mlm"}}


def test_models_and_unknown_name():
    assert set(registry.MODELS) >= {"baseline", "mix_nextvlad", "uniter"}
    with pytest.raises(ValueError, match="unknown model name 'nope'; available: .*'baseline'"):
        registry.build_model(ModelConfig.tiny("nope", **TINY))


def test_build_model_creates_variables_unless_asked_not_to():
    config = ModelConfig.tiny("baseline", **TINY)
    built = registry.build_model(config)
    assert isinstance(built, BaselineModel) and built.built
    lazy = registry.build_model(config, build=False)
    # only the text encoder exists before the first call
    assert len(lazy.trainable_variables) == len(lazy.text_encoder_variables())
    assert len(built.trainable_variables) > len(built.text_encoder_variables())


def test_register_decorator_and_clash():
    @registry.register("test_only_baseline_copy")
    class Copy(BaselineModel):
        pass

    try:
        model = registry.build_model(ModelConfig.tiny("test_only_baseline_copy", **TINY))
        assert type(model) is Copy
        with pytest.raises(ValueError, match="already registered"):
            registry.register("baseline")(Copy)
        with pytest.raises(TypeError, match="VideoSimModel"):
            registry.register("not_a_model")(object)
    finally:
        registry.MODELS.pop("test_only_baseline_copy")


@pytest.mark.parametrize("variant", sorted(registry.VARIANTS))
def test_every_variant_builds_and_gives_its_losses(variant):
    config = registry.variant_config(variant, ModelConfig.tiny(**TINY))
    family, overrides = registry.VARIANTS[variant]
    assert config.name == family and all(getattr(config, k) == v for k, v in overrides.items())
    model = registry.build_model(config)
    assert isinstance(model, VideoSimModel)
    assert model.text_encoder.kind == config.text_encoder
    got = model.pretrain_losses(example_features(config, 4))
    assert set(got) == EXPECTED_LOSSES[family]
    assert all(np.isfinite(float(v)) for v in got.values())


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant 'mix_xl'"):
        registry.variant_config("mix_xl", ModelConfig.tiny())


_TWO_REPLICAS = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tf_keras as keras
from models.base import example_features
from models.config import ModelConfig
from models.registry import build_model
from tests.models.helpers import make_train_step

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
result = {"replicas": strategy.num_replicas_in_sync}
for name in ("uniter",):
    config = ModelConfig.tiny(name, frame_dim=64, num_tags=50)
    with strategy.scope():
        model = build_model(config)
        optimizer = keras.optimizers.Adam(1e-3)
    step = make_train_step(model, strategy, optimizer)
    data = tf.data.Dataset.from_tensors(example_features(config, 8)).repeat()
    batches = iter(strategy.experimental_distribute_dataset(data))
    history = [{k: float(v) for k, v in step(next(batches)).items()} for _ in range(2)]
    in_sync = all(
        all(np.array_equal(c.numpy(), v.values[0].numpy()) for c in v.values[1:])
        for v in model.trainable_variables)
    result[name] = {"history": history, "in_sync": in_sync,
                    "mirrored": all(len(v.values) == 2 for v in model.trainable_variables)}
print("RESULT " + json.dumps(result))
"""


def test_two_replica_mirrored_training_in_a_subprocess():
    """uniter (text encoder, frames, MLM generator) on two logical CPUs: a fresh process, as
    devices are fixed once TensorFlow starts. Variables are mirrored and stay in sync."""
    import json
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", _TWO_REPLICAS], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2
    for name in ("uniter",):
        assert result[name]["mirrored"] and result[name]["in_sync"]
        history = result[name]["history"]
        assert all(np.isfinite(v) for row in history for v in row.values())
        assert history[-1]["tag"] < history[0]["tag"]
