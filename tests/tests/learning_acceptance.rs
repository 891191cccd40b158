//! Milestone M3's learning snippet, and the learning engine doing what it claims on synthetic workloads: latency
//! predictions converge, `pre_query` recommends the better settings per plan family, EWC++ keeps an old task
//! without freezing the new one, IVF search agrees with brute force, and the bank's maintenance behaves.

use proptest::prelude::*;
use ruvector_dag::dag::generator::{DagShape, SplitMix64 as Rng, generate};
use ruvector_dag::learning::ExecutionMetrics;
use ruvector_dag::{OperatorNode, QueryDag};
use ruvector_dag_learning::{
    DagReasoningBank, DagSonaEngine, DagTrajectory, DagTrajectoryBuffer, EwcPlusPlus, LoRa, SonaConfig,
};

fn create_query_dag() -> QueryDag {
    let mut dag = QueryDag::new();
    dag.add_node(0, OperatorNode::SeqScan { table: "users".into() });
    dag.add_node(1, OperatorNode::Filter { predicate: "age > 18".into() });
    dag.add_edge(0, 1).unwrap();
    dag
}

fn metrics(latency_ms: f64, settings: &[(&str, &str)]) -> ExecutionMetrics {
    ExecutionMetrics {
        latency_ms,
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..ExecutionMetrics::default()
    }
}

#[test]
#[allow(unused_must_use)] // the snippet ignores post_query's Result, as written
fn milestone_m3_learning_snippet() {
    let config = SonaConfig::default();
    let execution_metrics = metrics(12.5, &[]);
    // SONA instant loop
    let mut sona = DagSonaEngine::new(config);
    let dag = create_query_dag();
    let enhanced = sona.pre_query(&dag).unwrap();
    // (The snippet's < 100 µs timing is a criterion bench: benches/benches/learning.rs.)
    assert!(enhanced.pattern.is_none(), "nothing learned yet");
    // Learning from trajectory
    sona.post_query(&dag, &execution_metrics);
    // Verify learning happened
    let patterns = sona.reasoning_bank.query_similar(&dag.embedding(), 1);
    assert!(!patterns.is_empty());
    assert!(patterns[0].similarity > 0.999, "the plan's own pattern: {}", patterns[0].similarity);
    assert_eq!(sona.trajectories.len(), 1);
}

#[test]
fn post_query_rejects_a_latency_that_is_not_a_number() {
    let mut sona = DagSonaEngine::new(SonaConfig::default());
    let err = sona.post_query(&create_query_dag(), &metrics(f64::NAN, &[])).unwrap_err();
    assert!(err.to_string().contains("latency"), "{err}");
    assert!(sona.reasoning_bank.is_empty(), "nothing recorded from bad input");
}

/// Two plan families with different true costs and a different best setting each:
/// the left-deep join plan runs 80 ms natively and 20 ms with `enable_nestloop = off`;
/// the vector-search plan runs 5 ms natively and 30 ms with `enable_indexscan = off`.
struct Family {
    dag: QueryDag,
    native_ms: f64,
    arm: (&'static str, &'static str),
    arm_ms: f64,
}

fn families() -> [Family; 2] {
    [
        Family {
            dag: generate(DagShape::LeftDeepJoin, 24, 3),
            native_ms: 80.0,
            arm: ("enable_nestloop", "off"),
            arm_ms: 20.0,
        },
        Family {
            dag: generate(DagShape::VectorSearch, 24, 3),
            native_ms: 5.0,
            arm: ("enable_indexscan", "off"),
            arm_ms: 30.0,
        },
    ]
}

