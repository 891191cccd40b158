//! The learner's counterfactual log: per query class (query id), what its executions measured natively and
//! under the arm it is steered with, what background replays measured per arm, and the decision that follows.
//!
//! A class is explored once it recurs (two native executions) and its text can be replayed: the native plan is replayed
//! twice, then each arm whose plan differs from the native one is replayed twice with a timeout of twice the native
//! replay time (an arm that times out is out, and so is one whose first replay is no faster than native; an arm
//! whose plan an arm explored earlier has takes over its measurements). The class is then steered with the fastest
//! arm if it saves at least `quality_threshold` of the native replay time, and otherwise stays native. The
//! no-regression guard reverts a steered class to native as soon as three of its steered user executions average
//! more than 1.1 × its native ones.
//!
//! A steered class's arm was measured on one statement's parameter values. Each new *variant* (other values) of a
//! steered class that users run is checked with background replays: the arm twice, then the native plan (twice at
//! most) with a timeout at which the arm would still be within 1.1 × native; the arm *holds* for the variant unless
//! the native plan finishes both times and the arm averages more than 1.1 × its time. Once it loses on one variant the
//! class is *parameter-sensitive*: from then on only variants checked to hold are steered, the others are planned
//! natively (each new one is checked in turn). After eight variants in a row on which the arm held, a class checks
//! only one new variant in eight. Pure logic: unit-tested here, driven by the worker in `learner/mod.rs`.

use crate::steering::ARMS;
use serde::{Deserialize, Serialize};

/// Replays per arm.
pub(crate) const REPLAYS: u64 = 2;
/// Steered executions before the guard judges a class.
pub(crate) const GUARD_MIN: u64 = 3;
/// Tolerance of the guard (steered may be this much slower before it is reverted: timing noise).
pub(crate) const GUARD_TOLERANCE: f64 = 1.1;
/// Replay errors after which a class is no longer explored.
const MAX_ERRORS: u32 = 3;
/// Classes whose native executions average less than this are not explored: planner settings rarely matter for
/// them, and replay timings of microsecond queries are noise (a 0.02 ms lookup was once "steered" to a bitmap
/// scan by a cold first replay, costing pgbench -S 13 % of its throughput).
pub(crate) const MIN_NATIVE_MS: f64 = 1.0;
/// A censored class (its native executions time out) stops exploring once an arm runs within this share of the
/// native lower bound.
const RESCUED: f64 = 0.5;
/// A decided class is explored again once a table it reads has had this share of its rows changed (inserted,
/// updated or deleted) since the decision, and at least [`MIN_CHANGED_ROWS`]: what was measured is stale.
pub(crate) const REEXPLORE_CHURN: f64 = 0.2;
pub(crate) const MIN_CHANGED_ROWS: f64 = 1000.0;
/// Variants a class keeps (the oldest checked one makes room for a new one).
pub(crate) const MAX_VARIANTS: usize = 64;
/// Variants in a row on which the arm held after which a class checks only one new variant in [`SPOT_CHECK`].
const STABLE_AFTER: usize = 8;
const SPOT_CHECK: u64 = 8;

/// One variant of a steered class (other parameter values) and its check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Variant {
    /// `hooks::variant_key` of its executions.
    pub(crate) key: u64,
    /// Its replayable text; dropped once checked.
    pub(crate) text: Option<String>,
    /// Replays of the native plan and of the class's arm.
    pub(crate) native: Stat,
    pub(crate) arm: Stat,
    /// `Some(true)`: the arm runs it within [`GUARD_TOLERANCE`] of native; `Some(false)`: it does not (or timed
    /// out); `None` until checked.
    pub(crate) holds: Option<bool>,
}

/// A table as it was when the class was decided: its change counter (`n_tup_ins + n_tup_upd + n_tup_del`) and
/// its live rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TableMark {
    pub(crate) table: String,
    pub(crate) changes: f64,
    pub(crate) rows: f64,
}

/// A running mean of `ln(1 + ms)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stat {
    pub(crate) n: u64,
    pub(crate) mean_log: f64,
}

impl Stat {
    pub(crate) fn add(&mut self, ms: f64) {
        self.n += 1;
        self.mean_log += ((ms.max(0.0)).ln_1p() - self.mean_log) / self.n as f64;
    }

    /// Geometric-style mean in milliseconds (`exp(mean ln(1 + ms)) − 1`).
    pub(crate) fn ms(&self) -> f64 {
        self.mean_log.exp_m1()
    }
}

/// Where a class stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// Collecting executions and replays.
    Learning,
    /// Explored: no arm beats the native plan by enough.
    Native,
    /// Planned under `arm`.
    Steered,
    /// Steered, then the guard saw it run slower than native: native for good.
    Reverted,
    /// Turned off by the kill switch.
    Disabled,
    /// Its text cannot be replayed (parameters, too long, errors).
    NotReplayable,
}

impl State {
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Learning => "learning",
            State::Native => "native",
            State::Steered => "steered",
            State::Reverted => "reverted",
            State::Disabled => "disabled",
            State::NotReplayable => "not_replayable",
        }
    }
}

/// Replay measurements of one arm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ArmReplay {
    pub(crate) stat: Stat,
    /// `Some(true)` when the arm plans the same as native (not measured), `None` until compared.
    pub(crate) same_plan: Option<bool>,
    pub(crate) timeouts: u32,
    /// The plan's hash when it differs from native (`hooks::plan_hash` of its `EXPLAIN`).
    #[serde(default)]
    pub(crate) plan: Option<u64>,
    /// An earlier arm that plans the same: its measurements were taken over instead of replaying.
    #[serde(default)]
    pub(crate) same_plan_as: Option<usize>,
}

