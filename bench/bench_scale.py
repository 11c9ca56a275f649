"""Time and peak memory of the data stages at 1x, 3x and 10x a base data size.

    python -m bench.bench_scale [--base demo] [--base-scale 2] [--pointwise-files 20] [--scales 1,3,10]
                                [--full-label-graph] [--malloc-arena-max 2] [--run-length 1,10]
                                [--work DIR] [--keep] [--batch-size 32] [--model-steps 3]
                                [--json OUT] [--markdown OUT]

Scale ``s`` is the synthetic preset ``--base`` scaled by ``base_scale * s`` (``synth.scaled_preset``:
that many times the pointwise videos, split into ``--pointwise-files`` files like the real data's 20,
the label-graph queries / pairs / videos and the test videos; the world -- topics, words, tags --
stays the same). Four stages run, each in its own process, timed and measured (peak RSS from
``os.wait4``, i.e. the kernel's ``ru_maxrss`` of that process):

  synth           ``tfrecord_tools.synth.generate`` of the scaled preset (records = every video)
  write_tfrecord  ``write_tfrecord.py --data D --folds 11`` (records = labelled pairs)
  pretrain_input  one epoch of the pretraining input pipeline without the model: ``train.data``'s
                  ``TrainStream`` over pointwise + pairwise files exactly as ``train.pretrain`` builds
                  it (interleaved reads, shuffle buffer, parallel parse/decode, batch tokenisation,
                  prefetch), batch ``--batch-size`` (records = pointwise + pairwise videos)
  embed_test      ``infer.embed`` of ``test_a`` with a tiny baseline run (records = test videos)

Each stage reports its work time measured inside the process (after imports) next to the wall time
of the whole process. Also, per scale, bytes on disk of the fold shards against the pairs' data:

  pair data bytes = sum over the label lines of the serialized sizes of both videos' records
                    (the bytes the fold shards must hold if each pair is stored once)
  shard bytes     = the size of all fold_XX.tfrecords files (TFRecord framing included)

``--full-label-graph`` adds the full preset's label graph and test set (67,899 pairs, 63,613 pair
videos, 31,514 test videos, full-length frames) through synth and write_tfrecord. A run-length check
runs the input pipeline for 1 and 10 epochs of the scale-1 data, with glibc's default malloc arenas
and with ``MALLOC_ARENA_MAX=2``, to tell memory held for data from allocator fragmentation (tf.data
frees frame buffers from many threads); ``--malloc-arena-max 2`` sets it for every stage.

And, for the base scale, whether the input pipeline keeps up with training: records/s of the
pipeline with and without tokenisation vs the model's steps/s x batch for the official baseline
(``--model-steps`` timed steps of ``train.pretrain``'s trainer, full-size baseline, on this machine).

Large outputs are deleted after each scale unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
STAGES = ("synth", "write_tfrecord", "pretrain_input", "embed_test")
NUM_FOLDS = 11


# ------------------------------------------------------------------------- stages (child side)
def stage_synth(data: str, base: str, scale: float, pointwise_files: int | None,
                pointwise_videos: int = 0) -> dict:
    import dataclasses

    from tfrecord_tools import synth

    preset = synth.scaled_preset(base, scale, pointwise_files)
    if pointwise_videos:  # e.g. the full label graph with a small pretraining part
        preset = dataclasses.replace(preset, name=f"{preset.name}-pointwise{pointwise_videos}",
                                     pointwise_per_file=max(1, pointwise_videos // preset.pointwise_files))
    started = time.perf_counter()
    meta = synth.generate(data, preset, seed=0, progress=False, overwrite=True)
    counts = meta["counts"]
    records = counts["pointwise_videos"] + counts["pairwise_videos"] + counts["test_a_videos"]
    return {"records": records, "work_s": time.perf_counter() - started,
            "bytes": sum(entry["bytes"] for entry in meta["files"].values())}


def stage_write_tfrecord(data: str) -> dict:
    import write_tfrecord
    from tfrecord_tools import folds

    started = time.perf_counter()
    code = write_tfrecord.main(["--data", data, "--folds", str(NUM_FOLDS), "--quiet"])
    if code:
        raise SystemExit(code)
    info = folds.read_folds_info(os.path.join(data, "folds"))
    return {"records": info["num_pairs"], "work_s": time.perf_counter() - started,
            "bytes": sum(entry["bytes"] for entry in info["folds"])}


def _pretrain_stream(data: str, batch_size: int, tokenize: bool = True, vocab_dir: str | None = None):
    """The pretraining TrainStream of ``train.pretrain`` (default TrainConfig settings), no model."""
    from models.config import ModelConfig
    from tfrecord_tools.reader import VideoDecoder
    from tfrecord_tools.tags import TagVocab
    from tfrecord_tools.tokenization import build_vocab, load_tokenizer
    from train import data as data_lib
    from train.config import TrainConfig

    config = TrainConfig(model=ModelConfig.preset("full", name="baseline"), data_dir=data, batch_size=batch_size)
    files = data_lib.pretrain_files(data, config.pretrain_pairwise)
    counts = data_lib.record_counts(files)
    tags = TagVocab.from_file(os.path.join(data, "tag_list.txt"))
    tokenizer = None
    if tokenize:
        vocab_dir = vocab_dir or os.path.join(data, "bench_tokenizer")
        if not os.path.isfile(os.path.join(vocab_dir, "vocab.txt")):
            build_vocab(data_lib.stream_titles(files), vocab_dir, max_size=config.max_vocab)
        tokenizer = load_tokenizer(vocab_dir, "bert")
    decoder = VideoDecoder(tokenizer=tokenizer, tag_vocab=tags)
    return data_lib.TrainStream(tuple(files), sum(counts), decoder, config.batch_size, config.seed,
                                config.shuffle_buffer)


def stage_pretrain_input(data: str, batch_size: int, tokenize: bool = True, max_batches: int = 0) -> dict:
    stream = _pretrain_stream(data, batch_size, tokenize)
    batches = max_batches or stream.records_per_epoch // batch_size  # more than an epoch: the stream repeats
    iterator = iter(stream.dataset(0))
    next(iterator)  # graph construction and the first shuffle-buffer fill are not throughput
    started = time.perf_counter()
    for _ in range(batches - 1):
        next(iterator)
    elapsed = time.perf_counter() - started
    return {"records": (batches - 1) * batch_size, "work_s": elapsed, "epoch_records": stream.records_per_epoch}


def stage_embed_test(data: str, run_dir: str, out: str) -> dict:
    from infer.embed import embed_videos, load_run
    from infer.embeddings_io import save_embeddings

    from tfrecord_tools import reader

    run = load_run(run_dir, "final")
    test = os.path.join(data, "test_a", "test_a.tfrecords")
    for batch in reader.read_videos(test, "test", run.decoder, 64).take(1):  # trace the model once, untimed
        run.embed_batch(batch)
    started = time.perf_counter()
    ids, embeddings = embed_videos(run, [test], "test", batch_size=64, progress=False)
    save_embeddings(out, ids, embeddings)
    return {"records": len(ids), "work_s": time.perf_counter() - started}


def stage_model_steps(data: str, batch_size: int, steps: int) -> dict:
    """Steps/s of the full-size official baseline pretraining on this machine (bench_train's method)."""
    from bench.bench_train import bench_model

    result = bench_model("baseline", "full", data, batch_size, steps, warmup=1)
    return {"records": steps * batch_size, "work_s": steps / result["steps_per_s"],
            "steps_per_s": result["steps_per_s"], "params": result["params"]}


def run_stage(args: argparse.Namespace) -> int:
    """Child side of ``--stage``: run one stage and print its result as one JSON line."""
    if args.stage == "synth":
        result = stage_synth(args.data, args.base, args.scale, args.pointwise_files, args.pointwise_videos)
    elif args.stage == "write_tfrecord":
        result = stage_write_tfrecord(args.data)
    elif args.stage == "pretrain_input":
        result = stage_pretrain_input(args.data, args.batch_size, tokenize=not args.no_tokenize,
                                      max_batches=args.max_batches)
    elif args.stage == "embed_test":
        result = stage_embed_test(args.data, args.run, args.out)
    elif args.stage == "model_steps":
        result = stage_model_steps(args.data, args.batch_size, args.model_steps)
    else:
        raise SystemExit(f"unknown stage {args.stage!r}")
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------------ driver (parent side)
def child_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    return env


def run_length_check(data: pathlib.Path, batch_size: int, epochs: Sequence[int], logs: pathlib.Path) -> list[dict]:
    """Peak RSS of the pretraining input pipeline over 1, 10, ... epochs of the same (scale 1) data,
    with glibc's default malloc arenas and with ``MALLOC_ARENA_MAX=2``: memory that grows with the
    run length rather than the data size is allocator fragmentation, not data held."""
    from train import data as data_lib

    records = sum(data_lib.record_counts(data_lib.pretrain_files(str(data))))
    results = []
    for arenas in (None, "2"):
        for count in epochs:
            saved = os.environ.get("MALLOC_ARENA_MAX")
            if arenas:
                os.environ["MALLOC_ARENA_MAX"] = arenas
            else:
                os.environ.pop("MALLOC_ARENA_MAX", None)
            try:
                result = measure(stage_command("pretrain_input", data, batch_size=batch_size,
                                               max_batches=count * (records // batch_size)),
                                 logs / f"epochs_{count}_{arenas or 'default'}.log")
            finally:
                if saved is None:
                    os.environ.pop("MALLOC_ARENA_MAX", None)
                else:
                    os.environ["MALLOC_ARENA_MAX"] = saved
            result.update(epochs=count, malloc_arena_max=arenas or "default")
            results.append(result)
            print(f"{'run length':>15}: {count:>3} epochs of scale 1, MALLOC_ARENA_MAX={arenas or 'default'}: "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB, {result['records'] / result['work_s']:,.0f} records/s",
                  flush=True)
    return results


def format_run_length(results: list[dict]) -> str:
    lines = ["| MALLOC_ARENA_MAX | epochs of scale 1 | records | records/s | peak RSS MB |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in results:
        lines.append(f"| {row['malloc_arena_max']} | {row['epochs']} | {row['records']:,} | "
                     f"{row['records'] / row['work_s']:,.0f} | {row['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def measure(command: Sequence[str], log: pathlib.Path) -> dict:
    """Run ``command``; its wall seconds, peak RSS (MB, from wait4) and the stage's JSON result."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(list(command), cwd=REPO_ROOT, env=child_env(), stdout=handle,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}); see {log}:\n"
                           + log.read_text()[-3000:])
    lines = [line for line in log.read_text().splitlines() if line.startswith("BENCH_RESULT ")]
    result = json.loads(lines[-1][len("BENCH_RESULT "):]) if lines else {}
    result.update(wall_s=wall, peak_rss_mb=usage.ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
                  cpu_s=usage.ru_utime + usage.ru_stime, written_mb=usage.ru_oublock * 512 / 1e6)
    return result


def stage_command(stage: str, data: pathlib.Path, **options) -> list[str]:
    command = [sys.executable, "-m", "bench.bench_scale", "--stage", stage, "--data", str(data)]
    for key, value in options.items():
        if value is True:
            command.append(f"--{key.replace('_', '-')}")
        elif value is not None and value is not False:
            command += [f"--{key.replace('_', '-')}", str(value)]
    return command


def pair_bytes(data: pathlib.Path) -> dict:
    """Bytes of the fold shards vs the pairs' data (module docstring) and vs the pairwise file."""
    from tfrecord_tools import folds, schema
    from tfrecord_tools.labels import read_labels
    from tfrecord_tools.record_index import index_videos

    pairwise = data / "pairwise" / "pairwise.tfrecords"
    index = index_videos([pairwise], schema.RecordKind.PAIRWISE)
    labels = read_labels(data / "pairwise" / "label.tsv")
    pair_data = sum(index.locations[q].length + index.locations[c].length
                    for q, c in zip(labels.query, labels.candidate))
    info = folds.read_folds_info(data / "folds")
    shards = sum(entry["bytes"] for entry in info["folds"])
    return {"pairs": len(labels), "pair_data_bytes": pair_data, "shard_bytes": shards,
            "pairwise_file_bytes": pairwise.stat().st_size, "shards_over_pair_data": shards / pair_data,
            "shards_over_pairwise_file": shards / pairwise.stat().st_size}


def make_embed_run(data: pathlib.Path, run_dir: pathlib.Path, log: pathlib.Path) -> None:
    """A tiny baseline pretrain run (one step) whose final/ the embed stage loads."""
    command = [sys.executable, "-m", "train.pretrain", "--model", "baseline", "--preset", "tiny", "--data", str(data),
               "--out", str(run_dir), "max_steps=1", "batch_size=8", "progress=false", "max_vocab=4000"]
    with open(log, "w") as handle:
        subprocess.run(command, cwd=REPO_ROOT, env=child_env(), stdout=handle, stderr=subprocess.STDOUT, check=True)


def format_rows(rows: list[dict]) -> str:
    header = ("| stage | scale | records | work s | process s | process CPU s | written MB | peak RSS MB | "
              "records/s (work) | RSS vs 1x | work s vs 1x | CPU s vs 1x |")
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base = {row["stage"]: row for row in rows if row["scale"] == min(r["scale"] for r in rows)}
    for row in rows:
        first = base[row["stage"]]
        lines.append(f"| {row['stage']} | {row['scale']:g}x | {row['records']:,} | {row['work_s']:.1f} | "
                     f"{row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['written_mb']:,.0f} | {row['peak_rss_mb']:.0f} | "
                     f"{row['records'] / row['work_s']:,.0f} | {row['peak_rss_mb'] / first['peak_rss_mb']:.3f} | "
                     f"{row['work_s'] / first['work_s']:.2f} | {row['cpu_s'] / first['cpu_s']:.2f} |")
    return "\n".join(lines)


def linearity(rows: list[dict]) -> str:
    """Per stage: least-squares seconds = a + b * records, and the largest relative residual."""
    import numpy as np

    lines = ["| stage | seconds | fixed s (a) | ms per 1k records (b) | max relative residual | peak RSS spread |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for stage in dict.fromkeys(row["stage"] for row in rows):
        chosen = [row for row in rows if row["stage"] == stage]
        if len(chosen) < 2:
            continue
        x = np.array([row["records"] for row in chosen], dtype=np.float64)
        rss = np.array([row["peak_rss_mb"] for row in chosen])
        for key, name in (("work_s", "work (wall)"), ("cpu_s", "process CPU")):
            y = np.array([row[key] for row in chosen])
            slope, intercept = np.polyfit(x, y, 1)
            residual = np.max(np.abs(intercept + slope * x - y) / y)
            lines.append(f"| {stage} | {name} | {intercept:.2f} | {slope * 1e6:.1f} | {residual:.1%} | "
                         f"{(rss.max() - rss.min()) / rss.min():.1%} |")
    return "\n".join(lines)


def format_full(full_rows: list[dict], rows: list[dict]) -> str:
    lines = ["| stage | records | work s | process CPU s | written MB | peak RSS MB | RSS vs scale 1 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    first = {row["stage"]: row for row in rows if row["scale"] == min(r["scale"] for r in rows)}
    for row in full_rows:
        ratio = f"{row['peak_rss_mb'] / first[row['stage']]['peak_rss_mb']:.3f}" if row["stage"] in first else "-"
        lines.append(f"| {row['stage']} | {row['records']:,} | {row['work_s']:.1f} | {row['cpu_s']:.1f} | "
                     f"{row['written_mb']:,.0f} | {row['peak_rss_mb']:.0f} | {ratio} |")
    return "\n".join(lines)


def format_bytes(entries: list[dict]) -> str:
    lines = ["| scale | pairs | pair data MB | fold shards MB | shards / pair data | pairwise file MB | "
             "shards / pairwise file |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for entry in entries:
        scale = f"{entry['scale']:g}x" if isinstance(entry["scale"], (int, float)) else entry["scale"]
        lines.append(f"| {scale} | {entry['pairs']:,} | {entry['pair_data_bytes'] / 1e6:,.1f} | "
                     f"{entry['shard_bytes'] / 1e6:,.1f} | {entry['shards_over_pair_data']:.4f} | "
                     f"{entry['pairwise_file_bytes'] / 1e6:,.1f} | {entry['shards_over_pairwise_file']:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="demo", help="synthetic preset of scale 1 (default demo)")
    parser.add_argument("--base-scale", type=float, default=2.0, help="size of scale 1, in units of --base")
    parser.add_argument("--pointwise-files", type=int, default=20, help="pointwise files at every scale (real: 20)")
    parser.add_argument("--scales", default="1,3,10")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--work", help="scratch directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch (TrainConfig default 32)")
    parser.add_argument("--model-steps", type=int, default=3, help="timed steps of the full-size baseline (0: skip)")
    parser.add_argument("--full-label-graph", action="store_true",
                        help="also synthesise the full preset's label graph and test set (67,899 pairs, 63,613 "
                             "videos, 31,514 test; 2,000 pointwise videos) and shard it")
    parser.add_argument("--malloc-arena-max", help="set MALLOC_ARENA_MAX for every stage (e.g. 2)")
    parser.add_argument("--run-length", default="1,10",
                        help="epochs of scale 1 for the run-length memory check ('' to skip)")
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--markdown", help="write the tables here")
    # child side
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--pointwise-videos", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--no-tokenize", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--max-batches", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        return run_stage(args)

    if args.malloc_arena_max:
        os.environ["MALLOC_ARENA_MAX"] = args.malloc_arena_max
    scales = [float(s) for s in args.scales.split(",")]
    stages = args.stages.split(",")
    scratch = tempfile.mkdtemp(prefix="videosim_scale_") if not args.work else args.work
    work = pathlib.Path(scratch)
    work.mkdir(parents=True, exist_ok=True)
    rows, bytes_rows, pipeline, full_rows, run_length = [], [], {}, [], []
    run_dir = work / "embed_run"
    try:
        for scale in scales:
            data = work / f"data_{scale:g}x"
            logs = work / f"logs_{scale:g}x"
            logs.mkdir(exist_ok=True)
            for stage in stages:
                if stage == "synth":
                    command = stage_command("synth", data, base=args.base, scale=scale * args.base_scale,
                                            pointwise_files=args.pointwise_files)
                elif stage == "write_tfrecord":
                    command = stage_command("write_tfrecord", data)
                elif stage == "pretrain_input":
                    command = stage_command("pretrain_input", data, batch_size=args.batch_size)
                else:
                    if not (run_dir / "final").exists():
                        make_embed_run(data, run_dir, logs / "embed_run.log")
                    command = stage_command("embed_test", data, run=run_dir, out=work / "test.npz")
                result = measure(command, logs / f"{stage}.log")
                result.update(stage=stage, scale=scale)
                rows.append(result)
                print(f"{stage:>15} {scale:>4g}x: {result['records']:>9,} records, work {result['work_s']:7.1f} s, "
                      f"process {result['wall_s']:7.1f} s, peak RSS {result['peak_rss_mb']:7.0f} MB", flush=True)
            if "write_tfrecord" in stages:
                entry = pair_bytes(data)
                entry["scale"] = scale
                bytes_rows.append(entry)
                print(f"{'fold bytes':>15} {scale:>4g}x: shards / pair data {entry['shards_over_pair_data']:.4f}, "
                      f"shards / pairwise file {entry['shards_over_pairwise_file']:.3f}", flush=True)
            if scale == scales[0] and "pretrain_input" in stages and args.run_length:
                run_length = run_length_check(data, args.batch_size, [int(e) for e in args.run_length.split(",")],
                                              logs)
            if scale == scales[0] and "pretrain_input" in stages:
                pipeline["no_tokenize"] = measure(stage_command("pretrain_input", data, batch_size=args.batch_size,
                                                                no_tokenize=True), logs / "pretrain_input_raw.log")
                pipeline["tokenize"] = next(r for r in rows if r["stage"] == "pretrain_input" and r["scale"] == scale)
                if args.model_steps:
                    pipeline["model"] = measure(stage_command("model_steps", data, batch_size=args.batch_size,
                                                              model_steps=args.model_steps), logs / "model.log")
                    print(f"{'model':>15}: {pipeline['model']['steps_per_s']:.3f} steps/s x {args.batch_size} = "
                          f"{pipeline['model']['steps_per_s'] * args.batch_size:.1f} records/s "
                          f"(peak RSS {pipeline['model']['peak_rss_mb']:.0f} MB)", flush=True)
            if not args.keep and scale != scales[0]:
                shutil.rmtree(data, ignore_errors=True)
        if args.full_label_graph:
            data = work / "data_full_graph"
            logs = work / "logs_full_graph"
            logs.mkdir(exist_ok=True)
            for stage in ("synth", "write_tfrecord"):
                options = {"base": "full", "scale": 1, "pointwise_files": 20, "pointwise_videos": 2000} \
                    if stage == "synth" else {}
                result = measure(stage_command(stage, data, **options), logs / f"{stage}.log")
                result.update(stage=stage, scale="full graph")
                full_rows.append(result)
                print(f"{stage:>15} full graph: {result['records']:>9,} records, work {result['work_s']:7.1f} s, "
                      f"process {result['wall_s']:7.1f} s, peak RSS {result['peak_rss_mb']:7.0f} MB", flush=True)
            entry = pair_bytes(data)
            entry["scale"] = "full graph"
            bytes_rows.append(entry)
            if not args.keep:
                shutil.rmtree(data, ignore_errors=True)
    finally:
        if not args.keep:
            for path in work.glob("data_*"):
                shutil.rmtree(path, ignore_errors=True)
            (work / "test.npz").unlink(missing_ok=True)

    text = [f"## Scale ({os.cpu_count()} CPU cores; scale 1 = preset {args.base} x {args.base_scale:g} with "
            f"{args.pointwise_files} pointwise files; scales {args.scales}; MALLOC_ARENA_MAX="
            f"{os.environ.get('MALLOC_ARENA_MAX', 'default')})", "",
            format_rows(rows), "", "Linear fit of work seconds against records per stage:", "", linearity(rows)]
    if run_length:
        text += ["", "Peak RSS of the pretraining input pipeline against the run length (same scale-1 data):", "",
                 format_run_length(run_length)]
    if full_rows:
        text += ["", "The full preset's label graph and test set (67,899 pairs; pointwise part cut to 2,000 videos):",
                 "", format_full(full_rows, rows)]
    if bytes_rows:
        text += ["", "Fold shards on disk:", "", format_bytes(bytes_rows)]
    if pipeline:
        batch = args.batch_size
        tokenized = pipeline["tokenize"]["records"] / pipeline["tokenize"]["work_s"]
        raw = pipeline["no_tokenize"]["records"] / pipeline["no_tokenize"]["work_s"]
        text += ["", f"Input pipeline vs model (batch {batch}): pipeline {tokenized:,.0f} records/s with "
                     f"tokenisation, {raw:,.0f} without"]
        if "model" in pipeline:
            model_rate = pipeline["model"]["steps_per_s"] * batch
            text[-1] += (f"; full-size baseline {pipeline['model']['steps_per_s']:.3f} steps/s x {batch} = "
                         f"{model_rate:.1f} records/s: the pipeline is {tokenized / model_rate:.0f}x faster")
    report = "\n".join(text)
    print("\n" + report)
    if args.markdown:
        pathlib.Path(args.markdown).write_text(report + "\n")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"rows": rows, "bytes": bytes_rows, "pipeline": pipeline,
                                                       "full_graph": full_rows, "run_length": run_length},
                                                      indent=2) + "\n")
    if not args.work and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
