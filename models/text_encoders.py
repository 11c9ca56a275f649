"""BERT / RoFormer text encoders from `transformers` (TF), wrapped as one Keras layer.

This is the only module of `models/` that imports `transformers`. A family gets its encoder from
`build_text_encoder(config)`: loaded with `from_pretrained(local_dir)` when
`config.pretrained_text_dir` is set (local files only, e.g. a downloaded
hfl/chinese-roberta-wwm-ext or junnyu/roformer_chinese_base; PyTorch-format `model.safetensors`
loads without torch), otherwise built randomly initialised from the config's `text_*` fields.

`TextEncoder` gives families what they need without knowing which encoder runs:
  - `encode_ids(input_ids, attention_mask)` / `encode_embeds(inputs_embeds, attention_mask)`
    (both call the layer on a dict) -> {"sequence_output": [B, L, hidden],
    "pooled_output": [B, hidden]}
    ("pooled_output" is BERT's pooler; RoFormer has none, and neither has BERT built with
    ``with_pooler=False``: then it is the hidden state of the first ([CLS]) token);
  - `word_embeddings` (the [vocab, embedding_size] matrix, e.g. for a tied MLM decoder) and
    `embed_tokens(ids)`;
  - `save_pretrained(dir)` / `save_text_encoder(encoder, dir)`: a checkpoint that
    `from_pretrained` (and therefore `build_text_encoder`) loads back;
  - the two halves of a forward pass, for sequences that mix text with other tokens:
    `embed_ids(input_ids)` (the encoder's own embedding layer: words + positions + token types,
    LayerNorm, dropout; projected to the hidden size where RoFormer's embeddings are narrower)
    and `encode_hidden(hidden, attention_mask)` (the transformer layers on ready hidden states);
    `encode_hidden(embed_ids(ids), mask)` equals `encode_ids(ids, mask)["sequence_output"]`.
With inputs_embeds BERT still adds its position and token-type embeddings; RoFormer adds token-type
embeddings and applies rotary positions inside attention over the whole sequence.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Mapping

import tensorflow as tf
import tf_keras as keras
from transformers import BertConfig, RoFormerConfig, TFBertModel, TFRoFormerModel

_ENCODERS = {
    "bert": (BertConfig, TFBertModel, "bert"),
    "roformer": (RoFormerConfig, TFRoFormerModel, "roformer"),
}
_CONFIG_FIELDS = (
    "text_encoder", "pretrained_text_dir", "vocab_size", "text_hidden_size", "text_num_layers",
    "text_num_heads", "text_intermediate_size", "text_max_position", "dropout",
)


class TextEncoder(keras.layers.Layer):
    """A transformers TF BERT or RoFormer model behind one interface (see module docstring)."""

    def __init__(self, hf_model: Any, kind: str, **kwargs: Any):
        super().__init__(**kwargs)
        if kind not in _ENCODERS:
            raise ValueError(f"text encoder kind must be one of {sorted(_ENCODERS)}, got {kind!r}")
        self.kind = kind
        self.hf_model = hf_model

    # ---------------------------------------------------------------- structure
    @property
    def main_layer(self) -> keras.layers.Layer:
        return getattr(self.hf_model, _ENCODERS[self.kind][2])

    @property
    def hf_config(self) -> Any:
        return self.hf_model.config

    @property
    def hidden_size(self) -> int:
        return int(self.hf_config.hidden_size)

    @property
    def embedding_size(self) -> int:
        """Width of the word embeddings, i.e. of ``inputs_embeds``."""
        return int(getattr(self.hf_config, "embedding_size", None) or self.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.hf_config.vocab_size)

    @property
    def max_position(self) -> int:
        return int(self.hf_config.max_position_embeddings)

    @property
    def has_pooler(self) -> bool:
        return getattr(self.main_layer, "pooler", None) is not None

    @property
    def word_embeddings(self) -> tf.Variable:
        """The [vocab_size, embedding_size] word-embedding matrix (a trainable variable)."""
        return self.main_layer.embeddings.weight

    def embed_tokens(self, input_ids: tf.Tensor) -> tf.Tensor:
        """Word embeddings of ``input_ids`` (no position / token-type embeddings yet)."""
        return tf.gather(self.word_embeddings, input_ids)

    # ---------------------------------------------------------------- forward
    def call(self, inputs: Mapping[str, tf.Tensor], training: bool | None = False
             ) -> dict[str, tf.Tensor]:
        """``inputs``: {"input_ids" or "inputs_embeds", "attention_mask", optional
        "token_type_ids"} -> {"sequence_output", "pooled_output"}."""
        unknown = set(inputs) - {"input_ids", "inputs_embeds", "attention_mask", "token_type_ids"}
        if unknown:
            raise ValueError(f"TextEncoder: unexpected inputs {sorted(unknown)}")
        input_ids, inputs_embeds = inputs.get("input_ids"), inputs.get("inputs_embeds")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("TextEncoder needs exactly one of input_ids and inputs_embeds")
        outputs = self.hf_model(
            input_ids=input_ids,  # None must be passed explicitly on the inputs_embeds path
            attention_mask=inputs.get("attention_mask"),
            inputs_embeds=inputs_embeds,
            token_type_ids=inputs.get("token_type_ids"),
            training=False if training is None else training,
        )
        sequence = outputs.last_hidden_state
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            pooled = sequence[:, 0]
        return {"sequence_output": sequence, "pooled_output": pooled}

    def encode_ids(self, input_ids: tf.Tensor, attention_mask: tf.Tensor,
                   training: bool | None = False) -> dict[str, tf.Tensor]:
        """Run on token ids (the usual text path)."""
        return self({"input_ids": input_ids, "attention_mask": attention_mask},
                    training=training)

    def encode_embeds(self, inputs_embeds: tf.Tensor, attention_mask: tf.Tensor,
                      training: bool | None = False,
                      token_type_ids: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Run on ready-made input embeddings [B, L, embedding_size] (e.g. words + frames)."""
        inputs = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self(inputs, training=training)

    def embed_ids(self, input_ids: tf.Tensor, token_type_ids: tf.Tensor | None = None,
                  training: bool | None = False) -> tf.Tensor:
        """The encoder's input embeddings of ``input_ids`` [B, L] -> [B, L, hidden_size].

        BERT: LayerNorm(word + position (0..L-1) + token type), dropout. RoFormer: LayerNorm(word
        + token type), dropout, then its embedding projection when embedding_size != hidden_size
        (its positions are rotary, applied inside attention by `encode_hidden`).
        """
        if token_type_ids is None:
            token_type_ids = tf.zeros_like(input_ids)
        training = False if training is None else training
        main = self.main_layer
        hidden = main.embeddings(input_ids=input_ids, token_type_ids=token_type_ids,
                                 training=training)
        if self.kind == "roformer" and hasattr(main, "embeddings_project"):
            hidden = main.embeddings_project(hidden, training=training)
        return hidden

    def encode_hidden(self, hidden: tf.Tensor, attention_mask: tf.Tensor,
                      training: bool | None = False) -> tf.Tensor:
        """The transformer layers on ready hidden states [B, S, hidden] -> [B, S, hidden].

        ``attention_mask`` [B, S] (1 = attend) becomes the additive -10000 mask both encoders use.
        RoFormer applies rotary positions over the whole sequence (0..S-1); BERT adds nothing.
        """
        training = False if training is None else training
        main = self.main_layer
        mask = tf.cast(attention_mask, hidden.dtype)[:, None, None, :]
        additive = (tf.cast(1.0, hidden.dtype) - mask) * tf.cast(-10000.0, hidden.dtype)
        head_mask = [None] * int(self.hf_config.num_hidden_layers)
        if self.kind == "bert":
            outputs = main.encoder(
                hidden_states=hidden, attention_mask=additive, head_mask=head_mask,
                encoder_hidden_states=None, encoder_attention_mask=None,
                past_key_values=[None] * len(head_mask), use_cache=False,
                output_attentions=False, output_hidden_states=False, return_dict=True,
                training=training)
        else:
            outputs = main.encoder(
                hidden_states=hidden, attention_mask=additive, head_mask=head_mask,
                output_attentions=False, output_hidden_states=False, return_dict=True,
                training=training)
        return outputs.last_hidden_state

    # ---------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | os.PathLike, safe_serialization: bool = True) -> None:
        save_text_encoder(self, directory, safe_serialization=safe_serialization)

    def get_config(self) -> dict[str, Any]:
        """Architecture only (the transformers config); `from_config` builds fresh weights."""
        config = super().get_config()
        config.update(kind=self.kind, hf_config=self.hf_config.to_dict(),
                      with_pooler=self.has_pooler)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TextEncoder":
        config = dict(config)
        kind = config.pop("kind")
        hf_config = _ENCODERS[kind][0].from_dict(config.pop("hf_config"))
        with_pooler = config.pop("with_pooler", True)
        hf_model = _ENCODERS[kind][1](hf_config)
        return cls(_finish(hf_model, kind, with_pooler), kind, **config)


