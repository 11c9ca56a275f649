"""Fold averaging: the K fold models of one family -> one embedding per test video.

Each fold model embeds the whole test set; the family's test embedding is the mean of the fold
models' L2-normalised embeddings (so no fold dominates by its scale). Streaming: sets are added
one at a time (``FoldAverager``) or drawn from a generator, only a running sum is kept.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from infer.embeddings_io import EmbeddingSet, align_sets, l2_normalize
from tfrecord_tools.errors import DataError


class FoldAverager:
    """Running mean of L2-normalised embedding sets, rows in the first set's id order."""

    def __init__(self, name: str | None = None):
        self.name = name
        self._reference: EmbeddingSet | None = None
        self._total: np.ndarray | None = None
        self.count = 0

    def add(self, fold_set: EmbeddingSet) -> None:
        """Add one fold's set: same ids (DataError naming the differing ids) and dimension required."""
        if self._reference is None:
            self._reference = fold_set
            self._total = np.zeros(fold_set.embeddings.shape, dtype=np.float64)
        elif fold_set.dim != self._reference.dim:
            raise DataError(fold_set.name, None, f"dimension {fold_set.dim} differs from {self._reference.dim} "
                                                 f"of {self._reference.name}")
        matrix = align_sets([self._reference, fold_set])[1][1]
        self._total += l2_normalize(matrix.astype(np.float64))
        self.count += 1

    def result(self) -> EmbeddingSet:
        """The mean so far (float32)."""
        if self._reference is None:
            raise ValueError("average_folds: no fold embeddings given")
        name = self.name or f"average of {self.count} folds ({self._reference.name}, ...)"
        return EmbeddingSet(self._reference.ids, (self._total / self.count).astype(np.float32), None, name)


def average_folds(sets: Iterable[EmbeddingSet], name: str | None = None) -> EmbeddingSet:
    """Mean of L2-normalised fold embeddings, rows in the first set's id order (float32).

    Every set must hold the same ids (DataError naming the differing ids) and dimension.
    """
    averager = FoldAverager(name)
    for fold_set in sets:
        averager.add(fold_set)
    return averager.result()
