"""`dual_tower`: the baseline tower under its own name, its finetune recipe, training and
round trips."""
import pytest

from models.baseline import BaselineModel
from models.config import ModelConfig
from models.registry import build_model, finetune_recipe
from tests.models.helpers import (FamilyHarness, assert_same_outputs)

TINY = ModelConfig.tiny("dual_tower", frame_dim=64, num_tags=50)


@pytest.fixture(scope="module")
def harness():
    return FamilyHarness(TINY)


def test_is_the_baseline_tower(harness):
    """Same constructor arguments and weights as a baseline -> the same outputs."""
    features = harness.eval_features
    baseline = build_model(TINY.replace(name="baseline"))
    assert type(baseline) is BaselineModel
    baseline.set_weights(harness.model.get_weights())
    assert_same_outputs(baseline(features), harness.model(features), atol=1e-6)
    # ... and the same pretraining loss
    got = harness.model.pretrain_losses(features, training=False)
    assert float(got["tag"]) == pytest.approx(
        float(baseline.pretrain_losses(features, training=False)["tag"]), rel=1e-6)


def test_finetune_recipe_is_runnable_by_the_trainer():
    from train.config import TARGET_TRANSFORMS, parse_loss_spec

    recipe = finetune_recipe("dual_tower")
    assert recipe == {"finetune_losses": "tag+mse+mae", "target_transform": "sigmoid"}
    assert parse_loss_spec(recipe["finetune_losses"]) == (("tag", 1.0), ("mse", 1.0),
                                                          ("mae", 1.0))
    for family in ("single_stream", "dual_tower", "frame_diff", "cross_modal"):
        recipe = finetune_recipe(family)
        assert parse_loss_spec(recipe["finetune_losses"])
        assert recipe["target_transform"] in TARGET_TRANSFORMS
    assert finetune_recipe("baseline") == {}
    with pytest.raises(ValueError, match="unknown model name 'nope'"):
        finetune_recipe("nope")
