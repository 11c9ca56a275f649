"""Summary statistics of the real challenge files, embedded, and the helpers that reproduce them.

The synthetic generator (``tfrecord_tools.synth``) must look like the real data without needing the
real files at run time, so the few numbers it imitates live here as constants. They were measured
once on the real files of ``../shared/data/qqbrowser2021`` (``label.tsv``, ``test_a_info.csv``,
``tag_count_info.csv``, ``category_id_count_info.csv``, ``graph_info.csv`` and the two sample
videos); no id list is copied, only counts and fractions.

Helpers: the 0.05 score grid, the quantile map that turns any similarity into labels with exactly
the real score distribution, the total variation distance between label histograms, frame-count
sampling and the connected components of a label graph.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

# --- label.tsv: 67,899 pairs ---------------------------------------------------------------------
REAL_PAIRS = 67_899
REAL_QUERIES = 29_467
REAL_PAIR_VIDEOS = 63_613
REAL_COMPONENTS = 22_040
REAL_LARGEST_COMPONENT = 16_664
# Fraction of pairs per score 0.00, 0.05, ..., 1.00.
SCORE_DISTRIBUTION: tuple[float, ...] = (
    0.3637, 0.0551, 0.0382, 0.0304, 0.0192, 0.0156, 0.0166, 0.0232, 0.0232, 0.0201, 0.0695,
    0.0289, 0.0306, 0.0284, 0.0176, 0.0117, 0.0126, 0.0194, 0.0192, 0.0177, 0.1392,
)
# Queries by number of candidates (1..10). 79% of queries have one candidate and form isolated
# pairs; the rest list 5-10 candidates drawn from a shared pool (a candidate is reused by up to 107
# queries), which chains them into one giant component.
CANDIDATES_PER_QUERY: dict[int, int] = {
    1: 23_306, 2: 533, 3: 34, 4: 60, 5: 378, 6: 850, 7: 1_082, 8: 1_243, 9: 1_133, 10: 848,
}
# 1,928 of the 29,467 queries are also somebody's candidate.
QUERY_AS_CANDIDATE_FRACTION = 1_928 / 29_467

# --- frames --------------------------------------------------------------------------------------
# Frames per test_a video, from the record byte sizes (3,075 bytes a frame, ~200 bytes of text),
# clipped to [5, 32]; mean 16.0, median 13. 32 is the official cap (the spike: longer videos).
FRAME_COUNT_HISTOGRAM: dict[int, int] = {
    5: 47, 6: 378, 7: 857, 8: 1_280, 9: 2_558, 10: 4_128, 11: 2_847, 12: 2_358, 13: 1_901,
    14: 1_916, 15: 2_057, 16: 1_091, 17: 857, 18: 720, 19: 625, 20: 590, 21: 457, 22: 394,
    23: 364, 24: 346, 25: 325, 26: 295, 27: 288, 28: 289, 29: 248, 30: 263, 31: 492, 32: 3_542,
}
# The two real sample videos (float32 view): value range and mean per-frame L2 norm.
FRAME_VALUE_RANGE = (-0.26, 3.44)
FRAME_NORM_RANGE = (11.16, 13.03)

# --- tags and categories ---------------------------------------------------------------------------
TAGS_PER_VIDEO = 4.843  # 4,843,129 tag occurrences over the 1M pointwise videos
REAL_DISTINCT_TAGS = 62_880
# Share of all tag occurrences covered by the most frequent 100 / 1,000 / 10,000 tags.
TAG_TOP_COVERAGE: dict[int, float] = {100: 0.398, 1_000: 0.775, 10_000: 0.958}
REAL_CATEGORIES = 328
REAL_LEVEL1_CLASSES = 40  # first three digits of the five-digit ``1LLSS`` category id
# Sub-categories per level-1 class, largest first (sums to 328).
SUBCATEGORIES_PER_LEVEL1: tuple[int, ...] = (
    20, 16, 15, 14, 14, 13, 12, 12, 11, 11, 11, 10, 10, 10, 9, 9, 9, 8, 8, 8, 8, 8, 7, 7,
    6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2,
)
# Category size by popularity rank (videos out of 1,063,613): a few points of the curve; the
# generator interpolates log counts between them.
CATEGORY_RANK_COUNTS: tuple[tuple[int, int], ...] = (
    (1, 123_251), (2, 73_289), (3, 70_063), (5, 36_883), (11, 23_021), (51, 3_770),
    (101, 739), (201, 37), (301, 1), (328, 1),
)


def score_grid() -> np.ndarray:
    """The 21 label values 0.0, 0.05, ..., 1.0 (rounded to two decimals, as label.tsv writes them)."""
    return np.round(np.arange(21) * 0.05, 2)


def format_score(value: float) -> str:
    """A grid score the way the official label.tsv writes it: Python float repr (``0.05``, ``1.0``)."""
    return repr(float(round(float(value), 2)))


def quantile_map(values: np.ndarray, distribution: Sequence[float] = SCORE_DISTRIBUTION) -> np.ndarray:
    """Labels on the 0.05 grid whose histogram is exactly ``distribution`` (up to rounding).

    Pairs are ranked by ``values`` (ties broken by position, so the result is deterministic); the
    lowest ``distribution[0]`` share gets 0.0, the next ``distribution[1]`` share 0.05, and so on.
    """
    values = np.asarray(values, dtype=np.float64)
    fractions = np.asarray(distribution, dtype=np.float64)
    if fractions.shape != (21,) or np.any(fractions < 0):
        raise ValueError(f"distribution must hold 21 non-negative fractions, got {fractions.shape}")
    cumulative = np.cumsum(fractions / fractions.sum())
    bounds = np.round(cumulative * len(values)).astype(np.int64)
    bounds[-1] = len(values)
    order = np.argsort(values, kind="stable")
    bins = np.empty(len(values), dtype=np.int64)
    bins[order] = np.searchsorted(bounds, np.arange(len(values)), side="right")
    return score_grid()[bins]


def label_histogram(labels: np.ndarray) -> np.ndarray:
    """Fraction of labels per grid value (21 bins)."""
    bins = np.rint(np.asarray(labels, dtype=np.float64) / 0.05).astype(np.int64)
    if bins.size and (bins.min() < 0 or bins.max() > 20):
        raise ValueError("labels must lie in [0, 1]")
    return np.bincount(bins, minlength=21) / max(len(bins), 1)


def total_variation(labels: np.ndarray, distribution: Sequence[float] = SCORE_DISTRIBUTION) -> float:
    """Total variation distance between the labels' histogram and a 21-bin distribution."""
    target = np.asarray(distribution, dtype=np.float64)
    return float(0.5 * np.abs(label_histogram(labels) - target / target.sum()).sum())


