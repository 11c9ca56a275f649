"""Ensembling rules: several models' embeddings of the same videos -> one embedding per video.

| rule | from | what |
| --- | --- | --- |
| ``svd`` (default) | 1st place | L2-normalise each model, scale by sqrt(weight), concatenate, TruncatedSVD to ``dim`` |
| ``weighted`` | team 618 | sum of weight x L2-normalised embeddings (all models of one dimension) |
| ``mean`` | seed team 000 | mean of the L2-normalised embeddings |

Scaling a normalised block by sqrt(w) makes its share of every concatenated dot product
proportional to w (cos of the concat = sum of w_m cos_m / sum of w_m); the SVD then compresses the
concatenation back to ``dim`` columns. All rules align the sets by id: every set must hold exactly
the same ids (a DataError names the ids that differ). Outputs are float32 EmbeddingSets.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from sklearn.decomposition import TruncatedSVD

from infer.embeddings_io import EmbeddingSet, align_sets, l2_normalize
from tfrecord_tools.errors import DataError

DEFAULT_DIM = 256


def _check_weights(sets: Sequence[EmbeddingSet], weights: Sequence[float] | None) -> np.ndarray:
    if not sets:
        raise ValueError("need at least one embedding set to ensemble")
    if weights is None:
        return np.ones(len(sets), dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(sets),):
        raise ValueError(f"{len(weights)} weights for {len(sets)} embedding sets")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"weights must be finite and >= 0, got {weights.tolist()}")
    if weights.sum() <= 0:
        raise ValueError("at least one weight must be positive")
    return weights


def _same_dim(sets: Sequence[EmbeddingSet], rule: str) -> None:
    dims = {s.dim for s in sets}
    if len(dims) > 1:
        listing = ", ".join(f"{s.name}: {s.dim}" for s in sets)
        raise DataError(sets[0].name, None, f"rule {rule!r} needs one embedding dimension, got {listing}")


def weighted_sum(sets: Sequence[EmbeddingSet], weights: Sequence[float] | None = None,
                 name: str = "ensemble(weighted)") -> EmbeddingSet:
    """Sum over models of weight x L2-normalised embedding (same dimension required)."""
    weights = _check_weights(sets, weights)
    _same_dim(sets, "weighted")
    ids, matrices = align_sets(sets)
    total = np.zeros(matrices[0].shape, dtype=np.float64)
    for weight, matrix in zip(weights, matrices):
        if weight:
            total += weight * l2_normalize(matrix.astype(np.float64))
    return EmbeddingSet(ids, total.astype(np.float32), None, name)


def mean_normalised(sets: Sequence[EmbeddingSet], name: str = "ensemble(mean)") -> EmbeddingSet:
    """Mean of the L2-normalised embeddings (same dimension required)."""
    return weighted_sum(sets, np.full(len(sets), 1.0 / max(len(sets), 1)), name=name)


def concat_scaled(sets: Sequence[EmbeddingSet], weights: Sequence[float] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, [N, sum of dims] float64)``: each set L2-normalised and scaled by sqrt(weight), side by side."""
    weights = _check_weights(sets, weights)
    ids, matrices = align_sets(sets)
    blocks = [math.sqrt(weight) * l2_normalize(matrix.astype(np.float64)) for weight, matrix in zip(weights, matrices)]
    return ids, np.concatenate(blocks, axis=1)


def fit_svd(matrix: np.ndarray, dim: int = DEFAULT_DIM, seed: int = 0) -> TruncatedSVD:
    """TruncatedSVD fitted on ``matrix`` rows, ``min(dim, columns - 1, rows)`` components.

    The cap by rows: a randomized SVD of r rows has at most r meaningful directions (and sklearn
    would silently return fewer components than asked).
    """
    rows, columns = matrix.shape
    components = min(dim, columns - 1, rows)
    if components < 1:
        raise ValueError(f"cannot fit an SVD of {components} components on a {rows} x {columns} matrix")
    return TruncatedSVD(n_components=components, algorithm="randomized", random_state=seed).fit(matrix)


