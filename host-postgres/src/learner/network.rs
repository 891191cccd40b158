//! Pattern sharing in the learner worker: a thread that owns the server's only tokio runtime and the network
//! client ([`QuDagClient`]), and the worker's side of the `qudag_*` requests.
//!
//! Backends never run the network: they send a [`Request`] through the mailbox; the worker's main thread hands it
//! to the network thread and waits (bounded) for the [`Reply`]. The main thread keeps what involves PostgreSQL:
//! importing finalized patterns into the ReasoningBank (recorded in `ruvector.dag_qudag_imports`, so none is
//! imported twice, also across restarts) and keeping `ruvector.dag_qudag_proposals` current.

use super::Learner;
use super::control::control;
use crate::gucs;
use crate::sql::fail;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use pgrx::{pg_sys, spi};
use rustc_hash::FxHashSet;
use ruvector_dag_network::protocol::{hex_id, to_ruv};
use ruvector_dag_network::{
    ClientOptions, ConsensusPattern, ConsensusStatus, NodeIdentity, PatternProposal, ProposalId, QuDagClient,
    laplace_noise,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How long the worker waits before trying the configured endpoint again.
const RECONNECT_AFTER: Duration = Duration::from_secs(60);
/// How often the worker follows this server's undecided proposals.
const REFRESH_PROPOSALS: Duration = Duration::from_secs(2);

/// How long the client waits for the network (connecting, submitting, a spend's finality).
pub(crate) const NETWORK_TIMEOUT: Duration = Duration::from_secs(15);

/// What a backend asks of the network (JSON in the mailbox).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Connect to `endpoint`, replacing any connection.
    Connect { endpoint: String },
    /// The connection and the local node's view.
    Status,
    /// Release a pattern privately and propose it with a bond of `stake` rUv (0: the network's minimum).
    Propose { vector: Vec<f32>, metadata: serde_json::Value, epsilon: f64, stake: f64, submitted_by: u32 },
    /// Where a proposal stands.
    ProposalStatus { id: String },
    /// Import the patterns finalized from `since_round` on.
    Sync { since_round: u64 },
    /// Spendable rUv.
    Balance,
    /// Lock `amount` rUv as stake.
    Stake { amount: f64 },
    /// Move pending rewards to the balance.
    ClaimRewards,
    /// Report the improvement measured with pattern `index` of proposal `id` (0–1).
    ReportImprovement { id: String, index: u32, improvement: f64 },
    /// The account's stake, rewards and lock.
    StakingInfo,
}

/// What the network thread answers.
#[derive(Debug)]
pub(crate) enum Reply {
    Connected { node_id: String, network_version: String },
    Status { connected: bool, peers: u64, round: u64 },
    Proposed { id: String, status: ConsensusStatus, stake: f64 },
    ProposalStatus { status: ConsensusStatus, votes_for: u32, votes_against: u32 },
    Patterns(Vec<ConsensusPattern>),
    Balance(f64),
    Staked { new_stake: f64, tx: String },
    Claimed(Option<(f64, String)>),
    Reported { tx: String },
    StakingInfo { staked: f64, pending_rewards: f64, unlock_ms: u64 },
}

type Job = (Request, std_mpsc::SyncSender<Result<Reply, String>>);
/// Where a queued request's reply arrives.
pub(crate) type Pending = std_mpsc::Receiver<Result<Reply, String>>;
/// A finished connection attempt: the endpoint, and the node id and network version or why it failed.
type Attempt = (String, Result<(String, String), String>);

/// The network thread. Dropping it closes its queue: the thread drops the client (closing its connections) and
/// ends.
pub(crate) struct NetworkThread {
    jobs: mpsc::UnboundedSender<Job>,
    identity: Arc<NodeIdentity>,
    /// Why the thread stopped, when it panicked.
    died: Arc<std::sync::Mutex<Option<String>>>,
    /// `ruvector.dag_qudag_dp_budget` (f64 bits) as of the last request: only the main thread may read GUCs.
    budget_epsilon: Arc<AtomicU64>,
}

