"""The wide path: `models.layers.WidePath` in-graph reproduces the linear-metric baseline that
`train.wide_path` fits, and a finetune fits, saves, checkpoints and reuses it."""
from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from models.config import ModelConfig, WideConfig
from models.layers import WidePath
from tfrecord_tools.labels import Labels
from train import wide_path

PAD, CLS, SEP, MASK = 0, 1, 2, 3
VOCAB, DIM, LENGTH = 48, 12, 16


def _videos(rng, n, centres):
    """Latents, token ids ([CLS] title [SEP] asr [SEP]) and topics of ``n`` videos around 6 topics."""
    topic = rng.integers(len(centres), size=n)
    latent = centres[topic] + 0.5 * rng.normal(size=(n, centres.shape[1]))
    ids = np.full((n, LENGTH), PAD, np.int32)
    for i in range(n):
        words = 4 + 6 * topic[i] + rng.integers(6, size=5)  # a topic's own 6 words
        filler = rng.integers(40, VOCAB, size=3 + i % 3)
        title = list(words[:3]) + list(filler[:2])
        asr = list(words[3:]) + list(filler[2:])
        row = [CLS, *title, SEP, *asr, SEP]
        ids[i, :len(row)] = row
    return latent, ids, topic


def _tags(rng, topic, num_tags=20):
    """Multi-hot tags: two of the topic's three tags and one random tag."""
    tags = np.zeros((len(topic), num_tags), np.float32)
    for i, t in enumerate(topic):
        tags[i, 3 * t + rng.choice(3, size=2, replace=False)] = 1.0
        tags[i, rng.integers(18, num_tags)] = 1.0
    return tags


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 4)) * 1.5
    projection = rng.normal(size=(4, DIM))
    data = {}
    for name, n in (("scored", 240), ("unlabelled", 160)):
        latent, ids, topic = _videos(rng, n, centres)
        nuisance = rng.normal(size=(n, 2)) @ rng.normal(size=(2, DIM)) * 3.0  # per video, unrelated to anything
        frames = 5.0 + latent @ projection + nuisance + 0.3 * rng.normal(size=(n, DIM))
        data[name] = (latent, frames.astype(np.float32), ids, _tags(rng, topic))
    latent = data["scored"][0]
    q, c = rng.integers(240, size=400), rng.integers(240, size=400)
    unit = latent / np.linalg.norm(latent, axis=1, keepdims=True)
    score = np.einsum("ij,ij->i", unit[q], unit[c]) + 0.1 * rng.normal(size=400)
    keys = np.array([f"v{i}" for i in range(240)], dtype=object)
    data["pairs"] = Labels("test pairs", keys[q], keys[c], score)
    return data


def _layer():
    layer = WidePath(VOCAB, frame_width=8, text_width=4, output_size=16)
    layer.build(tf.TensorShape([None, None, DIM]))
    layer.sep_token_id.assign(SEP)
    return layer


def _inputs(frames, ids):
    """[N, 2, D] frames (second frame padding) and the attention mask of ``ids``."""
    padded = np.stack([frames, np.zeros_like(frames)], axis=1)
    return (tf.constant(padded), tf.constant([[1.0, 0.0]] * len(frames)), tf.constant(ids),
            tf.constant((ids != PAD).astype(np.int32)))


def _collect(layer, frames, ids, prefix, tags=None):
    import scipy.sparse

    frames_t, mask, ids_t, attention = _inputs(frames, ids)
    title, asr = layer.token_counts(ids_t, attention)
    return wide_path.VideoInputs([f"{prefix}{i}" for i in range(len(frames))],
                                 layer.mean_frame(frames_t, mask).numpy().astype(np.float64),
                                 scipy.sparse.csr_matrix(title.numpy()), scipy.sparse.csr_matrix(asr.numpy()),
                                 None if tags is None else scipy.sparse.csr_matrix(tags))


