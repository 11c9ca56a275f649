"""Losses against hand / numpy computations, finiteness at extreme logits, masking statistics."""
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from models import losses


def _np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


# ----------------------------------------------------------------------------- tag losses
def test_tag_bce_hand_value_sum_and_mean():
    labels = [[1.0, 0.0], [0.0, 1.0]]
    logits = [[0.0, 0.0], [math.log(3.0), -math.log(3.0)]]
    # video 1: 2·log 2; video 2: -log(1-3/4) - log(1/4) = 2·log 4
    per_video = [2 * math.log(2.0), 2 * math.log(4.0)]
    assert float(losses.tag_bce(labels, logits)) == pytest.approx(np.mean(per_video), rel=1e-6)
    assert float(losses.tag_bce(labels, logits, reduction="mean")) == pytest.approx(
        np.mean(per_video) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        losses.tag_bce(labels, logits, reduction="max")


def test_asl_matches_numpy_formula_and_reduces_to_bce():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4, 7))
    labels = (rng.random((4, 7)) < 0.3).astype(np.float32)
    p = scipy.special.expit(logits)
    for gamma_neg, gamma_pos, margin in [(1.0, 0.0, 0.0), (4.0, 1.0, 0.05), (2.0, 0.5, 0.2)]:
        pm = np.maximum(p - margin, 0.0)
        per_tag = -(labels * (1 - p) ** gamma_pos * np.log(p)
                    + (1 - labels) * pm ** gamma_neg * np.log(1 - pm))
        expected = per_tag.sum(axis=1).mean()
        got = float(losses.asl_loss(labels, logits, gamma_neg, gamma_pos, margin))
        assert got == pytest.approx(expected, rel=1e-5)
    # γ = 0 and no margin: plain BCE
    assert float(losses.asl_loss(labels, logits, 0.0, 0.0)) == pytest.approx(
        float(losses.tag_bce(labels, logits)), rel=1e-5)


