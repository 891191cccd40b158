//! The plugin author's side: safe views of what the host passes, the two plugin traits, and the shims that
//! [`export_plugins!`](crate::export_plugins) wires into the library's declaration.
//!
//! Every shim catches panics: a panic in plugin code becomes [`STATUS_PANIC`] with its message, which the host
//! turns into an error. (A library built with `panic = "abort"` cannot be protected this way; do not.)

use crate::ffi::*;
use std::ffi::c_void;
use std::fmt;
use std::ops::RangeInclusive;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

// ---- views ------------------------------------------------------------------------------------------------

/// A parameter's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamValue<'a> {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Number(f64),
    /// A string.
    String(&'a str),
    /// An array or table, as JSON text.
    Json(&'a str),
}

impl fmt::Display for ParamValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Integer(i) => write!(f, "{i}"),
            ParamValue::Number(n) => write!(f, "{n}"),
            ParamValue::String(s) => write!(f, "{s:?}"),
            ParamValue::Json(j) => f.write_str(j),
        }
    }
}

/// A plugin's parameters (its `[attention.<name>]` table in `ruvector.toml`), with validating accessors whose
/// errors name the full key, the value and what is allowed, like the host's own.
///
/// ```
/// use ruvector_dag_plugin_abi::{FfiParam, Params};
/// let items = [FfiParam::number("decay", 2.0)];
/// let params = Params::from_items("attention.example", &items);
/// assert_eq!(params.number_in("decay", 0.5, 0.0..=1.0).unwrap_err(),
///            "attention.example.decay = 2: expected a number in 0..=1");
/// assert_eq!(params.integer_in("depth", 4, 1..=8), Ok(4)); // absent: the default
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    scope: &'a str,
    items: &'a [FfiParam<'a>],
}

impl<'a> Params<'a> {
    /// Parameters under `scope` from their FFI form (what the host passes; also handy in tests).
    pub fn from_items(scope: &'a str, items: &'a [FfiParam<'a>]) -> Self {
        Params { scope, items }
    }

    /// e.g. `attention.degree_share`.
    pub fn scope(&self) -> &'a str {
        self.scope
    }

    /// The keys present.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.items.iter().map(|p| p.key.as_str_lossy())
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<ParamValue<'a>> {
        let p = self.items.iter().find(|p| p.key.as_str_lossy() == key)?;
        Some(match p.kind {
            PARAM_BOOL => ParamValue::Bool(p.boolean != 0),
            PARAM_INTEGER => ParamValue::Integer(p.integer),
            PARAM_NUMBER => ParamValue::Number(p.number),
            PARAM_STRING => ParamValue::String(p.text.as_str_lossy()),
            _ => ParamValue::Json(p.text.as_str_lossy()),
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.scope.is_empty() { key.to_owned() } else { format!("{}.{key}", self.scope) }
    }

    fn invalid(&self, key: &str, value: ParamValue<'_>, expected: &str) -> String {
        format!("{} = {value}: expected {expected}", self.full_key(key))
    }

    /// Rejects keys outside `known`.
    ///
    /// # Errors
    /// `unknown key `<scope>.<key>`; known parameters: ...`.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self.keys().find(|k| !known.contains(k)) {
            None => Ok(()),
            Some(k) => {
                let mut known = known.to_vec();
                known.sort_unstable();
                let list = if known.is_empty() { "(none)".to_owned() } else { known.join(", ") };
                Err(format!("unknown key `{}`; known parameters: {list}", self.full_key(k)))
            }
        }
    }

    /// A number in `range`, or `default` when absent.
    ///
    /// # Errors
    /// When the value is not a number or is outside `range`.
    pub fn number_in(&self, key: &str, default: f64, range: RangeInclusive<f64>) -> Result<f64, String> {
        let expected = format!("a number in {}..={}", range.start(), range.end());
        match self.get(key) {
            None => Ok(default),
            Some(v @ (ParamValue::Number(_) | ParamValue::Integer(_))) => {
                let n = match v {
                    ParamValue::Number(n) => n,
                    ParamValue::Integer(i) => i as f64,
                    _ => unreachable!(),
                };
                if range.contains(&n) { Ok(n) } else { Err(self.invalid(key, v, &expected)) }
            }
            Some(v) => Err(self.invalid(key, v, &expected)),
        }
    }

    /// An integer in `range`, or `default` when absent.
    ///
    /// # Errors
    /// When the value is not an integer or is outside `range`.
    pub fn integer_in(&self, key: &str, default: i64, range: RangeInclusive<i64>) -> Result<i64, String> {
        let expected = format!("an integer in {}..={}", range.start(), range.end());
        match self.get(key) {
            None => Ok(default),
            Some(v @ ParamValue::Integer(i)) if !range.contains(&i) => Err(self.invalid(key, v, &expected)),
            Some(ParamValue::Integer(i)) => Ok(i),
            Some(v) => Err(self.invalid(key, v, &expected)),
        }
    }

    /// A boolean, or `default` when absent.
    ///
    /// # Errors
    /// When the value is not a boolean.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(ParamValue::Bool(b)) => Ok(b),
            Some(v) => Err(self.invalid(key, v, "true or false")),
        }
    }

    /// A string, or `default` when absent.
    ///
    /// # Errors
    /// When the value is not a string.
    pub fn string_or(&self, key: &str, default: &'a str) -> Result<&'a str, String> {
        match self.get(key) {
            None => Ok(default),
            Some(ParamValue::String(s)) => Ok(s),
            Some(v) => Err(self.invalid(key, v, "a string")),
        }
    }
}