#[test]
fn learning_learns_latencies_and_the_better_settings_per_family() {
    let families = families();
    let mut sona = DagSonaEngine::new(SonaConfig::default());
    let mut rng = Rng::new(42);
    let log_error = |sona: &mut DagSonaEngine| -> f64 {
        families
            .iter()
            .map(|f| {
                let p = sona.pre_query(&f.dag).unwrap().predicted_latency_ms;
                ((1.0 + p).ln() - (1.0 + f.native_ms).ln()).abs()
            })
            .sum::<f64>()
            / families.len() as f64
    };
    let initial = log_error(&mut sona);
    // 40 executions per family: natively three times out of four, the alternative arm otherwise; 10% noise.
    for round in 0..4 {
        for i in 0..10 {
            for f in &families {
                let noise = (0.1 * rng.normal()).exp();
                if i % 4 == 3 {
                    sona.post_query(&f.dag, &metrics(f.arm_ms * noise, &[f.arm])).unwrap();
                } else {
                    sona.post_query(&f.dag, &metrics(f.native_ms * noise, &[])).unwrap();
                }
            }
        }
        let report = sona.run_background_cycle().unwrap();
        assert_eq!(report.trajectories_processed, 20, "round {round}");
        assert_eq!(report.patterns_updated, 2, "round {round}: one pattern per family, nothing merged or evicted");
    }
    let learned = log_error(&mut sona);
    eprintln!("mean |ln(1+predicted) - ln(1+true)| over the two families: {initial:.3} -> {learned:.3}");
    assert!(learned * 10.0 <= initial, "log-latency error should drop 10x: {initial:.3} -> {learned:.3}");

    let slow = sona.pre_query(&families[0].dag).unwrap();
    let advice = slow.advice.expect("a confident pattern for the join plan");
    assert_eq!(advice.settings, vec![("enable_nestloop".to_string(), "off".to_string())]);
    assert!((advice.predicted_ratio - 0.25).abs() < 0.1, "20 ms / 80 ms, got {}", advice.predicted_ratio);
    assert!(advice.confidence > 0.5, "{}", advice.confidence);

    let fast = sona.pre_query(&families[1].dag).unwrap();
    let advice = fast.advice.expect("a confident pattern for the vector plan");
    assert!(advice.settings.is_empty(), "the native plan is best: {:?}", advice.settings);
    assert_eq!(advice.predicted_ratio, 1.0);
    // The two families are different patterns.
    assert_ne!(slow.pattern.unwrap().id, fast.pattern.unwrap().id);
}

#[test]
fn instant_tier_adapts_before_any_background_cycle() {
    let dag = generate(DagShape::BushyJoin, 16, 8);
    let mut sona = DagSonaEngine::new(SonaConfig::default());
    let first = sona.pre_query(&dag).unwrap().predicted_latency_ms;
    for _ in 0..30 {
        sona.post_query(&dag, &metrics(50.0, &[])).unwrap();
    }
    let after = sona.pre_query(&dag).unwrap().predicted_latency_ms;
    let err = |p: f64| ((1.0 + p).ln() - 51f64.ln()).abs();
    assert!(err(after) * 4.0 <= err(first), "MicroLoRA alone: {first:.2} ms -> {after:.2} ms (target 50)");
}

/// A linear regression model `ŷ = w·x` trained by SGD with an optional EWC++ penalty: the two-task benchmark.
struct Linear {
    w: Vec<f32>,
}

impl Linear {
    fn predict(&self, x: &[f32]) -> f32 {
        self.w.iter().zip(x).map(|(a, b)| a * b).sum()
    }
    fn step(&mut self, x: &[f32], t: f32, lr: f32, ewc: Option<&mut EwcPlusPlus>) {
        let g = self.predict(x) - t;
        let mut grad: Vec<f32> = x.iter().map(|xi| g * xi).collect();
        if let Some(ewc) = ewc {
            ewc.accumulate(&grad);
            ewc.add_penalty_gradient(&self.w, &mut grad);
        }
        self.w.iter_mut().zip(&grad).for_each(|(w, g)| *w -= lr * g);
    }
}

const D: usize = 20;

/// Task A uses dims 0..10; task B uses dims 10..20 and, weakly (σ = 0.2), the overlap 2..10 where the two tasks
/// want opposite weights.
fn task_sample(rng: &mut Rng, task_b: bool) -> (Vec<f32>, f32) {
    let mut x = vec![0f32; D];
    let mut t = 0.0;
    for (i, xi) in x.iter_mut().enumerate() {
        let (active, sigma, weight) = match (task_b, i) {
            (false, 0..=1) => (true, 1.0, 0.3),
            (false, 2..=9) => (true, 1.0, 1.0),
            (true, 2..=9) => (true, 0.2, -1.0),
            (true, 10..) => (true, 1.0, 1.0),
            _ => (false, 0.0, 0.0),
        };
        if active {
            *xi = (sigma * rng.normal()) as f32;
            t += weight * *xi;
        }
    }
    (x, t + (0.5 * rng.normal()) as f32)
}

