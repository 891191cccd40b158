//! Min-cut-gated attention: cost share gated by the plan's exact minimum s-t cut.
//!
//! The cut comes from the framework's [`DagMinCutEngine`](ruvector_dag::mincut::DagMinCutEngine) (tree DP or
//! Dinic), computed once per plan in [`PreparedDag`]. An operator on the cut (cut itself, or producing a cut
//! intermediate result) with criticality ≥ `gate_threshold` passes fully; cut operators with lower criticality
//! (others could replace them in a minimum cut) pass by `criticality / gate_threshold`, at least `min_gate`;
//! operators off the cut get `min_gate`. `w_i ∝ (share_i + ε)^cost_exponent · gate_i`.

use crate::config::{AttentionConfig, MinCutGatedParams, cost_term};
use ruvector_dag::Result;
use ruvector_dag::attention::{AttentionScores, DagAttention, PreparedDag};

/// Cut-gated attention (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinCutGatedAttention {
    params: MinCutGatedParams,
}

impl MinCutGatedAttention {
    /// Registered name.
    pub const NAME: &'static str = "mincut_gated";

    /// From the shared configuration.
    pub fn new(config: AttentionConfig) -> Self {
        Self::with_params(config.mincut_gated)
    }

    /// From this mechanism's parameters.
    pub fn with_params(params: MinCutGatedParams) -> Self {
        MinCutGatedAttention { params }
    }

    /// The gate of operator `i`.
    pub fn gate(&self, dag: &PreparedDag, i: usize) -> f64 {
        let p = self.params;
        if !dag.in_cut[i] {
            p.min_gate
        } else if dag.criticality[i] >= p.gate_threshold {
            1.0
        } else {
            (dag.criticality[i] / p.gate_threshold).max(p.min_gate)
        }
    }
}

impl DagAttention for MinCutGatedAttention {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn forward(&self, dag: &ruvector_dag::QueryDag) -> Result<AttentionScores> {
        crate::forward_via_prepared(self, dag)
    }

    fn forward_prepared(&self, dag: &PreparedDag, out: &mut AttentionScores) -> Result<()> {
        let e = self.params.cost_exponent;
        out.fill_normalized(dag.n, |i| cost_term(dag.share[i], e) * self.gate(dag, i))
    }
}
