//! Parameters of the seven mechanisms, one `Copy` configuration shared by all constructors.
//!
//! Every parameter has a default and a range; [`AttentionConfig::from_params`] and the per-mechanism
//! `from_params` read `ruvector.toml` tables (`[attention.<mechanism>]`) or `dag_attention_configure` JSON and
//! reject unknown keys and out-of-range values with errors naming the key.

use ruvector_dag::Result;
use ruvector_dag::plugin::PluginParams;

/// `topological`: weight decays with depth below the result, times a power of the operator's cost share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopologicalParams {
    /// `decay_factor` per level below the root, in (0, 1]. Default 0.9.
    pub decay_factor: f64,
    /// `max_depth`: levels beyond it weigh as this one, 1..=1000. Default 10.
    pub max_depth: u32,
    /// `cost_exponent` on the cost share, 0..=4 (0 = structure only). Default 0.5.
    pub cost_exponent: f64,
}

impl Default for TopologicalParams {
    fn default() -> Self {
        TopologicalParams { decay_factor: 0.9, max_depth: 10, cost_exponent: 0.5 }
    }
}

/// `causal_cone`: the result's cone of influence within `max_hops` edges, decaying with distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CausalConeParams {
    /// `max_hops` from the root: nodes further away get weight 0, 0..=1000. Default 10.
    pub max_hops: u32,
    /// `decay_rate` λ in `exp(−λ·hops)`, 0..=10. Default 0.5.
    pub decay_rate: f64,
    /// `cost_exponent` on the cost share, 0..=4. Default 0.5.
    pub cost_exponent: f64,
}

impl Default for CausalConeParams {
    fn default() -> Self {
        CausalConeParams { max_hops: 10, decay_rate: 0.5, cost_exponent: 0.5 }
    }
}

/// `critical_path`: cost share times `exp(−path_weight · slack / critical_length)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CriticalPathParams {
    /// `path_weight`: how sharply weight falls with slack, 0..=100. Default 4.
    pub path_weight: f64,
    /// `cost_exponent` on the cost share, 0..=4. Default 1.
    pub cost_exponent: f64,
}

impl Default for CriticalPathParams {
    fn default() -> Self {
        CriticalPathParams { path_weight: 4.0, cost_exponent: 1.0 }
    }
}

/// `mincut_gated`: cost share gated by membership in the plan's minimum cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinCutGatedParams {
    /// `gate_threshold` τ: cut operators with criticality ≥ τ pass fully, others by `criticality / τ`, in
    /// (0, 1]. Default 0.5.
    pub gate_threshold: f64,
    /// `min_gate`: the gate of operators off the cut, 0..=1. Default 0.05.
    pub min_gate: f64,
    /// `cost_exponent` on the cost share, 0..=4. Default 1.
    pub cost_exponent: f64,
}

impl Default for MinCutGatedParams {
    fn default() -> Self {
        MinCutGatedParams { gate_threshold: 0.5, min_gate: 0.05, cost_exponent: 1.0 }
    }
}

/// `hierarchical_lorentz`: hyperbolic distance to the cost centroid of the plan's hierarchy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LorentzParams {
    /// `curvature` κ < 0 of the hyperboloid (`⟨x, x⟩ = 1/κ`), −100..=−0.01. Default −1.
    pub curvature: f64,
    /// `temperature` τ in `exp(−d / τ)`, 0.01..=100. Default 1.
    pub temperature: f64,
    /// `edge_length`: hyperbolic length of one plan edge, 0.01..=10. Default 1.
    pub edge_length: f64,
}

impl Default for LorentzParams {
    fn default() -> Self {
        LorentzParams { curvature: -1.0, temperature: 1.0, edge_length: 1.0 }
    }
}

/// `parallel_branch`: cost share times the share of work that can run alongside the operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParallelBranchParams {
    /// `parallel_exponent` on the parallel-work share, 0..=4. Default 1.
    pub parallel_exponent: f64,
    /// `cost_exponent` on the cost share, 0..=4. Default 1.
    pub cost_exponent: f64,
}

impl Default for ParallelBranchParams {
    fn default() -> Self {
        ParallelBranchParams { parallel_exponent: 1.0, cost_exponent: 1.0 }
    }
}

/// `temporal_btsp`: learned per-operator weights from eligibility traces and plateau events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BtspParams {
    /// `tau_pre_ms`: decay of eligibility before a plateau, 1..=86 400 000. Default 10 000.
    pub tau_pre_ms: f64,
    /// `tau_post_ms`: window after a plateau in which activity still counts, 1..=86 400 000. Default 2 000.
    pub tau_post_ms: f64,
    /// `learning_rate` η₊ of potentiation (depression uses η₊/2), 0..=1. Default 0.5.
    pub learning_rate: f64,
    /// `w_max`: upper bound of learned weights, 0.01..=100. Default 1.
    pub w_max: f64,
    /// `plateau_ratio`: an execution slower than this multiple of the plan's running mean is a plateau,
    /// 1..=100. Default 1.5.
    pub plateau_ratio: f64,
    /// `beta`: influence of learned weights on attention, 0..=100. Default 2.
    pub beta: f64,
    /// `temperature` of the softmax, 0.01..=100. Default 0.25.
    pub temperature: f64,
}

impl Default for BtspParams {
    fn default() -> Self {
        BtspParams {
            tau_pre_ms: 10_000.0,
            tau_post_ms: 2_000.0,
            learning_rate: 0.5,
            w_max: 1.0,
            plateau_ratio: 1.5,
            beta: 2.0,
            temperature: 0.25,
        }
    }
}

