"""Frame statistics: a streaming pass matches numpy on the raw records, is written once and reused."""
import numpy as np
import pytest

from models.config import ModelConfig
from models.registry import build_model
from models.base import example_features
from tfrecord_tools import schema
from tfrecord_tools.reader import read_raw_videos, sample_frame_indices
from train import frame_stats


def test_statistics_match_the_records_and_are_reused(synthetic_data, tmp_path):
    files = sorted(str(p) for p in (synthetic_data / "pointwise").glob("*.tfrecords"))
    stats = frame_stats.compute_frame_statistics(files[:1], pairs=False, frame_dim=schema.FRAME_DIM,
                                                 max_frames=schema.MAX_FRAMES, max_videos=1000, batch_size=32,
                                                 progress=False)
    frames, means = [], []
    for video in read_raw_videos(files[0], schema.RecordKind.POINTWISE):
        f = np.asarray(video["frames"], np.float64)[sample_frame_indices(len(video["frames"]))]
        frames.append(f)
        means.append(f.mean(0))
    frames = np.concatenate(frames)
    assert int(stats["videos"]) == len(means)
    assert int(stats["frames"]) == len(frames)
    np.testing.assert_allclose(stats["mean"], frames.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats["std"], frames.std(0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(stats["video_covariance"], np.cov(np.array(means).T, bias=True), atol=1e-4)

    config = ModelConfig.tiny("baseline", num_tags=8, frame_normalization="zca", frame_whiten_rank=8)
    model = build_model(config)
    model(example_features(config))
    run = tmp_path / "run"
    run.mkdir()
    frame_stats.save_statistics(str(run / frame_stats.STATS_FILE), stats)
    # an existing file is read back, not recomputed (files=[] would fail to compute)
    loaded = frame_stats.prepare_standardizer(model, str(run), [], pairs=False, model_config=config, progress=False)
    np.testing.assert_array_equal(loaded["mean"], stats["mean"])
    np.testing.assert_allclose(model.frame_standardizer.mean.numpy(), stats["mean"])
    # a finetune inherits the pretrain run's file
    child = tmp_path / "child"
    child.mkdir()
    frame_stats.prepare_standardizer(model, str(child), [], pairs=False, model_config=config, progress=False,
                                     inherit_from=str(run))
    assert (child / frame_stats.STATS_FILE).is_file()


def test_statistics_are_of_the_powered_frames_and_a_power_mismatch_is_refused(synthetic_data, tmp_path):
    files = sorted(str(p) for p in (synthetic_data / "pointwise").glob("*.tfrecords"))[:1]
    stats = frame_stats.compute_frame_statistics(files, pairs=False, frame_dim=schema.FRAME_DIM,
                                                 max_frames=schema.MAX_FRAMES, max_videos=1000, batch_size=32,
                                                 progress=False, power=0.5)
    frames = np.concatenate([np.asarray(v["frames"], np.float64)[sample_frame_indices(len(v["frames"]))]
                             for v in read_raw_videos(files[0], schema.RecordKind.POINTWISE)])
    powered = np.sign(frames) * np.sqrt(np.abs(frames))
    np.testing.assert_allclose(stats["mean"], powered.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats["std"], powered.std(0), rtol=1e-3, atol=1e-4)
    assert float(stats["power"]) == 0.5

    run = tmp_path / "run"
    run.mkdir()
    frame_stats.save_statistics(str(run / frame_stats.STATS_FILE), stats)
    config = ModelConfig.tiny("baseline", num_tags=8, frame_normalization="standardize")  # frames.power 1
    model = build_model(config)
    model(example_features(config))
    with pytest.raises(ValueError, match=r"frame_stats.npz: the frame statistics were computed with "
                                         r"frames.power=0.5, the run has model.frames.power=1.0"):
        frame_stats.prepare_standardizer(model, str(run), [], pairs=False, model_config=config, progress=False)
