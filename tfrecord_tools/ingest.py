"""Bring your own data: frame features + a metadata table (+ labels) -> the official record layout.

    python -m tfrecord_tools.ingest --features DIR --metadata META.csv|META.jsonl --out DATA
                                    [--labels label.tsv] [--test-ids FILE | --test-all]
                                    [--shard-size 50000] [--skip-bad] [--overwrite] [--quiet]
    python -m tfrecord_tools.ingest --features FRAMES.npy --offsets INDEX.csv ...   (one array file)

Inputs
    Frame features, float16/32/64 ``[frames, 1536]`` per video (1 frame a second, at most 32 in the
    challenge; ``python -m tfrecord_tools.extract_frames`` writes them from video files), either
      * a directory with one ``<id>.npy`` or ``<id>.npz`` per video (an ``.npz`` holds one array, or
        an array named ``frames``); a ``feature_file`` column of the metadata names another file of
        that directory for its row; or
      * one ``.npy`` array ``[total frames, 1536]`` plus ``--offsets INDEX.csv`` with the columns
        ``id,start,end``: the video's frames are rows ``start .. end-1`` (read with seeks, not
        loaded or memory-mapped, so memory stays flat).
    The metadata table, one row per video, CSV/TSV with a header (``.csv``, ``.tsv``) or JSON Lines
    (``.jsonl``, ``.ndjson``, ``.json``; one object a line):
        id          decimal video id (required; no whitespace, no duplicates)
        title       UTF-8 title (required column; may be empty)
        asr_text    speech transcript; empty or absent is written as the official ``nan``
        tags        tag ids: ``12;40;7`` (also ``,`` ``|`` or spaces; a JSON list in JSON Lines)
        category    category id (empty: -1; the models do not use it)
        split       optional: ``pointwise``, ``pairwise`` or ``test`` (``test_a``)
        feature_file  optional (directory input): file name of the row's features
    ``--labels label.tsv``: the pair judgements (``query<TAB>candidate<TAB>score``, score on the 0.05
    grid in [0, 1]), validated by ``tfrecord_tools.labels.read_labels``.

Where a video goes (a video can be in several splits)
    pairwise/  every video of label.tsv and every row with split ``pairwise``;
    test_a/    rows with split ``test``, ids listed in ``--test-ids`` (one a line), or every video
               with ``--test-all`` (then result.zip embeds the whole collection);
    pointwise/ rows with split ``pointwise`` and every video in neither of the two above.
    pointwise and pairwise records carry tags and category, test records do not.

Outputs (under DATA)
    pointwise/pretrain_{0..}.tfrecords   ``--shard-size`` videos each
    pairwise/pairwise.tfrecords          (pairwise_{0..}.tfrecords when more than one shard)
    pairwise/label.tsv                   the labels (with --skip-bad, without the lines of skipped videos)
    test_a/test_a.tfrecords              (test_a_{0..}.tfrecords when more than one shard)
    tag_list.txt                         the 10,000 most frequent tags of pointwise + pairwise
                                         videos, most frequent first (ties: smaller id first)
    ingest_skipped.tsv                   with --skip-bad: every skipped row, array and label line
    ingest_meta.json                     counts and inputs; written last: a complete data set

Bad input
    A row or array that cannot become a valid record -- a bad or duplicate id, a missing title,
    unparsable tags or category, an unknown split, no features, features of the wrong shape or
    dtype, no frames, NaN/Inf or values beyond float16 -- and a label or test id without a
    video stop the run with an error naming the file and the line (``DATA`` is left untouched).
    ``--skip-bad`` instead skips each such row (and the label lines of its video), lists it in
    ``ingest_skipped.tsv`` and prints a summary.

Streaming and memory
    Rows are read, checked and written one at a time. The ids seen, the label / test ids, the
    offsets index and the tag counts live in an SQLite file in the staging directory (a bounded page
    cache), so peak memory does not grow with the collection. Everything is written into
    ``DATA/.ingest-<pid>.tmp/`` and moved into place only after the last check; an interrupted or
    failed run leaves DATA as it was (a killed run's staging directory is removed by the next run).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import shutil
import sqlite3
import sys
import time
from typing import Iterator, Sequence

import numpy as np

from tfrecord_tools import schema
from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.errors import DataError
from tfrecord_tools.labels import read_labels

TAG_LIST_SIZE = schema.NUM_TAGS
DEFAULT_SHARD_SIZE = 50_000  # videos per pointwise file, as the official pretrain_*.tfrecords
COLUMNS = ("id", "title", "asr_text", "tags", "category", "split", "feature_file")
SPLITS = {"pointwise": "pointwise", "pairwise": "pairwise", "test": "test", "test_a": "test"}
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
FEATURE_SUFFIXES = (".npy", ".npz")
META_FILE = "ingest_meta.json"
SKIPPED_FILE = "ingest_skipped.tsv"
STAGING_PREFIX = ".ingest-"
# What a previous ingest (or the synthetic generator) leaves in DATA; --overwrite replaces it.
OWNED = {"pointwise": re.compile(r"pretrain_\d+\.tfrecords$"),
         "pairwise": re.compile(r"(pairwise(_\d+)?\.tfrecords|label\.tsv)$"),
         "test_a": re.compile(r"test_a(_\d+)?\.tfrecords$")}
OWNED_FILES = ("tag_list.txt", META_FILE, SKIPPED_FILE, "synth_meta.json")
_TAG_SPLIT = re.compile(r"[\s,;|]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_COMMIT_EVERY = 10_000  # rows per SQLite transaction


class BadRow(Exception):
    """One bad row / array / index line: where (file, location), which video, what is wrong."""

    def __init__(self, path: str, where: str, video_id: str | None, problem: str):
        self.path, self.where, self.video_id, self.problem = path, where, video_id, problem
        super().__init__(problem)

    def error(self) -> DataError:
        problem = f"video {self.video_id}: {self.problem}" if self.video_id else self.problem
        return DataError(self.path, self.where, problem)


# ------------------------------------------------------------------------------------ ids, fields
def id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid video id (a decimal string, as the official layout), or None."""
    if value is None:
        return "missing id"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"id must be a decimal string, got {type(value).__name__} {value!r}"
    text = str(value)
    if text == "":
        return "empty id"
    if text != text.strip():
        return f"id {text!r} has leading or trailing whitespace"
    if _CONTROL.search(text):
        return f"id {text!r} holds a control character"
    if any(ch.isspace() for ch in text):
        return f"id {text!r} holds whitespace"
    if not (text.isascii() and text.isdigit()):
        return f"id {text!r} is not a decimal id (digits 0-9 only, like the official ids)"
    return None


