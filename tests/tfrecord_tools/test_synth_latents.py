"""synth.true_latents: the latents really behind the written test and pairwise videos."""
import json

import numpy as np
import pytest


def test_true_latents_reproduce_the_written_records(synthetic_data):
    import tensorflow as tf

    from tfrecord_tools import schema, synth

    truth = synth.true_latents("tiny", seed=0)
    test_ids, test_latents = truth["test"]
    written = [r.numpy() for r in tf.data.TFRecordDataset(str(synthetic_data / "test_a" / "test_a.tfrecords"))]
    assert len(test_ids) == len(written) == len(test_latents)
    np.testing.assert_allclose(np.linalg.norm(test_latents, axis=1), 1.0, atol=1e-9)
    # Render the first test chunk from these latents the way generate() does: same bytes.
    preset = synth.PRESETS["tiny"]
    world = synth.build_world(preset, 0)
    rng = synth._rng(0, synth._SPLIT_TEST, 0)
    n = min(preset.chunk_size, len(test_ids))
    np.testing.assert_array_equal(synth.fresh_latents(world, rng, n), test_latents[:n])
    videos, _ = synth.render_videos(world, rng, test_latents[:n], test_ids[:n], schema.RecordKind.TEST)
    assert [synth.serialize(v, schema.RecordKind.TEST) for v in videos[:3]] == written[:3]
    pair_ids, pair_latents = truth["pairwise"]
    assert len(pair_ids) == len(pair_latents) and len(set(pair_ids) & set(test_ids)) == 0


def test_a_test_graph_changes_only_the_test_videos_and_gives_them_near_duplicates(synthetic_data, tmp_path):
    """--test-graph (here with --test-videos 150): the test videos follow a label graph of the labelled pairs'
    shape; all else is unchanged."""
    import hashlib

    import tensorflow as tf

    from tfrecord_tools import schema, synth

    out = tmp_path / "graph"
    meta = synth.generate(out, "tiny", seed=0, progress=False, test_graph=True, test_videos=150)
    assert meta["test_graph"] is True and meta["counts"]["test_a_videos"] == 150
    assert json.loads((synthetic_data / "synth_meta.json").read_text())["test_graph"] is False

    def md5(path):
        return hashlib.md5(path.read_bytes()).hexdigest()

    for name in ("pairwise/pairwise.tfrecords", "pairwise/label.tsv", "pointwise/pretrain_0.tfrecords", "tag_list.txt"):
        assert md5(out / name) == md5(synthetic_data / name), name
    assert md5(out / "test_a/test_a.tfrecords") != md5(synthetic_data / "test_a/test_a.tfrecords")

    truth = synth.true_latents_of(meta)
    test_ids, latents = truth["test"]
    queries, candidates = truth["test_edges"]
    shape = synth.graph_test_preset(synth.with_test_videos(synth.PRESETS["tiny"], 150))
    assert len(queries) == len(candidates) == shape.pairs == 161 and shape.pair_videos == len(test_ids) == 150
    assert set(queries.tolist()) | set(candidates.tolist()) == set(range(150))  # every test video is on the graph
    # the records are rendered from these latents
    written = [r.numpy() for r in tf.data.TFRecordDataset(str(out / "test_a" / "test_a.tfrecords"))]
    assert len(written) == 150
    world = synth.build_world(synth.PRESETS["tiny"], 0)
    videos, _ = synth.render_videos(world, synth._rng(0, synth._SPLIT_TEST, 0), latents[:128], test_ids[:128],
                                    schema.RecordKind.TEST)
    assert [synth.serialize(v, schema.RecordKind.TEST) for v in videos[:3]] == written[:3]
    # the edges' true similarity is spread like the labelled pairs' (near-duplicates included);
    # independent test videos hold almost no such pair
    edge_similarity = np.einsum("nd,nd->n", latents[queries], latents[candidates])
    labelled = synth.pair_ground_truth("tiny", 0).similarity
    close = np.quantile(labelled, 0.9)
    assert 0.05 < np.mean(edge_similarity > close) < 0.35  # 0.10 for the labelled pairs; 161 edges here
    near_duplicate = np.quantile(labelled, 0.95)
    fresh = synth.true_latents("tiny", seed=0)["test"][1]
    fresh_pairs = (fresh @ fresh.T)[np.triu_indices(len(fresh), 1)]
    assert np.sum(edge_similarity > near_duplicate) >= 5 and np.sum(fresh_pairs > near_duplicate) == 0


def test_graph_test_preset_scales_the_label_graph_to_the_test_videos():
    from tfrecord_tools import synth

    demo = synth.PRESETS["demo"]
    shape = synth.graph_test_preset(demo)
    assert (shape.pair_videos, shape.pair_queries, shape.pairs) == (1_000, 469, 1_094)
    assert shape.test_videos == demo.test_videos and shape.topics == demo.topics
    too_few = synth.with_test_videos(synth.PRESETS["tiny"], 20)
    with pytest.raises(ValueError, match="test_graph: 20 test videos cannot hold a label graph"):
        synth.graph_test_latents(synth.build_world(too_few, 0), 0)
    assert synth.with_test_videos(demo, None) is demo
    with pytest.raises(ValueError, match="test_videos must be a positive integer, got 0"):
        synth.with_test_videos(demo, 0)


def test_the_command_line_draws_a_test_graph_and_refuses_a_bad_count(tmp_path, capsys):
    from tfrecord_tools import synth

    assert synth.main(["--out", str(tmp_path / "d"), "--size", "tiny", "--test-graph", "--test-videos", "120",
                       "--no-progress"]) == 0
    meta = json.loads((tmp_path / "d" / "synth_meta.json").read_text())
    assert meta["test_graph"] is True and meta["counts"]["test_a_videos"] == 120
    assert "test_a 120 videos" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        synth.main(["--out", str(tmp_path / "e"), "--size", "tiny", "--test-videos", "0", "--no-progress"])
    assert stopped.value.code == 2
    assert "test_videos must be a positive integer, got 0" in capsys.readouterr().err
