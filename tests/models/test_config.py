"""ModelConfig: nested sections, defaults, presets, JSON round trip, the flat layout of older runs, clear errors."""
import dataclasses
import json

import pytest

from models.config import PRESETS, ModelConfig
from tfrecord_tools import schema


def test_defaults_follow_the_official_sizes():
    config = ModelConfig()
    assert (config.frame_dim, config.max_frames, config.title_len, config.num_tags,
            config.embedding_dim) == (schema.FRAME_DIM, schema.MAX_FRAMES, schema.TITLE_LEN,
                                      schema.NUM_TAGS, 256)
    assert (config.nextvlad_cluster_size, config.nextvlad_groups, config.nextvlad_expansion,
            config.nextvlad_dropout, config.nextvlad_output_size) == (64, 8, 2, 0.2, 1024)
    assert (config.asl_gamma_neg, config.asl_gamma_pos, config.kl_temperature,
            config.infonce_temperature, config.mlm_probability) == (1.0, 0.0, 2.0, 0.07, 0.15)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_and_json_round_trip(preset):
    config = ModelConfig.preset(preset, "uniter", num_tags=50)
    assert config.name == "uniter" and config.num_tags == 50
    text = config.to_json()
    assert isinstance(json.loads(text)["text"]["special_token_ids"], list)
    assert ModelConfig.from_json(text) == config
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_tiny_and_small_sizes():
    tiny, small = ModelConfig.tiny(), ModelConfig.small()
    assert (tiny.text_hidden_size, tiny.nextvlad_cluster_size, tiny.nextvlad_output_size) == (
        32, 8, 64)
    assert (small.text_num_layers, small.text_hidden_size, small.nextvlad_cluster_size) == (
        2, 128, 64)


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown ModelConfig key\(s\) \['colour'\]"):
        ModelConfig.from_dict({"name": "baseline", "colour": "red"})
    with pytest.raises(ValueError, match="unknown ModelConfig key"):
        ModelConfig().replace(colour="red")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ModelConfig.preset("huge")


@pytest.mark.parametrize("changes, message", [
    ({"text_encoder": "gpt"}, "invalid TextEncoderConfig: kind must be one of"),
    ({"tag_loss": "focal"}, "invalid TagLossConfig: kind must be one of"),
    ({"tag_reduction": "max"}, "reduction must be one of"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"num_tags": 0}, "num_tags must be > 0"),
    ({"kl_weight": -1.0}, "invalid MixNeXtVLADConfig: kl_weight must be >= 0"),
    ({"mlm_probability": 0.0}, "mlm_probability must be in"),
    ({"text_hidden_size": 30, "text_num_heads": 4}, "hidden_size \\(30\\) must be divisible by num_heads"),
    ({"nextvlad_groups": 5}, "divisible by nextvlad.groups"),
    ({"text_max_position": 16}, "text.max_position \\(16\\) must be >= title_len"),
    ({"vocab_size": 50}, "mask_token_id must be in \\[0, vocab_size=50\\)"),
    ({"mask_token_id": 7}, "mask_token_id \\(7\\) must be one of special_token_ids"),
    ({"pretrained_text_dir": ""}, "pretrained_dir must be None or a directory"),
    ({"cross_modal": {"video_hidden_size": 30, "video_num_heads": 4}}, "divisible by video_num_heads"),
])
def test_validation_messages(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig().replace(**changes)


def test_types_are_checked_and_coerced():
    with pytest.raises(TypeError, match="ModelConfig.num_tags must be an integer"):
        ModelConfig(num_tags="50")
    with pytest.raises(TypeError, match="ModelConfig.num_tags must be an integer"):
        ModelConfig(num_tags=True)
    with pytest.raises(TypeError, match="TextEncoderConfig.special_token_ids must be a list of integers"):
        ModelConfig(special_token_ids=[0, "x"])
    config = ModelConfig(dropout=0, special_token_ids=[0, 100, 101, 102, 103])
    assert isinstance(config.dropout, float) and config.special_token_ids == (0, 100, 101, 102, 103)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dropout = 0.5


def test_sections_nest_and_flat_names_still_work():
    config = ModelConfig.tiny("uniter", tag_loss="asl", text_encoder="roformer")
    assert (config.tags.kind, config.text.kind, config.text.hidden_size) == ("asl", "roformer", 32)
    assert (config.tag_loss, config.text_encoder, config.vocab_size) == ("asl", "roformer", 128)  # read-through
    data = config.to_dict()
    assert set(data) >= {"text", "tags", "nextvlad", "mix_nextvlad", "uniter", "single_stream", "cross_modal"}
    assert data["tags"]["kind"] == "asl" and "tag_loss" not in data
    # replace: flat, dotted, a section's dict of changes, or a whole section
    assert config.replace(text_num_layers=3) == config.replace(**{"text.num_layers": 3}) \
        == config.replace(text={"num_layers": 3}) == config.replace(text=config.text.replace(num_layers=3))
    with pytest.raises(ValueError, match="unknown TextEncoderConfig key"):
        config.replace(text={"layers": 3})
    with pytest.raises(AttributeError):
        _ = config.colour


def test_a_flat_config_json_of_an_older_run_loads(tmp_path):
    """A run directory written before the config was nested keeps working."""
    from train.config import TrainConfig, load_config

    nested = ModelConfig.tiny("mix_nextvlad", num_tags=50, tag_loss="asl")
    flat = {"name": "mix_nextvlad", "frame_dim": 1536, "max_frames": 32, "title_len": 32, "num_tags": 50,
            "embedding_dim": 256, "dropout": 0.1, "infonce_temperature": 0.07}
    from models.config import LEGACY_KEYS
    flat.update({key: getattr(nested, key) for key in LEGACY_KEYS})
    flat["special_token_ids"] = list(flat["special_token_ids"])
    assert ModelConfig.from_dict(flat) == nested
    run = tmp_path / "run"
    run.mkdir()
    train = TrainConfig(model=nested, stage="finetune").to_dict()
    (run / "config.json").write_text(json.dumps(dict(train, model=flat)))
    assert load_config(run).model == nested
