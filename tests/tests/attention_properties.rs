//! Invariants of the seven attention mechanisms, 1000 random plans each.

use proptest::prelude::*;
use ruvector_dag::attention::{AttentionScores, DagAttention, PreparedDag};
use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag::{NodeInfo, QueryDag};
use ruvector_dag_attention::{
    AttentionConfig, CausalConeAttention, CausalConeParams, CriticalPathAttention, HierarchicalLorentzAttention,
    LorentzParams, MinCutGatedAttention, ParallelBranchAttention, all_mechanisms, lorentz_inner,
};
use std::collections::HashMap;

/// Number of input paths from `from` down to `to` (1 when they are the same operator).
fn paths_to(dag: &QueryDag, from: usize, to: usize, memo: &mut HashMap<usize, f64>) -> f64 {
    if from == to {
        return 1.0;
    }
    if let Some(&p) = memo.get(&from) {
        return p;
    }
    let p = dag.children(from).unwrap().collect::<Vec<_>>().into_iter().map(|c| paths_to(dag, c, to, memo)).sum();
    memo.insert(from, p);
    p
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 1000, ..ProptestConfig::default() }
}

/// A generated plan of any shape, 1 to 120 nodes, with random estimates scaled per node.
fn arb_dag() -> impl Strategy<Value = QueryDag> {
    (0usize..5, 1usize..120, any::<u64>()).prop_map(|(shape, n, seed)| generate(DagShape::ALL[shape], n, seed))
}

