//! PostgreSQL extension `ruvector_dag`: the thin shell around the `ruvector-dag` framework.
//!
//! One module per concern, each with an `init()` that `_PG_init` calls: [`gucs`] (settings), [`settings`]
//! (`ruvector.toml`), [`plugins`] (the plugin registry, with the dynamic libraries loaded at startup), [`shmem`] (shared memory for [`ring`], the trajectory ring, and
//! [`learner`], the learning worker's control block), [`hooks`] (planner and executor hooks that capture plans
//! and executions), [`learner`] (the background worker). SQL functions live in [`sql`], [`analysis`] and
//! [`learning_sql`]. Algorithms never live here; this crate converts PostgreSQL's structures and calls the library.
//!
//! Loaded through `shared_preload_libraries = 'ruvector_dag'` the hooks and the ring are active; without it the
//! SQL functions still work and say (NOTICE) that capture is off.
#![deny(ffi_unwind_calls)]
// This crate is the FFI boundary: `unsafe` is required, and every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

mod advisor;
mod advisor_auto;
mod analysis;
mod anomalies;
mod capture;
mod classes;
mod drift;
mod explain;
mod gucs;
mod healing;
mod hooks;
mod index_health;
mod learner;
mod learning_sql;
mod plugins;
mod qudag;
mod query_id;
mod repairs;
mod replay;
mod rewrite;
mod rewrite_text;
mod ring;
mod session;
mod settings;
mod shmem;
mod sql;
mod statistics_advice;
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
        plugins::init();
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
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::OnceLock;

    /// Where the test cluster's `ruvector.toml` and plugin libraries live (readable by the server's user).
    const PLUGIN_TEST_DIR: &str = "/tmp/ruvector-dag-pgtest";

    /// Runs before every test; the first call (before the cluster starts) builds the example plugin library
    /// and writes a `ruvector.toml` listing it and a corrupt library, which the server must log and skip.
    pub fn setup(_options: Vec<&str>) {
        static READY: OnceLock<()> = OnceLock::new();
        READY.get_or_init(build_test_plugins);
    }

    fn build_test_plugins() {
        let dir = Path::new(PLUGIN_TEST_DIR);
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).expect("create the plugin test directory");
        for d in [dir, plugins.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        // A target directory of its own: the outer cargo holds the workspace's build lock.
        let target = dir.join("target");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--quiet", "--locked", "-p", "plugin-example-attention"])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the example plugin failed");
        let lib = plugins.join("libplugin_example_attention.so");
        std::fs::copy(target.join("debug/libplugin_example_attention.so"), &lib).expect("copy the plugin");
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let corrupt = plugins.join("corrupt.so");
        std::fs::write(&corrupt, b"not a shared library").expect("write");
        std::fs::set_permissions(&corrupt, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        // Every repair strategy, rebuilds first, with a parameter: the order and the parameter are tested.
        let toml = "[healing]\n\
                    strategies = [\"reindex\", \"vacuum\", \"recluster\", \"search_breadth\", \"pattern_reset\", \
                    \"learning_rollback\"]\n\
                    [healing.reindex]\nlock_timeout_ms = 30000\n\
                    [[plugins.dynamic]]\npath = \"plugins/libplugin_example_attention.so\"\n\
                    [[plugins.dynamic]]\npath = \"plugins/corrupt.so\"\n";
        std::fs::write(dir.join("ruvector.toml"), toml).expect("write ruvector.toml");
        std::fs::set_permissions(dir.join("ruvector.toml"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// Settings for the test cluster: preload the library so hooks, shared memory and the worker load.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'ruvector_dag'",
            "ruvector.config_file = '/tmp/ruvector-dag-pgtest/ruvector.toml'",
            "ruvector.dag_max_trajectories = 256",
            // The learner keeps its state in the database the tests run in.
            "ruvector.dag_database = 'pgrx_tests'",
            // Pattern sharing is off by default; the qudag_* tests connect the worker to a local testnet.
            "ruvector.dag_qudag_enabled = on",
        ]
    }
}
