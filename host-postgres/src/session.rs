//! Per-backend plugin state: the attention mechanisms the configuration enables (built once per backend, so
//! learning mechanisms keep what they learned), session parameter overrides from `dag_attention_configure`,
//! the attention cache and per-mechanism statistics.

use crate::sql::fail;
use dag::attention::{AttentionCache, AttentionScores, DagAttention, PlanFingerprint, PreparedDag};
use dag::plugin::{PluginKind, PluginParams, Registry};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

/// Counters of one mechanism in this backend.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MechanismStats {
    pub(crate) invocations: u64,
    pub(crate) total_us: f64,
    pub(crate) cache_hits: u64,
    pub(crate) cache_lookups: u64,
}

struct Session {
    registry: &'static Registry,
    /// Enabled mechanism names, in configuration order.
    enabled: Vec<String>,
    mechanisms: BTreeMap<String, Box<dyn DagAttention>>,
    stats: BTreeMap<String, MechanismStats>,
    cache: AttentionCache,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

fn with_session<R>(f: impl FnOnce(&mut Session) -> R) -> R {
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let session = s.get_or_insert_with(|| {
            let config = &crate::settings::loaded().config;
            let registry = crate::plugins::registry();
            let enabled = match &config.attention.enabled {
                dag::config::Selection::All => registry.names(PluginKind::Attention),
                dag::config::Selection::Only(names) => names.clone(),
            };
            Session {
                registry,
                enabled,
                mechanisms: BTreeMap::new(),
                stats: BTreeMap::new(),
                cache: AttentionCache::new(config.attention.cache_capacity),
            }
        });
        f(session)
    })
}

/// The mechanism `name` resolves to: itself when enabled, or for `auto` the configured fixed mechanism, else
/// `critical_path` when enabled, else the first enabled one. Unknown or disabled names are RV002 errors.
pub(crate) fn resolve(name: &str) -> String {
    with_session(|s| {
        if name == "auto" {
            let configured = &crate::settings::loaded().config.attention.mechanism;
            if configured != "auto" && s.enabled.contains(configured) {
                return configured.clone();
            }
            if s.enabled.iter().any(|m| m == "critical_path") {
                return "critical_path".to_owned();
            }
            return s.enabled.first().cloned().unwrap_or_else(|| {
                fail(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "RV002 INVALID_ATTENTION: no attention mechanism is enabled",
                )
            });
        }
        if !s.enabled.iter().any(|m| m == name) {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "RV002 INVALID_ATTENTION: unknown or disabled attention mechanism \"{name}\"; enabled: auto, {}",
                    s.enabled.join(", ")
                ),
            );
        }
        name.to_owned()
    })
}

fn build(s: &Session, name: &str, params: &PluginParams) -> Box<dyn DagAttention> {
    s.registry.attention(name, params).unwrap_or_else(|e| {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("RV002 INVALID_ATTENTION: {e}"))
    })
}

/// Scores `prepared` (the plan `dag`) with mechanism `name` (already resolved), through the cache.
pub(crate) fn score(dag: &dag::QueryDag, prepared: &PreparedDag, name: &str) -> AttentionScores {
    with_session(|s| {
        if !s.mechanisms.contains_key(name) {
            let params = crate::settings::loaded().config.plugin_params(PluginKind::Attention, name);
            let m = build(s, name, &params);
            s.mechanisms.insert(name.to_owned(), m);
        }
        let index = s.enabled.iter().position(|m| m == name).unwrap_or(usize::MAX) as u32;
        let key = PlanFingerprint::of(dag);
        let start = Instant::now();
        let stats = s.stats.entry(name.to_owned()).or_default();
        stats.cache_lookups += 1;
        // Learning mechanisms change between calls: only stateless ones are cached.
        let cacheable = name != "temporal_btsp";
        if cacheable {
            if let Some(hit) = s.cache.get(index, key) {
                let hit = hit.clone();
                let stats = s.stats.get_mut(name).expect("inserted above");
                stats.cache_hits += 1;
                stats.invocations += 1;
                stats.total_us += start.elapsed().as_secs_f64() * 1e6;
                return hit;
            }
        }
        let mut out = AttentionScores::default();
        let mechanism = &s.mechanisms[name];
        // Built-in mechanisms score prepared plans; a plugin without the fast path scores the DAG itself.
        let result = match mechanism.forward_prepared(prepared, &mut out) {
            Ok(()) => Ok(()),
            Err(_) => mechanism.forward(dag).map(|scores| out = scores),
        };
        result.unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("attention `{name}`: {e}")));
        if cacheable {
            s.cache.insert(index, key, out.clone());
        }
        let stats = s.stats.get_mut(name).expect("inserted above");
        stats.invocations += 1;
        stats.total_us += start.elapsed().as_secs_f64() * 1e6;
        out
    })
}

/// Replaces mechanism `name`'s parameters for this session (validated by building it).
pub(crate) fn configure(name: &str, params: serde_json::Value) {
    let resolved = resolve(name);
    if name == "auto" {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "RV002 INVALID_ATTENTION: configure a named mechanism, not auto",
        );
    }
    let params = PluginParams::from_json(format!("attention.{resolved}"), params)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string()));
    with_session(|s| {
        let m = build(s, &resolved, &params);
        s.mechanisms.insert(resolved.clone(), m);
        s.cache.clear();
    });
}

/// Statistics of every enabled mechanism.
pub(crate) fn stats() -> Vec<(String, MechanismStats)> {
    with_session(|s| s.enabled.iter().map(|m| (m.clone(), s.stats.get(m).copied().unwrap_or_default())).collect())
}
