//! Attention over plan nodes: which operators of a plan matter most.
//!
//! A [`DagAttention`] mechanism looks at a whole [`QueryDag`] and returns one weight per node
//! ([`AttentionScores`]): non-negative, summing to one. Learning tiers use the weights to pool node features
//! into a plan embedding, analysis functions to rank operators, and the selector to pick the mechanism that
//! predicts best for a class of queries.

mod cache;
mod prepared;
mod selector;

pub use cache::{AttentionCache, CacheStats, PlanFingerprint};
pub use prepared::{PreparedDag, operator_signature};
pub use selector::{ArmStats, AttentionSelector, DEFAULT_CLASS};

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
/// Hot paths score many plans: a mechanism may also implement
/// [`forward_prepared`](DagAttention::forward_prepared), which reads a [`PreparedDag`] (computed once per plan)
/// and writes into a reused [`AttentionScores`] without allocating. The built-in mechanisms implement `forward`
/// as "prepare, then `forward_prepared`".
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

    /// The allocation-free form of [`forward`](Self::forward): scores a prepared plan into `out` (reusing its
    /// buffer). Default: not supported.
    fn forward_prepared(&self, dag: &PreparedDag, out: &mut AttentionScores) -> Result<()> {
        let _ = (dag, out);
        Err(Error::NotSupported(format!("forward_prepared for attention mechanism `{}`", self.name())))
    }

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

    fn forward_prepared(&self, dag: &PreparedDag, out: &mut AttentionScores) -> Result<()> {
        (**self).forward_prepared(dag, out)
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
            return Err(bad_score(i, f64::from(*v)));
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

    /// Fills the scores from non-negative raw values `raw(p)` for `p` in `0..n`, normalised to sum to 1 (all
    /// zero: uniform). Reuses the buffer: no allocation once it has held `n` weights.
    ///
    /// # Errors
    /// As [`normalize`](Self::normalize).
    pub fn fill_normalized(&mut self, n: usize, mut raw: impl FnMut(usize) -> f64) -> Result<()> {
        self.weights.clear();
        let mut sum = 0.0f64;
        for p in 0..n {
            let v = raw(p);
            if !v.is_finite() || v < 0.0 {
                self.weights.clear();
                return Err(bad_score(p, v));
            }
            sum += v;
            self.weights.push(v as f32);
        }
        if sum > 0.0 {
            // Normalise in f64 from the f32 values kept, so the f32 weights sum to 1 within rounding.
            let total: f64 = self.weights.iter().map(|&w| f64::from(w)).sum();
            if total > 0.0 {
                self.weights.iter_mut().for_each(|w| *w = (f64::from(*w) / total) as f32);
                return Ok(());
            }
        }
        let u = if n == 0 { 0.0 } else { 1.0 / n as f32 };
        self.weights.iter_mut().for_each(|w| *w = u);
        Ok(())
    }

    /// Fills the scores with `softmax(logit(p) / temperature)` for `p` in `0..n`; logits of `-inf` get weight
    /// 0 (masked). Reuses the buffer.
    ///
    /// # Errors
    /// [`Error::Plugin`] for a NaN or `+inf` logit, or a non-positive temperature.
    pub fn fill_softmax(&mut self, n: usize, temperature: f64, mut logit: impl FnMut(usize) -> f64) -> Result<()> {
        if temperature.is_nan() || temperature <= 0.0 {
            return Err(Error::Plugin {
                plugin: "attention".into(),
                message: format!("softmax temperature {temperature}: expected a positive number"),
            });
        }
        self.weights.clear();
        let mut max = f64::NEG_INFINITY;
        for p in 0..n {
            let l = logit(p);
            if l.is_nan() || l == f64::INFINITY {
                self.weights.clear();
                return Err(bad_score(p, l));
            }
            let l = l / temperature;
            max = max.max(l);
            self.weights.push(l as f32);
        }
        if max == f64::NEG_INFINITY {
            // Everything masked: uniform, as for all-zero raw scores.
            let u = if n == 0 { 0.0 } else { 1.0 / n as f32 };
            self.weights.iter_mut().for_each(|w| *w = u);
            return Ok(());
        }
        let mut sum = 0.0f64;
        for w in &mut self.weights {
            let e = (f64::from(*w) - max).exp();
            sum += e;
            *w = e as f32;
        }
        self.weights.iter_mut().for_each(|w| *w = (f64::from(*w) / sum) as f32);
        Ok(())
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

fn bad_score(position: usize, value: f64) -> Error {
    Error::Plugin {
        plugin: "attention".into(),
        message: format!("raw score {value} at position {position}: expected a finite non-negative number"),
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
    fn fill_helpers_reuse_the_buffer() {
        let mut s = AttentionScores::default();
        s.fill_normalized(3, |p| p as f64).unwrap();
        assert_eq!(s.as_slice(), &[0.0, 1.0 / 3.0, 2.0 / 3.0]);
        s.fill_softmax(3, 1.0, |p| if p == 1 { f64::NEG_INFINITY } else { 0.0 }).unwrap();
        assert_eq!(s.as_slice(), &[0.5, 0.0, 0.5]);
        s.fill_softmax(2, 1.0, |_| f64::NEG_INFINITY).unwrap();
        assert_eq!(s.as_slice(), &[0.5, 0.5]);
        assert!(s.fill_softmax(2, 0.0, |_| 0.0).is_err());
        assert!(s.fill_normalized(2, |_| f64::NAN).is_err());
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
