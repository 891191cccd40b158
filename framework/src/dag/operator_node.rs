//! Plan operators: what a node of a [`QueryDag`](super::QueryDag) does.
//!
//! [`OperatorNode`] names the operator and carries the fields that identify it (relation, index, keys,
//! conditions). Everything every PostgreSQL plan node has in common — estimated cost, rows and width, the row
//! filter, actual rows and time after `EXPLAIN ANALYZE` — lives in [`NodeInfo`], held by the DAG beside the
//! operator. This split keeps operator construction short and literal
//! (`OperatorNode::SeqScan { table: "users".into() }`) while estimates can be attached, read and updated
//! uniformly without a `match` over 50 variants.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a join combines its inputs (PostgreSQL `JoinType`, as `EXPLAIN` prints it in "Join Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[repr(u8)]
pub enum JoinType {
    /// Inner join.
    #[default]
    Inner = 0,
    /// Left outer join.
    Left = 1,
    /// Right outer join.
    Right = 2,
    /// Full outer join.
    Full = 3,
    /// Semi join (`EXISTS`, `IN`).
    Semi = 4,
    /// Anti join (`NOT EXISTS`).
    Anti = 5,
    /// Right anti join (PostgreSQL 16+).
    RightAnti = 6,
}

impl JoinType {
    /// All join types, in discriminant order.
    pub const ALL: [JoinType; 7] = [
        JoinType::Inner,
        JoinType::Left,
        JoinType::Right,
        JoinType::Full,
        JoinType::Semi,
        JoinType::Anti,
        JoinType::RightAnti,
    ];

