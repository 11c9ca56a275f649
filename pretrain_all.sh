#!/bin/sh
# Pretrain every model of the ensemble, each into RUN/pretrain/<model>/.
#
#   sh pretrain_all.sh
#   DATA=data RUN=runs MODELS="mix uniter" PRESET=small EXTRA="batch_size=64 epochs=2" sh pretrain_all.sh
#
# DATA    data directory in the official layout (default: data)
# RUN     run directory (default: runs)
# MODELS  models to pretrain (default: the six ensemble variants)
# PRESET  model size preset tiny|small|full|large (default: full)
# EXTRA   key=value overrides passed to every run (list them: python -m train.pretrain --list-keys)
# JOBS    runs at once (default: 1); with more, the models run in groups of JOBS, each run's output in
#         RUN/logs/pretrain_<model>.log, printed when the group ends (see finetune_all.sh)
# TF_CPU_ALLOCATOR_USE_BFC  TensorFlow's pooling host allocator (default here: true; about a
#         third faster on 2 CPU cores, the same weights, and a run killed and resumed still bit-identical;
#         `python -m train.*` alone keeps TensorFlow's default; docs/benchmarks.md, "The host memory
#         allocator")
# PYTHON  interpreter (default: .venv/bin/python if it exists, else python)
# Rerunning resumes unfinished runs from their last checkpoint; finished runs are left as they are.
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
MODELS=${MODELS:-"mix mix_asl mix_roformer uniter uniter_asl uniter_roformer"}
PRESET=${PRESET:-full}
EXTRA=${EXTRA:-}
. "$HERE/train/jobs.sh"
jobs_init pretrain_all.sh "$RUN/logs"
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
# glibc malloc arenas otherwise let a long input pipeline's memory creep (docs/benchmarks.md, Scale)
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# TensorFlow's pooling host allocator: about a third faster on 2 CPU cores, the same weights
TF_CPU_ALLOCATOR_USE_BFC=${TF_CPU_ALLOCATOR_USE_BFC:-true}
export TF_CPU_ALLOCATOR_USE_BFC

for model in $MODELS; do
    jobs_room
    echo "== pretrain $model -> $RUN/pretrain/$model"
    # shellcheck disable=SC2086  # EXTRA is a list of key=value words
    jobs_run "pretrain_$model" "$PYTHON" -m train.pretrain --model "$model" --data "$DATA" \
        --out "$RUN/pretrain/$model" --preset "$PRESET" $EXTRA
done
jobs_wait
