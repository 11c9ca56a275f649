"""Cross-validation folds over the labelled pairs, written once as one shard per fold.

Fold ``k``'s validation set is ``fold_kk.tfrecords`` and its training set is every other shard
read together, so the pairs are on disk once, not once per fold. Each shard record is a pair
record (schema.pair_feature_spec): both videos' raw keys with suffixes ``_1``/``_2`` plus ``sim``.

Two split rules:
  * ``pairs`` (default): a seeded random permutation of the label lines cut into near-equal folds.
    A video can then sit in training and validation pairs of the same fold.
  * ``components``: every connected component of the label graph (videos as nodes, labelled pairs
    as edges) stays inside one fold, so no video appears on both sides. Components go largest
    first into the fold with the fewest pairs so far. The folds are then as balanced as the
    components allow, which on the real data is not much: in the official label.tsv the largest
    component holds 16,664 of the 63,613 videos and 42,959 of the 67,899 pairs (63%), so with 11
    folds one fold holds those 42,959 pairs (6.96x the mean) and each other fold 2,494 (0.40x).
    ``folds.json`` reports the imbalance under ``balance`` and ``components``, and ``summary``
    prints a warning. Use ``components`` for a leak-free validation score, ``pairs`` for
    near-equal folds (on the real labels 12,816 videos then appear in more than one fold).

Writing streams: the pairwise files are indexed (video id -> byte offset, see record_index) and each
pair record is built from two seeked reads, so memory does not grow with the number of pairs.
All shards are written to temporary files and renamed only when every shard is complete;
``folds.json`` is written last, so its presence means a complete set.

Bad input stops the writer before any shard appears (an error naming the file and record, or the
label line). Only ``skip_corrupt=True`` (``write_tfrecord.py --skip-corrupt``) goes on without the
records that are corrupt, truncated or fail validation: the pairs of their videos are dropped,
and ``folds.json`` (``skip_corrupt``) and the summary list every skipped record (file, record
index, problem) and every dropped label line.
"""
from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import os
import sys
from typing import Sequence, TextIO

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import tensorflow as tf
from tqdm.auto import tqdm

from tfrecord_tools import layout, schema
from tfrecord_tools.atomic import atomic_path, write_text_atomic
from tfrecord_tools.errors import DataError, LabelError
from tfrecord_tools import locks, provenance
from tfrecord_tools.labels import Labels, read_labels
from tfrecord_tools.provenance import file_md5
from tfrecord_tools.record_index import VideoIndex, VideoReader, index_videos

SPLITS = layout.FOLD_SPLITS
FOLDS_JSON = layout.FOLDS_JSON
FORMAT = layout.FOLDS_FORMAT
FORMAT_VERSION = 2  # 2: md5 and record count of each shard, assignment_sha256
SPLIT_RULES = {
    "pairs": "seeded random permutation of the label lines cut into near-equal folds",
    "components": "connected components of the label graph kept whole; largest component first "
                  "into the fold with the fewest pairs (no video in two folds)",
}
SHOWN_SKIPS = 20  # skipped records / dropped lines printed by summary (folds.json has all)
UNBALANCED = 1.5  # summary warns when the largest fold exceeds the mean pair count by this factor
# The raw keys a pair record carries for each video (pairwise records have tags and category).
VIDEO_KEYS = schema.required_keys(schema.RecordKind.PAIRWISE)


def shard_name(fold: int) -> str:
    return layout.fold_shard(fold)


# --------------------------------------------------------------------------------------------
# Fold assignment (labels only, no frames)
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LabelGraph:
    """The label graph: distinct videos, the component of each, and each pair's component."""

    video_ids: np.ndarray  # str, sorted
    video_component: np.ndarray  # int, per video
    pair_component: np.ndarray  # int, per label line
    num_components: int


