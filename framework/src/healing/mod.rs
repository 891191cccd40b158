//! Self-healing: detected [`Issue`]s and the [`RepairStrategy`] plugins that fix them.
//!
//! Detection (anomalies, index health, learning drift) produces issues; an orchestrator hands each issue to a
//! strategy that [`can_repair`](RepairStrategy::can_repair) it, then [`verify`](RepairStrategy::verify)s the
//! outcome and [`rollback`](RepairStrategy::rollback)s when verification fails. Strategies act through the
//! [`RepairContext`], which records every action and honours dry runs. [`AnomalyDetector`] and [`IncidentTracker`]
//! find what is wrong without false alarms; [`HealingOrchestrator`] runs the cycle and reports health.

mod anomaly;
mod drift;
mod index_health;
mod orchestrator;

pub use anomaly::{
    Anomaly, AnomalyConfig, AnomalyDetector, Direction, Incident, IncidentPolicy, IncidentTracker, TrackerState,
};
pub use drift::{Better, Drift, Trend, drift};
pub use index_health::{
    IndexAction, IndexAssessment, IndexKind, IndexMeasurement, IndexThresholds, assess as assess_index,
};
pub use orchestrator::{
    BenignRule, CycleReport, HealingConfig, HealingOrchestrator, HealthCheck, HealthReport, RepairRecord, SignalCheck,
    SubsystemHealth, overall_score,
};

use crate::error::{Error, Result};
use std::time::Duration;

/// How urgent an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; no action needed.
    Info,
    /// Degrading; repair when convenient.
    Warning,
    /// Hurting queries now.
    Critical,
}

/// What kind of problem an issue is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IssueKind {
    /// Query latency left its usual range.
    LatencyAnomaly,
    /// An index lost recall or efficiency (bloat, stale IVF lists, HNSW after heavy deletes).
    IndexDegraded,
    /// Learned patterns stopped predicting well.
    LearningDrift,
    /// A learned pattern's quality fell below the threshold.
    PatternQuality,
    /// Anything else, named.
    Other(String),
}

/// A detected problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// Identifier, unique within the detector's history.
    pub id: u64,
    /// Kind.
    pub kind: IssueKind,
    /// What is affected: an index name, a query class, a subsystem.
    pub target: String,
    /// Urgency.
    pub severity: Severity,
    /// Human-readable detail with the evidence (values, thresholds).
    pub detail: String,
    /// Named facts a strategy may need to act, beyond the target: e.g. `table` and `action` of an index issue
    /// (see [`Issue::fact`]). Empty by default.
    pub facts: Vec<(String, String)>,
}

impl Issue {
    /// An issue without facts.
    pub fn new(
        id: u64,
        kind: IssueKind,
        target: impl Into<String>,
        severity: Severity,
        detail: impl Into<String>,
    ) -> Self {
        Issue { id, kind, target: target.into(), severity, detail: detail.into(), facts: Vec::new() }
    }

    /// Adds a named fact.
    pub fn with_fact(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.facts.push((key.into(), value.into()));
        self
    }

    /// The value of fact `key`, if the detector gave one.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Runs one statement for a strategy, in the host's language (SQL for the PostgreSQL host); `Err` carries the
/// host's message.
pub type Executor = std::sync::Arc<dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync>;

/// Where a repair acts. Records every action in order; in a dry run, strategies describe what they would do
/// without doing it. A host that lets strategies act through it gives an [`Executor`]: then
/// [`execute`](RepairContext::execute) records a statement and has the host run it.
#[derive(Clone, Default)]
pub struct RepairContext {
    dry_run: bool,
    actions: Vec<String>,
    executor: Option<Executor>,
}

impl std::fmt::Debug for RepairContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairContext")
            .field("dry_run", &self.dry_run)
            .field("actions", &self.actions)
            .field("executor", &self.executor.is_some())
            .finish()
    }
}

impl RepairContext {
    /// A context that performs repairs.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context that only plans repairs.
    pub fn dry_run() -> Self {
        RepairContext { dry_run: true, ..Self::default() }
    }

    /// A context that performs repairs, running statements through `executor`.
    pub fn with_executor(executor: Executor) -> Self {
        RepairContext { executor: Some(executor), ..Self::default() }
    }

