//! Anomaly detection that fits query latencies: robust z-scores on log values, and incidents only after
//! false-positive controls.
//!
//! Latencies are heavy-tailed and drift with the time of day, so the detector works on `ln(1 + x)` and scores each
//! value against the median and the median absolute deviation (MAD) of a sliding window: one spike barely moves
//! either, unlike a mean and a standard deviation. [`AnomalyDetector::detect`] reports the point anomalies of the
//! window (what the M5 milestone asks). What becomes an [`Incident`] — something a repair may act on — goes through
//! [`IncidentTracker`]: a warm-up of `min_samples`, a sustained rule (k anomalous of the last n), hysteresis (an
//! incident closes only after `clear_after` normal values), the baseline frozen during an incident, and a blackout
//! while our own repair runs.
//!
//! ```
//! use ruvector_dag::healing::{AnomalyConfig, AnomalyDetector};
//! let mut detector = AnomalyDetector::new(AnomalyConfig { z_threshold: 3.0, window_size: 100 });
//! for _ in 0..99 {
//!     detector.observe(1.0);
//! }
//! detector.observe(100.0);
//! let anomalies = detector.detect();
//! assert_eq!(anomalies.len(), 1);
//! assert!(anomalies[0].z_score > 3.0);
//! ```

use std::collections::VecDeque;

/// Threshold and window of an [`AnomalyDetector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyConfig {
    /// A value whose robust z-score exceeds this is anomalous.
    pub z_threshold: f64,
    /// Observations in the sliding window.
    pub window_size: usize,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig { z_threshold: 3.0, window_size: 100 }
    }
}

/// A point anomaly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anomaly {
    /// Sequence number of the observation (0 = the first ever observed).
    pub index: u64,
    /// The observed value.
    pub value: f64,
    /// Robust z-score: distance from the window's median in (scaled) MADs, on `ln(1 + x)`; positive above.
    pub z_score: f64,
}

/// Robust z-scores over a sliding window.
#[derive(Debug, Clone)]
pub struct AnomalyDetector {
    config: AnomalyConfig,
    /// (sequence number, raw value, log value), oldest first.
    window: VecDeque<(u64, f64, f64)>,
    next: u64,
    scale_floor: f64,
    /// Median and scale of the current window, computed once per change of the window.
    cached: std::cell::Cell<Option<(f64, f64)>>,
}

/// MAD × this estimates the standard deviation of normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

impl AnomalyDetector {
    /// A detector with `config` (a window of at least 3).
    pub fn new(config: AnomalyConfig) -> Self {
        let config = AnomalyConfig { window_size: config.window_size.max(3), ..config };
        AnomalyDetector {
            config,
            window: VecDeque::with_capacity(config.window_size),
            next: 0,
            scale_floor: 0.01,
            cached: std::cell::Cell::new(None),
        }
    }

    /// Smallest scale (in `ln(1 + x)` units) a z-score divides by, so a perfectly flat window does not make every
    /// tiny change infinitely anomalous. Default 0.01 (about a 1% change).
    pub fn with_scale_floor(mut self, floor: f64) -> Self {
        self.scale_floor = floor.max(1e-9);
        self.cached.set(None);
        self
    }

    /// The configuration.
    pub fn config(&self) -> AnomalyConfig {
        self.config
    }

    /// Adds an observation (negative or non-finite values are ignored), dropping the oldest beyond the window.
    pub fn observe(&mut self, value: f64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        if self.window.len() == self.config.window_size {
            self.window.pop_front();
        }
        self.window.push_back((self.next, value, value.ln_1p()));
        self.next += 1;
        self.cached.set(None);
    }

    /// Observations in the window.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// True before the first observation.
    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// Median and scale (MAD × 1.4826, at least the floor) of the window's log values.
    fn center_scale(&self) -> Option<(f64, f64)> {
        if self.window.is_empty() {
            return None;
        }
        if let Some(cs) = self.cached.get() {
            return Some(cs);
        }
        let mut logs: Vec<f64> = self.window.iter().map(|w| w.2).collect();
        let center = median(&mut logs);
        for x in &mut logs {
            *x = (*x - center).abs();
        }
        let mad = median(&mut logs);
        let cs = (center, (MAD_TO_SIGMA * mad).max(self.scale_floor));
        self.cached.set(Some(cs));
        Some(cs)
    }

