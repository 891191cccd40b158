//! Converts a `PlannedStmt` into a [`QueryDag`], in the planner hook, without deparsing expressions.
//!
//! Nodes are numbered in pre-order from the root in the order `EXPLAIN` prints them (init plans, outer, inner,
//! member plans, subquery, subplans), so ids match those of [`dag::dag::import_explain`] on the same plan. What
//! needs the expression deparser (conditions, sort and group keys, filters) is left empty here: the planner hook
//! runs for every query and must stay cheap. Analysis functions that show conditions plan through `EXPLAIN`'s
//! own printer instead (see `analysis.rs`).
//!
//! As in the importer, a CTE's plan is connected to every CTE scan that reads it (a shared subplan) instead of
//! hanging under the node that owns it.

use dag::{JoinType, ModifyOperation, NodeInfo, OperatorNode, QueryDag, Relationship};
use pgrx::PgList;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CStr;

/// Builds the DAG of `stmt`.
///
/// # Safety
/// `stmt` must point to a valid `PlannedStmt` for the duration of the call, in a transaction (catalog lookups).
pub(crate) unsafe fn dag_from_planned_stmt(stmt: *mut pg_sys::PlannedStmt) -> dag::Result<QueryDag> {
    let mut w = Walker { stmt, nodes: Vec::new(), edges: Vec::new(), cte_roots: Vec::new(), cte_scans: Vec::new() };
    // SAFETY: the caller guarantees `stmt` is valid.
    unsafe {
        w.visit((*stmt).planTree, None, None, None);
    }
    w.link_ctes();
    QueryDag::try_from_parts(w.nodes, w.edges)
}

struct Walker {
    stmt: *mut pg_sys::PlannedStmt,
    nodes: Vec<(usize, OperatorNode, NodeInfo)>,
    edges: Vec<(usize, usize)>,
    /// (CTE subplan id, DAG id of its root, DAG id of its owner).
    cte_roots: Vec<(i32, usize, usize)>,
    /// (CTE subplan id, DAG id of a CTE scan).
    cte_scans: Vec<(i32, usize)>,
}

impl Walker {
    /// Visits `plan` and everything below it; returns nothing, records nodes and edges.
    unsafe fn visit(
        &mut self,
        plan: *mut pg_sys::Plan,
        parent: Option<usize>,
        relationship: Option<Relationship>,
        subplan: Option<(&pg_sys::SubPlan, i32)>,
    ) {
        if plan.is_null() {
            return;
        }
        let id = self.nodes.len();
        // SAFETY: `plan` is a non-null node of the plan tree.
        let (op, info) = unsafe { self.describe(plan) };
        let mut info = info;
        info.relationship = relationship;
        if let Some((sp, _)) = subplan {
            // SAFETY: plan_name is a palloc'd C string or null.
            info.subplan = unsafe { cstr(sp.plan_name) };
        }
        if let OperatorNode::CteScan { .. } = op {
            // SAFETY: the tag says this is a CteScan.
            let cte = unsafe { &*(plan as *mut pg_sys::CteScan) };
            self.cte_scans.push((cte.ctePlanId, id));
        }
        self.nodes.push((id, op, info));
        let is_cte = subplan.is_some_and(|(sp, _)| sp.subLinkType == pg_sys::SubLinkType::CTE_SUBLINK);
        match (parent, is_cte) {
            (Some(p), true) => self.cte_roots.push((subplan.map_or(0, |s| s.1), id, p)),
            (Some(p), false) => self.edges.push((id, p)),
            (None, _) => {}
        }

        // SAFETY: for the whole block, every pointer followed is a field of a valid plan node whose tag was checked.
        unsafe {
            let p = &*plan;
            self.subplans(p.initPlan, id, Relationship::InitPlan);
            self.visit(p.lefttree, Some(id), Some(Relationship::Outer), None);
            self.visit(p.righttree, Some(id), Some(Relationship::Inner), None);
            self.members(member_plans(plan), id);
            if p.type_ == pg_sys::NodeTag::T_SubqueryScan {
                let sub = (*(plan as *mut pg_sys::SubqueryScan)).subplan;
                self.visit(sub, Some(id), Some(Relationship::Subquery), None);
            }
            // SubPlans referenced from this node's expressions.
            let mut found: Vec<*mut pg_sys::SubPlan> = Vec::new();
            for list in [p.targetlist, p.qual, join_qual(plan)] {
                collect_subplans(list as *mut pg_sys::Node, &mut found);
            }
            for sp in found {
                let sp = &*sp;
                let sub = self.subplan_root(sp.plan_id);
                self.visit(sub, Some(id), Some(Relationship::SubPlan), Some((sp, sp.plan_id)));
            }
        }
    }

