"""`clip`: each tower reads one modality (the shared contract checks are in test_contract.py)."""
import numpy as np

from models.clip import ClipModel
from models.config import ModelConfig
from tests.models.helpers import FamilyHarness

TINY = ModelConfig.tiny("clip", frame_dim=64, num_tags=50)


def test_towers_read_one_modality_each():
    harness = FamilyHarness(TINY)
    harness.check_outputs({"video_embedding": (4, TINY.embedding_dim), "text_embedding": (4, TINY.embedding_dim)})
    model, features = harness.model, dict(harness.eval_features)
    assert isinstance(model, ClipModel)
    out = model(features)
    other_title = dict(features, input_ids=features["input_ids"][::-1], attention_mask=features["attention_mask"][::-1])
    changed = model(other_title)
    np.testing.assert_allclose(out["video_embedding"].numpy(), changed["video_embedding"].numpy(), atol=1e-5)
    assert not np.allclose(out["text_embedding"].numpy(), changed["text_embedding"].numpy(), atol=1e-4)


def test_trains_with_infonce_and_tag_losses():
    FamilyHarness(TINY).check_losses({"infonce", "tag"})
