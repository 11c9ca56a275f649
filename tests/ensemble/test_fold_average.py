"""Fold averaging: mean of L2-normalised fold embeddings, aligned by id."""
import numpy as np
import pytest

from ensemble.fold_average import FoldAverager, average_folds
from infer.embeddings_io import EmbeddingSet
from tfrecord_tools.errors import DataError


def test_average_equals_manual_mean_of_normalised():
    rng = np.random.default_rng(0)
    ids = np.array([str(i) for i in range(20)])
    mats = [rng.normal(size=(20, 8)).astype(np.float32) * scale for scale in (1, 10, 0.1)]
    order = rng.permutation(20)
    sets = [EmbeddingSet(ids, mats[0], None, "f0"), EmbeddingSet(ids[order], mats[1][order], None, "f1"),
            EmbeddingSet(ids, mats[2], None, "f2")]
    manual = np.mean([m / np.linalg.norm(m, axis=1, keepdims=True) for m in mats], axis=0)
    out = average_folds(iter(sets), name="model")
    assert out.ids.tolist() == ids.tolist() and out.name == "model" and out.embeddings.dtype == np.float32
    np.testing.assert_allclose(out.embeddings, manual, atol=1e-6)
    running = FoldAverager()
    running.add(sets[0])
    np.testing.assert_allclose(running.result().embeddings, mats[0] / np.linalg.norm(mats[0], axis=1, keepdims=True),
                               atol=1e-6)


def test_average_errors():
    a = EmbeddingSet.create(["1", "2"], np.ones((2, 3)), name="fold_00/test.npz")
    with pytest.raises(DataError, match=r"fold_01/test.npz: id sets differ: lacks 1 id\(s\) of fold_00/test.npz: 2"):
        average_folds([a, EmbeddingSet.create(["1", "3"], np.ones((2, 3)), name="fold_01/test.npz")])
    with pytest.raises(DataError, match="dimension 4 differs from 3"):
        average_folds([a, EmbeddingSet.create(["1", "2"], np.ones((2, 4)), name="x")])
    with pytest.raises(ValueError, match="no fold embeddings"):
        average_folds([])
