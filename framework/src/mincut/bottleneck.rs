//! Bottlenecks of a plan and what to do about them.
//!
//! Three exact, O(V + E) signals per operator:
//! - **self-cost share**: the operator's own cost (total minus its inputs') over the plan's sum of own costs;
//! - **critical path** (CPM, Kelley & Walker 1959): the path from a scan to the root with the largest sum of own
//!   costs, and each operator's **slack** — how much cheaper than the critical path the most expensive path
//!   through it is;
//! - **criticality** from the minimum cut ([`DagMinCutEngine::criticality`]).
//!
//! The bottleneck score combines them: `max(share / max_share, criticality) × (1 − slack / critical_length)`, in
//! `[0, 1]`; the most expensive operator on the critical path scores 1. [`Recommendation`]s are typed and derived
//! from the plan's own estimates and, when present, actuals; [`AlternativePath`]s estimate their improvement from
//! the plan's costs, never from constants.

use super::DagMinCutEngine;
use super::network::self_cost;
use crate::dag::{OperatorKind, OperatorNode, QueryDag, Relationship};
use crate::error::Result;

/// The critical path of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticalPath {
    /// Operator ids from a scan up to the root.
    pub path: Vec<usize>,
    /// Sum of own costs along the path.
    pub length: f64,
    /// Own cost accumulated along the path, aligned with `path`.
    pub accumulated: Vec<f64>,
    /// Slack of every operator, by insertion position: `length` minus the longest path through it.
    pub slack: Vec<f64>,
}

/// Own cost of every operator, by insertion position (total minus inputs' totals, floored at passing rows).
pub fn self_costs(dag: &QueryDag) -> Vec<f64> {
    let totals: Vec<f64> = dag.nodes().map(|n| n.info.estimates.total_cost).collect();
    dag.slots.iter().map(|s| self_cost(&s.info, s.children.iter().map(|&c| totals[c as usize]).sum())).collect()
}

/// The critical path (longest own-cost path from a source to a sink) and every operator's slack.
pub fn critical_path(dag: &QueryDag) -> CriticalPath {
    let n = dag.node_count();
    if n == 0 {
        return CriticalPath { path: Vec::new(), length: 0.0, accumulated: Vec::new(), slack: Vec::new() };
    }
    let cost = self_costs(dag);
    let order = dag.kahn().expect("a QueryDag is acyclic");
    // Longest path ending at v (from below) and starting at v (to a sink).
    let mut down = vec![0.0f64; n];
    let mut best_child = vec![None; n];
    for &v in &order {
        let slot = &dag.slots[v as usize];
        let (best, arg) = slot
            .children
            .iter()
            .map(|&c| (down[c as usize], Some(c)))
            .fold((0.0, None), |acc, x| if x.0 > acc.0 { x } else { acc });
        down[v as usize] = best + cost[v as usize];
        best_child[v as usize] = arg;
    }
    let mut up = vec![0.0f64; n];
    for &v in order.iter().rev() {
        let slot = &dag.slots[v as usize];
        let best = slot.parents.iter().map(|&p| up[p as usize] + cost[p as usize]).fold(0.0, f64::max);
        up[v as usize] = best;
    }
    let end = (0..n)
        .filter(|&v| dag.slots[v].parents.is_empty())
        .max_by(|&a, &b| down[a].total_cmp(&down[b]).then(b.cmp(&a)))
        .expect("a DAG has a sink") as u32;
    let length = down[end as usize];
    let mut path = vec![end];
    while let Some(c) = best_child[*path.last().expect("non-empty") as usize] {
        path.push(c);
    }
    path.reverse();
    let mut acc = 0.0;
    let accumulated = path
        .iter()
        .map(|&v| {
            acc += cost[v as usize];
            acc
        })
        .collect();
    let slack = (0..n).map(|v| (length - (down[v] + up[v])).max(0.0)).collect();
    CriticalPath { path: path.iter().map(|&v| dag.slots[v as usize].id).collect(), length, accumulated, slack }
}

