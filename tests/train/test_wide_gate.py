"""`train.wide_gate`: the wide path's gate chosen on the validation pairs of a model's folds, set by
`infer.embed.load_run`, recorded in the embeddings' provenance."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tfrecord_tools.errors import DataError
from train import wide_gate


def _parts(rng, labels_from: str, pairs: int = 200, dim: int = 6, gate: float = 1.0) -> wide_gate.PairParts:
    """Pairs whose labels follow the cosine of their deep parts or of their wide parts."""
    deep = tuple(rng.normal(size=(pairs, dim)) for _ in range(2))
    wide = tuple(rng.normal(size=(pairs, dim)) for _ in range(2))
    wide = tuple(w / np.linalg.norm(w, axis=1, keepdims=True) for w in wide)
    source = deep if labels_from == "deep" else wide
    unit = [s / np.linalg.norm(s, axis=1, keepdims=True) for s in source]
    return wide_gate.PairParts(deep, wide, (unit[0] * unit[1]).sum(axis=1), gate)


def test_the_gate_goes_where_the_labels_are():
    rng = np.random.default_rng(0)
    wide = {"fold_00": _parts(rng, "wide"), "fold_01": _parts(rng, "wide")}
    for rule in wide_gate.RULES:
        gate, scores = wide_gate.choose_gate(wide, rule=rule)
        assert gate == wide_gate.WIDE_ALONE and list(scores) == sorted(scores) and scores[4.0] > scores[1.0]
        gate, scores = wide_gate.choose_gate({"fold_00": _parts(rng, "deep")}, rule=rule)
        assert gate == 1.0 and scores[1.0] > scores[4.0] > scores[wide_gate.WIDE_ALONE]
    assert wide_gate.DEFAULT_RULE == "one-se" and wide_gate.DEFAULT_GRID[-1] == wide_gate.WIDE_ALONE
    # the score is the mean over the folds of each fold's own Spearman
    a, b = _parts(rng, "deep"), _parts(rng, "wide")
    _, scores = wide_gate.choose_gate({"a": a, "b": b}, grid=[2.0])
    assert scores[2.0] == pytest.approx((a.spearman(2.0) + b.spearman(2.0)) / 2)


def test_a_tie_keeps_the_smallest_gate_and_bad_grids_are_refused():
    rng = np.random.default_rng(1)
    parts = _parts(rng, "wide")
    flat = wide_gate.PairParts(tuple(np.zeros_like(d) for d in parts.deep), parts.wide, parts.labels, 1.0)
    gate, scores = wide_gate.choose_gate({"f": flat}, rule="best")  # no deep part: every gate gives the same cosines
    assert gate == 1.0 and len(set(round(s, 12) for s in scores.values())) == 1
    for grid in ([], [0.0, 1.0], [float("nan")], [-2.0]):
        with pytest.raises(ValueError, match="positive finite gates"):
            wide_gate.choose_gate({"f": parts}, grid)
    with pytest.raises(ValueError, match="no folds"):
        wide_gate.choose_gate({})


def test_gate_files_are_validated(tmp_path):
    assert wide_gate.read_gate(str(tmp_path)) is None
    (tmp_path / wide_gate.GATE_FILE).write_text('{"gate": -1, "checkpoint_md5": "x"}')
    with pytest.raises(DataError, match=r"wide_gate.json.*gate.*positive finite number, got -1"):
        wide_gate.read_gate(str(tmp_path))
    (tmp_path / wide_gate.GATE_FILE).write_text("{not json")
    with pytest.raises(DataError, match=r"wide_gate.json.*not a readable gate choice.*rerun python -m train.wide_gate"):
        wide_gate.read_gate(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no finished fold runs"):
        wide_gate.fold_runs(str(tmp_path))


@pytest.fixture(scope="module")
def gated_model(synthetic_data, folds_dir, tmp_path_factory):
    """A tiny wide-path uniter finetuned on folds 0 and 1 (RUN/finetune/uniter/fold_0X)."""
    from tests.train.helpers import TINY_RUN
    from train.finetune import main as finetune
    from train.pretrain import main as pretrain

    root = tmp_path_factory.mktemp("wide_gate")
    recipe = ["model.text_source=title+asr", "model.title_len=32", "model.frame_normalization=standardize",
              "model.wide.enabled=true", "model.wide.frame_width=16", "model.wide.text_width=8"]
    pre = root / "pretrain" / "uniter"
    assert pretrain(["--model", "uniter", "--data", str(synthetic_data), "--out", str(pre), "--preset", "tiny",
                     "max_steps=4", *TINY_RUN, *recipe]) == 0
    model_dir = root / "finetune" / "uniter"
    for fold in (0, 1):
        assert finetune(["--model", "uniter", "--folds-dir", str(folds_dir), "--fold", str(fold),
                         "--out", str(model_dir / f"fold_{fold:02d}"), "--pretrained", str(pre), "epochs=1",
                         "steps_per_epoch=3", *TINY_RUN]) == 0
    return model_dir


def test_the_choice_is_written_to_every_fold_and_load_run_embeds_with_it(gated_model, capsys):
    from infer.embed import checkpoint_of, embed_pair_shard, load_run, run_identity, validation_shard
    from infer.embed_all import _stale

    fold_0 = gated_model / "fold_00"
    trained = load_run(fold_0)  # no choice yet: the trained gate
    parts = wide_gate.pair_parts(trained)
    assert parts.trained_gate == pytest.approx(float(trained.model.wide_path.gate.numpy()))
    assert run_identity(str(fold_0), checkpoint_of(str(fold_0)))["wide_gate"] is None

    assert wide_gate.main([str(gated_model), "--grid", "0.5", "3"]) == 0
    out = capsys.readouterr().out
    records = [json.loads((gated_model / f"fold_0{k}" / wide_gate.GATE_FILE).read_text()) for k in (0, 1)]
    assert records[0]["folds"] == ["fold_00", "fold_01"] and records[0]["checkpoint_md5"] != records[1]["checkpoint_md5"]
    assert {**records[0], "checkpoint_md5": ""} == {**records[1], "checkpoint_md5": ""}  # one choice, each fold's weights
    chosen = records[0]["gate"]
    assert chosen in (0.5, 3.0) and f"wide-path gate {chosen:.3g} by the one-se rule" in out
    assert records[0]["chosen_by"] == wide_gate.RULES["one-se"]
    assert set(records[0]["val_spearman"]) == {"0.5", "3"}

    gated = load_run(fold_0)
    assert float(gated.model.wide_path.gate.numpy()) == pytest.approx(chosen)
    assert float(load_run(fold_0, wide_gate=False).model.wide_path.gate.numpy()) == pytest.approx(parts.trained_gate)
    # the embeddings are exactly deep part + chosen gate * unit wide path: the cosines the choice scored
    ids, vectors, pairs = embed_pair_shard(gated, validation_shard(gated), progress=False)
    index = {video: row for row, video in enumerate(ids)}
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = (unit[[index[q] for q in pairs.query]] * unit[[index[c] for c in pairs.candidate]]).sum(axis=1)
    np.testing.assert_allclose(np.sort(cosines), np.sort(parts.cosines(chosen)), atol=1e-5)

    identity = run_identity(str(fold_0), checkpoint_of(str(fold_0)))
    assert identity["wide_gate"] == pytest.approx(chosen)
    then = dict(identity, wide_gate=None)  # embeddings made before the choice are stale
    assert "the run's is now gate" in _stale_of(_stale, tmp=gated_model, record=then, identity=identity)
    assert _stale_of(_stale, tmp=gated_model, record=identity, identity=identity) is None

    chosen_for = records[0]["checkpoint_md5"]  # the fold finetuned again: its choice no longer applies
    (fold_0 / wide_gate.GATE_FILE).write_text(json.dumps(dict(records[0], checkpoint_md5="0" * 32)))
    with pytest.raises(DataError, match=r"fold_00/wide_gate.json.*chosen for other weights than the checkpoint loaded.*rerun python -m train"):
        load_run(fold_0)
    (fold_0 / wide_gate.GATE_FILE).write_text(json.dumps(dict(records[0], checkpoint_md5=chosen_for)))
    assert wide_gate.main([str(gated_model), "--reset"]) == 0
    assert not list(gated_model.glob("fold_0*/" + wide_gate.GATE_FILE))
    assert float(load_run(fold_0).model.wide_path.gate.numpy()) == pytest.approx(parts.trained_gate)


def _stale_of(stale, tmp, record, identity):
    """`infer.embed_all._stale` of an embedding file holding ``record``."""
    from infer.embeddings_io import save_embeddings

    path = tmp / "probe.npz"
    save_embeddings(path, ["a"], np.ones((1, 2), np.float32), provenance_record=record)
    return stale(str(path), identity, lambda _: None)


def test_a_model_without_a_wide_path_is_skipped_or_refused(gated_model, tmp_path, capsys):
    import shutil

    plain = tmp_path / "uniter"
    shutil.copytree(gated_model / "fold_00", plain / "fold_00")
    config = json.loads((plain / "fold_00" / "config.json").read_text())
    config["model"]["wide"]["enabled"] = False
    (plain / "fold_00" / "config.json").write_text(json.dumps(config))
    assert wide_gate.main([str(plain), "--skip-without-wide"]) == 0
    assert "the gate step does not apply" in capsys.readouterr().out
    assert wide_gate.main([str(plain)]) == 2
    assert "no wide path (model.wide.enabled=false): no gate to choose" in capsys.readouterr().err
    assert not (plain / "fold_00" / wide_gate.GATE_FILE).exists()
    assert wide_gate.main([str(tmp_path / "missing")]) == 2
    assert "expected RUN/finetune/<model> with fold_XX runs" in capsys.readouterr().err


def test_the_one_se_rule_leans_on_the_wide_path_only_within_the_noise():
    rng = np.random.default_rng(2)
    parts = _parts(rng, "wide")
    flat = wide_gate.PairParts(tuple(np.zeros_like(d) for d in parts.deep), parts.wide, parts.labels, 1.0)
    # every gate alike (no deep part): "best" keeps the smallest, "one-se" the largest
    assert wide_gate.choose_gate({"f": flat}, rule="best")[0] == 1.0
    assert wide_gate.choose_gate({"f": flat}, rule="one-se")[0] == wide_gate.WIDE_ALONE
    assert wide_gate.gate_name(wide_gate.WIDE_ALONE) == "wide alone" and wide_gate.gate_name(2 ** 0.5) == "1.41"
    # a deep part that carries the labels: far more than one standard error, so the rule keeps it
    deep = {"a": _parts(rng, "deep"), "b": _parts(rng, "deep")}
    gate, scores = wide_gate.choose_gate(deep, rule="one-se")
    errors = wide_gate.difference_errors(deep, sorted(scores), 1.0, draws=200, seed=0)
    assert gate == 1.0 and errors[1.0] == 0.0
    assert all(scores[1.0] - scores[g] > errors[g] > 0 for g in scores if g > 1.0)
    # within the noise: labels from the wide path plus a trace of the deep part
    mixed = {}
    for name in ("a", "b"):
        p = _parts(rng, "wide", pairs=150)
        unit = [d / np.linalg.norm(d, axis=1, keepdims=True) for d in p.deep]
        labels = p.labels + 0.02 * (unit[0] * unit[1]).sum(axis=1)
        mixed[name] = wide_gate.PairParts(p.deep, p.wide, labels, 1.0)
    best, scores = wide_gate.choose_gate(mixed, grid=[1.0, 2.0, 4.0, 1000.0])
    chosen, _ = wide_gate.choose_gate(mixed, grid=[1.0, 2.0, 4.0, 1000.0], rule="one-se")
    errors = wide_gate.difference_errors(mixed, [1.0, 2.0, 4.0, 1000.0], best, draws=200, seed=0)
    assert chosen >= best and scores[chosen] >= scores[best] - errors[chosen]
    with pytest.raises(ValueError, match="rule must be one of"):
        wide_gate.choose_gate(deep, rule="median")
