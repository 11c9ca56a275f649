"""`baseline`: the official challenge baseline.

NeXtVLAD over the frames + the text encoder's pooled output of the title -> `ConcatDenseSE`
-> 256-d embedding; a Dense tag classifier on the embedding. Pretraining: the tag loss
(BCE or ASL by ``tag_loss``).
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from models import layers
from models.base import DEFAULTS as D
from models.base import VideoSimModel, float32_outputs
from models.text_encoders import build_text_encoder


class BaselineModel(VideoSimModel):
    """NeXtVLAD(frames) ⊕ text pooler -> ConcatDenseSE embedding, tag head on the embedding."""

    def __init__(
        self, *,
        num_tags: int = D.num_tags,
        embedding_dim: int = D.embedding_dim,
        dropout: float = D.dropout,
        nextvlad_cluster_size: int = D.nextvlad_cluster_size,
        nextvlad_groups: int = D.nextvlad_groups,
        nextvlad_expansion: int = D.nextvlad_expansion,
        nextvlad_dropout: float = D.nextvlad_dropout,
        nextvlad_output_size: int = D.nextvlad_output_size,
        se_reduction: int = D.se_reduction,
        tag_loss: str = D.tag_loss,
        tag_reduction: str = D.tag_reduction,
        tag_prior_positives: float = D.tag_prior_positives,
        asl_gamma_neg: float = D.asl_gamma_neg,
        asl_gamma_pos: float = D.asl_gamma_pos,
        asl_margin: float = D.asl_margin,
        tag_weight: float = D.tag_weight,
        text_encoder: str = D.text_encoder,
        pretrained_text_dir: str | None = D.pretrained_text_dir,
        vocab_size: int = D.vocab_size,
        text_hidden_size: int = D.text_hidden_size,
        text_num_layers: int = D.text_num_layers,
        text_num_heads: int = D.text_num_heads,
        text_intermediate_size: int = D.text_intermediate_size,
        text_max_position: int = D.text_max_position,
        name: str = "baseline",
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        self._remember_args(locals())
        self.text_encoder = build_text_encoder(self._init_args, name="text_encoder")
        self.nextvlad = layers.NeXtVLAD(nextvlad_cluster_size, nextvlad_groups,
                                        nextvlad_expansion, nextvlad_dropout,
                                        nextvlad_output_size, name="nextvlad")
        self.fusion = layers.ConcatDenseSE(embedding_dim, se_reduction, dropout, name="fusion")
        self.tag_head = keras.layers.Dense(
            num_tags, name="tag_head",
            bias_initializer=layers.prior_bias_initializer(num_tags, tag_prior_positives))

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False
             ) -> dict[str, tf.Tensor]:
        features = self.standardized(features)
        video = self.nextvlad(features["frames"], frame_mask=features["frame_mask"],
                              training=training)
        text = self.text_encoder.encode_ids(features["input_ids"], features["attention_mask"],
                                            training=training)["pooled_output"]
        embedding = self.fusion([video, tf.cast(text, video.dtype)], training=training)
        return float32_outputs({"embedding": embedding, "tag_logits": self.tag_head(embedding)})

    def pretrain_losses(self, features: Mapping[str, tf.Tensor],
                        training: bool = True) -> dict[str, tf.Tensor]:
        outputs = self(features, training=training)
        tag = self._tag_loss(features["tags"], outputs["tag_logits"])
        return {"tag": self._init_args["tag_weight"] * tag}
