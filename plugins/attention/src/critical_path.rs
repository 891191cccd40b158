//! Critical-path attention: CPM (Kelley & Walker 1959) over operators' own costs.
//!
//! `w_i ∝ (share_i + ε)^cost_exponent · exp(−path_weight · slack_i / L)`, where `L` is the critical path's
//! length and `slack_i` how much shorter the most expensive path through `i` is. Operators on the critical path
//! have no slack; raising a critical operator's own cost raises its share and everyone else's slack, so its
//! weight never falls (property-tested).

use crate::config::{AttentionConfig, CriticalPathParams, cost_term};
use ruvector_dag::Result;
use ruvector_dag::attention::{AttentionScores, DagAttention, PreparedDag};

/// Slack-weighted attention (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CriticalPathAttention {
    params: CriticalPathParams,
}

impl CriticalPathAttention {
    /// Registered name.
    pub const NAME: &'static str = "critical_path";

    /// From the shared configuration.
    pub fn new(config: AttentionConfig) -> Self {
        Self::with_params(config.critical_path)
    }

    /// From this mechanism's parameters.
    pub fn with_params(params: CriticalPathParams) -> Self {
        CriticalPathAttention { params }
    }
}

impl DagAttention for CriticalPathAttention {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn forward(&self, dag: &ruvector_dag::QueryDag) -> Result<AttentionScores> {
        crate::forward_via_prepared(self, dag)
    }

    fn forward_prepared(&self, dag: &PreparedDag, out: &mut AttentionScores) -> Result<()> {
        let p = self.params;
        let length = dag.critical_length;
        out.fill_normalized(dag.n, |i| {
            let slack = if length > 0.0 { dag.slack[i] / length } else { 0.0 };
            cost_term(dag.share[i], p.cost_exponent) * (-p.path_weight * slack).exp()
        })
    }
}
