//! The shared-memory trajectory ring: every captured execution, fixed-size records, lock-free writes.
//!
//! Sized at server start by `ruvector.dag_max_trajectories`. When full, a new record overwrites the oldest and
//! the overwrite is counted; a plan whose binary encoding does not fit a record's plan area is recorded without
//! it (timings kept) and counted too. Writers never block each other (an atomic counter assigns slots, a
//! per-slot sequence number guards each record); readers copy records out and skip any being rewritten.
//!
//! Without `shared_preload_libraries` there is no ring: [`available`] is false, writers drop records and
//! readers see an empty ring.

use pgrx::pg_sys;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Bytes of a record's plan area (the binary-encoded DAG).
pub(crate) const PLAN_BYTES: usize = 960;

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Source {
    /// Captured by the executor hooks.
    Hook = 0,
    /// Recorded through `dag_record_trajectory`.
    Manual = 1,
    /// Captured by the hooks, for an execution that ended in an error (a cancel, a statement timeout): its time is
    /// the statement's until the abort, a lower bound of its latency; no rows.
    Failed = 2,
}

/// One execution. `Copy` and `repr(C)`: it lives in shared memory.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Record {
    /// Sequence number, from 1; 0 marks an empty slot.
    pub(crate) seq: u64,
    pub(crate) query_id: u64,
    /// Which parameter values the execution ran with (`hooks::variant_key`), for executions of steered classes;
    /// else 0.
    pub(crate) variant: u64,
    pub(crate) plan_hash: u64,
    /// `GetCurrentTimestamp()` at recording.
    pub(crate) recorded_at: i64,
    pub(crate) execution_ms: f64,
    /// Planning time; NaN when unknown (a cached plan).
    pub(crate) planning_ms: f64,
    /// Rows processed (`es_processed`).
    pub(crate) rows: u64,
    /// Measured improvement over the native plan; NaN when unknown.
    pub(crate) improvement_ratio: f64,
    pub(crate) user_id: u32,
    pub(crate) db_id: u32,
    pub(crate) node_count: u32,
    /// Length of `plan` in use; 0 when the plan was not stored.
    pub(crate) plan_len: u16,
    /// Index into `gucs::ATTENTION_TYPES`.
    pub(crate) mechanism: u8,
    pub(crate) source: u8,
    /// True when the plan carries per-node actuals.
    pub(crate) has_actuals: bool,
    /// The setting arm the plan was made under (`steering::ARMS`; 0 = native).
    pub(crate) arm: u8,
    pub(crate) plan: [u8; PLAN_BYTES],
}

impl Record {
    /// An empty record (`seq` 0).
    pub(crate) fn empty() -> Self {
        Record {
            seq: 0,
            query_id: 0,
            variant: 0,
            plan_hash: 0,
            recorded_at: 0,
            execution_ms: 0.0,
            planning_ms: f64::NAN,
            rows: 0,
            improvement_ratio: f64::NAN,
            user_id: 0,
            db_id: 0,
            node_count: 0,
            plan_len: 0,
            mechanism: 0,
            source: Source::Hook as u8,
            has_actuals: false,
            arm: 0,
            plan: [0; PLAN_BYTES],
        }
    }

    /// Resets every field but the plan area, which `plan_len = 0` marks unused (so a reused slot is not
    /// rewritten byte by byte).
    fn reset(&mut self, seq: u64) {
        self.seq = seq;
        self.query_id = 0;
        self.variant = 0;
        self.plan_hash = 0;
        self.recorded_at = 0;
        self.execution_ms = 0.0;
        self.planning_ms = f64::NAN;
        self.rows = 0;
        self.improvement_ratio = f64::NAN;
        self.user_id = 0;
        self.db_id = 0;
        self.node_count = 0;
        self.plan_len = 0;
        self.mechanism = 0;
        self.source = Source::Hook as u8;
        self.has_actuals = false;
        self.arm = 0;
    }

    /// Stores `bytes` as the plan if it fits; returns whether it did.
    pub(crate) fn set_plan(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > PLAN_BYTES {
            self.plan_len = 0;
            return false;
        }
        self.plan[..bytes.len()].copy_from_slice(bytes);
        self.plan_len = bytes.len() as u16;
        true
    }

    /// The stored plan bytes, if any.
    pub(crate) fn plan_bytes(&self) -> Option<&[u8]> {
        (self.plan_len > 0).then(|| &self.plan[..self.plan_len as usize])
    }
}

