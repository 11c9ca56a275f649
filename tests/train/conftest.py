"""Shared set-up of the training tests: one pretrain run (the tiny synthetic data and fold shards
are session fixtures of tests/conftest.py).

Everything expensive is session scoped so that the training tests pay for it once.
"""
from __future__ import annotations

import pathlib

import pytest

from tests.train.helpers import TINY_RUN


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
