"""train.distill: losses, a few student steps on a teacher .npz, and its one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.train.helpers import TINY_RUN


def test_distill_losses_are_zero_for_the_teacher_itself():
    import tensorflow as tf

    from train.distill import DistillWeights, distill_losses

    teacher = tf.constant(np.random.default_rng(0).normal(size=(6, 8)), tf.float32)
    same = distill_losses(3.0 * teacher, teacher, DistillWeights())  # scale does not matter
    assert float(same["cosine"]) == pytest.approx(0.0, abs=1e-6) and float(same["pair"]) == pytest.approx(0, abs=1e-6)
    other = distill_losses(tf.reverse(teacher, [0]), teacher, DistillWeights(2.0, 0.0))
    assert float(other["cosine"]) > 0.1 and float(other["pair"]) == 0.0


def test_distill_a_tiny_student_from_a_teacher_npz(synthetic_data, tmp_path, capsys):
    from infer.embed import embed_videos, load_run
    from infer.embeddings_io import save_embeddings
    from train.distill import DISTILL_FILE, main, record_ids

    records = str(synthetic_data / "test_a" / "test_a.tfrecords")
    ids = record_ids([records])
    save_embeddings(tmp_path / "teacher.npz", ids, np.random.default_rng(0).normal(size=(len(ids), 24)).astype(np.float32))
    out = tmp_path / "student"
    code = main(["--teacher", str(tmp_path / "teacher.npz"), "--data", str(synthetic_data), "--records", records,
                 "--model", "baseline", "--preset", "tiny", "--out", str(out), "max_steps=6", *TINY_RUN])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / DISTILL_FILE).read_text())
    assert summary["videos"] == len(ids) and set(summary["last_losses"]) >= {"cosine", "pair"}
    run = load_run(out)  # a normal run directory
    got_ids, vectors = embed_videos(run, records, "test", progress=False)
    assert vectors.shape == (len(ids), 24) and got_ids.tolist() == ids.tolist()

    # the teacher must cover every video
    save_embeddings(tmp_path / "partial.npz", ids[:10], np.ones((10, 24), np.float32))
    capsys.readouterr()
    assert main(["--teacher", str(tmp_path / "partial.npz"), "--data", str(synthetic_data), "--records", records,
                 "--model", "baseline", "--preset", "tiny", "--out", str(tmp_path / "s2"), *TINY_RUN]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no teacher vector for {len(ids) - 10} of the {len(ids)} videos" in err[0]
    assert main(["--teacher", str(tmp_path / "none.npz"), "--data", str(synthetic_data), "--model", "baseline",
                 "--out", str(tmp_path / "s3")]) == 1
    assert "teacher not found" in capsys.readouterr().err
