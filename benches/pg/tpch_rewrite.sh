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
FLAGS=()
[[ $INDEXES == none ]] && FLAGS+=(--no-secondary-indexes)
PORT=${PORT:-55495}
. benches/pg/bench_common.sh
bench_cluster 2GB 8GB
harness --scale "$SF" --rewrite --timeout "$TIMEOUT" "${FLAGS[@]}"
