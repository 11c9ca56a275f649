"""Run directory -> embeddings, and the whole pipeline on a few synthetic records (smoke test).

synthetic data -> fold shards -> finetune (tiny baseline, fold 0) -> infer.embed_all ->
ensemble_final.py -> a validated result.zip, with the model scored like the official scorer.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tests.train.helpers import TINY_RUN


@pytest.fixture(scope="module")
def finetune_run(folds_dir, tmp_path_factory):
    """RUN with one finished finetune run of the tiny baseline on fold 0."""
    from train.finetune import main

    run = tmp_path_factory.mktemp("infer_run")
    out = run / "finetune" / "baseline" / "fold_00"
    main(["--model", "baseline", "--folds-dir", str(folds_dir), "--fold", "0", "--out", str(out),
          "--preset", "tiny", "epochs=1", "lr_other=3e-3", *TINY_RUN])
    return run


def test_load_run_embeds_like_the_model(finetune_run, synthetic_data):
    from infer.embed import embed_videos, load_run
    from tfrecord_tools import reader, schema
    from train.data import numeric_features

    run = load_run(finetune_run / "finetune" / "baseline" / "fold_00")
    assert run.checkpoint.split("/")[-2] == "best"
    test_file = str(synthetic_data / "test_a" / "test_a.tfrecords")
    ids, embeddings = embed_videos(run, test_file, "test", batch_size=16, progress=False)
    raw_ids = [video["id"] for video in reader.read_raw_videos(test_file, schema.RecordKind.TEST)]
    assert ids.tolist() == raw_ids
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(raw_ids), 256)
    assert np.isfinite(embeddings).all()
    # The first batch again, straight through the model: same vectors.
    batch = next(iter(reader.read_videos(test_file, schema.RecordKind.TEST, run.decoder, 16)))
    direct = run.model(numeric_features(batch), training=False)["embedding"].numpy()
    np.testing.assert_allclose(embeddings[:16], direct, rtol=1e-5, atol=1e-5)


def test_load_run_rejects_unknown_checkpoint(finetune_run):
    from infer.embed import load_run

    with pytest.raises(ValueError, match="checkpoint must be one of"):
        load_run(finetune_run / "finetune" / "baseline" / "fold_00", checkpoint="latest")


def test_pipeline_end_to_end(finetune_run, synthetic_data, folds_dir, capsys):
    import ensemble_final
    from infer.embed_all import embed_all
    from infer.embeddings_io import load_embedding_set
    from infer.evaluate import spearman
    from infer.submission import validate_result
    from tfrecord_tools import folds as folds_lib
    from tfrecord_tools import reader

    test_file = str(synthetic_data / "test_a" / "test_a.tfrecords")
    written = embed_all(str(finetune_run), [test_file], progress=False)
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == ["test.npz", "val.npz"]
    assert embed_all(str(finetune_run), [test_file], progress=False) == []  # outputs kept, nothing redone

    val = load_embedding_set(finetune_run / "embeddings" / "baseline" / "fold_00" / "val.npz")
    shard_pairs = list(reader.read_raw_pairs(folds_lib.fold_files(folds_dir, 0)[1]))
    assert len(val.pairs) == len(shard_pairs)
    assert val.pairs.query.tolist() == [pair["video_1"]["id"] for pair in shard_pairs]
    np.testing.assert_allclose(val.pairs.score, [pair["sim"] for pair in shard_pairs])
    fold_spearman = json.loads((finetune_run / "finetune" / "baseline" / "fold_00" / "metrics.json").read_text())
    # The embeddings score their pairs exactly as the trainer's validation did.
    assert spearman(val, val.pairs) == pytest.approx(fold_spearman["best"]["val_spearman"], abs=1e-4)

    code = ensemble_final.main(["--run", str(finetune_run), "--labels", str(synthetic_data / "pairwise" / "label.tsv"),
                                "--folds-dir", str(folds_dir), "--partial-folds",
                                "--synth-meta", str(synthetic_data / "synth_meta.json")])
    assert code == 0
    table = capsys.readouterr().out
    assert "baseline" in table and "oracle (synthetic truth)" in table
    ids = [v["id"] for v in reader.read_raw_videos(test_file, "test")]
    summary = validate_result(finetune_run / "result.zip", ids)
    assert summary["num_ids"] == len(ids) and summary["dim"] <= 256
    with zipfile.ZipFile(finetune_run / "result.zip") as archive:
        assert archive.namelist() == ["result.json"]

    # Without --partial-folds, a run that trained only fold 0 of 3 is refused.
    assert ensemble_final.main(["--run", str(finetune_run), "--folds-dir", str(folds_dir)]) == 2
    assert "folds [0, 1, 2] but the embeddings have folds [0]" in capsys.readouterr().err
