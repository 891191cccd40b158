//! The `#[repr(C)]` types that cross the library boundary, and their layout table.
//!
//! Everything here is plain data: integers, floats, borrowed strings ([`FfiStr`]), borrowed arrays (pointer and
//! length) and `extern "C"` function pointers. Nothing owned crosses: each side frees what it allocated. A plugin
//! hands strings back through an [`FfiSink`], which copies them into the host's memory during the call.
//!
//! Every type is declared through `ffi_struct!`, which also records its size, alignment and a fingerprint of
//! its fields (names, declared types, offsets) in [`LAYOUTS`]. A plugin exports its copy of that table; the host
//! compares it with its own before calling anything, so a plugin built against a different definition of any
//! type is refused instead of misread.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::str::Utf8Error;

/// The version of this ABI. A plugin whose declaration carries another version is refused. Bumped whenever a
/// type of this module or the meaning of a field changes.
pub const ABI_VERSION: u32 = 1;

/// First field of every [`PluginDeclaration`]: the bytes `RVDAGPLG`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RVDAGPLG");

/// Name of the symbol a plugin library exports: a `static` [`PluginDeclaration`].
pub const DECLARATION_SYMBOL: &str = "ruvector_dag_plugin_declaration";

/// The call succeeded.
pub const STATUS_OK: u32 = 0;
/// The call failed; the message was written to the error sink.
pub const STATUS_ERROR: u32 = 1;
/// The plugin panicked; the panic message was written to the error sink and the panic stopped at the boundary.
pub const STATUS_PANIC: u32 = 2;

/// [`PluginDescriptor::kind`] of an attention mechanism.
pub const KIND_ATTENTION: u32 = 1;
/// [`PluginDescriptor::kind`] of a repair strategy.
pub const KIND_REPAIR: u32 = 3;

/// [`FfiParam::kind`]: `boolean` holds 0 or 1.
pub const PARAM_BOOL: u32 = 1;
/// [`FfiParam::kind`]: an integer, in `integer` (and, converted, in `number`).
pub const PARAM_INTEGER: u32 = 2;
/// [`FfiParam::kind`]: a floating-point number, in `number`.
pub const PARAM_NUMBER: u32 = 3;
/// [`FfiParam::kind`]: a string, in `text`.
pub const PARAM_STRING: u32 = 4;
/// [`FfiParam::kind`]: an array or table, as JSON text in `text`.
pub const PARAM_JSON: u32 = 5;

/// Declares a `#[repr(C)]` struct and its [`TypeLayout`] (`Type::LAYOUT`), computed from the declaration itself
/// so the two cannot drift apart.
macro_rules! ffi_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(<$lt:lifetime>)? {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        pub struct $name $(<$lt>)? {
            $( $(#[$fmeta])* $fvis $field : $ty ),*
        }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// Size, alignment and field fingerprint of this type as compiled here.
            pub const LAYOUT: TypeLayout = {
                let mut h = Fnv::new().str(stringify!($name));
                $( h = h.str(stringify!($field)).str(stringify!($ty)).u64(std::mem::offset_of!(Self, $field) as u64); )*
                TypeLayout {
                    name: FfiStr::new(stringify!($name)),
                    size: size_of::<Self>() as u32,
                    align: align_of::<Self>() as u32,
                    fingerprint: h.finish(),
                }
            };
        }
    };
}

/// FNV-1a, usable in constants.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    const fn bytes(mut self, b: &[u8]) -> Self {
        let mut i = 0;
        while i < b.len() {
            self.0 ^= b[i] as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        self
    }

    const fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }

    const fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    const fn finish(self) -> u64 {
        self.0
    }
}

/// A borrowed UTF-8 string: pointer and length, valid for `'a`.
///
/// Made only from a `&str` ([`FfiStr::new`]), so a value built on either side of the boundary always describes
/// live, valid memory for its lifetime; [`to_str`](FfiStr::to_str) still checks UTF-8, since a plugin written in
/// another language may not.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FfiStr<'a> {
    ptr: *const u8,
    len: usize,
    _life: PhantomData<&'a str>,
}

impl<'a> FfiStr<'a> {
    /// The empty string.
    pub const EMPTY: FfiStr<'static> = FfiStr::new("");

    /// Borrows `s`.
    pub const fn new(s: &'a str) -> Self {
        FfiStr { ptr: s.as_ptr(), len: s.len(), _life: PhantomData }
    }

