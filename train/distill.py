"""Distillation: one small student trained to reproduce a teacher's (an ensemble's) embeddings.

    python -m train.distill --teacher ENSEMBLE_EXPORT_DIR|teacher.npz --model NAME --preset tiny|small
                            --data DATA --out RUN/distill/NAME [--records FILE ...] [key=value ...]

Videos: every record of ``--records`` (default: all of ``DATA``: pointwise, pairwise and test_a,
labelled or not; read in the test layout, so tags and labels are never used). Teacher vectors:
``--teacher`` is a SavedModel export (``ensemble_final.py --export``, ``python -m infer.export``)
that embeds those videos once (cached in ``OUT/teacher.npz``), or an embeddings ``.npz`` that must
hold a vector for every video (an error names the first missing id).

Loss (per batch, on L2-normalised vectors ``s`` of the student and ``t`` of the teacher)::

    cosine_weight * mean(1 - s.t)  +  pair_weight * mean over pairs i != j of (s_i.s_j - t_i.t_j)^2

the first pulls each student vector onto its teacher vector, the second makes the student rank
pairs of videos like the teacher (the quantity the Spearman evaluation scores). Set them with
``distill.cosine_weight=...`` / ``distill.pair_weight=...`` (defaults 1 and 4); every other
``key=value`` is a ``TrainConfig`` override (``epochs=3``, ``lr_other=1e-3``, ``model.dropout=0``...).
The student's ``embedding_dim`` is set to the teacher's dimension.

The run directory is a normal run (``config.json``, ``tokenizer/``, ``ckpt/``, ``final/``):
``infer.embed``, ``infer.export`` and ``search`` use it like any finetuned model; rerunning resumes.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
from typing import Sequence

import numpy as np
import tensorflow as tf

from infer.embeddings_io import load_embedding_set, save_embeddings
from models.base import example_features
from tfrecord_tools import reader, schema
from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.errors import DataError
from train import cli, stage
from train import strategy as strategy_lib
from train.config import TrainConfig, apply_overrides
from train.data import numeric_features
from train.loop import Trainer

TEACHER_FILE = "teacher.npz"
DISTILL_FILE = "distill.json"


@dataclasses.dataclass(frozen=True)
class DistillWeights:
    cosine_weight: float = 1.0
    pair_weight: float = 4.0


def distill_losses(student: tf.Tensor, teacher: tf.Tensor, weights: DistillWeights) -> dict[str, tf.Tensor]:
    """``{"cosine", "pair"}`` weighted losses of a batch of student and teacher vectors."""
    s = tf.math.l2_normalize(tf.cast(student, tf.float32), axis=1)
    t = tf.math.l2_normalize(tf.cast(teacher, tf.float32), axis=1)
    cosine = tf.reduce_mean(1.0 - tf.reduce_sum(s * t, axis=1))
    n = tf.shape(s)[0]
    off = 1.0 - tf.eye(n)
    diff = (tf.matmul(s, s, transpose_b=True) - tf.matmul(t, t, transpose_b=True)) * off
    pair = tf.reduce_sum(tf.square(diff)) / tf.maximum(tf.reduce_sum(off), 1.0)
    return {"cosine": weights.cosine_weight * cosine, "pair": weights.pair_weight * pair}


def default_records(data_dir: str) -> list[str]:
    files = []
    for pattern in ("pointwise/*.tfrecords", "pairwise/*.tfrecords", "test_a/*.tfrecords", "test_b/*.tfrecords"):
        files += sorted(glob.glob(os.path.join(data_dir, pattern)))
    if not files:
        raise FileNotFoundError(f"{data_dir}: no pointwise/, pairwise/ or test_a/ records (expected the official layout)")
    return files


def record_ids(files: Sequence[str]) -> np.ndarray:
    """The id of every record (parsing nothing else); a video in several files counts once."""
    spec = {schema.KEY_ID: tf.io.FixedLenFeature([], tf.string)}
    dataset = tf.data.TFRecordDataset(list(files)).batch(4096).map(
        lambda records: tf.io.parse_example(records, spec)[schema.KEY_ID])
    ids = [batch.astype(str) for batch in dataset.as_numpy_iterator()]
    return np.concatenate(ids) if ids else np.zeros(0, str)


def teacher_vectors(teacher: str, files: Sequence[str], out_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, teacher vectors) covering every video of ``files`` (cached in OUT/teacher.npz for exports)."""
    wanted = list(dict.fromkeys(record_ids(files).tolist()))
    if os.path.isdir(teacher):
        from infer.export import embed_with_export, load_export_meta

        load_export_meta(teacher)  # a clear error for a directory that is no export
        cache = os.path.join(out_dir, TEACHER_FILE)
        if not os.path.isfile(cache):
            ids, vectors = embed_with_export(teacher, files, batch_size=128)
            _, first = np.unique(ids, return_index=True)
            keep = np.sort(first)
            save_embeddings(cache, ids[keep], vectors[keep])
        teacher_set = load_embedding_set(cache)
    else:
        teacher_set = load_embedding_set(teacher)
    missing = [i for i in wanted if not teacher_set.has(i)]
    if missing:
        raise DataError(teacher_set.name, None, f"no teacher vector for {len(missing)} of the {len(wanted)} videos, "
                                                f"first id {missing[0]!r} (the teacher must cover every --records video)")
    return np.asarray(wanted), teacher_set.lookup(wanted)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.stage_parser("python -m train.distill", __doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="ensemble/model export directory or embeddings .npz")
    parser.add_argument("--data", required=True, help="data directory in the official layout")
    parser.add_argument("--records", nargs="+", help="record files or globs (default: every video of --data)")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("--model is required (the student's family)")
    weights = DistillWeights()
    overrides = []
    for item in args.overrides:
        key, _, value = item.partition("=")
        if key.startswith("distill."):
            name = key.split(".", 1)[1]
            if name not in {f.name for f in dataclasses.fields(DistillWeights)}:
                parser.error(f"unknown distillation setting {key!r} (distill.cosine_weight, distill.pair_weight)")
            weights = dataclasses.replace(weights, **{name: float(value)})
        else:
            overrides.append(item)
    try:
        if not os.path.exists(args.teacher):
            raise DataError(args.teacher, None, "teacher not found (an export directory or an embeddings .npz)")
        files = reader._resolve_files(args.records) if args.records else default_records(args.data)
        run_dir = os.path.abspath(args.out)
        os.makedirs(run_dir, exist_ok=True)
        ids, vectors = teacher_vectors(args.teacher, files, run_dir)
        summary = run_distill(args.model, args.preset, args.data, files, ids, vectors, run_dir, overrides,
                              weights, args.teacher)
    except (DataError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"distilled {args.model} ({summary['params']:,} parameters) from {args.teacher} on {summary['videos']} "
          f"videos -> {run_dir}")
    return 0