impl<'a> FfiParam<'a> {
    /// A boolean parameter.
    pub const fn boolean(key: &'a str, value: bool) -> Self {
        FfiParam {
            key: FfiStr::new(key),
            kind: PARAM_BOOL,
            boolean: value as u32,
            integer: 0,
            number: 0.0,
            text: FfiStr::new(""),
        }
    }

    /// An integer parameter.
    pub const fn integer(key: &'a str, value: i64) -> Self {
        FfiParam {
            key: FfiStr::new(key),
            kind: PARAM_INTEGER,
            boolean: 0,
            integer: value,
            number: value as f64,
            text: FfiStr::new(""),
        }
    }

    /// A floating-point parameter.
    pub const fn number(key: &'a str, value: f64) -> Self {
        FfiParam {
            key: FfiStr::new(key),
            kind: PARAM_NUMBER,
            boolean: 0,
            integer: 0,
            number: value,
            text: FfiStr::new(""),
        }
    }

    /// A string parameter.
    pub const fn string(key: &'a str, value: &'a str) -> Self {
        FfiParam {
            key: FfiStr::new(key),
            kind: PARAM_STRING,
            boolean: 0,
            integer: 0,
            number: 0.0,
            text: FfiStr::new(value),
        }
    }

    /// An array or table parameter, as JSON text.
    pub const fn json(key: &'a str, json: &'a str) -> Self {
        FfiParam {
            key: FfiStr::new(key),
            kind: PARAM_JSON,
            boolean: 0,
            integer: 0,
            number: 0.0,
            text: FfiStr::new(json),
        }
    }
}

impl<'a> FfiNode<'a> {
    /// A node with these estimates and no actuals; the other fields can be set afterwards.
    pub const fn new(id: u64, operator: &'a str, total_cost: f64, plan_rows: f64) -> Self {
        FfiNode {
            id,
            operator: FfiStr::new(operator),
            category: FfiStr::new(""),
            relation: FfiStr::new(""),
            index: FfiStr::new(""),
            filter: FfiStr::new(""),
            startup_cost: 0.0,
            total_cost,
            plan_rows,
            plan_width: 0,
            parallel_aware: 0,
            has_actuals: 0,
            actual_startup_ms: 0.0,
            actual_total_ms: 0.0,
            actual_rows: 0.0,
            actual_loops: 0.0,
        }
    }
}

