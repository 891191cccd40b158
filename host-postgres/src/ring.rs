//! The shared-memory trajectory ring: every captured execution, fixed-size records, one LWLock.
//!
//! Sized at server start by `ruvector.dag_max_trajectories`. When full, a new record overwrites the oldest and
//! the overwrite is counted; a plan whose binary encoding does not fit a record's plan area is recorded without
//! it (timings kept) and counted too. Readers copy records out under a shared lock.
//!
//! Without `shared_preload_libraries` there is no ring: [`available`] is false, writers drop records and
//! readers see an empty ring.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

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
}

/// One execution. `Copy` and `repr(C)`: it lives in shared memory.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Record {
    /// Sequence number, from 1; 0 marks an empty slot.
    pub(crate) seq: u64,
    pub(crate) query_id: u64,
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
    pub(crate) plan: [u8; PLAN_BYTES],
}

impl Record {
    /// An empty record (`seq` 0).
    pub(crate) fn empty() -> Self {
        Record {
            seq: 0,
            query_id: 0,
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
            plan: [0; PLAN_BYTES],
        }
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
    lock: *mut pg_sys::LWLock,
    capacity: u64,
    next_seq: u64,
    overwritten: u64,
    plans_too_large: u64,
}

/// Counters of the ring.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) capacity: u64,
    pub(crate) recorded: u64,
    pub(crate) overwritten: u64,
    pub(crate) plans_too_large: u64,
}

static RING: AtomicPtr<Header> = AtomicPtr::new(ptr::null_mut());
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

const NAME: &std::ffi::CStr = c"ruvector_dag trajectory ring";

fn capacity() -> usize {
    crate::gucs::MAX_TRAJECTORIES.get().max(1) as usize
}

fn size_of_ring(capacity: usize) -> usize {
    size_of::<Header>() + capacity * size_of::<Record>()
}

/// Installs the shared-memory hooks. Call from `_PG_init` while preloading.
pub(crate) fn init() {
    // SAFETY: _PG_init runs single-threaded in the postmaster; we chain the previous hooks.
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

#[pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: called by the postmaster in the shmem request phase; the previous hook is called first.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| prev());
        }
        pg_sys::RequestAddinShmemSpace(size_of_ring(capacity()));
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), 1);
    }
}

#[pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: shmem startup: we create or attach the struct under AddinShmemInitLock, as PostgreSQL requires.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| prev());
        }
        let cap = capacity();
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock; // AddinShmemInitLock
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let header = pg_sys::ShmemInitStruct(NAME.as_ptr(), size_of_ring(cap), &mut found).cast::<Header>();
        if !found {
            header.write(Header {
                lock: &raw mut (*pg_sys::GetNamedLWLockTranche(NAME.as_ptr())).lock,
                capacity: cap as u64,
                next_seq: 1,
                overwritten: 0,
                plans_too_large: 0,
            });
            let records = records_ptr(header);
            for i in 0..cap {
                records.add(i).write(Record::empty());
            }
        }
        pg_sys::LWLockRelease(init_lock);
        RING.store(header, Ordering::Release);
    }
}

fn records_ptr(header: *mut Header) -> *mut Record {
    // SAFETY: the records follow the header in the same allocation; Header's size keeps Record aligned (8).
    unsafe { header.cast::<u8>().add(size_of::<Header>()).cast::<Record>() }
}

/// True when the ring exists (the library was preloaded).
pub(crate) fn available() -> bool {
    !RING.load(Ordering::Acquire).is_null()
}

/// Appends `record` (its `seq` is assigned here). Returns the sequence number, or `None` without a ring.
pub(crate) fn push(mut record: Record, plan_too_large: bool) -> Option<u64> {
    let header = RING.load(Ordering::Acquire);
    if header.is_null() {
        return None;
    }
    // SAFETY: the header and records live in shared memory for the server's lifetime; writes happen under the
    // exclusive LWLock.
    unsafe {
        let h = &mut *header;
        pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let seq = h.next_seq;
        h.next_seq += 1;
        let slot = ((seq - 1) % h.capacity) as usize;
        let target = records_ptr(header).add(slot);
        if (*target).seq != 0 {
            h.overwritten += 1;
        }
        if plan_too_large {
            h.plans_too_large += 1;
        }
        record.seq = seq;
        target.write(record);
        pg_sys::LWLockRelease(h.lock);
        Some(seq)
    }
}

/// Copies out up to `limit` records, newest first, that pass `keep`.
pub(crate) fn read(limit: usize, mut keep: impl FnMut(&Record) -> bool) -> Vec<Record> {
    let header = RING.load(Ordering::Acquire);
    if header.is_null() {
        return Vec::new();
    }
    let mut out = Vec::new();
    // SAFETY: as in `push`, under the shared LWLock. `keep` only reads the record; it must not raise an ERROR
    // while the lock is held (an ERROR would release it anyway through LWLockReleaseAll).
    unsafe {
        let h = &*header;
        pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_SHARED);
        let newest = h.next_seq - 1;
        let oldest = newest.saturating_sub(h.capacity - 1).max(1);
        let mut seq = newest;
        while seq >= oldest && out.len() < limit && seq > 0 {
            let r = &*records_ptr(header).add(((seq - 1) % h.capacity) as usize);
            if r.seq == seq && keep(r) {
                out.push(*r);
            }
            seq -= 1;
        }
        pg_sys::LWLockRelease(h.lock);
    }
    out
}

/// The ring's counters (zeros without a ring).
pub(crate) fn stats() -> Stats {
    let header = RING.load(Ordering::Acquire);
    if header.is_null() {
        return Stats::default();
    }
    // SAFETY: as in `read`.
    unsafe {
        let h = &*header;
        pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_SHARED);
        let s = Stats {
            capacity: h.capacity,
            recorded: h.next_seq - 1,
            overwritten: h.overwritten,
            plans_too_large: h.plans_too_large,
        };
        pg_sys::LWLockRelease(h.lock);
        s
    }
}