@pytest.mark.parametrize("margin", [0.0, 0.05])
def test_asl_is_finite_at_extreme_logits(margin):
    logits = tf.constant([[1e4, -1e4, 1e4, -1e4]])
    labels = tf.constant([[1.0, 1.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = losses.asl_loss(labels, logits, gamma_neg=1.0, gamma_pos=0.0, margin=margin)
    grad = tape.gradient(loss, logits)
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(grad.numpy()))
    # the confidently wrong tags dominate: a positive at -1e4 costs 1e4
    assert float(loss) >= 1e4 - 1


def test_tag_loss_dispatch():
    labels, logits = [[1.0, 0.0]], [[0.3, -0.2]]
    assert float(losses.tag_loss(labels, logits, "bce")) == float(losses.tag_bce(labels, logits))
    assert float(losses.tag_loss(labels, logits, "asl", gamma_neg=2.0)) == float(
        losses.asl_loss(labels, logits, gamma_neg=2.0))
    with pytest.raises(ValueError, match="'bce' or 'asl'"):
        losses.tag_loss(labels, logits, "focal")


# ----------------------------------------------------------------------------- KL / InfoNCE
def test_kl_divergence_matches_numpy_with_temperature_squared():
    rng = np.random.default_rng(1)
    teacher, student = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    t = 2.0
    p = scipy.special.softmax(teacher / t, axis=1)
    q = scipy.special.softmax(student / t, axis=1)
    expected = (p * np.log(p / q)).sum(axis=1).mean() * t * t
    assert float(losses.kl_divergence(teacher, student, t)) == pytest.approx(expected, rel=1e-5)
    assert float(losses.kl_divergence(teacher, teacher, t)) == pytest.approx(0.0, abs=1e-6)


def test_info_nce_equals_numpy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    tau = 0.07
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = an @ bn.T / tau
    row = -np.diag(scipy.special.log_softmax(logits, axis=1)).mean()
    col = -np.diag(scipy.special.log_softmax(logits, axis=0)).mean()
    assert float(losses.info_nce(a, b, tau)) == pytest.approx((row + col) / 2, rel=1e-4)
    # perfectly aligned, well separated pairs -> near zero
    eye = np.eye(4) * 5
    assert float(losses.info_nce(eye, eye, tau)) < 1e-3


# ----------------------------------------------------------------------------- MLM
def test_mask_tokens_statistics_and_rules():
    batch, length, vocab, mask_id = 64, 32, 1000, 4
    specials = (0, 1, 2, 3, 4)
    rng = np.random.default_rng(3)
    ids = rng.integers(5, vocab, size=(batch, length)).astype(np.int32)
    ids[:, 0] = 2  # [CLS]
    lengths = rng.integers(10, length + 1, size=batch)
    attention = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(attention == 1, ids, 0)
    masked, labels, weights = losses.mask_tokens(ids, attention, vocab, mask_id, specials,
                                                 prob=0.15, seed=[7, 11])
    masked, labels, weights = masked.numpy(), labels.numpy(), weights.numpy()
    np.testing.assert_array_equal(labels, ids)
    chosen = weights > 0
    assert not chosen[attention == 0].any(), "padding must never be chosen"
    assert not chosen[:, 0].any(), "special tokens must never be chosen"
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])  # unchosen untouched
    candidates = (attention == 1).sum() - batch
    assert chosen.sum() / candidates == pytest.approx(0.15, abs=0.03)
    share_mask = (masked[chosen] == mask_id).mean()
    share_kept = (masked[chosen] == ids[chosen]).mean()
    assert share_mask == pytest.approx(0.8, abs=0.06)
    assert share_kept == pytest.approx(0.1, abs=0.05)
    assert masked.max() < vocab and masked.min() >= 0
    # same seed, same draw; another seed, another draw
    again = losses.mask_tokens(ids, attention, vocab, mask_id, specials, seed=[7, 11])[0]
    other = losses.mask_tokens(ids, attention, vocab, mask_id, specials, seed=[8, 11])[0]
    np.testing.assert_array_equal(again.numpy(), masked)
    assert not np.array_equal(other.numpy(), masked)
    generator = tf.random.Generator.from_seed(5)
    assert losses.mask_tokens(ids, attention, vocab, mask_id, specials,
                              generator=generator)[2].numpy().sum() > 0


def test_mlm_loss_only_counts_weighted_positions():
    logits = np.zeros((1, 3, 4), np.float32)
    logits[0, 0, 2] = math.log(3.0)  # p(label 2) = 3/6 at position 0
    labels = np.array([[2, 1, 0]])
    weights = np.array([[1.0, 0.0, 1.0]])
    expected = (-math.log(0.5) + -math.log(1 / 4)) / 2
    assert float(losses.mlm_loss(labels, logits, weights)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.mlm_loss(labels, logits, np.zeros((1, 3)))) == 0.0


def test_masked_frame_nce_matches_numpy():
    rng = np.random.default_rng(4)
    pred, true = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    frame_mask = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    weights = np.array([[1, 0, 0], [0, 1, 1]], np.float32)
    logits = pred.reshape(6, 4) @ true.reshape(6, 4).T / 0.5
    logits[:, frame_mask.reshape(-1) == 0] = -1e9
    ce = -np.diag(scipy.special.log_softmax(logits, axis=1))
    expected = (ce * weights.reshape(-1)).sum() / weights.sum()
    got = losses.masked_frame_nce(pred, true, weights, frame_mask, temperature=0.5)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    chosen = losses.mask_frames(frame_mask, prob=0.5, seed=[1, 2]).numpy()
    assert set(np.unique(chosen)) <= {0.0, 1.0} and not chosen[frame_mask == 0].any()


