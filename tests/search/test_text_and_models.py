"""search with a model: an index of mix_nextvlad's video tower queried by text and by new videos,
the same through its export, and the errors of querying with another model or output."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.train.helpers import TINY_RUN


@pytest.fixture(scope="module")
def mix_run(synthetic_data, tmp_path_factory):
    """A few pretraining steps of a tiny mix_nextvlad (its InfoNCE aligns the towers)."""
    from train.pretrain import main

    run = tmp_path_factory.mktemp("mix") / "pretrain" / "mix_nextvlad"
    main(["--model", "mix_nextvlad", "--data", str(synthetic_data), "--out", str(run), "--preset", "tiny",
          "max_steps=4", *TINY_RUN])
    return run


def run_cli(module, args, capsys):
    capsys.readouterr()
    code = module.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_text_query_on_the_video_tower(mix_run, synthetic_data, tmp_path, capsys):
    from search import index as index_cli
    from search import query as query_cli
    from search.encoders import RunEncoder
    from tfrecord_tools import reader

    records = synthetic_data / "test_a" / "test_a.tfrecords"
    code, out, err = run_cli(index_cli, ["--records", records, "--run", mix_run, "--output", "video_embedding",
                                         "--out", tmp_path / "idx"], capsys)
    assert code == 0, err
    title = next(reader.read_raw_videos(str(records), "test"))["title"]
    code, out, err = run_cli(query_cli, ["--index", tmp_path / "idx", "--text", title, "--text", "猫", "--run",
                                         mix_run, "--k", 5, "--json"], capsys)
    assert code == 0, err
    results = json.loads(out)
    assert [r["query"] for r in results] == [title, "猫"] and all(len(r["neighbours"]) == 5 for r in results)
    encoder = RunEncoder(str(mix_run))
    text = encoder.embed_text([title], "video_embedding")
    ids, videos = encoder.__class__(str(mix_run), "video_embedding").embed_records([str(records)])
    unit = videos / np.linalg.norm(videos, axis=1, keepdims=True)
    cosines = unit @ (text[0] / np.linalg.norm(text[0]))
    assert results[0]["neighbours"][0]["id"] == ids[np.argmax(cosines)]
    assert results[0]["neighbours"][0]["cosine"] == pytest.approx(cosines.max(), abs=1e-5)

    # new videos, embedded by the same run: each finds itself... excluded, so its neighbours
    code, out, err = run_cli(query_cli, ["--index", tmp_path / "idx", "--records", records, "--run", mix_run,
                                         "--k", 3, "--json"], capsys)
    assert code == 0, err
    assert len(json.loads(out)) == len(ids)

    # the export of the video tower answers text like the run (embed_text signature)
    from infer.export import export_run

    export_run(str(mix_run), str(tmp_path / "export"), output="video_embedding")
    code, out, err = run_cli(query_cli, ["--index", tmp_path / "idx", "--text", title, "--run",
                                         tmp_path / "export", "--k", 5, "--json"], capsys)
    assert code == 0, err
    via_export = json.loads(out)[0]["neighbours"]
    assert [h["id"] for h in via_export] == [h["id"] for h in results[0]["neighbours"]]
    np.testing.assert_allclose([h["cosine"] for h in via_export], [h["cosine"] for h in results[0]["neighbours"]],
                               atol=1e-4)


def test_queries_with_another_model_or_output_fail_in_one_line(mix_run, synthetic_data, tmp_path, capsys):
    from search import index as index_cli
    from search import query as query_cli

    records = synthetic_data / "test_a" / "test_a.tfrecords"
    assert run_cli(index_cli, ["--records", records, "--run", mix_run, "--out", tmp_path / "fused"], capsys)[0] == 0

    def error(args):
        code, _, err = run_cli(query_cli, args, capsys)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
        return lines[0]

    assert "not a video tower aligned with text" in error(["--index", tmp_path / "fused", "--text", "猫", "--run",
                                                          mix_run])
    # same family, other weights: a copy of the run whose final/ checkpoint is another step's
    from tests.search.test_search import clustered
    from infer.embeddings_io import save_embeddings

    ids, vectors = clustered(n=20, dim=256)
    save_embeddings(tmp_path / "e.npz", ids, vectors)
    assert run_cli(index_cli, ["--embeddings", tmp_path / "e.npz", "--out", tmp_path / "anon"], capsys)[0] == 0
    assert "does not record which model" in error(["--index", tmp_path / "anon", "--records", records, "--run",
                                                   mix_run])
    from search.store import build_index
    from search.vectors import open_vectors

    build_index(open_vectors(tmp_path / "e.npz"), tmp_path / "other",
                model={"fingerprint": "0" * 24, "output": "embedding", "source": "elsewhere"})
    assert "index built from another model" in error(["--index", tmp_path / "other", "--records", records,
                                                      "--run", mix_run])
    assert "neither a run directory" in error(["--index", tmp_path / "fused", "--records", records, "--run",
                                               tmp_path])
    code, _, err = run_cli(index_cli, ["--records", records, "--run", mix_run, "--output", "nope", "--out",
                                       tmp_path / "x"], capsys)
    assert code == 1 and "has no output 'nope'" in err