    /// Records `statement` and, unless this is a dry run, has the host run it. An error when the host gave no
    /// executor or the statement failed (the statement stays recorded: it was attempted).
    pub fn execute(&mut self, statement: &str) -> Result<()> {
        self.actions.push(statement.to_owned());
        if self.dry_run {
            return Ok(());
        }
        let Some(run) = &self.executor else {
            return Err(Error::NotSupported(format!("running `{statement}`: this host gives strategies no executor")));
        };
        run(statement).map_err(|message| Error::Execute { statement: statement.to_owned(), message })
    }

    /// True in a dry run: strategies must not change anything.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Records an action (performed, or planned in a dry run).
    pub fn record(&mut self, action: impl Into<String>) {
        self.actions.push(action.into());
    }

    /// Actions recorded so far.
    pub fn actions(&self) -> &[String] {
        &self.actions
    }
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RepairOutcome {
    /// True when something was changed (false in dry runs and when nothing needed doing).
    pub applied: bool,
    /// Summary for logs and the repair history.
    pub detail: String,
}

/// Whether a repair helped, judged after the fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The problem is gone or measurably smaller.
    Improved,
    /// No measurable change.
    Unchanged,
    /// Worse than before: roll back.
    Regressed,
    /// The strategy cannot tell.
    Unknown,
}

/// A way to fix one kind of issue.
///
/// `repair` does the work; `verify` measures whether it helped and `rollback` undoes it. Only `name`,
/// `can_repair` and `repair` are required: by default `verify` says [`Verdict::Unknown`] (an orchestrator
/// treats that as "keep, but do not count as fixed"), `rollback` reports that it is not supported, and there is
/// no duration estimate.
///
/// `Option<S>` is a strategy that repairs nothing when `None`; `Vec<S>` delegates each issue to the first
/// strategy that can repair it.
pub trait RepairStrategy: Send + Sync {
    /// The strategy's registered name, e.g. `reindex`.
    fn name(&self) -> &str;

    /// True when this strategy knows how to fix `issue`.
    fn can_repair(&self, issue: &Issue) -> bool;

    /// Fixes `issue`, recording actions in `ctx`.
    fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> Result<RepairOutcome>;