/// A concrete change that should make a bottleneck cheaper.
#[derive(Debug, Clone, PartialEq)]
pub enum Recommendation {
    /// Index the columns a sequential scan filters on.
    CreateIndex {
        /// Table scanned.
        table: String,
        /// Columns referenced by the filter.
        columns: Vec<String>,
    },
    /// Let the planner use a hash join instead of a nested loop whose inner side is rescanned.
    HashJoinInsteadOfNestedLoop {
        /// Rows of the outer side (times the inner side is run).
        outer_rows: f64,
    },
    /// An index providing the sort order, so the sort disappears.
    SortedIndex {
        /// Table under the sort, when it reads a single one.
        table: Option<String>,
        /// Sort keys.
        keys: Vec<String>,
    },
    /// A vector index scan returned fewer rows than planned (filtered approximate search): search wider.
    RaiseVectorSearchEffort {
        /// The vector index.
        index: String,
        /// `hnsw.ef_search` or `ivfflat.probes`.
        setting: &'static str,
        /// Suggested value.
        suggested: u32,
    },
    /// Scan a large table in parallel.
    Parallelism {
        /// Table scanned.
        table: String,
        /// Suggested workers.
        workers: u32,
    },
    /// Partition a table or aggregate that is too large to process in one piece.
    Partitioning {
        /// Table concerned, when known.
        table: Option<String>,
        /// Rows involved.
        rows: f64,
    },
    /// Rewrite a correlated subquery that runs once per outer row as a join.
    Decorrelate {
        /// Loops measured or implied.
        loops: f64,
    },
}

impl std::fmt::Display for Recommendation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recommendation::CreateIndex { table, columns } if columns.is_empty() => {
                write!(f, "create an index on {table} for its filter")
            }
            Recommendation::CreateIndex { table, columns } => {
                write!(f, "create an index on {table} ({})", columns.join(", "))
            }
            Recommendation::HashJoinInsteadOfNestedLoop { outer_rows } => {
                write!(f, "use a hash join instead of a nested loop rescanning its inner side {outer_rows:.0} times")
            }
            Recommendation::SortedIndex { table, keys } => match table {
                Some(t) => write!(f, "an index on {t} ({}) would remove this sort", keys.join(", ")),
                None => write!(f, "provide the order ({}) from an index to remove this sort", keys.join(", ")),
            },
            Recommendation::RaiseVectorSearchEffort { index, setting, suggested } => {
                write!(f, "raise {setting} to {suggested}: {index} returned fewer rows than planned")
            }
            Recommendation::Parallelism { table, workers } => write!(f, "scan {table} with {workers} parallel workers"),
            Recommendation::Partitioning { table: Some(t), rows } => write!(f, "partition {t} ({rows:.0} rows)"),
            Recommendation::Partitioning { table: None, rows } => write!(f, "partition the input ({rows:.0} rows)"),
            Recommendation::Decorrelate { loops } => {
                write!(f, "rewrite the correlated subquery as a join (it runs {loops:.0} times)")
            }
        }
    }
}

/// One bottleneck.
#[derive(Debug, Clone, PartialEq)]
pub struct Bottleneck {
    /// Operator id.
    pub node: usize,
    /// Operator kind.
    pub kind: OperatorKind,
    /// Score in `[0, 1]` (see the [module docs](self)).
    pub score: f64,
    /// Own-cost share of the plan.
    pub cost_share: f64,
    /// Min-cut criticality.
    pub criticality: f64,
    /// Slack against the critical path (0 = on it).
    pub slack: f64,
    /// Own cost.
    pub self_cost: f64,
    /// What to do, most specific first.
    pub recommendations: Vec<Recommendation>,
}

/// Per-operator analysis of a plan, by insertion position.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanAnalysis {
    /// Own cost per operator.
    pub self_cost: Vec<f64>,
    /// Own-cost share per operator.
    pub cost_share: Vec<f64>,
    /// Min-cut criticality per operator.
    pub criticality: Vec<f64>,
    /// Bottleneck score per operator.
    pub score: Vec<f64>,
    /// The critical path.
    pub critical_path: CriticalPath,
    /// The plan's min cut value (cost units).
    pub cut_value: f64,
}

