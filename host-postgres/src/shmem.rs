//! Shared memory: one request at server start for the trajectory ring ([`crate::ring`]) and the learner's control
//! block and pattern snapshot ([`crate::learner`]), created or attached together in the startup hook.
//!
//! Only while preloaded: without `shared_preload_libraries` none of it exists, and both modules say so
//! (`ring::available()`, `learner::available()`).

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

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
        pg_sys::RequestAddinShmemSpace(
            crate::ring::shmem_size() + crate::learner::shmem_size() + crate::steering::shmem_size(),
        );
    }
}

#[pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: shmem startup: we create or attach our structs under AddinShmemInitLock, as PostgreSQL requires.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| prev());
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock; // AddinShmemInitLock
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        crate::ring::attach();
        crate::learner::attach();
        crate::steering::attach();
        pg_sys::LWLockRelease(init_lock);
    }
}

/// Reads data guarded by a single-writer seqlock: `seq` is 0 while nothing was ever written, odd while the writer
/// changes the data, and bumped to the next even number when it is done. Calls `copy` between two loads of `seq`
/// and returns `(seq, copy)` when they agree; `None` when nothing was written or the writer kept it busy for
/// `tries` attempts.
pub(crate) fn seqlock_read<T>(seq: &AtomicU64, tries: usize, mut copy: impl FnMut() -> T) -> Option<(u64, T)> {
    for _ in 0..tries {
        let before = seq.load(Ordering::Acquire);
        if before == 0 {
            return None;
        }
        if before % 2 == 1 {
            std::thread::yield_now();
            continue;
        }
        let value = copy();
        std::sync::atomic::fence(Ordering::Acquire);
        if seq.load(Ordering::Acquire) == before {
            return Some((before, value));
        }
    }
    None
}
