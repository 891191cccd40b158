//! Import of PostgreSQL `EXPLAIN (FORMAT JSON)` and `EXPLAIN (ANALYZE, FORMAT JSON)` output.
//!
//! Each plan node becomes one DAG node, numbered in pre-order from the root (id 0); each plan-tree child gets an
//! edge to its parent (data flows upwards). Estimates, filters, parallel awareness, the parent relationship and,
//! under `ANALYZE`, actual rows, loops and times are kept in [`NodeInfo`].
//!
//! Two things make the result a DAG rather than a copy of the tree:
//! - A CTE is computed once and read by every `CTE Scan` that names it. PostgreSQL prints the CTE's plan once,
//!   as an `InitPlan` named `CTE <name>` under whichever node owns it; the importer connects the CTE's root to
//!   each `CTE Scan <name>` instead, so a CTE read twice is one shared subplan with two consumers. (An
//!   unreferenced CTE keeps its tree edge.)
//! - Index scans over pgvector indexes become [`OperatorNode::HnswScan`] / [`OperatorNode::IvfFlatScan`].
//!   `EXPLAIN` does not print an index's access method, so the caller passes it
//!   ([`ExplainOptions::index_am`]; the PostgreSQL host reads it from the catalog). Without that, an index
//!   whose name contains `hnsw` or `ivfflat` is taken for one — a hint only, documented as such.

use super::operator_node::{Actuals, Estimates, JoinType, ModifyOperation, NodeInfo, OperatorNode, Relationship};
use super::query_dag::QueryDag;
use crate::error::{Error, Result};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

/// How to import a plan.
#[derive(Debug, Clone, Default)]
pub struct ExplainOptions {
    /// Index name → access method (`btree`, `hnsw`, `ivfflat`, …), authoritative when present.
    pub index_am: FxHashMap<String, String>,
    /// When an index is not in `index_am`, infer `hnsw`/`ivfflat` from its name. On by default.
    pub guess_am_from_name: bool,
}

impl ExplainOptions {
    /// Default options: no catalog knowledge, guess vector indexes from their names.
    pub fn new() -> Self {
        ExplainOptions { index_am: FxHashMap::default(), guess_am_from_name: true }
    }

    /// Adds one index's access method.
    pub fn with_index_am(mut self, index: impl Into<String>, am: impl Into<String>) -> Self {
        self.index_am.insert(index.into(), am.into());
        self
    }

    fn access_method(&self, index: &str) -> Option<&str> {
        if let Some(am) = self.index_am.get(index) {
            return Some(am);
        }
        if !self.guess_am_from_name {
            return None;
        }
        let lower = index.to_ascii_lowercase();
        if lower.contains("hnsw") {
            Some("hnsw")
        } else if lower.contains("ivfflat") {
            Some("ivfflat")
        } else {
            None
        }
    }
}

/// An imported plan with its top-level timings.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainPlan {
    /// The plan DAG; the plan's root is node 0.
    pub dag: QueryDag,
    /// "Planning Time" in milliseconds, when printed (`ANALYZE` or `SUMMARY`).
    pub planning_ms: Option<f64>,
    /// "Execution Time" in milliseconds, under `ANALYZE`.
    pub execution_ms: Option<f64>,
}

impl QueryDag {
    /// Imports `EXPLAIN (FORMAT JSON[, ANALYZE])` output with default [`ExplainOptions`].
    ///
    /// ```
    /// # use ruvector_dag::{QueryDag, OperatorKind};
    /// let json = r#"[{"Plan": {"Node Type": "Limit", "Startup Cost": 0.0, "Total Cost": 0.1,
    ///     "Plan Rows": 10, "Plan Width": 4, "Plans": [{"Node Type": "Seq Scan",
    ///     "Parent Relationship": "Outer", "Relation Name": "users", "Alias": "users",
    ///     "Startup Cost": 0.0, "Total Cost": 35.5, "Plan Rows": 2550, "Plan Width": 4}]}}]"#;
    /// let dag = QueryDag::from_explain_json(json)?;
    /// assert_eq!(dag.topological_sort()?, vec![1, 0]);
    /// assert_eq!(dag.node(1).unwrap().kind(), OperatorKind::SeqScan);
    /// assert_eq!(dag.info(1).unwrap().estimates.rows, 2550.0);
    /// # Ok::<(), ruvector_dag::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Explain`] naming the place in the document for malformed input.
    pub fn from_explain_json(json: &str) -> Result<QueryDag> {
        Ok(import_explain(json, &ExplainOptions::new())?.dag)
    }
}

