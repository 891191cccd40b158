//! Planner and executor hooks: capture every plan as a DAG and every execution as a trajectory record.
//!
//! - `planner_hook` times planning and notes it for the executor, keyed by the statement's address.
//! - `ExecutorStart` makes sure total time is measured (allocating a timer-only `totaltime`, as
//!   pg_stat_statements does) and, for the fraction `ruvector.dag_actuals_sample_rate` of queries, asks for
//!   per-node row counts.
//! - `ExecutorEnd` fingerprints the plan (node tags, relation and index OIDs, shape; no catalog access, no
//!   allocation), converts the `PlannedStmt` to a [`dag::QueryDag`] the first time this backend meets that
//!   fingerprint, and pushes one record into the shared ring: query id (as `EXPLAIN VERBOSE` shows it:
//!   PostgreSQL's, or [`crate::query_id`]'s where PostgreSQL computes none), plan hash, planning and execution
//!   time, rows, and — first time or when sampled — the encoded plan, with per-node actuals when sampled.
//!
//! An execution of a class the learner steers also records its *variant*: which parameter values it ran with
//! ([`variant_key`]); the first time a backend meets a variant it stores the variant's text, so the learner can
//! check that the arm holds for those values too. A class whose arm lost on some variant is planned under the arm
//! only for the variants checked to win (`steering::variant_steered`).
//!
//! Building the DAG once per shape rather than per query is what keeps capture cheap on short queries (see
//! `benches/pg/pgbench_overhead.sh`). Every hook calls the previous one (through `pg_guard_ffi_boundary`) or the
//! standard function; a Rust panic inside becomes an ERROR, never a crashed backend. Statements planned by this
//! extension itself (analysis functions) are not captured.

use crate::ring::{self, Source};
use dag::QueryDag;
use pgrx::pg_sys;
use pgrx::prelude::*;
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::time::Instant;

static mut PREV_PLANNER: pg_sys::planner_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;
static mut PREV_EXPLAIN: pg_sys::ExplainOneQuery_hook_type = None;
static mut INSTALLED: bool = false;

/// What the hooks remember about a plan shape (by fingerprint), so the DAG is built once per shape and
/// backend, not per execution.
#[derive(Clone, Copy)]
struct Shape {
    plan_hash: u64,
    node_count: u32,
}

/// What the planner hook notes for the executor: planning time, the arm planned under, whether the class is steered.
type Note = (f64, u8, bool);

/// Per-backend capture state.
struct State {
    /// Planning times noted by the planner hook, by `PlannedStmt` address, waiting for the execution. Tiny:
    /// usually one entry; bounded by `MAX_NOTES` (statements planned but never executed are dropped).
    notes: Vec<(usize, Note)>,
    /// Executions being tracked, in the order they started (the outermost first).
    tracked: Vec<Tracked>,
    /// Plan shapes this backend has met, by fingerprint; the first meeting stores the encoded plan in the ring.
    shapes: FxHashMap<u64, Shape>,
    /// Variants of steered classes this backend has met (`steering::variant_tag`); the first meeting stores the text.
    variants: rustc_hash::FxHashSet<u64>,
    /// Deterministic sampler state (xorshift), seeded from the PID.
    sampler: u64,
}

/// A value of the backend process, for the hooks and the functions they call. A PostgreSQL backend runs its
/// queries, and so the hooks, in its one thread (pgrx checks the same on every call into PostgreSQL; the
/// extension's own threads, the network's, never touch these). A process-wide static rather than a
/// `thread_local!`: in a shared library each access of a thread-local goes through the dynamic linker
/// (`__tls_get_addr`), which cost about 140 instructions per pgbench transaction.
struct PerBackend<T>(T);

// SAFETY: only the backend's own thread accesses it (see above).
unsafe impl<T> Sync for PerBackend<T> {}

impl<T> PerBackend<T> {
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.0)
    }
}

static STATE: PerBackend<RefCell<State>> = PerBackend(RefCell::new(State {
    notes: Vec::new(),
    tracked: Vec::new(),
    shapes: FxHashMap::with_hasher(rustc_hash::FxBuildHasher),
    variants: rustc_hash::FxHashSet::with_hasher(rustc_hash::FxBuildHasher),
    sampler: 0,
}));
/// Set while this extension plans or runs statements of its own.
static SUPPRESS: PerBackend<Cell<u32>> = PerBackend(Cell::new(0));
/// True while `State::tracked` may hold executions: the transaction callback, called several times per
/// transaction, does nothing else when it is false.
static TRACKING: PerBackend<Cell<bool>> = PerBackend(Cell::new(false));

