//! Index health, measured: recall probes of vector indexes, buffers per probe, dead tuples, B-tree density.
//!
//! Indexes are found through the catalogs: every valid index on a user table whose operator family has an
//! ordering operator (`pg_amop.amoppurpose = 'o'`: pgvector's HNSW and IVFFlat, GiST k-NN) on one plain column
//! gets a recall probe, and every B-tree gets `pgstatindex` when the `pgstattuple` extension is installed. A
//! probe samples query vectors from the table itself (`TABLESAMPLE BERNOULLI … REPEATABLE`, so repeated probes ask
//! the same questions of an unchanged table), and for each one compares the index's top-k (`enable_seqscan = off`,
//! checked in the plan) with the exact top-k (index scans off) by distance, so ties do not count as misses. It
//! runs under the search settings the session has (`hnsw.ef_search`, `ivfflat.probes`…: what users run with),
//! with a `statement_timeout` that is what is left of the budget, inside a subtransaction that is always rolled
//! back (so the settings it changes revert and an ERROR, e.g. a timeout, stays inside). The best recall seen
//! under the same search settings is the index's baseline, kept in `ruvector.dag_index_state`.
//! The judgement (degraded or not, which repair) is `ruvector_dag::healing::assess_index`.

use crate::advisor::in_rolled_back_subtransaction;
use crate::sql::fail;
use dag::healing::{IndexAssessment, IndexKind, IndexMeasurement, IndexThresholds, assess_index};
use pgrx::prelude::*;
use pgrx::spi::{self, SpiResult};
use std::time::Instant;

/// The sample seed of health probes; a different seed gives held-out query vectors.
pub(crate) const TUNING_SEED: i32 = 7;

/// Rows each probe asks for (recall@K).
pub(crate) const K: usize = 10;

/// B-trees smaller than this (pages) are not judged by leaf density or dead tuples: a few half-empty pages cost
/// nothing.
const MIN_BTREE_PAGES: i64 = 64;

/// An index the health checks know about.
#[derive(Debug, Clone)]
pub(crate) struct IndexInfo {
    /// As `regclass` prints it.
    pub(crate) name: String,
    /// Its table, as `regclass` prints it.
    pub(crate) table: String,
    pub(crate) table_oid: u32,
    pub(crate) kind: IndexKind,
    /// The indexed column (quoted) and its type, for indexes with an ordering operator on one plain column.
    pub(crate) ordered: Option<(String, String, String)>,
    pub(crate) pages: i64,
    pub(crate) reltuples: f64,
    /// IVFFlat `lists`.
    pub(crate) lists: Option<i64>,
    /// The index's file: a rebuild (`REINDEX`, or `CONCURRENTLY`'s swap) changes it and starts a new baseline.
    pub(crate) filenode: i64,
}

/// What one recall probe measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probe {
    pub(crate) recall: f64,
    pub(crate) under_returning: f64,
    pub(crate) buffers: f64,
    pub(crate) samples: usize,
    /// The search settings in force, e.g. `hnsw.ef_search=40, hnsw.iterative_scan=off`.
    pub(crate) settings: String,
    /// IVFFlat: buffers per probe ÷ pages × probes / lists + K.
    pub(crate) imbalance: Option<f64>,
}

/// One index's health.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    pub(crate) index: IndexInfo,
    pub(crate) probe: Option<Probe>,
    pub(crate) measurement: IndexMeasurement,
    pub(crate) assessment: IndexAssessment,
    /// `ok`, `degraded`, `not available` (nothing could be measured), `skipped` (budget spent), `error`.
    pub(crate) status: &'static str,
    /// The table's inserted + updated + deleted rows so far, and the share of its rows changed since the
    /// baseline started.
    pub(crate) changes: Option<f64>,
    pub(crate) churn: Option<f64>,
    pub(crate) detail: String,
}

fn internal(what: &str, e: spi::SpiError) -> ! {
    fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("index health: {what}: {e}"))
}