    /// The string, or the UTF-8 error if the producer broke the contract.
    pub fn to_str(&self) -> Result<&'a str, Utf8Error> {
        if self.len == 0 {
            return Ok("");
        }
        // SAFETY: `ptr`/`len` come from a `&'a str` (the fields are private and `new` is the only constructor),
        // or were written by the other side of the boundary under the same contract; valid for reads for `'a`.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        std::str::from_utf8(bytes)
    }

    /// The string, with invalid UTF-8 replaced by a marker (for messages and names already validated).
    pub fn as_str_lossy(&self) -> &'a str {
        self.to_str().unwrap_or("<invalid UTF-8>")
    }
}

impl std::fmt::Debug for FfiStr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str_lossy(), f)
    }
}

impl Default for FfiStr<'_> {
    fn default() -> Self {
        FfiStr::new("")
    }
}

impl FfiStr<'_> {
    /// Size, alignment and field fingerprint of this type as compiled here.
    pub const LAYOUT: TypeLayout = {
        let h = Fnv::new().str("FfiStr").str("ptr").str("*const u8").u64(std::mem::offset_of!(Self, ptr) as u64);
        let h = h.str("len").str("usize").u64(std::mem::offset_of!(Self, len) as u64);
        TypeLayout {
            name: FfiStr::new("FfiStr"),
            size: size_of::<Self>() as u32,
            align: align_of::<Self>() as u32,
            fingerprint: h.finish(),
        }
    };
}

/// Where a callee writes a string for the caller: error messages, a repair's detail, recorded actions.
///
/// The callee calls [`write`](FfiSink::write) (any number of times; pieces are appended); the bytes are copied
/// into the caller's buffer before `write` returns, so nothing allocated on one side is freed on the other.
#[repr(C)]
pub struct FfiSink<'a> {
    ctx: *mut c_void,
    write: unsafe extern "C" fn(ctx: *mut c_void, text: FfiStr<'_>),
    _life: PhantomData<&'a mut String>,
}

unsafe extern "C" fn append_to_string(ctx: *mut c_void, text: FfiStr<'_>) {
    // SAFETY: `ctx` is the `&mut String` the sink was made from (`FfiSink::new`), borrowed for the sink's
    // lifetime; sinks are used by one thread at a time (calls are synchronous).
    let buf = unsafe { &mut *ctx.cast::<String>() };
    buf.push_str(text.as_str_lossy());
}

unsafe extern "C" fn push_to_vec(ctx: *mut c_void, text: FfiStr<'_>) {
    // SAFETY: `ctx` is the `&mut Vec<String>` the sink was made from (`FfiSink::lines`), borrowed for the sink's
    // lifetime; sinks are used by one thread at a time (calls are synchronous).
    let lines = unsafe { &mut *ctx.cast::<Vec<String>>() };
    lines.push(text.as_str_lossy().to_owned());
}

impl<'a> FfiSink<'a> {
    /// A sink appending every write to `buf`.
    pub fn new(buf: &'a mut String) -> Self {
        FfiSink { ctx: (buf as *mut String).cast(), write: append_to_string, _life: PhantomData }
    }

    /// A sink pushing each write to `lines` as one entry (recorded actions).
    pub fn lines(lines: &'a mut Vec<String>) -> Self {
        FfiSink { ctx: (lines as *mut Vec<String>).cast(), write: push_to_vec, _life: PhantomData }
    }

    /// Hands `text` to the caller.
    pub fn write(&self, text: &str) {
        // SAFETY: `write` and `ctx` were paired by `new` or `lines` (the only constructors) and the buffer
        // outlives `'a`.
        unsafe { (self.write)(self.ctx, FfiStr::new(text)) }
    }

    /// Size, alignment and field fingerprint of this type as compiled here.
    pub const LAYOUT: TypeLayout = {
        let h = Fnv::new().str("FfiSink").str("ctx").str("*mut c_void").u64(std::mem::offset_of!(Self, ctx) as u64);
        let h = h
            .str("write")
            .str("unsafe extern \"C\" fn(*mut c_void, FfiStr<'_>)")
            .u64(std::mem::offset_of!(Self, write) as u64);
        TypeLayout {
            name: FfiStr::new("FfiSink"),
            size: size_of::<Self>() as u32,
            align: align_of::<Self>() as u32,
            fingerprint: h.finish(),
        }
    };
}

impl std::fmt::Debug for FfiSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FfiSink")
    }
}

/// Size, alignment and fingerprint of one ABI type. Its own layout is fixed for every ABI version: it is part
/// of the declaration's header.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TypeLayout {
    /// The type's name.
    pub name: FfiStr<'static>,
    /// `size_of`.
    pub size: u32,
    /// `align_of`.
    pub align: u32,
    /// FNV-1a over the type's name and each field's name, declared type and offset.
    pub fingerprint: u64,
}

