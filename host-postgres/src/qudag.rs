//! Pattern sharing from SQL (`qudag_*`): this server's node identity, post-quantum crypto, and the network.
//!
//! - The node identity (ML-DSA-65 + ML-KEM-768) lives in the keystore `ruvector.dag_qudag_keystore`, encrypted
//!   with Argon2id + ChaCha20-Poly1305 under the passphrase in `ruvector.dag_qudag_passphrase_file` (a random one
//!   is created, mode 0600, when the file is missing). It is created on first use.
//! - Crypto functions run in the calling backend. Secret keys never reach SQL: `qudag_generate_kem_keypair`
//!   returns the public key and an id; the secret seed is stored in `ruvector.dag_qudag_keys` encrypted under a
//!   key derived from the node identity, and only the role that made it (or a member of it) can decrypt with it.
//! - Network functions are carried out by the learner worker, which runs the network client (the only tokio
//!   runtime in the server); see [`crate::learner`]. They raise RV005 while `ruvector.dag_qudag_enabled` is off.

// `TableIterator` signatures name every output column; factoring them into aliases would hide the SQL API.
#![allow(clippy::type_complexity)]

use crate::learner::network::Request;
use crate::sql::{as_extension_owner, fail, required};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{pg_sys, spi};
use ruvector_dag_network::identity::{KEM_CIPHERTEXT_LEN, KEM_SEED_LEN, SIGNING_PUBLIC_KEY_LEN};
use ruvector_dag_network::keystore::KdfCost;
use ruvector_dag_network::protocol::hex_id;
use ruvector_dag_network::{
    KemSecretKey, Keystore, NodeIdentity, SealedBox, decrypt_at_rest, encrypt_at_rest, open_with_kem_key,
    seal_to_kem_key, verify_signature,
};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// ML-DSA-65 context of `qudag_sign`: SQL signatures can never pass for the network's envelopes (own contexts).
pub(crate) const SQL_SIGN_CONTEXT: &[u8] = b"ruvector-dag qudag_sign";
/// Key-derivation context of the KEM secrets kept in `ruvector.dag_qudag_keys`.
const KEY_STORAGE_CONTEXT: &str = "ruvector-dag 2026-12 dag_qudag_keys secret seeds";

