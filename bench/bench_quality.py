"""Quality across synthetic worlds: the demo recipe on every world under one fixed budget.

    python -m bench.bench_quality [--worlds demo continuous ...] [--seeds 0 1] [--models "uniter uniter_roformer"]
        [--folds "0 1 2"] [--out bench/out/quality] [--extra "key=value ..."]

For every world (and every seed of its synthetic data: the margins over the strong baselines move
between draws by more than most recipe changes move them), ``demo.sh`` runs the whole pipeline
(synthetic data of that world, fold shards, strong baselines, pretraining, finetuning on the given
folds, embeddings, ensemble) with ``DATA=OUT/<world>/data RUN=OUT/<world>/runs WORLD=<world>
SEED=<seed>`` (``OUT/<world>_seed<seed>`` for a seed other than 0; the world ``foreign`` is data of
``bench.foreign_world``, another generator, drawn with that seed, then taken by ``demo.sh`` as it is); its ``ensemble_report.json`` gives the
table row: every model's out-of-fold and mean-fold Spearman, the ensemble's, the best strong
baseline and the oracle. Recipes are chosen on validation folds only; the test set is only scored.
Finished worlds are reused (delete OUT/<world> to rerun one).

Prints a markdown table (one row per world x model), then one row per draw against the bar of
issue 9 (the best single model above the best strong baseline, by >= 0.05 where that baseline is
below 0.8 of the oracle; the ensemble above its best member; every out-of-fold Spearman within
0.02 of its mean fold score), with the mean margin over the draws of each world, then what each run
submits scored on the test pairs against the synthetic truth (``bench.verdict_table --test-truth``:
the submission and the best member's fold average against the floor's), and writes
``OUT/quality.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

from bench.margin_interval import BASELINE_PREFIX, margin_between
from ensemble.report import FOLD_GAP_LIMIT
from tfrecord_tools import synth
from tfrecord_tools.atomic import atomic_path

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORLDS = ("demo", "continuous", "offset_frames", "sparse_tags", "weak_titles", "real_graph",
                  "many_unlabelled")


FOREIGN = "foreign"  # bench.foreign_world's data instead of a world of tfrecord_tools.synth


def world_name(world: str) -> str:
    """``world`` checked for the command line: ``foreign`` or a world of ``tfrecord_tools.synth``."""
    return world if world == FOREIGN else synth.world_argument(world)


def world_dir(world: str, seed: int) -> str:
    """The directory name of one draw of a world under OUT (seed 0 keeps the plain name)."""
    return world if seed == 0 else f"{world}_seed{seed}"


def run_world(world: str, out: str, models: str, folds: str, extra: str, python: str, train_extra: str = "",
              seed: int = 0) -> dict:
    base = os.path.join(out, world_dir(world, seed))
    data, run = os.path.join(base, "data"), os.path.join(base, "runs")
    report_path = os.path.join(run, "ensemble_report.json")
    started = time.time()
    if not os.path.isfile(report_path):
        if world == FOREIGN and not os.path.isfile(os.path.join(data, "pairwise", "label.tsv")):
            code = subprocess.call([python, "-m", "bench.foreign_world", "--out", data, "--seed", str(seed), "--quiet"],
                                   cwd=HERE)
            if code != 0:
                raise RuntimeError(f"bench.foreign_world failed for seed {seed} (exit {code})")
        env = dict(os.environ, DATA=data, RUN=run, WORLD=world, MODELS=models, FOLDS=folds, PYTHON=python,
                   SEED=str(seed))
        if extra:
            env["RECIPE"] = extra
        if train_extra:
            env["TRAIN_EXTRA"] = train_extra
        log_path = os.path.join(base, "demo.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "w", encoding="utf-8") as log:
            code = subprocess.call(["sh", os.path.join(HERE, "demo.sh")], env=env, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            raise RuntimeError(f"demo.sh failed for world {world!r} (exit {code}); see {log_path}")
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    report["seconds"] = round(time.time() - started, 1)
    return report


def scored(report: dict, kind: str) -> list[dict]:
    """The report's rows of one kind that have an out-of-fold Spearman."""
    return [r for r in report["rows"] if r["kind"] == kind and r["oof_spearman"] is not None
            and not math.isnan(r["oof_spearman"])]