/// Valid indexes of user tables (all, or the one named `only`).
pub(crate) fn discover(only: Option<&str>) -> Vec<IndexInfo> {
    let filter = only.map(|n| {
        let oid = Spi::get_one_with_args::<pg_sys::Oid>("SELECT to_regclass($1)::oid", &[n.into()]).ok().flatten();
        let oid = oid
            .unwrap_or_else(|| fail(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("index \"{n}\" does not exist")));
        let is_index =
            Spi::get_one_with_args::<bool>("SELECT relkind IN ('i', 'I') FROM pg_class WHERE oid = $1", &[oid.into()]);
        if is_index.ok().flatten() != Some(true) {
            fail(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, format!("\"{n}\" is not an index"));
        }
        oid
    });
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT i.indexrelid::regclass::text, t.oid::regclass::text, t.oid::int8, am.amname::text,
                    CASE WHEN i.indnatts = 1 AND i.indkey[0] > 0 AND EXISTS (
                        SELECT 1 FROM pg_amop ao WHERE ao.amopfamily = opc.opcfamily AND ao.amoppurpose = 'o')
                    THEN quote_ident(a.attname) END,
                    format_type(a.atttypid, a.atttypmod),
                    (SELECT o.oprname::text FROM pg_amop ao JOIN pg_operator o ON o.oid = ao.amopopr
                      WHERE ao.amopfamily = opc.opcfamily AND ao.amoppurpose = 'o'
                        AND ao.amoplefttype = a.atttypid ORDER BY ao.amopstrategy LIMIT 1),
                    ic.relpages::int8, t.reltuples::float8,
                    (SELECT option_value::int8 FROM pg_options_to_table(ic.reloptions) WHERE option_name = 'lists'),
                    pg_relation_filenode(i.indexrelid)::int8
             FROM pg_index i
             JOIN pg_class ic ON ic.oid = i.indexrelid
             JOIN pg_am am ON am.oid = ic.relam
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             LEFT JOIN pg_opclass opc ON opc.oid = i.indclass[0]
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indisvalid AND i.indisready AND t.relkind IN ('r', 'm')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_temp'
               AND ($1::oid IS NULL OR i.indexrelid = $1)
             ORDER BY 1",
            None,
            &[filter.into()],
        )?;
        rows.filter_map(|r| {
            let get = || -> SpiResult<Option<IndexInfo>> {
                let kind = IndexKind::from_am(&r.get::<String>(4)?.unwrap_or_default());
                let column = r.get::<String>(5)?;
                let op = r.get::<String>(7)?;
                let ordered = match (column, op) {
                    (Some(col), Some(op)) => Some((col, r.get::<String>(6)?.unwrap_or_default(), op)),
                    _ => None,
                };
                if ordered.is_none() && kind != IndexKind::BTree {
                    return Ok(None);
                }
                Ok(Some(IndexInfo {
                    name: r.get(1)?.unwrap_or_default(),
                    table: r.get(2)?.unwrap_or_default(),
                    table_oid: r.get::<i64>(3)?.unwrap_or_default() as u32,
                    kind,
                    ordered,
                    pages: r.get(8)?.unwrap_or_default(),
                    reltuples: r.get(9)?.unwrap_or_default(),
                    lists: r.get(10)?,
                    filenode: r.get(11)?.unwrap_or_default(),
                }))
            };
            get().transpose()
        })
        .collect::<SpiResult<Vec<_>>>()
    })
    .unwrap_or_else(|e| internal("reading pg_index", e))
}

/// The search settings that govern `kind`'s scans, as `name=value` pairs.
fn search_settings(kind: &IndexKind) -> Vec<(&'static str, Option<String>)> {
    let names: &[&'static str] = match kind {
        IndexKind::Hnsw => &["hnsw.ef_search", "hnsw.iterative_scan"],
        IndexKind::IvfFlat => &["ivfflat.probes", "ivfflat.iterative_scan"],
        _ => &[],
    };
    names
        .iter()
        .map(|n| {
            (*n, Spi::get_one_with_args::<String>("SELECT current_setting($1, true)", &[(*n).into()]).ok().flatten())
        })
        .collect()
}

/// `name=value` pairs of a settings string as [`Probe::settings`] writes it (`default` values are left alone).
pub(crate) fn parse_settings(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split(", ").filter_map(|kv| kv.split_once('=')).filter(|(_, v)| *v != "default")
}

