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

/// A significant slowdown of statistics' queries beyond this ratio (after/before) reverts them: kept on a fixed
/// estimate alone, statistics must not cost a real regression (not a few per cent of drift).
pub const REGRESSION: f64 = 1.2;

/// One execution of a query the change applies to: its latency (ms) and its plan's structural fingerprint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    /// Execution time, ms.
    pub ms: f64,
    /// Structural fingerprint of the plan it ran (operators, relations, indexes, edges; not estimates).
    pub plan: u64,
}

/// The latencies of `runs`, in order.
pub fn latencies(runs: &[Timed]) -> Vec<f64> {
    runs.iter().map(|t| t.ms).collect()
}

/// What validating extended statistics decides, and on what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatisticsVerdict {
    /// Keep the statistics.
    Keep(StatisticsWhy),
    /// Drop them.
    Revert(StatisticsWhy),
    /// Decide on a later look: the validation window is still open.
    Wait,
}

/// The ground of a [`StatisticsVerdict`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatisticsWhy {
    /// A plan changed and the queries ran significantly slower, beyond [`REGRESSION`].
    Regression {
        /// Geometric mean after / before.
        ratio: f64,
        /// Two-sided p-value.
        p: f64,
    },
    /// The estimate is no longer at least 2× closer to the actual rows.
    NotFixed,
    /// A plan changed and the queries ran significantly faster.
    Faster {
        /// Geometric mean after / before.
        ratio: f64,
        /// Two-sided p-value.
        p: f64,
    },
    /// A plan changed; the queries ran neither significantly faster nor slower beyond [`REGRESSION`]; the estimate
    /// is fixed.
    NoRegression {
        /// Geometric mean after / before.
        ratio: f64,
        /// Two-sided p-value.
        p: f64,
    },
    /// Every execution after ran a plan one before had run: the statistics changed no plan, so a latency
    /// difference is not theirs (a vacuum, a checkpoint, another backend); the estimate is fixed.
    SamePlans {
        /// Geometric mean after / before, for the record only.
        ratio: f64,
    },
    /// Too few executions on a side to time; the estimate is fixed.
    TooFew,
}

