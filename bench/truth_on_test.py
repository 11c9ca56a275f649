"""What a run submits, scored on the held-out test videos against the synthetic ground truth.

    python -m bench.truth_on_test --data DATA RUN [--systems NAME ...] [--reference baseline:linear_metric]
                                  [--folds 0 1] [--bins 20] [--pairs-per-bin 1000] [--seed 0]
                                  [--draws 1000] [--level 0.9] [--max-videos 5000] [--sample auto|bins|graph]
                                  [--json OUT]

The out-of-fold validation pairs are few (638 in the demo); the test videos are many and their true
latents are known (``tfrecord_tools.synth.true_latents``, preset, seed, world and label graph read
from ``DATA/synth_meta.json``). Two scores per system, both Spearman of its cosines:

* ``labels``: on a graph-like sample of the test pairs (all pairs i < j): [-1, 1] is cut into
  ``--bins`` bins at the quantiles of the labelled pairs' true similarity, up to ``--pairs-per-bin``
  pairs are drawn from each, and grid labels are drawn for them as the generator draws the label
  file's (``synth.draw_labels`` with the world's label noise). Comparable with the out-of-fold
  figures where every bin fills; the oracle (true similarity vs these labels) is printed alongside.
  The test videos are drawn independently, so they hold few near-duplicates: the closest bins often
  go short (on the held-out synthetic draws, the labelled pairs' top 5-40%), and a ``note:`` line
  says so. Then these scores rank mostly moderately related videos, while the out-of-fold figures
  also rank the closest pairs (``sample.coverage`` in the JSON: `sample_coverage`).
  Where the data set was generated with ``--test-graph`` (its test videos drawn along a label graph
  of the labelled pairs' shape), the sample is that graph's edges instead (``--sample graph``, the
  default there): the pairs a labeller would have been given, near-duplicates included, labelled
  as the label file is, so the scores are the out-of-fold figures' exact counterpart on unseen videos.
* ``truth``: vs the true similarity over every test pair (no label noise; the oracle is 1).

Systems: a model ``NAME`` (``RUN/embeddings/NAME``: its fold models ``fold_XX/test.npz`` and the fold
average ``avg/test.npz`` that ``ensemble_final.py`` writes and the submission uses), a strong
baseline ``baseline:NAME`` (``RUN/baselines/NAME/fold_XX/test.npz``; its fold average is computed
here with ``ensemble.fold_average.average_folds``) and ``submission`` (``RUN/result.zip``). By
default every model of the run, ``baseline:linear_metric`` and the submission, where present.
"mean fold" is the mean of the fold models' scores. Each fold average (and the submission) is
compared with ``--reference``'s fold average by a paired bootstrap (``--draws`` resamples, one for
every system): the difference and its ``--level`` interval. ``--resample videos`` (the default)
resamples the test videos and keeps the sampled pairs between drawn videos, since pairs sharing a
video share its errors (somewhat conservative); ``pairs`` resamples the pairs alone (about half as
wide on 1,000 videos, too narrow for that reason).

Above ``--max-videos`` test videos a seeded random subset of them is used (said in the output).

A generator whose truth cannot be re-drawn from a ``synth_meta.json`` stores it in ``DATA/test_truth.npz``
(``STORED_TRUTH``, ``np.savez``; read first where present): ``ids`` (str [n], the test videos), ``latents``
(float64 [n, d], unit rows: a pair's true similarity is their dot product), the test videos' label graph
``edge_first`` / ``edge_second`` (int64 [m], rows of ``ids``) with the label each edge was given,
``edge_labels`` (float64 [m], scores like label.tsv's), ``labelled_similarity`` (float64 [k], the
labelled training pairs' true similarity) and ``meta`` (a 0-d str array: a JSON object with at least
``generator`` and ``seed``). The ``labels`` sample is then that graph's edges with their stored labels
(``--sample graph``, auto's choice; ``bins`` needs a label model the file does not hold, an error) and
the report's ``label_noise`` is null.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.stats

from bench.margin_interval import BASELINE_PREFIX, system_dir
from infer.embeddings_io import EmbeddingSet, l2_normalize, load_embedding_set
from tfrecord_tools import cli, layout
from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.errors import DataError

SUBMISSION = "submission"
DEFAULT_REFERENCE = BASELINE_PREFIX + "linear_metric"
NO_REFERENCE = "none"
RESAMPLE = ("videos", "pairs")
SAMPLES = ("auto", "bins", "graph")
STORED_TRUTH = layout.TEST_TRUTH  # DATA/test_truth.npz: a generator's stored truth (see the module docstring)
STORED_KEYS = ("ids", "latents", "edge_first", "edge_second", "edge_labels", "labelled_similarity", "meta")
UNIT_TOLERANCE = 1e-6  # how far a stored latent's norm may be from 1


@dataclasses.dataclass(frozen=True)
class TestTruth:
    """The test videos' true latents (unit rows, in ``ids`` order) and the labelled pairs' true similarity."""

    ids: list[str]
    latents: np.ndarray
    labelled_similarity: np.ndarray
    label_noise: float | None  # None: a stored truth (its labels are stored, no noise to draw them with)
    meta: dict  # preset, seed, world, label graph of the data set (a stored truth: its own meta)
    edges: tuple[np.ndarray, np.ndarray] | None = None  # the test videos' label graph (rows), if drawn along one
    edge_labels: np.ndarray | None = None  # a stored truth's label of each edge (else labels are drawn)

    @property
    def stored(self) -> bool:
        """Read from ``DATA/test_truth.npz`` (labels stored with the graph), not re-drawn from the meta."""
        return self.edge_labels is not None


@dataclasses.dataclass(frozen=True)
class SystemSets:
    """One system's embedding sets of the test videos: per fold (none for the submission) and averaged."""

    name: str
    folds: dict[int, EmbeddingSet]
    average: EmbeddingSet
    average_source: str  # the file read, or how the average was made


