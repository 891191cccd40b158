//! SONA learning for ruvector-dag: MicroLoRA, trajectory buffer, ReasoningBank, EWC++, and the two
//! `LearningTier` plugins (`instant`, `background`) over a [`DagSonaEngine`].
//!
//! ```
//! use ruvector_dag::dag::generator::{generate, DagShape};
//! use ruvector_dag::learning::ExecutionMetrics;
//! use ruvector_dag_learning::{DagSonaEngine, SonaConfig};
//!
//! let mut sona = DagSonaEngine::new(SonaConfig::default());
//! let dag = generate(DagShape::BushyJoin, 40, 1);
//! sona.post_query(&dag, &ExecutionMetrics { latency_ms: 12.0, ..Default::default() })?;
//! assert_eq!(sona.reasoning_bank.query_similar(&dag.embedding(), 1).len(), 1);
//! # Ok::<(), ruvector_dag::Error>(())
//! ```
#![warn(missing_docs)]

mod bank;
mod engine;
mod ewc;
mod lora;
mod state;
mod tiers;
mod trajectory;

pub use bank::{Arm, DagReasoningBank, ImportedPattern, Pattern, PatternMatch};
pub use engine::{DagSonaEngine, QueryEnhancement, SonaConfig};
pub use ewc::EwcPlusPlus;
pub use lora::{LoRa, MicroLoRa};
pub use state::{Restored, STATE_VERSION};
pub use tiers::{BackgroundTier, InstantTier, shared_engine};
pub use trajectory::{DagTrajectory, DagTrajectoryBuffer};

use ruvector_dag::learning::LearningTier;
use ruvector_dag::plugin::{Factory, PluginParams, PluginRegistration};
use ruvector_dag::{Result, submit_plugin};

fn make_instant(p: &PluginParams) -> Result<Box<dyn LearningTier>> {
    Ok(Box::new(InstantTier::new(shared_engine(tiers::config_from(p)?))))
}

fn make_background(p: &PluginParams) -> Result<Box<dyn LearningTier>> {
    Ok(Box::new(BackgroundTier::new(shared_engine(tiers::config_from(p)?))))
}

submit_plugin!(PluginRegistration {
    name: "instant",
    version: env!("CARGO_PKG_VERSION"),
    description: "per-query MicroLoRA adaptation and pattern advice",
    factory: Factory::Learning(make_instant),
});
submit_plugin!(PluginRegistration {
    name: "background",
    version: env!("CARGO_PKG_VERSION"),
    description: "BaseLoRA training, EWC++ consolidation, pattern clustering",
    factory: Factory::Learning(make_background),
});

/// Dot product with eight independent accumulators over exact chunks (no bounds checks, so it vectorises; the
/// plain `zip().sum()` is one sequential chain and does not).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}
