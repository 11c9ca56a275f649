"""ensemble_final.py end to end on a fake run directory (2 models x 3 folds of random embeddings)."""
import json
import pathlib
import subprocess
import zipfile
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
import scipy.stats

import ensemble_final
from ensemble.report import MEMBER_ALONE_CAVEAT, ReportRow, check_rows
from infer.embeddings_io import EmbeddingSet, load_embedding_set, make_pairs, save_embeddings
from infer.evaluate import pair_cosines
from infer.submission import validate_result

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDS = (0, 1, 2)
MODELS = {"alpha": 0.3, "beta": 1.5}  # model -> noise level (alpha is the better model)
DIM = 16


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """OpenBLAS threads spin-wait when the 2 cores are shared (the suite runs beside other jobs):
    one thread makes these small SVDs ~20x faster there and changes no result."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """RUN/embeddings/<model>/fold_XX/{test,val}.npz from latent vectors; labels follow the latents."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("run")
    run = root / "run"
    test_ids = [str(900000 + i) for i in range(60)]
    pair_ids = [str(100000 + i) for i in range(90)]
    latent = {key: rng.normal(size=DIM) for key in test_ids + pair_ids}
    fold_pairs = {}
    for fold in FOLDS:
        videos = pair_ids[fold * 30:(fold + 1) * 30]  # folds split by video: no leak
        chosen = rng.choice([(a, b) for i, a in enumerate(videos) for b in videos[i + 1:]], 25, replace=False)
        truth = np.array([latent[a] @ latent[b] / np.linalg.norm(latent[a]) / np.linalg.norm(latent[b])
                          for a, b in chosen])
        scores = np.round(np.clip((truth + 1) / 2 + rng.normal(0, 0.1, len(truth)), 0, 1) * 20) / 20
        fold_pairs[fold] = make_pairs(chosen[:, 0], chosen[:, 1], scores)
    for model, noise in MODELS.items():
        for fold in FOLDS:
            fold_rng = np.random.default_rng([list(MODELS).index(model), fold])
            d = run / "embeddings" / model / f"fold_{fold:02d}"

            def embed(keys, fold_rng=fold_rng, noise=noise):
                return np.stack([latent[k] + fold_rng.normal(0, noise, DIM) for k in keys]).astype(np.float32)

            save_embeddings(d / "test.npz", test_ids, embed(test_ids))
            val_ids = list(dict.fromkeys(np.concatenate([fold_pairs[fold].query, fold_pairs[fold].candidate])))
            save_embeddings(d / "val.npz", val_ids, embed(val_ids), fold_pairs[fold])
    label_lines = [f"{q}\t{c}\t{s:g}" for f in FOLDS for q, c, s in
                   zip(fold_pairs[f].query, fold_pairs[f].candidate, fold_pairs[f].score)]
    (root / "label.tsv").write_text("\n".join(label_lines) + "\n")
    (root / "ids.txt").write_text("\n".join(test_ids) + "\n")
    (root / "synth_meta.json").write_text(json.dumps({"oracle_spearman": 0.9123}))
    (root / "folds").mkdir()
    (root / "folds" / "folds.json").write_text(json.dumps(  # the fields write_tfrecord.py writes that we read
        {"format": "videosim-fold-shards", "num_folds": 3, "folds": [{"fold": f, "pairs": 25} for f in FOLDS]}))
    return run, root, test_ids


def _oof_by_hand(run, model, calibrate=True):
    """Pooled Spearman; calibrated: each fold's 1 - cos divided by its test videos' mean 1 - cos
    (every pair of distinct test videos, by brute force), times the smallest of those means."""
    cosines, scores, distances = [], [], []
    for fold in FOLDS:
        fold_dir = run / "embeddings" / model / f"fold_{fold:02d}"
        val = load_embedding_set(fold_dir / "val.npz")
        cosines.append(pair_cosines(val, val.pairs.query, val.pairs.candidate))
        scores.append(val.pairs.score)
        test = load_embedding_set(fold_dir / "test.npz").embeddings.astype(np.float64)
        unit = test / np.linalg.norm(test, axis=1, keepdims=True)
        off_diagonal = ~np.eye(len(unit), dtype=bool)
        distances.append(float(np.mean(1 - (unit @ unit.T)[off_diagonal])))
    if calibrate:
        cosines = [1 - (1 - c) * min(distances) / d for c, d in zip(cosines, distances)]
    return scipy.stats.spearmanr(np.concatenate(cosines), np.concatenate(scores)).statistic


