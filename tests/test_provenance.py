"""Issue 10: provenance between stages, shard integrity, tag coverage, locks.

Each case gave a wrong result with exit 0 (or a KeyError) before issue 10. One tiny finetune run
(3 steps, shorter than an epoch) on a private fold set is shared by the tests of this module.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tfrecord_tools import folds, provenance, writer
from tfrecord_tools.errors import DataError
from tfrecord_tools.provenance import ProvenanceError
from tests.train.helpers import TINY_RUN

FOLD = 1


def _records(path) -> list[bytes]:
    return [record.numpy() for record in tf.data.TFRecordDataset(str(path))]


def _write_folds(synthetic_data, out, seed):
    return folds.write_fold_shards(synthetic_data / "pairwise" / "pairwise.tfrecords",
                                   synthetic_data / "pairwise" / "label.tsv", out, num_folds=3, seed=seed,
                                   progress=False)


@pytest.fixture(scope="module")
def trained(synthetic_data, tmp_path_factory):
    """A finetune run of fold 1 (3 steps: less than one epoch) on a private fold set, and its embeddings."""
    from infer.embed_all import embed_all
    from train.finetune import main

    root = tmp_path_factory.mktemp("provenance")
    folds_dir = root / "folds"
    _write_folds(synthetic_data, folds_dir, seed=42)
    run = root / "run"
    out = run / "finetune" / "baseline" / f"fold_{FOLD:02d}"
    # key=value overrides before and after --out (argparse used to call the later ones "unrecognized")
    args = ["--model", "baseline", "--preset", "tiny", "max_steps=3", "--folds-dir", str(folds_dir), "--fold",
            str(FOLD), "--out", str(out), *TINY_RUN]
    assert main(args) == 0
    test = str(synthetic_data / "test_a" / "test_a.tfrecords")
    embed_all(str(run), [test], progress=False)
    return {"root": root, "folds": folds_dir, "run": run, "out": out, "args": args, "test": test}


def _exit_code(main, args) -> int:
    """The exit status of an entry point's ``main`` (usage errors end in SystemExit(2))."""
    try:
        return main(args)
    except SystemExit as exit:
        return exit.code


def _copy(trained, tmp_path):
    """A copy of the run and its fold set, the copy's config.json pointing at the copied folds."""
    folds_copy, run_copy = tmp_path / "folds", tmp_path / "run"
    shutil.copytree(trained["folds"], folds_copy)
    shutil.copytree(trained["run"], run_copy)
    out = run_copy / "finetune" / "baseline" / f"fold_{FOLD:02d}"
    config = json.loads((out / "config.json").read_text())
    config["folds_dir"] = str(folds_copy)
    (out / "config.json").write_text(json.dumps(config))
    return folds_copy, run_copy, out