    /// The name `EXPLAIN` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            JoinType::Inner => "Inner",
            JoinType::Left => "Left",
            JoinType::Right => "Right",
            JoinType::Full => "Full",
            JoinType::Semi => "Semi",
            JoinType::Anti => "Anti",
            JoinType::RightAnti => "Right Anti",
        }
    }

    /// Parses the name `EXPLAIN` prints.
    pub fn from_explain(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

/// What a `ModifyTable` node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[repr(u8)]
pub enum ModifyOperation {
    /// `INSERT`.
    #[default]
    Insert = 0,
    /// `UPDATE`.
    Update = 1,
    /// `DELETE`.
    Delete = 2,
    /// `MERGE` (PostgreSQL 15+).
    Merge = 3,
}

impl ModifyOperation {
    /// All operations, in discriminant order.
    pub const ALL: [ModifyOperation; 4] =
        [ModifyOperation::Insert, ModifyOperation::Update, ModifyOperation::Delete, ModifyOperation::Merge];

    /// The name `EXPLAIN` prints in "Operation".
    pub fn as_str(self) -> &'static str {
        match self {
            ModifyOperation::Insert => "Insert",
            ModifyOperation::Update => "Update",
            ModifyOperation::Delete => "Delete",
            ModifyOperation::Merge => "Merge",
        }
    }

    /// Parses the name `EXPLAIN` prints.
    pub fn from_explain(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A plan operator and the fields that identify it.
///
/// The variants cover every node type PostgreSQL 15 prints in `EXPLAIN`, with two refinements that matter for
/// vector workloads and aggregation: an index scan over an `hnsw` or `ivfflat` index is a [`HnswScan`] or
/// [`IvfFlatScan`], and `Aggregate` is split by strategy as the planner chose it. [`Filter`] and [`Union`] never
/// come out of PostgreSQL (it evaluates filters inside other nodes and plans `UNION` as `Append` plus
/// de-duplication); they exist for hand-built DAGs. A node type this version does not know is kept, by name, as
/// [`Other`] rather than guessed.
///
/// Estimates, the row filter and actuals are in [`NodeInfo`], not here.
///
/// ```
/// use ruvector_dag::{OperatorNode, OperatorKind};
/// let scan = OperatorNode::SeqScan { table: "users".into() };
/// assert_eq!(scan.kind(), OperatorKind::SeqScan);
/// assert_eq!(scan.to_string(), "Seq Scan on users");
/// ```
///
/// [`HnswScan`]: OperatorNode::HnswScan
/// [`IvfFlatScan`]: OperatorNode::IvfFlatScan
/// [`Filter`]: OperatorNode::Filter
/// [`Union`]: OperatorNode::Union
/// [`Other`]: OperatorNode::Other
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum OperatorNode {
    // ---- scans -------------------------------------------------------------------------------------------
    /// Sequential scan of a table.
    SeqScan {
        /// Relation name.
        table: String,
    },
    /// `TABLESAMPLE` scan.
    SampleScan {
        /// Relation name.
        table: String,
        /// Sampling method (`bernoulli`, `system`, …).
        method: String,
    },
    /// B-tree (or other non-vector) index scan.
    IndexScan {
        /// Relation name.
        table: String,
        /// Index name.
        index: String,
        /// The index condition, as printed.
        index_cond: Option<String>,
    },
    /// Index-only scan.
    IndexOnlyScan {
        /// Relation name.
        table: String,
        /// Index name.
        index: String,
        /// The index condition, as printed.
        index_cond: Option<String>,
    },
    /// Scan of a pgvector HNSW index (approximate nearest neighbours).
    HnswScan {
        /// Relation name.
        table: String,
        /// Index name.
        index: String,
        /// The distance ordering, e.g. `(embedding <-> '[…]'::vector)`.
        order_by: Option<String>,
    },
    /// Scan of a pgvector IVFFlat index.
    IvfFlatScan {
        /// Relation name.
        table: String,
        /// Index name.
        index: String,
        /// The distance ordering.
        order_by: Option<String>,
    },
    /// Bitmap index scan: builds a TID bitmap for a bitmap heap scan.
    BitmapIndexScan {
        /// Index name.
        index: String,
        /// The index condition, as printed.
        index_cond: Option<String>,
    },
    /// Bitmap heap scan (PostgreSQL "Bitmap Heap Scan").
    BitmapScan {
        /// Relation name.
        table: String,
        /// The recheck condition, as printed.
        recheck_cond: Option<String>,
    },
    /// Intersection of TID bitmaps.
    BitmapAnd,
    /// Union of TID bitmaps.
    BitmapOr,
    /// Scan by tuple id (`WHERE ctid = …`).
    TidScan {
        /// Relation name.
        table: String,
        /// The TID condition, as printed.
        tid_cond: Option<String>,
    },
    /// Scan of a TID range (`WHERE ctid > …`).
    TidRangeScan {
        /// Relation name.
        table: String,
        /// The TID condition, as printed.
        tid_cond: Option<String>,
    },
    /// Scan over a subquery in `FROM`.
    SubqueryScan {
        /// The subquery's alias.
        alias: String,
    },
    /// Scan of a set-returning function in `FROM`.
    FunctionScan {
        /// Function name.
        function: String,
    },
    /// Scan of a table function (`XMLTABLE`, `JSON_TABLE`).
    TableFuncScan {
        /// Table function name.
        function: String,
    },
    /// Scan of a `VALUES` list.
    ValuesScan,
    /// Scan of a common table expression's result.
    CteScan {
        /// CTE name.
        cte: String,
    },
    /// Scan of a named tuplestore (transition tables in triggers).
    NamedTuplestoreScan {
        /// Tuplestore name.
        name: String,
    },
    /// Scan of a recursive CTE's working table.
    WorkTableScan {
        /// CTE name.
        cte: String,
    },
    /// Foreign-data-wrapper scan (a foreign join has no single relation).
    ForeignScan {
        /// Relation name, when the scan reads one relation.
        table: Option<String>,
    },
    /// Custom scan provided by an extension.
    CustomScan {
        /// The provider's name ("Custom Plan Provider").
        provider: String,
        /// Relation name, when there is one.
        table: Option<String>,
    },

    // ---- joins -------------------------------------------------------------------------------------------
    /// Nested-loop join.
    NestedLoop {
        /// Join type.
        join_type: JoinType,
    },
    /// Hash join; its inner input is a [`OperatorNode::Hash`] node.
    HashJoin {
        /// Join type.
        join_type: JoinType,
        /// Hash condition, as printed.
        hash_cond: Option<String>,
    },
    /// Merge join over sorted inputs.
    MergeJoin {
        /// Join type.
        join_type: JoinType,
        /// Merge condition, as printed.
        merge_cond: Option<String>,
    },
    /// Builds the hash table of a hash join.
    Hash,

    // ---- aggregation -------------------------------------------------------------------------------------
    /// Plain aggregate: one output row (strategy "Plain").
    Aggregate,
    /// Aggregate over sorted groups (strategy "Sorted").
    GroupAggregate {
        /// Grouping keys, as printed.
        group_keys: Vec<String>,
    },
    /// Aggregate through a hash table (strategy "Hashed").
    HashAggregate {
        /// Grouping keys, as printed.
        group_keys: Vec<String>,
    },
    /// Grouping sets computed partly sorted, partly hashed (strategy "Mixed").
    MixedAggregate {
        /// Grouping keys of every set, as printed.
        group_keys: Vec<String>,
    },
    /// `Group` node: de-duplicates sorted groups without aggregates.
    Group {
        /// Grouping keys, as printed.
        keys: Vec<String>,
    },
    /// Window functions.
    WindowAgg,

    // ---- sorting -----------------------------------------------------------------------------------------
    /// Full sort.
    Sort {
        /// Sort keys, as printed.
        keys: Vec<String>,
    },
    /// Sort that exploits an already sorted prefix.
    IncrementalSort {
        /// Sort keys, as printed.
        keys: Vec<String>,
        /// The prefix of `keys` that is already sorted.
        presorted_keys: Vec<String>,
    },

    // ---- filtering and projection ------------------------------------------------------------------------
    /// A stand-alone filter (hand-built DAGs; PostgreSQL filters inside other nodes, see [`NodeInfo::filter`]).
    Filter {
        /// The predicate.
        predicate: String,
    },
    /// `Result`: computes a target list without a relation, or applies a one-time filter.
    Result {
        /// "One-Time Filter", evaluated once before any row.
        one_time_filter: Option<String>,
    },
    /// Evaluates set-returning functions in the target list.
    ProjectSet,

    // ---- set operations ----------------------------------------------------------------------------------
    /// Concatenates its inputs (also `UNION ALL` and partitioned scans).
    Append,
    /// Merges sorted inputs.
    MergeAppend {
        /// Sort keys, as printed.
        sort_keys: Vec<String>,
    },
    /// `UNION` (hand-built DAGs; PostgreSQL plans it as `Append` plus de-duplication).
    Union {
        /// `UNION ALL`.
        all: bool,
    },
    /// `INTERSECT` (PostgreSQL `SetOp` with command Intersect).
    Intersect {
        /// `INTERSECT ALL`.
        all: bool,
        /// Hashed rather than sorted strategy.
        hashed: bool,
    },
    /// `EXCEPT` (PostgreSQL `SetOp` with command Except).
    Except {
        /// `EXCEPT ALL`.
        all: bool,
        /// Hashed rather than sorted strategy.
        hashed: bool,
    },
    /// Recursive CTE evaluation.
    RecursiveUnion,

    // ---- materialisation ---------------------------------------------------------------------------------
    /// Materialises its input for rescans.
    Materialize,
    /// Caches inner-side results of a parameterised nested loop (PostgreSQL 14+).
    Memoize {
        /// Cache key, as printed.
        cache_key: Option<String>,
    },

    // ---- utility -----------------------------------------------------------------------------------------
    /// `LIMIT` / `OFFSET`.
    Limit,
    /// Removes adjacent duplicates (`DISTINCT` over sorted input).
    Unique,
    /// Row locks (`FOR UPDATE` / `FOR SHARE`).
    LockRows,
    /// `INSERT`, `UPDATE`, `DELETE` or `MERGE`.
    ModifyTable {
        /// What it does.
        operation: ModifyOperation,
        /// Target relation.
        table: String,
    },

    // ---- parallelism -------------------------------------------------------------------------------------
    /// Collects rows from parallel workers.
    Gather {
        /// Workers the planner asked for.
        workers_planned: u32,
    },
    /// Collects sorted rows from parallel workers, preserving order.
    GatherMerge {
        /// Workers the planner asked for.
        workers_planned: u32,
    },

    /// A node type this version does not model, kept by its `EXPLAIN` name.
    Other {
        /// The "Node Type" as printed.
        node_type: String,
    },
}

/// The kind of an [`OperatorNode`] without its fields: a dense, stable index usable as a feature, an array
/// index or a binary tag.
///
/// The discriminants are part of the binary serialisation format: new kinds are added at the end, never
/// renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
#[allow(missing_docs)] // each kind is documented on the OperatorNode variant of the same name
pub enum OperatorKind {
    SeqScan = 0,
    SampleScan = 1,
    IndexScan = 2,
    IndexOnlyScan = 3,
    HnswScan = 4,
    IvfFlatScan = 5,
    BitmapIndexScan = 6,
    BitmapScan = 7,
    BitmapAnd = 8,
    BitmapOr = 9,
    TidScan = 10,
    TidRangeScan = 11,
    SubqueryScan = 12,
    FunctionScan = 13,
    TableFuncScan = 14,
    ValuesScan = 15,
    CteScan = 16,
    NamedTuplestoreScan = 17,
    WorkTableScan = 18,
    ForeignScan = 19,
    CustomScan = 20,
    NestedLoop = 21,
    HashJoin = 22,
    MergeJoin = 23,
    Hash = 24,
    Aggregate = 25,
    GroupAggregate = 26,
    HashAggregate = 27,
    MixedAggregate = 28,
    Group = 29,
    WindowAgg = 30,
    Sort = 31,
    IncrementalSort = 32,
    Filter = 33,
    Result = 34,
    ProjectSet = 35,
    Append = 36,
    MergeAppend = 37,
    Union = 38,
    Intersect = 39,
    Except = 40,
    RecursiveUnion = 41,
    Materialize = 42,
    Memoize = 43,
    Limit = 44,
    Unique = 45,
    LockRows = 46,
    ModifyTable = 47,
    Gather = 48,
    GatherMerge = 49,
    Other = 50,
}

/// Coarse family of an operator, for features and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OperatorCategory {
    /// Reads a relation, index, function or subquery.
    Scan,
    /// Combines two inputs.
    Join,
    /// Aggregation, grouping and window functions.
    Aggregate,
    /// Sorting.
    Sort,
    /// Filtering and projection.
    Filter,
    /// Set operations and concatenation.
    SetOp,
    /// Materialisation and caching.
    Materialize,
    /// Limit, unique, locking, modification, hash build.
    Utility,
    /// Gathering from parallel workers.
    Parallel,
    /// Unknown node type.
    Other,
}

impl OperatorCategory {
    /// Lower-case name: `scan`, `join`, `aggregate`, `sort`, `filter`, `set_op`, `materialize`, `utility`,
    /// `parallel`, `other`.
    pub fn name(self) -> &'static str {
        match self {
            OperatorCategory::Scan => "scan",
            OperatorCategory::Join => "join",
            OperatorCategory::Aggregate => "aggregate",
            OperatorCategory::Sort => "sort",
            OperatorCategory::Filter => "filter",
            OperatorCategory::SetOp => "set_op",
            OperatorCategory::Materialize => "materialize",
            OperatorCategory::Utility => "utility",
            OperatorCategory::Parallel => "parallel",
            OperatorCategory::Other => "other",
        }
    }
}

