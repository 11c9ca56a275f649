"""The write_tfrecord.py command line (fold shards), run as users run it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import write_tfrecord
from tfrecord_tools import folds, schema, writer
from tfrecord_tools.labels import file_md5

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """DIR/pairwise/{pairwise.tfrecords,label.tsv}: 8 components of 3 videos, 3 pairs each."""
    root = tmp_path_factory.mktemp("cli_data")
    rng = np.random.default_rng(5)
    ids = [str(7_000_000 + k) for k in range(24)]
    records = [writer.serialize_video({"id": video_id, "title": "标题", "asr_text": "nan",
                                       "frames": rng.standard_normal((2, schema.FRAME_DIM)).astype(np.float16),
                                       "tag_id": [1, 2], "category_id": 10101}, schema.RecordKind.PAIRWISE)
               for video_id in ids]
    os.makedirs(root / "pairwise")
    writer.write_records(root / "pairwise" / "pairwise.tfrecords", records)
    lines = [f"{ids[g + a]}\t{ids[g + b]}\t{0.05 * (g % 20):.2f}"
             for g in range(0, 24, 3) for a, b in ((0, 1), (1, 2), (2, 0))]
    (root / "pairwise" / "label.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_cli_writes_a_complete_component_split(data_dir):
    out = data_dir / "folds_cli"
    result = subprocess.run([sys.executable, "write_tfrecord.py", "--data", str(data_dir), "--out", str(out),
                             "--folds", "3", "--seed", "1", "--split", "components"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "folds.json").read_text(encoding="utf-8"))
    assert (info["num_folds"], info["seed"], info["split"], info["num_pairs"]) == (3, 1, "components", 24)
    assert info["labels"]["md5"] == file_md5(data_dir / "pairwise" / "label.tsv")
    assert [entry["pairs"] for entry in info["folds"]] == [9, 9, 6]  # 8 components of 3 pairs
    assert info["videos_in_several_folds"] == 0
    assert "3 folds, split=components, seed=1: 24 pairs, 24 videos" in result.stdout
    train, val = folds.fold_files(out, 1)
    assert val.endswith("fold_01.tfrecords") and [os.path.basename(p) for p in train] == [
        "fold_00.tfrecords", "fold_02.tfrecords"]
    assert sum(1 for _ in tf.data.TFRecordDataset(train)) == 15


def test_cli_defaults_and_bad_input(data_dir, tmp_path, capsys):
    args = write_tfrecord.parse_args(["--data", str(data_dir)])
    assert args.out == os.path.join(str(data_dir), "folds")
    assert args.pairwise == [os.path.join(str(data_dir), "pairwise", "pairwise.tfrecords")]
    assert args.labels == os.path.join(str(data_dir), "pairwise", "label.tsv")
    assert (args.folds, args.seed, args.split) == (11, 42, "pairs")
    with pytest.raises(SystemExit):
        write_tfrecord.parse_args(["--labels", "x.tsv"])
    assert "give --data" in capsys.readouterr().err

    labels = tmp_path / "label.tsv"
    labels.write_text((data_dir / "pairwise" / "label.tsv").read_text() + "7000000\t555\t0.5\n")
    code = write_tfrecord.main(["--pairwise", str(data_dir / "pairwise" / "pairwise.tfrecords"),
                                "--labels", str(labels), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "write_tfrecord.py: error:" in err and "line 25: candidate_id 555 is not in the pairwise" in err
    assert not (tmp_path / "out").exists()
