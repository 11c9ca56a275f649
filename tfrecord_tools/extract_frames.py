"""Frame features from video files: PyAV decoding at 1 fps + Keras EfficientNetB3 -> float16 arrays.

    python -m tfrecord_tools.extract_frames --videos DIR --out DIR --weights efficientnetb3_notop.h5
                                            [--image-size 300] [--fps 1] [--max-frames 32]
                                            [--batch-size 32] [--decode-workers N] [--overwrite] [--quiet]

For every video file of ``--videos`` (``.mp4 .mov .mkv .webm .avi ...``, not recursive) writes
``OUT/<file name without extension>.npy``: float16 ``[frames, 1536]``, the layout
``python -m tfrecord_tools.ingest --features OUT`` reads (name the files by their decimal video id,
e.g. ``1234.mp4``, or give the metadata a ``feature_file`` column).

Frames as the challenge took them: one frame a second (the first frame at or after t = 0 s, 1 s,
2 s, ... from the start of the stream), at most ``--max-frames`` 32; a longer video keeps 32 of its
1-second frames spread evenly over its whole length (``round(linspace(0, n - 1, 32))``), not its
first 32 seconds (a stream with no duration, or one that ends well before the duration it
announces, gets 32 frames spread over what it holds, to within a few seconds). Each frame is converted to RGB and resized to ``--image-size`` squared (300, the
EfficientNet-B3 input size; no crop) and goes through ``tf_keras.applications.EfficientNetB3``
(``include_top=False, pooling="avg"``: 1,536 values a frame; the network rescales and normalises
0-255 RGB itself).

Weights come from a local file only (``--weights``: e.g. Keras' ``efficientnetb3_notop.h5``; nothing
is downloaded). ``--random-weights`` builds the network with random weights (seed 0): for tests and
speed measurements only, the features mean nothing.

Frames of several videos share one batch (``--batch-size`` frames); ``--decode-workers`` threads
decode the next videos meanwhile. A file that cannot be opened or decoded (or holds no video frame)
is listed on the terminal and in ``OUT/unreadable.tsv`` (file, reason) and the run goes on; the exit
status is 1 only when no video at all could be read. Outputs are written atomically; a rerun keeps
the arrays already written (``--overwrite`` recomputes them) and refuses to mix settings: the
weights, image size, fps and frame cap are recorded in ``OUT/extract_meta.json``.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from typing import Iterator, Sequence

import numpy as np

from tfrecord_tools import schema
from tfrecord_tools.atomic import atomic_path, write_text_atomic

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg", ".ts",
                  ".3gp", ".ogv")
DEFAULT_IMAGE_SIZE = 300  # EfficientNet-B3's input resolution
MIN_IMAGE_SIZE = 32  # the smallest input Keras' EfficientNet accepts without its top
META_FILE = "extract_meta.json"
UNREADABLE_FILE = "unreadable.tsv"


# ------------------------------------------------------------------------------------ sampling
def sample_indices(count: int, max_frames: int = schema.MAX_FRAMES) -> np.ndarray:
    """Which of ``count`` 1-second frames to keep: all when ``count <= max_frames``, else
    ``max_frames`` spread evenly over the whole video (first and last included)."""
    if count <= max_frames:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, max_frames)).astype(np.int64))


def sample_times(duration: float, fps: float = 1.0, max_frames: int = schema.MAX_FRAMES) -> np.ndarray:
    """Seconds (from the first frame) of the frames to take from a video lasting ``duration`` s."""
    count = max(1, math.ceil(duration * fps - 1e-6))
    return sample_indices(count, max_frames) / fps


def _stream_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
        if seconds > 0:
            return seconds
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    if container.duration:
        import av

        return container.duration / av.time_base
    return None


def decode_frames(path: str, image_size: int, fps: float = 1.0, max_frames: int = schema.MAX_FRAMES) -> np.ndarray:
    """uint8 ``[frames, image_size, image_size, 3]`` RGB frames of one video (see the module doc).

    Raises an exception (``av.error.FFmpegError``, ValueError) for a file that cannot be decoded or
    holds no video frame.
    """
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = _stream_duration(container, stream)
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        targets = sample_times(duration, fps, max_frames) if duration else None
        picked: list[np.ndarray] = []  # the frames at ``targets``
        # Also every 1/fps-second frame (thinned to every 2nd, 4th, ... as it grows): what is used
        # when the duration is unknown or the stream ends well before its announced duration.
        grid: list[tuple[int, np.ndarray]] = []
        step, next_slot, target, origin = 1, 0, 0, None
        for number, frame in enumerate(container.decode(stream)):
            time_s = frame.time if frame.time is not None else number / rate
            if origin is None:
                origin = time_s
            elapsed = time_s - origin + 0.5 / rate  # half a frame of slack for rounded timestamps
            image = None
            while targets is not None and target < len(targets) and elapsed >= targets[target]:
                image = _rgb(frame, image_size) if image is None else image
                picked.append(image)
                target += 1
            if targets is not None and target >= len(targets):
                break
            while elapsed * fps >= next_slot:
                image = _rgb(frame, image_size) if image is None else image
                grid.append((next_slot, image))
                next_slot += step
                if len(grid) > 2 * max_frames:  # bounded memory: at most 64 frames held
                    grid = grid[::2]
                    step *= 2
                    next_slot = grid[-1][0] + step
        if (targets is None or len(picked) < len(targets)) and grid:
            slots = np.array([slot for slot, _ in grid])
            # The 1/fps grid of the length actually decoded, then the kept frames nearest to it.
            wanted = sample_indices(int(slots[-1]) + 1, max_frames)
            picked = [grid[int(np.argmin(np.abs(slots - slot)))][1] for slot in wanted]
    if not picked:
        raise ValueError("no video frame could be decoded")
    return np.stack(picked)


def _rgb(frame, image_size: int) -> np.ndarray:
    return frame.to_ndarray(format="rgb24", width=image_size, height=image_size, interpolation="BILINEAR")


# ------------------------------------------------------------------------------------ the network
class Extractor:
    """EfficientNetB3 (no top, average pooling): uint8 RGB images [b, s, s, 3] -> float32 [b, 1536]."""

    def __init__(self, model, image_size: int):
        import tensorflow as tf

        self.model, self.image_size = model, image_size
        self._call = tf.function(lambda images: model(tf.cast(images, tf.float32), training=False),
                                 input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8)])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._call(images).numpy()


def build_extractor(weights: str | None, image_size: int = DEFAULT_IMAGE_SIZE) -> Extractor:
    """The network with the weights of a local file, or random weights (seed 0) for ``weights=None``
    (tests and speed runs only). Built once per (weights file and its mtime, image size) a process."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"--image-size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: weights file not found (nothing is downloaded; give a local "
                                f"EfficientNetB3 no-top weights file, e.g. efficientnetb3_notop.h5)")
    key = None if weights is None else (os.path.abspath(weights), os.stat(weights).st_mtime_ns)
    return _build_extractor(key, image_size)


