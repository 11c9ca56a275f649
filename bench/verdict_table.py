"""The bar of issue 9 for runs already made: one verdict row per run directory of ``demo.sh``.

    python -m bench.verdict_table [NAME=]RUN [[NAME=]RUN ...] [--folds 0 1] [--draws 2000] [--markdown PATH]

``bench.bench_quality`` runs the worlds and ends with this table; runs made by hand (``WORLD=W
SEED=S RUN=R sh demo.sh``, as the sessions' reruns are) get the same verdicts here, from each run's
``ensemble_report.json`` and its per-fold embeddings: the best single model against the best strong
baseline with a paired-bootstrap interval of the margin (``bench.margin_interval``), the ensemble
against its best member, the largest out-of-fold − mean-fold gap, and whether the draw meets the bar
("yes, within noise" where the margin's interval reaches the bar). ``NAME`` labels the row
(``continuous:2=runs/continuous_s2``: world ``continuous``, seed 2); without it, the directory's name.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from bench.bench_quality import verdict, verdict_interval, verdict_markdown
from tfrecord_tools.atomic import write_text_atomic


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verdict_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="[NAME=]RUN", help="run directories of demo.sh (NAME: world[:seed])")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1], help="validation folds the runs scored")
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap resamples of the pairs")
    parser.add_argument("--markdown", help="also write the table here")
    args = parser.parse_args(argv)
    rows = []
    for text in args.runs:
        world, seed, run = parse_run(text)
        try:
            rows.append(run_verdict(world, seed, run, args.folds, args.draws))
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    table = verdict_markdown(rows)
    print(table)
    if args.markdown:
        write_text_atomic(args.markdown, table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
