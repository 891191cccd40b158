//! The learning loop inside PostgreSQL: the background worker `ruvector_dag_learner`, its shared control block,
//! persistence of what it learned, and the snapshot backends predict from.
//!
//! - The worker (registered in `_PG_init` while preloading; restarted 5 s after it stops) connects to the
//!   database `ruvector.dag_database`, restores the learned state saved there, and then loops: every second it
//!   drains the new records of the trajectory ring into the engine's instant tier (`post_query`: MicroLoRA step,
//!   ReasoningBank update); every `ruvector.dag_background_interval_ms`, when `dag_learn_now()` asks, and at
//!   shutdown it runs the background tier (BaseLoRA, consolidation, eviction, IVF rebuild), saves the state and
//!   the drained trajectories to the `ruvector` tables in one transaction, and publishes the state to shared
//!   memory. SIGHUP re-reads the configuration; SIGTERM saves and exits (the postmaster restarts it unless the
//!   server is shutting down).
//! - Backends read the published snapshot (a seqlock-guarded byte area sized by `ruvector.dag_snapshot_kb`) into a
//!   per-backend engine when its generation changes; without preload they read the saved state from the table.
//!
//! This module is the worker; [`control`] lays out the shared memory it shares with backends and [`backend`] is
//! the backends' side (their copy of the state, counters, requests).
//!
//! The learner costs the user's queries nothing: the hooks only append to the ring. A burst of executions of
//! one plan shape is learned from at most [`MAX_PER_SHAPE`] times per drain (the rest are counted as coalesced),
//! so the worker's CPU stays bounded by the number of distinct shapes, not by the query rate.

use crate::classes::{Class, Replay, State};
use crate::replay::{Measured, Replayer};
use crate::ring::{self, Record};
use crate::sql::fail;
use crate::steering;
use dag::QueryDag;
use dag::learning::ExecutionMetrics;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::{pg_sys, spi};
use rustc_hash::{FxHashMap, FxHashSet};
use ruvector_dag_learning::{DagSonaEngine, SonaConfig};
use std::ptr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Executions of one plan shape the worker learns from per drain; further ones in the same drain are coalesced.
pub(crate) const MAX_PER_SHAPE: u32 = 16;
/// How often the worker drains the ring.
const DRAIN_INTERVAL: Duration = Duration::from_secs(1);
/// Patterns the silhouette of a re-clustering is computed over at most (quadratic cost).
const SILHOUETTE_POINTS: usize = 2000;
/// Plan shapes the worker remembers (by plan hash).
const MAX_PLANS: usize = 20_000;
/// How long `dag_learn_now()` waits for the worker.
const LEARN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `dag_learn_now()` waits for a worker that is not running yet (starting or restarting).
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Patterns a prediction looks at, and the cosine similarity to the class's plan they need.
const PREDICT_K: usize = 8;
const PREDICT_SIMILARITY: f32 = 0.9;

mod backend;
mod control;
pub(crate) mod network;

pub(crate) use backend::{
    Origin, learn_now, qudag_connected, request_cycle, status, submit, submit_network, wake_worker, with_engine,
};
pub(crate) use control::{Command, attach, shmem_size};
use control::{Control, DONE, EXECUTING, IDLE, MAILBOX_BYTES, SUBMITTED, control, snapshot_area};

/// Registers the worker. Call from `_PG_init` while preloading.
pub(crate) fn init() {
    BackgroundWorkerBuilder::new("ruvector_dag_learner")
        .set_type("ruvector_dag_learner")
        .set_function("ruvector_dag_learner_main")
        .set_library("ruvector_dag")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// The learner's configuration: `ruvector.toml`'s `[learning]` section, with the learning GUCs that are set to
/// something other than their defaults taking precedence.
pub(crate) fn sona_config() -> SonaConfig {
    use crate::gucs;
    let mut c = SonaConfig::from_section(&crate::settings::loaded().config.learning);
    let defaults = dag::config::LearningSection::default();
    if gucs::LEARNING_RATE.get() != defaults.learning_rate {
        c.learning_rate = gucs::LEARNING_RATE.get() as f32;
        c.base_learning_rate = c.learning_rate / 2.0;
    }
    if gucs::QUALITY_THRESHOLD.get() != defaults.quality_threshold {
        c.quality_threshold = gucs::QUALITY_THRESHOLD.get();
    }
    if gucs::PATTERN_CLUSTERS.get() as usize != defaults.pattern_clusters {
        c.clusters = gucs::PATTERN_CLUSTERS.get() as usize;
    }
    if gucs::EWC_LAMBDA.get() != defaults.ewc_lambda {
        c.ewc_lambda = gucs::EWC_LAMBDA.get() as f32;
    }
    if gucs::MICRO_LORA_RANK.get() as usize != defaults.micro_lora_rank {
        c.micro_rank = (gucs::MICRO_LORA_RANK.get() as usize).min(2);
    }
    if gucs::BASE_LORA_RANK.get() as usize != defaults.base_lora_rank {
        c.base_rank = gucs::BASE_LORA_RANK.get() as usize;
    }
    c
}

// ---- the worker ---------------------------------------------------------------------------------------------

/// Entry point of the background worker.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ruvector_dag_learner_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    crate::hooks::disable_in_this_process();
    let db = crate::gucs::DATABASE.get().and_then(|d| d.into_string().ok()).unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    let Some(c) = control() else { return };
    // SAFETY: MyLatch and MyProcPid are this process's; the latch lives in shared memory (PGPROC).
    unsafe {
        c.worker_latch.store(pg_sys::MyLatch, Ordering::Release);
        c.worker_pid.store(pg_sys::MyProcPid, Ordering::Release);
    }
    let mut learner = Learner::new(&db);
    learner.load();
    learner.publish();
    let mut next_cycle = Instant::now() + interval();
    loop {
        let timeout = DRAIN_INTERVAL.min(next_cycle.saturating_duration_since(Instant::now()));
        let alive = BackgroundWorker::wait_latch(Some(timeout.max(Duration::from_millis(1))));
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a worker to re-read postgresql.conf after SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            learner.engine.config.learning_rate = sona_config().learning_rate;
            learner.engine.micro.set_learning_rate(learner.engine.config.learning_rate);
            next_cycle = next_cycle.min(Instant::now() + interval());
        }
        // Read the requests before draining: a backend records its executions before it asks, so the drain
        // below sees every execution made before any request it serves.
        let requested = c.learn_requested.load(Ordering::Acquire);
        learner.drain();
        learner.serve(c);
        let asked = requested > c.learn_done.load(Ordering::Acquire);
        // Replays: what the budget allows, or everything pending (up to a minute) when asked.
        let budget = crate::gucs::REPLAY_BUDGET.get();
        learner.credit_ms = (learner.credit_ms + DRAIN_INTERVAL.as_secs_f64() * 1000.0 * budget).min(60_000.0 * budget);
        if alive && (asked || (budget > 0.0 && learner.credit_ms > 0.0)) {
            let allowed = if asked { Duration::from_secs(60) } else { Duration::from_millis(learner.credit_ms as u64) };
            learner.explore(allowed);
        }
        if alive && learner.advisor.busy() {
            learner.advise();
        }
        if alive {
            learner.heal();
            learner.share();
        }
        if !alive || asked || Instant::now() >= next_cycle {
            learner.cycle();
            c.learn_done.store(requested, Ordering::Release);
            // After answering: a backend waiting in dag_learn_now() holds a snapshot that CREATE INDEX
            // CONCURRENTLY would wait for.
            if alive {
                learner.advise();
            }
            next_cycle = Instant::now() + interval();
        }
        if !alive {
            break;
        }
    }
    learner.sharing.stop();
    c.worker_pid.store(0, Ordering::Release);
    c.worker_latch.store(ptr::null_mut(), Ordering::Release);
    log!("ruvector_dag_learner: saved and stopping");
    // Exit code 1: the postmaster restarts the worker (after pg_terminate_backend), except at shutdown.
    // SAFETY: ends this process the PostgreSQL way.
    unsafe { pg_sys::proc_exit(1) };
}

