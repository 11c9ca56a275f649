"""Strong baselines: the floor every learned model must clear, scored per fold like a model.

Raw cosines of mean frames or character n-grams are weak floors: the mean frame of every video
shares a large common component, so its raw cosine mostly measures that. These baselines remove
what no similarity judgement cares about, without deep learning:

``mean_frame``      raw mean (officially sampled) frame feature (kept for reference)
``centred_frame``   mean frame minus the data set's mean frame
``whitened_frame``  mean frame PCA-whitened, ``k`` components (``k`` chosen on the training pairs),
                    in the frame space chosen likewise: covariance PCA, each feature first divided
                    by its standard deviation (correlation PCA), or by its spread within videos
                    (how much it moves between the frames of one video: directions that change
                    inside a video say less about what the video is)
``title_lsa``       title TF-IDF over jieba words -> LSA, centred and whitened (``k`` chosen likewise)
``combined``        √-weighted concat of the L2-normalised whitened frame, title and ASR vectors
                    (weights chosen on the training pairs)
``linear_metric``   a linear map W on the ``combined`` features trained on the training pairs:
                    MSE(cos(W x1, W x2), rank-normalised label) + λ‖W − I‖², the step count (0:
                    W = I) chosen on the mean held-out curve of a 5-fold inner split of the training
                    pairs (a supervised metric with the same data a model finetunes on)

Unsupervised statistics (mean, covariance, TF-IDF vocabulary, LSA) are fitted on unlabelled videos
(pointwise, pairwise and test records: no labels); every choice that looks at labels uses only the
training pairs of the fold (never its validation pairs, never a test set), so the per-fold scores
are out of fold exactly as a model's.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Collection, Iterable, Mapping, Sequence

import numpy as np
import scipy.stats

from tfrecord_tools.labels import Labels

FRAME_BASELINES = ("mean_frame", "centred_frame", "whitened_frame")
# the spaces the frame part may be whitened in (`frame_whiteners`), the preferred one first
FRAME_SPACES = ("within", "standardised", "covariance")
BASELINES = (*FRAME_BASELINES, "title_lsa", "combined", "linear_metric")


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Grids and sizes of the strong baselines (saved beside their output as JSON)."""

    # signed power sign(x) |x|^p of every frame value before the mean frame (0.5: the signed square
    # root, as the robust recipe's model.frames.power; 1: raw frames)
    frame_power: float = 0.5
    # the spaces the whitened frame may take, chosen per fold on the training pairs as k is (the whitened
    # frame alone at its best k, in sample): "within" (each feature divided by its spread within videos
    # first: what moves between the frames of one video counts less), "standardised" (divided by its
    # standard deviation: correlation PCA, as the models' in-graph standardiser does) or "covariance" PCA.
    # The first is kept unless another ranks the training pairs better by more than frame_space_margin.
    # None wins everywhere: on unseen pairs of eleven held-out draws the standardised frames led covariance
    # PCA by up to +0.03 on eight, covariance PCA by +0.015 on one, where the training pairs prefer it by
    # 0.023 (docs/benchmarks.md, "The floor chooses its frame space"); "within" then led the standardised
    # frames by +0.0015 on average on the test graphs of fourteen draws, six of them new (docs/benchmarks.md,
    # "Frames scaled by their spread within videos"), too little for the training pairs to see, so it is
    # preferred rather than chosen
    frame_spaces: tuple[str, ...] = FRAME_SPACES
    frame_space_margin: float = 0.01
    frame_components: tuple[int, ...] = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
    lsa_dim: int = 128
    text_components: tuple[int, ...] = (16, 32, 64, 128)
    text_weights: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)  # of title and ASR vs frames
    max_fit_videos: int = 200_000  # unlabelled videos used for TF-IDF / LSA fits
    # the test videos join the unsupervised statistics (frame moments, TF-IDF, LSA, text whitening):
    # transductive, as the baselines are. False fits them on the unlabelled and labelled-pair
    # videos only, as the models' wide path does, and only maps the test videos through them (on the
    # test graphs of thirteen held-out draws the test videos moved the floor by -0.007 to +0.013;
    # docs/benchmarks.md, "the floor without the test videos")
    fit_test_videos: bool = True
    metric_steps: int = 400  # most Adam steps of the linear metric (the count is chosen on held-out pairs)
    # the step count maximises the held-out Spearman averaged over this many disjoint held-out parts
    # of the training pairs (K-fold); 1: one random 20% (a noisy curve: on a world where training
    # the metric only hurts, one split still chose 320 steps and cost 0.03 on a validation fold)
    metric_splits: int = 5
    metric_learning_rate: float = 3e-3
    metric_l2: float = 1e-3
    # a diagonal stage before the full W: one weight per feature, from 1, its own step count chosen
    # the same way (at most metric_steps); W is then trained on the reweighted features. Few
    # parameters learn what the full W's early stopping cannot reach: on worlds without topic
    # clusters +0.03-0.04 over the full W alone (docs/benchmarks.md, "A diagonal stage")
    metric_diagonal: bool = True
    metric_diagonal_learning_rate: float = 9e-3
    # with the diagonal stage, the metric reads this many grid steps more components of each part than
    # the in-sample best k (the whitened_frame / title_lsa baselines keep the best k): the stage can turn
    # surplus components down but cannot add missing ones (continuous, seed 2, frame k 32 / 48 / 64 / 96
    # under the metric: 0.734 / 0.768 / 0.766 / 0.762)
    metric_components_above: int = 1
    metric_batch: int = 512
    # the grid of k for an optional fourth part of the metric, the mean frame read through the tags
    # (`VideoTable.frame_tags`: the wide path's ``frame_tags_width``; the strong baselines have none)
    frame_tags_components: tuple[int, ...] = (16, 32, 64, 128)
    # > 0: each video's frames are pooled by idf over this many visual words (`infer.frame_words`, fitted on
    # the first frame_words_fit_videos unlabelled videos, then pair videos; no labels) instead of averaged
    # alike: shots many videos share count less. The models' wide path takes the same settings
    # (model.wide.frame_words...). 0: the plain mean frame, the default here; demo.sh passes --frame-words 64 with
    # its recipe's model.wide.frame_words=64 (FRAME_WORDS; docs/benchmarks.md, "Frames pooled by idf")
    frame_words: int = 0
    frame_words_width: int = 32
    frame_words_power: float = 2.0
    frame_words_fit_videos: int = 2_000
    frame_words_fits: int = 4  # sets of words, a frame weighs its mean idf over them (`infer.frame_words`)
    # > 0: the title's rare jieba words (in at most rare_words_max_df of the fit videos) matched exactly, beside
    # the linear metric: their TF-IDF through a fixed random projection to this many dimensions, its weight chosen
    # on the training pairs (`infer.rare_words`; the wide path's model.wide.rare_words). 0: off, the default here;
    # demo.sh passes --rare-words 64 with its recipe (RARE_WORDS; docs/benchmarks.md, "A title's rare words")
    rare_words: int = 0
    rare_words_max_df: float = 0.002
    seed: int = 0
    eps: float = 1e-6

    def __post_init__(self):
        unknown = [name for name in self.frame_spaces if name not in FRAME_SPACES]
        if unknown or not self.frame_spaces:
            raise ValueError(f"frame_spaces must be a non-empty subset of {FRAME_SPACES}, got {self.frame_spaces}")
        if self.frame_space_margin < 0:
            raise ValueError(f"frame_space_margin must be >= 0, got {self.frame_space_margin}")
        if self.frame_words < 0 or self.frame_words == 1:
            raise ValueError(f"frame_words must be 0 (off) or >= 2, got {self.frame_words}")
        if self.rare_words < 0:
            raise ValueError(f"rare_words must be >= 0 (0: off), got {self.rare_words}")
        if not 0.0 < self.rare_words_max_df <= 1.0:
            raise ValueError(f"rare_words_max_df must be in (0, 1], got {self.rare_words_max_df}")
        if self.frame_words_fits < 1:
            raise ValueError(f"frame_words_fits must be >= 1, got {self.frame_words_fits}")
        if self.metric_splits < 1:
            raise ValueError(f"metric_splits must be >= 1 (1: one random 20% held out), got {self.metric_splits}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- helpers
def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pair_spearman(embeddings: np.ndarray, rows_q: np.ndarray, rows_c: np.ndarray, score: np.ndarray) -> float:
    """Spearman of the pairs' cosines vs their scores (NaN if either side is constant)."""
    e = l2n(embeddings.astype(np.float64))
    cos = np.einsum("ij,ij->i", e[rows_q], e[rows_c])
    if len(cos) < 2 or np.ptp(cos) == 0 or np.ptp(score) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(cos, score).statistic)


