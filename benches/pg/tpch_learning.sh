#!/usr/bin/env bash
# Learning efficacy on TPC-H (a command, not CI): a throwaway cluster that preloads ruvector_dag, TPC-H at scale
# factor SF, ROUNDS rounds of the 22 queries with learning on (dag_learn_now after each: background replays within
# a minute per call), then COMPARE interleaved runs of every query with steering off (PostgreSQL's own plan) and
# on, server-side time. Prints the per-query table, total time, speedup distribution, regressions > 1.2x and the
# planning share. Then the held-out test set the same way, TEST interleaved runs each: the templates with other
# values of the specification's substitution domains, which the learner never executed, for the classes it steers.
# Needs root; builds the extension in release mode.
#   sudo benches/pg/tpch_learning.sh [SF (1)] [ROUNDS (6)] [COMPARE (3)] [TEST (COMPARE)]
set -euo pipefail
cd "$(dirname "$0")/../.."
SF=${1:-1}
ROUNDS=${2:-6}
COMPARE=${3:-3}
TEST=${4:-$COMPARE}
PORT=${PORT:-55493}
. benches/pg/bench_common.sh
bench_cluster 4GB 16GB
harness --scale "$SF" --rounds "$ROUNDS" --compare "$COMPARE" --test "$TEST" --svg "${OUT:-target/tpch-sf$SF-learning-curve.svg}"
