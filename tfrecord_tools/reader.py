"""Readers of the official record layout: streaming ``tf.data`` pipelines and Python iterators.

Three modules since the split: `tfrecord_tools.validation` (the Python validator, shared with the
fold-shard index), `tfrecord_tools.decoding` (frame sampling, in-graph checks and decoding,
`VideoDecoder`) and this one (files, pipelines, their errors, Python readers), which re-exports
the public names of the other two, so ``from tfrecord_tools.reader import VideoDecoder`` works.

Streaming pipelines (``read_videos``, ``read_pairs``)
    files -> one ``TFRecordDataset`` per file, interleaved (each record tagged with its file path
    and record index) -> optional record shuffle / repeat -> parallel parse + decode (frames
    sampled with the official rule, tag multi-hot, category) -> batch -> title tokenisation on
    whole batches (``tf.numpy_function`` around the fast tokenizer) -> prefetch. Nothing holds more
    than the shuffle buffer and a few batches, whatever the data-set size.

How bad input is reported (never silently skipped)
    Every record carries ``(path, index)`` through the pipeline. Its checks -- every required key
    present with the right number of values, at least one frame, every frame ``2 x frame_dim``
    bytes, a pair's ``sim`` in [0, 1] -- are a handful of boolean ops on what the parser returned
    anyway, reduced to one boolean. Only when that is False does a ``tf.cond`` branch hand the
    serialized record to the Python validator (the one ``read_raw_videos`` uses, so both paths
    report the same problem in the same words) and fail an in-graph assertion with its message::

        assertion failed: [RecordError: data/pairwise.tfrecords, record 7: frame 3 has 100 bytes, expected 3072]

    (The branch is tiny on purpose: TensorFlow inlines ``tf.cond`` branches into the map function,
    and a branch of a few hundred ops would cost every valid record more than its decoding.) The
    validator also tells an empty ``tag_id`` list (valid) from a missing one, which
    ``tf.io.parse_single_example`` cannot; records with no tags therefore take the Python path.

    A corrupt or truncated file makes ``TFRecordDataset`` raise ``DataLossError`` without the file
    name. Instead, each file is read through its own ``TFRecordDataset(...).ignore_errors()``
    (which stops that file at the first unreadable record) followed by an end-of-file sentinel;
    a ``scan`` adds up the bytes consumed (record length + 16 bytes of TFRecord framing) and at the
    sentinel asserts that they equal the file size. A CRC failure or truncation anywhere therefore
    becomes ``<path>, record <i>: corrupt or truncated TFRecord data ...`` at the point where reading
    stopped, with no extra pass over the data. (Uncompressed TFRecord files, the official layout.)

    TensorFlow raises these as ``tf.errors.InvalidArgumentError`` (string data in the message is
    C-escaped: ``missing key \\'title\\'``). Wrap a loop in ``record_errors()`` (or iterate with
    ``iterate_checked``) to get ``RecordError(path, index, problem)`` instead. A value of the wrong
    type (an int list where bytes are expected) or bytes that are no ``tf.train.Example`` fail
    inside TensorFlow's parser, whose message names the key but not the file;
    ``verify_file(path, kind)`` pinpoints such a record.

Python readers (``read_raw_videos``, ``read_raw_pairs``, ``count_records``, ``verify_file``)
    Used by golden tests, fold sharding and the synthetic-data round trip. They raise
    ``RecordError(path, index, problem)`` directly, and also reject text that is not UTF-8 (the
    ``tf.data`` readers pass text bytes through; the tokenizer replaces invalid bytes).
"""
from __future__ import annotations

import codecs
import contextlib
import os
import re
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from tfrecord_tools import schema
from tfrecord_tools.decoding import (  # noqa: F401  (public names of this module since before the split)
    _ERROR_PREFIX, VideoDecoder, _require, _where, decode_frames, sample_frame_indices, sample_frame_indices_tf)
from tfrecord_tools.errors import RecordError
from tfrecord_tools.ids import UniqueIds, check_video_id
from tfrecord_tools.validation import decode_raw_record  # noqa: F401

