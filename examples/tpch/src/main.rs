//! TPC-H learning demo: loads TPC-H data into a PostgreSQL server that preloads `ruvector_dag`, runs the 22
//! queries for several rounds with learning on (after each round `ruvector.dag_learn_now()` lets the learner
//! replay what it has not explored yet), and reports per-query latency in the first and last round, what the
//! learner decided per query, and a learning-curve SVG.
//!
//! ```text
//! ruvector-dag-tpch --host SOCKET_DIR --port PORT [--user postgres] [--dbname postgres]
//!                   [--scale 0.1] [--rounds 5] [--svg tpch-learning-curve.svg] [--compare N]
//!                   [--advise N [--timeout 120]] [--auto N [--timeout 120] [--max-rounds 60]]
//!                   [--rewrite [--timeout 120]] [--no-secondary-indexes] [--tpcds DIR] [--test N]
//! ```
//!
//! `--tpcds DIR` runs TPC-DS instead: the data and 99 queries `benches/pg/tpcds/gen.py` wrote to DIR (DuckDB's
//! dsdgen and qualification queries), learning rounds and `--compare` as for TPC-H (`benches/pg/tpcds_learning.sh`).
//! `--learn-minutes M` calls `dag_learn_now()` after each round again while it replays something, for up to M
//! minutes, so that exploration of many classes completes within few rounds. Every query in the learning rounds
//! and the comparison runs under `statement_timeout = --timeout`; a query cancelled by it counts at the cap.
//!
//! `--compare N` then measures each query N times with steering off (the native plan PostgreSQL picks) and on,
//! interleaved so that cache and machine noise hit both alike (a query whose first pair took under 500 ms five
//! times as often), and reports medians, the speedup distribution, the queries slower by more than 1.2x, and the
//! planning share (`benches/pg/tpch_learning.sh`).
//!
//! `--test N` then measures the held-out test set the same way: the templates with other parameter values, which
//! the learner has not executed (TPC-H: other values of the specification's substitution domains; TPC-DS:
//! `DIR/test/NN.sql`, where gen.py moved their years by one). Only the classes it steers are measured (a variant has
//! its template's query id; a class left native runs PostgreSQL's plan either way). First each variant runs once
//! steered as its class is (first contact: the learner has not seen these values), then `ruvector.dag_learn_now()`
//! lets the learner check the new variants (is the arm still faster for them?), then the interleaved runs.
//! `--rounds 0` skips learning, for a server that has learned already.
//!
//! `--advise N` measures instead what the index advisor brings: each query N times (median, server-side time,
//! capped by `--timeout` seconds), then `ruvector.dag_index_advice` over the 22 queries (what-if costing with
//! HypoPG), the proposed indexes built, and each query N times again (`benches/pg/tpch_advisor.sh`). With
//! `--no-secondary-indexes` the tables have their primary keys only.
//!
//! `--auto N` leaves the choice to the learner worker instead: each query N times as PostgreSQL runs it, then
//! `ruvector.advisor_mode = auto` and rounds of the 22 queries until the worker has nothing left to build or judge
//! (at most `--max-rounds`), then each query N times again (`benches/pg/tpch_advisor_auto.sh`).
//!
//! `--rewrite` asks `ruvector.dag_rewrite_report` about each of the 22 queries (decorrelation of correlated
//! scalar aggregate subqueries: Q2, Q17, Q20) and reports its verdict, plan costs and both runs (each capped by
//! `--timeout` seconds) (`benches/pg/tpch_rewrite.sh`).
//!
//! `examples/tpch/run.sh` (the README's main command) sets up a throwaway cluster and runs this.

mod auto;
mod load;
mod queries;
mod svg;
mod tpcds;

use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