/// Explained variance (1 − MSE / Var(t)) of the model on 2000 fresh samples of a task.
fn skill(model: &Linear, task_b: bool, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let samples: Vec<(Vec<f32>, f32)> = (0..2000).map(|_| task_sample(&mut rng, task_b)).collect();
    let mean = samples.iter().map(|s| f64::from(s.1)).sum::<f64>() / samples.len() as f64;
    let var = samples.iter().map(|s| (f64::from(s.1) - mean).powi(2)).sum::<f64>();
    let mse = samples.iter().map(|(x, t)| f64::from(model.predict(x) - t).powi(2)).sum::<f64>();
    1.0 - mse / var
}

/// Trains task A then task B; returns (retention of A, plasticity on B) relative to each task trained alone.
fn two_tasks(lambda: f32, seed: u64) -> (f64, f64) {
    let mut rng = Rng::new(seed);
    let (lr, steps) = (0.01, 4000);
    let mut model = Linear { w: vec![0.0; D] };
    let mut ewc = EwcPlusPlus::new(D, lambda, 0.999);
    for _ in 0..steps {
        let (x, t) = task_sample(&mut rng, false);
        model.step(&x, t, lr, Some(&mut ewc));
    }
    let a_alone = skill(&model, false, seed + 1);
    ewc.consolidate(&model.w); // the task boundary
    for _ in 0..steps {
        let (x, t) = task_sample(&mut rng, true);
        model.step(&x, t, lr, Some(&mut ewc));
    }
    let mut b_only = Linear { w: vec![0.0; D] };
    for _ in 0..steps {
        let (x, t) = task_sample(&mut rng, true);
        b_only.step(&x, t, lr, None);
    }
    (skill(&model, false, seed + 1) / a_alone, skill(&model, true, seed + 2) / skill(&b_only, true, seed + 2))
}

#[test]
fn ewc_keeps_the_old_task_and_still_learns_the_new_one() {
    for seed in 1..=6 {
        let (forgot, _) = two_tasks(0.0, seed);
        assert!(forgot < 0.5, "seed {seed}: without EWC task A should be forgotten, retention {forgot:.3}");
        let (retention, plasticity) = two_tasks(10.0, seed);
        assert!(retention >= 0.8, "seed {seed}: retention {retention:.3}");
        assert!(plasticity >= 0.8, "seed {seed}: plasticity {plasticity:.3}");
    }
}

#[test]
fn ewc_detects_a_task_boundary_from_the_loss_stream() {
    let mut ewc = EwcPlusPlus::new(4, 10.0, 0.99);
    let mut rng = Rng::new(5);
    let stable = (0..200).filter(|_| ewc.observe_loss(1.0 + 0.05 * rng.normal())).count();
    assert_eq!(stable, 0, "no boundary in a stationary loss stream");
    assert!(ewc.observe_loss(5.0), "a loss far above the running mean is a boundary");
}

/// `n` unit vectors around `clusters` random centres (cosine ≈ 0.9 to their centre).
fn clustered(n: usize, clusters: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let unit = |v: Vec<f32>| {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| unit((0..dim).map(|_| rng.normal() as f32).collect())).collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % clusters];
            unit(c.iter().map(|x| x + 0.03 * rng.normal() as f32).collect())
        })
        .collect()
}

fn bank_of(points: &[Vec<f32>]) -> DagReasoningBank {
    let mut bank = DagReasoningBank::new(points[0].len());
    bank.merge_threshold = 1.1; // keep every point as its own pattern
    for (i, p) in points.iter().enumerate() {
        bank.observe(p, &[], 10.0);
        if (i + 1) % 1000 == 0 {
            bank.rebuild_index(100, i as u64); // as the background tier would, so insertion stays sublinear
        }
    }
    bank
}