impl ArmReplay {
    /// Plans differently from native and was measured `REPLAYS` times without a timeout.
    fn usable(&self) -> bool {
        self.same_plan == Some(false) && self.timeouts == 0 && self.stat.n >= REPLAYS
    }
}

/// The next replay a class needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Replay {
    /// Plan under the arm and compare with the native plan.
    Compare(usize),
    /// Execute under the arm with this timeout.
    Measure(usize, u64),
    /// Check a variant of a steered class: execute variant `.0` under arm `.1` with timeout `.2`.
    Variant(u64, usize, u64),
}

/// One query class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Class {
    pub(crate) query_id: u64,
    pub(crate) db_id: u32,
    pub(crate) user_id: u32,
    pub(crate) text: Option<String>,
    pub(crate) plan_hash: u64,
    /// Plan hash of the native plan as `EXPLAIN` shows it (what arms' plans are compared with).
    pub(crate) explain_hash: Option<u64>,
    /// User executions under the native plan and under the steered arm.
    pub(crate) native: Stat,
    /// Of the native executions, those that ended in an error (cancelled by `statement_timeout`, typically): their
    /// times are lower bounds.
    #[serde(default)]
    pub(crate) native_failed: u64,
    pub(crate) steered: Stat,
    pub(crate) replays: Vec<ArmReplay>,
    pub(crate) arm: usize,
    pub(crate) state: State,
    pub(crate) errors: u32,
    pub(crate) last_error: Option<String>,
    /// True when the arm was set by `dag_class_steer`, not by exploration.
    pub(crate) forced: bool,
    /// True once the warm-up replay of the native plan ran (not counted: it pays for cold caches).
    #[serde(default)]
    pub(crate) warmed: bool,
    /// The tables the class reads, as they were when it was decided (empty until the learner marks them).
    #[serde(default)]
    pub(crate) marks: Vec<TableMark>,
    /// The arm the ReasoningBank predicted for the class's plan when its exploration reached the arms (see
    /// [`Class::predict`]).
    #[serde(default)]
    pub(crate) predicted: Option<usize>,
    /// True once the prediction was asked for (not saved: a restarted worker asks again).
    #[serde(skip)]
    pub(crate) predicted_checked: bool,
    /// The variant `text` is of (0: unknown).
    #[serde(default)]
    pub(crate) text_variant: u64,
    /// Variants of the steered class met since it was steered, oldest first.
    #[serde(default)]
    pub(crate) variants: Vec<Variant>,
    /// The arm lost on some variant: only variants checked to hold are steered.
    #[serde(default)]
    pub(crate) sensitive: bool,
}

impl Class {
    pub(crate) fn new(query_id: u64, db_id: u32, user_id: u32, plan_hash: u64) -> Self {
        Class {
            query_id,
            db_id,
            user_id,
            text: None,
            plan_hash,
            explain_hash: None,
            native: Stat::default(),
            native_failed: 0,
            steered: Stat::default(),
            replays: vec![ArmReplay::default(); ARMS.len()],
            arm: 0,
            state: State::Learning,
            errors: 0,
            last_error: None,
            forced: false,
            warmed: false,
            marks: Vec::new(),
            predicted: None,
            predicted_checked: false,
            text_variant: 0,
            variants: Vec::new(),
            sensitive: false,
        }
    }

    /// Takes the replayable text a backend stored for the class, if any; returns whether it did.
    pub(crate) fn take_text(&mut self, text: Option<crate::steering::QueryText>) -> bool {
        let Some(t) = text else { return false };
        self.text = Some(t.text);
        self.text_variant = t.variant;
        (self.db_id, self.user_id) = (t.db_id, t.user_id);
        true
    }

    /// Forgets everything measured and decided (keeping the identity and the text): the class is explored afresh.
    pub(crate) fn restart(&mut self) {
        *self = Class {
            text: self.text.take(),
            text_variant: self.text_variant,
            ..Class::new(self.query_id, self.db_id, self.user_id, self.plan_hash)
        };
    }

    /// Whether variant `key`, met in a user execution, should be checked: the class is steered by exploration,
    /// the variant is new, and the class still checks every new variant (or this one is a spot check).
    pub(crate) fn wants_variant(&self, key: u64) -> bool {
        if self.state != State::Steered || self.forced || key == 0 || key == self.text_variant {
            return false;
        }
        if self.variants.iter().any(|v| v.key == key) {
            return false;
        }
        let held = self.variants.iter().rev().take_while(|v| v.holds == Some(true)).count();
        self.sensitive || held < STABLE_AFTER || key.is_multiple_of(SPOT_CHECK)
    }

    /// Adds variant `key` with its replayable text, to be checked; the oldest checked variant makes room when the
    /// class keeps [`MAX_VARIANTS`]. Returns whether it was added.
    pub(crate) fn add_variant(&mut self, key: u64, text: String) -> bool {
        // The statement exploration measured: a class restored from before variants were told apart, whose own
        // variant is unknown, learns it here; another key with the same values holds by definition.
        let own = self.text.as_deref() == Some(text.as_str());
        if own && self.text_variant == 0 {
            self.text_variant = key;
            return false;
        }
        if self.variants.len() >= MAX_VARIANTS {
            let Some(oldest) = self.variants.iter().position(|v| v.holds.is_some()) else { return false };
            self.variants.remove(oldest);
        }
        let (text, holds) = if own { (None, Some(true)) } else { (Some(text), None) };
        self.variants.push(Variant { key, text, native: Stat::default(), arm: Stat::default(), holds });
        true
    }

