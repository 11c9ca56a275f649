"""FrameStandardizer and its transforms: identity until set, padding kept at zero, whitening of the
between-video covariance, statistics carried by checkpoints, used by every family's call."""
import numpy as np
import pytest
import tensorflow as tf

from models.base import example_features
from models.config import ModelConfig
from models.layers import FrameStandardizer, standardizing_transform
from models.registry import build_model


def test_identity_until_set_and_padding_stays_zero():
    layer = FrameStandardizer()
    frames = tf.random.normal([2, 4, 6]) + 3.0
    mask = tf.constant([[1, 1, 0, 0], [1, 1, 1, 1]], tf.float32)
    out = layer(frames, mask).numpy()
    np.testing.assert_allclose(out[0, :2], frames.numpy()[0, :2], atol=1e-6)
    assert np.all(out[0, 2:] == 0)
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    layer.set_statistics(np.full(6, 3.0), np.eye(6) * 2.0)
    out = layer(frames, mask).numpy()
    np.testing.assert_allclose(out[1], (frames.numpy()[1] - 3.0) * 2.0, atol=1e-5)
    assert np.all(out[0, 2:] == 0)


def test_signed_power_comes_first_and_statistics_are_of_the_powered_frames():
    from models.layers import signed_power

    layer = FrameStandardizer(power=0.5)
    frames = tf.random.normal([2, 3, 4], seed=1) * 4.0
    mask = tf.constant([[1, 1, 0], [1, 1, 1]], tf.float32)
    powered = np.sign(frames.numpy()) * np.sqrt(np.abs(frames.numpy()))
    np.testing.assert_allclose(signed_power(frames.numpy(), 0.5), powered)
    np.testing.assert_array_equal(signed_power(frames.numpy(), 1.0), frames.numpy())
    layer.set_statistics(np.full(4, 0.5), np.eye(4) * 2.0)
    out = layer(frames, mask).numpy()
    np.testing.assert_allclose(out[1], (powered[1] - 0.5) * 2.0, atol=1e-5)
    assert np.all(out[0, 2] == 0)
    assert FrameStandardizer.from_config(layer.get_config()).power == 0.5
    config = ModelConfig.tiny("uniter", num_tags=8, **{"frames.power": 0.5})
    assert build_model(config).frame_standardizer.power == 0.5
    with pytest.raises(ValueError, match=r"power must be in \(0, 1\], got 0.0"):
        ModelConfig.tiny("uniter", num_tags=8, **{"frames.power": 0.0})


def test_transforms():
    std = np.array([1.0, 2.0, 0.0, 4.0])
    diag = standardizing_transform("standardize", std)
    assert diag[1, 1] == pytest.approx(0.5) and np.isfinite(diag).all()
    rng = np.random.default_rng(0)
    # 3 directions of large between-video variance, 29 of small
    x = rng.normal(size=(4000, 3)) @ rng.normal(size=(3, 32)) * 5 + rng.normal(size=(4000, 32)) * 0.1
    zca = standardizing_transform("zca", x.std(0), np.cov(x.T), rank=8)
    white = (x - x.mean(0)) @ zca
    values = np.sort(np.linalg.eigvalsh(np.cov(white.T)))[::-1]
    assert values[:3] == pytest.approx(1.0, abs=0.05)  # the strong directions: unit variance
    assert values[3:].max() < 0.6  # the weak ones damped by the shrinkage
    np.testing.assert_allclose(zca, zca.T, atol=1e-8)
    with pytest.raises(ValueError, match="unknown frame normalisation"):
        standardizing_transform("pca", std)
    with pytest.raises(ValueError, match="need mean"):
        FrameStandardizer().set_statistics(np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="finite"):
        FrameStandardizer().set_statistics(np.array([0.0, np.nan]), np.eye(2))


