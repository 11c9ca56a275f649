"""A second, independent generator of data in the official layout: a world the recipe was not built on.

    python -m bench.foreign_world --out DIR [--seed 0] [--test-videos 5000] [--overwrite]

Every synthetic world of ``tfrecord_tools.synth`` (the demo and the ``random-N`` draws) shares one
design: videos are points of a latent space cut into blocks that each input views through a linear
map, and the labels rank the latents' cosine. A recipe developed on those worlds can pass every draw
and still lean on that design. This generator is built on other assumptions, so that the held-out
draws are not the only check of transfer:

* **what a video is**: a node of a concept tree (domain > genre > entity, Zipf-popular), a *format*
  (vlog, tutorial, highlight...) that cuts across the tree, a few continuous style values, and for
  some videos a *source clip* they re-upload (near-duplicates);
* **the truth**: a weighted sum of shared tree levels, format, style and clip
  (``TRUTH_WEIGHTS``), the dot product of a stored latent;
* **frames**: each video is a few shots, each shot drawn from its entity's or genre's visual
  prototypes or from generic shots (logos, text screens) shared by all videos; per-video nuisance
  (lighting, encoding) on top; a random sparse projection and a ReLU make non-negative, heavy-tailed,
  mostly-zero 1,536-d features, like a CNN's pooled activations;
* **text**: titles name the entity (a few rare words), the genre's keywords and the format, among
  fillers; a share are pure clickbait; the ASR is often missing and mostly fillers;
* **tags**: genre, entity and format tags mixed with a large useless tail; category ids are the genre,
  sometimes wrong;
* **labels**: each query's candidates come from a retrieval mix (same clip, entity, genre, domain,
  anything); each query has its own rater noise and bias; scores are mapped to the real label
  distribution on the 0.05 grid.

It writes ``pointwise/``, ``pairwise/`` (records and ``label.tsv``), ``test_a/`` (test videos drawn
along a label graph of the labelled pairs' shape), ``tag_list.txt``, ``foreign_meta.json`` and
``test_truth.npz``: the test videos' latents, their label graph and its labels, which
``bench.truth_on_test`` reads instead of re-drawing a ``synth`` truth, and the labelled videos' ids
and latents (``labelled_ids``, ``labelled_latents``), which ``bench.bench_ceiling`` reads. No
``synth_meta.json`` is written, so ``demo.sh`` takes the directory as a user's data set.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

import numpy as np
import scipy.stats

from tfrecord_tools import layout, schema, synth_stats
from tfrecord_tools.atomic import write_text_atomic

FOREIGN_META = "foreign_meta.json"
STORED_TRUTH = layout.TEST_TRUTH  # read by bench.truth_on_test
VISUAL_DIM = 48
NUISANCE_DIM = 8
STYLE_DIM = 6
FORMATS = 8
# Share of the true similarity each shared part contributes (squared norms of the latent's blocks).
TRUTH_WEIGHTS = {"clip": 0.30, "entity": 0.28, "genre": 0.16, "domain": 0.08, "format": 0.08, "style": 0.10}
BLOCK_DIMS = {"clip": 48, "entity": 64, "genre": 32, "domain": 16, "format": FORMATS, "style": STYLE_DIM}
# Where a query's candidate comes from (retrieval mix): same clip, same entity, same genre, same domain, any.
RELATIONS = ("clip", "entity", "genre", "domain", "any")
RELATION_P = (0.08, 0.24, 0.26, 0.14, 0.28)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much to write (the defaults: the demo's sizes)."""

    pointwise_files: int = 2
    pointwise_per_file: int = 2_500
    queries: int = 1_500
    pairs: int = 3_500
    test_videos: int = 5_000
    domains: int = 12
    genres_per_domain: tuple[int, int] = (4, 10)
    entities_per_genre: tuple[int, int] = (10, 40)
    tail_tags: int = 20_000
    frame_scale: float = 0.5

    def __post_init__(self):
        for name in ("pointwise_files", "pointwise_per_file", "queries", "pairs", "test_videos", "domains"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pairs < self.queries:
            raise ValueError(f"pairs ({self.pairs}) must be at least queries ({self.queries})")


TINY = Sizes(pointwise_files=1, pointwise_per_file=150, queries=60, pairs=150, test_videos=120, domains=4,
             genres_per_domain=(2, 3), entities_per_genre=(3, 6), tail_tags=500)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _words(rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """``(content words, fillers)`` from jieba's dictionary: fillers are its most frequent words."""
    from tfrecord_tools.synth import jieba_dict_path

    rows = []
    with open(jieba_dict_path(), encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) == 3 and 2 <= len(parts[0]) <= 4 and parts[0].isalpha():
                rows.append((int(parts[1]), parts[0], parts[2]))
    rows.sort(key=lambda row: -row[0])
    fillers = [word for _, word, _ in rows[:400]]
    content = [word for count, word, pos in rows[400:60_000] if pos.startswith(("n", "v", "a"))]
    rng.shuffle(content)
    return content, fillers


@dataclasses.dataclass
class World:
    """The concept tree, its words, tags and visual prototypes; drawn once per seed."""

    sizes: Sizes
    entity_genre: np.ndarray  # [E]
    genre_domain: np.ndarray  # [G]
    entity_p: np.ndarray  # Zipf popularity
    blocks: dict  # name -> unit vectors per value of that part
    visual_genre: np.ndarray  # [G, V]
    visual_entity: np.ndarray  # [E, 3, V]
    visual_format: np.ndarray  # [F, V]
    generic_shots: np.ndarray  # [12, V]
    projection: np.ndarray  # [V + N, FRAME_DIM]
    bias: np.ndarray
    gain: np.ndarray
    entity_words: list
    genre_words: list
    domain_words: list
    format_words: list
    hype_words: list
    fillers: list
    genre_tags: np.ndarray  # [G, 4]
    entity_tags: list  # per entity, 0-2 tag ids
    format_tags: np.ndarray  # [F]
    tail_tags: np.ndarray
    category_ids: np.ndarray  # [G]


def build_world(sizes: Sizes, seed: int) -> World:
    """The concept tree (domains > genres > Zipf-popular entities), its words, tags, visual prototypes and
    the frame features' projection, all from ``seed``."""
    rng = np.random.default_rng([seed, 7001])
    genres_per_domain = rng.integers(sizes.genres_per_domain[0], sizes.genres_per_domain[1] + 1, sizes.domains)
    genre_domain = np.repeat(np.arange(sizes.domains), genres_per_domain)
    n_genres = len(genre_domain)
    entities_per_genre = rng.integers(sizes.entities_per_genre[0], sizes.entities_per_genre[1] + 1, n_genres)
    entity_genre = np.repeat(np.arange(n_genres), entities_per_genre)
    n_entities = len(entity_genre)
    entity_p = 1.0 / np.arange(1, n_entities + 1) ** 0.9
    entity_p = rng.permutation(entity_p / entity_p.sum())
    blocks = {"entity": _unit(rng, n_entities, BLOCK_DIMS["entity"]),
              "genre": _unit(rng, n_genres, BLOCK_DIMS["genre"]),
              "domain": _unit(rng, sizes.domains, BLOCK_DIMS["domain"]),
              "format": np.eye(FORMATS)}
    visual_domain = rng.normal(size=(sizes.domains, VISUAL_DIM))
    visual_genre = 0.8 * visual_domain[genre_domain] + rng.normal(size=(n_genres, VISUAL_DIM))
    visual_entity = (0.9 * visual_genre[entity_genre][:, None, :]
                     + 0.8 * rng.normal(size=(n_entities, 1, VISUAL_DIM))
                     + 0.5 * rng.normal(size=(n_entities, 3, VISUAL_DIM)))
    # a sparse random projection, then a ReLU: about a third of the features fire on a frame
    projection = rng.normal(size=(VISUAL_DIM + NUISANCE_DIM, schema.FRAME_DIM))
    projection *= rng.random(projection.shape) < 0.25
    projection[VISUAL_DIM:] *= 3.0  # the nuisance (lighting, encoding) is strong
    gain = np.exp(rng.normal(0.0, 0.7, schema.FRAME_DIM)) * 0.12
    content, fillers = _words(rng)
    take = iter(content)

    def words(n: int) -> list[str]:
        return [next(take) for _ in range(n)]

    entity_words = [words(int(rng.integers(1, 4))) for _ in range(n_entities)]
    genre_words = [words(10) for _ in range(n_genres)]
    domain_words = [words(6) for _ in range(sizes.domains)]
    format_words = [words(3) for _ in range(FORMATS)]
    hype_words = words(40)
    tag_pool = rng.choice(np.arange(1, 400_000), n_genres * 4 + n_entities * 2 + FORMATS + sizes.tail_tags,
                          replace=False)
    genre_tags = tag_pool[:n_genres * 4].reshape(n_genres, 4)
    cursor = n_genres * 4
    entity_tags = []
    for entity in range(n_entities):
        count = int(rng.integers(0, 3)) if entity_p[entity] > np.median(entity_p) else 0
        entity_tags.append(tag_pool[cursor:cursor + count])
        cursor += 2
    format_tags = tag_pool[cursor:cursor + FORMATS]
    tail_tags = tag_pool[cursor + FORMATS:]
    category_ids = np.array([10000 + 100 * (d + 1) + g for g, d in enumerate(genre_domain)])
    return World(sizes, entity_genre, genre_domain, entity_p, blocks, visual_genre, visual_entity,
                 rng.normal(size=(FORMATS, VISUAL_DIM)), 1.5 * rng.normal(size=(12, VISUAL_DIM)), projection,
                 np.full(schema.FRAME_DIM, -0.5), gain, entity_words, genre_words, domain_words,
                 format_words, hype_words, fillers, genre_tags, entity_tags, format_tags, tail_tags, category_ids)


@dataclasses.dataclass
class Videos:
    """What defines each video (arrays of one row per video)."""

    entity: np.ndarray
    fmt: np.ndarray
    style: np.ndarray  # [n, STYLE_DIM] unit rows
    clip: np.ndarray  # source clip id, -1 for none
    clip_vectors: dict  # clip id -> unit vector (shared by its re-uploads)

    def __len__(self) -> int:
        return len(self.entity)

    def part(self, rows: slice) -> "Videos":
        """The videos of ``rows`` (sharing the clip vectors)."""
        return Videos(self.entity[rows], self.fmt[rows], self.style[rows], self.clip[rows], self.clip_vectors)


def draw_videos(world: World, rng: np.random.Generator, n: int) -> Videos:
    """``n`` unrelated videos (popular entities more often), none a re-upload: the pretraining videos."""
    entity = rng.choice(len(world.entity_genre), n, p=world.entity_p)
    fmt = rng.integers(0, FORMATS, n)
    return Videos(entity, fmt, _unit(rng, n, STYLE_DIM), np.full(n, -1), {})


def latents(world: World, videos: Videos, rng: np.random.Generator) -> np.ndarray:
    """Unit rows whose dot products are the true similarity (a video of no shared clip gets a clip
    block of its own, drawn from ``rng``)."""
    genre = world.entity_genre[videos.entity]
    parts = {"entity": world.blocks["entity"][videos.entity], "genre": world.blocks["genre"][genre],
             "domain": world.blocks["domain"][world.genre_domain[genre]],
             "format": world.blocks["format"][videos.fmt], "style": videos.style}
    clip = _unit(rng, len(videos), BLOCK_DIMS["clip"])
    for row in np.flatnonzero(videos.clip >= 0):
        clip[row] = videos.clip_vectors[int(videos.clip[row])]
    parts["clip"] = clip
    out = np.concatenate([np.sqrt(TRUTH_WEIGHTS[name]) * parts[name] for name in BLOCK_DIMS], axis=1)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def render_frames(world: World, rng: np.random.Generator, videos: Videos, row: int) -> np.ndarray:
    """float16 ``[frames, FRAME_DIM]`` of one video: its shots in order, motion, per-video nuisance,
    then the sparse projection and ReLU (re-uploads of one clip share its shots)."""
    count = int(max(5, round(rng.choice(_FRAME_COUNTS, p=_FRAME_P) * world.sizes.frame_scale)))
    entity = int(videos.entity[row])
    source = int(videos.clip[row])
    shot_rng = np.random.default_rng([source, 4242]) if source >= 0 else rng
    n_shots = int(shot_rng.integers(2, 7))
    shots = []
    for _ in range(n_shots):
        kind = shot_rng.random()
        if kind < 0.55:
            base = world.visual_entity[entity, shot_rng.integers(0, 3)]
        elif kind < 0.8:
            base = world.visual_genre[world.entity_genre[entity]]
        else:
            base = world.generic_shots[shot_rng.integers(0, len(world.generic_shots))]
        shots.append(base + 0.7 * world.visual_format[videos.fmt[row]] + 0.2 * videos.style[row].repeat(8)
                     + 0.6 * shot_rng.normal(size=VISUAL_DIM))
    shots = np.array(shots)
    bounds = np.sort(rng.choice(np.arange(1, count), min(n_shots - 1, count - 1), replace=False))
    per_frame = shots[np.searchsorted(bounds, np.arange(count), side="right")]
    per_frame = per_frame + 0.35 * rng.normal(size=per_frame.shape)  # motion
    nuisance = np.repeat(rng.normal(size=(1, NUISANCE_DIM)), count, axis=0) + 0.2 * rng.normal(size=(count, NUISANCE_DIM))
    hidden = np.concatenate([per_frame, nuisance], axis=1) / np.sqrt(VISUAL_DIM)
    activation = np.maximum(hidden @ world.projection + world.bias, 0.0) * world.gain
    brightness = np.exp(rng.normal(0.0, 0.3))
    return (activation * brightness).astype(np.float16)


_FRAME_COUNTS = np.array(list(synth_stats.FRAME_COUNT_HISTOGRAM))
_FRAME_P = np.array(list(synth_stats.FRAME_COUNT_HISTOGRAM.values()), dtype=np.float64)
_FRAME_P /= _FRAME_P.sum()


def render_text(world: World, rng: np.random.Generator, videos: Videos, row: int) -> tuple[str, str]:
    """``(title, asr_text)`` of one video (the ASR is ``nan`` for 40% of videos)."""
    entity = int(videos.entity[row])
    genre = int(world.entity_genre[entity])
    fmt = int(videos.fmt[row])
    pieces = list(rng.choice(world.fillers, int(rng.integers(2, 6))))
    if rng.random() < 0.15:  # clickbait: hype and fillers only
        pieces += list(rng.choice(world.hype_words, 3))
    else:
        if rng.random() < 0.6:
            pieces += world.entity_words[entity]
        pieces += list(rng.choice(world.genre_words[genre], int(rng.integers(0, 3))))
        if rng.random() < 0.5:
            pieces.append(str(rng.choice(world.format_words[fmt])))
        if rng.random() < 0.2:
            pieces.append(str(rng.choice(world.domain_words[world.genre_domain[genre]])))
        if rng.random() < 0.3:
            pieces += list(rng.choice(world.hype_words, int(rng.integers(1, 3))))
    rng.shuffle(pieces)
    title = "".join(pieces) + ("！" if rng.random() < 0.3 else "")
    if rng.random() < 0.4:
        asr = schema.MISSING_ASR
    else:
        words = list(rng.choice(world.fillers, int(rng.integers(10, 40))))
        words += list(rng.choice(world.genre_words[genre], int(rng.integers(0, 4))))
        if rng.random() < 0.3:
            words += world.entity_words[entity]
        rng.shuffle(words)
        asr = "".join(words)
    return title, asr


def render_tags(world: World, rng: np.random.Generator, videos: Videos, row: int) -> tuple[list[int], int]:
    """``(sorted tag ids, category id)`` of one video: genre, entity and format tags among tail tags."""
    entity = int(videos.entity[row])
    genre = int(world.entity_genre[entity])
    tags = []
    if rng.random() < 0.7:
        tags += list(rng.choice(world.genre_tags[genre], int(rng.integers(1, 3)), replace=False))
    if len(world.entity_tags[entity]) and rng.random() < 0.5:
        tags += list(world.entity_tags[entity])
    if rng.random() < 0.6:
        tags.append(world.format_tags[videos.fmt[row]])
    tags += list(rng.choice(world.tail_tags, int(rng.integers(1, 4))))
    category = world.category_ids[genre] if rng.random() > 0.1 else rng.choice(world.category_ids)
    return sorted({int(t) for t in tags}), int(category)


def write_videos(path: str, world: World, rng: np.random.Generator, videos: Videos, ids: Sequence[str],
                 kind: schema.RecordKind, tag_counts: dict | None, bar) -> None:
    """One TFRecord file of ``videos`` (atomically); counts the tags into ``tag_counts`` when given."""
    from tfrecord_tools.writer import AtomicRecordWriter, serialize_video

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with AtomicRecordWriter(path) as writer:
        for row, video_id in enumerate(ids):
            title, asr = render_text(world, rng, videos, row)
            video = {"id": video_id, "title": title, "asr_text": asr, "frames": render_frames(world, rng, videos, row)}
            if kind != schema.RecordKind.TEST:
                video["tag_id"], video["category_id"] = render_tags(world, rng, videos, row)
                if tag_counts is not None:
                    for tag in video["tag_id"]:
                        tag_counts[tag] = tag_counts.get(tag, 0) + 1
            writer.write(serialize_video(video, kind))
            bar.update(1)


def draw_graph(world: World, rng: np.random.Generator, queries: int, pairs: int,
               first_clip: int) -> tuple[Videos, np.ndarray, np.ndarray]:
    """Videos and (query, candidate) rows of a label graph: each query gets at least one candidate,
    the rest spread unevenly (`_skewed`); a candidate is a new video of the drawn relation or, a third of the
    time, an earlier video of that relation."""
    counts = np.ones(queries, dtype=np.int64)
    np.add.at(counts, rng.choice(queries, pairs - queries, p=_skewed(rng, queries)), 1)
    entity, fmt, clip = [], [], []
    clip_vectors = {}
    by_entity: dict[int, list[int]] = {}
    next_clip = first_clip
    q_rows, c_rows = [], []

    def add(e: int, source: int) -> int:
        entity.append(e)
        fmt.append(int(rng.integers(0, FORMATS)))
        clip.append(source)
        by_entity.setdefault(e, []).append(len(entity) - 1)
        return len(entity) - 1

    n_entities = len(world.entity_genre)
    genre_members = [np.flatnonzero(world.entity_genre == g) for g in range(len(world.genre_domain))]
    domain_members = [np.flatnonzero(world.genre_domain[world.entity_genre] == d) for d in range(world.sizes.domains)]
    for q in range(queries):
        query = add(int(rng.choice(n_entities, p=world.entity_p)), -1)
        chosen: set[int] = set()  # a pair is listed once
        for _ in range(counts[q]):
            relation = RELATIONS[rng.choice(len(RELATIONS), p=RELATION_P)]
            e = entity[query]
            if relation == "clip":
                if clip[query] < 0:
                    clip[query] = next_clip
                    clip_vectors[next_clip] = _unit(rng, 1, BLOCK_DIMS["clip"])[0]
                    next_clip += 1
                candidate = add(e, clip[query])
                fmt[candidate] = fmt[query] if rng.random() < 0.7 else fmt[candidate]
            else:
                if relation == "entity":
                    e2 = e
                elif relation == "genre":
                    e2 = int(rng.choice(genre_members[world.entity_genre[e]]))
                elif relation == "domain":
                    e2 = int(rng.choice(domain_members[world.genre_domain[world.entity_genre[e]]]))
                else:
                    e2 = int(rng.choice(n_entities, p=world.entity_p))
                earlier = [v for v in by_entity.get(e2, []) if v != query and v not in chosen]
                candidate = int(rng.choice(earlier)) if earlier and rng.random() < 0.33 else add(e2, -1)
            chosen.add(candidate)
            q_rows.append(query)
            c_rows.append(candidate)
    n = len(entity)
    videos = Videos(np.array(entity), np.array(fmt), _unit(rng, n, STYLE_DIM), np.array(clip), clip_vectors)
    # re-uploads share most of their style
    for row in np.flatnonzero(videos.clip >= 0):
        base = np.random.default_rng([int(videos.clip[row]), 5]).normal(size=STYLE_DIM)
        mixed = base / np.linalg.norm(base) + 0.3 * videos.style[row]
        videos.style[row] = mixed / np.linalg.norm(mixed)
    return videos, np.array(q_rows), np.array(c_rows)


def _skewed(rng: np.random.Generator, n: int) -> np.ndarray:
    """Skewed weights over the queries: a few get many candidates, most get one or two."""
    weights = rng.exponential(1.0, n) ** 2
    return weights / weights.sum()


def draw_labels(rng: np.random.Generator, similarity: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Scores on the 0.05 grid with the real distribution: each query's rater has its own bias and
    noise, and raters judge a saturating transform of the true similarity."""
    unique, which = np.unique(queries, return_inverse=True)
    bias = rng.normal(0.0, 0.06, len(unique))[which]
    noise = rng.uniform(0.03, 0.15, len(unique))[which]
    judged = np.tanh(2.2 * similarity) + bias + noise * rng.normal(size=len(similarity))
    return synth_stats.quantile_map(judged)


def video_ids(rng: np.random.Generator, n: int, taken: set) -> list[str]:
    """``n`` new decimal ids of 18-19 digits, none in ``taken`` (which they join)."""
    out = []
    while len(out) < n:
        value = str(int(rng.integers(10**17, 9 * 10**18)))
        if value not in taken:
            taken.add(value)
            out.append(value)
    return out


def generate(out_dir: str, seed: int = 0, sizes: Sizes = Sizes(), overwrite: bool = False,
             progress: bool = True) -> dict:
    """Write the data set; returns its meta (also in ``foreign_meta.json``)."""
    from tqdm import tqdm

    if os.path.exists(os.path.join(out_dir, layout.PAIRWISE_DIR, layout.LABEL_FILE)) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a data set; pass --overwrite to replace it")
    pointwise_dir = os.path.join(out_dir, layout.POINTWISE_DIR)
    if os.path.isdir(pointwise_dir):  # another size may write fewer files: none of the old ones may stay
        for name in os.listdir(pointwise_dir):
            if name.startswith("pretrain_") and name.endswith(layout.RECORD_SUFFIX):
                os.remove(os.path.join(pointwise_dir, name))
    world = build_world(sizes, seed)
    rng = np.random.default_rng([seed, 7002])
    taken: set = set()
    pair_videos, q, c = draw_graph(world, rng, sizes.queries, sizes.pairs, first_clip=0)
    pair_truth = latents(world, pair_videos, rng)
    similarity = np.einsum("ij,ij->i", pair_truth[q], pair_truth[c])
    labels = draw_labels(rng, similarity, q)
    test_queries = max(2, round(sizes.test_videos * sizes.queries / len(pair_videos)))
    test_videos, tq, tc = draw_graph(world, rng, test_queries, round(test_queries * sizes.pairs / sizes.queries),
                                     first_clip=10**6)
    test_truth = latents(world, test_videos, rng)
    test_similarity = np.einsum("ij,ij->i", test_truth[tq], test_truth[tc])
    test_labels = draw_labels(rng, test_similarity, tq)
    pointwise = draw_videos(world, rng, sizes.pointwise_files * sizes.pointwise_per_file)

    total = len(pointwise) + len(pair_videos) + len(test_videos)
    bar = tqdm(total=total, unit="video", desc="foreign world", disable=not progress, dynamic_ncols=True,
               mininterval=1.0)
    tag_counts: dict = {}
    for f in range(sizes.pointwise_files):
        chunk = pointwise.part(slice(f * sizes.pointwise_per_file, (f + 1) * sizes.pointwise_per_file))
        write_videos(os.path.join(out_dir, layout.POINTWISE_DIR, f"pretrain_{f}.tfrecords"), world, rng, chunk,
                     video_ids(rng, len(chunk), taken), schema.RecordKind.POINTWISE, tag_counts, bar)
    pair_ids = video_ids(rng, len(pair_videos), taken)
    write_videos(layout.pairwise_file(out_dir), world, rng, pair_videos, pair_ids, schema.RecordKind.PAIRWISE,
                 None, bar)
    test_ids = video_ids(rng, len(test_videos), taken)
    write_videos(os.path.join(out_dir, layout.TEST_DIR, "test_a.tfrecords"), world, rng, test_videos, test_ids,
                 schema.RecordKind.TEST, None, bar)
    bar.close()

    write_text_atomic(layout.label_file(out_dir), "".join(
        f"{pair_ids[a]}\t{pair_ids[b]}\t{synth_stats.format_score(s)}\n" for a, b, s in zip(q, c, labels)))
    ranked = sorted(tag_counts, key=lambda tag: (-tag_counts[tag], tag))[:schema.NUM_TAGS]
    write_text_atomic(os.path.join(out_dir, layout.TAG_LIST), "".join(f"{tag}\n" for tag in ranked))
    meta = {"generator": "bench.foreign_world", "seed": int(seed), "sizes": dataclasses.asdict(sizes),
            "truth_weights": TRUTH_WEIGHTS, "relations": dict(zip(RELATIONS, RELATION_P)),
            "counts": {"pointwise_videos": len(pointwise), "pairwise_videos": len(pair_videos), "pairs": len(labels),
                       "test_videos": len(test_videos), "test_pairs": len(test_labels),
                       "entities": len(world.entity_genre), "genres": len(world.genre_domain)},
            "oracle_spearman": float(scipy.stats.spearmanr(similarity, labels)[0]),
            "test_oracle_spearman": float(scipy.stats.spearmanr(test_similarity, test_labels)[0])}
    path = os.path.join(out_dir, STORED_TRUTH)
    temporary = path + ".tmp.npz"
    np.savez(temporary, ids=np.array(test_ids), latents=test_truth, edge_first=tq.astype(np.int64),
             edge_second=tc.astype(np.int64), edge_labels=np.asarray(test_labels, dtype=np.float64),
             labelled_similarity=similarity, labelled_ids=np.array(pair_ids), labelled_latents=pair_truth,
             meta=np.array(json.dumps(meta)))
    os.replace(temporary, path)
    write_text_atomic(os.path.join(out_dir, FOREIGN_META), json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.foreign_world", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory (the official layout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-videos", type=int, default=None,
                        help="about this many test videos, drawn along a label graph (default: the size's)")
    parser.add_argument("--size", choices=("demo", "tiny"), default="demo")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    sizes = TINY if args.size == "tiny" else Sizes()
    if args.test_videos is not None:
        sizes = dataclasses.replace(sizes, test_videos=args.test_videos)
    try:
        meta = generate(args.out, args.seed, sizes, args.overwrite, progress=not args.quiet)
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, **meta["counts"], "oracle_spearman": round(meta["oracle_spearman"], 4),
                      "test_oracle_spearman": round(meta["test_oracle_spearman"], 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
