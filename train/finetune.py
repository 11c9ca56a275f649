"""Finetuning on one fold of the pair shards: cosine of the two videos' embeddings vs the label.

    python -m train.finetune --model NAME --folds-dir DATA/folds --fold K --out RUN/finetune/NAME/fold_KK \
        [--pretrained RUN/pretrain/NAME] [--preset P] [key=value ...]

Training reads every shard except ``fold_KK`` (together), validation is ``fold_KK``. Both videos of
a pair go through the same model; the cosine of their L2-normalised embeddings is trained towards
the (transformed) label with a weighted sum of losses (``finetune_losses``, e.g.
``mse+0.5*kl+tag``):

    mse   mean (cos - target)^2           mae   mean |cos - target|
    cmse  mse of cos and target each minus its batch mean (blind to the cosines' level)
    kl    KL(softmax(target/T) || softmax(cos/T)) over the pairs of the batch (T = kl_temperature)
    lbpc  1 - Pearson(softmax(cos/tau) over the batch, target)          (tau = lbpc_tau)
    tag   the model's tag loss (BCE or ASL) on both videos

Targets (``target_transform``): ``raw`` labels, ``rank`` (rankdata of the fold's training labels
mapped to [0, 1], fitted once before training) or ``sigmoid`` (sigmoid(sigmoid_alpha * label)).
Batch terms (cmse, kl, lbpc) are computed over each replica's part of the batch.

At the end of every epoch the whole validation shard is embedded and the Spearman correlation of
cosine vs label is computed (``scipy.stats.spearmanr``); ``metrics.json`` lists it per epoch and
``best/`` holds the model of the best epoch.

``--pretrained RUN/pretrain/NAME``: the model config, tokenizer and tag list come from that run,
and ``model.restore_targets()`` are restored from its ``final/`` checkpoint before the first step
(a model config that differs from the pretrain run's is an error). Without it the tokenizer
vocabulary is built from the training titles and the tag list is ``tag_list`` (default: the
``tag_list.txt`` of the data set the shards were written from).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import sys
from typing import Callable, Sequence

from tfrecord_tools import cli as common
from train import cli

if __name__ == "__main__":  # --help and usage errors before TensorFlow is imported (quietly) below
    common.early_parse(cli.finetune_parser, check=cli.check_finetune_args)

import numpy as np
import scipy.stats
import tensorflow as tf

from models import losses
from models.base import example_features, tag_loss
from models.config import ModelConfig
from tfrecord_tools import folds as folds_lib
from tfrecord_tools import layout, provenance
from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.reader import VideoDecoder
from train import checkpointing
from train import data as data_lib
from train import frame_stats
from train import stage
from train import strategy as strategy_lib
from train import wide_path
from train.cli import with_recipe  # noqa: F401  (kept importable from here)
from train.config import TrainConfig, config_differences, load_config
from train.curves import report_curves
from train.loop import Trainer

METRICS_FILE = layout.METRICS_FILE
TAGS_FILE = "data_counts.json"  # cached pass over the training shards (records, md5s, tag coverage)


# ---------------------------------------------------------------------- losses
def joined_videos(batch) -> dict:
    """Both videos of each pair as one batch of 2B videos (first all video_1, then all video_2)."""
    first, second = batch["video_1"], batch["video_2"]
    return {key: tf.concat([first[key], second[key]], axis=0) for key in first}


def pair_cosine(model, batch, training: bool) -> tuple[tf.Tensor, dict]:
    """Cosine [B] of the two videos' embeddings, and the model outputs on the joined 2B batch."""
    outputs = model(joined_videos(batch), training=training)
    first, second = tf.split(outputs["embedding"], 2, axis=0)
    return losses.cosine_similarity(first, second), outputs


def make_finetune_loss(config: TrainConfig):
    """``loss_fn(model, batch) -> {term: weight * value}`` for ``config.finetune_losses``."""
    terms = config.loss_terms
    model_config = config.model

    def loss_fn(model, batch, training: bool = True):
        cos, outputs = pair_cosine(model, batch, training=training)
        target = batch["target"]
        values = {}
        for name, weight in terms:
            if name == "mse":
                value = losses.mse_loss(cos, target)
            elif name == "cmse":
                value = losses.centred_mse_loss(cos, target)
            elif name == "mae":
                value = losses.mae_loss(cos, target)
            elif name == "kl":
                value = losses.batch_kl_loss(cos, target, config.kl_temperature)
            elif name == "lbpc":
                value = losses.lbpc_loss(cos, target, config.lbpc_tau)
            else:  # "tag": both videos (the joined batch)
                value = tag_loss(model_config.tags, joined_videos(batch)["tags"], outputs["tag_logits"])
            values[name] = weight * value
        return values

    return loss_fn