# ------------------------------------------------------------------------------ provenance records
def test_finetune_shorter_than_an_epoch_is_validated_and_records_its_inputs(trained):
    out = trained["out"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [entry["step"] for entry in metrics["epochs"]] == [3]  # validated at its end (was: no entry)
    assert metrics["best"] is None or metrics["best"]["step"] == 3
    record = json.loads((out / provenance.RUN_FILE).read_text())
    info = json.loads((trained["folds"] / folds.FOLDS_JSON).read_text())
    assert record["folds"]["assignment_sha256"] == info["assignment_sha256"] and record["folds"]["seed"] == 42
    assert record["fold"] == FOLD and record["validation_shard"]["md5"] == info["folds"][FOLD]["md5"]
    assert record["tag_list"]["md5"] == provenance.file_md5(out / "tag_list.txt")
    assert record["tokenizer_sha256"] == provenance.tree_digest(out / "tokenizer")
    tags = record["tags"]  # the run's summary counts unmatched tags
    assert tags["tag_occurrences"] == tags["tags_matched"] + tags["tags_unmatched"] > 0
    assert tags["coverage"] >= 0.5
    val = np.load(trained["run"] / "embeddings" / "baseline" / f"fold_{FOLD:02d}" / "val.npz", allow_pickle=False)
    embedded = json.loads(str(val["provenance"]))
    assert embedded["folds"] == record["folds"] and embedded["kind"] == "val"


def test_a_run_against_rewritten_folds_is_refused_everywhere(trained, synthetic_data, tmp_path, capsys):
    from infer.embed import load_run, validation_shard
    from infer.embed_all import embed_all
    from train.finetune import main

    folds_copy, run_copy, out = _copy(trained, tmp_path)
    _write_folds(synthetic_data, folds_copy, seed=7)  # same directory, another split
    expected = (r"fold assignment differs from the run .* that was made with 3 folds, seed 42, split pairs, "
                r"assignment \w+, this holds 3 folds, seed 7, split pairs")
    with pytest.raises(ProvenanceError, match=expected):  # infer.embed --val-shard
        validation_shard(load_run(out))
    with pytest.raises(ProvenanceError, match=expected):
        embed_all(str(run_copy), [trained["test"]], progress=False)
    args = list(trained["args"])
    args[args.index("--folds-dir") + 1], args[args.index("--out") + 1] = str(folds_copy), str(out)
    capsys.readouterr()
    assert _exit_code(main, args) == 2  # a rerun (resume) of the finetune command
    assert re.search(expected + ".*resuming would train on validation pairs", capsys.readouterr().err)
    import ensemble_final

    code = ensemble_final.main(["--run", str(run_copy), "--rule", "mean", "--folds-dir", str(folds_copy),
                                "--partial-folds", "--dim", "8"])
    assert code == 2
    assert re.search(r"folds.json: fold assignment differs from .*val.npz.*seed 42.*seed 7", capsys.readouterr().err)


def test_embed_all_reembeds_a_changed_test_set_instead_of_keeping_it(trained, tmp_path):
    from infer.embed_all import embed_all
    from infer.embeddings_io import load_embedding_set

    folds_copy, run_copy, out = _copy(trained, tmp_path)
    test_b = tmp_path / "test_b.tfrecords"
    writer.write_records(test_b, _records(trained["test"])[5:])
    embeddings = run_copy / "embeddings" / "baseline" / f"fold_{FOLD:02d}"
    assert embed_all(str(run_copy), [trained["test"]], progress=False) == []  # unchanged: kept
    assert embed_all(str(run_copy), [str(test_b)], progress=False) == [str(embeddings / "test.npz")]
    written = load_embedding_set(embeddings / "test.npz")
    ids_b = [tf.train.Example.FromString(r).features.feature["id"].bytes_list.value[0].decode()
             for r in _records(test_b)]
    assert written.ids.tolist() == ids_b
    assert written.provenance["test_files"][0]["md5"] == provenance.file_md5(test_b)
    assert embed_all(str(run_copy), [str(test_b)], progress=False) == []


# ------------------------------------------------------------------------------ the ensemble's checks
def _fake_run(root, records: dict) -> None:
    """RUN/embeddings/<m>/fold_0{0,1}/{test,val}.npz with provenance records built from ``records``."""
    from infer.embeddings_io import make_pairs, save_embeddings

    rng = np.random.default_rng(0)
    test_ids = [str(900 + i) for i in range(30)]
    for fold in (0, 1):
        videos = [str(100 + 20 * fold + i) for i in range(20)]
        pairs = make_pairs(videos[:10], videos[10:], rng.integers(0, 21, 10) * 0.05)
        for model in ("alpha", "beta"):
            base = {"fold": fold, "checkpoint": "ckpt-1", "checkpoint_md5": f"{model}{fold}",
                    "folds": {"num_folds": 2, "seed": 42, "split": "pairs", "assignment_sha256": "a" * 64,
                              "labels_md5": "l"}, "tag_list_md5": "t",
                    "test_files": [{"path": "/data/test_a.tfrecords", "bytes": 10, "md5": "m"}]}
            changes = records.get((model, fold), {})
            record = {**base, **changes}
            directory = root / "embeddings" / model / f"fold_{fold:02d}"
            save_embeddings(directory / "test.npz", test_ids, rng.normal(size=(30, 8)).astype(np.float32),
                            provenance_record=dict(record, kind="test"))
            val_record = {key: value for key, value in record.items() if key != "test_files"}
            save_embeddings(directory / "val.npz", videos, rng.normal(size=(20, 8)).astype(np.float32), pairs,
                            dict(val_record, kind="val"))


@pytest.mark.parametrize("change, message", [
    ({"folds": {"num_folds": 2, "seed": 7, "split": "pairs", "assignment_sha256": "b" * 64, "labels_md5": "l"}},
     r"beta/fold_01/val.npz: fold assignment differs from .*alpha/fold_00/val.npz: that was made with 2 folds, "
     r"seed 42.*this holds 2 folds, seed 7"),
    ({"tag_list_md5": "other"}, r"beta/fold_01/val.npz: made by a run with the tag list md5 other, but "
                                r".*alpha/fold_00/val.npz with t"),
    ({"test_files": [{"path": "/data/test_b.tfrecords", "bytes": 12, "md5": "n"}]},
     r"beta/fold_01/test.npz: embeds the test files /data/test_b.tfrecords \(12 bytes.*but .*alpha/fold_00/test.npz "
     r"embeds /data/test_a.tfrecords"),
    ({"fold": 0}, r"beta/fold_01/val.npz: made by the run of fold 0"),
    ({"wide_gate": 2.0}, r"embeddings/beta: the fold models of beta have different wide-path gates "
                         r"\(\['2.0', 'None'\]\).*rerun python -m train.wide_gate RUN/finetune/beta"),
])
def test_ensemble_refuses_embeddings_of_different_folds_tag_lists_or_test_sets(change, message, tmp_path, capsys):
    import ensemble_final

    _fake_run(tmp_path, {("beta", 1): change})
    assert ensemble_final.main(["--run", str(tmp_path), "--rule", "mean", "--dim", "8"]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "result.zip").exists()
    clean = tmp_path / "clean"
    _fake_run(clean, {})
    assert ensemble_final.main(["--run", str(clean), "--rule", "mean", "--dim", "8"]) == 0
    assert json.loads((clean / "ensemble_report.json").read_text())["provenance"]["checked_files"] == 8
    gated = tmp_path / "gated"  # one chosen gate on every fold of a model: accepted
    _fake_run(gated, {("beta", 0): {"wide_gate": 2.0}, ("beta", 1): {"wide_gate": 2.0}})
    assert ensemble_final.main(["--run", str(gated), "--rule", "mean", "--dim", "8"]) == 0


# ------------------------------------------------------------------------------ shard integrity
def _flip_labels(path) -> None:
    """Rewrite a shard with every sim replaced by 1 - sim: same size, valid records, other labels."""
    records = []
    for record in _records(path):
        example = tf.train.Example.FromString(record)
        value = example.features.feature["sim"].float_list.value
        value[0] = 1.0 - value[0]
        records.append(example.SerializeToString(deterministic=True))
    size = os.path.getsize(path)
    writer.write_records(path, records)
    assert os.path.getsize(path) == size


def _edit_json(directory, change) -> None:
    path = directory / folds.FOLDS_JSON
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


@pytest.mark.parametrize("case, damage, message", [
    ("same-size shard, flipped labels", lambda d: _flip_labels(d / "fold_01.tfrecords"),
     r"fold_01.tfrecords: shard md5 \w+ differs from \w+ in folds.json: its content changed"),
    ("swapped shards", lambda d: [os.rename(d / "fold_00.tfrecords", d / "x"),
                                  os.rename(d / "fold_01.tfrecords", d / "fold_00.tfrecords"),
                                  os.rename(d / "x", d / "fold_01.tfrecords")],
     r"fold_0[01].tfrecords: shard (has \d+ bytes|holds \d+ records|md5 \w+ differs)"),
    ("wrong pair count", lambda d: _edit_json(d, lambda i: [i["folds"][0].update(pairs=i["folds"][0]["pairs"] + 1),
                                                            i.update(num_pairs=i["num_pairs"] + 1)]),
     r"fold_00.tfrecords: shard holds \d+ records, folds.json says \d+ pairs"),
    ("counts that do not add up", lambda d: _edit_json(d, lambda i: i.update(num_pairs=5)),
     r"folds.json: the folds hold \d+ pairs together but num_pairs is 5"),
    ("file outside the folds dir", lambda d: _edit_json(d, lambda i: i["folds"][2].update(file="../pairwise.tfrecords")),
     r"folds.json, folds\[2\]: file '../pairwise.tfrecords' is not 'fold_02.tfrecords'"),
    ("absolute file", lambda d: _edit_json(d, lambda i: i["folds"][2].update(file="/etc/passwd")),
     r"folds\[2\]: file '/etc/passwd' is not 'fold_02.tfrecords'"),
    ("missing key", lambda d: _edit_json(d, lambda i: i["folds"][1].pop("bytes")),
     r"folds.json, folds\[1\]: 'bytes' missing or not int"),
    ("fewer entries than folds", lambda d: _edit_json(d, lambda i: i["folds"].pop()),
     r"folds.json: lists 2 folds but num_folds is 3"),
    ("a string for a count", lambda d: _edit_json(d, lambda i: i["folds"][0].update(pairs="100")),
     r"folds\[0\]: 'pairs' missing or not int: '100'"),
    ("not an object", lambda d: (d / folds.FOLDS_JSON).write_text("[1, 2]"), "not a fold-shard description"),
])
def test_tampered_shards_and_folds_json_are_refused_with_the_reason(case, damage, message, folds_dir, tmp_path):
    copy = tmp_path / "folds"
    shutil.copytree(folds_dir, copy)
    damage(copy)
    with pytest.raises(DataError, match=message):
        folds.fold_files(copy, 0)


def test_ensemble_folds_dir_check_names_a_bad_entry_instead_of_a_keyerror(tmp_path):
    import ensemble_final

    (tmp_path / folds.FOLDS_JSON).write_text(json.dumps({"format": folds.FORMAT, "folds": [{"file": "x"}]}))
    with pytest.raises(DataError, match="a fold entry lacks a valid 'fold' or 'pairs'"):
        ensemble_final.check_folds_json(str(tmp_path), {})


# ------------------------------------------------------------------------------ tags
def test_a_tag_list_sharing_no_tag_with_the_data_is_an_error(synthetic_data, tmp_path):
    from train import stage
    from train.config import TrainConfig, apply_overrides
    from train.pretrain import prepare_pretrain

    foreign = tmp_path / "tag_list.txt"
    foreign.write_text("".join(f"{9_000_000_000 + i}\n" for i in range(50)))
    config = TrainConfig(model=stage.base_model_config("baseline", "tiny"), data_dir=str(synthetic_data))
    config = apply_overrides(config, [*TINY_RUN, f"tag_list={foreign}"])
    with pytest.raises(DataError, match=r"tag_list.txt: only 0 of the \d+ tag occurrences \(0.0%\) of the \d+ training "
                                        r"videos are in this tag list"):
        prepare_pretrain(config, str(tmp_path / "run"), tf.distribute.get_strategy())
    assert not (tmp_path / "run" / "config.json").exists()



# ------------------------------------------------------------------------------ locks
def _hold_lock(directory) -> "subprocess.Popen":
    """A separate process holding ``directory``'s lock until it is killed."""
    import sys

    process = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom tfrecord_tools.locks import "
                                "DirectoryLock\nDirectoryLock(sys.argv[1], 'a test holder').acquire()\n"
                                "print('locked', flush=True)\ntime.sleep(600)\n", str(directory)],
                               cwd=pathlib.Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_stops_at_once_and_a_killed_owner_leaves_no_stuck_lock(synthetic_data, tmp_path, capsys):
    import signal
    import time

    import write_tfrecord
    from tfrecord_tools import locks

    out = tmp_path / "folds"
    holder = _hold_lock(out)
    try:
        started = time.perf_counter()
        code = write_tfrecord.main(["--data", str(synthetic_data), "--out", str(out), "--folds", "3", "--quiet"])
        assert code == 2 and time.perf_counter() - started < 5
        error = capsys.readouterr().err
        assert re.search(rf"{out} is being written by another process \(pid {holder.pid} on .*a test holder", error)
        assert not (out / folds.FOLDS_JSON).exists()
        with pytest.raises(locks.LockedError, match=rf"pid {holder.pid}"):
            locks.DirectoryLock(out, "x").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / locks.LOCK_NAME).exists()  # a SIGKILL leaves the file, but not the lock
    assert write_tfrecord.main(["--data", str(synthetic_data), "--out", str(out), "--folds", "3", "--quiet"]) == 0
    assert not (out / locks.LOCK_NAME).exists()
    folds.fold_files(out, 0)


