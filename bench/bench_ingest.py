"""Speed and peak memory of bringing your own data: ingest at two collection sizes, frame extraction.

    python -m bench.bench_ingest [--sizes 2000,20000] [--modes dir,array] [--frames-mean 13]
                                 [--extract-videos 6] [--extract-seconds 20] [--image-size 300]
                                 [--batch-size 32] [--skip-extract] [--skip-ingest]
                                 [--work DIR] [--keep] [--json OUT]

Ingest. For each size ``n`` a synthetic collection is written: ``n`` feature arrays (float16, 5-32
frames, mean ~``--frames-mean``, like the real test_a), a metadata CSV (title, ASR for 65%, ~5 tags
from a Zipf-distributed vocabulary of 20,000 tags, category) and a label.tsv over 6% of the videos
(~1.1 pairs a labelled video, as the real file). ``python -m tfrecord_tools.ingest`` then runs in its
own process on it (``--labels``, ``--test-ids`` for 3% of the videos, default shard size), once per
input mode:

  dir    one ``<id>.npy`` per video
  array  the same frames in one ``frames.npy`` + an ``id,start,end`` index (the index in another
         order than the table, so every lookup seeks)

and reports records/s (videos of the table per second of ingest's own work time, read back from
``ingest_meta.json``, and per second of the whole process) and the peak RSS of the process
(``os.wait4``'s ``ru_maxrss``). Flat memory means the peak RSS stays the same when ``n`` grows 10x.

Extraction. ``--extract-videos`` videos of ``--extract-seconds`` s (640x360, 25 fps, H.264, written
with PyAV) go through ``python -m tfrecord_tools.extract_frames --random-weights`` at
``--image-size`` (random weights: the speed of the real network, features meaningless); reports
frames/s of the whole run and of the network alone, and the decode-only rate measured separately.
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

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FRAME_DIM = 1536
NUM_TAGS = 20_000


def child_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def run_measured(command: Sequence[str], log: pathlib.Path) -> dict:
    """Run ``command``; its wall seconds and peak RSS (MB, from wait4)."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(list(command), cwd=REPO_ROOT, env=child_env(), stdout=handle,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed; see {log}:\n" + log.read_text()[-3000:])
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}


# ------------------------------------------------------------------------------------ collections
def frame_counts(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """5-32 frames, skewed like the real test_a (median ~13 for mean 13)."""
    return np.clip(np.round(rng.gamma(4.0, (mean - 3) / 4.0, n) + 3), 5, 32).astype(np.int64)


def write_collection(root: pathlib.Path, n: int, frames_mean: float, seed: int = 0) -> dict:
    """features/<id>.npy, frames.npy + index.csv, meta.csv, label.tsv, test_ids.txt under ``root``."""
    rng = np.random.default_rng(seed)
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    ids = [str(10**12 + 7919 * i) for i in range(n)]
    counts = frame_counts(rng, n, frames_mean)
    total = int(counts.sum())
    tag_weights = 1.0 / np.arange(1, NUM_TAGS + 1) ** 1.1
    tag_weights /= tag_weights.sum()
    started = time.perf_counter()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f2")), "fortran_order": False,
              "shape": (total, FRAME_DIM)}
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    with open(root / "frames.npy", "wb") as array_file, open(root / "meta.csv", "w", encoding="utf-8") as meta:
        np.lib.format.write_array_header_1_0(array_file, header)
        meta.write("id,title,asr_text,tags,category\n")
        for i, video_id in enumerate(ids):
            frames = (rng.random((int(counts[i]), FRAME_DIM), dtype=np.float32) * 3.5 - 0.25).astype("<f2")
            np.save(features / f"{video_id}.npy", frames)
            array_file.write(frames.tobytes())
            tags = np.unique(rng.choice(NUM_TAGS, size=rng.integers(1, 10), p=tag_weights)) + 1000
            asr = f"这是第{i}段语音 内容 {rng.integers(1e6)}" if rng.random() < 0.65 else ""
            meta.write(f"{video_id},视频标题 {i} 关于 {rng.integers(1e6)} 的故事,{asr},"
                       f"{';'.join(map(str, tags))},{10000 + int(rng.integers(328))}\n")
    order = rng.permutation(n)
    with open(root / "index.csv", "w") as index:
        index.write("id,start,end\n")
        for i in order:
            index.write(f"{ids[i]},{starts[i]},{starts[i] + counts[i]}\n")
    labelled = rng.choice(n, size=max(2, int(0.06 * n)), replace=False)
    pairs = set()
    while len(pairs) < int(1.1 * len(labelled)):
        a, b = rng.choice(labelled, 2, replace=False)
        pairs.add((int(a), int(b)))
    with open(root / "label.tsv", "w") as labels:
        for a, b in sorted(pairs):
            labels.write(f"{ids[a]}\t{ids[b]}\t{rng.integers(21) / 20:.2f}\n".replace("0.00", "0.0").replace("1.00", "1.0"))
    unlabelled = np.setdiff1d(np.arange(n), labelled)
    test = rng.choice(unlabelled, size=max(1, int(0.03 * n)), replace=False)
    (root / "test_ids.txt").write_text("".join(f"{ids[i]}\n" for i in sorted(test)))
    return {"videos": n, "frames": total, "pairs": len(pairs), "test": len(test),
            "feature_bytes": total * FRAME_DIM * 2, "write_s": time.perf_counter() - started}


