#!/usr/bin/env bash
# The main demo: a throwaway PostgreSQL 15 cluster (run as user postgres) that preloads ruvector_dag, TPC-H data
# generated in-process (tpchgen), the 22 queries for several rounds with learning on, a table of per-query
# latency (first vs last round) and a learning-curve SVG. Installs what is missing first (.ci/setup). Needs root.
#   sudo examples/tpch/run.sh [SCALE_FACTOR (0.1)] [ROUNDS (5)]
# RUVECTOR_DEBUG=1 uses debug builds (what the test command's smoke run does, to reuse its build).
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE=${1:-0.1}
ROUNDS=${2:-5}
OUT=${OUT:-$PWD/target/tpch-learning-curve.svg}
.ci/setup >/dev/null
if [[ ${RUVECTOR_DEBUG:-0} == 1 ]]; then PROFILE=(); BIN_DIR=target/debug; else PROFILE=(--release); BIN_DIR=target/release; fi
echo "building and installing the extension and the demo (${PROFILE[*]:-debug}) ..." >&2
(cd host-postgres && cargo pgrx install "${PROFILE[@]}" --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null)
cargo build "${PROFILE[@]}" -q -p ruvector-dag-tpch
PORT=${PORT:-55490}
. host-postgres/tests/throwaway_cluster.sh
cluster_start -c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres \
    -c shared_buffers=512MB -c work_mem=32MB -c max_parallel_workers_per_gather=0
mkdir -p "$(dirname "$OUT")"
"$BIN_DIR/ruvector-dag-tpch" --host "$WORK" --port "$PORT" --user postgres --scale "$SCALE" --rounds "$ROUNDS" --svg "$OUT"
