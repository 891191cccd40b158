//! SQL functions and tables of the learning loop: `dag_learn_now`, `dag_estimate`, patterns, EWC constraints and
//! state export. They read this backend's copy of what the `ruvector_dag_learner` worker learned (see
//! [`crate::learner`]); `dag_learn_now` asks the worker itself.

// `TableIterator` signatures name every output column; factoring them into aliases would hide the SQL API.
#![allow(clippy::type_complexity)]

use crate::learner::{self, Origin};
use crate::sql::{fail, required};
use pgrx::prelude::*;
use pgrx::{JsonB, pg_sys, spi};
use ruvector_dag_learning::Pattern;
use serde_json::json;

extension_sql!(
    r#"
-- What the learner worker learned, saved every cycle: 'current' is restored at start; a state that could not be
-- restored (other embedding shape) is kept as 'rejected <time>' rather than overwritten.
CREATE TABLE dag_learning_state (
    name text PRIMARY KEY,
    state bytea NOT NULL,
    format_version int NOT NULL,
    patterns int NOT NULL,
    queries bigint NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now()
);
-- Plan shapes the worker learned from (binary DAGs by plan hash), so it recognises them after a restart.
CREATE TABLE dag_plans (
    plan_hash bigint PRIMARY KEY,
    node_count int NOT NULL,
    plan bytea NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now()
);
-- Executions the worker drained from the shared ring (newest ruvector.dag_max_trajectories kept).
CREATE TABLE dag_trajectories (
    trajectory_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    query_id bigint NOT NULL,
    plan_hash bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    execution_time_ms float8 NOT NULL,
    planning_time_ms float8,
    rows bigint NOT NULL,
    user_id oid NOT NULL,
    db_id oid NOT NULL,
    -- The execution ended in an error (a cancel, statement_timeout): execution_time_ms is a lower bound.
    failed boolean NOT NULL DEFAULT false
);
-- The counterfactual log: per query class, native and steered executions, replays per arm, the decision.
CREATE TABLE dag_query_classes (
    query_id bigint PRIMARY KEY,
    state text NOT NULL,
    arm text NOT NULL,
    query_text text,
    detail jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- As sensitive as pg_stat_statements: not readable by PUBLIC.
REVOKE ALL ON dag_learning_state, dag_plans, dag_trajectories, dag_query_classes FROM PUBLIC;
-- Every role may use the functions that are safe for it (each checks privileges or shows only the caller's own
-- query texts); those that change what the server learned or how it plans are revoked below.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;
-- pg_dump keeps what was learned.
SELECT pg_catalog.pg_extension_config_dump('dag_learning_state', '');
SELECT pg_catalog.pg_extension_config_dump('dag_plans', '');
SELECT pg_catalog.pg_extension_config_dump('dag_trajectories', '');
SELECT pg_catalog.pg_extension_config_dump('dag_query_classes', '');
"#,
    name = "learning_tables",
    bootstrap
);

fn origin_text(origin: Origin) -> String {
    match origin {
        Origin::Snapshot(g) => format!("snapshot {g}"),
        Origin::Table => "saved state".to_owned(),
        Origin::Fresh => "nothing learned yet".to_owned(),
    }
}

/// Asks the learner worker to drain the trajectory ring and run a background cycle now (BaseLoRA training,
/// pattern consolidation, eviction, index rebuild), save and publish; waits for it and returns its report.
#[pg_extern]
fn dag_learn_now() -> TableIterator<
    'static,
    (
        name!(patterns_updated, i32),
        name!(new_clusters, i32),
        name!(ewc_constraints_updated, i32),
        name!(cycle_time_ms, f64),
        name!(trajectories_processed, i64),
        name!(saved, bool),
    ),
> {
    let r = learner::learn_now();
    TableIterator::once((
        r.patterns_updated as i32,
        r.clusters as i32,
        r.ewc_updated as i32,
        r.cycle_ms,
        r.trajectories as i64,
        r.saved,
    ))
}

/// PostgreSQL's estimates for a query's plan (planned, not run) beside what the learned model predicts.
///
/// Rows: `plan_total_cost` and `plan_rows` (the planner's; no neural estimate), `execution_time_ms` (the planner
/// has no time estimate; the neural one blends the nearest learned pattern's measured latency with the LoRA
/// model, confidence = the share of measurement in the blend), and, when a learned pattern advises other
/// planner settings, `steered_latency_ratio` (predicted latency under them relative to the native plan).
#[pg_extern]
fn dag_estimate(
    query_text: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(metric, String),
        name!(postgres_estimate, Option<f64>),
        name!(neural_estimate, Option<f64>),
        name!(confidence, Option<f64>),
    ),
> {
    let dag = crate::explain::plan_query_captured(required("query_text", query_text));
    let root = dag.root().and_then(|r| dag.info(r)).map(|i| i.estimates).unwrap_or_default();
    let (enhancement, threshold, learned) = learner::with_engine(|engine, _| {
        let e = engine
            .pre_query(&dag)
            .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("RV004 LEARNING_FAILED: {e}")));
        (e, engine.config.match_threshold, engine.queries())
    });
    // The share of measured latency in the prediction (pre_query's n / (n + 2) blend), 0 for model-only.
    let measured = enhancement
        .pattern
        .as_ref()
        .filter(|p| p.similarity >= threshold)
        .and_then(|p| p.native)
        .map_or(0.0, |(_, n)| n as f64 / (n as f64 + 2.0));
    let mut rows = vec![
        ("plan_total_cost".to_owned(), Some(root.total_cost), None, None),
        ("plan_rows".to_owned(), Some(root.rows), None, None),
        (
            "execution_time_ms".to_owned(),
            None,
            (learned > 0).then_some(enhancement.predicted_latency_ms),
            (learned > 0).then_some(measured),
        ),
    ];
    if let Some(advice) = enhancement.advice.filter(|a| !a.settings.is_empty()) {
        rows.push((
            "steered_latency_ratio".to_owned(),
            Some(1.0),
            Some(advice.predicted_ratio),
            Some(advice.confidence),
        ));
    }
    TableIterator::new(rows)
}

