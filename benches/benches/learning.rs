//! The learning tiers: MicroLoRA adaptation (d = 256, r = 2), ReasoningBank search over 10K patterns (IVF with
//! exact re-ranking against brute force; recall@10 printed), `pre_query` end to end on a 100-node plan, and the
//! background cycle on 1K trajectories. Run: `cargo bench -p ruvector-dag-benches --bench learning`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ruvector_dag::dag::generator::{DagShape, SplitMix64, generate};
use ruvector_dag::learning::ExecutionMetrics;
use ruvector_dag_learning::{DagReasoningBank, DagSonaEngine, EwcPlusPlus, LoRa, SonaConfig};
use std::hint::black_box;

/// `n` unit vectors around `clusters` random centres.
fn clustered(n: usize, clusters: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(seed);
    let mut normal = || rng.normal() as f32;
    let unit = |v: Vec<f32>| {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| unit((0..dim).map(|_| normal()).collect())).collect();
    (0..n).map(|i| unit(centres[i % clusters].iter().map(|x| x + 0.03 * normal()).collect())).collect()
}

fn micro_lora(c: &mut Criterion) {
    let x = generate(DagShape::BushyJoin, 100, 4).embedding();
    let mut g = c.benchmark_group("learning/micro_lora_adapt_d256_r2");
    let mut micro = LoRa::micro(256, 2, 0.1, 9);
    g.bench_function("plain", |b| b.iter(|| micro.adapt(black_box(&x), 1.5, None)));
    let mut micro = LoRa::micro(256, 2, 0.1, 9);
    let mut ewc = EwcPlusPlus::new(micro.parameter_count(), 5000.0, 0.999);
    micro.adapt(&x, 1.0, Some(&mut ewc));
    ewc.consolidate(micro.parameters());
    g.bench_function("with_ewc", |b| b.iter(|| micro.adapt(black_box(&x), 1.5, Some(&mut ewc))));
    g.finish();
}

fn search(c: &mut Criterion) {
    let dim = 256;
    let points = clustered(10_000, 100, dim, 9);
    let mut bank = DagReasoningBank::new(dim);
    bank.merge_threshold = 1.1; // every point its own pattern
    for (i, p) in points.iter().enumerate() {
        bank.observe(p, &[], 10.0);
        if (i + 1) % 1000 == 0 {
            bank.rebuild_index(100, i as u64);
        }
    }
    bank.rebuild_index(100, 1);
    let queries = clustered(200, 100, dim, 77);
    let hits: usize = queries
        .iter()
        .map(|q| {
            let exact: Vec<u64> = bank.brute_force_similar(q, 10).iter().map(|m| m.id).collect();
            bank.query_similar(q, 10).iter().filter(|m| exact.contains(&m.id)).count()
        })
        .sum();
    eprintln!(
        "learning/search: {} patterns, {} lists, recall@10 = {:.3}",
        bank.len(),
        bank.clusters(),
        hits as f64 / 2000.0
    );
    let mut g = c.benchmark_group("learning/search_10k_d256_k10");
    let mut i = 0;
    g.bench_function("ivf", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            bank.query_similar(black_box(&queries[i]), 10)
        })
    });
    g.bench_function("brute_force", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            bank.brute_force_similar(black_box(&queries[i]), 10)
        })
    });
    g.finish();
}

fn native(ms: f64) -> ExecutionMetrics {
    ExecutionMetrics { latency_ms: ms, ..ExecutionMetrics::default() }
}

/// An engine that has learned 200 plans (1K executions) and run a background cycle.
fn trained_engine() -> DagSonaEngine {
    let mut sona = DagSonaEngine::new(SonaConfig::default());
    let plans: Vec<_> = (0..200).map(|i| generate(DagShape::ALL[i % 5], 10 + i % 90, i as u64)).collect();
    for round in 0..5 {
        for (i, dag) in plans.iter().enumerate() {
            sona.post_query(dag, &native(1.0 + (i * 7 + round) as f64 % 300.0)).unwrap();
        }
    }
    sona.run_background_cycle().unwrap();
    sona
}

fn pre_query(c: &mut Criterion) {
    let mut sona = trained_engine();
    let dag = generate(DagShape::BushyJoin, 100, 12_345);
    eprintln!("learning/pre_query: engine with {} patterns", sona.reasoning_bank.len());
    c.bench_function("learning/embed_100_nodes", |b| b.iter(|| sona.embed(black_box(&dag))));
    c.bench_function("learning/pre_query_100_nodes", |b| b.iter(|| sona.pre_query(black_box(&dag)).unwrap()));
    c.bench_function("learning/post_query_100_nodes", |b| {
        b.iter(|| sona.post_query(black_box(&dag), &native(42.0)).unwrap())
    });
}

fn background(c: &mut Criterion) {
    let plans: Vec<_> = (0..100).map(|i| generate(DagShape::ALL[i % 5], 10 + i % 90, 1000 + i as u64)).collect();
    c.bench_function("learning/background_cycle_1k_trajectories", |b| {
        b.iter_batched(
            || {
                let mut sona = trained_engine();
                for i in 0..1000 {
                    sona.post_query(&plans[i % plans.len()], &native(5.0 + (i % 37) as f64)).unwrap();
                }
                sona
            },
            |mut sona| sona.run_background_cycle().unwrap(),
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, micro_lora, search, pre_query, background);
criterion_main!(benches);
