"""The tag vocabulary: which tag ids become multi-hot columns, and in which order.

The official ``tag_list.txt`` lists the top-10,000 tag ids, most frequent first. The official
baseline's multi-hot does not use that order: column ``j`` is the ``j``-th smallest tag id of the
list (ascending id order), and tags outside the list are dropped (that is the official rule, not an
error). ``TagVocab`` keeps the file order (so ``save`` writes the file back unchanged) and exposes
the ascending-order mapping for numpy (``multi_hot``) and for ``tf.data`` (``lookup_table``).

A vocabulary may hold fewer than ``schema.NUM_TAGS`` tags (tiny synthetic data sets): the
multi-hot width is always ``vocab.size``.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.errors import DataError

_INT64_MAX = 2**63 - 1


class TagVocab:
    """Tag ids (file order, most frequent first) and their multi-hot columns (ascending id order)."""

    def __init__(self, tag_ids: Sequence[int]):
        ids = [int(tag) for tag in tag_ids]
        if not ids:
            raise ValueError("a tag vocabulary needs at least one tag id")
        seen: dict[int, int] = {}
        for position, tag in enumerate(ids):
            if not 0 <= tag <= _INT64_MAX:
                raise ValueError(f"tag id {tag} (position {position}) is negative or does not fit int64")
            if tag in seen:
                raise ValueError(f"tag id {tag} is listed twice (positions {seen[tag]} and {position})")
            seen[tag] = position
        self._tag_ids = np.asarray(ids, dtype=np.int64)
        self._sorted = np.sort(self._tag_ids)
        self._sorted.setflags(write=False)
        self._column = {int(tag): column for column, tag in enumerate(self._sorted)}

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TagVocab":
        """Read ``tag_list.txt``: one decimal tag id per line (a final newline is fine)."""
        path = os.fspath(path)
        ids: list[int] = []
        first_line: dict[int, int] = {}
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final newline
        for number, raw in enumerate(lines, start=1):
            text = raw.strip()
            if not text.isdigit() or not text.isascii():
                raise DataError(path, f"line {number}", f"expected one decimal tag id, got {raw[:40]!r}")
            tag = int(text)
            if tag > _INT64_MAX:
                raise DataError(path, f"line {number}", f"tag id {text} does not fit a 64-bit integer (the "
                                                        f"records' tag_id is int64, at most {_INT64_MAX})")
            if tag in first_line:
                raise DataError(path, f"line {number}", f"tag id {tag} already listed on line {first_line[tag]}")
            first_line[tag] = number
            ids.append(tag)
        if not ids:
            raise DataError(path, None, "tag list holds no tag ids")
        return cls(ids)

    @property
    def size(self) -> int:
        """Number of tags = width of the multi-hot vector."""
        return len(self._tag_ids)

    def __len__(self) -> int:
        return self.size

    def __contains__(self, tag_id: object) -> bool:
        try:
            return int(tag_id) in self._column  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TagVocab) and np.array_equal(self._tag_ids, other._tag_ids)

    def __repr__(self) -> str:
        return f"TagVocab(size={self.size})"

    @property
    def tag_ids(self) -> np.ndarray:
        """Tag ids in file order (most frequent first), int64."""
        return self._tag_ids.copy()

    @property
    def tag_ids_sorted(self) -> np.ndarray:
        """Tag ids in ascending order, int64: entry ``j`` is the tag of multi-hot column ``j``."""
        return self._sorted

    def column(self, tag_id: int) -> int:
        """Multi-hot column of ``tag_id``, or -1 when the tag is not in the vocabulary."""
        return self._column.get(int(tag_id), -1)

    def multi_hot(self, tag_ids: Iterable[int]) -> np.ndarray:
        """float32 [size] with 1.0 in the column of every known tag; unknown tags are dropped."""
        vector = np.zeros(self.size, dtype=np.float32)
        columns = [self._column.get(int(tag), -1) for tag in tag_ids]
        columns = [column for column in columns if column >= 0]
        vector[columns] = 1.0
        return vector

    def lookup_table(self):
        """A ``tf.lookup.StaticHashTable`` int64 tag id -> int64 column (-1 for unknown tags).

        Create it outside a ``tf.data`` function and capture it (the readers do this once per
        dataset).
        """
        import tensorflow as tf

        initializer = tf.lookup.KeyValueTensorInitializer(
            keys=tf.constant(self._sorted, dtype=tf.int64),
            values=tf.range(self.size, dtype=tf.int64),
        )
        return tf.lookup.StaticHashTable(initializer, default_value=-1)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``tag_list.txt`` (file order, one id per line) atomically."""
        write_text_atomic(path, "".join(f"{tag}\n" for tag in self._tag_ids))
