//! `DagSonaEngine`: the two learning tiers over one set of components.
//!
//! - **Instant** (per query, microseconds): [`pre_query`](DagSonaEngine::pre_query) embeds the plan, predicts its
//!   native latency (BaseLoRA prediction plus the MicroLoRA residual, blended with the matching pattern's measured
//!   native latency when there is one) and looks up the most similar pattern for advice; [`post_query`](DagSonaEngine::post_query) takes one MicroLoRA gradient step on the residual of a
//!   native execution (with the EWC++ penalty, consolidating at detected task boundaries), records the execution
//!   in the ReasoningBank (the plan's pattern and the arm of its settings) and buffers the trajectory.
//! - **Background** (batch, off the query path): [`run_background_cycle`](DagSonaEngine::run_background_cycle)
//!   drains the buffer, trains BaseLoRA on the native executions (EWC++ against forgetting earlier plan classes),
//!   merges near-duplicate patterns, evicts beyond the pattern budget and rebuilds the IVF index with k-means++.
//!
//! The engine lives in this plugin crate, not in the framework, because it owns concrete components (LoRA, bank,
//! EWC); the framework keeps the [`LearningTier`](ruvector_dag::learning::LearningTier) trait the host calls and
//! the plan embedding, and imports no plugin (DESIGN.md's dependency rule).

use crate::bank::{DagReasoningBank, PatternMatch};
use crate::ewc::EwcPlusPlus;
use crate::lora::{LoRa, MicroLoRa};
use crate::trajectory::{DagTrajectory, DagTrajectoryBuffer};
use ruvector_dag::config::LearningSection;
use ruvector_dag::learning::embedding::plan_embedding;
use ruvector_dag::learning::{Advice, CycleReport, ExecutionMetrics};
use ruvector_dag::{QueryDag, Result};

/// Configuration of the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SonaConfig {
    /// Embedding dimension.
    pub dim: usize,
    /// MicroLoRA rank (1–2).
    pub micro_rank: usize,
    /// BaseLoRA rank.
    pub base_rank: usize,
    /// MicroLoRA learning rate.
    pub learning_rate: f32,
    /// BaseLoRA learning rate.
    pub base_learning_rate: f32,
    /// IVF lists (k of k-means++).
    pub clusters: usize,
    /// Minimum pattern quality (fraction of native latency saved) for advice to change settings.
    pub quality_threshold: f64,
    /// EWC++ λ (per-sample normalisation; see [`EwcPlusPlus`]).
    pub ewc_lambda: f32,
    /// EWC++ Fisher decay.
    pub ewc_decay: f32,
    /// Trajectory buffer capacity.
    pub trajectory_capacity: usize,
    /// Pattern budget.
    pub max_patterns: usize,
    /// Cosine a plan needs to a pattern for its advice to apply.
    pub match_threshold: f32,
    /// BaseLoRA epochs per background cycle.
    pub base_epochs: usize,
}

impl Default for SonaConfig {
    fn default() -> Self {
        Self::from_section(&LearningSection::default())
    }
}

impl SonaConfig {
    /// From `ruvector.toml`'s `[learning]` section.
    pub fn from_section(s: &LearningSection) -> Self {
        SonaConfig {
            dim: s.embedding_dim,
            micro_rank: s.micro_lora_rank.min(2),
            base_rank: s.base_lora_rank,
            learning_rate: s.learning_rate as f32,
            base_learning_rate: (s.learning_rate / 2.0) as f32,
            clusters: s.pattern_clusters,
            quality_threshold: s.quality_threshold,
            ewc_lambda: s.ewc_lambda as f32,
            ewc_decay: s.ewc_decay as f32,
            trajectory_capacity: s.trajectory_capacity,
            max_patterns: 10_000,
            match_threshold: 0.95,
            base_epochs: 3,
        }
    }
}

/// What the instant tier knows about a plan before it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryEnhancement {
    /// The plan's embedding.
    pub embedding: Vec<f32>,
    /// Predicted latency of the native plan, in milliseconds.
    pub predicted_latency_ms: f64,
    /// The most similar pattern, if any.
    pub pattern: Option<PatternMatch>,
    /// Advice from that pattern when it is similar and confident enough (empty settings: keep the native plan).
    pub advice: Option<Advice>,
}

/// The learning engine (see the [module docs](self)).
#[derive(Debug)]
pub struct DagSonaEngine {
    /// Configuration.
    pub config: SonaConfig,
    /// Per-query adapter (predicts the residual over BaseLoRA).
    pub micro: MicroLoRa,
    /// Background adapter (predicts ln(1 + native latency)).
    pub base: LoRa,
    /// Learned patterns.
    pub reasoning_bank: DagReasoningBank,
    /// Executions waiting for the background tier.
    pub trajectories: DagTrajectoryBuffer,
    /// EWC++ over the MicroLoRA parameters.
    pub ewc: EwcPlusPlus,
    /// EWC++ over the BaseLoRA parameters.
    pub base_ewc: EwcPlusPlus,
    queries: u64,
    /// Executions that joined an existing pattern, and those that started a new one (since this process began).
    pattern_hits: u64,
    pattern_misses: u64,
}

