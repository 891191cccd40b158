//! Minimum cut: full computation (tree DP and Dinic) at 100/1000/10000 nodes and incremental update latency.
//!
//! Run: `cargo bench -p ruvector-dag-benches --bench mincut`. Scaling in work counters:
//! `cargo run --release -p ruvector-dag-benches --bin mincut-scaling`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag::mincut::{DagMinCutEngine, MinCutConfig};
use std::hint::black_box;

const SIZES: [usize; 3] = [100, 1000, 10_000];

fn full(c: &mut Criterion) {
    let mut g = c.benchmark_group("mincut/build_and_cut");
    for n in SIZES {
        let tree = generate(DagShape::BushyJoin, n, 7);
        let shared = generate(DagShape::SharedSubplans, n, 7);
        g.bench_with_input(BenchmarkId::new("tree_dp/bushy", n), &tree, |b, dag| {
            let mut e = DagMinCutEngine::new();
            b.iter(|| {
                e.build_from_dag(black_box(dag)).unwrap();
                e.cut_value()
            })
        });
        let flow = MinCutConfig { force_flow: true, ..MinCutConfig::default() };
        g.bench_with_input(BenchmarkId::new("dinic/bushy", n), &tree, |b, dag| {
            let mut e = DagMinCutEngine::with_config(flow);
            b.iter(|| {
                e.build_from_dag(black_box(dag)).unwrap();
                e.cut_value()
            })
        });
        g.bench_with_input(BenchmarkId::new("dinic/shared_subplans", n), &shared, |b, dag| {
            let mut e = DagMinCutEngine::new();
            b.iter(|| {
                e.build_from_dag(black_box(dag)).unwrap();
                e.cut_value()
            })
        });
    }
    g.finish();
}

/// From scratch on a built engine: the algorithm alone, no construction.
fn recompute(c: &mut Criterion) {
    let mut g = c.benchmark_group("mincut/recompute");
    for n in SIZES {
        let tree = generate(DagShape::BushyJoin, n, 7);
        let shared = generate(DagShape::SharedSubplans, n, 7);
        let flow = MinCutConfig { force_flow: true, ..MinCutConfig::default() };
        for (name, dag, config) in [
            ("tree_dp/bushy", &tree, MinCutConfig::default()),
            ("dinic/bushy", &tree, flow),
            ("dinic/shared_subplans", &shared, MinCutConfig::default()),
        ] {
            let mut e = DagMinCutEngine::with_config(config);
            e.build_from_dag(dag).unwrap();
            g.bench_function(BenchmarkId::new(name, n), |b| b.iter(|| e.recompute()));
        }
    }
    g.finish();
}

fn update(c: &mut Criterion) {
    let mut g = c.benchmark_group("mincut/update_edge");
    for n in SIZES {
        for (name, shape) in [
            ("tree/bushy", DagShape::BushyJoin),
            ("tree/left_deep", DagShape::LeftDeepJoin),
            ("flow/shared", DagShape::SharedSubplans),
        ] {
            let dag = generate(shape, n, 11);
            let edges: Vec<(usize, usize)> = dag.edges().collect();
            let mut e = DagMinCutEngine::new();
            e.build_from_dag(&dag).unwrap();
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    i = i.wrapping_add(0x9E37_79B9);
                    let (a, t) = edges[i % edges.len()];
                    e.update_edge(a, t, 1.0 + (i % 100) as f64).unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, full, recompute, update);
criterion_main!(benches);