fn interval() -> Duration {
    Duration::from_millis(crate::gucs::BACKGROUND_INTERVAL_MS.get().max(1000) as u64)
}

/// One drained execution waiting to be saved.
struct Pending {
    query_id: i64,
    plan_hash: i64,
    recorded_at: i64,
    execution_ms: f64,
    planning_ms: Option<f64>,
    rows: i64,
    user_id: i64,
    db_id: i64,
    failed: bool,
}

struct Learner {
    database: String,
    engine: DagSonaEngine,
    /// Capture DAGs by plan hash (what the hooks send once per shape and backend).
    plans: FxHashMap<u64, QueryDag>,
    /// Plan hashes not yet saved to `ruvector.dag_plans`.
    new_plans: Vec<u64>,
    /// Drained executions to save at the next cycle: the newest `ruvector.dag_max_trajectories`.
    pending: std::collections::VecDeque<Pending>,
    /// Last ring sequence number drained.
    after: u64,
    warned_too_large: bool,
    /// The counterfactual log, by query id.
    classes: FxHashMap<u64, Class>,
    /// Classes changed since the last save.
    dirty: FxHashSet<u64>,
    /// Client connections for background replays (created on first use).
    replayer: Option<Replayer>,
    /// Replay time the budget allows now, in milliseconds.
    credit_ms: f64,
    /// Database and role names by OID.
    names: FxHashMap<(bool, u32), Option<String>>,
    /// The arm this worker last published per class (an operator may publish another with `dag_class_steer`),
    /// and whether only checked variants are steered.
    published: FxHashMap<u64, (usize, bool)>,
    /// The variant table as last published: (class, variant) of parameter-sensitive classes' steered variants.
    published_variants: Vec<(u64, u64)>,
    /// The index advisor's auto mode.
    advisor: crate::advisor_auto::AutoAdvisor,
    /// Self-healing: index probes and repairs.
    healer: crate::healing::Healer,
    /// Latency anomaly detection.
    monitor: crate::anomalies::Monitor,
    /// Pattern sharing: the network thread and what was imported.
    sharing: network::Sharing,
}

impl Learner {
    fn new(database: &str) -> Self {
        Learner {
            database: database.to_owned(),
            engine: DagSonaEngine::new(sona_config()),
            plans: FxHashMap::default(),
            new_plans: Vec::new(),
            pending: std::collections::VecDeque::new(),
            after: 0,
            warned_too_large: false,
            classes: FxHashMap::default(),
            dirty: FxHashSet::default(),
            replayer: None,
            credit_ms: 0.0,
            names: FxHashMap::default(),
            published: FxHashMap::default(),
            published_variants: Vec::new(),
            advisor: crate::advisor_auto::AutoAdvisor::default(),
            healer: crate::healing::Healer::default(),
            monitor: crate::anomalies::Monitor::default(),
            sharing: network::Sharing::default(),
        }
    }

    /// The index advisor's auto mode: one step after a cycle (which saved the executions it validates with).
    fn advise(&mut self) {
        if crate::gucs::ADVISOR_MODE.get() != crate::gucs::AdvisorMode::auto {
            return;
        }
        if self.replayer.is_none() {
            self.replayer = Some(BackgroundWorker::transaction(Replayer::new));
        }
        let replayer = self.replayer.as_mut().expect("set above");
        self.advisor.step(replayer, &self.database);
    }

    /// Self-healing: settles the repair in flight, starts a pending one, or probes indexes when it is time.
    fn heal(&mut self) {
        if crate::gucs::HEALING_MODE.get() == crate::gucs::HealingMode::off {
            return;
        }
        let replayer = self.replayer.get_or_insert_with(|| BackgroundWorker::transaction(Replayer::new));
        let bank = &self.engine.reasoning_bank;
        self.healer.step(replayer, &self.database, &|id| bank.pattern(id).map(|p| p.quality()));
    }

