"""Ensembling rules: SVD concat (shape, determinism, sqrt-weight scaling, fit rows), weighted, mean."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from ensemble.rules import RULES, apply_rule, concat_scaled, mean_normalised, svd_concat, weighted_sum
from infer.embeddings_io import EmbeddingSet, l2_normalize
from infer.evaluate import pair_cosines
from tfrecord_tools.errors import DataError

N = 260


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """OpenBLAS threads spin-wait when the 2 cores are shared (the suite runs beside other jobs):
    one thread makes these small SVDs ~20x faster there and changes no result."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
IDS = np.array([str(5000 + i) for i in range(N)])


def _set(seed, dim, name, order=None):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(N, dim)).astype(np.float32)
    if order is None:
        return EmbeddingSet(IDS, emb, None, name)
    return EmbeddingSet(IDS[order], emb[order], None, name)


@pytest.fixture(scope="module")
def sets():
    return [_set(0, 120, "a"), _set(1, 100, "b"), _set(2, 64, "c")]


def test_svd_shape_dtype_and_determinism(sets):
    first = svd_concat(sets, [1.0, 0.5, 2.0], dim=256, seed=0)
    second = svd_concat(sets, [1.0, 0.5, 2.0], dim=256, seed=0)
    assert first.embeddings.shape == (N, 256) and first.embeddings.dtype == np.float32
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert first.ids.tolist() == IDS.tolist()


def test_svd_caps_components_by_columns_and_rows(sets):
    small = [_set(3, 8, "x"), _set(4, 8, "y")]
    assert svd_concat(small, dim=256).dim == 15  # total_dim - 1
    assert svd_concat(sets, dim=256, fit_on=np.arange(40)).dim == 40  # only 40 rows to fit on


def test_svd_full_rank_keeps_weighted_cosines():
    # With as many components as the concatenation's rank, cosines equal the sqrt(w)-scaled concat's.
    a, b = _set(5, 6, "a"), _set(6, 6, "b")
    b.embeddings[:, -1] = 0  # rank 5: the concatenation (12 columns) has rank 11 = the components kept
    out = svd_concat([a, b], [1.0, 3.0], dim=11)
    _, concat = concat_scaled([a, b], [1.0, 3.0])
    ref = EmbeddingSet(IDS, concat.astype(np.float32))
    pairs = (IDS[:50], IDS[50:100])
    np.testing.assert_allclose(pair_cosines(out, *pairs), pair_cosines(ref, *pairs), atol=1e-5)
    # and the concat's dot product is the weighted sum of per-model cosines
    na, nb = l2_normalize(a.embeddings.astype(np.float64)), l2_normalize(b.embeddings.astype(np.float64))
    np.testing.assert_allclose((concat[:5] * concat[5:10]).sum(1),
                               (na[:5] * na[5:10]).sum(1) + 3 * (nb[:5] * nb[5:10]).sum(1))


def test_zero_weight_model_is_ignored(sets):
    with_b = svd_concat([sets[0], sets[1]], [1.0, 0.0], dim=32)
    other_b = svd_concat([sets[0], _set(9, 100, "b2")], [1.0, 0.0], dim=32)
    np.testing.assert_allclose(with_b.embeddings, other_b.embeddings, atol=1e-5)
    weighted = svd_concat([sets[0], sets[1]], [1.0, 1.0], dim=32)
    assert not np.allclose(weighted.embeddings, with_b.embeddings, atol=1e-2)


def test_weight_scaling_changes_result(sets):
    even = svd_concat(sets[:2], [1.0, 1.0], dim=64)
    skewed = svd_concat(sets[:2], [1.0, 4.0], dim=64)
    assert not np.allclose(even.embeddings, skewed.embeddings, atol=1e-2)


def test_ids_are_aligned_not_positional(sets):
    shuffled = np.random.default_rng(0).permutation(N)
    b_shuffled = EmbeddingSet(sets[1].ids[shuffled], sets[1].embeddings[shuffled], None, "b")
    np.testing.assert_allclose(svd_concat([sets[0], b_shuffled], dim=64).embeddings,
                               svd_concat(sets[:2], dim=64).embeddings, atol=1e-6)


def test_mismatched_ids_error_names_them(sets):
    fewer = EmbeddingSet(IDS[1:], sets[1].embeddings[1:], None, "b_missing")
    for rule in RULES:
        with pytest.raises(DataError, match=r"b_missing: id sets differ: lacks 1 id\(s\) of a: 5000"):
            apply_rule(rule, [sets[0], fewer] if rule == "svd" else [_set(0, 100, "a"), fewer])


def test_fit_on_other_sets_and_selections(sets):
    test_like = [_set(10, 120, "ta"), _set(11, 100, "tb")]
    on_test = svd_concat(sets[:2], dim=32, fit_on=test_like)
    on_self = svd_concat(sets[:2], dim=32)
    assert on_test.dim == 32 and not np.allclose(np.abs(on_test.embeddings), np.abs(on_self.embeddings), atol=1e-3)
    # a matrix built by concat_scaled == fitting on those sets
    on_matrix = svd_concat(sets[:2], dim=32, fit_on=concat_scaled(test_like)[1])
    np.testing.assert_allclose(on_matrix.embeddings, on_test.embeddings, atol=1e-6)
    mask = np.zeros(N, bool)
    mask[:150] = True
    np.testing.assert_allclose(svd_concat(sets[:2], dim=32, fit_on=mask).embeddings,
                               svd_concat(sets[:2], dim=32, fit_on=IDS[:150]).embeddings, atol=1e-6)
    with pytest.raises(DataError, match="not in the embeddings"):
        svd_concat(sets[:2], dim=32, fit_on=np.array(["nope"]))
    with pytest.raises(ValueError, match="columns"):
        svd_concat(sets[:2], dim=32, fit_on=np.zeros((10, 5)))


def test_weighted_and_mean():
    a = EmbeddingSet.create(["1", "2"], [[3, 4], [0, 2]], name="a")
    b = EmbeddingSet.create(["2", "1"], [[1, 0], [0, 5]], name="b")
    np.testing.assert_allclose(weighted_sum([a, b], [2, 1]).embeddings, [[1.2, 2.6], [1, 2]], atol=1e-6)
    np.testing.assert_allclose(mean_normalised([a, b]).embeddings, [[0.3, 0.9], [0.5, 0.5]], atol=1e-6)
    with pytest.raises(DataError, match="needs one embedding dimension"):
        weighted_sum([a, EmbeddingSet.create(["1", "2"], np.ones((2, 3)), name="c")])
    with pytest.raises(ValueError, match=">= 0"):
        weighted_sum([a, b], [1, -1])
    with pytest.raises(ValueError, match="use --rule weighted"):
        apply_rule("mean", [a, b], [1, 2])
    with pytest.raises(ValueError, match="unknown ensemble rule"):
        apply_rule("median", [a, b])
    assert set(RULES) == {"svd", "weighted", "mean"}