def run_distill(model_name: str, preset: str | None, data_dir: str, files: Sequence[str], ids: np.ndarray,
                vectors: np.ndarray, run_dir: str, overrides: Sequence[str], weights: DistillWeights,
                teacher: str) -> dict:
    strategy = strategy_lib.make_strategy()
    base = cli.base_model_config(model_name, preset).replace(embedding_dim=int(vectors.shape[1]))
    config = TrainConfig(model=base, stage="pretrain", data_dir=os.path.abspath(data_dir))
    config = apply_overrides(config, overrides)
    if config.model.embedding_dim != vectors.shape[1]:
        raise ValueError(f"the student's embedding_dim {config.model.embedding_dim} differs from the teacher's "
                         f"dimension {vectors.shape[1]}")
    tokenizer = stage.prepare_tokenizer(config, run_dir, lambda: _titles(files))
    # the tag head is never trained (the student learns no tags); a small one keeps the config valid
    config = config.replace(model=stage.with_tokenizer(config.model, tokenizer).replace(num_tags=8))
    stage.check_resumable(config, run_dir)
    stage.save_run_config(config, run_dir, strategy)
    model = stage.build_stage_model(config, strategy)
    decoder = reader.VideoDecoder(tokenizer=tokenizer, tag_vocab=None, frame_dim=config.model.frame_dim,
                                  max_frames=config.model.max_frames, title_len=config.model.title_len)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(tf.constant(ids.tolist()),
                                                                          tf.range(len(ids), dtype=tf.int64)), -1)
    teacher_matrix = tf.constant(vectors.astype(np.float32))
    batch_size = config.batch_size
    steps_per_epoch = config.steps_per_epoch or max(1, len(ids) // batch_size)
    total_steps = config.max_steps or config.epochs * steps_per_epoch

    def dataset_fn(start_step, input_context=None):
        dataset = reader.read_videos(list(files), schema.RecordKind.TEST, decoder, batch_size, shuffle=True,
                                     shuffle_buffer=config.shuffle_buffer, repeat=True, drop_remainder=True,
                                     seed=config.seed)

        def attach(batch):
            rows = table.lookup(batch[schema.KEY_ID])
            return {**numeric_features(batch), "teacher": tf.gather(teacher_matrix, tf.maximum(rows, 0))}

        return dataset.map(attach).skip(start_step)

    def loss_fn(model, batch, training=True):
        return distill_losses(model(batch, training=training)["embedding"], batch["teacher"], weights)

    build_batch = numeric_features(example_features(config.model))
    build_batch["teacher"] = tf.zeros([2, vectors.shape[1]])
    with strategy.scope():
        trainer = Trainer(config=config, strategy=strategy, model=model, loss_fn=loss_fn, run_dir=run_dir,
                          dataset_fn=dataset_fn, build_batch=build_batch, total_steps=total_steps,
                          steps_per_epoch=steps_per_epoch)
    values = trainer.run()
    summary = {"teacher": os.path.abspath(teacher), "videos": int(len(ids)), "files": list(files),
               "weights": dataclasses.asdict(weights), "params": int(model.count_params()),
               "steps": total_steps, "last_losses": values}
    write_text_atomic(os.path.join(run_dir, DISTILL_FILE), json.dumps(summary, indent=2) + "\n")
    return summary


def _titles(files: Sequence[str]):
    spec = {schema.KEY_TITLE: tf.io.FixedLenFeature([], tf.string)}
    for batch in tf.data.TFRecordDataset(list(files)).batch(4096).map(
            lambda r: tf.io.parse_example(r, spec)[schema.KEY_TITLE]).as_numpy_iterator():
        yield from batch.tolist()


if __name__ == "__main__":
    sys.exit(main())
