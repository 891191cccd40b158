//! The index advisor's `auto` mode, run by the learner worker after each learning cycle.
//!
//! At most one index is in flight. A round (every `ruvector.advisor_interval_s`, at low load) advises on the learner's
//! workload since the previous round (`advisor::advise`: what-if costing with HypoPG; each query class weighted by its
//! executions since then, each table's write cost by its writes since then; the first round weighs all it learned),
//! takes the best pick that was never built before (a failed build may be retried) and whose queries have enough
//! captured latencies to validate it against (else it waits for a later round), records it in
//! `ruvector.dag_advisor_log` and builds it with `CREATE INDEX CONCURRENTLY ruvector_advisor_<id>` on a thread with its
//! own client connection (the statement cannot run inside a transaction, and it waits for every older snapshot — among
//! them those of backends waiting for the worker in `dag_learn_now()` — so the worker goes on serving while it runs;
//! drops run the same way, and a reverted index whose drop failed is dropped again at a later step). Then the index is
//! validated on the real workload: the latencies of the queries it was built for, captured before it was created and
//! after it was built (`ruvector.dag_trajectories`), are compared with a rank test (`advisor::judge`). Significantly
//! faster and used → kept; significantly slower → reverted at once; at the end of `ruvector.advisor_validation_s`, no
//! significant gain, no scan using it, or too few executions → reverted. A reverted index is dropped (`DROP INDEX
//! CONCURRENTLY`) and the candidate never returns. The worker only ever drops indexes it built (their names are in the
//! log).
//!
//! When a round has no index to build, it applies the best extended-statistics advice from the executions captured
//! with actual rows (`statistics_advice::workload_advice`: a conjunctive filter misestimated by 10× or more, and
//! what-if statistics that bring the estimate closer): `CREATE STATISTICS ruvector_advisor_stats_<id> …; ANALYZE`.
//! Statistics are validated by estimating again and, when they changed a plan, like an index
//! (`advisor::judge_statistics`): if the planner's estimate is no longer at least 2× closer to the actual rows, they
//! are reverted; on a new plan, a significant latency regression (> 1.2×) reverts them at once and a significant
//! gain keeps them; at the end of the window with the estimate fixed and no regression, kept too (they cost an
//! `ANALYZE`, not writes or space). When every execution after them ran a plan seen before them, latency is not
//! judged: they changed nothing the executor does. Reverted statistics are dropped (`DROP STATISTICS`).

use crate::replay::Replayer;
use dag::advisor::{
    Judgement, MIN_SAMPLES, StatisticsVerdict, StatisticsWhy, Timed, geometric_mean, judge, judge_statistics, latencies,
};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use pgrx::spi;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Client backends running a statement above which a round waits ("low load").
const MAX_ACTIVE_BACKENDS: i64 = 2;
/// Latencies read per side for validation.
const SAMPLES: i64 = 500;

/// The auto mode's memory between cycles (everything else is in `ruvector.dag_advisor_log`).
#[derive(Debug, Default)]
pub(crate) struct AutoAdvisor {
    last_round: Option<Instant>,
    warned: bool,
    /// At the last round: executions per query class and writes per table, so that a round weighs the
    /// executions and writes of the same period (the first round weighs everything learned before it).
    baseline: Option<(HashMap<i64, f64>, HashMap<String, f64>)>,
    /// The maintenance statement running on its own thread, if any.
    job: Option<Job>,
}

/// A `CREATE INDEX CONCURRENTLY` or `DROP INDEX CONCURRENTLY` (or the statistics equivalents) in progress.
#[derive(Debug)]
struct Job {
    action: i64,
    index: String,
    kind: String,
    build: bool,
    started: Instant,
    handle: std::thread::JoinHandle<Result<(), String>>,
}

/// The action being validated.
struct InFlight {
    id: i64,
    index: String,
    elapsed_s: f64,
    state: String,
    /// `index` or `statistics`.
    kind: String,
    table: String,
    columns: Vec<String>,
    query_ids: Vec<i64>,
    /// Statistics: the scan's estimate before them, and the rows the executions returned.
    estimated_before: Option<f64>,
    actual: Option<f64>,
}

fn log_error<T>(what: &str, r: Result<T, spi::SpiError>) -> Option<T> {
    r.map_err(|e| warning!("ruvector_dag_learner: index advisor: {what}: {e}")).ok()
}

impl AutoAdvisor {
    /// True while a maintenance statement runs: the worker then steps every second to settle it promptly.
    pub(crate) fn busy(&self) -> bool {
        self.job.is_some()
    }

