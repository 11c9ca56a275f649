"""Write the cross-validation fold shards of the pairwise data (one shard per fold).

    python write_tfrecord.py --data DIR [--out DIR/folds] [--folds 11] [--seed 42]
                             [--split pairs|components] [--pairwise FILE ...] [--labels FILE]
                             [--skip-corrupt]

Reads DIR/pairwise/pairwise.tfrecords (or its shards DIR/pairwise/pairwise_*.tfrecords, as
python -m tfrecord_tools.ingest writes them for large collections) and DIR/pairwise/label.tsv (or
the explicit --pairwise / --labels paths) and writes fold_00.tfrecords ... plus folds.json (written
last: its presence means a complete set). Fold k trains on every shard but fold_kk.tfrecords and
validates on that one.

--split pairs (default) cuts a seeded permutation of the label lines into near-equal folds; a video
can then be in training and validation pairs. --split components keeps each connected component of
the label graph in one fold (leak-free), but on the official labels the largest component holds
63% of the pairs, so one fold is about 7x the mean size: folds.json reports the imbalance.
Bad input (a corrupt or truncated file, a record that breaks the layout, an empty file, a bad
label line or an id missing from the pairwise files) stops the run with an error naming the file
and record or line, before any shard is written. --skip-corrupt instead leaves out the corrupt or
invalid pairwise records and the label lines of their videos, and reports how many and which
(printed, and under "skip_corrupt" in folds.json). See tfrecord_tools/folds.py.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import time

from tfrecord_tools import cli, layout  # the package sets the environment TensorFlow reads
from tfrecord_tools.locks import LockedError

PROG = "write_tfrecord.py"


def default_pairwise_files(data: str) -> list[str]:
    """DATA/pairwise/pairwise.tfrecords, or the shards pairwise_0, pairwise_1, ... that
    ``python -m tfrecord_tools.ingest`` writes when the pairwise videos fill more than one file."""
    single = os.path.join(data, "pairwise", "pairwise.tfrecords")
    shards = {}
    for path in glob.glob(os.path.join(data, "pairwise", "pairwise_*.tfrecords")):
        match = re.search(r"pairwise_(\d+)\.tfrecords$", path)
        if match:
            shards[int(match.group(1))] = path
    if os.path.exists(single) or not shards:
        return [single]
    return [shards[number] for number in sorted(shards)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    description, _, details = __doc__.partition("\n\n")
    parser = cli.Parser(prog=PROG, description=description, epilog=details,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="data directory with pairwise/pairwise.tfrecords and pairwise/label.tsv")
    parser.add_argument("--out", help="output directory (default: DATA/folds)")
    parser.add_argument("--folds", type=int, default=11, help="number of folds (default 11)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and of the order in each shard")
    parser.add_argument("--split", choices=layout.FOLD_SPLITS, default="pairs",
                        help="pairs: random near-equal folds of label lines; components: keep each connected "
                             "component of the label graph in one fold (no video in two folds)")
    parser.add_argument("--pairwise", nargs="+",
                        help="pairwise TFRecord file(s) (default DATA/pairwise/pairwise.tfrecords, or its "
                             "shards pairwise_*.tfrecords)")
    parser.add_argument("--labels", help="label file (default DATA/pairwise/label.tsv)")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="leave out corrupt/invalid pairwise records and the pairs of their videos, and "
                             "report each one (default: stop at the first bad record)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    if args.data is None and (args.pairwise is None or args.labels is None or args.out is None):
        parser.error("give --data, or all of --pairwise, --labels and --out")
    if args.pairwise is None:
        args.pairwise = default_pairwise_files(args.data)
    if args.labels is None:
        args.labels = layout.label_file(args.data)
    if args.out is None:
        args.out = layout.folds_dir(args.data)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.import_tensorflow(args.verbose)
    from tfrecord_tools import folds

    started = time.perf_counter()
    try:
        info = folds.write_fold_shards(args.pairwise, args.labels, args.out, num_folds=args.folds,
                                       seed=args.seed, split=args.split, progress=not args.quiet,
                                       skip_corrupt=args.skip_corrupt)
    except (ValueError, FileNotFoundError, LockedError) as error:  # DataError is a ValueError
        return cli.report_error(PROG, error)
    elapsed = time.perf_counter() - started
    if args.quiet and "skip_corrupt" in info:  # what was left out is reported even when quiet
        print("\n".join(folds.skip_report(info["skip_corrupt"])), file=sys.stderr)
    if not args.quiet:
        folds.summary(info)
        print(f"wrote {info['num_pairs']} pair records to {args.out} in {elapsed:.1f} s "
              f"({info['num_pairs'] / elapsed:.0f} pairs/s including indexing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
