"""Fault injection, fast cases: every fault of docs/reliability.md is injected and its outcome checked.

Unit-level cases already elsewhere (not repeated here): bad records and corrupt files in the
readers (tests/tfrecord_tools/test_reader.py) and the fold writer (test_folds.py), bad label lines
(test_labels.py), a SIGKILL after a checkpoint (tests/train/test_resume.py), a NaN loss
(tests/train/test_loop.py). This suite drives the same faults through the entry points users run
(write_tfrecord.py, pretrain / finetune input, infer, ensemble_final.py), adds the faults those do
not cover (empty shards, --skip-corrupt, Inf loss, SIGKILL in the middle of a checkpoint save and
of each output writer, unpickling, paths in config.json) and checks that nothing downstream runs
on partial data. The slow cases (SIGKILL at three points of one run, repeated random kills of
write_tfrecord.py) are in bench/bench_faults.py.
"""
from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf

import write_tfrecord
from bench.bench_faults import CHECKPOINT_STATE, run_killed, start_killed
from tfrecord_tools import atomic, folds, reader, schema, writer
from tfrecord_tools.errors import DataError, RecordError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDS = 3  # the session folds_dir fixture: write_fold_shards(..., num_folds=3), seed 42, split pairs
TINY = ["--preset", "tiny", "batch_size=8", "progress=false", "log_every_steps=1", "shuffle_buffer=64",
        "max_vocab=400", "model.nextvlad_expansion=1", "lr_other=3e-3"]
TRAIN_ARGS = ["--model", "baseline", *TINY, "max_steps=12", "checkpoint_every_steps=4"]


# ------------------------------------------------------------------------------------ helpers
def records_of(path) -> list[bytes]:
    return [record.numpy() for record in tf.data.TFRecordDataset(str(path))]


def record_start(records: list[bytes], index: int) -> int:
    """Byte offset of record ``index`` (16 bytes of framing around each record)."""
    return sum(len(record) + 16 for record in records[:index])


def video_id(record: bytes, suffix: str = "") -> str:
    return tf.train.Example.FromString(record).features.feature[schema.KEY_ID + suffix].bytes_list.value[0].decode()


def changed(record: bytes, change) -> bytes:
    example = tf.train.Example.FromString(record)
    change(example.features.feature)
    return example.SerializeToString()


def flip_byte(path, position: int) -> None:
    data = bytearray(pathlib.Path(path).read_bytes())
    data[position] ^= 0x10
    pathlib.Path(path).write_bytes(bytes(data))


def final_names(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) if directory.exists() else []


def hidden_names(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".")) if directory.exists() else []


def model_weights(run_dir) -> dict:
    checkpoint = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(pathlib.Path(run_dir) / "final")))
    return {name: checkpoint.get_tensor(name) for name in checkpoint.get_variable_to_shape_map()
            if "model/" in name and "OPTIMIZER" not in name}


@pytest.fixture(scope="module")
def pairwise(synthetic_data):
    """The tiny data set's pairwise file, its records and label lines (read-only: copy to damage)."""
    path = synthetic_data / "pairwise" / "pairwise.tfrecords"
    labels = (synthetic_data / "pairwise" / "label.tsv").read_text().splitlines()
    return path, records_of(path), labels


# ------------------------------------------------------------------ bad data into write_tfrecord.py
def _replace(path, records, index, change) -> None:
    """Rewrite ``path`` with record ``index`` changed (valid framing: only validation can tell)."""
    writer.write_records(path, records[:index] + [changed(records[index], change)] + records[index + 1:])


