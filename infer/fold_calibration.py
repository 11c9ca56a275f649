"""Put the fold models of one family on one cosine scale before their pairs are pooled.

The out-of-fold Spearman pools pairs scored by different fold models. Fold models of the same
recipe can rank their own pairs equally well while their cosines sit on different scales (on a
synthetic world without topic clusters one fold model's random test pairs had mean cosine 0.41,
the other's 0.48); pooled, the ranks interleave wrongly and the out-of-fold score falls up to 0.02
below the mean fold score (docs/benchmarks.md, twentieth session).

The calibration measures each fold model's *typical distance*: the mean of ``1 - cos`` over all
pairs of distinct test videos (no labels; every fold model embeds the same test videos, so the
folds are measured on the same ground), and rescales every distance by it::

    1 - cos'  =  (1 - cos) * reference / D_k        reference = min over the folds of D_k

It is monotone within a fold (each fold's own Spearman is unchanged) and exact on embeddings: a
unit vector ``e`` with the constant ``sqrt(D_k / reference - 1)`` appended has exactly those
cosines, so ensembling rules that work on embeddings (the SVD) see the calibrated geometry.
The reference only sets a common unit (any value <= every D_k gives the same pooled ranks).
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from infer.embeddings_io import EmbeddingSet, l2_normalize, load_embedding_set
from tfrecord_tools import layout
from tfrecord_tools.errors import DataError

METHODS = ("distance", "none")
DEFAULT_METHOD = "distance"


def mean_pair_distance(embeddings: np.ndarray, name: str = "<memory>") -> float:
    """Exact mean of ``1 - cos`` over all pairs of distinct rows (``|sum e|^2`` of the unit rows).

    DataError (naming ``name``) for fewer than two rows or rows that all point the same way.
    """
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) < 2:
        raise DataError(name, None, f"need at least two embeddings to measure their typical distance, "
                                    f"got shape {matrix.shape}")
    unit = l2_normalize(matrix)
    total = unit.sum(axis=0)
    count = len(unit)
    mean_cosine = (float(total @ total) - count) / (count * (count - 1))
    distance = 1.0 - mean_cosine
    if not distance > 1e-9:
        raise DataError(name, None, f"all {count} embeddings point the same way (mean distance {distance:.3g}): "
                                    "a collapsed model has no cosine scale to calibrate")
    return distance


def fold_distances(fold_dirs: Mapping[int, str], file_name: str = layout.TEST_EMBEDDINGS) -> dict[int, float]:
    """``{fold: mean pair distance}`` of each fold directory's test embeddings (read one at a time)."""
    distances = {}
    for fold, directory in sorted(fold_dirs.items()):
        path = os.path.join(directory, file_name)
        if not os.path.isfile(path):
            raise DataError(path, None, f"no test embeddings of fold {fold}: the calibration measures each fold "
                                        "model on the same test videos (run infer for this fold, or --calibrate none)")
        distances[fold] = mean_pair_distance(load_embedding_set(path).embeddings, path)
    return distances


def reference_distance(distances: Mapping[int, float]) -> float:
    """The common unit: the smallest fold distance (so every appended constant is real)."""
    if not distances:
        raise ValueError("no fold distances to take a reference from")
    return float(min(distances.values()))


def calibrate_cosines(cosines: np.ndarray, distance: float, reference: float) -> np.ndarray:
    """``1 - (1 - cos) * reference / distance`` (float64)."""
    _check(distance, reference)
    return 1.0 - (1.0 - np.asarray(cosines, dtype=np.float64)) * (reference / distance)


def calibrate_set(embedding_set: EmbeddingSet, distance: float, reference: float) -> EmbeddingSet:
    """The unit embeddings with ``sqrt(distance / reference - 1)`` appended (one more column, float32).

    Their cosines are exactly ``calibrate_cosines`` of the original ones; pairs and name are kept.
    """
    _check(distance, reference)
    unit = l2_normalize(embedding_set.embeddings.astype(np.float64))
    constant = np.sqrt(max(distance / reference - 1.0, 0.0))
    matrix = np.concatenate([unit, np.full((len(unit), 1), constant)], axis=1)
    return EmbeddingSet(embedding_set.ids, matrix.astype(np.float32), embedding_set.pairs, embedding_set.name,
                        embedding_set.provenance)


def calibrate_folds(sets: Mapping[int, EmbeddingSet], distances: Mapping[int, float],
                    reference: float | None = None) -> dict[int, EmbeddingSet]:
    """Each fold's set calibrated with its fold's distance (reference: the smallest unless given)."""
    missing = sorted(set(sets) - set(distances))
    if missing:
        raise ValueError(f"no distance for fold(s) {missing}")
    reference = reference_distance(distances) if reference is None else reference
    return {fold: calibrate_set(sets[fold], distances[fold], reference) for fold in sets}


def _check(distance: float, reference: float) -> None:
    if not (np.isfinite(distance) and np.isfinite(reference) and 0 < reference <= distance * (1 + 1e-9)):
        raise ValueError(f"need 0 < reference <= distance, got reference {reference} and distance {distance}")
