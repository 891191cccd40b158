//! SQL functions of schema `ruvector`: configuration, status and trajectories.
//!
//! Errors carry the spec's RV codes in the message and a fitting SQLSTATE. Setters change the session's
//! settings, exactly like `SET` (a DBA makes them global with `ALTER SYSTEM` or `ALTER DATABASE … SET`).

// `TableIterator` signatures name every output column; factoring them into aliases would hide the SQL API.
#![allow(clippy::type_complexity)]

use crate::gucs::{self, ATTENTION_TYPES};
use crate::ring::{self, Record, Source};
use dag::QueryDag;
use pgrx::prelude::*;
use pgrx::{JsonB, pg_sys};
use std::ffi::CString;

/// Raises an ERROR with `code` (SQLSTATE) and `message`.
pub(crate) fn fail(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    let message: String = message.into();
    ereport!(ERROR, code, message);
}

/// The value of a required argument, or an ERROR naming it when it is NULL.
pub(crate) fn required<T>(name: &str, value: Option<T>) -> T {
    value.unwrap_or_else(|| fail(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{name} must not be NULL")))
}

pub(crate) fn notice_if_not_preloaded() {
    if !crate::preloaded() {
        notice!("ruvector_dag is not in shared_preload_libraries: plan capture is off (add it and restart to capture)");
    }
}

/// Sets a GUC for the session, as `SET name = value` does (checks context, range and permissions).
fn set_guc(name: &str, value: &str) {
    let name = CString::new(name).expect("GUC names have no NUL");
    let value = CString::new(value).expect("values have no NUL");
    // SAFETY: both strings outlive the call; errors are raised with ERROR and unwind through pg_guard.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            PgLogLevel::ERROR as i32,
            false,
        );
    }
}

fn check_range(what: &str, value: f64, lo: f64, hi: f64) {
    if !(lo..=hi).contains(&value) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{what} {value} is out of range: expected {lo}..={hi}"),
        );
    }
}

// ---- configuration ------------------------------------------------------------------------------------------

/// Turns plan capture and learning on or off for this session.
#[pg_extern]
fn dag_set_enabled(enabled: Option<bool>) {
    let enabled = required("enabled", enabled);
    notice_if_not_preloaded();
    set_guc("ruvector.neural_dag_enabled", if enabled { "on" } else { "off" });
}

/// Sets the instant adapter's learning rate for this session (0.0001..=1).
#[pg_extern]
fn dag_set_learning_rate(rate: Option<f64>) {
    let rate = required("rate", rate);
    check_range("learning rate", rate, 0.0001, 1.0);
    set_guc("ruvector.dag_learning_rate", &rate.to_string());
}

/// Chooses the attention mechanism (`auto` lets the selector choose) for this session.
#[pg_extern]
fn dag_set_attention(mechanism: Option<&str>) {
    let mechanism = required("mechanism", mechanism);
    if !ATTENTION_TYPES.contains(&mechanism) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "RV002 INVALID_ATTENTION: unknown attention mechanism \"{mechanism}\"; expected one of {}",
                ATTENTION_TYPES.join(", ")
            ),
        );
    }
    set_guc("ruvector.dag_attention_type", mechanism);
}

/// Configures the learning tiers for this session.
#[pg_extern]
fn dag_configure_sona(
    micro_lora_rank: default!(Option<i32>, 2),
    base_lora_rank: default!(Option<i32>, 8),
    ewc_lambda: default!(Option<f64>, 5000.0),
    pattern_clusters: default!(Option<i32>, 100),
) {
    let micro_lora_rank = required("micro_lora_rank", micro_lora_rank);
    let base_lora_rank = required("base_lora_rank", base_lora_rank);
    let ewc_lambda = required("ewc_lambda", ewc_lambda);
    let pattern_clusters = required("pattern_clusters", pattern_clusters);
    check_range("micro_lora_rank", f64::from(micro_lora_rank), 1.0, 4.0);
    check_range("base_lora_rank", f64::from(base_lora_rank), 4.0, 64.0);
    check_range("ewc_lambda", ewc_lambda, 0.0, 50_000.0);
    check_range("pattern_clusters", f64::from(pattern_clusters), 10.0, 1000.0);
    set_guc("ruvector.dag_micro_lora_rank", &micro_lora_rank.to_string());
    set_guc("ruvector.dag_base_lora_rank", &base_lora_rank.to_string());
    set_guc("ruvector.dag_ewc_lambda", &ewc_lambda.to_string());
    set_guc("ruvector.dag_pattern_clusters", &pattern_clusters.to_string());
}

