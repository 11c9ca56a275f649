"""Readers: golden values of the two real videos, frame sampling, round trips of every record kind,
and a clear error naming file and record for every kind of bad input."""
import numpy as np
import pytest
import tensorflow as tf

from tfrecord_tools import reader, tokenization, writer
from tfrecord_tools.errors import RecordError
from tfrecord_tools.tags import TagVocab

FIRST, SECOND = "967112847563400570", "8172871013774497198"
FIRST_TAGS = [6019529, 288120, 598211, 37610473, 55803230]
DIM = 16  # small frames for synthetic records (the real sample uses 1536)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    titles = ["太土豪！世界首家24k纯金酒店在越南开业。马桶都镀金", "日本神职人员网络走红，祭典扮大葱，只为祈福消灾！",
              "标题零一二三四五六七八九"]
    out = tmp_path_factory.mktemp("tokenizer")
    tokenization.build_vocab(titles, out, kind="bert")
    return tokenization.load_tokenizer(out, "bert")


@pytest.fixture(scope="module")
def real_vocab(shared_data):
    return TagVocab.from_file(shared_data / "tag_list.txt")


# ----------------------------------------------------------------------------- golden


def _check_golden_frames(frames, n, low, high, mean_norm, total):
    frames = np.asarray(frames, dtype=np.float32)
    assert frames.shape == (n, 1536)
    assert frames.min() == low and frames.max() == high
    assert np.linalg.norm(frames, axis=1).mean() == pytest.approx(mean_norm, abs=1e-3)
    assert frames.sum(dtype=np.float64) == pytest.approx(total, abs=1e-3)


GOLDEN = {FIRST: (15, -0.25927734375, 3.435546875, 11.164, 1010.8177),
          SECOND: (10, -0.2418212890625, 3.302734375, 13.028, 2055.5867)}


def test_golden_raw(shared_data):
    sample = shared_data / "sample"
    pairwise = list(reader.read_raw_videos(sample / "pairwise.tfrecords", "pairwise"))
    test = list(reader.read_raw_videos(sample / "test_a.tfrecords", "test"))
    assert [v["id"] for v in pairwise] == [v["id"] for v in test] == [FIRST, SECOND]
    first = pairwise[0]
    assert first["title"] == "太土豪！世界首家24k纯金酒店在越南开业。马桶都镀金"
    assert first["tag_id"] == FIRST_TAGS and first["category_id"] == 12202 and first["asr_text"] == "nan"
    assert first["frames"].dtype == np.float16
    for video in pairwise:
        _check_golden_frames(video["frames"], *GOLDEN[video["id"]])
    for raw_pair, raw_test in zip(pairwise, test):
        assert set(raw_test) == {"id", "title", "asr_text", "frames"}
        np.testing.assert_array_equal(raw_pair["frames"], raw_test["frames"])
        assert raw_pair["title"] == raw_test["title"]
    assert reader.count_records(sample / "pairwise.tfrecords") == 2
    assert reader.verify_file(sample / "test_a.tfrecords", "test") == 2


def test_golden_pipeline(shared_data, tokenizer, real_vocab):
    sample = shared_data / "sample"
    decoder = reader.VideoDecoder(tokenizer, real_vocab)
    (batch,) = list(reader.read_videos(sample / "pairwise.tfrecords", "pairwise", decoder, batch_size=4))
    assert set(batch) == {"id", "title", "asr_text", "frames", "frame_mask", "num_frames", "input_ids",
                          "attention_mask", "tags", "category"}
    assert [i.decode() for i in batch["id"].numpy()] == [FIRST, SECOND]
    assert batch["title"].numpy()[0].decode() == "太土豪！世界首家24k纯金酒店在越南开业。马桶都镀金"
    assert batch["asr_text"].numpy().tolist() == [b"nan", b"nan"]
    assert batch["frames"].shape == (2, 32, 1536) and batch["frames"].dtype == tf.float32
    assert batch["frame_mask"].numpy().sum(axis=1).tolist() == [15, 10]
    assert batch["num_frames"].numpy().tolist() == [15, 10]
    assert batch["category"].numpy().tolist() == [12202, 12202]
    frames = batch["frames"].numpy()
    for row, video_id in enumerate([FIRST, SECOND]):
        n = GOLDEN[video_id][0]
        _check_golden_frames(frames[row, :n], *GOLDEN[video_id])
        assert not frames[row, n:].any()  # zero padding
    tags = batch["tags"].numpy()
    assert tags.shape == (2, 10000)
    expected_columns = sorted(int(np.searchsorted(real_vocab.tag_ids_sorted, t)) for t in FIRST_TAGS)
    assert np.flatnonzero(tags[0]).tolist() == expected_columns
    np.testing.assert_array_equal(tags[0], real_vocab.multi_hot(FIRST_TAGS))
    ids, mask = tokenization.encode_titles(tokenizer, [t.decode() for t in batch["title"].numpy()])
    np.testing.assert_array_equal(batch["input_ids"].numpy(), ids)
    np.testing.assert_array_equal(batch["attention_mask"].numpy(), mask)

    (test,) = list(reader.read_videos(sample / "test_a.tfrecords", "test", decoder, batch_size=4))
    assert not test["tags"].numpy().any() and test["tags"].shape == (2, 10000)
    assert test["category"].numpy().tolist() == [-1, -1]
    np.testing.assert_array_equal(test["frames"].numpy(), frames)


