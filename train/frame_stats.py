"""Per-feature mean and standard deviation of the training frames, for in-graph standardisation.

A streaming pass over (at most ``max_videos`` of) the training records accumulates sums of the
real (unpadded, officially sampled) frames in float64; memory is one feature vector. The result is
written to ``RUN/frame_stats.npz`` (``mean``, ``std``, ``videos``, ``frames``) and set into the
model's `FrameStandardizer`, whose weights then travel in every checkpoint. A resumed run reads the
file back instead of recomputing; a finetune from a pretrain run inherits the pretrain's statistics
with its weights.
"""
from __future__ import annotations

import os
import shutil
from typing import Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tfrecord_tools import reader, schema
from tfrecord_tools.atomic import atomic_path

STATS_FILE = "frame_stats.npz"


def compute_frame_statistics(files: Sequence[str], pairs: bool, frame_dim: int, max_frames: int,
                             max_videos: int = 20_000, batch_size: int = 256, progress: bool = True
                             ) -> dict[str, np.ndarray]:
    """``{"mean", "std", "videos", "frames"}`` over the real frames of the first ``max_videos`` videos."""
    decoder = reader.VideoDecoder(frame_dim=frame_dim, max_frames=max_frames)
    if pairs:
        dataset = reader.read_pairs(list(files), decoder, batch_size)
    else:
        dataset = reader.read_videos(list(files), schema.RecordKind.POINTWISE, decoder, batch_size)
    total = np.zeros(frame_dim, np.float64)
    squares = np.zeros(frame_dim, np.float64)
    frames_seen = videos = 0
    bar = tqdm(total=max_videos, desc="frame statistics", unit="video", disable=not progress)
    with reader.record_errors():
        for batch in dataset:
            parts = [batch["video_1"], batch["video_2"]] if pairs else [batch]
            for part in parts:
                mask = part["frame_mask"].numpy() > 0
                real = part["frames"].numpy()[mask].astype(np.float64)
                total += real.sum(axis=0)
                squares += (real ** 2).sum(axis=0)
                frames_seen += len(real)
                videos += len(mask)
                bar.update(len(mask))
            if videos >= max_videos:
                break
    bar.close()
    if frames_seen < 2:
        raise ValueError(f"cannot standardise frames: {frames_seen} real frame(s) in {list(files)[:3]}")
    mean = total / frames_seen
    std = np.sqrt(np.maximum(squares / frames_seen - mean ** 2, 0.0))
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32),
            "videos": np.int64(videos), "frames": np.int64(frames_seen)}


def save_statistics(path: str, stats: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **stats)


def load_statistics(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("mean", "std") if key not in data.files]
        if missing:
            raise ValueError(f"{path}: missing {missing} (not a frame statistics file)")
        return {key: data[key] for key in data.files}


def prepare_standardizer(model, run_dir: str, files: Sequence[str], pairs: bool, frame_dim: int, max_frames: int,
                         writes: bool = True, progress: bool = True, inherit_from: str | None = None) -> dict:
    """Set ``model.frame_standardizer`` from ``RUN/frame_stats.npz`` (computed on ``files`` when absent,
    or copied from ``inherit_from``'s run directory). Returns the statistics."""
    path = os.path.join(run_dir, STATS_FILE)
    if not os.path.isfile(path) and inherit_from and os.path.isfile(os.path.join(inherit_from, STATS_FILE)):
        if writes:
            shutil.copyfile(os.path.join(inherit_from, STATS_FILE), path)
        stats = load_statistics(os.path.join(inherit_from, STATS_FILE))
    elif os.path.isfile(path):
        stats = load_statistics(path)
    else:
        stats = compute_frame_statistics(files, pairs, frame_dim, max_frames, progress=progress)
        if writes:
            save_statistics(path, stats)
    model.frame_standardizer.set_statistics(stats["mean"], stats["std"])
    return stats


def has_statistics(model) -> bool:
    """Whether the model's standardiser holds statistics (is not the identity)."""
    layer = model.frame_standardizer
    return bool(layer.built and (tf.reduce_any(layer.mean != 0) or tf.reduce_any(layer.inverse_std != 1)))
