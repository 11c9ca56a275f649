"""The bar of issue 9 for runs already made: one verdict row per run directory of ``demo.sh``.

    python -m bench.verdict_table [NAME=]RUN [[NAME=]RUN ...] [--folds 0 1] [--draws 2000] [--markdown PATH]
                                  [--ceiling C.json ...] [--test-truth]

``bench.bench_quality`` runs the worlds and ends with this table; runs made by hand (``WORLD=W
SEED=S RUN=R sh demo.sh``, as the sessions' reruns are) get the same verdicts here, from each run's
``ensemble_report.json`` and its per-fold embeddings: the best single model against the best strong
baseline with a paired-bootstrap interval of the margin (``bench.margin_interval``), the ensemble
against its best member, the largest out-of-fold − mean-fold gap, and whether the draw meets the bar
("yes, within noise" where the margin's interval reaches the bar). ``NAME`` labels the row
(``continuous:2=runs/continuous_s2``: world ``continuous``, seed 2); without it, the directory's name.

``--ceiling C.json`` (rows of ``python -m bench.bench_ceiling --json``, matched by world and seed)
adds a second table: how much the inputs hold above the floor even for a reader that knows every
word (``known:all`` − floor, the headroom) and the share of it the best single model takes.

``--test-truth`` adds what the run *submits*, scored on the test videos against the synthetic truth
(``bench.truth_on_test``; the data set is the ``synth_meta.json`` the run's ensemble report names):
the best member's fold average and the submission against the floor's fold average, with a
paired-bootstrap interval over the sampled test pairs, and the submission against its best member.
Its "closest pairs" column says how many of the closest labelled-pair bins the test videos could
fill: where they hold few near-duplicates those figures rank mostly moderately related videos.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from bench.bench_quality import verdict, verdict_interval, verdict_markdown
from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.errors import DataError


def parse_run(text: str) -> tuple[str, str, str]:
    """``(world, seed, run)`` of ``[world[:seed]=]RUN``; the world defaults to RUN's directory name."""
    name, _, run = text.rpartition("=")
    world, _, seed = (name or os.path.basename(os.path.normpath(run))).partition(":")
    return world, seed or "-", run


def run_verdict(world: str, seed: str, run: str, folds: Sequence[int], draws: int = 2000) -> dict:
    """One run's verdict row, with the margin's interval (needs the run's val.npz of every fold)."""
    path = os.path.join(run, "ensemble_report.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no ensemble report (run ensemble_final.py on {run} first)")
    with open(path, encoding="utf-8") as handle:
        report = json.load(handle)
    row = verdict(world, seed, report)
    row["oracle"] = report.get("oracle_spearman")
    row["interval"] = verdict_interval(row, run, folds, draws=draws)
    return row


def held_out_row(world: str, seed: str, run: str, draws: int = 1000) -> dict:
    """The run's fold averages and submission on the test pairs (``bench.truth_on_test``) against the floor."""
    from bench import truth_on_test

    path = os.path.join(run, "ensemble_report.json")
    with open(path, encoding="utf-8") as handle:
        meta = json.load(handle).get("synth_meta")
    if not meta:
        raise ValueError(f"{path}: names no synth_meta.json (rerun ensemble_final.py with --synth-meta "
                         f"DATA/synth_meta.json, or DATA/foreign_meta.json; --test-truth needs the generated data set)")
    report = truth_on_test.evaluate(os.path.dirname(meta), run, reference=truth_on_test.DEFAULT_REFERENCE,
                                    draws=draws)
    systems = report["systems"]
    reference = systems.pop(truth_on_test.DEFAULT_REFERENCE)
    submission = systems.pop(truth_on_test.SUBMISSION, None)
    if not systems or submission is None:
        raise ValueError(f"{run}: --test-truth needs the run's models and its result.zip")
    best = max(systems, key=lambda name: systems[name]["fold_average"]["labels"])
    floor = reference["fold_average"]["labels"]
    return {"world": world, "seed": seed, "oracle": report["sample"]["oracle"], "pairs": report["sample"]["pairs"],
            "coverage": report["sample"].get("coverage"), "sample_kind": report["sample"].get("kind", "bins"),
            "floor": floor, "best_member": best, "best_member_score": systems[best]["fold_average"]["labels"],
            "submission": submission["fold_average"]["labels"], "submission_vs_floor": submission["vs_reference"],
            "submission_truth": submission["fold_average"]["truth"], "floor_truth": reference["fold_average"]["truth"]}


def closest_pairs(coverage: dict | None, sample_kind: str = "bins") -> str:
    """The sample's closest labelled-pair bins that the test videos could not fill (``truth_on_test.sample_coverage``):
    ``top 40%: 1095 / 8000``, or ``all drawn``; ``test graph`` where the sample is the test videos' label graph."""
    if sample_kind == "graph":
        return "test graph"
    if not coverage or not coverage.get("closest_short_bins"):
        return "all drawn"
    return (f"top {100 * coverage['closest_share']:.0f}%: {coverage['closest_drawn']} / "
            f"{coverage['closest_asked']}")


