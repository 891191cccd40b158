//! The repair strategies of the PostgreSQL host: `repair` plugins (`ruvector.dag_plugins()` lists them), chosen
//! with any a plugin library adds in `ruvector.toml`:
//!
//! ```toml
//! [healing]
//! # Absent: every registered strategy, by name. An issue goes to the first listed one that can repair it.
//! strategies = ["vacuum", "reindex", "recluster", "search_breadth", "pattern_reset", "learning_rollback"]
//! [healing.reindex]
//! lock_timeout_ms = 30000   # absent: the maintenance connection's 10 s
//! ```
//!
//! | strategy | repairs | acts with |
//! |---|---|---|
//! | `vacuum` | an index whose table's dead tuples hurt it | `VACUUM (ANALYZE) <table>` |
//! | `reindex` | an index that lost recall or balance without dead tuples | `REINDEX INDEX CONCURRENTLY <index>` |
//! | `recluster` | the extension's pattern index (ReasoningBank lists) | `SELECT ruvector.dag_recompute_clusters()` |
//! | `search_breadth` | a vector index below a target recall (`dag_rebalance_index`) | `ALTER DATABASE … SET` |
//! | `pattern_reset` | the pattern behind a class whose steered plan regressed | `dag_reset_pattern_quality(ARRAY[…])` |
//! | `learning_rollback` | learning whose pattern quality degrades | restores the stored `last_good` state |
//!
//! Every strategy acts through [`RepairContext::execute`]: a dry run of it is the statement observe mode
//! recommends (`dag_repairs.implementation_sql`); in auto mode the same statements run, index repairs on the
//! learner worker's maintenance connection outside any transaction block (see `healing.rs`), the others through
//! SPI. Whether a repair helped is measured by the host (recall, buffers per query, pattern quality) and, for a
//! strategy from a plugin library, also asked of the strategy's `verify`; a `Regressed` verdict is rolled back
//! with its `rollback`.

use dag::healing::{Executor, Issue, IssueKind, RepairContext, RepairOutcome, RepairStrategy, Severity};
use dag::plugin::{Factory, PluginKind, PluginParams, PluginRegistration};
use dag::submit_plugin;
use pgrx::prelude::*;
use std::sync::{Arc, OnceLock};

/// `index_kind` of the extension's own pattern index.
pub(crate) const PATTERN_KIND: &str = "ivf_patterns";

fn fact<'a>(issue: &'a Issue, key: &str) -> dag::Result<&'a str> {
    issue
        .fact(key)
        .ok_or_else(|| dag::Error::NotSupported(format!("repair of {} without the fact `{key}`", issue.target)))
}

/// An index issue of one of our index actions (`vacuum`, `reindex`) on a real index.
fn index_action(issue: &Issue, action: &str) -> bool {
    issue.kind == IssueKind::IndexDegraded
        && issue.fact("action") == Some(action)
        && issue.fact("index_kind") != Some(PATTERN_KIND)
}

fn lock_timeout(params: &PluginParams) -> dag::Result<Option<i64>> {
    params.deny_unknown(&["lock_timeout_ms"])?;
    params
        .get::<serde_json::Value>("lock_timeout_ms", "an integer")?
        .map(|_| params.integer_in("lock_timeout_ms", 10_000, 1..=86_400_000))
        .transpose()
}

/// Runs `statement` after the strategy's `lock_timeout`, when one is configured.
fn with_lock_timeout(ctx: &mut RepairContext, ms: Option<i64>, statement: &str) -> dag::Result<()> {
    if let Some(ms) = ms {
        ctx.execute(&format!("SET lock_timeout = {ms}"))?;
    }
    ctx.execute(statement)
}

fn outcome(ctx: &RepairContext, detail: String) -> RepairOutcome {
    RepairOutcome { applied: !ctx.is_dry_run(), detail }
}

/// `VACUUM (ANALYZE)` of the index's table.
struct Vacuum {
    lock_timeout_ms: Option<i64>,
}

impl RepairStrategy for Vacuum {
    fn name(&self) -> &str {
        "vacuum"
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        index_action(issue, "vacuum") && issue.fact("table").is_some()
    }
    fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> dag::Result<RepairOutcome> {
        let table = fact(issue, "table")?;
        with_lock_timeout(ctx, self.lock_timeout_ms, &format!("VACUUM (ANALYZE) {table}"))?;
        Ok(outcome(ctx, format!("vacuumed {table}")))
    }
}