def label_graph(labels: Labels) -> LabelGraph:
    """Connected components of the graph whose edges are the labelled pairs."""
    ends = np.concatenate([labels.query.astype(str), labels.candidate.astype(str)])
    video_ids, inverse = np.unique(ends, return_inverse=True)
    num_pairs = len(labels)
    query, candidate = inverse[:num_pairs], inverse[num_pairs:]
    adjacency = scipy.sparse.coo_matrix((np.ones(num_pairs, dtype=np.int8), (query, candidate)),
                                        shape=(len(video_ids), len(video_ids)))
    count, component = scipy.sparse.csgraph.connected_components(adjacency, directed=False)
    return LabelGraph(video_ids, component, component[query], int(count))


def _check_split(num_folds: int, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if int(num_folds) != num_folds or num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}")


def assign_folds(labels: Labels, num_folds: int = 11, seed: int = 42, split: str = "pairs") -> np.ndarray:
    """Fold (0 .. num_folds-1) of every label line, as an int32 array in label-file order.

    Deterministic for a given seed. Raises ValueError when the labels cannot fill every fold.
    """
    _check_split(num_folds, split)
    num_pairs = len(labels)
    rng = np.random.default_rng(seed)
    folds = np.empty(num_pairs, dtype=np.int32)
    if split == "pairs":
        if num_pairs < num_folds:
            raise ValueError(f"{num_pairs} label lines cannot fill {num_folds} folds")
        for fold, members in enumerate(np.array_split(rng.permutation(num_pairs), num_folds)):
            folds[members] = fold
        return folds
    graph = label_graph(labels)
    if graph.num_components < num_folds:
        raise ValueError(f"the label graph has {graph.num_components} connected components, too few for "
                         f"{num_folds} folds with split='components'")
    pairs_per_component = np.bincount(graph.pair_component, minlength=graph.num_components)
    # Largest first; the seeded shuffle decides the order among components of equal size.
    shuffled = rng.permutation(graph.num_components)
    order = shuffled[np.argsort(-pairs_per_component[shuffled], kind="stable")]
    component_fold = np.empty(graph.num_components, dtype=np.int32)
    lightest = [(0, fold) for fold in range(num_folds)]  # (pairs so far, fold): ties go to the lower fold
    for component in order:
        load, fold = heapq.heappop(lightest)
        component_fold[component] = fold
        heapq.heappush(lightest, (load + int(pairs_per_component[component]), fold))
    folds[:] = component_fold[graph.pair_component]
    return folds


def shard_order(folds: np.ndarray, fold: int, seed: int) -> np.ndarray:
    """Label lines of ``fold`` in the seeded shuffled order they are written to its shard.

    Shuffled so that reading a shard is not sorted by query video.
    """
    members = np.flatnonzero(folds == fold)
    return members[np.random.default_rng([int(seed), int(fold)]).permutation(len(members))]


def fold_statistics(labels: Labels, folds: np.ndarray, num_folds: int) -> dict:
    """Pairs, distinct videos and mean label per fold; balance; videos found in several folds."""
    ends = np.concatenate([labels.query.astype(str), labels.candidate.astype(str)])
    video_ids, inverse = np.unique(ends, return_inverse=True)
    end_folds = np.concatenate([folds, folds])
    per_fold = []
    for fold in range(num_folds):
        in_fold = folds == fold
        per_fold.append({
            "fold": fold,
            "pairs": int(in_fold.sum()),
            "videos": int(len(np.unique(inverse[end_folds == fold]))),
            "mean_sim": round(float(labels.score[in_fold].mean()), 6) if in_fold.any() else None,
        })
    # A video "leaks" when its pairs fall into more than one fold.
    video_fold = np.unique(np.stack([inverse, end_folds], axis=1), axis=0)[:, 0]
    leaking = int((np.bincount(video_fold, minlength=len(video_ids)) > 1).sum())
    counts = np.array([entry["pairs"] for entry in per_fold], dtype=np.float64)
    mean = counts.mean()
    balance = {
        "min_pairs": int(counts.min()),
        "max_pairs": int(counts.max()),
        "mean_pairs": round(float(mean), 3),
        "max_over_mean": round(float(counts.max() / mean), 4),
        "min_over_mean": round(float(counts.min() / mean), 4),
    }
    return {"per_fold": per_fold, "balance": balance, "videos_in_several_folds": leaking,
            "num_videos": int(len(video_ids))}


