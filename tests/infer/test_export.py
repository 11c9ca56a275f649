"""SavedModel exports (infer/export.py, ensemble/export.py): a fresh Python process that imports
nothing of the project loads the export and reproduces infer.embed / the ensemble to 1e-4."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from tests.train.helpers import TINY_RUN

# Runs in a clean directory with a clean PYTHONPATH: only TensorFlow, tensorflow-text and numpy.
LOADER = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # registers the tokenizer ops
    export, records, reference, out = sys.argv[1:5]
    project = {"infer", "models", "train", "tfrecord_tools", "ensemble", "search", "ensemble_final"}
    loaded = tf.saved_model.load(export)
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(records)]
    result = loaded.signatures["serving_default"](examples=tf.constant(serialized))
    ref = np.load(reference)
    report = {"ids_equal": result["id"].numpy().astype(str).tolist() == ref["ids"].tolist(),
              "examples_error": float(np.abs(result["embedding"].numpy() - ref["embeddings"]).max()),
              "signatures": sorted(loaded.signatures)}
    if "frames" in ref.files:
        out_ft = loaded.signatures["embed_frames_title"](frames=tf.constant(ref["frames"]),
                                                         frame_mask=tf.constant(ref["frame_mask"]),
                                                         title=tf.constant(ref["titles"]))
        report["frames_title_error"] = float(np.abs(out_ft["embedding"].numpy() - ref["embeddings"]).max())
        out_tok = loaded.signatures["embed_tokens"](frames=tf.constant(ref["frames"]),
                                                    frame_mask=tf.constant(ref["frame_mask"]),
                                                    input_ids=tf.constant(ref["input_ids"]),
                                                    attention_mask=tf.constant(ref["attention_mask"]))
        report["tokens_error"] = float(np.abs(out_tok["embedding"].numpy() - ref["embeddings"]).max())
    np.save(out, result["embedding"].numpy())
    report["project_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in project)
    print(json.dumps(report))
''')


def load_in_fresh_process(export, records, reference, tmp_path):
    script = tmp_path / "load_export.py"
    script.write_text(LOADER)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "fresh_out.npy"
    done = subprocess.run([sys.executable, "-I", str(script), str(export), str(records), str(reference), str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["project_modules"] == []
    return report, np.load(out)


@pytest.fixture(scope="module")
def fold_runs(folds_dir, tmp_path_factory):
    """RUN with tiny baseline finetune runs on folds 0 and 1 (two folds to average)."""
    from train.finetune import main

    run = tmp_path_factory.mktemp("export_run")
    for fold in (0, 1):
        main(["--model", "baseline", "--folds-dir", str(folds_dir), "--fold", str(fold), "--out",
              str(run / "finetune" / "baseline" / f"fold_{fold:02d}"), "--preset", "tiny", "epochs=1",
              "lr_other=3e-3", *TINY_RUN])
    return run


def test_single_run_export_in_a_fresh_process(fold_runs, synthetic_data, tmp_path, capsys):
    import tensorflow as tf

    from infer.embed import embed_videos, load_run
    from infer.export import load_export_meta, main
    from tfrecord_tools import reader
    from tfrecord_tools.tokenization import encode_titles

    run_dir = fold_runs / "finetune" / "baseline" / "fold_00"
    export = tmp_path / "export"
    records = synthetic_data / "test_a" / "test_a.tfrecords"
    assert main(["--run", str(run_dir), "--out", str(export), "--check", str(records)]) == 0
    assert "check: max |export - infer.embed|" in capsys.readouterr().out
    meta = load_export_meta(str(export))
    assert meta["dim"] == 256 and meta["in_graph_tokenization"] and meta["kind"] == "single"

    run = load_run(run_dir)
    ids, expected = embed_videos(run, str(records), "test", progress=False)
    batch = next(iter(reader.read_videos(str(records), "test", run.decoder, 1000)))
    input_ids, attention_mask = encode_titles(run.decoder.tokenizer, batch["title"].numpy().tolist(), 32)
    kept = int(batch["frame_mask"].numpy().sum(1).max())
    np.savez(tmp_path / "ref.npz", ids=ids, embeddings=expected, frames=batch["frames"].numpy()[:, :kept],
             frame_mask=batch["frame_mask"].numpy()[:, :kept], titles=np.array([t.decode("utf-8") for t in batch["title"].numpy()]),
             input_ids=input_ids, attention_mask=attention_mask)
    report, _ = load_in_fresh_process(export, records, tmp_path / "ref.npz", tmp_path)
    assert report["ids_equal"]
    assert report["signatures"] == ["embed_frames_title", "embed_tokens", "serving_default"]
    assert report["examples_error"] < 1e-4 and report["frames_title_error"] < 1e-4 and report["tokens_error"] < 1e-4

    # a record with a frame of the wrong size fails inside the graph with a readable message
    loaded = tf.saved_model.load(str(export))
    example = tf.train.Example()
    features = example.features.feature
    features["id"].bytes_list.value.append(b"1")
    features["title"].bytes_list.value.append("标题".encode())
    features["asr_text"].bytes_list.value.append(b"nan")
    features["frame_feature"].bytes_list.value.append(b"\0" * 100)
    with pytest.raises(tf.errors.InvalidArgumentError, match="every frame must hold 3072 bytes"):
        loaded.signatures["serving_default"](examples=tf.constant([example.SerializeToString()]))


def test_ensemble_export_matches_result_json(fold_runs, synthetic_data, folds_dir, tmp_path, capsys):
    import ensemble_final
    from ensemble.export import REFERENCE_FILE, export_ensemble
    from infer.embed_all import embed_all
    from tfrecord_tools.errors import DataError

    run = tmp_path / "run"
    shutil.copytree(fold_runs / "finetune", run / "finetune")
    # a second "model": the same runs under another name, so the SVD concatenates two blocks
    shutil.copytree(run / "finetune" / "baseline", run / "finetune" / "copy")
    records = synthetic_data / "test_a" / "test_a.tfrecords"
    embed_all(str(run), [str(records)], progress=False)
    export = tmp_path / "ensemble_export"
    code = ensemble_final.main(["--run", str(run), "--folds-dir", str(folds_dir), "--partial-folds",
                                "--weights", "baseline=1,copy=0.5", "--dim", "64", "--export", str(export)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "exported the ensemble (4 member runs, dim 64)" in out.out
    report, vectors = load_in_fresh_process(export, records, export / REFERENCE_FILE, tmp_path)
    assert report["ids_equal"] and report["examples_error"] < 1e-4
    with zipfile.ZipFile(run / "result.zip") as archive:
        submitted = json.loads(archive.read("result.json"))
    ids = np.load(export / REFERENCE_FILE)["ids"]
    result = np.array([submitted[i] for i in ids])
    # result.json holds float16-rounded values: equal to the export's to 1e-4 beyond that rounding
    half_ulp = np.spacing(np.abs(result).astype(np.float16)).astype(np.float64) / 2
    assert (np.abs(vectors - result) <= half_ulp + 1e-4).all()

    # an ensemble this module cannot reproduce (here: other weights than result.zip's) is refused
    ensemble_report = json.loads((run / "ensemble_report.json").read_text())
    ensemble_report["weights"] = {"baseline": 1.0, "copy": 0.0}
    with pytest.raises(DataError, match="does not reproduce the submission"):
        export_ensemble(ensemble_report, str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def test_export_errors_are_one_line(fold_runs, tmp_path, capsys):
    from infer.export import main

    def error(*args):
        capsys.readouterr()
        assert main([str(a) for a in args]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    assert "run directory not found" in error("--run", tmp_path / "nope", "--out", tmp_path / "x")
    (tmp_path / "empty").mkdir()
    assert "not a run directory (no config.json)" in error("--run", tmp_path / "empty", "--out", tmp_path / "x")
    run_dir = fold_runs / "finetune" / "baseline" / "fold_00"
    assert "has no output 'video_embedding'" in error("--run", run_dir, "--out", tmp_path / "x", "--output",
                                                      "video_embedding")
    (tmp_path / "taken").mkdir()
    assert "already exists" in error("--run", run_dir, "--out", tmp_path / "taken")
