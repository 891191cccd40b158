//! Detect → prioritise → repair → verify → roll back, with a history and a health report computed from real
//! checks.

use super::{
    AnomalyConfig, Incident, IncidentPolicy, IncidentTracker, Issue, RepairContext, RepairOutcome, RepairStrategy,
    Severity, TrackerState, Verdict,
};
use crate::error::Result;
use std::sync::Mutex;

/// How the orchestrator acts.
#[derive(Debug, Clone, PartialEq)]
pub struct HealingConfig {
    /// Repairs started per cycle, at most (most severe issues first).
    pub max_repairs_per_cycle: usize,
    /// Plan repairs without performing them.
    pub dry_run: bool,
    /// A subsystem scoring below this is reported unhealthy.
    pub health_threshold: f64,
    /// Repairs remembered in the history.
    pub history_capacity: usize,
}

impl Default for HealingConfig {
    fn default() -> Self {
        HealingConfig { max_repairs_per_cycle: 2, dry_run: false, health_threshold: 0.3, history_capacity: 1000 }
    }
}

/// One subsystem's health.
#[derive(Debug, Clone, PartialEq)]
pub struct SubsystemHealth {
    /// Subsystem name, e.g. `query_latency`, `index:users_embedding_idx`.
    pub name: String,
    /// In `[0, 1]`: 1 healthy.
    pub score: f64,
    /// The evidence.
    pub detail: String,
}

/// A source of health and issues: a detector, an index probe, the learning drift check.
pub trait HealthCheck: Send + Sync {
    /// The check's name.
    fn name(&self) -> &str;
    /// Measures now.
    ///
    /// # Errors
    /// When the measurement failed (reported as a score of 0 with the error).
    fn check(&self) -> Result<SubsystemHealth>;
    /// Issues found by the last measurement. Default: none.
    fn issues(&self) -> Vec<Issue> {
        Vec::new()
    }
}

/// A [`HealthCheck`] over one signal (a query class's latency, throughput, error rate, …): observations go
/// through an [`IncidentTracker`]; an open incident is an [`Issue`] of `kind` on `target`, critical when its peak
/// |z| is twice the threshold. Observations a `benign` rule recognises (a nightly batch, a known maintenance
/// window) are left out entirely, as if not observed.
///
/// ```
/// use ruvector_dag::healing::*;
/// let check = SignalCheck::new("q42_latency", IssueKind::LatencyAnomaly, "query class 42", AnomalyConfig::default());
/// for _ in 0..100 { check.observe(10.0); }
/// for _ in 0..10 { check.observe(80.0); }
/// assert_eq!(check.issues().len(), 1);
/// assert!(check.check().unwrap().score < 0.5);
/// ```
pub struct SignalCheck {
    name: String,
    kind: super::IssueKind,
    target: String,
    tracker: Mutex<IncidentTracker>,
    benign: Option<BenignRule>,
}

/// Recognises known-benign observations: `(sequence number, value) -> true` to leave one out.
pub type BenignRule = Box<dyn Fn(u64, f64) -> bool + Send + Sync>;

impl std::fmt::Debug for SignalCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalCheck").field("name", &self.name).field("target", &self.target).finish()
    }
}

impl SignalCheck {
    /// A check named `name` raising issues of `kind` on `target`, scoring with `config` and the default policy.
    pub fn new(
        name: impl Into<String>,
        kind: super::IssueKind,
        target: impl Into<String>,
        config: AnomalyConfig,
    ) -> Self {
        Self::with_policy(name, kind, target, config, IncidentPolicy::default())
    }

    /// As [`new`](Self::new) with an explicit policy.
    pub fn with_policy(
        name: impl Into<String>,
        kind: super::IssueKind,
        target: impl Into<String>,
        config: AnomalyConfig,
        policy: IncidentPolicy,
    ) -> Self {
        SignalCheck {
            name: name.into(),
            kind,
            target: target.into(),
            tracker: Mutex::new(IncidentTracker::with_policy(config, policy)),
            benign: None,
        }
    }

    /// Leaves out the observations `rule` recognises as known-benign.
    pub fn benign(mut self, rule: BenignRule) -> Self {
        self.benign = Some(rule);
        self
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, IncidentTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds one observation; returns the incident it opened, if any.
    pub fn observe(&self, value: f64) -> Option<Incident> {
        let mut t = self.tracker();
        if self.benign.as_ref().is_some_and(|rule| rule(t.observed(), value)) {
            t.skip();
            return None;
        }
        t.observe(value)
    }

    /// Ignores the next `observations` (our own repair is running).
    pub fn blackout(&self, observations: usize) {
        self.tracker().blackout(observations);
    }
}

impl HealthCheck for SignalCheck {
    fn name(&self) -> &str {
        &self.name
    }

