"""What each part of a wide-path model contributes, on its fold's validation pairs.

    python -m bench.bench_wide_parts RUN [RUN ...] [--gates 0.5 1 2 3]

For each finetuned run with ``model.wide.enabled`` (its best checkpoint): the Spearman of the
cosines of the full embedding, of the wide path alone (the in-graph linear metric) and of the rest
(the deep part, embedding minus wide path), against the labels of the run's validation shard.
``--gates`` also scores ``deep part + g * unit(wide path)`` for each g: is the trained gate
(how much wide path the model adds to its unit-length deep part) where the validation pairs
would put it? (At g = the trained gate this is the full embedding.)

Two more columns say how much of the deep part is one fixed vector: ``deep shift``, the norm of
the deep part's mean over the validation videos divided by its mean norm (1: the same vector for
every video, a shift of the cosine's origin; 0: centred), and ``deep centred``, the Spearman of
the wide path plus the deep part minus that mean. Fold models whose deep parts carry such a shift
can put their cosines on different scales, so the out-of-fold score falls below the mean fold score;
removing the shift aligns them (docs/benchmarks.md, "the deep part is nearly a constant vector").
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def deep_shift(deep: list, wide: list, labels) -> dict:
    """``{"deep shift", "deep centred"}`` of the two sides' deep parts and wide paths ([n, d] each):
    |mean deep part| / mean |deep part| over both sides of every pair, and the Spearman of the cosines of
    wide path + deep part - that mean."""
    import numpy as np
    import scipy.stats

    from infer.strong_baselines import l2n

    stacked = np.concatenate(deep)
    mean = stacked.mean(axis=0)
    shift = float(np.linalg.norm(mean) / max(float(np.linalg.norm(stacked, axis=1).mean()), 1e-12))
    centred = [l2n(w + d - mean) for d, w in zip(deep, wide)]
    cosines = (centred[0] * centred[1]).sum(axis=1)
    return {"deep shift": shift, "deep centred": float(scipy.stats.spearmanr(cosines, labels).statistic)}


def parts_spearman(run_dir: str, batch_size: int = 128, gates=()) -> dict:
    """``{"full", "wide path", "deep part", "deep centred": Spearman, "deep shift", "gate": the model's
    gate (a ``train.wide_gate`` choice if the run has one), "gate_scan": {g: Spearman}}``."""
    import scipy.stats

    from infer.embed import load_run
    from train.wide_gate import pair_parts

    parts = pair_parts(load_run(run_dir), batch_size)
    gate = parts.trained_gate

    def spearman(cosines):
        return float(scipy.stats.spearmanr(cosines, parts.labels).statistic)

    wide_cosines = (parts.wide[0] * parts.wide[1]).sum(axis=1)
    out = {"full": spearman(parts.cosines(gate)), "wide path": spearman(wide_cosines),
           "deep part": spearman(parts.cosines(0.0)), "gate": gate}
    out.update(deep_shift(list(parts.deep), [gate * w for w in parts.wide], parts.labels))
    out["gate_scan"] = {float(g): spearman(parts.cosines(float(g))) for g in gates}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_wide_parts", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finetune run directories (config.json, best/)")
    parser.add_argument("--gates", nargs="*", type=float, default=(),
                        help="also score deep part + g * unit(wide path) for each g")
    args = parser.parse_args(argv)
    scan_heads = "".join(f" gate {g:g} |" for g in args.gates)
    print("| run | full model | wide path alone | deep part alone | deep shift | deep centred | gate |" + scan_heads)
    print("| --- | --- | --- | --- | --- | --- | --- |" + " --- |" * len(args.gates))
    for run_dir in args.runs:
        r = parts_spearman(run_dir, gates=args.gates)
        scanned = "".join(f" {r['gate_scan'][float(g)]:.4f} |" for g in args.gates)
        print(f"| {run_dir} | {r['full']:.3f} | {r['wide path']:.3f} | {r['deep part']:.3f} | {r['deep shift']:.2f} | "
              f"{r['deep centred']:.3f} | {r['gate']:.2f} |" + scanned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
