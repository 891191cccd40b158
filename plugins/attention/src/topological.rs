//! Topological attention: position in the plan hierarchy (QueryFormer's height encoding, the DAG
//! transformer's depth encoding), scaled by cost.
//!
//! `w_i ∝ decay^min(depth_i, max_depth) · (share_i + ε)^cost_exponent`, where `depth_i` is the longest distance
//! from operator `i` up to the result. Operators close to the result weigh more; among equals, costlier ones.

use crate::config::{AttentionConfig, TopologicalParams, cost_term};
use ruvector_dag::Result;
use ruvector_dag::attention::{AttentionScores, DagAttention, PreparedDag};

/// Depth-encoded attention (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopologicalAttention {
    params: TopologicalParams,
}

impl TopologicalAttention {
    /// Registered name.
    pub const NAME: &'static str = "topological";

    /// From the shared configuration.
    pub fn new(config: AttentionConfig) -> Self {
        Self::with_params(config.topological)
    }

    /// From this mechanism's parameters.
    pub fn with_params(params: TopologicalParams) -> Self {
        TopologicalAttention { params }
    }
}

impl DagAttention for TopologicalAttention {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn forward(&self, dag: &ruvector_dag::QueryDag) -> Result<AttentionScores> {
        crate::forward_via_prepared(self, dag)
    }

    fn forward_prepared(&self, dag: &PreparedDag, out: &mut AttentionScores) -> Result<()> {
        let p = self.params;
        out.fill_normalized(dag.n, |i| {
            p.decay_factor.powi(dag.depth[i].min(p.max_depth) as i32) * cost_term(dag.share[i], p.cost_exponent)
        })
    }
}
