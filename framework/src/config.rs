//! Configuration: `ruvector.toml` plus `RUVECTOR__SECTION__KEY` environment overrides.
//!
//! The file is read from exactly the path given (no search of parent directories). Each environment variable
//! `RUVECTOR__<SECTION>__<KEY>=<value>` overrides `<section>.<key>`; values parse like TOML scalars and arrays
//! (`0.01`, `true`, `[topological, critical_path]`). Every key is validated: an error names the key, the value
//! found, where it came from (file or variable) and what is allowed.
//!
//! Sections: `[attention]`, `[learning]`, `[healing]`, `[network]` and `[plugins]`. Inside the first four, a
//! sub-table named after a plugin holds that plugin's parameters (`[attention.topological]`), validated by the
//! plugin when it is built ([`Registry::build`](crate::plugin::Registry::build)).
//!
//! ```
//! use ruvector_dag::Config;
//! let config = Config::from_toml_str(r#"
//!     [attention]
//!     mechanism = "critical_path"
//!     [attention.critical_path]
//!     path_weight = 2.0
//!     [learning]
//!     learning_rate = 0.01
//! "#)?;
//! assert_eq!(config.learning.learning_rate, 0.01);
//! assert_eq!(config.learning.pattern_clusters, 100); // default
//! let err = Config::from_toml_str("[learning]\nlearning_rate = 7").unwrap_err();
//! assert_eq!(err.to_string(), "learning.learning_rate = 7 (in TOML source string): expected a number in 0.0001..=1");
//! # Ok::<(), ruvector_dag::config::ConfigError>(())
//! ```

use crate::plugin::{PluginKind, PluginParams};
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map as FigMap, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// Name of the configuration file.
pub const CONFIG_FILE: &str = "ruvector.toml";
/// Prefix of environment overrides: `RUVECTOR__LEARNING__LEARNING_RATE=0.01`.
pub const ENV_PREFIX: &str = "RUVECTOR__";

/// An invalid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed.
    #[error("cannot load configuration from {origin}: {message}")]
    Load {
        /// The file, or "environment".
        origin: String,
        /// What went wrong.
        message: String,
    },
    /// A key has a value of the wrong type or out of range.
    #[error("{key} = {value}{}: expected {expected}", origin_suffix(.origin))]
    Invalid {
        /// Full key, e.g. `learning.learning_rate`.
        key: String,
        /// The value found, as JSON.
        value: String,
        /// What is allowed.
        expected: String,
        /// Where the value came from (file or environment variable), when known.
        origin: Option<String>,
    },
    /// A key that no section or plugin defines.
    #[error("unknown key `{key}`{}; {hint}", origin_suffix(.origin))]
    UnknownKey {
        /// Full key.
        key: String,
        /// The known keys, or why the key is not accepted.
        hint: String,
        /// Where the key came from, when known.
        origin: Option<String>,
    },
}

fn origin_suffix(origin: &Option<String>) -> String {
    origin.as_ref().map(|o| format!(" ({o})")).unwrap_or_default()
}

impl ConfigError {
    /// An [`Invalid`](ConfigError::Invalid) error for `key` holding `value`.
    pub fn invalid(key: &str, value: &serde_json::Value, expected: &str) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            value: value.to_string(),
            expected: expected.to_owned(),
            origin: None,
        }
    }
}

/// Which plugins of a kind are enabled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every registered plugin of the kind (the key is absent).
    #[default]
    All,
    /// Exactly these, in this order.
    Only(Vec<String>),
}

/// `[attention]`: which mechanisms score plans, and how the selector chooses among them.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSection {
    /// `"auto"` (the UCB selector chooses per query class) or the name of one enabled mechanism.
    pub mechanism: String,
    /// `enabled`: the mechanisms to load; absent = every registered one.
    pub enabled: Selection,
    /// `exploration`: UCB exploration constant c, in (0, 10]. Default √2.
    pub exploration: f64,
    /// `cache_capacity`: entries of the attention cache, 0 disables it. Default 10 000.
    pub cache_capacity: usize,
}

impl Default for AttentionSection {
    fn default() -> Self {
        AttentionSection {
            mechanism: "auto".into(),
            enabled: Selection::All,
            exploration: std::f64::consts::SQRT_2,
            cache_capacity: 10_000,
        }
    }
}

