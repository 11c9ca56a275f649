"""Random access to the videos of TFRecord files: an index ``video id -> byte offset``.

The fold-shard writer must pair any two videos of ``pairwise.tfrecords`` without holding the
file in memory. TFRecord framing makes that possible: every record is

    uint64 length | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)

(all little endian), so the byte offset of record ``i + 1`` is the offset of record ``i`` plus
``16 + length``. ``index_videos`` reads each file once through ``tf.data.TFRecordDataset`` (whose
C++ reader verifies both CRCs of every record), validates every record against the official
layout and remembers where each video starts; ``VideoReader`` then seeks to a video and reads
just that record, checking that its header still matches the index.

Memory is one small tuple per video, whatever the frame count.
"""
from __future__ import annotations

import os
import re
import struct
from typing import Iterator, NamedTuple, Sequence

import tensorflow as tf
from tqdm.auto import tqdm

from tfrecord_tools import schema, validation
from tfrecord_tools.errors import RecordError

HEADER_BYTES = 12  # uint64 length + uint32 masked crc of the length
FOOTER_BYTES = 4  # uint32 masked crc of the data
_GZIP_MAGIC = b"\x1f\x8b"
_CRC_MASK_DELTA = 0xA282EAD8


def _crc32c_table() -> list[int]:
    """Byte table of CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` in pure Python: meant for record headers (8 bytes), not for frames."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC TFRecord stores: rotate right by 15 bits and add a constant."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


class RecordLocation(NamedTuple):
    """Where one record lies: which file (position in the index's file list), record number, bytes."""

    file: int
    index: int
    offset: int
    length: int


class SkippedRecord(NamedTuple):
    """A record left out by ``skip_corrupt``: where it was, its video id if readable, and why."""

    path: str
    index: int
    offset: int
    video_id: str | None
    problem: str

    def to_dict(self) -> dict:
        return {"file": self.path, "record": self.index, "byte_offset": self.offset,
                "video_id": self.video_id, "problem": self.problem}

    def __str__(self) -> str:
        return f"{self.path}, record {self.index}: {self.problem}"


def iter_records(path: str | os.PathLike, progress: bool = False,
                 skipped: list[SkippedRecord] | None = None) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(record index, byte offset, data)`` for every record of an uncompressed TFRecord file.

    CRCs are verified by TensorFlow's reader; a corrupt or truncated file raises RecordError
    naming the file and the index of the first bad record. With a ``skipped`` list, bad records
    are appended to it instead (see ``_resume_after_corruption``) and reading goes on.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RecordError(path, None, "file not found")
    size = os.path.getsize(path)
    dataset = tf.data.TFRecordDataset(path, buffer_size=8 << 20)
    offset = 0
    index = 0
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"index {os.path.basename(path)}",
               disable=not progress, leave=False)
    iterator = iter(dataset)
    try:
        while True:
            try:
                data = next(iterator).numpy()
            except StopIteration:
                break
            except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.InvalidArgumentError) as error:
                if skipped is None:
                    raise RecordError(path, index, _corruption_message(path, offset, error)) from None
                yield from _resume_after_corruption(path, size, index, offset, skipped)
                return
            yield index, offset, data
            step = HEADER_BYTES + len(data) + FOOTER_BYTES
            offset += step
            index += 1
            bar.update(step)
    finally:
        bar.close()
    if offset != size:  # TensorFlow stops quietly on some truncations; the framing must add up
        problem = (f"truncated file: {size - offset} trailing bytes after the last "
                   f"complete record (byte offset {offset}, file size {size})")
        if skipped is None:
            raise RecordError(path, index, problem)
        skipped.append(SkippedRecord(path, index, offset, None, problem))


def _read_header(path: str, offset: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(HEADER_BYTES)


def _resume_after_corruption(path: str, size: int, index: int, offset: int,
                             skipped: list[SkippedRecord]) -> Iterator[tuple[int, int, bytes]]:
    """Go on reading ``path`` from the bad record at ``offset``, skipping what cannot be read.

    A record whose length header is intact (its own CRC matches) but whose data fails the CRC is
    skipped alone: the header says where the next record starts. A record whose header is damaged,
    or that runs past the end of the file, ends the file: nothing after it can be located, and the
    skipped entry says how many bytes were lost. Reading goes on with TensorFlow's random-access
    record reader (CRC-checked like ``TFRecordDataset``, which cannot start at an offset).
    """
    from tensorflow.python.lib.io import tf_record  # the public API has no offset reader

    random_reader = tf_record.tf_record_random_reader(path)
    while offset < size:
        try:
            data, next_offset = random_reader.read(offset)
        except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.InvalidArgumentError,
                IndexError) as error:
            header = _read_header(path, offset)
            length = struct.unpack("<Q", header[:8])[0] if len(header) == HEADER_BYTES else None
            header_ok = length is not None and masked_crc32c(header[:8]) == struct.unpack("<I", header[8:])[0]
            end = offset + HEADER_BYTES + length + FOOTER_BYTES if header_ok else None
            if header_ok and end <= size:
                message = getattr(error, "message", str(error)).strip().splitlines()[0]
                skipped.append(SkippedRecord(path, index, offset, None,
                                             f"corrupt record data (CRC mismatch) at byte offset {offset}, "
                                             f"{length} bytes skipped: TensorFlow says '{message}'"))
                offset, index = end, index + 1
                continue
            reason = ("the file ends inside this record (truncated)" if header_ok or len(header) < HEADER_BYTES
                      else "its length header is corrupt, so no later record can be located")
            skipped.append(SkippedRecord(path, index, offset, None,
                                         f"unreadable from byte offset {offset}: {reason}; the remaining "
                                         f"{size - offset} bytes of the file are skipped"))
            return
        yield index, offset, data
        offset, index = next_offset, index + 1


