"""Strong baselines: whitening, moments, per-fold choices made on training pairs, the linear metric,
and the CLI end to end on the tiny synthetic data (scored by ensemble_final --baselines-dir)."""
import dataclasses
import json
import os

import numpy as np
import pytest
import scipy.stats

from infer import baselines as cli
from infer import strong_baselines as sb
from tfrecord_tools.labels import Labels


def test_moments_and_whitener_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 5.0
    acc = sb.MomentAccumulator(6)
    acc.add(x[:200])
    acc.add(x[200:])
    mean, cov = acc.result()
    np.testing.assert_allclose(mean, x.mean(0), atol=1e-9)
    np.testing.assert_allclose(cov, np.cov(x.T, bias=True), atol=1e-8)
    whitener = sb.Whitener.fit(mean, cov, eps=1e-12)
    white = whitener(x, 6)
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(6), atol=1e-6)
    assert whitener(x, 3).shape == (500, 3)
    with pytest.raises(ValueError, match="at least 2"):
        sb.MomentAccumulator(3).result()


def test_moments_row_by_row_match_one_block():
    """Rows added one at a time are buffered across flushes; nothing is lost or counted twice."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(37, 4)) + 2.0
    acc = sb.MomentAccumulator(4, buffer_rows=8)
    for row in x[:30]:
        acc.add(row)
    first = acc.result()  # flushes a partial buffer
    np.testing.assert_allclose(first[0], x[:30].mean(0), atol=1e-12)
    for row in x[30:]:
        acc.add(row)
    mean, cov = acc.result()
    assert acc.n == 37
    np.testing.assert_allclose(mean, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x.T, bias=True), atol=1e-12)


def test_pair_spearman_is_the_scipy_statistic():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(40, 5))
    q, c = rng.integers(0, 40, 60), rng.integers(0, 40, 60)
    s = rng.random(60)
    n = e / np.linalg.norm(e, axis=1, keepdims=True)
    expected = scipy.stats.spearmanr(np.sum(n[q] * n[c], 1), s).statistic
    assert sb.pair_spearman(e, q, c, s) == pytest.approx(expected)
    assert np.isnan(sb.pair_spearman(np.ones((40, 5)), q, c, s))


def test_fit_transformed_whitens_the_standardised_features():
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(600, 5)) @ rng.normal(size=(5, 5)) + 3.0) * np.array([1.0, 10.0, 100.0, 0.1, 1.0])
    mean, cov = sb.moments(x)
    transform = sb.standardising_transform(cov)
    np.testing.assert_allclose(np.diag(transform), 1.0 / x.std(0), rtol=1e-9)
    spaces = sb.frame_whiteners(mean, cov, eps=1e-12)
    assert set(spaces) == {"standardised", "covariance"}  # within: only with the spread within videos
    white = spaces["standardised"](x, 5)
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(5), atol=1e-6)
    # the same PCA as whitening the standardised features themselves (columns up to sign)
    z = (x - x.mean(0)) / x.std(0)
    direct = sb.Whitener.fit(np.zeros(5), np.cov(z.T, bias=True), eps=1e-12)(z, 2)
    np.testing.assert_allclose(np.abs(white[:, :2]), np.abs(direct), atol=1e-6)
    np.testing.assert_allclose(spaces["covariance"](x, 3), sb.Whitener.fit(mean, cov, 1e-12)(x, 3), atol=1e-9)
    with pytest.raises(ValueError, match="frame_spaces"):
        sb.BaselineConfig(frame_spaces=("correlation",))


def test_within_video_spread_pools_the_frames_around_their_own_video():
    rng = np.random.default_rng(2)
    videos = [rng.normal(size=(frames, 4)) * [1.0, 2.0, 0.5, 3.0] + rng.normal(size=4) * 10 for frames in (5, 1, 9, 3)]
    spread = sb.WithinVideoSpread(4)
    for frames in videos:
        spread.add_video(frames)
    deviations = np.concatenate([frames - frames.mean(0) for frames in videos])
    np.testing.assert_allclose(spread.std(), np.sqrt((deviations ** 2).sum(0) / (18 - 4)))  # the one-frame video adds 0
    assert spread.count == 14
    # the within space divides each feature by that spread (not the total spread) before the PCA
    x = np.stack([frames.mean(0) for frames in videos] * 10) + rng.normal(size=(40, 4))
    mean, cov = sb.moments(x)
    within = sb.frame_whiteners(mean, cov, 1e-12, within_std=spread.std())["within"]
    scaled = x / spread.std()
    direct = sb.Whitener.fit(scaled.mean(0), np.cov(scaled.T, bias=True), 1e-12)(scaled, 3)
    np.testing.assert_allclose(np.abs(within(x, 3)), np.abs(direct), atol=1e-6)
    empty = sb.WithinVideoSpread(4)
    empty.add_video(videos[1])  # one frame: no spread within it
    with pytest.raises(ValueError, match="no video has two frames"):
        empty.std()


def _frame_space_world(kind: str, n: int = 400, seed: int = 5):
    """30 frame features: a 2-d similarity latent in one block, a nuisance in the other, and the spread of
    each feature within videos. ``signal_loud``: the latent in 2 loud features, the rest 28 quiet copies of
    one nuisance (standardising them makes the nuisance the top component); ``noise_loud``: the latent
    spread over 6 quiet correlated features beside 24 loud independent noise features (covariance PCA
    keeps the noise first); ``moving``: 6 loud correlated latent features beside 24 louder copies of one
    nuisance that also moves inside every video (shots, motion), so only the spread within videos tells it
    apart (every other space keeps the nuisance first). In the first two it is the latent features that
    move inside videos, so the within space turns them down."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    if kind == "signal_loud":
        nuisance = rng.normal(size=(n, 1))
        quiet = (nuisance + rng.normal(size=(n, 28)) * 0.05) * 0.01
        frames = np.concatenate([latent * 3.0, quiet], 1)
    elif kind == "noise_loud":
        block = (latent @ rng.normal(size=(2, 6)) + rng.normal(size=(n, 6)) * 0.1) * 0.05
        frames = np.concatenate([block, rng.normal(size=(n, 24))], 1)
    else:
        block = latent @ rng.normal(size=(2, 6)) + rng.normal(size=(n, 6)) * 0.1
        nuisance = rng.normal(size=(n, 1))
        frames = np.concatenate([block, (nuisance + rng.normal(size=(n, 24)) * 0.1) * 2.0], 1)
    latent_features = np.arange(30) < (2 if kind == "signal_loud" else 6)
    moves = ~latent_features if kind == "moving" else latent_features  # 10x its total spread within videos
    within = frames.std(0) * np.where(moves, 10.0, 1.0)
    frames = frames + 7.0
    spread = sb.WithinVideoSpread(30)
    spread.add(within ** 2 * 1000, 1000)
    ids = np.array([f"v{i}" for i in range(n)])
    q, c = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
    unit = latent / np.linalg.norm(latent, axis=1, keepdims=True)
    score = (np.sum(unit[q] * unit[c], 1) + rng.normal(size=len(q)) * 0.1).astype(np.float32)
    moments = sb.MomentAccumulator(frames.shape[1])
    moments.add(frames)
    table = sb.table_of(ids, frames, np.zeros((n, 1)), np.zeros((n, 1)), moments, 1e-6,
                        title_whitener=sb.Whitener(np.zeros(1), np.eye(1), np.ones(1), 1e-6),
                        asr_whitener=sb.Whitener(np.zeros(1), np.eye(1), np.ones(1), 1e-6), frame_spread=spread)
    return table, Labels("<test>", ids[q].astype(object), ids[c].astype(object), score)


