"""pretrain_all.sh / finetune_all.sh: which runs they start, with which arguments (PYTHON is a recorder)."""
import os
import subprocess
import sys

from tests.train.helpers import REPO_ROOT


def _run_script(script, tmp_path, **env):
    recorder = tmp_path / "python"
    recorder.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then exec "{sys.executable}" "$@"; fi\n'
                        f'echo "$@" >> "{tmp_path}/calls.txt"\n')
    recorder.chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    subprocess.run(["sh", str(REPO_ROOT / script)], check=True, capture_output=True, cwd=tmp_path,
                   env=dict(os.environ, PYTHON=str(recorder), **env))
    return calls.read_text().splitlines()


def test_pretrain_all_runs_each_model_with_the_overrides(tmp_path):
    calls = _run_script("pretrain_all.sh", tmp_path, DATA="d", RUN="r", MODELS="mix uniter_asl",
                        EXTRA="batch_size=4 finetune_losses=mse+0.5*kl", PRESET="tiny")
    assert calls == [
        "-m train.pretrain --model mix --data d --out r/pretrain/mix --preset tiny batch_size=4 finetune_losses=mse+0.5*kl",
        "-m train.pretrain --model uniter_asl --data d --out r/pretrain/uniter_asl --preset tiny batch_size=4 "
        "finetune_losses=mse+0.5*kl"]
    default = _run_script("pretrain_all.sh", tmp_path)
    assert [call.split()[3] for call in default] == ["mix", "mix_asl", "mix_roformer", "uniter", "uniter_asl",
                                                     "uniter_roformer"]
    assert default[0].endswith("--data data --out runs/pretrain/mix --preset full")


def test_finetune_all_runs_every_fold_and_starts_from_finished_pretrain_runs(tmp_path, folds_dir):
    (tmp_path / "r" / "pretrain" / "mix" / "final").mkdir(parents=True)
    calls = _run_script("finetune_all.sh", tmp_path, FOLDS_DIR=str(folds_dir), RUN="r", MODELS="mix uniter",
                        EXTRA="epochs=2")
    folds = f"--folds-dir {folds_dir}"
    assert calls == [
        *[f"-m train.finetune --model mix {folds} --fold {k} --out r/finetune/mix/fold_0{k} "
          f"--pretrained r/pretrain/mix epochs=2" for k in range(3)],
        "-m train.wide_gate r/finetune/mix --skip-without-wide",  # after each model's folds
        *[f"-m train.finetune --model uniter {folds} --fold {k} --out r/finetune/uniter/fold_0{k} "
          f"--preset full epochs=2" for k in range(3)],
        "-m train.wide_gate r/finetune/uniter --skip-without-wide"]
    chosen = _run_script("finetune_all.sh", tmp_path, FOLDS_DIR=str(folds_dir), MODELS="uniter", FOLDS="10",
                         WIDE_GATE="trained")
    assert chosen == [f"-m train.finetune --model uniter {folds} --fold 10 --out runs/finetune/uniter/fold_10 "
                      f"--preset full", "-m train.wide_gate runs/finetune/uniter --reset"]
    (tmp_path / "my data").mkdir()  # an existing DATA: each run's data_dir (absolute), before EXTRA
    with_data = _run_script("finetune_all.sh", tmp_path, FOLDS_DIR=str(folds_dir), MODELS="uniter", FOLDS="1",
                            DATA="my data", EXTRA="epochs=2")
    assert with_data[0] == (f"-m train.finetune --model uniter {folds} --fold 1 --out runs/finetune/uniter/fold_01 "
                            f"--preset full data_dir={tmp_path / 'my data'} epochs=2")
    wrong = subprocess.run(["sh", str(REPO_ROOT / "finetune_all.sh")], cwd=tmp_path, capture_output=True, text=True,
                           env=dict(os.environ, PYTHON=sys.executable, FOLDS_DIR=str(folds_dir), WIDE_GATE="yes"))
    assert wrong.returncode == 2 and "WIDE_GATE must be choose or trained, got 'yes'" in wrong.stderr
    missing = subprocess.run(["sh", str(REPO_ROOT / "finetune_all.sh")], cwd=tmp_path, capture_output=True, text=True,
                             env=dict(os.environ, PYTHON=sys.executable, DATA=str(tmp_path / "none")))
    assert missing.returncode == 1 and "folds.json not found" in missing.stderr


def _finished_demo_data(data):
    """The files by which demo.sh knows its data and fold shards are already written."""
    (data / "folds").mkdir(parents=True)
    (data / "synth_meta.json").write_text("{}")
    (data / "folds" / "folds.json").write_text('{"num_folds": 11}')


