"""The official Spearman, out-of-fold scoring and the raw baselines."""
import numpy as np
import pytest
import scipy.stats

from infer.embeddings_io import EmbeddingSet, make_pairs
from infer.evaluate import (mean_frame_baseline, out_of_fold_spearman, pair_cosines, pairs_by_fold,
                            per_fold_spearman, spearman, title_tfidf_baseline)
from tfrecord_tools.errors import DataError


@pytest.fixture(scope="module")
def four_pairs():
    """Cosines (a,b)=1, (a,c)=0, (a,d)=0.7071, (a,e)=-1; scores ranked 4,3,2,1."""
    s = np.sqrt(0.5)
    emb = EmbeddingSet.create(["1", "2", "3", "4", "5"],
                              [[2, 0], [5, 0], [0, 3], [s, s], [-1, 0]])
    labels = make_pairs(["1"] * 4, ["2", "3", "4", "5"], [1.0, 0.5, 0.3, 0.0])
    return emb, labels


def test_pair_cosines(four_pairs):
    emb, labels = four_pairs
    np.testing.assert_allclose(pair_cosines(emb, labels.query, labels.candidate), [1, 0, np.sqrt(0.5), -1], atol=1e-7)


def test_spearman_hand_computed(four_pairs):
    # ranks of cosines 4,2,3,1 vs scores 4,3,2,1: sum d^2 = 2, rho = 1 - 6*2/(4*(16-1)) = 0.8
    emb, labels = four_pairs
    assert spearman(emb, labels) == pytest.approx(0.8)


def test_spearman_matches_scipy_on_random_data():
    rng = np.random.default_rng(1)
    ids = [str(10 + i) for i in range(40)]
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    # 300 distinct unordered pairs (a pair and its reverse would tie; tie order is float noise)
    upper = [(i, j) for i in range(40) for j in range(i + 1, 40)]
    q, c = np.array([upper[k] for k in rng.choice(len(upper), 300, replace=False)]).T
    scores = np.round(rng.random(300) / 0.05) * 0.05
    labels = make_pairs([ids[i] for i in q], [ids[i] for i in c], scores)
    e = emb.astype(np.float64)
    cos = np.array([e[i] @ e[j] / np.linalg.norm(e[i]) / np.linalg.norm(e[j]) for i, j in zip(q, c)])
    expected = scipy.stats.spearmanr(cos, labels.score).statistic
    assert spearman(EmbeddingSet(np.array(ids), emb), labels) == pytest.approx(expected, abs=1e-12)


def test_missing_id_is_an_error_naming_it(four_pairs):
    emb, _ = four_pairs
    labels = make_pairs(["1", "1"], ["2", "77"], [0.5, 0.1], where="label.tsv")
    with pytest.raises(DataError, match=r"id '77' not in the embeddings.*needed by the pairs of label.tsv"):
        spearman(emb, labels)


def _two_fold_case():
    """Fold 0's model ranks fold 0's pairs perfectly; fold 1's model ranks them backwards."""
    ids = ["1", "2", "3", "4", "5", "6"]
    good = np.array([[1, 0], [1, 0.1], [1, 1], [0, 1], [1, 0], [-1, 0.2]], np.float32)
    flipped = good.copy()
    flipped[[1, 3]] = flipped[[3, 1]]
    pairs0 = make_pairs(["1", "1", "1"], ["2", "3", "4"], [0.9, 0.5, 0.1])  # cos with good: 0.995, 0.707, 0
    pairs1 = make_pairs(["5", "5"], ["6", "3"], [0.0, 0.6])
    fold0 = EmbeddingSet(np.array(ids), good, pairs0, "fold0")
    fold1 = EmbeddingSet(np.array(ids), flipped, pairs1, "fold1")
    return fold0, fold1