    /// 1 when normal; during an incident 1 / (1 + peak |z| / threshold), so a 3× latency shift scores about 0.3.
    fn check(&self) -> Result<SubsystemHealth> {
        let t = self.tracker();
        let threshold = t.threshold();
        let (score, detail) = match (t.state(), t.open_incident()) {
            (_, Some(i)) => (
                1.0 / (1.0 + i.peak_z / threshold),
                format!(
                    "incident since observation {}: peak z {:.1}, baseline {:.3}",
                    i.opened_at, i.peak_z, i.baseline
                ),
            ),
            (TrackerState::WarmingUp, _) => (1.0, "warming up".to_owned()),
            (TrackerState::Blackout, _) => (1.0, "in a blackout (our own repair runs)".to_owned()),
            _ => (1.0, format!("normal; {} isolated anomalies suppressed", t.suppressed())),
        };
        Ok(SubsystemHealth { name: self.name.clone(), score, detail })
    }

    fn issues(&self) -> Vec<Issue> {
        let t = self.tracker();
        let Some(i) = t.open_incident() else { return Vec::new() };
        let severity = if i.peak_z >= 2.0 * t.threshold() { Severity::Critical } else { Severity::Warning };
        vec![Issue {
            id: i.opened_at,
            kind: self.kind.clone(),
            target: self.target.clone(),
            severity,
            detail: format!(
                "sustained anomaly since observation {} (peak z {:.1}, baseline {:.3})",
                i.opened_at, i.peak_z, i.baseline
            ),
            facts: Vec::new(),
        }]
    }
}

/// What happened to one issue.
#[derive(Debug, Clone, PartialEq)]
pub struct RepairRecord {
    /// The issue.
    pub issue: Issue,
    /// Strategy that handled it, or `None` when none could.
    pub strategy: Option<String>,
    /// The repair's outcome, when it ran.
    pub outcome: Option<RepairOutcome>,
    /// The verification, when it ran.
    pub verdict: Option<Verdict>,
    /// True when the repair was rolled back (after a regression).
    pub rolled_back: bool,
    /// The error, if a step failed.
    pub error: Option<String>,
    /// Actions recorded.
    pub actions: Vec<String>,
}

impl RepairRecord {
    fn succeeded(&self) -> bool {
        self.error.is_none() && !self.rolled_back && self.verdict != Some(Verdict::Regressed)
    }
}

/// What a cycle did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CycleReport {
    /// Issues found.
    pub issues: usize,
    /// Repairs attempted (at most `max_repairs_per_cycle`).
    pub repaired: usize,
    /// Of those, rolled back.
    pub rolled_back: usize,
    /// Issues left for later cycles (over the per-cycle limit or without a strategy).
    pub deferred: usize,
}

/// The health of every subsystem and overall.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// Mean of the subsystem scores, capped by the worst one plus 0.5 (one broken subsystem cannot hide behind
    /// many healthy ones).
    pub overall_score: f64,
    /// Each subsystem, including `repairs` (the share of recent repairs that succeeded).
    pub subsystems: Vec<SubsystemHealth>,
    /// Subsystems below the health threshold.
    pub unhealthy: Vec<String>,
}

/// Runs healing cycles over registered checks and strategies.
pub struct HealingOrchestrator {
    config: HealingConfig,
    checks: Vec<Box<dyn HealthCheck>>,
    strategies: Vec<Box<dyn RepairStrategy>>,
    history: Mutex<Vec<RepairRecord>>,
}

impl std::fmt::Debug for HealingOrchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealingOrchestrator")
            .field("config", &self.config)
            .field("checks", &self.checks.iter().map(|c| c.name()).collect::<Vec<_>>())
            .field("strategies", &self.strategies.iter().map(|s| s.name()).collect::<Vec<_>>())
            .finish()
    }
}

impl HealingOrchestrator {
    /// An orchestrator without checks or strategies.
    pub fn new(config: HealingConfig) -> Self {
        HealingOrchestrator { config, checks: Vec::new(), strategies: Vec::new(), history: Mutex::new(Vec::new()) }
    }

    /// Adds a check.
    pub fn with_check(mut self, check: Box<dyn HealthCheck>) -> Self {
        self.checks.push(check);
        self
    }

    /// Adds a repair strategy (tried in the order added).
    pub fn with_strategy(mut self, strategy: Box<dyn RepairStrategy>) -> Self {
        self.strategies.push(strategy);
        self
    }

