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
from models.base import DEFAULTS as D
from models.base import VideoSimModel, float32_outputs
from models.text_encoders import build_text_encoder


class MixNeXtVLADModel(VideoSimModel):
    """Gated mixture of NeXtVLAD+SE experts with KL and InfoNCE pretraining losses."""

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
        num_experts: int = D.num_experts,
        tag_loss: str = D.tag_loss,
        tag_reduction: str = D.tag_reduction,
        tag_prior_positives: float = D.tag_prior_positives,
        asl_gamma_neg: float = D.asl_gamma_neg,
        asl_gamma_pos: float = D.asl_gamma_pos,
        asl_margin: float = D.asl_margin,
        kl_temperature: float = D.kl_temperature,
        infonce_temperature: float = D.infonce_temperature,
        tag_weight: float = D.tag_weight,
        expert_tag_weight: float = D.expert_tag_weight,
        kl_weight: float = D.kl_weight,
        infonce_weight: float = D.infonce_weight,
        text_encoder: str = D.text_encoder,
        pretrained_text_dir: str | None = D.pretrained_text_dir,
        vocab_size: int = D.vocab_size,
        text_hidden_size: int = D.text_hidden_size,
        text_num_layers: int = D.text_num_layers,
        text_num_heads: int = D.text_num_heads,
        text_intermediate_size: int = D.text_intermediate_size,
        text_max_position: int = D.text_max_position,
        name: str = "mix_nextvlad",
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        self._remember_args(locals())
        if num_experts < 1:
            raise ValueError(f"mix_nextvlad: num_experts must be >= 1, got {num_experts}")
        self.text_encoder = build_text_encoder(self._init_args, name="text_encoder")
        self.frame_pool = layers.MaskedMeanPooling(name="mean_frame")
        self.experts = [
            layers.NeXtVLAD(nextvlad_cluster_size, nextvlad_groups, nextvlad_expansion,
                            nextvlad_dropout, nextvlad_output_size, name=f"expert_{i}_nextvlad")
            for i in range(num_experts)
        ]
        self.fusions = [layers.ConcatDenseSE(embedding_dim, se_reduction, dropout,
                                             name=f"expert_{i}_fusion")
                        for i in range(num_experts)]
        self.gate = layers.MixtureGate(num_experts, name="gate")
        bias = layers.prior_bias_initializer(num_tags, tag_prior_positives)
        self.tag_head = keras.layers.Dense(num_tags, bias_initializer=bias, name="tag_head")
        self.expert_tag_heads = [keras.layers.Dense(num_tags, bias_initializer=bias,
                                                    name=f"expert_{i}_tag_head")
                                 for i in range(num_experts)]
        self.video_projection = keras.layers.Dense(embedding_dim, name="video_projection")
        self.text_projection = keras.layers.Dense(embedding_dim, name="text_projection")

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
            "embedding": mixture,
            "tag_logits": self.tag_head(mixture),
            "expert_tag_logits": expert_logits,  # [B, E, num_tags]
            "gate_weights": gate_weights,  # [B, E]
            "video_embedding": self.video_projection(tf.add_n(videos) / len(videos)),
            "text_embedding": self.text_projection(text),
        })

    def pretrain_losses(self, features: Mapping[str, tf.Tensor],
                        training: bool = True) -> dict[str, tf.Tensor]:
        args = self._init_args
        out = self(features, training=training)
        tags = features["tags"]
        experts = range(args["num_experts"])
        teacher = tf.stop_gradient(out["tag_logits"])
        expert_tag = tf.add_n([self._tag_loss(tags, out["expert_tag_logits"][:, e])
                               for e in experts]) / args["num_experts"]
        kl = tf.add_n([losses.kl_divergence(teacher, out["expert_tag_logits"][:, e],
                                            args["kl_temperature"])
                       for e in experts]) / args["num_experts"]
        infonce = losses.info_nce(out["video_embedding"], out["text_embedding"],
                                  args["infonce_temperature"])
        return {
            "tag": args["tag_weight"] * self._tag_loss(tags, out["tag_logits"]),
            "expert_tag": args["expert_tag_weight"] * expert_tag,
            "kl": args["kl_weight"] * kl,
            "infonce": args["infonce_weight"] * infonce,
        }
