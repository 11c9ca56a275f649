"""`bench.bench_wide_parts.deep_shift`: how much of a model's deep part is one fixed vector."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from bench.bench_wide_parts import deep_shift


def _pairs(rng, n=300, dim=8):
    latent = [rng.normal(size=(n, dim)) for _ in range(2)]
    latent[1] = 0.7 * latent[0] + 0.7 * latent[1]  # pairs of varying similarity
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in latent]
    labels = (unit[0] * unit[1]).sum(axis=1)
    return unit, labels


def test_a_constant_deep_part_is_all_shift_and_centring_leaves_the_wide_path():
    rng = np.random.default_rng(0)
    wide, labels = _pairs(rng)
    constant = rng.normal(size=8)
    constant /= np.linalg.norm(constant)
    deep = [np.tile(constant, (len(labels), 1)) for _ in range(2)]
    out = deep_shift(deep, wide, labels)
    assert out["deep shift"] == pytest.approx(1.0)
    wide_alone = scipy.stats.spearmanr((wide[0] * wide[1]).sum(axis=1), labels).statistic
    assert out["deep centred"] == pytest.approx(wide_alone, abs=1e-9) and wide_alone > 0.99
    # with the shift kept, the cosines rank the pairs differently (a shifted origin)
    shifted = [w + d for w, d in zip(wide, deep)]
    shifted = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in shifted]
    assert scipy.stats.spearmanr((shifted[0] * shifted[1]).sum(axis=1), labels).statistic < wide_alone - 0.01


def test_a_centred_deep_part_has_no_shift():
    rng = np.random.default_rng(1)
    wide, labels = _pairs(rng)
    deep = [rng.normal(size=(len(labels), 8)) for _ in range(2)]
    mean = np.concatenate(deep).mean(axis=0)
    deep = [d - mean for d in deep]
    out = deep_shift(deep, wide, labels)
    assert out["deep shift"] < 1e-9
    cosines = [w + d for w, d in zip(wide, deep)]
    cosines = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in cosines]
    expected = scipy.stats.spearmanr((cosines[0] * cosines[1]).sum(axis=1), labels).statistic
    assert out["deep centred"] == pytest.approx(expected, abs=1e-9)  # nothing to remove
