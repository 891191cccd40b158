#!/usr/bin/env bash
# What the index advisor brings on TPC-H (a command, not CI): a throwaway cluster that preloads ruvector_dag,
# TPC-H at scale factor SF with primary keys only (INDEXES=none, the default) or also the usual secondary indexes
# (INDEXES=keys); each query RUNS times (median, server-side time, TIMEOUT seconds cap), then
# ruvector.dag_index_advice over the 22 queries (what-if costing with HypoPG), the advised indexes built, and each
# query RUNS times again. Prints the advice, the per-query table, totals, regressions > 1.2x and storage added.
# Needs root; builds the extension in release mode.
#   sudo benches/pg/tpch_advisor.sh [SF (0.1)] [RUNS (3)] [TIMEOUT (120)] [INDEXES (none|keys)]
set -euo pipefail
cd "$(dirname "$0")/../.."
SF=${1:-0.1}
RUNS=${2:-3}
TIMEOUT=${3:-120}
INDEXES=${4:-none}
.ci/setup >/dev/null
FLAGS=()
[[ $INDEXES == none ]] && FLAGS+=(--no-secondary-indexes)
PORT=${PORT:-55494}
. benches/pg/bench_common.sh
bench_cluster 2GB 8GB
harness --scale "$SF" --advise "$RUNS" --timeout "$TIMEOUT" "${FLAGS[@]}"