    unsafe fn members(&mut self, list: *mut pg_sys::List, id: usize) {
        // SAFETY: a List of Plan pointers from a valid plan node.
        let list = unsafe { PgList::<pg_sys::Plan>::from_pg(list) };
        for child in list.iter_ptr() {
            // SAFETY: members of a valid plan node are valid plans.
            unsafe { self.visit(child, Some(id), Some(Relationship::Member), None) };
        }
    }

    unsafe fn subplans(&mut self, list: *mut pg_sys::List, id: usize, rel: Relationship) {
        // SAFETY: initPlan is a List of SubPlan nodes.
        let list = unsafe { PgList::<pg_sys::SubPlan>::from_pg(list) };
        for sp in list.iter_ptr() {
            // SAFETY: valid SubPlan nodes; plan_id indexes PlannedStmt.subplans.
            unsafe {
                let sp = &*sp;
                let root = self.subplan_root(sp.plan_id);
                self.visit(root, Some(id), Some(rel), Some((sp, sp.plan_id)));
            }
        }
    }

    unsafe fn subplan_root(&self, plan_id: i32) -> *mut pg_sys::Plan {
        // SAFETY: stmt is valid; subplans is a List of Plan pointers indexed from 1 by plan_id.
        let list = unsafe { PgList::<pg_sys::Plan>::from_pg((*self.stmt).subplans) };
        usize::try_from(plan_id - 1).ok().and_then(|i| list.get_ptr(i)).unwrap_or(std::ptr::null_mut())
    }

    fn link_ctes(&mut self) {
        for &(plan_id, root, owner) in &self.cte_roots {
            let mut any = false;
            for &(_, scan) in self.cte_scans.iter().filter(|(p, _)| *p == plan_id) {
                self.edges.push((root, scan));
                any = true;
            }
            if !any {
                self.edges.push((root, owner));
            }
        }
    }