    /// One step: settle an interrupted build, validate the index in flight, or start a round.
    pub(crate) fn step(&mut self, replayer: &mut Replayer, db: &str) {
        if crate::gucs::ADVISOR_MODE.get() != crate::gucs::AdvisorMode::auto
            || !BackgroundWorker::transaction(crate::learner::extension_installed)
        {
            return;
        }
        if let Some(job) = self.job.take() {
            if !job.handle.is_finished() {
                self.job = Some(job);
                return;
            }
            self.settle(replayer, db, job);
            return;
        }
        // Reverted or failed actions whose index still exists (a drop that failed or was interrupted).
        let leftover = BackgroundWorker::transaction(|| {
            Spi::get_three::<i64, String, String>(
                "SELECT action_id, index_name, kind FROM ruvector.dag_advisor_log
                 WHERE state IN ('reverted', 'failed') AND index_name IS NOT NULL
                   AND CASE kind WHEN 'index' THEN to_regclass(index_name) IS NOT NULL
                       ELSE EXISTS (SELECT FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
                                    WHERE quote_ident(n.nspname) || '.' || quote_ident(s.stxname) = index_name) END
                 ORDER BY action_id LIMIT 1",
            )
            .ok()
        });
        if let Some((Some(action), Some(index), Some(kind))) = leftover {
            self.spawn(replayer, db, action, &index, &kind, false);
            return;
        }
        let in_flight = BackgroundWorker::transaction(|| {
            log_error(
                "reading dag_advisor_log",
                Spi::connect(|c| {
                    let row = c
                        .select(
                            "SELECT action_id, index_name, extract(epoch FROM now() - coalesce(built_at, created_at))::float8,
                                    state, kind, table_name, columns, query_ids, estimated_rows_before, actual_rows
                             FROM ruvector.dag_advisor_log WHERE state IN ('building', 'validating')
                             ORDER BY action_id LIMIT 1",
                            None,
                            &[],
                        )?
                        .first();
                    if row.is_empty() {
                        return Ok(None);
                    }
                    Ok(Some(InFlight {
                        id: row.get::<i64>(1)?.unwrap_or_default(),
                        index: row.get::<String>(2)?.unwrap_or_default(),
                        elapsed_s: row.get::<f64>(3)?.unwrap_or_default(),
                        state: row.get::<String>(4)?.unwrap_or_default(),
                        kind: row.get::<String>(5)?.unwrap_or_default(),
                        table: row.get::<String>(6)?.unwrap_or_default(),
                        columns: row.get::<Vec<String>>(7)?.unwrap_or_default(),
                        query_ids: row.get::<Vec<i64>>(8)?.unwrap_or_default(),
                        estimated_before: row.get::<f64>(9)?,
                        actual: row.get::<f64>(10)?,
                    }))
                }),
            )
            .flatten()
        });
        match in_flight {
            // A build interrupted by a restart or crash: its index may be left invalid.
            Some(f) if f.state == "building" => {
                self.finish(replayer, db, &f, "failed", "the build was interrupted", None)
            }
            Some(f) => self.validate(replayer, db, &f),
            None => self.round(replayer, db),
        }
    }