@pytest.mark.parametrize("entry", ["train.finetune", "infer.embed_all", "ensemble_final"])
def test_run_directories_have_one_writer(entry, trained, tmp_path, capsys):
    import signal

    folds_copy, run_copy, out = _copy(trained, tmp_path)
    locked_dir = out if entry == "train.finetune" else run_copy / "embeddings"
    holder = _hold_lock(locked_dir)
    try:
        if entry == "train.finetune":
            from train.finetune import main

            args = list(trained["args"])
            args[args.index("--folds-dir") + 1], args[args.index("--out") + 1] = str(folds_copy), str(out)
            code = _exit_code(main, args)
        elif entry == "infer.embed_all":
            from infer.embed_all import main

            code = _exit_code(main, ["--run", str(run_copy), "--test", trained["test"], "--quiet"])
        else:
            import ensemble_final

            code = ensemble_final.main(["--run", str(run_copy), "--rule", "mean", "--dim", "8", "--partial-folds"])
        assert code == 2
        assert re.search(rf"{locked_dir} is being written by another process \(pid {holder.pid}",
                         capsys.readouterr().err)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


# ------------------------------------------------------------------------------ pretraining inputs
def _prepare(data, run, *overrides):
    from train import stage
    from train.config import TrainConfig, apply_overrides
    from train.pretrain import prepare_pretrain

    config = TrainConfig(model=stage.base_model_config("baseline", "tiny"), data_dir=str(data))
    return prepare_pretrain(apply_overrides(config, [*TINY_RUN, *overrides]), str(run), tf.distribute.get_strategy())