impl NetworkThread {
    /// Starts the thread and its runtime for this node identity.
    pub(crate) fn start(identity: Arc<NodeIdentity>, budget_path: PathBuf) -> Result<Self, String> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let id = identity.clone();
        let died = Arc::new(std::sync::Mutex::new(None));
        let note = died.clone();
        let budget_epsilon = Arc::new(AtomicU64::new(gucs::QUDAG_DP_BUDGET.get().to_bits()));
        let budget = budget_epsilon.clone();
        std::thread::Builder::new()
            .name("ruvector_dag network".into())
            .spawn(move || {
                // Every signal stays with the worker's main thread, where PostgreSQL's handlers expect to run;
                // the runtime's threads inherit this mask.
                crate::replay::block_signals_in_this_thread();
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("ruvector_dag tokio")
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        // Answer every request with the reason.
                        while let Some((_, reply)) = queue.blocking_recv() {
                            let _ = reply.send(Err(format!("RV005 QUDAG_DISCONNECTED: no tokio runtime: {e}")));
                        }
                        return;
                    }
                };
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runtime.block_on(async move {
                        let mut client: Option<QuDagClient> = None;
                        while let Some((request, reply)) = queue.recv().await {
                            let budget = (f64::from_bits(budget.load(Ordering::Relaxed)), budget_path.as_path());
                            let answer = serve(&mut client, &id, budget, request).await;
                            let _ = reply.send(answer);
                        }
                    })
                }));
                if let Err(panic) = served {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "panic".into());
                    // Not PostgreSQL's logging: this is not the worker's main thread. stderr goes to the log.
                    eprintln!("ruvector_dag_learner: the network thread stopped: {why}");
                    *note.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                }
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| format!("RV005 QUDAG_DISCONNECTED: cannot start the network thread: {e}"))?;
        Ok(Self { jobs, identity, died, budget_epsilon })
    }

    /// The node identity the thread runs with.
    pub(crate) fn identity(&self) -> &Arc<NodeIdentity> {
        &self.identity
    }

    /// Queues `request`; its reply arrives on the returned channel.
    pub(crate) fn send(&self, request: Request) -> Result<Pending, String> {
        self.budget_epsilon.store(gucs::QUDAG_DP_BUDGET.get().to_bits(), Ordering::Relaxed);
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.jobs.send((request, tx)).map_err(|_| self.stopped())?;
        Ok(rx)
    }

    /// Whether the thread ended (it then drops every request).
    pub(crate) fn is_stopped(&self) -> bool {
        self.jobs.is_closed()
    }

    fn stopped(&self) -> String {
        match &*self.died.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => format!("RV005 QUDAG_DISCONNECTED: the network thread stopped: {why}"),
            None => "RV005 QUDAG_DISCONNECTED: the network thread stopped".to_owned(),
        }
    }

    /// Sends `request` and waits for the reply (at most the network timeout, twice, and a margin: a request may
    /// queue behind one other).
    pub(crate) fn call(&self, request: Request) -> Result<Reply, String> {
        self.send(request)?.recv_timeout(NETWORK_TIMEOUT * 2 + Duration::from_secs(5)).map_err(|e| match e {
            std_mpsc::RecvTimeoutError::Timeout => {
                "RV005 QUDAG_DISCONNECTED: the network thread did not answer in time".to_owned()
            }
            std_mpsc::RecvTimeoutError::Disconnected => self.stopped(),
        })?
    }
}

const NOT_CONNECTED: &str =
    "RV005 QUDAG_DISCONNECTED: not connected; call ruvector.qudag_connect(endpoint) or set ruvector.dag_qudag_endpoint";

