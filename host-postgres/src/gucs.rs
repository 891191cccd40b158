//! GUCs (`ruvector.*`): registered in `_PG_init`, each with its range or allowed values and the context that
//! fits what it controls.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CString;

/// Names of the attention mechanisms `ruvector.dag_attention_type` accepts, in enum order.
pub(crate) const ATTENTION_TYPES: [&str; 8] = [
    "auto",
    "topological",
    "causal_cone",
    "critical_path",
    "mincut_gated",
    "hierarchical_lorentz",
    "parallel_branch",
    "temporal_btsp",
];

/// `ruvector.dag_attention_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
#[allow(non_camel_case_types)]
pub(crate) enum AttentionType {
    auto,
    topological,
    causal_cone,
    critical_path,
    mincut_gated,
    hierarchical_lorentz,
    parallel_branch,
    temporal_btsp,
}

/// `ruvector.advisor_mode`: what the index advisor may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
#[allow(non_camel_case_types)]
pub(crate) enum AdvisorMode {
    /// No advice: `dag_index_advice` refuses, the worker does nothing.
    off,
    /// Advice on request only.
    advise,
    /// The learner worker builds the best advised index, validates it on the workload, and reverts it when it
    /// does not pay.
    auto,
}

/// `ruvector.healing_mode`: what self-healing may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
#[allow(non_camel_case_types)]
pub(crate) enum HealingMode {
    /// No health probes by the worker; `dag_auto_repair` refuses.
    off,
    /// Measure, report and recommend; change nothing.
    observe,
    /// The learner worker repairs degraded indexes (VACUUM, REINDEX CONCURRENTLY) and verifies each repair.
    auto,
}

impl AttentionType {
    pub(crate) fn name(self) -> &'static str {
        ATTENTION_TYPES[self as usize]
    }
}

/// The value of `setting` for the per-query hooks, read without the active-thread check of `GucSetting::get` (a
/// thread-local lookup through the dynamic linker that costs more than the read, several times per query).
/// PostgreSQL calls the hooks in the backend's only thread, the one that assigns settings.
#[inline(always)]
pub(crate) fn hot<T: pgrx::guc::GucValue>(setting: &GucSetting<T>) -> T::Raw {
    // SAFETY: no other thread writes the setting (see above).
    unsafe { *setting.as_ptr() }
}

pub(crate) static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub(crate) static LEARNING_RATE: GucSetting<f64> = GucSetting::<f64>::new(0.1);
pub(crate) static PATTERN_CLUSTERS: GucSetting<i32> = GucSetting::<i32>::new(100);
pub(crate) static QUALITY_THRESHOLD: GucSetting<f64> = GucSetting::<f64>::new(0.3);
pub(crate) static ATTENTION: GucSetting<AttentionType> = GucSetting::<AttentionType>::new(AttentionType::auto);
pub(crate) static EWC_LAMBDA: GucSetting<f64> = GucSetting::<f64>::new(5000.0);
pub(crate) static MINCUT_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub(crate) static BACKGROUND_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(3_600_000);
pub(crate) static MAX_TRAJECTORIES: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub(crate) static ACTUALS_SAMPLE_RATE: GucSetting<f64> = GucSetting::<f64>::new(0.0);
pub(crate) static MICRO_LORA_RANK: GucSetting<i32> = GucSetting::<i32>::new(2);
pub(crate) static BASE_LORA_RANK: GucSetting<i32> = GucSetting::<i32>::new(8);
pub(crate) static CONFIG_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub(crate) static STEERING: GucSetting<bool> = GucSetting::<bool>::new(true);
pub(crate) static REPLAY_BUDGET: GucSetting<f64> = GucSetting::<f64>::new(0.05);
pub(crate) static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub(crate) static SNAPSHOT_KB: GucSetting<i32> = GucSetting::<i32>::new(16_384);
pub(crate) static ADVISOR_BUDGET_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub(crate) static ADVISOR_MODE: GucSetting<AdvisorMode> = GucSetting::<AdvisorMode>::new(AdvisorMode::advise);
pub(crate) static ADVISOR_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub(crate) static HEALING_MODE: GucSetting<HealingMode> = GucSetting::<HealingMode>::new(HealingMode::observe);
pub(crate) static HEALING_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(300_000);
pub(crate) static HEALING_PROBE_SAMPLES: GucSetting<i32> = GucSetting::<i32>::new(20);
pub(crate) static HEALING_MAX_COST_RATIO: GucSetting<f64> = GucSetting::<f64>::new(4.0);
pub(crate) static HEALING_PROBE_BUDGET_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub(crate) static ADVISOR_VALIDATION_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub(crate) static QUDAG_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(false);
pub(crate) static QUDAG_ENDPOINT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `ruvector.dag_qudag_endpoint`, trimmed; `None` when empty.
pub(crate) fn qudag_endpoint() -> Option<String> {
    QUDAG_ENDPOINT.get().map(|s| s.to_string_lossy().trim().to_owned()).filter(|s| !s.is_empty())
}
pub(crate) static QUDAG_KEYSTORE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"ruvector_qudag/node.keystore"));
pub(crate) static QUDAG_PASSPHRASE_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"ruvector_qudag/passphrase"));
pub(crate) static QUDAG_DP_EPSILON: GucSetting<f64> = GucSetting::<f64>::new(1.0);
pub(crate) static QUDAG_DP_BUDGET: GucSetting<f64> = GucSetting::<f64>::new(10.0);
pub(crate) static QUDAG_SYNC_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(3600);

