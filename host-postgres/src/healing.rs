//! Self-healing of indexes: repairs recorded in `ruvector.dag_repairs`, run by the learner worker, verified by
//! measuring again.
//!
//! `ruvector.healing_mode` decides what happens to a degraded index (see `index_health.rs` for how it is found):
//! in `observe` (the default) `dag_auto_repair()` records the repair it recommends and changes nothing; in `auto`
//! it records the repair as `pending` and wakes the worker, which also probes every
//! `ruvector.healing_interval_ms` and queues repairs itself. The worker runs one repair at a time on a thread with
//! its own connection, outside any transaction block (`VACUUM` and `REINDEX INDEX CONCURRENTLY` need that, and a
//! concurrent rebuild waits for every older snapshot — a backend waiting for the worker would never let it
//! finish), with a `lock_timeout`, after checking free disk for a rebuild. Then it probes the index again and
//! records the figures before and after: `verified` when the index is healthy again, `unchanged` when it is not
//! (a `VACUUM` that did not restore the index is followed by a rebuild), `failed` with the error otherwise. Index
//! definitions are never changed, and nothing is dropped.

use crate::index_health::{self, Health};
use crate::replay::Replayer;
use crate::sql::fail;
use dag::healing::{IndexAction, IndexKind, Issue, IssueKind, RepairContext, Severity, Verdict};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use pgrx::spi;
use std::time::{Duration, Instant};

/// Free disk a rebuild needs, as a multiple of the index's size (the new copy, plus room for WAL).
const REBUILD_DISK_FACTOR: u64 = 3;

fn probe_samples() -> usize {
    crate::gucs::HEALING_PROBE_SAMPLES.get().max(1) as usize
}

fn probe_budget_ms() -> u64 {
    crate::gucs::HEALING_PROBE_BUDGET_MS.get().max(1) as u64
}

/// `ruvector.healing_mode`, or an ERROR when self-healing is off.
fn enabled_mode() -> crate::gucs::HealingMode {
    let mode = crate::gucs::HEALING_MODE.get();
    if mode == crate::gucs::HealingMode::off {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "self-healing is off: SET ruvector.healing_mode to observe (recommend) or auto (repair)",
        );
    }
    mode
}

/// Records the repair `h` needs with `status` (`recommended` or `pending`), planned by the first repair strategy
/// chosen in `ruvector.toml` that can repair it (`repairs.rs`), unless one is already open for the same index
/// and strategy or with the same statement (two indexes of a table need one `VACUUM`); a recommendation is then
/// promoted to `pending`. Returns its id; `None` when no chosen strategy repairs it (a NOTICE says why).
fn queue(h: &Health, status: &str, reason: &str) -> spi::Result<Option<i64>> {
    let issue = crate::repairs::index_issue(h);
    let (strategy, sql) = match crate::repairs::plan(&issue) {
        Ok(plan) => plan,
        Err(why) => {
            notice!("ruvector_dag: {} is degraded ({reason}), but {why}", h.index.name);
            return Ok(None);
        }
    };
    let kind = strategy.name();
    let open = Spi::get_one_with_args::<i64>(
        "SELECT max(repair_id) FROM ruvector.dag_repairs
         WHERE (target = $1 AND repair_type = $2 OR implementation_sql = $3)
           AND status IN ('recommended', 'pending', 'running')",
        &[h.index.name.as_str().into(), kind.into(), sql.as_str().into()],
    )?;
    if let Some(id) = open
        && status == "pending"
    {
        Spi::run_with_args(
            "UPDATE ruvector.dag_repairs SET status = 'pending' WHERE repair_id = $1 AND status = 'recommended'",
            &[id.into()],
        )?;
    }
    if open.is_some() {
        return Ok(open);
    }
    let p = h.probe.as_ref();
    Spi::get_one_with_args::<i64>(
        "INSERT INTO ruvector.dag_repairs (repair_type, target, table_name, implementation_sql, status, reason,
             recall_before, buffers_before, imbalance_before, dead_ratio_before, leaf_density_before, search_settings,
             issue_facts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING repair_id",
        &[
            kind.into(),
            h.index.name.as_str().into(),
            h.index.table.as_str().into(),
            sql.into(),
            status.into(),
            reason.into(),
            h.measurement.recall.into(),
            p.map(|p| p.buffers).into(),
            h.measurement.ivf_imbalance.into(),
            h.measurement.dead_ratio.into(),
            h.measurement.leaf_density.into(),
            p.map(|p| p.settings.clone()).into(),
            crate::repairs::facts_json(&issue).into(),
        ],
    )
}

/// Measures every index now and records the repair each degraded one needs: recommended in `observe` mode,
/// queued for the learner worker in `auto` mode (which runs it, then measures again: see `ruvector.dag_repairs`).
#[pg_extern]
#[allow(clippy::type_complexity)]
fn dag_auto_repair() -> TableIterator<
    'static,
    (
        name!(repair_id, i64),
        name!(repair_type, String),
        name!(target, String),
        name!(status, String),
        name!(duration_ms, Option<f64>),
        name!(implementation_sql, String),
        name!(reason, String),
    ),