/// Carries out one request on the network thread. No PostgreSQL calls here (GUCs included): this is not the
/// worker's main thread; `budget` is the privacy budget's total ε and file.
async fn serve(
    client: &mut Option<QuDagClient>,
    identity: &Arc<NodeIdentity>,
    (budget_epsilon, budget_path): (f64, &std::path::Path),
    request: Request,
) -> Result<Reply, String> {
    let text = |e: ruvector_dag_network::NetworkError| e.to_string();
    if let Request::Connect { endpoint } = &request {
        // Replace the old connection first: its node would otherwise keep the budget file's lock and sockets.
        *client = None;
        let options = ClientOptions {
            timeout: NETWORK_TIMEOUT,
            identity: Some(identity.clone()),
            budget_epsilon,
            budget_path: Some(budget_path.to_owned()),
            ..ClientOptions::default()
        };
        let c = QuDagClient::connect_with(endpoint, options).await.map_err(text)?;
        let network_version = format!(
            "ruvector-dag-network {} (protocol {}, {} validators, key exchange {})",
            env!("CARGO_PKG_VERSION"),
            ruvector_dag_network::envelope::PROTOCOL_VERSION,
            c.params().validators.len(),
            c.negotiated_group().unwrap_or_else(|| "unknown".into()),
        );
        let node_id = hex_id(&c.peer_id().0);
        *client = Some(c);
        return Ok(Reply::Connected { node_id, network_version });
    }
    let Some(c) = client.as_ref() else {
        return match request {
            Request::Status => Ok(Reply::Status { connected: false, peers: 0, round: 0 }),
            _ => Err(NOT_CONNECTED.into()),
        };
    };
    match request {
        Request::Connect { .. } => unreachable!("handled above"),
        Request::Status => {
            let s = c.service().status().await.map_err(text)?;
            Ok(Reply::Status { connected: c.is_connected(), peers: s.peers.len() as u64, round: s.round })
        }
        Request::Propose { vector, metadata, epsilon, stake, .. } => {
            let stake = if stake > 0.0 { stake } else { to_ruv(i128::from(c.params().policy.min_stake)) };
            let proposal = PatternProposal { vector, metadata, noise: laplace_noise(epsilon) };
            let id = c.propose_pattern_bonded(proposal, stake).await.map_err(text)?;
            let status = c.proposal_status(&id).await.map_err(text)?;
            Ok(Reply::Proposed { id: id.to_string(), status, stake })
        }
        Request::ProposalStatus { id } => {
            let id: ProposalId = id.parse().map_err(text)?;
            let status = c.proposal_status(&id).await.map_err(text)?;
            let votes = c.service().votes(id.0).await.map_err(text)?;
            let votes_for = votes.iter().filter(|v| v.endorse).count() as u32;
            Ok(Reply::ProposalStatus { status, votes_for, votes_against: votes.len() as u32 - votes_for })
        }
        Request::Sync { since_round } => c.sync_patterns(since_round).await.map(Reply::Patterns).map_err(text),
        Request::Balance => c.get_balance().await.map(Reply::Balance).map_err(text),
        Request::Stake { amount } => {
            let tx = c.stake(amount).await.map_err(text)?;
            let account = c.staking_info().await.map_err(text)?;
            Ok(Reply::Staked { new_stake: to_ruv(account.staked), tx: tx.to_string() })
        }
        Request::ClaimRewards => c
            .claim_rewards_item()
            .await
            .map(|claimed| Reply::Claimed(claimed.map(|(amount, id)| (amount, id.to_string()))))
            .map_err(text),
        Request::ReportImprovement { id, index, improvement } => {
            let id: ProposalId = id.parse().map_err(text)?;
            let tx = c.report_improvement(&id, index, improvement).await.map_err(text)?;
            Ok(Reply::Reported { tx: tx.to_string() })
        }
        Request::StakingInfo => {
            let a = c.staking_info().await.map_err(text)?;
            Ok(Reply::StakingInfo {
                staked: to_ruv(a.staked),
                pending_rewards: to_ruv(a.pending_rewards),
                unlock_ms: a.unlock_ms,
            })
        }
    }
}

/// A finalized pattern's key in `ruvector.dag_qudag_imports`.
pub(crate) fn import_key(p: &ConsensusPattern) -> (String, i32) {
    (hex_id(&p.proposal), p.index as i32)
}

/// Status names used in SQL.
pub(crate) fn status_name(s: ConsensusStatus) -> &'static str {
    match s {
        ConsensusStatus::Pending => "pending",
        ConsensusStatus::Finalized => "finalized",
        ConsensusStatus::Rejected => "rejected",
    }
}

const OFF: &str = "RV005 QUDAG_DISCONNECTED: pattern sharing is off; set ruvector.dag_qudag_enabled = on and reload";

fn unexpected(reply: Reply) -> String {
    format!("unexpected reply from the network thread: {reply:?}")
}