@pytest.mark.parametrize("kind, expected", [("signal_loud", "covariance"), ("noise_loud", "standardised"),
                                            ("moving", "within")])
def test_fold_baselines_choose_the_frame_space_on_training_pairs(kind, expected):
    table, labels = _frame_space_world(kind)
    assert set(table.frame_whiteners) == set(sb.FRAME_SPACES)
    train = Labels("<train>", labels.query[:1000], labels.candidate[:1000], labels.score[:1000])
    held = (table.rows(labels.query[1000:].tolist()), table.rows(labels.candidate[1000:].tolist()), labels.score[1000:])
    config = sb.BaselineConfig(frame_components=(2, 4, 8), text_components=(1,), text_weights=(0.0,), metric_steps=0)
    result = sb.fold_baselines(table, train, config)
    assert result.choices["frame_space"] == expected
    assert result.frame_whitener is table.frame_whiteners[expected]
    chosen_held = sb.pair_spearman(result.embeddings["whitened_frame"], *held)
    for other in sb.FRAME_SPACES:
        if other == expected:
            continue
        assert result.choices[f"frame_{expected}_score"] > result.choices[f"frame_{other}_score"]
        forced = sb.fold_baselines(table, train, dataclasses.replace(config, frame_spaces=(other,)))
        assert forced.choices["frame_space"] == other and f"frame_{other}_score" not in forced.choices
        assert chosen_held > sb.pair_spearman(forced.embeddings["whitened_frame"], *held) + 0.1
    # the first space is kept unless another is better in sample by more than the margin
    cautious = sb.fold_baselines(table, train, dataclasses.replace(config, frame_space_margin=1.0))
    assert cautious.choices["frame_space"] == sb.FRAME_SPACES[0] == "within"
    with pytest.raises(ValueError, match="frame_space_margin"):
        sb.BaselineConfig(frame_space_margin=-0.1)


