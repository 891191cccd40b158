//! Planner and executor hooks: capture every plan as a DAG and every execution as a trajectory record.
//!
//! - `planner_hook` times planning, converts the `PlannedStmt` to a [`dag::QueryDag`] and notes it for the
//!   executor, keyed by the statement's address.
//! - `ExecutorStart` makes sure total time is measured (allocating `totaltime` as pg_stat_statements does) and,
//!   for the fraction `ruvector.dag_actuals_sample_rate` of queries, asks for per-node row counts.
//! - `ExecutorEnd` pushes one record into the shared ring: query id (as `pg_stat_statements` and
//!   `EXPLAIN VERBOSE` show it; never changed), plan fingerprint, planning and execution time, rows, and the
//!   encoded plan — with per-node actuals when sampled.
//!
//! Every hook calls the previous one (through `pg_guard_ffi_boundary`) or the standard function; a Rust panic
//! inside becomes an ERROR, never a crashed backend. Statements planned by this extension itself (analysis
//! functions) are not captured.

use crate::ring::{self, Record, Source};
use dag::QueryDag;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Instant;

static mut PREV_PLANNER: pg_sys::planner_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;
static mut INSTALLED: bool = false;

/// What the planner hook learned about a statement, waiting for its execution.
struct PlanNote {
    dag: QueryDag,
    plan_hash: u64,
    planning_ms: f64,
}

/// Per-execution state between ExecutorStart and ExecutorEnd.
struct Tracked {
    sampled: bool,
}

thread_local! {
    /// Plans noted by the planner hook, by `PlannedStmt` address. Bounded: cleared when it grows past
    /// `MAX_NOTES` (statements planned but never executed, such as prepared ones).
    static NOTES: RefCell<HashMap<usize, PlanNote>> = RefCell::new(HashMap::new());
    /// Executions being tracked, by `QueryDesc` address.
    static TRACKED: RefCell<HashMap<usize, Tracked>> = RefCell::new(HashMap::new());
    /// Plan fingerprints whose encoded plan this backend already stored in the ring.
    static STORED_PLANS: RefCell<std::collections::HashSet<u64>> = RefCell::new(Default::default());
    /// Set while this extension plans or runs statements of its own.
    static SUPPRESS: Cell<u32> = const { Cell::new(0) };
    /// Deterministic per-backend sampler state (xorshift), seeded from the PID.
    static SAMPLER: Cell<u64> = const { Cell::new(0) };
}

const MAX_NOTES: usize = 64;
const MAX_STORED_PLANS: usize = 4096;

/// Installs the hooks (while preloading).
pub(crate) fn init() {
    // SAFETY: _PG_init runs single-threaded; each previous hook is saved and chained.
    unsafe {
        PREV_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(planner);
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_EXECUTOR_END = pg_sys::ExecutorEnd_hook;
        pg_sys::ExecutorEnd_hook = Some(executor_end);
        // Query ids as pg_stat_statements shows them, with compute_query_id = auto.
        pg_sys::EnableQueryId();
        INSTALLED = true;
    }
}

/// True when the hooks are installed in this process.
pub(crate) fn installed() -> bool {
    // SAFETY: written once in _PG_init before any backend runs queries.
    unsafe { INSTALLED }
}

/// Runs `f` with capture suppressed (for statements the extension plans or runs itself).
pub(crate) fn suppressed<R>(f: impl FnOnce() -> R) -> R {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            SUPPRESS.with(|s| s.set(s.get() - 1));
        }
    }
    SUPPRESS.with(|s| s.set(s.get() + 1));
    let _guard = Guard;
    f()
}

fn capturing() -> bool {
    crate::gucs::ENABLED.get() && SUPPRESS.with(|s| s.get() == 0) && ring::available()
}

fn sample(rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    SAMPLER.with(|s| {
        let mut x = s.get();
        if x == 0 {
            // SAFETY: MyProcPid is set for every backend.
            x = 0x9E37_79B9_7F4A_7C15 ^ u64::from(unsafe { pg_sys::MyProcPid }.unsigned_abs());
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < rate
    })
}

/// Structural fingerprint of a plan: operator kinds, relations, indexes and edges (not estimates).
pub(crate) fn plan_hash(dag: &QueryDag) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for n in dag.nodes() {
        n.op.kind().hash(&mut h);
        n.op.table().hash(&mut h);
        n.op.index().hash(&mut h);
    }
    for e in dag.edges() {
        e.hash(&mut h);
    }
    h.finish()
}

#[pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: std::ffi::c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    let start = Instant::now();
    // SAFETY: we pass PostgreSQL's own arguments through; the previous hook is a C function pointer called
    // inside the FFI guard.
    let stmt = unsafe {
        match PREV_PLANNER {
            Some(prev) => pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                prev(parse, query_string, cursor_options, bound_params)
            }),
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    };
    if capturing() && !stmt.is_null() {
        let planning_ms = start.elapsed().as_secs_f64() * 1000.0;
        // SAFETY: `stmt` is the valid PlannedStmt just returned by the planner.
        if let Ok(dag) = unsafe { crate::capture::dag_from_planned_stmt(stmt) } {
            let plan_hash = plan_hash(&dag);
            NOTES.with(|notes| {
                let mut notes = notes.borrow_mut();
                if notes.len() >= MAX_NOTES {
                    notes.clear();
                }
                notes.insert(stmt as usize, PlanNote { dag, plan_hash, planning_ms });
            });
        }
    }
    stmt
}

