"""`frame_diff`: the baseline plus a third modality, frame differences (seed team 000).

Differences of consecutive frames, d_t = f_{t+1} - f_t (t = 0 .. M-2), are a cheap motion
signal. A difference is real only when both of its frames are real, so a video with n real
frames has n - 1 real differences (none for a single frame); the others are zeroed and masked
(`frame_differences`). They get their own NeXtVLAD (same sizes as the frames' one), and the
three vectors — NeXtVLAD(frames), NeXtVLAD(differences), the text encoder's pooled title — are
fused by the baseline's `ConcatDenseSE` -> 256-d embedding; a tag head on the embedding.
Pretraining: the tag loss. Everything else is the baseline's (`BaselineModel`, subclassed).

Finetune recipe (seed team 000): ``finetune_losses=tag+mse+mae target_transform=sigmoid``
(`FINETUNE_RECIPE`).
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

from models import layers
from models.base import float32_outputs
from models.baseline import BaselineModel
from models.config import ModelConfig


def frame_differences(frames: tf.Tensor, frame_mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """frames [B, M, N], frame_mask [B, M] -> (differences [B, M-1, N], mask [B, M-1] float).

    differences[:, t] = frames[:, t+1] - frames[:, t] where both frames are real, else 0.
    """
    mask = tf.cast(frame_mask, frames.dtype)
    diff_mask = mask[:, 1:] * mask[:, :-1]
    diffs = (frames[:, 1:] - frames[:, :-1]) * diff_mask[..., None]
    return diffs, diff_mask


class FrameDiffModel(BaselineModel):
    """NeXtVLAD(frames) ⊕ NeXtVLAD(frame differences) ⊕ text pooler -> ConcatDenseSE."""

    FINETUNE_RECIPE = {"finetune_losses": "tag+mse+mae", "target_transform": "sigmoid"}

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        vlad = self.model_config.nextvlad  # the extra NeXtVLAD has the frames' sizes
        self.diff_nextvlad = layers.NeXtVLAD(vlad.cluster_size, vlad.groups, vlad.expansion, vlad.dropout,
                                             vlad.output_size, name="diff_nextvlad")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False
             ) -> dict[str, tf.Tensor]:
        features = self.standardized(features)
        frames, frame_mask = features["frames"], features["frame_mask"]
        video = self.nextvlad(frames, frame_mask=frame_mask, training=training)
        diffs, diff_mask = frame_differences(frames, frame_mask)
        motion = self.diff_nextvlad(diffs, frame_mask=diff_mask, training=training)
        text = self.text_encoder.encode_ids(features["input_ids"], features["attention_mask"],
                                            training=training)["pooled_output"]
        embedding = self.with_frame_path(features, self.fusion([video, motion, tf.cast(text, video.dtype)],
                                                               training=training))
        return float32_outputs({"embedding": embedding, "tag_logits": self.tag_head(embedding)})
