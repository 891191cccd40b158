//! The plugin registry and the configured plugin set.

use super::{Factory, PluginKind, PluginParams, PluginRegistration};
use crate::attention::DagAttention;
use crate::config::{Config, ConfigError, Selection};
use crate::error::{Error, Result};
use crate::healing::RepairStrategy;
use crate::learning::LearningTier;
use crate::network::NetworkTransport;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Builds an attention mechanism of a dynamically loaded plugin; captures the library's constructor.
pub type DynAttentionFactory = Arc<dyn Fn(&PluginParams) -> Result<Box<dyn DagAttention>> + Send + Sync>;
/// Builds a repair strategy of a dynamically loaded plugin; captures the library's constructor.
pub type DynRepairFactory = Arc<dyn Fn(&PluginParams) -> Result<Box<dyn RepairStrategy>> + Send + Sync>;

/// How an entry builds its plugin: a static function, or a closure over a loaded library.
#[derive(Clone)]
enum Make {
    Static(Factory),
    Attention(DynAttentionFactory),
    Repair(DynRepairFactory),
}

/// One registered plugin.
#[derive(Clone)]
pub struct PluginEntry {
    name: String,
    version: String,
    description: String,
    origin: String,
    kind: PluginKind,
    make: Make,
}

impl fmt::Debug for PluginEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginEntry")
            .field("kind", &self.kind())
            .field("name", &self.name)
            .field("version", &self.version)
            .field("origin", &self.origin)
            .finish()
    }
}

impl PluginEntry {
    /// An entry for a plugin that is not a static registration; `origin` says where it came from.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
        origin: impl Into<String>,
        factory: Factory,
    ) -> Self {
        let kind = factory.kind();
        Self::with_make(name.into(), version.into(), description.into(), origin.into(), kind, Make::Static(factory))
    }

    fn with_make(
        name: String,
        version: String,
        description: String,
        origin: String,
        kind: PluginKind,
        make: Make,
    ) -> Self {
        PluginEntry { name, version, description, origin, kind, make }
    }

    /// An attention mechanism built by a closure, e.g. over a dynamically loaded library (`origin`: its path).
    pub fn dynamic_attention(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
        origin: impl Into<String>,
        make: DynAttentionFactory,
    ) -> Self {
        let (name, version, description, origin) = (name.into(), version.into(), description.into(), origin.into());
        Self::with_make(name, version, description, origin, PluginKind::Attention, Make::Attention(make))
    }

    /// A repair strategy built by a closure, e.g. over a dynamically loaded library (`origin`: its path).
    pub fn dynamic_repair(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
        origin: impl Into<String>,
        make: DynRepairFactory,
    ) -> Self {
        let (name, version, description, origin) = (name.into(), version.into(), description.into(), origin.into());
        Self::with_make(name, version, description, origin, PluginKind::Repair, Make::Repair(make))
    }

    fn from_registration(r: &PluginRegistration) -> Self {
        PluginEntry::new(r.name, r.version, r.description, "built-in", r.factory)
    }

    /// The plugin's kind.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// Registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// One-line description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// `built-in`, or where a dynamic plugin was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The static constructor; `None` for a plugin built by a closure (a dynamically loaded one).
    pub fn factory(&self) -> Option<Factory> {
        match self.make {
            Make::Static(f) => Some(f),
            _ => None,
        }
    }

    /// True for a plugin loaded from a shared library.
    pub fn is_dynamic(&self) -> bool {
        !matches!(self.make, Make::Static(_))
    }
}