extension_sql!(
    r#"
-- ML-KEM-768 key pairs made by qudag_generate_kem_keypair(): the secret seed encrypted under a key derived from
-- this server's node identity (ruvector.dag_qudag_keystore); usable by the role that made it (and its members).
CREATE TABLE dag_qudag_keys (
    key_id text PRIMARY KEY,
    public_key bytea NOT NULL,
    sealed_secret bytea NOT NULL,
    node_id text NOT NULL,
    owner oid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Patterns this server proposed to the network (the worker follows the undecided ones every 2 s; so does
-- qudag_proposal_status). finalized_at: when this server saw the proposal finalized.
CREATE TABLE dag_qudag_proposals (
    proposal_id text PRIMARY KEY,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    submitted_by oid NOT NULL,
    status text NOT NULL,
    votes_for int NOT NULL DEFAULT 0,
    votes_against int NOT NULL DEFAULT 0,
    finalized_at timestamptz,
    stake float8 NOT NULL,
    epsilon float8 NOT NULL,
    pattern_vector real[] NOT NULL,
    metadata jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Finalized patterns the worker received from the network, each imported once (pattern_id NULL: refused).
CREATE TABLE dag_qudag_imports (
    proposal_id text NOT NULL,
    pattern_index int NOT NULL,
    pattern_id bigint,
    confidence float8 NOT NULL,
    detail text,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (proposal_id, pattern_index)
);
REVOKE ALL ON dag_qudag_keys, dag_qudag_proposals, dag_qudag_imports FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('dag_qudag_keys', '');
SELECT pg_catalog.pg_extension_config_dump('dag_qudag_proposals', '');
SELECT pg_catalog.pg_extension_config_dump('dag_qudag_imports', '');
"#,
    name = "qudag_tables",
    requires = ["learning_tables"]
);

extension_sql!(
    r#"
-- Acting as this server on the network (signing as the node, spending its rUv and privacy budget, changing its
-- connection) is for the DBA or whom the DBA grants it. Status, balance, encryption, verification and one's own
-- KEM keys are for everyone.
REVOKE EXECUTE ON FUNCTION qudag_sign(bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION qudag_connect(text, bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION dag_set_qudag_endpoint(text, double precision) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION qudag_propose_pattern(real[], jsonb, double precision) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION qudag_sync_patterns(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION qudag_stake(double precision) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION qudag_claim_rewards() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION qudag_report_improvement(text, integer, double precision) FROM PUBLIC;
"#,
    name = "qudag_privileges",
    requires = [
        qudag_sign,
        qudag_connect,
        dag_set_qudag_endpoint,
        qudag_propose_pattern,
        qudag_sync_patterns,
        qudag_stake,
        qudag_claim_rewards,
        qudag_report_improvement
    ]
);

// ---- the node identity ----------------------------------------------------------------------------------------

fn guc_path(setting: &pgrx::guc::GucSetting<Option<std::ffi::CString>>, what: &str) -> Result<PathBuf, String> {
    match setting.get() {
        Some(p) if !p.as_bytes().is_empty() => Ok(PathBuf::from(p.to_string_lossy().into_owned())),
        _ => Err(format!("RV006 QUDAG_AUTH_FAILED: {what} is not set")),
    }
}

/// Where the keystore is (relative paths are relative to the data directory, the server's working directory).
pub(crate) fn keystore_path() -> Result<PathBuf, String> {
    guc_path(&crate::gucs::QUDAG_KEYSTORE, "ruvector.dag_qudag_keystore")
}

/// The directory of the keystore, where the node keeps its other files (privacy budget, last endpoint).
pub(crate) fn node_dir() -> Result<PathBuf, String> {
    Ok(keystore_path()?.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// Creates `dir` (and its parents) with mode 0700 when missing.
fn private_dir(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("RV006 QUDAG_AUTH_FAILED: creating {}: {e}", dir.display()))
}

/// The passphrase in `path`; a random one is written there (mode 0600) when the file does not exist.
fn passphrase(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let err = |why: String| format!("RV006 QUDAG_AUTH_FAILED: passphrase file {}: {why}", path.display());
    if !path.exists() {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        let mut random = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut random[..]).map_err(|e| err(format!("no randomness: {e}")))?;
        let text: Zeroizing<String> = Zeroizing::new(random.iter().map(|b| format!("{b:02x}")).collect());
        // Written whole under a name of its own, then linked into place: a concurrent reader never sees it half
        // written, and a concurrent creator's file is never replaced (theirs is read below).
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(e.to_string()))?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| err(e.to_string()))?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e.to_string())),
        }
    }
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(err(format!(
            "mode {:o} lets other users read it; chmod 600 it",
            meta.permissions().mode() & 0o777
        )));
    }
    let mut bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(err("it is empty".into()));
    }
    Ok(bytes)
}

static IDENTITY: Mutex<Option<(PathBuf, Arc<NodeIdentity>)>> = Mutex::new(None);

/// This server's node identity: opened from the keystore (once per process and keystore path), created there on
/// first use. Errors carry RV006.
pub(crate) fn node_identity() -> Result<Arc<NodeIdentity>, String> {
    let path = keystore_path()?;
    let mut cached = IDENTITY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((p, identity)) = &*cached
        && *p == path
    {
        return Ok(identity.clone());
    }
    let pass = passphrase(&guc_path(&crate::gucs::QUDAG_PASSPHRASE_FILE, "ruvector.dag_qudag_passphrase_file")?)?;
    let auth = |e: ruvector_dag_network::NetworkError| format!("RV006 QUDAG_AUTH_FAILED: {e}");
    if let Some(dir) = path.parent().filter(|_| !path.exists()) {
        private_dir(dir)?;
    }
    // Opened, or created on first use (another process creating it meanwhile wins: its identity is used).
    let identity = Keystore::open_or_create(&path, &pass, KdfCost::default()).map_err(auth)?;
    let identity = Arc::new(identity);
    *cached = Some((path, identity.clone()));
    Ok(identity)
}

