//! The framework's one error type.
//!
//! Every fallible call in `ruvector_dag` returns [`Result<T>`]. Messages say what was expected and what was
//! found, and name the node, key or file involved, so that a PostgreSQL operator reading a log line can act on it
//! without the source code.

use std::fmt;

/// `Result` with the framework's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the framework.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node id that the DAG does not hold.
    #[error("unknown node id {0}")]
    UnknownNode(usize),

    /// `add_edge(id, id)`: a plan operator never feeds itself.
    #[error("self loop on node {0}: an operator cannot be its own input")]
    SelfLoop(usize),

    /// The edge already exists; plans have no parallel edges.
    #[error("duplicate edge {from} -> {to}")]
    DuplicateEdge {
        /// Producer (input) node.
        from: usize,
        /// Consumer node.
        to: usize,
    },

    /// The same node id appears twice where ids must be unique (deserialisation, bulk construction).
    #[error("duplicate node id {0}")]
    DuplicateNode(usize),

    /// The edge would close a cycle, or a deserialised graph has one. `cycle` lists the node ids along the cycle,
    /// starting and ending with the same id.
    #[error("cycle {}", CyclePath(.cycle))]
    Cycle {
        /// The cycle, first id repeated at the end.
        cycle: Vec<usize>,
    },

    /// JSON serialisation or deserialisation of a DAG failed.
    #[error("DAG JSON: {0}")]
    Json(String),

    /// A binary DAG encoding is corrupt, truncated, or of an unknown version.
    #[error("DAG binary format: {0}")]
    Binary(String),

    /// A DAG value cannot be serialised (for example a non-finite estimate in JSON).
    #[error("cannot serialise node {node}: field `{field}` is {value}, expected a finite number")]
    NonFinite {
        /// Node id.
        node: usize,
        /// Field name.
        field: &'static str,
        /// The offending value.
        value: f64,
    },

    /// An `EXPLAIN (FORMAT JSON)` document could not be imported.
    #[error("EXPLAIN JSON at {path}: {message}")]
    Explain {
        /// Where in the document, e.g. `Plan.Plans[1]."Node Type"`.
        path: String,
        /// What was expected and what was found.
        message: String,
    },

    /// Configuration (`ruvector.toml` or `RUVECTOR__*` environment) is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    /// No plugin of this kind is registered under this name.
    #[error("unknown {kind} plugin `{name}`; available: {}", list_or_none(.available))]
    UnknownPlugin {
        /// Plugin kind.
        kind: crate::plugin::PluginKind,
        /// Requested name.
        name: String,
        /// Registered names of that kind, sorted.
        available: Vec<String>,
    },

    /// Two plugins of the same kind were registered under the same name.
    #[error("{kind} plugin `{name}` is registered twice (versions {first} and {second})")]
    DuplicatePlugin {
        /// Plugin kind.
        kind: crate::plugin::PluginKind,
        /// The clashing name.
        name: String,
        /// Version of the first registration.
        first: String,
        /// Version of the second registration.
        second: String,
    },

    /// A plugin rejected its parameters or failed while running.
    #[error("plugin `{plugin}`: {message}")]
    Plugin {
        /// Plugin name.
        plugin: String,
        /// What went wrong.
        message: String,
    },

    /// A `[[plugins.dynamic]]` library was refused; nothing of it was registered.
    #[error("plugin library {path} {reason}")]
    DynamicPlugin {
        /// The library's path, as configured.
        path: String,
        /// Which check failed, e.g. `was built against plugin ABI version 2, ...`.
        reason: String,
    },

    /// A statement a repair strategy had the host run failed.
    #[error("`{statement}` failed: {message}")]
    Execute {
        /// The statement.
        statement: String,
        /// The host's error message.
        message: String,
    },

    /// The operation is not supported by this plugin or component.
    #[error("{0} is not supported")]
    NotSupported(String),
}

/// Formats a cycle as `a -> b -> c -> a`.
struct CyclePath<'a>(&'a [usize]);

impl fmt::Display for CyclePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "(none registered)".to_owned() } else { names.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_message_names_the_path() {
        let e = Error::Cycle { cycle: vec![3, 1, 2, 3] };
        assert_eq!(e.to_string(), "cycle 3 -> 1 -> 2 -> 3");
    }

    #[test]
    fn unknown_plugin_lists_alternatives() {
        let e = Error::UnknownPlugin {
            kind: crate::plugin::PluginKind::Attention,
            name: "topo".into(),
            available: vec!["causal_cone".into(), "topological".into()],
        };
        assert_eq!(e.to_string(), "unknown attention plugin `topo`; available: causal_cone, topological");
    }
}
