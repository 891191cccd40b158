#!/usr/bin/env bash
# The learning loop across restarts: what the ruvector_dag_learner worker learned is saved and restored after a
# clean restart, after the worker is terminated, and after it is killed (crash restart of the whole server); a
# server without preload reads the saved state from the table. Needs root and the extension installed for the
# system PostgreSQL 15 (`cargo pgrx install`). Exits non-zero on any failure.
set -euo pipefail
PORT=${PORT:-55446}
. "$(dirname "$0")/throwaway_cluster.sh"
PRELOAD=(-c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres)
cluster_start "${PRELOAD[@]}"
# Checks run with capture off, so they do not become executions the worker learns from.
sql() {
    as_pg env PGOPTIONS="-c ruvector.neural_dag_enabled=off" \
        "$BIN/psql" -X -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -d postgres -A -t -q "$@" 2>&1
}
workload() { as_pg "$BIN/psql" -X -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -d postgres -A -t -q "$@" >/dev/null; }
fail() { echo "learner_restart: $*" >&2; tail -20 "$WORK/log" >&2; exit 1; }
worker_pid() { sql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ruvector_dag_learner'"; }
wait_worker() { # wait_worker [OLD_PID]: until a learner other than OLD_PID runs
    for _ in $(seq 1 300); do
        pid=$(worker_pid 2>/dev/null || true)
        if [[ -n $pid && $pid != "${1:-}" ]]; then echo "$pid"; return 0; fi
        sleep 0.1
    done
    fail "no learner worker after 30 s"
}
learned() { sql -c "SELECT source || '|' || patterns || '|' || executions_learned FROM ruvector.dag_learning_status()"; }
state_md5() { sql -c "SELECT md5(ruvector.dag_export_state())"; }

sql -c "CREATE EXTENSION ruvector_dag" >/dev/null
sql -c "CREATE TABLE t AS SELECT g AS id, g % 97 AS k FROM generate_series(1, 20000) g;
        CREATE TABLE u AS SELECT g AS k, md5(g::text) AS v FROM generate_series(1, 97) g; ANALYZE t; ANALYZE u" >/dev/null
for _ in $(seq 1 8); do
    workload -c "SELECT count(*) FROM t JOIN u USING (k) WHERE t.id < 5000" \
        -c "SELECT k, count(*) FROM t GROUP BY k ORDER BY 2 DESC LIMIT 5" \
        -c "SELECT v FROM u ORDER BY v LIMIT 3"
done
wait_worker >/dev/null
report=$(sql -c "SELECT trajectories_processed || ' ' || saved FROM ruvector.dag_learn_now()")
read -r processed saved <<<"$report"
[[ $processed -ge 24 && $saved == true ]] || fail "dag_learn_now processed $processed executions, saved=$saved"
before=$(learned)
md5=$(state_md5)
IFS='|' read -r source patterns _ <<<"$before"
[[ $source == snapshot* && $patterns -ge 3 ]] || fail "after learning: $before"
rows=$(sql -c "SELECT count(*) FROM ruvector.dag_trajectories")
[[ $rows -ge 24 ]] || fail "only $rows trajectories saved"

# Learning control through the worker: consolidate, reset, import what was exported.
after=$(sql -c "SELECT clusters_after FROM ruvector.dag_consolidate_patterns(2)")
[[ $after -ge 1 && $after -le 2 ]] || fail "consolidating into 2 lists gave $after"
md5=$(state_md5)
sql -c "CREATE TABLE saved AS SELECT ruvector.dag_export_state() AS s" >/dev/null
sql -c "SELECT ruvector.dag_reset_learning(false)" >/dev/null
IFS='|' read -r _ reset_patterns _ <<<"$(learned)"
[[ $reset_patterns == 0 ]] || fail "after dag_reset_learning(false): $(learned)"
[[ $(sql -c "SELECT count(*) FROM ruvector.dag_trajectories") == 0 ]] || fail "trajectories kept after a reset"
imported=$(sql -c "SELECT patterns_imported FROM ruvector.dag_import_state((SELECT s FROM saved))")
[[ $imported == "$patterns" && $(state_md5) == "$md5" ]] || fail "import restored $imported patterns, state $(learned)"
out=$(sql -c "SELECT ruvector.dag_import_state('\\x00'::bytea)" || true)
grep -q "RV004 LEARNING_FAILED: plugin .learning.: learned state: not a ruvector learned-state blob" <<<"$out" || fail "bad import: $out"
echo "learner_restart: consolidate, reset and import of an exported state work through the worker"

# 1. Clean restart: the state comes back from the table.
cluster_stop
cluster_start "${PRELOAD[@]}"
wait_worker >/dev/null
for _ in $(seq 1 50); do [[ $(state_md5) == "$md5" ]] && break; sleep 0.1; done
[[ $(state_md5) == "$md5" ]] || fail "state after restart differs: $(learned) vs $before"
echo "learner_restart: clean restart restored the state ($before)"

# 2. The worker is terminated: the postmaster starts it again and it restores the state.
pid=$(worker_pid)
sql -c "SELECT pg_terminate_backend($pid)" >/dev/null
new=$(wait_worker "$pid")
for _ in $(seq 1 50); do [[ $(state_md5) == "$md5" ]] && break; sleep 0.1; done
[[ $(state_md5) == "$md5" ]] || fail "state after terminate differs: $(learned) vs $before"
echo "learner_restart: terminated worker $pid came back as $new with the state"

# 3. The worker is killed: the whole server restarts (crash recovery) and the state is restored.
kill -9 "$new"
for _ in $(seq 1 100); do sql -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
newer=$(wait_worker "$new")
for _ in $(seq 1 50); do [[ $(state_md5) == "$md5" ]] && break; sleep 0.1; done
[[ $(state_md5) == "$md5" ]] || fail "state after kill -9 differs: $(learned) vs $before"
echo "learner_restart: killed worker $new came back as $newer after crash recovery with the state"

# 4. Without preload the saved state is read from the table.
cluster_stop
cluster_start
out=$(learned)
[[ $out == "saved state|$patterns|"* ]] || fail "without preload: $out, expected saved state with $patterns patterns"
[[ $(state_md5) == "$md5" ]] || fail "state read without preload differs"
n=$(sql -c "SELECT count(*) FROM ruvector.dag_estimate('SELECT v FROM u ORDER BY v LIMIT 3') WHERE neural_estimate IS NOT NULL")
[[ $n -ge 1 ]] || fail "no neural estimate without preload"
echo "learner_restart: without preload the saved state is read from the table"
