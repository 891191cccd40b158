//! EWC++: elastic weight consolidation with an online Fisher estimate (Chaudhry et al., ECCV 2018).
//!
//! The penalty keeps parameters that mattered for earlier tasks near their anchors:
//! `Ω(θ) = (λ/2) Σ_i F_i (θ_i − θ*_i)²`, gradient `λ F_i (θ_i − θ*_i)`. The Fisher is a moving average of squared
//! per-sample gradients, `F ← γ F + (1 − γ) g∘g` (no separate Fisher pass); at a task boundary the anchor moves to
//! the current parameters and the Fisher accumulated so far becomes the importance the penalty uses.
//!
//! **What λ means here.** Losses are per-sample (`½ (ŷ − t)²`, not summed over a batch) and `F` is a per-sample
//! mean of squared gradients, so the penalty is on the same per-sample scale as the loss. In that normalisation
//! λ ≈ `N_A / N_B` is the Laplace (Bayes-consistent) weighting of an old task of `N_A` samples against a new one of
//! `N_B` (Huszár 2018): λ ≈ 1 for equal-sized tasks, λ ≫ 1 freezes what the old tasks used. The configuration
//! default 5000 is therefore a strong prior (it protects learned plan classes against a burst of new ones).
//!
//! **Task boundaries** are detected from the loss stream: after a warm-up, a loss more than `z` standard
//! deviations above the running mean (Welford) starts a new task.

/// EWC++ state for a parameter vector (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EwcPlusPlus {
    /// λ.
    pub lambda: f32,
    /// γ, the Fisher decay per sample.
    pub decay: f32,
    /// Running Fisher estimate.
    fisher: Vec<f32>,
    /// Fisher frozen at the last consolidation: the importance the penalty uses.
    importance: Vec<f32>,
    anchor: Vec<f32>,
    anchored: bool,
    /// Welford statistics of recent losses, for boundary detection.
    loss_count: u64,
    loss_mean: f64,
    loss_m2: f64,
    /// z-score that marks a task boundary.
    pub boundary_z: f64,
    /// Losses needed before boundaries are detected.
    pub warmup: u64,
    consolidations: u64,
}

impl EwcPlusPlus {
    /// EWC++ for `parameters` parameters.
    pub fn new(parameters: usize, lambda: f32, decay: f32) -> Self {
        EwcPlusPlus {
            lambda,
            decay,
            fisher: vec![0.0; parameters],
            importance: vec![0.0; parameters],
            anchor: vec![0.0; parameters],
            anchored: false,
            loss_count: 0,
            loss_mean: 0.0,
            loss_m2: 0.0,
            boundary_z: 3.0,
            warmup: 20,
            consolidations: 0,
        }
    }

    /// Adds one per-sample gradient to the running Fisher.
    pub fn accumulate(&mut self, grad: &[f32]) {
        let (g1, g2) = (self.decay, 1.0 - self.decay);
        self.fisher.iter_mut().zip(grad).for_each(|(f, g)| *f = g1 * *f + g2 * g * g);
    }

    /// Anchors at `params` and freezes the current Fisher as the importance: call at a task boundary.
    pub fn consolidate(&mut self, params: &[f32]) {
        self.anchor.copy_from_slice(params);
        self.importance.copy_from_slice(&self.fisher);
        self.anchored = true;
        self.consolidations += 1;
    }

    /// Number of parameters covered.
    pub fn parameters(&self) -> usize {
        self.fisher.len()
    }

    /// True when every per-parameter vector covers exactly `parameters` (a check for restored state).
    pub(crate) fn covers(&self, parameters: usize) -> bool {
        [self.fisher.len(), self.importance.len(), self.anchor.len()].iter().all(|&n| n == parameters)
    }

    /// Consolidations so far.
    pub fn consolidations(&self) -> u64 {
        self.consolidations
    }

    /// The penalty `(λ/2) Σ F_i (θ_i − θ*_i)²` (0 before the first consolidation).
    pub fn penalty(&self, params: &[f32]) -> f64 {
        if !self.anchored {
            return 0.0;
        }
        let s: f64 = params
            .iter()
            .zip(&self.anchor)
            .zip(&self.importance)
            .map(|((p, a), f)| f64::from(*f) * f64::from(p - a).powi(2))
            .sum();
        0.5 * f64::from(self.lambda) * s
    }

