//! The learner's shared memory: the control block (counters, the last cycle's report, requests), the mailbox
//! backends hand commands to the worker through, and the snapshot area the worker publishes its state in.

use pgrx::pg_sys;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Counters and the last cycle's report, in shared memory.
#[repr(C)]
pub(super) struct Control {
    pub(super) worker_pid: AtomicI32,
    pub(super) worker_latch: AtomicPtr<pg_sys::Latch>,
    pub(super) learn_requested: AtomicU64,
    pub(super) learn_done: AtomicU64,
    /// Executions learned from, coalesced, skipped (plan never seen by the worker), lost (ring overwrote them).
    pub(super) learned: AtomicU64,
    pub(super) coalesced: AtomicU64,
    pub(super) unknown_plan: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) cycles: AtomicU64,
    pub(super) patterns: AtomicU64,
    pub(super) last_cycle_at: AtomicI64,
    /// Background replays run, classes steered now, mean improvement of steered classes (f64 bits; NaN: none).
    pub(super) replays: AtomicU64,
    pub(super) steered: AtomicU64,
    pub(super) avg_improvement: AtomicU64,
    /// Last cycle: trajectories, patterns updated, IVF lists, EWC constraints updated, microseconds.
    pub(super) report: [AtomicU64; 5],
    /// 0 = never saved, 1 = saved, 2 = extension not installed in `ruvector.dag_database`, 3 = save failed.
    pub(super) persist_status: AtomicU64,
    /// Latency anomaly detection: query classes warming up, normal, in an incident, blacked out; observations
    /// skipped as known-benign.
    pub(super) anomaly_states: [AtomicU64; 5],
    /// Whether the worker's network client is connected (1) or not (0).
    pub(super) qudag_connected: AtomicU32,
    /// One command at a time for the worker (see [`Mailbox`]).
    pub(super) mailbox: Mailbox,
    /// Seqlock of the snapshot: odd while the worker writes; the generation is `seq / 2`.
    pub(super) snapshot_seq: AtomicU64,
    pub(super) snapshot_len: AtomicU64,
    pub(super) snapshot_capacity: u64,
    pub(super) snapshot_too_large: AtomicU64,
}

/// A command a backend asks the worker to carry out on the learned state, and its result.
///
/// States: `IDLE` → (a backend claims it) `WRITING` → `SUBMITTED` → (the worker) `EXECUTING` → `DONE` → (the
/// backend reads the result) `IDLE`. A backend that stops waiting (cancel) takes back a submission the worker has
/// not started, or marks a running one `ABANDONED`, which the worker then clears.
#[repr(C)]
pub(super) struct Mailbox {
    pub(super) state: AtomicU32,
    pub(super) kind: AtomicU32,
    pub(super) args: [AtomicU64; 3],
    pub(super) results: [AtomicU64; 4],
    /// 0 = ok, else the length of the error message in `payload`.
    pub(super) error_len: AtomicU32,
    pub(super) payload_len: AtomicU32,
    pub(super) payload: [std::cell::UnsafeCell<u8>; MAILBOX_BYTES],
}

pub(super) const MAILBOX_BYTES: usize = 16 * 1024;
pub(super) const IDLE: u32 = 0;
pub(super) const WRITING: u32 = 1;
pub(super) const SUBMITTED: u32 = 2;
pub(super) const EXECUTING: u32 = 3;
pub(super) const DONE: u32 = 4;
pub(super) const ABANDONED: u32 = 5;

/// What a backend can ask of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Command {
    /// Add a pattern (payload: JSON `{"vector": [...], "metadata": {...}, "quality": q}`); result 0 = its id.
    StorePattern = 1,
    /// Merge near-duplicates and rebuild the index with `args[0]` lists; results: lists before, after, patterns
    /// merged, microseconds.
    Consolidate = 2,
    /// Forget learning: `args[0]` = keep patterns, `args[1]` = keep trajectories.
    Reset = 3,
    /// Replace the state with the `args[1]` bytes in dynamic shared memory segment `args[0]`; results: patterns,
    /// index lists.
    Import = 4,
    /// Forget the measured settings of the patterns whose ids are the payload (little-endian u64s; empty = all);
    /// result 0: patterns changed.
    ResetQuality = 5,
    /// Re-cluster the pattern index (k-means++) into its configured number of lists; results: lists before,
    /// after, the silhouette as f64 bits (NaN: none), microseconds.
    Recluster = 6,
    /// A `qudag_*` request (payload: a JSON [`super::network::Request`]); the reply is JSON in the payload.
    Network = 7,
}