def _hidden_signal_table(n=300, dim=64, seed=0):
    """Videos whose frames hide a 4-d similarity signal under a huge shared offset and loud
    nuisance directions; titles carry a weaker copy of the signal."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 4))
    frames = 50.0 + latent @ rng.normal(size=(4, dim)) * 0.3 + rng.normal(size=(n, 2)) @ rng.normal(size=(2, dim)) * 3
    title = latent + rng.normal(size=(n, 4)) * 1.5
    ids = np.array([f"v{i}" for i in range(n)])
    q, c = rng.integers(0, n, 900), rng.integers(0, n, 900)
    keep = q != c
    q, c = q[keep], c[keep]
    unit = latent / np.linalg.norm(latent, axis=1, keepdims=True)
    score = np.sum(unit[q] * unit[c], 1) + rng.normal(size=len(q)) * 0.1
    acc = sb.MomentAccumulator(dim)
    acc.add(frames)
    table = sb.VideoTable(ids=ids, mean_frame=frames, title=title, asr=np.zeros((n, 1)),
                          frame_whitener=sb.Whitener.fit(*acc.result(), eps=1e-6),
                          title_whitener=sb.Whitener.fit(title.mean(0), np.cov(title.T, bias=True), eps=1e-6),
                          asr_whitener=sb.Whitener(np.zeros(1), np.eye(1), np.ones(1), 1e-6))
    labels = Labels("<test>", ids[q].astype(object), ids[c].astype(object), score.astype(np.float32))
    return table, labels


def test_fold_baselines_choose_on_training_pairs_and_beat_raw():
    table, labels = _hidden_signal_table()
    train = Labels("<train>", labels.query[:600], labels.candidate[:600], labels.score[:600])
    config = sb.BaselineConfig(frame_components=(2, 4, 8, 16), text_components=(2, 4), metric_steps=100)
    result = sb.fold_baselines(table, train, config)
    assert set(result.embeddings) == set(sb.BASELINES)
    assert result.choices["frame_components"] in (2, 4, 8, 16)
    held = (table.rows(labels.query[600:].tolist()), table.rows(labels.candidate[600:].tolist()), labels.score[600:])
    raw = sb.pair_spearman(result.embeddings["mean_frame"], *held)
    whitened = sb.pair_spearman(result.embeddings["whitened_frame"], *held)
    combined = sb.pair_spearman(result.embeddings["combined"], *held)
    assert whitened > raw + 0.3  # the shared offset and nuisance hide the signal from the raw cosine
    assert combined >= whitened - 0.05
    assert result.choices["metric_steps"] % 20 == 0


def _signal_beside_noise(seed: int, n: int = 400, pairs: int = 3000):
    """Features = 2 signal dims + 10 loud noise dims, random pairs scored by the signal's cosine."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, 2))
    x = np.concatenate([signal, rng.normal(size=(n, 10)) * 2.0], 1)
    q, c = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    unit = signal / np.linalg.norm(signal, axis=1, keepdims=True)
    return x, q, c, np.sum(unit[q] * unit[c], 1)


