#!/usr/bin/env bash
# The index advisor in auto mode: on a Q20-like correlated subquery that scans 100 000 rows once per outer row
# (and hits statement_timeout every time), the learner worker advises (what-if costing with HypoPG), builds the
# index CONCURRENTLY, validates it on the workload's next executions and keeps it; an index whose table then only
# sees writes is never used and is dropped again at the end of its validation window; extended statistics for a
# misestimated conjunctive filter are created from sampled actual rows and kept once the estimate is fixed. The
# decisions are in ruvector.dag_advisor_actions. Needs root, HypoPG and the extension installed for the system
# PostgreSQL 15. Exits non-zero on any failure; prints the figures.
set -euo pipefail
PORT=${PORT:-55449}
. "$(dirname "$0")/throwaway_cluster.sh"
cluster_start -c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres \
    -c max_parallel_workers_per_gather=0 -c ruvector.advisor_mode=auto -c ruvector.advisor_interval_s=1 \
    -c ruvector.advisor_validation_s=5 -c ruvector.dag_replay_budget=0
psql_as() { as_pg env PGOPTIONS="$1" "$BIN/psql" -X -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -d postgres -A -t -q "${@:2}" 2>&1; }
sql() { psql_as "-c ruvector.neural_dag_enabled=off" "$@"; }  # checks: not captured
workload() { psql_as "" "$@" >/dev/null; }
fail() { echo "advisor_auto: $*" >&2; sql -c "SELECT * FROM ruvector.dag_advisor_actions" >&2 || true; tail -30 "$WORK/log" >&2; exit 1; }
learn() { sql -c "SELECT count(*) FROM ruvector.dag_learn_now()" >/dev/null; }
action() { sql -c "SELECT $2 FROM ruvector.dag_advisor_actions WHERE $1 ORDER BY action_id DESC LIMIT 1"; }
# Waits (bounded) until the advisor's log shows STATE for the action matching WHERE, running learning cycles
# (also while an index builds: the worker builds on a thread of its own and goes on serving).
await() {
    local where=$1 state=$2 now
    for _ in $(seq 1 30); do
        now=$(action "$where" state)
        [[ $now == "$state" ]] && return 0
        learn
        sleep 1
    done
    fail "no action with $where reached state $state (it is '$now')"
}

sql -c "CREATE EXTENSION ruvector_dag; CREATE EXTENSION hypopg" >/dev/null
sql -c "CREATE TABLE ps (partkey int, suppkey int, availqty int);
        CREATE TABLE li (partkey int, suppkey int, shipdate date, quantity numeric);
        INSERT INTO ps SELECT g % 20, (g / 20) % 100, g % 1000 FROM generate_series(0, 299) g;
        INSERT INTO li SELECT g % 20, (g / 20) % 100, date '2020-01-01' + (g % 700), g % 50
          FROM generate_series(0, 99999) g;
        CREATE TABLE w (k int, v int);
        INSERT INTO w SELECT g, g FROM generate_series(1, 200000) g;
        ANALYZE ps; ANALYZE li; ANALYZE w" >/dev/null
Q20="SELECT ps.partkey FROM ps WHERE ps.availqty > (SELECT 0.5 * sum(l.quantity) FROM li l
     WHERE l.partkey = ps.partkey AND l.suppkey = ps.suppkey AND l.shipdate >= date '2021-01-01')"
LOOKUP="SELECT v FROM w WHERE k = 4242"

# The advisor's first round weighs all executions and writes so far (none yet); later rounds weigh what ran since.
learn

# 1. An index that helps is built, validated and kept — for a query that always hits statement_timeout before it
# (its failed executions are captured with their time until the cancel, a lower bound of their latency).
for _ in $(seq 1 10); do
    out=$(psql_as "-c statement_timeout=300" -c "$Q20" || true)
    [[ $out == *"canceling statement due to statement timeout"* ]] || fail "Q20 did not hit the 300 ms timeout: $out"
done
# A long query's snapshot, older than the build's: CREATE INDEX CONCURRENTLY waits for it (beyond the maintenance
# connection's 10 s lock_timeout) and still succeeds once it ends.
psql_as "-c ruvector.neural_dag_enabled=off" -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT count(*) FROM ps" \
    -c "SELECT pg_sleep(600) AS rv_long" -c "COMMIT" >/dev/null 2>&1 &