fn identity_or_error() -> Arc<NodeIdentity> {
    node_identity().unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, e))
}

/// Raises a network or crypto error with the SQLSTATE its RV code stands for.
pub(crate) fn raise(message: String) -> ! {
    let code = match message.get(..5) {
        Some("RV005") => PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
        Some("RV006") => PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        Some("RV007") => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
        Some("RV008") => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        _ => PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
    };
    fail(code, message)
}

fn crypto_error(message: impl std::fmt::Display) -> ! {
    let message = message.to_string();
    if message.starts_with("RV0") { raise(message) } else { raise(format!("RV008 CRYPTO_ERROR: {message}")) }
}

/// This server's node id and public keys (what peers and `qudag_verify` need), and where its keystore is.
#[pg_extern]
fn qudag_node_identity() -> TableIterator<
    'static,
    (
        name!(node_id, String),
        name!(signing_public_key, Vec<u8>),
        name!(kem_public_key, Vec<u8>),
        name!(keystore, String),
    ),
> {
    let identity = identity_or_error();
    let public = identity.public();
    TableIterator::once((
        hex_id(&identity.peer_id().0),
        public.verifying_key_bytes().to_vec(),
        public.kem_key_bytes(),
        keystore_path().unwrap_or_else(|e| raise(e)).display().to_string(),
    ))
}

// ---- crypto ----------------------------------------------------------------------------------------------------

fn installed_or_error() {
    if !crate::learner::extension_installed() {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "ruvector_dag is not installed in this database: CREATE EXTENSION ruvector_dag",
        );
    }
}

/// A new ML-KEM-768 key pair: the public key, and the id under which the secret key is kept on the server
/// (encrypted under a key derived from the node identity; never returned). Only the calling role, and roles that
/// are members of it, can decrypt with it.
#[pg_extern]
fn qudag_generate_kem_keypair() -> TableIterator<'static, (name!(public_key, Vec<u8>), name!(secret_key_id, String))> {
    installed_or_error();
    let identity = identity_or_error();
    let key = KemSecretKey::generate();
    let public_key = key.public_key_bytes();
    let key_id = format!("kem_{}", &blake3::hash(&public_key).to_hex()[..32]);
    let sealed = encrypt_at_rest(&identity, KEY_STORAGE_CONTEXT, key_id.as_bytes(), key.seed())
        .unwrap_or_else(|e| crypto_error(e));
    // SAFETY: reads the current user id.
    let owner = unsafe { pg_sys::GetUserId() };
    let node_id = hex_id(&identity.peer_id().0);
    as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO ruvector.dag_qudag_keys (key_id, public_key, sealed_secret, node_id, owner)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                DatumWithOid::from(key_id.as_str()),
                DatumWithOid::from(public_key.as_slice()),
                DatumWithOid::from(sealed.as_slice()),
                DatumWithOid::from(node_id.as_str()),
                DatumWithOid::from(owner),
            ],
        )
    })
    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("storing the key: {e}")));
    TableIterator::once((public_key, key_id))
}

