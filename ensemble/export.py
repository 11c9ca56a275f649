"""The whole ensemble as one SavedModel: ``python ensemble_final.py ... --export DIR``.

Every member run (``RUN/finetune/<model>/fold_XX``, the runs whose embeddings the ensemble read),
the fold averaging (each fold model's L2-normalised vectors rotated onto the first fold model's
coordinates, ``ensemble/fold_alignment.py``, then averaged), the rule's weights and, for ``svd``, the
TruncatedSVD projection go into one graph (``infer.export.ExportModule``; same signatures as a
single-run export). The projection is re-fitted here with the library calls and settings
``ensemble_final.py`` used (``ensemble.rules.concat_scaled`` + ``fit_svd``, same rows, dim and
seed) and checked against the ``result.zip`` just written: if the float32 vectors it gives do not
round to the submission's float16 values, the export is refused (the ensemble did something this
module does not know about) instead of writing a graph that disagrees with ``result.zip``.

The export directory also gets ``ensemble_reference.npz``: the test ids and the ensemble's float32
vectors (what ``result.zip`` holds before its float16 rounding), to check a deployment against.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ensemble.fold_alignment import ROTATIONS_FILE, load_rotations, rotate
from ensemble.rules import concat_scaled, fit_svd
from infer.embeddings_io import EmbeddingSet, load_embedding_set, save_embeddings
from infer.export import Combination, load_member, save_export
from tfrecord_tools.errors import DataError

REFERENCE_FILE = "ensemble_reference.npz"


def _read_result(path: str) -> dict[str, list[float]]:
    import zipfile

    with zipfile.ZipFile(path) as archive, archive.open("result.json") as handle:
        return json.load(handle)


def member_rotations(run: str, models: list[str], folds: list[int], align_folds: str
                     ) -> dict[str, dict[int, np.ndarray]]:
    """``{model: {fold: R}}`` the fold averages were made with (empty without alignment)."""
    if align_folds == "none":
        return {}
    return {m: load_rotations(os.path.join(run, "embeddings", m, "avg", ROTATIONS_FILE), folds) for m in models}


def ensemble_vectors(run: str, models: list[str], weights: list[float], rule: str, fit_on: str, dim: int,
                     seed: int, folds: list[int], rotations: dict[str, dict[int, np.ndarray]] | None = None
                     ) -> tuple[EmbeddingSet, np.ndarray | None]:
    """The final float32 ensemble of the fold averages and (svd) the projection [out, concat]."""
    rotations = rotations or {}
    averages = [load_embedding_set(os.path.join(run, "embeddings", m, "avg", "test.npz")) for m in models]
    if rule != "svd":
        from ensemble.rules import apply_rule

        final = apply_rule(rule, averages, weights if rule == "weighted" else None)
        return final, None
    ids, matrix = concat_scaled(averages, weights)
    if fit_on == "val":
        fit = np.concatenate([concat_scaled([rotate(load_embedding_set(os.path.join(run, "embeddings", m,
                                                                                    f"fold_{k:02d}", "val.npz")),
                                                   rotations.get(m, {}).get(k)) for m in models],
                                            weights)[1] for k in folds])
    else:
        fit = matrix
    svd = fit_svd(fit, dim=dim, seed=seed)
    return EmbeddingSet(ids, svd.transform(matrix).astype(np.float32)), svd.components_.astype(np.float64)


def check_against_result(final: EmbeddingSet, result_path: str) -> float:
    """Max |final - result.json| beyond float16 rounding; DataError when they disagree."""
    result = _read_result(result_path)
    if set(result) != set(final.ids.tolist()):
        raise DataError(result_path, None, "the submission's ids differ from the fold-averaged test embeddings")
    submitted = np.asarray([result[i] for i in final.ids.tolist()], dtype=np.float64)
    if submitted.shape != final.embeddings.shape:
        raise DataError(result_path, None, f"re-computing the ensemble does not reproduce the submission: vectors "
                                           f"{final.embeddings.shape} vs {submitted.shape} submitted; nothing exported")
    rounded = final.embeddings.astype(np.float16).astype(np.float64)
    # a value within float32 noise of a float16 rounding boundary may round to the next float16
    ulp = np.spacing(np.abs(submitted).astype(np.float16)).astype(np.float64)
    excess = np.abs(rounded - submitted) - ulp
    worst = float(excess.max())
    if worst > 1e-6:
        raise DataError(result_path, None, f"re-computing the ensemble does not reproduce the submission (off by "
                                           f"{worst + float(ulp.max()):.3g}); the ensemble rule changed? "
                                           f"nothing exported")
    return float(np.abs(final.embeddings - submitted).max())


def export_ensemble(report: dict, out_dir: str, checkpoint: str = "best", overwrite: bool = False) -> dict:
    """Export the ensemble ``ensemble_final.run_ensemble`` just built (its report dict)."""
    run, models, rule = report["run"], list(report["models"]), report["rule"]
    weights = [float(report["weights"][m]) for m in models]
    folds = list(report["folds"])
    # reports written before fold alignment existed averaged the raw vectors
    align_folds = report.get("align_folds") or "none"
    rotations = member_rotations(run, models, folds, align_folds)
    final, projection = ensemble_vectors(run, models, weights, rule, report.get("fit_on") or "test",
                                         int(report["dim"]), int(report["seed"]), folds, rotations)
    check_against_result(final, report["result"]["path"])

    members, groups, member_rotation = [], [], []
    for model in models:
        group = []
        for fold in folds:
            run_dir = os.path.join(run, "finetune", model, f"fold_{fold:02d}")
            if not os.path.isdir(run_dir):
                raise DataError(run_dir, None, f"no finetune run for model {model!r} fold {fold} (the ensemble's "
                                               f"embeddings come from RUN/finetune/<model>/fold_XX)")
            group.append(len(members))
            members.append(load_member(run_dir, "embedding", checkpoint))
            member_rotation.append(rotations.get(model, {}).get(fold))
        groups.append(group)
    combination = Combination("ensemble", groups, weights, rule, projection,
                              member_rotation if rotations else None)
    digest = hashlib.sha256()
    for member in members:
        digest.update(member.fingerprint.encode())
    digest.update(json.dumps([models, weights, rule]).encode())
    if projection is not None:
        digest.update(projection.tobytes())
    for rotation in member_rotation:
        if rotation is not None:
            digest.update(np.ascontiguousarray(rotation).tobytes())
    meta = {"kind": "ensemble", "family": "ensemble", "output": "embedding", "fingerprint": digest.hexdigest()[:24],
            "ensemble": {"models": models, "weights": dict(zip(models, weights)), "rule": rule, "folds": folds,
                         "fit_on": report.get("fit_on"), "dim": report["dim"], "seed": report["seed"],
                         "align_folds": align_folds,
                         "result": report["result"]["path"]}}
    full = save_export(members, combination, out_dir, meta, overwrite=overwrite)
    save_embeddings(os.path.join(out_dir, REFERENCE_FILE), final.ids, final.embeddings)
    return full
