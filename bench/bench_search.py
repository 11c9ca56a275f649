"""Search speed, memory and recall at scale: flat vs IVF-Flat vs IVF-PQ vs HNSW (faiss-cpu).

    python -m bench.bench_search [--n 1000000] [--dim 256] [--queries 1000] [--threads 2] [--out bench/out/search.json]

Vectors: ``n`` L2-normalised 256-d vectors drawn around 20,000 cluster centres (``--noise``: per-dimension noise in units of the centres' scale) (a clustered
collection like real embeddings, where approximate indexes are harder than on uniform noise), plus
``queries`` held-out vectors of the same distribution. The truth is the flat (exact) index's top 10;
each approximate index reports recall@10 against it at several search settings. Built through
``search.store.build_index`` (the code ``python -m search.index`` runs), from an in-memory source.

Reported per index: build time (train + add), index size on disk (= its memory, to a few MB),
peak RSS of the process after the build, search time per query (batch of ``queries``, all threads)
and recall@10 vs flat.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np


def clustered_unit_vectors(n: int, dim: int, centres: int, seed: int, noise: float = 1.5,
                           chunk: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        block = means[rng.integers(0, centres, m)] + noise * rng.standard_normal((m, dim)).astype(np.float32)
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--centres", type=int, default=20_000)
    parser.add_argument("--noise", type=float, default=1.5,
                        help="per-dimension noise around a centre, in units of the centres' scale (higher: "
                             "less clustered, harder for approximate indexes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", default="flat,ivf,ivfpq,hnsw")
    parser.add_argument("--out", default="bench/out/search.json")
    args = parser.parse_args(argv)

    import faiss

    from search.store import build_index, load_index
    from search.vectors import memory_vectors

    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    data = clustered_unit_vectors(args.n + args.queries, args.dim, args.centres, seed=0, noise=args.noise)
    base, queries = data[:args.n], np.ascontiguousarray(data[args.n:])
    ids = np.char.add("v", np.arange(args.n).astype(str))
    print(f"{args.n} x {args.dim} vectors ({base.nbytes / 2**20:.0f} MiB) in {time.perf_counter() - started:.1f}s; "
          f"peak RSS {peak_rss_mb():.0f} MB", flush=True)
    source = memory_vectors(ids, base, name="bench")
    nlist = int(4 * np.sqrt(args.n))
    configs = {
        "flat": ({}, [{}]),
        "ivf": ({"nlist": nlist, "train_size": 50 * nlist}, [{"nprobe": p} for p in (8, 32, 128)]),
        "ivfpq": ({"nlist": nlist, "m": 32, "nbits": 8, "train_size": 50 * nlist},
                  [{"nprobe": p} for p in (8, 32, 128)]),
        "hnsw": ({"M": 16, "efConstruction": 40}, [{"efSearch": e} for e in (32, 64, 128, 256)]),
    }
    truth = None
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_search.") as tmp:
        for kind in args.kinds.split(","):
            params, settings = configs[kind]
            out = os.path.join(tmp, kind)
            t0 = time.perf_counter()
            meta = build_index(source, out, kind, params)
            build = time.perf_counter() - t0
            size = os.path.getsize(os.path.join(out, "index.faiss"))
            index = load_index(out)
            for setting in settings:
                index.set_search(**setting)
                index.index.search(queries[:10], 10)  # warm up
                t0 = time.perf_counter()
                _, found = index.index.search(queries, 10)
                per_query = (time.perf_counter() - t0) / len(queries)
                if kind == "flat":
                    truth = found
                recall = (float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
                          if truth is not None else None)
                row = {"kind": kind, "params": meta["params"], "search": setting, "build_s": round(build, 1),
                       "train_s": meta["build_seconds"]["train"], "index_mb": round(size / 2**20, 1),
                       "peak_rss_mb": round(peak_rss_mb()), "ms_per_query": round(per_query * 1e3, 4),
                       "qps": round(1.0 / per_query), "recall_at_10_vs_flat": recall}
                rows.append(row)
                print(json.dumps(row), flush=True)
            del index
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"n": args.n, "dim": args.dim, "queries": args.queries, "threads": args.threads,
                   "noise": args.noise, "centres": args.centres, "rows": rows},
                  handle, indent=2)
    print("\n| index | build params | search | build | index size | ms/query | recall@10 vs flat |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items() if k != "train_size") or "-"
        search = ", ".join(f"{k}={v}" for k, v in row["search"].items()) or "exact"
        print(f"| {row['kind']} | {params} | {search} | {row['build_s']} s | {row['index_mb']} MB | "
              f"{row['ms_per_query']} | {row['recall_at_10_vs_flat']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