# --------------------------------------------------------------------------------------------
# Pair records
# --------------------------------------------------------------------------------------------

def pair_example(video_1: tf.train.Example, video_2: tf.train.Example, sim: float) -> tf.train.Example:
    """A shard record: each video's raw features copied under suffixed keys, plus ``sim``."""
    pair = tf.train.Example()
    feature = pair.features.feature
    for video, suffix in zip((video_1, video_2), schema.PAIR_SUFFIXES):
        source = video.features.feature
        for key in VIDEO_KEYS:
            feature[key + suffix].CopyFrom(source[key])
    feature[schema.KEY_SIM].float_list.value.append(float(sim))
    return pair


def check_label_ids(labels: Labels, index: VideoIndex) -> None:
    """Every id of the label file must be in the pairwise files; else name the id and line."""
    for line, (query, candidate) in enumerate(zip(labels.query, labels.candidate), start=1):
        for role, video_id in (("query_id", query), ("candidate_id", candidate)):
            if video_id not in index:
                files = ", ".join(index.files)
                raise LabelError(labels.path, line, f"{role} {video_id} is not in the pairwise file(s) {files}")


def drop_skipped_pairs(labels: Labels, index: VideoIndex) -> tuple[Labels, list[dict]]:
    """The label lines whose videos survived ``skip_corrupt``, and a report of the dropped lines.

    A line is dropped when one of its videos is a skipped record: named by id when the record's id
    could be read, or -- when some skipped record has no readable id (corrupt bytes, a damaged
    file tail) -- any id missing from the index. Any other missing id is still a LabelError.
    """
    skipped_ids = {record.video_id: record for record in index.skipped if record.video_id is not None}
    anonymous = [record for record in index.skipped if record.video_id is None]
    keep = np.ones(len(labels), dtype=bool)
    dropped = []
    files = ", ".join(index.files)
    for row, (query, candidate) in enumerate(zip(labels.query, labels.candidate)):
        reasons = []
        for role, video_id in (("query_id", query), ("candidate_id", candidate)):
            if video_id in index:
                continue
            if video_id in skipped_ids:
                reasons.append(f"{role} {video_id} was skipped ({skipped_ids[video_id]})")
            elif anonymous:
                reasons.append(f"{role} {video_id} not found: presumably lost in the unreadable data that was "
                               f"skipped ({len(anonymous)} skipped entr{'y' if len(anonymous) == 1 else 'ies'} "
                               "without a readable id)")
            else:
                raise LabelError(labels.path, row + 1, f"{role} {video_id} is not in the pairwise file(s) {files}")
        if reasons:
            keep[row] = False
            dropped.append({"line": row + 1, "query_id": str(query), "candidate_id": str(candidate),
                            "score": float(labels.score[row]), "reason": "; ".join(reasons)})
    kept = Labels(labels.path, labels.query[keep], labels.candidate[keep], labels.score[keep])
    return kept, dropped


def _write_shard(path: str, order: np.ndarray, labels: Labels, reader: VideoReader, bar) -> None:
    with tf.io.TFRecordWriter(path) as shard:
        for line in order:
            example = pair_example(reader.read_example(labels.query[line]),
                                   reader.read_example(labels.candidate[line]), labels.score[line])
            shard.write(example.SerializeToString(deterministic=True))
            bar.update(1)


def write_fold_shards(pairwise_files: str | os.PathLike | Sequence[str | os.PathLike],
                      label_path: str | os.PathLike, out_dir: str | os.PathLike, num_folds: int = 11,
                      seed: int = 42, split: str = "pairs", progress: bool = True,
                      skip_corrupt: bool = False) -> dict:
    """Write ``fold_00.tfrecords`` ... and ``folds.json`` to ``out_dir``; return folds.json's content.

    Raises LabelError / RecordError on bad input, before any shard appears under its final name.
    ``skip_corrupt``: leave out corrupt / invalid pairwise records and the pairs of their videos
    instead, listed under ``skip_corrupt`` in folds.json (see the module docstring).
    """
    _check_split(num_folds, split)
    if isinstance(pairwise_files, (str, os.PathLike)):
        pairwise_files = [pairwise_files]
    pairwise_files = [os.path.abspath(os.fspath(f)) for f in pairwise_files]
    label_path = os.path.abspath(os.fspath(label_path))
    out_dir = os.path.abspath(os.fspath(out_dir))
    with locks.locked(out_dir, "write_tfrecord.py"):  # a second writer of out_dir stops at once
        return _write_fold_shards(pairwise_files, label_path, out_dir, num_folds, seed, split, progress, skip_corrupt)


