//! Low-rank adapters with a linear regression head: MicroLoRA (rank 1–2, per query) and BaseLoRA (rank 8,
//! background).
//!
//! Forward (Hu et al., ICLR 2022): `y = x + s · (x A) B` with `A ∈ R^{d×r}` (small Gaussian init) and
//! `B ∈ R^{r×d}` (zero init, so a fresh adapter is the identity); the head predicts `ŷ = w · y + b`. Training
//! minimises `½ (ŷ − t)²` by SGD on `A`, `B`, `w` and `b` with the exact gradients
//!
//! ```text
//! ∂L/∂w = g·y     ∂L/∂b = g     ∂L/∂B[j,k] = g·s·h_j·w_k     ∂L/∂A[i,j] = g·s·x_i·(B[j,:]·w)
//! ```
//!
//! where `g = ŷ − t` and `h = x A`. An optional EWC gradient (`λ F (θ − θ*)`) is added per parameter.
//! [`adapt`](LoRa::adapt) takes a normalised step, so the learning rate is the fraction of the error one example
//! corrects. One adaptation step is O(d·r) and allocates nothing.

// Dense linear algebra indexes several arrays with one index; iterator chains would obscure it.
#![allow(clippy::needless_range_loop)]

use crate::dot;
use crate::ewc::EwcPlusPlus;
use ruvector_dag::dag::generator::SplitMix64;

/// A low-rank adapter with a regression head (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct LoRa {
    dim: usize,
    rank: usize,
    /// `s`, the scale of the low-rank update (α / r).
    scale: f32,
    learning_rate: f32,
    /// Parameters, flattened: `A` (d·r, row-major by input dim), `B` (r·d), `w` (d), `b` (1).
    params: Vec<f32>,
    /// Scratch: `h = x A` and `c_j = B[j,:] · w`.
    h: Vec<f32>,
    c: Vec<f32>,
    /// Scratch gradient, for the EWC path.
    grad: Vec<f32>,
    /// Scratch adapted vector `y`.
    y: Vec<f32>,
}

/// A rank-1 or rank-2 adapter used per query.
pub type MicroLoRa = LoRa;

impl LoRa {
    /// An adapter for `dim`-dimensional inputs with `rank`, seeded initialisation of `A`.
    ///
    /// # Panics
    /// When `dim` or `rank` is 0.
    pub fn new(dim: usize, rank: usize, learning_rate: f32, seed: u64) -> Self {
        assert!(dim > 0 && rank > 0, "an adapter needs a positive dimension and rank");
        let mut params = vec![0f32; 2 * dim * rank + dim + 1];
        // A ~ N(0, 1/d) from the workspace's fixed generator.
        let mut rng = SplitMix64::new(seed ^ 0x9E37_79B9_7F4A_7C15);
        let std = (1.0 / dim as f64).sqrt();
        for a in params.iter_mut().take(dim * rank) {
            *a = (std * rng.normal()) as f32;
        }
        LoRa {
            dim,
            rank,
            scale: 1.0 / rank as f32,
            learning_rate,
            params,
            h: vec![0.0; rank],
            c: vec![0.0; rank],
            grad: vec![0.0; 2 * dim * rank + dim + 1],
            y: Vec::with_capacity(dim),
        }
    }

    /// A rank-`rank` per-query adapter; ranks above 2 are clamped to 2.
    pub fn micro(dim: usize, rank: usize, learning_rate: f32, seed: u64) -> MicroLoRa {
        Self::new(dim, rank.clamp(1, 2), learning_rate, seed)
    }

    /// Input dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of parameters.
    pub fn parameter_count(&self) -> usize {
        self.params.len()
    }

    /// All parameters, flattened (`A`, `B`, `w`, `b`).
    pub fn parameters(&self) -> &[f32] {
        &self.params
    }

    /// Mutable parameters (for tests and state import).
    pub fn parameters_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Zeroes what the adapter has learned (`B`, `w`, `b`), keeping the random projection `A`: the adapter
    /// predicts 0 again.
    pub fn reset(&mut self) {
        let (b_at, _, _) = self.offsets();
        self.params[b_at..].iter_mut().for_each(|p| *p = 0.0);
    }