#[test]
fn ivf_search_recalls_what_brute_force_finds() {
    let dim = 64;
    let points = clustered(10_000, 100, dim, 9);
    let mut bank = bank_of(&points);
    assert_eq!(bank.len(), 10_000);
    assert_eq!(bank.rebuild_index(100, 1), 100);
    let queries = clustered(200, 100, dim, 77);
    let mut hits = 0;
    for q in &queries {
        let exact: Vec<u64> = bank.brute_force_similar(q, 10).iter().map(|m| m.id).collect();
        let found = bank.query_similar(q, 10);
        assert_eq!(found.len(), 10);
        assert!(found.windows(2).all(|w| w[0].similarity >= w[1].similarity), "ranked best first");
        hits += found.iter().filter(|m| exact.contains(&m.id)).count();
    }
    let recall = hits as f64 / (10 * queries.len()) as f64;
    assert!(recall >= 0.95, "recall@10 {recall:.3}");
}

#[test]
fn consolidation_merges_near_duplicates_and_keeps_the_arms() {
    let points = clustered(40, 4, 32, 3);
    let mut bank = bank_of(&points);
    bank.merge_threshold = 0.98;
    bank.observe(&points[0], &[("enable_hashjoin".into(), "off".into())], 2.0);
    assert_eq!(bank.len(), 40);
    let merged = bank.consolidate(0.9);
    assert_eq!(bank.len(), 4, "one pattern per cluster");
    assert_eq!(merged, 36);
    let samples: u64 = bank.patterns().iter().map(|p| p.samples).sum();
    assert_eq!(samples, 41, "no execution lost in merging");
    let steered = bank.query_similar(&points[0], 1).remove(0);
    assert_eq!(steered.best_settings, vec![("enable_hashjoin".to_string(), "off".to_string())]);
    assert!(steered.quality > 0.5, "2 ms against 10 ms: {}", steered.quality);
}

#[test]
fn consolidation_through_the_index_finds_the_same_duplicates() {
    let points = clustered(400, 8, 32, 13);
    let mut plain = bank_of(&points);
    let mut indexed = bank_of(&points);
    indexed.rebuild_index(8, 2);
    indexed.observe(&points[3], &[], 10.0); // joins an indexed pattern: the index copy follows the centroid
    plain.observe(&points[3], &[], 10.0);
    assert_eq!(indexed.consolidate(0.9), plain.consolidate(0.9));
    assert_eq!(indexed.len(), 8);
    assert_eq!(indexed.patterns().iter().map(|p| p.samples).sum::<u64>(), 401);
}

#[test]
fn eviction_keeps_the_patterns_that_are_used() {
    let points = clustered(50, 50, 32, 4);
    let mut bank = bank_of(&points);
    bank.merge_threshold = 0.98;
    // Use the last ten patterns (and only them) after everything is stored.
    for p in &points[40..] {
        for _ in 0..5 {
            bank.query_similar(p, 1);
        }
        bank.observe(p, &[], 10.0);
    }
    let scores_before: Vec<f64> = bank.patterns().iter().map(|p| bank.eviction_score(p)).collect();
    assert!(
        scores_before[45] > scores_before[5],
        "use raises the score: {} vs {}",
        scores_before[45],
        scores_before[5]
    );
    assert_eq!(bank.evict(10), 40);
    let kept: Vec<u64> = bank.patterns().iter().map(|p| p.id).collect();
    let used: Vec<u64> = points[40..].iter().map(|p| bank.brute_force_similar(p, 1)[0].id).collect();
    for id in used {
        assert!(kept.contains(&id), "used pattern {id} was evicted");
    }
}

#[test]
fn patterns_survive_export_and_import() {
    let points = clustered(30, 3, 32, 6);
    let mut bank = bank_of(&points);
    bank.merge_threshold = 0.98;
    bank.observe(&points[1], &[("work_mem".into(), "64MB".into())], 3.0);
    let json = bank.export();
    let mut restored = DagReasoningBank::new(32);
    assert_eq!(restored.import(&json).unwrap(), 30);
    assert_eq!(restored.len(), bank.len());
    for q in &points {
        let (a, b) = (restored.brute_force_similar(q, 3), bank.brute_force_similar(q, 3));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.id, &x.best_settings, x.quality), (y.id, &y.best_settings, y.quality));
            assert!((x.similarity - y.similarity).abs() < 1e-5);
        }
    }
    let err = DagReasoningBank::new(16).import(&json).unwrap_err();
    assert!(err.to_string().contains("dimension"), "{err}");
    assert!(DagReasoningBank::new(32).import("{not json").is_err());
}