/// Analyses every operator of `dag`: own costs, shares, criticality, critical path and scores.
///
/// # Errors
/// As [`DagMinCutEngine::build_from_dag`] (a plan needs exactly one root).
pub fn analyze(dag: &QueryDag) -> Result<PlanAnalysis> {
    let mut engine = DagMinCutEngine::new();
    engine.build_from_dag(dag)?;
    let criticality = engine.criticality();
    let self_cost = self_costs(dag);
    let total: f64 = self_cost.iter().sum();
    let cost_share: Vec<f64> = self_cost.iter().map(|c| if total > 0.0 { c / total } else { 0.0 }).collect();
    let max_share = cost_share.iter().copied().fold(0.0, f64::max);
    let cp = critical_path(dag);
    let score = (0..dag.node_count())
        .map(|p| {
            let relative = if max_share > 0.0 { cost_share[p] / max_share } else { 0.0 };
            let on_path = if cp.length > 0.0 { 1.0 - (cp.slack[p] / cp.length).min(1.0) } else { 1.0 };
            (relative.max(criticality[p]) * on_path).clamp(0.0, 1.0)
        })
        .collect();
    Ok(PlanAnalysis { self_cost, cost_share, criticality, score, cut_value: engine.cut_value(), critical_path: cp })
}

/// Operators scoring at least `threshold`, highest first, with recommendations.
///
/// # Errors
/// As [`analyze`].
pub fn bottlenecks(dag: &QueryDag, threshold: f64) -> Result<Vec<Bottleneck>> {
    let a = analyze(dag)?;
    let mut out: Vec<Bottleneck> = dag
        .nodes()
        .enumerate()
        .filter(|&(p, _)| a.score[p] >= threshold)
        .map(|(p, n)| Bottleneck {
            node: n.id,
            kind: n.op.kind(),
            score: a.score[p],
            cost_share: a.cost_share[p],
            criticality: a.criticality[p],
            slack: a.critical_path.slack[p],
            self_cost: a.self_cost[p],
            recommendations: recommend(dag, n.id),
        })
        .collect();
    out.sort_by(|x, y| y.score.total_cmp(&x.score).then(x.node.cmp(&y.node)));
    Ok(out)
}

const LARGE_SORT_ROWS: f64 = 100_000.0;
const PARALLEL_SCAN_ROWS: f64 = 1_000_000.0;
const PARTITION_ROWS: f64 = 10_000_000.0;