ffi_struct! {
    /// One plan operator, read-only. Estimates are the planner's; actuals are per loop, as in `EXPLAIN ANALYZE`,
    /// and meaningful only when `has_actuals` is 1.
    #[derive(Debug, Clone, Copy)]
    pub struct FfiNode<'a> {
        /// The node's id in the host's DAG.
        pub id: u64,
        /// Operator name as `EXPLAIN` prints it, e.g. `Hash Join`, `Seq Scan`.
        pub operator: FfiStr<'a>,
        /// Operator family: `scan`, `join`, `aggregate`, `sort`, ... (the host's category names).
        pub category: FfiStr<'a>,
        /// Relation scanned, or empty.
        pub relation: FfiStr<'a>,
        /// Index used, or empty.
        pub index: FfiStr<'a>,
        /// Row filter, or empty.
        pub filter: FfiStr<'a>,
        /// Planner cost before the first row.
        pub startup_cost: f64,
        /// Planner cost of all rows.
        pub total_cost: f64,
        /// Planner rows per loop.
        pub plan_rows: f64,
        /// Planner row width, bytes.
        pub plan_width: u32,
        /// 1 when the node runs inside parallel workers.
        pub parallel_aware: u32,
        /// 1 when the `actual_*` fields hold a measured execution.
        pub has_actuals: u32,
        /// Milliseconds to the first row, per loop.
        pub actual_startup_ms: f64,
        /// Milliseconds to the last row, per loop.
        pub actual_total_ms: f64,
        /// Rows per loop.
        pub actual_rows: f64,
        /// Times the node ran.
        pub actual_loops: f64,
    }
}

ffi_struct! {
    /// A data edge between two node positions (indices into the node array): `input` feeds `consumer`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FfiEdge {
        /// Position of the producing node.
        pub input: u32,
        /// Position of the consuming node.
        pub consumer: u32,
    }
}

ffi_struct! {
    /// A plan: nodes in the host's insertion order (scores are aligned with it) and edges between positions.
    /// The host guarantees every edge position is below `node_count`.
    #[derive(Debug, Clone, Copy)]
    pub struct FfiDag<'a> {
        /// First node.
        pub nodes: *const FfiNode<'a>,
        /// Number of nodes.
        pub node_count: usize,
        /// First edge.
        pub edges: *const FfiEdge,
        /// Number of edges.
        pub edge_count: usize,
    }
}

ffi_struct! {
    /// One configuration parameter of a plugin (a key of its `[attention.<name>]` table).
    #[derive(Debug, Clone, Copy)]
    pub struct FfiParam<'a> {
        /// The key.
        pub key: FfiStr<'a>,
        /// `PARAM_BOOL`, `PARAM_INTEGER`, `PARAM_NUMBER`, `PARAM_STRING` or `PARAM_JSON`.
        pub kind: u32,
        /// 0 or 1, for `PARAM_BOOL`.
        pub boolean: u32,
        /// The value, for `PARAM_INTEGER`.
        pub integer: i64,
        /// The value, for `PARAM_NUMBER`; also set for `PARAM_INTEGER`.
        pub number: f64,
        /// The string for `PARAM_STRING`, the JSON text for `PARAM_JSON`.
        pub text: FfiStr<'a>,
    }
}

ffi_struct! {
    /// A plugin's parameters: the scope names the table (`attention.degree_share`) for error messages.
    #[derive(Debug, Clone, Copy)]
    pub struct FfiParams<'a> {
        /// e.g. `attention.degree_share`.
        pub scope: FfiStr<'a>,
        /// First parameter.
        pub items: *const FfiParam<'a>,
        /// Number of parameters.
        pub len: usize,
    }
}

ffi_struct! {
    /// A detected problem handed to a repair strategy.
    #[derive(Debug, Clone, Copy)]
    pub struct FfiIssue<'a> {
        /// Identifier.
        pub id: u64,
        /// `latency_anomaly`, `index_degraded`, `learning_drift`, `pattern_quality`, or another name.
        pub kind: FfiStr<'a>,
        /// What is affected: an index, a query class, a subsystem.
        pub target: FfiStr<'a>,
        /// 0 info, 1 warning, 2 critical.
        pub severity: u32,
        /// Evidence, for humans.
        pub detail: FfiStr<'a>,
    }
}