fn set_local(name: &str, value: &str) {
    Spi::get_one_with_args::<String>("SELECT set_config($1, $2, true)", &[name.into(), value.into()])
        .unwrap_or_else(|e| internal(&format!("setting {name}"), e));
}

fn distances(sql: &str) -> Vec<f64> {
    Spi::connect(|c| {
        c.select(sql, None, &[])?
            .map(|r| r.get::<f64>(1).map(Option::unwrap_or_default))
            .collect::<SpiResult<Vec<f64>>>()
    })
    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_QUERY_CANCELED, format!("probe query: {e}")))
}

/// Measures recall@K of `ix` (which must have an ordering column) with up to `samples` query vectors drawn with
/// `seed`, under the session's search settings overridden by `settings`, ending by `deadline`. `Err` says why no figure came out (a timeout, a plan that does not use the index, an empty table).
pub(crate) fn probe(
    ix: &IndexInfo,
    samples: usize,
    deadline: Instant,
    settings: Option<&str>,
    seed: i32,
) -> Result<Probe, String> {
    let Some((col, typ, op)) = &ix.ordered else { return Err("no ordering operator".into()) };
    let table = &ix.table;
    let outcome = in_rolled_back_subtransaction(|| -> Result<Probe, String> {
        for (name, value) in parse_settings(settings.unwrap_or_default()) {
            set_local(name, value);
        }
        let remaining = || deadline.saturating_duration_since(Instant::now()).as_millis().max(1);
        set_local("statement_timeout", &format!("{}ms", remaining()));
        let reltuples = ix.reltuples.max(1.0);
        // About four times the rows needed, then a deterministic shuffle: a LIMIT alone would take the first rows
        // in physical order, i.e. the oldest data.
        let pct = (100.0 * (4.0 * samples as f64).max(100.0) / reltuples).min(100.0);
        let queries: Vec<String> = Spi::connect(|c| {
            c.select(
                &format!(
                    "SELECT {col}::text FROM {table} TABLESAMPLE BERNOULLI ({pct}) REPEATABLE ({seed})
                     WHERE {col} IS NOT NULL ORDER BY hashtext(ctid::text) LIMIT {samples}"
                ),
                None,
                &[],
            )?
            .filter_map(|r| r.get::<String>(1).transpose())
            .collect::<SpiResult<Vec<String>>>()
        })
        .map_err(|e| format!("sampling query vectors: {e}"))?;
        if queries.is_empty() {
            return Err("the table has no rows to probe with".into());
        }
        let (mut recall, mut under, mut buffers) = (0.0, 0usize, 0.0);
        for q in &queries {
            let q = format!("{}::{typ}", spi::quote_literal(q));
            let dist = format!("({col} {op} {q})::float8");
            let by_index = format!("SELECT {dist} FROM {table} ORDER BY {col} {op} {q} LIMIT {K}");
            set_local("statement_timeout", &format!("{}ms", remaining()));
            for (name, value) in [("enable_seqscan", "off"), ("enable_indexscan", "on"), ("enable_bitmapscan", "off")] {
                set_local(name, value);
            }
            let plan = Spi::get_one::<pgrx::Json>(&format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {by_index}"))
                .map_err(|e| format!("probe query: {e}"))?
                .map(|j| j.0)
                .unwrap_or_default();
            let used = plan_uses(&plan[0]["Plan"], ix.name.rsplit('.').next().unwrap_or(&ix.name));
            if !used {
                return Err("the planner serves this ordering with another index".into());
            }
            let top = &plan[0]["Plan"];
            buffers +=
                top["Shared Hit Blocks"].as_f64().unwrap_or(0.0) + top["Shared Read Blocks"].as_f64().unwrap_or(0.0);
            let got = distances(&by_index);
            for (name, value) in
                [("enable_seqscan", "on"), ("enable_indexscan", "off"), ("enable_indexonlyscan", "off")]
            {
                set_local(name, value);
            }
            let exact = distances(&format!("SELECT {dist} FROM {table} ORDER BY 1 LIMIT {K}"));
            let Some(&kth) = exact.last() else { continue };
            let tolerance = 1e-9 * kth.abs().max(1.0);
            let hits = got.iter().filter(|&&d| d <= kth + tolerance).count().min(exact.len());
            recall += hits as f64 / exact.len() as f64;
            if got.len() < exact.len() {
                under += 1;
            }
        }
        let n = queries.len() as f64;
        let settings = search_settings(&ix.kind);
        let buffers = buffers / n;
        let imbalance = (ix.kind == IndexKind::IvfFlat).then(|| {
            let probes = settings
                .iter()
                .find(|(name, _)| *name == "ivfflat.probes")
                .and_then(|(_, v)| v.as_deref()?.parse::<f64>().ok())
                .unwrap_or(1.0);
            let lists = ix.lists.unwrap_or(100).max(1) as f64;
            buffers / ((ix.pages as f64 * probes / lists).max(1.0) + K as f64)
        });
        let settings = settings
            .iter()
            .map(|(name, v)| format!("{name}={}", v.as_deref().unwrap_or("default")))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Probe {
            recall: recall / n,
            under_returning: under as f64 / n,
            buffers,
            samples: queries.len(),
            settings,
            imbalance,
        })
    });
    match outcome {
        Ok(r) => r,
        Err(e) if e.contains("statement timeout") => Err("probe budget spent (statement timeout)".into()),
        Err(e) => Err(e),
    }
}