/// Recommendations for operator `id` from its kind, estimates, filter and actuals.
pub fn recommend(dag: &QueryDag, id: usize) -> Vec<Recommendation> {
    let (Some(op), Some(info)) = (dag.node(id), dag.info(id)) else { return Vec::new() };
    let rows = info.estimates.rows;
    let mut out = Vec::new();
    let under_gather = dag
        .ancestors(id)
        .unwrap_or_default()
        .iter()
        .any(|&a| matches!(dag.node(a), Some(OperatorNode::Gather { .. } | OperatorNode::GatherMerge { .. })));
    match op {
        OperatorNode::SeqScan { table } => {
            if let Some(filter) = &info.filter {
                out.push(Recommendation::CreateIndex { table: table.clone(), columns: filter_columns(filter) });
            }
            if rows >= PARALLEL_SCAN_ROWS && !under_gather && !info.parallel_aware {
                let workers = (rows / PARALLEL_SCAN_ROWS).log2().clamp(1.0, 8.0) as u32 + 1;
                out.push(Recommendation::Parallelism { table: table.clone(), workers });
            }
            if rows >= PARTITION_ROWS {
                out.push(Recommendation::Partitioning { table: Some(table.clone()), rows });
            }
        }
        OperatorNode::NestedLoop { .. } => {
            let children: Vec<usize> = dag.children(id).map(|c| c.collect()).unwrap_or_default();
            let outer_rows = children.first().and_then(|&c| dag.info(c)).map_or(0.0, |i| i.estimates.rows);
            let inner_indexed = children.get(1).and_then(|&c| dag.node(c)).is_some_and(|n| {
                matches!(n.kind(), OperatorKind::IndexScan | OperatorKind::IndexOnlyScan | OperatorKind::Memoize)
            });
            if outer_rows > 1.0 && !inner_indexed {
                out.push(Recommendation::HashJoinInsteadOfNestedLoop { outer_rows });
            }
        }
        OperatorNode::Sort { keys } | OperatorNode::IncrementalSort { keys, .. } if rows >= LARGE_SORT_ROWS => {
            let table = dag.descendants(id).ok().and_then(|d| {
                let tables: Vec<&str> = d.iter().filter_map(|&x| dag.node(x).and_then(|o| o.table())).collect();
                (tables.len() == 1).then(|| tables[0].to_owned())
            });
            out.push(Recommendation::SortedIndex { table, keys: keys.clone() });
        }
        OperatorNode::HnswScan { index, .. } | OperatorNode::IvfFlatScan { index, .. } => {
            if let Some(a) = info.actual.filter(|a| a.loops > 0.0) {
                if a.rows < 0.5 * rows {
                    let (setting, suggested) = if op.kind() == OperatorKind::HnswScan {
                        ("hnsw.ef_search", 200)
                    } else {
                        ("ivfflat.probes", 10)
                    };
                    out.push(Recommendation::RaiseVectorSearchEffort { index: index.clone(), setting, suggested });
                }
            }
        }
        OperatorNode::HashAggregate { .. } | OperatorNode::MixedAggregate { .. } if rows >= PARTITION_ROWS / 10.0 => {
            out.push(Recommendation::Partitioning { table: None, rows });
        }
        _ => {}
    }
    if info.relationship == Some(Relationship::SubPlan) {
        let loops = info.actual.map_or(0.0, |a| a.loops);
        out.push(Recommendation::Decorrelate { loops });
    }
    out
}

/// Column names referenced in a filter expression as PostgreSQL prints it (`((a > 5) AND (b.c = 'x'::text))`):
/// identifiers that are not keywords, function names, or type names after `::` (multi-word ones included).
pub fn filter_columns(filter: &str) -> Vec<String> {
    const KEYWORDS: [&str; 12] =
        ["AND", "OR", "NOT", "NULL", "IS", "IN", "ANY", "ALL", "LIKE", "TRUE", "FALSE", "ARRAY"];
    let bytes = filter.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    // True right after a cast's type name, so that `timestamp with time zone` is skipped whole.
    let mut in_type = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' {
            // A string literal, with '' as an escaped quote.
            i += 1;
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            in_type = false;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.') {
                i += 1;
            }
            let word = &filter[start..i];
            let after_cast = start >= 2 && &bytes[start - 2..start] == b"::";
            if after_cast {
                in_type = true;
            }
            let is_call = bytes.get(i) == Some(&b'(');
            let keyword = KEYWORDS.contains(&word.to_ascii_uppercase().as_str());
            let column = word.rsplit('.').next().unwrap_or(word);
            if !in_type && !is_call && !keyword && !out.iter().any(|c| c == column) {
                out.push(column.to_owned());
            }
            continue;
        }
        if c != b' ' {
            in_type = false;
        }
        i += 1;
    }
    out
}

/// A cheaper way to compute what a critical operator computes.
#[derive(Debug, Clone, PartialEq)]
pub enum AlternativeKind {
    /// Read the filtered rows through an index instead of scanning.
    UseIndex,
    /// Replace a nested loop by a hash join.
    ReplaceJoin,
    /// Take the order from an index instead of sorting.
    SortedIndex,
    /// Compute a correlated subquery once, as a join, instead of once per row.
    Decorrelate,
}

