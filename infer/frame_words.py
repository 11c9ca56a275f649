"""Frames pooled by the rarity of what they show: visual words and their inverse document frequency.

A video's mean frame counts every frame alike, so the shots many videos share (logos, title cards,
intros, text screens) pull every mean frame towards the same point and make unrelated videos look
alike. Here each frame is mapped to one of ``k`` *visual words* (k-means over a sample of frames, in a
fixed linear space of the frames; no labels), each word gets an inverse document frequency over the
sample's videos, ``idf = ln((1 + N) / (1 + df)) ** power``, and a video's pooled frame is the
idf-weighted mean of its frames: a shot that appears in many videos counts less, as a frequent word
counts less in a title's TF-IDF. A video whose frames all carry zero weight keeps its plain mean.
One k-means fit is a noisy reading of which shots are common (its sample and start move the floor by
about ±0.005 on the foreign draws), so several fits (``fits``, each on its own sample of frames from its
own start) are made and a frame weighs the mean of its idf over them.

The same `FrameWords` serves the strong baselines (`infer.baselines`, numpy) and a model's wide path
(`models.layers.WidePath`, in-graph, from the arrays of `FrameWords.arrays`), so the floor and the models
pool alike. The configs leave it off (``frame_words=0``); the demo recipe turns it on for both (``demo.sh``'s
``FRAME_WORDS=64``): it lifted the models and the floor on `bench.foreign_world`'s draws, whose videos share
generic shots, and changed nothing on the `synth` demo world, whose do not (docs/benchmarks.md, "Frames pooled
by idf" and "Several sets of words").
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import numpy as np

ARRAY_NAMES = ("word_offset", "word_projection", "word_centroids", "word_idf")


@dataclasses.dataclass(frozen=True)
class FrameWords:
    """``fits`` sets of ``k`` visual words, one after another in ``centroids`` and ``idf``: in each set a
    frame ``x`` is the word whose centroid is nearest ``(x - offset) @ projection``, and it weighs the mean
    of its words' idf over the sets."""

    offset: np.ndarray  # [D]
    projection: np.ndarray  # [D, P]
    centroids: np.ndarray  # [fits * k, P]
    idf: np.ndarray  # [fits * k], >= 0
    fits: int = 1

    def __post_init__(self):
        dim, width = np.shape(self.projection)
        if np.shape(self.offset) != (dim,) or np.ndim(self.centroids) != 2 or np.shape(self.centroids)[1] != width:
            raise ValueError(f"frame words: offset {np.shape(self.offset)}, projection {np.shape(self.projection)} "
                             f"and centroids {np.shape(self.centroids)} do not fit together")
        if np.shape(self.idf) != (len(self.centroids),) or np.any(np.asarray(self.idf) < 0):
            raise ValueError(f"frame words: idf must be {len(self.centroids)} values >= 0, got shape {np.shape(self.idf)}")
        if self.fits < 1 or len(self.centroids) % self.fits:
            raise ValueError(f"frame words: {len(self.centroids)} centroids cannot be {self.fits} sets of words")

    @property
    def k(self) -> int:
        """Words in each set."""
        return len(self.centroids) // self.fits

    def words(self, frames: np.ndarray) -> np.ndarray:
        """[n, fits]: the word of each frame of ``frames`` [n, D] in each set (an index into ``idf``)."""
        z = (np.asarray(frames, dtype=np.float64) - self.offset) @ self.projection
        return np.stack([_nearest(z, self.centroids[s * self.k:(s + 1) * self.k]) + s * self.k
                         for s in range(self.fits)], axis=1)

    def weights(self, frames: np.ndarray) -> np.ndarray:
        """[n]: each frame's weight, the mean of its words' idf over the sets."""
        return self.idf[self.words(frames)].mean(axis=1)

    def pooled(self, frames: np.ndarray) -> np.ndarray:
        """The idf-weighted mean of ``frames`` [n, D] (the plain mean where every weight is 0)."""
        frames = np.asarray(frames, dtype=np.float64)
        if len(frames) == 0:
            return np.zeros(frames.shape[1])
        weights = self.weights(frames)
        total = weights.sum()
        if total <= 0:
            return frames.mean(axis=0)
        return weights @ frames / total

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (`ARRAY_NAMES`): what `WidePath` holds and ``wide_path.npz`` stores."""
        return dict(zip(ARRAY_NAMES, (self.offset, self.projection, self.centroids, self.idf)))

    @classmethod
    def from_arrays(cls, values: Mapping[str, np.ndarray], fits: int = 1) -> "FrameWords":
        missing = [name for name in ARRAY_NAMES if name not in values]
        if missing:
            raise ValueError(f"frame words: {missing} missing")
        return cls(*(np.asarray(values[name], dtype=np.float64) for name in ARRAY_NAMES), fits=fits)


def _nearest(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The index of the nearest of ``centroids`` [k, P] to each row of ``z`` [n, P] (as `WidePath` computes it)."""
    distances = (z ** 2).sum(axis=1, keepdims=True) - 2.0 * z @ centroids.T + (centroids ** 2).sum(axis=1)
    return np.argmin(distances, axis=1)


