//! A node's protocol logic without input/output: envelopes in, envelopes out.
//!
//! [`Node::handle`] takes one received envelope and returns what to send; [`Node::tick`] returns the periodic
//! anti-entropy requests; [`Node::submit`] signs a new item of this node's account. Transports and runtimes
//! drive it (the in-process loopback in tests, TLS sockets in [`crate::testnet`]), so the protocol is tested
//! deterministically apart from any socket.
//!
//! Dissemination is flooding with de-duplication by content (an item id, a vote digest: a node forwards what
//! it did not hold before) plus pull-based anti-entropy (each node asks each peer for the decisions after its
//! cursor and for undecided items), so a node that was down catches up and a validator that was down votes on
//! what it missed.

use crate::envelope::{EnvelopeSigner, EnvelopeVerifier, MessageKind, RejectionCounts, VerifierPolicy};
use crate::error::{NetworkError, Result};
use crate::identity::{NodeIdentity, PublicIdentity};
use crate::journal::{Entry, Journal};
use crate::protocol::{Action, ItemId, NetworkParams, SignedItem, Vote};
use crate::state::{NetworkState, Outcome};
use ruvector_dag::network::{Envelope, PeerId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Decided items per sync response.
const SYNC_BATCH: usize = 256;
/// Undecided items per sync response.
const SYNC_PENDING: usize = 64;

/// What nodes say to each other (an envelope's payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Introduces the sender's keys.
    Hello {
        /// The sender's public identity.
        identity: PublicIdentity,
    },
    /// An item, first sent or relayed.
    Item(SignedItem),
    /// A vote, first sent or relayed.
    Vote(Vote),
    /// Asks for decisions from round `since` of the receiver's log, and for its undecided items.
    SyncRequest {
        /// The requester's cursor into the receiver's log.
        since: u64,
    },
    /// The answer: items with their votes, and the cursor to ask from next time.
    SyncResponse {
        /// Next cursor.
        next: u64,
        /// The responder's log length: the requester is caught up when `next` reaches it.
        end: u64,
        /// Decided and undecided items.
        items: Vec<SignedItem>,
        /// Their votes.
        votes: Vec<Vote>,
    },
    /// Asks for the network's parameters.
    ParamsRequest,
    /// The network's parameters as the sender holds them.
    Params(Box<NetworkParams>),
}

impl Message {
    /// Encodes this message and signs it as its kind.
    pub(crate) fn sign(&self, signer: &mut EnvelopeSigner) -> Result<Envelope> {
        let payload = postcard::to_stdvec(self).map_err(|e| NetworkError::Encoding(e.to_string()))?;
        signer.sign(self.kind(), payload)
    }

    fn kind(&self) -> MessageKind {
        match self {
            Self::Hello { .. } => MessageKind::Hello,
            Self::Item(item) if matches!(item.body.action, Action::ProposePatterns { .. }) => MessageKind::Proposal,
            Self::Item(_) => MessageKind::Operation,
            Self::Vote(v) if v.endorse => MessageKind::Endorsement,
            Self::Vote(_) => MessageKind::Rejection,
            Self::SyncRequest { .. } => MessageKind::SyncRequest,
            Self::SyncResponse { .. } => MessageKind::SyncResponse,
            Self::ParamsRequest => MessageKind::ParamsRequest,
            Self::Params(_) => MessageKind::Params,
        }
    }
}

/// Where an outgoing envelope goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// To one peer.
    To(PeerId, Envelope),
    /// To every connected peer.
    All(Envelope),
    /// To every connected peer that is not a validator.
    Clients(Envelope),
}

/// Counters of a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Envelope checks.
    pub envelopes: RejectionCounts,
    /// Items and votes refused for a bad signature or an unknown validator.
    pub refused: u64,
    /// Payloads that did not decode or did not match their envelope kind.
    pub malformed: u64,
    /// Votes this node cast.
    pub votes_cast: u64,
    /// Replies this node failed to sign or encode.
    pub local_errors: u64,
}