AUTOTUNE = tf.data.AUTOTUNE
RECORD_FRAMING_BYTES = 16  # uint64 length + uint32 length CRC + uint32 data CRC around each record
DEFAULT_SHUFFLE_BUFFER = 1024
_MAX_PARALLEL_FILES = 16
_ERROR_PATTERN = re.compile(r"RecordError: (?P<path>.+?), record (?P<index>-?\d+): (?P<problem>.*?)\](?:\s|$)")
_DATA_LOSS_PATTERN = re.compile(r"(corrupted|truncated) record at \d+")

Files = str | os.PathLike | Sequence[str | os.PathLike]


# ----------------------------------------------------------------------------- files


def _resolve_files(files: Files) -> list[str]:
    """Paths (glob patterns expanded, sorted) of existing files; a clear error otherwise."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths: list[str] = []
    for item in files:
        item = os.fspath(item)
        if any(char in item for char in "*?[") and not tf.io.gfile.exists(item):  # an existing path is literal
            matches = sorted(tf.io.gfile.glob(item))
            if not matches:
                raise FileNotFoundError(f"{item}: no file matches this pattern")
            paths.extend(matches)
        else:
            if not tf.io.gfile.exists(item) or tf.io.gfile.isdir(item):
                raise FileNotFoundError(f"{item}: no such TFRecord file")
            paths.append(item)
    if not paths:
        raise ValueError("no input files given")
    return paths


def checked_file_records(path: tf.Tensor | str, size: tf.Tensor | int) -> tf.data.Dataset:
    """``(path, index, record)`` of one TFRecord file of ``size`` bytes, in file order.

    Fails -- naming the file and the record where reading stopped -- if the file is corrupt or
    truncated (see the module docstring). Use it as the ``interleave`` function over
    ``(path, size)`` pairs; ``size`` is ``os.path.getsize(path)``.
    """
    path = tf.convert_to_tensor(path, tf.string)
    size = tf.cast(size, tf.int64)
    records = tf.data.TFRecordDataset(path).ignore_errors()
    items = tf.data.Dataset.zip((records, tf.data.Dataset.from_tensors(False).repeat()))
    items = items.concatenate(tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True))))

    def step(state, item):
        index, offset = state
        record, is_end = item
        complete = tf.logical_or(tf.logical_not(is_end), tf.equal(offset, size))
        check = _require(complete, lambda: tf.strings.join([
            _ERROR_PREFIX, _where(path, index), ": corrupt or truncated TFRecord data: reading stopped at byte ",
            tf.strings.as_string(offset), " of ", tf.strings.as_string(size), " (record length or CRC check failed)"]))
        consumed = tf.cast(tf.strings.length(record), tf.int64) + RECORD_FRAMING_BYTES
        with tf.control_dependencies([check]):
            out_index = tf.where(is_end, tf.constant(-1, tf.int64), index)  # -1 marks the sentinel
        return (index + 1, offset + consumed), (path, out_index, record)

    items = items.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)
    return items.filter(lambda path, index, record: index >= 0)


def _indexed_records(paths: list[str], shuffle: bool, seed: int | None, num_parallel, deterministic: bool):
    """All files' records as ``(path, index, record)``, interleaved one record per file in turn."""
    sizes = [tf.io.gfile.stat(path).length for path in paths]
    files = tf.data.Dataset.from_tensor_slices((tf.constant(paths), tf.constant(sizes, tf.int64)))
    if shuffle and len(paths) > 1:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if len(paths) == 1:
        return files.flat_map(checked_file_records)
    return files.interleave(checked_file_records, cycle_length=min(len(paths), _MAX_PARALLEL_FILES),
                            block_length=1, num_parallel_calls=num_parallel, deterministic=deterministic)


def _records_pipeline(files: Files, batch_size: int, shuffle: bool, shuffle_buffer: int, repeat: bool,
                      seed: int | None, num_parallel):
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    deterministic = not shuffle or seed is not None
    dataset = _indexed_records(_resolve_files(files), shuffle, seed, num_parallel, deterministic)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset, deterministic


# ----------------------------------------------------------------------------- tf.data readers


