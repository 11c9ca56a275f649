"""Final ensemble: fold-average each model, score it out of fold, ensemble, write ``result.zip``.

Usage::

    python ensemble_final.py --run RUN [--models a,b,c] [--weights a=1,b=0.5 | --weights auto | --weights-file w.json]
        [--rule svd|weighted|mean] [--fit-on test|val] [--dim 256] [--seed 0] [--calibrate distance|none]
        [--labels DATA/pairwise/label.tsv] [--folds-dir DATA/folds] [--test-ids ids.txt|test.npz]
        [--out RUN/result.zip] [--synth-meta DATA/synth_meta.json] [--png [PATH]] [--export DIR]

Input layout (written by ``infer/embed.py``; see ``infer/embeddings_io.py`` for the file format)::

    RUN/embeddings/<model>/fold_XX/test.npz   every test video, embedded by fold XX's model
    RUN/embeddings/<model>/fold_XX/val.npz    fold XX's validation-pair videos, embedded by fold XX's
                                              model, with the pairs part (pair_query, pair_candidate,
                                              pair_score) = the pairs of fold XX's validation shard

A pair belongs to fold k when it is in fold k's ``val.npz`` pairs, so the fold assignment travels
with the embeddings. Every model must have the same folds, and for each fold the same validation
pairs and ids. Optional cross-checks: ``--folds-dir`` (its ``folds.json``: same folds, same pair
count per fold) and ``--labels`` (the folds' pairs together are exactly the label file's).

Output::

    RUN/embeddings/<model>/avg/test.npz   fold average (mean of L2-normalised fold embeddings, each
                                          fold model first rotated onto the first one's coordinates)
    RUN/embeddings/<model>/avg/fold_rotations.npz   those rotations (fold_XX: [D, D]; --export uses them)
    RUN/result.zip                        the submission (validated before it takes its name)
    RUN/ensemble_report.json              settings, table rows, submission summary
    RUN/ensemble_report.png               with --png

With ``--out DIR/name.zip`` the report (and the default ``--png``) go to DIR beside the submission
they describe, so a second ensemble of the same run (other weights or members) never overwrites
the first one's report.

Scores printed: each model's out-of-fold (OOF) Spearman (pair in fold k scored with fold k's
model, one global Spearman), the mean of its per-fold Spearmans, the ensemble's OOF Spearman
(per fold, the fold's validation embeddings of every model are ensembled with the same rule and
weights; for ``svd`` the SVD is fitted on that fold's models' test embeddings with ``--fit-on
test``, or on the fold's validation embeddings with ``--fit-on val``), and the oracle ceiling
(``oracle_spearman`` of the synthetic data's ``synth_meta.json``, or of ``bench.foreign_world``'s
``foreign_meta.json``) when given. Under the table a
``note:`` line says what the table shows went wrong (``ensemble.report.check_rows``, also
``notes`` in the report): the ensemble below its best member, no model above the best strong
baseline, a model whose out-of-fold score is more than 0.02 from its mean fold score. Above the
notes, with two or more members, a ``member agreement`` line (``headroom`` in the report;
``ensemble/headroom.py``): how alike the members rank the validation pairs, and what the best
weights chosen on those very pairs would score over the best member, the most any ``--weights``
could give there.

Fold calibration (``--calibrate distance``, the default; ``infer/fold_calibration.py``): before
any pairs of different folds are pooled, each fold model's cosines are put on one scale by
dividing every distance ``1 - cos`` by the fold model's mean distance between its test videos (no
labels). Within a fold nothing changes (the mean fold scores are the same); out of fold, fold
models that rank equally well but whose cosines sit at different levels no longer interleave
wrongly. It applies to the out-of-fold rows (models and per-fold baselines), the per-fold
ensembles and ``--weights auto``; the submission is the fold average of the test embeddings, where
no pair is scored by two fold models, and is the same either way. ``--calibrate none`` pools the
raw cosines (the behaviour before the twentieth session).

Fold alignment (``--align-folds procrustes``, the default; ``ensemble/fold_alignment.py``): fold
models of one family need not share coordinates (the robust recipe's wide path is fitted per fold,
in its own PCA / LSA basis), so before their test vectors are averaged each fold model is rotated
onto the first fold model by the orthogonal matrix that best maps its test embeddings onto the
first's (no labels). A rotation changes no cosine within a fold: the out-of-fold and mean fold
scores are the same either way; only the fold averages, and with them ``result.zip``, change.
``--align-folds none`` averages the raw vectors.

The final SVD (``--rule svd``) is fitted on the fold-averaged test embeddings (``--fit-on test``,
the default) or on all folds' validation embeddings stacked (``--fit-on val``).

``--weights auto`` chooses the members' weights on the validation pairs (``ensemble/weights.py``):
fold k's ensemble, and so its out-of-fold score, uses weights chosen on the other folds' pairs only;
the final ensemble uses weights chosen on all of them (reported as the models' weights).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from typing import Sequence

import numpy as np
from tqdm import tqdm

from ensemble import fold_alignment
from ensemble.fold_average import FoldAverager
from ensemble.report import ReportRow, check_rows, format_table, plot_table
from ensemble.rules import DEFAULT_DIM, RULES, apply_rule, concat_scaled
from ensemble.headroom import member_headroom
from ensemble.weights import cross_fitted_weights, fold_cosines
from infer.embeddings_io import EmbeddingSet, load_embedding_set, read_provenance, save_embeddings
from infer import fold_calibration
from infer.evaluate import out_of_fold_spearman, pairs_by_fold, per_fold_spearman, spearman
from infer.submission import MAX_DIM, read_id_list, write_result
from tfrecord_tools import cli, layout, locks, provenance
from tfrecord_tools.atomic import write_text_atomic
from tfrecord_tools.errors import DataError
from tfrecord_tools.labels import Labels, read_labels

FOLD_DIR = layout.FOLD_DIR
TEST_FILE = layout.TEST_EMBEDDINGS
VAL_FILE = layout.VAL_EMBEDDINGS
FOLDS_JSON = layout.FOLDS_JSON  # written by write_tfrecord.py (tfrecord_tools.folds)
FOLDS_FORMAT = layout.FOLDS_FORMAT
BASELINE_MEMBER = "baseline:"  # --models baseline:linear_metric takes a strong baseline as a member
AUTO_WEIGHTS = "auto"  # --weights auto: chosen on validation pairs, cross-fitted across folds
AUTO_MIN_FOLDS = 3  # fewer: a warning (one other fold's pairs choose each fold's weights)


def discover_folds(model_dir: str) -> dict[int, str]:
    """``{fold: directory}`` of ``fold_XX`` subdirectories holding both embedding files."""
    if not os.path.isdir(model_dir):
        raise DataError(model_dir, None, "model embedding directory not found")
    folds = {}
    for entry in sorted(os.listdir(model_dir)):
        match = FOLD_DIR.match(entry)
        if not match:
            continue
        fold_dir = os.path.join(model_dir, entry)
        for name in (TEST_FILE, VAL_FILE):
            if not os.path.isfile(os.path.join(fold_dir, name)):
                raise DataError(fold_dir, None, f"missing {name}")
        fold = int(match.group(1))
        if fold in folds:
            raise DataError(fold_dir, None, f"fold {fold} appears twice ({folds[fold]})")
        folds[fold] = fold_dir
    if not folds:
        raise DataError(model_dir, None, "no fold_XX directories with test.npz and val.npz")
    return folds


def discover_models(embeddings_dir: str) -> list[str]:
    """Model names: subdirectories of RUN/embeddings with at least one fold_XX directory."""
    if not os.path.isdir(embeddings_dir):
        raise DataError(embeddings_dir, None, "embeddings directory not found (run the infer step first)")
    models = [name for name in sorted(os.listdir(embeddings_dir))
              if os.path.isdir(os.path.join(embeddings_dir, name))
              and any(FOLD_DIR.match(entry) for entry in os.listdir(os.path.join(embeddings_dir, name)))]
    if not models:
        raise DataError(embeddings_dir, None, "no model directories with fold_XX embeddings")
    return models


def parse_weights(text: str | None, path: str | None) -> dict[str, float] | None:
    """``a=1,b=0.5`` or a JSON object file -> ``{model: weight}`` (finite, >= 0)."""
    if text is None and path is None:
        return None
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                raw = json.load(handle)
        except (OSError, ValueError) as error:
            raise DataError(path, None, f"cannot read weights JSON ({error})") from None
        where = path
        if not isinstance(raw, dict):
            raise DataError(path, None, "expected a JSON object {model: weight}")
        items = list(raw.items())
    else:
        where = "--weights"
        items = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "=" not in part:
                raise DataError(where, None, f"{part!r} is not model=weight")
            key, value = part.split("=", 1)
            items.append((key.strip(), value.strip()))
    weights = {}
    for key, value in items:
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise DataError(where, None, f"weight of {key!r} must be a finite number >= 0, got {value!r}")
        if key in weights:
            raise DataError(where, None, f"model {key!r} weighted twice")
        weights[key] = number
    if not weights:
        raise DataError(where, None, "no weights given")
    return weights


def choose_models(run: str, models_arg: str | None, weights: dict[str, float] | None) -> tuple[list[str], list[float]]:
    """Models and their weights: --models, else the weights' keys, else every model found."""
    embeddings_dir = os.path.join(run, layout.EMBEDDINGS_DIR)
    if models_arg:
        models = [m.strip() for m in models_arg.split(",") if m.strip()]
    elif weights:
        models = list(weights)
    else:
        models = discover_models(embeddings_dir)
    if len(set(models)) != len(models):
        raise DataError("--models", None, f"a model is listed twice: {models}")
    if weights is None:
        return models, [1.0] * len(models)
    unweighted = [m for m in models if m not in weights]
    unknown = [m for m in weights if m not in models]
    if unweighted or unknown:
        raise DataError("weights", None, f"weights must name exactly the models {models}: "
                                         f"missing {unweighted}, not among the models {unknown}")
    return models, [weights[m] for m in models]


