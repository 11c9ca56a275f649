"""Spearman evaluation exactly as the official scorer, out-of-fold scoring and raw baselines.

The official metric: for every labelled pair, the cosine similarity of the two videos' embeddings;
then ONE global ``scipy.stats.spearmanr`` between those cosines and the label scores over all
pairs. A pair whose video has no embedding is an error (naming the id), never skipped.

Out of fold: with K-fold pair cross-validation each pair lies in exactly one fold's validation
shard, so it is scored with that fold's model (the one that did not train on it), and the cosines
of all folds are pooled into one global Spearman -- the same statistic as on the test set.

The baselines take in-memory inputs (the caller reads the records), so they are testable:
the mean frame feature of each video, and a character 1-2-gram TF-IDF of the title (Chinese titles
have no spaces, so characters and character bigrams stand in for words).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import scipy.stats

from infer.embeddings_io import EmbeddingSet, MissingIdError, l2_normalize, make_pairs
from tfrecord_tools.errors import DataError
from tfrecord_tools.labels import Labels

_CHUNK = 65536  # pairs per block, bounds memory of the gathered rows


def pair_cosines(embedding_set: EmbeddingSet, query_ids: Sequence[str] | np.ndarray,
                 candidate_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """Cosine similarity (float64 [P]) of each (query, candidate) pair: L2-normalise, then dot."""
    query_rows = embedding_set.rows(query_ids)
    candidate_rows = embedding_set.rows(candidate_ids)
    if len(query_rows) != len(candidate_rows):
        raise ValueError(f"{len(query_rows)} query ids but {len(candidate_rows)} candidate ids")
    cosines = np.empty(len(query_rows), dtype=np.float64)
    for start in range(0, len(query_rows), _CHUNK):
        stop = start + _CHUNK
        left = l2_normalize(embedding_set.embeddings[query_rows[start:stop]].astype(np.float64))
        right = l2_normalize(embedding_set.embeddings[candidate_rows[start:stop]].astype(np.float64))
        cosines[start:stop] = np.einsum("ij,ij->i", left, right)
    return cosines


def _labelled_cosines(embedding_set: EmbeddingSet, labels: Labels) -> np.ndarray:
    try:
        return pair_cosines(embedding_set, labels.query, labels.candidate)
    except MissingIdError as error:
        raise MissingIdError(error.path, error.where, f"{error.problem}; needed by the pairs of {labels.path}") from None


def spearman_of(cosines: np.ndarray, scores: np.ndarray) -> float:
    """One global Spearman rank correlation (NaN when either side is constant, as scipy gives)."""
    if len(cosines) != len(scores):
        raise ValueError(f"{len(cosines)} cosines but {len(scores)} scores")
    if len(cosines) < 2:
        raise ValueError("Spearman needs at least two pairs")
    if np.ptp(cosines) == 0 or np.ptp(scores) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(cosines, scores).statistic)


def spearman(embedding_set: EmbeddingSet, labels: Labels) -> float:
    """The official score: global Spearman between pair cosines and label scores."""
    return spearman_of(_labelled_cosines(embedding_set, labels), labels.score)


def out_of_fold_spearman(fold_sets: Mapping[int, EmbeddingSet], labels: Labels, pair_folds: np.ndarray) -> float:
    """Global Spearman where pair i is scored with ``fold_sets[pair_folds[i]]``.

    ``pair_folds[i]`` is the fold whose validation shard holds pair i, so each pair is embedded
    by the model that never trained on it.
    """
    pair_folds = np.asarray(pair_folds)
    if pair_folds.shape != (len(labels),):
        raise ValueError(f"pair_folds has shape {pair_folds.shape}, expected ({len(labels)},) (one fold per pair)")
    cosines = np.empty(len(labels), dtype=np.float64)
    for fold in np.unique(pair_folds).tolist():
        if fold not in fold_sets:
            raise DataError(labels.path, None, f"pairs assigned to fold {fold} but no embeddings for that fold "
                                               f"(have folds {sorted(fold_sets)})")
        mask = pair_folds == fold
        fold_pairs = Labels(labels.path, labels.query[mask], labels.candidate[mask], labels.score[mask])
        cosines[mask] = _labelled_cosines(fold_sets[fold], fold_pairs)
    return spearman_of(cosines, labels.score)


def pairs_by_fold(val_sets: Mapping[int, EmbeddingSet]) -> tuple[Labels, np.ndarray]:
    """All folds' validation pairs (from each set's pairs part) pooled, with each pair's fold.

    A pair listed in two folds' validation shards is an error: it would be scored twice.
    """
    queries, candidates, scores, folds = [], [], [], []
    seen: dict[tuple[str, str], int] = {}
    for fold in sorted(val_sets):
        pairs = val_sets[fold].pairs
        if pairs is None:
            raise DataError(val_sets[fold].name, None, "no pairs part (pair_query/pair_candidate/pair_score): "
                                                       "cannot tell which pairs this fold validates")
        for key in zip(pairs.query.tolist(), pairs.candidate.tolist()):
            if key in seen:
                raise DataError(val_sets[fold].name, None, f"pair {key[0]}/{key[1]} is also in fold {seen[key]}'s "
                                                           "validation pairs (folds must not overlap)")
            seen[key] = fold
        queries.append(pairs.query)
        candidates.append(pairs.candidate)
        scores.append(pairs.score)
        folds.append(np.full(len(pairs), fold, dtype=np.int64))
    if not folds:
        raise ValueError("no validation sets given")
    labels = make_pairs(np.concatenate(queries), np.concatenate(candidates), np.concatenate(scores),
                        where="out-of-fold pairs")
    return labels, np.concatenate(folds)


def per_fold_spearman(val_sets: Mapping[int, EmbeddingSet]) -> dict[int, float]:
    """Each fold's Spearman on its own validation pairs (what the finetune picks its best on)."""
    results = {}
    for fold in sorted(val_sets):
        if val_sets[fold].pairs is None:
            raise DataError(val_sets[fold].name, None, "no pairs part: cannot score this fold")
        results[fold] = spearman(val_sets[fold], val_sets[fold].pairs)
    return results


