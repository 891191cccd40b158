//! Index advice: candidates read from the planned queries' scans, what-if costing with HypoPG's hypothetical
//! indexes, and workload-level selection under `ruvector.advisor_budget_mb` (the library's `advisor` module).
//!
//! Candidates come from the plan trees, not from the SQL text: a scan's quals give the columns compared with
//! constants and parameters (`=` / `= ANY` as equalities, `<`, `<=`, `>`, `>=` as ranges); inside a correlated
//! SubPlan, comparisons with the outer row's parameters are the correlation key, weighted by the estimated
//! number of calls (this is what finds TPC-H Q20's `lineitem (l_partkey, l_suppkey)`); hash, merge and nested-loop
//! join clauses give join keys, resolved through the plan's target lists to base columns.
//!
//! What-if: with the `hypopg` extension installed in the current database, each candidate set is created as
//! hypothetical indexes and every query of the workload is planned again (in this backend, explain-only, with
//! the caller's privileges); a candidate counts only when a plan uses it. Without HypoPG there is no what-if
//! costing, and `dag_index_advice` says so.
// SQL functions returning tables spell out their columns.
#![allow(clippy::type_complexity)]

use crate::capture::{collect_subplans, cstr, list_nth_ptr, list_ptrs, member_plans};
use crate::sql::fail;
use dag::advisor::{
    self, ColumnPredicate, Evaluation, ExistingIndex, IndexCandidate, PredicateKind, PredicateSource, ScanUse,
};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

/// What an index must save, as a share of the workload's cost, to be worth proposing.
const MIN_GAIN: f64 = 0.01;
/// Candidates costed per advice, heaviest first: what-if planning is quadratic in this.
const MAX_CANDIDATES: usize = 24;
/// Planner cost units one row write adds per index (a leaf-page update, mostly cached): the write-maintenance
/// estimate is this × the table's inserted, updated and deleted rows since its statistics were reset.
const WRITE_COST_PER_ROW: f64 = 1.0;

/// One query of the workload: its text and how often it runs.
#[derive(Debug, Clone)]
pub(crate) struct WorkloadQuery {
    pub(crate) text: String,
    pub(crate) frequency: f64,
    /// The query class (`query_id`), for a workload read from the learner; 0 otherwise.
    pub(crate) id: i64,
}

/// Walks a planned statement (main tree, SubPlans, CTEs, InitPlans).
struct Walker {
    stmt: *mut pg_sys::PlannedStmt,
    query: usize,
    frequency: f64,
    uses: Vec<ScanUse>,
    /// Scans filtering on several columns of one table: (table OID as text, columns, estimated rows per loop).
    multi_column: Vec<(String, Vec<String>, f64)>,
    seen_subplans: Vec<i32>,
}

impl Walker {
    unsafe fn relid(&self, rt_index: i64) -> Option<pg_sys::Oid> {
        if rt_index <= 0 {
            return None;
        }
        // SAFETY: `stmt` is valid; the index comes from one of its plan nodes.
        unsafe {
            let rte = list_nth_ptr::<pg_sys::RangeTblEntry>((*self.stmt).rtable, rt_index as usize - 1)?;
            ((*rte).rtekind == pg_sys::RTEKind::RTE_RELATION && (*rte).relid != pg_sys::InvalidOid)
                .then_some((*rte).relid)
        }
    }

