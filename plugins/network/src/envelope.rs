//! Signed envelopes: what a node signs, and what a receiver checks before it believes one.
//!
//! The signed bytes are a fixed layout (domain tag, version, kind, sender, sequence, timestamp, payload length,
//! payload), so one envelope has exactly one encoding. Each [`MessageKind`] signs under its own ML-DSA context
//! string, so a signature made for one kind of message is worthless as another.
//!
//! A receiver ([`EnvelopeVerifier`]) checks, cheapest first: protocol version, size, kind, known sender, clock
//! window, replay (per-sender sequence numbers with a sliding window), then the signature; a sequence number is
//! recorded only once its signature verified, so forgeries cannot burn a sender's numbers. Every refusal is
//! counted by reason.

use crate::error::{NetworkError, Result};
use crate::identity::{NodeIdentity, PublicIdentity};
use ruvector_dag::network::{Envelope, PeerId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The envelope format this crate writes and reads.
pub const PROTOCOL_VERSION: u16 = 1;

const SIGNING_DOMAIN: &[u8; 8] = b"RVDAGENV";

/// What an envelope carries. Each kind signs under its own context string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MessageKind {
    /// A node's introduction: its public identity.
    Hello = 1,
    /// A pattern proposal.
    Proposal = 2,
    /// A validator's endorsement of a proposal.
    Endorsement = 3,
    /// A validator's rejection of a proposal.
    Rejection = 4,
    /// A request for finalized items after a cursor.
    SyncRequest = 5,
    /// The answer to a sync request.
    SyncResponse = 6,
    /// A ledger operation (stake, transfer, vote).
    Operation = 7,
    /// A request for the network's parameters (a client's bootstrap).
    ParamsRequest = 8,
    /// The network's parameters.
    Params = 9,
}

impl MessageKind {
    /// Every kind.
    pub const ALL: [MessageKind; 9] = [
        Self::Hello,
        Self::Proposal,
        Self::Endorsement,
        Self::Rejection,
        Self::SyncRequest,
        Self::SyncResponse,
        Self::Operation,
        Self::ParamsRequest,
        Self::Params,
    ];

    /// The ML-DSA context string this kind signs under.
    pub fn context(self) -> &'static [u8] {
        match self {
            Self::Hello => b"ruvector-dag/v1/hello",
            Self::Proposal => b"ruvector-dag/v1/proposal",
            Self::Endorsement => b"ruvector-dag/v1/endorsement",
            Self::Rejection => b"ruvector-dag/v1/rejection",
            Self::SyncRequest => b"ruvector-dag/v1/sync-request",
            Self::SyncResponse => b"ruvector-dag/v1/sync-response",
            Self::Operation => b"ruvector-dag/v1/operation",
            Self::ParamsRequest => b"ruvector-dag/v1/params-request",
            Self::Params => b"ruvector-dag/v1/params",
        }
    }

    /// The kind with this wire number.
    pub fn from_wire(kind: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u16 == kind)
    }
}

/// The bytes an envelope's signature covers.
pub fn signing_bytes(
    version: u16,
    kind: u16,
    sender: &PeerId,
    sequence: u64,
    timestamp_ms: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 2 + 2 + 32 + 8 + 8 + 8 + payload.len());
    out.extend_from_slice(SIGNING_DOMAIN);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&sender.0);
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Milliseconds since the Unix epoch by the system clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Signs this node's outgoing envelopes and numbers them.
///
/// Sequence numbers start at the time the signer was made, in microseconds, and then count up by one, so they
/// keep increasing across restarts without being stored (as long as a node sends on average less than one
/// envelope per microsecond and its clock does not step back).
#[derive(Debug)]
pub struct EnvelopeSigner {
    identity: Arc<NodeIdentity>,
    last_sequence: u64,
}

impl EnvelopeSigner {
    /// A signer for `identity`.
    pub fn new(identity: Arc<NodeIdentity>) -> Self {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        Self { identity, last_sequence: micros }
    }

    /// The identity it signs as.
    pub fn identity(&self) -> &Arc<NodeIdentity> {
        &self.identity
    }

    /// Signs `payload` as a `kind` message, stamped with the time now.
    pub fn sign(&mut self, kind: MessageKind, payload: Vec<u8>) -> Result<Envelope> {
        self.sign_at(kind, payload, now_ms())
    }

