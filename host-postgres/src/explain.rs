//! Plans through PostgreSQL's own `EXPLAIN` printer, imported with the framework's importer.
//!
//! Used where conditions, keys and filters matter (analysis functions) and for sampled per-node actuals: the
//! printer deparses expressions exactly as `EXPLAIN (FORMAT JSON)` shows them, so what the extension analyses is
//! what a user sees in `EXPLAIN`.

use dag::QueryDag;
use dag::dag::{ExplainOptions, import_explain};
use pgrx::pg_sys;
use std::ffi::CStr;

/// `EXPLAIN (FORMAT JSON[, ANALYZE, TIMING OFF])` of a started query, as text.
///
/// # Safety
/// `query_desc` must have been started (`ExecutorStart`) and not yet ended. With `analyze`, it must have been
/// started with instrumentation.
pub(crate) unsafe fn explain_json(query_desc: *mut pg_sys::QueryDesc, analyze: bool) -> String {
    // SAFETY: the ExplainState is palloc'd in the current context and used only here; the QueryDesc is valid.
    unsafe {
        let es = pg_sys::NewExplainState();
        (*es).analyze = analyze;
        (*es).costs = true;
        (*es).timing = false;
        (*es).summary = false;
        (*es).verbose = false;
        (*es).format = pg_sys::ExplainFormat::EXPLAIN_FORMAT_JSON;
        pg_sys::ExplainBeginOutput(es);
        pg_sys::ExplainPrintPlan(es, query_desc);
        pg_sys::ExplainEndOutput(es);
        let text = CStr::from_ptr((*(*es).str_).data).to_string_lossy().into_owned();
        // Without EXPLAIN's enclosing "Query" group the printer emits `[ "Plan": {…} ]`; like auto_explain, turn
        // the brackets into braces to get the object `{ "Plan": {…} }`.
        match (text.find('['), text.rfind(']')) {
            (Some(open), Some(close)) if open < close => {
                format!("{}{{{}}}{}", &text[..open], &text[open + 1..close], &text[close + 1..])
            }
            _ => text,
        }
    }
}

/// Imports EXPLAIN JSON text; index access methods come from the catalog via the plan's index scans.
pub(crate) fn dag_from_explain_with(json: &str, options: &ExplainOptions) -> dag::Result<QueryDag> {
    import_explain(json, options).map(|p| p.dag)
}

/// Plans `query` (one `SELECT`, not executed) and returns its DAG as `EXPLAIN (FORMAT JSON)` describes it.
///
/// Privileges are checked exactly as `EXPLAIN` checks them: the executor is started in explain-only mode, which
/// verifies the caller's rights on every relation, so an unreadable table fails with SQLSTATE 42501 naming it
/// before anything about it is returned.
///
/// Errors (raised as PostgreSQL ERRORs): syntax errors as PostgreSQL reports them; more or fewer than one
/// statement; anything but a read-only `SELECT` (including data-modifying CTEs).
pub(crate) fn plan_query(query: &str) -> QueryDag {
    use crate::sql::fail;
    use pgrx::prelude::PgSqlErrorCode as E;
    // SAFETY: `with_planned` passes a started, explain-only QueryDesc and its PlannedStmt.
    with_planned(query, |qd, stmt| unsafe {
        let json = explain_json(qd, false);
        let options = crate::capture::index_ams(stmt);
        dag_from_explain_with(&json, &options)
            .unwrap_or_else(|e| fail(E::ERRCODE_INTERNAL_ERROR, format!("importing the plan failed: {e}")))
    })
}

/// Plans `query` as [`plan_query`] does and returns its DAG as the executor hooks capture it (no conditions or
/// filters): the representation the learning loop learned from, so predictions for it are comparable.
pub(crate) fn plan_query_captured(query: &str) -> QueryDag {
    use crate::sql::fail;
    use pgrx::prelude::PgSqlErrorCode as E;
    // SAFETY: `with_planned` passes a valid PlannedStmt inside the current transaction.
    with_planned(query, |_, stmt| unsafe {
        crate::capture::dag_from_planned_stmt(stmt)
            .unwrap_or_else(|e| fail(E::ERRCODE_INTERNAL_ERROR, format!("converting the plan failed: {e}")))
    })
}

/// Parses, checks, plans `query` and starts it in explain-only mode (which checks privileges), then calls `f`
/// with the query descriptor and plan before shutting the executor down.
pub(crate) fn with_planned<T>(query: &str, f: impl FnOnce(*mut pg_sys::QueryDesc, *mut pg_sys::PlannedStmt) -> T) -> T {
    use crate::sql::fail;
    use pgrx::PgList;
    use pgrx::prelude::PgSqlErrorCode as E;

    let text = std::ffi::CString::new(query)
        .unwrap_or_else(|_| fail(E::ERRCODE_INVALID_PARAMETER_VALUE, "query text contains a NUL byte"));
    crate::hooks::suppressed(|| {
        // SAFETY: parse/analyze/plan/explain are called as PostgreSQL's own EXPLAIN calls them, inside the
        // current transaction and memory context; errors are raised as ERRORs and unwind through pg_guard.
        unsafe {
            let raw = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::pg_parse_query(text.as_ptr()));
            if raw.len() != 1 {
                fail(
                    E::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("expected exactly one SQL statement, found {}", raw.len()),
                );
            }
            let raw = raw.get_ptr(0).expect("one statement");
            if (*(*raw).stmt).type_ != pg_sys::NodeTag::T_SelectStmt {
                fail(
                    E::ERRCODE_WRONG_OBJECT_TYPE,
                    "only a SELECT statement can be analysed (the query is planned, not run)",
                );
            }
            let queries = PgList::<pg_sys::Query>::from_pg(pg_sys::pg_analyze_and_rewrite_fixedparams(
                raw,
                text.as_ptr(),
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
            ));
            let Some(q) = queries.get_ptr(0).filter(|_| queries.len() == 1) else {
                fail(
                    E::ERRCODE_WRONG_OBJECT_TYPE,
                    "the statement rewrites into several queries; analyse them one by one",
                )
            };
            if (*q).commandType != pg_sys::CmdType::CMD_SELECT || (*q).hasModifyingCTE || !(*q).rowMarks.is_null() {
                fail(
                    E::ERRCODE_WRONG_OBJECT_TYPE,
                    "only a read-only SELECT can be analysed (no data-modifying CTE, no FOR UPDATE)",
                );
            }
            let stmt =
                pg_sys::pg_plan_query(q, text.as_ptr(), pg_sys::CURSOR_OPT_PARALLEL_OK as i32, std::ptr::null_mut());
            let pushed = !pg_sys::ActiveSnapshotSet();
            if pushed {
                pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            }
            let qd = pg_sys::CreateQueryDesc(
                stmt,
                text.as_ptr(),
                pg_sys::GetActiveSnapshot(),
                std::ptr::null_mut(),
                pg_sys::None_Receiver,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            );
            pg_sys::ExecutorStart(qd, pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32);
            let out = f(qd, stmt);
            pg_sys::ExecutorEnd(qd);
            pg_sys::FreeQueryDesc(qd);
            if pushed {
                pg_sys::PopActiveSnapshot();
            }
            out
        }
    })
}
