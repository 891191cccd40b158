//! Causal-cone attention: the result's cone of influence (QueryFormer's descendant mask; Luo et al.'s
//! reachability neighbourhood), decaying with distance.
//!
//! Operator `i` at `hops_i` edges below the nearest result (fewest hops) gets
//! `w_i ∝ exp(−decay_rate · hops_i) · (share_i + ε)^cost_exponent` when `hops_i ≤ max_hops`, and exactly 0
//! outside the cone. If every operator lies outside (max_hops below every node), the weights are uniform over
//! the results.

use crate::config::{AttentionConfig, CausalConeParams, cost_term};
use ruvector_dag::Result;
use ruvector_dag::attention::{AttentionScores, DagAttention, PreparedDag};

/// Distance-limited cone attention (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CausalConeAttention {
    params: CausalConeParams,
}

impl CausalConeAttention {
    /// Registered name.
    pub const NAME: &'static str = "causal_cone";

    /// From the shared configuration.
    pub fn new(config: AttentionConfig) -> Self {
        Self::with_params(config.causal_cone)
    }

    /// From this mechanism's parameters.
    pub fn with_params(params: CausalConeParams) -> Self {
        CausalConeAttention { params }
    }

    /// True when operator `i` of `dag` is inside the cone (and may have non-zero weight).
    pub fn in_cone(&self, dag: &PreparedDag, i: usize) -> bool {
        dag.hops[i] <= self.params.max_hops
    }
}

impl DagAttention for CausalConeAttention {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn forward(&self, dag: &ruvector_dag::QueryDag) -> Result<AttentionScores> {
        crate::forward_via_prepared(self, dag)
    }

    fn forward_prepared(&self, dag: &PreparedDag, out: &mut AttentionScores) -> Result<()> {
        let p = self.params;
        out.fill_normalized(dag.n, |i| {
            if dag.hops[i] > p.max_hops {
                0.0
            } else {
                (-p.decay_rate * f64::from(dag.hops[i])).exp() * cost_term(dag.share[i], p.cost_exponent)
            }
        })
    }
}
