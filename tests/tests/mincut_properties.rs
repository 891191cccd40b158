//! Minimum cut invariants, 1000 random cases each, against an independent brute-force oracle.

use proptest::prelude::*;
use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag::mincut::{DagMinCutEngine, LocalKCut, MinCutConfig};
use ruvector_dag::{NodeInfo, OperatorNode, QueryDag};
use std::collections::{HashMap, HashSet};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 1000, ..ProptestConfig::default() }
}

/// A random plan with one root: nodes `0..n` in data-flow order, random edges forward, every other sink feeding
/// the last node, random estimates.
fn arb_plan(max_nodes: usize) -> impl Strategy<Value = QueryDag> {
    (1..=max_nodes)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec((0.0f64..1000.0, 1.0f64..100_000.0, 1u32..200), n),
                proptest::collection::vec((0..n, 0..n), 0..2 * n),
            )
        })
        .prop_map(|(est, pairs)| {
            let n = est.len();
            let mut edges: HashSet<(usize, usize)> = pairs.into_iter().filter(|(a, b)| a < b).collect();
            let root = n - 1;
            for v in 0..root {
                if !edges.iter().any(|&(a, _)| a == v) {
                    edges.insert((v, root));
                }
            }
            // Totals must include inputs for self costs to be meaningful: accumulate bottom-up.
            let mut total = vec![0.0; n];
            for v in 0..n {
                let inputs: f64 = edges.iter().filter(|&&(_, b)| b == v).map(|&(a, _)| total[a]).sum();
                total[v] = inputs + est[v].0;
            }
            let nodes = (0..n).map(|v| {
                (
                    v,
                    OperatorNode::Other { node_type: format!("op{v}") },
                    NodeInfo::with_estimates(0.0, total[v], est[v].1, est[v].2),
                )
            });
            let mut edges: Vec<_> = edges.into_iter().collect();
            edges.sort_unstable();
            QueryDag::try_from_parts(nodes, edges).unwrap()
        })
}

