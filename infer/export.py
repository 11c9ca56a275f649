"""SavedModel export: one trained run (or a whole ensemble) as one TensorFlow graph.

    python -m infer.export --run RUN/finetune/uniter/fold_00 --out exports/uniter [--output embedding]
                           [--checkpoint best] [--check DATA/test_a/test_a.tfrecords]

The export holds the model's weights and everything between a raw record and the vector, so a
service needs TensorFlow (plus ``tensorflow-text`` for the in-graph tokenizer) and nothing of this
project. Signatures (``B`` = batch):

``serving_default(examples: string [B])`` -> ``{"id": string [B], "embedding": float32 [B, D]}``
    serialized ``tf.train.Example`` in the official test layout (``id``, ``title``, ``asr_text``,
    ``frame_feature`` = float16 frames); frames sampled with the official rule (n <= 32 all, else
    stride n//32 from stride//2), the text tokenised in the graph (the title, or for a title + ASR
    model the pair; ``asr_text`` is then required, one value a record, "nan" for none).
``embed_frames_title(frames: float32 [B, T, 1536], frame_mask: float32 [B, T], title: string [B])``
    decoded frames (T <= 32, already sampled; mask 1.0 for real frames) and raw title strings; a
    title + ASR model reads each video as one without ASR (as a record whose ``asr_text`` is "nan").
``embed_frames_text(frames, frame_mask, title: string [B], asr: string [B])``
    the same with the raw ASR text too; only in exports holding a title + ASR model (a signature of
    its own rather than an input ``embed_frames_title`` would take or not depending on the model).
``embed_tokens(frames, frame_mask, input_ids: int32 [B, L], attention_mask: int32 [B, L])``
    the same with the text already tokenised by ``tfrecord_tools.tokenization.encode_titles``
    (``L`` = title_len; ``[CLS] title [SEP]`` or ``[CLS] title [SEP] asr [SEP]``, padded), for
    every tokenizer; only when all members share one tokenizer and text source.
``embed_text(title: string [B])`` -> ``{"embedding"}``: only for a text-aligned video tower
    (``--output video_embedding`` of mix_nextvlad): the text tower's vector of a query, encoded as
    a title alone (``[CLS] query [SEP]``, as ``search.query --text`` does with the run).

In-graph tokenisation uses tensorflow-text's BERT word splitter and ``WordpieceTokenizer`` (lower
case + accent stripping, CJK characters split, punctuation split, greedy longest-match WordPiece
with ``##`` pieces, words over 100 characters -> ``[UNK]``; invalid UTF-8 -> U+FFFD, dropped),
which reproduces the project's ``BertTokenizerFast`` on the data. A model with
``text.source=title+asr`` gets ``encode_titles(..., asr_texts)``'s pair: the ASR cut to its first
``2 * title_len`` characters, "nan" (``MISSING_ASR``) read as "", then the two segments cut as
``truncation="longest_first"`` cuts them (``longest_first_lengths``: with ``b = title_len - 3``
tokens to share, a segment of at most ``b // 2`` tokens stays whole and the other takes the rest,
else the longer gets ``b - b // 2`` and the shorter ``b // 2``, the ASR counting as the longer on
a tie), checked token for token against the fast tokenizer (``tests/infer/test_export_tokens.py``).
RoFormer's tokenizer first segments words with jieba, which has no TensorFlow op: a RoFormer
export has only the ``embed_tokens`` signature (tokenise with ``tfrecord_tools.tokenization``),
and ``--check``, which needs ``serving_default``, is refused with the reason.

Anything the model does inside its own ``call`` (e.g. in-graph frame standardisation or embedding
centring layers) is exported with it; the ensemble side (fold averaging, weights, SVD projection)
is baked by ``ensemble/export.py`` (``ensemble_final.py ... --export DIR``), which builds on the
same ``ExportModule``.

``videosim_export.json`` beside ``saved_model.pb`` records the signatures, the members (run
directories, checkpoint fingerprints), the output dimension and the export's *fingerprint*:
for one run it is the run's checkpoint fingerprint (``run_fingerprint``), so a search index built
from the run's embeddings accepts queries embedded by the export and vice versa.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from typing import Sequence

import numpy as np

from tfrecord_tools.atomic import atomic_directory
from tfrecord_tools.errors import DataError

EXPORT_META = "videosim_export.json"
EXPORT_FORMAT = "videosim-savedmodel"
IN_GRAPH_TOKENIZERS = ("bert",)
MAX_WORD_CHARS = 100  # BertTokenizerFast: a word of more than 100 characters becomes [UNK]


def run_fingerprint(checkpoint_path: str) -> str:
    """A hash of a checkpoint's weights: its ``.index`` file (tensor names, shapes and CRC32C of
    every tensor's bytes), so two checkpoints share a fingerprint only when their weights match."""
    path = os.fspath(checkpoint_path) + ".index"
    if not os.path.isfile(path):
        raise DataError(path, None, "checkpoint index not found")
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:24]


