"""Readers of the official record layout: streaming ``tf.data`` pipelines and Python iterators.

Streaming pipelines (``read_videos``, ``read_pairs``)
    files -> one ``TFRecordDataset`` per file, interleaved (each record tagged with its file path
    and record index) -> optional record shuffle / repeat -> parallel parse + decode (frames
    sampled with the official rule, tag multi-hot, category) -> batch -> title tokenisation on
    whole batches (``tf.numpy_function`` around the fast tokenizer) -> prefetch. Nothing holds more
    than the shuffle buffer and a few batches, whatever the data-set size.

How bad input is reported (never silently skipped)
    Every record carries ``(path, index)`` through the pipeline. Its checks -- every required key
    present with the right number of values, at least one frame, every frame ``2 x frame_dim``
    bytes, a pair's ``sim`` in [0, 1] -- are a handful of boolean ops on what the parser returned
    anyway, reduced to one boolean. Only when that is False does a ``tf.cond`` branch hand the
    serialized record to the Python validator (the one ``read_raw_videos`` uses, so both paths
    report the same problem in the same words) and fail an in-graph assertion with its message::

        assertion failed: [RecordError: data/pairwise.tfrecords, record 7: frame 3 has 100 bytes, expected 3072]

    (The branch is tiny on purpose: TensorFlow inlines ``tf.cond`` branches into the map function,
    and a branch of a few hundred ops would cost every valid record more than its decoding.) The
    validator also tells an empty ``tag_id`` list (valid) from a missing one, which
    ``tf.io.parse_single_example`` cannot; records with no tags therefore take the Python path.

    A corrupt or truncated file makes ``TFRecordDataset`` raise ``DataLossError`` without the file
    name. Instead, each file is read through its own ``TFRecordDataset(...).ignore_errors()``
    (which stops that file at the first unreadable record) followed by an end-of-file sentinel;
    a ``scan`` adds up the bytes consumed (record length + 16 bytes of TFRecord framing) and at the
    sentinel asserts that they equal the file size. A CRC failure or truncation anywhere therefore
    becomes ``<path>, record <i>: corrupt or truncated TFRecord data ...`` at the point where reading
    stopped, with no extra pass over the data. (Uncompressed TFRecord files, the official layout.)

    TensorFlow raises these as ``tf.errors.InvalidArgumentError`` (string data in the message is
    C-escaped: ``missing key \\'title\\'``). Wrap a loop in ``record_errors()`` (or iterate with
    ``iterate_checked``) to get ``RecordError(path, index, problem)`` instead. A value of the wrong
    type (an int list where bytes are expected) or bytes that are no ``tf.train.Example`` fail
    inside TensorFlow's parser, whose message names the key but not the file;
    ``verify_file(path, kind)`` pinpoints such a record.

Python readers (``read_raw_videos``, ``read_raw_pairs``, ``count_records``, ``verify_file``)
    Used by golden tests, fold sharding and the synthetic-data round trip. They raise
    ``RecordError(path, index, problem)`` directly, and also reject text that is not UTF-8 (the
    ``tf.data`` readers pass text bytes through; the tokenizer replaces invalid bytes).
"""
from __future__ import annotations

import codecs
import contextlib
import dataclasses
import os
import re
import threading
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from tfrecord_tools import schema
from tfrecord_tools.errors import RecordError
from tfrecord_tools.ids import ID_PATTERN, UniqueIds, check_video_id
from tfrecord_tools.tags import TagVocab
from tfrecord_tools.tokenization import TEXT_SOURCES, encode_titles

AUTOTUNE = tf.data.AUTOTUNE
RECORD_FRAMING_BYTES = 16  # uint64 length + uint32 length CRC + uint32 data CRC around each record
DEFAULT_SHUFFLE_BUFFER = 1024
_MAX_PARALLEL_FILES = 16
_ERROR_PREFIX = "RecordError: "
_ERROR_PATTERN = re.compile(r"RecordError: (?P<path>.+?), record (?P<index>-?\d+): (?P<problem>.*?)\](?:\s|$)")
_DATA_LOSS_PATTERN = re.compile(r"(corrupted|truncated) record at \d+")
# Parallel tf.data maps call the tokenizer from several threads; a fast tokenizer may re-configure
# its Rust backend (truncation/padding) inside a call, so calls are serialised (each batch call
# still uses the backend's own threads).
_TOKENIZER_LOCK = threading.Lock()

Files = str | os.PathLike | Sequence[str | os.PathLike]


# ----------------------------------------------------------------------------- frame sampling