def test_demo_reuses_the_baselines_only_when_they_hold_every_fold_asked_for_with_the_same_frame_words(tmp_path):
    data, run = tmp_path / "d", tmp_path / "r"
    _finished_demo_data(data)
    (run / "baselines").mkdir(parents=True)
    (run / "baselines" / "choices.json").write_text(
        '{"config": {"frame_words": 64, "rare_words": 64}, "folds": {"0": {}, "1": {}}}')

    def baseline_calls(folds, **env):
        calls = _run_script("demo.sh", tmp_path, DATA=str(data), RUN=str(run), FOLDS=folds, MODELS="uniter", **env)
        return [call for call in calls if call.startswith("-m infer.baselines")]

    assert baseline_calls("0 1") == [] and baseline_calls("1") == []
    assert baseline_calls("0 1 2") == [f"-m infer.baselines --data {data} --folds-dir {data}/folds "
                                       f"--out {run}/baselines --folds 0 1 2 --frame-words 64 --rare-words 64 --quiet"]
    assert baseline_calls("0", FRAME_WORDS="0") == [f"-m infer.baselines --data {data} --folds-dir {data}/folds "
                                                    f"--out {run}/baselines --folds 0 --frame-words 0 --rare-words 64 "
                                                    f"--quiet"]
    assert len(baseline_calls("0", RARE_WORDS="0")) == 1  # other rare words: rerun
    (run / "baselines" / "choices.json").write_text('{"config": {}, "folds": {"0": {}}}')  # before frame words
    assert baseline_calls("0", FRAME_WORDS="0", RARE_WORDS="0") == [] and len(baseline_calls("0")) == 1
    (run / "baselines" / "choices.json").unlink()
    assert len(baseline_calls("0")) == 1


def _demo_calls(tmp_path, data, run, **env):
    """demo.sh's pretrain calls and its strong-baselines call, run with ``env``."""
    calls = _run_script("demo.sh", tmp_path, DATA=str(data), RUN=str(run), MODELS="uniter", **env)
    return ([call for call in calls if call.startswith("-m train.pretrain")],
            [call for call in calls if call.startswith("-m infer.baselines")][0])


def _demo_refusal(tmp_path, data, **env):
    """demo.sh run with a bad setting: its exit code and what it printed to stderr."""
    wrong = subprocess.run(["sh", str(REPO_ROOT / "demo.sh")], cwd=tmp_path, capture_output=True, text=True,
                           env=dict(os.environ, PYTHON=sys.executable, DATA=str(data), **env))
    return wrong.returncode, wrong.stderr


def test_demo_pools_the_frames_of_the_recipe_and_of_the_floor_by_frame_words(tmp_path):
    data, run = tmp_path / "d", tmp_path / "r"
    _finished_demo_data(data)
    for words in ("64", "0", "128"):
        pretrain, floor = _demo_calls(tmp_path, data, run, **({} if words == "64" else {"FRAME_WORDS": words}))
        assert len(pretrain) == 1 and f"model.wide.enabled=true model.wide.frame_words={words}" in pretrain[0]
        assert floor.endswith(f"--frame-words {words} --rare-words 64 --quiet")
    assert "frame_words" not in _demo_calls(tmp_path, data, run, RECIPE=" ")[0][0]
    for bad in ("1", "many", "-3"):
        code, stderr = _demo_refusal(tmp_path, data, FRAME_WORDS=bad)
        assert code == 2 and "FRAME_WORDS must be 0 (the plain mean frame) or a number of words >= 2, " \
            f"got '{bad}'" in stderr


def test_demo_matches_the_titles_rare_words_in_the_recipe_and_the_floor(tmp_path):
    data, run = tmp_path / "d", tmp_path / "r"
    _finished_demo_data(data)
    for width in ("64", "0", "32"):
        pretrain, floor = _demo_calls(tmp_path, data, run, **({} if width == "64" else {"RARE_WORDS": width}))
        assert len(pretrain) == 1 and f"model.wide.frame_words=64 model.wide.rare_words={width}" in pretrain[0]
        assert floor.endswith(f"--rare-words {width} --quiet")
    assert "rare_words" not in _demo_calls(tmp_path, data, run, RECIPE=" ")[0][0]
    for bad in ("many", "-3", "1.5"):
        code, stderr = _demo_refusal(tmp_path, data, RARE_WORDS=bad)
        assert code == 2 and f"RARE_WORDS must be 0 (off) or a number of dimensions, got '{bad}'" in stderr


