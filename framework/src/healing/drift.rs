//! Learning drift: where a learning metric's recent history is heading.
//!
//! Each metric is a series of values, one per learning cycle, oldest first. Its baseline is the median of the
//! window's first half, its trend the least-squares slope over the window: a metric drifts when the slope, over
//! the window, moves it by more than a tenth of its baseline (or by 0.02 when the baseline is near zero) in its bad
//! direction.

/// Which way is good for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Higher is better (pattern quality, steered improvement).
    Higher,
    /// Lower is better (stale patterns).
    Lower,
    /// Neither: growth is reported, not judged (EWC task count).
    Neither,
}

/// Where a metric is heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    /// Fewer than four values.
    InsufficientData,
    /// No change beyond the tolerance.
    Stable,
    /// Moving the good way.
    Improving,
    /// Moving the bad way: drift.
    Degrading,
    /// Moving, for a metric with no good direction.
    Rising,
    /// Moving down, for a metric with no good direction.
    Falling,
}

impl Trend {
    /// Lower-case name, as SQL shows it.
    pub fn name(self) -> &'static str {
        match self {
            Trend::InsufficientData => "insufficient data",
            Trend::Stable => "stable",
            Trend::Improving => "improving",
            Trend::Degrading => "degrading",
            Trend::Rising => "rising",
            Trend::Falling => "falling",
        }
    }
}

/// A metric's drift over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drift {
    /// The newest value.
    pub current: f64,
    /// Median of the window's first half.
    pub baseline: f64,
    /// (current − baseline) / |baseline| (absolute difference when the baseline is near zero).
    pub magnitude: f64,
    /// Least-squares slope per cycle.
    pub slope: f64,
    /// The judgement.
    pub trend: Trend,
}

/// The drift of `values` (oldest first; non-finite values are left out). `None` for an empty series.
pub fn drift(values: &[f64], better: Better) -> Option<Drift> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let current = *v.last()?;
    let baseline = super::anomaly::median(&mut v[..v.len().div_ceil(2)].to_vec());
    let n = v.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = v.iter().sum::<f64>() / n;
    let (sxy, sxx) = v.iter().enumerate().fold((0.0, 0.0), |(sxy, sxx), (i, y)| {
        let dx = i as f64 - mean_x;
        (sxy + dx * (y - mean_y), sxx + dx * dx)
    });
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let near_zero = baseline.abs() < 0.2;
    let magnitude = if near_zero { current - baseline } else { (current - baseline) / baseline.abs() };
    let tolerance = if near_zero { 0.02 } else { 0.1 * baseline.abs() };
    let moved = slope * (n - 1.0);
    let trend = if v.len() < 4 {
        Trend::InsufficientData
    } else if moved.abs() <= tolerance {
        Trend::Stable
    } else {
        match (better, moved > 0.0) {
            (Better::Higher, true) | (Better::Lower, false) => Trend::Improving,
            (Better::Higher, false) | (Better::Lower, true) => Trend::Degrading,
            (Better::Neither, true) => Trend::Rising,
            (Better::Neither, false) => Trend::Falling,
        }
    };
    Some(Drift { current, baseline, magnitude, slope, trend })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_falling_quality_is_degrading_and_a_flat_one_stable() {
        let falling: Vec<f64> = (0..20).map(|i| 0.6 - 0.01 * f64::from(i)).collect();
        let d = drift(&falling, Better::Higher).unwrap();
        assert_eq!(d.trend, Trend::Degrading);
        assert!((d.slope + 0.01).abs() < 1e-12);
        assert_eq!(d.current, 0.41);
        assert!((d.baseline - 0.555).abs() < 1e-9, "{}", d.baseline);
        assert!(d.magnitude < -0.2);
        let noisy_flat: Vec<f64> = (0..20).map(|i| 0.5 + if i % 2 == 0 { 0.01 } else { -0.01 }).collect();
        assert_eq!(drift(&noisy_flat, Better::Higher).unwrap().trend, Trend::Stable);
    }

    #[test]
    fn directions_and_small_series() {
        let rising: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(drift(&rising, Better::Lower).unwrap().trend, Trend::Degrading);
        assert_eq!(drift(&rising, Better::Higher).unwrap().trend, Trend::Improving);
        assert_eq!(drift(&rising, Better::Neither).unwrap().trend, Trend::Rising);
        assert_eq!(drift(&[1.0, 2.0, 3.0], Better::Higher).unwrap().trend, Trend::InsufficientData);
        assert_eq!(drift(&[], Better::Higher), None);
        assert_eq!(drift(&[f64::NAN], Better::Higher), None);
        // Near zero, changes are absolute.
        let d = drift(&[0.0, 0.0, 0.0, 0.0, 0.1], Better::Lower).unwrap();
        assert_eq!((d.magnitude, d.trend), (0.1, Trend::Degrading));
    }
}
