//! # ruvector-dag
//!
//! Neural DAG learning over PostgreSQL query plans. This crate is the framework every plugin and the
//! PostgreSQL host build on; it knows nothing of PostgreSQL's internals (no pgrx) and nothing of async runtimes.
//!
//! - [`dag`]: a plan as a [`QueryDag`] of [`OperatorNode`]s — construction, traversal, JSON and binary
//!   serialisation, import of `EXPLAIN (FORMAT JSON)`, seeded generators.
//! - Four plugin traits, each in its module: [`attention::DagAttention`] (score plan nodes),
//!   [`learning::LearningTier`] (learn from executed queries), [`healing::RepairStrategy`] (repair what
//!   degrades), [`network::NetworkTransport`] (share patterns with peers).
//! - [`plugin`]: the registry that finds plugins by kind and name; [`config`]: `ruvector.toml`.
//! - [`mincut`]: exact minimum cuts over plans.
//! - [`advisor`]: index candidates from plans' predicates and budgeted workload-level selection.
//!
//! ```
//! use ruvector_dag::{OperatorNode, QueryDag};
//! let mut dag = QueryDag::new();
//! dag.add_node(0, OperatorNode::SeqScan { table: "users".into() });
//! dag.add_node(1, OperatorNode::Filter { predicate: "id > 0".into() });
//! dag.add_edge(0, 1)?;
//! let restored = QueryDag::from_bytes(&dag.to_bytes())?;
//! assert_eq!(dag, restored);
//! # Ok::<(), ruvector_dag::Error>(())
//! ```
#![warn(missing_docs)]

pub mod advisor;
pub mod attention;
pub mod config;
pub mod dag;
mod error;
pub mod healing;
pub mod learning;
pub mod mincut;
pub mod network;
pub mod plugin;

pub use config::Config;
pub use dag::{
    Actuals, Estimates, JoinType, ModifyOperation, NodeInfo, NodeRef, OperatorCategory, OperatorKind, OperatorNode,
    QueryDag, Relationship,
};
pub use error::{Error, Result};