    /// Signs `payload` as a `kind` message stamped `timestamp_ms`.
    pub fn sign_at(&mut self, kind: MessageKind, payload: Vec<u8>, timestamp_ms: u64) -> Result<Envelope> {
        self.last_sequence += 1;
        let sender = self.identity.peer_id();
        let bytes = signing_bytes(PROTOCOL_VERSION, kind as u16, &sender, self.last_sequence, timestamp_ms, &payload);
        let signature = self.identity.sign(kind.context(), &bytes)?;
        Ok(Envelope {
            version: PROTOCOL_VERSION,
            kind: kind as u16,
            sender,
            sequence: self.last_sequence,
            timestamp_ms,
            payload,
            signature,
        })
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A protocol version this node does not speak.
    UnknownVersion(u16),
    /// A message kind this node does not know.
    UnknownKind(u16),
    /// Payload larger than the policy allows.
    Oversized {
        /// Payload bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The sender is not a known peer.
    UnknownSender,
    /// The timestamp is further from this node's clock than the window allows.
    OutOfWindow {
        /// Envelope time minus local time.
        skew_ms: i64,
    },
    /// This sender's sequence number was already accepted, or is too old to tell.
    Replayed {
        /// The sequence number.
        sequence: u64,
    },
    /// A valid signature of the sender, made under another message kind's context.
    WrongContext,
    /// The signature does not verify.
    Forged,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVersion(v) => write!(f, "unknown protocol version {v}"),
            Self::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            Self::Oversized { size, limit } => write!(f, "payload of {size} bytes exceeds {limit}"),
            Self::UnknownSender => write!(f, "unknown sender"),
            Self::OutOfWindow { skew_ms } => write!(f, "timestamp {skew_ms} ms away from local clock"),
            Self::Replayed { sequence } => write!(f, "sequence {sequence} replayed"),
            Self::WrongContext => write!(f, "signed under another message kind's context"),
            Self::Forged => write!(f, "signature does not verify"),
        }
    }
}

impl From<Rejection> for NetworkError {
    fn from(r: Rejection) -> Self {
        NetworkError::Rejected(r)
    }
}

/// How many envelopes were accepted, and refused for each reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectionCounts {
    /// Accepted.
    pub accepted: u64,
    /// [`Rejection::UnknownVersion`].
    pub unknown_version: u64,
    /// [`Rejection::UnknownKind`].
    pub unknown_kind: u64,
    /// [`Rejection::Oversized`].
    pub oversized: u64,
    /// [`Rejection::UnknownSender`].
    pub unknown_sender: u64,
    /// [`Rejection::OutOfWindow`].
    pub out_of_window: u64,
    /// [`Rejection::Replayed`].
    pub replayed: u64,
    /// [`Rejection::WrongContext`].
    pub wrong_context: u64,
    /// [`Rejection::Forged`].
    pub forged: u64,
}

impl RejectionCounts {
    /// All refusals.
    pub fn rejected(&self) -> u64 {
        self.unknown_version
            + self.unknown_kind
            + self.oversized
            + self.unknown_sender
            + self.out_of_window
            + self.replayed
            + self.wrong_context
            + self.forged
    }

    fn count(&mut self, r: &Rejection) {
        let slot = match r {
            Rejection::UnknownVersion(_) => &mut self.unknown_version,
            Rejection::UnknownKind(_) => &mut self.unknown_kind,
            Rejection::Oversized { .. } => &mut self.oversized,
            Rejection::UnknownSender => &mut self.unknown_sender,
            Rejection::OutOfWindow { .. } => &mut self.out_of_window,
            Rejection::Replayed { .. } => &mut self.replayed,
            Rejection::WrongContext => &mut self.wrong_context,
            Rejection::Forged => &mut self.forged,
        };
        *slot += 1;
    }
}

/// A receiver's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierPolicy {
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
    /// Largest accepted distance between an envelope's timestamp and the local clock.
    pub clock_window_ms: u64,
}

impl Default for VerifierPolicy {
    /// 1 MiB payloads, 5 minutes of clock skew.
    fn default() -> Self {
        Self { max_payload: 1 << 20, clock_window_ms: 5 * 60 * 1000 }
    }
}

/// Accepted sequence numbers of one sender: the highest, and a bitmap of the 128 below it.
#[derive(Debug, Clone, Copy, Default)]
struct ReplayWindow {
    highest: u64,
    /// Bit i set: `highest - i` was accepted (bit 0 is `highest` itself).
    seen: u128,
}

impl ReplayWindow {
    const WIDTH: u64 = 128;

    fn is_fresh(&self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.highest {
            return true;
        }
        let age = self.highest - seq;
        age < Self::WIDTH && self.seen & (1u128 << age) == 0
    }

