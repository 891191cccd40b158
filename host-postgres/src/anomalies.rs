//! Anomalies of the captured workload (latency per class and overall, throughput, error rate), detected by the
//! learner worker as it drains executions (every
//! second) and recorded in `ruvector.dag_anomalies`.
//!
//! Each query class has an `IncidentTracker` (robust z on log-latency against a rolling median/MAD baseline, with
//! warm-up, k-of-n, hysteresis and a frozen baseline during an incident: `ruvector_dag::healing`), fed with every
//! execution during warm-up and then with about 16 per drain (every n-th, n from the previous drain's count, so a
//! shift in mid-drain is seen in that drain); one more tracks the whole workload as the geometric mean, per drain,
//! of each judged execution's latency over its class's baseline median (a change of workload mix is not a
//! slowdown). Two more follow the workload's rates per window of at least a second: throughput (captured
//! executions per second, judged when it falls) and error rate (executions whose transaction aborted while they
//! ran — errors, cancels, timeouts, counted by the hooks at abort — over all, judged when it rises, in windows of
//! at least 10 statements). Known-benign observations are not judged: executions under a steering arm
//! (the learner's own experiment) and everything while self-healing runs a repair (its I/O is ours). An incident
//! opened is written at once (reported within about a second of the execution that completed it) and marked
//! resolved when it clears.

use dag::healing::{AnomalyConfig, Direction, Incident, IncidentPolicy, IncidentTracker, TrackerState};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};

/// Query classes tracked at most (the others are not judged until the worker restarts).
const MAX_CLASSES: usize = 10_000;
/// Executions of one class judged per drain (about a second), about, once it is warmed up: a class running
/// thousands of times a second needs no more to show a sustained shift, and the worker's cost stays bounded by
/// the number of classes.
const PER_DRAIN: u32 = 16;
/// Severity boundary on the incident's peak |z|.
const CRITICAL_Z: f64 = 6.0;

/// What happened to an incident since the last flush.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Opened { key: i64, z: f64, baseline_ms: f64, observed_ms: f64, detail: String },
    Resolved { key: i64, z: f64 },
}

/// The worker's latency trackers.
#[derive(Debug, Default)]
pub(crate) struct Monitor {
    classes: FxHashMap<u64, IncidentTracker>,
    global: Option<IncidentTracker>,
    /// Per drain: sum of ln(latency / class median) and count, for the global signal.
    drain_log_ratio: (f64, u32),
    events: Vec<Event>,
    /// Skipped observations (steered executions, repairs running).
    pub(crate) skipped: u64,
    /// Executions per class in the current drain.
    per_drain: FxHashMap<u64, u32>,
    /// Per class, every how many executions one is judged: from the previous drain's count, so that about
    /// `PER_DRAIN` spread over the whole drain are (a shift in mid-drain is seen in that drain).
    stride: FxHashMap<u64, u32>,
    /// The workload's rates, judged per window of at least a second.
    rates: Rates,
}

/// Throughput, error rate, pattern hit rate and memory, per window of at least [`RATE_WINDOW`].
#[derive(Debug, Default)]
struct Rates {
    /// When the current window started, and the counters then.
    window: Option<(Instant, Counters)>,
    /// Executions captured in the current window.
    executions: u64,
    throughput: Option<IncidentTracker>,
    errors: Option<IncidentTracker>,
    hits: Option<IncidentTracker>,
    memory: Option<IncidentTracker>,
}

/// Counters the worker reads at the end of a rate window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    /// Captured executions that aborted while they ran, since the server started.
    pub(crate) aborted: u64,
    /// The learner's pattern hits and misses (executions that joined an existing pattern, that started one).
    pub(crate) pattern_hits: (u64, u64),
    /// The worker's private resident memory, in bytes.
    pub(crate) memory: Option<u64>,
}

/// The shortest window a rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Windows with fewer statements (observations) than this do not judge a ratio (one failure of two is no rate).
const MIN_STATEMENTS: u64 = 10;
/// The memory signal's smallest scale, in `ln(1 + MB)`: an incident needs memory about 1.5x its usual level (the
/// learned state grows as patterns accumulate; a step of a few percent is no leak).
const MEMORY_SCALE_FLOOR: f64 = 0.1;