class MomentAccumulator:
    """Streaming mean and covariance of vectors (memory: one D x D matrix and ``buffer_rows`` rows).

    Rows added one at a time are buffered and folded in as one matrix product: a D x D outer
    product per video costs ~60x more than the same rows in blocks of 1,024 (1,536-d frames).
    """

    def __init__(self, dim: int, buffer_rows: int = 1024):
        self.n = 0
        self.total = np.zeros(dim, dtype=np.float64)
        self.outer = np.zeros((dim, dim), dtype=np.float64)
        self.buffer_rows = buffer_rows
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0

    def add(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.total.shape[0])
        self.n += len(rows)
        self._pending.append(rows)
        self._pending_rows += len(rows)
        if self._pending_rows >= self.buffer_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            block = np.concatenate(self._pending)
            self.total += block.sum(axis=0)
            self.outer += block.T @ block
            self._pending, self._pending_rows = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._flush()
        if self.n < 2:
            raise ValueError(f"need at least 2 videos to fit a mean and covariance, got {self.n}")
        mean = self.total / self.n
        cov = self.outer / self.n - np.outer(mean, mean)
        return mean, (cov + cov.T) / 2


@dataclasses.dataclass
class Whitener:
    """PCA whitening ``(x - mean) V_k / sqrt(λ_k + eps)`` for any k up to the rank kept."""

    mean: np.ndarray
    vectors: np.ndarray  # [D, K] eigenvectors, largest eigenvalue first
    values: np.ndarray  # [K]
    eps: float

    @classmethod
    def fit(cls, mean: np.ndarray, cov: np.ndarray, eps: float, keep: int = 512) -> "Whitener":
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1][:keep]
        scale = max(float(values.max()), 1e-12)
        return cls(mean, vectors[:, order], np.maximum(values[order], 0.0), eps * scale)

    @classmethod
    def fit_transformed(cls, mean: np.ndarray, cov: np.ndarray, transform: np.ndarray, eps: float,
                        keep: int = 512) -> "Whitener":
        """The whitening of ``(x - mean) @ transform`` as a map of ``x``: V and λ of the covariance
        ``transformᵀ cov transform``, ``vectors`` = ``transform @ V`` (no longer orthonormal)."""
        transform = np.asarray(transform, dtype=np.float64)
        inner = cls.fit(np.zeros(transform.shape[1]), transform.T @ cov @ transform, eps, keep)
        return cls(np.asarray(mean, dtype=np.float64), transform @ inner.vectors, inner.values, inner.eps)

    def centred(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) - self.mean

    def kernel(self, k: int, width: int | None = None) -> np.ndarray:
        """[D, width]: ``V_k / sqrt(λ_k + eps)`` (the map after centring), zero columns beyond k
        (``width`` default: k, capped at the rank kept)."""
        k = min(k, self.vectors.shape[1])
        width = k if width is None else width
        k = min(k, width)
        out = np.zeros((self.vectors.shape[0], width))
        out[:, :k] = self.vectors[:, :k] / np.sqrt(self.values[:k] + self.eps)
        return out

    def __call__(self, x: np.ndarray, k: int) -> np.ndarray:
        return self.centred(x) @ self.kernel(k)