def parse_tags(value: object) -> list[int]:
    """Tag ids of a cell: None / '' -> []; '1;2 3,4|5' or '[1, 2]' or a list -> ints >= 0.

    ValueError (a message) for anything else, or a tag listed twice.
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        items = [item for item in _TAG_SPLIT.split(text) if item]
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        raise ValueError(f"tags must be a list or a string of ids, got {type(value).__name__}")
    tags: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ValueError(f"tag {item!r} is not an integer id")
        text = str(item).strip().strip("'\"")
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"tag {item!r} is not a non-negative integer id")
        tags.append(int(text))
    if len(set(tags)) != len(tags):
        twice = next(tag for tag, n in collections.Counter(tags).items() if n > 1)
        raise ValueError(f"tag {twice} is listed twice")
    return tags


def parse_category(value: object) -> int:
    """A category cell: None / '' -> -1 (absent); otherwise a non-negative integer."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return -1
    if isinstance(value, bool):
        raise ValueError(f"category {value!r} is not an integer id")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError(f"category {value!r} is not a non-negative integer id")
    if number < 0:
        raise ValueError(f"category {value!r} is negative")
    return number


def _text_field(value: object, name: str, required: bool) -> str | None:
    if value is None:
        if required:
            raise ValueError(f"missing {name}")
        return None
    if isinstance(value, float) and math.isnan(value):  # pandas-style NaN in JSON Lines
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    return str(value)


# ------------------------------------------------------------------------------------ metadata
@dataclasses.dataclass
class Row:
    """One metadata row, as read (not yet validated)."""

    where: str  # "line N"
    fields: dict


def _metadata_format(path: str) -> str:
    lower = path.lower()
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lower.endswith(".tsv"):
        return "tsv"
    if lower.endswith(".csv"):
        return "csv"
    raise DataError(path, None, "unknown metadata format: name it .csv, .tsv, .jsonl, .ndjson or .json (JSON Lines)")


def read_metadata(path: str, warn=print) -> Iterator[Row]:
    """Stream the rows of a metadata table; DataError naming the line for a row that does not parse."""
    kind = _metadata_format(path)
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataError(path, None, "metadata file not found") from None
    with handle:
        if kind == "jsonl":
            yield from _read_jsonl(path, handle, warn)
        else:
            yield from _read_csv(path, handle, "\t" if kind == "tsv" else ",", warn)


def _read_csv(path, handle, delimiter, warn) -> Iterator[Row]:
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, None, "empty metadata file (expected a header with id and title)") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(path, "line 1", f"unreadable header ({error})") from None
    header = [name.strip() for name in header]
    for required in ("id", "title"):
        if required not in header:
            raise DataError(path, "line 1", f"the header has no '{required}' column (columns: {header})")
    duplicated = [name for name, n in collections.Counter(header).items() if n > 1]
    if duplicated:
        raise DataError(path, "line 1", f"column(s) {duplicated} appear twice in the header")
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        warn(f"ingest: {path}: ignoring column(s) {unknown} (known: {list(COLUMNS)})")
    positions = {name: header.index(name) for name in COLUMNS if name in header}
    start = 2
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as error:
            raise DataError(path, f"line {start}", f"row does not parse ({error})") from None
        where = f"line {start}"
        start = reader.line_num + 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue  # a blank line holds no row
        if len(cells) != len(header):
            raise DataError(path, where, f"row has {len(cells)} fields, the header {len(header)}")
        yield Row(where, {name: cells[i] for name, i in positions.items()})