    fn record(&mut self, seq: u64) {
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= Self::WIDTH { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = seq;
        } else {
            self.seen |= 1u128 << (self.highest - seq);
        }
    }
}

/// Checks incoming envelopes against known peers' keys.
#[derive(Debug, Default)]
pub struct EnvelopeVerifier {
    policy: VerifierPolicy,
    peers: HashMap<PeerId, PublicIdentity>,
    windows: HashMap<PeerId, ReplayWindow>,
    counts: RejectionCounts,
}

impl EnvelopeVerifier {
    /// A verifier with `policy` and no known peers.
    pub fn new(policy: VerifierPolicy) -> Self {
        Self { policy, ..Self::default() }
    }

    /// Trusts `peer`'s keys for its id.
    pub fn add_peer(&mut self, peer: PublicIdentity) {
        self.peers.insert(peer.peer_id(), peer);
    }

    /// The known key of `peer`.
    pub fn peer(&self, peer: &PeerId) -> Option<&PublicIdentity> {
        self.peers.get(peer)
    }

    /// Counts so far.
    pub fn counts(&self) -> RejectionCounts {
        self.counts
    }

    /// Checks `envelope` against the local clock; on success records its sequence number and returns its kind.
    pub fn verify(&mut self, envelope: &Envelope) -> Result<MessageKind, Rejection> {
        self.verify_at(envelope, now_ms())
    }

    /// Checks `envelope` as if the local clock read `now_ms`.
    pub fn verify_at(&mut self, envelope: &Envelope, now_ms: u64) -> Result<MessageKind, Rejection> {
        let outcome = self.check(envelope, now_ms);
        match &outcome {
            Ok(_) => {
                self.windows.entry(envelope.sender).or_default().record(envelope.sequence);
                self.counts.accepted += 1;
            }
            Err(r) => self.counts.count(r),
        }
        outcome
    }