/// Imports `EXPLAIN (FORMAT JSON[, ANALYZE])` output: the document PostgreSQL prints (an array holding one
/// object with a `"Plan"`), that object alone, or a bare plan node.
///
/// # Errors
/// [`Error::Explain`] naming the place in the document for malformed input.
pub fn import_explain(json: &str, options: &ExplainOptions) -> Result<ExplainPlan> {
    let doc: Value = serde_json::from_str(json).map_err(|e| err("$", format!("not JSON: {e}")))?;
    let (top, path) = match &doc {
        Value::Array(items) if items.len() == 1 => (&items[0], "[0]"),
        Value::Array(items) => {
            return Err(err("$", format!("expected one explained statement, found {}", items.len())));
        }
        Value::Object(_) => (&doc, "$"),
        other => return Err(err("$", format!("expected an array or object, found {}", type_name(other)))),
    };
    let top_value = top;
    let top = top.as_object().ok_or_else(|| err(path, "expected an object"))?;
    let (plan, plan_path, timings) = match top.get("Plan") {
        Some(plan) => (plan, format!("{path}.Plan"), Some(top)),
        None if top.contains_key("Node Type") => (top_value, path.to_owned(), None),
        None => return Err(err(path, "no \"Plan\" key and not a plan node")),
    };
    let mut b = Builder { options, nodes: Vec::new(), edges: Vec::new(), ctes: Vec::new(), cte_scans: Vec::new() };
    b.visit(plan, &plan_path, None)?;
    b.link_ctes();
    let dag = QueryDag::try_from_parts(b.nodes, b.edges)?;
    let time = |key: &str| timings.and_then(|t| t.get(key)).and_then(Value::as_f64);
    Ok(ExplainPlan { dag, planning_ms: time("Planning Time"), execution_ms: time("Execution Time") })
}

struct Builder<'o> {
    options: &'o ExplainOptions,
    nodes: Vec<(usize, OperatorNode, NodeInfo)>,
    edges: Vec<(usize, usize)>,
    /// (CTE name, id of the CTE plan's root, id of the node it hangs under).
    ctes: Vec<(String, usize, usize)>,
    /// (CTE name, id of a CTE Scan reading it).
    cte_scans: Vec<(String, usize)>,
}

