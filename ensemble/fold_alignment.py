"""Rotate the fold models of one family into one embedding space before their vectors are averaged.

Fold averaging (``ensemble/fold_average.py``) adds the K fold models' unit vectors of each test
video. That is only meaningful when the fold models share one coordinate system, and fold models
of the robust recipe do not: each fits its wide path (the linear-metric baseline, in-graph) on its
own training pairs, and the PCA / LSA bases under it come out rotated and sign-flipped from fold
to fold. Each fold model ranks pairs as well as the next (their test cosines correlate 0.93-0.97),
but on twelve synthetic draws the same video's vectors from two fold models had cosine 0.23-0.87
(centred, -0.48 to 0.79; after the best rotation, 0.96-0.99). The raw average mixes unrelated
coordinates: on graph-like test pairs it scored below the fold models' mean on 18 of 24 models, by
up to 0.26; the aligned average scored above it on all 24 (docs/benchmarks.md, twenty-first
session, ``bench.truth_on_test``).

The alignment is orthogonal Procrustes (``scipy.linalg.orthogonal_procrustes``): fold k's unit vectors are rotated by the orthogonal
matrix ``R_k`` that brings them closest (least squares) to the first fold's unit vectors of the same
test videos; the first fold keeps the identity. A rotation changes no cosine within a fold, so each
fold model's own ranking (and its validation score) is untouched; it only decides how the folds'
coordinates line up. No labels are used: every fold model embeds the same test videos. The
matrices are applied to the fold averages ``ensemble_final.py`` writes (so to ``result.zip``) and
inside an exported ensemble graph; ``--align-folds none`` averages the raw vectors (the behaviour
before the twenty-first session).
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import scipy.linalg

from infer.embeddings_io import EmbeddingSet, align_sets, l2_normalize
from tfrecord_tools.atomic import atomic_path
from tfrecord_tools.errors import DataError

METHODS = ("procrustes", "none")
DEFAULT_METHOD = "procrustes"
ROTATIONS_FILE = "fold_rotations.npz"  # beside the fold average: RUN/embeddings/<model>/avg/


def procrustes_rotation(moving: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The orthogonal ``R`` [D, D] minimising ``|l2n(moving) @ R - l2n(reference)|`` (rows paired)."""
    moving = np.asarray(moving, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if moving.shape != reference.shape or moving.ndim != 2:
        raise ValueError(f"Procrustes needs two [N, D] matrices of one shape, got {moving.shape} and {reference.shape}")
    return scipy.linalg.orthogonal_procrustes(l2_normalize(moving), l2_normalize(reference))[0]


def rotation_onto(reference: EmbeddingSet, fold_set: EmbeddingSet) -> np.ndarray:
    """``R`` aligning ``fold_set`` to ``reference`` (the first fold model's set), rows matched by id;
    DataError naming the set when the dimensions differ."""
    if fold_set.dim != reference.dim:
        raise DataError(fold_set.name, None, f"dimension {fold_set.dim} differs from {reference.dim} of "
                                             f"{reference.name}: fold models of one family cannot be aligned")
    ref_matrix, moving_matrix = align_sets([reference, fold_set])[1]
    return procrustes_rotation(moving_matrix, ref_matrix)


def rotate(fold_set: EmbeddingSet, rotation: np.ndarray | None) -> EmbeddingSet:
    """The set's unit vectors times ``rotation`` (unchanged for None); cosines within it are kept."""
    if rotation is None:
        return fold_set
    matrix = l2_normalize(fold_set.embeddings.astype(np.float64)) @ rotation
    return EmbeddingSet(fold_set.ids, matrix.astype(np.float32), fold_set.pairs, fold_set.name)


def save_rotations(path: str, rotations: Mapping[int, np.ndarray]) -> None:
    """Write ``{fold: R}`` as ``fold_XX`` arrays (atomically)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{f"fold_{fold:02d}": np.asarray(r, dtype=np.float64) for fold, r in rotations.items()})


def load_rotations(path: str, folds: list[int]) -> dict[int, np.ndarray]:
    """Read what `save_rotations` wrote; DataError naming the file when a fold is missing."""
    if not os.path.isfile(path):
        raise DataError(path, None, "no fold rotations (ensemble_final.py writes them beside the fold average "
                                    "with --align-folds procrustes)")
    with np.load(path, allow_pickle=False) as data:
        missing = [fold for fold in folds if f"fold_{fold:02d}" not in data.files]
        if missing:
            raise DataError(path, None, f"no rotation for fold(s) {missing}; it holds {sorted(data.files)}")
        return {fold: np.array(data[f"fold_{fold:02d}"]) for fold in folds}
