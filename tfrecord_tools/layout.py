"""Every file and directory name of the data and run layouts, in one place (no TensorFlow).

Data directory (the official layout, plus our fold shards)::

    DATA/pointwise/pretrain_K.tfrecords   DATA/pairwise/pairwise.tfrecords   DATA/pairwise/label.tsv
    DATA/test_a/test_a.tfrecords          DATA/tag_list.txt                  DATA/synth_meta.json
    DATA/folds/fold_XX.tfrecords          DATA/folds/folds.json

Run directory::

    RUN/pretrain/<model>/            config.json tokenizer/ tag_list.txt ckpt/ final/ tensorboard/ ...
    RUN/finetune/<model>/fold_XX/    ... best/ metrics.json
    RUN/embeddings/<model>/fold_XX/  test.npz val.npz
    RUN/embeddings/<model>/avg/      test.npz
    RUN/baselines/                   mean_frame.npz title_tfidf.npz
    RUN/result.zip  RUN/ensemble_report.json  RUN/ensemble_report.png
"""
from __future__ import annotations

import os
import re

# ---------------------------------------------------------------------- data directory
POINTWISE_DIR = "pointwise"
PAIRWISE_DIR = "pairwise"
PAIRWISE_FILE = "pairwise.tfrecords"
LABEL_FILE = "label.tsv"
TEST_DIR = "test_a"
TAG_LIST = "tag_list.txt"
SYNTH_META = "synth_meta.json"
TEST_TRUTH = "test_truth.npz"  # a generator's stored truth of the test videos (bench.foreign_world writes it)
RECORD_SUFFIX = ".tfrecords"

# ---------------------------------------------------------------------- fold shards
FOLDS_DIR = "folds"  # default DATA/folds
FOLDS_JSON = "folds.json"  # written last: its presence means a complete set
FOLDS_FORMAT = "videosim-fold-shards"  # folds.json's "format"
FOLD_SPLITS = ("pairs", "components")  # how write_tfrecord.py cuts the label lines into folds
FOLD_SHARD = re.compile(r"^fold_(\d+)\.tfrecords$")

# ---------------------------------------------------------------------- run directory
PRETRAIN_DIR = "pretrain"
FINETUNE_DIR = "finetune"
EMBEDDINGS_DIR = "embeddings"
BASELINES_DIR = "baselines"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"
RESUME_DIR = "ckpt"  # resumable checkpoints (model, optimizer, step)
FINAL_DIR = "final"  # model-only checkpoint at the end (what a finetune restores)
BEST_DIR = "best"  # model-only checkpoint of the best validation epoch (finetune)
METRICS_FILE = "metrics.json"
TRAIN_LOG = "train_log.jsonl"
TENSORBOARD_DIR = "tensorboard"
CURVES_PNG = "training_curves.png"
FOLD_DIR = re.compile(r"^fold_(\d+)$")
AVERAGE_DIR = "avg"  # fold-averaged embeddings
TEST_EMBEDDINGS = "test.npz"
VAL_EMBEDDINGS = "val.npz"
RESULT_ZIP = "result.zip"
ENSEMBLE_REPORT = "ensemble_report.json"
ENSEMBLE_PNG = "ensemble_report.png"


def fold_name(fold: int) -> str:
    """``fold_XX``: the directory of fold ``fold``'s finetune run and embeddings."""
    return f"fold_{int(fold):02d}"


def fold_shard(fold: int) -> str:
    """``fold_XX.tfrecords``: the shard of fold ``fold``."""
    return fold_name(fold) + RECORD_SUFFIX


def pairwise_file(data_dir: str) -> str:
    return os.path.join(data_dir, PAIRWISE_DIR, PAIRWISE_FILE)


def label_file(data_dir: str) -> str:
    return os.path.join(data_dir, PAIRWISE_DIR, LABEL_FILE)


def folds_dir(data_dir: str) -> str:
    return os.path.join(data_dir, FOLDS_DIR)
