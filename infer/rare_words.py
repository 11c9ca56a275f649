"""A title's rare words, matched exactly: a fixed random projection of their TF-IDF, in the embedding's spare directions.

The linear metric reads a title through a low-rank basis (LSA or the tags, whitened to at most 64-128
components), which keeps what many titles share and blurs what few do: a named entity, a series, a
person spelled in two or three rare words. Two titles that share such a word are often the same
subject, and their plain TF-IDF cosine ranks pairs better than the basis does (on the foreign draws
0.27-0.31 against 0.17-0.20 for the title alone). A 256-d embedding cannot hold a vocabulary-wide
TF-IDF, but it need not hold all of it: only the words in few videos (``max_df``: at most that share of
the fit videos), whose TF-IDF vectors, restricted to them, are sparse and, for two titles on one
subject, nearly parallel. A random projection with orthonormal columns (Johnson-Lindenstrauss) keeps
their inner products up to noise of about ``1 / sqrt(width)``; it is placed in the ``width`` directions
where the rest of the embedding has least energy over the training videos, so it barely disturbs it,
and its weight is chosen on the training pairs, each scored beside a linear metric fitted without it
(0 turns it off, as on worlds whose titles have no rare words shared by similar videos). No labels are
used except for that one weight.

Used by the wide path (`train.wide_path`, in-graph in `models.layers.WidePath`, over the model's
tokens) and the strong baselines (`infer.strong_baselines`, over jieba words), so both read alike.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import scipy.sparse

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # of the rare-word part beside the unit-length rest, chosen on training pairs


def smoothed_idf(counts: scipy.sparse.spmatrix, ignore: Iterable[int] = ()) -> np.ndarray:
    """``ln((1 + n) / (1 + df)) + 1`` per token of ``counts`` [n, vocab] (scikit-learn's smoothed IDF); 0 for
    tokens in fewer than 2 documents and for ``ignore`` (special tokens). The wide path's TF-IDF too."""
    counts = scipy.sparse.csr_matrix(counts)
    n = counts.shape[0]
    df = np.asarray((counts > 0).sum(axis=0)).ravel()
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    idf[df < 2] = 0.0
    idf[[i for i in ignore if 0 <= i < len(idf)]] = 0.0
    return idf


def rare_idf(counts: scipy.sparse.spmatrix, max_df: float, ignore: Iterable[int] = ()) -> np.ndarray:
    """[vocab]: `smoothed_idf` of the tokens in at least 2 and at most ``max(2, max_df * n)`` of the ``n``
    documents of ``counts`` [n, vocab]; 0 for every other token and for ``ignore`` (special tokens)."""
    if not 0.0 < max_df <= 1.0:
        raise ValueError(f"rare words: max_df must be in (0, 1], got {max_df}")
    idf = smoothed_idf(counts, ignore)
    df = np.asarray((scipy.sparse.csr_matrix(counts) > 0).sum(axis=0)).ravel()
    idf[df > max(2.0, max_df * counts.shape[0])] = 0.0
    return idf


def tfidf_rows(counts: scipy.sparse.spmatrix, idf: np.ndarray) -> scipy.sparse.csr_matrix:
    """Sublinear TF (``1 + ln count``) x ``idf``, rows L2-normalised (rows without a weighted token stay 0):
    `models.layers.WidePath.tfidf` in numpy."""
    out = scipy.sparse.csr_matrix(counts, dtype=np.float64, copy=True)
    out.data = 1.0 + np.log(np.maximum(out.data, 1.0))
    out = scipy.sparse.csr_matrix(out.multiply(np.asarray(idf, dtype=np.float64)[None, :]))
    norms = np.sqrt(np.asarray(out.multiply(out).sum(axis=1)).ravel())
    return scipy.sparse.csr_matrix(scipy.sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ out)


def random_projection(idf: np.ndarray, width: int, seed: int) -> np.ndarray:
    """[vocab, width]: zero rows for tokens of zero ``idf``; the others' rows from a Gaussian matrix
    with orthonormal columns scaled by ``sqrt(rare / width)`` (``rare`` tokens), so a unit-length TF-IDF
    row keeps about unit length and inner products are kept in expectation. With ``rare <= width`` the
    rows are orthonormal instead: inner products are kept exactly."""
    if width < 1:
        raise ValueError(f"rare words: width must be >= 1, got {width}")
    active = np.flatnonzero(np.asarray(idf) > 0)
    projection = np.zeros((len(idf), width))
    if len(active) == 0:
        return projection
    gaussian = np.random.default_rng(seed).normal(size=(max(len(active), width), min(len(active), width)))
    orthonormal = np.linalg.qr(gaussian)[0]  # orthonormal columns
    if len(active) > width:
        projection[active] = orthonormal * np.sqrt(len(active) / width)
    else:
        projection[active] = orthonormal.T  # [rare, width] with orthonormal rows
    return projection


def free_directions(embeddings: np.ndarray, width: int) -> np.ndarray:
    """[width, D]: orthonormal directions in which the L2-normalised rows of ``embeddings`` [n, D] have
    least energy (the smallest eigenvalues of their uncentred second moment)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if width > x.shape[1]:
        raise ValueError(f"rare words: width {width} exceeds the embedding's {x.shape[1]} dimensions")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    values, vectors = np.linalg.eigh(x.T @ x)  # ascending
    return vectors[:, :width].T


def choose_weight(bases: Sequence[tuple[np.ndarray, Callable[[np.ndarray], float]]], rare: np.ndarray,
                  weights: Sequence[float] = WEIGHTS) -> tuple[float, dict[str, float]]:
    """The weight ``g`` of ``weights`` whose ``l2n(base) + g * rare`` scores best on average over
    ``bases``, each an embedding of the videos and the score of its pairs (the Spearman of some training
    pairs), the smaller on a tie; and every weight's mean score. Each base is best the linear metric
    fitted without the pairs it is scored on (`infer.strong_baselines.held_out_metric_embeddings`): scored
    on the pairs it was fitted on, the metric looks better than it is, and the rare words' weight too low."""
    scores = {}
    for g in sorted(weights):
        values = []
        for base, score in bases:
            base = np.asarray(base, dtype=np.float64)
            base = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
            value = float(score(base + g * rare))
            values.append(value if np.isfinite(value) else -1.0)
        scores[float(g)] = float(np.mean(values))
    best = max(scores.values())
    return min(g for g, s in scores.items() if s == best), scores
