"""SavedModel export: one trained run (or a whole ensemble) as one TensorFlow graph.

    python -m infer.export --run RUN/finetune/uniter/fold_00 --out exports/uniter [--output embedding]
                           [--checkpoint best] [--check DATA/test_a/test_a.tfrecords]

The export holds the model's weights and everything between a raw record and the vector, so a
service needs TensorFlow (plus ``tensorflow-text`` for the in-graph tokenizer) and nothing of this
project. Signatures (``B`` = batch):

``serving_default(examples: string [B])`` -> ``{"id": string [B], "embedding": float32 [B, D]}``
    serialized ``tf.train.Example`` in the official test layout (``id``, ``title``, ``asr_text``,
    ``frame_feature`` = float16 frames); frames sampled with the official rule (n <= 32 all, else
    stride n//32 from stride//2), the title tokenised in the graph.
``embed_frames_title(frames: float32 [B, T, 1536], frame_mask: float32 [B, T], title: string [B])``
    decoded frames (T <= 32, already sampled; mask 1.0 for real frames) and raw title strings.
``embed_tokens(frames, frame_mask, input_ids: int32 [B, 32], attention_mask: int32 [B, 32])``
    the same with the title already tokenised (``[CLS] ... [SEP]``, padded), for every tokenizer.
``embed_text(title: string [B])`` -> ``{"embedding"}``: only for a text-aligned video tower
    (``--output video_embedding`` of mix_nextvlad): the text tower's vector of a query.

In-graph tokenisation uses tensorflow-text's ``BertTokenizer`` (lower case + accent stripping,
CJK characters split, punctuation split, greedy longest-match WordPiece with ``##`` pieces, words
over 100 bytes -> ``[UNK]``), which reproduces the project's ``BertTokenizerFast`` on the data.
RoFormer's tokenizer first segments words with jieba, which has no TensorFlow op: a RoFormer
export has only the ``embed_tokens`` signature (tokenise with ``tfrecord_tools.tokenization``).
So has, for now, a model whose text is the title + ASR pair (``text.source=title+asr``): the
pair's longest-first truncation is not reproduced in the graph yet.

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
MAX_WORD_BYTES = 100  # BertTokenizerFast: a word of more than 100 characters becomes [UNK]


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

    def vocabulary(self) -> list[str]:
        vocab = self.run.decoder.tokenizer.get_vocab()
        ordered = sorted(vocab.items(), key=lambda item: item[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise DataError(self.run.run_dir, "tokenizer", "vocabulary ids are not 0..V-1")
        return [token for token, _ in ordered]

    def tokenizer_key(self) -> str:
        tokenizer = self.run.decoder.tokenizer
        text = "\n".join(self.vocabulary()) + f"|{self.tokenizer_kind}|{self.config.title_len}|" \
                                              f"{getattr(tokenizer, 'do_lower_case', True)}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def describe(self) -> dict:
        return {"run": self.run.run_dir, "checkpoint": self.run.checkpoint, "fingerprint": self.fingerprint,
                "family": self.config.name, "output": self.output, "tokenizer": self.tokenizer_kind}


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


def make_title_tokenizer(member: Member):
    """A tf.Module tokenising title strings in the graph like the member's BertTokenizerFast."""
    import tensorflow_text as tf_text

    tf = _tf()
    tokenizer = member.run.decoder.tokenizer
    vocab = member.vocabulary()
    title_len = member.config.title_len

    class TitleTokenizer(tf.Module):
        def __init__(self):
            super().__init__(name="title_tokenizer")
            init = tf.lookup.KeyValueTensorInitializer(tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64))
            self.table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)
            # lower_case=False: tensorflow-text's own lower casing folds with NFKC, which maps
            # full-width punctuation (！，？) to ASCII; BertTokenizerFast does not (see normalise).
            self.bert = tf_text.BertTokenizer(self.table, suffix_indicator="##", max_bytes_per_word=MAX_WORD_BYTES,
                                              token_out_type=tf.int64, unknown_token=tokenizer.unk_token,
                                              lower_case=False)
            self.lower_case = bool(getattr(tokenizer, "do_lower_case", True))
            self.cls_id = int(tokenizer.cls_token_id)
            self.sep_id = int(tokenizer.sep_token_id)
            self.pad_id = int(tokenizer.pad_token_id)

        def normalise(self, titles):
            """BertNormalizer: clean text (control characters dropped, whitespace -> space), then
            with lower casing: NFD, combining marks dropped, lower case."""
            titles = tf.strings.regex_replace(titles, r"[\t\n\r]", " ")
            titles = tf.strings.regex_replace(titles, r"[\p{Cc}\p{Cf}\x{FFFD}]", "")
            if self.lower_case:
                titles = tf_text.normalize_utf8(titles, "NFD")
                titles = tf.strings.regex_replace(titles, r"\p{Mn}", "")
                titles = tf.strings.lower(titles, encoding="utf-8")
            return titles

        def __call__(self, titles):
            pieces = self.bert.tokenize(self.normalise(titles)).merge_dims(-2, -1)[:, :title_len - 2]
            rows = pieces.nrows()
            cls = tf.fill([rows, 1], tf.constant(self.cls_id, tf.int64))
            sep = tf.fill([rows, 1], tf.constant(self.sep_id, tf.int64))
            ids = tf.concat([cls, pieces, sep], axis=1)
            input_ids = ids.to_tensor(default_value=self.pad_id, shape=[None, title_len])
            mask = tf.sequence_mask(ids.row_lengths(), title_len, dtype=tf.int32)
            return tf.cast(input_ids, tf.int32), mask

    return TitleTokenizer()