/// Every known plugin, by kind and name.
///
/// Built from the static registrations of linked plugin crates ([`Registry::builtin`]), optionally extended
/// with [`register`](Registry::register). Lookups of unknown names fail with the list of available names.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    entries: BTreeMap<(PluginKind, String), PluginEntry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every plugin registered with [`submit_plugin!`](crate::submit_plugin) in the linked crates.
    ///
    /// # Errors
    /// [`Error::DuplicatePlugin`] when two registrations share a kind and name.
    pub fn builtin() -> Result<Self> {
        let mut registry = Registry::new();
        for r in inventory::iter::<PluginRegistration> {
            registry.register(PluginEntry::from_registration(r))?;
        }
        Ok(registry)
    }

    /// Adds a plugin.
    ///
    /// # Errors
    /// [`Error::DuplicatePlugin`] when one of the same kind and name exists.
    pub fn register(&mut self, entry: PluginEntry) -> Result<()> {
        let key = (entry.kind(), entry.name.clone());
        if let Some(existing) = self.entries.get(&key) {
            return Err(Error::DuplicatePlugin {
                kind: entry.kind(),
                name: entry.name,
                first: format!("{} ({})", existing.version, existing.origin),
                second: format!("{} ({})", entry.version, entry.origin),
            });
        }
        self.entries.insert(key, entry);
        Ok(())
    }

    /// All plugins, ordered by kind, then name.
    pub fn iter(&self) -> impl Iterator<Item = &PluginEntry> {
        self.entries.values()
    }

    /// Names of the plugins of `kind`, sorted.
    pub fn names(&self, kind: PluginKind) -> Vec<String> {
        self.entries
            .range((kind, String::new())..)
            .take_while(|((k, _), _)| *k == kind)
            .map(|((_, n), _)| n.clone())
            .collect()
    }

    /// The plugin of `kind` named `name`.
    ///
    /// # Errors
    /// [`Error::UnknownPlugin`] listing the available names of that kind.
    pub fn find(&self, kind: PluginKind, name: &str) -> Result<&PluginEntry> {
        self.entries.get(&(kind, name.to_owned())).ok_or_else(|| Error::UnknownPlugin {
            kind,
            name: name.to_owned(),
            available: self.names(kind),
        })
    }

    /// Builds the attention mechanism `name`.
    pub fn attention(&self, name: &str, params: &PluginParams) -> Result<Box<dyn DagAttention>> {
        match &self.find(PluginKind::Attention, name)?.make {
            Make::Static(Factory::Attention(make)) => make(params),
            Make::Attention(make) => make(params),
            _ => unreachable!("entries are keyed by their factory's kind"),
        }
    }

    /// Builds the learning tier `name`.
    pub fn learning(&self, name: &str, params: &PluginParams) -> Result<Box<dyn LearningTier>> {
        match &self.find(PluginKind::Learning, name)?.make {
            Make::Static(Factory::Learning(make)) => make(params),
            _ => unreachable!("entries are keyed by their factory's kind"),
        }
    }

    /// Builds the repair strategy `name`.
    pub fn repair(&self, name: &str, params: &PluginParams) -> Result<Box<dyn RepairStrategy>> {
        match &self.find(PluginKind::Repair, name)?.make {
            Make::Static(Factory::Repair(make)) => make(params),
            Make::Repair(make) => make(params),
            _ => unreachable!("entries are keyed by their factory's kind"),
        }
    }

    /// Builds the network transport `name`.
    pub fn network(&self, name: &str, params: &PluginParams) -> Result<Box<dyn NetworkTransport>> {
        match &self.find(PluginKind::Network, name)?.make {
            Make::Static(Factory::Network(make)) => make(params),
            _ => unreachable!("entries are keyed by their factory's kind"),
        }
    }

    /// Builds every plugin the configuration enables.
    ///
    /// # Errors
    /// A configuration error naming the key when a configured name is not registered, when a parameter table
    /// names no registered plugin, or when `attention.mechanism` is neither `auto` nor an enabled mechanism;
    /// the plugin's own error when its parameters are invalid.
    pub fn build(&self, config: &Config) -> Result<PluginSet> {
        for kind in PluginKind::ALL {
            for name in config.params(kind).keys() {
                if self.find(kind, name).is_err() {
                    return Err(ConfigError::UnknownKey {
                        key: format!("{}.{name}", kind.section()),
                        hint: format!("not a registered {kind} plugin; registered: {}", listing(&self.names(kind))),
                        origin: None,
                    }
                    .into());
                }
            }
        }
        let attention_names = self.selected(PluginKind::Attention, "attention.enabled", &config.attention.enabled)?;
        let mechanism = &config.attention.mechanism;
        let fixed = if mechanism == "auto" {
            None
        } else {
            Some(attention_names.iter().position(|n| n == mechanism).ok_or_else(|| {
                ConfigError::invalid(
                    "attention.mechanism",
                    &serde_json::Value::String(mechanism.clone()),
                    &format!("\"auto\" or an enabled mechanism ({})", listing(&attention_names)),
                )
            })?)
        };
        let attention = attention_names
            .iter()
            .map(|n| self.attention(n, &config.plugin_params(PluginKind::Attention, n)))
            .collect::<Result<Vec<_>>>()?;

        let learning_names = self.selected(PluginKind::Learning, "learning.tiers", &config.learning.tiers)?;
        let learning = learning_names
            .iter()
            .map(|n| self.learning(n, &config.plugin_params(PluginKind::Learning, n)))
            .collect::<Result<Vec<_>>>()?;

        let repair = if config.healing.enabled {
            let names = self.selected(PluginKind::Repair, "healing.strategies", &config.healing.strategies)?;
            names
                .iter()
                .map(|n| self.repair(n, &config.plugin_params(PluginKind::Repair, n)))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };

        let network = if config.network.enabled {
            let name = &config.network.transport;
            if self.find(PluginKind::Network, name).is_err() {
                return Err(ConfigError::invalid(
                    "network.transport",
                    &serde_json::Value::String(name.clone()),
                    &format!("a registered network plugin ({})", listing(&self.names(PluginKind::Network))),
                )
                .into());
            }
            Some(self.network(name, &config.plugin_params(PluginKind::Network, name))?)
        } else {
            None
        };

        Ok(PluginSet { attention, fixed_attention: fixed, learning, repair, network })
    }

    /// Resolves a configured selection to registered names, naming the offending key and index on error.
    fn selected(&self, kind: PluginKind, key: &str, selection: &Selection) -> Result<Vec<String>> {
        match selection {
            Selection::All => Ok(self.names(kind)),
            Selection::Only(names) => {
                for (i, name) in names.iter().enumerate() {
                    if self.find(kind, name).is_err() {
                        return Err(ConfigError::invalid(
                            &format!("{key}[{i}]"),
                            &serde_json::Value::String(name.clone()),
                            &format!("a registered {kind} plugin ({})", listing(&self.names(kind))),
                        )
                        .into());
                    }
                }
                Ok(names.clone())
            }
        }
    }
}

fn listing(names: &[String]) -> String {
    if names.is_empty() { "none registered".to_owned() } else { names.join(", ") }
}

/// The live plugins a configuration selects, in configuration order.
pub struct PluginSet {
    /// Enabled attention mechanisms.
    pub attention: Vec<Box<dyn DagAttention>>,
    /// Index into `attention` of the fixed mechanism, or `None` when the selector chooses (`mechanism = "auto"`).
    pub fixed_attention: Option<usize>,
    /// Enabled learning tiers.
    pub learning: Vec<Box<dyn LearningTier>>,
    /// Enabled repair strategies (empty when healing is off).
    pub repair: Vec<Box<dyn RepairStrategy>>,
    /// The network transport, when the network is enabled.
    pub network: Option<Box<dyn NetworkTransport>>,
}

impl fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSet")
            .field("attention", &self.attention.iter().map(|a| a.name()).collect::<Vec<_>>())
            .field("fixed_attention", &self.fixed_attention)
            .field("learning", &self.learning.iter().map(|l| l.name()).collect::<Vec<_>>())
            .field("repair", &self.repair.iter().map(|r| r.name()).collect::<Vec<_>>())
            .field("network", &self.network.as_ref().map(|n| n.name()))
            .finish()
    }
}