/// Encrypts `plaintext` to an ML-KEM-768 public key: ML-KEM-768 encapsulation, a BLAKE3-derived one-time key,
/// ChaCha20-Poly1305. Returns the AEAD ciphertext (plaintext + 16-byte tag) and the 1088-byte encapsulated key.
#[pg_extern]
fn qudag_encrypt(
    plaintext: Option<&[u8]>,
    recipient_pubkey: Option<&[u8]>,
) -> TableIterator<'static, (name!(ciphertext, Vec<u8>), name!(encapsulated_key, Vec<u8>))> {
    let plaintext = required("plaintext", plaintext);
    let recipient = required("recipient_pubkey", recipient_pubkey);
    let sealed = seal_to_kem_key(recipient, b"", plaintext).unwrap_or_else(|e| crypto_error(e));
    TableIterator::once((sealed.ciphertext, sealed.kem_ciphertext))
}

/// Decrypts what `qudag_encrypt` made for the public key of `secret_key_id`. Wrong keys, altered bytes and keys
/// of other roles are refused.
#[pg_extern]
fn qudag_decrypt(ciphertext: Option<&[u8]>, encapsulated_key: Option<&[u8]>, secret_key_id: Option<&str>) -> Vec<u8> {
    let ciphertext = required("ciphertext", ciphertext);
    let encapsulated_key = required("encapsulated_key", encapsulated_key);
    let key_id = required("secret_key_id", secret_key_id);
    installed_or_error();
    if encapsulated_key.len() != KEM_CIPHERTEXT_LEN {
        crypto_error(format!(
            "encapsulated_key has {} bytes; an ML-KEM-768 ciphertext has {KEM_CIPHERTEXT_LEN}",
            encapsulated_key.len()
        ));
    }
    let row: Option<(Vec<u8>, String, pg_sys::Oid)> = as_extension_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT sealed_secret, node_id, owner FROM ruvector.dag_qudag_keys WHERE key_id = $1",
                Some(1),
                &[DatumWithOid::from(key_id)],
            )?;
            let mut out = None;
            for r in rows {
                out = Some((
                    r.get::<Vec<u8>>(1)?.unwrap_or_default(),
                    r.get::<String>(2)?.unwrap_or_default(),
                    r.get::<pg_sys::Oid>(3)?.unwrap_or(pg_sys::Oid::INVALID),
                ));
            }
            Ok::<_, spi::SpiError>(out)
        })
    })
    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("reading the key: {e}")));
    let Some((sealed_secret, node_id, owner)) = row else {
        crypto_error(format!("no ML-KEM key \"{key_id}\" in this database (see qudag_generate_kem_keypair)"))
    };
    // SAFETY: catalog check of the current user's membership.
    if !unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), owner) } {
        fail(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for ML-KEM key \"{key_id}\": it belongs to another role"),
        );
    }
    let identity = identity_or_error();
    let this_node = hex_id(&identity.peer_id().0);
    if node_id != this_node {
        crypto_error(format!(
            "key \"{key_id}\" was stored by node {node_id}; this server's keystore is node {this_node}"
        ));
    }
    let seed = decrypt_at_rest(&identity, KEY_STORAGE_CONTEXT, key_id.as_bytes(), &sealed_secret)
        .unwrap_or_else(|e| crypto_error(e));
    let seed: &[u8; KEM_SEED_LEN] =
        seed.as_slice().try_into().unwrap_or_else(|_| crypto_error(format!("key \"{key_id}\" is damaged")));
    let key = KemSecretKey::from_seed(seed);
    let sealed = SealedBox { kem_ciphertext: encapsulated_key.to_vec(), ciphertext: ciphertext.to_vec() };
    open_with_kem_key(&key, b"", &sealed).unwrap_or_else(|e| crypto_error(e))
}

/// Signs `data` with this server's ML-DSA-65 key (hedged, context `ruvector-dag qudag_sign`); verify with
/// `qudag_verify(data, signature, (SELECT signing_public_key FROM ruvector.qudag_node_identity()))`.
#[pg_extern]
fn qudag_sign(data: Option<&[u8]>) -> Vec<u8> {
    let data = required("data", data);
    identity_or_error().sign(SQL_SIGN_CONTEXT, data).unwrap_or_else(|e| crypto_error(e))
}

