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