#[repr(C)]
struct Header {
    capacity: u64,
    /// The one counter every write changes (overwrites are derived from it: each record beyond the capacity
    /// replaced the oldest; a second shared counter written per record cost pgbench measurable throughput).
    next_seq: AtomicU64,
    plans_too_large: AtomicU64,
    /// Records lost because their slot was still being written by a descheduled writer a whole ring earlier.
    dropped: AtomicU64,
    /// Captured executions that never ended: their transaction aborted (an error or a cancel) while they ran.
    aborted: AtomicU64,
}

/// One slot: the committed sequence number (0 empty, `BUSY` while written) guarding the record (a seqlock).
#[repr(C)]
struct Slot {
    seq: AtomicU64,
    record: Record,
}

const BUSY: u64 = u64::MAX;

/// Counters of the ring.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) capacity: u64,
    pub(crate) recorded: u64,
    pub(crate) overwritten: u64,
    pub(crate) plans_too_large: u64,
    pub(crate) dropped: u64,
    pub(crate) aborted: u64,
}

static RING: AtomicPtr<Header> = AtomicPtr::new(ptr::null_mut());
const NAME: &std::ffi::CStr = c"ruvector_dag trajectory ring";

fn capacity() -> usize {
    crate::gucs::MAX_TRAJECTORIES.get().max(1) as usize
}

/// Bytes of shared memory the ring needs.
pub(crate) fn shmem_size() -> usize {
    size_of::<Header>() + capacity() * size_of::<Slot>()
}

/// Creates or attaches the ring (see [`crate::shmem`], which holds `AddinShmemInitLock`).
///
/// # Safety
/// Call only from the shared-memory startup hook, under `AddinShmemInitLock`.
pub(crate) unsafe fn attach() {
    // SAFETY: the caller holds AddinShmemInitLock in the shmem startup phase.
    unsafe {
        let cap = capacity();
        let mut found = false;
        let header = pg_sys::ShmemInitStruct(NAME.as_ptr(), shmem_size(), &mut found).cast::<Header>();
        if !found {
            header.write(Header {
                capacity: cap as u64,
                next_seq: AtomicU64::new(1),
                plans_too_large: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                aborted: AtomicU64::new(0),
            });
            let slots = slots_ptr(header);
            for i in 0..cap {
                slots.add(i).write(Slot { seq: AtomicU64::new(0), record: Record::empty() });
            }
        }
        RING.store(header, Ordering::Release);
    }
}

fn slots_ptr(header: *mut Header) -> *mut Slot {
    // SAFETY: the slots follow the header in the same allocation; Header's size keeps Slot aligned (8).
    unsafe { header.cast::<u8>().add(size_of::<Header>()).cast::<Slot>() }
}

/// True when the ring exists (the library was preloaded).
pub(crate) fn available() -> bool {
    !RING.load(Ordering::Acquire).is_null()
}

