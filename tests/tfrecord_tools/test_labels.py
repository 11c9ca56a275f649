"""label.tsv reader: the real file parses exactly; every bad line is an error naming file and line."""
import numpy as np
import pytest

from tfrecord_tools.errors import LabelError
from tfrecord_tools.labels import file_md5, read_labels


def test_real_label_file(shared_data):
    path = shared_data / "label.tsv"
    assert file_md5(path) == "579cf79909a3585bda505d58412d1d79"
    labels = read_labels(path)
    assert len(labels) == 67899
    assert len(labels.video_ids()) == 63613
    assert len(set(labels.query)) == 29467
    assert labels.score.dtype == np.float32
    first = (labels.query[0], labels.candidate[0], labels.score[0])
    assert first == ("2345203561710400875", "5344606281729891758", 1.0)
    assert labels.score[1] == np.float32(0.85)
    assert round(float(np.mean(labels.score == 0.0)), 3) == 0.364
    assert round(float(np.mean(labels.score == 1.0)), 3) == 0.139
    assert round(float(labels.score.mean()), 3) == 0.359
    assert float(np.median(labels.score)) == pytest.approx(0.2)
    # the official file lists 45 pairs in both directions; those are not duplicates
    ordered = set(zip(labels.query, labels.candidate))
    assert sum((c, q) in ordered for q, c in ordered) == 90


def test_sample_label_file(shared_data):
    labels = read_labels(shared_data / "sample" / "label.tsv")
    assert labels.video_ids() == ["967112847563400570", "8172871013774497198"]
    assert labels.score.tolist() == [0.0]


def _write(tmp_path, lines):
    path = tmp_path / "label.tsv"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = ["11\t22\t1.0", "11\t33\t0.85"]


@pytest.mark.parametrize("bad, problem", [
    ("11\t44", "expected 3 tab-separated fields, got 2"),
    ("11 44 0.5", "expected 3 tab-separated fields, got 1"),
    ("11\t44\thigh", "score 'high' is not a number"),
    ("11\t44\t1.5", "score 1.5 is outside [0, 1]"),
    ("11\t44\t-0.05", "score -0.05 is outside [0, 1]"),
    ("11\t44\tnan", "score nan is outside [0, 1]"),
    ("11\t44\t0.33", "score 0.33 is not on the 0.05 grid"),
    ("11\t22\t0.5", "pair 11/22 already listed on line 1"),
    ("44\t44\t0.5", "pair of video 44 with itself"),
    ("1a\t44\t0.5", "query_id '1a' is not a decimal id"),
    ("", "empty line"),
])
def test_bad_line_names_file_and_line(tmp_path, bad, problem):
    path = _write(tmp_path, GOOD + [bad])
    with pytest.raises(LabelError) as info:
        read_labels(path)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{path}, line 3: ")
    assert problem in str(info.value)


def test_options_and_reverse_pairs(tmp_path):
    path = _write(tmp_path, GOOD + ["22\t11\t0.9", "11\t44\t0.33"])
    with pytest.raises(LabelError, match="grid"):
        read_labels(path)
    labels = read_labels(path, check_grid=False)  # the reversed pair 22/11 is a different pair
    assert labels.score.tolist() == pytest.approx([1.0, 0.85, 0.9, 0.33])
    duplicate = _write(tmp_path, GOOD + ["11\t22\t0.0"])
    assert len(read_labels(duplicate, allow_duplicates=True)) == 3


def test_empty_file(tmp_path):
    path = _write(tmp_path, [])
    with pytest.raises(LabelError, match="holds no pairs"):
        read_labels(path)