    fn validate(&mut self, replayer: &mut Replayer, db: &str, f: &InFlight) {
        let samples = |after: bool| -> Vec<Timed> {
            let cmp = if after { "t.recorded_at > a.built_at" } else { "t.recorded_at <= a.created_at" };
            BackgroundWorker::transaction(|| {
                log_error(
                    "reading latencies",
                    Spi::connect(|c| {
                        c.select(
                            &format!(
                                "SELECT t.execution_time_ms, t.plan_hash FROM ruvector.dag_trajectories t, ruvector.dag_advisor_log a
                                 WHERE a.action_id = $1 AND t.query_id = ANY(a.query_ids) AND {cmp}
                                 ORDER BY t.recorded_at DESC LIMIT {SAMPLES}"
                            ),
                            None,
                            &[f.id.into()],
                        )?
                        .map(|r| {
                            Ok(Timed {
                                ms: r.get::<f64>(1)?.unwrap_or_default(),
                                plan: r.get::<i64>(2)?.unwrap_or_default() as u64,
                            })
                        })
                        .collect::<Result<Vec<Timed>, spi::SpiError>>()
                    }),
                )
                .unwrap_or_default()
            })
        };
        let (before, after) = (samples(false), samples(true));
        if f.kind == "statistics" {
            return self.validate_statistics(replayer, db, f, &before, &after);
        }
        let (before, after) = (latencies(&before), latencies(&after));
        let scans = BackgroundWorker::transaction(|| {
            Spi::get_one_with_args::<i64>(
                "SELECT coalesce(sum(idx_scan), 0)::int8 FROM pg_stat_user_indexes WHERE indexrelid = to_regclass($1)",
                &[f.index.as_str().into()],
            )
            .ok()
            .flatten()
            .unwrap_or(0)
        });
        let window = f64::from(crate::gucs::ADVISOR_VALIDATION_S.get());
        let expired = f.elapsed_s >= window;
        let (state, reason, p) = match judge(&before, &after) {
            Judgement::Faster { ratio, p } if scans > 0 => (
                "kept",
                format!(
                    "its queries ran {:.1}x faster (geometric means; rank test p = {p:.1e})",
                    1.0 / ratio.max(1e-12)
                ),
                Some(p),
            ),
            // A regression is reverted at once; anything else waits for the window to fill before giving up.
            Judgement::Slower { ratio, p } => (
                "reverted",
                format!("regression: its queries ran {ratio:.2}x slower (geometric means; rank test p = {p:.1e})"),
                Some(p),
            ),
            _ if !expired => return,
            Judgement::NoChange { ratio, p } if scans > 0 => (
                "reverted",
                format!(
                    "no significant gain in {window:.0} s: latency ratio {ratio:.2} after/before (rank test p = {p:.2})"
                ),
                Some(p),
            ),
            _ if scans == 0 => ("reverted", format!("unused: no scan used the index in {window:.0} s"), None),
            _ => (
                "reverted",
                format!("too few executions of its queries to show a gain in {window:.0} s ({} after)", after.len()),
                None,
            ),
        };
        self.finish(replayer, db, f, state, &reason, Some(Figures { before, after, scans, p, estimated_after: None }));
    }

    /// Statistics: judged by [`judge_statistics`] on their queries' latencies and plans and on the estimate now.
    fn validate_statistics(
        &mut self,
        replayer: &mut Replayer,
        db: &str,
        f: &InFlight,
        before: &[Timed],
        after: &[Timed],
    ) {
        let estimate = BackgroundWorker::transaction(|| estimate_now(f));
        let (before_rows, actual) = (f.estimated_before.unwrap_or(f64::NAN), f.actual.unwrap_or(f64::NAN));
        let off = |rows: f64| ((rows.max(0.0) + 1.0) / (actual.max(0.0) + 1.0)).ln().abs();
        // NaN (figures missing) compares false: not fixed.
        let fixed = estimate.is_some_and(|now| off(now) + 2f64.ln() <= off(before_rows));
        let estimates = match estimate {
            Some(now) => format!("estimate {before_rows:.0} → {now:.0} rows for {actual:.0} actual"),
            None => "its queries no longer plan a scan it applies to".to_owned(),
        };
        let window = f64::from(crate::gucs::ADVISOR_VALIDATION_S.get());
        let (state, why) = match judge_statistics(before, after, fixed, f.elapsed_s >= window) {
            StatisticsVerdict::Keep(why) => ("kept", why),
            StatisticsVerdict::Revert(why) => ("reverted", why),
            StatisticsVerdict::Wait => return,
        };
        let (reason, p) = match why {
            StatisticsWhy::Regression { ratio, p } => (
                format!(
                    "regression: its queries ran {ratio:.2}x slower on a new plan (rank test p = {p:.1e}); {estimates}"
                ),
                Some(p),
            ),
            StatisticsWhy::NotFixed => (format!("no longer improves the estimate: {estimates}"), None),
            StatisticsWhy::Faster { ratio, p } => (
                format!(
                    "its queries ran {:.1}x faster on a new plan (rank test p = {p:.1e}); {estimates}",
                    1.0 / ratio.max(1e-12)
                ),
                Some(p),
            ),
            StatisticsWhy::NoRegression { ratio, p } => (
                format!(
                    "{estimates}; no regression on a new plan in {window:.0} s (ratio {ratio:.2}, rank test p = {p:.2})"
                ),
                Some(p),
            ),
            StatisticsWhy::SamePlans { ratio } => (
                format!(
                    "{estimates}; no plan changed in {window:.0} s, latency not theirs to judge (ratio {ratio:.2})"
                ),
                None,
            ),
            StatisticsWhy::TooFew => (format!("{estimates}; too few executions to time in {window:.0} s"), None),
        };
        let figures =
            Figures { before: latencies(before), after: latencies(after), scans: 0, p, estimated_after: estimate };
        self.finish(replayer, db, f, state, &reason, Some(figures));
    }