def test_pretraining_refuses_duplicate_ids_and_data_changed_under_a_run(synthetic_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    shard = data / "pointwise" / "pretrain_1.tfrecords"
    original = _records(shard)
    writer.write_records(shard, original + [_records(data / "pointwise" / "pretrain_0.tfrecords")[3]])
    with pytest.raises(DataError, match=r"pretrain_1.tfrecords, record \d+: duplicate video id \d+: already in "
                                        r".*pretrain_0.tfrecords, record 3"):
        _prepare(data, tmp_path / "dup")
    writer.write_records(shard, original)
    run = tmp_path / "run"
    _prepare(data, run)
    record = json.loads((run / provenance.RUN_FILE).read_text())
    assert [f["md5"] for f in record["data_files"]][1] == provenance.file_md5(shard)
    writer.write_records(shard, original[:-1])  # the data changes under the run
    with pytest.raises(ProvenanceError, match=r"the pretraining data changed since this run started \(.*pretrain_1"
                                              r".tfrecords: \d+ bytes md5 \w+ now, \d+ bytes"):
        _prepare(data, run)


def test_a_rerun_cannot_swap_the_tag_list_of_a_run(tmp_path):
    from train import stage

    run = tmp_path / "run"
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("5\n7\n")
    second.write_text("5\n8\n")
    stage.prepare_tags(str(first), str(run))
    assert stage.prepare_tags(str(first), str(run)).size == 2  # the same list again: fine
    with pytest.raises(ValueError, match=r"b.txt: differs from .*run/tag_list.txt, the tag list this run was started"):
        stage.prepare_tags(str(second), str(run))
    assert (run / "tag_list.txt").read_text() == "5\n7\n"


def test_min_tag_coverage_is_a_setting(synthetic_data, tmp_path):
    """A data set whose tags are mostly a long tail (the sparse_tags world) lowers the floor."""
    from train import data as data_lib
    from train.config import TrainConfig

    files = sorted(str(p) for p in (synthetic_data / "pointwise").glob("*.tfrecords"))
    lines = (synthetic_data / "tag_list.txt").read_text().splitlines()
    tag_list = str(tmp_path / "tag_list.txt")  # the 30 most frequent tags only: a long tail left out
    with open(tag_list, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines[:30]) + "\n")
    vocab = data_lib.load_tag_vocab(tag_list)
    coverage = data_lib.input_summary(files, vocab, tag_list, min_coverage=0.0)["tags"]["coverage"]
    assert 0.0 < coverage < 1.0
    assert data_lib.input_summary(files, vocab, tag_list, min_coverage=coverage - 1e-3)["tags"]["coverage"] == coverage
    with pytest.raises(DataError, match=r"at least 100% needed.*lower min_tag_coverage="):
        data_lib.input_summary(files, vocab, tag_list, min_coverage=1.0)
    assert TrainConfig(min_tag_coverage=0.2).min_tag_coverage == 0.2
    with pytest.raises(ValueError, match=r"min_tag_coverage must be in \[0, 1\]"):
        TrainConfig(min_tag_coverage=1.5)