> {
    let status = if enabled_mode() == crate::gucs::HealingMode::auto { "pending" } else { "recommended" };
    let ids: Vec<i64> = index_health::check(None, probe_samples(), probe_budget_ms(), None)
        .iter()
        .filter(|h| h.assessment.degraded)
        .filter_map(|h| {
            index_health::as_extension_owner(|| queue(h, status, &h.assessment.reasons.join("; ")))
                .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("recording a repair: {e}")))
        })
        .collect();
    if status == "pending" && !ids.is_empty() {
        crate::learner::wake_worker();
    }
    let rows = index_health::as_extension_owner(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT repair_id, repair_type, target, status, duration_ms, implementation_sql, coalesce(reason, '')
             FROM ruvector.dag_repairs WHERE repair_id = ANY($1) ORDER BY repair_id",
                None,
                &[ids.into()],
            )?
            .map(|r| {
                Ok((
                    r.get::<i64>(1)?.unwrap_or_default(),
                    r.get::<String>(2)?.unwrap_or_default(),
                    r.get::<String>(3)?.unwrap_or_default(),
                    r.get::<String>(4)?.unwrap_or_default(),
                    r.get::<f64>(5)?,
                    r.get::<String>(6)?.unwrap_or_default(),
                    r.get::<String>(7)?.unwrap_or_default(),
                ))
            })
            .collect::<spi::Result<Vec<_>>>()
        })
    })
    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("reading ruvector.dag_repairs: {e}")));
    TableIterator::new(rows)
}

/// The sample seed that verifies a search-breadth change on query vectors the tuning did not see.
const HELD_OUT_SEED: i32 = 11;
/// Verification may fall this far short of the target recall (sampling noise).
const VERIFY_TOLERANCE: f64 = 0.02;
/// Tuning aims this far above the target, so that a breadth that only just reaches it on the tuning sample is
/// not chosen to fail on held-out queries.
const TUNING_MARGIN: f64 = 0.03;