/// The configuration every mechanism's constructor takes (each reads its own part).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttentionConfig {
    /// `[attention.topological]`.
    pub topological: TopologicalParams,
    /// `[attention.causal_cone]`.
    pub causal_cone: CausalConeParams,
    /// `[attention.critical_path]`.
    pub critical_path: CriticalPathParams,
    /// `[attention.mincut_gated]`.
    pub mincut_gated: MinCutGatedParams,
    /// `[attention.hierarchical_lorentz]`.
    pub hierarchical_lorentz: LorentzParams,
    /// `[attention.parallel_branch]`.
    pub parallel_branch: ParallelBranchParams,
    /// `[attention.temporal_btsp]`.
    pub temporal_btsp: BtspParams,
}

fn exponent(p: &PluginParams, key: &str, default: f64) -> Result<f64> {
    p.number_in(key, default, 0.0..=4.0)
}

impl TopologicalParams {
    /// Reads `[attention.topological]`.
    pub fn from_params(p: &PluginParams) -> Result<Self> {
        p.deny_unknown(&["decay_factor", "max_depth", "cost_exponent"])?;
        let d = Self::default();
        Ok(TopologicalParams {
            decay_factor: p.number_in("decay_factor", d.decay_factor, 1e-9..=1.0)?,
            max_depth: p.integer_in("max_depth", i64::from(d.max_depth), 1..=1000)? as u32,
            cost_exponent: exponent(p, "cost_exponent", d.cost_exponent)?,
        })
    }
}

impl CausalConeParams {
    /// Reads `[attention.causal_cone]`.
    pub fn from_params(p: &PluginParams) -> Result<Self> {
        p.deny_unknown(&["max_hops", "decay_rate", "cost_exponent"])?;
        let d = Self::default();
        Ok(CausalConeParams {
            max_hops: p.integer_in("max_hops", i64::from(d.max_hops), 0..=1000)? as u32,
            decay_rate: p.number_in("decay_rate", d.decay_rate, 0.0..=10.0)?,
            cost_exponent: exponent(p, "cost_exponent", d.cost_exponent)?,
        })
    }
}

impl CriticalPathParams {
    /// Reads `[attention.critical_path]`.
    pub fn from_params(p: &PluginParams) -> Result<Self> {
        p.deny_unknown(&["path_weight", "cost_exponent"])?;
        let d = Self::default();
        Ok(CriticalPathParams {
            path_weight: p.number_in("path_weight", d.path_weight, 0.0..=100.0)?,
            cost_exponent: exponent(p, "cost_exponent", d.cost_exponent)?,
        })
    }
}

impl MinCutGatedParams {
    /// Reads `[attention.mincut_gated]`.
    pub fn from_params(p: &PluginParams) -> Result<Self> {
        p.deny_unknown(&["gate_threshold", "min_gate", "cost_exponent"])?;
        let d = Self::default();
        Ok(MinCutGatedParams {
            gate_threshold: p.number_in("gate_threshold", d.gate_threshold, 1e-9..=1.0)?,
            min_gate: p.number_in("min_gate", d.min_gate, 0.0..=1.0)?,
            cost_exponent: exponent(p, "cost_exponent", d.cost_exponent)?,
        })
    }
}

impl LorentzParams {
    /// Reads `[attention.hierarchical_lorentz]`.
    pub fn from_params(p: &PluginParams) -> Result<Self> {
        p.deny_unknown(&["curvature", "temperature", "edge_length"])?;
        let d = Self::default();
        Ok(LorentzParams {
            curvature: p.number_in("curvature", d.curvature, -100.0..=-0.01)?,
            temperature: p.number_in("temperature", d.temperature, 0.01..=100.0)?,
            edge_length: p.number_in("edge_length", d.edge_length, 0.01..=10.0)?,
        })
    }
}

impl ParallelBranchParams {
    /// Reads `[attention.parallel_branch]`.
    pub fn from_params(p: &PluginParams) -> Result<Self> {
        p.deny_unknown(&["parallel_exponent", "cost_exponent"])?;
        let d = Self::default();
        Ok(ParallelBranchParams {
            parallel_exponent: exponent(p, "parallel_exponent", d.parallel_exponent)?,
            cost_exponent: exponent(p, "cost_exponent", d.cost_exponent)?,
        })
    }
}

impl BtspParams {
    /// Reads `[attention.temporal_btsp]`.
    pub fn from_params(p: &PluginParams) -> Result<Self> {
        p.deny_unknown(&[
            "tau_pre_ms",
            "tau_post_ms",
            "learning_rate",
            "w_max",
            "plateau_ratio",
            "beta",
            "temperature",
        ])?;
        let d = Self::default();
        Ok(BtspParams {
            tau_pre_ms: p.number_in("tau_pre_ms", d.tau_pre_ms, 1.0..=86_400_000.0)?,
            tau_post_ms: p.number_in("tau_post_ms", d.tau_post_ms, 1.0..=86_400_000.0)?,
            learning_rate: p.number_in("learning_rate", d.learning_rate, 0.0..=1.0)?,
            w_max: p.number_in("w_max", d.w_max, 0.01..=100.0)?,
            plateau_ratio: p.number_in("plateau_ratio", d.plateau_ratio, 1.0..=100.0)?,
            beta: p.number_in("beta", d.beta, 0.0..=100.0)?,
            temperature: p.number_in("temperature", d.temperature, 0.01..=100.0)?,
        })
    }
}

/// A small constant keeping zero-cost operators from vanishing entirely under cost exponents.
pub(crate) const EPSILON: f64 = 1e-6;

/// `(share + ε)^exponent`, with exponent 0 giving 1.
#[inline]
pub(crate) fn cost_term(share: f64, exponent: f64) -> f64 {
    if exponent == 0.0 { 1.0 } else { (share + EPSILON).powf(exponent) }
}