def read_truth(data: str) -> TestTruth:
    """The ground truth behind ``DATA``: its stored ``test_truth.npz`` where there is one (`read_stored_truth`),
    else re-drawn without rendering from its ``synth_meta.json``."""
    stored = os.path.join(data, STORED_TRUTH)
    if os.path.isfile(stored):
        return read_stored_truth(stored)
    from tfrecord_tools import synth

    path = os.path.join(data, layout.SYNTH_META)
    if not os.path.isfile(path):
        raise DataError(path, None, f"not found, nor {STORED_TRUTH}: DATA must be a synthetic data set "
                                    f"(tfrecord_tools.synth writes {layout.SYNTH_META}; a generator whose truth "
                                    f"cannot be re-drawn stores it in {STORED_TRUTH})")
    with open(path, encoding="utf-8") as handle:
        meta = json.load(handle)
    graph = meta.get("label_graph") or {}
    world = (meta.get("world") or {}).get("name", "demo")
    truth = synth.true_latents_of(meta)
    preset = synth.world_spec(world).apply(synth.PRESETS[meta["preset"]])
    pairs = synth.pair_ground_truth(preset, meta["seed"], graph.get("path"), graph.get("limit_pairs"))
    ids, latents = truth["test"]
    return TestTruth(list(ids), np.asarray(latents, dtype=np.float64), np.asarray(pairs.similarity, dtype=np.float64),
                     float(preset.model.label_noise),
                     {"preset": meta["preset"], "seed": meta["seed"], "world": world, "label_graph": graph or None,
                      "test_graph": bool(meta.get("test_graph", False))},
                     truth.get("test_edges"))


def _stored_array(path: str, arrays: Mapping, key: str, ndim: int, kinds: str, what: str) -> np.ndarray:
    """``arrays[key]`` checked for its number of dimensions and dtype kind; DataError naming the field."""
    value = arrays[key]
    if value.ndim != ndim or value.dtype.kind not in kinds:
        raise DataError(path, key, f"expected {what}, got {value.dtype} of shape {value.shape}")
    return value


def _finite(path: str, key: str, value: np.ndarray) -> np.ndarray:
    """``value`` as float64; DataError naming the field where one is NaN or infinite."""
    value = value.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(value.reshape(len(value), -1)).all(axis=1)) if value.size else []
    if len(bad):
        raise DataError(path, key, f"{len(bad)} row(s) not finite, first row {bad[0]}")
    return value


