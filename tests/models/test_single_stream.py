"""`single_stream` (BERT and RoFormer): sequence layout, tag + MLM + MFM pretraining, the
hand-computed masked-frame NCE, loss weights, training, round trips, the 24-layer config."""
import math

import numpy as np
import pytest
import tensorflow as tf

from models import layers, losses
from models.base import example_features
from models.config import ModelConfig
from models.registry import build_model, finetune_recipe
from models.single_stream import SingleStreamModel
from models.text_encoders import build_text_encoder, text_encoder_hf_config
from tests.models.helpers import (FamilyHarness, check_layer, check_padding_ignored)

TINY = ModelConfig.tiny("single_stream", frame_dim=64, num_tags=50)
M, L = TINY.max_frames, TINY.title_len


@pytest.fixture(scope="module", params=["bert", "roformer"])
def harness(request):
    # the tag head is on [CLS]: the embedding projection is trained by the finetune only
    return FamilyHarness(TINY.replace(text_encoder=request.param), finetune_only=("/embedding/",))


# ----------------------------------------------------------------------------- the family
def test_outputs(harness):
    harness.check_outputs()
    out = harness.model(harness.eval_features, training=False, heads=True)
    assert out["mlm_logits"].shape == (4, L, TINY.vocab_size)
    assert out["mfm_predictions"].shape == (4, M, TINY.frame_dim)
    assert isinstance(harness.model, SingleStreamModel)


def test_text_encoder_variables_are_a_separate_group(harness):
    harness.check_variable_groups()
    model = harness.model
    assert not model.text_encoder.has_pooler
    assert model.text_encoder.word_embeddings.ref() in {
        v.ref() for v in model.text_encoder_variables()}


def test_padded_frames_and_title_padding_change_nothing(harness):
    check_padding_ignored(harness.model, harness.eval_features)
    # ... also for the pretraining heads
    features = dict(harness.eval_features)
    out = harness.model(features, training=False, heads=True)
    pad = 1.0 - features["frame_mask"].numpy()
    features["frames"] = features["frames"] + 5.0 * pad[..., None]
    again = harness.model(features, training=False, heads=True)
    real = features["frame_mask"].numpy() > 0
    np.testing.assert_allclose(again["mfm_predictions"].numpy()[real],
                               out["mfm_predictions"].numpy()[real], rtol=1e-4, atol=1e-4)


def test_sequence_is_cls_frames_sep_title_sep(harness):
    model, features = harness.model, harness.eval_features
    sequence, mask = model.sequence(features)
    assert sequence.shape == (4, M + L + 1, TINY.text_hidden_size)
    text = model.text_encoder.embed_ids(features["input_ids"]).numpy()
    frames = model.frame_embeddings(features["frames"]).numpy()  # M frames + end token
    np.testing.assert_allclose(sequence[:, 0].numpy(), text[:, 0], atol=1e-6)
    np.testing.assert_allclose(sequence[:, 1:M + 2].numpy(), frames, atol=1e-6)
    np.testing.assert_allclose(sequence[:, M + 2:].numpy(), text[:, 1:], atol=1e-6)
    attention, frame_mask = features["attention_mask"].numpy(), features["frame_mask"].numpy()
    expected = np.concatenate([attention[:, :1], frame_mask, np.ones((4, 1)), attention[:, 1:]],
                              axis=1)
    np.testing.assert_array_equal(mask.numpy(), expected)
    # the frames have their own positions: the same frame at two positions embeds differently
    same = np.repeat(features["frames"].numpy()[:1, :1], M, axis=1)
    embedded = model.frame_embeddings(tf.constant(same)).numpy()
    assert not np.allclose(embedded[0, 0], embedded[0, 1])