/// The configuration in force for this session.
#[pg_extern]
fn dag_config() -> TableIterator<
    'static,
    (
        name!(enabled, bool),
        name!(learning_rate, f64),
        name!(attention_mechanism, String),
        name!(micro_lora_rank, i32),
        name!(base_lora_rank, i32),
        name!(ewc_lambda, f64),
        name!(pattern_clusters, i32),
        name!(qudag_endpoint, Option<String>),
        name!(config_file, Option<String>),
    ),
> {
    let loaded = crate::settings::loaded();
    // The validator the learner worker connects to (when pattern sharing is on).
    let endpoint = gucs::QUDAG_ENABLED.get().then(gucs::qudag_endpoint).flatten();
    TableIterator::once((
        gucs::ENABLED.get(),
        gucs::LEARNING_RATE.get(),
        gucs::ATTENTION.get().name().to_owned(),
        gucs::MICRO_LORA_RANK.get(),
        gucs::BASE_LORA_RANK.get(),
        gucs::EWC_LAMBDA.get(),
        gucs::PATTERN_CLUSTERS.get(),
        endpoint,
        loaded.path.clone(),
    ))
}

// ---- status -------------------------------------------------------------------------------------------------

/// Runtime status. Learning figures are NULL until the learning loop has measured them.
#[pg_extern]
fn dag_status() -> TableIterator<
    'static,
    (
        name!(active_patterns, i64),
        name!(total_trajectories, i64),
        name!(avg_improvement, Option<f64>),
        name!(attention_hits, i64),
        name!(learning_rate_effective, f64),
        name!(qudag_connected, bool),
        name!(capture_active, bool),
    ),
> {
    notice_if_not_preloaded();
    let stats = ring::stats();
    // From the learner's counterfactual log: mean 1 − steered / native over the classes it steers.
    let avg = Some(crate::learner::status().avg_improvement).filter(|v| v.is_finite());
    let active_patterns = if crate::preloaded() {
        crate::learner::status().patterns as i64
    } else {
        crate::learner::with_engine(|engine, _| engine.reasoning_bank.len() as i64)
    };
    TableIterator::once((
        active_patterns,
        stats.recorded as i64,
        avg,
        0,
        gucs::LEARNING_RATE.get(),
        crate::learner::qudag_connected(),
        crate::preloaded() && gucs::ENABLED.get(),
    ))
}

/// Health of the extension's components.
#[pg_extern]
fn dag_health_check() -> TableIterator<
    'static,
    (name!(component, String), name!(status, String), name!(last_check, TimestampWithTimeZone), name!(message, String)),
