//! Index advice from executed plans: which indexes the plans of a workload ask for, and which of them to build
//! under a storage budget.
//!
//! The host reads each plan's scans and reports, per scan, the columns its predicates constrain ([`ScanUse`]):
//! filter columns compared with constants or parameters, the correlation keys of a SubPlan's inner scan
//! (compared with the outer row's values, once per outer row), and join keys. [`candidates`] turns those into
//! index candidates — equality columns first, then one range column, at most [`MAX_WIDTH`] wide, plus each
//! column alone — weighted by the scans' cost × loops × frequency, merged across queries, and skipping what an
//! existing index already covers. [`select`] then picks a set greedily by benefit per byte, re-costing the whole
//! workload after each pick through a what-if callback (hypothetical indexes in the host), and counts a
//! candidate only when a plan actually uses it. After an index is built, [`judge`] compares its queries'
//! latencies before and after (a rank test) to keep or revert it.
//!
//! ```
//! use ruvector_dag::advisor::*;
//! // Q20's SubPlan: lineitem scanned once per partsupp row, filtered on both correlation keys and a date range.
//! let uses = [ScanUse {
//!     table: "lineitem".into(),
//!     predicates: vec![
//!         ColumnPredicate::new("l_partkey", PredicateKind::Equality, PredicateSource::Correlation),
//!         ColumnPredicate::new("l_suppkey", PredicateKind::Equality, PredicateSource::Correlation),
//!         ColumnPredicate::new("l_shipdate", PredicateKind::Range, PredicateSource::Filter),
//!     ],
//!     weight: 1e9,
//!     query: 20,
//! }];
//! let found = candidates(&uses, &[ExistingIndex { table: "lineitem".into(), columns: vec!["l_orderkey".into()] }]);
//! assert_eq!(found[0].columns, ["l_partkey", "l_suppkey", "l_shipdate"]);
//! assert!(found.iter().any(|c| c.columns == ["l_partkey"]));
//! ```

mod candidates;
mod select;
mod validate;

pub use candidates::{MAX_WIDTH, candidates};
pub use select::{Evaluation, Pick, Selection, select};
pub use validate::{
    ALPHA, Judgement, MIN_SAMPLES, REGRESSION, StatisticsVerdict, StatisticsWhy, Timed, geometric_mean, judge,
    judge_statistics, latencies,
};

/// How a predicate constrains a column: what a B-tree can use it for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PredicateKind {
    /// `col = value` (also `col = ANY(array)`): can lead an index key.
    Equality,
    /// `col < value` and the like: one per index key, after the equalities.
    Range,
}

/// Where in the plan the predicate was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PredicateSource {
    /// A scan's filter against constants or query parameters.
    Filter,
    /// The inner scan of a correlated SubPlan against the outer row's values: evaluated once per outer row.
    Correlation,
    /// A join key of this relation.
    JoinKey,
}

/// One column a scan's predicate constrains.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnPredicate {
    /// Column name.
    pub column: String,
    /// Equality or range.
    pub kind: PredicateKind,
    /// Filter, correlation or join key.
    pub source: PredicateSource,
}

impl ColumnPredicate {
    /// A predicate on `column`.
    pub fn new(column: impl Into<String>, kind: PredicateKind, source: PredicateSource) -> Self {
        ColumnPredicate { column: column.into(), kind, source }
    }
}

/// What one scan of one relation, in one query's plan, constrains.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanUse {
    /// The relation, as the host names it (schema-qualified when needed).
    pub table: String,
    /// Its predicates, in plan order.
    pub predicates: Vec<ColumnPredicate>,
    /// How much an index could save here: the scan's cost × loops × the query's frequency.
    pub weight: f64,
    /// The query (an index into the host's workload).
    pub query: usize,
}

/// An index that exists: its table and key columns in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingIndex {
    /// Table.
    pub table: String,
    /// Key columns, in order (expressions left out).
    pub columns: Vec<String>,
}

/// An index worth costing.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexCandidate {
    /// Table.
    pub table: String,
    /// Key columns, in order.
    pub columns: Vec<String>,
    /// Sum of the weights of the scans it could serve.
    pub weight: f64,
    /// The queries those scans belong to, sorted.
    pub queries: Vec<usize>,
    /// True when it serves a SubPlan's correlation keys.
    pub correlated: bool,
}