    /// One cycle: measure every check, collect issues, repair the most severe ones (up to the per-cycle limit)
    /// with the first strategy that can, verify, roll back a regression, record everything.
    ///
    /// # Errors
    /// None today; reserved for failures of the cycle itself (a failing check or repair is recorded, not
    /// returned).
    pub fn run_cycle(&self) -> Result<CycleReport> {
        let mut issues: Vec<Issue> = Vec::new();
        for c in &self.checks {
            if c.check().is_ok() {
                issues.extend(c.issues());
            }
        }
        issues.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
        let mut report = CycleReport { issues: issues.len(), ..CycleReport::default() };
        let mut records = Vec::new();
        for issue in issues {
            if report.repaired >= self.config.max_repairs_per_cycle || issue.severity == Severity::Info {
                report.deferred += 1;
                continue;
            }
            let Some(strategy) = self.strategies.iter().find(|s| s.can_repair(&issue)) else {
                report.deferred += 1;
                records.push(RepairRecord {
                    issue,
                    strategy: None,
                    outcome: None,
                    verdict: None,
                    rolled_back: false,
                    error: None,
                    actions: Vec::new(),
                });
                continue;
            };
            report.repaired += 1;
            let record = self.repair_one(strategy.as_ref(), issue);
            report.rolled_back += usize::from(record.rolled_back);
            records.push(record);
        }
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.extend(records);
        let excess = history.len().saturating_sub(self.config.history_capacity);
        history.drain(..excess);
        Ok(report)
    }

    fn repair_one(&self, strategy: &dyn RepairStrategy, issue: Issue) -> RepairRecord {
        let mut ctx = if self.config.dry_run { RepairContext::dry_run() } else { RepairContext::new() };
        let mut record = RepairRecord {
            strategy: Some(strategy.name().to_owned()),
            outcome: None,
            verdict: None,
            rolled_back: false,
            error: None,
            actions: Vec::new(),
            issue,
        };
        match strategy.repair(&record.issue, &mut ctx) {
            Ok(outcome) => {
                match strategy.verify(&record.issue, &outcome, &mut ctx) {
                    Ok(Verdict::Regressed) => {
                        record.verdict = Some(Verdict::Regressed);
                        match strategy.rollback(&record.issue, &outcome, &mut ctx) {
                            Ok(()) => record.rolled_back = true,
                            Err(e) => record.error = Some(format!("rollback failed: {e}")),
                        }
                    }
                    Ok(v) => record.verdict = Some(v),
                    Err(e) => record.error = Some(format!("verification failed: {e}")),
                }
                record.outcome = Some(outcome);
            }
            Err(e) => record.error = Some(e.to_string()),
        }
        record.actions = ctx.actions().to_vec();
        record
    }