/// The keys of the whole-workload rate signals in `dag_anomalies.query_id`.
const THROUGHPUT: i64 = -1;
const ERROR_RATE: i64 = -2;
const PATTERN_HIT_RATE: i64 = -3;
const MEMORY: i64 = -4;

/// The learner worker's private resident memory (resident minus shared pages: shared buffers it touched are not
/// its own), from `/proc/self/statm`.
pub(crate) fn private_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().skip(1).map(|f| f.parse::<u64>().ok());
    let (resident, shared) = (fields.next()??, fields.next()??);
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some(resident.saturating_sub(shared) * page)
}

/// A tracker of a per-second workload signal: a minute of warm-up, then 5 bad seconds of 10 open an incident.
fn per_second(direction: Direction) -> IncidentTracker {
    IncidentTracker::with_policy(
        AnomalyConfig::default(),
        IncidentPolicy { min_samples: 60, direction, ..Default::default() },
    )
}

/// Feeds `value` to `tracker` and records, for `key`, the incident it opened (described by `detail`) or the one
/// it closed.
fn feed(
    tracker: &mut IncidentTracker,
    key: i64,
    value: f64,
    events: &mut Vec<Event>,
    detail: impl FnOnce(&Incident) -> String,
) {
    let was_open = tracker.open_incident().is_some();
    if let Some(incident) = tracker.observe(value) {
        events.push(Event::Opened {
            key,
            z: incident.peak_z,
            baseline_ms: incident.baseline,
            observed_ms: value,
            detail: detail(&incident),
        });
    } else if was_open && tracker.open_incident().is_none() {
        let z = tracker.closed_incidents().last().map_or(0.0, |i| i.peak_z);
        events.push(Event::Resolved { key, z });
    }
}

/// The key of the whole-workload signal in `dag_anomalies.query_id`.
const GLOBAL: i64 = 0;

impl Monitor {
    /// One captured execution of class `query_id` (native plan when `arm == 0`); `quiet` while our own repair
    /// runs.
    pub(crate) fn observe(&mut self, query_id: u64, arm: u8, execution_ms: f64, quiet: bool) {
        self.rates.executions += 1;
        if quiet || arm != 0 {
            self.skipped += 1;
            if let Some(t) = self.classes.get_mut(&query_id) {
                t.skip();
            }
            return;
        }
        let seen = self.per_drain.entry(query_id).or_default();
        *seen += 1;
        let judged = (*seen - 1).is_multiple_of(self.stride.get(&query_id).copied().unwrap_or(1));
        if self.classes.len() >= MAX_CLASSES && !self.classes.contains_key(&query_id) {
            return;
        }
        let tracker = self.classes.entry(query_id).or_insert_with(|| IncidentTracker::new(AnomalyConfig::default()));
        // Warm-up takes every execution: a baseline as soon as possible.
        if !judged && tracker.state() != TrackerState::WarmingUp {
            return;
        }
        let baseline = tracker.baseline_median();
        feed(tracker, query_id as i64, execution_ms, &mut self.events, |incident| {
            format!(
                "query class {query_id}: executions {:.1}x slower than its median {:.3} ms",
                execution_ms / incident.baseline.max(1e-9),
                incident.baseline
            )
        });
        if let Some(median) = baseline.filter(|m| *m > 0.0 && execution_ms > 0.0) {
            self.drain_log_ratio.0 += (execution_ms / median).ln();
            self.drain_log_ratio.1 += 1;
        }
    }

    /// Ends a drain: feeds the whole-workload signal (when the drain had judged executions).
    pub(crate) fn end_drain(&mut self) {
        self.stride = self.per_drain.drain().map(|(class, n)| (class, n.div_ceil(PER_DRAIN).max(1))).collect();
        let (sum, n) = std::mem::take(&mut self.drain_log_ratio);
        if n == 0 {
            return;
        }
        let ratio = (sum / f64::from(n)).exp();
        let global = self.global.get_or_insert_with(|| per_second(Direction::Above));
        feed(global, GLOBAL, ratio, &mut self.events, |incident| {
            format!("all queries: {ratio:.2}x their classes' median latency (normally {:.2}x)", incident.baseline)
        });
    }

