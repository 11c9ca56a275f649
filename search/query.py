"""Nearest videos of an indexed video, of new videos, or of a text query.

    python -m search.query --index INDEX_DIR --id VIDEO_ID [--k 20] [--json]
    python -m search.query --index INDEX_DIR --records FILE [FILE ...] --run RUN_DIR|EXPORT_DIR [--k 20] [--json]
    python -m search.query --index INDEX_DIR --text "..." [--text "..."] --run RUN_DIR [--k 20] [--json]

Cosines are of L2-normalised vectors (exact for flat indexes, approximate ranking for ivf/hnsw;
``--nprobe`` / ``--ef-search`` trade speed for recall). ``--records`` embeds new videos with the
model that built the index (checked by its weight fingerprint); ``--text`` needs an index of a
text-aligned video tower (``search.index --records ... --run MIX_RUN --output video_embedding``).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from search.store import SearchError, load_index
from tfrecord_tools.errors import DataError


def format_table(results: list[dict]) -> str:
    lines = []
    for result in results:
        lines.append(f"query {result['query']}")
        lines.append(f"  {'rank':>4}  {'id':<24}  cosine")
        for rank, hit in enumerate(result["neighbours"], start=1):
            lines.append(f"  {rank:>4}  {hit['id']:<24}  {hit['cosine']:.4f}")
    return "\n".join(lines)


def run_query(args) -> list[dict]:
    index = load_index(args.index)
    index.set_search(nprobe=args.nprobe, efSearch=args.ef_search)
    if args.id is not None:
        hits = index.neighbours(index.vector(args.id), args.k, exclude=[args.id], where=f"--id {args.id}")
        return [{"query": args.id, "neighbours": [{"id": i, "cosine": c} for i, c in hits[0]]}]
    if not args.run:
        raise SearchError("--records and --text need --run RUN_DIR (or an export directory) to embed the query")
    from search.encoders import open_encoder

    built = index.meta.get("model") or {}
    encoder = open_encoder(args.run, built.get("output") or "embedding")
    if args.records:
        from tfrecord_tools import reader

        encoder.check_index(index)
        ids, vectors = encoder.embed_records(reader._resolve_files(args.records))
        queries, names, exclude = vectors, ids.tolist(), ids.tolist()
    else:
        encoder.check_index(index, for_text=True)
        queries, names, exclude = encoder.embed_text(args.text, built["output"]), list(args.text), None
    hits = index.neighbours(queries, args.k, exclude=exclude, where=args.run)
    return [{"query": name, "neighbours": [{"id": i, "cosine": c} for i, c in found]}
            for name, found in zip(names, hits)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.query", description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="index directory (python -m search.index)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--id", help="an indexed video id")
    what.add_argument("--records", nargs="+", help="record files of videos to look up (test layout)")
    what.add_argument("--text", action="append", help="a text query (repeatable)")
    parser.add_argument("--run", help="run or export directory that embeds --records / --text")
    parser.add_argument("--k", type=int, default=20, help="neighbours per query (default 20)")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.add_argument("--nprobe", type=int, help="ivf/ivfpq: inverted lists searched")
    parser.add_argument("--ef-search", type=int, help="hnsw: search breadth")
    args = parser.parse_args(argv)
    try:
        if args.k < 1:
            raise SearchError(f"--k must be at least 1, got {args.k}")
        results = run_query(args)
    except (DataError, SearchError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(results, indent=1, ensure_ascii=False) if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
