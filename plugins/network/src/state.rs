//! A node's view of the network: items, votes, outcomes, and the ledger derived from them.
//!
//! Everything here is a function of the *set* of items and votes a node holds, never of the order they arrived
//! in: outcomes are recomputed from the votes (finalized when endorsing stake is more than 2/3 of the total,
//! rejected when rejecting stake is more than 1/3 and the item is not finalized), and the [`Ledger`] is summed
//! over decided items. So two honest nodes holding the same items and votes agree on every balance.

use crate::error::Result;
use crate::privacy::PrivatePattern;
use crate::protocol::{
    Action, ItemId, MAX_METADATA_BYTES, NetworkParams, Parameter, SignedItem, ValidationPolicy, Vote,
};
use ruvector_dag::network::PeerId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not enough votes either way yet.
    Pending,
    /// Endorsed by more than 2/3 of the validator stake.
    Finalized,
    /// Rejected by more than 1/3 of the validator stake.
    Rejected,
}

/// Why an item or vote was not taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The signature or key does not verify.
    BadSignature,
    /// The vote's signer is not a configured validator.
    NotAValidator,
    /// Already held.
    Duplicate,
}

#[derive(Debug, Default)]
struct Entry {
    item: Option<SignedItem>,
    /// Votes on this item, one per validator and verdict (an equivocating validator may have both).
    votes: BTreeMap<(PeerId, bool), Vote>,
    outcome: Option<Outcome>,
}

/// One account in the derived ledger. Amounts in millionths of rUv; balances may be shown clamped at zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    /// Spendable.
    pub balance: i128,
    /// Locked as stake.
    pub staked: i128,
    /// Earned, not yet claimed.
    pub pending_rewards: i128,
    /// The sequence number its next item must carry.
    pub next_sequence: u64,
    /// When its stake unlocks (ms since the Unix epoch).
    pub unlock_ms: u64,
    /// Proposals finalized.
    pub accepted: u64,
    /// Proposals rejected.
    pub rejected: u64,
}

/// Balances, stakes and effective parameters, derived from the decided items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// Accounts by id.
    pub accounts: BTreeMap<PeerId, Account>,
    /// The validation policy after governance.
    pub policy: Option<ValidationPolicy>,
    /// Parameter changes that passed, with their approving stake.
    pub passed_changes: Vec<(ItemId, Parameter, f64, i128)>,
    /// Validators proven to have voted twice for one account and sequence number.
    pub byzantine: BTreeSet<PeerId>,
    /// Improvement reports per shared pattern (proposal, index): basis points by reporter (its first report).
    pub reports: BTreeMap<(ItemId, u32), BTreeMap<PeerId, u32>>,
}

impl Ledger {
    /// The account, or an empty one.
    pub fn account(&self, id: &PeerId) -> Account {
        self.accounts.get(id).copied().unwrap_or(Account { next_sequence: 1, ..Account::default() })
    }
}

/// A node's items and votes.
#[derive(Debug)]
pub struct NetworkState {
    params: Arc<NetworkParams>,
    entries: BTreeMap<ItemId, Entry>,
    /// Item ids in the order this node saw them decided, appended again when a decided item's outcome or votes
    /// change: sync cursors index it.
    log: Vec<ItemId>,
    /// Votes by (validator, account, sequence): more than one item or verdict is proof of equivocation.
    votes_by_slot: BTreeMap<(PeerId, PeerId, u64), BTreeSet<(ItemId, bool)>>,
    ledger: Ledger,
}

impl NetworkState {
    /// An empty view under `params`.
    pub fn new(params: Arc<NetworkParams>) -> Self {
        let mut state = Self {
            params,
            entries: BTreeMap::new(),
            log: Vec::new(),
            votes_by_slot: BTreeMap::new(),
            ledger: Ledger::default(),
        };
        state.ledger = state.derive_ledger();
        state
    }