impl OperatorKind {
    /// Number of kinds.
    pub const COUNT: usize = 51;

    /// Every kind, in discriminant order (`ALL[k as usize] == k`).
    pub const ALL: [OperatorKind; Self::COUNT] = {
        use OperatorKind::*;
        [
            SeqScan,
            SampleScan,
            IndexScan,
            IndexOnlyScan,
            HnswScan,
            IvfFlatScan,
            BitmapIndexScan,
            BitmapScan,
            BitmapAnd,
            BitmapOr,
            TidScan,
            TidRangeScan,
            SubqueryScan,
            FunctionScan,
            TableFuncScan,
            ValuesScan,
            CteScan,
            NamedTuplestoreScan,
            WorkTableScan,
            ForeignScan,
            CustomScan,
            NestedLoop,
            HashJoin,
            MergeJoin,
            Hash,
            Aggregate,
            GroupAggregate,
            HashAggregate,
            MixedAggregate,
            Group,
            WindowAgg,
            Sort,
            IncrementalSort,
            Filter,
            Result,
            ProjectSet,
            Append,
            MergeAppend,
            Union,
            Intersect,
            Except,
            RecursiveUnion,
            Materialize,
            Memoize,
            Limit,
            Unique,
            LockRows,
            ModifyTable,
            Gather,
            GatherMerge,
            Other,
        ]
    };

