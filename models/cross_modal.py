"""`cross_modal`: transformer video encoder + cross-modal transformer fusion (seed team 000).

Video stream: frames -> `layers.FrameEmbeddings` (Dense to ``video_hidden_size`` + learned
positions, LayerNorm, dropout) -> ``video_num_layers`` self-attention `layers.TransformerBlock`s
(padded frames masked as keys). Text stream: the text encoder's sequence output of the title,
projected to ``video_hidden_size`` (`layers.FrameProjection`: Dense + LayerNorm).
Fusion: ``fusion_num_layers`` co-attention layers; in each, the video tokens attend to the text
tokens and the text tokens attend to the video tokens (both from the previous layer's streams,
keys masked by the other stream's mask), each followed by its FFN. Then the masked means of
both fused streams are concatenated -> Dense(embedding_dim) = ``embedding``; a tag head on the
embedding.

Also output, *before* fusion: ``video_embedding`` / ``text_embedding`` = Dense(embedding_dim) of
the masked means of the video encoder's and the projected text tokens.

Pretraining: ``tag`` (tag loss x ``tag_weight``) and ``infonce``: symmetric in-batch InfoNCE
(τ = ``infonce_temperature``) between video_embedding and text_embedding x
``cross_modal_infonce_weight``. That weight defaults to a small 0.1: the summed tag loss is
tens of nats and InfoNCE about log(batch), so the alignment term nudges the two streams
towards a shared space before fusion without outweighing the tags; 0 turns it off (the term is
still computed, so every variable keeps a gradient).

Finetune recipe (seed team 000): ``finetune_losses=tag+mse+mae target_transform=sigmoid``
(`FINETUNE_RECIPE`).
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from models import layers, losses
from models.base import VideoSimModel, float32_outputs
from models.config import ModelConfig
from models.text_encoders import build_text_encoder


class CrossModalModel(VideoSimModel):
    """Transformer video encoder, text encoder, cross-modal co-attention fusion, mean pools."""

    FINETUNE_RECIPE = {"finetune_losses": "tag+mse+mae", "target_transform": "sigmoid"}

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        config, section = self.model_config, self.model_config.cross_modal
        self.tag_weight, self.infonce_weight = self.tag_loss_config.weight, section.infonce_weight
        self.infonce_temperature = config.infonce_temperature
        self.text_encoder = build_text_encoder(config, with_pooler=False, name="text_encoder")
        width = section.video_hidden_size

        def block(name: str) -> layers.TransformerBlock:
            return layers.TransformerBlock(width, section.video_num_heads, section.video_intermediate_size,
                                           config.dropout, name=name)

        self.frame_embeddings = layers.FrameEmbeddings(width, config.max_frames, dropout=config.dropout,
                                                       name="frame_embeddings")
        self.video_layers = [block(f"video_layer_{i}") for i in range(section.video_num_layers)]
        self.text_projection = layers.FrameProjection(width, name="text_projection")
        self.video_to_text = [block(f"fusion_{i}_video_to_text") for i in range(section.fusion_num_layers)]
        self.text_to_video = [block(f"fusion_{i}_text_to_video") for i in range(section.fusion_num_layers)]
        self.pool = layers.MaskedMeanPooling(name="mean_pool")
        self.embedding_projection = keras.layers.Dense(config.embedding_dim, name="embedding")
        self.tag_head = self._tag_head()
        self.video_contrast = keras.layers.Dense(config.embedding_dim, name="video_contrast")
        self.text_contrast = keras.layers.Dense(config.embedding_dim, name="text_contrast")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False
             ) -> dict[str, tf.Tensor]:
        features = self.standardized(features)
        frame_mask = tf.cast(features["frame_mask"] > 0, tf.int32)
        text_mask = tf.cast(features["attention_mask"], tf.int32)
        video = self.frame_embeddings(features["frames"], training=training)
        for layer in self.video_layers:
            video = layer(video, padding_mask=frame_mask, training=training)
        text = self.text_encoder.encode_ids(features["input_ids"], text_mask,
                                            training=training)["sequence_output"]
        text = self.text_projection(tf.cast(text, video.dtype))
        video_vector = self.pool(video, mask=frame_mask)
        text_vector = self.pool(text, mask=text_mask)
        for video_to_text, text_to_video in zip(self.video_to_text, self.text_to_video):
            video, text = (
                video_to_text(video, padding_mask=frame_mask, context=text,
                              context_padding_mask=text_mask, training=training),
                text_to_video(text, padding_mask=text_mask, context=video,
                              context_padding_mask=frame_mask, training=training),
            )
        fused = tf.concat([self.pool(video, mask=frame_mask), self.pool(text, mask=text_mask)],
                          axis=-1)
        embedding = self.with_frame_path(features, self.embedding_projection(fused))
        return float32_outputs({
            "embedding": embedding,
            "tag_logits": self.tag_head(embedding),
            "video_embedding": self.video_contrast(video_vector),
            "text_embedding": self.text_contrast(text_vector),
        })

    def pretrain_losses(self, features: Mapping[str, tf.Tensor],
                        training: bool = True) -> dict[str, tf.Tensor]:
        out = self(features, training=training)
        infonce = losses.info_nce(out["video_embedding"], out["text_embedding"], self.infonce_temperature)
        return {
            "tag": self.tag_weight * self._tag_loss(features["tags"], out["tag_logits"]),
            "infonce": self.infonce_weight * infonce,
        }