struct Args {
    host: String,
    port: u16,
    user: String,
    dbname: String,
    scale: f64,
    rounds: usize,
    svg: String,
    /// After learning: rounds of each query with steering off and on, interleaved (0 = none).
    compare: usize,
    /// Instead of learning: measure, take the index advisor's advice, measure again (runs per query; 0 = off).
    advise: usize,
    /// Instead of learning: measure, let the advisor's auto mode converge, measure again (runs per query; 0 = off).
    auto: usize,
    /// Most rounds of the 22 queries `--auto` waits for convergence.
    max_rounds: usize,
    /// Per-query statement timeout in seconds for `--advise`, `--auto` and `--rewrite`.
    timeout_s: u64,
    /// Instead of learning: what the decorrelating rewrite makes of each query.
    rewrite: bool,
    /// Create the usual secondary indexes when loading.
    secondary_indexes: bool,
    /// TPC-DS instead of TPC-H: the directory `benches/pg/tpcds/gen.py` wrote.
    tpcds: Option<PathBuf>,
    /// After each round, call `dag_learn_now()` again while it replays something, up to this many minutes (0: once).
    learn_minutes: f64,
    /// After `--compare`: runs of each held-out variant of a steered class with steering off and on (0 = none).
    test: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        host: "/var/run/postgresql".into(),
        port: 5432,
        user: "postgres".into(),
        dbname: "postgres".into(),
        scale: 0.1,
        rounds: 5,
        svg: "tpch-learning-curve.svg".into(),
        compare: 0,
        advise: 0,
        auto: 0,
        max_rounds: 60,
        timeout_s: 120,
        rewrite: false,
        secondary_indexes: true,
        tpcds: None,
        learn_minutes: 0.0,
        test: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => a.host = value()?,
            "--port" => a.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--user" => a.user = value()?,
            "--dbname" => a.dbname = value()?,
            "--scale" => a.scale = value()?.parse().map_err(|e| format!("--scale: {e}"))?,
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--svg" => a.svg = value()?,
            "--compare" => a.compare = value()?.parse().map_err(|e| format!("--compare: {e}"))?,
            "--advise" => a.advise = value()?.parse().map_err(|e| format!("--advise: {e}"))?,
            "--auto" => a.auto = value()?.parse().map_err(|e| format!("--auto: {e}"))?,
            "--max-rounds" => a.max_rounds = value()?.parse().map_err(|e| format!("--max-rounds: {e}"))?,
            "--timeout" => a.timeout_s = value()?.parse().map_err(|e| format!("--timeout: {e}"))?,
            "--rewrite" => a.rewrite = true,
            "--no-secondary-indexes" => a.secondary_indexes = false,
            "--tpcds" => a.tpcds = Some(value()?.into()),
            "--test" => a.test = value()?.parse().map_err(|e| format!("--test: {e}"))?,
            "--learn-minutes" => {
                a.learn_minutes = value()?.parse().map_err(|e| format!("--learn-minutes: {e}"))?;
            }
            "-h" | "--help" => {
                return Err("usage: ruvector-dag-tpch --host SOCKET_DIR --port PORT [--user U] [--dbname D] \
                            [--scale 0.1] [--rounds 5] [--svg FILE] [--compare N] [--advise N [--timeout S]] \
                            [--auto N [--timeout S] [--max-rounds R]] [--rewrite [--timeout S]] [--no-secondary-indexes] \
                            [--tpcds DIR] [--test N] [--learn-minutes M]"
                    .into());
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    if !(a.scale > 0.0 && a.scale <= 100.0) {
        return Err(format!("--scale {}: expected a scale factor in (0, 100]", a.scale));
    }
    if a.tpcds.is_some() && (a.advise > 0 || a.auto > 0 || a.rewrite) {
        return Err("--tpcds: learning rounds and --compare only (--advise, --auto and --rewrite are TPC-H's)".into());
    }
    if a.rounds == 1 || (a.rounds == 0 && a.compare == 0 && a.test == 0) {
        return Err("--rounds: at least 2 (a first and a last round), or 0 with --compare or --test".into());
    }
    Ok(a)
}

fn bar(done: usize, total: usize, label: &str) {
    let width = 40;
    let filled = width * done / total.max(1);
    eprint!("\r[{}{}] {done:>4}/{total} {label:<40}", "#".repeat(filled), "-".repeat(width - filled));
    let _ = std::io::stderr().flush();
}

fn query_id(client: &mut Client, text: &str) -> Result<i64, String> {
    let row = client.query_one(&format!("EXPLAIN (VERBOSE, FORMAT JSON) {text}"), &[]).map_err(|e| e.to_string())?;
    let json: serde_json::Value = row.get(0);
    json[0]["Query Identifier"].as_i64().ok_or_else(|| "EXPLAIN VERBOSE shows no query identifier".to_owned())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let mut client = Config::new()
        .host_path(&args.host)
        .port(args.port)
        .user(&args.user)
        .dbname(&args.dbname)
        .application_name("ruvector-dag-tpch")
        .connect(NoTls)
        .map_err(|e| format!("connecting to {}:{}: {e}", args.host, args.port))?;
    client.batch_execute("CREATE EXTENSION IF NOT EXISTS ruvector_dag").map_err(|e| e.to_string())?;
    let hooks: String = client
        .query_one("SELECT status FROM ruvector.dag_health_check() WHERE component = 'hooks'", &[])
        .map_err(|e| e.to_string())?
        .get(0);
    if hooks != "ok" {
        return Err("ruvector_dag is not in shared_preload_libraries on this server: nothing would be learned".into());
    }

    let (workload, queries) = match &args.tpcds {
        Some(dir) => {
            let queries = tpcds::queries(dir)?;
            if table_exists(&mut client, "store_sales")? {
                eprintln!("TPC-DS tables already present: not reloading");
            } else {
                let start = Instant::now();
                tpcds::load(&mut client, dir, |table, done, total| bar(done, total, &format!("loaded {table}")))?;
                eprintln!("\nloaded TPC-DS from {} in {:.1} s", dir.display(), start.elapsed().as_secs_f64());
            }
            (format!("TPC-DS ({})", dir.display()), queries)
        }
        None => {
            if table_exists(&mut client, "lineitem")? {
                eprintln!("TPC-H tables already present: not reloading");
            } else {
                let start = Instant::now();
                let mut done = 0;
                load::load(&mut client, args.scale, args.secondary_indexes, |table, rows| {
                    done += 1;
                    bar(done, 8, &format!("loaded {table} ({rows} rows)"));
                })?;
                eprintln!("\nloaded TPC-H scale factor {} in {:.1} s", args.scale, start.elapsed().as_secs_f64());
            }
            (format!("TPC-H scale factor {}", args.scale), queries::queries(args.scale))
        }
    };
    if args.advise > 0 {
        return advise(&mut client, &queries, args.advise, args.timeout_s);
    }
    if args.auto > 0 {
        return auto::auto(&mut client, &queries, args.auto, args.timeout_s, args.max_rounds);
    }
    if args.rewrite {
        return rewrite(&mut client, &queries, args.timeout_s);
    }
    let ids: Vec<i64> = queries.iter().map(|(_, q)| query_id(&mut client, q)).collect::<Result<_, _>>()?;
    if args.rounds > 0 {
        learn(&mut client, &args, &workload, &queries, &ids)?;
    }
    if args.compare > 0 {
        compare(&mut client, &queries, args.compare, args.timeout_s, "steering off vs on")?;
    }
    if args.test > 0 {
        let test = match &args.tpcds {
            Some(dir) => tpcds::test_queries(dir)?,
            None => queries::test_queries(args.scale),
        };
        held_out(&mut client, &queries, &ids, &test, args.test, args.timeout_s)?;
    }
    Ok(())
}

/// What the learner decided per class: query id to (state, arm).
fn decisions(client: &mut Client) -> Result<HashMap<i64, (String, String)>, String> {
    let rows = client
        .query("SELECT query_id, state, arm FROM ruvector.dag_query_class_log()", &[])
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|row| (row.get(0), (row.get(1), row.get(2)))).collect())
}

