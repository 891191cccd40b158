#!/usr/bin/env bash
# Capture overhead under pgbench -S on ONE server: runs alternate between sessions with capture off and on
# (ruvector.neural_dag_enabled via PGOPTIONS), so restarts and drift between clusters do not enter the ratio;
# odd rounds run off first, even rounds on first, so a drift within a round does not favour either. Prints each
# run, the per-round ratios (on/off) and their median.
# BASELINE=bare makes the "off" sessions also set compute_query_id = off: such a session does what a server
# without the extension does (no query ids, no capture), except for the hooks' entry checks, which
# capture_overhead_callgrind.sh counts ("preloaded, capture and query ids off" against "not loaded"). The ratio is
# then the whole cost of the extension, query ids included, without the ±10 % that separate servers differ by.
# Usage (as root, after `cargo pgrx install --release`): [BASELINE=bare] benches/pg/pgbench_capture_ab.sh [SECONDS=15] [ROUNDS=5]
set -euo pipefail
SECONDS_PER_RUN=${1:-15}
ROUNDS=${2:-5}
PORT=${PORT:-55441}
. "$(dirname "$0")/../../host-postgres/tests/throwaway_cluster.sh"
cluster_start "-c shared_preload_libraries=ruvector_dag -c jit=off"
as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -i -s 10 -q postgres >/dev/null 2>&1
off_options="-c ruvector.neural_dag_enabled=off"
[[ ${BASELINE:-off} == bare ]] && off_options+=" -c compute_query_id=off"
tps() {
    local options="-c ruvector.neural_dag_enabled=on"
    [[ $1 == off ]] && options=$off_options
    as_pg env PGOPTIONS="$options" "$BIN/pgbench" -h "$WORK" -p "$PORT" -S -c 2 -j 2 \
        -T "$SECONDS_PER_RUN" -n postgres 2>/dev/null | awk '/^tps/ {print $3; exit}'
}
ratios=()
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2)); then off=$(tps off); on=$(tps on); else on=$(tps on); off=$(tps off); fi
    ratios+=("$(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.4f", a/b}')")
    echo "round $r: capture off $off tps, on $on tps, ratio ${ratios[-1]}"
done
printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {m = NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "median ratio (on/off) %.4f: %.1f%% TPS loss\n", m, 100*(1-m)}'
