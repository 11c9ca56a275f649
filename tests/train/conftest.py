"""Shared set-up of the training tests: tiny synthetic data, fold shards and one pretrain run.

Everything expensive is session scoped so that the training tests pay for it once.
"""
from __future__ import annotations

import json
import pathlib

import pytest

from tests.train.helpers import TINY_RUN


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> pathlib.Path:
    """A tiny synthetic data set in the official layout (a few hundred videos and pairs)."""
    from tfrecord_tools import synth

    out = tmp_path_factory.mktemp("train_data") / "data"
    synth.generate(out, "tiny", seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def synthetic_sizes(synthetic_data) -> dict:
    """The sizes the generator was asked for (synth_meta.json): pointwise files/videos, pairs, ..."""
    return json.loads((synthetic_data / "synth_meta.json").read_text())["preset_params"]


@pytest.fixture(scope="session")
def folds_dir(synthetic_data) -> pathlib.Path:
    """Three fold shards of the tiny data set's labelled pairs."""
    from tfrecord_tools import folds

    out = synthetic_data.parent / "folds"
    folds.write_fold_shards(synthetic_data / "pairwise" / "pairwise.tfrecords",
                            synthetic_data / "pairwise" / "label.tsv", out, num_folds=3, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model_config():
    """A tiny baseline ModelConfig (official frame size)."""
    from models.config import ModelConfig

    return ModelConfig.tiny("baseline")


@pytest.fixture(scope="session")
def pretrain_run(synthetic_data, tmp_path_factory) -> pathlib.Path:
    """A finished 30-step pretrain run of the tiny baseline (its run directory)."""
    from train.pretrain import main

    run = tmp_path_factory.mktemp("runs") / "pretrain" / "baseline"
    main(["--model", "baseline", "--data", str(synthetic_data), "--out", str(run), "--preset", "tiny",
          "max_steps=20", "lr_other=1e-2", "lr_text=1e-3", *TINY_RUN])
    return run


@pytest.fixture(autouse=True)
def _float32_policy():
    """Leave the global Keras precision policy as float32 for whatever runs next."""
    yield
    import tf_keras as keras

    keras.mixed_precision.set_global_policy("float32")