fn plan_uses(v: &serde_json::Value, index: &str) -> bool {
    match v {
        serde_json::Value::Object(m) => {
            m.get("Index Name").and_then(|n| n.as_str()).is_some_and(|n| n == index.trim_matches('"'))
                || m.values().any(|x| plan_uses(x, index))
        }
        serde_json::Value::Array(a) => a.iter().any(|x| plan_uses(x, index)),
        _ => false,
    }
}

/// Dead tuples / (live + dead) of a table, from the statistics views.
fn dead_ratio(table_oid: u32) -> Option<f64> {
    Spi::get_one_with_args::<f64>(
        "SELECT n_dead_tup::float8 / nullif(n_live_tup + n_dead_tup, 0) FROM pg_stat_all_tables WHERE relid = $1",
        &[pg_sys::Oid::from(table_oid).into()],
    )
    .ok()
    .flatten()
}

/// Rows inserted, updated and deleted in a table so far (the statistics views' counters).
fn table_changes(table_oid: u32) -> Option<f64> {
    Spi::get_one_with_args::<f64>(
        "SELECT (n_tup_ins + n_tup_upd + n_tup_del)::float8 FROM pg_stat_all_tables WHERE relid = $1",
        &[pg_sys::Oid::from(table_oid).into()],
    )
    .ok()
    .flatten()
}

/// The schema of `pgstattuple`, if installed here.
fn pgstattuple_schema() -> Option<String> {
    Spi::get_one::<String>(
        "SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'pgstattuple'",
    )
    .ok()
    .flatten()
}

/// B-tree leaf density (0..=1) and leaf fragmentation (0..=1) through `pgstatindex`.
fn btree_stats(schema: &str, ix: &IndexInfo, deadline: Instant) -> Result<(f64, f64), String> {
    in_rolled_back_subtransaction(|| {
        let ms = deadline.saturating_duration_since(Instant::now()).as_millis().max(1);
        set_local("statement_timeout", &format!("{ms}ms"));
        Spi::get_two_with_args::<f64, f64>(
            &format!("SELECT avg_leaf_density / 100, leaf_fragmentation / 100 FROM {schema}.pgstatindex($1::regclass)"),
            &[ix.name.as_str().into()],
        )
    })
    .and_then(|r| r.map_err(|e| e.to_string()))
    .map(|(d, f)| (d.unwrap_or(f64::NAN), f.unwrap_or(f64::NAN)))
}

/// The stored baseline recall of `ix` under `settings`, if any (none after a rebuild).
fn baseline(ix: &IndexInfo, settings: &str) -> Option<f64> {
    Spi::get_one_with_args::<f64>(
        "SELECT baseline_recall FROM ruvector.dag_index_state WHERE index_name = $1 AND settings = $2 AND filenode = $3",
        &[ix.name.as_str().into(), settings.into(), ix.filenode.into()],
    )
    .ok()
    .flatten()
}