    /// Ends a rate window when it is at least [`RATE_WINDOW`] old at `now`, judging the window by the change of
    /// `counters`: throughput (captured executions per second, judged low); over windows of at least
    /// [`MIN_STATEMENTS`], the error rate (aborted ÷ all statements, judged high) and the pattern hit rate (hits ÷
    /// learned executions, judged low); and the worker's memory (judged high, only on large changes). Nothing is
    /// judged before the first execution, and nothing while `quiet` (our own repair runs).
    /// `counters` is read only when a window starts or ends.
    pub(crate) fn end_window(&mut self, now: Instant, counters: impl FnOnce() -> Counters, quiet: bool) {
        let r = &mut self.rates;
        let Some((start, then)) = r.window else {
            if r.executions > 0 {
                r.window = Some((now, counters()));
                r.executions = 0;
            }
            return;
        };
        let seconds = now.duration_since(start);
        if seconds < RATE_WINDOW {
            return;
        }
        let counters = counters();
        let executions = std::mem::take(&mut r.executions);
        r.window = Some((now, counters));
        if quiet {
            return;
        }
        let events = &mut self.events;
        let rate_per_s = executions as f64 / seconds.as_secs_f64();
        let throughput = r.throughput.get_or_insert_with(|| per_second(Direction::Below));
        feed(throughput, THROUGHPUT, rate_per_s, events, |incident| {
            format!("all queries: {rate_per_s:.1} executions per second (normally {:.1})", incident.baseline)
        });
        let failed = counters.aborted.saturating_sub(then.aborted);
        let statements = executions + failed;
        if statements >= MIN_STATEMENTS {
            let rate = failed as f64 / statements as f64;
            let errors = r.errors.get_or_insert_with(|| per_second(Direction::Above));
            feed(errors, ERROR_RATE, rate, events, |incident| {
                format!(
                    "all queries: {:.1}% of executions failed ({failed} of {statements}; normally {:.1}%)",
                    rate * 100.0,
                    incident.baseline * 100.0
                )
            });
        }
        let hits = counters.pattern_hits.0.saturating_sub(then.pattern_hits.0);
        let learned = hits + counters.pattern_hits.1.saturating_sub(then.pattern_hits.1);
        if learned >= MIN_STATEMENTS {
            let rate = hits as f64 / learned as f64;
            let tracker = r.hits.get_or_insert_with(|| per_second(Direction::Below));
            feed(tracker, PATTERN_HIT_RATE, rate, events, |incident| {
                format!(
                    "learned patterns matched {:.1}% of executions ({hits} of {learned}; normally {:.1}%): the \
                     workload moved away from what was learned",
                    rate * 100.0,
                    incident.baseline * 100.0
                )
            });
        }
        if let Some(bytes) = counters.memory {
            let mb = bytes as f64 / (1u64 << 20) as f64;
            let tracker =
                r.memory.get_or_insert_with(|| per_second(Direction::Above).with_scale_floor(MEMORY_SCALE_FLOOR));
            feed(tracker, MEMORY, mb, events, |incident| {
                format!("learner worker: {mb:.0} MB private memory (normally {:.0} MB)", incident.baseline)
            });
        }
    }

    /// Classes per tracker state, for status reports.
    pub(crate) fn states(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for t in self.classes.values() {
            n[match t.state() {
                TrackerState::WarmingUp => 0,
                TrackerState::Normal => 1,
                TrackerState::Incident => 2,
                TrackerState::Blackout => 3,
            }] += 1;
        }
        n
    }

