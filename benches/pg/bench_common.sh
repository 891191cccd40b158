# Sourced by the TPC-H and TPC-DS bench scripts, from the repository root, with PORT set: installs the extension
# (release build) into the PostgreSQL 15 at PG_BIN (default the system one; a copy lets tests reinstall the system
# one meanwhile), builds the harness, and defines
#   bench_cluster SHARED_BUFFERS EFFECTIVE_CACHE_SIZE [SERVER OPTIONS...]: a throwaway cluster preloading
#       ruvector_dag, without parallel workers (see host-postgres/tests/throwaway_cluster.sh);
#   harness ARGS...: target/release/ruvector-dag-tpch connected to it.
(cd host-postgres && cargo pgrx install --release --pg-config "${PG_BIN:-/usr/lib/postgresql/15/bin}/pg_config" >/dev/null)
cargo build --release -q -p ruvector-dag-tpch
. host-postgres/tests/throwaway_cluster.sh
bench_cluster() {
    cluster_start -c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres -c shared_buffers="$1" \
        -c work_mem=64MB -c effective_cache_size="$2" -c max_parallel_workers_per_gather=0 "${@:3}"
}
harness() { target/release/ruvector-dag-tpch --host "$WORK" --port "$PORT" --user postgres "$@"; }