def mean_frame_baseline(mean_frames: Mapping[str, np.ndarray], name: str = "mean_frame") -> EmbeddingSet:
    """The raw frame baseline: each video's embedding is its mean frame feature vector."""
    if not mean_frames:
        raise ValueError("mean_frame_baseline: no videos given")
    ids = list(mean_frames)
    try:
        matrix = np.stack([np.asarray(mean_frames[key], dtype=np.float32).reshape(-1) for key in ids])
    except ValueError as error:
        raise DataError(name, None, f"mean frame vectors differ in length ({error})") from None
    return EmbeddingSet(np.asarray(ids, dtype=str), matrix, None, name)


def title_tfidf_baseline(titles: Mapping[str, str], dim: int | None = 256, max_features: int | None = 50000,
                         seed: int = 0, name: str = "title_tfidf") -> EmbeddingSet:
    """Character 1-2-gram TF-IDF of each title (sublinear tf, L2 rows).

    With ``dim`` the sparse TF-IDF is reduced by TruncatedSVD (latent semantic analysis) to at most
    ``dim`` columns so the result fits a submission and memory; ``dim=None`` keeps it whole (dense).
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not titles:
        raise ValueError("title_tfidf_baseline: no videos given")
    ids = list(titles)
    texts = [titles[key] if isinstance(titles[key], str) else "" for key in ids]
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True, max_features=max_features,
                                 dtype=np.float32)
    try:
        tfidf = vectorizer.fit_transform(texts)
    except ValueError as error:  # every title empty: no vocabulary
        raise DataError(name, None, f"cannot build a title vocabulary ({error})") from None
    if dim is not None and tfidf.shape[1] > dim:
        components = min(dim, tfidf.shape[0])
        matrix = TruncatedSVD(n_components=components, random_state=seed).fit_transform(tfidf)
    else:
        matrix = tfidf.toarray()
    return EmbeddingSet(np.asarray(ids, dtype=str), matrix.astype(np.float32), None, name)
