"""`mix_nextvlad`: MixNeXtVLAD (team 618 of CIKM 2021).

``num_experts`` experts, each a NeXtVLAD over the frames fused with the title vector by its own
`ConcatDenseSE` (-> 256). A softmax gate over BN(masked mean frame ⊕ title vector) mixes them into
the embedding. Outputs also hold each expert's tag logits, the gate weights and two vectors
*before* fusion: ``video_embedding`` (mean of the experts' NeXtVLAD outputs, projected to 256) and
``text_embedding`` (the title vector projected to 256).

Pretraining losses (each times its weight):
  - ``tag``: tag loss (BCE/ASL) of the mixture's tag head;
  - ``expert_tag``: mean over experts of each expert head's tag loss;
  - ``kl``: mean over experts of KL(mixture ‖ expert) at temperature ``kl_temperature`` on the
    tags' softmax distributions, scaled by T². The mixture is the teacher (stop-gradient): the
    gated ensemble, usually better than any expert, pulls each expert towards it;
  - ``infonce``: symmetric in-batch InfoNCE (τ = ``infonce_temperature``) between
    ``video_embedding`` and ``text_embedding``, aligning the modalities before fusion.
The title vector is the encoder's pooled output (BERT pooler; RoFormer: its [CLS] hidden state).
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from models import layers, losses
from models.base import VideoSimModel, float32_outputs
from models.config import ModelConfig
from models.text_encoders import build_text_encoder


class MixNeXtVLADModel(VideoSimModel):
    """Gated mixture of NeXtVLAD+SE experts with KL and InfoNCE pretraining losses."""

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        config, vlad, mix = self.model_config, self.model_config.nextvlad, self.model_config.mix_nextvlad
        self.num_experts = mix.num_experts
        self.kl_temperature = mix.kl_temperature
        self.infonce_temperature = config.infonce_temperature
        self.tag_weight = self.tag_loss_config.weight
        self.expert_tag_weight, self.kl_weight, self.infonce_weight = (mix.expert_tag_weight, mix.kl_weight,
                                                                       mix.infonce_weight)
        self.text_encoder = build_text_encoder(config, name="text_encoder")
        self.frame_pool = layers.MaskedMeanPooling(name="mean_frame")
        self.experts = [
            layers.NeXtVLAD(vlad.cluster_size, vlad.groups, vlad.expansion, vlad.dropout, vlad.output_size,
                            name=f"expert_{i}_nextvlad")
            for i in range(mix.num_experts)
        ]
        self.fusions = [layers.ConcatDenseSE(config.embedding_dim, vlad.se_reduction, config.dropout,
                                             name=f"expert_{i}_fusion")
                        for i in range(mix.num_experts)]
        self.gate = layers.MixtureGate(mix.num_experts, name="gate")
        self.tag_head = self._tag_head()
        self.expert_tag_heads = [self._tag_head(f"expert_{i}_tag_head") for i in range(mix.num_experts)]
        self.video_projection = keras.layers.Dense(config.embedding_dim, name="video_projection")
        self.text_projection = keras.layers.Dense(config.embedding_dim, name="text_projection")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False
             ) -> dict[str, tf.Tensor]:
        features = self.standardized(features)
        frames, frame_mask = features["frames"], features["frame_mask"]
        text = self.text_encoder.encode_ids(features["input_ids"], features["attention_mask"],
                                            training=training)["pooled_output"]
        text = tf.cast(text, frames.dtype)
        videos = [expert(frames, frame_mask=frame_mask, training=training)
                  for expert in self.experts]
        fused = [fusion([video, text], training=training)
                 for fusion, video in zip(self.fusions, videos)]
        mean_frame = self.frame_pool(frames, mask=frame_mask)
        mixture, gate_weights = self.gate([mean_frame, text], fused, training=training)
        expert_logits = tf.stack([head(x) for head, x in zip(self.expert_tag_heads, fused)],
                                 axis=1)
        return float32_outputs({
            "embedding": self.with_frame_path(features, mixture),
            "tag_logits": self.tag_head(mixture),
            "expert_tag_logits": expert_logits,  # [B, E, num_tags]
            "gate_weights": gate_weights,  # [B, E]
            "video_embedding": self.video_projection(tf.add_n(videos) / len(videos)),
            "text_embedding": self.text_projection(text),
        })

    def pretrain_losses(self, features: Mapping[str, tf.Tensor],
                        training: bool = True) -> dict[str, tf.Tensor]:
        out = self(features, training=training)
        tags = features["tags"]
        experts = range(self.num_experts)
        teacher = tf.stop_gradient(out["tag_logits"])
        expert_tag = tf.add_n([self._tag_loss(tags, out["expert_tag_logits"][:, e])
                               for e in experts]) / self.num_experts
        kl = tf.add_n([losses.kl_divergence(teacher, out["expert_tag_logits"][:, e], self.kl_temperature)
                       for e in experts]) / self.num_experts
        infonce = losses.info_nce(out["video_embedding"], out["text_embedding"], self.infonce_temperature)
        return {
            "tag": self.tag_weight * self._tag_loss(tags, out["tag_logits"]),
            "expert_tag": self.expert_tag_weight * expert_tag,
            "kl": self.kl_weight * kl,
            "infonce": self.infonce_weight * infonce,
        }