/// Whether `signature` is this extension's ML-DSA-65 signature (see `qudag_sign`) of `data` under the verifying
/// key `pubkey` (1952 bytes). A malformed or wrong signature is `false`; a malformed key is an RV008 error.
#[pg_extern(immutable, parallel_safe)]
fn qudag_verify(data: Option<&[u8]>, signature: Option<&[u8]>, pubkey: Option<&[u8]>) -> bool {
    let data = required("data", data);
    let signature = required("signature", signature);
    let pubkey = required("pubkey", pubkey);
    if pubkey.len() != SIGNING_PUBLIC_KEY_LEN {
        crypto_error(format!(
            "invalid ML-DSA-65 verifying key: {} bytes, expected {SIGNING_PUBLIC_KEY_LEN}",
            pubkey.len()
        ));
    }
    verify_signature(pubkey, SQL_SIGN_CONTEXT, data, signature)
}

// ---- the network (carried out by the learner worker) -------------------------------------------------------

/// Functions that change something outside the database (the network's ledger, this server's privacy budget and
/// connection, what it learned) refuse read-only transactions, as writes do: the learner's replays, among others,
/// run read-only and must never act on the network.
fn refuse_if_read_only(function: &std::ffi::CStr) {
    // SAFETY: raises the standard ERROR when the transaction is read-only; the name outlives the call.
    unsafe { pg_sys::PreventCommandIfReadOnly(function.as_ptr()) }
}

/// Sends `request` to the worker and returns its JSON reply.
fn network(request: &Request) -> serde_json::Value {
    let payload = serde_json::to_vec(request).expect("requests serialize");
    let reply = crate::learner::submit_network(&payload).unwrap_or_else(|e| raise(e));
    serde_json::from_slice(&reply)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("network reply: {e}")))
}

fn field<T: serde::de::DeserializeOwned>(reply: &serde_json::Value, name: &str) -> T {
    serde_json::from_value(reply.get(name).cloned().unwrap_or(serde_json::Value::Null))
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("network reply field {name}: {e}")))
}

/// Microseconds since the Unix epoch as a timestamp.
fn timestamp(unix_us: i64) -> Option<TimestampWithTimeZone> {
    const PG_EPOCH_US: i64 = 946_684_800_000_000;
    TimestampWithTimeZone::try_from(unix_us - PG_EPOCH_US).ok()
}

fn check_endpoint(endpoint: &str) {
    if let Err(e) = endpoint.parse::<ruvector_dag_network::Endpoint>() {
        raise(e.to_string());
    }
}

/// Connects this server's learner worker to the validator at `endpoint` (`ruvector://<node id>@host:port`, or
/// `host:port` to trust the node found there) and remembers it for restarts. `identity_key` must be NULL: the
/// node's secret keys stay in its keystore (`ruvector.dag_qudag_keystore`) and never pass through SQL.
#[pg_extern]
fn qudag_connect(
    endpoint: Option<&str>,
    identity_key: default!(Option<&[u8]>, "NULL"),
) -> TableIterator<'static, (name!(connected, bool), name!(node_id, String), name!(network_version, String))> {
    refuse_if_read_only(c"qudag_connect()");
    let endpoint = required("endpoint", endpoint);
    if identity_key.is_some() {
        fail(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "RV006 QUDAG_AUTH_FAILED: identity_key must be NULL: secret keys never pass through SQL; \
             point ruvector.dag_qudag_keystore at the node's keystore instead",
        );
    }
    check_endpoint(endpoint);
    let reply = network(&Request::Connect { endpoint: endpoint.to_owned() });
    TableIterator::once((field(&reply, "connected"), field(&reply, "node_id"), field(&reply, "network_version")))
}

