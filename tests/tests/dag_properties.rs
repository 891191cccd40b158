//! Invariants of the plan DAG, 1000 random cases each.

use proptest::prelude::*;
use ruvector_dag::{Error, QueryDag};
use ruvector_dag_tests::arb_recipe;
use std::collections::{HashMap, HashSet};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 1000, ..ProptestConfig::default() }
}

/// Naive oracle: can `from` reach `to` along edges?
fn reaches(dag: &QueryDag, from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = HashSet::new();
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n) {
            stack.extend(dag.parents(n).unwrap());
        }
    }
    false
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_round_trip_is_exact(recipe in arb_recipe(24)) {
        let dag = recipe.build();
        let json = dag.to_json().unwrap();
        prop_assert_eq!(QueryDag::from_json(&json).unwrap(), dag);
    }

    #[test]
    fn binary_round_trip_is_exact(recipe in arb_recipe(24)) {
        let dag = recipe.build();
        let back = QueryDag::from_bytes(&dag.to_bytes()).unwrap();
        prop_assert_eq!(back, dag);
    }

    #[test]
    fn topological_order_respects_every_edge(recipe in arb_recipe(40)) {
        let dag = recipe.build();
        let order = dag.topological_sort().unwrap();
        prop_assert_eq!(order.len(), dag.node_count());
        let pos: HashMap<usize, usize> = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        prop_assert_eq!(pos.len(), dag.node_count(), "order is a permutation");
        for (from, to) in dag.edges() {
            prop_assert!(pos[&from] < pos[&to], "{from} -> {to} out of order in {order:?}");
        }
        // Deterministic: the same DAG gives the same order.
        prop_assert_eq!(dag.clone().topological_sort().unwrap(), order);
    }

    #[test]
    fn an_edge_closing_a_cycle_is_rejected_and_leaves_the_dag_unchanged(recipe in arb_recipe(30), pick in any::<usize>()) {
        let mut dag = recipe.build();
        // Pairs (a, d) with d feeding a, directly or not: adding a -> d closes a cycle.
        let pairs: Vec<(usize, usize)> = dag
            .node_ids()
            .flat_map(|a| dag.descendants(a).unwrap().into_iter().map(move |d| (a, d)))
            .collect();
        prop_assume!(!pairs.is_empty());
        let (a, d) = pairs[pick % pairs.len()];
        let before = dag.clone();
        match dag.add_edge(a, d) {
            Err(Error::Cycle { cycle }) => {
                prop_assert_eq!(cycle.first(), Some(&a));
                prop_assert_eq!(cycle.last(), Some(&a));
                prop_assert_eq!(cycle[1], d);
                for w in cycle[1..].windows(2) {
                    prop_assert!(dag.has_edge(w[0], w[1]), "{} -> {} is not an edge of {cycle:?}", w[0], w[1]);
                }
            }
            other => prop_assert!(false, "expected a cycle error, got {other:?}"),
        }
        prop_assert_eq!(&dag, &before);
        prop_assert_eq!(dag.topological_sort().unwrap(), before.topological_sort().unwrap());
    }

    #[test]
    fn add_edge_accepts_exactly_the_acyclic_edges(
        n in 1usize..25,
        attempts in proptest::collection::vec((0usize..25, 0usize..25), 0..80),
    ) {
        let mut dag = QueryDag::new();
        for i in 0..n {
            dag.add_node(i, ruvector_dag::OperatorNode::Limit);
        }
        for (a, b) in attempts {
            let (a, b) = (a % n, b % n);
            let expected_cycle = a != b && !dag.has_edge(a, b) && reaches(&dag, b, a);
            let result = dag.add_edge(a, b);
            match result {
                Ok(()) => prop_assert!(a != b && !expected_cycle),
                Err(Error::SelfLoop(_)) => prop_assert_eq!(a, b),
                Err(Error::DuplicateEdge { .. }) => prop_assert!(dag.has_edge(a, b)),
                Err(Error::Cycle { .. }) => prop_assert!(expected_cycle),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
        let order = dag.topological_sort().unwrap();
        let pos: HashMap<usize, usize> = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        for (from, to) in dag.edges() {
            prop_assert!(pos[&from] < pos[&to]);
        }
    }

    #[test]
    fn from_bytes_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = QueryDag::from_bytes(&bytes);
        let mut with_header = b"RVDG\x01".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = QueryDag::from_bytes(&with_header);
    }

    #[test]
    fn from_bytes_never_panics_on_mutated_encodings(
        recipe in arb_recipe(12),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
        fix_checksum in any::<bool>(),
    ) {
        let mut bytes = recipe.build().to_bytes();
        for (at, xor) in flips {
            let i = at % bytes.len();
            bytes[i] ^= xor.max(1);
        }
        if cut % 3 == 0 {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        if fix_checksum && bytes.len() >= 9 {
            // Recompute the checksum so the decoder's structural checks, not the CRC, meet the damage.
            let body = bytes.len() - 4;
            let crc = crc32fast::hash(&bytes[..body]);
            bytes[body..].copy_from_slice(&crc.to_le_bytes());
        }
        if let Ok(dag) = QueryDag::from_bytes(&bytes) {
            // Whatever decodes is a valid DAG.
            prop_assert!(dag.topological_sort().is_ok());
        }
    }

    #[test]
    fn from_json_never_panics_on_mutated_documents(recipe in arb_recipe(8), at in any::<usize>(), ch in any::<char>()) {
        let json = recipe.build().to_json().unwrap();
        let mut chars: Vec<char> = json.chars().collect();
        let i = at % chars.len();
        chars[i] = ch;
        let mutated: String = chars.into_iter().collect();
        let _ = QueryDag::from_json(&mutated);
    }
}