/// A redundancy or alternative-path suggestion with an improvement estimated from the plan's costs.
#[derive(Debug, Clone, PartialEq)]
pub struct AlternativePath {
    /// Operator id.
    pub node: usize,
    /// What to do.
    pub kind: AlternativeKind,
    /// Estimated cost of the operator's current way (cost units).
    pub current_cost: f64,
    /// Estimated cost of the alternative (cost units).
    pub alternative_cost: f64,
    /// Estimated fraction of the whole plan's cost saved, in `[0, 1)`.
    pub estimated_improvement: f64,
}

/// PostgreSQL's default `random_page_cost` and `cpu_operator_cost`.
const RANDOM_PAGE_COST: f64 = 4.0;
const CPU_OPERATOR_COST: f64 = 0.0025;

/// Alternatives for operators scoring at least `threshold`, with improvements estimated from PostgreSQL's
/// default cost constants applied to the plan's own estimates (the plan's root total cost is the baseline).
///
/// # Errors
/// As [`analyze`].
pub fn alternatives(dag: &QueryDag, threshold: f64) -> Result<Vec<AlternativePath>> {
    let a = analyze(dag)?;
    let plan_total = dag.root().and_then(|r| dag.info(r)).map_or(0.0, |i| i.estimates.total_cost);
    let mut out = Vec::new();
    for (p, n) in dag.nodes().enumerate() {
        if a.score[p] < threshold || plan_total <= 0.0 {
            continue;
        }
        let own = a.self_cost[p];
        let rows = n.info.estimates.rows.max(1.0);
        let child_rows = |i: usize| {
            dag.children(n.id)
                .ok()
                .and_then(|mut c| c.nth(i))
                .and_then(|c| dag.info(c))
                .map_or(1.0, |x| x.estimates.rows.max(1.0))
        };
        let candidate = match n.op {
            // An index fetch costs about one random page per matching row.
            OperatorNode::SeqScan { .. } if n.info.filter.is_some() => {
                Some((AlternativeKind::UseIndex, (rows * RANDOM_PAGE_COST).min(own)))
            }
            // A hash join reads each side once: building and probing cost about one operator per row.
            OperatorNode::NestedLoop { .. } => {
                let (outer, inner) = (child_rows(0), child_rows(1));
                Some((AlternativeKind::ReplaceJoin, ((outer + inner) * CPU_OPERATOR_COST * 2.0 + rows * 0.01).min(own)))
            }
            OperatorNode::Sort { .. } | OperatorNode::IncrementalSort { .. } => {
                Some((AlternativeKind::SortedIndex, 0.0))
            }
            _ if n.info.relationship == Some(Relationship::SubPlan) => {
                let loops = n.info.actual.map_or(1.0, |x| x.loops.max(1.0));
                Some((AlternativeKind::Decorrelate, own / loops))
            }
            _ => None,
        };
        if let Some((kind, alternative_cost)) = candidate {
            let saved = (own - alternative_cost).max(0.0);
            if saved > 0.0 {
                out.push(AlternativePath {
                    node: n.id,
                    kind,
                    current_cost: own,
                    alternative_cost,
                    estimated_improvement: (saved / plan_total).min(0.999),
                });
            }
        }
    }
    out.sort_by(|x, y| y.estimated_improvement.total_cmp(&x.estimated_improvement).then(x.node.cmp(&y.node)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_columns_skips_literals_casts_calls_and_keywords() {
        assert_eq!(filter_columns("(c_acctbal > '5000'::numeric)"), ["c_acctbal"]);
        assert_eq!(
            filter_columns(
                "((l.l_shipdate <= '1998-09-02'::date) AND (lower(l_comment) ~~ 'it''s%'::text) AND (x IS NOT NULL))"
            ),
            ["l_shipdate", "l_comment", "x"]
        );
        assert!(filter_columns("(now() < '2000-01-01 00:00:00+00'::timestamp with time zone)").is_empty());
        assert_eq!(filter_columns("((name)::text = ANY ('{a,b}'::text[]))"), ["name"]);
    }
}