    unsafe fn walk(&mut self, plan: *mut pg_sys::Plan, loops: f64, correlated: bool) {
        if plan.is_null() {
            return;
        }
        // SAFETY: `plan` is a valid node of the statement; casts follow its tag.
        unsafe {
            use pg_sys::NodeTag as T;
            let weight = (*plan).total_cost.max(0.0) * loops * self.frequency;
            let tag = (*plan).type_;
            if matches!(
                tag,
                T::T_SeqScan
                    | T::T_IndexScan
                    | T::T_IndexOnlyScan
                    | T::T_BitmapHeapScan
                    | T::T_TidScan
                    | T::T_SampleScan
            ) {
                let scanrelid = (*(plan as *mut pg_sys::Scan)).scanrelid as i64;
                if let Some(relid) = self.relid(scanrelid) {
                    let predicates = scan_predicates(relid, scanrelid, (*plan).qual, correlated);
                    let mut columns: Vec<String> = predicates.iter().map(|p| p.column.clone()).collect();
                    columns.dedup();
                    if columns.len() >= 2 {
                        columns.truncate(8);
                        self.multi_column.push((table_key(relid), columns, (*plan).plan_rows));
                    }
                    if !predicates.is_empty() {
                        self.uses.push(ScanUse { table: table_key(relid), predicates, weight, query: self.query });
                    }
                }
            }
            let join_clauses = match tag {
                T::T_HashJoin => (*(plan as *mut pg_sys::HashJoin)).hashclauses,
                T::T_MergeJoin => (*(plan as *mut pg_sys::MergeJoin)).mergeclauses,
                T::T_NestLoop => (*(plan as *mut pg_sys::Join)).joinqual,
                _ => std::ptr::null_mut(),
            };
            for clause in list_ptrs::<pg_sys::Node>(join_clauses) {
                for (relid, column) in self.join_key_columns(plan, clause) {
                    let predicates =
                        vec![ColumnPredicate::new(column, PredicateKind::Equality, PredicateSource::JoinKey)];
                    self.uses.push(ScanUse { table: table_key(relid), predicates, weight, query: self.query });
                }
            }

            // SubPlans this node evaluates: once per row it processes (estimated by its input's rows).
            let mut subplans = Vec::new();
            collect_subplans((*plan).targetlist.cast(), &mut subplans);
            collect_subplans((*plan).qual.cast(), &mut subplans);
            collect_subplans(join_clauses.cast(), &mut subplans);
            if matches!(tag, T::T_HashJoin | T::T_MergeJoin) {
                collect_subplans((*(plan as *mut pg_sys::Join)).joinqual.cast(), &mut subplans);
            }
            let input_rows = if (*plan).lefttree.is_null() { (*plan).plan_rows } else { (*(*plan).lefttree).plan_rows };
            for sp in subplans {
                let calls = if (*sp).parParam.is_null() { 1.0 } else { input_rows.max(1.0) };
                self.subplan((*sp).plan_id, loops * calls, !(*sp).parParam.is_null());
            }
            let mut init = Vec::new();
            collect_subplans((*plan).initPlan.cast(), &mut init);
            for sp in init {
                self.subplan((*sp).plan_id, loops, false);
            }
            match tag {
                T::T_SubqueryScan => self.walk((*(plan as *mut pg_sys::SubqueryScan)).subplan, loops, correlated),
                T::T_CteScan => self.subplan((*(plan as *mut pg_sys::CteScan)).ctePlanId, loops, false),
                _ => {}
            }
            for member in list_ptrs::<pg_sys::Plan>(member_plans(plan)) {
                self.walk(member, loops, correlated);
            }
            self.walk((*plan).lefttree, loops, correlated);
            // A nested loop's inner side runs once per outer row.
            let inner_loops = if tag == T::T_NestLoop && !(*plan).lefttree.is_null() {
                (*(*plan).lefttree).plan_rows.max(1.0)
            } else {
                1.0
            };
            self.walk((*plan).righttree, loops * inner_loops, correlated);
        }
    }

    unsafe fn subplan(&mut self, plan_id: i32, loops: f64, correlated: bool) {
        if plan_id <= 0 || self.seen_subplans.contains(&plan_id) {
            return;
        }
        self.seen_subplans.push(plan_id);
        // SAFETY: plan ids index the statement's subplans list from 1.
        unsafe {
            if let Some(root) = list_nth_ptr::<pg_sys::Plan>((*self.stmt).subplans, plan_id as usize - 1) {
                self.walk(root, loops, correlated);
            }
        }
    }

    /// Base columns of a join clause `a = b` whose sides are plain columns.
    unsafe fn join_key_columns(
        &self,
        join: *mut pg_sys::Plan,
        clause: *mut pg_sys::Node,
    ) -> Vec<(pg_sys::Oid, String)> {
        // SAFETY: `clause` is a valid expression of `join`; casts follow tags.
        unsafe {
            if (*clause).type_ != pg_sys::NodeTag::T_OpExpr {
                return Vec::new();
            }
            let op = clause as *mut pg_sys::OpExpr;
            if opname((*op).opno).as_deref() != Some("=") {
                return Vec::new();
            }
            list_ptrs::<pg_sys::Node>((*op).args)
                .filter_map(|arg| {
                    let var = as_var(arg)?;
                    let (rt, attno) = self.resolve(join, var)?;
                    let relid = self.relid(rt)?;
                    Some((relid, attname(relid, attno)?))
                })
                .collect()
        }
    }

    /// Follows an OUTER_VAR / INNER_VAR reference down the target lists to a base relation's column.
    unsafe fn resolve(&self, plan: *mut pg_sys::Plan, var: *mut pg_sys::Var) -> Option<(i64, i16)> {
        // SAFETY: `plan` and `var` are valid; target lists hold TargetEntry nodes.
        unsafe {
            let varno = (*var).varno;
            let child = match varno {
                pg_sys::OUTER_VAR => (*plan).lefttree,
                pg_sys::INNER_VAR => (*plan).righttree,
                n if n > 0 && (*var).varlevelsup == 0 && (*var).varattno > 0 => {
                    return Some((i64::from(n), (*var).varattno));
                }
                _ => return None,
            };
            if child.is_null() || (*var).varattno <= 0 {
                return None;
            }
            let tle = list_nth_ptr::<pg_sys::TargetEntry>((*child).targetlist, (*var).varattno as usize - 1)?;
            let inner = as_var((*tle).expr.cast())?;
            self.resolve(child, inner)
        }
    }
}