    /// Writes the incidents opened and resolved since the last flush.
    pub(crate) fn flush(&mut self) {
        if self.events.is_empty() || !BackgroundWorker::transaction(crate::learner::extension_installed) {
            self.events.clear();
            return;
        }
        let events = std::mem::take(&mut self.events);
        BackgroundWorker::transaction(|| {
            for e in &events {
                let r = match e {
                    Event::Opened { key, z, baseline_ms, observed_ms, detail } => {
                        let (kind, component) = match *key {
                            GLOBAL => ("latency", "all queries".to_owned()),
                            THROUGHPUT => ("throughput", "all queries".to_owned()),
                            ERROR_RATE => ("error_rate", "all queries".to_owned()),
                            PATTERN_HIT_RATE => ("pattern_hit_rate", "learner".to_owned()),
                            MEMORY => ("memory", "learner worker".to_owned()),
                            class => ("latency", format!("query class {class}")),
                        };
                        log!("ruvector_dag_learner: {kind} anomaly: {detail} (z = {z:.1})");
                        Spi::run_with_args(
                            "INSERT INTO ruvector.dag_anomalies
                                 (anomaly_type, severity, affected_component, query_id, z_score, baseline, observed, detail)
                             VALUES ($8, $1, $2, $3, $4, $5, $6, $7)",
                            &[
                                (if *z >= CRITICAL_Z { "critical" } else { "warning" }).into(),
                                component.into(),
                                (*key).into(),
                                (*z).into(),
                                (*baseline_ms).into(),
                                (*observed_ms).into(),
                                detail.as_str().into(),
                                kind.into(),
                            ],
                        )
                    }
                    Event::Resolved { key, z } => Spi::run_with_args(
                        "UPDATE ruvector.dag_anomalies SET resolved = true, resolved_at = now(),
                             z_score = greatest(z_score, $2)
                         WHERE query_id = $1 AND NOT resolved",
                        &[(*key).into(), (*z).into()],
                    ),
                };
                if let Err(e) = r {
                    warning!("ruvector_dag_learner: recording a latency anomaly: {e}");
                }
            }
        });
    }
}

extension_sql!(
    r#"
-- Latency incidents the learner worker detected (sustained, past warm-up; isolated spikes are not recorded).
CREATE TABLE dag_anomalies (
    anomaly_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_at timestamptz NOT NULL DEFAULT now(),
    anomaly_type text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('warning', 'critical')),
    affected_component text NOT NULL,
    query_id bigint NOT NULL,
    z_score float8 NOT NULL,
    baseline float8,
    observed float8,
    resolved boolean NOT NULL DEFAULT false,
    resolved_at timestamptz,
    detail text
);
CREATE INDEX ON dag_anomalies (detected_at);

