"""Fold alignment: each fold model rotated onto the first before the fold average."""
import numpy as np
import pytest
import scipy.stats

from ensemble import fold_alignment
from ensemble.fold_average import average_folds
from infer.embeddings_io import EmbeddingSet, l2_normalize
from tfrecord_tools.errors import DataError


def _orthogonal(rng, dim):
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def test_procrustes_undoes_a_rotation_and_keeps_every_cosine():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 8)) + 2.0  # not centred: the shared offset must rotate too
    turn = _orthogonal(rng, 8)
    moving = base @ turn * 3.0  # scale is ignored (unit vectors)
    rotation = fold_alignment.procrustes_rotation(moving, base)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(8), atol=1e-10)
    np.testing.assert_allclose(rotation, turn.T, atol=1e-8)
    rotated = fold_alignment.rotate(EmbeddingSet.create([str(i) for i in range(50)], moving, name="m"), rotation)
    np.testing.assert_allclose(rotated.embeddings, l2_normalize(base), atol=1e-6)
    unit = l2_normalize(moving)
    np.testing.assert_allclose(rotated.embeddings @ rotated.embeddings.T, unit @ unit.T, atol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        fold_alignment.procrustes_rotation(moving[:, :4], base)


def test_aligned_fold_average_keeps_the_folds_geometry(tmp_path):
    """Two fold models that agree up to a rotation (plus noise): the raw average loses their
    ranking of pairs, the aligned one keeps it."""
    rng = np.random.default_rng(1)
    ids = np.array([str(1000 + i) for i in range(200)])
    latent = rng.normal(size=(200, 16))
    folds = {0: latent + rng.normal(0, 0.3, latent.shape),
             1: (latent + rng.normal(0, 0.3, latent.shape)) @ _orthogonal(rng, 16)}
    sets = [EmbeddingSet.create(ids, folds[k], name=f"fold {k}") for k in (0, 1)]
    order = rng.permutation(200)  # the second set lists the videos in another order
    shuffled = EmbeddingSet.create(ids[order], folds[1][order], name="fold 1, shuffled")
    rotations = {0: np.eye(16), 1: fold_alignment.rotation_onto(sets[0], shuffled)}
    aligned = average_folds(fold_alignment.rotate(s, rotations[k]) for k, s in enumerate(sets))
    raw = average_folds(sets)
    truth = l2_normalize(latent) @ l2_normalize(latent).T
    upper = np.triu_indices(200, 1)

    def score(matrix):
        unit = l2_normalize(matrix.astype(np.float64))
        return scipy.stats.spearmanr((unit @ unit.T)[upper], truth[upper]).statistic

    single = score(folds[0])
    assert score(aligned.embeddings) > single > score(raw.embeddings) + 0.1

    path = str(tmp_path / "avg" / fold_alignment.ROTATIONS_FILE)
    fold_alignment.save_rotations(path, rotations)
    loaded = fold_alignment.load_rotations(path, [0, 1])
    np.testing.assert_allclose(loaded[1], rotations[1])
    with pytest.raises(DataError, match=r"no rotation for fold\(s\) \[2\]"):
        fold_alignment.load_rotations(path, [0, 2])
    with pytest.raises(DataError, match="no fold rotations"):
        fold_alignment.load_rotations(str(tmp_path / "none.npz"), [0])


def test_fold_models_of_other_widths_are_refused_by_name():
    reference = EmbeddingSet.create(["1", "2", "3"], np.eye(3, dtype=np.float32), name="fold_00/test.npz")
    narrow = EmbeddingSet.create(["1", "2", "3"], np.eye(3, dtype=np.float32)[:, :2], name="fold_02/test.npz")
    with pytest.raises(DataError, match=r"fold_02/test.npz.*dimension 2 differs from 3"):
        fold_alignment.rotation_onto(reference, narrow)