def load_export_meta(export_dir: str) -> dict:
    path = os.path.join(export_dir, EXPORT_META)
    if not os.path.isfile(path):
        raise DataError(export_dir, None, f"not an export directory (no {EXPORT_META}; write one with "
                                          f"python -m infer.export)")
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError) as error:
        raise DataError(path, None, f"unreadable ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise DataError(path, None, f"not a videosim export description (format {EXPORT_FORMAT!r})")
    return meta


# ------------------------------------------------------------------------------------ members


@dataclasses.dataclass(eq=False)
class Member:
    """One trained run inside an export: its model, output and tokenizer description."""

    run: object  # infer.embed.LoadedRun
    output: str

    @property
    def config(self):
        return self.run.config.model

    @property
    def fingerprint(self) -> str:
        return run_fingerprint(self.run.checkpoint)

    @property
    def tokenizer_kind(self) -> str:
        return self.config.text.kind

    @property
    def text_source(self) -> str:
        """What the model's text tokens hold: "title" or "title+asr" (the pair)."""
        return self.config.text.source

    def vocabulary(self) -> list[str]:
        vocab = self.run.decoder.tokenizer.get_vocab()
        ordered = sorted(vocab.items(), key=lambda item: item[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise DataError(self.run.run_dir, "tokenizer", "vocabulary ids are not 0..V-1")
        return [token for token, _ in ordered]

    def tokenizer_key(self) -> str:
        tokenizer = self.run.decoder.tokenizer
        text = "\n".join(self.vocabulary()) + f"|{self.tokenizer_kind}|{self.config.title_len}|" \
                                              f"{getattr(tokenizer, 'do_lower_case', True)}|{self.text_source}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def describe(self) -> dict:
        return {"run": self.run.run_dir, "checkpoint": self.run.checkpoint, "fingerprint": self.fingerprint,
                "family": self.config.name, "output": self.output, "tokenizer": self.tokenizer_kind,
                "text_source": self.text_source}


def load_member(run_dir: str, output: str = "embedding", checkpoint: str = "best") -> Member:
    from infer.embed import load_run

    if not os.path.isdir(run_dir):
        raise DataError(run_dir, None, "run directory not found")
    if not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise DataError(run_dir, None, "not a run directory (no config.json)")
    return Member(load_run(run_dir, checkpoint), output)


# ------------------------------------------------------------------------------------ graph pieces


def _tf():
    import tensorflow as tf

    return tf


def longest_first_lengths(first, second, budget: int):
    """How many tokens of each segment a ``[CLS] first [SEP] second [SEP]`` pair keeps.

    ``BertTokenizerFast(..., truncation="longest_first")`` as measured on the project's tokenizer
    (tests/infer/test_export_tokens.py), ``budget`` = max_len - 3. Both fit: both whole.
    Otherwise the shorter segment stays whole when it holds at most ``budget // 2`` tokens and the
    longer one takes the rest; else both are cut, the longer to ``budget - budget // 2`` and the
    shorter to ``budget // 2``; on a tie the second segment (the ASR) is the "longer" one.
    """
    tf = _tf()
    first, second = tf.cast(first, tf.int64), tf.cast(second, tf.int64)
    half = budget // 2
    fits = first + second <= budget
    short_keep = tf.minimum(tf.minimum(first, second), half)
    long_keep = budget - short_keep
    first_longer = first > second
    keep_first = tf.where(fits, first, tf.where(first_longer, long_keep, short_keep))
    keep_second = tf.where(fits, second, tf.where(first_longer, short_keep, long_keep))
    return keep_first, keep_second


def keep_leading(tokens, counts):
    """The first ``counts[i]`` tokens of each row of a ragged ``[B, None]`` tensor."""
    tf = _tf()
    positions = tf.ragged.range(tokens.row_lengths())
    return tf.ragged.boolean_mask(tokens, positions < tf.expand_dims(tf.cast(counts, tf.int64), 1))


def valid_utf8(texts):
    """``bytes.decode("utf-8", errors="replace")`` in the graph: each invalid sequence -> U+FFFD
    (the reader decodes record strings so; tensorflow-text's ops need valid UTF-8)."""
    tf = _tf()
    return tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)


def asr_segment(asr_texts, max_len: int):
    """The ASR text ``encode_titles`` pairs with the title: its first ``2 * max_len`` characters,
    the missing-ASR marker (``MISSING_ASR``, "nan") replaced by ""."""
    from tfrecord_tools.tokenization import MISSING_ASR

    tf = _tf()
    cut = tf.strings.substr(valid_utf8(asr_texts), 0, 2 * max_len, unit="UTF8_CHAR")
    return tf.where(tf.equal(cut, MISSING_ASR), tf.zeros_like(cut), cut)


def make_text_tokenizer(member: Member):
    """A tf.Module tokenising raw title (and ASR) strings in the graph like ``encode_titles`` with
    the member's BertTokenizerFast: ``[CLS] title [SEP]``, or for ``text.source=title+asr`` the pair
    ``[CLS] title [SEP] asr [SEP]``; ``(input_ids, attention_mask)`` int32 [B, title_len]."""
    import tensorflow_text as tf_text

    tf = _tf()
    tokenizer = member.run.decoder.tokenizer
    vocab = member.vocabulary()
    max_len = member.config.title_len
    reads_asr = member.config.text.source == "title+asr"
    if reads_asr and max_len < 3:
        raise DataError(member.run.run_dir, None, f"title_len {max_len} leaves no room for [CLS] title [SEP] asr [SEP]")

    class TextTokenizer(tf.Module):
        def __init__(self):
            super().__init__(name="text_tokenizer")
            init = tf.lookup.KeyValueTensorInitializer(tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64))
            self.table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)
            # lower_case=False: tensorflow-text's own lower casing folds with NFKC, which maps
            # full-width punctuation (！，？) to ASCII; BertTokenizerFast does not (see normalise).
            # BertTokenizer's own word splitter (not exported by tensorflow_text): the words are
            # needed to apply BertTokenizerFast's per-word length limit in characters
            from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer

            self.words = BasicTokenizer(lower_case=False)
            # the word length limit is applied in characters in `pieces`, so the byte limit here
            # only has to let every word of MAX_WORD_CHARS characters through
            self.wordpiece = tf_text.WordpieceTokenizer(self.table, suffix_indicator="##",
                                                        max_bytes_per_word=4 * MAX_WORD_CHARS,
                                                        token_out_type=tf.int64, unknown_token=tokenizer.unk_token)
            self.unk_token = tokenizer.unk_token
            self.lower_case = bool(getattr(tokenizer, "do_lower_case", True))
            self.reads_asr = reads_asr
            self.cls_id = int(tokenizer.cls_token_id)
            self.sep_id = int(tokenizer.sep_token_id)
            self.pad_id = int(tokenizer.pad_token_id)

        def normalise(self, texts):
            """BertNormalizer: clean text (invalid UTF-8 and control characters dropped, whitespace
            -> space), then with lower casing: NFD, combining marks dropped, lower case."""
            texts = tf.strings.regex_replace(valid_utf8(texts), r"[\t\n\r]", " ")
            texts = tf.strings.regex_replace(texts, r"[\p{Cc}\p{Cf}\x{FFFD}]", "")
            if self.lower_case:
                texts = tf_text.normalize_utf8(texts, "NFD")
                texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
                texts = tf.strings.lower(texts, encoding="utf-8")
            return texts

        def pieces(self, texts):
            """Wordpiece ids, ragged [B, None]. A word of more than MAX_WORD_CHARS characters is
            [UNK], as in BertTokenizerFast (tensorflow-text's own limit counts bytes)."""
            words = self.words.tokenize(self.normalise(texts))
            flat = words.flat_values
            too_long = tf.strings.length(flat, unit="UTF8_CHAR") > MAX_WORD_CHARS
            words = words.with_flat_values(tf.where(too_long, tf.fill(tf.shape(flat), self.unk_token), flat))
            return self.wordpiece.tokenize(words).merge_dims(-2, -1)

        def special(self, rows, token_id):
            """A [rows, 1] column of one special token ([CLS] or [SEP])."""
            return tf.fill([rows, 1], tf.constant(token_id, tf.int64))

        def padded(self, ids):
            """Ragged [B, <= max_len] ids -> (input_ids, attention_mask), int32 [B, max_len]."""
            input_ids = ids.to_tensor(default_value=self.pad_id, shape=[None, max_len])
            mask = tf.sequence_mask(ids.row_lengths(), max_len, dtype=tf.int32)
            return tf.cast(input_ids, tf.int32), mask

        def single(self, titles):
            """``[CLS] title [SEP]``, the title cut to max_len - 2 tokens."""
            pieces = self.pieces(titles)[:, :max_len - 2]
            rows = pieces.nrows()
            return self.padded(tf.concat([self.special(rows, self.cls_id), pieces,
                                          self.special(rows, self.sep_id)], axis=1))

        def pair(self, titles, asr_texts):
            """``[CLS] title [SEP] asr [SEP]``, cut longest-first to max_len tokens."""
            first, second = self.pieces(titles), self.pieces(asr_segment(asr_texts, max_len))
            keep_first, keep_second = longest_first_lengths(first.row_lengths(), second.row_lengths(), max_len - 3)
            rows = first.nrows()
            sep = self.special(rows, self.sep_id)
            return self.padded(tf.concat([self.special(rows, self.cls_id), keep_leading(first, keep_first), sep,
                                          keep_leading(second, keep_second), sep], axis=1))

        def __call__(self, titles, asr_texts=None):
            """The member's text tokens; a pair model given no ASR reads it as missing ("")."""
            if not self.reads_asr:
                return self.single(titles)
            if asr_texts is None:
                asr_texts = tf.zeros_like(titles)
            return self.pair(titles, asr_texts)

    return TextTokenizer()