impl Builder<'_> {
    fn visit(&mut self, node: &Value, path: &str, parent: Option<usize>) -> Result<()> {
        let obj = node
            .as_object()
            .ok_or_else(|| err(path, format!("expected a plan node object, found {}", type_name(node))))?;
        let id = self.nodes.len();
        let n = Node { obj, path };
        let op = self.operator(&n)?;
        let info = n.info()?;
        if let OperatorNode::CteScan { cte } = &op {
            self.cte_scans.push((cte.clone(), id));
        }
        let cte_root = match (&info.subplan, info.relationship, parent) {
            (Some(name), Some(Relationship::InitPlan), Some(p)) => name.strip_prefix("CTE ").map(|c| (c.to_owned(), p)),
            _ => None,
        };
        self.nodes.push((id, op, info));
        match (cte_root, parent) {
            (Some((cte, owner)), _) => self.ctes.push((cte, id, owner)),
            (None, Some(p)) => self.edges.push((id, p)),
            (None, None) => {}
        }
        if let Some(children) = obj.get("Plans") {
            let children = children.as_array().ok_or_else(|| err(path, "\"Plans\" is not an array"))?;
            for (i, child) in children.iter().enumerate() {
                self.visit(child, &format!("{path}.Plans[{i}]"), Some(id))?;
            }
        }
        Ok(())
    }

    /// Connects each CTE's plan to the scans that read it; an unread CTE stays under its owner.
    fn link_ctes(&mut self) {
        for (cte, root, owner) in &self.ctes {
            let mut readers = self.cte_scans.iter().filter(|(name, _)| name == cte).peekable();
            if readers.peek().is_none() {
                self.edges.push((*root, *owner));
            }
            for (_, scan) in readers {
                self.edges.push((*root, *scan));
            }
        }
    }

    fn operator(&self, n: &Node<'_>) -> Result<OperatorNode> {
        use OperatorNode as N;
        let node_type = n.req_str("Node Type")?;
        let table = || n.req_str("Relation Name").map(str::to_owned);
        Ok(match node_type {
            "Seq Scan" => N::SeqScan { table: table()? },
            "Sample Scan" => {
                N::SampleScan { table: table()?, method: n.opt_str("Sampling Method").unwrap_or_default() }
            }
            "Index Scan" | "Index Only Scan" => {
                let index = n.req_str("Index Name")?.to_owned();
                let table = table()?;
                let index_cond = n.opt_str("Index Cond");
                match (node_type, self.options.access_method(&index)) {
                    ("Index Scan", Some("hnsw")) => N::HnswScan { table, index, order_by: n.opt_str("Order By") },
                    ("Index Scan", Some("ivfflat")) => N::IvfFlatScan { table, index, order_by: n.opt_str("Order By") },
                    ("Index Scan", _) => N::IndexScan { table, index, index_cond },
                    _ => N::IndexOnlyScan { table, index, index_cond },
                }
            }
            "Bitmap Index Scan" => {
                N::BitmapIndexScan { index: n.req_str("Index Name")?.to_owned(), index_cond: n.opt_str("Index Cond") }
            }
            "Bitmap Heap Scan" => N::BitmapScan { table: table()?, recheck_cond: n.opt_str("Recheck Cond") },
            "BitmapAnd" => N::BitmapAnd,
            "BitmapOr" => N::BitmapOr,
            "Tid Scan" => N::TidScan { table: table()?, tid_cond: n.opt_str("TID Cond") },
            "Tid Range Scan" => N::TidRangeScan { table: table()?, tid_cond: n.opt_str("TID Cond") },
            "Subquery Scan" => N::SubqueryScan { alias: n.opt_str("Alias").unwrap_or_default() },
            "Function Scan" => N::FunctionScan { function: n.req_str("Function Name")?.to_owned() },
            "Table Function Scan" => {
                N::TableFuncScan { function: n.opt_str("Table Function Name").unwrap_or_default() }
            }
            "Values Scan" => N::ValuesScan,
            "CTE Scan" => N::CteScan { cte: n.req_str("CTE Name")?.to_owned() },
            "Named Tuplestore Scan" => N::NamedTuplestoreScan { name: n.req_str("Tuplestore Name")?.to_owned() },
            "WorkTable Scan" => N::WorkTableScan { cte: n.req_str("CTE Name")?.to_owned() },
            "Foreign Scan" => N::ForeignScan { table: n.opt_str("Relation Name") },
            "Custom Scan" => N::CustomScan {
                provider: n.opt_str("Custom Plan Provider").unwrap_or_default(),
                table: n.opt_str("Relation Name"),
            },
            "Nested Loop" => N::NestedLoop { join_type: n.join_type()? },
            "Hash Join" => N::HashJoin { join_type: n.join_type()?, hash_cond: n.opt_str("Hash Cond") },
            "Merge Join" => N::MergeJoin { join_type: n.join_type()?, merge_cond: n.opt_str("Merge Cond") },
            "Hash" => N::Hash,
            "Aggregate" => {
                let keys = n.group_keys()?;
                match n.opt_str("Strategy").as_deref() {
                    Some("Plain") | None => N::Aggregate,
                    Some("Sorted") => N::GroupAggregate { group_keys: keys },
                    Some("Hashed") => N::HashAggregate { group_keys: keys },
                    Some("Mixed") => N::MixedAggregate { group_keys: keys },
                    Some(other) => return Err(err(n.path, format!("unknown aggregate \"Strategy\" `{other}`"))),
                }
            }
            "Group" => N::Group { keys: n.str_list("Group Key")? },
            "WindowAgg" => N::WindowAgg,
            "Sort" => N::Sort { keys: n.str_list("Sort Key")? },
            "Incremental Sort" => {
                N::IncrementalSort { keys: n.str_list("Sort Key")?, presorted_keys: n.str_list("Presorted Key")? }
            }
            "Result" => N::Result { one_time_filter: n.opt_str("One-Time Filter") },
            "ProjectSet" => N::ProjectSet,
            "Append" => N::Append,
            "Merge Append" => N::MergeAppend { sort_keys: n.str_list("Sort Key")? },
            "SetOp" => {
                let hashed = n.opt_str("Strategy").as_deref() == Some("Hashed");
                match n.req_str("Command")? {
                    "Intersect" => N::Intersect { all: false, hashed },
                    "Intersect All" => N::Intersect { all: true, hashed },
                    "Except" => N::Except { all: false, hashed },
                    "Except All" => N::Except { all: true, hashed },
                    other => return Err(err(n.path, format!("unknown SetOp \"Command\" `{other}`"))),
                }
            }
            "Recursive Union" => N::RecursiveUnion,
            "Materialize" => N::Materialize,
            "Memoize" => N::Memoize { cache_key: n.opt_str("Cache Key") },
            "Limit" => N::Limit,
            "Unique" => N::Unique,
            "LockRows" => N::LockRows,
            "ModifyTable" => {
                let op = n.req_str("Operation")?;
                let operation = ModifyOperation::from_explain(op)
                    .ok_or_else(|| err(n.path, format!("unknown ModifyTable \"Operation\" `{op}`")))?;
                N::ModifyTable { operation, table: table()? }
            }
            "Gather" => N::Gather { workers_planned: n.u32("Workers Planned")? },
            "Gather Merge" => N::GatherMerge { workers_planned: n.u32("Workers Planned")? },
            other => N::Other { node_type: other.to_owned() },
        })
    }
}

