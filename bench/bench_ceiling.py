"""How much of a synthetic world's similarity its inputs carry: the ceilings above the floor.

    python -m bench.bench_ceiling --data DATA [--folds-dir DATA/folds] [--folds 0 1] [--frame-power 0.5]
                                  [--markdown OUT.md] [--json OUT.json]

``DATA`` is a data set written by ``tfrecord_tools.synth`` (its ``synth_meta.json`` names the
preset, seed, world and label graph), so the true latent of every pairwise and test video can be
re-drawn (`synth.true_latents`), or by another generator that stores them in ``DATA/test_truth.npz``
(`bench.foreign_world`: the ``labelled_*`` and test latents; such a world has no views and no known
words, so only ``oracle`` and the ``readout:`` rows are measured). On the validation pairs of ``--folds`` (the pairs behind the
out-of-fold scores of `bench.bench_quality`) it reports:

``oracle``                 cosine of the true latents (the labels are noisy ranks of it)
``view:<modality>``        cosine of the latent restricted to the blocks that modality sees
                           (``synth_meta.json``'s views): what a perfect reader of it could reach
``readout:<inputs>``       a ridge regression from the inputs to the TRUE latent, fitted on every
                           scored video that is not in those pairs: what a *linear* map of the
                           inputs reaches with perfect supervision (the latent itself instead of
                           ~3,000 noisy pair labels); λ is the best of a small grid on the pairs
``known:<inputs>``         the same readout with each text read by a reader that already knows what
                           every one of its words means in the generator (`known_word_features`:
                           the word's vector and its topic): what is left once *learning* the
                           words is no longer a limit, i.e. what the texts hold at all

Inputs are the strong baselines' (`infer.strong_baselines`): the mean of the officially sampled
frames (signed power ``--frame-power`` first), PCA-whitened to 128 components with statistics of
every video; title and ASR TF-IDF over jieba words (fitted on every text, no labels).

Why: a strong baseline close to ``readout:all`` leaves a learned model only what a linear map of
the inputs cannot read (nonlinear structure, or word meanings learned from more than the scored
videos) to beat it with, however well it is trained; one close to ``known:all`` leaves little to
any reader, since even knowing what every word means adds almost nothing; and a bar above
``known:all`` asks for more than the inputs hold. A readout is not an upper bound on a metric trained on
the pairs, which ranks the pairs directly: on `bench.foreign_world`'s draws the floor's linear metric lies
above ``readout:all``. ``docs/benchmarks.md`` ("How far the
floor is from what the inputs hold") has the numbers of every world.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

import numpy as np

from tfrecord_tools import layout

READOUTS = {"frames": ("frames",), "title": ("title",), "asr": ("asr",), "all": ("frames", "title", "asr")}
KNOWN_READOUTS = {"title": ("known_title",), "all": ("frames", "known_title", "known_asr")}
LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0)
FRAME_COMPONENTS = 128


def ridge_readout(x: np.ndarray, target: np.ndarray, fit_rows: np.ndarray, lam: float) -> np.ndarray:
    """Ridge regression of ``target`` on ``x`` fitted on ``fit_rows`` (both centred there), applied
    to every row of ``x``."""
    fit = x[fit_rows]
    mean = fit.mean(axis=0)
    centred = fit - mean
    weights = np.linalg.solve(centred.T @ centred + lam * np.eye(x.shape[1]),
                              centred.T @ (target[fit_rows] - target[fit_rows].mean(axis=0)))
    return (x - mean) @ weights


def best_readout(x: np.ndarray, target: np.ndarray, fit_rows: np.ndarray, rows_q: np.ndarray, rows_c: np.ndarray,
                 score: np.ndarray, lambdas: Sequence[float] = LAMBDAS) -> tuple[float, float]:
    """(Spearman on the pairs, λ) of the best ridge readout over ``lambdas``."""
    from infer.strong_baselines import pair_spearman

    return max((pair_spearman(ridge_readout(x, target, fit_rows, lam), rows_q, rows_c, score), lam) for lam in lambdas)


def known_word_features(world, texts: Sequence[str], modality: str) -> np.ndarray:
    """What each text tells a reader that knows every word's meaning in the generator ``world``.

    For the topic words of ``world`` found among a text's jieba words (general words and fillers
    are drawn without regard to the latent, so they say nothing): the sum of their vectors ``d``
    in ``modality``'s view (``word_vectors`` for the title, ``asr_word_vectors`` for the ASR), the
    sum of their topics' vectors on that view, and how often each topic is named. Rows follow
    ``texts``; the generator picks words by ``u_view . d`` among the topics nearest to ``u_view``,
    so these are the sufficient statistics a linear reader would need.
    """
    from infer.strong_baselines import word_tokens
    from tfrecord_tools import synth

    vectors = {"title": world.word_vectors, "asr": world.asr_word_vectors}[modality]
    view = synth._view(modality, world.preset.model)
    topic_of = np.full(len(world.words), -1)
    for topic, words in enumerate(world.topic_words):
        topic_of[words] = topic
    index = {word: i for i, word in enumerate(world.words) if topic_of[i] >= 0}
    n_topics = len(world.topic_vectors)
    out = np.zeros((len(texts), vectors.shape[1] + len(view) + n_topics))
    for row, text in enumerate(texts):
        for word in (index[token] for token in word_tokens(text) if token in index):
            out[row, :vectors.shape[1]] += vectors[word]
            out[row, vectors.shape[1]:-n_topics] += world.topic_vectors[topic_of[word], view]
            out[row, -n_topics + topic_of[word]] += 1.0
    return out


def stored_latents(path: str) -> tuple[dict, list[str], np.ndarray]:
    """(meta, ids, latents) of the labelled and test videos in a generator's stored truth
    (``DATA/test_truth.npz``, read by `bench.truth_on_test.read_stored_truth`, plus its ``labelled_ids`` and
    ``labelled_latents``, which `bench.foreign_world` writes)."""
    from bench.truth_on_test import read_stored_truth
    from tfrecord_tools.errors import DataError

    test = read_stored_truth(path)
    with np.load(path, allow_pickle=False) as handle:
        if "labelled_ids" not in handle.files or "labelled_latents" not in handle.files:
            raise DataError(path, "labelled_latents", "missing: the ceilings need the labelled videos' latents "
                                                      "(written by bench.foreign_world since 2026-12-07; generate "
                                                      "the data set again: the same seed gives the same data)")
        labelled_ids, labelled = handle["labelled_ids"].tolist(), handle["labelled_latents"].astype(np.float64)
    if labelled.ndim != 2 or labelled.shape != (len(labelled_ids), test.latents.shape[1]):
        raise DataError(path, "labelled_latents", f"shape {labelled.shape}, expected ({len(labelled_ids)}, "
                                                  f"{test.latents.shape[1]}): one row per labelled id, as wide "
                                                  "as the test latents")
    return test.meta, list(labelled_ids) + list(test.ids), np.concatenate([labelled, test.latents])


def _inputs(data_dir: str, ids: Sequence[str], frame_power: float,
            progress: bool) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Whitened mean frames, title and ASR TF-IDF of ``ids`` (rows in that order), and the texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from infer.baselines import data_files, summarise
    from infer.strong_baselines import MomentAccumulator, Whitener, word_tokens
    from tfrecord_tools import schema

    files = data_files(data_dir)
    kinds = {"pairwise": schema.RecordKind.PAIRWISE, "test_a": schema.RecordKind.TEST,
             "pointwise": schema.RecordKind.POINTWISE}
    scored: dict[str, dict] = {}
    moments = MomentAccumulator(schema.FRAME_DIM)
    fit_titles, fit_asr = [], []
    for name, kind in kinds.items():
        for path in files[name]:
            for video in summarise(path, kind, progress, frame_power=frame_power):
                moments.add(video["mean_frame"])
                fit_titles.append(video["title"])
                fit_asr.append(video["asr_text"])
                if name != "pointwise":
                    scored[video["id"]] = video
    missing = [key for key in ids if key not in scored]
    if missing:
        raise ValueError(f"{len(missing)} video(s) of the true latents are not in {data_dir}, first {missing[0]!r}: "
                         "the records and synth_meta.json disagree")
    whitener = Whitener.fit(*moments.result(), eps=1e-6)
    out = {"frames": whitener(np.stack([scored[key]["mean_frame"] for key in ids]), FRAME_COMPONENTS)}
    for name, fit, field in (("title", fit_titles, "title"), ("asr", fit_asr, "asr_text")):
        vectorizer = TfidfVectorizer(tokenizer=word_tokens, lowercase=False, token_pattern=None, sublinear_tf=True,
                                     min_df=2).fit(fit)
        out[name] = vectorizer.transform([scored[key][field] for key in ids]).toarray()
    return out, {"title": [scored[key]["title"] for key in ids], "asr": [scored[key]["asr_text"] for key in ids]}


def measure(data_dir: str, folds_dir: str, folds: Sequence[int], frame_power: float = 0.5,
            progress: bool = False) -> dict:
    """Every ceiling of one synthetic data set on the validation pairs of ``folds``."""
    from infer.baselines import fold_assignment
    from infer.strong_baselines import pair_spearman
    from tfrecord_tools import synth
    from tfrecord_tools.labels import read_labels

    stored = os.path.join(data_dir, layout.TEST_TRUTH)
    if os.path.isfile(os.path.join(data_dir, layout.SYNTH_META)):
        with open(os.path.join(data_dir, layout.SYNTH_META), encoding="utf-8") as handle:
            meta = json.load(handle)
        world = (meta.get("world") or {}).get("name", "demo")
        truth = synth.true_latents_of(meta)
        ids = list(truth["pairwise"][0]) + list(truth["test"][0])
        latents = np.concatenate([truth["pairwise"][1], truth["test"][1]]).astype(np.float64)
    elif os.path.isfile(stored):
        meta, ids, latents = stored_latents(stored)
        world = meta["generator"]
    else:
        raise FileNotFoundError(f"{data_dir} has neither {layout.SYNTH_META} nor {layout.TEST_TRUTH}: the ceilings "
                                "need the true latents of a generator's data set")
    labels = read_labels(os.path.join(data_dir, "pairwise", "label.tsv"))
    assigned, _ = fold_assignment(labels, folds_dir)
    held = np.isin(assigned, list(folds))
    if not held.any():
        raise ValueError(f"folds {list(folds)} hold no pairs in {folds_dir}")
    row = {key: i for i, key in enumerate(ids)}
    rows_q = np.array([row[key] for key in labels.query[held]])
    rows_c = np.array([row[key] for key in labels.candidate[held]])
    score = labels.score[held]
    held_videos = set(rows_q.tolist()) | set(rows_c.tolist())
    fit_rows = np.array([i for i in range(len(ids)) if i not in held_videos])

    result = {"world": world, "seed": meta["seed"], "folds": list(folds), "pairs": int(held.sum()),
              "fit_videos": len(fit_rows), "oracle": pair_spearman(latents, rows_q, rows_c, score)}
    views = (meta.get("latent") or {}).get("views", {})
    for modality, view in views.items():
        dims = np.concatenate([np.arange(*meta["latent"]["blocks"][block]) for block in view])
        result[f"view:{modality}"] = pair_spearman(latents[:, dims], rows_q, rows_c, score)
    inputs, texts = _inputs(data_dir, ids, frame_power, progress)
    prefixes = (("readout", READOUTS),)
    if views:  # a synth world: what its words mean is known
        drawn = synth.build_world(synth.world_preset(meta["preset"], world), meta["seed"])
        for modality in ("title", "asr"):
            inputs[f"known_{modality}"] = known_word_features(drawn, texts[modality], modality)
        prefixes += (("known", KNOWN_READOUTS),)
    for prefix, readouts in prefixes:
        for name, parts in readouts.items():
            x = np.concatenate([inputs[part] for part in parts], axis=1)
            result[f"{prefix}:{name}"], result[f"{prefix}:{name}:lambda"] = best_readout(
                x, latents, fit_rows, rows_q, rows_c, score)
    return result


def markdown(rows: Sequence[dict]) -> str:
    columns = [key for key in rows[0]
               if key.startswith(("oracle", "view:", "readout:", "known:")) and not key.endswith("lambda")]
    lines = ["| world | seed | pairs | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 3)]
    for row in rows:
        lines.append(f"| {row['world']} | {row['seed']} | {row['pairs']} | "
                     + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, nargs="+",
                        help="synthetic data directories (synth_meta.json, or a stored test_truth.npz)")
    parser.add_argument("--folds-dir", help="fold shards (default: DATA/folds)")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1], help="validation folds (default: 0 1)")
    parser.add_argument("--frame-power", type=float, default=0.5, help="signed power of frame values (default 0.5)")
    parser.add_argument("--markdown", help="write the table here")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    from tfrecord_tools.atomic import write_text_atomic

    if args.folds_dir and len(args.data) > 1:
        parser.error("--folds-dir names the shards of one data set; give one --data with it")
    rows = []
    for data_dir in args.data:
        if not any(os.path.isfile(os.path.join(data_dir, name)) for name in (layout.SYNTH_META, layout.TEST_TRUTH)):
            parser.error(f"{data_dir} has neither {layout.SYNTH_META} nor {layout.TEST_TRUTH}: the ceilings need a "
                         "generator's data set (tfrecord_tools.synth or bench.foreign_world)")
        rows.append(measure(data_dir, args.folds_dir or os.path.join(data_dir, "folds"), args.folds, args.frame_power,
                            progress=sys.stderr.isatty()))
        print(json.dumps(rows[-1]), flush=True)
    table = markdown(rows)
    print(table)
    if args.markdown:
        write_text_atomic(args.markdown, table)
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