    fn check(&self, env: &Envelope, now_ms: u64) -> Result<MessageKind, Rejection> {
        if env.version != PROTOCOL_VERSION {
            return Err(Rejection::UnknownVersion(env.version));
        }
        if env.payload.len() > self.policy.max_payload {
            return Err(Rejection::Oversized { size: env.payload.len(), limit: self.policy.max_payload });
        }
        let kind = MessageKind::from_wire(env.kind).ok_or(Rejection::UnknownKind(env.kind))?;
        let peer = self.peers.get(&env.sender).ok_or(Rejection::UnknownSender)?;
        let skew_ms = env.timestamp_ms as i64 - now_ms as i64;
        if skew_ms.unsigned_abs() > self.policy.clock_window_ms {
            return Err(Rejection::OutOfWindow { skew_ms });
        }
        if !self.windows.get(&env.sender).copied().unwrap_or_default().is_fresh(env.sequence) {
            return Err(Rejection::Replayed { sequence: env.sequence });
        }
        let bytes = signing_bytes(env.version, env.kind, &env.sender, env.sequence, env.timestamp_ms, &env.payload);
        if peer.verify(kind.context(), &bytes, &env.signature) {
            return Ok(kind);
        }
        // Only a failed check pays for telling a cross-kind signature from a forgery.
        let other_context =
            MessageKind::ALL.into_iter().any(|k| k != kind && peer.verify(k.context(), &bytes, &env.signature));
        Err(if other_context { Rejection::WrongContext } else { Rejection::Forged })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (EnvelopeSigner, EnvelopeVerifier) {
        let id = Arc::new(NodeIdentity::generate());
        let mut verifier = EnvelopeVerifier::new(VerifierPolicy::default());
        verifier.add_peer(id.public().clone());
        (EnvelopeSigner::new(id), verifier)
    }

    #[test]
    fn accepts_once_and_counts_replays() {
        let (mut signer, mut verifier) = pair();
        let env = signer.sign(MessageKind::Proposal, b"pattern".to_vec()).unwrap();
        assert_eq!(verifier.verify(&env), Ok(MessageKind::Proposal));
        assert_eq!(verifier.verify(&env), Err(Rejection::Replayed { sequence: env.sequence }));
        let later = signer.sign(MessageKind::Proposal, b"pattern".to_vec()).unwrap();
        assert_eq!(later.sequence, env.sequence + 1);
        // A restarted node's signer starts above every number it used before.
        let restarted = EnvelopeSigner::new(signer.identity().clone()).sign(MessageKind::Hello, vec![]).unwrap();
        assert!(restarted.sequence > later.sequence);
        assert!(verifier.verify(&later).is_ok());
        let c = verifier.counts();
        assert_eq!((c.accepted, c.replayed, c.rejected()), (2, 1, 1));
    }

    #[test]
    fn out_of_order_delivery_inside_the_window_is_fine() {
        let (mut signer, mut verifier) = pair();
        let envs: Vec<_> = (0..5).map(|i| signer.sign(MessageKind::SyncRequest, vec![i]).unwrap()).collect();
        for i in [4, 0, 2, 1, 3] {
            assert!(verifier.verify(&envs[i]).is_ok(), "envelope {i}");
        }
        for env in &envs {
            assert!(matches!(verifier.verify(env), Err(Rejection::Replayed { .. })));
        }
    }

    #[test]
    fn refuses_each_kind_of_bad_envelope() {
        let (mut signer, mut verifier) = pair();
        let now = now_ms();
        let good = signer.sign_at(MessageKind::Endorsement, vec![1, 2, 3], now).unwrap();

        let mut forged = good.clone();
        forged.payload[0] ^= 1;
        assert_eq!(verifier.verify_at(&forged, now), Err(Rejection::Forged));
        let mut forged_sig = good.clone();
        forged_sig.signature[17] ^= 0x80;
        assert_eq!(verifier.verify_at(&forged_sig, now), Err(Rejection::Forged));
        let mut relabelled = good.clone();
        relabelled.kind = MessageKind::Rejection as u16;
        assert_eq!(verifier.verify_at(&relabelled, now), Err(Rejection::Forged));

        let mut version = good.clone();
        version.version = 2;
        assert_eq!(verifier.verify_at(&version, now), Err(Rejection::UnknownVersion(2)));
        let mut kind = good.clone();
        kind.kind = 99;
        assert_eq!(verifier.verify_at(&kind, now), Err(Rejection::UnknownKind(99)));
        let stranger = EnvelopeSigner::new(Arc::new(NodeIdentity::generate()))
            .sign_at(MessageKind::Endorsement, vec![], now)
            .unwrap();
        assert_eq!(verifier.verify_at(&stranger, now), Err(Rejection::UnknownSender));
        let big = signer.sign_at(MessageKind::Proposal, vec![0; (1 << 20) + 1], now).unwrap();
        assert!(matches!(verifier.verify_at(&big, now), Err(Rejection::Oversized { .. })));
        let stale = signer.sign_at(MessageKind::Proposal, vec![], now - 10 * 60 * 1000).unwrap();
        assert!(matches!(verifier.verify_at(&stale, now), Err(Rejection::OutOfWindow { .. })));

        // A real signature of the sender, made under the endorsement context, on a proposal envelope.
        let sender = signer.identity().peer_id();
        let seq = good.sequence + 1_000;
        let bytes = signing_bytes(PROTOCOL_VERSION, MessageKind::Proposal as u16, &sender, seq, now, b"p");
        let signature = signer.identity().sign(MessageKind::Endorsement.context(), &bytes).unwrap();
        let cross = Envelope {
            version: PROTOCOL_VERSION,
            kind: MessageKind::Proposal as u16,
            sender,
            sequence: seq,
            timestamp_ms: now,
            payload: b"p".to_vec(),
            signature,
        };
        assert_eq!(verifier.verify_at(&cross, now), Err(Rejection::WrongContext));

        // Forgeries did not burn the real envelope's sequence number.
        assert_eq!(verifier.verify_at(&good, now), Ok(MessageKind::Endorsement));
        let c = verifier.counts();
        assert_eq!(
            (c.forged, c.unknown_version, c.unknown_kind, c.unknown_sender, c.oversized, c.out_of_window),
            (3, 1, 1, 1, 1, 1)
        );
        assert_eq!((c.wrong_context, c.accepted, c.rejected()), (1, 1, 9));
        let err: NetworkError = Rejection::Forged.into();
        assert!(err.to_string().starts_with("RV006"), "{err}");
    }

    #[test]
    fn replay_window_slides() {
        let mut w = ReplayWindow::default();
        assert!(!w.is_fresh(0));
        w.record(1000);
        assert!(w.is_fresh(999) && !w.is_fresh(1000) && !w.is_fresh(1000 - 128) && w.is_fresh(1000 - 127));
        w.record(1000 + 500);
        assert!(!w.is_fresh(999), "fell out of the window");
        assert!(w.is_fresh(1499) && !w.is_fresh(1500));
    }
}