/// Brute force: enumerate which side every `in`/`out` node of the split network is on; S is fixed on the source
/// side, T on the sink side; the cut is the capacity of edges from the source side to the sink side.
fn brute_force(dag: &QueryDag, engine: &DagMinCutEngine) -> f64 {
    let ids: Vec<usize> = dag.node_ids().collect();
    let n = ids.len();
    let pos: HashMap<usize, usize> = ids.iter().enumerate().map(|(p, &id)| (id, p)).collect();
    let root = pos[&dag.root().unwrap()];
    let mut best = f64::INFINITY;
    for mask in 0u32..(1 << (2 * n)) {
        // bit 2p: p_in on the source side; bit 2p+1: p_out on the source side.
        let src = |bit: usize| mask & (1 << bit) != 0;
        let mut value = 0.0;
        for (p, &id) in ids.iter().enumerate() {
            if dag.children(id).unwrap().len() == 0 && !src(2 * p) {
                value = f64::INFINITY; // S -> scan_in is unbounded
            }
            if src(2 * p) && !src(2 * p + 1) {
                value += engine.node_capacity(id).unwrap();
            }
            for c in dag.children(id).unwrap() {
                if src(2 * pos[&c] + 1) && !src(2 * p) {
                    value += engine.edge_capacity(c, id).unwrap();
                }
            }
        }
        if src(2 * root + 1) {
            value = f64::INFINITY; // root_out -> T is unbounded
        }
        best = best.min(value);
    }
    best
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Removing the cut's operators and edges leaves no path from a scan to the root.
fn separates(dag: &QueryDag, nodes: &[usize], edges: &[(usize, usize)]) -> bool {
    let cut_nodes: HashSet<usize> = nodes.iter().copied().collect();
    let cut_edges: HashSet<(usize, usize)> = edges.iter().copied().collect();
    let root = dag.root().unwrap();
    let mut stack: Vec<usize> = dag.sources().into_iter().filter(|s| !cut_nodes.contains(s)).collect();
    let mut seen: HashSet<usize> = stack.iter().copied().collect();
    while let Some(v) = stack.pop() {
        if v == root {
            return false;
        }
        for p in dag.parents(v).unwrap() {
            if !cut_edges.contains(&(v, p)) && !cut_nodes.contains(&p) && seen.insert(p) {
                stack.push(p);
            }
        }
    }
    true
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cut_value_equals_a_brute_force_oracle(dag in arb_plan(6)) {
        let mut engine = DagMinCutEngine::new();
        engine.build_from_dag(&dag).unwrap();
        let exact = brute_force(&dag, &engine);
        prop_assert!(close(engine.cut_value(), exact), "engine {} vs brute force {exact}", engine.cut_value());
        let mut flow = DagMinCutEngine::with_config(MinCutConfig { force_flow: true, ..MinCutConfig::default() });
        flow.build_from_dag(&dag).unwrap();
        prop_assert!(close(flow.cut_value(), exact), "max flow {} vs brute force {exact}", flow.cut_value());
    }

    #[test]
    fn the_cut_set_separates_and_adds_up(dag in arb_plan(12)) {
        for force_flow in [false, true] {
            let mut engine = DagMinCutEngine::with_config(MinCutConfig { force_flow, ..MinCutConfig::default() });
            engine.build_from_dag(&dag).unwrap();
            let cut = engine.min_cut();
            prop_assert!(separates(&dag, &cut.nodes, &cut.edges), "{cut:?}");
            let sum: f64 = cut.nodes.iter().map(|&v| engine.node_capacity(v).unwrap()).sum::<f64>()
                + cut.edges.iter().map(|&(a, b)| engine.edge_capacity(a, b).unwrap()).sum::<f64>();
            prop_assert!(close(sum, cut.value), "elements sum to {sum}, cut is {}", cut.value);
        }
    }

    #[test]
    fn incremental_updates_equal_a_recompute(
        shape in 0usize..5,
        n in 2usize..60,
        seed in any::<u64>(),
        updates in proptest::collection::vec((any::<usize>(), any::<bool>(), 0.0f64..500.0), 1..30),
    ) {
        let dag = generate(DagShape::ALL[shape], n, seed);
        let mut engine = DagMinCutEngine::new();
        engine.build_from_dag(&dag).unwrap();
        let edges: Vec<(usize, usize)> = dag.edges().collect();
        let ids: Vec<usize> = dag.node_ids().collect();
        let mut node_caps: HashMap<usize, f64> = HashMap::new();
        let mut edge_caps: HashMap<(usize, usize), f64> = HashMap::new();
        for (pick, on_edge, cap) in updates {
            if on_edge && !edges.is_empty() {
                let (a, b) = edges[pick % edges.len()];
                engine.update_edge(a, b, cap).unwrap();
                edge_caps.insert((a, b), cap);
            } else {
                let v = ids[pick % ids.len()];
                engine.update_node_cost(v, cap).unwrap();
                node_caps.insert(v, cap);
            }
            // From scratch with the same capacities, by max flow.
            let mut fresh = DagMinCutEngine::with_config(MinCutConfig { force_flow: true, ..MinCutConfig::default() });
            fresh.build_from_dag(&dag).unwrap();
            for (&v, &c) in &node_caps { fresh.update_node_cost(v, c).unwrap(); }
            for (&(a, b), &c) in &edge_caps { fresh.update_edge(a, b, c).unwrap(); }
            prop_assert!(close(engine.cut_value(), fresh.cut_value()), "incremental {} vs fresh {}", engine.cut_value(), fresh.cut_value());
        }
    }

    #[test]
    fn local_cuts_are_valid_upper_bounds(dag in arb_plan(12), seed in any::<usize>(), budget in 0usize..30) {
        let mut engine = DagMinCutEngine::new();
        engine.build_from_dag(&dag).unwrap();
        let ids: Vec<usize> = dag.node_ids().collect();
        let seed = ids[seed % ids.len()];
        let local = LocalKCut::new(budget).cut(&dag, seed).unwrap();
        prop_assert!(local.value >= engine.cut_value() - 1e-6 * engine.cut_value().max(1.0), "local {} < exact {}", local.value, engine.cut_value());
        prop_assert!(separates(&dag, &local.nodes, &local.edges), "{local:?}");
        let whole = LocalKCut::new(usize::MAX).cut(&dag, seed).unwrap();
        prop_assert!(whole.covers_plan);
        prop_assert!(close(whole.value, engine.cut_value()), "whole-plan region {} vs exact {}", whole.value, engine.cut_value());
    }

    #[test]
    fn criticality_is_a_share_and_only_cut_operators_have_it(dag in arb_plan(10)) {
        let mut engine = DagMinCutEngine::new();
        engine.build_from_dag(&dag).unwrap();
        let cut = engine.min_cut();
        let crit = engine.criticality();
        for (p, id) in dag.node_ids().enumerate() {
            prop_assert!((0.0..=1.0).contains(&crit[p]));
            if !cut.nodes.contains(&id) {
                prop_assert_eq!(crit[p], 0.0);
            }
        }
    }
}