/// `REINDEX INDEX CONCURRENTLY`: the definition is kept, readers and writers go on.
struct Reindex {
    lock_timeout_ms: Option<i64>,
}

impl RepairStrategy for Reindex {
    fn name(&self) -> &str {
        "reindex"
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        index_action(issue, "reindex")
    }
    fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> dag::Result<RepairOutcome> {
        with_lock_timeout(ctx, self.lock_timeout_ms, &format!("REINDEX INDEX CONCURRENTLY {}", issue.target))?;
        Ok(outcome(ctx, format!("rebuilt {}", issue.target)))
    }
}

/// Re-clusters the pattern index through the learner worker.
struct Recluster;

impl RepairStrategy for Recluster {
    fn name(&self) -> &str {
        "recluster"
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        issue.kind == IssueKind::IndexDegraded && issue.fact("index_kind") == Some(PATTERN_KIND)
    }
    fn repair(&self, _: &Issue, ctx: &mut RepairContext) -> dag::Result<RepairOutcome> {
        ctx.execute("SELECT ruvector.dag_recompute_clusters()")?;
        Ok(outcome(ctx, "re-clustered the pattern index".to_owned()))
    }
}

/// Settings search-breadth tuning may change, and what their values may look like.
const BREADTH_SETTINGS: [&str; 4] =
    ["hnsw.ef_search", "hnsw.iterative_scan", "ivfflat.probes", "ivfflat.iterative_scan"];

/// `name=value, …` pairs of fact `key`, each a breadth setting with a plain value (empty = reset).
fn breadth_pairs<'a>(issue: &'a Issue, key: &str) -> dag::Result<Vec<(&'a str, &'a str)>> {
    let text = fact(issue, key)?;
    text.split(", ")
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let plain = v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if BREADTH_SETTINGS.contains(&k) && plain {
                Ok((k, v))
            } else {
                Err(dag::Error::NotSupported(format!("search-breadth setting `{kv}`")))
            }
        })
        .collect()
}

/// `ALTER DATABASE … SET` of the search breadth chosen for an index (fact `settings`, in database `database`);
/// rolled back to fact `previous`.
struct SearchBreadth;

impl SearchBreadth {
    fn apply(issue: &Issue, ctx: &mut RepairContext, key: &str) -> dag::Result<()> {
        let db = fact(issue, "database")?;
        for (k, v) in breadth_pairs(issue, key)? {
            if v.is_empty() {
                ctx.execute(&format!("ALTER DATABASE {db} RESET {k}"))?;
            } else {
                ctx.execute(&format!("ALTER DATABASE {db} SET {k} = '{v}'"))?;
            }
        }
        Ok(())
    }
}

impl RepairStrategy for SearchBreadth {
    fn name(&self) -> &str {
        "search_breadth"
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        issue.kind == IssueKind::IndexDegraded
            && issue.fact("action") == Some("search_breadth")
            && issue.fact("database").is_some()
            && breadth_pairs(issue, "settings").is_ok_and(|p| !p.is_empty())
    }
    fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> dag::Result<RepairOutcome> {
        Self::apply(issue, ctx, "settings")?;
        Ok(outcome(ctx, format!("{} for new sessions", fact(issue, "settings")?)))
    }
    fn rollback(&self, issue: &Issue, _: &RepairOutcome, ctx: &mut RepairContext) -> dag::Result<()> {
        Self::apply(issue, ctx, "previous")
    }
}

/// The ids of fact `patterns` (`12, 15`).
pub(crate) fn pattern_ids(issue: &Issue) -> dag::Result<Vec<u64>> {
    fact(issue, "patterns")?
        .split(',')
        .map(|id| {
            id.trim()
                .parse::<u64>()
                .map_err(|_| dag::Error::NotSupported(format!("pattern id `{id}` (expected an unsigned integer)")))
        })
        .collect()
}

/// Makes patterns forget their measured settings (quality 0 until measured again), through the learner worker:
/// for a class whose steered plan regressed, the pattern that taught it.
struct PatternReset;

impl RepairStrategy for PatternReset {
    fn name(&self) -> &str {
        "pattern_reset"
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        issue.kind == IssueKind::PatternQuality && pattern_ids(issue).is_ok_and(|ids| !ids.is_empty())
    }
    fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> dag::Result<RepairOutcome> {
        let ids = pattern_ids(issue)?.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        ctx.execute(&format!("SELECT ruvector.dag_reset_pattern_quality(ARRAY[{ids}]::bigint[])"))?;
        Ok(outcome(ctx, format!("reset the quality of pattern(s) {ids}")))
    }
}