# ----------------------------------------------------------------------------- finetune losses
def test_cosine_mse_mae_hand_values():
    cos = losses.cosine_similarity([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]],
                                   [[3.0, 0.0], [-1.0, -1.0], [0.0, 5.0]])
    np.testing.assert_allclose(cos.numpy(), [1.0, -1.0, 0.0], atol=1e-6)
    target = [0.5, 0.0, 0.25]
    assert float(losses.mse_loss(cos, target)) == pytest.approx((0.25 + 1 + 0.0625) / 3)
    assert float(losses.mae_loss(cos, target)) == pytest.approx((0.5 + 1 + 0.25) / 3)


def test_centred_mse_is_blind_to_a_shift_of_the_cosines_only():
    cos, target = np.array([0.2, 0.9, 0.5, -0.2]), np.array([1.0, 0.0, 0.6, 0.1])
    residual = (cos - cos.mean()) - (target - target.mean())
    assert float(losses.centred_mse_loss(cos, target)) == pytest.approx((residual ** 2).mean(), rel=1e-5)
    assert float(losses.centred_mse_loss(cos + 0.7, target)) == pytest.approx((residual ** 2).mean(), rel=1e-5)
    assert float(losses.centred_mse_loss(target - 0.3, target)) == pytest.approx(0.0, abs=1e-7)
    # the spread still counts, unlike the level
    assert float(losses.centred_mse_loss(2 * target, target)) == pytest.approx(target.var(), rel=1e-5)


def test_batch_kl_loss_matches_numpy():
    cos, target, t = np.array([0.2, 0.9, 0.5, -0.2]), np.array([1.0, 0.0, 0.6, 0.1]), 0.1
    p, q = scipy.special.softmax(target / t), scipy.special.softmax(cos / t)
    expected = (p * np.log(p / q)).sum()
    assert expected > 1.0
    assert float(losses.batch_kl_loss(cos, target, t)) == pytest.approx(expected, rel=1e-5)
    assert float(losses.batch_kl_loss(target, target, t)) == pytest.approx(0.0, abs=1e-6)


def test_lbpc_loss_matches_numpy():
    cos, target = np.array([0.9, 0.1, 0.5, -0.2, 0.3]), np.array([1.0, 0.0, 0.6, 0.1, 0.2])
    s = scipy.special.softmax(cos / 0.2)
    expected = 1.0 - scipy.stats.pearsonr(s, target)[0]
    assert float(losses.lbpc_loss(cos, target, tau=0.2)) == pytest.approx(expected, rel=1e-4)


# ----------------------------------------------------------------------------- target transforms
def test_rank_normalise_maps_scores_to_average_ranks():
    scores = [0.0, 0.0, 0.5, 1.0, 0.25]
    # ranks (average ties): 1.5, 1.5, 4, 5, 3 -> (r-1)/4
    normaliser = losses.rank_normalise(scores)
    np.testing.assert_allclose(normaliser([0.0, 0.25, 0.5, 1.0]), [0.125, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(normaliser([0.375, -1.0, 2.0]), [0.625, 0.125, 1.0])
    np.testing.assert_allclose(normaliser.tf_call(tf.constant([[0.0, 0.375], [1.0, 2.0]])).numpy(),
                               [[0.125, 0.625], [1.0, 1.0]], atol=1e-6)
    # monotone: Spearman against the raw scores is 1
    grid = np.linspace(0, 1, 21)
    assert scipy.stats.spearmanr(grid, normaliser(grid))[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least one"):
        losses.rank_normalise([])
    with pytest.raises(ValueError, match="finite"):
        losses.rank_normalise([0.1, float("nan")])


def test_sigmoid_transform_numpy_and_tensor():
    np.testing.assert_allclose(losses.sigmoid_transform(np.array([0.0, 1.0]), 2.0),
                               [0.5, scipy.special.expit(2.0)], rtol=1e-6)
    got = losses.sigmoid_transform(tf.constant([0.5]), 10.0, center=0.5)
    assert isinstance(got, tf.Tensor) and float(got[0]) == pytest.approx(0.5)