def test_frame_space_undoes_the_models_standardiser(world):
    """The model's standardiser divides every feature by its spread; the covariance space reads the
    frames as the strong baseline whitens them, the standardised one as they come, auto takes the one
    whose whitened frame ranks the training pairs better, and the path reproduces the fit in each."""
    from infer import strong_baselines as sb

    layer = _layer()
    scale = np.geomspace(0.05, 20.0, DIM)  # features of wildly different spread, as CNN activations
    raw = {name: world[name][1] * scale for name in ("scored", "unlabelled")}
    mean = raw["unlabelled"].mean(0)
    transform = np.diag(1.0 / raw["unlabelled"].std(0))
    standardised = {name: ((value - mean) @ transform).astype(np.float32) for name, value in raw.items()}
    scored = _collect(layer, standardised["scored"], world["scored"][2], "v", world["scored"][3])
    unlabelled = _collect(layer, standardised["unlabelled"], world["unlabelled"][2], "u", world["unlabelled"][3])
    config = WideConfig(enabled=True, lsa_dim=6, frame_width=8, text_width=4)
    assert config.frame_space == "auto"
    fits = {space: wide_path.fit_wide_path(scored, unlabelled, world["pairs"],
                                           dataclasses.replace(config, frame_space=space), 16, [PAD, CLS, SEP, MASK],
                                           SEP, frame_transform=transform)
            for space in ("standardised", "covariance", "auto")}
    # the covariance space's frame part is the covariance PCA of the raw frames, read from the standardised ones
    weights, choices, reference = fits["covariance"]
    assert choices["frame_space"] == "covariance" and "frame_standardised_score" not in choices
    k = int(choices["frame_components"])
    moments = sb.MomentAccumulator(DIM)
    for value in (raw["unlabelled"], raw["scored"]):
        moments.add(value.astype(np.float32).astype(np.float64))
    expected = sb.Whitener.fit(*moments.result(), 1e-6)(raw["scored"], k)
    got = (scored.mean_frames - weights["frame_mean"]) @ weights["frame_kernel"][:, :k]
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-3, atol=1e-3)  # columns up to sign
    assert fits["standardised"][1]["frame_space"] == "standardised"
    assert not np.allclose(fits["standardised"][0]["frame_kernel"], weights["frame_kernel"])
    auto = fits["auto"][1]
    clearly = auto["frame_covariance_score"] > auto["frame_standardised_score"] + 0.01  # the margin
    assert auto["frame_space"] == ("covariance" if clearly else "standardised")
    np.testing.assert_allclose(fits["auto"][0]["frame_kernel"], fits[auto["frame_space"]][0]["frame_kernel"])
    for weights, _, reference in fits.values():  # in-graph, each fit gives the baseline's cosines
        layer.set_weights_from(weights)
        out = layer(*_inputs(standardised["scored"], world["scored"][2])).numpy()
        unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
        np.testing.assert_allclose(out @ out.T, unit @ unit.T, atol=2e-4)
    # nothing to undo (no transform, or the identity): one space; covariance is then an error
    for given in (None, np.eye(DIM)):
        _, plain, _ = wide_path.fit_wide_path(scored, unlabelled, world["pairs"], config, 16, [PAD, CLS, SEP, MASK],
                                              SEP, frame_transform=given)
        assert plain["frame_space"] == "standardised" and "frame_covariance_score" not in plain
    with pytest.raises(ValueError, match="frame_space=covariance undoes"):
        wide_path.fit_wide_path(scored, unlabelled, world["pairs"], dataclasses.replace(config, frame_space="covariance"),
                                16, [PAD, CLS, SEP, MASK], SEP)
    with pytest.raises(ValueError, match="frame_space must be one of"):
        WideConfig(frame_space="correlation")


def test_token_counts_split_title_and_asr_at_the_first_sep():
    layer = _layer()
    ids = tf.constant([[CLS, 5, 5, 7, SEP, 9, 5, SEP, PAD, PAD]])
    title, asr = layer.token_counts(ids, tf.cast(ids != PAD, tf.int32))
    title, asr = title.numpy()[0], asr.numpy()[0]
    # each segment ends with its [SEP] (special tokens get zero IDF in the fit, so they count for nothing)
    assert title[5] == 2 and title[7] == 1 and title[CLS] == 1 and title[SEP] == 1 and title.sum() == 5
    assert asr[9] == 1 and asr[5] == 1 and asr[SEP] == 1 and asr.sum() == 3
    assert title[PAD] == 0 and asr[PAD] == 0  # padding is not counted


@pytest.mark.parametrize("basis, with_tags", [("lsa", True), ("tags", True), ("tags", False), ("auto", True),
                                              ("auto", False), ("both", True), ("both", False)])
def test_wide_path_reproduces_the_fitted_linear_metric(world, basis, with_tags):
    layer = _layer()
    scored = _collect(layer, *world["scored"][1:3], "v", world["scored"][3] if with_tags else None)
    unlabelled = _collect(layer, *world["unlabelled"][1:3], "u", world["unlabelled"][3] if with_tags else None)
    config = WideConfig(enabled=True, lsa_dim=6, frame_width=8, text_width=4, text_basis=basis)
    weights, choices, reference = wide_path.fit_wide_path(scored, unlabelled, world["pairs"], config, 16,
                                                          [PAD, CLS, SEP, MASK], SEP)
    # without tags (a decoder with no tag list) the tags basis, and "both", fall back to the baseline's LSA
    used = basis if with_tags else "lsa"
    if basis == "auto" and with_tags:  # both fitted; each text keeps the better-ranking one
        for text in ("title", "asr"):
            scores = {key: choices[f"{text}_{key}_score"] for key in ("tags", "lsa")}
            assert choices[f"{text}_basis"] == max(scores, key=scores.get)
    else:
        assert choices["title_basis"] == used and choices["asr_basis"] == used
        assert "title_lsa_score" not in choices  # nothing to choose between
    assert weights["metric"].shape == (16, 16) and weights["title_kernel"].shape == (VOCAB, 4)
    assert weights["title_idf"][[PAD, CLS, SEP, MASK]].tolist() == [0, 0, 0, 0]
    assert choices["frame_components"] <= 8 and choices["title_components"] <= 4 and choices["pairs"] == 400
    layer.set_weights_from(weights)
    out = layer(*_inputs(world["scored"][1], world["scored"][2])).numpy()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)  # gate 1, unit vectors
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(out @ out.T, unit @ unit.T, atol=2e-4)  # the baseline's cosines, in-graph

    pairs = world["pairs"]
    rows_q = np.array([int(k[1:]) for k in pairs.query])
    rows_c = np.array([int(k[1:]) for k in pairs.candidate])
    wide = scipy.stats.spearmanr(np.einsum("ij,ij->i", out[rows_q], out[rows_c]), pairs.score).statistic
    raw = world["scored"][1] / np.linalg.norm(world["scored"][1], axis=1, keepdims=True)
    raw = scipy.stats.spearmanr(np.einsum("ij,ij->i", raw[rows_q], raw[rows_c]), pairs.score).statistic
    assert wide > raw + 0.1 and wide > 0.6, (wide, raw)  # text + metric beat the nuisance-dominated cosine

    rebuilt = WidePath.from_config(layer.get_config())
    assert (rebuilt.vocab_size, rebuilt.frame_width, rebuilt.text_width, rebuilt.output_size) == (VOCAB, 8, 4, 16)
    with pytest.raises(ValueError, match="wide path metric must be"):
        layer.set_weights_from(dict(weights, metric=np.zeros((4, 4))))
    with pytest.raises(ValueError, match="wide path frame_mean must be finite"):
        layer.set_weights_from(dict(weights, frame_mean=np.full(DIM, np.nan)))


