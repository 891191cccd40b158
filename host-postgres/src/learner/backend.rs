//! The backend side of the learner: this backend's copy of the published state, the counters, and requests to
//! the worker (`dag_learn_now`, mailbox commands).

use super::control::{
    ABANDONED, Control, DONE, EXECUTING, IDLE, MAILBOX_BYTES, Mailbox, SUBMITTED, WRITING, control, snapshot_area,
};
use super::{Command, LEARN_TIMEOUT, WORKER_START_TIMEOUT, extension_installed, sona_config};
use crate::sql::fail;
use pgrx::pg_sys;
use pgrx::prelude::*;
use ruvector_dag_learning::DagSonaEngine;
use std::cell::RefCell;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Where a backend's copy of the learned state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The worker's published snapshot of this generation.
    Snapshot(u64),
    /// `ruvector.dag_learning_state` (without preload).
    Table,
    /// Nothing learned yet: an untrained engine.
    Fresh,
}

thread_local! {
    static CACHE: RefCell<Option<(Origin, DagSonaEngine)>> = const { RefCell::new(None) };
}

/// Copies the published snapshot; `None` when nothing was published or the worker kept rewriting it.
fn read_snapshot(c: &Control) -> Option<(u64, Vec<u8>)> {
    let (seq, bytes) = crate::shmem::seqlock_read(&c.snapshot_seq, 100, || {
        let len = (c.snapshot_len.load(Ordering::Acquire) as usize).min(c.snapshot_capacity as usize);
        let mut bytes = vec![0u8; len];
        // SAFETY: the area holds `snapshot_capacity` bytes; the copy is validated by the sequence number.
        unsafe { ptr::copy_nonoverlapping(snapshot_area(c), bytes.as_mut_ptr(), len) };
        bytes
    })?;
    Some((seq / 2, bytes))
}

/// Runs `f` on this backend's copy of the learned state (refreshed when the worker published a newer one).
pub(crate) fn with_engine<R>(f: impl FnOnce(&mut DagSonaEngine, Origin) -> R) -> R {
    let fresh = || (Origin::Fresh, DagSonaEngine::new(sona_config()));
    let restore = |origin: Origin, bytes: &[u8]| match DagSonaEngine::from_state(sona_config(), bytes) {
        Ok((engine, _)) => (origin, engine),
        Err(e) => fail(PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, format!("RV004 LEARNING_FAILED: {e}")),
    };
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        match control() {
            Some(c) => {
                let generation = c.snapshot_seq.load(Ordering::Acquire) / 2;
                let stale = !matches!(&*cache, Some((Origin::Snapshot(g), _)) if *g == generation);
                if stale {
                    *cache = Some(match read_snapshot(c) {
                        Some((g, bytes)) => restore(Origin::Snapshot(g), &bytes),
                        None => fresh(),
                    });
                }
            }
            None => {
                // Without preload there is no worker: read what a preloaded server saved, every time.
                let saved: Option<Vec<u8>> = if extension_installed() {
                    crate::sql::as_extension_owner(|| {
                        Spi::get_one("SELECT state FROM ruvector.dag_learning_state WHERE name = 'current'")
                            .ok()
                            .flatten()
                    })
                } else {
                    None
                };
                *cache = Some(match saved {
                    Some(bytes) => restore(Origin::Table, &bytes),
                    None => fresh(),
                });
            }
        }
        let (origin, engine) = cache.as_mut().expect("filled above");
        f(engine, *origin)
    })
}

/// The learner's counters, for `dag_status` and `dag_health_check`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Status {
    pub(crate) worker_pid: i32,
    pub(crate) learned: u64,
    pub(crate) coalesced: u64,
    pub(crate) unknown_plan: u64,
    pub(crate) lost: u64,
    pub(crate) cycles: u64,
    pub(crate) patterns: u64,
    pub(crate) replays: u64,
    pub(crate) steered: u64,
    /// Mean `1 − steered / native` over steered classes (NaN when none was measured).
    pub(crate) avg_improvement: f64,
    pub(crate) last_cycle_at: i64,
    pub(crate) persist_status: u64,
    pub(crate) snapshot_generation: u64,
    pub(crate) snapshot_bytes: u64,
    pub(crate) snapshot_capacity: u64,
    pub(crate) snapshot_too_large: u64,
    /// Query classes warming up, normal, in a latency incident, blacked out; observations skipped as benign.
    pub(crate) anomaly_states: [u64; 5],
}

