//! Milestone M1's acceptance criteria, verbatim, plus the generator sizes M1 asks for.

use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag::{OperatorNode, QueryDag};

#[test]
fn milestone_m1_snippet() {
    // Core functionality must work
    let mut dag = QueryDag::new();
    dag.add_node(0, OperatorNode::SeqScan { table: "users".into() });
    dag.add_node(1, OperatorNode::Filter { predicate: "id > 0".into() });
    dag.add_edge(0, 1).unwrap();
    let sorted = dag.topological_sort().unwrap();
    assert_eq!(sorted, vec![0, 1]);
    let json = dag.to_json().unwrap();
    let restored = QueryDag::from_json(&json).unwrap();
    assert_eq!(dag, restored);
}

#[test]
fn generated_dags_of_every_shape_and_size_round_trip() {
    for shape in DagShape::ALL {
        for n in [10, 100, 500, 1000, 2000] {
            let dag = generate(shape, n, 2026);
            assert_eq!(dag.node_count(), n);
            assert_eq!(dag.topological_sort().unwrap().len(), n);
            assert_eq!(QueryDag::from_json(&dag.to_json().unwrap()).unwrap(), dag, "{shape:?} {n} JSON");
            assert_eq!(QueryDag::from_bytes(&dag.to_bytes()).unwrap(), dag, "{shape:?} {n} binary");
        }
    }
}
