#!/usr/bin/env bash
# What capture costs pgbench -S, counted in instructions (a command, not CI): the machine's TPS is too noisy to
# see a few percent, instruction counts repeat exactly. The whole server runs under callgrind (every backend and
# the learner worker get their own counts); pgbench -S runs once with T1 and once with T2 transactions on one
# connection each, and the difference of the two backends' totals divided by T2 - T1 is the backend's
# instructions per transaction, without connection start-up. The learner worker's instructions over each run
# (callgrind_control dumps between runs) are reported per transaction too. Configurations: the extension not
# loaded, and preloaded with capture on (the defaults: hooks, ring, learner worker, healing observe).
# Needs root, valgrind, and the extension installed (`cargo pgrx install --release`).
#   sudo benches/pg/capture_overhead_callgrind.sh [T1 (2000)] [T2 (6000)] [SCALE (1)]
set -euo pipefail
cd "$(dirname "$0")/../.."
T1=${1:-2000}
T2=${2:-6000}
SCALE=${3:-1}
PORT=${PORT:-55497}
. host-postgres/tests/throwaway_cluster.sh
OUT=$WORK/cg
mkdir -p "$OUT" && chown postgres "$OUT"
pg() { as_pg "$BIN/psql" -X -h "$WORK" -p "$PORT" -d postgres -A -t -q "$@"; }

# Total instructions (Ir) of a callgrind output file (the sum over its dumps).
instructions() { awk '/^summary:/ { s += $2 } END { printf "%.0f\n", s }' "$@"; }

# run CONFIG SERVER_OPTIONS...: the server under callgrind with those options; prints backend and worker
# instructions per transaction.
run() {
    local config=$1
    shift
    rm -rf "$OUT"/* "$WORK/data"
    as_pg "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
    as_pg valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$OUT/cg.%p" \
        "$BIN/postgres" -D "$WORK/data" -p "$PORT" -k "$WORK" -c listen_addresses='' -c max_parallel_workers_per_gather=0 \
        "$@" >"$WORK/server.log" 2>&1 &
    for _ in $(seq 1 600); do pg -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
    as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -i -s "$SCALE" -q postgres >/dev/null 2>&1
    [[ $config == preloaded ]] && pg -c "CREATE EXTENSION ruvector_dag" >/dev/null
    local worker
    worker=$(pg -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ruvector_dag_learner'" | head -1)
    # Warm-up: plans, caches, the first drains.
    as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -n -S -c 1 -t 200 postgres >/dev/null
    local totals=()
    for t in "$T1" "$T2"; do
        [[ -n $worker ]] && as_pg callgrind_control -d "before-$t" "$worker" >/dev/null
        local before_files
        before_files=$(ls "$OUT")
        as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -n -S -c 1 -t "$t" postgres >/dev/null
        # The worker drains every second: give it one to take the run's last executions.
        [[ -n $worker ]] && sleep 1.5 && as_pg callgrind_control -d "after-$t" "$worker" >/dev/null
        # The backend of this run: the callgrind file that appeared during it (it is written when it exits).
        sleep 1
        local backend
        backend=$(comm -13 <(echo "$before_files") <(ls "$OUT") | grep -E '^cg\.[0-9]+$' | head -1)
        totals+=("$(instructions "$OUT/$backend")")
    done
    local per_tx=$(((totals[1] - totals[0]) / (T2 - T1)))
    local worker_per_tx="-"
    if [[ -n $worker ]]; then
        # Dumps are files cg.<pid>.<n>: after-T1 - before-T1 and after-T2 - before-T2, per transaction.
        local dumps=("$OUT"/cg."$worker".*)
        local d=()
        for f in "${dumps[@]}"; do d+=("$(instructions "$f")"); done
        # Each dump holds the instructions since the previous one: the "after" dumps are the runs.
        worker_per_tx=$(((d[1] + d[3]) / (T1 + T2)))
    fi
    as_pg "$BIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    echo "$config: backend ${per_tx} instructions per transaction (totals ${totals[0]} for $T1, ${totals[1]} for $T2), learner worker ${worker_per_tx}"
}

run "not loaded"
run preloaded -c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres
