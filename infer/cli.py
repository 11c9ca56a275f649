"""The command lines of ``python -m infer.embed``, ``infer.embed_all`` and ``infer.baselines``,
built without importing TensorFlow (``--help`` and usage errors answer at once)."""
from __future__ import annotations

import argparse

from tfrecord_tools import cli as common
from tfrecord_tools import layout, schema

CHECKPOINTS = (layout.BEST_DIR, layout.FINAL_DIR)
EMBED_KINDS = tuple(kind.value for kind in schema.RecordKind if kind is not schema.RecordKind.PAIR)


def embed_parser() -> argparse.ArgumentParser:
    parser = common.Parser(prog="python -m infer.embed",
                           description="Embeddings of any record file from a trained run directory.")
    parser.add_argument("--run", required=True, help="run directory (config.json, tokenizer/, best/ or final/)")
    parser.add_argument("--out", required=True, help="output .npz (ids, embeddings[, pairs])")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", nargs="+", help="record files (or globs) to embed")
    source.add_argument("--val-shard", action="store_true", help="the run's fold validation shard, with its pairs")
    parser.add_argument("--kind", default="test", choices=EMBED_KINDS, help="record kind of --records (default: test)")
    parser.add_argument("--checkpoint", default=layout.BEST_DIR, choices=CHECKPOINTS)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return common.add_verbose(parser)


def embed_all_parser() -> argparse.ArgumentParser:
    parser = common.Parser(prog="python -m infer.embed_all",
                           description="Embed the test set and each fold's validation pairs for every "
                                       "finetuned model x fold of a run.")
    parser.add_argument("--run", required=True, help="run directory holding finetune/<model>/fold_XX/")
    parser.add_argument("--test", nargs="+", required=True, help="test record files or globs")
    parser.add_argument("--models", nargs="*", default=None, help="models (default: all under RUN/finetune)")
    parser.add_argument("--folds", nargs="*", type=int, default=None, help="folds (default: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--overwrite", action="store_true", help="recompute existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return common.add_verbose(parser)


def baselines_parser() -> argparse.ArgumentParser:
    parser = common.Parser(prog="python -m infer.baselines",
                           description="Untrained and linear baselines, scored like the models: the floor a "
                                       "learned model must clear.")
    parser.add_argument("--data", required=True, help="data directory (pairwise/, test_a/, pointwise/)")
    parser.add_argument("--folds-dir", required=True, help="fold shards of DATA (write_tfrecord.py)")
    parser.add_argument("--out", required=True, help="output directory (one subdirectory per baseline)")
    parser.add_argument("--folds", type=int, nargs="*", default=None, help="folds to compute (default: all)")
    parser.add_argument("--frame-power", type=_power, default=0.5,
                        help="signed power of every frame value before the mean frame, in (0, 1] (default 0.5: "
                             "the signed square root, as the robust recipe's model.frames.power; 1: raw frames)")
    parser.add_argument("--without-test-videos", action="store_true",
                        help="fit the unsupervised statistics (frame moments, TF-IDF, LSA, text whitening) on the "
                             "unlabelled and labelled-pair videos only and just map the test videos through them, "
                             "as the models' wide path does (default: the test videos join those fits)")
    parser.add_argument("--frame-space", choices=("auto", "covariance", "standardised", "within"), default="auto",
                        help="the space the mean frame is whitened in: covariance PCA, standardised (each feature "
                             "divided by its spread first: correlation PCA), within (each feature divided by its "
                             "spread within videos first) or auto (default: per fold, chosen on the training pairs)")
    parser.add_argument("--frame-words", type=_frame_words, default=0, metavar="K",
                        help="pool each video's frames by idf over K visual words (infer.frame_words: shots many "
                             "videos share count less), as model.wide.frame_words does for the models' wide path; "
                             "0: the plain mean frame (default; demo.sh passes 64 with its recipe)")
    parser.add_argument("--frame-words-fits", type=_positive_int, default=4, metavar="S",
                        help="with --frame-words: S sets of words, each k-means on its own sample from its own "
                             "start; a frame weighs the mean of its idf over them (model.wide.frame_words_fits; "
                             "default 4: one fit is a noisy reading of which shots are common)")
    parser.add_argument("--rare-words", type=_non_negative_int, default=0, metavar="M",
                        help="put the title's rare words (in at most --rare-words-max-df of the videos), matched "
                             "exactly, beside the linear metric: their TF-IDF through a fixed random projection to M "
                             "dimensions, weighted as the training pairs prefer (infer.rare_words), as "
                             "model.wide.rare_words does for the models' wide path; 0: off (default; demo.sh "
                             "passes 64 with its recipe)")
    parser.add_argument("--rare-words-max-df", type=_power, default=0.002, metavar="SHARE",
                        help="with --rare-words: a word is rare in at most this share of the videos, in (0, 1] "
                             "(default 0.002)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return common.add_verbose(parser)


def _checked(text: str, kind: type, valid, expected: str):
    """``text`` as a ``kind`` for which ``valid`` holds, or the usage error "expected ..., got ..."."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _frame_words(text: str) -> int:
    return _checked(text, int, lambda value: value == 0 or value >= 2, "0 or an integer >= 2")


def _power(text: str) -> float:
    return _checked(text, float, lambda value: 0.0 < value <= 1.0, "a number in (0, 1]")


def _positive_int(text: str) -> int:
    return _checked(text, int, lambda value: value >= 1, "an integer >= 1")


def _non_negative_int(text: str) -> int:
    return _checked(text, int, lambda value: value >= 0, "an integer >= 0")