/// Rows changed since the baseline of `ix` under `settings` started (its first measurement since the last
/// rebuild), relative to the rows it had then.
fn churn(ix: &IndexInfo, settings: &str, changes: f64) -> Option<f64> {
    Spi::get_one_with_args::<f64>(
        "SELECT ($4 - changes_at_baseline) / greatest(rows_at_baseline, 1) FROM ruvector.dag_index_state
         WHERE index_name = $1 AND settings = $2 AND filenode = $3",
        &[ix.name.as_str().into(), settings.into(), ix.filenode.into(), changes.into()],
    )
    .ok()
    .flatten()
}

/// Records a measurement: the baseline becomes the best recall seen under these settings and since the last
/// rebuild (a change of either starts a new baseline: a rebuilt IVFFlat index has balanced lists again, and the
/// recall its oversized lists bought is no standard).
fn record(h: &Health) {
    let p = h.probe.as_ref();
    let r = Spi::run_with_args(
        "INSERT INTO ruvector.dag_index_state AS s
             (index_name, table_name, index_type, settings, baseline_recall, recall, under_returning, buffers,
              imbalance, dead_ratio, leaf_density, status, filenode, detail, changes_at_baseline, rows_at_baseline,
              measured_at)
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now())
         ON CONFLICT (index_name, settings) DO UPDATE SET
             table_name = excluded.table_name, index_type = excluded.index_type,
             baseline_recall = CASE WHEN s.filenode = excluded.filenode
                                    THEN greatest(s.baseline_recall, excluded.recall) ELSE excluded.recall END,
             changes_at_baseline = CASE WHEN s.filenode = excluded.filenode THEN s.changes_at_baseline
                                        ELSE excluded.changes_at_baseline END,
             rows_at_baseline = CASE WHEN s.filenode = excluded.filenode THEN s.rows_at_baseline
                                     ELSE excluded.rows_at_baseline END,
             filenode = excluded.filenode,
             recall = excluded.recall, under_returning = excluded.under_returning, buffers = excluded.buffers,
             imbalance = excluded.imbalance, dead_ratio = excluded.dead_ratio, leaf_density = excluded.leaf_density,
             status = excluded.status, detail = excluded.detail, measured_at = now()",
        &[
            h.index.name.as_str().into(),
            h.index.table.as_str().into(),
            h.index.kind.name().into(),
            p.map_or_else(String::new, |p| p.settings.clone()).into(),
            p.map(|p| p.recall).into(),
            p.map(|p| p.under_returning).into(),
            p.map(|p| p.buffers).into(),
            p.and_then(|p| p.imbalance).into(),
            h.measurement.dead_ratio.into(),
            h.measurement.leaf_density.into(),
            h.status.into(),
            h.index.filenode.into(),
            h.detail.as_str().into(),
            h.changes.into(),
            h.index.reltuples.into(),
        ],
    );
    if let Err(e) = r {
        internal("recording in ruvector.dag_index_state", e);
    }
}

/// Pattern lists smaller than this on average are not judged by balance.
const MIN_MEAN_LIST: f64 = 10.0;

/// How `dag_index_health` names the extension's own pattern index (the ReasoningBank's IVF lists).
pub(crate) const PATTERN_INDEX: &str = "ruvector.reasoning_bank";