@pytest.mark.parametrize("kind", ["bert", "roformer"])
def test_embed_ids_then_encode_hidden_is_the_encoder(kind):
    encoder = build_text_encoder(TINY.replace(text_encoder=kind), with_pooler=False)
    features = example_features(TINY, 3)
    ids, mask = features["input_ids"], features["attention_mask"]
    whole = encoder.encode_ids(ids, mask)["sequence_output"]
    halves = encoder.encode_hidden(encoder.embed_ids(ids), mask)
    np.testing.assert_allclose(halves.numpy(), whole.numpy(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- losses
def test_masked_frame_nce_by_hand_two_videos_with_padding():
    """Video A: 3 real frames of 4, B: 2 of 4; frame A1 and B0 masked. Each prediction is
    scored against the 5 real frames of the batch (padding excluded), target its own frame."""
    a = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]]  # A3 is padding (ignored)
    b = [[2.0, 0.0], [0.0, -1.0], [9.0, -9.0], [7.0, 7.0]]  # B2, B3 are padding
    frame_mask = [[1, 1, 1, 0], [1, 1, 0, 0]]
    weights = [[0, 1, 0, 0], [1, 0, 0, 0]]
    predictions = np.full((2, 4, 2), 0.3, np.float32)
    predictions[0, 1] = [1.0, 2.0]  # for A1: dots with A0, A1, A2, B0, B1 = 1, 2, 3, 2, -2
    predictions[1, 0] = [0.5, -1.0]  # for B0: dots = 0.5, -1, -0.5, 1, 1
    loss_a1 = -2.0 + math.log(math.exp(1) + math.exp(2) + math.exp(3) + math.exp(2) + math.exp(-2))
    loss_b0 = -1.0 + math.log(math.exp(0.5) + math.exp(-1) + math.exp(-0.5) + 2 * math.exp(1))
    got = losses.masked_frame_nce(predictions, np.array([a, b], np.float32), weights, frame_mask)
    assert float(got) == pytest.approx((loss_a1 + loss_b0) / 2, rel=1e-6)
    # other padded values change nothing
    other = np.array([a, b], np.float32)
    other[0, 3], other[1, 2:] = [-50.0, 50.0], [[3.0, 3.0], [-4.0, 8.0]]
    again = losses.masked_frame_nce(predictions, other, weights, frame_mask)
    assert float(again) == pytest.approx(float(got), rel=1e-6)


def test_pretrain_losses_are_the_documented_formulas(harness):
    model, features = harness.model, harness.eval_features
    args = model.get_config()
    model.mlm_generator.reset_from_seed(7)
    model.mfm_generator.reset_from_seed(8)
    got = model.pretrain_losses(features, training=False)
    # the same draws, by hand
    model.mlm_generator.reset_from_seed(7)
    model.mfm_generator.reset_from_seed(8)
    masked_ids, labels, token_weights = losses.mask_tokens(
        features["input_ids"], features["attention_mask"], TINY.vocab_size, TINY.mask_token_id,
        TINY.special_token_ids, 0.15, generator=model.mlm_generator)
    frame_weights = losses.mask_frames(features["frame_mask"], 0.15,
                                       generator=model.mfm_generator)
    assert float(tf.reduce_sum(frame_weights)) > 0
    masked_frames = features["frames"] * (1.0 - frame_weights)[..., None]
    out = model(dict(features, input_ids=masked_ids, frames=masked_frames), heads=True)
    expected = {
        "tag": 1250.0 / 3.0 / 50 * losses.tag_bce(features["tags"], out["tag_logits"]),
        "mlm": losses.mlm_loss(labels, out["mlm_logits"], token_weights) / 3.75,
        "mfm": losses.masked_frame_nce(out["mfm_predictions"], features["frames"],
                                       frame_weights, features["frame_mask"]) / 9.0,
    }
    for key, value in expected.items():
        assert float(got[key]) == pytest.approx(float(value), rel=1e-5), key
    assert args["single_stream"]["tag_weight"] == pytest.approx(1250.0 / 3.0)


def test_tag_weight_is_the_published_one_for_either_reduction(harness):
    """Published: tag BCE averaged over tags x 1250/3. Summed over tags (the default) the model
    divides by num_tags, so both reductions give the same loss."""
    model, features = harness.model, harness.eval_features
    mean_model = SingleStreamModel.from_config(dict(model.get_config(), tag_reduction="mean"))
    mean_model(features)
    mean_model.set_weights(model.get_weights())
    assert model.effective_tag_weight() == pytest.approx(1250.0 / 3.0 / 50)
    assert mean_model.effective_tag_weight() == pytest.approx(1250.0 / 3.0)
    for generator_seed, m in [(1, model), (1, mean_model)]:
        m.mlm_generator.reset_from_seed(generator_seed)
        m.mfm_generator.reset_from_seed(generator_seed)
    summed = model.pretrain_losses(features, training=False)["tag"]
    averaged = mean_model.pretrain_losses(features, training=False)["tag"]
    assert float(summed) == pytest.approx(float(averaged), rel=1e-5)
    # at the official 10,000 tags the factor on the summed loss is 1/24
    assert ModelConfig().single_stream_tag_weight / 10000 == pytest.approx(1 / 24)