def read_videos(files: Files, kind: schema.RecordKind, decoder: VideoDecoder, batch_size: int,
                shuffle: bool = False, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, repeat: bool = False,
                drop_remainder: bool = False, seed: int | None = None, num_parallel=AUTOTUNE) -> tf.data.Dataset:
    """Batched decoded feature dicts of pointwise / pairwise / test records.

    ``files``: a path, a glob pattern or a list of them. With ``shuffle`` the file order and the
    records (``shuffle_buffer`` serialized records) are shuffled every epoch; ``repeat`` repeats
    forever. The order is deterministic unless ``shuffle`` is on without a ``seed``.
    """
    kind = schema.RecordKind(kind)
    if kind == schema.RecordKind.PAIR:
        raise ValueError("pair records (fold shards) are read with read_pairs")
    dataset, deterministic = _records_pipeline(files, batch_size, shuffle, shuffle_buffer, repeat, seed, num_parallel)
    table = decoder.tag_table()

    def decode(path, index, record):
        return decoder.decode_video_record(record, kind, path, index, table)

    dataset = dataset.map(decode, num_parallel_calls=num_parallel, deterministic=deterministic)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if decoder.tokenizer is not None:
        def tokenize(batch):
            input_ids, attention_mask = decoder.tokenize(batch["title"], batch["asr_text"])
            return {**batch, "input_ids": input_ids, "attention_mask": attention_mask}

        dataset = dataset.map(tokenize, num_parallel_calls=num_parallel, deterministic=deterministic)
    return dataset.prefetch(AUTOTUNE)


def read_pairs(files: Files, decoder: VideoDecoder, batch_size: int, shuffle: bool = False, repeat: bool = False,
               drop_remainder: bool = False, seed: int | None = None, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
               num_parallel=AUTOTUNE) -> tf.data.Dataset:
    """Batched ``{"video_1": {...}, "video_2": {...}, "sim": [B] float32}`` from fold-shard pair records
    (arguments as ``read_videos``)."""
    dataset, deterministic = _records_pipeline(files, batch_size, shuffle, shuffle_buffer, repeat, seed, num_parallel)
    table = decoder.tag_table()

    def decode(path, index, record):
        return decoder.decode_pair_record(record, path, index, table)

    dataset = dataset.map(decode, num_parallel_calls=num_parallel, deterministic=deterministic)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if decoder.tokenizer is not None:
        def tokenize(batch):
            first, second = batch["video_1"], batch["video_2"]
            input_ids, attention_mask = decoder.tokenize(tf.concat([first["title"], second["title"]], axis=0),
                                                         tf.concat([first["asr_text"], second["asr_text"]], axis=0))
            rows = tf.shape(first["title"])[0]
            return {
                "video_1": {**first, "input_ids": input_ids[:rows], "attention_mask": attention_mask[:rows]},
                "video_2": {**second, "input_ids": input_ids[rows:], "attention_mask": attention_mask[rows:]},
                "sim": batch["sim"],
            }

        dataset = dataset.map(tokenize, num_parallel_calls=num_parallel, deterministic=deterministic)
    return dataset.prefetch(AUTOTUNE)


# ----------------------------------------------------------------------------- errors of the pipelines


def _unescape(text: str) -> str:
    """Undo the C escaping TensorFlow applies to string data in assertion messages."""
    try:
        return codecs.escape_decode(text.encode("utf-8"))[0].decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return text


@contextlib.contextmanager
def record_errors() -> Iterator[None]:
    """Turn the pipelines' in-graph record assertions into ``RecordError(path, index, problem)``."""
    try:
        yield
    except tf.errors.OpError as error:
        match = _ERROR_PATTERN.search(error.message or "")
        if match is None:
            raise
        raise RecordError(_unescape(match["path"]), int(match["index"]), _unescape(match["problem"])) from error


def iterate_checked(dataset: tf.data.Dataset) -> Iterator[Any]:
    """Iterate ``dataset`` eagerly, raising ``RecordError`` for bad records (see ``record_errors``)."""
    with record_errors():
        for element in dataset:
            yield element


# ----------------------------------------------------------------------------- Python readers


