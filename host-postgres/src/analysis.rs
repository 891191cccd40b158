//! Plan analysis and attention SQL functions: each plans the given query text (not executed; privileges checked
//! as `EXPLAIN` checks them) and analyses that plan with the library.

// `TableIterator` signatures name every output column; aliases would hide the SQL API.
#![allow(clippy::type_complexity)]

use crate::explain::plan_query;
use crate::session;
use crate::sql::{fail, required};
use dag::QueryDag;
use dag::attention::PreparedDag;
use dag::learning::embedding::{NODE_FEATURES, node_features};
use dag::mincut::DagMinCutEngine;
use dag::mincut::bottleneck::{self, AlternativeKind, Recommendation};
use pgrx::prelude::*;
use std::fmt::Write as _;

fn analyze(dag: &QueryDag) -> bottleneck::PlanAnalysis {
    bottleneck::analyze(dag)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("analysing the plan failed: {e}")))
}

fn ids(iter: impl Iterator<Item = usize>) -> Vec<i32> {
    iter.map(|i| i as i32).collect()
}

/// One row per operator of the query's plan: criticality, bottleneck score, the 128 operator features, plan-tree
/// parents (consumers) and children (inputs), estimated total cost and recommendations.
#[pg_extern]
fn dag_analyze_plan(
    query_text: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(node_id, i32),
        name!(operator_type, String),
        name!(criticality, f64),
        name!(bottleneck_score, f64),
        name!(embedding, Vec<f32>),
        name!(parent_ids, Vec<i32>),
        name!(child_ids, Vec<i32>),
        name!(estimated_cost, f64),
        name!(recommendations, Vec<String>),
    ),
> {
    let dag = plan_query(required("query_text", query_text));
    let a = analyze(&dag);
    let mut features = Vec::new();
    node_features(&dag, &mut features);
    let rows: Vec<_> = dag
        .nodes()
        .enumerate()
        .map(|(p, n)| {
            (
                n.id as i32,
                n.op.to_string(),
                a.criticality[p],
                a.score[p],
                features[p * NODE_FEATURES..(p + 1) * NODE_FEATURES].to_vec(),
                ids(dag.parents(n.id).expect("id from the DAG")),
                ids(dag.children(n.id).expect("id from the DAG")),
                n.info.estimates.total_cost,
                bottleneck::recommend(&dag, n.id).iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// The critical path (longest own-cost path from a scan to the result), with accumulated own cost and the
/// attention weight of each operator under the session's mechanism.
#[pg_extern]
fn dag_critical_path(
    query_text: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(path_position, i32),
        name!(node_id, i32),
        name!(operator_type, String),
        name!(accumulated_cost, f64),
        name!(attention_weight, f64),
    ),
> {
    let dag = plan_query(required("query_text", query_text));
    let cp = bottleneck::critical_path(&dag);
    let prepared = PreparedDag::new(&dag);
    let mechanism = session::resolve(crate::gucs::ATTENTION.get().name());
    let scores = session::score(&dag, &prepared, &mechanism);
    let rows: Vec<_> = cp
        .path
        .iter()
        .zip(&cp.accumulated)
        .enumerate()
        .map(|(i, (&id, &acc))| {
            let w = scores.get(&dag, id).map_or(0.0, f64::from);
            (i as i32, id as i32, dag.node(id).expect("path ids are nodes").to_string(), acc, w)
        })
        .collect();
    TableIterator::new(rows)
}

/// Operators whose bottleneck score is at least `threshold` (0..=1), highest first, with their own cost
/// (`impact_estimate`, cost units) and the most specific suggestion.
#[pg_extern]
fn dag_bottlenecks(
    query_text: Option<&str>,
    threshold: default!(Option<f64>, 0.7),
) -> TableIterator<
    'static,
    (
        name!(node_id, i32),
        name!(operator_type, String),
        name!(bottleneck_score, f64),
        name!(impact_estimate, f64),
        name!(suggested_action, String),
    ),
> {
    let threshold = required("threshold", threshold);
    if !(0.0..=1.0).contains(&threshold) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("threshold {threshold} is out of range: expected 0..=1"),
        );
    }
    let dag = plan_query(required("query_text", query_text));
    let found = bottleneck::bottlenecks(&dag, threshold)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()));
    let rows: Vec<_> = found
        .into_iter()
        .map(|b| {
            let action =
                b.recommendations.first().map_or_else(|| "none: no rule applies".to_owned(), ToString::to_string);
            (b.node as i32, dag.node(b.node).expect("id").to_string(), b.score, b.self_cost, action)
        })
        .collect();
    TableIterator::new(rows)
}

