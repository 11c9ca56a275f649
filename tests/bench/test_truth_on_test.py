"""truth_on_test: a run's fold averages and submission scored on the test pairs against the synthetic truth."""
import json
import shutil
import zipfile

import numpy as np
import pytest
import scipy.stats

from bench import truth_on_test
from ensemble.fold_average import average_folds
from infer.embeddings_io import EmbeddingSet, save_embeddings
from tfrecord_tools import synth

DRAWS = 200


def _save(path, ids, vectors, rng):
    """An embedding file with its rows in a shuffled order (the tool must map rows by id)."""
    order = rng.permutation(len(ids))
    save_embeddings(path, np.asarray(ids)[order], np.asarray(vectors, dtype=np.float32)[order])


def _write_model(directory, ids, fold_vectors, rng, average=True):
    """A model's fold models and, as ensemble_final.py writes it, its fold average avg/test.npz."""
    for fold, vectors in enumerate(fold_vectors):
        _save(directory / f"fold_{fold:02d}" / "test.npz", ids, vectors, rng)
    if average:
        mean = average_folds([EmbeddingSet.create(ids, v) for v in fold_vectors]).embeddings
        _save(directory / "avg" / "test.npz", ids, mean, rng)


def write_floor_and_submission(run, ids, latents, rng, floor_noise, submission_noise):
    """``baseline:linear_metric`` (two fold models) and ``result.zip``: the latents plus noise of these sizes."""
    dim = latents.shape[1]
    for fold in range(2):
        _save(run / "baselines" / "linear_metric" / f"fold_{fold:02d}" / "test.npz", ids,
              latents + rng.normal(0, floor_noise / np.sqrt(dim), latents.shape), rng)
    submitted = latents + rng.normal(0, submission_noise / np.sqrt(dim), latents.shape)
    with zipfile.ZipFile(run / "result.zip", "w") as archive:
        archive.writestr("result.json", json.dumps({i: v.tolist() for i, v in zip(ids, submitted)}))


@pytest.fixture(scope="module")
def truth():
    ids, latents = synth.true_latents("tiny", seed=0)["test"]
    return list(ids), latents


@pytest.fixture(scope="module")
def run(tmp_path_factory, truth):
    """A fake run: the true latents (oracle), a model whose fold 1 is a rotation of its fold 0, pure noise,
    a noisier baseline and a submission (result.zip) of slightly noisy latents."""
    ids, latents = truth
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("truth_on_test") / "run"
    dim = latents.shape[1]
    _write_model(out / "embeddings" / "oracle", ids, [latents, latents], rng)
    noisy = latents + rng.normal(0, 0.5 / np.sqrt(dim), latents.shape)
    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    _write_model(out / "embeddings" / "rotated", ids, [noisy, noisy @ rotation], rng)
    _write_model(out / "embeddings" / "noise", ids, [rng.normal(size=latents.shape) for _ in range(2)], rng)
    write_floor_and_submission(out, ids, latents, rng, floor_noise=0.8, submission_noise=0.3)
    return out


@pytest.fixture(scope="module")
def report(synthetic_data, run):
    return truth_on_test.evaluate(str(synthetic_data), str(run), pairs_per_bin=100, draws=DRAWS)


def test_the_sample_follows_the_labelled_pairs_and_the_oracle_scores_like_the_truth(report, truth):
    assert list(report["systems"]) == ["noise", "oracle", "rotated", "baseline:linear_metric", "submission"]
    assert report["test_videos"] == report["videos_used"] == len(truth[0]) and not report["subset"]
    assert report["all_pairs"] == len(truth[0]) * (len(truth[0]) - 1) // 2
    sample = report["sample"]
    assert sum(sample["per_bin"]) == sample["pairs"] and max(sample["per_bin"]) <= 100
    assert sample["label_noise"] == synth.PRESETS["tiny"].model.label_noise
    assert 0.5 < sample["oracle"] < 1
    oracle = report["systems"]["oracle"]
    # the true latents: exact on all pairs, and on the sample as good as the true similarity is
    for part in ("mean_fold", "fold_average"):
        assert oracle[part]["truth"] == pytest.approx(1.0, abs=1e-6)
        assert oracle[part]["labels"] == pytest.approx(sample["oracle"], abs=1e-6)
    assert oracle["fold_average_source"].endswith("embeddings/oracle/avg/test.npz")
    assert abs(report["systems"]["noise"]["fold_average"]["labels"]) < 0.2


