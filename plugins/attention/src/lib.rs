//! The seven DAG attention mechanisms, each a `DagAttention` plugin registered with the framework.
