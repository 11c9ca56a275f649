"""search/: index building from every input kind, queries, dedup and their one-line errors
(a few hundred random vectors; no model)."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from infer.embeddings_io import save_embeddings
from infer.submission import write_result


def clustered(n=300, dim=32, clusters=12, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, n)
    vectors = centres[labels] + spread * rng.normal(size=(n, dim))
    return np.array([f"v{i:04d}" for i in range(n)]), vectors.astype(np.float32)


def brute_force(vectors, query_rows, k):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit[query_rows] @ unit.T
    for i, row in enumerate(query_rows):
        sims[i, row] = -np.inf
    return np.argsort(-sims, axis=1)[:, :k], sims


@pytest.fixture()
def npz(tmp_path):
    ids, vectors = clustered()
    path = tmp_path / "emb.npz"
    save_embeddings(path, ids, vectors)
    return path, ids, vectors


def build(args):
    from search.index import main

    return main([str(a) for a in args])


def query(args, capsys):
    from search.query import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_flat_index_matches_brute_force(npz, tmp_path, capsys):
    path, ids, vectors = npz
    assert build(["--embeddings", path, "--out", tmp_path / "idx"]) == 0
    code, out, _ = query(["--index", tmp_path / "idx", "--id", ids[5], "--k", 10, "--json"], capsys)
    assert code == 0
    result = json.loads(out)[0]
    expected, sims = brute_force(vectors, [5], 10)
    assert [hit["id"] for hit in result["neighbours"]] == ids[expected[0]].tolist()
    np.testing.assert_allclose([hit["cosine"] for hit in result["neighbours"]], sims[0, expected[0]], atol=1e-5)
    assert ids[5] not in [hit["id"] for hit in result["neighbours"]]
    code, table, _ = query(["--index", tmp_path / "idx", "--id", ids[5], "--k", 3], capsys)
    assert code == 0 and table.splitlines()[0] == f"query {ids[5]}" and len(table.splitlines()) == 5


def test_streaming_build_reads_in_chunks(npz, tmp_path):
    from search.store import build_index, load_index
    from search.vectors import open_vectors

    path, ids, vectors = npz
    source = open_vectors(path)
    starts = [start for start, _ in source.chunks(rows=7)]
    assert starts == list(range(0, len(ids), 7))
    build_index(source, tmp_path / "a", "flat", chunk_rows=7)
    index = load_index(tmp_path / "a")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(index.vector(ids[17])[0], unit[17], atol=1e-6)
    assert index.ids.tolist() == ids.tolist()


@pytest.mark.parametrize("kind, params", [("ivf", ["--param", "nlist=8", "--param", "nprobe=8"]),
                                          ("hnsw", []), ("ivfpq", ["--param", "nlist=4", "--param", "nprobe=4"])])
def test_approximate_kinds_find_the_true_neighbours(npz, tmp_path, kind, params, capsys):
    path, ids, vectors = npz
    assert build(["--embeddings", path, "--out", tmp_path / kind, "--kind", kind, *params]) == 0
    from search.store import load_index

    index = load_index(tmp_path / kind)
    rows = list(range(0, 300, 10))
    expected, _ = brute_force(vectors, rows, 10)
    found = index.neighbours(index.check_queries(vectors[rows], "q"), 10, exclude=list(ids[rows]))
    recall = np.mean([len(set(ids[e]) & {i for i, _ in f}) / 10 for e, f in zip(expected, found)])
    assert recall >= (0.6 if kind == "ivfpq" else 0.95), recall


def test_result_zip_and_fold_average_directory(tmp_path, capsys):
    from search.store import load_index

    ids, vectors = clustered(n=50, dim=16)
    write_result(tmp_path / "result.zip", ids, vectors)
    assert build(["--embeddings", tmp_path / "result.zip", "--out", tmp_path / "r"]) == 0
    assert load_index(tmp_path / "r").meta["source"]["type"] == "result"
    avg = tmp_path / "run" / "embeddings" / "uniter" / "avg"
    save_embeddings(avg / "test.npz", ids, vectors)
    assert build(["--embeddings", avg.parent, "--out", tmp_path / "a"]) == 0
    index = load_index(tmp_path / "a")
    assert index.meta["source"]["path"].endswith(os.path.join("avg", "test.npz")) and len(index) == 50


def test_dedup_groups_planted_duplicates(tmp_path, capsys):
    from search.dedup import main

    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 24)).astype(np.float32)
    # videos 40..45 are near-copies: 40,41 of 3; 42 of 41 (a chain); 43,44,45 of 7
    copies = np.stack([base[3], base[3], base[3], base[7], base[7], base[7]]) + 0.02 * rng.normal(size=(6, 24))
    vectors = np.concatenate([base, copies]).astype(np.float32)
    ids = np.array([f"id{i}" for i in range(46)])
    save_embeddings(tmp_path / "e.npz", ids, vectors)
    assert build(["--embeddings", tmp_path / "e.npz", "--out", tmp_path / "idx"]) == 0
    capsys.readouterr()
    assert main(["--index", str(tmp_path / "idx"), "--threshold", "0.99", "--out", str(tmp_path / "g.csv")]) == 0
    assert "2 groups of 2+ holding 8 videos (6 removable)" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "g.csv")))
    assert len(rows) == 46 and list(rows[0]) == ["id", "group", "representative", "group_size"]
    by_id = {row["id"]: row for row in rows}
    group_3 = {row["id"] for row in rows if row["group"] == by_id["id3"]["group"]}
    assert group_3 == {"id3", "id40", "id41", "id42"}
    assert by_id["id40"]["representative"] == by_id["id3"]["representative"] and by_id["id41"]["group_size"] == "4"
    assert {row["id"] for row in rows if row["group"] == by_id["id7"]["group"]} == {"id7", "id43", "id44", "id45"}
    assert by_id["id0"]["group_size"] == "1" and by_id["id0"]["representative"] == "id0"
    assert [int(row["group"]) for row in rows[:5]] == [0, 1, 2, 3, 4]  # numbered in index order


def test_union_find_joins_chains():
    from search.dedup import UnionFind

    union = UnionFind(6)
    union.union_edges(np.array([0, 2, 4]), np.array([1, 3, 5]))
    union.union_edges(np.array([1]), np.array([2]))
    roots = union.roots()
    assert len(set(roots[:4])) == 1 and roots[4] == roots[5] and roots[4] != roots[0]


# ------------------------------------------------------------------------------ one-line errors


def one_line_error(code, err):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_index_errors(tmp_path, npz, capsys):
    path, ids, vectors = npz
    from search.index import main

    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        return one_line_error(code, capsys.readouterr().err)

    assert "embeddings file not found" in run("--embeddings", tmp_path / "nope.npz", "--out", tmp_path / "x")
    np.savez(tmp_path / "noids.npz", embeddings=vectors)
    assert "missing array 'ids'" in run("--embeddings", tmp_path / "noids.npz", "--out", tmp_path / "x")
    np.savez(tmp_path / "short.npz", ids=ids[:10], embeddings=vectors)
    assert "300 rows for 10 ids" in run("--embeddings", tmp_path / "short.npz", "--out", tmp_path / "x")
    bad = vectors.copy()
    bad[4] = 0
    np.savez(tmp_path / "zero.npz", ids=ids, embeddings=bad)
    assert "row 4 (id 'v0004') is all zeros" in run("--embeddings", tmp_path / "zero.npz", "--out", tmp_path / "x")
    np.savez(tmp_path / "small.npz", ids=ids[:100], embeddings=vectors[:100])
    assert "ivfpq needs at least 256 vectors" in run("--embeddings", tmp_path / "small.npz", "--out",
                                                     tmp_path / "x", "--kind", "ivfpq")
    assert "unknown parameter(s) ['nprob']" in run("--embeddings", path, "--out", tmp_path / "x", "--kind", "ivf",
                                                   "--param", "nprob=3")
    assert "--records needs --run" in run("--records", path, "--out", tmp_path / "x")
    assert build(["--embeddings", path, "--out", tmp_path / "idx"]) == 0
    assert "already exists" in run("--embeddings", path, "--out", tmp_path / "idx")
    assert build(["--embeddings", path, "--out", tmp_path / "idx", "--overwrite"]) == 0
    (tmp_path / "dir").mkdir()
    assert "holds no test.npz" in run("--embeddings", tmp_path / "dir", "--out", tmp_path / "x")


def test_query_and_dedup_errors(tmp_path, npz, capsys):
    path, ids, vectors = npz
    from search.dedup import main as dedup

    assert build(["--embeddings", path, "--out", tmp_path / "idx"]) == 0
    assert "id 'nope' is not in the index" in one_line_error(*query(["--index", tmp_path / "idx", "--id", "nope"],
                                                                    capsys)[::2])
    assert "index directory not found" in one_line_error(*query(["--index", tmp_path / "none", "--id", "x"],
                                                                capsys)[::2])
    assert "need --run" in one_line_error(*query(["--index", tmp_path / "idx", "--text", "猫"], capsys)[::2])
    assert "--k must be at least 1" in one_line_error(*query(["--index", tmp_path / "idx", "--id", ids[0], "--k", 0],
                                                             capsys)[::2])
    os.remove(tmp_path / "idx" / "ids.npy")
    assert "missing ids.npy" in one_line_error(*query(["--index", tmp_path / "idx", "--id", ids[0]], capsys)[::2])
    assert build(["--embeddings", path, "--out", tmp_path / "idx2"]) == 0
    np.save(tmp_path / "idx2" / "ids.npy", ids[:10])
    assert "do not belong together" in one_line_error(*query(["--index", tmp_path / "idx2", "--id", ids[0]],
                                                             capsys)[::2])
    capsys.readouterr()
    code = dedup(["--index", str(tmp_path / "idx2"), "--threshold", "0.9", "--out", str(tmp_path / "g.csv")])
    assert "do not belong together" in one_line_error(code, capsys.readouterr().err)
    assert build(["--embeddings", path, "--out", tmp_path / "idx3"]) == 0
    capsys.readouterr()
    code = dedup(["--index", str(tmp_path / "idx3"), "--threshold", "1.5", "--out", str(tmp_path / "g.csv")])
    assert "cosine in [-1, 1]" in one_line_error(code, capsys.readouterr().err)


def test_query_vectors_of_another_dimension_or_model(tmp_path, npz):
    from search.encoders import Encoder
    from search.store import SearchError, load_index

    path, ids, vectors = npz
    assert build(["--embeddings", path, "--out", tmp_path / "idx"]) == 0
    index = load_index(tmp_path / "idx")
    with pytest.raises(SearchError, match="dimension 16, the index .* holds dimension 32"):
        index.search(np.ones((2, 16), np.float32), 5, "new.tfrecords")
    encoder = Encoder()
    encoder.model = {"fingerprint": "abc", "output": "embedding", "source": "runs/x"}
    with pytest.raises(SearchError, match="does not record which model made its vectors"):
        encoder.check_index(index)
    from search.store import build_index
    from search.vectors import open_vectors

    build_index(open_vectors(path), tmp_path / "m", model={"fingerprint": "def", "output": "embedding",
                                                           "source": "runs/y"})
    with pytest.raises(SearchError, match="index built from another model"):
        encoder.check_index(load_index(tmp_path / "m"))
    encoder.model["fingerprint"] = "def"
    encoder.check_index(load_index(tmp_path / "m"))  # same model: fine
    with pytest.raises(SearchError, match="not a video tower aligned with text"):
        encoder.check_index(load_index(tmp_path / "m"), for_text=True)


@pytest.mark.parametrize("kind, params", [("ivf", {"nlist": 8, "nprobe": 8}), ("hnsw", {})])
def test_dedup_on_approximate_indexes_finds_the_planted_copies(tmp_path, kind, params):
    from search.dedup import dedup_groups
    from search.store import build_index, load_index
    from search.vectors import memory_vectors

    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 32)).astype(np.float32)
    vectors = np.concatenate([base, base[:20] + 0.01 * rng.normal(size=(20, 32)).astype(np.float32)])
    ids = np.array([f"i{i}" for i in range(len(vectors))])
    build_index(memory_vectors(ids, vectors), tmp_path / kind, kind, params)
    groups = dedup_groups(load_index(tmp_path / kind), 0.95)
    assert groups["edges"] == 20 and (groups["group_size"] > 1).sum() == 40
    assert (groups["group"][:20] == groups["group"][300:]).all()
