"""`mix_nextvlad`: contract, extra outputs, its four losses, training, round trips."""
import numpy as np
import pytest
import tensorflow as tf

from models import losses
from models.config import ModelConfig
from tests.models.helpers import FamilyHarness


@pytest.fixture(scope="module")
def harness():
    return FamilyHarness(ModelConfig.tiny("mix_nextvlad", frame_dim=64, num_tags=50))


def test_outputs(harness):
    out = harness.check_outputs({"expert_tag_logits": (4, 3, 50), "gate_weights": (4, 3),
                                 "video_embedding": (4, 256), "text_embedding": (4, 256)})
    np.testing.assert_allclose(out["gate_weights"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_trains_and_overfits_a_fixed_batch(harness):
    harness.check_losses({"tag", "expert_tag", "kl", "infonce"})
    # the modalities get aligned before fusion
    assert harness.history[-1]["infonce"] < 0.5 * harness.history[0]["infonce"]


def test_losses_are_the_documented_formulas(harness):
    weights = dict(tag_weight=0.5, expert_tag_weight=2.0, kl_weight=3.0, infonce_weight=4.0)
    model = type(harness.model).from_config(dict(harness.model.get_config(), **weights))
    features = harness.eval_features
    model(features)
    model.set_weights(harness.model.get_weights())
    got = model.pretrain_losses(features, training=False)
    out = model(features, training=False)
    tags = features["tags"]
    experts = out["expert_tag_logits"]
    expected = {
        "tag": 0.5 * losses.tag_bce(tags, out["tag_logits"]),
        "expert_tag": 2.0 * np.mean([losses.tag_bce(tags, experts[:, e]) for e in range(3)]),
        "kl": 3.0 * np.mean([losses.kl_divergence(out["tag_logits"], experts[:, e], 2.0)
                             for e in range(3)]),
        "infonce": 4.0 * losses.info_nce(out["video_embedding"], out["text_embedding"], 0.07),
    }
    for key, value in expected.items():
        assert float(got[key]) == pytest.approx(float(value), rel=1e-5), key


def test_kl_teaches_experts_not_the_mixture(harness):
    model, features = harness.model, harness.eval_features
    with tf.GradientTape() as tape:
        kl = model.pretrain_losses(features, training=False)["kl"]
    grads = tape.gradient(kl, [model.tag_head.kernel, model.expert_tag_heads[0].kernel])
    assert grads[0] is None and grads[1] is not None
