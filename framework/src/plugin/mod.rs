//! Plugins: registration, lookup by kind and name, and building the configured set.
//!
//! Every attention mechanism, learning tier, repair strategy and network transport is a plugin. A built-in
//! plugin crate registers a [`PluginRegistration`] per plugin with [`submit_plugin!`]; the host links the crate
//! (`use ruvector_dag_attention as _;`) so the registrations are kept, and [`Registry::builtin`] collects
//! them. [`Registry::build`] then turns the [`Config`](crate::Config) into live plugin objects, with errors that
//! name the configuration key when a name or parameter is wrong.
//!
//! ```
//! use ruvector_dag::attention::{AttentionScores, DagAttention};
//! use ruvector_dag::plugin::{Factory, PluginKind, PluginParams, PluginRegistration, Registry};
//! use ruvector_dag::{QueryDag, Result};
//!
//! struct Uniform;
//! impl DagAttention for Uniform {
//!     fn name(&self) -> &str { "uniform" }
//!     fn forward(&self, dag: &QueryDag) -> Result<AttentionScores> { Ok(AttentionScores::uniform(dag)) }
//! }
//!
//! fn make(params: &PluginParams) -> Result<Box<dyn DagAttention>> {
//!     params.deny_unknown(&[])?;
//!     Ok(Box::new(Uniform))
//! }
//!
//! ruvector_dag::submit_plugin! {
//!     PluginRegistration {
//!         name: "uniform",
//!         version: "1.0.0",
//!         description: "equal weight on every node",
//!         factory: Factory::Attention(make),
//!     }
//! }
//!
//! let registry = Registry::builtin()?;
//! let mech = registry.attention("uniform", &PluginParams::empty("attention.uniform"))?;
//! assert_eq!(mech.name(), "uniform");
//! let err = registry.attention("unifrom", &PluginParams::empty("attention.unifrom")).err().unwrap();
//! assert!(err.to_string().starts_with("unknown attention plugin `unifrom`; available: "));
//! # Ok::<(), ruvector_dag::Error>(())
//! ```

mod dynamic;
mod params;
mod registry;

pub use dynamic::DynamicLoad;
pub use params::PluginParams;
pub use registry::{DynAttentionFactory, DynRepairFactory, PluginEntry, PluginSet, Registry};

use crate::attention::DagAttention;
use crate::error::Result;
use crate::healing::RepairStrategy;
use crate::learning::LearningTier;
use crate::network::NetworkTransport;
use std::fmt;

#[doc(hidden)]
pub use inventory as __inventory;

/// The four families of plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    /// [`DagAttention`] mechanisms.
    Attention,
    /// [`LearningTier`]s.
    Learning,
    /// [`RepairStrategy`]s.
    Repair,
    /// [`NetworkTransport`]s.
    Network,
}

impl PluginKind {
    /// Every kind.
    pub const ALL: [PluginKind; 4] =
        [PluginKind::Attention, PluginKind::Learning, PluginKind::Repair, PluginKind::Network];

    /// Lower-case name: `attention`, `learning`, `repair`, `network`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Attention => "attention",
            PluginKind::Learning => "learning",
            PluginKind::Repair => "repair",
            PluginKind::Network => "network",
        }
    }

    /// The `ruvector.toml` section holding this kind's plugins.
    pub fn section(self) -> &'static str {
        match self {
            PluginKind::Repair => "healing",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds an attention mechanism from its parameters.
pub type AttentionFactory = fn(&PluginParams) -> Result<Box<dyn DagAttention>>;
/// Builds a learning tier from its parameters.
pub type LearningFactory = fn(&PluginParams) -> Result<Box<dyn LearningTier>>;
/// Builds a repair strategy from its parameters.
pub type RepairFactory = fn(&PluginParams) -> Result<Box<dyn RepairStrategy>>;
/// Builds a network transport from its parameters.
pub type NetworkFactory = fn(&PluginParams) -> Result<Box<dyn NetworkTransport>>;

/// A plugin's constructor; the variant is the plugin's kind.
#[derive(Debug, Clone, Copy)]
pub enum Factory {
    /// An attention mechanism.
    Attention(AttentionFactory),
    /// A learning tier.
    Learning(LearningFactory),
    /// A repair strategy.
    Repair(RepairFactory),
    /// A network transport.
    Network(NetworkFactory),
}

impl Factory {
    /// The kind of plugin this factory builds.
    pub fn kind(&self) -> PluginKind {
        match self {
            Factory::Attention(_) => PluginKind::Attention,
            Factory::Learning(_) => PluginKind::Learning,
            Factory::Repair(_) => PluginKind::Repair,
            Factory::Network(_) => PluginKind::Network,
        }
    }
}

/// A built-in plugin's static registration, submitted with [`submit_plugin!`].
#[derive(Debug)]
pub struct PluginRegistration {
    /// Name used in `ruvector.toml` and SQL: lower-case, `snake_case`, unique within its kind.
    pub name: &'static str,
    /// The plugin's version (semver).
    pub version: &'static str,
    /// One line describing what it does.
    pub description: &'static str,
    /// Constructor; its variant is the kind.
    pub factory: Factory,
}

inventory::collect!(PluginRegistration);

/// Registers a built-in plugin: `submit_plugin! { PluginRegistration { name, version, description, factory } }`.
#[macro_export]
macro_rules! submit_plugin {
    ($registration:expr) => {
        $crate::plugin::__inventory::submit! { $registration }
    };
}