/// `args.rounds` rounds of `queries` with learning on (and `dag_learn_now()` after each), then the per-query table
/// (first vs last round, the learner's decision), totals, and the learning-curve SVG.
fn learn(
    client: &mut Client,
    args: &Args,
    workload: &str,
    queries: &[(usize, String)],
    ids: &[i64],
) -> Result<(), String> {
    // by_round[round][query], in milliseconds.
    let mut by_round = vec![vec![0.0f64; queries.len()]; args.rounds];
    let mut learning_s = Vec::new();
    let total_steps = args.rounds * queries.len();
    let cap_ms = args.timeout_s as f64 * 1000.0;
    let mut timeouts = 0;
    for (round, times) in by_round.iter_mut().enumerate() {
        exec(client, &format!("SET statement_timeout = '{}s'", args.timeout_s))?;
        for (i, (n, text)) in queries.iter().enumerate() {
            bar(round * queries.len() + i, total_steps, &format!("round {}/{}: Q{n}", round + 1, args.rounds));
            let start = Instant::now();
            times[i] = match client.query(text.as_str(), &[]) {
                Ok(_) => start.elapsed().as_secs_f64() * 1000.0,
                Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
                    timeouts += 1;
                    cap_ms
                }
                Err(e) => return Err(format!("Q{n}: {}", error_text(&e))),
            };
        }
        exec(client, "RESET statement_timeout")?;
        bar((round + 1) * queries.len(), total_steps, &format!("round {}: learning", round + 1));
        let start = Instant::now();
        let replays = |client: &mut Client| -> Result<i64, String> {
            Ok(client
                .query_one("SELECT replays FROM ruvector.dag_learning_status()", &[])
                .map_err(|e| e.to_string())?
                .get(0))
        };
        loop {
            let before = replays(client)?;
            client.query("SELECT * FROM ruvector.dag_learn_now()", &[]).map_err(|e| format!("dag_learn_now: {e}"))?;
            // Again while the call replayed something (exploration pending) and the minutes allow.
            if replays(client)? == before || start.elapsed().as_secs_f64() >= args.learn_minutes * 60.0 {
                break;
            }
        }
        learning_s.push(start.elapsed().as_secs_f64());
    }
    eprintln!();
    // ms[query][round].
    let ms: Vec<Vec<f64>> = (0..queries.len()).map(|i| by_round.iter().map(|r| r[i]).collect()).collect();

    let decisions = decisions(client)?;
    let last = args.rounds - 1;
    println!(
        "\n{workload}, {} rounds (latency in ms, client-side wall time; {timeouts} runs cancelled at the {} s \
         statement timeout count at the cap)\n",
        args.rounds, args.timeout_s
    );
    println!("{:>4} {:>11} {:>11} {:>8}  learner", "query", "first", "last", "speedup");
    for (i, (n, _)) in queries.iter().enumerate() {
        let (state, arm) = match decisions.get(&ids[i]) {
            Some((s, a)) if s == "steered" => (s.as_str(), a.as_str()),
            Some((s, _)) => (s.as_str(), ""),
            None => ("not seen", ""),
        };
        println!(
            "{:>5} {:>11.1} {:>11.1} {:>7.2}x  {state} {arm}",
            format!("Q{n}"),
            ms[i][0],
            ms[i][last],
            ms[i][0] / ms[i][last].max(1e-9)
        );
    }
    let totals: Vec<f64> = (0..args.rounds).map(|r| ms.iter().map(|q| q[r]).sum::<f64>() / 1000.0).collect();
    println!("\ntotal per round (s): {}", totals.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join("  "));
    println!(
        "learning after each round (s, dag_learn_now: drain, background replays, cycle): {}",
        learning_s.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>().join("  ")
    );
    let status = client
        .query_one("SELECT coalesce(avg_improvement::text, 'none') FROM ruvector.dag_status()", &[])
        .map_err(|e| e.to_string())?;
    let steered = decisions.values().filter(|(s, _)| s == "steered").count();
    println!(
        "steered classes: {steered} of {}; mean improvement of steered classes (counterfactual log): {}",
        queries.len(),
        status.get::<_, String>(0)
    );
    let svg = svg::learning_curve(&format!("{workload} with ruvector_dag learning"), &totals, &ms);
    std::fs::write(&args.svg, svg).map_err(|e| format!("writing {}: {e}", args.svg))?;
    println!("learning curve: {}", args.svg);
    Ok(())
}

