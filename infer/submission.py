"""The challenge submission: ``result.zip`` holding ``result.json`` at its root.

``result.json`` is one JSON object mapping every test video id to a list of at most 256 floats.
The official code rounds the vectors to float16 first; we do the same (each value is
``float(np.float16(x))``), so what we score locally is what the server scores.

Writing streams the JSON into the zip (one video at a time, memory does not grow with the test
set), into a temporary file that is validated before it is renamed to its final name.

Command line::

    python -m infer.submission result.zip --ids ids.txt|test.npz          # validate (the default)
    python -m infer.submission result.zip --write-from test.npz [--ids ...]  # write, then validate

``--ids`` is a text file with one id per line, or an embedding ``.npz`` (its ``ids`` array).
"""
from __future__ import annotations

import json
import math
import os
import sys
import zipfile
from typing import Iterable, Sequence

import numpy as np

from infer.embeddings_io import load_embedding_set, as_id_array, check_unique_ids
from tfrecord_tools import cli
from tfrecord_tools.atomic import atomic_path
from tfrecord_tools.errors import DataError

RESULT_NAME = "result.json"
MAX_DIM = 256
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _float16_rows(embeddings: np.ndarray, where: str) -> np.ndarray:
    """The embeddings rounded through float16, as float64 (exactly ``float(np.float16(x))``)."""
    too_big = np.abs(embeddings) > _FLOAT16_MAX
    if too_big.any():
        raise DataError(where, "embeddings", f"{int(too_big.sum())} value(s) overflow float16 "
                                             f"(|x| > {_FLOAT16_MAX:g}); rescale the embeddings")
    return embeddings.astype(np.float16).astype(np.float64)


