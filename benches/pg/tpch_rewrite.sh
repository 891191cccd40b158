#!/usr/bin/env bash
# What the decorrelating rewrite makes of TPC-H (a command, not CI): a throwaway cluster that preloads
# ruvector_dag, TPC-H at scale factor SF with primary keys only (INDEXES=none, the default) or also the usual
# secondary indexes (INDEXES=keys); ruvector.dag_rewrite_report for each of the 22 queries: status (verified =
# cheaper plan, faster run, equal results), plan costs and server-side run times before and after (each run capped
# at TIMEOUT seconds). Needs root; builds the extension in release mode.
#   sudo benches/pg/tpch_rewrite.sh [SF (0.1)] [TIMEOUT (120)] [INDEXES (none|keys)]
set -euo pipefail
cd "$(dirname "$0")/../.."
SF=${1:-0.1}
TIMEOUT=${2:-120}
INDEXES=${3:-none}
.ci/setup >/dev/null
(cd host-postgres && cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null)
cargo build --release -q -p ruvector-dag-tpch
FLAGS=()
[[ $INDEXES == none ]] && FLAGS+=(--no-secondary-indexes)
PORT=${PORT:-55495}
. host-postgres/tests/throwaway_cluster.sh
cluster_start -c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres \
    -c shared_buffers=2GB -c work_mem=64MB -c effective_cache_size=8GB -c max_parallel_workers_per_gather=0
target/release/ruvector-dag-tpch --host "$WORK" --port "$PORT" --user postgres --scale "$SF" \
    --rewrite --timeout "$TIMEOUT" "${FLAGS[@]}"
