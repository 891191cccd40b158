//! Plan DAG core: construction, topological sort, JSON and binary round trips at 10/100/1000 nodes.
//!
//! Run: `cargo bench -p ruvector-dag-benches --bench dag` (add `-- --quick` for a fast pass).
//! Plans come from the seeded generator (bushy joins: realistic fan-in, strings in every scan).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag::{NodeInfo, OperatorNode, QueryDag};
use std::hint::black_box;

const SIZES: [usize; 3] = [10, 100, 1000];

/// Owned parts of a generated plan, so that construction is measured from the same inputs `QueryDag` would
/// receive from a planner hook.
type Parts = (Vec<(usize, OperatorNode, NodeInfo)>, Vec<(usize, usize)>);

fn parts(n: usize) -> Parts {
    let dag = generate(DagShape::BushyJoin, n, 42);
    let nodes = dag.nodes().map(|r| (r.id, r.op.clone(), r.info.clone())).collect();
    (nodes, dag.edges().collect())
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("dag/build");
    for n in SIZES.into_iter().chain([10_000]) {
        let (nodes, edges) = parts(n);
        g.throughput(Throughput::Elements(n as u64));
        // Node by node through the public API: add_node_with + add_edge (each edge cycle-checked).
        g.bench_with_input(BenchmarkId::new("add_node_add_edge", n), &n, |b, _| {
            b.iter_batched(
                || nodes.clone(),
                |nodes| {
                    let mut dag = QueryDag::with_capacity(nodes.len());
                    for (id, op, info) in nodes {
                        dag.add_node_with(id, op, info);
                    }
                    for &(from, to) in &edges {
                        dag.add_edge(from, to).unwrap();
                    }
                    dag
                },
                criterion::BatchSize::LargeInput,
            )
        });
        // Bulk: one validation pass.
        g.bench_with_input(BenchmarkId::new("try_from_parts", n), &n, |b, _| {
            b.iter_batched(
                || nodes.clone(),
                |nodes| QueryDag::try_from_parts(nodes, edges.iter().copied()).unwrap(),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn topo(c: &mut Criterion) {
    let mut g = c.benchmark_group("dag/topological_sort");
    for n in SIZES {
        let dag = generate(DagShape::BushyJoin, n, 42);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &dag, |b, dag| b.iter(|| black_box(dag).topological_sort()));
    }
    g.finish();
}

fn serde(c: &mut Criterion) {
    for n in SIZES {
        let dag = generate(DagShape::BushyJoin, n, 42);
        let json = dag.to_json().unwrap();
        let bytes = dag.to_bytes();
        let mut g = c.benchmark_group(format!("dag/serde/{n}"));
        g.bench_function("to_json", |b| b.iter(|| black_box(&dag).to_json().unwrap()));
        g.bench_function("from_json", |b| b.iter(|| QueryDag::from_json(black_box(&json)).unwrap()));
        g.bench_function("to_bytes", |b| b.iter(|| black_box(&dag).to_bytes()));
        g.bench_function("from_bytes", |b| b.iter(|| QueryDag::from_bytes(black_box(&bytes)).unwrap()));
        g.finish();
        eprintln!("n={n}: JSON {} bytes, binary {} bytes", json.len(), bytes.len());
    }
}

criterion_group!(benches, build, topo, serde);
criterion_main!(benches);