def build_text_encoder(config: Any, *, with_pooler: bool = True,
                       name: str = "text_encoder") -> TextEncoder:
    """The text encoder a `ModelConfig` (or a mapping with the same keys) asks for.

    ``with_pooler=False`` drops BERT's pooler (families that do not use it would otherwise
    hold variables that never get a gradient). Variables are created here, so the encoder's
    trainable weights exist before the first call (and inside a distribution strategy's scope
    when called there).
    """
    if not isinstance(config, Mapping):
        config = {key: getattr(config, key) for key in _CONFIG_FIELDS if hasattr(config, key)}
    missing = [key for key in _CONFIG_FIELDS if key not in config]
    if missing:
        raise ValueError(f"text encoder config lacks {missing}")
    get = config.__getitem__
    kind = get("text_encoder")
    if kind not in _ENCODERS:
        raise ValueError(f"text_encoder must be one of {sorted(_ENCODERS)}, got {kind!r}")
    model_class = _ENCODERS[kind][1]
    directory = get("pretrained_text_dir")
    if directory:
        hf_model = _load_pretrained(kind, os.fspath(directory), int(get("vocab_size")))
    else:
        hf_model = model_class(text_encoder_hf_config(config))
    return TextEncoder(_finish(hf_model, kind, with_pooler), kind, name=name)