ffi_struct! {
    /// Where a repair acts: dry-run flag and the sink that records each action.
    #[derive(Debug)]
    pub struct FfiRepairContext<'a> {
        /// 1 in a dry run: describe, change nothing.
        pub dry_run: u32,
        /// Each write records one action.
        pub actions: FfiSink<'a>,
    }
}

ffi_struct! {
    /// What a repair did, handed back to `verify` and `rollback`.
    #[derive(Debug, Clone, Copy)]
    pub struct FfiOutcome<'a> {
        /// 1 when something was changed.
        pub applied: u32,
        /// Summary.
        pub detail: FfiStr<'a>,
    }
}

/// Builds an attention mechanism from its parameters into `out`.
pub type AttentionConstructor =
    unsafe extern "C" fn(params: *const FfiParams<'_>, out: *mut FfiAttention, error: *const FfiSink<'_>) -> u32;
/// Builds a repair strategy from its parameters into `out`.
pub type RepairConstructor =
    unsafe extern "C" fn(params: *const FfiParams<'_>, out: *mut FfiRepair, error: *const FfiSink<'_>) -> u32;

ffi_struct! {
    /// A live attention mechanism: its state and the functions that use it. Scores are raw (non-negative,
    /// finite); the host normalises them.
    #[derive(Debug)]
    pub struct FfiAttention {
        /// The plugin's state, passed back to every call.
        pub state: *mut c_void,
        /// Writes one raw score per node (`len` = node count) into `scores`.
        pub forward: unsafe extern "C" fn(
            state: *const c_void,
            dag: *const FfiDag<'_>,
            scores: *mut f32,
            len: usize,
            error: *const FfiSink<'_>,
        ) -> u32,
        /// Frees the state; called once, last.
        pub release: unsafe extern "C" fn(state: *mut c_void),
    }
}

ffi_struct! {
    /// A live repair strategy. Every function returns a status and writes its result through its out pointer.
    #[derive(Debug)]
    pub struct FfiRepair {
        /// The plugin's state, passed back to every call.
        pub state: *mut c_void,
        /// Writes 1 to `answer` when the strategy can fix the issue.
        pub can_repair: unsafe extern "C" fn(
            state: *const c_void,
            issue: *const FfiIssue<'_>,
            answer: *mut u32,
            error: *const FfiSink<'_>,
        ) -> u32,
        /// Fixes the issue; writes whether it changed something to `applied` and a summary to `detail`.
        pub repair: unsafe extern "C" fn(
            state: *const c_void,
            issue: *const FfiIssue<'_>,
            ctx: *const FfiRepairContext<'_>,
            applied: *mut u32,
            detail: *const FfiSink<'_>,
            error: *const FfiSink<'_>,
        ) -> u32,
        /// Judges a repair: writes 0 improved, 1 unchanged, 2 regressed, 3 unknown to `verdict`.
        pub verify: unsafe extern "C" fn(
            state: *const c_void,
            issue: *const FfiIssue<'_>,
            outcome: *const FfiOutcome<'_>,
            ctx: *const FfiRepairContext<'_>,
            verdict: *mut u32,
            error: *const FfiSink<'_>,
        ) -> u32,
        /// Undoes a repair.
        pub rollback: unsafe extern "C" fn(
            state: *const c_void,
            issue: *const FfiIssue<'_>,
            outcome: *const FfiOutcome<'_>,
            ctx: *const FfiRepairContext<'_>,
            error: *const FfiSink<'_>,
        ) -> u32,
        /// Writes the expected duration in milliseconds to `ms`, or a negative number when unknown.
        pub estimated_duration_ms: unsafe extern "C" fn(
            state: *const c_void,
            issue: *const FfiIssue<'_>,
            ms: *mut f64,
            error: *const FfiSink<'_>,
        ) -> u32,
        /// Frees the state; called once, last.
        pub release: unsafe extern "C" fn(state: *mut c_void),
    }
}

ffi_struct! {
    /// One plugin of a library: its metadata and the constructor of its kind (the other one is `None`).
    #[derive(Debug, Clone, Copy)]
    pub struct PluginDescriptor {
        /// `KIND_ATTENTION` or `KIND_REPAIR`.
        pub kind: u32,
        /// Registered name: lower-case letters, digits and `_`, starting with a letter.
        pub name: FfiStr<'static>,
        /// The plugin's version (semver).
        pub version: FfiStr<'static>,
        /// One line describing it.
        pub description: FfiStr<'static>,
        /// Set for `KIND_ATTENTION`.
        pub create_attention: Option<AttentionConstructor>,
        /// Set for `KIND_REPAIR`.
        pub create_repair: Option<RepairConstructor>,
    }
}

