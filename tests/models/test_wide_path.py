"""Every family takes the wide path (`models.layers.WidePath`): zero until fitted, then added to
the L2-normalised embedding, with only its gate trainable."""
import numpy as np
import pytest

from models.base import example_features
from models.config import ModelConfig
from models.registry import MODELS, build_model


@pytest.mark.parametrize("family", sorted(MODELS))
def test_every_family_adds_the_wide_path(family):
    config = ModelConfig.tiny(family, num_tags=8, **{"wide.enabled": True, "wide.frame_width": 4,
                                                     "wide.text_width": 2})
    model = build_model(config)
    features = example_features(config)
    before = model(features)["embedding"].numpy()
    np.testing.assert_allclose(np.linalg.norm(before, axis=1), 1.0, atol=1e-5)  # unfitted: adds zeros
    path = model.wide_path
    assert path in model.layers and [v.name.split("/")[-1] for v in path.trainable_variables] == ["gate:0"]
    rng = np.random.default_rng(0)
    path.frame_kernel.assign(rng.normal(size=path.frame_kernel.shape))
    path.part_weights.assign([1.0, 0.0, 0.0])
    path.metric.assign(rng.normal(size=path.metric.shape))
    after = model(features)["embedding"].numpy()
    wide = path(model.standardized(features)["frames"], features["frame_mask"], features["input_ids"],
                features["attention_mask"]).numpy()
    np.testing.assert_allclose(after, before + wide, atol=1e-4)
    assert type(model).from_config(model.get_config()).wide_path is not None
    assert build_model(ModelConfig.tiny(family, num_tags=8)).wide_path is None


def test_a_model_builds_the_frames_through_the_tags_part_when_asked():
    config = ModelConfig.tiny("uniter", num_tags=8, **{"wide.enabled": True, "wide.frame_width": 4,
                                                       "wide.text_width": 2, "wide.frame_tags_width": 3})
    model = build_model(config)
    model(example_features(config))
    path = model.wide_path
    assert path.frame_tags_kernel.shape == (config.frame_dim, 3) and path.part_weights.shape == (4,)
    assert path.metric.shape == (4 + 2 * 2 + 3, config.embedding_dim)
    assert type(model).from_config(model.get_config()).wide_path.frame_tags_width == 3
    plain = build_model(ModelConfig.tiny("uniter", num_tags=8, **{"wide.enabled": True}))
    plain(example_features(plain.model_config))
    assert not hasattr(plain.wide_path, "frame_tags_kernel") and plain.wide_path.part_weights.shape == (3,)
