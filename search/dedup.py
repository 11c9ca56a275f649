"""Near-duplicate groups: every pair of indexed videos with cosine >= T, joined transitively.

    python -m search.dedup --index INDEX_DIR --threshold 0.95 --out groups.csv [--batch 4096]

A range search of every indexed vector (in batches) finds its neighbours at cosine >= T; a
union-find joins them into groups (connected components of the "near-duplicate" graph). The CSV
has one row per video, in index order::

    id,group,representative,group_size

``group`` numbers groups by their first video in index order (a video with no near-duplicate is a
group of one); the ``representative`` is the member with the most near-duplicate links inside its
group (the first in index order among equals), i.e. the one to keep when removing duplicates.
Exact for flat indexes; ivf/hnsw range searches may miss pairs (see docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Sequence

import numpy as np

from search.store import SearchError, SearchIndex, load_index
from tfrecord_tools.atomic import atomic_path
from tfrecord_tools.errors import DataError


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size (vectorised edge input)."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return int(x)

    def union_edges(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx == ry:
                continue
            if self.size[rx] < self.size[ry]:
                rx, ry = ry, rx
            self.parent[ry] = rx
            self.size[rx] += self.size[ry]

    def roots(self) -> np.ndarray:
        return np.array([self.find(x) for x in range(len(self.parent))], dtype=np.int64)


def near_duplicate_edges(index: SearchIndex, threshold: float, batch: int = 4096
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, cosine)`` of every indexed pair a < b with cosine >= threshold (range search)."""
    if not -1.0 <= threshold <= 1.0:
        raise SearchError(f"--threshold must be a cosine in [-1, 1], got {threshold}")
    n = len(index)
    a_all, b_all, c_all = [], [], []
    # faiss returns inner products strictly above the radius; nudge it so ">= threshold" holds.
    radius = float(np.nextafter(np.float32(threshold), np.float32(-2.0)))
    for start in range(0, n, batch):
        rows = np.arange(start, min(n, start + batch))
        queries = index.index.reconstruct_batch(rows) if hasattr(index.index, "reconstruct_batch") else \
            np.stack([index.index.reconstruct(int(r)) for r in rows])
        try:
            limits, cosines, found = index.index.range_search(np.ascontiguousarray(queries, np.float32), radius)
        except RuntimeError as error:
            raise SearchError(f"{index.path}: a {index.kind} index cannot range search "
                              f"({str(error).strip().splitlines()[-1]}); build a flat index for dedup") from None
        owner = np.repeat(rows, np.diff(limits).astype(np.int64))
        keep = (found > owner) & (cosines >= threshold)
        a_all.append(owner[keep])
        b_all.append(found[keep])
        c_all.append(cosines[keep])
    return np.concatenate(a_all), np.concatenate(b_all), np.concatenate(c_all)


def dedup_groups(index: SearchIndex, threshold: float, batch: int = 4096) -> dict:
    """Group arrays (index order): ``group``, ``representative`` (row), ``group_size``, plus ``edges``."""
    a, b, _ = near_duplicate_edges(index, threshold, batch)
    n = len(index)
    union = UnionFind(n)
    union.union_edges(a, b)
    roots = union.roots()
    # groups numbered by their first member in index order
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(first)
    number = np.empty_like(order)
    number[order] = np.arange(len(order))
    group = number[inverse]
    sizes = np.bincount(group, minlength=len(order))
    degree = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    # representative: the most linked member, first in index order among equals
    ranking = np.lexsort((np.arange(n), -degree, group))  # by group, then degree desc, then row
    starts = np.searchsorted(group[ranking], np.arange(len(order)))
    representative_of_group = ranking[starts]
    return {"group": group, "representative": representative_of_group[group], "group_size": sizes[group],
            "edges": len(a)}


def write_groups(path: str, ids: np.ndarray, groups: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "group", "representative", "group_size"])
            for row in range(len(ids)):
                writer.writerow([ids[row], int(groups["group"][row]), ids[groups["representative"][row]],
                                 int(groups["group_size"][row])])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.dedup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="index directory (python -m search.index)")
    parser.add_argument("--threshold", type=float, required=True, help="cosine at or above which two videos "
                                                                        "are near-duplicates")
    parser.add_argument("--out", required=True, help="groups CSV to write")
    parser.add_argument("--batch", type=int, default=4096, help="range-search queries per batch")
    args = parser.parse_args(argv)
    try:
        if os.path.isdir(args.out):
            raise SearchError(f"--out {args.out} is a directory; give a CSV file path")
        index = load_index(args.index)
        groups = dedup_groups(index, args.threshold, args.batch)
        write_groups(args.out, index.ids, groups)
    except (DataError, SearchError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    multi = groups["group_size"] > 1
    print(f"{len(index)} videos, {int(groups['edges'])} near-duplicate pairs at cosine >= {args.threshold}: "
          f"{len(np.unique(groups['group'][multi]))} groups of 2+ holding {int(multi.sum())} videos "
          f"({int(multi.sum()) - len(np.unique(groups['group'][multi]))} removable) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
