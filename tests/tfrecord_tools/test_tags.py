"""TagVocab: file order kept, multi-hot columns in ascending tag-id order, unknown tags dropped."""
import numpy as np
import pytest

from tfrecord_tools.errors import DataError
from tfrecord_tools.tags import TagVocab

SAMPLE_TAGS = [6019529, 288120, 598211, 37610473, 55803230]


@pytest.fixture(scope="module")
def real_vocab(shared_data):
    return TagVocab.from_file(shared_data / "tag_list.txt")


def test_real_tag_list(shared_data, real_vocab):
    file_ids = [int(line) for line in (shared_data / "tag_list.txt").read_text().split()]
    assert real_vocab.size == len(real_vocab) == 10000
    assert real_vocab.tag_ids.tolist() == file_ids  # file order (most frequent first)
    assert real_vocab.tag_ids[0] == 541241
    assert real_vocab.tag_ids_sorted.dtype == np.int64
    assert real_vocab.tag_ids_sorted.tolist() == sorted(file_ids)
    assert np.all(np.diff(real_vocab.tag_ids_sorted) > 0)


def test_real_multi_hot_is_ascending_id_order(real_vocab):
    vector = real_vocab.multi_hot(SAMPLE_TAGS + [123456789])  # the last one is not in the list
    assert vector.dtype == np.float32 and vector.shape == (10000,)
    expected = sorted(int(np.searchsorted(real_vocab.tag_ids_sorted, tag)) for tag in SAMPLE_TAGS)
    assert np.flatnonzero(vector).tolist() == expected
    assert vector.sum() == 5
    for tag in SAMPLE_TAGS:
        assert real_vocab.tag_ids_sorted[real_vocab.column(tag)] == tag
    assert real_vocab.column(123456789) == -1 and 123456789 not in real_vocab and 288120 in real_vocab


def test_small_vocab_order_unknown_and_duplicates():
    vocab = TagVocab([30, 10, 20])
    assert vocab.size == 3
    assert vocab.tag_ids.tolist() == [30, 10, 20]
    assert vocab.tag_ids_sorted.tolist() == [10, 20, 30]
    assert vocab.multi_hot([20, 99, 30, 20]).tolist() == [0.0, 1.0, 1.0]
    assert vocab.multi_hot([]).tolist() == [0.0, 0.0, 0.0]
    assert vocab.multi_hot(np.array([10], dtype=np.int64)).tolist() == [1.0, 0.0, 0.0]


def test_lookup_table_matches_columns(real_vocab):
    import tensorflow as tf

    table = TagVocab([30, 10, 20]).lookup_table()
    assert table.lookup(tf.constant([10, 20, 30, 99], tf.int64)).numpy().tolist() == [0, 1, 2, -1]
    real_table = real_vocab.lookup_table()
    probe = SAMPLE_TAGS + [int(real_vocab.tag_ids[0]), int(real_vocab.tag_ids_sorted[-1]), 7]
    assert real_table.lookup(tf.constant(probe, tf.int64)).numpy().tolist() == [real_vocab.column(t) for t in probe]


def test_save_round_trip_is_byte_identical(shared_data, real_vocab, tmp_path):
    out = tmp_path / "sub" / "tag_list.txt"
    real_vocab.save(out)
    assert out.read_bytes() == (shared_data / "tag_list.txt").read_bytes()
    assert TagVocab.from_file(out) == real_vocab
    assert [p.name for p in out.parent.iterdir()] == ["tag_list.txt"]  # no temporary left behind


@pytest.mark.parametrize("text, line, problem", [
    ("5\n7\n12a\n", "line 3", "expected one decimal tag id, got '12a'"),
    ("5\n7\n\n9\n", "line 3", "expected one decimal tag id"),
    ("5\n7\n-3\n", "line 3", "expected one decimal tag id"),
    ("5\n7\n8\n7\n", "line 4", "tag id 7 already listed on line 2"),
])
def test_from_file_errors_name_file_and_line(tmp_path, text, line, problem):
    path = tmp_path / "tag_list.txt"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        TagVocab.from_file(path)
    assert str(info.value).startswith(f"{path}, {line}: ")
    assert problem in str(info.value)


def test_empty_file_and_bad_constructor_arguments(tmp_path):
    path = tmp_path / "tag_list.txt"
    path.write_text("")
    with pytest.raises(DataError, match="holds no tag ids"):
        TagVocab.from_file(path)
    with pytest.raises(ValueError, match="listed twice"):
        TagVocab([1, 2, 1])
    with pytest.raises(ValueError, match="negative"):
        TagVocab([1, -2])
    with pytest.raises(ValueError, match="at least one"):
        TagVocab([])
