"""Synthetic challenge data: layout, determinism, real-like statistics and the ground truth."""
import dataclasses
import glob
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from tfrecord_tools import schema, synth, synth_stats
from tfrecord_tools.labels import read_labels

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _records(path):
    """Raw records of a TFRecord file as feature maps (plain tf.train.Example parsing)."""
    return [tf.train.Example.FromString(raw.numpy()).features.feature for raw in tf.data.TFRecordDataset(path)]


def _frames(feature) -> np.ndarray:
    return np.stack([np.frombuffer(b, dtype="<f2") for b in feature[schema.KEY_FRAMES].bytes_list.value])


def _text(feature, key) -> str:
    return feature[key].bytes_list.value[0].decode("utf-8")


def _digests(root) -> dict[str, str]:
    out = {}
    for path in sorted(pathlib.Path(root).rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = hashlib.md5(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_tiny")
    meta = synth.generate(out, "tiny", seed=0, progress=False)
    pointwise = [r for p in sorted(glob.glob(str(out / "pointwise" / "*.tfrecords"))) for r in _records(p)]
    pairwise = _records(out / "pairwise" / "pairwise.tfrecords")
    test = _records(out / "test_a" / "test_a.tfrecords")
    return {"dir": out, "meta": meta, "pointwise": pointwise, "pairwise": pairwise, "test": test}


def test_layout_files_and_counts_match_meta(tiny):
    out, meta = tiny["dir"], tiny["meta"]
    preset = synth.PRESETS["tiny"]
    for name in ("pointwise/pretrain_0.tfrecords", "pointwise/pretrain_1.tfrecords",
                 "pairwise/pairwise.tfrecords", "pairwise/label.tsv", "test_a/test_a.tfrecords",
                 "tag_list.txt", "synth_meta.json"):
        assert (out / name).is_file(), name
    assert sorted(os.listdir(out / "pointwise")) == ["pretrain_0.tfrecords", "pretrain_1.tfrecords"]
    assert json.loads((out / "synth_meta.json").read_text(encoding="utf-8")) == meta
    counts = meta["counts"]
    assert len(tiny["pointwise"]) == counts["pointwise_videos"] == preset.pointwise_videos
    assert len(tiny["pairwise"]) == counts["pairwise_videos"] == preset.pair_videos
    assert len(tiny["test"]) == counts["test_a_videos"] == preset.test_videos
    for name, stats in meta["files"].items():
        assert stats["records"] == sum(1 for _ in tf.data.TFRecordDataset(str(out / name)))
        assert stats["bytes"] == os.path.getsize(out / name)
    assert meta["preset_params"]["pairs"] == preset.pairs and meta["seed"] == 0

    labels = read_labels(out / "pairwise" / "label.tsv", check_grid=True)
    assert len(labels) == counts["pairs"] == preset.pairs
    assert len(set(labels.query)) == counts["queries"] == preset.pair_queries
    pair_ids = [_text(f, schema.KEY_ID) for f in tiny["pairwise"]]
    assert len(set(pair_ids)) == len(pair_ids)
    assert pair_ids == labels.video_ids()  # every label id has a record, in first-appearance order
    all_ids = pair_ids + [_text(f, schema.KEY_ID) for f in tiny["pointwise"] + tiny["test"]]
    assert len(set(all_ids)) == len(all_ids) and all(i.isdigit() for i in all_ids)


def test_record_keys_follow_the_official_layout(tiny):
    for feature in tiny["pointwise"][:5] + tiny["pairwise"][:5]:
        assert set(feature.keys()) == set(schema.required_keys(schema.RecordKind.POINTWISE))
        assert len(feature[schema.KEY_CATEGORY].int64_list.value) == 1
    for feature in tiny["test"][:5]:
        assert set(feature.keys()) == set(schema.required_keys(schema.RecordKind.TEST))


def test_same_seed_same_bytes_other_seed_other_data(tiny, tmp_path):
    synth.generate(tmp_path / "again", "tiny", seed=0, progress=False)
    assert _digests(tmp_path / "again") == _digests(tiny["dir"])
    synth.generate(tmp_path / "other", "tiny", seed=1, progress=False)
    first, other = _digests(tiny["dir"]), _digests(tmp_path / "other")
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first)


def test_label_distribution_matches_the_real_one(tiny):
    labels = read_labels(tiny["dir"] / "pairwise" / "label.tsv").score
    assert synth_stats.total_variation(labels) < 0.05
    assert tiny["meta"]["labels"]["total_variation_vs_real"] == pytest.approx(synth_stats.total_variation(labels))
    # At the real size the quantile map reproduces the distribution up to rounding.
    values = np.random.default_rng(0).normal(size=synth_stats.REAL_PAIRS)
    mapped = synth_stats.quantile_map(values)
    assert synth_stats.total_variation(mapped) < 1e-3
    assert set(np.round(mapped / 0.05, 6)) <= set(range(21))
    assert np.all(np.diff(mapped[np.argsort(values)]) >= 0)  # monotone in the similarity


def test_label_file_writes_scores_like_the_official_file(tiny):
    lines = (tiny["dir"] / "pairwise" / "label.tsv").read_text(encoding="utf-8").splitlines()
    scores = {line.split("\t")[2] for line in lines}
    assert scores <= {synth_stats.format_score(v) for v in synth_stats.score_grid()}
    assert "0.0" in scores and "1.0" in scores
    assert synth_stats.format_score(0.15000000000000002) == "0.15"


def test_frames_look_like_the_real_features(tiny):
    counts, norms, low, high = [], [], [], []
    for feature in tiny["pointwise"] + tiny["pairwise"] + tiny["test"]:
        raw = feature[schema.KEY_FRAMES].bytes_list.value
        assert all(len(b) == schema.FRAME_BYTES for b in raw)
        frames = _frames(feature).astype(np.float32)
        assert frames.shape[1] == schema.FRAME_DIM and np.isfinite(frames).all()
        counts.append(len(frames))
        norms.append(np.linalg.norm(frames, axis=1).mean())
        low.append(frames.min())
        high.append(frames.max())
    counts = np.array(counts)
    assert counts.min() >= 5 and counts.max() <= 40
    assert 10 <= np.median(counts) <= 18  # real median 13, mean 16
    real_low, real_high = synth_stats.FRAME_VALUE_RANGE
    assert -0.28 < min(low) and np.median(low) == pytest.approx(real_low, abs=0.03)  # swish floor
    assert np.median(high) == pytest.approx(real_high, abs=0.8) and max(high) < 6.0
    norm_low, norm_high = synth_stats.FRAME_NORM_RANGE  # the two real videos: 11.2 and 13.0
    assert norm_low - 0.5 < np.median(norms) < norm_high + 1.0 and 8 < min(norms) and max(norms) < 22


def test_tags_categories_and_texts(tiny):
    labelled = tiny["pointwise"] + tiny["pairwise"]
    tags = [list(f[schema.KEY_TAGS].int64_list.value) for f in labelled]
    assert all(len(t) == len(set(t)) >= 1 for t in tags)
    assert abs(np.mean([len(t) for t in tags]) - synth_stats.TAGS_PER_VIDEO) < 1.0
    categories = [f[schema.KEY_CATEGORY].int64_list.value[0] for f in labelled]
    assert all(len(str(c)) == 5 and str(c).startswith("1") for c in categories)
    assert len(set(categories)) > 3

    titles = [_text(f, schema.KEY_TITLE) for f in labelled + tiny["test"]]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in title) for title in titles)
    assert 12 <= np.median([len(t) for t in titles]) <= 40
    asr = [_text(f, schema.KEY_ASR) for f in labelled + tiny["test"]]
    missing = np.mean([a == schema.MISSING_ASR for a in asr])
    assert 0.15 < missing < 0.6
    assert all(a == schema.MISSING_ASR or any("\u4e00" <= ch <= "\u9fff" for ch in a) for a in asr)

    tag_list = [int(x) for x in (tiny["dir"] / "tag_list.txt").read_text().split()]
    counted = {}
    for feature in tiny["pointwise"]:
        for tag in feature[schema.KEY_TAGS].int64_list.value:
            counted[tag] = counted.get(tag, 0) + 1
    assert len(tag_list) == min(len(counted), schema.NUM_TAGS) == tiny["meta"]["counts"]["tag_list"]
    assert [counted[t] for t in tag_list] == sorted(counted.values(), reverse=True)


