"""Slow fault-injection cases: processes killed with SIGKILL at several points, then rerun.

    python -m bench.bench_faults [--models baseline,uniter] [--seed 0] [--work DIR] [--json OUT]

1. ``train``: for each model, an uninterrupted tiny pretrain run, and a second run of the same
   command killed with SIGKILL at three different points, each time rerun (the rerun resumes
   from the last checkpoint), then rerun to the end:
     a. at a random step between two checkpoints (an external ``kill -9`` once the training log
        reaches a step drawn from ``--seed``),
     b. right after a checkpoint appeared (external, polling the checkpoint index),
     c. in the middle of writing a checkpoint: after its data and index files are written, before
        the ``checkpoint`` state file names it (the process kills itself at that call).
   The final weights of both runs (every model variable of ``final/``) must be bit-identical.
2. ``write_tfrecord``: ``write_tfrecord.py`` on the demo data set killed at three random times
   while writing; after each kill no shard and no ``folds.json`` may exist under its final name,
   and the final rerun must write the same bytes as an uninterrupted run.

The fast cases (one of each kind, and the interrupted ``infer`` / ``ensemble_final.py``) are in
``tests/test_faults.py``; docs/reliability.md lists every fault and its outcome.

`run_killed` is the hook both use: it runs an entry point's ``main(argv)`` in a fresh Python
process that sends itself SIGKILL on the N-th call of a given function (a real SIGKILL at a
deterministic point: no ``finally`` block, no atexit handler runs).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# The child process of `run_killed`: wrap ``module:function`` so that one call kills the process:
# the N-th call (``when`` = "N"), or the first call whose arguments mention a text (``when`` = "~text").
_KILL_HOOK = r"""
import importlib, os, signal, sys
entry, target, when = sys.argv[1], sys.argv[2], sys.argv[3]
module_name, name = target.split(":")
module = importlib.import_module(module_name)
original = getattr(module, name)
calls = [0]
def killing(*args, **kwargs):
    calls[0] += 1
    if (when.startswith("~") and when[1:] in repr((args, kwargs))) or when == str(calls[0]):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(module, name, killing)
sys.exit(importlib.import_module(entry).main(sys.argv[4:]))
"""

# Called by tf.train.CheckpointManager after a checkpoint's files are written, to name it in the
# ``checkpoint`` state file: a kill at its first call for checkpoint "ckpt-N" (``when="~ckpt-N'"``)
# is a kill in the middle of saving ckpt-N.
CHECKPOINT_STATE = "tensorflow.python.checkpoint.checkpoint_management:update_checkpoint_state_internal"

# The tiny pretrain run of the train case (the settings of tests/train/helpers.py TINY_RUN).
TINY_TRAIN = ["--preset", "tiny", "batch_size=8", "progress=false", "log_every_steps=1", "shuffle_buffer=64",
              "max_vocab=400", "model.nextvlad_expansion=1", "lr_other=3e-3", "lr_text=1e-3"]


def child_env(**extra: str) -> dict:
    """Environment of the child processes: this repository importable, quiet TensorFlow, no GPU."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def start_killed(entry: str, argv: Sequence[str], target: str, call: int | str = 1,
                 log: str | os.PathLike | None = None, **env: str) -> subprocess.Popen:
    """Start ``entry.main(argv)`` in a new process that SIGKILLs itself on a call of ``target``
    ("module:function", patched on the module, so callers must look it up there): the ``call``-th
    one, or with ``call="~text"`` the first whose arguments' repr contains ``text``."""
    command = [sys.executable, "-c", _KILL_HOOK, entry, target, str(call), *argv]
    handle = open(log or os.devnull, "w")
    return subprocess.Popen(command, cwd=REPO_ROOT, env=child_env(**env), stdout=handle, stderr=subprocess.STDOUT)


def run_killed(entry: str, argv: Sequence[str], target: str, call: int | str = 1, timeout: float = 600,
               log: str | os.PathLike | None = None, **env: str) -> int:
    """`start_killed` and wait; returns the exit code (``-SIGKILL`` when the kill happened)."""
    return start_killed(entry, argv, target, call, log, **env).wait(timeout=timeout)


