"""Provenance: what each stage output was made from, recorded beside it and checked by later stages.

Every output records the identity of its inputs -- md5 + size of input files, the fold assignment
(seed, split, fold count and a sha256 over every label line's fold), the tag list's md5 and the
tokenizer's digest -- and every later stage compares what it is given with what was recorded:

    write_tfrecord.py   folds.json: md5 + size + record count of each shard, ``assignment_sha256``
    train.pretrain      RUN/provenance.json: data files, tag list, tokenizer
    train.finetune      RUN/provenance.json: the folds (assignment), fold, tag list, tokenizer,
                        the pretrain run's provenance digest; a rerun against rewritten folds stops
    infer.embed(_all)   ``provenance`` inside test.npz / val.npz: the run, its checkpoint, its
                        provenance, and the test files (md5 + size) or validation shard; a rerun
                        re-embeds what is stale, a run whose folds changed is an error
    ensemble_final.py   every embedding file of one ensemble must share the fold assignment, the
                        tag list and the test files (and match ``--folds-dir``)

A mismatch is a ``ProvenanceError`` naming both sides. Everything here is plain JSON and hashlib:
no TensorFlow, so the ensemble can use it cheaply.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Iterable, Mapping, Sequence

from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.errors import DataError

RUN_FILE = "provenance.json"
NPZ_KEY = "provenance"  # the key of the JSON string inside an embedding .npz
_BLOCK = 1 << 20
_RACY_SECONDS = 3.0
# (path, size, mtime_ns, inode) -> md5: a file is hashed once per process while it is unchanged.
_MD5_MEMO: dict[tuple, str] = {}


class ProvenanceError(DataError):
    """An output was made from other inputs than the ones it is now used with."""

    def __init__(self, path: str, problem: str):
        super().__init__(path, None, problem)


# ---------------------------------------------------------------------------------- hashing
def file_md5(path: str | os.PathLike) -> str:
    """md5 of a file's bytes (memoised per process while the file's size and mtime stay the same)."""
    path = os.fspath(path)
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    cached = _MD5_MEMO.get(key)
    if cached is None:
        digest = hashlib.md5()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(_BLOCK), b""):
                digest.update(block)
        cached = digest.hexdigest()
        # A file modified within the filesystem's timestamp granularity of being hashed could keep its
        # mtime: only files untouched for a few seconds are memoised ("racy git" rule).
        if time.time() - stat.st_mtime > _RACY_SECONDS:
            _MD5_MEMO[key] = cached
    return cached


def fingerprint(path: str | os.PathLike) -> dict:
    """``{"path", "bytes", "md5"}`` of one input file."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise DataError(path, None, "input file not found")
    return {"path": path, "bytes": os.path.getsize(path), "md5": file_md5(path)}


def fingerprints(paths: Iterable[str | os.PathLike]) -> list[dict]:
    return [fingerprint(path) for path in paths]


def same_contents(recorded: Sequence[Mapping], current: Sequence[Mapping]) -> bool:
    """Two fingerprint lists name the same bytes in the same order (paths may differ)."""
    return [(f["bytes"], f["md5"]) for f in recorded] == [(f["bytes"], f["md5"]) for f in current]


def tree_digest(directory: str | os.PathLike) -> str:
    """sha256 over the relative names and md5s of every file under ``directory`` (a tokenizer)."""
    directory = os.fspath(directory)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if name.startswith("."):  # atomic temporaries, lock files
                continue
            path = os.path.join(root, name)
            digest.update(f"{os.path.relpath(path, directory)}\0{file_md5(path)}\n".encode("utf-8"))
    return digest.hexdigest()


def tag_list_record(path: str | os.PathLike, num_tags: int) -> dict:
    return {"md5": file_md5(path), "bytes": os.path.getsize(path), "tags": int(num_tags)}


def assignment_digest(queries: Iterable[str], candidates: Iterable[str], folds: Iterable[int]) -> str:
    """sha256 of ``query\\tcandidate\\tfold`` for every label line: the fold assignment itself."""
    digest = hashlib.sha256()
    for query, candidate, fold in zip(queries, candidates, folds):
        digest.update(f"{query}\t{candidate}\t{int(fold)}\n".encode("utf-8"))
    return digest.hexdigest()


def record_digest(record: Mapping) -> str:
    """sha256 of a provenance record (canonical JSON): the identity of what an output was made from."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------- folds
FOLD_KEYS = ("num_folds", "seed", "split", "assignment_sha256", "labels_md5")


def folds_record(info: Mapping, folds_dir: str | os.PathLike) -> dict:
    """What identifies a fold set: its directory, seed, split, fold count and assignment digest."""
    return {"dir": os.path.abspath(os.fspath(folds_dir)), "num_folds": info.get("num_folds"),
            "seed": info.get("seed"), "split": info.get("split"),
            "assignment_sha256": info.get("assignment_sha256"),
            "labels_md5": (info.get("labels") or {}).get("md5")}


def describe_folds(record: Mapping | None) -> str:
    if not record:
        return "no recorded folds"
    digest = record.get("assignment_sha256") or "?"
    return (f"{record.get('num_folds')} folds, seed {record.get('seed')}, split {record.get('split')}, "
            f"assignment {digest[:12]}")


def check_same_folds(recorded: Mapping | None, current: Mapping | None, recorded_where: str,
                     current_where: str, consequence: str = "") -> None:
    """``recorded`` and ``current`` fold sets must be the same assignment; else name both sides."""
    if not recorded or not current:
        return
    differing = [key for key in FOLD_KEYS if recorded.get(key) != current.get(key)]
    if differing:
        raise ProvenanceError(current_where, f"fold assignment differs from {recorded_where}: that was made with "
                                             f"{describe_folds(recorded)}, this holds {describe_folds(current)} "
                                             f"(differ: {', '.join(differing)})" + (f"; {consequence}" if consequence
                                                                                     else ""))


# ---------------------------------------------------------------------------------- run directories
def run_path(run_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(run_dir), RUN_FILE)


def read_run(run_dir: str | os.PathLike) -> dict | None:
    """``RUN/provenance.json``, or None for a run written before provenance was recorded."""
    path = run_path(run_dir)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError) as error:
        raise DataError(path, None, f"unreadable provenance record ({error})") from None
    if not isinstance(record, dict):
        raise DataError(path, None, "expected a JSON object")
    return record


def write_run(run_dir: str | os.PathLike, record: Mapping) -> None:
    write_text_atomic(run_path(run_dir), json.dumps(record, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------- embedding files
def to_text(record: Mapping) -> str:
    return json.dumps(record, sort_keys=True)


def from_text(text: str, where: str) -> dict:
    try:
        record = json.loads(text)
    except ValueError as error:
        raise DataError(where, NPZ_KEY, f"unreadable provenance record ({error})") from None
    if not isinstance(record, dict):
        raise DataError(where, NPZ_KEY, "expected a JSON object")
    return record