def test_tag_skew_at_scale_follows_the_real_counts():
    preset = synth.PRESETS["demo"]
    world = synth.build_world(preset, 0)
    rng = synth._rng(0, 123)
    latents = synth.fresh_latents(world, rng, 4000)
    tags = synth.render_tags(world, rng, latents, synth.render_categories(world, rng, latents))
    counts = np.bincount(np.concatenate(tags), minlength=len(world.tag_ids))
    ranked = np.sort(counts)[::-1]
    assert np.mean([len(t) for t in tags]) == pytest.approx(synth_stats.TAGS_PER_VIDEO, abs=0.3)
    assert ranked[:100].sum() / ranked.sum() > 0.3  # a few popular tags carry much of the mass
    tail = counts[world.tail_start:].sum() / counts.sum()
    assert 0.02 < tail < 0.07  # real: ~4% of occurrences beyond the top 10,000


def test_oracle_spearman_is_high_and_recomputes(tiny):
    meta = tiny["meta"]
    truth = synth.pair_ground_truth("tiny", seed=0)
    labels = read_labels(tiny["dir"] / "pairwise" / "label.tsv")
    assert list(labels.query) == [truth.ids[i] for i in truth.queries]
    assert list(labels.candidate) == [truth.ids[i] for i in truth.candidates]
    np.testing.assert_allclose(labels.score, truth.labels, atol=1e-6)
    oracle = scipy.stats.spearmanr(truth.similarity, labels.score)[0]
    assert meta["oracle_spearman"] == pytest.approx(oracle, abs=1e-9)
    assert 0.8 < oracle < 0.99
    np.testing.assert_allclose(np.linalg.norm(truth.latents, axis=1), 1.0, atol=1e-9)
    assert truth.similarity.min() < 0.1 and truth.similarity.max() > 0.9  # spans the range


