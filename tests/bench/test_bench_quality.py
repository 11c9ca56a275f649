"""bench_quality: one demo.sh run per world and seed, each in its own directory, one table."""
import json
import os

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
    table = capsys.readouterr().out
    assert "| demo | uniter | 0.750 |" in table and "| continuous (seed 2) | uniter | 0.770 |" in table
    saved = json.loads((out / "quality.json").read_text())
    assert saved["seeds"] == [0, 2]
    assert saved["worlds"]["continuous_seed2"]["seed"] == 2
    assert saved["worlds"]["continuous_seed2"]["world"] == "continuous"
    # finished draws are reused, not rerun
    calls.clear()
    bench_quality.main(["--worlds", "demo", "--seeds", "2", "--out", str(out)])
    assert calls == []
