"""Layers: shapes, config round trips, one train step (shared helper), masking and maths."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import layers
from tests.models.helpers import check_layer

B, M, D = 3, 6, 16


@pytest.fixture(scope="module")
def frames_and_mask():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(B, M, D)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], np.float32)
    return tf.constant(frames * mask[..., None]), tf.constant(mask)


def test_nextvlad_standard_checks(frames_and_mask):
    frames, mask = frames_and_mask
    layer = layers.NeXtVLAD(cluster_size=4, groups=2, expansion=2, dropout=0.2, output_size=12)
    check_layer(layer, (frames,), (B, 12), kwargs={"frame_mask": mask})
    assert layer.get_config()["cluster_size"] == 4
    assert layer.centers.shape == (2 * D // 2, 4)


def test_nextvlad_ignores_padded_frames(frames_and_mask):
    frames, mask = frames_and_mask
    layer = layers.NeXtVLAD(cluster_size=4, groups=2, expansion=2, output_size=12)
    clean = layer(frames, frame_mask=mask, training=False)
    noisy = frames + tf.constant(np.random.default_rng(1).normal(
        scale=100.0, size=frames.shape).astype(np.float32)) * (1.0 - mask[..., None])
    np.testing.assert_allclose(layer(noisy, frame_mask=mask, training=False).numpy(),
                               clean.numpy(), rtol=1e-5, atol=1e-5)
    # without the mask the padded noise does change the output (the test can fail)
    assert not np.allclose(layer(noisy, training=False).numpy(), clean.numpy(), atol=1e-3)
    # and a shorter sequence holding the same real frames gives the same output
    np.testing.assert_allclose(
        layer(frames[1:2, :3], frame_mask=mask[1:2, :3], training=False).numpy(),
        clean.numpy()[1:2], rtol=1e-5, atol=1e-5)


def test_nextvlad_matches_a_numpy_reference(frames_and_mask):
    """Expansion, group attention, cluster softmax, residuals, intra-norm: recomputed by hand."""
    frames, mask = frames_and_mask
    layer = layers.NeXtVLAD(cluster_size=3, groups=2, expansion=2, dropout=0.0, output_size=5)
    out = layer(frames, frame_mask=mask, training=False).numpy()
    x = frames.numpy() @ layer.expand.kernel.numpy() + layer.expand.bias.numpy()  # [B,M,2D]
    att = 1 / (1 + np.exp(-(x @ layer.group_attention.kernel.numpy()
                            + layer.group_attention.bias.numpy())))  # [B,M,G]
    att *= mask.numpy()[..., None]
    logits = (x @ layer.cluster_logits.kernel.numpy() + layer.cluster_logits.bias.numpy())
    logits = logits.reshape(B, M, 2, 3)
    soft = np.exp(logits - logits.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    xg = x.reshape(B, M, 2, D)  # group g holds features g*D:(g+1)*D
    centers = layer.centers.numpy()  # [D, K]
    vlad = np.zeros((B, D, 3))
    for b in range(B):
        for m in range(M):
            for g in range(2):
                for k in range(3):
                    vlad[b, :, k] += att[b, m, g] * soft[b, m, g, k] * (xg[b, m, g] - centers[:, k])
    vlad /= np.maximum(np.linalg.norm(vlad, axis=1, keepdims=True), 1e-6)
    flat = vlad.reshape(B, -1)
    proj = flat @ layer.project.kernel.numpy() + layer.project.bias.numpy()
    bn = layer.norm
    expected = (bn.gamma.numpy() * (proj - bn.moving_mean.numpy())
                / np.sqrt(bn.moving_variance.numpy() + bn.epsilon) + bn.beta.numpy())
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_nextvlad_rejects_indivisible_groups():
    with pytest.raises(ValueError, match="divisible by groups"):
        layers.NeXtVLAD(groups=3, expansion=2)(tf.zeros([1, 2, 5]))


def test_se_gate_and_concat_dense_se():
    x = tf.random.stateless_normal([4, 16], seed=[1, 2])
    gate = layers.SEGate(reduction=4)
    out = check_layer(gate, (x,), (4, 16))
    ratio = out.numpy() / x.numpy()
    assert np.all((ratio > 0) & (ratio < 1))  # a sigmoid gate scales each channel into (0, 1)
    fusion = layers.ConcatDenseSE(hidden_size=8, se_reduction=4, dropout=0.1)
    y = tf.random.stateless_normal([4, 5], seed=[3, 4])
    check_layer(fusion, ([x, y],), (4, 8))
    assert fusion.fusion.kernel.shape == (21, 8)


def test_mixture_gate_is_a_convex_combination():
    rng = np.random.default_rng(2)
    gate_in = [tf.constant(rng.normal(size=(5, 6)), tf.float32),
               tf.constant(rng.normal(size=(5, 3)), tf.float32)]
    experts = [tf.constant(rng.normal(size=(5, 4)), tf.float32) for _ in range(3)]
    layer = layers.MixtureGate(num_experts=3)
    mixture, weights = layer(gate_in, experts, training=False)
    assert mixture.shape == (5, 4) and weights.shape == (5, 3)
    np.testing.assert_allclose(weights.numpy().sum(axis=1), 1.0, rtol=1e-6)
    expected = np.einsum("be,bed->bd", weights.numpy(), np.stack([e.numpy() for e in experts], 1))
    np.testing.assert_allclose(mixture.numpy(), expected, rtol=1e-5, atol=1e-6)
    clone = layers.MixtureGate.from_config(layer.get_config())
    clone(gate_in, experts)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(gate_in, experts, training=False)[0].numpy(),
                               mixture.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="expects 3 experts"):
        layer(gate_in, experts[:2])


def test_masked_mean_pooling(frames_and_mask):
    frames, mask = frames_and_mask
    pooled = layers.MaskedMeanPooling()(frames, mask=mask).numpy()
    np.testing.assert_allclose(pooled[1], frames.numpy()[1, :3].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(pooled[2], frames.numpy()[2, 0], rtol=1e-6)
    empty = layers.MaskedMeanPooling()(frames, mask=tf.zeros([B, M])).numpy()
    np.testing.assert_array_equal(empty, 0.0)


def test_frame_projection_and_tied_mlm_head():
    frames = tf.random.stateless_normal([2, 5, 12], seed=[5, 6])
    out = check_layer(layers.FrameProjection(8), (frames,), (2, 5, 8))
    np.testing.assert_allclose(out.numpy().mean(-1), 0.0, atol=1e-5)  # LayerNorm'd (γ=1, β=0)
    embeddings = tf.Variable(tf.random.stateless_normal([11, 8], seed=[7, 8]))
    head = layers.TiedMLMHead(vocab_size=11, embedding_size=8)
    hidden = tf.random.stateless_normal([2, 4, 6], seed=[9, 9])
    check_layer(head, (hidden, embeddings), (2, 4, 11))
    logits = head(hidden, embeddings)
    transformed = head.norm(head.transform(hidden)).numpy()
    np.testing.assert_allclose(logits.numpy(), transformed @ embeddings.numpy().T
                               + head.bias.numpy(), rtol=1e-5, atol=1e-5)
    assert all(w is not embeddings for w in head.weights)  # the matrix stays its owner's


def test_prior_bias_initializer():
    init = layers.prior_bias_initializer(10000, 5.0)
    value = float(init([1])[0])
    assert 1 / (1 + math.exp(-value)) == pytest.approx(5 / 10000)
    assert float(layers.prior_bias_initializer(10, 0.0)([1])[0]) == 0.0


def test_layers_compute_in_float16_under_mixed_precision(frames_and_mask):
    frames, mask = frames_and_mask
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = layers.NeXtVLAD(cluster_size=4, groups=2, expansion=2, output_size=12)
        out = layer(frames, frame_mask=mask, training=True)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert out.dtype == tf.float16 and layer.centers.dtype == tf.float32
    assert np.all(np.isfinite(out.numpy()))
