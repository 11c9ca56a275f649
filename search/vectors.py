"""Where the vectors of an index come from, read in bounded chunks.

``open_vectors(path)`` accepts
  * an embeddings ``.npz`` (``ids`` + ``embeddings``, see ``infer/embeddings_io.py``): the ids are
    loaded, the matrix is streamed from the archive member in chunks of rows (never held whole);
  * a ``result.zip`` (or a bare ``result.json``): the submission's id -> vector object (bounded by
    the submission size: it is parsed whole);
  * a run's fold-averaged embeddings: ``RUN/embeddings/<model>/avg/test.npz``, or the directory
    ``RUN/embeddings/<model>`` / ``.../avg`` that holds it.

Every chunk is checked (finite values, the declared dimension) and L2-normalised, so inner product
is cosine. Any problem is a ``DataError`` naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Callable, Iterator

import numpy as np

from infer.embeddings_io import KEY_EMBEDDINGS, KEY_IDS, as_id_array, check_unique_ids
from tfrecord_tools.errors import DataError

CHUNK_ROWS = 65536
RESULT_JSON = "result.json"


def normalize_rows(matrix: np.ndarray, where: str, first_row: int = 0, ids: np.ndarray | None = None) -> np.ndarray:
    """Finite float32 rows divided by their L2 norm (DataError on NaN/inf or an all-zero row)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        name = f" (id {str(ids[first_row + row])!r})" if ids is not None else ""
        raise DataError(where, None, f"row {first_row + row}{name} holds NaN/inf")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        name = f" (id {str(ids[first_row + row])!r})" if ids is not None else ""
        raise DataError(where, None, f"row {first_row + row}{name} is all zeros (no direction to compare)")
    return matrix / norms


