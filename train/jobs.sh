# Runs at once for pretrain_all.sh and finetune_all.sh (POSIX sh; sourced, not run).
#
#   jobs_init SCRIPT LOGDIR     read JOBS (default 1: every run in the foreground, as before)
#   jobs_room                   wait for the group (jobs_wait) when JOBS runs are already going:
#                               call it before announcing the next run
#   jobs_run NAME COMMAND...    JOBS=1: run COMMAND now; else (after jobs_room) start it in the
#                               background with its output in LOGDIR/NAME.log
#   jobs_wait                   wait for the group, print each run's output in the order the runs
#                               started; if any failed, say which and where its log is, and exit 1
#
# Groups, not a pool: POSIX sh cannot wait for whichever run ends first. The runs of a group must
# not depend on each other (the folds of one model; the models of pretraining). With JOBS > 1,
# TF_FORCE_GPU_ALLOW_GROWTH defaults to true, so that runs sharing a GPU do not each claim all its
# memory at start. An interrupt stops the runs of the group.

jobs_init() {
    JOBS=${JOBS:-1}
    case "$JOBS" in
        ""|*[!0-9]*|0) echo "$1: JOBS must be a positive number of runs at once, got '$JOBS'" >&2; exit 2 ;;
    esac
    _jobs_script=$1
    _jobs_logs=$2
    _jobs_pids=""
    _jobs_names=""
    if [ "$JOBS" -gt 1 ]; then
        TF_FORCE_GPU_ALLOW_GROWTH=${TF_FORCE_GPU_ALLOW_GROWTH:-true}
        export TF_FORCE_GPU_ALLOW_GROWTH
        trap '_jobs_stop' INT TERM
    fi
}

_jobs_stop() {
    # shellcheck disable=SC2086  # a list of process ids
    [ -z "$_jobs_pids" ] || kill $_jobs_pids 2>/dev/null
    echo "$_jobs_script: interrupted; stopped the runs in progress (rerunning resumes them)" >&2
    exit 130
}

jobs_run() {
    _jobs_name=$1
    shift
    if [ "$JOBS" -eq 1 ]; then
        "$@"
        return
    fi
    jobs_room
    mkdir -p "$_jobs_logs"
    "$@" > "$_jobs_logs/$_jobs_name.log" 2>&1 &
    _jobs_pids="$_jobs_pids $!"
    _jobs_names="$_jobs_names $_jobs_name"
}

jobs_room() {
    [ "$JOBS" -gt 1 ] || return 0
    # shellcheck disable=SC2086  # the list of process ids, counted as this function's arguments
    set -- $_jobs_pids
    if [ "$#" -ge "$JOBS" ]; then jobs_wait; fi
}

jobs_wait() {
    [ "$JOBS" -gt 1 ] && [ -n "$_jobs_pids" ] || return 0
    _jobs_failed=""
    # shellcheck disable=SC2086  # the list of names, one per process id, in the same order
    set -- $_jobs_names
    for _jobs_pid in $_jobs_pids; do
        if wait "$_jobs_pid"; then _jobs_status=0; else _jobs_status=$?; fi
        cat "$_jobs_logs/$1.log"
        if [ "$_jobs_status" -ne 0 ]; then
            _jobs_failed="$_jobs_failed $1"
            echo "$_jobs_script: $1 failed (exit status $_jobs_status); its output: $_jobs_logs/$1.log" >&2
        fi
        shift
    done
    _jobs_pids=""
    _jobs_names=""
    if [ -n "$_jobs_failed" ]; then
        echo "$_jobs_script: failed:$_jobs_failed" >&2
        exit 1
    fi
}