/// `[learning]`: the learning tiers and their shared parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LearningSection {
    /// `tiers`: the learning tiers to load; absent = every registered one.
    pub tiers: Selection,
    /// `learning_rate` of the instant adapter, in 0.0001..=1. Default 0.1:
    /// the fraction of a plan's prediction error one execution corrects (normalised steps; the spec's 0.002 was
    /// a raw SGD step on an adapter whose signal was all zeros).
    pub learning_rate: f64,
    /// `embedding_dim` of plan embeddings, in 8..=4096. Default 256.
    pub embedding_dim: usize,
    /// `micro_lora_rank`, in 1..=4. Default 2.
    pub micro_lora_rank: usize,
    /// `base_lora_rank`, in 4..=64. Default 8.
    pub base_lora_rank: usize,
    /// `pattern_clusters`: k of k-means++, in 10..=1000. Default 100.
    pub pattern_clusters: usize,
    /// `quality_threshold`: minimum quality for a pattern to be used, in 0..=1. Default 0.3.
    pub quality_threshold: f64,
    /// `ewc_lambda`: EWC++ penalty weight, in 0..=50000 (0 disables). Default 5000.
    pub ewc_lambda: f64,
    /// `ewc_decay`: Fisher-information decay per update, in (0, 1]. Default 0.999.
    pub ewc_decay: f64,
    /// `trajectory_capacity`: bounded trajectory buffer, in 16..=1 000 000. Default 1000.
    pub trajectory_capacity: usize,
    /// `background_interval_ms` between background cycles, in 1000..=86 400 000. Default one hour.
    pub background_interval_ms: u64,
}

impl Default for LearningSection {
    fn default() -> Self {
        LearningSection {
            tiers: Selection::All,
            learning_rate: 0.1,
            embedding_dim: 256,
            micro_lora_rank: 2,
            base_lora_rank: 8,
            pattern_clusters: 100,
            quality_threshold: 0.3,
            ewc_lambda: 5000.0,
            ewc_decay: 0.999,
            trajectory_capacity: 1000,
            background_interval_ms: 3_600_000,
        }
    }
}

impl LearningSection {
    /// The model settings every learning tier receives in its parameters (see [`Config::plugin_params`]): all
    /// fields but `tiers` and `background_interval_ms`.
    pub fn model_params(&self) -> serde_json::Map<String, serde_json::Value> {
        [
            ("learning_rate", self.learning_rate.into()),
            ("embedding_dim", self.embedding_dim.into()),
            ("micro_lora_rank", self.micro_lora_rank.into()),
            ("base_lora_rank", self.base_lora_rank.into()),
            ("pattern_clusters", self.pattern_clusters.into()),
            ("quality_threshold", self.quality_threshold.into()),
            ("ewc_lambda", self.ewc_lambda.into()),
            ("ewc_decay", self.ewc_decay.into()),
            ("trajectory_capacity", self.trajectory_capacity.into()),
        ]
        .into_iter()
        .map(|(key, value): (&str, serde_json::Value)| (key.to_owned(), value))
        .collect()
    }

    /// This section with the model settings present in `params` (a learning tier's parameters) replaced, checked
    /// against the same ranges as `ruvector.toml`.
    ///
    /// # Errors
    /// A model setting of the wrong type or out of its range, named by its key.
    pub fn with_params(&self, params: &PluginParams) -> crate::Result<Self> {
        let mut section = self.clone();
        section.read_model(&mut &*params)?;
        Ok(section)
    }

    /// Reads the model settings from `s`, keeping the current value of each one absent: the one list of their
    /// keys and ranges, for the file and for tier parameters alike.
    fn read_model<S: RangedSettings>(&mut self, s: &mut S) -> Result<(), S::Error> {
        self.learning_rate = s.read_number("learning_rate", self.learning_rate, 0.0001..=1.0, "")?;
        self.embedding_dim = s.read_count("embedding_dim", self.embedding_dim, 8..=4096)?;
        self.micro_lora_rank = s.read_count("micro_lora_rank", self.micro_lora_rank, 1..=4)?;
        self.base_lora_rank = s.read_count("base_lora_rank", self.base_lora_rank, 4..=64)?;
        self.pattern_clusters = s.read_count("pattern_clusters", self.pattern_clusters, 10..=1000)?;
        self.quality_threshold = s.read_number("quality_threshold", self.quality_threshold, 0.0..=1.0, "")?;
        self.ewc_lambda = s.read_number("ewc_lambda", self.ewc_lambda, 0.0..=50_000.0, "")?;
        self.ewc_decay = s.read_number("ewc_decay", self.ewc_decay, 1e-9..=1.0, "a number in (0, 1]")?;
        self.trajectory_capacity = s.read_count("trajectory_capacity", self.trajectory_capacity, 16..=1_000_000)?;
        Ok(())
    }
}

