//! `ruvector-dag-demo`: shows a query plan as a DAG.
//!
//! ```text
//! ruvector-dag-demo PLAN.json [--index-am NAME=AM]...   # EXPLAIN (FORMAT JSON[, ANALYZE]) output
//! ruvector-dag-demo --generate SHAPE NODES [SEED]        # chain | left_deep | bushy | vector | shared
//! ruvector-dag-demo ... --json                           # print the DAG in ruvector's JSON format instead
//! ```
//!
//! Prints the plan tree (shared subplans once, then referenced), the topological order, and statistics:
//! operator mix, depth, fan-in, the operators with the largest self cost and, after ANALYZE, the largest
//! misestimates.

use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag::dag::{ExplainOptions, import_explain};
use ruvector_dag::{OperatorKind, QueryDag};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

const USAGE: &str = "usage:
  ruvector-dag-demo PLAN.json [--index-am INDEX=AM]... [--json]
  ruvector-dag-demo --generate SHAPE NODES [SEED] [--json]
      SHAPE: chain | left_deep | bushy | vector | shared";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let json_out = args.iter().any(|a| a == "--json");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--json").collect();
    let (title, dag, timings) = match args.as_slice() {
        [] => return Err("no plan given".into()),
        [flag, rest @ ..] if *flag == "--generate" => {
            let (shape, nodes, seed) = match rest {
                [shape, nodes] => (shape, nodes, "1"),
                [shape, nodes, seed] => (shape, nodes, seed.as_str()),
                _ => return Err("--generate takes SHAPE NODES [SEED]".into()),
            };
            let shape = DagShape::from_name(shape).ok_or_else(|| format!("unknown shape `{shape}`"))?;
            let nodes: usize = nodes.parse().map_err(|_| format!("NODES must be a number, got `{nodes}`"))?;
            let seed: u64 = seed.parse().map_err(|_| format!("SEED must be a number, got `{seed}`"))?;
            (format!("generated {} plan, {nodes} nodes, seed {seed}", shape.name()), generate(shape, nodes, seed), None)
        }
        [path, rest @ ..] => {
            let mut options = ExplainOptions::new();
            let mut rest = rest.iter();
            while let Some(flag) = rest.next() {
                match (flag.as_str(), rest.next()) {
                    ("--index-am", Some(pair)) => {
                        let (index, am) =
                            pair.split_once('=').ok_or_else(|| format!("--index-am wants INDEX=AM, got `{pair}`"))?;
                        options = options.with_index_am(index, am);
                    }
                    (other, _) => return Err(format!("unexpected argument `{other}`")),
                }
            }
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let plan = import_explain(&text, &options).map_err(|e| format!("{path}: {e}"))?;
            (path.to_string(), plan.dag, Some((plan.planning_ms, plan.execution_ms)))
        }
    };
    if json_out {
        return dag.to_json_pretty().map(|j| j + "\n").map_err(|e| e.to_string());
    }
    report(&title, &dag, timings).map_err(|e| e.to_string())
}