/// The key by which tables are named in candidates: the OID, turned into a name for display at the end.
fn table_key(relid: pg_sys::Oid) -> String {
    relid.to_u32().to_string()
}

fn opname(opno: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup returning a palloc'd copy or null.
    unsafe { cstr(pg_sys::get_opname(opno)) }
}

fn attname(relid: pg_sys::Oid, attno: i16) -> Option<String> {
    // SAFETY: a syscache lookup returning a palloc'd copy or null (missing_ok).
    unsafe { cstr(pg_sys::get_attname(relid, attno, true)) }
}

/// Strips binary-compatible relabelling and implicit or explicit casts.
unsafe fn strip(mut node: *mut pg_sys::Node) -> *mut pg_sys::Node {
    // SAFETY: casts follow tags of valid expression nodes.
    unsafe {
        loop {
            if node.is_null() {
                return node;
            }
            match (*node).type_ {
                pg_sys::NodeTag::T_RelabelType => node = (*(node as *mut pg_sys::RelabelType)).arg.cast(),
                pg_sys::NodeTag::T_FuncExpr => {
                    let f = node as *mut pg_sys::FuncExpr;
                    let cast = matches!(
                        (*f).funcformat,
                        pg_sys::CoercionForm::COERCE_IMPLICIT_CAST | pg_sys::CoercionForm::COERCE_EXPLICIT_CAST
                    );
                    match list_nth_ptr::<pg_sys::Node>((*f).args, 0) {
                        Some(arg) if cast && (*(*f).args).length == 1 => node = arg,
                        _ => return node,
                    }
                }
                _ => return node,
            }
        }
    }
}

unsafe fn as_var(node: *mut pg_sys::Node) -> Option<*mut pg_sys::Var> {
    // SAFETY: as `strip`.
    unsafe {
        let node = strip(node);
        (!node.is_null() && (*node).type_ == pg_sys::NodeTag::T_Var).then_some(node as *mut pg_sys::Var)
    }
}

/// What the other side of a comparison is: a value known when the scan runs (constant, parameter, or an array
/// of those), and whether it comes from the outer row of a correlated SubPlan.
unsafe fn value_source(node: *mut pg_sys::Node, correlated: bool) -> Option<PredicateSource> {
    // SAFETY: as `strip`.
    unsafe {
        let node = strip(node);
        if node.is_null() {
            return None;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_Const => Some(PredicateSource::Filter),
            pg_sys::NodeTag::T_Param => {
                let p = node as *mut pg_sys::Param;
                if correlated && (*p).paramkind == pg_sys::ParamKind::PARAM_EXEC {
                    Some(PredicateSource::Correlation)
                } else {
                    Some(PredicateSource::Filter)
                }
            }
            pg_sys::NodeTag::T_ArrayExpr => {
                let elements = (*(node as *mut pg_sys::ArrayExpr)).elements;
                list_ptrs::<pg_sys::Node>(elements)
                    .all(|e| value_source(e, false).is_some())
                    .then_some(PredicateSource::Filter)
            }
            _ => None,
        }
    }
}

