//! UCB1 selection among attention mechanisms, per query class.
//!
//! Auer, Cesa-Bianchi & Fischer (2002): play every arm once, then the arm maximising
//! `mean_j + c·sqrt(ln t / n_j)`. With rewards in `[0, 1]` and `c = √2` this has O(log T) gap-dependent and
//! O(√(K T log T)) gap-free regret. An optional sliding window (Garivier & Moulines 2011) forgets old rewards so
//! the selector follows a drifting workload. Each query class (a plan fingerprint, a query id) has its own
//! statistics: different plan shapes favour different mechanisms.

use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// Pulls and mean reward of one arm in one class.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ArmStats {
    /// Times the arm was rewarded (within the window, if any).
    pub pulls: u64,
    /// Mean reward.
    pub mean: f64,
}

#[derive(Debug, Clone, Default)]
struct ClassStats {
    pulls: Vec<u64>,
    sums: Vec<f64>,
    total: u64,
    /// Rewards in the window, oldest first.
    window: VecDeque<(u32, f64)>,
}

/// UCB1 over `arms` mechanisms (see the [module docs](self)).
///
/// ```
/// use ruvector_dag::attention::AttentionSelector;
/// let mut selector = AttentionSelector::new(3);
/// for _ in 0..300 {
///     let arm = selector.select();
///     let reward = [0.2, 0.9, 0.5][arm];
///     selector.update(arm, reward);
/// }
/// assert_eq!(selector.best_arm(), Some(1));
/// ```
#[derive(Debug, Clone)]
pub struct AttentionSelector {
    arms: usize,
    exploration: f64,
    window: Option<usize>,
    classes: FxHashMap<u64, ClassStats>,
    /// Rewards that were NaN (counted and ignored).
    rejected: u64,
}

/// The class used by [`AttentionSelector::select`] and [`AttentionSelector::update`].
pub const DEFAULT_CLASS: u64 = 0;

impl AttentionSelector {
    /// A selector over `arms` arms, exploration constant √2, no window.
    ///
    /// # Panics
    /// If `arms` is 0.
    pub fn new(arms: usize) -> Self {
        assert!(arms > 0, "an attention selector needs at least one mechanism");
        AttentionSelector {
            arms,
            exploration: std::f64::consts::SQRT_2,
            window: None,
            classes: FxHashMap::default(),
            rejected: 0,
        }
    }

    /// Sets the exploration constant `c` (finite, non-negative).
    pub fn with_exploration(mut self, c: f64) -> Self {
        self.exploration = if c.is_finite() && c >= 0.0 { c } else { std::f64::consts::SQRT_2 };
        self
    }