# ----------------------------------------------------------------------------- frame sampling


@pytest.mark.parametrize("n, expected", [
    (5, list(range(5))),
    (32, list(range(32))),
    (33, list(range(32))),
    (64, list(range(1, 64, 2))),
    (100, list(range(1, 95, 3))),
])
def test_sample_frame_indices(n, expected):
    assert reader.sample_frame_indices(n).tolist() == expected
    assert reader.sample_frame_indices_tf(tf.constant(n)).numpy().tolist() == expected


def test_sampling_tf_matches_numpy_and_decode_frames_picks_them():
    for n in range(0, 131):
        expected = reader.sample_frame_indices(n, 8).tolist()
        assert reader.sample_frame_indices_tf(tf.constant(n), 8).numpy().tolist() == expected
    frames = np.arange(100, dtype=np.float16)[:, None] * np.ones((1, DIM), np.float16)  # frame i is all i
    decoded, mask, n = reader.decode_frames(tf.constant(writer.frame_bytes(frames)), DIM, 32)
    assert decoded.shape == (32, DIM) and int(n) == 100 and mask.numpy().sum() == 32
    assert decoded.numpy()[:, 0].tolist() == list(range(1, 95, 3))
    decoded, mask, n = reader.decode_frames(tf.constant(writer.frame_bytes(frames[:5])), DIM, 32)
    assert mask.numpy().tolist() == [1.0] * 5 + [0.0] * 27 and int(n) == 5
    assert decoded.numpy()[:5, 0].tolist() == [0, 1, 2, 3, 4] and not decoded.numpy()[5:].any()
    with pytest.raises(tf.errors.InvalidArgumentError, match="frame 2 has 7 bytes, expected 32"):
        reader.decode_frames(tf.constant([b"\0" * 32, b"\0" * 32, b"\0" * 7]), DIM, 32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="x.tfrecords, record 4: frame 0 has 7 bytes"):
        reader.decode_frames(tf.constant([b"\0" * 7]), DIM, 32, path="x.tfrecords", index=4)


# ----------------------------------------------------------------------------- round trips


def _video(rng, index, frames=None, tags=None):
    n = frames if frames is not None else int(rng.integers(1, 40))
    return {"id": str(10**15 + index), "title": f"标题{index}", "asr_text": "nan" if index % 2 else f"语音{index}",
            "frames": rng.standard_normal((n, DIM)).astype(np.float16),
            "tag_id": tags if tags is not None else rng.choice([3, 5, 7, 11, 99], size=3, replace=False).tolist(),
            "category_id": 10100 + index}


SMALL_VOCAB = TagVocab([7, 3, 11, 5])  # 99 is unknown: dropped


def _expected_frames(frames):
    out = np.zeros((8, DIM), np.float32)
    picked = frames[reader.sample_frame_indices(len(frames), 8)].astype(np.float32)
    out[:len(picked)] = picked
    return out


def _assert_video(decoded, row, video, kind):
    assert decoded["id"][row].numpy().decode() == video["id"]
    assert decoded["title"][row].numpy().decode() == video["title"]
    assert decoded["asr_text"][row].numpy().decode() == video["asr_text"]
    assert decoded["num_frames"][row].numpy() == len(video["frames"])
    np.testing.assert_array_equal(decoded["frames"][row].numpy(), _expected_frames(video["frames"]))
    assert decoded["frame_mask"][row].numpy().sum() == min(len(video["frames"]), 8)
    if kind == "test":
        assert not decoded["tags"][row].numpy().any() and decoded["category"][row].numpy() == -1
    else:
        np.testing.assert_array_equal(decoded["tags"][row].numpy(), SMALL_VOCAB.multi_hot(video["tag_id"]))
        assert decoded["category"][row].numpy() == video["category_id"]


