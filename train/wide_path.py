"""Fit a model's wide path (`models.layers.WidePath`) when a finetune starts.

The wide path is the strong linear-metric baseline of `infer.strong_baselines`, computed from the
model's own inputs (standardised frames, the tokens of ``input_ids``) so that it runs in-graph, in
every checkpoint and export. A pass over the fold's training pairs (and, for the unsupervised
statistics, up to ``wide.max_fit_videos`` pointwise videos of the pretrain data; no labels) gathers
each video's mean frame and title / ASR token counts; then, exactly as the baseline:

* TF-IDF (sublinear TF, smoothed IDF, tokens in fewer than 2 videos and special tokens dropped, rows
  L2-normalised) -> a linear basis -> PCA whitening, one per text. The basis (``wide.text_basis``)
  is the baseline's LSA (TruncatedSVD, ``wide.lsa_dim``), or ``tags``: a ridge regression from the
  text's TF-IDF to the videos' tags (their TF-IDF reduced by TruncatedSVD to ``wide.lsa_dim``,
  standardised), fitted on the same unlabelled and training-pair videos. It reads a title the way
  tag pretraining teaches a model to, linearly: words that predict the same tags land together even
  when two titles share no word (see docs/benchmarks.md, "Titles read through the tags"). By
  default (``both``) the two are stacked, each scaled to unit spread, and the whitening and metric
  below take from each what ranks the training pairs; ``auto`` keeps, per text, the one whose
  whitened vectors rank them better (where tags are a uniform tail of noise, the LSA);
* PCA whitening of the mean frames; with ``wide.frame_tags_width > 0`` (an option, off by default)
  also a fourth part, the mean frame read through the tags (`frame_tags_map`: a ridge from the
  whitened mean frames to the videos' tag LSA on the same videos), its k and weight chosen on the
  training pairs;
* components, title / ASR weights and the linear metric (a diagonal stage, then a full W:
  ``wide.metric_diagonal``) chosen or trained on the training pairs
  (`infer.strong_baselines.fold_baselines`), never on the validation shard.

The result (weights and choices) is written to ``RUN/wide_path.npz``; a resumed finetune reads it
back instead of refitting.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse
from tqdm import tqdm

from infer import frame_words as fw
from infer import rare_words as rw
from infer.rare_words import smoothed_idf, tfidf_rows
from infer import strong_baselines as sb
from models.layers import masked_mean
from tfrecord_tools import reader, schema
from tfrecord_tools.atomic import atomic_path
from tfrecord_tools.labels import Labels

WIDE_FILE = "wide_path.npz"


@dataclasses.dataclass
class VideoInputs:
    """What the wide path sees of each video: id, mean (standardised) frame, token counts."""

    ids: list[str]
    mean_frames: np.ndarray  # [N, D] float64
    title_counts: scipy.sparse.csr_matrix  # [N, vocab]
    asr_counts: scipy.sparse.csr_matrix  # [N, vocab]
    tags: scipy.sparse.csr_matrix | None = None  # [N, tag vocab] multi-hot (None: not collected)
    # the (standardised) frames' spread within videos, over the videos' real frames, for the ``within``
    # frame space; None: not collected
    frame_spread: sb.WithinVideoSpread | None = None


class _Collector:
    def __init__(self, model):
        self.model, self.layer = model, model.wide_path
        self.ids: list[str] = []
        self.seen: set[str] = set()
        self.frames: list[np.ndarray] = []
        self.title: list[scipy.sparse.csr_matrix] = []
        self.asr: list[scipy.sparse.csr_matrix] = []
        self.tags: list[scipy.sparse.csr_matrix] = []
        self.spread = sb.WithinVideoSpread(int(self.layer.frame_mean.shape[0]))

    def add(self, videos: dict) -> None:
        ids = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in videos["id"].numpy()]
        new = np.array([key not in self.seen for key in ids])
        if not new.any():
            return
        frames = self.model.frame_standardizer(videos["frames"], videos["frame_mask"])
        means = self.layer.mean_frame(frames, videos["frame_mask"]).numpy().astype(np.float64)
        plain = means if self.layer.frame_words <= 0 else masked_mean(frames, videos["frame_mask"]).numpy()
        mask = videos["frame_mask"].numpy()[new] > 0
        deviations = (frames.numpy()[new].astype(np.float64) - plain[new][:, None, :]) * mask[..., None]
        self.spread.add((deviations ** 2).sum(axis=(0, 1)), int(np.maximum(mask.sum(axis=1) - 1, 0).sum()))
        title, asr = self.layer.token_counts(videos["input_ids"], videos["attention_mask"])
        for key, is_new in zip(ids, new):
            if is_new:
                self.seen.add(key)
                self.ids.append(key)
        self.frames.append(means[new])
        self.title.append(scipy.sparse.csr_matrix(title.numpy()[new]))
        self.asr.append(scipy.sparse.csr_matrix(asr.numpy()[new]))
        if "tags" in videos:  # absent where the decoder has no tag list
            self.tags.append(scipy.sparse.csr_matrix(videos["tags"].numpy()[new]))

    def result(self) -> VideoInputs:
        dim, vocab = int(self.layer.frame_mean.shape[0]), self.layer.vocab_size
        if not self.ids:
            return VideoInputs([], np.zeros((0, dim)), scipy.sparse.csr_matrix((0, vocab)),
                               scipy.sparse.csr_matrix((0, vocab)), frame_spread=self.spread)
        tags = scipy.sparse.vstack(self.tags).tocsr() if len(self.tags) == len(self.title) else None
        return VideoInputs(list(self.ids), np.concatenate(self.frames), scipy.sparse.vstack(self.title).tocsr(),
                           scipy.sparse.vstack(self.asr).tocsr(), tags, self.spread)


def collect_pairs(model, files: Sequence[str], decoder, batch_size: int = 256,
                  progress: bool = True) -> tuple[VideoInputs, Labels]:
    """Every distinct video of the pair shards ``files`` and the pairs' (query, candidate, sim)."""
    collector = _Collector(model)
    query, candidate, score = [], [], []
    with reader.record_errors():
        for batch in tqdm(reader.read_pairs(list(files), decoder, batch_size), desc="wide path: pairs",
                          unit="batch", disable=not progress):
            collector.add(batch["video_1"])
            collector.add(batch["video_2"])
            query += [v.decode("utf-8") for v in batch["video_1"]["id"].numpy()]
            candidate += [v.decode("utf-8") for v in batch["video_2"]["id"].numpy()]
            score.append(batch["sim"].numpy())
    labels = Labels("fold training shards", np.asarray(query, dtype=object), np.asarray(candidate, dtype=object),
                    np.concatenate(score).astype(np.float64) if score else np.zeros(0))
    return collector.result(), labels


