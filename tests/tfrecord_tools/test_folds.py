"""Fold assignment and fold-shard writing (tfrecord_tools.folds, tfrecord_tools.record_index)."""
import collections
import csv
import os
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf

from tfrecord_tools import folds, reader, record_index, schema, writer
from tfrecord_tools.errors import DataError, LabelError, RecordError
from tfrecord_tools.labels import file_md5, read_labels

NUM_GROUPS = 12  # connected components of the tiny label graph
NUM_FOLDS = 4


def _video(rng: np.random.Generator, video_id: str) -> dict:
    asr = "nan" if rng.random() < 0.3 else "语音 文本"
    return {"id": video_id, "title": f"标题 {video_id}", "asr_text": asr,
            "frames": rng.standard_normal((int(rng.integers(2, 5)), schema.FRAME_DIM)).astype(np.float16),
            "tag_id": [int(t) for t in rng.integers(1, 10**6, int(rng.integers(0, 4)))],
            "category_id": int(rng.integers(10000, 20000))}


def build_dataset(root, seed: int = 0) -> dict:
    """A tiny pairwise data set: NUM_GROUPS components of 2-5 videos, a chain plus extra edges in each."""
    rng = np.random.default_rng(seed)
    groups, next_id = [], 10**15
    for _ in range(NUM_GROUPS):
        size = int(rng.integers(2, 6))
        groups.append([str(next_id + k * 37) for k in range(size)])
        next_id += 10**6
    lines = []
    for group in groups:
        edges = [(group[k], group[k + 1]) for k in range(len(group) - 1)]
        edges += [(group[-1], group[0])] if len(group) > 2 else [(group[1], group[0])]
        lines += [f"{a}\t{b}\t{round(0.05 * int(rng.integers(0, 21)), 2)}" for a, b in edges]
    videos = [_video(rng, video_id) for group in groups for video_id in group]
    videos.append(_video(rng, "999"))  # in the pairwise file but in no label line: allowed
    order = rng.permutation(len(videos))
    records = [writer.serialize_video(videos[k], schema.RecordKind.PAIRWISE) for k in order]
    pairwise_dir = os.path.join(root, "pairwise")
    os.makedirs(pairwise_dir, exist_ok=True)
    pairwise = os.path.join(pairwise_dir, "pairwise.tfrecords")
    writer.write_records(pairwise, records)
    label_path = os.path.join(pairwise_dir, "label.tsv")
    with open(label_path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return {"root": str(root), "pairwise": pairwise, "labels": label_path, "records": records,
            "groups": groups}


def read_shard(path):
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def text(example, key):
    return example.features.feature[key].bytes_list.value[0].decode("utf-8")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("folds_data"))