def make_target_fn(config: TrainConfig, train_files: Sequence[str]):
    """Label -> training target by ``target_transform`` (rank: fitted on the training labels once)."""
    if config.target_transform == "raw":
        return None
    if config.target_transform == "sigmoid":
        alpha = config.sigmoid_alpha
        return lambda sim: losses.sigmoid_transform(sim, alpha)
    normaliser = losses.rank_normalise(data_lib.pair_labels(train_files))
    return normaliser.tf_call


# ---------------------------------------------------------------------- validation
class Validator:
    """Embeds a validation shard and computes the Spearman of cosine vs label.

    Not distributed: in a cluster every worker computes the same number, so all of them take the
    same (collective) decision to save ``best/``.
    """

    def __init__(self, model, val_file: str, decoder: VideoDecoder, batch_size: int):
        self.model = model
        self.dataset = data_lib.validation_pairs(val_file, decoder, batch_size)
        self._cosine = tf.function(lambda batch: pair_cosine(model, batch, training=False)[0])

    def cosines_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        cosines, labels = [], []
        for batch in self.dataset:
            numeric = data_lib.numeric_features(batch)
            cosines.append(self._cosine({"video_1": numeric["video_1"], "video_2": numeric["video_2"]}).numpy())
            labels.append(batch["sim"].numpy())
        return np.concatenate(cosines), np.concatenate(labels)

    def spearman(self) -> float:
        cosines, labels = self.cosines_and_labels()
        if len(labels) < 2 or np.all(cosines == cosines[0]):
            return float("nan")
        return float(scipy.stats.spearmanr(cosines, labels).correlation)


class EpochMetrics:
    """``metrics.json``: validation Spearman per epoch and the best epoch (kept across resumes)."""

    def __init__(self, run_dir: str, fold: int, model_name: str, writes: bool):
        self.path = os.path.join(run_dir, METRICS_FILE)
        self.writes = writes
        self.data = {"model": model_name, "fold": fold, "epochs": [], "best": None}
        if os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as handle:
                self.data = json.load(handle)

    @property
    def best(self) -> float:
        best = self.data.get("best")
        return best["val_spearman"] if best else -math.inf

    def record(self, epoch: int, step: int, spearman: float) -> bool:
        """Add an epoch (replacing an earlier record of it); True when it is the new best."""
        entry = {"epoch": epoch, "step": step, "val_spearman": spearman if math.isfinite(spearman) else None}
        epochs = [e for e in self.data["epochs"] if e["epoch"] != epoch] + [entry]
        self.data["epochs"] = sorted(epochs, key=lambda e: e["epoch"])
        improved = math.isfinite(spearman) and spearman > self.best
        if improved:
            self.data["best"] = dict(entry)
        return improved

    def save(self) -> None:
        if self.writes:
            write_text_atomic(self.path, json.dumps(self.data, indent=2) + "\n")


# ---------------------------------------------------------------------- the run
def default_tag_list(folds_dir: str) -> str:
    """``tag_list.txt`` of the data set the shards were written from (DATA/pairwise/x -> DATA/)."""
    info = folds_lib.read_folds_info(folds_dir)
    for path in info.get("pairwise_files", []):
        candidate = os.path.join(os.path.dirname(os.path.dirname(path)), stage.TAG_LIST)
        if os.path.isfile(candidate):
            return candidate
    return ""


def _digest_or_none(run_dir: str) -> str | None:
    record = provenance.read_run(run_dir)
    return provenance.record_digest(record) if record else None


# model keys a finetune may set apart from its pretrain run: how the wide path is fitted when the
# finetune starts (no variable shapes, nothing pretraining used)
FINETUNE_ONLY_MODEL_KEYS = ("wide.transductive", "wide.max_fit_videos", "wide.text_basis", "wide.frame_space",
                            "wide.tag_ridge_alpha", "wide.metric_diagonal", "wide.frame_tags_alpha", "wide.lsa_dim",
                            "wide.frame_words_power", "wide.frame_words_fit_videos", "wide.rare_words_max_df")


def check_pretrained_model(pretrained: TrainConfig, model: ModelConfig, run: str) -> None:
    differences = [d for d in config_differences(pretrained.model, model)
                   if d.split(":")[0] not in FINETUNE_ONLY_MODEL_KEYS]
    if differences:
        raise ValueError(f"the finetune model config differs from the pretrain run {run}: {'; '.join(differences)}")


