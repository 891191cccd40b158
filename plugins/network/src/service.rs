//! Runs a [`Node`] over a transport on a tokio runtime, and answers questions about it through a handle.
//!
//! The service task owns the node. It hands received envelopes to the node and sends what comes back, greets
//! peers as they connect (a hello and a sync request), runs anti-entropy on every tick, and, on a testnet,
//! funds each client that introduces itself (a faucet: transfers from this node's account, one at a time).

use crate::envelope::now_ms;
use crate::error::{NetworkError, Result};
use crate::node::{Node, NodeStats, Outgoing};
use crate::privacy::SampleBucket;
use crate::protocol::{Action, ItemId, NetworkParams, SignedItem, Vote};
use crate::state::{Account, Outcome};
use ruvector_dag::network::{NetworkTransport, PeerId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Anti-entropy and greeting period.
    pub tick: Duration,
    /// Millionths of rUv the faucet gives each new client (None: no faucet).
    pub faucet: Option<u64>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self { tick: Duration::from_millis(250), faucet: None }
    }
}

/// A finalized pattern as a client receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsensusPattern {
    /// The proposal it came in.
    pub proposal: ItemId,
    /// Its position in the proposal.
    pub index: u32,
    /// The serving node's round at which it was decided.
    pub round: u64,
    /// The noisy centroid.
    pub vector: Vec<f32>,
    /// Quality, rounded to 0.1.
    pub quality: f32,
    /// Executions behind it, bucketed.
    pub samples: SampleBucket,
    /// ε it was released with.
    pub epsilon: f64,
    /// Its metadata (JSON text).
    pub metadata: String,
    /// Share of validator stake that endorsed it.
    pub confidence: f64,
    /// Who proposed it.
    pub proposer: PeerId,
    /// Validators that endorsed it.
    pub validators: Vec<PeerId>,
}

impl From<ConsensusPattern> for ruvector_dag_learning::ImportedPattern {
    /// The centroid, quality and consensus confidence; settings from the metadata's `settings` object, if any.
    fn from(p: ConsensusPattern) -> Self {
        let settings = serde_json::from_str::<serde_json::Value>(&p.metadata)
            .ok()
            .and_then(|m| m.get("settings").and_then(|s| s.as_object().cloned()))
            .map(|o| {
                o.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect()
            })
            .unwrap_or_default();
        Self { centroid: p.vector, quality: f64::from(p.quality), confidence: p.confidence, settings }
    }
}

/// A node's state at a glance.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// Its id.
    pub peer_id: PeerId,
    /// Whether it votes.
    pub validator: bool,
    /// Connected peers.
    pub peers: Vec<PeerId>,
    /// Its decision log length.
    pub round: u64,
    /// Items finalized, rejected, pending.
    pub finalized: usize,
    /// Items rejected.
    pub rejected: usize,
    /// Items pending.
    pub pending: usize,
    /// Counters.
    pub stats: NodeStats,
}

enum Command {
    Submit(Action, oneshot::Sender<Result<ItemId>>),
    Outcome(ItemId, oneshot::Sender<Outcome>),
    Patterns(u64, oneshot::Sender<Vec<ConsensusPattern>>),
    Account(Option<PeerId>, oneshot::Sender<Account>),
    Status(oneshot::Sender<NodeStatus>),
    Item(ItemId, oneshot::Sender<Option<SignedItem>>),
    Votes(ItemId, oneshot::Sender<Vec<Vote>>),
}

/// A handle on a running node.
#[derive(Debug)]
pub struct NodeService {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    peer_id: PeerId,
}

impl Drop for NodeService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn stopped() -> NetworkError {
    NetworkError::Disconnected("the node service stopped".into())
}