def parse_test_examples(serialized, frame_dim: int, max_frames: int, with_asr: bool = False):
    """Serialized test-layout examples -> ``(ids, titles, asr_texts, frames [B, M, D], frame_mask [B, M],
    num_frames)``; without ``with_asr`` the ASR is not read (``asr_texts`` is all "").

    In-graph checks (an ``InvalidArgumentError`` naming the problem): one id/title (and with
    ``with_asr`` one asr_text) value a record, at least one frame, every frame ``2 * frame_dim`` bytes.
    """
    tf = _tf()
    text_keys = ("id", "title", "asr_text") if with_asr else ("id", "title")
    spec = {key: tf.io.VarLenFeature(tf.string) for key in text_keys + ("frame_feature",)}
    parsed = tf.io.parse_example(serialized, spec)
    checks = []
    for key in text_keys:
        counts = tf.RaggedTensor.from_sparse(parsed[key]).row_lengths()
        checks.append(tf.debugging.assert_equal(counts, tf.ones_like(counts),
                                                message=f"every record needs exactly one '{key}' value"))
    frames_rt = tf.RaggedTensor.from_sparse(parsed["frame_feature"])
    n = tf.cast(frames_rt.row_lengths(), tf.int32)
    checks.append(tf.debugging.assert_positive(n, message="a record holds no frames ('frame_feature' is empty)"))
    lengths = tf.strings.length(frames_rt.values)
    checks.append(tf.debugging.assert_equal(lengths, tf.fill(tf.shape(lengths), 2 * frame_dim),
                                            message=f"every frame must hold {2 * frame_dim} bytes "
                                                    f"({frame_dim} float16 values)"))
    with tf.control_dependencies(checks):
        ids = tf.sparse.to_dense(parsed["id"], default_value="")[:, 0]
        titles = tf.sparse.to_dense(parsed["title"], default_value="")[:, 0]
        asr_texts = tf.sparse.to_dense(parsed["asr_text"], default_value="")[:, 0] if with_asr else tf.zeros_like(ids)
        kept = tf.minimum(n, max_frames)
        stride = tf.maximum(n // max_frames, 1)
        offset = tf.where(n > max_frames, stride // 2, 0)
        steps = tf.range(max_frames, dtype=tf.int32)[None, :]
        valid = steps < kept[:, None]
        local = tf.where(valid, offset[:, None] + steps * stride[:, None], 0)
        starts = tf.cast(frames_rt.row_starts(), tf.int32)
        gathered = tf.gather(frames_rt.values, starts[:, None] + local)
        gathered = tf.where(valid, gathered, tf.fill(tf.shape(gathered), "\0" * (2 * frame_dim)))
        decoded = tf.io.decode_raw(gathered, tf.float16, little_endian=True)
        mask = tf.cast(valid, tf.float32)
        frames = tf.cast(decoded, tf.float32) * mask[..., None]
        frames = tf.ensure_shape(frames, [None, max_frames, frame_dim])
    return ids, titles, asr_texts, frames, mask, n


def pad_frames(frames, frame_mask, max_frames: int, frame_dim: int):
    """Decoded frames [B, T, D] (T <= max_frames) and mask [B, T] padded to max_frames."""
    tf = _tf()
    t = tf.shape(frames)[1]
    check = tf.debugging.assert_less_equal(t, max_frames, message=f"at most {max_frames} (sampled) frames a video")
    check_dim = tf.debugging.assert_equal(tf.shape(frames)[2], frame_dim, message=f"frames must be {frame_dim}-d")
    with tf.control_dependencies([check, check_dim]):
        frames = tf.pad(frames, [[0, 0], [0, max_frames - t], [0, 0]])
        frame_mask = tf.pad(frame_mask, [[0, 0], [0, max_frames - t]])
    frames = frames * frame_mask[..., None]
    return tf.ensure_shape(frames, [None, max_frames, frame_dim]), tf.ensure_shape(frame_mask, [None, max_frames])


def l2_normalize(x):
    tf = _tf()
    return x / tf.maximum(tf.norm(x, axis=1, keepdims=True), tf.constant(1e-12, x.dtype))


# ------------------------------------------------------------------------------------ the module


@dataclasses.dataclass
class Combination:
    """How member vectors become the export's vector.

    ``single``: the one member's output as is. ``ensemble``: per group (a model's folds) the mean
    of the L2-normalised member vectors, each first times its ``rotations`` matrix when given (fold
    averaging with the folds aligned, ``ensemble/fold_alignment.py``), then the rule: ``svd`` = each group
    L2-normalised times sqrt(weight), concatenated, times ``projection`` (TruncatedSVD components,
    [out_dim, concat_dim]); ``weighted`` = sum of weight x L2-normalised group vectors; ``mean``
    the same with weights 1/groups. Computed in float64, returned as float32.
    """

    kind: str = "single"
    groups: list[list[int]] = dataclasses.field(default_factory=list)
    weights: list[float] = dataclasses.field(default_factory=list)
    rule: str | None = None
    projection: np.ndarray | None = None
    rotations: list[np.ndarray | None] | None = None  # per member [D, D]; None: no rotation

    def apply(self, vectors: list):
        tf = _tf()
        if self.kind == "single":
            return tf.cast(vectors[0], tf.float32)
        averages = []
        for group in self.groups:
            normalised = [self._rotated(l2_normalize(tf.cast(vectors[i], tf.float64)), i) for i in group]
            averages.append(tf.add_n(normalised) / float(len(group)))
        if self.rule == "svd":
            blocks = [float(np.sqrt(w)) * l2_normalize(a) for w, a in zip(self.weights, averages)]
            concat = tf.concat(blocks, axis=1)
            out = tf.matmul(concat, tf.constant(self.projection.astype(np.float64)), transpose_b=True)
        elif self.rule in ("weighted", "mean"):
            weights = self.weights if self.rule == "weighted" else [1.0 / len(averages)] * len(averages)
            out = tf.add_n([w * l2_normalize(a) for w, a in zip(weights, averages)])
        else:
            raise ValueError(f"unknown ensemble rule {self.rule!r}")
        return tf.cast(out, tf.float32)

    def _rotated(self, unit, member: int):
        rotation = self.rotations[member] if self.rotations else None
        if rotation is None:
            return unit
        return _tf().matmul(unit, _tf().constant(np.asarray(rotation, dtype=np.float64)))

    def out_dim(self, member_dims: list[int]) -> int:
        if self.kind == "single":
            return member_dims[0]
        if self.rule == "svd":
            return int(self.projection.shape[0])
        return member_dims[0]


def _member_dims(members: Sequence[Member]) -> list[int]:
    from models.base import example_features
    from train.data import numeric_features

    dims = []
    for member in members:
        out = member.run.model(numeric_features(example_features(member.config, 1)), training=False)
        if member.output not in out:
            raise DataError(member.run.run_dir, None, f"model {member.config.name!r} has no output {member.output!r} "
                                                      f"(outputs: {', '.join(sorted(out))})")
        dims.append(int(out[member.output].shape[-1]))
    return dims


def not_in_graph_reasons(members: Sequence[Member]) -> list[str]:
    """Why the members' text cannot be tokenised in the graph, one line a member (none: it can);
    an ensemble's lines name the member's run."""
    named = len(members) > 1
    return [f"model {m.config.name!r}{f' ({m.run.run_dir})' if named else ''} uses the {m.tokenizer_kind} tokenizer, "
            f"whose jieba word segmentation has no TensorFlow op"
            for m in members if m.tokenizer_kind not in IN_GRAPH_TOKENIZERS]


def build_module(members: Sequence[Member], combination: Combination, text_output: str | None = None):
    """The tf.Module to save and its signatures (see the module docstring)."""
    tf = _tf()
    configs = [m.config for m in members]
    frame_dim, max_frames, title_len = configs[0].frame_dim, configs[0].max_frames, configs[0].title_len
    for member in members[1:]:
        c = member.config
        if (c.frame_dim, c.max_frames, c.title_len) != (frame_dim, max_frames, title_len):
            raise DataError(member.run.run_dir, None, f"frame_dim/max_frames/title_len {c.frame_dim}/{c.max_frames}/"
                                                      f"{c.title_len} differ from {members[0].run.run_dir}'s")
    in_graph = not not_in_graph_reasons(members)
    reads_asr = any(m.text_source == "title+asr" for m in members)
    keys = [m.tokenizer_key() for m in members]
    one_tokenizer = len(set(keys)) == 1
    if not in_graph and not one_tokenizer:
        raise DataError(members[0].run.run_dir, None, "members use different tokenizers (or text sources) and not "
                                                      "all of them can run in the graph (RoFormer/jieba): no "
                                                      "signature could take their text")
    models = [m.run.model for m in members]
    outputs = [m.output for m in members]

    class ExportModule(tf.Module):
        pass

    module = ExportModule(name="videosim_export")
    # Only the variables (and tokenizer tables) are tracked; the Keras models stay in closures.
    module.member_variables = [list(model.variables) for model in models]
    tokenizers = {}
    if in_graph:
        for key, member in zip(keys, members):
            if key not in tokenizers:
                tokenizers[key] = make_text_tokenizer(member)
        module.tokenizers = list(tokenizers.values())

    def embed(frames, frame_mask, tokens_of):
        num_frames = tf.cast(tf.reduce_sum(frame_mask, axis=1), tf.int32)
        vectors = []
        for model, output, key in zip(models, outputs, keys):
            input_ids, attention_mask = tokens_of(key)
            features = {"frames": frames, "frame_mask": frame_mask, "num_frames": num_frames,
                        "input_ids": input_ids, "attention_mask": attention_mask}
            vectors.append(model(features, training=False)[output])
        return combination.apply(vectors)

    def tokens_from_text(titles, asr_texts=None):
        """``tokens_of(key)`` for ``embed``: each tokenizer runs once however many members share it."""
        cache = {}

        def tokens_of(key):
            if key not in cache:
                cache[key] = tokenizers[key](titles, asr_texts)
            return cache[key]

        return tokens_of

    signatures = {}
    frame_spec = tf.TensorSpec([None, None, frame_dim], tf.float32, name="frames")
    mask_spec = tf.TensorSpec([None, None], tf.float32, name="frame_mask")
    if in_graph:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def embed_examples(examples):
            ids, titles, asr_texts, frames, mask, _ = parse_test_examples(examples, frame_dim, max_frames, reads_asr)
            return {"id": ids, "embedding": embed(frames, mask, tokens_from_text(titles, asr_texts))}

        @tf.function(input_signature=[frame_spec, mask_spec, tf.TensorSpec([None], tf.string, name="title")])
        def embed_frames_title(frames, frame_mask, title):
            frames, frame_mask = pad_frames(frames, frame_mask, max_frames, frame_dim)
            return {"embedding": embed(frames, frame_mask, tokens_from_text(title))}

        module.embed_examples = embed_examples
        module.embed_frames_title = embed_frames_title
        signatures["serving_default"] = embed_examples.get_concrete_function()
        signatures["embed_frames_title"] = embed_frames_title.get_concrete_function()
    if in_graph and reads_asr:
        @tf.function(input_signature=[frame_spec, mask_spec, tf.TensorSpec([None], tf.string, name="title"),
                                      tf.TensorSpec([None], tf.string, name="asr")])
        def embed_frames_text(frames, frame_mask, title, asr):
            frames, frame_mask = pad_frames(frames, frame_mask, max_frames, frame_dim)
            return {"embedding": embed(frames, frame_mask, tokens_from_text(title, asr))}

        module.embed_frames_text = embed_frames_text
        signatures["embed_frames_text"] = embed_frames_text.get_concrete_function()
    if one_tokenizer:
        @tf.function(input_signature=[frame_spec, mask_spec, tf.TensorSpec([None, title_len], tf.int32, name="input_ids"),
                                      tf.TensorSpec([None, title_len], tf.int32, name="attention_mask")])
        def embed_tokens(frames, frame_mask, input_ids, attention_mask):
            frames, frame_mask = pad_frames(frames, frame_mask, max_frames, frame_dim)
            return {"embedding": embed(frames, frame_mask, lambda key: (input_ids, attention_mask))}

        module.embed_tokens = embed_tokens
        signatures["embed_tokens"] = embed_tokens.get_concrete_function()
    if text_output is not None and in_graph:
        model, key = models[0], keys[0]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="title")])
        def embed_text(title):
            input_ids, attention_mask = tokenizers[key].single(title)  # a query is a title, as in search
            rows = tf.shape(title)[0]
            mask = tf.one_hot(tf.zeros([rows], tf.int32), max_frames, dtype=tf.float32)  # one zero frame
            features = {"frames": tf.zeros([rows, max_frames, frame_dim]), "frame_mask": mask,
                        "num_frames": tf.ones([rows], tf.int32), "input_ids": input_ids,
                        "attention_mask": attention_mask}
            return {"embedding": tf.cast(model(features, training=False)[text_output], tf.float32)}

        module.embed_text = embed_text
        signatures["embed_text"] = embed_text.get_concrete_function()
    return module, signatures, {"in_graph_tokenization": in_graph, "reads_asr": reads_asr, "frame_dim": frame_dim,
                                "max_frames": max_frames, "title_len": title_len}


