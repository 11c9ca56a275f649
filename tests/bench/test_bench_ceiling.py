"""bench.bench_ceiling: the ridge readout of the true latent and the ceilings of a synthetic data set."""
import json

import numpy as np
import pytest

from bench import bench_ceiling
from infer.strong_baselines import pair_spearman


def _pairs(latents, rng, n=400):
    q, c = rng.integers(len(latents), size=n), rng.integers(len(latents), size=n)
    unit = latents / np.linalg.norm(latents, axis=1, keepdims=True)
    score = np.einsum("ij,ij->i", unit[q], unit[c]) + rng.normal(0, 0.05, n)
    return q, c, score


def test_readout_recovers_a_linearly_encoded_latent_and_not_noise():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(600, 8))
    encoded = latents @ rng.normal(size=(8, 30)) + rng.normal(0, 0.05, size=(600, 30))
    q, c, score = _pairs(latents, rng)
    fit_rows = np.arange(600)
    exact = pair_spearman(latents, q, c, score)
    got, lam = bench_ceiling.best_readout(encoded, latents, fit_rows, q, c, score)
    assert lam in bench_ceiling.LAMBDAS
    assert got == pytest.approx(exact, abs=0.01)
    noise, _ = bench_ceiling.best_readout(rng.normal(size=(600, 30)), latents, fit_rows[:300], q, c, score)
    assert noise < 0.3 < exact


def test_ridge_readout_is_centred_on_the_fit_rows():
    x = np.array([[1.0], [3.0], [100.0]])
    target = np.array([[2.0], [6.0], [0.0]])
    out = bench_ceiling.ridge_readout(x, target, np.array([0, 1]), lam=0.0)
    np.testing.assert_allclose(out[:2, 0], [-2.0, 2.0])  # slope 2 around the fit rows' mean (2)
    np.testing.assert_allclose(out[2, 0], 2.0 * 98.0)


def test_measure_a_tiny_world(synthetic_data, folds_dir, tmp_path):
    folds = json.loads((folds_dir / "folds.json").read_text())
    pairs_in_fold0 = next(int(f["pairs"]) for f in folds["folds"] if int(f["fold"]) == 0)
    row = bench_ceiling.measure(str(synthetic_data), str(folds_dir), [0])
    meta = json.loads((synthetic_data / "synth_meta.json").read_text())
    assert row["world"] == "demo" and row["seed"] == meta["seed"]
    assert row["pairs"] == pairs_in_fold0 and row["fit_videos"] > 0
    for key in ["oracle", *(f"view:{m}" for m in meta["latent"]["views"]),
                *(f"readout:{name}" for name in bench_ceiling.READOUTS),
                *(f"known:{name}" for name in bench_ceiling.KNOWN_READOUTS)]:
        assert -1.0 <= row[key] <= 1.0, key
    assert row["oracle"] > 0.5  # the labels are noisy ranks of the latent cosine
    assert row["readout:all:lambda"] in bench_ceiling.LAMBDAS
    out = tmp_path / "ceiling.md"
    assert bench_ceiling.main(["--data", str(synthetic_data), "--folds-dir", str(folds_dir), "--folds", "0",
                               "--markdown", str(out)]) == 0
    table = out.read_text().splitlines()
    assert table[0].startswith("| world | seed | pairs | oracle |")
    assert table[2].startswith(f"| demo | {meta['seed']} | {pairs_in_fold0} |")


@pytest.fixture(scope="module")
def foreign_data(tmp_path_factory):
    from bench import foreign_world
    from tfrecord_tools import folds

    out = tmp_path_factory.mktemp("foreign") / "data"
    foreign_world.generate(str(out), seed=1, sizes=foreign_world.TINY, progress=False)
    folds.write_fold_shards(out / "pairwise" / "pairwise.tfrecords", out / "pairwise" / "label.tsv", out / "folds",
                            num_folds=3, progress=False)
    return out


def test_measure_a_foreign_world_from_its_stored_latents(foreign_data):
    row = bench_ceiling.measure(str(foreign_data), str(foreign_data / "folds"), [0, 1])
    assert row["world"] == "bench.foreign_world" and row["seed"] == 1
    assert sorted(key for key in row if ":" in key and not key.endswith("lambda")) == sorted(
        f"readout:{name}" for name in bench_ceiling.READOUTS)  # no views, no known words: not a synth world
    assert row["oracle"] > 0.5 and all(-1.0 <= row[f"readout:{name}"] <= 1.0 for name in bench_ceiling.READOUTS)
    truth = np.load(foreign_data / "test_truth.npz")
    assert row["fit_videos"] < len(truth["labelled_ids"]) + len(truth["ids"])  # the held pairs' videos left out


def test_a_stored_truth_without_the_labelled_latents_is_named(foreign_data, tmp_path):
    from tfrecord_tools.errors import DataError

    with np.load(foreign_data / "test_truth.npz") as handle:
        arrays = {key: handle[key] for key in handle.files if not key.startswith("labelled_")}
    older = tmp_path / "test_truth.npz"
    np.savez(older, labelled_similarity=np.zeros(3), **arrays)
    with pytest.raises(DataError, match=r"test_truth\.npz.*labelled_latents.*generate the data set again"):
        bench_ceiling.stored_latents(str(older))
    np.savez(older, labelled_similarity=np.zeros(3), labelled_ids=np.array(["a", "b"]),
             labelled_latents=np.ones((2, 3)), **arrays)
    with pytest.raises(DataError, match=r"labelled_latents.*shape \(2, 3\), expected \(2, "):
        bench_ceiling.stored_latents(str(older))


def test_a_data_set_with_no_truth_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        bench_ceiling.main(["--data", str(tmp_path)])
    assert stop.value.code == 2 and "neither synth_meta.json nor test_truth.npz" in capsys.readouterr().err


def test_known_word_features_sum_the_meanings_of_the_topic_words_only():
    from tfrecord_tools import synth

    world = synth.build_world(synth.world_preset("tiny"), seed=0)
    first, second = (int(w) for w in world.topic_words[3, :2])
    general = int(world.general_words[0])
    text = "，".join([world.words[first], world.words[second], world.words[general], "的"])
    features = bench_ceiling.known_word_features(world, [text, "nan", world.words[general]], "title")
    width = world.word_vectors.shape[1]
    view = np.concatenate([np.arange(*synth.BLOCKS[b]) for b in dict(world.preset.model.views)["title"]])
    n_topics = len(world.topic_vectors)
    assert features.shape == (3, width + len(view) + n_topics)
    np.testing.assert_allclose(features[0, :width], world.word_vectors[first] + world.word_vectors[second], rtol=1e-6)
    np.testing.assert_allclose(features[0, width:-n_topics], 2 * world.topic_vectors[3, view], rtol=1e-6)
    assert features[0, -n_topics + 3] == 2 and features[0, -n_topics:].sum() == 2
    assert not features[1:].any()  # a missing text and a general word say nothing about the latent
    asr = bench_ceiling.known_word_features(world, [text], "asr")
    np.testing.assert_allclose(asr[0, :world.asr_word_vectors.shape[1]],
                               world.asr_word_vectors[first] + world.asr_word_vectors[second], rtol=1e-6)


def test_two_data_sets_with_one_folds_dir_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        bench_ceiling.main(["--data", str(tmp_path), str(tmp_path), "--folds-dir", str(tmp_path)])
    assert stop.value.code == 2 and "--folds-dir" in capsys.readouterr().err