def scaling_transform(spread: np.ndarray) -> np.ndarray:
    """diag(1 / σ) of per-feature spreads σ (floored at 1e-3 × their median, as the models' in-graph
    standardiser floors them)."""
    spread = np.asarray(spread, dtype=np.float64)
    return np.diag(1.0 / np.maximum(spread, max(float(np.median(spread)) * 1e-3, 1e-12)))


def standardising_transform(cov: np.ndarray) -> np.ndarray:
    """diag(1 / σ) of the features' standard deviations in ``cov`` (`scaling_transform`)."""
    return scaling_transform(np.sqrt(np.maximum(np.diag(cov), 0.0)))


class WithinVideoSpread:
    """Streaming per-feature spread of frames around their own video's mean frame (pooled over videos:
    ``sqrt(Σ_videos Σ_frames (x - x̄_video)² / Σ_videos (frames - 1))``); memory: two [D] vectors.

    It measures how much a feature moves *inside* one video (shots, motion), which says little about what
    the video is; the ``within`` frame space divides each feature by it before PCA whitening (the diagonal
    of within-class covariance normalisation)."""

    def __init__(self, dim: int):
        self.squares = np.zeros(dim, dtype=np.float64)
        self.count = 0

    def add_video(self, frames: np.ndarray) -> None:
        """One video's frames [n, D] (the frames its mean frame is taken over)."""
        frames = np.asarray(frames, dtype=np.float64)
        self.add(video_squares(frames), len(frames) - 1)

    def add(self, squares: np.ndarray, count: int) -> None:
        """Sums already taken (`video_squares` of one or more videos, and their frames minus videos)."""
        self.squares += squares
        self.count += int(count)

    @classmethod
    def pooled(cls, dim: int, spreads: Iterable["WithinVideoSpread"]) -> "WithinVideoSpread":
        """One spread of the frames of all ``spreads`` (sums added)."""
        out = cls(dim)
        for spread in spreads:
            out.add(spread.squares, spread.count)
        return out

    def std(self) -> np.ndarray:
        if self.count < 1:
            raise ValueError("no video has two frames or more: no spread within videos to scale the frames by")
        return np.sqrt(self.squares / self.count)


def video_squares(frames: np.ndarray) -> np.ndarray:
    """[D] squared deviations of one video's frames [n, D] from their mean, summed over its frames."""
    frames = np.asarray(frames, dtype=np.float64)
    return ((frames - frames.mean(axis=0)) ** 2).sum(axis=0)


