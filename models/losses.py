"""Losses and target transforms shared by every family and by the trainer.

All TF losses are pure functions that cast their inputs to float32 (safe under a mixed_float16
policy) and return a scalar averaged over the *local* batch (the trainer divides by the number of
replicas). Conventions:
  - tag losses (`tag_bce`, `asl_loss`): per video, sum (default) or mean over tags; then mean over
    the batch. Summing matches the multi-label likelihood and ASL's definition; "mean" matches
    `keras.losses.BinaryCrossentropy` as the official baseline used it (10,000 times smaller);
  - `kl_divergence`: Hinton distillation, KL(softmax(teacher/T) ‖ softmax(student/T)) · T²;
  - `info_nce`: symmetric in-batch InfoNCE on L2-normalised vectors (negatives: the local batch);
  - MLM: `mask_tokens` (BERT's 80/10/10 rule) + `mlm_loss` over the chosen positions only;
  - MFM: `mask_frames` + `masked_frame_nce` (predicted vs. true frame, other frames as negatives);
  - finetune losses on the cosine of a pair vs. its (transformed) label: `mse_loss`, `mae_loss`,
    `batch_kl_loss`, `lbpc_loss`; target transforms `rank_normalise`, `sigmoid_transform`.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import scipy.special
import scipy.stats
import tensorflow as tf

TAG_REDUCTIONS = ("sum", "mean")


def _f32(x) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def _reduce_tags(per_tag: tf.Tensor, reduction: str) -> tf.Tensor:
    if reduction == "sum":
        per_video = tf.reduce_sum(per_tag, axis=-1)
    elif reduction == "mean":
        per_video = tf.reduce_mean(per_tag, axis=-1)
    else:
        raise ValueError(f"tag loss reduction must be one of {TAG_REDUCTIONS}, got {reduction!r}")
    return tf.reduce_mean(per_video)


# --------------------------------------------------------------------------- tag losses
def tag_bce(labels, logits, reduction: str = "sum") -> tf.Tensor:
    """Multi-label binary cross-entropy from logits: sum/mean over tags, mean over the batch."""
    labels, logits = _f32(labels), _f32(logits)
    per_tag = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return _reduce_tags(per_tag, reduction)


def asl_loss(labels, logits, gamma_neg: float = 1.0, gamma_pos: float = 0.0,
             margin: float = 0.0, reduction: str = "sum") -> tf.Tensor:
    """Asymmetric loss (Ridnik et al., 2021) for multi-label tags, computed in log space.

    Per tag: -[y (1-p)^γ+ log p + (1-y) p_m^γ- log(1-p_m)], p = sigmoid(logit),
    p_m = max(p - margin, 0). log p and log(1-p) come from log_sigmoid and the focusing weights
    from exp(γ·log_sigmoid), so logits of ±1e4 give finite losses and gradients.
    """
    labels, logits = _f32(labels), _f32(logits)
    log_p = tf.math.log_sigmoid(logits)
    log_not_p = tf.math.log_sigmoid(-logits)
    positive = tf.exp(gamma_pos * log_not_p) * log_p
    if margin > 0.0:
        shifted = tf.nn.sigmoid(logits) - margin
        clipped = tf.maximum(shifted, 0.0)  # p_m
        weight_neg = tf.where(shifted > 0.0,
                              tf.pow(tf.where(shifted > 0.0, clipped, 1.0), gamma_neg), 0.0)
        # 1 - p_m = min(1 - p + margin, 1) >= margin > 0: the log is finite
        log_not_pm = tf.math.log(tf.minimum(tf.nn.sigmoid(-logits) + margin, 1.0))
    else:
        weight_neg = tf.exp(gamma_neg * log_p)
        log_not_pm = log_not_p
    negative = weight_neg * log_not_pm
    per_tag = -(labels * positive + (1.0 - labels) * negative)
    return _reduce_tags(per_tag, reduction)


def tag_loss(labels, logits, kind: str = "bce", reduction: str = "sum", gamma_neg: float = 1.0,
             gamma_pos: float = 0.0, margin: float = 0.0) -> tf.Tensor:
    """`tag_bce` or `asl_loss` by ``kind`` ("bce" | "asl")."""
    if kind == "bce":
        return tag_bce(labels, logits, reduction)
    if kind == "asl":
        return asl_loss(labels, logits, gamma_neg, gamma_pos, margin, reduction)
    raise ValueError(f"tag loss kind must be 'bce' or 'asl', got {kind!r}")


# --------------------------------------------------------------------------- distillation / contrast
def kl_divergence(teacher_logits, student_logits, temperature: float = 2.0) -> tf.Tensor:
    """T² · mean over the batch of KL(softmax(teacher/T) ‖ softmax(student/T)) over the last axis.

    Gradients flow into both arguments; wrap the teacher in `tf.stop_gradient` to distil one way.
    """
    t = _f32(teacher_logits) / temperature
    s = _f32(student_logits) / temperature
    log_p = tf.nn.log_softmax(t, axis=-1)
    log_q = tf.nn.log_softmax(s, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
    return tf.reduce_mean(kl) * (temperature ** 2)


def info_nce(a, b, temperature: float = 0.07) -> tf.Tensor:
    """Symmetric InfoNCE: rows i of ``a`` and ``b`` are positives, other rows of the batch negatives.

    (CE(a·bᵀ/τ, diag) + CE(b·aᵀ/τ, diag)) / 2 on L2-normalised vectors, mean over the batch.
    """
    a = tf.math.l2_normalize(_f32(a), axis=-1)
    b = tf.math.l2_normalize(_f32(b), axis=-1)
    logits = tf.matmul(a, b, transpose_b=True) / temperature
    labels = tf.range(tf.shape(logits)[0])
    a_to_b = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    b_to_a = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(logits))
    return 0.5 * (tf.reduce_mean(a_to_b) + tf.reduce_mean(b_to_a))


# --------------------------------------------------------------------------- random draws
def _uniform_draws(shape, count: int, seed=None, generator: tf.random.Generator | None = None):
    """``count`` independent uniform [0, 1) tensors: stateless from ``seed`` (shape [2]),
    from ``generator``, or from TF's global random state."""
    if seed is not None:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count)
        return [tf.random.stateless_uniform(shape, seed=seeds[i]) for i in range(count)]
    if generator is not None:
        return [generator.uniform(shape) for _ in range(count)]
    return [tf.random.uniform(shape) for _ in range(count)]