/// A source of range-checked settings: a `ruvector.toml` section, or a plugin's parameters.
trait RangedSettings {
    type Error;
    /// A number in `range` (`expected` describes it; empty for "a number in a..=b"), or `default` when absent.
    fn read_number(
        &mut self,
        key: &str,
        default: f64,
        range: RangeInclusive<f64>,
        expected: &str,
    ) -> Result<f64, Self::Error>;
    /// An integer in `range`, or `default` when absent.
    fn read_count(&mut self, key: &str, default: usize, range: RangeInclusive<usize>) -> Result<usize, Self::Error>;
}

fn expected_number(range: &RangeInclusive<f64>, expected: &str) -> String {
    if expected.is_empty() { format!("a number in {}..={}", range.start(), range.end()) } else { expected.to_owned() }
}

impl RangedSettings for Section<'_> {
    type Error = ConfigError;
    fn read_number(
        &mut self,
        key: &str,
        default: f64,
        range: RangeInclusive<f64>,
        expected: &str,
    ) -> Result<f64, ConfigError> {
        self.number(key, default, range, expected)
    }
    fn read_count(&mut self, key: &str, default: usize, range: RangeInclusive<usize>) -> Result<usize, ConfigError> {
        self.integer(key, default, range)
    }
}

impl RangedSettings for &PluginParams {
    type Error = crate::Error;
    fn read_number(
        &mut self,
        key: &str,
        default: f64,
        range: RangeInclusive<f64>,
        expected: &str,
    ) -> crate::Result<f64> {
        let expected = expected_number(&range, expected);
        self.ranged(key, default, range, &expected)
    }
    fn read_count(&mut self, key: &str, default: usize, range: RangeInclusive<usize>) -> crate::Result<usize> {
        let expected = format!("an integer in {}..={}", range.start(), range.end());
        self.ranged(key, default, range, &expected)
    }
}

/// `[healing]`: detection thresholds and repair strategies.
#[derive(Debug, Clone, PartialEq)]
pub struct HealingSection {
    /// `enabled`. Default true.
    pub enabled: bool,
    /// `strategies`: repair strategies to load; absent = every registered one.
    pub strategies: Selection,
    /// `interval_ms` between healing cycles, in 1000..=86 400 000. Default 300 000.
    pub interval_ms: u64,
    /// `z_threshold` of the anomaly detector, in (0, 100]. Default 3.
    pub z_threshold: f64,
    /// `window_size` of the anomaly detector, in 8..=1 000 000. Default 100.
    pub window_size: usize,
    /// `health_threshold`: a subsystem scoring below it is unhealthy, in 0..=1. Default 0.3.
    pub health_threshold: f64,
}

impl Default for HealingSection {
    fn default() -> Self {
        HealingSection {
            enabled: true,
            strategies: Selection::All,
            interval_ms: 300_000,
            z_threshold: 3.0,
            window_size: 100,
            health_threshold: 0.3,
        }
    }
}

/// `[network]`: pattern sharing with peers.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSection {
    /// `enabled`. Default false: learning stays local.
    pub enabled: bool,
    /// `transport` plugin name. Default `loopback`.
    pub transport: String,
    /// `listen` address, `host:port`. Default `127.0.0.1:7440`.
    pub listen: String,
    /// `peers`: static peer addresses, `host:port`.
    pub peers: Vec<String>,
    /// `dp_epsilon`: differential-privacy budget per shared pattern, in (0, 10]. Default 1.
    pub dp_epsilon: f64,
    /// `sync_interval_s` between anti-entropy rounds, in 1..=86 400. Default 3600.
    pub sync_interval_s: u64,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            enabled: false,
            transport: "loopback".into(),
            listen: "127.0.0.1:7440".into(),
            peers: Vec::new(),
            dp_epsilon: 1.0,
            sync_interval_s: 3600,
        }
    }
}

/// One `[[plugins.dynamic]]` entry: a plugin shared library to load at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicPlugin {
    /// Path of the shared library; [`Config::load`] makes a relative path relative to the file's directory.
    pub path: PathBuf,
    /// Expected SHA-256 of the file, lower-case hex, when pinned.
    pub sha256: Option<String>,
}

/// `[plugins]`: out-of-tree plugins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginsSection {
    /// `[[plugins.dynamic]]` entries, in load order.
    pub dynamic: Vec<DynamicPlugin>,
}