def bench_ingest(work: pathlib.Path, sizes: Sequence[int], modes: Sequence[str], frames_mean: float,
                 keep: bool) -> list[dict]:
    rows = []
    for n in sizes:
        root = work / f"collection_{n}"
        shutil.rmtree(root, ignore_errors=True)
        info = write_collection(root, n, frames_mean)
        print(f"collection of {n} videos ({info['frames']} frames, {info['feature_bytes'] / 1e9:.2f} GB of "
              f"features) written in {info['write_s']:.0f} s", flush=True)
        for mode in modes:
            out = root / f"data_{mode}"
            features = ["--features", str(root / "features")] if mode == "dir" else \
                ["--features", str(root / "frames.npy"), "--offsets", str(root / "index.csv")]
            command = [sys.executable, "-m", "tfrecord_tools.ingest", *features, "--metadata", str(root / "meta.csv"),
                       "--labels", str(root / "label.tsv"), "--test-ids", str(root / "test_ids.txt"),
                       "--out", str(out), "--quiet"]
            measured = run_measured(command, root / f"ingest_{mode}.log")
            meta = json.loads((out / "ingest_meta.json").read_text())
            counts = meta["counts"]
            row = {"videos": n, "mode": mode, "frames": counts["frames"], "work_s": meta["seconds"],
                   "records_per_s": n / meta["seconds"], "records_per_s_process": n / measured["wall_s"],
                   "output_mb": sum(entry.get("bytes", 0) for entry in meta["files"].values()) / 1e6,
                   "pointwise": counts["pointwise_videos"], "pairwise": counts["pairwise_videos"],
                   "test_a": counts["test_a_videos"], "pairs": counts["pairs"], **measured}
            rows.append(row)
            print(f"  ingest {mode:5s} {n:>7,} videos: {row['records_per_s']:,.0f} records/s (work), "
                  f"{row['records_per_s_process']:,.0f} records/s (process), peak RSS {row['peak_rss_mb']:.0f} MB",
                  flush=True)
            shutil.rmtree(out, ignore_errors=True)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------------ extraction
def write_bench_videos(directory: pathlib.Path, count: int, seconds: float) -> None:
    import av

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for number in range(count):
        with av.open(str(directory / f"{900 + number}.mp4"), mode="w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
            base = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
            for index in range(int(seconds * 25)):
                image = np.roll(base, 4 * index, axis=1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def bench_extract(work: pathlib.Path, videos: int, seconds: float, image_size: int, batch_size: int) -> dict:
    from tfrecord_tools.extract_frames import decode_frames

    directory = work / "videos"
    shutil.rmtree(directory, ignore_errors=True)
    write_bench_videos(directory, videos, seconds)
    started = time.perf_counter()
    decoded = sum(len(decode_frames(str(path), image_size)) for path in sorted(directory.glob("*.mp4")))
    decode_s = time.perf_counter() - started
    out = work / "features"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "tfrecord_tools.extract_frames", "--videos", str(directory), "--out", str(out),
               "--random-weights", "--image-size", str(image_size), "--batch-size", str(batch_size), "--quiet"]
    measured = run_measured(command, work / "extract.log")
    meta = json.loads((out / "extract_meta.json").read_text())
    frames = meta["counts"]["frames"]
    row = {"videos": videos, "seconds_each": seconds, "image_size": image_size, "batch_size": batch_size,
           "frames": frames, "decode_only_frames_per_s": decoded / decode_s,
           "frames_per_s": frames / meta["seconds"], "network_frames_per_s": frames / meta["network_seconds"],
           "frames_per_s_process": frames / measured["wall_s"], **measured}
    print(f"extract {videos} videos x {seconds:g} s at {image_size} px: {row['frames_per_s']:.1f} frames/s "
          f"(network alone {row['network_frames_per_s']:.1f}, decode alone {row['decode_only_frames_per_s']:.0f}), "
          f"peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    return row


def markdown(ingest_rows: list[dict], extract_row: dict | None) -> str:
    lines = []
    if ingest_rows:
        lines += ["| videos | input | frames | records/s (work) | records/s (process) | process CPU s | peak RSS MB "
                  "| output MB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['videos']:,} | {r['mode']} | {r['frames']:,} | {r['records_per_s']:,.0f} | "
                  f"{r['records_per_s_process']:,.0f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                  f"{r['output_mb']:.0f} |" for r in ingest_rows]
    if extract_row:
        r = extract_row
        lines += ["", "| videos | image size | batch | frames | frames/s | network frames/s | decode-only frames/s "
                  "| peak RSS MB |", "| --- | --- | --- | --- | --- | --- | --- | --- |",
                  f"| {r['videos']} x {r['seconds_each']:g} s | {r['image_size']} | {r['batch_size']} | {r['frames']} | "
                  f"{r['frames_per_s']:.1f} | {r['network_frames_per_s']:.1f} | {r['decode_only_frames_per_s']:.0f} | "
                  f"{r['peak_rss_mb']:.0f} |"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,20000", help="collection sizes (videos), comma separated")
    parser.add_argument("--modes", default="dir,array", help="ingest input modes: dir, array")
    parser.add_argument("--frames-mean", type=float, default=13.0)
    parser.add_argument("--extract-videos", type=int, default=6)
    parser.add_argument("--extract-seconds", type=float, default=20.0)
    parser.add_argument("--image-size", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-extract", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--work", help="working directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated collections")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_ingest_"))
    work.mkdir(parents=True, exist_ok=True)
    ingest_rows = [] if args.skip_ingest else bench_ingest(
        work, [int(size) for size in args.sizes.split(",")], args.modes.split(","), args.frames_mean, args.keep)
    extract_row = None if args.skip_extract else bench_extract(
        work, args.extract_videos, args.extract_seconds, args.image_size, args.batch_size)
    print()
    print(markdown(ingest_rows, extract_row))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"ingest": ingest_rows, "extract": extract_row}, indent=2) + "\n")
    if not args.work and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