fn now_unix_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The file in the node directory that remembers the endpoint last connected to from SQL.
fn remembered_endpoint_file() -> Option<PathBuf> {
    crate::qudag::node_dir().ok().map(|d| d.join("endpoint"))
}

/// The endpoint to connect to: `ruvector.dag_qudag_endpoint`, else the one last connected to from SQL.
fn configured_endpoint() -> Option<String> {
    gucs::qudag_endpoint().or_else(|| {
        let text = std::fs::read_to_string(remembered_endpoint_file()?).ok()?;
        Some(text.trim().to_owned()).filter(|s| !s.is_empty())
    })
}

fn set_connected(connected: bool) {
    if let Some(c) = control() {
        c.qudag_connected.store(u32::from(connected), Ordering::Relaxed);
    }
}

/// The worker's pattern-sharing state.
#[derive(Default)]
pub(crate) struct Sharing {
    thread: Option<NetworkThread>,
    /// The endpoint the client is connected to.
    endpoint: Option<String>,
    /// Finalized patterns already imported, by (proposal id, index); read from the table on first use.
    imported: Option<FxHashSet<(String, i32)>>,
    next_connect: Option<Instant>,
    /// A connection the worker started on its own (to the configured endpoint), not waited for.
    connecting: Option<(String, Pending)>,
    next_sync: Option<Instant>,
    next_refresh: Option<Instant>,
    /// The round after the newest pattern the periodic import saw (the client's node counts from 0 again after a
    /// restart; the imports table keeps a pattern from being imported twice).
    cursor: u64,
    /// When the last import ran and how many patterns it added.
    last_sync: Option<(Instant, u32)>,
    /// `ruvector.dag_qudag_endpoint` as last seen (outer `None`: not yet): a new value after a reload is connected
    /// to.
    guc_endpoint: Option<Option<String>>,
}

impl Sharing {
    /// Stops the network thread (closing its connections).
    pub(crate) fn stop(&mut self) {
        *self = Sharing { imported: self.imported.take(), ..Sharing::default() };
        set_connected(false);
    }

    fn thread(&mut self) -> Result<&NetworkThread, String> {
        if self.thread.as_ref().is_some_and(NetworkThread::is_stopped) {
            // It died (logged): start afresh, unconnected.
            self.stop();
        }
        if self.thread.is_none() {
            let identity = crate::qudag::node_identity()?;
            let budget = crate::qudag::node_dir()?.join("privacy_budget.json");
            self.thread = Some(NetworkThread::start(identity, budget)?);
        }
        Ok(self.thread.as_ref().expect("started above"))
    }

    fn call(&mut self, request: Request) -> Result<Reply, String> {
        self.thread()?.call(request)
    }

    fn connect(&mut self, endpoint: &str) -> Result<(String, String), String> {
        self.endpoint = None;
        self.connecting = None;
        set_connected(false);
        let reply = self.call(Request::Connect { endpoint: endpoint.to_owned() });
        self.connected(endpoint, reply)
    }

