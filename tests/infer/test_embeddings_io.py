"""Embedding files: round trip, validation on save/load, lookup errors, alignment."""
import numpy as np
import pytest

from infer.embeddings_io import (EmbeddingSet, align_sets, l2_normalize, load_embedding_set, load_embeddings,
                                 make_pairs, save_embeddings)
from tfrecord_tools.errors import DataError


def _ids(n, start=100):
    return [str(start + i) for i in range(n)]


def test_round_trip_with_pairs(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 3)).astype(np.float32)
    pairs = make_pairs(["100", "101"], ["102", "104"], [0.5, 1.0])
    path = tmp_path / "sub" / "val.npz"
    save_embeddings(path, _ids(5), emb, pairs)
    assert sorted(p.name for p in path.parent.iterdir()) == ["val.npz"]  # no temporary left behind
    ids, loaded = load_embeddings(path)
    assert ids.dtype.kind == "U" and ids.tolist() == _ids(5)
    np.testing.assert_array_equal(loaded, emb)
    assert loaded.dtype == np.float32
    full = load_embedding_set(path)
    assert full.pairs.query.tolist() == ["100", "101"] and full.pairs.candidate.tolist() == ["102", "104"]
    np.testing.assert_allclose(full.pairs.score, [0.5, 1.0])
    assert full.name == str(path)
    np.testing.assert_array_equal(full.lookup(["104", "100"]), emb[[4, 0]])


def test_save_without_pairs_and_bytes_ids(tmp_path):
    path = tmp_path / "test.npz"
    save_embeddings(path, np.array([b"7", b"8"]), np.ones((2, 2), np.float32))
    loaded = load_embedding_set(path)
    assert loaded.pairs is None and loaded.ids.tolist() == ["7", "8"]


@pytest.mark.parametrize("ids, emb, message", [
    (["1", "1"], np.zeros((2, 2), np.float32), "duplicated id"),
    (["1", "2"], np.zeros((2, 2), np.float64), "expected float32"),
    (["1", "2"], np.zeros(2, np.float32), "2-D"),
    (["1", "2"], np.zeros((3, 2), np.float32), "3 rows for 2 ids"),
    (["1", "2"], np.array([[0, np.nan], [1, 1]], np.float32), "first id '1'"),
    ([], np.zeros((0, 2), np.float32), "no ids"),
])
def test_save_rejects_bad_input(tmp_path, ids, emb, message):
    path = tmp_path / "bad.npz"
    with pytest.raises(DataError, match=message) as info:
        save_embeddings(path, ids, emb)
    assert str(path) in str(info.value)
    assert not path.exists()


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "none.npz"
    with pytest.raises(DataError, match="not found") as info:
        load_embeddings(missing)
    assert str(missing) in str(info.value)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="garbage.npz"):
        load_embeddings(garbage)
    no_emb = tmp_path / "noemb.npz"
    np.savez(no_emb, ids=np.array(["1"]))
    with pytest.raises(DataError, match="missing array 'embeddings'"):
        load_embeddings(no_emb)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, ids=np.array(["1"], dtype=object), embeddings=np.ones((1, 2), np.float32))
    with pytest.raises(DataError, match="pickled.npz: not a readable"):  # allow_pickle=False refuses it
        load_embeddings(pickled)
    half_pairs = tmp_path / "half.npz"
    np.savez(half_pairs, ids=np.array(["1"]), embeddings=np.ones((1, 2), np.float32), pair_query=np.array(["1"]))
    with pytest.raises(DataError, match="incomplete pairs part"):
        load_embedding_set(half_pairs)


def test_lookup_names_first_missing_id_and_count():
    s = EmbeddingSet.create(_ids(3), np.eye(3), name="models/x/test.npz")
    with pytest.raises(DataError) as info:
        s.lookup(["100", "999", "998", "999"])
    text = str(info.value)
    assert isinstance(info.value, KeyError) and text.startswith("models/x/test.npz: id '999'")
    assert "models/x/test.npz" in text and "'999'" in text and "2 of the 3 requested ids missing" in text


def test_align_sets_reorders_and_names_differences():
    a = EmbeddingSet.create(["1", "2", "3"], np.arange(6).reshape(3, 2), name="a")
    b = EmbeddingSet.create(["3", "1", "2"], np.arange(6).reshape(3, 2) + 10, name="b")
    ids, (ma, mb) = align_sets([a, b])
    assert ids.tolist() == ["1", "2", "3"]
    np.testing.assert_array_equal(mb, [[12, 13], [14, 15], [10, 11]])
    c = EmbeddingSet.create(["1", "2", "4"], np.ones((3, 2)), name="c")
    with pytest.raises(DataError, match=r"c: id sets differ: lacks 1 id\(s\) of a: 3; has 1 id\(s\) not in a: 4"):
        align_sets([a, c])


def test_l2_normalize_keeps_zero_rows():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
