"""The command lines as users run them: --help without TensorFlow, one-line usage errors with exit
status 2 and nothing written, --list-keys / --config, refused data-derived keys, the stage scripts'
--help, hidden TensorFlow C++ log lines, training curves."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ENTRY_MODULES = ["train.pretrain", "train.finetune", "infer.embed", "infer.embed_all", "infer.baselines",
                 "infer.submission", "tfrecord_tools.synth"]
ENTRY_SCRIPTS = ["write_tfrecord.py", "ensemble_final.py"]


def _run(*args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def _one_error_line(result, prog: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    return lines[0]


def test_every_help_prints_usage_without_importing_tensorflow():
    # all entry points in one interpreter: any of them importing TensorFlow would show in sys.modules
    probe = f"""
import contextlib, io, runpy, sys
for target in {ENTRY_MODULES + ENTRY_SCRIPTS!r}:
    sys.argv = [target, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            (runpy.run_path if target.endswith(".py") else runpy.run_module)(target, run_name="__main__")
        except SystemExit as done:
            assert done.code in (0, None), (target, done.code)
    assert out.getvalue().startswith("usage:"), (target, out.getvalue()[:200])
    assert "tensorflow" not in sys.modules, target + " imported TensorFlow for --help"
print("ok")
"""
    result = _run("-c", probe, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_wrong_model_name_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = _run("-m", "train.pretrain", "--model", "bert_xl", "--data", str(tmp_path), "--out", str(out))
    line = _one_error_line(result, "python -m train.pretrain")
    assert "argument --model: invalid choice: 'bert_xl'" in line and "uniter_asl" in line
    assert not out.exists()


def test_missing_folds_json_is_one_line_exit_2_no_run_dir_and_no_native_logs(tmp_path):
    out = tmp_path / "runs" / "finetune" / "baseline" / "fold_00"
    result = _run("-m", "train.finetune", "--model", "baseline", "--folds-dir", str(tmp_path / "nofolds"),
                  "--fold", "0", "--out", str(out), "--preset", "tiny")
    # one line: TensorFlow's import-time C++ log lines (oneDNN, CUDA, absl) are hidden
    line = _one_error_line(result, "python -m train.finetune")
    assert "nofolds/folds.json: missing" in line and "write_tfrecord.py" in line
    assert not (tmp_path / "runs").exists()


def test_list_keys_and_refused_data_keys():
    listing = _run("-m", "train.pretrain", "--list-keys")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert listing.stdout.splitlines()[0].split() == ["key", "type", "default", "help"]
    assert {"batch_size", "lr_text", "finetune_losses", "steps_per_loop", "model.text.num_layers",
            "model.tags.kind", "model.frames.normalization"} <= set(rows)
    assert "(flat: model.text_num_layers)" in rows["model.text.num_layers"]
    assert rows["batch_size"].split()[1:4] == ["an", "integer", "32"] and "GLOBAL batch" in rows["batch_size"]
    assert "not overridable: set from the run's tag list" in rows["model.num_tags"]
    refused = _run("-m", "train.finetune", "--model", "uniter", "--folds-dir", "x", "--fold", "0", "--out", "y",
                   "model.vocab_size=999")
    line = _one_error_line(refused, "python -m train.finetune")
    assert "override model.vocab_size is refused: a run sets it from the run's tokenizer" in line
    assert not (REPO_ROOT / "y").exists()


def test_config_file_replays_a_run_config(tmp_path):
    from models.config import ModelConfig
    from train import cli
    from train.config import TrainConfig, save_config

    saved = TrainConfig(model=ModelConfig.tiny("uniter", tag_loss="asl"), stage="finetune", fold=2,
                        folds_dir=str(tmp_path / "folds"), finetune_losses="mse+tag", lr_other=1e-3)
    save_config(saved, tmp_path)
    parser = cli.finetune_parser()
    replay = cli.finetune_config(parser.parse_args(["--config", str(tmp_path / "config.json"), "--out", "o"]))
    assert replay == saved  # the recipe of the family does not overwrite the replayed losses
    changed = cli.finetune_config(parser.parse_args(["--config", str(tmp_path), "--out", "o", "--fold", "1",
                                                     "epochs=3", "model.dropout=0.2"]))
    assert (changed.fold, changed.epochs, changed.model.dropout, changed.model.tag_loss) == (1, 3, 0.2, "asl")
    with pytest.raises(ValueError, match="--preset cannot be combined with --config"):
        cli.finetune_config(parser.parse_args(["--config", str(tmp_path), "--out", "o", "--preset", "tiny"]))
    pretrain = cli.pretrain_config(cli.pretrain_parser().parse_args(["--config", str(tmp_path), "--out", "o",
                                                                      "--data", "d"]))
    assert pretrain.stage == "pretrain" and pretrain.model == saved.model and pretrain.data_dir.endswith("/d")


@pytest.mark.parametrize("script", ["pretrain_all.sh", "finetune_all.sh", "infer_all.sh", "demo.sh"])
def test_stage_scripts_print_usage_on_help_and_refuse_arguments(script, tmp_path):
    env = dict(os.environ, PYTHON="/nonexistent/python")  # a started run would fail loudly
    helped = subprocess.run(["sh", str(REPO_ROOT / script), "--help"], cwd=tmp_path, capture_output=True,
                            text=True, env=env, timeout=30)
    assert helped.returncode == 0 and "RUN" in helped.stdout and "MODELS" in helped.stdout, helped.stderr
    assert not helped.stdout.startswith("#") and "==" not in helped.stdout and not any(tmp_path.iterdir())
    wrong = subprocess.run(["sh", str(REPO_ROOT / script), "run"], cwd=tmp_path, capture_output=True, text=True,
                           env=env, timeout=30)
    assert wrong.returncode == 2 and f"{script}: error: unexpected argument 'run'" in wrong.stderr


def test_native_log_lines_are_hidden_unless_verbose(capfd):
    from tfrecord_tools import cli

    with cli.native_logs_hidden():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on\n")
    with cli.native_logs_hidden(verbose=True):
        os.write(2, b"shown when verbose\n")
    os.write(2, b"shown after\n")
    assert capfd.readouterr().err == "shown when verbose\nshown after\n"


def test_training_curves_png_and_a_note_without_matplotlib(tmp_path, monkeypatch):
    from train import curves

    log = [{"step": s, "loss": 1.0 / s, "tag": 0.5 / s, "grad_norm": 2.0, "lr_text": 1e-4, "lr_other": 1e-3,
            "steps_per_sec": 9.0} for s in range(1, 6)]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in log))
    (tmp_path / "metrics.json").write_text(json.dumps({"epochs": [{"epoch": 1, "step": 5, "val_spearman": 0.4}]}))
    assert sorted(curves.read_log(tmp_path)) == ["grad_norm", "loss", "lr_other", "lr_text", "steps_per_sec", "tag"]
    assert curves.read_validation(tmp_path) == ([5], [0.4])
    line = curves.report_curves(str(tmp_path))
    png = tmp_path / "training_curves.png"
    assert line == f"training curves: {png}" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(curves.importlib.util, "find_spec", lambda name: None)
    assert curves.plot_training_curves(str(tmp_path)) is None
    assert curves.report_curves(str(tmp_path)) == f"note: {curves.NO_MATPLOTLIB}"
