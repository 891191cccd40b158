//! Import of real PostgreSQL 15 `EXPLAIN (FORMAT JSON)` output (fixtures made by tests/fixtures/explain/generate.sh).

use ruvector_dag::dag::{ExplainOptions, ExplainPlan, import_explain};
use ruvector_dag::{JoinType, ModifyOperation, OperatorKind, OperatorNode, QueryDag, Relationship};
use ruvector_dag_tests::fixture;
use std::collections::BTreeSet;

/// Index access methods from the fixture cluster's catalog.
fn options() -> ExplainOptions {
    let text = std::fs::read_to_string(fixture("explain/indexes.json")).unwrap();
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut opts = ExplainOptions::new();
    opts.guess_am_from_name = false;
    for (index, am) in map {
        opts = opts.with_index_am(index, am.as_str().unwrap());
    }
    opts
}

fn load(name: &str) -> (String, ExplainPlan) {
    let text =
        std::fs::read_to_string(fixture(&format!("explain/{name}"))).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    let plan = import_explain(&text, &options()).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    (text, plan)
}

fn all_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture("explain"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json") && n != "indexes.json")
        .collect();
    names.sort();
    names
}

fn kinds(dag: &QueryDag) -> Vec<OperatorKind> {
    dag.nodes().map(|n| n.op.kind()).collect()
}

fn find(dag: &QueryDag, kind: OperatorKind) -> Vec<usize> {
    dag.nodes().filter(|n| n.op.kind() == kind).map(|n| n.id).collect()
}

#[test]
fn every_fixture_imports_completely() {
    let names = all_fixtures();
    assert!(names.len() >= 40, "expected the generated fixtures, found {}", names.len());
    for name in names {
        let (text, plan) = load(&name);
        let dag = &plan.dag;
        // One DAG node per plan node.
        assert_eq!(dag.node_count(), text.matches("\"Node Type\"").count(), "{name}");
        assert_eq!(dag.root(), Some(0), "{name}: the plan's root is node 0 and the only sink");
        assert!(dag.nodes().all(|n| n.op.kind() != OperatorKind::Other), "{name}: unknown node type");
        assert_eq!(dag.topological_sort().unwrap().len(), dag.node_count());
        // The root's estimates are the document's.
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let root = &doc[0]["Plan"];
        let est = dag.info(0).unwrap().estimates;
        assert_eq!(est.total_cost, root["Total Cost"].as_f64().unwrap(), "{name}");
        assert_eq!(est.rows, root["Plan Rows"].as_f64().unwrap(), "{name}");
        assert_eq!(est.width as u64, root["Plan Width"].as_u64().unwrap(), "{name}");
        // ANALYZE fixtures carry actuals and timings; plain ones do not.
        let analyzed = name.ends_with(".analyze.json");
        assert_eq!(dag.info(0).unwrap().actual.is_some(), analyzed, "{name}");
        assert_eq!(plan.execution_ms.is_some(), analyzed, "{name}");
        if analyzed {
            let a = dag.info(0).unwrap().actual.unwrap();
            assert_eq!(a.rows, root["Actual Rows"].as_f64().unwrap(), "{name}");
            assert_eq!(a.total_ms, root["Actual Total Time"].as_f64().unwrap(), "{name}");
        }
        // Both serialisations round-trip imported plans exactly.
        assert_eq!(&QueryDag::from_json(&dag.to_json().unwrap()).unwrap(), dag, "{name}");
        assert_eq!(&QueryDag::from_bytes(&dag.to_bytes()).unwrap(), dag, "{name}");
    }
}