fn arms_json(p: &Pattern) -> serde_json::Value {
    p.arms
        .iter()
        .map(|a| {
            json!({
                "settings": settings_json(&a.settings).0,
                "executions": a.count,
                "mean_latency_ms": a.mean_log_latency.exp_m1(),
            })
        })
        .collect()
}

fn settings_json(settings: &[(String, String)]) -> JsonB {
    JsonB(json!(settings.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()))
}

/// Every learned pattern (the view `ruvector.dag_patterns` reads this): executions merged into it, quality (share
/// of native latency its best settings save), confidence, usage, measured native latency, best settings, the
/// measurements per settings ("arms") and its centroid.
#[pg_extern]
fn dag_pattern_list() -> TableIterator<
    'static,
    (
        name!(pattern_id, i64),
        name!(samples, i64),
        name!(quality, f64),
        name!(confidence, f64),
        name!(usage_count, i64),
        name!(native_latency_ms, Option<f64>),
        name!(best_settings, JsonB),
        name!(arms, JsonB),
        name!(centroid, Vec<f32>),
    ),
> {
    let rows = learner::with_engine(|engine, _| {
        engine
            .reasoning_bank
            .patterns()
            .iter()
            .map(|p| {
                let native = p.arms.iter().find(|a| a.settings.is_empty()).map(|a| a.mean_log_latency.exp_m1());
                let best = p.best_arm().map(|a| a.settings.clone()).unwrap_or_default();
                (
                    p.id as i64,
                    p.samples as i64,
                    p.quality(),
                    p.confidence(),
                    p.usage.load(std::sync::atomic::Ordering::Relaxed) as i64,
                    native,
                    settings_json(&best),
                    JsonB(arms_json(p)),
                    p.centroid.clone(),
                )
            })
            .collect::<Vec<_>>()
    });
    TableIterator::new(rows)
}

extension_sql!(
    r#"
CREATE VIEW dag_patterns AS SELECT * FROM dag_pattern_list();
COMMENT ON VIEW dag_patterns IS 'Learned plan patterns (the learner''s current state; saved in dag_learning_state).';
GRANT SELECT ON dag_patterns TO PUBLIC; -- embeddings and latencies, no query text
"#,
    name = "dag_patterns_view",
    requires = [dag_pattern_list]
);