def test_mean_fold_is_blind_to_a_rotated_fold_but_the_fold_average_is_not(report):
    rotated = report["systems"]["rotated"]
    for part in ("labels", "truth"):
        assert rotated["folds"]["1"][part] == pytest.approx(rotated["folds"]["0"][part], abs=1e-4)
        assert rotated["mean_fold"][part] == pytest.approx(rotated["folds"]["0"][part], abs=1e-4)
        assert rotated["fold_average"][part] < rotated["mean_fold"][part] - 0.02
    # a baseline's folds are averaged here (average_folds): mean of two noisy copies beats either copy
    baseline = report["systems"]["baseline:linear_metric"]
    assert baseline["fold_average_source"] == "average_folds of the fold models"
    assert baseline["fold_average"]["truth"] > baseline["mean_fold"]["truth"]
    assert report["systems"]["submission"]["mean_fold"] is None and report["systems"]["submission"]["folds"] == {}


def test_margins_over_the_reference_with_intervals(report):
    systems = report["systems"]
    assert report["reference"] == "baseline:linear_metric" and "vs_reference" not in systems["baseline:linear_metric"]
    reference = systems["baseline:linear_metric"]["fold_average"]["labels"]
    for name in ("noise", "oracle", "rotated", "submission"):
        margin = systems[name]["vs_reference"]
        assert margin["difference"] == pytest.approx(systems[name]["fold_average"]["labels"] - reference)
        assert margin["low"] <= margin["median"] <= margin["high"]
        assert margin["low"] <= margin["difference"] <= margin["high"]
        assert margin["draws"] == DRAWS and margin["level"] == 0.9
    assert systems["oracle"]["vs_reference"]["low"] > 0 and systems["oracle"]["vs_reference"]["share_ahead"] == 1
    assert systems["noise"]["vs_reference"]["high"] < 0 and systems["noise"]["vs_reference"]["share_ahead"] == 0


def test_resampled_spearman_is_exact_with_ties():
    """The bootstrap's Spearman from draw counts equals scipy's on the resampled pairs (average ranks)."""
    rng = np.random.default_rng(3)
    labels = np.round(rng.random(200), 1)  # grid labels: many ties
    cosines = np.round(labels + rng.normal(0, 0.3, 200), 2)
    picks = rng.integers(0, 200, size=(4, 200))
    counts = np.stack([np.bincount(p, minlength=200) for p in picks]).astype(np.float64)
    label_ranks = truth_on_test._resample_ranks(counts, truth_on_test._tie_groups(labels))
    got = truth_on_test._resample_spearman(
        counts, truth_on_test._resample_ranks(counts, truth_on_test._tie_groups(cosines)), label_ranks)
    expected = [scipy.stats.spearmanr(cosines[p], labels[p]).statistic for p in picks]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    same = truth_on_test.bootstrap_differences({"same": cosines}, cosines, labels, draws=20)["same"]
    assert same["difference"] == same["low"] == same["high"] == 0
    with pytest.raises(ValueError, match=r"short: cosines of shape \(3,\) for 200 labelled pairs"):
        truth_on_test.bootstrap_differences({"short": cosines[:3]}, cosines, labels)


def test_the_video_bootstrap_weights_pairs_by_their_videos_draws_and_is_wider():
    """Resampling videos: each pair counts (draws of its first video) x (draws of its second), and the
    Spearman from those counts equals scipy's on the expanded resample. Errors that belong to a video
    (shared by its pairs) make that interval wider than the pairs-only one."""
    rng = np.random.default_rng(5)
    videos = 60
    first, second = np.triu_indices(videos, 1)
    latent = rng.normal(size=(videos, 4))
    truth = np.einsum("ij,ij->i", latent[first], latent[second])
    labels = np.round(truth + rng.normal(0, 0.5, len(truth)), 1)
    video_error = rng.normal(0, 1.0, videos)  # one error per video, shared by all its pairs
    system = truth + video_error[first] + video_error[second]
    reference = truth + rng.normal(0, 1.4, len(truth))
    draws = rng.integers(0, videos, size=(3, videos))
    video_counts = np.stack([np.bincount(d, minlength=videos) for d in draws]).astype(np.float64)
    counts = video_counts[:, first] * video_counts[:, second]
    label_ranks = truth_on_test._resample_ranks(counts, truth_on_test._tie_groups(labels))
    got = truth_on_test._resample_spearman(
        counts, truth_on_test._resample_ranks(counts, truth_on_test._tie_groups(system)), label_ranks)
    for row, value in zip(counts.astype(int), got):
        expanded = np.repeat(np.arange(len(labels)), row)
        assert value == pytest.approx(scipy.stats.spearmanr(system[expanded], labels[expanded]).statistic, abs=1e-12)
    by_videos = truth_on_test.bootstrap_differences({"s": system}, reference, labels, draws=300,
                                                    pair_videos=(first, second))["s"]
    by_pairs = truth_on_test.bootstrap_differences({"s": system}, reference, labels, draws=300)["s"]
    assert by_videos["difference"] == by_pairs["difference"]
    assert by_videos["high"] - by_videos["low"] > 1.5 * (by_pairs["high"] - by_pairs["low"])