def svd_concat(sets: Sequence[EmbeddingSet], weights: Sequence[float] | None = None, dim: int = DEFAULT_DIM,
               fit_on=None, seed: int = 0, name: str = "ensemble(svd)") -> EmbeddingSet:
    """L2-normalise, scale by sqrt(weight), concatenate, TruncatedSVD -> ``dim`` columns (float32).

    ``fit_on`` chooses the rows the SVD is fitted on (then applied to all rows of ``sets``):
      * None: the rows of ``sets`` themselves;
      * a sequence of EmbeddingSets, one per model in the same order (e.g. the same models' test
        embeddings, to transform their validation embeddings), scaled the same way;
      * a 2-D float matrix already built by ``concat_scaled`` (e.g. several folds stacked);
      * a 1-D selection of the aligned rows: boolean mask, integer indices, or string ids.
    Deterministic for a given ``seed``.
    """
    weights = _check_weights(sets, weights)
    ids, matrix = concat_scaled(sets, weights)
    if fit_on is None:
        fit_matrix = matrix
    elif isinstance(fit_on, (list, tuple)) and fit_on and all(isinstance(s, EmbeddingSet) for s in fit_on):
        if len(fit_on) != len(sets):
            raise ValueError(f"fit_on has {len(fit_on)} embedding sets for {len(sets)} models")
        for model, fit_set in zip(sets, fit_on):
            if model.dim != fit_set.dim:
                raise DataError(fit_set.name, None, f"dimension {fit_set.dim} differs from {model.dim} of {model.name}")
        fit_matrix = concat_scaled(fit_on, weights)[1]
    else:
        selection = np.asarray(fit_on)
        if selection.ndim == 2:
            if selection.shape[1] != matrix.shape[1]:
                raise ValueError(f"fit_on matrix has {selection.shape[1]} columns, the concatenation {matrix.shape[1]}")
            fit_matrix = selection.astype(np.float64)
        elif selection.ndim == 1 and selection.dtype == bool:
            if len(selection) != len(ids):
                raise ValueError(f"fit_on mask has {len(selection)} entries for {len(ids)} rows")
            fit_matrix = matrix[selection]
        elif selection.ndim == 1 and selection.dtype.kind in "iu":
            fit_matrix = matrix[selection]
        elif selection.ndim == 1 and selection.dtype.kind in "UO":
            reference = EmbeddingSet(ids, np.zeros((len(ids), 1), dtype=np.float32), None, sets[0].name)
            fit_matrix = matrix[reference.rows(selection.astype(str))]
        else:
            raise ValueError(f"fit_on must be None, embedding sets, a matrix or a row selection; "
                             f"got an array of shape {selection.shape} and dtype {selection.dtype}")
    svd = fit_svd(fit_matrix, dim=dim, seed=seed)
    return EmbeddingSet(ids, svd.transform(matrix).astype(np.float32), None, name)


RULES: dict[str, Callable[..., EmbeddingSet]] = {
    "svd": svd_concat,
    "weighted": weighted_sum,
    "mean": mean_normalised,
}


def apply_rule(rule: str, sets: Sequence[EmbeddingSet], weights: Sequence[float] | None = None,
               dim: int = DEFAULT_DIM, fit_on=None, seed: int = 0) -> EmbeddingSet:
    """One entry point for every rule (``dim``/``fit_on``/``seed`` only matter to ``svd``)."""
    if rule not in RULES:
        raise ValueError(f"unknown ensemble rule {rule!r}; choose from {sorted(RULES)}")
    if rule == "svd":
        return svd_concat(sets, weights, dim=dim, fit_on=fit_on, seed=seed)
    if rule == "weighted":
        return weighted_sum(sets, weights)
    if weights is not None and len(set(np.asarray(weights, dtype=float).tolist())) > 1:
        raise ValueError("rule 'mean' weighs every model equally; use --rule weighted for unequal weights")
    return mean_normalised(sets)