/// The pattern index's health, measured on this backend's copy of the learned state: recall@K of the IVF search
/// against exact search for up to `samples` patterns' own centroids, list balance (largest list ÷ mean) and
/// the share of patterns added since the last re-clustering (searched exhaustively until the next one). `None`
/// without patterns.
fn pattern_index(samples: usize) -> Option<(IndexInfo, Probe, String)> {
    crate::learner::with_engine(|engine, _| {
        let bank = &engine.reasoning_bank;
        let patterns = bank.patterns();
        if patterns.is_empty() {
            return None;
        }
        let step = (patterns.len() / samples.max(1)).max(1);
        let (mut recall, mut under, mut n) = (0.0, 0usize, 0usize);
        for p in patterns.iter().step_by(step).take(samples) {
            let exact: Vec<u64> = bank.brute_force_similar(&p.centroid, K).iter().map(|m| m.id).collect();
            let got: Vec<u64> = bank.query_similar(&p.centroid, K).iter().map(|m| m.id).collect();
            recall += got.iter().filter(|id| exact.contains(id)).count() as f64 / exact.len().max(1) as f64;
            under += usize::from(got.len() < exact.len());
            n += 1;
        }
        let sizes: Vec<usize> = bank.index_lists().iter().map(|(_, ids)| ids.len()).collect();
        let indexed: usize = sizes.iter().sum();
        // Judged only once lists are large enough for their sizes to mean something.
        let mean = indexed as f64 / sizes.len().max(1) as f64;
        let imbalance =
            (sizes.len() >= 2 && mean >= MIN_MEAN_LIST).then(|| *sizes.iter().max().unwrap_or(&0) as f64 / mean);
        let unindexed = patterns.len() - indexed;
        let info = IndexInfo {
            name: PATTERN_INDEX.to_owned(),
            table: "ruvector.dag_learning_state".to_owned(),
            table_oid: 0,
            kind: IndexKind::Other("ivf_patterns".to_owned()),
            ordered: None,
            pages: 0,
            reltuples: patterns.len() as f64,
            lists: Some(sizes.len() as i64),
            // A re-clustering starts a new baseline, like a rebuild.
            filenode: sizes.len() as i64 * 1_000_003 + indexed as i64,
        };
        let probe = Probe {
            recall: recall / n as f64,
            under_returning: under as f64 / n as f64,
            buffers: 0.0,
            samples: n,
            settings: format!("nprobe={}", bank.nprobe),
            imbalance,
        };
        let note = format!(
            "{} patterns in {} lists ({}), {unindexed} added since the last re-clustering",
            patterns.len(),
            sizes.len(),
            imbalance.map_or_else(|| "too small to judge balance".to_owned(), |i| format!("largest {i:.1}x the mean"))
        );
        Some((info, probe, note))
    })
}

/// Runs `f` (the extension's own bookkeeping: reading and writing its tables) as the extension's owner, so that a
/// role granted EXECUTE on a health function needs no privileges on those tables. Probes run as the caller.
pub(crate) fn as_extension_owner<T>(f: impl FnOnce() -> T) -> T {
    let owner =
        Spi::get_one::<pg_sys::Oid>("SELECT extowner FROM pg_extension WHERE extname = 'ruvector_dag'").ok().flatten();
    let Some(owner) = owner else { return f() };
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    // SAFETY: the documented way to run as another role for a moment (as PostgreSQL's own maintenance commands
    // do); restored below, and by the transaction's abort if an ERROR escapes.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let out = f();
    // SAFETY: restores what was read above.
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    out
}

/// pgvector's advice for IVFFlat `lists`: rows / 1000 up to 1M rows, sqrt(rows) beyond.
pub(crate) fn advised_lists(rows: f64) -> i64 {
    let rows = rows.max(0.0);
    if rows <= 1e6 { rows / 1000.0 } else { rows.sqrt() }.max(1.0).round() as i64
}