/// The columns of relation `relid` (range-table index `scanrelid`) that the scan's quals compare with values.
unsafe fn scan_predicates(
    relid: pg_sys::Oid,
    scanrelid: i64,
    quals: *mut pg_sys::List,
    correlated: bool,
) -> Vec<ColumnPredicate> {
    let column_of = |node: *mut pg_sys::Node| -> Option<String> {
        // SAFETY: valid expression nodes of the scan.
        unsafe {
            let var = as_var(node)?;
            ((*var).varno as i64 == scanrelid && (*var).varlevelsup == 0 && (*var).varattno > 0)
                .then(|| attname(relid, (*var).varattno))
                .flatten()
        }
    };
    let mut out: Vec<ColumnPredicate> = Vec::new();
    // SAFETY: `quals` is the scan's qual list; casts follow tags.
    unsafe {
        for qual in list_ptrs::<pg_sys::Node>(quals) {
            let (opno, args) = match (*qual).type_ {
                pg_sys::NodeTag::T_OpExpr => {
                    ((*(qual as *mut pg_sys::OpExpr)).opno, (*(qual as *mut pg_sys::OpExpr)).args)
                }
                pg_sys::NodeTag::T_ScalarArrayOpExpr if (*(qual as *mut pg_sys::ScalarArrayOpExpr)).useOr => {
                    let sa = qual as *mut pg_sys::ScalarArrayOpExpr;
                    if opname((*sa).opno).as_deref() != Some("=") {
                        continue;
                    }
                    ((*sa).opno, (*sa).args)
                }
                _ => continue,
            };
            let kind = match opname(opno).as_deref() {
                Some("=") => PredicateKind::Equality,
                Some("<" | "<=" | ">" | ">=") => PredicateKind::Range,
                _ => continue,
            };
            let (Some(l), Some(r)) = (list_nth_ptr::<pg_sys::Node>(args, 0), list_nth_ptr::<pg_sys::Node>(args, 1))
            else {
                continue;
            };
            let found = match (column_of(l), column_of(r)) {
                (Some(c), None) => value_source(r, correlated).map(|s| (c, s)),
                (None, Some(c)) => value_source(l, correlated).map(|s| (c, s)),
                _ => None,
            };
            if let Some((column, source)) = found {
                if !out.iter().any(|p| p.column == column && p.kind == kind) {
                    out.push(ColumnPredicate::new(column, kind, source));
                }
            }
        }
    }
    out
}

/// Plans `query` (explain-only, with the caller's privileges: one read-only SELECT, or an ERROR) and reads the
/// predicates of its scans.
fn scan_uses(query: &str, index: usize, frequency: f64) -> Vec<ScanUse> {
    walk_plan(query, index, frequency).uses
}

fn walk_plan(query: &str, index: usize, frequency: f64) -> Walker {
    crate::explain::with_planned(query, |_, stmt| {
        let mut w = Walker {
            stmt,
            query: index,
            frequency,
            uses: Vec::new(),
            multi_column: Vec::new(),
            seen_subplans: Vec::new(),
        };
        // SAFETY: `with_planned` passes a valid PlannedStmt inside the current transaction.
        unsafe {
            w.walk((*stmt).planTree, 1.0, false);
            // SubPlans and CTEs no expression referenced (none in practice) are still read.
            // NIL (null) when the statement has none.
            let subplans = (*stmt).subplans;
            let n = if subplans.is_null() { 0 } else { (*subplans).length.max(0) };
            for id in 1..=n {
                w.subplan(id, 1.0, false);
            }
        }
        w.stmt = std::ptr::null_mut();
        w
    })
}

/// Total cost and index names of `query`'s plan, through `EXPLAIN` (HypoPG adds its hypothetical indexes only
/// to plans made for an `EXPLAIN` statement). `query` has passed `scan_uses`: one read-only SELECT.
fn explain_cost(query: &str) -> (f64, Vec<String>) {
    fn index_names(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(n)) = m.get("Index Name") {
                    out.push(n.clone());
                }
                m.values().for_each(|x| index_names(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| index_names(x, out)),
            _ => {}
        }
    }
    let json = crate::hooks::suppressed(|| Spi::get_one::<pgrx::Json>(&format!("EXPLAIN (FORMAT JSON) {query}")))
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("EXPLAIN for the what-if cost: {e}")))
        .map(|j| j.0)
        .unwrap_or_default();
    let plan = &json[0]["Plan"];
    let mut names = Vec::new();
    index_names(plan, &mut names);
    (plan["Total Cost"].as_f64().unwrap_or(0.0), names)
}

/// The schema of the `hypopg` extension in this database, if installed.
fn hypopg_schema() -> Option<String> {
    Spi::get_one::<String>(
        "SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'hypopg'",
    )
    .ok()
    .flatten()
}

/// `CREATE INDEX` for a candidate whose table is named by OID.
fn create_sql(c: &IndexCandidate, names: &std::collections::HashMap<String, String>) -> String {
    let cols: Vec<String> = c.columns.iter().map(spi::quote_identifier).collect();
    format!("CREATE INDEX ON {} ({})", names.get(&c.table).map_or(c.table.as_str(), String::as_str), cols.join(", "))
}

/// The existing plain (non-partial) indexes of `tables` (OIDs), as leading plain columns.
fn existing_indexes(tables: &[String]) -> Vec<ExistingIndex> {
    let oids: Vec<i64> = tables.iter().filter_map(|t| t.parse().ok()).collect();
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT i.indrelid::oid::int8, array_agg(coalesce(a.attname::text, '') ORDER BY k.n)
             FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
             WHERE i.indrelid::oid::int8 = ANY($1) AND i.indpred IS NULL AND i.indisvalid
             GROUP BY i.indexrelid, i.indrelid",
            None,
            &[oids.into()],
        )?;
        rows.map(|r| {
            let table: i64 = r.get(1)?.unwrap_or_default();
            let cols: Vec<String> = r.get::<Vec<String>>(2)?.unwrap_or_default();
            // Expression columns end the usable prefix.
            let columns = cols.into_iter().take_while(|c| !c.is_empty()).collect();
            Ok(ExistingIndex { table: table.to_string(), columns })
        })
        .collect::<SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("reading pg_index: {e}")))
}

