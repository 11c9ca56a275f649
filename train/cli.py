"""The command lines of ``python -m train.pretrain`` and ``python -m train.finetune``, without
importing TensorFlow (so that ``--help``, ``--list-keys`` and usage errors answer at once).

* `pretrain_parser` / `finetune_parser`: ``--model NAME`` (a registry family or one of the six
  ensemble variants, argparse choices), ``--out DIR``, ``--preset P``, ``--config FILE`` (a JSON
  `TrainConfig`, e.g. a run's ``config.json``: replays that run), ``--list-keys``, ``--verbose``
  and ``key=value`` overrides;
* `pretrain_config` / `finetune_config`: the parsed command line -> `TrainConfig` (errors are
  ValueError / FileNotFoundError with a message meant for the user);
* `list_keys`: every overridable key with its type, default and a one-line help (the comment
  beside the field in `train.config` / `models.config`).
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
from typing import Any, Sequence

from models.config import LEGACY_KEYS, PRESETS, ModelConfig
from models.registry import MODELS, VARIANTS, finetune_recipe, variant_config
from tfrecord_tools import cli as common
from train.config import (DATA_DERIVED, TrainConfig, _hints, _type_name, apply_overrides, load_config)

MODEL_PRESETS = tuple(PRESETS)  # the size presets of models.config (tiny, small, full, large)


def model_names() -> list[str]:
    return sorted(set(MODELS) | set(VARIANTS))


def resolve_model_config(name: str, base: ModelConfig | None = None) -> ModelConfig:
    """``name`` (a family of `MODELS` or one of the six `VARIANTS`) applied to ``base``."""
    base = base if base is not None else ModelConfig()
    if name in VARIANTS:
        return variant_config(name, base)
    if name in MODELS:
        return base.replace(name=name)
    raise ValueError(f"unknown model {name!r}; choose a family or variant: {', '.join(model_names())}")


def base_model_config(name: str, preset: str | None) -> ModelConfig:
    """``name`` on the size ``preset`` (default: full size)."""
    base = ModelConfig.preset(preset or "full", name="baseline")
    return resolve_model_config(name, base)


# ---------------------------------------------------------------------- --list-keys
def _field_help(cls: type) -> dict[str, str]:
    """``{field: help}`` from the class source: the comment beside a field, else the comment line
    that heads its group."""
    helps: dict[str, str] = {}
    section = ""
    summary = (cls.__doc__ or "").strip().split("\n")[0].rstrip(".")  # a section's docstring, else
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            section = stripped.lstrip("# ").rstrip()
            continue
        match = re.match(r"(\w+): [^=]+=.*?(?:#\s*(.*))?$", stripped)
        if match:
            helps[match.group(1)] = (match.group(2) or section or summary).strip()
        elif not stripped:
            section = ""
    return helps


_FLAT_NAMES = {"model." + ".".join(path): flat for flat, path in LEGACY_KEYS.items()}


def _key_rows(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    rows = []
    hints, helps, defaults = _hints(cls), _field_help(cls), cls()
    for field in dataclasses.fields(cls):
        value = getattr(defaults, field.name)
        if dataclasses.is_dataclass(value):
            rows.extend(_key_rows(type(value), prefix + field.name + "."))
            continue
        key = prefix + field.name
        text = helps.get(field.name, "")
        if key in DATA_DERIVED:
            text = f"not overridable: set from {DATA_DERIVED[key]}"
        if key in _FLAT_NAMES:
            text = f"{text} (flat: model.{_FLAT_NAMES[key]})".lstrip()
        shown = list(value) if isinstance(value, tuple) else value
        rows.append((key, _type_name(hints[field.name]), repr(shown), text))
    return rows


def list_keys() -> str:
    """The ``key=value`` keys of `TrainConfig` (model fields as ``model.NAME``), one a line."""
    rows = [("key", "type", "default", "help")] + _key_rows(TrainConfig)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip()
                     for row in rows)


class _ListKeys(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(list_keys())
        parser.exit()


# ---------------------------------------------------------------------- parsers
class _StageParser(common.Parser):
    """``key=value`` overrides may come anywhere, also between options (plain ``parse_args`` ends the
    positional list at the first option after it: ``--out D k=v --data X`` was "unrecognized")."""

    def parse_args(self, args=None, namespace=None):
        return self.parse_intermixed_args(args, namespace)


def stage_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = _StageParser(prog=prog, description=description)
    parser.add_argument("--model", choices=model_names(), metavar="NAME",
                        help=f"model family or variant: {', '.join(model_names())}")
    parser.add_argument("--out", required=True, help="run directory (rerunning the same command resumes it)")
    parser.add_argument("--preset", choices=MODEL_PRESETS, default=None,
                        help="model size preset (default: full size; a finetune takes the pretrain run's)")
    parser.add_argument("--config", metavar="FILE",
                        help="start from this TrainConfig JSON (e.g. a run's config.json, or its run directory) "
                             "instead of --model/--preset; flags and key=value overrides still apply")
    parser.add_argument("--list-keys", action=_ListKeys,
                        help="list every key=value key (type, default, help) and exit")
    common.add_verbose(parser)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="TrainConfig overrides, model fields as model.NAME=VALUE (see --list-keys)")
    return parser


def pretrain_parser() -> argparse.ArgumentParser:
    parser = stage_parser("python -m train.pretrain", "Pretraining: a model's own pretraining losses on the "
                                                      "pointwise (+ pairwise) videos.")
    parser.add_argument("--data", help="data directory in the official layout")
    return parser


def finetune_parser() -> argparse.ArgumentParser:
    parser = stage_parser("python -m train.finetune", "Finetuning on one fold of the pair shards: cosine of the "
                                                      "two videos' embeddings vs the label.")
    parser.add_argument("--folds-dir", help="fold shards (folds.json, fold_XX.tfrecords)")
    parser.add_argument("--fold", type=int, help="validation fold; training = the other shards")
    parser.add_argument("--pretrained", default="", help="a pretrain run directory to start from")
    return parser


# ---------------------------------------------------------------------- command line -> TrainConfig
def _replayed(args: argparse.Namespace, stage: str) -> TrainConfig:
    """The ``--config`` file as the starting point (``--model`` may still pick a variant of it)."""
    if args.preset:
        raise ValueError("--preset cannot be combined with --config: the model sizes come from the config file")
    config = load_config(args.config).replace(stage=stage)
    if args.model:
        config = config.replace(model=resolve_model_config(args.model, config.model))
    return config


def pretrain_config(args: argparse.Namespace) -> TrainConfig:
    if args.config:
        config = _replayed(args, "pretrain")
        if args.data:
            config = config.replace(data_dir=os.path.abspath(args.data))
    else:
        if not args.model:
            raise ValueError("--model is required (or --config FILE)")
        config = TrainConfig(model=base_model_config(args.model, args.preset), stage="pretrain",
                             data_dir=os.path.abspath(args.data) if args.data else "")
    config = apply_overrides(config, args.overrides)
    if not config.data_dir:
        raise ValueError("--data is required (the data directory in the official layout)")
    return config


def check_finetune_args(args: argparse.Namespace) -> None:
    """`finetune_config` without the recipe: the command line's mistakes, before TensorFlow."""
    finetune_config(args, recipe=False)