    /// Keeps only the last `window` rewards per class (sliding-window UCB), so old evidence is forgotten.
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = Some(window.max(1));
        self
    }

    /// Number of arms.
    pub fn arms(&self) -> usize {
        self.arms
    }

    fn class(&mut self, class: u64) -> &mut ClassStats {
        let arms = self.arms;
        self.classes.entry(class).or_insert_with(|| ClassStats {
            pulls: vec![0; arms],
            sums: vec![0.0; arms],
            total: 0,
            window: VecDeque::new(),
        })
    }

    /// The arm to play next in the default class.
    pub fn select(&mut self) -> usize {
        self.select_for(DEFAULT_CLASS)
    }

    /// The arm to play next for `class`: an untried arm first (in order), then the highest upper confidence
    /// bound (ties to the lower index).
    pub fn select_for(&mut self, class: u64) -> usize {
        let c = self.exploration;
        let stats = self.class(class);
        if let Some(untried) = stats.pulls.iter().position(|&p| p == 0) {
            return untried;
        }
        let ln_t = (stats.total.max(1) as f64).ln();
        let mut best = (0usize, f64::NEG_INFINITY);
        for arm in 0..stats.pulls.len() {
            let n = stats.pulls[arm] as f64;
            let index = stats.sums[arm] / n + c * (ln_t / n).sqrt();
            if index > best.1 {
                best = (arm, index);
            }
        }
        best.0
    }

    /// Records `reward` (clamped to `[0, 1]`; NaN is counted and ignored) for `arm` in the default class.
    pub fn update(&mut self, arm: usize, reward: f64) {
        self.update_for(DEFAULT_CLASS, arm, reward);
    }

    /// Records `reward` for `arm` in `class`. Arms out of range are ignored.
    pub fn update_for(&mut self, class: u64, arm: usize, reward: f64) {
        if arm >= self.arms {
            return;
        }
        if reward.is_nan() {
            self.rejected += 1;
            return;
        }
        let reward = reward.clamp(0.0, 1.0);
        let window = self.window;
        let stats = self.class(class);
        stats.pulls[arm] += 1;
        stats.sums[arm] += reward;
        stats.total += 1;
        if let Some(w) = window {
            stats.window.push_back((arm as u32, reward));
            while stats.window.len() > w {
                let (old, r) = stats.window.pop_front().expect("non-empty");
                stats.pulls[old as usize] -= 1;
                stats.sums[old as usize] -= r;
                stats.total -= 1;
            }
        }
    }

    /// Statistics of every arm in `class` (zeros for an unseen class).
    pub fn stats(&self, class: u64) -> Vec<ArmStats> {
        match self.classes.get(&class) {
            None => vec![ArmStats::default(); self.arms],
            Some(s) => s
                .pulls
                .iter()
                .zip(&s.sums)
                .map(|(&pulls, &sum)| ArmStats { pulls, mean: if pulls == 0 { 0.0 } else { sum / pulls as f64 } })
                .collect(),
        }
    }

    /// The arm with the highest mean reward in the default class, once every arm has been tried.
    pub fn best_arm(&self) -> Option<usize> {
        self.best_arm_for(DEFAULT_CLASS)
    }

    /// The arm with the highest mean reward in `class`, once every arm has been tried.
    pub fn best_arm_for(&self, class: u64) -> Option<usize> {
        let stats = self.stats(class);
        if stats.iter().any(|s| s.pulls == 0) {
            return None;
        }
        stats.iter().enumerate().max_by(|a, b| a.1.mean.total_cmp(&b.1.mean).then(b.0.cmp(&a.0))).map(|(i, _)| i)
    }

    /// Rewards ignored because they were NaN.
    pub fn rejected_rewards(&self) -> u64 {
        self.rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic Bernoulli bandit.
    struct Bandit {
        means: Vec<f64>,
        state: u64,
    }

    impl Bandit {
        fn pull(&mut self, arm: usize) -> f64 {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
            if u < self.means[arm] { 1.0 } else { 0.0 }
        }
    }

    #[test]
    fn converges_to_the_best_arm_within_the_regret_bounds() {
        let means = vec![0.50, 0.45, 0.40, 0.55, 0.60, 0.35, 0.30];
        let (k, t) = (means.len(), 100_000u64);
        for seed in 1..=3u64 {
            let mut bandit = Bandit { means: means.clone(), state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) };
            let mut s = AttentionSelector::new(k);
            let mut regret = 0.0;
            for _ in 0..t {
                let arm = s.select();
                regret += 0.60 - means[arm];
                let r = bandit.pull(arm);
                s.update(arm, r);
            }
            let stats = s.stats(DEFAULT_CLASS);
            let best_share = stats[4].pulls as f64 / t as f64;
            assert!(best_share >= 0.85, "seed {seed}: best arm got {best_share}");
            let bound = ((k as f64) * t as f64 * (t as f64).ln()).sqrt();
            assert!(regret <= bound, "seed {seed}: regret {regret} > sqrt(K T ln T) = {bound}");
            // Auer et al.: E[T_i] <= 8 ln T / Δ² + 1 + π²/3 for each suboptimal arm (checked per run, loosely).
            for (arm, st) in stats.iter().enumerate().filter(|(a, _)| *a != 4) {
                let gap: f64 = 0.60 - means[arm];
                let auer = 8.0 * (t as f64).ln() / (gap * gap) + 1.0 + std::f64::consts::PI.powi(2) / 3.0;
                assert!((st.pulls as f64) <= auer, "arm {arm}: {} pulls > bound {auer}", st.pulls);
            }
            assert_eq!(s.best_arm(), Some(4));
        }
    }

    #[test]
    fn every_arm_is_tried_first_and_classes_are_independent() {
        let mut s = AttentionSelector::new(3);
        let first: Vec<usize> = (0..3)
            .map(|_| {
                let a = s.select_for(7);
                s.update_for(7, a, 0.5);
                a
            })
            .collect();
        assert_eq!(first, vec![0, 1, 2]);
        assert_eq!(s.select_for(8), 0, "a new class starts over");
        assert_eq!(s.best_arm_for(8), None);
        s.update(0, f64::NAN);
        assert_eq!(s.rejected_rewards(), 1);
        s.update(0, 7.0);
        assert_eq!(s.stats(DEFAULT_CLASS)[0].mean, 1.0, "rewards are clamped to [0, 1]");
    }

    #[test]
    fn a_window_follows_drift() {
        let mut s = AttentionSelector::new(2).with_window(200);
        let mut means = [0.9, 0.1];
        let mut bandit = Bandit { means: means.to_vec(), state: 42 };
        for step in 0..4000 {
            if step == 2000 {
                means = [0.1, 0.9];
                bandit.means = means.to_vec();
            }
            let arm = s.select();
            let r = bandit.pull(arm);
            s.update(arm, r);
        }
        assert_eq!(s.best_arm(), Some(1), "the new best arm dominates after the change");
        let st = s.stats(DEFAULT_CLASS);
        assert_eq!(st[0].pulls + st[1].pulls, 200);
    }
}
