//! Shared helpers of the workspace acceptance tests: fixture paths and proptest strategies.

pub mod alloc;

use proptest::prelude::*;
use ruvector_dag::{
    Actuals, Estimates, JoinType, ModifyOperation, NodeInfo, OperatorKind, OperatorNode, QueryDag, Relationship,
};
use std::path::PathBuf;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository root").to_path_buf()
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests").join("fixtures").join(rel)
}

/// Short strings, including non-ASCII and the empty string.
pub fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z_]{1,12}", 1 => "\\PC{0,8}", 1 => Just(String::new())]
}

fn arb_opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(arb_text())
}

fn arb_keys() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(arb_text(), 0..3)
}

/// Any operator, every variant reachable.
pub fn arb_operator() -> impl Strategy<Value = OperatorNode> {
    (
        0..OperatorKind::COUNT,
        arb_text(),
        arb_text(),
        arb_opt_text(),
        arb_keys(),
        arb_keys(),
        any::<bool>(),
        any::<bool>(),
        0usize..7,
        any::<u32>(),
    )
        .prop_map(|(k, a, b, c, keys, keys2, x, y, small, n)| {
            use OperatorKind as K;
            use OperatorNode as N;
            let join_type = JoinType::ALL[small % JoinType::ALL.len()];
            match OperatorKind::from_index(k).expect("k < COUNT") {
                K::SeqScan => N::SeqScan { table: a },
                K::SampleScan => N::SampleScan { table: a, method: b },
                K::IndexScan => N::IndexScan { table: a, index: b, index_cond: c },
                K::IndexOnlyScan => N::IndexOnlyScan { table: a, index: b, index_cond: c },
                K::HnswScan => N::HnswScan { table: a, index: b, order_by: c },
                K::IvfFlatScan => N::IvfFlatScan { table: a, index: b, order_by: c },
                K::BitmapIndexScan => N::BitmapIndexScan { index: a, index_cond: c },
                K::BitmapScan => N::BitmapScan { table: a, recheck_cond: c },
                K::BitmapAnd => N::BitmapAnd,
                K::BitmapOr => N::BitmapOr,
                K::TidScan => N::TidScan { table: a, tid_cond: c },
                K::TidRangeScan => N::TidRangeScan { table: a, tid_cond: c },
                K::SubqueryScan => N::SubqueryScan { alias: a },
                K::FunctionScan => N::FunctionScan { function: a },
                K::TableFuncScan => N::TableFuncScan { function: a },
                K::ValuesScan => N::ValuesScan,
                K::CteScan => N::CteScan { cte: a },
                K::NamedTuplestoreScan => N::NamedTuplestoreScan { name: a },
                K::WorkTableScan => N::WorkTableScan { cte: a },
                K::ForeignScan => N::ForeignScan { table: c },
                K::CustomScan => N::CustomScan { provider: a, table: c },
                K::NestedLoop => N::NestedLoop { join_type },
                K::HashJoin => N::HashJoin { join_type, hash_cond: c },
                K::MergeJoin => N::MergeJoin { join_type, merge_cond: c },
                K::Hash => N::Hash,
                K::Aggregate => N::Aggregate,
                K::GroupAggregate => N::GroupAggregate { group_keys: keys },
                K::HashAggregate => N::HashAggregate { group_keys: keys },
                K::MixedAggregate => N::MixedAggregate { group_keys: keys },
                K::Group => N::Group { keys },
                K::WindowAgg => N::WindowAgg,
                K::Sort => N::Sort { keys },
                K::IncrementalSort => N::IncrementalSort { keys, presorted_keys: keys2 },
                K::Filter => N::Filter { predicate: a },
                K::Result => N::Result { one_time_filter: c },
                K::ProjectSet => N::ProjectSet,
                K::Append => N::Append,
                K::MergeAppend => N::MergeAppend { sort_keys: keys },
                K::Union => N::Union { all: x },
                K::Intersect => N::Intersect { all: x, hashed: y },
                K::Except => N::Except { all: x, hashed: y },
                K::RecursiveUnion => N::RecursiveUnion,
                K::Materialize => N::Materialize,
                K::Memoize => N::Memoize { cache_key: c },
                K::Limit => N::Limit,
                K::Unique => N::Unique,
                K::LockRows => N::LockRows,
                K::ModifyTable => {
                    N::ModifyTable { operation: ModifyOperation::ALL[small % ModifyOperation::ALL.len()], table: a }
                }
                K::Gather => N::Gather { workers_planned: n },
                K::GatherMerge => N::GatherMerge { workers_planned: n },
                K::Other => N::Other { node_type: a },
            }
        })
}

