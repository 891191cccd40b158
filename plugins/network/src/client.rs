//! The client API: connect to a validator, propose differentially private patterns, follow consensus, sync
//! finalized patterns, and use the rUv ledger.
//!
//! Endpoints are `ruvector://<node id hex>@host:port` (the validator's identity is checked during the TLS
//! binding) or plain `host:port` (trust on first use). A client learns the validator set from its endpoint,
//! runs a non-voting node in the background (on the caller's tokio runtime) and talks to the network through it.

use crate::envelope::{EnvelopeSigner, EnvelopeVerifier, MessageKind, VerifierPolicy};
use crate::error::{NetworkError, Result};
use crate::identity::NodeIdentity;
use crate::node::{Message, Node};
use crate::privacy::{ClipParams, NoiseSpec, PrivacyBudget};
use crate::protocol::{Action, ItemId, NetworkParams, SharedPattern, hex_id, to_micro, to_ruv};
use crate::service::{ConsensusPattern, NodeService, ServiceOptions};
use crate::state::{Account, Outcome};
use crate::tls::{TlsConfig, TlsTransport};
use ruvector_dag::network::{NetworkTransport, PeerId};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A pattern to share: its vector, a description, and the privacy level of its release.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternProposal {
    /// The pattern's centroid.
    pub vector: Vec<f32>,
    /// Description; `quality` (0–1) and `samples` are read from it when present (defaults 0.5 and 1).
    pub metadata: serde_json::Value,
    /// Privacy of the release.
    pub noise: NoiseSpec,
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsensusStatus {
    /// Not decided yet.
    Pending,
    /// Endorsed by more than 2/3 of the validator stake.
    Finalized,
    /// Rejected by more than 1/3 of the validator stake.
    Rejected,
}

impl From<Outcome> for ConsensusStatus {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Pending => Self::Pending,
            Outcome::Finalized => Self::Finalized,
            Outcome::Rejected => Self::Rejected,
        }
    }
}

/// An item's id, shown as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProposalId(pub ItemId);

impl fmt::Display for ProposalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_id(&self.0))
    }
}

impl std::str::FromStr for ProposalId {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex32(s).map(ProposalId).ok_or_else(|| NetworkError::Encoding(format!("not a 64-hex-digit id: {s}")))
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A parsed endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Socket address.
    pub addr: SocketAddr,
    /// The node expected there, if given.
    pub peer: Option<PeerId>,
}

impl std::str::FromStr for Endpoint {
    type Err = NetworkError;
    /// `ruvector://<64 hex>@host:port` or `host:port`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| NetworkError::Disconnected(format!("endpoint `{s}`: {why}"));
        let rest = s.strip_prefix("ruvector://").unwrap_or(s);
        let (peer, hostport) = match rest.split_once('@') {
            Some((id, hp)) => (Some(PeerId(parse_hex32(id).ok_or_else(|| bad("node id must be 64 hex digits"))?)), hp),
            None => (None, rest),
        };
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| bad(&format!("not host:port ({e})")))?
            .next()
            .ok_or_else(|| bad("host has no address"))?;
        Ok(Self { addr, peer })
    }
}

/// How a client connects and shares.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Deadline for connecting, submitting and the faucet.
    pub timeout: Duration,
    /// The client's identity (a fresh one by default).
    pub identity: Option<Arc<NodeIdentity>>,
    /// Total privacy budget of this client's releases.
    pub budget_epsilon: f64,
    /// Where the budget ledger is kept (in memory by default).
    pub budget_path: Option<PathBuf>,
    /// Clipping and quantisation of releases.
    pub clip: ClipParams,
    /// Bond behind each proposal, rUv.
    pub proposal_stake: f64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            identity: None,
            budget_epsilon: 10.0,
            budget_path: None,
            clip: ClipParams::default(),
            proposal_stake: 10.0,
        }
    }
}

/// A connection to the pattern-sharing network.
#[derive(Debug)]
pub struct QuDagClient {
    service: NodeService,
    transport: Arc<TlsTransport>,
    endpoint: PeerId,
    params: Arc<NetworkParams>,
    budget: Mutex<PrivacyBudget>,
    options: ClientOptions,
}

impl QuDagClient {
    /// Connects to the validator at `endpoint` with default options.
    pub async fn connect(endpoint: &str) -> Result<Self> {
        Self::connect_with(endpoint, ClientOptions::default()).await
    }

