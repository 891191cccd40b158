//! Background replay of captured queries under candidate setting arms (learner worker only).
//!
//! Exploration must never hurt a user's query, so candidates are measured here, not on user executions: the
//! worker connects to the local server over its Unix socket as the bootstrap superuser (peer or trust
//! authentication, as pg_cron does), with capture and steering off for that session, and for each replay opens a
//! `READ ONLY` transaction, takes the role of the user who ran the query (`set_config('role', …)`), sets the arm's
//! settings and a `statement_timeout`, and runs `EXPLAIN` (to see whether the arm changes the plan at all) and, if
//! it does, `EXPLAIN (ANALYZE, TIMING OFF)` for the server-side execution time. The extended protocol accepts
//! exactly one statement, and the text is one that already ran as a read-only `SELECT` (see `hooks.rs`).

use crate::steering::{ARMS, text};
use dag::dag::{ExplainOptions, import_explain};
use dag::healing::{Issue, RepairContext, RepairStrategy, Verdict};
use pgrx::pg_sys;
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest a concurrent index build or drop of the advisor waits for older transactions (its `lock_timeout`).
pub(crate) const CONCURRENT_WAIT: Duration = Duration::from_secs(30 * 60);

/// What a repair strategy did on a maintenance thread.
#[derive(Debug)]
pub(crate) struct Ran {
    /// The strategy's summary.
    pub(crate) detail: String,
    /// The strategy's own verdict (`Unknown` for the built-in ones: the worker measures).
    pub(crate) verdict: Verdict,
    /// The rollback's result, when the verdict was `Regressed`.
    pub(crate) rollback: Option<Result<(), String>>,
}

/// The server's message of a failed statement (or the client's error).
fn db_message(e: &postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

/// What one replay measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Measured {
    /// Server-side execution time in milliseconds.
    Ms(f64),
    /// Cancelled by the statement timeout.
    Timeout,
}

/// Client connections of the worker, one per database.
pub(crate) struct Replayer {
    socket_dir: String,
    port: u16,
    user: String,
    clients: FxHashMap<String, Client>,
}