/// A read-only plan, as the host passes it to [`AttentionPlugin::forward`].
///
/// ```
/// use ruvector_dag_plugin_abi::{DagView, FfiEdge, FfiNode};
/// let nodes = [FfiNode::new(1, "Seq Scan", 10.0, 100.0), FfiNode::new(2, "Aggregate", 12.0, 1.0)];
/// let edges = [FfiEdge { input: 0, consumer: 1 }];
/// let dag = DagView::new(&nodes, &edges).unwrap();
/// assert_eq!(dag.inputs(1).collect::<Vec<_>>(), vec![0]);
/// assert_eq!(dag.node(1).operator.to_str().unwrap(), "Aggregate");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DagView<'a> {
    nodes: &'a [FfiNode<'a>],
    edges: &'a [FfiEdge],
}

impl<'a> DagView<'a> {
    /// A view of `nodes` and `edges`.
    ///
    /// # Errors
    /// When an edge refers to a position outside `nodes`.
    pub fn new(nodes: &'a [FfiNode<'a>], edges: &'a [FfiEdge]) -> Result<Self, String> {
        if let Some(e) = edges.iter().find(|e| e.input as usize >= nodes.len() || e.consumer as usize >= nodes.len()) {
            return Err(format!("edge {} -> {} is outside the {} nodes", e.input, e.consumer, nodes.len()));
        }
        Ok(DagView { nodes, edges })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a plan without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes, in the host's order (scores are aligned with it).
    pub fn nodes(&self) -> &'a [FfiNode<'a>] {
        self.nodes
    }

    /// The node at `position`.
    ///
    /// # Panics
    /// When `position >= len()`.
    pub fn node(&self, position: usize) -> &'a FfiNode<'a> {
        &self.nodes[position]
    }

    /// The edges.
    pub fn edges(&self) -> &'a [FfiEdge] {
        self.edges
    }

    /// Positions of the nodes feeding `position`.
    pub fn inputs(&self, position: usize) -> impl Iterator<Item = usize> + 'a {
        self.edges.iter().filter(move |e| e.consumer as usize == position).map(|e| e.input as usize)
    }

    /// Positions of the nodes consuming `position`'s output.
    pub fn consumers(&self, position: usize) -> impl Iterator<Item = usize> + 'a {
        self.edges.iter().filter(move |e| e.input as usize == position).map(|e| e.consumer as usize)
    }
}

/// A detected problem, as the host passes it to a [`RepairPlugin`].
#[derive(Debug, Clone, Copy)]
pub struct IssueView<'a> {
    /// Identifier.
    pub id: u64,
    /// `latency_anomaly`, `index_degraded`, `learning_drift`, `pattern_quality`, or another name.
    pub kind: &'a str,
    /// What is affected.
    pub target: &'a str,
    /// 0 info, 1 warning, 2 critical.
    pub severity: u32,
    /// Evidence, for humans.
    pub detail: &'a str,
}

impl<'a> IssueView<'a> {
    fn from_ffi(issue: &FfiIssue<'a>) -> Self {
        IssueView {
            id: issue.id,
            kind: issue.kind.as_str_lossy(),
            target: issue.target.as_str_lossy(),
            severity: issue.severity,
            detail: issue.detail.as_str_lossy(),
        }
    }
}

/// Where a repair acts: check [`is_dry_run`](RepairCtx::is_dry_run) before changing anything, and
/// [`record`](RepairCtx::record) every action.
#[derive(Debug)]
pub struct RepairCtx<'c, 'a> {
    inner: &'c FfiRepairContext<'a>,
}

impl RepairCtx<'_, '_> {
    /// True in a dry run: describe what you would do, change nothing.
    pub fn is_dry_run(&self) -> bool {
        self.inner.dry_run != 0
    }

    /// Records one action (performed, or planned in a dry run).
    pub fn record(&mut self, action: &str) {
        self.inner.actions.write(action);
    }
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// True when something was changed.
    pub applied: bool,
    /// Summary for logs and the repair history.
    pub detail: String,
}

/// A finished repair, as passed back to `verify` and `rollback`.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeView<'a> {
    /// True when something was changed.
    pub applied: bool,
    /// Summary.
    pub detail: &'a str,
}

/// Whether a repair helped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The problem is gone or smaller.
    Improved = 0,
    /// No measurable change.
    Unchanged = 1,
    /// Worse: the host rolls back.
    Regressed = 2,
    /// Cannot tell.
    Unknown = 3,
}