def _serialized_records(path: str) -> Iterator[tuple[int, bytes]]:
    """``(index, record)`` of one file; a corrupt/truncated file raises RecordError at the bad record."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such TFRecord file")
    index = 0
    iterator = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except tf.errors.DataLossError as error:
            found = _DATA_LOSS_PATTERN.search(error.message or "")
            detail = f" ({found.group(0)})" if found else ""
            raise RecordError(path, index, f"corrupt or truncated TFRecord data{detail}") from None
        yield index, record.numpy()
        index += 1


def count_records(path: str | os.PathLike) -> int:
    """Number of records in a TFRecord file (every record's length and CRC checked)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such TFRecord file")
    size = os.path.getsize(path)
    records = tf.data.TFRecordDataset(path).ignore_errors()
    count, consumed = records.reduce(
        (tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
        lambda state, record: (state[0] + 1,
                               state[1] + tf.cast(tf.strings.length(record), tf.int64) + RECORD_FRAMING_BYTES))
    count, consumed = int(count), int(consumed)
    if consumed != size:
        raise RecordError(path, count, f"corrupt or truncated TFRecord data: reading stopped at byte {consumed} "
                                       f"of {size} (record length or CRC check failed)")
    return count


def scan_video_ids(files: Files, seen: "UniqueIds | None" = None, batch_size: int = 1024) -> list[str]:
    """Every video id of ``files`` (pointwise / pairwise / test records), in file order, read without
    decoding anything else. RecordError (file, record) for a corrupt file, a record without exactly
    one id, an id that breaks ``ids.check_video_id`` (empty, whitespace, control characters, not
    UTF-8), or an id already seen (in these files or in ``seen``): an id names one video."""
    seen = UniqueIds() if seen is None else seen
    found: list[str] = []
    spec = {schema.KEY_ID: tf.io.VarLenFeature(tf.string)}
    for path in _resolve_files(files):
        records = checked_file_records(path, os.path.getsize(path)).batch(batch_size)

        def id_values(paths, index, record):
            values = tf.io.parse_example(record, spec)[schema.KEY_ID]
            return index, values.indices[:, 0], values.values

        with record_errors():
            for indices, rows, raw_ids in records.map(id_values).as_numpy_iterator():
                counts = np.bincount(rows, minlength=len(indices))
                for row, record_index in enumerate(indices.tolist()):
                    if counts[row] != 1:
                        raise RecordError(path, record_index, f"key 'id' holds {counts[row]} values, expected 1")
                for record_index, raw in zip(indices.tolist(), raw_ids.tolist()):
                    video_id = check_video_id(raw, path, record_index)
                    seen.add(video_id, path, record_index)
                    found.append(video_id)
    return found


def read_raw_videos(path: str | os.PathLike, kind: schema.RecordKind,
                    frame_dim: int = schema.FRAME_DIM) -> Iterator[dict]:
    """Raw videos of a pointwise / pairwise / test file, in writer.py's format:
    ``{"id", "title", "asr_text": str, "frames": float16 [n, dim], "tag_id": list[int], "category_id": int}``
    (no ``tag_id``/``category_id`` for test records). Raises RecordError on bad records."""
    kind = schema.RecordKind(kind)
    if kind == schema.RecordKind.PAIR:
        raise ValueError("pair records (fold shards) are read with read_raw_pairs")
    path = os.fspath(path)
    for index, record in _serialized_records(path):
        yield decode_raw_record(record, kind, path, index, frame_dim)


def read_raw_pairs(path: str | os.PathLike, frame_dim: int = schema.FRAME_DIM) -> Iterator[dict]:
    """Raw pair records: ``{"video_1": raw video, "video_2": raw video, "sim": float}``."""
    path = os.fspath(path)
    for index, record in _serialized_records(path):
        yield decode_raw_record(record, schema.RecordKind.PAIR, path, index, frame_dim)


def verify_file(path: str | os.PathLike, kind: schema.RecordKind | None = None,
                frame_dim: int = schema.FRAME_DIM) -> int:
    """Check a whole file and return its record count: lengths and CRCs always, and with ``kind``
    also every record's layout (keys, value types and counts, UTF-8 text, frame sizes, ``sim``)."""
    path = os.fspath(path)
    count = count_records(path)
    if kind is not None:
        kind = schema.RecordKind(kind)
        for index, record in _serialized_records(path):
            decode_raw_record(record, kind, path, index, frame_dim)
    return count
