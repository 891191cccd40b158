//! Differentially private patterns: clip, quantise, add exact discrete Laplace noise, and spend a persisted ε
//! budget.
//!
//! The textbook floating-point Laplace sampler is not private (Mironov 2012: its outputs leak through their low
//! bits), so noise here is drawn on integers. A pattern vector is clipped to L2 norm `C`, quantised to the
//! lattice `2^-b·ℤ`, and each coordinate gets an independent discrete Laplace draw (`P[z] ∝ exp(-|z|·ε/Δ₁)`,
//! sampled exactly with the Bernoulli-exp rejection method of Canonne, Kamath and Steinke 2020, in integer
//! arithmetic only). The L1 sensitivity `Δ₁`, in lattice units, covers replacing one pattern with any other
//! of norm ≤ C, rounding included: `Δ₁ = ⌈2·√d·C·2^b⌉ + d`. After noise each coordinate is clamped to the
//! clip range, which is post-processing and costs nothing. Quality is rounded to 0.1 and the sample count
//! reduced to a bucket (spec §9.1); those two are coarsened, not noised, and are outside the ε guarantee.
//!
//! A node's [`PrivacyBudget`] holds its total ε, what it spent (basic composition: ε adds up) and every
//! release it made; a pattern is released once and that same noisy release is re-sent afterwards, so sending
//! it to many peers costs ε once. The ledger is written to disk before a release is handed out.
//!
//! The sampler's running time depends on its output (rejection loops); releases are made by the background
//! worker, not on request, which limits what a timing observer can learn, but the loops are not constant-time.

use crate::error::{NetworkError, Result};
use crate::identity::os_rng;
use rand_core::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// ε is handled in thousandths, so budgets add up exactly; a requested ε is rounded down (more noise).
const MILLI: u64 = 1000;

/// The privacy level of one release.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseSpec {
    /// ε of the discrete Laplace mechanism.
    pub epsilon: f64,
}

/// Discrete Laplace noise at privacy level `epsilon` (pure ε-differential privacy per release).
pub fn laplace_noise(epsilon: f64) -> NoiseSpec {
    NoiseSpec { epsilon }
}

impl NoiseSpec {
    /// ε in thousandths, rounded down; refuses ε below 0.001, non-finite or absurdly large values.
    pub fn epsilon_milli(&self) -> Result<u64> {
        if !self.epsilon.is_finite() || self.epsilon < 0.001 || self.epsilon > 1.0e6 {
            return Err(NetworkError::Privacy(format!(
                "epsilon must be a number between 0.001 and 1e6, got {}",
                self.epsilon
            )));
        }
        Ok((self.epsilon * MILLI as f64).floor() as u64)
    }
}

/// Clipping and quantisation of a release.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipParams {
    /// L2 norm each vector is clipped to (ReasoningBank centroids are unit vectors: 1).
    pub clip_norm: f64,
    /// Lattice spacing is `2^-quantum_bits`.
    pub quantum_bits: u32,
}

impl Default for ClipParams {
    fn default() -> Self {
        Self { clip_norm: 1.0, quantum_bits: 8 }
    }
}

impl ClipParams {
    fn check(&self) -> Result<()> {
        if !(self.clip_norm.is_finite() && self.clip_norm > 0.0 && self.clip_norm <= 1.0e6) {
            return Err(NetworkError::Privacy(format!("clip norm must be in (0, 1e6], got {}", self.clip_norm)));
        }
        if self.quantum_bits > 24 {
            return Err(NetworkError::Privacy(format!("quantum_bits must be ≤ 24, got {}", self.quantum_bits)));
        }
        Ok(())
    }

    fn scale(&self) -> f64 {
        (1u64 << self.quantum_bits) as f64
    }

    /// The largest lattice coordinate a clipped vector can have.
    pub fn bound(&self) -> i64 {
        (self.clip_norm * self.scale()).ceil() as i64
    }

    /// L1 sensitivity in lattice units of replacing one clipped, rounded `dim`-vector with another.
    pub fn l1_sensitivity(&self, dim: usize) -> u64 {
        // +1 absorbs floating-point error in the square root and product.
        (2.0 * (dim as f64).sqrt() * self.clip_norm * self.scale()).ceil() as u64 + dim as u64 + 1
    }
}

/// Executions behind a pattern, coarsened (spec §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SampleBucket {
    /// Fewer than 10.
    Few,
    /// 10 to 50.
    Some,
    /// 51 to 200.
    Many,
    /// More than 200.
    Lots,
}