    fn connected(&mut self, endpoint: &str, reply: Result<Reply, String>) -> Result<(String, String), String> {
        match reply? {
            Reply::Connected { node_id, network_version } => {
                self.endpoint = Some(endpoint.to_owned());
                self.next_sync = None;
                set_connected(true);
                Ok((node_id, network_version))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Starts connecting to `endpoint` without waiting; [`Sharing::poll_connecting`] completes it.
    fn start_connecting(&mut self, endpoint: String) -> Result<(), String> {
        let pending = self.thread()?.send(Request::Connect { endpoint: endpoint.clone() })?;
        self.connecting = Some((endpoint, pending));
        Ok(())
    }

    /// The outcome of a connection started by [`Sharing::start_connecting`], once there is one.
    fn poll_connecting(&mut self) -> Option<Attempt> {
        let (endpoint, pending) = self.connecting.take()?;
        match pending.try_recv() {
            Ok(reply) => {
                let outcome = self.connected(&endpoint, reply);
                Some((endpoint, outcome))
            }
            Err(std_mpsc::TryRecvError::Empty) => {
                self.connecting = Some((endpoint, pending));
                None
            }
            Err(std_mpsc::TryRecvError::Disconnected) => {
                let why =
                    self.thread.as_ref().map_or_else(|| "RV005 QUDAG_DISCONNECTED".into(), NetworkThread::stopped);
                Some((endpoint, Err(why)))
            }
        }
    }

    fn sync_status(&self) -> String {
        match (&self.endpoint, self.last_sync) {
            (None, _) => "disconnected".into(),
            (Some(_), None) => "connected, not synced yet".into(),
            (Some(_), Some((at, added))) => {
                format!("synced {} s ago ({added} patterns imported)", at.elapsed().as_secs())
            }
        }
    }
}

impl Learner {
    /// Carries out a `qudag_*` request: the JSON reply, and whether the learned state changed.
    pub(super) fn network_request(&mut self, payload: &[u8]) -> Result<(Vec<u8>, bool), String> {
        if !gucs::QUDAG_ENABLED.get() {
            return Err(OFF.into());
        }
        let request: Request = serde_json::from_slice(payload).map_err(|e| format!("network request: {e}"))?;
        let reply = match request {
            Request::Connect { endpoint } => {
                let (node_id, network_version) = self.sharing.connect(&endpoint)?;
                if let Some(file) = remembered_endpoint_file() {
                    if let Err(e) = std::fs::write(&file, &endpoint) {
                        warning!("ruvector_dag: cannot remember the endpoint in {}: {e}", file.display());
                    }
                }
                json!({ "connected": true, "node_id": node_id, "network_version": network_version })
            }
            Request::Status => {
                let node_id = hex_id(&self.sharing.thread()?.identity().peer_id().0);
                let (connected, peers, round) = match self.sharing.call(Request::Status)? {
                    Reply::Status { connected, peers, round } => (connected, peers, round),
                    other => return Err(unexpected(other)),
                };
                set_connected(connected);
                json!({
                    "connected": connected,
                    "node_id": node_id,
                    "peers": peers,
                    "latest_round": round,
                    "sync_status": self.sharing.sync_status(),
                })
            }
            Request::Sync { since_round } => {
                let (received, applied, conflicts) = self.import_finalized(since_round)?;
                let reply = json!({ "received": received, "applied": applied, "conflicts": conflicts });
                return Ok((reply.to_string().into_bytes(), applied > 0));
            }
            Request::Propose { ref vector, ref metadata, epsilon, submitted_by, .. } => {
                let (vector, metadata) = (vector.clone(), metadata.to_string());
                let (id, status, stake) = match self.sharing.call(request)? {
                    Reply::Proposed { id, status, stake } => (id, status, stake),
                    other => return Err(unexpected(other)),
                };
                let submitted_at_us = now_unix_us();
                let status = status_name(status);
                let row_id = id.clone();
                BackgroundWorker::transaction(move || {
                    if super::extension_installed() {
                        Spi::run_with_args(
                            "INSERT INTO ruvector.dag_qudag_proposals
                                 (proposal_id, submitted_at, submitted_by, status, stake, epsilon, pattern_vector, metadata)
                             VALUES ($1, to_timestamp($2::float8 / 1e6), $3, $4, $5, $6, $7, $8::jsonb)
                             ON CONFLICT (proposal_id) DO NOTHING",
                            &[
                                row_id.into(),
                                submitted_at_us.into(),
                                pg_sys::Oid::from(submitted_by).into(),
                                status.into(),
                                stake.into(),
                                epsilon.into(),
                                vector.into(),
                                metadata.into(),
                            ],
                        )
                        .unwrap_or_else(|e| {
                            fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("recording the proposal: {e}"))
                        });
                    }
                });
                json!({ "proposal_id": id, "status": status, "submitted_at_us": submitted_at_us })
            }
            Request::ProposalStatus { id } => self.proposal_status(id)?,
            Request::Balance => match self.sharing.call(request)? {
                Reply::Balance(balance) => json!({ "balance": balance }),
                other => return Err(unexpected(other)),
            },
            Request::Stake { .. } => match self.sharing.call(request)? {
                Reply::Staked { new_stake, tx } => json!({ "new_stake": new_stake, "tx_hash": tx }),
                other => return Err(unexpected(other)),
            },
            Request::ClaimRewards => match self.sharing.call(request)? {
                Reply::Claimed(claimed) => json!({ "claimed": claimed }),
                other => return Err(unexpected(other)),
            },
            Request::ReportImprovement { .. } => match self.sharing.call(request)? {
                Reply::Reported { tx } => json!({ "tx_hash": tx }),
                other => return Err(unexpected(other)),
            },
            Request::StakingInfo => match self.sharing.call(request)? {
                Reply::StakingInfo { staked, pending_rewards, unlock_ms } => {
                    json!({ "staked": staked, "pending_rewards": pending_rewards, "unlock_ms": unlock_ms })
                }
                other => return Err(unexpected(other)),
            },
        };
        Ok((reply.to_string().into_bytes(), false))
    }

    /// Where a proposal stands, with its row in `ruvector.dag_qudag_proposals` brought up to date.
    fn proposal_status(&mut self, id: String) -> Result<serde_json::Value, String> {
        let (status, votes_for, votes_against) = match self.sharing.call(Request::ProposalStatus { id: id.clone() })? {
            Reply::ProposalStatus { status, votes_for, votes_against } => (status, votes_for, votes_against),
            other => return Err(unexpected(other)),
        };
        let status = status_name(status);
        let recorded: Option<Option<i64>> = BackgroundWorker::transaction(move || {
            if !super::extension_installed() {
                return None;
            }
            Spi::get_one_with_args::<i64>(
                "UPDATE ruvector.dag_qudag_proposals
                 SET status = $2, votes_for = $3, votes_against = $4, updated_at = now(),
                     finalized_at = CASE WHEN $2 = 'finalized' THEN coalesce(finalized_at, now()) END
                 WHERE proposal_id = $1
                 RETURNING (extract(epoch FROM finalized_at) * 1e6)::int8",
                &[id.into(), status.into(), (votes_for as i32).into(), (votes_against as i32).into()],
            )
            .ok()
        });
        // A proposal made elsewhere (not in the table): finalized as of now.
        let finalized_at_us = match recorded {
            Some(at) => at,
            None => (status == "finalized").then(now_unix_us),
        };
        Ok(json!({
            "status": status,
            "votes_for": votes_for,
            "votes_against": votes_against,
            "finalized_at_us": finalized_at_us,
        }))
    }

    /// Brings the rows of this server's undecided proposals up to date (a few at a time).
    fn refresh_pending_proposals(&mut self) {
        let pending: Vec<String> = BackgroundWorker::transaction(|| {
            if !super::extension_installed() {
                return Vec::new();
            }
            Spi::connect(|c| {
                c.select(
                    "SELECT proposal_id FROM ruvector.dag_qudag_proposals WHERE status = 'pending'
                     ORDER BY updated_at LIMIT 16",
                    None,
                    &[],
                )?
                .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<Vec<_>, spi::SpiError>>()
            })
            .unwrap_or_default()
        });
        for id in pending {
            if let Err(e) = self.proposal_status(id) {
                warning!("ruvector_dag_learner: following a proposal: {e}");
                return;
            }
        }
    }

    /// Imports the patterns finalized from `since_round` on that were not imported before: (received, added,
    /// already imported).
    fn import_finalized(&mut self, since_round: u64) -> Result<(u32, u32, u32), String> {
        let patterns = match self.sharing.call(Request::Sync { since_round })? {
            Reply::Patterns(p) => p,
            other => return Err(unexpected(other)),
        };
        let imported = self.sharing.imported.get_or_insert_with(|| {
            BackgroundWorker::transaction(|| {
                if !super::extension_installed() {
                    return FxHashSet::default();
                }
                Spi::connect(|client| {
                    let rows = client.select(
                        "SELECT proposal_id, pattern_index FROM ruvector.dag_qudag_imports",
                        None,
                        &[],
                    )?;
                    let mut keys = FxHashSet::default();
                    for r in rows {
                        if let (Some(p), Some(i)) = (r.get::<String>(1)?, r.get::<i32>(2)?) {
                            keys.insert((p, i));
                        }
                    }
                    Ok::<_, spi::SpiError>(keys)
                })
                .unwrap_or_default()
            })
        });
        let received = patterns.len() as u32;
        let (mut applied, mut conflicts) = (0u32, 0u32);
        let mut rows = Vec::new();
        for p in patterns {
            self.sharing.cursor = self.sharing.cursor.max(p.round + 1);
            let key = import_key(&p);
            if !imported.insert(key.clone()) {
                conflicts += 1;
                continue;
            }
            let confidence = p.confidence;
            match self.engine.reasoning_bank.import_pattern(p) {
                Ok(id) => {
                    applied += 1;
                    rows.push((key, Some(id as i64), confidence, None));
                }
                Err(e) => rows.push((key, None, confidence, Some(e.to_string()))),
            }
        }
        if !rows.is_empty() {
            BackgroundWorker::transaction(move || {
                if !super::extension_installed() {
                    return;
                }
                for ((proposal, index), pattern_id, confidence, detail) in rows {
                    Spi::run_with_args(
                        "INSERT INTO ruvector.dag_qudag_imports (proposal_id, pattern_index, pattern_id, confidence, detail)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                        &[proposal.into(), index.into(), pattern_id.into(), confidence.into(), detail.into()],
                    )
                    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("recording imports: {e}")));
                }
            });
        }
        self.sharing.last_sync = Some((Instant::now(), applied));
        Ok((received, applied, conflicts))
    }

