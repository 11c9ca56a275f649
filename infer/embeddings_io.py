"""Embedding sets on disk and in memory: ``.npz`` files of ids + float32 vectors.

File layout (``numpy.savez``, read with ``allow_pickle=False`` so nothing is ever unpickled)::

    ids            unicode [N]        video ids (decimal strings), unique
    embeddings     float32 [N, D]     one row per id, finite
    pair_query     unicode [P]        optional "pairs" part: the labelled pairs these embeddings
    pair_candidate unicode [P]        are evaluated on (a fold's validation pairs in ``val.npz``)
    pair_score     float32 [P]

An ``EmbeddingSet`` holds one such file in memory; ``lookup`` turns ids into rows and names the
first missing id. The helpers here (``l2_normalize``, ``align_sets``) are shared by evaluation and
ensembling so that every consumer normalises and aligns the same way.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Iterable, Sequence

import numpy as np

from tfrecord_tools import provenance
from tfrecord_tools.atomic import atomic_path
from tfrecord_tools.errors import DataError
from tfrecord_tools.ids import id_problem
from tfrecord_tools.labels import Labels

KEY_IDS = "ids"
KEY_EMBEDDINGS = "embeddings"
KEY_PAIR_QUERY = "pair_query"
KEY_PAIR_CANDIDATE = "pair_candidate"
KEY_PAIR_SCORE = "pair_score"
PAIR_KEYS = (KEY_PAIR_QUERY, KEY_PAIR_CANDIDATE, KEY_PAIR_SCORE)


class MissingIdError(DataError, KeyError):
    """An id with no embedding: a DataError (names the file) that is also a KeyError."""

    __str__ = Exception.__str__  # the plain message, not KeyError's quoted repr


def l2_normalize(matrix: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their L2 norm (a zero row stays zero, so its cosine with anything is 0)."""
    matrix = np.asarray(matrix)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, eps).astype(matrix.dtype)


def as_id_array(ids: Iterable, where: str, field: str = KEY_IDS) -> np.ndarray:
    """A 1-D unicode array of ids; bytes (as tf.data yields them) are decoded as UTF-8."""
    values = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    if values.ndim != 1:
        raise DataError(where, field, f"expected a 1-D array of ids, got shape {values.shape}")
    if values.dtype.kind == "S" or (values.dtype == object and len(values) and isinstance(values[0], bytes)):
        values = np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in values], dtype=object)
    if values.dtype.kind != "U":
        bad = [v for v in values if not isinstance(v, str)]
        if bad:
            raise DataError(where, field, f"ids must be strings, found {type(bad[0]).__name__} {bad[0]!r}")
        values = values.astype(str) if len(values) else np.zeros(0, dtype="<U1")
    return values


def check_id_text(ids: np.ndarray, where: str, field: str = KEY_IDS) -> None:
    """Every id usable as a key (``tfrecord_tools.ids``: non-empty, no whitespace or control characters)."""
    for row, key in enumerate(ids.tolist()):
        problem = id_problem(key)
        if problem:
            raise DataError(where, field, f"row {row}: {problem}")


def check_unique_ids(ids: np.ndarray, where: str, field: str = KEY_IDS) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if len(uniq) != len(ids):
        dupes = uniq[counts > 1]
        raise DataError(where, field, f"{len(dupes)} duplicated id(s), first {str(dupes[0])!r}")


def _validate(ids: np.ndarray, embeddings: np.ndarray, where: str) -> None:
    """Unique ids, a finite float32 [N, D] matrix with one row per id."""
    if len(ids) == 0:
        raise DataError(where, KEY_IDS, "no ids (an embedding set needs at least one video)")
    check_id_text(ids, where)
    check_unique_ids(ids, where)
    if embeddings.ndim != 2:
        raise DataError(where, KEY_EMBEDDINGS, f"expected a 2-D [N, D] array, got shape {embeddings.shape}")
    if embeddings.dtype != np.float32:
        raise DataError(where, KEY_EMBEDDINGS, f"expected float32, got {embeddings.dtype} (cast with .astype(np.float32))")
    if embeddings.shape[0] != len(ids):
        raise DataError(where, KEY_EMBEDDINGS, f"{embeddings.shape[0]} rows for {len(ids)} ids")
    if embeddings.shape[1] == 0:
        raise DataError(where, KEY_EMBEDDINGS, "embedding dimension is 0")
    finite = np.isfinite(embeddings).all(axis=1)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise DataError(where, KEY_EMBEDDINGS,
                        f"{int((~finite).sum())} row(s) hold NaN/inf, first id {str(ids[first])!r} (row {first})")


