//! The plugin registry of this server: the built-in plugins plus the `[[plugins.dynamic]]` libraries of
//! `ruvector.toml`.
//!
//! Dynamic libraries load only at startup, in the postmaster while `shared_preload_libraries` is processed, so
//! every backend and worker inherits them by fork and no session can make the server load code. A library that
//! fails a check (missing, world-writable, checksum, ABI version, layout, name clash) is logged as a WARNING
//! naming the file and the reason, and the server runs without it. `ruvector.dag_plugins()` lists what is
//! registered; `dag_health_check()` reports refused libraries.

use crate::sql::fail;
use dag::plugin::{DynamicLoad, Registry};
use pgrx::prelude::*;
use std::sync::OnceLock;

/// The registry and what happened to each configured library.
struct Plugins {
    registry: Registry,
    /// `(path, Ok(names) | Err(reason))` per `[[plugins.dynamic]]` entry, in order.
    loads: Vec<(String, Result<Vec<String>, String>)>,
    /// Libraries the configuration lists but that were not loaded, because the extension was not preloaded.
    skipped: usize,
}

static PLUGINS: OnceLock<Plugins> = OnceLock::new();

/// Builds the registry and loads the configured plugin libraries (in `_PG_init`, while preloading).
pub(crate) fn init() {
    PLUGINS.get_or_init(|| {
        let mut registry = builtin();
        let libraries = &crate::settings::loaded().config.plugins.dynamic;
        let loads = registry
            .load_dynamic(libraries)
            .into_iter()
            .map(|DynamicLoad { path, result }| {
                let path = path.display().to_string();
                match result {
                    Ok(names) => {
                        let names: Vec<String> = names.into_iter().map(|(kind, n)| format!("{kind} {n}")).collect();
                        log!("ruvector_dag: loaded plugin library {path}: {}", names.join(", "));
                        (path, Ok(names))
                    }
                    Err(e) => {
                        warning!("ruvector_dag: {e}; the server runs without it");
                        (path, Err(e.to_string()))
                    }
                }
            })
            .collect();
        Plugins { registry, loads, skipped: 0 }
    });
}

fn builtin() -> Registry {
    Registry::builtin()
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("plugin registry: {e}")))
}

fn plugins() -> &'static Plugins {
    PLUGINS.get_or_init(|| Plugins {
        registry: builtin(),
        loads: Vec::new(),
        skipped: crate::settings::loaded().config.plugins.dynamic.len(),
    })
}

/// Every registered plugin: built-in and dynamically loaded.
pub(crate) fn registry() -> &'static Registry {
    &plugins().registry
}

/// One `dag_health_check()` row about plugins.
pub(crate) fn health() -> Vec<(&'static str, &'static str, String)> {
    let p = plugins();
    if p.skipped > 0 {
        return vec![(
            "plugins",
            "warning",
            format!(
                "{} plugin libraries configured but not loaded: dynamic plugins load only through \
                 shared_preload_libraries",
                p.skipped
            ),
        )];
    }
    let dynamic = p.registry.iter().filter(|e| e.is_dynamic()).count();
    let builtin = p.registry.iter().count() - dynamic;
    let mut rows = vec![(
        "plugins",
        "ok",
        format!(
            "{builtin} built-in plugins, {dynamic} from {} plugin libraries",
            p.loads.iter().filter(|(_, r)| r.is_ok()).count()
        ),
    )];
    for (_, result) in &p.loads {
        if let Err(e) = result {
            rows.push(("plugins", "error", format!("{e}; the server runs without it")));
        }
    }
    rows
}

/// The plugins this server can use.
#[pg_extern]
fn dag_plugins() -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(name, String),
        name!(version, String),
        name!(origin, String),
        name!(description, String),
    ),
> {
    let rows: Vec<_> = registry()
        .iter()
        .map(|e| {
            (
                e.kind().as_str().to_owned(),
                e.name().to_owned(),
                e.version().to_owned(),
                e.origin().to_owned(),
                e.description().to_owned(),
            )
        })
        .collect();
    TableIterator::new(rows)
}