/// The held-out test set: for each variant in `test` (numbered as its template in `queries`) whose class the
/// learner steers, `runs` interleaved runs with steering off and on, as [`compare`] reports them. A variant whose
/// query id is not its template's (another class, unseen) is reported and left out.
fn held_out(
    client: &mut Client,
    queries: &[(usize, String)],
    ids: &[i64],
    test: &[(usize, String)],
    runs: usize,
    timeout_s: u64,
) -> Result<(), String> {
    let decisions = decisions(client)?;
    let (mut steered, mut native, mut other) = (Vec::new(), 0, Vec::new());
    for (n, text) in test {
        let Some(i) = queries.iter().position(|(m, _)| m == n) else {
            return Err(format!("test/{n:02}.sql: no query {n} in the training set"));
        };
        if query_id(client, text)? != ids[i] {
            other.push(format!("Q{n}"));
        } else if decisions.get(&ids[i]).is_some_and(|(state, _)| state == "steered") {
            steered.push((*n, text.clone()));
        } else {
            native += 1;
        }
    }
    println!(
        "\nheld-out test set: {} variants (other parameter values) of {} queries; {} of steered classes \
         measured, {} of classes left native not measured (PostgreSQL's plan either way){}",
        test.len(),
        queries.len(),
        steered.len(),
        native,
        if other.is_empty() { String::new() } else { format!("; another query id: {}", other.join(" ")) }
    );
    if steered.is_empty() {
        return Ok(());
    }
    // First contact: each variant once, steered as its class is, as a user meets new values. The learner checks a
    // new variant of a steered class with background replays (within its replay budget); `dag_learn_now()` runs
    // the checks (up to a minute per call) until none is left, as the learning rounds run exploration.
    exec(client, &format!("SET statement_timeout = '{timeout_s}s'"))?;
    let mut first = 0.0;
    for (i, (n, text)) in steered.iter().enumerate() {
        bar(i, steered.len(), &format!("first contact: Q{n}"));
        first += server_ms(client, *n, text)?.map_or(timeout_s as f64 * 1000.0, |(_, ms)| ms);
    }
    exec(client, "RESET statement_timeout")?;
    eprintln!();
    let started = Instant::now();
    // Variants on which the arm holds, loses, not checked yet; classes parameter-sensitive.
    let checks = |client: &mut Client| -> Result<[i64; 4], String> {
        let r = client
            .query_one(
                "SELECT count(*) FILTER (WHERE v->'arm_holds' = 'true'::jsonb),
                        count(*) FILTER (WHERE v->'arm_holds' = 'false'::jsonb),
                        count(*) FILTER (WHERE v->'arm_holds' = 'null'::jsonb),
                        count(DISTINCT query_id) FILTER (WHERE parameter_sensitive)
                 FROM ruvector.dag_query_class_log() LEFT JOIN LATERAL jsonb_array_elements(variants) v ON true",
                &[],
            )
            .map_err(|e| e.to_string())?;
        Ok([r.get(0), r.get(1), r.get(2), r.get(3)])
    };
    let mut calls = 0;
    let [held, lost, unchecked, sensitive] = loop {
        exec(client, "SELECT count(*) FROM ruvector.dag_learn_now()")?;
        calls += 1;
        let now = checks(client)?;
        if now[2] == 0 || calls == 10 {
            break now;
        }
    };
    println!(
        "first contact, each variant once steered as its class: {:.2} s; the learner's checks (dag_learn_now x{calls}, \
         {:.0} s): the arm holds for {held} variants, loses on {lost} ({sensitive} classes parameter-sensitive), \
         {unchecked} unchecked",
        first / 1000.0,
        started.elapsed().as_secs_f64(),
    );
    compare(client, &steered, runs, timeout_s, "held-out variants of the steered classes, steering off vs on")
}

