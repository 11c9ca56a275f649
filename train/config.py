"""`TrainConfig`: every training knob in one frozen, validated dataclass, saved as JSON.

The config of a run is written to ``RUN_DIR/config.json`` before the first step (and again beside
the final checkpoint); a resumed run, a finetune of a pretrain run and the inference stage read it
back instead of repeating command-line flags.

Command-line overrides are ``key=value`` strings (``apply_overrides``). Values are parsed from the
field's annotation (``int``, ``float``, ``bool`` as true/false/1/0/yes/no, ``str``, ``str | None``
with ``none``/``null``, integer tuples as ``1,2,3`` or a JSON list). Nested model fields use a dot:
``model.text_num_layers=2``. An unknown key is an error naming the closest valid keys.

Finetune losses are written as a weighted sum, e.g. ``mse+0.5*kl+tag`` (``parse_loss_spec``);
the terms are ``mse``, ``cmse`` (MSE blind to a shift of the batch's cosines), ``mae``, ``kl`` (KL
over the batch), ``tag`` (tag loss on both videos) and ``lbpc`` (Pearson on softmax(cos/tau) over
the batch).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from typing import Any, Iterable, Mapping, Sequence

from models.config import LEGACY_KEYS, ModelConfig
from tfrecord_tools import layout
from tfrecord_tools.atomic import write_text_atomic

CONFIG_FILE = layout.CONFIG_FILE
STAGES = ("pretrain", "finetune")
DECAYS = ("cosine", "linear")
TARGET_TRANSFORMS = ("raw", "rank", "sigmoid")
FINETUNE_TERMS = ("mse", "cmse", "mae", "kl", "tag", "lbpc")
# Model fields that a run sets from its data when it starts (whatever the config said), so an
# override of them could only be lost or contradict the data: refused, with where they come from.
DATA_DERIVED = {
    "model.text.vocab_size": "the run's tokenizer (tokenizer_dir, model.text.pretrained_dir or the training titles)",
    "model.text.pad_token_id": "the run's tokenizer",
    "model.text.mask_token_id": "the run's tokenizer",
    "model.text.special_token_ids": "the run's tokenizer",
    "model.num_tags": "the run's tag list (tag_list=PATH; its number of lines)",
}
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and paths of one pretrain or finetune run (see the module docstring)."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    stage: str = "pretrain"  # "pretrain" | "finetune"

    # data (pretrain: the official layout; finetune: fold shards)
    data_dir: str = ""  # DATA: pointwise/pretrain_*.tfrecords, pairwise/, tag_list.txt
    pretrain_pairwise: bool = True  # pretrain also on the videos of pairwise/*.tfrecords
    tag_list: str = ""  # tag_list.txt; default DATA/tag_list.txt (or the pretrained run's copy)
    # error when fewer training tag occurrences are in the tag list, both of all and of the tags on 3
    # videos or more (a long tail of rare tags is no sign of a wrong list; train.data.input_summary)
    min_tag_coverage: float = 0.5
    folds_dir: str = ""  # finetune: the fold shards (folds.json, fold_XX.tfrecords)
    fold: int = 0  # finetune: validation shard; training = every other shard
    pretrained: str = ""  # finetune: a pretrain run directory (its config, tokenizer, final/)

    # tokenizer (when no pretrained text encoder / run provides one)
    tokenizer_dir: str = ""  # use this tokenizer directory instead of building one
    max_vocab: int = 21128  # size cap of a vocabulary built from the training titles
    vocab_min_count: int = 1

    # batching and length of training
    batch_size: int = 32  # GLOBAL batch: split over the replicas
    eval_batch_size: int = 64
    shuffle_buffer: int = 1024
    epochs: int = 1
    steps_per_epoch: int = 0  # 0: training records per epoch // batch_size
    max_steps: int = 0  # > 0: train exactly this many steps (instead of epochs * steps_per_epoch)

    # optimisation: two AdamW (text encoder / rest), warmup then decay, global-norm clipping
    lr_text: float = 3e-5
    lr_other: float = 5e-4
    warmup_steps: int = 0  # > 0 wins over warmup_ratio
    warmup_ratio: float = 0.06  # fraction of the total steps
    decay: str = "cosine"  # "cosine" | "linear"
    min_lr_ratio: float = 0.0  # final learning rate = peak * min_lr_ratio
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-6
    clip_norm: float = 1.0  # 0: no clipping

    # runtime
    seed: int = 42
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 3
    log_every_steps: int = 10
    steps_per_loop: int = 1  # training steps per host round trip (one tf.function call); see train/loop.py
    mixed_precision: bool = False  # mixed_float16 + loss scaling
    xla: bool = False  # jit_compile the forward/backward pass
    progress: bool = True  # tqdm progress bar

    # finetune
    finetune_losses: str = "mse+0.5*kl+tag"
    target_transform: str = "raw"  # "raw" | "rank" | "sigmoid"
    sigmoid_alpha: float = 5.0  # target = sigmoid(alpha * score) for "sigmoid" (seed team 000)
    lbpc_tau: float = 0.2
    kl_temperature: float = 0.1  # temperature of the batch KL term

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for field in dataclasses.fields(self):
            if field.name == "model":
                continue
            object.__setattr__(self, field.name, _check_value(
                f"TrainConfig.{field.name}", hints[field.name], getattr(self, field.name)))
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"TrainConfig.model must be a ModelConfig, got {type(self.model).__name__}")
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def _problems(self) -> Iterable[str]:
        if self.stage not in STAGES:
            yield f"stage must be one of {STAGES}, got {self.stage!r}"
        if not 0.0 <= self.min_tag_coverage <= 1.0:
            yield f"min_tag_coverage must be in [0, 1], got {self.min_tag_coverage}"
        if self.decay not in DECAYS:
            yield f"decay must be one of {DECAYS}, got {self.decay!r}"
        if self.target_transform not in TARGET_TRANSFORMS:
            yield f"target_transform must be one of {TARGET_TRANSFORMS}, got {self.target_transform!r}"
        for key in ("batch_size", "eval_batch_size", "shuffle_buffer", "epochs", "max_vocab",
                    "vocab_min_count", "checkpoint_every_steps", "keep_checkpoints", "log_every_steps",
                    "steps_per_loop"):
            if getattr(self, key) < 1:
                yield f"{key} must be >= 1, got {getattr(self, key)}"
        for key in ("steps_per_epoch", "max_steps", "warmup_steps", "fold"):
            if getattr(self, key) < 0:
                yield f"{key} must be >= 0, got {getattr(self, key)}"
        for key in ("lr_text", "lr_other", "adam_epsilon", "lbpc_tau", "kl_temperature", "sigmoid_alpha"):
            if not getattr(self, key) > 0:
                yield f"{key} must be > 0, got {getattr(self, key)}"
        for key in ("weight_decay", "clip_norm"):
            if getattr(self, key) < 0:
                yield f"{key} must be >= 0, got {getattr(self, key)}"
        for key in ("warmup_ratio", "min_lr_ratio"):
            if not 0.0 <= getattr(self, key) < 1.0:
                yield f"{key} must be in [0, 1), got {getattr(self, key)}"
        try:
            parse_loss_spec(self.finetune_losses)
        except ValueError as error:
            yield str(error)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; the model config nests under ``"model"``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        if not isinstance(data, Mapping):
            raise TypeError(f"TrainConfig.from_dict expects a mapping, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {unknown}; valid keys: {sorted(known)}")
        values = dict(data)
        if "model" in values and not isinstance(values["model"], ModelConfig):
            values["model"] = ModelConfig.from_dict(values["model"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with ``changes``; ``model`` may be a ModelConfig or a dict of its changes."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {unknown}; valid keys: {sorted(known)}")
        if isinstance(changes.get("model"), Mapping):
            changes["model"] = self.model.replace(**changes["model"])
        return dataclasses.replace(self, **changes)

    @property
    def loss_terms(self) -> tuple[tuple[str, float], ...]:
        """The parsed ``finetune_losses``: ``((term, weight), ...)``."""
        return parse_loss_spec(self.finetune_losses)


# ---------------------------------------------------------------------- loss specification
def parse_loss_spec(spec: str) -> tuple[tuple[str, float], ...]:
    """``"mse+0.5*kl+tag"`` -> ``(("mse", 1.0), ("kl", 0.5), ("tag", 1.0))``.

    Each ``+``-separated term is ``name`` or ``weight*name`` with a positive weight; names are
    `FINETUNE_TERMS` and may appear once.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"finetune_losses must be a non-empty sum like 'mse+0.5*kl+tag', got {spec!r}")
    terms: list[tuple[str, float]] = []
    for raw in spec.replace(" ", "").split("+"):
        if not raw:
            raise ValueError(f"finetune_losses {spec!r} has an empty term")
        weight_text, star, name = raw.rpartition("*")
        weight = 1.0
        if star:
            try:
                weight = float(weight_text)
            except ValueError:
                raise ValueError(f"finetune_losses {spec!r}: weight {weight_text!r} of {name!r} is not a number") from None
        if name not in FINETUNE_TERMS:
            raise ValueError(f"finetune_losses {spec!r}: unknown term {name!r}; expected one of {FINETUNE_TERMS}")
        if not weight > 0 or weight != weight or weight == float("inf"):
            raise ValueError(f"finetune_losses {spec!r}: weight of {name!r} must be a positive finite number")
        if any(name == seen for seen, _ in terms):
            raise ValueError(f"finetune_losses {spec!r}: term {name!r} appears twice")
        terms.append((name, weight))
    return tuple(terms)


