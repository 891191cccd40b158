//! Scaling report of incremental min-cut updates, in work counters (deterministic), for n = 2^7 … 2^14.
//!
//! For bushy and left-deep plans and two update streams — random (a random edge or operator gets a random
//! capacity in [1, 101] cost units) and adversarial (every interior capacity made huge, then the deepest scan's
//! capacity flipped between 1 and 1000, so each update must reach the root) — prints mean and max nodes touched
//! per update, the log-log slope of the mean against n, and a 95% bootstrap interval of the slope.
//!
//! Run: `cargo run --release -p ruvector-dag-benches --bin mincut-scaling [UPDATES=1000]`

use ruvector_dag::QueryDag;
use ruvector_dag::dag::generator::{DagShape, SplitMix64 as Rng, generate};
use ruvector_dag::mincut::DagMinCutEngine;

/// Work (nodes touched) of each of `updates` updates.
fn run(dag: &QueryDag, adversarial: bool, updates: usize, rng: &mut Rng) -> Vec<u64> {
    let mut engine = DagMinCutEngine::new();
    engine.build_from_dag(dag).unwrap();
    let edges: Vec<(usize, usize)> = dag.edges().collect();
    let ids: Vec<usize> = dag.node_ids().collect();
    let leaf = if adversarial {
        for &(a, b) in &edges {
            engine.update_edge(a, b, 1e12).unwrap();
        }
        let depths = dag.depths();
        let deepest = dag.sources().into_iter().max_by_key(|&s| depths[dag.position(s).unwrap()]).unwrap();
        for &v in &ids {
            if v != deepest && !dag.sources().contains(&v) {
                engine.update_node_cost(v, 1e12).unwrap();
            }
        }
        Some(deepest)
    } else {
        None
    };
    let mut work = Vec::with_capacity(updates);
    for k in 0..updates {
        let before = engine.counters().nodes_touched;
        match leaf {
            Some(l) => {
                engine.update_node_cost(l, if k % 2 == 0 { 1.0 } else { 1000.0 }).unwrap();
            }
            None if rng.below(2) == 0 => {
                let (a, b) = edges[rng.below(edges.len())];
                engine.update_edge(a, b, 1.0 + rng.below(101) as f64).unwrap();
            }
            None => {
                engine.update_node_cost(ids[rng.below(ids.len())], 1.0 + rng.below(101) as f64).unwrap();
            }
        }
        work.push(engine.counters().nodes_touched - before);
    }
    work
}

fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    cov / var
}

fn main() {
    let updates: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let sizes: Vec<usize> = (7..=14).map(|k| 1usize << k).collect();
    println!("Incremental min-cut updates: nodes touched per update ({updates} updates per size)\n");
    println!("| plan | updates | n | mean | max |");
    println!("| --- | --- | --- | --- | --- |");
    let mut summary = Vec::new();
    for (shape, shape_name) in [(DagShape::BushyJoin, "bushy"), (DagShape::LeftDeepJoin, "left-deep")] {
        for (adversarial, kind) in [(false, "random"), (true, "adversarial")] {
            let mut rng = Rng::new(0x5EED ^ shape as u64 ^ u64::from(adversarial));
            let mut per_size: Vec<Vec<u64>> = Vec::new();
            for &n in &sizes {
                let dag = generate(shape, n, 42);
                let work = run(&dag, adversarial, updates, &mut rng);
                let mean = work.iter().sum::<u64>() as f64 / work.len() as f64;
                let max = work.iter().max().copied().unwrap_or(0);
                println!("| {shape_name} | {kind} | {n} | {mean:.2} | {max} |");
                per_size.push(work);
            }
            let xs: Vec<f64> = sizes.iter().map(|&n| (n as f64).ln()).collect();
            let mean_of = |w: &[u64]| w.iter().sum::<u64>() as f64 / w.len() as f64;
            let ys: Vec<f64> = per_size.iter().map(|w| mean_of(w).max(1e-9).ln()).collect();
            let point = slope(&xs, &ys);
            // Bootstrap: resample the updates of every size, 1000 times.
            let mut boot = Rng::new(0xB007);
            let mut slopes: Vec<f64> = (0..1000)
                .map(|_| {
                    let ys: Vec<f64> = per_size
                        .iter()
                        .map(|w| {
                            let s: u64 = (0..w.len()).map(|_| w[boot.below(w.len())]).sum();
                            (s as f64 / w.len() as f64).max(1e-9).ln()
                        })
                        .collect();
                    slope(&xs, &ys)
                })
                .collect();
            slopes.sort_by(f64::total_cmp);
            summary.push((shape_name, kind, point, slopes[25], slopes[974]));
        }
    }
    println!("\nLog-log slope of mean work against n, with 95% bootstrap interval:\n");
    println!("| plan | updates | slope | 95% interval |");
    println!("| --- | --- | --- | --- |");
    for (shape, kind, point, lo, hi) in summary {
        println!("| {shape} | {kind} | {point:.3} | [{lo:.3}, {hi:.3}] |");
    }
}