    /// Between requests: connects to the configured endpoint (retrying every minute), imports newly finalized
    /// patterns every `ruvector.dag_qudag_sync_interval`, and stops the network when sharing is turned off.
    pub(super) fn share(&mut self) {
        if !gucs::QUDAG_ENABLED.get() {
            if self.sharing.thread.is_some() {
                self.sharing.stop();
                log!("ruvector_dag_learner: pattern sharing turned off; network stopped");
            }
            return;
        }
        let now = Instant::now();
        let guc = gucs::qudag_endpoint();
        if self.sharing.guc_endpoint.as_ref() != Some(&guc) {
            // The configured endpoint changed (SIGHUP): connect there, now (at start the usual path connects).
            let changed = self.sharing.guc_endpoint.is_some();
            self.sharing.guc_endpoint = Some(guc.clone());
            if let Some(endpoint) = guc.filter(|e| changed && self.sharing.endpoint.as_ref() != Some(e)) {
                self.sharing.endpoint = None;
                set_connected(false);
                self.sharing.next_connect = Some(now + RECONNECT_AFTER);
                if let Err(e) = self.sharing.start_connecting(endpoint) {
                    warning!("ruvector_dag_learner: pattern sharing: {e} (trying again in a minute)");
                }
            }
        }
        if let Some((endpoint, outcome)) = self.sharing.poll_connecting() {
            match outcome {
                Ok((node_id, _)) => log!("ruvector_dag_learner: node {node_id} connected to {endpoint}"),
                Err(e) => warning!("ruvector_dag_learner: pattern sharing: {e} (trying again in a minute)"),
            }
        }
        if self.sharing.endpoint.is_none() {
            if self.sharing.connecting.is_some() || self.sharing.next_connect.is_some_and(|t| now < t) {
                return;
            }
            let Some(endpoint) = configured_endpoint() else { return };
            self.sharing.next_connect = Some(now + RECONNECT_AFTER);
            if let Err(e) = self.sharing.start_connecting(endpoint) {
                warning!("ruvector_dag_learner: pattern sharing: {e} (trying again in a minute)");
            }
            return;
        }
        if self.sharing.next_refresh.is_none_or(|t| now >= t) {
            self.sharing.next_refresh = Some(now + REFRESH_PROPOSALS);
            self.refresh_pending_proposals();
        }
        let interval = gucs::QUDAG_SYNC_INTERVAL_S.get();
        if interval > 0 && self.sharing.next_sync.is_none_or(|t| now >= t) {
            self.sharing.next_sync = Some(now + Duration::from_secs(interval as u64));
            match self.import_finalized(self.sharing.cursor) {
                Ok((_, applied, _)) if applied > 0 => {
                    let status = self.save();
                    if let Some(c) = control() {
                        c.persist_status.store(status, Ordering::Relaxed);
                    }
                    self.publish();
                }
                Ok(_) => {}
                Err(e) => warning!("ruvector_dag_learner: importing shared patterns: {e}"),
            }
        }
    }
}
