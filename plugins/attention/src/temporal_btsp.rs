//! Temporal BTSP attention: per-operator weights learned from executions by behavioural-timescale plasticity
//! (Bittner et al., Science 2017; Milstein et al., eLife 2021), on top of a structural cost score.
//!
//! Operators are keyed by their [signature](ruvector_dag::attention::operator_signature) (kind, relation,
//! index), so what is learned carries across queries. Time comes from an injected [`Clock`].
//!
//! - **Eligibility**: every execution adds 1 to the trace of each operator it ran; traces decay as
//!   `exp(−Δt / tau_pre_ms)`.
//! - **Plateau**: an execution slower than `plateau_ratio` × its plan's running mean latency (after three
//!   executions) is an instructive event. At a plateau, each operator's weight moves by
//!   `Δw = s · (η₊ (w_max − w) − η₋ w)` with `s = min(trace, 1)`: potentiation of recently active operators,
//!   towards the fixed point `w* = η₊ w_max / (η₊ + η₋)` (η₋ = η₊ / 2) — below it weights grow, above it they
//!   shrink. Operators run within `tau_post_ms` *after* a plateau are updated with `s = exp(−Δt / tau_post_ms)`,
//!   so with `tau_pre_ms > tau_post_ms` the kernel is asymmetric. Eligibility below `e^−5` (inactive for five
//!   time constants) changes nothing. Weights stay in `[0, w_max]`.
//! - **Attention**: `w_i ∝ exp((share_i + β · w_sig(i)) / temperature)`.

use crate::clock::{Clock, MonotonicClock};
use crate::config::{AttentionConfig, BtspParams};
use rustc_hash::FxHashMap;
use ruvector_dag::attention::{AttentionScores, DagAttention, PreparedDag, operator_signature};
use ruvector_dag::learning::ExecutionMetrics;
use ruvector_dag::{QueryDag, Result};
use std::sync::Arc;

/// Eligibility below this (five time constants) is treated as none.
const MIN_ELIGIBILITY: f64 = 0.006_737_946_999_085_467; // e^-5

#[derive(Debug, Clone, Copy, Default)]
struct Synapse {
    weight: f64,
    trace: f64,
    /// When `trace` was last brought up to date.
    at_ms: f64,
}

/// Plasticity-driven attention (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct TemporalBTSPAttention {
    params: BtspParams,
    clock: Arc<dyn Clock>,
    synapses: FxHashMap<u64, Synapse>,
    /// Running mean latency and count per plan (key: combined signatures).
    latency: FxHashMap<u64, (f64, u32)>,
    last_plateau_ms: Option<f64>,
    plateaus: u64,
}

impl TemporalBTSPAttention {
    /// Registered name.
    pub const NAME: &'static str = "temporal_btsp";

    /// From the shared configuration, with a real monotonic clock.
    pub fn new(config: AttentionConfig) -> Self {
        Self::with_clock(config.temporal_btsp, Arc::new(MonotonicClock::default()))
    }

    /// From this mechanism's parameters and a clock.
    pub fn with_clock(params: BtspParams, clock: Arc<dyn Clock>) -> Self {
        TemporalBTSPAttention {
            params,
            clock,
            synapses: FxHashMap::default(),
            latency: FxHashMap::default(),
            last_plateau_ms: None,
            plateaus: 0,
        }
    }

    /// The learned weight of an operator signature (0 when never learned).
    pub fn weight(&self, signature: u64) -> f64 {
        self.synapses.get(&signature).map_or(0.0, |s| s.weight)
    }

    /// Plateaus seen so far.
    pub fn plateaus(&self) -> u64 {
        self.plateaus
    }

    /// The weight all updates move towards.
    pub fn fixed_point(&self) -> f64 {
        let (up, down) = (self.params.learning_rate, self.params.learning_rate / 2.0);
        if up + down == 0.0 { 0.0 } else { up * self.params.w_max / (up + down) }
    }

    fn plasticity(&self, synapse: &mut Synapse, eligibility: f64) {
        if eligibility < MIN_ELIGIBILITY {
            return;
        }
        let s = eligibility.min(1.0);
        let (up, down) = (self.params.learning_rate, self.params.learning_rate / 2.0);
        let w = synapse.weight;
        synapse.weight = (w + s * (up * (self.params.w_max - w) - down * w)).clamp(0.0, self.params.w_max);
    }

