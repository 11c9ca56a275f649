#!/bin/sh
# The whole pipeline on the built-in synthetic demo data (what `make demo` runs).
#
#   synthetic data -> fold shards -> raw baselines -> pretrain -> finetune (a few folds; then the
#   wide-path gate chosen on their validation pairs)
#   -> embeddings -> ensemble -> RUN/result.zip and the table (+ RUN/ensemble_report.png)
#
# DATA    demo data directory (default: demo_data; generated once, then reused); a directory that
#         already holds a data set in the official layout (pairwise/label.tsv, no synth_meta.json:
#         your own, or python -m bench.foreign_world's) is used as it is
# RUN     run directory (default: demo_runs; rerunning resumes / skips finished work)
# MODELS  models (default: uniter uniter_roformer: character and jieba-word tokens; an ensemble
#         with uniter_roformer exports embed_tokens only, so for a graph that tokenises raw
#         examples use MODELS="uniter cross_modal" or distill the ensemble into one uniter)
# FOLDS   folds to finetune (default: 0 1 of the 11)
# PRESET  model size preset (default: small)
# WORLD   synthetic world of tfrecord_tools.synth (default: demo; see --world there)
# SEED    seed of the synthetic data (default: 0; another seed draws the same world afresh: judge a
#         recipe on several draws, its margins move between them)
# TEST_GRAPH  N > 0: N test videos drawn along a label graph of the labelled pairs' shape (synth
#         --test-graph --test-videos N; default: empty, the size's independent test videos), so that
#         python -m bench.truth_on_test --data DATA RUN scores labelled pairs of unseen videos,
#         near-duplicates included (5000: 5,469 pairs); read only when the data is generated
# RECIPE  key=value overrides for pretraining (model.* keys reach the finetune through the pretrain
#         run's config); default: the robust recipe (title + ASR tokens, frames through a signed
#         square root and standardised, the wide path: the linear-metric baseline in-graph, fitted
#         per fold, with title and ASR read through the tags and the LSA side by side, under the
#         deep model; its mean frame pooled by idf over FRAME_WORDS visual words, its title's rare
#         words matched through RARE_WORDS dimensions);
#         RECIPE=" " runs the published recipes unchanged
# FRAME_WORDS  K > 0: the robust recipe's wide path and the strong baselines (the floor) pool each
#         video's frames by idf over K visual words (infer.frame_words: shots many videos share, such
#         as logos and title cards, count less; fitted without labels); 0: the plain mean frame, for
#         both (default: 64; docs/benchmarks.md, "Frames pooled by idf")
# RARE_WORDS  M > 0: the robust recipe's wide path and the floor match the title's rare words (in at most
#         0.2% of the videos: names, series, places) exactly, through a fixed random projection to M
#         dimensions, weighted as each fold's training pairs prefer (infer.rare_words); 0: off, for both
#         (default: 64; docs/benchmarks.md, "A title's rare words")
# TRAIN_EXTRA  key=value overrides for both pretraining and finetuning (e.g. min_tag_coverage=0.2)
# JOBS    training runs at once (default here: 2: the two models' pretraining, then each model's two
#         folds; each run's output in RUN/logs/, printed when the pair ends; on 2 CPU cores two demo
#         folds finished 21% sooner together, the same weights to the bit; JOBS=1: one after another,
#         with live output; docs/benchmarks.md, "Two runs at once")
# PYTHON  interpreter (default: .venv/bin/python if it exists, else python)
# TF_CPU_ALLOCATOR_USE_BFC  TensorFlow's pooling host allocator (default here and in the stage scripts:
#         true; about a third faster on 2 cores, the same table; `python -m train.*` alone keeps
#         TensorFlow's default, malloc; docs/benchmarks.md, "The host memory allocator")
set -eu
case "${1:-}" in  # settings are environment variables; --help prints the header above
    "") ;;
    -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "$(basename "$0"): error: unexpected argument '$1' (settings are environment variables; see --help)" >&2
       exit 2 ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
export PYTHON
TF_CPU_ALLOCATOR_USE_BFC=${TF_CPU_ALLOCATOR_USE_BFC:-true}
export TF_CPU_ALLOCATOR_USE_BFC
DATA=${DATA:-demo_data}
RUN=${RUN:-demo_runs}
MODELS=${MODELS:-"uniter uniter_roformer"}
FOLDS=${FOLDS:-"0 1"}
PRESET=${PRESET:-small}
WORLD=${WORLD:-demo}
SEED=${SEED:-0}
TEST_GRAPH=${TEST_GRAPH:-}
TRAIN_EXTRA=${TRAIN_EXTRA:-}
FRAME_WORDS=${FRAME_WORDS:-64}
case "$FRAME_WORDS" in
    *[!0-9]*|""|1) echo "$(basename "$0"): error: FRAME_WORDS must be 0 (the plain mean frame) or a number of words >= 2, got '$FRAME_WORDS'" >&2
                   exit 2 ;;
