"""What each part of a wide-path model contributes, on its fold's validation pairs.

    python -m bench.bench_wide_parts RUN [RUN ...] [--gates 0.5 1 2 3] [--test-data DATA]

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

``--test-data DATA`` (a synthetic data set, ideally made with ``--test-graph``) scores the same parts
on labelled pairs of unseen videos instead: ``bench.truth_on_test``'s sample of DATA's test videos,
each cell the Spearman against the drawn labels and, in brackets, against the truth on all pairs. The
validation pairs chose the checkpoint and the gate; these did not (docs/benchmarks.md, "The deep part
on unseen labelled pairs").
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

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


def test_video_parts(run, files, batch_size: int = 128) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(ids, deep parts, unit wide paths)`` of the test videos of ``files`` under a loaded run
    (``infer.embed.load_run``): the embedding is ``deep + gate * wide``, as in
    `train.wide_gate.pair_parts`."""
    from tfrecord_tools import reader, schema
    from train.data import numeric_features
    from train.wide_gate import embedding_parts

    model = run.model
    if getattr(model, "wide_path", None) is None:
        raise ValueError(f"{run.run_dir}: the model has no wide path (model.wide.enabled=false)")
    gate = float(model.wide_path.gate.numpy())
    ids, deep, wide = [], [], []
    for batch in reader.iterate_checked(reader.read_videos(list(files), schema.RecordKind.TEST, run.decoder,
                                                           batch_size)):
        deep_part, unit_wide = embedding_parts(model, numeric_features(batch), gate)
        ids += [v.decode("utf-8") for v in batch[schema.KEY_ID].numpy()]
        deep.append(deep_part)
        wide.append(unit_wide)
    return ids, np.concatenate(deep), np.concatenate(wide)


def test_parts(run_dir: str, data: str, max_videos: int = 5000, seed: int = 0, batch_size: int = 128,
               gates=()) -> dict:
    """The full model, its wide path alone and its deep part alone on the labelled test pairs of a
    synthetic ``data`` set (`bench.truth_on_test.labelled_sample`: the test graph's edges where the
    data has one): ``{part: {"labels": Spearman vs the drawn labels, "truth": vs the truth on all
    pairs of the videos used}, "gate": the run's gate, "gate_scan": {g: the same for deep + g * wide}}``.
    Where validation pairs say the deep part helps and unseen labelled pairs say it does not, this
    is the measurement (docs/benchmarks.md, "The deep part on unseen labelled pairs")."""
    from bench import truth_on_test
    from infer.embed import load_run
    from infer.strong_baselines import l2n
    from tfrecord_tools import layout

    drawn = truth_on_test.labelled_sample(data, max_videos, seed)
    files = sorted(glob.glob(os.path.join(data, layout.TEST_DIR, "*" + layout.RECORD_SUFFIX)))
    if not files:
        raise FileNotFoundError(f"{data}: no {layout.TEST_DIR}/*{layout.RECORD_SUFFIX} (the test videos)")
    run = load_run(run_dir)
    ids, deep, wide = test_video_parts(run, files, batch_size)
    index = {key: row for row, key in enumerate(ids)}
    missing = [key for key in drawn.truth.ids if key not in index]
    if missing:
        raise ValueError(f"{data}: {len(missing)} test video(s) of the synthetic truth are not in its test records, "
                         f"first {missing[0]!r}")
    order = np.array([index[key] for key in drawn.truth.ids])[drawn.rows]
    deep, wide = deep[order], wide[order]
    gate = float(run.model.wide_path.gate.numpy())

    def score(vectors):  # the scorer's cosines assume unit rows
        return drawn.scorer.scores(l2n(vectors))[0]

    return {"full": score(deep + gate * wide), "wide path": score(wide), "deep part": score(deep), "gate": gate,
            "labelled_pairs": int(len(drawn.sample)), "sample": "graph" if drawn.graph else "bins",
            "gate_scan": {float(g): score(deep + float(g) * wide) for g in gates}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_wide_parts", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finetune run directories (config.json, best/)")
    parser.add_argument("--gates", nargs="*", type=float, default=(),
                        help="also score deep part + g * unit(wide path) for each g")
    parser.add_argument("--test-data", metavar="DATA",
                        help="a synthetic data set (its synth_meta.json and test_a/): score the parts on its labelled "
                             "test pairs instead (the test graph's edges where it has one; bench.truth_on_test's "
                             "sample), against the labels and against the truth on all pairs")
    parser.add_argument("--max-videos", type=int, default=5000, help="test videos used with --test-data")
    args = parser.parse_args(argv)
    if args.test_data:
        return _print_test_parts(args)
    scan_heads = "".join(f" gate {g:g} |" for g in args.gates)
    print("| run | full model | wide path alone | deep part alone | deep shift | deep centred | gate |" + scan_heads)
    print("| --- | --- | --- | --- | --- | --- | --- |" + " --- |" * len(args.gates))
    for run_dir in args.runs:
        r = parts_spearman(run_dir, gates=args.gates)
        scanned = "".join(f" {r['gate_scan'][float(g)]:.4f} |" for g in args.gates)
        print(f"| {run_dir} | {r['full']:.3f} | {r['wide path']:.3f} | {r['deep part']:.3f} | {r['deep shift']:.2f} | "
              f"{r['deep centred']:.3f} | {r['gate']:.2f} |" + scanned)
    return 0


def _print_test_parts(args) -> int:
    scan_heads = "".join(f" gate {g:g} |" for g in args.gates)
    print(f"labelled test pairs of {args.test_data}: Spearman vs the labels (vs the truth on all pairs)")
    print("| run | pairs | full model | wide path alone | deep part alone | gate |" + scan_heads)
    print("| --- | --- | --- | --- | --- | --- |" + " --- |" * len(args.gates))

    def cell(score):
        return f"{score['labels']:.4f} ({score['truth']:.4f})"

    for run_dir in args.runs:
        r = test_parts(run_dir, args.test_data, args.max_videos, gates=args.gates)
        scanned = "".join(f" {cell(r['gate_scan'][float(g)])} |" for g in args.gates)
        print(f"| {run_dir} | {r['labelled_pairs']} ({r['sample']}) | {cell(r['full'])} | {cell(r['wide path'])} | "
              f"{cell(r['deep part'])} | {r['gate']:.2f} |" + scanned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