def collect_videos(model, files: Sequence[str], decoder, max_videos: int, batch_size: int = 256,
                   progress: bool = True, kind: schema.RecordKind = schema.RecordKind.POINTWISE,
                   desc: str = "wide path: unlabelled") -> VideoInputs:
    """The first ``max_videos`` distinct videos of ``files`` (records of ``kind``; no labels)."""
    collector = _Collector(model)
    if files and max_videos > 0:
        dataset = reader.read_videos(list(files), kind, decoder, batch_size)
        with reader.record_errors():
            for batch in tqdm(dataset, desc=desc, unit="batch", disable=not progress):
                collector.add(batch)
                if len(collector.ids) >= max_videos:
                    break
    return collector.result()


def collect_scored(model, pair_files: Sequence[str], test_files: Sequence[str], decoder, max_videos: int,
                   batch_size: int = 256, progress: bool = True) -> VideoInputs:
    """The videos the fold's models will score, inputs only: both sides of the validation pairs
    ``pair_files`` and the test videos of ``test_files`` (at most ``max_videos`` of these); their
    tags are left out (test videos have none), so they feed only the unsupervised statistics."""
    pairs, _ = collect_pairs(model, pair_files, decoder, batch_size, progress) if pair_files else (None, None)
    tests = collect_videos(model, test_files, decoder, max_videos, batch_size, progress, schema.RecordKind.TEST,
                           desc="wide path: test videos")
    return merged(without_tags(pairs), without_tags(tests)) if pairs is not None else without_tags(tests)


