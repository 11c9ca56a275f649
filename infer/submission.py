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

from infer.embeddings_io import as_id_array, check_id_text, check_unique_ids, load_embedding_set
from tfrecord_tools import cli
from tfrecord_tools.atomic import atomic_path
from tfrecord_tools.errors import DataError
from tfrecord_tools.ids import id_problem

RESULT_NAME = "result.json"
MAX_DIM = 256
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _float16_rows(embeddings: np.ndarray, where: str) -> np.ndarray:
    """The embeddings rounded through float16, as float64 (exactly ``float(np.float16(x))``); refuses
    values that overflow float16 and rows that round to all zeros (what the validator refuses)."""
    with np.errstate(over="ignore"):
        rounded = embeddings.astype(np.float16)
    overflow = ~np.isfinite(rounded)
    if overflow.any():
        raise DataError(where, "embeddings", f"{int(overflow.sum())} value(s) overflow float16 "
                                             f"(|x| > {_FLOAT16_MAX:g}); rescale the embeddings")
    zero = ~rounded.any(axis=1)
    if zero.any():
        raise DataError(where, "embeddings", f"{int(zero.sum())} row(s) are all zeros after float16 rounding, first "
                                             f"row {int(np.flatnonzero(zero)[0])}: a zero vector has no cosine")
    return rounded.astype(np.float64)


def write_result(path_zip: str | os.PathLike, ids: Sequence[str] | np.ndarray, embeddings: np.ndarray,
                 max_dim: int = MAX_DIM) -> dict:
    """Write ``result.zip`` atomically; return the validator's summary of the written file."""
    path_zip = os.fspath(path_zip)
    ids = as_id_array(ids, path_zip)
    embeddings = np.asarray(embeddings)
    if len(ids) == 0:
        raise DataError(path_zip, "ids", "no ids to write")
    check_id_text(ids, path_zip)
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


def result_size_limit(num_ids: int, max_dim: int = MAX_DIM) -> int:
    """Most bytes a ``result.json`` of ``num_ids`` vectors can honestly need: every value written
    with full float64 precision (``-1.2345678901234567e-05, ``: 25 bytes, 32 allowed), every key
    with JSON escapes and spacing (256 bytes allowed), plus 4 KiB."""
    return 4096 + int(num_ids) * (256 + 32 * int(max_dim))


def _no_duplicate_keys(where: str):
    def hook(pairs: list) -> dict:
        result = {}
        for key, value in pairs:
            if key in result:
                raise DataError(where, None, f"key {key!r} appears twice in a JSON object (the scorer keeps one "
                                             "of them: which vector counts is undefined)")
            result[key] = value
        return result

    return hook


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _member_problem(names: list[str]) -> str | None:
    """Why the zip's member list is not exactly one ``result.json`` at the root, or None."""
    with_path = [name for name in names if "/" in name or "\\" in name or name in (".", "..") or ":" in name]
    if with_path:
        return f"member name {with_path[0]!r} has path parts: a submission holds only {RESULT_NAME} at the zip root"
    count = names.count(RESULT_NAME)
    if count > 1:
        return f"{count} members named {RESULT_NAME}: which one the scorer reads is undefined"
    if count == 0:
        return f"no {RESULT_NAME} at the zip root (holds {names[:5]})"
    others = [name for name in names if name != RESULT_NAME]
    if others:
        return f"unexpected member(s) {others[:5]} besides {RESULT_NAME}"
    return None


