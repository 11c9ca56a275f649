"""`VideoSimModel`: the plumbing every model family shares (the model contract of
docs/architecture.md), plus `example_features` to build or smoke-test a model.

A family subclasses `VideoSimModel`, takes the whole `ModelConfig` (``Family(config)``; the
base keeps it as ``self.model_config`` and its text-encoder and tag-loss sections as
``self.text_config`` / ``self.tag_loss_config``), reads the sections it needs into attributes,
and implements `call` and `pretrain_losses`. `get_config` is the config's dict (nested), so
``from_config(get_config())`` rebuilds the same family. One plain call (``training=False``)
must create every variable; a layer that only `pretrain_losses` reaches (e.g. an MLM head) is
built explicitly in `__init__`. A new family is one module plus one line in
`models.registry.MODELS`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf
import tf_keras as keras

from models import layers, losses
from models.config import ModelConfig


class VideoSimModel(keras.Model):
    """Base of every family: config plumbing, variable groups, restore targets, tag loss."""

    text_encoder: keras.layers.Layer  # set by every family

    # ---------------------------------------------------------------- construction
    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, *, name: str | None = None,
                 **kwargs: Any):
        if not isinstance(config, ModelConfig):
            config = ModelConfig.from_dict(dict(config or {}))
        super().__init__(name=name or config.name, **kwargs)
        self.model_config = config
        self.text_config = config.text
        self.tag_loss_config = config.tags
        # identity until the trainer sets the training data's statistics (the robust recipe)
        self.frame_standardizer = layers.FrameStandardizer(config.frames.power,
                                                           diagonal=config.frames.normalization != "zca",
                                                           name="frame_standardizer")
        self.frame_path = (layers.MeanFramePath(config.embedding_dim, name="frame_path")
                           if config.frames.path_rank > 0 else None)
        self.wide_path = (layers.WidePath(config.text.vocab_size, config.wide.frame_width, config.wide.text_width,
                                          config.embedding_dim, frame_tags_width=config.wide.frame_tags_width,
                                          frame_words=config.wide.frame_words,
                                          frame_words_width=config.wide.frame_words_width,
                                          frame_words_fits=config.wide.frame_words_fits,
                                          rare_words=config.wide.rare_words,
                                          name="wide_path")
                          if config.wide.enabled else None)

    def with_frame_path(self, features: Mapping[str, tf.Tensor], embedding: tf.Tensor) -> tf.Tensor:
        """The L2-normalised ``embedding`` plus the linear paths: the mean-frame path
        (``frames.path_rank > 0``) and the wide linear-metric path (``wide.enabled``); without
        either, ``embedding`` unchanged. ``features`` are the standardised ones. Every family
        applies it to its embedding."""
        if self.frame_path is None and self.wide_path is None:
            return embedding
        total = tf.math.l2_normalize(embedding, axis=-1)
        if self.frame_path is not None:
            total += tf.cast(self.frame_path(features["frames"], features["frame_mask"]), embedding.dtype)
        if self.wide_path is not None:
            total += tf.cast(self.wide_path(features["frames"], features["frame_mask"], features["input_ids"],
                                            features["attention_mask"]), embedding.dtype)
        return total

    def standardized(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """``features`` with standardised frames; every family's ``call`` starts with this."""
        return dict(features, frames=self.frame_standardizer(features["frames"], features["frame_mask"]))

    @classmethod
    def from_model_config(cls, config: ModelConfig, **kwargs: Any) -> "VideoSimModel":
        return cls(config, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return self.model_config.to_dict()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], custom_objects=None) -> "VideoSimModel":
        """From `get_config` (nested) or a flat dict of the former layout."""
        return cls(ModelConfig.from_dict(config))

    # ---------------------------------------------------------------- the contract
    def pretrain_losses(self, features: Mapping[str, tf.Tensor],
                        training: bool = True) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    def text_encoder_variables(self) -> list[tf.Variable]:
        """The text encoder's trainable variables (they get the lower learning rate)."""
        return list(self.text_encoder.trainable_variables)

    def other_trainable_variables(self) -> list[tf.Variable]:
        """Every trainable variable that is not the text encoder's."""
        text = {v.ref() for v in self.text_encoder_variables()}
        return [v for v in self.trainable_variables if v.ref() not in text]

    def restore_targets(self) -> dict[str, Any]:
        """What a finetune restores from a pretrain checkpoint (default: the whole model)."""
        return {"model": self}

    # ---------------------------------------------------------------- helpers for families
    def _tag_loss(self, tags: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        return tag_loss(self.tag_loss_config, tags, logits)

    def _tag_head(self, name: str = "tag_head") -> keras.layers.Dense:
        """The Dense tag classifier, its bias started at the tag prior (``tags.prior_positives``)."""
        num_tags = self.model_config.num_tags
        return keras.layers.Dense(num_tags, name=name, bias_initializer=layers.prior_bias_initializer(
            num_tags, self.tag_loss_config.prior_positives))


def tag_loss(section, tags: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """`losses.tag_loss` as a `TagLossConfig` section describes it (BCE / ASL, reduction)."""
    return losses.tag_loss(tags, logits, kind=section.kind, reduction=section.reduction,
                           gamma_neg=section.asl_gamma_neg, gamma_pos=section.asl_gamma_pos,
                           margin=section.asl_margin)


def float32_outputs(outputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Cast floating outputs to float32 (the contract), leaving other dtypes alone."""
    return {key: tf.cast(value, tf.float32) if value.dtype.is_floating else value
            for key, value in outputs.items()}


def example_features(config: ModelConfig, batch_size: int = 2,
                     seed: int = 0) -> dict[str, tf.Tensor]:
    """A random batch in the decoded feature layout of docs/architecture.md, sized by ``config``.

    Videos have between 1 and max_frames real frames (the rest zero padded) and titles between
    3 and title_len tokens (ordinary ids, i.e. not in special_token_ids; padding is
    pad_token_id). Used to build a model's variables and in tests.
    """
    rng = np.random.default_rng(seed)
    frames_n = rng.integers(1, config.max_frames + 1, size=batch_size)
    frame_mask = (np.arange(config.max_frames)[None, :] < frames_n[:, None]).astype(np.float32)
    frames = rng.normal(size=(batch_size, config.max_frames, config.frame_dim)).astype(np.float32)
    frames *= frame_mask[..., None]
    title_n = rng.integers(min(3, config.title_len), config.title_len + 1, size=batch_size)
    attention = (np.arange(config.title_len)[None, :] < title_n[:, None]).astype(np.int32)
    ordinary = np.setdiff1d(np.arange(config.vocab_size), np.asarray(config.special_token_ids))
    ids = rng.choice(ordinary, size=(batch_size, config.title_len)).astype(np.int32)
    ids = np.where(attention == 1, ids, config.pad_token_id).astype(np.int32)
    tags = (rng.random((batch_size, config.num_tags)) < min(5.0 / config.num_tags, 0.5))
    return {
        "id": tf.constant([str(i) for i in range(batch_size)]),
        "title": tf.constant(["title"] * batch_size),
        "asr_text": tf.constant(["nan"] * batch_size),
        "frames": tf.constant(frames),
        "frame_mask": tf.constant(frame_mask),
        "num_frames": tf.constant(frames_n.astype(np.int32)),
        "input_ids": tf.constant(ids),
        "attention_mask": tf.constant(attention),
        "tags": tf.constant(tags.astype(np.float32)),
        "category": tf.constant(rng.integers(10000, 20000, size=batch_size).astype(np.int32)),
    }
