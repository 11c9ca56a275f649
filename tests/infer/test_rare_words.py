"""`infer.rare_words`: the title's rare words matched exactly, through a fixed random projection placed in
the embedding's spare directions, with a weight the training pairs choose."""
import numpy as np
import pytest
import scipy.sparse
import scipy.stats

from infer import rare_words as rw


def _counts(rows, vocab):
    matrix = np.zeros((len(rows), vocab))
    for i, tokens in enumerate(rows):
        for token in tokens:
            matrix[i, token] += 1
    return scipy.sparse.csr_matrix(matrix)


def test_rare_idf_keeps_the_tokens_in_two_to_max_df_documents():
    # token 0 in every document, 1 in 4 of 10, 2 in 2, 3 in 1, 4 special (in 2)
    rows = [[0, 1, 2, 4], [0, 1, 2, 4], [0, 1], [0, 1], [0, 3], [0], [0], [0], [0], [0]]
    idf = rw.rare_idf(_counts(rows, 6), max_df=0.3, ignore=[4])
    expected_2 = np.log(11 / 3) + 1
    np.testing.assert_allclose(idf, [0, 0, expected_2, 0, 0, 0])  # 1 is in 4 > 0.3 * 10 documents
    wider = rw.rare_idf(_counts(rows, 6), max_df=0.4)
    np.testing.assert_allclose(wider[[1, 2, 4]], [np.log(11 / 5) + 1, expected_2, expected_2])
    assert rw.rare_idf(_counts(rows, 6), max_df=0.01)[2] == expected_2  # at least 2 documents always count
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="max_df must be in \\(0, 1\\]"):
            rw.rare_idf(_counts(rows, 6), max_df=bad)


def test_tfidf_rows_are_sublinear_and_unit_length():
    counts = _counts([[0, 0, 0, 1], [2], []], 3)
    idf = np.array([1.0, 2.0, 0.0])
    out = rw.tfidf_rows(counts, idf).toarray()
    first = np.array([1 + np.log(3), 2.0, 0.0])
    np.testing.assert_allclose(out[0], first / np.linalg.norm(first))
    np.testing.assert_allclose(out[1:], 0.0)  # only a zero-idf token, and no token: zero rows


def test_random_projection_keeps_inner_products():
    idf = np.zeros(400)
    idf[100:] = 1.0  # 300 rare tokens
    projection = rw.random_projection(idf, 64, seed=0)
    assert projection.shape == (400, 64) and not projection[:100].any()
    np.testing.assert_allclose(projection[100:].T @ projection[100:], np.eye(64) * 300 / 64, atol=1e-9)
    rng = np.random.default_rng(1)
    docs = np.zeros((200, 400))
    for row in docs:
        row[100 + rng.choice(300, size=4, replace=False)] = 1.0
    docs[1::2] = docs[::2]  # pairs of identical titles
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    z = docs @ projection
    exact, projected = (docs @ docs.T)[np.triu_indices(200, 1)], (z @ z.T)[np.triu_indices(200, 1)]
    assert abs(projected.mean() - exact.mean()) < 0.01 and np.std(projected - exact) < 2.0 / np.sqrt(64)
    assert np.mean(np.einsum("ij,ij->i", z[::2], z[1::2])) > 0.9  # identical titles stay close
    few = np.zeros(20)
    few[[3, 5, 7]] = 1.0  # fewer rare tokens than dimensions: inner products kept exactly
    small = rw.random_projection(few, 8, seed=0)
    np.testing.assert_allclose(small[[3, 5, 7]] @ small[[3, 5, 7]].T, np.eye(3), atol=1e-9)
    assert not rw.random_projection(np.zeros(10), 4, seed=0).any()
    with pytest.raises(ValueError, match="width must be >= 1"):
        rw.random_projection(idf, 0, seed=0)


def test_free_directions_avoid_where_the_embeddings_live():
    rng = np.random.default_rng(0)
    embeddings = np.zeros((300, 10))
    embeddings[:, :6] = rng.normal(size=(300, 6))
    embeddings[:, 6] = 0.01 * rng.normal(size=300)
    free = rw.free_directions(embeddings, 4)
    assert free.shape == (4, 10)
    np.testing.assert_allclose(free @ free.T, np.eye(4), atol=1e-9)
    assert np.abs(free[:3, :7]).max() < 1e-9  # first the three unused dimensions,
    assert abs(free[3, 6]) > 0.99  # then the nearly unused one, none of the six used ones
    with pytest.raises(ValueError, match="width 11 exceeds the embedding's 10 dimensions"):
        rw.free_directions(embeddings, 11)


def _score(rows_q, rows_c, target):
    def score(x):
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        return scipy.stats.spearmanr(np.einsum("ij,ij->i", unit[rows_q], unit[rows_c]), target).statistic
    return score


def test_choose_weight_turns_the_part_on_where_it_ranks_the_pairs_and_off_where_it_is_noise():
    rng = np.random.default_rng(0)
    n = 400
    base = np.zeros((n, 8))
    base[:, :4] = rng.normal(size=(n, 4))
    subject = rng.integers(100, size=n)  # what the rare words name
    rare = np.zeros((n, 8))
    rare[:, 4:] = np.eye(100)[subject] @ rng.normal(size=(100, 4)) / 2.0
    q, c = rng.integers(n, size=600), rng.integers(n, size=600)
    for i in range(300):  # half the pairs share a subject
        c[i] = rng.choice(np.flatnonzero(subject == subject[q[i]]))
    base_unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    target = np.einsum("ij,ij->i", base_unit[q], base_unit[c]) + (subject[q] == subject[c]) + 0.1 * rng.normal(size=600)
    weight, scores = rw.choose_weight([(base, _score(q, c, target))], rare)
    assert weight > 0 and scores[weight] > scores[0.0] + 0.01 and set(scores) == set(rw.WEIGHTS)
    noise = np.zeros((n, 8))
    noise[:, 4:] = rng.normal(size=(n, 4))
    off, scores = rw.choose_weight([(base, _score(q, c, target))], noise)
    assert off == 0.0 and scores[0.0] == max(scores.values())


def test_choose_weight_averages_the_scores_over_the_bases():
    rng = np.random.default_rng(0)
    base, rare = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    calls = []

    def first(x):
        calls.append("first")
        return float(x[0, 0])

    def second(x):
        calls.append("second")
        return 1.0 - float(x[0, 0])

    weight, scores = rw.choose_weight([(base, first), (2 * base, second)], rare, weights=(0.0, 0.5))
    assert calls == ["first", "second"] * 2 and set(scores) == {0.0, 0.5}
    np.testing.assert_allclose(list(scores.values()), 0.5)  # the two scores cancel: a tie, the smaller weight
    assert weight == 0.0