def test_raw_baselines_are_clearly_weaker_than_the_oracle(tiny):
    """Fusion must matter: the raw mean-frame cosine ranks pairs far worse than the truth."""
    labels = read_labels(tiny["dir"] / "pairwise" / "label.tsv")
    mean_frame = {_text(f, schema.KEY_ID): _frames(f).astype(np.float32).mean(0) for f in tiny["pairwise"]}
    a = np.stack([mean_frame[q] for q in labels.query])
    b = np.stack([mean_frame[c] for c in labels.candidate])
    cosine = np.einsum("nd,nd->n", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    raw = scipy.stats.spearmanr(cosine, labels.score)[0]
    assert 0.1 < raw < tiny["meta"]["oracle_spearman"] - 0.2


def test_modality_views_carry_only_part_of_the_signal():
    truth = synth.pair_ground_truth("demo", seed=0)
    full = scipy.stats.spearmanr(truth.similarity, truth.labels)[0]
    for modality in synth.VIEWS:
        view = synth._normalize(truth.latents[:, synth._view(modality)])
        partial = np.einsum("nd,nd->n", view[truth.queries], view[truth.candidates])
        assert scipy.stats.spearmanr(partial, truth.labels)[0] < full - 0.05, modality


def test_own_pair_graph_has_the_real_shape():
    preset = synth.PRESETS["full"]
    queries, candidates = synth.build_pair_graph(preset, synth._rng(0, 1))
    assert len(queries) == synth_stats.REAL_PAIRS
    assert len(set(queries.tolist())) == synth_stats.REAL_QUERIES
    assert len(set(queries.tolist()) | set(candidates.tolist())) == synth_stats.REAL_PAIR_VIDEOS
    assert len(set(zip(queries.tolist(), candidates.tolist()))) == len(queries) and np.all(queries != candidates)
    per_query = np.bincount(np.bincount(queries)[np.unique(queries)])
    assert per_query[1] / per_query.sum() == pytest.approx(0.79, abs=0.01)
    assert per_query[6:11].sum() > per_query[2:6].sum()
    sizes = synth_stats.graph_components(queries, candidates)
    assert 0.5 * synth_stats.REAL_COMPONENTS < len(sizes) < 1.5 * synth_stats.REAL_COMPONENTS
    assert sizes[0] > 0.5 * synth_stats.REAL_LARGEST_COMPONENT  # one giant component
    assert np.median(sizes) == 2  # mostly isolated pairs


def test_label_graph_from_the_real_file(shared_data, tmp_path):
    real = shared_data / "label.tsv"
    k = 250
    meta = synth.generate(tmp_path, "tiny", seed=3, label_graph=real, limit_pairs=k, progress=False)
    with open(real, encoding="utf-8") as handle:
        head = [next(handle).rstrip("\n").split("\t") for _ in range(k)]
    labels = read_labels(tmp_path / "pairwise" / "label.tsv", check_grid=True)
    assert [(q, c) for q, c in zip(labels.query, labels.candidate)] == [(q, c) for q, c, _ in head]
    real_scores = np.array([float(s) for _, _, s in head])
    assert np.mean(np.abs(labels.score - real_scores) > 1e-6) > 0.3  # fresh scores
    ids = {_text(f, schema.KEY_ID) for f in _records(tmp_path / "pairwise" / "pairwise.tfrecords")}
    assert ids == {x for q, c, _ in head for x in (q, c)}
    assert meta["counts"]["pairs"] == k and meta["label_graph"]["limit_pairs"] == k
    assert meta["label_graph"]["md5"] == "579cf79909a3585bda505d58412d1d79"
    assert meta["oracle_spearman"] > 0.8


def test_refuses_to_mix_with_an_existing_data_set(tiny, tmp_path):
    synth.generate(tmp_path, dataclasses.replace(synth.PRESETS["tiny"], pointwise_files=3),
                   seed=0, progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        synth.generate(tmp_path, "tiny", progress=False)
    synth.generate(tmp_path, "tiny", overwrite=True, progress=False)
    assert sorted(os.listdir(tmp_path / "pointwise")) == ["pretrain_0.tfrecords", "pretrain_1.tfrecords"]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        synth.generate("/nonexistent/never", "huge")
    with pytest.raises(ValueError, match="pair_videos must be a positive integer"):
        dataclasses.replace(synth.PRESETS["tiny"], pair_videos=0)
    with pytest.raises(ValueError, match="cannot form a real-shaped graph"):
        synth.build_pair_graph(dataclasses.replace(synth.PRESETS["tiny"], pairs=100_000), synth._rng(0, 1))


def test_video_ids_are_unique_decimal_and_seeded():
    ids = synth.video_ids(0, 0, 100_000)
    assert len(set(ids)) == len(ids) and all(i.isdigit() and int(i) < 2 ** 63 for i in ids)
    assert synth.video_ids(0, 5, 3) == ids[5:8]
    assert not set(synth.video_ids(1, 0, 1000)) & set(ids[:1000])


def test_cli_writes_a_tiny_data_set(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "tfrecord_tools.synth", "--out", str(out), "--size", "tiny",
                             "--seed", "2", "--no-progress"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "oracle Spearman" in result.stdout and str(out) in result.stdout
    meta = json.loads((out / "synth_meta.json").read_text(encoding="utf-8"))
    assert meta["seed"] == 2 and meta["preset"] == "tiny"
    assert "deprecated" not in result.stderr
    # --preset (the old name, which means model sizes in training) still works, with a note
    again = subprocess.run([sys.executable, "-m", "tfrecord_tools.synth", "--out", str(out), "--preset", "tiny"],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert "--preset is deprecated, use --size" in again.stderr