def test_a_long_tail_of_rare_tags_passes_the_coverage_check_and_another_data_sets_list_does_not(tmp_path):
    """sparse_tags: most tag slots hold ids seen on one video, which no tag list can hold; the tags
    on 3 videos or more (counted once per video, however many pairs it is in) are covered."""
    from tfrecord_tools import folds, synth
    from train import data as data_lib

    own, other = tmp_path / "own", tmp_path / "other"
    synth.generate(own, "tiny", seed=0, progress=False, world="sparse_tags")
    synth.generate(other, "tiny", seed=1, progress=False, world="sparse_tags")
    folds.write_fold_shards(own / "pairwise" / "pairwise.tfrecords", own / "pairwise" / "label.tsv",
                            own / "folds", num_folds=3, progress=False)
    shards = sorted(str(p) for p in (own / "folds").glob("*.tfrecords"))
    tag_list = str(own / "tag_list.txt")
    tags = data_lib.input_summary(shards, data_lib.load_tag_vocab(tag_list), tag_list, pairs=True)["tags"]
    assert tags["coverage"] < 0.5 < 0.9 < tags["repeated_coverage"]  # passes the default 50%
    wrong = str(other / "tag_list.txt")
    with pytest.raises(DataError, match=r"in this tag list, \d+\.\d% leaving out tags on fewer than 3 videos"):
        data_lib.input_summary(shards, data_lib.load_tag_vocab(wrong), wrong, pairs=True)
