"""What an ensemble of these members can gain at most: how alike they rank the pairs, and the best
weights on the pairs themselves.

An ensemble gains over its best member only where the members rank pairs differently and both
rank them well. Two numbers say how much room there is, from the out-of-fold cosines the report
already pools:

* **agreement**: Spearman between two members' cosines on the validation pairs (1: they rank every
  pair alike, and no weighting of them can differ from either);
* **best in-sample weights**: the weight vector (on ``ensemble.weights``' simplex grid) whose
  combined cosine ranks these very pairs best, and its score. It has seen the labels it is scored
  on, so it is an upper bound on what ``--weights`` (given or ``auto``) can reach here, not an
  estimate of it.

Measured on nine held-out synthetic draws (docs/benchmarks.md, "What the ensemble's weights can
give"): the two default members agreed at 0.962-0.996 out of fold (0.974-0.997 on the unseen test
graph), and even the weights chosen on the test graph itself scored at most +0.003 over the better
member there. So a small headroom here means another weighting will not help; a member that ranks
pairs differently (another family, other inputs) is what could.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import scipy.stats

from ensemble.weights import DEFAULT_STEP, grid_spearman, simplex_grid


@dataclasses.dataclass(frozen=True)
class Headroom:
    """Agreement of every two members and the best in-sample weights (see the module docstring)."""

    agreement: dict[str, float]  # "a ~ b" -> Spearman between their cosines
    best_weights: dict[str, float]  # sums to 1
    best_spearman: float  # the combined cosine's Spearman with those weights, on the same pairs
    best_member: str
    best_member_spearman: float

    @property
    def gain(self) -> float:
        """How much the best in-sample weights score above the best member alone (>= 0)."""
        return self.best_spearman - self.best_member_spearman

    def to_dict(self) -> dict:
        """JSON-ready: the fields, the gain and the report line; a score that is not a number (a member whose
        cosines are all equal has no ranking) becomes None."""
        def clean(value):
            return value if not isinstance(value, float) or math.isfinite(value) else None

        fields = {**dataclasses.asdict(self), "gain": self.gain}
        fields = {key: ({k: clean(v) for k, v in value.items()} if isinstance(value, dict) else clean(value))
                  for key, value in fields.items()}
        return {**fields, "line": self.describe()}

    def describe(self) -> str:
        """One line for the report: the agreement, then the best weights and their gain."""
        agree = ", ".join(f"{pair} {value:.4f}" for pair, value in self.agreement.items())
        weights = ", ".join(f"{model} {weight:g}" for model, weight in self.best_weights.items())
        return (f"member agreement (Spearman between their out-of-fold cosines): {agree}; the best weights on these "
                f"pairs themselves ({weights}) would score {self.best_spearman:.4f}, {self.gain:+.4f} over "
                f"{self.best_member} alone: the most any --weights could give here (in sample)")


def member_headroom(cosines: np.ndarray, scores: np.ndarray, models: Sequence[str],
                    step: float = DEFAULT_STEP) -> Headroom:
    """``cosines`` ``[P, M]`` (one column per member, in ``models`` order) against ``scores`` ``[P]``."""
    cosines = np.asarray(cosines, dtype=np.float64)
    if cosines.ndim != 2 or cosines.shape[1] != len(models):
        raise ValueError(f"cosines of shape {cosines.shape} for {len(models)} members")
    if len(models) < 2:
        raise ValueError(f"headroom needs at least two members, got {list(models)}")
    ranks = scipy.stats.rankdata(cosines, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant column: NaN, reported as None
        correlation = np.corrcoef(ranks, rowvar=False)
    agreement = {f"{models[i]} ~ {models[j]}": float(correlation[i, j])
                 for i in range(len(models)) for j in range(i + 1, len(models))}
    grid = simplex_grid(len(models), step)
    values = grid_spearman(cosines, scores, grid)
    members = grid_spearman(cosines, scores, np.eye(len(models)))
    best = int(np.argmax(values))
    best_member = int(np.argmax(members))
    return Headroom(agreement, {m: float(w) for m, w in zip(models, grid[best])}, float(values[best]),
                    models[best_member], float(members[best_member]))