/// Connects to `endpoint` as `qudag_connect` does and, when `stake_amount` > 0, stakes that much rUv.
#[pg_extern]
fn dag_set_qudag_endpoint(endpoint: Option<&str>, stake_amount: default!(Option<f64>, 0.0)) {
    refuse_if_read_only(c"dag_set_qudag_endpoint()");
    let endpoint = required("endpoint", endpoint);
    let stake = required("stake_amount", stake_amount);
    if !(stake.is_finite() && stake >= 0.0) {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("stake_amount {stake} must be ≥ 0"));
    }
    check_endpoint(endpoint);
    network(&Request::Connect { endpoint: endpoint.to_owned() });
    if stake > 0.0 {
        network(&Request::Stake { amount: stake });
    }
}

/// The connection and the local node's view of the network.
#[pg_extern]
fn qudag_status() -> TableIterator<
    'static,
    (
        name!(connected, bool),
        name!(node_id, String),
        name!(peers, i32),
        name!(latest_round, i64),
        name!(sync_status, String),
    ),
> {
    let reply = network(&Request::Status);
    TableIterator::once((
        field(&reply, "connected"),
        field(&reply, "node_id"),
        field::<i64>(&reply, "peers") as i32,
        field(&reply, "latest_round"),
        field(&reply, "sync_status"),
    ))
}

/// Shares a learned pattern: clipped, quantised and released with discrete Laplace noise at
/// `ruvector.dag_qudag_dp_epsilon` (spent from the server's privacy budget once per distinct vector), then proposed
/// with a bond of `stake_amount` rUv (0: the network's minimum). `metadata` may carry `quality` (0–1), `samples`
/// and `settings`. Returns at once; `qudag_proposal_status` follows the vote.
#[pg_extern]
fn qudag_propose_pattern(
    pattern_vector: Option<Vec<f32>>,
    metadata: Option<pgrx::JsonB>,
    stake_amount: default!(Option<f64>, 0.0),
) -> TableIterator<
    'static,
    (name!(proposal_id, String), name!(submitted_at, Option<TimestampWithTimeZone>), name!(status, String)),
> {
    refuse_if_read_only(c"qudag_propose_pattern()");
    let vector = required("pattern_vector", pattern_vector);
    let metadata = required("metadata", metadata).0;
    let stake = required("stake_amount", stake_amount);
    let dim = crate::learner::with_engine(|engine, _| engine.reasoning_bank.dim());
    if vector.len() != dim {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("pattern_vector has {} dimensions; the ReasoningBank's patterns have {dim}", vector.len()),
        );
    }
    if vector.iter().any(|x| !x.is_finite()) {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "pattern_vector has a non-finite value");
    }
    if !metadata.is_object() {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "metadata must be a JSON object");
    }
    if !(stake.is_finite() && stake >= 0.0) {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("stake_amount {stake} must be ≥ 0"));
    }
    // SAFETY: reads the current user id.
    let submitted_by = unsafe { pg_sys::GetUserId() }.to_u32();
    let epsilon = crate::gucs::QUDAG_DP_EPSILON.get();
    let reply = network(&Request::Propose { vector, metadata, epsilon, stake, submitted_by });
    TableIterator::once((
        field(&reply, "proposal_id"),
        timestamp(field(&reply, "submitted_at_us")),
        field(&reply, "status"),
    ))
}

/// Where a proposal stands: `pending`, `finalized` (endorsed by more than 2/3 of the validator stake) or
/// `rejected` (by more than 1/3), with the validators' votes so far.
#[pg_extern]
fn qudag_proposal_status(
    proposal_id: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(votes_for, i32),
        name!(votes_against, i32),
        name!(finalized, bool),
        name!(finalized_at, Option<TimestampWithTimeZone>),
    ),
> {
    let id = required("proposal_id", proposal_id);
    let reply = network(&Request::ProposalStatus { id: id.to_owned() });
    let status: String = field(&reply, "status");
    TableIterator::once((
        status.clone(),
        field(&reply, "votes_for"),
        field(&reply, "votes_against"),
        status == "finalized",
        field::<Option<i64>>(&reply, "finalized_at_us").and_then(timestamp),
    ))
}