/// The server's message of a database error, else the client's error.
fn error_text(e: &postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

/// Runs `statement`; an error names it with the server's message.
fn exec(client: &mut Client, statement: &str) -> Result<(), String> {
    client.batch_execute(statement).map_err(|e| format!("{statement}: {}", error_text(&e)))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// A query whose first pair of runs (steering off and on) took less than this many milliseconds in all is run
/// [`SHORT_RUNS`] times as often in [`compare`]: on this VM a 70–250 ms query planned the same on both sides still
/// came out up to 1.4x apart as the median of three pairs (TPC-H Q19, Q15, Q20), while more runs cost little.
const SHORT_MS: f64 = 500.0;
const SHORT_RUNS: usize = 5;

/// Steering off vs on, interleaved, `rounds` times per query (short queries more: [`SHORT_MS`]); server-side time
/// from `EXPLAIN (ANALYZE, TIMING OFF, SUMMARY)` (planning and execution), so client overhead and result transfer do
/// not blur small queries. A run cancelled by `statement_timeout` (`timeout_s`) counts at the cap.
fn compare(
    client: &mut Client,
    queries: &[(usize, String)],
    rounds: usize,
    timeout_s: u64,
    title: &str,
) -> Result<(), String> {
    exec(client, &format!("SET statement_timeout = '{timeout_s}s'"))?;
    let mut rows = Vec::new();
    let mut timeouts = [0, 0];
    let mut steps = queries.len() * rounds * 2;
    let mut step = 0;
    let mut short = 0;
    for (n, text) in queries {
        let mut time: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut planning = [0.0, 0.0];
        let mut runs = rounds;
        let mut run = 0;
        while run < runs {
            run += 1;
            for (k, steering) in ["off", "on"].iter().enumerate() {
                bar(step, steps, &format!("comparing Q{n}, steering {steering}"));
                step += 1;
                client.batch_execute(&format!("SET ruvector.dag_steering = {steering}")).map_err(|e| e.to_string())?;
                match server_ms(client, *n, text)? {
                    Some((plan_ms, total_ms)) => {
                        time[k].push(total_ms);
                        planning[k] += plan_ms;
                    }
                    None => {
                        time[k].push(timeout_s as f64 * 1000.0);
                        timeouts[k] += 1;
                    }
                }
            }
            if run == 1 && time[0][0] + time[1][0] < SHORT_MS {
                // Noise of a few milliseconds is a large share of a short query: more runs, at little cost.
                runs = rounds * SHORT_RUNS;
                steps += (runs - rounds) * 2;
                short += 1;
            }
        }
        exec(client, "RESET ruvector.dag_steering")?;
        let (native, steered) = (median(&mut time[0]), median(&mut time[1]));
        rows.push((*n, native, steered, planning[1] / runs as f64));
    }
    exec(client, "RESET statement_timeout")?;
    eprintln!();
    println!(
        "\n{title}, median of {rounds} interleaved runs each, {} for the {short} queries whose first pair took \
         under {SHORT_MS} ms (server-side planning + execution, ms; runs cancelled at the {timeout_s} s statement \
         timeout count at the cap: {} native, {} with ruvector)\n",
        rounds * SHORT_RUNS,
        timeouts[0],
        timeouts[1]
    );
    println!("{:>5} {:>11} {:>11} {:>8}", "query", "native", "ruvector", "speedup");
    for (n, native, steered, _) in &rows {
        println!("{:>5} {:>11.1} {:>11.1} {:>7.2}x", format!("Q{n}"), native, steered, native / steered.max(1e-9));
    }
    let total_native: f64 = rows.iter().map(|r| r.1).sum();
    let total_steered: f64 = rows.iter().map(|r| r.2).sum();
    let planning: f64 = rows.iter().map(|r| r.3).sum();
    let mut speedups: Vec<f64> = rows.iter().map(|r| r.1 / r.2.max(1e-9)).collect();
    speedups.sort_by(f64::total_cmp);
    let pct = |p: f64| speedups[((speedups.len() - 1) as f64 * p).round() as usize];
    let slower = rows.iter().filter(|r| r.2 > 1.2 * r.1).count();
    println!(
        "\ntotal: native {:.2} s, ruvector {:.2} s ({:+.1}% time); speedup min {:.2}x, p25 {:.2}x, median {:.2}x, p75 \
         {:.2}x, max {:.2}x; queries slower by >1.2x: {slower}; planning share with ruvector: {:.2}%",
        total_native / 1000.0,
        total_steered / 1000.0,
        100.0 * (total_steered - total_native) / total_native.max(1e-9),
        pct(0.0),
        pct(0.25),
        pct(0.5),
        pct(0.75),
        pct(1.0),
        100.0 * planning / total_steered.max(1e-9)
    );
    Ok(())
}

/// Whether `table` exists (the data of an earlier run is not loaded again).
fn table_exists(client: &mut Client, table: &str) -> Result<bool, String> {
    client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).map(|r| r.get(0)).map_err(|e| e.to_string())
}

/// One run of query `n` under `EXPLAIN (ANALYZE, TIMING OFF, SUMMARY)`: (planning, planning + execution) in ms,
/// server-side; `None` when `statement_timeout` cancelled it.
fn server_ms(client: &mut Client, n: usize, text: &str) -> Result<Option<(f64, f64)>, String> {
    match client.query_one(&format!("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY, FORMAT JSON) {text}"), &[]) {
        Ok(row) => {
            let json: serde_json::Value = row.get(0);
            let plan_ms = json[0]["Planning Time"].as_f64().unwrap_or(0.0);
            Ok(Some((plan_ms, plan_ms + json[0]["Execution Time"].as_f64().unwrap_or(0.0))))
        }
        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => Ok(None),
        Err(e) => Err(format!("Q{n}: {}", error_text(&e))),
    }
}

/// Median server-side time (planning + execution, ms) of `runs` runs of every query; `None` when a run hit the
/// statement timeout.
fn measure(
    client: &mut Client,
    queries: &[(usize, String)],
    runs: usize,
    label: &str,
) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for (i, (n, text)) in queries.iter().enumerate() {
        let mut times = Vec::new();
        for r in 0..runs {
            bar(i * runs + r, queries.len() * runs, &format!("{label}: Q{n}"));
            match server_ms(client, *n, text)? {
                Some((_, total_ms)) => times.push(total_ms),
                None => {
                    times.clear();
                    break;
                }
            }
        }
        out.push((!times.is_empty()).then(|| median(&mut times)));
    }
    eprintln!();
    Ok(out)
}

