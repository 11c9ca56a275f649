"""Training and validation datasets of the pretrain and finetune stages.

Built from `tfrecord_tools.reader`'s `VideoDecoder` (parsing, frame sampling, tag multi-hot,
batch tokenisation) and `read_pairs` (validation), with an input order that is a pure function of
``(seed, step)``, so that an interrupted run resumes on exactly the batches it would have seen:

    epoch e (e = 0, 1, ...): file order and records shuffled with the seed ``(seed, e)``
    -> the stream of all epochs -> skip the records the first ``start_step`` steps consumed
       (whole epochs are skipped without reading them; only the records of the current epoch are
       read again, undecoded)
    -> global batches of ``global_batch`` records (drop_remainder), ending after the run's last step
       (``stop_step``) so that no reader runs ahead into an epoch no step uses
    -> this input pipeline's slice of every global batch -> decode -> per-replica batches.

Every worker reads the same serialized stream and decodes only its own slice: the records that
make up global batch ``k`` do not depend on the number of workers or replicas, which is what makes
a run with N replicas compute the same loss as one with a single replica.

Strings (id, title, ASR) are dropped from training batches: the model reads tokens and frames.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from tfrecord_tools import layout, provenance, reader, schema
from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.errors import DataError, RecordError
from tfrecord_tools.ids import UniqueIds, check_video_id
from tfrecord_tools.tags import TagVocab

AUTOTUNE = tf.data.AUTOTUNE
_MAX_PARALLEL_FILES = 16
_EPOCH_SEED_STRIDE = 1_000_003  # epoch seed = seed * stride + epoch


# ---------------------------------------------------------------------- files and counts
def pretrain_files(data_dir: str | os.PathLike, include_pairwise: bool = True) -> list[str]:
    """``DATA/pointwise/pretrain_*.tfrecords`` (+ ``DATA/pairwise/*.tfrecords``), sorted."""
    data_dir = os.fspath(data_dir)
    files = sorted(glob.glob(os.path.join(data_dir, layout.POINTWISE_DIR, "*" + layout.RECORD_SUFFIX)))
    if include_pairwise:
        files += sorted(glob.glob(os.path.join(data_dir, layout.PAIRWISE_DIR, "*" + layout.RECORD_SUFFIX)))
    if not files:
        raise FileNotFoundError(f"{data_dir}: no pointwise/*.tfrecords"
                                + (" or pairwise/*.tfrecords" if include_pairwise else "")
                                + " (expected the official data layout)")
    return files


def record_counts(files: Sequence[str], cache_path: str | os.PathLike | None = None) -> list[int]:
    """Records per file; cached in ``cache_path`` (JSON keyed by path, size and mtime) when given.

    A corrupt or truncated file raises RecordError (file, record), an empty one DataError.

    Counting reads every file once (`reader.count_records`); the cache makes a resumed run skip it.
    """
    cache: dict = {}
    if cache_path and os.path.isfile(cache_path):
        with open(cache_path, encoding="utf-8") as handle:
            cache = json.load(handle)
    counts, changed = [], False
    for path in files:
        stat = os.stat(path)
        key = os.path.abspath(path)
        entry = cache.get(key)
        if not entry or entry.get("bytes") != stat.st_size or entry.get("mtime") != stat.st_mtime:
            entry = {"bytes": stat.st_size, "mtime": stat.st_mtime, "records": reader.count_records(path)}
            cache[key] = entry
            changed = True
        if int(entry["records"]) == 0:
            raise DataError(path, None, "empty file: it holds no records (an empty shard: an interrupted copy or "
                                        "write?); regenerate it or leave it out")
        counts.append(int(entry["records"]))
    if cache_path and changed:
        write_text_atomic(cache_path, json.dumps(cache, indent=2, sort_keys=True) + "\n")
    return counts


MIN_TAG_COVERAGE = 0.5  # fewer training tag occurrences found in the tag list than this is an error
# ... unless the tags on this many distinct videos or more are covered that well: a long tail of
# tags seen once or twice is no sign of a wrong list (no list of the data's size could hold them)
REPEATED_TAG_COUNT = 3


def _file_summary(path: str, vocab: TagVocab, pairs: bool, seen: UniqueIds | None, batch_size: int,
                  counted: set | None = None) -> dict:
    """One pass over one file's records: count, ids (checked, unique across ``seen``), tag coverage.

    Also the coverage per distinct video (``counted``: ids of pair videos already counted, across
    files; a video of several pairs counts once), which tells a tag list that misses a long tail of
    rare tags from one of another data set."""
    suffixes = schema.PAIR_SUFFIXES if pairs else ("",)
    spec = {schema.KEY_TAGS + suffix: tf.io.VarLenFeature(tf.int64) for suffix in suffixes}
    if seen is not None:
        spec[schema.KEY_ID] = tf.io.VarLenFeature(tf.string)
    if pairs:
        spec.update({schema.KEY_ID + suffix: tf.io.FixedLenFeature([], tf.string, default_value=b"")
                     for suffix in suffixes})
    counted = set() if counted is None else counted
    known = vocab.tag_ids_sorted

    def parse(paths, index, record):
        parsed = tf.io.parse_example(record, spec)
        out = {"index": index}
        for key, value in parsed.items():
            if isinstance(value, tf.SparseTensor):
                out[key + ":rows"], out[key + ":values"] = value.indices[:, 0], value.values
            else:
                out[key] = value
        return out

    records = occurrences = matched = without = matched_once = 0
    unmatched: dict[int, int] = {}
    unmatched_once: dict[int, int] = {}  # per distinct video
    dataset = reader.checked_file_records(path, os.path.getsize(path)).batch(batch_size).map(parse)
    with reader.record_errors():
        for batch in dataset.as_numpy_iterator():
            size = len(batch["index"])
            records += size
            if seen is not None:
                rows, values = batch[schema.KEY_ID + ":rows"], batch[schema.KEY_ID + ":values"]
                if len(rows) != size or (len(rows) and np.any(np.bincount(rows, minlength=size) != 1)):
                    bad = int(np.flatnonzero(np.bincount(rows, minlength=size) != 1)[0])
                    raise RecordError(path, int(batch["index"][bad]), "key 'id' does not hold exactly 1 value")
                for index, raw in zip(batch["index"].tolist(), values.tolist()):
                    seen.add(check_video_id(raw, path, index), path, index)
            for suffix in suffixes:
                rows, values = batch[schema.KEY_TAGS + suffix + ":rows"], batch[schema.KEY_TAGS + suffix + ":values"]
                hit = np.isin(values, known)
                occurrences += len(values)
                matched += int(hit.sum())
                without += size - len(np.unique(rows[hit]))
                for tag in values[~hit].tolist():
                    unmatched[tag] = unmatched.get(tag, 0) + 1
                if pairs:  # pointwise records are distinct videos: the counts above are per video
                    first = np.zeros(size, dtype=bool)
                    for row, video in enumerate(batch[schema.KEY_ID + suffix].tolist()):
                        first[row] = video not in counted  # a video twice in one batch counts once too
                        counted.add(video)
                    once = first[rows]
                    matched_once += int((hit & once).sum())
                    for tag in values[~hit & once].tolist():
                        unmatched_once[tag] = unmatched_once.get(tag, 0) + 1
    return {"records": records, "tag_occurrences": occurrences, "tags_matched": matched,
            "videos_without_known_tag": without, "unmatched_tags": unmatched,
            "tags_matched_per_video": matched_once if pairs else matched,
            "unmatched_tags_per_video": unmatched_once if pairs else unmatched}


def input_summary(files: Sequence[str], vocab: TagVocab, tag_list: str, pairs: bool = False,
                  cache_path: str | os.PathLike | None = None, batch_size: int = 1024,
                  min_coverage: float = MIN_TAG_COVERAGE) -> dict:
    """Records per file, each file's md5 + size, and how many of the training videos' tags the tag
    list covers, in one pass per file (cached in ``cache_path`` while no file and not the tag list
    changes). Pointwise/pairwise videos also have their ids checked and unique across ``files``.

    Returns ``{"records": [...], "files": [{"path", "bytes", "md5"}], "tags": {...}}``; raises
    DataError when fewer than ``min_coverage`` of the tag occurrences are in the tag list, both
    of all of them and, per distinct video, of those of tags on ``REPEATED_TAG_COUNT`` videos or more (a tag list of
    another data set would train the tag head on all-zero targets; a long tail of tags seen once
    or twice, which no list could hold, is no sign of one).
    """
    files = [os.path.abspath(os.fspath(path)) for path in files]
    tag_md5 = provenance.file_md5(tag_list)
    state = [[path, os.stat(path).st_size, os.stat(path).st_mtime_ns] for path in files]
    cache = None
    if cache_path and os.path.isfile(cache_path):
        with contextlib.suppress(OSError, ValueError):
            with open(cache_path, encoding="utf-8") as handle:
                cache = json.load(handle)
    if not (isinstance(cache, dict) and cache.get("state") == state and cache.get("tag_list_md5") == tag_md5
            and cache.get("pairs") == pairs and "tags_unmatched_repeated" in cache.get("tags", {})):
        seen, counted = (None if pairs else UniqueIds()), set()
        per_file = []
        for path in files:
            summary = _file_summary(path, vocab, pairs, seen, batch_size, counted)
            if summary["records"] == 0:
                raise DataError(path, None, "empty file: it holds no records (an empty shard: an interrupted copy or "
                                            "write?); regenerate it or leave it out")
            summary["md5"] = provenance.file_md5(path)
            per_file.append(summary)
        unmatched: dict[str, int] = {}
        unmatched_once: dict[int, int] = {}
        for summary in per_file:
            for tag, count in summary.pop("unmatched_tags").items():
                unmatched[str(tag)] = unmatched.get(str(tag), 0) + count
            for tag, count in summary.pop("unmatched_tags_per_video").items():
                unmatched_once[tag] = unmatched_once.get(tag, 0) + count
        totals = {key: sum(summary[key] for summary in per_file)
                  for key in ("tag_occurrences", "tags_matched", "videos_without_known_tag", "tags_matched_per_video")}
        totals["videos"] = sum(summary["records"] for summary in per_file) * (2 if pairs else 1)
        totals["tags_unmatched"] = totals["tag_occurrences"] - totals["tags_matched"]
        # of tags on REPEATED_TAG_COUNT distinct videos or more
        totals["tags_unmatched_repeated"] = sum(count for count in unmatched_once.values()
                                                if count >= REPEATED_TAG_COUNT)
        totals["distinct_unmatched_tags"] = len(unmatched)
        totals["most_frequent_unmatched"] = dict(sorted(unmatched.items(), key=lambda item: -item[1])[:10])
        cache = {"state": state, "tag_list_md5": tag_md5, "pairs": pairs, "tags": totals,
                 "records": [summary["records"] for summary in per_file],
                 "md5": [summary["md5"] for summary in per_file]}
        if cache_path:
            write_text_atomic(cache_path, json.dumps(cache, indent=2) + "\n")
    tags = cache["tags"]
    coverage = tags["tags_matched"] / tags["tag_occurrences"] if tags["tag_occurrences"] else 0.0
    repeated = tags["tags_matched_per_video"] + tags["tags_unmatched_repeated"]
    repeated_coverage = tags["tags_matched_per_video"] / repeated if repeated else 0.0
    if coverage < min_coverage and repeated_coverage < min_coverage:
        raise DataError(tag_list, None, f"only {tags['tags_matched']} of the {tags['tag_occurrences']} tag occurrences "
                                        f"({coverage:.1%}) of the {tags['videos']} training videos are in this tag list, "
                                        f"{repeated_coverage:.1%} leaving out tags on fewer than {REPEATED_TAG_COUNT} "
                                        f"videos (at least {min_coverage:.0%} needed; {tags['distinct_unmatched_tags']} "
                                        f"distinct tags missing, e.g. {', '.join(list(tags['most_frequent_unmatched'])[:5])}): "
                                        "the tag head would train on (nearly) all-zero targets. Is it the tag list of "
                                        "this data set? (If it is: lower min_tag_coverage=)")
    return {"records": cache["records"],
            "tags": dict(tags, coverage=round(coverage, 6), repeated_coverage=round(repeated_coverage, 6)),
            "files": [{"path": path, "bytes": size, "md5": md5}
                      for (path, size, _), md5 in zip(state, cache["md5"])]}


def stream_titles(files: Sequence[str], pairs: bool = False, batch_size: int = 512,
                  include_asr: bool = False) -> Iterator[bytes]:
    """Every title of the records (both videos' titles for pair records), and with ``include_asr``
    every ASR text too, parsing nothing else."""
    fields = [schema.KEY_TITLE, schema.KEY_ASR] if include_asr else [schema.KEY_TITLE]
    suffixes = schema.PAIR_SUFFIXES if pairs else ("",)
    keys = [field + suffix for field in fields for suffix in suffixes]
    spec = {key: tf.io.FixedLenFeature([], tf.string, default_value=b"") for key in keys}
    dataset = checked_records(files).batch(batch_size).map(lambda records: tf.io.parse_example(records, spec),
                                                           num_parallel_calls=AUTOTUNE).prefetch(2)
    with reader.record_errors():
        for batch in dataset.as_numpy_iterator():
            for key in keys:
                yield from batch[key]


def checked_records(files: Sequence[str]) -> tf.data.Dataset:
    """The serialized records of ``files`` (interleaved), failing with the file and record index
    on corrupt or truncated data (`reader.checked_file_records`); iterate under `reader.record_errors`."""
    files = [os.fspath(path) for path in files]
    sizes = [os.path.getsize(path) for path in files]
    paths = tf.data.Dataset.from_tensor_slices((tf.constant(files), tf.constant(sizes, tf.int64)))
    records = paths.interleave(reader.checked_file_records, cycle_length=max(1, min(len(files), _MAX_PARALLEL_FILES)),
                               block_length=1, num_parallel_calls=AUTOTUNE, deterministic=True)
    return records.map(lambda path, index, record: record)


def load_tag_vocab(path: str | os.PathLike) -> TagVocab:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(path)}: tag list not found (set tag_list=PATH/tag_list.txt)")
    return TagVocab.from_file(path)


# ---------------------------------------------------------------------- the training stream
def _pin_graph_seed(seed: int) -> None:
    """Make the shuffles below depend on ``seed`` only, not on the process's global TF seed.

    ``Dataset.shuffle`` pairs its op seed with the graph-level seed, which a traced dataset function
    inherits from the global seed (`tf.random.set_seed`, `keras.utils.set_random_seed`). So the
    order would change with whatever global seed the process happens to have, and a global seed
    of 0 fails outright: TensorFlow then compares the symbolic epoch seed with 0 in Python
    (`OperatorNotAllowedInGraphError`). Pinning the traced function's own graph seed fixes both.
    A stream seed of 0 gets a non-zero graph seed for that reason; any other seed is its own graph
    seed, which keeps the order of runs made before this pin (their global seed was the stream's).
    Only for the function graph of `TrainStream.serialized`'s ``flat_map``: the global seed is
    left alone.
    """
    if tf.executing_eagerly():
        raise RuntimeError("_epoch_records is traced inside Dataset.flat_map; it must not run eagerly")
    tf.compat.v1.get_default_graph().seed = int(seed) or _EPOCH_SEED_STRIDE


def _epoch_records(files: tf.Tensor, sizes: tf.Tensor, epoch: tf.Tensor, seed: int,
                   shuffle_buffer: int) -> tf.data.Dataset:
    """One epoch of ``(path, index, record)``: file order and records shuffled with (seed, epoch).

    Each file is read with `reader.checked_file_records`: a corrupt or truncated file fails with
    its name and the record where reading stopped (a bare ``TFRecordDataset`` names neither).
    """
    _pin_graph_seed(seed)
    epoch_seed = tf.cast(seed, tf.int64) * _EPOCH_SEED_STRIDE + epoch
    paths = tf.data.Dataset.from_tensor_slices((files, sizes))
    num_files = int(files.shape[0])
    if num_files > 1:
        paths = paths.shuffle(num_files, seed=epoch_seed)
    records = paths.interleave(reader.checked_file_records, cycle_length=min(num_files, _MAX_PARALLEL_FILES),
                               block_length=1, num_parallel_calls=AUTOTUNE, deterministic=True)
    return records.shuffle(shuffle_buffer, seed=epoch_seed)


def numeric_features(features: dict) -> dict:
    """Drop string features (ids, titles, ASR) from a (nested) feature dict."""
    out = {}
    for key, value in features.items():
        if isinstance(value, dict):
            out[key] = numeric_features(value)
        elif value.dtype != tf.string:
            out[key] = value
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class TrainStream:
    """The deterministic, resumable training stream of one stage (see the module docstring).

    ``pairs``: fold-shard pair records (``{"video_1", "video_2", "sim", "target"}``) instead of
    single videos. ``target_fn`` maps the label ``sim`` [B] to the training target (pairs only).
    ``stop_step``: the stream ends after this global batch (the run's total steps; None: never), so
    that no reader runs ahead into an epoch no step uses. (The pauses of up to a minute at the end of
    some runs had another cause, tf.data's autotuning threads: `train.loop.input_options`.)
    """

    files: tuple[str, ...]
    records_per_epoch: int
    decoder: reader.VideoDecoder
    global_batch: int
    seed: int
    shuffle_buffer: int = 1024
    pairs: bool = False
    target_fn: Callable[[tf.Tensor], tf.Tensor] | None = None
    stop_step: int | None = None

    def __post_init__(self):
        if self.records_per_epoch < self.global_batch:
            raise ValueError(f"{self.records_per_epoch} training records cannot fill one batch of "
                             f"{self.global_batch} (files: {', '.join(self.files)})")

    def serialized(self, start_step: int = 0) -> tf.data.Dataset:
        """Global batches of ``(path, index, record)`` from step ``start_step`` on, up to ``stop_step``
        (forever without it)."""
        start_record = int(start_step) * self.global_batch
        first_epoch, offset = divmod(start_record, self.records_per_epoch)
        files = tf.constant(list(self.files))
        sizes = tf.constant([os.path.getsize(path) for path in self.files], tf.int64)
        epochs = tf.data.Dataset.counter(first_epoch)
        stream = epochs.flat_map(lambda epoch: _epoch_records(files, sizes, epoch, self.seed, self.shuffle_buffer))
        batches = stream.skip(offset).batch(self.global_batch, drop_remainder=True)
        if self.stop_step is not None:
            batches = batches.take(max(int(self.stop_step) - int(start_step), 0))
        return batches

    def dataset(self, start_step: int = 0, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Decoded per-replica batches for ``input_context`` (whole global batches without one)."""
        if input_context is None:
            pipelines, pipeline_id, replicas = 1, 0, 1
        else:
            pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
            replicas = input_context.num_replicas_in_sync
        if self.global_batch % replicas:
            raise ValueError(f"batch_size {self.global_batch} is not divisible by the {replicas} replicas")
        per_replica = self.global_batch // replicas
        per_pipeline = self.global_batch // pipelines
        lo = pipeline_id * per_pipeline
        dataset = self.serialized(start_step)
        dataset = dataset.map(lambda path, index, record: (path[lo:lo + per_pipeline], index[lo:lo + per_pipeline],
                                                           record[lo:lo + per_pipeline]))
        dataset = dataset.unbatch()
        # The tag lookup table must be created outside the tf.data functions that use it.
        table = self.decoder.tag_table()
        decode = self._decode_pair if self.pairs else self._decode_video
        dataset = dataset.map(lambda path, index, record: decode(path, index, record, table),
                              num_parallel_calls=AUTOTUNE, deterministic=True)
        dataset = dataset.batch(per_replica, drop_remainder=True)
        dataset = dataset.map(self._finish_batch, num_parallel_calls=AUTOTUNE, deterministic=True)
        options = tf.data.Options()
        # The slicing above already shards the stream: no automatic sharding on top.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        options.deterministic = True
        return dataset.with_options(options).prefetch(AUTOTUNE)

    # ---------------------------------------------------------------- decoding
    def _decode_video(self, path, index, record, table):
        return self.decoder.decode_video_record(record, schema.RecordKind.POINTWISE, path, index, table)

    def _decode_pair(self, path, index, record, table):
        return self.decoder.decode_pair_record(record, path, index, table)

    def _finish_batch(self, batch):
        if not self.pairs:
            return numeric_features(self._tokenized(batch))
        first, second = batch["video_1"], batch["video_2"]
        if self.decoder.tokenizer is not None:  # one tokenizer call for both videos' titles
            rows = first["title"].shape[0]  # static: batches drop their remainder
            input_ids, attention_mask = self.decoder.tokenize(tf.concat([first["title"], second["title"]], 0),
                                                              tf.concat([first["asr_text"], second["asr_text"]], 0))
            first = {**first, "input_ids": input_ids[:rows], "attention_mask": attention_mask[:rows]}
            second = {**second, "input_ids": input_ids[rows:], "attention_mask": attention_mask[rows:]}
        target = self.target_fn(batch["sim"]) if self.target_fn is not None else batch["sim"]
        return numeric_features({"video_1": first, "video_2": second, "sim": batch["sim"], "target": target})

    def _tokenized(self, video):
        if self.decoder.tokenizer is None:
            return video
        input_ids, attention_mask = self.decoder.tokenize(video["title"], video["asr_text"])
        return {**video, "input_ids": input_ids, "attention_mask": attention_mask}


# ---------------------------------------------------------------------- validation
def validation_pairs(path: str, decoder: reader.VideoDecoder, batch_size: int) -> tf.data.Dataset:
    """Every pair of a validation shard, in file order, last batch partial; strings kept."""
    return reader.read_pairs(path, decoder, batch_size, shuffle=False, repeat=False, drop_remainder=False)


def pair_labels(files: Sequence[str], batch_size: int = 1024) -> np.ndarray:
    """The ``sim`` label of every pair record of ``files`` (parsing nothing else), float32."""
    spec = {schema.KEY_SIM: tf.io.FixedLenFeature([], tf.float32)}
    dataset = checked_records(files).batch(batch_size)
    dataset = dataset.map(lambda records: tf.io.parse_example(records, spec)[schema.KEY_SIM],
                          num_parallel_calls=AUTOTUNE)
    with reader.record_errors():
        values = [batch for batch in dataset.as_numpy_iterator()]
    return np.concatenate(values).astype(np.float32) if values else np.zeros([0], np.float32)
