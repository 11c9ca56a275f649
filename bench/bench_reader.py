"""Reader throughput: records/s of a bare TFRecord read vs. the full ``read_pairs`` pipeline.

Writes ``--records`` synthetic pair records (random float16 frames, about 20 per video,
random-CJK titles) to a temporary directory, then times, over ``--passes`` passes each:

* ``bare TFRecordDataset``: the file read, nothing else (the I/O ceiling);
* ``checked records``: the reader's per-file indexing + corruption check (path, index, bytes);
* ``read_pairs, no tokenizer``: parse, checks, frame sampling/decoding, tag multi-hot, batching;
* ``read_pairs, full``: the same plus batch tokenisation of both titles (what training reads).

    python -m bench.bench_reader --records 2000 [--passes 3] [--batch-size 32] [--kind bert]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from tfrecord_tools import reader, writer
from tfrecord_tools.tags import TagVocab
from tfrecord_tools.tokenization import build_vocab, load_tokenizer

_CJK_FIRST, _CJK_LAST = 0x4E00, 0x9FA5


def _title(rng: np.random.Generator, alphabet: np.ndarray) -> str:
    return "".join(rng.choice(alphabet, size=int(rng.integers(8, 31))))


def _video(rng: np.random.Generator, index: int, alphabet: np.ndarray, tag_ids: np.ndarray, frame_dim: int) -> dict:
    frames = int(np.clip(rng.normal(20, 6), 5, 32))
    return {
        "id": str(10**17 + index),
        "title": _title(rng, alphabet),
        "asr_text": "nan",
        "frames": rng.standard_normal((frames, frame_dim), dtype=np.float32).astype(np.float16),
        "tag_id": rng.choice(tag_ids, size=int(rng.integers(1, 9)), replace=False).tolist(),
        "category_id": int(rng.integers(10100, 10200)),
    }


def write_pairs(path: str, records: int, seed: int = 0, frame_dim: int = 1536) -> list[str]:
    """Write ``records`` random pair records; returns the titles (for the tokenizer vocabulary)."""
    rng = np.random.default_rng(seed)
    alphabet = np.array([chr(code) for code in rng.integers(_CJK_FIRST, _CJK_LAST, size=3000)])
    tag_ids = np.arange(1, 2001, dtype=np.int64) * 7
    titles: list[str] = []

    def serialized():
        for index in range(records):
            first = _video(rng, 2 * index, alphabet, tag_ids, frame_dim)
            second = _video(rng, 2 * index + 1, alphabet, tag_ids, frame_dim)
            titles.extend([first["title"], second["title"]])
            yield writer.serialize_pair(first, second, float(rng.integers(0, 21)) * 0.05)

    writer.write_records(path, serialized())
    return titles


def _rate(dataset_fn, records: int, passes: int) -> tuple[float, float]:
    """(records/s of the best pass, seconds of the first pass incl. start-up)."""
    best, first = 0.0, None
    for _ in range(passes):
        start = time.perf_counter()
        for _ in dataset_fn():
            pass
        elapsed = time.perf_counter() - start
        first = elapsed if first is None else first
        best = max(best, records / elapsed)
    return best, first


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="pair records to write")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--kind", choices=("bert", "roformer"), default="bert", help="tokenizer kind")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pairs.tfrecords")
        start = time.perf_counter()
        titles = write_pairs(path, args.records)
        write_s = time.perf_counter() - start
        size_mb = os.path.getsize(path) / 2**20
        build_vocab(titles, os.path.join(tmp, "tokenizer"), kind=args.kind)
        tokenizer = load_tokenizer(os.path.join(tmp, "tokenizer"), args.kind)
        vocab = TagVocab(np.arange(1, 2001, dtype=np.int64) * 7)
        full = reader.VideoDecoder(tokenizer, vocab)
        no_tokens = reader.VideoDecoder(None, vocab)
        batch = args.batch_size
        cases = [
            ("bare TFRecordDataset", lambda: tf.data.TFRecordDataset(path).batch(batch)),
            ("checked records", lambda: reader.checked_file_records(path, os.path.getsize(path)).batch(batch)),
            ("read_pairs, no tokenizer", lambda: reader.read_pairs(path, no_tokens, batch)),
            (f"read_pairs, full ({args.kind})", lambda: reader.read_pairs(path, full, batch)),
        ]
        print(f"{args.records} pair records, {size_mb:.1f} MiB, written in {write_s:.1f} s; "
              f"batch {batch}, best of {args.passes} passes, {os.cpu_count()} CPU cores")
        print(f"| {'pipeline':<28} | {'records/s':>10} | {'MiB/s':>8} | {'first pass s':>12} |")
        print(f"| {'-' * 28} | {'-' * 10}:| {'-' * 8}:| {'-' * 12}:|")
        for name, dataset_fn in cases:
            rate, first = _rate(dataset_fn, args.records, args.passes)
            print(f"| {name:<28} | {rate:>10.0f} | {rate * size_mb / args.records:>8.1f} | {first:>12.2f} |")


if __name__ == "__main__":
    main()