@dataclasses.dataclass(frozen=True, eq=False)
class VectorSource:
    """Ids plus a re-readable stream of L2-normalised float32 row chunks."""

    path: str
    kind: str  # "npz" | "result" | "memory"
    ids: np.ndarray
    dim: int
    _chunks: Callable[[int], Iterator[np.ndarray]]

    def __len__(self) -> int:
        return len(self.ids)

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, normalised [n, dim] float32)`` in order; every call reads from the start."""
        start = 0
        for chunk in self._chunks(rows):
            yield start, normalize_rows(chunk, self.path, start, self.ids)
            start += len(chunk)
        if start != len(self.ids):
            raise DataError(self.path, None, f"{start} vectors for {len(self.ids)} ids")


def _npy_header(handle, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    if version in ((2, 0), (3, 0)):
        return np.lib.format.read_array_header_2_0(handle)
    raise DataError(where, KEY_EMBEDDINGS, f"unsupported .npy format version {version}")


def _npz_source(path: str) -> VectorSource:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise DataError(path, None, f"not a readable embedding .npz file ({error})") from None
    with archive:
        names = set(archive.namelist())
        for key in (KEY_IDS, KEY_EMBEDDINGS):
            if key + ".npy" not in names:
                found = sorted(name[:-4] for name in names if name.endswith(".npy"))
                raise DataError(path, None, f"missing array {key!r} (found {found})")
        with archive.open(KEY_EMBEDDINGS + ".npy") as handle:
            shape, fortran, dtype = _npy_header(handle, path)
    if len(shape) != 2 or shape[1] == 0:
        raise DataError(path, KEY_EMBEDDINGS, f"expected a 2-D [N, D] array, got shape {shape}")
    if fortran or dtype.kind != "f" or dtype.hasobject:
        raise DataError(path, KEY_EMBEDDINGS, f"expected a C-ordered float array, got dtype {dtype}"
                                              + (" (Fortran order)" if fortran else ""))
    try:
        with np.load(path, allow_pickle=False) as data:
            ids = data[KEY_IDS]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(path, KEY_IDS, f"cannot read the ids ({error})") from None
    if ids.dtype.kind not in "US":
        raise DataError(path, KEY_IDS, f"expected a string array, got dtype {ids.dtype}")
    ids = as_id_array(ids, path)
    if len(ids) == 0:
        raise DataError(path, KEY_IDS, "no ids")
    check_unique_ids(ids, path)
    if shape[0] != len(ids):
        raise DataError(path, KEY_EMBEDDINGS, f"{shape[0]} rows for {len(ids)} ids")
    rows_total, dim = shape

    def chunks(rows: int) -> Iterator[np.ndarray]:
        with zipfile.ZipFile(path) as archive, archive.open(KEY_EMBEDDINGS + ".npy") as handle:
            _npy_header(handle, path)
            row_bytes = dim * dtype.itemsize
            done = 0
            while done < rows_total:
                n = min(rows, rows_total - done)
                buffer = handle.read(n * row_bytes)
                if len(buffer) != n * row_bytes:
                    raise DataError(path, KEY_EMBEDDINGS, f"truncated: row {done + len(buffer) // row_bytes} "
                                                          f"of {rows_total} is missing")
                yield np.frombuffer(buffer, dtype=dtype).reshape(n, dim)
                done += n

    return VectorSource(path, "npz", ids, int(dim), chunks)


def _result_source(path: str) -> VectorSource:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if RESULT_JSON not in archive.namelist():
                    raise DataError(path, None, f"no {RESULT_JSON} in the archive (found {archive.namelist()[:5]})")
                with archive.open(RESULT_JSON) as handle:
                    mapping = json.load(handle)
        else:
            with open(path, encoding="utf-8") as handle:
                mapping = json.load(handle)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(path, None, f"cannot read the submission ({error})") from None
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(path, RESULT_JSON, "expected a non-empty JSON object {video id: [floats]}")
    ids = as_id_array(list(mapping), path)
    dims = {len(v) if isinstance(v, list) else -1 for v in mapping.values()}
    if len(dims) != 1 or min(dims) < 1:
        raise DataError(path, RESULT_JSON, f"vectors must be non-empty lists of one length, found lengths "
                                           f"{sorted(dims)[:5]}")
    try:
        matrix = np.asarray(list(mapping.values()), dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise DataError(path, RESULT_JSON, f"vectors must hold numbers ({error})") from None
    del mapping

    def chunks(rows: int) -> Iterator[np.ndarray]:
        for start in range(0, len(matrix), rows):
            yield matrix[start:start + rows]

    return VectorSource(path, "result", ids, int(matrix.shape[1]), chunks)


def memory_vectors(ids, matrix: np.ndarray, name: str = "<memory>") -> VectorSource:
    """A source over arrays already in memory (embeddings of new videos, tests, benchmarks)."""
    ids = as_id_array(ids, name)
    check_unique_ids(ids, name)
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids) or matrix.shape[1] == 0:
        raise DataError(name, KEY_EMBEDDINGS, f"expected [{len(ids)}, D] vectors, got shape {matrix.shape}")

    def chunks(rows: int) -> Iterator[np.ndarray]:
        for start in range(0, len(matrix), rows):
            yield matrix[start:start + rows]

    return VectorSource(name, "memory", ids, int(matrix.shape[1]), chunks)


def resolve_path(path: str) -> str:
    """A file, or the fold-averaged ``test.npz`` a run's embedding directory holds."""
    if os.path.isdir(path):
        for candidate in (os.path.join(path, "test.npz"), os.path.join(path, "avg", "test.npz")):
            if os.path.isfile(candidate):
                return candidate
        raise DataError(path, None, "directory holds no test.npz nor avg/test.npz (fold-averaged embeddings are "
                                    "written by ensemble_final.py under RUN/embeddings/<model>/avg/)")
    if not os.path.isfile(path):
        raise DataError(path, None, "embeddings file not found")
    return path


def open_vectors(path: str | os.PathLike) -> VectorSource:
    """The vectors of an embeddings ``.npz``, a ``result.zip``/``result.json`` or a run's averaged embeddings."""
    path = resolve_path(os.fspath(path))
    if path.endswith(".npz"):
        return _npz_source(path)
    if path.endswith((".zip", ".json")):
        return _result_source(path)
    raise DataError(path, None, "unknown embeddings file type: expected .npz, result.zip or result.json")
