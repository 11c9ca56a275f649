"""Finetuning on tiny fold shards: metrics.json, best/, restoring a pretrain run, losses and targets."""
import json

import numpy as np
import pytest
import tensorflow as tf

from models.config import ModelConfig
from train import checkpointing, stage
from train.config import TrainConfig, apply_overrides, load_config
from train.finetune import EpochMetrics, main, make_target_fn, run_finetune
from tests.train.helpers import TINY_RUN


def _text_values(model):
    return [v.numpy() for v in model.text_encoder_variables()]


def test_restore_pretrained_restores_the_text_encoder(pretrain_run):
    config = load_config(pretrain_run)
    final = pretrain_run / checkpointing.FINAL_DIR
    whole = stage.build_stage_model(config, tf.distribute.get_strategy())
    checkpointing.restore_model(whole, final)
    fresh = stage.build_stage_model(config.replace(seed=config.seed + 1), tf.distribute.get_strategy())
    fresh_values = _text_values(fresh)
    checkpointing.restore_pretrained(fresh, final)
    for restored, reference in zip(_text_values(fresh), _text_values(whole)):
        np.testing.assert_array_equal(restored, reference)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh_values, _text_values(whole)))
    other = stage.build_stage_model(config.replace(model=config.model.replace(text_hidden_size=16)),
                                    tf.distribute.get_strategy())
    with pytest.raises(ValueError, match="checkpoint does not match"):
        checkpointing.restore_pretrained(other, final)


def test_finetune_from_pretrain_run(pretrain_run, folds_dir, tmp_path, capsys):
    out = tmp_path / "finetune" / "baseline" / "fold_01"
    # lr_text ~ 0: the text encoder must end where the pretrain run left it (restored, not fresh)
    assert main(["--model", "baseline", "--folds-dir", str(folds_dir), "--fold", "1", "--out", str(out),
                 "--pretrained", str(pretrain_run), "epochs=2", "steps_per_epoch=6", "lr_text=1e-12",
                 "lr_other=2e-3", *TINY_RUN]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["fold"] == 1
    assert all(np.isfinite(e["val_spearman"]) for e in metrics["epochs"])
    best = max(metrics["epochs"], key=lambda e: e["val_spearman"])
    assert metrics["best"] == best
    assert tf.train.latest_checkpoint(out / "best").endswith(f"ckpt-{best['step']}")
    config = load_config(out)
    assert config.stage == "finetune" and config.pretrained == str(pretrain_run) and config.fold == 1
    assert config.model == load_config(pretrain_run).model
    assert (out / "tokenizer" / "vocab.txt").read_text() == (pretrain_run / "tokenizer" / "vocab.txt").read_text()
    pretrained = stage.build_stage_model(config, tf.distribute.get_strategy())
    checkpointing.restore_model(pretrained, pretrain_run / "final")
    finetuned = stage.build_stage_model(config, tf.distribute.get_strategy())
    checkpointing.restore_model(finetuned, out / "best")
    for a, b in zip(_text_values(finetuned), _text_values(pretrained)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "mix_asl", "--folds-dir", str(folds_dir), "--fold", "1", "--out", str(tmp_path / "x"),
              "--pretrained", str(pretrain_run), *TINY_RUN])
    assert exit_info.value.code == 2 and not (tmp_path / "x").exists()  # refused at set-up: nothing left behind
    assert "differs from the pretrain run" in capsys.readouterr().err


