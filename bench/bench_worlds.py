"""The robustness suite of synthetic worlds: how each world looks to untrained baselines.

    python -m bench.bench_worlds [--preset demo] [--seed 0] [--worlds demo,continuous,...]
                                 [--label-graph label.tsv [--limit-pairs K]] [--work DIR] [--keep]
                                 [--markdown OUT]

For every world of ``tfrecord_tools.synth.WORLDS``: generate the data set (``synth.generate`` with
``world=``; wall and CPU time of this process), then score on its labelled pairs (one global
Spearman, as the official scorer):

  oracle          the true latent similarity (``synth_meta.json``'s ``oracle_spearman``)
  raw frame       cosine of the two videos' mean frames (of the officially sampled frames)
  centred frame   the same after subtracting the data set's mean frame (mean over the pairwise
                  videos' mean frames): numpy only, no training
  title tf-idf    ``infer.evaluate.title_tfidf_baseline`` (character 1-2-gram TF-IDF + LSA)
  tag jaccard     Jaccard similarity of the two videos' tag sets (what tag supervision can offer)

``--label-graph`` is used by the ``real_graph`` world only (its first ``--limit-pairs`` lines,
default the preset's pair count); without it that world uses the generator's own graph.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

from infer.embeddings_io import EmbeddingSet
from infer.evaluate import mean_frame_baseline, spearman, spearman_of, title_tfidf_baseline
from tfrecord_tools import schema, synth
from tfrecord_tools.labels import read_labels
from tfrecord_tools.reader import read_raw_videos, sample_frame_indices

COLUMNS = ("world", "synth s", "synth cpu s", "pointwise", "pairs", "oracle", "raw frame", "centred frame",
           "title tf-idf", "tag jaccard")


def pairwise_modalities(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """id -> mean of the officially sampled frames, id -> title, id -> tag set, for a pairwise file."""
    mean_frames, titles, tags = {}, {}, {}
    for video in read_raw_videos(path, schema.RecordKind.PAIRWISE):
        frames = np.asarray(video["frames"], dtype=np.float32)
        mean_frames[video["id"]] = frames[sample_frame_indices(len(frames), schema.MAX_FRAMES)].mean(axis=0)
        titles[video["id"]] = video["title"]
        tags[video["id"]] = frozenset(int(t) for t in video[schema.KEY_TAGS])
    return mean_frames, titles, tags


def tag_jaccard(tags: dict[str, frozenset], labels) -> float:
    """Spearman of the pairs' tag-set Jaccard similarity against the labels."""
    jaccard = np.array([len(tags[q] & tags[c]) / max(len(tags[q] | tags[c]), 1)
                        for q, c in zip(labels.query, labels.candidate)])
    return spearman_of(jaccard, labels.score)


def measure_world(world: str, work: str, preset: str = "demo", seed: int = 0, label_graph: str | None = None,
                  limit_pairs: int | None = None) -> dict:
    """Generate one world under ``work/world`` and score the untrained baselines on its pairs."""
    out = os.path.join(work, world)
    graph = label_graph if world == "real_graph" else None
    limit = (limit_pairs or synth.PRESETS[preset].pairs) if graph else None
    start, cpu_start = time.perf_counter(), time.process_time()
    meta = synth.generate(out, preset, seed, label_graph=graph, limit_pairs=limit, overwrite=True,
                          progress=False, world=world)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    labels = read_labels(os.path.join(out, "pairwise", "label.tsv"))
    mean_frames, titles, tags = pairwise_modalities(os.path.join(out, "pairwise", "pairwise.tfrecords"))
    raw = mean_frame_baseline(mean_frames)
    centred = EmbeddingSet(raw.ids, raw.embeddings - raw.embeddings.mean(axis=0, keepdims=True), None,
                           "centred_mean_frame")
    return {
        "world": world, "synth s": seconds, "synth cpu s": cpu_seconds, "pointwise": meta["counts"]["pointwise_videos"],
        "pairs": meta["counts"]["pairs"], "oracle": meta["oracle_spearman"],
        "raw frame": spearman(raw, labels), "centred frame": spearman(centred, labels),
        "title tf-idf": spearman(title_tfidf_baseline(titles, seed=seed), labels),
        "tag jaccard": tag_jaccard(tags, labels),
        "label_graph": meta["label_graph"]["path"] if meta["label_graph"] else None,
    }


def table(rows: Sequence[dict]) -> str:
    """A markdown table of the measured rows."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [row["world"] + (" (label graph)" if row.get("label_graph") else ""), f"{row['synth s']:.1f}",
                 f"{row['synth cpu s']:.1f}", f"{row['pointwise']:,}", f"{row['pairs']:,}"]
        cells += [f"{row[name]:.3f}" for name in COLUMNS[5:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_worlds", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="demo", choices=sorted(synth.PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worlds", default=",".join(synth.WORLDS), help="comma-separated world names (random-<n>: a world with every knob drawn at random)")
    parser.add_argument("--label-graph", help="label.tsv whose structure the real_graph world reuses")
    parser.add_argument("--limit-pairs", type=int,
                        help="with --label-graph: its first K lines (default: the preset's pairs)")
    parser.add_argument("--work", help="directory for the generated data sets (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data sets")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    worlds = [name.strip() for name in args.worlds.split(",") if name.strip()]
    if not worlds:
        parser.error(f"--worlds: none given; choose from {sorted(synth.WORLDS)} or random-<n>")
    for name in worlds:
        try:
            synth.world_spec(name)
        except ValueError as error:
            parser.error(f"--worlds: {error}")
    if args.label_graph and not os.path.isfile(args.label_graph):
        parser.error(f"--label-graph: no such file {args.label_graph}")
    work = args.work or tempfile.mkdtemp(prefix="bench_worlds_")
    os.makedirs(work, exist_ok=True)
    rows = []
    try:
        for world in worlds:
            rows.append(measure_world(world, work, args.preset, args.seed, args.label_graph, args.limit_pairs))
            print(f"{world}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in rows[-1].items() if k != "world"), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = table(rows)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
