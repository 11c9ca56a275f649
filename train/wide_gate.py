"""The wide path's gate chosen on the validation pairs of all of a model's folds, after finetuning.

    python -m train.wide_gate RUN/finetune/MODEL [--grid 1 1.41 2 2.83 4 1000] [--rule one-se|best] [--reset]
                              [--skip-without-wide]

A wide-path model embeds ``deep + gate · unit(wide)``: its unit-length deep part plus the in-graph
linear metric. The gate trains, but barely moves (1.03–1.08 in every recipe run: Adam moves a scalar
by about its learning rate a step), so every model mixes the two about 1 : 1 whatever the data. On
data without topic clusters the deep part adds noise on unseen (test) videos while the validation
pairs, whose videos mostly also sit in training pairs, cannot see it (docs/benchmarks.md, "the wide
path's gate chosen on the folds' validation pairs").

This step embeds each finished fold's validation pairs once, splits every embedding into its deep
and wide parts (exactly: the embedding is linear in the gate), scores ``deep + g · unit(wide)`` for
each g of the grid on every fold (1000: the wide path alone, the deep part at a thousandth of its
weight), and picks one g by the folds' mean Spearman: by default (``--rule one-se``) the largest g
whose mean is within one bootstrap standard error of the best, since on labelled pairs of unseen
videos the deep part's small validation gains did not hold (docs/benchmarks.md, "The gate rule judged
on new draws"); ``--rule best`` takes the best mean. One gate for all folds of the model, so the fold
models stay on one cosine scale. The choice is written
as ``wide_gate.json`` in each fold run; ``infer.embed.load_run`` (embedding, export, search, distill)
sets the gate from it, and the embeddings' provenance records it, so ``infer.embed_all`` re-embeds
when it changes. ``--reset`` removes the files (the trained gates again). ``finetune_all.sh`` runs
this after each model's folds (``WIDE_GATE=trained`` to skip it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

GATE_FILE = "wide_gate.json"
WIDE_ALONE = 1000.0  # a gate at which the embedding is the wide path alone, to float32 precision of ranking
# from the trained ~1 : 1 mix to a wide path 4x the deep part, and the wide path alone
DEFAULT_GRID = (1.0, 2 ** 0.5, 2.0, 2 ** 1.5, 4.0, WIDE_ALONE)
DEFAULT_RULE = "one-se"
FORMAT = "videosim-wide-gate"


@dataclasses.dataclass(frozen=True)
class PairParts:
    """One fold's validation pairs split into the parts of their embeddings: ``deep`` (the embedding
    with the gate at 0) and ``wide`` (the unit wide path), each a pair of [P, D] arrays (video_1,
    video_2), and the pairs' labels [P]."""

    deep: tuple[np.ndarray, np.ndarray]
    wide: tuple[np.ndarray, np.ndarray]
    labels: np.ndarray
    trained_gate: float

    def cosines(self, gate: float) -> np.ndarray:
        """Cosine of each pair's embeddings with the wide path's gate at ``gate``."""
        sides = [_unit(d + gate * w) for d, w in zip(self.deep, self.wide)]
        return (sides[0] * sides[1]).sum(axis=1)

    def spearman(self, gate: float) -> float:
        import scipy.stats

        return float(scipy.stats.spearmanr(self.cosines(gate), self.labels).statistic)


def gate_name(gate: float) -> str:
    """A gate as the tables print it: ``1.41``, or ``wide alone`` for `WIDE_ALONE`."""
    return "wide alone" if gate == WIDE_ALONE else f"{gate:.3g}"


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def embedding_parts(model, features, gate: float) -> tuple[np.ndarray, np.ndarray]:
    """``(deep part, unit wide path)`` of a batch's embeddings, ``embedding = deep + gate * wide``."""
    full = model(features, training=False)["embedding"].numpy().astype(np.float64)
    standardized = model.standardized(features)
    unit_wide = (model.wide_path(standardized["frames"], features["frame_mask"], features["input_ids"],
                                 features["attention_mask"]).numpy().astype(np.float64) / gate)
    return full - gate * unit_wide, unit_wide


