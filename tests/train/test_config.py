"""TrainConfig: key=value overrides (types, nested model fields, errors), validation, JSON round trip."""
import dataclasses
import json

import pytest

from models.config import ModelConfig
from train.config import (DATA_DERIVED, TrainConfig, apply_overrides, config_differences, load_config,
                          parse_loss_spec, parse_value, save_config)


def test_overrides_parse_each_type_and_nested_model_fields():
    config = apply_overrides(TrainConfig(), [
        "batch_size=64", "lr_text=1e-4", "xla=true", "mixed_precision=0", "decay=linear",
        "model.text_num_layers=2", "model.dropout=0.3", "model.pretrained_text_dir=none",
        "model.name=uniter", "finetune_losses=mse + 0.5*kl"])
    assert config.batch_size == 64 and isinstance(config.batch_size, int)
    assert config.lr_text == pytest.approx(1e-4) and isinstance(config.lr_text, float)
    assert config.xla is True and config.mixed_precision is False
    assert config.decay == "linear"
    assert config.model.text_num_layers == 2 and config.model.dropout == pytest.approx(0.3)
    assert config.model.pretrained_text_dir is None
    assert parse_value("ids", tuple[int, ...], "0,100,101") == parse_value("ids", tuple[int, ...], "[0, 100, 101]") == (0, 100, 101)
    assert config.model.name == "uniter"
    assert config.loss_terms == (("mse", 1.0), ("kl", 0.5))
    # the original is frozen and unchanged
    assert TrainConfig().batch_size == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 1


def test_unknown_keys_and_bad_values_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown config key 'bach_size'.*did you mean batch_size"):
        apply_overrides(TrainConfig(), ["bach_size=3"])
    with pytest.raises(ValueError, match=r"unknown config key 'model.text_num_layer'.*model.text_num_layers"):
        apply_overrides(TrainConfig(), ["model.text_num_layer=3"])
    with pytest.raises(ValueError, match=r"batch_size='eight': expected an integer"):
        apply_overrides(TrainConfig(), ["batch_size=eight"])
    with pytest.raises(ValueError, match=r"xla='maybe': expected true or false"):
        apply_overrides(TrainConfig(), ["xla=maybe"])
    with pytest.raises(ValueError, match="not key=value"):
        apply_overrides(TrainConfig(), ["batch_size"])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        apply_overrides(TrainConfig(), ["batch_size=0"])
    with pytest.raises(ValueError, match="decay must be one of"):
        apply_overrides(TrainConfig(), ["decay=step"])
    with pytest.raises(ValueError, match="TextEncoderConfig: hidden_size .* divisible"):
        apply_overrides(TrainConfig(), ["model.text_num_heads=5"])


@pytest.mark.parametrize("key", sorted(DATA_DERIVED))
def test_keys_the_data_sets_are_refused_as_overrides_with_why(key):
    with pytest.raises(ValueError, match=rf"override {key} is refused: a run sets it from the run's t"):
        apply_overrides(TrainConfig(), [f"{key}=3"])
    flat = "model." + key.split(".")[-1]  # the former flat name is refused too
    with pytest.raises(ValueError, match=rf"override {flat} is refused"):
        apply_overrides(TrainConfig(), [f"{flat}=3"])


def test_nested_and_flat_model_keys_set_the_same_field():
    nested = apply_overrides(TrainConfig(), ["model.text.num_layers=2", "model.tags.kind=asl",
                                             "model.nextvlad.cluster_size=16"])
    flat = apply_overrides(TrainConfig(), ["model.text_num_layers=2", "model.tag_loss=asl",
                                           "model.nextvlad_cluster_size=16"])
    assert nested == flat and (nested.model.text.num_layers, nested.model.tags.kind) == (2, "asl")
    with pytest.raises(ValueError, match=r"unknown config key 'model.text.num_layer'.*model.text.num_layers"):
        apply_overrides(TrainConfig(), ["model.text.num_layer=2"])


def test_loss_spec_parsing():
    assert parse_loss_spec("mse+0.5*kl+tag") == (("mse", 1.0), ("kl", 0.5), ("tag", 1.0))
    assert parse_loss_spec("lbpc") == (("lbpc", 1.0),)
    assert parse_loss_spec("2*mae + 0.1*lbpc") == (("mae", 2.0), ("lbpc", 0.1))
    for bad, message in [("mse+huber", "unknown term 'huber'"), ("mse+mse", "appears twice"),
                         ("x*mse", "is not a number"), ("mse+", "empty term"), ("-1*mse", "positive"), ("", "non-empty")]:
        with pytest.raises(ValueError, match=message):
            parse_loss_spec(bad)
    with pytest.raises(ValueError, match="unknown term"):
        TrainConfig(finetune_losses="mse+ce")


def test_json_round_trip_and_differences(tmp_path):
    config = apply_overrides(TrainConfig(model=ModelConfig.tiny("uniter")),
                             ["stage=finetune", "fold=3", "target_transform=rank", "model.tag_loss=asl"])
    path = save_config(config, tmp_path)
    assert path == str(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model"]["tags"]["kind"] == "asl" and data["fold"] == 3
    assert load_config(tmp_path) == config
    assert TrainConfig.from_json(config.to_json()) == config
    changed = config.replace(batch_size=7, model={"dropout": 0.0})
    assert config_differences(config, changed) == ["model.dropout: 0.1 -> 0.0", "batch_size: 32 -> 7"]
    nested_change = config.replace(model={"text_num_layers": 2})
    assert config_differences(config, nested_change) == ["model.text.num_layers: 1 -> 2"]
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({**config.to_dict(), "learning_rate": 1.0})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({**config.to_dict(), "batch_size": "x"}))
    with pytest.raises(ValueError, match=r"config.json: TrainConfig.batch_size must be an integer"):
        load_config(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="no training config"):
        load_config(tmp_path / "missing")


def test_stage_presets_are_the_model_config_presets():
    from models.config import PRESETS
    from train.stage import stage_parser

    parser = stage_parser("x", "x")
    args = parser.parse_args(["--model", "single_stream", "--out", "o", "--preset", "large"])
    assert args.preset == "large" and "large" in PRESETS