/// Bytes of every index in schema public.
fn index_bytes(client: &mut Client) -> Result<i64, String> {
    let row = client
        .query_one(
            "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0)::int8 FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace",
            &[],
        )
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// What the index advisor brings: measure, advise over the whole workload, build the advice, measure again.
/// `dag_rewrite_report` for each query: what was rewritten, verdict, plan costs, runs before and after.
fn rewrite(client: &mut Client, queries: &[(usize, String)], timeout_s: u64) -> Result<(), String> {
    println!("\ndecorrelating rewrite (dag_rewrite_report, runs capped at {timeout_s} s):\n");
    println!(
        "{:>4}  {:<14} {:>12} {:>12} {:>12} {:>12} {:>7}  detail",
        "", "status", "cost before", "cost after", "ms before", "ms after", "equal"
    );
    let show = |t: Option<f64>| t.map_or_else(|| "-".to_owned(), |t| format!("{t:.1}"));
    for (n, q) in queries {
        let start = Instant::now();
        let row = client
            .query_one(
                "SELECT status, detail, cost_before, cost_after, ms_before, ms_after, results_equal
                 FROM ruvector.dag_rewrite_report($1, $2)",
                &[q, &(timeout_s.saturating_mul(1000).min(3_600_000) as i32)],
            )
            .map_err(|e| format!("Q{n}: {}", error_text(&e)))?;
        let (status, detail): (String, String) = (row.get(0), row.get(1));
        let equal: Option<bool> = row.get(6);
        println!(
            "Q{n:<3}  {status:<14} {:>12} {:>12} {:>12} {:>12} {:>7}  {detail} ({:.1} s)",
            show(row.get(2)),
            show(row.get(3)),
            show(row.get(4)),
            show(row.get(5)),
            equal.map_or("-", |e| if e { "yes" } else { "NO" }),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn advise(client: &mut Client, queries: &[(usize, String)], runs: usize, timeout_s: u64) -> Result<(), String> {
    exec(client, "CREATE EXTENSION IF NOT EXISTS hypopg")?;
    exec(client, &format!("SET statement_timeout = '{timeout_s}s'"))?;
    let before = measure(client, queries, runs, "before advice")?;
    exec(client, "RESET statement_timeout")?;

    let texts: Vec<&str> = queries.iter().map(|(_, q)| q.as_str()).collect();
    let storage_before = index_bytes(client)?;
    let start = Instant::now();
    let rows = client
        .query(
            "SELECT implementation_sql, size_bytes, cost_before, cost_after, queries_helped, correlated
             FROM ruvector.dag_index_advice($1::text[]) ORDER BY rank",
            &[&texts],
        )
        .map_err(|e| format!("dag_index_advice: {e}"))?;
    let advise_s = start.elapsed().as_secs_f64();
    println!("\nindex advice over the 22 queries ({advise_s:.1} s, what-if costing with HypoPG):\n");
    let start = Instant::now();
    let mut built = Vec::new();
    for r in &rows {
        let (stmt, size, cost_before, cost_after, helped, correlated): (String, i64, f64, f64, i32, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        println!(
            "  {stmt:<60} ~{:>6.1} MB  workload cost {cost_before:.0} -> {cost_after:.0}, {helped} queries{}",
            size as f64 / 1048576.0,
            if correlated { ", SubPlan correlation key" } else { "" }
        );
        exec(client, &stmt)?;
        built.push(stmt);
    }
    exec(client, "ANALYZE")?;
    let build_s = start.elapsed().as_secs_f64();
    let storage = index_bytes(client)? - storage_before;
    exec(client, &format!("SET statement_timeout = '{timeout_s}s'"))?;
    let after = measure(client, queries, runs, "after advice")?;
    exec(client, "RESET statement_timeout")?;

    let c = compare_table(queries, &before, &after, runs, timeout_s, ("before", "after"));
    println!(
        "\ntotal: before {:.1} s, after {:.1} s (timeouts counted as {timeout_s} s); queries slower by >1.2x: {}; \
         {} indexes built in {build_s:.1} s, {:.1} MB of index storage added; advice took {advise_s:.1} s",
        c.total_before_ms / 1000.0,
        c.total_after_ms / 1000.0,
        c.slower,
        built.len(),
        storage as f64 / 1048576.0
    );
    Ok(())
}

/// Totals of [`compare_table`].
struct Compared {
    total_before_ms: f64,
    total_after_ms: f64,
    /// Queries slower by more than 1.2x.
    slower: usize,
    /// Per-query speedups (before / after; a timeout counts at the cap).
    speedups: Vec<f64>,
}

/// Prints medians before and after per query (`None`: hit the timeout, counted at the cap) and the speedups.
fn compare_table(
    queries: &[(usize, String)],
    before: &[Option<f64>],
    after: &[Option<f64>],
    runs: usize,
    timeout_s: u64,
    (label_before, label_after): (&str, &str),
) -> Compared {
    let show = |t: Option<f64>| t.map_or(format!(">{}", timeout_s * 1000), |t| format!("{t:.1}"));
    println!(
        "\nmedian of {runs} runs per query (server-side planning + execution, ms; >T: hit the {timeout_s} s timeout)\n"
    );
    println!("{:>5} {:>12} {:>12} {:>9}", "query", label_before, label_after, "speedup");
    let cap = timeout_s as f64 * 1000.0;
    let mut c = Compared { total_before_ms: 0.0, total_after_ms: 0.0, slower: 0, speedups: Vec::new() };
    for (((n, _), b), a) in queries.iter().zip(before).zip(after) {
        let (bv, av) = (b.unwrap_or(cap), a.unwrap_or(cap));
        c.total_before_ms += bv;
        c.total_after_ms += av;
        if av > 1.2 * bv {
            c.slower += 1;
        }
        let speedup = bv / av.max(1e-9);
        c.speedups.push(speedup);
        let shown = if b.is_some() { format!("{speedup:.2}x") } else { format!(">{speedup:.0}x") };
        println!("{:>5} {:>12} {:>12} {:>9}", format!("Q{n}"), show(*b), show(*a), shown);
    }
    c
}

fn main() {
    if let Err(e) = run() {
        eprintln!("\nruvector-dag-tpch: {e}");
        std::process::exit(1);
    }
}
