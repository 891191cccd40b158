//! `--auto N`: what the index advisor's auto mode brings on its own. Each query N times with PostgreSQL as it is
//! (the baseline), then `ruvector.advisor_mode = auto` and rounds of the 22 queries until the learner worker has
//! nothing left to build or judge, then each query N times again. Prints what the worker did (built, kept,
//! reverted, with its reasons), the time it took to converge, the per-query table, totals, regressions > 1.2x and
//! the index storage added. While measuring (not during the rounds), background replays and index probes are off.

use crate::{compare_table, error_text, exec, index_bytes, measure, median};
use postgres::Client;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Rounds without a new action, with nothing in flight and at least two advisor intervals since the last change,
/// after which the workload counts as converged: 8, because the worker builds an index only once its queries have
/// 8 captured executions, and a round runs each query once (2 stopped a run while Q12's index waited for them).
const QUIET_ROUNDS: usize = 8;

/// One row of `ruvector.dag_advisor_log`.
#[derive(Debug, Clone, PartialEq)]
struct Action {
    kind: String,
    state: String,
    sql: String,
    size_bytes: i64,
    reason: String,
}

fn actions(client: &mut Client) -> Result<BTreeMap<i64, Action>, String> {
    let rows = client
        .query(
            "SELECT action_id, kind, state, implementation_sql, coalesce(size_bytes, 0)::int8, coalesce(reason, '')
             FROM ruvector.dag_advisor_log ORDER BY action_id",
            &[],
        )
        .map_err(|e| format!("reading ruvector.dag_advisor_log: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0),
                Action { kind: r.get(1), state: r.get(2), sql: r.get(3), size_bytes: r.get(4), reason: r.get(5) },
            )
        })
        .collect())
}

fn in_flight(a: &Action) -> bool {
    a.state == "building" || a.state == "validating"
}

/// Runs every query once (capped by the session's statement timeout) and returns the round's server-side total in
/// seconds, a timeout counted at the cap.
fn round(client: &mut Client, queries: &[(usize, String)], cap_ms: f64) -> Result<f64, String> {
    let times = measure(client, queries, 1, "auto mode")?;
    Ok(times.iter().map(|t| t.unwrap_or(cap_ms)).sum::<f64>() / 1000.0)
}

pub(crate) fn auto(
    client: &mut Client,
    queries: &[(usize, String)],
    runs: usize,
    timeout_s: u64,
    max_rounds: usize,
) -> Result<(), String> {
    exec(client, "CREATE EXTENSION IF NOT EXISTS hypopg")?;
    let interval_s: i64 = client
        .query_one("SELECT setting::int8 FROM pg_settings WHERE name = 'ruvector.advisor_interval_s'", &[])
        .map_err(|e| format!("reading ruvector.advisor_interval_s: {}", error_text(&e)))?
        .get(0);
    if !actions(client)?.is_empty() {
        return Err("ruvector.dag_advisor_log is not empty: start from a fresh cluster".into());
    }
    let cap_ms = timeout_s as f64 * 1000.0;
    exec(client, &format!("SET statement_timeout = '{timeout_s}s'"))?;
    // While measuring, the worker runs no background replays or index probes of its own (they would share the
    // machine with the measured query); the auto rounds run with everything on.
    let measuring = |client: &mut Client, on: bool| -> Result<(), String> {
        for (guc, value) in [("ruvector.dag_replay_budget", "0"), ("ruvector.healing_mode", "off")] {
            let stmt =
                if on { format!("ALTER SYSTEM SET {guc} = '{value}'") } else { format!("ALTER SYSTEM RESET {guc}") };
            exec(client, &stmt)?;
        }
        exec(client, "SELECT pg_reload_conf()")
    };
    measuring(client, true)?;
    let before = measure(client, queries, runs, "baseline (advisor off)")?;
    measuring(client, false)?;
    let storage_before = index_bytes(client)?;

    exec(client, "ALTER SYSTEM SET ruvector.advisor_mode = 'auto'")?;
    exec(client, "SELECT pg_reload_conf()")?;
    let start = Instant::now();
    println!(
        "\nauto mode on (advisor rounds every {interval_s} s); rounds of the 22 queries until the worker has \
         nothing left to build or judge:\n"
    );
    let mut known: BTreeMap<i64, Action> = BTreeMap::new();
    let (mut last_change, mut quiet, mut totals) = (Instant::now(), 0, Vec::new());
    let mut converged_s = None;
    for r in 1..=max_rounds {
        let total = round(client, queries, cap_ms)?;
        totals.push(total);
        let now = actions(client)?;
        let mut changed = false;
        for (id, a) in &now {
            if known.get(id) != Some(a) {
                changed = true;
                let detail = if a.reason.is_empty() { String::new() } else { format!(": {}", a.reason) };
                println!(
                    "  round {r:>2} ({:>6.0} s): action {id} {} {}{} [{}]",
                    start.elapsed().as_secs_f64(),
                    a.kind,
                    a.state,
                    detail,
                    a.sql
                );
            }
        }
        known = now;
        println!("  round {r:>2}: {total:.1} s for the 22 queries");
        if changed || known.values().any(in_flight) {
            last_change = Instant::now();
            quiet = 0;
        } else {
            quiet += 1;
        }
        if quiet >= QUIET_ROUNDS && last_change.elapsed() >= Duration::from_secs(2 * interval_s.max(1) as u64) {
            converged_s = Some(last_change.duration_since(start).as_secs_f64());
            break;
        }
    }
    // The comparison is with the worker's work settled: nothing is built or dropped while measuring.
    exec(client, "ALTER SYSTEM SET ruvector.advisor_mode = 'advise'")?;
    exec(client, "SELECT pg_reload_conf()")?;
    while actions(client)?.values().any(|a| a.state == "building") {
        std::thread::sleep(Duration::from_millis(500));
    }
    let storage = index_bytes(client)? - storage_before;
    let steered: i64 = client
        .query_one("SELECT steered_classes FROM ruvector.dag_learning_status()", &[])
        .map_err(|e| e.to_string())?
        .get(0);
    measuring(client, true)?;
    let after = measure(client, queries, runs, "after convergence")?;
    measuring(client, false)?;
    exec(client, "RESET statement_timeout")?;

    println!("\nwhat the worker did:\n");
    for (id, a) in &known {
        println!(
            "  {id:>3} {:<10} {:<10} {:>7.1} MB  {}\n      {}",
            a.kind,
            a.state,
            a.size_bytes as f64 / 1048576.0,
            a.sql,
            a.reason
        );
    }
    let mut c = compare_table(queries, &before, &after, runs, timeout_s, ("stock", "auto"));
    let kept = known.values().filter(|a| a.state == "kept").count();
    let reverted = known.values().filter(|a| a.state == "reverted").count();
    println!(
        "\ntotal: stock {:.1} s, auto {:.1} s (timeouts counted as {timeout_s} s); median speedup {:.2}x; queries \
         slower by >1.2x: {}; actions: {} ({kept} kept, {reverted} reverted), {:.1} MB of index storage added; \
         {}; {steered} query classes steered by the learner; round totals: {}",
        c.total_before_ms / 1000.0,
        c.total_after_ms / 1000.0,
        median(&mut c.speedups),
        c.slower,
        known.len(),
        storage as f64 / 1048576.0,
        match converged_s {
            Some(s) => format!("converged {s:.0} s after auto mode was turned on ({} rounds)", totals.len()),
            None => format!("not converged after {max_rounds} rounds ({:.0} s)", start.elapsed().as_secs_f64()),
        },
        totals.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
