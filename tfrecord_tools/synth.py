"""Synthetic challenge data in the official layout, with a known ground truth.

    python -m tfrecord_tools.synth --out DIR --size tiny|demo|full [--world NAME] [--seed N] [--scale F]
                                   [--pointwise-files N] [--label-graph PATH [--limit-pairs K]]
                                   [--test-graph] [--test-videos N]

writes under DIR::

    pointwise/pretrain_{0..F-1}.tfrecords   videos with tags and category (pretraining)
    pairwise/pairwise.tfrecords             every video of the label graph
    pairwise/label.tsv                      query<TAB>candidate<TAB>score on the 0.05 grid
    test_a/test_a.tfrecords                 videos without tags and category
    tag_list.txt                            top-10,000 pointwise tags, most frequent first
    synth_meta.json                         seed, preset, world and its knobs, counts, oracle Spearman, label stats

Python: ``generate(out_dir, preset="tiny", seed=0, label_graph=None, ..., world="demo") -> meta dict``.
The preset sets the size; the world (below, last section) the structure.

The generative model
--------------------
World (drawn once per seed). ``K`` topics (16 tiny, 48 demo, 1,200 full), each a unit vector
``T_k`` in a latent space of ``L = 64`` dimensions, ``T_k ∝ 0.6 C_c(k) + t_k`` where ``C_c`` is
the direction of the topic's category, so topics of one category are related. The 328 categories
have the real ``1LLSS`` form (40 level-1 classes) and the real popularity curve; topic popularity
follows its category's. Every topic owns a list of title words (real Chinese words from jieba's
dictionary: a disjoint share of its frequent nouns, verbs and adjectives) and a list of tags; every
category and level-1 class owns a few tags, a few global tags fit any video, and a long tail of rare
tag ids gives the real skew (4.84 tags a video; at full size ~62k distinct ids, the top 10,000
covering ~96% of occurrences). Each word and tag carries a random vector ``d`` in the latent view of
the modality that shows it.

Video latent. A fresh video mixes 1-3 topics (popular ones more often; the second and third often
of the same category) plus an identity vector: ``u = norm(norm(sum_i w_i T_k_i) + 0.6 e)``,
``e ~ N(0, I/L)``. The TRUE SIMILARITY of two videos is ``cos(u_a, u_b)``.

Modalities see only parts of ``u``. The latent has four blocks of 16 dimensions, A, B, C, D:
  * frames see A+B,
  * the title sees B+C, the tags C+D, the ASR B+D (few topic words, mostly filler; ``nan`` for 35%),
  * the category is the category of the topic nearest to the whole ``u`` (3% noise).
Pairs relate block by block (below), so a single modality explains only part of the similarity:
on the demo preset, the cosine of the exact A+B view reaches Spearman ~0.80 against the labels, B+C
~0.76, C+D ~0.75, the full latent ~0.90 (the oracle).

Frames (per frame ``t``): ``y_t = mu + g * (W u_AB + N n + s_shot(t) + eps_t)``: a background
``mu`` shared by every video (the raw cosine of two unrelated videos' mean frames is ~0.45, like the
real sample pair), a per-dimension gain ``g``, the A+B view projected to 1,536-d by a fixed random
``W``, a rank-8 per-video nuisance ``N n`` (camera, lighting: unrelated to every other video, so a
learned projection beats the raw cosine), a per-shot offset (1 + Poisson(n/8) shots) and per-frame
noise. Values are EfficientNet-like: ``x = swish(exp(1.7 tanh(y / 1.7)) - 1)`` stored as float16:
about [-0.25, 3.5], half slightly negative, frame L2 norms ~11-15, frame-to-mean cosine ~0.82, as
in the two real sample videos. Frame counts follow the real ``test_a`` histogram (5-32, median 13),
plus 0.2% longer videos (33-40 frames) that readers must sample down.

Text and tags (per modality view ``v`` of ``u``): the three topics nearest to ``u_v``
(Gumbel-perturbed) are mentioned, weighted by ``softmax(T_k . u_v / 0.1)``; within their lists,
words and tags are drawn by Gumbel top-k of ``u_v . d / 0.06 + log topic weight (+ a Zipf prior for
tags)``, so near-duplicates share specific words and tags, not only topics. Titles add general
content words, the dictionary's most frequent words as filler, and punctuation; the ASR is mostly
filler and general words.

Pairs and labels. The label graph (own, or the structure of an existing ``label.tsv`` with
``--label-graph``) is walked breadth first; each video reached along an edge is derived from the
video it was reached from, block by block: ``u_child,j = a_j u_parent,j + sqrt(1 - a_j^2) f_j``.
The block alphas ``a_j`` follow one relation mixture (30% unrelated: 0; 55% related: U(0.1, 0.92);
15% duplicate: U(0.92, 1)) through a Gaussian copula with correlation 0.25, so footage and text of
a pair can agree to different degrees; the partner ``f_j`` of each block is a fresh video that
shares the parent's main topic (30%) or not. Pairs off the tree edges (chains through shared
candidates) get whatever similarity results. Labels: ``sim + N(0, 0.13^2)`` ranked and
quantile-mapped onto the real 21-point score distribution (exact up to rounding);
``synth_meta.json`` records the oracle Spearman (true similarity vs labels, ~0.90).

Test videos are drawn independently (fresh latents), so they hold almost no near-duplicates.
``--test-graph`` draws them along a label graph of the labelled pairs' shape instead
(`graph_test_preset`: queries and pairs scaled to the test videos; the graph is not written), so that a
benchmark on the test set (``bench.truth_on_test``) can label and score the closest pairs as well; it
changes the test records only.

Own label graphs copy the real shape: 79% of queries have one candidate (isolated pairs), the rest
2-10 (mostly 6-10) from a shared pool where popular candidates are reused by many queries, and a few
queries are candidates of others, chaining them into one giant component (real: 22,040 components,
the largest 16,664 of 63,613 videos).

Streaming: every chunk of videos has its own RNG seeded by (seed, split, chunk); frames never
accumulate in memory; records are serialised deterministically, so a seed gives the same bytes.

Worlds (``--world``): a robustness suite of structural variants, so that a recipe tuned on the
world above can be checked on data it was not tuned on. Each world overrides a few ``LatentModel``
knobs (and, for sizes, ``Preset`` fields) whose defaults are the demo values; ``demo`` overrides
nothing and writes exactly the records it always wrote. ``synth_meta.json`` records the world's
name, description and overrides, and its oracle.
  * ``continuous``: ``topic_mixture_weight = 0``, pure Gaussian latents ``u = norm(e)``: no topic
    clusters; titles and tags still pick the words and tags whose vectors match the latent view.
  * ``offset_frames``: a background of mean ``frame_offset`` 0.5 and spread 0.8 that dwarfs the
    video's own terms (signal, nuisance, shots, noise at ~0.37x the demo's; cap 3): the raw cosine
    of two unrelated videos' mean frames is 0.91-0.94; per-dimension gains ``exp(N(0, 0.8))``, a
    ReLU at the 70% quantile of the background's values (``frame_sparsity``: ~70% exact zeros)
    and values x20 (``frame_value_scale``); centring recovers the signal. Titles, tags and labels
    are the demo world's.
  * ``sparse_tags``: 85% of tag slots from a uniform tail of 40 ids a pointwise video
    (``extra_tail_tags``, drawn from their own stream): most tags occur once, topic tags are rare.
  * ``weak_titles``: 1-2 topic words a title at word temperature 0.1, 3-6 fillers, more general
    words: the title TF-IDF baseline falls from 0.44 to 0.05 (demo size); frames and labels unchanged.
  * ``real_graph``: other block views (``LatentModel.views``): frames A+C, title B+D, tags B+C,
    ASR A+D, so a modality explains other parts of the similarity; meant with ``--label-graph``.
  * ``many_unlabelled``: pointwise videos = 6x the pair videos; relation mixture 15% unrelated,
    30% duplicates; label noise 0.18 (oracle 0.85 on demo).
  * ``random-<n>`` (n = 0, 1, ...): the knobs of all the axes above drawn at random from ``n``
    (`random_world`), many at once: worlds no recipe was designed or tuned for.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import re
import sys
from typing import Callable, Sequence

import numpy as np
import scipy.stats

from tfrecord_tools import cli, schema, synth_stats
from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.labels import read_labels

# TensorFlow (tfrecord_tools.writer) is imported where records are written, so that the command
# line answers --help without it.

LATENT_DIM = 64
# Latent blocks and which modality sees which.
BLOCKS = {"A": (0, 16), "B": (16, 32), "C": (32, 48), "D": (48, 64)}
VIEWS = {"frames": "AB", "title": "BC", "tags": "CD", "asr": "BD"}
TAG_LIST_SIZE = schema.NUM_TAGS

_SPLIT_WORLD, _SPLIT_GRAPH, _SPLIT_PAIR_LATENT, _SPLIT_LABELS = 0, 1, 2, 3
_SPLIT_POINTWISE, _SPLIT_PAIRWISE, _SPLIT_TEST = 10, 11, 12
_SPLIT_TEST_GRAPH, _SPLIT_TEST_GRAPH_LATENT = 20, 21
_MASK63 = np.uint64((1 << 63) - 1)
_CJK = re.compile(r"^[\u4e00-\u9fff]+$")
_CONTENT_POS = frozenset({"n", "nz", "ns", "nt", "nr", "nrt", "v", "vn", "a", "an", "l", "i"})
_PUNCTUATION = ("，", "！", "？", "。", "、")


@dataclasses.dataclass(frozen=True)
class LatentModel:
    """Knobs of the generative model (shared by all presets, recorded in the meta)."""

    identity_noise: float = 0.6  # weight of the identity vector against the topic mixture
    topic_mixture_weight: float = 1.0  # weight of the topic mixture (0: pure Gaussian latents, no topics)
    category_weight: float = 0.6  # how much topics of one category share a direction
    topics_per_video: tuple[float, float, float] = (0.5, 0.35, 0.15)  # P(1, 2, 3 topics)
    same_category_topic: float = 0.5  # extra topics drawn from the main topic's category
    # pair derivation
    p_unrelated: float = 0.30
    p_duplicate: float = 0.15
    duplicate_alpha: tuple[float, float] = (0.92, 1.0)
    related_alpha: tuple[float, float] = (0.1, 0.92)
    block_correlation: float = 0.25  # copula correlation of the block alphas of one pair
    same_topic_fresh: float = 0.3  # a block's fresh partner shares the parent's main topic
    label_noise: float = 0.13  # std of the noise added to the true similarity before ranking
    # frames
    frame_background: float = 0.22
    frame_gain_spread: float = 0.25
    frame_signal: float = 0.16
    frame_nuisance: float = 0.2
    nuisance_rank: int = 8
    frame_shot: float = 0.12
    frame_noise: float = 0.22
    frame_cap: float = 1.7
    frame_offset: float = 0.0  # mean of the shared background (its spread is frame_background)
    frame_sparsity: float = 0.0  # > 0: ReLU at this quantile of the background's values (share of zeros)
    frame_value_scale: float = 1.0  # multiplies the stored frame values
    # text and tags
    topic_gumbel: float = 0.05  # noise on which topics a text mentions
    topic_temperature: float = 0.1  # topic weights: softmax(T_k . u_view / temperature)
    word_temperature: float = 0.06
    title_word_temperature: float | None = None  # the title's own word temperature (None: word_temperature)
    title_content_words: tuple[int, int] = (4, 8)
    title_general_words: tuple[float, float, float] = (0.5, 0.35, 0.15)  # P(0, 1, 2)
    title_filler_words: tuple[int, int] = (2, 5)
    asr_missing: float = 0.35
    asr_words: tuple[int, int] = (8, 40)
    asr_content_share: float = 0.25
    category_noise: float = 0.03
    tags_per_video: float = synth_stats.TAGS_PER_VIDEO
    max_tags: int = 14
    p_global_tag: float = 0.9
    p_level1_tag: float = 0.6
    p_category_tag: float = 0.7
    p_tail_tag: float = 0.042
    tag_temperature: float = 0.06
    topic_tag_zipf: float = 2.0  # prior -zipf * log(1 + position) within a topic's tag list
    # which latent blocks each modality sees (frames, title, tags, asr)
    views: tuple[tuple[str, str], ...] = tuple(VIEWS.items())

    def __post_init__(self):
        views = dict(self.views)
        if sorted(views) != sorted(VIEWS) or len(views) != len(self.views):
            raise ValueError(f"LatentModel.views must name each of {sorted(VIEWS)} once, got {self.views!r}")
        for modality, blocks in views.items():
            if not blocks or len(set(blocks)) != len(blocks) or not set(blocks) <= set(BLOCKS):
                raise ValueError(f"LatentModel.views[{modality!r}] must be distinct blocks of "
                                 f"{''.join(BLOCKS)}, got {blocks!r}")
        if self.topic_mixture_weight < 0 or self.identity_noise < 0 or (
                self.topic_mixture_weight == 0 and self.identity_noise == 0):
            raise ValueError("LatentModel: topic_mixture_weight and identity_noise must be >= 0 and not "
                             f"both 0, got {self.topic_mixture_weight} and {self.identity_noise}")
        if not 0 <= self.frame_sparsity < 1:
            raise ValueError(f"LatentModel.frame_sparsity must be in [0, 1), got {self.frame_sparsity}")
        if not self.frame_value_scale > 0:
            raise ValueError(f"LatentModel.frame_value_scale must be positive, got {self.frame_value_scale}")
        if not (0 <= self.p_unrelated and 0 < self.p_duplicate and self.p_unrelated + self.p_duplicate < 1):
            raise ValueError("LatentModel: the relation mixture needs 0 <= p_unrelated, 0 < p_duplicate and "
                             f"p_unrelated + p_duplicate < 1, got {self.p_unrelated} and {self.p_duplicate}")


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes of one synthetic data set."""

    name: str
    pointwise_files: int
    pointwise_per_file: int
    pair_queries: int
    pairs: int
    pair_videos: int
    test_videos: int
    topics: int
    words_per_topic: int
    general_words: int
    tags_per_topic: int
    global_tags: int
    tags_per_level1: int
    tags_per_category: int
    tail_tags: int
    frame_scale: float = 1.0  # < 1 shrinks frame counts (never below 5)
    long_video_fraction: float = 0.002  # videos with 33-40 frames
    chunk_size: int = 256
    extra_tail_tags: int = 0  # more rare tag ids, drawn apart from the world's other draws (sparse_tags)
    model: LatentModel = LatentModel()

    def __post_init__(self):
        for field in ("pointwise_files", "pointwise_per_file", "pair_queries", "pairs", "pair_videos",
                      "test_videos", "topics", "words_per_topic", "general_words", "tags_per_topic",
                      "global_tags", "tags_per_level1", "tags_per_category", "tail_tags", "chunk_size"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                raise ValueError(f"preset {self.name!r}: {field} must be a positive integer, "
                                 f"got {getattr(self, field)!r}")
        if self.topics < 3:
            raise ValueError(f"preset {self.name!r}: needs at least 3 topics, got {self.topics}")
        if not isinstance(self.extra_tail_tags, int) or self.extra_tail_tags < 0:
            raise ValueError(f"preset {self.name!r}: extra_tail_tags must be a non-negative integer, "
                             f"got {self.extra_tail_tags!r}")
        if not 0 < self.frame_scale <= 1:
            raise ValueError(f"preset {self.name!r}: frame_scale must be in (0, 1], got {self.frame_scale}")

    @property
    def pointwise_videos(self) -> int:
        return self.pointwise_files * self.pointwise_per_file


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", pointwise_files=2, pointwise_per_file=100, pair_queries=130, pairs=300,
                   pair_videos=280, test_videos=100, topics=16, words_per_topic=24,
                   general_words=200, tags_per_topic=8, global_tags=10, tags_per_level1=2,
                   tags_per_category=2, tail_tags=300, chunk_size=128),
    "demo": Preset("demo", pointwise_files=2, pointwise_per_file=2_500, pair_queries=1_500,
                   pairs=3_500, pair_videos=3_200, test_videos=1_000, topics=48,
                   words_per_topic=40, general_words=1_000, tags_per_topic=16, global_tags=20,
                   tags_per_level1=2, tags_per_category=3, tail_tags=3_000, frame_scale=0.5),
    "full": Preset("full", pointwise_files=20, pointwise_per_file=50_000,
                   pair_queries=synth_stats.REAL_QUERIES, pairs=synth_stats.REAL_PAIRS,
                   pair_videos=synth_stats.REAL_PAIR_VIDEOS, test_videos=31_514, topics=1_200,
                   words_per_topic=40, general_words=4_000, tags_per_topic=8, global_tags=40,
                   tags_per_level1=2, tags_per_category=3, tail_tags=52_000),
}