def write_result(path_zip: str | os.PathLike, ids: Sequence[str] | np.ndarray, embeddings: np.ndarray,
                 max_dim: int = MAX_DIM) -> dict:
    """Write ``result.zip`` atomically; return the validator's summary of the written file."""
    path_zip = os.fspath(path_zip)
    ids = as_id_array(ids, path_zip)
    embeddings = np.asarray(embeddings)
    if len(ids) == 0:
        raise DataError(path_zip, "ids", "no ids to write")
    check_unique_ids(ids, path_zip)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
        raise DataError(path_zip, "embeddings", f"expected [{len(ids)}, D] for {len(ids)} ids, got {embeddings.shape}")
    if not 1 <= embeddings.shape[1] <= max_dim:
        raise DataError(path_zip, "embeddings", f"dimension {embeddings.shape[1]} outside 1..{max_dim}")
    if embeddings.dtype.kind != "f" or not np.isfinite(embeddings).all():
        raise DataError(path_zip, "embeddings", "embeddings must be finite floats (found NaN/inf or non-floats)")
    rounded = _float16_rows(embeddings, path_zip)
    with atomic_path(path_zip) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            with archive.open(RESULT_NAME, "w", force_zip64=True) as raw:
                raw.write(b"{")
                for row, key in enumerate(ids.tolist()):
                    entry = ("" if row == 0 else ", ") + json.dumps(key) + ": " + json.dumps(rounded[row].tolist())
                    raw.write(entry.encode("utf-8"))
                raw.write(b"}")
        try:
            summary = validate_result(tmp, ids, max_dim=max_dim)
        except DataError as error:  # a writer bug: keep the broken file away from the final name
            raise DataError(path_zip, error.where, f"written file failed validation: {error.problem}") from None
    summary["path"] = path_zip
    return summary


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_result(path_zip: str | os.PathLike, expected_ids: Iterable[str], max_dim: int = MAX_DIM) -> dict:
    """Check a submission zip; return ``{"path", "num_ids", "dim", "min", "max"}``.

    Errors (DataError naming the file): not a zip, no ``result.json`` at the root, invalid JSON or
    not an object, missing or extra ids (named), a value that is not a list of finite numbers,
    differing dimensions, dimension above ``max_dim``.
    """
    path_zip = os.fspath(path_zip)
    expected = as_id_array(list(expected_ids), path_zip, "expected ids")
    if not zipfile.is_zipfile(path_zip):
        raise DataError(path_zip, None, "not a zip file")
    with zipfile.ZipFile(path_zip) as archive:
        names = archive.namelist()
        if RESULT_NAME not in names:
            nested = [name for name in names if name.rsplit("/", 1)[-1] == RESULT_NAME]
            hint = f" (found {nested[0]!r}: it must be at the zip root)" if nested else f" (holds {names[:5]})"
            raise DataError(path_zip, None, f"no {RESULT_NAME} at the zip root{hint}")
        try:
            with archive.open(RESULT_NAME) as handle:
                result = json.load(handle)
        except (ValueError, UnicodeDecodeError) as error:
            raise DataError(path_zip, RESULT_NAME, f"invalid JSON ({error})") from None
    where = f"{path_zip}!{RESULT_NAME}"
    if not isinstance(result, dict):
        raise DataError(where, None, f"expected a JSON object id -> vector, got {type(result).__name__}")
    expected_set = set(expected.tolist())
    missing = [key for key in expected.tolist() if key not in result]
    if missing:
        raise DataError(where, None, f"{len(missing)} expected id(s) missing, first: {', '.join(missing[:5])}")
    extra = [key for key in result if key not in expected_set]
    if extra:
        raise DataError(where, None, f"{len(extra)} id(s) not in the expected ids, first: {', '.join(extra[:5])}")
    dim = None
    low, high = math.inf, -math.inf
    for key, vector in result.items():
        if not isinstance(vector, list) or not vector:
            raise DataError(where, f"id {key}", f"expected a non-empty list of numbers, got {type(vector).__name__}")
        if not set(map(type, vector)) <= {float, int}:  # bool is its own type: rejected too
            bad = next(value for value in vector if not _number(value))
            raise DataError(where, f"id {key}", f"value {bad!r} is not a finite number")
        values = np.asarray(vector, dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError(where, f"id {key}", f"value {float(values[~np.isfinite(values)][0])!r} is not a finite number")
        if dim is None:
            dim = len(vector)
            if dim > max_dim:
                raise DataError(where, f"id {key}", f"dimension {dim} exceeds the maximum {max_dim}")
        elif len(vector) != dim:
            raise DataError(where, f"id {key}", f"dimension {len(vector)} differs from {dim} of the other ids")
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    if dim is None:
        raise DataError(where, None, "result holds no ids")
    return {"path": path_zip, "num_ids": len(result), "dim": dim, "min": low, "max": high}


def read_id_list(path: str | os.PathLike) -> np.ndarray:
    """Expected ids: an embedding ``.npz`` (its ``ids``) or a text file with one id per line."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        return load_embedding_set(path).ids
    if not os.path.isfile(path):
        raise DataError(path, None, "id list not found")
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.isdigit():
            raise DataError(path, f"line {number}", f"{line!r} is not a decimal id")
    ids = np.asarray(lines, dtype=str)
    if len(ids) == 0:
        raise DataError(path, None, "id list is empty")
    check_unique_ids(ids, path)
    return ids


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m infer.submission", description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", help="result.zip to validate (or to write with --write-from)")
    parser.add_argument("--ids", help="expected ids: text file (one per line) or an embedding .npz")
    parser.add_argument("--validate", action="store_true", help="validate the zip (the default action)")
    parser.add_argument("--write-from", metavar="NPZ", help="write the zip from this embedding file first")
    parser.add_argument("--max-dim", type=int, default=MAX_DIM)
    args = parser.parse_args(argv)
    try:
        if args.write_from:
            embedding_set = load_embedding_set(args.write_from)
            write_result(args.zip, embedding_set.ids, embedding_set.embeddings, max_dim=args.max_dim)
            expected = read_id_list(args.ids) if args.ids else embedding_set.ids
        elif args.ids:
            expected = read_id_list(args.ids)
        else:
            parser.error("--ids is required to validate (or give --write-from)")
        summary = validate_result(args.zip, expected, max_dim=args.max_dim)
    except DataError as error:
        print(f"INVALID: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"valid": True, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