def check_same_pairs(reference: EmbeddingSet, other: EmbeddingSet) -> None:
    """Two models' val files of one fold must validate the same pairs (same fold split)."""
    a, b = reference.pairs, other.pairs
    same = (a is not None and b is not None and len(a) == len(b) and np.array_equal(a.query, b.query)
            and np.array_equal(a.candidate, b.candidate) and np.array_equal(a.score, b.score))
    if not same:
        raise DataError(other.name, None, f"validation pairs differ from {reference.name} "
                                          "(every model must use the same fold split)")


def check_label_coverage(labels: Labels, oof_pairs: Labels, partial: bool = False) -> None:
    """The pooled validation pairs must be exactly the label file's pairs, with the same scores
    (with ``partial``: a subset of them, for runs that trained only some folds)."""
    expected = {(q, c): s for q, c, s in zip(labels.query.tolist(), labels.candidate.tolist(), labels.score.tolist())}
    found = {(q, c): s for q, c, s in zip(oof_pairs.query.tolist(), oof_pairs.candidate.tolist(),
                                          oof_pairs.score.tolist())}
    missing = [] if partial else [key for key in expected if key not in found]
    if missing:
        raise DataError(labels.path, None, f"{len(missing)} labelled pair(s) in no fold's val.npz, "
                                           f"first {missing[0][0]}/{missing[0][1]}")
    extra = [key for key in found if key not in expected]
    if extra:
        raise DataError(labels.path, None, f"{len(extra)} validation pair(s) not in the label file, "
                                           f"first {extra[0][0]}/{extra[0][1]}")
    wrong = [key for key in found if abs(expected[key] - found[key]) > 1e-6]
    if wrong:
        key = wrong[0]
        raise DataError(labels.path, None, f"{len(wrong)} pair score(s) differ from the val.npz pairs, first "
                                           f"{key[0]}/{key[1]}: label {expected[key]} vs {found[key]}")