    /// Records one execution of `dag` at the clock's current time.
    pub fn observe(&mut self, dag: &QueryDag, latency_ms: f64) {
        let now = self.clock.now_ms();
        let tau_pre = self.params.tau_pre_ms;
        let signatures: Vec<u64> = dag.nodes().map(|n| operator_signature(n.op)).collect();
        let plan_key = signatures.iter().fold(0u64, |acc, s| acc.rotate_left(5) ^ s);

        // Activity after a recent plateau: the post-event side of the kernel.
        if let Some(tp) = self.last_plateau_ms {
            let post = (-(now - tp) / self.params.tau_post_ms).exp();
            for sig in &signatures {
                let mut syn = self.synapses.get(sig).copied().unwrap_or(Synapse { at_ms: now, ..Synapse::default() });
                self.plasticity(&mut syn, post);
                self.synapses.insert(*sig, syn);
            }
        }
        // Eligibility traces.
        for sig in &signatures {
            let syn = self.synapses.entry(*sig).or_insert(Synapse { at_ms: now, ..Synapse::default() });
            syn.trace = syn.trace * (-(now - syn.at_ms) / tau_pre).exp() + 1.0;
            syn.at_ms = now;
        }
        // Plateau: this plan ran much slower than usual.
        let (mean, count) = self.latency.get(&plan_key).copied().unwrap_or((latency_ms, 0));
        let plateau = count >= 3 && latency_ms > self.params.plateau_ratio * mean;
        let new_mean = if count == 0 { latency_ms } else { mean + 0.2 * (latency_ms - mean) };
        self.latency.insert(plan_key, (new_mean, count.saturating_add(1)));
        if plateau {
            self.plateaus += 1;
            self.last_plateau_ms = Some(now);
            let keys: Vec<u64> = self.synapses.keys().copied().collect();
            for k in keys {
                let mut syn = self.synapses[&k];
                syn.trace *= (-(now - syn.at_ms) / tau_pre).exp();
                syn.at_ms = now;
                let eligibility = syn.trace;
                self.plasticity(&mut syn, eligibility);
                self.synapses.insert(k, syn);
            }
        }
    }
}

impl DagAttention for TemporalBTSPAttention {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn forward(&self, dag: &QueryDag) -> Result<AttentionScores> {
        crate::forward_via_prepared(self, dag)
    }

    fn forward_prepared(&self, dag: &PreparedDag, out: &mut AttentionScores) -> Result<()> {
        let p = self.params;
        out.fill_softmax(dag.n, p.temperature, |i| {
            dag.share[i] + p.beta * self.synapses.get(&dag.signature[i]).map_or(0.0, |s| s.weight)
        })
    }