def read_stored_truth(path: str) -> TestTruth:
    """A generator's stored truth (``DATA/test_truth.npz``, see the module docstring), checked: every key
    present, shapes consistent, edges rows of ``ids``, latents finite unit rows; a DataError naming the
    file and the field otherwise. Its meta is the file's (``generator``, ``seed``, ...) and ``test_graph``."""
    import zipfile

    from infer.embeddings_io import as_id_array, check_unique_ids

    try:
        with np.load(path, allow_pickle=False) as handle:
            missing = [key for key in STORED_KEYS if key not in handle.files]
            if missing:
                raise DataError(path, missing[0], f"missing ({len(missing)} key(s) missing: {missing}; "
                                                  f"{STORED_TRUTH} holds {list(STORED_KEYS)})")
            arrays = {key: handle[key] for key in STORED_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(path, None, f"not a readable .npz of arrays ({error})") from error
    ids = as_id_array(_stored_array(path, arrays, "ids", 1, "U", "a 1-D array of str ids"), path, "ids")
    check_unique_ids(ids, path, "ids")
    count = len(ids)
    latents = _stored_array(path, arrays, "latents", 2, "fiu", "a 2-D float array [n, d]")
    if latents.shape[0] != count or latents.shape[1] < 1:
        raise DataError(path, "latents", f"shape {latents.shape}, expected ({count}, d >= 1): one row per id")
    latents = _finite(path, "latents", latents)
    off = np.flatnonzero(np.abs(np.linalg.norm(latents, axis=1) - 1) > UNIT_TOLERANCE)
    if len(off):
        raise DataError(path, "latents", f"{len(off)} row(s) not of unit norm, first row {off[0]} "
                                         f"(norm {np.linalg.norm(latents[off[0]]):.6g})")
    first = _stored_array(path, arrays, "edge_first", 1, "iu", "a 1-D int array of rows of ids")
    second = _stored_array(path, arrays, "edge_second", 1, "iu", "a 1-D int array of rows of ids")
    labels = _stored_array(path, arrays, "edge_labels", 1, "fiu", "a 1-D float array, one label per edge")
    for key, value in (("edge_second", second), ("edge_labels", labels)):
        if len(value) != len(first):
            raise DataError(path, key, f"{len(value)} entries for the {len(first)} edges of edge_first")
    for key, value in (("edge_first", first), ("edge_second", second)):
        out = np.flatnonzero((value < 0) | (value >= count))
        if len(out):
            raise DataError(path, key, f"{len(out)} edge(s) out of range, first edge {out[0]}: row {value[out[0]]} "
                                       f"of {count} ids")
    labels = _finite(path, "edge_labels", labels)
    labelled = _finite(path, "labelled_similarity", _stored_array(
        path, arrays, "labelled_similarity", 1, "fiu", "a 1-D float array"))
    meta_text = _stored_array(path, arrays, "meta", 0, "U", "a 0-d str array holding a JSON object")
    try:
        meta = json.loads(str(meta_text))
    except json.JSONDecodeError as error:
        raise DataError(path, "meta", f"not JSON ({error})") from error
    if not isinstance(meta, dict):
        raise DataError(path, "meta", f"expected a JSON object, got {type(meta).__name__}")
    lacking = [key for key in ("generator", "seed") if key not in meta]
    if lacking:
        raise DataError(path, "meta", f"lacks {lacking} (a stored truth's meta names at least its generator "
                                      "and seed)")
    return TestTruth(ids.tolist(), latents, labelled, None, {**meta, "test_graph": True},
                     (first.astype(np.int64), second.astype(np.int64)), labels)


def choose_videos(count: int, max_videos: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of the test videos to use: all of them, or a random ``max_videos`` (sorted) above that."""
    if max_videos < 2:
        raise ValueError(f"max_videos must be at least 2, got {max_videos}")
    if count <= max_videos:
        return np.arange(count)
    return np.sort(rng.choice(count, max_videos, replace=False))


def sample_pairs(similarity: np.ndarray, labelled: np.ndarray, bins: int, per_bin: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[int], list[float]]:
    """``(indices into similarity, pairs drawn per bin, inner bin edges)``: up to ``per_bin`` pairs from
    each of ``bins`` bins of [-1, 1] cut at the quantiles of ``labelled``, so the sample's true
    similarity is spread like the labelled pairs'."""
    if bins < 1 or per_bin < 1:
        raise ValueError(f"bins and pairs per bin must be positive, got {bins} and {per_bin}")
    edges = np.quantile(labelled, np.linspace(0, 1, bins + 1))[1:-1]
    which = np.searchsorted(edges, similarity, side="right")
    chosen = []
    for number in range(bins):
        members = np.flatnonzero(which == number)
        chosen.append(rng.choice(members, min(len(members), per_bin), replace=False))
    return np.concatenate(chosen), [len(c) for c in chosen], edges.tolist()


def graph_sample(edges: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Positions in `pair_cosines` order (over the test videos ``rows``, sorted) of the label graph's
    ``edges`` (rows of the whole test set) whose two videos are both used, each pair once, in edge order."""
    return graph_sample_edges(edges, rows)[0]


def graph_sample_edges(edges: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`graph_sample`'s positions and, aligned with them, the indices of the edges they come from: edges
    whose videos are not both among ``rows`` and self pairs are dropped, a repeated pair (either way round)
    keeps its first edge."""
    first, second = (np.asarray(e, dtype=np.int64) for e in edges)
    count = len(rows)
    keep = np.isin(first, rows) & np.isin(second, rows)
    index = np.flatnonzero(keep)
    a, b = np.searchsorted(rows, first[keep]), np.searchsorted(rows, second[keep])
    low, high = np.minimum(a, b), np.maximum(a, b)
    keep = low < high
    low, high, index = low[keep], high[keep], index[keep]
    position = low * (2 * count - low - 1) // 2 + (high - low - 1)
    _, first_seen = np.unique(position, return_index=True)
    order = np.sort(first_seen)
    return position[order], index[order]


def fold_numbers(directory: str, folds: Sequence[int] | None) -> list[int]:
    """``folds``, or every ``fold_XX`` directory under ``directory``."""
    if folds is not None:
        return list(folds)
    found = sorted(int(m.group(1)) for m in map(layout.FOLD_DIR.match, os.listdir(directory)) if m)
    if not found:
        raise DataError(directory, None, "no fold_XX directories (fold models' test embeddings)")
    return found


def read_submission(path: str) -> EmbeddingSet:
    """The vectors of a ``result.zip`` (``result.json``: test id -> list of floats), L2-normalised."""
    from search.vectors import open_vectors

    source = open_vectors(path)
    matrix = np.concatenate([chunk for _, chunk in source.chunks()])
    return EmbeddingSet(source.ids, matrix, None, path)


def load_system(run: str, name: str, folds: Sequence[int] | None = None, baselines: str | None = None) -> SystemSets:
    """A model's, a baseline's (``baseline:NAME``) or the submission's test embeddings in ``run``
    (a baseline's in ``baselines`` where given: another `infer.baselines --out` directory)."""
    if name == SUBMISSION:
        path = os.path.join(run, layout.RESULT_ZIP)
        if not os.path.isfile(path):
            raise DataError(path, None, "no submission (ensemble_final.py writes it)")
        return SystemSets(name, {}, read_submission(path), path)
    directory = system_dir(run, name, baselines)
    if not os.path.isdir(directory):
        raise DataError(directory, None, f"no such system {name!r} (a model of {layout.EMBEDDINGS_DIR}/, "
                                         f"baseline:<name> of {layout.BASELINES_DIR}/ or {SUBMISSION!r})")
    fold_sets = {}
    for fold in fold_numbers(directory, folds):
        path = os.path.join(directory, layout.fold_name(fold), layout.TEST_EMBEDDINGS)
        if not os.path.isfile(path):
            raise DataError(path, None, f"no test embeddings of fold {fold}")
        fold_sets[fold] = load_embedding_set(path)
    if name.startswith(BASELINE_PREFIX):
        from ensemble.fold_average import average_folds

        average = average_folds(fold_sets.values(), name=f"{directory} (average of folds {sorted(fold_sets)})")
        return SystemSets(name, fold_sets, average, "average_folds of the fold models")
    path = os.path.join(directory, layout.AVERAGE_DIR, layout.TEST_EMBEDDINGS)
    if not os.path.isfile(path):
        raise DataError(path, None, "no fold-averaged test embeddings (ensemble_final.py writes them; run it first)")
    return SystemSets(name, fold_sets, load_embedding_set(path), path)


def default_systems(run: str, baselines: str | None = None) -> list[str]:
    """Every model under ``RUN/embeddings``, ``baseline:linear_metric`` (of ``baselines`` where given)
    and ``submission``, where present."""
    models_dir = os.path.join(run, layout.EMBEDDINGS_DIR)
    names = sorted(n for n in os.listdir(models_dir) if os.path.isdir(os.path.join(models_dir, n))) \
        if os.path.isdir(models_dir) else []
    if os.path.isdir(system_dir(run, DEFAULT_REFERENCE, baselines)):
        names.append(DEFAULT_REFERENCE)
    if os.path.isfile(os.path.join(run, layout.RESULT_ZIP)):
        names.append(SUBMISSION)
    return names


def aligned_vectors(embedding_set: EmbeddingSet, test_ids: Sequence[str]) -> np.ndarray:
    """The set's L2-normalised rows (float64) in ``test_ids`` order; DataError naming the file unless its
    ids are exactly the test videos."""
    held = set(embedding_set.ids.tolist())
    missing = [i for i in test_ids if i not in held]
    if missing:
        raise DataError(embedding_set.name, None, f"{len(missing)} of the data set's {len(test_ids)} test videos "
                                                  f"have no embedding, first {missing[0]!r} (not this data set's "
                                                  f"test_a embeddings?)")
    extra = held - set(test_ids)
    if extra:
        raise DataError(embedding_set.name, None, f"{len(extra)} id(s) are not test videos of the data set, first "
                                                  f"{sorted(extra)[0]!r} (not this data set's test_a embeddings?)")
    return l2_normalize(embedding_set.lookup(test_ids).astype(np.float64))


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks, centred and scaled to unit norm: Spearman is then a dot product."""
    ranks = scipy.stats.rankdata(values)
    ranks -= ranks.mean()
    norm = np.linalg.norm(ranks)
    return ranks / norm if norm > 0 else ranks


def pair_cosines(vectors: np.ndarray) -> np.ndarray:
    """Cosine of every pair i < j of the (unit) rows, in ``np.triu_indices`` order."""
    return (vectors @ vectors.T)[np.triu_indices(len(vectors), 1)]


class PairScorer:
    """Spearman of a system's cosines on the test pairs: vs the drawn labels of the sample, vs the truth on all."""

    def __init__(self, truth: np.ndarray, sample: np.ndarray, labels: np.ndarray):
        """``truth``: the true similarity of every pair i < j (`pair_cosines` of the latents);
        ``sample``: the labelled pairs' positions in it, ``labels`` their drawn labels."""
        self.truth = truth
        self.sample = sample
        self.labels = labels
        self._truth_ranks = _centred_ranks(truth)
        self._label_ranks = _centred_ranks(labels)

    def scores(self, vectors: np.ndarray) -> tuple[dict, np.ndarray]:
        """``({"labels": ..., "truth": ...}, the sampled pairs' cosines)``."""
        cosines = pair_cosines(vectors)
        sampled = cosines[self.sample]
        return ({"labels": float(_centred_ranks(sampled) @ self._label_ranks),
                 "truth": float(_centred_ranks(cosines) @ self._truth_ranks)}, sampled)

    def oracle(self) -> float:
        """Spearman of the sampled pairs' true similarity vs their drawn labels."""
        return float(_centred_ranks(self.truth[self.sample]) @ self._label_ranks)


# ---------------------------------------------------------------------- paired bootstrap


def _tie_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group of each value, order sorting the values, first sorted position of each group)``."""
    order = np.argsort(values, kind="stable")
    _, starts, inverse = np.unique(values[order], return_index=True, return_inverse=True)
    group = np.empty(len(values), dtype=np.int64)
    group[order] = inverse.ravel()
    return group, order, starts


def _resample_ranks(counts: np.ndarray, groups: tuple) -> np.ndarray:
    """[draws, P] average ranks each value takes in the resamples given by ``counts`` (times each of
    the P values is drawn), centred on the resample's mean rank (N + 1) / 2, N = its size."""
    group, order, starts = groups
    weight = np.add.reduceat(counts[:, order], starts, axis=1).astype(np.float64)
    below = np.cumsum(weight, axis=1) - weight
    rank = below + (weight + 1) / 2
    return rank[:, group] - (counts.sum(axis=1, keepdims=True) + 1) / 2


def _resample_spearman(counts: np.ndarray, ranks: np.ndarray, label_ranks: np.ndarray) -> np.ndarray:
    """Spearman of each resample: Pearson of the ranks, each pair weighted by its count."""
    weighted = counts * ranks
    return (weighted * label_ranks).sum(axis=1) / np.sqrt((weighted * ranks).sum(axis=1)
                                                           * (counts * label_ranks ** 2).sum(axis=1))


def _draw_counts(rng: np.random.Generator, rows: int, size: int) -> np.ndarray:
    """[rows, size] how often each of ``size`` items is drawn in ``rows`` resamples of ``size`` draws."""
    picks = rng.integers(0, size, size=(rows, size)) + size * np.arange(rows)[:, None]
    return np.bincount(picks.ravel(), minlength=rows * size).reshape(rows, size).astype(np.float64)


def bootstrap_differences(systems: Mapping[str, np.ndarray], reference: np.ndarray, labels: np.ndarray,
                          draws: int = 1000, seed: int = 0, level: float = 0.9,
                          pair_videos: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, dict]:
    """Spearman(system) − Spearman(reference) vs ``labels`` for each system's cosines, with its ``level``
    percentile interval over ``draws`` resamples (one resample for all systems) and the share of
    resamples where the system is ahead. Exact Spearman (average ranks) of every resample, computed
    from how often each pair is drawn, without sorting each resample.

    ``pair_videos`` (each pair's two video rows): resample the *videos* and keep every pair of two
    drawn videos, as often as the product of their draws (a cluster bootstrap: pairs that share a
    video share its errors, so resampling pairs alone makes the interval too narrow, by about half on
    1,000 test videos; this one is 15-30% wider than a delete-a-group jackknife over the videos, so
    on the safe side). None: resample the pairs."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if draws < 1:
        raise ValueError(f"draws must be positive, got {draws}")
    labels = np.asarray(labels, dtype=np.float64)
    size = len(labels)
    for name, cosines in {**systems, "reference": reference}.items():
        if np.shape(cosines) != labels.shape:
            raise ValueError(f"{name}: cosines of shape {np.shape(cosines)} for {size} labelled pairs")
    label_groups, reference_groups = _tie_groups(labels), _tie_groups(np.asarray(reference, dtype=np.float64))
    groups = {name: _tie_groups(np.asarray(c, dtype=np.float64)) for name, c in systems.items()}
    rng = np.random.default_rng(seed)
    chunk = max(1, min(draws, 4_000_000 // max(size, 1)))
    diffs = {name: [] for name in systems}
    for start in range(0, draws, chunk):
        rows = min(chunk, draws - start)
        if pair_videos is None:
            counts = _draw_counts(rng, rows, size)
        else:
            first, second = (np.asarray(v) for v in pair_videos)
            videos = _draw_counts(rng, rows, int(max(first.max(), second.max())) + 1)
            counts = videos[:, first] * videos[:, second]
        label_ranks = _resample_ranks(counts, label_groups)
        base = _resample_spearman(counts, _resample_ranks(counts, reference_groups), label_ranks)
        for name, system_groups in groups.items():
            diffs[name].append(_resample_spearman(counts, _resample_ranks(counts, system_groups), label_ranks) - base)
    reference_score = scipy.stats.spearmanr(reference, labels).statistic
    out = {}
    for name, cosines in systems.items():
        values = np.concatenate(diffs[name])
        low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
        out[name] = {"difference": float(scipy.stats.spearmanr(cosines, labels).statistic - reference_score),
                     "low": float(low), "high": float(high), "median": float(np.median(values)),
                     "share_ahead": float((values > 0).mean()), "level": level, "draws": draws}
    return out


# ---------------------------------------------------------------------- the whole evaluation


@dataclasses.dataclass(frozen=True)
class LabelledSample:
    """The test videos used, the labelled pairs among them and their drawn labels, and a scorer."""

    truth: TestTruth
    rows: np.ndarray  # test videos used (rows of truth.ids, sorted)
    sample: np.ndarray  # positions of the labelled pairs in `pair_cosines` order over rows
    labels: np.ndarray
    scorer: PairScorer
    graph: bool  # the sample is the test graph's edges (else bins of true similarity)
    per_bin: list | None = None
    edges: list | None = None
    graph_edges: np.ndarray | None = None  # the graph sample's edge of each pair (indices into truth.edges)


def labelled_sample(data: str, max_videos: int = 5000, seed: int = 0, sample_kind: str = "auto", bins: int = 20,
                    pairs_per_bin: int = 1000) -> LabelledSample:
    """The labelled test pairs of `evaluate` (same seed, same pairs, same labels), for any tool that
    scores embeddings of ``DATA``'s test videos against them. A stored truth (``test_truth.npz``): the
    graph's edges among the videos used with their stored labels; no bins sample (no label model)."""
    truth = read_truth(data)
    if truth.stored and sample_kind == "bins":
        raise DataError(os.path.join(data, STORED_TRUTH), None,
                        "the stored truth has no label model to draw labels for a bins sample: use --sample graph "
                        "(or auto), its label graph's edges with their stored labels")
    if sample_kind == "graph" and truth.edges is None:
        raise DataError(os.path.join(data, layout.SYNTH_META), "test_graph",
                        "the test videos were drawn independently, not along a label graph (generate the data "
                        "with --test-graph, or use --sample bins)")
    use_graph = truth.edges is not None and sample_kind != "bins"
    rng = np.random.default_rng(seed)
    rows = choose_videos(len(truth.ids), max_videos, rng)
    true_similarity = pair_cosines(truth.latents[rows])
    kept = None
    if use_graph:
        (sample, kept), per_bin, edges = graph_sample_edges(truth.edges, rows), None, None
        if len(sample) < 2:
            raise DataError(data, None, f"only {len(sample)} of the test graph's pairs among the {len(rows)} test "
                                        "videos used (raise --max-videos)")
    else:
        sample, per_bin, edges = sample_pairs(true_similarity, truth.labelled_similarity, bins, pairs_per_bin, rng)
    if truth.stored:
        labels = truth.edge_labels[kept]
    else:
        from tfrecord_tools import synth

        labels = synth.draw_labels(rng, true_similarity[sample], truth.label_noise)
    return LabelledSample(truth, rows, sample, labels, PairScorer(true_similarity, sample, labels), use_graph,
                          per_bin, edges, kept)


def evaluate(data: str, run: str, systems: Sequence[str] | None = None, reference: str | None = DEFAULT_REFERENCE,
             folds: Sequence[int] | None = None, bins: int = 20, pairs_per_bin: int = 1000, seed: int = 0,
             draws: int = 1000, level: float = 0.9, max_videos: int = 5000, resample: str = "videos",
             sample_kind: str = "auto", baselines: str | None = None) -> dict:
    """Every system's scores on the test pairs and its fold average's margin over ``reference``
    (None: no intervals; ``resample``: ``videos`` or ``pairs``, see `bootstrap_differences`).
    ``systems``: None for `default_systems`. ``sample_kind``: the labelled sample, ``bins`` (`sample_pairs`),
    ``graph`` (the test videos' label graph, `graph_sample`; needs a data set made with ``--test-graph``
    or a stored ``test_truth.npz``, whose stored labels it takes) or ``auto`` (graph where there is one).
    ``baselines``: read ``baseline:<name>`` systems from this `infer.baselines --out` directory instead of
    ``RUN/baselines`` (e.g. the floor fitted ``--without-test-videos``)."""
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {list(RESAMPLE)}, got {resample!r}")
    if sample_kind not in SAMPLES:
        raise ValueError(f"sample must be one of {list(SAMPLES)}, got {sample_kind!r}")
    if baselines is not None and not os.path.isdir(baselines):
        raise DataError(baselines, None, "no such baselines directory (python -m infer.baselines --out writes one)")
    names = list(systems) if systems is not None else default_systems(run, baselines)
    if reference is not None and reference not in names:
        names.append(reference)
    if not names:
        raise DataError(run, None, "no systems found (embeddings/<model>, baselines/linear_metric, result.zip)")
    loaded = [load_system(run, name, folds, baselines) for name in names]  # missing files: told before the slow part
    drawn = labelled_sample(data, max_videos, seed, sample_kind, bins, pairs_per_bin)
    truth, rows, sample, labels, scorer = drawn.truth, drawn.rows, drawn.sample, drawn.labels, drawn.scorer
    use_graph, per_bin, edges = drawn.graph, drawn.per_bin, drawn.edges

    report = {"data": data, "run": run, "baselines": baselines, **truth.meta,  # baselines None: RUN/baselines
              "truth_file": os.path.join(data, STORED_TRUTH if truth.stored else layout.SYNTH_META),
              "test_videos": len(truth.ids), "videos_used": int(len(rows)),
              "subset": len(rows) < len(truth.ids), "all_pairs": int(len(scorer.truth)),
              "sample": ({"kind": "graph", "pairs": int(len(sample)), "graph_pairs": int(len(truth.edges[0])),
                          "labels": "stored" if truth.stored else "drawn",
                          "label_noise": truth.label_noise, "seed": seed, "oracle": scorer.oracle(), "coverage": None}
                         if use_graph else
                         {"kind": "bins", "pairs": int(len(sample)), "bins": bins, "pairs_per_bin": pairs_per_bin,
                          "per_bin": per_bin, "edges": edges, "label_noise": truth.label_noise, "seed": seed,
                          "oracle": scorer.oracle(), "coverage": sample_coverage(per_bin, edges, pairs_per_bin)}),
              "reference": reference, "draws": draws, "level": level, "resample": resample, "systems": {}}
    report.update(data=data, run=run, baselines=baselines)  # a stored meta's keys never stand for the report's own
    sampled = {}
    for system in loaded:
        fold_scores = {fold: scorer.scores(aligned_vectors(s, truth.ids)[rows])[0] for fold, s in system.folds.items()}
        average, sampled[system.name] = scorer.scores(aligned_vectors(system.average, truth.ids)[rows])
        report["systems"][system.name] = {
            "folds": {str(fold): score for fold, score in fold_scores.items()},
            "mean_fold": ({key: float(np.mean([s[key] for s in fold_scores.values()])) for key in ("labels", "truth")}
                          if fold_scores else None),
            "fold_average": average, "fold_average_source": system.average_source}
    if reference is not None:
        others = {name: cos for name, cos in sampled.items() if name != reference}
        first, second = np.triu_indices(len(rows), 1)
        pair_videos = (first[sample], second[sample]) if resample == "videos" else None
        margins = bootstrap_differences(others, sampled[reference], labels, draws, seed, level, pair_videos)
        for name, margin in margins.items():
            report["systems"][name]["vs_reference"] = margin
    return report


def sample_coverage(per_bin: Sequence[int], edges: Sequence[float], per_bin_asked: int) -> dict | None:
    """Where the sample falls short of the labelled pairs, or None when every bin is full.

    The test videos are drawn independently, so they rarely hold the near-duplicates and close pairs
    of a labelled graph: the top bins go short first. ``closest_short_bins``: how many of the highest
    bins are all short (0 when the top bin is full), ``closest_share``: the share of the labelled pairs
    they stand for, ``closest_above``: the true similarity where they start, ``closest_drawn`` /
    ``closest_asked``: the pairs drawn there and asked for; ``short_bins``: every short bin."""
    short = [index for index, count in enumerate(per_bin) if count < per_bin_asked]
    if not short:
        return None
    bins = len(per_bin)
    top = 0
    while top < bins and per_bin[bins - 1 - top] < per_bin_asked:
        top += 1
    first = bins - top
    return {"short_bins": len(short), "closest_short_bins": top, "closest_share": top / bins,
            "closest_above": float(edges[first - 1]) if 0 < first <= len(edges) else None,
            "closest_drawn": int(sum(per_bin[first:])), "closest_asked": int(per_bin_asked * top)}


def coverage_note(sample: Mapping) -> list[str]:
    """The lines that say where the sample is thinner than the labelled pairs (none when it is not)."""
    coverage = sample_coverage(sample["per_bin"], sample["edges"], sample["pairs_per_bin"])
    if coverage is None:
        return []
    verb = "holds" if coverage["short_bins"] == 1 else "hold"
    lines = [f"{coverage['short_bins']} of the {sample['bins']} bins {verb} fewer test pairs than asked (pairs per "
             f"bin, lowest true similarity first: {sample['per_bin']})"]
    if coverage["closest_short_bins"]:
        above = coverage["closest_above"]
        where = f"above true similarity {above:.3f}, " if above is not None else ""
        lines.append(
            f"note: the closest pairs are missing: {where}the labelled pairs' top {100 * coverage['closest_share']:.0f}%, "
            f"the sample holds {coverage['closest_drawn']} of the {coverage['closest_asked']} pairs asked (the test "
            "videos hold few near-duplicates). These scores rank mostly moderately related videos; out-of-fold figures "
            "also rank the closest pairs, so the two can disagree where near-duplicates matter")
    else:
        lines[-1] += ": the sample is thinner than the labelled pairs where those bins are"
    return lines


def format_report(report: dict) -> str:
    """The markdown table and the oracle line."""
    reference = report["reference"]
    level = f"{100 * report['level']:.0f}%"
    sample = report["sample"]
    stored = sample.get("labels") == "stored"
    source = (f"generator {report.get('generator')}, seed {report.get('seed')}: {report.get('truth_file')}" if stored
              else f"world {report['world']}, preset {report['preset']}, seed {report['seed']}")
    lines = [f"Test pairs of {report['data']} ({source}), run {report['run']}: {report['videos_used']} test videos, "
             f"{report['all_pairs']} pairs"]
    if report["subset"]:
        lines[0] += (f" (a random {report['videos_used']} of the {report['test_videos']} test videos, seed "
                     f"{sample['seed']}: --max-videos)")
    if report.get("baselines"):
        lines.append(f"baseline:<name> systems read from {report['baselines']} (--baselines)")
    if sample.get("kind") == "graph" and stored:
        lines += [f"the stored labels of the {sample['pairs']} pairs of the test videos' label graph (the pairs a "
                  f"labeller was given, as the generator stored them)"]
    elif sample.get("kind") == "graph":
        lines += [f"labels drawn for the {sample['pairs']} pairs of the test videos' label graph (the labelled pairs' "
                  f"shape, near-duplicates included: --test-graph; label noise {sample['label_noise']:.3g})"]
    if sample.get("kind") == "graph":
        if sample["pairs"] < sample["graph_pairs"]:
            lines[-1] += (f": those of its {sample['graph_pairs']} pairs whose two videos are among those used "
                          "(raise --max-videos for all)")
    else:
        lines += [f"labels drawn for a graph-like sample of {sample['pairs']} pairs ({sample['bins']} bins at the "
                  f"labelled pairs' true-similarity quantiles, up to {sample['pairs_per_bin']} each; label noise "
                  f"{sample['label_noise']:.3g})"]
        lines += coverage_note(sample)
    lines.append("")
    margin_title = f"fold average − {reference} [{level} interval]" if reference else "fold average − reference"
    lines += [f"| system | mean fold (labels) | fold average (labels) | fold average (all pairs, truth) | {margin_title} |",
              "|---|---|---|---|---|"]
    for name, row in report["systems"].items():
        mean_fold = f"{row['mean_fold']['labels']:.4f}" if row["mean_fold"] else "–"
        if name == reference:
            margin = "(reference)"
        elif "vs_reference" in row:
            m = row["vs_reference"]
            margin = f"{m['difference']:+.4f} [{m['low']:+.4f}, {m['high']:+.4f}]"
        else:
            margin = "–"
        lines.append(f"| {name} | {mean_fold} | {row['fold_average']['labels']:.4f} | "
                     f"{row['fold_average']['truth']:.4f} | {margin} |")
    labels = "stored" if stored else "drawn"
    lines += ["", f"oracle (true similarity vs the {labels} labels, same {sample['pairs']} pairs): "
                  f"{sample['oracle']:.4f}; vs the truth on all pairs: 1"]
    if reference is None:
        lines.append("no reference: no intervals")
    else:
        what = ("the test videos (every sampled pair of two drawn videos kept)" if report.get("resample") == "videos"
                else "the sampled pairs")
        lines.append(f"intervals: paired bootstrap, {report['draws']} resamples of {what}")
    return "\n".join(lines)


def resolve_reference(run: str, reference: str | None, baselines: str | None = None) -> str | None:
    """``--reference``: None means ``baseline:linear_metric`` where the run (or ``baselines``) has it;
    ``none``: no intervals."""
    if reference is None:
        return DEFAULT_REFERENCE if os.path.isdir(system_dir(run, DEFAULT_REFERENCE, baselines)) else None
    return None if reference == NO_REFERENCE else reference.replace("baseline: ", BASELINE_PREFIX)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.truth_on_test", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory (embeddings/<model>/..., baselines/<name>/..., result.zip)")
    parser.add_argument("--data", required=True, help="the synthetic data directory the run was trained on "
                                                     f"(its {layout.SYNTH_META}, or {STORED_TRUTH} where present)")
    parser.add_argument("--systems", nargs="+", help="model names, baseline:<name>, submission (default: all found)")
    parser.add_argument("--reference", help=f"the system the others are compared with (default {DEFAULT_REFERENCE} "
                                            f"where present; '{NO_REFERENCE}': no intervals)")
    parser.add_argument("--folds", nargs="+", type=int, help="fold models to read (default: every fold_XX found)")
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--pairs-per-bin", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--max-videos", type=int, default=5000,
                        help="above this many test videos, score a seeded random subset (all pairs of N videos: N²/2)")
    parser.add_argument("--resample", choices=RESAMPLE, default="videos",
                        help="what the bootstrap resamples: the test videos (pairs sharing a video share its "
                             "errors) or the sampled pairs alone")
    parser.add_argument("--sample", choices=SAMPLES, default="auto",
                        help="the labelled pairs: bins of all test pairs at the labelled pairs' similarity quantiles, "
                             "or the test videos' label graph (data made with --test-graph, or a stored "
                             f"{STORED_TRUTH}: its stored labels, graph only); auto: the graph where there is one")
    parser.add_argument("--baselines", metavar="DIR",
                        help="read baseline:<name> systems from this infer.baselines --out directory instead of "
                             "RUN/baselines, e.g. the floor fitted --without-test-videos (the models' footing)")
    parser.add_argument("--json", help="write the whole report here")
    args = parser.parse_args(argv)
    if args.systems:
        args.systems = [s.replace("baseline: ", BASELINE_PREFIX) for s in args.systems]
    try:
        report = evaluate(args.data, args.run, args.systems,
                          resolve_reference(args.run, args.reference, args.baselines), args.folds,
                          args.bins, args.pairs_per_bin, args.seed, args.draws, args.level, args.max_videos,
                          args.resample, args.sample, args.baselines)
    except (FileNotFoundError, ValueError, DataError) as error:
        return cli.report_error("truth_on_test", error)
    print(format_report(report))
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
