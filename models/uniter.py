"""`uniter`: one encoder over title tokens and frames (team 618 of CIKM 2021).

Sequence = [word embeddings of the title tokens ; frames projected to the encoder's embedding
width (Dense + LayerNorm)], attention mask = [title mask ; frame mask], fed to the text encoder
as ``inputs_embeds``: BERT then adds its position and token-type embeddings over the whole
sequence, RoFormer its token-type embeddings and rotary positions inside attention. The encoder
output is mean pooled over the real positions -> Dense -> 256-d embedding; a tag head sits on
the embedding.

Pretraining (one forward pass on the masked input): ``mlm`` — 15% of the real, non-special title
tokens are chosen (80% -> [MASK], 10% random, 10% kept) and predicted by a BERT-style head whose
decoder is the word-embedding matrix (+ bias); ``tag`` — the tag loss of the tag head.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from models import layers, losses
from models.base import VideoSimModel, float32_outputs
from models.config import ModelConfig
from models.text_encoders import build_text_encoder


class UniterModel(VideoSimModel):
    """Single-stream title+frames encoder with tied MLM and tag pretraining."""

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        config = self.model_config
        self.tag_weight, self.mlm_weight = self.tag_loss_config.weight, config.uniter.mlm_weight
        # the pooler is unused here: without it every encoder variable gets a gradient
        self.text_encoder = build_text_encoder(config, with_pooler=False, name="text_encoder")
        length = config.title_len + config.max_frames
        if self.text_encoder.max_position < length:
            raise ValueError(
                f"uniter: the text encoder has {self.text_encoder.max_position} positions "
                f"(text.max_position or the checkpoint's max_position_embeddings) but title_len "
                f"+ max_frames = {length}")
        width = self.text_encoder.embedding_size
        self.frame_projection = layers.FrameProjection(width, name="frame_projection")
        self.pool = layers.MaskedMeanPooling(name="mean_pool")
        self.embedding_projection = keras.layers.Dense(config.embedding_dim, name="embedding")
        self.tag_head = self._tag_head()
        self.mlm_head = layers.TiedMLMHead(self.text_encoder.vocab_size, width, name="mlm_head")
        # built now: a plain call (mlm=False) never reaches it, yet build_model promises that
        # one call creates every variable (optimizer slots, checkpoints)
        self.mlm_head.build(tf.TensorShape([None, None, self.text_encoder.hidden_size]))
        # MLM masks come from a generator the model owns (its state is checkpointed, and the
        # trainer can reset it per step, so a resumed run draws the same masks)
        self.mlm_generator = tf.random.Generator.from_non_deterministic_state()

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False,
             mlm: bool = False) -> dict[str, tf.Tensor]:
        """``mlm=True`` adds "mlm_logits" [B, title_len, vocab] (title positions)."""
        features = self.standardized(features)
        input_ids = features["input_ids"]
        frames = self.frame_projection(features["frames"])
        words = tf.cast(self.text_encoder.embed_tokens(input_ids), frames.dtype)
        mask = tf.concat([tf.cast(features["attention_mask"], tf.int32),
                          tf.cast(features["frame_mask"] > 0, tf.int32)], axis=1)
        hidden = self.text_encoder.encode_embeds(tf.concat([words, frames], axis=1), mask,
                                                training=training)["sequence_output"]
        embedding = self.with_frame_path(features, self.embedding_projection(self.pool(hidden, mask=mask)))
        outputs = {"embedding": embedding, "tag_logits": self.tag_head(embedding)}
        if mlm:
            title_hidden = hidden[:, :tf.shape(input_ids)[1]]
            outputs["mlm_logits"] = self.mlm_head(title_hidden, self.text_encoder.word_embeddings)
        return float32_outputs(outputs)

    def pretrain_losses(self, features: Mapping[str, tf.Tensor],
                        training: bool = True) -> dict[str, tf.Tensor]:
        text = self.text_config
        masked_ids, labels, weights = losses.mask_tokens(
            features["input_ids"], features["attention_mask"], self.text_encoder.vocab_size,
            text.mask_token_id, text.special_token_ids, text.mlm_probability, generator=self.mlm_generator)
        masked = dict(features, input_ids=masked_ids)
        out = self(masked, training=training, mlm=True)
        return {
            "tag": self.tag_weight * self._tag_loss(features["tags"], out["tag_logits"]),
            "mlm": self.mlm_weight * losses.mlm_loss(labels, out["mlm_logits"], weights),
        }
