"""Untrained and linear baselines, scored like the models: the floor a learned model must clear.

    python -m infer.baselines --data DATA --folds-dir DATA/folds --out RUN/baselines [--folds 0 1 2]

reads every video of ``DATA`` (pointwise and test videos only for unsupervised statistics: mean,
covariance, TF-IDF, LSA; no labels; ``--without-test-videos`` leaves the test videos out of those fits too,
as the models' wide path does) and, for each fold, writes one directory per baseline in the
layout of a model's embeddings::

    RUN/baselines/<baseline>/fold_XX/val.npz    the fold's validation-pair videos (+ its pairs)
    RUN/baselines/<baseline>/fold_XX/test.npz   every test video
    RUN/baselines/choices.json                  what each fold chose (frame space, components, weights, steps)

Every choice that looks at labels (the frame space, PCA components, modality weights, the linear
metric) is made on the fold's training pairs only. ``ensemble_final.py --baselines-dir RUN/baselines`` scores them out
of fold next to the models. See `infer.strong_baselines` for the baselines themselves.
"""
from __future__ import annotations

import glob
import itertools
import json
import os
import sys
from typing import Iterator, Sequence

from infer import cli
from tfrecord_tools import cli as common

if __name__ == "__main__":  # --help and usage errors before TensorFlow is imported (quietly) below
    common.early_parse(cli.baselines_parser)

import numpy as np
from tqdm import tqdm

from infer.embeddings_io import save_embeddings
from infer.frame_words import FrameWords, fit_within_whitened
from infer.strong_baselines import (BASELINES, FRAME_SPACES, BaselineConfig, MomentAccumulator, WithinVideoSpread,
                                    build_table, fold_baselines, video_squares)
from models.layers import signed_power
from tfrecord_tools import schema
from tfrecord_tools.ids import UniqueIds
from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.errors import DataError
from tfrecord_tools.labels import Labels, read_labels
from tfrecord_tools.reader import read_raw_videos, sample_frame_indices

CHOICES_FILE = "choices.json"


def sampled_frames(video: dict, frame_power: float, max_frames: int = schema.MAX_FRAMES) -> np.ndarray:
    """[n, D] float64: the officially sampled frames of a raw video, each value raised to the signed ``frame_power``."""
    frames = signed_power(np.asarray(video["frames"], dtype=np.float32), frame_power)
    return frames[sample_frame_indices(len(frames), max_frames)].astype(np.float64)


def summarise(path: str, kind: schema.RecordKind, progress: bool, max_frames: int = schema.MAX_FRAMES,
              frame_power: float = 1.0, words: FrameWords | None = None) -> Iterator[dict]:
    """id, mean of the officially sampled frames (each value first raised to the signed
    ``frame_power``; pooled by ``words``' idf where given), title and ASR of every video in ``path``, and
    the sampled frames' squared deviations from their plain mean (``frame_squares`` [D], over ``frames``
    frames: the spread within videos)."""
    for video in tqdm(read_raw_videos(path, kind), desc=os.path.basename(path), unit="video",
                      disable=not progress, file=sys.stderr):
        sampled = sampled_frames(video, frame_power, max_frames)
        mean_frame = sampled.mean(axis=0) if words is None else words.pooled(sampled)
        yield {"id": video["id"], "mean_frame": mean_frame, "title": video["title"],
               "asr_text": video["asr_text"], "frame_squares": video_squares(sampled), "frames": len(sampled)}


def fit_words(files: dict[str, list[str]], config: BaselineConfig, progress: bool) -> FrameWords:
    """The visual words of ``config.frame_words``, fitted on the frames of the first
    ``config.frame_words_fit_videos`` unlabelled videos, then pair videos where there are fewer (no labels)."""
    sources = [(path, schema.RecordKind.POINTWISE) for path in files["pointwise"]]
    sources += [(path, schema.RecordKind.PAIRWISE) for path in files["pairwise"]]
    raw = itertools.chain.from_iterable(read_raw_videos(path, kind) for path, kind in sources)
    videos = [sampled_frames(video, config.frame_power)
              for video in tqdm(itertools.islice(raw, config.frame_words_fit_videos), desc="frame words: videos",
                                total=config.frame_words_fit_videos, unit="video", disable=not progress,
                                file=sys.stderr)]
    return fit_within_whitened(videos, config.frame_words, config.frame_words_width, config.frame_words_power,
                               seed=config.seed, eps=config.eps, fits=config.frame_words_fits)


def data_files(data_dir: str) -> dict[str, list[str]]:
    files = {name: sorted(glob.glob(os.path.join(glob.escape(data_dir), name, "*.tfrecords")))
             for name in ("pairwise", "test_a", "pointwise")}
    if not files["pairwise"]:
        raise DataError(os.path.join(data_dir, "pairwise"), None, "no .tfrecords files")
    return files


def fold_assignment(labels: Labels, folds_dir: str) -> tuple[np.ndarray, dict]:
    """The fold of every label line, as write_tfrecord.py assigned it (checked against folds.json)."""
    from tfrecord_tools import folds as folds_lib

    info = folds_lib.read_folds_info(folds_dir)
    assigned = folds_lib.assign_folds(labels, info["num_folds"], info["seed"], info["split"])
    expected = {int(entry["fold"]): int(entry["pairs"]) for entry in info["folds"]}
    found = {fold: int((assigned == fold).sum()) for fold in expected}
    if found != expected:
        raise DataError(os.path.join(folds_dir, folds_lib.FOLDS_JSON), None,
                        f"pairs per fold {expected} differ from the assignment of {labels.path} ({found}): "
                        "the shards were written from another label file")
    return assigned, info