    /// Dense index in `0..COUNT`.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind with this index.
    pub fn from_index(index: usize) -> Option<Self> {
        Self::ALL.get(index).copied()
    }

    /// Display name, as PostgreSQL's `EXPLAIN` prints the node (with our refinements: "HNSW Scan",
    /// "Group Aggregate", …).
    pub fn name(self) -> &'static str {
        use OperatorKind::*;
        match self {
            SeqScan => "Seq Scan",
            SampleScan => "Sample Scan",
            IndexScan => "Index Scan",
            IndexOnlyScan => "Index Only Scan",
            HnswScan => "HNSW Scan",
            IvfFlatScan => "IVFFlat Scan",
            BitmapIndexScan => "Bitmap Index Scan",
            BitmapScan => "Bitmap Heap Scan",
            BitmapAnd => "BitmapAnd",
            BitmapOr => "BitmapOr",
            TidScan => "Tid Scan",
            TidRangeScan => "Tid Range Scan",
            SubqueryScan => "Subquery Scan",
            FunctionScan => "Function Scan",
            TableFuncScan => "Table Function Scan",
            ValuesScan => "Values Scan",
            CteScan => "CTE Scan",
            NamedTuplestoreScan => "Named Tuplestore Scan",
            WorkTableScan => "WorkTable Scan",
            ForeignScan => "Foreign Scan",
            CustomScan => "Custom Scan",
            NestedLoop => "Nested Loop",
            HashJoin => "Hash Join",
            MergeJoin => "Merge Join",
            Hash => "Hash",
            Aggregate => "Aggregate",
            GroupAggregate => "Group Aggregate",
            HashAggregate => "Hash Aggregate",
            MixedAggregate => "Mixed Aggregate",
            Group => "Group",
            WindowAgg => "WindowAgg",
            Sort => "Sort",
            IncrementalSort => "Incremental Sort",
            Filter => "Filter",
            Result => "Result",
            ProjectSet => "ProjectSet",
            Append => "Append",
            MergeAppend => "Merge Append",
            Union => "Union",
            Intersect => "Intersect",
            Except => "Except",
            RecursiveUnion => "Recursive Union",
            Materialize => "Materialize",
            Memoize => "Memoize",
            Limit => "Limit",
            Unique => "Unique",
            LockRows => "LockRows",
            ModifyTable => "ModifyTable",
            Gather => "Gather",
            GatherMerge => "Gather Merge",
            Other => "Other",
        }
    }

    /// Identifier-style name (`seq_scan`, `hash_join`), used in configuration and SQL output.
    pub fn snake_name(self) -> &'static str {
        use OperatorKind::*;
        match self {
            SeqScan => "seq_scan",
            SampleScan => "sample_scan",
            IndexScan => "index_scan",
            IndexOnlyScan => "index_only_scan",
            HnswScan => "hnsw_scan",
            IvfFlatScan => "ivfflat_scan",
            BitmapIndexScan => "bitmap_index_scan",
            BitmapScan => "bitmap_heap_scan",
            BitmapAnd => "bitmap_and",
            BitmapOr => "bitmap_or",
            TidScan => "tid_scan",
            TidRangeScan => "tid_range_scan",
            SubqueryScan => "subquery_scan",
            FunctionScan => "function_scan",
            TableFuncScan => "table_function_scan",
            ValuesScan => "values_scan",
            CteScan => "cte_scan",
            NamedTuplestoreScan => "named_tuplestore_scan",
            WorkTableScan => "worktable_scan",
            ForeignScan => "foreign_scan",
            CustomScan => "custom_scan",
            NestedLoop => "nested_loop",
            HashJoin => "hash_join",
            MergeJoin => "merge_join",
            Hash => "hash",
            Aggregate => "aggregate",
            GroupAggregate => "group_aggregate",
            HashAggregate => "hash_aggregate",
            MixedAggregate => "mixed_aggregate",
            Group => "group",
            WindowAgg => "window_agg",
            Sort => "sort",
            IncrementalSort => "incremental_sort",
            Filter => "filter",
            Result => "result",
            ProjectSet => "project_set",
            Append => "append",
            MergeAppend => "merge_append",
            Union => "union",
            Intersect => "intersect",
            Except => "except",
            RecursiveUnion => "recursive_union",
            Materialize => "materialize",
            Memoize => "memoize",
            Limit => "limit",
            Unique => "unique",
            LockRows => "lock_rows",
            ModifyTable => "modify_table",
            Gather => "gather",
            GatherMerge => "gather_merge",
            Other => "other",
        }
    }

    /// The operator's family.
    pub fn category(self) -> OperatorCategory {
        use OperatorKind::*;
        match self {
            SeqScan | SampleScan | IndexScan | IndexOnlyScan | HnswScan | IvfFlatScan | BitmapIndexScan
            | BitmapScan | BitmapAnd | BitmapOr | TidScan | TidRangeScan | SubqueryScan | FunctionScan
            | TableFuncScan | ValuesScan | CteScan | NamedTuplestoreScan | WorkTableScan | ForeignScan | CustomScan => {
                OperatorCategory::Scan
            }
            NestedLoop | HashJoin | MergeJoin => OperatorCategory::Join,
            Aggregate | GroupAggregate | HashAggregate | MixedAggregate | Group | WindowAgg => {
                OperatorCategory::Aggregate
            }
            Sort | IncrementalSort => OperatorCategory::Sort,
            Filter | Result | ProjectSet => OperatorCategory::Filter,
            Append | MergeAppend | Union | Intersect | Except | RecursiveUnion => OperatorCategory::SetOp,
            Materialize | Memoize => OperatorCategory::Materialize,
            Hash | Limit | Unique | LockRows | ModifyTable => OperatorCategory::Utility,
            Gather | GatherMerge => OperatorCategory::Parallel,
            Other => OperatorCategory::Other,
        }
    }

    /// Scans of a pgvector index.
    pub fn is_vector_scan(self) -> bool {
        matches!(self, OperatorKind::HnswScan | OperatorKind::IvfFlatScan)
    }

    /// Operators that consume their whole input before producing the first row (sort, hash build,
    /// hashed aggregation, materialisation), i.e. pipeline breakers.
    pub fn is_blocking(self) -> bool {
        use OperatorKind::*;
        matches!(
            self,
            Sort | Hash
                | HashAggregate
                | MixedAggregate
                | Aggregate
                | Materialize
                | Intersect
                | Except
                | RecursiveUnion
        )
    }
}

