//! `ruvector.toml`: read once per process from the path in `ruvector.config_file`.
//!
//! A bad or missing file never stops PostgreSQL: it is logged as a WARNING naming the problem, and the
//! built-in defaults are used. `dag_health_check()` reports which configuration is in force.

use dag::Config;
use pgrx::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// The configuration in force and, when the file could not be used, why.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) config: Config,
    /// The file read, if any.
    pub(crate) path: Option<String>,
    /// The error that made us fall back to defaults.
    pub(crate) error: Option<String>,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();

/// Loads the configuration now (in `_PG_init`, so the postmaster logs problems once at start).
pub(crate) fn init() {
    let _ = loaded();
}

/// The configuration in force.
pub(crate) fn loaded() -> &'static Loaded {
    LOADED.get_or_init(|| {
        let path = crate::gucs::CONFIG_FILE.get().and_then(|p| p.into_string().ok()).filter(|p| !p.trim().is_empty());
        let Some(path) = path else {
            return Loaded { config: Config::default(), path: None, error: None };
        };
        match Config::load(Path::new(&path)) {
            Ok(config) => Loaded { config, path: Some(path), error: None },
            Err(e) => {
                let msg = e.to_string();
                warning!("ruvector_dag: {msg}; using built-in defaults");
                Loaded { config: Config::default(), path: Some(path), error: Some(msg) }
            }
        }
    })
}
