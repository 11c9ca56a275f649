"""The resumable training stream: order as a function of (seed, step), worker slices, decoding, counts."""
import json
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from tfrecord_tools import folds, reader
from tfrecord_tools.labels import read_labels
from tfrecord_tools.reader import VideoDecoder
from tfrecord_tools.tags import TagVocab
from tfrecord_tools.tokenization import build_vocab, load_tokenizer
from train import data


def _keys(batches):
    return [[(p.decode(), int(i)) for p, i in zip(path, index)] for path, index, _ in batches]


def _expected_counts(sizes):
    return [sizes["pointwise_per_file"]] * sizes["pointwise_files"] + [sizes["pair_videos"]]


def test_stream_order_is_a_function_of_seed_and_step(synthetic_data, synthetic_sizes):
    files = data.pretrain_files(synthetic_data)
    assert [f.rsplit("/", 2)[-2] for f in files] == ["pointwise"] * synthetic_sizes["pointwise_files"] + ["pairwise"]
    total = sum(data.record_counts(files))
    assert total == sum(_expected_counts(synthetic_sizes)) and total > 2 * 64
    stream = data.TrainStream(tuple(files), total, VideoDecoder(), global_batch=64, seed=3, shuffle_buffer=100)
    full = _keys(stream.serialized(0).take(16).as_numpy_iterator())
    # epoch 0 (the first `total` records) holds every record exactly once, epoch 1 in another order
    flat = [key for batch in full for key in batch]
    assert Counter(flat[:total]) == Counter(flat[total:2 * total]) and len(set(flat[:total])) == total
    assert flat[:total] != flat[total:2 * total]
    # resuming at step 9 (inside epoch 1) yields exactly the batches 9.. of the uninterrupted stream
    resumed = _keys(stream.serialized(9).take(7).as_numpy_iterator())
    assert resumed == full[9:16]
    other_seed = data.TrainStream(tuple(files), total, VideoDecoder(), global_batch=64, seed=4, shuffle_buffer=100)
    assert _keys(other_seed.serialized(0).take(1).as_numpy_iterator()) != full[:1]

    # stop_step (the run's total steps) ends the same stream there, from any start, so no reader runs ahead
    stopping = data.TrainStream(tuple(files), total, VideoDecoder(), global_batch=64, seed=3, shuffle_buffer=100,
                                stop_step=13)
    assert _keys(stopping.serialized(0).as_numpy_iterator()) == full[:13]
    assert _keys(stopping.serialized(9).as_numpy_iterator()) == full[9:13]
    assert list(stopping.serialized(13).as_numpy_iterator()) == []
    decoded = [batch["frames"].shape[0] for batch in stopping.dataset(11)]
    assert decoded == [64, 64]


@pytest.mark.parametrize("stream_seed", [0, 3])
def test_stream_order_does_not_depend_on_the_global_seed(synthetic_data, stream_seed):
    # a global seed of 0 (what `seed_everything(0)` sets) used to fail inside Dataset.shuffle
    files = tuple(data.pretrain_files(synthetic_data))
    stream = data.TrainStream(files, sum(data.record_counts(files)), VideoDecoder(), global_batch=16,
                              seed=stream_seed, shuffle_buffer=50)
    orders = []
    for global_seed in (0, 1, 12345):
        tf.random.set_seed(global_seed)
        orders.append(_keys(stream.serialized(2).take(3).as_numpy_iterator()))
    assert orders[0] == orders[1] == orders[2]
    assert len({key for batch in orders[0] for key in batch}) == 3 * 16


def test_worker_slices_make_up_the_global_batch(synthetic_data):
    files = tuple(data.pretrain_files(synthetic_data, include_pairwise=False))
    tags = TagVocab.from_file(synthetic_data / "tag_list.txt")
    stream = data.TrainStream(files, sum(data.record_counts(files)), VideoDecoder(tag_vocab=tags), global_batch=8, seed=0, shuffle_buffer=50)
    whole = list(stream.dataset(start_step=2).take(2).as_numpy_iterator())
    parts = [list(stream.dataset(2, tf.distribute.InputContext(2, worker, 2)).take(2).as_numpy_iterator())
             for worker in range(2)]
    for step in range(2):
        assert whole[step]["frames"].shape == (8, 32, 1536)
        assert "id" not in whole[step] and "title" not in whole[step]  # strings are dropped
        for key in ("frames", "tags", "num_frames", "category"):
            joined = np.concatenate([parts[0][step][key], parts[1][step][key]])
            np.testing.assert_array_equal(joined, whole[step][key])
    with pytest.raises(ValueError, match="not divisible by the 3 replicas"):
        stream.dataset(0, tf.distribute.InputContext(1, 0, 3))
    with pytest.raises(ValueError, match="cannot fill one batch"):
        data.TrainStream(files, 5, VideoDecoder(), global_batch=8, seed=0)


def test_pair_stream_tokenizes_both_videos_and_transforms_targets(synthetic_data, folds_dir, tmp_path):
    train_files, val_file = folds.fold_files(folds_dir, 1)
    pairs = sum(data.record_counts(train_files))
    titles = list(data.stream_titles(train_files, pairs=True))
    assert len(titles) == 2 * pairs
    build_vocab(titles, tmp_path / "tok", max_size=300)
    decoder = VideoDecoder(tokenizer=load_tokenizer(tmp_path / "tok", "bert"),
                           tag_vocab=TagVocab.from_file(synthetic_data / "tag_list.txt"))
    stream = data.TrainStream(tuple(train_files), pairs, decoder, global_batch=4, seed=0, pairs=True,
                              target_fn=lambda sim: 1.0 - sim)
    batch = next(stream.dataset(0).as_numpy_iterator())
    assert set(batch) == {"video_1", "video_2", "sim", "target"}
    for video in ("video_1", "video_2"):
        assert batch[video]["input_ids"].shape == (4, 32) and batch[video]["input_ids"][:, 0].tolist() == [2] * 4
        assert "title" not in batch[video]
    np.testing.assert_allclose(batch["target"], 1.0 - batch["sim"])
    # every label of the shards, parsed on its own, matches label.tsv
    labels = read_labels(synthetic_data / "pairwise" / "label.tsv")
    shard_labels = data.pair_labels(train_files + [val_file])
    assert sorted(shard_labels.tolist()) == pytest.approx(sorted(labels.score.tolist()))


def test_record_counts_are_cached(synthetic_data, synthetic_sizes, tmp_path, monkeypatch):
    files = data.pretrain_files(synthetic_data)
    cache = tmp_path / "counts.json"
    expected = _expected_counts(synthetic_sizes)
    assert data.record_counts(files, cache) == expected
    assert len(json.loads(cache.read_text())) == len(files)

    def no_counting(path):
        raise AssertionError("counted again")

    monkeypatch.setattr(reader, "count_records", no_counting)
    assert data.record_counts(files, cache) == expected
    with pytest.raises(FileNotFoundError, match="no pointwise"):
        data.pretrain_files(tmp_path)