impl fmt::Display for OperatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl OperatorNode {
    /// The operator's kind.
    pub fn kind(&self) -> OperatorKind {
        use OperatorNode as N;
        match self {
            N::SeqScan { .. } => OperatorKind::SeqScan,
            N::SampleScan { .. } => OperatorKind::SampleScan,
            N::IndexScan { .. } => OperatorKind::IndexScan,
            N::IndexOnlyScan { .. } => OperatorKind::IndexOnlyScan,
            N::HnswScan { .. } => OperatorKind::HnswScan,
            N::IvfFlatScan { .. } => OperatorKind::IvfFlatScan,
            N::BitmapIndexScan { .. } => OperatorKind::BitmapIndexScan,
            N::BitmapScan { .. } => OperatorKind::BitmapScan,
            N::BitmapAnd => OperatorKind::BitmapAnd,
            N::BitmapOr => OperatorKind::BitmapOr,
            N::TidScan { .. } => OperatorKind::TidScan,
            N::TidRangeScan { .. } => OperatorKind::TidRangeScan,
            N::SubqueryScan { .. } => OperatorKind::SubqueryScan,
            N::FunctionScan { .. } => OperatorKind::FunctionScan,
            N::TableFuncScan { .. } => OperatorKind::TableFuncScan,
            N::ValuesScan => OperatorKind::ValuesScan,
            N::CteScan { .. } => OperatorKind::CteScan,
            N::NamedTuplestoreScan { .. } => OperatorKind::NamedTuplestoreScan,
            N::WorkTableScan { .. } => OperatorKind::WorkTableScan,
            N::ForeignScan { .. } => OperatorKind::ForeignScan,
            N::CustomScan { .. } => OperatorKind::CustomScan,
            N::NestedLoop { .. } => OperatorKind::NestedLoop,
            N::HashJoin { .. } => OperatorKind::HashJoin,
            N::MergeJoin { .. } => OperatorKind::MergeJoin,
            N::Hash => OperatorKind::Hash,
            N::Aggregate => OperatorKind::Aggregate,
            N::GroupAggregate { .. } => OperatorKind::GroupAggregate,
            N::HashAggregate { .. } => OperatorKind::HashAggregate,
            N::MixedAggregate { .. } => OperatorKind::MixedAggregate,
            N::Group { .. } => OperatorKind::Group,
            N::WindowAgg => OperatorKind::WindowAgg,
            N::Sort { .. } => OperatorKind::Sort,
            N::IncrementalSort { .. } => OperatorKind::IncrementalSort,
            N::Filter { .. } => OperatorKind::Filter,
            N::Result { .. } => OperatorKind::Result,
            N::ProjectSet => OperatorKind::ProjectSet,
            N::Append => OperatorKind::Append,
            N::MergeAppend { .. } => OperatorKind::MergeAppend,
            N::Union { .. } => OperatorKind::Union,
            N::Intersect { .. } => OperatorKind::Intersect,
            N::Except { .. } => OperatorKind::Except,
            N::RecursiveUnion => OperatorKind::RecursiveUnion,
            N::Materialize => OperatorKind::Materialize,
            N::Memoize { .. } => OperatorKind::Memoize,
            N::Limit => OperatorKind::Limit,
            N::Unique => OperatorKind::Unique,
            N::LockRows => OperatorKind::LockRows,
            N::ModifyTable { .. } => OperatorKind::ModifyTable,
            N::Gather { .. } => OperatorKind::Gather,
            N::GatherMerge { .. } => OperatorKind::GatherMerge,
            N::Other { .. } => OperatorKind::Other,
        }
    }