def test_main_prints_the_table_and_writes_the_json(synthetic_data, run, report, tmp_path, capsys):
    out = tmp_path / "out" / "truth.json"
    assert truth_on_test.main([str(run), "--data", str(synthetic_data), "--pairs-per-bin", "100",
                               "--draws", str(DRAWS), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("| system | mean fold (labels) | fold average (labels) | fold average (all pairs, truth) | "
            "fold average − baseline:linear_metric [90% interval] |") in printed
    oracle = report["sample"]["oracle"]
    assert f"| oracle | {oracle:.4f} | {oracle:.4f} | 1.0000 | +0." in printed
    assert "| baseline:linear_metric |" in printed and "(reference)" in printed
    assert "| submission | – |" in printed
    assert f"oracle (true similarity vs the drawn labels, same {report['sample']['pairs']} pairs): {oracle:.4f}" \
        in printed
    written = json.loads(out.read_text())
    assert written["systems"] == report["systems"]  # the same computation, floats written exactly
    assert written["sample"]["per_bin"] == report["sample"]["per_bin"]


def test_a_subset_of_the_videos_and_a_chosen_system_list(synthetic_data, run, capsys):
    assert truth_on_test.main([str(run), "--data", str(synthetic_data), "--systems", "oracle", "submission",
                               "--reference", "none", "--max-videos", "40", "--pairs-per-bin", "50"]) == 0
    printed = capsys.readouterr().out
    assert "40 test videos, 780 pairs (a random 40 of the 100 test videos, seed 0: --max-videos)" in printed
    assert "| oracle | " in printed and "| 1.0000 | – |" in printed and "no reference: no intervals" in printed
    assert "baseline:linear_metric" not in printed and "| rotated |" not in printed


def test_baselines_from_another_directory_are_the_reference(synthetic_data, run, truth, report, tmp_path, capsys):
    """--baselines: the floor read from another infer.baselines --out directory (e.g. fitted without the
    test videos), the models and the submission still from the run."""
    ids, latents = truth
    other = tmp_path / "baselines_inductive"
    rng = np.random.default_rng(2)
    for fold in range(2):  # a floor as good as the truth: every margin over it is negative now
        _save(other / "linear_metric" / f"fold_{fold:02d}" / "test.npz", ids, latents, rng)
    assert truth_on_test.main([str(run), "--data", str(synthetic_data), "--systems", "submission", "--baselines",
                               str(other), "--pairs-per-bin", "100", "--draws", str(DRAWS)]) == 0
    printed = capsys.readouterr().out
    assert f"baseline:<name> systems read from {other} (--baselines)" in printed
    oracle = report["sample"]["oracle"]
    assert f"| baseline:linear_metric | {oracle:.4f} | {oracle:.4f} | 1.0000 | (reference) |" in printed
    moved = truth_on_test.evaluate(str(synthetic_data), str(run), ["submission"], pairs_per_bin=100, draws=DRAWS,
                                   baselines=str(other))
    own = report["systems"]["submission"]["vs_reference"]
    assert moved["baselines"] == str(other) and moved["systems"]["submission"]["vs_reference"]["high"] < 0 < own["low"]
    assert moved["systems"]["submission"]["fold_average"] == report["systems"]["submission"]["fold_average"]
    assert truth_on_test.main([str(run), "--data", str(synthetic_data), "--baselines", str(tmp_path / "none")]) == 2
    assert "none: no such baselines directory (python -m infer.baselines --out writes one)" in capsys.readouterr().err


def test_missing_fold_average_and_foreign_ids_are_named(synthetic_data, run, truth, tmp_path, capsys):
    ids, latents = truth
    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    (broken / "embeddings" / "rotated" / "avg" / "test.npz").unlink()
    assert truth_on_test.main([str(broken), "--data", str(synthetic_data)]) == 2
    err = capsys.readouterr().err
    assert "embeddings/rotated/avg/test.npz: no fold-averaged test embeddings (ensemble_final.py writes them" in err

    rng = np.random.default_rng(1)
    _write_model(broken / "embeddings" / "short", ids[1:], [latents[1:]], rng)
    assert truth_on_test.main([str(broken), "--data", str(synthetic_data), "--systems", "short"]) == 2
    err = capsys.readouterr().err
    assert (f"embeddings/short/fold_00/test.npz: 1 of the data set's {len(ids)} test videos have no embedding, "
            f"first {ids[0]!r}") in err
    _write_model(broken / "embeddings" / "foreign", ids[1:] + ["99999999"], [latents], rng)
    with pytest.raises(truth_on_test.DataError, match=r"foreign/fold_00/test.npz: 1 of the data set's"):
        truth_on_test.evaluate(str(synthetic_data), str(broken), ["foreign"], reference=None)
    _write_model(broken / "embeddings" / "extra", ids, [latents], rng)
    extra = broken / "embeddings" / "extra" / "fold_00" / "test.npz"
    save_embeddings(extra, ids + ["99999999"], np.vstack([latents, latents[:1]]).astype(np.float32))
    with pytest.raises(truth_on_test.DataError, match=r"extra/fold_00/test.npz: 1 id\(s\) are not test videos of "
                                                      r"the data set, first '99999999'"):
        truth_on_test.evaluate(str(synthetic_data), str(broken), ["extra"], reference=None)
    with pytest.raises(truth_on_test.DataError, match=r"fold_03/test.npz: no test embeddings of fold 3"):
        truth_on_test.evaluate(str(synthetic_data), str(broken), ["oracle"], reference=None, folds=[0, 3])
    (broken / "result.zip").unlink()
    with pytest.raises(truth_on_test.DataError, match=r"result.zip: no submission"):
        truth_on_test.evaluate(str(synthetic_data), str(broken), ["submission"], reference=None)


def test_sample_coverage_names_the_closest_bins_the_test_videos_could_not_fill():
    """The top bins go short first (few near-duplicates among independent test videos): how many, from which
    true similarity, and how many pairs they hold against those asked."""
    edges = [-0.5, 0.0, 0.5]  # 4 bins
    assert truth_on_test.sample_coverage([10, 10, 10, 10], edges, 10) is None
    coverage = truth_on_test.sample_coverage([10, 10, 4, 0], edges, 10)
    assert coverage == {"short_bins": 2, "closest_short_bins": 2, "closest_share": 0.5, "closest_above": 0.0,
                        "closest_drawn": 4, "closest_asked": 20}
    low_only = truth_on_test.sample_coverage([3, 10, 10, 10], edges, 10)  # a short low bin: not the closest pairs
    assert low_only["short_bins"] == 1 and low_only["closest_short_bins"] == 0
    every = truth_on_test.sample_coverage([1, 2, 3, 4], edges, 10)
    assert every["closest_short_bins"] == 4 and every["closest_above"] is None and every["closest_drawn"] == 10


def test_the_coverage_note_says_which_pairs_are_missing():
    sample = {"bins": 4, "pairs_per_bin": 10, "per_bin": [10, 10, 4, 0], "edges": [-0.5, 0.0, 0.5]}
    first, note = truth_on_test.coverage_note(sample)
    assert first == "2 of the 4 bins hold fewer test pairs than asked (pairs per bin, lowest true similarity first: " \
                    "[10, 10, 4, 0])"
    assert note.startswith("note: the closest pairs are missing: above true similarity 0.000, the labelled pairs' "
                           "top 50%, the sample holds 4 of the 20 pairs asked (the test videos hold few near-duplicates).")
    assert "out-of-fold figures also rank the closest pairs" in note
    low = truth_on_test.coverage_note({**sample, "per_bin": [3, 10, 10, 10]})
    assert low == ["1 of the 4 bins holds fewer test pairs than asked (pairs per bin, lowest true similarity first: "
                   "[3, 10, 10, 10]): the sample is thinner than the labelled pairs where those bins are"]
    assert truth_on_test.coverage_note({**sample, "per_bin": [10, 10, 10, 10]}) == []


def test_the_report_keeps_the_coverage_and_prints_its_lines(report):
    sample = report["sample"]
    assert sample["coverage"] == truth_on_test.sample_coverage(sample["per_bin"], sample["edges"],
                                                               sample["pairs_per_bin"])
    printed = truth_on_test.format_report(report)
    for line in truth_on_test.coverage_note(sample):
        assert line in printed


def test_graph_sample_finds_each_edge_in_pair_order_once():
    rows = np.array([0, 2, 3, 5, 6])  # the test videos used (sorted)
    first, second = np.triu_indices(len(rows), 1)
    edges = (np.array([5, 2, 6, 0, 1, 3]), np.array([2, 5, 0, 3, 2, 3]))  # a repeat, an unused video, a self-pair
    positions = truth_on_test.graph_sample(edges, rows)
    assert [(rows[first[p]], rows[second[p]]) for p in positions] == [(2, 5), (0, 6), (0, 3)]


@pytest.fixture(scope="module")
def graph_data(synthetic_data, tmp_path_factory):
    """The tiny data set's meta, as if it had been generated with --test-graph (the tool reads only the meta)."""
    out = tmp_path_factory.mktemp("graph") / "data"
    out.mkdir()
    meta = json.loads((synthetic_data / "synth_meta.json").read_text())
    (out / "synth_meta.json").write_text(json.dumps({**meta, "test_graph": True}))
    return out


def test_with_a_test_graph_the_labelled_sample_is_its_edges(synthetic_data, graph_data, tmp_path, capsys):
    truth = synth.true_latents("tiny", seed=0, test_graph=True)
    ids, latents = truth["test"]
    queries, candidates = truth["test_edges"]
    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    _write_model(run / "embeddings" / "oracle", ids, [latents, latents], rng)
    write_floor_and_submission(run, ids, latents, rng, floor_noise=0.8, submission_noise=0.3)
    report = truth_on_test.evaluate(str(graph_data), str(run), draws=DRAWS)
    sample = report["sample"]
    assert report["test_graph"] is True and sample["kind"] == "graph" and sample["coverage"] is None
    assert sample["pairs"] == len({(min(q, c), max(q, c)) for q, c in zip(queries, candidates)}) == sample["graph_pairs"]
    edge_similarity = np.einsum("nd,nd->n", latents[queries], latents[candidates])
    assert sample["oracle"] > 0.6 and np.quantile(edge_similarity, 0.95) > 0.85  # near-duplicates are in the sample
    assert report["systems"]["oracle"]["fold_average"]["labels"] == pytest.approx(sample["oracle"], abs=1e-6)
    margin = report["systems"]["oracle"]["vs_reference"]
    assert margin["difference"] > 0 and margin["share_ahead"] > 0.7  # 107 pairs: a wide interval
    printed = truth_on_test.format_report(report)
    assert f"labels drawn for the {sample['pairs']} pairs of the test videos' label graph" in printed
    assert "note:" not in printed
    subset = truth_on_test.evaluate(str(graph_data), str(run), reference=None, max_videos=60)
    assert subset["sample"]["graph_pairs"] == sample["graph_pairs"] > subset["sample"]["pairs"] > 0
    assert f"those of its {sample['graph_pairs']} pairs whose two videos are among those used" in \
        truth_on_test.format_report(subset)
    # bins on request; a graph asked of independent test videos is an error naming the meta
    bins = truth_on_test.evaluate(str(graph_data), str(run), reference=None, pairs_per_bin=50, sample_kind="bins")
    assert bins["sample"]["kind"] == "bins" and sum(bins["sample"]["per_bin"]) == bins["sample"]["pairs"]
    assert truth_on_test.main([str(run), "--data", str(synthetic_data), "--sample", "graph"]) == 2
    err = capsys.readouterr().err
    assert "synth_meta.json" in err and "the test videos were drawn independently, not along a label graph" in err


# ---------------------------------------------------------------------- a stored truth (DATA/test_truth.npz)

STORED_VIDEOS, STORED_DIM = 40, 8


def _monotone_label(similarity):
    """A label that is a strictly increasing function of the true similarity, in [0, 1]."""
    return ((np.asarray(similarity) + 1) / 2) ** 2


@pytest.fixture(scope="module")
def stored_arrays():
    """A foreign generator's truth: 40 test videos, 8-d unit latents, a 60-edge label graph (52 distinct pairs,
    6 repeats of them, either way round, labelled wrongly so that keeping one would show, and 2 self pairs),
    each first edge of a pair labelled by a monotone function of its true similarity."""
    rng = np.random.default_rng(11)
    latents = rng.normal(size=(STORED_VIDEOS, STORED_DIM))
    latents /= np.linalg.norm(latents, axis=1, keepdims=True)
    upper = np.stack(np.triu_indices(STORED_VIDEOS, 1), axis=1)
    pairs = upper[rng.choice(len(upper), 52, replace=False)]
    pairs = np.where(rng.random((52, 1)) < 0.5, pairs, pairs[:, ::-1])  # either way round
    repeats = pairs[rng.choice(52, 6, replace=False)]
    repeats[:4] = repeats[:4, ::-1]
    edges = np.concatenate([pairs, repeats, [[3, 3], [17, 17]]])
    edges = edges[np.concatenate([rng.permutation(52), 52 + rng.permutation(8)])]  # repeats after their first edge
    edges[[10, 55]] = edges[[55, 10]]  # a self pair among the first edges, a first edge among the last
    first, second = edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)
    similarity = np.einsum("nd,nd->n", latents[first], latents[second])
    labels, seen = np.empty(len(first)), set()
    for edge, (a, b) in enumerate(zip(first, second)):
        pair = (min(a, b), max(a, b))
        labels[edge] = 0.5 if a == b else (1 - _monotone_label(similarity[edge]) if pair in seen
                                           else _monotone_label(similarity[edge]))
        seen.add(pair)
    return {"ids": np.array([str(10_000 + i) for i in range(STORED_VIDEOS)]), "latents": latents,
            "edge_first": first, "edge_second": second, "edge_labels": labels,
            "labelled_similarity": rng.uniform(-0.2, 1, 300),
            "meta": np.array(json.dumps({"generator": "foreign_world", "seed": 7}))}


def _write_stored(directory, arrays, **changes):
    """``directory/test_truth.npz`` of ``arrays`` with ``changes`` (None: the key left out)."""
    directory.mkdir(parents=True, exist_ok=True)
    merged = {key: value for key, value in {**arrays, **changes}.items() if value is not None}
    np.savez(directory / truth_on_test.STORED_TRUTH, **merged)
    return directory


@pytest.fixture(scope="module")
def stored_data(tmp_path_factory, stored_arrays):
    """A data directory holding only the stored truth, and a synth_meta.json it would fail on if it were read."""
    out = _write_stored(tmp_path_factory.mktemp("stored") / "data", stored_arrays)
    (out / "synth_meta.json").write_text("{}")
    return out


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory, stored_arrays):
    """The true latents (oracle), pure noise, a noisy floor and a submission, as infer.embeddings_io writes them."""
    ids, latents = stored_arrays["ids"].tolist(), stored_arrays["latents"]
    rng = np.random.default_rng(4)
    out = tmp_path_factory.mktemp("stored_run") / "run"
    _write_model(out / "embeddings" / "oracle", ids, [latents, latents], rng)
    _write_model(out / "embeddings" / "noise", ids, [rng.normal(size=latents.shape) for _ in range(2)], rng)
    write_floor_and_submission(out, ids, latents, rng, floor_noise=1.5, submission_noise=0.2)
    return out


