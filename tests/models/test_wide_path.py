"""Every family takes the wide path (`models.layers.WidePath`): zero until fitted, then added to
the L2-normalised embedding, with only its gate trainable."""
import numpy as np
import pytest

from models.base import example_features
from models.config import ModelConfig
from models.registry import MODELS, build_model


@pytest.mark.parametrize("family", sorted(MODELS))
def test_every_family_adds_the_wide_path(family):
    config = ModelConfig.tiny(family, num_tags=8, **{"wide.enabled": True, "wide.frame_width": 4,
                                                     "wide.text_width": 2})
    model = build_model(config)
    features = example_features(config)
    before = model(features)["embedding"].numpy()
    np.testing.assert_allclose(np.linalg.norm(before, axis=1), 1.0, atol=1e-5)  # unfitted: adds zeros
    path = model.wide_path
    assert path in model.layers and [v.name.split("/")[-1] for v in path.trainable_variables] == ["gate:0"]
    rng = np.random.default_rng(0)
    path.frame_kernel.assign(rng.normal(size=path.frame_kernel.shape))
    path.part_weights.assign([1.0, 0.0, 0.0])
    path.metric.assign(rng.normal(size=path.metric.shape))
    after = model(features)["embedding"].numpy()
    wide = path(model.standardized(features)["frames"], features["frame_mask"], features["input_ids"],
                features["attention_mask"]).numpy()
    np.testing.assert_allclose(after, before + wide, atol=1e-4)
    assert type(model).from_config(model.get_config()).wide_path is not None
    assert build_model(ModelConfig.tiny(family, num_tags=8)).wide_path is None


def test_a_model_builds_the_frames_through_the_tags_part_when_asked():
    config = ModelConfig.tiny("uniter", num_tags=8, **{"wide.enabled": True, "wide.frame_width": 4,
                                                       "wide.text_width": 2, "wide.frame_tags_width": 3})
    model = build_model(config)
    model(example_features(config))
    path = model.wide_path
    assert path.frame_tags_kernel.shape == (config.frame_dim, 3) and path.part_weights.shape == (4,)
    assert path.metric.shape == (4 + 2 * 2 + 3, config.embedding_dim)
    assert type(model).from_config(model.get_config()).wide_path.frame_tags_width == 3
    plain = build_model(ModelConfig.tiny("uniter", num_tags=8, **{"wide.enabled": True}))
    plain(example_features(plain.model_config))
    assert not hasattr(plain.wide_path, "frame_tags_kernel") and plain.wide_path.part_weights.shape == (3,)


