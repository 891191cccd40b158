#!/usr/bin/env bash
# Capture overhead of ruvector_dag under pgbench -S (select-only), with vs without the library preloaded.
#
# Usage (as root, after `cargo pgrx install --release` of host-postgres into the system PostgreSQL 15):
#   benches/pg/pgbench_overhead.sh [SECONDS=60] [ROUNDS=3] [SCALE=10] [CLIENTS=2]
# Runs ROUNDS alternating triples (not loaded; loaded with capture on; loaded with capture off) on one
# throwaway cluster and prints the TPS of each run, the medians, their ratios and the median of the per-round
# ratios (robust to the machine's drift). The cluster is removed at exit.
set -euo pipefail
SECONDS_PER_RUN=${1:-60}
ROUNDS=${2:-3}
SCALE=${3:-10}
CLIENTS=${4:-2}
PORT=${PORT:-55440}
. "$(dirname "$0")/../../host-postgres/tests/throwaway_cluster.sh"

start() { cluster_start "-c shared_preload_libraries='$1' -c jit=off ${2:-}"; }
stop() { cluster_stop; }
tps() {
    as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -S -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -n postgres 2>/dev/null \
        | awk '/^tps/ {print $3; exit}'
}

start ""
as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -i -s "$SCALE" -q postgres >/dev/null 2>&1
stop

without=(); with=(); off=()
for r in $(seq 1 "$ROUNDS"); do
    start "";             without+=("$(tps)"); stop
    start "ruvector_dag"; with+=("$(tps)");    stop
    start "ruvector_dag" "-c ruvector.neural_dag_enabled=off"; off+=("$(tps)"); stop
    echo "round $r: without ${without[-1]} tps, with ruvector_dag ${with[-1]} tps, preloaded with capture off ${off[-1]} tps"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mw=$(median "${without[@]}"); mm=$(median "${with[@]}")
mo=$(median "${off[@]}")
paired=(); for i in "${!with[@]}"; do paired+=("$(awk -v a="${with[$i]}" -v b="${without[$i]}" 'BEGIN {printf "%.4f", a/b}')"); done
echo "paired ratios (with/without, per round): ${paired[*]}; median $(median "${paired[@]}")"
echo "median without: $mw tps; median with capture: $mm tps (ratio $(awk -v a="$mm" -v b="$mw" 'BEGIN {printf "%.4f", a/b}')); preloaded, capture off: $mo tps (ratio $(awk -v a="$mo" -v b="$mw" 'BEGIN {printf "%.4f", a/b}'))"
