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