    /// Restores the saved state and plan shapes, if the extension is installed.
    fn load(&mut self) {
        let (state, plans, classes) = BackgroundWorker::transaction(|| {
            if !extension_installed() {
                return (None, Vec::new(), Vec::new());
            }
            let state: Option<Vec<u8>> =
                Spi::get_one("SELECT state FROM ruvector.dag_learning_state WHERE name = 'current'").ok().flatten();
            let plans = Spi::connect(|client| {
                let rows = client.select("SELECT plan_hash, plan FROM ruvector.dag_plans", None, &[])?;
                rows.map(|row| Ok((row.get::<i64>(1)?, row.get::<Vec<u8>>(2)?)))
                    .collect::<Result<Vec<_>, spi::SpiError>>()
            })
            .unwrap_or_default();
            let classes = Spi::connect(|client| {
                let rows = client.select("SELECT detail::text FROM ruvector.dag_query_classes", None, &[])?;
                rows.map(|row| row.get::<String>(1)).collect::<Result<Vec<_>, spi::SpiError>>()
            })
            .unwrap_or_default();
            (state, plans, classes)
        });
        let (state, plans, classes) = (state, plans, classes);
        for detail in classes.into_iter().flatten() {
            match serde_json::from_str::<Class>(&detail) {
                Ok(class) if class.replays.len() == steering::ARMS.len() => {
                    if class.state == State::Disabled {
                        steering::set_enabled(class.query_id, false);
                    }
                    self.classes.insert(class.query_id, class);
                }
                _ => warning!("ruvector_dag_learner: skipping an unreadable row of ruvector.dag_query_classes"),
            }
        }
        // The variant table first, so a parameter-sensitive class's checked variants stay steered.
        self.publish_variants();
        for class in self.classes.values() {
            let published = (class.effective_arm(), class.parameter_sensitive());
            steering::publish(class.query_id, published.0, class.replay_ratio(), published.1);
            self.published.insert(class.query_id, published);
        }
        for (hash, bytes) in plans {
            if let (Some(hash), Some(Ok(dag))) = (hash, bytes.map(|b| QueryDag::from_bytes(&b))) {
                self.plans.insert(hash as u64, dag);
            }
        }
        let Some(state) = state else {
            log!("ruvector_dag_learner: started in database \"{}\" with nothing learned yet", self.database);
            return;
        };
        match self.engine.restore_state(&state) {
            Ok(r) => log!(
                "ruvector_dag_learner: restored {} patterns learned from {} executions ({} plan shapes)",
                r.patterns,
                r.queries,
                self.plans.len()
            ),
            Err(e) => {
                // Keep the old state under another name rather than overwrite it.
                warning!(
                    "ruvector_dag_learner: the saved state cannot be restored ({e}); starting fresh and keeping it \
                     in ruvector.dag_learning_state as 'rejected <time>'"
                );
                BackgroundWorker::transaction(|| {
                    Spi::run(
                        "UPDATE ruvector.dag_learning_state SET name = 'rejected ' || now() WHERE name = 'current'",
                    )
                    .ok();
                });
            }
        }
    }

    /// Learns from the ring's new records.
    fn drain(&mut self) {
        let Some(c) = control() else { return };
        let mut per_shape: FxHashMap<u64, u32> = FxHashMap::default();
        let healing = crate::gucs::HEALING_MODE.get() != crate::gucs::HealingMode::off;
        let (last, lost) = ring::drain_since(self.after, 1_000_000, |r| {
            self.learn(c, r, &mut per_shape);
            // A failed execution counts with its time until the error (a lower bound): a steered plan that
            // makes a query hit statement_timeout is a regression, and a query that always does is workload.
            let captured = r.source == ring::Source::Hook as u8 || r.source == ring::Source::Failed as u8;
            if r.query_id != 0 && captured {
                let class = self.classes.entry(r.query_id).or_insert_with(|| {
                    let mut class = Class::new(r.query_id, r.db_id, r.user_id, r.plan_hash);
                    // The backend stored the statement's text before running it: take it now, before another
                    // class's text can take its slot (the text table is direct-mapped).
                    class.take_text(steering::fetch_text(r.query_id, None));
                    class
                });
                // A variant a parameter-sensitive class plans natively on purpose is not the native side of the
                // guard's comparison (the guard would weigh the arm on its own values against other values' times).
                if r.arm != 0 || !class.native_by_design(r.variant) {
                    class.observe(usize::from(r.arm), r.execution_ms, r.source == ring::Source::Failed as u8);
                }
                // A new variant of a steered class: the backend stored its text before running it.
                if class.wants_variant(r.variant)
                    && let Some(t) = steering::fetch_text(r.query_id, Some(r.variant))
                {
                    class.add_variant(r.variant, t.text);
                }
                if healing {
                    self.monitor.observe(r.query_id, r.arm, r.execution_ms, self.healer.repairing());
                }
                if r.arm != 0 {
                    // Executions under an arm prove it is published (perhaps by an operator's dag_class_steer).
                    self.published.entry(r.query_id).or_default().0 = usize::from(r.arm);
                }
                self.dirty.insert(r.query_id);
            }
        });
        self.after = last;
        c.lost.fetch_add(lost, Ordering::Relaxed);
        if healing {
            self.monitor.end_drain();
            let (engine, quiet) = (&self.engine, self.healer.repairing());
            self.monitor.end_window(
                Instant::now(),
                || crate::anomalies::Counters {
                    aborted: ring::stats().aborted,
                    pattern_hits: engine.pattern_hits(),
                    memory: crate::anomalies::private_memory(),
                },
                quiet,
            );
        }
        let [warming, normal, incident, blackout] = self.monitor.states();
        for (slot, n) in
            c.anomaly_states.iter().zip([warming, normal, incident, blackout, self.monitor.skipped as usize])
        {
            slot.store(n as u64, Ordering::Relaxed);
        }
        if healing {
            self.monitor.flush();
        }
        self.review();
    }

