#!/usr/bin/env bash
# The extension without shared_preload_libraries: CREATE EXTENSION loads the library in a backend (no hooks, no
# shared memory); SQL functions must still work and say (NOTICE) that capture is off. Needs root and the
# extension installed for the system PostgreSQL 15 (`cargo pgrx install`). Exits non-zero on any failure.
set -euo pipefail
PORT=${PORT:-55445}
. "$(dirname "$0")/throwaway_cluster.sh"
cluster_start
sql() { as_pg "$BIN/psql" -X -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -d postgres -A -t "$@" 2>&1; }
fail() { echo "no_preload: $*" >&2; exit 1; }

sql -c "CREATE EXTENSION ruvector_dag" >/dev/null || fail "CREATE EXTENSION failed: $(tail -5 "$WORK/log")"
out=$(sql -c "SELECT ruvector.dag_set_enabled(true)")
grep -q "NOTICE:  ruvector_dag is not in shared_preload_libraries" <<<"$out" || fail "no NOTICE about preload: $out"
hooks=$(sql -c "SELECT status FROM ruvector.dag_health_check() WHERE component = 'hooks'")
[[ $hooks == disabled ]] || fail "hooks status is '$hooks', expected disabled"
n=$(sql -c "SELECT count(*) FROM ruvector.dag_analyze_plan('SELECT relname FROM pg_class ORDER BY relname LIMIT 3')")
[[ $n -ge 2 ]] || fail "dag_analyze_plan returned $n rows"
recorded=$(sql -c "SELECT recorded FROM ruvector.dag_trajectory_stats()" | tail -1)
[[ $recorded == 0 ]] || fail "trajectory stats without a ring: $recorded"
if out=$(sql -c "SELECT ruvector.dag_record_trajectory(1, '{\"Node Type\": \"Result\"}'::jsonb, 1.0)"); then
    fail "recording without a ring should fail: $out"
fi
grep -q "RV010" <<<"$out" || fail "expected RV010: $out"
sql -c "SELECT 1" >/dev/null || fail "the server did not survive"
echo "no_preload: the extension works without shared_preload_libraries (capture off, NOTICE given)"