/// Registers the GUCs. Server-start (`PGC_POSTMASTER`) settings can only be defined while the library is
/// preloaded; loaded later (by `CREATE EXTENSION` in a backend) they are skipped, as pg_stat_statements does, and
/// their defaults apply — which is harmless because what they size (the shared ring) only exists when preloaded.
pub(crate) fn init() {
    // SAFETY: a flag PostgreSQL sets while processing shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_int_guc(
            c"ruvector.dag_max_trajectories",
            c"Capacity of the shared-memory trajectory ring.",
            c"Executions beyond it overwrite the oldest records; the overflow is counted.",
            &MAX_TRAJECTORIES,
            64,
            1_000_000,
            GucContext::Postmaster,
            GucFlags::default(),
        );
        GucRegistry::define_string_guc(
            c"ruvector.config_file",
            c"Path of ruvector.toml (plugin selection and parameters).",
            c"Read at server start; empty uses built-in defaults.",
            &CONFIG_FILE,
            GucContext::Postmaster,
            GucFlags::SUPERUSER_ONLY,
        );
        GucRegistry::define_string_guc(
            c"ruvector.dag_database",
            c"Database the learner background worker connects to and keeps its state in.",
            c"CREATE EXTENSION ruvector_dag there; learning from every database is kept in its ruvector tables.",
            &DATABASE,
            GucContext::Postmaster,
            GucFlags::SUPERUSER_ONLY,
        );
        GucRegistry::define_int_guc(
            c"ruvector.dag_snapshot_kb",
            c"Shared memory for the learned state the worker publishes to backends.",
            c"A state larger than this is not published (logged); backends then keep the previous one.",
            &SNAPSHOT_KB,
            64,
            1_048_576,
            GucContext::Postmaster,
            GucFlags::UNIT_KB,
        );
    }
    GucRegistry::define_bool_guc(
        c"ruvector.neural_dag_enabled",
        c"Capture plans and executions for DAG learning.",
        c"When off, the hooks pass queries through untouched and record nothing.",
        &ENABLED,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"ruvector.dag_steering",
        c"Plan query classes under the settings the learner measured to be faster.",
        c"Off plans every query natively (capture continues while ruvector.neural_dag_enabled is on).",
        &STEERING,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_replay_budget",
        c"Share of wall-clock time the learner may spend replaying queries under candidate settings.",
        c"Replays run read-only, as the query's role, with a statement timeout of twice the native latency; 0 stops exploring.",
        &REPLAY_BUDGET,
        0.0,
        1.0,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_learning_rate",
        c"Learning rate of the instant adapter (MicroLoRA).",
        c"",
        &LEARNING_RATE,
        0.0001,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_pattern_clusters",
        c"Number of clusters k-means++ forms over learned plan patterns.",
        c"",
        &PATTERN_CLUSTERS,
        10,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_quality_threshold",
        c"Learned patterns below this quality are not used.",
        c"",
        &QUALITY_THRESHOLD,
        0.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"ruvector.dag_attention_type",
        c"Attention mechanism: auto (selector) or one mechanism.",
        c"",
        &ATTENTION,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_ewc_lambda",
        c"EWC++ penalty weight against forgetting (0 disables).",
        c"",
        &EWC_LAMBDA,
        0.0,
        50_000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"ruvector.dag_mincut_enabled",
        c"Compute min-cut criticality in plan analysis.",
        c"",
        &MINCUT_ENABLED,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_background_interval_ms",
        c"Milliseconds between background learning cycles.",
        c"",
        &BACKGROUND_INTERVAL_MS,
        1000,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_actuals_sample_rate",
        c"Fraction of queries whose per-node actual rows are captured.",
        c"Per-node instrumentation costs CPU; 0 captures total time only.",
        &ACTUALS_SAMPLE_RATE,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"ruvector.advisor_mode",
        c"Index advisor: off, advise (on request), or auto (the learner builds, validates and reverts indexes).",
        c"In auto mode the worker builds at most one index at a time with CREATE INDEX CONCURRENTLY and drops it again \
          when its queries are not significantly faster; it only ever drops indexes it created.",
        &ADVISOR_MODE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.advisor_interval_s",
        c"Seconds between the learner's index advice rounds in auto mode.",
        c"",
        &ADVISOR_INTERVAL_S,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"ruvector.advisor_validation_s",
        c"Longest validation window of an index built in auto mode, in seconds.",
        c"The index is judged as soon as its queries ran often enough before and after; at the end of the window an \
          index with too few executions to show a gain, or never used, is dropped.",
        &ADVISOR_VALIDATION_S,
        1,
        604_800,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"ruvector.advisor_budget_mb",
        c"Storage the index advisor may propose for new indexes, in megabytes.",
        c"dag_index_advice() picks indexes by benefit per byte until this budget is spent.",
        &ADVISOR_BUDGET_MB,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_enum_guc(
        c"ruvector.healing_mode",
        c"Self-healing: off, observe (measure and recommend), or auto (the learner repairs and verifies).",
        c"In auto mode the worker runs VACUUM or REINDEX INDEX CONCURRENTLY on degraded indexes, one at a time, and \
          re-measures afterwards; index definitions are never changed.",
        &HEALING_MODE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.healing_interval_ms",
        c"Milliseconds between the learner worker's index health probes.",
        c"",
        &HEALING_INTERVAL_MS,
        1000,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"ruvector.healing_probe_samples",
        c"Query vectors per recall probe of a vector index.",
        c"Each costs one index scan and one exact (sequential) scan of the table.",
        &HEALING_PROBE_SAMPLES,
        1,
        10_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ruvector.healing_max_cost_ratio",
        c"Most buffers per query a search-breadth change may cost, relative to before it.",
        c"dag_rebalance_index() in auto mode rolls a wider search back when its held-out probe reads more than this.",
        &HEALING_MAX_COST_RATIO,
        1.0,
        1000.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.healing_probe_budget_ms",
        c"Time one round of index health checks may take, in milliseconds.",
        c"Probes run with a statement_timeout of what is left; indexes beyond the budget are reported as skipped.",
        &HEALING_PROBE_BUDGET_MS,
        1,
        3_600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_micro_lora_rank",
        c"Rank of the per-query adapter.",
        c"",
        &MICRO_LORA_RANK,
        1,
        4,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"ruvector.dag_qudag_enabled",
        c"Share learned patterns with peer servers (the learner worker runs the network client).",
        c"Off by default: nothing leaves the server and the qudag_* network functions raise RV005.",
        &QUDAG_ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"ruvector.dag_qudag_endpoint",
        c"Validator the worker connects to: ruvector://<node id>@host:port or host:port.",
        c"Empty: the endpoint last given to qudag_connect or dag_set_qudag_endpoint.",
        &QUDAG_ENDPOINT,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"ruvector.dag_qudag_keystore",
        c"This server's node identity (ML-DSA-65 and ML-KEM-768 keys, encrypted), created on first use.",
        c"A relative path is relative to the data directory.",
        &QUDAG_KEYSTORE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"ruvector.dag_qudag_passphrase_file",
        c"File holding the keystore passphrase (mode 0600); a random one is created there if it is missing.",
        c"Keep it off the data directory's volume (e.g. a mounted secret) for the keys to be protected at rest.",
        &QUDAG_PASSPHRASE_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_qudag_dp_epsilon",
        c"Differential privacy of each shared pattern (epsilon of its discrete Laplace release).",
        c"Smaller is more private and noisier.",
        &QUDAG_DP_EPSILON,
        0.01,
        10.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ruvector.dag_qudag_dp_budget",
        c"Total epsilon this server may spend on shared patterns; sharing stops once it is spent.",
        c"The spent budget is kept next to the keystore and survives restarts.",
        &QUDAG_DP_BUDGET,
        0.01,
        100_000.0,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_qudag_sync_interval",
        c"Seconds between the worker's imports of newly finalized patterns (0: only qudag_sync_patterns).",
        c"",
        &QUDAG_SYNC_INTERVAL_S,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"ruvector.dag_base_lora_rank",
        c"Rank of the background adapter.",
        c"",
        &BASE_LORA_RANK,
        4,
        64,
        GucContext::Userset,
        GucFlags::default(),
    );
}