def frame_whiteners(mean: np.ndarray, cov: np.ndarray, eps: float, spaces: Sequence[str] = FRAME_SPACES,
                    within_std: np.ndarray | None = None) -> dict[str, Whitener]:
    """The mean frames' whitener in each of ``spaces`` (`FRAME_SPACES`), from their mean and covariance;
    ``within`` only where the frames' spread within videos (`WithinVideoSpread.std`) is given."""
    makers = {"covariance": lambda: Whitener.fit(mean, cov, eps),
              "standardised": lambda: Whitener.fit_transformed(mean, cov, standardising_transform(cov), eps),
              "within": lambda: Whitener.fit_transformed(mean, cov, scaling_transform(within_std), eps)}
    return {name: makers[name]() for name in spaces if name != "within" or within_std is not None}


def word_tokens(text: str) -> list[str]:
    """jieba words of a title or ASR text (``nan`` = missing ASR gives none)."""
    import rjieba

    if not text or text == "nan":
        return []
    return [w for w in rjieba.cut(text) if w.strip()]


def text_lsa(fit_texts: Iterable[str], texts: Sequence[str], dim: int, seed: int) -> np.ndarray:
    """Word TF-IDF (sublinear tf) fitted on ``fit_texts``, reduced by TruncatedSVD to ``dim``,
    for ``texts``; rows of texts without a known word are zero."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(tokenizer=word_tokens, lowercase=False, token_pattern=None,
                                 sublinear_tf=True, min_df=2, dtype=np.float32)
    try:
        fitted = vectorizer.fit_transform(list(fit_texts))
    except ValueError:  # no word seen twice: the text carries nothing to compare
        return np.zeros((len(texts), 1), dtype=np.float64)
    components = max(1, min(dim, fitted.shape[1] - 1, fitted.shape[0] - 1))
    svd = TruncatedSVD(n_components=components, random_state=seed).fit(fitted)
    return svd.transform(vectorizer.transform(list(texts))).astype(np.float64)


# ----------------------------------------------------------------------------- the features
@dataclasses.dataclass
class VideoTable:
    """The scored videos (pairwise + test): ids, mean frames, title and ASR LSA vectors.

    ``frame_whitener`` centres the frames (``centred_frame``); ``frame_whiteners`` are the whitenings the
    frame part chooses from per fold, by `FRAME_SPACES` name (default: ``frame_whitener`` as covariance)."""

    ids: np.ndarray
    mean_frame: np.ndarray  # [N, D]
    title: np.ndarray  # [N, lsa]
    asr: np.ndarray  # [N, lsa]
    frame_whitener: Whitener
    title_whitener: Whitener
    asr_whitener: Whitener
    # optional: the mean frames read through the tags [N, m] and their whitener (the wide path's
    # ``frame_tags_width``); when set, `fold_baselines` adds them to the linear metric as a fourth part
    frame_tags: np.ndarray | None = None
    frame_tags_whitener: Whitener | None = None
    frame_whiteners: dict[str, Whitener] = dataclasses.field(default_factory=dict)
    # optional: the titles' rare words [N, m] (`title_rare_words`); when set, `fold_baselines` puts them
    # beside the linear metric with a weight chosen on the training pairs
    title_rare: np.ndarray | None = None

    def __post_init__(self):
        if not self.frame_whiteners:
            self.frame_whiteners = {"covariance": self.frame_whitener}

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        index = {key: i for i, key in enumerate(self.ids.tolist())}
        missing = [key for key in ids if key not in index]
        if missing:
            raise KeyError(f"{len(missing)} pair id(s) have no video, first {missing[0]!r}")
        return np.array([index[key] for key in ids], dtype=np.int64)


def build_table(videos: Mapping[str, dict], unlabelled: Iterable[dict], config: BaselineConfig,
                frame_moments: MomentAccumulator, unfitted: Collection[str] = (),
                frame_spread: WithinVideoSpread | None = None) -> VideoTable:
    """``videos``: id -> {"mean_frame", "title", "asr_text"} of the scored videos; ``unlabelled``:
    further videos (same keys, any number) for the TF-IDF fit; ``frame_moments`` (and ``frame_spread``,
    for the ``within`` frame space) have seen the frames of every video that the statistics are fitted
    on once ``unlabelled`` is consumed. ``unfitted``: scored videos left out of the text fits (TF-IDF,
    LSA, text whitening), only mapped through them (``fit_test_videos=False``)."""
    ids = list(videos)
    fit_titles, fit_asr = [], []
    for video in unlabelled:
        if len(fit_titles) < config.max_fit_videos:
            fit_titles.append(video["title"])
            fit_asr.append(video["asr_text"])
    unfitted = set(unfitted)
    fitted_rows = np.asarray([key not in unfitted for key in ids], dtype=bool)
    if not fitted_rows.any():
        raise ValueError("every scored video is left out of the fits: nothing to fit the text statistics on")
    titles = [videos[key]["title"] for key in ids]
    asr = [videos[key]["asr_text"] for key in ids]
    fit_own = np.flatnonzero(fitted_rows)
    title_vectors = text_lsa(fit_titles + [titles[i] for i in fit_own], titles, config.lsa_dim, config.seed)
    asr_vectors = text_lsa(fit_asr + [asr[i] for i in fit_own], asr, config.lsa_dim, config.seed)
    mean_frames = np.stack([videos[key]["mean_frame"] for key in ids]).astype(np.float64)
    table = table_of(ids, mean_frames, title_vectors, asr_vectors, frame_moments, config.eps,
                     title_whitener=Whitener.fit(*moments(title_vectors[fitted_rows]), config.eps),
                     asr_whitener=Whitener.fit(*moments(asr_vectors[fitted_rows]), config.eps),
                     frame_spread=frame_spread)
    if config.rare_words > 0:
        table.title_rare = title_rare_words(fit_titles + [titles[i] for i in fit_own], titles, config.rare_words,
                                            config.rare_words_max_df, config.seed)
    return table


def title_rare_words(fit_texts: Sequence[str], texts: Sequence[str], width: int, max_df: float,
                     seed: int) -> np.ndarray:
    """[len(texts), width]: the rare jieba words of ``texts`` (IDF over ``fit_texts``), through
    `infer.rare_words`' random projection."""
    from sklearn.feature_extraction.text import CountVectorizer

    from infer import rare_words as rw

    vectorizer = CountVectorizer(tokenizer=word_tokens, lowercase=False, token_pattern=None, dtype=np.float64)
    try:
        fit_counts = vectorizer.fit_transform(list(fit_texts))
    except ValueError:  # no word at all: nothing to match
        return np.zeros((len(texts), width))
    idf = rw.rare_idf(fit_counts, max_df)
    return np.asarray(rw.tfidf_rows(vectorizer.transform(list(texts)), idf) @ rw.random_projection(idf, width, seed))


