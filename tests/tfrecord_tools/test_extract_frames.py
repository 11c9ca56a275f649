"""extract_frames: which frames are taken (1 fps, <= 32 spread over the video), the network's
features (batched across videos, random or file weights), unreadable files, reruns.

Videos are written by the test with PyAV (tests/tfrecord_tools/videos.py); the network runs at a
32-pixel input (--image-size) with random weights, so everything stays fast on a CPU.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tfrecord_tools.videos import frame_numbers, write_video
from tfrecord_tools import extract_frames as ef

SIZE = 32  # network input in these tests (the default is EfficientNet-B3's 300)


def test_sample_indices_keep_all_up_to_32_then_spread_over_the_whole_video():
    assert ef.sample_indices(5).tolist() == [0, 1, 2, 3, 4]
    assert ef.sample_indices(32).tolist() == list(range(32))
    spread = ef.sample_indices(100)
    assert len(spread) == 32 and spread[0] == 0 and spread[-1] == 99
    assert np.all(np.diff(spread) >= 3) and np.all(np.diff(spread) <= 4)
    assert ef.sample_times(3.0).tolist() == [0, 1, 2]
    assert ef.sample_times(3.2).tolist() == [0, 1, 2, 3]  # a frame at 3 s exists
    assert ef.sample_times(0.3).tolist() == [0]
    assert ef.sample_times(10, fps=2).tolist() == [i / 2 for i in range(20)]
    assert ef.sample_times(40, max_frames=4).tolist() == [0, 13, 26, 39]


@pytest.mark.parametrize("seconds, fps, codec, expected", [
    (3, 4, "mpeg4", [0, 4, 8]),  # one frame a second from 0 s
    (5.5, 2, "libx264", [0, 2, 4, 6, 8, 10]),  # 5.5 s: frames at 0..5 s
    (40, 2, "mpeg4", (2 * ef.sample_times(40)).astype(int).tolist()),  # 40 s: 32 of the 40 seconds, spread
])
def test_decode_frames_takes_one_frame_a_second_at_most_32(tmp_path, seconds, fps, codec, expected):
    path = write_video(tmp_path / "v.mp4", seconds, fps=fps, codec=codec)
    frames = ef.decode_frames(str(path), 36)
    assert frames.dtype == np.uint8 and frames.shape == (len(expected), 36, 36, 3)
    assert frame_numbers(frames) == expected
    if seconds == 40:
        assert len(expected) == 32 and expected[-1] == 78  # reaches the end, not the first 32 s


def test_decode_frames_without_a_known_duration_spreads_approximately(tmp_path, monkeypatch):
    path = write_video(tmp_path / "long.mp4", 150, fps=1, size=(72, 16))
    monkeypatch.setattr(ef, "_stream_duration", lambda container, stream: None)
    taken = frame_numbers(ef.decode_frames(str(path), 36))
    exact = ef.sample_times(150).astype(int)
    assert len(taken) == 32 and taken[0] == 0
    assert len(set(taken)) == 32 and np.max(np.abs(np.array(taken) - exact)) <= 3  # a grid thinned to every 4th s
    short = write_video(tmp_path / "short.mp4", 3, fps=4)
    assert frame_numbers(ef.decode_frames(str(short), 36)) == [0, 4, 8]


def test_decode_frames_rejects_unreadable_files(tmp_path):
    import av

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 50)
    with pytest.raises(av.error.FFmpegError):
        ef.decode_frames(str(garbage), SIZE)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(av.error.FFmpegError):
        ef.decode_frames(str(empty), SIZE)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "101.mp4", 3, fps=4)
    write_video(root / "102.mkv", 6.5, fps=2, codec="libx264")
    write_video(root / "103.mp4", 2, fps=3)
    write_video(root / "104.mov", 40, fps=1, size=(72, 16))
    (root / "105.mp4").write_bytes(b"\x00\x01 broken" * 40)
    (root / "notes.txt").write_text("not a video: ignored")
    return root


def _run(videos, out, *extra):
    return ef.main(["--videos", str(videos), "--out", str(out), "--random-weights", "--image-size", str(SIZE),
                    "--quiet", *extra])


def test_extract_writes_float16_arrays_and_lists_unreadable_files(video_dir, tmp_path, capsys):
    out = tmp_path / "features"
    assert _run(video_dir, out, "--batch-size", "5") == 0
    captured = capsys.readouterr()
    assert "105.mp4" in captured.err and "unreadable" in captured.err
    assert "extracted 4 of 5 videos" in captured.out and "1 unreadable" in captured.out
    arrays = {path.stem: np.load(path) for path in sorted(out.glob("*.npy"))}
    assert {name: a.shape for name, a in arrays.items()} == {
        "101": (3, 1536), "102": (7, 1536), "103": (2, 1536), "104": (32, 1536)}
    assert all(a.dtype == np.float16 and np.isfinite(a).all() and np.abs(a).max() > 0 for a in arrays.values())
    unreadable = (out / "unreadable.tsv").read_text().splitlines()
    assert unreadable[0] == "file\treason" and len(unreadable) == 2 and unreadable[1].startswith(str(video_dir / "105.mp4"))
    meta = json.loads((out / "extract_meta.json").read_text())
    assert meta["counts"] == {"video_files": 5, "already_done": 0, "extracted": 4, "unreadable": 1, "frames": 44}
    assert meta["settings"]["image_size"] == SIZE and meta["settings"]["weights"].startswith("random")

    # Batches of 5 frames span videos; one batch of 64 gives the same features.
    other = tmp_path / "features64"
    assert _run(video_dir, other, "--batch-size", "64", "--decode-workers", "1") == 0
    for name, array in arrays.items():
        np.testing.assert_allclose(np.load(other / f"{name}.npy").astype(np.float32), array.astype(np.float32),
                                   rtol=2e-2, atol=2.0 ** -24)  # one float16 step near zero
    # Identical frames give identical features: frame 0 of every video shows the same image.
    firsts = np.stack([a[0] for a in arrays.values()]).astype(np.float32)
    np.testing.assert_allclose(firsts, firsts[:1].repeat(4, axis=0), rtol=2e-2, atol=2.0 ** -24)

    # A rerun keeps what exists; other settings are refused; --overwrite recomputes.
    before = (out / "101.npy").stat().st_mtime_ns
    assert _run(video_dir, out) == 0
    assert "0 of 5 videos" in capsys.readouterr().out and (out / "101.npy").stat().st_mtime_ns == before
    assert ef.main(["--videos", str(video_dir), "--out", str(out), "--random-weights", "--image-size", "48",
                    "--quiet"]) == 2
    assert "image_size differ" in capsys.readouterr().err


def test_weights_file_gives_the_features_of_those_weights(video_dir, tmp_path):
    random_net = ef.build_extractor(None, SIZE)  # what --random-weights runs (built once a process)
    weights = tmp_path / "efficientnetb3_notop.h5"
    random_net.model.save_weights(str(weights))
    out = tmp_path / "from_file"
    assert ef.main(["--videos", str(video_dir), "--out", str(out), "--weights", str(weights),
                    "--image-size", str(SIZE), "--quiet"]) == 0
    meta = json.loads((out / "extract_meta.json").read_text())
    assert meta["settings"]["weights"] == str(weights) and len(meta["settings"]["weights_md5"]) == 32
    frames = ef.decode_frames(str(video_dir / "101.mp4"), SIZE)
    expected = random_net(frames).astype(np.float16)
    np.testing.assert_allclose(np.load(out / "101.npy").astype(np.float32), expected.astype(np.float32),
                               rtol=2e-2, atol=1e-8)


def test_cli_errors(video_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):  # neither --weights nor --random-weights
        ef.main(["--videos", str(video_dir), "--out", str(tmp_path / "x")])
    assert "one of the arguments --weights --random-weights is required" in capsys.readouterr().err
    assert ef.main(["--videos", str(video_dir), "--out", str(tmp_path / "x"), "--weights",
                    str(tmp_path / "missing.h5"), "--quiet"]) == 2
    assert "missing.h5: weights file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    assert ef.main(["--videos", str(video_dir), "--out", str(tmp_path / "y"), "--weights", str(bad),
                    "--image-size", str(SIZE), "--quiet"]) == 2
    assert "cannot load EfficientNetB3" in capsys.readouterr().err
    assert _run(tmp_path / "nowhere", tmp_path / "z") == 2
    assert "videos directory not found" in capsys.readouterr().err
    assert ef.main(["--videos", str(video_dir), "--out", str(tmp_path / "z"), "--random-weights",
                    "--image-size", "16", "--quiet"]) == 2
    assert "at least 32" in capsys.readouterr().err
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "1.mp4").write_bytes(b"junk")
    assert _run(only_broken, tmp_path / "w") == 1  # nothing readable at all
    clash = tmp_path / "clash"
    write_video(clash / "7.mp4", 1)
    write_video(clash / "7.mkv", 1)
    assert _run(clash, tmp_path / "v") == 2
    assert "would both write 7.npy" in capsys.readouterr().err


def test_decode_frames_with_an_announced_duration_far_too_long(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.mp4", 6, fps=2)
    monkeypatch.setattr(ef, "_stream_duration", lambda container, stream: 600.0)  # broken metadata
    assert frame_numbers(ef.decode_frames(str(path), 36)) == [0, 2, 4, 6, 8, 10]  # what the stream holds