def scaled_preset(preset: str | Preset, factor: float, pointwise_files: int | None = None) -> Preset:
    """``preset`` with ``factor`` times the videos and pairs (same world: topics, words, tags).

    Scales the pointwise videos (the number of files stays, each file grows, as in the real data:
    always 20 files; ``pointwise_files`` sets another file count), the queries, pairs and videos of
    the label graph and the test videos. Used to measure how time and memory grow with the data
    set (``bench/bench_scale.py``).
    """
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    if not factor > 0:
        raise ValueError(f"scale factor must be positive, got {factor!r}")
    files = preset.pointwise_files if pointwise_files is None else int(pointwise_files)
    if files < 1:
        raise ValueError(f"pointwise_files must be a positive integer, got {pointwise_files!r}")

    def times(value: float) -> int:
        return max(1, int(round(value * factor)))

    return dataclasses.replace(
        preset, name=f"{preset.name}x{factor:g}", pointwise_files=files,
        pointwise_per_file=times(preset.pointwise_videos / files), pair_queries=times(preset.pair_queries),
        pairs=times(preset.pairs), pair_videos=times(preset.pair_videos), test_videos=times(preset.test_videos))


# --------------------------------------------------------------------------------------------------
# Worlds: structural variants of the generative model (robustness suite)
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WorldSpec:
    """A named variant of the generative model: knob overrides applied on top of a size preset.

    ``model`` overrides ``LatentModel`` fields; ``sizes`` (optional) maps the size preset to
    overrides of its ``Preset`` fields (so a ratio such as "5x the labelled videos" holds at every
    size). Every knob not named keeps the demo value, so a world changes only what it says.
    """

    name: str
    description: str
    model: dict = dataclasses.field(default_factory=dict)
    sizes: Callable[[Preset], dict] | None = None

    def apply(self, preset: Preset) -> Preset:
        sizes = self.sizes(preset) if self.sizes else {}
        if not self.model and not sizes:
            return preset
        return dataclasses.replace(preset, **sizes, model=dataclasses.replace(preset.model, **self.model))

    def knobs(self, preset: Preset) -> dict:
        """The overrides as plain JSON values (for ``synth_meta.json``)."""
        sizes = self.sizes(preset) if self.sizes else {}
        return json.loads(json.dumps({"model": self.model, "sizes": sizes}))


UNLABELLED_RATIO = 6  # many_unlabelled: pointwise videos >= this times the pair videos


