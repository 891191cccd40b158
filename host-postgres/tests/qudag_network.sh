#!/usr/bin/env bash
# Pattern sharing end to end, with the validators in another process (`ruvector-node testnet`): off by default
# (crypto still works, network functions say so), turned on and pointed at a validator by configuration alone, a
# proposal finalized and imported once, the connection and the imports surviving a server restart, and the network
# stopped when turned off. Needs root, the extension installed for the system PostgreSQL 15 (`cargo pgrx install`)
# and the node binary (built here). Exits non-zero on any failure.
set -euo pipefail
PORT=${PORT:-55453}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --quiet --locked --manifest-path "$ROOT/Cargo.toml" -p ruvector-dag-network --bin ruvector-node
NODE=$(cargo metadata --quiet --format-version 1 --manifest-path "$ROOT/Cargo.toml" --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/ruvector-node
. "$(dirname "$0")/throwaway_cluster.sh"
OPTIONS=(-c shared_preload_libraries=ruvector_dag -c ruvector.dag_database=postgres)
cluster_start "${OPTIONS[@]}"
sql() { as_pg "$BIN/psql" -X -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -d postgres -A -t -q "$@" 2>&1; }
fail() { echo "qudag_network: $*" >&2; tail -20 "$WORK/log" >&2; exit 1; }
until_true() { # until_true SECONDS SQL: polls SQL (one boolean; errors count as false)
    for _ in $(seq 1 $(($1 * 10))); do
        [[ $(sql -c "$2" 2>/dev/null || true) == t ]] && return 0
        sleep 0.1
    done
    fail "not true within $1 s: $2 → $(sql -c "$2" || true)"
}
reload() { sql -c "ALTER SYSTEM SET $1" -c "SELECT pg_reload_conf()" >/dev/null; }

sql -c "CREATE EXTENSION ruvector_dag" >/dev/null

# Off by default: nothing connects, the network functions say why, the crypto functions work.
off=$(sql -c "SELECT * FROM ruvector.qudag_status()" || true)
[[ $off == *"RV005"*"pattern sharing is off"* ]] || fail "with sharing off, qudag_status said: $off"
[[ $(sql -c "SELECT qudag_connected FROM ruvector.dag_status()") == f ]] || fail "connected while off"
plain=$(sql -c "WITH k AS (SELECT * FROM ruvector.qudag_generate_kem_keypair()),
                     b AS (SELECT e.*, k.secret_key_id FROM k, ruvector.qudag_encrypt('shared nothing', k.public_key) e)
                SELECT convert_from(ruvector.qudag_decrypt(ciphertext, encapsulated_key, secret_key_id), 'UTF8') FROM b")
[[ $plain == "shared nothing" ]] || fail "KEM round trip gave: $plain"
modes=$(stat -c '%a' "$WORK/data/ruvector_qudag" "$WORK/data/ruvector_qudag/node.keystore" \
    "$WORK/data/ruvector_qudag/passphrase" | tr '\n' ' ')
[[ $modes == "700 600 600 " ]] || fail "node directory, keystore, passphrase modes: $modes"

# Four validators in another process.
"$NODE" testnet --validators 4 --seconds 600 >"$WORK/testnet" 2>"$WORK/testnet.err" &
TESTNET=$!
trap 'kill $TESTNET 2>/dev/null || true; as_pg "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do [[ $(wc -l <"$WORK/testnet") -ge 4 ]] && break; sleep 0.1; done
[[ $(wc -l <"$WORK/testnet") -ge 4 ]] || fail "testnet did not start: $(cat "$WORK/testnet.err")"
ENDPOINT=$(sed -n 3p "$WORK/testnet")

# Whatever acts on the network refuses read-only transactions, as writes do (the learner's replays run read-only).
for f in "qudag_stake(1)" "qudag_claim_rewards()" "qudag_sync_patterns(0)" "qudag_connect('127.0.0.1:1')"; do
    out=$(sql -c "BEGIN READ ONLY" -c "SELECT * FROM ruvector.$f" || true)
    [[ $out == *"cannot execute ${f%%(*}() in a read-only transaction"* ]] || fail "read-only $f: $out"
done

# Turned on and pointed at validator 2 by configuration: the worker connects on its own.
reload "ruvector.dag_qudag_enabled = on"
reload "ruvector.dag_qudag_endpoint = '$ENDPOINT'"
until_true 30 "SELECT connected FROM ruvector.qudag_status()"
until_true 5 "SELECT qudag_connected FROM ruvector.dag_status()"
[[ $(sql -c "SELECT ruvector.qudag_balance()") == 1000 ]] || fail "faucet: balance $(sql -c "SELECT ruvector.qudag_balance()")"
[[ $(sql -c "SELECT new_stake FROM ruvector.qudag_stake(100)") == 100 ]] || fail "stake"

id=$(sql -c "SELECT proposal_id FROM ruvector.qudag_propose_pattern(
                 ruvector.dag_embedding('SELECT relname FROM pg_class WHERE relpages > 10'),
                 '{\"quality\": 0.7, \"samples\": 25, \"settings\": {\"enable_nestloop\": \"off\"}}')")
[[ ${#id} == 64 ]] || fail "proposal id: $id"
# The worker follows its proposals: the row turns finalized without anyone asking.
until_true 30 "SELECT status = 'finalized' AND votes_for >= 3 FROM ruvector.dag_qudag_proposals WHERE proposal_id = '$id'"
[[ $(sql -c "SELECT finalized FROM ruvector.qudag_proposal_status('$id')") == t ]] || fail "proposal status"
until_true 30 "SELECT patterns_received >= 1 FROM ruvector.qudag_sync_patterns(0)"
[[ $(sql -c "SELECT count(*) FROM ruvector.dag_qudag_imports WHERE proposal_id = '$id' AND pattern_id IS NOT NULL") == 1 ]] ||
    fail "imports: $(sql -c "SELECT * FROM ruvector.dag_qudag_imports")"
spent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["spent_milli"])' "$WORK/data/ruvector_qudag/privacy_budget.json")
[[ $spent -gt 0 ]] || fail "privacy budget spent: $spent"

# A restart: the worker reconnects to the configured endpoint; nothing is imported twice; the pattern persists.
patterns=$(sql -c "SELECT active_patterns FROM ruvector.dag_status()")
cluster_stop
cluster_start "${OPTIONS[@]}"
until_true 30 "SELECT connected FROM ruvector.qudag_status()"
again=$(sql -c "SELECT patterns_applied || ' ' || conflicts_resolved FROM ruvector.qudag_sync_patterns(0)")
[[ $again == "0 1" ]] || fail "after a restart, sync applied/already imported: $again"
[[ $(sql -c "SELECT active_patterns FROM ruvector.dag_status()") -ge $patterns ]] || fail "patterns lost in a restart"
[[ $(sql -c "SELECT status FROM ruvector.dag_qudag_proposals WHERE proposal_id = '$id'") == finalized ]] ||
    fail "proposal row: $(sql -c "SELECT * FROM ruvector.dag_qudag_proposals")"

# A new endpoint in the configuration (reload): the worker moves there.
OTHER=$(sed -n 4p "$WORK/testnet")
reload "ruvector.dag_qudag_endpoint = '$OTHER'"
for _ in $(seq 1 100); do grep -q "connected to $OTHER" "$WORK/log" && break; sleep 0.1; done
grep -q "connected to $OTHER" "$WORK/log" || fail "the worker did not move to $OTHER"
until_true 10 "SELECT connected FROM ruvector.qudag_status()"

# Turned off: the worker stops the network.
reload "ruvector.dag_qudag_enabled = off"
until_true 10 "SELECT NOT qudag_connected FROM ruvector.dag_status()"
off=$(sql -c "SELECT ruvector.qudag_balance()" || true)
[[ $off == *"pattern sharing is off"* ]] || fail "after turning sharing off: $off"
grep -q "pattern sharing turned off" "$WORK/log" || fail "no log line for stopping the network"
echo "qudag_network: ok"
