"""Shared test fixtures. Tests may read the real challenge files from ../shared; the project never does."""
import json
import os
import pathlib

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One BLAS thread: on 2 shared cores, threaded small SVDs are ~30x slower, not faster.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The real files live beside the checkout (../shared); VIDEOSIM_REAL_DATA points elsewhere.
SHARED_DATA = pathlib.Path(os.environ.get("VIDEOSIM_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "qqbrowser2021"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real challenge files (labels, tag list, stats, two real videos); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real challenge files not found at {SHARED_DATA}")
    return SHARED_DATA


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


# ---------------------------------------------------------------------- the `slow` marker
# `pytest -m "not slow"` runs the rest of the suite in about a minute. Slow: whatever trains a
# model for more than a step, starts a Python process that imports TensorFlow, or kills one.
SLOW_FIXTURES = {"pretrain_run", "finetune_run", "gated_model"}
SLOW_MODULES = {"test_faults.py", "test_multiworker.py", "test_resume.py", "test_loop.py", "test_pretrain.py",
                "test_finetune.py", "test_embed.py",
                # issue 11: exports loaded in fresh processes, text -> video through a trained run, distillation
                "test_export.py", "test_text_and_models.py", "test_distill.py"}
SLOW_TESTS = {"test_two_replica_mirrored_training_in_a_subprocess", "test_reader_import_does_not_load_transformers",
              "test_cli_writes_a_tiny_data_set", "test_cli_writes_a_complete_component_split",
              "test_fit_on_val_and_subprocess", "test_cli_validate_and_write", "test_trains_and_overfits_a_fixed_batch",
              "test_tag_skew_at_scale_follows_the_real_counts", "test_label_graph_from_the_real_file",
              "test_missing_folds_json_is_one_line_exit_2_no_run_dir_and_no_native_logs",
              # 10-120 s each on 2 busy cores (pytest --durations): a whole pipeline, mixed-precision
              # training, per-fold baselines through their CLI, real EfficientNet weights, a 24-layer encoder
              "test_video_files_to_result_zip", "test_mixed_precision_both_groups_skip_together_and_keep_one_loss_scale",
              "test_cli_writes_per_fold_baselines_scored_by_ensemble_final",
              "test_weights_file_gives_the_features_of_those_weights",
              "test_bert_large_shape_config_and_a_24_layer_checkpoint", "test_trains_with_infonce_and_tag_losses"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = getattr(item, "originalname", item.name)
        if (SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in SLOW_MODULES
                or name in SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