/// Counters (zeros without preload).
pub(crate) fn status() -> Status {
    let Some(c) = control() else { return Status::default() };
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Status {
        worker_pid: c.worker_pid.load(Ordering::Relaxed),
        learned: r(&c.learned),
        coalesced: r(&c.coalesced),
        unknown_plan: r(&c.unknown_plan),
        lost: r(&c.lost),
        cycles: r(&c.cycles),
        patterns: r(&c.patterns),
        replays: r(&c.replays),
        steered: r(&c.steered),
        avg_improvement: f64::from_bits(r(&c.avg_improvement)),
        last_cycle_at: c.last_cycle_at.load(Ordering::Relaxed),
        persist_status: r(&c.persist_status),
        snapshot_generation: r(&c.snapshot_seq) / 2,
        snapshot_bytes: r(&c.snapshot_len),
        snapshot_capacity: c.snapshot_capacity,
        snapshot_too_large: r(&c.snapshot_too_large),
        anomaly_states: c.anomaly_states.each_ref().map(r),
    }
}

/// The report of a cycle `dag_learn_now` asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CycleReport {
    pub(crate) trajectories: u64,
    pub(crate) patterns_updated: u64,
    pub(crate) clusters: u64,
    pub(crate) ewc_updated: u64,
    pub(crate) cycle_ms: f64,
    pub(crate) saved: bool,
}

/// Waits 10 ms on this backend's latch, honouring cancel requests.
fn wait_a_little() {
    // SAFETY: waits on this backend's own latch with a timeout.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            10,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    check_for_interrupts!();
}

/// Submits `command` to the worker and waits for its results (or its error, raised as RV004).
pub(crate) fn submit(command: Command, args: [u64; 3], payload: &[u8]) -> [u64; 4] {
    match submit_raw(command, args, payload) {
        Ok((results, _)) => results,
        Err(error) => fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("RV004 LEARNING_FAILED: {error}")),
    }
}

/// Submits a `qudag_*` request (JSON) to the worker; its JSON reply, or its error message (with its RV code).
pub(crate) fn submit_network(request: &[u8]) -> Result<Vec<u8>, String> {
    submit_raw(Command::Network, [0; 3], request).map(|(_, reply)| reply)
}

/// Whether the worker's network client is connected.
pub(crate) fn qudag_connected() -> bool {
    control().is_some_and(|c| c.qudag_connected.load(Ordering::Relaxed) == 1)
}

/// Submits `command` and waits: its results and the payload the worker left (its reply, for commands that
/// have one), or the worker's error message.
fn submit_raw(command: Command, args: [u64; 3], payload: &[u8]) -> Result<([u64; 4], Vec<u8>), String> {
    if in_learner_session() {
        // The worker waits for its replays: a replay waiting for the worker would stall both until a timeout.
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "requests to the ruvector_dag_learner worker are refused in the worker's own sessions (replays)",
        );
    }
    let c = running_worker();
    if payload.len() > MAILBOX_BYTES {
        fail(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("request of {} bytes is too large", payload.len()),
        );
    }
    let m = &c.mailbox;
    let start = Instant::now();
    while m.state.compare_exchange(IDLE, WRITING, Ordering::AcqRel, Ordering::Acquire).is_err() {
        if start.elapsed() > LEARN_TIMEOUT {
            fail(
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                "RV004 LEARNING_FAILED: the learner is busy with another request",
            );
        }
        wait_a_little();
    }
    m.kind.store(command as u32, Ordering::Release);
    for (slot, v) in m.args.iter().zip(args) {
        slot.store(v, Ordering::Release);
    }
    m.write_payload(payload);
    m.state.store(SUBMITTED, Ordering::Release);
    // If this backend stops waiting (cancel, error), give the mailbox back.
    struct Waiting<'a>(&'a Mailbox, bool);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            if !self.1 {
                let s = &self.0.state;
                if s.compare_exchange(SUBMITTED, IDLE, Ordering::AcqRel, Ordering::Acquire).is_err()
                    && s.compare_exchange(EXECUTING, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_err()
                {
                    let _ = s.compare_exchange(DONE, IDLE, Ordering::AcqRel, Ordering::Acquire);
                }
            }
        }
    }
    let mut waiting = Waiting(m, false);
    wake(c);
    wait_for_worker(c, "request", || m.state.load(Ordering::Acquire) == DONE);
    let results: [u64; 4] = std::array::from_fn(|i| m.results[i].load(Ordering::Acquire));
    let failed = m.error_len.load(Ordering::Acquire) > 0;
    let reply = m.read_payload();
    waiting.1 = true;
    m.state.store(IDLE, Ordering::Release);
    if failed { Err(String::from_utf8_lossy(&reply).into_owned()) } else { Ok((results, reply)) }
}