def _load_result_json(path_zip: str, num_ids: int, max_dim: int):
    """``result.json`` of the zip, parsed; every problem is a DataError naming the file."""
    if not zipfile.is_zipfile(path_zip):
        raise DataError(path_zip, None, "not a zip file")
    try:
        with zipfile.ZipFile(path_zip) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            nested = [name for name in names if name.replace("\\", "/").rsplit("/", 1)[-1] == RESULT_NAME
                      and name != RESULT_NAME]
            problem = _member_problem(names)
            if problem:
                if nested and RESULT_NAME not in names:
                    problem = f"no {RESULT_NAME} at the zip root (found {nested[0]!r}: it must be at the zip root)"
                raise DataError(path_zip, None, problem)
            info = infos[names.index(RESULT_NAME)]
            limit = result_size_limit(num_ids, max_dim)
            if info.file_size > limit:  # the declared size, checked before one byte is inflated
                raise DataError(path_zip, RESULT_NAME, f"declares {info.file_size} uncompressed bytes, more than "
                                                       f"{limit} that {num_ids} ids x {max_dim} values can need "
                                                       "(a zip bomb?)")
            # zipfile stops inflating at the declared size, and checks the CRC at the end.
            data = archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError,
            RuntimeError) as error:
        raise DataError(path_zip, RESULT_NAME, f"unreadable zip ({error})") from None
    where = f"{path_zip}!{RESULT_NAME}"
    try:
        # Every number is parsed as a float (a 400-digit integer becomes inf and is refused below,
        # never an OverflowError); NaN/Infinity literals are refused.
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys(where), parse_int=float,
                          parse_constant=_refuse_constant)
    except DataError:
        raise
    except RecursionError:
        raise DataError(path_zip, RESULT_NAME, "invalid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(path_zip, RESULT_NAME, f"invalid JSON ({error})") from None


def validate_result(path_zip: str | os.PathLike, expected_ids: Iterable[str], max_dim: int = MAX_DIM) -> dict:
    """Check a submission zip as the scorer reads it; return ``{"path", "num_ids", "dim", "min", "max"}``.

    Errors (DataError naming the file): not a zip, anything but exactly one ``result.json`` at the
    root (members with path parts, two ``result.json``), a declared uncompressed size above
    ``result_size_limit`` (checked before inflating), invalid JSON (also: duplicate keys, NaN
    literals, nesting too deep), not an object, missing or extra ids (named), an id the readers
    would refuse, a value that is not a list of numbers, a value that is not finite *after float16
    rounding* (70000, 1e30), a vector that is all zeros after rounding (its cosine is undefined),
    differing dimensions, dimension above ``max_dim``. ``min``/``max`` are of the rounded values.
    """
    path_zip = os.fspath(path_zip)
    expected = as_id_array(list(expected_ids), path_zip, "expected ids")
    result = _load_result_json(path_zip, len(expected), max_dim)
    where = f"{path_zip}!{RESULT_NAME}"
    if not isinstance(result, dict):
        raise DataError(where, None, f"expected a JSON object id -> vector, got {type(result).__name__}")
    expected_set = set(expected.tolist())
    missing = [key for key in expected.tolist() if key not in result]
    if missing:
        raise DataError(where, None, f"{len(missing)} expected id(s) missing, first: {', '.join(missing[:5])}")
    extra = [key for key in result if key not in expected_set]
    if extra:
        raise DataError(where, None, f"{len(extra)} id(s) not in the expected ids, first: "
                                     f"{', '.join(extra[:5])}")
    dim = None
    low, high = math.inf, -math.inf
    for key, vector in result.items():
        problem = id_problem(key)
        if problem:
            raise DataError(where, f"id {key!r}", problem)
        if not isinstance(vector, list) or not vector:
            raise DataError(where, f"id {key}", f"expected a non-empty list of numbers, got {type(vector).__name__}")
        if not set(map(type, vector)) <= {float}:  # ints were parsed as floats; bool, str, list, None are not
            bad = next(value for value in vector if type(value) is not float)
            raise DataError(where, f"id {key}", f"value {bad!r} is not a number")
        if dim is None:
            dim = len(vector)
            if dim > max_dim:
                raise DataError(where, f"id {key}", f"dimension {dim} exceeds the maximum {max_dim}")
        elif len(vector) != dim:
            raise DataError(where, f"id {key}", f"dimension {len(vector)} differs from {dim} of the other ids")
        with np.errstate(over="ignore"):
            values = np.asarray(vector, dtype=np.float64).astype(np.float16)  # what the scorer computes with
        if not np.isfinite(values).all():
            bad = float(np.asarray(vector, dtype=np.float64)[~np.isfinite(values)][0])
            raise DataError(where, f"id {key}", f"value {bad!r} is not a finite number after float16 rounding "
                                                f"(|x| > {_FLOAT16_MAX:g} overflows)")
        if not values.any():
            raise DataError(where, f"id {key}", "all-zero vector after float16 rounding: its cosine with any "
                                                "vector is undefined")
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
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except UnicodeDecodeError as error:
        raise DataError(path, None, f"not UTF-8 text ({error})") from None
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not (line.isascii() and line.isdigit()):
            raise DataError(path, f"line {number}", f"{line!r} is not a decimal id (ASCII digits)")
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