/// An execution between `ExecutorStart` and `ExecutorEnd`: what its record needs, taken at the start so that an
/// execution that fails (a cancel, a statement timeout, an error) is still recorded at the abort, when its
/// `QueryDesc` may be gone.
struct Tracked {
    /// The `QueryDesc`'s address.
    query_desc: usize,
    /// Per-node actuals were requested.
    sampled: bool,
    query_id: u64,
    shape: Shape,
    /// The encoded plan, when this backend met its shape for the first time with this execution.
    plan: Option<Vec<u8>>,
    /// Planning time (NaN for a cached plan) and the arm it was planned under.
    planning_ms: f64,
    arm: u8,
    /// The variant, for an execution of a steered class (else 0).
    variant: u64,
    /// The (sub)transaction nesting level it started at.
    nest_level: i32,
}

/// PostgreSQL accessors that cannot raise an error, declared without pgrx's FFI guard (a `sigsetjmp` per call,
/// about 70 instructions, several times the accessor's own) for the per-execution path.
mod unguarded {
    use pgrx::pg_sys::{Oid, TimestampTz};
    unsafe extern "C" {
        pub(super) fn GetCurrentTransactionNestLevel() -> std::ffi::c_int;
        pub(super) fn GetCurrentStatementStartTimestamp() -> TimestampTz;
        pub(super) fn GetUserId() -> Oid;
    }
}

const MAX_NOTES: usize = 64;
const MAX_SHAPES: usize = 4096;

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
        PREV_EXPLAIN = pg_sys::ExplainOneQuery_hook;
        pg_sys::ExplainOneQuery_hook = Some(explain_one_query);
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
        INSTALLED = true;
    }
    // Query ids for the classes where nothing else computes them.
    crate::query_id::init();
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

/// Turns capture off for the rest of this process (the learner worker: its own statements are not workload).
pub(crate) fn disable_in_this_process() {
    SUPPRESS.with(|s| s.set(s.get() + 1));
}

fn capturing() -> bool {
    crate::gucs::hot(&crate::gucs::ENABLED) && SUPPRESS.with(|s| s.get() == 0) && ring::available()
}

/// The arm `query` is planned under — the steered arm of its class for a `SELECT` when capture and steering are on
/// and it is not a statement of our own, unless the class is parameter-sensitive (its arm lost on some variant)
/// and this variant was not checked to run faster under the arm; else 0 (native) — and whether its class is steered
/// (steering on or not: the execution then records its variant).
///
/// # Safety
/// `query` is the valid `Query` being planned; `source` and `params` are its text and bound parameters.
unsafe fn planned_arm(
    query: *const pg_sys::Query,
    source: *const std::ffi::c_char,
    params: pg_sys::ParamListInfo,
) -> (usize, bool) {
    // SAFETY: the caller guarantees all three.
    unsafe {
        let q = &*query;
        if q.commandType != pg_sys::CmdType::CMD_SELECT || !capturing() {
            return (0, false);
        }
        let class_arm = crate::steering::lookup(q.queryId);
        let arm = if class_arm > 0
            && crate::gucs::hot(&crate::gucs::STEERING)
            && (!crate::steering::sensitive(q.queryId)
                || crate::steering::variant_steered(
                    q.queryId,
                    variant_key(source, q.stmt_location, q.stmt_len, params),
                )) {
            class_arm
        } else {
            0
        };
        (arm, class_arm > 0)
    }
}

/// The bytes of one statement in a source text of `len_all` bytes that may hold several: from `location`, `len`
/// bytes (0: to the end), as `Query` and `PlannedStmt` give them; clamped to the text.
fn statement_range(len_all: usize, location: i32, len: i32) -> std::ops::Range<usize> {
    let start = usize::try_from(location).unwrap_or(0).min(len_all);
    let len = usize::try_from(len).unwrap_or(0);
    start..if len == 0 { len_all } else { (start + len).min(len_all) }
}