    /// The parameters.
    pub fn params(&self) -> &Arc<NetworkParams> {
        &self.params
    }

    /// Takes in an item; `Ok(true)` when it is new.
    pub fn add_item(&mut self, item: SignedItem) -> Result<bool, Refusal> {
        let id = item.id();
        if self.entries.get(&id).is_some_and(|e| e.item.is_some()) {
            return Ok(false);
        }
        if !item.verify() {
            return Err(Refusal::BadSignature);
        }
        self.entries.entry(id).or_default().item = Some(item);
        self.refresh(id);
        Ok(true)
    }

    /// Takes in a vote; `Ok(true)` when it is new. Votes may arrive before their item.
    pub fn add_vote(&mut self, vote: Vote) -> Result<bool, Refusal> {
        let validator = self.params.validator(&vote.validator).ok_or(Refusal::NotAValidator)?;
        let slot = (vote.validator, vote.account, vote.sequence);
        if self.votes_by_slot.get(&slot).is_some_and(|s| s.contains(&(vote.item, vote.endorse))) {
            return Ok(false);
        }
        if !vote.verify(&validator.identity) {
            return Err(Refusal::BadSignature);
        }
        self.votes_by_slot.entry(slot).or_default().insert((vote.item, vote.endorse));
        let item = vote.item;
        let entry = self.entries.entry(item).or_default();
        let equivocation = self.votes_by_slot[&slot].len() > 1;
        let counted = !entry.votes.contains_key(&(vote.validator, vote.endorse));
        entry.votes.entry((vote.validator, vote.endorse)).or_insert(vote);
        if counted && entry.outcome.is_some() {
            // A late vote on a decided item changes rewards: log the item again so sync passes the vote on.
            self.log.push(item);
        }
        if equivocation || (counted && entry.outcome.is_some()) {
            // Evidence and late votes change the ledger even when no outcome changes.
            self.ledger = self.derive_ledger();
        }
        self.refresh(item);
        Ok(true)
    }

    fn refresh(&mut self, id: ItemId) {
        let outcome = self.compute_outcome(id);
        let entry = self.entries.get_mut(&id).expect("refreshed items exist");
        let decided = entry.item.is_some() && outcome != Outcome::Pending;
        if decided && entry.outcome != Some(outcome) {
            entry.outcome = Some(outcome);
            self.log.push(id);
            self.ledger = self.derive_ledger();
        }
    }

    fn compute_outcome(&self, id: ItemId) -> Outcome {
        let Some(entry) = self.entries.get(&id) else { return Outcome::Pending };
        let total = u128::from(self.params.total_stake());
        // A validator's stake counts for each verdict it signed: a function of the vote set, whatever the order.
        let (mut endorse, mut reject) = (0u128, 0u128);
        for (validator, endorsed) in entry.votes.keys() {
            let stake = u128::from(self.params.validator(validator).map_or(0, |v| v.stake));
            if *endorsed { endorse += stake } else { reject += stake }
        }
        if endorse * 3 > total * 2 {
            Outcome::Finalized
        } else if reject * 3 > total {
            Outcome::Rejected
        } else {
            Outcome::Pending
        }
    }

    /// The item's outcome (Pending when unknown).
    pub fn outcome(&self, id: &ItemId) -> Outcome {
        self.entries.get(id).and_then(|e| e.item.as_ref().and(e.outcome)).unwrap_or(Outcome::Pending)
    }

    /// The item, if held.
    pub fn item(&self, id: &ItemId) -> Option<&SignedItem> {
        self.entries.get(id)?.item.as_ref()
    }

    /// The votes held on an item.
    pub fn votes(&self, id: &ItemId) -> Vec<Vote> {
        self.entries.get(id).map(|e| e.votes.values().cloned().collect()).unwrap_or_default()
    }