def start(entry: str, argv: Sequence[str], log: str | os.PathLike, **env: str) -> subprocess.Popen:
    """``python -m entry argv`` in the background, output in ``log``."""
    handle = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", entry, *argv], cwd=REPO_ROOT, env=child_env(**env),
                            stdout=handle, stderr=subprocess.STDOUT)


def kill_when(process: subprocess.Popen, condition: Callable[[], bool], timeout: float = 600,
              poll: float = 0.01) -> float:
    """SIGKILL ``process`` as soon as ``condition()`` holds; returns the seconds it ran.
    Raises when the process ends first (the kill point was never reached)."""
    started = time.perf_counter()
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"process ended (exit {process.returncode}) before the kill point")
        if time.perf_counter() - started > timeout:
            process.kill()
            raise TimeoutError("kill point not reached in time")
        time.sleep(poll)
    process.send_signal(signal.SIGKILL)
    if process.wait() != -signal.SIGKILL:
        raise RuntimeError(f"process exited with {process.returncode} before SIGKILL arrived")
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------- training
def logged_steps(run_dir: pathlib.Path) -> int:
    path = run_dir / "train_log.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def checkpoint_state(run_dir: pathlib.Path) -> str:
    """The newest checkpoint named by ``ckpt/checkpoint`` ("" when none)."""
    path = run_dir / "ckpt" / "checkpoint"
    if not path.exists():
        return ""
    first = path.read_text().splitlines()[:1]
    return first[0].split('"')[1] if first and '"' in first[0] else ""


def final_weights(run_dir: pathlib.Path) -> dict:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run_dir / "final")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "model/" in name and "OPTIMIZER" not in name}


def train_chain(model: str, data: pathlib.Path, work: pathlib.Path, seed: int, max_steps: int = 16,
                every: int = 2) -> dict:
    """One uninterrupted run and one killed at three points (module docstring); returns the report."""
    import numpy as np

    args = ["--model", model, "--data", str(data), *TINY_TRAIN, f"max_steps={max_steps}",
            f"checkpoint_every_steps={every}"]
    env = {"TF_NUM_INTRAOP_THREADS": "1"}
    whole, killed = work / f"{model}_whole", work / f"{model}_killed"
    for path in (whole, killed):
        shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    reference = start("train.pretrain", [*args, "--out", str(whole)], work / f"{model}_whole.log", **env)
    points = []
    rng = random.Random(seed)

    # a. a random step between two checkpoints
    step = rng.randint(every + 1, 2 * every + 1)
    process = start("train.pretrain", [*args, "--out", str(killed)], work / f"{model}_a.log", **env)
    kill_when(process, lambda: logged_steps(killed) >= step)
    points.append({"point": f"a. external SIGKILL once step {step} was logged (random, seed {seed})",
                   "logged_steps": logged_steps(killed), "checkpoint_left": checkpoint_state(killed)})

    # b. right after a checkpoint appeared
    target = f"ckpt-{4 * every}"
    process = start("train.pretrain", [*args, "--out", str(killed)], work / f"{model}_b.log", **env)
    kill_when(process, lambda: checkpoint_state(killed) == target)
    points.append({"point": f"b. external SIGKILL right after {target} was recorded",
                   "logged_steps": logged_steps(killed), "checkpoint_left": checkpoint_state(killed)})

    # c. in the middle of saving the second checkpoint of the next process
    resumed_from = int(checkpoint_state(killed).split("-")[1])
    target = f"ckpt-{resumed_from + 2 * every}"
    code = run_killed("train.pretrain", [*args, "--out", str(killed)], CHECKPOINT_STATE, call=f"~{target}'",
                      log=work / f"{model}_c.log", **env)
    if code != -signal.SIGKILL:
        raise RuntimeError(f"mid-save kill did not happen (exit {code}); see {work / f'{model}_c.log'}")
    saved = sorted((killed / "ckpt").glob("ckpt-*.index"), key=lambda p: int(p.stem.split("-")[1]))
    points.append({"point": f"c. SIGKILL mid-save of {target}: its files written, the 'checkpoint' state "
                            "not yet updated",
                   "logged_steps": logged_steps(killed), "checkpoint_left": checkpoint_state(killed),
                   "newest_files_on_disk": saved[-1].stem if saved else ""})

    final = start("train.pretrain", [*args, "--out", str(killed)], work / f"{model}_final.log", **env)
    if final.wait() != 0 or reference.wait() != 0:
        raise RuntimeError(f"a run failed; see the logs in {work}")
    elapsed = time.perf_counter() - started
    a, b = final_weights(whole), final_weights(killed)
    differing = [name for name in a if not np.array_equal(a[name], b[name])]
    max_diff = max((float(np.max(np.abs(a[n].astype(np.float64) - b[n].astype(np.float64)))) for n in a), default=0.0)
    log_steps = [json.loads(line)["step"] for line in (killed / "train_log.jsonl").read_text().splitlines()]
    return {"case": "train", "model": model, "max_steps": max_steps, "checkpoint_every": every,
            "points": points, "variables": len(a), "variables_differing": len(differing),
            "max_abs_difference": max_diff, "bit_identical": not differing and a.keys() == b.keys(),
            "log_steps_once_each": log_steps == list(range(1, max_steps + 1)), "seconds": round(elapsed, 1)}