# --------------------------------------------------------------------------- masked language model
def mask_tokens(input_ids, attention_mask, vocab_size: int, mask_id: int,
                special_ids: Iterable[int], prob: float = 0.15, seed=None,
                generator: tf.random.Generator | None = None):
    """BERT masking: choose each real, non-special token with probability ``prob``; of those
    80% become ``mask_id``, 10% a uniformly random token id, 10% stay unchanged.

    Returns (masked_ids int32 [B, L], labels int32 [B, L] = the original ids,
    weights float32 [B, L] = 1.0 at chosen positions). ``seed`` (two integers) makes the draw
    deterministic (stateless); else ``generator`` or TF's global random state is used.
    """
    ids = tf.cast(tf.convert_to_tensor(input_ids), tf.int32)
    special = tf.constant(sorted(set(int(i) for i in special_ids)) or [-1], dtype=tf.int32)
    is_special = tf.reduce_any(ids[..., None] == special, axis=-1)
    candidate = tf.logical_and(tf.cast(attention_mask, tf.bool), tf.logical_not(is_special))
    choose, action, token = _uniform_draws(tf.shape(ids), 3, seed, generator)
    chosen = tf.logical_and(candidate, choose < prob)
    to_mask = tf.logical_and(chosen, action < 0.8)
    to_random = tf.logical_and(chosen, tf.logical_and(action >= 0.8, action < 0.9))
    random_ids = tf.minimum(tf.cast(token * vocab_size, tf.int32), vocab_size - 1)
    masked = tf.where(to_mask, tf.fill(tf.shape(ids), tf.constant(mask_id, tf.int32)),
                      tf.where(to_random, random_ids, ids))
    return masked, ids, tf.cast(chosen, tf.float32)


def mlm_loss(labels, logits, weights) -> tf.Tensor:
    """Token cross-entropy averaged over the positions where ``weights`` is 1 (0 when none)."""
    weights = _f32(weights)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=_f32(logits))
    return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


# --------------------------------------------------------------------------- masked frame model
def mask_frames(frame_mask, prob: float = 0.15, seed=None,
                generator: tf.random.Generator | None = None) -> tf.Tensor:
    """float32 [B, M]: 1.0 where a real frame (mask 1) is chosen for masking, w.p. ``prob``."""
    frame_mask = _f32(frame_mask)
    (draw,) = _uniform_draws(tf.shape(frame_mask), 1, seed, generator)
    return tf.cast(draw < prob, tf.float32) * frame_mask


def masked_frame_nce(predicted, target, weights, frame_mask=None,
                     temperature: float = 1.0) -> tf.Tensor:
    """Masked-frame NCE: each chosen position's prediction must pick its own true frame among
    all real frames of the local batch.

    predicted, target [B, M, D]; weights [B, M] (1 at masked positions); frame_mask [B, M]
    (which frames may serve as negatives; default all). Scores are dot products / temperature;
    the cross-entropy is averaged over the chosen positions (0 when none).
    """
    predicted, target, weights = _f32(predicted), _f32(target), _f32(weights)
    dim = tf.shape(predicted)[-1]
    pred = tf.reshape(predicted, [-1, dim])
    true = tf.reshape(target, [-1, dim])
    logits = tf.matmul(pred, true, transpose_b=True) / temperature
    if frame_mask is not None:
        valid = tf.reshape(_f32(frame_mask), [1, -1]) > 0.0
        logits = tf.where(valid, logits, tf.fill(tf.shape(logits), -1e9))
    labels = tf.range(tf.shape(logits)[0])
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    flat_weights = tf.reshape(weights, [-1])
    return tf.reduce_sum(ce * flat_weights) / tf.maximum(tf.reduce_sum(flat_weights), 1.0)