def _kept_edges(arrays, rows):
    """The edges a graph sample over ``rows`` keeps, by hand: both videos used, no self pair, a pair's first edge."""
    used, seen, kept = set(rows.tolist()), set(), []
    for edge, (a, b) in enumerate(zip(arrays["edge_first"].tolist(), arrays["edge_second"].tolist())):
        pair = (min(a, b), max(a, b))
        if a in used and b in used and a != b and pair not in seen:
            kept.append(edge)
        seen.add(pair)
    return kept


def test_a_stored_truth_is_read_before_the_meta(stored_data, stored_arrays):
    truth = truth_on_test.read_truth(str(stored_data))
    assert truth.stored and truth.label_noise is None
    assert truth.ids == stored_arrays["ids"].tolist() and all(isinstance(i, str) for i in truth.ids)
    assert truth.latents.dtype == np.float64 and np.array_equal(truth.latents, stored_arrays["latents"])
    assert np.array_equal(truth.edges[0], stored_arrays["edge_first"])
    assert np.array_equal(truth.edges[1], stored_arrays["edge_second"])
    assert np.array_equal(truth.edge_labels, stored_arrays["edge_labels"])
    assert np.array_equal(truth.labelled_similarity, stored_arrays["labelled_similarity"])
    assert truth.meta == {"generator": "foreign_world", "seed": 7, "test_graph": True}