@pytest.mark.parametrize("kind", ["pointwise", "pairwise", "test"])
def test_round_trip_videos(tmp_path, tokenizer, kind):
    rng = np.random.default_rng(7)
    videos = [_video(rng, i) for i in range(5)]
    videos += [_video(rng, 5, frames=40, tags=[]), _video(rng, 6, frames=1, tags=[99])]
    path = tmp_path / f"{kind}.tfrecords"
    writer.write_records(path, (writer.serialize_video(v, kind) for v in videos))
    raw = list(reader.read_raw_videos(path, kind, frame_dim=DIM))
    for original, back in zip(videos, raw, strict=True):
        assert back["id"] == original["id"] and back["asr_text"] == original["asr_text"]
        np.testing.assert_array_equal(back["frames"], original["frames"])
        if kind != "test":
            assert back["tag_id"] == original["tag_id"] and back["category_id"] == original["category_id"]
    decoder = reader.VideoDecoder(tokenizer, SMALL_VOCAB, frame_dim=DIM, max_frames=8, title_len=12)
    batches = list(reader.read_videos(path, kind, decoder, batch_size=3))
    assert [int(b["id"].shape[0]) for b in batches] == [3, 3, 1]
    assert batches[0]["tags"].shape == (3, 4) and batches[0]["input_ids"].shape == (3, 12)
    for number, video in enumerate(videos):
        _assert_video(batches[number // 3], number % 3, video, kind)
    ids = np.concatenate([b["input_ids"].numpy() for b in batches])
    np.testing.assert_array_equal(ids, tokenization.encode_titles(tokenizer, [v["title"] for v in videos], 12)[0])


def test_round_trip_pairs(tmp_path, tokenizer):
    rng = np.random.default_rng(8)
    pairs = [(_video(rng, 2 * i), _video(rng, 2 * i + 1), round(0.05 * i, 2)) for i in range(5)]
    path = tmp_path / "fold_00.tfrecords"
    writer.write_records(path, (writer.serialize_pair(*pair) for pair in pairs))
    for (first, second, sim), raw in zip(pairs, reader.read_raw_pairs(path, frame_dim=DIM), strict=True):
        assert raw["sim"] == pytest.approx(sim) and raw["video_1"]["id"] == first["id"]
        np.testing.assert_array_equal(raw["video_2"]["frames"], second["frames"])
        assert raw["video_2"]["tag_id"] == second["tag_id"]
    decoder = reader.VideoDecoder(tokenizer, SMALL_VOCAB, frame_dim=DIM, max_frames=8, title_len=12)
    (batch,) = list(reader.read_pairs(path, decoder, batch_size=8))
    assert set(batch) == {"video_1", "video_2", "sim"}
    assert batch["sim"].dtype == tf.float32
    np.testing.assert_allclose(batch["sim"].numpy(), [sim for _, _, sim in pairs])
    for row, (first, second, _) in enumerate(pairs):
        _assert_video(batch["video_1"], row, first, "pair")
        _assert_video(batch["video_2"], row, second, "pair")
    titles = [second["title"] for _, second, _ in pairs]
    expected_ids, _ = tokenization.encode_titles(tokenizer, titles, 12)
    np.testing.assert_array_equal(batch["video_2"]["input_ids"].numpy(), expected_ids)


def test_files_shuffle_repeat_and_optional_parts(tmp_path):
    rng = np.random.default_rng(9)
    paths = []
    for shard in range(3):
        path = tmp_path / f"part_{shard}.tfrecords"
        writer.write_records(path, (writer.serialize_video(_video(rng, 10 * shard + i), "pointwise") for i in range(4)))
        paths.append(path)
    decoder = reader.VideoDecoder(None, None, frame_dim=DIM, max_frames=8)

    def ids(dataset):
        return [i.decode() for batch in dataset for i in batch["id"].numpy()]

    ordered = ids(reader.read_videos(paths, "pointwise", decoder, 5))
    assert sorted(ordered) == sorted(str(10**15 + 10 * s + i) for s in range(3) for i in range(4))
    assert ordered[:3] == [str(10**15), str(10**15 + 10), str(10**15 + 20)]  # interleaved, one per file
    pattern = str(tmp_path / "part_*.tfrecords")
    shuffled = ids(reader.read_videos(pattern, "pointwise", decoder, 5, shuffle=True, seed=3))
    assert sorted(shuffled) == sorted(ordered) and shuffled != ordered
    assert shuffled == ids(reader.read_videos(paths, "pointwise", decoder, 5, shuffle=True, seed=3))
    repeated = reader.read_videos(paths, "pointwise", decoder, 5, shuffle=True, repeat=True, drop_remainder=True,
                                  seed=1)
    assert repeated.element_spec["frames"].shape == (5, 8, DIM)
    assert len(ids(repeated.take(5))) == 25  # more than one epoch of 12 records
    batch = next(iter(reader.read_videos(paths, "test", decoder, 2)))
    assert "tags" not in batch and "input_ids" not in batch and batch["category"].numpy().tolist() == [-1, -1]
    with pytest.raises(FileNotFoundError, match="nothing.tfrecords: no such TFRecord file"):
        reader.read_videos(tmp_path / "nothing.tfrecords", "pointwise", decoder, 2)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        reader.read_videos(str(tmp_path / "none_*.tfrecords"), "pointwise", decoder, 2)
    with pytest.raises(ValueError, match="read_pairs"):
        reader.read_videos(paths, "pair", decoder, 2)


# ----------------------------------------------------------------------------- bad input


def _good_records(rng, kind="pairwise", count=3):
    return [writer.serialize_video(_video(rng, i, frames=3), kind) for i in range(count)]


def _without(record, key):
    example = tf.train.Example.FromString(record)
    del example.features.feature[key]
    return example.SerializeToString()


def _bad_frames_record(rng):
    video = _video(rng, 9, frames=3)
    video["frames"] = writer.frame_bytes(video["frames"])
    video["frames"][2] = video["frames"][2][:10]
    return writer.serialize_video(video, "pairwise")


def _extra_category(record):
    example = tf.train.Example.FromString(record)
    example.features.feature["category_id"].int64_list.value.append(5)
    return example.SerializeToString()


BAD_RECORDS = {
    "frame length": (lambda rng, good: _bad_frames_record(rng), "frame 2 has 10 bytes, expected 32"),
    "missing title": (lambda rng, good: _without(good, "title"), "missing key 'title'"),
    "missing frames": (lambda rng, good: _without(good, "frame_feature"), "missing key 'frame_feature'"),
    "missing tags": (lambda rng, good: _without(good, "tag_id"), "missing key 'tag_id'"),
    "missing category": (lambda rng, good: _without(good, "category_id"), "missing key 'category_id'"),
    "two categories": (lambda rng, good: _extra_category(good), "key 'category_id' holds 2 values, expected 1"),
}


def _pipeline_error(path, kind="pairwise", pairs=False):
    decoder = reader.VideoDecoder(None, SMALL_VOCAB, frame_dim=DIM, max_frames=8)
    dataset = reader.read_pairs(path, decoder, 2) if pairs else reader.read_videos(path, kind, decoder, 2)
    with pytest.raises(tf.errors.InvalidArgumentError) as raw:
        list(dataset)
    with pytest.raises(RecordError) as converted:
        list(reader.iterate_checked(dataset))
    return str(raw.value), converted.value


@pytest.mark.parametrize("name", list(BAD_RECORDS))
def test_bad_record_names_file_and_index(tmp_path, name):
    rng = np.random.default_rng(10)
    good = _good_records(rng)
    make, problem = BAD_RECORDS[name]
    path = tmp_path / "bad.tfrecords"
    writer.write_records(path, good + [make(rng, good[0])] + good)
    raw_message, error = _pipeline_error(path)
    assert f"RecordError: {path}, record 3: " in raw_message
    assert (error.path, error.index, error.problem) == (str(path), 3, problem)
    assert str(error) == f"{path}, record 3: {problem}"
    with pytest.raises(RecordError) as python_side:
        list(reader.read_raw_videos(path, "pairwise", frame_dim=DIM))
    assert str(python_side.value) == str(error)
    with pytest.raises(RecordError, match="record 3"):
        reader.verify_file(path, "pairwise", frame_dim=DIM)
    assert reader.count_records(path) == 7  # the framing itself is fine


def test_python_readers_check_types_and_text(tmp_path):
    rng = np.random.default_rng(14)
    good = _good_records(rng, count=2)
    wrong_type = tf.train.Example.FromString(good[0])
    del wrong_type.features.feature["title"]
    wrong_type.features.feature["title"].int64_list.value.append(3)
    bad_text = writer.serialize_video(_video(rng, 5, frames=2), "pairwise")
    bad_text = bad_text.replace("标题".encode(), b"\xff\xfe" * 3)  # same length, not UTF-8
    for record, problem in [(wrong_type.SerializeToString(), "key 'title' holds int64_list, expected bytes_list"),
                            (bad_text, "key 'title' is not valid UTF-8"),
                            (b"\x08\x96\x01garbage", "not a tf.train.Example")]:
        path = tmp_path / "typed.tfrecords"
        writer.write_records(path, good + [record])
        with pytest.raises(RecordError, match=f"typed.tfrecords, record 2: {problem}"):
            reader.verify_file(path, "pairwise", frame_dim=DIM)


def test_empty_tag_list_is_not_missing(tmp_path):
    rng = np.random.default_rng(11)
    path = tmp_path / "empty_tags.tfrecords"
    writer.write_records(path, [writer.serialize_video(_video(rng, 0, frames=2, tags=[]), "pointwise")])
    decoder = reader.VideoDecoder(None, SMALL_VOCAB, frame_dim=DIM, max_frames=8)
    (batch,) = list(reader.read_videos(path, "pointwise", decoder, 2))
    assert not batch["tags"].numpy().any()


@pytest.mark.parametrize("damage, problem", [
    ("truncate", "truncated record at"),
    ("flip", "corrupted record at"),
])
def test_corrupt_file_names_file_and_record(tmp_path, damage, problem):
    rng = np.random.default_rng(12)
    clean = tmp_path / "clean.tfrecords"
    path = tmp_path / "damaged.tfrecords"
    records = _good_records(rng, count=4)
    writer.write_records(clean, records)
    writer.write_records(path, records)
    data = bytearray(path.read_bytes())
    record_start = sum(len(r) + 16 for r in records[:2])  # damage record 2
    if damage == "truncate":
        data = data[:record_start + 30]
    else:
        data[record_start + 20] ^= 0x01
    path.write_bytes(bytes(data))
    raw_message, error = _pipeline_error([clean, path])  # the second of two files: the message must say which
    assert f"{path}, record 2: corrupt or truncated TFRecord data" in raw_message
    assert (error.path, error.index) == (str(path), 2)
    assert error.problem.startswith(f"corrupt or truncated TFRecord data: reading stopped at byte {record_start} of")
    with pytest.raises(RecordError) as python_side:
        list(reader.read_raw_videos(path, "pairwise", frame_dim=DIM))
    assert (python_side.value.path, python_side.value.index) == (str(path), 2)
    assert problem in python_side.value.problem
    with pytest.raises(RecordError, match=r"record 2: corrupt or truncated"):
        reader.count_records(path)


def test_checked_file_records(tmp_path):
    rng = np.random.default_rng(15)
    records = _good_records(rng, count=3)
    path = tmp_path / "three.tfrecords"
    writer.write_records(path, records)
    dataset = reader.checked_file_records(str(path), path.stat().st_size)
    items = [(p.decode(), int(i), r) for p, i, r in dataset.as_numpy_iterator()]
    assert items == [(str(path), index, record) for index, record in enumerate(records)]
    empty = tmp_path / "empty.tfrecords"
    writer.write_records(empty, [])
    assert list(reader.checked_file_records(str(empty), 0)) == [] and reader.count_records(empty) == 0
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(RecordError, match=r"three.tfrecords, record 2: corrupt or truncated"):
        list(reader.iterate_checked(reader.checked_file_records(str(path), path.stat().st_size)))


@pytest.mark.parametrize("sim, problem", [(1.5, "sim 1.5 is outside [0, 1]"),
                                          (float("nan"), "sim nan is outside [0, 1]")])
def test_bad_pair_records(tmp_path, sim, problem):
    rng = np.random.default_rng(13)
    good = writer.serialize_pair(_video(rng, 0, frames=2), _video(rng, 1, frames=2), 0.5)
    path = tmp_path / "pairs.tfrecords"
    writer.write_records(path, [good, writer.serialize_pair(_video(rng, 2, frames=2), _video(rng, 3, frames=2), sim)])
    _, error = _pipeline_error(path, pairs=True)
    assert str(error) == f"{path}, record 1: {problem}"
    with pytest.raises(RecordError, match=f"record 1: {problem.replace('[', '.').replace(']', '.')}"):
        list(reader.read_raw_pairs(path, frame_dim=DIM))
    writer.write_records(path, [good, _without(good, "title_2"), _without(good, "sim")])
    _, error = _pipeline_error(path, pairs=True)
    assert str(error) == f"{path}, record 1: missing key 'title_2'"
