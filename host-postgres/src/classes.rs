//! The learner's counterfactual log: per query class (query id), what its executions measured natively and
//! under the arm it is steered with, what background replays measured per arm, and the decision that follows.
//!
//! A class is explored once it recurs (two native executions) and its text can be replayed: the native plan is replayed
//! twice, then each arm whose plan differs from the native one is replayed twice with a timeout of twice the native
//! replay time (an arm that times out is out, and so is one whose first replay is no faster than native). The class is
//! then steered with the fastest arm if it saves at least `quality_threshold` of the native replay time, and otherwise
//! stays native. The no-regression guard reverts a steered class to native as soon as three of its steered user
//! executions average more than 1.1 × its native ones. Pure logic: unit-tested here, driven by the worker in
//! `learner.rs`.

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
        }
    }

    /// Takes the replayable text a backend stored for the class, if any; returns whether it did.
    pub(crate) fn take_text(&mut self, text: Option<crate::steering::QueryText>) -> bool {
        let Some(t) = text else { return false };
        self.text = Some(t.text);
        (self.db_id, self.user_id) = (t.db_id, t.user_id);
        true
    }

    /// Forgets everything measured and decided (keeping the identity and the text): the class is explored afresh.
    pub(crate) fn restart(&mut self) {
        *self = Class { text: self.text.take(), ..Class::new(self.query_id, self.db_id, self.user_id, self.plan_hash) };
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
        }
        self.steered.add(ms);
    }

    /// The next replay exploration needs, if any.
    pub(crate) fn next_replay(&self) -> Option<Replay> {
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
            return self.next_arm_replay(bound.min(600_000.0) as u64, bound);
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
        self.next_arm_replay((reference * 2.0 + 10.0).min(600_000.0) as u64, reference)
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

    /// The next arm to compare with native, or to measure with timeout `limit` ms. An arm whose first replay was
    /// no faster than `native` ms is out without a second one: to save the quality threshold its second replay
    /// would have to beat native by about twice that, and losing arms are most arms, each replay costing up to
    /// `limit`.
    fn next_arm_replay(&self, limit: u64, native: f64) -> Option<Replay> {
        let order = self.predicted.into_iter().chain((1..ARMS.len()).filter(|&a| Some(a) != self.predicted));
        for arm in order {
            let r = &self.replays[arm];
            let lost = r.stat.n > 0 && r.stat.ms() >= native;
            match r.same_plan {
                None => return Some(Replay::Compare(arm)),
                Some(false) if r.timeouts == 0 && r.stat.n < REPLAYS && !lost => {
                    return Some(Replay::Measure(arm, limit));
                }
                _ => {}
            }
        }
        None
    }

    /// Records that arm `arm` plans the same as native (`same`) or not.
    pub(crate) fn compared(&mut self, arm: usize, same: bool) {
        self.replays[arm].same_plan = Some(same);
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
