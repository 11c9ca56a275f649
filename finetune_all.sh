#!/bin/sh
# Finetune every model on every fold, each into RUN/finetune/<model>/fold_XX/.
#
#   sh finetune_all.sh
#   DATA=data RUN=runs MODELS="mix uniter" FOLDS="0 1" EXTRA="epochs=3 finetune_losses=mse+0.5*kl+tag" sh finetune_all.sh
#
# DATA       data directory (default: data); the fold shards are FOLDS_DIR (default: DATA/folds)
# RUN        run directory (default: runs)
# MODELS     models to finetune (default: the six ensemble variants)
# FOLDS      folds to run (default: every fold of FOLDS_DIR/folds.json)
# PRESET     model size preset for models without a pretrain run (default: full)
# EXTRA      key=value overrides passed to every run (list them: python -m train.finetune --list-keys)
# WIDE_GATE  choose (default): after a model's folds, its wide-path gate is chosen on the validation
#            pairs of all its finished folds (python -m train.wide_gate; models without a wide path are
#            skipped); trained: keep the trained gates (removes an earlier choice)
# JOBS       runs at once (default: 1); with more, a model's folds run in groups of JOBS, each run's
#            output in RUN/logs/finetune_<model>_fold_XX.log, printed when the group ends (on 2 CPU cores
#            JOBS=2 finished two demo folds 21% sooner, the same weights; docs/benchmarks.md, "Two runs at
#            once"); TF_FORCE_GPU_ALLOW_GROWTH defaults to true then, so that runs can share a GPU
# TF_CPU_ALLOCATOR_USE_BFC  TensorFlow's pooling host allocator (default here: true; about a
#            third faster on 2 CPU cores, the same weights, and a run killed and resumed still bit-identical;
#            `python -m train.*` alone keeps TensorFlow's default; docs/benchmarks.md, "The host memory
#            allocator")
# PYTHON     interpreter (default: .venv/bin/python if it exists, else python)
# A model with a finished pretrain run (RUN/pretrain/<model>/final) starts from it (--pretrained).
# An existing DATA reaches every run as data_dir: the wide path's unlabelled videos (DATA/pointwise)
# and, with model.wide.transductive, the test videos (DATA/test_a); else the pretrain run's data.
# Rerunning resumes unfinished runs from their last checkpoint.
set -euf  # -f: no globbing, EXTRA may hold "*" (mse+0.5*kl)
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
FOLDS_DIR=${FOLDS_DIR:-$DATA/folds}
MODELS=${MODELS:-"mix mix_asl mix_roformer uniter uniter_asl uniter_roformer"}
PRESET=${PRESET:-full}
EXTRA=${EXTRA:-}
WIDE_GATE=${WIDE_GATE:-choose}
case "$WIDE_GATE" in
    choose|trained) ;;
    *) echo "finetune_all.sh: WIDE_GATE must be choose or trained, got '$WIDE_GATE'" >&2; exit 2 ;;
esac
. "$HERE/train/jobs.sh"
jobs_init finetune_all.sh "$RUN/logs"
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
# glibc malloc arenas otherwise let a long input pipeline's memory creep (docs/benchmarks.md, Scale)
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# TensorFlow's pooling host allocator: about a third faster on 2 CPU cores, the same weights
TF_CPU_ALLOCATOR_USE_BFC=${TF_CPU_ALLOCATOR_USE_BFC:-true}
export TF_CPU_ALLOCATOR_USE_BFC

if [ -z "${FOLDS:-}" ]; then
    if [ ! -f "$FOLDS_DIR/folds.json" ]; then
        echo "finetune_all.sh: $FOLDS_DIR/folds.json not found (write the fold shards first: write_tfrecord.py)" >&2
        exit 1
    fi
    FOLDS=$("$PYTHON" -c "import json, sys; print(*range(json.load(open(sys.argv[1]))['num_folds']))" \
        "$FOLDS_DIR/folds.json")
fi

for model in $MODELS; do
    for fold in $FOLDS; do
        out="$RUN/finetune/$model/fold_$(printf %02d "$fold")"
        if [ -d "$RUN/pretrain/$model/final" ]; then
            set -- --pretrained "$RUN/pretrain/$model"
        else
            set -- --preset "$PRESET"
        fi
        if [ -d "$DATA" ]; then set -- "$@" "data_dir=$(cd "$DATA" && pwd)"; fi
        jobs_room
        echo "== finetune $model fold $fold -> $out"
        # shellcheck disable=SC2086  # EXTRA is a list of key=value words
        jobs_run "finetune_${model}_fold_$(printf %02d "$fold")" \
            "$PYTHON" -m train.finetune --model "$model" --folds-dir "$FOLDS_DIR" --fold "$fold" --out "$out" \
            "$@" $EXTRA
    done
    jobs_wait
    if [ "$WIDE_GATE" = choose ]; then
        "$PYTHON" -m train.wide_gate "$RUN/finetune/$model" --skip-without-wide
    else
        "$PYTHON" -m train.wide_gate "$RUN/finetune/$model" --reset
    fi
done