    /// Records the decision; drops the index unless it is kept.
    fn finish(
        &mut self,
        replayer: &mut Replayer,
        db: &str,
        f: &InFlight,
        state: &str,
        reason: &str,
        figures: Option<Figures>,
    ) {
        let fig = figures.unwrap_or(Figures {
            before: Vec::new(),
            after: Vec::new(),
            scans: 0,
            p: None,
            estimated_after: None,
        });
        let (b, a) = (geometric_mean(&fig.before), geometric_mean(&fig.after));
        BackgroundWorker::transaction(|| {
            log_error(
                "recording a decision",
                Spi::run_with_args(
                    "UPDATE ruvector.dag_advisor_log SET state = $2, reason = $3, decided_at = now(),
                         executions_before = $4, executions_after = $5, before_ms = $6, after_ms = $7,
                         index_scans = CASE kind WHEN 'index' THEN $8 END, p_value = $9,
                         estimated_rows_after = coalesce($10, estimated_rows_after)
                     WHERE action_id = $1",
                    &[
                        f.id.into(),
                        state.into(),
                        reason.into(),
                        (fig.before.len() as i32).into(),
                        (fig.after.len() as i32).into(),
                        b.into(),
                        a.into(),
                        fig.scans.into(),
                        fig.p.into(),
                        fig.estimated_after.into(),
                    ],
                ),
            );
        });
        log!("ruvector_dag_learner: index advisor {state} {} (action {}): {reason}", f.index, f.id);
        if state != "kept" && !f.index.is_empty() {
            self.spawn(replayer, db, f.id, &f.index, &f.kind, false);
        }
    }

    /// Starts building (or dropping) `index` (an index or, for kind `statistics`, a statistics object) for action
    /// `action` on the maintenance thread.
    fn spawn(&mut self, replayer: &mut Replayer, db: &str, action: i64, index: &str, kind: &str, build: bool) {
        let Some((Some(sql), Some(table))) = BackgroundWorker::transaction(|| {
            Spi::get_two_with_args::<String, String>(
                "SELECT implementation_sql, table_name FROM ruvector.dag_advisor_log WHERE action_id = $1",
                &[action.into()],
            )
            .ok()
        }) else {
            return;
        };
        let sql = if build {
            sql
        } else if kind == "statistics" {
            format!("DROP STATISTICS IF EXISTS {index}")
        } else {
            format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")
        };
        let handle = if kind == "index" {
            replayer.spawn_concurrently(db, &sql, &table)
        } else {
            replayer.spawn_maintenance(db, &sql)
        };
        let kind = kind.to_owned();
        self.job = Some(Job { action, index: index.to_owned(), kind, build, started: Instant::now(), handle });
    }

    /// Records how a finished maintenance statement went.
    fn settle(&mut self, replayer: &mut Replayer, db: &str, job: Job) {
        let result = job.handle.join().unwrap_or_else(|_| Err("the maintenance thread panicked".into()));
        let seconds = job.started.elapsed().as_secs_f64();
        match (job.build, result) {
            (true, Ok(())) => {
                BackgroundWorker::transaction(|| {
                    log_error(
                        "recording a build",
                        Spi::run_with_args(
                            "UPDATE ruvector.dag_advisor_log SET state = 'validating', built_at = now() WHERE action_id = $1",
                            &[job.action.into()],
                        ),
                    );
                });
                log!(
                    "ruvector_dag_learner: index advisor built {} in {seconds:.1} s (action {}); validating it",
                    job.index,
                    job.action
                );
            }
            (true, Err(e)) => {
                let f = InFlight {
                    id: job.action,
                    index: job.index.clone(),
                    elapsed_s: 0.0,
                    state: "building".into(),
                    kind: job.kind.clone(),
                    table: String::new(),
                    columns: Vec::new(),
                    query_ids: Vec::new(),
                    estimated_before: None,
                    actual: None,
                };
                self.finish(replayer, db, &f, "failed", &format!("building it failed: {e}"), None);
            }
            (false, Ok(())) => {
                log!("ruvector_dag_learner: index advisor dropped {} (action {})", job.index, job.action)
            }
            (false, Err(e)) => {
                warning!(
                    "ruvector_dag_learner: index advisor could not drop {} (action {}): {e}",
                    job.index,
                    job.action
                )
            }
        }
    }