def make_pairs(query: Iterable, candidate: Iterable, score: Iterable, where: str = "<pairs>") -> Labels:
    """Validated pair arrays as a ``Labels`` (the same type the label-file reader returns)."""
    query = as_id_array(query, where, KEY_PAIR_QUERY)
    candidate = as_id_array(candidate, where, KEY_PAIR_CANDIDATE)
    score = np.asarray(score)
    if score.ndim != 1 or not (len(query) == len(candidate) == len(score)):
        raise DataError(where, "pairs", f"pair arrays must be 1-D of equal length, got {len(query)} queries, "
                                        f"{len(candidate)} candidates, scores of shape {score.shape}")
    if score.dtype.kind not in "fiu":
        raise DataError(where, KEY_PAIR_SCORE, f"expected numbers, got dtype {score.dtype}")
    score = score.astype(np.float32)
    if not np.isfinite(score).all():
        raise DataError(where, KEY_PAIR_SCORE, "scores hold NaN/inf")
    return Labels(where, query.astype(object), candidate.astype(object), score)


@dataclasses.dataclass(frozen=True, eq=False)
class EmbeddingSet:
    """Ids and their embeddings (float32 [N, D]), optionally with the pairs they are scored on.

    Compared by identity (arrays have no single truth value). ``name`` (the file path when
    loaded) appears in every error message.
    """

    ids: np.ndarray
    embeddings: np.ndarray
    pairs: Labels | None = None
    name: str = "<memory>"
    provenance: dict | None = None  # what the file was made from (tfrecord_tools.provenance); None: unrecorded
    _index: dict = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        ids = as_id_array(self.ids, self.name)
        embeddings = np.asarray(self.embeddings)
        _validate(ids, embeddings, self.name)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "embeddings", embeddings)
        object.__setattr__(self, "_index", {key: row for row, key in enumerate(ids.tolist())})

    @classmethod
    def create(cls, ids, embeddings, pairs: Labels | None = None, name: str = "<memory>") -> "EmbeddingSet":
        """Like the constructor, but casts the embeddings to float32 first."""
        return cls(ids, np.asarray(embeddings, dtype=np.float32), pairs, name)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def rows(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row numbers of ``ids``; DataError naming the first missing id and how many are missing."""
        ids = list(ids.tolist() if isinstance(ids, np.ndarray) else ids)
        index = self._index
        missing = [key for key in ids if key not in index]
        if missing:
            distinct = list(dict.fromkeys(missing))
            raise MissingIdError(self.name, None,
                                 f"id {distinct[0]!r} not in the embeddings ({len(distinct)} of the "
                                 f"{len(set(ids))} requested ids missing)")
        return np.fromiter((index[key] for key in ids), dtype=np.int64, count=len(ids))

    def lookup(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Embeddings of ``ids`` in the order given ([len(ids), D] float32)."""
        return self.embeddings[self.rows(ids)]

    def has(self, key: str) -> bool:
        return key in self._index

    def subset(self, ids: Sequence[str] | np.ndarray, name: str | None = None) -> "EmbeddingSet":
        """The rows of ``ids`` as a new set (pairs dropped: they may reference other ids)."""
        return EmbeddingSet(np.asarray(list(ids), dtype=str), self.lookup(ids), None, name or self.name)


def save_embeddings(path: str | os.PathLike, ids, embeddings, pairs: Labels | None = None,
                    provenance_record: dict | None = None) -> None:
    """Validate and write an embedding file atomically (see the module docstring for the keys);
    ``provenance_record`` is stored as the JSON string ``provenance``."""
    path = os.fspath(path)
    ids = as_id_array(ids, path)
    embeddings = np.asarray(embeddings)
    _validate(ids, embeddings, path)
    arrays = {KEY_IDS: ids, KEY_EMBEDDINGS: embeddings}
    if pairs is not None:
        checked = make_pairs(pairs.query, pairs.candidate, pairs.score, path)
        arrays[KEY_PAIR_QUERY] = checked.query.astype(str)
        arrays[KEY_PAIR_CANDIDATE] = checked.candidate.astype(str)
        arrays[KEY_PAIR_SCORE] = checked.score
    if provenance_record is not None:
        arrays[provenance.NPZ_KEY] = np.array(provenance.to_text(provenance_record))
    with atomic_path(path) as tmp:
        # A file handle, not the name: numpy would append ".npz" to the temporary name.
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def load_embedding_set(path: str | os.PathLike, name: str | None = None) -> EmbeddingSet:
    """Read and validate an embedding file (with its pairs part when present)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, None, "embedding file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            for key in (KEY_IDS, KEY_EMBEDDINGS):
                if key not in keys:
                    raise DataError(path, None, f"missing array {key!r} (found {sorted(keys)})")
            present = [key for key in PAIR_KEYS if key in keys]
            if present and len(present) != len(PAIR_KEYS):
                raise DataError(path, None, f"incomplete pairs part: has {present}, needs all of {list(PAIR_KEYS)}")
            ids = data[KEY_IDS]
            embeddings = data[KEY_EMBEDDINGS]
            pair_arrays = [data[key] for key in PAIR_KEYS] if present else None
            record = data[provenance.NPZ_KEY] if provenance.NPZ_KEY in keys else None
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        # allow_pickle=False turns object arrays into a ValueError; corrupt files give the others.
        raise DataError(path, None, f"not a readable embedding .npz file ({error})") from None
    if ids.dtype.kind not in "US":
        raise DataError(path, KEY_IDS, f"expected a string array, got dtype {ids.dtype}")
    pairs = make_pairs(*pair_arrays, where=path) if pair_arrays is not None else None
    if record is not None:
        if record.dtype.kind != "U" or record.ndim != 0:
            raise DataError(path, provenance.NPZ_KEY, f"expected a JSON string, got {record.dtype} {record.shape}")
        record = provenance.from_text(str(record), path)
    return EmbeddingSet(ids, embeddings, pairs, name or path, record)


def read_provenance(path: str | os.PathLike) -> dict | None:
    """Only the ``provenance`` record of an embedding file (None if unrecorded, the file unreadable or
    absent): what a rerun compares to decide whether the file is stale."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            if provenance.NPZ_KEY not in data.files:
                return None
            record = data[provenance.NPZ_KEY]
        return provenance.from_text(str(record), os.fspath(path)) if record.dtype.kind == "U" else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, DataError):
        return None


def load_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, embeddings)`` of an embedding file."""
    embedding_set = load_embedding_set(path)
    return embedding_set.ids, embedding_set.embeddings


def align_sets(sets: Sequence[EmbeddingSet]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The first set's ids and every set's embeddings in that order.

    All sets must hold exactly the same ids; otherwise a DataError names the set and up to five
    ids it lacks or has in excess.
    """
    if not sets:
        raise ValueError("need at least one embedding set")
    reference = sets[0]
    ref_ids = set(reference.ids.tolist())
    matrices = []
    for other in sets:
        if other is reference or np.array_equal(other.ids, reference.ids):
            matrices.append(other.embeddings)
            continue
        other_ids = set(other.ids.tolist())
        missing = sorted(ref_ids - other_ids)
        extra = sorted(other_ids - ref_ids)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks {len(missing)} id(s) of {reference.name}: {', '.join(missing[:5])}")
            if extra:
                parts.append(f"has {len(extra)} id(s) not in {reference.name}: {', '.join(extra[:5])}")
            raise DataError(other.name, None, "id sets differ: " + "; ".join(parts))
        matrices.append(other.lookup(reference.ids))
    return reference.ids, matrices