    /// The operator and estimates of one plan node.
    unsafe fn describe(&self, plan: *mut pg_sys::Plan) -> (OperatorNode, NodeInfo) {
        use OperatorNode as N;
        use pg_sys::NodeTag as T;
        // SAFETY: for the whole function, `plan` is valid and its tag determines the struct it can be cast to.
        unsafe {
            let p = &*plan;
            let info = NodeInfo::with_estimates(p.startup_cost, p.total_cost, p.plan_rows, p.plan_width.max(0) as u32);
            let info = NodeInfo { parallel_aware: p.parallel_aware, ..info };
            let scan_table = || self.scan_relation(plan as *mut pg_sys::Scan);
            let op = match p.type_ {
                T::T_SeqScan => N::SeqScan { table: scan_table() },
                T::T_SampleScan => N::SampleScan { table: scan_table(), method: String::new() },
                T::T_IndexScan => {
                    let is = &*(plan as *mut pg_sys::IndexScan);
                    let (index, am) = index_name_and_am(is.indexid);
                    let table = scan_table();
                    match am.as_deref() {
                        Some("hnsw") => N::HnswScan { table, index, order_by: None },
                        Some("ivfflat") => N::IvfFlatScan { table, index, order_by: None },
                        _ => N::IndexScan { table, index, index_cond: None },
                    }
                }
                T::T_IndexOnlyScan => {
                    let is = &*(plan as *mut pg_sys::IndexOnlyScan);
                    N::IndexOnlyScan { table: scan_table(), index: index_name_and_am(is.indexid).0, index_cond: None }
                }
                T::T_BitmapIndexScan => {
                    let is = &*(plan as *mut pg_sys::BitmapIndexScan);
                    N::BitmapIndexScan { index: index_name_and_am(is.indexid).0, index_cond: None }
                }
                T::T_BitmapHeapScan => N::BitmapScan { table: scan_table(), recheck_cond: None },
                T::T_BitmapAnd => N::BitmapAnd,
                T::T_BitmapOr => N::BitmapOr,
                T::T_TidScan => N::TidScan { table: scan_table(), tid_cond: None },
                T::T_TidRangeScan => N::TidRangeScan { table: scan_table(), tid_cond: None },
                T::T_SubqueryScan => N::SubqueryScan { alias: self.rte_alias(plan as *mut pg_sys::Scan) },
                T::T_FunctionScan => {
                    N::FunctionScan { function: self.function_name(plan as *mut pg_sys::FunctionScan) }
                }
                T::T_TableFuncScan => N::TableFuncScan { function: self.rte_alias(plan as *mut pg_sys::Scan) },
                T::T_ValuesScan => N::ValuesScan,
                T::T_CteScan => N::CteScan { cte: self.rte_ctename(plan as *mut pg_sys::Scan) },
                T::T_NamedTuplestoreScan => N::NamedTuplestoreScan { name: self.rte_alias(plan as *mut pg_sys::Scan) },
                T::T_WorkTableScan => N::WorkTableScan { cte: self.rte_ctename(plan as *mut pg_sys::Scan) },
                T::T_ForeignScan => {
                    let s = plan as *mut pg_sys::Scan;
                    N::ForeignScan { table: ((*s).scanrelid > 0).then(|| self.scan_relation(s)) }
                }
                T::T_CustomScan => {
                    let cs = &*(plan as *mut pg_sys::CustomScan);
                    let provider = if cs.methods.is_null() { None } else { cstr((*cs.methods).CustomName) };
                    let s = plan as *mut pg_sys::Scan;
                    N::CustomScan {
                        provider: provider.unwrap_or_default(),
                        table: ((*s).scanrelid > 0).then(|| self.scan_relation(s)),
                    }
                }
                T::T_NestLoop => N::NestedLoop { join_type: join_type(plan) },
                T::T_HashJoin => N::HashJoin { join_type: join_type(plan), hash_cond: None },
                T::T_MergeJoin => N::MergeJoin { join_type: join_type(plan), merge_cond: None },
                T::T_Hash => N::Hash,
                T::T_Agg => {
                    let agg = &*(plan as *mut pg_sys::Agg);
                    match agg.aggstrategy {
                        pg_sys::AggStrategy::AGG_SORTED => N::GroupAggregate { group_keys: Vec::new() },
                        pg_sys::AggStrategy::AGG_HASHED => N::HashAggregate { group_keys: Vec::new() },
                        pg_sys::AggStrategy::AGG_MIXED => N::MixedAggregate { group_keys: Vec::new() },
                        _ => N::Aggregate,
                    }
                }
                T::T_Group => N::Group { keys: Vec::new() },
                T::T_WindowAgg => N::WindowAgg,
                T::T_Sort => N::Sort { keys: Vec::new() },
                T::T_IncrementalSort => N::IncrementalSort { keys: Vec::new(), presorted_keys: Vec::new() },
                T::T_Result => N::Result { one_time_filter: None },
                T::T_ProjectSet => N::ProjectSet,
                T::T_Append => N::Append,
                T::T_MergeAppend => N::MergeAppend { sort_keys: Vec::new() },
                T::T_SetOp => {
                    let so = &*(plan as *mut pg_sys::SetOp);
                    let hashed = so.strategy == pg_sys::SetOpStrategy::SETOP_HASHED;
                    match so.cmd {
                        pg_sys::SetOpCmd::SETOPCMD_INTERSECT => N::Intersect { all: false, hashed },
                        pg_sys::SetOpCmd::SETOPCMD_INTERSECT_ALL => N::Intersect { all: true, hashed },
                        pg_sys::SetOpCmd::SETOPCMD_EXCEPT => N::Except { all: false, hashed },
                        _ => N::Except { all: true, hashed },
                    }
                }
                T::T_RecursiveUnion => N::RecursiveUnion,
                T::T_Material => N::Materialize,
                T::T_Memoize => N::Memoize { cache_key: None },
                T::T_Limit => N::Limit,
                T::T_Unique => N::Unique,
                T::T_LockRows => N::LockRows,
                T::T_ModifyTable => {
                    let mt = &*(plan as *mut pg_sys::ModifyTable);
                    let operation = match mt.operation {
                        pg_sys::CmdType::CMD_UPDATE => ModifyOperation::Update,
                        pg_sys::CmdType::CMD_DELETE => ModifyOperation::Delete,
                        pg_sys::CmdType::CMD_MERGE => ModifyOperation::Merge,
                        _ => ModifyOperation::Insert,
                    };
                    N::ModifyTable { operation, table: self.rte_relname(mt.nominalRelation) }
                }
                T::T_Gather => {
                    N::Gather { workers_planned: (*(plan as *mut pg_sys::Gather)).num_workers.max(0) as u32 }
                }
                T::T_GatherMerge => {
                    N::GatherMerge { workers_planned: (*(plan as *mut pg_sys::GatherMerge)).num_workers.max(0) as u32 }
                }
                other => N::Other { node_type: format!("{other:?}").trim_start_matches("T_").to_owned() },
            };
            (op, info)
        }
    }

