//! What nodes agree on: signed items (pattern proposals and ledger operations), validators' votes on them, and
//! the network's parameters.
//!
//! An item is signed by its account with ML-DSA-65 and carries the account's verifying key, so any node can
//! check it whoever relayed it; its id is the hash of its body. Every item of an account has a sequence number
//! (1, 2, 3, …): an honest validator votes on at most one item per account and sequence number, which is what
//! makes double spending impossible without ordering consensus (FastPay, Baudet et al. 2020). A vote is a
//! validator's signed endorsement or rejection of one item.

use crate::error::{NetworkError, Result};
use crate::identity::{NodeIdentity, PublicIdentity, peer_id_of, verify_signature};
use crate::privacy::PrivatePattern;
use ruvector_dag::network::PeerId;
use serde::{Deserialize, Serialize};

/// The content address of an item: BLAKE3 of its body.
pub type ItemId = [u8; 32];

/// rUv amounts are kept in millionths, so every node's arithmetic is exact and identical.
pub const MICRO: u64 = 1_000_000;

const ITEM_CONTEXT: &[u8] = b"ruvector-dag/v1/item";
const VOTE_CONTEXT: &[u8] = b"ruvector-dag/v1/vote";
const ITEM_ID_CONTEXT: &str = "ruvector-dag 2026-12 item id";

/// `ruv` rUv in millionths; refuses negative, non-finite and absurd amounts.
pub fn to_micro(ruv: f64) -> Result<u64> {
    if !ruv.is_finite() || !(0.0..=1.0e12).contains(&ruv) {
        return Err(NetworkError::Privacy(format!("amount must be between 0 and 1e12 rUv, got {ruv}")));
    }
    Ok((ruv * MICRO as f64).round() as u64)
}

/// Millionths of rUv as rUv.
pub fn to_ruv(micro: i128) -> f64 {
    micro as f64 / MICRO as f64
}

/// Lower-case hex of an id.
pub fn hex_id(id: &ItemId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A privately released pattern with its description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedPattern {
    /// The noisy pattern.
    pub pattern: PrivatePattern,
    /// JSON text describing it (attention type, plan shape, …); at most [`MAX_METADATA_BYTES`].
    pub metadata: String,
}

/// Largest metadata text of a shared pattern.
pub const MAX_METADATA_BYTES: usize = 4096;

/// A validation parameter that governance can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Parameter {
    /// Lowest average quality of an accepted proposal.
    MinQuality,
    /// Largest fraction of a proposal's patterns that may duplicate known ones.
    MaxDuplicateFraction,
    /// Largest ε a shared pattern may have been released with.
    MaxEpsilon,
    /// Smallest stake (rUv) behind a proposal.
    MinStake,
}

impl Parameter {
    /// Whether `value` is allowed for this parameter.
    pub fn accepts(self, value: f64) -> bool {
        value.is_finite()
            && match self {
                Self::MinQuality | Self::MaxDuplicateFraction => (0.0..=1.0).contains(&value),
                Self::MaxEpsilon => value > 0.0 && value <= 100.0,
                Self::MinStake => (0.0..=1.0e9).contains(&value),
            }
    }
}

/// What an item asks the network to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Share patterns, backed by `stake` (millionths of rUv, checked against the balance, not spent).
    ProposePatterns {
        /// The patterns.
        patterns: Vec<SharedPattern>,
        /// The bond.
        stake: u64,
    },
    /// Move `amount` to another account.
    Transfer {
        /// The receiver.
        to: PeerId,
        /// Millionths of rUv.
        amount: u64,
    },
    /// Lock `amount` of the balance as stake.
    Stake {
        /// Millionths of rUv.
        amount: u64,
    },
    /// Return `amount` of stake to the balance once its lock period is over.
    Unstake {
        /// Millionths of rUv.
        amount: u64,
    },
    /// Move `amount` of pending rewards to the balance.
    ClaimRewards {
        /// Millionths of rUv.
        amount: u64,
    },
    /// Propose a new value for a validation parameter.
    ParamChange {
        /// Which.
        parameter: Parameter,
        /// The new value.
        value: f64,
    },
    /// Vote, weighted by the voter's stake, on a finalized parameter change.
    GovernanceVote {
        /// The change's item id.
        change: ItemId,
        /// For or against.
        approve: bool,
    },
    /// The latency improvement the reporter measured with a shared pattern (pattern `index` of finalized
    /// proposal `proposal`) on its own workload: `1 − after / before`, in basis points (0–10 000). The median of
    /// the reports of staked accounts pays the proposer the accuracy bonus.
    ReportImprovement {
        /// The proposal's item id.
        proposal: ItemId,
        /// The pattern's position in it.
        index: u32,
        /// Measured improvement, basis points.
        improvement_bp: u32,
    },
}

