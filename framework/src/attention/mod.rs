//! Attention over plan nodes: which operators of a plan matter most.
//!
//! A [`DagAttention`] mechanism looks at a whole [`QueryDag`] and returns one weight per node
//! ([`AttentionScores`]): non-negative, summing to one. Learning tiers use the weights to pool node features
//! into a plan embedding, analysis functions to rank operators, and the selector to pick the mechanism that
//! predicts best for a class of queries.

use crate::dag::QueryDag;
use crate::error::{Error, Result};
use crate::learning::ExecutionMetrics;

/// A mechanism that weighs the nodes of a plan.
///
/// `forward` must be a pure function of the DAG (and of what the mechanism learned through `update`): the same
/// plan gives the same scores. Scores are aligned with the DAG's insertion order ([`QueryDag::node_ids`]), are
/// each in `[0, 1]` and sum to 1; build them with [`AttentionScores::normalize`], which enforces that.
///
/// Mechanisms that learn from executions (eligibility traces, for instance) override `update`; the default
/// ignores feedback, so a purely structural mechanism implements two methods.
///
/// ```
/// use ruvector_dag::attention::{AttentionScores, DagAttention};
/// use ruvector_dag::{QueryDag, Result};
///
/// /// Weighs each node by its estimated total cost.
/// struct CostShare;
///
/// impl DagAttention for CostShare {
///     fn name(&self) -> &str { "cost_share" }
///     fn forward(&self, dag: &QueryDag) -> Result<AttentionScores> {
///         AttentionScores::normalize(dag.nodes().map(|n| n.info.estimates.total_cost as f32).collect())
///     }
/// }
/// ```
pub trait DagAttention: Send + Sync {
    /// The mechanism's registered name, e.g. `topological`.
    fn name(&self) -> &str;

    /// One weight per node, in insertion order.
    fn forward(&self, dag: &QueryDag) -> Result<AttentionScores>;

    /// Learns from one execution of `dag`. Default: ignores it.
    fn update(&mut self, dag: &QueryDag, metrics: &ExecutionMetrics) -> Result<()> {
        let _ = (dag, metrics);
        Ok(())
    }
}

impl<T: DagAttention + ?Sized> DagAttention for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn forward(&self, dag: &QueryDag) -> Result<AttentionScores> {
        (**self).forward(dag)
    }

    fn update(&mut self, dag: &QueryDag, metrics: &ExecutionMetrics) -> Result<()> {
        (**self).update(dag, metrics)
    }
}

/// Attention weights, one per node in the DAG's insertion order; each in `[0, 1]`, summing to 1.
///
/// Position `i` belongs to the `i`-th id of [`QueryDag::node_ids`] (see [`QueryDag::position`]), so per-node
/// work indexes a slice instead of hashing ids.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttentionScores {
    weights: Vec<f32>,
}

impl AttentionScores {
    /// Normalises non-negative raw scores to sum to 1. All-zero scores become uniform; an empty vector stays
    /// empty (an empty DAG has no nodes to weigh).
    ///
    /// # Errors
    /// [`Error::Plugin`] if a raw score is negative, NaN or infinite — a bug in the mechanism, reported rather
    /// than hidden.
    pub fn normalize(mut raw: Vec<f32>) -> Result<Self> {
        if let Some((i, v)) = raw.iter().enumerate().find(|(_, v)| !v.is_finite() || **v < 0.0) {
            return Err(Error::Plugin {
                plugin: "attention".into(),
                message: format!("raw score {v} at position {i}: expected a finite non-negative number"),
            });
        }
        let sum: f64 = raw.iter().map(|&v| f64::from(v)).sum();
        if raw.is_empty() {
            return Ok(AttentionScores { weights: raw });
        }
        if sum <= 0.0 {
            let u = 1.0 / raw.len() as f32;
            raw.iter_mut().for_each(|v| *v = u);
        } else {
            raw.iter_mut().for_each(|v| *v = (f64::from(*v) / sum) as f32);
        }
        Ok(AttentionScores { weights: raw })
    }

    /// Equal weight on every node of `dag`.
    pub fn uniform(dag: &QueryDag) -> Self {
        let n = dag.node_count();
        AttentionScores { weights: vec![if n == 0 { 0.0 } else { 1.0 / n as f32 }; n] }
    }

    /// The weights, in insertion order.
    pub fn values(&self) -> std::slice::Iter<'_, f32> {
        self.weights.iter()
    }

    /// The weights as a slice, in insertion order.
    pub fn as_slice(&self) -> &[f32] {
        &self.weights
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when there are no weights.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The weight of node `id` of `dag` (the DAG the scores were computed for).
    pub fn get(&self, dag: &QueryDag, id: usize) -> Option<f32> {
        dag.position(id).and_then(|p| self.weights.get(p).copied())
    }

    /// `(node id, weight)` pairs for `dag` (the DAG the scores were computed for), in insertion order.
    pub fn iter_with<'a>(&'a self, dag: &'a QueryDag) -> impl Iterator<Item = (usize, f32)> + 'a {
        dag.node_ids().zip(self.weights.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OperatorNode;

    #[test]
    fn normalize_sums_to_one_and_rejects_bad_scores() {
        let s = AttentionScores::normalize(vec![1.0, 3.0]).unwrap();
        assert_eq!(s.as_slice(), &[0.25, 0.75]);
        let z = AttentionScores::normalize(vec![0.0; 4]).unwrap();
        assert_eq!(z.as_slice(), &[0.25; 4]);
        assert!(AttentionScores::normalize(vec![]).unwrap().is_empty());
        assert!(AttentionScores::normalize(vec![1.0, -0.5]).unwrap_err().to_string().contains("-0.5 at position 1"));
        assert!(AttentionScores::normalize(vec![f32::NAN]).is_err());
    }

    #[test]
    fn lookup_by_id_follows_insertion_order() {
        let mut dag = QueryDag::new();
        dag.add_node(7, OperatorNode::Limit);
        dag.add_node(3, OperatorNode::Limit);
        let s = AttentionScores::normalize(vec![1.0, 0.0]).unwrap();
        assert_eq!(s.get(&dag, 7), Some(1.0));
        assert_eq!(s.get(&dag, 3), Some(0.0));
        assert_eq!(s.get(&dag, 5), None);
        assert_eq!(s.iter_with(&dag).collect::<Vec<_>>(), vec![(7, 1.0), (3, 0.0)]);
        assert_eq!(AttentionScores::uniform(&dag).as_slice(), &[0.5, 0.5]);
    }
}