/// Which parameter values an execution of a class runs with: a hash of its statement's text as sent (a literal
/// query's constants are in it; without an `EXPLAIN` or `PREPARE` around it) and of its bound parameters' types
/// and values (a prepared statement's, the extended protocol's). The planner and the executor compute it alike.
/// 0 when the values cannot be told (parameters fetched by a hook, as PL/pgSQL's).
///
/// # Safety
/// `source` is null or a C string; `params` is null or a valid parameter list.
pub(crate) unsafe fn variant_key(
    source: *const std::ffi::c_char,
    location: i32,
    len: i32,
    params: pg_sys::ParamListInfo,
) -> u64 {
    // SAFETY: the caller guarantees both pointers; parameter values are read as their types' lengths say.
    unsafe {
        if source.is_null() {
            return 0;
        }
        let all = std::ffi::CStr::from_ptr(source).to_bytes();
        let statement = &all[statement_range(all.len(), location, len)];
        let mut h = std::collections::hash_map::DefaultHasher::new();
        // As the statement is replayed: an `EXPLAIN ANALYZE` of it, or a `PREPARE` of it, is the same variant.
        // (Lexed only when it starts with either word: a steered class's every execution computes its variant.)
        match std::str::from_utf8(statement).map(str::trim) {
            Ok(text) => {
                let starts = |w: &str| text.get(..w.len()).is_some_and(|t| t.eq_ignore_ascii_case(w));
                let text = if starts("explain") || starts("prepare") {
                    without_prepare(without_explain(text).unwrap_or(text))
                } else {
                    text
                };
                text.hash(&mut h);
            }
            Err(_) => statement.hash(&mut h),
        }
        if !params.is_null() && (*params).numParams > 0 {
            if (*params).paramFetch.is_some() {
                return 0;
            }
            let n = usize::try_from((*params).numParams).unwrap_or(0);
            for p in (*params).params.as_slice(n) {
                p.ptype.to_u32().hash(&mut h);
                p.isnull.hash(&mut h);
                if p.isnull || p.ptype == pg_sys::InvalidOid {
                    continue;
                }
                let (mut typlen, mut byval) = (0i16, false);
                pg_sys::get_typlenbyval(p.ptype, &mut typlen, &mut byval);
                if byval {
                    p.value.value().hash(&mut h);
                } else if typlen > 0 {
                    std::slice::from_raw_parts(p.value.cast_mut_ptr::<u8>(), typlen as usize).hash(&mut h);
                } else if typlen == -1 {
                    let v = pg_sys::pg_detoast_datum_packed(p.value.cast_mut_ptr());
                    let bytes = pgrx::varlena::vardata_any(v).cast::<u8>();
                    std::slice::from_raw_parts(bytes, pgrx::varlena::varsize_any_exhdr(v)).hash(&mut h);
                } else {
                    std::ffi::CStr::from_ptr(p.value.cast_mut_ptr()).to_bytes().hash(&mut h);
                }
            }
        }
        h.finish().max(1)
    }
}