    /// Judges a repair after it ran. Default: [`Verdict::Unknown`].
    fn verify(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<Verdict> {
        let _ = (issue, outcome, ctx);
        Ok(Verdict::Unknown)
    }

    /// Undoes a repair. Default: not supported.
    fn rollback(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<()> {
        let _ = (issue, outcome, ctx);
        Err(Error::NotSupported(format!("rollback by repair strategy `{}`", self.name())))
    }

    /// Expected duration of `repair`, when the strategy can estimate it. Default: unknown.
    fn estimated_duration(&self, issue: &Issue) -> Option<Duration> {
        let _ = issue;
        None
    }
}

impl<S: RepairStrategy + ?Sized> RepairStrategy for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        (**self).can_repair(issue)
    }
    fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> Result<RepairOutcome> {
        (**self).repair(issue, ctx)
    }
    fn verify(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<Verdict> {
        (**self).verify(issue, outcome, ctx)
    }
    fn rollback(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<()> {
        (**self).rollback(issue, outcome, ctx)
    }
    fn estimated_duration(&self, issue: &Issue) -> Option<Duration> {
        (**self).estimated_duration(issue)
    }
}

impl<S: RepairStrategy> RepairStrategy for Option<S> {
    fn name(&self) -> &str {
        self.as_ref().map_or("none", S::name)
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        self.as_ref().is_some_and(|s| s.can_repair(issue))
    }
    fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> Result<RepairOutcome> {
        match self {
            Some(s) => s.repair(issue, ctx),
            None => Err(Error::NotSupported(format!("repair of issue {} (no strategy)", issue.id))),
        }
    }
    fn verify(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<Verdict> {
        self.as_ref().map_or(Ok(Verdict::Unknown), |s| s.verify(issue, outcome, ctx))
    }
    fn rollback(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<()> {
        match self {
            Some(s) => s.rollback(issue, outcome, ctx),
            None => Err(Error::NotSupported(format!("rollback of issue {} (no strategy)", issue.id))),
        }
    }
    fn estimated_duration(&self, issue: &Issue) -> Option<Duration> {
        self.as_ref().and_then(|s| s.estimated_duration(issue))
    }
}

impl<S: RepairStrategy> RepairStrategy for Vec<S> {
    fn name(&self) -> &str {
        "strategies"
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        self.iter().any(|s| s.can_repair(issue))
    }
    fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> Result<RepairOutcome> {
        first_able(self, issue)?.repair(issue, ctx)
    }
    fn verify(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<Verdict> {
        first_able(self, issue)?.verify(issue, outcome, ctx)
    }
    fn rollback(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<()> {
        first_able(self, issue)?.rollback(issue, outcome, ctx)
    }
    fn estimated_duration(&self, issue: &Issue) -> Option<Duration> {
        self.iter().find(|s| s.can_repair(issue)).and_then(|s| s.estimated_duration(issue))
    }
}

fn first_able<'a, S: RepairStrategy>(strategies: &'a [S], issue: &Issue) -> Result<&'a S> {
    strategies.iter().find(|s| s.can_repair(issue)).ok_or_else(|| {
        Error::NotSupported(format!("repair of issue {} ({:?} on {})", issue.id, issue.kind, issue.target))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repairs latency anomalies by recording one action.
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
            Ok(RepairOutcome { applied: !ctx.is_dry_run(), detail: "flushed".into() })
        }
    }

    fn issue(kind: IssueKind) -> Issue {
        Issue::new(1, kind, "q42", Severity::Warning, "")
    }

    #[test]
    fn execute_runs_through_the_host_and_records_even_in_dry_runs() {
        let ran = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = ran.clone();
        let mut ctx = RepairContext::with_executor(std::sync::Arc::new(move |sql: &str| {
            seen.lock().unwrap().push(sql.to_owned());
            if sql.starts_with("BAD") { Err("syntax error".into()) } else { Ok(()) }
        }));
        ctx.execute("VACUUM t").unwrap();
        let err = ctx.execute("BAD x").unwrap_err().to_string();
        assert_eq!(err, "`BAD x` failed: syntax error");
        assert_eq!(*ran.lock().unwrap(), ["VACUUM t", "BAD x"]);
        assert_eq!(ctx.actions(), ["VACUUM t", "BAD x"]);

        let mut dry = RepairContext::dry_run();
        dry.execute("VACUUM t").unwrap();
        assert_eq!(dry.actions(), ["VACUUM t"]);
        let err = RepairContext::new().execute("VACUUM t").unwrap_err().to_string();
        assert!(err.contains("no executor"), "{err}");
    }

    #[test]
    fn facts_name_what_a_strategy_needs() {
        let i = issue(IssueKind::IndexDegraded).with_fact("table", "public.items").with_fact("action", "vacuum");
        assert_eq!(i.fact("table"), Some("public.items"));
        assert_eq!(i.fact("action"), Some("vacuum"));
        assert_eq!(i.fact("index"), None);
    }

    #[test]
    fn vec_delegates_to_the_first_able_strategy() {
        let set = vec![Flush];
        let mut ctx = RepairContext::dry_run();
        let out = set.repair(&issue(IssueKind::LatencyAnomaly), &mut ctx).unwrap();
        assert!(!out.applied);
        assert_eq!(ctx.actions(), ["flush q42"]);
        assert!(!set.can_repair(&issue(IssueKind::LearningDrift)));
        let err = set.repair(&issue(IssueKind::LearningDrift), &mut ctx).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn defaults_are_honest() {
        let mut ctx = RepairContext::new();
        let i = issue(IssueKind::LatencyAnomaly);
        let out = Flush.repair(&i, &mut ctx).unwrap();
        assert!(out.applied);
        assert_eq!(Flush.verify(&i, &out, &mut ctx).unwrap(), Verdict::Unknown);
        assert!(Flush.rollback(&i, &out, &mut ctx).is_err());
        assert_eq!(Flush.estimated_duration(&i), None);
        assert!(!None::<Flush>.can_repair(&i));
    }
}
