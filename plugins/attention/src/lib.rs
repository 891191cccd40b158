//! The seven DAG attention mechanisms of ruvector-dag, each a [`DagAttention`] plugin.
//!
//! | name | mechanism | meaning |
//! | --- | --- | --- |
//! | `topological` | [`TopologicalAttention`] | depth below the result (QueryFormer height / DAG-transformer depth encoding) |
//! | `causal_cone` | [`CausalConeAttention`] | the result's cone within k hops, decaying, zero outside |
//! | `critical_path` | [`CriticalPathAttention`] | CPM slack against the longest own-cost path |
//! | `mincut_gated` | [`MinCutGatedAttention`] | gate from the plan's exact minimum s-t cut |
//! | `hierarchical_lorentz` | [`HierarchicalLorentzAttention`] | hyperbolic distance to the cost centroid of the hierarchy |
//! | `parallel_branch` | [`ParallelBranchAttention`] | work that can run alongside (antichains) |
//! | `temporal_btsp` | [`TemporalBTSPAttention`] | weights learned by eligibility traces and plateaus |
//!
//! Every mechanism returns one weight per operator (insertion order), each in `[0, 1]`, summing to 1, and scores
//! a [`PreparedDag`](ruvector_dag::attention::PreparedDag) without allocating. Operator cost shares (own cost
//! over the plan's) enter every mechanism. Parameters: [`AttentionConfig`], or `[attention.<name>]` tables.
//!
//! ```
//! use ruvector_dag::attention::DagAttention;
//! use ruvector_dag::dag::generator::{generate, DagShape};
//! use ruvector_dag_attention::{AttentionConfig, CriticalPathAttention};
//!
//! let dag = generate(DagShape::BushyJoin, 50, 1);
//! let scores = CriticalPathAttention::new(AttentionConfig::default()).forward(&dag)?;
//! assert!((scores.values().sum::<f32>() - 1.0).abs() < 1e-3);
//! # Ok::<(), ruvector_dag::Error>(())
//! ```

#![warn(missing_docs)]

mod causal_cone;
mod clock;
mod config;
mod critical_path;
mod hierarchical_lorentz;
mod mincut_gated;
mod parallel_branch;
mod temporal_btsp;
mod topological;

pub use causal_cone::CausalConeAttention;
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::{
    AttentionConfig, BtspParams, CausalConeParams, CriticalPathParams, LorentzParams, MinCutGatedParams,
    ParallelBranchParams, TopologicalParams,
};
pub use critical_path::CriticalPathAttention;
pub use hierarchical_lorentz::{HierarchicalLorentzAttention, LorentzPoint, lorentz_inner};
pub use mincut_gated::MinCutGatedAttention;
pub use parallel_branch::ParallelBranchAttention;
pub use temporal_btsp::TemporalBTSPAttention;

use ruvector_dag::attention::{AttentionScores, DagAttention, PreparedDag};
use ruvector_dag::plugin::{Factory, PluginParams, PluginRegistration};
use ruvector_dag::{QueryDag, Result, submit_plugin};

/// `forward` for mechanisms built on `forward_prepared`: prepare the plan, then score it.
pub(crate) fn forward_via_prepared(mechanism: &dyn DagAttention, dag: &QueryDag) -> Result<AttentionScores> {
    let prepared = PreparedDag::new(dag);
    let mut out = AttentionScores::default();
    mechanism.forward_prepared(&prepared, &mut out)?;
    Ok(out)
}

/// All seven mechanisms with one configuration, in the table's order.
pub fn all_mechanisms(config: AttentionConfig) -> Vec<Box<dyn DagAttention>> {
    vec![
        Box::new(TopologicalAttention::new(config)),
        Box::new(CausalConeAttention::new(config)),
        Box::new(CriticalPathAttention::new(config)),
        Box::new(MinCutGatedAttention::new(config)),
        Box::new(HierarchicalLorentzAttention::new(config)),
        Box::new(ParallelBranchAttention::new(config)),
        Box::new(TemporalBTSPAttention::new(config)),
    ]
}

pub use topological::TopologicalAttention;

fn make_topological(p: &PluginParams) -> Result<Box<dyn DagAttention>> {
    Ok(Box::new(TopologicalAttention::with_params(TopologicalParams::from_params(p)?)))
}
fn make_causal_cone(p: &PluginParams) -> Result<Box<dyn DagAttention>> {
    Ok(Box::new(CausalConeAttention::with_params(CausalConeParams::from_params(p)?)))
}
fn make_critical_path(p: &PluginParams) -> Result<Box<dyn DagAttention>> {
    Ok(Box::new(CriticalPathAttention::with_params(CriticalPathParams::from_params(p)?)))
}
fn make_mincut_gated(p: &PluginParams) -> Result<Box<dyn DagAttention>> {
    Ok(Box::new(MinCutGatedAttention::with_params(MinCutGatedParams::from_params(p)?)))
}
fn make_lorentz(p: &PluginParams) -> Result<Box<dyn DagAttention>> {
    Ok(Box::new(HierarchicalLorentzAttention::with_params(LorentzParams::from_params(p)?)))
}
fn make_parallel_branch(p: &PluginParams) -> Result<Box<dyn DagAttention>> {
    Ok(Box::new(ParallelBranchAttention::with_params(ParallelBranchParams::from_params(p)?)))
}
fn make_btsp(p: &PluginParams) -> Result<Box<dyn DagAttention>> {
    Ok(Box::new(TemporalBTSPAttention::with_clock(
        BtspParams::from_params(p)?,
        std::sync::Arc::new(MonotonicClock::default()),
    )))
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

submit_plugin!(PluginRegistration {
    name: TopologicalAttention::NAME,
    version: VERSION,
    description: "depth below the result, scaled by cost share",
    factory: Factory::Attention(make_topological),
});
submit_plugin!(PluginRegistration {
    name: CausalConeAttention::NAME,
    version: VERSION,
    description: "the result's cone within k hops, decaying with distance",
    factory: Factory::Attention(make_causal_cone),
});
submit_plugin!(PluginRegistration {
    name: CriticalPathAttention::NAME,
    version: VERSION,
    description: "cost share damped by slack against the critical path",
    factory: Factory::Attention(make_critical_path),
});
submit_plugin!(PluginRegistration {
    name: MinCutGatedAttention::NAME,
    version: VERSION,
    description: "cost share gated by the plan's exact minimum cut",
    factory: Factory::Attention(make_mincut_gated),
});
submit_plugin!(PluginRegistration {
    name: HierarchicalLorentzAttention::NAME,
    version: VERSION,
    description: "hyperbolic distance to the cost centroid of the plan hierarchy",
    factory: Factory::Attention(make_lorentz),
});
submit_plugin!(PluginRegistration {
    name: ParallelBranchAttention::NAME,
    version: VERSION,
    description: "cost share times work that can run alongside",
    factory: Factory::Attention(make_parallel_branch),
});
submit_plugin!(PluginRegistration {
    name: TemporalBTSPAttention::NAME,
    version: VERSION,
    description: "per-operator weights learned from eligibility traces and latency plateaus",
    factory: Factory::Attention(make_btsp),
});
