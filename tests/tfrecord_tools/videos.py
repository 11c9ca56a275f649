"""Tiny video files written with PyAV for the tests (nothing is downloaded).

Frame ``i`` of a ``write_video`` file shows ``i`` in binary as 9 vertical black/white stripes, so a
test can tell from the decoded pixels (even after lossy compression and resizing) which frames a
sampler took.
"""
from __future__ import annotations

import pathlib

import numpy as np

BITS = 9  # frame numbers up to 511


def frame_image(index: int, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 [height, width, 3]: stripe b is white when bit b of ``index`` is set."""
    width, height = size
    columns = np.minimum(np.arange(width) * BITS // width, BITS - 1)
    row = np.where((index >> columns) & 1, 235, 20).astype(np.uint8)
    return np.broadcast_to(row[None, :, None], (height, width, 3)).copy()


def write_video(path, seconds: float, fps: int = 4, size: tuple[int, int] = (72, 32),
                codec: str = "mpeg4") -> pathlib.Path:
    """A ``seconds`` long video at ``fps`` frames a second; frame i shows i (``frame_image``)."""
    import av

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(int(round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(frame_image(index, size), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_numbers(frames: np.ndarray) -> list[int]:
    """Which source frame each decoded RGB frame [n, h, w, 3] shows."""
    n, _, width, _ = frames.shape
    columns = np.minimum(np.arange(width) * BITS // width, BITS - 1)
    numbers = []
    for frame in frames:
        stripe = frame.mean(axis=(0, 2))
        bits = [stripe[columns == b][1:-1].mean() > 127 for b in range(BITS)]  # stripe centres
        numbers.append(sum(1 << b for b, bit in enumerate(bits) if bit))
    return numbers