/// The `k` learned patterns most similar (cosine) to `query_vector` (a plan embedding, e.g. from
/// `dag_analyze_plan`'s first node or `dag_embedding`), at least `similarity_threshold` similar.
#[pg_extern]
fn dag_query_patterns(
    query_vector: Option<Vec<f32>>,
    k: default!(Option<i32>, 5),
    similarity_threshold: default!(Option<f64>, 0.7),
) -> TableIterator<
    'static,
    (
        name!(pattern_id, i64),
        name!(similarity, f64),
        name!(quality_score, f64),
        name!(metadata, JsonB),
        name!(usage_count, i64),
    ),
> {
    let v = required("query_vector", query_vector);
    let k = required("k", k);
    let threshold = required("similarity_threshold", similarity_threshold);
    if !(1..=10_000).contains(&k) {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("k {k} is out of range: expected 1..=10000"));
    }
    if !(-1.0..=1.0).contains(&threshold) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("similarity_threshold {threshold} is out of range: expected -1..=1"),
        );
    }
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) || v.iter().all(|x| *x == 0.0) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "query_vector must be a non-zero vector of finite numbers",
        );
    }
    let rows = learner::with_engine(|engine, _| {
        let dim = engine.reasoning_bank.dim();
        if v.len() != dim {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("query_vector has {} dimensions, the learned patterns {dim}", v.len()),
            );
        }
        let bank = &engine.reasoning_bank;
        bank.query_similar(&v, k as usize)
            .into_iter()
            .filter(|m| f64::from(m.similarity) >= threshold)
            .map(|m| {
                let p = bank.pattern(m.id).expect("a match names a pattern of the bank");
                let meta = json!({
                    "samples": p.samples,
                    "confidence": m.confidence,
                    "best_settings": settings_json(&m.best_settings).0,
                    "predicted_ratio": m.predicted_ratio,
                    "native_latency_ms": m.native.map(|n| n.0),
                    "arms": arms_json(p),
                });
                (
                    m.id as i64,
                    f64::from(m.similarity),
                    m.quality,
                    JsonB(meta),
                    p.usage.load(std::sync::atomic::Ordering::Relaxed) as i64,
                )
            })
            .collect::<Vec<_>>()
    });
    TableIterator::new(rows)
}

/// The plan embedding the learner uses for a query's plan (planned, not run): the vector to pass to
/// `dag_query_patterns`.
#[pg_extern]
fn dag_embedding(query_text: Option<&str>) -> Vec<f32> {
    let dag = crate::explain::plan_query_captured(required("query_text", query_text));
    learner::with_engine(|engine, _| engine.embed(&dag))
}

/// EWC++ constraints in force: per adapter parameter with non-zero importance, its Fisher importance and the
/// anchored (optimal) value. `last_updated` is the worker's last cycle.
#[pg_extern]
fn dag_ewc_constraints() -> TableIterator<
    'static,
    (
        name!(parameter_name, String),
        name!(fisher_importance, f64),
        name!(optimal_value, f64),
        name!(last_updated, Option<TimestampWithTimeZone>),
    ),
> {
    let status = learner::status();
    let at = (status.last_cycle_at != 0).then(|| TimestampWithTimeZone::try_from(status.last_cycle_at).ok()).flatten();
    let rows = learner::with_engine(|engine, _| {
        let mut rows = Vec::new();
        for (name, ewc) in [("micro_lora", &engine.ewc), ("base_lora", &engine.base_ewc)] {
            for (i, importance, anchor) in ewc.constraints() {
                if importance > 0.0 {
                    rows.push((format!("{name}[{i}]"), f64::from(importance), f64::from(anchor), at));
                }
            }
        }
        rows
    });
    TableIterator::new(rows)
}

/// Everything learned (adapters, EWC++ state, patterns) as one versioned, checksummed blob, for backup or to
/// move to another server.
#[pg_extern]
fn dag_export_state() -> Vec<u8> {
    learner::with_engine(|engine, _| engine.save_state())
}

