//! Parallel-branch attention: operators weighted by the work that can run alongside them.
//!
//! Two operators are parallel when neither feeds the other (an antichain of the plan's partial order: sibling
//! branches of a join, members of an append). `parallel_share_i` is the cost share of all operators parallel to
//! `i`; `w_i ∝ (share_i + ε)^cost_exponent · (parallel_share_i + ε)^parallel_exponent`: costly operators with a
//! lot of concurrent work are where parallel workers or a different join order help. A chain has no parallel
//! work and reduces to cost share. [`ParallelBranchAttention::row`] gives the pairwise attention of one operator
//! over the others: zero for every comparable pair.

use crate::config::{AttentionConfig, EPSILON, ParallelBranchParams, cost_term};
use ruvector_dag::Result;
use ruvector_dag::attention::{AttentionScores, DagAttention, PreparedDag};

/// Antichain attention (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParallelBranchAttention {
    params: ParallelBranchParams,
}

impl ParallelBranchAttention {
    /// Registered name.
    pub const NAME: &'static str = "parallel_branch";

    /// From the shared configuration.
    pub fn new(config: AttentionConfig) -> Self {
        Self::with_params(config.parallel_branch)
    }

    /// From this mechanism's parameters.
    pub fn with_params(params: ParallelBranchParams) -> Self {
        ParallelBranchAttention { params }
    }

    /// Attention of operator `p` over the operators parallel to it, into `out` (one entry per operator): weight
    /// ∝ their cost share, 0 for `p` and everything above or below it. All zero when nothing is parallel to `p`.
    pub fn row(&self, dag: &PreparedDag, p: usize, out: &mut Vec<f32>) {
        out.clear();
        let total: f64 = (0..dag.n).filter(|&u| !dag.comparable(p, u)).map(|u| dag.share[u] + EPSILON).sum();
        out.extend((0..dag.n).map(|u| {
            if total <= 0.0 || dag.comparable(p, u) { 0.0 } else { ((dag.share[u] + EPSILON) / total) as f32 }
        }));
    }
}

impl DagAttention for ParallelBranchAttention {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn forward(&self, dag: &ruvector_dag::QueryDag) -> Result<AttentionScores> {
        crate::forward_via_prepared(self, dag)
    }

    fn forward_prepared(&self, dag: &PreparedDag, out: &mut AttentionScores) -> Result<()> {
        let p = self.params;
        out.fill_normalized(dag.n, |i| {
            cost_term(dag.share[i], p.cost_exponent) * cost_term(dag.parallel_share[i], p.parallel_exponent)
        })
    }
}