def subset(labels: Labels, keep: np.ndarray) -> Labels:
    return Labels(labels.path, labels.query[keep], labels.candidate[keep], labels.score[keep])


def write_strong_baselines(data_dir: str, folds_dir: str, out_dir: str, folds: Sequence[int] | None = None,
                           config: BaselineConfig = BaselineConfig(), progress: bool = True) -> dict:
    """Compute every baseline for ``folds`` (default: all) and write them; returns the choices."""
    files = data_files(data_dir)
    labels = read_labels(os.path.join(data_dir, "pairwise", "label.tsv"))
    from tfrecord_tools.folds import shard_order

    assigned, info = fold_assignment(labels, folds_dir)
    num_folds = info["num_folds"]
    folds = list(range(num_folds)) if folds is None else [int(f) for f in folds]
    bad = [f for f in folds if not 0 <= f < num_folds]
    if bad:
        raise ValueError(f"folds {bad} outside 0..{num_folds - 1}")

    words = fit_words(files, config, progress) if config.frame_words > 0 else None
    moments = MomentAccumulator(schema.FRAME_DIM)
    spread = WithinVideoSpread(schema.FRAME_DIM)  # for the "within" frame space

    def fitted(video: dict) -> None:
        moments.add(video["mean_frame"])
        spread.add(video["frame_squares"], video["frames"] - 1)

    scored: dict[str, dict] = {}
    test_ids: list[str] = []
    seen = UniqueIds()  # an id twice would keep one of its videos: refused, naming both records
    for kind, name in ((schema.RecordKind.PAIRWISE, "pairwise"), (schema.RecordKind.TEST, "test_a")):
        for path in files[name]:
            summaries = summarise(path, kind, progress, frame_power=config.frame_power, words=words)
            for index, video in enumerate(summaries):
                seen.add(video["id"], path, index)
                if name != "test_a" or config.fit_test_videos:
                    fitted(video)
                del video["frame_squares"]  # [D] per video: kept only as the sums above
                scored[video["id"]] = video
                if name == "test_a":
                    test_ids.append(video["id"])

    def unlabelled():
        for path in files["pointwise"]:
            for video in summarise(path, schema.RecordKind.POINTWISE, progress, frame_power=config.frame_power,
                                   words=words):
                fitted(video)
                yield video

    table = build_table(scored, unlabelled(), config, moments, unfitted=() if config.fit_test_videos else test_ids,
                        frame_spread=spread)
    choices = {"config": config.to_dict(), "folds": {}}
    for fold in tqdm(folds, desc="baseline folds", unit="fold", disable=not progress, file=sys.stderr):
        # validation pairs in the order of the fold's shard, as a model's val.npz holds them
        train, val = subset(labels, assigned != fold), subset(labels, shard_order(assigned, fold, info["seed"]))
        result = fold_baselines(table, train, config)
        choices["folds"][str(fold)] = result.choices
        val_ids = sorted(set(val.query.tolist()) | set(val.candidate.tolist()))
        val_rows, test_rows = table.rows(val_ids), table.rows(test_ids)
        for name in BASELINES:
            matrix = result.embeddings[name].astype(np.float32)
            fold_dir = os.path.join(out_dir, name, f"fold_{fold:02d}")
            save_embeddings(os.path.join(fold_dir, "val.npz"), val_ids, matrix[val_rows], pairs=val)
            if test_ids:
                save_embeddings(os.path.join(fold_dir, "test.npz"), test_ids, matrix[test_rows])
    os.makedirs(out_dir, exist_ok=True)
    write_text_atomic(os.path.join(out_dir, CHOICES_FILE), json.dumps(choices, indent=2) + "\n")
    return choices


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.baselines_parser().parse_args(argv)
    try:
        spaces = FRAME_SPACES if args.frame_space == "auto" else (args.frame_space,)
        config = BaselineConfig(frame_power=args.frame_power, frame_spaces=spaces,
                                fit_test_videos=not args.without_test_videos, frame_words=args.frame_words,
                                frame_words_fits=args.frame_words_fits, rare_words=args.rare_words,
                                rare_words_max_df=args.rare_words_max_df)
        choices = write_strong_baselines(args.data, args.folds_dir, args.out, args.folds, config,
                                         progress=not args.quiet)
    except (DataError, ValueError, FileNotFoundError) as error:
        return common.report_error("python -m infer.baselines", error)
    print(f"wrote {', '.join(BASELINES)} for folds {sorted(int(f) for f in choices['folds'])} under {args.out}")
    for line in frame_space_lines(choices):
        print(line)
    return 0


def frame_space_lines(choices: dict) -> list[str]:
    """What each fold whitened its frames in, and a note where folds differ: their fold average then
    adds vectors whose frame coordinates are of two different PCAs."""
    spaces = {fold: chosen.get("frame_space") for fold, chosen in choices["folds"].items()}
    lines = [f"frame space: {', '.join(f'fold {fold} {space}' for fold, space in sorted(spaces.items()))}"]
    if len(set(spaces.values())) > 1:
        lines.append("note: the folds chose different frame spaces, so an average of their test embeddings mixes "
                     "two frame bases; rerun with --frame-space set to one space for one")
    return lines


if __name__ == "__main__":
    sys.exit(main())