> {
    // SAFETY: reads the transaction's start time.
    let now = TimestampWithTimeZone::try_from(unsafe { pg_sys::GetCurrentTimestamp() })
        .unwrap_or_else(|_| fail(PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW, "clock out of range"));
    let mut rows = Vec::new();
    if crate::preloaded() {
        rows.push(("hooks", "ok", "planner and executor hooks installed".to_owned()));
    } else {
        rows.push(("hooks", "disabled", "not in shared_preload_libraries: capture is off".to_owned()));
    }
    let s = ring::stats();
    if ring::available() {
        let status = if s.overwritten > 0 || s.dropped > 0 { "warning" } else { "ok" };
        rows.push((
            "trajectory_ring",
            status,
            format!(
                "{} of {} slots used, {} recorded, {} overwritten, {} dropped, {} plans too large to store",
                s.recorded.min(s.capacity),
                s.capacity,
                s.recorded,
                s.overwritten,
                s.dropped,
                s.plans_too_large
            ),
        ));
    } else {
        rows.push(("trajectory_ring", "disabled", "no shared memory without preload".to_owned()));
    }
    rows.push(learner_health());
    let loaded = crate::settings::loaded();
    match (&loaded.path, &loaded.error) {
        (_, Some(err)) => rows.push(("config", "warning", format!("{err}; using built-in defaults"))),
        (Some(path), None) => rows.push(("config", "ok", format!("loaded {path}"))),
        (None, None) => rows.push(("config", "ok", "built-in defaults (ruvector.config_file is empty)".to_owned())),
    }
    rows.extend(crate::plugins::health());
    rows.push(crate::healing::health_check_row());
    TableIterator::new(rows.into_iter().map(move |(c, st, m)| (c.to_owned(), st.to_owned(), now, m)))
}

pub(crate) fn learner_health() -> (&'static str, &'static str, String) {
    if !crate::preloaded() {
        return (
            "learner",
            "disabled",
            "no background worker without preload; saved state is read from the table".into(),
        );
    }
    let s = crate::learner::status();
    if s.worker_pid == 0 {
        return ("learner", "error", "the ruvector_dag_learner worker is not running (see the server log)".into());
    }
    let db = gucs::DATABASE.get().and_then(|d| d.into_string().ok()).unwrap_or_default();
    let (status, saving) = match s.persist_status {
        0 => ("ok", "not saved yet".to_owned()),
        1 => ("ok", format!("saved in database \"{db}\"")),
        _ => ("warning", format!("not saved: CREATE EXTENSION ruvector_dag in database \"{db}\"")),
    };
    let status = if s.snapshot_too_large > 0 { "warning" } else { status };
    (
        "learner",
        status,
        format!(
            "worker pid {}: {} executions learned ({} coalesced, {} of unknown plan shape, {} lost to ring overflow), \
             {} patterns, {} cycles; {saving}; snapshot generation {}, {} of {} kB{}",
            s.worker_pid,
            s.learned,
            s.coalesced,
            s.unknown_plan,
            s.lost,
            s.patterns,
            s.cycles,
            s.snapshot_generation,
            s.snapshot_bytes.div_ceil(1024),
            s.snapshot_capacity / 1024,
            if s.snapshot_too_large > 0 { " (state too large to publish: raise ruvector.dag_snapshot_kb)" } else { "" }
        ),
    )
}

// ---- trajectories -------------------------------------------------------------------------------------------

