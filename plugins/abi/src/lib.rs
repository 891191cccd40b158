//! The stable ABI of out-of-tree ruvector-dag plugins.
//!
//! A third party writes an attention mechanism or a repair strategy in its own crate, depending on this crate
//! alone, builds it as a `cdylib`, and lists the file in `ruvector.toml`:
//!
//! ```toml
//! [[plugins.dynamic]]
//! path = "/usr/lib/ruvector/libmy_plugin.so"
//! sha256 = "…"            # optional pin
//! ```
//!
//! ruvector-dag then offers the plugin under its name exactly like a built-in one. The plugin side is three
//! steps: implement [`AttentionPlugin`] (or [`RepairPlugin`]), and export the library's declaration:
//!
//! ```
//! use ruvector_dag_plugin_abi::{AttentionPlugin, DagView, Params, PluginDescriptor, export_plugins};
//!
//! /// Weighs each node by how many operators it feeds, plus one.
//! struct FanOut;
//!
//! impl AttentionPlugin for FanOut {
//!     fn new(params: &Params<'_>) -> Result<Self, String> {
//!         params.deny_unknown(&[])?;
//!         Ok(FanOut)
//!     }
//!     fn forward(&self, dag: &DagView<'_>, scores: &mut [f32]) -> Result<(), String> {
//!         for (p, s) in scores.iter_mut().enumerate() {
//!             *s = 1.0 + dag.consumers(p).count() as f32;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_plugins![PluginDescriptor::attention::<FanOut>("fan_out", "0.1.0", "weight by fan-out")];
//! ```
//!
//! # How the boundary is kept safe
//! - Only `#[repr(C)]` data and `extern "C"` functions cross ([`ffi`]); nothing allocated on one side is freed
//!   on the other (strings come back through [`FfiSink`]s that copy).
//! - The declaration carries [`ABI_VERSION`] and the layout of every type ([`LAYOUTS`]); the host refuses a
//!   library whose version or any layout differs from its own, before calling it.
//! - Every exported function catches panics and reports them as errors (`STATUS_PANIC`).
//! - Libraries are never unloaded.
//!
//! The host side (`load`, `check` and the call wrappers) is behind feature `host`.
//!
//! Why not `abi_stable`: it has had no release since 2023, its dependency tree carries advisories, and projects
//! are leaving it (DataFusion's FFI crate moved to hand-written `#[repr(C)]` vtables in 54.0). This crate follows
//! that approach and keeps abi_stable's load-time checks (version, per-type layout) in ~100 lines.

#![allow(unsafe_code)] // The FFI boundary: every `unsafe` block carries a `SAFETY:` comment.
#![deny(unsafe_op_in_unsafe_fn)]

mod author;
pub mod ffi;
#[cfg(feature = "host")]
pub mod host;

pub use author::{
    AttentionPlugin, DagView, IssueView, Outcome, OutcomeView, ParamValue, Params, RepairCtx, RepairPlugin, Verdict,
};
pub use ffi::{
    ABI_VERSION, DECLARATION_SYMBOL, FfiEdge, FfiIssue, FfiNode, FfiParam, FfiSink, FfiStr, LAYOUTS, PluginDeclaration,
    PluginDescriptor, TypeLayout,
};
