"""`VideoSimModel`: the plumbing every model family shares (the model contract of
docs/architecture.md), plus `example_features` to build or smoke-test a model.

A family subclasses `VideoSimModel`, takes plain keyword constructor arguments named like
`ModelConfig` fields (so `from_model_config` can pick them by name), calls
`self._remember_args(locals())` in `__init__`, and implements `call` and `pretrain_losses`.
One plain call (``training=False``) must create every variable; a layer that only
`pretrain_losses` reaches (e.g. an MLM head) is built explicitly in `__init__`.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping

import numpy as np
import tensorflow as tf
import tf_keras as keras

from models import layers, losses
from models.config import ModelConfig

# Defaults of every family's constructor come from here, so they cannot drift from the config.
DEFAULTS = ModelConfig()


class VideoSimModel(keras.Model):
    """Base of every family: config plumbing, variable groups, restore targets, tag loss."""

    text_encoder: keras.layers.Layer  # set by every family

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # identity until the trainer sets the training data's statistics (the robust recipe)
        self.frame_standardizer = layers.FrameStandardizer(name="frame_standardizer")

    def standardized(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """``features`` with standardised frames; every family's ``call`` starts with this."""
        return dict(features, frames=self.frame_standardizer(features["frames"], features["frame_mask"]))

    # ---------------------------------------------------------------- construction
    @classmethod
    def config_args(cls) -> tuple[str, ...]:
        """Names of the constructor arguments (all keyword, all `ModelConfig` field names)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params
                     if p.name not in ("self", "name") and p.kind is not p.VAR_KEYWORD)

    @classmethod
    def from_model_config(cls, config: ModelConfig, **kwargs: Any) -> "VideoSimModel":
        """Build from a `ModelConfig`: pass the fields this family's constructor takes."""
        missing = [key for key in cls.config_args() if not hasattr(config, key)]
        if missing:
            raise ValueError(f"{cls.__name__} needs ModelConfig fields {missing}")
        return cls(**{key: getattr(config, key) for key in cls.config_args()}, **kwargs)

    def _remember_args(self, local_vars: Mapping[str, Any]) -> None:
        """Keep the constructor arguments for `get_config` (call first thing in `__init__`)."""
        args = {key: local_vars[key] for key in self.config_args()}
        if isinstance(args.get("special_token_ids"), tuple):
            args["special_token_ids"] = list(args["special_token_ids"])
        # a plain dict, not tracked by Keras (it holds no variables)
        object.__setattr__(self, "_init_args", args)

    def get_config(self) -> dict[str, Any]:
        return dict(self._init_args, name=self.name)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], custom_objects=None) -> "VideoSimModel":
        return cls(**dict(config))

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
        args = self._init_args
        return losses.tag_loss(tags, logits, kind=args["tag_loss"],
                               reduction=args["tag_reduction"], gamma_neg=args["asl_gamma_neg"],
                               gamma_pos=args["asl_gamma_pos"], margin=args["asl_margin"])


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
