//! The plan DAG core: operators, the DAG, traversal, serialisation, `EXPLAIN` import and generators.
//!
//! A query plan is a [`QueryDag`] of [`OperatorNode`]s with per-node [`NodeInfo`] (estimates, filter,
//! actuals). Edges follow the data, from an input to the operator consuming it.

pub mod explain;
pub mod generator;
mod operator_node;
mod query_dag;
mod serialization;
mod traversal;

pub use explain::{ExplainOptions, ExplainPlan, import_explain};
pub use operator_node::{
    Actuals, Estimates, JoinType, ModifyOperation, NodeInfo, OperatorCategory, OperatorKind, OperatorNode, Relationship,
};
pub use query_dag::{NodeRef, QueryDag};