    /// The relation this operator reads or writes, if it has exactly one.
    pub fn table(&self) -> Option<&str> {
        use OperatorNode as N;
        match self {
            N::SeqScan { table }
            | N::SampleScan { table, .. }
            | N::IndexScan { table, .. }
            | N::IndexOnlyScan { table, .. }
            | N::HnswScan { table, .. }
            | N::IvfFlatScan { table, .. }
            | N::BitmapScan { table, .. }
            | N::TidScan { table, .. }
            | N::TidRangeScan { table, .. }
            | N::ModifyTable { table, .. } => Some(table),
            N::ForeignScan { table } | N::CustomScan { table, .. } => table.as_deref(),
            _ => None,
        }
    }

    /// The index this operator scans, if any.
    pub fn index(&self) -> Option<&str> {
        use OperatorNode as N;
        match self {
            N::IndexScan { index, .. }
            | N::IndexOnlyScan { index, .. }
            | N::HnswScan { index, .. }
            | N::IvfFlatScan { index, .. }
            | N::BitmapIndexScan { index, .. } => Some(index),
            _ => None,
        }
    }

    /// The join type, for joins.
    pub fn join_type(&self) -> Option<JoinType> {
        match self {
            OperatorNode::NestedLoop { join_type }
            | OperatorNode::HashJoin { join_type, .. }
            | OperatorNode::MergeJoin { join_type, .. } => Some(*join_type),
            _ => None,
        }
    }

