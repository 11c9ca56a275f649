"""ensemble.report.check_rows: the notes under the ensemble table."""
import math

from ensemble.report import MEMBER_ALONE_CAVEAT, ReportRow, check_rows


def _rows(ensemble=0.81, alpha=0.80, beta=0.78, floor=0.75, alpha_mean=0.80):
    return [ReportRow("alpha", "model", alpha, alpha_mean, 1.0, 2, 638),
            ReportRow("beta", "model", beta, beta, 1.0, 2, 638),
            ReportRow("ensemble (svd, fit on test)", "ensemble", ensemble, ensemble, None, 2, 638),
            ReportRow("baseline: linear_metric", "baseline", floor, None, None, None, 638),
            ReportRow("oracle (synthetic truth)", "oracle", 0.99)]


def test_nothing_to_say_when_the_ensemble_leads_and_the_folds_agree():
    assert check_rows(_rows()) == []


def test_an_ensemble_below_its_best_member_is_named_with_the_fix_and_its_caveat():
    notes = check_rows(_rows(ensemble=0.7952, alpha=0.80))
    assert notes == ["the ensemble (svd, fit on test) is 0.0048 below its best member alpha out of fold "
                     "(0.7952 vs 0.8000); --models alpha submits that member alone, " + MEMBER_ALONE_CAVEAT]


def test_a_single_member_ensemble_is_not_compared_with_itself():
    rows = [r for r in _rows(ensemble=0.79) if r.name != "beta"]
    assert check_rows(rows) == []


def test_no_model_above_the_floor():
    notes = check_rows(_rows(ensemble=0.82, alpha=0.80, floor=0.80))
    assert notes == ["no model beats the best strong baseline out of fold: alpha 0.8000 vs baseline: linear_metric "
                     "0.8000"]


def test_a_fold_gap_over_the_limit_and_only_over_it():
    notes = check_rows(_rows(alpha=0.80, alpha_mean=0.825))
    assert len(notes) == 1 and notes[0].startswith("alpha: out-of-fold Spearman 0.8000 is -0.0250 from its mean fold")
    assert check_rows(_rows(alpha=0.80, alpha_mean=0.815)) == []
    assert check_rows(_rows(alpha=0.80, alpha_mean=0.815), fold_gap_limit=0.01)[0].startswith("alpha:")


def test_missing_and_nan_scores_are_skipped():
    rows = _rows() + [ReportRow("gamma", "model", math.nan, math.nan, 1.0, 2, 638),
                      ReportRow("baseline: none", "baseline", None)]
    assert check_rows(rows) == []
