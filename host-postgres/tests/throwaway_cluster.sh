# Sourced by the PostgreSQL test and bench scripts: a throwaway PostgreSQL 15 cluster owned by `postgres`, in a
# temporary directory that is removed (server stopped) at exit. Needs root. Set PORT before sourcing.
# Defines BIN (PG_BIN, default the system PostgreSQL 15), WORK, as_pg CMD..., cluster_start [SERVER OPTIONS...]
# (no TCP: the socket is in $WORK) and cluster_stop.
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
WORK=$(mktemp -d /tmp/rvcluster.XXXXXX)
chown postgres "$WORK"
as_pg() { runuser -u postgres -- "$@"; }
trap 'as_pg "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
as_pg "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
cluster_start() {
    as_pg "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w -o "-p $PORT -k $WORK -c listen_addresses='' $*" start >/dev/null
}
cluster_stop() { as_pg "$BIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null; }
