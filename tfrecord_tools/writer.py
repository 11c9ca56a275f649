"""Writers of the official record layout (and of the pair records of the fold shards).

A raw video is a plain dict, the Python-side mirror of the record:
    {"id": str, "title": str, "asr_text": str, "frames": np.ndarray [n, dim] float16
     (or a list of raw float16 frame bytes), "tag_id": list[int], "category_id": int}
``tag_id``/``category_id`` are written only for kinds that carry them.
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

import numpy as np
import tensorflow as tf

from tfrecord_tools import schema
from tfrecord_tools.atomic import atomic_path


def _bytes(values: Iterable[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values: Iterable[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def frame_bytes(frames) -> list[bytes]:
    """Frames as the record stores them: one little-endian float16 byte string per frame."""
    if isinstance(frames, (list, tuple)) and (not frames or isinstance(frames[0], bytes)):
        return list(frames)
    array = np.asarray(frames)
    if array.ndim != 2:
        raise ValueError(f"frames must be a [num_frames, dim] array, got shape {array.shape}")
    array = array.astype("<f2", copy=False)
    return [row.tobytes() for row in array]


def video_features(video: Mapping, kind: schema.RecordKind, suffix: str = "") -> dict[str, tf.train.Feature]:
    """The `tf.train.Feature`s of one raw video, keys optionally suffixed (pair records)."""
    features = {
        schema.KEY_ID + suffix: _bytes([str(video["id"]).encode("utf-8")]),
        schema.KEY_TITLE + suffix: _bytes([str(video["title"]).encode("utf-8")]),
        schema.KEY_ASR + suffix: _bytes([str(video.get("asr_text", schema.MISSING_ASR)).encode("utf-8")]),
        schema.KEY_FRAMES + suffix: _bytes(frame_bytes(video["frames"])),
    }
    if schema.RecordKind(kind) != schema.RecordKind.TEST:
        features[schema.KEY_TAGS + suffix] = _ints(video["tag_id"])
        features[schema.KEY_CATEGORY + suffix] = _ints([video["category_id"]])
    return features


def serialize_video(video: Mapping, kind: schema.RecordKind) -> bytes:
    """One pointwise / pairwise / test record."""
    return tf.train.Example(features=tf.train.Features(feature=video_features(video, kind))).SerializeToString(deterministic=True)


def serialize_pair(video_1: Mapping, video_2: Mapping, sim: float) -> bytes:
    """One fold-shard record: both videos (suffixes ``_1``/``_2``) and the label ``sim``."""
    feature = video_features(video_1, schema.RecordKind.PAIR, schema.PAIR_SUFFIXES[0])
    feature.update(video_features(video_2, schema.RecordKind.PAIR, schema.PAIR_SUFFIXES[1]))
    feature[schema.KEY_SIM] = _floats([sim])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


class AtomicRecordWriter:
    """`tf.io.TFRecordWriter` that appears under its final name only after a clean close.

    Use as a context manager; on an exception the temporary file is removed.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._context = atomic_path(self.path)
        self._writer: tf.io.TFRecordWriter | None = None
        self.count = 0

    def __enter__(self) -> "AtomicRecordWriter":
        tmp = self._context.__enter__()
        self._writer = tf.io.TFRecordWriter(tmp)
        return self

    def write(self, record: bytes) -> None:
        self._writer.write(record)
        self.count += 1

    def __exit__(self, exc_type, exc, tb):
        self._writer.close()
        return self._context.__exit__(exc_type, exc, tb)


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> int:
    """Write serialized records to ``path`` atomically; returns how many were written."""
    with AtomicRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return writer.count