/// A finite float of any magnitude and sign, including -0.0 and subnormals.
pub fn arb_finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 0.0f64..1e7,
        1 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
        1 => Just(-0.0f64),
        1 => Just(f64::MIN_POSITIVE / 4.0),
    ]
}

/// Any node info with finite numbers.
pub fn arb_info() -> impl Strategy<Value = NodeInfo> {
    let actual = (arb_finite(), arb_finite(), arb_finite(), arb_finite())
        .prop_map(|(startup_ms, total_ms, rows, loops)| Actuals { startup_ms, total_ms, rows, loops });
    (
        (arb_finite(), arb_finite(), arb_finite(), any::<u32>()),
        arb_opt_text(),
        proptest::option::of(0usize..Relationship::ALL.len()),
        arb_opt_text(),
        any::<bool>(),
        proptest::option::of(actual),
    )
        .prop_map(|((startup_cost, total_cost, rows, width), filter, rel, subplan, parallel_aware, actual)| {
            NodeInfo {
                estimates: Estimates { startup_cost, total_cost, rows, width },
                filter,
                relationship: rel.map(|r| Relationship::ALL[r]),
                subplan,
                parallel_aware,
                actual,
            }
        })
}

/// A recipe for a random DAG: nodes with distinct, non-contiguous ids, and candidate edges between them that
/// respect a hidden random rank (so they can all be added), in random order.
#[derive(Debug, Clone)]
pub struct DagRecipe {
    /// `(id, operator, info)` in insertion order.
    pub nodes: Vec<(usize, OperatorNode, NodeInfo)>,
    /// Edges `(from, to)` in insertion order; all consistent with one topological order.
    pub edges: Vec<(usize, usize)>,
}

impl DagRecipe {
    /// Builds the DAG through the public API: `add_node_with` then `add_edge`, in recipe order.
    pub fn build(&self) -> QueryDag {
        let mut dag = QueryDag::new();
        for (id, op, info) in &self.nodes {
            dag.add_node_with(*id, op.clone(), info.clone());
        }
        for &(from, to) in &self.edges {
            dag.add_edge(from, to).expect("recipe edges are acyclic and distinct");
        }
        dag
    }
}

/// Random DAGs of up to `max_nodes` nodes with random operators, infos, ids and insertion orders.
pub fn arb_recipe(max_nodes: usize) -> impl Strategy<Value = DagRecipe> {
    (0..=max_nodes)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec((arb_operator(), arb_info()), n),
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                proptest::collection::vec((0..n.max(1), 0..n.max(1)), 0..=(2 * n)),
                any::<u64>(),
            )
        })
        .prop_map(|(ops, rank, pairs, id_salt)| {
            // Distinct ids with gaps: position * 7 + salt-derived offset.
            let offset = (id_salt % 1000) as usize;
            let ids: Vec<usize> = (0..ops.len()).map(|i| offset + i * 7).collect();
            let nodes = ops.into_iter().zip(&ids).map(|((op, info), &id)| (id, op, info)).collect();
            let mut seen = std::collections::HashSet::new();
            let edges = pairs
                .into_iter()
                .filter(|&(a, b)| a != b)
                .map(|(a, b)| if rank[a] < rank[b] { (a, b) } else { (b, a) })
                .filter(|&e| seen.insert(e))
                .map(|(a, b)| (ids[a], ids[b]))
                .collect();
            DagRecipe { nodes, edges }
        })
}