    /// The condition that drives the operator: index, recheck, TID, hash or merge condition, vector ordering,
    /// or a stand-alone filter's predicate.
    pub fn condition(&self) -> Option<&str> {
        use OperatorNode as N;
        match self {
            N::IndexScan { index_cond, .. }
            | N::IndexOnlyScan { index_cond, .. }
            | N::BitmapIndexScan { index_cond, .. } => index_cond.as_deref(),
            N::HnswScan { order_by, .. } | N::IvfFlatScan { order_by, .. } => order_by.as_deref(),
            N::BitmapScan { recheck_cond, .. } => recheck_cond.as_deref(),
            N::TidScan { tid_cond, .. } | N::TidRangeScan { tid_cond, .. } => tid_cond.as_deref(),
            N::HashJoin { hash_cond, .. } => hash_cond.as_deref(),
            N::MergeJoin { merge_cond, .. } => merge_cond.as_deref(),
            N::Filter { predicate } => Some(predicate),
            N::Result { one_time_filter } => one_time_filter.as_deref(),
            N::Memoize { cache_key } => cache_key.as_deref(),
            _ => None,
        }
    }

    /// Sort or grouping keys, where the operator has them.
    pub fn keys(&self) -> &[String] {
        use OperatorNode as N;
        match self {
            N::GroupAggregate { group_keys } | N::HashAggregate { group_keys } | N::MixedAggregate { group_keys } => {
                group_keys
            }
            N::Group { keys } | N::Sort { keys } | N::IncrementalSort { keys, .. } => keys,
            N::MergeAppend { sort_keys } => sort_keys,
            _ => &[],
        }
    }
}

impl fmt::Display for OperatorNode {
    /// One line in `EXPLAIN` style: `Index Scan using users_pkey on users`, `Hash Join (Left)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use OperatorNode as N;
        let kind = self.kind();
        match self {
            N::Other { node_type } => f.write_str(node_type),
            N::IndexScan { table, index, .. }
            | N::IndexOnlyScan { table, index, .. }
            | N::HnswScan { table, index, .. }
            | N::IvfFlatScan { table, index, .. } => write!(f, "{kind} using {index} on {table}"),
            N::BitmapIndexScan { index, .. } => write!(f, "{kind} on {index}"),
            N::SubqueryScan { alias: name }
            | N::FunctionScan { function: name }
            | N::TableFuncScan { function: name }
            | N::CteScan { cte: name }
            | N::NamedTuplestoreScan { name }
            | N::WorkTableScan { cte: name } => write!(f, "{kind} on {name}"),
            N::NestedLoop { join_type } | N::HashJoin { join_type, .. } | N::MergeJoin { join_type, .. } => {
                match join_type {
                    JoinType::Inner => write!(f, "{kind}"),
                    other => write!(f, "{kind} ({})", other.as_str()),
                }
            }
            N::Intersect { all: true, .. } | N::Except { all: true, .. } | N::Union { all: true } => {
                write!(f, "{kind} All")
            }
            N::ModifyTable { operation, table } => write!(f, "{} on {table}", operation.as_str()),
            N::Gather { workers_planned } | N::GatherMerge { workers_planned } => {
                write!(f, "{kind} ({workers_planned} workers)")
            }
            _ => match self.table() {
                Some(table) => write!(f, "{kind} on {table}"),
                None => write!(f, "{kind}"),
            },
        }
    }
}

/// How a node hangs below its parent in PostgreSQL's plan tree ("Parent Relationship").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Relationship {
    /// Outer (left) input.
    Outer = 0,
    /// Inner (right) input.
    Inner = 1,
    /// Member of an `Append`-like node.
    Member = 2,
    /// An initialisation subplan (runs once; CTEs and uncorrelated scalar subqueries).
    InitPlan = 3,
    /// A correlated subplan (may run once per outer row).
    SubPlan = 4,
    /// The subquery of a `Subquery Scan`.
    Subquery = 5,
}

impl Relationship {
    /// All relationships, in discriminant order.
    pub const ALL: [Relationship; 6] = [
        Relationship::Outer,
        Relationship::Inner,
        Relationship::Member,
        Relationship::InitPlan,
        Relationship::SubPlan,
        Relationship::Subquery,
    ];

    /// The name `EXPLAIN` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Outer => "Outer",
            Relationship::Inner => "Inner",
            Relationship::Member => "Member",
            Relationship::InitPlan => "InitPlan",
            Relationship::SubPlan => "SubPlan",
            Relationship::Subquery => "Subquery",
        }
    }

    /// Parses the name `EXPLAIN` prints.
    pub fn from_explain(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The planner's estimates for one node (PostgreSQL cost units, rows per loop, bytes per row).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Estimates {
    /// Cost before the first row.
    pub startup_cost: f64,
    /// Cost to return all rows.
    pub total_cost: f64,
    /// Rows returned per loop.
    pub rows: f64,
    /// Average row width in bytes.
    pub width: u32,
}

