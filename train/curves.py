"""Training curves as a picture in the run directory, for people who do not run TensorBoard.

`plot_training_curves(run_dir)` reads ``train_log.jsonl`` (the logged steps: every loss term,
``grad_norm``, learning rates, steps/s) and, for finetune runs, ``metrics.json`` (validation
Spearman per epoch) and draws them into ``RUN/training_curves.png``. matplotlib is the ``plot``
extra (``pip install videosim[plot]``); without it nothing is drawn and the caller says so.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os

from tfrecord_tools import layout
from tfrecord_tools.atomic import atomic_path

CURVES_PNG = layout.CURVES_PNG
LOG_FILE = layout.TRAIN_LOG  # written by train.loop.Trainer
METRICS_FILE = layout.METRICS_FILE  # written by train.finetune
NO_MATPLOTLIB = "matplotlib is not installed (pip install 'videosim[plot]'): no training_curves.png drawn"


def read_log(run_dir: str) -> dict[str, tuple[list[int], list[float]]]:
    """``{name: (steps, values)}`` of every logged scalar (finite values only)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    path = os.path.join(run_dir, LOG_FILE)
    if not os.path.isfile(path):
        return series
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line torn by a crash
                continue
            step = entry.pop("step", None)
            for name, value in entry.items():
                if step is not None and isinstance(value, (int, float)) and math.isfinite(value):
                    steps, values = series.setdefault(name, ([], []))
                    steps.append(int(step))
                    values.append(float(value))
    return series


def read_validation(run_dir: str) -> tuple[list[int], list[float]]:
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isfile(path):
        return [], []
    with open(path, encoding="utf-8") as handle:
        epochs = json.load(handle).get("epochs", [])
    kept = [e for e in epochs if e.get("val_spearman") is not None]
    return [e["step"] for e in kept], [e["val_spearman"] for e in kept]


def plot_training_curves(run_dir: str, out: str | None = None) -> str | None:
    """Draw the run's curves into ``out`` (default ``RUN/training_curves.png``); returns its path,
    or None when matplotlib is absent or nothing was logged."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    series = read_log(run_dir)
    val_steps, val_values = read_validation(run_dir)
    if not series and not val_steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = {k: v for k, v in series.items() if k == "loss" or not (k.startswith("lr") or k in ("grad_norm",
                                                                                                   "steps_per_sec"))}
    panels = [("losses", losses), ("gradient norm", {k: v for k, v in series.items() if k == "grad_norm"}),
              ("learning rates", {k: v for k, v in series.items() if k.startswith("lr")}),
              ("steps/s", {k: v for k, v in series.items() if k == "steps_per_sec"})]
    if val_steps:
        panels.append(("validation Spearman", {"val_spearman": (val_steps, val_values)}))
    panels = [(title, lines) for title, lines in panels if lines]
    figure, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True, squeeze=False)
    for axis, (title, lines) in zip(axes[:, 0], panels):
        for name, (steps, values) in sorted(lines.items()):
            axis.plot(steps, values, label=name, marker="o" if len(steps) < 20 else None, markersize=3)
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=7, loc="best")
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    parts = os.path.normpath(os.path.abspath(run_dir)).split(os.sep)
    figure.suptitle("/".join(parts[-3:]), fontsize=10)  # e.g. finetune/uniter/fold_00
    figure.tight_layout()
    path = out or os.path.join(run_dir, CURVES_PNG)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


def report_curves(run_dir: str) -> str:
    """Draw the curves; one line for the terminal saying where they are (or why not)."""
    path = plot_training_curves(run_dir)
    if path:
        return f"training curves: {path}"
    if importlib.util.find_spec("matplotlib") is None:
        return f"note: {NO_MATPLOTLIB}"
    return "note: nothing logged yet, no training_curves.png"