def text_encoder_hf_config(config: Any) -> Any:
    """The transformers config (`BertConfig` / `RoFormerConfig`) of the randomly initialised
    encoder a `ModelConfig` (or a mapping with its `text_*` keys) describes; builds no weights."""
    if not isinstance(config, Mapping):
        config = {key: getattr(config, key) for key in _CONFIG_FIELDS if hasattr(config, key)}
    kind = config["text_encoder"]
    if kind not in _ENCODERS:
        raise ValueError(f"text_encoder must be one of {sorted(_ENCODERS)}, got {kind!r}")
    return _ENCODERS[kind][0](
        vocab_size=int(config["vocab_size"]),
        hidden_size=int(config["text_hidden_size"]),
        num_hidden_layers=int(config["text_num_layers"]),
        num_attention_heads=int(config["text_num_heads"]),
        intermediate_size=int(config["text_intermediate_size"]),
        max_position_embeddings=int(config["text_max_position"]),
        hidden_dropout_prob=float(config["dropout"]),
        attention_probs_dropout_prob=float(config["dropout"]),
    )


def save_text_encoder(encoder: TextEncoder, directory: str | os.PathLike,
                      safe_serialization: bool = True) -> str:
    """Write ``encoder`` with transformers' `save_pretrained` (config.json + weights).

    Files are written to a temporary directory beside ``directory`` and moved into place one by
    one, so an interrupted save never leaves a half-written weights file under its final name.
    Returns the directory.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(directory) + ".", dir=parent)
    try:
        encoder.hf_model.save_pretrained(tmp, safe_serialization=safe_serialization)
        os.makedirs(directory, exist_ok=True)
        for filename in os.listdir(tmp):
            os.replace(os.path.join(tmp, filename), os.path.join(directory, filename))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _load_pretrained(kind: str, directory: str, vocab_size: int) -> Any:
    if not os.path.isfile(os.path.join(directory, "config.json")):
        raise FileNotFoundError(
            f"pretrained_text_dir {directory!r}: no config.json (expected a local transformers "
            f"checkpoint directory, e.g. a downloaded hfl/chinese-roberta-wwm-ext)")
    config_class, model_class, _ = _ENCODERS[kind]
    hf_config = config_class.from_pretrained(directory, local_files_only=True)
    if hf_config.model_type != config_class.model_type:
        raise ValueError(
            f"pretrained_text_dir {directory!r} holds a {hf_config.model_type!r} checkpoint but "
            f"text_encoder is {kind!r}")
    if hf_config.vocab_size != vocab_size:
        raise ValueError(
            f"pretrained_text_dir {directory!r} has vocab_size {hf_config.vocab_size} but the "
            f"config (tokenizer) says {vocab_size}: use the checkpoint's own vocabulary")
    return model_class.from_pretrained(directory, config=hf_config, local_files_only=True)


def _finish(hf_model: Any, kind: str, with_pooler: bool) -> Any:
    """Create all variables now (under the model's own name scope) and drop an unused pooler."""
    if not hf_model.built:
        hf_model.build_in_name_scope()
    main = getattr(hf_model, _ENCODERS[kind][2])
    if not with_pooler and getattr(main, "pooler", None) is not None:
        main.pooler = None  # untracked by Keras: its variables leave trainable_weights
    return hf_model