/// Search-breadth candidates for `kind`, narrowest first, from the current settings: `(setting, value)` pairs.
fn breadth_candidates(kind: &IndexKind, current: &str, lists: Option<i64>) -> Vec<Vec<(&'static str, String)>> {
    let get = |name: &str| index_health::parse_settings(current).find(|(k, _)| *k == name).map(|(_, v)| v.to_owned());
    let num = |name: &str, default: i64| get(name).and_then(|v| v.parse::<i64>().ok()).unwrap_or(default);
    match kind {
        IndexKind::Hnsw => {
            let ef = num("hnsw.ef_search", 40);
            let mut out: Vec<Vec<(&'static str, String)>> = std::iter::successors(Some(ef * 2), |e| Some(e * 2))
                .take_while(|e| *e <= 1000)
                .map(|e| vec![("hnsw.ef_search", e.to_string())])
                .collect();
            // Scans that return too few rows (deleted or filtered tuples) are what iterative scans are for.
            if get("hnsw.iterative_scan").as_deref() == Some("off") {
                out.push(vec![("hnsw.iterative_scan", "relaxed_order".to_owned())]);
            }
            out
        }
        IndexKind::IvfFlat => {
            let probes = num("ivfflat.probes", 1);
            let lists = lists.unwrap_or(100);
            std::iter::successors(Some(probes * 2), |p| Some(p * 2))
                .take_while(|p| *p <= lists)
                .map(|p| vec![("ivfflat.probes", p.to_string())])
                .collect()
        }
        _ => Vec::new(),
    }
}

fn settings_text(pairs: &[(&str, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// Records a search-breadth repair and how it ended.
#[allow(clippy::too_many_arguments)]
fn record_breadth(
    index: &index_health::IndexInfo,
    sql: &str,
    status: &str,
    reason: &str,
    before: &index_health::Probe,
    after: Option<&index_health::Probe>,
    ms: f64,
    detail: &str,
) -> i64 {
    index_health::as_extension_owner(|| {
        Spi::get_one_with_args::<i64>(
            "INSERT INTO ruvector.dag_repairs (repair_type, target, table_name, implementation_sql, status, reason,
                 recall_before, buffers_before, recall_after, buffers_after, search_settings, started_at,
                 finished_at, duration_ms, detail)
             VALUES ('search_breadth', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now(), now(), $11, $12)
             RETURNING repair_id",
            &[
                index.name.as_str().into(),
                index.table.as_str().into(),
                sql.into(),
                status.into(),
                reason.into(),
                before.recall.into(),
                before.buffers.into(),
                after.map(|p| p.recall).into(),
                after.map(|p| p.buffers).into(),
                before.settings.as_str().into(),
                ms.into(),
                detail.into(),
            ],
        )
    })
    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("recording a repair: {e}")))
    .unwrap_or_default()
}

const NO_BREADTH_STRATEGY: &str =
    "no repair strategy chosen in ruvector.toml [healing] strategies tunes search breadth (search_breadth)";

/// Search-breadth tuning of a vector index: finds the narrowest search breadth (`hnsw.ef_search`, then
/// `hnsw.iterative_scan`; `ivfflat.probes`) whose recall@10 reaches `target_recall` (plus a margin of 0.03) on
/// the probe's query vectors.
/// In `observe` mode it records the change as recommended; in `auto` mode it applies it for the current database
/// (`ALTER DATABASE … SET`: new sessions get it), verifies it on held-out query vectors — recall within 0.02 of
/// the target, and at most `ruvector.healing_max_cost_ratio` times the buffers per query — and rolls it back
/// (the previous database setting) when verification fails. Nothing changes the index itself, so
/// `vectors_moved` is 0; an IVFFlat index whose lists are unbalanced needs a rebuild (`dag_auto_repair`).
#[pg_extern]
#[allow(clippy::type_complexity)]
fn dag_rebalance_index(
    index_name: &str,
    target_recall: default!(f64, 0.95),
) -> TableIterator<
    'static,
    (
        name!(vectors_moved, i32),
        name!(new_recall, Option<f64>),
        name!(duration_ms, f64),
        name!(repair_id, Option<i64>),
        name!(status, String),
        name!(setting, Option<String>),
        name!(detail, String),
    ),
> {
    if !(0.0..=1.0).contains(&target_recall) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("target_recall {target_recall} is out of range: expected 0 <= target_recall <= 1"),
        );
    }
    let mode = enabled_mode();
    if crate::repairs::by_name("search_breadth").is_none() {
        fail(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, NO_BREADTH_STRATEGY);
    }
    let started = Instant::now();
    let Some(ix) = index_health::discover(Some(index_name)).pop().filter(|ix| ix.ordered.is_some()) else {
        fail(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("\"{index_name}\" is not an index with an ordering operator (HNSW, IVFFlat)"),
        )
    };
    let samples = probe_samples();
    let deadline = started + Duration::from_millis(probe_budget_ms());
    let measure = |settings: Option<&str>, seed: i32| {
        crate::hooks::suppressed(|| index_health::probe(&ix, samples, deadline, settings, seed)).unwrap_or_else(|e| {
            fail(PgSqlErrorCode::ERRCODE_QUERY_CANCELED, format!("recall probe of {}: {e}", ix.name))
        })
    };
    let ms = || started.elapsed().as_secs_f64() * 1000.0;
    let before = measure(None, index_health::TUNING_SEED);
    let row = |recall: Option<f64>, id: Option<i64>, status: &str, setting: Option<String>, detail: String| {
        TableIterator::new(vec![(0, recall, ms(), id, status.to_owned(), setting, detail)])
    };
    if before.recall >= target_recall {
        let detail = format!(
            "recall@{} {:.3} under {} already reaches {target_recall}",
            index_health::K,
            before.recall,
            before.settings
        );
        return row(Some(before.recall), None, "not needed", None, detail);
    }
    let reason = format!(
        "recall@{} {:.3} under {} is below the target {target_recall}",
        index_health::K,
        before.recall,
        before.settings
    );
    let chosen = breadth_candidates(&ix.kind, &before.settings, ix.lists).into_iter().find_map(|pairs| {
        let text = settings_text(&pairs);
        let p = measure(Some(&text), index_health::TUNING_SEED);
        (p.recall >= (target_recall + TUNING_MARGIN).min(1.0)).then_some((pairs, p))
    });
    let Some((pairs, tuned)) = chosen else {
        let detail = format!("{reason}; no search breadth up to the limits reaches it: the index needs a rebuild");
        let id = record_breadth(&ix, "", "failed", &reason, &before, None, ms(), &detail);
        return row(None, Some(id), "failed", None, detail);
    };
    let setting = settings_text(&pairs);
    let db = Spi::get_one::<String>("SELECT quote_ident(current_database())").ok().flatten().unwrap_or_default();
    // The database-level values to restore on rollback (empty = RESET).
    let previous: Vec<(&str, String)> = pairs
        .iter()
        .map(|(k, _)| {
            let v = Spi::get_one_with_args::<String>(
                "SELECT split_part(c, '=', 2) FROM pg_db_role_setting s, unnest(s.setconfig) c
                 WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND s.setrole = 0 AND split_part(c, '=', 1) = $1",
                &[(*k).into()],
            )
            .ok()
            .flatten();
            (*k, v.unwrap_or_default())
        })
        .collect();
    let issue = Issue::new(0, IssueKind::IndexDegraded, &ix.name, Severity::Warning, reason.as_str())
        .with_fact("action", "search_breadth")
        .with_fact("database", db)
        .with_fact("settings", setting.as_str())
        .with_fact("previous", previous.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "));
    let strategy = crate::repairs::first_for(&issue)
        .unwrap_or_else(|| fail(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, NO_BREADTH_STRATEGY));
    let strategy_error = |e: dag::Error| -> ! {
        fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("repair strategy {}: {e}", strategy.name()))
    };
    let mut plan = RepairContext::dry_run();
    strategy.repair(&issue, &mut plan).unwrap_or_else(|e| strategy_error(e));
    let sql = plan.actions().join("; ");
    if mode == crate::gucs::HealingMode::observe {
        let detail =
            format!("recall@{} {:.3} under {setting} on the probe's query vectors", index_health::K, tuned.recall);
        let id = record_breadth(&ix, &sql, "recommended", &reason, &before, Some(&tuned), ms(), &detail);
        return row(Some(tuned.recall), Some(id), "recommended", Some(setting), detail);
    }
    let mut ctx = RepairContext::with_executor(crate::repairs::spi_executor());
    let outcome = strategy.repair(&issue, &mut ctx).unwrap_or_else(|e| strategy_error(e));
    let held_out = measure(Some(&setting), HELD_OUT_SEED);
    let max_cost = crate::gucs::HEALING_MAX_COST_RATIO.get();
    let cost = held_out.buffers / before.buffers.max(1.0);
    let verified = held_out.recall >= target_recall - VERIFY_TOLERANCE && cost <= max_cost;
    let detail = format!(
        "held-out recall@{} {:.3} under {setting} (target {target_recall}), {cost:.1}x the buffers per query \
         (at most {max_cost})",
        index_health::K,
        held_out.recall
    );
    if verified {
        let id = record_breadth(&ix, &sql, "verified", &reason, &before, Some(&held_out), ms(), &detail);
        return row(Some(held_out.recall), Some(id), "verified", Some(setting), detail);
    }
    strategy.rollback(&issue, &outcome, &mut ctx).unwrap_or_else(|e| strategy_error(e));
    let detail = format!("{detail}: rolled back");
    let id = record_breadth(&ix, &sql, "rolled_back", &reason, &before, Some(&held_out), ms(), &detail);
    row(Some(held_out.recall), Some(id), "rolled_back", None, detail)
}

/// One `dag_health_report()` row.
struct Subsystem {
    name: &'static str,
    status: String,
    score: Option<f64>,
    issues: Vec<String>,
    recommendations: Vec<String>,
}

fn texts(sql: &str) -> Vec<String> {
    Spi::connect(|c| {
        c.select(sql, None, &[])?.filter_map(|r| r.get::<String>(1).transpose()).collect::<spi::Result<Vec<_>>>()
    })
    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("health report: {e}")))
}

/// The latest measurement of each index (under whichever search settings it was last measured).
const LATEST: &str = "SELECT DISTINCT ON (index_name) index_name, status, detail FROM ruvector.dag_index_state
                      ORDER BY index_name, measured_at DESC";