/// Table OIDs → names as `regclass` prints them.
fn table_names(tables: &[String]) -> std::collections::HashMap<String, String> {
    tables
        .iter()
        .filter_map(|t| {
            let oid: i64 = t.parse().ok()?;
            let name = Spi::get_one_with_args::<String>("SELECT $1::oid::regclass::text", &[oid.into()]).ok()??;
            Some((t.clone(), name))
        })
        .collect()
}

/// Which write costs count against an index.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Writes<'a> {
    /// None (an explicit workload: its frequencies say nothing about the period of the writes).
    Ignore,
    /// The table's writes since its statistics were reset (against cumulative executions).
    Cumulative,
    /// The table's writes since a snapshot of [`all_table_writes`] (against executions since then).
    Since(&'a std::collections::HashMap<String, f64>),
}

/// Rows inserted, updated and deleted so far, per table (keyed like candidates: the OID as text).
pub(crate) fn all_table_writes() -> std::collections::HashMap<String, f64> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT relid::oid::int8, (n_tup_ins + n_tup_upd + n_tup_del)::float8 FROM pg_stat_all_tables",
                None,
                &[],
            )?
            .map(|r| Ok((r.get::<i64>(1)?.unwrap_or_default().to_string(), r.get::<f64>(2)?.unwrap_or_default())))
            .collect::<SpiResult<std::collections::HashMap<_, _>>>()
    })
    .unwrap_or_default()
}

/// Rows inserted, updated and deleted per table since its statistics were reset.
fn table_writes(table: &str) -> f64 {
    let Ok(oid) = table.parse::<i64>() else { return 0.0 };
    Spi::get_one_with_args::<i64>(
        "SELECT (n_tup_ins + n_tup_upd + n_tup_del)::int8 FROM pg_stat_all_tables WHERE relid = $1::oid",
        &[oid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(0) as f64
}

/// A costed recommendation.
#[derive(Debug, Clone)]
pub(crate) struct Advice {
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
    pub(crate) sql: String,
    pub(crate) size_bytes: u64,
    pub(crate) cost_before: f64,
    pub(crate) cost_after: f64,
    pub(crate) write_cost: f64,
    pub(crate) base_cost: f64,
    pub(crate) queries: usize,
    /// The `id`s of the workload queries it could serve.
    pub(crate) query_ids: Vec<i64>,
    pub(crate) correlated: bool,
}

/// Why no what-if costing could be done.
pub(crate) const NO_HYPOPG: &str = "what-if costing needs the hypopg extension: CREATE EXTENSION hypopg";

/// Runs `f` in a subtransaction: an ERROR inside rolls it back and comes back as `Err(message)`; the
/// transaction goes on.
pub(crate) fn in_subtransaction<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    subtransaction(true, f)
}

/// Runs `f` in a subtransaction that is always rolled back (a what-if that changes catalogs); an ERROR comes back
/// as `Err(message)`.
pub(crate) fn in_rolled_back_subtransaction<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    subtransaction(false, f)
}