def _read_jsonl(path, handle, warn) -> Iterator[Row]:
    warned = False
    number = 0
    while True:
        try:
            line = handle.readline()
        except UnicodeDecodeError as error:
            raise DataError(path, f"line {number + 1}", f"not valid UTF-8 ({error})") from None
        if not line:
            return
        number += 1
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(path, f"line {number}", f"not a JSON object ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataError(path, f"line {number}", f"expected a JSON object, got {type(record).__name__}")
        if not warned:
            unknown = [key for key in record if key not in COLUMNS]
            if unknown:
                warn(f"ingest: {path}: ignoring key(s) {unknown} (known: {list(COLUMNS)})")
                warned = True
        yield Row(f"line {number}", {key: record[key] for key in COLUMNS if key in record})


# ------------------------------------------------------------------------------------ features
def check_frames(array: np.ndarray, frame_dim: int = schema.FRAME_DIM) -> np.ndarray:
    """``array`` as float16 ``[n, frame_dim]``; ValueError naming the problem (shape, dtype, NaN/Inf)."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"features are a {type(array).__name__}, not an array")
    if array.dtype.kind != "f":
        raise ValueError(f"features have dtype {array.dtype}, expected float16/32/64")
    if array.ndim != 2:
        raise ValueError(f"features have shape {array.shape}, expected [frames, {frame_dim}]")
    if array.shape[0] == 0:
        raise ValueError(f"features hold no frames (shape {array.shape})")
    if array.shape[1] != frame_dim:
        raise ValueError(f"features have {array.shape[1]} values a frame, expected {frame_dim} (shape {array.shape})")
    with np.errstate(over="ignore", invalid="ignore"):
        half = array.astype("<f2")
    if not np.isfinite(half).all():  # NaN/Inf in the input, or finite values beyond float16
        finite = np.isfinite(array)
        if not finite.all():
            frame = int(np.flatnonzero(~finite.all(axis=1))[0])
            raise ValueError(f"frame {frame} holds {array[frame][~finite[frame]][0]} (NaN/Inf)")
        finite = np.isfinite(half)
        frame = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise ValueError(f"frame {frame} holds {array[frame][~finite[frame]][0]}, beyond the float16 range (+-65504)")
    return half


def load_feature_file(path: str) -> np.ndarray:
    """The array of one per-video ``.npy`` / ``.npz`` file (ValueError on unreadable files)."""
    try:
        if not path.endswith(".npz"):
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            names = archive.files
            if "frames" in names or len(names) == 1:
                return archive["frames" if "frames" in names else names[0]]
    except (ValueError, OSError, EOFError) as error:  # not a .npy/.npz, truncated, pickled objects
        raise ValueError(f"cannot read {path}: {error}") from None
    raise ValueError(f"{path} holds the arrays {names}: name the frame array 'frames'")


class FeatureDir:
    """Per-video feature files in one directory."""

    def __init__(self, directory: str):
        self.directory = directory
        if not os.path.isdir(directory):
            raise DataError(directory, None, "features directory not found")

    def describe(self) -> dict:
        return {"kind": "directory", "path": os.path.abspath(self.directory)}

    def file_for(self, video_id: str, feature_file: str | None) -> str:
        if feature_file:
            if os.path.basename(feature_file) != feature_file or feature_file in (".", ".."):
                raise ValueError(f"feature_file {feature_file!r} must be a file name inside {self.directory}")
            path = os.path.join(self.directory, feature_file)
            if not os.path.isfile(path):
                raise ValueError(f"feature file {path} not found")
            return path
        for suffix in FEATURE_SUFFIXES:
            path = os.path.join(self.directory, video_id + suffix)
            if os.path.isfile(path):
                return path
        raise ValueError(f"no feature file {os.path.join(self.directory, video_id)}.npy or .npz")

    def frames(self, video_id: str, feature_file: str | None) -> tuple[np.ndarray, str]:
        path = self.file_for(video_id, feature_file)
        return load_feature_file(path), os.path.basename(path)

    def unused(self, db: sqlite3.Connection) -> tuple[int, list[str]]:
        """Feature files of the directory that no ingested row used: (count, a few names)."""
        db.execute("CREATE TEMP TABLE files (name TEXT PRIMARY KEY)")
        with os.scandir(self.directory) as entries:
            batch = []
            for entry in entries:
                if entry.name.endswith(FEATURE_SUFFIXES) and entry.is_file():
                    batch.append((entry.name,))
                    if len(batch) >= _COMMIT_EVERY:
                        db.executemany("INSERT OR IGNORE INTO files VALUES (?)", batch)
                        batch = []
            db.executemany("INSERT OR IGNORE INTO files VALUES (?)", batch)
        # Neither used by an ingested row nor named after a row's id (a bad row's file is listed as skipped).
        query = ("FROM files WHERE name NOT IN (SELECT feature FROM videos WHERE feature IS NOT NULL) AND "
                 "substr(name, 1, length(name) - 4) NOT IN (SELECT id FROM videos)")
        count = db.execute(f"SELECT COUNT(*) {query}").fetchone()[0]
        names = [name for (name,) in db.execute(f"SELECT name {query} ORDER BY name LIMIT 5")]
        return count, names


class FeatureArray:
    """One ``.npy`` array ``[total frames, dim]`` and an ``id,start,end`` index (CSV, header)."""

    def __init__(self, array_path: str, index_path: str, db: sqlite3.Connection, skipped: "SkipLog"):
        self.path, self.index_path, self.db = array_path, index_path, db
        try:
            self.handle = open(array_path, "rb")
        except FileNotFoundError:
            raise DataError(array_path, None, "features array file not found") from None
        try:
            version = np.lib.format.read_magic(self.handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(self.handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(self.handle)
        except ValueError as error:
            raise DataError(array_path, None, f"not a .npy array file ({error})") from None
        if dtype.kind != "f" or len(shape) != 2 or fortran or dtype.hasobject:
            raise DataError(array_path, None, f"expected a C-order float array [frames, {schema.FRAME_DIM}], "
                                              f"got {dtype} {shape}{' (Fortran order)' if fortran else ''}")
        if shape[1] != schema.FRAME_DIM:
            raise DataError(array_path, None, f"rows have {shape[1]} values, expected {schema.FRAME_DIM}")
        self.dtype, self.rows, self.dim = dtype, shape[0], shape[1]
        self.data_offset = self.handle.tell()
        expected = self.data_offset + self.rows * self.dim * dtype.itemsize
        if os.path.getsize(array_path) < expected:
            raise DataError(array_path, None, f"truncated: {os.path.getsize(array_path)} bytes, the header "
                                              f"promises {expected}")
        db.execute("CREATE TABLE offsets (id TEXT PRIMARY KEY, start INTEGER, stop INTEGER, line INTEGER)")
        self._load_index(skipped)

    def describe(self) -> dict:
        return {"kind": "array", "path": os.path.abspath(self.path), "index": os.path.abspath(self.index_path),
                "rows": self.rows, "dtype": str(self.dtype)}

    def _load_index(self, skipped: "SkipLog") -> None:
        path = self.index_path
        kind = "tsv" if path.lower().endswith(".tsv") else "csv"
        rows = read_metadata_like(path, ("id", "start", "end"), kind)
        batch = []
        for where, line, cells in rows:
            try:
                problem = id_problem(cells["id"])
                if problem:
                    raise BadRow(path, where, None, problem)
                video_id = cells["id"]
                try:
                    start, stop = int(cells["start"]), int(cells["end"])
                except ValueError:
                    raise BadRow(path, where, video_id, f"start {cells['start']!r} / end {cells['end']!r} "
                                                        f"are not integers") from None
                if not 0 <= start <= stop <= self.rows:
                    raise BadRow(path, where, video_id, f"rows {start}..{stop} are outside the array's "
                                                        f"{self.rows} rows (0 <= start <= end <= {self.rows})")
                batch.append((video_id, start, stop, line))
            except BadRow as bad:
                skipped.add(bad)
                continue
            if len(batch) >= _COMMIT_EVERY:
                self._insert(batch, skipped)
                batch = []
        self._insert(batch, skipped)
        self.db.commit()

    def _insert(self, batch, skipped) -> None:
        for video_id, start, stop, line in batch:
            try:
                self.db.execute("INSERT INTO offsets VALUES (?, ?, ?, ?)", (video_id, start, stop, line))
            except sqlite3.IntegrityError:
                first = self.db.execute("SELECT line FROM offsets WHERE id = ?", (video_id,)).fetchone()[0]
                skipped.add(BadRow(self.index_path, f"line {line}", video_id,
                                   f"duplicate id in the index (first on line {first})"))

    def frames(self, video_id: str, feature_file: str | None) -> tuple[np.ndarray, str]:
        found = self.db.execute("SELECT start, stop FROM offsets WHERE id = ?", (video_id,)).fetchone()
        if found is None:
            raise ValueError(f"no entry in the offsets index {self.index_path}")
        start, stop = found
        count = (stop - start) * self.dim
        self.handle.seek(self.data_offset + start * self.dim * self.dtype.itemsize)
        array = np.fromfile(self.handle, dtype=self.dtype, count=count)
        if array.size != count:
            raise ValueError(f"{self.path}: short read at rows {start}..{stop}")
        return array.reshape(stop - start, self.dim), None

    def unused(self, db: sqlite3.Connection) -> tuple[int, list[str]]:
        query = "FROM offsets WHERE id NOT IN (SELECT id FROM videos)"  # no metadata row at all
        count = db.execute(f"SELECT COUNT(*) {query}").fetchone()[0]
        names = [name for (name,) in db.execute(f"SELECT id {query} ORDER BY line LIMIT 5")]
        return count, names

    def close(self) -> None:
        self.handle.close()


def read_metadata_like(path: str, required: Sequence[str], kind: str) -> Iterator[tuple[str, int, dict]]:
    """Rows of a small CSV/TSV with a header holding ``required`` columns: (where, line, cells)."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    with handle:
        reader = csv.reader(handle, delimiter="\t" if kind == "tsv" else ",")
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise DataError(path, None, f"empty file (expected a header {','.join(required)})") from None
        missing = [name for name in required if name not in header]
        if missing:
            raise DataError(path, "line 1", f"the header has no column(s) {missing} (columns: {header})")
        positions = {name: header.index(name) for name in required}
        start = 2
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as error:
                raise DataError(path, f"line {start}", f"row does not parse ({error})") from None
            line, start = start, reader.line_num + 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) != len(header):
                raise DataError(path, f"line {line}", f"row has {len(cells)} fields, the header {len(header)}")
            yield f"line {line}", line, {name: cells[i].strip() for name, i in positions.items()}


