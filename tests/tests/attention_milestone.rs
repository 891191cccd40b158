//! Milestone M2's acceptance snippet. One change from the text: it iterates `&mechanisms`, because the text's
//! `for mechanism in mechanisms` moves the vector and the following `mechanisms.len()` would not compile.
#![allow(clippy::manual_range_contains)] // the snippet's own range check, kept as written

use ruvector_dag::attention::{AttentionSelector, DagAttention};
use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag::plugin::{PluginKind, Registry};
use ruvector_dag_attention::{
    AttentionConfig, CausalConeAttention, CriticalPathAttention, HierarchicalLorentzAttention, MinCutGatedAttention,
    ParallelBranchAttention, TemporalBTSPAttention, TopologicalAttention,
};

#[test]
fn milestone_m2_snippet() {
    let config = AttentionConfig::default();
    for shape in DagShape::ALL {
        let dag = generate(shape, 120, 9);
        // Rewards: mechanism 2 (critical path) is the best arm in this simulation.
        let mut state = 7u64;
        let last = std::cell::Cell::new(0usize);
        let mut simulate_query_improvement = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = (state >> 40) as f64 / (1u64 << 24) as f64;
            let base = [0.3, 0.4, 0.8, 0.5, 0.2, 0.35, 0.45][last.get()];
            (0.7 * base + 0.3 * noise).clamp(0.0, 1.0)
        };

        // All mechanisms implement trait
        let mechanisms: Vec<Box<dyn DagAttention>> = vec![
            Box::new(TopologicalAttention::new(config)),
            Box::new(CausalConeAttention::new(config)),
            Box::new(CriticalPathAttention::new(config)),
            Box::new(MinCutGatedAttention::new(config)),
            Box::new(HierarchicalLorentzAttention::new(config)),
            Box::new(ParallelBranchAttention::new(config)),
            Box::new(TemporalBTSPAttention::new(config)),
        ];
        for mechanism in &mechanisms {
            let scores = mechanism.forward(&dag).unwrap();
            // Scores sum to ~1.0
            let sum: f32 = scores.values().sum();
            assert!((sum - 1.0).abs() < 0.001);
            // All scores in [0, 1]
            assert!(scores.values().all(|&s| s >= 0.0 && s <= 1.0));
        }
        // Selector chooses based on history
        let mut selector = AttentionSelector::new(mechanisms.len());
        for _ in 0..100 {
            let chosen = selector.select();
            last.set(chosen);
            let reward = simulate_query_improvement();
            selector.update(chosen, reward);
        }
        assert_eq!(selector.best_arm(), Some(2), "{shape:?}: the selector found the best mechanism");
    }
}

#[test]
fn all_seven_are_registered_plugins() {
    let registry = Registry::builtin().unwrap();
    let names = registry.names(PluginKind::Attention);
    for name in [
        "topological",
        "causal_cone",
        "critical_path",
        "mincut_gated",
        "hierarchical_lorentz",
        "parallel_branch",
        "temporal_btsp",
    ] {
        assert!(names.contains(&name.to_owned()), "{name} missing from {names:?}");
        let params = ruvector_dag::Config::default().plugin_params(PluginKind::Attention, name);
        assert_eq!(registry.attention(name, &params).unwrap().name(), name);
    }
    let bad = ruvector_dag::Config::from_toml_str("[attention.topological]\ndecay_factor = 1.5").unwrap();
    let err = registry.build(&bad).unwrap_err().to_string();
    assert_eq!(err, "attention.topological.decay_factor = 1.5: expected a number in 0.000000001..=1");
}