def collect_frame_sample(model, unlabelled_files: Sequence[str], pair_files: Sequence[str], decoder, max_videos: int,
                         batch_size: int = 256, progress: bool = True) -> list[np.ndarray]:
    """The real frames [n, D] (as the model's frame standardiser gives them) of up to ``max_videos`` distinct
    videos: the unlabelled ones first, then both sides of the pairs of ``pair_files`` (no labels read)."""
    videos: list[np.ndarray] = []
    seen: set[str] = set()

    def add(batch: dict) -> None:
        frames = model.frame_standardizer(batch["frames"], batch["frame_mask"]).numpy()
        masks = batch["frame_mask"].numpy() > 0
        for key, video_frames, mask in zip(batch["id"].numpy(), frames, masks):
            if key not in seen and len(videos) < max_videos:
                seen.add(key)
                videos.append(video_frames[mask].astype(np.float64))

    batches = []
    if unlabelled_files:
        batches.append(reader.read_videos(list(unlabelled_files), schema.RecordKind.POINTWISE, decoder, batch_size))
    if pair_files:
        batches.append(batch[side] for batch in reader.read_pairs(list(pair_files), decoder, batch_size)
                       for side in ("video_1", "video_2"))
    with reader.record_errors(), tqdm(total=max_videos, desc="wide path: frame words", unit="video",
                                      disable=not progress) as bar:
        for source in batches:
            for batch in source:
                before = len(videos)
                add(batch)
                bar.update(len(videos) - before)
                if len(videos) >= max_videos:
                    return videos
    return videos


def fit_frame_words(model, unlabelled_files: Sequence[str], pair_files: Sequence[str], decoder, wide, seed: int = 0,
                    progress: bool = True) -> fw.FrameWords:
    """The visual words of ``wide.frame_words`` (`infer.frame_words.fit_within_whitened`) on a sample of the
    model's standardised frames, set in ``model.wide_path`` so that the path's mean frames are pooled by them."""
    sample = collect_frame_sample(model, unlabelled_files, pair_files, decoder, wide.frame_words_fit_videos,
                                  progress=progress)
    words = fw.fit_within_whitened(sample, wide.frame_words, wide.frame_words_width, wide.frame_words_power, seed=seed,
                                   fits=wide.frame_words_fits)
    model.wide_path.set_frame_words(words.arrays())
    return words


def without_tags(videos: VideoInputs) -> VideoInputs:
    return dataclasses.replace(videos, tags=None)


def merged(first: VideoInputs, second: VideoInputs, exclude: Iterable[str] = ()) -> VideoInputs:
    """``first`` then the videos of ``second`` not in ``first`` or ``exclude``; tags stacked when
    ``first`` has them (videos of ``second`` without tags get an empty row), else None. The spread
    within videos adds both sets' sums (a video of both counts twice there: a statistic of frames, not
    a list of videos), None where either has none."""
    skip = set(first.ids) | set(exclude)
    keep = np.array([key not in skip for key in second.ids], dtype=bool)
    rows = np.flatnonzero(keep)
    tags = None
    if first.tags is not None:
        extra = second.tags[rows] if second.tags is not None else scipy.sparse.csr_matrix((len(rows), first.tags.shape[1]))
        tags = scipy.sparse.vstack([first.tags, extra]).tocsr()
    spread = None
    if first.frame_spread is not None and second.frame_spread is not None:
        spread = sb.WithinVideoSpread.pooled(len(first.frame_spread.squares), (first.frame_spread, second.frame_spread))
    return VideoInputs(first.ids + [second.ids[i] for i in rows],
                       np.concatenate([first.mean_frames, second.mean_frames[rows]]),
                       scipy.sparse.vstack([first.title_counts, second.title_counts[rows]]).tocsr(),
                       scipy.sparse.vstack([first.asr_counts, second.asr_counts[rows]]).tocsr(), tags, spread)