/// One node's protocol state.
#[derive(Debug)]
pub struct Node {
    identity: Arc<NodeIdentity>,
    signer: EnvelopeSigner,
    verifier: EnvelopeVerifier,
    state: NetworkState,
    validator: bool,
    /// This validator's vote per (account, sequence): it never votes on another item for that slot.
    my_votes: HashMap<(PeerId, u64), Vote>,
    /// Where what it takes in is written, own votes before they are sent (none: memory only).
    journal: Option<Journal>,
    /// Items waiting for an earlier item of their account to be decided here.
    deferred: BTreeSet<ItemId>,
    /// Our cursor into each peer's log.
    cursors: HashMap<PeerId, u64>,
    /// Our own last submitted item.
    own_last: Option<ItemId>,
    /// Non-validator peers that introduced themselves since the last [`Node::take_introduced`].
    introduced: Vec<PeerId>,
    /// Whether a peer's whole log has been pulled once: a (re)started validator votes only after that, so it
    /// judges with a current ledger and knows the votes it cast before a restart.
    synced: bool,
    /// Which tracked peer the next anti-entropy tick asks.
    sync_turn: usize,
    stats: NodeStats,
}

impl Node {
    /// A node for `identity` in the network `params`; it validates only if it is one of the validators.
    pub fn new(identity: Arc<NodeIdentity>, params: Arc<NetworkParams>, policy: VerifierPolicy) -> Self {
        let mut verifier = EnvelopeVerifier::new(policy);
        for v in &params.validators {
            verifier.add_peer(v.identity.clone());
        }
        let validator = params.validator(&identity.peer_id()).is_some();
        let params_alone = params.validators.len() <= 1;
        Self {
            signer: EnvelopeSigner::new(identity.clone()),
            identity,
            verifier,
            state: NetworkState::new(params),
            validator,
            my_votes: HashMap::new(),
            journal: None,
            deferred: BTreeSet::new(),
            cursors: HashMap::new(),
            own_last: None,
            introduced: Vec::new(),
            synced: params_alone,
            sync_turn: 0,
            stats: NodeStats::default(),
        }
    }

    /// Keeps this node's items and votes in the journal at `path` (own votes flushed before they are sent), after
    /// replaying what it holds: a restarted node has the state it had (its peers serve it the rest), a validator
    /// never votes on another item for a slot it voted on, and its journaled votes reach peers by anti-entropy.
    pub fn with_journal(mut self, path: &Path) -> Result<Self> {
        let (journal, entries) = Journal::open(path)?;
        let me = self.peer_id();
        for entry in entries {
            match entry {
                Entry::Item(item) => {
                    let _ = self.state.add_item(item);
                }
                Entry::Vote(vote) => {
                    if vote.validator == me {
                        self.my_votes.insert((vote.account, vote.sequence), vote.clone());
                    }
                    let _ = self.state.add_vote(vote);
                }
            }
        }
        self.journal = Some(journal);
        Ok(self)
    }