def parse_test_examples(serialized, frame_dim: int, max_frames: int):
    """Serialized test-layout examples -> ``(ids, titles, frames [B, M, D], frame_mask [B, M], num_frames)``.

    In-graph checks (an ``InvalidArgumentError`` naming the problem): one id/title value a record,
    at least one frame, every frame ``2 * frame_dim`` bytes.
    """
    tf = _tf()
    spec = {key: tf.io.VarLenFeature(tf.string) for key in ("id", "title", "frame_feature")}
    parsed = tf.io.parse_example(serialized, spec)
    checks = []
    for key in ("id", "title"):
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
    return ids, titles, frames, mask, n


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
    of the L2-normalised member vectors (fold averaging), then the rule: ``svd`` = each group
    L2-normalised times sqrt(weight), concatenated, times ``projection`` (TruncatedSVD components,
    [out_dim, concat_dim]); ``weighted`` = sum of weight x L2-normalised group vectors; ``mean``
    the same with weights 1/groups. Computed in float64, returned as float32.
    """

    kind: str = "single"
    groups: list[list[int]] = dataclasses.field(default_factory=list)
    weights: list[float] = dataclasses.field(default_factory=list)
    rule: str | None = None
    projection: np.ndarray | None = None

    def apply(self, vectors: list):
        tf = _tf()
        if self.kind == "single":
            return tf.cast(vectors[0], tf.float32)
        averages = []
        for group in self.groups:
            normalised = [l2_normalize(tf.cast(vectors[i], tf.float64)) for i in group]
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
    # in-graph tokenisation covers the title alone; a title + ASR pair (text_source=title+asr) is
    # tokenised outside the graph (embed_tokens) until its pair truncation is reproduced in-graph
    in_graph = all(m.tokenizer_kind in IN_GRAPH_TOKENIZERS and m.config.text.source == "title"
                   for m in members)
    keys = [m.tokenizer_key() for m in members]
    one_tokenizer = len(set(keys)) == 1
    if not in_graph and not one_tokenizer:
        raise DataError(members[0].run.run_dir, None, "members use different tokenizers and not all of them can "
                                                      "run in the graph (RoFormer/jieba): no signature could take "
                                                      "the title")
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
                tokenizers[key] = make_title_tokenizer(member)
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

    def tokens_from_titles(titles):
        cache = {}

        def tokens_of(key):
            if key not in cache:
                cache[key] = tokenizers[key](titles)
            return cache[key]

        return tokens_of

    signatures = {}
    frame_spec = tf.TensorSpec([None, None, frame_dim], tf.float32, name="frames")
    mask_spec = tf.TensorSpec([None, None], tf.float32, name="frame_mask")
    if in_graph:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def embed_examples(examples):
            ids, titles, frames, mask, _ = parse_test_examples(examples, frame_dim, max_frames)
            return {"id": ids, "embedding": embed(frames, mask, tokens_from_titles(titles))}

        @tf.function(input_signature=[frame_spec, mask_spec, tf.TensorSpec([None], tf.string, name="title")])
        def embed_frames_title(frames, frame_mask, title):
            frames, frame_mask = pad_frames(frames, frame_mask, max_frames, frame_dim)
            return {"embedding": embed(frames, frame_mask, tokens_from_titles(title))}

        module.embed_examples = embed_examples
        module.embed_frames_title = embed_frames_title
        signatures["serving_default"] = embed_examples.get_concrete_function()
        signatures["embed_frames_title"] = embed_frames_title.get_concrete_function()
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
            input_ids, attention_mask = tokenizers[key](title)
            rows = tf.shape(title)[0]
            mask = tf.one_hot(tf.zeros([rows], tf.int32), max_frames, dtype=tf.float32)  # one zero frame
            features = {"frames": tf.zeros([rows, max_frames, frame_dim]), "frame_mask": mask,
                        "num_frames": tf.ones([rows], tf.int32), "input_ids": input_ids,
                        "attention_mask": attention_mask}
            return {"embedding": tf.cast(model(features, training=False)[text_output], tf.float32)}

        module.embed_text = embed_text
        signatures["embed_text"] = embed_text.get_concrete_function()
    return module, signatures, {"in_graph_tokenization": in_graph, "frame_dim": frame_dim,
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
            full["note"] = ("a member's text cannot be tokenised in the graph (RoFormer: jieba word segmentation "
                            "has no TensorFlow op; text_source=title+asr: pair truncation not reproduced): "
                            "tokenise with the run's tokenizer (tfrecord_tools) and call embed_tokens")
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
    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
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
