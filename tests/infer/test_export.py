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
        # a title + ASR model given the title alone reads the video as one without ASR
        title_only = ref["embeddings_no_asr"] if "asr" in ref.files else ref["embeddings"]
        report["frames_title_error"] = float(np.abs(out_ft["embedding"].numpy() - title_only).max())
        if "asr" in ref.files:
            out_fx = loaded.signatures["embed_frames_text"](frames=tf.constant(ref["frames"]),
                                                            frame_mask=tf.constant(ref["frame_mask"]),
                                                            title=tf.constant(ref["titles"]), asr=tf.constant(ref["asr"]))
            report["frames_text_error"] = float(np.abs(out_fx["embedding"].numpy() - ref["embeddings"]).max())
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


@pytest.fixture(scope="module")
def pair_run(folds_dir, tmp_path_factory):
    """A tiny baseline finetune run whose text is the ``[CLS] title [SEP] asr [SEP]`` pair of at most
    16 tokens (so that most pairs are truncated), with the rest of the robust recipe: standardised
    frames and the wide path (its TF-IDF of the pair's tokens must be exported too, and its title's rare
    words)."""
    from train.finetune import main

    run_dir = tmp_path_factory.mktemp("export_pair_run") / "fold_00"
    main(["--model", "baseline", "--folds-dir", str(folds_dir), "--fold", "0", "--out", str(run_dir), "--preset",
          "tiny", "epochs=1", "lr_other=3e-3", "model.text_source=title+asr", "model.title_len=16",
          "model.frame_normalization=standardize", "model.wide.enabled=true", "model.wide.frame_width=16",
          "model.wide.text_width=8", "model.wide.rare_words=4", "model.wide.rare_words_max_df=0.5", *TINY_RUN])
    return run_dir


def test_title_asr_export_in_a_fresh_process(pair_run, synthetic_data, tmp_path, capsys):
    """The default recipe's text (title + ASR pair): serving_default, embed_frames_text and
    embed_tokens reproduce infer.embed; embed_frames_title is the video without ASR."""
    import tensorflow as tf

    assert (pair_run / "wide_path.npz").is_file()  # the run's wide path was fitted: the export carries it

    from infer.embed import embed_videos, load_run
    from infer.export import load_export_meta, main
    from tfrecord_tools import reader
    from tfrecord_tools.tokenization import MISSING_ASR, encode_titles
    from train.data import numeric_features

    export = tmp_path / "export"
    records = synthetic_data / "test_a" / "test_a.tfrecords"
    assert main(["--run", str(pair_run), "--out", str(export), "--check", str(records)]) == 0
    assert "check: max |export - infer.embed|" in capsys.readouterr().out
    meta = load_export_meta(str(export))
    assert meta["in_graph_tokenization"] and meta["reads_asr"] and meta["members"][0]["text_source"] == "title+asr"

    run = load_run(pair_run)
    ids, expected = embed_videos(run, str(records), "test", progress=False)
    batch = next(iter(reader.read_videos(str(records), "test", run.decoder, 1000)))
    titles, asr = batch["title"].numpy().tolist(), batch["asr_text"].numpy().tolist()
    # the records hold what the pair encoding has to get right: missing ASR, ASR over the
    # 2 * title_len character cut, truncated pairs
    assert MISSING_ASR.encode() in asr and max(len(text.decode()) for text in asr) > 32
    input_ids, attention_mask = encode_titles(run.decoder.tokenizer, titles, 16, asr)
    assert (attention_mask.sum(1) == 16).sum() > len(titles) // 2
    no_asr_ids, no_asr_mask = encode_titles(run.decoder.tokenizer, titles, 16, [""] * len(titles))
    no_asr = run.embed_batch(numeric_features({**batch, "input_ids": tf.constant(no_asr_ids),
                                               "attention_mask": tf.constant(no_asr_mask)}))
    kept = int(batch["frame_mask"].numpy().sum(1).max())
    np.savez(tmp_path / "ref.npz", ids=ids, embeddings=expected, embeddings_no_asr=no_asr,
             frames=batch["frames"].numpy()[:, :kept], frame_mask=batch["frame_mask"].numpy()[:, :kept],
             titles=np.array([t.decode("utf-8") for t in titles]), asr=np.array([t.decode("utf-8") for t in asr]),
             input_ids=input_ids, attention_mask=attention_mask)
    report, _ = load_in_fresh_process(export, records, tmp_path / "ref.npz", tmp_path)
    assert report["ids_equal"]
    assert report["signatures"] == ["embed_frames_text", "embed_frames_title", "embed_tokens", "serving_default"]
    assert max(report[key] for key in ("examples_error", "frames_text_error", "frames_title_error",
                                       "tokens_error")) < 1e-4


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


def test_check_without_serving_default_is_one_line(folds_dir, synthetic_data, tmp_path, capsys):
    """A RoFormer run (jieba, no TensorFlow op) exports embed_tokens only: ``--check`` then says so in
    one line naming the run, instead of a KeyError; so does embedding records with the export."""
    from infer.export import embed_with_export, main
    from tfrecord_tools.errors import DataError
    from train.finetune import main as finetune

    run_dir = tmp_path / "roformer" / "fold_00"
    finetune(["--model", "baseline", "--folds-dir", str(folds_dir), "--fold", "0", "--out", str(run_dir), "--preset",
              "tiny", "epochs=1", "model.text_encoder=roformer", *TINY_RUN])
    export = tmp_path / "export"
    records = synthetic_data / "test_a" / "test_a.tfrecords"
    capsys.readouterr()
    assert main(["--run", str(run_dir), "--out", str(export), "--check", str(records)]) == 1
    out = capsys.readouterr()
    assert "signatures: embed_tokens" in out.out and "uses the roformer tokenizer" in out.out  # the note
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {run_dir}: cannot check the export {export} on records: "
                                                   f"it has no serving_default signature because model 'baseline' "
                                                   f"uses the roformer tokenizer, whose jieba word segmentation has "
                                                   f"no TensorFlow op")
    with pytest.raises(DataError, match="no serving_default signature to embed records with"):
        embed_with_export(str(export), [str(records)])