def _write_fold_shards(pairwise_files: list[str], label_path: str, out_dir: str, num_folds: int, seed: int,
                       split: str, progress: bool, skip_corrupt: bool) -> dict:

    labels = read_labels(label_path)
    index = index_videos(pairwise_files, schema.RecordKind.PAIRWISE, progress=progress, skip_corrupt=skip_corrupt)
    label_lines = len(labels)
    dropped: list[dict] = []
    if skip_corrupt:
        labels, dropped = drop_skipped_pairs(labels, index)
    else:
        check_label_ids(labels, index)
    folds = assign_folds(labels, num_folds, seed, split)

    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, FOLDS_JSON)
    if os.path.exists(json_path):  # an old set is no longer complete once we start replacing it
        os.remove(json_path)
    shard_paths = [os.path.join(out_dir, shard_name(fold)) for fold in range(num_folds)]
    bar = tqdm(total=len(labels), unit="pair", desc="write fold shards", disable=not progress)
    with contextlib.ExitStack() as renames, index.open() as reader, bar:
        # Every shard's temporary file is renamed only when the whole stack exits cleanly.
        temporaries = [renames.enter_context(atomic_path(path)) for path in shard_paths]
        for fold, temporary in enumerate(temporaries):
            _write_shard(temporary, shard_order(folds, fold, seed), labels, reader, bar)
    _remove_stale_shards(out_dir, num_folds)

    statistics = fold_statistics(labels, folds, num_folds)
    for entry, path in zip(statistics["per_fold"], shard_paths):
        entry["file"] = os.path.basename(path)
        entry["bytes"] = os.path.getsize(path)
        entry["md5"] = file_md5(path)  # readers verify it: a same-size edit or a swapped shard is refused
    info = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "num_folds": int(num_folds),
        "seed": int(seed),
        "split": split,
        "split_rule": SPLIT_RULES[split],
        "num_pairs": len(labels),
        "num_videos": statistics["num_videos"],
        "labels": {"path": label_path, "md5": file_md5(label_path)},
        "assignment_sha256": provenance.assignment_digest(labels.query, labels.candidate, folds),
        "pairwise_files": pairwise_files,
        "pairwise_videos": len(index),
        "folds": statistics["per_fold"],
        "balance": statistics["balance"],
        "videos_in_several_folds": statistics["videos_in_several_folds"],
    }
    if split == "components":
        graph = label_graph(labels)
        videos_per_component = np.bincount(graph.video_component)
        pairs_per_component = np.bincount(graph.pair_component)
        info["components"] = {"count": graph.num_components,
                              "largest_videos": int(videos_per_component.max()),
                              "largest_pairs": int(pairs_per_component.max())}
    if skip_corrupt:
        info["skip_corrupt"] = {
            "label_lines": label_lines,
            "num_skipped_records": len(index.skipped),
            "num_dropped_pairs": len(dropped),
            "skipped_records": [record.to_dict() for record in index.skipped],
            "dropped_pairs": dropped,
        }
    write_text_atomic(json_path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return info


def skip_report(report: dict, shown: int = SHOWN_SKIPS) -> list[str]:
    """Summary lines of a ``skip_corrupt`` report: the counts, then each skipped record and dropped
    line (the first ``shown`` of each; folds.json lists all)."""
    lines = [f"--skip-corrupt: skipped {report['num_skipped_records']} pairwise record(s), dropped "
             f"{report['num_dropped_pairs']} of {report['label_lines']} label line(s)"]
    for record in report["skipped_records"][:shown]:
        lines.append(f"  skipped {record['file']}, record {record['record']}: {record['problem']}")
    for pair in report["dropped_pairs"][:shown]:
        lines.append(f"  dropped label line {pair['line']} ({pair['query_id']} {pair['candidate_id']} "
                     f"{pair['score']:g}): {pair['reason']}")
    hidden = max(0, len(report["skipped_records"]) - shown) + max(0, len(report["dropped_pairs"]) - shown)
    if hidden:
        lines.append(f"  ... {hidden} more, all listed under 'skip_corrupt' in {FOLDS_JSON}")
    return lines


def _remove_stale_shards(out_dir: str, num_folds: int) -> None:
    """Delete fold shards of an earlier run with more folds, so the directory holds one set."""
    for name in os.listdir(out_dir):
        match = layout.FOLD_SHARD.match(name)
        if match and int(match.group(1)) >= num_folds:
            os.remove(os.path.join(out_dir, name))


# --------------------------------------------------------------------------------------------
# Reading a set back
# --------------------------------------------------------------------------------------------

def _shard_records(path: str) -> int | None:
    """Records of a TFRecord file counted from its length headers (seeks only), None if they do not add up."""
    size = os.path.getsize(path)
    count = offset = 0
    with open(path, "rb") as handle:
        while offset < size:
            handle.seek(offset)
            header = handle.read(8)
            if len(header) < 8:
                return None
            offset += 16 + int.from_bytes(header, "little")
            count += 1
    return count if offset == size else None


def _check_description(info, json_path: str) -> None:
    """The fields every reader uses, with the right types and consistent counts (never a KeyError)."""
    if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("folds"), list):
        raise DataError(json_path, None, f"not a fold-shard description (expected format {FORMAT!r})")
    if info.get("version") != FORMAT_VERSION:
        raise DataError(json_path, None, f"format version {info.get('version')!r}, this code reads version "
                                         f"{FORMAT_VERSION} (shard checksums); rerun write_tfrecord.py into this "
                                         "directory (the same --seed gives the same shards)")
    num_folds = info.get("num_folds")
    if not isinstance(num_folds, int) or isinstance(num_folds, bool) or num_folds < 2:
        raise DataError(json_path, None, f"num_folds {num_folds!r} is not an integer >= 2")
    if len(info["folds"]) != num_folds:
        raise DataError(json_path, None, f"lists {len(info['folds'])} folds but num_folds is {num_folds}")
    for position, entry in enumerate(info["folds"]):
        where = f"folds[{position}]"
        if not isinstance(entry, dict):
            raise DataError(json_path, where, "expected an object")
        for key, kind in (("fold", int), ("pairs", int), ("bytes", int), ("file", str), ("md5", str)):
            if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
                raise DataError(json_path, where, f"{key!r} missing or not {kind.__name__}: {entry.get(key)!r}")
        if entry["fold"] != position:
            raise DataError(json_path, where, f"fold {entry['fold']} listed at position {position}")
        if entry["file"] != shard_name(position):
            raise DataError(json_path, where, f"file {entry['file']!r} is not {shard_name(position)!r}: a fold "
                                              "set names only its own shards, inside its directory")
        if entry["pairs"] < 1:
            raise DataError(json_path, where, f"pairs {entry['pairs']} < 1")
    total = sum(entry["pairs"] for entry in info["folds"])
    if total != info.get("num_pairs"):
        raise DataError(json_path, None, f"the folds hold {total} pairs together but num_pairs is "
                                         f"{info.get('num_pairs')!r}")