    /// After new executions: texts for recurring classes, the kill switch, the guard, and what backends see.
    fn review(&mut self) {
        let mut changed = false;
        let mut regressed = Vec::new();
        for (&query_id, class) in &mut self.classes {
            if class.text.is_none() && class.native.n >= 2 && class.take_text(steering::fetch_text(query_id, None)) {
                self.dirty.insert(query_id);
            }
            let disabled = steering::disabled(query_id);
            if disabled && class.state != State::Disabled {
                class.state = State::Disabled;
                self.dirty.insert(query_id);
            } else if !disabled && class.state == State::Disabled {
                // Back on: explore again from scratch.
                class.restart();
                self.dirty.insert(query_id);
            }
            if class.guard() {
                let why = format!(
                    "class {query_id} ran slower steered ({:.3} ms) than native ({:.3} ms)",
                    class.steered.ms(),
                    class.native.ms()
                );
                log!("ruvector_dag_learner: {why}: reverted to the native plan");
                regressed.push((class.plan_hash, why));
                self.dirty.insert(query_id);
            }
        }
        // The variant table first: a class turning parameter-sensitive keeps its checked variants steered.
        changed |= self.publish_variants();
        for (&query_id, class) in &self.classes {
            let now = (class.effective_arm(), class.parameter_sensitive());
            if self.published.get(&query_id).copied().unwrap_or_default() != now {
                steering::publish(query_id, now.0, class.replay_ratio(), now.1);
                self.published.insert(query_id, now);
                changed = true;
            }
        }
        if changed {
            invalidate_plan_caches();
        }
        // Self-healing: the learned pattern that the regressed plan matches forgets its measured settings.
        for (plan_hash, why) in regressed {
            let Some(dag) = self.plans.get(&plan_hash) else { continue };
            let embedding = self.engine.embed(dag);
            if let Some(m) = self.engine.reasoning_bank.query_similar(&embedding, 1).first() {
                crate::healing::queue_pattern_reset(&[m.id], &why);
            }
        }
        if let Some(c) = control() {
            let gains: Vec<f64> = self.classes.values().filter_map(Class::improvement).collect();
            let avg = if gains.is_empty() { f64::NAN } else { gains.iter().sum::<f64>() / gains.len() as f64 };
            c.avg_improvement.store(avg.to_bits(), Ordering::Relaxed);
            c.steered
                .store(self.classes.values().filter(|k| k.state == State::Steered).count() as u64, Ordering::Relaxed);
        }
    }

    /// Publishes the variant table when the steered variants of parameter-sensitive classes changed; returns
    /// whether it did.
    fn publish_variants(&mut self) -> bool {
        let mut now: Vec<(u64, u64)> =
            self.classes.values().flat_map(|k| k.steered_variants().map(move |v| (k.query_id, v))).collect();
        now.sort_unstable();
        if now == self.published_variants {
            return false;
        }
        let left_out = steering::publish_variants(&now);
        if left_out > 0 {
            warning!(
                "ruvector_dag_learner: {left_out} checked variants did not fit the variant table (planned natively)"
            );
        }
        self.published_variants = now;
        true
    }

    /// Replays pending explorations for up to `budget`; steers classes whose exploration completes.
    fn explore(&mut self, budget: Duration) {
        let start = Instant::now();
        let threshold = crate::gucs::QUALITY_THRESHOLD.get();
        while start.elapsed() < budget {
            // The class with the most native time at stake first.
            let Some((query_id, replay)) = self
                .classes
                .values()
                .filter_map(|k| k.next_replay().map(|r| (k.query_id, r, k.native.ms() * k.native.n as f64)))
                .max_by(|a, b| a.2.total_cmp(&b.2))
                .map(|(q, r, _)| (q, r))
            else {
                break;
            };
            let mut replay = Some(replay);
            if self.classes[&query_id].wants_prediction() {
                let predicted = self.predict(query_id, threshold);
                let class = self.classes.get_mut(&query_id).expect("picked above");
                class.predict(predicted);
                if let Some(arm) = class.predicted {
                    log!(
                        "ruvector_dag_learner: class {query_id}: the ReasoningBank predicts {} (explored first)",
                        steering::arm_label(arm)
                    );
                }
                // None when replays from before a worker restart already confirm the prediction.
                replay = class.next_replay();
            }
            if let Some(replay) = replay {
                self.replay_one(query_id, replay);
            }
            let class = self.classes.get_mut(&query_id).expect("picked above");
            if let Some(arm) = class.decide(threshold) {
                let native = if class.censored() {
                    format!("native at least {:.3} ms: its executions failed", class.native.ms())
                } else {
                    format!("native {:.3} ms", class.replays[0].stat.ms())
                };
                let predicted = if class.predicted == Some(arm) { ", as predicted" } else { "" };
                log!(
                    "ruvector_dag_learner: class {query_id} steered with {} (replayed {:.3} ms vs {native}{predicted})",
                    steering::arm_label(arm),
                    class.replays[arm].stat.ms(),
                );
            }
            self.dirty.insert(query_id);
        }
        self.review();
    }

    /// The arm the ReasoningBank predicts for class `query_id`: among the patterns most similar to its plan, the
    /// best settings of the one with the highest similarity-weighted quality, when they save at least `threshold`
    /// of the native latency and are an arm.
    fn predict(&self, query_id: u64, threshold: f64) -> Option<usize> {
        let dag = self.plans.get(&self.classes.get(&query_id)?.plan_hash)?;
        let embedding = self.engine.embed(dag);
        let score = |m: &ruvector_dag_learning::PatternMatch| m.quality * f64::from(m.similarity);
        let best = self
            .engine
            .reasoning_bank
            .query_similar(&embedding, PREDICT_K)
            .into_iter()
            .filter(|m| m.similarity >= PREDICT_SIMILARITY && !m.best_settings.is_empty())
            .filter(|m| 1.0 - m.predicted_ratio >= threshold)
            .max_by(|a, b| score(a).total_cmp(&score(b)))?;
        (1..steering::ARMS.len()).find(|&arm| steering::arm_settings(arm) == best.best_settings)
    }