/// Whether this backend is one of the learner worker's own client sessions (replays, maintenance).
fn in_learner_session() -> bool {
    // SAFETY: reads the application_name GUC's current value (NULL or a C string owned by the GUC machinery).
    unsafe {
        let name = pg_sys::application_name;
        !name.is_null() && std::ffi::CStr::from_ptr(name).to_bytes().starts_with(b"ruvector_dag_learner")
    }
}

/// Waits until `done()`, or raises RV004 naming `what` when the worker stops or [`LEARN_TIMEOUT`] passes.
fn wait_for_worker(c: &Control, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > LEARN_TIMEOUT || c.worker_pid.load(Ordering::Acquire) == 0 {
            fail(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("RV004 LEARNING_FAILED: the ruvector_dag_learner worker did not complete the {what}"),
            );
        }
        wait_a_little();
    }
}

fn wake(c: &Control) {
    let latch = c.worker_latch.load(Ordering::Acquire);
    if !latch.is_null() {
        // SAFETY: the worker's latch is in shared memory (its PGPROC); setting a latch of an exited process is
        // harmless.
        unsafe { pg_sys::SetLatch(latch) };
    }
}

/// The control block of a running worker (waiting up to [`WORKER_START_TIMEOUT`] for one that is starting), or an
/// RV004 ERROR.
fn running_worker() -> &'static Control {
    let Some(c) = control() else {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "RV004 LEARNING_FAILED: the learning loop needs ruvector_dag in shared_preload_libraries",
        )
    };
    let start = Instant::now();
    while c.worker_pid.load(Ordering::Acquire) == 0 && start.elapsed() < WORKER_START_TIMEOUT {
        wait_a_little();
    }
    if c.worker_pid.load(Ordering::Acquire) == 0 || c.worker_latch.load(Ordering::Acquire).is_null() {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "RV004 LEARNING_FAILED: the ruvector_dag_learner worker is not running (see the server log)",
        );
    }
    c
}

/// Wakes the worker (if running) so that it looks at its work at once.
pub(crate) fn wake_worker() {
    if let Some(c) = control() {
        wake(c);
    }
}

/// Asks the worker for a cycle (and a save) soon, without waiting.
pub(crate) fn request_cycle() {
    if let Some(c) = control() {
        c.learn_requested.fetch_add(1, Ordering::AcqRel);
        wake(c);
    }
}

/// Asks the worker to drain the ring and run a cycle now, and waits for it.
pub(crate) fn learn_now() -> CycleReport {
    let c = running_worker();
    let target = c.learn_requested.fetch_add(1, Ordering::AcqRel) + 1;
    wake(c);
    wait_for_worker(c, "cycle", || c.learn_done.load(Ordering::Acquire) >= target);
    let r = |i: usize| c.report[i].load(Ordering::Relaxed);
    CycleReport {
        trajectories: r(0),
        patterns_updated: r(1),
        clusters: r(2),
        ewc_updated: r(3),
        cycle_ms: r(4) as f64 / 1000.0,
        saved: c.persist_status.load(Ordering::Relaxed) == 1,
    }
}