    /// The robust z-score `value` would have against the current window; `None` for an empty window.
    pub fn score(&self, value: f64) -> Option<f64> {
        let (median, scale) = self.center_scale()?;
        Some((value.max(0.0).ln_1p() - median) / scale)
    }

    /// The point anomalies of the current window: observations whose |z| exceeds the threshold, in order.
    pub fn detect(&self) -> Vec<Anomaly> {
        let Some((median, scale)) = self.center_scale() else { return Vec::new() };
        self.window
            .iter()
            .map(|&(index, value, log)| Anomaly { index, value, z_score: (log - median) / scale })
            .filter(|a| a.z_score.abs() > self.config.z_threshold)
            .collect()
    }
}

/// Median by selection (linear time; reorders `v`). The healing module's one median.
pub(super) fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    let (low, &mut upper, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 { upper } else { (low.iter().copied().fold(f64::NEG_INFINITY, f64::max) + upper) / 2.0 }
}

/// Which side of the baseline is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// High values (latency, error rate, memory).
    Above,
    /// Low values (throughput, hit rate).
    Below,
    /// Both.
    Both,
}

/// The false-positive controls between point anomalies and incidents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncidentPolicy {
    /// Observations before anything is judged (the warm-up).
    pub min_samples: usize,
    /// An incident opens when `sustained_k` of the last `sustained_n` observations are anomalous.
    pub sustained_k: usize,
    /// See `sustained_k`.
    pub sustained_n: usize,
    /// An open incident closes after this many consecutive normal observations.
    pub clear_after: usize,
    /// Which side is bad.
    pub direction: Direction,
}

impl Default for IncidentPolicy {
    fn default() -> Self {
        IncidentPolicy {
            min_samples: 30,
            sustained_k: 5,
            sustained_n: 10,
            clear_after: 10,
            direction: Direction::Above,
        }
    }
}

/// A sustained anomaly: what a repair may act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Sequence number of the observation that opened it.
    pub opened_at: u64,
    /// Of the one that closed it, while closed.
    pub closed_at: Option<u64>,
    /// Largest |z| seen during it.
    pub peak_z: f64,
    /// Median of the frozen baseline, in the signal's units.
    pub baseline: f64,
}

/// Where a tracker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerState {
    /// Fewer than `min_samples` observations: nothing is judged yet.
    WarmingUp,
    /// Watching.
    Normal,
    /// An incident is open; the baseline is frozen.
    Incident,
    /// Our own repair runs: observations are ignored.
    Blackout,
}

/// Turns a signal's observations into incidents, with the controls of [`IncidentPolicy`].
#[derive(Debug, Clone)]
pub struct IncidentTracker {
    baseline: AnomalyDetector,
    policy: IncidentPolicy,
    recent: VecDeque<bool>,
    normal_run: usize,
    blackout: usize,
    seen: u64,
    open: Option<Incident>,
    incidents: Vec<Incident>,
    suppressed: usize,
}

impl IncidentTracker {
    /// A tracker scoring against `config` with the default policy.
    pub fn new(config: AnomalyConfig) -> Self {
        Self::with_policy(config, IncidentPolicy::default())
    }

    /// A tracker with an explicit policy.
    pub fn with_policy(config: AnomalyConfig, policy: IncidentPolicy) -> Self {
        IncidentTracker {
            baseline: AnomalyDetector::new(config),
            policy,
            recent: VecDeque::with_capacity(policy.sustained_n.max(1)),
            normal_run: 0,
            blackout: 0,
            seen: 0,
            open: None,
            incidents: Vec::new(),
            suppressed: 0,
        }
    }

    /// Scores against a baseline whose scale is at least `floor` (in `ln(1 + x)` units; see
    /// [`AnomalyDetector::with_scale_floor`]): for signals where only large changes matter, e.g. memory.
    pub fn with_scale_floor(mut self, floor: f64) -> Self {
        self.baseline = self.baseline.with_scale_floor(floor);
        self
    }