    fn update(&mut self, dag: &QueryDag, metrics: &ExecutionMetrics) -> Result<()> {
        if !metrics.latency_ms.is_finite() || metrics.latency_ms < 0.0 {
            return Err(ruvector_dag::Error::Plugin {
                plugin: Self::NAME.into(),
                message: format!("latency {} ms: expected a finite non-negative number", metrics.latency_ms),
            });
        }
        self.observe(dag, metrics.latency_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use ruvector_dag::OperatorNode;

    fn scan(table: &str) -> QueryDag {
        let mut dag = QueryDag::new();
        dag.add_node(0, OperatorNode::SeqScan { table: table.into() });
        dag
    }

    fn sig(table: &str) -> u64 {
        operator_signature(&OperatorNode::SeqScan { table: table.into() })
    }

    /// Plan "p" runs three times at 10 ms (t = 0, 1, 2 s), then at 100 ms at `t_p` (a plateau).
    fn with_plateau_at(
        m: &mut TemporalBTSPAttention,
        clock: &ManualClock,
        t_p: f64,
        before: impl FnOnce(&mut TemporalBTSPAttention, &ManualClock),
    ) {
        for _ in 0..3 {
            m.observe(&scan("p"), 10.0);
            clock.advance(1000.0);
        }
        before(m, clock);
        clock.advance(t_p - clock.now_ms());
        m.observe(&scan("p"), 100.0);
    }

    fn mechanism() -> (TemporalBTSPAttention, ManualClock) {
        let clock = ManualClock::new();
        let m = TemporalBTSPAttention::with_clock(
            BtspParams { tau_pre_ms: 10_000.0, tau_post_ms: 2_000.0, ..BtspParams::default() },
            Arc::new(clock.clone()),
        );
        (m, clock)
    }

    #[test]
    fn one_plateau_potentiates_recent_activity_asymmetrically_and_locally() {
        let (mut m, clock) = mechanism();
        let t_p = 100_000.0;
        with_plateau_at(&mut m, &clock, t_p, |m, clock| {
            clock.advance(t_p - 60_000.0 - clock.now_ms());
            m.observe(&scan("z"), 5.0); // six tau_pre before: outside the kernel
            clock.advance(59_000.0);
            m.observe(&scan("x"), 5.0); // one second before
        });
        assert_eq!(m.plateaus(), 1);
        assert!(m.weight(sig("p")) > 0.0, "the plateau's own operators are potentiated in one shot");
        clock.advance(1000.0);
        m.observe(&scan("y"), 5.0); // one second after
        let (wx, wy, wz) = (m.weight(sig("x")), m.weight(sig("y")), m.weight(sig("z")));
        assert!(wx > 0.0 && wy > 0.0);
        assert!(
            wx > wy,
            "pre-plateau activity (tau 10 s) gains more than post-plateau activity (tau 2 s): {wx} vs {wy}"
        );
        assert_eq!(wz, 0.0, "activity six time constants earlier is untouched");
        // The exact one-shot amounts: s · η₊ · w_max from w = 0.
        assert!((wx - (-1.0f64 / 10.0).exp() * 0.5).abs() < 1e-12);
        assert!((wy - (-1.0f64 / 2.0).exp() * 0.5).abs() < 1e-12);
    }

    #[test]
    fn weights_approach_a_fixed_point_and_stay_bounded() {
        let (mut m, clock) = mechanism();
        let w_star = m.fixed_point();
        assert!((w_star - 2.0 / 3.0).abs() < 1e-12);
        let mut previous = 0.0;
        for round in 0..50 {
            // A fresh plan each round: three normal runs, then a slow one.
            let table = format!("q{round}");
            for _ in 0..3 {
                m.observe(&scan(&table), 10.0);
                m.observe(&scan("hot"), 1.0);
                clock.advance(10.0);
            }
            m.observe(&scan(&table), 1000.0);
            let w = m.weight(sig("hot"));
            assert!((0.0..=1.0).contains(&w));
            if previous < w_star {
                assert!(w >= previous, "below the fixed point, plateaus potentiate");
            }
            previous = w;
        }
        assert!((previous - w_star).abs() < 1e-6, "converged to {previous}, fixed point {w_star}");
    }

    #[test]
    fn learned_weights_shift_attention_and_time_is_injected() {
        let (mut m, clock) = mechanism();
        let mut plan = QueryDag::new();
        plan.add_node(0, OperatorNode::SeqScan { table: "hot".into() });
        plan.add_node(1, OperatorNode::SeqScan { table: "cold".into() });
        plan.add_node(2, OperatorNode::Append);
        plan.add_edge(0, 2).unwrap();
        plan.add_edge(1, 2).unwrap();
        let before = m.forward(&plan).unwrap();
        assert_eq!(before.as_slice()[0], before.as_slice()[1]);
        with_plateau_at(&mut m, &clock, 5000.0, |m, _| m.observe(&scan("hot"), 1.0));
        let after = m.forward(&plan).unwrap();
        assert!(after.as_slice()[0] > after.as_slice()[1], "the operator active before the plateau gained attention");
        // Same inputs, same clock readings: same result.
        let (mut m2, clock2) = mechanism();
        with_plateau_at(&mut m2, &clock2, 5000.0, |m, _| m.observe(&scan("hot"), 1.0));
        assert_eq!(m2.forward(&plan).unwrap(), after);
        assert!(m.update(&plan, &ExecutionMetrics { latency_ms: f64::NAN, ..Default::default() }).is_err());
    }
}