/// Judges extended statistics from their queries' executions before and after, whether the estimate is `fixed`
/// (at least 2× closer to the actual rows) and whether the validation window has `expired`.
///
/// Statistics act only through the planner's choices. When every execution after them ran a plan some execution
/// before had run, they changed no plan and did no work of their own at execution: latencies are not judged (on a
/// shared machine the same plan's latency moved by 1.3× between two batches of ten, significantly for the rank
/// test). When a plan changed: a significant slowdown beyond [`REGRESSION`] reverts them at once, a significant
/// speed-up keeps them at once. Otherwise they are kept at the end of the window on a fixed estimate, and reverted
/// at once when the estimate is not fixed.
///
/// ```
/// use ruvector_dag::advisor::{StatisticsVerdict::*, StatisticsWhy, Timed, judge_statistics};
/// let run = |ms: f64, plan: u64| Timed { ms, plan };
/// let before: Vec<Timed> = (0..10).map(|i| run(20.0 + f64::from(i), 1)).collect();
/// // The same seq scan, 1.3x slower (something else ran beside it): not the statistics' doing.
/// let after: Vec<Timed> = (0..10).map(|i| run(26.0 + f64::from(i), 1)).collect();
/// assert!(matches!(judge_statistics(&before, &after, true, true), Keep(StatisticsWhy::SamePlans { .. })));
/// // A new plan, 1.3x slower: reverted.
/// let after: Vec<Timed> = after.iter().map(|t| run(t.ms, 2)).collect();
/// assert!(matches!(judge_statistics(&before, &after, true, false), Revert(StatisticsWhy::Regression { .. })));
/// ```
pub fn judge_statistics(before: &[Timed], after: &[Timed], fixed: bool, expired: bool) -> StatisticsVerdict {
    use StatisticsVerdict::{Keep, Revert, Wait};
    let judgement = judge(&latencies(before), &latencies(after));
    let plans_before: std::collections::HashSet<u64> = before.iter().map(|t| t.plan).collect();
    let plan_changed = after.iter().any(|t| !plans_before.contains(&t.plan));
    match judgement {
        Judgement::Slower { ratio, p } if plan_changed && ratio > REGRESSION => {
            Revert(StatisticsWhy::Regression { ratio, p })
        }
        _ if !fixed => Revert(StatisticsWhy::NotFixed),
        Judgement::Faster { ratio, p } if plan_changed => Keep(StatisticsWhy::Faster { ratio, p }),
        _ if !expired => Wait,
        Judgement::TooFew => Keep(StatisticsWhy::TooFew),
        Judgement::Slower { ratio, .. } | Judgement::Faster { ratio, .. } | Judgement::NoChange { ratio, .. }
            if !plan_changed =>
        {
            Keep(StatisticsWhy::SamePlans { ratio })
        }
        Judgement::Slower { ratio, p } | Judgement::Faster { ratio, p } | Judgement::NoChange { ratio, p } => {
            Keep(StatisticsWhy::NoRegression { ratio, p })
        }
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

    fn runs(rng: &mut SplitMix64, median: f64, plan: u64) -> Vec<Timed> {
        lognormal(rng, median, 10).into_iter().map(|ms| Timed { ms, plan }).collect()
    }

    #[test]
    fn statistics_that_change_no_plan_are_not_judged_on_latency() {
        use StatisticsVerdict::{Keep, Revert, Wait};
        let mut rng = SplitMix64::new(5);
        let before = runs(&mut rng, 20.0, 1);
        // The same plan, 1.5x slower (a vacuum ran beside it): kept on the fixed estimate, at the window's end.
        let slower = runs(&mut rng, 30.0, 1);
        assert!(matches!(judge(&latencies(&before), &latencies(&slower)), Judgement::Slower { .. }));
        assert_eq!(judge_statistics(&before, &slower, true, false), Wait);
        assert!(matches!(
            judge_statistics(&before, &slower, true, true),
            Keep(StatisticsWhy::SamePlans { ratio }) if ratio > REGRESSION
        ));
        // Faster on the same plan is no gain of theirs either: no early keep.
        let faster = runs(&mut rng, 5.0, 1);
        assert_eq!(judge_statistics(&before, &faster, true, false), Wait);
        // The estimate not fixed reverts them whatever the plans.
        assert_eq!(judge_statistics(&before, &slower, false, false), Revert(StatisticsWhy::NotFixed));
    }

    #[test]
    fn statistics_that_change_a_plan_are_judged_on_latency() {
        use StatisticsVerdict::{Keep, Revert, Wait};
        let mut rng = SplitMix64::new(9);
        let before = runs(&mut rng, 20.0, 1);
        let slower = runs(&mut rng, 30.0, 2);
        assert!(matches!(
            judge_statistics(&before, &slower, true, false),
            Revert(StatisticsWhy::Regression { ratio, p }) if ratio > REGRESSION && p < ALPHA
        ));
        let faster = runs(&mut rng, 5.0, 2);
        assert!(matches!(judge_statistics(&before, &faster, true, false), Keep(StatisticsWhy::Faster { .. })));
        // One execution on a new plan is enough to count as a changed plan.
        let mut mixed = runs(&mut rng, 30.0, 1);
        mixed[3].plan = 2;
        assert!(matches!(judge_statistics(&before, &mixed, true, false), Revert(StatisticsWhy::Regression { .. })));
        // A slowdown within REGRESSION is kept at the window's end; so is no change.
        let drift: Vec<Timed> = before.iter().map(|t| Timed { ms: t.ms * 1.1 + 0.5, plan: 2 }).collect();
        assert_eq!(judge_statistics(&before, &drift, true, false), Wait);
        assert!(matches!(judge_statistics(&before, &drift, true, true), Keep(StatisticsWhy::NoRegression { .. })));
        assert_eq!(judge_statistics(&before[..3], &drift, true, true), Keep(StatisticsWhy::TooFew));
    }
}
