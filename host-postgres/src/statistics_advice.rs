//! Extended-statistics advice from actual rows: where executions showed a scan's filter on several columns of one
//! table returning far more or fewer rows than the planner estimated (it assumes the columns independent), what-if
//! `CREATE STATISTICS` (`advisor::statistics_advice`: in a rolled-back subtransaction, estimate, create, `ANALYZE`,
//! estimate again) and keep the advice whose new estimate lands closer to what actually ran.
//!
//! The actual rows come from the executions the hooks captured with per-node actuals
//! (`ruvector.dag_actuals_sample_rate`) in this database — the query classes' texts as the learner keeps them —
//! or, for an explicit list of queries, from running each under `EXPLAIN ANALYZE` here.

use crate::sql::fail;
use dag::QueryDag;
use dag::dag::{ExplainOptions, import_explain};
use pgrx::prelude::*;
use std::collections::BTreeMap;

/// A scan is misestimated when estimated and actual rows (per loop, +1) differ by this factor.
const MISESTIMATE: f64 = 10.0;

/// A scan that filtered on a conjunction and returned far from its estimate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Misestimate {
    pub(crate) table: String,
    pub(crate) estimated: f64,
    pub(crate) actual: f64,
}

/// The misestimated scans of a plan with actuals: a table scan whose filter (or condition) has an `AND`.
pub(crate) fn misestimates(dag: &QueryDag) -> Vec<Misestimate> {
    dag.nodes()
        .filter_map(|n| {
            let table = n.op.table()?;
            let actual = n.info.actual.as_ref().filter(|a| a.loops > 0.0)?;
            let conjunction =
                n.info.filter.as_deref().is_some_and(|f| f.contains(" AND ")) || n.op.to_string().contains(" AND ");
            let (e, a) = (n.info.estimates.rows.max(0.0) + 1.0, actual.rows.max(0.0) + 1.0);
            (conjunction && e.max(a) >= MISESTIMATE * e.min(a)).then(|| Misestimate {
                table: table.to_owned(),
                estimated: n.info.estimates.rows,
                actual: actual.rows,
            })
        })
        .collect()
}

/// The relation name without schema or quotes.
fn bare(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name).trim_matches('"')
}

/// One piece of advice: the statement, what it does to the estimate, and the queries that asked for it.
pub(crate) struct Advice {
    /// The table (as `regclass` text) and its columns.
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
    pub(crate) sql: String,
    /// The statistics kinds clause (empty: every kind).
    pub(crate) kinds: &'static str,
    /// Rows the planner estimates now, with the statistics, and that the executions returned.
    pub(crate) estimated: f64,
    pub(crate) estimated_with: f64,
    pub(crate) actual: f64,
    pub(crate) queries: i32,
    /// The query classes that showed the misestimate (none for explicit queries).
    pub(crate) query_ids: Vec<i64>,
}

/// Advice for `queries` (text and the misestimated scans observed for it), closest-to-actual only.
fn advise(queries: Vec<(Option<u64>, String, Vec<Misestimate>)>) -> Vec<Advice> {
    let mut by_sql: BTreeMap<String, Advice> = BTreeMap::new();
    for (query_id, text, seen) in queries {
        let ids: Vec<i64> = query_id.map(|q| q as i64).into_iter().collect();
        let advice = match crate::advisor::in_subtransaction(|| crate::advisor::statistics_advice(&text)) {
            Ok(a) => a,
            Err(e) => {
                notice!("ruvector_dag: statistics advice skips a query that no longer plans: {e}");
                continue;
            }
        };
        for a in advice {
            let Some(m) = seen.iter().find(|m| bare(&m.table) == bare(&a.table)) else { continue };
            let off = |rows: f64| ((rows.max(0.0) + 1.0) / (m.actual.max(0.0) + 1.0)).ln().abs();
            if off(a.rows_with) >= off(a.rows_now) {
                continue;
            }
            by_sql
                .entry(a.sql.clone())
                .and_modify(|x| {
                    x.queries += 1;
                    x.query_ids.extend(&ids);
                })
                .or_insert(Advice {
                    table: a.table,
                    columns: a.columns,
                    sql: a.sql,
                    kinds: a.kinds,
                    estimated: a.rows_now,
                    estimated_with: a.rows_with,
                    actual: m.actual,
                    queries: 1,
                    query_ids: ids.clone(),
                });
        }
    }
    by_sql.into_values().collect()
}

