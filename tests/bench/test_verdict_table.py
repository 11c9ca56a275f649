"""verdict_table: the issue's bar for run directories already made, from their reports and embeddings."""
import json

import pytest

from bench import verdict_table
from tests.bench.test_margin_interval import _latent_and_fold_pairs, _write_system


def _run(tmp_path, model_noise, baseline_noise, model_oof, floor_oof):
    latent, fold_pairs = _latent_and_fold_pairs(5)
    run = tmp_path / "runs_continuous_s2"
    _write_system(run / "embeddings" / "uniter", latent, fold_pairs, model_noise, 0)
    _write_system(run / "baselines" / "linear_metric", latent, fold_pairs, baseline_noise, 1)
    rows = [{"name": "uniter", "kind": "model", "oof_spearman": model_oof, "mean_fold_spearman": model_oof - 0.003},
            {"name": "ensemble (svd, fit on test)", "kind": "ensemble", "oof_spearman": model_oof + 0.002,
             "mean_fold_spearman": model_oof + 0.002},
            {"name": "baseline: linear_metric", "kind": "baseline", "oof_spearman": floor_oof,
             "mean_fold_spearman": floor_oof}]
    (run / "ensemble_report.json").write_text(json.dumps({"rows": rows, "oracle_spearman": 0.9}))
    return run


def test_a_run_gets_its_verdict_row_with_the_margins_interval(tmp_path, capsys):
    run = _run(tmp_path, 0.1, 2.0, 0.85, 0.60)
    out = tmp_path / "verdicts.md"
    assert verdict_table.main([f"continuous:2={run}", "--draws", "200", "--markdown", str(out)]) == 0
    printed = capsys.readouterr().out
    # floor 0.60 is below 0.8 of the oracle 0.9: +0.05 asked, +0.25 given, and the interval clears it
    assert "| continuous | 2 | uniter 0.8500 | linear_metric 0.6000 | +0.2500 |" in printed
    assert "| > 0.05 | +0.0020 | 0.0030 | yes |" in printed
    assert out.read_text() == printed
    row = verdict_table.run_verdict("continuous", "2", str(run), [0, 1], draws=200)
    assert row["interval"]["pairs"] == 240 and row["interval"]["low"] > 0.05 and row["oracle"] == 0.9


def test_the_name_defaults_to_the_directory_and_a_missing_report_is_named(tmp_path, capsys):
    assert verdict_table.parse_run("random-1:0=/x/runs4") == ("random-1", "0", "/x/runs4")
    assert verdict_table.parse_run("/x/runs4_demo_s0/") == ("runs4_demo_s0", "-", "/x/runs4_demo_s0/")
    assert verdict_table.main([str(tmp_path / "nothing")]) == 2
    assert "nothing/ensemble_report.json: no ensemble report" in capsys.readouterr().err


def test_a_ceiling_adds_the_headroom_table_and_a_bad_one_is_named(tmp_path, capsys):
    run = _run(tmp_path, 0.1, 2.0, 0.85, 0.60)
    ceiling = tmp_path / "ceiling.json"
    row = {"world": "continuous", "seed": 2, "folds": [0, 1], "readout:all": 0.8, "known:all": 0.90}
    ceiling.write_text(json.dumps([row, {**row, "seed": 3, "known:all": 0.5}]))
    assert verdict_table.main([f"continuous:2={run}", f"continuous:5={run}", "--draws", "50",
                               "--ceiling", str(ceiling)]) == 0
    captured = capsys.readouterr()
    # headroom 0.90 - 0.60 = 0.30, of which the best single model (0.85) takes 0.25: 83%
    assert ("| continuous | 2 | linear_metric 0.6000 | uniter 0.8500 | 0.800 | 0.900 | +0.300 | 83% |"
            in captured.out)
    assert "| continuous | 5 | linear_metric" not in captured.out.split("known: all − floor")[1]
    assert "no ceiling row for continuous seed 5" in captured.err
    ceiling.write_text(json.dumps([{**row, "folds": [0]}]))
    assert verdict_table.main([f"continuous:2={run}", "--ceiling", str(ceiling)]) == 2
    assert "scores folds [0], the runs folds [0, 1]" in capsys.readouterr().err
    ceiling.write_text(json.dumps([{key: value for key, value in row.items() if key != "known:all"}]))
    assert verdict_table.main([f"continuous:2={run}", "--ceiling", str(ceiling)]) == 2
    assert "lacks ['known:all']" in capsys.readouterr().err


def test_test_truth_adds_the_submission_on_the_test_pairs(tmp_path, capsys, synthetic_data):
    """--test-truth: the submission and the best member's fold average against the floor's on the test
    pairs of the data set the report names (bench.truth_on_test), and a clear error without it."""
    import numpy as np

    from tests.bench.test_truth_on_test import _write_model, write_floor_and_submission
    from tfrecord_tools import synth

    ids, latents = synth.true_latents("tiny", seed=0)["test"]
    ids = list(ids)
    rng = np.random.default_rng(3)
    dim = latents.shape[1]
    run = _run(tmp_path, 0.1, 2.0, 0.85, 0.60)
    for name, noise in (("uniter", 0.3), ("cross_modal", 0.6)):
        _write_model(run / "embeddings" / name, ids, [latents + rng.normal(0, noise / np.sqrt(dim), latents.shape)
                                                      for _ in range(2)], rng)
    write_floor_and_submission(run, ids, latents, rng, floor_noise=1.0, submission_noise=0.2)
    report_path = run / "ensemble_report.json"
    report = json.loads(report_path.read_text())
    assert verdict_table.main([f"continuous:2={run}", "--draws", "100", "--test-truth"]) == 2
    assert "names no synth_meta.json" in capsys.readouterr().err
    report_path.write_text(json.dumps({**report, "synth_meta": str(synthetic_data / "synth_meta.json")}))

    row = verdict_table.held_out_row("continuous", "2", str(run), draws=100)
    assert row["best_member"] == "uniter" and row["best_member_score"] > row["floor"]
    assert row["submission"] > row["best_member_score"]  # the least noisy vectors of the three
    assert row["submission_vs_floor"]["difference"] == pytest.approx(row["submission"] - row["floor"])
    assert row["submission_vs_floor"]["low"] > 0 and 0.5 < row["oracle"] < 1
    assert verdict_table.main([f"continuous:2={run}", "--draws", "100", "--test-truth"]) == 0
    printed = capsys.readouterr().out
    assert "| submission − floor (90% interval) |" in printed
    assert (f"| continuous | 2 | {row['pairs']} ({row['oracle']:.4f}) | {verdict_table.closest_pairs(row['coverage'])} | "
            f"{row['floor']:.4f} | uniter {row['best_member_score']:.4f} | {row['submission']:.4f} |") in printed
    assert "| closest pairs: drawn / asked |" in printed


def test_closest_pairs_names_the_short_top_bins():
    assert verdict_table.closest_pairs(None) == "all drawn"
    assert verdict_table.closest_pairs({"closest_short_bins": 0, "short_bins": 1}) == "all drawn"
    assert verdict_table.closest_pairs({"closest_short_bins": 8, "closest_share": 0.4, "closest_drawn": 1095,
                                        "closest_asked": 8000}) == "top 40%: 1095 / 8000"
    assert verdict_table.closest_pairs(None, "graph") == "test graph"  # synth --test-graph: every edge labelled