/// The plan's exact minimum cut: operators on the data side, on the result side, its capacity, and whether the
/// cut crosses independent branches (work on its data side could run in parallel).
#[pg_extern]
fn dag_mincut_analysis(
    query_text: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(cut_id, i32),
        name!(source_nodes, Vec<i32>),
        name!(sink_nodes, Vec<i32>),
        name!(cut_capacity, f64),
        name!(parallelization_opportunity, bool),
        name!(cut_operators, Vec<i32>),
        name!(cut_edges, Vec<String>),
    ),
> {
    let dag = plan_query(required("query_text", query_text));
    let mut engine = DagMinCutEngine::new();
    engine
        .build_from_dag(&dag)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("min cut: {e}")));
    let cut = engine.min_cut();
    let source: std::collections::HashSet<usize> = cut.source_side.iter().copied().collect();
    let sink = ids(dag.node_ids().filter(|id| !source.contains(id)));
    // Parallel when two cut elements are incomparable (neither feeds the other).
    let prepared = PreparedDag::new(&dag);
    let elements: Vec<usize> = cut.nodes.iter().chain(cut.edges.iter().map(|(from, _)| from)).copied().collect();
    let parallel = elements.iter().enumerate().any(|(i, &a)| {
        elements[i + 1..].iter().any(|&b| {
            let (pa, pb) = (dag.position(a).expect("id"), dag.position(b).expect("id"));
            !prepared.comparable(pa, pb)
        })
    });
    TableIterator::once((
        1,
        ids(cut.source_side.iter().copied()),
        sink,
        cut.value,
        parallel,
        ids(cut.nodes.iter().copied()),
        cut.edges.iter().map(|(a, b)| format!("{a}->{b}")).collect(),
    ))
}

/// Quotes an identifier as PostgreSQL would (`quote_identifier`).
fn quote_ident(name: &str) -> String {
    let c = std::ffi::CString::new(name)
        .unwrap_or_else(|_| fail(PgSqlErrorCode::ERRCODE_INVALID_NAME, "identifier with NUL"));
    // SAFETY: quote_identifier returns the input or a palloc'd quoted copy, both valid C strings.
    unsafe { std::ffi::CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr())) }.to_string_lossy().into_owned()
}

