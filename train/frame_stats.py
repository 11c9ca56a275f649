"""Frame statistics of the training data, for the in-graph `FrameStandardizer` of every model.

A streaming pass over (at most ``max_videos`` of) the training records accumulates, in float64,
sums over the real (unpadded, officially sampled) frames (mean, per-feature std) and over the
videos' mean frames (their covariance: what varies *between* videos); memory is one D x D matrix.
``RUN/frame_stats.npz`` holds ``mean``, ``std``, ``video_covariance``, ``videos``, ``frames``, and
the transform of the run's ``frame_normalization`` is set into the model, whose weights then travel
in every checkpoint. A resumed run reads the file back instead of recomputing; a finetune from a
pretrain run inherits the pretrain's statistics with its weights.
"""
from __future__ import annotations

import os
import shutil
from typing import Sequence

import numpy as np
from tqdm import tqdm

from models.layers import signed_power, standardizing_transform, whitening_projection

from tfrecord_tools import reader, schema
from tfrecord_tools.atomic import atomic_path

STATS_FILE = "frame_stats.npz"


def compute_frame_statistics(files: Sequence[str], pairs: bool, frame_dim: int, max_frames: int,
                             max_videos: int = 20_000, batch_size: int = 256, progress: bool = True,
                             power: float = 1.0) -> dict[str, np.ndarray]:
    """``{"mean", "std", "videos", "frames"}`` over the real frames of the first ``max_videos`` videos,
    after the signed ``power`` of every value (`models.layers.signed_power`)."""
    decoder = reader.VideoDecoder(frame_dim=frame_dim, max_frames=max_frames)
    if pairs:
        dataset = reader.read_pairs(list(files), decoder, batch_size)
    else:
        dataset = reader.read_videos(list(files), schema.RecordKind.POINTWISE, decoder, batch_size)
    total = np.zeros(frame_dim, np.float64)
    squares = np.zeros(frame_dim, np.float64)
    video_total = np.zeros(frame_dim, np.float64)
    video_outer = np.zeros((frame_dim, frame_dim), np.float64)
    frames_seen = videos = 0
    bar = tqdm(total=max_videos, desc="frame statistics", unit="video", disable=not progress)
    with reader.record_errors():
        for batch in dataset:
            parts = [batch["video_1"], batch["video_2"]] if pairs else [batch]
            for part in parts:
                mask = part["frame_mask"].numpy() > 0
                frames = signed_power(part["frames"].numpy(), power)  # padded frames stay zero
                real = frames[mask].astype(np.float64)
                means = frames.sum(axis=1).astype(np.float64) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
                video_total += means.sum(axis=0)
                video_outer += means.T @ means
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
    video_mean = video_total / videos
    covariance = video_outer / videos - np.outer(video_mean, video_mean)
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32),
            "video_covariance": ((covariance + covariance.T) / 2).astype(np.float32),
            "videos": np.int64(videos), "frames": np.int64(frames_seen), "power": np.float64(power)}


def save_statistics(path: str, stats: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **stats)


def load_statistics(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("mean", "std", "video_covariance") if key not in data.files]
        if missing:
            raise ValueError(f"{path}: missing {missing} (not a frame statistics file)")
        return {key: data[key] for key in data.files}


def prepare_standardizer(model, run_dir: str, files: Sequence[str], pairs: bool, model_config,
                         writes: bool = True, progress: bool = True, inherit_from: str | None = None) -> dict:
    """Set ``model.frame_standardizer`` for ``model_config.frame_normalization`` from
    ``RUN/frame_stats.npz`` (computed on ``files`` when absent, or copied from ``inherit_from``'s run
    directory). Returns the statistics."""
    frame_dim, max_frames = model_config.frame_dim, model_config.max_frames
    path = os.path.join(run_dir, STATS_FILE)
    source = path
    if not os.path.isfile(path) and inherit_from and os.path.isfile(os.path.join(inherit_from, STATS_FILE)):
        source = os.path.join(inherit_from, STATS_FILE)
        if writes:
            shutil.copyfile(source, path)
        stats = load_statistics(source)
    elif os.path.isfile(path):
        stats = load_statistics(path)
    else:
        stats = compute_frame_statistics(files, pairs, frame_dim, max_frames, progress=progress,
                                         power=model_config.frames.power)
        if writes:
            save_statistics(path, stats)
    power = float(stats.get("power", 1.0))  # files from before frames.power: no power
    if power != model_config.frames.power:
        raise ValueError(f"{source}: the frame statistics were computed with frames.power={power}, the run has "
                         f"model.frames.power={model_config.frames.power}")
    transform = standardizing_transform(model_config.frame_normalization, stats["std"], stats["video_covariance"],
                                        model_config.frame_whiten_rank)
    model.frame_standardizer.set_statistics(stats["mean"], transform)
    if getattr(model, "frame_path", None) is not None and not inherit_from:
        # the covariance of the normalised mean frames: transform is symmetric
        covariance = transform @ stats["video_covariance"].astype(np.float64) @ transform
        model.frame_path.set_projection(whitening_projection(covariance, model_config.frame_path_rank,
                                                             model.frame_path.output_size))
    return stats


