#!/bin/sh
# Embed the test set and each fold's validation pairs for every finetuned model x fold of a run.
#
#   sh infer_all.sh
#   DATA=data RUN=runs MODELS="mix uniter" FOLDS="0 1" sh infer_all.sh
#
# DATA     data directory (default: data); test records TEST (default: DATA/test_a/*.tfrecords)
# RUN      run directory (default: runs): reads RUN/finetune/<model>/fold_XX/, writes
#          RUN/embeddings/<model>/fold_XX/test.npz and val.npz (val.npz also holds the fold's pairs)
# MODELS   models to embed (default: every model under RUN/finetune)
# FOLDS    folds to embed (default: every fold_XX directory of each model)
# PYTHON   interpreter (default: .venv/bin/python if it exists, else python)
# Existing outputs are kept (pass EXTRA=--overwrite to recompute); files are written atomically.
set -eu
case "${1:-}" in  # settings are environment variables; --help prints the header above
    "") ;;
    -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "$(basename "$0"): error: unexpected argument '$1' (settings are environment variables; see --help)" >&2
       exit 2 ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PYTHON="$HERE/.venv/bin/python"; else PYTHON=python; fi
fi
DATA=${DATA:-data}
RUN=${RUN:-runs}
TEST=${TEST:-"$DATA/test_a/*.tfrecords"}
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"

set -- --run "$RUN" --test "$TEST"
[ -z "${MODELS:-}" ] || set -- "$@" --models $MODELS
[ -z "${FOLDS:-}" ] || set -- "$@" --folds $FOLDS
# shellcheck disable=SC2086
"$PYTHON" -m infer.embed_all "$@" ${EXTRA:-}