impl SampleBucket {
    /// The bucket of `count`.
    pub fn of(count: u64) -> Self {
        match count {
            0..10 => Self::Few,
            10..=50 => Self::Some,
            51..=200 => Self::Many,
            _ => Self::Lots,
        }
    }
}

/// A pattern as it may leave the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivatePattern {
    /// Noisy coordinates on the lattice `2^-quantum_bits·ℤ`, clamped to the clip range.
    pub lattice: Vec<i64>,
    /// Lattice spacing exponent.
    pub quantum_bits: u32,
    /// ε spent on it.
    pub epsilon: f64,
    /// Quality rounded to 0.1.
    pub quality: f32,
    /// Sample count, bucketed.
    pub samples: SampleBucket,
}

impl PrivatePattern {
    /// The noisy vector in real units.
    pub fn vector(&self) -> Vec<f32> {
        let q = 1.0 / (1u64 << self.quantum_bits) as f64;
        self.lattice.iter().map(|&k| (k as f64 * q) as f32).collect()
    }
}

/// Clips, quantises and noises `vector` with the operating system's CSPRNG. Prefer [`PrivacyBudget::release`],
/// which accounts for ε; this does not.
pub fn privatize(
    vector: &[f32],
    quality: f64,
    samples: u64,
    noise: NoiseSpec,
    clip: ClipParams,
) -> Result<PrivatePattern> {
    privatize_with(vector, quality, samples, noise, clip, &mut os_rng())
}

pub(crate) fn privatize_with<R: Rng + ?Sized>(
    vector: &[f32],
    quality: f64,
    samples: u64,
    noise: NoiseSpec,
    clip: ClipParams,
    rng: &mut R,
) -> Result<PrivatePattern> {
    let eps_milli = noise.epsilon_milli()?;
    clip.check()?;
    if vector.is_empty() || vector.iter().any(|x| !x.is_finite()) {
        return Err(NetworkError::Privacy("pattern vector must be non-empty and finite".into()));
    }
    if !quality.is_finite() {
        return Err(NetworkError::Privacy("quality must be finite".into()));
    }
    let norm = vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    let shrink = if norm > clip.clip_norm { clip.clip_norm / norm } else { 1.0 };
    let bound = clip.bound();
    let laplace = DiscreteLaplace::new(clip.l1_sensitivity(vector.len()) * MILLI, eps_milli)?;
    let lattice = vector
        .iter()
        .map(|&x| {
            let k = (f64::from(x) * shrink * clip.scale()).round() as i64;
            (k.clamp(-bound, bound) + laplace.sample(rng)).clamp(-bound, bound)
        })
        .collect();
    Ok(PrivatePattern {
        lattice,
        quantum_bits: clip.quantum_bits,
        epsilon: eps_milli as f64 / MILLI as f64,
        quality: ((quality.clamp(0.0, 1.0) * 10.0).round() / 10.0) as f32,
        samples: SampleBucket::of(samples),
    })
}

/// The discrete Laplace distribution on ℤ with scale `t/s`: `P[z] ∝ exp(-|z|·s/t)`, sampled exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscreteLaplace {
    t: u128,
    s: u128,
}

impl DiscreteLaplace {
    /// Scale `t/s` (both positive).
    pub fn new(t: u64, s: u64) -> Result<Self> {
        if t == 0 || s == 0 {
            return Err(NetworkError::Privacy(format!("discrete Laplace needs a positive scale, got {t}/{s}")));
        }
        Ok(Self { t: u128::from(t), s: u128::from(s) })
    }

    /// `exp(-s/t)`: the ratio of neighbouring probabilities.
    pub fn ratio(&self) -> f64 {
        (-(self.s as f64) / self.t as f64).exp()
    }

    /// One draw (Canonne–Kamath–Steinke 2020, Algorithm 2).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> i64 {
        loop {
            let u = uniform_below(rng, self.t);
            if !bernoulli_exp_minus(rng, u, self.t) {
                continue;
            }
            let mut v: u128 = 0;
            while bernoulli_exp_minus(rng, 1, 1) {
                v += 1;
            }
            let y = (u + self.t * v) / self.s;
            let negative = rng.next_u32() & 1 == 1;
            if negative && y == 0 {
                continue;
            }
            let y = i64::try_from(y).unwrap_or(i64::MAX);
            return if negative { -y } else { y };
        }
    }
}

/// Uniform on `0..n` (`n > 0`) by rejection from the next power of two.
fn uniform_below<R: Rng + ?Sized>(rng: &mut R, n: u128) -> u128 {
    debug_assert!(n > 0);
    let bits = 128 - (n - 1).leading_zeros();
    let mask = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    loop {
        let x = ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())) & mask;
        if x < n {
            return x;
        }
    }
}