    /// Fraction of the validator stake that endorsed the item.
    pub fn confidence(&self, id: &ItemId) -> f64 {
        let total = self.params.total_stake().max(1) as f64;
        let endorse: u64 = self
            .entries
            .get(id)
            .map(|e| {
                e.votes
                    .values()
                    .filter(|v| v.endorse)
                    .filter_map(|v| self.params.validator(&v.validator))
                    .map(|v| v.stake)
                    .sum()
            })
            .unwrap_or(0);
        endorse as f64 / total
    }

    /// Length of the decision log (the next round).
    pub fn round(&self) -> u64 {
        self.log.len() as u64
    }

    /// Decided item ids from round `since` on, with their rounds.
    pub fn decided_since(&self, since: u64) -> impl Iterator<Item = (u64, ItemId)> + '_ {
        self.log.iter().enumerate().skip(since as usize).map(|(i, id)| (i as u64, *id))
    }

    /// Items held but not decided.
    pub fn pending(&self) -> impl Iterator<Item = &SignedItem> {
        self.entries.values().filter(|e| e.outcome.is_none()).filter_map(|e| e.item.as_ref())
    }

    /// Ids of every item held.
    pub fn item_ids(&self) -> impl Iterator<Item = &ItemId> {
        self.entries.iter().filter(|(_, e)| e.item.is_some()).map(|(id, _)| id)
    }

    /// The derived ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The validation policy in force: configured, then passed governance changes.
    pub fn policy(&self) -> ValidationPolicy {
        self.ledger.policy.unwrap_or(self.params.policy)
    }

    /// Recomputes the ledger from the decided items and the vote evidence.
    fn derive_ledger(&self) -> Ledger {
        let p = &self.params;
        let r = p.rewards;
        let mut accounts: BTreeMap<PeerId, Account> = BTreeMap::new();
        fn entry(accounts: &mut BTreeMap<PeerId, Account>, id: PeerId) -> &mut Account {
            accounts.entry(id).or_insert(Account { next_sequence: 1, ..Account::default() })
        }
        for (id, amount) in &p.genesis {
            entry(&mut accounts, *id).balance += i128::from(*amount);
        }
        let mut changes: Vec<(ItemId, Parameter, f64)> = Vec::new();
        let mut gov_votes: BTreeMap<(ItemId, PeerId), bool> = BTreeMap::new();
        let mut reports: BTreeMap<(ItemId, u32), BTreeMap<PeerId, u32>> = BTreeMap::new();
        for (id, e) in &self.entries {
            let (Some(item), Some(outcome)) = (&e.item, e.outcome) else { continue };
            let b = &item.body;
            {
                let a = entry(&mut accounts, b.account);
                a.next_sequence = a.next_sequence.max(b.sequence + 1);
            }
            if let Action::ProposePatterns { .. } = b.action {
                // Validators whose vote matches the outcome earn the validation reward.
                for v in e.votes.values().filter(|v| v.endorse == (outcome == Outcome::Finalized)) {
                    entry(&mut accounts, v.validator).pending_rewards += i128::from(r.validation);
                }
            }
            if outcome == Outcome::Rejected {
                if let Action::ProposePatterns { .. } = b.action {
                    let a = entry(&mut accounts, b.account);
                    a.balance -= i128::from(r.rejection_penalty);
                    a.rejected += 1;
                }
                continue;
            }
            match &b.action {
                Action::ProposePatterns { .. } => {
                    let a = entry(&mut accounts, b.account);
                    a.pending_rewards += i128::from(r.pattern_accepted);
                    a.accepted += 1;
                }
                Action::Transfer { to, amount } => {
                    entry(&mut accounts, b.account).balance -= i128::from(*amount);
                    entry(&mut accounts, *to).balance += i128::from(*amount);
                }
                Action::Stake { amount } => {
                    let a = entry(&mut accounts, b.account);
                    a.balance -= i128::from(*amount);
                    a.staked += i128::from(*amount);
                    a.unlock_ms = a.unlock_ms.max(b.timestamp_ms.saturating_add(p.lock_period_ms));
                }
                Action::Unstake { amount } => {
                    let a = entry(&mut accounts, b.account);
                    a.balance += i128::from(*amount);
                    a.staked -= i128::from(*amount);
                }
                Action::ClaimRewards { amount } => {
                    let a = entry(&mut accounts, b.account);
                    a.balance += i128::from(*amount);
                    a.pending_rewards -= i128::from(*amount);
                }
                Action::ParamChange { parameter, value } => changes.push((*id, *parameter, *value)),
                Action::GovernanceVote { change, approve } => {
                    gov_votes.entry((*change, b.account)).or_insert(*approve);
                }
                Action::ReportImprovement { proposal, index, improvement_bp } => {
                    reports.entry((*proposal, *index)).or_default().entry(b.account).or_insert(*improvement_bp);
                }
            }
        }
        // Accuracy bonus: per 1 % of the median reported improvement, once enough staked accounts reported.
        for ((proposal, _), by) in &reports {
            let Some(proposer) = self.item(proposal).map(|i| i.body.account) else { continue };
            if by.len() < r.accuracy_min_reports.max(1) as usize {
                continue;
            }
            let mut bp: Vec<u32> = by.values().copied().collect();
            bp.sort_unstable();
            let median = bp[(bp.len() - 1) / 2];
            entry(&mut accounts, proposer).pending_rewards += i128::from(r.accuracy_bonus) * i128::from(median) / 100;
        }
        let mut byzantine = BTreeSet::new();
        for ((validator, _, _), verdicts) in &self.votes_by_slot {
            if verdicts.len() > 1 {
                entry(&mut accounts, *validator).balance -= i128::from(r.byzantine_penalty);
                byzantine.insert(*validator);
            }
        }
        // Governance: approving stake per change; the strongest passed change per parameter wins.
        let mut passed: Vec<(ItemId, Parameter, f64, i128)> = changes
            .into_iter()
            .map(|(id, parameter, value)| {
                let approving: i128 = gov_votes
                    .iter()
                    .filter(|((change, _), approve)| *change == id && **approve)
                    .map(|((_, voter), _)| accounts.get(voter).map_or(0, |a| a.staked.max(0)))
                    .sum();
                (id, parameter, value, approving)
            })
            .filter(|(_, _, _, approving)| *approving >= i128::from(p.governance_threshold))
            .collect();
        passed.sort_by_key(|c| (c.1, c.3, c.0));
        let mut policy = p.policy;
        for (_, parameter, value, _) in &passed {
            match parameter {
                Parameter::MinQuality => policy.min_quality = *value,
                Parameter::MaxDuplicateFraction => policy.max_duplicate_fraction = *value,
                Parameter::MaxEpsilon => policy.max_epsilon = *value,
                Parameter::MinStake => policy.min_stake = (*value * crate::protocol::MICRO as f64) as u64,
            }
        }
        Ledger { accounts, policy: Some(policy), passed_changes: passed, byzantine, reports }
    }

    /// An honest validator's verdict on `item` as this view stands at `now_ms`: `Some(Ok(()))` endorse,
    /// `Some(Err(reason))` reject, `None` not yet: an earlier item of the account is undecided here, or the
    /// account lacks funds in this view and the item is younger than `settle_ms` (a credit may not have arrived).
    pub fn judge(&self, item: &SignedItem, now_ms: u64) -> Option<std::result::Result<(), String>> {
        let b = &item.body;
        let account = self.ledger.account(&b.account);
        if b.sequence > account.next_sequence {
            return None;
        }
        let policy = self.policy();
        match self.judge_rules(item, &account, now_ms, &policy) {
            Ok(()) => Some(Ok(())),
            Err(Judged::Shortfall(_)) if now_ms < b.timestamp_ms.saturating_add(policy.settle_ms) => None,
            Err(Judged::Shortfall(reason) | Judged::Invalid(reason)) => Some(Err(reason)),
        }
    }

    fn judge_rules(
        &self,
        item: &SignedItem,
        account: &Account,
        now_ms: u64,
        policy: &ValidationPolicy,
    ) -> std::result::Result<(), Judged> {
        let b = &item.body;
        let invalid = |reason: String| Err(Judged::Invalid(reason));
        if b.sequence < account.next_sequence {
            return invalid(format!("sequence {} already used (next is {})", b.sequence, account.next_sequence));
        }
        if b.timestamp_ms.abs_diff(now_ms) > policy.clock_window_ms {
            return invalid("timestamp outside the validator's clock window".into());
        }
        let need = |amount: u64, have: i128, what: &str| {
            if amount == 0 {
                Err(Judged::Invalid(format!("{what} amount must be positive")))
            } else if i128::from(amount) > have {
                Err(Judged::Shortfall(format!(
                    "{what} of {} rUv exceeds {} rUv",
                    amount as f64 / 1e6,
                    have.max(0) as f64 / 1e6
                )))
            } else {
                Ok(())
            }
        };
        match &b.action {
            Action::ProposePatterns { patterns, stake } => {
                if *stake < policy.min_stake {
                    return invalid(format!("stake below the minimum of {} rUv", policy.min_stake as f64 / 1e6));
                }
                self.judge_patterns(patterns, policy).map_err(Judged::Invalid)?;
                need(*stake, account.balance, "stake")
            }
            Action::Transfer { to, amount } => {
                if *to == b.account {
                    return invalid("transfer to itself".into());
                }
                need(*amount, account.balance, "transfer")
            }
            Action::Stake { amount } => need(*amount, account.balance, "stake"),
            Action::Unstake { amount } => {
                if b.timestamp_ms < account.unlock_ms {
                    return invalid("stake is still locked".into());
                }
                need(*amount, account.staked, "unstake")
            }
            Action::ClaimRewards { amount } => need(*amount, account.pending_rewards, "claim"),
            Action::ParamChange { parameter, value } => {
                if !parameter.accepts(*value) {
                    return invalid(format!("{value} is not a valid {parameter:?}"));
                }
                need(policy.min_stake.max(1), account.staked, "proposer stake")
            }
            Action::GovernanceVote { change, .. } => {
                let is_change = self.item(change).is_some_and(|c| matches!(c.body.action, Action::ParamChange { .. }));
                if !is_change || self.outcome(change) != Outcome::Finalized {
                    return Err(Judged::Shortfall("not a finalized parameter change".into()));
                }
                need(1, account.staked, "voter stake")
            }
            Action::ReportImprovement { proposal, index, improvement_bp } => {
                if *improvement_bp > 10_000 {
                    return invalid(format!("improvement of {improvement_bp} basis points is above 100 %"));
                }
                let Some(Action::ProposePatterns { patterns, .. }) = self.item(proposal).map(|p| &p.body.action) else {
                    return Err(Judged::Shortfall("not a known pattern proposal".into()));
                };
                if self.outcome(proposal) != Outcome::Finalized {
                    return Err(Judged::Shortfall("the proposal is not finalized".into()));
                }
                if *index as usize >= patterns.len() {
                    return invalid(format!("the proposal has {} patterns, not {}", patterns.len(), index + 1));
                }
                if self.item(proposal).is_some_and(|p| p.body.account == b.account) {
                    return invalid("a proposer cannot report on its own pattern".into());
                }
                if self.ledger.reports.get(&(*proposal, *index)).is_some_and(|by| by.contains_key(&b.account)) {
                    return invalid("this account already reported on the pattern".into());
                }
                // Reports move rewards: each costs a staked account, so made-up accounts cannot outvote measurements.
                need(policy.min_stake.max(1), account.staked, "reporter stake")
            }
        }
    }

    fn judge_patterns(
        &self,
        patterns: &[crate::protocol::SharedPattern],
        policy: &ValidationPolicy,
    ) -> std::result::Result<(), String> {
        if patterns.is_empty() || patterns.len() > policy.max_patterns {
            return Err(format!("{} patterns; 1 to {} allowed", patterns.len(), policy.max_patterns));
        }
        for sp in patterns {
            check_private(&sp.pattern, policy)?;
            if sp.metadata.len() > MAX_METADATA_BYTES
                || serde_json::from_str::<serde_json::Value>(&sp.metadata).is_err()
            {
                return Err("metadata must be JSON of at most 4096 bytes".into());
            }
        }
        let quality = patterns.iter().map(|p| f64::from(p.pattern.quality)).sum::<f64>() / patterns.len() as f64;
        if quality + 1e-9 < policy.min_quality {
            return Err(format!("average quality {quality:.2} below {}", policy.min_quality));
        }
        let known: Vec<Vec<f32>> = self.finalized_patterns().map(|p| p.vector()).collect();
        let mut seen: Vec<Vec<f32>> = Vec::new();
        let mut duplicates = 0;
        for sp in patterns {
            let v = sp.pattern.vector();
            if known.iter().chain(&seen).any(|k| cosine(k, &v) >= policy.duplicate_cosine) {
                duplicates += 1;
            }
            seen.push(v);
        }
        if duplicates as f64 > policy.max_duplicate_fraction * patterns.len() as f64 {
            return Err(format!("{duplicates} of {} patterns duplicate known ones", patterns.len()));
        }
        Ok(())
    }

    /// Every pattern of every finalized proposal.
    pub fn finalized_patterns(&self) -> impl Iterator<Item = &PrivatePattern> {
        self.entries
            .values()
            .filter(|e| e.outcome == Some(Outcome::Finalized))
            .filter_map(|e| match &e.item {
                Some(SignedItem {
                    body: crate::protocol::ItemBody { action: Action::ProposePatterns { patterns, .. }, .. },
                    ..
                }) => Some(patterns.iter().map(|p| &p.pattern)),
                _ => None,
            })
            .flatten()
    }

    /// Whether `validator` voted on any item of `account` with `sequence` (its own vote counts as a lock even
    /// when the node restarted and learned it back from peers).
    pub fn has_voted(&self, validator: &PeerId, account: &PeerId, sequence: u64) -> bool {
        self.votes_by_slot.contains_key(&(*validator, *account, sequence))
    }

    /// Items per outcome.
    pub fn counts(&self) -> HashMap<Outcome, usize> {
        let mut out = HashMap::new();
        for e in self.entries.values().filter(|e| e.item.is_some()) {
            *out.entry(e.outcome.unwrap_or(Outcome::Pending)).or_insert(0) += 1;
        }
        out
    }
}

/// Why a validator would refuse an item: for good, or for want of something its view may still be missing.
enum Judged {
    Invalid(String),
    Shortfall(String),
}

/// A shared pattern's DP metadata is within policy: ε, lattice spacing, clamp.
fn check_private(p: &PrivatePattern, policy: &ValidationPolicy) -> std::result::Result<(), String> {
    if !(p.epsilon > 0.0 && p.epsilon <= policy.max_epsilon) {
        return Err(format!("epsilon {} outside (0, {}]", p.epsilon, policy.max_epsilon));
    }
    if p.quantum_bits > 24 || p.lattice.is_empty() || p.lattice.len() > 4096 {
        return Err("pattern lattice out of policy".into());
    }
    let bound = (policy.max_clip_norm * (1u64 << p.quantum_bits) as f64).ceil() as i64;
    if p.lattice.iter().any(|k| k.abs() > bound) {
        return Err("pattern values outside the clip range".into());
    }
    if !(0.0..=1.0).contains(&p.quality) {
        return Err("quality outside [0, 1]".into());
    }
    Ok(())
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}