/// The signed part of an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemBody {
    /// Who acts: the signer's node id.
    pub account: PeerId,
    /// The account's sequence number for this item.
    pub sequence: u64,
    /// When it was signed (ms since the Unix epoch); validators refuse items far from their clock.
    pub timestamp_ms: u64,
    /// What to do.
    pub action: Action,
}

impl ItemBody {
    fn bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("item bodies always encode")
    }

    /// The content address.
    pub fn id(&self) -> ItemId {
        let mut h = blake3::Hasher::new_derive_key(ITEM_ID_CONTEXT);
        h.update(&self.bytes());
        *h.finalize().as_bytes()
    }
}

/// An item with its author's key and signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedItem {
    /// What is signed.
    pub body: ItemBody,
    /// The author's ML-DSA-65 verifying key.
    pub signer_key: Vec<u8>,
    /// ML-DSA-65 signature of the body.
    pub signature: Vec<u8>,
}

impl SignedItem {
    /// Signs `action` as `identity`'s item number `sequence`.
    pub fn sign(identity: &NodeIdentity, sequence: u64, timestamp_ms: u64, action: Action) -> Result<Self> {
        let body = ItemBody { account: identity.peer_id(), sequence, timestamp_ms, action };
        let signature = identity.sign(ITEM_CONTEXT, &body.bytes())?;
        Ok(Self { body, signer_key: identity.public().verifying_key_bytes().to_vec(), signature })
    }

    /// The item id.
    pub fn id(&self) -> ItemId {
        self.body.id()
    }

    /// Whether the key belongs to the account and signed the body.
    pub fn verify(&self) -> bool {
        peer_id_of(&self.signer_key) == self.body.account
            && verify_signature(&self.signer_key, ITEM_CONTEXT, &self.body.bytes(), &self.signature)
    }
}

/// A validator's signed verdict on one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The item.
    pub item: ItemId,
    /// The item's account.
    pub account: PeerId,
    /// The item's sequence number.
    pub sequence: u64,
    /// Endorse (true) or reject.
    pub endorse: bool,
    /// Why it was rejected (empty for endorsements).
    pub reason: String,
    /// Who votes.
    pub validator: PeerId,
    /// ML-DSA-65 signature of all fields above.
    pub signature: Vec<u8>,
}

impl Vote {
    fn bytes(
        item: &ItemId,
        account: &PeerId,
        sequence: u64,
        endorse: bool,
        reason: &str,
        validator: &PeerId,
    ) -> Vec<u8> {
        postcard::to_stdvec(&(item, account, sequence, endorse, reason, validator)).expect("votes always encode")
    }

    /// `identity`'s vote on `item`.
    pub fn sign(identity: &NodeIdentity, item: &SignedItem, endorse: bool, reason: String) -> Result<Self> {
        let (id, account, sequence, validator) = (item.id(), item.body.account, item.body.sequence, identity.peer_id());
        let signature =
            identity.sign(VOTE_CONTEXT, &Self::bytes(&id, &account, sequence, endorse, &reason, &validator))?;
        Ok(Self { item: id, account, sequence, endorse, reason, validator, signature })
    }

    /// Whether `validator` (whose id must match) signed this vote.
    pub fn verify(&self, validator: &PublicIdentity) -> bool {
        validator.peer_id() == self.validator
            && validator.verify(
                VOTE_CONTEXT,
                &Self::bytes(&self.item, &self.account, self.sequence, self.endorse, &self.reason, &self.validator),
                &self.signature,
            )
    }

    /// The vote's content address (for de-duplication when flooding).
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&postcard::to_stdvec(self).expect("votes always encode")).as_bytes()
    }
}

/// One validator and its voting stake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatorInfo {
    /// Its keys.
    pub identity: PublicIdentity,
    /// Voting weight, millionths of rUv.
    pub stake: u64,
}

/// What an honest validator requires of a pattern proposal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationPolicy {
    /// Lowest average quality (spec: 0.3).
    pub min_quality: f64,
    /// Largest fraction of duplicate patterns (spec: half).
    pub max_duplicate_fraction: f64,
    /// Cosine similarity at which two patterns are duplicates.
    pub duplicate_cosine: f64,
    /// Largest ε per shared pattern.
    pub max_epsilon: f64,
    /// Largest L2 clip norm the lattice values may reflect.
    pub max_clip_norm: f64,
    /// Smallest bond behind a proposal, millionths of rUv (spec: 10 rUv).
    pub min_stake: u64,
    /// Most patterns per proposal (spec: 100).
    pub max_patterns: usize,
    /// Largest distance between an item's timestamp and the validator's clock.
    pub clock_window_ms: u64,
    /// How long after an item's timestamp a validator waits before refusing it for want of funds, stake or
    /// rewards that its view may not have received yet.
    pub settle_ms: u64,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self {
            min_quality: 0.3,
            max_duplicate_fraction: 0.5,
            duplicate_cosine: 0.99,
            max_epsilon: 10.0,
            max_clip_norm: 1.0,
            min_stake: 10 * MICRO,
            max_patterns: 100,
            clock_window_ms: 5 * 60 * 1000,
            settle_ms: 5000,
        }
    }
}

