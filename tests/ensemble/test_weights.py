"""ensemble/weights.py: the weight grid, its scoring and the cross-fitted choice."""
import math

import numpy as np
import pytest
import scipy.stats

from ensemble.rules import concat_scaled
from ensemble.weights import best_weights, cross_fitted_weights, grid_spearman, simplex_grid
from infer.embeddings_io import EmbeddingSet
from infer.evaluate import pair_cosines


def test_simplex_grid_points_sum_to_one_and_cover_the_corners():
    grid = simplex_grid(3, step=0.25)
    assert grid.shape == (math.comb(4 + 2, 2), 3)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all()
    rows = {tuple(row) for row in grid.tolist()}
    assert {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.25, 0.25, 0.5)} <= rows
    assert len(rows) == len(grid)  # no duplicates
    assert simplex_grid(1).tolist() == [[1.0]]


def test_simplex_grid_coarsens_for_many_members():
    grid = simplex_grid(12, step=0.1)
    assert len(grid) <= 5000 and len(grid) > 12
    with pytest.raises(ValueError, match="step"):
        simplex_grid(2, step=0)


def test_grid_spearman_matches_scipy_on_every_row():
    rng = np.random.default_rng(0)
    cosines = rng.normal(size=(40, 3))
    scores = rng.normal(size=40)
    grid = simplex_grid(3, step=0.5)
    expected = [scipy.stats.spearmanr(cosines @ w, scores).statistic for w in grid]
    np.testing.assert_allclose(grid_spearman(cosines, scores, grid), expected, atol=1e-12)


def test_combined_cosine_is_the_cosine_of_the_scaled_concatenation():
    """What makes the grid cheap: cos(concat of sqrt(w)-scaled unit blocks) = sum w cos / sum w."""
    rng = np.random.default_rng(1)
    ids = [str(i) for i in range(10)]
    sets = [EmbeddingSet.create(ids, rng.normal(size=(10, d)).astype(np.float32)) for d in (4, 6)]
    weights = np.array([0.3, 0.7])
    _, matrix = concat_scaled(sets, weights)
    concat = EmbeddingSet.create(ids, matrix)
    query, candidate = np.array(ids[:5]), np.array(ids[5:])
    member = np.stack([pair_cosines(s, query, candidate) for s in sets], axis=1)
    np.testing.assert_allclose(pair_cosines(concat, query, candidate), member @ weights, atol=1e-6)


def test_best_weights_follow_the_informative_member():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=300)
    good = truth + rng.normal(0, 0.3, 300)
    noise = rng.normal(size=300)
    weights = best_weights(np.stack([noise, good], axis=1), truth)
    assert weights[1] > 0.8 and weights.sum() == pytest.approx(1.0)


def test_best_weights_ties_go_to_equal_weights():
    column = np.arange(10, dtype=float)
    weights = best_weights(np.stack([column, column], axis=1), column)  # every weight ranks alike
    np.testing.assert_allclose(weights, [0.5, 0.5])


def test_cross_fitted_weights_never_use_the_fold_itself():
    rng = np.random.default_rng(3)
    truth = {fold: rng.normal(size=200) for fold in range(3)}
    # member 0 is good on folds 1 and 2 only, member 1 on fold 0 only
    data = {}
    for fold, target in truth.items():
        good, bad = target + rng.normal(0, 0.2, 200), rng.normal(size=200)
        data[fold] = (np.stack([bad, good] if fold == 0 else [good, bad], axis=1), target)
    per_fold, final = cross_fitted_weights(data)
    assert per_fold[0][0] > 0.8  # fold 0's weights come from folds 1-2, where member 0 is the good one
    assert final[0] > 0.5  # two folds of three favour member 0
    lone, lone_final = cross_fitted_weights({4: data[0]})
    np.testing.assert_allclose(lone[4], [0.5, 0.5])  # nothing to cross-fit on: equal weights
    assert lone_final[1] > 0.8