#[test]
fn fixtures_cover_every_postgres_node_type_we_model() {
    use OperatorKind as K;
    let mut seen = BTreeSet::new();
    for name in all_fixtures() {
        seen.extend(kinds(&load(&name).1.dag));
    }
    let postgres_kinds = [
        K::SeqScan,
        K::SampleScan,
        K::IndexScan,
        K::IndexOnlyScan,
        K::HnswScan,
        K::IvfFlatScan,
        K::BitmapIndexScan,
        K::BitmapScan,
        K::BitmapAnd,
        K::BitmapOr,
        K::TidScan,
        K::TidRangeScan,
        K::SubqueryScan,
        K::FunctionScan,
        K::TableFuncScan,
        K::ValuesScan,
        K::CteScan,
        K::WorkTableScan,
        K::NestedLoop,
        K::HashJoin,
        K::MergeJoin,
        K::Hash,
        K::Aggregate,
        K::GroupAggregate,
        K::HashAggregate,
        K::MixedAggregate,
        K::Group,
        K::WindowAgg,
        K::Sort,
        K::IncrementalSort,
        K::Result,
        K::ProjectSet,
        K::Append,
        K::MergeAppend,
        K::Intersect,
        K::Except,
        K::RecursiveUnion,
        K::Materialize,
        K::Memoize,
        K::Limit,
        K::Unique,
        K::LockRows,
        K::ModifyTable,
        K::Gather,
        K::GatherMerge,
    ];
    let missing: Vec<_> = postgres_kinds.iter().filter(|k| !seen.contains(k)).collect();
    assert!(missing.is_empty(), "no fixture shows {missing:?}");
}

#[test]
fn scans_keep_relation_index_and_conditions() {
    let dag = load("index_scan.json").1.dag;
    assert_eq!(
        dag.node(0),
        Some(&OperatorNode::IndexScan {
            table: "orders".into(),
            index: "orders_pkey".into(),
            index_cond: Some("(o_orderkey = 42)".into()),
        })
    );
    let dag = load("seq_scan_filter.json").1.dag;
    assert_eq!(dag.node(0), Some(&OperatorNode::SeqScan { table: "customer".into() }));
    assert_eq!(dag.info(0).unwrap().filter.as_deref(), Some("(c_acctbal > '5000'::numeric)"));
    let dag = load("bitmap_and.json").1.dag;
    assert_eq!(
        kinds(&dag),
        [
            OperatorKind::BitmapScan,
            OperatorKind::BitmapAnd,
            OperatorKind::BitmapIndexScan,
            OperatorKind::BitmapIndexScan
        ]
    );
    assert_eq!(dag.children(1).unwrap().collect::<Vec<_>>(), vec![2, 3]);
    assert!(dag.nodes().all(|n| n.id == 0 || n.info.relationship.is_some()));
}

#[test]
fn vector_index_scans_are_recognised_from_the_catalog() {
    let dag = load("vector_hnsw.analyze.json").1.dag;
    let scan = find(&dag, OperatorKind::HnswScan);
    assert_eq!(scan.len(), 1);
    match dag.node(scan[0]).unwrap() {
        OperatorNode::HnswScan { table, index, order_by } => {
            assert_eq!((table.as_str(), index.as_str()), ("items_hnsw", "items_hnsw_embedding"));
            assert!(order_by.as_deref().unwrap().contains("<->"), "{order_by:?}");
        }
        other => panic!("{other:?}"),
    }
    let dag = load("vector_ivfflat.json").1.dag;
    assert_eq!(find(&dag, OperatorKind::IvfFlatScan).len(), 1);
    // Without catalog knowledge and with names that do not say, it stays a plain index scan.
    let text = std::fs::read_to_string(fixture("explain/vector_ivfflat.json")).unwrap();
    let guessed = QueryDag::from_explain_json(&text.replace("items_ivf_embedding", "items_emb_idx")).unwrap();
    assert!(find(&guessed, OperatorKind::IvfFlatScan).is_empty());
}

