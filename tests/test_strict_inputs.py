"""Issue 10, inputs a careless user gives: bad video ids on every path, a submission check as strict
as the scorer, and the smaller defects (label.tsv encoding and digits, tag ids, globs, CLI order).

Each test failed on the code before issue 10 (exit 0 or a traceback instead of the error named)."""
from __future__ import annotations

import pathlib
import time
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from infer.embeddings_io import save_embeddings
from infer.submission import result_size_limit, validate_result, write_result
from tfrecord_tools import reader, schema, writer
from tfrecord_tools.errors import DataError, RecordError

IDS = ["2345", "17", "999999999999"]


def _records(path) -> list[bytes]:
    return [record.numpy() for record in tf.data.TFRecordDataset(str(path))]


def _with_id(record: bytes, value: bytes) -> bytes:
    example = tf.train.Example.FromString(record)
    del example.features.feature[schema.KEY_ID].bytes_list.value[:]
    example.features.feature[schema.KEY_ID].bytes_list.value.append(value)
    return example.SerializeToString()


@pytest.fixture(scope="module")
def test_records(synthetic_data):
    return _records(synthetic_data / "test_a" / "test_a.tfrecords")


BAD_IDS = {
    "empty": (b"", "video id is empty"),
    "tab": (b"12\t34", r"holds U\+0009 \(category Cc\) at position 2"),
    "newline": (b"1234\n", r"U\+000A"),
    "ideographic space": ("12\u30004".encode(), r"U\+3000 IDEOGRAPHIC SPACE \(category Zs\)"),
    "zero-width space": ("12\u200b4".encode(), r"U\+200B ZERO WIDTH SPACE \(category Cf\)"),
    "not UTF-8": (b"12\xff34", "is not valid UTF-8"),
}


# ------------------------------------------------------------------------------------------ ids
@pytest.mark.parametrize("case", list(BAD_IDS))
def test_bad_video_ids_are_refused_on_every_reader_path(case, test_records, tmp_path):
    value, message = BAD_IDS[case]
    path = tmp_path / "test_b.tfrecords"
    writer.write_records(path, test_records[:3] + [_with_id(test_records[3], value)] + test_records[4:6])
    expected = rf"test_b.tfrecords, record 3: .*{message}"
    with pytest.raises(RecordError, match=expected):  # Python readers (baselines, golden tests)
        list(reader.read_raw_videos(path, schema.RecordKind.TEST))
    with pytest.raises(RecordError, match=expected):  # the tf.data readers (training, inference)
        for _ in reader.iterate_checked(reader.read_videos([str(path)], "test", reader.VideoDecoder(), 4)):
            pass
    with pytest.raises(RecordError, match=expected):  # inference scans ids before embedding
        from infer.embed import embed_videos

        embed_videos(None, [str(path)], "test", progress=False)


def test_duplicate_test_ids_are_refused_naming_both_records(test_records, tmp_path):
    from infer.embed import embed_videos

    first, second = tmp_path / "a.tfrecords", tmp_path / "b.tfrecords"
    writer.write_records(first, test_records[:4])
    writer.write_records(second, test_records[4:6] + [test_records[1]])
    dup = tf.train.Example.FromString(test_records[1]).features.feature["id"].bytes_list.value[0].decode()
    with pytest.raises(RecordError, match=rf"b.tfrecords, record 2: duplicate video id {dup}: already in "
                                          rf".*a.tfrecords, record 1"):
        embed_videos(None, [str(first), str(second)], "test", progress=False)


def test_baselines_refuse_duplicate_ids(synthetic_data, folds_dir, tmp_path):
    import shutil

    from infer.baselines import write_strong_baselines

    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    path = data / "pairwise" / "pairwise.tfrecords"
    records = _records(path)
    writer.write_records(path, records + [records[2]])
    with pytest.raises(RecordError, match=rf"pairwise.tfrecords, record {len(records)}: duplicate video id \d+: "
                                          r"already in .*pairwise.tfrecords, record 2"):
        write_strong_baselines(str(data), str(folds_dir), str(tmp_path / "out"), progress=False)


def test_embedding_files_and_submissions_refuse_bad_ids(tmp_path):
    with pytest.raises(DataError, match=r"row 1: video id '1\\t2' holds U\+0009"):
        save_embeddings(tmp_path / "x.npz", ["1", "1\t2"], np.ones((2, 3), np.float32))
    with pytest.raises(DataError, match="row 0: video id is empty"):
        write_result(tmp_path / "result.zip", ["", "2"], np.ones((2, 3), np.float32))
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "result.zip").exists()


# ------------------------------------------------------------------- the submission check = the scorer
def _zip(path, members: list[tuple[str, str | bytes]]) -> pathlib.Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def _vectors(value) -> str:
    return "{" + ", ".join(f'"{key}": [{value}, 0.5]' for key in IDS) + "}"