# ------------------------------------------------------------------------------------ skipping
class SkipLog:
    """Bad rows: raised at once (default) or, with ``skip_bad``, streamed to a TSV and counted."""

    def __init__(self, path: str | None, skip_bad: bool):
        self.skip_bad = skip_bad
        self.count = 0
        self.first: list[str] = []
        self.by_source: collections.Counter = collections.Counter()
        self.path = path
        self._handle = None
        if skip_bad:
            self._handle = open(path, "w", encoding="utf-8")
            self._handle.write("source\tlocation\tid\tproblem\n")

    def add(self, bad: BadRow) -> None:
        if not self.skip_bad:
            raise bad.error()
        self.count += 1
        self.by_source[os.path.basename(bad.path)] += 1
        message = str(bad.error())
        if len(self.first) < 10:
            self.first.append(message)
        clean = [str(value or "").replace("\t", " ").replace("\n", " ") for value in
                 (bad.path, bad.where, bad.video_id, bad.problem)]
        self._handle.write("\t".join(clean) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()

    def report(self) -> list[str]:
        if not self.count:
            return []
        lines = [f"skipped {self.count} bad row(s)/line(s) "
                 f"({', '.join(f'{n} in {name}' for name, n in sorted(self.by_source.items()))}):"]
        lines += [f"  {message}" for message in self.first]
        if self.count > len(self.first):
            lines.append(f"  ... and {self.count - len(self.first)} more")
        lines.append(f"  every one is listed in {SKIPPED_FILE}")
        return lines


# ------------------------------------------------------------------------------------ writing
class ShardedWriter:
    """Records of one split into ``<prefix>_<i>.tfrecords`` files of ``shard_size`` records."""

    def __init__(self, directory: str, prefix: str, shard_size: int):
        self.directory, self.prefix, self.shard_size = directory, prefix, shard_size
        self.files: list[str] = []
        self.counts: list[int] = []
        self._writer = None
        self.total = 0

    def write(self, record: bytes) -> None:
        import tensorflow as tf

        if self._writer is None or self.counts[-1] >= self.shard_size:
            self._close()
            path = os.path.join(self.directory, f"{self.prefix}_{len(self.files)}.tfrecords")
            os.makedirs(self.directory, exist_ok=True)
            self._writer = tf.io.TFRecordWriter(path)
            self.files.append(path)
            self.counts.append(0)
        self._writer.write(record)
        self.counts[-1] += 1
        self.total += 1

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self._close()


def _serialize(video_id: str, fields: dict, frames: np.ndarray, kind: schema.RecordKind) -> bytes:
    from tfrecord_tools.writer import serialize_video

    return serialize_video({"id": video_id, "title": fields["title"], "asr_text": fields["asr_text"],
                            "frames": frames, "tag_id": fields["tags"], "category_id": fields["category"]}, kind)


# ------------------------------------------------------------------------------------ the run
@dataclasses.dataclass
class IngestOptions:
    features: str
    metadata: str
    out: str
    offsets: str | None = None
    labels: str | None = None
    test_ids: str | None = None
    test_all: bool = False
    shard_size: int = DEFAULT_SHARD_SIZE
    skip_bad: bool = False
    overwrite: bool = False
    progress: bool = True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_staging(out: str) -> None:
    if not os.path.isdir(out):
        return
    pattern = re.compile(re.escape(STAGING_PREFIX) + r"(\d+)\.tmp$")
    for name in os.listdir(out):
        match = pattern.match(name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)


def existing_outputs(out: str) -> list[str]:
    """What a previous ingest / synthetic data set left in ``out`` (relative paths)."""
    found = []
    for sub, pattern in OWNED.items():
        directory = os.path.join(out, sub)
        if os.path.isdir(directory):
            found += sorted(f"{sub}/{name}" for name in os.listdir(directory) if pattern.match(name))
    found += [name for name in OWNED_FILES if os.path.exists(os.path.join(out, name))]
    return found


def _open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-16000")  # 16 MB page cache: the bound on its memory
    db.execute("PRAGMA temp_store=FILE")
    db.execute("CREATE TABLE videos (id TEXT PRIMARY KEY, line TEXT, feature TEXT, pairwise INTEGER)")
    db.execute("CREATE TABLE label_ids (id TEXT PRIMARY KEY, line INTEGER)")
    db.execute("CREATE TABLE test_ids (id TEXT PRIMARY KEY, line INTEGER)")
    db.execute("CREATE TABLE tags (tag INTEGER PRIMARY KEY, n INTEGER)")
    return db


def _load_label_ids(labels_path: str, db: sqlite3.Connection) -> int:
    """Validate label.tsv (read_labels) and put its ids (first line of each) in the database."""
    labels = read_labels(labels_path)
    count = len(labels)
    rows = []
    for line, (query, candidate) in enumerate(zip(labels.query.tolist(), labels.candidate.tolist()), start=1):
        rows += [(query, line), (candidate, line)]
        if len(rows) >= _COMMIT_EVERY:
            db.executemany("INSERT OR IGNORE INTO label_ids VALUES (?, ?)", rows)
            rows = []
    db.executemany("INSERT OR IGNORE INTO label_ids VALUES (?, ?)", rows)
    db.commit()
    return count


def _load_test_ids(path: str, db: sqlite3.Connection, skipped: SkipLog) -> None:
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, None, "test id file not found") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.rstrip("\r\n")
            if not text.strip():
                continue
            problem = id_problem(text)
            if problem:
                skipped.add(BadRow(path, f"line {number}", None, problem))
                continue
            try:
                db.execute("INSERT INTO test_ids VALUES (?, ?)", (text, number))
            except sqlite3.IntegrityError:
                first = db.execute("SELECT line FROM test_ids WHERE id = ?", (text,)).fetchone()[0]
                skipped.add(BadRow(path, f"line {number}", text, f"listed twice (first on line {first})"))
    db.commit()