def test_graph_sample_edges_names_the_edge_behind_each_position():
    rows = np.array([0, 2, 3, 5, 6])
    edges = (np.array([5, 2, 6, 0, 1, 3]), np.array([2, 5, 0, 3, 2, 3]))  # a repeat, an unused video, a self-pair
    positions, kept = truth_on_test.graph_sample_edges(edges, rows)
    assert np.array_equal(positions, truth_on_test.graph_sample(edges, rows)) and kept.tolist() == [0, 2, 3]


@pytest.mark.parametrize("max_videos", [STORED_VIDEOS, 25])
def test_the_stored_labels_follow_the_edges_the_sample_keeps(stored_data, stored_arrays, max_videos):
    """Each sampled pair carries the stored label of the very edge it came from: repeats, self pairs and
    (on a subset) edges to unused videos are dropped, and the labels stay aligned with the pairs kept."""
    drawn = truth_on_test.labelled_sample(str(stored_data), max_videos=max_videos, seed=3)
    assert drawn.graph and len(drawn.rows) == max_videos
    kept = _kept_edges(stored_arrays, drawn.rows)
    assert drawn.graph_edges.tolist() == kept and len(drawn.sample) == len(drawn.labels) == len(kept)
    assert len(kept) < (52 if max_videos < STORED_VIDEOS else 53) and len(kept) >= 10
    if max_videos == STORED_VIDEOS:
        assert len(kept) == 52  # every distinct pair, no repeat, no self pair
    first, second = np.triu_indices(len(drawn.rows), 1)
    for position, label, edge in zip(drawn.sample, drawn.labels, kept):
        a, b = stored_arrays["edge_first"][edge], stored_arrays["edge_second"][edge]
        assert (drawn.rows[first[position]], drawn.rows[second[position]]) == (min(a, b), max(a, b))
        assert label == stored_arrays["edge_labels"][edge]
        similarity = stored_arrays["latents"][a] @ stored_arrays["latents"][b]
        assert label == pytest.approx(_monotone_label(similarity))  # a first edge's label, never a repeat's
    assert drawn.scorer.oracle() == pytest.approx(1.0, abs=1e-12)
    auto = truth_on_test.labelled_sample(str(stored_data), max_videos=max_videos, seed=3, sample_kind="auto")
    assert np.array_equal(auto.sample, drawn.sample) and np.array_equal(auto.labels, drawn.labels)