// ---- traits -----------------------------------------------------------------------------------------------

/// An attention mechanism in a plugin library: weighs the nodes of a plan.
///
/// `forward` writes one raw score per node (aligned with [`DagView::nodes`]): finite and non-negative. The host
/// normalises them to sum to 1 and rejects negative or non-finite values with an error naming the plugin. The
/// same plan must give the same scores. The host may call from any thread, one call at a time per instance.
pub trait AttentionPlugin: Send + Sync + Sized + 'static {
    /// Builds the mechanism from its parameters; an `Err` is shown to the operator as is.
    ///
    /// # Errors
    /// Invalid parameters.
    fn new(params: &Params<'_>) -> Result<Self, String>;

    /// Scores `dag` into `scores` (`scores.len() == dag.len()`, zero-filled).
    ///
    /// # Errors
    /// Whatever the mechanism cannot handle; shown as is.
    fn forward(&self, dag: &DagView<'_>, scores: &mut [f32]) -> Result<(), String>;
}

/// A repair strategy in a plugin library. Mirrors the host's `RepairStrategy`: only `new`, `can_repair` and
/// `repair` are required.
pub trait RepairPlugin: Send + Sync + Sized + 'static {
    /// Builds the strategy from its parameters.
    ///
    /// # Errors
    /// Invalid parameters.
    fn new(params: &Params<'_>) -> Result<Self, String>;

    /// True when this strategy knows how to fix `issue`.
    fn can_repair(&self, issue: &IssueView<'_>) -> bool;

    /// Fixes `issue` (or, in a dry run, records what it would do).
    ///
    /// # Errors
    /// When the repair failed.
    fn repair(&self, issue: &IssueView<'_>, ctx: &mut RepairCtx<'_, '_>) -> Result<Outcome, String>;

    /// Judges a repair after it ran. Default: unknown.
    ///
    /// # Errors
    /// When the measurement failed.
    fn verify(
        &self,
        issue: &IssueView<'_>,
        outcome: &OutcomeView<'_>,
        ctx: &mut RepairCtx<'_, '_>,
    ) -> Result<Verdict, String> {
        let _ = (issue, outcome, ctx);
        Ok(Verdict::Unknown)
    }

    /// Undoes a repair. Default: not supported.
    ///
    /// # Errors
    /// When undoing failed or is not supported.
    fn rollback(
        &self,
        issue: &IssueView<'_>,
        outcome: &OutcomeView<'_>,
        ctx: &mut RepairCtx<'_, '_>,
    ) -> Result<(), String> {
        let _ = (issue, outcome, ctx);
        Err("rollback is not supported".to_owned())
    }

    /// Expected duration of `repair`. Default: unknown.
    fn estimated_duration(&self, issue: &IssueView<'_>) -> Option<Duration> {
        let _ = issue;
        None
    }
}

// ---- descriptors ------------------------------------------------------------------------------------------

impl PluginDescriptor {
    /// The descriptor of attention mechanism `P`, registered as `name`.
    pub const fn attention<P: AttentionPlugin>(
        name: &'static str,
        version: &'static str,
        description: &'static str,
    ) -> Self {
        PluginDescriptor {
            kind: KIND_ATTENTION,
            name: FfiStr::new(name),
            version: FfiStr::new(version),
            description: FfiStr::new(description),
            create_attention: Some(attention_create::<P>),
            create_repair: None,
        }
    }

    /// The descriptor of repair strategy `P`, registered as `name`.
    pub const fn repair<P: RepairPlugin>(name: &'static str, version: &'static str, description: &'static str) -> Self {
        PluginDescriptor {
            kind: KIND_REPAIR,
            name: FfiStr::new(name),
            version: FfiStr::new(version),
            description: FfiStr::new(description),
            create_attention: None,
            create_repair: Some(repair_create::<P>),
        }
    }
}

/// Exports a plugin library's declaration: list the library's plugins, built with
/// [`PluginDescriptor::attention`] and [`PluginDescriptor::repair`] (see the crate documentation for a whole
/// plugin). Use it once per library; the crate must be a `cdylib` built with unwinding panics (the default).
#[macro_export]
macro_rules! export_plugins {
    ($($descriptor:expr),+ $(,)?) => {
        const __RUVECTOR_DAG_PLUGINS: &[$crate::PluginDescriptor] = &[$($descriptor),+];

        /// This library's plugin declaration, read by ruvector-dag when it loads the library.
        #[unsafe(no_mangle)]
        #[allow(non_upper_case_globals)]
        pub static ruvector_dag_plugin_declaration: $crate::PluginDeclaration = $crate::PluginDeclaration::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            __RUVECTOR_DAG_PLUGINS,
        );
    };
}

// ---- shims ------------------------------------------------------------------------------------------------

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(panic payload is not a string)".to_owned()
    }
}