@functools.lru_cache(maxsize=2)
def _build_extractor(weights_key: tuple[str, int] | None, image_size: int) -> Extractor:
    import tf_keras

    if weights_key is None:
        tf_keras.utils.set_random_seed(0)
    try:
        model = tf_keras.applications.EfficientNetB3(include_top=False, weights=None, pooling="avg",
                                                     input_shape=(image_size, image_size, 3))
        if weights_key is not None:
            model.load_weights(weights_key[0])
    except (ValueError, OSError, ImportError) as error:
        raise ValueError(f"{weights_key[0] if weights_key else 'random weights'}: cannot load EfficientNetB3 "
                         f"(no top) weights from this file: {error}") from None
    if model.output_shape[-1] != schema.FRAME_DIM:
        raise ValueError(f"the network gives {model.output_shape[-1]} features, expected {schema.FRAME_DIM}")
    extractor = Extractor(model, image_size)
    extractor(np.zeros((1, image_size, image_size, 3), np.uint8))  # trace the graph once, outside the timing
    return extractor


def file_md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ the run
@dataclasses.dataclass
class ExtractOptions:
    videos: str
    out: str
    weights: str | None = None
    random_weights: bool = False
    image_size: int = DEFAULT_IMAGE_SIZE
    fps: float = 1.0
    max_frames: int = schema.MAX_FRAMES
    batch_size: int = 32
    decode_workers: int = 2
    overwrite: bool = False
    progress: bool = True