    unsafe fn rte(&self, index: pg_sys::Index) -> Option<&pg_sys::RangeTblEntry> {
        if index == 0 {
            return None;
        }
        // SAFETY: stmt is valid and `index` comes from one of its plan nodes.
        unsafe {
            let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*self.stmt).rtable);
            rtable.get_ptr(index as usize - 1).map(|p| &*p)
        }
    }

    unsafe fn rte_relname(&self, index: pg_sys::Index) -> String {
        // SAFETY: as `rte`.
        match unsafe { self.rte(index) } {
            Some(rte) if rte.relid != pg_sys::InvalidOid => relation_name(rte.relid),
            _ => String::new(),
        }
    }

    unsafe fn scan_relation(&self, scan: *mut pg_sys::Scan) -> String {
        // SAFETY: `scan` is a valid Scan node.
        unsafe { self.rte_relname((*scan).scanrelid) }
    }

    unsafe fn rte_alias(&self, scan: *mut pg_sys::Scan) -> String {
        // SAFETY: `scan` is a valid Scan node; eref is a valid Alias when set.
        unsafe {
            match self.rte((*scan).scanrelid) {
                Some(rte) if !rte.eref.is_null() => cstr((*rte.eref).aliasname).unwrap_or_default(),
                _ => String::new(),
            }
        }
    }

    unsafe fn rte_ctename(&self, scan: *mut pg_sys::Scan) -> String {
        // SAFETY: `scan` is a valid Scan node.
        unsafe {
            match self.rte((*scan).scanrelid) {
                Some(rte) => cstr(rte.ctename).unwrap_or_default(),
                None => String::new(),
            }
        }
    }

    unsafe fn function_name(&self, fs: *mut pg_sys::FunctionScan) -> String {
        // SAFETY: `fs` is a valid FunctionScan; its functions list holds RangeTblFunction nodes.
        unsafe {
            let funcs = PgList::<pg_sys::RangeTblFunction>::from_pg((*fs).functions);
            let Some(first) = funcs.get_ptr(0) else { return String::new() };
            let expr = (*first).funcexpr;
            if !expr.is_null() && (*expr).type_ == pg_sys::NodeTag::T_FuncExpr {
                let oid = (*(expr as *mut pg_sys::FuncExpr)).funcid;
                return cstr(pg_sys::get_func_name(oid)).unwrap_or_default();
            }
            self.rte_alias(fs as *mut pg_sys::Scan)
        }
    }
}