def sample_frame_counts(rng: np.random.Generator, size: int, scale: float = 1.0,
                        min_frames: int = 5, long_fraction: float = 0.0,
                        long_range: tuple[int, int] = (33, 40)) -> np.ndarray:
    """Frames per video drawn from the real histogram.

    ``scale`` shrinks every count (the demo keeps disk small) but never below ``min_frames``; a
    ``long_fraction`` of videos gets ``long_range`` frames, more than the official cap of 32, so
    that readers' frame sampling is exercised.
    """
    counts = np.array(list(FRAME_COUNT_HISTOGRAM.keys()))
    weights = np.array(list(FRAME_COUNT_HISTOGRAM.values()), dtype=np.float64)
    drawn = rng.choice(counts, size=size, p=weights / weights.sum())
    if scale != 1.0:
        drawn = np.maximum(np.rint(drawn * scale).astype(np.int64), min_frames)
    if long_fraction > 0:
        is_long = rng.random(size) < long_fraction
        drawn = np.where(is_long, rng.integers(long_range[0], long_range[1] + 1, size=size), drawn)
    return drawn.astype(np.int64)


def category_weights(n: int) -> np.ndarray:
    """Popularity of ``n`` categories by rank, following the real curve (normalised)."""
    ranks, counts = np.array(CATEGORY_RANK_COUNTS, dtype=np.float64).T
    positions = np.linspace(1, REAL_CATEGORIES, n) if n > 1 else np.ones(1)
    weights = np.exp(np.interp(positions, ranks, np.log(counts)))
    return weights / weights.sum()


def graph_components(queries: Sequence, candidates: Sequence) -> np.ndarray:
    """Sizes of the connected components of a label graph, largest first."""
    ids, inverse = np.unique(np.concatenate([np.asarray(queries, dtype=object).astype(str),
                                             np.asarray(candidates, dtype=object).astype(str)]),
                             return_inverse=True)
    half = len(queries)
    graph = scipy.sparse.coo_matrix((np.ones(half), (inverse[:half], inverse[half:])),
                                    shape=(len(ids), len(ids)))
    _, component = scipy.sparse.csgraph.connected_components(graph, directed=False)
    return np.sort(np.bincount(component))[::-1]