def held_out_markdown(rows: Sequence[dict]) -> str:
    lines = ["| world | seed | test pairs (oracle) | closest pairs: drawn / asked | floor: linear_metric (fold average) | "
             "best member (fold average) | submission | submission − floor (90% interval) | submission − best member | "
             "all test pairs vs truth: submission / floor |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for v in rows:
        margin = v["submission_vs_floor"]
        lines.append(f"| {v['world']} | {v['seed']} | {v['pairs']} ({v['oracle']:.4f}) | {closest_pairs(v.get('coverage'), v.get('sample_kind', 'bins'))} | "
                     f"{v['floor']:.4f} | "
                     f"{v['best_member']} {v['best_member_score']:.4f} | {v['submission']:.4f} | "
                     f"{margin['difference']:+.4f} [{margin['low']:+.4f}, {margin['high']:+.4f}] | "
                     f"{v['submission'] - v['best_member_score']:+.4f} | "
                     f"{v['submission_truth']:.4f} / {v['floor_truth']:.4f} |")
    return "\n".join(lines)


def load_ceilings(paths: Sequence[str], folds: Sequence[int]) -> dict[tuple[str, str], dict]:
    """Rows of ``bench.bench_ceiling --json`` files by ``(world, seed)``; they must score ``folds``."""
    ceilings = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            rows = json.load(handle)
        for row in rows:
            missing = [key for key in ("world", "seed", "folds", "readout:all", "known:all") if key not in row]
            if missing:
                raise ValueError(f"{path}: a ceiling row lacks {missing} (rows of python -m bench.bench_ceiling --json "
                                 "with the known: readouts are expected; rerun it)")
            if sorted(row["folds"]) != sorted(folds):
                raise ValueError(f"{path}: the ceiling of {row['world']} (seed {row['seed']}) scores folds "
                                 f"{row['folds']}, the runs folds {list(folds)}")
            ceilings[(row["world"], str(row["seed"]))] = row
    return ceilings


def headroom(v: dict, ceiling: dict) -> dict:
    """What the inputs hold above the floor (``known:all`` − floor) and the share the best single model takes."""
    room = ceiling["known:all"] - v["floor_oof"]
    return {"readout_all": ceiling["readout:all"], "known_all": ceiling["known:all"], "headroom": room,
            "share": (v["best_single_oof"] - v["floor_oof"]) / room if room > 0 else None}


def headroom_markdown(rows: Sequence[dict]) -> str:
    """One row per draw that has a ceiling, largest share first."""
    lines = ["| world | seed | floor (OOF) | best single (OOF) | readout: all | known: all | headroom (known: all − floor) "
             "| share the best single takes |", "|" + " --- |" * 8]
    for v in sorted(rows, key=lambda v: -1e9 if v["headroom"]["share"] is None else v["headroom"]["share"],
                    reverse=True):
        h = v["headroom"]
        share = "-" if h["share"] is None else f"{100 * h['share']:.0f}%"
        lines.append(f"| {v['world']} | {v['seed']} | {v['floor']} {v['floor_oof']:.4f} | {v['best_single']} "
                     f"{v['best_single_oof']:.4f} | {h['readout_all']:.3f} | {h['known_all']:.3f} | "
                     f"{h['headroom']:+.3f} | {share} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verdict_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="[NAME=]RUN", help="run directories of demo.sh (NAME: world[:seed])")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1], help="validation folds the runs scored")
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap resamples of the pairs")
    parser.add_argument("--markdown", help="also write the table(s) here")
    parser.add_argument("--ceiling", nargs="+", default=(), metavar="C.json",
                        help="rows of bench.bench_ceiling --json: add the headroom table")
    parser.add_argument("--test-truth", action="store_true",
                        help="add the submission scored on the test pairs against the synthetic truth "
                             "(bench.truth_on_test)")
    args = parser.parse_args(argv)
    rows, truth_rows = [], []
    try:
        ceilings = load_ceilings(args.ceiling, args.folds)
        for text in args.runs:
            world, seed, run = parse_run(text)
            rows.append(run_verdict(world, seed, run, args.folds, args.draws))
            if args.test_truth:
                truth_rows.append(held_out_row(world, seed, run, args.draws))
    except (FileNotFoundError, ValueError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = verdict_markdown(rows)
    if args.ceiling:
        for v in rows:
            if (v["world"], v["seed"]) in ceilings:
                v["headroom"] = headroom(v, ceilings[(v["world"], v["seed"])])
            else:
                print(f"warning: no ceiling row for {v['world']} seed {v['seed']} in {', '.join(args.ceiling)}",
                      file=sys.stderr)
        with_room = [v for v in rows if "headroom" in v]
        if with_room:
            table += "\n\n" + headroom_markdown(with_room)
    if truth_rows:
        table += "\n\n" + held_out_markdown(truth_rows)
    print(table)
    if args.markdown:
        write_text_atomic(args.markdown, table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