def test_linear_metric_learns_a_hidden_subspace():
    """Features = 2 signal dims + 10 loud noise dims: the metric learns to ignore the noise."""
    x, q, c, score = _signal_beside_noise(3)
    config = sb.BaselineConfig(metric_steps=300, metric_learning_rate=1e-2, metric_l2=0.0)
    weights, steps = sb.train_linear_metric(x, q[:2000], c[:2000], score[:2000], config)
    before = sb.pair_spearman(x, q[2000:], c[2000:], score[2000:])
    after = sb.pair_spearman(x @ weights, q[2000:], c[2000:], score[2000:])
    assert steps > 0 and after > before + 0.2
    identity, zero_steps = sb.train_linear_metric(x, q, c, score, config, steps=0)
    np.testing.assert_array_equal(identity, np.eye(12))
    assert zero_steps == 0


def test_the_diagonal_stage_weighs_each_feature_and_the_metric_composes_both_stages():
    """Features: 2 signal dims beside 10 loud noise dims. A diagonal W learns to turn the noise
    down (one weight per feature, off-diagonal zero); `train_metric` returns diag(w) @ W."""
    x, q, c, score = _signal_beside_noise(4)
    config = sb.BaselineConfig(metric_steps=100, metric_splits=2, metric_l2=0.0)
    scales, steps = sb.train_linear_metric(x, q[:2000], c[:2000], score[:2000], config, diagonal=True)
    assert steps > 0 and np.count_nonzero(scales - np.diag(np.diag(scales))) == 0
    assert np.abs(np.diag(scales)[2:]).max() < np.abs(np.diag(scales)[:2]).min()  # the noise turned down
    held = (q[2000:], c[2000:], score[2000:])
    assert sb.pair_spearman(x @ scales, *held) > sb.pair_spearman(x, *held) + 0.2

    metric, chosen = sb.train_metric(x, q[:2000], c[:2000], score[:2000], config)
    assert set(chosen) == {"metric_diagonal_steps", "metric_steps"} and chosen["metric_diagonal_steps"] == steps
    full, _ = sb.train_linear_metric(x @ scales, q[:2000], c[:2000], score[:2000], config, steps=chosen["metric_steps"])
    np.testing.assert_allclose(metric, scales @ full, atol=1e-6)
    plain, off = sb.train_metric(x, q[:2000], c[:2000], score[:2000],
                                 dataclasses.replace(config, metric_diagonal=False))
    assert off["metric_diagonal_steps"] == 0
    np.testing.assert_allclose(plain, sb.train_linear_metric(x, q[:2000], c[:2000], score[:2000], config,
                                                            steps=off["metric_steps"])[0], atol=1e-6)