long=$!
sleep 1
learn
failed=$(sql -c "SELECT count(*) || ' failed executions, ' || round(min(execution_time_ms)::numeric) || ' ms at least'
                 FROM ruvector.dag_trajectories WHERE failed AND execution_time_ms >= 290")
[[ $failed == 10\ * ]] || fail "the timed-out executions were not captured as failed ones: $failed"
echo "advisor_auto: Q20 under statement_timeout = 300ms: $failed"
await "table_name = 'li'" building
sleep 12
[[ $(action "table_name = 'li'" state) == building ]] || fail "the build did not wait for the older snapshot"
sql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600) AS rv_long%'" >/dev/null
wait "$long" || true
await "table_name = 'li'" validating
index=$(action "table_name = 'li'" index_name)
built_s=$(grep -o "index advisor built $index in [0-9.]* s" "$WORK/log" | awk '{print $(NF-1)}')
echo "advisor_auto: built $index in $built_s s (it waited for the older snapshot): $(action "table_name = 'li'" implementation_sql)"
sql -c "SELECT indisvalid FROM pg_index WHERE indexrelid = '$index'::regclass" | grep -q t || fail "$index is not valid"
for _ in $(seq 1 10); do workload -c "$Q20"; done
await "table_name = 'li'" kept
echo "advisor_auto: kept: $(action "table_name = 'li'" "round(before_ms::numeric, 1) || ' ms -> ' || round(after_ms::numeric, 1) || ' ms, p = ' || round(p_value::numeric, 4) || ', ' || index_scans || ' scans: ' || reason")"
[[ $(action "table_name = 'li'" "after_ms < before_ms / 2") == t ]] || fail "the kept index did not halve the latency"

# 2. An index whose table then only sees writes is unused and dropped at the end of its window.
for _ in $(seq 1 10); do workload -c "$LOOKUP"; done
learn
await "table_name = 'w'" validating
windex=$(action "table_name = 'w'" index_name)
echo "advisor_auto: built $windex for the lookup; the workload turns write-only"
for i in $(seq 1 20); do workload -c "UPDATE w SET v = v + 1 WHERE v % 100 = $i"; done
await "table_name = 'w'" reverted
echo "advisor_auto: reverted: $(action "table_name = 'w'" reason)"
for _ in $(seq 1 30); do
    [[ $(sql -c "SELECT to_regclass('$windex') IS NULL") == t ]] && break
    sleep 1
done
[[ $(sql -c "SELECT to_regclass('$windex') IS NULL") == t ]] || fail "$windex still exists 30 s after the revert"
[[ $(sql -c "SELECT to_regclass('$index') IS NOT NULL") == t ]] || fail "the kept index $index was dropped"

# 3. A reverted candidate does not return; the log holds both decisions.
learn
sleep 2
learn
[[ $(sql -c "SELECT count(*) FROM ruvector.dag_advisor_actions WHERE table_name = 'w' AND columns = '{k}'") == 1 ]] \
    || fail "the reverted candidate was built again"
[[ $(sql -c "SELECT string_agg(state, ',' ORDER BY action_id) FROM ruvector.dag_advisor_actions WHERE state IN ('kept', 'reverted')") == kept,reverted ]] \
    || fail "expected one kept and one reverted action"

# 4. Extended statistics: a conjunctive filter on two correlated columns, estimated 20 rows for 2000. With actual rows
#    sampled and no index to build (budget 0), a round creates the statistics the captured misestimate calls for,
#    ANALYZEs, checks the estimate is fixed and keeps them.
sql -c "ALTER SYSTEM SET ruvector.advisor_budget_mb = 0" -c "SELECT pg_reload_conf()" >/dev/null
sql -c "CREATE TABLE c AS SELECT g AS id, g % 100 AS a, g % 100 AS b FROM generate_series(1, 200000) g; ANALYZE c" >/dev/null
CORR="SELECT count(*) FROM c WHERE a = 5 AND b = 5"
sampled() { for _ in $(seq 1 "$1"); do psql_as "-c ruvector.dag_actuals_sample_rate=1" -c "$CORR" >/dev/null; done; }
[[ $(sql -c "EXPLAIN (FORMAT JSON) $CORR" | grep -o '"Plan Rows": [0-9]*' | tail -1 | grep -o '[0-9]*$') -lt 200 ]] ||
    fail "expected the planner to misestimate $CORR"
sampled 10
learn
await "kind = 'statistics'" validating
stats=$(action "kind = 'statistics'" index_name)
echo "advisor_auto: created $stats: $(action "kind = 'statistics'" implementation_sql)"
[[ $(sql -c "SELECT count(*) FROM pg_statistic_ext WHERE stxname = '${stats#*.}'") == 1 ]] || fail "$stats does not exist"
sampled 10
await "kind = 'statistics'" kept
echo "advisor_auto: kept: $(action "kind = 'statistics'" reason)"
rows=$(sql -c "EXPLAIN (FORMAT JSON) $CORR" | grep -o '"Plan Rows": [0-9]*' | tail -1 | grep -o '[0-9]*$')
[[ $rows -ge 500 ]] || fail "with $stats the planner still estimates $rows rows for 2000"
[[ $(action "kind = 'statistics'" "estimated_rows_after >= 500 AND actual_rows = 2000") == t ]] || fail "figures not recorded"
echo "advisor_auto: ok"