    /// Advises on the learned workload and builds the best pick never built before.
    fn round(&mut self, replayer: &mut Replayer, db: &str) {
        let interval = Duration::from_secs(crate::gucs::ADVISOR_INTERVAL_S.get().max(1) as u64);
        if self.last_round.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        self.last_round = Some(Instant::now());
        let warned = &mut self.warned;
        let baseline = &mut self.baseline;
        let planned = BackgroundWorker::transaction(std::panic::AssertUnwindSafe(
            || -> Option<(i64, String, &'static str)> {
                let busy = Spi::get_one::<i64>(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'active'",
                )
                .ok()
                .flatten()
                .unwrap_or(0);
                if busy > MAX_ACTIVE_BACKENDS {
                    return None;
                }
                let kept_bytes = Spi::get_one::<i64>(
                    "SELECT coalesce(sum(size_bytes), 0)::int8 FROM ruvector.dag_advisor_log WHERE state = 'kept'",
                )
                .ok()
                .flatten()
                .unwrap_or(0)
                .max(0) as u64;
                let budget =
                    (crate::gucs::ADVISOR_BUDGET_MB.get().max(0) as u64 * 1024 * 1024).saturating_sub(kept_bytes);
                // Executions and writes since the last round: rates of the same period.
                let seen = crate::advisor::learned_workload();
                let writes = crate::advisor::all_table_writes();
                let executions: HashMap<i64, f64> = seen.iter().map(|q| (q.id, q.frequency)).collect();
                // The first round (after a start or a switch to auto) weighs everything learned so far: the
                // workload that ran before is what an operator turned auto mode on for.
                let (before_executions, before_writes) = baseline.replace((executions, writes)).unwrap_or_default();
                let workload: Vec<crate::advisor::WorkloadQuery> = seen
                    .into_iter()
                    .filter_map(|mut q| {
                        q.frequency -= before_executions.get(&q.id).copied().unwrap_or(0.0);
                        (q.frequency > 0.0).then_some(q)
                    })
                    .collect();
                if workload.is_empty() {
                    return None;
                }
                let since = crate::advisor::Writes::Since(&before_writes);
                let advice = match crate::advisor::advise(&workload, budget, since, true) {
                    Ok(a) => a,
                    Err(e) => {
                        if !*warned {
                            log!(
                                "ruvector_dag_learner: index advisor in auto mode builds no index: {e} (in database \"{db}\")"
                            );
                            *warned = true;
                        }
                        Vec::new()
                    }
                };
                let tried: Vec<(String, Vec<String>, String)> = log_error(
                    "reading dag_advisor_log",
                    Spi::connect(|c| {
                        // A failed build (a lock timeout behind a long transaction) may be tried again next round.
                        c.select(
                            "SELECT table_name, columns, kind FROM ruvector.dag_advisor_log WHERE state <> 'failed'",
                            None,
                            &[],
                        )?
                        .map(|r| {
                            Ok((
                                r.get::<String>(1)?.unwrap_or_default(),
                                r.get::<Vec<String>>(2)?.unwrap_or_default(),
                                r.get::<String>(3)?.unwrap_or_default(),
                            ))
                        })
                        .collect::<Result<Vec<_>, spi::SpiError>>()
                    }),
                )
                .unwrap_or_default();
                let was_tried = |kind: &str, table: &str, columns: &[String]| {
                    tried.iter().any(|(t, c, k)| k == kind && t == table && c == columns)
                };
                // An index is validated against its queries' latencies captured before it: without enough of them
                // it could only be judged "too few executions" and reverted for good, so it waits for a round
                // that has them.
                let captured = |ids: &[i64]| {
                    Spi::get_one_with_args::<i64>(
                        "SELECT count(*) FROM ruvector.dag_trajectories WHERE query_id = ANY($1)",
                        &[ids.to_vec().into()],
                    )
                    .ok()
                    .flatten()
                    .unwrap_or(0)
                };
                let Some(pick) = advice.into_iter().find(|a| {
                    !was_tried("index", &a.table, &a.columns) && captured(&a.query_ids) >= MIN_SAMPLES as i64
                }) else {
                    return plan_statistics(&was_tried).map(|(id, name)| (id, name, "statistics"));
                };
                let id = log_error(
                "recording an action",
                Spi::get_one_with_args::<i64>(
                    "INSERT INTO ruvector.dag_advisor_log (table_name, columns, implementation_sql, query_ids, state,
                         size_bytes, expected_cost_before, expected_cost_after)
                     VALUES ($1, $2, $3, $4, 'building', $5, $6, $7) RETURNING action_id",
                    &[
                        pick.table.as_str().into(),
                        pick.columns.clone().into(),
                        pick.sql.as_str().into(),
                        pick.query_ids.clone().into(),
                        (pick.size_bytes.min(i64::MAX as u64) as i64).into(),
                        pick.cost_before.into(),
                        pick.cost_after.into(),
                    ],
                ),
            )
            .flatten()?;
                let index = object_name(&pick.table, "ruvector_advisor_", id)?;
                let name = index.rsplit('.').next().unwrap_or(&index).to_owned();
                let sql = pick.sql.replacen("CREATE INDEX ON ", &format!("CREATE INDEX CONCURRENTLY {name} ON "), 1);
                record_object(id, &index, &sql)?;
                Some((id, index, "index"))
            },
        ));
        let Some((id, index, kind)) = planned else { return };
        self.spawn(replayer, db, id, &index, kind, true);
    }
}

