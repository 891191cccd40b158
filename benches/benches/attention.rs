//! The seven attention mechanisms at 10/100/500/1000 nodes (bushy join plans).
//!
//! `forward_prepared` is the per-plan scoring after the shared precomputation (`PreparedDag::new`, also
//! measured); `forward` is both together. Run: `cargo bench -p ruvector-dag-benches --bench attention`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ruvector_dag::attention::{AttentionScores, PreparedDag};
use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag_attention::{AttentionConfig, all_mechanisms};
use std::hint::black_box;

const SIZES: [usize; 4] = [10, 100, 500, 1000];

fn mechanisms(c: &mut Criterion) {
    let all = all_mechanisms(AttentionConfig::default());
    for n in SIZES {
        let dag = generate(DagShape::BushyJoin, n, 3);
        let prepared = PreparedDag::new(&dag);
        let mut g = c.benchmark_group(format!("attention/forward_prepared/{n}"));
        for m in &all {
            let mut out = AttentionScores::default();
            g.bench_function(m.name(), |b| b.iter(|| m.forward_prepared(black_box(&prepared), &mut out).unwrap()));
        }
        g.finish();
    }
}

fn prepare(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention/prepare");
    for n in SIZES {
        let dag = generate(DagShape::BushyJoin, n, 3);
        g.bench_with_input(BenchmarkId::from_parameter(n), &dag, |b, dag| b.iter(|| PreparedDag::new(black_box(dag))));
    }
    g.finish();
}

criterion_group!(benches, mechanisms, prepare);
criterion_main!(benches);