PAIRWISE_FAULTS = {
    "truncated": (lambda path, records: path.write_bytes(path.read_bytes()[:record_start(records, 7) + 500]),
                  r"pairwise.tfrecords, record 7: (corrupt or truncated record|truncated file)"),
    "bit flip": (lambda path, records: flip_byte(path, record_start(records, 5) + 12 + 2000),
                 r"pairwise.tfrecords, record 5: corrupt or truncated record \(bad CRC or length\)"),
    "frame length": (lambda path, records: _replace(path, records, 3, lambda f: f["frame_feature"].bytes_list.value
                                                    .__setitem__(1, b"\0" * 100)),
                     r"pairwise.tfrecords, record 3: frame 1 has 100 bytes, expected 3072"),
    "missing key": (lambda path, records: _replace(path, records, 4, lambda f: f.__delitem__("category_id")),
                    r"pairwise.tfrecords, record 4: missing key 'category_id'"),
    "empty shard": (lambda path, records: path.write_bytes(b""),
                    r"pairwise.tfrecords: empty file: it holds no records"),
}
LABEL_FAULTS = {
    "unknown id": (lambda first: f"{first[0]}\t123456789\t0.5", r"candidate_id 123456789 is not in the pairwise"),
    "duplicated pair": (lambda first: "\t".join(first), r"pair \d+/\d+ already listed on line 1"),
    "score off the grid": (lambda first: f"{first[0]}\t{first[1]}\t0.33", r"score 0.33 is not on the 0.05 grid"),
    "score above 1": (lambda first: f"{first[0]}\t{first[1]}\t1.5", r"score 1.5 is outside \[0, 1\]"),
    "negative score": (lambda first: f"{first[0]}\t{first[1]}\t-0.05", r"score -0.05 is outside \[0, 1\]"),
}


@pytest.mark.parametrize("fault", list(PAIRWISE_FAULTS) + list(LABEL_FAULTS))
def test_write_tfrecord_refuses_bad_input_before_writing(fault, pairwise, tmp_path, capsys):
    source, records, labels = pairwise
    path, label_path = tmp_path / "pairwise.tfrecords", tmp_path / "label.tsv"
    shutil.copy(source, path)
    lines = list(labels)
    if fault in PAIRWISE_FAULTS:
        damage, expected = PAIRWISE_FAULTS[fault]
        damage(path, records)
    else:
        extra, expected = LABEL_FAULTS[fault]
        lines.append(extra(labels[0].split("\t")))
        expected = rf"label.tsv, line {len(lines)}: .*{expected}"
    label_path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "folds"
    code = write_tfrecord.main(["--pairwise", str(path), "--labels", str(label_path), "--out", str(out),
                                "--folds", str(FOLDS), "--quiet"])
    error = capsys.readouterr().err
    assert code == 2
    assert re.search(expected, error), error
    assert final_names(out) == [] and hidden_names(out) == []  # not one shard, no folds.json, no temporary


# ----------------------------------------------------------------------------------- --skip-corrupt
def _damaged_copy(pairwise, tmp_path) -> tuple[pathlib.Path, dict[int, str]]:
    """Records 10 (frame of 7 bytes), 20 (no title) and 30 (a flipped bit: CRC) damaged; their ids."""
    source, records, _ = pairwise
    damaged = list(records)
    damaged[10] = changed(records[10], lambda f: f["frame_feature"].bytes_list.value.__setitem__(0, b"x" * 7))
    damaged[20] = changed(records[20], lambda f: f.__delitem__("title"))
    path = tmp_path / "pairwise.tfrecords"
    writer.write_records(path, damaged)
    flip_byte(path, record_start(damaged, 30) + 12 + 700)
    return path, {index: video_id(records[index]) for index in (10, 20, 30)}


def _shard_pairs(out: pathlib.Path) -> set[tuple[str, str]]:
    return {(video_id(r, "_1"), video_id(r, "_2")) for k in range(FOLDS) for r in records_of(out / folds.shard_name(k))}


