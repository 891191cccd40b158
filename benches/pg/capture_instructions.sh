#!/usr/bin/env bash
# Exact per-execution cost of capture, in instructions (valgrind callgrind; repeatable on a noisy machine).
#
# A single-user backend (preloading ruvector_dag) runs N indexed lookups, once with ruvector.neural_dag_enabled =
# off and once on; a third run with 2N lookups (off) gives the baseline cost per lookup. Prints instructions per
# execution for both and the relative capture cost. MODE=plpgsql (default) runs them in a PL/pgSQL loop (a cached
# plan: the executor hooks only); MODE=simple sends N separate statements, as pgbench -S does (parse, plan with
# the planner hook, execute).
# Usage (as root, after `cargo pgrx install --release` of host-postgres; note that `cargo pgrx test` replaces the
# installed library with a debug build): benches/pg/capture_instructions.sh [N=20000]
set -euo pipefail
N=${1:-20000}
PORT=${PORT:-55443}
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
. "$(dirname "$0")/../../host-postgres/tests/throwaway_cluster.sh"

cluster_start
as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -i -s 1 -q postgres >/dev/null 2>&1
cluster_stop

run() { # MODE COUNT -> total instructions of the whole single-user session
    local sql="$WORK/in-$1-$2.sql"
    if [[ ${MODE:-plpgsql} == simple ]]; then
        { echo "SET ruvector.neural_dag_enabled = $1;"
          for i in $(seq 1 "$2"); do echo "SELECT abalance FROM pgbench_accounts WHERE aid = $(((i * 7919) % 100000 + 1));"; done
        } >"$sql"
    else
        echo "SET ruvector.neural_dag_enabled = $1; DO \$\$ BEGIN FOR i IN 1..$2 LOOP PERFORM abalance FROM pgbench_accounts WHERE aid = (i % 100000) + 1; END LOOP; END \$\$;" >"$sql"
    fi
    chown postgres "$sql"
    (cd "$WORK" && runuser -u postgres -- valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
        "$BIN/postgres" --single -D "$WORK/data" -c shared_preload_libraries=ruvector_dag -c jit=off postgres \
        <"$sql" >/dev/null 2>&1) || true
    awk '/^(summary|totals):/ {print $2; exit}' "$WORK/cg.out"
}
off=$(run off "$N"); on=$(run on "$N"); off2=$(run off $((2 * N)))
echo "session totals: off(N) $off, on(N) $on, off(2N) $off2 instructions"
awk -v n="$N" -v off="$off" -v on="$on" -v off2="$off2" 'BEGIN {
    base = (off2 - off) / n; cost = (on - off) / n
    printf "per execution: %.0f instructions without capture, %.0f more with capture (%.1f%%)\n", base, cost, 100 * cost / base }'
