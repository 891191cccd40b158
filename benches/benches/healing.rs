//! Self-healing: detector cost per observation (robust z over a 100-value window; the incident tracker with its
//! false-positive controls) and the orchestrator's cycle cost with 100 signal checks.
//!
//! Run: `cargo bench -p ruvector-dag-benches --bench healing`. The PostgreSQL side (probe, repair and detection
//! times on 100K vectors): `sudo benches/pg/healing_pgvector.sh`.

use criterion::{Criterion, criterion_group, criterion_main};
use ruvector_dag::dag::generator::SplitMix64;
use ruvector_dag::healing::{
    AnomalyConfig, AnomalyDetector, HealingConfig, HealingOrchestrator, IncidentTracker, IssueKind, SignalCheck,
};
use std::hint::black_box;

/// Log-normal-ish latencies around 2 ms.
fn latencies(n: usize) -> Vec<f64> {
    let mut rng = SplitMix64::new(7);
    (0..n).map(|_| 2.0 * rng.range(-0.15, 0.15).exp()).collect()
}

fn detectors(c: &mut Criterion) {
    let values = latencies(4096);
    let mut g = c.benchmark_group("healing/per_observation");
    g.bench_function("detector_observe_and_score", |b| {
        let mut d = AnomalyDetector::new(AnomalyConfig::default());
        let mut i = 0;
        b.iter(|| {
            let v = values[i % values.len()];
            i += 1;
            d.observe(v);
            black_box(d.score(v))
        })
    });
    g.bench_function("incident_tracker_observe", |b| {
        let mut t = IncidentTracker::new(AnomalyConfig::default());
        let mut i = 0;
        b.iter(|| {
            let v = values[i % values.len()];
            i += 1;
            black_box(t.observe(v))
        })
    });
    g.finish();
}

fn cycle(c: &mut Criterion) {
    let values = latencies(200);
    let checks: Vec<SignalCheck> = (0..100)
        .map(|i| {
            let s =
                SignalCheck::new(format!("class {i}"), IssueKind::LatencyAnomaly, format!("q{i}"), Default::default());
            for v in &values {
                s.observe(*v);
            }
            s
        })
        .collect();
    let orchestrator =
        checks.into_iter().fold(HealingOrchestrator::new(HealingConfig::default()), |o, s| o.with_check(Box::new(s)));
    c.bench_function("healing/run_cycle_100_checks", |b| b.iter(|| black_box(orchestrator.run_cycle().unwrap())));
    c.bench_function("healing/health_report_100_checks", |b| b.iter(|| black_box(orchestrator.health_report())));
}

criterion_group!(benches, detectors, cycle);
criterion_main!(benches);
