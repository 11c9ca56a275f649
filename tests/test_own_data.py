"""Bring your own videos, end to end: a folder of generated .mp4 files + a metadata CSV + labels ->
extract_frames -> ingest -> write_tfrecord.py -> a tiny pretrain and finetune -> embeddings ->
ensemble_final.py -> a validated result.zip holding every ingested video.

Everything is tiny so that it runs in about a minute on a CPU: 2-4 s videos at 72x32 pixels, the
network at a 32-pixel input with random weights (the features mean nothing; the plumbing is what
is checked), the tiny baseline model, a few steps.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np

import ensemble_final
import write_tfrecord
from tests.tfrecord_tools.videos import write_video
from tests.train.helpers import TINY_RUN
from tfrecord_tools import extract_frames, ingest, reader

NUM_VIDEOS = 16
LABELLED = 12  # videos 0..11 are in label.tsv


def _collection(root):
    """videos/<id>.mp4 (+ one broken file), meta.csv, label.tsv."""
    rng = np.random.default_rng(0)
    ids = [str(5_000_000 + 17 * i) for i in range(NUM_VIDEOS)]
    words = ["猫", "狗", "足球", "篮球", "做饭", "旅行"]
    rows = ["id,title,asr_text,tags,category"]
    for i, video_id in enumerate(ids):
        write_video(root / "videos" / f"{video_id}.mp4", seconds=2 + i % 3, fps=4, codec="mpeg4" if i % 2 else "libx264")
        topic = i % 3
        rows.append(f"{video_id},{words[2 * topic]}{words[2 * topic + 1]} 视频 {i},{'' if i % 4 else '一段语音'},"
                    f"{100 + topic};{200 + i % 4};{300 + i},{10000 + topic}")
    (root / "videos" / "5999999.mp4").write_bytes(b"\x00not a video" * 20)  # unreadable: listed, then skipped
    rows.append("5999999,坏视频,,,")
    (root / "meta.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    pairs = set()
    while len(pairs) < 32:
        a, b = rng.choice(LABELLED, 2, replace=False)
        pairs.add((int(a), int(b)))
    lines = [f"{ids[a]}\t{ids[b]}\t{1.0 if a % 3 == b % 3 else 0.1:.2f}\n" for a, b in sorted(pairs)]
    (root / "label.tsv").write_text("".join(lines))
    return ids


def test_video_files_to_result_zip(tmp_path, capsys):
    ids = _collection(tmp_path)
    features, data, run = tmp_path / "features", tmp_path / "data", tmp_path / "runs"

    assert extract_frames.main(["--videos", str(tmp_path / "videos"), "--out", str(features), "--random-weights",
                                "--image-size", "32", "--batch-size", "16", "--quiet"]) == 0
    assert "5999999.mp4" in capsys.readouterr().err
    assert sorted(path.stem for path in features.glob("*.npy")) == sorted(ids)

    assert ingest.main(["--features", str(features), "--metadata", str(tmp_path / "meta.csv"), "--labels",
                        str(tmp_path / "label.tsv"), "--test-all", "--skip-bad", "--out", str(data), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"ingested {NUM_VIDEOS} videos" in out and "skipped 1" in out and "5999999" in out
    meta = json.loads((data / "ingest_meta.json").read_text())
    assert meta["counts"]["pairwise_videos"] == LABELLED and meta["counts"]["pointwise_videos"] == NUM_VIDEOS - LABELLED
    assert meta["counts"]["test_a_videos"] == NUM_VIDEOS and meta["counts"]["pairs"] == 32

    assert write_tfrecord.main(["--data", str(data), "--folds", "2", "--quiet"]) == 0

    from train.finetune import main as finetune
    from train.pretrain import main as pretrain

    pretrain(["--model", "baseline", "--data", str(data), "--out", str(run / "pretrain" / "baseline"),
              "--preset", "tiny", "max_steps=2", *TINY_RUN])
    finetune(["--model", "baseline", "--folds-dir", str(data / "folds"), "--fold", "0",
              "--out", str(run / "finetune" / "baseline" / "fold_00"), "--pretrained", str(run / "pretrain" / "baseline"),
              "epochs=1", *TINY_RUN])
    metrics = json.loads((run / "finetune" / "baseline" / "fold_00" / "metrics.json").read_text())
    assert np.isfinite(metrics["best"]["val_spearman"])

    from infer.embed_all import embed_all
    from infer.submission import validate_result

    test_files = sorted(str(path) for path in (data / "test_a").glob("*.tfrecords"))
    embed_all(str(run), test_files, progress=False)
    assert ensemble_final.main(["--run", str(run), "--labels", str(data / "pairwise" / "label.tsv"),
                                "--folds-dir", str(data / "folds"), "--partial-folds"]) == 0
    capsys.readouterr()
    test_ids = [video["id"] for path in test_files for video in reader.read_raw_videos(path, "test")]
    assert sorted(test_ids) == sorted(ids)
    summary = validate_result(run / "result.zip", test_ids)
    assert summary["num_ids"] == NUM_VIDEOS and summary["dim"] <= 256
    with zipfile.ZipFile(run / "result.zip") as archive:
        assert archive.namelist() == ["result.json"]