/// Where this backend's copy of the learned state comes from, and what it holds.
#[pg_extern]
fn dag_learning_status() -> TableIterator<
    'static,
    (
        name!(source, String),
        name!(patterns, i64),
        name!(executions_learned, i64),
        name!(worker_pid, Option<i32>),
        name!(cycles, i64),
        name!(coalesced, i64),
        name!(unknown_plans, i64),
        name!(lost, i64),
        name!(last_cycle_at, Option<TimestampWithTimeZone>),
        name!(replays, i64),
        name!(steered_classes, i64),
    ),
> {
    let (origin, patterns, queries) =
        learner::with_engine(|engine, origin| (origin, engine.reasoning_bank.len() as i64, engine.queries() as i64));
    let s = learner::status();
    let at = (s.last_cycle_at != 0).then(|| TimestampWithTimeZone::try_from(s.last_cycle_at).ok()).flatten();
    TableIterator::once((
        origin_text(origin),
        patterns,
        queries,
        (s.worker_pid != 0).then_some(s.worker_pid),
        s.cycles as i64,
        s.coalesced as i64,
        s.unknown_plan as i64,
        s.lost as i64,
        at,
        s.replays as i64,
        s.steered as i64,
    ))
}

// ---- steering -------------------------------------------------------------------------------------------------

/// The counterfactual log (saved every learner cycle): per query class its state (`learning`, `native`,
/// `steered`, `reverted`, `disabled`, `not_replayable`), the arm it is planned under, user executions native
/// and steered with their mean latencies (`native_failed` of the native ones ended in an error, e.g. cancelled by
/// `statement_timeout`: their times count as lower bounds), the improvement `1 − steered / native`, and the replays
/// per arm. Another role's query text reads `<insufficient privilege>` unless the caller is a superuser or a member of
/// `pg_read_all_stats`. `predicted_arm` is the arm the ReasoningBank predicted for the class's plan (explored
/// first; NULL when it predicted nothing). `variants`: the checks of a steered class's other parameter values
/// (native and arm replay means, whether the arm holds), oldest first; `parameter_sensitive` once the arm lost on
/// one: only the variants checked to hold are steered.
#[pg_extern]
fn dag_query_class_log() -> TableIterator<
    'static,
    (
        name!(query_id, i64),
        name!(state, String),
        name!(arm, String),
        name!(forced, bool),
        name!(native_executions, i64),
        name!(native_ms, Option<f64>),
        name!(native_failed, i64),
        name!(steered_executions, i64),
        name!(steered_ms, Option<f64>),
        name!(improvement, Option<f64>),
        name!(replays, JsonB),
        name!(query_text, Option<String>),
        name!(predicted_arm, Option<String>),
        name!(parameter_sensitive, bool),
        name!(variants, JsonB),
    ),
> {
    let classes = saved_classes()
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("reading dag_query_classes: {e}")));
    let visible = visible_to_caller();
    let out = classes
        .into_iter()
        .map(|k| {
            // Other roles' query texts, as pg_stat_statements shows them.
            let text = if visible(&k) { k.text.clone() } else { Some("<insufficient privilege>".to_owned()) };
            let replays: serde_json::Map<String, serde_json::Value> = k
                .replays
                .iter()
                .enumerate()
                .filter(|(_, r)| r.same_plan.is_some() || r.stat.n > 0)
                .map(|(arm, r)| {
                    (
                        crate::steering::arm_label(arm),
                        json!({
                            "same_plan_as_native": r.same_plan,
                            "replays": r.stat.n,
                            "ms": (r.stat.n > 0).then(|| r.stat.ms()),
                            "timeouts": r.timeouts,
                            "same_plan_as": r.same_plan_as.map(crate::steering::arm_label),
                        }),
                    )
                })
                .collect();
            (
                k.query_id as i64,
                k.state.name().to_owned(),
                crate::steering::arm_label(k.arm),
                k.forced,
                k.native.n as i64,
                (k.native.n > 0).then(|| k.native.ms()),
                k.native_failed as i64,
                k.steered.n as i64,
                (k.steered.n > 0).then(|| k.steered.ms()),
                k.improvement(),
                JsonB(serde_json::Value::Object(replays)),
                text,
                k.predicted.map(crate::steering::arm_label),
                k.parameter_sensitive(),
                JsonB(json!(
                    k.variants
                        .iter()
                        .map(|v| json!({
                            "native_ms": (v.native.n > 0).then(|| v.native.ms()),
                            "arm_ms": (v.arm.n > 0).then(|| v.arm.ms()),
                            "arm_holds": v.holds,
                        }))
                        .collect::<Vec<_>>()
                )),
            )
        })
        .collect::<Vec<_>>();
    TableIterator::new(out)
}