/// The plan of `query` run under `EXPLAIN ANALYZE` (in a rolled-back subtransaction), with per-node actuals.
fn measured(query: &str) -> Result<QueryDag, String> {
    // Only a read-only SELECT the caller may run (checked as dag_analyze_plan checks it).
    crate::explain::with_planned(query, |_, _| ());
    let json = crate::advisor::in_rolled_back_subtransaction(|| {
        crate::hooks::suppressed(|| {
            Spi::get_one::<pgrx::Json>(&format!("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {query}"))
                .map(|j| j.map(|j| j.0))
        })
    })?
    .map_err(|e| e.to_string())?
    .ok_or("EXPLAIN returned nothing")?;
    import_explain(&json.to_string(), &ExplainOptions::default()).map(|i| i.dag).map_err(|e| e.to_string())
}

/// The query classes of this database whose captured executions show misestimated scans, with their texts.
/// Advice from the executions captured with actuals in this database (what the advisor's auto mode applies).
pub(crate) fn workload_advice() -> Vec<Advice> {
    advise(captured())
}

fn captured() -> Vec<(Option<u64>, String, Vec<Misestimate>)> {
    // SAFETY: reads this backend's database OID.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let mut by_class: BTreeMap<u64, Vec<Misestimate>> = BTreeMap::new();
    for r in crate::ring::read(usize::MAX, |r| r.has_actuals && r.db_id == db && r.query_id != 0) {
        let Some(Ok(dag)) = r.plan_bytes().map(QueryDag::from_bytes) else { continue };
        let seen = misestimates(&dag);
        if !seen.is_empty() {
            by_class.entry(r.query_id).or_default().extend(seen);
        }
    }
    by_class
        .into_iter()
        .filter_map(|(query_id, seen)| Some((Some(query_id), crate::steering::fetch_text(query_id, None)?.text, seen)))
        .collect()
}

/// Extended statistics that executions call for: scans filtering on several columns of one table whose actual
/// rows were 10x or more off the estimate, where what-if `CREATE STATISTICS` + `ANALYZE` moves the estimate
/// toward the actual rows. `queries` NULL: the executions the hooks captured with actuals
/// (`ruvector.dag_actuals_sample_rate`) of this database's query classes; given: each query run once under
/// `EXPLAIN ANALYZE`. Needs ownership of the tables (as `ANALYZE` does).
#[pg_extern]
#[allow(clippy::type_complexity)]
fn dag_statistics_advice(
    queries: default!(Option<Vec<String>>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(table_name, String),
        name!(columns, Vec<String>),
        name!(implementation_sql, String),
        name!(estimated_rows, f64),
        name!(estimated_rows_with_statistics, f64),
        name!(actual_rows, f64),
        name!(queries, i32),
    ),
> {
    if crate::gucs::ADVISOR_MODE.get() == crate::gucs::AdvisorMode::off {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the advisor is off: SET ruvector.advisor_mode to advise or auto",
        );
    }
    let observed = match queries {
        None => {
            crate::sql::notice_if_not_preloaded();
            captured()
        }
        Some(list) => list
            .into_iter()
            .map(|q| {
                let dag = measured(&q)
                    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("{q}: {e}")));
                (None, q, misestimates(&dag))
            })
            .filter(|(_, _, seen)| !seen.is_empty())
            .collect(),
    };
    TableIterator::new(
        advise(observed)
            .into_iter()
            .map(|a| (a.table, a.columns, a.sql, a.estimated, a.estimated_with, a.actual, a.queries)),
    )
}

extension_sql!(
    r#"
-- Reads every role's captured query classes (or runs the given queries): for the DBA (or whom the DBA grants it).
REVOKE EXECUTE ON FUNCTION dag_statistics_advice(text[]) FROM PUBLIC;
"#,
    name = "statistics_advice_privileges",
    requires = [dag_statistics_advice]
);