/// The planner's estimate now for the scan the statistics were made for, in the first of their queries that
/// still plans one (inside a transaction).
fn estimate_now(f: &InFlight) -> Option<f64> {
    let oid = Spi::get_one_with_args::<i64>("SELECT to_regclass($1)::oid::int8", &[f.table.as_str().into()])
        .ok()
        .flatten()?
        .to_string();
    f.query_ids.iter().find_map(|&q| {
        let text = crate::steering::fetch_text(q as u64, None)?.text;
        crate::advisor::in_subtransaction(|| crate::advisor::scan_rows(&text, &oid, &f.columns)).ok().flatten()
    })
}

/// Records the best extended-statistics advice from the captured executions that was never applied before, named
/// `ruvector_advisor_stats_<id>` in its table's schema; its action id and qualified name (inside a transaction).
fn plan_statistics(was_tried: &dyn Fn(&str, &str, &[String]) -> bool) -> Option<(i64, String)> {
    let mut advice = crate::statistics_advice::workload_advice();
    // The misestimate seen in the most query classes first.
    advice.sort_by_key(|a| std::cmp::Reverse(a.queries));
    let pick =
        advice.into_iter().find(|a| !a.query_ids.is_empty() && !was_tried("statistics", &a.table, &a.columns))?;
    let id = log_error(
        "recording an action",
        Spi::get_one_with_args::<i64>(
            "INSERT INTO ruvector.dag_advisor_log (kind, table_name, columns, implementation_sql, query_ids, state,
                 estimated_rows_before, estimated_rows_after, actual_rows)
             VALUES ('statistics', $1, $2, $3, $4, 'building', $5, $6, $7) RETURNING action_id",
            &[
                pick.table.as_str().into(),
                pick.columns.clone().into(),
                pick.sql.as_str().into(),
                pick.query_ids.clone().into(),
                pick.estimated.into(),
                pick.estimated_with.into(),
                pick.actual.into(),
            ],
        ),
    )
    .flatten()?;
    let name = object_name(&pick.table, "ruvector_advisor_stats_", id)?;
    let columns = pick.columns.iter().map(spi::quote_identifier).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "CREATE STATISTICS {name}{kinds} ON {columns} FROM {table}; ANALYZE {table}",
        kinds = pick.kinds,
        table = pick.table
    );
    record_object(id, &name, &sql)?;
    Some((id, name))
}

/// `<schema of table>.<prefix><action id>`, quoted: the advisor's objects live in their table's schema, under a
/// name that says who made them (inside a transaction).
fn object_name(table: &str, prefix: &str, id: i64) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident($2 || $3::text)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass",
        &[table.into(), prefix.into(), id.into()],
    )
    .ok()
    .flatten()
}

/// Records the name and the statement of action `id`'s object (inside a transaction).
fn record_object(id: i64, name: &str, sql: &str) -> Option<()> {
    log_error(
        "recording an action",
        Spi::run_with_args(
            "UPDATE ruvector.dag_advisor_log SET index_name = $2, implementation_sql = $3 WHERE action_id = $1",
            &[id.into(), name.into(), sql.into()],
        ),
    )
}

/// What a decision rested on.
struct Figures {
    before: Vec<f64>,
    after: Vec<f64>,
    scans: i64,
    p: Option<f64>,
    /// Statistics: the scan's estimate at the decision.
    estimated_after: Option<f64>,
}