/// Restores the learned state last kept while pattern quality was not degrading; the worker then loads it.
struct LearningRollback;

/// The statement [`LearningRollback`] runs.
const RESTORE_LAST_GOOD: &str = "UPDATE ruvector.dag_learning_state c SET state = g.state, \
     format_version = g.format_version, patterns = g.patterns, queries = g.queries, saved_at = g.saved_at \
     FROM ruvector.dag_learning_state g WHERE c.name = 'current' AND g.name = 'last_good'";

impl RepairStrategy for LearningRollback {
    fn name(&self) -> &str {
        "learning_rollback"
    }
    fn can_repair(&self, issue: &Issue) -> bool {
        issue.kind == IssueKind::LearningDrift
    }
    fn repair(&self, _: &Issue, ctx: &mut RepairContext) -> dag::Result<RepairOutcome> {
        ctx.execute(RESTORE_LAST_GOOD)?;
        Ok(outcome(ctx, "restored the last good learned state".to_owned()))
    }
}

fn make_vacuum(p: &PluginParams) -> dag::Result<Box<dyn RepairStrategy>> {
    Ok(Box::new(Vacuum { lock_timeout_ms: lock_timeout(p)? }))
}
fn make_reindex(p: &PluginParams) -> dag::Result<Box<dyn RepairStrategy>> {
    Ok(Box::new(Reindex { lock_timeout_ms: lock_timeout(p)? }))
}
fn make_recluster(p: &PluginParams) -> dag::Result<Box<dyn RepairStrategy>> {
    p.deny_unknown(&[])?;
    Ok(Box::new(Recluster))
}
fn make_search_breadth(p: &PluginParams) -> dag::Result<Box<dyn RepairStrategy>> {
    p.deny_unknown(&[])?;
    Ok(Box::new(SearchBreadth))
}
fn make_pattern_reset(p: &PluginParams) -> dag::Result<Box<dyn RepairStrategy>> {
    p.deny_unknown(&[])?;
    Ok(Box::new(PatternReset))
}
fn make_learning_rollback(p: &PluginParams) -> dag::Result<Box<dyn RepairStrategy>> {
    p.deny_unknown(&[])?;
    Ok(Box::new(LearningRollback))
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

submit_plugin!(PluginRegistration {
    name: "vacuum",
    version: VERSION,
    description: "VACUUM (ANALYZE) of a table whose dead tuples degrade an index (PostgreSQL host)",
    factory: Factory::Repair(make_vacuum),
});
submit_plugin!(PluginRegistration {
    name: "reindex",
    version: VERSION,
    description: "REINDEX INDEX CONCURRENTLY of an index that lost recall or balance (PostgreSQL host)",
    factory: Factory::Repair(make_reindex),
});
submit_plugin!(PluginRegistration {
    name: "recluster",
    version: VERSION,
    description: "k-means++ re-clustering of the extension's pattern index (PostgreSQL host)",
    factory: Factory::Repair(make_recluster),
});
submit_plugin!(PluginRegistration {
    name: "search_breadth",
    version: VERSION,
    description: "per-database hnsw.ef_search / iterative_scan / ivfflat.probes for a target recall (PostgreSQL host)",
    factory: Factory::Repair(make_search_breadth),
});
submit_plugin!(PluginRegistration {
    name: "pattern_reset",
    version: VERSION,
    description: "forgets the measured settings of the pattern behind a class whose steered plan regressed \
                  (PostgreSQL host)",
    factory: Factory::Repair(make_pattern_reset),
});
submit_plugin!(PluginRegistration {
    name: "learning_rollback",
    version: VERSION,
    description: "restores the last good learned state when pattern quality degrades (PostgreSQL host)",
    factory: Factory::Repair(make_learning_rollback),
});

/// The strategies `ruvector.toml` chooses, in its order (absent: every registered one, by name; none when
/// `[healing] enabled = false`). One that cannot be built (unknown name, bad parameters) is left out with a
/// WARNING.
pub(crate) fn chosen() -> &'static [Box<dyn RepairStrategy>] {
    static CHOSEN: OnceLock<Vec<Box<dyn RepairStrategy>>> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let config = &crate::settings::loaded().config;
        if !config.healing.enabled {
            return Vec::new();
        }
        let registry = crate::plugins::registry();
        let names = match &config.healing.strategies {
            dag::config::Selection::All => registry.names(PluginKind::Repair),
            dag::config::Selection::Only(names) => names.clone(),
        };
        names
            .iter()
            .filter_map(|n| {
                registry
                    .repair(n, &config.plugin_params(PluginKind::Repair, n))
                    .map_err(|e| warning!("ruvector_dag: healing.strategies: {e}; self-healing runs without it"))
                    .ok()
            })
            .collect()
    })
}

