"""`baseline`: the official challenge baseline.

NeXtVLAD over the frames + the text encoder's pooled output of the title -> `ConcatDenseSE`
-> 256-d embedding; a Dense tag classifier on the embedding. Pretraining: the tag loss
(BCE or ASL by ``tag_loss``).
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

from models import layers
from models.base import VideoSimModel, float32_outputs
from models.config import ModelConfig
from models.text_encoders import build_text_encoder


class BaselineModel(VideoSimModel):
    """NeXtVLAD(frames) ⊕ text pooler -> ConcatDenseSE embedding, tag head on the embedding."""

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        config, vlad = self.model_config, self.model_config.nextvlad
        self.tag_weight = self.tag_loss_config.weight
        self.text_encoder = build_text_encoder(config, name="text_encoder")
        self.nextvlad = layers.NeXtVLAD(vlad.cluster_size, vlad.groups, vlad.expansion, vlad.dropout,
                                        vlad.output_size, name="nextvlad")
        self.fusion = layers.ConcatDenseSE(config.embedding_dim, vlad.se_reduction, config.dropout, name="fusion")
        self.tag_head = self._tag_head()

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False
             ) -> dict[str, tf.Tensor]:
        features = self.standardized(features)
        video = self.nextvlad(features["frames"], frame_mask=features["frame_mask"],
                              training=training)
        text = self.text_encoder.encode_ids(features["input_ids"], features["attention_mask"],
                                            training=training)["pooled_output"]
        embedding = self.with_frame_path(features, self.fusion([video, tf.cast(text, video.dtype)], training=training))
        return float32_outputs({"embedding": embedding, "tag_logits": self.tag_head(embedding)})

    def pretrain_losses(self, features: Mapping[str, tf.Tensor],
                        training: bool = True) -> dict[str, tf.Tensor]:
        outputs = self(features, training=training)
        tag = self._tag_loss(features["tags"], outputs["tag_logits"])
        return {"tag": self.tag_weight * tag}
