"""How sure is a margin? A paired bootstrap of the out-of-fold Spearman difference of two systems.

    python -m bench.margin_interval RUN A B [--folds 0 1] [--draws 2000] [--level 0.9]

A and B are a model of ``RUN/embeddings/<name>`` or a strong baseline written as
``baseline:<name>`` (``RUN/baselines/<name>``, as ``demo.sh`` writes them). Both systems' cosines
of the same out-of-fold validation pairs are resampled together (one resample of pairs, both
Spearmans on it), so what the interval shows is the noise of the pairs themselves: with the
demo's 638 pairs a margin of +0.005 is rarely told from zero. ``bench.bench_quality`` adds this
interval to every draw's verdict. Each system's fold models are put on one cosine scale first
(``infer.fold_calibration``, as ``ensemble_final.py`` does by default; ``--calibrate none``: raw).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np
import scipy.stats

from infer import fold_calibration
from infer.embeddings_io import load_embedding_set
from infer.evaluate import pair_cosines
from tfrecord_tools import cli
from tfrecord_tools.errors import DataError

BASELINE_PREFIX = "baseline:"


def system_dir(run: str, name: str, baselines: str | None = None) -> str:
    """Where a system's per-fold embeddings are: a model under embeddings/, a baseline under baselines/
    (or under ``baselines``, another `infer.baselines --out` directory, where given)."""
    name = name.replace("baseline: ", BASELINE_PREFIX)
    if name.startswith(BASELINE_PREFIX):
        return os.path.join(baselines or os.path.join(run, "baselines"), name[len(BASELINE_PREFIX):])
    return os.path.join(run, "embeddings", name)


def oof_cosines(directory: str, folds: Sequence[int], calibrate: str = fold_calibration.DEFAULT_METHOD
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cosines, scores, pair keys)`` of the folds' validation pairs, folds concatenated in order
    (``calibrate="distance"``: each fold's cosines calibrated by its test embeddings' mean distance)."""
    if calibrate not in fold_calibration.METHODS:
        raise ValueError(f"calibrate must be one of {list(fold_calibration.METHODS)}, got {calibrate!r}")
    cosines, scores, keys = [], [], []
    for fold in folds:
        path = os.path.join(directory, f"fold_{fold:02d}", "val.npz")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no validation embeddings of fold {fold} (expected val.npz with its pairs)")
        val = load_embedding_set(path)
        if val.pairs is None:
            raise ValueError(f"{path}: holds no validation pairs (pair_query, pair_candidate, pair_score)")
        cosines.append(pair_cosines(val, val.pairs.query, val.pairs.candidate))
        scores.append(np.asarray(val.pairs.score, dtype=np.float64))
        keys.append(np.char.add(np.char.add(np.asarray(val.pairs.query, dtype=str), "\t"),
                                np.asarray(val.pairs.candidate, dtype=str)))
    if calibrate == "distance":
        distances = fold_calibration.fold_distances({fold: os.path.join(directory, f"fold_{fold:02d}")
                                                     for fold in folds})
        reference = fold_calibration.reference_distance(distances)
        cosines = [fold_calibration.calibrate_cosines(fold_cosines, distances[fold], reference)
                   for fold, fold_cosines in zip(folds, cosines)]
    return np.concatenate(cosines), np.concatenate(scores), np.concatenate(keys)


def _spearman_rows(values: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Spearman of each row of ``values`` [R, P] with the matching row of ``scores`` [R, P]."""
    a = scipy.stats.rankdata(values, axis=1)
    b = scipy.stats.rankdata(scores, axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def bootstrap_margin(cos_a: np.ndarray, cos_b: np.ndarray, scores: np.ndarray, draws: int = 2000, seed: int = 0,
                     level: float = 0.9, chunk: int = 250) -> dict:
    """Spearman(a) − Spearman(b) on the pairs, its ``level`` percentile interval over ``draws`` paired
    resamples of the pairs, and the share of resamples where a is ahead."""
    cos_a, cos_b, scores = (np.asarray(x, dtype=np.float64) for x in (cos_a, cos_b, scores))
    if not cos_a.shape == cos_b.shape == scores.shape or cos_a.ndim != 1:
        raise ValueError(f"cosines and scores must be three 1-d arrays of one length, got shapes "
                         f"{cos_a.shape}, {cos_b.shape}, {scores.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    margin = scipy.stats.spearmanr(cos_a, scores).statistic - scipy.stats.spearmanr(cos_b, scores).statistic
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, draws, chunk):
        rows = rng.integers(0, len(scores), size=(min(chunk, draws - start), len(scores)))
        diffs.append(_spearman_rows(cos_a[rows], scores[rows]) - _spearman_rows(cos_b[rows], scores[rows]))
    diffs = np.concatenate(diffs)
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {"margin": float(margin), "low": float(low), "high": float(high), "level": level,
            "share_ahead": float((diffs > 0).mean()), "draws": draws, "pairs": int(len(scores))}


def margin_between(run: str, a: str, b: str, folds: Sequence[int],
                   calibrate: str = fold_calibration.DEFAULT_METHOD, **kwargs) -> dict:
    """The bootstrap of system a over system b on the run's out-of-fold pairs of ``folds``."""
    cos_a, scores, keys_a = oof_cosines(system_dir(run, a), folds, calibrate)
    cos_b, _, keys_b = oof_cosines(system_dir(run, b), folds, calibrate)
    if not np.array_equal(keys_a, keys_b):
        raise ValueError(f"{system_dir(run, a)} and {system_dir(run, b)}: the folds' validation pairs differ "
                         f"(both must come from the same fold shards)")
    return bootstrap_margin(cos_a, cos_b, scores, **kwargs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.margin_interval", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory (embeddings/<model>/fold_XX/val.npz, baselines/<name>/...)")
    parser.add_argument("a", help="model name, or baseline:<name>")
    parser.add_argument("b", help="model name, or baseline:<name>")
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate", choices=fold_calibration.METHODS, default=fold_calibration.DEFAULT_METHOD,
                        help="fold models put on one cosine scale before pooling (as ensemble_final.py)")
    args = parser.parse_args(argv)
    try:
        result = margin_between(args.run, args.a, args.b, args.folds, draws=args.draws, level=args.level,
                                seed=args.seed, calibrate=args.calibrate)
    except (FileNotFoundError, ValueError, DataError) as error:
        return cli.report_error("margin_interval", error)
    share = 100 * result["share_ahead"]
    print(f"{args.a} − {args.b} over {result['pairs']} out-of-fold pairs: {result['margin']:+.4f}, "
          f"{100 * args.level:.0f}% interval [{result['low']:+.4f}, {result['high']:+.4f}], "
          f"{args.a} ahead in {share:.1f}% of {args.draws} resamples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