    /// Appends to the journal, if any. Only an own vote must reach the disk before anything else happens; a
    /// failure to record anything else costs a replay from peers after a restart, and is counted.
    fn record(&mut self, entry: Entry, durable: bool) -> Result<()> {
        let Some(journal) = &mut self.journal else { return Ok(()) };
        match journal.append(&entry, durable) {
            Err(e) if durable => Err(e),
            Err(_) => {
                self.stats.local_errors += 1;
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// This node's id.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// Its identity.
    pub fn identity(&self) -> &Arc<NodeIdentity> {
        &self.identity
    }

    /// Whether it votes.
    pub fn is_validator(&self) -> bool {
        self.validator
    }

    /// Its view.
    pub fn state(&self) -> &NetworkState {
        &self.state
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        NodeStats { envelopes: self.verifier.counts(), ..self.stats }
    }

    /// Whether `peer`'s keys are known (a validator, or a node that said hello).
    pub fn knows(&self, peer: &PeerId) -> bool {
        self.verifier.peer(peer).is_some()
    }

    fn envelope(&mut self, message: &Message) -> Result<Envelope> {
        message.sign(&mut self.signer)
    }

    /// The hello envelope to send when a connection opens.
    pub fn hello(&mut self) -> Result<Envelope> {
        self.envelope(&Message::Hello { identity: self.identity.public().clone() })
    }

    /// Signs `action` as this node's next item, takes it in and returns its id and the envelopes to send.
    /// Refuses while this node's previous item is undecided (its sequence number would be unknown).
    pub fn submit(&mut self, action: Action, now_ms: u64) -> Result<(ItemId, Vec<Outgoing>)> {
        if let Some(last) = self.own_last
            && self.state.outcome(&last) == Outcome::Pending
        {
            return Err(NetworkError::Busy(crate::protocol::hex_id(&last)));
        }
        let sequence = self.state.ledger().account(&self.peer_id()).next_sequence;
        let item = SignedItem::sign(&self.identity, sequence, now_ms, action)?;
        let id = item.id();
        self.own_last = Some(id);
        let mut out = Vec::new();
        self.take_item(item, now_ms, &mut out)?;
        Ok((id, out))
    }

    /// Handles one envelope received from `from` (the transport's authenticated peer) at `now_ms`.
    pub fn handle(&mut self, from: PeerId, envelope: &Envelope, now_ms: u64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        if self.handle_inner(from, envelope, now_ms, &mut out).is_err() {
            // Only our own signing or encoding can fail here; the reply is dropped and counted.
            self.stats.local_errors += 1;
        }
        out
    }

    fn handle_inner(&mut self, from: PeerId, env: &Envelope, now_ms: u64, out: &mut Vec<Outgoing>) -> Result<()> {
        if env.sender != from {
            self.stats.malformed += 1;
            return Ok(());
        }
        let message: Message = match postcard::from_bytes(&env.payload) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return Ok(());
            }
        };
        if let Message::Hello { identity } = &message
            && identity.peer_id() == env.sender
            && self.verifier.peer(&env.sender).is_none()
        {
            self.verifier.add_peer(identity.clone());
            self.introduced.push(env.sender);
        }
        let kind = match self.verifier.verify_at(env, now_ms) {
            Ok(kind) => kind,
            Err(_) => return Ok(()), // counted by the verifier
        };
        if kind != message.kind() {
            self.stats.malformed += 1;
            return Ok(());
        }
        match message {
            Message::Hello { .. } => {
                // Answer with our own hello (once: the peer now knows us) and pull its log.
                if let std::collections::hash_map::Entry::Vacant(e) = self.cursors.entry(from) {
                    e.insert(0);
                    let hello = self.hello()?;
                    out.push(Outgoing::To(from, hello));
                    let request = self.envelope(&Message::SyncRequest { since: 0 })?;
                    out.push(Outgoing::To(from, request));
                }
            }
            Message::Item(item) => self.take_item(item, now_ms, out)?,
            Message::Vote(vote) => self.take_vote(vote, now_ms, out)?,
            Message::SyncRequest { since } => {
                let response = self.sync_response(since);
                let env = self.envelope(&response)?;
                out.push(Outgoing::To(from, env));
            }
            Message::ParamsRequest => {
                let params = Message::Params(Box::new((**self.state.params()).clone()));
                let env = self.envelope(&params)?;
                out.push(Outgoing::To(from, env));
            }
            Message::Params(_) => {} // only a bootstrapping client asks for them
            Message::SyncResponse { next, end, items, votes } => {
                let caught_up = next >= end;
                for item in items {
                    self.take_item(item, now_ms, out)?;
                }
                for vote in votes {
                    self.take_vote(vote, now_ms, out)?;
                }
                let cursor = self.cursors.entry(from).or_insert(0);
                *cursor = (*cursor).max(next);
                if caught_up && !self.synced {
                    self.synced = true;
                    self.reconsider(now_ms, out)?;
                }
            }
        }
        Ok(())
    }

    fn sync_response(&self, since: u64) -> Message {
        let mut items = Vec::new();
        let mut votes = Vec::new();
        let mut next = since;
        for (round, id) in self.state.decided_since(since).take(SYNC_BATCH) {
            if let Some(item) = self.state.item(&id) {
                items.push(item.clone());
                votes.extend(self.state.votes(&id));
            }
            next = round + 1;
        }
        for item in self.state.pending().take(SYNC_PENDING) {
            votes.extend(self.state.votes(&item.id()));
            items.push(item.clone());
        }
        Message::SyncResponse { next, end: self.state.round(), items, votes }
    }

    fn take_item(&mut self, item: SignedItem, now_ms: u64, out: &mut Vec<Outgoing>) -> Result<()> {
        let id = item.id();
        match self.state.add_item(item.clone()) {
            Ok(true) => {
                self.record(Entry::Item(item.clone()), false)?;
                let env = self.envelope(&Message::Item(item))?;
                out.push(Outgoing::All(env));
                self.consider(id, now_ms, out)?;
                self.reconsider(now_ms, out)
            }
            Ok(false) => Ok(()),
            Err(_) => {
                self.stats.refused += 1;
                Ok(())
            }
        }
    }

    fn take_vote(&mut self, vote: Vote, now_ms: u64, out: &mut Vec<Outgoing>) -> Result<()> {
        match self.state.add_vote(vote.clone()) {
            Ok(true) => {
                self.record(Entry::Vote(vote.clone()), false)?;
                // A vote's author sends it to every peer; validators pass it on only to clients (whose one
                // validator may be all they hear from), so votes cost O(n) envelopes, not O(n²). Anti-entropy
                // repairs anything a partial mesh misses.
                let env = self.envelope(&Message::Vote(vote))?;
                out.push(Outgoing::Clients(env));
                self.reconsider(now_ms, out)
            }
            Ok(false) => Ok(()),
            Err(_) => {
                self.stats.refused += 1;
                Ok(())
            }
        }
    }

    /// A validator votes on `id` if it can judge it now and has not voted on its account's sequence number.
    fn consider(&mut self, id: ItemId, now_ms: u64, out: &mut Vec<Outgoing>) -> Result<()> {
        if !self.validator {
            return Ok(());
        }
        let Some(item) = self.state.item(&id).cloned() else { return Ok(()) };
        if !self.synced {
            self.deferred.insert(id);
            return Ok(());
        }
        let slot = (item.body.account, item.body.sequence);
        let voted = self.my_votes.contains_key(&slot) || self.state.has_voted(&self.peer_id(), &slot.0, slot.1);
        if voted || self.state.outcome(&id) != Outcome::Pending {
            self.deferred.remove(&id);
            return Ok(());
        }
        let Some(verdict) = self.state.judge(&item, now_ms) else {
            self.deferred.insert(id);
            return Ok(());
        };
        self.deferred.remove(&id);
        let (endorse, reason) = match verdict {
            Ok(()) => (true, String::new()),
            Err(reason) => (false, reason),
        };
        let vote = Vote::sign(&self.identity, &item, endorse, reason)?;
        // Written before it is sent: a vote that cannot be made durable is not cast.
        self.record(Entry::Vote(vote.clone()), true)?;
        self.my_votes.insert(slot, vote.clone());
        self.stats.votes_cast += 1;
        let _ = self.state.add_vote(vote.clone());
        let env = self.envelope(&Message::Vote(vote))?;
        out.push(Outgoing::All(env));
        Ok(())
    }

    fn reconsider(&mut self, now_ms: u64, out: &mut Vec<Outgoing>) -> Result<()> {
        if !self.validator {
            return Ok(());
        }
        // Deciding one item can make the next of its account judgeable; repeat until nothing moves.
        loop {
            let before = self.deferred.len();
            let waiting: Vec<ItemId> = self.deferred.iter().copied().collect();
            for id in waiting {
                self.consider(id, now_ms, out)?;
            }
            if self.deferred.len() == before {
                return Ok(());
            }
        }
    }

    /// Anti-entropy: a sync request to the next tracked peer in turn (one per tick, so the network's sync cost
    /// grows with n, not n²), and another look at deferred items.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let mut peers: Vec<(PeerId, u64)> = self.cursors.iter().map(|(p, c)| (*p, *c)).collect();
        peers.sort();
        if !peers.is_empty() {
            let (peer, since) = peers[self.sync_turn % peers.len()];
            self.sync_turn = self.sync_turn.wrapping_add(1);
            if let Ok(env) = self.envelope(&Message::SyncRequest { since }) {
                out.push(Outgoing::To(peer, env));
            }
        }
        let _ = self.reconsider(now_ms, &mut out);
        out
    }