# ----------------------------------------------------------------------------- the fit
def _lsa(fit_docs: scipy.sparse.csr_matrix, dim: int, seed: int) -> np.ndarray:
    """[k, vocab] TruncatedSVD components of ``fit_docs`` (k <= dim), or one zero row when the
    documents carry nothing (no token in two documents)."""
    from sklearn.decomposition import TruncatedSVD

    if fit_docs.nnz == 0:
        return np.zeros((1, fit_docs.shape[1]))
    components = max(1, min(dim, fit_docs.shape[1] - 1, fit_docs.shape[0] - 1))
    return TruncatedSVD(n_components=components, random_state=seed).fit(fit_docs).components_.astype(np.float64)


MIN_TAGGED_VIDEOS = 50  # fewer videos with tags: the ``tags`` basis falls back to LSA


def _tag_targets(tags: scipy.sparse.csr_matrix, dim: int, seed: int) -> np.ndarray:
    """[n, k] standardised LSA of the tags' TF-IDF (k <= dim): what the ``tags`` basis predicts."""
    from sklearn.decomposition import TruncatedSVD

    tags = tags[:, np.flatnonzero(np.diff(tags.tocsc().indptr) >= 2)]  # tags of >= 2 videos (the rest weigh 0)
    docs = tfidf_rows(tags, smoothed_idf(tags))
    components = max(1, min(dim, docs.shape[1] - 1, docs.shape[0] - 1))
    targets = TruncatedSVD(n_components=components, random_state=seed).fit_transform(docs)
    return (targets - targets.mean(axis=0)) / np.maximum(targets.std(axis=0), 1e-9)


def _tag_basis(fit_docs: scipy.sparse.csr_matrix, tags: scipy.sparse.csr_matrix, dim: int, seed: int,
               alpha: float) -> np.ndarray | None:
    """[k, vocab] ridge coefficients from text TF-IDF rows to the tags' standardised LSA, fitted on
    the videos that have tags and text; None when fewer than `MIN_TAGGED_VIDEOS` have both."""
    from sklearn.linear_model import Ridge

    usable = (np.diff(tags.indptr) > 0) & (np.diff(fit_docs.indptr) > 0)
    if usable.sum() < MIN_TAGGED_VIDEOS or tags[usable].nnz == 0:
        return None
    targets = _tag_targets(tags[usable], dim, seed)
    return Ridge(alpha=alpha).fit(fit_docs[usable], targets).coef_.astype(np.float64)


def frame_tags_map(frames: np.ndarray, tags: scipy.sparse.csr_matrix, whitener: sb.Whitener, dim: int, seed: int,
                   alpha: float, inputs: int = 256) -> np.ndarray | None:
    """[D, k] linear map from a centred mean frame to its reading through the tags: a ridge from the
    PCA-whitened mean frames (``inputs`` components) to the tags' standardised LSA (`_tag_targets`,
    ``dim`` components), fitted on the rows of ``frames`` that have tags (no pair labels); None when
    fewer than `MIN_TAGGED_VIDEOS` have them. The mean frame's counterpart of the ``tags`` text basis:
    frame directions that predict the same tags count as alike (docs/benchmarks.md, "The test pairs
    lack the closest pairs, and frames read through the tags")."""
    from sklearn.linear_model import Ridge

    usable = np.diff(tags.indptr) > 0
    if usable.sum() < MIN_TAGGED_VIDEOS:
        return None
    kernel = whitener.kernel(min(inputs, whitener.vectors.shape[1]))
    whitened = whitener.centred(frames[usable]) @ kernel
    targets = _tag_targets(tags[usable], dim, seed)
    coef = Ridge(alpha=alpha).fit(whitened, targets).coef_  # [k, inputs]
    return kernel @ coef.T