@pytest.mark.parametrize("case, members, message", [
    ("overflows float16", [("result.json", _vectors("70000"))], r"70000.0 is not a finite number after float16"),
    ("1e30", [("result.json", _vectors("1e30"))], "not a finite number after float16 rounding"),
    ("1e400 literal", [("result.json", _vectors("1e400"))], "not a finite number after float16 rounding"),
    ("400-digit integer", [("result.json", _vectors("1" * 400))], "not a finite number after float16 rounding"),
    ("NaN literal", [("result.json", _vectors("NaN"))], "NaN is not a number JSON allows"),
    ("zero vector", [("result.json", '{"2345": [0.0, 0.0], "17": [0.1, 0.2], "999999999999": [1, 2]}')],
     "id 2345: all-zero vector after float16 rounding"),
    ("rounds to zero", [("result.json", '{"2345": [1e-9, 0], "17": [0.1, 0.2], "999999999999": [1, 2]}')],
     "id 2345: all-zero vector"),
    ("duplicate key", [("result.json", '{"2345": [0.1], "17": [0.2], "2345": [0.3], "999999999999": [1]}')],
     "key '2345' appears twice"),
    ("two result.json", [("result.json", _vectors("0.1")), ("result.json", _vectors("0.2"))],
     "2 members named result.json"),
    ("path parts", [("result.json", _vectors("0.1")), ("../result.json", _vectors("0.2"))],
     r"member name '../result.json' has path parts"),
    ("extra member", [("result.json", _vectors("0.1")), ("notes.txt", "hi")], r"unexpected member\(s\) \['notes.txt'\]"),
    ("deep nesting", [("result.json", "[" * 200_000 + "]" * 200_000)], "declares .* uncompressed bytes"),
    ("deep nesting, small", [("result.json", '{"2345": ' + "[" * 5000 + "]" * 5000 + "}")],
     r"invalid JSON \(nested too deeply\)"),
])
def test_validator_is_as_strict_as_the_scorer(case, members, message, tmp_path):
    with pytest.warns(UserWarning) if case == "two result.json" else _nothing():
        path = _zip(tmp_path / "result.zip", members)
    with pytest.raises(DataError, match=message) as error:
        validate_result(path, IDS)
    assert "result.zip" in str(error.value)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_validator_refuses_a_zip_bomb_before_inflating_it(tmp_path):
    path = tmp_path / "result.zip"
    size = 256 << 20  # 256 MiB of spaces deflate to ~250 KB
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("result.json", "w", force_zip64=True) as handle:
            handle.write(b'{"2345": [0.1]')
            chunk = b" " * (1 << 20)
            for _ in range(size >> 20):
                handle.write(chunk)
            handle.write(b"}")
    assert path.stat().st_size < 2 << 20
    started = time.perf_counter()
    with pytest.raises(DataError, match=rf"declares {size + 15} uncompressed bytes, more than "
                                        rf"{result_size_limit(3)} that 3 ids x 256 values can need"):
        validate_result(path, IDS)
    assert time.perf_counter() - started < 1.0


def test_writer_refuses_what_the_validator_refuses(tmp_path):
    path = tmp_path / "result.zip"
    with pytest.raises(DataError, match="overflow float16"):
        write_result(path, IDS, np.array([[70000.0, 1.0], [1, 1], [1, 1]], np.float32))
    with pytest.raises(DataError, match=r"1 row\(s\) are all zeros after float16 rounding, first row 1"):
        write_result(path, IDS, np.array([[1.0, 1.0], [1e-9, 0], [1, 1]], np.float32))
    assert not path.exists()
    summary = write_result(path, IDS, np.array([[65504.0, 1.0], [1e-3, 0], [1, 1]], np.float32))
    assert summary["max"] == 65504.0


# ------------------------------------------------------------------------------ smaller defects
@pytest.mark.parametrize("line, message", [
    ("11\t44\t０.５", r"score '０.５' is not a number written with ASCII digits"),  # full-width digits
    ("11\t44\t٠.٥", r"score '٠.٥' is not a number written with ASCII digits"),  # Arabic-Indic digits
    ("11\t44\t0.0_5", r"score '0.0_5' is not a number written with ASCII digits"),
    ("１1\t44\t0.5", r"query_id '１1' is not a decimal id"),
])
def test_label_scores_and_ids_must_be_ascii_numbers(line, message, tmp_path):
    from tfrecord_tools.labels import read_labels

    path = tmp_path / "label.tsv"
    path.write_text(f"11\t22\t1.0\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"label.tsv, line 2: {message}"):
        read_labels(path)


def test_non_utf8_label_file_names_file_and_line(tmp_path):
    from tfrecord_tools.labels import read_labels

    path = tmp_path / "label.tsv"
    path.write_bytes(b"11\t22\t1.0\n11\t33\t0.5\n11\t4\xff4\t0.5\n")
    with pytest.raises(DataError, match=r"label.tsv, line 3: not valid UTF-8 text"):
        read_labels(path)


def test_a_23_digit_tag_id_is_an_error_naming_the_line(tmp_path):
    from tfrecord_tools.tags import TagVocab

    path = tmp_path / "tag_list.txt"
    path.write_text("17\n12345678901234567890123\n")
    with pytest.raises(DataError, match=r"tag_list.txt, line 2: tag id 12345678901234567890123 does not fit a 64-bit"):
        TagVocab.from_file(path)


def test_a_literal_bracket_in_a_path_is_not_a_glob(test_records, tmp_path):
    directory = tmp_path / "run[1]"
    directory.mkdir()
    path = directory / "test_a.tfrecords"
    writer.write_records(path, test_records[:4])
    assert reader._resolve_files([str(path)]) == [str(path)]
    assert len(list(reader.read_raw_videos(path, "test"))) == 4
    assert reader._resolve_files([str(tmp_path / "run?1?" / "*.tfrecords")]) == [str(path)]  # real globs still work


def test_overrides_may_follow_the_options(tmp_path, capsys):
    from train.pretrain import main

    # argparse used to stop at "max_steps=1 --data ...": "unrecognized arguments"
    with pytest.raises(SystemExit):
        main(["--model", "baseline", "--out", str(tmp_path / "run"), "max_steps=1", "--data", str(tmp_path),
              "--preset", "tiny", "batch_size=8"])
    error = capsys.readouterr().err
    assert "no pointwise" in error and "unrecognized" not in error  # parsed; then the empty data dir is refused