def save_export(members: Sequence[Member], combination: Combination, out_dir: str, meta: dict,
                text_output: str | None = None, overwrite: bool = False) -> dict:
    """Build, save (atomically: a temporary directory renamed at the end) and describe an export."""
    tf = _tf()
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    dims = _member_dims(members)
    module, signatures, info = build_module(members, combination, text_output)
    with atomic_directory(out_dir) as staging:
        tf.saved_model.save(module, staging, signatures=signatures)
        full = {
            "format": EXPORT_FORMAT, "format_version": 1, **meta, "dim": combination.out_dim(dims),
            "signatures": sorted(signatures), "needs_tensorflow_text": info["in_graph_tokenization"],
            **info, "members": [m.describe() for m in members],
            "tensorflow": tf.__version__,
        }
        if not info["in_graph_tokenization"]:
            full["not_in_graph"] = not_in_graph_reasons(members)
            full["note"] = (f"{'; '.join(full['not_in_graph'])}: tokenise with the run's tokenizer "
                            f"(tfrecord_tools.tokenization) and call embed_tokens")
        with open(os.path.join(staging, EXPORT_META), "w", encoding="utf-8") as handle:
            json.dump(full, handle, indent=2)
            handle.write("\n")
    return full


def embed_output(run, files: Sequence[str], output: str, kind: str = "test", batch_size: int = 64
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of any output of a loaded run's model (``infer.embed`` gives ``embedding``)."""
    tf = _tf()
    from tfrecord_tools import reader, schema
    from train.data import numeric_features

    model = run.model
    fn = tf.function(reduce_retracing=True)(lambda f: model(f, training=False)[output])
    ids, chunks = [], []
    for batch in reader.iterate_checked(reader.read_videos(list(files), schema.RecordKind(kind), run.decoder,
                                                           batch_size)):
        ids.append(batch[schema.KEY_ID].numpy().astype(str))
        chunks.append(fn(numeric_features(batch)).numpy().astype(np.float32))
    if not chunks:
        raise DataError(", ".join(map(str, files)), None, "no records to embed")
    return np.concatenate(ids), np.concatenate(chunks)


def embed_with_export(export_dir: str, files: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the records in ``files`` through an export's serving signature."""
    tf = _tf()
    meta = load_export_meta(export_dir)
    if meta.get("needs_tensorflow_text"):
        import tensorflow_text  # noqa: F401
    signatures = tf.saved_model.load(export_dir).signatures
    if "serving_default" not in signatures:
        raise DataError(export_dir, None, f"no serving_default signature to embed records with: "
                                          f"{meta.get('note', 'see its ' + EXPORT_META)}")
    signature = signatures["serving_default"]
    ids, chunks = [], []
    for batch in tf.data.TFRecordDataset(list(files)).batch(batch_size):
        out = signature(examples=batch)
        ids.append(out["id"].numpy().astype(str))
        chunks.append(out["embedding"].numpy())
    return np.concatenate(ids), np.concatenate(chunks)


def export_run(run_dir: str, out_dir: str, output: str = "embedding", checkpoint: str = "best",
               overwrite: bool = False) -> dict:
    """Export one run's model (``python -m infer.export``)."""
    member = load_member(run_dir, output, checkpoint)
    text_output = None
    if output == "video_embedding":
        text_output = "text_embedding"
    meta = {"kind": "single", "family": member.config.name, "output": output,
            "fingerprint": member.fingerprint, "text_output": text_output}
    return save_export([member], Combination("single"), out_dir, meta, text_output, overwrite)


def check_export(export_dir: str, run_dir: str, files: Sequence[str], output: str = "embedding",
                 checkpoint: str = "best", atol: float = 1e-4) -> float:
    """Max |export - infer.embed| over ``files``; DataError above ``atol``."""
    from infer.embed import embed_videos, load_run

    meta = load_export_meta(export_dir)
    if "serving_default" not in meta.get("signatures", ()):
        why = "; ".join(meta.get("not_in_graph", ["its text is not tokenised in the graph"]))
        raise DataError(run_dir, None, f"cannot check the export {export_dir} on records: it has no serving_default "
                                       f"signature because {why} (only embed_tokens takes its text)")
    run = load_run(run_dir, checkpoint)
    if output == "embedding":
        ids, expected = embed_videos(run, files, "test", progress=False)
    else:
        ids, expected = embed_output(run, files, output)
    got_ids, got = embed_with_export(export_dir, files)
    if got_ids.tolist() != ids.tolist():
        raise DataError(export_dir, None, "the export returns other ids than infer.embed")
    error = float(np.abs(got - expected).max())
    if error > atol:
        raise DataError(export_dir, None, f"export differs from infer.embed by {error:.3g} (> {atol})")
    return error


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infer.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory (config.json, tokenizer/, best/ or final/)")
    parser.add_argument("--out", required=True, help="export directory to write (a SavedModel)")
    parser.add_argument("--output", default="embedding",
                        help="model output to export (default embedding; video_embedding: mix_nextvlad's "
                             "text-aligned video tower, exported with an embed_text signature)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "final"))
    parser.add_argument("--check", nargs="+", help="record files: verify export == infer.embed on them (1e-4)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        meta = export_run(args.run, args.out, args.output, args.checkpoint, args.overwrite)
        print(f"exported {meta['family']} ({meta['output']}, dim {meta['dim']}) -> {args.out}; signatures: "
              f"{', '.join(meta['signatures'])}")
        if not meta["in_graph_tokenization"]:
            print(f"note: {meta['note']}")
        if args.check:
            from tfrecord_tools import reader

            error = check_export(args.out, args.run, reader._resolve_files(args.check), args.output, args.checkpoint)
            print(f"check: max |export - infer.embed| = {error:.2e}")
    except (DataError, ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