fn count(sql: &str) -> i64 {
    Spi::get_one::<i64>(sql)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("health report: {e}")))
        .unwrap_or(0)
}

/// The subsystems' health from their latest measurements (cheap: nothing is probed here; `dag_index_health()`
/// and the learner worker measure indexes, the worker tracks latencies).
fn health_report() -> Vec<Subsystem> {
    let mut out = Vec::new();
    // Indexes: the latest measurement of each (under any settings).
    let (ok, degraded) = (
        count(&format!("SELECT count(*) FROM ({LATEST}) l WHERE status = 'ok'")),
        count(&format!("SELECT count(*) FROM ({LATEST}) l WHERE status = 'degraded'")),
    );
    let judged = ok + degraded;
    out.push(Subsystem {
        name: "indexes",
        status: match () {
            _ if judged == 0 => "not measured".to_owned(),
            _ if degraded > 0 => format!("{degraded} of {judged} degraded"),
            _ => format!("{ok} healthy"),
        },
        score: (judged > 0).then(|| ok as f64 / judged as f64),
        issues: texts(&format!(
            "SELECT index_name || ': ' || coalesce(detail, status) FROM ({LATEST}) l WHERE status = 'degraded'"
        )),
        recommendations: texts(
            "SELECT implementation_sql || ' (' || status || ')' FROM ruvector.dag_repairs
             WHERE status IN ('recommended', 'pending', 'running') ORDER BY repair_id",
        ),
    });
    // Query latencies: the worker's trackers.
    let s = crate::learner::status();
    let [warming, normal, incident, blackout, skipped] = s.anomaly_states;
    let open = texts(
        "SELECT affected_component || ': ' || coalesce(detail, anomaly_type) FROM ruvector.dag_anomalies
         WHERE NOT resolved AND anomaly_type = 'latency' ORDER BY anomaly_id",
    );
    let tracked = normal + incident;
    out.push(Subsystem {
        name: "query_latency",
        status: if s.worker_pid == 0 {
            "not tracked (no learner worker)".to_owned()
        } else {
            format!(
                "{normal} classes normal, {incident} in an incident, {warming} warming up, {blackout} blacked out;                  {skipped} executions skipped as benign"
            )
        },
        score: (tracked > 0).then(|| 1.0 - incident as f64 / tracked as f64),
        issues: open,
        recommendations: Vec::new(),
    });
    // The workload's rates and the worker's memory: the worker's trackers, through their open incidents.
    let workload = texts(
        "SELECT anomaly_type || ' (' || affected_component || '): ' || coalesce(detail, '') FROM ruvector.dag_anomalies
         WHERE NOT resolved AND anomaly_type <> 'latency' ORDER BY anomaly_id",
    );
    const WORKLOAD_SIGNALS: usize = 4;
    out.push(Subsystem {
        name: "workload",
        status: match () {
            _ if s.worker_pid == 0 => "not tracked (no learner worker)".to_owned(),
            _ if workload.is_empty() => {
                "throughput, error rate, pattern hit rate and memory without incidents".to_owned()
            }
            _ => format!("{} of {WORKLOAD_SIGNALS} signals in an incident", workload.len().min(WORKLOAD_SIGNALS)),
        },
        score: (s.worker_pid != 0).then(|| 1.0 - workload.len().min(WORKLOAD_SIGNALS) as f64 / WORKLOAD_SIGNALS as f64),
        issues: workload,
        recommendations: Vec::new(),
    });
    // Repairs: how the last 20 finished ones went.
    let verified = count(
        "SELECT count(*) FROM (SELECT status FROM ruvector.dag_repairs WHERE finished_at IS NOT NULL
                               ORDER BY repair_id DESC LIMIT 20) r WHERE status = 'verified'",
    );
    let finished = count(
        "SELECT count(*) FROM (SELECT 1 FROM ruvector.dag_repairs WHERE finished_at IS NOT NULL
                               ORDER BY repair_id DESC LIMIT 20) r",
    );
    out.push(Subsystem {
        name: "repairs",
        status: format!("{verified} of the last {finished} repairs verified"),
        score: (finished > 0).then(|| verified as f64 / finished as f64),
        issues: texts(
            "SELECT target || ': ' || repair_type || ' ' || status || coalesce(' (' || detail || ')', '')
             FROM ruvector.dag_repairs WHERE status IN ('failed', 'unchanged')
               AND finished_at > now() - interval '1 day' ORDER BY repair_id",
        ),
        recommendations: Vec::new(),
    });
    // Learning drift over the last 20 cycles.
    let drift = crate::drift::rows(20);
    let judged: Vec<&crate::drift::Row> = drift.iter().filter(|r| r.judged && r.trend != "insufficient data").collect();
    let degrading: Vec<String> = judged
        .iter()
        .filter(|r| r.trend == "degrading")
        .map(|r| {
            format!(
                "{} {:.3} from {:.3} over the last {} cycles",
                r.metric,
                r.current.unwrap_or(f64::NAN),
                r.baseline.unwrap_or(f64::NAN),
                r.cycles
            )
        })
        .collect();
    out.push(Subsystem {
        name: "learning_drift",
        status: if judged.is_empty() {
            "not enough learning cycles".to_owned()
        } else {
            format!("{} of {} metrics degrading", degrading.len(), judged.len())
        },
        score: (!judged.is_empty()).then(|| 1.0 - degrading.len() as f64 / judged.len() as f64),
        issues: degrading,
        recommendations: Vec::new(),
    });
    // The learner.
    let (_, status, message) = crate::sql::learner_health();
    out.push(Subsystem {
        name: "learner",
        status: status.to_owned(),
        score: match status {
            "ok" => Some(1.0),
            "warning" => Some(0.5),
            "error" => Some(0.0),
            _ => None,
        },
        issues: if status == "ok" { Vec::new() } else { vec![message] },
        recommendations: Vec::new(),
    });
    let scores: Vec<f64> = out.iter().filter_map(|s| s.score).collect();
    let overall = dag::healing::overall_score(&scores);
    let unhealthy: Vec<String> =
        out.iter().filter(|s| s.score.is_some_and(|x| x < 0.8)).map(|s| s.name.to_owned()).collect();
    out.push(Subsystem {
        name: "overall",
        status: if unhealthy.is_empty() {
            "healthy".to_owned()
        } else {
            format!("unhealthy: {}", unhealthy.join(", "))
        },
        score: Some(overall),
        issues: Vec::new(),
        recommendations: Vec::new(),
    });
    out
}

