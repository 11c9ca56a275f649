"""The pairwise label file: ``query_id<TAB>candidate_id<TAB>score`` per line, no header.

Scores are on a 0.05 grid in [0, 1]. Every problem is an error naming the file and line:
nothing is silently dropped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re

import numpy as np

from tfrecord_tools.errors import LabelError

SCORE_GRID = 0.05
_DIGITS = re.compile(r"[0-9]+")
# ASCII decimal numbers (nan/inf pass here and are refused as outside [0, 1] below)
_SCORE = re.compile(r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))")


@dataclasses.dataclass(frozen=True)
class Labels:
    """Parsed label file: parallel arrays, one entry per line, in file order."""

    path: str
    query: np.ndarray  # str ids, dtype object
    candidate: np.ndarray
    score: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.score)

    def video_ids(self) -> list[str]:
        """Distinct ids in order of first appearance."""
        return list(dict.fromkeys(x for pair in zip(self.query, self.candidate) for x in pair))


def read_labels(path: str | os.PathLike, check_grid: bool = True, allow_duplicates: bool = False) -> Labels:
    """Read and validate a label file.

    Raises LabelError for a line without three tab-separated fields, a non-decimal id, a score
    that is not a finite number in [0, 1] (or, with ``check_grid``, off the 0.05 grid), a pair
    with itself, or a pair listed twice (unless ``allow_duplicates``).
    """
    path = os.fspath(path)
    queries, candidates, scores = [], [], []
    seen: dict[tuple[str, str], int] = {}
    with open(path, "rb") as handle:
        for number, raw_bytes in enumerate(handle, start=1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as error:
                raise LabelError(path, number, f"not valid UTF-8 text ({error.reason} at byte {error.start} of the "
                                               "line)") from None
            line = raw.rstrip("\r\n")
            if not line.strip():
                raise LabelError(path, number, "empty line (expected 'query_id<TAB>candidate_id<TAB>score')")
            fields = line.split("\t")
            if len(fields) != 3:
                raise LabelError(path, number, f"expected 3 tab-separated fields, got {len(fields)}: {line[:80]!r}")
            query, candidate, text = (field.strip() for field in fields)
            for name, value in (("query_id", query), ("candidate_id", candidate)):
                if not _DIGITS.fullmatch(value):
                    raise LabelError(path, number, f"{name} {value!r} is not a decimal id (ASCII digits)")
            if not _SCORE.fullmatch(text):  # float() also takes '0.0_5', full-width and Arabic-Indic digits
                raise LabelError(path, number, f"score {text!r} is not a number written with ASCII digits "
                                               "(like 0.35)")
            score = float(text)
            if not math.isfinite(score) or not 0.0 <= score <= 1.0:
                raise LabelError(path, number, f"score {text} is outside [0, 1]")
            if check_grid and abs(score / SCORE_GRID - round(score / SCORE_GRID)) > 1e-6:
                raise LabelError(path, number, f"score {text} is not on the {SCORE_GRID} grid")
            if query == candidate:
                raise LabelError(path, number, f"pair of video {query} with itself")
            # Ordered key: the official file lists 45 pairs in both directions (with their own
            # scores), which is legitimate; the same ordered pair twice is not.
            key = (query, candidate)
            if key in seen and not allow_duplicates:
                raise LabelError(path, number, f"pair {query}/{candidate} already listed on line {seen[key]}")
            seen.setdefault(key, number)
            queries.append(query)
            candidates.append(candidate)
            scores.append(score)
    if not scores:
        raise LabelError(path, 0, "label file holds no pairs")
    return Labels(path, np.array(queries, dtype=object), np.array(candidates, dtype=object),
                  np.array(scores, dtype=np.float32))


def file_md5(path: str | os.PathLike) -> str:
    """md5 of a file (the official verify_data.py checksum of label.tsv)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