def test_a_stored_truth_scores_the_true_latents_as_the_oracle(stored_data, stored_run, stored_arrays, tmp_path,
                                                            capsys):
    report = truth_on_test.evaluate(str(stored_data), str(stored_run), draws=DRAWS)
    sample = report["sample"]
    assert report["generator"] == "foreign_world" and report["seed"] == 7 and report["test_graph"] is True
    assert report["truth_file"] == str(stored_data / truth_on_test.STORED_TRUTH)
    assert sample["kind"] == "graph" and sample["labels"] == "stored" and sample["label_noise"] is None
    assert sample["pairs"] == 52 and sample["graph_pairs"] == 60 and sample["oracle"] == pytest.approx(1.0)
    oracle = report["systems"]["oracle"]
    for part in ("mean_fold", "fold_average"):
        assert oracle[part]["labels"] == pytest.approx(1.0, abs=1e-9)
        assert oracle[part]["truth"] == pytest.approx(1.0, abs=1e-6)
    assert abs(report["systems"]["noise"]["fold_average"]["labels"]) < 0.5
    assert oracle["vs_reference"]["low"] > 0 and report["systems"]["noise"]["vs_reference"]["high"] < 0

    out = tmp_path / "stored.json"
    assert truth_on_test.main([str(stored_run), "--data", str(stored_data), "--draws", str(DRAWS),
                               "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (f"Test pairs of {stored_data} (generator foreign_world, seed 7: {stored_data / 'test_truth.npz'}), "
            f"run {stored_run}: 40 test videos, 780 pairs") in printed
    assert "the stored labels of the 52 pairs of the test videos' label graph" in printed
    assert "oracle (true similarity vs the stored labels, same 52 pairs): 1.0000" in printed
    assert "| oracle | 1.0000 | 1.0000 | 1.0000 | +" in printed

    def no_constants(name):
        raise AssertionError(f"{name} in the JSON report")

    written = json.loads(out.read_text(), parse_constant=no_constants)  # valid JSON: no NaN
    assert written["sample"]["label_noise"] is None and written["systems"] == report["systems"]
    subset = truth_on_test.evaluate(str(stored_data), str(stored_run), ["oracle"], reference=None, max_videos=25)
    assert subset["subset"] and subset["sample"]["pairs"] < subset["sample"]["graph_pairs"]
    assert subset["systems"]["oracle"]["fold_average"]["labels"] == pytest.approx(1.0, abs=1e-9)
    assert "those of its 60 pairs whose two videos are among those used" in truth_on_test.format_report(subset)


def test_a_stored_truth_has_no_bins_sample(stored_data, stored_run, capsys):
    with pytest.raises(truth_on_test.DataError, match=r"test_truth.npz: the stored truth has no label model .* "
                                                      r"use --sample graph \(or auto\)"):
        truth_on_test.labelled_sample(str(stored_data), sample_kind="bins")
    assert truth_on_test.main([str(stored_run), "--data", str(stored_data), "--sample", "bins"]) == 2
    assert "use --sample graph (or auto)" in capsys.readouterr().err


def test_without_either_truth_file_both_are_named(tmp_path):
    with pytest.raises(truth_on_test.DataError, match=r"synth_meta.json: not found, nor test_truth.npz"):
        truth_on_test.read_truth(str(tmp_path))


@pytest.mark.parametrize("changes, field, problem", [
    ({"edge_labels": None}, "edge_labels", "missing"),
    ({"meta": None, "ids": None}, "ids", r"missing \(2 key\(s\) missing"),
    ({"edge_second": np.where(np.arange(60) == 7, STORED_VIDEOS, 1)}, "edge_second",
     "1 edge\\(s\\) out of range, first edge 7: row 40 of 40 ids"),
    ({"edge_first": -np.ones(60, dtype=np.int64)}, "edge_first", "60 edge\\(s\\) out of range"),
    ({"edge_first": np.zeros(60)}, "edge_first", "expected a 1-D int array"),
    ({"edge_labels": np.ones(59)}, "edge_labels", "59 entries for the 60 edges"),
    ({"edge_labels": np.where(np.arange(60) == 2, np.nan, 0.5)}, "edge_labels", "1 row\\(s\\) not finite, first row 2"),
    ({"latents": np.ones((39, STORED_DIM)) / np.sqrt(STORED_DIM)}, "latents", r"shape \(39, 8\), expected \(40, d"),
    ({"latents": np.full((STORED_VIDEOS, STORED_DIM), np.inf)}, "latents", "40 row\\(s\\) not finite"),
    ({"latents": np.ones((STORED_VIDEOS, STORED_DIM))}, "latents",
     "40 row\\(s\\) not of unit norm, first row 0 \\(norm 2.828"),
    ({"ids": np.arange(STORED_VIDEOS)}, "ids", "expected a 1-D array of str ids"),
    ({"ids": np.array(["1"] * STORED_VIDEOS)}, "ids", "1 duplicated id"),
    ({"labelled_similarity": np.ones((2, 2))}, "labelled_similarity", "expected a 1-D float array"),
    ({"meta": np.array("{")}, "meta", "not JSON"),
    ({"meta": np.array(json.dumps({"seed": 1}))}, "meta", r"lacks \['generator'\]"),
    ({"meta": np.array(["{}"])}, "meta", "expected a 0-d str array"),
])
def test_a_malformed_stored_truth_names_the_field(tmp_path, stored_arrays, changes, field, problem):
    data = _write_stored(tmp_path / "data", stored_arrays, **changes)
    with pytest.raises(truth_on_test.DataError, match=rf"test_truth.npz, {field}: {problem}"):
        truth_on_test.read_truth(str(data))


def test_an_unreadable_stored_truth_is_named(tmp_path):
    (tmp_path / truth_on_test.STORED_TRUTH).write_text("not a zip")
    with pytest.raises(truth_on_test.DataError, match=r"test_truth.npz: not a readable .npz"):
        truth_on_test.read_truth(str(tmp_path))