def _read_folds_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, ValueError, RecursionError) as error:
        raise DataError(path, None, f"cannot read the fold description ({error})") from None
    if not isinstance(info, dict) or info.get("format") != FOLDS_FORMAT or not isinstance(info.get("folds"), list):
        raise DataError(path, None, f"not a fold-shard description (expected format {FOLDS_FORMAT!r})")
    return info


def check_folds_json(folds_dir: str, val_sets: dict[int, EmbeddingSet], partial: bool = False) -> None:
    """The folds in the embeddings must be the fold shards' (``folds.json`` of write_tfrecord.py):
    same fold numbers (with ``partial``: some of them), and each fold's val.npz holding as many
    pairs as its validation shard.

    Read as plain JSON: importing tfrecord_tools.folds would pull in TensorFlow.
    """
    path = os.path.join(folds_dir, FOLDS_JSON)
    info = _read_folds_json(path)
    try:
        shard_pairs = {int(entry["fold"]): int(entry["pairs"]) for entry in info["folds"]}
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(path, None, f"a fold entry lacks a valid 'fold' or 'pairs' ({error!r})") from None
    mismatch = (not set(val_sets) <= set(shard_pairs)) if partial else sorted(shard_pairs) != sorted(val_sets)
    if mismatch:
        raise DataError(path, None, f"folds {sorted(shard_pairs)} but the embeddings have folds {sorted(val_sets)}")
    for fold, fold_set in val_sets.items():
        if len(fold_set.pairs) != shard_pairs[fold]:
            raise DataError(fold_set.name, None, f"{len(fold_set.pairs)} validation pairs, but fold {fold}'s shard "
                                                 f"holds {shard_pairs[fold]} ({path})")