fn is_plain_column(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Suggestions for the query's bottlenecks (score ≥ 0.3): category (`index`, `join_order`, `parallelism`,
/// `memory`), description, expected improvement (fraction of the plan's cost, estimated from the plan's own
/// numbers), SQL to apply it where one statement does, and a confidence (the bottleneck score). With the
/// `hypopg` extension installed, index suggestions are what-if costed instead (see `dag_index_advice`): only
/// indexes the re-planned query uses, with the planner's cost drop as the expected improvement. Where a scan
/// filters on several columns of a table the caller owns, `statistics` rows propose extended statistics when they
/// move the scan's row estimate by 4x or more (measured in a rolled-back subtransaction).
#[pg_extern]
fn dag_suggest_optimizations(
    query_text: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(suggestion_id, i32),
        name!(category, String),
        name!(description, String),
        name!(expected_improvement, f64),
        name!(implementation_sql, Option<String>),
        name!(confidence, f64),
    ),
> {
    let query_text = required("query_text", query_text);
    let dag = plan_query(query_text);
    // With HypoPG, index suggestions are what-if costed: only indexes the re-planned query uses and that lower
    // its cost, with the measured cost drop as the expected improvement. Without it, the plan's heuristics.
    let budget = (f64::from(crate::gucs::ADVISOR_BUDGET_MB.get()) * 1024.0 * 1024.0) as u64;
    let what_if = (crate::gucs::ADVISOR_MODE.get() != crate::gucs::AdvisorMode::off)
        .then(|| {
            crate::advisor::advise(
                &[crate::advisor::WorkloadQuery { text: query_text.to_owned(), frequency: 1.0, id: 0 }],
                budget,
                crate::advisor::Writes::Ignore,
                false,
            )
            .ok()
        })
        .flatten();
    let found = bottleneck::bottlenecks(&dag, 0.3)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()));
    let alternatives = bottleneck::alternatives(&dag, 0.3).unwrap_or_default();
    let mut rows = Vec::new();
    for b in &found {
        let improvement = |kind: AlternativeKind| {
            alternatives
                .iter()
                .find(|a| a.node == b.node && a.kind == kind)
                .map_or(b.cost_share, |a| a.estimated_improvement)
        };
        for r in &b.recommendations {
            let (category, sql, gain) = match r {
                Recommendation::CreateIndex { table, columns } if !columns.is_empty() => (
                    "index",
                    Some(format!(
                        "CREATE INDEX ON {} ({})",
                        quote_ident(table),
                        columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")
                    )),
                    improvement(AlternativeKind::UseIndex),
                ),
                Recommendation::CreateIndex { .. } => ("index", None, improvement(AlternativeKind::UseIndex)),
                Recommendation::SortedIndex { table: Some(t), keys } if keys.iter().all(|k| is_plain_column(k)) => (
                    "index",
                    Some(format!(
                        "CREATE INDEX ON {} ({})",
                        quote_ident(t),
                        keys.iter()
                            .map(|k| quote_ident(k.rsplit('.').next().unwrap_or(k)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    improvement(AlternativeKind::SortedIndex),
                ),
                Recommendation::SortedIndex { .. } => ("index", None, improvement(AlternativeKind::SortedIndex)),
                Recommendation::HashJoinInsteadOfNestedLoop { .. } => (
                    "join_order",
                    Some("SET enable_nestloop = off".to_owned()),
                    improvement(AlternativeKind::ReplaceJoin),
                ),
                Recommendation::Decorrelate { .. } => ("join_order", None, improvement(AlternativeKind::Decorrelate)),
                Recommendation::Parallelism { workers, .. } => {
                    ("parallelism", Some(format!("SET max_parallel_workers_per_gather = {workers}")), b.cost_share)
                }
                Recommendation::Partitioning { .. } => {
                    ("memory", Some("SET work_mem = '256MB'".to_owned()), b.cost_share)
                }
                Recommendation::RaiseVectorSearchEffort { setting, suggested, .. } => {
                    ("index", Some(format!("SET {setting} = {suggested}")), b.cost_share)
                }
            };
            if category == "index" && what_if.is_some() && !matches!(r, Recommendation::RaiseVectorSearchEffort { .. })
            {
                continue;
            }
            rows.push((rows.len() as i32 + 1, category.to_owned(), r.to_string(), gain.clamp(0.0, 1.0), sql, b.score));
        }
    }
    if crate::gucs::ADVISOR_MODE.get() != crate::gucs::AdvisorMode::off {
        for st in crate::advisor::statistics_advice(query_text) {
            let description = format!(
                "extended statistics on {} ({}): the scan's row estimate goes from {:.0} to {:.0} (the planner assumes \
                 the columns independent; re-estimated after ANALYZE)",
                st.table,
                st.columns.join(", "),
                st.rows_now,
                st.rows_with
            );
            // A corrected estimate changes plans, not the estimated cost of this one: no cost-based improvement.
            rows.push((rows.len() as i32 + 1, "statistics".to_owned(), description, 0.0, Some(st.sql), 0.8));
        }
    }
    // A decorrelating rewrite, judged by plan cost only here (dag_rewrite_report runs both and compares results).
    if let Ok((rewritten, notes)) = crate::rewrite::decorrelate(query_text) {
        let before = crate::rewrite::plan_cost(query_text);
        if let Ok(after) = crate::advisor::in_subtransaction(|| crate::rewrite::plan_cost(&rewritten))
            && after < before
        {
            let description = format!(
                "rewrite: {}; plan cost {before:.0} -> {after:.0} (not yet run: dag_rewrite_report runs both and \
                 compares their results)",
                notes.join("; ")
            );
            let gain = (before - after) / before.max(1e-9);
            rows.push((
                rows.len() as i32 + 1,
                "rewrite".to_owned(),
                description,
                gain.clamp(0.0, 1.0),
                Some(rewritten),
                0.7,
            ));
        }
    }
    for a in what_if.unwrap_or_default() {
        let gain = if a.base_cost > 0.0 { (a.cost_before - a.cost_after) / a.base_cost } else { 0.0 };
        let description = format!(
            "index on {} ({}): plan cost {:.0} -> {:.0} with it (hypothetical index, {} kB)",
            a.table,
            a.columns.join(", "),
            a.cost_before,
            a.cost_after,
            a.size_bytes / 1024
        );
        // What-if costs are the planner's own estimates for this exact query: high confidence, not certainty.
        rows.push((rows.len() as i32 + 1, "index".to_owned(), description, gain.clamp(0.0, 1.0), Some(a.sql), 0.9));
    }
    TableIterator::new(rows)
}

// ---- attention ----------------------------------------------------------------------------------------------

/// Attention weight of every operator of the query's plan under `mechanism` (`auto`: the configured one, else
/// critical_path).
#[pg_extern]
fn dag_attention_scores(
    query_text: Option<&str>,
    mechanism: default!(Option<&str>, "'auto'"),
) -> TableIterator<
    'static,
    (name!(node_id, i32), name!(operator_type, String), name!(attention_weight, f64), name!(mechanism, String)),
> {
    let name = session::resolve(required("mechanism", mechanism));
    let dag = plan_query(required("query_text", query_text));
    let prepared = PreparedDag::new(&dag);
    let scores = session::score(&dag, &prepared, &name);
    let rows: Vec<_> = scores
        .iter_with(&dag)
        .map(|(id, w)| (id as i32, dag.node(id).expect("id").to_string(), f64::from(w), name.clone()))
        .collect();
    TableIterator::new(rows)
}

/// Pairwise attention, one row per (operator, context operator) pair with non-zero weight: operator `row_id`
/// attends to the operators it is related to (above or below it), in proportion to their weight under
/// `mechanism`; under `parallel_branch` it attends to the operators parallel to it instead.
#[pg_extern]
fn dag_attention_pairs(
    query_text: Option<&str>,
    mechanism: default!(Option<&str>, "'auto'"),
) -> TableIterator<'static, (name!(row_id, i32), name!(col_id, i32), name!(weight, f64))> {
    let name = session::resolve(required("mechanism", mechanism));
    let dag = plan_query(required("query_text", query_text));
    let prepared = PreparedDag::new(&dag);
    let scores = session::score(&dag, &prepared, &name);
    let w = scores.as_slice();
    let parallel = name == "parallel_branch";
    let mut rows = Vec::new();
    for p in 0..prepared.n {
        let attends = |u: usize| prepared.comparable(p, u) != parallel;
        let total: f64 = (0..prepared.n).filter(|&u| attends(u)).map(|u| f64::from(w[u])).sum();
        for (u, &wu) in w.iter().enumerate() {
            let v = if attends(u) && total > 0.0 { f64::from(wu) / total } else { 0.0 };
            rows.push((prepared.ids[p] as i32, prepared.ids[u] as i32, v));
        }
    }
    TableIterator::new(rows)
}

extension_sql!(
    r#"
CREATE FUNCTION dag_attention_matrix(query_text text, mechanism text DEFAULT 'auto') RETURNS float8[][]
LANGUAGE sql STABLE STRICT AS $$
    SELECT array_agg(r ORDER BY row_id) FROM (
        SELECT row_id, array_agg(weight ORDER BY col_id) AS r
        FROM @extschema@.dag_attention_pairs(query_text, mechanism) GROUP BY row_id
    ) m
$$;
COMMENT ON FUNCTION dag_attention_matrix(text, text) IS
    'Pairwise attention as a matrix: row i, column j = weight of operator j in operator i''s context (ordered by node id).';
"#,
    name = "dag_attention_matrix",
    requires = [dag_attention_pairs]
);

/// The plan with its attention weights as Graphviz `dot`, `json` or an `ascii` tree.
#[pg_extern]
fn dag_attention_visualize(
    query_text: Option<&str>,
    mechanism: default!(Option<&str>, "'auto'"),
    format: default!(Option<&str>, "'dot'"),
) -> String {
    let format = required("format", format);
    if !["dot", "json", "ascii"].contains(&format) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("format \"{format}\": expected dot, json or ascii"),
        );
    }
    let name = session::resolve(required("mechanism", mechanism));
    let dag = plan_query(required("query_text", query_text));
    let prepared = PreparedDag::new(&dag);
    let scores = session::score(&dag, &prepared, &name);
    let max = scores.values().copied().fold(0.0f32, f32::max).max(f32::MIN_POSITIVE);
    let mut out = String::new();
    match format {
        "dot" => {
            let _ = writeln!(out, "digraph plan {{\n  label=\"attention: {name}\";\n  node [shape=box, style=filled];");
            for (id, w) in scores.iter_with(&dag) {
                let label = dag.node(id).expect("id").to_string().replace('\\', "\\\\").replace('"', "\\\"");
                let shade = (255.0 - 200.0 * w / max) as u8;
                let _ = writeln!(
                    out,
                    "  n{id} [label=\"{id}: {label}\\nw = {w:.4}\", fillcolor=\"#ff{shade:02x}{shade:02x}\"];"
                );
            }
            for (a, b) in dag.edges() {
                let _ = writeln!(out, "  n{a} -> n{b};");
            }
            out.push('}');
        }
        "json" => {
            let nodes: Vec<serde_json::Value> = scores
                .iter_with(&dag)
                .map(|(id, w)| serde_json::json!({"id": id, "operator": dag.node(id).expect("id").to_string(), "weight": w}))
                .collect();
            let edges: Vec<[usize; 2]> = dag.edges().map(|(a, b)| [a, b]).collect();
            out = serde_json::json!({"mechanism": name, "nodes": nodes, "edges": edges}).to_string();
        }
        _ => {
            let _ = writeln!(out, "attention: {name}");
            fn walk(
                dag: &QueryDag,
                scores: &dag::attention::AttentionScores,
                max: f32,
                id: usize,
                indent: usize,
                out: &mut String,
            ) {
                let w = scores.get(dag, id).unwrap_or(0.0);
                let bar = "#".repeat(((w / max) * 20.0).round() as usize);
                let _ = writeln!(
                    out,
                    "{:indent$}{id} {:<20} {w:.4} {}",
                    "",
                    bar,
                    dag.node(id).expect("id"),
                    indent = indent * 2
                );
                for c in dag.children(id).expect("id") {
                    walk(dag, scores, max, c, indent + 1, out);
                }
            }
            for root in dag.sinks() {
                walk(&dag, &scores, max, root, 0, &mut out);
            }
        }
    }
    out
}

/// Sets a mechanism's parameters for this session (validated; unknown keys and out-of-range values are errors).
#[pg_extern]
fn dag_attention_configure(mechanism: Option<&str>, params: Option<pgrx::JsonB>) {
    session::configure(required("mechanism", mechanism), required("params", params).0);
}

/// Per-mechanism statistics of this backend: invocations, mean latency (µs), cache hit rate. The improvement
/// ratio is NULL until the learning loop measures executions under each mechanism.
#[pg_extern]
fn dag_attention_stats() -> TableIterator<
    'static,
    (
        name!(mechanism, String),
        name!(invocations, i64),
        name!(avg_latency_us, Option<f64>),
        name!(hit_rate, Option<f64>),
        name!(improvement_ratio, Option<f64>),
    ),
> {
    let rows: Vec<_> = session::stats()
        .into_iter()
        .map(|(m, s)| {
            let avg = (s.invocations > 0).then(|| s.total_us / s.invocations as f64);
            let hit = (s.cache_lookups > 0).then(|| s.cache_hits as f64 / s.cache_lookups as f64);
            (m, s.invocations as i64, avg, hit, None)
        })
        .collect();
    TableIterator::new(rows)
}