fn subtransaction<T>(commit: bool, f: impl FnOnce() -> T) -> Result<T, String> {
    // SAFETY: the internal-subtransaction pattern of PL/pgSQL's exception blocks: begin, run, then release or
    // roll back, restoring the caller's memory context and resource owner on both paths.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let result = PgTryBuilder::new(std::panic::AssertUnwindSafe(move || Ok(f())))
            .catch_others(|e| {
                Err(match e {
                    pg_sys::panic::CaughtError::PostgresError(r) | pg_sys::panic::CaughtError::ErrorReport(r) => {
                        r.message().to_owned()
                    }
                    pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_owned(),
                })
            })
            .execute();
        match result {
            Ok(_) if commit => pg_sys::ReleaseCurrentSubTransaction(),
            _ => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}

/// Advises indexes for `workload` within `budget_bytes`, counting write costs as `writes` says. With
/// `skip_failing`, a query that cannot be planned (a dropped table, a privilege the caller lacks) is left out
/// with a NOTICE; otherwise its ERROR stops the advice. `Err` when HypoPG is not installed.
pub(crate) fn advise(
    workload: &[WorkloadQuery],
    budget_bytes: u64,
    writes: Writes<'_>,
    skip_failing: bool,
) -> Result<Vec<Advice>, &'static str> {
    let Some(schema) = hypopg_schema() else { return Err(NO_HYPOPG) };
    let mut uses = Vec::new();
    let mut planned = Vec::with_capacity(workload.len());
    for q in workload {
        let i = planned.len();
        if skip_failing {
            match in_subtransaction(|| scan_uses(&q.text, i, q.frequency)) {
                Ok(u) => uses.extend(u),
                Err(e) => {
                    notice!("ruvector_dag: index advice leaves out a query that cannot be planned: {e}");
                    continue;
                }
            }
        } else {
            uses.extend(scan_uses(&q.text, i, q.frequency));
        }
        planned.push(q.clone());
    }
    let workload = &planned[..];
    let mut tables: Vec<String> = uses.iter().map(|u| u.table.clone()).collect();
    tables.sort();
    tables.dedup();
    let existing = existing_indexes(&tables);
    let mut candidates = advisor::candidates(&uses, &existing);
    candidates.truncate(MAX_CANDIDATES);
    let names = table_names(&tables);
    let sqls: Vec<String> = candidates.iter().map(|c| create_sql(c, &names)).collect();

    // Only our own hypothetical indexes are dropped: the session may hold the user's.
    let drop = |oids: &[Option<pg_sys::Oid>]| {
        for oid in oids.iter().flatten() {
            let _ = Spi::get_one_with_args::<bool>(&format!("SELECT {schema}.hypopg_drop_index($1)"), &[(*oid).into()]);
        }
    };
    let create = |sql: &str| -> Option<pg_sys::Oid> {
        Spi::get_one_with_args::<pg_sys::Oid>(
            &format!("SELECT indexrelid FROM {schema}.hypopg_create_index($1)"),
            &[sql.into()],
        )
        .ok()
        .flatten()
    };
    let index_name = |oid: pg_sys::Oid| -> Option<String> {
        Spi::get_one_with_args::<String>(
            &format!("SELECT indexname::text FROM {schema}.hypopg() WHERE indexrelid = $1"),
            &[oid.into()],
        )
        .ok()
        .flatten()
    };
    // Sizes: each candidate alone. A candidate HypoPG cannot create (a type without a B-tree class) is dropped.
    let sizes: Vec<Option<u64>> = sqls
        .iter()
        .map(|sql| {
            let oid = create(sql);
            let size = oid.and_then(|oid| {
                Spi::get_one_with_args::<i64>(&format!("SELECT {schema}.hypopg_relation_size($1)"), &[oid.into()])
                    .ok()
                    .flatten()
            });
            drop(&[oid]);
            Some(size?.max(0) as u64)
        })
        .collect();
    let writes: Vec<f64> = candidates
        .iter()
        .map(|c| {
            WRITE_COST_PER_ROW
                * match writes {
                    Writes::Ignore => 0.0,
                    Writes::Cumulative => table_writes(&c.table),
                    Writes::Since(base) => {
                        (table_writes(&c.table) - base.get(&c.table).copied().unwrap_or(0.0)).max(0.0)
                    }
                }
        })
        .collect();
    let evaluate = |set: &[usize]| -> dag::Result<Evaluation> {
        let oids: Vec<Option<pg_sys::Oid>> = set.iter().map(|&i| create(&sqls[i])).collect();
        let names: Vec<Option<String>> = oids.iter().map(|o| o.and_then(index_name)).collect();
        let mut cost = 0.0;
        let mut used = vec![false; set.len()];
        for q in workload {
            let (plan_cost, indexes) = explain_cost(&q.text);
            cost += q.frequency * plan_cost;
            for (slot, name) in names.iter().enumerate() {
                if name.as_ref().is_some_and(|n| indexes.contains(n)) {
                    used[slot] = true;
                }
            }
        }
        drop(&oids);
        Ok(Evaluation { cost, used })
    };
    let selection =
        advisor::select(&candidates, budget_bytes, MIN_GAIN, |i| sizes[i].unwrap_or(u64::MAX), |i| writes[i], evaluate);
    let selection = selection.unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()));
    Ok(selection
        .picks
        .iter()
        .map(|p| {
            let c = &candidates[p.candidate];
            Advice {
                table: names.get(&c.table).cloned().unwrap_or_else(|| c.table.clone()),
                columns: c.columns.clone(),
                sql: sqls[p.candidate].clone(),
                size_bytes: p.size_bytes,
                cost_before: p.cost_before,
                cost_after: p.cost_after,
                write_cost: p.write_cost,
                base_cost: selection.base_cost,
                queries: c.queries.len(),
                query_ids: c.queries.iter().filter_map(|&q| workload.get(q).map(|w| w.id)).collect(),
                correlated: c.correlated,
            }
        })
        .collect())
}

