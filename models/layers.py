"""Reusable Keras layers: NeXtVLAD frame aggregation, SE gating, fusion, gating, pooling,
frame tokens with their own positions, transformer (self/cross-attention) blocks, heads.

Every layer takes a padding mask rather than assuming a frame count, creates its weights in
`build()` from the input shapes, and round-trips through `get_config` / `from_config`.
Under a mixed-precision policy the layers compute in float16; normalisations run in float32.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras


def prior_bias_initializer(num_classes: int, expected_positives: float) -> keras.initializers.Initializer:
    """Bias initialiser giving every class the prior probability ``expected_positives / num_classes``.

    With ~5 tags out of 10,000 per video a zero bias starts every tag at p=0.5, so a summed BCE
    begins near 7,000 and the first steps only learn the prior; starting at the prior avoids that.
    ``expected_positives=0`` gives zeros.
    """
    if expected_positives <= 0:
        return keras.initializers.Zeros()
    p = min(expected_positives / num_classes, 0.5)
    return keras.initializers.Constant(math.log(p / (1.0 - p)))


def _as_mask(mask: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    """A [B, M] mask in ``like``'s dtype (all ones when None)."""
    if mask is None:
        return tf.ones(tf.shape(like)[:2], dtype=like.dtype)
    return tf.cast(mask, like.dtype)