/// The same plan with ids relabelled by `f` (insertion order kept).
fn relabel(dag: &QueryDag, f: impl Fn(usize) -> usize) -> QueryDag {
    QueryDag::try_from_parts(
        dag.nodes().map(|n| (f(n.id), n.op.clone(), n.info.clone())),
        dag.edges().map(|(a, b)| (f(a), f(b))),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn weights_sum_to_one_lie_in_unit_interval_and_are_deterministic(dag in arb_dag()) {
        for m in all_mechanisms(AttentionConfig::default()) {
            let a = m.forward(&dag).unwrap();
            prop_assert_eq!(a.len(), dag.node_count());
            let sum: f32 = a.values().sum();
            prop_assert!((sum - 1.0).abs() < 1e-3, "{}: sum {sum}", m.name());
            prop_assert!(a.values().all(|&w| (0.0..=1.0).contains(&w)), "{}", m.name());
            prop_assert_eq!(&a, &m.forward(&dag).unwrap(), "{} is deterministic", m.name());
        }
    }

    #[test]
    fn weights_are_invariant_under_node_relabeling(dag in arb_dag(), offset in 1usize..1_000_000, stride in 1usize..17) {
        let relabeled = relabel(&dag, |id| offset + id * stride);
        for m in all_mechanisms(AttentionConfig::default()) {
            let (a, b) = (m.forward(&dag).unwrap(), m.forward(&relabeled).unwrap());
            for (p, id) in dag.node_ids().enumerate() {
                prop_assert_eq!(a.as_slice()[p], b.get(&relabeled, offset + id * stride).unwrap(), "{} at {}", m.name(), id);
            }
        }
    }

    #[test]
    fn structural_mechanisms_ignore_insertion_order(dag in arb_dag(), rotate in any::<usize>()) {
        // The same plan with nodes inserted in a different (rotated) order.
        let nodes: Vec<_> = dag.nodes().map(|n| (n.id, n.op.clone(), n.info.clone())).collect();
        let k = rotate % nodes.len();
        let reordered = QueryDag::try_from_parts(nodes[k..].iter().chain(&nodes[..k]).cloned(), dag.edges()).unwrap();
        let config = AttentionConfig::default();
        let mechanisms: Vec<Box<dyn DagAttention>> = vec![
            Box::new(CausalConeAttention::new(config)),
            Box::new(CriticalPathAttention::new(config)),
            Box::new(ParallelBranchAttention::new(config)),
        ];
        for m in mechanisms {
            let (a, b) = (m.forward(&dag).unwrap(), m.forward(&reordered).unwrap());
            for id in dag.node_ids() {
                let (x, y) = (a.get(&dag, id).unwrap(), b.get(&reordered, id).unwrap());
                prop_assert!((x - y).abs() <= 1e-6 * x.max(y).max(1e-6), "{} at {id}: {x} vs {y}", m.name());
            }
        }
    }

    #[test]
    fn causal_cone_is_zero_outside_the_cone(dag in arb_dag(), max_hops in 0u32..6) {
        let m = CausalConeAttention::with_params(CausalConeParams { max_hops, ..CausalConeParams::default() });
        let prepared = PreparedDag::new(&dag);
        let mut out = AttentionScores::default();
        m.forward_prepared(&prepared, &mut out).unwrap();
        for p in 0..dag.node_count() {
            if !m.in_cone(&prepared, p) {
                prop_assert_eq!(out.as_slice()[p], 0.0);
            } else {
                prop_assert!(out.as_slice()[p] > 0.0);
            }
        }
    }

    #[test]
    fn raising_a_critical_operators_cost_never_lowers_its_weight(dag in arb_dag(), pick in any::<usize>(), delta in 0.1f64..10_000.0) {
        let cp = ruvector_dag::mincut::bottleneck::critical_path(&dag);
        let v = cp.path[pick % cp.path.len()];
        // Raise v's own cost by delta: a node's total is its own cost plus its inputs' totals, so every total
        // above v grows by delta once per path down to v (a shared subplan feeds several parents).
        let mut raised = dag.clone();
        for id in std::iter::once(v).chain(dag.ancestors(v).unwrap()) {
            raised.info_mut(id).unwrap().estimates.total_cost += delta * paths_to(&dag, id, v, &mut HashMap::new());
        }
        let m = CriticalPathAttention::new(AttentionConfig::default());
        let before = m.forward(&dag).unwrap().get(&dag, v).unwrap();
        let after = m.forward(&raised).unwrap().get(&raised, v).unwrap();
        prop_assert!(after >= before * (1.0 - 1e-5), "weight of {v} fell from {before} to {after}");
    }

    #[test]
    fn lorentz_points_lie_on_the_hyperboloid(dag in arb_dag(), curvature in -10.0f64..-0.05, edge in 0.05f64..2.0) {
        let m = HierarchicalLorentzAttention::with_params(LorentzParams { curvature, edge_length: edge, ..LorentzParams::default() });
        let prepared = PreparedDag::new(&dag);
        let k = -1.0 / curvature;
        for p in 0..dag.node_count() {
            let x = m.point(&prepared, p);
            let norm = lorentz_inner(&x, &x);
            prop_assert!((norm + k).abs() <= 1e-6 * k.max(x[0] * x[0]), "<x,x> = {norm}, expected {}", -k);
            prop_assert!(x[0] > 0.0);
            prop_assert!(m.distance(&x, &x).abs() < 1e-6);
        }
        let q = m.centroid(&prepared);
        prop_assert!((lorentz_inner(&q, &q) + k).abs() <= 1e-6 * k.max(q[0] * q[0]));
        if dag.node_count() >= 2 {
            let (a, b) = (m.point(&prepared, 0), m.point(&prepared, 1));
            prop_assert!((m.distance(&a, &b) - m.distance(&b, &a)).abs() < 1e-9, "distance is symmetric");
        }
    }

    #[test]
    fn parallel_rows_are_zero_on_comparable_pairs(dag in arb_dag(), pick in any::<usize>()) {
        let prepared = PreparedDag::new(&dag);
        let p = pick % dag.node_count();
        let mut row = Vec::new();
        ParallelBranchAttention::new(AttentionConfig::default()).row(&prepared, p, &mut row);
        let mut any_parallel = false;
        for (u, &w) in row.iter().enumerate() {
            if prepared.comparable(p, u) {
                prop_assert_eq!(w, 0.0);
            } else {
                any_parallel = true;
            }
        }
        let sum: f32 = row.iter().sum();
        if any_parallel { prop_assert!((sum - 1.0).abs() < 1e-3) } else { prop_assert_eq!(sum, 0.0) }
    }

    #[test]
    fn the_mincut_gate_set_separates_data_from_result(dag in arb_dag()) {
        let prepared = PreparedDag::new(&dag);
        let m = MinCutGatedAttention::new(AttentionConfig::default());
        // Removing the gated operators leaves no scan-to-root path.
        let root = dag.root().unwrap();
        let removed = |id: usize| prepared.in_cut[dag.position(id).unwrap()];
        let mut stack: Vec<usize> = dag.sources().into_iter().filter(|&s| !removed(s)).collect();
        let mut seen: std::collections::HashSet<usize> = stack.iter().copied().collect();
        while let Some(v) = stack.pop() {
            prop_assert_ne!(v, root, "a path avoids the cut");
            for p in dag.parents(v).unwrap() {
                if !removed(p) && seen.insert(p) {
                    stack.push(p);
                }
            }
        }
        // Gates: cut operators at least as open as the rest.
        let closed = (0..dag.node_count()).filter(|&p| !prepared.in_cut[p]).map(|p| m.gate(&prepared, p)).fold(0.0, f64::max);
        for p in (0..dag.node_count()).filter(|&p| prepared.in_cut[p]) {
            prop_assert!(m.gate(&prepared, p) >= closed);
        }
    }
}

#[test]
fn features_change_the_scores() {
    // Two plans with the same shape, one with a far costlier scan: every mechanism that reads cost notices.
    let plan = |cost: f64| {
        let mut dag = QueryDag::new();
        dag.add_node_with(
            0,
            ruvector_dag::OperatorNode::SeqScan { table: "a".into() },
            NodeInfo::with_estimates(0.0, cost, 100.0, 8),
        );
        dag.add_node_with(
            1,
            ruvector_dag::OperatorNode::SeqScan { table: "b".into() },
            NodeInfo::with_estimates(0.0, 10.0, 100.0, 8),
        );
        dag.add_node_with(2, ruvector_dag::OperatorNode::Hash, NodeInfo::with_estimates(10.0, 11.0, 100.0, 8));
        dag.add_node_with(
            3,
            ruvector_dag::OperatorNode::HashJoin { join_type: Default::default(), hash_cond: None },
            NodeInfo::with_estimates(11.0, cost + 20.0, 100.0, 16),
        );
        for (x, y) in [(0, 3), (1, 2), (2, 3)] {
            dag.add_edge(x, y).unwrap();
        }
        dag
    };
    let (cheap, dear) = (plan(10.0), plan(10_000.0));
    for m in all_mechanisms(AttentionConfig::default()) {
        let (a, b) = (m.forward(&cheap).unwrap(), m.forward(&dear).unwrap());
        assert_ne!(a, b, "{}: costs do not influence the scores", m.name());
        if m.name() != "parallel_branch" {
            // Parallel branch weighs the two scans symmetrically (each is the other's parallel work).
            assert!(b.as_slice()[0] > a.as_slice()[0], "{}: scan 0's weight did not grow with its cost", m.name());
        }
    }
}