def with_recipe(config: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """``config`` with its family's published finetune recipe (e.g. single_stream: rank targets +
    MSE), then ``overrides``, so that what the user writes on the command line wins."""
    recipe = [f"{key}={value}" for key, value in finetune_recipe(config.model.name).items()]
    return apply_overrides(config, [*recipe, *overrides])


def finetune_config(args: argparse.Namespace, recipe: bool = True) -> TrainConfig:
    """A replayed ``--config`` keeps its own loss settings; otherwise the family's recipe applies
    (``recipe=False``: not looked up, which would import the family and TensorFlow)."""
    changes: dict[str, Any] = {}
    if args.folds_dir:
        changes["folds_dir"] = os.path.abspath(args.folds_dir)
    if args.fold is not None:
        changes["fold"] = args.fold
    if args.pretrained:
        changes["pretrained"] = os.path.abspath(args.pretrained)
    if args.config:
        config = apply_overrides(_replayed(args, "finetune").replace(**changes), args.overrides)
    else:
        if not args.model:
            raise ValueError("--model is required (or --config FILE)")
        if args.fold is None:
            raise ValueError("--fold is required (the validation fold)")
        if args.pretrained:
            if args.preset:
                raise ValueError("--preset cannot be combined with --pretrained: "
                                 "the model config comes from the pretrain run")
            base = resolve_model_config(args.model, load_config(args.pretrained).model)
        else:
            base = base_model_config(args.model, args.preset)
        config = TrainConfig(model=base, stage="finetune", **changes)
        config = with_recipe(config, args.overrides) if recipe else apply_overrides(config, args.overrides)
    if not config.folds_dir:
        raise ValueError("--folds-dir is required (the fold shards written by write_tfrecord.py)")
    return config