    /// Repairs so far, oldest first.
    pub fn history(&self) -> Vec<RepairRecord> {
        self.history.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Measures every check now and scores the recent repairs.
    pub fn health_report(&self) -> HealthReport {
        let mut subsystems: Vec<SubsystemHealth> = self
            .checks
            .iter()
            .map(|c| match c.check() {
                Ok(h) => SubsystemHealth { score: h.score.clamp(0.0, 1.0), ..h },
                Err(e) => {
                    SubsystemHealth { name: c.name().to_owned(), score: 0.0, detail: format!("check failed: {e}") }
                }
            })
            .collect();
        let history = self.history();
        let recent: Vec<&RepairRecord> = history.iter().rev().filter(|r| r.strategy.is_some()).take(20).collect();
        let succeeded = recent.iter().filter(|r| r.succeeded()).count();
        subsystems.push(SubsystemHealth {
            name: "repairs".into(),
            score: if recent.is_empty() { 1.0 } else { succeeded as f64 / recent.len() as f64 },
            detail: format!("{succeeded} of the last {} repairs succeeded", recent.len()),
        });
        let scores: Vec<f64> = subsystems.iter().map(|s| s.score).collect();
        let unhealthy =
            subsystems.iter().filter(|s| s.score < self.config.health_threshold).map(|s| s.name.clone()).collect();
        HealthReport { overall_score: overall_score(&scores), subsystems, unhealthy }
    }
}

/// Overall health from subsystem scores in 0..=1: their mean, but never more than the worst plus 0.5 (one
/// failing subsystem cannot hide behind many healthy ones). 1.0 for no scores.
pub fn overall_score(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        return 1.0;
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let worst = scores.iter().copied().fold(1.0, f64::min);
    mean.min(worst + 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::healing::IssueKind;

    struct Fixed {
        score: f64,
        issues: Vec<Issue>,
    }

    impl HealthCheck for Fixed {
        fn name(&self) -> &str {
            "latency"
        }
        fn check(&self) -> Result<SubsystemHealth> {
            Ok(SubsystemHealth { name: "latency".into(), score: self.score, detail: String::new() })
        }
        fn issues(&self) -> Vec<Issue> {
            self.issues.clone()
        }
    }

    /// Repairs; verification says `verdict`; records rollbacks.
    struct Strategy {
        verdict: Verdict,
    }

    impl RepairStrategy for Strategy {
        fn name(&self) -> &str {
            "reindex"
        }
        fn can_repair(&self, issue: &Issue) -> bool {
            issue.kind == IssueKind::IndexDegraded
        }
        fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> Result<RepairOutcome> {
            ctx.record(format!("reindex {}", issue.target));
            Ok(RepairOutcome { applied: true, detail: "rebuilt".into() })
        }
        fn verify(&self, _: &Issue, _: &RepairOutcome, _: &mut RepairContext) -> Result<Verdict> {
            Ok(self.verdict)
        }
        fn rollback(&self, issue: &Issue, _: &RepairOutcome, ctx: &mut RepairContext) -> Result<()> {
            ctx.record(format!("restore {}", issue.target));
            Ok(())
        }
    }

    fn issue(id: u64, severity: Severity) -> Issue {
        Issue::new(id, IssueKind::IndexDegraded, format!("idx{id}"), severity, "")
    }

    #[test]
    fn severe_issues_first_with_a_limit_and_regressions_rolled_back() {
        let check = Fixed {
            score: 0.9,
            issues: vec![issue(1, Severity::Warning), issue(2, Severity::Critical), issue(3, Severity::Warning)],
        };
        let orch = HealingOrchestrator::new(HealingConfig::default())
            .with_check(Box::new(check))
            .with_strategy(Box::new(Strategy { verdict: Verdict::Regressed }));
        let report = orch.run_cycle().unwrap();
        assert_eq!(report, CycleReport { issues: 3, repaired: 2, rolled_back: 2, deferred: 1 });
        let history = orch.history();
        assert_eq!(history[0].issue.id, 2, "critical first");
        assert_eq!(history[0].actions, ["reindex idx2", "restore idx2"]);
        let health = orch.health_report();
        let repairs = health.subsystems.iter().find(|s| s.name == "repairs").unwrap();
        assert_eq!(repairs.score, 0.0, "both repairs regressed");
        assert!(health.overall_score <= 0.5, "a broken subsystem caps the overall score: {}", health.overall_score);
        assert_eq!(health.unhealthy, ["repairs"]);
    }

    #[test]
    fn a_signal_incident_becomes_an_issue_that_a_repair_handles_and_benign_values_are_left_out() {
        let latency =
            SignalCheck::new("q1_latency", IssueKind::LatencyAnomaly, "query class 1", AnomalyConfig::default())
                // A known nightly batch: values above 1000 ms are its, not the class's.
                .benign(Box::new(|_, v| v > 1000.0));
        for _ in 0..100 {
            latency.observe(10.0);
        }
        for _ in 0..20 {
            assert_eq!(latency.observe(5000.0), None, "benign values never open an incident");
        }
        assert!(latency.issues().is_empty());
        assert_eq!(latency.check().unwrap().score, 1.0);
        let opened: Vec<_> = (0..10).filter_map(|_| latency.observe(90.0)).collect();
        assert_eq!(opened.len(), 1);
        let issues = latency.issues();
        assert_eq!((issues.len(), issues[0].severity), (1, Severity::Critical));
        assert!(latency.check().unwrap().score < 0.3);

        struct Flush;
        impl RepairStrategy for Flush {
            fn name(&self) -> &str {
                "flush"
            }
            fn can_repair(&self, issue: &Issue) -> bool {
                issue.kind == IssueKind::LatencyAnomaly
            }
            fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> Result<RepairOutcome> {
                ctx.record(format!("flush {}", issue.target));
                Ok(RepairOutcome { applied: true, detail: String::new() })
            }
        }
        let orch = HealingOrchestrator::new(HealingConfig::default())
            .with_check(Box::new(latency))
            .with_strategy(Box::new(Flush));
        assert_eq!(orch.run_cycle().unwrap().repaired, 1);
        assert_eq!(orch.history()[0].actions, ["flush query class 1"]);
        assert!(orch.health_report().overall_score < 0.8, "the open incident shows in the health");
    }

    #[test]
    fn health_comes_from_the_checks_and_the_history() {
        let orch = HealingOrchestrator::new(HealingConfig::default())
            .with_check(Box::new(Fixed { score: 0.6, issues: vec![issue(1, Severity::Warning)] }))
            .with_strategy(Box::new(Strategy { verdict: Verdict::Improved }));
        orch.run_cycle().unwrap();
        let health = orch.health_report();
        assert!((health.overall_score - 0.8).abs() < 1e-9, "mean of 0.6 and 1.0: {}", health.overall_score);
        let empty = HealingOrchestrator::new(HealingConfig { dry_run: true, ..HealingConfig::default() });
        empty.run_cycle().unwrap();
        assert_eq!(empty.health_report().overall_score, 1.0, "nothing measured is wrong, no repair failed");
    }
}