/// Measures every index (or the one named `only`) within `budget_ms`, probing vector indexes with up to
/// `samples` query vectors under the session's search settings overridden by `settings` (as [`Probe::settings`]
/// writes them), and records the figures and baselines.
pub(crate) fn check(only: Option<&str>, samples: usize, budget_ms: u64, settings: Option<&str>) -> Vec<Health> {
    let deadline = Instant::now() + std::time::Duration::from_millis(budget_ms);
    let thresholds = IndexThresholds::default();
    let stattuple = pgstattuple_schema();
    let mut out = Vec::new();
    if only.is_none_or(|n| n == PATTERN_INDEX) {
        if let Some((index, p, note)) = pattern_index(samples) {
            let m = IndexMeasurement {
                kind: index.kind.clone(),
                recall: Some(p.recall),
                baseline_recall: baseline_recall(&index, &p),
                under_returning: Some(p.under_returning),
                dead_ratio: None,
                ivf_imbalance: p.imbalance,
                leaf_density: None,
            };
            let notes =
                vec![format!("recall@{K} {:.3} over {} patterns under {}; {note}", p.recall, p.samples, p.settings)];
            out.push(conclude(index, Some(p), m, notes, (None, None), false, false, &thresholds));
        }
        if only.is_some() {
            return out;
        }
    }
    for ix in discover(only) {
        let mut m = IndexMeasurement {
            kind: ix.kind.clone(),
            recall: None,
            baseline_recall: None,
            under_returning: None,
            dead_ratio: dead_ratio(ix.table_oid),
            ivf_imbalance: None,
            leaf_density: None,
        };
        let changes = table_changes(ix.table_oid);
        let mut churned = None;
        let mut notes = Vec::new();
        let mut probe_out = None;
        let mut failed = false;
        let spent = Instant::now() >= deadline;
        if spent {
            notes.push("probe budget spent before this index (raise ruvector.healing_probe_budget_ms)".to_owned());
        } else if ix.ordered.is_some() {
            match crate::hooks::suppressed(|| probe(&ix, samples, deadline, settings, TUNING_SEED)) {
                Ok(p) => {
                    m.recall = Some(p.recall);
                    m.under_returning = Some(p.under_returning);
                    m.ivf_imbalance = p.imbalance;
                    m.baseline_recall = baseline_recall(&ix, &p);
                    churned = changes.and_then(|c| as_extension_owner(|| churn(&ix, &p.settings, c)));
                    notes.push(format!(
                        "recall@{K} {:.3} over {} probes under {}; {:.1} buffers per probe",
                        p.recall, p.samples, p.settings, p.buffers
                    ));
                    if let (IndexKind::IvfFlat, Some(lists)) = (&ix.kind, ix.lists.or(Some(100))) {
                        let rows = ix.reltuples.max(0.0);
                        let advised = advised_lists(rows);
                        notes.push(format!("{lists} lists for {rows:.0} rows (pgvector advises about {advised})"));
                    }
                    probe_out = Some(p);
                }
                Err(e) => {
                    failed = true;
                    notes.push(format!("recall probe: {e}"));
                }
            }
        } else if ix.pages < MIN_BTREE_PAGES {
            notes.push(format!("{} pages: too small for bloat or dead tuples to matter", ix.pages));
            m.dead_ratio = None;
        } else if let Some(schema) = &stattuple {
            match btree_stats(schema, &ix, deadline) {
                Ok((density, frag)) => {
                    m.leaf_density = density.is_finite().then_some(density);
                    notes.push(format!(
                        "leaf density {:.0}%, leaf fragmentation {:.0}%",
                        density * 100.0,
                        frag * 100.0
                    ));
                }
                Err(e) => notes.push(format!("pgstatindex: {e}")),
            }
        } else {
            notes.push("bloat not available: CREATE EXTENSION pgstattuple".to_owned());
        }
        if let Some(d) = m.dead_ratio {
            notes.push(format!("{:.1}% dead tuples", d * 100.0));
        }
        if let Some(c) = churned.filter(|c| *c > 0.0) {
            notes.push(format!("{:.0}% of its rows changed since the baseline", c * 100.0));
        }
        out.push(conclude(ix, probe_out, m, notes, (changes, churned), spent, failed, &thresholds));
    }
    out
}

/// The baseline `ix` is judged against for probe `p`: the stored best under the same settings since the last
/// rebuild, or this probe's recall when it is the first (or the best).
fn baseline_recall(ix: &IndexInfo, p: &Probe) -> Option<f64> {
    as_extension_owner(|| baseline(ix, &p.settings)).map(|b| b.max(p.recall)).or(Some(p.recall))
}