def _many_unlabelled_sizes(preset: Preset) -> dict:
    per_file = -(-UNLABELLED_RATIO * preset.pair_videos // preset.pointwise_files)  # ceil
    return {"pointwise_per_file": max(preset.pointwise_per_file, per_file)}

WORLDS: dict[str, WorldSpec] = {spec.name: spec for spec in (
    WorldSpec("demo", "the default world (module doc): 1-3 topics a video, informative titles and tags"),
    WorldSpec("continuous", "pure Gaussian latents without topic clusters; words and tags still follow "
              "the latent view", {"topic_mixture_weight": 0.0}),
    WorldSpec("offset_frames", "frames dominated by a large shared background (raw cosine of unrelated "
              "videos ~0.9), values x20, widely spread per-dimension gains, ~70% exact zeros (ReLU)",
              {"frame_offset": 0.5, "frame_background": 0.8, "frame_gain_spread": 0.8, "frame_cap": 3.0,
               "frame_signal": 0.06, "frame_nuisance": 0.07, "frame_shot": 0.05, "frame_noise": 0.08,
               "frame_sparsity": 0.7, "frame_value_scale": 20.0}),
    WorldSpec("sparse_tags", "85% of tag slots drawn uniformly from a huge tail (40 ids a pointwise "
              "video, at most 2M): few examples per tag, topic tags rare", {"p_tail_tag": 0.85},
              lambda preset: {"extra_tail_tags": max(0, min(40 * preset.pointwise_videos, 2_000_000)
                                                       - preset.tail_tags)}),
    WorldSpec("weak_titles", "titles with 1-2 content words drawn at a higher temperature, mostly filler: "
              "frames and tags carry the signal",
              {"title_content_words": (1, 2), "title_word_temperature": 0.1,
               "title_general_words": (0.3, 0.4, 0.3), "title_filler_words": (3, 6)}),
    WorldSpec("real_graph", "other block views (frames A+C, title B+D, tags B+C, ASR A+D); meant with "
              "--label-graph (a real label.tsv's structure)",
              {"views": (("frames", "AC"), ("title", "BD"), ("tags", "BC"), ("asr", "AD"))}),
    WorldSpec("many_unlabelled", f"pointwise videos >= {UNLABELLED_RATIO}x the pair videos; more "
              "duplicates, fewer unrelated pairs, noisier labels",
              {"p_unrelated": 0.15, "p_duplicate": 0.3, "label_noise": 0.18}, _many_unlabelled_sizes),
)}


RANDOM_WORLD_PREFIX = "random-"


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return round(float(rng.uniform(low, high)), 3)


def random_world(number: int) -> WorldSpec:
    """World ``random-<number>``: every knob of the suite's axes drawn at random (seeded by
    ``number`` alone, so one name is one world; ``--seed`` then draws its data afresh).

    A check on worlds nobody designed a recipe for: the named worlds each change one thing, these
    change many at once, in combinations no recipe was tuned on. Drawn: topic clusters or none
    (30%: ``continuous``), the relation mixture and label noise, frame terms, an ``offset_frames``
    background (50%), sparse frames (40%), the frame value scale (0.1x-20x), title strength (from
    ``weak_titles`` to the demo's), ASR coverage, a tail of rare tags (50%: up to ``sparse_tags``),
    which latent blocks each modality sees, and 1.5-6x unlabelled videos per pair video.
    """
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 0:
        raise ValueError(f"a random world's number must be a non-negative integer, got {number!r}")
    rng = np.random.default_rng([int(number), 0x5EED])
    model: dict = {
        "topic_mixture_weight": 0.0 if rng.random() < 0.3 else _uniform(rng, 0.3, 1.0),
        "identity_noise": _uniform(rng, 0.4, 0.9),
        "p_unrelated": _uniform(rng, 0.1, 0.4), "p_duplicate": _uniform(rng, 0.08, 0.3),
        "label_noise": _uniform(rng, 0.1, 0.2), "block_correlation": _uniform(rng, 0.0, 0.5),
        "frame_gain_spread": _uniform(rng, 0.1, 0.8),
    }
    # the video's own frame terms; against a large shared background they shrink
    shrink = _uniform(rng, 0.35, 0.8) if rng.random() < 0.5 else 1.0
    for knob, (low, high) in (("frame_signal", (0.1, 0.2)), ("frame_nuisance", (0.1, 0.3)),
                              ("frame_shot", (0.06, 0.16)), ("frame_noise", (0.15, 0.35))):
        model[knob] = round(_uniform(rng, low, high) * shrink, 3)
    if shrink < 1.0:
        model.update(frame_offset=_uniform(rng, 0.1, 0.5), frame_background=_uniform(rng, 0.4, 0.8), frame_cap=3.0)
    else:
        model["frame_background"] = _uniform(rng, 0.15, 0.4)
    model["frame_sparsity"] = _uniform(rng, 0.3, 0.7) if rng.random() < 0.4 else 0.0
    model["frame_value_scale"] = round(float(10 ** rng.uniform(-1.0, 1.3)), 3)
    titles = ((1, 2), (2, 4), (3, 6), (4, 8))
    model["title_content_words"] = titles[int(rng.integers(len(titles)))]
    model["title_word_temperature"] = _uniform(rng, 0.05, 0.1)
    model["title_filler_words"] = ((2, 5), (3, 6))[int(rng.integers(2))]
    model["asr_missing"] = _uniform(rng, 0.2, 0.6)
    tail = _uniform(rng, 0.2, 0.85) if rng.random() < 0.5 else LatentModel.p_tail_tag
    model["p_tail_tag"] = tail
    blocks = "".join(BLOCKS)
    while True:  # two blocks a modality, every block seen by some modality
        views = tuple((name, "".join(sorted(rng.choice(list(blocks), 2, replace=False)))) for name in VIEWS)
        if set("".join(seen for _, seen in views)) == set(blocks):
            break
    model["views"] = views
    ratio = _uniform(rng, 1.5, 6.0)

    def sizes(preset: Preset) -> dict:
        per_file = -(-int(ratio * preset.pair_videos) // preset.pointwise_files)  # ceil
        out = {"pointwise_per_file": max(preset.pointwise_per_file, per_file)}
        if tail > 0.2:  # rare tags: up to 40 ids a pointwise video, as sparse_tags
            videos = preset.pointwise_files * out["pointwise_per_file"]
            out["extra_tail_tags"] = max(0, min(int(40 * tail / 0.85 * videos), 2_000_000) - preset.tail_tags)
        return out

    return WorldSpec(f"{RANDOM_WORLD_PREFIX}{int(number)}",
                     f"random world {int(number)}: the suite's knobs drawn at random, in combinations no recipe "
                     "was tuned on", model, sizes)


def world_spec(world: str) -> WorldSpec:
    """The named world of ``WORLDS``, or ``random-<n>`` (`random_world`)."""
    if world in WORLDS:
        return WORLDS[world]
    if isinstance(world, str) and world.startswith(RANDOM_WORLD_PREFIX):
        number = world[len(RANDOM_WORLD_PREFIX):]
        if number.isdigit() and str(int(number)) == number:
            return random_world(int(number))
    raise ValueError(f"unknown world {world!r}; choose one of {sorted(WORLDS)} or random-<n> (n = 0, 1, ...)")


def world_argument(world: str) -> str:
    """``world`` checked for a command line's ``type=``: an unknown name is a usage error there."""
    import argparse

    try:
        world_spec(world)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return world


def world_preset(preset: str | Preset, world: str = "demo") -> Preset:
    """``preset`` (a size) with the knobs of the named world applied."""
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    return world_spec(world).apply(preset)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *keys])))


def _view(name: str, model: "LatentModel | None" = None) -> np.ndarray:
    """Latent dimensions a modality sees (``model.views``, by default the demo world's ``VIEWS``)."""
    views = VIEWS if model is None else dict(model.views)
    return np.concatenate([np.arange(*BLOCKS[block]) for block in views[name]])


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _gumbel(rng: np.random.Generator, shape) -> np.ndarray:
    return -np.log(-np.log(rng.random(shape, dtype=np.float32) * 0.999998 + 1e-6))


def video_ids(seed: int, start: int, count: int) -> list[str]:
    """Decimal ids for global video indices ``start .. start+count-1``.

    A bijective mix of the index on 63 bits (add a seed offset, xor-shift, multiply by odd
    constants), so ids never collide within a data set and look like the real 18-19 digit ids.
    """
    offset = np.uint64(int(np.random.SeedSequence([int(seed), 99]).generate_state(1, np.uint64)[0]) >> 1)
    x = (np.arange(start, start + count, dtype=np.uint64) + offset) & _MASK63
    with np.errstate(over="ignore"):
        for multiplier in (0x3C79AC492BA7B653, 0x1C69B3F74AC4AE35):
            x ^= x >> np.uint64(29)
            x = (x * np.uint64(multiplier)) & _MASK63
        x ^= x >> np.uint64(31)
    return [str(int(value)) for value in x]


# --------------------------------------------------------------------------------------------------
# Words from jieba's dictionary
# --------------------------------------------------------------------------------------------------

def jieba_dict_path() -> str:
    """jieba's bundled dictionary (``word freq pos`` per line)."""
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the jieba package is required for synthetic titles (pip install jieba)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "dict.txt")
    if not os.path.isfile(path):
        raise RuntimeError(f"jieba's dictionary not found at {path}")
    return path


@dataclasses.dataclass(frozen=True)
class WordPools:
    content: list[str]  # frequent content words, most frequent first
    fillers: list[str]  # the most frequent words (function words, common verbs)
    filler_p: np.ndarray
    dict_md5: str


@functools.lru_cache(maxsize=2)
def load_word_pools(n_fillers: int = 300) -> WordPools:
    """Content and filler words from jieba's dictionary (pure-CJK words only; read once a process)."""
    path = jieba_dict_path()
    with open(path, "rb") as handle:
        raw = handle.read()
    entries = []
    for line in raw.decode("utf-8").splitlines():
        parts = line.split(" ")
        if len(parts) >= 2 and _CJK.match(parts[0]):
            entries.append((parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""))
    by_freq = sorted(range(len(entries)), key=lambda i: (-entries[i][1], i))
    fillers = [entries[i][0] for i in by_freq if len(entries[i][0]) <= 2][:n_fillers]
    filler_set = set(fillers)
    content = [entries[i][0] for i in by_freq
               if 2 <= len(entries[i][0]) <= 4 and entries[i][2] in _CONTENT_POS
               and entries[i][1] >= 5 and entries[i][0] not in filler_set]
    filler_freq = np.array([entries[i][1] for i in by_freq if len(entries[i][0]) <= 2][:n_fillers],
                           dtype=np.float64)
    filler_p = filler_freq ** 0.6
    return WordPools(content, fillers, filler_p / filler_p.sum(), hashlib.md5(raw).hexdigest())