fn report(title: &str, dag: &QueryDag, timings: Option<(Option<f64>, Option<f64>)>) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    writeln!(out, "Plan: {title}")?;
    if let Some((planning, execution)) = timings {
        if let Some(p) = planning {
            write!(out, "  planning {p:.3} ms")?;
        }
        if let Some(e) = execution {
            write!(out, "  execution {e:.3} ms")?;
        }
        if planning.is_some() || execution.is_some() {
            writeln!(out)?;
        }
    }
    let heights = dag.heights();
    let depths = dag.depths();
    let max_fan_in = dag.node_ids().map(|id| dag.children(id).map_or(0, |c| c.len())).max().unwrap_or(0);
    let shared = dag.node_ids().filter(|&id| dag.parents(id).is_ok_and(|p| p.len() > 1)).count();
    writeln!(
        out,
        "Nodes {}, edges {}, height {}, sources {}, sinks {}, max fan-in {max_fan_in}, shared subplans {shared}",
        dag.node_count(),
        dag.edge_count(),
        heights.iter().max().copied().unwrap_or(0),
        dag.sources().len(),
        dag.sinks().len(),
    )?;

    writeln!(out, "\nTree (root first; costs are PostgreSQL units, rows per loop):")?;
    let mut printed = vec![false; dag.node_count()];
    for root in dag.sinks() {
        tree(&mut out, dag, root, "", "", &mut printed)?;
    }

    let order = dag.topological_sort().expect("a QueryDag is acyclic");
    let shown: Vec<String> = order.iter().take(40).map(|id| id.to_string()).collect();
    let more = if order.len() > 40 { format!(" … ({} more)", order.len() - 40) } else { String::new() };
    writeln!(out, "\nTopological order (inputs before consumers): {}{more}", shown.join(" "))?;

    let mut mix: BTreeMap<OperatorKind, usize> = BTreeMap::new();
    for n in dag.nodes() {
        *mix.entry(n.op.kind()).or_default() += 1;
    }
    let mix: Vec<String> = mix.iter().map(|(k, c)| format!("{k} ×{c}")).collect();
    writeln!(out, "Operators: {}", mix.join(", "))?;
    writeln!(
        out,
        "Depth of sources: min {}, max {}",
        dag.sources().iter().filter_map(|&id| dag.position(id)).map(|p| depths[p]).min().unwrap_or(0),
        dag.sources().iter().filter_map(|&id| dag.position(id)).map(|p| depths[p]).max().unwrap_or(0),
    )?;

    // Self cost: a node's total cost minus what its inputs cost (PostgreSQL's totals are cumulative).
    let mut self_cost: Vec<(f64, usize)> = dag
        .nodes()
        .map(|n| {
            let inputs: f64 = dag.children(n.id).expect("id from the DAG").map(|c| total_cost(dag, c)).sum();
            ((n.info.estimates.total_cost - inputs).max(0.0), n.id)
        })
        .collect();
    self_cost.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let total: f64 = self_cost.iter().map(|s| s.0).sum();
    writeln!(
        out,
        "\nLargest exclusive cost (total minus the inputs' totals; a nested loop also carries its inner rescans), \
         share of {total:.1}:"
    )?;
    for &(cost, id) in self_cost.iter().take(5) {
        let share = if total > 0.0 { 100.0 * cost / total } else { 0.0 };
        writeln!(out, "  {id:>4}  {:>5.1}%  {cost:>12.1}  {}", share, dag.node(id).expect("id from the DAG"))?;
    }

    let mut misestimates: Vec<(f64, usize, f64, f64)> = dag
        .nodes()
        .filter_map(|n| {
            let a = n.info.actual?;
            (a.loops > 0.0).then(|| {
                let (est, act) = (n.info.estimates.rows.max(1.0), a.rows.max(1.0));
                ((est / act).max(act / est), n.id, n.info.estimates.rows, a.rows)
            })
        })
        .collect();
    if !misestimates.is_empty() {
        misestimates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        writeln!(out, "\nLargest row misestimates (estimated vs actual rows per loop):")?;
        for &(factor, id, est, act) in misestimates.iter().take(5) {
            writeln!(out, "  {id:>4}  ×{factor:<8.1} est {est:<10} actual {act:<10} {}", dag.node(id).expect("id"))?;
        }
    }
    Ok(out)
}

fn total_cost(dag: &QueryDag, id: usize) -> f64 {
    dag.info(id).map_or(0.0, |i| i.estimates.total_cost)
}

fn tree(
    out: &mut String,
    dag: &QueryDag,
    id: usize,
    lead: &str,
    child_lead: &str,
    printed: &mut [bool],
) -> std::fmt::Result {
    let pos = dag.position(id).expect("id from the DAG");
    let op = dag.node(id).expect("id from the DAG");
    let info = dag.info(id).expect("id from the DAG");
    let e = info.estimates;
    if printed[pos] {
        return writeln!(out, "{lead}[{id}] {op} (shared, shown above)");
    }
    printed[pos] = true;
    let mut line =
        format!("{lead}[{id}] {op}  cost {:.2}..{:.2} rows {} width {}", e.startup_cost, e.total_cost, e.rows, e.width);
    if let Some(a) = info.actual {
        if a.loops == 0.0 {
            line.push_str("  (never executed)");
        } else {
            write!(line, "  actual {} rows × {} loops, {:.3} ms", a.rows, a.loops, a.total_ms)?;
        }
    }
    if let Some(f) = &info.filter {
        write!(line, "  filter {f}")?;
    }
    if let Some(s) = &info.subplan {
        write!(line, "  <{s}>")?;
    }
    writeln!(out, "{line}")?;
    let children: Vec<usize> = dag.children(id).expect("id from the DAG").collect();
    for (i, c) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, next) = if last { ("└─ ", "   ") } else { ("├─ ", "│  ") };
        tree(out, dag, *c, &format!("{child_lead}{branch}"), &format!("{child_lead}{next}"), printed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_plans_report() {
        let args: Vec<String> = ["--generate", "shared", "30", "7"].iter().map(|s| s.to_string()).collect();
        let out = run(&args).unwrap();
        assert!(out.contains("Nodes 30"), "{out}");
        assert!(out.contains("(shared, shown above)"), "{out}");
        assert!(out.contains("Topological order"));
    }

    #[test]
    fn bad_arguments_are_explained() {
        let err = run(&["--generate".into(), "round".into(), "3".into()]).unwrap_err();
        assert_eq!(err, "unknown shape `round`");
        assert!(run(&[]).is_err());
        assert!(run(&["/nonexistent.json".into()]).unwrap_err().starts_with("cannot read /nonexistent.json"));
    }
}
