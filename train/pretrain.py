"""Pretraining: a model's own pretraining losses on the pointwise (+ pairwise) videos.

    python -m train.pretrain --model NAME --data DATA_DIR --out RUN/pretrain/NAME [--preset P] [key=value ...]

NAME is a registry family (baseline, mix_nextvlad, uniter) or one of the six ensemble variants
(mix, mix_asl, mix_roformer, uniter, uniter_asl, uniter_roformer). The run directory receives
``config.json`` (with the vocabulary sizes filled in), ``tokenizer/``, ``tag_list.txt``,
``ckpt/`` (resumable: rerun the same command), ``final/`` (model only, what a finetune restores)
and ``tensorboard/``.

Tokenizer: ``model.text.pretrained_dir``'s when set, else ``tokenizer_dir``, else a vocabulary built
from the training titles. Tags: ``tag_list`` (default ``DATA/tag_list.txt``).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Sequence

from tfrecord_tools import cli as common
from train import cli

if __name__ == "__main__":  # --help and usage errors before TensorFlow is imported (quietly) below
    common.early_parse(cli.pretrain_parser, check=cli.pretrain_config)

import tensorflow as tf

from models.base import example_features
from tfrecord_tools import provenance
from tfrecord_tools.reader import VideoDecoder
from train import data as data_lib
from train import frame_stats
from train import stage
from train import strategy as strategy_lib
from train.config import TrainConfig
from train.curves import report_curves
from train.loop import Trainer

COUNTS_FILE = "data_counts.json"


def pretrain_loss(model, batch, training: bool = True):
    """The model's own pretraining losses (weighted local-batch means)."""
    return model.pretrain_losses(batch, training=training)


@dataclasses.dataclass
class PretrainSetup:
    """A pretrain run ready to start: its final config, trainer and training stream."""

    config: TrainConfig
    trainer: Trainer
    stream: data_lib.TrainStream

    def train(self) -> dict:
        """Run the trainer; returns the last step's loss values."""
        return self.trainer.run()


def prepare_pretrain(config: TrainConfig, run_dir: str, strategy: tf.distribute.Strategy) -> PretrainSetup:
    """Everything before the first step: data, tags, tokenizer, config.json, model, trainer."""
    if config.stage != "pretrain":
        config = config.replace(stage="pretrain")
    if not config.data_dir:
        raise ValueError("pretraining needs data_dir (--data DATA_DIR)")
    # the inputs are checked before anything is written
    files = data_lib.pretrain_files(config.data_dir, config.pretrain_pairwise)
    tag_list = config.tag_list or os.path.join(config.data_dir, stage.TAG_LIST)
    stage.check_tag_list(tag_list)
    work_dir = strategy_lib.write_dir(run_dir, strategy)  # where this worker may write
    os.makedirs(work_dir, exist_ok=True)
    tags = stage.prepare_tags(tag_list, work_dir)
    # Records per file, md5s, ids (checked, unique) and tag coverage: one pass, cached for reruns.
    summary = data_lib.input_summary(files, tags, tag_list, cache_path=os.path.join(work_dir, COUNTS_FILE),
                                     min_coverage=config.min_tag_coverage)
    counts = summary["records"]
    recorded = provenance.read_run(run_dir)
    if recorded and recorded.get("data_files") and not provenance.same_contents(recorded["data_files"],
                                                                                 summary["files"]):
        raise provenance.ProvenanceError(run_dir, "the pretraining data changed since this run started ("
                                         f"{_first_change(recorded['data_files'], summary['files'])}); resuming would "
                                         "mix two data sets: use another --out, or delete the directory to start over")
    tokenizer = stage.prepare_tokenizer(config, work_dir, lambda: data_lib.stream_titles(
        files, include_asr=config.model.text_source != "title"))
    model_config = stage.with_tokenizer(config.model, tokenizer).replace(num_tags=tags.size)
    config = config.replace(model=model_config, tag_list=os.path.abspath(tag_list))
    stage.check_resumable(config, run_dir)
    stage.save_run_config(config, run_dir, strategy)
    if strategy_lib.is_chief(strategy):
        provenance.write_run(run_dir, {
            "stage": "pretrain", "data_files": summary["files"],
            "tag_list": provenance.tag_list_record(os.path.join(work_dir, stage.TAG_LIST), tags.size),
            "tokenizer_sha256": provenance.tree_digest(os.path.join(work_dir, stage.TOKENIZER_DIR)),
            "tags": summary["tags"]})

    model = stage.build_stage_model(config, strategy)
    if model_config.frame_normalization != "none":
        frame_stats.prepare_standardizer(model, work_dir, files, pairs=False, model_config=model_config,
                                         progress=config.progress)
    decoder = VideoDecoder(tokenizer=tokenizer, tag_vocab=tags, frame_dim=model_config.frame_dim,
                           max_frames=model_config.max_frames, title_len=model_config.title_len,
                           text_source=model_config.text_source)
    steps_per_epoch = config.steps_per_epoch or sum(counts) // config.batch_size
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    stream = data_lib.TrainStream(tuple(files), sum(counts), decoder, config.batch_size, config.seed,
                                  config.shuffle_buffer, stop_step=total_steps)
    build_batch = data_lib.numeric_features(example_features(model_config))
    with strategy.scope():
        trainer = Trainer(config=config, strategy=strategy, model=model, loss_fn=pretrain_loss, run_dir=run_dir,
                          dataset_fn=stream.dataset, build_batch=build_batch, total_steps=total_steps,
                          steps_per_epoch=steps_per_epoch)
    return PretrainSetup(config, trainer, stream)


def _first_change(recorded: list, current: list) -> str:
    if len(recorded) != len(current):
        return f"{len(recorded)} files then, {len(current)} now"
    for then, now in zip(recorded, current):
        if (then["bytes"], then["md5"]) != (now["bytes"], now["md5"]):
            return (f"{now['path']}: {now['bytes']} bytes md5 {now['md5'][:12]} now, {then['bytes']} bytes md5 "
                    f"{then['md5'][:12]} when the run started")
    return "same files"


def run_pretrain(config: TrainConfig, run_dir: str, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Pretrain (or resume) into ``run_dir``; returns the last step's loss values."""
    strategy = strategy or strategy_lib.make_strategy()
    run_dir = os.path.abspath(run_dir)
    with stage.run_lock(run_dir, "train.pretrain", strategy):  # a second writer of run_dir stops at once
        values = prepare_pretrain(config, run_dir, strategy).trainer.run()
        strategy_lib.remove_temporary(run_dir, strategy)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.pretrain_parser().parse_args(argv)
    setup, values, run_dir, chief = stage.command_line_run("python -m train.pretrain", args, cli.pretrain_config,
                                                           prepare_pretrain)
    if chief:
        print(f"pretrain {args.model or setup.config.model.name}: done in {run_dir}"
              + (f" (last loss {values['loss']:.4f})" if "loss" in values else ""))
        print(report_curves(run_dir))
        print(stage.tag_summary_line(provenance.read_run(run_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