def _joined(candidates: dict[str, np.ndarray], projected: dict[str, np.ndarray]
            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One basis, ``both``: the tags basis and the LSA stacked, each scaled to unit total spread
    over the training-pair videos so that the PCA whitening after it weighs the two alike (the
    ridge's predictions are far larger than LSA coordinates). The whitening and the metric then
    take from each what ranks the pairs, where ``auto`` must bet on one from a noisy comparison."""
    spread = {key: float(np.sqrt(value.var(axis=0).sum())) + 1e-12 for key, value in projected.items()}
    order = ("tags", "lsa")
    return ({"both": np.vstack([candidates[key] / spread[key] for key in order])},
            {"both": np.hstack([projected[key] / spread[key] for key in order])})


def _choose_basis(candidates: dict[str, np.ndarray], ids: Sequence[str], pairs: Labels,
                  config: sb.BaselineConfig) -> tuple[str, dict[str, float]]:
    """The basis (``text_basis="auto"``) whose text vectors, PCA-whitened with their best k, rank
    the training pairs best: the choice `infer.strong_baselines.fold_baselines` makes for k, made
    between bases. Neither basis has seen the pair labels (the tags basis fits the videos' tags), so
    the in-sample comparison is fair; where tags are noise (a long uniform tail) the LSA wins."""
    index = {key: row for row, key in enumerate(ids)}
    query = np.array([index[key] for key in pairs.query])
    candidate = np.array([index[key] for key in pairs.candidate])
    scores = {}
    for key, vectors in candidates.items():
        whitener = sb.Whitener.fit(*sb.moments(vectors), config.eps)
        grid = sorted({min(k, whitener.vectors.shape[1]) for k in config.text_components})
        _, scores[key] = sb._best({k: k for k in grid},
                                  lambda k, w=whitener, x=vectors: sb.pair_spearman(w(x, k), query, candidate, pairs.score))
    return max(scores, key=scores.get), {key: float(value) for key, value in scores.items()}


def fit_wide_path(scored: VideoInputs, unlabelled: VideoInputs, pairs: Labels, wide, output_size: int,
                  special_ids: Sequence[int], sep_token_id: int, seed: int = 0,
                  transductive: VideoInputs | None = None,
                  frame_transform: np.ndarray | None = None) -> tuple[dict, dict, np.ndarray]:
    """The frozen weights of a `WidePath` (names as its variables), the choices made, and the
    baseline's own linear-metric embedding of the ``scored`` videos (what the path must reproduce).

    ``scored``: the training-pair videos (their labels choose components, weights and W);
    ``unlabelled``: more videos for TF-IDF, LSA and the frame whitening (no labels);
    ``transductive``: the videos to be scored (validation and test), inputs only: they join the
    unlabelled videos (never the tag ridge's targets) and the text whitening, as in the strong
    baseline, which fits its statistics on every video it scores.
    ``frame_transform``: the model's frame standardiser's [D, D] transform (the mean frames here are
    standardised by it); the ``covariance`` frame space undoes it (``wide.frame_space``), so without it
    only the frames as given (``standardised``) or scaled by their spread within videos (``within``,
    from the inputs' ``frame_spread``) are whitened. With the ``standardize`` normalisation, ``within``
    is the strong baseline's: each feature of the powered frames divided by its spread within videos.
    """
    if len(pairs.score) < 10:
        raise ValueError(f"the wide path needs training pairs to fit its metric, got {len(pairs.score)}")
    extra_videos = 0
    if transductive is not None:
        before = len(unlabelled.ids)
        unlabelled = merged(unlabelled, without_tags(transductive), exclude=scored.ids)
        extra_videos = len(unlabelled.ids) - before
    extra_rows = slice(len(unlabelled.ids) - extra_videos, len(unlabelled.ids))
    defaults = sb.BaselineConfig()
    spaces = sb.FRAME_SPACES if wide.frame_space == "auto" else (wide.frame_space,)
    if frame_transform is not None and np.allclose(frame_transform, np.eye(len(frame_transform))):
        frame_transform = None  # no standardisation to undo: the two spaces are one
    if frame_transform is None:
        if wide.frame_space == "covariance":
            raise ValueError("model.wide.frame_space=covariance undoes the model's frame standardisation, but the "
                             "model has none (model.frame_normalization none): use standardised, within or auto")
        spaces = tuple(name for name in spaces if name != "covariance")
    spread = sb.WithinVideoSpread.pooled(scored.mean_frames.shape[1], (
        videos.frame_spread for videos in (unlabelled, scored) if videos.frame_spread is not None))
    if "within" in spaces and not spread.count:
        if wide.frame_space == "within":
            raise ValueError("model.wide.frame_space=within scales the frames by their spread within videos, but no "
                             "video has two real frames or more: use standardised or auto")
        spaces = tuple(name for name in spaces if name != "within")
    config = dataclasses.replace(
        defaults, seed=seed, metric_diagonal=wide.metric_diagonal, frame_spaces=spaces,
        frame_components=tuple(sorted({min(k, wide.frame_width) for k in defaults.frame_components})),
        text_components=tuple(sorted({min(k, wide.text_width) for k in defaults.text_components})),
        frame_tags_components=tuple(sorted({min(k, max(wide.frame_tags_width, 1))
                                            for k in defaults.frame_tags_components})))
    all_tags = None
    if unlabelled.tags is not None and scored.tags is not None:
        all_tags = scipy.sparse.vstack([unlabelled.tags, scored.tags]).tocsr()
    tags = all_tags if wide.text_basis in ("tags", "auto", "both") else None
    parts, bases = {}, {}
    for name, fit_counts, counts in (("title", unlabelled.title_counts, scored.title_counts),
                                     ("asr", unlabelled.asr_counts, scored.asr_counts)):
        idf = smoothed_idf(scipy.sparse.vstack([fit_counts, counts]).tocsr(), special_ids)
        docs = tfidf_rows(counts, idf)
        fit_docs = scipy.sparse.vstack([tfidf_rows(fit_counts, idf), docs]).tocsr()
        candidates = {}
        if tags is not None:
            tag_components = _tag_basis(fit_docs, tags, wide.lsa_dim, seed, wide.tag_ridge_alpha)
            if tag_components is not None:
                candidates["tags"] = tag_components
        if wide.text_basis != "tags" or not candidates:
            candidates["lsa"] = _lsa(fit_docs, wide.lsa_dim, seed)
        projected = {key: np.asarray(docs @ value.T) for key, value in candidates.items()}
        if wide.text_basis == "both" and len(candidates) == 2:
            candidates, projected = _joined(candidates, projected)
        basis = next(iter(candidates))
        if len(candidates) > 1:
            basis, scores = _choose_basis(projected, scored.ids, pairs, config)
            bases.update({f"{name}_{key}_score": value for key, value in scores.items()})
        bases[f"{name}_basis"] = basis
        # the text whitening: over the training-pair videos and the transductive ones
        extra = np.asarray(fit_docs[extra_rows] @ candidates[basis].T)  # fit_docs starts with the unlabelled rows
        parts[name] = (idf, candidates[basis], projected[basis], np.vstack([projected[basis], extra]))
    moments = sb.MomentAccumulator(scored.mean_frames.shape[1])
    moments.add(unlabelled.mean_frames)
    moments.add(scored.mean_frames)
    frame_mean, frame_cov = moments.result()
    frame_whitener = sb.Whitener.fit(frame_mean, frame_cov, config.eps)
    frame_whiteners = {"standardised": frame_whitener}
    if "covariance" in spaces:  # the standardiser undone: (z - mean) @ T⁻¹ = the powered frames, centred
        frame_whiteners["covariance"] = sb.Whitener.fit_transformed(
            frame_mean, frame_cov, np.linalg.pinv(np.asarray(frame_transform, dtype=np.float64)), config.eps)
    if "within" in spaces:  # z / σ_within(z) = (x - mean) / σ_within(x) under a diagonal standardiser
        frame_whiteners["within"] = sb.Whitener.fit_transformed(frame_mean, frame_cov,
                                                                sb.scaling_transform(spread.std()), config.eps)
    frame_tags = frame_tags_whitener = tags_map = None
    if wide.frame_tags_width > 0:
        if all_tags is None:
            raise ValueError("model.wide.frame_tags_width > 0 reads the frames through the videos' tags, but the "
                             "decoder gives none (no tag list): set it to 0")
        tags_map = frame_tags_map(np.concatenate([unlabelled.mean_frames, scored.mean_frames]), all_tags,
                                  frame_whitener, wide.lsa_dim, seed, wide.frame_tags_alpha)
        if tags_map is not None:  # centred frames have mean 0 over the whitener's videos: so do these
            frame_tags = frame_whitener.centred(scored.mean_frames) @ tags_map
            frame_tags_whitener = sb.Whitener.fit(np.zeros(tags_map.shape[1]), tags_map.T @ frame_cov @ tags_map,
                                                  config.eps)
        bases["frame_tags"] = "tags" if tags_map is not None else f"off: fewer than {MIN_TAGGED_VIDEOS} videos with tags"
    table = sb.table_of(scored.ids, scored.mean_frames, parts["title"][2], parts["asr"][2], moments, config.eps,
                        frame_whitener, frame_tags, frame_tags_whitener,
                        title_whitener=sb.Whitener.fit(*sb.moments(parts["title"][3]), config.eps),
                        asr_whitener=sb.Whitener.fit(*sb.moments(parts["asr"][3]), config.eps),
                        frame_whiteners=frame_whiteners)
    result = sb.fold_baselines(table, pairs, config)
    choices = dict(result.choices, **bases)

    # the baseline's combined layout [frame | title | asr] (each padded to result.widths) -> the
    # wide path's (padded to the configured widths, which the components never exceed)
    layer_widths = {"frame": wide.frame_width, "title": wide.text_width, "asr": wide.text_width}
    if wide.frame_tags_width > 0:
        layer_widths["frame_tags"] = wide.frame_tags_width
    metric = np.zeros((sum(layer_widths.values()), output_size))
    source = target = 0
    for name, width in layer_widths.items():
        keep = min(result.widths.get(name, 0), width)  # no frame_tags columns where the fit turned the part off
        metric[target:target + keep, :result.metric.shape[1]] = result.metric[source:source + keep]
        source, target = source + result.widths.get(name, 0), target + width

    part_weights = [1.0, choices["title_weight"], choices["asr_weight"]]
    weights = {
        "frame_mean": result.frame_whitener.mean,
        "frame_kernel": result.frame_whitener.kernel(int(choices["frame_components"]), wide.frame_width),
        "metric": metric,
        "sep_token_id": np.int32(sep_token_id),
    }
    if wide.frame_tags_width > 0:
        part_weights.append(choices.get("frame_tags_weight", 0.0))
        kernel = np.zeros((table.mean_frame.shape[1], wide.frame_tags_width))
        if tags_map is not None:
            kernel = tags_map @ frame_tags_whitener.kernel(int(choices["frame_tags_components"]), wide.frame_tags_width)
        weights["frame_tags_kernel"] = kernel
    weights["part_weights"] = np.array(part_weights)
    embedding = result.embeddings["linear_metric"]
    if wide.rare_words > 0:
        embedding = _fit_rare_words(weights, choices, result, unlabelled, scored, pairs, wide, output_size,
                                    special_ids, config, seed)
    for name in ("title", "asr"):
        idf, components, _, _ = parts[name]
        whitener = getattr(table, f"{name}_whitener")
        projection = whitener.kernel(int(choices[f"{name}_components"]), wide.text_width)
        weights[f"{name}_idf"] = idf
        weights[f"{name}_kernel"] = components.T @ projection
        weights[f"{name}_bias"] = -whitener.mean @ projection
    choices.update(videos=len(scored.ids), unlabelled_videos=len(unlabelled.ids) - extra_videos,
                   transductive_videos=extra_videos, pairs=int(len(pairs.score)))
    return {key: np.asarray(value, dtype=np.int32 if key == "sep_token_id" else np.float32)
            for key, value in weights.items()}, choices, embedding


def _fit_rare_words(weights: dict, choices: dict, result: sb.FoldBaselines, unlabelled: VideoInputs,
                    scored: VideoInputs, pairs: Labels, wide, output_size: int, special_ids: Sequence[int],
                    config: sb.BaselineConfig, seed: int) -> np.ndarray:
    """The title's rare tokens (`infer.rare_words`): their IDF over the fit videos, a random projection
    to ``wide.rare_words`` dimensions, placed in the directions where the linear metric's embeddings of
    the training-pair videos have least energy, with the weight that ranks the training pairs best, each
    held-out part of them beside the metric fitted without it (the metric's own held-out parts).
    Adds ``rare_idf``, ``rare_projection`` and ``rare_basis`` (the weight folded in) to ``weights``;
    returns the path's embedding of the scored videos (``l2n(metric) + rare``)."""
    def padded(x):
        out = np.zeros((len(x), output_size))
        out[:, :x.shape[1]] = x
        return out

    base = padded(result.embeddings["linear_metric"])
    idf = rw.rare_idf(scipy.sparse.vstack([unlabelled.title_counts, scored.title_counts]), wide.rare_words_max_df,
                      special_ids)
    projection = rw.random_projection(idf, wide.rare_words, seed)
    basis = rw.free_directions(base, wide.rare_words)
    rare = np.asarray(rw.tfidf_rows(scored.title_counts, idf) @ projection) @ basis
    index = {key: i for i, key in enumerate(scored.ids)}
    q = np.array([index[key] for key in pairs.query.tolist()])
    c = np.array([index[key] for key in pairs.candidate.tolist()])
    bases = sb.held_out_bases(result.metric_input, q, c, np.asarray(pairs.score), config, choices, padded)
    weight, scores = rw.choose_weight(bases, rare)
    weights.update(rare_idf=idf, rare_projection=projection, rare_basis=weight * basis)
    choices["rare_words"] = {"weight": weight, "scores": scores, "tokens": int(np.count_nonzero(idf)),
                             "width": wide.rare_words, "max_df": wide.rare_words_max_df}
    return sb.l2n(base) + weight * rare


# ----------------------------------------------------------------------------- in a finetune
def save_fit(path: str, weights: dict, choices: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, choices=np.array(json.dumps(choices)), **weights)


def load_fit(path: str) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as data:
        choices = json.loads(str(data["choices"]))
        return {key: data[key] for key in data.files if key != "choices"}, choices


def prepare_wide_path(model, run_dir: str, train_files: Sequence[str], unlabelled_files: Sequence[str], decoder,
                      tokenizer, model_config, writes: bool = True, progress: bool = True, seed: int = 0,
                      validation_files: Sequence[str] = (), test_files: Sequence[str] = ()) -> dict:
    """Fit (or read back from ``RUN/wide_path.npz``) and set ``model.wide_path``; returns the choices.
    With ``model.wide.transductive`` the videos of ``validation_files`` (pair shards) and
    ``test_files`` (test records) join the unsupervised statistics, inputs only."""
    path = os.path.join(run_dir, WIDE_FILE)
    if os.path.isfile(path):
        weights, choices = load_fit(path)
    else:
        sep = tokenizer.sep_token_id
        if sep is None:
            raise ValueError("the wide path splits title and ASR at the tokenizer's [SEP]; this tokenizer has none")
        model.wide_path.sep_token_id.assign(int(sep))
        words = None
        if model_config.wide.frame_words > 0:  # first: the mean frames below are pooled by them
            words = fit_frame_words(model, unlabelled_files, train_files, decoder, model_config.wide, seed, progress)
        scored, pairs = collect_pairs(model, train_files, decoder, progress=progress)
        unlabelled = collect_videos(model, unlabelled_files, decoder, model_config.wide.max_fit_videos,
                                    progress=progress)
        transductive = None
        if model_config.wide.transductive:
            transductive = collect_scored(model, validation_files, test_files, decoder,
                                          model_config.wide.max_fit_videos, progress=progress)
        weights, choices, _ = fit_wide_path(scored, unlabelled, pairs, model_config.wide, model_config.embedding_dim,
                                            model_config.text.special_token_ids, int(sep), seed, transductive,
                                            model.frame_standardizer.transform.numpy())
        if words is not None:
            weights.update({key: value.astype(np.float32) for key, value in words.arrays().items()})
            choices["frame_words"] = {"words": words.k, "fits": words.fits, "idf_min": float(words.idf.min()),
                                      "idf_max": float(words.idf.max())}
        if writes:
            save_fit(path, weights, choices)
    model.wide_path.set_weights_from(weights)
    return choices