    fn name(&mut self, database: bool, oid: u32) -> Option<String> {
        self.names
            .entry((database, oid))
            .or_insert_with(|| {
                let query = if database {
                    "SELECT datname::text FROM pg_database WHERE oid = $1"
                } else {
                    "SELECT rolname::text FROM pg_roles WHERE oid = $1"
                };
                BackgroundWorker::transaction(|| {
                    Spi::get_one_with_args::<String>(query, &[pg_sys::Oid::from(oid).into()]).ok().flatten()
                })
            })
            .clone()
    }

    fn replay_one(&mut self, query_id: u64, replay: Replay) {
        let (db_id, user_id, text, plan_hash) = {
            let k = &self.classes[&query_id];
            let text = match replay {
                Replay::Variant(key, ..) => k.variant_text(key),
                _ => k.text.as_deref(),
            };
            (k.db_id, k.user_id, text.unwrap_or_default().to_owned(), k.plan_hash)
        };
        let (Some(db), Some(role)) = (self.name(true, db_id), self.name(false, user_id)) else {
            self.classes.get_mut(&query_id).expect("exists").failed("database or role no longer exists".into());
            return;
        };
        if self.replayer.is_none() {
            self.replayer = Some(BackgroundWorker::transaction(Replayer::new));
        }
        let replayer = self.replayer.as_mut().expect("set above");
        let class = self.classes.get_mut(&query_id).expect("exists");
        let started = Instant::now();
        match replay {
            Replay::Compare(arm) => {
                let native = match class.explain_hash {
                    Some(h) => Ok(h),
                    None => replayer.plan_hash(&db, &role, &text, 0),
                };
                match native.and_then(|n| replayer.plan_hash(&db, &role, &text, arm).map(|a| (n, a))) {
                    Ok((n, a)) => {
                        class.explain_hash = Some(n);
                        class.compared_plans(arm, n, a);
                    }
                    Err(e) => class.failed(e),
                }
            }
            Replay::Measure(arm, timeout_ms) => match replayer.measure(&db, &role, &text, arm, timeout_ms) {
                Ok(Measured::Ms(ms)) => {
                    class.measured(arm, Some(ms));
                    // The bank learns the arm's latency for this plan's pattern too.
                    if let Some(dag) = self.plans.get(&plan_hash) {
                        let embedding = self.engine.embed(dag);
                        self.engine.reasoning_bank.observe(&embedding, &steering::arm_settings(arm), ms);
                    }
                }
                Ok(Measured::Timeout) => class.measured(arm, None),
                Err(e) => class.failed(e),
            },
            Replay::Variant(key, arm, timeout_ms) => match replayer.measure(&db, &role, &text, arm, timeout_ms) {
                Err(e) => {
                    log!(
                        "ruvector_dag_learner: class {query_id}: a variant could not be replayed, left unchecked: {e}"
                    );
                    class.variant_failed(key);
                }
                Ok(measured) => {
                    let ms = match measured {
                        Measured::Ms(ms) => Some(ms),
                        Measured::Timeout => None,
                    };
                    if let Some(holds) = class.variant_measured(key, arm, ms) {
                        let v = class.variants.iter().find(|v| v.key == key).expect("just measured");
                        let time = |s: &crate::classes::Stat| {
                            if s.n > 0 { format!("{:.3} ms", s.ms()) } else { "timed out".to_owned() }
                        };
                        let (arm_ms, native_ms) = (time(&v.arm), time(&v.native));
                        if holds {
                            log!(
                                "ruvector_dag_learner: class {query_id}: the arm holds for a new variant ({arm_ms}, \
                                 native {native_ms})"
                            );
                        } else {
                            log!(
                                "ruvector_dag_learner: class {query_id}: the arm runs a new variant slower ({arm_ms}, \
                                 native {native_ms}): parameter-sensitive, only variants checked to hold are steered"
                            );
                        }
                    }
                }
            },
        }
        self.credit_ms -= started.elapsed().as_secs_f64() * 1000.0;
        if let Some(c) = control() {
            c.replays.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn learn(&mut self, c: &Control, r: &Record, per_shape: &mut FxHashMap<u64, u32>) {
        // A plan with per-node actuals comes from EXPLAIN (conditions, actuals): not the capture representation
        // the worker learns from, so only plans without actuals are remembered.
        if !self.plans.contains_key(&r.plan_hash) && !r.has_actuals && self.plans.len() < MAX_PLANS {
            if let Some(Ok(dag)) = r.plan_bytes().map(QueryDag::from_bytes) {
                self.plans.insert(r.plan_hash, dag);
                self.new_plans.push(r.plan_hash);
            }
        }
        if self.pending.len() >= crate::gucs::MAX_TRAJECTORIES.get().max(1) as usize {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            query_id: r.query_id as i64,
            plan_hash: r.plan_hash as i64,
            recorded_at: r.recorded_at,
            execution_ms: r.execution_ms,
            planning_ms: r.planning_ms.is_finite().then_some(r.planning_ms),
            rows: r.rows as i64,
            user_id: i64::from(r.user_id),
            db_id: i64::from(r.db_id),
            failed: r.source == ring::Source::Failed as u8,
        });
        if r.source == ring::Source::Failed as u8 {
            // No result and only a bound on the latency: nothing for the pattern engine.
            return;
        }
        let Some(dag) = self.plans.get(&r.plan_hash) else {
            c.unknown_plan.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let n = per_shape.entry(r.plan_hash).or_default();
        *n += 1;
        if *n > MAX_PER_SHAPE {
            c.coalesced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let metrics = ExecutionMetrics {
            latency_ms: r.execution_ms,
            planning_ms: r.planning_ms.is_finite().then_some(r.planning_ms),
            rows: Some(r.rows as f64),
            settings: steering::arm_settings(usize::from(r.arm)),
        };
        if self.engine.post_query(dag, &metrics).is_ok() {
            c.learned.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Carries out a command a backend submitted, then saves and publishes.
    fn serve(&mut self, c: &Control) {
        let m = &c.mailbox;
        if m.state.compare_exchange(SUBMITTED, EXECUTING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let arg = |i: usize| m.args[i].load(Ordering::Acquire);
        // A network request's reply, and whether the learned state changed (everything else changes it).
        let (mut reply, mut changed) = (None, true);
        let result = match m.kind.load(Ordering::Acquire) {
            k if k == Command::Network as u32 => self.network_request(&m.read_payload()).map(|(bytes, ch)| {
                reply = Some(bytes);
                changed = ch;
                [0; 4]
            }),
            k if k == Command::StorePattern as u32 => self.store_pattern(&m.read_payload()).map(|id| [id, 0, 0, 0]),
            k if k == Command::Consolidate as u32 => Ok(self.consolidate(arg(0) as usize)),
            k if k == Command::Reset as u32 => Ok(self.reset(arg(0) != 0, arg(1) != 0)),
            k if k == Command::Import as u32 => self.import(arg(0), arg(1) as usize),
            k if k == Command::ResetQuality as u32 => {
                let payload = m.read_payload();
                let ids: Vec<u64> =
                    payload.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
                let changed = self.engine.reasoning_bank.reset_quality((!ids.is_empty()).then_some(&ids[..]));
                Ok([changed as u64, 0, 0, 0])
            }
            k if k == Command::Recluster as u32 => Ok(self.recluster()),
            other => Err(format!("unknown command {other}")),
        };
        match result {
            Ok(values) => {
                for (slot, v) in m.results.iter().zip(values) {
                    slot.store(v, Ordering::Release);
                }
                m.error_len.store(0, Ordering::Release);
                if let Some(reply) = reply {
                    m.write_payload(&reply);
                }
                if changed {
                    let status = self.save();
                    c.persist_status.store(status, Ordering::Relaxed);
                    self.publish();
                }
            }
            Err(message) => {
                m.write_payload(message.as_bytes());
                m.error_len.store(message.len().clamp(1, MAILBOX_BYTES) as u32, Ordering::Release);
            }
        }
        if m.state.compare_exchange(EXECUTING, DONE, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // The backend stopped waiting: nobody reads the result.
            m.state.store(IDLE, Ordering::Release);
        }
    }

    fn store_pattern(&mut self, payload: &[u8]) -> Result<u64, String> {
        #[derive(serde::Deserialize)]
        struct Request {
            vector: Vec<f32>,
            metadata: serde_json::Value,
            quality: f64,
        }
        let r: Request = serde_json::from_slice(payload).map_err(|e| format!("pattern request: {e}"))?;
        let settings: Vec<(String, String)> = match r.metadata.get("settings") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Object(map)) => {
                map.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
            }
            Some(other) => {
                return Err(format!("metadata.settings must be an object of setting names to values, not {other}"));
            }
        };
        let native = r.metadata.get("native_latency_ms").and_then(serde_json::Value::as_f64).unwrap_or(1.0);
        if !(native.is_finite() && native > 0.0) {
            return Err(format!("metadata.native_latency_ms {native}: expected a positive number"));
        }
        // The native arm at the given latency and, with settings, the settings' arm `quality` faster.
        let mut arms =
            vec![ruvector_dag_learning::Arm { settings: Vec::new(), count: 1, mean_log_latency: native.ln_1p() }];
        if !settings.is_empty() {
            let best = native * (1.0 - r.quality);
            arms.push(ruvector_dag_learning::Arm { settings, count: 1, mean_log_latency: best.ln_1p() });
        }
        self.engine.reasoning_bank.insert(&r.vector, arms).map_err(|e| e.to_string())
    }

    fn consolidate(&mut self, target: usize) -> [u64; 4] {
        let start = Instant::now();
        let before = self.engine.reasoning_bank.clusters() as u64;
        let merged = self.engine.reasoning_bank.consolidate(0.995) as u64;
        if target > 0 {
            self.engine.config.clusters = target;
        }
        let (clusters, seed) = (self.engine.config.clusters, self.engine.queries());
        let after = self.engine.reasoning_bank.rebuild_index(clusters, seed) as u64;
        [before, after, merged, start.elapsed().as_micros() as u64]
    }

    fn recluster(&mut self) -> [u64; 4] {
        let start = Instant::now();
        let before = self.engine.reasoning_bank.clusters() as u64;
        let (clusters, seed) = (self.engine.config.clusters, self.engine.queries());
        let after = self.engine.reasoning_bank.rebuild_index(clusters, seed) as u64;
        let silhouette = self.engine.reasoning_bank.silhouette(SILHOUETTE_POINTS).unwrap_or(f64::NAN);
        [before, after, silhouette.to_bits(), start.elapsed().as_micros() as u64]
    }

    fn reset(&mut self, keep_patterns: bool, keep_trajectories: bool) -> [u64; 4] {
        let bank = std::mem::replace(&mut self.engine.reasoning_bank, ruvector_dag_learning::DagReasoningBank::new(1));
        self.engine = DagSonaEngine::new(sona_config());
        if keep_patterns {
            self.engine.reasoning_bank = bank;
        } else {
            // Steering decisions go with the patterns: every class is native again and is explored afresh.
            for (&query_id, class) in &mut self.classes {
                class.restart();
                self.dirty.insert(query_id);
            }
            self.review();
        }
        // The operator replaced the learned state: the learning guard starts a new history from it.
        crate::drift::forget();
        if !keep_trajectories {
            self.pending.clear();
            BackgroundWorker::transaction(|| {
                if extension_installed() {
                    Spi::run("TRUNCATE ruvector.dag_trajectories").ok();
                }
            });
        }
        [self.engine.reasoning_bank.len() as u64, 0, 0, 0]
    }

    /// Imports the state a backend put in dynamic shared memory segment `handle` (`len` bytes).
    fn import(&mut self, handle: u64, len: usize) -> Result<[u64; 4], String> {
        let blob = BackgroundWorker::transaction(move || {
            // SAFETY: the requesting backend keeps the segment until this command is answered; it holds `len`
            // bytes. Attached and detached within this transaction.
            unsafe {
                let seg = pg_sys::dsm_attach(handle as pg_sys::dsm_handle);
                if seg.is_null() {
                    return None;
                }
                let len = len.min(pg_sys::dsm_segment_map_length(seg));
                let blob = std::slice::from_raw_parts(pg_sys::dsm_segment_address(seg).cast::<u8>(), len).to_vec();
                pg_sys::dsm_detach(seg);
                Some(blob)
            }
        })
        .ok_or("the state to import is gone (the requesting session ended)")?;
        let restored = self.engine.restore_state(&blob).map_err(|e| e.to_string())?;
        crate::drift::forget();
        Ok([restored.patterns as u64, self.engine.reasoning_bank.clusters() as u64, 0, 0])
    }

    /// The background tier, then save and publish.
    fn cycle(&mut self) {
        let Some(c) = control() else { return };
        let start = Instant::now();
        self.reexplore_changed();
        let report = match self.engine.run_background_cycle() {
            Ok(r) => r,
            Err(e) => {
                warning!("ruvector_dag_learner: background cycle failed: {e}");
                return;
            }
        };
        let status = self.save();
        c.persist_status.store(status, Ordering::Relaxed);
        if status == 1 {
            crate::drift::record(&self.engine, f64::from_bits(c.avg_improvement.load(Ordering::Relaxed)));
            if crate::drift::guard(&mut self.engine) {
                let status = self.save();
                c.persist_status.store(status, Ordering::Relaxed);
            }
        }
        self.publish();
        let values = [
            report.trajectories_processed as u64,
            report.patterns_updated as u64,
            report.new_clusters as u64,
            report.ewc_constraints_updated as u64,
            start.elapsed().as_micros() as u64,
        ];
        for (slot, v) in c.report.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
        c.patterns.store(self.engine.reasoning_bank.len() as u64, Ordering::Relaxed);
        // SAFETY: reads the clock.
        c.last_cycle_at.store(unsafe { pg_sys::GetCurrentTimestamp() }, Ordering::Relaxed);
        c.cycles.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-exploration on data change: marks the tables each newly decided class of this database reads (their
    /// change counters and live rows from `pg_stat_user_tables`), and explores a decided class afresh once one of
    /// them changed by [`REEXPLORE_CHURN`](crate::classes::REEXPLORE_CHURN) of its rows: the arm measured on the old data may no longer win.
    /// Until it is decided again the class runs natively.
    fn reexplore_changed(&mut self) {
        // SAFETY: reads this process's database OID.
        let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
        if !self.classes.values().any(|k| k.db_id == db && k.decided()) {
            return;
        }
        let stats = BackgroundWorker::transaction(|| {
            Spi::connect(|client| {
                client
                    .select(
                        "SELECT relname::text, (n_tup_ins + n_tup_upd + n_tup_del)::float8, greatest(n_live_tup, 0)::float8
                         FROM pg_stat_user_tables",
                        None,
                        &[],
                    )?
                    .map(|r| Ok((r.get::<String>(1)?.unwrap_or_default(), (r.get(2)?.unwrap_or(0.0), r.get(3)?.unwrap_or(0.0)))))
                    .collect::<Result<FxHashMap<String, (f64, f64)>, pgrx::spi::SpiError>>()
            })
        });
        let stats = match stats {
            Ok(s) => s,
            Err(e) => {
                warning!("ruvector_dag_learner: reading table statistics: {e}");
                return;
            }
        };
        let mut restarted = Vec::new();
        for (&query_id, class) in self.classes.iter_mut().filter(|(_, k)| k.db_id == db && k.decided()) {
            if class.marks.is_empty() {
                let Some(dag) = self.plans.get(&class.plan_hash) else { continue };
                let mut tables: Vec<&str> = dag.nodes().filter_map(|n| n.op.table()).collect();
                tables.sort_unstable();
                tables.dedup();
                class.marks = tables
                    .into_iter()
                    .filter_map(|t| {
                        let &(changes, rows) = stats.get(t)?;
                        Some(crate::classes::TableMark { table: t.to_owned(), changes, rows })
                    })
                    .collect();
                self.dirty.insert(query_id);
            } else if let Some((table, churn)) = class.stale_table(|t| stats.get(t).copied()) {
                log!(
                    "ruvector_dag_learner: class {} is explored again: table {table} changed by {:.0}% of its \
                     rows since the class was decided",
                    query_id as i64,
                    churn * 100.0
                );
                class.restart();
                self.dirty.insert(query_id);
                restarted.push(query_id);
            }
        }
        // Native from now on, at once: an execution still planned under the old arm would read as an operator's.
        for &query_id in &restarted {
            steering::publish(query_id, 0, f32::NAN, false);
            self.published.insert(query_id, (0, false));
        }
        if !restarted.is_empty() {
            invalidate_plan_caches();
        }
    }

    /// Saves the state, new plan shapes and drained trajectories in one transaction. Returns the persist status.
    fn save(&mut self) -> u64 {
        let state = self.engine.save_state();
        let patterns = self.engine.reasoning_bank.len() as i32;
        let queries = self.engine.queries() as i64;
        let plans: Vec<(i64, Vec<u8>, i32)> = self
            .new_plans
            .iter()
            .filter_map(|h| self.plans.get(h).map(|d| (*h as i64, d.to_bytes(), d.node_count() as i32)))
            .collect();
        let pending = std::mem::take(&mut self.pending);
        let classes: Vec<(i64, String, String, String, String)> = self
            .dirty
            .iter()
            .filter_map(|q| self.classes.get(q))
            .map(|k| {
                (
                    k.query_id as i64,
                    k.state.name().to_owned(),
                    steering::arm_label(k.arm),
                    k.text.clone().unwrap_or_default(),
                    serde_json::to_string(k).expect("classes serialise"),
                )
            })
            .collect();
        let keep = i64::from(crate::gucs::MAX_TRAJECTORIES.get());
        let saved = BackgroundWorker::transaction(move || {
            if !extension_installed() {
                return false;
            }
            Spi::run_with_args(
                "INSERT INTO ruvector.dag_learning_state (name, state, format_version, patterns, queries, saved_at)
                 VALUES ('current', $1, $2, $3, $4, now())
                 ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, format_version = EXCLUDED.format_version,
                     patterns = EXCLUDED.patterns, queries = EXCLUDED.queries, saved_at = EXCLUDED.saved_at",
                &[
                    state.into(),
                    i32::from(ruvector_dag_learning::STATE_VERSION).into(),
                    patterns.into(),
                    queries.into(),
                ],
            )
            .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("saving state: {e}")));
            for (query_id, state, arm, text, detail) in classes {
                Spi::run_with_args(
                    "INSERT INTO ruvector.dag_query_classes (query_id, state, arm, query_text, detail, updated_at)
                     VALUES ($1, $2, $3, NULLIF($4, ''), $5::jsonb, now())
                     ON CONFLICT (query_id) DO UPDATE SET state = EXCLUDED.state, arm = EXCLUDED.arm,
                         query_text = EXCLUDED.query_text, detail = EXCLUDED.detail, updated_at = EXCLUDED.updated_at",
                    &[query_id.into(), state.into(), arm.into(), text.into(), detail.into()],
                )
                .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("saving classes: {e}")));
            }
            for (hash, bytes, nodes) in plans {
                Spi::run_with_args(
                    "INSERT INTO ruvector.dag_plans (plan_hash, node_count, plan) VALUES ($1, $2, $3)
                     ON CONFLICT (plan_hash) DO NOTHING",
                    &[hash.into(), nodes.into(), bytes.into()],
                )
                .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("saving plans: {e}")));
            }
            if !pending.is_empty() {
                let col = |f: fn(&Pending) -> i64| pending.iter().map(f).collect::<Vec<i64>>();
                let execution: Vec<f64> = pending.iter().map(|p| p.execution_ms).collect();
                let planning: Vec<Option<f64>> = pending.iter().map(|p| p.planning_ms).collect();
                let failed: Vec<bool> = pending.iter().map(|p| p.failed).collect();
                Spi::run_with_args(
                    "INSERT INTO ruvector.dag_trajectories
                         (query_id, plan_hash, recorded_at, execution_time_ms, planning_time_ms, rows, user_id, db_id,
                          failed)
                     SELECT q, h, timestamptz '2000-01-01 00:00:00+00' + t * interval '1 microsecond', e, p, r,
                            u::oid, d::oid, f
                     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[],
                                 $6::bigint[], $7::bigint[], $8::bigint[], $9::bool[]) AS x(q, h, t, e, p, r, u, d, f)",
                    &[
                        col(|p| p.query_id).into(),
                        col(|p| p.plan_hash).into(),
                        col(|p| p.recorded_at).into(),
                        execution.into(),
                        planning.into(),
                        col(|p| p.rows).into(),
                        col(|p| p.user_id).into(),
                        col(|p| p.db_id).into(),
                        failed.into(),
                    ],
                )
                .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("saving trajectories: {e}")));
                Spi::run_with_args(
                    "DELETE FROM ruvector.dag_trajectories
                     WHERE trajectory_id <= (SELECT max(trajectory_id) FROM ruvector.dag_trajectories) - $1",
                    &[keep.into()],
                )
                .unwrap_or_else(|e| {
                    fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("trimming trajectories: {e}"))
                });
            }
            true
        });
        if saved {
            self.new_plans.clear();
            self.dirty.clear();
            1
        } else {
            2
        }
    }

    /// Copies the state into shared memory for backends.
    fn publish(&mut self) {
        let Some(c) = control() else { return };
        let bytes = self.engine.save_state();
        if bytes.len() as u64 > c.snapshot_capacity {
            c.snapshot_too_large.fetch_add(1, Ordering::Relaxed);
            if !self.warned_too_large {
                warning!(
                    "ruvector_dag_learner: the learned state ({} kB) exceeds ruvector.dag_snapshot_kb ({} kB); \
                     backends keep the previous snapshot until it is raised (needs a restart)",
                    bytes.len() / 1024,
                    c.snapshot_capacity / 1024
                );
                self.warned_too_large = true;
            }
            return;
        }
        // Seqlock write: odd while the bytes change. The worker is the only writer.
        c.snapshot_seq.fetch_add(1, Ordering::AcqRel);
        std::sync::atomic::fence(Ordering::Release);
        // SAFETY: the area holds `snapshot_capacity` bytes and `bytes` fits; readers validate the sequence.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), snapshot_area(c), bytes.len()) };
        c.snapshot_len.store(bytes.len() as u64, Ordering::Release);
        c.snapshot_seq.fetch_add(1, Ordering::Release);
        c.patterns.store(self.engine.reasoning_bank.len() as u64, Ordering::Relaxed);
    }
}

/// Makes every backend re-plan its cached plans (prepared statements, PL/pgSQL), so a changed arm takes effect
/// for them too: a relcache invalidation of everything, delivered at commit.
fn invalidate_plan_caches() {
    BackgroundWorker::transaction(|| {
        // SAFETY: queues a shared invalidation message inside this transaction.
        unsafe { pg_sys::CacheInvalidateRelcacheAll() };
    });
}

/// Whether the extension's tables exist in the current database.
pub(crate) fn extension_installed() -> bool {
    Spi::get_one::<bool>("SELECT to_regclass('ruvector.dag_learning_state') IS NOT NULL").ok().flatten() == Some(true)
}