# --------------------------------------------------------------------------------------------------
# The world: topics, categories, tags, words, frame projection
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class World:
    """Everything shared by the videos of one data set (small: kilobytes to a few MB)."""

    preset: Preset
    topic_vectors: np.ndarray  # [K, L] unit
    topic_p: np.ndarray  # [K] popularity
    topic_category: np.ndarray  # [K] category index
    category_topics: np.ndarray  # topic indices sorted by category
    category_start: np.ndarray  # [C] start in category_topics
    category_count: np.ndarray  # [C]
    category_ids: np.ndarray  # [C] int64 (1LLSS)
    category_level1: np.ndarray  # [C] level-1 index
    level1_siblings: list[np.ndarray]  # categories per level-1 class
    tag_ids: np.ndarray  # [n_tags] int64, all tag groups then the tail
    tag_vectors: np.ndarray  # [n_head, |tags view|]
    global_tags: np.ndarray  # [G] tag indices
    level1_tags: np.ndarray  # [n_level1, tags_per_level1]
    category_tags: np.ndarray  # [C, tags_per_category]
    topic_tags: np.ndarray  # [K, tags_per_topic]
    tail_start: int
    words: list[str]
    word_vectors: np.ndarray  # [n_words, |title view|]
    asr_word_vectors: np.ndarray  # [n_words, |asr view|]
    topic_words: np.ndarray  # [K, words_per_topic]
    general_words: np.ndarray  # [n_general]
    fillers: list[str]
    filler_p: np.ndarray
    frame_background: np.ndarray  # [FRAME_DIM]
    frame_gain: np.ndarray  # [FRAME_DIM]
    frame_projection: np.ndarray  # [|frames view|, FRAME_DIM]
    nuisance_basis: np.ndarray  # [rank, FRAME_DIM]
    dict_md5: str
    frame_threshold: float | None = None  # ReLU threshold of sparse frames (model.frame_sparsity > 0)


def _category_taxonomy(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """328 five-digit ids ``1LLSS`` in 40 level-1 classes; returns (ids, level-1 index)."""
    level1_codes = np.sort(rng.choice(50, size=synth_stats.REAL_LEVEL1_CLASSES, replace=False))
    sizes = rng.permutation(np.array(synth_stats.SUBCATEGORIES_PER_LEVEL1))
    ids, level1 = [], []
    for index, (code, size) in enumerate(zip(level1_codes, sizes)):
        for sub in np.sort(rng.choice(np.arange(1, 30), size=size, replace=False)):
            ids.append(int(f"1{code:02d}{sub:02d}"))
            level1.append(index)
    return np.array(ids, dtype=np.int64), np.array(level1, dtype=np.int64)


def build_world(preset: Preset, seed: int, pools: WordPools | None = None) -> World:
    """Draw the topics, taxonomy, vocabularies and frame projection for ``seed``."""
    rng = _rng(seed, _SPLIT_WORLD)
    model = preset.model
    n_topics, dim = preset.topics, LATENT_DIM

    category_ids, category_level1 = _category_taxonomy(rng)
    n_categories = len(category_ids)
    category_weight = synth_stats.category_weights(n_categories)[rng.permutation(n_categories)]
    if n_topics >= n_categories:
        rest = rng.choice(n_categories, size=n_topics - n_categories, p=category_weight)
        topic_category = np.concatenate([rng.permutation(n_categories), rest])
    else:
        topic_category = rng.choice(n_categories, size=n_topics, replace=False, p=category_weight)
    topics_in = np.bincount(topic_category, minlength=n_categories)
    topic_p = category_weight[topic_category] / topics_in[topic_category]
    topic_p *= np.exp(rng.normal(0.0, 0.5, n_topics))
    topic_p /= topic_p.sum()
    category_topics = np.argsort(topic_category, kind="stable")
    category_start = np.concatenate([[0], np.cumsum(topics_in)[:-1]])

    category_directions = rng.normal(0.0, 1.0 / np.sqrt(dim), (n_categories, dim))
    topic_vectors = _normalize(model.category_weight * category_directions[topic_category]
                               + rng.normal(0.0, 1.0 / np.sqrt(dim), (n_topics, dim)))

    # Tags: global, level-1, category, topic groups, then the long tail (all with random ids).
    n_level1 = int(category_level1.max()) + 1
    sizes = [preset.global_tags, n_level1 * preset.tags_per_level1,
             n_categories * preset.tags_per_category, n_topics * preset.tags_per_topic]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    n_head = int(starts[-1])
    tag_ids = rng.choice(60_000_000, size=n_head + preset.tail_tags, replace=False).astype(np.int64) + 10_000
    if preset.extra_tail_tags:  # own stream and id range: every other draw of the world stays the same
        extra = _rng(seed, _SPLIT_WORLD, 1).choice(900_000_000, size=preset.extra_tail_tags, replace=False)
        tag_ids = np.concatenate([tag_ids, extra.astype(np.int64) + 100_000_000])
    tag_view = len(_view("tags", model))
    tag_vectors = rng.normal(0.0, 1.0 / np.sqrt(tag_view), (n_head, tag_view)).astype(np.float32)

    pools = pools or load_word_pools()
    n_words = n_topics * preset.words_per_topic + preset.general_words
    if len(pools.content) < n_words:
        raise ValueError(f"preset {preset.name!r} needs {n_words} content words, jieba's dictionary "
                         f"offers {len(pools.content)}")
    # Frequent words only (the top 2x of what is needed, at least 5,000): titles stay readable.
    frequent = min(len(pools.content), max(2 * n_words, 5_000))
    words = [pools.content[i] for i in np.sort(rng.permutation(frequent)[:n_words])]
    order = rng.permutation(n_words)
    topic_words = order[: n_topics * preset.words_per_topic].reshape(n_topics, preset.words_per_topic)
    general_words = order[n_topics * preset.words_per_topic:]
    title_view, asr_view = len(_view("title", model)), len(_view("asr", model))
    word_vectors = rng.normal(0.0, 1.0 / np.sqrt(title_view), (n_words, title_view)).astype(np.float32)
    asr_word_vectors = rng.normal(0.0, 1.0 / np.sqrt(asr_view), (n_words, asr_view)).astype(np.float32)

    frame_view = len(_view("frames", model))
    gain = np.exp(rng.normal(0.0, model.frame_gain_spread, schema.FRAME_DIM))
    projection = rng.normal(0.0, model.frame_signal / np.sqrt(frame_view / dim),
                            (frame_view, schema.FRAME_DIM))
    nuisance = rng.normal(0.0, model.frame_nuisance / np.sqrt(model.nuisance_rank),
                          (model.nuisance_rank, schema.FRAME_DIM))
    background = rng.normal(model.frame_offset, model.frame_background, schema.FRAME_DIM).astype(np.float32)
    threshold = None
    if model.frame_sparsity > 0:  # the quantile of the background's own values: the share of zeros
        values = _frame_values(model, background.copy()) / np.float32(model.frame_value_scale)
        threshold = float(np.quantile(values, model.frame_sparsity))
    return World(
        preset=preset, topic_vectors=topic_vectors.astype(np.float32), topic_p=topic_p,
        topic_category=topic_category, category_topics=category_topics,
        category_start=category_start, category_count=topics_in, category_ids=category_ids,
        category_level1=category_level1,
        level1_siblings=[np.flatnonzero(category_level1 == i) for i in range(n_level1)],
        tag_ids=tag_ids, tag_vectors=tag_vectors,
        global_tags=np.arange(starts[0], starts[1]),
        level1_tags=np.arange(starts[1], starts[2]).reshape(n_level1, preset.tags_per_level1),
        category_tags=np.arange(starts[2], starts[3]).reshape(n_categories, preset.tags_per_category),
        topic_tags=np.arange(starts[3], starts[4]).reshape(n_topics, preset.tags_per_topic),
        tail_start=n_head, words=words, word_vectors=word_vectors,
        asr_word_vectors=asr_word_vectors, topic_words=topic_words, general_words=general_words,
        fillers=pools.fillers, filler_p=pools.filler_p,
        frame_background=background,
        frame_gain=gain.astype(np.float32), frame_projection=projection.astype(np.float32),
        nuisance_basis=nuisance.astype(np.float32), dict_md5=pools.dict_md5, frame_threshold=threshold)


# --------------------------------------------------------------------------------------------------
# Latents
# --------------------------------------------------------------------------------------------------

def main_topics(world: World, latents: np.ndarray) -> np.ndarray:
    """Index of the topic nearest to each latent (its main topic)."""
    return np.argmax(latents @ world.topic_vectors.T, axis=1)


def fresh_latents(world: World, rng: np.random.Generator, n: int,
                  main_topic: np.ndarray | None = None) -> np.ndarray:
    """``n`` independent video latents (unit vectors): a 1-3 topic mixture plus identity noise.

    ``main_topic`` (optional, -1 = free) forces the first topic of some videos.
    """
    model = world.preset.model
    n_topics = len(world.topic_p)
    first = rng.choice(n_topics, size=n, p=world.topic_p)
    if main_topic is not None:
        first = np.where(main_topic >= 0, main_topic, first)
    others = rng.choice(n_topics, size=(n, 2), p=world.topic_p)
    # Same-category partners: a uniform topic of the first topic's category.
    category = world.topic_category[first]
    sibling = world.category_topics[world.category_start[category][:, None]
                                    + (rng.random((n, 2)) * world.category_count[category][:, None]).astype(np.int64)]
    others = np.where(rng.random((n, 2)) < model.same_category_topic, sibling, others)
    count = rng.choice(3, size=n, p=model.topics_per_video) + 1
    weights = np.stack([np.ones(n), rng.uniform(0.25, 0.8, n), rng.uniform(0.15, 0.5, n)], axis=1)
    weights *= np.arange(3)[None, :] < count[:, None]
    topics = np.concatenate([first[:, None], others], axis=1)
    mixture = _normalize(np.einsum("nk,nkd->nd", weights, world.topic_vectors[topics].astype(np.float64)))
    if model.topic_mixture_weight != 1.0:
        mixture *= model.topic_mixture_weight
    identity = rng.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), (n, LATENT_DIM))
    return _normalize(mixture + model.identity_noise * identity)


