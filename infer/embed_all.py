"""Embed the test set and each fold's validation pairs for every finetuned model x fold of a run.

One process for the whole run (TensorFlow and transformers are imported once), which is what
``sh infer_all.sh`` calls:

    python -m infer.embed_all --run RUN --test 'DATA/test_a/*.tfrecords' [--models a b] [--folds 0 1]

Reads ``RUN/finetune/<model>/fold_XX/`` and writes ``RUN/embeddings/<model>/fold_XX/test.npz`` and
``val.npz`` (the latter with the fold's validation pairs), each with a ``provenance`` record (the
run's checkpoint, the test files' md5 + size or the validation shard's md5). A rerun keeps an
existing file only while its provenance still matches (a new test set or a retrained run is
re-embedded, with the reason printed); ``--overwrite`` recomputes everything. Each file is written
atomically, so an interrupted run leaves no partial file and a rerun completes it. A finetune run
without ``metrics.json`` (unfinished), or whose folds were rewritten after it was trained, is an error.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from infer import cli
from tfrecord_tools import cli as common

if __name__ == "__main__":  # --help and usage errors before TensorFlow is imported (quietly) below
    common.early_parse(cli.embed_all_parser)

from infer.embed import (checkpoint_of, embed_pair_shard, embed_videos, load_run, provenance_of_test,
                         provenance_of_val, run_identity, run_validation_shard)
from infer.embeddings_io import read_provenance, save_embeddings
from tfrecord_tools import layout, locks, provenance, reader, schema
from train.config import load_config


def finetune_runs(run_root: str, models: Sequence[str] | None = None,
                  folds: Sequence[int] | None = None) -> list[tuple[str, str]]:
    """(model, fold directory name) of every finetune run to embed, sorted."""
    base = os.path.join(run_root, layout.FINETUNE_DIR)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"{base}: no finetune runs (run finetune_all.sh first)")
    models = list(models) if models else sorted(os.listdir(base))
    runs = []
    for model in models:
        model_dir = os.path.join(base, model)
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"{model_dir}: no finetune runs of model {model!r}")
        names = sorted(name for name in os.listdir(model_dir) if layout.FOLD_DIR.match(name))
        if folds is not None:
            wanted = {layout.fold_name(fold) for fold in folds}
            missing = sorted(wanted - set(names))
            if missing:
                raise FileNotFoundError(f"{model_dir}: missing {', '.join(missing)}")
            names = [name for name in names if name in wanted]
        runs.extend((model, name) for name in names)
    return runs


def _stale(path: str, identity: dict, inputs_match) -> str | None:
    """Why the embedding file ``path`` must be (re)computed, or None when it is up to date."""
    if not os.path.isfile(path):
        return "missing"
    record = read_provenance(path)
    if record is None:
        return "no provenance recorded (written before issue 10)"
    if (record.get("checkpoint_md5") != identity["checkpoint_md5"]
            or os.path.basename(record.get("checkpoint") or "") != os.path.basename(identity["checkpoint"])):
        return f"made from checkpoint {record.get('checkpoint')}, the run's is now {identity['checkpoint']} (retrained?)"
    if record.get("wide_gate") != identity.get("wide_gate"):
        def gate(value):
            return "the trained gate" if value is None else f"gate {value:.6g}"
        return (f"made with the wide path at {gate(record.get('wide_gate'))}, the run's is now "
                f"{gate(identity.get('wide_gate'))} (train.wide_gate)")
    return inputs_match(record)


def embed_all(run_root: str, test_files: Sequence[str], models: Sequence[str] | None = None,
              folds: Sequence[int] | None = None, batch_size: int = 64, overwrite: bool = False,
              progress: bool = True) -> list[str]:
    """Write test.npz + val.npz for each finetune run; returns the paths written.

    Existing files are kept only when their provenance matches: the same checkpoint, the same test
    files (md5 + size) or the same validation shard. A run whose fold set was rewritten after it was
    trained is an error (``ProvenanceError`` naming both).
    """
    with locks.locked(os.path.join(run_root, layout.EMBEDDINGS_DIR), "infer.embed_all"):  # one writer at a time
        return _embed_all(run_root, test_files, models, folds, batch_size, overwrite, progress)


def _embed_all(run_root: str, test_files: Sequence[str], models: Sequence[str] | None, folds: Sequence[int] | None,
               batch_size: int, overwrite: bool, progress: bool) -> list[str]:
    test_files = [os.fspath(path) for path in test_files]
    test_prints = provenance.fingerprints(test_files)

    def same_test(record: dict) -> str | None:
        if provenance.same_contents(record.get("test_files") or [], test_prints):
            return None
        then = ", ".join(f"{f['path']} ({f['bytes']} bytes)" for f in record.get("test_files") or [])
        now = ", ".join(f"{f['path']} ({f['bytes']} bytes)" for f in test_prints)
        return f"made from the test files {then}; now {now}"

    written = []
    for model, name in finetune_runs(run_root, models, folds):
        run_dir = os.path.join(run_root, layout.FINETUNE_DIR, model, name)
        if not os.path.isfile(os.path.join(run_dir, layout.METRICS_FILE)):
            raise FileNotFoundError(f"{run_dir}: unfinished finetune run (no metrics.json); finish it first")
        config = load_config(run_dir)
        shard = run_validation_shard(run_dir, config, provenance.read_run(run_dir))  # folds still the run's?
        shard_md5 = provenance.file_md5(shard)

        def same_shard(record: dict, shard_md5: str = shard_md5) -> str | None:
            recorded = (record.get("validation_shard") or {}).get("md5")
            return None if recorded == shard_md5 else f"made from validation shard md5 {recorded}, now {shard_md5}"

        identity = run_identity(run_dir, checkpoint_of(run_dir))
        out_dir = os.path.join(run_root, layout.EMBEDDINGS_DIR, model, name)
        test_path = os.path.join(out_dir, layout.TEST_EMBEDDINGS)
        val_path = os.path.join(out_dir, layout.VAL_EMBEDDINGS)
        why_test = "--overwrite" if overwrite else _stale(test_path, identity, same_test)
        why_val = "--overwrite" if overwrite else _stale(val_path, identity, same_shard)
        if not (why_test or why_val):
            continue
        reasons = "; ".join(f"{label}: {why}" for label, why in (("test.npz", why_test), ("val.npz", why_val)) if why)
        print(f"== embed {model} {name} ({reasons})", flush=True)
        run = load_run(run_dir)
        if why_test:
            ids, embeddings = embed_videos(run, test_files, schema.RecordKind.TEST, batch_size, progress)
            save_embeddings(test_path, ids, embeddings, provenance_record=provenance_of_test(run, test_files))
            written.append(test_path)
        if why_val:
            ids, embeddings, pairs = embed_pair_shard(run, shard, batch_size, progress)
            save_embeddings(val_path, ids, embeddings, pairs, provenance_of_val(run, shard))
            written.append(val_path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.embed_all_parser().parse_args(argv)
    with common.user_errors("python -m infer.embed_all", ValueError, FileNotFoundError, locks.LockedError):
        test_files = reader._resolve_files(args.test)
        written = embed_all(args.run, test_files, args.models, args.folds, args.batch_size, args.overwrite,
                            not args.quiet)
    print(f"wrote {len(written)} embedding files under {os.path.join(args.run, layout.EMBEDDINGS_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
