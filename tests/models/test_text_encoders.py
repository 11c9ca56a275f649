"""Text encoders: both input paths, variable tracking, checkpoints and the real from_pretrained path."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from safetensors.numpy import save_file
from transformers import RoFormerConfig, TFRoFormerModel
from transformers.modeling_tf_pytorch_utils import (TransposeType,
                                                    convert_tf_weight_name_to_pt_weight_name)

from models.config import ModelConfig
from models.text_encoders import TextEncoder, build_text_encoder, save_text_encoder

KINDS = ("bert", "roformer")


@pytest.fixture(scope="module")
def batch():
    ids = tf.constant([[2, 10, 11, 12, 3, 0], [2, 20, 3, 0, 0, 0]], tf.int32)
    mask = tf.cast(ids != 0, tf.int32)
    return ids, mask


@pytest.fixture(scope="module", params=KINDS)
def encoder(request):
    return build_text_encoder(ModelConfig.tiny(text_encoder=request.param, dropout=0.0))


def _pytorch_checkpoint(encoder: TextEncoder, directory: str) -> None:
    """Write ``encoder`` the way a PyTorch model is published (names, transposed kernels)."""
    state = {}
    for weight in encoder.hf_model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(
            weight.name, tf_weight_shape=weight.shape)
        value = weight.numpy()
        state[name] = np.ascontiguousarray(value.T if transpose is TransposeType.SIMPLE else value)
    os.makedirs(directory, exist_ok=True)
    save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    encoder.hf_config.save_pretrained(directory)


def test_encoder_outputs_and_structure(encoder, batch):
    ids, mask = batch
    out = encoder.encode_ids(ids, mask)
    assert out["sequence_output"].shape == (2, 6, 32)
    assert out["pooled_output"].shape == (2, 32)
    assert encoder.word_embeddings.shape == (128, encoder.embedding_size)
    assert encoder.trainable_weights and len(encoder.trainable_weights) == len(
        encoder.hf_model.trainable_weights)
    if encoder.kind == "bert":
        assert encoder.has_pooler
        assert not np.allclose(out["pooled_output"].numpy(), out["sequence_output"][:, 0].numpy())
    else:  # RoFormer has no pooler: the [CLS] hidden state
        assert not encoder.has_pooler
        np.testing.assert_array_equal(out["pooled_output"].numpy(),
                                      out["sequence_output"][:, 0].numpy())


def test_inputs_embeds_path_equals_ids_path(encoder, batch):
    ids, mask = batch
    by_ids = encoder.encode_ids(ids, mask)["sequence_output"]
    by_embeds = encoder.encode_embeds(encoder.embed_tokens(ids), mask)["sequence_output"]
    np.testing.assert_allclose(by_embeds.numpy(), by_ids.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        encoder({"attention_mask": mask})
    with pytest.raises(ValueError, match="unexpected inputs"):
        encoder({"input_ids": ids, "labels": ids})


def test_bert_without_pooler_has_no_pooler_variables(batch):
    ids, mask = batch
    config = ModelConfig.tiny(dropout=0.0)
    full = build_text_encoder(config)
    bare = build_text_encoder(config, with_pooler=False)
    assert len(full.trainable_weights) - len(bare.trainable_weights) == 2  # pooler kernel+bias
    assert not any("pooler" in w.name for w in bare.trainable_weights)
    out = bare.encode_ids(ids, mask)
    np.testing.assert_array_equal(out["pooled_output"].numpy(), out["sequence_output"][:, 0].numpy())


def test_outer_model_tracks_and_checkpoints_all_encoder_variables(encoder, batch, tmp_path):
    ids, mask = batch

    class Outer(keras.Model):
        def __init__(self, text_encoder):
            super().__init__()
            self.text_encoder = text_encoder
            self.head = keras.layers.Dense(3)

        def call(self, inputs):
            return self.head(self.text_encoder.encode_ids(*inputs)["pooled_output"])

    outer = Outer(encoder)
    expected = outer((ids, mask)).numpy()
    assert len(outer.trainable_weights) == len(encoder.hf_model.trainable_weights) + 2
    path = tf.train.Checkpoint(model=outer).save(str(tmp_path / "ckpt"))
    saved = {name for name, _ in tf.train.list_variables(path)}
    assert sum("text_encoder" in name for name in saved) >= len(encoder.hf_model.weights)

    fresh = Outer(TextEncoder.from_config(encoder.get_config()))
    fresh((ids, mask))
    assert not np.allclose(fresh((ids, mask)).numpy(), expected)
    status = tf.train.Checkpoint(model=fresh).restore(path)
    status.assert_existing_objects_matched()
    np.testing.assert_allclose(fresh((ids, mask)).numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["tf_h5", "tf_safetensors", "pytorch_safetensors"])
def test_save_and_load_through_from_pretrained(encoder, batch, tmp_path, fmt):
    ids, mask = batch
    directory = str(tmp_path / f"{encoder.kind}_{fmt}")
    if fmt == "pytorch_safetensors":
        _pytorch_checkpoint(encoder, directory)
    else:
        save_text_encoder(encoder, directory, safe_serialization=(fmt == "tf_safetensors"))
    weights_file = "tf_model.h5" if fmt == "tf_h5" else "model.safetensors"
    assert sorted(os.listdir(directory)) == sorted(["config.json", weights_file])
    config = ModelConfig.tiny(text_encoder=encoder.kind, pretrained_text_dir=directory,
                              text_hidden_size=64, text_num_heads=4)  # ignored: from the checkpoint
    loaded = build_text_encoder(config)
    assert loaded.hidden_size == 32
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(loaded.encode_ids(ids, mask)[key].numpy(),
                                   encoder.encode_ids(ids, mask)[key].numpy(), rtol=1e-6, atol=1e-6)


def test_pretrained_roformer_with_narrow_embeddings(batch, tmp_path):
    """A RoFormer whose embeddings (16) are narrower than its hidden size (32)."""
    ids, mask = batch
    hf = TFRoFormerModel(RoFormerConfig(vocab_size=128, embedding_size=16, hidden_size=32,
                                        num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=64, max_position_embeddings=128))
    hf.build_in_name_scope()
    hf.save_pretrained(str(tmp_path / "roformer"))
    encoder = build_text_encoder(ModelConfig.tiny(text_encoder="roformer",
                                                  pretrained_text_dir=str(tmp_path / "roformer")))
    assert (encoder.embedding_size, encoder.hidden_size) == (16, 32)
    out = encoder.encode_embeds(encoder.embed_tokens(ids), mask)["sequence_output"]
    np.testing.assert_allclose(out.numpy(), hf(input_ids=ids, attention_mask=mask)
                               .last_hidden_state.numpy(), rtol=1e-5, atol=1e-5)


def test_pretrained_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        build_text_encoder(ModelConfig.tiny(pretrained_text_dir=str(tmp_path / "missing")))
    bert_dir = str(tmp_path / "bert")
    save_text_encoder(build_text_encoder(ModelConfig.tiny()), bert_dir)
    with pytest.raises(ValueError, match="holds a 'bert' checkpoint but text_encoder is 'roformer'"):
        build_text_encoder(ModelConfig.tiny(text_encoder="roformer", pretrained_text_dir=bert_dir))
    with pytest.raises(ValueError, match="vocab_size 128 but the config"):
        build_text_encoder(ModelConfig.tiny(vocab_size=200, pretrained_text_dir=bert_dir))
    with pytest.raises(ValueError, match="lacks"):
        build_text_encoder({"text_encoder": "bert"})
