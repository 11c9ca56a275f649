"""Raw baselines scored like the models: mean-frame cosine and title TF-IDF cosine.

No training: each pairwise video's embedding is its mean (sampled, unpadded) frame feature, or the
character 1-2-gram TF-IDF of its title (reduced by LSA to 256 dims). They tell how much of the
similarity a model gets for free from one raw modality; a learned model must beat both.

    python -m infer.baselines --data DATA --out RUN/embeddings/baselines

writes ``mean_frame.npz`` and ``title_tfidf.npz`` (ids + embeddings) for every video of
``DATA/pairwise/*.tfrecords``; ``ensemble_final.py --baselines DIR/*.npz`` scores them on the same
out-of-fold pairs as the models.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from infer import cli
from tfrecord_tools import cli as common

if __name__ == "__main__":  # --help and usage errors before TensorFlow is imported (quietly) below
    common.early_parse(cli.baselines_parser)

import numpy as np
from tqdm import tqdm

from infer.embeddings_io import save_embeddings
from infer.evaluate import mean_frame_baseline, title_tfidf_baseline
from tfrecord_tools import layout, schema
from tfrecord_tools.reader import read_raw_videos, sample_frame_indices

BASELINES = ("mean_frame", "title_tfidf")


def raw_modalities(files: Sequence[str], max_frames: int = schema.MAX_FRAMES, progress: bool = True):
    """(id -> mean of the officially sampled frames, id -> title) of every video in ``files``."""
    mean_frames: dict[str, np.ndarray] = {}
    titles: dict[str, str] = {}
    for path in files:
        for video in tqdm(read_raw_videos(path, schema.RecordKind.PAIRWISE), desc=os.path.basename(path),
                          unit="video", disable=not progress):
            frames = np.asarray(video["frames"], dtype=np.float32)
            mean_frames[video["id"]] = frames[sample_frame_indices(len(frames), max_frames)].mean(axis=0)
            titles[video["id"]] = video["title"]
    return mean_frames, titles


def write_baselines(files: Sequence[str], out_dir: str, progress: bool = True) -> list[str]:
    """Write ``mean_frame.npz`` and ``title_tfidf.npz`` under ``out_dir``; returns their paths."""
    mean_frames, titles = raw_modalities(files, progress=progress)
    paths = []
    for name, embedding_set in (("mean_frame", mean_frame_baseline(mean_frames)),
                                ("title_tfidf", title_tfidf_baseline(titles))):
        path = os.path.join(out_dir, f"{name}.npz")
        save_embeddings(path, embedding_set.ids, embedding_set.embeddings)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.baselines_parser().parse_args(argv)
    pairwise = os.path.join(args.data, layout.PAIRWISE_DIR)
    files = sorted(os.path.join(pairwise, name) for name in os.listdir(pairwise)
                   if name.endswith(layout.RECORD_SUFFIX)) if os.path.isdir(pairwise) else []
    if not files:
        return common.report_error("python -m infer.baselines", f"{pairwise}: no {layout.RECORD_SUFFIX} files")
    with common.user_errors("python -m infer.baselines", ValueError):
        paths = write_baselines(files, args.out, not args.quiet)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
