"""ensemble.headroom: member agreement and the best in-sample weights."""
import json

import numpy as np
import pytest
import scipy.stats

from ensemble.headroom import Headroom, member_headroom


def _members(seed=0, pairs=400):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=pairs)
    scores = truth + rng.normal(0, 0.3, pairs)
    good = truth + rng.normal(0, 0.5, pairs)
    other = truth + rng.normal(0, 0.5, pairs)  # as good, errors independent of good's
    return truth, scores, good, other


def test_agreement_is_the_spearman_between_members():
    _, scores, good, other = _members()
    copy = good * 3 + 1  # a monotone copy ranks every pair alike
    headroom = member_headroom(np.stack([good, other, copy], 1), scores, ["good", "other", "copy"])
    assert list(headroom.agreement) == ["good ~ other", "good ~ copy", "other ~ copy"]
    assert headroom.agreement["good ~ other"] == pytest.approx(scipy.stats.spearmanr(good, other).statistic)
    assert headroom.agreement["good ~ copy"] == pytest.approx(1.0)


def test_independent_errors_leave_room_and_a_copy_leaves_none():
    _, scores, good, other = _members()
    both = member_headroom(np.stack([good, other], 1), scores, ["good", "other"])
    alone = [scipy.stats.spearmanr(c, scores).statistic for c in (good, other)]
    assert both.best_member == ["good", "other"][int(np.argmax(alone))]
    assert both.best_member_spearman == pytest.approx(max(alone))
    assert both.gain > 0.02  # averaging two independent errors helps
    assert sum(both.best_weights.values()) == pytest.approx(1.0)
    assert 0.2 <= both.best_weights["good"] <= 0.8
    combined = np.stack([good, other], 1) @ np.array(list(both.best_weights.values()))
    assert both.best_spearman == pytest.approx(scipy.stats.spearmanr(combined, scores).statistic)
    copy = member_headroom(np.stack([good, 2 * good], 1), scores, ["good", "twice"])
    assert copy.gain == pytest.approx(0.0, abs=1e-12)


def test_describe_and_round_trip():
    _, scores, good, other = _members()
    headroom = member_headroom(np.stack([good, other], 1), scores, ["a", "b"])
    line = headroom.describe()
    assert line.startswith("member agreement (Spearman between their out-of-fold cosines): a ~ b ")
    assert f"would score {headroom.best_spearman:.4f}, {headroom.gain:+.4f} over {headroom.best_member} alone" in line
    as_dict = headroom.to_dict()
    assert as_dict["gain"] == pytest.approx(headroom.gain) and as_dict["line"] == line
    assert Headroom(**{k: v for k, v in as_dict.items() if k not in ("gain", "line")}) == headroom
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict


def test_a_member_without_a_ranking_gives_none_not_nan():
    _, scores, good, _ = _members()
    headroom = member_headroom(np.stack([good, np.zeros_like(good)], 1), scores, ["good", "flat"])
    assert headroom.best_member == "good" and headroom.gain == pytest.approx(0.0, abs=1e-12)
    as_dict = headroom.to_dict()
    assert as_dict["agreement"] == {"good ~ flat": None}
    json.dumps(as_dict, allow_nan=False)  # strict JSON: no NaN
    assert "good ~ flat nan" in as_dict["line"]


def test_bad_shapes_are_refused():
    _, scores, good, _ = _members()
    with pytest.raises(ValueError, match="at least two members"):
        member_headroom(good[:, None], scores, ["good"])
    with pytest.raises(ValueError, match="for 3 members"):
        member_headroom(np.stack([good, good], 1), scores, ["a", "b", "c"])