    /// Adds the penalty's gradient `λ F (θ − θ*)` to `grad`.
    pub fn add_penalty_gradient(&self, params: &[f32], grad: &mut [f32]) {
        if !self.anchored || self.lambda == 0.0 {
            return;
        }
        for ((g, (p, a)), f) in grad.iter_mut().zip(params.iter().zip(&self.anchor)).zip(&self.importance) {
            *g += self.lambda * f * (p - a);
        }
    }

    /// Pulls `params` towards the anchor by the proximal step of the penalty with step size `lr`:
    /// `θ_i ← (θ_i + c_i θ*_i) / (1 + c_i)`, `c_i = lr λ F_i` (exactly minimises
    /// `½ (θ_i − θ'_i)² + lr (λ/2) F_i (θ_i − θ*_i)²`; never overshoots the anchor, whatever λ).
    pub fn proximal_step(&self, params: &mut [f32], lr: f32) {
        if !self.anchored || self.lambda == 0.0 {
            return;
        }
        for ((p, a), f) in params.iter_mut().zip(&self.anchor).zip(&self.importance) {
            let c = lr * self.lambda * f;
            *p = (*p + c * a) / (1.0 + c);
        }
    }

    /// Records a loss; returns true when it marks a task boundary (it is then not added to the statistics, and
    /// they restart).
    pub fn observe_loss(&mut self, loss: f64) -> bool {
        if !loss.is_finite() {
            return false;
        }
        if self.loss_count >= self.warmup {
            let sd = (self.loss_m2 / (self.loss_count - 1) as f64).sqrt();
            if sd > 0.0 && (loss - self.loss_mean) / sd > self.boundary_z {
                self.loss_count = 0;
                self.loss_mean = 0.0;
                self.loss_m2 = 0.0;
                return true;
            }
        }
        self.loss_count += 1;
        let delta = loss - self.loss_mean;
        self.loss_mean += delta / self.loss_count as f64;
        self.loss_m2 += delta * (loss - self.loss_mean);
        false
    }

    /// Per-parameter importance and anchor (for `dag_ewc_constraints`).
    pub fn constraints(&self) -> impl Iterator<Item = (usize, f32, f32)> + '_ {
        self.importance.iter().zip(&self.anchor).enumerate().map(|(i, (f, a))| (i, *f, *a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_grows_with_deviation_and_its_gradient_is_exact() {
        let mut e = EwcPlusPlus::new(3, 2.0, 0.5);
        e.accumulate(&[1.0, 0.0, 2.0]);
        e.consolidate(&[0.0, 0.0, 0.0]);
        assert_eq!(e.penalty(&[0.0; 3]), 0.0);
        let p1 = e.penalty(&[1.0, 1.0, 1.0]);
        let p2 = e.penalty(&[2.0, 2.0, 2.0]);
        assert!(p2 > p1 && p1 > 0.0);
        let mut g = [0.0; 3];
        e.add_penalty_gradient(&[1.0, 1.0, 1.0], &mut g);
        // F = 0.5 * g²: [0.5, 0, 2]; gradient λ F (θ − θ*) = 2 * [0.5, 0, 2]
        assert_eq!(g, [1.0, 0.0, 4.0]);
    }

    #[test]
    fn the_proximal_step_never_overshoots_the_anchor() {
        let mut e = EwcPlusPlus::new(2, 1e6, 0.0);
        e.accumulate(&[1.0, 0.5]);
        e.consolidate(&[0.0, 0.0]);
        let mut p = [1.0f32, -1.0];
        for _ in 0..5 {
            e.proximal_step(&mut p, 0.1);
            assert!(p[0] >= 0.0 && p[0] < 1.0 && p[1] <= 0.0 && p[1] > -1.0, "{p:?}");
        }
        // For small λ it is the explicit gradient step to first order.
        let small = EwcPlusPlus { lambda: 1e-3, ..e.clone() };
        let mut q = [1.0f32, -1.0];
        small.proximal_step(&mut q, 0.1);
        let mut g = [0.0f32; 2];
        small.add_penalty_gradient(&[1.0, -1.0], &mut g);
        assert!((q[0] - (1.0 - 0.1 * g[0])).abs() < 1e-6 && (q[1] - (-1.0 - 0.1 * g[1])).abs() < 1e-6);
    }

    #[test]
    fn boundaries_are_loss_jumps() {
        let mut e = EwcPlusPlus::new(1, 1.0, 0.9);
        for i in 0..40 {
            assert!(!e.observe_loss(1.0 + 0.01 * f64::from(i % 3)));
        }
        assert!(e.observe_loss(5.0), "a jump far above the running mean");
        assert!(!e.observe_loss(5.0), "statistics restart after a boundary");
    }
}