/// Judges a measurement, states its status (`degraded` first, then `skipped` when the budget was spent, `error`
/// when the probe failed, `not available` when nothing was measured), puts the reasons before the `notes`, and
/// records it unless the budget was spent.
#[allow(clippy::too_many_arguments)]
fn conclude(
    index: IndexInfo,
    probe: Option<Probe>,
    m: IndexMeasurement,
    mut notes: Vec<String>,
    (changes, churn): (Option<f64>, Option<f64>),
    spent: bool,
    failed: bool,
    thresholds: &IndexThresholds,
) -> Health {
    let assessment = assess_index(&m, thresholds);
    let measured = m.recall.is_some() || m.leaf_density.is_some() || m.dead_ratio.is_some();
    let status = match () {
        _ if assessment.degraded => "degraded",
        _ if spent => "skipped",
        _ if failed => "error",
        _ if !measured => "not available",
        _ => "ok",
    };
    if assessment.degraded {
        notes.insert(0, assessment.reasons.join("; "));
    }
    let health = Health { index, probe, measurement: m, assessment, status, detail: notes.join("; "), changes, churn };
    if !spent {
        as_extension_owner(|| record(&health));
    }
    health
}

/// Measures index health now (within `ruvector.healing_probe_budget_ms`, probing with
/// `ruvector.healing_probe_samples` query vectors per vector index) and says what each index needs.
#[pg_extern]
#[allow(clippy::type_complexity)]
fn dag_index_health(
    index_name: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(index_name, String),
        name!(index_type, String),
        name!(fragmentation, Option<f64>),
        name!(recall_estimate, Option<f64>),
        name!(recommended_action, String),
        name!(table_name, String),
        name!(status, String),
        name!(baseline_recall, Option<f64>),
        name!(under_returning, Option<f64>),
        name!(dead_ratio, Option<f64>),
        name!(buffers_per_probe, Option<f64>),
        name!(imbalance, Option<f64>),
        name!(leaf_density, Option<f64>),
        name!(churn, Option<f64>),
        name!(search_settings, Option<String>),
        name!(detail, String),
    ),
> {
    let samples = crate::gucs::HEALING_PROBE_SAMPLES.get().max(1) as usize;
    let budget = crate::gucs::HEALING_PROBE_BUDGET_MS.get().max(1) as u64;
    let rows: Vec<_> = check(index_name, samples, budget, None)
        .into_iter()
        .map(|h| {
            let action = if h.assessment.degraded {
                crate::repairs::plan(&crate::repairs::index_issue(&h))
                    .map_or_else(|why| format!("none: {why}"), |p| p.1)
            } else {
                "none".to_owned()
            };
            let p = h.probe.as_ref();
            (
                h.index.name.clone(),
                h.index.kind.name().to_owned(),
                h.assessment.fragmentation,
                h.measurement.recall,
                action,
                h.index.table.clone(),
                h.status.to_owned(),
                h.measurement.baseline_recall,
                h.measurement.under_returning,
                h.measurement.dead_ratio,
                p.map(|p| p.buffers),
                h.measurement.ivf_imbalance,
                h.measurement.leaf_density,
                h.churn,
                p.map(|p| p.settings.clone()),
                h.detail,
            )
        })
        .collect();
    TableIterator::new(rows)
}

extension_sql!(
    r#"
-- The last measurement of every index the health checks know, per search settings (empty for indexes without
-- any), and the baseline recall each is judged against: the best seen under those settings since the last rebuild.
CREATE TABLE dag_index_state (
    index_name text NOT NULL,
    settings text NOT NULL,
    table_name text NOT NULL,
    index_type text NOT NULL,
    baseline_recall float8,
    recall float8,
    under_returning float8,
    buffers float8,
    imbalance float8,
    dead_ratio float8,
    leaf_density float8,
    status text NOT NULL,
    filenode bigint NOT NULL,
    detail text,
    -- The table's inserted + updated + deleted rows and its rows when this baseline started (churn since).
    changes_at_baseline float8,
    rows_at_baseline float8,
    measured_at timestamptz NOT NULL,
    PRIMARY KEY (index_name, settings)
);
"#,
    name = "index_health_tables"
);

extension_sql!(
    r#"
-- Probing reads every indexed table: for the DBA (or whom the DBA grants it).
REVOKE EXECUTE ON FUNCTION dag_index_health(text) FROM PUBLIC;
"#,
    name = "index_health_privileges",
    requires = [dag_index_health, "index_health_tables"]
);