/// The `dag_health_check()` row about self-healing: counts only (that function is for every role).
pub(crate) fn health_check_row() -> (&'static str, &'static str, String) {
    let mode = crate::gucs::HEALING_MODE.get();
    let mode_name = match mode {
        crate::gucs::HealingMode::off => "off",
        crate::gucs::HealingMode::observe => "observe",
        crate::gucs::HealingMode::auto => "auto",
    };
    let [degraded, measured, anomalies, open, failed] = index_health::as_extension_owner(|| {
        let degraded = format!("SELECT count(*) FROM ({LATEST}) l WHERE status = 'degraded'");
        let measured = format!("SELECT count(*) FROM ({LATEST}) l");
        [
            degraded.as_str(),
            measured.as_str(),
            "SELECT count(*) FROM ruvector.dag_anomalies WHERE NOT resolved",
            "SELECT count(*) FROM ruvector.dag_repairs WHERE status IN ('recommended', 'pending', 'running')",
            "SELECT count(*) FROM ruvector.dag_repairs
             WHERE status IN ('failed', 'rolled_back') AND finished_at > now() - interval '1 day'",
        ]
        .map(count)
    });
    let status = match () {
        _ if mode == crate::gucs::HealingMode::off => "disabled",
        _ if degraded > 0 || anomalies > 0 || failed > 0 => "warning",
        _ => "ok",
    };
    (
        "healing",
        status,
        format!(
            "mode {mode_name}: {degraded} of {measured} measured indexes degraded, {anomalies} open latency \
             anomalies, {open} repairs recommended or in progress, {failed} failed or rolled back in the last day \
             (details: dag_health_report())"
        ),
    )
}

/// Health of indexes, query latencies, repairs and the learner, each scored in 0..=1 from its latest
/// measurements, and an overall score (the mean, capped at the worst plus 0.5).
#[pg_extern]
#[allow(clippy::type_complexity)]
fn dag_health_report() -> TableIterator<
    'static,
    (
        name!(subsystem, String),
        name!(status, String),
        name!(score, Option<f64>),
        name!(issues, Vec<String>),
        name!(recommendations, Vec<String>),
    ),
> {
    let rows = index_health::as_extension_owner(health_report);
    TableIterator::new(rows.into_iter().map(|s| (s.name.to_owned(), s.status, s.score, s.issues, s.recommendations)))
}

/// A repair running on the maintenance thread.
#[derive(Debug)]
struct Job {
    id: i64,
    kind: String,
    index: String,
    /// The search settings the repair's "before" figures were measured under; "after" uses them too.
    settings: Option<String>,
    /// The patterns a pattern repair acts on (then `index` is not an index).
    patterns: Option<Vec<u64>>,
    started: Instant,
    handle: std::thread::JoinHandle<Result<crate::replay::Ran, String>>,
}

/// The worker's self-healing: periodic probes and the repair in flight.
#[derive(Debug, Default)]
pub(crate) struct Healer {
    last_probe: Option<Instant>,
    job: Option<Job>,
    recovered: bool,
}

fn log_error<T>(what: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|e| warning!("ruvector_dag_learner: self-healing: {what}: {e}")).ok()
}

/// Runs `f` in a transaction of the worker; an ERROR inside comes back as `Err` instead of ending the worker.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let f = std::panic::AssertUnwindSafe(f);
    BackgroundWorker::transaction(move || {
        let f = f;
        crate::advisor::in_subtransaction(f.0)
    })
}

impl Healer {
    /// True while a repair runs (latency anomaly detection is blacked out meanwhile: the I/O is ours).
    pub(crate) fn repairing(&self) -> bool {
        self.job.is_some()
    }