def test_out_of_fold_uses_each_pairs_own_fold():
    fold0, fold1 = _two_fold_case()
    labels, folds = pairs_by_fold({0: fold0, 1: fold1})
    assert folds.tolist() == [0, 0, 0, 1, 1]
    value = out_of_fold_spearman({0: fold0, 1: fold1}, labels, folds)
    cos = np.concatenate([pair_cosines(fold0, labels.query[:3], labels.candidate[:3]),
                          pair_cosines(fold1, labels.query[3:], labels.candidate[3:])])
    assert value == pytest.approx(scipy.stats.spearmanr(cos, labels.score).statistic)
    wrong = out_of_fold_spearman({0: fold1, 1: fold0}, labels, folds)
    assert abs(value - wrong) > 0.1
    assert per_fold_spearman({0: fold0})[0] == pytest.approx(1.0)


def test_out_of_fold_errors():
    fold0, fold1 = _two_fold_case()
    labels, folds = pairs_by_fold({0: fold0, 1: fold1})
    with pytest.raises(DataError, match=r"fold 1 but no embeddings for that fold \(have folds \[0\]\)"):
        out_of_fold_spearman({0: fold0}, labels, folds)
    with pytest.raises(ValueError, match="one fold per pair"):
        out_of_fold_spearman({0: fold0, 1: fold1}, labels, folds[:3])
    with pytest.raises(DataError, match="also in fold 0"):
        pairs_by_fold({0: fold0, 1: EmbeddingSet(fold1.ids, fold1.embeddings, fold0.pairs, "dup")})
    with pytest.raises(DataError, match="no pairs part"):
        pairs_by_fold({0: EmbeddingSet(fold0.ids, fold0.embeddings)})


def test_mean_frame_baseline():
    frames = {"1": np.array([1, 0, 0], np.float16), "2": np.array([0.5, 0.5, 0], np.float16)}
    s = mean_frame_baseline(frames)
    assert s.ids.tolist() == ["1", "2"] and s.embeddings.dtype == np.float32
    np.testing.assert_array_equal(s.lookup(["2"]), [[0.5, 0.5, 0]])
    with pytest.raises(DataError, match="differ in length"):
        mean_frame_baseline({"1": np.zeros(3), "2": np.zeros(4)})


def test_title_tfidf_baseline_ranks_shared_characters_higher():
    titles = {"1": "世界首家纯金酒店", "2": "首家纯金酒店开业", "3": "小猫咪睡觉", "4": ""}
    full = title_tfidf_baseline(titles, dim=None)
    cos = pair_cosines(full, ["1", "1", "1"], ["2", "3", "4"])
    assert cos[0] > 0.5 and cos[1] == pytest.approx(0.0) and cos[2] == 0.0
    reduced = title_tfidf_baseline(titles, dim=3)
    assert reduced.embeddings.shape == (4, 3) and reduced.embeddings.dtype == np.float32
    assert pair_cosines(reduced, ["1"], ["2"])[0] > pair_cosines(reduced, ["1"], ["3"])[0]


def test_real_label_file_scale_and_missing_video(shared_data):
    """The official label.tsv (67,899 pairs, 63,613 videos): exact scipy value, and a dropped video is named."""
    from tfrecord_tools.labels import read_labels

    labels = read_labels(shared_data / "label.tsv")
    ids = np.array(labels.video_ids())
    emb = np.random.default_rng(3).normal(size=(len(ids), 8)).astype(np.float32)
    full = EmbeddingSet(ids, emb, None, "real")
    unit = emb.astype(np.float64) / np.linalg.norm(emb.astype(np.float64), axis=1, keepdims=True)
    row = {key: i for i, key in enumerate(ids.tolist())}
    q = np.array([row[k] for k in labels.query])
    c = np.array([row[k] for k in labels.candidate])
    expected = scipy.stats.spearmanr(np.einsum("ij,ij->i", unit[q], unit[c]), labels.score).statistic
    assert spearman(full, labels) == pytest.approx(expected, abs=1e-12)
    dropped = labels.query[0]
    keep = ids != dropped
    with pytest.raises(DataError, match=rf"id '{dropped}' not in the embeddings \(1 of .*label.tsv"):
        spearman(EmbeddingSet(ids[keep], emb[keep], None, "real minus one"), labels)