def table_of(ids: Sequence[str], mean_frames: np.ndarray, title: np.ndarray, asr: np.ndarray,
             frame_moments: MomentAccumulator, eps: float, frame_whitener: Whitener | None = None,
             frame_tags: np.ndarray | None = None, frame_tags_whitener: Whitener | None = None,
             title_whitener: Whitener | None = None, asr_whitener: Whitener | None = None,
             frame_whiteners: Mapping[str, Whitener] | None = None,
             frame_spread: WithinVideoSpread | None = None) -> VideoTable:
    """A `VideoTable` of vectors already computed: the frame whiteners of every `FRAME_SPACES` from
    ``frame_moments`` (which may have seen more videos; ``within`` only with ``frame_spread``) unless given
    (``frame_whitener``: only the covariance one), the text whiteners from the scored videos' own vectors
    unless given."""
    if frame_whiteners is None:
        frame_whiteners = ({"covariance": frame_whitener} if frame_whitener is not None
                           else _spaces_of(frame_moments, eps, frame_spread))
    frame_whiteners = dict(frame_whiteners)
    return VideoTable(ids=np.asarray(ids, dtype=str), mean_frame=mean_frames, title=title, asr=asr,
                      frame_whitener=frame_whitener or frame_whiteners.get("covariance")
                      or next(iter(frame_whiteners.values())),
                      title_whitener=title_whitener or Whitener.fit(*moments(title), eps),
                      asr_whitener=asr_whitener or Whitener.fit(*moments(asr), eps),
                      frame_tags=frame_tags, frame_tags_whitener=frame_tags_whitener,
                      frame_whiteners=frame_whiteners)


def _spaces_of(frame_moments: MomentAccumulator, eps: float,
               frame_spread: WithinVideoSpread | None) -> dict[str, Whitener]:
    # `frame_whiteners` under another name: `table_of`'s argument of that name hides it there
    within = frame_spread.std() if frame_spread is not None and frame_spread.count else None
    return frame_whiteners(*frame_moments.result(), eps, within_std=within)


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the rows of ``x``."""
    acc = MomentAccumulator(x.shape[1])
    acc.add(x)
    return acc.result()


# ----------------------------------------------------------------------------- per fold
@dataclasses.dataclass
class FoldBaselines:
    """Every baseline's embedding of every scored video for one fold, plus what was chosen."""

    embeddings: dict[str, np.ndarray]
    choices: dict[str, float]
    metric: np.ndarray | None = None  # the linear metric's W (``linear_metric = metric input @ metric``; the input is
    # ``combined`` with each part at its ``{name}_components``, the metric's k)
    frame_whitener: Whitener | None = None  # the frame part's, in the chosen space (``choices["frame_space"]``)
    widths: dict[str, int] = dataclasses.field(default_factory=dict)  # of frame, title, asr (, frame_tags) in the
    # metric input
    metric_input: np.ndarray | None = None  # [N, D]: what the metric reads (``linear_metric = metric_input @ metric``)


