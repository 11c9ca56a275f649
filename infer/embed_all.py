"""Embed the test set and each fold's validation pairs for every finetuned model x fold of a run.

One process for the whole run (TensorFlow and transformers are imported once), which is what
``sh infer_all.sh`` calls:

    python -m infer.embed_all --run RUN --test 'DATA/test_a/*.tfrecords' [--models a b] [--folds 0 1]

Reads ``RUN/finetune/<model>/fold_XX/`` and writes ``RUN/embeddings/<model>/fold_XX/test.npz`` and
``val.npz`` (the latter with the fold's validation pairs). Existing outputs are kept unless
``--overwrite``; each file is written atomically, so an interrupted run leaves no partial file and a
rerun completes it. A finetune run without ``metrics.json`` (unfinished) is an error.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from infer import cli
from tfrecord_tools import cli as common

if __name__ == "__main__":  # --help and usage errors before TensorFlow is imported (quietly) below
    common.early_parse(cli.embed_all_parser)

from infer.embed import embed_pair_shard, embed_videos, load_run, validation_shard
from infer.embeddings_io import save_embeddings
from tfrecord_tools import layout, reader, schema


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


def embed_all(run_root: str, test_files: Sequence[str], models: Sequence[str] | None = None,
              folds: Sequence[int] | None = None, batch_size: int = 64, overwrite: bool = False,
              progress: bool = True) -> list[str]:
    """Write test.npz + val.npz for each finetune run; returns the paths written."""
    written = []
    for model, name in finetune_runs(run_root, models, folds):
        run_dir = os.path.join(run_root, layout.FINETUNE_DIR, model, name)
        if not os.path.isfile(os.path.join(run_dir, layout.METRICS_FILE)):
            raise FileNotFoundError(f"{run_dir}: unfinished finetune run (no metrics.json); finish it first")
        out_dir = os.path.join(run_root, layout.EMBEDDINGS_DIR, model, name)
        test_path = os.path.join(out_dir, layout.TEST_EMBEDDINGS)
        val_path = os.path.join(out_dir, layout.VAL_EMBEDDINGS)
        todo_test = overwrite or not os.path.isfile(test_path)
        todo_val = overwrite or not os.path.isfile(val_path)
        if not (todo_test or todo_val):
            continue
        print(f"== embed {model} {name}", flush=True)
        run = load_run(run_dir)
        if todo_test:
            ids, embeddings = embed_videos(run, test_files, schema.RecordKind.TEST, batch_size, progress)
            save_embeddings(test_path, ids, embeddings)
            written.append(test_path)
        if todo_val:
            ids, embeddings, pairs = embed_pair_shard(run, validation_shard(run), batch_size, progress)
            save_embeddings(val_path, ids, embeddings, pairs)
            written.append(val_path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.embed_all_parser().parse_args(argv)
    with common.user_errors("python -m infer.embed_all", ValueError, FileNotFoundError):
        test_files = reader._resolve_files(args.test)
        written = embed_all(args.run, test_files, args.models, args.folds, args.batch_size, args.overwrite,
                            not args.quiet)
    print(f"wrote {len(written)} embedding files under {os.path.join(args.run, layout.EMBEDDINGS_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