@dataclasses.dataclass
class FinetuneSetup:
    """A finetune run ready to start: its final config, trainer (with validation hook) and metrics."""

    config: TrainConfig
    trainer: Trainer
    metrics: EpochMetrics
    validate: Callable[[int, int], dict] | None = None  # the trainer's on_epoch_end

    def train(self) -> dict:
        """Run the trainer; when ``max_steps`` ends inside an epoch, validate the final model too, so
        that the run has a score and a metrics.json (embed_all refuses runs without one)."""
        self.trainer.run()
        total, per_epoch = self.trainer.total_steps, self.trainer.steps_per_epoch
        if self.validate is not None and not any(entry["step"] == total for entry in self.metrics.data["epochs"]):
            self.validate(math.ceil(total / per_epoch), total)
        return self.metrics.data


def wide_data_dir(config: TrainConfig, pretrain_config: TrainConfig | None) -> str:
    """Where the wide path finds unlabelled and test videos: the finetune's own ``data_dir`` if set,
    else the pretrain run's."""
    return config.data_dir or (pretrain_config.data_dir if pretrain_config is not None else "")


def test_files(data_dir: str) -> list[str]:
    """``DATA/test_a/*.tfrecords`` (the videos a submission scores); none without a data directory."""
    if not data_dir:
        return []
    return sorted(glob.glob(os.path.join(data_dir, layout.TEST_DIR, "*" + layout.RECORD_SUFFIX)))


def unlabelled_files(data_dir: str) -> list[str]:
    """The pointwise files of ``data_dir`` (unlabelled videos for the wide path's TF-IDF, LSA and
    whitening); none without a data directory or when its data is gone (said on stderr)."""
    if not data_dir:
        return []
    try:
        return data_lib.pretrain_files(data_dir, include_pairwise=False)
    except FileNotFoundError as error:
        print(f"wide path: no unlabelled videos ({error}); fitting on the training pairs' videos only",
              file=sys.stderr)
        return []