def test_skip_corrupt_drops_exactly_the_bad_records_and_their_pairs(pairwise, synthetic_data, tmp_path, capsys):
    path, bad_ids = _damaged_copy(pairwise, tmp_path)
    labels = pairwise[2]
    out = tmp_path / "folds"
    code = write_tfrecord.main(["--pairwise", str(path), "--labels", str(synthetic_data / "pairwise" / "label.tsv"),
                                "--out", str(out), "--folds", str(FOLDS), "--skip-corrupt"])
    printed = capsys.readouterr().out
    assert code == 0
    expected_dropped = [number for number, line in enumerate(labels, start=1)
                        if set(line.split("\t")[:2]) & set(bad_ids.values())]
    report = json.loads((out / folds.FOLDS_JSON).read_text())["skip_corrupt"]
    assert report["num_skipped_records"] == 3 and report["num_dropped_pairs"] == len(expected_dropped) > 3
    assert [(r["file"], r["record"]) for r in report["skipped_records"]] == [(str(path), 10), (str(path), 20),
                                                                           (str(path), 30)]
    problems = [r["problem"] for r in report["skipped_records"]]
    assert "frame 0 has 7 bytes" in problems[0] and "missing key 'title'" in problems[1]
    assert problems[2].startswith("corrupt record data (CRC mismatch)")
    assert [r["video_id"] for r in report["skipped_records"]] == [bad_ids[10], bad_ids[20], None]
    assert [pair["line"] for pair in report["dropped_pairs"]] == expected_dropped
    kept = {tuple(line.split("\t")[:2]) for number, line in enumerate(labels, start=1)
            if number not in expected_dropped}
    assert _shard_pairs(out) == kept  # every other pair is written, none of the dropped ones
    assert f"--skip-corrupt: skipped 3 pairwise record(s), dropped {len(expected_dropped)} of {len(labels)}" in printed
    assert f"skipped {path}, record 30: corrupt record data" in printed

    # A file cut inside record 200: the whole tail is reported, the pairs of its videos dropped.
    truncated = tmp_path / "truncated.tfrecords"
    truncated.write_bytes(path.read_bytes()[:record_start(records_of(pairwise[0]), 200) + 100])
    code = write_tfrecord.main(["--pairwise", str(truncated), "--labels", str(synthetic_data / "pairwise" / "label.tsv"),
                                "--out", str(tmp_path / "cut"), "--folds", str(FOLDS), "--skip-corrupt", "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "cut" / folds.FOLDS_JSON).read_text())["skip_corrupt"]
    assert [r["record"] for r in report["skipped_records"]] == [10, 20, 30, 200]
    assert "the file ends inside this record" in report["skipped_records"][-1]["problem"]
    lost = {video_id(r) for r in records_of(pairwise[0])[200:]} | set(bad_ids.values())
    assert [pair["line"] for pair in report["dropped_pairs"]] == [
        number for number, line in enumerate(labels, start=1) if set(line.split("\t")[:2]) & lost]


def test_skip_corrupt_on_clean_data_writes_the_strict_result(pairwise, folds_dir, synthetic_data, tmp_path):
    out = tmp_path / "folds"
    assert write_tfrecord.main(["--data", str(synthetic_data), "--out", str(out), "--folds", str(FOLDS),
                                "--skip-corrupt", "--quiet"]) == 0
    for fold in range(FOLDS):  # byte-identical to the strict writer's shards
        assert (out / folds.shard_name(fold)).read_bytes() == (folds_dir / folds.shard_name(fold)).read_bytes()
    report = json.loads((out / folds.FOLDS_JSON).read_text())["skip_corrupt"]
    assert report["num_skipped_records"] == report["num_dropped_pairs"] == 0


# ------------------------------------------------------------------------ bad data into training
def _pretrain_setup(data_dir, run_dir, *overrides):
    from train import stage
    from train.config import TrainConfig, apply_overrides
    from train.pretrain import prepare_pretrain

    config = TrainConfig(model=stage.base_model_config("baseline", "tiny"), data_dir=str(data_dir))
    config = apply_overrides(config, [o for o in TINY if "=" in o] + list(overrides))
    return prepare_pretrain(config, str(run_dir), tf.distribute.MirroredStrategy(["/cpu:0"]))


@pytest.mark.parametrize("fault, expected", [
    ("truncated", r"pretrain_1.tfrecords, record 9: corrupt or truncated TFRecord data"),
    ("bit flip", r"pretrain_1.tfrecords, record 9: corrupt or truncated TFRecord data"),
    ("empty shard", r"pretrain_1.tfrecords: empty file: it holds no records"),
])
def test_pretrain_refuses_corrupt_or_empty_shards_before_any_step(fault, expected, synthetic_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    shard = data / "pointwise" / "pretrain_1.tfrecords"
    start = record_start(records_of(shard), 9)
    if fault == "truncated":
        shard.write_bytes(shard.read_bytes()[:start + 40])
    elif fault == "bit flip":
        flip_byte(shard, start + 12 + 3000)
    else:
        shard.write_bytes(b"")
    run = tmp_path / "run"
    with pytest.raises(DataError, match=expected):
        _pretrain_setup(data, run)
    assert not (run / "config.json").exists() and not (run / "ckpt").exists()


def test_training_stops_at_a_bad_record_naming_its_file_and_index(synthetic_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    shard = data / "pointwise" / "pretrain_1.tfrecords"
    records = records_of(shard)
    records[5] = changed(records[5], lambda f: f["frame_feature"].bytes_list.value.__setitem__(1, b"\0" * 100))
    writer.write_records(shard, records)  # the framing is fine: only decoding can tell
    run = tmp_path / "run"
    setup = _pretrain_setup(data, run, "max_steps=60", "checkpoint_every_steps=1000")  # 60 steps = one epoch
    with pytest.raises(RecordError) as error:
        setup.trainer.run()
    assert (error.value.path, error.value.index) == (str(shard), 5)
    assert error.value.problem == "frame 1 has 100 bytes, expected 3072"
    assert not (run / "final").exists() and not (run / "ckpt").exists()


def test_finetune_input_names_a_bit_flipped_fold_shard(folds_dir, tmp_path):
    from train import data as data_lib

    copy = tmp_path / "folds"
    shutil.copytree(folds_dir, copy)
    shard = copy / folds.shard_name(1)
    flip_byte(shard, record_start(records_of(shard), 4) + 12 + 5000)  # same size, same record count
    with pytest.raises(DataError, match=r"fold_01.tfrecords: shard md5 \w+ differs from \w+ in folds.json"):
        folds.fold_files(copy, 0)  # the shard checksum of folds.json (issue 10) refuses it before reading
    # The readers themselves still name the record when given the shard directly:
    info = folds.read_folds_info(copy, verify=False)
    train_files = [str(copy / entry["file"]) for entry in info["folds"] if entry["fold"] != 0]
    records = sum(entry["pairs"] for entry in info["folds"] if entry["fold"] != 0)
    stream = data_lib.TrainStream(tuple(train_files), records, reader.VideoDecoder(), 8, 0, pairs=True)
    expected = rf"{shard}, record 4: corrupt or truncated TFRecord data"
    with pytest.raises(RecordError, match=expected):
        with reader.record_errors():
            for _ in stream.dataset(0).take(records // 8):
                pass
    with pytest.raises(RecordError, match=expected):  # the rank-target labels
        data_lib.pair_labels(train_files)
    with pytest.raises(RecordError, match=expected):  # the vocabulary's titles
        list(data_lib.stream_titles(train_files, pairs=True))
    # A truncated or emptied shard no longer has the size folds.json recorded: refused before reading.
    for cut in (1000, 0):
        shard.write_bytes(shard.read_bytes()[:cut])
        with pytest.raises(DataError, match=rf"fold_01.tfrecords: shard has {cut} bytes, folds.json says \d+"):
            folds.fold_files(copy, 0)


def _contract_trainer(run_dir, inf_from: int | None):
    """tests/train/test_loop.py's minimal contract model; an Inf joins the loss from step ``inf_from + 1`` on."""
    from tests.train.test_loop import ContractModel
    from train import randomness
    from train.config import TrainConfig
    from train.loop import Trainer

    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)

    def dataset_fn(start, context):  # step s (0-based) reads batch s
        def batch(step):
            bad = tf.constant(False) if inf_from is None else step >= inf_from
            poison = tf.where(bad, float("inf"), 0.0) * tf.ones([4])
            return {"x": tf.gather(x, tf.math.floormod(step * 4 + tf.range(4, dtype=tf.int64), 64)), "poison": poison}

        return tf.data.Dataset.range(start, 100).map(batch)

    config = TrainConfig(batch_size=4, lr_other=1e-2, lr_text=1e-2, warmup_steps=1, progress=False, seed=7,
                         log_every_steps=1, checkpoint_every_steps=1)
    randomness.seed_everything(config.seed)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    build = {"x": tf.constant(x[:2]), "poison": tf.zeros([2])}
    with strategy.scope():
        model = ContractModel()
        model(build)
        return Trainer(config=config, strategy=strategy, model=model,
                       loss_fn=lambda m, b, training: m.pretrain_losses(b, training), run_dir=str(run_dir),
                       dataset_fn=dataset_fn, build_batch=build, total_steps=6, steps_per_epoch=3)


def test_inf_loss_stops_naming_the_step_and_no_checkpoint_holds_it(tmp_path):
    from train.loop import LOG_FILE, NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3 \(l2=inf, loss=inf.*last checkpoint "
                                                  r"\(step 2\) is unaffected"):
        _contract_trainer(tmp_path, inf_from=2).run()
    saved = tf.train.get_checkpoint_state(str(tmp_path / "ckpt")).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in saved] == ["ckpt-1", "ckpt-2"]
    for path in saved:
        checkpoint = tf.train.load_checkpoint(path)
        for name in checkpoint.get_variable_to_shape_map():
            value = np.asarray(checkpoint.get_tensor(name))
            assert not np.issubdtype(value.dtype, np.floating) or np.isfinite(value).all(), (path, name)
    assert not (tmp_path / "final").exists()
    # A crash can also tear the log line being appended; the rerun (inputs fixed) drops it and goes on.
    with open(tmp_path / LOG_FILE, "a") as log:
        log.write('{"step": 3, "lo')
    values = _contract_trainer(tmp_path, inf_from=None).run()
    assert np.isfinite(values["loss"]) and tf.train.latest_checkpoint(str(tmp_path / "final")).endswith("ckpt-6")
    steps = [json.loads(line)["step"] for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


# ------------------------------------------------------- SIGKILL in the middle of a checkpoint save
@pytest.fixture(scope="module")
def killed_mid_save(synthetic_data, tmp_path_factory):
    """A pretrain run killed while saving ckpt-8, and the same command run uninterrupted (meanwhile)."""
    from train.pretrain import main

    root = tmp_path_factory.mktemp("mid_save")
    args = [*TRAIN_ARGS, "--data", str(synthetic_data)]
    # Killed as the checkpoint state is about to name ckpt-8: its files exist, the state still says ckpt-4.
    process = start_killed("train.pretrain", [*args, "--out", str(root / "killed")], CHECKPOINT_STATE,
                           call="~ckpt-8'",
                           log=root / "killed.log", TF_NUM_INTRAOP_THREADS="0")  # as here: bit-identity holds per thread count
    main([*args, "--out", str(root / "whole")])
    code = process.wait(timeout=300)
    return root, args, code


def test_sigkill_mid_checkpoint_save_resumes_to_the_uninterrupted_weights(killed_mid_save):
    from train.pretrain import main

    root, args, code = killed_mid_save
    killed = root / "killed"
    assert code == -signal.SIGKILL, (root / "killed.log").read_text()[-2000:]
    assert (killed / "ckpt" / "ckpt-8.index").exists()  # written, but not yet named in the state file
    assert tf.train.latest_checkpoint(str(killed / "ckpt")).endswith("ckpt-4")
    assert not (killed / "final").exists()
    main([*args, "--out", str(killed)])  # the same command again: resumes from ckpt-4
    reference, resumed = model_weights(root / "whole"), model_weights(killed)
    assert len(reference) > 10 and reference.keys() == resumed.keys()
    for name in reference:
        np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)
    log = [json.loads(line)["step"] for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, 13))


# ---------------------------------------------------------- SIGKILL in the middle of output writers
def test_stale_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "out.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.json.{int(dead.stdout)}.abc123.tmp"
    alive = tmp_path / f".out.json.{os.getppid()}.def456.tmp"  # a running process: left alone
    other = tmp_path / f".other.json.{int(dead.stdout)}.abc123.tmp"  # another target: left alone
    for path in (stale, alive, other):
        path.write_text("partial")
    atomic.write_text_atomic(target, "{}")
    assert target.read_text() == "{}"
    assert hidden_names(tmp_path) == sorted([alive.name, other.name])


def test_write_tfrecord_killed_mid_write_leaves_no_shard_and_reruns_identically(synthetic_data, folds_dir, tmp_path):
    out = tmp_path / "folds"
    argv = ["--data", str(synthetic_data), "--out", str(out), "--folds", str(FOLDS), "--quiet"]
    # killed while building the 150th of 300 pair records (inside the second shard)
    assert run_killed("write_tfrecord", argv, "tfrecord_tools.folds:pair_example", call=150,
                      log=tmp_path / "killed.log") == -signal.SIGKILL
    assert final_names(out) == []  # no shard, no folds.json under its final name
    # the three temporary shards a SIGKILL cannot remove, and the lock file (no longer locked)
    assert len(hidden_names(out)) == FOLDS + 1 and ".videosim.lock" in hidden_names(out)
    with pytest.raises(DataError, match="incomplete"):
        folds.fold_files(out, 0)  # nothing downstream starts on the partial set
    assert write_tfrecord.main(argv) == 0
    assert hidden_names(out) == []  # the rerun removed the dead writer's temporaries
    for fold in range(FOLDS):
        assert (out / folds.shard_name(fold)).read_bytes() == (folds_dir / folds.shard_name(fold)).read_bytes()


@pytest.fixture(scope="module")
def finetune_like_run(killed_mid_save, folds_dir, tmp_path_factory):
    """RUN/finetune/baseline/fold_00: the uninterrupted pretrain run presented as fold 0's finetune run."""
    root = tmp_path_factory.mktemp("infer_run")
    run_dir = root / "run" / "finetune" / "baseline" / "fold_00"
    shutil.copytree(killed_mid_save[0] / "whole", run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config.update(stage="finetune", folds_dir=str(folds_dir), fold=0)
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "metrics.json").write_text(json.dumps({"model": "baseline", "fold": 0, "epochs": [], "best": None}))
    return root / "run"


def test_embed_all_killed_mid_write_reruns_to_the_same_files(finetune_like_run, synthetic_data, tmp_path):
    from infer.embed_all import embed_all
    from infer.embeddings_io import load_embedding_set

    run = tmp_path / "run"
    shutil.copytree(finetune_like_run, run)
    test = str(synthetic_data / "test_a" / "test_a.tfrecords")
    out = run / "embeddings" / "baseline" / "fold_00"
    # test.npz is written (the 1st np.savez), the process dies as the 2nd (val.npz) begins
    code = run_killed("infer.embed_all", ["--run", str(run), "--test", test, "--quiet"], "numpy:savez", call=2,
                      log=tmp_path / "killed.log")
    assert code == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    assert final_names(out) == ["test.npz"] and len(hidden_names(out)) == 1  # val.npz only as a temporary
    assert embed_all(str(run), [test], progress=False) == [str(out / "val.npz")]  # the rerun does the rest
    assert final_names(out) == ["test.npz", "val.npz"] and hidden_names(out) == []
    clean = tmp_path / "clean"
    shutil.copytree(finetune_like_run, clean)
    embed_all(str(clean), [test], progress=False)
    for name in ("test.npz", "val.npz"):
        a = load_embedding_set(out / name)
        b = load_embedding_set(clean / "embeddings" / "baseline" / "fold_00" / name)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-6, atol=1e-6)
    folds_dir = json.loads((run / "finetune" / "baseline" / "fold_00" / "config.json").read_text())["folds_dir"]
    assert len(load_embedding_set(out / "val.npz").pairs) == folds.read_folds_info(folds_dir)["folds"][0]["pairs"]


def test_embed_refuses_an_empty_test_shard(finetune_like_run, tmp_path):
    from infer.embed import embed_videos, load_run

    empty = tmp_path / "test_b.tfrecords"
    empty.write_bytes(b"")
    run = load_run(finetune_like_run / "finetune" / "baseline" / "fold_00")
    with pytest.raises(DataError, match=r"test_b.tfrecords: empty file: it holds no records"):
        embed_videos(run, [str(empty)], "test", progress=False)


def _fake_embeddings(run: pathlib.Path) -> None:
    """RUN/embeddings/<m>/fold_0{0,1}/{test,val}.npz of random vectors (2 models x 2 folds)."""
    from infer.embeddings_io import make_pairs, save_embeddings

    rng = np.random.default_rng(0)
    test_ids = [str(900 + i) for i in range(30)]
    for fold in (0, 1):
        videos = [str(100 + 20 * fold + i) for i in range(20)]
        pairs = make_pairs(videos[:10], videos[10:], rng.integers(0, 21, 10) * 0.05)
        for model in ("alpha", "beta"):
            directory = run / "embeddings" / model / f"fold_{fold:02d}"
            save_embeddings(directory / "test.npz", test_ids, rng.normal(size=(30, 8)).astype(np.float32))
            save_embeddings(directory / "val.npz", videos, rng.normal(size=(20, 8)).astype(np.float32), pairs)


def test_ensemble_final_killed_mid_write_leaves_no_result_and_reruns(tmp_path):
    import ensemble_final
    from infer.submission import validate_result

    run, clean = tmp_path / "run", tmp_path / "clean"
    _fake_embeddings(run)
    shutil.copytree(run, clean)
    argv = ["--rule", "mean", "--dim", "8"]
    # killed while validating the written zip, i.e. after its bytes are on disk, before the rename
    code = run_killed("ensemble_final", ["--run", str(run), *argv], "infer.submission:validate_result",
                      log=tmp_path / "killed.log")
    assert code == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    assert "result.zip" not in final_names(run) and "ensemble_report.json" not in final_names(run)
    assert [name for name in hidden_names(run) if name.startswith(".result.zip.")]  # only as a temporary
    assert ensemble_final.main(["--run", str(run), *argv]) == 0
    assert ensemble_final.main(["--run", str(clean), *argv]) == 0
    assert hidden_names(run) == []
    ids = [str(900 + i) for i in range(30)]
    assert validate_result(run / "result.zip", ids)["num_ids"] == 30
    with zipfile.ZipFile(run / "result.zip") as a, zipfile.ZipFile(clean / "result.zip") as b:
        assert json.loads(a.read("result.json")) == json.loads(b.read("result.json"))


# --------------------------------------------------------------- no unpickling, paths from configs
def _project_sources() -> list[pathlib.Path]:
    """The project's own .py files: the walk never enters .venv (thousands of files), tests or build."""
    skip = {".venv", "tests", "build", ".git"}
    found = []
    for directory, subdirectories, files in os.walk(REPO_ROOT):
        subdirectories[:] = [name for name in subdirectories if name not in skip]
        found += [pathlib.Path(directory) / name for name in files if name.endswith(".py")]
    return found


def test_inputs_are_never_unpickled():
    problems = []
    sources = _project_sources()
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + ([node.module] if isinstance(node, ast.ImportFrom)
                                                                 and node.module else [])
                if {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "torch"} & {
                        name.split(".")[0] for name in names}:
                    problems.append(f"{path}:{node.lineno}: imports {names}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                keywords = {kw.arg: kw.value for kw in node.keywords}
                if node.func.attr == "load" and getattr(node.func.value, "id", "") in ("np", "numpy"):
                    value = keywords.get("allow_pickle")
                    if not (isinstance(value, ast.Constant) and value.value is False):
                        problems.append(f"{path}:{node.lineno}: np.load without allow_pickle=False")
                if node.func.attr in ("load", "unsafe_load") and getattr(node.func.value, "id", "") == "yaml":
                    problems.append(f"{path}:{node.lineno}: yaml.load")
                if node.func.attr == "from_pretrained" and "from_pt" in keywords:
                    problems.append(f"{path}:{node.lineno}: from_pretrained(from_pt=...) would unpickle torch weights")
    assert len(sources) > 40
    assert problems == []


def test_infer_follows_no_path_from_config_json(killed_mid_save, tmp_path):
    """A run directory is read from itself: config.json's paths (data, tag list, tokenizer, pretrained
    run) are not followed by inference, even when they point at other, valid files."""
    from infer.embed import embed_videos, load_run
    from tfrecord_tools.tokenization import build_vocab, load_tokenizer

    original = killed_mid_save[0] / "whole"
    moved = tmp_path / "moved_run"
    shutil.copytree(original, moved)
    decoy = tmp_path / "decoy_tokenizer"
    build_vocab(["完全不同的标题", "另一个标题"], decoy)
    config = json.loads((moved / "config.json").read_text())
    config.update(tokenizer_dir=str(decoy), tag_list=str(tmp_path / "missing" / "tag_list.txt"),
                  data_dir=str(tmp_path / "missing"), pretrained=str(tmp_path / "missing_run"))
    (moved / "config.json").write_text(json.dumps(config))
    run = load_run(moved, "final")
    assert len(run.decoder.tokenizer) == len(load_tokenizer(moved / "tokenizer", "bert")) != len(
        load_tokenizer(decoy, "bert"))
    test = str(pathlib.Path(json.loads((original / "config.json").read_text())["data_dir"]) / "test_a" / "test_a.tfrecords")
    ids, vectors = embed_videos(run, [test], "test", progress=False)
    reference_ids, reference = embed_videos(load_run(original, "final"), [test], "test", progress=False)
    np.testing.assert_array_equal(ids, reference_ids)
    np.testing.assert_allclose(vectors, reference, rtol=1e-6, atol=1e-6)