fn target(latency_ms: f64) -> f32 {
    (1.0 + latency_ms.max(0.0)).ln() as f32
}

impl DagSonaEngine {
    /// An engine with `config`.
    pub fn new(config: SonaConfig) -> Self {
        let micro = LoRa::micro(config.dim, config.micro_rank, config.learning_rate, 1);
        let base = LoRa::new(config.dim, config.base_rank, config.base_learning_rate, 2);
        let ewc = EwcPlusPlus::new(micro.parameter_count(), config.ewc_lambda, config.ewc_decay);
        let base_ewc = EwcPlusPlus::new(base.parameter_count(), config.ewc_lambda, config.ewc_decay);
        DagSonaEngine {
            micro,
            base,
            reasoning_bank: DagReasoningBank::new(config.dim),
            trajectories: DagTrajectoryBuffer::new(config.trajectory_capacity),
            ewc,
            base_ewc,
            config,
            queries: 0,
            pattern_hits: 0,
            pattern_misses: 0,
        }
    }

    /// The embedding the engine uses for `dag`.
    pub fn embed(&self, dag: &QueryDag) -> Vec<f32> {
        plan_embedding(dag, self.config.dim, None)
    }

    /// Predicted `ln(1 + native latency)` for an embedding.
    pub fn predict_log_latency(&mut self, embedding: &[f32]) -> f32 {
        self.base.predict(embedding) + self.micro.predict(embedding)
    }

    /// Before a plan runs: embedding, predicted native latency, nearest pattern and advice.
    pub fn pre_query(&mut self, dag: &QueryDag) -> Result<QueryEnhancement> {
        let embedding = self.embed(dag);
        let mut predicted = f64::from(self.predict_log_latency(&embedding));
        let pattern = self.reasoning_bank.query_similar(&embedding, 1).into_iter().next();
        // A plan the bank has seen run natively: blend its measured mean with the model, trusting the measurement
        // more with every execution behind it (n / (n + 2)); the model carries plans never seen.
        if let Some((native_ms, n)) =
            pattern.as_ref().filter(|p| p.similarity >= self.config.match_threshold).and_then(|p| p.native)
        {
            let w = n as f64 / (n as f64 + 2.0);
            predicted = w * native_ms.ln_1p() + (1.0 - w) * predicted;
        }
        let predicted = predicted.exp_m1().max(0.0);
        let advice = pattern.as_ref().filter(|p| p.similarity >= self.config.match_threshold).map(|p| {
            let steer = p.quality >= self.config.quality_threshold && !p.best_settings.is_empty();
            Advice {
                settings: if steer { p.best_settings.clone() } else { Vec::new() },
                predicted_ratio: if steer { p.predicted_ratio } else { 1.0 },
                confidence: p.confidence * f64::from(p.similarity.max(0.0)),
                pattern_id: Some(p.id),
            }
        });
        Ok(QueryEnhancement { embedding, predicted_latency_ms: predicted, pattern, advice })
    }

    /// After a plan ran: instant adaptation (native executions), pattern update, trajectory buffering.
    pub fn post_query(&mut self, dag: &QueryDag, metrics: &ExecutionMetrics) -> Result<()> {
        if !metrics.latency_ms.is_finite() || metrics.latency_ms < 0.0 {
            return Err(ruvector_dag::Error::Plugin {
                plugin: "learning".into(),
                message: format!("latency {} ms: expected a finite non-negative number", metrics.latency_ms),
            });
        }
        self.queries += 1;
        let embedding = self.embed(dag);
        if metrics.settings.is_empty() {
            let residual = target(metrics.latency_ms) - self.base.predict(&embedding);
            let err = self.micro.adapt(&embedding, residual, Some(&mut self.ewc));
            if self.ewc.observe_loss(f64::from(0.5 * err * err)) {
                self.ewc.consolidate(self.micro.parameters());
            }
        }
        let next = self.reasoning_bank.next_id();
        let pattern_id = self.reasoning_bank.observe(&embedding, &metrics.settings, metrics.latency_ms);
        if pattern_id < next {
            self.pattern_hits += 1;
        } else {
            self.pattern_misses += 1;
        }
        self.trajectories.push(DagTrajectory {
            embedding,
            plan_hash: ruvector_dag::attention::PlanFingerprint::of(dag).0 as u64,
            pattern_id,
            latency_ms: metrics.latency_ms,
            settings: metrics.settings.clone(),
        });
        Ok(())
    }