fn sample(rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let mut x = s.sampler;
        if x == 0 {
            // SAFETY: MyProcPid is set for every backend.
            x = 0x9E37_79B9_7F4A_7C15 ^ u64::from(unsafe { pg_sys::MyProcPid }.unsigned_abs());
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.sampler = x;
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
    // A class the learner measured a better arm for is planned under that arm's settings (restored right after).
    // SAFETY: `parse` is the Query being planned, valid for the whole call, with its text and parameters.
    let (arm, steered_class) = unsafe { planned_arm(parse, query_string, bound_params) };
    let level = (arm > 0).then(|| crate::steering::apply(arm));
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
    if let Some(level) = level {
        crate::steering::restore(level);
    }
    if capturing() && !stmt.is_null() {
        let planning_ms = start.elapsed().as_secs_f64() * 1000.0;
        STATE.with(|s| {
            let notes = &mut s.borrow_mut().notes;
            if notes.len() >= MAX_NOTES {
                notes.clear();
            }
            notes.push((stmt as usize, (planning_ms, arm as u8, steered_class)));
        });
    }
    stmt
}

/// `EXPLAIN` of a steered query class says so (text format: a `ruvector steering:` line after the plan, naming
/// the settings and why). Planning and printing are PostgreSQL's own (`pg_plan_query`, `ExplainOnePlan`, as
/// `explain.c` does without a hook).
#[pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn explain_one_query(
    query: *mut pg_sys::Query,
    cursor_options: std::ffi::c_int,
    into: *mut pg_sys::IntoClause,
    es: *mut pg_sys::ExplainState,
    query_string: *const std::ffi::c_char,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
) {
    // SAFETY: PostgreSQL's arguments, valid for the call; the previous hook is called inside the FFI guard.
    unsafe {
        let query_id = (*query).queryId;
        let (arm, _) = planned_arm(query, query_string, params);
        match PREV_EXPLAIN {
            Some(prev) => pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                prev(query, cursor_options, into, es, query_string, params, query_env)
            }),
            None => {
                let buffers_before = (*es).buffers.then_some(pg_sys::pgBufferUsage);
                let start = Instant::now();
                let plan = pg_sys::pg_plan_query(query, query_string, cursor_options, params);
                let elapsed = start.elapsed();
                let duration =
                    pg_sys::instr_time { tv_sec: elapsed.as_secs() as _, tv_nsec: elapsed.subsec_nanos() as _ };
                let mut usage = pg_sys::BufferUsage::default();
                if let Some(before) = buffers_before {
                    pg_sys::BufferUsageAccumDiff(&mut usage, &raw const pg_sys::pgBufferUsage, &before);
                }
                let usage_ptr = if buffers_before.is_some() { &raw const usage } else { std::ptr::null() };
                pg_sys::ExplainOnePlan(plan, into, es, query_string, params, query_env, &duration, usage_ptr);
            }
        }
        if arm > 0 && (*es).format == pg_sys::ExplainFormat::EXPLAIN_FORMAT_TEXT {
            let ratio = crate::steering::ratio(query_id);
            let why = if ratio.is_finite() {
                format!("background replays ran it in {:.2} x the native plan's time", ratio)
            } else {
                "set by dag_class_steer".to_owned()
            };
            let text = format!(
                "planned with {} ({why}; class {}, see ruvector.dag_query_class_log)",
                crate::steering::arm_label(arm),
                query_id as i64
            );
            let text = std::ffi::CString::new(text).expect("no NUL");
            pg_sys::ExplainPropertyText(c"ruvector steering".as_ptr(), text.as_ptr(), es);
        }
    }
}

#[pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    let explain_only = eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0;
    let track = capturing() && !explain_only;
    let sampled = track && sample(crate::gucs::hot(&crate::gucs::ACTUALS_SAMPLE_RATE));
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
                // Only the timer: buffer and WAL accounting would cost every query and we do not use them.
                (*query_desc).totaltime =
                    pg_sys::InstrAlloc(1, pg_sys::InstrumentOption::INSTRUMENT_TIMER as i32, false);
                pg_sys::MemoryContextSwitchTo(old);
            }
            if let Some(t) = start_tracking(query_desc, sampled) {
                STATE.with(|s| {
                    let tracked = &mut s.borrow_mut().tracked;
                    if tracked.len() >= MAX_NOTES {
                        tracked.clear();
                    }
                    tracked.push(t);
                });
                TRACKING.with(|t| t.set(true));
            }
        }
    }
}

#[pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn executor_end(query_desc: *mut pg_sys::QueryDesc) {
    let tracked = STATE.with(|s| {
        let tracked = &mut s.borrow_mut().tracked;
        let at = tracked.iter().rposition(|t| t.query_desc == query_desc as usize)?;
        let t = tracked.remove(at);
        if tracked.is_empty() {
            TRACKING.with(|t| t.set(false));
        }
        Some(t)
    });
    if let Some(t) = tracked {
        // SAFETY: the QueryDesc is still valid before the standard ExecutorEnd frees the executor state.
        unsafe { record_execution(query_desc, t) };
    }
    // SAFETY: chaining as in executor_start.
    unsafe {
        match PREV_EXECUTOR_END {
            Some(prev) => pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| prev(query_desc)),
            None => pg_sys::standard_ExecutorEnd(query_desc),
        }
    }
}

