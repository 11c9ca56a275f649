"""Embeddings of any record file from a trained run directory.

A run directory (``RUN/finetune/<model>/fold_XX`` or ``RUN/pretrain/<model>``) holds its
``config.json``, ``tokenizer/`` and model-only checkpoints (``best/`` for finetune runs,
``final/`` for both). `load_run` rebuilds the model from the config and restores the checkpoint;
`embed_videos` streams a pointwise / pairwise / test file through it in batches and
`embed_pair_shard` embeds the distinct videos of a fold's validation shard and keeps its pairs,
so out-of-fold Spearman needs nothing but the ``.npz`` files (see ``infer/embeddings_io.py``).

    python -m infer.embed --run RUN/finetune/uniter/fold_00 --records DATA/test_a/test_a.tfrecords \
        --kind test --out RUN/embeddings/uniter/fold_00/test.npz
    python -m infer.embed --run RUN/finetune/uniter/fold_00 --val-shard --out .../val.npz

Embeddings are float32 and not normalised (the evaluation and ensembling L2-normalise).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Sequence

from infer import cli
from tfrecord_tools import cli as common

if __name__ == "__main__":  # --help and usage errors before TensorFlow is imported (quietly) below
    common.early_parse(cli.embed_parser)

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from infer.embeddings_io import make_pairs, save_embeddings
from models.registry import build_model
from tfrecord_tools import folds as folds_lib
from tfrecord_tools import layout, provenance, reader, schema
from tfrecord_tools.errors import DataError
from tfrecord_tools.tokenization import load_tokenizer
from train import checkpointing, stage
from train import wide_gate as wide_gate_lib
from train.config import TrainConfig, load_config
from train.data import numeric_features

CHECKPOINTS = cli.CHECKPOINTS


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedRun:
    """A trained model ready to embed: its config, the model and the decoder of its inputs."""

    run_dir: str
    config: TrainConfig
    model: object
    decoder: reader.VideoDecoder
    checkpoint: str
    run_provenance: dict | None = None  # RUN/provenance.json (None: a run from before it was recorded)

    def embed_batch(self, features: dict) -> np.ndarray:
        return self._embed(numeric_features(features)).numpy()

    @property
    def _embed(self):
        # One traced function per run (cached on the instance; dataclass is frozen).
        cached = self.__dict__.get("_embed_fn")
        if cached is None:
            model = self.model
            cached = tf.function(reduce_retracing=True)(lambda features: tf.cast(model(features, training=False)["embedding"], tf.float32))
            object.__setattr__(self, "_embed_fn", cached)
        return cached


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", wide_gate: bool = True) -> LoadedRun:
    """Rebuild the model of ``run_dir`` from its config.json and restore ``checkpoint``.

    ``checkpoint="best"`` falls back to ``final`` for runs without validation (pretrain runs).
    ``wide_gate``: set the wide path's gate chosen by ``train.wide_gate`` (the run's
    ``wide_gate.json``, if any); False keeps the checkpoint's trained gate.
    """
    run_dir = os.path.abspath(os.fspath(run_dir))
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    config = load_config(run_dir)
    tokenizer = load_tokenizer(os.path.join(run_dir, stage.TOKENIZER_DIR), config.model.text_encoder)
    keras_policy = "mixed_float16" if config.mixed_precision else "float32"
    import tf_keras as keras

    keras.mixed_precision.set_global_policy(keras_policy)
    model = build_model(config.model)
    directory = os.path.join(run_dir, checkpoint)
    if checkpoint == layout.BEST_DIR and tf.train.latest_checkpoint(directory) is None:
        directory = os.path.join(run_dir, checkpointing.FINAL_DIR)
    path = checkpointing.restore_model(model, directory)
    if wide_gate:
        wide_gate_lib.apply_gate(model, run_dir, path)
    decoder = reader.VideoDecoder(tokenizer=tokenizer, tag_vocab=None, frame_dim=config.model.frame_dim,
                                  max_frames=config.model.max_frames, title_len=config.model.title_len,
                                  text_source=config.model.text_source)
    return LoadedRun(run_dir, config, model, decoder, path, provenance.read_run(run_dir))


def checkpoint_of(run_dir: str, checkpoint: str = "best") -> str:
    """The checkpoint ``load_run`` restores (``best`` falls back to ``final``), without building the model."""
    found = tf.train.latest_checkpoint(os.path.join(run_dir, checkpoint))
    if found is None and checkpoint == "best":
        found = tf.train.latest_checkpoint(os.path.join(run_dir, checkpointing.FINAL_DIR))
    if found is None:
        raise FileNotFoundError(f"{run_dir}: no {checkpoint}/ or final/ checkpoint")
    return found


def run_identity(run_dir: str, checkpoint_path: str) -> dict:
    """What embeddings of a run are made from: the run, its checkpoint (md5 of the .index file: the
    weights' identity), its provenance record's digest, folds, tag list and tokenizer."""
    record = provenance.read_run(run_dir) or {}
    index_file = checkpoint_path + ".index"
    tag_list = os.path.join(run_dir, stage.TAG_LIST)
    return {
        "run": os.path.abspath(run_dir),
        "checkpoint": os.path.abspath(checkpoint_path),
        "checkpoint_md5": provenance.file_md5(index_file) if os.path.isfile(index_file) else None,
        "run_provenance_sha256": provenance.record_digest(record) if record else None,
        "folds": record.get("folds"),
        "fold": record.get("fold"),
        "tag_list_md5": provenance.file_md5(tag_list) if os.path.isfile(tag_list) else None,
        "tokenizer_sha256": provenance.tree_digest(os.path.join(run_dir, stage.TOKENIZER_DIR)),
        "wide_gate": wide_gate_lib.read_gate(run_dir, checkpoint_path),  # None: the trained gate (train.wide_gate)
    }


def provenance_of_test(run: LoadedRun, files: Sequence[str]) -> dict:
    return {**run_identity(run.run_dir, run.checkpoint), "kind": "test", "test_files": provenance.fingerprints(files)}


def provenance_of_val(run: LoadedRun, shard: str) -> dict:
    return {**run_identity(run.run_dir, run.checkpoint), "kind": "val",
            "validation_shard": {"file": os.path.basename(shard), "md5": provenance.file_md5(shard)}}


def _count(files: Sequence[str]) -> int | None:
    try:
        return sum(reader.count_records(path) for path in files)
    except Exception:  # the count is only for the progress bar; the pipeline reports bad files
        return None


def embed_videos(run: LoadedRun, files: Sequence[str] | str, kind: schema.RecordKind | str,
                 batch_size: int = 64, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(ids, embeddings [N, D] float32) of every video in ``files``, in file order."""
    files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    for path in files:  # an empty shard is a failed copy, not "no test videos in this file"
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise DataError(os.fspath(path), None, "empty file: it holds no records (an empty shard)")
    # Every id checked (empty, whitespace, control characters, not UTF-8) and unique across the
    # files before anything is embedded: an id names one row of the embeddings and of result.json.
    expected_ids = reader.scan_video_ids(files)
    dataset = reader.read_videos(files, schema.RecordKind(kind), run.decoder, batch_size)
    ids: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    with tqdm(total=len(expected_ids), unit="video", desc="embed", disable=not progress) as bar:
        for batch in reader.iterate_checked(dataset):
            ids.append(batch[schema.KEY_ID].numpy().astype(str))
            chunks.append(run.embed_batch(batch))
            bar.update(len(ids[-1]))
    if not chunks:
        raise ValueError(f"{', '.join(map(str, files))}: no records to embed")
    ids_found = np.concatenate(ids)
    if sorted(ids_found.tolist()) != sorted(expected_ids):  # the files changed while they were read
        raise DataError(", ".join(map(str, files)), None, "the video ids read while embedding differ from the ids "
                                                          "scanned just before (did a file change meanwhile?)")
    return ids_found, np.concatenate(chunks).astype(np.float32)


def embed_pair_shard(run: LoadedRun, shard: str, batch_size: int = 64, progress: bool = True):
    """Embeddings of the distinct videos of a pair shard, plus its pairs as ``Labels``."""
    dataset = reader.read_pairs([shard], run.decoder, batch_size)
    embedded: dict[str, np.ndarray] = {}
    query, candidate, score = [], [], []
    with tqdm(total=_count([shard]), unit="pair", desc="embed pairs", disable=not progress) as bar:
        for batch in reader.iterate_checked(dataset):
            ids_1 = batch["video_1"][schema.KEY_ID].numpy().astype(str)
            ids_2 = batch["video_2"][schema.KEY_ID].numpy().astype(str)
            for key, ids in (("video_1", ids_1), ("video_2", ids_2)):
                if all(i in embedded for i in ids):
                    continue
                vectors = run.embed_batch(batch[key])
                for i, vector in zip(ids, vectors):
                    embedded.setdefault(i, vector)
            query.extend(ids_1)
            candidate.extend(ids_2)
            score.extend(batch[schema.KEY_SIM].numpy().tolist())
            bar.update(len(ids_1))
    ids = np.array(list(embedded), dtype=str)
    matrix = np.stack([embedded[i] for i in ids]).astype(np.float32)
    return ids, matrix, make_pairs(query, candidate, score, shard)


def run_validation_shard(run_dir: str, config: TrainConfig, record: dict | None) -> str:
    """The validation shard of a finetune run, after checking that its folds are the ones it was
    trained on (``provenance.json``): a rewritten fold set would score training pairs as validation."""
    if config.stage != "finetune" or not config.folds_dir:
        raise ValueError(f"{run_dir}: not a finetune run (no folds_dir in its config.json)")
    info = folds_lib.read_folds_info(config.folds_dir)
    recorded = (record or {}).get("folds")
    if recorded is None:
        print(f"warning: {run_dir} records no fold assignment (provenance.json, written since issue 10): its "
              f"folds cannot be checked against {config.folds_dir}", file=sys.stderr)
    provenance.check_same_folds(
        recorded, provenance.folds_record(info, config.folds_dir), f"the run {run_dir} (provenance.json)",
        os.path.join(config.folds_dir, folds_lib.FOLDS_JSON),
        "the folds were rewritten after this run was trained: its training pairs would be scored as validation "
        "pairs; embed with the folds it was trained on, or finetune again")
    return folds_lib.fold_files(config.folds_dir, config.fold)[1]


def validation_shard(run: LoadedRun) -> str:
    """The validation shard of a finetune run (its folds_dir and fold), checked against its provenance."""
    return run_validation_shard(run.run_dir, run.config, run.run_provenance)


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.embed_parser().parse_args(argv)
    with common.user_errors("python -m infer.embed", ValueError, FileNotFoundError):  # DataError is a ValueError
        run = load_run(args.run, args.checkpoint)
        if args.val_shard:
            shard = validation_shard(run)
            ids, embeddings, pairs = embed_pair_shard(run, shard, args.batch_size, not args.quiet)
            record = provenance_of_val(run, shard)
        else:
            files = reader._resolve_files(args.records)
            ids, embeddings = embed_videos(run, files, args.kind, args.batch_size, not args.quiet)
            pairs = None
            record = dict(provenance_of_test(run, files), kind=args.kind)
    save_embeddings(args.out, ids, embeddings, pairs, record)
    print(f"{len(ids)} embeddings of dim {embeddings.shape[1]} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