    /// One step: settle the repair in flight, start a pending one, or probe when it is time. `pattern_quality`
    /// reads a learned pattern's quality (`None`: no such pattern) for verifying pattern repairs.
    pub(crate) fn step(&mut self, replayer: &mut Replayer, db: &str, pattern_quality: &dyn Fn(u64) -> Option<f64>) {
        let mode = crate::gucs::HEALING_MODE.get();
        if mode == crate::gucs::HealingMode::off {
            return;
        }
        if let Some(job) = self.job.take() {
            if job.handle.is_finished() {
                self.settle(job, pattern_quality);
            } else {
                self.job = Some(job);
            }
            return;
        }
        let interval = Duration::from_millis(crate::gucs::HEALING_INTERVAL_MS.get().max(1000) as u64);
        let due = self.last_probe.is_none_or(|t| t.elapsed() >= interval);
        // Observe mode has nothing to do between probes: no transaction every second for it.
        if self.recovered && mode == crate::gucs::HealingMode::observe && !due
            || !BackgroundWorker::transaction(crate::learner::extension_installed)
        {
            return;
        }
        if !self.recovered {
            self.recovered = true;
            // Repairs that were running when the server or the worker stopped.
            log_error(
                "recording interrupted repairs",
                guarded(|| {
                    Spi::run(
                        "UPDATE ruvector.dag_repairs SET status = 'failed', finished_at = now(),
                             detail = 'interrupted by a restart (an interrupted REINDEX CONCURRENTLY leaves an invalid \
                                       index named <index>_ccnew: DROP INDEX it)'
                         WHERE status = 'running'",
                    )
                }),
            );
        }
        if mode == crate::gucs::HealingMode::auto {
            let pending = guarded(|| {
                Spi::connect(|c| {
                    let mut rows = c.select(
                        "SELECT repair_id, repair_type, target, coalesce(reason, ''), issue_facts, search_settings
                         FROM ruvector.dag_repairs WHERE status = 'pending' ORDER BY repair_id LIMIT 1",
                        None,
                        &[],
                    )?;
                    rows.next()
                        .map(|r| {
                            let id = r.get::<i64>(1)?.unwrap_or_default();
                            let kind = r.get::<String>(2)?.unwrap_or_default();
                            let target = r.get::<String>(3)?.unwrap_or_default();
                            let reason = r.get::<String>(4)?.unwrap_or_default();
                            let issue = crate::repairs::stored_issue(id, &target, &reason, r.get::<pgrx::JsonB>(5)?);
                            Ok::<_, spi::SpiError>((kind, issue, r.get::<String>(6)?))
                        })
                        .transpose()
                })
            });
            if let Some(Ok(Some((kind, issue, settings)))) = log_error("reading pending repairs", pending) {
                self.start(replayer, db, &kind, issue, settings);
                return;
            }
        }
        if !due {
            return;
        }
        self.last_probe = Some(Instant::now());
        let status = if mode == crate::gucs::HealingMode::auto { "pending" } else { "recommended" };
        let queued = guarded(|| {
            crate::hooks::suppressed(|| {
                let mut n = 0;
                for h in under_users_settings(index_health::check(None, probe_samples(), probe_budget_ms(), None)) {
                    if !h.assessment.degraded {
                        continue;
                    }
                    let Some(strategy) = crate::repairs::first_for(&crate::repairs::index_issue(&h)) else {
                        continue;
                    };
                    // A repair by the same strategy that did not help within the last day is not repeated.
                    let recent_failure = Spi::get_one_with_args::<bool>(
                        "SELECT EXISTS (SELECT FROM ruvector.dag_repairs WHERE target = $1 AND repair_type = $2
                           AND status IN ('unchanged', 'failed', 'rolled_back')
                           AND finished_at > now() - interval '1 day')",
                        &[h.index.name.as_str().into(), strategy.name().into()],
                    );
                    if recent_failure.ok().flatten() == Some(false)
                        && queue(&h, status, &h.assessment.reasons.join("; ")).ok().flatten().is_some()
                    {
                        n += 1;
                    }
                }
                n
            })
        });
        if let Some(n) = log_error("probing indexes", queued).filter(|&n| n > 0) {
            log!("ruvector_dag_learner: self-healing: {n} index repair(s) {status}");
        }
    }

    /// Starts pending repair `issue.id` with the chosen strategy `kind` on the maintenance thread.
    fn start(&mut self, replayer: &mut Replayer, db: &str, kind: &str, issue: Issue, settings: Option<String>) {
        let id = issue.id as i64;
        let refuse = |why: String| {
            log_error("recording a refused repair", guarded(|| finish(id, "failed", None, None, &why)));
        };
        let Some(strategy) = crate::repairs::by_name(kind) else {
            return refuse(format!("repair strategy {kind} is not chosen in ruvector.toml [healing] strategies"));
        };
        if kind == "reindex"
            && let Err(e) = disk_room_for(&issue.target)
        {
            return refuse(e);
        }
        log_error(
            "recording a start",
            guarded(|| {
                Spi::run_with_args(
                    "UPDATE ruvector.dag_repairs SET status = 'running', started_at = now() WHERE repair_id = $1",
                    &[id.into()],
                )
            }),
        );
        log!("ruvector_dag_learner: self-healing: running repair {id} ({kind}) of {}", issue.target);
        let index = issue.target.clone();
        let patterns =
            (issue.kind == IssueKind::PatternQuality).then(|| crate::repairs::pattern_ids(&issue).unwrap_or_default());
        let handle = replayer.spawn_repair(db, strategy, issue);
        self.job = Some(Job { id, kind: kind.to_owned(), index, settings, patterns, started: Instant::now(), handle });
    }

    /// Measures the index (or the patterns) again and records the verdict.
    fn settle(&mut self, job: Job, pattern_quality: &dyn Fn(u64) -> Option<f64>) {
        let result = job.handle.join().unwrap_or_else(|_| Err("the maintenance thread panicked".into()));
        let ms = job.started.elapsed().as_secs_f64() * 1000.0;
        let recorded = guarded(|| {
            crate::hooks::suppressed(|| match result {
                Err(e) => {
                    finish(job.id, "failed", Some(ms), None, &format!("{} failed: {e}", job.kind));
                    "failed".to_owned()
                }
                Ok(ran) if ran.verdict == Verdict::Regressed => {
                    let detail = format!(
                        "{}; repair strategy {} judged it regressed: {}",
                        ran.detail,
                        job.kind,
                        match &ran.rollback {
                            Some(Ok(())) => "rolled back".to_owned(),
                            Some(Err(e)) => format!("its rollback failed: {e}"),
                            None => "not rolled back".to_owned(),
                        }
                    );
                    let status = if matches!(ran.rollback, Some(Ok(()))) { "rolled_back" } else { "failed" };
                    finish(job.id, status, Some(ms), None, &detail);
                    status.to_owned()
                }
                Ok(ran) if job.patterns.is_some() => {
                    // Reset patterns keep only their native arm: quality 0 (or they are gone).
                    let patterns = job.patterns.as_deref().unwrap_or_default();
                    let left: Vec<String> = patterns
                        .iter()
                        .filter(|&&id| pattern_quality(id).is_some_and(|q| q > 0.0))
                        .map(|id| id.to_string())
                        .collect();
                    let (status, detail) = if left.is_empty() {
                        ("verified", format!("{}: quality 0 until measured again", ran.detail))
                    } else {
                        (
                            "unchanged",
                            format!("{}; pattern(s) {} still have a quality above 0", ran.detail, left.join(", ")),
                        )
                    };
                    finish(job.id, status, Some(ms), None, &detail);
                    status.to_owned()
                }
                Ok(_) => {
                    let exists = Spi::get_one_with_args::<bool>(
                        "SELECT to_regclass($1) IS NOT NULL OR $1 = $2",
                        &[job.index.as_str().into(), index_health::PATTERN_INDEX.into()],
                    );
                    let after = exists
                        .ok()
                        .flatten()
                        .unwrap_or(false)
                        .then(|| {
                            index_health::check(
                                Some(&job.index),
                                probe_samples(),
                                probe_budget_ms(),
                                job.settings.as_deref(),
                            )
                        })
                        .and_then(|mut v| v.pop());
                    let (status, detail) = match &after {
                        Some(h) if !h.assessment.degraded && h.status == "ok" => ("verified", h.detail.clone()),
                        Some(h) => ("unchanged", h.detail.clone()),
                        None => ("unchanged", "the index is gone".to_owned()),
                    };
                    finish(job.id, status, Some(ms), after.as_ref(), &detail);
                    // A VACUUM that left the index degraded: a rebuild is next (never the same repair again).
                    if let Some(h) = after.as_ref().filter(|h| {
                        status == "unchanged" && job.kind == "vacuum" && h.assessment.action == IndexAction::Reindex
                    }) {
                        let reason = format!("VACUUM (repair {}) did not restore it: {}", job.id, h.detail);
                        let _ = queue(h, "pending", &reason);
                    }
                    // A rebuild that left an IVFFlat index's lists unbalanced: its `lists` is the user's to
                    // change, so a new count is only recommended.
                    if let Some(h) = after.as_ref().filter(|h| {
                        status == "unchanged" && job.kind == "reindex" && h.index.kind == IndexKind::IvfFlat
                    }) {
                        recommend_lists(h, job.id);
                    }
                    status.to_owned()
                }
            })
        });
        if let Some(status) = log_error("recording a repair", recorded) {
            log!("ruvector_dag_learner: self-healing: repair {} of {} {status} after {ms:.0} ms", job.id, job.index);
        }
    }
}