def prepare_finetune(config: TrainConfig, run_dir: str, strategy: tf.distribute.Strategy) -> FinetuneSetup:
    """Everything before the first step; the inputs (fold shards, pretrain run, tag list) are
    checked before anything is written."""
    if config.stage != "finetune":
        config = config.replace(stage="finetune")
    if not config.folds_dir:
        raise ValueError("finetuning needs folds_dir (--folds-dir DATA/folds)")
    chief = strategy_lib.is_chief(strategy)
    info = folds_lib.read_folds_info(config.folds_dir)  # shards verified (size, records, md5)
    train_files, val_file = folds_lib.fold_files(config.folds_dir, config.fold)
    records = sum(entry["pairs"] for entry in info["folds"] if entry["fold"] != config.fold)
    folds_now = provenance.folds_record(info, config.folds_dir)
    recorded = provenance.read_run(run_dir) or {}
    provenance.check_same_folds(
        recorded.get("folds"), folds_now, f"the run {run_dir} (provenance.json)",
        os.path.join(config.folds_dir, folds_lib.FOLDS_JSON),
        "the folds were rewritten since this run started: resuming would train on validation pairs; finetune "
        "into a new --out (or restore the old folds)")

    pretrained_final = pretrain_config = None
    if config.pretrained:
        pretrain_config = load_config(config.pretrained)
        pretrained_final = os.path.join(config.pretrained, checkpointing.FINAL_DIR)
        checkpointing.latest_checkpoint(pretrained_final)  # fail now if the pretrain run has not finished
        tag_list = pretrain_config.tag_list
        stage.check_tag_list(os.path.join(config.pretrained, stage.TAG_LIST))
    else:
        tag_list = config.tag_list or default_tag_list(config.folds_dir)
        stage.check_tag_list(tag_list)
    work_dir = strategy_lib.write_dir(run_dir, strategy)
    os.makedirs(work_dir, exist_ok=True)

    if config.pretrained:
        tags = stage.prepare_tags(os.path.join(config.pretrained, stage.TAG_LIST), work_dir)
        tokenizer = stage.prepare_tokenizer(config, work_dir, titles=None,
                                            source_dir=os.path.join(config.pretrained, stage.TOKENIZER_DIR))
    else:
        tags = stage.prepare_tags(tag_list, work_dir)
        tokenizer = stage.prepare_tokenizer(config, work_dir, lambda: data_lib.stream_titles(
            train_files, pairs=True, include_asr=config.model.text_source != "title"))
    model_config = stage.with_tokenizer(config.model, tokenizer).replace(num_tags=tags.size)
    if config.pretrained:
        check_pretrained_model(pretrain_config, model_config, config.pretrained)
    config = config.replace(model=model_config, tag_list=os.path.abspath(tag_list) if tag_list else "")
    # data_dir feeds only the wide path's fit: once that is saved, a run may go on without it or with another
    fitted = os.path.isfile(os.path.join(run_dir, wide_path.WIDE_FILE)) or not model_config.wide.enabled
    stage.check_resumable(config, run_dir, also_allowed=("data_dir",) if fitted else ())
    tag_summary = data_lib.input_summary(train_files, tags, os.path.join(work_dir, stage.TAG_LIST), pairs=True,
                                         cache_path=os.path.join(work_dir, TAGS_FILE),
                                         min_coverage=config.min_tag_coverage)["tags"]
    stage.save_run_config(config, run_dir, strategy)
    if chief:
        provenance.write_run(run_dir, {
            "stage": "finetune", "folds": folds_now, "fold": config.fold,
            "validation_shard": {"file": info["folds"][config.fold]["file"],
                                 "md5": info["folds"][config.fold]["md5"]},
            "tag_list": provenance.tag_list_record(os.path.join(work_dir, stage.TAG_LIST), tags.size),
            "tokenizer_sha256": provenance.tree_digest(os.path.join(work_dir, stage.TOKENIZER_DIR)),
            "pretrained": ({"dir": config.pretrained, "provenance_sha256": _digest_or_none(config.pretrained)}
                           if config.pretrained else None),
            "tags": tag_summary})

    model = stage.build_stage_model(config, strategy)
    if pretrained_final:
        checkpointing.restore_pretrained(model, pretrained_final)
    if model_config.frame_normalization != "none":
        frame_stats.prepare_standardizer(model, work_dir, train_files, pairs=True, model_config=model_config,
                                         writes=chief, progress=config.progress, inherit_from=config.pretrained or None)
    decoder = VideoDecoder(tokenizer=tokenizer, tag_vocab=tags, frame_dim=model_config.frame_dim,
                           max_frames=model_config.max_frames, title_len=model_config.title_len,
                           text_source=model_config.text_source)
    if model_config.wide.enabled:
        data_dir = wide_data_dir(config, pretrain_config)
        wide_path.prepare_wide_path(model, work_dir, train_files, unlabelled_files(data_dir),
                                    decoder, tokenizer, model_config, writes=chief, progress=config.progress,
                                    seed=config.seed, validation_files=[val_file], test_files=test_files(data_dir))
    steps_per_epoch = config.steps_per_epoch or records // config.batch_size
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    stream = data_lib.TrainStream(tuple(train_files), records, decoder, config.batch_size, config.seed,
                                  config.shuffle_buffer, pairs=True,
                                  target_fn=make_target_fn(config, train_files), stop_step=total_steps)
    validator = Validator(model, val_file, decoder, config.eval_batch_size)
    # Every worker reads the chief's metrics (the best so far decides the collective best/ save).
    metrics = EpochMetrics(run_dir, config.fold, config.model.name, writes=chief)
    build_batch = data_lib.numeric_features({"video_1": example_features(model_config, seed=1),
                                             "video_2": example_features(model_config, seed=2),
                                             "sim": tf.zeros([2]), "target": tf.zeros([2])})

    with strategy.scope():
        trainer = Trainer(config=config, strategy=strategy, model=model, loss_fn=make_finetune_loss(config),
                          run_dir=run_dir, dataset_fn=stream.dataset, build_batch=build_batch,
                          total_steps=total_steps, steps_per_epoch=steps_per_epoch)

    def on_epoch_end(epoch: int, step: int) -> dict:
        spearman = validator.spearman()
        if metrics.record(epoch, step, spearman):
            trainer.checkpoints.save_model(checkpointing.BEST_DIR)
        metrics.save()
        return {"val/spearman": spearman}

    trainer.on_epoch_end = on_epoch_end
    return FinetuneSetup(config, trainer, metrics, on_epoch_end)


def run_finetune(config: TrainConfig, run_dir: str, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Finetune (or resume) one fold into ``run_dir``; returns the metrics.json content."""
    strategy = strategy or strategy_lib.make_strategy()
    run_dir = os.path.abspath(run_dir)
    with stage.run_lock(run_dir, "train.finetune", strategy):  # one writer per run directory
        setup = prepare_finetune(config, run_dir, strategy)
        setup.train()
    strategy_lib.remove_temporary(run_dir, strategy)
    return setup.metrics.data


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.finetune_parser().parse_args(argv)
    setup, _, run_dir, chief = stage.command_line_run("python -m train.finetune", args, cli.finetune_config,
                                                      prepare_finetune)
    if chief:
        best = setup.metrics.data.get("best") or {}
        print(f"finetune {args.model or setup.config.model.name} fold {setup.config.fold}: best val spearman "
              f"{best.get('val_spearman', float('nan'))} at epoch {best.get('epoch')} in {run_dir}")
        print(report_curves(run_dir))
        print(stage.tag_summary_line(provenance.read_run(run_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