def read_folds_info(folds_dir: str | os.PathLike, verify: bool = True) -> dict:
    """``folds.json`` of a complete set, checked against the shards on disk.

    Raises DataError when folds.json is missing (the set is incomplete or was never written), is
    not a consistent description (wrong types, counts that do not add up, a ``file`` that is not
    the fold's own shard name), or a shard is missing, has another size, another record count or
    another md5 than when it was written (a same-size edit, a swapped shard). ``verify=False``
    skips the md5 (reads of the description only, e.g. the summary of a set just written).
    """
    folds_dir = os.fspath(folds_dir)
    json_path = os.path.join(folds_dir, FOLDS_JSON)
    if not os.path.isfile(json_path):
        raise DataError(json_path, None, "missing: the fold shards are incomplete or were never written "
                                         "(run write_tfrecord.py --data DIR --out FOLDS_DIR)")
    try:
        with open(json_path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise DataError(json_path, None, f"not valid JSON ({error})") from None
    _check_description(info, json_path)
    for entry in info["folds"]:
        path = os.path.join(folds_dir, entry["file"])
        if not os.path.isfile(path):
            raise DataError(path, None, "shard listed in folds.json is missing: the set is incomplete")
        if os.path.getsize(path) != entry["bytes"]:
            raise DataError(path, None, f"shard has {os.path.getsize(path)} bytes, folds.json says "
                                        f"{entry['bytes']}: it changed since the set was written")
        records = _shard_records(path)
        if records != entry["pairs"]:
            found = "unreadable record framing" if records is None else f"{records} records"
            raise DataError(path, None, f"shard holds {found}, folds.json says {entry['pairs']} pairs: the shard "
                                        "or folds.json changed since the set was written")
        if verify and file_md5(path) != entry["md5"]:
            raise DataError(path, None, f"shard md5 {file_md5(path)} differs from {entry['md5']} in folds.json: "
                                        "its content changed since the set was written (an edited or swapped "
                                        "shard); rerun write_tfrecord.py")
    return info


def fold_files(folds_dir: str | os.PathLike, fold: int) -> tuple[list[str], str]:
    """``(training shard paths, validation shard path)`` of ``fold``: validation is shard ``fold``."""
    info = read_folds_info(folds_dir)
    num_folds = info["num_folds"]
    if not 0 <= int(fold) < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1} for {os.fspath(folds_dir)}, got {fold}")
    paths = [os.path.join(os.fspath(folds_dir), entry["file"]) for entry in info["folds"]]
    return [p for k, p in enumerate(paths) if k != fold], paths[int(fold)]


