"""`uniter` with BERT, with RoFormer, and with ASL: contract, MLM, training, round trips."""
import numpy as np
import pytest
import tensorflow as tf

from transformers import RoFormerConfig, TFRoFormerModel

from models.base import example_features
from models.config import ModelConfig
from models.registry import VARIANTS, build_model, variant_config
from models.text_encoders import build_text_encoder, save_text_encoder
from models.uniter import UniterModel
from tests.models.helpers import FamilyHarness

TINY = ModelConfig.tiny("uniter", frame_dim=64, num_tags=50)


@pytest.fixture(scope="module", params=["uniter", "uniter_roformer", "uniter_asl"])
def harness(request):
    return FamilyHarness(variant_config(request.param, TINY))


def test_outputs(harness):
    harness.check_outputs()
    out = harness.model(harness.eval_features, training=False, mlm=True)
    assert out["mlm_logits"].shape == (4, TINY.title_len, TINY.vocab_size)


def test_text_encoder_variables_are_a_separate_group(harness):
    harness.check_variable_groups()
    # the tied MLM decoder is the text encoder's own word-embedding matrix
    model = harness.model
    assert model.text_encoder.word_embeddings.ref() in {
        v.ref() for v in model.text_encoder_variables()}
    assert not model.text_encoder.has_pooler


def test_mlm_decoder_is_tied_and_masks_only_title_tokens(harness):
    model = harness.model
    features = harness.eval_features
    out = model(features, training=False, mlm=True)
    hidden = model.text_encoder.encode_embeds(
        tf.concat([model.text_encoder.embed_tokens(features["input_ids"]),
                   model.frame_projection(features["frames"])], axis=1),
        tf.concat([features["attention_mask"], tf.cast(features["frame_mask"], tf.int32)], 1),
    )["sequence_output"][:, :TINY.title_len]
    expected = model.mlm_head(hidden, model.text_encoder.word_embeddings)
    np.testing.assert_allclose(out["mlm_logits"].numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    # the masking draws from the model's own generator: reseeding reproduces the loss
    model.mlm_generator.reset_from_seed(3)
    first = model.pretrain_losses(features, training=False)["mlm"]
    model.mlm_generator.reset_from_seed(3)
    assert float(model.pretrain_losses(features, training=False)["mlm"]) == float(first)


def test_frames_are_part_of_the_sequence(harness):
    features = dict(harness.eval_features)
    out = harness.model(features, training=False)
    noise = np.random.default_rng(3).normal(size=features["frames"].shape).astype(np.float32)
    features["frames"] = features["frames"] + noise * features["frame_mask"].numpy()[..., None]  # real frames only
    changed = harness.model(features, training=False)
    assert not np.allclose(changed["embedding"].numpy(), out["embedding"].numpy())


def test_cross_view_loss_is_infonce_of_the_text_alone_against_the_frames_alone(harness):
    config = harness.model.model_config
    config = config.replace(uniter=config.uniter.replace(cross_view_weight=0.5, cross_view_temperature=0.2))
    model = build_model(config)
    features = example_features(config, batch_size=4)
    terms = model.pretrain_losses(features, training=False)
    assert set(terms) == {"tag", "mlm", "cross_view"}
    text_only, frames_only = (x.numpy() for x in model.single_view_embeddings(features))
    # each view reads only its own modality ...
    moved = dict(features, frames=features["frames"] + 1.0, input_ids=tf.reverse(features["input_ids"], [0]),
                 attention_mask=tf.reverse(features["attention_mask"], [0]))
    moved_text, moved_frames = (x.numpy() for x in model.single_view_embeddings(moved))
    np.testing.assert_allclose(moved_text, text_only[::-1], atol=1e-5)
    assert not np.allclose(moved_frames, frames_only, atol=1e-3)
    # ... at the positions it has in the full sequence: the frames alone are the full sequence's
    # frames with the text masked out
    standardized = model.standardized(features)
    words = model.text_encoder.embed_tokens(features["input_ids"])
    frames = model.frame_projection(standardized["frames"])
    frame_mask = tf.cast(features["frame_mask"] > 0, tf.int32)
    mask = tf.concat([tf.zeros_like(features["attention_mask"], tf.int32), frame_mask], axis=1)
    hidden = model.text_encoder.encode_embeds(tf.concat([words, frames], 1), mask)["sequence_output"]
    expected = model.embedding_projection(model.pool(hidden[:, config.title_len:], mask=frame_mask))
    np.testing.assert_allclose(frames_only, expected.numpy(), atol=1e-4)
    # the term is the symmetric InfoNCE at the configured temperature, times its weight
    a = text_only / np.linalg.norm(text_only, axis=1, keepdims=True)
    b = frames_only / np.linalg.norm(frames_only, axis=1, keepdims=True)
    logits = a @ b.T / 0.2

    def cross_entropy(x):
        x = x - x.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(x).sum(axis=1)) - np.diag(x))
    expected_loss = 0.5 * 0.5 * (cross_entropy(logits) + cross_entropy(logits.T))
    np.testing.assert_allclose(float(terms["cross_view"]), expected_loss, rtol=1e-4)
    # off by default: no extra passes, no extra term
    assert set(harness.model.pretrain_losses(features, training=False)) == {"tag", "mlm"}


def test_cross_view_weights_are_checked():
    with pytest.raises(ValueError, match="cross_view_temperature must be > 0"):
        TINY.replace(uniter=TINY.uniter.replace(cross_view_temperature=0.0))
    with pytest.raises(ValueError, match="cross_view_weight must be >= 0"):
        TINY.replace(uniter=TINY.uniter.replace(cross_view_weight=-1.0))


def test_sequence_longer_than_positions_is_an_error():
    with pytest.raises(ValueError, match="title_len \\+ max_frames = 64"):
        UniterModel.from_model_config(TINY.replace(text_max_position=48))


def test_variants_are_the_six_ensemble_models():
    assert set(VARIANTS) == {"mix", "mix_asl", "mix_roformer", "uniter", "uniter_asl",
                             "uniter_roformer"}
    assert variant_config("uniter_asl", TINY).tag_loss == "asl"
    assert variant_config("mix_roformer", TINY).name == "mix_nextvlad"


def test_starts_from_a_pretrained_bert_checkpoint(tmp_path):
    source = build_text_encoder(TINY)
    save_text_encoder(source, tmp_path / "bert")
    model = build_model(TINY.replace(pretrained_text_dir=str(tmp_path / "bert")))
    np.testing.assert_array_equal(model.text_encoder.word_embeddings.numpy(),
                                  source.word_embeddings.numpy())


def test_pretrained_roformer_with_narrow_embeddings(tmp_path):
    """Frames are projected to the embedding width (16), the encoder works at 32."""
    hf = TFRoFormerModel(RoFormerConfig(vocab_size=128, embedding_size=16, hidden_size=32,
                                        num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=64, max_position_embeddings=128))
    hf.build_in_name_scope()
    hf.save_pretrained(str(tmp_path / "roformer"))
    config = TINY.replace(text_encoder="roformer", pretrained_text_dir=str(tmp_path / "roformer"))
    model = build_model(config)
    assert model.frame_projection.dense.kernel.shape == (64, 16)
    features = example_features(config, 2)
    assert model(features, mlm=True)["mlm_logits"].shape == (2, 32, 128)
    assert set(model.pretrain_losses(features)) == {"tag", "mlm"}
