"""Search quality against the synthetic ground truth (``tfrecord_tools.synth.true_latents``).

    python -m bench.eval_search --data DATA [--test NAME=test.npz ...] [--pairs NAME=pairwise.npz ...]
                                [--text-run MIX_RUN] [--out bench/out/eval_search.json]

* ``--test``: embeddings of the test_a videos (a model's ``avg/test.npz``, a run's ``result.zip``, an
  ensemble's vectors, ...; or an export directory, which embeds the test_a records itself). Recall@10 of the true 10 nearest neighbours: for every test video, the
  share of its 10 nearest videos by true latent cosine that a flat index of the embeddings returns
  in its top 10 (chance: 10 / N).
* ``--pairs``: embeddings of the pairwise videos (the label graph, where near-duplicates exist), or
  an export directory that embeds ``pairwise.tfrecords``.
  True near-duplicates: pairs with latent cosine >= ``--true-dup`` (0.9), by the full latent and
  by the view a model can see (frames + title: blocks A, B, C). ``search.dedup``'s groups
  at each ``--thresholds`` T give predicted pairs (two videos in one group); precision and recall
  against the true pairs.
* ``--text-run``: a mix_nextvlad run (its InfoNCE-aligned towers). Every test video's title is a
  text query against a flat index of the test videos' ``video_embedding`` (frames only);
  recall@10 = share of titles whose own video is in the top 10.

The data set's preset and seed are read from ``DATA/synth_meta.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np


def load_set(spec: str, records: str):
    """``NAME=FILE.npz`` (embeddings), ``NAME=result.zip`` (a submission: ``result.json`` in a zip, or
    the json itself) or ``NAME=EXPORT_DIR`` (a SavedModel that embeds ``records``)."""
    from infer.embeddings_io import EmbeddingSet, load_embedding_set

    name, _, path = spec.partition("=")
    if not path:
        name, path = os.path.basename(spec), spec
    if os.path.isdir(path):
        from infer.export import embed_with_export

        ids, vectors = embed_with_export(path, [records])
        _, first = np.unique(ids, return_index=True)
        keep = np.sort(first)
        return name, EmbeddingSet(ids[keep], vectors[keep], None, path)
    if path.endswith((".zip", ".json")):
        from bench.truth_on_test import read_submission

        return name, read_submission(path)
    return name, load_embedding_set(path)


def flat_index(ids, vectors, tmp: str, name: str):
    from search.store import build_index, load_index
    from search.vectors import memory_vectors

    out = os.path.join(tmp, name.replace("/", "_"))
    build_index(memory_vectors(ids, vectors, name), out, "flat", overwrite=True)
    return load_index(out)


def true_neighbours(latents: np.ndarray, k: int) -> np.ndarray:
    sims = latents @ latents.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k]


def recall_at_k(truth_ids: list[str], latents: np.ndarray, embedding_set, tmp: str, name: str, k: int = 10) -> float:
    vectors = embedding_set.lookup(truth_ids)
    index = flat_index(np.asarray(truth_ids), vectors, tmp, name)
    truth = true_neighbours(latents, k)
    found = index.neighbours(vectors, k, exclude=list(truth_ids))
    position = {v: i for i, v in enumerate(truth_ids)}
    hits = [len({position[i] for i, _ in row} & set(t.tolist())) / k for row, t in zip(found, truth)]
    return float(np.mean(hits))


def dedup_scores(pair_ids: list[str], latents: np.ndarray, embedding_set, thresholds, true_dup: float, tmp: str,
                 name: str) -> dict:
    """Near-duplicate pairs found vs true ones: as direct pairs (cosine >= T) and as dedup groups
    (two videos in one group, i.e. with the transitive closure ``search.dedup`` applies), per T;
    plus the break-even point where the direct pairs are as many as the true pairs (P = R)."""
    from search.dedup import dedup_groups, near_duplicate_edges

    sims = latents @ latents.T
    upper = np.triu(np.ones_like(sims, dtype=bool), 1)
    true_pairs = set(zip(*(a.tolist() for a in np.nonzero(upper & (sims >= true_dup)))))
    index = flat_index(np.asarray(pair_ids), embedding_set.lookup(pair_ids), tmp, name)

    def score(predicted: set) -> dict:
        hit = len(predicted & true_pairs)
        return {"predicted_pairs": len(predicted), "precision": hit / len(predicted) if predicted else None,
                "recall": hit / len(true_pairs) if true_pairs else None}

    rows = []
    for threshold in thresholds:
        a, b, _ = near_duplicate_edges(index, threshold)
        direct = set(zip(a.tolist(), b.tolist()))
        groups = dedup_groups(index, threshold)["group"]
        grouped = set()
        for g in np.unique(groups[np.bincount(groups)[groups] > 1]):
            members = np.flatnonzero(groups == g).tolist()
            grouped.update((x, y) for i, x in enumerate(members) for y in members[i + 1:])
        rows.append({"threshold": threshold, "pairs": score(direct), "groups": score(grouped)})
    # break-even: the k most similar pairs by the embeddings, k = number of true pairs
    unit = index.index.reconstruct_n(0, len(index))
    model_sims = unit @ unit.T
    k = max(1, len(true_pairs))
    flat = np.where(upper, model_sims, -np.inf).ravel()
    top = np.argpartition(-flat, k - 1)[:k]
    best = set(zip(*(x.tolist() for x in np.unravel_index(top, model_sims.shape))))
    even = score(best)
    even["threshold"] = float(flat[top].min())
    return {"true_dup": true_dup, "true_pairs": len(true_pairs), "rows": rows, "break_even": even}


def text_to_video(test_ids: list[str], records: str, run_dir: str, tmp: str, k: int = 10) -> dict:
    from search.encoders import RunEncoder
    from tfrecord_tools import reader, schema

    encoder = RunEncoder(run_dir, "video_embedding")
    ids, videos = encoder.embed_records([records])
    titles = {v[schema.KEY_ID]: v[schema.KEY_TITLE] for v in reader.read_raw_videos(records, schema.RecordKind.TEST)}
    index = flat_index(ids, videos, tmp, "text_to_video")
    queries = [titles[i] for i in ids.tolist()]
    texts = np.concatenate([encoder.embed_text(queries[s:s + 256], "video_embedding")
                            for s in range(0, len(queries), 256)])
    found = index.neighbours(texts, k)
    hits = [i in {h for h, _ in row} for i, row in zip(ids.tolist(), found)]
    return {"recall_at_10": float(np.mean(hits)), "queries": len(hits), "chance": k / len(ids)}


def visible_view(latents: np.ndarray) -> np.ndarray:
    """The latent blocks a model reads at inference (frames: A+B, title: B+C), renormalised: the
    tags and ASR (block D) are not model inputs, so near-duplicates by the full latent can differ
    in what no model sees."""
    from tfrecord_tools import synth

    mask = np.zeros(latents.shape[1])
    mask[np.union1d(synth._view("frames"), synth._view("title"))] = 1.0
    x = latents * mask
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def views_ceiling(latents: np.ndarray, k: int = 10) -> float:
    """Text -> video recall@10 of the true latent *views*: a title shows blocks B+C of its video's
    latent, the frames A+B; cosine of the title view with every video's frame view."""
    from tfrecord_tools import synth

    def view(name):
        mask = np.zeros(latents.shape[1])
        mask[synth._view(name)] = 1.0
        x = latents * mask
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    sims = view("title") @ view("frames").T
    top = np.argsort(-sims, axis=1)[:, :k]
    return float(np.mean([i in row for i, row in enumerate(top)]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval_search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="synthetic data directory (synth_meta.json)")
    parser.add_argument("--test", nargs="*", default=[], help="NAME=embeddings of the test_a videos")
    parser.add_argument("--pairs", nargs="*", default=[], help="NAME=embeddings of the pairwise videos")
    parser.add_argument("--thresholds", default="0.8,0.85,0.9,0.95,0.97")
    parser.add_argument("--true-dup", type=float, default=0.9)
    parser.add_argument("--text-run", help="mix_nextvlad run directory for text -> video")
    parser.add_argument("--out", default="bench/out/eval_search.json")
    args = parser.parse_args(argv)

    from tfrecord_tools import synth

    with open(os.path.join(args.data, "synth_meta.json"), encoding="utf-8") as handle:
        meta = json.load(handle)
    truth = synth.true_latents_of(meta)
    test_ids, test_latents = truth["test"]
    pair_ids, pair_latents = truth["pairwise"]
    report = {"data": args.data, "test_videos": len(test_ids), "pairwise_videos": len(pair_ids),
              "oracle_true_latents": 1.0, "chance_recall_at_10": 10 / (len(test_ids) - 1),
              "nn_recall": {}, "dedup": {}}
    with tempfile.TemporaryDirectory(prefix="eval_search.") as tmp:
        test_records = os.path.join(args.data, "test_a", "test_a.tfrecords")
        pair_records = os.path.join(args.data, "pairwise", "pairwise.tfrecords")
        for spec in args.test:
            name, embedding_set = load_set(spec, test_records)
            report["nn_recall"][name] = recall_at_k(test_ids, test_latents, embedding_set, tmp, name)
            print(f"recall@10 of the true 10 NN, {name}: {report['nn_recall'][name]:.3f}", flush=True)
        thresholds = [float(t) for t in args.thresholds.split(",")]
        for spec in args.pairs:
            name, embedding_set = load_set(spec, pair_records)
            report["dedup"][name] = {}
            for truth_name, truth_latents in (("full latent", pair_latents),
                                              ("visible view (frames + title: blocks A, B, C)",
                                               visible_view(pair_latents))):
                result = dedup_scores(pair_ids, truth_latents, embedding_set, thresholds, args.true_dup, tmp, name)
                report["dedup"][name][truth_name] = result
                for row in result["rows"]:
                    print(f"dedup {name} vs {truth_name} T={row['threshold']}: pairs {row['pairs']}, groups "
                          f"{row['groups']} ({result['true_pairs']} true pairs)", flush=True)
                print(f"dedup {name} vs {truth_name} break-even: {result['break_even']}", flush=True)
        if args.text_run:
            records = os.path.join(args.data, "test_a", "test_a.tfrecords")
            report["text_to_video"] = text_to_video(test_ids, records, args.text_run, tmp)
            report["text_to_video"]["true_views_recall_at_10"] = views_ceiling(test_latents)
            print(f"text -> video recall@10: {report['text_to_video']}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
