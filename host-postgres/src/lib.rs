//! PostgreSQL extension `ruvector_dag`: the thin shell around the `ruvector-dag` framework.
//!
//! One module per concern, each with an `init()` that `_PG_init` calls: [`gucs`] (settings), [`settings`]
//! (`ruvector.toml` and the plugin set), [`shmem`] (shared memory for [`ring`], the trajectory ring, and
//! [`learner`], the learning worker's control block), [`hooks`] (planner and executor hooks that capture plans
//! and executions), [`learner`] (the background worker). SQL functions live in [`sql`], [`analysis`] and
//! [`learning_sql`]. Algorithms never live here; this crate converts PostgreSQL's structures and calls the library.
//!
//! Loaded through `shared_preload_libraries = 'ruvector_dag'` the hooks and the ring are active; without it the
//! SQL functions still work and say (NOTICE) that capture is off.
#![deny(ffi_unwind_calls)]
// This crate is the FFI boundary: `unsafe` is required, and every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

mod analysis;
mod capture;
mod classes;
mod explain;
mod gucs;
mod hooks;
mod learner;
mod learning_sql;
mod replay;
mod ring;
mod session;
mod settings;
mod shmem;
mod sql;
mod steering;

// Link the built-in plugin crates so their registrations are kept.
use ruvector_dag_attention as _;
use ruvector_dag_learning as _;

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

/// Called once when the library is loaded.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    settings::init();
    // SAFETY: a global flag PostgreSQL sets while processing shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        shmem::init();
        hooks::init();
        learner::init();
    }
}

/// Whether the library was preloaded: hooks installed and the shared-memory ring present.
pub(crate) fn preloaded() -> bool {
    hooks::installed()
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    /// One-off setup before the test cluster starts.
    pub fn setup(_options: Vec<&str>) {}

    /// Settings for the test cluster: preload the library so hooks, shared memory and the worker load.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'ruvector_dag'",
            "ruvector.dag_max_trajectories = 256",
            // The learner keeps its state in the database the tests run in.
            "ruvector.dag_database = 'pgrx_tests'",
        ]
    }
}