struct Node<'a> {
    obj: &'a Map<String, Value>,
    path: &'a str,
}

impl Node<'_> {
    fn req_str(&self, key: &str) -> Result<&str> {
        match self.obj.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => {
                Err(err(&format!("{}.\"{key}\"", self.path), format!("expected a string, found {}", type_name(other))))
            }
            None => Err(err(self.path, format!("missing \"{key}\""))),
        }
    }

    fn opt_str(&self, key: &str) -> Option<String> {
        self.obj.get(key).and_then(Value::as_str).map(str::to_owned)
    }

    fn num(&self, key: &str) -> Result<Option<f64>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => {
                Err(err(&format!("{}.\"{key}\"", self.path), format!("expected a number, found {}", type_name(other))))
            }
        }
    }

    fn u32(&self, key: &str) -> Result<u32> {
        let v = self.num(key)?.unwrap_or(0.0);
        if !(0.0..=f64::from(u32::MAX)).contains(&v) || v.fract() != 0.0 {
            return Err(err(&format!("{}.\"{key}\"", self.path), format!("expected a count, found {v}")));
        }
        Ok(v as u32)
    }

    fn str_list(&self, key: &str) -> Result<Vec<String>> {
        match self.obj.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        err(&format!("{}.\"{key}\"", self.path), format!("expected strings, found {}", type_name(v)))
                    })
                })
                .collect(),
            Some(other) => {
                Err(err(&format!("{}.\"{key}\"", self.path), format!("expected an array, found {}", type_name(other))))
            }
        }
    }

    /// "Group Key" of a simple aggregate, or the union of the keys of every grouping set.
    fn group_keys(&self) -> Result<Vec<String>> {
        let mut keys = self.str_list("Group Key")?;
        if let Some(Value::Array(sets)) = self.obj.get("Grouping Sets") {
            for set in sets {
                let Some(set) = set.as_object() else { continue };
                for field in ["Group Keys", "Hash Keys"] {
                    if let Some(Value::Array(lists)) = set.get(field) {
                        for list in lists {
                            for k in list.as_array().into_iter().flatten().filter_map(Value::as_str) {
                                if !keys.iter().any(|have| have == k) {
                                    keys.push(k.to_owned());
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(keys)
    }

    fn join_type(&self) -> Result<JoinType> {
        let s = self.req_str("Join Type")?;
        JoinType::from_explain(s).ok_or_else(|| err(self.path, format!("unknown \"Join Type\" `{s}`")))
    }

    fn info(&self) -> Result<NodeInfo> {
        let width = self.num("Plan Width")?.unwrap_or(0.0);
        let estimates = Estimates {
            startup_cost: self.num("Startup Cost")?.unwrap_or(0.0),
            total_cost: self.num("Total Cost")?.unwrap_or(0.0),
            rows: self.num("Plan Rows")?.unwrap_or(0.0),
            width: width.clamp(0.0, f64::from(u32::MAX)) as u32,
        };
        let filter = match (self.opt_str("Filter"), self.opt_str("Join Filter")) {
            (Some(f), Some(j)) => Some(format!("{j} AND {f}")),
            (f, j) => f.or(j),
        };
        let relationship = match self.opt_str("Parent Relationship") {
            None => None,
            Some(r) => Some(
                Relationship::from_explain(&r)
                    .ok_or_else(|| err(self.path, format!("unknown \"Parent Relationship\" `{r}`")))?,
            ),
        };
        let actual = match self.num("Actual Loops")? {
            None => None,
            Some(loops) => Some(Actuals {
                startup_ms: self.num("Actual Startup Time")?.unwrap_or(0.0),
                total_ms: self.num("Actual Total Time")?.unwrap_or(0.0),
                rows: self.num("Actual Rows")?.unwrap_or(0.0),
                loops,
            }),
        };
        Ok(NodeInfo {
            estimates,
            filter,
            relationship,
            subplan: self.opt_str("Subplan Name"),
            parallel_aware: self.obj.get("Parallel Aware").and_then(Value::as_bool).unwrap_or(false),
            actual,
        })
    }
}

fn err(path: &str, message: impl Into<String>) -> Error {
    Error::Explain { path: path.to_owned(), message: message.into() }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OperatorKind;

    const CTE_TWICE: &str = r#"[{"Plan": {"Node Type": "Hash Join", "Join Type": "Inner",
        "Startup Cost": 1, "Total Cost": 2, "Plan Rows": 3, "Plan Width": 4, "Hash Cond": "(a.x = b.x)",
        "Plans": [
          {"Node Type": "Seq Scan", "Parent Relationship": "InitPlan", "Subplan Name": "CTE c",
           "Relation Name": "t", "Startup Cost": 0, "Total Cost": 1, "Plan Rows": 10, "Plan Width": 4},
          {"Node Type": "CTE Scan", "Parent Relationship": "Outer", "CTE Name": "c", "Alias": "a",
           "Startup Cost": 0, "Total Cost": 1, "Plan Rows": 10, "Plan Width": 4},
          {"Node Type": "Hash", "Parent Relationship": "Inner",
           "Startup Cost": 0, "Total Cost": 1, "Plan Rows": 10, "Plan Width": 4,
           "Plans": [{"Node Type": "CTE Scan", "Parent Relationship": "Outer", "CTE Name": "c", "Alias": "b",
             "Startup Cost": 0, "Total Cost": 1, "Plan Rows": 10, "Plan Width": 4}]}]}}]"#;

    #[test]
    fn a_cte_read_twice_is_a_shared_subplan() {
        let dag = QueryDag::from_explain_json(CTE_TWICE).unwrap();
        assert_eq!(dag.node_count(), 5);
        assert_eq!(dag.parents(1).unwrap().collect::<Vec<_>>(), vec![2, 4]);
        assert!(!dag.has_edge(1, 0), "the CTE no longer hangs under its owner");
        assert_eq!(dag.root(), Some(0));
        assert_eq!(dag.sources(), vec![1]);
        assert_eq!(dag.info(1).unwrap().subplan.as_deref(), Some("CTE c"));
    }

    #[test]
    fn vector_index_access_methods() {
        let json = r#"{"Node Type": "Index Scan", "Relation Name": "items", "Index Name": "items_emb_idx",
            "Order By": "(embedding <-> '[1,2]'::vector)", "Startup Cost": 0, "Total Cost": 1,
            "Plan Rows": 5, "Plan Width": 4}"#;
        let plain = QueryDag::from_explain_json(json).unwrap();
        assert_eq!(plain.node(0).unwrap().kind(), OperatorKind::IndexScan);
        let opts = ExplainOptions::new().with_index_am("items_emb_idx", "ivfflat");
        let ivf = import_explain(json, &opts).unwrap().dag;
        assert_eq!(ivf.node(0).unwrap().kind(), OperatorKind::IvfFlatScan);
        let named = json.replace("items_emb_idx", "items_hnsw_idx");
        assert_eq!(QueryDag::from_explain_json(&named).unwrap().node(0).unwrap().kind(), OperatorKind::HnswScan);
    }

    #[test]
    fn errors_name_the_place() {
        let e = QueryDag::from_explain_json(r#"[{"Plan": {"Node Type": "Seq Scan"}}]"#).unwrap_err();
        assert_eq!(e.to_string(), r#"EXPLAIN JSON at [0].Plan: missing "Relation Name""#);
        let e = QueryDag::from_explain_json(
            r#"{"Plan": {"Node Type": "Limit", "Plans": [{"Node Type": "Gather", "Workers Planned": "x"}]}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"EXPLAIN JSON at $.Plan.Plans[0]."Workers Planned": expected a number, found a string"#
        );
        assert!(QueryDag::from_explain_json("[]").unwrap_err().to_string().contains("found 0"));
        assert!(QueryDag::from_explain_json("nope").unwrap_err().to_string().contains("not JSON"));
    }

    #[test]
    fn unknown_node_types_are_kept_by_name() {
        let dag = QueryDag::from_explain_json(r#"{"Node Type": "Shiny New Node", "Plan Rows": 1}"#).unwrap();
        assert_eq!(dag.node(0), Some(&OperatorNode::Other { node_type: "Shiny New Node".into() }));
    }
}
