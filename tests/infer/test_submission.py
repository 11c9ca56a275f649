"""result.zip writer and validator, and the validation command line."""
import json
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from infer.embeddings_io import save_embeddings
from infer.submission import main, read_id_list, validate_result, write_result
from tfrecord_tools.errors import DataError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
IDS = ["2345", "17", "999999999999"]


def _write_json(path, result, name="result.json"):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, json.dumps(result))
    return path


def test_round_trip_float16_rounding(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 256)).astype(np.float32)
    path = tmp_path / "result.zip"
    summary = write_result(path, IDS, emb)
    assert summary["num_ids"] == 3 and summary["dim"] == 256 and summary["path"] == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.zip"]
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["result.json"]
        assert archive.getinfo("result.json").compress_type == zipfile.ZIP_DEFLATED
        result = json.loads(archive.read("result.json"))
    assert list(result) == IDS
    for row, key in enumerate(IDS):
        assert result[key] == [float(np.float16(x)) for x in emb[row]]
    assert result[IDS[0]][0] != float(emb[0, 0])  # really rounded (float32 value differs)


def test_writer_rejects_bad_embeddings(tmp_path):
    path = tmp_path / "result.zip"
    with pytest.raises(DataError, match="dimension 257 outside 1..256"):
        write_result(path, IDS, np.zeros((3, 257), np.float32))
    with pytest.raises(DataError, match="NaN/inf"):
        write_result(path, IDS, np.full((3, 4), np.nan, np.float32))
    with pytest.raises(DataError, match="overflow float16"):
        write_result(path, IDS, np.full((3, 4), 1e6, np.float32))
    with pytest.raises(DataError, match="duplicated id"):
        write_result(path, ["1", "1", "2"], np.zeros((3, 4), np.float32))
    assert not path.exists()


@pytest.mark.parametrize("result, name, message", [
    ({"2345": [0.1], "17": [0.2]}, "result.json", r"1 expected id\(s\) missing, first: 999999999999"),
    ({k: [0.1] for k in IDS + ["5"]}, "result.json", r"1 id\(s\) not in the expected ids, first: 5"),
    ({k: [0.0] * 257 for k in IDS}, "result.json", "dimension 257 exceeds the maximum 256"),
    ({"2345": [0.1, float("nan")], "17": [0.1, 0.2], "999999999999": [0.0, 0.0]}, "result.json", "NaN is not a number JSON allows"),
    ({"2345": [0.1, 0.2], "17": [0.1], "999999999999": [0.0, 0.0]}, "result.json", "dimension 1 differs"),
    ({"2345": [0.1, "x"], "17": [0.1, 0.2], "999999999999": [0.0, 0.0]}, "result.json", "value 'x' is not a number"),
    ({"2345": [True], "17": [0.1], "999999999999": [0.0]}, "result.json", "value True is not a number"),
    ({k: [0.1] for k in IDS}, "sub/result.json", "must be at the zip root"),
    ([[0.1]], "result.json", "expected a JSON object"),
])
def test_validator_rejections(tmp_path, result, name, message):
    path = _write_json(tmp_path / "result.zip", result, name)
    with pytest.raises(DataError, match=message) as info:
        validate_result(path, IDS)
    assert "result.zip" in str(info.value)


def test_validator_rejects_non_zip_and_bad_json(tmp_path):
    plain = tmp_path / "result.zip"
    plain.write_text("{}")
    with pytest.raises(DataError, match="not a zip file"):
        validate_result(plain, IDS)
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("result.json", "{\"1\": [0.1,")
    with pytest.raises(DataError, match="invalid JSON"):
        validate_result(broken, ["1"])


def test_read_id_list(tmp_path):
    text = tmp_path / "ids.txt"
    text.write_text("17\n2345\n\n")
    assert read_id_list(text).tolist() == ["17", "2345"]
    text.write_text("17\nabc\n")
    with pytest.raises(DataError, match="line 2"):
        read_id_list(text)
    npz = tmp_path / "test.npz"
    save_embeddings(npz, IDS, np.ones((3, 2), np.float32))
    assert read_id_list(npz).tolist() == IDS


def test_cli_validate_and_write(tmp_path, capsys):
    npz = tmp_path / "test.npz"
    save_embeddings(npz, IDS, np.ones((3, 8), np.float32))
    zip_path = tmp_path / "result.zip"
    assert main([str(zip_path), "--write-from", str(npz)]) == 0
    assert json.loads(capsys.readouterr().out)["dim"] == 8
    ids_txt = tmp_path / "ids.txt"
    ids_txt.write_text("\n".join(IDS[:2]) + "\n")
    assert main([str(zip_path), "--validate", "--ids", str(ids_txt)]) == 1
    assert "1 id(s) not in the expected ids, first: 999999999999" in capsys.readouterr().err
    # the real entry point, as a user runs it
    done = subprocess.run([sys.executable, "-m", "infer.submission", str(zip_path), "--ids", str(npz)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"valid": True, "path": str(zip_path), "num_ids": 3, "dim": 8,
                                       "min": 1.0, "max": 1.0}
