"""bench.foreign_world: an independent generator writing the official layout and its stored truth."""
import json

import numpy as np
import pytest
import scipy.stats

from bench import foreign_world
from tfrecord_tools import layout, schema
from tfrecord_tools.reader import read_raw_videos


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("foreign")
    meta = foreign_world.generate(str(out), seed=3, sizes=foreign_world.TINY, progress=False)
    return out, meta


def _label_lines(out):
    return [line.split("\t") for line in (out / "pairwise" / "label.tsv").read_text().splitlines()]


def test_writes_every_file_of_the_official_layout_in_records_the_readers_accept(tiny_world):
    out, meta = tiny_world
    pairwise = list(read_raw_videos(layout.pairwise_file(str(out)), schema.RecordKind.PAIRWISE))
    pointwise = list(read_raw_videos(out / "pointwise" / "pretrain_0.tfrecords", schema.RecordKind.POINTWISE))
    test = list(read_raw_videos(out / "test_a" / "test_a.tfrecords", schema.RecordKind.TEST))
    assert len(pointwise) == meta["counts"]["pointwise_videos"] == 150
    assert len(pairwise) == meta["counts"]["pairwise_videos"] and len(test) == meta["counts"]["test_videos"]
    ids = [v["id"] for v in pointwise + pairwise + test]
    assert len(set(ids)) == len(ids)  # no id reused between splits
    frames = np.concatenate([np.asarray(v["frames"], dtype=np.float32) for v in pairwise])
    assert frames.shape[1] == schema.FRAME_DIM and frames.min() >= 0.0  # ReLU features
    assert 0.4 < (frames == 0).mean() < 0.9  # sparse, like a CNN's pooled activations
    assert all(5 <= len(v["frames"]) <= 32 for v in pairwise)
    assert all(v["tag_id"] == sorted(set(v["tag_id"])) and v["category_id"] >= 10000 for v in pairwise)
    lines = _label_lines(out)
    assert len(lines) == meta["counts"]["pairs"] == 150
    pair_ids = {v["id"] for v in pairwise}
    assert all(q in pair_ids and c in pair_ids for q, c, _ in lines)
    assert len({frozenset((q, c)) for q, c, _ in lines}) == len(lines)  # each pair listed once, never q == c
    assert all(q != c for q, c, _ in lines)
    scores = np.array([float(s) for _, _, s in lines])
    assert np.allclose(scores, np.round(scores / 0.05) * 0.05) and scores.min() >= 0 and scores.max() <= 1
    tags = (out / "tag_list.txt").read_text().split()
    assert 0 < len(tags) <= schema.NUM_TAGS and len(set(tags)) == len(tags)
    assert not (out / layout.SYNTH_META).exists()  # demo.sh must take it as a user's data set
    assert json.loads((out / foreign_world.FOREIGN_META).read_text())["generator"] == "bench.foreign_world"


def test_stored_truth_matches_the_test_records_and_ranks_like_the_labels(tiny_world):
    out, meta = tiny_world
    truth = np.load(out / foreign_world.STORED_TRUTH)
    test = list(read_raw_videos(out / "test_a" / "test_a.tfrecords", schema.RecordKind.TEST))
    assert truth["ids"].tolist() == [v["id"] for v in test]
    latents = truth["latents"]
    assert np.allclose(np.linalg.norm(latents, axis=1), 1.0)
    first, second, labels = truth["edge_first"], truth["edge_second"], truth["edge_labels"]
    assert len(first) == len(second) == len(labels) == meta["counts"]["test_pairs"]
    similarity = np.einsum("ij,ij->i", latents[first], latents[second])
    assert scipy.stats.spearmanr(similarity, labels)[0] == pytest.approx(meta["test_oracle_spearman"])
    assert meta["test_oracle_spearman"] > 0.8 and meta["oracle_spearman"] > 0.8
    assert len(truth["labelled_similarity"]) == meta["counts"]["pairs"]
    assert json.loads(str(truth["meta"]))["seed"] == 3


def test_stored_truth_holds_the_labelled_videos_latents_behind_their_labels(tiny_world):
    out, _ = tiny_world
    truth = np.load(out / foreign_world.STORED_TRUTH)
    pairwise = list(read_raw_videos(layout.pairwise_file(str(out)), schema.RecordKind.PAIRWISE))
    assert truth["labelled_ids"].tolist() == [v["id"] for v in pairwise]
    latents = truth["labelled_latents"]
    assert latents.shape == (len(pairwise), truth["latents"].shape[1])
    assert np.allclose(np.linalg.norm(latents, axis=1), 1.0)
    row = {key: i for i, key in enumerate(truth["labelled_ids"].tolist())}
    first, second = zip(*((row[q], row[c]) for q, c, _ in _label_lines(out)))
    similarity = np.einsum("ij,ij->i", latents[list(first)], latents[list(second)])
    np.testing.assert_allclose(similarity, truth["labelled_similarity"])  # label.tsv's lines, in its order


def test_same_seed_same_data_another_seed_another_world(tiny_world, tmp_path):
    out, _ = tiny_world
    again = tmp_path / "again"
    foreign_world.generate(str(again), seed=3, sizes=foreign_world.TINY, progress=False)
    assert (again / "pairwise" / "label.tsv").read_bytes() == (out / "pairwise" / "label.tsv").read_bytes()
    assert (again / "pairwise" / "pairwise.tfrecords").read_bytes() == (out / "pairwise" / "pairwise.tfrecords").read_bytes()
    other = tmp_path / "other"
    foreign_world.generate(str(other), seed=4, sizes=foreign_world.TINY, progress=False)
    assert (other / "pairwise" / "label.tsv").read_bytes() != (out / "pairwise" / "label.tsv").read_bytes()


def test_refuses_to_overwrite_a_data_set_unless_asked(tiny_world, capsys):
    out, _ = tiny_world
    with pytest.raises(FileExistsError, match="already holds a data set"):
        foreign_world.generate(str(out), seed=3, sizes=foreign_world.TINY, progress=False)
    assert foreign_world.main(["--out", str(out), "--size", "tiny", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_sizes_are_checked():
    with pytest.raises(ValueError, match="pairs .* must be at least queries"):
        foreign_world.Sizes(queries=10, pairs=5)
