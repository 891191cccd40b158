//! Learning drift: the learner worker records a few metrics of its state after every cycle
//! (`ruvector.dag_learning_history`); `dag_learning_drift()` reads their trend over the last cycles
//! (`ruvector_dag::healing::drift`: baseline = median of the window's first half, least-squares slope).

use crate::sql::fail;
use dag::healing::{Better, Issue, IssueKind, RepairContext, Severity, drift};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use pgrx::spi;
use ruvector_dag_learning::DagSonaEngine;
use std::sync::atomic::Ordering;

/// A pattern not matched by any of the last this many observations of the bank is stale.
const STALE_AFTER: u64 = 10_000;
/// Cycles kept in the history.
const HISTORY: i64 = 10_000;

/// The metrics, their SQL column and which way is good.
const METRICS: [(&str, Better); 5] = [
    ("mean_quality", Better::Higher),
    ("steered_improvement", Better::Higher),
    ("stale_share", Better::Lower),
    ("patterns", Better::Neither),
    ("ewc_tasks", Better::Neither),
];

/// Records this cycle's metrics (worker only, after a successful save).
pub(crate) fn record(engine: &DagSonaEngine, steered_improvement: f64) {
    let patterns = engine.reasoning_bank.patterns();
    let samples: u64 = patterns.iter().map(|p| p.samples).sum();
    let mean_quality =
        (samples > 0).then(|| patterns.iter().map(|p| p.quality() * p.samples as f64).sum::<f64>() / samples as f64);
    let newest = patterns.iter().map(|p| p.last_used.load(Ordering::Relaxed)).max().unwrap_or(0);
    let stale = patterns.iter().filter(|p| p.last_used.load(Ordering::Relaxed) + STALE_AFTER < newest).count();
    let stale_share = (!patterns.is_empty()).then(|| stale as f64 / patterns.len() as f64);
    let result = BackgroundWorker::transaction(|| {
        Spi::run_with_args(
            "INSERT INTO ruvector.dag_learning_history
                 (patterns, mean_quality, steered_improvement, stale_share, ewc_tasks)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                (patterns.len() as i64).into(),
                mean_quality.into(),
                steered_improvement.is_finite().then_some(steered_improvement).into(),
                stale_share.into(),
                (engine.ewc.consolidations() as i64).into(),
            ],
        )?;
        Spi::run_with_args(
            "DELETE FROM ruvector.dag_learning_history
             WHERE cycle_id <= (SELECT max(cycle_id) FROM ruvector.dag_learning_history) - $1",
            &[HISTORY.into()],
        )
    });
    if let Err(e) = result {
        warning!("ruvector_dag_learner: recording the learning history: {e}");
    }
}

/// Forgets the learning history and the last good state (after an operator reset or imported the learned
/// state: what came before is no standard for it, and rolling back would undo the operator's choice).
pub(crate) fn forget() {
    let result = BackgroundWorker::transaction(|| {
        if !crate::learner::extension_installed() {
            return Ok(());
        }
        Spi::run("DELETE FROM ruvector.dag_learning_history")?;
        Spi::run("DELETE FROM ruvector.dag_learning_state WHERE name = 'last_good'")
    });
    if let Err(e) = result {
        warning!("ruvector_dag_learner: forgetting the learning history: {e}");
    }
}

/// Cycles the learning guard judges pattern quality over.
const GUARD_WINDOW: i32 = 20;

/// Sample-weighted mean quality of the learned patterns.
fn mean_quality(engine: &DagSonaEngine) -> Option<f64> {
    let patterns = engine.reasoning_bank.patterns();
    let samples: u64 = patterns.iter().map(|p| p.samples).sum();
    (samples > 0).then(|| patterns.iter().map(|p| p.quality() * p.samples as f64).sum::<f64>() / samples as f64)
}