/// Measured execution of one node (`EXPLAIN ANALYZE`, or per-node instrumentation in the host).
///
/// Like `EXPLAIN`, times and rows are averages per loop; multiply by `loops` for totals.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Actuals {
    /// Milliseconds to the first row, per loop (0 when timing was off).
    pub startup_ms: f64,
    /// Milliseconds to the last row, per loop (0 when timing was off).
    pub total_ms: f64,
    /// Rows returned, per loop.
    pub rows: f64,
    /// Times the node was (re)started; 0 means never executed.
    pub loops: f64,
}

impl Actuals {
    /// Total rows over all loops.
    pub fn total_rows(&self) -> f64 {
        self.rows * self.loops
    }

    /// Total milliseconds over all loops.
    pub fn total_time_ms(&self) -> f64 {
        self.total_ms * self.loops
    }
}

/// What every plan node has besides its operator: estimates, the row filter, how it hangs in the plan tree and,
/// after execution, actuals. Held by the [`QueryDag`](super::QueryDag) beside each [`OperatorNode`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Planner estimates.
    #[serde(default)]
    pub estimates: Estimates,
    /// Row filter evaluated by this node: `Filter`, and for joins also `Join Filter` (joined with `AND`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Position below the parent in PostgreSQL's plan tree, when imported from a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<Relationship>,
    /// Name of the subplan this node roots (`CTE x`, `SubPlan 1`, `InitPlan 1 (returns $0)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subplan: Option<String>,
    /// Runs inside parallel workers ("Parallel Aware").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parallel_aware: bool,
    /// Measured execution, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<Actuals>,
}

impl NodeInfo {
    /// Info with these estimates and nothing else.
    pub fn with_estimates(startup_cost: f64, total_cost: f64, rows: f64, width: u32) -> Self {
        NodeInfo { estimates: Estimates { startup_cost, total_cost, rows, width }, ..NodeInfo::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_table_is_dense_and_ordered() {
        for (i, k) in OperatorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(OperatorKind::from_index(i), Some(*k));
        }
        assert_eq!(OperatorKind::from_index(OperatorKind::COUNT), None);
    }

    #[test]
    fn kind_names_are_unique() {
        let mut names: Vec<_> = OperatorKind::ALL.iter().map(|k| k.name()).collect();
        let mut snakes: Vec<_> = OperatorKind::ALL.iter().map(|k| k.snake_name()).collect();
        names.sort_unstable();
        names.dedup();
        snakes.sort_unstable();
        snakes.dedup();
        assert_eq!(names.len(), OperatorKind::COUNT);
        assert_eq!(snakes.len(), OperatorKind::COUNT);
    }

    #[test]
    fn display_reads_like_explain() {
        let scan = OperatorNode::IndexScan {
            table: "orders".into(),
            index: "orders_pkey".into(),
            index_cond: Some("(o_orderkey = 1)".into()),
        };
        assert_eq!(scan.to_string(), "Index Scan using orders_pkey on orders");
        let join = OperatorNode::HashJoin { join_type: JoinType::Anti, hash_cond: None };
        assert_eq!(join.to_string(), "Hash Join (Anti)");
        assert_eq!(OperatorNode::Gather { workers_planned: 2 }.to_string(), "Gather (2 workers)");
        let other = OperatorNode::Other { node_type: "Hash Semi Magic".into() };
        assert_eq!(other.to_string(), "Hash Semi Magic");
    }

    #[test]
    fn accessors() {
        let hnsw = OperatorNode::HnswScan {
            table: "items".into(),
            index: "items_embedding_idx".into(),
            order_by: Some("(embedding <-> '[1,2]'::vector)".into()),
        };
        assert!(hnsw.kind().is_vector_scan());
        assert_eq!(hnsw.table(), Some("items"));
        assert_eq!(hnsw.index(), Some("items_embedding_idx"));
        assert!(hnsw.condition().unwrap().contains("<->"));
        assert_eq!(OperatorNode::Hash.kind().category(), OperatorCategory::Utility);
        assert!(OperatorKind::Sort.is_blocking());
        assert!(!OperatorKind::NestedLoop.is_blocking());
    }

    #[test]
    fn enum_names_round_trip() {
        for j in JoinType::ALL {
            assert_eq!(JoinType::from_explain(j.as_str()), Some(j));
        }
        for m in ModifyOperation::ALL {
            assert_eq!(ModifyOperation::from_explain(m.as_str()), Some(m));
        }
        for r in Relationship::ALL {
            assert_eq!(Relationship::from_explain(r.as_str()), Some(r));
        }
    }
}