def test_the_in_graph_mean_frame_pools_by_idf_as_the_numpy_frame_words():
    import tensorflow as tf

    from infer.frame_words import FrameWords
    from models.layers import WidePath

    rng = np.random.default_rng(0)
    dim, width, words = 6, 3, 5
    layer = WidePath(vocab_size=10, frame_width=4, text_width=2, output_size=8, frame_words=words,
                     frame_words_width=width)
    idf = np.array([0.0, 1.0, 2.5, 0.5, 4.0])
    fitted = FrameWords(rng.normal(size=dim), rng.normal(size=(dim, width)), rng.normal(size=(words, width)), idf)
    layer.set_frame_words(fitted.arrays())
    frames = rng.normal(size=(3, 7, dim)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [0] * 7], dtype=np.float32)
    frames[1, 4:] = 100.0  # padding: never counted
    pooled = layer.mean_frame(tf.constant(frames), tf.constant(mask)).numpy()
    np.testing.assert_allclose(pooled[0], fitted.pooled(frames[0]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pooled[1], fitted.pooled(frames[1, :4]), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(pooled[2], 0.0)  # no real frame
    assert not np.allclose(pooled[0], frames[0].mean(axis=0), atol=1e-3)  # the weights matter
    layer.word_idf.assign(np.zeros(words, np.float32))  # every weight 0: the plain mean
    np.testing.assert_allclose(layer.mean_frame(tf.constant(frames), tf.constant(mask)).numpy()[1],
                               frames[1, :4].mean(axis=0), rtol=1e-5, atol=1e-5)
    again = WidePath.from_config(layer.get_config())
    assert (again.frame_words, again.frame_words_width) == (words, width)
    with pytest.raises(ValueError, match="word_projection must be"):
        layer.set_frame_words(dict(fitted.arrays(), word_projection=np.zeros((dim, width + 1))))
    with pytest.raises(ValueError, match="needs frame_words_width > 0"):
        WidePath(10, 4, 2, 8, frame_words=5)
    with pytest.raises(ValueError, match="pools no frame words"):
        WidePath(10, 4, 2, 8).set_frame_words(fitted.arrays())


def test_the_in_graph_mean_frame_averages_the_idf_of_several_sets_of_words_as_numpy():
    import tensorflow as tf

    from infer.frame_words import FrameWords
    from models.layers import WidePath

    rng = np.random.default_rng(1)
    dim, width, words, fits = 6, 3, 4, 3
    layer = WidePath(vocab_size=10, frame_width=4, text_width=2, output_size=8, frame_words=words,
                     frame_words_width=width, frame_words_fits=fits)
    fitted = FrameWords(rng.normal(size=dim), rng.normal(size=(dim, width)), rng.normal(size=(words * fits, width)),
                        rng.uniform(0.0, 3.0, size=words * fits), fits=fits)
    layer.set_frame_words(fitted.arrays())
    frames = rng.normal(size=(2, 9, dim)).astype(np.float32)
    mask = np.array([[1] * 9, [1] * 5 + [0] * 4], dtype=np.float32)
    pooled = layer.mean_frame(tf.constant(frames), tf.constant(mask)).numpy()
    np.testing.assert_allclose(pooled[0], fitted.pooled(frames[0]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pooled[1], fitted.pooled(frames[1, :5]), rtol=1e-4, atol=1e-5)
    first_set = FrameWords(fitted.offset, fitted.projection, fitted.centroids[:words], fitted.idf[:words])
    assert not np.allclose(pooled[0], first_set.pooled(frames[0]), atol=1e-3)  # every set counts
    assert layer.word_centroids.shape == (words * fits, width)
    assert WidePath.from_config(layer.get_config()).frame_words_fits == fits
    with pytest.raises(ValueError, match=r"word_centroids must be \(4, 3\), got \(12, 3\)"):  # one set
        WidePath(10, 4, 2, 8, frame_words=words, frame_words_width=width).set_frame_words(fitted.arrays())
    with pytest.raises(ValueError, match="frame_words_fits must be >= 1"):
        WidePath(10, 4, 2, 8, frame_words=words, frame_words_width=width, frame_words_fits=0)


def test_the_frame_words_config_is_validated():
    from models.config import WideConfig

    with pytest.raises(ValueError, match="frame_words must be 0 \\(off\\) or >= 2, got 1"):
        WideConfig(frame_words=1)
    with pytest.raises(ValueError, match="frame_words_power must be > 0"):
        WideConfig(frame_words=8, frame_words_power=0)
    with pytest.raises(ValueError, match="frame_words_fits must be > 0"):
        WideConfig(frame_words=8, frame_words_fits=0)


def test_the_rare_words_config_is_validated():
    from models.config import WideConfig

    with pytest.raises(ValueError, match="rare_words must be >= 0"):
        WideConfig(rare_words=-1)
    with pytest.raises(ValueError, match="rare_words_max_df must be in \\(0, 1\\]"):
        WideConfig(rare_words=8, rare_words_max_df=0.0)
    with pytest.raises(ValueError, match="wide.rare_words \\(300\\) must be <= embedding_dim"):
        ModelConfig.tiny("uniter", num_tags=8, **{"wide.enabled": True, "wide.rare_words": 300})
    config = ModelConfig.tiny("uniter", num_tags=8, **{"wide.enabled": True, "wide.frame_width": 4,
                                                       "wide.text_width": 2, "wide.rare_words": 3})
    model = build_model(config)
    model(example_features(config))
    assert model.wide_path.rare_projection.shape == (config.text.vocab_size, 3)
    assert model.wide_path.rare_basis.shape == (3, config.embedding_dim)
