"""Member weights chosen on validation pairs (``ensemble_final.py --weights auto``).

Equal weights waste a strong member when the other is weaker (the SVD ensemble of a 0.801 and a
0.792 model scored 0.799 on one synthetic world). ``auto`` searches the weight simplex on a grid
and keeps the weights whose combined cosine ranks the validation pairs best.

Why the combined cosine: each member's block is L2-normalised and scaled by sqrt(w) before the
concatenation (``ensemble.rules.concat_scaled``), so the cosine of the concatenation is exactly
``sum_m w_m cos_m / sum_m w_m``; the SVD then only compresses it. Scoring a weight vector is a
matrix product and a rank correlation, so a whole grid costs milliseconds.

Honesty: the weights used for fold k's out-of-fold score are chosen on the **other** folds' pairs
only (cross-fitting), so the reported ensemble score never saw its own labels. The weights of the
final (test) ensemble are chosen on all folds' pairs. With a single fold there is nothing to
cross-fit on, and that fold keeps equal weights.
"""
from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence

import numpy as np
import scipy.stats

from infer.embeddings_io import EmbeddingSet
from infer.evaluate import pair_cosines

DEFAULT_STEP = 0.1
MAX_GRID = 5000  # simplex points; past it the step is doubled until the grid fits


def simplex_grid(members: int, step: float = DEFAULT_STEP) -> np.ndarray:
    """``[G, members]`` weight vectors on the simplex (each row sums to 1), in steps of ``step``.

    The step is doubled while the grid would exceed MAX_GRID points (many members).
    """
    if members < 1:
        raise ValueError(f"need at least one member, got {members}")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    units = max(1, round(1 / step))
    while units > 1 and math.comb(units + members - 1, members - 1) > MAX_GRID:
        units //= 2
    return np.asarray(list(_compositions(units, members)), dtype=np.float64) / units


def _compositions(total: int, parts: int):
    """Every tuple of ``parts`` non-negative integers summing to ``total`` (stars and bars: the
    parts are the gaps between ``parts - 1`` bars placed among ``total + parts - 1`` slots)."""
    for bars in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1, *bars, total + parts - 1)
        yield tuple(right - left - 1 for left, right in zip(edges, edges[1:]))


def grid_spearman(cosines: np.ndarray, scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Spearman (``[G]``) of ``cosines @ w`` against ``scores`` for every weight row ``w`` of ``grid``.

    ``cosines`` is ``[P, M]`` (one column per member). Rows of ``grid`` sum to 1, so ``cosines @ w``
    is the cosine of the weighted concatenation.
    """
    cosines = np.asarray(cosines, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if cosines.ndim != 2 or cosines.shape[0] != len(scores):
        raise ValueError(f"cosines of shape {cosines.shape} for {len(scores)} scores")
    if len(scores) < 3:
        raise ValueError(f"need at least 3 pairs to choose weights, got {len(scores)}")
    combined = cosines @ grid.T  # [P, G]
    ranks = scipy.stats.rankdata(combined, axis=0)
    ranks -= ranks.mean(axis=0)
    target = scipy.stats.rankdata(scores)
    target -= target.mean()
    denominator = np.sqrt((ranks ** 2).sum(axis=0) * (target ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, target @ ranks / denominator, -np.inf)


def best_weights(cosines: np.ndarray, scores: np.ndarray, step: float = DEFAULT_STEP) -> np.ndarray:
    """The grid's best weight vector (sums to 1); ties go to the one closest to equal weights."""
    members = np.asarray(cosines).shape[1]
    grid = simplex_grid(members, step)
    values = grid_spearman(cosines, scores, grid)
    best = values.max()
    candidates = np.flatnonzero(values >= best - 1e-12)
    distance = ((grid[candidates] - 1.0 / members) ** 2).sum(axis=1)
    return grid[candidates[np.argmin(distance)]]


def fold_cosines(val_sets: Mapping[str, Mapping[int, EmbeddingSet]], models: Sequence[str],
                 folds: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{fold: ([P, M] member cosines, [P] label scores)}`` of each fold's validation pairs."""
    out = {}
    for fold in folds:
        pairs = val_sets[models[0]][fold].pairs
        columns = [pair_cosines(val_sets[model][fold], pairs.query, pairs.candidate) for model in models]
        out[fold] = (np.stack(columns, axis=1), np.asarray(pairs.score, dtype=np.float64))
    return out


def cross_fitted_weights(cosines_by_fold: Mapping[int, tuple[np.ndarray, np.ndarray]], step: float = DEFAULT_STEP
                         ) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """``({fold: weights chosen on the other folds' pairs}, weights chosen on all pairs)``.

    The other folds' pairs are pooled (as the out-of-fold score pools them). A lone fold gets
    equal weights: choosing on its own pairs would leak its labels into its score.
    """
    folds = sorted(cosines_by_fold)
    if not folds:
        raise ValueError("no folds to choose weights on")
    members = cosines_by_fold[folds[0]][0].shape[1]

    def choose(selected: Sequence[int]) -> np.ndarray:
        if not selected:
            return np.full(members, 1.0 / members)
        cosines = np.concatenate([cosines_by_fold[f][0] for f in selected])
        scores = np.concatenate([cosines_by_fold[f][1] for f in selected])
        return best_weights(cosines, scores, step)

    per_fold = {fold: choose([f for f in folds if f != fold]) for fold in folds}
    return per_fold, choose(folds)
