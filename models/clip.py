"""`clip`: a CLIP-style two-tower model whose video and text vectors share one space.

Video tower: masked mean of the (standardised) frames -> BatchNorm -> Dense(4 x the text width,
gelu) -> dropout -> Dense(``embedding_dim``) = ``video_embedding`` (frames only). Text tower: the text
encoder's token states mean-pooled over the attention mask -> Dense(gelu) -> dropout ->
Dense(``embedding_dim``) = ``text_embedding`` (title only). ``embedding`` (the similarity vector
of the model contract) is the sum of the two L2-normalised tower vectors; ``tag_logits`` a tag
head on it.

Pretraining losses: symmetric in-batch InfoNCE between ``video_embedding`` and ``text_embedding``
(τ = ``infonce_temperature``) plus the tag loss on the fused vector (times ``tags.weight``; 0.05
in the measured run). It exists for text -> video search (``search.query --text``): a title
query's ``text_embedding`` against an index of ``video_embedding``; mix_nextvlad carries the same
pair of outputs, trained jointly with its tag and KL losses.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from models import losses
from models.base import VideoSimModel, float32_outputs
from models.layers import MaskedMeanPooling
from models.text_encoders import build_text_encoder


class ClipModel(VideoSimModel):
    """Two towers (mean frames / mean title tokens) aligned by symmetric InfoNCE.

    Reads the shared sections of `ModelConfig` only (text encoder, tag loss, ``embedding_dim``,
    ``dropout``, ``infonce_temperature``); the towers' hidden width is 4 x the text encoder's.
    """

    def __init__(self, config=None, **kwargs: Any):
        super().__init__(config, **kwargs)
        config = self.model_config
        self.tag_weight = self.tag_loss_config.weight
        self.infonce_temperature = config.infonce_temperature
        hidden = 4 * config.text.hidden_size
        # the pooler is unused here: without it every encoder variable gets a gradient
        self.text_encoder = build_text_encoder(config, with_pooler=False, name="text_encoder")
        self.frame_pool = MaskedMeanPooling(name="mean_frame")
        self.token_pool = MaskedMeanPooling(name="mean_token")
        self.frame_norm = keras.layers.BatchNormalization(name="frame_norm")
        self.video_hidden = keras.layers.Dense(hidden, activation="gelu", name="video_hidden")
        self.video_out = keras.layers.Dense(config.embedding_dim, name="video_projection")
        self.text_hidden = keras.layers.Dense(hidden, activation="gelu", name="text_hidden")
        self.text_out = keras.layers.Dense(config.embedding_dim, name="text_projection")
        self.drop = keras.layers.Dropout(config.dropout)
        self.tag_head = self._tag_head()

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False) -> dict[str, tf.Tensor]:
        features = self.standardized(features)
        frames, frame_mask = features["frames"], features["frame_mask"]
        mean_frame = self.frame_norm(self.frame_pool(frames, mask=frame_mask), training=training)
        video = self.video_out(self.drop(self.video_hidden(mean_frame), training=training))
        states = self.text_encoder.encode_ids(features["input_ids"], features["attention_mask"],
                                              training=training)["sequence_output"]
        text = self.token_pool(states, mask=tf.cast(features["attention_mask"], states.dtype))
        text = self.text_out(self.drop(self.text_hidden(tf.cast(text, video.dtype)), training=training))
        fused = tf.math.l2_normalize(video, axis=-1) + tf.math.l2_normalize(text, axis=-1)
        embedding = self.with_frame_path(features, fused)
        return float32_outputs({"embedding": embedding, "tag_logits": self.tag_head(embedding),
                                "video_embedding": video, "text_embedding": text})

    def pretrain_losses(self, features: Mapping[str, tf.Tensor], training: bool = True) -> dict[str, tf.Tensor]:
        out = self(features, training=training)
        return {
            "infonce": losses.info_nce(out["video_embedding"], out["text_embedding"], self.infonce_temperature),
            "tag": self.tag_weight * self._tag_loss(features["tags"], out["tag_logits"]),
        }