def list_videos(directory: str) -> list[str]:
    """Video files of a directory (by extension, not hidden), sorted by name."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: videos directory not found")
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if not name.startswith(".") and name.lower().endswith(VIDEO_SUFFIXES)
                  and os.path.isfile(os.path.join(directory, name)))


def output_path(out: str, video: str) -> str:
    return os.path.join(out, os.path.splitext(os.path.basename(video))[0] + ".npy")


def _settings(options: ExtractOptions) -> dict:
    return {"model": "tf_keras.applications.EfficientNetB3(include_top=False, pooling='avg')",
            "weights": "random (seed 0)" if options.weights is None else os.path.abspath(options.weights),
            "weights_md5": None if options.weights is None else file_md5(options.weights),
            "image_size": options.image_size, "fps": options.fps, "max_frames": options.max_frames,
            "dtype": "float16", "frame_dim": schema.FRAME_DIM}


def _decode_ahead(videos: Sequence[str], options: ExtractOptions) -> Iterator[tuple[str, np.ndarray | None, str]]:
    """(video, frames or None, error) in order, decoding up to 2 x workers videos ahead in threads."""
    def decode(path):
        try:
            return decode_frames(path, options.image_size, options.fps, options.max_frames), ""
        except Exception as error:  # av.error.FFmpegError, ValueError, OSError, MemoryError...
            return None, f"{type(error).__name__}: {error}".replace("\t", " ").replace("\n", " ")

    workers = max(1, options.decode_workers)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: list[tuple[str, concurrent.futures.Future]] = []
        queue = iter(videos)
        for path in queue:
            pending.append((path, pool.submit(decode, path)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            path, future = pending.pop(0)
            frames, error = future.result()
            following = next(queue, None)
            if following is not None:
                pending.append((following, pool.submit(decode, following)))
            yield path, frames, error


def extract(options: ExtractOptions, log=print) -> dict:
    """Extract every video of ``options.videos``; returns the run summary (also in extract_meta.json)."""
    from tqdm.auto import tqdm

    if (options.weights is None) == (not options.random_weights):
        raise ValueError("give --weights PATH (a local EfficientNetB3 no-top weights file) or --random-weights "
                         "(tests and speed measurements only)")
    if options.fps <= 0 or options.max_frames < 1 or options.batch_size < 1:
        raise ValueError("--fps, --max-frames and --batch-size must be positive")
    if options.image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"--image-size must be at least {MIN_IMAGE_SIZE}, got {options.image_size}")
    if options.weights is not None and not os.path.isfile(options.weights):
        raise FileNotFoundError(f"{options.weights}: weights file not found (nothing is downloaded; give a local "
                                f"EfficientNetB3 no-top weights file, e.g. efficientnetb3_notop.h5)")
    videos = list_videos(options.videos)
    stems: dict[str, str] = {}
    for video in videos:
        stem = os.path.splitext(os.path.basename(video))[0]
        if stem in stems:
            raise ValueError(f"{video} and {stems[stem]} would both write {stem}.npy: rename one")
        stems[stem] = video
    os.makedirs(options.out, exist_ok=True)
    settings = _settings(options)
    meta_path = os.path.join(options.out, META_FILE)
    if os.path.exists(meta_path) and not options.overwrite:
        previous = json.load(open(meta_path, encoding="utf-8")).get("settings", {})
        differ = sorted(key for key in settings if previous.get(key) != settings[key])
        if differ:
            raise ValueError(f"{options.out} holds features extracted with other settings ({', '.join(differ)} "
                             f"differ); use another --out or pass --overwrite")
    todo = [video for video in videos if options.overwrite or not os.path.exists(output_path(options.out, video))]
    kept = len(videos) - len(todo)
    tic = time.perf_counter()
    extractor = build_extractor(options.weights, options.image_size) if todo else None
    build_s = time.perf_counter() - tic
    started = time.perf_counter()

    unreadable: list[tuple[str, str]] = []
    written = frames_done = 0
    batch: list[np.ndarray] = []  # frames waiting for the network
    owners: list[tuple[str, int]] = []  # (video, frame count) in batch order, possibly spanning batches
    features: dict[str, list[np.ndarray]] = {}
    bar = tqdm(total=len(todo), unit="video", desc="extract", disable=not options.progress, dynamic_ncols=True,
               mininterval=1.0)
    network_s = 0.0

    def run_network(final: bool) -> None:
        nonlocal batch, written, frames_done, network_s
        while batch and (final or sum(len(b) for b in batch) >= options.batch_size):
            stacked = np.concatenate(batch)
            take, rest = stacked[:options.batch_size], stacked[options.batch_size:]
            tic = time.perf_counter()
            out = extractor(take)
            network_s += time.perf_counter() - tic
            batch = [rest] if len(rest) else []
            # Hand the rows back to their videos in order; write each finished video.
            position = 0
            while position < len(out):
                video, remaining = owners[0]
                used = min(remaining, len(out) - position)
                features.setdefault(video, []).append(out[position:position + used])
                position += used
                if used == remaining:
                    owners.pop(0)
                    _write(video, np.concatenate(features.pop(video)))
                else:
                    owners[0] = (video, remaining - used)

    def _write(video: str, array: np.ndarray) -> None:
        nonlocal written, frames_done
        half = array.astype("<f2")
        if not np.isfinite(half).all():
            unreadable.append((video, "the network gave NaN/Inf or values beyond float16"))
            log(f"extract: {video}: the network gave NaN/Inf or values beyond float16; skipped")
        else:
            with atomic_path(output_path(options.out, video)) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, half)
            written += 1
            frames_done += len(half)
        bar.update(1)
        bar.set_postfix(frames=frames_done, refresh=False)

    for video, frames, error in _decode_ahead(todo, options):
        if frames is None:
            unreadable.append((video, error))
            log(f"extract: unreadable, skipped: {video} ({error})")
            bar.update(1)
            continue
        batch.append(frames)
        owners.append((video, len(frames)))
        run_network(final=False)
    run_network(final=True)
    bar.close()
    elapsed = time.perf_counter() - started

    write_text_atomic(os.path.join(options.out, UNREADABLE_FILE),
                      "file\treason\n" + "".join(f"{video}\t{reason}\n" for video, reason in unreadable))
    meta = {"generator": "tfrecord_tools.extract_frames", "settings": settings,
            "videos_dir": os.path.abspath(options.videos),
            "counts": {"video_files": len(videos), "already_done": kept, "extracted": written,
                       "unreadable": len(unreadable), "frames": frames_done},
            "model_build_seconds": round(build_s, 3), "seconds": round(elapsed, 3),
            "network_seconds": round(network_s, 3),
            "frames_per_second": round(frames_done / elapsed, 3) if elapsed > 0 and frames_done else None,
            "unreadable": [{"file": video, "reason": reason} for video, reason in unreadable]}
    write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    description, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="python -m tfrecord_tools.extract_frames", description=description,
                                     epilog=details, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", required=True, help="directory of video files")
    parser.add_argument("--out", required=True, help="output directory of <name>.npy float16 [frames, 1536]")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", help="local EfficientNetB3 no-top weights file (e.g. efficientnetb3_notop.h5)")
    weights.add_argument("--random-weights", action="store_true",
                         help="random network weights: for tests and speed measurements only")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help=f"network input size in pixels (default {DEFAULT_IMAGE_SIZE}, EfficientNet-B3's)")
    parser.add_argument("--fps", type=float, default=1.0, help="frames a second (default 1, the challenge's)")
    parser.add_argument("--max-frames", type=int, default=schema.MAX_FRAMES,
                        help=f"at most this many frames a video, spread over it (default {schema.MAX_FRAMES})")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per network batch (default 32)")
    parser.add_argument("--decode-workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="threads decoding the next videos (default min(4, CPUs))")
    parser.add_argument("--overwrite", action="store_true", help="recompute arrays that already exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    options = ExtractOptions(videos=args.videos, out=args.out, weights=args.weights,
                             random_weights=args.random_weights, image_size=args.image_size, fps=args.fps,
                             max_frames=args.max_frames, batch_size=args.batch_size,
                             decode_workers=args.decode_workers, overwrite=args.overwrite, progress=not args.quiet)
    try:
        meta = extract(options, log=lambda message: print(message, file=sys.stderr))
    except (ValueError, FileNotFoundError) as error:
        print(f"extract_frames: error: {error}", file=sys.stderr)
        return 2
    counts = meta["counts"]
    rate = f", {meta['frames_per_second']:.1f} frames/s" if meta["frames_per_second"] else ""
    print(f"extracted {counts['extracted']} of {counts['video_files']} videos ({counts['frames']} frames{rate}) into "
          f"{args.out}; {counts['already_done']} already done, {counts['unreadable']} unreadable"
          + (f" (listed in {os.path.join(args.out, UNREADABLE_FILE)})" if counts["unreadable"] else ""))
    if options.random_weights:
        print("extract_frames: random weights: these features are for tests and speed runs only", file=sys.stderr)
    if counts["video_files"] and counts["extracted"] + counts["already_done"] == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