def _validate_row(row: Row, metadata: str) -> tuple[str, dict]:
    """(id, clean fields) of a row; BadRow on a problem in the row itself (not its features)."""
    raw = row.fields
    problem = id_problem(raw.get("id"))
    if problem:
        raise BadRow(metadata, row.where, None, problem)
    video_id = str(raw["id"])
    try:
        title = _text_field(raw.get("title"), "title", required=True)
        if title is None:
            raise ValueError("missing title")
        asr = _text_field(raw.get("asr_text"), "asr_text", required=False)
        if asr is None or asr.strip() == "":
            asr = schema.MISSING_ASR
        tags = parse_tags(raw.get("tags"))
        category = parse_category(raw.get("category"))
        split = raw.get("split")
        split = "" if split is None else str(split).strip()
        if split and split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {sorted(SPLITS)} (or empty)")
        feature_file = raw.get("feature_file")
        feature_file = None if feature_file is None or str(feature_file).strip() == "" else str(feature_file).strip()
    except ValueError as error:
        raise BadRow(metadata, row.where, video_id, str(error)) from None
    return video_id, {"title": title, "asr_text": asr, "tags": tags, "category": category,
                      "split": SPLITS.get(split, ""), "feature_file": feature_file}


def _filter_labels(labels_path: str, out_path: str, db: sqlite3.Connection, skipped: SkipLog) -> tuple[int, int]:
    """Write label.tsv without the lines whose videos were not ingested (listing each); (kept, dropped).

    Without --skip-bad the first such line is an error.
    """
    missing_query = ("SELECT l.id, l.line FROM label_ids l LEFT JOIN videos v ON v.id = l.id "
                     "WHERE v.id IS NULL OR v.pairwise = 0 ORDER BY l.line LIMIT 1")
    first = db.execute(missing_query).fetchone()
    if first is None:
        shutil.copyfile(labels_path, out_path)
        return -1, 0
    if not skipped.skip_bad:
        video_id, line = first
        raise DataError(labels_path, f"line {line}", f"video {video_id} has no ingested video (no metadata row "
                                                     f"with valid features)")
    kept = dropped = 0
    with open(labels_path, encoding="utf-8") as source, open(out_path, "w", encoding="utf-8") as target:
        for number, line in enumerate(source, start=1):
            query, candidate = (field.strip() for field in line.rstrip("\r\n").split("\t")[:2])
            lost = [video_id for video_id in (query, candidate) if not _ingested_pairwise(db, video_id)]
            if lost:
                dropped += 1
                skipped.add(BadRow(labels_path, f"line {number}", lost[0], "pair dropped: the video was not "
                                                                           "ingested (skipped or no metadata row)"))
                continue
            target.write(line if line.endswith("\n") else line + "\n")
            kept += 1
    if kept == 0:
        raise DataError(labels_path, None, "no label line is left: none of their videos was ingested")
    return kept, dropped