/// Imports the patterns the network finalized from `since_round` on into the ReasoningBank (each once, weighted
/// by its consensus confidence). `conflicts_resolved` counts patterns imported before (kept, not added twice).
#[pg_extern]
fn qudag_sync_patterns(
    since_round: default!(Option<i64>, 0),
) -> TableIterator<'static, (name!(patterns_received, i32), name!(patterns_applied, i32), name!(conflicts_resolved, i32))>
{
    refuse_if_read_only(c"qudag_sync_patterns()");
    let since = required("since_round", since_round);
    if since < 0 {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "since_round must be ≥ 0");
    }
    let reply = network(&Request::Sync { since_round: since as u64 });
    TableIterator::once((field(&reply, "received"), field(&reply, "applied"), field(&reply, "conflicts")))
}

/// This server's spendable rUv.
#[pg_extern]
fn qudag_balance() -> f64 {
    field(&network(&Request::Balance), "balance")
}

/// Locks `amount` rUv as stake (returns once the network finalized it).
#[pg_extern]
fn qudag_stake(amount: Option<f64>) -> TableIterator<'static, (name!(new_stake, f64), name!(tx_hash, String))> {
    refuse_if_read_only(c"qudag_stake()");
    let amount = required("amount", amount);
    if !(amount.is_finite() && amount > 0.0) {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("amount {amount} must be > 0"));
    }
    let reply = network(&Request::Stake { amount });
    TableIterator::once((field(&reply, "new_stake"), field(&reply, "tx_hash")))
}

/// Moves this server's pending rewards to its balance. No row when there was nothing to claim.
#[pg_extern]
fn qudag_claim_rewards() -> TableIterator<'static, (name!(amount, f64), name!(tx_hash, String), name!(source, String))>
{
    refuse_if_read_only(c"qudag_claim_rewards()");
    let reply = network(&Request::ClaimRewards);
    let claimed: Option<(f64, String)> = field(&reply, "claimed");
    TableIterator::new(claimed.map(|(amount, tx)| (amount, tx, "validation and accepted proposals".to_owned())))
}

/// Reports the latency improvement (`1 − after / before`, 0–1) this server measured with pattern `pattern_index`
/// of a finalized proposal on its own workload; needs stake. The median of the reports of staked servers pays
/// the proposer the accuracy bonus (10 rUv per 1 %). Returns the report's id once finalized.
#[pg_extern]
fn qudag_report_improvement(proposal_id: Option<&str>, pattern_index: Option<i32>, improvement: Option<f64>) -> String {
    refuse_if_read_only(c"qudag_report_improvement()");
    let id = required("proposal_id", proposal_id);
    let index = required("pattern_index", pattern_index);
    let improvement = required("improvement", improvement);
    if index < 0 {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "pattern_index must be ≥ 0");
    }
    if !(0.0..=1.0).contains(&improvement) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("improvement {improvement} must be within 0..=1"),
        );
    }
    let reply = network(&Request::ReportImprovement { id: id.to_owned(), index: index as u32, improvement });
    field(&reply, "tx_hash")
}

/// This server's stake, unclaimed rewards and stake lock. `apr_estimate` is NULL: rewards pay for accepted
/// proposals and validation work, not for time.
#[pg_extern]
fn qudag_staking_info() -> TableIterator<
    'static,
    (
        name!(staked_amount, f64),
        name!(pending_rewards, f64),
        name!(lock_until, Option<TimestampWithTimeZone>),
        name!(apr_estimate, Option<f64>),
    ),
> {
    let reply = network(&Request::StakingInfo);
    let unlock_ms: i64 = field(&reply, "unlock_ms");
    TableIterator::once((
        field(&reply, "staked"),
        field(&reply, "pending_rewards"),
        (unlock_ms > 0).then(|| timestamp(unlock_ms * 1000)).flatten(),
        None,
    ))
}