@pytest.fixture(scope="module")
def pairs_set(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs_folds")
    info = folds.write_fold_shards(dataset["pairwise"], dataset["labels"], out, num_folds=NUM_FOLDS, seed=7,
                                   progress=False)
    return out, info


@pytest.fixture(scope="module")
def components_set(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("component_folds")
    info = folds.write_fold_shards([dataset["pairwise"]], dataset["labels"], out, num_folds=NUM_FOLDS, seed=7,
                                   split="components", progress=False)
    return out, info


# ---------------------------------------------------------------- assignment (labels only)

def test_pairs_split_near_equal_complete_and_seeded(dataset):
    labels = read_labels(dataset["labels"])
    assigned = folds.assign_folds(labels, NUM_FOLDS, seed=3, split="pairs")
    assert assigned.shape == (len(labels),) and set(assigned.tolist()) == set(range(NUM_FOLDS))
    counts = np.bincount(assigned, minlength=NUM_FOLDS)
    assert counts.sum() == len(labels) and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(assigned, folds.assign_folds(labels, NUM_FOLDS, seed=3, split="pairs"))
    assert not np.array_equal(assigned, folds.assign_folds(labels, NUM_FOLDS, seed=4, split="pairs"))


def test_components_split_keeps_components_whole(dataset):
    labels = read_labels(dataset["labels"])
    assigned = folds.assign_folds(labels, NUM_FOLDS, seed=3, split="components")
    video_folds = collections.defaultdict(set)
    for query, candidate, fold in zip(labels.query, labels.candidate, assigned):
        video_folds[query].add(fold)
        video_folds[candidate].add(fold)
    assert all(len(f) == 1 for f in video_folds.values())
    for group in dataset["groups"]:  # each built group is one component, in one fold
        assert len({next(iter(video_folds[v])) for v in group}) == 1
    assert set(assigned.tolist()) == set(range(NUM_FOLDS))
    # greedy largest-first: no fold exceeds the lightest by more than the largest component
    counts = np.bincount(assigned, minlength=NUM_FOLDS)
    largest = max(len(g) for g in dataset["groups"])  # a group of n videos has n pairs (n >= 3) or 2
    assert counts.max() - counts.min() <= largest
    np.testing.assert_array_equal(assigned, folds.assign_folds(labels, NUM_FOLDS, seed=3, split="components"))


def test_label_graph_counts_components(dataset):
    graph = folds.label_graph(read_labels(dataset["labels"]))
    assert graph.num_components == NUM_GROUPS
    assert sorted(np.bincount(graph.video_component).tolist()) == sorted(len(g) for g in dataset["groups"])


def test_assign_folds_rejects_impossible_requests(dataset):
    labels = read_labels(dataset["labels"])
    with pytest.raises(ValueError, match="12 connected components, too few for 13 folds"):
        folds.assign_folds(labels, 13, split="components")
    with pytest.raises(ValueError, match="split must be one of"):
        folds.assign_folds(labels, 4, split="videos")
    with pytest.raises(ValueError, match="num_folds must be an integer >= 2"):
        folds.assign_folds(labels, 1)
    with pytest.raises(ValueError, match="cannot fill"):
        folds.assign_folds(labels, len(labels) + 1)


def test_real_label_graph_components_match_graph_info(shared_data):
    labels = read_labels(shared_data / "label.tsv")
    graph = folds.label_graph(labels)
    assert graph.num_components == 22040
    assert len(graph.video_ids) == 63613 and np.bincount(graph.video_component).max() == 16664
    with open(shared_data / "graph_info.csv", newline="") as handle:
        official = {row["id"]: row["g_id"] for row in csv.DictReader(handle)}
    ours = dict(zip(graph.video_ids.tolist(), graph.video_component.tolist()))
    assert official.keys() == ours.keys() and len(set(official.values())) == 22040
    # same partition: each of our components maps to exactly one official group and back
    assert len({(ours[v], official[v]) for v in ours}) == 22040
    assigned = folds.assign_folds(labels, 11, seed=42, split="components")
    video_fold = {}
    for query, candidate, fold in zip(labels.query, labels.candidate, assigned.tolist()):
        for video in (query, candidate):
            assert video_fold.setdefault(video, fold) == fold, f"video {video} in two folds"
    stats = folds.fold_statistics(labels, assigned, 11)
    assert stats["videos_in_several_folds"] == 0 and stats["balance"]["max_over_mean"] > 2


# ---------------------------------------------------------------- writing shards

def test_shards_disjoint_complete_and_sized(dataset, pairs_set):
    out, info = pairs_set
    labels = read_labels(dataset["labels"])
    expected = folds.assign_folds(labels, NUM_FOLDS, seed=7, split="pairs")
    line_of = {(q, c): k for k, (q, c) in enumerate(zip(labels.query, labels.candidate))}
    seen = []
    for fold in range(NUM_FOLDS):
        examples = read_shard(os.path.join(out, folds.shard_name(fold)))
        lines = [line_of[(text(e, "id_1"), text(e, "id_2"))] for e in examples]
        assert all(expected[k] == fold for k in lines)
        assert len(examples) == info["folds"][fold]["pairs"]
        assert lines != sorted(lines)  # shuffled within the shard, not in label order
        seen += lines
    assert sorted(seen) == list(range(len(labels)))  # every label line in exactly one shard
    counts = [entry["pairs"] for entry in info["folds"]]
    assert max(counts) - min(counts) <= 1


def test_pair_records_copy_source_videos_byte_for_byte(dataset, pairs_set):
    out, _ = pairs_set
    sources = {}
    for record in dataset["records"]:
        example = tf.train.Example.FromString(record)
        sources[text(example, "id")] = example.features.feature
    labels = read_labels(dataset["labels"])
    score = {(q, c): s for q, c, s in zip(labels.query, labels.candidate, labels.score)}
    spec = set(schema.pair_feature_spec())
    for fold in range(NUM_FOLDS):
        for example in read_shard(os.path.join(out, folds.shard_name(fold))):
            feature = example.features.feature
            assert set(feature.keys()) == spec
            key = (text(example, "id_1"), text(example, "id_2"))
            for video_id, suffix in zip(key, schema.PAIR_SUFFIXES):
                for raw_key in schema.required_keys(schema.RecordKind.PAIRWISE):
                    assert (feature[raw_key + suffix].SerializeToString(deterministic=True)
                            == sources[video_id][raw_key].SerializeToString(deterministic=True))
            assert list(feature["sim"].float_list.value) == [score[key]]
    # the real reader spec parses a shard record
    record = next(iter(tf.data.TFRecordDataset(os.path.join(out, folds.shard_name(0)))))
    parsed = tf.io.parse_single_example(record, schema.pair_feature_spec())
    assert tf.sparse.to_dense(parsed["frame_feature_1"]).shape[0] >= 2


def test_folds_json_describes_the_set(dataset, pairs_set):
    out, info = pairs_set
    on_disk = folds.read_folds_info(out)
    assert on_disk == info
    labels = read_labels(dataset["labels"])
    assert info["labels"]["md5"] == file_md5(dataset["labels"])
    assert info["labels"]["path"] == os.path.abspath(dataset["labels"])
    assert info["pairwise_files"] == [os.path.abspath(dataset["pairwise"])]
    assert (info["num_folds"], info["seed"], info["split"]) == (NUM_FOLDS, 7, "pairs")
    assert info["num_pairs"] == len(labels) and info["num_videos"] == len(labels.video_ids())
    assert info["pairwise_videos"] == len(dataset["records"])
    for entry in info["folds"]:
        path = os.path.join(out, entry["file"])
        assert entry["bytes"] == os.path.getsize(path)
        ids = {text(e, k) for e in read_shard(path) for k in ("id_1", "id_2")}
        assert entry["videos"] == len(ids)
    assert sorted(os.listdir(out)) == sorted([folds.FOLDS_JSON] + [folds.shard_name(k) for k in range(NUM_FOLDS)])


def test_fold_files_and_incomplete_sets(pairs_set, tmp_path):
    out, _ = pairs_set
    train, val = folds.fold_files(out, 2)
    assert val == os.path.join(out, folds.shard_name(2))
    assert train == [os.path.join(out, folds.shard_name(k)) for k in (0, 1, 3)]
    with pytest.raises(ValueError, match="fold must be in 0..3"):
        folds.fold_files(out, 4)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    os.remove(copy / folds.shard_name(1))
    with pytest.raises(DataError, match="fold_01.tfrecords.*missing"):
        folds.fold_files(copy, 0)
    os.remove(copy / folds.FOLDS_JSON)
    with pytest.raises(DataError, match="folds.json: missing: the fold shards are incomplete"):
        folds.fold_files(copy, 0)


def test_summary_prints_every_fold(pairs_set, capsys):
    out, info = pairs_set
    printed = folds.summary(out)
    assert capsys.readouterr().out.strip() == printed
    assert f"{NUM_FOLDS} folds, split=pairs, seed=7" in printed
    for entry in info["folds"]:
        assert any(line.split()[:2] == [str(entry["fold"]), str(entry["pairs"])] for line in printed.splitlines())


def test_summary_warns_about_unbalanced_component_folds(components_set, capsys):
    _, info = components_set
    assert "warning" not in folds.summary(info)
    lopsided = dict(info, balance=dict(info["balance"], max_over_mean=6.96, max_pairs=42959, mean_pairs=6172.6))
    assert folds.summary(lopsided).splitlines()[-1] == (
        "warning: unbalanced folds (largest 42959 pairs, mean 6173): a connected component cannot be split")


def test_components_shards_share_no_video(components_set):
    out, info = components_set
    owner = {}
    for fold in range(NUM_FOLDS):
        for example in read_shard(os.path.join(out, folds.shard_name(fold))):
            for key in ("id_1", "id_2"):
                assert owner.setdefault(text(example, key), fold) == fold
    assert info["videos_in_several_folds"] == 0
    assert info["components"]["count"] == NUM_GROUPS
    assert info["split"] == "components" and "connected components" in info["split_rule"]


def test_writing_is_deterministic_and_reads_several_files(dataset, pairs_set, tmp_path):
    out, _ = pairs_set
    # the same videos split over two pairwise files give byte-identical shards
    records = dataset["records"]
    first, second = tmp_path / "a.tfrecords", tmp_path / "b.tfrecords"
    writer.write_records(first, records[:10])
    writer.write_records(second, records[10:])
    again = tmp_path / "again"
    info = folds.write_fold_shards([first, second], dataset["labels"], again, num_folds=NUM_FOLDS, seed=7,
                                   progress=False)
    assert info["pairwise_files"] == [str(first), str(second)]
    for fold in range(NUM_FOLDS):
        name = folds.shard_name(fold)
        assert (again / name).read_bytes() == (out / name).read_bytes()
    other = tmp_path / "other_seed"
    folds.write_fold_shards(dataset["pairwise"], dataset["labels"], other, num_folds=NUM_FOLDS, seed=8,
                            progress=False)
    assert any((other / folds.shard_name(k)).read_bytes() != (out / folds.shard_name(k)).read_bytes()
               for k in range(NUM_FOLDS))


# ---------------------------------------------------------------- bad input and atomicity

def _copy_labels(dataset, tmp_path, extra_line=None):
    path = tmp_path / "label.tsv"
    content = open(dataset["labels"], encoding="utf-8").read()
    path.write_text(content + (extra_line + "\n" if extra_line else ""), encoding="utf-8")
    return path, content.count("\n")


def test_unknown_label_id_fails_before_any_shard(dataset, tmp_path):
    labels_path, lines = _copy_labels(dataset, tmp_path, f"{dataset['groups'][0][0]}\t123456789\t0.5")
    out = tmp_path / "out"
    with pytest.raises(LabelError, match=rf"line {lines + 1}: candidate_id 123456789 is not in the pairwise"):
        folds.write_fold_shards(dataset["pairwise"], labels_path, out, num_folds=NUM_FOLDS, progress=False)
    assert not out.exists() or os.listdir(out) == []


def test_failure_mid_write_leaves_no_partial_files(dataset, pairs_set, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(pairs_set[0], out)  # a complete older set in the same directory
    calls = {"n": 0}
    original = folds.pair_example

    def failing(*args):
        calls["n"] += 1
        if calls["n"] == 20:  # inside the second or a later shard
            raise OSError("disk full")
        return original(*args)

    monkeypatch.setattr(folds, "pair_example", failing)
    with pytest.raises(OSError, match="disk full"):
        folds.write_fold_shards(dataset["pairwise"], dataset["labels"], out, num_folds=NUM_FOLDS, progress=False)
    left = os.listdir(out)
    assert folds.FOLDS_JSON not in left  # the old set no longer counts as complete
    assert not [name for name in left if name.endswith(".tmp") or name.startswith(".")]
    with pytest.raises(DataError, match="incomplete"):
        folds.fold_files(out, 0)
    fresh = tmp_path / "fresh"
    calls["n"] = 0
    with pytest.raises(OSError):
        folds.write_fold_shards(dataset["pairwise"], dataset["labels"], fresh, num_folds=NUM_FOLDS, progress=False)
    assert not fresh.exists()  # the writer's lock created it; a failed writer leaves nothing (issue 10)


def _flip_bit(path, position):
    data = bytearray(open(path, "rb").read())
    data[position] ^= 0x10
    open(path, "wb").write(bytes(data))


def _record_starts(records):
    starts, offset = [], 0
    for record in records:
        starts.append(offset)
        offset += 16 + len(record)
    return starts


def test_corrupt_pairwise_file_names_file_and_record(dataset, tmp_path):
    bad = tmp_path / "pairwise.tfrecords"
    shutil.copy(dataset["pairwise"], bad)
    starts = _record_starts(dataset["records"])
    _flip_bit(bad, starts[5] + 12 + 3000)  # inside record 5's frame bytes: only the CRC can tell
    out = tmp_path / "out"
    with pytest.raises(RecordError, match=r"pairwise.tfrecords, record 5: corrupt or truncated record") as error:
        folds.write_fold_shards(bad, dataset["labels"], out, num_folds=NUM_FOLDS, progress=False)
    assert error.value.path == str(bad) and error.value.index == 5
    assert not out.exists() or os.listdir(out) == []
    truncated = tmp_path / "truncated.tfrecords"
    truncated.write_bytes(open(dataset["pairwise"], "rb").read()[: starts[7] + 100])
    with pytest.raises(RecordError, match="record 7: corrupt or truncated"):
        record_index.index_videos([truncated])


def test_duplicate_video_id_is_an_error(dataset, tmp_path):
    records = dataset["records"]
    path = tmp_path / "dup.tfrecords"
    writer.write_records(path, records + [records[3]])
    with pytest.raises(RecordError,
                       match=rf"record {len(records)}: duplicate video id \d+: already in .*record 3"):
        record_index.index_videos([path])
    # across two files too
    other = tmp_path / "other.tfrecords"
    writer.write_records(other, records[2:4])
    with pytest.raises(RecordError, match="other.tfrecords, record 0: duplicate video id"):
        record_index.index_videos([dataset["pairwise"], other])


@pytest.mark.parametrize("change, message", [
    (lambda f: f["frame_feature"].bytes_list.value.append(b"\0" * 100),
     "frame 4 has 100 bytes, expected 3072"),
    (lambda f: f.__delitem__("title"), "missing key 'title'"),
    (lambda f: f["category_id"].int64_list.value.append(3), "key 'category_id' holds 2 values, expected 1"),
    (lambda f: f["tag_id"].CopyFrom(tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))),
     "key 'tag_id' holds float_list, expected int64_list"),
    (lambda f: f["id"].bytes_list.value.__setitem__(0, b"12ab"), "id '12ab' is not a decimal id"),
])
def test_bad_video_record_names_file_and_record(dataset, tmp_path, change, message):
    """The index reports a bad record in the readers' words (one validator, tfrecord_tools.validation)."""
    rng = np.random.default_rng(1)
    video = _video(rng, "4242")
    video["frames"] = rng.standard_normal((4, schema.FRAME_DIM)).astype(np.float16)
    example = tf.train.Example.FromString(writer.serialize_video(video, schema.RecordKind.PAIRWISE))
    change(example.features.feature)
    path = tmp_path / "bad.tfrecords"
    writer.write_records(path, dataset["records"][:2] + [example.SerializeToString()])
    with pytest.raises(RecordError, match=rf"bad.tfrecords, record 2: {message}") as indexed:
        record_index.index_videos([path])
    if "decimal" not in message:  # the one rule of the index's own
        with pytest.raises(RecordError) as read:
            list(reader.read_raw_videos(path, schema.RecordKind.PAIRWISE))
        assert read.value.problem == indexed.value.problem


def test_masked_crc32c_matches_tensorflow_framing(dataset):
    data = open(dataset["pairwise"], "rb").read()
    record = dataset["records"][0]
    length, length_crc = struct.unpack("<QI", data[:12])
    assert length == len(record) and record_index.masked_crc32c(data[:8]) == length_crc
    (data_crc,) = struct.unpack("<I", data[12 + length:16 + length])
    assert record_index.masked_crc32c(record) == data_crc
    assert record_index.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_reader_seeks_to_each_video(dataset):
    index = record_index.index_videos([dataset["pairwise"]])
    assert len(index) == len(dataset["records"]) and "999" in index
    with index.open() as reader:
        for record in reversed(dataset["records"]):
            video_id = text(tf.train.Example.FromString(record), "id")
            assert reader.read_bytes(video_id) == record