/// Appends a record filled in by `fill` (its `seq` is assigned here); returns the sequence number, or `None`
/// without a ring or when the record had to be dropped.
///
/// Lock-free: a writer claims a sequence number with one atomic add and its slot with one compare-and-swap, so
/// concurrent backends never wait for each other.
pub(crate) fn push(fill: impl FnOnce(&mut Record) -> bool) -> Option<u64> {
    let header = RING.load(Ordering::Acquire);
    if header.is_null() {
        return None;
    }
    // SAFETY: the header and slots live in shared memory for the server's lifetime. The slot's body is written
    // only by the writer that swapped its `seq` to BUSY; readers validate `seq` around their copy (seqlock).
    unsafe {
        let h = &*header;
        let seq = h.next_seq.fetch_add(1, Ordering::Relaxed);
        let slot = &mut *slots_ptr(header).add(((seq - 1) % h.capacity) as usize);
        let mut current = slot.seq.load(Ordering::Relaxed);
        loop {
            if current == BUSY {
                h.dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match slot.seq.compare_exchange_weak(current, BUSY, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        let record = &mut slot.record;
        record.reset(seq);
        if !fill(record) {
            h.plans_too_large.fetch_add(1, Ordering::Relaxed);
        }
        slot.seq.store(seq, Ordering::Release);
        Some(seq)
    }
}

/// Copies out up to `limit` records, newest first, that pass `keep`. Records being written at that moment are
/// skipped.
pub(crate) fn read(limit: usize, mut keep: impl FnMut(&Record) -> bool) -> Vec<Record> {
    let header = RING.load(Ordering::Acquire);
    if header.is_null() {
        return Vec::new();
    }
    let mut out = Vec::new();
    // SAFETY: seqlock read: copy the body between two loads of the slot's seq and keep it only if both equal the
    // wanted sequence number (a concurrent writer changes seq to BUSY first). The copy is a volatile read.
    unsafe {
        let h = &*header;
        let newest = h.next_seq.load(Ordering::Acquire) - 1;
        let oldest = newest.saturating_sub(h.capacity - 1).max(1);
        let mut seq = newest;
        while seq >= oldest && seq > 0 && out.len() < limit {
            let slot = slots_ptr(header).add(((seq - 1) % h.capacity) as usize);
            if (*slot).seq.load(Ordering::Acquire) == seq {
                let copy = ptr::read_volatile(&raw const (*slot).record);
                std::sync::atomic::fence(Ordering::Acquire);
                if (*slot).seq.load(Ordering::Relaxed) == seq && copy.seq == seq && keep(&copy) {
                    out.push(copy);
                }
            }
            seq -= 1;
        }
    }
    out
}

/// Calls `f` on each record after sequence number `after`, oldest first, at most `limit`. Returns the last
/// sequence number looked at (pass it as `after` next time) and how many records in between were lost:
/// overwritten before they were read, or still being written.
///
/// Built for the learner's drain at the query rate: one scratch record is reused, and of each record only the
/// fields and the plan bytes in use are copied (most records carry no plan), so draining costs little more than
/// reading the fields.
pub(crate) fn drain_since(after: u64, limit: usize, mut f: impl FnMut(&Record)) -> (u64, u64) {
    let header = RING.load(Ordering::Acquire);
    if header.is_null() || limit == 0 {
        return (after, 0);
    }
    // SAFETY: seqlock reads as in `read`, over increasing sequence numbers, into a private scratch record.
    unsafe {
        let h = &*header;
        let newest = h.next_seq.load(Ordering::Acquire) - 1;
        if newest < after {
            // The ring restarted (crash restart of shared memory): start again from its beginning.
            return drain_since(0, limit, f);
        }
        if newest == after {
            return (after, 0);
        }
        let oldest = newest.saturating_sub(h.capacity - 1).max(1);
        let start = (after + 1).max(oldest);
        let end = newest.min(start + limit as u64 - 1);
        let mut lost = start - (after + 1);
        let mut scratch = Box::new(Record::empty());
        let fields = std::mem::offset_of!(Record, plan);
        for seq in start..=end {
            let slot = slots_ptr(header).add(((seq - 1) % h.capacity) as usize);
            if (*slot).seq.load(Ordering::Acquire) == seq {
                let src = (&raw const (*slot).record).cast::<u8>();
                let dst = (&raw mut *scratch).cast::<u8>();
                ptr::copy_nonoverlapping(src, dst, fields);
                let plan_len = usize::from(scratch.plan_len).min(PLAN_BYTES);
                ptr::copy_nonoverlapping(src.add(fields), dst.add(fields), plan_len);
                std::sync::atomic::fence(Ordering::Acquire);
                if (*slot).seq.load(Ordering::Relaxed) == seq && scratch.seq == seq {
                    f(&scratch);
                    continue;
                }
            }
            lost += 1;
        }
        (end, lost)
    }
}

/// The ring's counters (zeros without a ring).
pub(crate) fn stats() -> Stats {
    let header = RING.load(Ordering::Acquire);
    if header.is_null() {
        return Stats::default();
    }
    // SAFETY: the header lives in shared memory for the server's lifetime; its counters are atomics.
    let h = unsafe { &*header };
    Stats {
        capacity: h.capacity,
        recorded: h.next_seq.load(Ordering::Acquire) - 1,
        overwritten: (h.next_seq.load(Ordering::Acquire) - 1).saturating_sub(h.capacity),
        plans_too_large: h.plans_too_large.load(Ordering::Relaxed),
        dropped: h.dropped.load(Ordering::Relaxed),
        aborted: h.aborted.load(Ordering::Relaxed),
    }
}

/// Counts `n` captured executions that aborted (the error path only: successful executions touch nothing here).
pub(crate) fn count_aborted(n: u64) {
    let header = RING.load(Ordering::Acquire);
    if !header.is_null() {
        // SAFETY: as in `stats`.
        unsafe { &*header }.aborted.fetch_add(n, Ordering::Relaxed);
    }
}