def check_provenance(models: list[str], folds: list[int], fold_dirs: dict, val_sets: dict,
                     folds_dir: str | None = None) -> dict:
    """Every embedding file of the ensemble must come from the same fold assignment, tag list and
    test files, and each fold's test.npz and val.npz from the same checkpoint (``provenance``
    records written by infer.embed / embed_all), and a model's folds the same wide-path gate
    (``train.wide_gate``); with ``folds_dir`` its folds.json must be that assignment too. A
    mismatch is a ProvenanceError naming both files. Files without a record (written before
    issue 10) are listed under ``unrecorded`` and skipped.
    """
    records: list[tuple[str, dict]] = []
    unrecorded: list[str] = []
    for model in models:
        first_of_model = len(records)
        for fold in folds:
            val = val_sets[model][fold]
            test_path = os.path.join(fold_dirs[model][fold], TEST_FILE)
            test = read_provenance(test_path)
            for path, record in ((val.name, val.provenance), (test_path, test)):
                if record is None:
                    unrecorded.append(path)
                    continue
                if record.get("fold") is not None and record["fold"] != fold:
                    raise provenance.ProvenanceError(path, f"made by the run of fold {record['fold']} "
                                                           f"({record.get('run')}), but it sits in fold_{fold:02d}")
                records.append((path, record))
            if val.provenance and test and val.provenance.get("checkpoint_md5") != test.get("checkpoint_md5"):
                raise provenance.ProvenanceError(test_path, f"made from checkpoint {test.get('checkpoint')}, but "
                                                            f"{val.name} from {val.provenance.get('checkpoint')}: "
                                                            "rerun infer.embed_all")
            if val.provenance and test and val.provenance.get("wide_gate") != test.get("wide_gate"):
                raise provenance.ProvenanceError(test_path, f"made with wide-path gate {test.get('wide_gate')}, but "
                                                            f"{val.name} with {val.provenance.get('wide_gate')}: "
                                                            "rerun infer.embed_all")
        gates = {record.get("wide_gate") for _, record in records[first_of_model:]}
        if len(gates) > 1:
            raise provenance.ProvenanceError(
                os.path.dirname(fold_dirs[model][folds[0]]),
                f"the fold models of {model} have different wide-path gates ({sorted(map(str, gates))}): their "
                f"cosines are on different scales; rerun python -m train.wide_gate RUN/finetune/{model}, then "
                "infer.embed_all")
    with_folds = [(path, record) for path, record in records if record.get("folds")]
    for path, record in with_folds[1:]:
        provenance.check_same_folds(with_folds[0][1]["folds"], record["folds"], with_folds[0][0], path,
                                    "an ensemble cannot mix runs of different fold splits (its out-of-fold "
                                    "score would be wrong)")
    if folds_dir and with_folds:
        json_path = os.path.join(folds_dir, FOLDS_JSON)
        provenance.check_same_folds(with_folds[0][1]["folds"], provenance.folds_record(_read_folds_json(json_path),
                                                                                       folds_dir),
                                    with_folds[0][0], json_path, "the embeddings were made with other folds")
    tag_lists = [(path, record["tag_list_md5"]) for path, record in records if record.get("tag_list_md5")]
    for path, value in tag_lists[1:]:
        if value != tag_lists[0][1]:
            raise provenance.ProvenanceError(path, f"made by a run with the tag list md5 {value}, but {tag_lists[0][0]} "
                                                   f"with {tag_lists[0][1]}: an ensemble must not mix runs of different "
                                                   "tag lists")
    tests = [(path, record["test_files"]) for path, record in records if record.get("test_files")]
    for path, files in tests[1:]:
        if not provenance.same_contents(tests[0][1], files):
            def describe(entries):
                return ", ".join(f"{f['path']} ({f['bytes']} bytes, md5 {f['md5'][:12]})" for f in entries)

            raise provenance.ProvenanceError(path, f"embeds the test files {describe(files)}, but {tests[0][0]} "
                                                   f"embeds {describe(tests[0][1])}: rerun infer.embed_all")
    if unrecorded:
        print(f"warning: {len(unrecorded)} embedding file(s) record no provenance (written before issue 10), e.g. "
              f"{unrecorded[0]}: their folds, tag list and test set are not checked", file=sys.stderr)
    return {"checked_files": len(records), "unrecorded": unrecorded,
            "folds": provenance.describe_folds(with_folds[0][1]["folds"]) if with_folds else None,
            "test_files": tests[0][1] if tests else None}