    /// The next replay checking a variant: `(key, arm, timeout ms)`. The arm first (it is what runs now), as
    /// generously timed as the class's first native replays; then the native plan with a timeout at which the arm
    /// would still be within [`GUARD_TOLERANCE`] of it: a native plan that cannot beat the arm by that much costs no
    /// more than the arm to find out (a variant whose native plan runs for minutes, the arm's reason to be, is
    /// checked in the arm's time).
    fn next_variant_replay(&self) -> Option<(u64, usize, u64)> {
        if self.state != State::Steered || self.forced {
            return None;
        }
        let v = self.variants.iter().find(|v| v.holds.is_none() && v.text.is_some())?;
        if v.arm.n < REPLAYS {
            let limit = (self.native.ms().max(self.replays[0].stat.ms()) * 10.0 + 1000.0).min(600_000.0);
            return Some((v.key, self.arm, limit as u64));
        }
        Some((v.key, 0, (v.arm.ms() / GUARD_TOLERANCE + 10.0).min(600_000.0) as u64))
    }

    /// The text of variant `key`.
    pub(crate) fn variant_text(&self, key: u64) -> Option<&str> {
        self.variants.iter().find(|v| v.key == key)?.text.as_deref()
    }

    /// Records a replay of variant `key` under `arm` (`None`: it timed out). Returns `Some(holds)` when this
    /// replay decided the check: the arm holds unless it timed out or the native plan, replayed twice, runs it
    /// more than [`GUARD_TOLERANCE`] times faster.
    pub(crate) fn variant_measured(&mut self, key: u64, arm: usize, ms: Option<f64>) -> Option<bool> {
        let v = self.variants.iter_mut().find(|v| v.key == key && v.holds.is_none())?;
        let holds = match (arm, ms) {
            (0, None) => true,
            (0, Some(ms)) => {
                v.native.add(ms);
                if v.native.n < REPLAYS {
                    return None;
                }
                v.arm.ms() <= v.native.ms() * GUARD_TOLERANCE
            }
            (_, None) => false,
            (_, Some(ms)) => {
                v.arm.add(ms);
                return None;
            }
        };
        v.holds = Some(holds);
        v.text = None;
        if !holds {
            self.sensitive = true;
        }
        Some(holds)
    }

    /// A replay of variant `key` failed (an error, not a timeout): it stays unchecked (planned natively when the
    /// class is parameter-sensitive) and is not replayed again.
    pub(crate) fn variant_failed(&mut self, key: u64) {
        if let Some(v) = self.variants.iter_mut().find(|v| v.key == key) {
            v.text = None;
        }
    }

    /// Whether variant `key` is planned natively because the class is parameter-sensitive and the arm was not
    /// checked to hold for it.
    pub(crate) fn native_by_design(&self, key: u64) -> bool {
        self.parameter_sensitive() && !self.steered_variants().any(|v| v == key)
    }

    /// Steered, and only for variants checked to hold (the arm lost on some variant).
    pub(crate) fn parameter_sensitive(&self) -> bool {
        self.sensitive && self.state == State::Steered
    }