@pytest.mark.parametrize("splits", [1, 3, 5])
def test_held_out_parts_are_disjoint_seeded_and_cover_the_pairs(splits):
    parts = sb.held_out_parts(1000, splits, seed=7)
    assert len(parts) == splits and all(part.dtype == bool and part.shape == (1000,) for part in parts)
    if splits == 1:
        assert 150 < parts[0].sum() < 250  # one random 20%
    else:
        np.testing.assert_array_equal(np.sum(parts, axis=0), np.ones(1000))  # each pair held out once
        assert {int(part.sum()) for part in parts} <= {1000 // splits, 1000 // splits + 1}
    again = sb.held_out_parts(1000, splits, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert not np.array_equal(parts[0], sb.held_out_parts(1000, splits, seed=8)[0])


def test_metric_steps_follow_the_mean_held_out_curve_not_one_split(monkeypatch):
    """One held-out part that happens to peak at 320 steps must not decide when the others say the
    metric only hurts (what one 20% split did on the continuous world: 320 steps, -0.03 on a fold)."""
    curves = iter([
        [0.70, 0.69, 0.72],  # a lucky part: peaks at the last step
        [0.72, 0.69, 0.68], [0.71, 0.68, 0.67], [0.73, 0.70, 0.70], [0.72, 0.69, 0.69]])
    calls = []

    def fake_fit(tf, keras, x, q, c, s, config, steps, evaluate=None, diagonal=False):
        calls.append((len(s), steps, evaluate is not None))
        if evaluate is None:
            return np.eye(x.shape[1]), np.zeros((0, 2))
        return None, np.array(list(zip([0, 160, 320], next(curves))), dtype=float)

    monkeypatch.setattr(sb, "_fit_metric", fake_fit)
    x, q, c, s = np.eye(4), np.zeros(100, int), np.ones(100, int), np.linspace(0, 1, 100)
    _, steps = sb.train_linear_metric(x, q, c, s, sb.BaselineConfig(metric_splits=5, metric_steps=320))
    assert steps == 0
    assert [held for _, _, held in calls] == [True] * 5 + [False]  # five held-out curves, then all pairs
    assert all(count == 80 for count, _, held in calls if held)  # each fit leaves one fifth out
    assert calls[-1] == (100, 0, False)

    curves = iter([[0.70, 0.69, 0.72]])
    calls.clear()
    _, one_split = sb.train_linear_metric(x, q, c, s, sb.BaselineConfig(metric_splits=1, metric_steps=320))
    assert one_split == 320 and len(calls) == 2


def test_linear_metric_leaves_the_zero_padding_alone():
    """The baselines pad each part to a fixed width with zero columns; W's rows for them stay rows of
    I (they get no gradient) while the columns in use are trained, and the padding does not change
    what those learn."""
    rng = np.random.default_rng(5)
    n = 300
    used = rng.normal(size=(n, 4))
    x = np.zeros((n, 10))
    x[:, [0, 1, 6, 7]] = used
    q, c = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
    score = np.sum(used[q, :2] * used[c, :2], 1)
    config = sb.BaselineConfig(metric_steps=100, metric_learning_rate=1e-2)
    weights, _ = sb.train_linear_metric(x, q, c, score, config, steps=100)
    np.testing.assert_array_equal(weights[[2, 3, 4, 5, 8, 9]], np.eye(10)[[2, 3, 4, 5, 8, 9]])
    assert np.abs(weights[[0, 1, 6, 7]] - np.eye(10)[[0, 1, 6, 7]]).max() > 0.05
    shuffled = np.zeros((n, 10))
    shuffled[:, [2, 3, 8, 9]] = used  # the same columns in use, the padding elsewhere
    moved, _ = sb.train_linear_metric(shuffled, q, c, score, config, steps=100)
    np.testing.assert_allclose(moved[np.ix_([2, 3, 8, 9], [2, 3, 8, 9])], weights[np.ix_([0, 1, 6, 7], [0, 1, 6, 7])],
                               atol=1e-4)


def test_metric_splits_must_be_positive():
    with pytest.raises(ValueError, match="metric_splits must be >= 1"):
        sb.BaselineConfig(metric_splits=0)


def test_cli_writes_per_fold_baselines_scored_by_ensemble_final(synthetic_data, folds_dir, tmp_path, capsys):
    out = tmp_path / "baselines"
    assert cli.main(["--data", str(synthetic_data), "--folds-dir", str(folds_dir), "--out", str(out),
                     "--folds", "0", "1", "--quiet"]) == 0
    choices = json.loads((out / "choices.json").read_text())
    assert sorted(choices["folds"]) == ["0", "1"]
    assert choices["config"]["frame_power"] == 0.5  # the signed square root, as the robust recipe
    assert choices["config"]["frame_spaces"] == list(sb.FRAME_SPACES)  # auto: chosen per fold
    for chosen in choices["folds"].values():  # the first space unless another ranks the pairs better by 0.01
        scores = {space: chosen[f"frame_{space}_score"] for space in sb.FRAME_SPACES}
        best = max(scores, key=scores.get)
        assert chosen["frame_space"] == (best if scores[best] > scores[sb.FRAME_SPACES[0]] + 0.01 else sb.FRAME_SPACES[0])
    printed = capsys.readouterr().out
    assert f"frame space: fold 0 {choices['folds']['0']['frame_space']}, fold 1" in printed
    for name in sb.BASELINES:
        for fold in (0, 1):
            assert (out / name / f"fold_{fold:02d}" / "val.npz").is_file()
            assert (out / name / f"fold_{fold:02d}" / "test.npz").is_file()
    assert not (out / "combined" / "fold_02").exists()

    from ensemble_final import fold_baseline_rows
    from infer.embeddings_io import load_embedding_set
    from infer.evaluate import pairs_by_fold

    # the baseline's own val files stand in for a model's (same pairs, same order)
    reference = {f: load_embedding_set(out / "mean_frame" / f"fold_{f:02d}" / "val.npz") for f in (0, 1)}
    oof_pairs, pair_folds = pairs_by_fold(reference)
    rows = {row.name: row for row in fold_baseline_rows(str(out), reference, oof_pairs, pair_folds)}
    assert set(rows) == {f"baseline: {name}" for name in sb.BASELINES}
    for row in rows.values():
        assert row.num_folds == 2 and -1 <= row.oof_spearman <= 1
    # the tiny world hides its frame signal under a shared background: whitening must help
    assert rows["baseline: whitened_frame"].oof_spearman > rows["baseline: mean_frame"].oof_spearman

    reference3 = {**reference, 2: reference[0]}
    with pytest.raises(Exception, match=r"no fold\(s\) \[2\]"):
        fold_baseline_rows(str(out), reference3, oof_pairs, pair_folds)


def test_cli_refuses_folds_of_another_label_file(synthetic_data, folds_dir, tmp_path, capsys):
    data = tmp_path / "data"
    os.makedirs(data / "pairwise")
    for name in os.listdir(synthetic_data / "pairwise"):
        if name.endswith(".tfrecords"):
            os.symlink(synthetic_data / "pairwise" / name, data / "pairwise" / name)
    lines = (synthetic_data / "pairwise" / "label.tsv").read_text().splitlines()
    (data / "pairwise" / "label.tsv").write_text("\n".join(lines[:-5]) + "\n")
    assert cli.main(["--data", str(data), "--folds-dir", str(folds_dir), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "written from another label file" in capsys.readouterr().err


def test_cli_fixes_the_frame_space_and_notes_folds_that_differ(synthetic_data, folds_dir, tmp_path, capsys):
    out = tmp_path / "covariance"
    assert cli.main(["--data", str(synthetic_data), "--folds-dir", str(folds_dir), "--out", str(out),
                     "--folds", "0", "--frame-space", "covariance", "--quiet"]) == 0
    choices = json.loads((out / "choices.json").read_text())
    assert choices["config"]["frame_spaces"] == ["covariance"]
    assert choices["folds"]["0"]["frame_space"] == "covariance" and "frame_covariance_score" not in choices["folds"]["0"]
    assert "note:" not in capsys.readouterr().out
    lines = cli.frame_space_lines({"folds": {"0": {"frame_space": "covariance"}, "1": {"frame_space": "standardised"}}})
    assert lines[0] == "frame space: fold 0 covariance, fold 1 standardised"
    assert "mixes two frame bases" in lines[1] and "--frame-space" in lines[1]
    with pytest.raises(SystemExit):
        cli.main(["--data", "d", "--folds-dir", "f", "--out", "o", "--frame-space", "correlation"])
    assert "invalid choice: 'correlation'" in capsys.readouterr().err


def test_every_fold_gives_the_same_width(synthetic_data, folds_dir, tmp_path):
    """Fold averaging of test embeddings needs one width per baseline whatever each fold chose."""
    from infer.embeddings_io import load_embedding_set

    out = tmp_path / "b"
    config = sb.BaselineConfig(frame_components=(2, 64), text_components=(2, 16), metric_steps=20)
    cli.write_strong_baselines(str(synthetic_data), str(folds_dir), str(out), folds=[0, 1, 2], config=config,
                               progress=False)
    for name in sb.BASELINES:
        widths = {load_embedding_set(out / name / f"fold_{f:02d}" / "test.npz").dim for f in range(3)}
        assert len(widths) == 1, (name, widths)


def test_summarise_takes_the_signed_power_of_every_frame_value(synthetic_data, capsys):
    from tfrecord_tools import schema
    from tfrecord_tools.reader import read_raw_videos, sample_frame_indices

    path = sorted((synthetic_data / "pairwise").glob("*.tfrecords"))[0]
    video = next(iter(read_raw_videos(str(path), schema.RecordKind.PAIRWISE)))
    frames = np.asarray(video["frames"], np.float64)[sample_frame_indices(len(video["frames"]))]
    assert (frames < 0).any()  # the sign matters
    raw, powered = (next(cli.summarise(str(path), schema.RecordKind.PAIRWISE, False, frame_power=p)) for p in (1, 0.5))
    np.testing.assert_allclose(raw["mean_frame"], frames.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(powered["mean_frame"], (np.sign(frames) * np.sqrt(np.abs(frames))).mean(0),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(SystemExit):
        cli.main(["--data", "d", "--folds-dir", "f", "--out", "o", "--frame-power", "0"])
    assert "expected a number in (0, 1], got '0'" in capsys.readouterr().err


def test_without_test_videos_the_test_set_changes_nothing_the_pairs_get(synthetic_data, folds_dir, tmp_path):
    """--without-test-videos: the statistics are fitted on the pointwise and pair videos only, so the
    validation pairs' embeddings are the same with or without a test set beside them (byte for byte),
    and the test videos are still embedded; by default the test videos join the fits and move them."""
    from infer.embeddings_io import load_embedding_set
    from infer.cli import baselines_parser

    no_test = tmp_path / "no_test"  # the same data without test_a/
    no_test.mkdir()
    for name in ("pairwise", "pointwise"):
        os.symlink(synthetic_data / name, no_test / name)
    small = dict(frame_components=(2, 64), text_components=(2, 16), metric_steps=20)
    outputs = {}
    for label, data, fit_test in (("inductive", synthetic_data, False), ("inductive_no_test", no_test, False),
                                  ("transductive", synthetic_data, True)):
        outputs[label] = tmp_path / label
        cli.write_strong_baselines(str(data), str(folds_dir), str(outputs[label]), folds=[0],
                                   config=sb.BaselineConfig(fit_test_videos=fit_test, **small), progress=False)
    assert json.loads((outputs["inductive"] / "choices.json").read_text())["config"]["fit_test_videos"] is False
    assert not (outputs["inductive_no_test"] / "combined" / "fold_00" / "test.npz").exists()
    for name in ("centred_frame", "whitened_frame", "title_lsa", "combined", "linear_metric"):
        val = {label: load_embedding_set(out / name / "fold_00" / "val.npz") for label, out in outputs.items()}
        np.testing.assert_array_equal(val["inductive"].embeddings, val["inductive_no_test"].embeddings)
        assert not np.allclose(val["inductive"].embeddings, val["transductive"].embeddings), name
        test = load_embedding_set(outputs["inductive"] / name / "fold_00" / "test.npz")
        assert len(test.ids) > 0 and np.isfinite(test.embeddings).all()
    assert baselines_parser().parse_args(["--data", "d", "--folds-dir", "f", "--out", "o",
                                          "--without-test-videos"]).without_test_videos is True
    assert baselines_parser().parse_args(["--data", "d", "--folds-dir", "f", "--out", "o"]).without_test_videos is False


def test_cli_pools_the_frames_by_idf_when_asked(synthetic_data, folds_dir, tmp_path, capsys):
    from infer.embeddings_io import load_embedding_set

    outputs = {}
    for words in (0, 8):
        outputs[words] = tmp_path / f"words_{words}"
        assert cli.main(["--data", str(synthetic_data), "--folds-dir", str(folds_dir), "--out", str(outputs[words]),
                         "--folds", "0", "--frame-words", str(words), "--quiet"]) == 0
    config = json.loads((outputs[8] / "choices.json").read_text())["config"]
    assert (config["frame_words"], config["frame_words_fits"]) == (8, 4)  # four sets of words by default
    plain, pooled = (load_embedding_set(outputs[w] / "centred_frame" / "fold_00" / "val.npz") for w in (0, 8))
    assert list(plain.ids) == list(pooled.ids) and plain.embeddings.shape == pooled.embeddings.shape
    assert not np.allclose(plain.embeddings, pooled.embeddings, atol=1e-3)  # another mean frame
    with pytest.raises(SystemExit):
        cli.main(["--data", "d", "--folds-dir", "f", "--out", "o", "--frame-words", "1"])
    assert "expected 0 or an integer >= 2, got '1'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="frame_words must be 0"):
        sb.BaselineConfig(frame_words=-2)
    with pytest.raises(SystemExit):
        cli.main(["--data", "d", "--folds-dir", "f", "--out", "o", "--frame-words", "8", "--frame-words-fits", "0"])
    assert "expected an integer >= 1, got '0'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="frame_words_fits must be >= 1"):
        sb.BaselineConfig(frame_words=8, frame_words_fits=0)


def test_the_titles_rare_words_sit_beside_the_metric_with_a_weight_the_training_pairs_choose():
    table, labels = _hidden_signal_table()
    rng = np.random.default_rng(3)
    n = len(table.ids)
    subject = rng.integers(60, size=n)  # what a title's rare words name, beside the hidden signal
    for i in range(0, len(labels.score), 2):  # half the pairs share a subject, and score higher for it
        labels.candidate[i] = table.ids[rng.choice(np.flatnonzero(subject == subject[table.rows([labels.query[i]])[0]]))]
    q, c = table.rows(labels.query.tolist()), table.rows(labels.candidate.tolist())
    labels = Labels("<test>", labels.query, labels.candidate, labels.score + (subject[q] == subject[c]).astype(np.float32))
    titles = [f"word{s} filler{i % 7} other{i % 5}" for i, s in enumerate(subject)]
    table.title_rare = sb.title_rare_words(titles, titles, 16, 0.05, seed=0)
    assert table.title_rare.shape == (n, 16)
    config = sb.BaselineConfig(frame_components=(2, 4, 8, 16), text_components=(2, 4), metric_steps=100)
    train = Labels("<train>", labels.query[:600], labels.candidate[:600], labels.score[:600])
    result = sb.fold_baselines(table, train, config)
    weight = result.choices["rare_words_weight"]
    assert weight > 0
    embedding = result.embeddings["linear_metric"]
    assert embedding.shape[1] == result.metric.shape[1] + 16
    np.testing.assert_allclose(embedding[:, -16:], weight * table.title_rare)  # beside the unit-length metric
    np.testing.assert_allclose(np.linalg.norm(embedding[:, :-16], axis=1), 1.0, atol=1e-9)
    table.title_rare = None
    plain = sb.fold_baselines(table, train, config)
    held = (table.rows(labels.query[600:].tolist()), table.rows(labels.candidate[600:].tolist()), labels.score[600:])
    # held-out pairs: the rare words add what the subject adds to the scores
    assert (sb.pair_spearman(embedding, *held) > sb.pair_spearman(plain.embeddings["linear_metric"], *held) + 0.02)
    assert "rare_words_weight" not in plain.choices
    # fillers in every title are not rare: titles sharing only those have no rare-word overlap
    fillers = sb.title_rare_words(["filler1 other2"] * 50, ["filler1 other2", "filler1"], 8, 0.05, seed=0)
    assert not fillers.any()


def test_cli_reads_the_titles_rare_words_when_asked(synthetic_data, folds_dir, tmp_path, capsys):
    out = tmp_path / "rare"
    assert cli.main(["--data", str(synthetic_data), "--folds-dir", str(folds_dir), "--out", str(out),
                     "--folds", "0", "--rare-words", "8", "--rare-words-max-df", "0.5", "--quiet"]) == 0
    choices = json.loads((out / "choices.json").read_text())
    assert (choices["config"]["rare_words"], choices["config"]["rare_words_max_df"]) == (8, 0.5)
    assert choices["folds"]["0"]["rare_words_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    with pytest.raises(SystemExit):
        cli.main(["--data", "d", "--folds-dir", "f", "--out", "o", "--rare-words", "-1"])
    assert "expected an integer >= 0, got '-1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--data", "d", "--folds-dir", "f", "--out", "o", "--rare-words", "8", "--rare-words-max-df", "0"])
    assert "expected a number in (0, 1], got '0'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="rare_words_max_df must be in"):
        sb.BaselineConfig(rare_words=8, rare_words_max_df=2.0)