def test_demo_trains_uniter_and_uniter_roformer_by_default(tmp_path):
    _finished_demo_data(tmp_path / "demo_data")
    env = {"DATA": str(tmp_path / "demo_data"), "RUN": str(tmp_path / "demo_runs")}  # demo.sh runs in the repository
    calls = _run_script("demo.sh", tmp_path, **env)  # two runs at once (JOBS=2): in either order
    assert sorted(call.split()[3] for call in calls if call.startswith("-m train.pretrain")) == [
        "uniter", "uniter_roformer"]
    assert (tmp_path / "demo_runs" / "logs" / "pretrain_uniter_roformer.log").is_file()


def _slow_recorder(tmp_path):
    """A PYTHON that records when each run starts and ends (1.5 s apart) and fails fold 1 when FAIL is set."""
    recorder = tmp_path / "python"
    recorder.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then exec "{sys.executable}" "$@"; fi\n'
                        f'echo "start $*" >> "{tmp_path}/calls.txt"; echo "output of $*"; sleep 1.5\n'
                        f'echo "end $*" >> "{tmp_path}/calls.txt"\n'
                        'case "$*" in *"--fold 1 "*) [ -z "${FAIL:-}" ] || exit 3 ;; esac\n')
    recorder.chmod(0o755)
    return recorder


def _events(tmp_path):
    return [(line.split()[0], line.split()[2], line.split()[line.split().index("--out") + 1])
            for line in (tmp_path / "calls.txt").read_text().splitlines() if "--out" in line]


