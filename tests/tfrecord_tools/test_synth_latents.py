"""synth.true_latents: the latents really behind the written test and pairwise videos."""
import numpy as np


def test_true_latents_reproduce_the_written_records(synthetic_data):
    import tensorflow as tf

    from tfrecord_tools import schema, synth

    truth = synth.true_latents("tiny", seed=0)
    test_ids, test_latents = truth["test"]
    written = [r.numpy() for r in tf.data.TFRecordDataset(str(synthetic_data / "test_a" / "test_a.tfrecords"))]
    assert len(test_ids) == len(written) == len(test_latents)
    np.testing.assert_allclose(np.linalg.norm(test_latents, axis=1), 1.0, atol=1e-9)
    # Render the first test chunk from these latents the way generate() does: same bytes.
    preset = synth.PRESETS["tiny"]
    world = synth.build_world(preset, 0)
    rng = synth._rng(0, synth._SPLIT_TEST, 0)
    n = min(preset.chunk_size, len(test_ids))
    np.testing.assert_array_equal(synth.fresh_latents(world, rng, n), test_latents[:n])
    videos, _ = synth.render_videos(world, rng, test_latents[:n], test_ids[:n], schema.RecordKind.TEST)
    assert [synth.serialize(v, schema.RecordKind.TEST) for v in videos[:3]] == written[:3]
    pair_ids, pair_latents = truth["pairwise"]
    assert len(pair_ids) == len(pair_latents) and len(set(pair_ids) & set(test_ids)) == 0