fn steering_available() {
    if !crate::preloaded() {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "steering needs ruvector_dag in shared_preload_libraries",
        );
    }
}

/// The per-class kill switch: `enabled = false` plans query class `query_id` natively from now on (cached plans
/// included) and stops exploring it; `true` lets the learner explore it again.
#[pg_extern]
fn dag_class_enable(query_id: Option<i64>, enabled: Option<bool>) {
    let query_id = required("query_id", query_id);
    let enabled = required("enabled", enabled);
    steering_available();
    if !crate::steering::set_enabled(query_id as u64, enabled) {
        fail(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, "the steering table is full");
    }
    // SAFETY: queues a shared invalidation message, sent at commit: backends re-plan cached plans.
    unsafe { pg_sys::CacheInvalidateRelcacheAll() };
    learner::request_cycle();
}

/// An operator's override: plan query class `query_id` under `settings` (an arm, as `dag_query_class_log` names
/// them, e.g. `'enable_nestloop=off'`, or `'native'`). The learner adopts it as it sees executions, and its
/// no-regression guard still reverts it if it runs slower than native.
#[pg_extern]
fn dag_class_steer(query_id: Option<i64>, settings: Option<&str>) {
    let query_id = required("query_id", query_id);
    let settings = required("settings", settings);
    steering_available();
    let Some(arm) = crate::steering::arm_by_label(settings) else {
        let known: Vec<String> = (0..crate::steering::ARMS.len()).map(crate::steering::arm_label).collect();
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown settings \"{settings}\"; expected one of: {}", known.join(", ")),
        );
    };
    if !crate::steering::publish(query_id as u64, arm, f32::NAN, false) {
        fail(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, "the steering table is full");
    }
    // SAFETY: as in dag_class_enable.
    unsafe { pg_sys::CacheInvalidateRelcacheAll() };
}

// ---- patterns and learning control (carried out by the worker) ----------------------------------------------

/// Adds a pattern by hand (an operator's or another server's knowledge): `pattern_vector` is a plan embedding
/// (`dag_embedding`), `pattern_metadata` may give `native_latency_ms` and `settings` (an object of planner
/// settings), `quality_score` the share of the native latency those settings save. Returns the pattern id.
#[pg_extern]
fn dag_store_pattern(
    pattern_vector: Option<Vec<f32>>,
    pattern_metadata: default!(Option<JsonB>, "'{}'"),
    quality_score: default!(Option<f64>, 0.0),
) -> i64 {
    let vector = required("pattern_vector", pattern_vector);
    let metadata = required("pattern_metadata", pattern_metadata).0;
    let quality = required("quality_score", quality_score);
    if !(0.0..1.0).contains(&quality) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("quality_score {quality} is out of range: expected 0 <= q < 1"),
        );
    }
    let payload = serde_json::to_vec(&json!({"vector": vector, "metadata": metadata, "quality": quality}))
        .expect("a request serialises");
    learner::submit(learner::Command::StorePattern, [0; 3], &payload)[0] as i64
}

/// The IVF lists the patterns are indexed in: each list's centroid, its patterns, their mean quality, and the
/// text of the captured query whose plan is closest to the centroid (NULL when none is known).
#[pg_extern]
fn dag_pattern_clusters() -> TableIterator<
    'static,
    (
        name!(cluster_id, i32),
        name!(centroid, Vec<f32>),
        name!(member_count, i32),
        name!(avg_quality, f64),
        name!(representative_query, Option<String>),
    ),