ffi_struct! {
    /// What a plugin library exports under [`DECLARATION_SYMBOL`].
    ///
    /// The first four fields (`magic`, `abi_version`, `layout_len`, `layout`) keep their offsets in every ABI
    /// version, so a host can read them from any library, refuse a different version, and compare layouts before
    /// reading anything else.
    #[derive(Debug)]
    pub struct PluginDeclaration {
        /// [`MAGIC`].
        pub magic: u64,
        /// [`ABI_VERSION`] of the ABI crate the library was built with.
        pub abi_version: u32,
        /// Number of entries in `layout`.
        pub layout_len: u32,
        /// The library's [`LAYOUTS`].
        pub layout: *const TypeLayout,
        /// The library's name (its crate name).
        pub library: FfiStr<'static>,
        /// The library's version.
        pub library_version: FfiStr<'static>,
        /// First plugin.
        pub plugins: *const PluginDescriptor,
        /// Number of plugins.
        pub plugin_count: usize,
    }
}

// SAFETY: a declaration is immutable static data: its pointers refer to other immutable statics of the library.
unsafe impl Sync for PluginDeclaration {}
// SAFETY: as above; descriptors hold only static strings and function pointers.
unsafe impl Sync for PluginDescriptor {}
// SAFETY: layouts hold only static strings.
unsafe impl Sync for TypeLayout {}

impl PluginDeclaration {
    /// The declaration of a library exporting `plugins`, with this crate's version and layouts.
    pub const fn new(
        library: &'static str,
        library_version: &'static str,
        plugins: &'static [PluginDescriptor],
    ) -> Self {
        PluginDeclaration {
            magic: MAGIC,
            abi_version: ABI_VERSION,
            layout_len: LAYOUTS.len() as u32,
            layout: LAYOUTS.as_ptr(),
            library: FfiStr::new(library),
            library_version: FfiStr::new(library_version),
            plugins: plugins.as_ptr(),
            plugin_count: plugins.len(),
        }
    }
}

/// The layout of every ABI type, as compiled into this copy of the crate.
pub const LAYOUTS: &[TypeLayout] = &[
    FfiStr::LAYOUT,
    FfiSink::LAYOUT,
    FfiNode::LAYOUT,
    FfiEdge::LAYOUT,
    FfiDag::LAYOUT,
    FfiParam::LAYOUT,
    FfiParams::LAYOUT,
    FfiIssue::LAYOUT,
    FfiRepairContext::LAYOUT,
    FfiOutcome::LAYOUT,
    FfiAttention::LAYOUT,
    FfiRepair::LAYOUT,
    PluginDescriptor::LAYOUT,
    PluginDeclaration::LAYOUT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_distinct_and_named() {
        let mut names: Vec<_> = LAYOUTS.iter().map(|l| l.name.to_str().unwrap()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LAYOUTS.len());
        let mut prints: Vec<_> = LAYOUTS.iter().map(|l| l.fingerprint).collect();
        prints.sort_unstable();
        prints.dedup();
        assert_eq!(prints.len(), LAYOUTS.len(), "two types hash alike");
        assert_eq!(FfiEdge::LAYOUT.size, 8);
        assert_eq!(FfiEdge::LAYOUT.align, 4);
    }

    #[test]
    fn fingerprint_depends_on_names_types_and_offsets() {
        let a = Fnv::new().str("x").str("u32").u64(0).finish();
        assert_ne!(a, Fnv::new().str("y").str("u32").u64(0).finish());
        assert_ne!(a, Fnv::new().str("x").str("u64").u64(0).finish());
        assert_ne!(a, Fnv::new().str("x").str("u32").u64(4).finish());
        assert_ne!(Fnv::new().str("ab").str("c").finish(), Fnv::new().str("a").str("bc").finish());
    }

    #[test]
    fn header_offsets_never_move() {
        assert_eq!(std::mem::offset_of!(PluginDeclaration, magic), 0);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, abi_version), 8);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, layout_len), 12);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, layout), 16);
    }

    #[test]
    fn strings_and_sinks_round_trip() {
        let s = FfiStr::new("héllo");
        assert_eq!(s.to_str().unwrap(), "héllo");
        assert_eq!(FfiStr::EMPTY.to_str().unwrap(), "");
        let mut buf = String::new();
        let sink = FfiSink::new(&mut buf);
        sink.write("a");
        sink.write("bc");
        assert_eq!(buf, "abc");
        let mut lines = Vec::new();
        let sink = FfiSink::lines(&mut lines);
        sink.write("a");
        sink.write("bc");
        assert_eq!(lines, ["a", "bc"]);
    }
}