    /// The variants planned under the arm when the class is parameter-sensitive (else none): its own text's and
    /// those checked to hold.
    pub(crate) fn steered_variants(&self) -> impl Iterator<Item = u64> + '_ {
        let sensitive = self.parameter_sensitive();
        let own = (sensitive && self.text_variant != 0).then_some(self.text_variant);
        let checked = self.variants.iter().filter(move |v| sensitive && v.holds == Some(true)).map(|v| v.key);
        own.into_iter().chain(checked)
    }

    /// A user execution of `ms` under arm `arm` (`failed`: it ended in an error after `ms`, so it took at least
    /// that long). An arm the class is not steered with was forced by an operator (`dag_class_steer`): the class
    /// adopts it.
    pub(crate) fn observe(&mut self, arm: usize, ms: f64, failed: bool) {
        if arm == 0 {
            self.native.add(ms);
            self.native_failed += u64::from(failed);
            return;
        }
        if self.arm != arm || self.state != State::Steered {
            self.arm = arm;
            self.state = State::Steered;
            self.steered = Stat::default();
            self.forced = true;
            // The operator's arm, for every variant.
            self.sensitive = false;
            self.variants.clear();
        }
        self.steered.add(ms);
    }

    /// The next replay exploration needs, if any; for a steered class, the next replay checking a variant.
    pub(crate) fn next_replay(&self) -> Option<Replay> {
        if self.state == State::Steered {
            return self.next_variant_replay().map(|(key, arm, limit)| Replay::Variant(key, arm, limit));
        }
        if self.state != State::Learning || self.text.is_none() || self.native.n < 2 || self.native.ms() < MIN_NATIVE_MS
        {
            return None;
        }
        if self.censored() {
            // Replaying the native plan would only fail again. Each arm gets the native executions' lower bound as
            // its timeout: one that finishes within it is faster than native for sure. Arms that do not finish
            // cost the whole bound each, so exploration stops at the first arm that rescues the class.
            let bound = self.native.ms();
            if self.replays.iter().skip(1).any(|r| r.usable() && r.stat.ms() <= bound * RESCUED) {
                return None;
            }
            return self.next_arm_replay(bound.min(600_000.0) as u64);
        }
        let native = &self.replays[0];
        if native.stat.n < REPLAYS {
            // Generous for the native plan: it already ran for users.
            let limit = (self.native.ms() * 10.0 + 1000.0).min(600_000.0) as u64;
            return Some(Replay::Measure(0, limit));
        }
        let reference = native.stat.ms();
        if self
            .predicted
            .is_some_and(|arm| self.replays[arm].usable() && self.replays[arm].stat.ms() <= reference * RESCUED)
        {
            // The prediction is confirmed. Another arm might do better still: not replaying them all is what the
            // prediction saves.
            return None;
        }
        self.next_arm_replay((reference * 2.0 + 10.0).min(600_000.0) as u64)
    }

    /// True when exploration has reached the arms (the native plan measured, or censored): the moment to ask the
    /// ReasoningBank for a prediction, with this class's native replays already in it.
    pub(crate) fn wants_prediction(&self) -> bool {
        !self.predicted_checked
            && matches!(self.next_replay(), Some(Replay::Compare(_)) | Some(Replay::Measure(1.., _)))
    }

    /// Sets the arm the ReasoningBank predicts beats the native plan (`None`: no prediction). That arm is
    /// explored first, and once its replays run within half the native time, exploration ends there (a censored
    /// class already ends at the first such arm): a plan like others the bank has learned from costs two replays
    /// instead of up to two per arm. A wrong prediction costs nothing: the other arms are explored as usual.
    pub(crate) fn predict(&mut self, arm: Option<usize>) {
        self.predicted_checked = true;
        self.predicted = arm.filter(|&a| a > 0 && a < ARMS.len());
    }

    /// True when most native executions failed (typically cancelled by `statement_timeout`): the native latency is
    /// known only from below, as `native.ms()`.
    pub(crate) fn censored(&self) -> bool {
        self.native_failed * 2 > self.native.n
    }

    /// The next arm to compare with native, or to measure with timeout `limit` ms (until [`Class::explored`]).
    fn next_arm_replay(&self, limit: u64) -> Option<Replay> {
        let order = self.predicted.into_iter().chain((1..ARMS.len()).filter(|&a| Some(a) != self.predicted));
        for arm in order {
            match self.replays[arm].same_plan {
                None => return Some(Replay::Compare(arm)),
                Some(false) if !self.explored(arm) => return Some(Replay::Measure(arm, limit)),
                _ => {}
            }
        }
        None
    }

    /// Records that arm `arm` plans the same as native (`same`) or not.
    pub(crate) fn compared(&mut self, arm: usize, same: bool) {
        self.replays[arm].same_plan = Some(same);
    }

    /// Records arm `arm`'s plan hash against native's. An arm whose plan another arm, explored earlier, already has
    /// (nested loops off, and nested loops and merge joins off, often plan alike) takes over that arm's
    /// measurements instead of being replayed: in the fourth TPC-DS run 174 of the 610 arm plans that differed from
    /// native were such repeats, 433 s of replays.
    pub(crate) fn compared_plans(&mut self, arm: usize, native: u64, plan: u64) {
        self.compared(arm, plan == native);
        if plan == native {
            return;
        }
        self.replays[arm].plan = Some(plan);
        let earlier = (1..ARMS.len()).find(|&a| a != arm && self.replays[a].plan == Some(plan) && self.explored(a));
        if let Some(a) = earlier {
            let r = self.replays[a];
            self.replays[arm] = ArmReplay { same_plan_as: Some(a), plan: Some(plan), ..r };
        }
    }

    /// Whether arm `arm` needs no more replays: measured `REPLAYS` times, timed out, or out after a first replay no
    /// faster than native (the native replays, or a censored class's lower bound). Such an arm is out without a
    /// second replay: to save the quality threshold its second would have to beat native by about twice that, and
    /// losing arms are most arms, each replay costing up to the timeout.
    fn explored(&self, arm: usize) -> bool {
        let r = &self.replays[arm];
        let native = if self.censored() { self.native.ms() } else { self.replays[0].stat.ms() };
        r.stat.n >= REPLAYS || r.timeouts > 0 || (r.stat.n > 0 && r.stat.ms() >= native)
    }

    /// Records a replay measurement; `None` is a timeout.
    pub(crate) fn measured(&mut self, arm: usize, ms: Option<f64>) {
        if arm == 0 && ms.is_some() && !self.warmed {
            // The first replay warms caches for the native plan and every arm after it: not counted.
            self.warmed = true;
            return;
        }
        let r = &mut self.replays[arm];
        match ms {
            Some(ms) => r.stat.add(ms),
            None if arm == 0 => self.state = State::NotReplayable,
            None => r.timeouts += 1,
        }
    }

    /// Records a replay error; after a few the class is not explored any more.
    pub(crate) fn failed(&mut self, error: String) {
        self.errors += 1;
        self.last_error = Some(error);
        if self.errors >= MAX_ERRORS {
            self.state = State::NotReplayable;
        }
    }

    /// After exploration: the fastest measured arm when it saves at least `threshold` of the native time: of the
    /// native replays and of the users' own native executions, whichever is shorter. Returns the new arm when the
    /// decision steers the class.
    pub(crate) fn decide(&mut self, threshold: f64) -> Option<usize> {
        if self.state != State::Learning || self.next_replay().is_some() {
            return None;
        }
        // A censored class compares its arms with the native lower bound (no native replay could finish).
        let native = if self.censored() {
            self.native.ms()
        } else if self.replays[0].stat.n >= REPLAYS {
            // Two estimates of the native latency: a slow pair of replays alone (noise on a shared machine) made
            // arms look faster than they run (TPC-DS Q94: native replays 419 ms, the users' executions 322 ms,
            // the arm 291 ms, and 0.83x in the comparison). Replays run under EXPLAIN ANALYZE's row counting and
            // executions do not, so this errs towards the native plan.
            let replayed = self.replays[0].stat.ms();
            if self.native.n > 0 { replayed.min(self.native.ms()) } else { replayed }
        } else {
            return None;
        };
        let best = self
            .replays
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, r)| r.usable())
            .min_by(|a, b| a.1.stat.mean_log.total_cmp(&b.1.stat.mean_log));
        match best {
            Some((arm, r)) if native > 0.0 && 1.0 - r.stat.ms() / native >= threshold => {
                self.arm = arm;
                self.state = State::Steered;
                self.forced = false;
                Some(arm)
            }
            _ => {
                self.state = State::Native;
                None
            }
        }
    }

    /// The no-regression guard: reverts a steered class whose steered executions run slower than native.
    /// Returns true when it reverted.
    pub(crate) fn guard(&mut self) -> bool {
        if self.state != State::Steered || self.steered.n < GUARD_MIN {
            return false;
        }
        let baseline = if self.native.n > 0 { self.native.ms() } else { self.replays[0].stat.ms() };
        // Nothing native measured yet: nothing to compare with.
        if baseline <= 0.0 {
            return false;
        }
        if self.steered.ms() > baseline * GUARD_TOLERANCE {
            self.state = State::Reverted;
            self.arm = 0;
            return true;
        }
        false
    }

    /// `1 − steered / native` from user executions, when both were measured.
    pub(crate) fn improvement(&self) -> Option<f64> {
        (self.state == State::Steered && self.steered.n > 0 && self.native.n > 0)
            .then(|| 1.0 - self.steered.ms() / self.native.ms().max(1e-9))
    }

    /// Replayed latency under the steered arm over native (NaN when not measured, e.g. forced by an operator); for a
    /// censored class, over the native lower bound (so an upper bound of the ratio).
    pub(crate) fn replay_ratio(&self) -> f32 {
        let arm = &self.replays[self.arm];
        let native = if self.censored() { self.native } else { self.replays[0].stat };
        if self.forced || self.arm == 0 || arm.stat.n == 0 || native.n == 0 {
            return f32::NAN;
        }
        (arm.stat.ms() / native.ms().max(1e-9)) as f32
    }

    /// The arm plans are made under now (0 when not steered).
    pub(crate) fn effective_arm(&self) -> usize {
        if self.state == State::Steered { self.arm } else { 0 }
    }

    /// True when exploration decided the class (steered, native, or reverted by the guard); an operator's forced
    /// arm is the operator's.
    pub(crate) fn decided(&self) -> bool {
        matches!(self.state, State::Steered | State::Native | State::Reverted) && !self.forced
    }

    /// The first marked table whose rows changed by [`REEXPLORE_CHURN`] (and [`MIN_CHANGED_ROWS`]) since the
    /// decision, with the share changed; `now` maps a table to its change counter and live rows.
    pub(crate) fn stale_table(&self, now: impl Fn(&str) -> Option<(f64, f64)>) -> Option<(&str, f64)> {
        self.marks.iter().find_map(|m| {
            let (changes, _) = now(&m.table)?;
            let changed = changes - m.changes;
            let churn = changed / m.rows.max(1.0);
            (changed >= MIN_CHANGED_ROWS && churn >= REEXPLORE_CHURN).then_some((m.table.as_str(), churn))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decided_class_goes_stale_when_a_table_it_reads_changed_enough() {
        let mut c = recurring();
        c.state = State::Steered;
        c.arm = 2;
        assert!(c.decided());
        c.marks = vec![
            TableMark { table: "s".into(), changes: 500.0, rows: 300_000.0 },
            TableMark { table: "tiny".into(), changes: 0.0, rows: 10.0 },
        ];
        let now = |s_changes: f64, tiny_changes: f64| {
            move |t: &str| match t {
                "s" => Some((s_changes, 300_000.0)),
                "tiny" => Some((tiny_changes, 10.0)),
                _ => None,
            }
        };
        assert_eq!(c.stale_table(now(50_000.0, 5.0)), None, "17% of s, and 5 rows of a tiny table");
        assert_eq!(c.stale_table(now(60_500.0, 0.0)), Some(("s", 0.2)));
        assert_eq!(c.stale_table(now(500.0, 1500.0)).map(|(t, _)| t), Some("tiny"));
        // A table that is gone (no statistics) says nothing.
        c.marks[0].table = "gone".into();
        assert_eq!(c.stale_table(now(1e9, 0.0)), None);
        c.forced = true;
        assert!(!c.decided(), "an operator's arm is not re-explored");
        c.restart();
        assert!(c.marks.is_empty() && c.state == State::Learning);
    }

    /// A class steered with arm 1 from its own text (variant 1): native 100 ms, the arm 20 ms.
    fn steered() -> Class {
        let mut c = recurring();
        c.text_variant = 1;
        explore(&mut c, |arm| arm == 1, |arm| Some(if arm == 1 { 20.0 } else { 100.0 }));
        assert_eq!(c.decide(0.3), Some(1));
        c
    }

    /// Checks variant `key` with the arm taking `arm_ms` (`None`: it timed out) and the native plan 100 ms (timed
    /// out when the limit is shorter); returns the arms and timeouts of the replays.
    fn check(c: &mut Class, key: u64, arm_ms: Option<f64>) -> Vec<(usize, u64)> {
        assert!(c.wants_variant(key));
        assert!(c.add_variant(key, format!("SELECT {key}")));
        let mut limits = Vec::new();
        while let Some(Replay::Variant(k, arm, limit)) = c.next_replay() {
            assert_eq!(k, key);
            assert_eq!(c.variant_text(k), Some(format!("SELECT {key}").as_str()));
            limits.push((arm, limit));
            let ms = if arm == 0 { Some(100.0).filter(|&ms| ms <= limit as f64) } else { arm_ms };
            c.variant_measured(k, arm, ms);
        }
        limits
    }

    #[test]
    fn a_steered_class_checks_its_new_variants_and_turns_parameter_sensitive_when_one_loses() {
        let mut c = steered();
        assert!(!c.wants_variant(1), "its own text's variant was measured by exploration");
        assert!(!c.wants_variant(0), "unknown values");
        // Variant 2: the arm twice (generous timeout), then the native plan with the arm's time / 1.1 as its
        // timeout: it cannot beat the arm by that much, the arm holds.
        let limits = check(&mut c, 2, Some(30.0));
        assert_eq!(limits, [(1, 2048), (1, 2048), (0, 37)], "10 x the native executions (104.8 ms) + 1 s");
        assert_eq!(c.variants[0].holds, Some(true));
        assert!(c.variants[0].text.is_none(), "the text is dropped once checked");
        assert!(!c.parameter_sensitive());
        assert_eq!(c.steered_variants().count(), 0, "not sensitive: every variant is steered");
        assert!(!c.wants_variant(2), "checked already");
        // Variant 3 runs 5x slower under the arm (TPC-DS Q54 for 1999: 731 ms against native 154 ms).
        let limits = check(&mut c, 3, Some(500.0));
        assert_eq!(limits.iter().map(|&(a, _)| a).collect::<Vec<_>>(), [1, 1, 0, 0]);
        assert_eq!(c.variants[1].holds, Some(false));
        assert!(c.parameter_sensitive());
        assert_eq!(c.effective_arm(), 1, "still steered, for the variants checked to hold");
        assert_eq!(c.steered_variants().collect::<Vec<_>>(), [1, 2]);
        assert!(c.native_by_design(3) && c.native_by_design(99) && !c.native_by_design(2));
        // An arm that times out does not hold; a replay that fails leaves the variant unchecked.
        assert_eq!(check(&mut c, 4, None).len(), 1);
        assert_eq!(c.variants[2].holds, Some(false));
        assert!(c.add_variant(5, "SELECT 5".into()));
        c.variant_failed(5);
        assert_eq!(c.next_replay(), None, "nothing left to check");
        assert_eq!(c.steered_variants().collect::<Vec<_>>(), [1, 2]);
        // Within the guard's tolerance holds; a decided check is not measured again.
        check(&mut c, 6, Some(109.0));
        assert_eq!(c.variants.last().map(|v| v.holds), Some(Some(true)));
        assert_eq!(c.variant_measured(6, 1, Some(1.0)), None);
        // Saved and restored as it is.
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Class>(&json).unwrap(), c);
        // The guard reverting the class, or a fresh exploration, ends it.
        let mut reverted = c.clone();
        reverted.state = State::Reverted;
        assert_eq!(reverted.steered_variants().count(), 0);
        assert!(!reverted.wants_variant(7));
        c.restart();
        assert!(c.variants.is_empty() && !c.sensitive);
        assert_eq!(c.text_variant, 1, "the text is kept, and so is whose it is");
    }

    #[test]
    fn a_class_whose_arm_held_on_eight_variants_in_a_row_spot_checks_one_in_eight() {
        let mut c = steered();
        for key in 10..18 {
            check(&mut c, key, Some(20.0));
        }
        assert!(!c.wants_variant(19) && !c.wants_variant(25));
        assert!(c.wants_variant(24), "one in eight");
        check(&mut c, 24, Some(500.0));
        assert!(c.wants_variant(25), "sensitive now: every new variant is checked");
    }

    #[test]
    fn a_class_keeps_at_most_max_variants_dropping_the_oldest_checked() {
        let mut c = steered();
        c.sensitive = true;
        for key in 100..(100 + MAX_VARIANTS as u64) {
            assert!(c.add_variant(key, format!("SELECT {key}")));
        }
        assert!(!c.add_variant(1000, "SELECT 1000".into()), "all unchecked: nothing to drop");
        while let Some(Replay::Variant(k, arm, _)) = c.next_replay() {
            c.variant_measured(k, arm, if arm == 0 { None } else { Some(20.0) });
        }
        assert!(c.add_variant(1000, "SELECT 1000".into()));
        assert_eq!(c.variants.len(), MAX_VARIANTS);
        assert_eq!(c.variants[0].key, 101, "the oldest checked one made room");
    }

    #[test]
    fn the_statement_exploration_measured_is_its_own_variant() {
        let mut c = steered();
        c.text_variant = 0;
        assert!(!c.add_variant(5, "SELECT 1".into()), "restored from before variants: its own variant is learnt");
        assert_eq!(c.text_variant, 5);
        assert!(c.add_variant(6, "SELECT 1".into()));
        assert_eq!(c.variants[0].holds, Some(true), "the same values under another key hold without a replay");
        assert_eq!(c.next_replay(), None);
    }

    #[test]
    fn an_arm_that_plans_like_one_explored_earlier_takes_over_its_measurements() {
        let mut c = recurring();
        // Arms 1 and 8 plan alike (plan 11), arm 2 differently (12), the others as native (10).
        let plan = |arm: usize| match arm {
            1 | 8 => 11,
            2 => 12,
            _ => 10,
        };
        let mut measured = Vec::new();
        while let Some(r) = c.next_replay() {
            match r {
                Replay::Compare(arm) => c.compared_plans(arm, 10, plan(arm)),
                Replay::Measure(arm, _) => {
                    measured.push(arm);
                    c.measured(arm, Some(if arm == 0 { 100.0 } else { 20.0 + arm as f64 }));
                }
                Replay::Variant(..) => unreachable!("exploring"),
            }
        }
        assert_eq!(measured, [0, 0, 0, 1, 1, 2, 2], "arm 8 is not replayed");
        assert_eq!(c.replays[8].same_plan_as, Some(1));
        assert_eq!(c.replays[8].stat, c.replays[1].stat);
        assert_eq!(c.replays[8].same_plan, Some(false));
        assert_eq!(c.decide(0.3), Some(1), "the arm explored first wins the tie");
        // An arm that timed out, or lost on its first replay, passes that on too.
        let mut c = recurring();
        while let Some(r) = c.next_replay() {
            match r {
                Replay::Compare(arm) => c.compared_plans(arm, 10, plan(arm)),
                Replay::Measure(0, _) => c.measured(0, Some(100.0)),
                Replay::Measure(arm, _) => c.measured(arm, (arm == 2).then_some(150.0)),
                Replay::Variant(..) => unreachable!("exploring"),
            }
        }
        assert_eq!((c.replays[8].timeouts, c.replays[8].same_plan_as), (1, Some(1)));
        assert_eq!(c.replays[2].stat.n, 1, "lost on its first replay");
        assert_eq!(c.decide(0.3), None);
    }

    #[test]
    fn an_operators_arm_steers_every_variant() {
        let mut c = steered();
        check(&mut c, 3, Some(500.0));
        assert!(c.parameter_sensitive());
        c.observe(2, 10.0, false);
        assert!(c.forced && !c.parameter_sensitive() && c.variants.is_empty());
        assert!(!c.wants_variant(9));
    }

    fn recurring() -> Class {
        let mut c = Class::new(7, 1, 10, 99);
        c.text = Some("SELECT 1".into());
        c.observe(0, 100.0, false);
        c.observe(0, 110.0, false);
        c
    }

    fn explore(c: &mut Class, plan_differs: impl Fn(usize) -> bool, time: impl Fn(usize) -> Option<f64>) {
        while let Some(r) = c.next_replay() {
            match r {
                Replay::Compare(arm) => c.compared(arm, !plan_differs(arm)),
                Replay::Measure(arm, _) => c.measured(arm, time(arm)),
                Replay::Variant(..) => unreachable!("exploring"),
            }
        }
    }

    #[test]
    fn a_class_is_explored_only_once_it_recurs_and_has_text() {
        let mut c = Class::new(7, 1, 10, 99);
        c.observe(0, 100.0, false);
        assert_eq!(c.next_replay(), None, "one execution");
        c.observe(0, 100.0, false);
        assert_eq!(c.next_replay(), None, "no text");
        c.text = Some("SELECT 1".into());
        assert!(matches!(c.next_replay(), Some(Replay::Measure(0, _))));
    }

    #[test]
    fn the_fastest_differing_arm_wins_when_it_saves_enough() {
        let mut c = recurring();
        // Arm 1 plans differently and runs 4x faster; arm 2 differs but times out; the rest plan the same.
        explore(
            &mut c,
            |a| a == 1 || a == 2,
            |a| match a {
                0 => Some(100.0),
                1 => Some(25.0),
                _ => None,
            },
        );
        assert_eq!(c.replays[2].timeouts, 1, "a timed-out arm is not replayed again");
        assert_eq!(c.replays[3].same_plan, Some(true));
        assert_eq!(c.decide(0.3), Some(1));
        assert_eq!((c.state, c.effective_arm()), (State::Steered, 1));
    }

    #[test]
    fn small_gains_keep_the_native_plan() {
        let mut c = recurring();
        explore(&mut c, |a| a == 1, |a| Some(if a == 0 { 100.0 } else { 90.0 }));
        assert_eq!(c.replays[1].stat.n, REPLAYS, "an arm faster than native is replayed again");
        assert_eq!(c.decide(0.3), None);
        assert_eq!((c.state, c.effective_arm()), (State::Native, 0));
        assert_eq!(c.next_replay(), None, "explored classes are not replayed again");
    }

    #[test]
    fn an_arm_must_also_beat_the_users_native_executions() {
        // TPC-DS Q94 in the fourth run: executions 322 ms, native replays 419 ms, the arm 291 ms.
        let mut q94 = Class::new(7, 1, 10, 99);
        q94.text = Some("SELECT 1".into());
        for ms in [300.0, 320.0, 346.0] {
            q94.observe(0, ms, false);
        }
        explore(&mut q94, |a| a == 1, |a| Some(if a == 0 { 419.0 } else { 291.0 }));
        assert_eq!(q94.decide(0.3), None, "30 % faster than the replays, 10 % than the executions");
        assert_eq!(q94.state, State::Native);
        // Executions slower than the replays: the replays are the bar.
        let mut slow = Class::new(7, 1, 10, 99);
        slow.text = Some("SELECT 1".into());
        slow.observe(0, 900.0, false);
        slow.observe(0, 900.0, false);
        explore(&mut slow, |a| a == 1, |a| Some(if a == 0 { 419.0 } else { 291.0 }));
        assert_eq!(slow.decide(0.3), Some(1));
    }

    #[test]
    fn an_arm_slower_than_native_on_its_first_replay_is_out() {
        let mut c = recurring();
        // Arm 1 plans differently and is slower than native, arm 2 faster.
        let measured = explore_predicted(&mut c, None, &[1, 2], &[100.0, 130.0, 60.0]);
        assert_eq!(measured[1], 1, "one replay settles a losing arm");
        assert_eq!(measured[2], REPLAYS);
        assert!(!c.replays[1].usable());
        assert_eq!(c.decide(0.3), Some(2));
    }

    /// Explores `c` to the end like the worker, asking for a prediction (`predicted`) when the arms are reached;
    /// returns the replays measured per arm.
    fn explore_predicted(c: &mut Class, predicted: Option<usize>, differs: &[usize], ms: &[f64]) -> Vec<u64> {
        let mut measured = vec![0; ARMS.len()];
        let mut n = 0;
        loop {
            if c.wants_prediction() {
                c.predict(predicted);
            }
            let Some(r) = c.next_replay() else { break };
            match r {
                Replay::Compare(arm) => c.compared(arm, !differs.contains(&arm)),
                Replay::Measure(arm, _) => {
                    measured[arm] += 1;
                    c.measured(arm, Some(ms[arm]));
                }
                Replay::Variant(..) => unreachable!("exploring"),
            }
            n += 1;
            assert!(n < 100, "exploration ends");
        }
        measured
    }

    #[test]
    fn a_confirmed_prediction_ends_exploration() {
        let mut c = recurring();
        let ms = [100.0, 30.0, 90.0, 20.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0];
        let measured = explore_predicted(&mut c, Some(3), &[1, 2, 3], &ms);
        assert_eq!(c.predicted, Some(3));
        assert_eq!(measured[3], REPLAYS, "the predicted arm is measured first");
        assert_eq!(&measured[1..], &[0, 0, 2, 0, 0, 0, 0, 0, 0, 0], "and nothing after it confirmed");
        assert_eq!(c.replays[1].same_plan, None, "no other arm was even compared");
        assert_eq!(c.decide(0.3), Some(3));
    }

    #[test]
    fn a_wrong_prediction_costs_nothing_but_the_order() {
        let ms = [100.0, 30.0, 90.0, 120.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0];
        let mut predicted = recurring();
        let measured = explore_predicted(&mut predicted, Some(3), &[1, 2, 3], &ms);
        assert_eq!(measured[3], 1, "the predicted arm lost on its first replay");
        let mut plain = recurring();
        explore_predicted(&mut plain, None, &[1, 2, 3], &ms);
        assert_eq!(predicted.replays, plain.replays, "the same measurements, in another order");
        assert_eq!((predicted.decide(0.3), plain.decide(0.3)), (Some(1), Some(1)));
    }

    #[test]
    fn a_prediction_is_asked_for_once_when_the_arms_are_reached() {
        let mut c = recurring();
        assert!(!c.wants_prediction(), "the native plan is replayed first");
        while matches!(c.next_replay(), Some(Replay::Measure(0, _))) {
            c.measured(0, Some(100.0));
        }
        assert!(c.wants_prediction());
        c.predict(Some(ARMS.len()));
        assert_eq!(c.predicted, None, "not an arm");
        assert!(!c.wants_prediction());
    }

    #[test]
    fn the_guard_reverts_a_steered_class_that_runs_slower() {
        let mut c = recurring();
        explore(&mut c, |a| a == 1, |a| Some(if a == 0 { 100.0 } else { 20.0 }));
        c.decide(0.3);
        c.observe(1, 30.0, false);
        c.observe(1, 30.0, false);
        c.observe(1, 30.0, false);
        assert!(!c.guard(), "faster than native: kept");
        assert!(c.improvement().unwrap() > 0.6);
        for _ in 0..20 {
            c.observe(1, 400.0, false);
        }
        assert!(c.guard());
        assert_eq!((c.state, c.effective_arm()), (State::Reverted, 0));
    }

    #[test]
    fn an_arm_forced_by_an_operator_is_adopted_and_guarded() {
        let mut c = recurring();
        c.observe(9, 500.0, false);
        assert_eq!((c.state, c.arm, c.forced), (State::Steered, 9, true));
        c.observe(9, 500.0, false);
        c.observe(9, 500.0, false);
        assert!(c.guard(), "5x slower than native");
        assert_eq!(c.state, State::Reverted);
    }

    #[test]
    fn fast_classes_are_not_explored_and_the_first_replay_only_warms_up() {
        let mut c = Class::new(7, 1, 10, 99);
        c.text = Some("SELECT 1".into());
        c.observe(0, 0.02, false);
        c.observe(0, 0.03, false);
        assert_eq!(c.next_replay(), None, "microsecond queries are not worth steering");
        let mut c = recurring();
        c.measured(0, Some(500.0));
        assert_eq!(c.replays[0].stat.n, 0, "warm-up");
        c.measured(0, Some(100.0));
        assert_eq!(c.replays[0].stat.n, 1);
    }

    #[test]
    fn a_class_that_times_out_explores_its_arms_against_the_lower_bound() {
        let mut c = Class::new(7, 1, 10, 99);
        c.text = Some("SELECT 1".into());
        // Cancelled at 60 s twice: the native plan takes at least that long.
        c.observe(0, 60_000.0, true);
        c.observe(0, 60_000.0, true);
        assert!(c.censored());
        assert_eq!(c.next_replay(), Some(Replay::Compare(1)), "no native replay: it would only time out");
        // Arms 3 and 4 plan differently: arm 3 times out at the bound, arm 4 finishes in 2 s.
        let mut limits = Vec::new();
        while let Some(r) = c.next_replay() {
            match r {
                Replay::Compare(arm) => c.compared(arm, arm != 3 && arm != 4),
                Replay::Measure(arm, limit) => {
                    limits.push((arm, limit));
                    c.measured(arm, if arm == 4 { Some(2_000.0) } else { None });
                }
                Replay::Variant(..) => unreachable!("exploring"),
            }
        }
        assert!(limits.iter().all(|&(_, t)| (59_000..=60_000).contains(&t)), "timeouts at the bound: {limits:?}");
        assert_eq!(limits.iter().map(|&(a, _)| a).collect::<Vec<_>>(), [3, 4, 4]);
        assert_eq!(c.replays[0].stat.n, 0, "the native plan was never replayed");
        assert_eq!(c.replays[5].same_plan, None, "arm 4 rescued the class: the arms after it are not even planned");
        assert_eq!(c.decide(0.3), Some(4));
        assert!(c.replay_ratio() < 0.05);
        // Every arm that plans differently timing out too: native (nothing better was found).
        c.restart();
        c.observe(0, 60_000.0, true);
        c.observe(0, 60_000.0, true);
        c.observe(0, 500.0, false);
        explore(&mut c, |a| a == 3, |_| None);
        assert_eq!(c.decide(0.3), None);
        assert_eq!(c.state, State::Native);
    }

    #[test]
    fn replay_errors_stop_exploration() {
        let mut c = recurring();
        for _ in 0..3 {
            c.failed("permission denied".into());
        }
        assert_eq!(c.state, State::NotReplayable);
        assert_eq!(c.next_replay(), None);
    }
}