def test_finetune_without_pretrain_with_every_loss_term(synthetic_data, folds_dir, tmp_path):
    config = TrainConfig(model=ModelConfig.tiny("baseline"), stage="finetune", folds_dir=str(folds_dir), fold=0)
    config = apply_overrides(config, ["epochs=1", "steps_per_epoch=5", "target_transform=rank", "lr_other=2e-3",
                                      "finetune_losses=mse+0.5*kl+tag+0.5*lbpc+mae+cmse", *TINY_RUN])
    metrics = run_finetune(config, str(tmp_path), tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert len(metrics["epochs"]) == 1 and np.isfinite(metrics["epochs"][0]["val_spearman"])
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert {"mse", "kl", "tag", "lbpc", "mae", "cmse"} <= set(log[-1])
    saved = load_config(tmp_path)
    assert saved.tag_list == str(synthetic_data / "tag_list.txt")  # found through folds.json
    assert (tmp_path / "tokenizer" / "vocab.txt").is_file()  # built from the training titles


def test_target_transforms(folds_dir):
    from tfrecord_tools import folds

    train_files, _ = folds.fold_files(folds_dir, 0)
    sims = tf.constant([0.0, 0.5, 1.0])
    config = TrainConfig(stage="finetune")
    assert make_target_fn(config, train_files) is None
    sigmoid = make_target_fn(config.replace(target_transform="sigmoid", sigmoid_alpha=4.0), train_files)
    np.testing.assert_allclose(sigmoid(sims).numpy(), 1 / (1 + np.exp(-4.0 * sims.numpy())), rtol=1e-6)
    rank = make_target_fn(config.replace(target_transform="rank"), train_files)
    values = rank(sims).numpy()
    assert values[0] < values[1] < values[2] and 0.0 <= values[0] and values[2] <= 1.0


def test_epoch_metrics_keep_the_best_across_resumes(tmp_path):
    metrics = EpochMetrics(str(tmp_path), fold=2, model_name="mix", writes=True)
    assert metrics.record(1, 10, 0.5) and not metrics.record(2, 20, 0.4) and not metrics.record(3, 30, float("nan"))
    metrics.save()
    again = EpochMetrics(str(tmp_path), fold=2, model_name="mix", writes=True)
    assert again.best == 0.5 and [e["val_spearman"] for e in again.data["epochs"]] == [0.5, 0.4, None]
    assert again.record(2, 20, 0.7) and again.data["best"] == {"epoch": 2, "step": 20, "val_spearman": 0.7}
    assert [e["epoch"] for e in again.data["epochs"]] == [1, 2, 3]


def test_family_recipe_applies_before_user_overrides():
    from models.config import ModelConfig
    from train.config import TrainConfig
    from train.finetune import with_recipe

    single = TrainConfig(model=ModelConfig.tiny("single_stream"), stage="finetune")
    assert (with_recipe(single, []).target_transform, with_recipe(single, []).finetune_losses) == ("rank", "mse")
    assert with_recipe(single, ["target_transform=raw"]).target_transform == "raw"
    dual = with_recipe(TrainConfig(model=ModelConfig.tiny("dual_tower"), stage="finetune"), [])
    assert (dual.target_transform, dual.finetune_losses) == ("sigmoid", "tag+mse+mae")
    plain = TrainConfig(model=ModelConfig.tiny("uniter"), stage="finetune")
    assert with_recipe(plain, []) == plain


def test_finetune_may_change_only_how_the_wide_path_is_fitted():
    from train.finetune import FINETUNE_ONLY_MODEL_KEYS, check_pretrained_model

    pretrained = apply_overrides(TrainConfig(), ["model.wide.enabled=true"])
    fitted = apply_overrides(pretrained, ["model.wide.transductive=true", "model.wide.max_fit_videos=10",
                                          "model.wide.text_basis=lsa", "model.wide.frame_space=covariance",
                                          "model.wide.frame_words_power=3", "model.wide.frame_words_fit_videos=50",
                                          "model.wide.rare_words_max_df=0.01"]).model
    check_pretrained_model(pretrained, fitted, "PRE")  # the fit's settings: allowed
    assert "wide.transductive" in FINETUNE_ONLY_MODEL_KEYS
    for change in ("model.wide.enabled=false", "model.wide.frame_width=8", "model.embedding_dim=512",
                   "model.wide.frame_words=16", "model.wide.frame_words_width=8", "model.wide.rare_words=16"):
        changed = apply_overrides(pretrained, ["model.wide.transductive=true", change]).model
        with pytest.raises(ValueError, match=r"differs from the pretrain run PRE: " + change.split("=")[0][6:]):
            check_pretrained_model(pretrained, changed, "PRE")