def summary(info_or_dir: dict | str | os.PathLike, stream: TextIO | None = None) -> str:
    """Print (and return) a table of a fold set: pairs, videos, mean label and size per fold."""
    info = info_or_dir if isinstance(info_or_dir, dict) else read_folds_info(info_or_dir)
    lines = [f"{info['num_folds']} folds, split={info['split']}, seed={info['seed']}: "
             f"{info['num_pairs']} pairs, {info['num_videos']} videos, labels md5 {info['labels']['md5']}",
             f"{'fold':>4} {'pairs':>8} {'share':>7} {'videos':>8} {'mean sim':>8} {'MB':>9}"]
    for entry in info["folds"]:
        mean_sim = "-" if entry["mean_sim"] is None else f"{entry['mean_sim']:.4f}"
        lines.append(f"{entry['fold']:>4} {entry['pairs']:>8} {entry['pairs'] / info['num_pairs']:>7.2%} "
                     f"{entry['videos']:>8} {mean_sim:>8} {entry['bytes'] / 1e6:>9.2f}")
    balance = info["balance"]
    lines.append(f"balance: largest fold {balance['max_over_mean']:.3f}x the mean, smallest "
                 f"{balance['min_over_mean']:.3f}x; videos in several folds: {info['videos_in_several_folds']}")
    if "components" in info:
        comp = info["components"]
        lines.append(f"components: {comp['count']}, largest {comp['largest_videos']} videos / "
                     f"{comp['largest_pairs']} pairs")
    if "skip_corrupt" in info:
        lines.extend(skip_report(info["skip_corrupt"]))
    if balance["max_over_mean"] > UNBALANCED:
        reason = ": a connected component cannot be split" if info["split"] == "components" else ""
        lines.append(f"warning: unbalanced folds (largest {balance['max_pairs']} pairs, mean "
                     f"{balance['mean_pairs']:.0f}){reason}")
    text = "\n".join(lines)
    print(text, file=stream if stream is not None else sys.stdout)
    return text
