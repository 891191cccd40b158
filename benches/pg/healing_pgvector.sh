#!/usr/bin/env bash
# Self-healing on pgvector indexes at size (a command, not CI): a throwaway cluster that preloads ruvector_dag,
# N random D-dimensional vectors (seeded), and
#   - HNSW with the users' ef_search at LIMIT (10): probe time and recall@10 fresh, after deleting half the rows
#     without VACUUM, and after the worker's repair (auto mode), with the repair's duration;
#   - IVFFlat (lists = sqrt(N)) fed N more rows from a shifted distribution: buffers per probe and imbalance before
#     and after the worker's REINDEX INDEX CONCURRENTLY, with its duration;
#   - time from an injected latency shift (one query class 25x slower) to its row in ruvector.dag_anomalies,
#     REPEATS times (median).
# Detector and orchestrator costs per observation/cycle: `cargo bench -p ruvector-dag-benches --bench healing`.
# Needs root; builds the extension in release mode.
#   sudo benches/pg/healing_pgvector.sh [N (100000)] [D (64)] [REPEATS (5)]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
D=${2:-64}
REPEATS=${3:-5}
.ci/setup >/dev/null
(cd host-postgres && cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null)
PORT=${PORT:-55496}
. host-postgres/tests/throwaway_cluster.sh
cluster_start -c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres \
    -c shared_buffers=1GB -c maintenance_work_mem=1GB -c ruvector.healing_interval_ms=86400000 \
    -c ruvector.healing_probe_budget_ms=600000 -c ruvector.dag_replay_budget=0
sql() { as_pg "$BIN/psql" -X -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -d postgres -A -t -q "$@"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
USERS="SET hnsw.ef_search = 10;"
health() { sql -c "$USERS SELECT $2 FROM ruvector.dag_index_health('$1')"; }
await_repair() {
    local state=""
    for _ in $(seq 1 7200); do
        state=$(sql -c "SELECT status FROM ruvector.dag_repairs WHERE target = '$1' ORDER BY repair_id DESC LIMIT 1")
        [[ $state == verified || $state == unchanged || $state == failed ]] && return 0
        sleep 0.5
    done
    echo "repair of $1 did not finish" >&2
    exit 1
}
vectors() { # FROM TO SHIFT
    echo "SELECT g, (SELECT array_agg(random() + $3)::vector($D) FROM generate_series(1, $D) WHERE g > 0)
          FROM generate_series($1, $2) g"
}
sql -c "CREATE EXTENSION ruvector_dag; CREATE EXTENSION vector" >/dev/null
echo "healing_pgvector: N=$N D=$D, $(nproc) CPUs, PostgreSQL $(sql -c 'SHOW server_version')"

sql -c "SELECT setseed(0.42); CREATE TABLE items (id int PRIMARY KEY, v vector($D)) WITH (autovacuum_enabled = false);
        INSERT INTO items $(vectors 1 "$N" 0)" >/dev/null
t=$(date +%s%N)
sql -c "CREATE INDEX items_hnsw ON items USING hnsw (v vector_l2_ops); ANALYZE items"
echo "HNSW build: $(ms_since "$t") ms"
t=$(date +%s%N)
r0=$(health items_hnsw "round(recall_estimate::numeric, 3)")
echo "HNSW fresh: recall@10 $r0 (ef_search 10; probe of 20 queries: $(ms_since "$t") ms)"
sql -c "DELETE FROM items WHERE id % 2 = 0"
t=$(date +%s%N)
echo "HNSW after deleting half the rows: $(health items_hnsw "'recall@10 ' || round(recall_estimate::numeric, 3) || ', under-returning probes ' || under_returning || ', ' || recommended_action") (probe: $(ms_since "$t") ms)"
sql -c "ALTER SYSTEM SET ruvector.healing_mode = auto" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
sql -c "$USERS SELECT count(*) FROM ruvector.dag_auto_repair()" >/dev/null
await_repair items_hnsw
echo "HNSW repair: $(sql -c "SELECT repair_type || ' ' || status || ': recall@10 ' || round(recall_before::numeric, 3) || ' -> ' || round(recall_after::numeric, 3) || ' in ' || round(duration_ms) || ' ms' FROM ruvector.dag_repairs WHERE target = 'items_hnsw' ORDER BY repair_id DESC LIMIT 1")"

LISTS=$(awk -v n="$N" 'BEGIN { printf "%d", sqrt(n) }')
sql -c "SELECT setseed(0.43); CREATE TABLE iv (id int PRIMARY KEY, v vector($D)) WITH (autovacuum_enabled = false);
        INSERT INTO iv $(vectors 1 "$N" 0);
        CREATE INDEX iv_ivf ON iv USING ivfflat (v vector_l2_ops) WITH (lists = $LISTS); ANALYZE iv" >/dev/null
echo "IVFFlat fresh (lists $LISTS, probes 1): $(health iv_ivf "round(buffers_per_probe::numeric, 1) || ' buffers per probe, imbalance ' || round(imbalance::numeric, 2)")"
sql -c "INSERT INTO iv $(vectors $((N + 1)) $((2 * N)) 3); ANALYZE iv"
echo "IVFFlat after N shifted rows: $(health iv_ivf "round(buffers_per_probe::numeric, 1) || ' buffers per probe, imbalance ' || round(imbalance::numeric, 2) || ', ' || status")"
sql -c "$USERS SELECT count(*) FROM ruvector.dag_auto_repair()" >/dev/null
await_repair iv_ivf
echo "IVFFlat repair: $(sql -c "SELECT repair_type || ' ' || status || ': ' || round(buffers_before::numeric, 1) || ' -> ' || round(buffers_after::numeric, 1) || ' buffers per probe, imbalance ' || round(imbalance_before::numeric, 2) || ' -> ' || round(imbalance_after::numeric, 2) || ' in ' || round(duration_ms) || ' ms' FROM ruvector.dag_repairs WHERE target = 'iv_ivf' ORDER BY repair_id DESC LIMIT 1")"

delays=()
for r in $(seq 1 "$REPEATS"); do
    # A class of its own per repeat (the column alias is part of the query id; the constant is normalised away).
    before=$(sql -c "SELECT count(*) FROM ruvector.dag_anomalies")
    for _ in $(seq 1 40); do echo "SELECT pg_sleep(0.002) AS r$r;"; done | sql >/dev/null
    for _ in $(seq 1 5); do echo "SELECT pg_sleep(0.05) AS r$r;"; done | sql >/dev/null
    t=$(date +%s%N)
    until [[ $(sql -c "SELECT count(*) FROM ruvector.dag_anomalies") -gt $before ]]; do sleep 0.02; done
    delays+=("$(ms_since "$t")")
done
median=$(printf '%s\n' "${delays[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
echo "latency shift to dag_anomalies row: median $median ms over $REPEATS (${delays[*]})"