esac
RARE_WORDS=${RARE_WORDS:-64}
case "$RARE_WORDS" in
    *[!0-9]*|"") echo "$(basename "$0"): error: RARE_WORDS must be 0 (off) or a number of dimensions, got '$RARE_WORDS'" >&2
                 exit 2 ;;
esac
RECIPE=${RECIPE:-"model.text_source=title+asr model.title_len=64 model.frames.power=0.5 model.frame_normalization=standardize model.wide.enabled=true model.wide.frame_words=$FRAME_WORDS model.wide.rare_words=$RARE_WORDS"}
JOBS=${JOBS:-2}
export DATA RUN MODELS FOLDS PRESET JOBS
start=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - start ))s] $*"; }

if [ "$WORLD" = demo ]; then world_args=""; else world_args="--world $WORLD"; fi
case "$TEST_GRAPH" in
    "") ;;
    *[!0-9]*|0) echo "$(basename "$0"): error: TEST_GRAPH must be a positive number of test videos, got '$TEST_GRAPH'" >&2
                exit 2 ;;
    *) world_args="$world_args --test-graph --test-videos $TEST_GRAPH" ;;
esac
if [ -f "$DATA/synth_meta.json" ]; then
    step "synthetic data: $DATA (reused)"
elif [ -f "$DATA/pairwise/label.tsv" ]; then  # a data set of your own (or bench.foreign_world's): used as it is
    step "data: $DATA (the official layout, no synth_meta.json: used as it is; WORLD, SEED and TEST_GRAPH do not apply, and the table has no oracle)"
else
    step "synthetic $WORLD data (seed $SEED) -> $DATA"
    "$PYTHON" -m tfrecord_tools.synth --out "$DATA" --size demo --seed "$SEED" $world_args
fi

step "11 fold shards -> $DATA/folds"
[ -f "$DATA/folds/folds.json" ] || "$PYTHON" write_tfrecord.py --data "$DATA" --out "$DATA/folds" --folds 11 --seed 42

step "strong baselines (whitened mean frame, title/ASR LSA, combined, linear metric) on folds $FOLDS -> $RUN/baselines"
# reused only when it holds every fold asked for with these frame and rare words (a new FOLDS, FRAME_WORDS or
# RARE_WORDS reruns it)
"$PYTHON" -c 'import json, sys; c = json.load(open(sys.argv[1])); sys.exit(not (set(sys.argv[4:]) <= set(c["folds"]) and c["config"].get("frame_words", 0) == int(sys.argv[2]) and c["config"].get("rare_words", 0) == int(sys.argv[3])))' \
    "$RUN/baselines/choices.json" "$FRAME_WORDS" "$RARE_WORDS" $FOLDS 2>/dev/null || "$PYTHON" -m infer.baselines --data "$DATA" \
    --folds-dir "$DATA/folds" --out "$RUN/baselines" --folds $FOLDS --frame-words "$FRAME_WORDS" --rare-words "$RARE_WORDS" --quiet

# The demo's text encoders start from random weights (no downloaded checkpoint), so they learn
# with the same rate as the rest instead of the 3e-5 meant for a pretrained BERT.
step "pretrain $MODELS ($PRESET)"
EXTRA="epochs=2 lr_text=5e-4 progress=false $RECIPE $TRAIN_EXTRA" sh pretrain_all.sh

step "finetune $MODELS on folds $FOLDS"
EXTRA="epochs=3 lr_text=2e-4 progress=false $TRAIN_EXTRA" sh finetune_all.sh

step "embed the test set and the validation pairs"
sh infer_all.sh

step "ensemble -> $RUN/result.zip"
# the models only: with the robust recipe each already holds the linear-metric baseline (its wide
# path); with RECIPE=" " add it yourself with --models ...,baseline:linear_metric
members="$(echo $MODELS | tr ' ' ',')"
oracle_args=""  # the oracle column: only generated data knows its truth
for meta in "$DATA/synth_meta.json" "$DATA/foreign_meta.json"; do
    if [ -z "$oracle_args" ] && [ -f "$meta" ]; then oracle_args="--synth-meta $meta"; fi
done
"$PYTHON" ensemble_final.py --run "$RUN" --models "$members" --labels "$DATA/pairwise/label.tsv" --folds-dir "$DATA/folds" \
    --partial-folds $oracle_args --baselines-dir "$RUN/baselines" --png "$RUN/ensemble_report.png"
step "done"
