"""Index directories: build one from a vector source (streaming), load it back, search it.

Layout of ``INDEX_DIR``::

    index.faiss   the faiss index of the L2-normalised vectors (inner product = cosine)
    ids.npy       unicode [N]: the video id of every index row, in row order
    meta.json     format, kind, dim, count, build parameters, search defaults, where the vectors
                  came from and -- when known -- which model made them (``model.fingerprint``)

Kinds: ``flat`` (exact), ``ivf`` (IVF-Flat: ``nlist`` inverted lists, ``nprobe`` searched),
``ivfpq`` (IVF with product-quantised codes: ``m`` sub-vectors of ``nbits`` bits, memory ~m bytes a
vector), ``hnsw`` (HNSW graph over the flat vectors, ``M`` links, ``efSearch``).

Building streams: the source is read in chunks (a first pass draws the training sample of IVF
kinds), each chunk is normalised and added, so nothing but the index itself and one chunk is in
memory. The directory is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np

from infer.embeddings_io import as_id_array
from tfrecord_tools.atomic import atomic_directory
from search.vectors import CHUNK_ROWS, VectorSource, normalize_rows
from tfrecord_tools.errors import DataError

FORMAT = "videosim-search-index"
FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.npy"
META_FILE = "meta.json"
KINDS = ("flat", "ivf", "ivfpq", "hnsw")
PQ_MIN_TRAIN = 256  # 2^nbits centroids per sub-quantiser need at least this many training vectors


class SearchError(ValueError):
    """A request the index cannot answer (unknown id, wrong dimension, another model's index, ...)."""


def _faiss():
    import faiss

    return faiss


def default_params(kind: str, count: int, dim: int) -> dict:
    """Build/search parameters of ``kind`` for ``count`` vectors of ``dim`` (overridable)."""
    if kind == "flat":
        return {}
    if kind in ("ivf", "ivfpq"):
        nlist = int(min(max(1, round(4 * math.sqrt(count))), max(1, count // 39)))
        params = {"nlist": nlist, "nprobe": int(min(nlist, max(1, nlist // 16, 8))),
                  "train_size": int(min(count, max(256 * nlist // 4, 100 * nlist, PQ_MIN_TRAIN), 200_000))}
        if kind == "ivfpq":
            m = next(m for m in (dim // 8, dim // 4, dim // 2, dim, 1) if m >= 1 and dim % m == 0)
            params.update({"m": m, "nbits": 8})
        return params
    if kind == "hnsw":
        return {"M": 32, "efConstruction": 80, "efSearch": 128}
    raise ValueError(f"unknown index kind {kind!r}; choose from {KINDS}")


def _new_index(kind: str, dim: int, params: dict):
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "ivf":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, params["nlist"], ip)
    if kind == "ivfpq":
        if dim % params["m"]:
            raise ValueError(f"ivfpq: m={params['m']} must divide the dimension {dim}")
        return faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, params["nlist"], params["m"], params["nbits"], ip)
    index = faiss.IndexHNSWFlat(dim, params["M"], ip)
    index.hnsw.efConstruction = params["efConstruction"]
    return index


def apply_search_params(index, kind: str, params: dict) -> None:
    if kind in ("ivf", "ivfpq"):
        index.nprobe = int(params["nprobe"])
    elif kind == "hnsw":
        index.hnsw.efSearch = int(params["efSearch"])


def _training_sample(source: VectorSource, size: int, seed: int) -> np.ndarray:
    """``size`` rows drawn uniformly without replacement, read in one streaming pass."""
    rows = np.sort(np.random.default_rng(seed).choice(len(source), size=size, replace=False))
    picked = []
    for start, chunk in source.chunks():
        lo, hi = np.searchsorted(rows, [start, start + len(chunk)])
        if hi > lo:
            picked.append(chunk[rows[lo:hi] - start])
    return np.concatenate(picked)


def build_index(source: VectorSource, out_dir: str | os.PathLike, kind: str = "flat", params: dict | None = None,
                model: dict | None = None, overwrite: bool = False, seed: int = 0,
                chunk_rows: int = CHUNK_ROWS, progress=None) -> dict:
    """Build a ``kind`` index of ``source`` in ``out_dir``; returns its meta dict.

    ``model``: what made the vectors (``{"fingerprint", "output", "source"}``), stored so that a
    query with new videos or text can check it embeds into the same space.
    """
    faiss = _faiss()
    out_dir = os.fspath(out_dir)
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose from {KINDS}")
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    count, dim = len(source), source.dim
    settings = default_params(kind, count, dim)
    unknown = sorted(set(params or {}) - set(settings))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for a {kind} index; valid: {sorted(settings)}")
    settings.update(params or {})
    if kind == "ivfpq" and count < PQ_MIN_TRAIN:
        raise ValueError(f"ivfpq needs at least {PQ_MIN_TRAIN} vectors to train its codebooks, the source has "
                         f"{count}; use --kind flat or ivf")
    if kind in ("ivf", "ivfpq") and settings["nlist"] > count:
        raise ValueError(f"nlist={settings['nlist']} exceeds the {count} vectors")
    started = time.perf_counter()
    index = _new_index(kind, dim, settings)
    if kind in ("ivf", "ivfpq"):
        settings["train_size"] = int(min(count, max(settings["train_size"], settings["nlist"])))
        index.train(_training_sample(source, settings["train_size"], seed))
    trained = time.perf_counter()
    for _, chunk in source.chunks(chunk_rows):
        index.add(chunk)
        if progress is not None:
            progress(len(chunk))
    if index.ntotal != count:
        raise DataError(source.path, None, f"indexed {index.ntotal} vectors for {count} ids")
    if kind in ("ivf", "ivfpq"):
        index.make_direct_map()  # so that a row's vector can be read back (queries by id)
    done = time.perf_counter()
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "metric": "inner_product",
        "normalized": True, "dim": dim, "count": count, "params": settings,
        "source": {"path": os.path.abspath(source.path), "type": source.kind},
        "model": model, "faiss_version": faiss.__version__,
        "build_seconds": {"train": round(trained - started, 3), "add": round(done - trained, 3)},
    }
    with atomic_directory(out_dir) as staging:
        faiss.write_index(index, os.path.join(staging, INDEX_FILE))
        np.save(os.path.join(staging, IDS_FILE), source.ids, allow_pickle=False)
        with open(os.path.join(staging, META_FILE), "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=2)
            handle.write("\n")
    return meta


@dataclasses.dataclass(eq=False)
class SearchIndex:
    """A loaded index directory: the faiss index, the ids of its rows and its meta."""

    path: str
    index: object
    ids: np.ndarray
    meta: dict

    def __post_init__(self):
        self._rows = {key: row for row, key in enumerate(self.ids.tolist())}

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, video_id: str) -> int:
        if video_id not in self._rows:
            raise SearchError(f"{self.path}: id {video_id!r} is not in the index ({len(self.ids)} videos)")
        return self._rows[video_id]

    def vector(self, video_id: str) -> np.ndarray:
        """The (normalised) vector of an indexed video, as stored (approximate for ivfpq)."""
        return self.index.reconstruct(self.row(video_id)).reshape(1, -1)

    def set_search(self, **params) -> None:
        """Override search-time parameters (``nprobe`` for IVF kinds, ``efSearch`` for HNSW)."""
        settings = dict(self.meta["params"])
        for key, value in params.items():
            if value is None:
                continue
            if key not in settings:
                raise SearchError(f"{self.path}: a {self.kind} index has no search parameter {key!r}")
            settings[key] = int(value)
        apply_search_params(self.index, self.kind, settings)

    def check_queries(self, queries: np.ndarray, where: str) -> np.ndarray:
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            got = queries.shape[1] if queries.ndim == 2 else queries.shape
            raise SearchError(f"{where}: query vectors have dimension {got}, the index {self.path} holds "
                              f"dimension {self.dim}")
        return normalize_rows(queries, where)

    def search(self, queries: np.ndarray, k: int, where: str = "query") -> tuple[np.ndarray, np.ndarray]:
        """``(cosines [Q, k], rows [Q, k])`` of the ``k`` nearest rows (row -1 where fewer exist)."""
        if k < 1:
            raise SearchError(f"k must be at least 1, got {k}")
        queries = self.check_queries(queries, where)
        return self.index.search(queries, min(k, len(self.ids)))

    def neighbours(self, queries: np.ndarray, k: int, exclude: list[str | None] | None = None,
                   where: str = "query") -> list[list[tuple[str, float]]]:
        """Per query, up to ``k`` ``(id, cosine)`` best first, leaving out ``exclude[i]`` (its own id)."""
        extra = 1 if exclude is not None else 0
        cosines, rows = self.search(queries, k + extra, where)
        results = []
        for i in range(len(rows)):
            skip = exclude[i] if exclude is not None else None
            found = [(str(self.ids[r]), float(c)) for c, r in zip(cosines[i], rows[i])
                     if r >= 0 and self.ids[r] != skip]
            results.append(found[:k])
        return results


def load_index(path: str | os.PathLike) -> SearchIndex:
    """Read an index directory written by ``build_index``; DataError on anything missing or inconsistent."""
    faiss = _faiss()
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataError(path, None, "index directory not found (build it with python -m search.index)")
    for name in (META_FILE, INDEX_FILE, IDS_FILE):
        if not os.path.isfile(os.path.join(path, name)):
            raise DataError(path, None, f"missing {name}: not a complete index directory")
    try:
        with open(os.path.join(path, META_FILE), encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError) as error:
        raise DataError(os.path.join(path, META_FILE), None, f"unreadable ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(os.path.join(path, META_FILE), None, f"not a search index description (format {FORMAT!r})")
    try:
        ids = as_id_array(np.load(os.path.join(path, IDS_FILE), allow_pickle=False), os.path.join(path, IDS_FILE))
    except (OSError, ValueError) as error:
        raise DataError(os.path.join(path, IDS_FILE), None, f"unreadable ids ({error})") from None
    try:
        index = faiss.read_index(os.path.join(path, INDEX_FILE))
    except RuntimeError as error:
        raise DataError(os.path.join(path, INDEX_FILE), None, f"unreadable faiss index "
                                                               f"({str(error).strip().splitlines()[-1]})") from None
    if index.ntotal != len(ids) or index.ntotal != meta.get("count"):
        raise DataError(path, None, f"index holds {index.ntotal} vectors, ids.npy {len(ids)}, meta.json "
                                    f"{meta.get('count')}: the files do not belong together")
    if index.d != meta.get("dim"):
        raise DataError(path, None, f"index dimension {index.d} differs from meta.json's {meta.get('dim')}")
    apply_search_params(index, meta["kind"], meta.get("params", {}))
    return SearchIndex(path, index, ids, meta)
