"""Set-up shared by the pretrain and finetune entry points.

* `stage_parser`, `resolve_model_config`, `base_model_config` live in `train.cli` (no TensorFlow)
  and are imported here too;
* `prepare_tokenizer` / `with_tokenizer`: the title tokenizer of a run (a pretrained text
  encoder's, a given directory, or a vocabulary built from the training titles) copied to
  ``RUN/tokenizer/``, and the model config's vocabulary fields set from it;
* `prepare_tags`: the tag vocabulary, copied to ``RUN/tag_list.txt`` (its size is ``num_tags``);
* `check_resumable` / `save_run_config`: ``RUN/config.json`` written before the first step; a
  rerun with the same command resumes, a rerun with another config is refused;
* `set_precision`, `build_stage_model`.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterable, Sequence

import tf_keras as keras

from models.config import ModelConfig
from models.registry import build_model
from tfrecord_tools import cli as cli_common
from tfrecord_tools import layout, locks
from tfrecord_tools.tags import TagVocab
from tfrecord_tools.tokenization import build_vocab, load_tokenizer, save_tokenizer
from train import randomness
from train import strategy as strategy_lib
from train.cli import (MODEL_PRESETS, base_model_config, model_names, resolve_model_config,  # noqa: F401
                       stage_parser)
from train.config import TrainConfig, config_differences, config_path, load_config, save_config

TOKENIZER_DIR = layout.TOKENIZER_DIR
TAG_LIST = layout.TAG_LIST
# Fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("progress", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "eval_batch_size",
                     "steps_per_loop")


# ---------------------------------------------------------------------- the entry points
# a bad command line or input, or a run directory another process writes: one line, exit 2
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, locks.LockedError)


def command_line_run(prog: str, args, make_config: Callable, prepare: Callable):
    """What ``python -m train.pretrain`` / ``train.finetune`` do with their parsed ``args``: the
    config (``make_config(args)``), the strategy (TensorFlow's device log lines hidden unless
    --verbose), the run directory's writer lock (a second writer stops at once), ``prepare(config,
    run_dir, strategy)`` (a refused set-up leaves no new run directory behind), ``setup.train()``;
    returns ``(setup, values, run_dir, chief)``."""
    with cli_common.user_errors(prog, *USER_ERRORS):
        config = make_config(args)
    with cli_common.native_logs_hidden(args.verbose):
        strategy = strategy_lib.make_strategy()  # before any other TensorFlow op (multi-worker)
    run_dir = os.path.abspath(args.out)
    with contextlib.ExitStack() as held:
        with cli_common.user_errors(prog, *USER_ERRORS), cli_common.removed_on_error(run_dir):
            held.enter_context(run_lock(run_dir, prog, strategy))
            setup = prepare(config, run_dir, strategy)
        values = setup.train()
        strategy_lib.remove_temporary(run_dir, strategy)
    return setup, values, run_dir, strategy_lib.is_chief(strategy)


# ---------------------------------------------------------------------- tokenizer and tags
def prepare_tokenizer(config: TrainConfig, run_dir: str, titles: Callable[[], Iterable[bytes]] | None,
                      source_dir: str | None = None):
    """Load (or build) the run's tokenizer and keep a copy in ``run_dir/tokenizer``; returns it.

    Priority: ``source_dir`` (a pretrain run's tokenizer), ``model.text.pretrained_dir``,
    ``tokenizer_dir``, an existing ``run_dir/tokenizer`` (resume), else `build_vocab` over
    ``titles()`` (``max_vocab``, ``vocab_min_count``).
    """
    kind = config.model.text.kind
    target = os.path.join(run_dir, TOKENIZER_DIR)
    source = source_dir or config.model.text.pretrained_dir or config.tokenizer_dir or None
    if source:
        tokenizer = load_tokenizer(source, kind)
        if not os.path.isfile(os.path.join(target, "vocab.txt")):
            save_tokenizer(tokenizer, target)  # not save_pretrained: it breaks a live RoFormer tokenizer
        return tokenizer
    if not os.path.isfile(os.path.join(target, "vocab.txt")):
        build_vocab(titles(), target, kind=kind, max_size=config.max_vocab, min_count=config.vocab_min_count)
    return load_tokenizer(target, kind)


def with_tokenizer(model: ModelConfig, tokenizer) -> ModelConfig:
    """``model`` with vocab_size / pad / mask / special ids taken from ``tokenizer``."""
    specials = tuple(sorted(set(int(i) for i in tokenizer.all_special_ids)))
    return model.replace(text={"vocab_size": len(tokenizer), "pad_token_id": int(tokenizer.pad_token_id),
                               "mask_token_id": int(tokenizer.mask_token_id), "special_token_ids": specials})


def check_tag_list(tag_list: str) -> None:
    if not tag_list or not os.path.isfile(tag_list):
        raise FileNotFoundError(f"{tag_list or '(none)'}: tag list not found (set tag_list=PATH/tag_list.txt)")


def prepare_tags(tag_list: str, run_dir: str) -> TagVocab:
    """The tag vocabulary of ``tag_list``, copied to ``run_dir/tag_list.txt``."""
    check_tag_list(tag_list)
    vocab = TagVocab.from_file(tag_list)
    target = os.path.join(run_dir, TAG_LIST)
    if os.path.abspath(tag_list) != os.path.abspath(target) and os.path.isfile(target):
        if TagVocab.from_file(target) != vocab:  # a rerun must not swap the tag list under the checkpoints
            raise ValueError(f"{tag_list}: differs from {target}, the tag list this run was started with; use "
                             "another --out, or delete the directory to start over")
    if os.path.abspath(tag_list) != os.path.abspath(target):
        os.makedirs(run_dir, exist_ok=True)
        vocab.save(target)
    return vocab


# ---------------------------------------------------------------------- run directory
def check_resumable(config: TrainConfig, run_dir: str, also_allowed: Sequence[str] = ()) -> None:
    """Refuse to continue a run directory that holds a run with another config (``also_allowed``:
    keys that may change too, beside `RESUMABLE_CHANGES`)."""
    if not os.path.isfile(config_path(run_dir)):
        return
    saved = load_config(run_dir)
    changes = [line for line in config_differences(saved, config)
               if line.split(":", 1)[0] not in (*RESUMABLE_CHANGES, *also_allowed)]
    if changes:
        raise ValueError(f"{run_dir} holds a run with another config ({'; '.join(changes)}); "
                         f"use another --out, or delete the directory to start over")


def save_run_config(config: TrainConfig, run_dir: str, strategy) -> None:
    if strategy_lib.is_chief(strategy):
        save_config(config, run_dir)


def set_precision(config: TrainConfig) -> None:
    keras.mixed_precision.set_global_policy("mixed_float16" if config.mixed_precision else "float32")


def build_stage_model(config: TrainConfig, strategy):
    """Seeded, generator-backed randomness, precision policy, then the model inside the strategy scope."""
    randomness.seed_everything(config.seed)
    set_precision(config)
    with strategy.scope():
        return build_model(config.model)


def tag_summary_line(record: dict | None) -> str:
    """The run summary's line on tag coverage (from provenance.json's ``tags``)."""
    tags = (record or {}).get("tags")
    if not tags:
        return "tags: coverage not recorded"
    return (f"tags: {tags['tags_matched']} of {tags['tag_occurrences']} tag occurrences of the training videos in "
            f"the tag list ({tags['coverage']:.1%}); {tags['tags_unmatched']} unmatched "
            f"({tags['distinct_unmatched_tags']} distinct tags), {tags['videos_without_known_tag']} videos without "
            "a known tag")


def run_lock(run_dir: str, purpose: str, strategy):
    """The run directory's writer lock (``tfrecord_tools.locks``), taken by the chief only: the
    other workers of a cluster write their own temporary directories."""
    if strategy_lib.is_chief(strategy):
        return locks.locked(run_dir, purpose)
    return contextlib.nullcontext()