#[pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    let explain_only = eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0;
    let track = capturing() && !explain_only;
    let sampled = track && sample(crate::gucs::ACTUALS_SAMPLE_RATE.get());
    // SAFETY: `query_desc` is PostgreSQL's; we only add an instrumentation flag before the standard start.
    unsafe {
        if sampled {
            (*query_desc).instrument_options |= pg_sys::InstrumentOption::INSTRUMENT_ROWS as i32;
        }
        match PREV_EXECUTOR_START {
            Some(prev) => pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| prev(query_desc, eflags)),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
        if track {
            if (*query_desc).totaltime.is_null() {
                // As pg_stat_statements: allocate in the query's context so it lives as long as the query.
                let old = pg_sys::MemoryContextSwitchTo((*(*query_desc).estate).es_query_cxt);
                (*query_desc).totaltime = pg_sys::InstrAlloc(1, pg_sys::InstrumentOption::INSTRUMENT_ALL as i32, false);
                pg_sys::MemoryContextSwitchTo(old);
            }
            TRACKED.with(|t| {
                let mut t = t.borrow_mut();
                if t.len() >= MAX_NOTES {
                    t.clear();
                }
                t.insert(query_desc as usize, Tracked { sampled });
            });
        }
    }
}

#[pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn executor_end(query_desc: *mut pg_sys::QueryDesc) {
    let tracked = TRACKED.with(|t| t.borrow_mut().remove(&(query_desc as usize)));
    if let Some(tracked) = tracked {
        // SAFETY: the QueryDesc is still valid before the standard ExecutorEnd frees the executor state.
        unsafe { record_execution(query_desc, &tracked) };
    }
    // SAFETY: chaining as in executor_start.
    unsafe {
        match PREV_EXECUTOR_END {
            Some(prev) => pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| prev(query_desc)),
            None => pg_sys::standard_ExecutorEnd(query_desc),
        }
    }
}

/// Builds and pushes the trajectory record of a finished execution.
unsafe fn record_execution(query_desc: *mut pg_sys::QueryDesc, tracked: &Tracked) {
    // SAFETY: for the whole function, `query_desc`, its plannedstmt, estate and totaltime are valid until the standard
    // ExecutorEnd runs, which happens after this.
    unsafe {
        let qd = &*query_desc;
        if qd.totaltime.is_null() || qd.plannedstmt.is_null() {
            return;
        }
        pg_sys::InstrEndLoop(qd.totaltime);
        let execution_ms = (*qd.totaltime).total * 1000.0;
        let rows = if qd.estate.is_null() { 0 } else { (*qd.estate).es_processed };
        let stmt = qd.plannedstmt;

        let note = NOTES.with(|n| n.borrow_mut().remove(&(stmt as usize)));
        let (mut dag, plan_hash, planning_ms) = match note {
            Some(n) => (n.dag, n.plan_hash, n.planning_ms),
            // A cached plan: the planner hook did not see it this time.
            None => match crate::capture::dag_from_planned_stmt(stmt) {
                Ok(dag) => {
                    let h = plan_hash(&dag);
                    (dag, h, f64::NAN)
                }
                Err(_) => return,
            },
        };
        let mut has_actuals = false;
        if tracked.sampled {
            let json = suppressed(|| crate::explain::explain_json(query_desc, true));
            let options = crate::capture::index_ams(stmt);
            if let Ok(with_actuals) = crate::explain::dag_from_explain_with(&json, &options) {
                // EXPLAIN numbers nodes as the capture does; keep the actuals only when the shapes agree.
                if with_actuals.node_count() == dag.node_count() {
                    dag = with_actuals;
                    has_actuals = true;
                }
            }
        }

        let mut record = Record::empty();
        record.query_id = (*stmt).queryId;
        record.plan_hash = plan_hash;
        record.recorded_at = pg_sys::GetCurrentTimestamp();
        record.execution_ms = execution_ms;
        record.planning_ms = planning_ms;
        record.rows = rows;
        record.user_id = pg_sys::GetUserId().to_u32();
        record.db_id = pg_sys::MyDatabaseId.to_u32();
        record.node_count = dag.node_count() as u32;
        record.mechanism = crate::gucs::ATTENTION.get() as u8;
        record.source = Source::Hook as u8;
        record.has_actuals = has_actuals;
        // Store the plan the first time this backend sees its shape, and whenever it carries actuals.
        let first_time = STORED_PLANS.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() >= MAX_STORED_PLANS {
                s.clear();
            }
            s.insert(plan_hash)
        });
        let mut too_large = false;
        if first_time || has_actuals {
            too_large = !record.set_plan(&dag.to_bytes());
        }
        ring::push(record, too_large);
    }
}
