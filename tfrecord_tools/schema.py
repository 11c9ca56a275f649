"""The official QQ Browser 2021 record layout: the one place that knows keys, dtypes and sizes.

Every reader and writer in the project imports its constants and feature specs from here, so the
layout can only change in one file.

Raw record (`tf.train.Example`):
    id             bytes, 1 value      decimal id string
    title          bytes, 1 value      UTF-8 title
    asr_text       bytes, 1 value      UTF-8 transcript, missing ASR is the literal string ``nan``
    frame_feature  bytes, n values     one per frame: FRAME_DIM little-endian float16 (3,072 bytes)
    tag_id         int64 list          pointwise and pairwise only
    category_id    int64, 1 value      pointwise and pairwise only

Decoded features (what the readers yield, per video):
    id              tf.string []
    title           tf.string []
    asr_text        tf.string []
    frames          tf.float32 [MAX_FRAMES, FRAME_DIM]   official sampling, zero padded
    frame_mask      tf.float32 [MAX_FRAMES]              1.0 for real frames
    num_frames      tf.int32   []                        frames in the record before sampling
    input_ids       tf.int32   [TITLE_LEN]               title tokens ([CLS] ... [SEP], padded)
    attention_mask  tf.int32   [TITLE_LEN]
    tags            tf.float32 [NUM_TAGS]                multi-hot, ascending tag-id order
    category        tf.int32   []                        category id (-1 when absent)

Pair records (fold shards) carry every raw key twice with suffixes ``_1`` and ``_2`` plus
``sim`` (float32, the label score).
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parse specs import TensorFlow when called: command lines start without it
    import tensorflow as tf

FRAME_DIM = 1536
FRAME_BYTES = FRAME_DIM * 2  # float16
MAX_FRAMES = 32
TITLE_LEN = 32
NUM_TAGS = 10000
EMBEDDING_DIM = 256
MISSING_ASR = "nan"

KEY_ID = "id"
KEY_TITLE = "title"
KEY_ASR = "asr_text"
KEY_FRAMES = "frame_feature"
KEY_TAGS = "tag_id"
KEY_CATEGORY = "category_id"
KEY_SIM = "sim"
PAIR_SUFFIXES = ("_1", "_2")


class RecordKind(str, enum.Enum):
    """The record kinds of the official data set."""

    POINTWISE = "pointwise"  # pretrain_*.tfrecords: with tags and category
    PAIRWISE = "pairwise"  # pairwise.tfrecords: with tags and category
    TEST = "test"  # test_a/test_b.tfrecords: no tags, no category
    PAIR = "pair"  # our fold shards: two videos (suffixes _1/_2) and sim


def required_keys(kind: RecordKind) -> tuple[str, ...]:
    """Raw keys a record of ``kind`` must hold, for one video."""
    base = (KEY_ID, KEY_TITLE, KEY_ASR, KEY_FRAMES)
    if RecordKind(kind) in (RecordKind.POINTWISE, RecordKind.PAIRWISE, RecordKind.PAIR):
        return base + (KEY_TAGS, KEY_CATEGORY)
    return base


def video_feature_spec(kind: RecordKind, suffix: str = "") -> dict[str, tf.io.VarLenFeature]:
    """`tf.io.parse_single_example` spec for one video's raw keys (optionally suffixed).

    Everything is VarLen so that a missing key parses (to an empty list) and the reader can
    name it in its error instead of TensorFlow's generic message.
    """
    import tensorflow as tf

    spec = {
        KEY_ID + suffix: tf.io.VarLenFeature(tf.string),
        KEY_TITLE + suffix: tf.io.VarLenFeature(tf.string),
        KEY_ASR + suffix: tf.io.VarLenFeature(tf.string),
        KEY_FRAMES + suffix: tf.io.VarLenFeature(tf.string),
    }
    if RecordKind(kind) != RecordKind.TEST:
        spec[KEY_TAGS + suffix] = tf.io.VarLenFeature(tf.int64)
        spec[KEY_CATEGORY + suffix] = tf.io.VarLenFeature(tf.int64)
    return spec


def pair_feature_spec() -> dict[str, tf.io.VarLenFeature]:
    """Spec of a fold-shard record: both videos' raw keys plus the label ``sim``."""
    import tensorflow as tf

    spec: dict[str, tf.io.VarLenFeature] = {}
    for suffix in PAIR_SUFFIXES:
        spec.update(video_feature_spec(RecordKind.PAIR, suffix))
    spec[KEY_SIM] = tf.io.VarLenFeature(tf.float32)
    return spec
