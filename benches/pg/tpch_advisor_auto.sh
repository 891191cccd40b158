#!/usr/bin/env bash
# What the index advisor's auto mode brings on TPC-H on its own (a command, not CI): a throwaway cluster that
# preloads ruvector_dag, TPC-H at scale factor SF with primary keys only (INDEXES=none, the default) or also the
# usual secondary indexes (INDEXES=keys); each query RUNS times as PostgreSQL runs it (median, server-side time,
# TIMEOUT seconds cap), then ruvector.advisor_mode = auto and rounds of the 22 queries until the learner worker has
# nothing left to build or judge (advisor rounds every INTERVAL seconds, validation windows of VALIDATION seconds,
# at most MAX_ROUNDS rounds; learning cycles every CYCLE_MS, default 10 s), then each query RUNS times again. Prints what the worker did, the time to converge,
# the per-query table, totals, regressions > 1.2x and the index storage added. Needs root; release build.
#   sudo benches/pg/tpch_advisor_auto.sh [SF (0.1)] [RUNS (3)] [TIMEOUT (120)] [INDEXES (none|keys)] \
#        [INTERVAL (120)] [VALIDATION (900)] [MAX_ROUNDS (60)]
set -euo pipefail
cd "$(dirname "$0")/../.."
SF=${1:-0.1}
RUNS=${2:-3}
TIMEOUT=${3:-120}
INDEXES=${4:-none}
INTERVAL=${5:-120}
VALIDATION=${6:-900}
MAX_ROUNDS=${7:-60}
# The learner's cycle (the advisor takes a step after each; the default is an hour).
CYCLE_MS=${CYCLE_MS:-10000}
.ci/setup >/dev/null
# PG_BIN: another PostgreSQL 15 installation (a relocated copy of the system one, say) to build and run on.
FLAGS=()
[[ $INDEXES == none ]] && FLAGS+=(--no-secondary-indexes)
PORT=${PORT:-55495}
. benches/pg/bench_common.sh
bench_cluster 2GB 8GB \
    -c ruvector.advisor_interval_s="$INTERVAL" -c ruvector.advisor_validation_s="$VALIDATION" \
    -c ruvector.dag_background_interval_ms="$CYCLE_MS"
harness --scale "$SF" --auto "$RUNS" --timeout "$TIMEOUT" --max-rounds "$MAX_ROUNDS" "${FLAGS[@]}"
echo "worker log:" >&2
grep -E 'ruvector_dag_learner: .*(index|statistics|advisor)' "$WORK/log" | tail -40 >&2 || true