#[test]
fn joins_aggregates_and_set_operations_keep_their_strategy() {
    let dag = load("semi_anti_join.json").1.dag;
    let joins: std::collections::HashSet<JoinType> = dag.nodes().filter_map(|n| n.op.join_type()).collect();
    assert!(
        joins.contains(&JoinType::Anti) && (joins.contains(&JoinType::Semi) || joins.contains(&JoinType::Inner)),
        "{joins:?}"
    );
    let dag = load("left_join.json").1.dag;
    assert!(dag.nodes().any(|n| n.op.join_type().is_some_and(|j| matches!(j, JoinType::Left | JoinType::Right))));

    assert_eq!(find(&load("aggregate_plain.json").1.dag, OperatorKind::Aggregate).len(), 1);
    match load("aggregate_sorted.json").1.dag.node(0).unwrap() {
        OperatorNode::GroupAggregate { group_keys } => assert_eq!(group_keys, &["l_suppkey".to_owned()]),
        other => panic!("{other:?}"),
    }
    assert_eq!(find(&load("aggregate_hashed.analyze.json").1.dag, OperatorKind::HashAggregate).len(), 1);
    match load("aggregate_mixed.json").1.dag.node(0).unwrap() {
        OperatorNode::MixedAggregate { group_keys } => assert_eq!(group_keys.len(), 2, "{group_keys:?}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(load("setop_intersect.json").1.dag.node(0), Some(OperatorNode::Intersect { all: false, .. })));
    assert!(matches!(
        load("setop_except_all.json").1.dag.node(0),
        Some(OperatorNode::Except { all: true, hashed: false })
    ));
    let gather = load("gather.analyze.json").1.dag;
    let g = find(&gather, OperatorKind::Gather);
    assert!(matches!(gather.node(g[0]), Some(OperatorNode::Gather { workers_planned: 2 })));
    assert!(gather.nodes().any(|n| n.info.parallel_aware));
    let modify = |f: &str| match load(f).1.dag.node(0).unwrap() {
        OperatorNode::ModifyTable { operation, table } => (*operation, table.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(modify("modify_insert.json"), (ModifyOperation::Insert, "region".into()));
    assert_eq!(modify("modify_update.json"), (ModifyOperation::Update, "customer".into()));
    assert_eq!(modify("modify_delete.json"), (ModifyOperation::Delete, "orders".into()));
}

#[test]
fn subplans_and_ctes_become_dag_structure() {
    // A CTE read twice: one subplan, two consumers, not hanging under its owner any more.
    let dag = load("cte_scan_twice.analyze.json").1.dag;
    let scans = find(&dag, OperatorKind::CteScan);
    assert_eq!(scans.len(), 2);
    let cte_root = dag.nodes().find(|n| n.info.subplan.as_deref() == Some("CTE c")).unwrap().id;
    assert_eq!(dag.parents(cte_root).unwrap().collect::<Vec<_>>(), scans);
    assert!(!dag.has_edge(cte_root, 0));
    assert_eq!(dag.sources().len(), 1, "everything flows from the one orders scan");

    // A correlated subquery is a SubPlan input of the node evaluating it; it runs once per outer row.
    let dag = load("correlated_subplan.analyze.json").1.dag;
    let sub = dag.nodes().find(|n| n.info.relationship == Some(Relationship::SubPlan)).unwrap();
    assert_eq!(sub.info.subplan.as_deref(), Some("SubPlan 1"));
    assert!(sub.info.actual.unwrap().loops > 1.0, "executed once per outer row");
    let dag = load("init_plan.json").1.dag;
    assert!(dag.nodes().any(|n| n.info.relationship == Some(Relationship::InitPlan)));

    // Recursive CTE: the work table scan reads the recursive union's working table without a cycle.
    let dag = load("recursive_union.analyze.json").1.dag;
    assert_eq!(find(&dag, OperatorKind::RecursiveUnion).len(), 1);
    assert_eq!(find(&dag, OperatorKind::WorkTableScan).len(), 1);
}

#[test]
fn the_demo_cli_reads_a_fixture() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["run", "--quiet", "-p", "ruvector-dag-demo", "--"])
        .arg(fixture("explain/five_way_join.analyze.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Nodes 17, edges 16"), "{text}");
    assert!(text.contains("Index Scan using lineitem_suppkey on lineitem"), "{text}");
    assert!(text.contains("Largest row misestimates"), "{text}");
}
