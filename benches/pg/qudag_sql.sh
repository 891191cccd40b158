#!/usr/bin/env bash
# Pattern sharing from SQL (a command, not CI): a throwaway cluster that preloads ruvector_dag (release build) with
# sharing on, 4 validators in another process (`ruvector-node testnet`, release), then
#   - per-call time of qudag_sign / qudag_verify / qudag_encrypt (1 KiB) / qudag_decrypt over N calls each;
#   - proposal-to-finality through SQL: qudag_propose_pattern, then qudag_proposal_status polled every 2 ms, for
#     N proposals (each a fresh random 256-dimension vector at ε = 0.5); sorted milliseconds and the median.
# Needs root.
#   sudo benches/pg/qudag_sql.sh [N (200)]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200}
.ci/setup >/dev/null
(cd host-postgres && cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null)
cargo build --release -q -p ruvector-dag-network --bin ruvector-node
PORT=${PORT:-55496}
. host-postgres/tests/throwaway_cluster.sh
# JIT off: compiling a 200-row query's expressions would cost more than the calls measured.
cluster_start -c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres -c jit=off \
    -c ruvector.dag_qudag_enabled=on -c ruvector.dag_qudag_dp_budget=100000
target/release/ruvector-node testnet --validators 4 --seconds 3600 >"$WORK/testnet" 2>&1 &
TESTNET=$!
trap 'kill $TESTNET 2>/dev/null || true; as_pg "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do [[ $(wc -l <"$WORK/testnet") -ge 4 ]] && break; sleep 0.1; done
sql() { as_pg "$BIN/psql" -X -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -d postgres -A -t -q "$@"; }
sql -c "CREATE EXTENSION ruvector_dag"
sql -c "SELECT connected FROM ruvector.qudag_connect('$(sed -n 1p "$WORK/testnet")')" >/dev/null
sql -c "SELECT new_stake FROM ruvector.qudag_stake(100)" >/dev/null
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
sql <<EOF
\\timing on
\\echo qudag_sign x $N
SELECT count(ruvector.qudag_sign(convert_to('plan ' || g, 'UTF8'))) FROM generate_series(1, $N) g;
CREATE TEMP TABLE k AS SELECT * FROM ruvector.qudag_generate_kem_keypair();
CREATE TEMP TABLE s AS SELECT ruvector.qudag_sign(convert_to('plan ' || g, 'UTF8')) AS sig, g FROM generate_series(1, $N) g;
CREATE TEMP TABLE pk AS SELECT signing_public_key FROM ruvector.qudag_node_identity();
\\echo qudag_verify x $N
SELECT count(*) FILTER (WHERE ruvector.qudag_verify(convert_to('plan ' || g, 'UTF8'), sig, pk.signing_public_key)) FROM s, pk;
\\echo qudag_encrypt 1 KiB x $N
-- The plaintext depends on g, so the function runs once per row (not once for the one key row).
SELECT count(*) FROM generate_series(1, $N) g, k,
    ruvector.qudag_encrypt(convert_to(lpad(g::text, 1024, 'x'), 'UTF8'), k.public_key) e;
CREATE TEMP TABLE b AS SELECT e.* FROM generate_series(1, $N) g, k,
    ruvector.qudag_encrypt(convert_to(lpad(g::text, 1024, 'x'), 'UTF8'), k.public_key) e;
\\echo qudag_decrypt 1 KiB x $N
SELECT count(ruvector.qudag_decrypt(ciphertext, encapsulated_key, k.secret_key_id)) FROM b, k;
EOF
sql <<EOF
SET ruvector.dag_qudag_dp_epsilon = 0.5;
DO \$\$
DECLARE id text; t0 timestamptz; ms float8[] := '{}'; st text;
BEGIN
  FOR i IN 1..least($N, 50) LOOP
    t0 := clock_timestamp();
    SELECT proposal_id INTO id FROM ruvector.qudag_propose_pattern(
        ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, 256)), '{"quality": 0.8}');
    LOOP
      SELECT status INTO st FROM ruvector.qudag_proposal_status(id);
      EXIT WHEN st <> 'pending';
      PERFORM pg_sleep(0.002);
    END LOOP;
    IF st <> 'finalized' THEN RAISE EXCEPTION 'proposal % %', id, st; END IF;
    ms := ms || extract(epoch FROM clock_timestamp() - t0) * 1000;
  END LOOP;
  RAISE NOTICE 'proposal to finality via SQL, ms (sorted): %',
      (SELECT array_agg(round(x::numeric, 1) ORDER BY x) FROM unnest(ms) x);
  RAISE NOTICE 'median % ms', (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY x)::numeric, 1) FROM unnest(ms) x);
END \$\$;
EOF