def relation_alphas(model: "LatentModel", uniform: np.ndarray) -> np.ndarray:
    """Quantile function of the relation mixture: how much of the parent a block keeps.

    ``uniform`` in [0, 1) maps monotonically to 0 (unrelated, share ``p_unrelated``), then
    ``related_alpha`` (linearly), then ``duplicate_alpha`` (the top ``p_duplicate``).
    """
    p0, p_dup = model.p_unrelated, model.p_duplicate
    p_rel = 1.0 - p0 - p_dup
    lo, hi = model.related_alpha
    dlo, dhi = model.duplicate_alpha
    related = lo + (uniform - p0) / p_rel * (hi - lo)
    duplicate = dlo + (uniform - p0 - p_rel) / p_dup * (dhi - dlo)
    return np.where(uniform < p0, 0.0, np.where(uniform < p0 + p_rel, related, duplicate))


def derive_latents(world: World, rng: np.random.Generator, parents: np.ndarray) -> np.ndarray:
    """Latents of videos reached from ``parents`` along a label-graph edge (see module doc).

    Every latent block ``j`` mixes the parent with a fresh partner:
    ``child_j = alpha_j parent_j + sqrt(1 - alpha_j^2) fresh_j``. The block alphas come from one
    relation mixture through a Gaussian copula with correlation ``block_correlation``, so footage
    (blocks A, B) and text (C, D) agree with the parent to different degrees, and the partner of
    each block is, independently, a fresh video sharing the parent's main topic or an unrelated one.
    """
    model = world.preset.model
    m, n_blocks = len(parents), len(BLOCKS)
    rho = model.block_correlation
    z = np.sqrt(rho) * rng.standard_normal((m, 1)) + np.sqrt(1.0 - rho) * rng.standard_normal((m, n_blocks))
    block_alpha = relation_alphas(model, scipy.stats.norm.cdf(z))
    same_topic = fresh_latents(world, rng, m, main_topic=main_topics(world, parents))
    unrelated = fresh_latents(world, rng, m)
    shares = rng.random((m, n_blocks)) < model.same_topic_fresh
    child = np.empty_like(parents)
    for j, (lo, hi) in enumerate(BLOCKS.values()):
        a = block_alpha[:, j:j + 1]
        fresh = np.where(shares[:, j:j + 1], same_topic[:, lo:hi], unrelated[:, lo:hi])
        child[:, lo:hi] = a * parents[:, lo:hi] + np.sqrt(1.0 - a ** 2) * fresh
    return _normalize(child)


