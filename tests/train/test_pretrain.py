"""Pretraining the real models on tiny synthetic data under MirroredStrategy."""
import json
import re

import numpy as np
import pytest
import tensorflow as tf

from models.config import ModelConfig
from models.registry import VARIANTS
from tfrecord_tools.reader import VideoDecoder, read_videos
from tfrecord_tools.schema import RecordKind
from tfrecord_tools.tags import TagVocab
from tfrecord_tools.tokenization import load_tokenizer
from train import checkpointing, data, stage
from train.config import TrainConfig, apply_overrides, load_config
from train.loop import LOG_FILE
from train.pretrain import run_pretrain
from train.stage import resolve_model_config
from tests.train.helpers import TINY_RUN

# A few dozen steps for one variant of each family (its loss on a fixed batch must fall by 8%),
# one step for the others.
STEPS = {"mix": 20, "uniter": 20}
EXPECTED_TERMS = {"mix_nextvlad": {"tag", "expert_tag", "kl", "infonce"}, "uniter": {"tag", "mlm"}}


def _losses(run_dir):
    return [json.loads(line) for line in (run_dir / LOG_FILE).read_text().splitlines()]


def _fixed_batch_loss(run_dir, data_dir, weights: str | None) -> float:
    """The run's pretraining loss (inference mode) on the first 64 pointwise records, with the
    initial weights (``weights=None``: the run's seed rebuilds them) or a checkpoint directory's."""
    config = load_config(run_dir)
    model = stage.build_stage_model(config, tf.distribute.get_strategy())
    if weights is not None:
        checkpointing.restore_model(model, run_dir / weights)
    decoder = VideoDecoder(tokenizer=load_tokenizer(run_dir / "tokenizer", config.model.text_encoder),
                           tag_vocab=TagVocab.from_file(run_dir / "tag_list.txt"))
    files = data.pretrain_files(data_dir, include_pairwise=False)
    batch = next(iter(read_videos(files, RecordKind.POINTWISE, decoder, batch_size=64)))
    losses = model.pretrain_losses(data.numeric_features(batch), training=False)
    return float(tf.add_n(list(losses.values())))


def _falls(run_dir, data_dir) -> bool:
    before = _fixed_batch_loss(run_dir, data_dir, None)
    after = _fixed_batch_loss(run_dir, data_dir, "final")
    return after < 0.92 * before


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_pretrains_under_mirrored_strategy(name, synthetic_data, tmp_path):
    steps = STEPS.get(name, 1)
    config = TrainConfig(model=resolve_model_config(name, ModelConfig.tiny()), data_dir=str(synthetic_data))
    config = apply_overrides(config, [f"max_steps={steps}", "lr_other=1e-2", "lr_text=1e-3", *TINY_RUN])
    values = run_pretrain(config, str(tmp_path), tf.distribute.MirroredStrategy(["/cpu:0"]))
    family = VARIANTS[name][0]
    assert set(values) == EXPECTED_TERMS[family] | {"loss", "grad_norm"}
    assert all(np.isfinite(list(values.values())))
    saved = load_config(tmp_path)
    tokenizer = load_tokenizer(tmp_path / "tokenizer", saved.model.text_encoder)
    assert saved.model.vocab_size == len(tokenizer) <= 400
    tag_count = len((synthetic_data / "tag_list.txt").read_text().split())
    assert saved.model.num_tags == tag_count and saved.model.name == family
    assert tf.train.latest_checkpoint(tmp_path / "ckpt").endswith(f"ckpt-{steps}")
    assert tf.train.latest_checkpoint(tmp_path / "final") is not None
    log = _losses(tmp_path)
    assert [entry["step"] for entry in log] == list(range(1, steps + 1))
    if steps > 1:
        assert _falls(tmp_path, synthetic_data)


def test_baseline_pretrain_loss_falls_and_run_dir_is_complete(pretrain_run, synthetic_data):
    assert _falls(pretrain_run, synthetic_data)
    for name in ("config.json", "tag_list.txt", "tokenizer/vocab.txt", "ckpt/checkpoint", "final/checkpoint"):
        assert (pretrain_run / name).exists(), name
    events = list((pretrain_run / "tensorboard").iterdir())
    tags = {value.tag for event in tf.compat.v1.train.summary_iterator(str(events[0])) for value in event.summary.value}
    assert {"train/loss", "train/tag", "train/lr_text", "train/lr_other", "train/steps_per_sec"} <= tags


def test_rerun_of_a_finished_run_changes_nothing_and_other_configs_are_refused(pretrain_run, synthetic_data,
                                                                              capsys):
    from train.pretrain import main

    final = tf.train.latest_checkpoint(pretrain_run / "final")
    args = ["--model", "baseline", "--data", str(synthetic_data), "--out", str(pretrain_run), "--preset", "tiny",
            "max_steps=20", "lr_other=1e-2", "lr_text=1e-3", *TINY_RUN]
    assert main(args) == 0
    assert tf.train.latest_checkpoint(pretrain_run / "final") == final
    assert len(_losses(pretrain_run)) == 20
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "lr_other=1e-3"])
    assert exit_info.value.code == 2
    assert re.fullmatch(r"python -m train.pretrain: error: .* holds a run with another config "
                        r"\(lr_other: 0.01 -> 0.001\); .*\n", capsys.readouterr().err)
    assert (pretrain_run / "training_curves.png").is_file()  # drawn at the end of the fixture's run