def fold_baseline_rows(baselines_dir: str, reference: dict[int, EmbeddingSet], oof_pairs: Labels,
                       pair_folds: np.ndarray, calibrate: str = fold_calibration.DEFAULT_METHOD,
                       distances: dict | None = None) -> list[ReportRow]:
    """Rows for the per-fold baselines of ``python -m infer.baselines`` (one directory each, laid out
    like a model's embeddings), scored out of fold on the models' folds and pairs (calibrated like the
    models; each baseline's fold distances are added to ``distances`` when given)."""
    rows = []
    for name in discover_models(baselines_dir):
        fold_dirs = discover_folds(os.path.join(baselines_dir, name))
        missing = sorted(set(reference) - set(fold_dirs))
        if missing:
            raise DataError(os.path.join(baselines_dir, name), None,
                            f"baseline has no fold(s) {missing} of the models (rerun infer.baselines with --folds)")
        sets = {fold: load_embedding_set(os.path.join(fold_dirs[fold], VAL_FILE)) for fold in reference}
        for fold in reference:
            check_same_pairs(reference[fold], sets[fold])
        per_fold = per_fold_spearman(sets)
        if calibrate == "distance":
            fold_distance = fold_calibration.fold_distances({fold: fold_dirs[fold] for fold in reference})
            sets = fold_calibration.calibrate_folds(sets, fold_distance)
            if distances is not None:
                distances[BASELINE_MEMBER + name] = fold_distance
        rows.append(ReportRow(f"baseline: {name}", "baseline", out_of_fold_spearman(sets, oof_pairs, pair_folds),
                              float(np.mean(list(per_fold.values()))), None, len(sets), len(oof_pairs)))
    return rows