# ---------------------------------------------------------------------- key=value overrides
def apply_overrides(config: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """``config`` with ``key=value`` overrides applied (``model.x=...`` for model fields)."""
    top: dict[str, Any] = {}
    model: dict[str, Any] = {}
    train_hints = _hints(TrainConfig)
    model_hints = model_key_types()
    for item in overrides:
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ValueError(f"override {item!r} is not key=value")
        if key.startswith("model."):  # nested (model.text.num_layers) or flat (model.text_num_layers)
            path = ModelConfig.key_path(key[len("model."):])
            if "model." + path in DATA_DERIVED:
                raise ValueError(f"override {key} is refused: a run sets it from {DATA_DERIVED['model.' + path]}")
            if path not in model_hints:
                raise ValueError(_unknown_key(key, ["model." + k for k in model_hints]
                                              + ["model." + k for k in LEGACY_KEYS]))
            model[path] = parse_value(key, model_hints[path], text)
        elif key == "model":
            raise ValueError("override 'model' directly is not supported; set model fields as model.NAME=VALUE")
        else:
            if key not in train_hints:
                raise ValueError(_unknown_key(key, [k for k in train_hints if k != "model"]
                                              + ["model." + k for k in model_hints]))
            top[key] = parse_value(key, train_hints[key], text)
    if model:
        top["model"] = config.model.replace(**model)
    return config.replace(**top) if top else config


def model_key_types() -> dict[str, Any]:
    """``{"dropout": float, "text.num_layers": int, ...}``: every leaf of `ModelConfig`, dotted."""
    types_: dict[str, Any] = {}
    for name, annotation in _hints(ModelConfig).items():
        if dataclasses.is_dataclass(annotation):
            types_.update({f"{name}.{field}": hint for field, hint in _hints(annotation).items()})
        else:
            types_[name] = annotation
    return types_


def parse_value(key: str, annotation: Any, text: str) -> Any:
    """Parse one override value by the field's type annotation; errors name the key."""
    text = text.strip()
    optional, base = _unwrap_optional(annotation)
    if optional and text.lower() in ("none", "null"):
        return None
    try:
        if base is bool:
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is str:
            return text
        if typing.get_origin(base) is tuple:
            items = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
            (element, *_rest) = typing.get_args(base)
            return tuple(element(item) if not isinstance(item, str) else element(item.strip()) for item in items)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValueError(f"override {key}={text!r}: expected {_type_name(annotation)}") from None
    raise ValueError(f"override {key}: fields of type {_type_name(annotation)} cannot be set from the command line")


def _unknown_key(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return f"unknown config key {key!r}{hint}"


# ---------------------------------------------------------------------- JSON next to checkpoints
def config_path(run_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(run_dir), CONFIG_FILE)


def save_config(config: TrainConfig, run_dir: str | os.PathLike) -> str:
    """Write ``run_dir/config.json`` atomically; returns its path."""
    path = config_path(run_dir)
    write_text_atomic(path, config.to_json())
    return path


def load_config(path_or_dir: str | os.PathLike) -> TrainConfig:
    """Read a config.json (or the config.json of a run directory); errors name the file."""
    path = os.fspath(path_or_dir)
    if os.path.isdir(path):
        path = config_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no training config (expected the config.json of a run directory)")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        return TrainConfig.from_json(text)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None


def config_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """``key: a -> b`` for every field that differs between two configs (nested with dots)."""
    out = []
    for field in dataclasses.fields(a):
        left, right = getattr(a, field.name), getattr(b, field.name)
        if dataclasses.is_dataclass(left) and dataclasses.is_dataclass(right):
            out.extend(config_differences(left, right, prefix + field.name + "."))
        elif left != right:
            out.append(f"{prefix}{field.name}: {left!r} -> {right!r}")
    return out


# ---------------------------------------------------------------------- type helpers
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(annotation: Any) -> tuple[bool, Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return True, args[0]
    return False, annotation


def _type_name(annotation: Any) -> str:
    optional, base = _unwrap_optional(annotation)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    name = names.get(base, "a comma-separated list of integers" if typing.get_origin(base) is tuple else str(base))
    return name + (" or none" if optional else "")


def _check_value(where: str, annotation: Any, value: Any) -> Any:
    """Type-check a field value; ints are accepted (and converted) for floats."""
    optional, base = _unwrap_optional(annotation)
    if value is None and optional:
        return None
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{where} must be an integer, got {value!r}")
    if base in (float, str, bool) and not isinstance(value, base):
        raise TypeError(f"{where} must be {_type_name(annotation)}, got {value!r}")
    return value
