//! Index candidates from the predicates of a workload's scans.

use super::{ColumnPredicate, ExistingIndex, IndexCandidate, PredicateKind, PredicateSource, ScanUse};
use std::collections::HashMap;

/// Widest candidate key: wider indexes rarely pay for their size and write cost.
pub const MAX_WIDTH: usize = 3;

/// Index candidates for `uses`, heaviest (then widest) first, skipping those an index in `existing` covers (its leading
/// columns are the candidate's columns).
///
/// Per scan: the composite key of its filter and correlation predicates (equalities in plan order,
/// correlation keys first, then one range column, at most [`MAX_WIDTH`] columns), and each constrained column
/// alone (join keys only alone: a join key serves a parameterised nested loop). Candidates equal across scans or
/// queries are merged, their weights summed.
pub fn candidates(uses: &[ScanUse], existing: &[ExistingIndex]) -> Vec<IndexCandidate> {
    let mut merged: HashMap<(String, Vec<String>), IndexCandidate> = HashMap::new();
    let mut add = |table: &str, columns: Vec<String>, weight: f64, query: usize, correlated: bool| {
        if columns.is_empty() || covered(table, &columns, existing) {
            return;
        }
        let c = merged.entry((table.to_owned(), columns.clone())).or_insert_with(|| IndexCandidate {
            table: table.to_owned(),
            columns,
            weight: 0.0,
            queries: Vec::new(),
            correlated: false,
        });
        c.weight += weight.max(0.0);
        if let Err(at) = c.queries.binary_search(&query) {
            c.queries.insert(at, query);
        }
        c.correlated |= correlated;
    };
    for u in uses {
        let key = composite_key(&u.predicates);
        let correlated = u.predicates.iter().any(|p| p.source == PredicateSource::Correlation);
        if key.len() > 1 {
            add(&u.table, key, u.weight, u.query, correlated);
        }
        let mut seen: Vec<&str> = Vec::new();
        for p in &u.predicates {
            if !seen.contains(&p.column.as_str()) {
                seen.push(&p.column);
                add(&u.table, vec![p.column.clone()], u.weight, u.query, p.source == PredicateSource::Correlation);
            }
        }
    }
    let mut out: Vec<IndexCandidate> = merged.into_values().collect();
    out.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then_with(|| b.columns.len().cmp(&a.columns.len()))
            .then_with(|| a.table.cmp(&b.table))
            .then_with(|| a.columns.cmp(&b.columns))
    });
    out
}

/// Equality columns of filters and correlations (correlation keys first), then the first range column.
fn composite_key(predicates: &[ColumnPredicate]) -> Vec<String> {
    let mut key: Vec<String> = Vec::new();
    let push = |key: &mut Vec<String>, p: &ColumnPredicate| {
        if key.len() < MAX_WIDTH && !key.contains(&p.column) {
            key.push(p.column.clone());
        }
    };
    let usable = |p: &&ColumnPredicate| p.source != PredicateSource::JoinKey;
    for source in [PredicateSource::Correlation, PredicateSource::Filter] {
        for p in predicates.iter().filter(usable).filter(|p| p.kind == PredicateKind::Equality && p.source == source) {
            push(&mut key, p);
        }
    }
    if let Some(p) =
        predicates.iter().filter(usable).find(|p| p.kind == PredicateKind::Range && !key.contains(&p.column))
    {
        push(&mut key, p);
    }
    key
}

/// True when an existing index on `table` starts with exactly `columns`.
fn covered(table: &str, columns: &[String], existing: &[ExistingIndex]) -> bool {
    existing
        .iter()
        .any(|e| e.table == table && e.columns.len() >= columns.len() && e.columns[..columns.len()] == *columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PredicateKind::{Equality, Range};
    use PredicateSource::{Correlation, Filter, JoinKey};

    fn pred(c: &str, k: PredicateKind, s: PredicateSource) -> ColumnPredicate {
        ColumnPredicate::new(c, k, s)
    }

    fn scan(table: &str, predicates: Vec<ColumnPredicate>, weight: f64, query: usize) -> ScanUse {
        ScanUse { table: table.into(), predicates, weight, query }
    }

    fn cols(c: &IndexCandidate) -> Vec<&str> {
        c.columns.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_correlation_key_of_a_subplan_is_one_composite_candidate() {
        let uses = [scan(
            "lineitem",
            vec![
                pred("l_shipdate", Range, Filter),
                pred("l_partkey", Equality, Correlation),
                pred("l_suppkey", Equality, Correlation),
            ],
            100.0,
            20,
        )];
        let found = candidates(&uses, &[]);
        assert_eq!(cols(&found[0]), ["l_partkey", "l_suppkey", "l_shipdate"], "equalities first, range last");
        assert!(found[0].correlated);
        let singles: Vec<Vec<&str>> = found[1..].iter().map(cols).collect();
        assert_eq!(singles.len(), 3);
        assert!(singles.contains(&vec!["l_partkey"]) && singles.contains(&vec!["l_shipdate"]));
    }

    #[test]
    fn covered_candidates_are_skipped_but_a_longer_key_is_not() {
        let uses = [scan(
            "lineitem",
            vec![pred("l_partkey", Equality, Correlation), pred("l_suppkey", Equality, Correlation)],
            1.0,
            1,
        )];
        let existing =
            [ExistingIndex { table: "lineitem".into(), columns: vec!["l_partkey".into(), "l_orderkey".into()] }];
        let all = candidates(&uses, &existing);
        let found: Vec<Vec<&str>> = all.iter().map(cols).collect();
        assert!(!found.contains(&vec!["l_partkey"]), "a prefix of an existing index is covered");
        assert!(found.contains(&vec!["l_partkey", "l_suppkey"]), "(l_partkey, l_orderkey) does not cover it");
        assert!(found.contains(&vec!["l_suppkey"]));
        let other_table = [ExistingIndex { table: "orders".into(), columns: vec!["l_partkey".into()] }];
        assert_eq!(candidates(&uses, &other_table).len(), 3);
    }

    #[test]
    fn equal_candidates_merge_across_queries_and_sort_by_weight() {
        let uses = [
            scan("t", vec![pred("a", Equality, Filter)], 5.0, 2),
            scan("t", vec![pred("a", Equality, Filter)], 7.0, 1),
            scan("u", vec![pred("b", Range, Filter)], 3.0, 1),
            scan("u", vec![pred("k", Equality, JoinKey), pred("b", Range, Filter)], 1.0, 3),
        ];
        let found = candidates(&uses, &[]);
        assert_eq!((found[0].table.as_str(), cols(&found[0]), found[0].weight), ("t", vec!["a"], 12.0));
        assert_eq!(found[0].queries, [1, 2]);
        let b = found.iter().find(|c| c.table == "u" && c.columns == ["b"]).unwrap();
        assert_eq!((b.weight, b.queries.clone()), (4.0, vec![1, 3]));
        assert!(found.iter().any(|c| c.columns == ["k"]), "a join key alone");
        assert!(!found.iter().any(|c| c.columns.len() > 1), "join keys do not join composite keys");
    }

    #[test]
    fn keys_are_at_most_three_wide() {
        let p: Vec<_> = ["a", "b", "c", "d"].iter().map(|c| pred(c, Equality, Filter)).collect();
        let found = candidates(&[scan("t", p, 1.0, 0)], &[]);
        assert!(found.iter().all(|c| c.columns.len() <= MAX_WIDTH));
        assert!(found.iter().any(|c| c.columns == ["a", "b", "c"]));
    }
}