# --------------------------------------------------------------------------- finetune losses
def cosine_similarity(a, b) -> tf.Tensor:
    """Row-wise cosine [B] = <a/|a|, b/|b|>."""
    a = tf.math.l2_normalize(_f32(a), axis=-1)
    b = tf.math.l2_normalize(_f32(b), axis=-1)
    return tf.reduce_sum(a * b, axis=-1)


def mse_loss(cos, target) -> tf.Tensor:
    """mean((cos - target)²)."""
    return tf.reduce_mean(tf.square(_f32(cos) - _f32(target)))


def centred_mse_loss(cos, target) -> tf.Tensor:
    """mean(((cos - mean cos) - (target - mean target))²), the means over the batch.

    Like `mse_loss` but blind to a shift of all cosines: the model is asked to order and spread its
    cosines like the targets, not to lift them to the targets' level. Measured: fold models' cosines
    land closer on one scale, but the near-constant vector in every embedding stays (it is not the
    level the MSE asks for; docs/benchmarks.md, "Why the deep part is one constant vector").
    """
    cos, target = _f32(cos), _f32(target)
    residual = (cos - tf.reduce_mean(cos)) - (target - tf.reduce_mean(target))
    return tf.reduce_mean(tf.square(residual))


def mae_loss(cos, target) -> tf.Tensor:
    """mean(|cos - target|)."""
    return tf.reduce_mean(tf.abs(_f32(cos) - _f32(target)))


def batch_kl_loss(cos, target, temperature: float = 0.1) -> tf.Tensor:
    """KL(softmax(target/T) ‖ softmax(cos/T)), both softmaxes over the pairs of the batch.

    Makes the batch's cosines rank and spread like its labels (no T² factor).
    """
    log_p = tf.nn.log_softmax(_f32(target) / temperature)
    log_q = tf.nn.log_softmax(_f32(cos) / temperature)
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q))


def pearson(x, y, eps: float = 1e-8) -> tf.Tensor:
    """Pearson correlation of two vectors."""
    x, y = _f32(x), _f32(y)
    xc, yc = x - tf.reduce_mean(x), y - tf.reduce_mean(y)
    return tf.reduce_sum(xc * yc) / (tf.norm(xc) * tf.norm(yc) + eps)


def lbpc_loss(cos, target, tau: float = 0.2) -> tf.Tensor:
    """Large-batch Pearson loss: 1 - pearson(softmax(cos/τ) over the batch, target)."""
    return 1.0 - pearson(tf.nn.softmax(_f32(cos) / tau), target)


# --------------------------------------------------------------------------- target transforms
class RankNormaliser:
    """Score -> its normalised average rank in [0, 1] over the label set it was fitted on.

    ``values`` are the distinct scores (ascending) and ``normalised`` their (rank - 1)/(n - 1)
    with tied scores sharing their average rank. Scores between two known values are linearly
    interpolated, outside the range clipped.
    """

    def __init__(self, values: np.ndarray, normalised: np.ndarray):
        self.values = np.asarray(values, dtype=np.float64)
        self.normalised = np.asarray(normalised, dtype=np.float64)

    def __call__(self, scores) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), self.values,
                         self.normalised).astype(np.float32)

    def tf_call(self, scores) -> tf.Tensor:
        """The same mapping in TensorFlow ops (for `tf.data` pipelines)."""
        scores = _f32(scores)
        values = tf.constant(self.values, tf.float32)
        normalised = tf.constant(self.normalised, tf.float32)
        if len(self.values) == 1:
            return tf.fill(tf.shape(scores), normalised[0])
        flat = tf.reshape(scores, [-1])
        upper = tf.clip_by_value(tf.searchsorted(values, flat, side="right"), 1,
                                 len(self.values) - 1)
        x0, x1 = tf.gather(values, upper - 1), tf.gather(values, upper)
        y0, y1 = tf.gather(normalised, upper - 1), tf.gather(normalised, upper)
        frac = tf.clip_by_value((flat - x0) / (x1 - x0), 0.0, 1.0)
        return tf.reshape(y0 + frac * (y1 - y0), tf.shape(scores))


def rank_normalise(scores) -> RankNormaliser:
    """Fit a `RankNormaliser` on the full label set: `scipy.stats.rankdata` (average ties) -> [0, 1]."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("rank_normalise needs at least one score")
    if not np.all(np.isfinite(scores)):
        raise ValueError("rank_normalise: scores must be finite")
    ranks = scipy.stats.rankdata(scores, method="average")
    normalised = (ranks - 1.0) / (scores.size - 1) if scores.size > 1 else np.full(1, 0.5)
    values, first = np.unique(scores, return_index=True)
    return RankNormaliser(values, normalised[first])


def sigmoid_transform(score, alpha: float, center: float = 0.0):
    """Label transform sigmoid(alpha · (score - center)); numpy in -> numpy, tensor in -> tensor."""
    if isinstance(score, (tf.Tensor, tf.Variable)):
        return tf.nn.sigmoid(alpha * (_f32(score) - center))
    return scipy.special.expit(alpha * (np.asarray(score, dtype=np.float64) - center)).astype(
        np.float32)