/// Records an execution by hand (e.g. from a client that measured it). `dag_structure` is a DAG in ruvector's
/// JSON format or PostgreSQL's `EXPLAIN (FORMAT JSON)` output. Returns the trajectory id.
#[pg_extern]
fn dag_record_trajectory(
    query_hash: Option<i64>,
    dag_structure: Option<JsonB>,
    execution_time_ms: Option<f64>,
    improvement_ratio: default!(Option<f64>, "NULL"),
    attention_mechanism: default!(Option<&str>, "'auto'"),
) -> i64 {
    let query_hash = required("query_hash", query_hash);
    let dag_structure = required("dag_structure", dag_structure);
    let execution_time_ms = required("execution_time_ms", execution_time_ms);
    let attention_mechanism = required("attention_mechanism", attention_mechanism);
    if !ring::available() {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "RV010 TRAJECTORY_OVERFLOW: no trajectory ring: add ruvector_dag to shared_preload_libraries and restart",
        );
    }
    if !execution_time_ms.is_finite() || execution_time_ms < 0.0 {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("execution_time_ms {execution_time_ms} must be a finite non-negative number"),
        );
    }
    if let Some(r) = improvement_ratio.filter(|r| !r.is_finite()) {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("improvement_ratio {r} must be finite"));
    }
    let Some(mechanism) = ATTENTION_TYPES.iter().position(|m| *m == attention_mechanism) else {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "RV002 INVALID_ATTENTION: unknown attention mechanism \"{attention_mechanism}\"; expected one of {}",
                ATTENTION_TYPES.join(", ")
            ),
        );
    };
    let dag = parse_dag(&dag_structure.0);
    let plan_hash = crate::hooks::plan_hash(&dag);
    let bytes = dag.to_bytes();
    let has_actuals = dag.nodes().any(|n| n.info.actual.is_some());
    // SAFETY: plain reads of the clock and session identity.
    let (recorded_at, user_id, db_id) =
        unsafe { (pg_sys::GetCurrentTimestamp(), pg_sys::GetUserId().to_u32(), pg_sys::MyDatabaseId.to_u32()) };
    let seq = ring::push(|record| {
        record.query_id = query_hash as u64;
        record.plan_hash = plan_hash;
        record.recorded_at = recorded_at;
        record.user_id = user_id;
        record.db_id = db_id;
        record.execution_ms = execution_time_ms;
        record.improvement_ratio = improvement_ratio.unwrap_or(f64::NAN);
        record.node_count = dag.node_count() as u32;
        record.mechanism = mechanism as u8;
        record.source = Source::Manual as u8;
        record.has_actuals = has_actuals;
        record.set_plan(&bytes)
    });
    match seq {
        Some(seq) => seq as i64,
        None => fail(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "RV010 TRAJECTORY_OVERFLOW: the ring slot was busy; the record was dropped (retry)",
        ),
    }
}

fn parse_dag(value: &serde_json::Value) -> QueryDag {
    let text = value.to_string();
    let result = if value.get("format").and_then(|f| f.as_str()) == Some("ruvector-dag") {
        QueryDag::from_json(&text)
    } else {
        QueryDag::from_explain_json(&text)
    };
    result.unwrap_or_else(|e| {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("dag_structure is neither a ruvector DAG nor EXPLAIN JSON: {e}"),
        )
    })
}

/// True when the current user may see other users' captured plans (superuser or `pg_read_all_stats`).
/// Runs `f` (fixed queries of the extension's own tables, no caller input) as the bootstrap superuser, then
/// restores the caller's identity, as PostgreSQL does for its own catalog reads on a caller's behalf. Whatever `f`
/// returns that is about other roles is filtered by the caller's rights afterwards (see [`sees_all`]).
pub(crate) fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(pg_sys::Oid, std::ffi::c_int);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the identity saved below (also when `f` unwinds with an ERROR).
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    // SAFETY: reads and switches this backend's current user id, as SECURITY DEFINER functions do.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as std::ffi::c_int,
        );
    }
    let _restore = Restore(user, context);
    f()
}

/// Whether the current role may see every role's captured query texts and plans (superuser or
/// `pg_read_all_stats`, as for `pg_stat_statements`).
pub(crate) fn sees_all() -> bool {
    // SAFETY: catalog checks for the current user.
    unsafe {
        pg_sys::superuser()
            || pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS))
    }
}

/// Captured executions, newest first. Other roles' plans show as NULL unless the caller is a superuser or a
/// member of `pg_read_all_stats` (as `pg_stat_statements` hides query texts).
#[pg_extern]
fn dag_get_trajectories(
    limit_count: default!(i32, 100),
    query_id: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(trajectory_id, i64),
        name!(query_id, i64),
        name!(plan_hash, i64),
        name!(recorded_at, TimestampWithTimeZone),
        name!(execution_time_ms, f64),
        name!(planning_time_ms, Option<f64>),
        name!(rows, i64),
        name!(node_count, i32),
        name!(improvement_ratio, Option<f64>),
        name!(attention_mechanism, String),
        name!(source, String),
        name!(has_actuals, bool),
        name!(plan, Option<JsonB>),
    ),