    /// The background cycle: train BaseLoRA on buffered native executions, maintain the bank, rebuild the index.
    pub fn run_background_cycle(&mut self) -> Result<CycleReport> {
        let batch = self.trajectories.drain();
        let mut consolidated = 0;
        let native: Vec<&DagTrajectory> = batch.iter().filter(|t| t.settings.is_empty()).collect();
        if !native.is_empty() {
            let mut epoch_loss = 0.0;
            for _ in 0..self.config.base_epochs {
                epoch_loss = 0.0;
                for t in &native {
                    let err = self.base.adapt(&t.embedding, target(t.latency_ms), Some(&mut self.base_ewc));
                    epoch_loss += f64::from(0.5 * err * err);
                }
            }
            // A jump in the batch loss means a new task: anchor what the earlier ones taught.
            if self.base_ewc.observe_loss(epoch_loss / native.len() as f64) {
                self.base_ewc.consolidate(self.base.parameters());
                consolidated = self.base.parameter_count();
            }
            // BaseLoRA moved: refit MicroLoRA's residual on this batch so the two are not counted twice.
            for t in &native {
                let residual = target(t.latency_ms) - self.base.predict(&t.embedding);
                self.micro.adapt(&t.embedding, residual, None);
            }
        }
        let merged = self.reasoning_bank.consolidate(0.995);
        let evicted = self.reasoning_bank.evict(self.config.max_patterns);
        let lists = self.reasoning_bank.rebuild_index(self.config.clusters, self.queries);
        Ok(CycleReport {
            trajectories_processed: batch.len(),
            // Patterns the batch's executions created or changed, plus those merged away or evicted.
            patterns_updated: batch.iter().map(|t| t.pattern_id).collect::<std::collections::HashSet<_>>().len()
                + merged
                + evicted,
            new_clusters: lists,
            ewc_constraints_updated: consolidated,
        })
    }

    /// Executions seen.
    pub fn queries(&self) -> u64 {
        self.queries
    }

    /// Executions that joined an existing pattern and executions that started a new one, since this engine was
    /// made (not saved with the state): the pattern hit rate is `hits / (hits + misses)`.
    pub fn pattern_hits(&self) -> (u64, u64) {
        (self.pattern_hits, self.pattern_misses)
    }

    pub(crate) fn set_queries(&mut self, queries: u64) {
        self.queries = queries;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruvector_dag::dag::generator::{DagShape, SplitMix64, generate};

    /// Many plan shapes with latencies spread over three orders of magnitude, the default configuration (λ = 5000)
    /// and background cycles in between, as a server's learner sees them: the model stays calibrated (the explicit
    /// EWC gradient step diverged here, to ln(1 + ms) ≈ −64, and predicted 0 ms for everything). Plans the bank
    /// merges into one pattern share its measured mean, hence a bound on the mean error, not on each plan's.
    #[test]
    fn predictions_stay_calibrated_on_a_mixed_workload_with_the_default_lambda() {
        let mut e = DagSonaEngine::new(SonaConfig::default());
        let shapes = [DagShape::Chain, DagShape::LeftDeepJoin, DagShape::BushyJoin, DagShape::VectorSearch];
        let plans: Vec<(QueryDag, f64)> = (0..24u64)
            .map(|i| {
                let dag = generate(shapes[i as usize % 4], 3 + (i as usize * 7) % 40, i);
                (dag, 0.01 * 10f64.powf(3.0 * i as f64 / 23.0))
            })
            .collect();
        let mut rng = SplitMix64::new(3);
        for round in 0..400 {
            let (dag, ms) = &plans[rng.below(plans.len())];
            let noisy = ms * (1.0 + 0.1 * rng.normal()).max(0.5);
            e.post_query(dag, &ExecutionMetrics { latency_ms: noisy, ..Default::default() }).unwrap();
            if round % 70 == 69 {
                e.run_background_cycle().unwrap();
            }
        }
        e.run_background_cycle().unwrap();
        let mut errors = Vec::new();
        for (dag, ms) in &plans {
            let predicted = e.pre_query(dag).unwrap().predicted_latency_ms;
            let model = e.predict_log_latency(&e.embed(dag));
            assert!(model.is_finite() && (-1.0..4.0).contains(&model), "model alone predicts ln(1+ms) = {model}");
            errors.push((predicted.ln_1p() - ms.ln_1p()).abs());
        }
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        assert!(mean < 0.3, "mean |ln(1+pred) - ln(1+true)| = {mean}: {errors:?}");
    }

    #[test]
    fn pattern_hits_count_executions_that_join_an_existing_pattern() {
        let mut e = DagSonaEngine::new(SonaConfig::default());
        let dag = generate(DagShape::Chain, 5, 1);
        let run =
            |e: &mut DagSonaEngine| e.post_query(&dag, &ExecutionMetrics { latency_ms: 3.0, ..Default::default() });
        run(&mut e).unwrap();
        assert_eq!(e.pattern_hits(), (0, 1), "the first execution starts a pattern");
        for _ in 0..4 {
            run(&mut e).unwrap();
        }
        assert_eq!(e.pattern_hits(), (4, 1));
        let other = generate(DagShape::VectorSearch, 30, 9);
        e.post_query(&other, &ExecutionMetrics { latency_ms: 3.0, ..Default::default() }).unwrap();
        assert_eq!(e.pattern_hits(), (4, 2), "an unlike plan is a miss");
    }
}