def _best(candidates: Mapping, score_fn) -> tuple:
    scored = [(score_fn(value), key) for key, value in candidates.items()]
    scored = [(s if math.isfinite(s) else -1.0, key) for s, key in scored]
    best_score, best_key = max(scored, key=lambda item: item[0])
    return best_key, best_score


def rank_targets(scores: np.ndarray) -> np.ndarray:
    """Labels -> average ranks mapped to [0, 1] (the 1st place's target transform)."""
    ranks = scipy.stats.rankdata(scores)
    return (ranks - ranks.min()) / max(ranks.max() - ranks.min(), 1e-12)


def train_linear_metric(x: np.ndarray, rows_q: np.ndarray, rows_c: np.ndarray, scores: np.ndarray,
                        config: BaselineConfig, steps: int | None = None,
                        diagonal: bool = False) -> tuple[np.ndarray, int]:
    """W [D, D] from identity, minimising MSE(cos(xW), rank target) + λ‖W − I‖² with Adam.

    Without ``steps``: the pairs are cut into ``metric_splits`` parts (one random 20% when 1); for
    each part W is trained on the others and its Spearman on the part recorded every 20 steps; the
    step count with the best mean held-out Spearman is chosen (0: W = I, the metric does not help)
    and W is retrained on all pairs for that many steps.
    ``diagonal``: W = diag(w), one weight per feature (``metric_diagonal_learning_rate``).
    Returns (W, steps).
    """
    import tensorflow as tf
    import tf_keras as keras

    if steps is None:
        curves = []
        for held in held_out_parts(len(scores), config.metric_splits, config.seed):
            _, curve = _fit_metric(tf, keras, x, rows_q[~held], rows_c[~held], scores[~held], config,
                                   config.metric_steps, evaluate=(rows_q[held], rows_c[held], scores[held]),
                                   diagonal=diagonal)
            curves.append(curve)
        # every curve starts at step 0 and shares the same steps
        mean_curve = np.nanmean(np.stack([curve[:, 1] for curve in curves]), axis=0)
        steps = int(curves[0][int(np.nanargmax(mean_curve)), 0])
    weights, _ = _fit_metric(tf, keras, x, rows_q, rows_c, scores, config, steps, diagonal=diagonal)
    return weights, steps


def train_metric(x: np.ndarray, rows_q: np.ndarray, rows_c: np.ndarray, scores: np.ndarray,
                 config: BaselineConfig) -> tuple[np.ndarray, dict]:
    """The linear metric of the strong baselines: with ``metric_diagonal``, first a diagonal W
    (its steps chosen on held-out pairs), then a full W on the reweighted features; one matrix
    ``diag(w) @ W`` either way. Returns (metric [D, D], {"metric_diagonal_steps", "metric_steps"})."""
    scales, diagonal_steps = np.eye(x.shape[1]), 0
    if config.metric_diagonal:
        scales, diagonal_steps = train_linear_metric(x, rows_q, rows_c, scores, config, diagonal=True)
    weights, steps = train_linear_metric(x @ scales, rows_q, rows_c, scores, config)
    return scales @ weights, {"metric_diagonal_steps": diagonal_steps, "metric_steps": steps}


