"""infer.fold_calibration: each fold model's cosines put on one scale by its mean test-pair distance."""
import numpy as np
import pytest
import scipy.stats

from infer import fold_calibration
from infer.embeddings_io import EmbeddingSet, make_pairs, save_embeddings
from tfrecord_tools.errors import DataError


def _unit(matrix):
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_mean_pair_distance_is_the_mean_over_all_distinct_pairs():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(40, 6)) + 0.7
    cosines = _unit(matrix) @ _unit(matrix).T
    expected = np.mean(1 - cosines[~np.eye(40, dtype=bool)])
    assert fold_calibration.mean_pair_distance(matrix) == pytest.approx(expected, rel=1e-12)
    # the length of a row does not matter, only its direction
    assert fold_calibration.mean_pair_distance(matrix * rng.uniform(0.1, 5, (40, 1))) == pytest.approx(expected)


def test_degenerate_inputs_are_refused_with_the_name():
    with pytest.raises(DataError, match="fold_03/test.npz.*at least two embeddings"):
        fold_calibration.mean_pair_distance(np.ones((1, 4)), "fold_03/test.npz")
    with pytest.raises(DataError, match="all 5 embeddings point the same way.*collapsed"):
        fold_calibration.mean_pair_distance(np.tile([[1.0, 2.0, 3.0]], (5, 1)), "x")
    with pytest.raises(ValueError, match="need 0 < reference <= distance"):
        fold_calibration.calibrate_cosines(np.zeros(3), 0.4, 0.5)
    with pytest.raises(ValueError, match=r"no distance for fold\(s\) \[1\]"):
        fold_calibration.calibrate_folds({1: None}, {0: 0.5})


def test_the_appended_constant_gives_exactly_the_calibrated_cosines():
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(30, 5))
    ids = [f"v{i}" for i in range(30)]
    original = EmbeddingSet.create(ids, matrix)
    calibrated = fold_calibration.calibrate_set(original, distance=0.8, reference=0.5)
    assert calibrated.dim == 6 and calibrated.ids.tolist() == ids
    expected = fold_calibration.calibrate_cosines(_unit(matrix) @ _unit(matrix).T, 0.8, 0.5)
    got = _unit(calibrated.embeddings.astype(np.float64)) @ _unit(calibrated.embeddings.astype(np.float64)).T
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(1 - expected, (1 - _unit(matrix) @ _unit(matrix).T) * 0.5 / 0.8, atol=1e-12)
    # at the reference itself nothing changes but the zero column
    same = fold_calibration.calibrate_set(original, 0.5, 0.5)
    np.testing.assert_allclose(same.embeddings[:, -1], 0)


def test_two_folds_on_different_scales_pool_as_one_after_calibration(tmp_path):
    """Fold 1 is fold 0's kind of model with every cosine pulled halfway to 1 (1 - cos halved):
    each fold ranks its pairs equally well, pooled raw they do not; calibrated they pool exactly."""
    rng = np.random.default_rng(2)
    latent = _unit(rng.normal(size=(200, 8)))
    fold_dirs, sets, scores = {}, {}, []
    for fold, keep in ((0, 1.0), (1, 0.5)):  # [sqrt(keep) e, sqrt(1 - keep)]: 1 - cos scales by keep
        embed = np.concatenate([np.sqrt(keep) * latent, np.full((200, 1), np.sqrt(1 - keep))], axis=1)
        ids = [str(i) for i in range(200)]
        left, right = rng.choice(200, 150), rng.choice(200, 150)
        pair_scores = np.sum(latent[left] * latent[right], axis=1) + rng.normal(0, 0.05, 150)
        pairs = make_pairs(np.array(ids)[left], np.array(ids)[right], pair_scores)
        fold_dirs[fold] = str(tmp_path / f"fold_{fold:02d}")
        save_embeddings(tmp_path / f"fold_{fold:02d}" / "test.npz", ids, embed.astype(np.float32))
        sets[fold] = EmbeddingSet.create(ids, embed, pairs)
        scores.append(pair_scores)
    distances = fold_calibration.fold_distances(fold_dirs)
    assert distances[1] == pytest.approx(0.5 * distances[0], rel=1e-5)
    assert fold_calibration.reference_distance(distances) == distances[1]

    def pooled(fold_sets):
        cos = [np.sum(_unit(s.lookup(s.pairs.query).astype(np.float64)) * _unit(s.lookup(s.pairs.candidate)
                                                                                .astype(np.float64)), axis=1)
               for s in fold_sets.values()]
        return np.concatenate(cos)

    truth = scipy.stats.spearmanr(pooled({0: sets[0], 1: EmbeddingSet.create(
        sets[1].ids, latent, sets[1].pairs)}), np.concatenate(scores)).statistic
    raw = scipy.stats.spearmanr(pooled(sets), np.concatenate(scores)).statistic
    calibrated = scipy.stats.spearmanr(pooled(fold_calibration.calibrate_folds(sets, distances)),
                                       np.concatenate(scores)).statistic
    assert calibrated == pytest.approx(truth, abs=1e-4) and calibrated > raw + 0.02