/// The first chosen strategy that can repair `issue`.
pub(crate) fn first_for(issue: &Issue) -> Option<&'static dyn RepairStrategy> {
    chosen().iter().find(|s| s.can_repair(issue)).map(|s| &**s)
}

/// The chosen strategy `name`.
pub(crate) fn by_name(name: &str) -> Option<&'static dyn RepairStrategy> {
    chosen().iter().find(|s| s.name() == name).map(|s| &**s)
}

/// The strategy for `issue` and the statements it would run (a dry run), or why there is none.
pub(crate) fn plan(issue: &Issue) -> Result<(&'static dyn RepairStrategy, String), String> {
    let strategy = first_for(issue).ok_or_else(|| {
        format!(
            "no repair strategy chosen in ruvector.toml [healing] strategies can repair it (chosen: {})",
            chosen().iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
        )
    })?;
    let mut ctx = RepairContext::dry_run();
    strategy.repair(issue, &mut ctx).map_err(|e| format!("repair strategy {}: {e}", strategy.name()))?;
    Ok((strategy, ctx.actions().join("; ")))
}

/// The issue a degraded index is, with the facts the strategies act on.
pub(crate) fn index_issue(h: &crate::index_health::Health) -> Issue {
    let kind = h.index.kind.name();
    Issue::new(0, IssueKind::IndexDegraded, &h.index.name, Severity::Warning, h.assessment.reasons.join("; "))
        .with_fact("table", &h.index.table)
        .with_fact("index_kind", kind)
        .with_fact("action", h.assessment.action.name())
}

/// Runs each statement through SPI, in the caller's transaction.
pub(crate) fn spi_executor() -> Executor {
    Arc::new(|sql: &str| Spi::run(sql).map_err(|e| e.to_string()))
}

/// Facts as `ruvector.dag_repairs.issue_facts` stores them.
pub(crate) fn facts_json(issue: &Issue) -> pgrx::JsonB {
    pgrx::JsonB(serde_json::Value::Object(
        issue.facts.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect(),
    ))
}

/// The issue a `ruvector.dag_repairs` row was recorded for: an index issue unless its facts say `issue =
/// pattern_quality`.
pub(crate) fn stored_issue(id: i64, target: &str, reason: &str, facts: Option<pgrx::JsonB>) -> Issue {
    let mut issue = Issue::new(id as u64, IssueKind::IndexDegraded, target, Severity::Warning, reason);
    if let Some(serde_json::Value::Object(map)) = facts.map(|j| j.0) {
        for (k, v) in map {
            if let serde_json::Value::String(v) = v {
                if k == "issue" && v == "pattern_quality" {
                    issue.kind = IssueKind::PatternQuality;
                }
                issue = issue.with_fact(k, v);
            }
        }
    }
    issue
}