    /// Connects to the validator at `endpoint`.
    pub async fn connect_with(endpoint: &str, options: ClientOptions) -> Result<Self> {
        let target: Endpoint = endpoint.parse()?;
        let identity = options.identity.clone().unwrap_or_else(|| Arc::new(NodeIdentity::generate()));
        let budget = match &options.budget_path {
            Some(path) => PrivacyBudget::open(path, options.budget_epsilon)?,
            None => PrivacyBudget::in_memory(options.budget_epsilon)?,
        };
        let local: SocketAddr = if target.addr.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" }.parse().expect("literal");
        let transport = Arc::new(
            TlsTransport::bind(identity.clone(), local, TlsConfig::default())
                .await
                .map_err(|e| NetworkError::Disconnected(e.to_string()))?,
        );
        transport.add_peer(target.addr, target.peer);
        let peer = transport
            .wait_for_peer(target.peer, options.timeout)
            .await
            .map_err(|e| NetworkError::Disconnected(format!("{endpoint}: {e}")))?;
        let params = Arc::new(bootstrap(&transport, &identity, peer, options.timeout).await?);
        let node = Node::new(identity, params.clone(), VerifierPolicy::default());
        let service = NodeService::spawn(node, transport.clone(), ServiceOptions::default());
        let client = Self { service, transport, endpoint: peer, params, budget: Mutex::new(budget), options };
        if client.params.faucet.is_some() {
            client.wait_for_funds().await;
        }
        Ok(client)
    }