def test_jobs_runs_groups_at_once_prints_their_output_and_stops_on_a_failure(tmp_path, folds_dir):
    env = dict(os.environ, PYTHON=str(_slow_recorder(tmp_path)), FOLDS_DIR=str(folds_dir), MODELS="uniter",
               FOLDS="0 1 2", JOBS="2")
    done = subprocess.run(["sh", str(REPO_ROOT / "finetune_all.sh")], cwd=tmp_path, capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    out = [f"runs/finetune/uniter/fold_0{k}" for k in range(3)]
    # folds 0 and 1 run together (either may write its start first), fold 2 after both; the gate step after every fold
    assert sorted(_events(tmp_path)[:2]) == [("start", "train.finetune", out[0]), ("start", "train.finetune", out[1])]
    assert _events(tmp_path)[4:] == [("start", "train.finetune", out[2]), ("end", "train.finetune", out[2])]
    assert (tmp_path / "calls.txt").read_text().splitlines()[-2].startswith("start -m train.wide_gate")
    logs = tmp_path / "runs" / "logs"
    assert sorted(path.name for path in logs.iterdir()) == [f"finetune_uniter_fold_0{k}.log" for k in range(3)]
    printed = [line for line in done.stdout.splitlines() if line.startswith("output of")]
    assert [line.split("--out ")[1].split()[0] for line in printed[:3]] == out  # in the order the runs started

    (tmp_path / "calls.txt").unlink()
    failed = subprocess.run(["sh", str(REPO_ROOT / "finetune_all.sh")], cwd=tmp_path, capture_output=True,
                            text=True, env=dict(env, FAIL="1"))
    assert failed.returncode == 1
    assert ("finetune_all.sh: finetune_uniter_fold_01 failed (exit status 3); its output: "
            "runs/logs/finetune_uniter_fold_01.log") in failed.stderr
    assert sorted(event[2] for event in _events(tmp_path) if event[0] == "start") == out[:2]  # nothing after the group
    assert "fold 2" not in failed.stdout

    for bad in ("0", "two", "-1"):
        wrong = subprocess.run(["sh", str(REPO_ROOT / "pretrain_all.sh")], cwd=tmp_path, capture_output=True,
                               text=True, env=dict(env, JOBS=bad))
        assert wrong.returncode == 2 and f"JOBS must be a positive number of runs at once, got '{bad}'" in wrong.stderr


def test_stage_scripts_select_the_pooling_host_allocator_unless_told_otherwise(tmp_path):
    recorder = tmp_path / "python"
    recorder.write_text(f'#!/bin/sh\necho "$TF_CPU_ALLOCATOR_USE_BFC" >> "{tmp_path}/calls.txt"\n')
    recorder.chmod(0o755)
    for script in ("pretrain_all.sh", "finetune_all.sh"):
        for given, expected in ((None, "true"), ("false", "false")):
            env = dict(os.environ, PYTHON=str(recorder), MODELS="uniter", FOLDS="0", WIDE_GATE="trained")
            env.pop("TF_CPU_ALLOCATOR_USE_BFC", None)
            if given is not None:
                env["TF_CPU_ALLOCATOR_USE_BFC"] = given
            (tmp_path / "calls.txt").unlink(missing_ok=True)
            subprocess.run(["sh", str(REPO_ROOT / script)], cwd=tmp_path, env=env, check=True, capture_output=True)
            assert set((tmp_path / "calls.txt").read_text().split()) == {expected}, (script, given)


def test_one_job_runs_in_the_foreground_without_logs(tmp_path):
    env = dict(os.environ, PYTHON=str(_slow_recorder(tmp_path)), MODELS="mix uniter", RUN="r")
    env.pop("JOBS", None)
    done = subprocess.run(["sh", str(REPO_ROOT / "pretrain_all.sh")], cwd=tmp_path, capture_output=True, text=True,
                          env=env, check=True)
    assert [event[:2] for event in _events(tmp_path)] == [("start", "train.pretrain"), ("end", "train.pretrain")] * 2
    assert not (tmp_path / "r" / "logs").exists() and done.stdout.count("output of") == 2


def test_demo_draws_its_synthetic_data_with_the_seed_asked_for(tmp_path):
    data = tmp_path / "d"
    _finished_demo_data(data)
    (data / "synth_meta.json").unlink()  # the data is drawn again, the fold shards are kept
    calls = _run_script("demo.sh", tmp_path, DATA=str(data), RUN=str(tmp_path / "r"), MODELS="uniter",
                        WORLD="continuous", SEED="3")
    assert calls[0] == f"-m tfrecord_tools.synth --out {data} --size demo --seed 3 --world continuous"
    default = _run_script("demo.sh", tmp_path, DATA=str(data), RUN=str(tmp_path / "r"), MODELS="uniter")
    assert default[0] == f"-m tfrecord_tools.synth --out {data} --size demo --seed 0"


def test_demo_uses_a_data_set_of_the_official_layout_as_it_is(tmp_path):
    data = tmp_path / "d"
    _finished_demo_data(data)
    (data / "synth_meta.json").unlink()
    (data / "pairwise").mkdir()
    (data / "pairwise" / "label.tsv").write_text("1\t2\t0.5\n")
    calls = _run_script("demo.sh", tmp_path, DATA=str(data), RUN=str(tmp_path / "r"), MODELS="uniter")
    assert not [call for call in calls if "tfrecord_tools.synth" in call]  # nothing drawn over a user's data
    ensemble = [call for call in calls if call.startswith("ensemble_final.py")]
    assert len(ensemble) == 1 and "--synth-meta" not in ensemble[0]
    (data / "foreign_meta.json").write_text("{}")  # bench.foreign_world's data: its oracle is read
    calls = _run_script("demo.sh", tmp_path, DATA=str(data), RUN=str(tmp_path / "r"), MODELS="uniter")
    assert not [call for call in calls if "tfrecord_tools.synth" in call]
    assert f"--synth-meta {data}/foreign_meta.json" in [c for c in calls if c.startswith("ensemble_final.py")][0]
    (data / "synth_meta.json").write_text("{}")  # synthetic data: its oracle is read
    calls = _run_script("demo.sh", tmp_path, DATA=str(data), RUN=str(tmp_path / "r"), MODELS="uniter")
    assert f"--synth-meta {data}/synth_meta.json" in [call for call in calls if call.startswith("ensemble_final.py")][0]


def test_demo_draws_a_test_graph_when_asked(tmp_path):
    data = tmp_path / "d"
    _finished_demo_data(data)
    (data / "synth_meta.json").unlink()
    calls = _run_script("demo.sh", tmp_path, DATA=str(data), RUN=str(tmp_path / "r"), MODELS="uniter",
                        WORLD="random-6", TEST_GRAPH="5000")
    assert calls[0] == (f"-m tfrecord_tools.synth --out {data} --size demo --seed 0 --world random-6 "
                        "--test-graph --test-videos 5000")
    for bad in ("0", "many", "-3"):
        wrong = subprocess.run(["sh", str(REPO_ROOT / "demo.sh")], cwd=tmp_path, capture_output=True, text=True,
                               env=dict(os.environ, PYTHON=sys.executable, DATA=str(data), TEST_GRAPH=bad))
        assert wrong.returncode == 2 and f"TEST_GRAPH must be a positive number of test videos, got '{bad}'" in \
            wrong.stderr