impl Mailbox {
    pub(super) fn new() -> Self {
        Mailbox {
            state: AtomicU32::new(IDLE),
            kind: AtomicU32::new(0),
            args: Default::default(),
            results: Default::default(),
            error_len: AtomicU32::new(0),
            payload_len: AtomicU32::new(0),
            payload: [const { std::cell::UnsafeCell::new(0) }; MAILBOX_BYTES],
        }
    }

    pub(super) fn payload_ptr(&self) -> *mut u8 {
        self.payload.as_ptr().cast_mut().cast::<u8>()
    }

    /// Copies `bytes` into the payload (the caller owns the mailbox: WRITING or EXECUTING).
    pub(super) fn write_payload(&self, bytes: &[u8]) {
        let n = bytes.len().min(MAILBOX_BYTES);
        // SAFETY: the area holds MAILBOX_BYTES; only the mailbox's current owner writes it.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), self.payload_ptr(), n) };
        self.payload_len.store(n as u32, Ordering::Release);
    }

    pub(super) fn read_payload(&self) -> Vec<u8> {
        let n = (self.payload_len.load(Ordering::Acquire) as usize).min(MAILBOX_BYTES);
        let mut out = vec![0u8; n];
        // SAFETY: as in write_payload; the reader owns the mailbox in this state.
        unsafe { ptr::copy_nonoverlapping(self.payload_ptr(), out.as_mut_ptr(), n) };
        out
    }
}

static CONTROL: AtomicPtr<Control> = AtomicPtr::new(ptr::null_mut());
const NAME: &std::ffi::CStr = c"ruvector_dag learner";

fn snapshot_capacity() -> usize {
    crate::gucs::SNAPSHOT_KB.get().max(64) as usize * 1024
}

/// Bytes of shared memory the control block and snapshot need.
pub(crate) fn shmem_size() -> usize {
    size_of::<Control>() + snapshot_capacity()
}

/// Creates or attaches the control block.
///
/// # Safety
/// Call only from the shared-memory startup hook, under `AddinShmemInitLock`.
pub(crate) unsafe fn attach() {
    // SAFETY: the caller holds AddinShmemInitLock in the shmem startup phase; a new block is written whole.
    unsafe {
        let mut found = false;
        let control = pg_sys::ShmemInitStruct(NAME.as_ptr(), shmem_size(), &mut found).cast::<Control>();
        if !found {
            control.write(Control {
                worker_pid: AtomicI32::new(0),
                worker_latch: AtomicPtr::new(ptr::null_mut()),
                learn_requested: AtomicU64::new(0),
                learn_done: AtomicU64::new(0),
                learned: AtomicU64::new(0),
                coalesced: AtomicU64::new(0),
                unknown_plan: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                cycles: AtomicU64::new(0),
                patterns: AtomicU64::new(0),
                last_cycle_at: AtomicI64::new(0),
                replays: AtomicU64::new(0),
                steered: AtomicU64::new(0),
                avg_improvement: AtomicU64::new(f64::NAN.to_bits()),
                report: Default::default(),
                persist_status: AtomicU64::new(0),
                anomaly_states: Default::default(),
                qudag_connected: AtomicU32::new(0),
                mailbox: Mailbox::new(),
                snapshot_seq: AtomicU64::new(0),
                snapshot_len: AtomicU64::new(0),
                snapshot_capacity: snapshot_capacity() as u64,
                snapshot_too_large: AtomicU64::new(0),
            });
        }
        CONTROL.store(control, Ordering::Release);
    }
}

pub(super) fn control() -> Option<&'static Control> {
    // SAFETY: the block lives in shared memory for the server's lifetime; all mutable fields are atomics.
    unsafe { CONTROL.load(Ordering::Acquire).as_ref() }
}

pub(super) fn snapshot_area(c: &Control) -> *mut u8 {
    // SAFETY: the snapshot bytes follow the control block in the same allocation.
    unsafe { (c as *const Control).cast_mut().cast::<u8>().add(size_of::<Control>()) }
}