def sample_frame_indices(n: int, max_frames: int = schema.MAX_FRAMES) -> np.ndarray:
    """The official frame sampling: all ``n`` frames if ``n <= max_frames``, else ``max_frames``
    frames at ``stride // 2 + i * stride`` with ``stride = n // max_frames``. int64 indices."""
    if n < 0 or max_frames < 1:
        raise ValueError(f"need n >= 0 and max_frames >= 1, got n={n}, max_frames={max_frames}")
    if n <= max_frames:
        return np.arange(n, dtype=np.int64)
    stride = n // max_frames
    return stride // 2 + np.arange(max_frames, dtype=np.int64) * stride


def sample_frame_indices_tf(n: tf.Tensor, max_frames: int = schema.MAX_FRAMES) -> tf.Tensor:
    """``sample_frame_indices`` in TensorFlow: int32 [min(n, max_frames)]."""
    n = tf.cast(n, tf.int32)
    kept = tf.minimum(n, max_frames)
    stride = tf.maximum(n // max_frames, 1)
    offset = tf.where(n > max_frames, stride // 2, 0)
    return offset + tf.range(kept, dtype=tf.int32) * stride


# ----------------------------------------------------------------------------- Python validation


def _parse_example(path: str, index: int, record: bytes):
    try:
        return tf.train.Example.FromString(record).features.feature
    except Exception as error:  # google.protobuf.message.DecodeError
        raise RecordError(path, index, f"not a tf.train.Example ({error})") from None


def _feature_values(features, key: str, list_kind: str, path: str, index: int) -> list:
    if key not in features:
        raise RecordError(path, index, f"missing key '{key}'")
    feature = features[key]
    held = feature.WhichOneof("kind")
    if held is not None and held != list_kind:
        raise RecordError(path, index, f"key '{key}' holds {held}, expected {list_kind}")
    return list(getattr(feature, list_kind).value)


def _single(values: list, key: str, path: str, index: int):
    if len(values) != 1:
        raise RecordError(path, index, f"key '{key}' holds {len(values)} values, expected 1")
    return values[0]


def _text(value: bytes, key: str, path: str, index: int, strict: bool = True) -> str:
    if not strict:
        return value.decode("utf-8", errors="replace")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(path, index, f"key '{key}' is not valid UTF-8 ({error})") from None


def _frame_problem(frames: Sequence[bytes], frame_dim: int, key: str = schema.KEY_FRAMES) -> str | None:
    if not frames:
        return f"key '{key}' holds no frames"
    expected = 2 * frame_dim
    for number, frame in enumerate(frames):
        if len(frame) != expected:
            return f"frame {number} has {len(frame)} bytes, expected {expected}"
    return None


def _raw_video(features, kind: schema.RecordKind, path: str, index: int, frame_dim: int, suffix: str = "",
               strict_text: bool = True) -> dict:
    """One raw video (writer.py's format) from a parsed Example; RecordError on any problem.

    Checks in the order id, title, asr_text, frame_feature, tag_id, category_id.
    """
    def values(key, list_kind):
        return _feature_values(features, key + suffix, list_kind, path, index)

    video = {schema.KEY_ID: check_video_id(_single(values(schema.KEY_ID, "bytes_list"), schema.KEY_ID + suffix, path,
                                                   index), path, index, schema.KEY_ID + suffix)}
    for key in (schema.KEY_TITLE, schema.KEY_ASR):
        video[key] = _text(_single(values(key, "bytes_list"), key + suffix, path, index), key + suffix, path, index,
                           strict_text)
    frames = values(schema.KEY_FRAMES, "bytes_list")
    problem = _frame_problem(frames, frame_dim, schema.KEY_FRAMES + suffix)
    if problem:
        raise RecordError(path, index, problem)
    video["frames"] = np.frombuffer(b"".join(frames), dtype="<f2").reshape(len(frames), frame_dim)
    if kind != schema.RecordKind.TEST:
        video[schema.KEY_TAGS] = [int(tag) for tag in values(schema.KEY_TAGS, "int64_list")]
        category = _single(values(schema.KEY_CATEGORY, "int64_list"), schema.KEY_CATEGORY + suffix, path, index)
        video[schema.KEY_CATEGORY] = int(category)
    return video


def _raw_pair(features, path: str, index: int, frame_dim: int, strict_text: bool = True) -> dict:
    pair = {f"video{suffix}": _raw_video(features, schema.RecordKind.PAIR, path, index, frame_dim, suffix, strict_text)
            for suffix in schema.PAIR_SUFFIXES}
    sim = float(_single(_feature_values(features, schema.KEY_SIM, "float_list", path, index),
                        schema.KEY_SIM, path, index))
    if not 0.0 <= sim <= 1.0:
        raise RecordError(path, index, f"sim {sim:g} is outside [0, 1]")
    pair["sim"] = sim
    return pair


def decode_raw_record(record: bytes, kind: schema.RecordKind, path: str = "<bytes>", index: int = 0,
                      frame_dim: int = schema.FRAME_DIM, strict_text: bool = True) -> dict:
    """A serialized record as a raw video dict (or, for ``PAIR``, ``{"video_1", "video_2", "sim"}``).

    RecordError(path, index, ...) on any problem; ``strict_text=False`` decodes invalid UTF-8 with
    U+FFFD instead (what the tf.data readers do: they pass text bytes through untouched).
    """
    kind = schema.RecordKind(kind)
    features = _parse_example(path, index, record)
    if kind == schema.RecordKind.PAIR:
        return _raw_pair(features, path, index, frame_dim, strict_text)
    return _raw_video(features, kind, path, index, frame_dim, strict_text=strict_text)


# ----------------------------------------------------------------------------- in-graph checks


def _where(path: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """``"<path>, record <index>"`` as a scalar string tensor."""
    return tf.strings.join([path, ", record ", tf.strings.as_string(index)])


def _require(ok: tf.Tensor, message_fn) -> tf.Tensor:
    """Assert ``ok``; ``message_fn()`` (a string tensor, keep it small) is built only on failure.

    Returns a tensor to use as control dependency. The branch contains an ``Assert`` (stateful),
    so graph optimisations cannot prune it.
    """

    def failed():
        with tf.control_dependencies([tf.debugging.Assert(ok, [message_fn()], summarize=1)]):
            return tf.identity(ok)

    return tf.cond(ok, lambda: tf.constant(True), failed)


def _require_valid(fast_ok: Sequence[tf.Tensor], problem_fn, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
    """Assert a record whose fast checks ``fast_ok`` all hold, else ask the Python validator.

    ``problem_fn(*inputs as numpy)`` returns ``b""`` when the record is valid after all (an
    empty tag list) or ``b"RecordError: <path>, record <i>: <problem>"``.
    """
    ok = tf.reduce_all(tf.stack(list(fast_ok)))

    def slow():
        message = tf.reshape(tf.numpy_function(problem_fn, list(inputs), tf.string, stateful=False), [])
        valid = tf.equal(tf.strings.length(message), 0)
        with tf.control_dependencies([tf.debugging.Assert(valid, [message], summarize=1)]):
            return tf.identity(valid)

    return tf.cond(ok, lambda: tf.constant(True), slow)


def _py_bytes(value) -> bytes:
    """A scalar string handed to ``tf.numpy_function`` (bytes, or a 0-d object array) as bytes."""
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _record_problem(kind: schema.RecordKind, frame_dim: int):
    """``problem_fn`` for ``_require_valid``: validate a serialized record in Python."""

    def problem(record, path, index) -> bytes:
        try:
            decode_raw_record(_py_bytes(record), kind, _py_bytes(path).decode("utf-8", "replace"), int(index),
                              frame_dim, strict_text=False)
        except RecordError as error:
            return f"{_ERROR_PREFIX}{error}".encode("utf-8")
        return b""

    return problem


def _first(values: tf.Tensor, default) -> tf.Tensor:
    """``values[0]``, or ``default`` for an empty list (safe to evaluate before the checks)."""
    return tf.concat([values, tf.constant([default], values.dtype)], axis=0)[0]


def _frames_ok(frame_bytes: tf.Tensor, frame_dim: int) -> tf.Tensor:
    return tf.logical_and(tf.size(frame_bytes) > 0,
                          tf.reduce_all(tf.equal(tf.strings.length(frame_bytes), 2 * frame_dim)))


def _id_ok(video_id: tf.Tensor) -> tf.Tensor:
    """The rule of ``ids.check_video_id`` in-graph: valid UTF-8 (it survives a strict-replacing
    transcode unchanged), non-empty, no whitespace / control / format / separator character."""
    utf8 = tf.equal(tf.strings.unicode_transcode(video_id, "UTF-8", "UTF-8", errors="replace"), video_id)
    return tf.logical_and(utf8, tf.strings.regex_full_match(video_id, ID_PATTERN))


def _video_ok(parsed, kind: schema.RecordKind, suffix: str, frame_dim: int) -> list[tf.Tensor]:
    """Fast checks of one video: value counts and frame sizes (a non-empty tag list is the fast case)."""
    checks = [tf.equal(tf.size(parsed[key + suffix].values), 1) for key in (schema.KEY_ID, schema.KEY_TITLE,
                                                                            schema.KEY_ASR)]
    checks.append(_id_ok(_first(parsed[schema.KEY_ID + suffix].values, "")))
    checks.append(_frames_ok(parsed[schema.KEY_FRAMES + suffix].values, frame_dim))
    if kind != schema.RecordKind.TEST:
        checks.append(tf.size(parsed[schema.KEY_TAGS + suffix].values) > 0)
        checks.append(tf.equal(tf.size(parsed[schema.KEY_CATEGORY + suffix].values), 1))
    return checks


# ----------------------------------------------------------------------------- frames


def _decode_checked_frames(frame_bytes: tf.Tensor, frame_dim: int, max_frames: int):
    """Sample + decode frames already known to be well formed (see ``decode_frames``)."""
    n = tf.size(frame_bytes, out_type=tf.int32)
    indices = sample_frame_indices_tf(n, max_frames)
    kept = tf.size(indices)
    decoded = tf.io.decode_raw(tf.gather(frame_bytes, indices), tf.float16, little_endian=True)
    frames = tf.cast(tf.reshape(decoded, [kept, frame_dim]), tf.float32)
    frames = tf.ensure_shape(tf.pad(frames, [[0, max_frames - kept], [0, 0]]), [max_frames, frame_dim])
    mask = tf.sequence_mask(kept, max_frames, dtype=tf.float32)
    return frames, mask, n


def decode_frames(frame_bytes: tf.Tensor, frame_dim: int = schema.FRAME_DIM, max_frames: int = schema.MAX_FRAMES,
                  path: tf.Tensor | str | None = None, index: tf.Tensor | int = -1
                  ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Decode one video's frames: 1-D string tensor of little-endian float16 frames ->
    ``(frames float32 [max_frames, frame_dim], frame_mask float32 [max_frames], num_frames int32 [])``.

    Frames are sampled with the official rule and zero padded. Every frame (sampled or not) must
    hold ``2 * frame_dim`` bytes and there must be at least one; otherwise an in-graph assertion
    fails naming the frame (and, given ``path``/``index``, the record).
    """
    frame_bytes = tf.reshape(frame_bytes, [-1])
    named = path is not None

    def problem(frames, where_path, where_index) -> bytes:
        found = _frame_problem([_py_bytes(frame) for frame in frames], frame_dim)
        if not found:
            return b""
        if named:
            error = RecordError(_py_bytes(where_path).decode("utf-8", "replace"), int(where_index), found)
            return f"{_ERROR_PREFIX}{error}".encode("utf-8")
        return found.encode("utf-8")

    valid = _require_valid([_frames_ok(frame_bytes, frame_dim)], problem,
                           [frame_bytes, tf.convert_to_tensor("" if path is None else path, tf.string),
                            tf.convert_to_tensor(index, tf.int64)])
    with tf.control_dependencies([valid]):
        return _decode_checked_frames(tf.identity(frame_bytes), frame_dim, max_frames)


# ----------------------------------------------------------------------------- decoder


@dataclasses.dataclass(frozen=True, eq=False)
class VideoDecoder:
    """How raw records become the decoded feature dict of ``docs/architecture.md``.

    ``tokenizer``: a fast tokenizer from ``tokenization.load_tokenizer`` (``None``: no
    ``input_ids``/``attention_mask`` in the output). ``tag_vocab``: the ``TagVocab`` of the
    multi-hot (``None``: no ``tags`` in the output); its size is the multi-hot width.
    """

    tokenizer: Any = None
    tag_vocab: TagVocab | None = None
    frame_dim: int = schema.FRAME_DIM
    max_frames: int = schema.MAX_FRAMES
    title_len: int = schema.TITLE_LEN
    text_source: str = "title"  # "title" or "title+asr": what the tokens of input_ids hold

    def __post_init__(self):
        if self.text_source not in TEXT_SOURCES:
            raise ValueError(f"VideoDecoder.text_source must be one of {TEXT_SOURCES}, got {self.text_source!r}")
        if self.tag_vocab is not None and not isinstance(self.tag_vocab, TagVocab):
            raise TypeError(f"tag_vocab must be a TagVocab or None, got {type(self.tag_vocab).__name__}")
        for name in ("frame_dim", "max_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VideoDecoder.{name} must be positive, got {getattr(self, name)}")
        if self.title_len < 2:
            raise ValueError(f"VideoDecoder.title_len must leave room for [CLS] and [SEP], got {self.title_len}")

    def tag_table(self):
        """The tag lookup table to pass to ``decode_*_record`` (None without a tag vocabulary)."""
        return self.tag_vocab.lookup_table() if self.tag_vocab is not None else None

    def tokenize(self, titles: tf.Tensor, asr_texts: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Tokenise a 1-D batch of titles in one call of the fast tokenizer (``tf.numpy_function``):
        ``(input_ids int32 [B, title_len], attention_mask int32 [B, title_len])``. With
        ``text_source="title+asr"`` the ASR texts (required) follow the title as a second segment."""
        if self.tokenizer is None:
            raise ValueError("VideoDecoder has no tokenizer")
        tokenizer, title_len = self.tokenizer, self.title_len
        with_asr = self.text_source == "title+asr"
        if with_asr and asr_texts is None:
            raise ValueError("VideoDecoder(text_source='title+asr').tokenize needs the ASR texts")

        def encode(batch: np.ndarray, asr: np.ndarray):
            with _TOKENIZER_LOCK:
                return encode_titles(tokenizer, list(batch), title_len, list(asr) if with_asr else None)

        asr_input = asr_texts if with_asr else titles
        input_ids, attention_mask = tf.numpy_function(encode, [titles, asr_input], [tf.int32, tf.int32],
                                                      stateful=False)
        shape = tf.TensorShape([titles.shape[0], title_len])
        input_ids.set_shape(shape)
        attention_mask.set_shape(shape)
        return input_ids, attention_mask

    def _decode_values(self, parsed, kind: schema.RecordKind, suffix: str, tag_table) -> dict[str, tf.Tensor]:
        """The decoded features of one video from parsed VarLen values (run under the record's checks)."""
        values = {key: parsed[key + suffix].values for key in schema.required_keys(kind)}
        frames, frame_mask, num_frames = _decode_checked_frames(values[schema.KEY_FRAMES], self.frame_dim,
                                                                self.max_frames)
        video = {
            "id": values[schema.KEY_ID][0],
            "title": values[schema.KEY_TITLE][0],
            "asr_text": values[schema.KEY_ASR][0],
            "frames": frames,
            "frame_mask": frame_mask,
            "num_frames": num_frames,
        }
        if self.tag_vocab is not None:
            if kind == schema.RecordKind.TEST:
                video["tags"] = tf.zeros([self.tag_vocab.size], tf.float32)
            else:
                video["tags"] = _multi_hot(values[schema.KEY_TAGS], tag_table, self.tag_vocab.size)
        if kind == schema.RecordKind.TEST:
            video["category"] = tf.constant(-1, tf.int32)
        else:
            video["category"] = tf.cast(values[schema.KEY_CATEGORY][0], tf.int32)
        return video

    def decode_video_record(self, serialized: tf.Tensor, kind: schema.RecordKind, path: tf.Tensor | str = "",
                            index: tf.Tensor | int = -1, tag_table=None) -> dict[str, tf.Tensor]:
        """Decoded features (without tokens) of one serialized pointwise / pairwise / test record.

        ``path``/``index`` name the record in error messages; ``tag_table`` is ``self.tag_table()``
        (create it once per dataset, outside the ``tf.data`` function).
        """
        kind = schema.RecordKind(kind)
        if kind == schema.RecordKind.PAIR:
            raise ValueError("pair records are decoded with decode_pair_record")
        parsed = tf.io.parse_single_example(serialized, schema.video_feature_spec(kind))
        valid = _require_valid(_video_ok(parsed, kind, "", self.frame_dim), _record_problem(kind, self.frame_dim),
                               [serialized, tf.convert_to_tensor(path, tf.string),
                                tf.convert_to_tensor(index, tf.int64)])
        with tf.control_dependencies([valid]):
            return self._decode_values(parsed, kind, "", tag_table)

    def decode_pair_record(self, serialized: tf.Tensor, path: tf.Tensor | str = "", index: tf.Tensor | int = -1,
                           tag_table=None) -> dict:
        """``{"video_1": {...}, "video_2": {...}, "sim": float32 []}`` of one serialized pair record."""
        parsed = tf.io.parse_single_example(serialized, schema.pair_feature_spec())
        sim_values = parsed[schema.KEY_SIM].values
        sim = _first(sim_values, 0.0)
        fast_ok = [check for suffix in schema.PAIR_SUFFIXES
                   for check in _video_ok(parsed, schema.RecordKind.PAIR, suffix, self.frame_dim)]
        fast_ok += [tf.equal(tf.size(sim_values), 1), tf.logical_and(sim >= 0.0, sim <= 1.0)]  # NaN fails too
        valid = _require_valid(fast_ok, _record_problem(schema.RecordKind.PAIR, self.frame_dim),
                               [serialized, tf.convert_to_tensor(path, tf.string),
                                tf.convert_to_tensor(index, tf.int64)])
        with tf.control_dependencies([valid]):
            pair = {f"video{suffix}": self._decode_values(parsed, schema.RecordKind.PAIR, suffix, tag_table)
                    for suffix in schema.PAIR_SUFFIXES}
            pair["sim"] = tf.identity(sim)
        return pair


def _multi_hot(tag_ids: tf.Tensor, table, size: int) -> tf.Tensor:
    """float32 [size]: 1.0 in the column of every known tag (unknown tags dropped, duplicates once)."""
    if table is None:
        raise ValueError("decoding tags needs tag_table (VideoDecoder.tag_table()) when the decoder has a tag_vocab")
    columns = table.lookup(tf.cast(tag_ids, tf.int64))
    known = tf.boolean_mask(columns, columns >= 0)
    counts = tf.scatter_nd(known[:, None], tf.ones_like(known, dtype=tf.float32), [size])
    return tf.minimum(counts, 1.0)


# ----------------------------------------------------------------------------- files


def _resolve_files(files: Files) -> list[str]:
    """Paths (glob patterns expanded, sorted) of existing files; a clear error otherwise."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths: list[str] = []
    for item in files:
        item = os.fspath(item)
        if any(char in item for char in "*?[") and not tf.io.gfile.exists(item):  # an existing path is literal
            matches = sorted(tf.io.gfile.glob(item))
            if not matches:
                raise FileNotFoundError(f"{item}: no file matches this pattern")
            paths.extend(matches)
        else:
            if not tf.io.gfile.exists(item) or tf.io.gfile.isdir(item):
                raise FileNotFoundError(f"{item}: no such TFRecord file")
            paths.append(item)
    if not paths:
        raise ValueError("no input files given")
    return paths


def checked_file_records(path: tf.Tensor | str, size: tf.Tensor | int) -> tf.data.Dataset:
    """``(path, index, record)`` of one TFRecord file of ``size`` bytes, in file order.

    Fails -- naming the file and the record where reading stopped -- if the file is corrupt or
    truncated (see the module docstring). Use it as the ``interleave`` function over
    ``(path, size)`` pairs; ``size`` is ``os.path.getsize(path)``.
    """
    path = tf.convert_to_tensor(path, tf.string)
    size = tf.cast(size, tf.int64)
    records = tf.data.TFRecordDataset(path).ignore_errors()
    items = tf.data.Dataset.zip((records, tf.data.Dataset.from_tensors(False).repeat()))
    items = items.concatenate(tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True))))

    def step(state, item):
        index, offset = state
        record, is_end = item
        complete = tf.logical_or(tf.logical_not(is_end), tf.equal(offset, size))
        check = _require(complete, lambda: tf.strings.join([
            _ERROR_PREFIX, _where(path, index), ": corrupt or truncated TFRecord data: reading stopped at byte ",
            tf.strings.as_string(offset), " of ", tf.strings.as_string(size), " (record length or CRC check failed)"]))
        consumed = tf.cast(tf.strings.length(record), tf.int64) + RECORD_FRAMING_BYTES
        with tf.control_dependencies([check]):
            out_index = tf.where(is_end, tf.constant(-1, tf.int64), index)  # -1 marks the sentinel
        return (index + 1, offset + consumed), (path, out_index, record)

    items = items.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)
    return items.filter(lambda path, index, record: index >= 0)


def _indexed_records(paths: list[str], shuffle: bool, seed: int | None, num_parallel, deterministic: bool):
    """All files' records as ``(path, index, record)``, interleaved one record per file in turn."""
    sizes = [tf.io.gfile.stat(path).length for path in paths]
    files = tf.data.Dataset.from_tensor_slices((tf.constant(paths), tf.constant(sizes, tf.int64)))
    if shuffle and len(paths) > 1:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if len(paths) == 1:
        return files.flat_map(checked_file_records)
    return files.interleave(checked_file_records, cycle_length=min(len(paths), _MAX_PARALLEL_FILES),
                            block_length=1, num_parallel_calls=num_parallel, deterministic=deterministic)


def _records_pipeline(files: Files, batch_size: int, shuffle: bool, shuffle_buffer: int, repeat: bool,
                      seed: int | None, num_parallel):
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    deterministic = not shuffle or seed is not None
    dataset = _indexed_records(_resolve_files(files), shuffle, seed, num_parallel, deterministic)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset, deterministic


# ----------------------------------------------------------------------------- tf.data readers


def read_videos(files: Files, kind: schema.RecordKind, decoder: VideoDecoder, batch_size: int,
                shuffle: bool = False, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, repeat: bool = False,
                drop_remainder: bool = False, seed: int | None = None, num_parallel=AUTOTUNE) -> tf.data.Dataset:
    """Batched decoded feature dicts of pointwise / pairwise / test records.

    ``files``: a path, a glob pattern or a list of them. With ``shuffle`` the file order and the
    records (``shuffle_buffer`` serialized records) are shuffled every epoch; ``repeat`` repeats
    forever. The order is deterministic unless ``shuffle`` is on without a ``seed``.
    """
    kind = schema.RecordKind(kind)
    if kind == schema.RecordKind.PAIR:
        raise ValueError("pair records (fold shards) are read with read_pairs")
    dataset, deterministic = _records_pipeline(files, batch_size, shuffle, shuffle_buffer, repeat, seed, num_parallel)
    table = decoder.tag_table()

    def decode(path, index, record):
        return decoder.decode_video_record(record, kind, path, index, table)

    dataset = dataset.map(decode, num_parallel_calls=num_parallel, deterministic=deterministic)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if decoder.tokenizer is not None:
        def tokenize(batch):
            input_ids, attention_mask = decoder.tokenize(batch["title"], batch["asr_text"])
            return {**batch, "input_ids": input_ids, "attention_mask": attention_mask}

        dataset = dataset.map(tokenize, num_parallel_calls=num_parallel, deterministic=deterministic)
    return dataset.prefetch(AUTOTUNE)


def read_pairs(files: Files, decoder: VideoDecoder, batch_size: int, shuffle: bool = False, repeat: bool = False,
               drop_remainder: bool = False, seed: int | None = None, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
               num_parallel=AUTOTUNE) -> tf.data.Dataset:
    """Batched ``{"video_1": {...}, "video_2": {...}, "sim": [B] float32}`` from fold-shard pair records
    (arguments as ``read_videos``)."""
    dataset, deterministic = _records_pipeline(files, batch_size, shuffle, shuffle_buffer, repeat, seed, num_parallel)
    table = decoder.tag_table()

    def decode(path, index, record):
        return decoder.decode_pair_record(record, path, index, table)

    dataset = dataset.map(decode, num_parallel_calls=num_parallel, deterministic=deterministic)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if decoder.tokenizer is not None:
        def tokenize(batch):
            first, second = batch["video_1"], batch["video_2"]
            input_ids, attention_mask = decoder.tokenize(tf.concat([first["title"], second["title"]], axis=0),
                                                         tf.concat([first["asr_text"], second["asr_text"]], axis=0))
            rows = tf.shape(first["title"])[0]
            return {
                "video_1": {**first, "input_ids": input_ids[:rows], "attention_mask": attention_mask[:rows]},
                "video_2": {**second, "input_ids": input_ids[rows:], "attention_mask": attention_mask[rows:]},
                "sim": batch["sim"],
            }

        dataset = dataset.map(tokenize, num_parallel_calls=num_parallel, deterministic=deterministic)
    return dataset.prefetch(AUTOTUNE)


# ----------------------------------------------------------------------------- errors of the pipelines


def _unescape(text: str) -> str:
    """Undo the C escaping TensorFlow applies to string data in assertion messages."""
    try:
        return codecs.escape_decode(text.encode("utf-8"))[0].decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return text


@contextlib.contextmanager
def record_errors() -> Iterator[None]:
    """Turn the pipelines' in-graph record assertions into ``RecordError(path, index, problem)``."""
    try:
        yield
    except tf.errors.OpError as error:
        match = _ERROR_PATTERN.search(error.message or "")
        if match is None:
            raise
        raise RecordError(_unescape(match["path"]), int(match["index"]), _unescape(match["problem"])) from error


def iterate_checked(dataset: tf.data.Dataset) -> Iterator[Any]:
    """Iterate ``dataset`` eagerly, raising ``RecordError`` for bad records (see ``record_errors``)."""
    with record_errors():
        for element in dataset:
            yield element


# ----------------------------------------------------------------------------- Python readers


def _serialized_records(path: str) -> Iterator[tuple[int, bytes]]:
    """``(index, record)`` of one file; a corrupt/truncated file raises RecordError at the bad record."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such TFRecord file")
    index = 0
    iterator = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except tf.errors.DataLossError as error:
            found = _DATA_LOSS_PATTERN.search(error.message or "")
            detail = f" ({found.group(0)})" if found else ""
            raise RecordError(path, index, f"corrupt or truncated TFRecord data{detail}") from None
        yield index, record.numpy()
        index += 1


def count_records(path: str | os.PathLike) -> int:
    """Number of records in a TFRecord file (every record's length and CRC checked)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such TFRecord file")
    size = os.path.getsize(path)
    records = tf.data.TFRecordDataset(path).ignore_errors()
    count, consumed = records.reduce(
        (tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
        lambda state, record: (state[0] + 1,
                               state[1] + tf.cast(tf.strings.length(record), tf.int64) + RECORD_FRAMING_BYTES))
    count, consumed = int(count), int(consumed)
    if consumed != size:
        raise RecordError(path, count, f"corrupt or truncated TFRecord data: reading stopped at byte {consumed} "
                                       f"of {size} (record length or CRC check failed)")
    return count


def scan_video_ids(files: Files, seen: "UniqueIds | None" = None, batch_size: int = 1024) -> list[str]:
    """Every video id of ``files`` (pointwise / pairwise / test records), in file order, read without
    decoding anything else. RecordError (file, record) for a corrupt file, a record without exactly
    one id, an id that breaks ``ids.check_video_id`` (empty, whitespace, control characters, not
    UTF-8), or an id already seen (in these files or in ``seen``): an id names one video."""
    seen = UniqueIds() if seen is None else seen
    found: list[str] = []
    spec = {schema.KEY_ID: tf.io.VarLenFeature(tf.string)}
    for path in _resolve_files(files):
        records = checked_file_records(path, os.path.getsize(path)).batch(batch_size)

        def id_values(paths, index, record):
            values = tf.io.parse_example(record, spec)[schema.KEY_ID]
            return index, values.indices[:, 0], values.values

        with record_errors():
            for indices, rows, raw_ids in records.map(id_values).as_numpy_iterator():
                counts = np.bincount(rows, minlength=len(indices))
                for row, record_index in enumerate(indices.tolist()):
                    if counts[row] != 1:
                        raise RecordError(path, record_index, f"key 'id' holds {counts[row]} values, expected 1")
                for record_index, raw in zip(indices.tolist(), raw_ids.tolist()):
                    video_id = check_video_id(raw, path, record_index)
                    seen.add(video_id, path, record_index)
                    found.append(video_id)
    return found


def read_raw_videos(path: str | os.PathLike, kind: schema.RecordKind,
                    frame_dim: int = schema.FRAME_DIM) -> Iterator[dict]:
    """Raw videos of a pointwise / pairwise / test file, in writer.py's format:
    ``{"id", "title", "asr_text": str, "frames": float16 [n, dim], "tag_id": list[int], "category_id": int}``
    (no ``tag_id``/``category_id`` for test records). Raises RecordError on bad records."""
    kind = schema.RecordKind(kind)
    if kind == schema.RecordKind.PAIR:
        raise ValueError("pair records (fold shards) are read with read_raw_pairs")
    path = os.fspath(path)
    for index, record in _serialized_records(path):
        yield decode_raw_record(record, kind, path, index, frame_dim)


def read_raw_pairs(path: str | os.PathLike, frame_dim: int = schema.FRAME_DIM) -> Iterator[dict]:
    """Raw pair records: ``{"video_1": raw video, "video_2": raw video, "sim": float}``."""
    path = os.fspath(path)
    for index, record in _serialized_records(path):
        yield decode_raw_record(record, schema.RecordKind.PAIR, path, index, frame_dim)


def verify_file(path: str | os.PathLike, kind: schema.RecordKind | None = None,
                frame_dim: int = schema.FRAME_DIM) -> int:
    """Check a whole file and return its record count: lengths and CRCs always, and with ``kind``
    also every record's layout (keys, value types and counts, UTF-8 text, frame sizes, ``sim``)."""
    path = os.fspath(path)
    count = count_records(path)
    if kind is not None:
        kind = schema.RecordKind(kind)
        for index, record in _serialized_records(path):
            decode_raw_record(record, kind, path, index, frame_dim)
    return count