def fit_frame_words(videos: Iterable[np.ndarray], offset: np.ndarray, projection: np.ndarray, k: int,
                    power: float = 2.0, max_frames: int = 100_000, seed: int = 0, fits: int = 1) -> FrameWords:
    """``fits`` sets of visual words of ``videos`` (each a [n, D] array of its frames): each k-means
    (scikit-learn) on its own sample of at most ``max_frames`` of their frames mapped by
    ``(x - offset) @ projection``, from its own start (seeds ``seed``, ``seed + 1``, ...), and the idf of
    each word over these videos."""
    from sklearn.cluster import KMeans

    if k < 2:
        raise ValueError(f"frame words: k must be >= 2, got {k}")
    if fits < 1:
        raise ValueError(f"frame words: fits must be >= 1, got {fits}")
    mapped = [(np.asarray(frames, dtype=np.float64) - offset) @ projection for frames in videos]
    mapped = [z for z in mapped if len(z)]
    if not mapped:
        raise ValueError("frame words: no video with frames to fit them on")
    stacked = np.concatenate(mapped)
    if len(stacked) < k:
        raise ValueError(f"frame words: {len(stacked)} frames cannot make {k} words")
    all_centroids, all_idf = [], []
    for fit_seed in range(seed, seed + fits):
        rng = np.random.default_rng(fit_seed)
        fit_rows = (stacked if len(stacked) <= max_frames
                    else stacked[rng.choice(len(stacked), max_frames, replace=False)])
        kmeans = KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=fit_seed).fit(fit_rows.astype(np.float32))
        centroids = kmeans.cluster_centers_.astype(np.float64)
        document_frequency = np.zeros(k)
        for z in mapped:
            document_frequency[np.unique(_nearest(z, centroids))] += 1
        all_centroids.append(centroids)
        all_idf.append(np.log((1.0 + len(mapped)) / (1.0 + document_frequency)) ** power)
    return FrameWords(np.asarray(offset, np.float64), np.asarray(projection, np.float64),
                      np.concatenate(all_centroids), np.concatenate(all_idf), fits=fits)


def fit_within_whitened(videos: list[np.ndarray], k: int, width: int, power: float = 2.0,
                        max_frames: int = 100_000, seed: int = 0, eps: float = 1e-6, fits: int = 1) -> FrameWords:
    """`fit_frame_words` in the frames' ``within`` space (`infer.strong_baselines`): each feature divided by
    its spread within videos, PCA-whitened to ``width`` components, statistics of these ``videos`` alone
    (each a [n, D] array of its frames). The leading whitened components are what tells videos apart,
    each frame's own noise left out, so shots cluster by what they show."""
    from infer import strong_baselines as sb

    videos = [np.asarray(frames, dtype=np.float64) for frames in videos if len(frames)]
    if not videos:
        raise ValueError("frame words: no video with frames to fit them on")
    spread = sb.WithinVideoSpread(videos[0].shape[1])
    for frames in videos:
        spread.add_video(frames)
    if not spread.count:
        raise ValueError("frame words: no video has two frames or more, so there is no spread within videos")
    mean, cov = sb.moments(np.stack([frames.mean(axis=0) for frames in videos]))
    whitener = sb.frame_whiteners(mean, cov, eps, spaces=("within",), within_std=spread.std())["within"]
    return fit_frame_words(videos, mean, whitener.kernel(width), k, power, max_frames, seed, fits)