unsafe fn join_type(plan: *mut pg_sys::Plan) -> JoinType {
    // SAFETY: called for NestLoop/HashJoin/MergeJoin, which start with a Join.
    let jt = unsafe { (*(plan as *mut pg_sys::Join)).jointype };
    match jt {
        pg_sys::JoinType::JOIN_LEFT => JoinType::Left,
        pg_sys::JoinType::JOIN_FULL => JoinType::Full,
        pg_sys::JoinType::JOIN_RIGHT => JoinType::Right,
        pg_sys::JoinType::JOIN_SEMI => JoinType::Semi,
        pg_sys::JoinType::JOIN_ANTI => JoinType::Anti,
        _ => JoinType::Inner,
    }
}

/// Collects the SubPlan nodes of an expression tree, without descending into them.
pub(crate) unsafe fn collect_subplans(node: *mut pg_sys::Node, out: &mut Vec<*mut pg_sys::SubPlan>) {
    #[pg_guard]
    unsafe extern "C-unwind" fn walker(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
        if node.is_null() {
            return false;
        }
        // SAFETY: `context` is the Vec passed below; `node` is a valid expression node.
        unsafe {
            if (*node).type_ == pg_sys::NodeTag::T_SubPlan {
                (*(context as *mut Vec<*mut pg_sys::SubPlan>)).push(node as *mut pg_sys::SubPlan);
                return false;
            }
            pg_sys::expression_tree_walker(node, Some(walker), context)
        }
    }
    if node.is_null() {
        return;
    }
    // SAFETY: `node` is a valid expression tree (a List of expressions); `out` outlives the walk.
    unsafe {
        walker(node, out as *mut Vec<*mut pg_sys::SubPlan> as *mut std::ffi::c_void);
    }
}

/// Name and access method of an index.
fn index_name_and_am(indexid: pg_sys::Oid) -> (String, Option<String>) {
    let name = relation_name(indexid);
    // SAFETY: a syscache lookup of a relation that the plan references (and locks).
    let am = unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(indexid));
        if tuple.is_null() {
            None
        } else {
            let form = pg_sys::GETSTRUCT(tuple) as *mut pg_sys::FormData_pg_class;
            let am = cstr(pg_sys::get_am_name((*form).relam));
            pg_sys::ReleaseSysCache(tuple);
            am
        }
    };
    (name, am)
}

fn relation_name(relid: pg_sys::Oid) -> String {
    // SAFETY: get_rel_name returns a palloc'd copy or null.
    unsafe { cstr(pg_sys::get_rel_name(relid)) }.unwrap_or_else(|| format!("oid {}", relid.to_u32()))
}

