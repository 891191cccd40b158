//! A plugin library that misbehaves on purpose. By default it declares:
//! - `panicky` (attention): panics in `forward`;
//! - `negative` (attention): returns a negative score;
//! - `picky` (attention): refuses any parameter;
//! - `flaky_repair` (repair): panics in `can_repair` for index issues, fails every repair.
//!
//! Features replace the declaration with a broken one (see Cargo.toml).

// Variants that do not export the default plugins leave them unused.
#![cfg_attr(any(feature = "no-declaration", feature = "builtin-name"), allow(dead_code))]

use ruvector_dag_plugin_abi::{
    AttentionPlugin, DagView, IssueView, Outcome, Params, PluginDescriptor, RepairCtx, RepairPlugin,
};

/// Panics while scoring.
pub struct Panicky;

impl AttentionPlugin for Panicky {
    fn new(_: &Params<'_>) -> Result<Self, String> {
        Ok(Panicky)
    }
    fn forward(&self, dag: &DagView<'_>, _: &mut [f32]) -> Result<(), String> {
        panic!("index out of bounds: the plan has {} nodes", dag.len());
    }
}

/// Scores below zero.
pub struct Negative;

impl AttentionPlugin for Negative {
    fn new(_: &Params<'_>) -> Result<Self, String> {
        Ok(Negative)
    }
    fn forward(&self, _: &DagView<'_>, scores: &mut [f32]) -> Result<(), String> {
        scores.iter_mut().for_each(|s| *s = -1.0);
        Ok(())
    }
}

/// Accepts no parameters.
pub struct Picky;

impl AttentionPlugin for Picky {
    fn new(params: &Params<'_>) -> Result<Self, String> {
        params.deny_unknown(&[])?;
        Ok(Picky)
    }
    fn forward(&self, _: &DagView<'_>, _: &mut [f32]) -> Result<(), String> {
        Ok(())
    }
}

/// Cannot decide about index issues and never succeeds.
pub struct FlakyRepair;

impl RepairPlugin for FlakyRepair {
    fn new(_: &Params<'_>) -> Result<Self, String> {
        Ok(FlakyRepair)
    }
    fn can_repair(&self, issue: &IssueView<'_>) -> bool {
        assert!(issue.kind != "index_degraded", "cannot judge index issues");
        true
    }
    fn repair(&self, issue: &IssueView<'_>, ctx: &mut RepairCtx<'_, '_>) -> Result<Outcome, String> {
        ctx.record(&format!("tried {}", issue.target));
        Err(format!("repair of {} failed", issue.target))
    }
}

const PLUGINS: &[PluginDescriptor] = &[
    PluginDescriptor::attention::<Panicky>("panicky", "0.1.0", "panics in forward"),
    PluginDescriptor::attention::<Negative>("negative", "0.1.0", "negative scores"),
    PluginDescriptor::attention::<Picky>("picky", "0.1.0", "refuses parameters"),
    PluginDescriptor::repair::<FlakyRepair>("flaky_repair", "0.1.0", "fails"),
];

#[cfg(not(any(feature = "wrong-abi", feature = "bad-layout", feature = "no-declaration", feature = "builtin-name")))]
ruvector_dag_plugin_abi::export_plugins![PLUGINS[0], PLUGINS[1], PLUGINS[2], PLUGINS[3]];

#[cfg(feature = "wrong-abi")]
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static ruvector_dag_plugin_declaration: ruvector_dag_plugin_abi::PluginDeclaration = {
    let mut d = ruvector_dag_plugin_abi::PluginDeclaration::new("faulty", "0.1.0", PLUGINS);
    d.abi_version = ruvector_dag_plugin_abi::ABI_VERSION + 1;
    d
};

#[cfg(feature = "bad-layout")]
const BAD_LAYOUTS: [ruvector_dag_plugin_abi::TypeLayout; ruvector_dag_plugin_abi::LAYOUTS.len()] = {
    let mut l = [ruvector_dag_plugin_abi::LAYOUTS[0]; ruvector_dag_plugin_abi::LAYOUTS.len()];
    let mut i = 0;
    while i < l.len() {
        l[i] = ruvector_dag_plugin_abi::LAYOUTS[i];
        i += 1;
    }
    l[2].size += 8;
    l
};

#[cfg(feature = "bad-layout")]
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static ruvector_dag_plugin_declaration: ruvector_dag_plugin_abi::PluginDeclaration = {
    let mut d = ruvector_dag_plugin_abi::PluginDeclaration::new("faulty", "0.1.0", PLUGINS);
    d.layout = BAD_LAYOUTS.as_ptr();
    d
};

#[cfg(feature = "builtin-name")]
ruvector_dag_plugin_abi::export_plugins![PluginDescriptor::attention::<Picky>(
    "topological",
    "9.9.9",
    "a clash with the built-in mechanism"
)];

/// With `no-declaration`, the library exports only this function: a shared library, but not a plugin.
#[cfg(feature = "no-declaration")]
#[unsafe(no_mangle)]
pub extern "C" fn not_a_plugin() -> u32 {
    42
}
