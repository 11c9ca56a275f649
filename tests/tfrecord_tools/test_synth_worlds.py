"""The robustness suite of synthetic worlds: each world's defining property, the demo world unchanged."""
import dataclasses
import glob
import json
import pathlib

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from tfrecord_tools import schema, synth
from tfrecord_tools.labels import read_labels


def _records(pattern):
    return [tf.train.Example.FromString(raw.numpy()).features.feature
            for path in sorted(glob.glob(str(pattern))) for raw in tf.data.TFRecordDataset(path)]


def _frames(feature) -> np.ndarray:
    return np.stack([np.frombuffer(b, dtype="<f2") for b in feature[schema.KEY_FRAMES].bytes_list.value])


def _text(feature, key) -> str:
    return feature[key].bytes_list.value[0].decode("utf-8")


def _tags(feature) -> list[int]:
    return list(feature[schema.KEY_TAGS].int64_list.value)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Tiny data sets (seed 0) generated on demand, one per world, shared by the module's tests."""
    cache = {}

    def get(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(f"world_{name}")
            meta = synth.generate(out, "tiny", seed=0, progress=False, world=name)
            cache[name] = {"dir": out, "meta": meta, "pairwise": _records(out / "pairwise" / "pairwise.tfrecords"),
                           "pointwise": _records(out / "pointwise" / "*.tfrecords")}
        return cache[name]
    return get


def _mean_frames(data) -> np.ndarray:
    return np.stack([_frames(f).astype(np.float32).mean(axis=0) for f in data["pairwise"]])


def _pair_spearman(data, embeddings: np.ndarray) -> float:
    labels = read_labels(data["dir"] / "pairwise" / "label.tsv")
    row = {_text(f, schema.KEY_ID): i for i, f in enumerate(data["pairwise"])}
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    q = unit[[row[x] for x in labels.query]]
    c = unit[[row[x] for x in labels.candidate]]
    return scipy.stats.spearmanr(np.einsum("nd,nd->n", q, c), labels.score)[0]


def test_every_world_is_recorded_in_the_meta_and_keeps_a_high_oracle(worlds):
    for name, spec in synth.WORLDS.items():
        meta = worlds(name)["meta"]
        assert meta["world"]["name"] == name and meta["world"]["description"] == spec.description
        assert meta["world"]["model"] == json.loads(json.dumps(spec.model))
        for knob, value in meta["world"]["model"].items():  # the knobs reached the generator
            assert meta["preset_params"]["model"][knob] == value, (name, knob)
        for field, value in meta["world"]["sizes"].items():
            assert meta["preset_params"][field] == value, (name, field)
        assert meta["preset"] == "tiny" and meta["oracle_spearman"] > 0.75, name


def test_demo_world_is_the_unchanged_default(worlds, tmp_path):
    assert synth.world_preset("tiny", "demo") is synth.PRESETS["tiny"]
    assert synth.WORLDS["demo"].model == {} and synth.WORLDS["demo"].sizes is None
    meta = synth.generate(tmp_path, "tiny", seed=0, progress=False)  # no world argument
    assert meta["world"]["name"] == "demo" and meta["latent"]["views"] == synth.VIEWS
    for name in ("pairwise/label.tsv", "pairwise/pairwise.tfrecords", "pointwise/pretrain_0.tfrecords",
                 "test_a/test_a.tfrecords", "tag_list.txt"):
        assert (tmp_path / name).read_bytes() == (worlds("demo")["dir"] / name).read_bytes(), name
    assert meta["oracle_spearman"] == pytest.approx(0.8952, abs=5e-4)  # the value before worlds existed


def test_continuous_world_has_no_topic_clusters():
    def same_vs_other(world_name):
        world = synth.build_world(synth.world_preset("tiny", world_name), 0)
        latents = synth.fresh_latents(world, synth._rng(0, 55), 1500)
        topic = synth.main_topics(world, latents)
        cosine = latents @ latents.T
        same = topic[:, None] == topic[None, :]
        off_diagonal = ~np.eye(len(latents), dtype=bool)
        return cosine[same & off_diagonal].mean(), cosine[~same].mean()

    demo_same, demo_other = same_vs_other("demo")
    same, other = same_vs_other("continuous")
    assert demo_same - demo_other > 0.5  # demo: videos of one main topic are close
    assert same - other < 0.15 and abs(other) < 0.02  # continuous: no clusters, only the latent geometry


def test_continuous_world_texts_still_follow_the_latent(worlds):
    data = worlds("continuous")
    titles = [_text(f, schema.KEY_TITLE) for f in data["pairwise"]]
    from infer.evaluate import title_tfidf_baseline
    embedding = title_tfidf_baseline(dict(zip(map(str, range(len(titles))), titles)), dim=None).embeddings
    assert _pair_spearman(data, embedding) > 0.1


def test_offset_frames_share_a_large_offset_are_sparse_and_rescaled(worlds):
    data, demo = worlds("offset_frames"), worlds("demo")
    frames = np.concatenate([_frames(f) for f in data["pairwise"]]).astype(np.float32)
    assert np.isfinite(frames).all() and frames.min() == 0.0
    assert np.mean(frames == 0) >= 0.5  # ReLU-like: most dimensions exactly zero
    assert np.median(np.linalg.norm(frames, axis=1)) > 20 * 12  # values x20 (demo norms ~12)
    mean = _mean_frames(data)
    unit = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    pairs = np.random.default_rng(0).choice(len(unit), size=(400, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    assert np.einsum("nd,nd->n", unit[pairs[:, 0]], unit[pairs[:, 1]]).mean() >= 0.9  # unrelated videos
    raw, centred = _pair_spearman(data, mean), _pair_spearman(data, mean - mean.mean(axis=0))
    assert centred > raw + 0.03 and centred > 0.2  # the signal is there once the offset is removed
    # Only the frames change: titles, tags and labels are the demo world's.
    titles = [_text(f, schema.KEY_TITLE) for f in data["pairwise"]]
    assert titles == [_text(f, schema.KEY_TITLE) for f in demo["pairwise"]]
    assert [_tags(f) for f in data["pointwise"]] == [_tags(f) for f in demo["pointwise"]]
    label_file = pathlib.Path("pairwise", "label.tsv")
    assert (data["dir"] / label_file).read_bytes() == (demo["dir"] / label_file).read_bytes()


def test_sparse_tags_have_many_distinct_tags_with_few_repeats(worlds):
    data, demo = worlds("sparse_tags"), worlds("demo")

    def distinct_share(records):
        tags = [t for f in records for t in _tags(f)]
        counts = np.unique(tags, return_counts=True)[1]
        return len(counts) / len(tags), counts[counts == 1].sum() / len(tags)

    distinct, once = distinct_share(data["pointwise"])
    demo_distinct, demo_once = distinct_share(demo["pointwise"])
    assert distinct > 0.8 and once > 0.7  # most occurrences are a tag seen once
    assert demo_distinct < 0.3 and demo_once < 0.15
    assert abs(np.mean([len(_tags(f)) for f in data["pointwise"]])
               - np.mean([len(_tags(f)) for f in demo["pointwise"]])) < 0.3  # as many tags a video
    assert data["meta"]["preset_params"]["extra_tail_tags"] >= 40 * 200 - 300
    # Only the tags change: frames and titles are the demo world's.
    for record, demo_record in zip(data["pairwise"], demo["pairwise"]):
        assert np.array_equal(_frames(record), _frames(demo_record))
        assert _text(record, schema.KEY_TITLE) == _text(demo_record, schema.KEY_TITLE)


def test_weak_titles_have_few_content_words(worlds):
    def content_words(name):
        world = synth.build_world(synth.world_preset("tiny", name), 0)
        topic_words = {world.words[i] for i in world.topic_words.ravel()}
        titles = [_text(f, schema.KEY_TITLE) for f in worlds(name)["pairwise"]]
        return np.array([sum(title.count(word) for word in topic_words) for title in titles])

    weak, demo = content_words("weak_titles"), content_words("demo")
    assert weak.mean() < 2.2 and np.median(weak) <= 2  # 1-2 topic words (rare chance concatenations)
    assert demo.mean() > 4.0
    data = worlds("weak_titles")
    for record, demo_record in zip(data["pairwise"][:50], worlds("demo")["pairwise"][:50]):
        assert np.array_equal(_frames(record), _frames(demo_record))  # frames untouched


def test_real_graph_world_changes_which_blocks_each_modality_sees(shared_data, tmp_path):
    preset = synth.world_preset("tiny", "real_graph")
    assert dict(preset.model.views)["frames"] == "AC" and dict(preset.model.views)["title"] == "BD"
    np.testing.assert_array_equal(synth._view("frames", preset.model), np.r_[0:16, 32:48])
    world = synth.build_world(preset, 0)
    latents = synth.fresh_latents(world, synth._rng(0, 1), 4)
    counts = np.full(4, 6)
    base = synth.render_frames(world, synth._rng(0, 2), latents, counts)
    other_b, other_c = latents.copy(), latents.copy()
    other_b[:, 16:32] = latents[::-1, 16:32]  # block B is not seen by the frames any more
    other_c[:, 32:48] = latents[::-1, 32:48]
    unseen = synth.render_frames(world, synth._rng(0, 2), other_b, counts)
    assert all(np.array_equal(a, b) for a, b in zip(base, unseen))
    assert not np.array_equal(base[0], synth.render_frames(world, synth._rng(0, 2), other_c, counts)[0])

    meta = synth.generate(tmp_path, "tiny", seed=0, label_graph=shared_data / "label.tsv", limit_pairs=200,
                          progress=False, world="real_graph")
    assert meta["latent"]["views"]["frames"] == "AC" and meta["label_graph"]["limit_pairs"] == 200
    assert meta["counts"]["pairs"] == 200 and meta["oracle_spearman"] > 0.75


def test_many_unlabelled_world_has_5x_unlabelled_videos_and_another_relation_mix(worlds):
    meta = worlds("many_unlabelled")["meta"]
    assert meta["counts"]["pointwise_videos"] >= 5 * meta["counts"]["pairwise_videos"]
    assert len(worlds("many_unlabelled")["pointwise"]) == meta["counts"]["pointwise_videos"]
    for size in ("demo", "full"):
        preset = synth.world_preset(size, "many_unlabelled")
        assert preset.pointwise_videos >= 5 * preset.pair_videos
    model = synth.world_preset("tiny", "many_unlabelled").model
    alphas = synth.relation_alphas(model, np.random.default_rng(0).random(20_000))
    demo_alphas = synth.relation_alphas(synth.LatentModel(), np.random.default_rng(0).random(20_000))
    assert np.mean(alphas == 0) == pytest.approx(0.15, abs=0.01)
    assert np.mean(demo_alphas == 0) == pytest.approx(0.30, abs=0.01)
    assert np.mean(alphas >= 0.92) == pytest.approx(0.30, abs=0.01)
    assert np.mean(demo_alphas >= 0.92) == pytest.approx(0.15, abs=0.01)
    assert model.label_noise > synth.LatentModel().label_noise


def test_world_cli_and_bad_worlds(tmp_path, capsys):
    assert synth.main(["--out", str(tmp_path), "--preset", "tiny", "--world", "weak_titles", "--seed", "1",
                       "--no-progress"]) == 0
    assert "world weak_titles" in capsys.readouterr().out
    meta = json.loads((tmp_path / "synth_meta.json").read_text(encoding="utf-8"))
    assert meta["world"]["name"] == "weak_titles" and meta["seed"] == 1
    with pytest.raises(SystemExit) as exit_info:
        synth.main(["--out", str(tmp_path / "x"), "--world", "lunar"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--world: unknown world 'lunar'" in error and "random-<n>" in error
    for bad in ("random-", "random-x", "random-01", "random--1"):
        with pytest.raises(ValueError, match="unknown world"):
            synth.world_spec(bad)
    with pytest.raises(ValueError, match="non-negative integer"):
        synth.random_world(-1)
    with pytest.raises(ValueError, match="unknown world 'lunar'"):
        synth.generate(tmp_path / "y", "tiny", world="lunar")
    with pytest.raises(ValueError, match=r"views\['frames'\] must be distinct blocks"):
        synth.LatentModel(views=(("frames", "AX"), ("title", "BC"), ("tags", "CD"), ("asr", "BD")))
    with pytest.raises(ValueError, match="frame_sparsity must be in"):
        synth.LatentModel(frame_sparsity=1.0)
    with pytest.raises(ValueError, match="extra_tail_tags must be a non-negative integer"):
        dataclasses.replace(synth.PRESETS["tiny"], extra_tail_tags=-1)


def test_every_world_keeps_the_oracle_above_0_8_at_the_demo_size():
    """Hard, not impossible: the true similarity still ranks the demo-size labels well."""
    oracles = {}
    for name in ("demo", "continuous", "many_unlabelled"):  # the worlds whose latents or labels differ
        truth = synth.pair_ground_truth(synth.world_preset("demo", name), seed=0)
        oracles[name] = scipy.stats.spearmanr(truth.similarity, truth.labels)[0]
    assert oracles["demo"] == pytest.approx(0.9102, abs=5e-4)
    assert min(oracles.values()) >= 0.8 and oracles["many_unlabelled"] < oracles["demo"] - 0.03, oracles


def test_random_worlds_are_fixed_by_their_number_and_differ_between_numbers():
    first, again, other = synth.world_spec("random-1"), synth.random_world(1), synth.world_spec("random-2")
    assert first.name == "random-1" and first.model == again.model and first.model != other.model
    demo = synth.PRESETS["demo"]
    assert first.knobs(demo) == again.knobs(demo)
    for number in range(40):  # every draw is a valid world: LatentModel and Preset accept it
        spec = synth.random_world(number)
        preset = spec.apply(demo)
        views = dict(preset.model.views)
        assert set("".join(views.values())) == set(synth.BLOCKS)  # every latent block is seen
        assert all(len(blocks) == 2 for blocks in views.values())
        assert 1.5 * demo.pair_videos <= preset.pointwise_videos <= 6 * demo.pair_videos + demo.pointwise_files
        assert preset.model.p_unrelated + preset.model.p_duplicate < 1
        if preset.model.p_tail_tag > 0.2:
            assert preset.extra_tail_tags > 0


def test_a_random_world_writes_its_drawn_knobs_and_its_oracle(worlds):
    data = worlds("random-2")
    meta, spec = data["meta"], synth.random_world(2)
    assert meta["world"]["name"] == "random-2"
    assert meta["world"]["model"] == json.loads(json.dumps(spec.model))
    assert meta["latent"]["views"] == {name: blocks for name, blocks in spec.model["views"]}
    assert meta["counts"]["pointwise_videos"] == spec.apply(synth.PRESETS["tiny"]).pointwise_videos
    # sparse frames at a value scale: exact zeros, and values far from the demo's
    frames = np.concatenate([_frames(f) for f in data["pairwise"][:20]]).astype(np.float32)
    assert 0.3 < np.mean(frames == 0) < 0.95 and frames.max() > 5
    assert 0.5 < meta["oracle_spearman"] < 1