> {
    // Captured queries with their plan shapes, to name each list by its nearest query.
    let known = known_queries();
    let rows = learner::with_engine(|engine, _| {
        let embedded: Vec<(Vec<f32>, &String)> = known.iter().map(|(dag, text)| (engine.embed(dag), text)).collect();
        let bank = &engine.reasoning_bank;
        bank.index_lists()
            .into_iter()
            .enumerate()
            .map(|(i, (centroid, ids))| {
                let qualities: Vec<f64> = ids.iter().filter_map(|id| bank.pattern(*id)).map(Pattern::quality).collect();
                let avg =
                    if qualities.is_empty() { 0.0 } else { qualities.iter().sum::<f64>() / qualities.len() as f64 };
                let representative = embedded
                    .iter()
                    .map(|(e, text)| (e.iter().zip(&centroid).map(|(a, b)| a * b).sum::<f32>(), *text))
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, text)| text.clone());
                (i as i32, centroid, ids.len() as i32, avg, representative)
            })
            .collect::<Vec<_>>()
    });
    TableIterator::new(rows)
}

/// (plan, query text) of the classes the learner saved with a replayable text that the caller may see (its own,
/// or all for superusers and `pg_read_all_stats`).
fn known_queries() -> Vec<(dag::QueryDag, String)> {
    if !learner::extension_installed() {
        return Vec::new();
    }
    let visible = visible_to_caller();
    let read = crate::sql::as_extension_owner(|| {
        Spi::connect(|client| {
            client
                .select("SELECT plan_hash, plan FROM ruvector.dag_plans", None, &[])?
                .map(|row| Ok((row.get::<i64>(1)?.unwrap_or_default(), row.get::<Vec<u8>>(2)?.unwrap_or_default())))
                .collect::<Result<std::collections::HashMap<i64, Vec<u8>>, spi::SpiError>>()
        })
    });
    let (Ok(plans), Ok(classes)) = (read, saved_classes()) else { return Vec::new() };
    classes
        .into_iter()
        .filter(|k| visible(k))
        .filter_map(|k| {
            let plan = dag::QueryDag::from_bytes(plans.get(&(k.plan_hash as i64))?).ok()?;
            Some((plan, k.text?))
        })
        .collect()
}

/// The learner's counterfactual log as of its last cycle (`ruvector.dag_query_classes`, read as the extension's
/// owner), by query id; empty when the extension's tables are not in this database.
pub(crate) fn saved_classes() -> Result<Vec<crate::classes::Class>, spi::SpiError> {
    if !learner::extension_installed() {
        return Ok(Vec::new());
    }
    let details = crate::sql::as_extension_owner(|| {
        Spi::connect(|client| {
            client
                .select("SELECT detail::text FROM ruvector.dag_query_classes ORDER BY query_id", None, &[])?
                .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<Vec<String>, spi::SpiError>>()
        })
    })?;
    Ok(details.iter().filter_map(|d| serde_json::from_str(d).ok()).collect())
}

/// Whether the caller may see a class's query text: its own, or every one for superusers and
/// `pg_read_all_stats` (as `pg_stat_statements`).
fn visible_to_caller() -> impl Fn(&crate::classes::Class) -> bool {
    let all = crate::sql::sees_all();
    // SAFETY: reads the current user id.
    let me = unsafe { pg_sys::GetUserId() }.to_u32();
    move |k| all || k.user_id == me
}

/// Forgets the measured settings of the patterns `pattern_ids` (all when NULL): each keeps its native
/// measurements only, so its quality is 0 and its settings are explored again. Returns how many changed.
#[pg_extern]
fn dag_reset_pattern_quality(pattern_ids: default!(Option<Vec<i64>>, "NULL")) -> i32 {
    // NULL: every pattern (an empty payload); an empty array: none.
    let payload: Vec<u8> = match pattern_ids {
        Some(ids) if ids.is_empty() => return 0,
        ids => ids.unwrap_or_default().into_iter().flat_map(|id| (id as u64).to_le_bytes()).collect(),
    };
    learner::submit(learner::Command::ResetQuality, [0; 3], &payload)[0] as i32
}

/// Re-clusters the pattern index with k-means++ (the only `algorithm`) into `ruvector.dag_pattern_clusters`'
/// lists; returns the lists before and after and the silhouette of the new lists (over at most 2000 patterns).
#[pg_extern]
fn dag_recompute_clusters(
    algorithm: default!(&str, "'kmeans_pp'"),
) -> TableIterator<'static, (name!(old_clusters, i32), name!(new_clusters, i32), name!(silhouette_score, Option<f64>))>
{
    if algorithm != "kmeans_pp" {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown clustering algorithm \"{algorithm}\": expected kmeans_pp"),
        );
    }
    let r = learner::submit(learner::Command::Recluster, [0; 3], &[]);
    let silhouette = f64::from_bits(r[2]);
    TableIterator::once((r[0] as i32, r[1] as i32, silhouette.is_finite().then_some(silhouette)))
}