/// Records the reset of the learned patterns behind a class whose steered plan ran slower than native, planned
/// by the chosen strategy for it (`pattern_reset`): recommended in observe mode, pending for the worker in auto
/// mode; nothing when healing is off, no strategy is chosen for it, or one is already open for them. Worker only.
pub(crate) fn queue_pattern_reset(patterns: &[u64], reason: &str) {
    let mode = crate::gucs::HEALING_MODE.get();
    if mode == crate::gucs::HealingMode::off || patterns.is_empty() {
        return;
    }
    let status = if mode == crate::gucs::HealingMode::auto { "pending" } else { "recommended" };
    match guarded(|| record_pattern_reset(patterns, reason, status)) {
        Ok(Ok(Some(target))) => log!("ruvector_dag_learner: self-healing: reset of {target} {status}: {reason}"),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => warning!("ruvector_dag_learner: recording a pattern reset: {e}"),
        Err(e) => warning!("ruvector_dag_learner: recording a pattern reset: {e}"),
    }
}

/// Records a pattern reset with `status` (see [`queue_pattern_reset`]); returns its target when one was added.
pub(crate) fn record_pattern_reset(patterns: &[u64], reason: &str, status: &str) -> spi::Result<Option<String>> {
    let issue = crate::repairs::pattern_issue(patterns, reason);
    let Ok((strategy, sql)) = crate::repairs::plan(&issue) else { return Ok(None) };
    let added = Spi::get_one_with_args::<i64>(
        "INSERT INTO ruvector.dag_repairs (repair_type, target, table_name, implementation_sql, status, reason,
             issue_facts)
         SELECT $1, $2, '', $3, $4, $5, $6
         WHERE NOT EXISTS (SELECT FROM ruvector.dag_repairs WHERE target = $2 AND repair_type = $1
                             AND status IN ('recommended', 'pending', 'running'))
         RETURNING repair_id",
        &[
            strategy.name().into(),
            issue.target.as_str().into(),
            sql.into(),
            status.into(),
            reason.into(),
            crate::repairs::facts_json(&issue).into(),
        ],
    );
    match added {
        Ok(Some(_)) => Ok(Some(issue.target)),
        Ok(None) | Err(spi::SpiError::InvalidPosition) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Each index measured as the worker's session sees it (`measured`), judged again under the search settings a
/// user last measured it with (`dag_index_health()` in a session with, say, `hnsw.ef_search = 10`) when those
/// differ: the baseline that matters is the one of the settings users run with. The degraded judgement wins.
pub(crate) fn under_users_settings(measured: Vec<Health>) -> Vec<Health> {
    measured
        .into_iter()
        .map(|h| {
            let Some(ours) = h.probe.as_ref().map(|p| p.settings.clone()) else { return h };
            let theirs = Spi::get_one_with_args::<String>(
                "SELECT settings FROM ruvector.dag_index_state WHERE index_name = $1 AND settings NOT IN ('', $2)
                 ORDER BY measured_at DESC LIMIT 1",
                &[h.index.name.as_str().into(), ours.as_str().into()],
            );
            let Ok(Some(theirs)) = theirs else { return h };
            match index_health::check(Some(&h.index.name), probe_samples(), probe_budget_ms(), Some(&theirs)).pop() {
                Some(users) if users.assessment.degraded || !h.assessment.degraded => users,
                _ => h,
            }
        })
        .collect()
}

/// Recommends (never applies) pgvector's advised `lists` for an IVFFlat index that repair `after_repair` rebuilt
/// without restoring it, when its `lists` differs from the advice by more than a fifth.
pub(crate) fn recommend_lists(h: &Health, after_repair: i64) {
    // pgvector's default `lists` is 100.
    let lists = h.index.lists.unwrap_or(100);
    let advised = index_health::advised_lists(h.index.reltuples);
    if (advised - lists).abs() * 5 <= lists.max(1) {
        return;
    }
    let sql = format!("ALTER INDEX {0} SET (lists = {advised}); REINDEX INDEX CONCURRENTLY {0}", h.index.name);
    let reason = format!(
        "REINDEX (repair {after_repair}) did not balance it; {lists} lists for {:.0} rows, pgvector advises about \
         {advised} (changes the index definition: for the operator to decide)",
        h.index.reltuples
    );
    let r = Spi::run_with_args(
        "INSERT INTO ruvector.dag_repairs (repair_type, target, table_name, implementation_sql, status, reason,
             imbalance_before, buffers_before, search_settings)
         SELECT 'ivfflat_lists', $1, $2, $3, 'recommended', $4, $5, $6, $7
         WHERE NOT EXISTS (SELECT FROM ruvector.dag_repairs WHERE target = $1 AND repair_type = 'ivfflat_lists'
                             AND status = 'recommended')",
        &[
            h.index.name.as_str().into(),
            h.index.table.as_str().into(),
            sql.into(),
            reason.into(),
            h.measurement.ivf_imbalance.into(),
            h.probe.as_ref().map(|p| p.buffers).into(),
            h.probe.as_ref().map(|p| p.settings.clone()).into(),
        ],
    );
    if let Err(e) = r {
        warning!("ruvector_dag_learner: recommending lists for {}: {e}", h.index.name);
    }
}

