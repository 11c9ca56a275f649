"""ingest: feature arrays + a metadata table (+ label.tsv) -> the official layout.

Round trips (directory of .npy/.npz and CSV; one array + offsets index and JSON Lines), where each
video goes, sharding, the tag list, and every bad row / array / label line: an error naming the file
and line with DATA untouched, or skipped and listed with --skip-bad.
"""
from __future__ import annotations

import json
import os
import pathlib
import re

import numpy as np
import pytest

import write_tfrecord
from tfrecord_tools import ingest, reader, schema
from tfrecord_tools.labels import read_labels

DIM = schema.FRAME_DIM


def _frames(rng, n):
    return (rng.random((n, DIM), dtype=np.float32) * 3 - 0.25).astype(np.float32)


def make_collection(root: pathlib.Path, count: int = 12, seed: int = 0, npz_every: int = 4) -> dict:
    """features/<id>.npy|.npz, meta.csv and label.tsv for ``count`` videos; returns what was written."""
    rng = np.random.default_rng(seed)
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    videos = {}
    lines = ["id,title,asr_text,tags,category"]
    for i in range(count):
        video_id = str(7000 + i)
        frames = _frames(rng, 3 + i % 5)
        if npz_every and i % npz_every == 3:
            np.savez(features / f"{video_id}.npz", frames=frames)
        else:
            np.save(features / f"{video_id}.npy", frames.astype(np.float16) if i % 2 else frames)
        tags = [1 + i % 3, 50 + i % 2] if i % 6 != 5 else []
        asr = "" if i % 3 == 0 else f"语音 {i}"
        category = "" if i == 4 else str(10100 + i % 4)
        title = f'标题 "{i}", with a comma' if i == 2 else f"标题 {i}"
        videos[video_id] = {"frames": frames, "title": title, "asr": asr or "nan", "tags": tags,
                            "category": int(category) if category else -1}
        quoted = '"' + title.replace('"', '""') + '"'
        lines.append(f"{video_id},{quoted},{asr},{';'.join(map(str, tags))},{category}")
    (root / "meta.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "label.tsv").write_text("7000\t7001\t0.5\n7001\t7002\t1.0\n7003\t7000\t0.0\n7002\t7003\t0.85\n")
    return videos


def run(root, out=None, *extra, features=None, metadata=None):
    args = ["--features", str(features or root / "features"), "--metadata", str(metadata or root / "meta.csv"),
            "--out", str(out or root / "data"), "--quiet", *extra]
    return ingest.main(args)


def videos_of(path, kind):
    return {video["id"]: video for video in reader.read_raw_videos(path, kind)}


def names(directory: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) if directory.exists() else []


def test_round_trip_directory_and_csv(tmp_path, capsys):
    videos = make_collection(tmp_path)
    np.save(tmp_path / "features" / "8888.npy", np.zeros((2, DIM), np.float16))  # no metadata row
    assert run(tmp_path, None, "--labels", str(tmp_path / "label.tsv"), "--test-all", "--shard-size", "5") == 0
    out = capsys.readouterr().out
    assert "ingested 12 videos" in out and "pairwise 4 (4 labelled pairs)" in out
    assert "1 feature file(s)/index entries have no metadata row and were not ingested (e.g. 8888.npy)" in out
    data = tmp_path / "data"
    assert names(data) == ["ingest_meta.json", "pairwise", "pairwise/label.tsv", "pairwise/pairwise.tfrecords",
                           "pointwise", "pointwise/pretrain_0.tfrecords", "pointwise/pretrain_1.tfrecords",
                           "tag_list.txt", "test_a", "test_a/test_a_0.tfrecords", "test_a/test_a_1.tfrecords",
                           "test_a/test_a_2.tfrecords"]
    pointwise = {}
    for name in ("pretrain_0", "pretrain_1"):
        pointwise.update(videos_of(data / "pointwise" / f"{name}.tfrecords", "pointwise"))
    pairwise = videos_of(data / "pairwise" / "pairwise.tfrecords", "pairwise")
    test = {}
    for index in range(3):
        test.update(videos_of(data / "test_a" / f"test_a_{index}.tfrecords", "test"))
    assert list(pairwise) == ["7000", "7001", "7002", "7003"]  # the labelled videos, in table order
    assert sorted(pointwise) == [str(7000 + i) for i in range(4, 12)]  # every other video
    assert sorted(test) == sorted(videos)  # --test-all
    for video_id, video in {**pointwise, **pairwise}.items():
        source = videos[video_id]
        assert video["title"] == source["title"] and video["asr_text"] == source["asr"]
        assert video["tag_id"] == source["tags"] and video["category_id"] == source["category"]
        np.testing.assert_array_equal(video["frames"], source["frames"].astype(np.float16))
    assert "tag_id" not in test["7005"]
    np.testing.assert_array_equal(test["7005"]["frames"], pointwise["7005"]["frames"])
    # label.tsv byte-for-byte; tag list by frequency over pointwise + pairwise, ties by smaller id.
    assert (data / "pairwise" / "label.tsv").read_bytes() == (tmp_path / "label.tsv").read_bytes()
    counts = {}
    for source in videos.values():
        for tag in source["tags"]:
            counts[tag] = counts.get(tag, 0) + 1
    expected = sorted(counts, key=lambda tag: (-counts[tag], tag))
    assert (data / "tag_list.txt").read_text().split() == [str(tag) for tag in expected]
    meta = json.loads((data / "ingest_meta.json").read_text())
    assert meta["counts"]["videos"] == 12 and meta["counts"]["pairs"] == 4 and meta["counts"]["skipped"] == 0
    assert meta["files"]["pointwise/pretrain_0.tfrecords"]["records"] == 5
    assert meta["counts"]["frames"] == sum(len(v["frames"]) for v in videos.values())

    # write_tfrecord.py reads the result as it is.
    assert write_tfrecord.main(["--data", str(data), "--folds", "2", "--quiet"]) == 0
    assert (data / "folds" / "folds.json").exists()


def test_offsets_array_and_json_lines(tmp_path):
    rng = np.random.default_rng(1)
    lengths = [4, 1, 7, 3]
    frames = _frames(rng, sum(lengths)).astype(np.float16)
    np.save(tmp_path / "frames.npy", frames)
    starts = np.cumsum([0] + lengths[:-1])
    ids = ["11", "22", "33", "44"]
    # The index lists the videos in another order than the array and the table.
    order = [2, 0, 3, 1]
    (tmp_path / "index.csv").write_text("id,start,end\n" + "".join(
        f"{ids[i]},{starts[i]},{starts[i] + lengths[i]}\n" for i in order))
    rows = [{"id": "11", "title": "a", "tags": [3, 4], "category": 101, "split": "pairwise"},
            {"id": 22, "title": "b", "asr_text": None, "tags": "4|5", "split": "test"},
            {"id": "33", "title": "c", "asr_text": "说", "tags": [], "extra": 1},
            {"id": "44", "title": "", "split": "test_a"}]
    (tmp_path / "meta.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows) + "\n")
    (tmp_path / "test_ids.txt").write_text("33\n")
    code = ingest.main(["--features", str(tmp_path / "frames.npy"), "--offsets", str(tmp_path / "index.csv"),
                        "--metadata", str(tmp_path / "meta.jsonl"), "--test-ids", str(tmp_path / "test_ids.txt"),
                        "--out", str(tmp_path / "data"), "--quiet"])
    assert code == 0
    data = tmp_path / "data"
    assert names(data) == ["ingest_meta.json", "pairwise", "pairwise/pairwise.tfrecords", "tag_list.txt", "test_a",
                           "test_a/test_a.tfrecords"]  # no labels: no label.tsv; no pointwise video
    pairwise = videos_of(data / "pairwise" / "pairwise.tfrecords", "pairwise")
    test = videos_of(data / "test_a" / "test_a.tfrecords", "test")
    assert list(pairwise) == ["11"] and list(test) == ["22", "33", "44"]
    for position, video_id in enumerate(ids):
        video = pairwise.get(video_id) or test[video_id]
        np.testing.assert_array_equal(video["frames"], frames[starts[position]:starts[position] + lengths[position]])
    assert pairwise["11"]["tag_id"] == [3, 4] and pairwise["11"]["category_id"] == 101
    assert test["22"]["asr_text"] == "nan" and test["33"]["asr_text"] == "说" and test["44"]["title"] == ""
    assert (data / "tag_list.txt").read_text().split() == ["3", "4"]  # only pointwise + pairwise videos count


def test_tag_list_keeps_the_10000_most_frequent(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "TAG_LIST_SIZE", 3)
    make_collection(tmp_path, count=8)
    rows = (tmp_path / "meta.csv").read_text().splitlines()
    rows = [rows[0]] + [f"{row.rsplit(',', 2)[0]},9;8;7;{100 + i},1" for i, row in enumerate(rows[1:])]
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    assert run(tmp_path) == 0
    assert (tmp_path / "data" / "tag_list.txt").read_text() == "7\n8\n9\n"


# ------------------------------------------------------------------------------------ bad input
def _edit_row(root, index, **changes):
    """Change cells of data row ``index`` (0-based) of meta.csv."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO((root / "meta.csv").read_text(encoding="utf-8"))))
    header = rows[0]
    for key, value in changes.items():
        rows[index + 1][header.index(key)] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    (root / "meta.csv").write_text(buffer.getvalue(), encoding="utf-8")


def _replace_array(root, video_id, array):
    for suffix in (".npy", ".npz"):
        (root / "features" / f"{video_id}{suffix}").unlink(missing_ok=True)
    if array is not None:
        np.save(root / "features" / f"{video_id}.npy", array)


def _nan(rng):
    array = _frames(rng, 4)
    array[2, 17] = np.nan
    return array


def _inf(rng):
    array = _frames(rng, 4)
    array[1, 3] = -np.inf
    return array


def _huge(rng):
    array = _frames(rng, 4)
    array[3, 0] = 1e6
    return array


# name -> (damage(root, rng), file that is named, line, expected problem)
BAD = {
    "wrong dimension": (lambda root, rng: _replace_array(root, "7005", _frames(rng, 3)[:, :100]), "meta.csv", 7,
                        r"video 7005: features: features have 100 values a frame, expected 1536"),
    "one-dimensional": (lambda root, rng: _replace_array(root, "7005", np.zeros(DIM, np.float32)), "meta.csv", 7,
                        r"features have shape \(1536,\), expected \[frames, 1536\]"),
    "integer dtype": (lambda root, rng: _replace_array(root, "7005", np.zeros((2, DIM), np.int32)), "meta.csv", 7,
                      r"features have dtype int32, expected float16/32/64"),
    "NaN": (lambda root, rng: _replace_array(root, "7005", _nan(rng)), "meta.csv", 7, r"frame 2 holds nan \(NaN/Inf\)"),
    "Inf": (lambda root, rng: _replace_array(root, "7005", _inf(rng)), "meta.csv", 7, r"frame 1 holds -inf \(NaN/Inf\)"),
    "beyond float16": (lambda root, rng: _replace_array(root, "7005", _huge(rng)), "meta.csv", 7,
                       r"frame 3 holds 1000000.0, beyond the float16 range"),
    "empty array": (lambda root, rng: _replace_array(root, "7005", np.zeros((0, DIM), np.float16)), "meta.csv", 7,
                    r"features hold no frames \(shape \(0, 1536\)\)"),
    "no feature file": (lambda root, rng: _replace_array(root, "7005", None), "meta.csv", 7,
                        r"video 7005: features: no feature file .*features/7005.npy or .npz"),
    "unreadable file": (lambda root, rng: (_replace_array(root, "7005", None),
                                           (root / "features" / "7005.npy").write_bytes(b"junk")), "meta.csv", 7,
                        r"video 7005: features: cannot read .*7005.npy"),
    "npz without a frames array": (lambda root, rng: (_replace_array(root, "7005", None), np.savez(
        root / "features" / "7005.npz", a=_frames(rng, 2), b=_frames(rng, 2))), "meta.csv", 7,
        r"7005.npz holds the arrays \['a', 'b'\]: name the frame array 'frames'"),
    "pickled objects": (lambda root, rng: _replace_array(root, "7005", np.array([{}], dtype=object)), "meta.csv", 7,
                        r"cannot read .*7005.npy: Object arrays cannot be loaded"),
    "duplicate id": (lambda root, rng: _edit_row(root, 6, id="7001"), "meta.csv", 8,
                     r"video 7001: duplicate id \(first on line 3\)"),
    "empty id": (lambda root, rng: _edit_row(root, 5, id=""), "meta.csv", 7, r"empty id"),
    "id with whitespace": (lambda root, rng: _edit_row(root, 5, id=" 7005"), "meta.csv", 7,
                           r"id ' 7005' has leading or trailing whitespace"),
    "id with a control character": (lambda root, rng: _edit_row(root, 5, id="70\x0105"), "meta.csv", 7,
                                    r"holds a control character"),
    "id not decimal": (lambda root, rng: _edit_row(root, 5, id="abc"), "meta.csv", 7, r"id 'abc' is not a decimal id"),
    "bad tag": (lambda root, rng: _edit_row(root, 5, tags="3;x"), "meta.csv", 7,
                r"video 7005: tag 'x' is not a non-negative integer id"),
    "tag twice": (lambda root, rng: _edit_row(root, 5, tags="3;3"), "meta.csv", 7, r"tag 3 is listed twice"),
    "bad category": (lambda root, rng: _edit_row(root, 5, category="-4"), "meta.csv", 7,
                     r"category '-4' is not a non-negative integer id"),
    "label id without a video": (lambda root, rng: (root / "label.tsv").write_text(
        (root / "label.tsv").read_text() + "7001\t9999\t0.5\n"), "label.tsv", 5,
        r"video 9999 has no ingested video"),
}


@pytest.mark.parametrize("fault", list(BAD))
def test_bad_input_is_an_error_naming_the_row_and_leaves_data_untouched(fault, tmp_path, capsys):
    make_collection(tmp_path)
    damage, source, line, expected = BAD[fault]
    damage(tmp_path, np.random.default_rng(5))
    code = run(tmp_path, None, "--labels", str(tmp_path / "label.tsv"))
    error = capsys.readouterr().err
    assert code == 2, error
    assert re.search(rf"{source}, line {line}: .*{expected}", error), error
    assert names(tmp_path / "data") == []  # nothing written, no staging directory left


@pytest.mark.parametrize("fault", ["NaN", "duplicate id", "id not decimal", "no feature file", "bad tag"])
def test_skip_bad_skips_lists_and_drops_the_label_lines(fault, tmp_path, capsys):
    make_collection(tmp_path)
    damage, source, line, expected = BAD[fault]
    damage(tmp_path, np.random.default_rng(5))
    # Row 7001 (line 3) is bad too: its label lines go.
    _replace_array(tmp_path, "7001", _nan(np.random.default_rng(6)))
    assert run(tmp_path, None, "--labels", str(tmp_path / "label.tsv"), "--skip-bad") == 0
    out = capsys.readouterr().out
    data = tmp_path / "data"
    skipped = (data / "ingest_skipped.tsv").read_text().splitlines()
    assert skipped[0] == "source\tlocation\tid\tproblem"
    assert any(entry.endswith("meta.csv\tline 3\t7001\tfeatures: frame 2 holds nan (NaN/Inf)") for entry in skipped)
    assert any(f"meta.csv\tline {line}\t" in entry and re.search(expected.split(": ")[-1], entry)
               for entry in skipped), skipped
    dropped = [entry for entry in skipped if "label.tsv" in entry]
    assert [entry.split("\t")[1] for entry in dropped] == ["line 1", "line 2"]
    assert (data / "pairwise" / "label.tsv").read_text() == "7003\t7000\t0.0\n7002\t7003\t0.85\n"
    assert len(read_labels(data / "pairwise" / "label.tsv")) == 2
    meta = json.loads((data / "ingest_meta.json").read_text())
    assert meta["counts"]["skipped"] == len(skipped) - 1 and "skipped" in out
    pairwise = videos_of(data / "pairwise" / "pairwise.tfrecords", "pairwise")
    assert sorted(pairwise) == ["7000", "7002", "7003"]
    ingested = set(pairwise)
    for path in (data / "pointwise").glob("*.tfrecords"):
        ingested |= set(videos_of(path, "pointwise"))
    assert "7001" not in ingested and meta["counts"]["videos"] == len(ingested)


def test_table_level_errors(tmp_path, capsys):
    make_collection(tmp_path, count=4)
    meta = tmp_path / "meta.csv"
    text = meta.read_text()
    cases = {
        "id,name\n1,x\n": r"meta.csv, line 1: the header has no 'title' column",
        "id,title\n1,x,y\n": r"meta.csv, line 2: row has 3 fields, the header 2",
        "": r"meta.csv: empty metadata file",
        "id,title,split\n7000,x,train\n": r"meta.csv, line 2: video 7000: split 'train' is not one of",
        "id,title,id\n1,x,1\n": r"column\(s\) \['id'\] appear twice",
    }
    for content, expected in cases.items():
        meta.write_text(content)
        assert run(tmp_path) == 2
        error = capsys.readouterr().err
        assert re.search(expected, error), (content, error)
    meta.write_text(text)
    (tmp_path / "meta.jsonl").write_text('{"id": "7000", "title": "x"}\n[1, 2]\n')
    assert run(tmp_path, None, metadata=tmp_path / "meta.jsonl") == 2
    assert "meta.jsonl, line 2: expected a JSON object, got list" in capsys.readouterr().err
    (tmp_path / "meta.jsonl").write_text('{"id": "7000"}\n')
    assert run(tmp_path, None, metadata=tmp_path / "meta.jsonl") == 2
    assert "meta.jsonl, line 1: video 7000: missing title" in capsys.readouterr().err
    (tmp_path / "meta.xlsx").write_text("")
    assert run(tmp_path, None, metadata=tmp_path / "meta.xlsx") == 2
    assert "unknown metadata format" in capsys.readouterr().err
    (tmp_path / "test_ids.txt").write_text("7000\n123\n")
    assert run(tmp_path, None, "--test-ids", str(tmp_path / "test_ids.txt")) == 2
    assert "test_ids.txt, line 2: video 123: no ingested video" in capsys.readouterr().err
    (tmp_path / "label.tsv").write_text("7000\t7001\t0.33\n")
    assert run(tmp_path, None, "--labels", str(tmp_path / "label.tsv")) == 2
    assert "label.tsv, line 1: score 0.33 is not on the 0.05 grid" in capsys.readouterr().err
    assert run(tmp_path, None, features=tmp_path / "nowhere") == 2
    assert "features directory not found" in capsys.readouterr().err
    assert names(tmp_path / "data") == []


def test_offsets_index_errors(tmp_path, capsys):
    np.save(tmp_path / "frames.npy", np.zeros((10, DIM), np.float16))
    (tmp_path / "meta.csv").write_text("id,title\n1,a\n2,b\n")

    def attempt(index_text, *extra):
        (tmp_path / "index.csv").write_text(index_text)
        code = ingest.main(["--features", str(tmp_path / "frames.npy"), "--offsets", str(tmp_path / "index.csv"),
                            "--metadata", str(tmp_path / "meta.csv"), "--out", str(tmp_path / "data"), "--quiet",
                            *extra])
        return code, capsys.readouterr()

    code, captured = attempt("id,start,end\n1,0,4\n2,4,12\n")
    assert code == 2 and "index.csv, line 3: video 2: rows 4..12 are outside the array's 10 rows" in captured.err
    code, captured = attempt("id,start,end\n1,0,4\n1,4,6\n2,6,8\n")
    assert code == 2 and "index.csv, line 3: video 1: duplicate id in the index (first on line 2)" in captured.err
    code, captured = attempt("id,start,end\n1,0,4\n2,4,4\n")
    assert code == 2 and "meta.csv, line 3: video 2: features: features hold no frames" in captured.err
    code, captured = attempt("id,start\n1,0\n")
    assert code == 2 and "index.csv, line 1: the header has no column(s) ['end']" in captured.err
    code, captured = attempt("id,start,end\n1,0,4\n2,4,4\n3,4,6\n", "--skip-bad")
    assert code == 0 and "1 feature file(s)/index entries have no metadata row" in captured.out
    assert videos_of(tmp_path / "data" / "pointwise" / "pretrain_0.tfrecords", "pointwise")["1"]["frames"].shape == (4, DIM)
    code = ingest.main(["--features", str(tmp_path / "frames.npy"), "--metadata", str(tmp_path / "meta.csv"),
                        "--out", str(tmp_path / "other"), "--quiet"])
    assert code == 2 and "needs --offsets" in capsys.readouterr().err


def test_refuses_to_replace_a_data_set_without_overwrite_and_cleans_stale_staging(tmp_path, capsys):
    make_collection(tmp_path, count=6)
    assert run(tmp_path) == 0
    first = (tmp_path / "data" / "pointwise" / "pretrain_0.tfrecords").read_bytes()
    assert run(tmp_path) == 2
    assert "already holds a data set" in capsys.readouterr().err
    stale = tmp_path / "data" / ".ingest-999999999.tmp"  # a killed run's staging directory
    stale.mkdir()
    (stale / "x").write_text("partial")
    assert run(tmp_path, None, "--overwrite", "--shard-size", "2") == 0
    data = tmp_path / "data"
    assert sorted(p.name for p in (data / "pointwise").iterdir()) == ["pretrain_0.tfrecords", "pretrain_1.tfrecords",
                                                                    "pretrain_2.tfrecords"]
    assert not stale.exists() and (data / "pointwise" / "pretrain_0.tfrecords").read_bytes() != first
    assert [name for name in os.listdir(data) if name.startswith(".")] == []


def test_write_tfrecord_reads_pairwise_shards(tmp_path):
    make_collection(tmp_path)
    assert run(tmp_path, None, "--labels", str(tmp_path / "label.tsv"), "--shard-size", "3") == 0
    data = tmp_path / "data"
    shards = write_tfrecord.default_pairwise_files(str(data))
    assert [os.path.basename(path) for path in shards] == ["pairwise_0.tfrecords", "pairwise_1.tfrecords"]
    assert write_tfrecord.main(["--data", str(data), "--folds", "2", "--quiet"]) == 0
    info = json.loads((data / "folds" / "folds.json").read_text())
    assert sum(fold["pairs"] for fold in info["folds"]) == 4


@pytest.mark.parametrize("value, problem", [
    ("123", None), ("", "empty id"), (None, "missing id"), ("12 3", "holds whitespace"),
    ("123\n", "leading or trailing whitespace"), ("1\x002", "control character"), ("١٢٣", "not a decimal id"),
    ("-5", "not a decimal id"), (True, "decimal string"), (123, None)])
def test_id_problem(value, problem):
    found = ingest.id_problem(value)
    assert (found is None) if problem is None else (problem in found)


def test_parse_tags_and_category():
    assert ingest.parse_tags("1;2 3,4|5") == [1, 2, 3, 4, 5]
    assert ingest.parse_tags("[7, 8]") == [7, 8] and ingest.parse_tags([9, "10"]) == [9, 10]
    assert ingest.parse_tags("") == [] and ingest.parse_tags(None) == [] and ingest.parse_tags(4) == [4]
    for bad in ("1;-2", "1.5", [1.5], {"a": 1}, "1;1"):
        with pytest.raises(ValueError):
            ingest.parse_tags(bad)
    assert ingest.parse_category("") == -1 and ingest.parse_category(None) == -1
    assert ingest.parse_category("10203") == 10203 and ingest.parse_category(7) == 7
    for bad in ("x", -1, "1.5", True):
        with pytest.raises(ValueError):
            ingest.parse_category(bad)
