"""`single_stream`: one encoder over ``[CLS] frames [SEP] title [SEP]`` (1st place of CIKM 2021).

Sequence construction. The title arrives from the tokenizer as ``[CLS] t1 .. tn [SEP] [PAD]..``
(``input_ids`` [B, L]) and is embedded by the text encoder's own embedding layer
(`TextEncoder.embed_ids`: word + position 0..L-1 + token type, LayerNorm, dropout). The frames
[B, M, N] go through `layers.FrameEmbeddings`: Linear to the encoder width + their own learned
positions 0..M-1, LayerNorm, dropout, followed by a learned end-of-video token at position M
(the [SEP] between frames and title). The title's own [CLS] is moved to the front:

    position   0           1 .. M          M + 1        M + 2 .. M + L
    token      title[0]    frames          video [SEP]  title[1:] = t1 .. tn [SEP] [PAD]..
    mask       1           frame_mask      1            attention_mask[1:]

so the sequence reads ``[CLS] frames [SEP] title [SEP]`` with padding (masked out) after the
real frames and after the title; length M + L + 1. The encoder's transformer layers then run on
it (`TextEncoder.encode_hidden`): BERT (positions already added per segment) or RoFormer
(rotary positions over the whole sequence, so it needs max_position_embeddings >= M + L + 1).
Outputs: ``embedding`` = Dense(embedding_dim)(masked mean over every real position), and
``tag_logits`` from the [CLS] hidden state. Consumers L2-normalise the embedding.

Pretraining, all three every step on one forward pass of the doubly masked input:
  - ``tag``: tag loss (BCE/ASL) of the [CLS] head;
  - ``mlm``: 15% of the real, non-special title tokens (80% [MASK] / 10% random / 10% kept),
    predicted by a BERT-style head tied to the word embeddings;
  - ``mfm``: ``mfm_probability`` (15%) of the real frames are zeroed before the frame Linear;
    an `MLPHead` predicts each one from its output position and `losses.masked_frame_nce` scores
    each prediction against every real original frame of the local batch (dot products,
    padded frames excluded), the target being its own frame (cross-entropy).
The tag head reads the [CLS] state, so the embedding projection (Dense 256 on the mean pool)
gets no pretraining gradient: it is trained by the finetune (the trainer drops None gradients).
Weights default to the published ones: tag x 1250/3 on the tag loss *averaged over tags*,
MLM / 3.75, MFM / 9. This project's default tag_reduction is "sum" (over tags), so the model
multiplies a summed tag loss by ``single_stream_tag_weight / num_tags`` (= 1/24 at 10,000
tags): the effective loss equals the published one for either reduction.

Finetune recipe (published): rank-normalised targets and MSE, i.e. TrainConfig
``target_transform=rank finetune_losses=mse`` (`FINETUNE_RECIPE`). The BERT-large shape
(24 x 1024) is `ModelConfig.preset("large", "single_stream")` or a local checkpoint in
``pretrained_text_dir`` (the architecture then comes from the checkpoint).
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras

from models import layers, losses
from models.base import VideoSimModel, float32_outputs
from models.config import ModelConfig
from models.text_encoders import build_text_encoder


class SingleStreamModel(VideoSimModel):
    """``[CLS] frames [SEP] title [SEP]`` through one encoder; tag + MLM + MFM pretraining."""

    FINETUNE_RECIPE = {"target_transform": "rank", "finetune_losses": "mse"}

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        config, section = self.model_config, self.model_config.single_stream
        self.mfm_probability, self.mfm_temperature = section.mfm_probability, section.mfm_temperature
        self.tag_weight, self.mlm_weight, self.mfm_weight = section.tag_weight, section.mlm_weight, section.mfm_weight
        # the pooler is unused: without it every encoder variable gets a gradient
        self.text_encoder = build_text_encoder(config, with_pooler=False, name="text_encoder")
        roformer = self.text_config.kind == "roformer"
        needed = config.title_len + config.max_frames + 1 if roformer else config.title_len
        if self.text_encoder.max_position < needed:
            what = ("title_len + max_frames + 1 (rotary positions span the whole sequence)"
                    if roformer else "title_len")
            raise ValueError(
                f"single_stream: the text encoder has {self.text_encoder.max_position} positions "
                f"(text.max_position or the checkpoint's max_position_embeddings) but {what} = "
                f"{needed}")
        hidden = self.text_encoder.hidden_size
        self.frame_embeddings = layers.FrameEmbeddings(hidden, config.max_frames, end_token=True,
                                                       dropout=config.dropout, name="frame_embeddings")
        self.pool = layers.MaskedMeanPooling(name="mean_pool")
        self.embedding_projection = keras.layers.Dense(config.embedding_dim, name="embedding")
        self.tag_head = self._tag_head()
        self.mlm_head = layers.TiedMLMHead(self.text_encoder.vocab_size,
                                           self.text_encoder.embedding_size, name="mlm_head")
        self.mfm_head = layers.MLPHead(config.frame_dim, name="mfm_head")
        # built now: a plain call never reaches the pretraining heads, yet build_model promises
        # that one call creates every variable (optimizer slots, checkpoints)
        self.mlm_head.build(tf.TensorShape([None, None, hidden]))
        self.mfm_head.build(tf.TensorShape([None, None, hidden]))
        # the masks come from generators the model owns (checkpointed; the trainer resets them
        # per step, so a resumed run draws the same masks)
        self.mlm_generator = tf.random.Generator.from_non_deterministic_state()
        self.mfm_generator = tf.random.Generator.from_non_deterministic_state()

    # ---------------------------------------------------------------- sequence
    def sequence(self, features: Mapping[str, tf.Tensor], training: bool | None = False
                 ) -> tuple[tf.Tensor, tf.Tensor]:
        """The embedded ``[CLS] frames [SEP] title [SEP]`` sequence [B, M + L + 1, hidden] and
        its int32 mask (see the module docstring)."""
        frames = self.frame_embeddings(features["frames"], training=training)  # [B, M + 1, H]
        text = tf.cast(self.text_encoder.embed_ids(features["input_ids"], training=training),
                       frames.dtype)  # [B, L, H]
        attention = tf.cast(features["attention_mask"], tf.int32)
        frame_mask = tf.cast(features["frame_mask"] > 0, tf.int32)
        end = tf.ones_like(attention[:, :1])
        hidden = tf.concat([text[:, :1], frames, text[:, 1:]], axis=1)
        mask = tf.concat([attention[:, :1], frame_mask, end, attention[:, 1:]], axis=1)
        return hidden, mask

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = False,
             heads: bool = False, standardize: bool = True) -> dict[str, tf.Tensor]:
        """``heads=True`` adds "mlm_logits" [B, L, vocab] (title positions, aligned with
        input_ids) and "mfm_predictions" [B, M, frame_dim] (frame positions); ``standardize=False``:
        the frames are already standardised (masked-frame pretraining masks standardised frames)."""
        if standardize:
            features = self.standardized(features)
        sequence, mask = self.sequence(features, training=training)
        hidden = self.text_encoder.encode_hidden(sequence, mask, training=training)
        embedding = self.with_frame_path(features, self.embedding_projection(self.pool(hidden, mask=mask)))
        outputs = {"embedding": embedding, "tag_logits": self.tag_head(hidden[:, 0])}
        if heads:
            steps = tf.shape(features["frames"])[1]
            title_hidden = tf.concat([hidden[:, :1], hidden[:, steps + 2:]], axis=1)
            outputs["mlm_logits"] = self.mlm_head(title_hidden, self.text_encoder.word_embeddings)
            outputs["mfm_predictions"] = self.mfm_head(hidden[:, 1:steps + 1])
        return float32_outputs(outputs)

    # ---------------------------------------------------------------- pretraining
    def effective_tag_weight(self) -> float:
        """The factor on `_tag_loss`: the published weight (on a tag loss averaged over tags),
        divided by num_tags when this model sums the tag loss over tags."""
        weight = self.tag_weight
        return weight / self.model_config.num_tags if self.tag_loss_config.reduction == "sum" else weight

    def pretrain_losses(self, features: Mapping[str, tf.Tensor],
                        training: bool = True) -> dict[str, tf.Tensor]:
        text = self.text_config
        masked_ids, labels, token_weights = losses.mask_tokens(
            features["input_ids"], features["attention_mask"], self.text_encoder.vocab_size,
            text.mask_token_id, text.special_token_ids, text.mlm_probability, generator=self.mlm_generator)
        frames = tf.cast(self.standardized(features)["frames"], tf.float32)  # inputs and NCE targets
        frame_weights = losses.mask_frames(features["frame_mask"], self.mfm_probability,
                                           generator=self.mfm_generator)
        masked = dict(features, input_ids=masked_ids,
                      frames=frames * (1.0 - frame_weights)[..., None])
        out = self(masked, training=training, heads=True, standardize=False)
        mfm = losses.masked_frame_nce(out["mfm_predictions"], frames, frame_weights,
                                      features["frame_mask"], self.mfm_temperature)
        return {
            "tag": self.effective_tag_weight() * self._tag_loss(features["tags"],
                                                                out["tag_logits"]),
            "mlm": self.mlm_weight * losses.mlm_loss(labels, out["mlm_logits"], token_weights),
            "mfm": self.mfm_weight * mfm,
        }