-- Anomalies detected in time_range (default: the last hour), and any still open.
CREATE FUNCTION dag_anomalies(time_range tstzrange DEFAULT NULL)
RETURNS TABLE (anomaly_id bigint, detected_at timestamptz, anomaly_type text, severity text,
               affected_component text, z_score float8, resolved boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.anomaly_id, a.detected_at, a.anomaly_type, a.severity, a.affected_component, a.z_score, a.resolved
    FROM ruvector.dag_anomalies a
    WHERE a.detected_at <@ coalesce(time_range, tstzrange(now() - interval '1 hour', now(), '[]')) OR NOT a.resolved
    ORDER BY a.anomaly_id
$$;
REVOKE EXECUTE ON FUNCTION dag_anomalies(tstzrange) FROM PUBLIC;
"#,
    name = "anomaly_tables"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// One execution in a drain of its own.
    fn one(m: &mut Monitor, class: u64, arm: u8, ms: f64, quiet: bool) {
        m.observe(class, arm, ms, quiet);
        m.end_drain();
    }

    fn opened(m: &Monitor) -> Vec<i64> {
        m.events.iter().filter_map(|e| if let Event::Opened { key, .. } = e { Some(*key) } else { None }).collect()
    }

    #[test]
    fn a_sustained_slowdown_opens_one_incident_and_its_end_resolves_it() {
        let mut m = Monitor::default();
        for i in 0..40 {
            one(&mut m, 7, 0, 2.0 + f64::from(i % 5) * 0.05, false);
        }
        assert!(m.events.is_empty());
        for _ in 0..5 {
            one(&mut m, 7, 0, 50.0, false);
        }
        assert_eq!(opened(&m), [7]);
        let Event::Opened { z, baseline_ms, .. } = m.events[0].clone() else { unreachable!() };
        assert!(z > CRITICAL_Z && (baseline_ms - 2.1).abs() < 0.1, "{z} {baseline_ms}");
        for _ in 0..10 {
            one(&mut m, 7, 0, 2.0, false);
        }
        assert!(matches!(m.events.last(), Some(Event::Resolved { key: 7, .. })));
    }

    #[test]
    fn isolated_spikes_steered_executions_and_our_repairs_open_nothing() {
        let mut m = Monitor::default();
        for i in 0..200 {
            // A spike every 20 executions.
            one(&mut m, 1, 0, if i % 20 == 19 { 80.0 } else { 2.0 }, false);
        }
        for _ in 0..20 {
            one(&mut m, 1, 3, 80.0, false); // under a steering arm
            one(&mut m, 1, 0, 80.0, true); // while a repair runs
        }
        assert!(opened(&m).is_empty(), "{:?}", m.events);
        assert_eq!(m.skipped, 40);
        assert_eq!(m.states(), [0, 1, 0, 0]);
    }

    #[test]
    fn the_whole_workload_signal_ignores_a_change_of_mix() {
        let mut m = Monitor::default();
        // Two classes, 2 ms and 200 ms; after warm-up the mix swings to the slow class without any slowdown.
        for drain in 0..200 {
            let slow_share = if drain < 100 { 1 } else { 9 };
            for j in 0..10 {
                let (class, ms) = if j < slow_share { (2, 200.0) } else { (1, 2.0) };
                m.observe(class, 0, ms, false);
            }
            m.end_drain();
        }
        assert!(opened(&m).is_empty(), "{:?}", m.events);
        // Everything 4x slower for 10 drains: the whole workload is in an incident.
        for _ in 0..10 {
            m.observe(1, 0, 8.0, false);
            m.observe(2, 0, 800.0, false);
            m.end_drain();
        }
        assert!(opened(&m).contains(&GLOBAL), "{:?}", m.events);
    }

    /// `n` windows of a second, each with `executions` executions (of a few classes) and `failed` aborts.
    fn seconds(m: &mut Monitor, clock: &mut (Instant, Counters), n: u32, executions: u32, failed: u64) {
        windows(m, clock, n, executions, |c| c.aborted += failed);
    }

    /// `n` windows of a second with `executions` executions each, the counters moved by `change` per window.
    fn windows(
        m: &mut Monitor,
        clock: &mut (Instant, Counters),
        n: u32,
        executions: u32,
        change: impl Fn(&mut Counters),
    ) {
        for _ in 0..n {
            for i in 0..executions {
                m.observe(u64::from(i % 3), 0, 2.0, false);
            }
            m.end_drain();
            clock.0 += Duration::from_secs(1);
            change(&mut clock.1);
            let c = clock.1;
            m.end_window(clock.0, || c, false);
        }
    }

    #[test]
    fn pattern_hit_rate_falling_and_memory_jumping_are_incidents_small_growth_is_not() {
        let mut m = Monitor::default();
        let mut clock = (Instant::now(), Counters { memory: Some(100 << 20), ..Counters::default() });
        // 90 of 100 executions join a learned pattern; memory at 100 MB, then creeping up 10%.
        windows(&mut m, &mut clock, 100, 100, |c| c.pattern_hits = (c.pattern_hits.0 + 90, c.pattern_hits.1 + 10));
        windows(&mut m, &mut clock, 30, 100, |c| {
            c.pattern_hits = (c.pattern_hits.0 + 90, c.pattern_hits.1 + 10);
            c.memory = Some(110 << 20);
        });
        assert!(opened(&m).is_empty(), "{:?}", m.events);
        // A new workload: 20 of 100 match.
        windows(&mut m, &mut clock, 10, 100, |c| c.pattern_hits = (c.pattern_hits.0 + 20, c.pattern_hits.1 + 80));
        assert_eq!(opened(&m), [PATTERN_HIT_RATE]);
        m.events.clear();
        // The worker's memory doubles and stays.
        windows(&mut m, &mut clock, 10, 100, |c| {
            c.pattern_hits = (c.pattern_hits.0 + 90, c.pattern_hits.1 + 10);
            c.memory = Some(220 << 20);
        });
        assert!(opened(&m).contains(&MEMORY), "{:?}", m.events);
    }

    #[test]
    fn the_worker_knows_its_private_memory() {
        let before = private_memory().expect("/proc/self/statm");
        // 16 MB written (so resident) and private to this process.
        let block = std::hint::black_box(vec![7u8; 16 << 20]);
        let after = private_memory().expect("/proc/self/statm");
        assert!(after >= before + (12 << 20), "{before} -> {after}");
        drop(block);
    }

    #[test]
    fn throughput_falling_and_errors_rising_are_workload_incidents() {
        let mut m = Monitor::default();
        let mut clock = (Instant::now(), Counters::default());
        // Nothing before the first execution: an idle server is not warming up on zeros.
        m.end_window(clock.0 + Duration::from_secs(5), Counters::default, false);
        assert!(m.rates.window.is_none());
        seconds(&mut m, &mut clock, 120, 100, 0);
        assert!(opened(&m).is_empty(), "{:?}", m.events);
        // A tenth of the executions for ten seconds (a lock pile-up): throughput incident.
        seconds(&mut m, &mut clock, 10, 10, 0);
        assert_eq!(opened(&m), [THROUGHPUT]);
        seconds(&mut m, &mut clock, 15, 100, 0);
        assert!(matches!(m.events.last(), Some(Event::Resolved { key: THROUGHPUT, .. })), "{:?}", m.events);
        m.events.clear();
        // A fifth of the statements failing for ten seconds: error-rate incident.
        seconds(&mut m, &mut clock, 10, 100, 25);
        assert_eq!(opened(&m), [ERROR_RATE]);
        let Some(Event::Opened { detail, .. }) = m.events.iter().find(|e| matches!(e, Event::Opened { .. })) else {
            unreachable!()
        };
        assert!(detail.starts_with("all queries: 20.0% of executions failed (25 of 125"), "{detail}");
    }

    #[test]
    fn rate_windows_are_a_second_long_and_quiet_while_we_repair() {
        let mut m = Monitor::default();
        let t0 = Instant::now();
        m.observe(1, 0, 2.0, false);
        let none = Counters::default();
        m.end_window(t0, || none, false);
        // Drains come more often than once a second (a backend's request wakes the worker): one window.
        for ms in [200, 400, 600, 800] {
            m.observe(1, 0, 2.0, false);
            m.end_window(t0 + Duration::from_millis(ms), || none, false);
        }
        assert_eq!(m.rates.throughput.as_ref().map(|t| t.observed()), None);
        m.end_window(t0 + Duration::from_millis(1000), || none, false);
        assert_eq!(m.rates.throughput.as_ref().map(|t| t.observed()), Some(1));
        // While our repair runs, windows pass unjudged.
        m.observe(1, 0, 2.0, true);
        m.end_window(t0 + Duration::from_millis(2000), || Counters { aborted: 50, ..none }, true);
        assert_eq!(m.rates.throughput.as_ref().map(|t| t.observed()), Some(1));
    }

    #[test]
    fn a_busy_class_is_judged_on_a_bounded_sample_per_drain() {
        let mut m = Monitor::default();
        for _ in 0..1000 {
            m.observe(5, 0, 2.0, false);
        }
        m.end_drain();
        // The first drain: every execution (no count to stride by yet).
        assert_eq!(m.classes[&5].observed(), 1000);
        for _ in 0..1000 {
            m.observe(5, 0, 2.0, false);
        }
        m.end_drain();
        // Then every 63rd (1000 / 16, rounded up): 16 spread over the drain.
        assert_eq!(m.classes[&5].observed(), 1000 + 16);
        // A slowdown from mid-drain on is judged within that drain.
        for i in 0..1000 {
            m.observe(5, 0, if i < 500 { 2.0 } else { 50.0 }, false);
        }
        assert_eq!(opened(&m), [5]);
    }
}
