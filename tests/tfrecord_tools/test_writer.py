"""Writers: exact official keys per record kind, float16 frame bytes, atomic files."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tfrecord_tools import schema, writer
from tfrecord_tools.reader import count_records, read_raw_pairs, read_raw_videos


def _video(rng, n=3, dim=8):
    return {"id": "42", "title": "标题 title", "asr_text": "语音",
            "frames": rng.standard_normal((n, dim)).astype(np.float16), "tag_id": [5, 3], "category_id": 10203}


def _features(record):
    return tf.train.Example.FromString(record).features.feature


@pytest.mark.parametrize("kind, keys", [
    ("pointwise", {"id", "title", "asr_text", "frame_feature", "tag_id", "category_id"}),
    ("pairwise", {"id", "title", "asr_text", "frame_feature", "tag_id", "category_id"}),
    ("test", {"id", "title", "asr_text", "frame_feature"}),
])
def test_serialize_video_keys_and_values(kind, keys):
    rng = np.random.default_rng(0)
    video = _video(rng)
    features = _features(writer.serialize_video(video, kind))
    assert set(features) == keys == set(schema.required_keys(kind))
    assert features["id"].bytes_list.value == [b"42"]
    assert features["title"].bytes_list.value == ["标题 title".encode()]
    assert features["asr_text"].bytes_list.value == ["语音".encode()]
    frames = features["frame_feature"].bytes_list.value
    assert [len(frame) for frame in frames] == [16, 16, 16]
    assert frames[1] == video["frames"][1].astype("<f2").tobytes()
    if kind != "test":
        assert features["tag_id"].int64_list.value == [5, 3]
        assert features["category_id"].int64_list.value == [10203]


def test_frame_bytes_forms_and_missing_asr():
    rng = np.random.default_rng(1)
    frames = rng.standard_normal((2, 4)).astype(np.float32)  # cast to little-endian float16
    raw = writer.frame_bytes(frames)
    assert raw == [row.astype("<f2").tobytes() for row in frames]
    assert writer.frame_bytes(raw) == raw  # raw frame bytes pass through
    with pytest.raises(ValueError, match=r"\[num_frames, dim\]"):
        writer.frame_bytes(np.zeros(4, np.float16))
    video = {"id": "1", "title": "t", "frames": frames}
    features = _features(writer.serialize_video(video, "test"))
    assert features["asr_text"].bytes_list.value == [schema.MISSING_ASR.encode()]


def test_serialize_pair_keys():
    rng = np.random.default_rng(2)
    features = _features(writer.serialize_pair(_video(rng), _video(rng, n=2), 0.35))
    expected = {key + suffix for suffix in schema.PAIR_SUFFIXES for key in schema.required_keys("pair")} | {"sim"}
    assert set(features) == expected == set(schema.pair_feature_spec())
    assert features["sim"].float_list.value == pytest.approx([0.35])
    assert len(features["frame_feature_2"].bytes_list.value) == 2


def test_write_records_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    videos = [dict(_video(rng, n=i + 1), id=str(i)) for i in range(4)]
    path = tmp_path / "out" / "videos.tfrecords"
    assert writer.write_records(path, (writer.serialize_video(v, "pointwise") for v in videos)) == 4
    assert count_records(path) == 4
    back = list(read_raw_videos(path, "pointwise", frame_dim=8))
    for original, read in zip(videos, back):
        assert read["id"] == original["id"] and read["tag_id"] == [5, 3]
        np.testing.assert_array_equal(read["frames"], original["frames"])
    pair_path = tmp_path / "pairs.tfrecords"
    writer.write_records(pair_path, [writer.serialize_pair(videos[0], videos[1], 0.5)])
    (pair,) = read_raw_pairs(pair_path, frame_dim=8)
    assert pair["sim"] == 0.5 and pair["video_2"]["id"] == "1"


def test_atomic_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "broken.tfrecords"
    with pytest.raises(RuntimeError):
        with writer.AtomicRecordWriter(path) as out:
            out.write(b"record")
            assert not path.exists()  # only the temporary exists while writing
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    with writer.AtomicRecordWriter(path) as out:
        out.write(b"a")
        out.write(b"b")
    assert out.count == 2 and count_records(path) == 2
    assert os.listdir(tmp_path) == ["broken.tfrecords"]