def _corruption_message(path: str, offset: int, error: Exception) -> str:
    message = getattr(error, "message", str(error)).strip().splitlines()[0]
    message = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", message)  # TensorFlow's op decoration
    hint = ""
    with open(path, "rb") as handle:
        if offset == 0 and handle.read(2) == _GZIP_MAGIC:
            hint = " (the file starts like GZIP: fold shards need uncompressed TFRecord files)"
    return (f"corrupt or truncated record (bad CRC or length) at byte offset {offset}: "
            f"TensorFlow says '{message}'{hint}")


def validate_video(example: tf.train.Example, kind: schema.RecordKind, path: str, index: int) -> str:
    """Check one raw video record against the official layout; return its id.

    The checks and their messages are `tfrecord_tools.validation`'s (the readers' own); the index
    adds one rule of its own: the id must be a decimal id (the fold shards pair videos by it).
    """
    video = validation._raw_video(example.features.feature, schema.RecordKind(kind), path, index, schema.FRAME_DIM)
    video_id = video[schema.KEY_ID]  # checked by ids.check_video_id inside the validator
    if not (video_id.isascii() and video_id.isdigit()):
        raise RecordError(path, index, f"id {video_id!r} is not a decimal id")
    return video_id


parse_example = validation.parse_example  # serialized bytes -> tf.train.Example, or RecordError


class VideoIndex:
    """``video id -> RecordLocation`` over one or more TFRecord files of one record kind."""

    def __init__(self, files: Sequence[str], locations: dict[str, RecordLocation],
                 skipped: Sequence[SkippedRecord] = ()):
        self.files = [os.fspath(f) for f in files]
        self.locations = locations
        self.skipped = list(skipped)  # records left out by index_videos(skip_corrupt=True)

    def __len__(self) -> int:
        return len(self.locations)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.locations

    def open(self) -> "VideoReader":
        """A reader that fetches videos by id (use as a context manager)."""
        return VideoReader(self)

    def describe(self, location: RecordLocation) -> str:
        return f"{self.files[location.file]}, record {location.index}"


def _record_video_id(data: bytes) -> str | None:
    """The id of a serialized video record that failed validation, if it can be read at all."""
    try:
        ids = tf.train.Example.FromString(data).features.feature[schema.KEY_ID].bytes_list.value
    except Exception:  # not an Example
        return None
    if len(ids) != 1:
        return None
    video_id = ids[0].decode("ascii", errors="replace")
    return video_id if video_id.isdigit() else None


def index_videos(files: Sequence[str | os.PathLike], kind: schema.RecordKind = schema.RecordKind.PAIRWISE,
                 progress: bool = False, skip_corrupt: bool = False) -> VideoIndex:
    """Read every record of ``files`` once (CRC-checked, layout-validated) and index them by id.

    A video id found twice (in one file or across files) is an error naming both places, and so
    is a file without any record (an empty shard). With ``skip_corrupt`` a record that is corrupt,
    truncated or fails validation is left out and listed in ``VideoIndex.skipped`` instead of
    raising; duplicate ids and empty files stay errors.
    """
    files = [os.fspath(f) for f in files]
    if not files:
        raise ValueError("index_videos needs at least one TFRecord file")
    locations: dict[str, RecordLocation] = {}
    skipped: list[SkippedRecord] = []
    for number, path in enumerate(files):
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise RecordError(path, None, "empty file: it holds no records (an empty shard; expected "
                                          f"{schema.RecordKind(kind).value} video records)")
        for index, offset, data in iter_records(path, progress=progress, skipped=skipped if skip_corrupt else None):
            try:
                video_id = validate_video(parse_example(data, path, index), kind, path, index)
            except RecordError as error:
                if not skip_corrupt:
                    raise
                skipped.append(SkippedRecord(path, index, offset, _record_video_id(data), error.problem))
                continue
            previous = locations.get(video_id)
            if previous is not None:
                raise RecordError(path, index, f"duplicate video id {video_id}: already in "
                                               f"{files[previous.file]}, record {previous.index}")
            locations[video_id] = RecordLocation(number, index, offset, len(data))
    return VideoIndex(files, locations, skipped)


class VideoReader:
    """Seek-and-read access to indexed videos; keeps one open handle per file."""

    def __init__(self, index: VideoIndex):
        self.index = index
        self._handles = [open(path, "rb") for path in index.files]

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles = []

    def read_bytes(self, video_id: str) -> bytes:
        """The serialized record of ``video_id`` (header checked against the index)."""
        location = self.index.locations[video_id]
        path = self.index.files[location.file]
        handle = self._handles[location.file]
        handle.seek(location.offset)
        header = handle.read(HEADER_BYTES)
        if len(header) != HEADER_BYTES:
            raise RecordError(path, location.index, "file is shorter than when it was indexed")
        length, length_crc = struct.unpack("<QI", header)
        if length != location.length or masked_crc32c(header[:8]) != length_crc:
            raise RecordError(path, location.index, f"record header at byte offset {location.offset} "
                                                    "changed since the file was indexed")
        data = handle.read(length)
        if len(data) != length:
            raise RecordError(path, location.index, "file is shorter than when it was indexed")
        return data

    def read_example(self, video_id: str) -> tf.train.Example:
        location = self.index.locations[video_id]
        return parse_example(self.read_bytes(video_id), self.index.files[location.file], location.index)