/// Records how repair `id` ended, with the figures measured after it.
fn finish(id: i64, status: &str, ms: Option<f64>, after: Option<&Health>, detail: &str) {
    let m = after.map(|h| &h.measurement);
    if let Err(e) = Spi::run_with_args(
        "UPDATE ruvector.dag_repairs SET status = $2, duration_ms = $3, finished_at = now(), detail = $4,
             recall_after = $5, buffers_after = $6, imbalance_after = $7, dead_ratio_after = $8,
             leaf_density_after = $9
         WHERE repair_id = $1",
        &[
            id.into(),
            status.into(),
            ms.into(),
            detail.into(),
            m.and_then(|m| m.recall).into(),
            after.and_then(|h| h.probe.as_ref()).map(|p| p.buffers).into(),
            m.and_then(|m| m.ivf_imbalance).into(),
            m.and_then(|m| m.dead_ratio).into(),
            m.and_then(|m| m.leaf_density).into(),
        ],
    ) {
        fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("updating ruvector.dag_repairs: {e}"));
    }
}

/// `Err` unless the file system of the data directory has room for a rebuild of `index`.
fn disk_room_for(index: &str) -> Result<(), String> {
    let bytes = BackgroundWorker::transaction(|| {
        Spi::get_one_with_args::<i64>("SELECT pg_relation_size(to_regclass($1))", &[index.into()]).ok().flatten()
    })
    .unwrap_or(0)
    .max(0) as u64;
    // SAFETY: DataDir is the server's data directory, set before any worker starts; statvfs only reads it.
    let free = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(pg_sys::DataDir, &mut st) != 0 {
            return Err(format!("checking free disk: {}", std::io::Error::last_os_error()));
        }
        st.f_bavail as u64 * st.f_frsize as u64
    };
    if free < bytes * REBUILD_DISK_FACTOR {
        return Err(format!(
            "not enough free disk to rebuild it: {} MB free, {} MB needed ({}x the index)",
            free >> 20,
            (bytes * REBUILD_DISK_FACTOR) >> 20,
            REBUILD_DISK_FACTOR
        ));
    }
    Ok(())
}

extension_sql!(
    r#"
-- Every index repair self-healing recommended or ran, with the figures measured before and after it.
CREATE TABLE dag_repairs (
    repair_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repair_type text NOT NULL,
    target text NOT NULL,
    table_name text NOT NULL,
    implementation_sql text NOT NULL,
    status text NOT NULL CHECK (status IN ('recommended', 'pending', 'running', 'verified', 'unchanged', 'failed',
                                      'rolled_back')),
    reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    duration_ms float8,
    recall_before float8,
    recall_after float8,
    buffers_before float8,
    buffers_after float8,
    imbalance_before float8,
    imbalance_after float8,
    dead_ratio_before float8,
    dead_ratio_after float8,
    leaf_density_before float8,
    leaf_density_after float8,
    search_settings text,
    -- What the repair strategy was given about the issue (table, index kind, action, ...).
    issue_facts jsonb NOT NULL DEFAULT '{}',
    detail text
);
"#,
    name = "healing_tables"
);

extension_sql!(
    r#"
-- Probes every indexed table and queues maintenance: for the DBA (or whom the DBA grants it).
REVOKE EXECUTE ON FUNCTION dag_auto_repair() FROM PUBLIC;
-- Changes database settings in auto mode.
REVOKE EXECUTE ON FUNCTION dag_rebalance_index(text, double precision) FROM PUBLIC;
-- Index names, anomaly details and repair statements: operator information.
REVOKE EXECUTE ON FUNCTION dag_health_report() FROM PUBLIC;

-- One row per subsystem of dag_health_report() (without the lists).
CREATE VIEW dag_health_summary AS
SELECT subsystem, status, score, cardinality(issues) AS issues, cardinality(recommendations) AS recommendations
FROM dag_health_report();
REVOKE ALL ON dag_health_summary FROM PUBLIC;
"#,
    name = "healing_privileges",
    requires = [
        dag_auto_repair,
        dag_health_report,
        dag_rebalance_index,
        "healing_tables",
        "index_health_tables",
        "anomaly_tables"
    ]
);