def held_out_metric_embeddings(x: np.ndarray, rows_q: np.ndarray, rows_c: np.ndarray, scores: np.ndarray,
                               config: BaselineConfig, steps: Mapping[str, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each of the ``metric_splits`` held-out parts of the pairs (`held_out_parts`): the part's mask
    and ``x`` through the metric trained, with ``steps`` (`train_metric`'s), on the other pairs: what
    the metric gives pairs it was not fitted on, to choose what sits beside it."""
    out = []
    for held in held_out_parts(len(scores), config.metric_splits, config.seed):
        q, c, s = rows_q[~held], rows_c[~held], scores[~held]
        scales = np.eye(x.shape[1])
        if config.metric_diagonal:
            scales, _ = train_linear_metric(x, q, c, s, config, steps=int(steps["metric_diagonal_steps"]),
                                            diagonal=True)
        weights, _ = train_linear_metric(x @ scales, q, c, s, config, steps=int(steps["metric_steps"]))
        out.append((held, x @ (scales @ weights)))
    return out


def held_out_bases(x: np.ndarray, rows_q: np.ndarray, rows_c: np.ndarray, scores: np.ndarray, config: BaselineConfig,
                   steps: Mapping[str, int], widen) -> list[tuple[np.ndarray, Callable[[np.ndarray], float]]]:
    """`held_out_metric_embeddings` as the bases of `infer.rare_words.choose_weight`: each part's embedding
    through ``widen`` (to the width of what is added), and the Spearman of that part's pairs."""
    def part_score(held):
        return lambda embedding: pair_spearman(embedding, rows_q[held], rows_c[held], scores[held])

    return [(widen(embedding), part_score(held))
            for held, embedding in held_out_metric_embeddings(x, rows_q, rows_c, scores, config, steps)]


def held_out_parts(count: int, splits: int, seed: int) -> list[np.ndarray]:
    """Boolean masks over ``count`` pairs: ``splits`` disjoint parts of a seeded permutation
    (K-fold), or one random 20% when ``splits`` is 1."""
    rng = np.random.default_rng(seed)
    if splits <= 1:
        return [rng.random(count) < 0.2]
    part = np.empty(count, dtype=np.int64)
    part[rng.permutation(count)] = np.arange(count) % splits
    return [part == k for k in range(splits)]


def _fit_metric(tf, keras, x, rows_q, rows_c, scores, config: BaselineConfig, steps: int, evaluate=None,
                diagonal: bool = False):
    """W [D, D] after ``steps`` Adam steps from I, and the held-out curve (every 20 steps) on
    ``evaluate`` = (rows_q, rows_c, scores) when given. ``diagonal``: only W's diagonal is trained.

    Only the rows of W for columns of ``x`` that are not all zero are trained (the others get no
    gradient and stay rows of I): the baselines' features are zero-padded to a fixed width per fold
    (512 wide, ~100 columns in use), so this gives the same W about 3x faster (docs/benchmarks.md)."""
    dim = x.shape[1]
    active = np.flatnonzero(np.any(x != 0, axis=0))
    features = tf.constant(x[:, active], tf.float32)
    target = tf.constant(rank_targets(scores), tf.float32)
    q, c = tf.constant(rows_q), tf.constant(rows_c)
    start = np.eye(dim, dtype=np.float32)[active]
    initial = tf.constant(np.ones(len(active), np.float32) if diagonal else start)
    weights = tf.Variable(initial)
    optimizer = keras.optimizers.Adam(config.metric_diagonal_learning_rate if diagonal else config.metric_learning_rate)
    generator = tf.random.Generator.from_seed(config.seed)

    def transform(rows, w):
        return rows * w if diagonal else rows @ w

    def cosine(w, a, b):
        left = tf.math.l2_normalize(transform(tf.gather(features, a), w), axis=1)
        right = tf.math.l2_normalize(transform(tf.gather(features, b), w), axis=1)
        return tf.reduce_sum(left * right, axis=1)

    def as_rows(w):  # the trained rows of W [len(active), D]
        return start * w[:, None] if diagonal else w

    @tf.function
    def step():
        batch = generator.uniform([min(config.metric_batch, len(scores))], 0, len(scores), dtype=tf.int64)
        with tf.GradientTape() as tape:
            cos = cosine(weights, tf.gather(q, batch), tf.gather(c, batch))
            loss = tf.reduce_mean((cos - tf.gather(target, batch)) ** 2)
            loss += config.metric_l2 * tf.reduce_sum((weights - initial) ** 2)
        optimizer.apply_gradients([(tape.gradient(loss, weights), weights)])

    curve = []
    if evaluate is not None:
        held_q, held_c, held_scores = evaluate
        used, inverse = np.unique(np.concatenate([held_q, held_c]), return_inverse=True)
        held_x = x[used][:, active]  # only the held-out pairs' videos, only the columns in use
        held_rows = (inverse[:len(held_q)], inverse[len(held_q):], held_scores)
        curve.append((0, _metric_spearman(held_x, start, *held_rows)))
    for index in range(1, steps + 1):
        step()
        if evaluate is not None and index % 20 == 0:
            curve.append((index, _metric_spearman(held_x, as_rows(weights.numpy()), *held_rows)))
    full = np.eye(dim)
    full[active] = as_rows(weights.numpy())
    return full, np.array(curve, dtype=np.float64).reshape(-1, 2)


def _metric_spearman(x, w, rows_q, rows_c, scores) -> float:
    return pair_spearman(x @ w, rows_q, rows_c, scores)


def fold_baselines(table: VideoTable, train_pairs: Labels, config: BaselineConfig) -> FoldBaselines:
    """Every baseline for one fold; choices made on ``train_pairs`` only."""
    q, c, s = table.rows(train_pairs.query.tolist()), table.rows(train_pairs.candidate.tolist()), train_pairs.score
    out: dict[str, np.ndarray] = {}
    choices: dict[str, float] = {}
    widths: dict[str, int] = {}
    out["mean_frame"] = table.mean_frame
    out["centred_frame"] = table.frame_whitener.centred(table.mean_frame)

    def score(x):
        return pair_spearman(x, q, c, s)

    above = config.metric_components_above if config.metric_diagonal else 0

    def best_k(whitener: Whitener, x: np.ndarray, grid: Sequence[int]) -> tuple[list[int], int, float]:
        """The grid capped at the whitener's rank, its in-sample best k and that k's score."""
        grid = sorted({min(k, whitener.vectors.shape[1]) for k in grid})
        k, best = _best({k: k for k in grid}, lambda k: score(whitener(x, k)))
        return grid, k, best

    def choose_k(whitener: Whitener, x: np.ndarray, grid: Sequence[int], name: str,
                 found: tuple[list[int], int, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Whitened with the best k (``found``: `best_k`'s answer, already computed), and with the
        metric's k (``above`` grid steps more), each
        zero-padded to the grid's largest k: every fold's vectors have the same width and share the
        leading (fold-independent PCA) coordinates, so test embeddings of different folds can be
        averaged. ``{name}_components`` records the metric's k (the wide path's)."""
        grid, k, _ = found or best_k(whitener, x, grid)
        k_metric = grid[min(grid.index(k) + above, len(grid) - 1)]
        choices[f"{name}_components_alone"], choices[f"{name}_components"] = k, k_metric
        widths[name] = max(grid)
        centred = whitener.centred(x)
        alone = centred @ whitener.kernel(k, max(grid))
        return alone, (alone if k_metric == k else centred @ whitener.kernel(k_metric, max(grid)))

    # the frame space, among those of config.frame_spaces the table holds (a table made with one frame
    # whitener has one): the whitened frame alone at its best k, in sample, as k is chosen
    spaces = [name for name in config.frame_spaces if name in table.frame_whiteners]
    if not spaces:
        raise ValueError(f"frame_spaces {list(config.frame_spaces)}: the table has none of them "
                         f"(it has {sorted(table.frame_whiteners)})")
    found = {name: best_k(table.frame_whiteners[name], table.mean_frame, config.frame_components) for name in spaces}
    space_scores = {name: value[2] for name, value in found.items()}
    frame_space = max(space_scores, key=space_scores.get)
    if space_scores[frame_space] <= space_scores[spaces[0]] + config.frame_space_margin:
        frame_space = spaces[0]  # the preferred space, unless another is clearly better in sample
    choices["frame_space"] = frame_space
    if len(space_scores) > 1:
        choices.update({f"frame_{name}_score": value for name, value in space_scores.items()})
    frame_whitener = table.frame_whiteners[frame_space]
    frame, frame_metric = choose_k(frame_whitener, table.mean_frame, config.frame_components, "frame",
                                   found[frame_space])
    title, title_metric = choose_k(table.title_whitener, table.title, config.text_components, "title")
    asr, asr_metric = choose_k(table.asr_whitener, table.asr, config.text_components, "asr")
    out["whitened_frame"] = frame
    out["title_lsa"] = title

    parts = [l2n(frame), l2n(title), l2n(asr)]
    grid = {(a, b): (a, b) for a in config.text_weights for b in config.text_weights}
    (a, b), _ = _best(grid, lambda ab: score(np.concatenate([parts[0], ab[0] * parts[1], ab[1] * parts[2]], 1)))
    choices["title_weight"], choices["asr_weight"] = a, b
    combined = np.concatenate([parts[0], a * parts[1], b * parts[2]], axis=1)  # fixed width in every fold
    out["combined"] = combined

    metric_input = np.concatenate([l2n(frame_metric), a * l2n(title_metric), b * l2n(asr_metric)], axis=1)
    if table.frame_tags is not None:  # a fourth part: its best k alone, its weight beside the other three
        whitener = table.frame_tags_whitener
        grid, k, _ = best_k(whitener, table.frame_tags, config.frame_tags_components)
        choices["frame_tags_components"] = k
        widths["frame_tags"] = max(grid)
        frame_tags = l2n(whitener.centred(table.frame_tags) @ whitener.kernel(k, max(grid)))
        g, _ = _best({w: w for w in config.text_weights},
                     lambda w: score(np.concatenate([metric_input, w * frame_tags], axis=1)))
        choices["frame_tags_weight"] = g
        metric_input = np.concatenate([metric_input, g * frame_tags], axis=1)
    weights, steps = train_metric(metric_input, q, c, s, config)
    choices.update(steps)
    out["linear_metric"] = metric_input @ weights
    if table.title_rare is not None:  # beside the metric: [l2n(metric) | g * rare]
        from infer import rare_words as rw

        def padded(x):
            return np.concatenate([l2n(x), np.zeros((len(x), width))], axis=1)

        width = table.title_rare.shape[1]
        rare = np.concatenate([np.zeros_like(out["linear_metric"]), table.title_rare], axis=1)
        # g chosen on the training pairs, each part scored beside a metric fitted without it
        weight, _ = rw.choose_weight(held_out_bases(metric_input, q, c, s, config, steps, padded), rare)
        choices["rare_words_weight"] = weight
        out["linear_metric"] = padded(out["linear_metric"]) + weight * rare
    return FoldBaselines(out, choices, weights, frame_whitener, widths, metric_input)