fn config_option(name: &std::ffi::CStr) -> Option<String> {
    // SAFETY: GetConfigOption returns a pointer into the GUC's current value (or null), read at once.
    unsafe {
        let v = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        (!v.is_null()).then(|| std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

impl Replayer {
    /// Reads the socket directory, port and bootstrap superuser of this server. Call inside a transaction.
    pub(crate) fn new() -> Self {
        let socket_dir = config_option(c"unix_socket_directories")
            .and_then(|dirs| dirs.split(',').next().map(|d| d.trim().to_owned()))
            .unwrap_or_else(|| "/tmp".to_owned());
        let port = config_option(c"port").and_then(|p| p.parse().ok()).unwrap_or(5432);
        // SAFETY: the bootstrap superuser (OID 10) always exists; the name is copied at once.
        let user = unsafe {
            let name = pg_sys::GetUserNameFromId(pg_sys::Oid::from(10u32), false);
            std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
        };
        Replayer { socket_dir, port, user, clients: FxHashMap::default() }
    }

    fn client(&mut self, db: &str) -> Result<&mut Client, String> {
        if !self.clients.contains_key(db) {
            let client = Config::new()
                .host_path(&self.socket_dir)
                .port(self.port)
                .user(&self.user)
                .dbname(db)
                .application_name("ruvector_dag_learner replay")
                .options("-c ruvector.neural_dag_enabled=off -c ruvector.dag_steering=off")
                .connect_timeout(Duration::from_secs(5))
                .connect(NoTls)
                .map_err(|e| format!("connecting to database \"{db}\" as \"{}\": {e}", self.user))?;
            self.clients.insert(db.to_owned(), client);
        }
        Ok(self.clients.get_mut(db).expect("inserted above"))
    }

    /// Runs `f` in a read-only transaction as `role` with arm `arm`'s settings and `timeout_ms`; rolls back.
    fn in_transaction<T>(
        &mut self,
        db: &str,
        role: &str,
        arm: usize,
        timeout_ms: u64,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, Failure> {
        let client = self.client(db).map_err(Failure::Other)?;
        let result = (|| {
            let mut tx = client.build_transaction().read_only(true).start()?;
            tx.query("SELECT set_config('role', $1, true)", &[&role])?;
            tx.query("SELECT set_config('statement_timeout', $1, true)", &[&format!("{timeout_ms}ms")])?;
            for (name, value) in ARMS[arm] {
                tx.query("SELECT set_config($1, $2, true)", &[&text(name), &text(value)])?;
            }
            let out = f(&mut tx)?;
            tx.rollback()?;
            Ok(out)
        })();
        result.map_err(|e: postgres::Error| {
            if e.is_closed() {
                self.clients.remove(db);
            }
            if e.code() == Some(&SqlState::QUERY_CANCELED) { Failure::Timeout } else { Failure::Other(db_message(&e)) }
        })
    }

    /// Starts a maintenance statement in `db` on a thread of its own with its own connection, outside any
    /// transaction block (`CREATE INDEX CONCURRENTLY` needs that), as the bootstrap superuser, with
    /// `lock_timeout` so it never queues long behind a user's lock. The worker goes on serving meanwhile: a
    /// concurrent build waits for every older snapshot, among them those of backends waiting for the worker.
    /// The thread only does socket I/O (no PostgreSQL API).
    pub(crate) fn spawn_maintenance(&self, db: &str, sql: &str) -> std::thread::JoinHandle<Result<(), String>> {
        let sql = sql.to_owned();
        self.on_maintenance_thread(db, move |mut client| client.batch_execute(&sql).map_err(|e| db_message(&e)))
    }

    /// Runs `CREATE INDEX CONCURRENTLY` or `DROP INDEX CONCURRENTLY` (`sql`) on an index of `table` on a
    /// maintenance thread. The table's lock is taken first in a transaction of its own, under the connection's
    /// 10 s `lock_timeout`: a user's conflicting lock (DDL, a long `VACUUM`) fails the statement rather than
    /// queueing it and everyone behind it. The statement itself may then wait up to [`CONCURRENT_WAIT`]: after
    /// building, a concurrent build waits for every transaction older than its snapshot, which on a workload of
    /// long analytical queries is longer than 10 s nearly every time (at TPC-H SF 1 every build failed with the 10 s
    /// timeout); that wait blocks no reader or writer.
    pub(crate) fn spawn_concurrently(
        &self,
        db: &str,
        sql: &str,
        table: &str,
    ) -> std::thread::JoinHandle<Result<(), String>> {
        let (sql, table) = (sql.to_owned(), table.to_owned());
        self.on_maintenance_thread(db, move |mut client| {
            let mut tx = client.transaction().map_err(|e| db_message(&e))?;
            let name: Option<String> =
                tx.query_one("SELECT to_regclass($1)::text", &[&table]).map_err(|e| db_message(&e))?.get(0);
            let name = name.ok_or_else(|| format!("table {table} does not exist"))?;
            // `name` is regclass output: quoted as an identifier where needed.
            tx.batch_execute(&format!("LOCK TABLE {name} IN SHARE UPDATE EXCLUSIVE MODE"))
                .map_err(|e| db_message(&e))?;
            tx.commit().map_err(|e| db_message(&e))?;
            client
                .batch_execute(&format!("SET lock_timeout = '{}s'", CONCURRENT_WAIT.as_secs()))
                .map_err(|e| db_message(&e))?;
            client.batch_execute(&sql).map_err(|e| db_message(&e))
        })
    }

    /// Runs repair `strategy` on `issue` on a maintenance thread (as [`spawn_maintenance`](Self::spawn_maintenance)
    /// runs a statement): its statements go to that thread's connection one by one; then the strategy's own
    /// verdict, and its rollback when that is `Regressed`.
    pub(crate) fn spawn_repair(
        &self,
        db: &str,
        strategy: &'static dyn RepairStrategy,
        issue: Issue,
    ) -> std::thread::JoinHandle<Result<Ran, String>> {
        self.on_maintenance_thread(db, move |client| {
            let client = Arc::new(Mutex::new(client));
            let run = client.clone();
            let mut ctx = RepairContext::with_executor(Arc::new(move |sql: &str| {
                let mut c = run.lock().map_err(|_| "the maintenance connection is poisoned".to_owned())?;
                // Each statement on its own, as psql would send it: VACUUM and REINDEX CONCURRENTLY refuse to
                // run in a multi-statement string.
                c.batch_execute(sql).map_err(|e| db_message(&e))
            }));
            let outcome = strategy.repair(&issue, &mut ctx).map_err(|e| e.to_string())?;
            let verdict = strategy.verify(&issue, &outcome, &mut ctx).unwrap_or(Verdict::Unknown);
            let rollback = (verdict == Verdict::Regressed)
                .then(|| strategy.rollback(&issue, &outcome, &mut ctx).map_err(|e| e.to_string()));
            Ok(Ran { detail: outcome.detail, verdict, rollback })
        })
    }

    /// Runs `work` on a new thread with a connection of its own to `db`, outside any transaction block, with a 10 s
    /// `lock_timeout`.
    fn on_maintenance_thread<T: Send + 'static>(
        &self,
        db: &str,
        work: impl FnOnce(Client) -> Result<T, String> + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T, String>> {
        let (socket_dir, port, user, db) = (self.socket_dir.clone(), self.port, self.user.clone(), db.to_owned());
        std::thread::spawn(move || {
            block_signals_in_this_thread();
            let client = Config::new()
                .host_path(&socket_dir)
                .port(port)
                .user(&user)
                .dbname(&db)
                .application_name("ruvector_dag_learner maintenance")
                .options("-c ruvector.neural_dag_enabled=off -c lock_timeout=10s")
                .connect_timeout(Duration::from_secs(5))
                .connect(NoTls)
                .map_err(|e| format!("connecting to database \"{db}\" as \"{user}\": {e}"))?;
            work(client)
        })
    }

    /// The plan hash of `text` planned under arm `arm` as `role`.
    pub(crate) fn plan_hash(&mut self, db: &str, role: &str, text: &str, arm: usize) -> Result<u64, String> {
        let sql = format!("EXPLAIN (FORMAT JSON) {text}");
        let json = self
            .in_transaction(db, role, arm, 60_000, |tx| {
                tx.query_one(sql.as_str(), &[]).map(|r| r.get::<_, serde_json::Value>(0))
            })
            .map_err(|e| e.to_string())?;
        let dag = import_explain(&json.to_string(), &ExplainOptions::default()).map_err(|e| e.to_string())?.dag;
        Ok(crate::hooks::plan_hash(&dag))
    }

    /// Executes `text` under arm `arm` as `role` (results discarded) and returns its execution time.
    pub(crate) fn measure(
        &mut self,
        db: &str,
        role: &str,
        text: &str,
        arm: usize,
        timeout_ms: u64,
    ) -> Result<Measured, String> {
        let sql = format!("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {text}");
        let result = self.in_transaction(db, role, arm, timeout_ms, |tx| {
            tx.query_one(sql.as_str(), &[]).map(|r| r.get::<_, serde_json::Value>(0))
        });
        match result {
            Ok(json) => json[0]["Execution Time"]
                .as_f64()
                .map(Measured::Ms)
                .ok_or_else(|| "EXPLAIN ANALYZE returned no execution time".to_owned()),
            Err(Failure::Timeout) => Ok(Measured::Timeout),
            Err(Failure::Other(e)) => Err(e),
        }
    }
}

/// Why a replay transaction failed.
#[derive(Debug)]
enum Failure {
    Timeout,
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("statement timeout"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

/// Blocks every signal in the calling thread (and the threads it starts), so that they all stay with the
/// process's main thread, where PostgreSQL's handlers expect to run. Call first thing on a helper thread.
pub(crate) fn block_signals_in_this_thread() {
    // SAFETY: changes this thread's signal mask only.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}