def pair_parts(run, batch_size: int = 128) -> PairParts:
    """The validation pairs of a loaded finetune run (``infer.embed.load_run``), split into parts."""
    from infer.embed import validation_shard
    from tfrecord_tools import reader
    from train.data import numeric_features

    model = run.model
    if getattr(model, "wide_path", None) is None:
        raise ValueError(f"{run.run_dir}: the model has no wide path (model.wide.enabled=false): no gate to choose")
    gate = float(model.wide_path.gate.numpy())
    deep: tuple[list, list] = ([], [])
    wide: tuple[list, list] = ([], [])
    labels = []
    for batch in reader.iterate_checked(reader.read_pairs([validation_shard(run)], run.decoder, batch_size)):
        for side, key in enumerate(("video_1", "video_2")):
            deep_part, unit_wide = embedding_parts(model, numeric_features(batch[key]), gate)
            deep[side].append(deep_part)
            wide[side].append(unit_wide)
        labels.append(batch["sim"].numpy())
    if not labels:
        raise ValueError(f"{run.run_dir}: its validation shard holds no pairs")
    return PairParts(tuple(np.concatenate(d) for d in deep), tuple(np.concatenate(w) for w in wide),
                     np.concatenate(labels).astype(np.float64), gate)


RULES = {"best": "the best mean validation Spearman over the folds",
         "one-se": "the largest gate within one bootstrap standard error of the best mean validation Spearman"}


def choose_gate(parts: Mapping[str, PairParts], grid: Sequence[float] = DEFAULT_GRID, rule: str = DEFAULT_RULE,
                draws: int = 200, seed: int = 0) -> tuple[float, dict]:
    """``(gate, {g: mean validation Spearman over the folds})``. ``rule="best"``: the grid's best gate
    (the smallest on a tie: the nearest to the trained mix). ``"one-se"``: the largest gate whose
    score is within one standard error of the best's, the error of the difference from a paired
    bootstrap of each fold's pairs (``draws`` resamples): a larger gate leans on the wide path, and on
    unseen labelled pairs the deep part's small validation gains did not hold (docs/benchmarks.md, "The
    deep part on unseen labelled pairs"), so the rule gives them no credit within the noise."""
    grid = sorted(float(g) for g in grid)
    if not grid or any(not math.isfinite(g) or g <= 0 for g in grid):
        raise ValueError(f"the grid must hold positive finite gates, got {grid}")
    if not parts:
        raise ValueError("no folds to choose the gate on")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
    scores = {g: float(np.mean([p.spearman(g) for p in parts.values()])) for g in grid}
    best = max(scores.values())
    best_gate = next(g for g in grid if scores[g] == best)
    if rule == "best":
        return best_gate, scores
    errors = difference_errors(parts, grid, best_gate, draws, seed)
    return max(g for g in grid if scores[g] >= best - errors[g]), scores


def difference_errors(parts: Mapping[str, PairParts], grid: Sequence[float], reference: float, draws: int,
                      seed: int) -> dict[float, float]:
    """``{g: bootstrap standard error of mean-fold Spearman(g) - mean-fold Spearman(reference)}``, each
    fold's pairs resampled with replacement, the same resample for every gate."""
    import scipy.stats

    rng = np.random.default_rng(seed)
    cosines = {name: {g: p.cosines(g) for g in grid} for name, p in parts.items()}
    differences = {g: [] for g in grid}
    for _ in range(draws):
        totals = dict.fromkeys(grid, 0.0)
        for name, p in parts.items():
            rows = rng.integers(len(p.labels), size=len(p.labels))
            labels = p.labels[rows]
            for g in grid:
                totals[g] += scipy.stats.spearmanr(cosines[name][g][rows], labels).statistic / len(parts)
        for g in grid:
            differences[g].append(totals[g] - totals[reference])
    return {g: float(np.std(values)) for g, values in differences.items()}


def fold_runs(model_dir: str) -> list[str]:
    """The finished fold runs (``fold_XX`` with metrics.json) of a model's finetune directory."""
    from tfrecord_tools import layout

    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{model_dir}: not a directory (expected RUN/finetune/<model> with fold_XX runs)")
    runs = sorted(os.path.join(model_dir, name) for name in os.listdir(model_dir)
                  if name.startswith("fold_") and os.path.isfile(os.path.join(model_dir, name, layout.METRICS_FILE)))
    if not runs:
        raise FileNotFoundError(f"{model_dir}: no finished fold runs (fold_XX/metrics.json)")
    return runs


def checkpoint_md5(run_dir: str, checkpoint_path: str | None = None) -> str:
    """md5 of the ``.index`` file of ``checkpoint_path`` (default: the one ``load_run`` restores,
    ``best``): which weights a choice is for."""
    from infer.embed import checkpoint_of
    from tfrecord_tools import provenance

    return provenance.file_md5((checkpoint_path or checkpoint_of(run_dir)) + ".index")