def test_cli_end_to_end(fake_run, capsys):
    run, root, test_ids = fake_run
    code = ensemble_final.main(["--run", str(run), "--weights", "alpha=1,beta=0.5", "--labels", str(root / "label.tsv"),
                                "--test-ids", str(root / "ids.txt"), "--folds-dir", str(root / "folds"), "--synth-meta", str(root / "synth_meta.json"),
                                "--png"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = captured.out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["model", "weight", "folds"]
    table = {line.split("  ")[0].strip(): line for line in lines[2:6]}
    assert set(table) == {"alpha", "beta", "ensemble (svd, fit on test)", "oracle (synthetic truth)"}
    assert "0.9123" in table["oracle (synthetic truth)"]
    assert "validated" in out
    assert "each fold model's cosines put on one scale" in out

    summary = validate_result(run / "result.zip", test_ids)
    assert summary["num_ids"] == 60 and summary["dim"] == 2 * DIM - 1  # min(256, total_dim - 1)
    report = json.loads((run / "ensemble_report.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert report["weights"] == {"alpha": 1.0, "beta": 0.5} and report["num_pairs"] == 75
    assert report["synth_meta"] == str(root / "synth_meta.json") and report["align_folds"] == "procrustes"
    assert rows["alpha"]["oof_spearman"] == pytest.approx(_oof_by_hand(run, "alpha"))
    assert rows["beta"]["oof_spearman"] == pytest.approx(_oof_by_hand(run, "beta"))
    assert rows["alpha"]["oof_spearman"] > rows["beta"]["oof_spearman"]  # less noise ranks better
    assert f"{rows['alpha']['oof_spearman']:.4f}" in table["alpha"]
    markdown = report["table"].splitlines()
    assert markdown[0].startswith("| model | weight |") and markdown[1].startswith("| --- |") and len(markdown) == 6
    assert rows["ensemble (svd, fit on test)"]["oof_spearman"] > 0.5
    assert report["notes"] == check_rows([ReportRow(**row) for row in report["rows"]])
    assert [line for line in lines if line.startswith("note: ")] == [f"note: {n}" for n in report["notes"]]
    assert (run / "ensemble_report.png").stat().st_size > 1000
    headroom = report["headroom"]  # agreement and the best in-sample weights, on the same pooled cosines
    assert headroom["best_member"] == "alpha"
    assert headroom["best_member_spearman"] == pytest.approx(rows["alpha"]["oof_spearman"])
    assert headroom["best_spearman"] >= headroom["best_member_spearman"] and headroom["gain"] >= 0
    assert 0 < headroom["agreement"]["alpha ~ beta"] < 0.99  # beta's large noise: they rank pairs differently
    member_lines = [line for line in lines if line.startswith("member agreement")]
    assert len(member_lines) == 1 and f"alpha ~ beta {headroom['agreement']['alpha ~ beta']:.4f}" in member_lines[0]
    avg = load_embedding_set(run / "embeddings" / "alpha" / "avg" / "test.npz")
    assert avg.ids.tolist() == test_ids and avg.dim == DIM


def test_a_second_ensemble_elsewhere_keeps_the_runs_report(fake_run, tmp_path, capsys):
    """--out elsewhere writes the report (and the png) beside that zip, not over RUN's."""
    run, root, _ = fake_run
    assert ensemble_final.main(["--run", str(run), "--png"]) == 0
    first_png = (run / "ensemble_report.png").read_bytes()
    first = json.loads((run / "ensemble_report.json").read_text())
    assert first["weights"] == {"alpha": 1.0, "beta": 1.0}
    assert first["report_path"] == str(run / "ensemble_report.json")
    other = tmp_path / "other" / "alpha_only.zip"
    other.parent.mkdir()
    assert ensemble_final.main(["--run", str(run), "--weights", "alpha=1,beta=0.25", "--out", str(other), "--png"]) == 0
    assert f"and {other.parent / 'ensemble_report.json'}" in capsys.readouterr().out
    assert json.loads((run / "ensemble_report.json").read_text()) == first
    second = json.loads((other.parent / "ensemble_report.json").read_text())
    assert second["weights"] == {"alpha": 1.0, "beta": 0.25} and second["result"]["path"] == str(other)
    assert (other.parent / "ensemble_report.png").stat().st_size > 1000
    assert (run / "ensemble_report.png").read_bytes() == first_png


def test_weighted_rule_ensemble_oof_matches_manual(fake_run, capsys):
    run, root, test_ids = fake_run
    out = root / "weighted.zip"
    report = ensemble_final.run_ensemble(str(run), ["alpha", "beta"], [1.0, 2.0], rule="weighted", out=str(out),
                                         calibrate="none")
    cosines, scores = [], []
    for fold in FOLDS:
        sets = [load_embedding_set(run / "embeddings" / m / f"fold_{fold:02d}" / "val.npz") for m in ("alpha", "beta")]
        emb = sum(w * s.lookup(sets[0].ids) / np.linalg.norm(s.lookup(sets[0].ids), axis=1, keepdims=True)
                  for w, s in zip((1.0, 2.0), sets))
        combined = EmbeddingSet.create(sets[0].ids, emb)
        cosines.append(pair_cosines(combined, sets[0].pairs.query, sets[0].pairs.candidate))
        scores.append(sets[0].pairs.score)
    expected = scipy.stats.spearmanr(np.concatenate(cosines), np.concatenate(scores)).statistic
    ensemble_row = [row for row in report["rows"] if row["kind"] == "ensemble"][0]
    assert ensemble_row["name"] == "ensemble (weighted)"
    assert ensemble_row["oof_spearman"] == pytest.approx(expected, abs=1e-6)
    assert validate_result(out, test_ids)["dim"] == DIM  # weighted sum keeps the models' dimension


def test_one_member_has_no_headroom_line(fake_run, tmp_path, capsys):
    run, _, _ = fake_run
    assert ensemble_final.main(["--run", str(run), "--models", "alpha", "--out", str(tmp_path / "one.zip")]) == 0
    assert "member agreement" not in capsys.readouterr().out
    assert json.loads((tmp_path / "ensemble_report.json").read_text())["headroom"] is None


def test_fit_on_val_and_subprocess(fake_run):
    run, root, test_ids = fake_run
    out = root / "val_fit.zip"
    done = subprocess.run([sys.executable, "ensemble_final.py", "--run", str(run), "--rule", "svd", "--fit-on", "val",
                           "--dim", "8", "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "ensemble (svd, fit on val)" in done.stdout
    assert validate_result(out, test_ids)["dim"] == 8


def test_cli_errors(fake_run, capsys):
    run, root, _ = fake_run
    assert ensemble_final.main(["--run", str(run), "--weights", "alpha=1,gamma=2", "--models", "alpha,beta"]) == 2
    assert "missing ['beta'], not among the models ['gamma']" in capsys.readouterr().err
    assert ensemble_final.main(["--run", str(run), "--models", "alpha,nosuch"]) == 2
    assert "nosuch: model embedding directory not found" in capsys.readouterr().err
    bad_labels = root / "more_labels.tsv"
    bad_labels.write_text((root / "label.tsv").read_text() + "1\t2\t0.5\n")
    assert ensemble_final.main(["--run", str(run), "--labels", str(bad_labels), "--out", str(root / "x.zip")]) == 2
    assert "1 labelled pair(s) in no fold's val.npz, first 1/2" in capsys.readouterr().err
    assert not (root / "x.zip").exists()
    assert ensemble_final.main(["--run", str(run), "--synth-meta", str(root / "absent.json")]) == 2
    assert "absent.json: cannot read synthetic-data metadata" in capsys.readouterr().err
    bad_folds = root / "bad_folds"
    bad_folds.mkdir()
    (bad_folds / "folds.json").write_text(json.dumps(
        {"format": "videosim-fold-shards", "folds": [{"fold": 0, "pairs": 25}, {"fold": 1, "pairs": 24},
                                                     {"fold": 2, "pairs": 26}]}))
    assert ensemble_final.main(["--run", str(run), "--folds-dir", str(bad_folds)]) == 2
    assert "fold_01/val.npz: 25 validation pairs, but fold 1's shard holds 24" in capsys.readouterr().err
    assert ensemble_final.main(["--run", str(run), "--rule", "mean", "--weights", "alpha=1,beta=2"]) == 2
    assert "use --rule weighted" in capsys.readouterr().err
    assert ensemble_final.parse_weights("a=1, b=0.25", None) == {"a": 1.0, "b": 0.25}
    weights_file = root / "w.json"
    weights_file.write_text(json.dumps({"alpha": -1}))
    with pytest.raises(ensemble_final.DataError, match="must be a finite number >= 0"):
        ensemble_final.parse_weights(None, str(weights_file))


def test_baseline_member_and_baseline_rows(fake_run, tmp_path, capsys):
    """A strong baseline of --baselines-dir can join the ensemble (baseline:NAME) and is scored as a row."""
    import shutil

    run, root, _ = fake_run
    baselines = tmp_path / "baselines"
    shutil.copytree(run / "embeddings" / "beta", baselines / "lin", ignore=shutil.ignore_patterns("avg"))
    out = tmp_path / "result.zip"
    code = ensemble_final.main(["--run", str(run), "--models", "alpha,baseline:lin", "--baselines-dir", str(baselines),
                                "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "ensemble_report.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert report["models"] == ["alpha", "baseline:lin"]
    assert rows["baseline:lin"]["oof_spearman"] == pytest.approx(_oof_by_hand(run, "beta"))
    assert rows["baseline: lin"]["kind"] == "baseline"
    assert rows["baseline: lin"]["oof_spearman"] == pytest.approx(rows["baseline:lin"]["oof_spearman"])
    assert (baselines / "lin" / "avg" / "test.npz").is_file()
    code = ensemble_final.main(["--run", str(run), "--models", "alpha,baseline:lin", "--out", str(out)])
    assert code == 2 and "needs --baselines-dir" in capsys.readouterr().err


def test_auto_weights_are_cross_fitted_and_reported(fake_run, tmp_path, capsys):
    """--weights auto: fold k's ensemble uses weights chosen on the other folds' pairs, the final
    ensemble weights chosen on all pairs; the OOF score is that of the per-fold weights."""
    from ensemble.weights import cross_fitted_weights, fold_cosines

    run, root, test_ids = fake_run
    out = tmp_path / "auto.zip"
    code = ensemble_final.main(["--run", str(run), "--models", "alpha,beta", "--weights", "auto", "--rule", "weighted",
                                "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ensemble (weighted, auto weights)" in captured.out
    report = json.loads((tmp_path / "ensemble_report.json").read_text())
    assert report["weights_chosen"] == "auto"
    val_sets = {m: {f: load_embedding_set(run / "embeddings" / m / f"fold_{f:02d}" / "val.npz") for f in FOLDS}
                for m in ("alpha", "beta")}
    per_fold, final = cross_fitted_weights(fold_cosines(val_sets, ["alpha", "beta"], FOLDS))
    assert report["weights"] == pytest.approx(dict(zip(["alpha", "beta"], final.tolist())))
    assert report["weights"]["alpha"] > report["weights"]["beta"]  # alpha is the less noisy model
    for fold in FOLDS:
        assert report["fold_weights"][str(fold)] == pytest.approx(dict(zip(["alpha", "beta"], per_fold[fold].tolist())))
    cosines, scores = [], []  # the weighted rule by hand, each fold with its own cross-fitted weights
    for fold in FOLDS:
        sets = [val_sets[m][fold] for m in ("alpha", "beta")]
        ids = sets[0].ids
        emb = sum(w * s.lookup(ids) / np.linalg.norm(s.lookup(ids), axis=1, keepdims=True)
                  for w, s in zip(per_fold[fold], sets))
        cosines.append(pair_cosines(EmbeddingSet.create(ids, emb), sets[0].pairs.query, sets[0].pairs.candidate))
        scores.append(sets[0].pairs.score)
    expected = scipy.stats.spearmanr(np.concatenate(cosines), np.concatenate(scores)).statistic
    ensemble_row = [row for row in report["rows"] if row["kind"] == "ensemble"][0]
    assert ensemble_row["oof_spearman"] == pytest.approx(expected, abs=1e-6)
    assert validate_result(out, test_ids)["num_ids"] == len(test_ids)
    assert "warning: --weights auto" not in captured.err  # three folds: no warning
    assert ensemble_final.main(["--run", str(run), "--weights", "auto", "--rule", "mean"]) == 2
    assert "--weights auto needs --rule svd or weighted" in capsys.readouterr().err


def test_auto_weights_warn_with_two_folds(fake_run, tmp_path, capsys):
    import shutil

    run, root, test_ids = fake_run
    two = tmp_path / "two"
    for model in MODELS:
        for fold in (0, 1):
            shutil.copytree(run / "embeddings" / model / f"fold_{fold:02d}", two / "embeddings" / model / f"fold_{fold:02d}")
    assert ensemble_final.main(["--run", str(two), "--weights", "auto", "--out", str(tmp_path / "r.zip")]) == 0
    assert "warning: --weights auto with 2 fold(s)" in capsys.readouterr().err
    report = json.loads((tmp_path / "ensemble_report.json").read_text())  # beside --out
    assert set(report["fold_weights"]) == {"0", "1"}


def test_fold_models_on_different_scales_are_calibrated_before_pooling(fake_run, tmp_path, capsys):
    """A fold model whose cosines all sit nearer 1 (a constant vector added to its embeddings) ranks
    its own pairs as well, but pooled raw its pairs outrank the other folds'; the default calibration
    (each fold's distances divided by its test videos' mean distance) restores the pooled score."""
    import shutil

    run, _, _ = fake_run
    shifted = tmp_path / "run"
    shutil.copytree(run / "embeddings", shifted / "embeddings", ignore=shutil.ignore_patterns("avg"))
    for name in ("val.npz", "test.npz"):
        path = shifted / "embeddings" / "alpha" / "fold_01" / name
        data = load_embedding_set(path)
        unit = data.embeddings / np.linalg.norm(data.embeddings, axis=1, keepdims=True)
        save_embeddings(path, data.ids, (unit + 1.5 / np.sqrt(DIM)).astype(np.float32), data.pairs)
    reports = {}
    for method in ("distance", "none"):
        out = tmp_path / method / "result.zip"
        assert ensemble_final.main(["--run", str(shifted), "--out", str(out), "--calibrate", method]) == 0
        reports[method] = json.loads((out.parent / "ensemble_report.json").read_text())
    capsys.readouterr()
    rows = {method: {row["name"]: row for row in report["rows"]} for method, report in reports.items()}
    calibrated, raw = rows["distance"]["alpha"], rows["none"]["alpha"]
    assert calibrated["mean_fold_spearman"] == pytest.approx(raw["mean_fold_spearman"])  # monotone per fold
    assert raw["oof_spearman"] == pytest.approx(_oof_by_hand(shifted, "alpha", calibrate=False))
    assert calibrated["oof_spearman"] == pytest.approx(_oof_by_hand(shifted, "alpha"))
    assert calibrated["oof_spearman"] > raw["oof_spearman"] + 0.05
    assert abs(calibrated["oof_spearman"] - calibrated["mean_fold_spearman"]) < abs(
        raw["oof_spearman"] - raw["mean_fold_spearman"])
    distances = reports["distance"]["fold_distances"]["alpha"]
    assert distances["1"] < 0.5 * distances["0"] and reports["none"]["fold_distances"] == {}
    assert reports["distance"]["calibrate"] == "distance"
    # the submission (fold averages) is the same either way
    with zipfile.ZipFile(tmp_path / "distance" / "result.zip") as a, zipfile.ZipFile(tmp_path / "none" / "result.zip") as b:
        assert a.read("result.json") == b.read("result.json")
    # the baselines' rows are calibrated the same way (a baseline made of the shifted model scores as it)
    out = tmp_path / "with_baseline" / "result.zip"
    assert ensemble_final.main(["--run", str(shifted), "--out", str(out), "--baselines-dir",
                                str(shifted / "embeddings"), "--models", "beta"]) == 0
    capsys.readouterr()
    report = json.loads((out.parent / "ensemble_report.json").read_text())
    with_baseline = {row["name"]: row for row in report["rows"]}
    assert with_baseline["baseline: alpha"]["oof_spearman"] == pytest.approx(calibrated["oof_spearman"])
    assert report["fold_distances"]["baseline:alpha"] == pytest.approx(distances)


def test_fold_models_in_rotated_coordinates_are_aligned_before_the_fold_average(fake_run, tmp_path, capsys):
    """Fold models 1 and 2 of alpha embed in coordinates rotated against fold 0 (as the robust
    recipe's per-fold wide paths do): their cosines, and so every out-of-fold row, are unchanged,
    and with the default --align-folds procrustes the fold average (and result.zip) is exactly the
    unrotated run's; --align-folds none averages the raw vectors and loses that."""
    import shutil

    run, _, _ = fake_run
    rotated = tmp_path / "run"
    shutil.copytree(run / "embeddings", rotated / "embeddings", ignore=shutil.ignore_patterns("avg"))
    rng = np.random.default_rng(7)
    for fold in (1, 2):
        turn, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
        for name in ("val.npz", "test.npz"):
            path = rotated / "embeddings" / "alpha" / f"fold_{fold:02d}" / name
            data = load_embedding_set(path)
            save_embeddings(path, data.ids, (data.embeddings.astype(np.float64) @ turn).astype(np.float32), data.pairs)
    reports, averages = {}, {}
    for name, source, method in (("original", run, "procrustes"), ("aligned", rotated, "procrustes"),
                                 ("raw", rotated, "none")):
        out = tmp_path / name / "result.zip"
        assert ensemble_final.main(["--run", str(source), "--out", str(out), "--align-folds", method]) == 0
        reports[name] = json.loads((out.parent / "ensemble_report.json").read_text())
        averages[name] = load_embedding_set(source / "embeddings" / "alpha" / "avg" / "test.npz")
        rotations_file = source / "embeddings" / "alpha" / "avg" / "fold_rotations.npz"
        assert rotations_file.is_file() == (method == "procrustes")  # a raw average removes stale ones
        if name == "aligned":
            rotations = dict(np.load(rotations_file))
    capsys.readouterr()
    assert reports["aligned"]["align_folds"] == "procrustes" and reports["raw"]["align_folds"] == "none"
    rows = {name: {row["name"]: row for row in report["rows"]} for name, report in reports.items()}
    for model in ("alpha", "beta"):  # rotations change no cosine within a fold
        for name in ("aligned", "raw"):
            assert rows[name][model]["oof_spearman"] == pytest.approx(rows["original"][model]["oof_spearman"])
            assert rows[name][model]["mean_fold_spearman"] == pytest.approx(
                rows["original"][model]["mean_fold_spearman"])
    np.testing.assert_allclose(averages["aligned"].embeddings, averages["original"].embeddings, atol=1e-5)
    assert np.abs(averages["raw"].embeddings - averages["original"].embeddings).max() > 0.1
    assert sorted(rotations) == ["fold_00", "fold_01", "fold_02"]
    np.testing.assert_array_equal(rotations["fold_00"], np.eye(DIM))
    with zipfile.ZipFile(tmp_path / "aligned" / "result.zip") as a, zipfile.ZipFile(tmp_path / "raw" / "result.zip") as b:
        assert a.read("result.json") != b.read("result.json")


def test_an_ensemble_below_its_best_member_gets_a_note(fake_run, tmp_path, capsys):
    run, root, _ = fake_run
    out = tmp_path / "weighted.zip"
    code = ensemble_final.main(["--run", str(run), "--weights", "alpha=0.05,beta=1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((tmp_path / "ensemble_report.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    ensemble, alpha = rows["ensemble (svd, fit on test)"]["oof_spearman"], rows["alpha"]["oof_spearman"]
    assert ensemble < alpha  # mostly the noisier member
    assert report["notes"][0] == (f"the ensemble (svd, fit on test) is {alpha - ensemble:.4f} below its best member "
                                  f"alpha out of fold ({ensemble:.4f} vs {alpha:.4f}); --models alpha submits that "
                                  f"member alone, {MEMBER_ALONE_CAVEAT}")
    assert f"note: {report['notes'][0]}" in captured.out.splitlines()