/// The issue of a class whose steered plan ran slower than native: the patterns that taught it.
pub(crate) fn pattern_issue(patterns: &[u64], reason: &str) -> Issue {
    let ids = patterns.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    Issue::new(0, IssueKind::PatternQuality, format!("pattern {ids}"), Severity::Warning, reason)
        .with_fact("issue", "pattern_quality")
        .with_fact("patterns", ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dag::healing::Verdict;

    fn index(action: &str) -> Issue {
        Issue::new(1, IssueKind::IndexDegraded, "public.items_hnsw", Severity::Warning, "recall 0.5")
            .with_fact("table", "public.items")
            .with_fact("index_kind", "hnsw")
            .with_fact("action", action)
    }

    fn planned(s: &dyn RepairStrategy, issue: &Issue) -> Vec<String> {
        let mut ctx = RepairContext::dry_run();
        let out = s.repair(issue, &mut ctx).unwrap();
        assert!(!out.applied);
        ctx.actions().to_vec()
    }

    #[test]
    fn index_strategies_take_their_own_action_only() {
        let vacuum = Vacuum { lock_timeout_ms: None };
        let reindex = Reindex { lock_timeout_ms: Some(30_000) };
        assert!(vacuum.can_repair(&index("vacuum")) && !vacuum.can_repair(&index("reindex")));
        assert!(reindex.can_repair(&index("reindex")) && !reindex.can_repair(&index("vacuum")));
        assert_eq!(planned(&vacuum, &index("vacuum")), ["VACUUM (ANALYZE) public.items"]);
        assert_eq!(
            planned(&reindex, &index("reindex")),
            ["SET lock_timeout = 30000", "REINDEX INDEX CONCURRENTLY public.items_hnsw"]
        );
        let pattern = Issue::new(2, IssueKind::IndexDegraded, "ruvector.reasoning_bank", Severity::Warning, "")
            .with_fact("index_kind", PATTERN_KIND)
            .with_fact("action", "reindex");
        assert!(!reindex.can_repair(&pattern) && Recluster.can_repair(&pattern));
        assert_eq!(planned(&Recluster, &pattern), ["SELECT ruvector.dag_recompute_clusters()"]);
    }

    #[test]
    fn search_breadth_sets_and_rolls_back_plain_settings_only() {
        let issue = index("search_breadth")
            .with_fact("database", "\"my db\"")
            .with_fact("settings", "hnsw.ef_search=80, hnsw.iterative_scan=relaxed_order")
            .with_fact("previous", "hnsw.ef_search=40, hnsw.iterative_scan=");
        assert!(SearchBreadth.can_repair(&issue));
        assert_eq!(
            planned(&SearchBreadth, &issue),
            [
                "ALTER DATABASE \"my db\" SET hnsw.ef_search = '80'",
                "ALTER DATABASE \"my db\" SET hnsw.iterative_scan = 'relaxed_order'"
            ]
        );
        let mut ctx = RepairContext::dry_run();
        SearchBreadth.rollback(&issue, &RepairOutcome::default(), &mut ctx).unwrap();
        assert_eq!(
            ctx.actions(),
            [
                "ALTER DATABASE \"my db\" SET hnsw.ef_search = '40'",
                "ALTER DATABASE \"my db\" RESET hnsw.iterative_scan"
            ]
        );
        for bad in ["work_mem=1GB", "hnsw.ef_search=1'; DROP TABLE t; --"] {
            let issue = index("search_breadth").with_fact("database", "db").with_fact("settings", bad);
            assert!(!SearchBreadth.can_repair(&issue), "{bad}");
        }
        assert!(!SearchBreadth.can_repair(&index("reindex")));
    }

    #[test]
    fn pattern_reset_forgets_the_patterns_named() {
        let issue = pattern_issue(&[12, 15], "class 7 ran slower steered");
        assert_eq!(issue.target, "pattern 12, 15");
        assert!(PatternReset.can_repair(&issue));
        assert_eq!(
            planned(&PatternReset, &issue),
            ["SELECT ruvector.dag_reset_pattern_quality(ARRAY[12, 15]::bigint[])"]
        );
        let bad = issue.clone().with_fact("x", "y");
        let bad = Issue { facts: vec![("patterns".into(), "12; DROP".into())], ..bad };
        assert!(!PatternReset.can_repair(&bad));
        assert!(!PatternReset.can_repair(&index("vacuum")));
    }

    #[test]
    fn learning_rollback_restores_the_stored_state_and_defaults_stay_honest() {
        let drift = Issue::new(2, IssueKind::LearningDrift, "learner", Severity::Warning, "quality falling");
        assert!(LearningRollback.can_repair(&drift) && !LearningRollback.can_repair(&index("vacuum")));
        assert_eq!(planned(&LearningRollback, &drift), [RESTORE_LAST_GOOD]);
        assert_eq!(
            LearningRollback.verify(&drift, &RepairOutcome::default(), &mut RepairContext::new()).unwrap(),
            Verdict::Unknown
        );
        // Without an executor nothing runs, and the failure says so.
        let err = Vacuum { lock_timeout_ms: None }.repair(&index("vacuum"), &mut RepairContext::new()).unwrap_err();
        assert!(err.to_string().contains("no executor"), "{err}");
    }

    #[test]
    fn parameters_are_checked() {
        let p = |json: serde_json::Value| PluginParams::from_json("healing.reindex", json).unwrap();
        assert!(make_reindex(&p(serde_json::json!({}))).is_ok());
        assert!(make_reindex(&p(serde_json::json!({"lock_timeout_ms": 5000}))).is_ok());
        let err = make_reindex(&p(serde_json::json!({"lock_timeout_ms": 0}))).err().unwrap().to_string();
        assert!(err.contains("lock_timeout_ms"), "{err}");
        assert!(make_recluster(&p(serde_json::json!({"lists": 3}))).is_err());
    }
}
