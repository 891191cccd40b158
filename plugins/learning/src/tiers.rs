//! The two `LearningTier` plugins, `instant` and `background`, over one shared engine per process.
//!
//! Both tiers are built from `ruvector.toml`'s `[learning]` settings; the first one built creates the engine
//! and the other shares it, so patterns the instant tier records are the ones the background tier maintains.

use crate::engine::{DagSonaEngine, SonaConfig};
use ruvector_dag::config::{LEARNING_SHARED_KEYS, LearningSection};
use ruvector_dag::learning::{Advice, CycleReport, ExecutionMetrics, LearningTier};
use ruvector_dag::plugin::PluginParams;
use ruvector_dag::{QueryDag, Result};
use std::sync::{Arc, Mutex, OnceLock};

static SHARED: OnceLock<Arc<Mutex<DagSonaEngine>>> = OnceLock::new();

/// The process's engine, created with `config` the first time.
pub fn shared_engine(config: SonaConfig) -> Arc<Mutex<DagSonaEngine>> {
    SHARED.get_or_init(|| Arc::new(Mutex::new(DagSonaEngine::new(config)))).clone()
}

fn lock(engine: &Mutex<DagSonaEngine>) -> std::sync::MutexGuard<'_, DagSonaEngine> {
    // A panic while holding the lock leaves the engine usable: its state is updated in whole steps.
    engine.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The per-query tier: advice before a plan runs, adaptation after.
#[derive(Debug, Clone)]
pub struct InstantTier {
    engine: Arc<Mutex<DagSonaEngine>>,
}

impl InstantTier {
    /// A tier over `engine`.
    pub fn new(engine: Arc<Mutex<DagSonaEngine>>) -> Self {
        InstantTier { engine }
    }
}

impl LearningTier for InstantTier {
    fn name(&self) -> &str {
        "instant"
    }

    fn pre_query(&self, dag: &QueryDag) -> Result<Option<Advice>> {
        Ok(lock(&self.engine).pre_query(dag)?.advice)
    }

    fn post_query(&mut self, dag: &QueryDag, metrics: &ExecutionMetrics) -> Result<()> {
        lock(&self.engine).post_query(dag, metrics)
    }
}

/// The batch tier: BaseLoRA training, pattern maintenance and re-indexing, off the query path.
#[derive(Debug, Clone)]
pub struct BackgroundTier {
    engine: Arc<Mutex<DagSonaEngine>>,
}

impl BackgroundTier {
    /// A tier over `engine`.
    pub fn new(engine: Arc<Mutex<DagSonaEngine>>) -> Self {
        BackgroundTier { engine }
    }
}

impl LearningTier for BackgroundTier {
    fn name(&self) -> &str {
        "background"
    }

    fn run_cycle(&mut self) -> Result<CycleReport> {
        lock(&self.engine).run_background_cycle()
    }
}

/// Tier parameters: the `[learning]` section's settings ([`LEARNING_SHARED_KEYS`], passed by
/// [`Config::plugin_params`](ruvector_dag::Config::plugin_params), same ranges as there) and the engine's own
/// `match_threshold` (0..=1), `max_patterns` (1..=10 000 000), `base_epochs` (1..=100).
pub(crate) fn config_from(params: &PluginParams) -> Result<SonaConfig> {
    let mut known: Vec<&str> = LEARNING_SHARED_KEYS.to_vec();
    known.extend(["match_threshold", "max_patterns", "base_epochs"]);
    params.deny_unknown(&known)?;
    let d = LearningSection::default();
    let int = |key: &str, default: usize, range: std::ops::RangeInclusive<i64>| -> Result<usize> {
        Ok(params.integer_in(key, default as i64, range)? as usize)
    };
    let section = LearningSection {
        learning_rate: params.number_in("learning_rate", d.learning_rate, 0.0001..=1.0)?,
        embedding_dim: int("embedding_dim", d.embedding_dim, 8..=4096)?,
        micro_lora_rank: int("micro_lora_rank", d.micro_lora_rank, 1..=4)?,
        base_lora_rank: int("base_lora_rank", d.base_lora_rank, 4..=64)?,
        pattern_clusters: int("pattern_clusters", d.pattern_clusters, 10..=1000)?,
        quality_threshold: params.number_in("quality_threshold", d.quality_threshold, 0.0..=1.0)?,
        ewc_lambda: params.number_in("ewc_lambda", d.ewc_lambda, 0.0..=50_000.0)?,
        ewc_decay: params.number_in("ewc_decay", d.ewc_decay, f64::MIN_POSITIVE..=1.0)?,
        trajectory_capacity: int("trajectory_capacity", d.trajectory_capacity, 16..=1_000_000)?,
        ..d
    };
    let e = SonaConfig::from_section(&section);
    Ok(SonaConfig {
        match_threshold: params.number_in("match_threshold", f64::from(e.match_threshold), 0.0..=1.0)? as f32,
        max_patterns: params.integer_in("max_patterns", e.max_patterns as i64, 1..=10_000_000)? as usize,
        base_epochs: params.integer_in("base_epochs", e.base_epochs as i64, 1..=100)? as usize,
        ..e
    })
}