/// The learning guard, after a cycle the worker saved: while pattern quality is not degrading over the last
/// cycles, the saved state is kept as `last_good` in `ruvector.dag_learning_state`; when it is degrading, the
/// rollback to `last_good` is recommended (`observe`) or done (`auto`: the engine restores it, the caller saves it
/// as current), at most once per window, and recorded in `ruvector.dag_repairs` with the quality before and after
/// (`verified` when the restored state's quality is higher). Returns true when the state was rolled back.
pub(crate) fn guard(engine: &mut DagSonaEngine) -> bool {
    let mode = crate::gucs::HEALING_MODE.get();
    if mode == crate::gucs::HealingMode::off {
        return false;
    }
    let judged = crate::healing::guarded(|| {
        let trend = rows(GUARD_WINDOW).into_iter().find(|r| r.metric == "mean_quality").map(|r| r.trend);
        if trend != Some("degrading") {
            let kept = Spi::run(
                "INSERT INTO ruvector.dag_learning_state (name, state, format_version, patterns, queries, saved_at)
                     SELECT 'last_good', state, format_version, patterns, queries, saved_at
                     FROM ruvector.dag_learning_state WHERE name = 'current'
                     ON CONFLICT (name) DO UPDATE SET state = excluded.state,
                         format_version = excluded.format_version, patterns = excluded.patterns,
                         queries = excluded.queries, saved_at = excluded.saved_at",
            );
            if let Err(e) = kept {
                warning!("ruvector_dag_learner: keeping the last good learned state: {e}");
            }
            return None;
        }
        // Once per window: not again while the degrading cycles that triggered it are in view.
        let recent = Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM ruvector.dag_repairs WHERE target = 'learner'
                   AND created_at >= (SELECT min(recorded_at) FROM (SELECT recorded_at FROM
                       ruvector.dag_learning_history ORDER BY cycle_id DESC LIMIT $1) w))",
            &[GUARD_WINDOW.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(true);
        let good = Spi::get_one::<Vec<u8>>("SELECT state FROM ruvector.dag_learning_state WHERE name = 'last_good'")
            .ok()
            .flatten();
        if recent { None } else { good }
    });
    let Ok(Some(good)) = judged else { return false };
    let issue = Issue::new(0, IssueKind::LearningDrift, "learner", Severity::Warning, "mean pattern quality degrading");
    // The repair strategy chosen in ruvector.toml for it (normally learning_rollback; none: nothing to do).
    let plan = match crate::repairs::plan(&issue) {
        Ok(plan) => plan,
        Err(why) => {
            log!("ruvector_dag_learner: learning guard: mean pattern quality degrading, but {why}");
            return false;
        }
    };
    let (strategy, sql) = plan;
    let strategy_name = strategy.name();
    let before = mean_quality(engine);
    let (status, after, rolled_back) = if mode == crate::gucs::HealingMode::observe {
        ("recommended", None, false)
    } else {
        let mut candidate = DagSonaEngine::new(engine.config);
        let restorable = candidate.restore_state(&good);
        let repaired = crate::healing::guarded(|| {
            let mut ctx = RepairContext::with_executor(crate::repairs::spi_executor());
            strategy.repair(&issue, &mut ctx).map_err(|e| e.to_string())
        })
        .and_then(|r| r);
        match (restorable, repaired) {
            // The stored state is restored; the worker now runs on it.
            (Ok(_), Ok(_)) if strategy.name() == "learning_rollback" => {
                let after = mean_quality(&candidate);
                *engine = candidate;
                (if after > before { "verified" } else { "unchanged" }, after, true)
            }
            // Another strategy (from a plugin library) acted: quality is judged in the next cycles.
            (_, Ok(_)) => ("unchanged", None, false),
            (Err(e), _) => {
                warning!("ruvector_dag_learner: the last good learned state cannot be restored: {e}");
                ("failed", None, false)
            }
            (_, Err(e)) => {
                warning!("ruvector_dag_learner: repair strategy {}: {e}", strategy.name());
                ("failed", None, false)
            }
        }
    };
    let quality = |q: Option<f64>| q.map_or("none".to_owned(), |q| format!("{q:.3}"));
    let detail = format!(
        "mean pattern quality degrading over the last {GUARD_WINDOW} cycles: {} now{}",
        quality(before),
        if rolled_back { format!(", {} after restoring last_good", quality(after)) } else { String::new() }
    );
    let recorded = BackgroundWorker::transaction(|| {
        Spi::run_with_args(
            "INSERT INTO ruvector.dag_repairs (repair_type, target, table_name, implementation_sql, status, reason,
                 started_at, finished_at, detail)
             VALUES ($3, 'learner', '', $4, $1, 'mean pattern quality degrading', now(),
                     CASE WHEN $1 <> 'recommended' THEN now() END, $2)",
            &[status.into(), detail.as_str().into(), strategy_name.into(), sql.as_str().into()],
        )
    });
    if let Err(e) = recorded {
        warning!("ruvector_dag_learner: recording a learning rollback: {e}");
    }
    log!("ruvector_dag_learner: learning guard: {status}: {detail}");
    rolled_back
}