> {
    notice_if_not_preloaded();
    if limit_count < 0 {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("limit_count {limit_count} must be >= 0"));
    }
    let wanted = query_id.map(|q| q as u64);
    let records = ring::read(limit_count as usize, |r| wanted.is_none_or(|q| r.query_id == q));
    let all = sees_all();
    // SAFETY: reads the current user id.
    let me = unsafe { pg_sys::GetUserId() }.to_u32();
    let rows: Vec<_> = records
        .iter()
        .map(|r| {
            let plan = if all || r.user_id == me { plan_json(r) } else { None };
            (
                r.seq as i64,
                r.query_id as i64,
                r.plan_hash as i64,
                TimestampWithTimeZone::try_from(r.recorded_at).unwrap_or_else(|_| {
                    fail(PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW, "timestamp out of range")
                }),
                r.execution_ms,
                r.planning_ms.is_finite().then_some(r.planning_ms),
                r.rows as i64,
                r.node_count as i32,
                r.improvement_ratio.is_finite().then_some(r.improvement_ratio),
                ATTENTION_TYPES.get(r.mechanism as usize).copied().unwrap_or("auto").to_owned(),
                match r.source {
                    s if s == Source::Manual as u8 => "manual",
                    s if s == Source::Failed as u8 => "failed",
                    _ => "hook",
                }
                .to_owned(),
                r.has_actuals,
                plan,
            )
        })
        .collect();
    TableIterator::new(rows)
}

fn plan_json(r: &Record) -> Option<JsonB> {
    let dag = QueryDag::from_bytes(r.plan_bytes()?).ok()?;
    let json = dag.to_json().ok()?;
    serde_json::from_str(&json).ok().map(JsonB)
}

/// Counters of the trajectory ring (and of captured executions whose transaction aborted while they ran: errors,
/// cancels, timeouts) and latency statistics over the records it holds.
#[pg_extern]
fn dag_trajectory_stats() -> TableIterator<
    'static,
    (
        name!(capacity, i64),
        name!(recorded, i64),
        name!(in_ring, i64),
        name!(overwritten, i64),
        name!(dropped, i64),
        name!(plans_too_large, i64),
        name!(aborted, i64),
        name!(distinct_queries, i64),
        name!(avg_execution_ms, Option<f64>),
        name!(p50_execution_ms, Option<f64>),
        name!(p95_execution_ms, Option<f64>),
    ),
> {
    notice_if_not_preloaded();
    let s = ring::stats();
    let records = ring::read(usize::MAX, |_| true);
    let mut times: Vec<f64> = records.iter().map(|r| r.execution_ms).collect();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| (!times.is_empty()).then(|| times[((times.len() - 1) as f64 * p).round() as usize]);
    let mut ids: Vec<u64> = records.iter().map(|r| r.query_id).collect();
    ids.sort_unstable();
    ids.dedup();
    TableIterator::once((
        s.capacity as i64,
        s.recorded as i64,
        records.len() as i64,
        s.overwritten as i64,
        s.dropped as i64,
        s.plans_too_large as i64,
        s.aborted as i64,
        ids.len() as i64,
        (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64),
        pct(0.5),
        pct(0.95),
    ))
}

extension_sql!(
    r#"
-- Recorded executions feed the learner: injecting them is for the DBA to grant.
REVOKE EXECUTE ON FUNCTION dag_record_trajectory(bigint, jsonb, double precision, double precision, text) FROM PUBLIC;
"#,
    name = "record_trajectory_privileges",
    requires = [dag_record_trajectory]
);

// ---- plans --------------------------------------------------------------------------------------------------

/// The DAG of a query's plan (planned, not run), in ruvector's JSON format: nodes with operators, estimates and
/// conditions as `EXPLAIN` prints them, edges from inputs to consumers, CTEs as shared subplans.
#[pg_extern]
fn dag_plan(query_text: Option<&str>) -> JsonB {
    let dag = crate::explain::plan_query(required("query_text", query_text));
    let json = dag.to_json().unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()));
    JsonB(serde_json::from_str(&json).expect("to_json produces JSON"))
}