    /// Sets the learning rate.
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.learning_rate = lr;
    }

    fn offsets(&self) -> (usize, usize, usize) {
        let ab = self.dim * self.rank;
        (ab, 2 * ab, 2 * ab + self.dim)
    }

    /// `h = x A` and `c_j = B[j,:] · w` into scratch.
    fn project(&mut self, x: &[f32]) {
        let (b_at, w_at, _) = self.offsets();
        let (d, r) = (self.dim, self.rank);
        self.h.iter_mut().for_each(|v| *v = 0.0);
        for (i, &xi) in x.iter().enumerate().take(d) {
            let row = &self.params[i * r..(i + 1) * r];
            for j in 0..r {
                self.h[j] += xi * row[j];
            }
        }
        for j in 0..r {
            let bj = &self.params[b_at + j * d..b_at + (j + 1) * d];
            let w = &self.params[w_at..w_at + d];
            self.c[j] = dot(bj, w);
        }
    }

    /// The adapted vector `y = x + s (x A) B` into `out` (resized to `dim`).
    pub fn forward(&mut self, x: &[f32], out: &mut Vec<f32>) {
        assert_eq!(x.len(), self.dim, "input dimension");
        self.project(x);
        let (b_at, _, _) = self.offsets();
        out.clear();
        out.extend_from_slice(x);
        for j in 0..self.rank {
            let hj = self.scale * self.h[j];
            let bj = &self.params[b_at + j * self.dim..b_at + (j + 1) * self.dim];
            out.iter_mut().zip(bj).for_each(|(o, b)| *o += hj * b);
        }
    }

    /// The head's prediction `w · y + b` for input `x`.
    pub fn predict(&mut self, x: &[f32]) -> f32 {
        assert_eq!(x.len(), self.dim, "input dimension");
        self.project(x);
        let (_, w_at, b_at) = self.offsets();
        let wx = dot(x, &self.params[w_at..w_at + self.dim]);
        let low: f32 = (0..self.rank).map(|j| self.h[j] * self.c[j]).sum();
        wx + self.scale * low + self.params[b_at]
    }

    /// The loss `½ (ŷ − t)²` for input `x` and target `t`.
    pub fn loss(&mut self, x: &[f32], target: f32) -> f32 {
        let e = self.predict(x) - target;
        0.5 * e * e
    }

    /// The gradient of the loss into `grad` (length [`parameter_count`](Self::parameter_count)); returns the
    /// prediction error `ŷ − t`.
    pub fn gradient(&mut self, x: &[f32], target: f32, grad: &mut [f32]) -> f32 {
        let g = self.predict(x) - target;
        let (d, r, s) = (self.dim, self.rank, self.scale);
        let (b_at, w_at, bias_at) = self.offsets();
        // ∂A[i,j] = g s x_i c_j
        for (i, row) in grad[..d * r].chunks_exact_mut(r).enumerate() {
            let gx = g * s * x[i];
            row.iter_mut().zip(&self.c).for_each(|(a, &c)| *a = gx * c);
        }
        // ∂B[j,k] = g s h_j w_k, row by row; y = x + s Σ_j h_j B[j,:] alongside; ∂w = g y.
        let mut y = std::mem::take(&mut self.y);
        y.clear();
        y.extend_from_slice(x);
        let w = &self.params[w_at..w_at + d];
        for j in 0..r {
            let gh = g * s * self.h[j];
            grad[b_at + j * d..b_at + (j + 1) * d].iter_mut().zip(w).for_each(|(a, &wk)| *a = gh * wk);
            let sh = s * self.h[j];
            y.iter_mut().zip(&self.params[b_at + j * d..b_at + (j + 1) * d]).for_each(|(yk, &b)| *yk += sh * b);
        }
        grad[w_at..w_at + d].iter_mut().zip(&y).for_each(|(a, &yk)| *a = g * yk);
        self.y = y;
        grad[bias_at] = g;
        g
    }

    /// One normalised gradient step towards `target` for input `x` (plus the EWC gradient when given); returns
    /// the error before the step. Allocates nothing.
    ///
    /// The step is `θ ← θ − η ∇L / (‖∇ŷ‖² + ε)` (normalised LMS): to first order it moves the prediction by
    /// `η (t − ŷ)`, so the learning rate `η` is the fraction of the error one example corrects, independent of
    /// the input's scale and dimension, and the step is stable for `0 < η < 2`.
    ///
    /// The EWC penalty is applied as a proximal (implicit) step, `θ_i ← (θ_i + c_i θ*_i) / (1 + c_i)` with
    /// `c_i = lr λ F_i`: the same as the explicit gradient step for small `c_i`, and stable for any λ — the
    /// explicit step `θ_i −= c_i (θ_i − θ*_i)` overshoots the anchor and diverges once `c_i > 2`, which real
    /// workloads reach with λ in the thousands.
    pub fn adapt(&mut self, x: &[f32], target: f32, ewc: Option<&mut EwcPlusPlus>) -> f32 {
        let mut grad = std::mem::take(&mut self.grad);
        let err = self.gradient(x, target, &mut grad);
        // ∇L = g ∇ŷ, so ‖∇ŷ‖² = ‖∇L‖² / g².
        let sensitivity = if err != 0.0 { dot(&grad, &grad) / (err * err) } else { 1.0 };
        let lr = self.learning_rate / (sensitivity + 1e-6);
        self.params.iter_mut().zip(&grad).for_each(|(p, g)| *p -= lr * g);
        if let Some(ewc) = ewc {
            ewc.accumulate(&grad);
            ewc.proximal_step(&mut self.params, lr);
        }
        self.grad = grad;
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(d: usize, seed: u32) -> Vec<f32> {
        (0..d).map(|i| ((i as f32 * 0.37 + seed as f32).sin()) / (d as f32).sqrt()).collect()
    }

    #[test]
    fn a_fresh_adapter_is_the_identity() {
        let mut m = LoRa::micro(16, 2, 0.01, 1);
        let x = input(16, 3);
        let mut y = Vec::new();
        m.forward(&x, &mut y);
        assert_eq!(y, x);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (d, r) = (12, 2);
        let mut m = LoRa::new(d, r, 0.0, 7);
        // Non-trivial parameters everywhere.
        for (i, p) in m.parameters_mut().iter_mut().enumerate() {
            *p = ((i as f32) * 0.61).sin() * 0.3;
        }
        let x = input(d, 5);
        let t = 0.8;
        let mut grad = vec![0.0; m.parameter_count()];
        m.gradient(&x, t, &mut grad);
        for i in 0..m.parameter_count() {
            let h = 1e-2f32;
            let orig = m.parameters()[i];
            m.parameters_mut()[i] = orig + h;
            let up = f64::from(m.loss(&x, t));
            m.parameters_mut()[i] = orig - h;
            let down = f64::from(m.loss(&x, t));
            m.parameters_mut()[i] = orig;
            let numeric = (up - down) / (2.0 * f64::from(h));
            let analytic = f64::from(grad[i]);
            let err = (numeric - analytic).abs() / numeric.abs().max(analytic.abs()).max(1e-3);
            assert!(err < 1e-2, "parameter {i}: analytic {analytic}, numeric {numeric}");
        }
    }

    #[test]
    fn adapting_reduces_the_loss_on_a_fixed_target() {
        let mut m = LoRa::micro(32, 2, 0.3, 11);
        let x = input(32, 9);
        let mut last = m.loss(&x, 2.0);
        for _ in 0..50 {
            m.adapt(&x, 2.0, None);
            let now = m.loss(&x, 2.0);
            assert!(now <= last + 1e-6, "loss went up: {last} -> {now}");
            last = now;
        }
        assert!(last < 1e-3, "loss {last}");
    }
}
