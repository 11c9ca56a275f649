"""`frame_diff`: the difference mask (n real frames -> n - 1 differences), the motion branch,
training, padding, round trips."""
import numpy as np
import pytest
import tensorflow as tf

from models.base import example_features
from models.config import ModelConfig
from models.frame_diff import frame_differences
from models.registry import build_model, finetune_recipe
from tests.models.helpers import (FamilyHarness)

TINY = ModelConfig.tiny("frame_diff", frame_dim=64, num_tags=50)


@pytest.fixture(scope="module")
def harness():
    return FamilyHarness(TINY)


def test_difference_mask_and_values():
    frames = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3) ** 1.5
    frame_mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], np.float32)
    frames[0, 3:] = 99.0  # padding with content: must not leak
    diffs, diff_mask = frame_differences(tf.constant(frames), tf.constant(frame_mask))
    assert diffs.shape == (2, 4, 3)
    np.testing.assert_array_equal(diff_mask.numpy(), [[1, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(diffs.numpy()[0, :2], frames[0, 1:3] - frames[0, :2])
    assert not diffs.numpy()[0, 2:].any() and not diffs.numpy()[1].any()
    # n real frames -> n - 1 real differences, for every n
    for n in range(1, 6):
        mask = (np.arange(5) < n).astype(np.float32)[None]
        _, got = frame_differences(tf.zeros([1, 5, 3]), tf.constant(mask))
        assert float(tf.reduce_sum(got)) == n - 1


def test_frame_order_matters_through_the_differences(harness):
    """NeXtVLAD ignores frame order; the differences do not: reversing the real frames of a
    video leaves the frames branch as it was and changes the embedding."""
    model, features = harness.model, dict(harness.eval_features)
    frames, mask = features["frames"].numpy(), features["frame_mask"].numpy()
    reversed_frames = frames.copy()
    for i, n in enumerate(mask.sum(axis=1).astype(int)):
        reversed_frames[i, :n] = frames[i, :n][::-1]
    assert (mask.sum(axis=1) > 2).any()
    changed = dict(features, frames=tf.constant(reversed_frames))
    np.testing.assert_allclose(model.nextvlad(changed["frames"], frame_mask=mask).numpy(),
                               model.nextvlad(features["frames"], frame_mask=mask).numpy(),
                               rtol=1e-4, atol=1e-4)
    multi = mask.sum(axis=1) > 2  # videos with a changed difference sequence
    before = model(features)["embedding"].numpy()[multi]
    after = model(changed)["embedding"].numpy()[multi]
    assert not np.allclose(before, after, atol=1e-4)


def test_single_frame_videos_are_finite():
    config = TINY.replace(max_frames=4)
    model = build_model(config)
    features = example_features(config, 2)
    features["frame_mask"] = tf.constant([[1, 0, 0, 0], [1, 0, 0, 0]], tf.float32)
    features["frames"] = features["frames"] * features["frame_mask"][..., None]
    out = model(features)
    assert np.all(np.isfinite(out["embedding"].numpy()))
    assert np.isfinite(float(model.pretrain_losses(features)["tag"]))


def test_finetune_recipe():
    assert finetune_recipe("frame_diff") == {"finetune_losses": "tag+mse+mae",
                                             "target_transform": "sigmoid"}
