"""`baseline`: contract, training, variable groups, checkpoint and config round trips."""
import numpy as np
import pytest

from models.base import example_features
from models.baseline import BaselineModel
from models.config import ModelConfig
from tests.models.helpers import FamilyHarness


@pytest.fixture(scope="module")
def harness():
    return FamilyHarness(ModelConfig.tiny("baseline", frame_dim=64, num_tags=50))


def test_outputs(harness):
    harness.check_outputs()
    assert isinstance(harness.model, BaselineModel)


def test_trains_and_overfits_a_fixed_batch(harness):
    harness.check_losses({"tag"})


def test_text_encoder_variables_are_a_separate_group(harness):
    harness.check_variable_groups()


def test_checkpoint_round_trip(harness, tmp_path):
    harness.check_checkpoint_round_trip(tmp_path)


def test_config_round_trip(harness):
    harness.check_config_round_trip()
    assert harness.model.get_config()["nextvlad_cluster_size"] == 8


def test_padded_frames_and_string_fields_are_ignored(harness):
    features = dict(harness.eval_features)
    out = harness.model(features, training=False)
    noise = np.random.default_rng(0).normal(size=features["frames"].shape).astype(np.float32)
    features["frames"] = features["frames"] + noise * (1 - features["frame_mask"].numpy())[..., None]
    features["title"] = features["title"] + "!"
    np.testing.assert_allclose(harness.model(features, training=False)["embedding"].numpy(),
                               out["embedding"].numpy(), rtol=1e-5, atol=1e-5)


def test_real_frame_dim():
    """The official 1536-d frames (everything else tiny): forward and losses."""
    config = ModelConfig.tiny("baseline", num_tags=50)
    assert config.frame_dim == 1536
    model = BaselineModel.from_model_config(config)
    features = example_features(config, 2)
    assert model(features)["embedding"].shape == (2, 256)
    assert np.isfinite(float(model.pretrain_losses(features)["tag"]))
    assert model.nextvlad.expand.kernel.shape == (1536, 3072)