# ----------------------------------------------------------------------------- layers
def test_frame_embeddings_and_mlp_head_layers():
    frames = tf.random.normal([2, 5, 12])
    embed = layers.FrameEmbeddings(8, max_frames=6, end_token=True, dropout=0.1)
    check_layer(embed, (frames,), (2, 6, 8))
    assert embed.position_embeddings.shape == (7, 8)
    check_layer(layers.MLPHead(12), (tf.random.normal([2, 5, 8]),), (2, 5, 12))
    with pytest.raises(ValueError, match="7 frames but max_frames=6"):
        layers.FrameEmbeddings(8, max_frames=6)(tf.zeros([1, 7, 12]))


# ----------------------------------------------------------------------------- sizes
def test_rotary_positions_must_cover_the_whole_sequence():
    with pytest.raises(ValueError, match="title_len \\+ max_frames \\+ 1 .* = 65"):
        SingleStreamModel.from_model_config(TINY.replace(text_encoder="roformer",
                                                         text_max_position=64))
    # BERT only needs the title's positions (the frames have their own)
    SingleStreamModel.from_model_config(TINY.replace(text_max_position=32))


def test_bert_large_shape_config_and_a_24_layer_checkpoint(tmp_path):
    """The 24 x 1024 configuration (not instantiated: ~330M weights), and the real loading path
    of a 24-layer checkpoint (narrow, so it builds in seconds)."""
    large = ModelConfig.preset("large", "single_stream")
    hf = text_encoder_hf_config(large)
    assert (hf.num_hidden_layers, hf.hidden_size, hf.num_attention_heads,
            hf.intermediate_size, hf.vocab_size) == (24, 1024, 16, 4096, 21128)
    assert ModelConfig.from_json(large.to_json()) == large

    deep = TINY.replace(text_num_layers=24, text_hidden_size=16, text_num_heads=2,
                        text_intermediate_size=16)
    build_text_encoder(deep).save_pretrained(tmp_path / "bert24")
    config = TINY.replace(pretrained_text_dir=str(tmp_path / "bert24"))  # TINY says 1 x 32
    model = build_model(config)
    assert model.text_encoder.hf_config.num_hidden_layers == 24
    assert model.text_encoder.hidden_size == 16
    assert model.frame_embeddings.dense.kernel.shape == (64, 16)
    features = example_features(config, 2)
    assert model(features)["embedding"].shape == (2, 256)
    assert all(np.isfinite(float(v)) for v in model.pretrain_losses(features).values())


def test_finetune_recipe():
    assert finetune_recipe("single_stream") == {"target_transform": "rank",
                                                "finetune_losses": "mse"}


def test_pretrained_roformer_with_narrow_embeddings(tmp_path):
    """RoFormer with 16-wide word embeddings and a 32-wide encoder: `embed_ids` projects to 32,
    the frames are embedded at 32, the tied MLM decoder works at 16."""
    from transformers import RoFormerConfig, TFRoFormerModel

    hf = TFRoFormerModel(RoFormerConfig(vocab_size=128, embedding_size=16, hidden_size=32,
                                        num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=64, max_position_embeddings=128))
    hf.build_in_name_scope()
    hf.save_pretrained(str(tmp_path / "roformer"))
    config = TINY.replace(text_encoder="roformer", pretrained_text_dir=str(tmp_path / "roformer"))
    model = build_model(config)
    features = example_features(config, 2)
    ids, mask = features["input_ids"], features["attention_mask"]
    encoder = model.text_encoder
    assert encoder.embed_ids(ids).shape == (2, L, 32)
    np.testing.assert_allclose(encoder.encode_hidden(encoder.embed_ids(ids), mask).numpy(),
                               encoder.encode_ids(ids, mask)["sequence_output"].numpy(),
                               rtol=1e-5, atol=1e-5)
    assert model.frame_embeddings.dense.kernel.shape == (64, 32)
    assert model(features, heads=True)["mlm_logits"].shape == (2, L, 128)
    assert set(model.pretrain_losses(features)) == {"tag", "mlm", "mfm"}