/// Copies a C string (null → None).
pub(crate) unsafe fn cstr(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null, NUL-terminated by PostgreSQL.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// Index name → access method for every index scan in `stmt` (including subplans), for importing the
/// statement's `EXPLAIN` output with exact vector-index kinds.
///
/// # Safety
/// As [`dag_from_planned_stmt`].
pub(crate) unsafe fn index_ams(stmt: *mut pg_sys::PlannedStmt) -> dag::dag::ExplainOptions {
    unsafe fn walk(plan: *mut pg_sys::Plan, out: &mut dag::dag::ExplainOptions) {
        if plan.is_null() {
            return;
        }
        // SAFETY: `plan` is a valid plan node.
        unsafe {
            if let Some(oid) = scanned_index(plan) {
                let (name, am) = index_name_and_am(oid);
                if let Some(am) = am {
                    out.index_am.insert(name, am);
                }
            }
            for child in child_plans(plan) {
                walk(child, out);
            }
        }
    }
    let mut out = dag::dag::ExplainOptions::new();
    // Catalog knowledge replaces name guessing.
    out.guess_am_from_name = false;
    // SAFETY: the caller guarantees `stmt` is valid; subplans is a List of Plan pointers.
    unsafe {
        walk((*stmt).planTree, &mut out);
        for sub in PgList::<pg_sys::Plan>::from_pg((*stmt).subplans).iter_ptr() {
            walk(sub, &mut out);
        }
    }
    out
}

/// Whether `stmt` calls a volatile function anywhere: output lists, filters, join clauses, function scans, VALUES,
/// LIMIT and window frame offsets, of every node, subplans included. Such a statement is not replayed: a replay must
/// not repeat side effects (`pg_terminate_backend`, `pg_advisory_lock`, `ruvector.dag_learn_now()` itself — read-only
/// transactions do not stop those), and its timings would not repeat either.
///
/// # Safety
/// As [`dag_from_planned_stmt`]; in a transaction (volatility is read from the catalog).
pub(crate) unsafe fn calls_volatile_functions(stmt: *mut pg_sys::PlannedStmt) -> bool {
    unsafe fn walk(plan: *mut pg_sys::Plan) -> bool {
        use pg_sys::NodeTag as T;
        if plan.is_null() {
            return false;
        }
        let list = |l: *mut pg_sys::List| l.cast::<pg_sys::Node>();
        // SAFETY: `plan` is a valid plan node; casts follow its tag; the expressions are the planner's.
        unsafe {
            let p = &*plan;
            let mut exprs = vec![list(p.targetlist), list(p.qual), list(join_qual(plan))];
            match p.type_ {
                T::T_HashJoin => exprs.push(list((*(plan as *mut pg_sys::HashJoin)).hashclauses)),
                T::T_MergeJoin => exprs.push(list((*(plan as *mut pg_sys::MergeJoin)).mergeclauses)),
                T::T_FunctionScan => exprs.push(list((*(plan as *mut pg_sys::FunctionScan)).functions)),
                T::T_TableFuncScan => exprs.push((*(plan as *mut pg_sys::TableFuncScan)).tablefunc.cast()),
                T::T_ValuesScan => exprs.push(list((*(plan as *mut pg_sys::ValuesScan)).values_lists)),
                T::T_Result => exprs.push((*(plan as *mut pg_sys::Result)).resconstantqual),
                T::T_Limit => {
                    let limit = &*(plan as *mut pg_sys::Limit);
                    exprs.extend([limit.limitOffset, limit.limitCount]);
                }
                T::T_WindowAgg => {
                    let window = &*(plan as *mut pg_sys::WindowAgg);
                    exprs.extend([window.startOffset, window.endOffset]);
                }
                _ => {}
            }
            exprs.into_iter().any(|e| !e.is_null() && pg_sys::contain_volatile_functions(e))
                || child_plans(plan).any(|child| walk(child))
        }
    }
    // SAFETY: the caller guarantees `stmt` is valid; subplans is a List of Plan pointers.
    unsafe { walk((*stmt).planTree) || list_ptrs::<pg_sys::Plan>((*stmt).subplans).any(|sub| walk(sub)) }
}

/// Element `i` of a pointer `List`, read directly (PostgreSQL 13+ lists are arrays): no FFI call, as the hooks
/// need it for every execution.
///
/// # Safety
/// `list` must be null or a valid pointer `List`.
pub(crate) unsafe fn list_nth_ptr<T>(list: *mut pg_sys::List, i: usize) -> Option<*mut T> {
    // SAFETY: a valid List has `length` initialised cells in `elements`.
    unsafe {
        if list.is_null() || i >= (*list).length.max(0) as usize {
            None
        } else {
            Some((*(*list).elements.add(i)).ptr_value.cast::<T>())
        }
    }
}

/// The elements of a pointer `List`, read directly.
///
/// # Safety
/// As [`list_nth_ptr`]; the list must not change while iterating.
pub(crate) unsafe fn list_ptrs<T>(list: *mut pg_sys::List) -> impl Iterator<Item = *mut T> {
    // SAFETY: as list_nth_ptr.
    let len = if list.is_null() { 0 } else { unsafe { (*list).length.max(0) as usize } };
    // SAFETY: every index is below the length.
    (0..len).map(move |i| unsafe { list_nth_ptr::<T>(list, i).expect("index below the length") })
}

/// The member plans (a List of Plan) of an Append, MergeAppend, BitmapAnd, BitmapOr or CustomScan node; null for
/// every other node. The one place the plan walkers learn which nodes have members.
///
/// # Safety
/// `plan` is a valid plan node.
pub(crate) unsafe fn member_plans(plan: *mut pg_sys::Plan) -> *mut pg_sys::List {
    // SAFETY: casts follow the node's tag.
    unsafe {
        match (*plan).type_ {
            pg_sys::NodeTag::T_Append => (*(plan as *mut pg_sys::Append)).appendplans,
            pg_sys::NodeTag::T_MergeAppend => (*(plan as *mut pg_sys::MergeAppend)).mergeplans,
            pg_sys::NodeTag::T_BitmapAnd => (*(plan as *mut pg_sys::BitmapAnd)).bitmapplans,
            pg_sys::NodeTag::T_BitmapOr => (*(plan as *mut pg_sys::BitmapOr)).bitmapplans,
            pg_sys::NodeTag::T_CustomScan => (*(plan as *mut pg_sys::CustomScan)).custom_plans,
            _ => std::ptr::null_mut(),
        }
    }
}

/// The plans directly below `plan`, in the order the plan walkers visit them: its outer and inner input (null when
/// absent), its member plans, a SubqueryScan's subquery. Expression subplans are not among them.
///
/// # Safety
/// `plan` is a valid plan node.
pub(crate) unsafe fn child_plans(plan: *mut pg_sys::Plan) -> impl Iterator<Item = *mut pg_sys::Plan> {
    // SAFETY: the caller's guarantee; the cast follows the node's tag.
    unsafe {
        let p = &*plan;
        let subquery =
            (p.type_ == pg_sys::NodeTag::T_SubqueryScan).then(|| (*(plan as *mut pg_sys::SubqueryScan)).subplan);
        [p.lefttree, p.righttree].into_iter().chain(list_ptrs::<pg_sys::Plan>(member_plans(plan))).chain(subquery)
    }
}

/// The join clauses of a NestLoop, HashJoin or MergeJoin node; null for every other node.
///
/// # Safety
/// `plan` is a valid plan node.
pub(crate) unsafe fn join_qual(plan: *mut pg_sys::Plan) -> *mut pg_sys::List {
    // SAFETY: the cast follows the node's tag.
    unsafe {
        match (*plan).type_ {
            pg_sys::NodeTag::T_NestLoop | pg_sys::NodeTag::T_HashJoin | pg_sys::NodeTag::T_MergeJoin => {
                (*(plan as *mut pg_sys::Join)).joinqual
            }
            _ => std::ptr::null_mut(),
        }
    }
}

/// The index an IndexScan, IndexOnlyScan or BitmapIndexScan node reads; `None` for every other node.
///
/// # Safety
/// `plan` is a valid plan node.
unsafe fn scanned_index(plan: *mut pg_sys::Plan) -> Option<pg_sys::Oid> {
    // SAFETY: casts follow the node's tag.
    unsafe {
        match (*plan).type_ {
            pg_sys::NodeTag::T_IndexScan => Some((*(plan as *mut pg_sys::IndexScan)).indexid),
            pg_sys::NodeTag::T_IndexOnlyScan => Some((*(plan as *mut pg_sys::IndexOnlyScan)).indexid),
            pg_sys::NodeTag::T_BitmapIndexScan => Some((*(plan as *mut pg_sys::BitmapIndexScan)).indexid),
            _ => None,
        }
    }
}

/// A cheap structural fingerprint of a plan: node tags, relation and index OIDs and the tree's shape, hashed
/// without catalog lookups or allocation. The hooks compute it for every execution and build the full DAG only
/// the first time a backend meets a fingerprint.
///
/// # Safety
/// As [`dag_from_planned_stmt`].
pub(crate) unsafe fn plan_fingerprint(stmt: *mut pg_sys::PlannedStmt) -> u64 {
    struct Fp {
        stmt: *mut pg_sys::PlannedStmt,
        hash: u64,
        has_subplans: bool,
    }
    impl Fp {
        fn mix(&mut self, v: u64) {
            // FNV-1a over 64-bit words, then a final avalanche in `finish`.
            self.hash = (self.hash ^ v).wrapping_mul(0x0000_0100_0000_01B3);
        }
        unsafe fn relid(&self, scanrelid: pg_sys::Index) -> u64 {
            if scanrelid == 0 {
                return 0;
            }
            // SAFETY: scanrelid indexes the statement's range table.
            unsafe {
                list_nth_ptr::<pg_sys::RangeTblEntry>((*self.stmt).rtable, scanrelid as usize - 1)
                    .map_or(0, |rte| u64::from((*rte).relid.to_u32()))
            }
        }
        unsafe fn subplan(&mut self, plan_id: i32) {
            // SAFETY: plan_id indexes PlannedStmt.subplans from 1.
            let root = unsafe {
                list_nth_ptr::<pg_sys::Plan>((*self.stmt).subplans, usize::try_from(plan_id - 1).unwrap_or(usize::MAX))
            };
            self.mix(0x5B);
            if let Some(root) = root {
                // SAFETY: a valid subplan root.
                unsafe { self.walk(root) };
            }
            self.mix(0x5D);
        }
        unsafe fn walk(&mut self, plan: *mut pg_sys::Plan) {
            if plan.is_null() {
                self.mix(0);
                return;
            }
            // SAFETY: for the whole block, `plan` is valid and casts follow its tag.
            unsafe {
                let p = &*plan;
                self.mix(u64::from(p.type_ as u32) + 1);
                if let Some(index) = scanned_index(plan) {
                    self.mix(u64::from(index.to_u32()));
                }
                match p.type_ {
                    pg_sys::NodeTag::T_Agg => self.mix(u64::from((*(plan as *mut pg_sys::Agg)).aggstrategy)),
                    pg_sys::NodeTag::T_NestLoop | pg_sys::NodeTag::T_HashJoin | pg_sys::NodeTag::T_MergeJoin => {
                        self.mix(u64::from((*(plan as *mut pg_sys::Join)).jointype))
                    }
                    _ => {}
                }
                if matches!(
                    p.type_,
                    pg_sys::NodeTag::T_SeqScan
                        | pg_sys::NodeTag::T_SampleScan
                        | pg_sys::NodeTag::T_IndexScan
                        | pg_sys::NodeTag::T_IndexOnlyScan
                        | pg_sys::NodeTag::T_BitmapHeapScan
                        | pg_sys::NodeTag::T_TidScan
                        | pg_sys::NodeTag::T_TidRangeScan
                ) {
                    let relid = self.relid((*(plan as *mut pg_sys::Scan)).scanrelid);
                    self.mix(relid);
                }
                for sp in list_ptrs::<pg_sys::SubPlan>(p.initPlan) {
                    self.subplan((*sp).plan_id);
                }
                for child in child_plans(plan) {
                    self.walk(child);
                }
                // Expression subplans exist only when the statement has subplans at all.
                if self.has_subplans {
                    let mut found = Vec::new();
                    for list in [p.targetlist, p.qual, join_qual(plan)] {
                        collect_subplans(list as *mut pg_sys::Node, &mut found);
                    }
                    for sp in found {
                        self.subplan((*sp).plan_id);
                    }
                }
                self.mix(0xFF);
            }
        }
    }
    // SAFETY: the caller guarantees `stmt` is valid.
    unsafe {
        let has_subplans = !(*stmt).subplans.is_null();
        let mut fp = Fp { stmt, hash: 0xCBF2_9CE4_8422_2325, has_subplans };
        fp.walk((*stmt).planTree);
        let mut z = fp.hash;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
