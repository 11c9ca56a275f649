"""`bench.eval_search`'s inputs: embedding files and a run's result.zip give the same vectors."""
import numpy as np

from bench.eval_search import load_set
from infer.embeddings_io import save_embeddings
from infer.submission import write_result


def test_a_submission_and_an_embedding_file_load_alike(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.array([f"v{i}" for i in range(12)])
    vectors = rng.normal(size=(12, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_result(tmp_path / "result.zip", ids, vectors)
    save_embeddings(tmp_path / "test.npz", ids, vectors)
    name, submission = load_set(f"submission={tmp_path / 'result.zip'}", "unused")
    assert name == "submission"
    same_name, from_npz = load_set(str(tmp_path / "test.npz"), "unused")
    assert same_name == "test.npz"
    assert sorted(submission.ids.tolist()) == sorted(ids.tolist())
    # result.json holds float16-rounded values: the same vectors to that precision
    np.testing.assert_allclose(submission.lookup(ids), from_npz.lookup(ids), atol=2e-3)
