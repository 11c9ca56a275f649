"""`clip`: a CLIP-style two-tower model whose video and text vectors share one space.

Video tower: masked mean of the frames -> BatchNorm -> Dense(``video_hidden_size``·4, gelu) ->
dropout -> Dense(``embedding_dim``) = ``video_embedding`` (frames only). Text tower: the text
encoder's token states mean-pooled over the attention mask -> Dense(gelu) -> dropout ->
Dense(``embedding_dim``) = ``text_embedding`` (title only). ``embedding`` (the similarity vector
of the model contract) is the sum of the two L2-normalised tower vectors; ``tag_logits`` a tag
head on it.

Pretraining losses: symmetric in-batch InfoNCE between ``video_embedding`` and ``text_embedding``
(τ = ``infonce_temperature``, times ``infonce_weight``) plus the tag loss on the fused vector
(times ``tag_weight``). It exists for text -> video search (``search.query --text``): a title
query's ``text_embedding`` against an index of ``video_embedding``; mix_nextvlad carries the same
pair of outputs, trained jointly with its tag and KL losses.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from models import losses
from models.base import DEFAULTS as D
from models.base import VideoSimModel, float32_outputs
from models.layers import MaskedMeanPooling, prior_bias_initializer
from models.text_encoders import build_text_encoder


class ClipModel(VideoSimModel):
    """Two towers (mean frames / mean title tokens) aligned by symmetric InfoNCE."""

    def __init__(
        self, *,
        num_tags: int = D.num_tags,
        embedding_dim: int = D.embedding_dim,
        dropout: float = D.dropout,
        video_hidden_size: int = D.video_hidden_size,
        tag_loss: str = D.tag_loss,
        tag_reduction: str = D.tag_reduction,
        tag_prior_positives: float = D.tag_prior_positives,
        asl_gamma_neg: float = D.asl_gamma_neg,
        asl_gamma_pos: float = D.asl_gamma_pos,
        asl_margin: float = D.asl_margin,
        infonce_temperature: float = D.infonce_temperature,
        infonce_weight: float = D.infonce_weight,
        tag_weight: float = D.tag_weight,
        text_encoder: str = D.text_encoder,
        pretrained_text_dir: str | None = D.pretrained_text_dir,
        vocab_size: int = D.vocab_size,
        text_hidden_size: int = D.text_hidden_size,
        text_num_layers: int = D.text_num_layers,
        text_num_heads: int = D.text_num_heads,
        text_intermediate_size: int = D.text_intermediate_size,
        text_max_position: int = D.text_max_position,
        name: str = "clip",
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        self._remember_args(locals())
        hidden = 4 * video_hidden_size
        # the pooler is unused here: without it every encoder variable gets a gradient
        self.text_encoder = build_text_encoder(self._init_args, with_pooler=False, name="text_encoder")
        self.frame_pool = MaskedMeanPooling(name="mean_frame")
        self.frame_norm = keras.layers.BatchNormalization(name="frame_norm")
        self.video_hidden = keras.layers.Dense(hidden, activation="gelu", name="video_hidden")
        self.video_out = keras.layers.Dense(embedding_dim, name="video_projection")
        self.text_hidden = keras.layers.Dense(hidden, activation="gelu", name="text_hidden")
        self.text_out = keras.layers.Dense(embedding_dim, name="text_projection")
        self.drop = keras.layers.Dropout(dropout)
        self.tag_head = keras.layers.Dense(num_tags, bias_initializer=prior_bias_initializer(num_tags,
                                                                                             tag_prior_positives),
                                           name="tag_head")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False) -> dict[str, tf.Tensor]:
        frames, frame_mask = features["frames"], features["frame_mask"]
        mean_frame = self.frame_norm(self.frame_pool(frames, mask=frame_mask), training=training)
        video = self.video_out(self.drop(self.video_hidden(mean_frame), training=training))
        states = self.text_encoder.encode_ids(features["input_ids"], features["attention_mask"],
                                              training=training)["sequence_output"]
        text = MaskedMeanPooling()(states, mask=tf.cast(features["attention_mask"], states.dtype))
        text = self.text_out(self.drop(self.text_hidden(tf.cast(text, video.dtype)), training=training))
        fused = tf.math.l2_normalize(video, axis=-1) + tf.math.l2_normalize(text, axis=-1)
        return float32_outputs({"embedding": fused, "tag_logits": self.tag_head(fused),
                                "video_embedding": video, "text_embedding": text})

    def pretrain_losses(self, features: Mapping[str, tf.Tensor], training: bool = True) -> dict[str, tf.Tensor]:
        args = self._init_args
        out = self(features, training=training)
        return {
            "infonce": args["infonce_weight"] * losses.info_nce(out["video_embedding"], out["text_embedding"],
                                                                args["infonce_temperature"]),
            "tag": args["tag_weight"] * self._tag_loss(features["tags"], out["tag_logits"]),
        }