/// The whole configuration. `Config::default()` is what an empty `ruvector.toml` gives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `[attention]`.
    pub attention: AttentionSection,
    /// `[learning]`.
    pub learning: LearningSection,
    /// `[healing]`.
    pub healing: HealingSection,
    /// `[network]`.
    pub network: NetworkSection,
    /// `[plugins]`.
    pub plugins: PluginsSection,
    /// Plugin parameter tables per kind: `[attention.topological]` → `params[Attention]["topological"]`.
    params: BTreeMap<PluginKind, BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
}

impl Config {
    /// Reads `path` (which must exist) and applies `RUVECTOR__*` overrides from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(Some(path), std::env::vars())
    }

    /// Reads `path` if given (it must then exist) and applies the `RUVECTOR__*` entries of `env`; other entries
    /// are ignored. Tests pass their own variables instead of touching the process environment.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::Load {
                    origin: path.display().to_string(),
                    message: "no such file (the path is used exactly as given; no directory is searched)".into(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let mut config = Self::from_figment(figment.merge(EnvOverrides::new(env)))?;
        // Relative library paths are relative to the file that names them, not to the server's directory.
        if let Some(dir) = path.and_then(Path::parent) {
            for plugin in &mut config.plugins.dynamic {
                if plugin.path.is_relative() {
                    plugin.path = dir.join(&plugin.path);
                }
            }
        }
        Ok(config)
    }

    /// Parses configuration text (no environment overrides).
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(toml)))
    }

    /// Plugin parameter tables of `kind`, by plugin name.
    pub fn params(&self, kind: PluginKind) -> &BTreeMap<String, serde_json::Map<String, serde_json::Value>> {
        static EMPTY: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
        self.params.get(&kind).unwrap_or(&EMPTY)
    }

    /// The parameters of plugin `name` of `kind` (empty when it has no table), scoped for error messages.
    ///
    /// A learning tier also receives the `[learning]` section's model settings
    /// ([`LearningSection::model_params`]) as parameters, so every tier learns with the operator's settings; its
    /// own table overrides them.
    pub fn plugin_params(&self, kind: PluginKind, name: &str) -> PluginParams {
        let scope = format!("{}.{name}", kind.section());
        let mut map = self.params(kind).get(name).cloned().unwrap_or_default();
        if kind == PluginKind::Learning {
            for (key, value) in self.learning.model_params() {
                map.entry(key).or_insert(value);
            }
        }
        PluginParams::new(scope, map)
    }

    /// Sets the parameter table of plugin `name` of `kind`, replacing any from the file.
    pub fn set_plugin_params(
        &mut self,
        kind: PluginKind,
        name: &str,
        params: serde_json::Map<String, serde_json::Value>,
    ) {
        self.params.entry(kind).or_default().insert(name.to_owned(), params);
    }

    fn set_section_params(
        &mut self,
        kind: PluginKind,
        tables: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    ) {
        if !tables.is_empty() {
            self.params.insert(kind, tables);
        }
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut root: Dict = figment.extract().map_err(|e| ConfigError::Load {
            origin: e.metadata.as_ref().map_or_else(|| "configuration".to_owned(), describe),
            message: e.kind.to_string(),
        })?;
        let mut config = Config::default();
        let mut take = |name: &'static str| Section {
            name,
            dict: match root.remove(name) {
                Some(Value::Dict(_, d)) => Ok(d),
                None => Ok(Dict::new()),
                Some(other) => Err(invalid(&figment, name, &other, "a table")),
            },
            figment: &figment,
        };

        let mut s = take("attention");
        let a = &mut config.attention;
        a.mechanism = s.string("mechanism", a.mechanism.clone())?;
        a.enabled = s.selection("enabled")?;
        a.exploration = s.number("exploration", a.exploration, 1e-9..=10.0, "a number in (0, 10]")?;
        a.cache_capacity = s.integer("cache_capacity", a.cache_capacity, 0..=10_000_000)?;
        if let Selection::Only(names) = &a.enabled {
            if a.mechanism != "auto" && !names.contains(&a.mechanism) {
                let value = serde_json::Value::String(a.mechanism.clone());
                let expected = format!("\"auto\" or one of attention.enabled ({})", names.join(", "));
                return Err(with_origin(ConfigError::invalid("attention.mechanism", &value, &expected), &figment));
            }
        }
        config.set_section_params(
            PluginKind::Attention,
            s.finish(&["mechanism", "enabled", "exploration", "cache_capacity"])?,
        );

        let mut s = take("learning");
        let l = &mut config.learning;
        l.tiers = s.selection("tiers")?;
        l.read_model(&mut s)?;
        l.background_interval_ms = s.integer("background_interval_ms", l.background_interval_ms, 1000..=86_400_000)?;
        config.set_section_params(
            PluginKind::Learning,
            s.finish(&[
                "tiers",
                "learning_rate",
                "embedding_dim",
                "micro_lora_rank",
                "base_lora_rank",
                "pattern_clusters",
                "quality_threshold",
                "ewc_lambda",
                "ewc_decay",
                "trajectory_capacity",
                "background_interval_ms",
            ])?,
        );

        let mut s = take("healing");
        let h = &mut config.healing;
        h.enabled = s.boolean("enabled", h.enabled)?;
        h.strategies = s.selection("strategies")?;
        h.interval_ms = s.integer("interval_ms", h.interval_ms, 1000..=86_400_000)?;
        h.z_threshold = s.number("z_threshold", h.z_threshold, 1e-9..=100.0, "a number in (0, 100]")?;
        h.window_size = s.integer("window_size", h.window_size, 8..=1_000_000)?;
        h.health_threshold = s.number("health_threshold", h.health_threshold, 0.0..=1.0, "")?;
        config.set_section_params(
            PluginKind::Repair,
            s.finish(&["enabled", "strategies", "interval_ms", "z_threshold", "window_size", "health_threshold"])?,
        );

        let mut s = take("network");
        let n = &mut config.network;
        n.enabled = s.boolean("enabled", n.enabled)?;
        n.transport = s.string("transport", n.transport.clone())?;
        n.listen = s.address("listen", n.listen.clone())?;
        n.peers = s.addresses("peers")?;
        n.dp_epsilon = s.number("dp_epsilon", n.dp_epsilon, 1e-9..=10.0, "a number in (0, 10]")?;
        n.sync_interval_s = s.integer("sync_interval_s", n.sync_interval_s, 1..=86_400)?;
        config.set_section_params(
            PluginKind::Network,
            s.finish(&["enabled", "transport", "listen", "peers", "dp_epsilon", "sync_interval_s"])?,
        );

        let mut s = take("plugins");
        config.plugins.dynamic = s.dynamic_plugins()?;
        let leftover = s.finish(&["dynamic"])?;
        if let Some(name) = leftover.keys().next() {
            return Err(unknown(&figment, &format!("plugins.{name}"), "known keys: dynamic"));
        }

        if let Some(key) = root.keys().next() {
            return Err(unknown(&figment, key, "known sections: attention, learning, healing, network, plugins"));
        }
        Ok(config)
    }
}

