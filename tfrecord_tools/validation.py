"""The one validator of the official record layout (Python), shared by every reader.

`decode_raw_record` checks a serialized record -- every required key present with the right
value type and count, text that is UTF-8, at least one frame, every frame ``2 x frame_dim``
bytes, a pair's ``sim`` in [0, 1] -- and raises ``RecordError(path, index, problem)`` naming the
first problem. The Python readers (`tfrecord_tools.reader.read_raw_videos`), the slow path of the
``tf.data`` pipelines' in-graph checks (`tfrecord_tools.decoding`) and the fold-shard index
(`tfrecord_tools.record_index.index_videos`) all call it, so a bad record is reported in the same
words whichever path meets it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from tfrecord_tools import schema
from tfrecord_tools.errors import RecordError
from tfrecord_tools.ids import check_video_id


def parse_example(record: bytes, path: str, index: int) -> tf.train.Example:
    """Parse serialized bytes as a `tf.train.Example`, or raise RecordError."""
    try:
        return tf.train.Example.FromString(record)
    except Exception as error:  # google.protobuf.message.DecodeError; its class differs between backends
        raise RecordError(path, index, f"not a tf.train.Example ({error})") from None


def _parse_example(path: str, index: int, record: bytes):
    return parse_example(record, path, index).features.feature


def _feature_values(features, key: str, list_kind: str, path: str, index: int) -> list:
    if key not in features:
        raise RecordError(path, index, f"missing key '{key}'")
    feature = features[key]
    held = feature.WhichOneof("kind")
    if held is not None and held != list_kind:
        raise RecordError(path, index, f"key '{key}' holds {held}, expected {list_kind}")
    return list(getattr(feature, list_kind).value)


def _single(values: list, key: str, path: str, index: int):
    if len(values) != 1:
        raise RecordError(path, index, f"key '{key}' holds {len(values)} values, expected 1")
    return values[0]


def _text(value: bytes, key: str, path: str, index: int, strict: bool = True) -> str:
    if not strict:
        return value.decode("utf-8", errors="replace")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(path, index, f"key '{key}' is not valid UTF-8 ({error})") from None


def _frame_problem(frames: Sequence[bytes], frame_dim: int, key: str = schema.KEY_FRAMES) -> str | None:
    if not frames:
        return f"key '{key}' holds no frames"
    expected = 2 * frame_dim
    for number, frame in enumerate(frames):
        if len(frame) != expected:
            return f"frame {number} has {len(frame)} bytes, expected {expected}"
    return None


def _raw_video(features, kind: schema.RecordKind, path: str, index: int, frame_dim: int, suffix: str = "",
               strict_text: bool = True) -> dict:
    """One raw video (writer.py's format) from a parsed Example; RecordError on any problem.

    Checks in the order id, title, asr_text, frame_feature, tag_id, category_id.
    """
    def values(key, list_kind):
        return _feature_values(features, key + suffix, list_kind, path, index)

    video = {schema.KEY_ID: check_video_id(_single(values(schema.KEY_ID, "bytes_list"), schema.KEY_ID + suffix, path,
                                                   index), path, index, schema.KEY_ID + suffix)}
    for key in (schema.KEY_TITLE, schema.KEY_ASR):
        video[key] = _text(_single(values(key, "bytes_list"), key + suffix, path, index), key + suffix, path, index,
                           strict_text)
    frames = values(schema.KEY_FRAMES, "bytes_list")
    problem = _frame_problem(frames, frame_dim, schema.KEY_FRAMES + suffix)
    if problem:
        raise RecordError(path, index, problem)
    video["frames"] = np.frombuffer(b"".join(frames), dtype="<f2").reshape(len(frames), frame_dim)
    if kind != schema.RecordKind.TEST:
        video[schema.KEY_TAGS] = [int(tag) for tag in values(schema.KEY_TAGS, "int64_list")]
        category = _single(values(schema.KEY_CATEGORY, "int64_list"), schema.KEY_CATEGORY + suffix, path, index)
        video[schema.KEY_CATEGORY] = int(category)
    return video


def _raw_pair(features, path: str, index: int, frame_dim: int, strict_text: bool = True) -> dict:
    pair = {f"video{suffix}": _raw_video(features, schema.RecordKind.PAIR, path, index, frame_dim, suffix, strict_text)
            for suffix in schema.PAIR_SUFFIXES}
    sim = float(_single(_feature_values(features, schema.KEY_SIM, "float_list", path, index),
                        schema.KEY_SIM, path, index))
    if not 0.0 <= sim <= 1.0:
        raise RecordError(path, index, f"sim {sim:g} is outside [0, 1]")
    pair["sim"] = sim
    return pair


def decode_raw_record(record: bytes, kind: schema.RecordKind, path: str = "<bytes>", index: int = 0,
                      frame_dim: int = schema.FRAME_DIM, strict_text: bool = True) -> dict:
    """A serialized record as a raw video dict (or, for ``PAIR``, ``{"video_1", "video_2", "sim"}``).

    RecordError(path, index, ...) on any problem; ``strict_text=False`` decodes invalid UTF-8 with
    U+FFFD instead (what the tf.data readers do: they pass text bytes through untouched).
    """
    kind = schema.RecordKind(kind)
    features = _parse_example(path, index, record)
    if kind == schema.RecordKind.PAIR:
        return _raw_pair(features, path, index, frame_dim, strict_text)
    return _raw_video(features, kind, path, index, frame_dim, strict_text=strict_text)
