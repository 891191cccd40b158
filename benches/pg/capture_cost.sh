#!/usr/bin/env bash
# Per-execution cost of capture, measured inside one backend (no client, no network): a PL/pgSQL loop runs the
# same indexed lookup N times with ruvector.neural_dag_enabled off and on, alternating, and prints the times.
# Usage (as root, after `cargo pgrx install --release` of host-postgres): benches/pg/capture_cost.sh [N=200000]
set -euo pipefail
N=${1:-200000}
PORT=${PORT:-55441}
. "$(dirname "$0")/../../host-postgres/tests/throwaway_cluster.sh"
cluster_start -c shared_preload_libraries=ruvector_dag -c jit=off
as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -i -s 1 -q postgres >/dev/null 2>&1
{
    echo '\timing on'
    for r in 1 2 3; do
        for mode in off on; do
            echo "SET ruvector.neural_dag_enabled = $mode;"
            echo "DO \$\$ BEGIN FOR i IN 1..$N LOOP PERFORM abalance FROM pgbench_accounts WHERE aid = (i % 100000) + 1; END LOOP; END \$\$;"
        done
    done
} >"$WORK/loop.sql"
as_pg "$BIN/psql" -X -q -h "$WORK" -p "$PORT" -d postgres -f "$WORK/loop.sql" 2>&1 \
    | awk -v n="$N" '/^Time/ { if (++k % 2 == 1) next; t = $2; if (++d % 2 == 1) { off = t } else {
          printf "round %d: capture off %.3f us/exec, on %.3f us/exec, capture costs %.3f us/exec\n",
                 d / 2, 1000 * off / n, 1000 * t / n, 1000 * (t - off) / n } }'