def graph_latents(world: World, rng: np.random.Generator, n_nodes: int,
                  queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Latents for the nodes of a label graph: breadth-first, each node derived from its parent.

    Roots (the first node of each component, in index order) are fresh; nodes of one BFS depth are
    derived together (vectorised).
    """
    neighbours: list[list[int]] = [[] for _ in range(n_nodes)]
    for q, c in zip(queries.tolist(), candidates.tolist()):
        neighbours[q].append(c)
        neighbours[c].append(q)
    parent = np.full(n_nodes, -1, dtype=np.int64)
    depth = np.full(n_nodes, -1, dtype=np.int64)
    for root in range(n_nodes):
        if depth[root] >= 0:
            continue
        depth[root] = 0
        queue = collections.deque([root])
        while queue:
            node = queue.popleft()
            for nxt in neighbours[node]:
                if depth[nxt] < 0:
                    depth[nxt] = depth[node] + 1
                    parent[nxt] = node
                    queue.append(nxt)
    latents = np.zeros((n_nodes, LATENT_DIM))
    roots = np.flatnonzero(depth == 0)
    latents[roots] = fresh_latents(world, rng, len(roots))
    for level in range(1, int(depth.max()) + 1 if n_nodes else 0):
        nodes = np.flatnonzero(depth == level)
        latents[nodes] = derive_latents(world, rng, latents[parent[nodes]])
    return latents


def true_similarity(latents: np.ndarray, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Cosine of the latent vectors of each pair (latents are unit vectors)."""
    return np.einsum("nd,nd->n", latents[queries], latents[candidates])


def draw_labels(rng: np.random.Generator, similarity: np.ndarray, noise: float) -> np.ndarray:
    """Grid labels with the real score distribution: quantile map of the noisy true similarity."""
    return synth_stats.quantile_map(similarity + rng.normal(0.0, noise, len(similarity)))


# --------------------------------------------------------------------------------------------------
# The pair graph
# --------------------------------------------------------------------------------------------------

def build_pair_graph(preset: Preset, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(query, candidate) node indices in label-file order, over nodes ``0 .. pair_videos-1``.

    Shape of the real graph: single-candidate queries with their own candidate; multi-candidate
    queries draw 2-10 candidates from a shared pool (popular ones reused, every pool video used at
    least once); a few slots take another multi-candidate query (chains).
    """
    q_total, n_pairs, n_videos = preset.pair_queries, preset.pairs, preset.pair_videos
    hist = synth_stats.CANDIDATES_PER_QUERY
    n_single = int(round(q_total * hist[1] / sum(hist.values())))
    n_multi = q_total - n_single
    slots = n_pairs - n_single
    pool = n_videos - q_total - n_single
    if n_multi < 1 or not 2 * n_multi <= slots <= 10 * n_multi or not 10 <= pool <= slots:
        raise ValueError(
            f"preset {preset.name!r}: {q_total} queries, {n_pairs} pairs and {n_videos} videos cannot "
            f"form a real-shaped graph ({n_single} single-candidate queries, {n_multi} others with "
            f"{slots} candidate slots from a pool of {pool}; need 2-10 slots a query and 10 <= pool <= slots)")
    sizes = np.arange(2, 11)
    weights = np.array([hist[k] for k in sizes], dtype=np.float64)
    k = rng.choice(sizes, size=n_multi, p=weights / weights.sum())
    while k.sum() != slots:  # nudge random queries until the pair count is exact
        i = rng.integers(n_multi)
        if k.sum() < slots and k[i] < 10:
            k[i] += 1
        elif k.sum() > slots and k[i] > 2:
            k[i] -= 1
    multi_nodes = np.arange(n_single, q_total)
    pool_nodes = np.arange(q_total + n_single, n_videos)
    # Log-normal popularity (capped): about half the pool is used once, a few up to ~100 times.
    popularity = np.exp(1.9 * np.minimum(rng.standard_normal(pool), 2.6))
    popularity /= popularity.sum()
    fill = rng.choice(pool, size=slots, p=popularity)
    fill[rng.permutation(slots)[:pool]] = rng.permutation(pool)  # every pool video at least once
    fill = pool_nodes[fill]
    # Chains: some slots take another multi-candidate query, never a pool video's last use.
    uses = collections.Counter(fill.tolist())
    chain_slots = np.flatnonzero(rng.random(slots) < synth_stats.QUERY_AS_CANDIDATE_FRACTION)
    chain_queries = multi_nodes[rng.integers(n_multi, size=len(chain_slots))]
    for slot, other in zip(chain_slots.tolist(), chain_queries.tolist()):
        if uses[int(fill[slot])] > 1:
            uses[int(fill[slot])] -= 1
            fill[slot] = other
    queries, candidates = [], []
    start = 0
    for node, size in zip(multi_nodes.tolist(), k.tolist()):
        chosen: list[int] = []
        for c in fill[start:start + size].tolist():
            while c == node or c in chosen:  # keeps the first use: no video disappears
                c = int(pool_nodes[rng.choice(pool, p=popularity)])
            chosen.append(c)
        start += size
        queries.extend([node] * size)
        candidates.extend(chosen)
    queries.extend(range(n_single))
    candidates.extend(range(q_total, q_total + n_single))
    queries_arr, candidates_arr = np.array(queries), np.array(candidates)
    order = rng.permutation(len(queries_arr))
    return queries_arr[order], candidates_arr[order]


# --------------------------------------------------------------------------------------------------
# Rendering: latents -> frames, category, tags, title, ASR
# --------------------------------------------------------------------------------------------------

# Standard normal quantiles at 256 equiprobable levels: noise from random bytes is ~5x cheaper than
# numpy's Gaussian sampler, and after the other components and float16 rounding looks the same.
_NORMAL_LEVELS = scipy.stats.norm.ppf((np.arange(256) + 0.5) / 256).astype(np.float32)


def _byte_normal(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Approximately N(0, scale^2) float32 noise (256 levels, truncated at 2.9 sigma)."""
    codes = np.frombuffer(rng.bytes(shape[0] * shape[1]), dtype=np.uint8).reshape(shape)
    noise = _NORMAL_LEVELS[codes]
    noise *= np.float32(scale)
    return noise


def render_frames(world: World, rng: np.random.Generator, latents: np.ndarray,
                  counts: np.ndarray) -> list[np.ndarray]:
    """Float16 frames [count, FRAME_DIM] per video (see the module doc for the model)."""
    model = world.preset.model
    n, total = len(latents), int(counts.sum())
    video = latents[:, _view("frames", model)].astype(np.float32) @ world.frame_projection
    video += rng.standard_normal((n, model.nuisance_rank), dtype=np.float32) @ world.nuisance_basis
    owner = np.repeat(np.arange(n), counts)
    shots_per_video = 1 + rng.poisson(counts / 8.0)
    shot_first = np.concatenate([[0], np.cumsum(shots_per_video)[:-1]])
    position = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    # Frames split into equal runs of consecutive shots.
    shot_of_frame = shot_first[owner] + (position * shots_per_video[owner]) // counts[owner]
    shots = _byte_normal(rng, (int(shots_per_video.sum()), schema.FRAME_DIM), model.frame_shot)
    y = _byte_normal(rng, (total, schema.FRAME_DIM), model.frame_noise)
    y += video[owner]
    y += shots[shot_of_frame]
    y *= world.frame_gain
    y += world.frame_background
    _frame_values(model, y, world.frame_threshold)
    frames = y.astype("<f2")
    return np.split(frames, np.cumsum(counts)[:-1])


def _frame_values(model: LatentModel, y: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """In place: pre-activations ``y`` -> stored values ``swish(exp(cap tanh(y / cap)) - 1)``.

    Then, where the model asks for it, ``max(x - threshold, 0)`` (sparse frames) and a global scale.
    """
    cap = np.float32(model.frame_cap)
    y /= cap
    np.tanh(y, out=y)
    y *= cap
    np.exp(y, out=y)
    y -= np.float32(1.0)  # z
    sig = np.negative(y)
    np.exp(sig, out=sig)
    sig += np.float32(1.0)
    y /= sig  # swish(z) = z / (1 + exp(-z))
    if threshold is not None:
        y -= np.float32(threshold)
        np.maximum(y, np.float32(0.0), out=y)
    if model.frame_value_scale != 1.0:
        y *= np.float32(model.frame_value_scale)
    return y


def _mentioned_topics(world: World, rng: np.random.Generator, view_latents: np.ndarray,
                      view: np.ndarray, how_many: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Topics a modality mentions: nearest to its view of the latent (Gumbel-perturbed).

    Returns topic indices [n, how_many] (best first) and their log weights.
    """
    model = world.preset.model
    relevance = view_latents @ world.topic_vectors[:, view].T
    noisy = relevance + model.topic_gumbel * _gumbel(rng, relevance.shape)
    how_many = min(how_many, relevance.shape[1])
    top = np.argpartition(-noisy, how_many - 1, axis=1)[:, :how_many]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(noisy, top, 1), axis=1), 1)
    score = np.take_along_axis(relevance, top, 1) / model.topic_temperature
    log_weight = score - np.logaddexp.reduce(score, axis=1, keepdims=True)
    return top, log_weight


def _top_k(rng: np.random.Generator, logits: np.ndarray, k: int) -> np.ndarray:
    """Gumbel top-k: column indices of k draws without replacement, best first."""
    noisy = logits + _gumbel(rng, logits.shape)
    k = min(k, logits.shape[1])
    top = np.argpartition(-noisy, k - 1, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(noisy, top, 1), axis=1), 1)


def _topic_items(world: World, rng: np.random.Generator, latents: np.ndarray, view_name: str,
                 items: np.ndarray, vectors: np.ndarray, k: int, prior: np.ndarray | None = None,
                 temperature: float = 0.06) -> np.ndarray:
    """Draw ``k`` items (words or tags) per video from the lists of its mentioned topics."""
    view = _view(view_name, world.preset.model)
    view_latents = latents[:, view].astype(np.float32)
    topics, log_weight = _mentioned_topics(world, rng, view_latents, view)
    per_topic = items.shape[1]
    candidates = items[topics].reshape(len(latents), -1)  # [n, 3 * per_topic]
    logits = np.einsum("nd,nkd->nk", view_latents, vectors[candidates]) / temperature
    logits += np.repeat(log_weight, per_topic, axis=1)
    if prior is not None:
        logits += np.tile(prior, topics.shape[1])[None, :]
    chosen = _top_k(rng, logits, k)
    return np.take_along_axis(candidates, chosen, 1)


def render_categories(world: World, rng: np.random.Generator, latents: np.ndarray) -> np.ndarray:
    """Category index per video: the category of its main topic, 3% a sibling in the same class."""
    category = world.topic_category[main_topics(world, latents)]
    noisy = np.flatnonzero(rng.random(len(latents)) < world.preset.model.category_noise)
    for i in noisy.tolist():
        siblings = world.level1_siblings[world.category_level1[category[i]]]
        category[i] = siblings[rng.integers(len(siblings))]
    return category


def render_tags(world: World, rng: np.random.Generator, latents: np.ndarray,
                category: np.ndarray) -> list[np.ndarray]:
    """Tag indices per video (into ``world.tag_ids``): topic, level-1, global, category, tail."""
    model, preset = world.preset.model, world.preset
    n = len(latents)
    count = np.minimum(1 + rng.poisson(model.tags_per_video - 1.0, n), model.max_tags)
    remaining = count - 1
    groups = []
    for p in (model.p_level1_tag, model.p_global_tag, model.p_category_tag):
        flag = (rng.random(n) < p) & (remaining >= 1)
        remaining = remaining - flag
        groups.append(flag)
    has_level1, has_global, has_category = groups
    n_topic_tags = 1 + remaining
    view = _view("tags", model)
    view_latents = latents[:, view].astype(np.float32)
    prior = -model.topic_tag_zipf * np.log1p(np.arange(preset.tags_per_topic))
    topic_tags = _topic_items(world, rng, latents, "tags", world.topic_tags, world.tag_vectors,
                              int(n_topic_tags.max()), prior, model.tag_temperature)

    def pick(options: np.ndarray, zipf: float) -> np.ndarray:  # options [n, m]
        logits = np.einsum("nd,nkd->nk", view_latents, world.tag_vectors[options]) / model.tag_temperature
        logits += -zipf * np.log1p(np.arange(options.shape[1]))[None, :]
        return np.take_along_axis(options, _top_k(rng, logits, 1), 1)[:, 0]

    level1 = pick(world.level1_tags[world.category_level1[category]], 1.0)
    global_tag = pick(np.broadcast_to(world.global_tags, (n, len(world.global_tags))), 1.0)
    category_tag = pick(world.category_tags[category], 1.0)
    tail = world.tail_start + rng.integers(len(world.tag_ids) - world.tail_start, size=(n, model.max_tags))
    is_tail = rng.random((n, model.max_tags)) < model.p_tail_tag
    result = []
    for i in range(n):
        tags = list(topic_tags[i, :n_topic_tags[i]])
        if has_level1[i]:
            tags.insert(1, level1[i])
        if has_global[i]:
            tags.append(global_tag[i])
        if has_category[i]:
            tags.append(category_tag[i])
        tags = [int(tail[i, j]) if is_tail[i, j] else int(t) for j, t in enumerate(tags)]
        result.append(np.array(list(dict.fromkeys(tags)), dtype=np.int64))
    return result


def _assemble(words: list[str], breaks: int, rng_values: np.ndarray, punctuation: Sequence[str]) -> str:
    """Join words into up to ``breaks + 1`` clauses separated by punctuation."""
    if breaks and len(words) > 2:
        cuts = sorted(set((1 + (rng_values[:breaks] * (len(words) - 1)).astype(int)).tolist()))
        out, last = [], 0
        for j, cut in enumerate(cuts):
            out.append("".join(words[last:cut]) + punctuation[j % len(punctuation)])
            last = cut
        out.append("".join(words[last:]))
        return "".join(out)
    return "".join(words)


def render_texts(world: World, rng: np.random.Generator, latents: np.ndarray) -> tuple[list[str], list[str]]:
    """Titles and ASR transcripts (``nan`` for a share of videos)."""
    model, n = world.preset.model, len(latents)
    words, fillers = world.words, world.fillers
    lo, hi = model.title_content_words
    n_content = rng.integers(lo, hi + 1, n)
    title_temperature = model.title_word_temperature
    if title_temperature is None:
        title_temperature = model.word_temperature
    content = _topic_items(world, rng, latents, "title", world.topic_words, world.word_vectors, hi,
                           temperature=title_temperature)
    n_general = rng.choice(3, size=n, p=model.title_general_words)
    general = world.general_words[rng.integers(len(world.general_words), size=(n, 2))]
    flo, fhi = model.title_filler_words
    n_filler = rng.integers(flo, fhi + 1, n)
    filler = rng.choice(len(fillers), size=(n, fhi), p=world.filler_p)
    order_keys = rng.random((n, hi + 2 + fhi))
    breaks = rng.choice(3, size=n, p=(0.35, 0.45, 0.2))
    cut_values = rng.random((n, 2))
    punct = rng.integers(len(_PUNCTUATION), size=n)
    end_mark = rng.choice(["", "！", "？", "。"], size=n, p=(0.55, 0.25, 0.1, 0.1))

    alo, ahi = model.asr_words
    missing = rng.random(n) < model.asr_missing
    n_asr = rng.integers(alo, ahi + 1, n)
    k_asr = int(np.ceil(ahi * model.asr_content_share))
    asr_content = _topic_items(world, rng, latents, "asr", world.topic_words, world.asr_word_vectors,
                               k_asr, temperature=model.word_temperature)
    asr_filler = rng.choice(len(fillers), size=(n, ahi), p=world.filler_p)
    asr_general = world.general_words[rng.integers(len(world.general_words), size=(n, ahi))]
    asr_is_general = rng.random((n, ahi)) < 0.3
    asr_keys = rng.random((n, ahi))

    titles, asrs = [], []
    for i in range(n):
        tokens = ([words[w] for w in content[i, :n_content[i]]]
                  + [words[w] for w in general[i, :n_general[i]]]
                  + [fillers[f] for f in filler[i, :n_filler[i]]])
        keys = order_keys[i, :len(tokens)]
        keys[:n_content[i]] *= 0.6  # topic words lean to the front, like real titles
        tokens = [tokens[j] for j in np.argsort(keys, kind="stable")]
        marks = (_PUNCTUATION[punct[i]], _PUNCTUATION[(punct[i] + 1) % len(_PUNCTUATION)])
        titles.append(_assemble(tokens, int(breaks[i]), cut_values[i], marks) + str(end_mark[i]))
        if missing[i]:
            asrs.append(schema.MISSING_ASR)
            continue
        length = int(n_asr[i])
        k = max(1, int(round(length * model.asr_content_share)))
        spoken = [words[w] for w in asr_content[i, :k]]
        spoken += [words[asr_general[i, j]] if asr_is_general[i, j] else fillers[asr_filler[i, j]]
                   for j in range(length - k)]
        spoken = [spoken[j] for j in np.argsort(asr_keys[i, :len(spoken)], kind="stable")]
        asrs.append("".join(spoken))
    return titles, asrs


def render_videos(world: World, rng: np.random.Generator, latents: np.ndarray, ids: Sequence[str],
                  kind: schema.RecordKind) -> tuple[list[dict], list[np.ndarray]]:
    """Raw video dicts (``writer`` layout) and their tag indices, for one chunk."""
    preset = world.preset
    counts = synth_stats.sample_frame_counts(rng, len(latents), scale=preset.frame_scale,
                                             long_fraction=preset.long_video_fraction)
    frames = render_frames(world, rng, latents, counts)
    titles, asrs = render_texts(world, rng, latents)
    with_labels = schema.RecordKind(kind) != schema.RecordKind.TEST
    if with_labels:
        category = render_categories(world, rng, latents)
        tags = render_tags(world, rng, latents, category)
    videos = []
    for i, video_id in enumerate(ids):
        video = {"id": video_id, "title": titles[i], "asr_text": asrs[i], "frames": frames[i]}
        if with_labels:
            video["tag_id"] = world.tag_ids[tags[i]].tolist()
            video["category_id"] = int(world.category_ids[category[i]])
        videos.append(video)
    return videos, (tags if with_labels else [])


def serialize(video: dict, kind: schema.RecordKind) -> bytes:
    """``writer.video_features`` serialised deterministically (map keys sorted: same bytes every run)."""
    import tensorflow as tf

    from tfrecord_tools.writer import video_features

    example = tf.train.Example(features=tf.train.Features(feature=video_features(video, kind)))
    return example.SerializeToString(deterministic=True)


# --------------------------------------------------------------------------------------------------
# Writing a data set
# --------------------------------------------------------------------------------------------------

LAYOUT = ("pointwise", "pairwise/pairwise.tfrecords", "pairwise/label.tsv", "test_a/test_a.tfrecords",
          "tag_list.txt", "synth_meta.json")


def _prepare_out_dir(out_dir: str, overwrite: bool) -> None:
    existing = [name for name in LAYOUT if os.path.exists(os.path.join(out_dir, name))]
    if existing and not overwrite:
        raise FileExistsError(f"{out_dir} already holds {', '.join(existing)}; pass overwrite=True "
                              f"(--overwrite) to replace a synthetic data set")
    pointwise = os.path.join(out_dir, "pointwise")
    if os.path.isdir(pointwise):
        for name in os.listdir(pointwise):
            if re.fullmatch(r"pretrain_\d+\.tfrecords", name):
                os.remove(os.path.join(pointwise, name))
    for name in LAYOUT[1:]:
        path = os.path.join(out_dir, name)
        if os.path.isfile(path):
            os.remove(path)
    os.makedirs(out_dir, exist_ok=True)


def _write_split(path: str, world: World, seed: int, split: int, kind: schema.RecordKind,
                 ids: Sequence[str], latents_for: Callable[[np.random.Generator, int, int], np.ndarray], progress, tag_counts: np.ndarray | None,
                 first_chunk: int = 0) -> dict:
    """Stream ``len(ids)`` videos into one TFRecord file, chunk by chunk; returns file stats."""
    from tfrecord_tools.writer import AtomicRecordWriter

    chunk = world.preset.chunk_size
    frames = 0
    with AtomicRecordWriter(path) as writer:
        for number, start in enumerate(range(0, len(ids), chunk), start=first_chunk):
            rng = _rng(seed, split, number)
            chunk_ids = ids[start:start + chunk]
            latents = latents_for(rng, start, len(chunk_ids))
            videos, tags = render_videos(world, rng, latents, chunk_ids, kind)
            for video in videos:
                writer.write(serialize(video, kind))
                frames += len(video["frames"])
            if tag_counts is not None:
                for video_tags in tags:
                    tag_counts[video_tags] += 1
            progress.update(len(videos))
    return {"records": writer.count, "frames": frames, "bytes": os.path.getsize(path)}


def _graph_from_labels(path: str, limit_pairs: int | None) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """Ids (first-appearance order) and (query, candidate) node indices of an existing label.tsv."""
    labels = read_labels(path, check_grid=False)
    queries, candidates = labels.query, labels.candidate
    if limit_pairs is not None:
        if limit_pairs < 1:
            raise ValueError(f"limit_pairs must be positive, got {limit_pairs}")
        queries, candidates = queries[:limit_pairs], candidates[:limit_pairs]
    ids = list(dict.fromkeys(x for pair in zip(queries, candidates) for x in pair))
    index = {video_id: i for i, video_id in enumerate(ids)}
    q = np.array([index[x] for x in queries], dtype=np.int64)
    c = np.array([index[x] for x in candidates], dtype=np.int64)
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        digest.update(handle.read())
    return ids, q, c, digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class PairTruth:
    """The pairwise videos and the ground truth of their labels."""

    ids: list[str]  # pairwise video ids, in the order of the pairwise file
    queries: np.ndarray  # [pairs] index into ids, label-file order
    candidates: np.ndarray
    latents: np.ndarray  # [videos, LATENT_DIM] unit vectors
    similarity: np.ndarray  # [pairs] true similarity (latent cosine)
    labels: np.ndarray  # [pairs] grid scores written to label.tsv
    graph_info: dict | None  # the source label.tsv (path, limit_pairs, md5) or None


def pair_ground_truth(preset: str | Preset, seed: int = 0, label_graph: str | os.PathLike | None = None,
                      limit_pairs: int | None = None, world: World | None = None) -> PairTruth:
    """The pair graph, latents, true similarities and labels ``generate`` writes (no frames: fast)."""
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    world = world or build_world(preset, seed)
    if label_graph is not None:
        ids, queries, candidates, graph_md5 = _graph_from_labels(os.fspath(label_graph), limit_pairs)
        graph_info = {"path": os.path.abspath(os.fspath(label_graph)), "limit_pairs": limit_pairs,
                      "md5": graph_md5}
    else:
        queries, candidates = build_pair_graph(preset, _rng(seed, _SPLIT_GRAPH))
        # Number videos by first appearance in the label file (the pairwise file's order).
        order = list(dict.fromkeys(x for pair in zip(queries.tolist(), candidates.tolist()) for x in pair))
        renumber = np.empty(preset.pair_videos, dtype=np.int64)
        renumber[order] = np.arange(len(order))
        queries, candidates = renumber[queries], renumber[candidates]
        ids = video_ids(seed, preset.pointwise_videos, len(order))
        graph_info = None
    latents = graph_latents(world, _rng(seed, _SPLIT_PAIR_LATENT), len(ids), queries, candidates)
    similarity = true_similarity(latents, queries, candidates)
    labels = draw_labels(_rng(seed, _SPLIT_LABELS), similarity, preset.model.label_noise)
    return PairTruth(ids, queries, candidates, latents, similarity, labels, graph_info)


def graph_test_preset(preset: Preset) -> Preset:
    """``preset``'s label-graph shape scaled to its test videos: queries and pairs times
    ``test_videos / pair_videos`` (too few test videos for that shape: `build_pair_graph` says so)."""
    factor = preset.test_videos / preset.pair_videos
    return dataclasses.replace(preset, pair_queries=max(1, round(preset.pair_queries * factor)),
                               pairs=max(1, round(preset.pairs * factor)), pair_videos=preset.test_videos)


@dataclasses.dataclass(frozen=True)
class GraphTestSet:
    """The test videos drawn along a label graph (``test_graph=True``): latents and the graph's edges."""

    latents: np.ndarray  # [test videos, LATENT_DIM] unit vectors, in test-file order
    queries: np.ndarray  # [edges] rows of latents
    candidates: np.ndarray


def graph_test_latents(world: World, seed: int) -> GraphTestSet:
    """Test latents along a label graph of the labelled pairs' shape (`graph_test_preset`), so the test
    set holds near-duplicates and close pairs in the labelled pairs' proportions; videos in random order.

    Independent test videos (the default) hold almost none, so the closest pairs go unmeasured there."""
    shape = graph_test_preset(world.preset)
    try:
        queries, candidates = build_pair_graph(shape, _rng(seed, _SPLIT_TEST_GRAPH))
    except ValueError as error:
        raise ValueError(f"test_graph: {world.preset.test_videos} test videos cannot hold a label graph of "
                         f"the labelled pairs' shape ({error})") from None
    rng = _rng(seed, _SPLIT_TEST_GRAPH_LATENT)
    position = rng.permutation(shape.pair_videos)  # node -> row of the test file
    latents = np.empty((shape.pair_videos, LATENT_DIM))
    latents[position] = graph_latents(world, rng, shape.pair_videos, queries, candidates)
    return GraphTestSet(latents, position[queries], position[candidates])


def true_latents(preset: str | Preset = "tiny", seed: int = 0, label_graph: str | os.PathLike | None = None,
                 limit_pairs: int | None = None, world: str = "demo",
                 test_graph: bool = False, test_videos: int | None = None) -> dict[str, tuple]:
    """``{"test": (ids, latents), "pairwise": (ids, latents)}``: the true latent of every test_a and
    pairwise video ``generate`` writes with these arguments (re-drawn without rendering frames); with
    ``test_graph`` also ``"test_edges": (queries, candidates)``, rows of the test latents.
    ``test_videos`` overrides the preset's count, as ``generate`` does.

    The truth behind search measurements: nearest neighbours, near-duplicates, text -> video.
    """
    preset = with_test_videos(world_spec(world).apply(PRESETS[preset] if isinstance(preset, str) else preset),
                              test_videos)
    drawn = build_world(preset, seed)
    truth = pair_ground_truth(preset, seed, label_graph, limit_pairs, world=drawn)
    test_ids = video_ids(seed, preset.pointwise_videos + preset.pair_videos, preset.test_videos)
    out: dict[str, tuple] = {"pairwise": (list(truth.ids), truth.latents)}
    if test_graph:
        graph = graph_test_latents(drawn, seed)
        out["test"] = (test_ids, graph.latents)
        out["test_edges"] = (graph.queries, graph.candidates)
    else:
        chunks = [fresh_latents(drawn, _rng(seed, _SPLIT_TEST, number),
                                len(test_ids[start:start + preset.chunk_size]))
                  for number, start in enumerate(range(0, len(test_ids), preset.chunk_size))]
        out["test"] = (test_ids, np.concatenate(chunks))
    return out


def true_latents_of(meta: dict) -> dict[str, tuple]:
    """`true_latents` of the data set a ``synth_meta.json`` (loaded) describes."""
    graph = meta.get("label_graph") or {}
    world = (meta.get("world") or {}).get("name", "demo")
    return true_latents(meta["preset"], meta["seed"], graph.get("path"), graph.get("limit_pairs"), world,
                        test_graph=bool(meta.get("test_graph", False)), test_videos=meta["counts"]["test_a_videos"])


def with_test_videos(preset: Preset, test_videos: int | None) -> Preset:
    """``preset`` with another number of test videos (None: unchanged); the rest of the data set stays."""
    if test_videos is None or test_videos == preset.test_videos:
        return preset
    return dataclasses.replace(preset, test_videos=test_videos)  # __post_init__ checks it


def generate(out_dir: str | os.PathLike, preset: str | Preset = "tiny", seed: int = 0,
             label_graph: str | os.PathLike | None = None, limit_pairs: int | None = None,
             overwrite: bool = False, progress: bool = True, world: str = "demo", test_graph: bool = False,
             test_videos: int | None = None) -> dict:
    """Write a synthetic data set in the official layout under ``out_dir``; returns the meta.

    ``world``: a name of ``WORLDS`` or ``random-<n>`` (`world_spec`) whose knobs are applied on top
    of ``preset`` (the size); ``"demo"`` changes nothing.

    ``label_graph``: take the pair structure (ids, query/candidate lists, line order) from an
    existing ``label.tsv`` (its first ``limit_pairs`` lines) and draw fresh scores for it; the
    pairwise file then holds a video for every id of those lines.

    ``test_graph``: draw the test videos along a label graph of the labelled pairs' shape
    (`graph_test_latents`) instead of independently, so that benchmarks on the test set
    (``bench.truth_on_test``) see near-duplicates; the graph is not written, only its videos.
    ``test_videos``: that many test videos instead of the preset's (a sharper test benchmark; the
    other files are unchanged).
    """
    from tqdm import tqdm

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    if not isinstance(preset, Preset):
        raise TypeError(f"preset must be a name or a Preset, got {type(preset).__name__}")
    spec, size_preset = world_spec(world), preset
    preset = with_test_videos(spec.apply(preset), test_videos)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = os.fspath(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    drawn = build_world(preset, seed)

    truth = pair_ground_truth(preset, seed, label_graph, limit_pairs, world=drawn)
    pair_ids, queries, candidates, labels = truth.ids, truth.queries, truth.candidates, truth.labels
    pair_latents, similarity = truth.latents, truth.similarity
    oracle = float(scipy.stats.spearmanr(similarity, labels)[0])

    total = preset.pointwise_videos + len(pair_ids) + preset.test_videos
    bar = tqdm(total=total, unit="video", desc=f"synth {preset.name}", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    files: dict[str, dict] = {}
    tag_counts = np.zeros(len(drawn.tag_ids), dtype=np.int64)
    per_file = preset.pointwise_per_file
    chunks_per_file = -(-per_file // preset.chunk_size)
    for f in range(preset.pointwise_files):
        name = f"pointwise/pretrain_{f}.tfrecords"
        files[name] = _write_split(
            os.path.join(out_dir, name), drawn, seed, _SPLIT_POINTWISE, schema.RecordKind.POINTWISE,
            video_ids(seed, f * per_file, per_file),
            lambda rng, start, n: fresh_latents(drawn, rng, n), bar, tag_counts,
            first_chunk=f * chunks_per_file)
    files["pairwise/pairwise.tfrecords"] = _write_split(
        os.path.join(out_dir, "pairwise/pairwise.tfrecords"), drawn, seed, _SPLIT_PAIRWISE,
        schema.RecordKind.PAIRWISE, pair_ids, lambda rng, start, n: pair_latents[start:start + n], bar, None)
    test_ids = video_ids(seed, preset.pointwise_videos + preset.pair_videos, preset.test_videos)
    if test_graph:
        test_latents = graph_test_latents(drawn, seed).latents
        latents_for = lambda rng, start, n: test_latents[start:start + n]  # noqa: E731
    else:
        latents_for = lambda rng, start, n: fresh_latents(drawn, rng, n)  # noqa: E731
    files["test_a/test_a.tfrecords"] = _write_split(
        os.path.join(out_dir, "test_a/test_a.tfrecords"), drawn, seed, _SPLIT_TEST, schema.RecordKind.TEST,
        test_ids, latents_for, bar, None)
    bar.close()

    lines = [f"{pair_ids[q]}\t{pair_ids[c]}\t{synth_stats.format_score(s)}\n"
             for q, c, s in zip(queries.tolist(), candidates.tolist(), labels.tolist())]
    write_text_atomic(os.path.join(out_dir, "pairwise/label.tsv"), "".join(lines))
    seen = np.flatnonzero(tag_counts)
    ranked = seen[np.lexsort((drawn.tag_ids[seen], -tag_counts[seen]))][:TAG_LIST_SIZE]
    write_text_atomic(os.path.join(out_dir, "tag_list.txt"),
                      "".join(f"{drawn.tag_ids[t]}\n" for t in ranked))

    sorted_counts = np.sort(tag_counts[seen])[::-1]
    occurrences = max(int(sorted_counts.sum()), 1)
    components = synth_stats.graph_components(queries, candidates)
    meta = {
        "generator": "tfrecord_tools.synth",
        "format_version": 1,
        "preset": preset.name,
        "seed": int(seed),
        "world": {"name": spec.name, "description": spec.description, **spec.knobs(size_preset)},
        "preset_params": dataclasses.asdict(preset),
        "latent": {"dim": LATENT_DIM, "blocks": {k: list(v) for k, v in BLOCKS.items()},
                   "views": dict(preset.model.views)},
        "label_graph": truth.graph_info,
        "test_graph": bool(test_graph),
        "counts": {
            "pointwise_videos": preset.pointwise_videos,
            "pointwise_files": preset.pointwise_files,
            "pairwise_videos": len(pair_ids),
            "pairs": len(labels),
            "queries": len(set(queries.tolist())),
            "test_a_videos": preset.test_videos,
            "distinct_tags_pointwise": int(len(seen)),
            "tag_list": int(len(ranked)),
        },
        "files": files,
        "oracle_spearman": oracle,
        "labels": {
            "distribution": synth_stats.label_histogram(labels).round(6).tolist(),
            "total_variation_vs_real": synth_stats.total_variation(labels),
            "mean": float(labels.mean()),
        },
        "true_similarity": {"mean": float(similarity.mean()),
                            "quantiles": np.quantile(similarity, [0.05, 0.25, 0.5, 0.75, 0.95]).round(4).tolist()},
        "graph": {"components": int(len(components)), "largest_component": int(components[0])},
        "tags": {"per_video_pointwise": occurrences / max(preset.pointwise_videos, 1),
                 "top_coverage": {str(k): float(sorted_counts[:k].sum() / occurrences)
                                  for k in synth_stats.TAG_TOP_COVERAGE}},
        "jieba_dict_md5": drawn.dict_md5,
    }
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    write_text_atomic(os.path.join(out_dir, "synth_meta.json"), text)
    return json.loads(text)  # exactly what the file holds (tuples become lists)


def summary(meta: dict, out_dir: str) -> str:
    """A few lines for the terminal."""
    counts = meta["counts"]
    return (f"synthetic {meta['preset']} data, world {meta['world']['name']} (seed {meta['seed']}) in {out_dir}\n"
            f"  pointwise {counts['pointwise_videos']} videos in {counts['pointwise_files']} files, "
            f"pairwise {counts['pairwise_videos']} videos / {counts['pairs']} pairs "
            f"({counts['queries']} queries), test_a {counts['test_a_videos']} videos\n"
            f"  oracle Spearman {meta['oracle_spearman']:.4f}, label TV vs real "
            f"{meta['labels']['total_variation_vs_real']:.4f}, "
            f"{meta['tags']['per_video_pointwise']:.2f} tags a video, tag list {counts['tag_list']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m tfrecord_tools.synth", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--size", default="tiny", choices=sorted(PRESETS),
                        help="data set size (default tiny); not the training --preset, which sizes models")
    parser.add_argument("--preset", dest="size", choices=sorted(PRESETS), help="deprecated alias of --size")
    parser.add_argument("--world", default="demo", type=world_argument,
                        help=f"structural variant of the generative model (robustness suite): one of "
                             f"{', '.join(sorted(WORLDS))}, or random-<n>, a world with every knob drawn at random "
                             "(demo: the default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="times the preset's videos and pairs")
    parser.add_argument("--pointwise-files", type=int, help="split the pointwise videos into this many files")
    parser.add_argument("--label-graph", help="take the pair structure from this label.tsv")
    parser.add_argument("--limit-pairs", type=int, help="with --label-graph: use only its first K lines")
    parser.add_argument("--test-graph", action="store_true",
                        help="draw the test videos along a label graph of the labelled pairs' shape, so that they "
                             "hold near-duplicates (bench.truth_on_test then scores the closest pairs too)")
    parser.add_argument("--test-videos", type=int,
                        help="this many test videos instead of the size's (the other files are unchanged)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing synthetic data set")
    parser.add_argument("--no-progress", action="store_true")
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    if args.limit_pairs is not None and args.label_graph is None:
        parser.error("--limit-pairs needs --label-graph")
    if "--preset" in (sys.argv[1:] if argv is None else argv):
        print("python -m tfrecord_tools.synth: note: --preset is deprecated, use --size", file=sys.stderr)
    cli.import_tensorflow(args.verbose)
    try:
        preset = (scaled_preset(args.size, args.scale, args.pointwise_files)
                  if args.scale != 1.0 or args.pointwise_files else args.size)
        meta = generate(args.out, preset, args.seed, args.label_graph, args.limit_pairs,
                        overwrite=args.overwrite, progress=not args.no_progress, world=args.world,
                        test_graph=args.test_graph, test_videos=args.test_videos)
    except (FileExistsError, ValueError) as error:  # bad input: a message, not a traceback
        parser.error(str(error))
    print(summary(meta, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