    /// Ignores the next `observations` (our own repair is running and will disturb the signal).
    pub fn blackout(&mut self, observations: usize) {
        self.blackout = self.blackout.max(observations);
    }

    /// Where the tracker stands.
    pub fn state(&self) -> TrackerState {
        if self.blackout > 0 {
            TrackerState::Blackout
        } else if self.open.is_some() {
            TrackerState::Incident
        } else if self.baseline.len() < self.policy.min_samples {
            TrackerState::WarmingUp
        } else {
            TrackerState::Normal
        }
    }

    /// The open incident, if any.
    pub fn open_incident(&self) -> Option<&Incident> {
        self.open.as_ref()
    }

    /// Closed incidents, oldest first.
    pub fn closed_incidents(&self) -> &[Incident] {
        &self.incidents
    }

    /// Observations that were anomalous but did not make an incident (isolated spikes, flapping).
    pub fn suppressed(&self) -> usize {
        self.suppressed
    }

    /// Observations seen so far (including ignored ones): the sequence number of the next.
    pub fn observed(&self) -> u64 {
        self.seen
    }

    /// Counts an observation without judging it (a known-benign one).
    pub fn skip(&mut self) {
        self.seen += 1;
    }

    /// Median of the baseline window in the signal's units (`None` before the first observation).
    pub fn baseline_median(&self) -> Option<f64> {
        self.baseline.center_scale().map(|(median, _)| median.exp_m1())
    }

    /// The z-score threshold.
    pub fn threshold(&self) -> f64 {
        self.baseline.config().z_threshold
    }