    async fn wait_for_funds(&self) {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        while tokio::time::Instant::now() < deadline {
            if self.service.account(None).await.is_ok_and(|a| a.balance > 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether the connection to the endpoint is up.
    pub fn is_connected(&self) -> bool {
        self.transport.peers().contains(&self.endpoint)
    }

    /// This client's node id (its account).
    pub fn peer_id(&self) -> PeerId {
        self.service.peer_id()
    }

    /// The network's parameters as the endpoint gave them.
    pub fn params(&self) -> &NetworkParams {
        &self.params
    }

    /// The key exchange group of the connection to the endpoint.
    pub fn negotiated_group(&self) -> Option<String> {
        self.transport.negotiated_group(&self.endpoint)
    }

    /// Releases the pattern privately (once per distinct vector: a repeat re-sends the first release and spends
    /// nothing) and proposes it, backed by the configured stake.
    pub async fn propose_pattern(&self, proposal: PatternProposal) -> Result<ProposalId> {
        self.propose_pattern_bonded(proposal, self.options.proposal_stake).await
    }

    /// As [`propose_pattern`](Self::propose_pattern), with a bond of `stake` rUv behind the proposal (at least the
    /// network's minimum, [`ValidationPolicy::min_stake`](crate::protocol::ValidationPolicy::min_stake)).
    pub async fn propose_pattern_bonded(&self, proposal: PatternProposal, stake: f64) -> Result<ProposalId> {
        let quality = proposal.metadata.get("quality").and_then(serde_json::Value::as_f64).unwrap_or(0.5);
        let samples = proposal.metadata.get("samples").and_then(serde_json::Value::as_u64).unwrap_or(1);
        let key = {
            let mut h = blake3::Hasher::new();
            for x in &proposal.vector {
                h.update(&x.to_le_bytes());
            }
            u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
        };
        let pattern = self.budget.lock().expect("budget").release(
            key,
            &proposal.vector,
            quality,
            samples,
            proposal.noise,
            self.options.clip,
        )?;
        let action = Action::ProposePatterns {
            patterns: vec![SharedPattern { pattern, metadata: proposal.metadata.to_string() }],
            stake: to_micro(stake)?,
        };
        self.service.submit(action, self.options.timeout).await.map(ProposalId)
    }

    /// Where a proposal (or any item) stands now.
    pub async fn proposal_status(&self, id: &ProposalId) -> Result<ConsensusStatus> {
        Ok(self.service.outcome(id.0).await?.into())
    }

    /// Waits until the item is decided or `timeout` passes.
    pub async fn wait_for_consensus(&self, id: &ProposalId, timeout: Duration) -> Result<ConsensusStatus> {
        Ok(self.service.wait_for(id.0, timeout).await?.into())
    }

    /// Finalized patterns decided from `since_round` on, as this client's node received them.
    pub async fn sync_patterns(&self, since_round: u64) -> Result<Vec<ConsensusPattern>> {
        self.service.patterns_since(since_round).await
    }

    /// Spendable rUv.
    pub async fn get_balance(&self) -> Result<f64> {
        Ok(to_ruv(self.service.account(None).await?.balance.max(0)))
    }

    /// The account: balance, stake, pending rewards, lock.
    pub async fn staking_info(&self) -> Result<Account> {
        self.service.account(None).await
    }

    /// Locks `amount` rUv as stake; returns once finalized.
    pub async fn stake(&self, amount: f64) -> Result<ProposalId> {
        self.spend(Action::Stake { amount: to_micro(amount)? }).await
    }

    /// Returns `amount` rUv of stake to the balance (after the lock period); returns once finalized.
    pub async fn unstake(&self, amount: f64) -> Result<ProposalId> {
        self.spend(Action::Unstake { amount: to_micro(amount)? }).await
    }

    /// Reports the latency improvement (`1 − after / before`, 0–1) this node measured with pattern `index` of the
    /// finalized proposal `proposal`; needs stake; returns once finalized. The median of the reports pays the
    /// proposer the accuracy bonus.
    pub async fn report_improvement(&self, proposal: &ProposalId, index: u32, improvement: f64) -> Result<ProposalId> {
        if !(0.0..=1.0).contains(&improvement) {
            return Err(NetworkError::Encoding(format!("improvement {improvement} must be within 0..=1")));
        }
        let improvement_bp = (improvement * 10_000.0).round() as u32;
        self.spend(Action::ReportImprovement { proposal: proposal.0, index, improvement_bp }).await
    }

    /// Moves `amount` rUv to `to`; returns once finalized.
    pub async fn transfer(&self, to: PeerId, amount: f64) -> Result<ProposalId> {
        self.spend(Action::Transfer { to, amount: to_micro(amount)? }).await
    }

    /// Moves all pending rewards to the balance; returns the rUv claimed (0 when there was nothing to claim).
    pub async fn claim_rewards(&self) -> Result<f64> {
        Ok(self.claim_rewards_item().await?.map_or(0.0, |(amount, _)| amount))
    }

    /// As [`claim_rewards`](Self::claim_rewards), with the id of the finalized claim (`None` when there was
    /// nothing to claim).
    pub async fn claim_rewards_item(&self) -> Result<Option<(f64, ProposalId)>> {
        let pending = self.service.account(None).await?.pending_rewards;
        if pending <= 0 {
            return Ok(None);
        }
        let id = self.spend(Action::ClaimRewards { amount: pending as u64 }).await?;
        Ok(Some((to_ruv(pending), id)))
    }

    async fn spend(&self, action: Action) -> Result<ProposalId> {
        let id = self.service.submit(action, self.options.timeout).await?;
        match self.service.wait_for(id, self.options.timeout).await? {
            Outcome::Finalized => Ok(ProposalId(id)),
            Outcome::Rejected => {
                let reasons: Vec<String> =
                    self.service.votes(id).await?.into_iter().filter(|v| !v.endorse).map(|v| v.reason).collect();
                Err(NetworkError::Refused(reasons.first().cloned().unwrap_or_else(|| "rejected".into())))
            }
            Outcome::Pending => Err(NetworkError::Disconnected(format!(
                "item {} not decided within {:?}",
                hex_id(&id),
                self.options.timeout
            ))),
        }
    }

    /// The node service behind the client (status, votes, accounts of others).
    pub fn service(&self) -> &NodeService {
        &self.service
    }
}

/// Asks the endpoint for the network parameters; it must be one of the validators it names.
async fn bootstrap(
    transport: &TlsTransport,
    identity: &Arc<NodeIdentity>,
    peer: PeerId,
    timeout: Duration,
) -> Result<NetworkParams> {
    let mut signer = EnvelopeSigner::new(identity.clone());
    for message in [Message::Hello { identity: identity.public().clone() }, Message::ParamsRequest] {
        transport
            .send(peer, message.sign(&mut signer)?)
            .await
            .map_err(|e| NetworkError::Disconnected(e.to_string()))?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (from, env) = tokio::time::timeout(remaining, transport.recv())
            .await
            .map_err(|_| NetworkError::Disconnected("the endpoint did not send the network parameters".into()))?
            .map_err(|e| NetworkError::Disconnected(e.to_string()))?;
        if from != peer || env.kind != MessageKind::Params as u16 {
            continue; // the endpoint's hello and sync traffic: the node will hear it again
        }
        let Ok(Message::Params(params)) = postcard::from_bytes::<Message>(&env.payload) else { continue };
        let validator = params.validator(&peer).ok_or_else(|| {
            NetworkError::Signature("RV006 QUDAG_AUTH_FAILED: the endpoint is not a validator of its network".into())
        })?;
        let mut verifier = EnvelopeVerifier::new(VerifierPolicy::default());
        verifier.add_peer(validator.identity.clone());
        verifier.verify(&env)?;
        if params.total_stake() == 0 {
            return Err(NetworkError::Refused("the network has no validator stake".into()));
        }
        return Ok(*params);
    }
}
