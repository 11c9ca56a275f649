"""margin_interval: a paired bootstrap of two systems' out-of-fold Spearman on the same pairs."""
import numpy as np
import pytest
import scipy.stats

from bench import margin_interval
from infer.embeddings_io import make_pairs, save_embeddings
from tfrecord_tools.errors import DataError


def test_a_clearly_better_system_has_an_interval_above_zero():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=600)
    good, bad = scores + rng.normal(0, 0.3, 600), scores + rng.normal(0, 1.5, 600)
    result = margin_interval.bootstrap_margin(good, bad, scores, draws=400)
    expected = scipy.stats.spearmanr(good, scores).statistic - scipy.stats.spearmanr(bad, scores).statistic
    assert result["margin"] == pytest.approx(expected)
    assert 0 < result["low"] < result["margin"] < result["high"] and result["share_ahead"] == 1.0
    assert result["pairs"] == 600 and result["draws"] == 400


def test_the_interval_holds_the_margin_and_narrows_with_more_pairs():
    widths = []
    for pairs in (300, 3000):
        rng = np.random.default_rng(1)
        scores = rng.normal(size=pairs)
        a, b = scores + rng.normal(0, 1, pairs), scores + rng.normal(0, 1, pairs)  # equally good in expectation
        result = margin_interval.bootstrap_margin(a, b, scores, draws=400, level=0.9)
        assert result["low"] < result["margin"] < result["high"]
        widths.append(result["high"] - result["low"])
    assert widths[0] > 2 * widths[1]  # ~ sqrt(10) narrower on ten times the pairs
    same = margin_interval.bootstrap_margin(a, a, scores, draws=50)
    assert same["margin"] == 0 and same["low"] == same["high"] == 0 and same["share_ahead"] == 0


def test_bad_shapes_and_levels_are_refused():
    with pytest.raises(ValueError, match="three 1-d arrays of one length"):
        margin_interval.bootstrap_margin(np.zeros(3), np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        margin_interval.bootstrap_margin(np.zeros(3), np.zeros(3), np.arange(3.0), level=90)


def _write_system(directory, latent, fold_pairs, noise, seed, offsets=None):
    """Each fold's val.npz (its pairs' videos) and test.npz (every video); ``offsets[fold]``: a constant
    vector added to that fold model's embeddings, which moves its cosines toward 1."""
    rng = np.random.default_rng(seed)
    for fold, pairs in fold_pairs.items():
        offset = 0 if offsets is None else offsets[fold]
        ids = list(dict.fromkeys(np.concatenate([pairs.query, pairs.candidate])))
        vectors = np.stack([latent[i] + rng.normal(0, noise, latent[i].shape) + offset for i in ids])
        save_embeddings(directory / f"fold_{fold:02d}" / "val.npz", ids, vectors.astype(np.float32), pairs)
        everyone = sorted(latent)
        test = np.stack([latent[i] + rng.normal(0, noise, latent[i].shape) + offset for i in everyone])
        save_embeddings(directory / f"fold_{fold:02d}" / "test.npz", everyone, test.astype(np.float32))


def _latent_and_fold_pairs(seed):
    """80 videos' latent vectors and two folds of 120 pairs each, scored by the latents' dot product."""
    rng = np.random.default_rng(seed)
    ids = [str(i) for i in range(80)]
    latent = {i: rng.normal(size=8) for i in ids}
    fold_pairs = {}
    for fold in (0, 1):
        chosen = rng.choice(ids[fold * 40:(fold + 1) * 40], size=(120, 2))
        fold_pairs[fold] = make_pairs(chosen[:, 0], chosen[:, 1], np.array([latent[a] @ latent[b] for a, b in chosen]))
    return latent, fold_pairs


def test_margin_between_a_model_and_a_baseline_of_a_run(tmp_path, capsys):
    latent, fold_pairs = _latent_and_fold_pairs(2)
    run = tmp_path / "run"
    _write_system(run / "embeddings" / "uniter", latent, fold_pairs, 0.1, 0)
    _write_system(run / "baselines" / "linear_metric", latent, fold_pairs, 2.0, 1)
    result = margin_interval.margin_between(str(run), "uniter", "baseline: linear_metric", [0, 1], draws=200)
    assert result["pairs"] == 240 and result["low"] > 0
    assert margin_interval.main([str(run), "uniter", "baseline:linear_metric", "--draws", "100"]) == 0
    assert "uniter − baseline:linear_metric over 240 out-of-fold pairs: +0." in capsys.readouterr().out
    # a fold the run lacks, and systems whose pairs differ, are named
    assert margin_interval.main([str(run), "uniter", "baseline:linear_metric", "--folds", "0", "3"]) == 2
    assert "fold_03/val.npz: no validation embeddings of fold 3" in capsys.readouterr().err
    other = dict(fold_pairs)
    other[1] = make_pairs(fold_pairs[1].candidate, fold_pairs[1].query, fold_pairs[1].score)
    _write_system(run / "embeddings" / "swapped", latent, other, 0.1, 3)
    with pytest.raises(ValueError, match="validation pairs differ"):
        margin_interval.margin_between(str(run), "swapped", "uniter", [0, 1], draws=10)


def test_fold_models_on_different_cosine_scales_are_calibrated_before_pooling(tmp_path):
    latent, fold_pairs = _latent_and_fold_pairs(4)
    run = tmp_path / "run"
    shifted = {0: np.zeros(8), 1: np.full(8, 2.0)}  # fold 1's cosines all pushed toward 1
    _write_system(run / "embeddings" / "uniter", latent, fold_pairs, 0.1, 0, offsets=shifted)
    _write_system(run / "baselines" / "linear_metric", latent, fold_pairs, 0.1, 0)
    raw_a, scores, _ = margin_interval.oof_cosines(str(run / "embeddings" / "uniter"), [0, 1], calibrate="none")
    cal_a, _, _ = margin_interval.oof_cosines(str(run / "embeddings" / "uniter"), [0, 1])
    raw, cal = (scipy.stats.spearmanr(c, scores).statistic for c in (raw_a, cal_a))
    assert cal > raw + 0.05  # pooled raw, fold 1's pairs all rank above fold 0's
    # within each fold the order is unchanged
    for part in (slice(0, 120), slice(120, 240)):
        assert scipy.stats.spearmanr(raw_a[part], cal_a[part]).statistic == pytest.approx(1.0, abs=1e-4)
    calibrated = margin_interval.margin_between(str(run), "uniter", "baseline:linear_metric", [0, 1], draws=50)
    raw_margin = margin_interval.margin_between(str(run), "uniter", "baseline:linear_metric", [0, 1], draws=50,
                                                calibrate="none")
    assert calibrated["margin"] > raw_margin["margin"] + 0.05
    (run / "embeddings" / "uniter" / "fold_01" / "test.npz").unlink()
    with pytest.raises(DataError, match="fold_01/test.npz: no test embeddings of fold 1"):
        margin_interval.oof_cosines(str(run / "embeddings" / "uniter"), [0, 1])
