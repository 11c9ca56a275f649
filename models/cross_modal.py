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
from models.base import DEFAULTS as D
from models.base import VideoSimModel, float32_outputs
from models.text_encoders import build_text_encoder


class CrossModalModel(VideoSimModel):
    """Transformer video encoder, text encoder, cross-modal co-attention fusion, mean pools."""

    FINETUNE_RECIPE = {"finetune_losses": "tag+mse+mae", "target_transform": "sigmoid"}

    def __init__(
        self, *,
        num_tags: int = D.num_tags,
        embedding_dim: int = D.embedding_dim,
        max_frames: int = D.max_frames,
        dropout: float = D.dropout,
        video_hidden_size: int = D.video_hidden_size,
        video_num_layers: int = D.video_num_layers,
        video_num_heads: int = D.video_num_heads,
        video_intermediate_size: int = D.video_intermediate_size,
        fusion_num_layers: int = D.fusion_num_layers,
        tag_loss: str = D.tag_loss,
        tag_reduction: str = D.tag_reduction,
        tag_prior_positives: float = D.tag_prior_positives,
        asl_gamma_neg: float = D.asl_gamma_neg,
        asl_gamma_pos: float = D.asl_gamma_pos,
        asl_margin: float = D.asl_margin,
        infonce_temperature: float = D.infonce_temperature,
        tag_weight: float = D.tag_weight,
        cross_modal_infonce_weight: float = D.cross_modal_infonce_weight,
        text_encoder: str = D.text_encoder,
        pretrained_text_dir: str | None = D.pretrained_text_dir,
        vocab_size: int = D.vocab_size,
        text_hidden_size: int = D.text_hidden_size,
        text_num_layers: int = D.text_num_layers,
        text_num_heads: int = D.text_num_heads,
        text_intermediate_size: int = D.text_intermediate_size,
        text_max_position: int = D.text_max_position,
        name: str = "cross_modal",
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        self._remember_args(locals())
        self.text_encoder = build_text_encoder(self._init_args, with_pooler=False,
                                               name="text_encoder")
        width = video_hidden_size

        def block(name: str) -> layers.TransformerBlock:
            return layers.TransformerBlock(width, video_num_heads, video_intermediate_size,
                                           dropout, name=name)

        self.frame_embeddings = layers.FrameEmbeddings(width, max_frames, dropout=dropout,
                                                       name="frame_embeddings")
        self.video_layers = [block(f"video_layer_{i}") for i in range(video_num_layers)]
        self.text_projection = layers.FrameProjection(width, name="text_projection")
        self.video_to_text = [block(f"fusion_{i}_video_to_text")
                              for i in range(fusion_num_layers)]
        self.text_to_video = [block(f"fusion_{i}_text_to_video")
                              for i in range(fusion_num_layers)]
        self.pool = layers.MaskedMeanPooling(name="mean_pool")
        self.embedding_projection = keras.layers.Dense(embedding_dim, name="embedding")
        self.tag_head = keras.layers.Dense(
            num_tags, name="tag_head",
            bias_initializer=layers.prior_bias_initializer(num_tags, tag_prior_positives))
        self.video_contrast = keras.layers.Dense(embedding_dim, name="video_contrast")
        self.text_contrast = keras.layers.Dense(embedding_dim, name="text_contrast")

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
        embedding = self.embedding_projection(fused)
        return float32_outputs({
            "embedding": embedding,
            "tag_logits": self.tag_head(embedding),
            "video_embedding": self.video_contrast(video_vector),
            "text_embedding": self.text_contrast(text_vector),
        })

    def pretrain_losses(self, features: Mapping[str, tf.Tensor],
                        training: bool = True) -> dict[str, tf.Tensor]:
        args = self._init_args
        out = self(features, training=training)
        infonce = losses.info_nce(out["video_embedding"], out["text_embedding"],
                                  args["infonce_temperature"])
        return {
            "tag": args["tag_weight"] * self._tag_loss(features["tags"], out["tag_logits"]),
            "infonce": args["cross_modal_infonce_weight"] * infonce,
        }