/// Extended-statistics advice for one query.
#[derive(Debug, Clone)]
pub(crate) struct StatisticsAdvice {
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
    pub(crate) sql: String,
    /// The statistics kinds clause (empty: every kind).
    pub(crate) kinds: &'static str,
    /// The scan's estimated rows with fresh per-column statistics, and with extended statistics too.
    pub(crate) rows_now: f64,
    pub(crate) rows_with: f64,
}

/// The planner's row estimate now for `query`'s scan of table `table` (its OID as text) filtering on `columns`.
pub(crate) fn scan_rows(query: &str, table: &str, columns: &[String]) -> Option<f64> {
    walk_plan(query, 0, 1.0).multi_column.into_iter().find(|(t, c, _)| t == table && c == columns).map(|s| s.2)
}

/// Estimates that change by at least this factor with extended statistics are worth reporting.
const STATISTICS_FACTOR: f64 = 4.0;

/// Where a scan filters on several columns of one table the caller owns, what-if extended statistics: in a
/// subtransaction that is always rolled back, `ANALYZE` those columns, plan, `CREATE STATISTICS` on them (all
/// kinds), `ANALYZE` again, plan again; advice when the scan's row estimate moves by [`STATISTICS_FACTOR`] or more
/// (the planner assumed the columns independent, and they are not).
pub(crate) fn statistics_advice(query: &str) -> Vec<StatisticsAdvice> {
    let mut scans = walk_plan(query, 0, 1.0).multi_column;
    scans.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    scans.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let tables: Vec<String> = scans.iter().map(|s| s.0.clone()).collect();
    let names = table_names(&tables);
    let rows_of = |table: &str, columns: &[String]| scan_rows(query, table, columns);
    let mut out = Vec::new();
    for (table, columns, _) in scans {
        let Some(name) = names.get(&table) else { continue };
        let Ok(oid) = table.parse::<i64>() else { continue };
        // ANALYZE and CREATE STATISTICS need ownership: others get no statistics advice (and no WARNING).
        let owner = Spi::get_one_with_args::<bool>(
            "SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = $1::oid",
            &[oid.into()],
        );
        if owner.ok().flatten() != Some(true) {
            continue;
        }
        let cols = columns.iter().map(spi::quote_identifier).collect::<Vec<_>>().join(", ");
        // Every kind first; where the multivariate MCV list holds too few of the combinations (high-cardinality
        // columns), PostgreSQL prefers it to the dependencies and the estimate barely moves: then dependencies alone.
        for kinds in ["", " (dependencies)"] {
            let measured = in_rolled_back_subtransaction(|| {
                Spi::run(&format!("ANALYZE {name} ({cols})")).ok()?;
                let now = rows_of(&table, &columns)?;
                Spi::run(&format!("CREATE STATISTICS ruvector_whatif_statistics{kinds} ON {cols} FROM {name}")).ok()?;
                Spi::run(&format!("ANALYZE {name} ({cols})")).ok()?;
                Some((now, rows_of(&table, &columns)?))
            });
            let Ok(Some((now, with))) = measured else { continue };
            if now.max(with) < STATISTICS_FACTOR * now.min(with).max(1.0) {
                continue;
            }
            // PostgreSQL 15 needs a name: <table>_<columns>_stats, within the 63-byte identifier limit.
            let base = name.rsplit('.').next().unwrap_or(name).trim_matches('"');
            let mut stat = format!("{base}_{}_stats", columns.join("_"));
            while stat.len() > 63 {
                stat.pop();
            }
            let stat = spi::quote_identifier(&stat);
            out.push(StatisticsAdvice {
                table: name.clone(),
                sql: format!("CREATE STATISTICS {stat}{kinds} ON {cols} FROM {name}; ANALYZE {name}"),
                columns,
                kinds,
                rows_now: now,
                rows_with: with,
            });
            break;
        }
    }
    out
}

/// The workload the learner has seen: every query class with a replayable text, weighted by its executions.
pub(crate) fn learned_workload() -> Vec<WorkloadQuery> {
    let classes = crate::learning_sql::saved_classes()
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("reading dag_query_classes: {e}")));
    // SAFETY: reads this backend's database OID.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    classes
        .into_iter()
        .filter(|k| k.db_id == db)
        .filter_map(|k| {
            let text = k.text.clone()?;
            let executions = (k.native.n + k.steered.n) as f64;
            (executions > 0.0).then_some(WorkloadQuery { text, frequency: executions, id: k.query_id as i64 })
        })
        .collect()
}

