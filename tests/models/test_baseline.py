"""`baseline`: contract, training, variable groups, checkpoint and config round trips."""
import numpy as np

from models.base import example_features
from models.baseline import BaselineModel
from models.config import ModelConfig


def test_real_frame_dim():
    """The official 1536-d frames (everything else tiny): forward and losses."""
    config = ModelConfig.tiny("baseline", num_tags=50)
    assert config.frame_dim == 1536
    model = BaselineModel.from_model_config(config)
    features = example_features(config, 2)
    assert model(features)["embedding"].shape == (2, 256)
    assert np.isfinite(float(model.pretrain_losses(features)["tag"]))
    assert model.nextvlad.expand.kernel.shape == (1536, 3072)
