"""Visual words and idf pooling (`infer.frame_words`): shots many videos share count less."""
import numpy as np
import pytest

from infer import frame_words as fw

DIM = 12


def _videos(count=120, seed=0):
    """Each video: 4 frames of one shared "logo" shot (every video) and 4 of its own content shot."""
    rng = np.random.default_rng(seed)
    logo = 3.0 * rng.normal(size=DIM)
    videos, contents = [], []
    for _ in range(count):
        content = 3.0 * rng.normal(size=DIM)
        frames = np.concatenate([logo + 0.1 * rng.normal(size=(4, DIM)), content + 0.1 * rng.normal(size=(4, DIM))])
        videos.append(frames)
        contents.append(frames[4:].mean(axis=0))
    return videos, logo, np.array(contents)


def test_the_shot_every_video_shares_gets_no_weight_and_the_pooled_frame_is_the_content():
    videos, logo, contents = _videos()
    words = fw.fit_frame_words(videos, np.zeros(DIM), np.eye(DIM), k=16, power=2.0)
    logo_word = words.words(logo[None])[0, 0]
    assert words.idf[logo_word] == pytest.approx(0.0, abs=1e-12)  # in every video: ln(121 / 121) = 0
    assert words.idf.max() > 1.0
    pooled = np.stack([words.pooled(frames) for frames in videos])
    plain = np.stack([frames.mean(axis=0) for frames in videos])
    # the logo frames weigh 0: an idf-weighted mean of the content frames alone (noise 0.1 around one shot),
    # but where k-means put a video's content shot in the logo's word (16 words for 121 shots)
    assert np.mean(np.abs(pooled - contents).max(axis=1) < 0.3) > 0.85
    assert np.all(np.linalg.norm(plain - contents, axis=1) > 1.0)  # the plain mean is pulled towards the logo


def test_idf_counts_videos_not_frames_and_follows_the_power():
    videos, logo, _ = _videos(count=60)
    once = fw.fit_frame_words(videos, np.zeros(DIM), np.eye(DIM), k=16, power=1.0)
    squared = fw.fit_frame_words(videos, np.zeros(DIM), np.eye(DIM), k=16, power=2.0)
    np.testing.assert_allclose(squared.idf, once.idf ** 2)
    content_word = once.words(videos[0][4:5])[0, 0]
    videos_with_it = sum(content_word in set(once.words(frames)[:, 0]) for frames in videos)
    assert once.idf[content_word] == pytest.approx(np.log(61 / (1 + videos_with_it)))


def test_a_video_whose_frames_all_weigh_zero_keeps_its_plain_mean_and_arrays_round_trip():
    videos, logo, _ = _videos()
    words = fw.fit_frame_words(videos, np.zeros(DIM), np.eye(DIM), k=16)
    only_logo = logo + 0.1 * np.random.default_rng(1).normal(size=(5, DIM))
    np.testing.assert_allclose(words.pooled(only_logo), only_logo.mean(axis=0))
    assert words.pooled(np.zeros((0, DIM))).shape == (DIM,)
    again = fw.FrameWords.from_arrays(words.arrays())
    np.testing.assert_array_equal(again.words(videos[3]), words.words(videos[3]))
    assert sorted(words.arrays()) == sorted(fw.ARRAY_NAMES)


def test_several_sets_of_words_weigh_a_frame_by_its_mean_idf_and_one_set_is_the_single_fit():
    videos, logo, contents = _videos()
    single = fw.fit_frame_words(videos, np.zeros(DIM), np.eye(DIM), k=16, seed=3)
    sets = fw.fit_frame_words(videos, np.zeros(DIM), np.eye(DIM), k=16, seed=3, fits=3)
    assert (sets.fits, sets.k, sets.centroids.shape, sets.idf.shape) == (3, 16, (48, DIM), (48,))
    # the first set is the single fit with the same seed; the others start elsewhere
    np.testing.assert_array_equal(sets.centroids[:16], single.centroids)
    np.testing.assert_array_equal(sets.idf[:16], single.idf)
    assert not np.allclose(sets.centroids[16:32], sets.centroids[:16])
    frames = videos[7]
    words = sets.words(frames)
    assert words.shape == (len(frames), 3)
    assert np.all((words >= np.arange(3) * 16) & (words < np.arange(1, 4) * 16))  # each set's own words
    weights = np.mean([sets.idf[words[:, s]] for s in range(3)], axis=0)
    np.testing.assert_allclose(sets.weights(frames), weights)
    np.testing.assert_allclose(sets.pooled(frames), weights @ frames / weights.sum())
    assert sets.idf[sets.words(logo[None])[0]].max() == pytest.approx(0.0, abs=1e-12)  # every set finds the logo
    assert np.abs(sets.pooled(frames) - contents[7]).max() < 0.3
    again = fw.FrameWords.from_arrays(sets.arrays(), fits=3)
    np.testing.assert_array_equal(again.words(frames), words)
    with pytest.raises(ValueError, match="48 centroids cannot be 5 sets of words"):
        fw.FrameWords.from_arrays(sets.arrays(), fits=5)
    with pytest.raises(ValueError, match="fits must be >= 1"):
        fw.fit_frame_words(videos, np.zeros(DIM), np.eye(DIM), k=16, fits=0)
    within = fw.fit_within_whitened(videos, k=8, width=4, fits=2)
    assert within.centroids.shape == (16, 4) and within.fits == 2


def test_the_within_whitened_space_has_the_asked_width_and_finds_the_shared_shot():
    videos, logo, contents = _videos()
    words = fw.fit_within_whitened(videos, k=16, width=6)
    assert words.projection.shape == (DIM, 6) and words.centroids.shape == (16, 6)
    assert words.idf[words.words(logo[None])[0, 0]] < 0.05 * words.idf.max()
    pooled = np.stack([words.pooled(frames) for frames in videos])
    assert np.abs(pooled - contents).mean() < 0.2 * np.abs(np.stack([v.mean(0) for v in videos]) - contents).mean()


def test_bad_input_is_refused_with_what_was_expected():
    videos, _, _ = _videos(count=5)
    with pytest.raises(ValueError, match="k must be >= 2"):
        fw.fit_frame_words(videos, np.zeros(DIM), np.eye(DIM), k=1)
    with pytest.raises(ValueError, match="cannot make 100 words"):
        fw.fit_frame_words(videos, np.zeros(DIM), np.eye(DIM), k=100)
    with pytest.raises(ValueError, match="no video with frames"):
        fw.fit_within_whitened([np.zeros((0, DIM))], k=4, width=2)
    with pytest.raises(ValueError, match="no video has two frames"):
        fw.fit_within_whitened([np.ones((1, DIM)), np.zeros((1, DIM))], k=2, width=2)
    with pytest.raises(ValueError, match="do not fit together"):
        fw.FrameWords(np.zeros(DIM), np.eye(DIM), np.zeros((4, DIM - 1)), np.ones(4))
    with pytest.raises(ValueError, match="idf must be 4 values >= 0"):
        fw.FrameWords(np.zeros(DIM), np.eye(DIM), np.zeros((4, DIM)), -np.ones(4))
    with pytest.raises(ValueError, match=r"\['word_idf'\] missing"):
        fw.FrameWords.from_arrays({"word_offset": 0, "word_projection": 0, "word_centroids": 0})
