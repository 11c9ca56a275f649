"""`cross_modal`: transformer blocks (self and cross attention, masks), the family's outputs
and losses, training, padding, round trips, mixed precision."""
import numpy as np
import pytest
import tensorflow as tf

from models import layers, losses
from models.config import ModelConfig
from models.cross_modal import CrossModalModel
from models.registry import finetune_recipe
from tests.models.helpers import (FamilyHarness, check_layer, check_padding_ignored)

TINY = ModelConfig.tiny("cross_modal", frame_dim=64, num_tags=50, fusion_num_layers=2)
EXTRA = {"video_embedding": (4, 256), "text_embedding": (4, 256)}


@pytest.fixture(scope="module")
def harness():
    return FamilyHarness(TINY)


# ----------------------------------------------------------------------------- layers
def test_transformer_block_self_and_cross_attention():
    x, context = tf.random.normal([2, 5, 8]), tf.random.normal([2, 3, 8])
    mask = tf.constant([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    context_mask = tf.constant([[1, 1, 0], [1, 0, 0]])
    block = layers.TransformerBlock(8, 2, 16, dropout=0.1)
    check_layer(block, (x,), (2, 5, 8), kwargs={"padding_mask": mask})
    check_layer(layers.TransformerBlock(8, 2, 16), (x,), (2, 5, 8),
                kwargs={"padding_mask": mask, "context": context,
                        "context_padding_mask": context_mask})
    # masked keys never contribute, neither in self- nor in cross-attention
    noise = tf.random.normal([2, 5, 8]) * (1.0 - tf.cast(mask, tf.float32))[..., None]
    out = block(x, padding_mask=mask)
    again = block(x + noise, padding_mask=mask)
    real = mask.numpy() == 1
    np.testing.assert_allclose(again.numpy()[real], out.numpy()[real], atol=1e-5)
    cross = block(x, padding_mask=mask, context=context, context_padding_mask=context_mask)
    context_noise = tf.random.normal([2, 3, 8]) * (
        1.0 - tf.cast(context_mask, tf.float32))[..., None]
    cross_again = block(x, padding_mask=mask, context=context + context_noise,
                        context_padding_mask=context_mask)
    np.testing.assert_allclose(cross_again.numpy(), cross.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        layers.TransformerBlock(10, 3, 16)


# ----------------------------------------------------------------------------- the family
def test_outputs(harness):
    harness.check_outputs(EXTRA)
    model = harness.model
    assert isinstance(model, CrossModalModel)
    assert len(model.video_layers) == 1 and len(model.video_to_text) == 2


def test_trains_and_overfits_a_fixed_batch(harness):
    harness.check_losses({"tag", "infonce"})
    assert harness.history[-1]["infonce"] < harness.history[0]["infonce"]


def test_losses_are_the_documented_formulas(harness):
    model = CrossModalModel.from_config(dict(harness.model.get_config(), tag_weight=0.5,
                                             cross_modal_infonce_weight=3.0))
    features = harness.eval_features
    model(features)
    model.set_weights(harness.model.get_weights())
    got = model.pretrain_losses(features, training=False)
    out = model(features)
    assert float(got["tag"]) == pytest.approx(
        0.5 * float(losses.tag_bce(features["tags"], out["tag_logits"])), rel=1e-5)
    assert float(got["infonce"]) == pytest.approx(
        3.0 * float(losses.info_nce(out["video_embedding"], out["text_embedding"], 0.07)),
        rel=1e-5)
    off = CrossModalModel.from_config(dict(model.get_config(), cross_modal_infonce_weight=0.0))
    assert float(off.pretrain_losses(features)["infonce"]) == 0.0


def test_padded_frames_and_title_padding_change_nothing(harness):
    check_padding_ignored(harness.model, harness.eval_features,
                          keys=("embedding", "tag_logits", "video_embedding", "text_embedding"))


def test_fusion_mixes_the_modalities(harness):
    """After fusion the text stream depends on the frames (and the video stream on the title),
    while the pre-fusion text vector does not."""
    model, features = harness.model, dict(harness.eval_features)
    out = model(features)
    changed = model(dict(features, frames=features["frames"] * 2.0 + 1.0))
    np.testing.assert_allclose(changed["text_embedding"].numpy(), out["text_embedding"].numpy(),
                               atol=1e-5)
    assert not np.allclose(changed["embedding"].numpy(), out["embedding"].numpy(), atol=1e-4)


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="video_hidden_size \\(30\\) must be divisible by "
                                         "video_num_heads \\(4\\)"):
        TINY.replace(video_hidden_size=30, video_num_heads=4)
    with pytest.raises(ValueError, match="fusion_num_layers must be > 0"):
        TINY.replace(fusion_num_layers=0)


def test_finetune_recipe():
    assert finetune_recipe("cross_modal") == {"finetune_losses": "tag+mse+mae",
                                              "target_transform": "sigmoid"}