    /// Feeds one observation; returns the incident when this observation opened one.
    pub fn observe(&mut self, value: f64) -> Option<Incident> {
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        let seq = self.seen;
        self.seen += 1;
        if self.blackout > 0 {
            self.blackout -= 1;
            return None;
        }
        if self.baseline.len() < self.policy.min_samples {
            self.baseline.observe(value);
            return None;
        }
        let z = self.baseline.score(value).unwrap_or(0.0);
        let threshold = self.baseline.config().z_threshold;
        let anomalous = match self.policy.direction {
            Direction::Above => z > threshold,
            Direction::Below => z < -threshold,
            Direction::Both => z.abs() > threshold,
        };
        if let Some(open) = &mut self.open {
            // The baseline stays frozen: the incident is judged against what was normal before it.
            if anomalous {
                open.peak_z = open.peak_z.max(z.abs());
                self.normal_run = 0;
            } else {
                self.normal_run += 1;
                if self.normal_run >= self.policy.clear_after {
                    let mut done = self.open.take().expect("open");
                    done.closed_at = Some(seq);
                    self.incidents.push(done);
                    self.recent.clear();
                    self.normal_run = 0;
                }
            }
            return None;
        }
        if self.recent.len() == self.policy.sustained_n.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(anomalous);
        let count = self.recent.iter().filter(|a| **a).count();
        if count >= self.policy.sustained_k.max(1) {
            let (median, _) = self.baseline.center_scale().expect("warmed up");
            let incident = Incident { opened_at: seq, closed_at: None, peak_z: z.abs(), baseline: median.exp_m1() };
            self.open = Some(incident.clone());
            self.normal_run = 0;
            return Some(incident);
        }
        if anomalous {
            self.suppressed += 1;
        } else {
            // Only normal values move the baseline: spikes never teach it that spikes are normal.
            self.baseline.observe(value);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::generator::SplitMix64;

    #[test]
    fn a_flat_window_still_scores_a_spike_finitely() {
        let mut d = AnomalyDetector::new(AnomalyConfig::default());
        for _ in 0..99 {
            d.observe(1.0);
        }
        d.observe(100.0);
        let a = d.detect();
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].index, a[0].value), (99, 100.0));
        assert!(a[0].z_score.is_finite() && a[0].z_score > 3.0);
        assert!(d.detect().iter().all(|x| x.index == 99));
    }

    #[test]
    fn the_window_slides_and_bad_values_are_ignored() {
        let mut d = AnomalyDetector::new(AnomalyConfig { z_threshold: 3.0, window_size: 10 });
        d.observe(1000.0);
        for _ in 0..10 {
            d.observe(5.0);
        }
        d.observe(f64::NAN);
        d.observe(-1.0);
        assert_eq!(d.len(), 10);
        assert!(d.detect().is_empty(), "the spike slid out of the window");
    }

    /// 24 hours of per-second latencies: log-normal noise, a daily cycle (±30%) and an isolated 10× spike about
    /// every 1000 s. With default settings nothing of this is an incident.
    #[test]
    fn a_day_of_noisy_latencies_with_isolated_spikes_records_no_incident() {
        let mut rng = SplitMix64::new(42);
        let mut t = IncidentTracker::new(AnomalyConfig::default());
        let mut spikes = 0;
        for s in 0..86_400u64 {
            let cycle = 1.0 + 0.3 * (2.0 * std::f64::consts::PI * s as f64 / 86_400.0).sin();
            let mut v = 20.0 * cycle * (0.2 * rng.normal()).exp();
            if rng.below(1000) == 0 {
                v *= 10.0;
                spikes += 1;
            }
            assert_eq!(t.observe(v), None, "false incident at second {s}");
        }
        assert!(spikes > 50);
        assert!(t.suppressed() >= spikes, "the spikes were seen and suppressed");
        assert!(t.closed_incidents().is_empty());
    }

    #[test]
    fn a_sustained_level_shift_opens_one_incident_within_the_sustained_window_and_closes_with_hysteresis() {
        let mut rng = SplitMix64::new(3);
        let mut t = IncidentTracker::new(AnomalyConfig::default());
        assert_eq!(t.state(), TrackerState::WarmingUp);
        for _ in 0..200 {
            t.observe(20.0 * (0.2 * rng.normal()).exp());
        }
        assert_eq!(t.state(), TrackerState::Normal);
        let shift_at = 200;
        let mut opened = None;
        for i in 0..100 {
            if let Some(incident) = t.observe(60.0 * (0.2 * rng.normal()).exp()) {
                assert!(opened.is_none(), "one incident, not one per anomalous value");
                opened = Some((i, incident));
            }
        }
        let (after, incident) = opened.expect("the 3x shift is an incident");
        assert!(after < IncidentPolicy::default().sustained_n, "opened {after} values after the shift");
        assert_eq!(incident.opened_at, shift_at + after as u64);
        assert!((incident.baseline - 20.0).abs() < 3.0, "the baseline is the level before: {}", incident.baseline);
        assert_eq!(t.state(), TrackerState::Incident);
        // Back to normal: closes only after clear_after normal values.
        for i in 0..IncidentPolicy::default().clear_after {
            assert_eq!(t.state(), TrackerState::Incident, "closed too early, after {i}");
            t.observe(20.0);
        }
        assert_eq!(t.state(), TrackerState::Normal);
        assert_eq!(t.closed_incidents().len(), 1);
    }

    #[test]
    fn a_shift_during_our_own_repair_is_not_an_incident() {
        let mut t = IncidentTracker::new(AnomalyConfig::default());
        for _ in 0..100 {
            t.observe(20.0);
        }
        t.blackout(30);
        assert_eq!(t.state(), TrackerState::Blackout);
        for _ in 0..30 {
            assert_eq!(t.observe(200.0), None);
        }
        assert_eq!(t.state(), TrackerState::Normal);
        assert!(t.open_incident().is_none());
    }

    #[test]
    fn throughput_drops_are_watched_below() {
        let policy = IncidentPolicy { direction: Direction::Below, ..IncidentPolicy::default() };
        let mut t = IncidentTracker::with_policy(AnomalyConfig::default(), policy);
        for _ in 0..100 {
            t.observe(1000.0);
        }
        assert!((0..10).all(|_| t.observe(5000.0).is_none()), "more throughput is not an incident");
        let opened = (0..10).filter_map(|_| t.observe(100.0)).count();
        assert_eq!(opened, 1);
    }
}