/// Merges near-duplicate patterns and rebuilds the index with `target_clusters` lists (kept for later cycles).
#[pg_extern]
fn dag_consolidate_patterns(
    target_clusters: default!(Option<i32>, 100),
) -> TableIterator<
    'static,
    (
        name!(clusters_before, i32),
        name!(clusters_after, i32),
        name!(patterns_merged, i32),
        name!(consolidation_time_ms, f64),
    ),
> {
    let target = required("target_clusters", target_clusters);
    if !(1..=100_000).contains(&target) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("target_clusters {target} is out of range: expected 1..=100000"),
        );
    }
    let r = learner::submit(learner::Command::Consolidate, [target as u64, 0, 0], &[]);
    TableIterator::once((r[0] as i32, r[1] as i32, r[2] as i32, r[3] as f64 / 1000.0))
}

/// Forgets what was learned: the adapters and EWC++ state always; the patterns (and with them every steering
/// decision: all classes native and explored afresh) unless `preserve_patterns`; the saved trajectories unless
/// `preserve_trajectories`.
#[pg_extern]
fn dag_reset_learning(
    preserve_patterns: default!(Option<bool>, true),
    preserve_trajectories: default!(Option<bool>, false),
) {
    let keep_patterns = required("preserve_patterns", preserve_patterns);
    let keep_trajectories = required("preserve_trajectories", preserve_trajectories);
    learner::submit(learner::Command::Reset, [u64::from(keep_patterns), u64::from(keep_trajectories), 0], &[]);
}

/// Replaces the learned state with one from `dag_export_state` (this server's or another's): adapters, EWC++
/// state and patterns. Saved executions are not part of a state, so `trajectories_imported` is 0.
#[pg_extern]
fn dag_import_state(
    state_data: Option<Vec<u8>>,
) -> TableIterator<
    'static,
    (name!(patterns_imported, i32), name!(trajectories_imported, i32), name!(clusters_restored, i32)),
> {
    let blob = required("state_data", state_data);
    // Refuse a bad blob here, with the reason, before the worker sees it.
    if let Err(e) = ruvector_dag_learning::DagSonaEngine::from_state(learner::sona_config(), &blob) {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("RV004 LEARNING_FAILED: {e}"));
    }
    // Hand the blob to the worker in a dynamic shared memory segment (it may be megabytes).
    // SAFETY: a segment of blob.len() bytes is created, filled, its handle passed to the worker, which attaches,
    // copies and detaches before it answers; this backend detaches after the answer (or at transaction end).
    let r = unsafe {
        let seg = pg_sys::dsm_create(blob.len(), 0);
        std::ptr::copy_nonoverlapping(blob.as_ptr(), pg_sys::dsm_segment_address(seg).cast::<u8>(), blob.len());
        let handle = pg_sys::dsm_segment_handle(seg);
        let r = learner::submit(learner::Command::Import, [u64::from(handle), blob.len() as u64, 0], &[]);
        pg_sys::dsm_detach(seg);
        r
    };
    TableIterator::once((r[0] as i32, 0, r[1] as i32))
}

extension_sql!(
    r#"
-- Functions that change what the server learned or how it plans: granted by the DBA, not to PUBLIC.
REVOKE EXECUTE ON FUNCTION dag_store_pattern(real[], jsonb, float8), dag_consolidate_patterns(int),
    dag_reset_learning(boolean, boolean), dag_import_state(bytea), dag_export_state(), dag_learn_now(),
    dag_class_enable(bigint, boolean), dag_class_steer(bigint, text), dag_reset_pattern_quality(bigint[]),
    dag_recompute_clusters(text) FROM PUBLIC;
"#,
    name = "learning_privileges",
    requires = [
        dag_reset_pattern_quality,
        dag_recompute_clusters,
        dag_store_pattern,
        dag_consolidate_patterns,
        dag_reset_learning,
        dag_import_state,
        dag_export_state,
        dag_learn_now,
        dag_class_enable,
        dag_class_steer
    ]
);
