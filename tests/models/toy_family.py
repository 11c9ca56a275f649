"""A toy model family defined outside `models/`: mean frame + pooled title -> Dense, a tag head.

It exists to show (and test) what a new family needs: this one module and one registry line
(`models.registry.register("toy_mean_pool")(ToyMeanPoolModel)` in tests/models/test_contract.py).
It reads the shared sections of `ModelConfig` (text encoder, tag loss) and adds no field.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from models import layers
from models.base import VideoSimModel, float32_outputs
from models.text_encoders import build_text_encoder


class ToyMeanPoolModel(VideoSimModel):
    """[masked mean of the frames ; the text encoder's pooled title] -> Dense(embedding_dim)."""

    def __init__(self, config=None, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.tag_weight = self.tag_loss_config.weight
        self.text_encoder = build_text_encoder(self.model_config, name="text_encoder")
        self.frame_pool = layers.MaskedMeanPooling(name="mean_frame")
        self.projection = keras.layers.Dense(self.model_config.embedding_dim, name="embedding")
        self.tag_head = self._tag_head()

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False) -> dict[str, tf.Tensor]:
        features = self.standardized(features)  # the contract: standardised frames in, the linear paths out
        frames = self.frame_pool(features["frames"], mask=features["frame_mask"])
        text = self.text_encoder.encode_ids(features["input_ids"], features["attention_mask"],
                                            training=training)["pooled_output"]
        embedding = self.with_frame_path(features, self.projection(tf.concat([frames, tf.cast(text, frames.dtype)],
                                                                             axis=-1)))
        return float32_outputs({"embedding": embedding, "tag_logits": self.tag_head(embedding)})

    def pretrain_losses(self, features: Mapping[str, tf.Tensor], training: bool = True) -> dict[str, tf.Tensor]:
        out = self(features, training=training)
        return {"tag": self.tag_weight * self._tag_loss(features["tags"], out["tag_logits"])}