def _ingested_pairwise(db: sqlite3.Connection, video_id: str) -> bool:
    found = db.execute("SELECT pairwise FROM videos WHERE id = ?", (video_id,)).fetchone()
    return bool(found and found[0])


def _tag_list(db: sqlite3.Connection) -> list[int]:
    return [tag for (tag,) in db.execute("SELECT tag FROM tags ORDER BY n DESC, tag ASC LIMIT ?", (TAG_LIST_SIZE,))]


def _flush_tags(db: sqlite3.Connection, counts: collections.Counter) -> None:
    db.executemany("INSERT INTO tags VALUES (?, ?) ON CONFLICT(tag) DO UPDATE SET n = n + excluded.n",
                   list(counts.items()))
    counts.clear()


def _final_name(prefix: str, index: int, shards: int, single: str) -> str:
    return single if shards == 1 else f"{prefix}_{index}.tfrecords"


def ingest(options: IngestOptions, log=print) -> dict:
    """Run an ingest; returns the meta written to ``ingest_meta.json``. DataError on bad input."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    out = os.fspath(options.out)
    if options.shard_size < 1:
        raise ValueError(f"--shard-size must be positive, got {options.shard_size}")
    if options.test_all and options.test_ids:
        raise ValueError("give --test-ids or --test-all, not both")
    existing = existing_outputs(out) if os.path.isdir(out) else []
    if existing and not options.overwrite:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise FileExistsError(f"{out} already holds a data set ({shown}); pass --overwrite to replace it")
    _metadata_format(options.metadata)  # fail early on an unknown extension
    os.makedirs(out, exist_ok=True)
    _remove_stale_staging(out)
    staging = os.path.join(out, f"{STAGING_PREFIX}{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    skipped = SkipLog(os.path.join(staging, SKIPPED_FILE), options.skip_bad)
    db = _open_db(os.path.join(staging, "ids.sqlite"))
    source = None
    writers: dict[str, ShardedWriter] = {}
    try:
        if options.offsets:
            source = FeatureArray(options.features, options.offsets, db, skipped)
        else:
            if options.features.lower().endswith(".npy") and os.path.isfile(options.features):
                raise DataError(options.features, None, "one array file needs --offsets INDEX.csv (id,start,end)")
            source = FeatureDir(options.features)
        num_pairs = _load_label_ids(options.labels, db) if options.labels else 0
        if options.test_ids:
            _load_test_ids(options.test_ids, db, skipped)

        writers = {"pointwise": ShardedWriter(os.path.join(staging, "pointwise"), "pretrain", options.shard_size),
                   "pairwise": ShardedWriter(os.path.join(staging, "pairwise"), "pairwise", options.shard_size),
                   "test": ShardedWriter(os.path.join(staging, "test_a"), "test_a", options.shard_size)}
        kinds = {"pointwise": schema.RecordKind.POINTWISE, "pairwise": schema.RecordKind.PAIRWISE,
                 "test": schema.RecordKind.TEST}
        tag_counts: collections.Counter = collections.Counter()
        rows = ingested = frames_total = 0
        bar = tqdm(desc="ingest", unit="video", disable=not options.progress, dynamic_ncols=True, mininterval=1.0)
        for row in read_metadata(options.metadata, warn=log):
            rows += 1
            try:
                video_id, fields = _validate_row(row, options.metadata)
                first = db.execute("SELECT line FROM videos WHERE id = ?", (video_id,)).fetchone()
                if first is not None:
                    raise BadRow(options.metadata, row.where, video_id, f"duplicate id (first on {first[0]})")
                try:
                    array, feature_name = source.frames(video_id, fields["feature_file"])
                    frames = check_frames(array)
                except ValueError as error:
                    raise BadRow(options.metadata, row.where, video_id, f"features: {error}") from None
            except BadRow as bad:
                skipped.add(bad)
                if bad.video_id is not None:
                    # Remember the id (as not ingested): a later row with the same id is a duplicate too.
                    db.execute("INSERT OR IGNORE INTO videos VALUES (?, ?, NULL, 0)", (bad.video_id, row.where))
                bar.update(1)
                continue
            in_labels = db.execute("SELECT 1 FROM label_ids WHERE id = ?", (video_id,)).fetchone() is not None
            test_only = fields["split"] == "test" or (  # a test video proper: not for pretraining
                options.test_ids is not None
                and db.execute("SELECT 1 FROM test_ids WHERE id = ?", (video_id,)).fetchone() is not None)
            in_test = test_only or options.test_all
            pairwise = in_labels or fields["split"] == "pairwise"
            pointwise = fields["split"] == "pointwise" or (not pairwise and not test_only)
            for split, wanted in (("pointwise", pointwise), ("pairwise", pairwise), ("test", in_test)):
                if wanted:
                    writers[split].write(_serialize(video_id, fields, frames, kinds[split]))
            if pointwise or pairwise:
                tag_counts.update(fields["tags"])
            db.execute("INSERT INTO videos VALUES (?, ?, ?, ?)",
                       (video_id, row.where, feature_name or "", int(pairwise)))
            ingested += 1
            frames_total += len(frames)
            bar.update(1)
            if rows % _COMMIT_EVERY == 0:
                _flush_tags(db, tag_counts)
                db.commit()
        _flush_tags(db, tag_counts)
        db.commit()
        bar.close()
        for writer in writers.values():
            writer.close()

        # Ids of the labels / test list that no ingested video carries.
        if options.test_ids:
            missing = db.execute("SELECT t.id, t.line FROM test_ids t LEFT JOIN videos v ON v.id = t.id "
                                 "WHERE v.id IS NULL OR v.feature IS NULL ORDER BY t.line")
            for video_id, line in missing:
                skipped.add(BadRow(options.test_ids, f"line {line}", video_id,
                                   "no ingested video (no metadata row with valid features)"))
        label_info = None
        if options.labels:
            os.makedirs(os.path.join(staging, "pairwise"), exist_ok=True)
            kept, dropped = _filter_labels(options.labels, os.path.join(staging, "pairwise", "label.tsv"), db, skipped)
            kept = num_pairs if kept < 0 else kept
            read_labels(os.path.join(staging, "pairwise", "label.tsv"))  # what we wrote is valid
            label_info = {"source": os.path.abspath(options.labels), "pairs": kept, "dropped": dropped}
        tags = _tag_list(db)
        unused_count, unused_names = source.unused(db)
        if ingested == 0:
            raise DataError(options.metadata, None, "no video was ingested (every row was bad or the table is empty)")
        tag_text = "".join(f"{tag}\n" for tag in tags)
        skipped.close()

        # Commit: move everything into place; ingest_meta.json last.
        files = _commit(out, staging, writers, bool(options.labels), tag_text, skipped, options.overwrite)
        elapsed = time.perf_counter() - started
        meta = {
            "generator": "tfrecord_tools.ingest",
            "format_version": 1,
            "inputs": {"features": source.describe(), "metadata": os.path.abspath(options.metadata),
                       "labels": label_info, "test_ids": os.path.abspath(options.test_ids) if options.test_ids else None,
                       "test_all": options.test_all},
            "counts": {"metadata_rows": rows, "videos": ingested,
                       "pointwise_videos": writers["pointwise"].total, "pairwise_videos": writers["pairwise"].total,
                       "test_a_videos": writers["test"].total, "frames": frames_total,
                       "pairs": label_info["pairs"] if label_info else 0, "tag_list": len(tags),
                       "skipped": skipped.count, "unused_feature_files": unused_count},
            "shard_size": options.shard_size,
            "files": files,
            "seconds": round(elapsed, 3),
        }
        write_text_atomic(os.path.join(out, META_FILE), json.dumps(meta, indent=2) + "\n")
        meta["unused_examples"] = unused_names
        meta["skip_report"] = skipped.report()
        return meta
    finally:
        for writer in writers.values():
            writer.close()
        skipped.close()
        if isinstance(source, FeatureArray):
            source.close()
        db.close()
        shutil.rmtree(staging, ignore_errors=True)


def _commit(out: str, staging: str, writers: dict, with_labels: bool, tag_text: str, skipped: SkipLog,
            overwrite: bool) -> dict:
    """Move the staged files to their final names (after removing a replaced data set's files)."""
    if overwrite:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, META_FILE))  # the data set is incomplete from here on
        for relative in existing_outputs(out):
            os.remove(os.path.join(out, relative))
    files: dict[str, dict] = {}
    layout = (("pointwise", "pointwise", "pretrain", None), ("pairwise", "pairwise", "pairwise", "pairwise.tfrecords"),
              ("test", "test_a", "test_a", "test_a.tfrecords"))
    for split, sub, prefix, single in layout:
        writer = writers[split]
        for index, (path, count) in enumerate(zip(writer.files, writer.counts)):
            name = f"{prefix}_{index}.tfrecords" if single is None else _final_name(prefix, index, len(writer.files),
                                                                                    single)
            target = os.path.join(out, sub, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(path, target)
            files[f"{sub}/{name}"] = {"records": count, "bytes": os.path.getsize(target)}
    if with_labels:
        target = os.path.join(out, "pairwise", "label.tsv")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(os.path.join(staging, "pairwise", "label.tsv"), target)
        files["pairwise/label.tsv"] = {"bytes": os.path.getsize(target)}
    if tag_text:
        write_text_atomic(os.path.join(out, "tag_list.txt"), tag_text)
        files["tag_list.txt"] = {"tags": tag_text.count("\n")}
    if skipped.skip_bad and skipped.count:
        os.replace(skipped.path, os.path.join(out, SKIPPED_FILE))
        files[SKIPPED_FILE] = {"lines": skipped.count}
    return files


def summary(meta: dict, out: str) -> list[str]:
    counts = meta["counts"]
    lines = [f"ingested {counts['videos']} videos ({counts['frames']} frames) into {out} in {meta['seconds']:.1f} s: "
             f"pointwise {counts['pointwise_videos']}, pairwise {counts['pairwise_videos']} "
             f"({counts['pairs']} labelled pairs), test_a {counts['test_a_videos']}; tag list {counts['tag_list']} tags"]
    if counts["tag_list"] == 0:
        lines.append("  note: no pointwise/pairwise video has tags, so no tag_list.txt was written; "
                     "pretraining and the tag losses need one")
    if counts["unused_feature_files"]:
        examples = ", ".join(meta.get("unused_examples", []))
        lines.append(f"  note: {counts['unused_feature_files']} feature file(s)/index entries have no metadata row "
                     f"and were not ingested (e.g. {examples})")
    return lines + meta.get("skip_report", [])


def main(argv: Sequence[str] | None = None) -> int:
    description, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="python -m tfrecord_tools.ingest", description=description,
                                     epilog=details, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True,
                        help="directory of <id>.npy/.npz files, or one .npy array with --offsets")
    parser.add_argument("--offsets", help="CSV/TSV index id,start,end of the rows of --features (one array file)")
    parser.add_argument("--metadata", required=True, help="metadata table: .csv/.tsv with a header, or JSON Lines")
    parser.add_argument("--labels", help="label.tsv: query<TAB>candidate<TAB>score (its videos become pairwise/)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--test-ids", help="file of video ids (one a line) to write to test_a/")
    group.add_argument("--test-all", action="store_true", help="also write every video to test_a/")
    parser.add_argument("--out", required=True, help="output data directory (the official layout)")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                        help=f"videos per output file (default {DEFAULT_SHARD_SIZE:,})")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip bad rows/arrays/label lines and list them (default: stop at the first)")
    parser.add_argument("--overwrite", action="store_true", help="replace a data set already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    options = IngestOptions(features=args.features, metadata=args.metadata, out=args.out, offsets=args.offsets,
                            labels=args.labels, test_ids=args.test_ids, test_all=args.test_all,
                            shard_size=args.shard_size, skip_bad=args.skip_bad, overwrite=args.overwrite,
                            progress=not args.quiet)
    try:
        meta = ingest(options, log=lambda message: print(message, file=sys.stderr))
    except (DataError, ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"ingest: error: {error}", file=sys.stderr)
        return 2
    for line in summary(meta, args.out):
        print(line)
    if os.path.isdir(os.path.join(args.out, "folds")) and args.overwrite:
        print(f"  note: {args.out}/folds was written from the replaced data; rerun write_tfrecord.py", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