def test_wide_path_with_the_titles_rare_words_reproduces_the_fit(world):
    from infer import rare_words

    layer = WidePath(VOCAB, frame_width=8, text_width=4, output_size=16, rare_words=4)
    layer.build(tf.TensorShape([None, None, DIM]))
    layer.sep_token_id.assign(SEP)
    scored = _collect(layer, *world["scored"][1:3], "v")
    unlabelled = _collect(layer, *world["unlabelled"][1:3], "u")
    config = WideConfig(enabled=True, lsa_dim=6, frame_width=8, text_width=4, rare_words=4, rare_words_max_df=0.1)
    weights, choices, reference = wide_path.fit_wide_path(scored, unlabelled, world["pairs"], config, 16,
                                                          [PAD, CLS, SEP, MASK], SEP)
    chosen = choices["rare_words"]
    assert chosen["weight"] in rare_words.WEIGHTS and set(chosen["scores"]) == set(rare_words.WEIGHTS)
    assert chosen["width"] == 4 and chosen["max_df"] == 0.1
    idf = weights["rare_idf"]
    assert idf.shape == (VOCAB,) and idf[[PAD, CLS, SEP, MASK]].tolist() == [0, 0, 0, 0]
    assert chosen["tokens"] == np.count_nonzero(idf) > 0 and np.count_nonzero(idf) < np.count_nonzero(weights["title_idf"])
    assert weights["rare_projection"].shape == (VOCAB, 4) and weights["rare_basis"].shape == (4, 16)
    if chosen["weight"] > 0:  # orthonormal directions, weighted
        basis = weights["rare_basis"] / chosen["weight"]
        np.testing.assert_allclose(basis @ basis.T, np.eye(4), atol=1e-5)
    else:
        assert not weights["rare_basis"].any()
    layer.set_weights_from(weights)
    out = layer(*_inputs(world["scored"][1], world["scored"][2])).numpy()
    np.testing.assert_allclose(out, reference, atol=2e-4)  # l2n(metric) + the weighted rare words, in-graph

    # weight 1 on four of the output's directions, the metric silent: the rare words' own inner products
    layer.set_weights_from(dict(weights, rare_basis=np.eye(16)[12:], metric=np.zeros((16, 16))))
    out = layer(*_inputs(world["scored"][1], world["scored"][2])).numpy()
    docs = rare_words.tfidf_rows(scored.title_counts, idf).toarray()
    np.testing.assert_allclose(out @ out.T, docs @ weights["rare_projection"] @ weights["rare_projection"].T @ docs.T,
                               atol=2e-4)
    assert WidePath.from_config(layer.get_config()).rare_words == 4
    with pytest.raises(ValueError, match="wide path rare_basis is missing from the fit"):
        layer.set_weights_from({key: value for key, value in weights.items() if key != "rare_basis"})
    with pytest.raises(ValueError, match="rare_words must be in 0..16"):
        WidePath(VOCAB, frame_width=8, text_width=4, output_size=16, rare_words=17)


