//! The two `LearningTier` plugins, `instant` and `background`, over one shared engine per process.
//!
//! Both tiers are built from `ruvector.toml`'s `[learning]` settings; the first one built creates the engine
//! and the other shares it, so patterns the instant tier records are the ones the background tier maintains.

use crate::engine::{DagSonaEngine, SonaConfig};
use ruvector_dag::config::LearningSection;
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

/// Tier parameters: the `[learning]` section's model settings ([`LearningSection::model_params`], passed by
/// [`Config::plugin_params`](ruvector_dag::Config::plugin_params), checked against the same ranges) and the
/// engine's own `match_threshold` (0..=1), `max_patterns` (1..=10 000 000), `base_epochs` (1..=100).
pub(crate) fn config_from(params: &PluginParams) -> Result<SonaConfig> {
    let defaults = LearningSection::default();
    let model = defaults.model_params();
    let mut known: Vec<&str> = model.keys().map(String::as_str).collect();
    known.extend(["match_threshold", "max_patterns", "base_epochs"]);
    params.deny_unknown(&known)?;
    let e = SonaConfig::from_section(&defaults.with_params(params)?);
    Ok(SonaConfig {
        match_threshold: params.number_in("match_threshold", f64::from(e.match_threshold), 0.0..=1.0)? as f32,
        max_patterns: params.integer_in("max_patterns", e.max_patterns as i64, 1..=10_000_000)? as usize,
        base_epochs: params.integer_in("base_epochs", e.base_epochs as i64, 1..=100)? as usize,
        ..e
    })
}
