#!/usr/bin/env bash
# What capture costs a pgbench -S transaction, counted in instructions (a command, not CI): this machine's TPS is
# too noisy to see a few percent, instruction counts repeat exactly. The whole server runs under callgrind (each
# backend and the learner worker get their own counts, written when they exit). One session runs T1, another
# server's session T2 of pgbench -S's transaction (`SELECT abalance FROM pgbench_accounts WHERE aid = :aid`,
# simple protocol, aids from a fixed seed); the difference of the two backends' totals divided by T2 - T1 is the
# backend's instructions per transaction without start-up.
# Configurations: the extension not loaded (with and without compute_query_id); preloaded with capture on (the
# defaults: hooks, ring, learner worker, healing observe); and preloaded with capture and query ids off (the hooks'
# entry checks only: what separates pgbench_capture_ab.sh's BASELINE=bare sessions from a server without the
# extension). Needs root, valgrind, and the extension installed (`cargo pgrx install --release`).
#   sudo benches/pg/capture_overhead_callgrind.sh [T1 (2000)] [T2 (6000)] [SCALE (1)]
set -euo pipefail
cd "$(dirname "$0")/../.."
T1=${1:-2000}
T2=${2:-6000}
SCALE=${3:-1}
PORT=${PORT:-55497}
. host-postgres/tests/throwaway_cluster.sh
OUT=$WORK/cg
pg() { as_pg "$BIN/psql" -X -h "$WORK" -p "$PORT" -d postgres -A -t -q "$@"; }

# Total instructions (Ir) of a callgrind output file.
instructions() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

# once CONFIG T SERVER_OPTIONS...: a fresh server under callgrind, T transactions in one session; prints the
# session backend's and the learner worker's total instructions.
once() {
    local config=$1 t=$2
    shift 2
    rm -rf "$OUT" "$WORK/data"
    mkdir -p "$OUT" && chown postgres "$OUT"
    as_pg "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
    # Data and extension first, without callgrind; then the measured server (its learner worker finds the
    # extension installed at start).
    as_pg "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/setup.log" -w -o "-p $PORT -k $WORK -c listen_addresses=''" start >/dev/null
    as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -i -s "$SCALE" -q postgres >/dev/null 2>&1
    [[ $config == preloaded ]] && pg -c "CREATE EXTENSION ruvector_dag" >/dev/null
    as_pg "$BIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null
    as_pg valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" "$BIN/postgres" -D "$WORK/data" -p "$PORT" \
        -k "$WORK" -c listen_addresses='' -c max_parallel_workers_per_gather=0 -c autovacuum=off "$@" \
        >"$WORK/server.log" 2>&1 &
    for _ in $(seq 1 600); do pg -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
    local worker
    worker=$(pg -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ruvector_dag_learner'" | head -1)
    awk -v n="$t" -v rows=$((100000 * SCALE)) 'BEGIN { srand(42); print "SELECT pg_backend_pid();";
        for (i = 0; i < 200 + n; i++) printf "SELECT abalance FROM pgbench_accounts WHERE aid = %d;\n", int(rand() * rows) + 1 }' \
        >"$WORK/tx.sql"
    chmod 644 "$WORK/tx.sql"
    local backend
    pg -f "$WORK/tx.sql" >"$WORK/tx.out"
    backend=$(head -1 "$WORK/tx.out")
    as_pg "$BIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null
    wait
    echo "$(instructions "$OUT/cg.$backend") ${worker:+$(instructions "$OUT/cg.$worker")}"
}

run() {
    local config=$1
    shift
    read -r b1 _ <<<"$(once "$config" "$T1" "$@")"
    read -r b2 _ <<<"$(once "$config" "$T2" "$@")"
    # The learner worker's file came out the same for T1 and T2 here (it does not seem to be flushed at a fast
    # shutdown), so only the backends are reported; the worker runs on its own core budget anyway.
    echo "$config: backend $(((b2 - b1) / (T2 - T1))) instructions per transaction ($b1 for $T1, $b2 for $T2)"
}

run "not loaded"
# What pg_stat_statements users already pay: PostgreSQL's query identifiers computed for every statement (the
# extension's classes are those ids when PostgreSQL computes them, else its own cheaper fingerprint).
run "not loaded, compute_query_id = on" -c compute_query_id=on
run preloaded -c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres
run "preloaded, capture and query ids off" -c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres \
    -c ruvector.neural_dag_enabled=off -c compute_query_id=off