def read_gate(run_dir: str, checkpoint_path: str | None = None) -> float | None:
    """The chosen gate of a fold run (its ``wide_gate.json``), or None when it keeps its trained gate.
    A choice made for other weights than ``checkpoint_path``'s (default: the run's best; the fold
    finetuned again since, or another checkpoint loaded) is an error."""
    from tfrecord_tools.errors import DataError

    path = os.path.join(run_dir, GATE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        gate = float(record["gate"])
        chosen_for = record["checkpoint_md5"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(path, "gate", f"not a readable gate choice ({error}); rerun python -m train.wide_gate") from None
    if not math.isfinite(gate) or gate <= 0:
        raise DataError(path, "gate", f"expected a positive finite number, got {gate}")
    if chosen_for != checkpoint_md5(run_dir, checkpoint_path):
        raise DataError(path, "checkpoint_md5", "chosen for other weights than the checkpoint loaded (the fold "
                                                "finetuned again since?): rerun python -m train.wide_gate on the "
                                                "model's finetune directory, or load with wide_gate=False")
    return gate


def apply_gate(model, run_dir: str, checkpoint_path: str | None = None) -> float | None:
    """Set ``model``'s wide-path gate (restored from ``checkpoint_path``) from ``run_dir``'s
    ``wide_gate.json``; returns it (None: no file)."""
    from tfrecord_tools.errors import DataError

    gate = read_gate(run_dir, checkpoint_path)
    if gate is None:
        return None
    if getattr(model, "wide_path", None) is None:
        raise DataError(os.path.join(run_dir, GATE_FILE), None,
                        "a gate choice for a model without a wide path (model.wide.enabled=false)")
    model.wide_path.gate.assign(gate)
    return gate


def write_choice(runs: Sequence[str], gate: float, scores: Mapping[float, float], trained: Mapping[str, float],
                 rule: str = DEFAULT_RULE) -> None:
    """Write the same choice as ``wide_gate.json`` into every fold run (atomically, each)."""
    from tfrecord_tools.atomic import write_text_atomic

    record = {"format": FORMAT, "gate": gate, "chosen_by": RULES[rule],
              "folds": [os.path.basename(run) for run in runs], "trained_gates": dict(trained),
              "val_spearman": {f"{g:.6g}": s for g, s in scores.items()}}
    for run in runs:
        text = json.dumps(dict(record, checkpoint_md5=checkpoint_md5(run)), indent=2) + "\n"
        write_text_atomic(os.path.join(run, GATE_FILE), text)


def reset(runs: Sequence[str]) -> list[str]:
    """Remove the runs' gate choices (back to the trained gates); returns the files removed."""
    removed = []
    for run in runs:
        path = os.path.join(run, GATE_FILE)
        if os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.wide_gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a model's finetune directory (RUN/finetune/<model>, its fold_XX runs)")
    parser.add_argument("--grid", nargs="+", type=float, default=list(DEFAULT_GRID), help="gates to choose from")
    parser.add_argument("--reset", action="store_true", help="remove the choice: the fold runs keep their trained gates")
    parser.add_argument("--skip-without-wide", action="store_true",
                        help="a model without a wide path is not an error (finetune_all.sh: any model)")
    parser.add_argument("--rule", choices=sorted(RULES), default=DEFAULT_RULE,
                        help="one-se (default): the largest gate within one bootstrap standard error of the best mean "
                             "validation Spearman; best: the best mean")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    from tfrecord_tools import cli

    try:
        runs = fold_runs(args.model_dir)
        if args.reset:
            removed = reset(runs)
            print(f"{args.model_dir}: {len(removed)} gate choice(s) removed; the fold runs keep their trained gates")
            return 0
        from infer.embed import load_run
        from train.config import load_config

        if not load_config(runs[0]).model.wide.enabled:
            if args.skip_without_wide:
                print(f"{args.model_dir}: no wide path (model.wide.enabled=false): the gate step does not apply")
                return 0
            raise ValueError(f"{runs[0]}: the model has no wide path (model.wide.enabled=false): no gate to choose")
        parts = {}
        for run_dir in runs:
            parts[os.path.basename(run_dir)] = pair_parts(load_run(run_dir, wide_gate=False), args.batch_size)
        gate, scores = choose_gate(parts, args.grid, args.rule)
    except (FileNotFoundError, ValueError) as error:  # DataError is a ValueError
        return cli.report_error("wide_gate", error)
    write_choice(runs, gate, scores, {name: p.trained_gate for name, p in parts.items()}, args.rule)
    trained = ", ".join(f"{name} {p.trained_gate:.3f}" for name, p in parts.items())
    table = "  ".join(f"{gate_name(g)}: {s:.4f}" for g, s in scores.items())
    print(f"{args.model_dir}: wide-path gate {gate_name(gate)} by the {args.rule} rule (trained: {trained}); mean "
          f"validation Spearman over {len(parts)} fold(s) by gate: {table} -> {GATE_FILE} in each fold run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
