"""bench_quality: one demo.sh run per world and seed, each in its own directory, one table."""
import json
import os

import pytest

from bench import bench_quality


def _report(oof):
    return {"rows": [
        {"name": "uniter", "kind": "model", "oof_spearman": oof, "mean_fold_spearman": oof - 0.001},
        {"name": "baseline: linear_metric", "kind": "baseline", "oof_spearman": 0.7, "mean_fold_spearman": 0.7},
    ], "oracle_spearman": 0.9}


def test_every_world_runs_once_per_seed_in_its_own_directory(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_demo(command, env, stdout, stderr):
        """demo.sh as bench_quality sees it: the environment in, a report under RUN out."""
        calls.append({key: env[key] for key in ("DATA", "RUN", "WORLD", "SEED", "MODELS", "FOLDS")})
        os.makedirs(env["RUN"], exist_ok=True)
        with open(os.path.join(env["RUN"], "ensemble_report.json"), "w") as handle:
            json.dump(_report(0.75 + 0.01 * int(env["SEED"])), handle)
        return 0

    monkeypatch.setattr(bench_quality.subprocess, "call", fake_demo)
    out = tmp_path / "q"
    assert bench_quality.main(["--worlds", "demo", "continuous", "--seeds", "0", "2", "--models", "uniter",
                               "--out", str(out)]) == 0
    assert [(c["WORLD"], c["SEED"]) for c in calls] == [("demo", "0"), ("demo", "2"), ("continuous", "0"),
                                                        ("continuous", "2")]
    assert calls[0]["DATA"] == f"{out}/demo/data" and calls[1]["RUN"] == f"{out}/demo_seed2/runs"
    captured = capsys.readouterr()
    table = captured.out
    # a report that names no synthetic data set gets no test-pair row, and says why
    assert "no test-pair row for demo: " in captured.err and "names no synth_meta.json" in captured.err
    assert "| demo | uniter | 0.750 |" in table and "| continuous (seed 2) | uniter | 0.770 |" in table
    saved = json.loads((out / "quality.json").read_text())
    assert saved["seeds"] == [0, 2]
    assert saved["worlds"]["continuous_seed2"]["seed"] == 2
    assert saved["worlds"]["continuous_seed2"]["world"] == "continuous"
    # finished draws are reused, not rerun
    calls.clear()
    bench_quality.main(["--worlds", "demo", "--seeds", "2", "--out", str(out)])
    assert calls == []


def test_the_foreign_world_is_generated_by_the_other_generator_then_run_as_a_users_data(tmp_path, monkeypatch):
    calls = []

    def fake_call(command, env=None, stdout=None, stderr=None, cwd=None):
        calls.append(command[1:] if env is None else ["demo.sh", env["DATA"], env["SEED"]])
        if env is None:  # python -m bench.foreign_world --out DATA ...: what demo.sh will find
            data = command[command.index("--out") + 1]
            os.makedirs(os.path.join(data, "pairwise"))
            open(os.path.join(data, "pairwise", "label.tsv"), "w").close()
        else:
            os.makedirs(env["RUN"], exist_ok=True)
            with open(os.path.join(env["RUN"], "ensemble_report.json"), "w") as handle:
                json.dump(_report(0.75), handle)
        return 0

    monkeypatch.setattr(bench_quality.subprocess, "call", fake_call)
    out = tmp_path / "q"
    assert bench_quality.main(["--worlds", "foreign", "--seeds", "3", "--out", str(out)]) == 0
    data = f"{out}/foreign_seed3/data"
    assert calls == [["-m", "bench.foreign_world", "--out", data, "--seed", "3", "--quiet"], ["demo.sh", data, "3"]]
    with pytest.raises(SystemExit):  # neither foreign nor a world of the synthetic generator
        bench_quality.main(["--worlds", "elsewhere", "--out", str(out)])


def _full_report(single, other, ensemble, floor, oracle, fold_gap=0.001):
    return {"rows": [
        {"name": "uniter", "kind": "model", "oof_spearman": single, "mean_fold_spearman": single - fold_gap},
        {"name": "uniter_roformer", "kind": "model", "oof_spearman": other, "mean_fold_spearman": other},
        {"name": "ensemble", "kind": "ensemble", "oof_spearman": ensemble, "mean_fold_spearman": ensemble},
        {"name": "baseline: linear_metric", "kind": "baseline", "oof_spearman": floor, "mean_fold_spearman": floor},
        {"name": "baseline: whitened_frame", "kind": "baseline", "oof_spearman": floor - 0.1,
         "mean_fold_spearman": floor - 0.1},
        {"name": "oracle", "kind": "oracle", "oof_spearman": None, "mean_fold_spearman": None},
    ], "oracle_spearman": oracle}


def test_verdict_applies_the_issue_bar():
    # floor 0.79 is above 0.8 of the oracle 0.9 (0.72): any margin is enough
    near = bench_quality.verdict("demo", 0, _full_report(0.81, 0.80, 0.815, 0.79, 0.9))
    assert near["best_single"] == "uniter" and near["floor"] == "linear_metric"
    assert abs(near["margin"] - 0.02) < 1e-9 and near["bar"] == 0.0 and near["met"]
    assert abs(near["ensemble_gain"] - 0.005) < 1e-9
    # floor 0.66 is below 0.8 of 0.89 (0.712): +0.03 is short of the +0.05 asked
    far = bench_quality.verdict("continuous", 1, _full_report(0.69, 0.67, 0.70, 0.66, 0.89))
    assert far["bar"] == 0.05 and not far["met"]
    # an ensemble below its best member, or folds whose cosines disagree, fail the draw
    assert not bench_quality.verdict("demo", 0, _full_report(0.81, 0.80, 0.805, 0.79, 0.9))["met"]
    gap = bench_quality.verdict("demo", 0, _full_report(0.81, 0.80, 0.815, 0.79, 0.9, fold_gap=0.03))
    assert abs(gap["fold_gap"] - 0.03) < 1e-9 and not gap["met"]


def test_verdict_table_averages_the_margin_over_draws():
    verdicts = [bench_quality.verdict("sparse_tags", 0, _full_report(0.79, 0.78, 0.795, 0.795, 0.9)),
                bench_quality.verdict("sparse_tags", 1, _full_report(0.76, 0.75, 0.765, 0.75, 0.9))]
    table = bench_quality.verdict_markdown(verdicts)
    assert "| sparse_tags | 0 | uniter 0.7900 | linear_metric 0.7950 | -0.0050 | - | > 0.00 |" in table
    assert "| sparse_tags | 1 | uniter 0.7600 | linear_metric 0.7500 | +0.0100 |" in table
    assert "| sparse_tags | mean of 2 | | | +0.0025 | | | | | 1 of 2 |" in table
    verdicts[0]["interval"] = {"low": -0.012, "high": 0.002, "share_ahead": 0.21}
    assert "| -0.0050 | [-0.012, +0.002], ahead in 21% | > 0.00 |" in bench_quality.verdict_markdown(verdicts)
    # a draw over the bar by less than the noise of its pairs is met, and says so
    verdicts[1]["interval"] = {"low": -0.001, "high": 0.021, "share_ahead": 0.94}
    assert "| +0.0100 | [-0.001, +0.021], ahead in 94% | > 0.00 | +0.0050 | 0.0010 | yes, within noise |" \
        in bench_quality.verdict_markdown(verdicts)
    verdicts[1]["interval"] = {"low": 0.002, "high": 0.021, "share_ahead": 0.99}
    assert "| +0.0050 | 0.0010 | yes |" in bench_quality.verdict_markdown(verdicts)


def test_verdict_names_the_report_that_lacks_a_baseline():
    import pytest
    report = {"rows": [{"name": "uniter", "kind": "model", "oof_spearman": 0.8, "mean_fold_spearman": 0.8}]}
    with pytest.raises(ValueError, match=r"world 'demo' \(seed 3\).*baseline"):
        bench_quality.verdict("demo", 3, report)


def test_an_unknown_world_is_refused_before_any_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_quality.main(["--worlds", "demo", "lunar", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "--worlds: unknown world 'lunar'" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # nothing ran
