"""Build a search index over embeddings (faiss, inner product of L2-normalised vectors = cosine).

    python -m search.index --embeddings FILE --out INDEX_DIR [--kind flat|ivf|ivfpq|hnsw] [--run RUN_DIR]
    python -m search.index --records FILE [FILE ...] --run RUN_DIR|EXPORT_DIR --out INDEX_DIR [--output NAME]

FILE is an embeddings ``.npz`` (``infer.embed``), a ``result.zip`` (``ensemble_final.py``) or a run's
fold-averaged embeddings (``RUN/embeddings/<model>/avg/test.npz`` or that directory). ``--run``
with ``--embeddings`` records which model made the vectors (needed later to query with new videos
or text); with ``--records`` the run (or export) embeds the records itself, ``--output`` choosing
the model output (``video_embedding`` for mix_nextvlad's text-aligned video tower).
Parameters: ``--param nlist=1024 --param nprobe=32`` (ivf, ivfpq: also m, nbits, train_size;
hnsw: M, efConstruction, efSearch).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from search.store import KINDS, SearchError, build_index
from search.vectors import memory_vectors, open_vectors
from tfrecord_tools.errors import DataError


def parse_params(items: Sequence[str]) -> dict:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SearchError(f"--param {item!r}: expected key=value")
        try:
            params[key.strip()] = int(value)
        except ValueError:
            raise SearchError(f"--param {item!r}: the value must be an integer") from None
    return params


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.index", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--embeddings", help=".npz, result.zip or a run's fold-averaged embeddings")
    source.add_argument("--records", nargs="+", help="test-layout record files to embed with --run")
    parser.add_argument("--run", help="run or export directory that made (or makes) the vectors")
    parser.add_argument("--output", default="embedding",
                        help="model output to index with --records (default embedding; video_embedding: "
                             "mix_nextvlad's text-aligned video tower)")
    parser.add_argument("--out", required=True, help="index directory to write")
    parser.add_argument("--kind", choices=KINDS, default="flat")
    parser.add_argument("--param", action="append", default=[], help="key=value build/search parameter")
    parser.add_argument("--seed", type=int, default=0, help="seed of the IVF training sample")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing index directory")
    args = parser.parse_args(argv)
    try:
        params = parse_params(args.param)
        model = None
        if args.records:
            if not args.run:
                raise SearchError("--records needs --run RUN_DIR (the model that embeds them)")
            from search.encoders import open_encoder
            from tfrecord_tools import reader

            encoder = open_encoder(args.run, args.output)
            ids, vectors = encoder.embed_records(reader._resolve_files(args.records))
            vectors_source = memory_vectors(ids, vectors, name=",".join(args.records))
            model = encoder.model
        else:
            vectors_source = open_vectors(args.embeddings)
            if args.run:
                from search.encoders import open_encoder

                model = open_encoder(args.run, args.output).model
        meta = build_index(vectors_source, args.out, args.kind, params, model=model, overwrite=args.overwrite,
                           seed=args.seed)
    except (DataError, SearchError, ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{meta['kind']} index of {meta['count']} vectors (dim {meta['dim']}) -> {args.out}  "
          f"params {json.dumps(meta['params'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