    /// Non-validator peers that introduced themselves since the last call (a faucet funds them).
    pub fn take_introduced(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.introduced)
    }

    /// Whether this node's last submitted item is decided (or it submitted none).
    pub fn idle(&self) -> bool {
        self.own_last.is_none_or(|last| self.state.outcome(&last) != Outcome::Pending)
    }

    /// Starts pulling from `peer` (a configured or connected peer) at cursor 0.
    pub fn track_peer(&mut self, peer: PeerId) {
        self.cursors.entry(peer).or_insert(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MICRO, ValidatorInfo};

    fn votes_in(out: &[Outgoing]) -> usize {
        out.iter()
            .filter(|o| match o {
                Outgoing::To(_, e) | Outgoing::All(e) | Outgoing::Clients(e) => {
                    matches!(postcard::from_bytes::<Message>(&e.payload), Ok(Message::Vote(_)))
                }
            })
            .count()
    }

    struct Setup {
        validator: Arc<NodeIdentity>,
        client: Arc<NodeIdentity>,
        params: Arc<NetworkParams>,
        signer: EnvelopeSigner,
        t: u64,
        /// A double spend: two items with one account and sequence number.
        a: SignedItem,
        b: SignedItem,
    }

    impl Setup {
        /// One validator (so it votes without syncing first) and a client with 1000 rUv.
        fn new() -> Self {
            let validator = Arc::new(NodeIdentity::generate());
            let client = Arc::new(NodeIdentity::generate());
            let mut params =
                NetworkParams::new(vec![ValidatorInfo { identity: validator.public().clone(), stake: 100 * MICRO }]);
            params.genesis = vec![(client.peer_id(), 1000 * MICRO)];
            params.policy.settle_ms = 0;
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
            let spend = |to| SignedItem::sign(&client, 1, t, Action::Transfer { to, amount: 800 * MICRO }).unwrap();
            let (a, b) = (spend(validator.peer_id()), spend(PeerId([7; 32])));
            let signer = EnvelopeSigner::new(client.clone());
            Self { validator, params: Arc::new(params), signer, t, a, b, client }
        }

        /// A node of the validator that has heard the client's hello.
        fn node(&mut self, journal: Option<&Path>) -> Node {
            let mut node = Node::new(self.validator.clone(), self.params.clone(), VerifierPolicy::default());
            if let Some(path) = journal {
                node = node.with_journal(path).unwrap();
            }
            self.send(&mut node, Message::Hello { identity: self.client.public().clone() });
            node
        }

        fn send(&mut self, node: &mut Node, message: Message) -> Vec<Outgoing> {
            let env = message.sign(&mut self.signer).unwrap();
            node.handle(self.client.peer_id(), &env, self.t)
        }
    }

    #[test]
    fn a_restarted_validator_has_its_state_and_never_votes_twice_on_a_slot() {
        let mut s = Setup::new();
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal");
        let mut node = s.node(Some(&journal));
        assert_eq!(votes_in(&s.send(&mut node, Message::Item(s.a.clone()))), 1);
        assert_eq!(node.state().outcome(&s.a.id()), Outcome::Finalized);
        let ledger = node.state().ledger().clone();
        drop(node);

        // Restarted: the same state, and no vote on the other half of the double spend.
        let mut node = s.node(Some(&journal));
        assert_eq!(node.state().outcome(&s.a.id()), Outcome::Finalized);
        assert_eq!(*node.state().ledger(), ledger);
        assert_eq!(votes_in(&s.send(&mut node, Message::Item(s.b.clone()))), 0);
        assert_eq!(node.state().outcome(&s.b.id()), Outcome::Pending);

        // What the journal prevents: a validator that forgot everything would certify the other half.
        let mut amnesiac = s.node(None);
        s.send(&mut amnesiac, Message::Item(s.b.clone()));
        assert_eq!(amnesiac.state().outcome(&s.b.id()), Outcome::Finalized);
    }

    #[test]
    fn a_vote_journaled_before_its_item_counts_and_reaches_peers_by_anti_entropy() {
        let mut s = Setup::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        // The journal of a validator that flushed its vote on A, then crashed before sending it.
        let vote = Vote::sign(&s.validator, &s.a, true, String::new()).unwrap();
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.append(&Entry::Vote(vote.clone()), true).unwrap();
        drop(journal);

        let mut node = s.node(Some(&path));
        assert_eq!(votes_in(&s.send(&mut node, Message::Item(s.b.clone()))), 0, "the slot is taken");
        s.send(&mut node, Message::Item(s.a.clone()));
        assert_eq!(node.state().outcome(&s.a.id()), Outcome::Finalized);
        assert_eq!(node.stats().votes_cast, 0, "not cast again");
        // A peer pulling from it receives the vote.
        let out = s.send(&mut node, Message::SyncRequest { since: 0 });
        let served = out.iter().any(|o| match o {
            Outgoing::To(_, e) => matches!(
                postcard::from_bytes::<Message>(&e.payload),
                Ok(Message::SyncResponse { votes, .. }) if votes.contains(&vote)
            ),
            _ => false,
        });
        assert!(served, "the journaled vote is served to peers");
    }

    #[test]
    fn a_torn_last_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let s = Setup::new();
        let (mut journal, entries) = Journal::open(&path).unwrap();
        assert!(entries.is_empty());
        journal.append(&Entry::Item(s.a.clone()), false).unwrap();
        let whole = std::fs::metadata(&path).unwrap().len();
        journal.append(&Entry::Item(s.b.clone()), true).unwrap();
        drop(journal);
        let len = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of the second append.
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();
        let (_, entries) = Journal::open(&path).unwrap();
        assert_eq!(entries, vec![Entry::Item(s.a.clone())]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole, "truncated to the whole record");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