/// Runs `f`, turning `Err` into [`STATUS_ERROR`] and a panic into [`STATUS_PANIC`], each with its message
/// written to `error`.
///
/// # Safety
/// `error` must point to a live sink.
unsafe fn guarded(error: *const FfiSink<'_>, f: impl FnOnce() -> Result<(), String>) -> u32 {
    let (status, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(message)) => (STATUS_ERROR, message),
        Err(payload) => (STATUS_PANIC, panic_message(&*payload)),
    };
    // Writing the message cannot unwind: the host's sink copies bytes. Still, stay inside catch_unwind.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller passes a live sink.
        unsafe { &*error }.write(&message)
    }));
    status
}

/// The `len` values at `ptr` (which may be dangling or null when `len` is 0).
///
/// # Safety
/// When `len > 0`, `ptr` points to `len` initialised values that live for `'a`.
unsafe fn raw_slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    // SAFETY: the caller's contract.
    if len == 0 { &[] } else { unsafe { std::slice::from_raw_parts(ptr, len) } }
}

fn ffi_params<'a>(params: &'a FfiParams<'a>) -> Params<'a> {
    // SAFETY: the host passes `len` initialised parameters at `items`, alive for the call.
    let items = unsafe { raw_slice(params.items, params.len) };
    Params { scope: params.scope.as_str_lossy(), items }
}

impl<'a> OutcomeView<'a> {
    fn from_ffi(outcome: &FfiOutcome<'a>) -> Self {
        OutcomeView { applied: outcome.applied != 0, detail: outcome.detail.as_str_lossy() }
    }
}

unsafe extern "C" fn attention_create<P: AttentionPlugin>(
    params: *const FfiParams<'_>,
    out: *mut FfiAttention,
    error: *const FfiSink<'_>,
) -> u32 {
    // SAFETY: the host passes live pointers for the duration of the call.
    unsafe {
        guarded(error, || {
            let plugin = P::new(&ffi_params(&*params))?;
            let state = Box::into_raw(Box::new(plugin)).cast::<c_void>();
            out.write(FfiAttention { state, forward: attention_forward::<P>, release: release::<P> });
            Ok(())
        })
    }
}

unsafe extern "C" fn attention_forward<P: AttentionPlugin>(
    state: *const c_void,
    dag: *const FfiDag<'_>,
    scores: *mut f32,
    len: usize,
    error: *const FfiSink<'_>,
) -> u32 {
    // SAFETY: `state` is the `Box<P>` made by `attention_create::<P>`; the host passes a DAG whose arrays are
    // live and whose edges are in range (it checks), and `len` writable scores.
    unsafe {
        guarded(error, || {
            let plugin = &*state.cast::<P>();
            let dag = &*dag;
            let nodes = raw_slice(dag.nodes, dag.node_count);
            let edges = raw_slice(dag.edges, dag.edge_count);
            if len != nodes.len() {
                return Err(format!("score buffer holds {len} entries for {} nodes", nodes.len()));
            }
            let scores: &mut [f32] = if len == 0 { &mut [] } else { std::slice::from_raw_parts_mut(scores, len) };
            scores.fill(0.0);
            plugin.forward(&DagView::new(nodes, edges)?, scores)
        })
    }
}

unsafe extern "C" fn release<P>(state: *mut c_void) {
    // SAFETY: `state` is the `Box<P>` made by this library's constructor; the host releases each state once.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(state.cast::<P>()) })));
}