def read_oracle(path: str | None) -> float | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError) as error:
        raise DataError(path, None, f"cannot read synthetic-data metadata ({error})") from None
    value = meta.get("oracle_spearman") if isinstance(meta, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_ensemble(run: str, models: list[str], weights: list[float], rule: str = "svd", fit_on: str = "test",
                 dim: int = DEFAULT_DIM, seed: int = 0, labels_path: str | None = None,
                 folds_dir: str | None = None, test_ids_path: str | None = None, out: str | None = None,
                 synth_meta: str | None = None,
                 png: str | None = None, user_weights: bool = True, partial_folds: bool = False,
                 baselines: Sequence[str] = (), baselines_dir: str | None = None,
                 auto_weights: bool = False, calibrate: str = fold_calibration.DEFAULT_METHOD,
                 align_folds: str = fold_alignment.DEFAULT_METHOD) -> dict:
    """Everything the CLI does; returns the report dict (also written beside ``out``: report_path(out)).

    ``auto_weights`` replaces ``weights`` by weights chosen on the validation pairs (cross-fitted:
    fold k's ensemble uses weights chosen on the other folds' pairs). ``png``: None draws no table,
    "" draws it beside the report, any other value is its path.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose from {sorted(RULES)}")
    if auto_weights and rule == "mean":
        raise ValueError("rule 'mean' weighs every model equally; --weights auto needs --rule svd or weighted")
    if fit_on not in ("test", "val"):
        raise ValueError(f"--fit-on must be 'test' or 'val', got {fit_on!r}")
    if calibrate not in fold_calibration.METHODS:
        raise ValueError(f"--calibrate must be one of {list(fold_calibration.METHODS)}, got {calibrate!r}")
    if align_folds not in fold_alignment.METHODS:
        raise ValueError(f"--align-folds must be one of {list(fold_alignment.METHODS)}, got {align_folds!r}")
    if not 1 <= dim <= MAX_DIM:
        raise ValueError(f"--dim must be in 1..{MAX_DIM} (the submission limit), got {dim}")
    out = out or os.path.join(run, layout.RESULT_ZIP)
    oracle = read_oracle(synth_meta)  # inputs that can fail are read before the long work
    expected = set(read_id_list(test_ids_path).tolist()) if test_ids_path else None
    rule_weights = weights if (rule != "mean" or user_weights) else None
    embeddings_dir = os.path.join(run, layout.EMBEDDINGS_DIR)

    def member_dir(model: str) -> str:
        """RUN/embeddings/<model>, or for ``baseline:NAME`` members the strong baseline's directory."""
        if model.startswith(BASELINE_MEMBER):
            if not baselines_dir:
                raise DataError(model, None, "a baseline member needs --baselines-dir")
            return os.path.join(baselines_dir, model[len(BASELINE_MEMBER):])
        return os.path.join(embeddings_dir, model)

    fold_dirs = {model: discover_folds(member_dir(model)) for model in models}
    folds = sorted(fold_dirs[models[0]])
    for model in models[1:]:
        if sorted(fold_dirs[model]) != folds:
            raise DataError(member_dir(model), None,
                            f"folds {sorted(fold_dirs[model])} differ from {folds} of model {models[0]}")

    # Validation embeddings (small: the fold's validation videos) stay in memory.
    val_sets = {model: {fold: load_embedding_set(os.path.join(fold_dirs[model][fold], VAL_FILE)) for fold in folds}
                for model in models}
    for fold in folds:
        for model in models[1:]:
            check_same_pairs(val_sets[models[0]][fold], val_sets[model][fold])
    provenance_summary = check_provenance(models, folds, fold_dirs, val_sets, folds_dir)
    oof_pairs, pair_folds = pairs_by_fold(val_sets[models[0]])
    if folds_dir:
        check_folds_json(folds_dir, val_sets[models[0]], partial_folds)
    if labels_path:
        check_label_coverage(read_labels(labels_path), oof_pairs, partial_folds)
    # Mean fold scores from the raw sets (calibration is monotone within a fold: the same numbers).
    mean_fold = {model: float(np.mean(list(per_fold_spearman(val_sets[model]).values()))) for model in models}
    raw_val_sets = dict(val_sets)  # the submission (fold averages) is not calibrated
    distances: dict[str, dict[int, float]] = {}
    if calibrate == "distance":  # one cheap pass over the test files, before any pairs are pooled
        for model in models:
            distances[model] = fold_calibration.fold_distances(fold_dirs[model])
            val_sets[model] = fold_calibration.calibrate_folds(val_sets[model], distances[model])
    fold_weights = {fold: rule_weights for fold in folds}
    member_cosines = fold_cosines(val_sets, models, folds)  # the validation pairs only: cheap
    headroom = (member_headroom(np.concatenate([member_cosines[f][0] for f in folds]),
                                np.concatenate([member_cosines[f][1] for f in folds]), models)
                if len(models) > 1 else None)
    if auto_weights:
        if len(folds) < AUTO_MIN_FOLDS:
            print(f"warning: --weights auto with {len(folds)} fold(s): each fold's weights are chosen on "
                  f"{len(folds) - 1} other fold(s)' pairs only, which is noisy (with 2 folds it cost up to 0.008 "
                  f"out of fold against equal weights on a synthetic world; docs/benchmarks.md); use it with "
                  f"{AUTO_MIN_FOLDS}+ folds", file=sys.stderr)
        chosen, final_weights = cross_fitted_weights(member_cosines)
        fold_weights = {fold: [float(w) for w in chosen[fold]] for fold in folds}
        weights = rule_weights = [float(w) for w in final_weights]

    # One pass over the test files: fold averages, plus each fold's ensemble of val embeddings
    # (whose SVD, with --fit-on test, is fitted on the same fold models' test embeddings).
    # Each fold model is rotated onto the first one's coordinates before it is averaged (the first
    # fold's set is the reference, read in this same pass).
    averagers = {model: FoldAverager(name=f"{model} (fold average)") for model in models}
    references: dict[str, EmbeddingSet] = {}
    rotations: dict[str, dict[int, np.ndarray]] = {}
    if align_folds == "procrustes":
        rotations = {model: {} for model in models}
    ensemble_val: dict[int, EmbeddingSet] = {}
    for fold in tqdm(folds, desc="folds", unit="fold", file=sys.stderr):
        test_sets = [load_embedding_set(os.path.join(fold_dirs[model][fold], TEST_FILE)) for model in models]
        for model, test_set in zip(models, test_sets):
            if model in rotations and model not in references:  # the first fold: the reference
                references[model] = test_set
                rotations[model][fold] = np.eye(test_set.dim)
            elif model in rotations:
                rotations[model][fold] = fold_alignment.rotation_onto(references[model], test_set)
            averagers[model].add(fold_alignment.rotate(test_set, rotations.get(model, {}).get(fold)))
        if calibrate == "distance":
            test_sets = [fold_calibration.calibrate_set(test_set, distances[model][fold],
                                                        fold_calibration.reference_distance(distances[model]))
                         for model, test_set in zip(models, test_sets)]
        fold_fit = test_sets if (rule == "svd" and fit_on == "test") else None
        ensemble_val[fold] = apply_rule(rule, [val_sets[m][fold] for m in models], fold_weights[fold], dim=dim,
                                        fit_on=fold_fit, seed=seed)
        del test_sets, fold_fit
    averages = {model: averagers[model].result() for model in models}
    for model in models:
        average_dir = os.path.join(member_dir(model), layout.AVERAGE_DIR)
        save_embeddings(os.path.join(average_dir, TEST_FILE), averages[model].ids, averages[model].embeddings)
        rotations_path = os.path.join(average_dir, fold_alignment.ROTATIONS_FILE)
        if model in rotations:
            fold_alignment.save_rotations(rotations_path, rotations[model])
        elif os.path.isfile(rotations_path):  # an earlier aligned average's rotations no longer apply
            os.remove(rotations_path)

    rows = []
    for model, weight in zip(models, weights):
        rows.append(ReportRow(model, "model", out_of_fold_spearman(val_sets[model], oof_pairs, pair_folds),
                              mean_fold[model], weight, len(folds), len(oof_pairs)))

    if rule == "svd" and fit_on == "val":
        final_fit = np.concatenate([concat_scaled([fold_alignment.rotate(raw_val_sets[m][fold],
                                                                         rotations.get(m, {}).get(fold))
                                                   for m in models], rule_weights)[1]
                                    for fold in folds])
    else:
        final_fit = None
    final = apply_rule(rule, [averages[m] for m in models], rule_weights, dim=dim, fit_on=final_fit, seed=seed)
    ensemble_name = (f"ensemble ({rule}" + (f", fit on {fit_on}" if rule == "svd" else "")
                     + (", auto weights)" if auto_weights else ")"))
    ensemble_per_fold = per_fold_spearman(
        {fold: EmbeddingSet(ensemble_val[fold].ids, ensemble_val[fold].embeddings, val_sets[models[0]][fold].pairs,
                            ensemble_val[fold].name) for fold in folds})
    rows.append(ReportRow(ensemble_name, "ensemble", out_of_fold_spearman(ensemble_val, oof_pairs, pair_folds),
                          float(np.mean(list(ensemble_per_fold.values()))), None, len(folds), len(oof_pairs)))
    for path in baselines:  # raw baselines (infer/baselines.py), scored on the same pairs
        baseline = load_embedding_set(path)
        name = os.path.splitext(os.path.basename(path))[0]
        rows.append(ReportRow(f"baseline: {name}", "baseline", spearman(baseline, oof_pairs), None, None,
                              None, len(oof_pairs)))
    if baselines_dir:
        rows.extend(fold_baseline_rows(baselines_dir, val_sets[models[0]], oof_pairs, pair_folds, calibrate,
                                       distances))
    if oracle is not None:
        rows.append(ReportRow("oracle (synthetic truth)", "oracle", oracle))

    if expected is not None:
        have = set(final.ids.tolist())
        if expected != have:
            missing, extra = sorted(expected - have), sorted(have - expected)
            raise DataError(test_ids_path, None, f"test embeddings lack {len(missing)} expected id(s) {missing[:5]} "
                                                 f"and hold {len(extra)} unexpected id(s) {extra[:5]}")
    summary = write_result(out, final.ids, final.embeddings)

    report = {
        "run": run, "models": models, "weights": dict(zip(models, weights)), "rule": rule,
        "weights_chosen": "auto" if auto_weights else ("given" if user_weights else "equal"),
        "fold_weights": ({str(fold): dict(zip(models, fold_weights[fold])) for fold in folds}
                         if auto_weights else None),
        "fit_on": fit_on if rule == "svd" else None, "dim": dim, "seed": seed, "folds": folds,
        "num_pairs": len(oof_pairs), "calibrate": calibrate, "align_folds": align_folds,
        "synth_meta": os.path.abspath(synth_meta) if synth_meta else None,
        "fold_distances": {name: {str(fold): value for fold, value in per_fold.items()}
                           for name, per_fold in distances.items()},
        "rows": [row.to_dict() for row in rows],
        "oracle_spearman": oracle, "result": summary, "table": format_table(rows, markdown=True),
        "notes": check_rows(rows),
        "headroom": headroom.to_dict() if headroom is not None else None,
        "provenance": provenance_summary,
    }
    report["report_path"] = report_path(out)
    write_text_atomic(report["report_path"], json.dumps(report, indent=2, ensure_ascii=False))
    if png is not None:  # "" draws it beside the report
        plot_table(rows, png or report_path(out, layout.ENSEMBLE_PNG))
    report["text_table"] = format_table(rows)
    return report


def report_path(out: str, name: str = layout.ENSEMBLE_REPORT) -> str:
    """Where the report of the submission ``out`` goes: beside it (RUN/ for the default RUN/result.zip)."""
    return os.path.join(os.path.dirname(out), name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog="ensemble_final.py", description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory holding embeddings/<model>/fold_XX/")
    parser.add_argument("--models", help="comma-separated model names (default: the weighted ones, else all); "
                                         "baseline:NAME adds a strong baseline of --baselines-dir as a member")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--weights", help="model=weight,... (default 1 each), or 'auto': chosen on the validation "
                                         "pairs, each fold's on the other folds' pairs (ensemble/weights.py)")
    group.add_argument("--weights-file", help="JSON object {model: weight}")
    parser.add_argument("--rule", choices=sorted(RULES), default="svd")
    parser.add_argument("--fit-on", choices=("test", "val"), default="test", help="rows the SVD is fitted on")
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM, help="SVD output dimension (<= 256 to submit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate", choices=fold_calibration.METHODS, default=fold_calibration.DEFAULT_METHOD,
                        help="put each fold model's cosines on one scale (its mean distance between test videos) "
                             "before out-of-fold pairs are pooled; 'none' pools the raw cosines")
    parser.add_argument("--align-folds", choices=fold_alignment.METHODS, default=fold_alignment.DEFAULT_METHOD,
                        help="rotate each fold model onto the first (orthogonal Procrustes on the test embeddings) "
                             "before the fold average; 'none' averages the raw vectors")
    parser.add_argument("--labels", help="label.tsv: check the folds' validation pairs cover it exactly")
    parser.add_argument("--folds-dir", help="fold shards directory: check its folds.json matches the val pairs")
    parser.add_argument("--test-ids", help="expected test ids (text file or .npz) the submission must hold")
    parser.add_argument("--out", help="submission zip (default RUN/result.zip); the report goes beside it")
    parser.add_argument("--synth-meta", help="a generated data set's meta with its oracle Spearman "
                                                 "(synth_meta.json, or bench.foreign_world's foreign_meta.json)")
    parser.add_argument("--baselines", nargs="*", default=(),
                        help="raw-baseline .npz files (python -m infer.baselines) to score on the same pairs")
    parser.add_argument("--baselines-dir", help="per-fold baselines (python -m infer.baselines --out DIR) to score "
                                                "out of fold on the same pairs")
    parser.add_argument("--partial-folds", action="store_true",
                        help="accept embeddings of only some folds (out-of-fold Spearman over their pairs only)")
    parser.add_argument("--export", help="also write the whole ensemble as one SavedModel here (ensemble/export.py)")
    parser.add_argument("--png", nargs="?", const="", default=None,
                        help="also draw the table (default path: ensemble_report.png beside --out)")
    args = parser.parse_args(argv)
    try:
        auto = args.weights is not None and args.weights.strip() == AUTO_WEIGHTS
        weights = None if auto else parse_weights(args.weights, args.weights_file)
        models, model_weights = choose_models(args.run, args.models, weights)
        embeddings_dir = os.path.join(args.run, layout.EMBEDDINGS_DIR)
        lock = locks.locked(embeddings_dir, "ensemble_final.py") if os.path.isdir(embeddings_dir) else contextlib.nullcontext()
        with lock:  # not while infer.embed_all (or another ensemble) writes the same embeddings
            report = run_ensemble(args.run, models, model_weights, rule=args.rule, fit_on=args.fit_on, dim=args.dim,
                                  seed=args.seed, labels_path=args.labels, folds_dir=args.folds_dir,
                                  test_ids_path=args.test_ids, out=args.out,
                                  synth_meta=args.synth_meta, png=args.png, user_weights=weights is not None,
                                  partial_folds=args.partial_folds, baselines=args.baselines,
                                  baselines_dir=args.baselines_dir, auto_weights=auto, calibrate=args.calibrate,
                                  align_folds=args.align_folds)
        if args.export:
            from ensemble.export import export_ensemble

            exported = export_ensemble(report, args.export, overwrite=True)
    except (DataError, ValueError, locks.LockedError) as error:
        return cli.report_error("ensemble_final.py", error)
    print(report["text_table"])
    if report["calibrate"] == "distance":
        print("(out of fold: each fold model's cosines put on one scale by its mean distance between the test "
              "videos; --calibrate none pools them raw)")
    if report["headroom"] is not None:
        print(report["headroom"]["line"])
    for note in report["notes"]:
        print(f"note: {note}")
    result = report["result"]
    print(f"\nwrote {result['path']} ({result['num_ids']} ids x {result['dim']} dims, validated) and "
          f"{report['report_path']}")
    if args.export:
        print(f"exported the ensemble ({len(exported['members'])} member runs, dim {exported['dim']}) -> {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