/// Bernoulli(num/den), `num ≤ den`.
fn bernoulli_ratio<R: Rng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    uniform_below(rng, den) < num
}

/// Bernoulli(exp(-num/den)) for any `num/den ≥ 0` (CKS20 Algorithm 1).
fn bernoulli_exp_minus<R: Rng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    let mut rest = num;
    while rest > den {
        if !bernoulli_exp_minus_unit(rng, 1, 1) {
            return false;
        }
        rest -= den;
    }
    bernoulli_exp_minus_unit(rng, rest, den)
}

/// Bernoulli(exp(-γ)) for `γ = num/den ∈ [0, 1]`: count K while Bernoulli(γ/K) succeeds; odd K is a success.
fn bernoulli_exp_minus_unit<R: Rng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    let mut k: u128 = 1;
    while bernoulli_ratio(rng, num, den * k) {
        k += 1;
    }
    k % 2 == 1
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    /// ε spent, in thousandths.
    spent_milli: u64,
    /// Every release made, by pattern id.
    releases: BTreeMap<u64, PrivatePattern>,
}

/// A node's ε budget and its releases, persisted.
#[derive(Debug)]
pub struct PrivacyBudget {
    path: Option<PathBuf>,
    total_milli: u64,
    ledger: Ledger,
}

impl PrivacyBudget {
    /// A budget kept only in memory (tests, and nodes that never share).
    pub fn in_memory(total_epsilon: f64) -> Result<Self> {
        Ok(Self { path: None, total_milli: laplace_noise(total_epsilon).epsilon_milli()?, ledger: Ledger::default() })
    }

