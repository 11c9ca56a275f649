"""Student vs best member vs ensemble: Spearman, parameters and embedding throughput.

    python -m bench.bench_distill --run RUN --export RUN/ensemble_export --student RUN/distill/uniter
                                  --data DATA [--fold 0] [--out bench/out/distill.json]

Spearman is scored on the validation pairs of ``--fold`` (its ``val.npz`` pairs), which none of the
scored models saw labels of when the ensemble holds only that fold's member runs: each member's
fold model, the ensemble (the export's vectors of those videos) and the student (trained on the
export's vectors of every video, no labels). Throughput: videos/s of each model's SavedModel
(``serving_default`` on the serialized test_a records: parsing, frame decoding, in-graph
tokenisation and the network; batch 64, best of 2 passes, this CPU). Parameters: the sum over the
ensemble's member runs.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def throughput(export_dir: str, records: str, batch: int = 64, passes: int = 2) -> float:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
    batches = [b for b in tf.data.TFRecordDataset(records).batch(batch)]
    signature(examples=batches[0])  # warm up
    best = 0.0
    for _ in range(passes):
        start = time.perf_counter()
        count = sum(int(signature(examples=b)["embedding"].shape[0]) for b in batches)
        best = max(best, count / (time.perf_counter() - start))
    return best


def spearman_of_export(export_dir: str, files, pairs) -> float:
    from infer.embeddings_io import EmbeddingSet
    from infer.evaluate import spearman
    from infer.export import embed_with_export

    ids, vectors = embed_with_export(export_dir, files)
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)
    return float(spearman(EmbeddingSet(ids[keep], vectors[keep]), pairs))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_distill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="ensemble run (ensemble_report.json, embeddings/, finetune/)")
    parser.add_argument("--export", required=True, help="the ensemble's export (ensemble_final.py --export)")
    parser.add_argument("--student", required=True, help="student run directory (train.distill)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--out", default="bench/out/distill.json")
    args = parser.parse_args(argv)

    from infer.embed import load_run
    from infer.embeddings_io import load_embedding_set
    from infer.evaluate import spearman
    from infer.export import export_run, load_export_meta

    meta = load_export_meta(args.export)
    members = meta["members"]
    pairwise = [os.path.join(args.data, "pairwise", "pairwise.tfrecords")]
    test_records = os.path.join(args.data, "test_a", "test_a.tfrecords")
    fold = f"fold_{args.fold:02d}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_distill.") as tmp:
        pairs = None
        member_rows = []
        for member in members:
            model = os.path.basename(os.path.dirname(member["run"]))
            if os.path.basename(member["run"]) != fold:
                continue
            val = load_embedding_set(os.path.join(args.run, "embeddings", model, fold, "val.npz"))
            pairs = val.pairs
            export = os.path.join(tmp, model)
            export_run(member["run"], export)
            member_rows.append({"model": f"member: {model} ({fold})", "spearman": float(spearman(val, val.pairs)),
                                "params": int(load_run(member["run"]).model.count_params()),
                                "videos_per_s": throughput(export, test_records)})
        if pairs is None:
            raise SystemExit(f"the export has no member run of {fold}")
        best = max(member_rows, key=lambda row: row["spearman"])
        rows.extend(member_rows)
        ensemble_params = sum(int(load_run(m["run"]).model.count_params()) for m in members)
        rows.append({"model": f"ensemble ({len(members)} member runs, {meta['ensemble']['rule']})",
                     "spearman": spearman_of_export(args.export, pairwise, pairs), "params": ensemble_params,
                     "videos_per_s": throughput(args.export, test_records)})
        student_export = os.path.join(tmp, "student")
        export_run(args.student, student_export)
        student = load_run(args.student)
        rows.append({"model": f"student: {student.config.model.name} (distilled)",
                     "spearman": spearman_of_export(student_export, pairwise, pairs),
                     "params": int(student.model.count_params()),
                     "videos_per_s": throughput(student_export, test_records)})
    ensemble_row, student_row = rows[-2], rows[-1]
    report = {"fold": args.fold, "pairs": len(pairs), "rows": rows, "best_member": best["model"],
              "student_minus_best_member": student_row["spearman"] - best["spearman"],
              "student_cost_vs_ensemble": ensemble_row["videos_per_s"] / student_row["videos_per_s"]}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print(f"| model | Spearman (fold {args.fold}, {len(pairs)} pairs) | parameters | videos/s |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['model']} | {row['spearman']:.4f} | {row['params']:,} | {row['videos_per_s']:.0f} |")
    print(f"\nstudent - best member: {report['student_minus_best_member']:+.4f}; student inference cost = "
          f"{report['student_cost_vs_ensemble']:.3f} x the ensemble's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