def test_the_diagonal_path_gives_the_matmul_numbers_to_the_bit_and_refuses_off_diagonal_transforms():
    rng = np.random.default_rng(3)
    frames = tf.constant(rng.normal(size=(3, 5, 64)) * 7.0, tf.float32)
    mask = tf.constant([[1, 1, 1, 0, 0], [1] * 5, [1, 0, 0, 0, 0]], tf.float32)
    mean, scale = rng.normal(size=64), np.diag(1.0 / rng.uniform(0.1, 3.0, size=64))
    full, diagonal = FrameStandardizer(power=0.5), FrameStandardizer(power=0.5, diagonal=True)
    for layer in (full, diagonal):
        layer.set_statistics(mean, scale)
    np.testing.assert_array_equal(diagonal(frames, mask).numpy(), full(frames, mask).numpy())
    assert FrameStandardizer.from_config(diagonal.get_config()).diagonal is True
    with pytest.raises(ValueError, match="diagonal .* off-diagonal entries"):
        diagonal.set_statistics(mean, scale + 1e-3)
    full.set_statistics(mean, scale + 1e-3)  # the full transform takes any matrix
    # the model builds the diagonal kind for every normalisation but ZCA
    assert build_model(ModelConfig.tiny("uniter", num_tags=8, frame_normalization="standardize")
                       ).frame_standardizer.diagonal
    assert build_model(ModelConfig.tiny("uniter", num_tags=8)).frame_standardizer.diagonal
    assert not build_model(ModelConfig.tiny("uniter", num_tags=8, frame_normalization="zca")
                           ).frame_standardizer.diagonal


@pytest.mark.parametrize("name", ["uniter", "baseline"])
def test_family_call_uses_the_statistics_and_checkpoints_carry_them(name, tmp_path):
    config = ModelConfig.tiny(name, frame_dim=16, num_tags=8, max_frames=4, title_len=8)
    model = build_model(config)
    features = example_features(config, batch_size=2)
    before = model(features)["embedding"].numpy()
    model.frame_standardizer.set_statistics(np.full(16, 0.5), np.eye(16) * 3.0)
    after = model(features)["embedding"].numpy()
    assert not np.allclose(before, after)
    shifted = dict(features, frames=features["frames"] * 3.0)  # what the layer undoes
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    fresh = build_model(config)
    fresh(features)
    tf.train.Checkpoint(model=fresh).read(path).assert_existing_objects_matched()
    np.testing.assert_allclose(fresh(features)["embedding"].numpy(), after, atol=1e-5)
    np.testing.assert_allclose(fresh.frame_standardizer.transform.numpy(), np.eye(16) * 3.0)
    assert not np.allclose(fresh(shifted)["embedding"].numpy(), after)


def test_mean_frame_path_starts_as_the_whitened_mean_frame():
    from models.layers import MeanFramePath, whitening_projection

    rng = np.random.default_rng(0)
    means = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 12)) * 4 + rng.normal(size=(500, 12)) * 0.1
    kernel = whitening_projection(np.cov(means.T), rank=3, output_size=8)
    assert kernel.shape == (12, 8) and np.all(kernel[:, 3:] == 0)
    white = (means - means.mean(0)) @ kernel[:, :3]
    np.testing.assert_allclose(np.cov(white.T), np.eye(3) / 3, atol=0.02)  # unit variance / rank
    layer = MeanFramePath(8)
    frames = tf.constant(np.repeat((means[:4] - means.mean(0))[:, None, :], 3, axis=1), tf.float32)
    mask = tf.constant([[1, 1, 0]] * 4, tf.float32)
    layer.set_projection(kernel)
    out = layer(frames, mask).numpy()
    expected = white[:4] / np.linalg.norm(white[:4], axis=1, keepdims=True)
    np.testing.assert_allclose(out[:, :3], expected, atol=1e-4)
    assert MeanFramePath.from_config(layer.get_config()).output_size == 8
    with pytest.raises(ValueError, match="projection must be"):
        layer.set_projection(np.zeros((12, 4)))


def test_frame_path_config_and_family_round_trip():
    with pytest.raises(ValueError, match="path_rank > 0 needs normalization"):
        ModelConfig.tiny("uniter", frame_path_rank=4)
    config = ModelConfig.tiny("uniter", num_tags=8, frame_normalization="standardize", frame_path_rank=4)
    model = build_model(config)
    assert model.frame_path is not None and model.frame_path in model.layers
    assert type(model).from_config(model.get_config()).frame_path is not None
    out = model(example_features(config))["embedding"].numpy()
    # kernel zero at first: the embedding is the deep part, L2-normalised
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert build_model(ModelConfig.tiny("uniter", num_tags=8)).frame_path is None