#[test]
fn micro_lora_gradient_step_reduces_the_loss_on_a_plan_embedding() {
    let x = generate(DagShape::BushyJoin, 50, 2).embedding();
    let mut m = LoRa::micro(256, 2, 0.3, 3);
    let before = m.loss(&x, 3.0);
    for _ in 0..20 {
        m.adapt(&x, 3.0, None);
    }
    assert!(m.loss(&x, 3.0) < before * 0.01);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_trajectory_buffer_never_exceeds_its_capacity(capacity in 1usize..64, ops in proptest::collection::vec(0u8..4, 0..400)) {
        let buffer = DagTrajectoryBuffer::new(capacity);
        let (mut pushed, mut drained) = (0u64, 0u64);
        for op in ops {
            if op == 0 {
                drained += buffer.drain().len() as u64;
            } else {
                buffer.push(DagTrajectory { embedding: vec![pushed as f32], plan_hash: pushed, pattern_id: 0, latency_ms: 1.0, settings: Vec::new() });
                pushed += 1;
            }
            prop_assert!(buffer.len() <= capacity);
        }
        prop_assert_eq!(buffer.seen(), pushed);
        let left = buffer.drain();
        // Drop-oldest: what is left is the newest, in order.
        prop_assert!(left.windows(2).all(|w| w[0].plan_hash < w[1].plan_hash));
        prop_assert_eq!(drained + left.len() as u64 + buffer.dropped(), pushed, "every push is drained or counted as dropped");
    }
}

#[test]
fn both_tiers_are_plugins_configured_from_ruvector_toml() {
    use ruvector_dag::plugin::{PluginKind, PluginParams, Registry};
    let config = ruvector_dag::Config::from_toml_str(
        "[learning]\ntiers = [\"instant\", \"background\"]\nlearning_rate = 0.5\n[learning.background]\nbase_epochs = 2\n",
    )
    .unwrap();
    let registry = Registry::builtin().unwrap();
    let params = config.plugin_params(PluginKind::Learning, "instant");
    assert_eq!(params.get::<f64>("learning_rate", "a number").unwrap(), Some(0.5), "the section reaches the tier");
    let mut instant = registry.learning("instant", &params).unwrap();
    let mut background =
        registry.learning("background", &config.plugin_params(PluginKind::Learning, "background")).unwrap();
    assert_eq!((instant.name(), background.name()), ("instant", "background"));
    // The two tiers share one engine: what the instant tier records, the background tier processes.
    let dag = generate(DagShape::Chain, 6, 1);
    instant.post_query(&dag, &metrics(3.0, &[])).unwrap();
    instant.post_query(&dag, &metrics(3.0, &[])).unwrap();
    assert!(background.run_cycle().unwrap().trajectories_processed >= 2);
    assert!(instant.pre_query(&dag).unwrap().is_some(), "advice from the learned pattern");

    let typo =
        PluginParams::new("learning.instant", serde_json::json!({ "learning_rat": 0.1 }).as_object().unwrap().clone());
    let err = registry.learning("instant", &typo).err().expect("a typo is rejected").to_string();
    assert!(err.contains("learning_rat"), "{err}");
    let out_of_range = config_with("[learning.instant]\nmax_patterns = 0\n");
    let err = registry.learning("instant", &out_of_range).err().expect("0 patterns is rejected").to_string();
    assert!(err.contains("max_patterns"), "{err}");
}

fn config_with(toml: &str) -> ruvector_dag::plugin::PluginParams {
    ruvector_dag::Config::from_toml_str(toml)
        .unwrap()
        .plugin_params(ruvector_dag::plugin::PluginKind::Learning, "instant")
}