impl NodeService {
    /// Starts `node` over `transport` on the current tokio runtime.
    pub fn spawn(node: Node, transport: Arc<dyn NetworkTransport>, options: ServiceOptions) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let peer_id = node.peer_id();
        let task = tokio::spawn(run(node, transport, options, rx));
        Self { commands: tx, task, peer_id }
    }

    /// The node's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// Submits an item of this node's account; waits (up to `timeout`) for its previous item to be decided first.
    pub async fn submit(&self, action: Action, timeout: Duration) -> Result<ItemId> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.ask(|tx| Command::Submit(action.clone(), tx)).await? {
                Err(NetworkError::Busy(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                other => return other,
            }
        }
    }

    /// The outcome of an item as this node sees it.
    pub async fn outcome(&self, id: ItemId) -> Result<Outcome> {
        self.ask(|tx| Command::Outcome(id, tx)).await
    }

    /// Waits until the item is decided or `timeout` passes; returns the outcome then.
    pub async fn wait_for(&self, id: ItemId, timeout: Duration) -> Result<Outcome> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let outcome = self.outcome(id).await?;
            if outcome != Outcome::Pending || tokio::time::Instant::now() >= deadline {
                return Ok(outcome);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Finalized patterns decided from round `since` on.
    pub async fn patterns_since(&self, since: u64) -> Result<Vec<ConsensusPattern>> {
        self.ask(|tx| Command::Patterns(since, tx)).await
    }

    /// An account (this node's by default) in the node's ledger.
    pub async fn account(&self, who: Option<PeerId>) -> Result<Account> {
        self.ask(|tx| Command::Account(who, tx)).await
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus> {
        self.ask(Command::Status).await
    }

    /// The votes the node holds on an item.
    pub async fn votes(&self, id: ItemId) -> Result<Vec<Vote>> {
        self.ask(|tx| Command::Votes(id, tx)).await
    }

    /// An item the node holds.
    pub async fn item(&self, id: ItemId) -> Result<Option<SignedItem>> {
        self.ask(|tx| Command::Item(id, tx)).await
    }
}

async fn dispatch(transport: &dyn NetworkTransport, params: &NetworkParams, out: Vec<Outgoing>) {
    for o in out {
        match o {
            Outgoing::To(peer, env) => {
                let _ = transport.send(peer, env).await;
            }
            Outgoing::All(env) => {
                for peer in transport.peers() {
                    let _ = transport.send(peer, env.clone()).await;
                }
            }
            Outgoing::Clients(env) => {
                for peer in transport.peers().into_iter().filter(|p| params.validator(p).is_none()) {
                    let _ = transport.send(peer, env.clone()).await;
                }
            }
        }
    }
}

fn patterns_since(node: &Node, since: u64) -> Vec<ConsensusPattern> {
    let state = node.state();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (round, id) in state.decided_since(since) {
        if state.outcome(&id) != Outcome::Finalized || !seen.insert(id) {
            continue;
        }
        let Some(item) = state.item(&id) else { continue };
        let Action::ProposePatterns { patterns, .. } = &item.body.action else { continue };
        let validators: Vec<PeerId> = state.votes(&id).into_iter().filter(|v| v.endorse).map(|v| v.validator).collect();
        for (index, p) in patterns.iter().enumerate() {
            out.push(ConsensusPattern {
                proposal: id,
                index: index as u32,
                round,
                vector: p.pattern.vector(),
                quality: p.pattern.quality,
                samples: p.pattern.samples,
                epsilon: p.pattern.epsilon,
                metadata: p.metadata.clone(),
                confidence: state.confidence(&id),
                proposer: item.body.account,
                validators: validators.clone(),
            });
        }
    }
    out
}

async fn run(
    mut node: Node,
    transport: Arc<dyn NetworkTransport>,
    options: ServiceOptions,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut tick = tokio::time::interval(options.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let params = node.state().params().clone();
    let mut greeted: BTreeSet<PeerId> = BTreeSet::new();
    let mut faucet_queue: VecDeque<PeerId> = VecDeque::new();
    let mut funded: HashSet<PeerId> = HashSet::new();
    loop {
        let out = tokio::select! {
            received = transport.recv() => match received {
                Ok((from, env)) => node.handle(from, &env, now_ms()),
                Err(_) => return,
            },
            _ = tick.tick() => {
                let mut out = Vec::new();
                let connected: BTreeSet<PeerId> = transport.peers().into_iter().collect();
                for peer in connected.difference(&greeted) {
                    if let Ok(hello) = node.hello() {
                        out.push(Outgoing::To(*peer, hello));
                    }
                    node.track_peer(*peer);
                }
                greeted = connected;
                out.extend(node.tick(now_ms()));
                out
            },
            command = commands.recv() => {
                let Some(command) = command else { return };
                match command {
                    Command::Submit(action, reply) => match node.submit(action, now_ms()) {
                        Ok((id, out)) => {
                            let _ = reply.send(Ok(id));
                            out
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            Vec::new()
                        }
                    },
                    Command::Outcome(id, reply) => {
                        let _ = reply.send(node.state().outcome(&id));
                        Vec::new()
                    }
                    Command::Patterns(since, reply) => {
                        let _ = reply.send(patterns_since(&node, since));
                        Vec::new()
                    }
                    Command::Account(who, reply) => {
                        let _ = reply.send(node.state().ledger().account(&who.unwrap_or(node.peer_id())));
                        Vec::new()
                    }
                    Command::Status(reply) => {
                        let counts = node.state().counts();
                        let _ = reply.send(NodeStatus {
                            peer_id: node.peer_id(),
                            validator: node.is_validator(),
                            peers: transport.peers(),
                            round: node.state().round(),
                            finalized: counts.get(&Outcome::Finalized).copied().unwrap_or(0),
                            rejected: counts.get(&Outcome::Rejected).copied().unwrap_or(0),
                            pending: counts.get(&Outcome::Pending).copied().unwrap_or(0),
                            stats: node.stats(),
                        });
                        Vec::new()
                    }
                    Command::Item(id, reply) => {
                        let _ = reply.send(node.state().item(&id).cloned());
                        Vec::new()
                    }
                    Command::Votes(id, reply) => {
                        let _ = reply.send(node.state().votes(&id));
                        Vec::new()
                    }
                }
            }
        };
        dispatch(transport.as_ref(), &params, out).await;
        if let Some(amount) = options.faucet {
            for peer in node.take_introduced() {
                let known = node.state().ledger().account(&peer);
                if known.balance == 0 && known.staked == 0 && funded.insert(peer) {
                    faucet_queue.push_back(peer);
                }
            }
            if node.idle()
                && let Some(peer) = faucet_queue.front().copied()
                && let Ok((_, out)) = node.submit(Action::Transfer { to: peer, amount }, now_ms())
            {
                faucet_queue.pop_front();
                dispatch(transport.as_ref(), &params, out).await;
            }
        }
    }
}