unsafe extern "C" fn repair_create<P: RepairPlugin>(
    params: *const FfiParams<'_>,
    out: *mut FfiRepair,
    error: *const FfiSink<'_>,
) -> u32 {
    // SAFETY: the host passes live pointers for the duration of the call.
    unsafe {
        guarded(error, || {
            let plugin = P::new(&ffi_params(&*params))?;
            let state = Box::into_raw(Box::new(plugin)).cast::<c_void>();
            out.write(FfiRepair {
                state,
                can_repair: repair_can::<P>,
                repair: repair_run::<P>,
                verify: repair_verify::<P>,
                rollback: repair_rollback::<P>,
                estimated_duration_ms: repair_duration::<P>,
                release: release::<P>,
            });
            Ok(())
        })
    }
}

unsafe extern "C" fn repair_can<P: RepairPlugin>(
    state: *const c_void,
    issue: *const FfiIssue<'_>,
    answer: *mut u32,
    error: *const FfiSink<'_>,
) -> u32 {
    // SAFETY: `state` is this library's `Box<P>`; the host passes live pointers for the call.
    unsafe {
        guarded(error, || {
            let yes = (*state.cast::<P>()).can_repair(&IssueView::from_ffi(&*issue));
            answer.write(u32::from(yes));
            Ok(())
        })
    }
}

unsafe extern "C" fn repair_run<P: RepairPlugin>(
    state: *const c_void,
    issue: *const FfiIssue<'_>,
    ctx: *const FfiRepairContext<'_>,
    applied: *mut u32,
    detail: *const FfiSink<'_>,
    error: *const FfiSink<'_>,
) -> u32 {
    // SAFETY: `state` is this library's `Box<P>`; the host passes live pointers for the call.
    unsafe {
        guarded(error, || {
            let mut ctx = RepairCtx { inner: &*ctx };
            let outcome = (*state.cast::<P>()).repair(&IssueView::from_ffi(&*issue), &mut ctx)?;
            applied.write(u32::from(outcome.applied));
            (*detail).write(&outcome.detail);
            Ok(())
        })
    }
}

unsafe extern "C" fn repair_verify<P: RepairPlugin>(
    state: *const c_void,
    issue: *const FfiIssue<'_>,
    outcome: *const FfiOutcome<'_>,
    ctx: *const FfiRepairContext<'_>,
    verdict: *mut u32,
    error: *const FfiSink<'_>,
) -> u32 {
    // SAFETY: `state` is this library's `Box<P>`; the host passes live pointers for the call.
    unsafe {
        guarded(error, || {
            let mut ctx = RepairCtx { inner: &*ctx };
            let outcome = OutcomeView::from_ffi(&*outcome);
            let v = (*state.cast::<P>()).verify(&IssueView::from_ffi(&*issue), &outcome, &mut ctx)?;
            verdict.write(v as u32);
            Ok(())
        })
    }
}

unsafe extern "C" fn repair_rollback<P: RepairPlugin>(
    state: *const c_void,
    issue: *const FfiIssue<'_>,
    outcome: *const FfiOutcome<'_>,
    ctx: *const FfiRepairContext<'_>,
    error: *const FfiSink<'_>,
) -> u32 {
    // SAFETY: `state` is this library's `Box<P>`; the host passes live pointers for the call.
    unsafe {
        guarded(error, || {
            let mut ctx = RepairCtx { inner: &*ctx };
            let outcome = OutcomeView::from_ffi(&*outcome);
            (*state.cast::<P>()).rollback(&IssueView::from_ffi(&*issue), &outcome, &mut ctx)
        })
    }
}

unsafe extern "C" fn repair_duration<P: RepairPlugin>(
    state: *const c_void,
    issue: *const FfiIssue<'_>,
    ms: *mut f64,
    error: *const FfiSink<'_>,
) -> u32 {
    // SAFETY: `state` is this library's `Box<P>`; the host passes live pointers for the call.
    unsafe {
        guarded(error, || {
            let d = (*state.cast::<P>()).estimated_duration(&IssueView::from_ffi(&*issue));
            ms.write(d.map_or(-1.0, |d| d.as_secs_f64() * 1e3));
            Ok(())
        })
    }
}
