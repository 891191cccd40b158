#!/usr/bin/env bash
# Cost of dag_analyze_plan beyond planning, on a ~100-operator plan (UNION ALL of 25 two-table hash joins).
# Runs N calls of `EXPLAIN (FORMAT JSON)` and of `ruvector.dag_analyze_plan` on the same text in one backend and
# prints the mean time per call of each and the difference.
# Usage (as root, after `cargo pgrx install --release` of host-postgres): benches/pg/analyze_plan.sh [N=200]
set -euo pipefail
N=${1:-200}
PORT=${PORT:-55444}
. "$(dirname "$0")/../../host-postgres/tests/throwaway_cluster.sh"
cluster_start -c jit=off
psql_q() { as_pg "$BIN/psql" -X -q -h "$WORK" -p "$PORT" -d postgres "$@"; }
psql_q -c "CREATE EXTENSION ruvector_dag; CREATE TABLE a (id int PRIMARY KEY, v int); CREATE TABLE b (id int PRIMARY KEY, w int);
           INSERT INTO a SELECT g, g % 100 FROM generate_series(1, 10000) g; INSERT INTO b SELECT g, g % 7 FROM generate_series(1, 10000) g; ANALYZE"
query=$(for i in $(seq 1 25); do printf 'SELECT a.v, b.w FROM a JOIN b ON b.id = a.v + %d WHERE a.id > %d' "$i" "$i"; if ((i < 25)); then printf ' UNION ALL '; fi; done)
nodes=$(psql_q -A -t -c "SELECT count(*) FROM ruvector.dag_analyze_plan(\$q\$$query\$q\$)")
cat >"$WORK/bench.sql" <<SQL
\\timing on
DO \$\$ DECLARE j json; BEGIN FOR i IN 1..$N LOOP EXECUTE 'EXPLAIN (FORMAT JSON) $query' INTO j; END LOOP; END \$\$;
DO \$\$ BEGIN FOR i IN 1..$N LOOP PERFORM * FROM ruvector.dag_analyze_plan(\$q\$$query\$q\$); END LOOP; END \$\$;
DO \$\$ DECLARE j json; BEGIN FOR i IN 1..$N LOOP EXECUTE 'EXPLAIN (FORMAT JSON) $query' INTO j; END LOOP; END \$\$;
DO \$\$ BEGIN FOR i IN 1..$N LOOP PERFORM * FROM ruvector.dag_analyze_plan(\$q\$$query\$q\$); END LOOP; END \$\$;
SQL
chown postgres "$WORK/bench.sql"
psql_q -f "$WORK/bench.sql" | awk -v n="$N" -v nodes="$nodes" '/^Time/ { t[++k] = $2 } END {
    e = (t[1] + t[3]) / 2 / n; a = (t[2] + t[4]) / 2 / n;
    printf "plan of %d operators: EXPLAIN (FORMAT JSON) %.3f ms/call, dag_analyze_plan %.3f ms/call, beyond planning %.3f ms\n", nodes, e, a, a - e }'
