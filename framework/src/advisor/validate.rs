//! Did a built index make its queries faster? A rank test on measured latencies before and after.

/// The judgement of an index from its queries' latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judgement {
    /// Faster after, significantly.
    Faster {
        /// Geometric mean after / before.
        ratio: f64,
        /// Two-sided p-value.
        p: f64,
    },
    /// Slower after, significantly.
    Slower {
        /// Geometric mean after / before.
        ratio: f64,
        /// Two-sided p-value.
        p: f64,
    },
    /// No significant difference.
    NoChange {
        /// Geometric mean after / before.
        ratio: f64,
        /// Two-sided p-value.
        p: f64,
    },
    /// Fewer than [`MIN_SAMPLES`] latencies on a side.
    TooFew,
}

/// Latencies needed on each side for the normal approximation of the rank test.
pub const MIN_SAMPLES: usize = 8;

/// Significance level of the two-sided test.
pub const ALPHA: f64 = 0.05;

/// Compares latencies (ms) measured before and after a change with the Mann–Whitney U test (normal
/// approximation with tie correction): robust to the heavy tails of query latencies, unlike a t-test on raw
/// times. The ratio reported is of geometric means.
///
/// ```
/// use ruvector_dag::advisor::{Judgement, judge};
/// let before = [100.0, 110.0, 95.0, 105.0, 120.0, 98.0, 102.0, 99.0, 130.0];
/// let after = [10.0, 12.0, 9.0, 11.0, 10.5, 9.5, 13.0, 10.0, 12.0];
/// assert!(matches!(judge(&before, &after), Judgement::Faster { ratio, .. } if ratio < 0.2));
/// ```
pub fn judge(before: &[f64], after: &[f64]) -> Judgement {
    let clean = |v: &[f64]| v.iter().copied().filter(|x| x.is_finite() && *x >= 0.0).collect::<Vec<f64>>();
    let (b, a) = (clean(before), clean(after));
    if b.len() < MIN_SAMPLES || a.len() < MIN_SAMPLES {
        return Judgement::TooFew;
    }
    let ratio = geometric_mean(&a).unwrap_or(0.0) / geometric_mean(&b).unwrap_or(1.0);
    // Ranks over both samples, ties sharing their mean rank.
    let mut all: Vec<(f64, bool)> = b.iter().map(|&x| (x, false)).chain(a.iter().map(|&x| (x, true))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut rank_sum_after = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_after += all[i..=j].iter().filter(|(_, after)| *after).count() as f64 * rank;
        i = j + 1;
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let u = rank_sum_after - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let total = n1 + n2;
    let var = n1 * n2 / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    if var <= 0.0 {
        return Judgement::NoChange { ratio, p: 1.0 };
    }
    let z = (u - mean) / var.sqrt();
    let p = (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0);
    if p < ALPHA && z < 0.0 {
        Judgement::Faster { ratio, p }
    } else if p < ALPHA {
        Judgement::Slower { ratio, p }
    } else {
        Judgement::NoChange { ratio, p }
    }
}

/// Geometric mean of latencies (each floored at 1e-6 ms); `None` when empty.
pub fn geometric_mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().map(|x| x.max(1e-6).ln()).sum::<f64>() / v.len() as f64).exp())
}

/// Standard normal CDF (Abramowitz & Stegun 7.1.26 erf, error < 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    let erf = if x >= 0.0 { erf } else { -erf };
    0.5 * (1.0 + erf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::generator::SplitMix64;

    fn lognormal(rng: &mut SplitMix64, median: f64, n: usize) -> Vec<f64> {
        (0..n).map(|_| median * (0.3 * rng.normal()).exp()).collect()
    }

    #[test]
    fn the_normal_cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.644_854) - 0.05).abs() < 1e-6);
    }

    #[test]
    fn a_real_speedup_is_faster_and_a_slowdown_slower() {
        let mut rng = SplitMix64::new(7);
        let before = lognormal(&mut rng, 100.0, 12);
        let after = lognormal(&mut rng, 30.0, 12);
        assert!(matches!(judge(&before, &after), Judgement::Faster { ratio, p } if ratio < 0.5 && p < 0.01));
        assert!(matches!(judge(&after, &before), Judgement::Slower { ratio, .. } if ratio > 2.0));
    }

    #[test]
    fn noise_alone_is_no_change_most_of_the_time() {
        // Same distribution: the test should call a difference in about ALPHA of the trials, not more.
        let mut rng = SplitMix64::new(11);
        let trials = 400;
        let called = (0..trials)
            .filter(|_| {
                let b = lognormal(&mut rng, 50.0, 10);
                let a = lognormal(&mut rng, 50.0, 10);
                !matches!(judge(&b, &a), Judgement::NoChange { .. })
            })
            .count();
        assert!(called as f64 <= 2.0 * ALPHA * trials as f64, "{called} of {trials} false calls");
    }

    #[test]
    fn too_few_samples_and_ties_are_handled() {
        assert_eq!(judge(&[1.0; 7], &[1.0; 20]), Judgement::TooFew);
        assert_eq!(judge(&[5.0; 10], &[5.0; 10]), Judgement::NoChange { ratio: 1.0, p: 1.0 });
        assert_eq!(judge(&[f64::NAN; 10], &[1.0; 10]), Judgement::TooFew);
    }
}