    /// The budget stored at `path` (created empty if missing) with total `total_epsilon`. What was spent stays
    /// spent: lowering the total below it only stops further releases.
    pub fn open(path: &Path, total_epsilon: f64) -> Result<Self> {
        let total_milli = laplace_noise(total_epsilon).epsilon_milli()?;
        let ledger = match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| NetworkError::Privacy(format!("{}: unreadable budget ledger ({e})", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => return Err(NetworkError::io(path, e)),
        };
        Ok(Self { path: Some(path.to_path_buf()), total_milli, ledger })
    }

    /// Total ε.
    pub fn total(&self) -> f64 {
        self.total_milli as f64 / MILLI as f64
    }

    /// ε spent.
    pub fn spent(&self) -> f64 {
        self.ledger.spent_milli as f64 / MILLI as f64
    }

    /// ε left.
    pub fn remaining(&self) -> f64 {
        self.total_milli.saturating_sub(self.ledger.spent_milli) as f64 / MILLI as f64
    }

    /// Releases made.
    pub fn releases(&self) -> usize {
        self.ledger.releases.len()
    }

    /// The release of pattern `id`: the one made before if any (free), else a new one that spends `noise.epsilon`
    /// and is written to the ledger before it is returned. Refuses (RV007) once the budget cannot cover it.
    pub fn release(
        &mut self,
        id: u64,
        vector: &[f32],
        quality: f64,
        samples: u64,
        noise: NoiseSpec,
        clip: ClipParams,
    ) -> Result<PrivatePattern> {
        self.release_with(id, vector, quality, samples, noise, clip, &mut os_rng())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn release_with<R: Rng + ?Sized>(
        &mut self,
        id: u64,
        vector: &[f32],
        quality: f64,
        samples: u64,
        noise: NoiseSpec,
        clip: ClipParams,
        rng: &mut R,
    ) -> Result<PrivatePattern> {
        if let Some(done) = self.ledger.releases.get(&id) {
            return Ok(done.clone());
        }
        let cost = noise.epsilon_milli()?;
        if self.ledger.spent_milli + cost > self.total_milli {
            return Err(NetworkError::BudgetExhausted {
                requested: cost as f64 / MILLI as f64,
                spent: self.spent(),
                total: self.total(),
            });
        }
        let pattern = privatize_with(vector, quality, samples, noise, clip, rng)?;
        self.ledger.spent_milli += cost;
        self.ledger.releases.insert(id, pattern.clone());
        if let Err(e) = self.persist() {
            self.ledger.spent_milli -= cost;
            self.ledger.releases.remove(&id);
            return Err(e);
        }
        Ok(pattern)
    }

    fn persist(&self) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let bytes = serde_json::to_vec(&self.ledger).map_err(|e| NetworkError::Encoding(e.to_string()))?;
        let tmp = path.with_extension("tmp-ledger");
        let mut f = fs::File::create(&tmp).map_err(|e| NetworkError::io(&tmp, e))?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| NetworkError::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| NetworkError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::convert::Infallible;

    /// SplitMix64: a seeded generator so the statistical tests are repeatable. Tests only; releases use the OS.
    struct SplitMix(u64);

    impl rand_core::TryRng for SplitMix {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            Ok((self.try_next_u64()? >> 32) as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            Ok(z ^ (z >> 31))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            for chunk in dst.chunks_mut(8) {
                let v = self.try_next_u64()?.to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            Ok(())
        }
    }

    #[test]
    fn bernoulli_exp_has_the_right_mean() {
        let mut rng = SplitMix(1);
        for (num, den) in [(1u128, 2u128), (1, 1), (5, 2)] {
            let n = 40_000;
            let hits = (0..n).filter(|_| bernoulli_exp_minus(&mut rng, num, den)).count() as f64;
            let p = (-(num as f64) / den as f64).exp();
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((hits / n as f64 - p).abs() < 5.0 * sd, "exp(-{num}/{den}): {} vs {p}", hits / n as f64);
        }
    }

    /// Mean, variance and a χ² goodness-of-fit test against `P[z] = (1-p)/(1+p)·p^|z|`, `p = exp(-s/t)`.
    #[test]
    fn discrete_laplace_matches_its_distribution() {
        let mut rng = SplitMix(42);
        for (t, s) in [(3u64, 2u64), (10, 1), (4161 * 1000, 1000)] {
            let lap = DiscreteLaplace::new(t, s).unwrap();
            let p = lap.ratio();
            let n = 60_000usize;
            let draws: Vec<i64> = (0..n).map(|_| lap.sample(&mut rng)).collect();
            let mean = draws.iter().sum::<i64>() as f64 / n as f64;
            let var = 2.0 * p / (1.0 - p).powi(2);
            let sample_var = draws.iter().map(|&z| (z as f64 - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            assert!(mean.abs() < 5.0 * (var / n as f64).sqrt(), "t/s={t}/{s}: mean {mean}, var {var}");
            // The variance of the sample variance is (μ4 − σ⁴)/n; μ4 ≤ 25σ⁴ for this family is generous.
            assert!((sample_var / var - 1.0).abs() < 5.0 * (24.0 / n as f64).sqrt(), "{sample_var} vs {var}");
            if t / s > 100 {
                continue; // too wide for a cell-by-cell test
            }
            // Cells z = -K..=K plus both tails, each expected ≥ 5 draws.
            let pmf = |z: i64| (1.0 - p) / (1.0 + p) * p.powi(z.unsigned_abs() as i32);
            let k = (1..).take_while(|&k| pmf(k) * n as f64 >= 5.0).last().unwrap_or(0);
            let tail: f64 = p.powi(k as i32 + 1) / (1.0 + p);
            let mut chi2 = 0.0;
            let mut cells = 0;
            for z in -k..=k {
                let observed = draws.iter().filter(|&&d| d == z).count() as f64;
                let expected = pmf(z) * n as f64;
                chi2 += (observed - expected).powi(2) / expected;
                cells += 1;
            }
            for side in [-1i64, 1] {
                let observed = draws.iter().filter(|&&d| d * side > k).count() as f64;
                let expected = tail * n as f64;
                chi2 += (observed - expected).powi(2) / expected;
                cells += 1;
            }
            // χ² with cells−1 degrees of freedom: mean df, sd √(2df); 5 sd is far in the tail.
            let df = (cells - 1) as f64;
            assert!(chi2 < df + 5.0 * (2.0 * df).sqrt(), "t/s={t}/{s}: χ²={chi2:.1} over {cells} cells");
        }
    }

    #[test]
    fn sensitivity_covers_replacement_and_rounding() {
        let clip = ClipParams { clip_norm: 1.0, quantum_bits: 4 };
        // Two unit vectors as far apart in L1 as possible: ±(1/√d, …).
        let d = 16;
        let a: Vec<f32> = vec![1.0 / (d as f32).sqrt(); d];
        let b: Vec<f32> = a.iter().map(|x| -x).collect();
        let q = |v: &[f32]| -> Vec<i64> { v.iter().map(|&x| (f64::from(x) * 16.0).round() as i64).collect() };
        let l1: u64 = q(&a).iter().zip(q(&b)).map(|(x, y)| (x - y).unsigned_abs()).sum();
        assert!(l1 <= clip.l1_sensitivity(d), "{l1} > {}", clip.l1_sensitivity(d));
    }

    #[test]
    fn coarsens_quality_and_samples() {
        let mut rng = SplitMix(3);
        let p = privatize_with(&[0.6, 0.8], 0.87, 75, laplace_noise(1.0), ClipParams::default(), &mut rng).unwrap();
        assert_eq!((p.quality, p.samples, p.epsilon), (0.9, SampleBucket::Many, 1.0));
        assert_eq!(
            [9, 10, 50, 51, 201].map(SampleBucket::of),
            [SampleBucket::Few, SampleBucket::Some, SampleBucket::Some, SampleBucket::Many, SampleBucket::Lots]
        );
        for bad in [f64::NAN, 0.0, -1.0, 0.0009, f64::INFINITY] {
            assert!(privatize(&[1.0], 0.5, 1, laplace_noise(bad), ClipParams::default()).is_err(), "{bad}");
        }
        assert!(privatize(&[], 0.5, 1, laplace_noise(1.0), ClipParams::default()).is_err());
        assert!(privatize(&[f32::NAN], 0.5, 1, laplace_noise(1.0), ClipParams::default()).is_err());
    }

    #[test]
    fn weak_noise_keeps_the_signal() {
        // With a large ε the noise is a few lattice steps: the release stays close to the clipped input.
        let mut rng = SplitMix(9);
        let v = [0.6f32, -0.8, 0.0, 0.0];
        let p = privatize_with(&v, 0.5, 1, laplace_noise(10_000.0), ClipParams::default(), &mut rng).unwrap();
        for (x, y) in v.iter().zip(p.vector()) {
            assert!((x - y).abs() < 0.05, "{x} vs {y}");
        }
    }

    proptest! {
        #[test]
        fn output_is_on_the_lattice_within_the_clamp(
            v in proptest::collection::vec(-100.0f32..100.0, 1..40),
            eps in 0.01f64..20.0,
            bits in 0u32..12,
            norm in 0.1f64..4.0,
            seed in any::<u64>(),
        ) {
            let clip = ClipParams { clip_norm: norm, quantum_bits: bits };
            let p = privatize_with(&v, 0.5, 1, laplace_noise(eps), clip, &mut SplitMix(seed)).unwrap();
            prop_assert_eq!(p.lattice.len(), v.len());
            prop_assert!(p.lattice.iter().all(|k| k.abs() <= clip.bound()));
            let q = (1u64 << bits) as f64;
            for (k, x) in p.lattice.iter().zip(p.vector()) {
                prop_assert_eq!(f64::from(x) * q, *k as f64);
            }
        }

        #[test]
        fn budget_never_exceeds_its_total(
            costs in proptest::collection::vec((0u64..6, 0.05f64..2.0), 1..60),
            total in 0.5f64..10.0,
        ) {
            let mut budget = PrivacyBudget::in_memory(total).unwrap();
            let mut rng = SplitMix(7);
            for (id, eps) in costs {
                let before = budget.spent();
                match budget.release_with(id, &[0.5, 0.5], 0.5, 1, laplace_noise(eps), ClipParams::default(), &mut rng) {
                    Ok(_) => prop_assert!(budget.spent() <= budget.total() + 1e-12),
                    Err(NetworkError::BudgetExhausted { .. }) => prop_assert_eq!(budget.spent(), before),
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
        }
    }

    #[test]
    fn one_release_per_pattern_persisted_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.json");
        let mut budget = PrivacyBudget::open(&path, 2.5).unwrap();
        let first = budget.release(1, &[0.6, 0.8], 0.7, 20, laplace_noise(1.0), ClipParams::default()).unwrap();
        let again = budget.release(1, &[0.6, 0.8], 0.7, 20, laplace_noise(1.0), ClipParams::default()).unwrap();
        assert_eq!(first, again, "re-sent as is");
        assert_eq!(budget.spent(), 1.0);
        budget.release(2, &[0.0, 1.0], 0.7, 20, laplace_noise(1.0), ClipParams::default()).unwrap();
        let err = budget.release(3, &[1.0, 0.0], 0.7, 20, laplace_noise(1.0), ClipParams::default()).unwrap_err();
        assert!(err.to_string().starts_with("RV007"), "{err}");

        let mut reopened = PrivacyBudget::open(&path, 2.5).unwrap();
        assert_eq!((reopened.spent(), reopened.releases()), (2.0, 2));
        assert_eq!(reopened.release(1, &[0.0, 0.0], 0.1, 1, laplace_noise(1.0), ClipParams::default()).unwrap(), first);
        assert!(reopened.release(3, &[1.0, 0.0], 0.7, 20, laplace_noise(0.5), ClipParams::default()).is_ok());
        assert_eq!(reopened.remaining(), 0.0);
    }
}