/// One section's remaining keys while it is being read.
struct Section<'f> {
    name: &'static str,
    dict: Result<Dict, ConfigError>,
    figment: &'f Figment,
}

impl Section<'_> {
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }

    fn remove(&mut self, key: &str) -> Result<Option<Value>, ConfigError> {
        match &mut self.dict {
            Ok(d) => Ok(d.remove(key)),
            Err(e) => Err(e.clone()),
        }
    }

    fn typed<T: DeserializeOwned>(&mut self, key: &str, expected: &str) -> Result<Option<(T, Value)>, ConfigError> {
        match self.remove(key)? {
            None => Ok(None),
            Some(v) => match v.deserialize::<T>() {
                Ok(t) => Ok(Some((t, v))),
                Err(_) => Err(invalid(self.figment, &self.key(key), &v, expected)),
            },
        }
    }

    fn string(&mut self, key: &str, default: String) -> Result<String, ConfigError> {
        match self.typed::<String>(key, "a string")? {
            Some((s, v)) if s.trim().is_empty() => Err(invalid(self.figment, &self.key(key), &v, "a non-empty string")),
            Some((s, _)) => Ok(s),
            None => Ok(default),
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.typed::<bool>(key, "true or false")?.map_or(default, |(b, _)| b))
    }

    fn number(
        &mut self,
        key: &str,
        default: f64,
        range: RangeInclusive<f64>,
        expected: &str,
    ) -> Result<f64, ConfigError> {
        let expected = expected_number(&range, expected);
        self.ranged(key, default, range, &expected)
    }

    fn integer<T>(&mut self, key: &str, default: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: DeserializeOwned + PartialOrd + Display + Copy,
    {
        let expected = format!("an integer in {}..={}", range.start(), range.end());
        self.ranged(key, default, range, &expected)
    }

    fn ranged<T>(&mut self, key: &str, default: T, range: RangeInclusive<T>, expected: &str) -> Result<T, ConfigError>
    where
        T: DeserializeOwned + PartialOrd + Copy,
    {
        match self.typed::<T>(key, expected)? {
            None => Ok(default),
            Some((t, _)) if range.contains(&t) => Ok(t),
            Some((_, v)) => Err(invalid(self.figment, &self.key(key), &v, expected)),
        }
    }

    fn selection(&mut self, key: &str) -> Result<Selection, ConfigError> {
        let expected = "a list of plugin names, e.g. [\"topological\", \"critical_path\"]";
        match self.typed::<Vec<String>>(key, expected)? {
            None => Ok(Selection::All),
            Some((names, v)) => {
                let mut seen = std::collections::BTreeSet::new();
                if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                    return Err(invalid(
                        self.figment,
                        &self.key(key),
                        &v,
                        &format!("names without repeats (`{dup}` appears twice)"),
                    ));
                }
                if names.iter().any(|n| n.trim().is_empty()) {
                    return Err(invalid(self.figment, &self.key(key), &v, expected));
                }
                Ok(Selection::Only(names))
            }
        }
    }

    fn address(&mut self, key: &str, default: String) -> Result<String, ConfigError> {
        match self.typed::<String>(key, "an address host:port")? {
            None => Ok(default),
            Some((s, v)) => {
                if valid_address(&s) {
                    Ok(s)
                } else {
                    Err(invalid(self.figment, &self.key(key), &v, "an address host:port with a port in 1..=65535"))
                }
            }
        }
    }

    fn addresses(&mut self, key: &str) -> Result<Vec<String>, ConfigError> {
        let expected = "a list of addresses host:port";
        match self.typed::<Vec<String>>(key, expected)? {
            None => Ok(Vec::new()),
            Some((list, v)) => match list.iter().position(|a| !valid_address(a)) {
                Some(i) => Err(invalid(
                    self.figment,
                    &format!("{}[{i}]", self.key(key)),
                    &v,
                    "an address host:port with a port in 1..=65535",
                )),
                None => Ok(list),
            },
        }
    }

    fn dynamic_plugins(&mut self) -> Result<Vec<DynamicPlugin>, ConfigError> {
        let Some(v) = self.remove("dynamic")? else { return Ok(Vec::new()) };
        let Value::Array(_, items) = &v else {
            return Err(invalid(self.figment, "plugins.dynamic", &v, "an array of tables [[plugins.dynamic]]"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let key = format!("plugins.dynamic[{i}]");
            let Value::Dict(_, d) = item else {
                return Err(invalid(self.figment, &key, item, "a table with `path` and optional `sha256`"));
            };
            if let Some(k) = d.keys().find(|k| !["path", "sha256"].contains(&k.as_str())) {
                return Err(unknown(self.figment, &format!("{key}.{k}"), "known keys: path, sha256"));
            }
            let path = match d.get("path").map(|p| (p, p.deserialize::<String>())) {
                Some((_, Ok(p))) if !p.trim().is_empty() => PathBuf::from(p),
                Some((p, _)) => return Err(invalid(self.figment, &format!("{key}.path"), p, "a file path")),
                None => return Err(invalid(self.figment, &key, item, "a table with a `path` key")),
            };
            let sha256 = match d.get("sha256") {
                None => None,
                Some(s) => match s.deserialize::<String>() {
                    Ok(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Some(h.to_ascii_lowercase()),
                    _ => return Err(invalid(self.figment, &format!("{key}.sha256"), s, "64 hexadecimal digits")),
                },
            };
            out.push(DynamicPlugin { path, sha256 });
        }
        Ok(out)
    }

    /// The keys left over: tables are plugin parameters; anything else is an unknown key.
    fn finish(
        mut self,
        known: &[&str],
    ) -> Result<BTreeMap<String, serde_json::Map<String, serde_json::Value>>, ConfigError> {
        let dict = std::mem::replace(&mut self.dict, Ok(Dict::new()))?;
        let mut params = BTreeMap::new();
        for (name, value) in dict {
            match &value {
                Value::Dict(..) => {
                    let json = value.deserialize::<serde_json::Value>().map_err(|e| ConfigError::Load {
                        origin: describe_key(self.figment, &self.key(&name)).unwrap_or_else(|| "configuration".into()),
                        message: e.to_string(),
                    })?;
                    let serde_json::Value::Object(map) = json else { unreachable!("a dict deserialises to an object") };
                    params.insert(name, map);
                }
                _ => {
                    let mut known = known.to_vec();
                    known.sort_unstable();
                    let hint = format!(
                        "known keys: {}; plugin parameters go in [{}.<plugin>] tables",
                        known.join(", "),
                        self.name
                    );
                    return Err(unknown(self.figment, &self.key(&name), &hint));
                }
            }
        }
        Ok(params)
    }
}

fn valid_address(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

fn json_of(v: &Value) -> serde_json::Value {
    v.deserialize::<serde_json::Value>().unwrap_or_else(|_| serde_json::Value::String(format!("{v:?}")))
}

fn invalid(figment: &Figment, key: &str, value: &Value, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: json_of(value).to_string(),
        expected: expected.to_owned(),
        origin: describe_key(figment, key),
    }
}

fn unknown(figment: &Figment, key: &str, hint: &str) -> ConfigError {
    ConfigError::UnknownKey { key: key.to_owned(), hint: hint.to_owned(), origin: describe_key(figment, key) }
}

fn with_origin(err: ConfigError, figment: &Figment) -> ConfigError {
    match err {
        ConfigError::Invalid { key, value, expected, origin: None } => {
            let origin = describe_key(figment, &key);
            ConfigError::Invalid { key, value, expected, origin }
        }
        other => other,
    }
}

/// "in /etc/ruvector.toml" or "from environment variable RUVECTOR__LEARNING__LEARNING_RATE".
fn describe_key(figment: &Figment, key: &str) -> Option<String> {
    let base = key.split('[').next().unwrap_or(key);
    let md = figment.find_metadata(base)?;
    if md.name == ENV_METADATA_NAME {
        let parts: Vec<&str> = base.split('.').collect();
        Some(format!("from environment variable {}", md.interpolate(&Profile::Default, &parts)))
    } else {
        Some(describe(md))
    }
}

fn describe(md: &Metadata) -> String {
    match &md.source {
        Some(figment::Source::File(path)) => format!("in {}", path.display()),
        _ => format!("in {}", md.name),
    }
}

const ENV_METADATA_NAME: &str = "environment variable";

/// `RUVECTOR__SECTION__KEY=value` entries as a figment provider, from any list of variables.
struct EnvOverrides {
    vars: Vec<(String, String)>,
}

impl EnvOverrides {
    fn new(env: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut vars: Vec<_> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        vars.sort();
        EnvOverrides { vars }
    }
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_METADATA_NAME).interpolater(|_: &Profile, keys: &[&str]| {
            format!("{ENV_PREFIX}{}", keys.iter().map(|k| k.to_ascii_uppercase()).collect::<Vec<_>>().join("__"))
        })
    }

    fn data(&self) -> Result<FigMap<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (name, raw) in &self.vars {
            let path: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return Err(figment::Error::from(format!("environment variable {name}: empty key segment")));
            }
            let value: Value = raw.parse().expect("parsing a Value is infallible");
            insert_path(&mut root, &path, value).map_err(|conflict| {
                figment::Error::from(format!(
                    "environment variable {name}: `{conflict}` is set both as a value and as a table"
                ))
            })?;
        }
        Ok(Profile::Default.collect(root))
    }
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut cur = dict;
    for p in parents {
        let entry = cur.entry(p.clone()).or_insert_with(|| Value::from(Dict::new()));
        match entry {
            Value::Dict(_, d) => cur = d,
            _ => return Err(p.clone()),
        }
    }
    cur.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(toml: &str) -> String {
        Config::from_toml_str(toml).unwrap_err().to_string()
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
    }

    #[test]
    fn each_kind_of_bad_value_has_its_message() {
        let src = "(in TOML source string)";
        assert_eq!(
            err("[learning]\nembedding_dim = 3"),
            format!("learning.embedding_dim = 3 {src}: expected an integer in 8..=4096")
        );
        assert_eq!(
            err("[learning]\nembedding_dim = \"big\""),
            format!("learning.embedding_dim = \"big\" {src}: expected an integer in 8..=4096")
        );
        assert_eq!(err("[healing]\nenabled = 1"), format!("healing.enabled = 1 {src}: expected true or false"));
        assert_eq!(
            err("[attention]\nexploration = 0"),
            format!("attention.exploration = 0 {src}: expected a number in (0, 10]")
        );
        assert_eq!(
            err("[attention]\nmechanism = \"x\"\nenabled = [\"a\", \"b\"]"),
            format!("attention.mechanism = \"x\" {src}: expected \"auto\" or one of attention.enabled (a, b)")
        );
        assert_eq!(
            err("[attention]\nenabled = [\"a\", \"a\"]"),
            format!("attention.enabled = [\"a\",\"a\"] {src}: expected names without repeats (`a` appears twice)")
        );
        assert_eq!(
            err("[attention]\nmechansim = \"auto\""),
            format!(
                "unknown key `attention.mechansim` {src}; known keys: cache_capacity, enabled, exploration, mechanism; plugin parameters go in [attention.<plugin>] tables"
            )
        );
        assert_eq!(
            err("[learnig]\nx = 1"),
            format!("unknown key `learnig` {src}; known sections: attention, learning, healing, network, plugins")
        );
        assert_eq!(err("learning = 3"), format!("learning = 3 {src}: expected a table"));
        assert_eq!(
            err("[network]\npeers = [\"10.0.0.1:7440\", \"nohost\"]"),
            format!(
                "network.peers[1] = [\"10.0.0.1:7440\",\"nohost\"] {src}: expected an address host:port with a port in 1..=65535"
            )
        );
        assert_eq!(
            err("[[plugins.dynamic]]\npath = \"/x.so\"\nsha256 = \"abc\""),
            format!("plugins.dynamic[0].sha256 = \"abc\" {src}: expected 64 hexadecimal digits")
        );
        assert!(err("[learning\n").starts_with("cannot load configuration from"));
    }

    #[test]
    fn tier_parameters_are_checked_like_the_learning_section() {
        let file =
            Config::from_toml_str("[learning]\nlearning_rate = 0.3\nembedding_dim = 64\newc_decay = 0.5").unwrap();
        let round_trip = LearningSection::default()
            .with_params(&PluginParams::new("learning.instant", file.learning.model_params()))
            .unwrap();
        assert_eq!(round_trip, LearningSection { tiers: Selection::All, ..file.learning.clone() });
        let bad = |json: serde_json::Value| {
            let params = PluginParams::from_json("learning.instant", json).unwrap();
            LearningSection::default().with_params(&params).unwrap_err().to_string()
        };
        assert!(bad(serde_json::json!({"embedding_dim": 3})).ends_with("expected an integer in 8..=4096"));
        assert!(bad(serde_json::json!({"ewc_decay": 0})).ends_with("expected a number in (0, 1]"));
        assert!(bad(serde_json::json!({"learning_rate": "fast"})).contains("learning.instant.learning_rate"));
    }

    #[test]
    fn plugin_tables_are_kept_as_params() {
        let c = Config::from_toml_str("[attention.topological]\ndecay = 0.9\n[healing.reindex]\nconcurrently = true")
            .unwrap();
        let p = c.plugin_params(PluginKind::Attention, "topological");
        assert_eq!(p.scope(), "attention.topological");
        assert_eq!(p.number_in("decay", 0.5, 0.0..=1.0).unwrap(), 0.9);
        assert!(c.plugin_params(PluginKind::Repair, "reindex").bool_or("concurrently", false).unwrap());
        assert!(c.plugin_params(PluginKind::Attention, "cone").is_empty());
        // A learning tier without a table still gets the [learning] section's settings.
        let learning = c.plugin_params(PluginKind::Learning, "instant");
        let keys: Vec<&str> = learning.as_map().keys().map(String::as_str).collect();
        let model = c.learning.model_params();
        assert_eq!(keys, model.keys().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(learning.number_in("learning_rate", 0.0, 0.0..=1.0).unwrap(), c.learning.learning_rate);
    }

    #[test]
    fn env_overrides_win_and_are_named_in_errors() {
        let env = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned()), ("PATH".to_owned(), "/bin".to_owned())];
        let c = Config::load_with_env(None, env("RUVECTOR__LEARNING__LEARNING_RATE", "0.01")).unwrap();
        assert_eq!(c.learning.learning_rate, 0.01);
        let c =
            Config::load_with_env(None, env("RUVECTOR__ATTENTION__ENABLED", "[topological, critical_path]")).unwrap();
        assert_eq!(c.attention.enabled, Selection::Only(vec!["topological".into(), "critical_path".into()]));
        let e = Config::load_with_env(None, env("RUVECTOR__LEARNING__LEARNING_RATE", "5")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "learning.learning_rate = 5 (from environment variable RUVECTOR__LEARNING__LEARNING_RATE): expected a number in 0.0001..=1"
        );
    }

    #[test]
    fn missing_file_is_reported_exactly() {
        let e = Config::load_with_env(Some(Path::new("/nonexistent/ruvector.toml")), Vec::new()).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot load configuration from /nonexistent/ruvector.toml: no such file"),
            "{e}"
        );
    }
}