def best_of(rows: list[dict]) -> dict | None:
    return max(rows, key=lambda r: r["oof_spearman"]) if rows else None


def world_rows(world: str, report: dict) -> list[dict]:
    rows = report["rows"]
    best = best_of(scored(report, "baseline"))
    oracle = report.get("oracle_spearman")
    out = []
    for row in rows:
        if row["kind"] not in ("model", "ensemble"):
            continue
        out.append({
            "world": world, "system": row["name"], "oof": row["oof_spearman"], "mean_fold": row["mean_fold_spearman"],
            "best_baseline": best["name"].replace("baseline: ", "") if best else None,
            "best_baseline_oof": best["oof_spearman"] if best else None, "oracle": oracle,
        })
    return out


#: the best single model must beat the best strong baseline by this much where that baseline is
#: below ``FAR_FROM_ORACLE`` of the oracle (by any margin elsewhere); OOF within ``MAX_FOLD_GAP`` (the
#: limit of the ensemble table's notes, ``ensemble.report.check_rows``)
WIDE_MARGIN, FAR_FROM_ORACLE, MAX_FOLD_GAP = 0.05, 0.8, FOLD_GAP_LIMIT


def verdict(world: str, seed: int, report: dict) -> dict:
    """One draw against the bar: margins over the floor and over the best member, the fold gap."""
    models, baselines, ensembles = (scored(report, kind) for kind in ("model", "baseline", "ensemble"))
    if not models or not baselines:
        kinds = sorted({r["kind"] for r in models + baselines + ensembles})
        raise ValueError(f"world {world!r} (seed {seed}): ensemble_report.json needs at least one model row and one "
                         f"baseline row with an out-of-fold Spearman, got kinds {kinds}")
    best, floor = best_of(models), best_of(baselines)
    oracle = report.get("oracle_spearman")
    bar = WIDE_MARGIN if oracle and floor["oof_spearman"] < FAR_FROM_ORACLE * oracle else 0.0
    margin = best["oof_spearman"] - floor["oof_spearman"]
    ensemble_gain = max(r["oof_spearman"] for r in ensembles) - best["oof_spearman"] if ensembles else None
    gaps = [abs(r["oof_spearman"] - r["mean_fold_spearman"]) for r in models + ensembles
            if r["mean_fold_spearman"] is not None and not math.isnan(r["mean_fold_spearman"])]
    fold_gap = max(gaps) if gaps else None
    return {
        "world": world, "seed": seed, "best_single": best["name"], "best_single_oof": best["oof_spearman"],
        "floor": floor["name"].replace("baseline: ", ""), "floor_oof": floor["oof_spearman"], "margin": margin,
        "bar": bar, "ensemble_gain": ensemble_gain, "fold_gap": fold_gap,
        "met": bool(margin > bar and (ensemble_gain is None or ensemble_gain > 0)
                    and (fold_gap is None or fold_gap <= MAX_FOLD_GAP)),
    }


def verdict_interval(v: dict, run_dir: str, folds, **kwargs) -> dict:
    """How sure a verdict's margin is: the best single model over the floor on the run's out-of-fold pairs."""
    return margin_between(run_dir, v["best_single"], BASELINE_PREFIX + v["floor"], folds, **kwargs)