def masked_mean(inputs: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """Mean over the time axis of [B, M, D] counting only positions where mask is 1 (0 if none)."""
    weights = _as_mask(mask, inputs)[..., None]
    count = tf.maximum(tf.reduce_sum(weights, axis=1), tf.cast(1.0, inputs.dtype))
    return tf.reduce_sum(inputs * weights, axis=1) / count


class NeXtVLAD(keras.layers.Layer):
    """NeXtVLAD (Lin et al., 2018) over a padded frame sequence, padded frames ignored.

    frames [B, M, N] -> expansion Dense to λN -> split into G groups of F = λN/G features;
    per frame and group an attention α_g = sigmoid(.) and a soft assignment to K clusters
    (softmax over K). Both come from the expanded frame, and the frame mask multiplies them, so
    padded frames add neither residuals nor centre terms. VLAD: v[f, k] = Σ_{frames, groups}
    α_g · a_gk · (x_g[f] - c[f, k]); each cluster's residual is L2-normalised (intra
    normalisation), flattened to F·K, dropped out, projected to ``output_size`` and batch-normalised.
    """

    def __init__(self, cluster_size: int = 64, groups: int = 8, expansion: int = 2,
                 dropout: float = 0.2, output_size: int = 1024, **kwargs: Any):
        super().__init__(**kwargs)
        self.cluster_size = int(cluster_size)
        self.groups = int(groups)
        self.expansion = int(expansion)
        self.dropout = float(dropout)
        self.output_size = int(output_size)

    def build(self, input_shape: tf.TensorShape) -> None:
        feature_dim = int(input_shape[-1])
        expanded = feature_dim * self.expansion
        if expanded % self.groups:
            raise ValueError(f"NeXtVLAD: frame dim {feature_dim} x expansion {self.expansion} "
                             f"must be divisible by groups {self.groups}")
        self.group_dim = expanded // self.groups
        self.expand = keras.layers.Dense(expanded, name="expansion")
        self.group_attention = keras.layers.Dense(self.groups, activation="sigmoid",
                                                  name="group_attention")
        self.cluster_logits = keras.layers.Dense(self.groups * self.cluster_size,
                                                 name="cluster_logits")
        self.centers = self.add_weight(
            name="cluster_centers", shape=(self.group_dim, self.cluster_size),
            initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(self.group_dim)),
            trainable=True)
        self.drop = keras.layers.Dropout(self.dropout, name="dropout")
        self.project = keras.layers.Dense(self.output_size, name="projection")
        # synchronized: statistics over the global batch, so results do not depend on the replicas
        self.norm = keras.layers.BatchNormalization(synchronized=True, name="output_bn")
        self.expand.build(input_shape)
        self.group_attention.build(tf.TensorShape([None, None, expanded]))
        self.cluster_logits.build(tf.TensorShape([None, None, expanded]))
        self.project.build(tf.TensorShape([None, self.group_dim * self.cluster_size]))
        self.norm.build(tf.TensorShape([None, self.output_size]))
        super().build(input_shape)

    def call(self, frames: tf.Tensor, frame_mask: tf.Tensor | None = None,
             training: bool | None = None) -> tf.Tensor:
        batch, steps = tf.shape(frames)[0], tf.shape(frames)[1]
        x = self.expand(frames)  # [B, M, λN]
        mask = _as_mask(frame_mask, x)
        attention = self.group_attention(x) * mask[:, :, None]  # [B, M, G]
        logits = tf.reshape(self.cluster_logits(x),
                            [batch, steps, self.groups, self.cluster_size])
        assignment = tf.nn.softmax(logits, axis=-1) * attention[..., None]  # [B, M, G, K]
        assignment = tf.reshape(assignment, [batch, steps * self.groups, self.cluster_size])
        grouped = tf.reshape(x, [batch, steps * self.groups, self.group_dim])
        vlad = tf.einsum("bsk,bsf->bfk", assignment, grouped)
        vlad -= tf.reduce_sum(assignment, axis=1)[:, None, :] * tf.cast(self.centers, x.dtype)
        vlad = tf.nn.l2_normalize(tf.cast(vlad, tf.float32), axis=1)  # intra-normalisation
        vlad = tf.reshape(tf.cast(vlad, x.dtype), [batch, self.group_dim * self.cluster_size])
        vlad = self.drop(vlad, training=training)
        return self.norm(self.project(vlad), training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(cluster_size=self.cluster_size, groups=self.groups,
                      expansion=self.expansion, dropout=self.dropout,
                      output_size=self.output_size)
        return config


class SEGate(keras.layers.Layer):
    """Squeeze-and-excitation gate on a vector: x * sigmoid(W2 relu(W1 x)), W1 reduces by ``reduction``."""

    def __init__(self, reduction: int = 8, **kwargs: Any):
        super().__init__(**kwargs)
        self.reduction = int(reduction)

    def build(self, input_shape: tf.TensorShape) -> None:
        channels = int(input_shape[-1])
        self.squeeze = keras.layers.Dense(max(channels // self.reduction, 1), activation="relu",
                                          name="squeeze")
        self.excite = keras.layers.Dense(channels, activation="sigmoid", name="excite")
        self.squeeze.build(input_shape)
        self.excite.build(tf.TensorShape([None, max(channels // self.reduction, 1)]))
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs * self.excite(self.squeeze(inputs))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(reduction=self.reduction)
        return config


class ConcatDenseSE(keras.layers.Layer):
    """Fusion of the official baseline: concat inputs -> dropout -> Dense(hidden) -> SE gate."""

    def __init__(self, hidden_size: int = 256, se_reduction: int = 8, dropout: float = 0.1,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.hidden_size = int(hidden_size)
        self.se_reduction = int(se_reduction)
        self.dropout = float(dropout)

    def build(self, input_shape: Sequence[tf.TensorShape]) -> None:
        width = sum(int(tf.TensorShape(shape)[-1]) for shape in input_shape)
        self.drop = keras.layers.Dropout(self.dropout, name="dropout")
        self.fusion = keras.layers.Dense(self.hidden_size, name="fusion")
        self.gate = SEGate(self.se_reduction, name="se_gate")
        self.fusion.build(tf.TensorShape([None, width]))
        self.gate.build(tf.TensorShape([None, self.hidden_size]))
        super().build(input_shape)

    def call(self, inputs: Sequence[tf.Tensor], training: bool | None = None) -> tf.Tensor:
        x = tf.concat(list(inputs), axis=-1)
        return self.gate(self.fusion(self.drop(x, training=training)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, se_reduction=self.se_reduction,
                      dropout=self.dropout)
        return config


class MixtureGate(keras.layers.Layer):
    """Softmax gate of MixNeXtVLAD: weights = softmax(Dense(BN(concat(gate_inputs)))).

    ``call(gate_inputs, experts)`` returns (Σ_e w_e · expert_e, weights [B, E]); the experts are
    equally shaped tensors [B, D], one per expert.
    """

    def __init__(self, num_experts: int = 3, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_experts = int(num_experts)

    def build(self, input_shape: Sequence[tf.TensorShape]) -> None:
        width = sum(int(tf.TensorShape(shape)[-1]) for shape in input_shape)
        self.norm = keras.layers.BatchNormalization(synchronized=True, name="gate_bn")  # global-batch statistics
        self.logits = keras.layers.Dense(self.num_experts, name="gate_logits")
        self.norm.build(tf.TensorShape([None, width]))
        self.logits.build(tf.TensorShape([None, width]))
        super().build(input_shape)

    def call(self, gate_inputs: Sequence[tf.Tensor], experts: Sequence[tf.Tensor],
             training: bool | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        if len(experts) != self.num_experts:
            raise ValueError(f"MixtureGate expects {self.num_experts} experts, got {len(experts)}")
        x = self.norm(tf.concat(list(gate_inputs), axis=-1), training=training)
        weights = tf.nn.softmax(self.logits(x), axis=-1)  # [B, E]
        stacked = tf.stack(list(experts), axis=1)  # [B, E, D]
        mixture = tf.reduce_sum(stacked * tf.cast(weights, stacked.dtype)[..., None], axis=1)
        return mixture, weights

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_experts=self.num_experts)
        return config


class FrameStandardizer(keras.layers.Layer):
    """``(frames - mean) @ transform`` per frame, padded frames kept at zero.

    The statistics are non-trainable weights (so they travel in every checkpoint and export) that
    start as the identity and are set once from a streaming pass over the training videos
    (`set_statistics`). Frame features of different sources differ wildly in offset and scale (a
    shared background dominates the raw cosine) and most of their 1,536 directions vary little
    between videos; centring and whitening them makes every model see what varies between videos.
    ``transform`` is diagonal (1 / std) for per-feature standardisation, or a shrunk ZCA whitening
    ``V diag(1 / sqrt(λ + λ_k)) Vᵀ`` of the covariance of the videos' mean frames (directions with
    much more between-video variance than the k-th get unit variance, the rest are damped), so the
    frame width is unchanged.

    ``power`` < 1 first applies the signed power ``sign(x) |x|^power`` to every value (0.5: the
    signed square root, the "power normalisation" of retrieval features), which tames the heavy
    tails of pooled CNN activations; the statistics are those of the powered frames
    (`signed_power` is the same function in numpy).

    ``diagonal`` (every normalisation but ZCA) multiplies by the transform's diagonal instead of the
    [D, D] matmul: the same numbers to the bit (the matmul adds only exact zeros), about 20x faster
    at D = 1,536, where the matmul cost 0.06 s of a 0.45 s training step on 2 cores
    (docs/benchmarks.md, "The diagonal frame standardiser"). The weight stays [D, D], so checkpoints
    of either kind load alike; `set_statistics` refuses an off-diagonal transform.
    """

    def __init__(self, power: float = 1.0, diagonal: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.power = float(power)
        self.diagonal = bool(diagonal)

    def build(self, input_shape: tf.TensorShape) -> None:
        dim = int(input_shape[-1])
        self.mean = self.add_weight("mean", shape=[dim], initializer="zeros", trainable=False)
        self.transform = self.add_weight("transform", shape=[dim, dim], initializer="identity", trainable=False)
        super().build(input_shape)

    def call(self, frames: tf.Tensor, frame_mask: tf.Tensor) -> tf.Tensor:
        if self.power != 1.0:
            values = tf.cast(frames, tf.float32)
            frames = tf.cast(tf.sign(values) * tf.pow(tf.abs(values), self.power), frames.dtype)
        mean = tf.cast(self.mean, frames.dtype)
        centred = (frames - mean) * tf.cast(frame_mask, frames.dtype)[..., None]
        if self.diagonal:
            return centred * tf.cast(tf.linalg.diag_part(self.transform), frames.dtype)
        return tf.einsum("bfd,de->bfe", centred, tf.cast(self.transform, frames.dtype))

    def set_statistics(self, mean, transform) -> None:
        """Set the mean [D] and the transform [D, D] (see `standardizing_transform`)."""
        mean = np.asarray(mean, dtype=np.float32)
        transform = np.asarray(transform, dtype=np.float32)
        if mean.ndim != 1 or transform.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"need mean [D] and transform [D, D], got {mean.shape} and {transform.shape}")
        if not self.built:
            self.build(tf.TensorShape([None, None, mean.shape[0]]))
        if mean.shape[0] != self.mean.shape[0]:
            raise ValueError(f"statistics have {mean.shape[0]} features, the frames {self.mean.shape[0]}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(transform))):
            raise ValueError("frame statistics must be finite")
        if self.diagonal and np.count_nonzero(transform - np.diag(np.diag(transform))):
            raise ValueError("this frame standardiser is diagonal (frames.normalization other than zca), but the "
                             "transform has off-diagonal entries")
        self.mean.assign(mean)
        self.transform.assign(transform)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(power=self.power, diagonal=self.diagonal)
        return config


def signed_power(values: np.ndarray, power: float) -> np.ndarray:
    """``sign(x) |x|^power`` elementwise (unchanged for power 1): `FrameStandardizer`'s first step."""
    values = np.asarray(values)
    if power == 1.0:
        return values
    return np.sign(values) * np.abs(values) ** power


class MeanFramePath(keras.layers.Layer):
    """A linear "wide" path: ``gate * l2_normalize((masked mean frame) @ kernel)``, added to a model's
    L2-normalised embedding (scale-free: the gate alone weighs the two).

    The kernel is the PCA whitening of the videos' mean frames (`set_projection`, not trained), so a
    model holds the strongest untrained frame baseline and its deep part learns what that misses;
    only the gate (how much of it) is trained.
    """

    def __init__(self, output_size: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.output_size = int(output_size)

    def build(self, input_shape: tf.TensorShape) -> None:
        # frozen: trained with the deep part's learning rate, the small whitening weights are
        # washed out within a few hundred steps (measured: 0.674 vs 0.728 validation Spearman)
        self.kernel = self.add_weight("kernel", shape=[int(input_shape[-1]), self.output_size],
                                      initializer="zeros", trainable=False)
        self.gate = self.add_weight("gate", shape=[], initializer="ones", trainable=True)
        super().build(input_shape)

    def call(self, frames: tf.Tensor, frame_mask: tf.Tensor) -> tf.Tensor:
        projected = tf.matmul(masked_mean(frames, frame_mask), tf.cast(self.kernel, frames.dtype))
        return tf.cast(self.gate, frames.dtype) * tf.math.l2_normalize(projected, axis=-1)

    def set_projection(self, kernel) -> None:
        kernel = np.asarray(kernel, dtype=np.float32)
        if not self.built:
            self.build(tf.TensorShape([None, None, kernel.shape[0]]))
        if kernel.shape != tuple(self.kernel.shape):
            raise ValueError(f"projection must be {tuple(self.kernel.shape)}, got {kernel.shape}")
        self.kernel.assign(kernel)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(output_size=self.output_size)
        return config


class WidePath(keras.layers.Layer):
    """The strong linear-metric baseline, in-graph: ``gate * l2n(concat(parts) @ metric)`` with
    parts ``w_f l2n(whiten(mean frame))``, ``w_t l2n(whiten(LSA(TF-IDF(title tokens))))`` and
    ``w_a l2n(...)`` of the ASR tokens, added to a model's L2-normalised embedding.

    Every weight but the gate is frozen and set once (`set_weights_from`) by `train.wide_path`, which
    fits them exactly as `infer.strong_baselines` fits its linear metric, on the fold's training
    pairs. Until then the path outputs zeros (pretraining does not see it). Title and ASR tokens are
    the two segments of ``input_ids`` (``text.source=title+asr``: ``[CLS] title [SEP] asr [SEP]``),
    split at the first ``sep_token_id``; special tokens have zero IDF, so they count for nothing.
    Title and ASR have their own IDF (as the baseline fits one TF-IDF per text).
    TF is sublinear (``1 + ln count``) and each TF-IDF row is L2-normalised, as in the baseline.
    With ``frame_tags_width > 0`` a fourth part ``w_g l2n((mean frame - mean) @ frame_tags_kernel)``
    reads the mean frame through the tags (`train.wide_path`: a ridge from the whitened mean frames to
    the videos' tags, fitted on the unlabelled and training-pair videos, whitened again).
    With ``frame_words > 0`` the mean frame is pooled by idf (`infer.frame_words`): each real frame is
    the nearest of ``frame_words`` centroids of ``(frame - word_offset) @ word_projection`` (a
    ``frame_words_width``-wide space) and counts with its word's idf, so shots shared by many videos
    count less; a video whose frames all weigh 0 keeps its plain mean. With ``frame_words_fits > 1`` the
    centroids and idf hold that many sets of ``frame_words`` words, one after another, and a frame
    weighs the mean of its words' idf over the sets.
    With ``rare_words > 0`` the title's rare tokens are matched exactly (`infer.rare_words`): their TF-IDF
    (``rare_idf``, zero for every other token) through a fixed random projection (``rare_projection``,
    [vocab, rare_words]) into the spare directions of the embedding (``rare_basis``, [rare_words,
    output_size], its weight folded in), added to the normalised metric before the gate.
    """

    PARTS = ("frame", "title", "asr")
    WORD_NAMES = ("word_offset", "word_projection", "word_centroids", "word_idf")  # `infer.frame_words.ARRAY_NAMES`

    def __init__(self, vocab_size: int, frame_width: int, text_width: int, output_size: int,
                 frame_tags_width: int = 0, frame_words: int = 0, frame_words_width: int = 0,
                 frame_words_fits: int = 1, rare_words: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.vocab_size, self.frame_width = int(vocab_size), int(frame_width)
        self.text_width, self.output_size = int(text_width), int(output_size)
        self.frame_tags_width = int(frame_tags_width)
        self.frame_words, self.frame_words_width = int(frame_words), int(frame_words_width)
        self.frame_words_fits = int(frame_words_fits)
        self.rare_words = int(rare_words)
        if self.rare_words < 0 or self.rare_words > self.output_size:
            raise ValueError(f"rare_words must be in 0..{self.output_size} (the output size), got {self.rare_words}")
        if self.frame_words > 0 and self.frame_words_width <= 0:
            raise ValueError(f"frame_words {self.frame_words} needs frame_words_width > 0, got {self.frame_words_width}")
        if self.frame_words_fits < 1:
            raise ValueError(f"frame_words_fits must be >= 1, got {self.frame_words_fits}")

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts of ``combined``, in order (``frame_tags`` only when its width is > 0)."""
        return self.PARTS + (("frame_tags",) if self.frame_tags_width > 0 else ())

    @property
    def combined_width(self) -> int:
        return self.frame_width + 2 * self.text_width + self.frame_tags_width

    def build(self, input_shape: tf.TensorShape) -> None:
        dim = int(input_shape[-1])

        def frozen(name, shape, dtype="float32"):
            return self.add_weight(name, shape=shape, initializer="zeros", trainable=False, dtype=dtype)

        self.frame_mean = frozen("frame_mean", [dim])
        self.frame_kernel = frozen("frame_kernel", [dim, self.frame_width])
        self.title_idf = frozen("title_idf", [self.vocab_size])
        self.asr_idf = frozen("asr_idf", [self.vocab_size])
        self.title_kernel = frozen("title_kernel", [self.vocab_size, self.text_width])
        self.title_bias = frozen("title_bias", [self.text_width])
        self.asr_kernel = frozen("asr_kernel", [self.vocab_size, self.text_width])
        self.asr_bias = frozen("asr_bias", [self.text_width])
        if self.frame_tags_width > 0:
            self.frame_tags_kernel = frozen("frame_tags_kernel", [dim, self.frame_tags_width])
        if self.frame_words > 0:
            self.word_offset = frozen("word_offset", [dim])
            self.word_projection = frozen("word_projection", [dim, self.frame_words_width])
            words = self.frame_words * self.frame_words_fits
            self.word_centroids = frozen("word_centroids", [words, self.frame_words_width])
            self.word_idf = frozen("word_idf", [words])
        if self.rare_words > 0:
            self.rare_idf = frozen("rare_idf", [self.vocab_size])
            self.rare_projection = frozen("rare_projection", [self.vocab_size, self.rare_words])
            self.rare_basis = frozen("rare_basis", [self.rare_words, self.output_size])
        self.part_weights = frozen("part_weights", [len(self.parts)])
        self.metric = frozen("metric", [self.combined_width, self.output_size])
        self.sep_token_id = frozen("sep_token_id", [], dtype="int32")
        self.gate = self.add_weight("gate", shape=[], initializer="ones", trainable=True)
        super().build(input_shape)

    # the inputs of the fit and of `call`, computed the same way
    def mean_frame(self, frames: tf.Tensor, frame_mask: tf.Tensor) -> tf.Tensor:
        """[B, D]: the mean of the real frames, idf-weighted with ``frame_words > 0``."""
        frames = tf.cast(frames, tf.float32)
        if self.frame_words <= 0:
            return masked_mean(frames, frame_mask)
        real = _as_mask(frame_mask, frames)
        z = tf.einsum("btd,dp->btp", frames - self.word_offset, self.word_projection)
        distances = (tf.reduce_sum(tf.square(z), axis=-1, keepdims=True)
                     - 2.0 * tf.einsum("btp,kp->btk", z, self.word_centroids)
                     + tf.reduce_sum(tf.square(self.word_centroids), axis=-1))
        shape = tf.concat([tf.shape(distances)[:2], [self.frame_words_fits, self.frame_words]], axis=0)
        nearest = tf.argmin(tf.reshape(distances, shape), axis=-1, output_type=tf.int32)  # [B, T, fits]
        nearest += tf.range(self.frame_words_fits) * self.frame_words  # into the sets laid one after another
        weights = tf.reduce_mean(tf.gather(self.word_idf, nearest), axis=-1) * real
        weighted = tf.reduce_sum(weights, axis=1, keepdims=True) > 0.0
        weights = tf.where(weighted, weights, real)  # all weights 0: the plain mean
        total = tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1e-12)
        return tf.reduce_sum(frames * (weights / total)[..., None], axis=1)

    def token_counts(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Token counts [B, vocab] of the title segment and of the ASR segment."""
        ids = tf.cast(input_ids, tf.int32)
        real = tf.cast(attention_mask, tf.float32)
        segment = tf.cumsum(tf.cast(tf.equal(ids, self.sep_token_id), tf.int32), axis=1, exclusive=True)
        rows = tf.shape(ids)[0]
        flat = tf.reshape(tf.range(rows)[:, None] * self.vocab_size + tf.clip_by_value(ids, 0, self.vocab_size - 1), [-1])

        def count(weights):
            summed = tf.math.unsorted_segment_sum(tf.reshape(weights, [-1]), flat, rows * self.vocab_size)
            return tf.reshape(summed, [rows, self.vocab_size])

        return (count(real * tf.cast(tf.equal(segment, 0), tf.float32)),
                count(real * tf.cast(tf.equal(segment, 1), tf.float32)))

    @staticmethod
    def tfidf(counts: tf.Tensor, idf: tf.Tensor) -> tf.Tensor:
        """Sublinear TF x IDF, rows L2-normalised (zero rows stay zero)."""
        tf_part = tf.where(counts > 0, 1.0 + tf.math.log(tf.maximum(counts, 1.0)), 0.0)
        return tf.math.l2_normalize(tf_part * idf, axis=-1)

    def combined(self, frames, frame_mask, input_ids, attention_mask, counts=None) -> tf.Tensor:
        """[B, combined_width]: the weighted, L2-normalised parts (the baseline's ``combined``);
        ``counts``: `token_counts` of these inputs, where already computed."""
        centred = self.mean_frame(frames, frame_mask) - self.frame_mean
        frame = tf.matmul(centred, self.frame_kernel)
        title_counts, asr_counts = counts if counts is not None else self.token_counts(input_ids, attention_mask)
        title = tf.matmul(self.tfidf(title_counts, self.title_idf), self.title_kernel) + self.title_bias
        asr = tf.matmul(self.tfidf(asr_counts, self.asr_idf), self.asr_kernel) + self.asr_bias
        values = [frame, title, asr]
        if self.frame_tags_width > 0:
            values.append(tf.matmul(centred, self.frame_tags_kernel))
        parts = [tf.math.l2_normalize(part, axis=-1) * self.part_weights[i] for i, part in enumerate(values)]
        return tf.concat(parts, axis=-1)

    def call(self, frames, frame_mask, input_ids, attention_mask) -> tf.Tensor:
        counts = self.token_counts(input_ids, attention_mask)
        metric = tf.matmul(self.combined(frames, frame_mask, input_ids, attention_mask, counts), self.metric)
        out = tf.math.l2_normalize(metric, axis=-1)
        if self.rare_words > 0:
            rare = tf.matmul(self.tfidf(counts[0], self.rare_idf), self.rare_projection)
            out += tf.matmul(rare, self.rare_basis)
        return tf.cast(self.gate * out, frames.dtype)

    def set_weights_from(self, values: Mapping[str, Any]) -> None:
        """Set the frozen weights from a mapping of their names (``train.wide_path`` writes one)."""
        if not self.built:
            self.build(tf.TensorShape([None, None, int(np.shape(values["frame_mean"])[-1])]))
        names = ["frame_mean", "frame_kernel", "title_idf", "asr_idf", "title_kernel", "title_bias", "asr_kernel",
                 "asr_bias", "part_weights", "metric", "sep_token_id"]
        if self.frame_tags_width > 0:
            names.append("frame_tags_kernel")
        if self.frame_words > 0:
            names += self.WORD_NAMES
        if self.rare_words > 0:
            names += ["rare_idf", "rare_projection", "rare_basis"]
        self._assign(names, values)

    def _assign(self, names: Sequence[str], values: Mapping[str, Any]) -> None:
        """Assign each of ``names`` from ``values``, each checked for presence, shape and finiteness."""
        for name in names:
            variable = getattr(self, name)
            if name not in values:
                raise ValueError(f"wide path {name} is missing from the fit (frame_tags_width {self.frame_tags_width}, "
                                 f"frame_words {self.frame_words}, rare_words {self.rare_words})")
            value = np.asarray(values[name])
            if value.shape != tuple(variable.shape):
                raise ValueError(f"wide path {name} must be {tuple(variable.shape)}, got {value.shape}")
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise ValueError(f"wide path {name} must be finite")
            variable.assign(value.astype(variable.dtype.as_numpy_dtype))

    def set_frame_words(self, values: Mapping[str, Any]) -> None:
        """Set the visual words alone (``word_offset``, ``word_projection``, ``word_centroids``, ``word_idf``:
        `infer.frame_words.FrameWords.arrays`), before the rest of the path is fitted on frames pooled by them."""
        if self.frame_words <= 0:
            raise ValueError("this wide path pools no frame words (frame_words 0)")
        if not self.built:
            self.build(tf.TensorShape([None, None, int(np.shape(values["word_offset"])[-1])]))
        self._assign(self.WORD_NAMES, values)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, frame_width=self.frame_width, text_width=self.text_width,
                      output_size=self.output_size, frame_tags_width=self.frame_tags_width,
                      frame_words=self.frame_words, frame_words_width=self.frame_words_width,
                      frame_words_fits=self.frame_words_fits, rare_words=self.rare_words)
        return config


def whitening_projection(mean_covariance: np.ndarray, rank: int, output_size: int, norm: float = 1.0) -> np.ndarray:
    """[D, output_size]: the top-``rank`` PCA directions of ``mean_covariance`` scaled by 1 / sqrt(λ)
    (whitening), then by ``norm / sqrt(rank)`` so a typical output has length ~``norm``; zero columns
    beyond ``rank``."""
    values, vectors = np.linalg.eigh(np.asarray(mean_covariance, dtype=np.float64))
    order = np.argsort(values)[::-1][:min(rank, output_size)]
    top = np.maximum(values[order], float(values.max()) * 1e-6 + 1e-12)
    kernel = np.zeros((len(values), output_size))
    kernel[:, :len(order)] = vectors[:, order] / np.sqrt(top) * (norm / np.sqrt(len(order)))
    return kernel


def standardizing_transform(kind: str, std: np.ndarray, video_covariance: np.ndarray | None = None,
                            rank: int = 64) -> np.ndarray:
    """The [D, D] transform of `FrameStandardizer`: ``"standardize"`` (diagonal 1 / std, std floored
    at 1e-3 x its median) or ``"zca"`` (shrunk ZCA whitening of ``video_covariance``, the
    covariance of the videos' mean frames, with the ``rank``-th eigenvalue as shrinkage)."""
    std = np.asarray(std, dtype=np.float64)
    if kind == "standardize":
        floor = max(float(np.median(std)) * 1e-3, 1e-6)
        return np.diag(1.0 / np.maximum(std, floor))
    if kind == "zca":
        if video_covariance is None:
            raise ValueError("zca whitening needs the covariance of the videos' mean frames")
        values, vectors = np.linalg.eigh(np.asarray(video_covariance, dtype=np.float64))
        values = np.maximum(values[::-1], 0.0)
        vectors = vectors[:, ::-1]
        shrink = max(float(values[min(rank, len(values)) - 1]), float(values[0]) * 1e-6, 1e-12)
        return (vectors / np.sqrt(values + shrink)) @ vectors.T
    raise ValueError(f"unknown frame normalisation {kind!r}; choose standardize or zca")


class MaskedMeanPooling(keras.layers.Layer):
    """Mean over the time axis of [B, M, D] counting only positions where mask is 1 (0 if none)."""

    def call(self, inputs: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        return masked_mean(inputs, mask)

    def compute_mask(self, inputs, mask=None):
        return None


class FrameProjection(keras.layers.Layer):
    """Frame features -> model width: Dense(output_size) then LayerNorm (frames as tokens)."""

    def __init__(self, output_size: int, epsilon: float = 1e-12, **kwargs: Any):
        super().__init__(**kwargs)
        self.output_size = int(output_size)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tf.TensorShape) -> None:
        self.dense = keras.layers.Dense(self.output_size, name="dense")
        self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon, name="layer_norm")
        self.dense.build(input_shape)
        self.norm.build(tf.TensorShape(input_shape)[:-1].concatenate([self.output_size]))
        super().build(input_shape)

    def call(self, frames: tf.Tensor) -> tf.Tensor:
        return self.norm(self.dense(frames))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(output_size=self.output_size, epsilon=self.epsilon)
        return config


class TiedMLMHead(keras.layers.Layer):
    """BERT-style MLM head whose decoder is the (shared) word-embedding matrix.

    hidden [B, L, H] -> Dense(embedding_size, gelu) -> LayerNorm -> · Eᵀ + bias -> [B, L, vocab].
    The embedding matrix E [vocab, embedding_size] is passed to `call` rather than stored, so it
    stays owned (and tracked) by the text encoder only.
    """

    def __init__(self, vocab_size: int, embedding_size: int, epsilon: float = 1e-12,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.embedding_size = int(embedding_size)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tf.TensorShape) -> None:
        self.transform = keras.layers.Dense(self.embedding_size, activation="gelu",
                                            name="transform")
        self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon, name="layer_norm")
        self.bias = self.add_weight(name="decoder_bias", shape=(self.vocab_size,),
                                    initializer="zeros", trainable=True)
        self.transform.build(input_shape)
        self.norm.build(tf.TensorShape(input_shape)[:-1].concatenate([self.embedding_size]))
        super().build(input_shape)

    def call(self, hidden: tf.Tensor, word_embeddings: tf.Tensor) -> tf.Tensor:
        x = self.norm(self.transform(hidden))
        logits = tf.einsum("ble,ve->blv", x, tf.cast(word_embeddings, x.dtype))
        return logits + tf.cast(self.bias, x.dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, embedding_size=self.embedding_size,
                      epsilon=self.epsilon)
        return config


class MLPHead(keras.layers.Layer):
    """Prediction head: Dense(input width, gelu) -> LayerNorm -> Dense(output_size).

    E.g. single_stream's masked-frame head, hidden [B, M, H] -> predicted frames [B, M, frame_dim].
    """

    def __init__(self, output_size: int, epsilon: float = 1e-12, **kwargs: Any):
        super().__init__(**kwargs)
        self.output_size = int(output_size)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tf.TensorShape) -> None:
        width = int(input_shape[-1])
        self.transform = keras.layers.Dense(width, activation="gelu", name="transform")
        self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon, name="layer_norm")
        self.output_dense = keras.layers.Dense(self.output_size, name="output")
        self.transform.build(input_shape)
        self.norm.build(input_shape)
        self.output_dense.build(input_shape)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.output_dense(self.norm(self.transform(inputs)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(output_size=self.output_size, epsilon=self.epsilon)
        return config


class FrameEmbeddings(keras.layers.Layer):
    """Frames as encoder tokens with their own positions: Dense(hidden) + learned position
    embedding -> LayerNorm -> dropout.

    frames [B, M, N] -> [B, M, hidden] (M <= ``max_frames``). With ``end_token=True`` a learned
    end-of-video token (the [SEP] after the frames) is appended at position M, giving
    [B, M + 1, hidden]; it is always a real position (mask 1), wherever the real frames end.
    The position table is this layer's own (``max_frames`` (+1) rows), separate from any text
    encoder's.
    """

    def __init__(self, hidden_size: int, max_frames: int, end_token: bool = False,
                 dropout: float = 0.1, epsilon: float = 1e-12, **kwargs: Any):
        super().__init__(**kwargs)
        self.hidden_size = int(hidden_size)
        self.max_frames = int(max_frames)
        self.end_token = bool(end_token)
        self.dropout = float(dropout)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        steps = input_shape[1]
        if steps is not None and steps > self.max_frames:
            raise ValueError(f"FrameEmbeddings: {steps} frames but max_frames={self.max_frames}")
        self.dense = keras.layers.Dense(self.hidden_size, name="dense")
        self.dense.build(input_shape)
        positions = self.max_frames + int(self.end_token)
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(positions, self.hidden_size),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02), trainable=True)
        if self.end_token:
            self.end_embedding = self.add_weight(
                name="end_embedding", shape=(self.hidden_size,),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02), trainable=True)
        self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon, name="layer_norm")
        self.norm.build(tf.TensorShape([None, None, self.hidden_size]))
        self.drop = keras.layers.Dropout(self.dropout, name="dropout")
        super().build(input_shape)

    def call(self, frames: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        x = self.dense(frames)
        if self.end_token:
            end = tf.cast(self.end_embedding, x.dtype)[None, None, :]
            x = tf.concat([x, tf.tile(end, [tf.shape(x)[0], 1, 1])], axis=1)
        positions = tf.cast(self.position_embeddings, x.dtype)[:tf.shape(x)[1]]
        return self.drop(self.norm(x + positions[None]), training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, max_frames=self.max_frames,
                      end_token=self.end_token, dropout=self.dropout, epsilon=self.epsilon)
        return config


class TransformerBlock(keras.layers.Layer):
    """A post-LayerNorm (BERT-style) transformer layer on `keras.layers.MultiHeadAttention`.

    ``call(x, padding_mask, context=None, context_padding_mask=None)``: without ``context`` it
    is self-attention over ``x`` (keys masked by ``padding_mask``); with ``context`` (same width
    as ``x``) the queries of ``x`` attend to the context's tokens (keys masked by
    ``context_padding_mask``): cross-attention. Then x = LN(x + attention), x = LN(x + FFN(x))
    with a gelu FFN of ``intermediate_size``. Padded keys never contribute; padded query rows
    are computed but carry no meaning (pool them away with their mask).
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int,
                 dropout: float = 0.1, epsilon: float = 1e-12, **kwargs: Any):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(f"TransformerBlock: hidden_size {hidden_size} must be divisible by "
                             f"num_heads {num_heads}")
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        self.intermediate_size = int(intermediate_size)
        self.dropout = float(dropout)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        if int(input_shape[-1]) != self.hidden_size:
            raise ValueError(f"TransformerBlock: input width {input_shape[-1]} != hidden_size "
                             f"{self.hidden_size}")
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, self.hidden_size // self.num_heads, dropout=self.dropout,
            name="attention")
        self.attention._build_from_signature(input_shape, input_shape)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=self.epsilon,
                                                              name="attention_norm")
        self.intermediate = keras.layers.Dense(self.intermediate_size, activation="gelu",
                                               name="intermediate")
        self.output_dense = keras.layers.Dense(self.hidden_size, name="output")
        self.output_norm = keras.layers.LayerNormalization(epsilon=self.epsilon,
                                                           name="output_norm")
        self.drop = keras.layers.Dropout(self.dropout, name="dropout")
        self.attention_norm.build(input_shape)
        self.intermediate.build(input_shape)
        self.output_dense.build(input_shape[:-1].concatenate([self.intermediate_size]))
        self.output_norm.build(input_shape)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, padding_mask: tf.Tensor | None = None,
             context: tf.Tensor | None = None, context_padding_mask: tf.Tensor | None = None,
             training: bool | None = None) -> tf.Tensor:
        if context is None:
            context, key_mask = inputs, padding_mask
        else:
            key_mask = context_padding_mask
            context = tf.cast(context, inputs.dtype)
        attention_mask = None
        if key_mask is not None:
            attention_mask = tf.cast(key_mask, tf.bool)[:, None, :]  # [B, 1, S]: keys only
        attended = self.attention(inputs, context, attention_mask=attention_mask,
                                  training=training)
        x = self.attention_norm(inputs + self.drop(attended, training=training))
        ffn = self.output_dense(self.intermediate(x))
        return self.output_norm(x + self.drop(ffn, training=training))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      intermediate_size=self.intermediate_size, dropout=self.dropout,
                      epsilon=self.epsilon)
        return config