/// Per learning metric over the last `window` cycles: its newest value, its baseline (median of the window's
/// first half), the drift `(current − baseline) / |baseline|` (absolute near zero) and the trend (`improving`,
/// `stable`, `degrading`; `rising`/`falling` for counts; `insufficient data` below four cycles).
#[pg_extern]
#[allow(clippy::type_complexity)]
fn dag_learning_drift(
    window: default!(i32, 20),
) -> TableIterator<
    'static,
    (
        name!(metric, String),
        name!(current_value, Option<f64>),
        name!(baseline_value, Option<f64>),
        name!(drift_magnitude, Option<f64>),
        name!(trend, String),
        name!(slope_per_cycle, Option<f64>),
        name!(cycles, i32),
    ),
> {
    if !(2..=HISTORY as i32).contains(&window) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("window {window} is out of range: expected 2..={HISTORY}"),
        );
    }
    TableIterator::new(
        rows(window)
            .into_iter()
            .map(|r| (r.metric.to_owned(), r.current, r.baseline, r.magnitude, r.trend.to_owned(), r.slope, r.cycles)),
    )
}

/// One metric's drift.
pub(crate) struct Row {
    pub(crate) metric: &'static str,
    pub(crate) current: Option<f64>,
    pub(crate) baseline: Option<f64>,
    pub(crate) magnitude: Option<f64>,
    pub(crate) trend: &'static str,
    pub(crate) slope: Option<f64>,
    pub(crate) cycles: i32,
    /// Whether the metric has a good direction (so that its trend is a judgement).
    pub(crate) judged: bool,
}

/// The drift of every metric over the last `window` cycles.
pub(crate) fn rows(window: i32) -> Vec<Row> {
    crate::index_health::as_extension_owner(|| {
        METRICS
            .iter()
            .map(|(metric, better)| {
                let values: Vec<f64> = Spi::connect(|c| {
                    c.select(
                        &format!(
                            "SELECT {metric}::float8 FROM (SELECT cycle_id, {metric} FROM ruvector.dag_learning_history
                             ORDER BY cycle_id DESC LIMIT $1) h WHERE {metric} IS NOT NULL ORDER BY cycle_id"
                        ),
                        None,
                        &[window.into()],
                    )?
                    .filter_map(|r| r.get::<f64>(1).transpose())
                    .collect::<spi::Result<Vec<f64>>>()
                })
                .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("learning history: {e}")));
                let d = drift(&values, *better);
                Row {
                    metric,
                    current: d.map(|d| d.current),
                    baseline: d.map(|d| d.baseline),
                    magnitude: d.map(|d| d.magnitude),
                    trend: d.map_or("insufficient data", |d| d.trend.name()),
                    slope: d.map(|d| d.slope),
                    cycles: values.len() as i32,
                    judged: *better != Better::Neither,
                }
            })
            .collect()
    })
}

extension_sql!(
    r#"
-- Metrics of the learned state after every learner cycle (the newest 10 000 cycles).
CREATE TABLE dag_learning_history (
    cycle_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    patterns bigint NOT NULL,
    mean_quality float8,
    steered_improvement float8,
    stale_share float8,
    ewc_tasks bigint NOT NULL
);
"#,
    name = "learning_history_table"
);