def verdict_markdown(verdicts: list[dict]) -> str:
    """One row per draw, then the mean margin over each world's draws where it has several."""
    def f(value, sign=False):
        return "-" if value is None else (f"{value:+.4f}" if sign else f"{value:.4f}")

    def interval(v):
        i = v.get("interval")
        return "-" if not i else f"[{i['low']:+.3f}, {i['high']:+.3f}], ahead in {100 * i['share_ahead']:.0f}%"

    def met_text(v):  # a draw over the bar by less than its pairs' noise is met, but not told from a miss
        i = v.get("interval")
        return "no" if not v["met"] else "yes, within noise" if i and i["low"] <= v["bar"] else "yes"

    lines = ["| world | seed | best single (OOF) | best strong baseline (OOF) | best single − baseline | "
             "90% interval (paired bootstrap of the pairs) | bar | ensemble − best member | "
             "largest \\|OOF − mean fold\\| | met |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    worlds = list(dict.fromkeys(v["world"] for v in verdicts))
    for world in worlds:
        draws = [v for v in verdicts if v["world"] == world]
        for v in draws:
            lines.append(f"| {world} | {v['seed']} | {v['best_single']} {f(v['best_single_oof'])} | {v['floor']} "
                         f"{f(v['floor_oof'])} | {f(v['margin'], True)} | {interval(v)} | > {v['bar']:.2f} | "
                         f"{f(v['ensemble_gain'], True)} | {f(v['fold_gap'])} | {met_text(v)} |")
        if len(draws) > 1:
            mean = sum(v["margin"] for v in draws) / len(draws)
            met = sum(v["met"] for v in draws)
            lines.append(f"| {world} | mean of {len(draws)} | | | {f(mean, True)} | | | | | {met} of {len(draws)} |")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    def f(value):
        return "-" if value is None else f"{value:.3f}"

    lines = ["| world | system | OOF | mean fold | OOF − mean fold | best strong baseline (OOF) | oracle | OOF / oracle |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        gap = None if r["oof"] is None or r["mean_fold"] is None else r["oof"] - r["mean_fold"]
        ratio = None if not r["oracle"] or r["oof"] is None else r["oof"] / r["oracle"]
        lines.append(f"| {r['world']} | {r['system']} | {f(r['oof'])} | {f(r['mean_fold'])} | {f(gap)} | "
                     f"{r['best_baseline']} {f(r['best_baseline_oof'])} | {f(r['oracle'])} | {f(ratio)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", nargs="*", default=list(DEFAULT_WORLDS), type=world_name,
                        help="worlds of tfrecord_tools.synth (random-<n>: a world with every knob drawn at random), "
                             "or foreign: data of bench.foreign_world, an independent generator")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="seeds of the synthetic data: each world is drawn and run once per seed")
    parser.add_argument("--models", default="uniter uniter_roformer")
    parser.add_argument("--folds", default="0 1")
    parser.add_argument("--out", default=os.path.join(HERE, "bench", "out", "quality"))
    parser.add_argument("--extra", default="", help="the demo's RECIPE: key=value pairs for pretraining (default: "
                                                    "demo.sh's robust recipe; \" \" for the published recipes)")
    parser.add_argument("--train-extra", default="",
                        help="key=value pairs for pretraining and finetuning (e.g. min_tag_coverage=0.2)")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    from bench.verdict_table import held_out_markdown, held_out_row
    from tfrecord_tools.errors import DataError

    rows, reports, verdicts, held_out = [], {}, [], []
    for world in args.worlds:
        for seed in args.seeds:
            name = world if seed == 0 else f"{world} (seed {seed})"
            print(f"== world {name}", file=sys.stderr, flush=True)
            report = run_world(world, args.out, args.models, args.folds, args.extra, args.python, args.train_extra,
                               seed=seed)
            reports[world_dir(world, seed)] = {"world": world, "seed": seed, "rows": report["rows"],
                                               "oracle": report.get("oracle_spearman"), "seconds": report["seconds"]}
            rows.extend(world_rows(name, report))
            verdicts.append(verdict(world, seed, report))
            run_dir = os.path.join(args.out, world_dir(world, seed), "runs")
            try:  # how sure the margin is: the run's per-pair cosines, resampled
                verdicts[-1]["interval"] = verdict_interval(verdicts[-1], run_dir, [int(f) for f in args.folds.split()])
            except (FileNotFoundError, ValueError) as error:
                print(f"warning: no interval for {name}: {error}", file=sys.stderr)
            reports[world_dir(world, seed)]["verdict"] = verdicts[-1]
            try:  # what the run submits, on the test pairs against the synthetic truth
                held_out.append(held_out_row(world, str(seed), run_dir))
                reports[world_dir(world, seed)]["held_out"] = held_out[-1]
            except (FileNotFoundError, ValueError, DataError) as error:
                print(f"warning: no test-pair row for {name}: {error}", file=sys.stderr)
            print(markdown(world_rows(name, report)), file=sys.stderr, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with atomic_path(os.path.join(args.out, "quality.json")) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"models": args.models, "folds": args.folds, "seeds": args.seeds, "extra": args.extra,
                   "worlds": reports}, handle, indent=2)
    print(markdown(rows))
    print()
    print(verdict_markdown(verdicts))
    if held_out:
        print()
        print(held_out_markdown(held_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