/// Indexes worth building for a workload, chosen by what-if cost under the storage budget: each row is one
/// index, in the order picked, with the workload's cost before and after it (planner units × executions), its
/// estimated size, and how many of the workload's queries could use it. `queries` defaults to the query classes
/// the learner has seen (weighted by executions, with each table's write cost counted); given explicitly, each
/// runs once and writes are not counted. Needs the `hypopg` extension in this database.
#[pg_extern]
fn dag_index_advice(
    queries: default!(Option<Vec<String>>, "NULL"),
    budget_mb: default!(Option<f64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(rank, i32),
        name!(table_name, String),
        name!(columns, Vec<String>),
        name!(implementation_sql, String),
        name!(size_bytes, i64),
        name!(cost_before, f64),
        name!(cost_after, f64),
        name!(write_cost, f64),
        name!(improvement, f64),
        name!(queries_helped, i32),
        name!(correlated, bool),
    ),
> {
    if crate::gucs::ADVISOR_MODE.get() == crate::gucs::AdvisorMode::off {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the index advisor is off (ruvector.advisor_mode)",
        );
    }
    let budget_mb = budget_mb.unwrap_or_else(|| f64::from(crate::gucs::ADVISOR_BUDGET_MB.get()));
    if !budget_mb.is_finite() || budget_mb < 0.0 {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("budget_mb {budget_mb} must be >= 0"));
    }
    let budget_bytes = (budget_mb * 1024.0 * 1024.0) as u64;
    let (workload, count_writes) = match queries {
        Some(q) => (q.into_iter().map(|text| WorkloadQuery { text, frequency: 1.0, id: 0 }).collect(), false),
        None => (learned_workload(), true),
    };
    let writes = if count_writes { Writes::Cumulative } else { Writes::Ignore };
    let advice = advise(&workload, budget_bytes, writes, count_writes)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, e));
    let rows: Vec<_> = advice
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let improvement = if a.base_cost > 0.0 { (a.cost_before - a.cost_after) / a.base_cost } else { 0.0 };
            (
                i as i32 + 1,
                a.table,
                a.columns,
                a.sql,
                a.size_bytes.min(i64::MAX as u64) as i64,
                a.cost_before,
                a.cost_after,
                a.write_cost,
                improvement,
                a.queries as i32,
                a.correlated,
            )
        })
        .collect();
    TableIterator::new(rows)
}

extension_sql!(
    r#"
-- What the advisor did in auto mode: every index and extended-statistics object it created, how it was validated,
-- kept or reverted.
CREATE TABLE dag_advisor_log (
    action_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL DEFAULT 'index' CHECK (kind IN ('index', 'statistics')),
    table_name text NOT NULL,
    columns text[] NOT NULL,
    index_name text,
    implementation_sql text NOT NULL,
    query_ids bigint[] NOT NULL,
    state text NOT NULL CHECK (state IN ('building', 'validating', 'kept', 'reverted', 'failed')),
    size_bytes bigint,
    expected_cost_before float8,
    expected_cost_after float8,
    created_at timestamptz NOT NULL DEFAULT now(),
    built_at timestamptz,
    decided_at timestamptz,
    executions_before int,
    executions_after int,
    before_ms float8,
    after_ms float8,
    index_scans bigint,
    p_value float8,
    reason text,
    -- Statistics: the scan's row estimate before, with the statistics (at advice, then at the decision), and the
    -- rows the captured executions returned.
    estimated_rows_before float8,
    estimated_rows_after float8,
    actual_rows float8
);
-- Created, validated, kept or reverted, with the figures each decision rested on (geometric-mean latencies of the
-- queries the index or statistics were made for, before and after; for statistics, the row estimates).
CREATE VIEW dag_advisor_actions AS
SELECT action_id, state, table_name, columns, index_name, implementation_sql, created_at, built_at, decided_at,
       executions_before, executions_after, before_ms, after_ms,
       CASE WHEN after_ms > 0 THEN before_ms / after_ms END AS speedup, index_scans, p_value, size_bytes,
       expected_cost_before, expected_cost_after, query_ids, reason,
       kind, estimated_rows_before, estimated_rows_after, actual_rows
FROM dag_advisor_log;
REVOKE ALL ON dag_advisor_log, dag_advisor_actions FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('dag_advisor_log', '');
"#,
    name = "advisor_tables",
    requires = ["learning_tables"]
);

extension_sql!(
    r#"
-- Workload advice plans every role's query classes: for the DBA (or whom the DBA grants it).
REVOKE EXECUTE ON FUNCTION dag_index_advice(text[], double precision) FROM PUBLIC;
"#,
    name = "advisor_privileges",
    requires = [dag_index_advice]
);