/// At a top-level abort, the executions still tracked never reach `ExecutorEnd`: they failed (an error, a cancel,
/// a statement timeout). They are counted for the learner worker's error-rate signal, and the outermost is recorded
/// as a failed execution with the statement's time until the abort — a lower bound of its latency, and the only
/// trace a query that always hits `statement_timeout` leaves (it is the one most worth an index). The nested ones
/// are not recorded: their own share of that time is unknown. (Executions that failed inside a subtransaction are
/// forgotten when it rolls back, [`on_subxact`]; whatever is still tracked at a commit is forgotten too.)
///
/// Not guarded itself: it reads one thread-local flag (which cannot panic or raise an error) and returns, which is
/// all it does in almost every transaction; the work is in the guarded [`on_xact_tracked`].
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, arg: *mut std::ffi::c_void) {
    if TRACKING.with(Cell::get) {
        // SAFETY: PostgreSQL's arguments, passed on.
        unsafe { on_xact_tracked(event, arg) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_tracked(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    let failed = event == pg_sys::XactEvent::XACT_EVENT_ABORT;
    if !failed && event != pg_sys::XactEvent::XACT_EVENT_COMMIT && event != pg_sys::XactEvent::XACT_EVENT_PREPARE {
        return;
    }
    let tracked = STATE.with(|s| std::mem::take(&mut s.borrow_mut().tracked));
    TRACKING.with(|t| t.set(false));
    if failed {
        ring::count_aborted(tracked.len() as u64);
        if let Some(outermost) = tracked.into_iter().next() {
            // SAFETY: PostgreSQL's clock and the failed statement's start timestamp.
            let (now, started) =
                unsafe { (pg_sys::GetCurrentTimestamp(), pg_sys::GetCurrentStatementStartTimestamp()) };
            push_record(&outermost, (now - started).max(0) as f64 / 1000.0, 0, None, Source::Failed);
        }
    }
}

/// A rolled-back subtransaction (a savepoint, a PL/pgSQL exception block): the executions it started failed and are
/// forgotten, so that at a later top-level abort the first execution tracked is the failed statement's own.
/// Unguarded like [`on_xact`].
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB && TRACKING.with(Cell::get) {
        // SAFETY: called by PostgreSQL inside the aborting subtransaction.
        unsafe { forget_subtransaction(unguarded::GetCurrentTransactionNestLevel()) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_subtransaction(level: i32) {
    let n = STATE.with(|s| {
        let tracked = &mut s.borrow_mut().tracked;
        let before = tracked.len();
        tracked.retain(|t| t.nest_level < level);
        if tracked.is_empty() {
            TRACKING.with(|t| t.set(false));
        }
        before - tracked.len()
    });
    ring::count_aborted(n as u64);
}

/// What an execution's record needs, taken when it starts: the plan's fingerprint, its shape (the DAG is built and
/// the statement's text kept for background replays the first time this backend meets the shape), and the
/// planning note. `None` when the plan cannot be converted.
///
/// # Safety
/// `query_desc` must be a valid, started `QueryDesc`.
unsafe fn start_tracking(query_desc: *mut pg_sys::QueryDesc, sampled: bool) -> Option<Tracked> {
    // SAFETY: the caller guarantees `query_desc`; its plannedstmt lives at least as long.
    unsafe {
        let qd = &*query_desc;
        let stmt = qd.plannedstmt;
        if stmt.is_null() {
            return None;
        }
        // The DAG is built once per plan shape; afterwards only the cheap fingerprint is computed.
        let fingerprint = crate::capture::plan_fingerprint(stmt);
        let (planning, known) = STATE.with(|s| {
            let mut s = s.borrow_mut();
            (take(&mut s.notes, stmt as usize), s.shapes.get(&fingerprint).copied())
        });
        // A cached plan was not planned this time: its planning time is unknown, and it was made under the arm
        // the class is steered with now (plan caches are invalidated whenever an arm changes).
        let query_id = (*stmt).queryId;
        let (planning_ms, arm, steered_class) = match planning {
            Some(note) => note,
            None => {
                let arm = crate::steering::lookup(query_id);
                (f64::NAN, arm as u8, arm != 0)
            }
        };
        // An execution of a steered class records its variant; a backend meeting a variant for the first time
        // stores its text, for the learner to check the arm on.
        let variant = if steered_class || known.is_none() {
            variant_key(qd.sourceText, (*stmt).stmt_location, (*stmt).stmt_len, qd.params)
        } else {
            0
        };
        let new_variant = variant != 0
            && STATE.with(|s| {
                let variants = &mut s.borrow_mut().variants;
                if variants.len() >= MAX_SHAPES {
                    variants.clear();
                }
                variants.insert(crate::steering::variant_tag(query_id, variant))
            });
        let store_text = || {
            if let Some(text) = replayable_text(qd) {
                crate::steering::store_text(
                    query_id,
                    variant,
                    pg_sys::MyDatabaseId.to_u32(),
                    pg_sys::GetUserId().to_u32(),
                    &text,
                );
            }
        };
        let (shape, plan) = match known {
            Some(shape) => {
                if steered_class && new_variant {
                    store_text();
                }
                (shape, None)
            }
            None => {
                let built = crate::capture::dag_from_planned_stmt(stmt).ok()?;
                let shape = Shape { plan_hash: plan_hash(&built), node_count: built.node_count() as u32 };
                STATE.with(|s| {
                    let shapes = &mut s.borrow_mut().shapes;
                    if shapes.len() >= MAX_SHAPES {
                        shapes.clear();
                    }
                    shapes.insert(fingerprint, shape);
                });
                // The learner replays classes in the background: keep the text of a replayable statement.
                store_text();
                (shape, Some(built.to_bytes()))
            }
        };
        Some(Tracked {
            query_desc: query_desc as usize,
            sampled,
            query_id: (*stmt).queryId,
            shape,
            plan,
            planning_ms,
            arm,
            variant: if steered_class { variant } else { 0 },
            nest_level: unguarded::GetCurrentTransactionNestLevel(),
        })
    }
}

/// The text of the statement `qd` runs, when it can be replayed in the background: a read-only `SELECT` (no
/// data-modifying CTE, no `FOR UPDATE`/`SHARE`, no volatile function), cut out of a multi-statement string by its
/// location. A parameterised statement (`PREPARE`/`EXECUTE`, the extended protocol) gets its parameters' values
/// written in as typed literals (`'42'::integer`): replaying it measures the custom plan for the values this
/// execution had. A text longer than a slot is stored with its whitespace compacted (`rewrite_text::compact`) if
/// that fits.
///
/// # Safety
/// `qd` must be a valid, started `QueryDesc`.
unsafe fn replayable_text(qd: &pg_sys::QueryDesc) -> Option<std::borrow::Cow<'_, str>> {
    // SAFETY: the caller guarantees `qd`; plannedstmt and sourceText are PostgreSQL's.
    unsafe {
        let stmt = &*qd.plannedstmt;
        if stmt.commandType != pg_sys::CmdType::CMD_SELECT
            || stmt.hasModifyingCTE
            || !stmt.rowMarks.is_null()
            || !stmt.utilityStmt.is_null()
            || qd.sourceText.is_null()
        {
            return None;
        }
        let all = std::ffi::CStr::from_ptr(qd.sourceText).to_str().ok()?;
        let text = without_prepare(without_explain(
            all.get(statement_range(all.len(), stmt.stmt_location, stmt.stmt_len))?.trim(),
        )?);
        let params = qd.params;
        let text = if params.is_null() || (*params).numParams == 0 {
            std::borrow::Cow::Borrowed(text)
        } else {
            std::borrow::Cow::Owned(with_parameters(text, params)?)
        };
        if text.is_empty() || crate::capture::calls_volatile_functions(qd.plannedstmt) {
            return None;
        }
        if text.len() <= crate::steering::TEXT_BYTES {
            return Some(text);
        }
        // Too long as written: machine-formatted statements often fit once their indentation is gone.
        let compacted = crate::rewrite_text::compact(&text)?;
        (compacted.len() <= crate::steering::TEXT_BYTES).then_some(std::borrow::Cow::Owned(compacted))
    }
}

/// The statement `EXPLAIN [(options)] statement` (or `EXPLAIN ANALYZE VERBOSE statement`) explains, else `text`:
/// a query measured through `EXPLAIN ANALYZE` is the same class as the query itself and is replayed without the
/// wrapper. `None` for `EXPLAIN … EXECUTE`: the prepared statement does not exist on a replay connection.
fn without_explain(text: &str) -> Option<&str> {
    let lexed = crate::rewrite_text::Text::new(text);
    let toks = &lexed.toks;
    let word = |i: usize, w: &str| toks.get(i).is_some_and(|t| text[t.start..t.end].eq_ignore_ascii_case(w));
    if !word(0, "explain") {
        return Some(text);
    }
    let mut i = 1;
    if toks.get(i).is_some_and(|t| t.kind == crate::rewrite_text::Tok::LParen) {
        i = lexed.matching(i)? + 1;
    } else {
        while ["analyze", "analyse", "verbose"].iter().any(|w| word(i, w)) {
            i += 1;
        }
    }
    let inner = text[toks.get(i)?.start..].trim();
    (!word(i, "execute")).then_some(inner)
}

/// The query of `PREPARE name [(types)] AS query` (the source text of an `EXECUTE`d statement), else `text`.
fn without_prepare(text: &str) -> &str {
    let lexed = crate::rewrite_text::Text::new(text);
    let toks = &lexed.toks;
    let word = |i: usize, w: &str| toks.get(i).is_some_and(|t| text[t.start..t.end].eq_ignore_ascii_case(w));
    if !word(0, "prepare") {
        return text;
    }
    // `AS` after the name and the optional parenthesised type list.
    let mut i = 2;
    if toks.get(i).is_some_and(|t| t.kind == crate::rewrite_text::Tok::LParen) {
        let Some(close) = lexed.matching(i) else { return text };
        i = close + 1;
    }
    match toks.get(i + 1) {
        Some(next) if word(i, "as") => text[next.start..].trim(),
        _ => text,
    }
}

/// `text` with each `$n` replaced by parameter n's value as a typed literal; `None` when a value cannot be
/// written (parameters fetched by a hook, as PL/pgSQL's, or an output function that fails: the user's statement
/// is never disturbed).
///
/// # Safety
/// `params` must be the valid parameter list of the statement being executed.
unsafe fn with_parameters(text: &str, params: pg_sys::ParamListInfo) -> Option<String> {
    // SAFETY: the caller guarantees `params`; values are read as their types' output functions read them.
    unsafe {
        if (*params).paramFetch.is_some() {
            return None;
        }
        let n = usize::try_from((*params).numParams).ok()?;
        let list = (*params).params.as_slice(n);
        let values = PgTryBuilder::new(|| {
            list.iter()
                .map(|p| {
                    if p.ptype == pg_sys::InvalidOid {
                        return None;
                    }
                    let ty = std::ffi::CStr::from_ptr(pg_sys::format_type_be(p.ptype)).to_str().ok()?.to_owned();
                    if p.isnull {
                        return Some(format!("NULL::{ty}"));
                    }
                    let (mut output, mut varlena) = (pg_sys::InvalidOid, false);
                    pg_sys::getTypeOutputInfo(p.ptype, &mut output, &mut varlena);
                    let value =
                        std::ffi::CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, p.value)).to_str().ok()?;
                    Some(format!("{}::{ty}", spi::quote_literal(value)))
                })
                .collect::<Option<Vec<String>>>()
        })
        .catch_others(|_| None)
        .execute()?;
        let mut out = String::with_capacity(text.len() + 16 * values.len());
        let mut at = 0;
        for t in crate::rewrite_text::lex(text) {
            let tok = &text[t.start..t.end];
            let Some(i) = tok.strip_prefix('$').and_then(|d| d.parse::<usize>().ok()) else { continue };
            out.push_str(&text[at..t.start]);
            out.push_str(values.get(i.checked_sub(1)?)?);
            at = t.end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }
}

/// Removes and returns the value noted for `key` (newest first: nested statements end before outer ones).
fn take<T: Copy>(notes: &mut Vec<(usize, T)>, key: usize) -> Option<T> {
    let at = notes.iter().rposition(|&(k, _)| k == key)?;
    Some(notes.swap_remove(at).1)
}

/// Builds and pushes the trajectory record of a finished execution.
///
/// # Safety
/// `query_desc` must be the valid `QueryDesc` `t` was taken for, before the standard `ExecutorEnd`.
unsafe fn record_execution(query_desc: *mut pg_sys::QueryDesc, t: Tracked) {
    // SAFETY: for the whole function, `query_desc`, its plannedstmt, estate and totaltime are valid until the
    // standard ExecutorEnd runs, which happens after this.
    unsafe {
        let qd = &*query_desc;
        if qd.totaltime.is_null() || qd.plannedstmt.is_null() {
            return;
        }
        pg_sys::InstrEndLoop(qd.totaltime);
        let execution_ms = (*qd.totaltime).total * 1000.0;
        let rows = if qd.estate.is_null() { 0 } else { (*qd.estate).es_processed };
        let mut actuals = None;
        if t.sampled {
            let json = suppressed(|| crate::explain::explain_json(query_desc, true));
            let options = crate::capture::index_ams(qd.plannedstmt);
            if let Ok(with_actuals) = crate::explain::dag_from_explain_with(&json, &options) {
                // EXPLAIN numbers nodes as the capture does; keep the actuals only when the shapes agree.
                if with_actuals.node_count() as u32 == t.shape.node_count {
                    actuals = Some(with_actuals.to_bytes());
                }
            }
        }
        push_record(&t, execution_ms, rows, actuals, Source::Hook);
    }
}

/// Pushes one execution's record into the shared ring. The plan is stored the first time this backend meets its
/// shape, and whenever it carries actuals (`actuals`, which replace the plan without them).
fn push_record(t: &Tracked, execution_ms: f64, rows: u64, actuals: Option<Vec<u8>>, source: Source) {
    let has_actuals = actuals.is_some();
    let plan_bytes = actuals.as_ref().or(t.plan.as_ref());
    // SAFETY: the statement start timestamp, the current user and database are set in every backend.
    let (recorded_at, user_id, db_id) = unsafe {
        (unguarded::GetCurrentStatementStartTimestamp(), unguarded::GetUserId().to_u32(), pg_sys::MyDatabaseId.to_u32())
    };
    let mechanism =
        <crate::gucs::AttentionType as pgrx::guc::GucEnum>::from_ordinal(crate::gucs::hot(&crate::gucs::ATTENTION))
            as u8;
    ring::push(|record| {
        record.query_id = t.query_id;
        record.variant = t.variant;
        record.plan_hash = t.shape.plan_hash;
        record.recorded_at = recorded_at;
        record.execution_ms = execution_ms;
        record.planning_ms = t.planning_ms;
        record.rows = rows;
        record.user_id = user_id;
        record.db_id = db_id;
        record.node_count = t.shape.node_count;
        record.mechanism = mechanism;
        record.source = source as u8;
        record.has_actuals = has_actuals;
        record.arm = t.arm;
        plan_bytes.is_none_or(|b| record.set_plan(b))
    });
}

#[cfg(test)]
mod tests {
    use super::{statement_range, without_explain, without_prepare};

    #[test]
    fn a_statement_is_cut_out_of_its_source_text_within_bounds() {
        assert_eq!(statement_range(10, 3, 4), 3..7);
        assert_eq!(statement_range(10, 3, 0), 3..10, "length 0: to the end");
        assert_eq!(statement_range(10, 8, 5), 8..10);
        assert_eq!(statement_range(10, -1, 0), 0..10, "no location: the whole text");
        assert_eq!(statement_range(10, 20, 0), 10..10);
    }

    #[test]
    fn the_query_of_a_prepare_statement_is_replayed_not_the_prepare() {
        assert_eq!(without_prepare("PREPARE pj(int, text) AS SELECT $1, $2"), "SELECT $1, $2");
        assert_eq!(without_prepare("prepare q as\n  select 1"), "select 1");
        assert_eq!(without_prepare("SELECT 'PREPARE x AS'"), "SELECT 'PREPARE x AS'");
        assert_eq!(without_prepare("PREPARE broken (int"), "PREPARE broken (int");
    }

    #[test]
    fn a_query_measured_through_explain_analyze_is_replayed_without_the_explain() {
        let q = "SELECT count(*) FROM t WHERE a = 1";
        assert_eq!(without_explain(q), Some(q));
        assert_eq!(without_explain(&format!("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY, FORMAT JSON) {q}")), Some(q));
        assert_eq!(without_explain(&format!("explain analyze verbose {q}")), Some(q));
        assert_eq!(without_explain(&format!("EXPLAIN ANALYSE\n  {q}")), Some(q));
        assert_eq!(
            without_explain("EXPLAIN (ANALYZE) WITH x AS (SELECT 1) SELECT * FROM x"),
            Some("WITH x AS (SELECT 1) SELECT * FROM x")
        );
        assert_eq!(without_explain("EXPLAIN ANALYZE EXECUTE q(1)"), None);
        assert_eq!(without_explain("EXPLAIN (ANALYZE"), None);
        assert_eq!(without_explain("SELECT 'EXPLAIN ANALYZE'"), Some("SELECT 'EXPLAIN ANALYZE'"));
    }
}