# ---------------------------------------------------------------------------------- write_tfrecord
def final_outputs(out: pathlib.Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else []


def _writing(out: pathlib.Path) -> bool:
    """A shard's temporary file holds data: write_tfrecord.py is in its writing phase."""
    return out.exists() and any(p.name.endswith(".tmp") and p.stat().st_size > 0 for p in out.iterdir())


def write_tfrecord_chain(data: pathlib.Path, work: pathlib.Path, seed: int, kills: int = 3) -> dict:
    """write_tfrecord.py killed at ``kills`` random times while writing, then rerun (docstring).

    The first kills hit an empty output directory (nothing may appear under a final name); the last
    one hits a directory holding an older complete set (its folds.json must be gone, so the set no
    longer counts as complete, and the fold readers refuse it).
    """
    from tfrecord_tools import folds
    from tfrecord_tools.errors import DataError

    args = ["write_tfrecord.py", "--data", str(data), "--folds", "5", "--quiet"]
    clean, killed = work / "folds_clean", work / "folds_killed"
    for path in (clean, killed):
        shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()

    def launch(out: pathlib.Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, *args, "--out", str(out)], cwd=REPO_ROOT, env=child_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_for_writing(process: subprocess.Popen, out: pathlib.Path) -> None:
        while not _writing(out):
            if process.poll() is not None:
                raise RuntimeError("write_tfrecord.py ended before writing")
            time.sleep(0.002)

    # the uninterrupted run, timing its writing phase (first shard bytes -> folds.json)
    process = launch(clean)
    wait_for_writing(process, clean)
    writing_started = time.perf_counter()
    while not (clean / folds.FOLDS_JSON).exists():
        if process.poll() is not None:
            break
        time.sleep(0.002)
    writing_seconds = time.perf_counter() - writing_started
    if process.wait() != 0:
        raise RuntimeError("the uninterrupted write_tfrecord.py run failed")
    rng = random.Random(seed)
    points = []
    for number in range(kills):
        over_old_set = number == kills - 1
        shutil.rmtree(killed, ignore_errors=True)
        if over_old_set:
            shutil.copytree(clean, killed)
        delay = rng.uniform(0.0, 0.8 * writing_seconds)
        process = launch(killed)
        if over_old_set:  # the old set's folds.json goes before the first shard byte is written
            while (killed / folds.FOLDS_JSON).exists() and process.poll() is None:
                time.sleep(0.002)
        wait_for_writing(process, killed)
        time.sleep(delay)
        if process.poll() is not None or (killed / folds.FOLDS_JSON).exists():
            raise RuntimeError(f"write_tfrecord.py finished its writing within {delay:.3f} s: no kill mid-write")
        process.send_signal(signal.SIGKILL)
        process.wait()
        try:
            folds.fold_files(killed, 0)
            refused = ""
        except DataError as error:
            refused = str(error)
        temporaries = sorted(p.name for p in killed.iterdir() if p.name.endswith(".tmp"))
        points.append({"kill": number + 1, "over_an_older_complete_set": over_old_set,
                       "seconds_into_writing": round(delay, 3), "writing_phase_s": round(writing_seconds, 3),
                       "final_names_present": final_outputs(killed), "temporaries_left": len(temporaries),
                       "fold_files_refuses": refused})
    subprocess.run([sys.executable, *args, "--out", str(killed)], cwd=REPO_ROOT, env=child_env(), check=True)
    same = final_outputs(clean) == final_outputs(killed) and all(
        (clean / name).read_bytes() == (killed / name).read_bytes()
        for name in final_outputs(clean) if name.endswith(".tfrecords"))
    leftovers = [p.name for p in killed.iterdir() if p.name.startswith(".")]
    return {"case": "write_tfrecord", "points": points, "rerun_identical_shards": same,
            "leftover_temporaries_after_rerun": leftovers, "seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------------------------------- main
def format_report(results: list[dict]) -> str:
    lines = []
    for result in results:
        if result["case"] == "train":
            lines.append(f"train {result['model']} ({result['max_steps']} steps, checkpoint every "
                         f"{result['checkpoint_every']}), {result['seconds']} s:")
            for point in result["points"]:
                lines.append(f"  {point['point']}: killed with {point['logged_steps']} steps logged, "
                             f"resumed from {point['checkpoint_left'] or 'scratch'}"
                             + (f" (files of {point['newest_files_on_disk']} on disk)"
                                if point.get("newest_files_on_disk") else ""))
            lines.append(f"  final weights bit-identical to the uninterrupted run: {result['bit_identical']} "
                         f"({result['variables']} variables, {result['variables_differing']} differ, "
                         f"max |diff| {result['max_abs_difference']:g}); log has each step once: "
                         f"{result['log_steps_once_each']}")
        else:
            lines.append(f"write_tfrecord.py, {result['seconds']} s:")
            for point in result["points"]:
                where = "over an older complete set" if point["over_an_older_complete_set"] else "into an empty dir"
                lines.append(f"  kill {point['kill']} ({where}) {point['seconds_into_writing']} s into the "
                             f"{point['writing_phase_s']} s writing phase: final names present "
                             f"{point['final_names_present'] or 'none'}, {point['temporaries_left']} temporary files; "
                             f"readers refuse the set: {bool(point['fold_files_refuses'])}")
            lines.append(f"  rerun: shards identical to an uninterrupted run: {result['rerun_identical_shards']}; "
                         f"leftover temporaries: {result['leftover_temporaries_after_rerun'] or 'none'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="baseline,uniter", help="pretrain models of the train case")
    parser.add_argument("--cases", default="train,write_tfrecord")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill points")
    parser.add_argument("--work", help="scratch directory (default: a temporary one, removed after)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tfrecord_tools import synth

    with tempfile.TemporaryDirectory() as scratch:
        work = pathlib.Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        cases = args.cases.split(",")
        if "train" in cases:
            data = work / "tiny"
            if not (data / "synth_meta.json").exists():
                synth.generate(data, "tiny", seed=0, progress=False, overwrite=True)
            for model in args.models.split(","):
                results.append(train_chain(model, data, work, args.seed))
                print(format_report(results[-1:]), flush=True)
        if "write_tfrecord" in cases:
            data = work / "demo"
            if not (data / "synth_meta.json").exists():
                synth.generate(data, "demo", seed=0, progress=False, overwrite=True)
            results.append(write_tfrecord_chain(data, work, args.seed))
            print(format_report(results[-1:]), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    ok = all(r.get("bit_identical", True) and r.get("rerun_identical_shards", True) for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
