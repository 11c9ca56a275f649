"""In-graph decoding of the official record layout (what the ``tf.data`` readers run per record).

* frame sampling: the official rule (`sample_frame_indices`, `sample_frame_indices_tf`);
* in-graph checks: a handful of boolean ops on what the parser returned anyway; only a record
  that fails them is handed to the Python validator (`tfrecord_tools.validation`), whose message
  an in-graph assertion then carries (see the `tfrecord_tools.reader` docstring);
* frames: `decode_frames` (checked, sampled, padded, with a mask);
* the decoder: `VideoDecoder`, a record -> the decoded feature dict of docs/architecture.md.

`tfrecord_tools.reader` builds the pipelines on it and re-exports its public names.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfrecord_tools import schema
from tfrecord_tools.errors import RecordError
from tfrecord_tools.ids import ID_PATTERN
from tfrecord_tools.tags import TagVocab
from tfrecord_tools.tokenization import TEXT_SOURCES, encode_titles
from tfrecord_tools.validation import _frame_problem, decode_raw_record

_ERROR_PREFIX = "RecordError: "
# Parallel tf.data maps call the tokenizer from several threads; a fast tokenizer may re-configure
# its Rust backend (truncation/padding) inside a call, so calls are serialised (each batch call
# still uses the backend's own threads).
_TOKENIZER_LOCK = threading.Lock()


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