/// Rewards and penalties (spec §9.1), millionths of rUv. Fields missing from a network file take their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RewardStructure {
    /// To the proposer of an accepted proposal (10).
    pub pattern_accepted: u64,
    /// To each validator whose vote agrees with a decided proposal (2).
    pub validation: u64,
    /// From the proposer of a rejected proposal (5).
    pub rejection_penalty: u64,
    /// From a validator proven to have voted twice on one account and sequence number (1000).
    pub byzantine_penalty: u64,
    /// To the proposer per 1 % of measured improvement of a shared pattern (10), the median of the improvement
    /// reports once there are `accuracy_min_reports`.
    pub accuracy_bonus: u64,
    /// Reports a pattern needs before its accuracy bonus is paid (3).
    pub accuracy_min_reports: u32,
}

impl Default for RewardStructure {
    fn default() -> Self {
        Self {
            pattern_accepted: 10 * MICRO,
            validation: 2 * MICRO,
            rejection_penalty: 5 * MICRO,
            byzantine_penalty: 1000 * MICRO,
            accuracy_bonus: 10 * MICRO,
            accuracy_min_reports: 3,
        }
    }
}

/// Everything nodes must agree on before they start: validators, genesis balances, policy, rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkParams {
    /// The validators and their stakes.
    pub validators: Vec<ValidatorInfo>,
    /// Opening balances, millionths of rUv.
    pub genesis: Vec<(PeerId, u64)>,
    /// Validation policy before governance changes.
    pub policy: ValidationPolicy,
    /// Rewards and penalties.
    pub rewards: RewardStructure,
    /// How long staked rUv stays locked.
    pub lock_period_ms: u64,
    /// Approving stake a parameter change needs, millionths of rUv.
    pub governance_threshold: u64,
    /// On a testnet: millionths of rUv a validator's faucet gives each client that connects to it (clients wait
    /// for it).
    pub faucet: Option<u64>,
}

impl NetworkParams {
    /// Validators with `stakes`, no genesis balances, default policy and rewards, a 1-day lock and a 1000 rUv
    /// governance threshold.
    pub fn new(validators: Vec<ValidatorInfo>) -> Self {
        Self {
            validators,
            genesis: Vec::new(),
            policy: ValidationPolicy::default(),
            rewards: RewardStructure::default(),
            lock_period_ms: 24 * 3600 * 1000,
            governance_threshold: 1000 * MICRO,
            faucet: None,
        }
    }

    /// Total validator stake.
    pub fn total_stake(&self) -> u64 {
        self.validators.iter().map(|v| v.stake).sum()
    }

    /// The validator with this id.
    pub fn validator(&self, id: &PeerId) -> Option<&ValidatorInfo> {
        self.validators.iter().find(|v| v.identity.peer_id() == *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_votes_verify_and_refuse_tampering() {
        let alice = NodeIdentity::generate();
        let v = NodeIdentity::generate();
        let item = SignedItem::sign(&alice, 1, 5, Action::Stake { amount: 3 }).unwrap();
        assert!(item.verify());
        let mut changed = item.clone();
        changed.body.action = Action::Stake { amount: 4 };
        assert!(!changed.verify());
        assert_ne!(changed.id(), item.id());
        let mut stolen = item.clone();
        stolen.body.account = v.peer_id();
        assert!(!stolen.verify(), "an item signed by alice cannot act for another account");

        let vote = Vote::sign(&v, &item, true, String::new()).unwrap();
        assert!(vote.verify(v.public()));
        assert!(!vote.verify(alice.public()));
        let mut flipped = vote.clone();
        flipped.endorse = false;
        assert!(!flipped.verify(v.public()));
        assert_ne!(flipped.digest(), vote.digest());
    }

    #[test]
    fn amounts_and_parameters() {
        assert_eq!(to_micro(1.5).unwrap(), 1_500_000);
        assert!(to_micro(-1.0).is_err() && to_micro(f64::NAN).is_err());
        assert_eq!(to_ruv(2_500_000), 2.5);
        assert!(Parameter::MinQuality.accepts(0.4) && !Parameter::MinQuality.accepts(1.5));
        assert!(!Parameter::MaxEpsilon.accepts(0.0));
    }
}