def test_tag_basis_puts_words_of_the_same_tags_together():
    import scipy.sparse

    # words 2k and 2k + 1 never share a title but always come with tag k (k = 0, 1, 2)
    rng = np.random.default_rng(1)
    word = rng.integers(6, size=400)
    docs = scipy.sparse.csr_matrix((np.ones(400), (np.arange(400), word)), shape=(400, 8))
    tags = scipy.sparse.csr_matrix((np.ones(400), (np.arange(400), word // 2)), shape=(400, 3))
    basis = wide_path._tag_basis(docs, tags, dim=2, seed=0, alpha=1.0)
    assert basis.shape == (2, 8)
    vectors = np.eye(8)[:6] @ basis.T
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = unit @ unit.T
    assert min(cosines[0, 1], cosines[2, 3], cosines[4, 5]) > 0.99  # same tag: one direction
    assert max(cosines[0, 2], cosines[0, 4], cosines[2, 4]) < -0.2  # other tags: apart
    lsa = wide_path._lsa(docs, dim=2, seed=0)
    lsa_vectors = np.eye(8)[:2] @ lsa.T  # LSA has no reason to put words 0 and 1 together
    assert abs(lsa_vectors[0] @ lsa_vectors[1]) < 0.1 * np.linalg.norm(lsa_vectors[0]) * np.linalg.norm(lsa_vectors[1]) + 1e-12
    # too few videos with tags: no basis (the fit falls back to LSA)
    few = scipy.sparse.csr_matrix(tags.toarray() * (np.arange(400) < wide_path.MIN_TAGGED_VIDEOS - 1)[:, None])
    assert wide_path._tag_basis(docs, few, dim=2, seed=0, alpha=1.0) is None


def test_choose_basis_keeps_the_vectors_that_rank_the_training_pairs(world):
    latent = world["scored"][0]
    rng = np.random.default_rng(3)
    ids = [f"v{i}" for i in range(len(latent))]
    config = wide_path.sb.BaselineConfig(text_components=(2, 4))
    informative = np.concatenate([latent, rng.normal(size=(len(latent), 2))], axis=1)
    noise = rng.normal(size=informative.shape)
    for candidates in ({"tags": noise, "lsa": informative}, {"lsa": noise, "tags": informative}):
        chosen, scores = wide_path._choose_basis(candidates, ids, world["pairs"], config)
        assert candidates[chosen] is informative, scores
        assert scores[chosen] > 0.5 and abs(min(scores.values())) < 0.2


def test_both_bases_side_by_side_weigh_alike_and_keep_what_each_reads(world):
    rng = np.random.default_rng(5)
    vocab, n = 30, 200
    candidates = {"tags": rng.normal(size=(6, vocab)) * 50.0, "lsa": rng.normal(size=(4, vocab)) * 0.1}
    docs = rng.random((n, vocab))
    projected = {key: docs @ value.T for key, value in candidates.items()}
    joined, vectors = wide_path._joined(candidates, projected)
    assert list(joined) == ["both"] and joined["both"].shape == (10, vocab) and vectors["both"].shape == (n, 10)
    np.testing.assert_allclose(vectors["both"], docs @ joined["both"].T, atol=1e-9)  # one linear kernel in-graph
    # each block scaled to unit total spread, whatever its raw scale (here 500x apart)
    for block in (vectors["both"][:, :6], vectors["both"][:, 6:]):
        np.testing.assert_allclose(np.sqrt(block.var(axis=0).sum()), 1.0, rtol=1e-6)
    # the tags block is the tags basis up to one scale (the directions are untouched)
    ratio = joined["both"][:6] / candidates["tags"]
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-9)


def test_both_basis_keeps_what_the_lsa_reads_where_tags_are_noise(world):
    layer = _layer()
    rng = np.random.default_rng(4)
    noise_tags = {name: (rng.random((len(world[name][0]), 20)) < 0.15).astype(np.float32)
                  for name in ("scored", "unlabelled")}  # tags unrelated to the topics: the LSA must carry it
    scored = _collect(layer, *world["scored"][1:3], "v", noise_tags["scored"])
    unlabelled = _collect(layer, *world["unlabelled"][1:3], "u", noise_tags["unlabelled"])
    # default: both; the metric without its diagonal stage, which lifts the tags basis too
    config = WideConfig(enabled=True, lsa_dim=6, frame_width=8, text_width=4, metric_diagonal=False)
    pairs = world["pairs"]
    rows_q = np.array([int(k[1:]) for k in pairs.query])
    rows_c = np.array([int(k[1:]) for k in pairs.candidate])

    def spearman(basis):
        weights, choices, _ = wide_path.fit_wide_path(scored, unlabelled, pairs, dataclasses.replace(config, text_basis=basis),
                                                      16, [PAD, CLS, SEP, MASK], SEP)
        layer.set_weights_from(weights)
        out = layer(*_inputs(world["scored"][1], world["scored"][2])).numpy()
        return choices["title_basis"], scipy.stats.spearmanr(np.einsum("ij,ij->i", out[rows_q], out[rows_c]),
                                                             pairs.score).statistic

    basis, both = spearman("both")
    _, tags = spearman("tags")
    _, lsa = spearman("lsa")
    assert basis == "both"
    assert lsa > tags + 0.03, (lsa, tags)  # the noise tags read nothing of the titles (0.76 against 0.71)
    assert both > tags + 0.025 and both > lsa - 0.03, (both, lsa, tags)  # both keeps most of what the LSA reads


def test_auto_basis_falls_back_to_lsa_where_tags_are_noise(world):
    layer = _layer()
    rng = np.random.default_rng(4)
    noise_tags = {name: (rng.random((len(world[name][0]), 20)) < 0.15).astype(np.float32)
                  for name in ("scored", "unlabelled")}  # tags unrelated to the topics
    scored = _collect(layer, *world["scored"][1:3], "v", noise_tags["scored"])
    unlabelled = _collect(layer, *world["unlabelled"][1:3], "u", noise_tags["unlabelled"])
    config = WideConfig(enabled=True, lsa_dim=6, frame_width=8, text_width=4, text_basis="auto")
    _, choices, _ = wide_path.fit_wide_path(scored, unlabelled, world["pairs"], config, 16, [PAD, CLS, SEP, MASK], SEP)
    assert choices["title_basis"] == "lsa", choices
    assert choices["title_lsa_score"] > choices["title_tags_score"] + 0.05
    _, forced, _ = wide_path.fit_wide_path(scored, unlabelled, world["pairs"], dataclasses.replace(config, text_basis="tags"),
                                           16, [PAD, CLS, SEP, MASK], SEP)
    assert forced["title_basis"] == "tags"  # the explicit setting is obeyed


def test_unfitted_path_adds_nothing_and_config_validates():
    layer = _layer()
    out = layer(*_inputs(np.ones((3, DIM), np.float32), np.array([[CLS, 5, SEP] + [PAD] * 13] * 3, np.int32)))
    assert np.all(out.numpy() == 0)  # zero weights before the fit: pretraining sees a plain model
    with pytest.raises(ValueError, match="text_width must be > 0"):
        ModelConfig.tiny("uniter", **{"wide.enabled": True, "wide.text_width": 0})
    assert ModelConfig.tiny("uniter", wide_path=True).wide.enabled  # flat key
    assert ModelConfig.tiny("uniter").wide.text_basis == "both"
    with pytest.raises(ValueError, match=r"text_basis must be one of \('both', 'auto', 'tags', 'lsa'\), got 'words'"):
        ModelConfig.tiny("uniter", **{"wide.text_basis": "words"})
    with pytest.raises(ValueError, match=r"wide.frame_width \+ 2 \* wide.text_width \+ wide.frame_tags_width \(384\) "
                                         r"must be <= embedding_dim"):
        ModelConfig.tiny("uniter", **{"wide.enabled": True, "wide.frame_width": 256})
    assert ModelConfig.tiny("uniter").wide.frame_tags_width == 0  # off unless asked for
    with pytest.raises(ValueError, match=r"\(144\) must be <= embedding_dim \(128\)"):
        ModelConfig.tiny("uniter", **{"wide.enabled": True, "wide.frame_width": 64, "wide.text_width": 32,
                                      "wide.frame_tags_width": 16, "embedding_dim": 128})
    with pytest.raises(ValueError, match="frame_tags_width must be >= 0"):
        ModelConfig.tiny("uniter", **{"wide.frame_tags_width": -1})


def test_transductive_videos_join_the_unsupervised_statistics_without_their_tags(world):
    import scipy.sparse

    layer = _layer()
    scored = _collect(layer, *world["scored"][1:3], "v", world["scored"][3])
    frames, ids, tags = world["unlabelled"][1:]
    unlabelled = _collect(layer, frames[:100], ids[:100], "u", tags[:100])
    extra = _collect(layer, frames[100:], ids[100:], "t", tags[100:])
    # two of them are training-pair videos already (same id): not counted twice
    extra = wide_path.merged(extra, dataclasses.replace(_collect(layer, *world["scored"][1:3], "v", world["scored"][3]),
                                                        ids=[f"v{i}" for i in range(240)]))
    extra = dataclasses.replace(extra, ids=extra.ids[:62], mean_frames=extra.mean_frames[:62],
                                title_counts=extra.title_counts[:62], asr_counts=extra.asr_counts[:62],
                                tags=extra.tags[:62])
    assert extra.ids[60:] == ["v0", "v1"]
    config = WideConfig(enabled=True, lsa_dim=6, frame_width=8, text_width=4, text_basis="both")
    args = (world["pairs"], config, 16, [PAD, CLS, SEP, MASK], SEP)
    plain, plain_choices, _ = wide_path.fit_wide_path(scored, unlabelled, *args)
    weights, choices, _ = wide_path.fit_wide_path(scored, unlabelled, *args, transductive=extra)
    assert plain_choices["transductive_videos"] == 0
    assert choices["transductive_videos"] == 60 and choices["unlabelled_videos"] == 100 and choices["videos"] == 240
    everything = np.concatenate([scored.mean_frames, unlabelled.mean_frames, extra.mean_frames[:60]])
    np.testing.assert_allclose(weights["frame_mean"], everything.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(plain["frame_mean"], everything[:340].mean(axis=0), rtol=1e-5, atol=1e-5)
    assert not np.allclose(weights["title_bias"], plain["title_bias"])  # the text whitening saw them too
    # their tags are never read: the same fit with the tags removed
    untagged, _, _ = wide_path.fit_wide_path(scored, unlabelled, *args, transductive=wide_path.without_tags(extra))
    for key in weights:
        np.testing.assert_array_equal(weights[key], untagged[key], err_msg=key)
    # videos the fit cannot tell from tag-less ones: an empty tag row where the others have tags
    joined = wide_path.merged(unlabelled, wide_path.without_tags(extra), exclude=scored.ids)
    assert joined.tags.shape == (160, 20) and joined.tags[100:].nnz == 0
    assert isinstance(joined.title_counts, scipy.sparse.csr_matrix) and joined.ids[-1] == "t59"


def test_fit_needs_training_pairs(world):
    layer = _layer()
    scored = _collect(layer, world["scored"][1][:5], world["scored"][2][:5], "v")
    none = Labels("p", np.array([], dtype=object), np.array([], dtype=object), np.zeros(0))
    with pytest.raises(ValueError, match="needs training pairs"):
        wide_path.fit_wide_path(scored, scored, none, WideConfig(), 16, [0], SEP)


def test_finetune_fits_saves_and_checkpoints_the_wide_path(synthetic_data, folds_dir, tmp_path):
    from tests.train.helpers import TINY_RUN
    from train import checkpointing, stage
    from train.config import load_config
    from train.finetune import main as finetune
    from train.pretrain import main as pretrain

    recipe = ["model.text_source=title+asr", "model.title_len=32", "model.frame_normalization=standardize",
              "model.wide.enabled=true", "model.wide.frame_width=16", "model.wide.text_width=8"]
    pre = tmp_path / "pre"
    assert pretrain(["--model", "uniter", "--data", str(synthetic_data), "--out", str(pre), "--preset", "tiny",
                     "max_steps=4", *TINY_RUN, *recipe]) == 0
    out = tmp_path / "fold_00"
    assert finetune(["--model", "uniter", "--folds-dir", str(folds_dir), "--fold", "0", "--out", str(out),
                     "--pretrained", str(pre), "epochs=1", "steps_per_epoch=3", *TINY_RUN]) == 0
    weights, choices = wide_path.load_fit(str(out / wide_path.WIDE_FILE))
    assert choices["unlabelled_videos"] > 0 and choices["pairs"] > 0 and choices["videos"] > 0
    assert choices["title_basis"] == choices["asr_basis"] == "both"  # the decoder's tags reached the fit
    assert weights["metric"].shape == (32, load_config(out).model.embedding_dim)
    model = stage.build_stage_model(load_config(out), tf.distribute.get_strategy())
    checkpointing.restore_model(model, out / "best")
    np.testing.assert_allclose(model.wide_path.metric.numpy(), weights["metric"], atol=1e-6)  # in the checkpoint
    assert int(model.wide_path.sep_token_id.numpy()) == int(weights["sep_token_id"]) > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["epochs"][0]["val_spearman"])
    # the same finetune with the validation and test videos in the unsupervised statistics: a
    # finetune-only key (the pretrain run had it off), the test videos found in data_dir
    transductive = tmp_path / "fold_00_transductive"
    assert finetune(["--model", "uniter", "--folds-dir", str(folds_dir), "--fold", "0", "--out", str(transductive),
                     "--pretrained", str(pre), "epochs=1", "steps_per_epoch=3", *TINY_RUN,
                     "model.wide.transductive=true", f"data_dir={synthetic_data}"]) == 0
    _, with_scored = wide_path.load_fit(str(transductive / wide_path.WIDE_FILE))
    # the first run, its wide path fitted, goes on with a data_dir it did not have (finetune_all.sh now passes one)
    assert finetune(["--model", "uniter", "--folds-dir", str(folds_dir), "--fold", "0", "--out", str(out),
                     "--pretrained", str(pre), "epochs=1", "steps_per_epoch=3", *TINY_RUN,
                     f"data_dir={synthetic_data}"]) == 0
    assert wide_path.load_fit(str(out / wide_path.WIDE_FILE))[1] == choices
    from train import data as data_lib
    from train.finetune import test_files

    tests = test_files(str(synthetic_data))
    assert len(tests) == 1 and tests[0].endswith("test_a/test_a.tfrecords")
    # every test video (none is a training or unlabelled video) and the validation videos not seen in training
    assert choices["transductive_videos"] == 0
    assert with_scored["transductive_videos"] > sum(data_lib.record_counts(tests)) > 0
    assert with_scored["unlabelled_videos"] == choices["unlabelled_videos"]
    from bench.bench_wide_parts import parts_spearman  # the diagnosis tool on the same run

    gate = float(model.wide_path.gate.numpy())
    parts = parts_spearman(str(out), gates=[gate, 0.0, 50.0])
    assert parts["gate"] == pytest.approx(gate)
    assert parts["gate_scan"][gate] == pytest.approx(parts["full"], abs=1e-6)  # the trained gate is the model
    assert parts["gate_scan"][0.0] == pytest.approx(parts["deep part"], abs=1e-6)
    assert parts["gate_scan"][50.0] == pytest.approx(parts["wide path"], abs=0.02)  # wide path dominates
    assert 0.0 <= parts["deep shift"] <= 1.0 + 1e-6  # |mean deep part| / mean |deep part|
    assert -1.0 <= parts["deep centred"] <= 1.0

    # the same parts on the labelled test pairs of the synthetic data (bench.truth_on_test's sample)
    from bench import truth_on_test
    from bench.bench_wide_parts import test_parts
    from infer.embed import embed_videos, load_run
    from infer.strong_baselines import l2n

    on_test = test_parts(str(out), str(synthetic_data), max_videos=200, gates=[gate, 50.0])
    drawn = truth_on_test.labelled_sample(str(synthetic_data), max_videos=200)
    ids, embedded = embed_videos(load_run(str(out)), str(synthetic_data / "test_a" / "test_a.tfrecords"), "test",
                                 progress=False)
    row = {key: i for i, key in enumerate(ids)}
    vectors = l2n(embedded[[row[key] for key in drawn.truth.ids]][drawn.rows].astype(np.float64))
    expected = drawn.scorer.scores(vectors)[0]  # what truth_on_test gives the model's own embedding
    assert on_test["full"]["labels"] == pytest.approx(expected["labels"], abs=1e-5)
    assert on_test["full"]["truth"] == pytest.approx(expected["truth"], abs=1e-5)
    assert on_test["gate_scan"][gate] == pytest.approx(on_test["full"], abs=1e-9)
    assert on_test["gate_scan"][50.0]["labels"] == pytest.approx(on_test["wide path"]["labels"], abs=0.02)
    assert on_test["sample"] == "bins" and on_test["labelled_pairs"] == len(drawn.sample) > 0


def _frame_tags_layer():
    layer = WidePath(VOCAB, frame_width=8, text_width=2, output_size=16, frame_tags_width=4)
    layer.build(tf.TensorShape([None, None, DIM]))
    layer.sep_token_id.assign(SEP)
    return layer


def test_frame_tags_map_reads_the_topics_the_tags_follow(world):
    """The ridge from whitened mean frames to the tags, fitted without pair labels, keeps the frame
    directions that follow the topics and drops the per-video nuisance the whitening blows up."""
    import scipy.sparse

    from infer import strong_baselines as sb

    latent, frames, _, tags = world["unlabelled"]
    all_frames = np.concatenate([world["unlabelled"][1], world["scored"][1]]).astype(np.float64)
    whitener = sb.Whitener.fit(*sb.moments(all_frames), 1e-6)
    mapping = wide_path.frame_tags_map(frames.astype(np.float64), scipy.sparse.csr_matrix(tags), whitener, 6, 0, 10.0)
    assert mapping.shape[0] == DIM and 1 <= mapping.shape[1] <= 6
    scored_latent, scored_frames = world["scored"][0], world["scored"][1].astype(np.float64)
    truth = sb.l2n(scored_latent) @ sb.l2n(scored_latent).T
    upper = np.triu_indices(len(scored_latent), 1)

    def rank_truth(vectors):
        unit = sb.l2n(vectors)
        return scipy.stats.spearmanr((unit @ unit.T)[upper], truth[upper]).statistic

    through_tags = rank_truth(whitener.centred(scored_frames) @ mapping)
    whitened = rank_truth(whitener(scored_frames, DIM))
    assert through_tags > whitened + 0.1, (through_tags, whitened)
    few = scipy.sparse.csr_matrix(np.vstack([tags[:10], np.zeros((150, tags.shape[1]), np.float32)]))
    assert wide_path.frame_tags_map(frames.astype(np.float64), few, whitener, 6, 0, 10.0) is None  # 10 tagged videos


def test_wide_path_with_frames_through_the_tags_reproduces_the_fitted_metric(world):
    layer = _frame_tags_layer()
    scored = _collect(layer, *world["scored"][1:3], "v", world["scored"][3])
    unlabelled = _collect(layer, *world["unlabelled"][1:3], "u", world["unlabelled"][3])
    config = WideConfig(enabled=True, lsa_dim=6, frame_width=8, text_width=2, frame_tags_width=4)
    weights, choices, reference = wide_path.fit_wide_path(scored, unlabelled, world["pairs"], config, 16,
                                                          [PAD, CLS, SEP, MASK], SEP)
    assert choices["frame_tags"] == "tags" and choices["frame_tags_components"] <= 4
    assert weights["frame_tags_kernel"].shape == (DIM, 4) and weights["part_weights"].shape == (4,)
    assert weights["part_weights"][3] == choices["frame_tags_weight"]
    layer.set_weights_from(weights)
    out = layer(*_inputs(world["scored"][1], world["scored"][2])).numpy()
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(out @ out.T, unit @ unit.T, atol=2e-4)  # the fit's cosines, in-graph
    rebuilt = WidePath.from_config(layer.get_config())
    assert rebuilt.frame_tags_width == 4 and rebuilt.parts == ("frame", "title", "asr", "frame_tags")
    assert _layer().parts == ("frame", "title", "asr")
    with pytest.raises(ValueError, match="wide path frame_tags_kernel is missing from the fit"):
        layer.set_weights_from({key: value for key, value in weights.items() if key != "frame_tags_kernel"})

    without_tags = _collect(layer, *world["scored"][1:3], "v")
    with pytest.raises(ValueError, match="frame_tags_width > 0 reads the frames through the videos' tags"):
        wide_path.fit_wide_path(without_tags, unlabelled, world["pairs"], config, 16, [PAD, CLS, SEP, MASK], SEP)


def test_within_space_scales_the_frames_by_their_spread_within_videos(world):
    """The collector sums each video's (standardised) frames' squared deviations from its mean frame; the
    ``within`` space divides every feature by that pooled spread before the PCA, and reads the raw frames
    exactly as the strong baseline's ``within`` space does when the standardiser is diagonal."""
    import types

    from infer import strong_baselines as sb

    layer = _layer()
    rng = np.random.default_rng(3)
    moving = np.geomspace(0.1, 10.0, DIM)  # how much each feature moves inside a video
    scale = np.geomspace(0.05, 20.0, DIM)
    raw = {}
    for name in ("scored", "unlabelled"):
        means = world[name][1].astype(np.float64)
        offsets = rng.normal(size=(len(means), 3, DIM)) * moving
        raw[name] = (means[:, None, :] + offsets - offsets.mean(axis=1, keepdims=True)) * scale  # [n, 3, D]
    everything = np.concatenate([raw["unlabelled"], raw["scored"]]).reshape(-1, DIM)
    mean, std = everything.mean(0), everything.std(0)
    model = types.SimpleNamespace(wide_path=layer, frame_standardizer=lambda frames, mask: (frames - mean) / std)
    inputs = {}
    for name, prefix in (("scored", "v"), ("unlabelled", "u")):
        ids = world[name][2]
        frames = np.concatenate([raw[name], np.zeros((len(ids), 1, DIM))], axis=1)  # a padded fourth frame
        collector = wide_path._Collector(model)
        for rows in (slice(0, 100), slice(0, 150), slice(150, None)):  # a video seen twice counts once
            collector.add({"id": tf.constant([f"{prefix}{i}" for i in range(len(ids))][rows]),
                           "frames": tf.constant(frames[rows]), "frame_mask": tf.constant([[1.0, 1.0, 1.0, 0.0]] * len(ids[rows])),
                           "input_ids": tf.constant(ids[rows]), "attention_mask": tf.constant((ids[rows] != PAD).astype(np.int32)),
                           "tags": tf.constant(world[name][3][rows])})
        inputs[name] = collector.result()
        z = (raw[name] - mean) / std
        np.testing.assert_allclose(inputs[name].frame_spread.squares, ((z - z.mean(1, keepdims=True)) ** 2).sum((0, 1)),
                                   rtol=1e-6)
        assert inputs[name].frame_spread.count == 2 * len(ids)
    joined = wide_path.merged(inputs["unlabelled"], inputs["scored"])
    np.testing.assert_allclose(joined.frame_spread.squares,
                               inputs["unlabelled"].frame_spread.squares + inputs["scored"].frame_spread.squares)
    config = WideConfig(enabled=True, lsa_dim=6, frame_width=8, text_width=4, frame_space="within")
    fit = functools.partial(wide_path.fit_wide_path, inputs["scored"], inputs["unlabelled"], world["pairs"],
                            output_size=16, special_ids=[PAD, CLS, SEP, MASK], sep_token_id=SEP,
                            frame_transform=np.diag(1.0 / std))
    weights, choices, reference = fit(config)
    assert choices["frame_space"] == "within"
    k = int(choices["frame_components"])
    # the strong baseline's within space on the raw frames: the same components (up to sign)
    moments, spread = sb.MomentAccumulator(DIM), sb.WithinVideoSpread(DIM)
    for name in ("unlabelled", "scored"):
        moments.add(raw[name].mean(1))
        for video in raw[name]:
            spread.add_video(video)
    expected = sb.frame_whiteners(*moments.result(), 1e-6, ("within",), spread.std())["within"](raw["scored"].mean(1), k)
    got = (inputs["scored"].mean_frames - weights["frame_mean"]) @ weights["frame_kernel"][:, :k]
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-3, atol=1e-3)
    layer.set_weights_from(weights)  # and in-graph the path gives the fit's cosines
    out = layer(*_inputs(inputs["scored"].mean_frames.astype(np.float32), world["scored"][2])).numpy()
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(out @ out.T, unit @ unit.T, atol=2e-4)
    # auto weighs all three; without the spread (inputs from before it) auto skips within, forcing it is an error
    auto = fit(dataclasses.replace(config, frame_space="auto"))[1]
    assert {"frame_within_score", "frame_standardised_score", "frame_covariance_score"} <= set(auto)
    bare = {name: dataclasses.replace(value, frame_spread=None) for name, value in inputs.items()}
    plain = wide_path.fit_wide_path(bare["scored"], bare["unlabelled"], world["pairs"],
                                    dataclasses.replace(config, frame_space="auto"), 16, [PAD, CLS, SEP, MASK], SEP,
                                    frame_transform=np.diag(1.0 / std))[1]
    assert "frame_within_score" not in plain and "frame_covariance_score" in plain
    with pytest.raises(ValueError, match="frame_space=within scales the frames"):
        wide_path.fit_wide_path(bare["scored"], bare["unlabelled"], world["pairs"], config, 16, [PAD, CLS, SEP, MASK],
                                SEP, frame_transform=np.diag(1.0 / std))


def test_finetune_pools_the_wide_paths_frames_by_idf_and_reads_rare_words_when_asked(synthetic_data, folds_dir, tmp_path):
    from infer.frame_words import ARRAY_NAMES
    from tests.train.helpers import TINY_RUN
    from train import checkpointing, stage
    from train.config import load_config
    from train.finetune import main as finetune

    out = tmp_path / "fold_00"
    assert finetune(["--model", "uniter", "--folds-dir", str(folds_dir), "--fold", "0", "--out", str(out),
                     "--preset", "tiny", "epochs=1", "steps_per_epoch=2", *TINY_RUN, "model.text_source=title+asr",
                     "model.frame_normalization=standardize", "model.wide.enabled=true", "model.wide.frame_width=8",
                     "model.wide.text_width=4", "model.wide.frame_words=6", "model.wide.frame_words_width=3",
                     "model.wide.frame_words_fit_videos=40", "model.wide.frame_words_fits=2",
                     "model.wide.rare_words=4", "model.wide.rare_words_max_df=0.5",
                     f"data_dir={synthetic_data}"]) == 0
    weights, choices = wide_path.load_fit(str(out / wide_path.WIDE_FILE))
    dim = weights["frame_mean"].shape[0]
    assert {name: weights[name].shape for name in ARRAY_NAMES} == {
        "word_offset": (dim,), "word_projection": (dim, 3), "word_centroids": (12, 3), "word_idf": (12,)}
    assert choices["frame_words"]["words"] == 6 and choices["frame_words"]["fits"] == 2 and 0 <= choices["frame_words"]["idf_min"] < choices["frame_words"]["idf_max"]
    model = stage.build_stage_model(load_config(out), tf.distribute.get_strategy())
    checkpointing.restore_model(model, out / "best")
    for name in ARRAY_NAMES:  # in the checkpoint, and the path pools by them
        np.testing.assert_allclose(getattr(model.wide_path, name).numpy(), weights[name], atol=1e-6)
    assert (model.wide_path.frame_words, model.wide_path.frame_words_fits) == (6, 2)
    assert model.wide_path.rare_words == 4 and choices["rare_words"]["width"] == 4  # and the title's rare words
    for name in ("rare_idf", "rare_projection", "rare_basis"):
        np.testing.assert_allclose(getattr(model.wide_path, name).numpy(), weights[name], atol=1e-6)
