//! Query ids for query classes when nothing else computes them.
//!
//! A query class is the query id PostgreSQL stores in `Query.queryId`. When `pg_stat_statements` (or any module
//! that calls `EnableQueryId`) is loaded, or `compute_query_id = on`, PostgreSQL computes it and the classes are
//! `pg_stat_statements`' own query ids. Otherwise (`compute_query_id = auto`, its default, with no such module) the
//! extension fills the id in `post_parse_analyze_hook`, after the previous hook, with its own fingerprint of the
//! analysed query. It never overwrites an id someone else computed, and with `compute_query_id = off` it leaves
//! the queries without one (and so unlearned), as the setting asks. The id does not depend on the session's
//! capture setting (`ruvector.neural_dag_enabled`): a session with capture off sees the classes' ids too.
//!
//! Why not ask PostgreSQL for its ids: its jumbling copies every significant field into a 1 KB buffer through a
//! function call per field and hashes the buffer, about 2 400 instructions for pgbench's one-table `SELECT`,
//! 2.5 % of the whole transaction (`benches/pg/capture_overhead_callgrind.sh`). The fingerprint here reads the
//! same kinds of fields (node kinds, relation, function, operator and type OIDs, column numbers, clause options;
//! not constants' values, aliases or source positions, so statements that differ only in their constants share a
//! class) and folds each into a 64-bit state with one multiply and rotate, with no allocation. Each folding step is
//! a bijection of the state, so two statements whose walks differ in one field never collide; the final
//! avalanche spreads the state over all bits. Ids are stable across backends and restarts (they depend on OIDs,
//! as `pg_stat_statements`' do: a table dropped and created again starts new classes).
use pgrx::pg_sys::{self, NodeTag};
use std::ffi::CStr;

static mut PREV_POST_PARSE_ANALYZE: pg_sys::post_parse_analyze_hook_type = None;

/// Installs the hook (while preloading).
pub(crate) fn init() {
    // SAFETY: _PG_init runs single-threaded; the previous hook is saved and chained.
    unsafe {
        PREV_POST_PARSE_ANALYZE = pg_sys::post_parse_analyze_hook;
        pg_sys::post_parse_analyze_hook = Some(post_parse_analyze);
    }
}

#[pgrx::pg_guard]
#[allow(ffi_unwind_calls)] // the previous hook is called inside pg_guard_ffi_boundary
unsafe extern "C-unwind" fn post_parse_analyze(
    pstate: *mut pg_sys::ParseState,
    query: *mut pg_sys::Query,
    jstate: *mut pg_sys::JumbleState,
) {
    // SAFETY: PostgreSQL's arguments, valid for the call; the previous hook is a C function pointer called inside
    // the FFI guard; `compute_query_id` is a GUC variable read in the backend's own thread.
    unsafe {
        if let Some(prev) = PREV_POST_PARSE_ANALYZE {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| prev(pstate, query, jstate));
        }
        if (*query).queryId == 0
            && (*query).utilityStmt.is_null()
            && pg_sys::compute_query_id != pg_sys::ComputeQueryIdType::COMPUTE_QUERY_ID_OFF as i32
        {
            (*query).queryId = fingerprint(query);
        }
    }
}

/// The query id of an analysed (not utility) query: never 0.
///
/// # Safety
/// `query` must point to a valid analysed `Query` tree.
pub(crate) unsafe fn fingerprint(query: *const pg_sys::Query) -> u64 {
    let mut fp = Fp { h: 0x243F_6A88_85A3_08D3, depth: 0 };
    // SAFETY: the caller's guarantee.
    unsafe { fp.query(query) };
    // The finaliser of MurmurHash3: every input bit reaches every output bit.
    let mut h = fp.h;
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h.max(1)
}

/// Recursion depth past which every level checks PostgreSQL's stack limit (an ERROR past `max_stack_depth`).
const CHECKED_DEPTH: u32 = 256;

struct Fp {
    h: u64,
    depth: u32,
}

/// Casts a node to its struct type.
///
/// # Safety
/// `n` must be non-null and of type `T` (checked by its tag by the caller).
unsafe fn cast<'a, T>(n: *const pg_sys::Node) -> &'a T {
    // SAFETY: the caller's guarantee.
    unsafe { &*n.cast::<T>() }
}

impl Fp {
    #[inline]
    fn word(&mut self, v: u64) {
        self.h = (self.h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(27);
    }

    fn flag(&mut self, b: bool) {
        self.word(u64::from(b));
    }

    /// A C string (names of CTEs and tuplestores, which identify them): its bytes and length, or a marker for NULL.
    ///
    /// # Safety
    /// `s` is null or a valid NUL-terminated string.
    unsafe fn string(&mut self, s: *const std::ffi::c_char) {
        if s.is_null() {
            self.word(u64::MAX);
            return;
        }
        // SAFETY: the caller's guarantee.
        let bytes = unsafe { CStr::from_ptr(s) }.to_bytes();
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(w));
        }
        self.word(bytes.len() as u64);
    }

    /// # Safety
    /// `q` is null or a valid analysed `Query`.
    unsafe fn query(&mut self, q: *const pg_sys::Query) {
        if q.is_null() {
            self.word(0);
            return;
        }
        // SAFETY: the caller's guarantee; every pointer in an analysed Query is null or a valid node of the
        // type its field declares.
        unsafe {
            let q = &*q;
            self.word(u64::from(q.commandType));
            self.list(q.cteList);
            self.range_table(q.rtable);
            self.node(q.jointree.cast());
            self.list(q.mergeActionList);
            self.list(q.targetList);
            self.node(q.onConflict.cast());
            self.list(q.returningList);
            self.list(q.groupClause);
            self.flag(q.groupDistinct);
            self.list(q.groupingSets);
            self.node(q.havingQual);
            self.list(q.windowClause);
            self.list(q.distinctClause);
            self.list(q.sortClause);
            self.node(q.limitOffset);
            self.node(q.limitCount);
            self.word(u64::from(q.limitOption));
            for mark in cells(q.rowMarks) {
                let mark = &*mark.cast::<pg_sys::RowMarkClause>();
                if !mark.pushedDown {
                    self.word(u64::from(mark.rti));
                    self.word(u64::from(mark.strength));
                    self.word(u64::from(mark.waitPolicy));
                }
            }
            self.node(q.setOperations);
        }
    }

    /// # Safety
    /// `rtable` is null or a valid list of `RangeTblEntry`.
    unsafe fn range_table(&mut self, rtable: *const pg_sys::List) {
        // SAFETY: the caller's guarantee.
        unsafe {
            for rte in cells(rtable) {
                let rte = &*rte.cast::<pg_sys::RangeTblEntry>();
                self.word(u64::from(rte.rtekind));
                match rte.rtekind {
                    pg_sys::RTEKind::RTE_RELATION => {
                        self.word(u64::from(rte.relid.to_u32()));
                        self.node(rte.tablesample.cast());
                        self.flag(rte.inh);
                    }
                    pg_sys::RTEKind::RTE_SUBQUERY => self.query(rte.subquery),
                    pg_sys::RTEKind::RTE_JOIN => self.word(u64::from(rte.jointype)),
                    pg_sys::RTEKind::RTE_FUNCTION => self.list(rte.functions),
                    pg_sys::RTEKind::RTE_TABLEFUNC => self.node(rte.tablefunc.cast()),
                    pg_sys::RTEKind::RTE_VALUES => self.list(rte.values_lists),
                    pg_sys::RTEKind::RTE_CTE => {
                        self.string(rte.ctename);
                        self.word(u64::from(rte.ctelevelsup));
                    }
                    pg_sys::RTEKind::RTE_NAMEDTUPLESTORE => self.string(rte.enrname),
                    _ => {}
                }
            }
        }
    }

    /// # Safety
    /// `l` is null or a valid list.
    #[inline(always)]
    unsafe fn list(&mut self, l: *const pg_sys::List) {
        // SAFETY: the caller's guarantee.
        unsafe { self.node(l.cast()) }
    }

    /// # Safety
    /// `n` is null or a valid node of an analysed query.
    #[inline(always)]
    unsafe fn node(&mut self, n: *const pg_sys::Node) {
        // Most of a Query's fields are null: checked here, without the call.
        if n.is_null() {
            self.word(0);
        } else {
            // SAFETY: the caller's guarantee.
            unsafe { self.walk(n) }
        }
    }

    /// # Safety
    /// `n` is a valid node of an analysed query.
    #[inline(never)]
    unsafe fn walk(&mut self, n: *const pg_sys::Node) {
        self.depth += 1;
        if self.depth > CHECKED_DEPTH {
            // SAFETY: raises an ERROR (through pgrx's guard) when the stack is too deep.
            unsafe { pg_sys::check_stack_depth() };
        }
        // SAFETY: the caller's guarantee; each arm casts to the struct its tag names.
        unsafe {
            let tag = (*n).type_;
            self.word(tag as u64);
            match tag {
                NodeTag::T_List => {
                    let l = n.cast::<pg_sys::List>();
                    self.word((*l).length as u64);
                    for c in cells(l) {
                        self.node(c.cast());
                    }
                }
                NodeTag::T_IntList | NodeTag::T_OidList => {
                    let l = &*n.cast::<pg_sys::List>();
                    self.word(l.length as u64);
                    for i in 0..l.length as usize {
                        self.word((*l.elements.add(i)).int_value as u32 as u64);
                    }
                }
                NodeTag::T_Var => {
                    let v = cast::<pg_sys::Var>(n);
                    self.word(u64::from(v.varno as u32));
                    self.word(u64::from(v.varattno as u16));
                    self.word(u64::from(v.varlevelsup));
                }
                // A constant's type, not its value: statements differing only in constants share a class.
                NodeTag::T_Const => self.word(u64::from(cast::<pg_sys::Const>(n).consttype.to_u32())),
                NodeTag::T_Param => {
                    let p = cast::<pg_sys::Param>(n);
                    self.word(u64::from(p.paramkind));
                    self.word(u64::from(p.paramid as u32));
                    self.word(u64::from(p.paramtype.to_u32()));
                }
                NodeTag::T_Aggref => {
                    let a = cast::<pg_sys::Aggref>(n);
                    self.word(u64::from(a.aggfnoid.to_u32()));
                    self.list(a.aggdirectargs);
                    self.list(a.args);
                    self.list(a.aggorder);
                    self.list(a.aggdistinct);
                    self.node(a.aggfilter.cast());
                }
                NodeTag::T_GroupingFunc => {
                    let g = cast::<pg_sys::GroupingFunc>(n);
                    self.list(g.refs);
                    self.word(u64::from(g.agglevelsup));
                }
                NodeTag::T_WindowFunc => {
                    let w = cast::<pg_sys::WindowFunc>(n);
                    self.word(u64::from(w.winfnoid.to_u32()));
                    self.word(u64::from(w.winref));
                    self.list(w.args);
                    self.node(w.aggfilter.cast());
                }
                NodeTag::T_SubscriptingRef => {
                    let s = cast::<pg_sys::SubscriptingRef>(n);
                    self.list(s.refupperindexpr);
                    self.list(s.reflowerindexpr);
                    self.node(s.refexpr.cast());
                    self.node(s.refassgnexpr.cast());
                }
                NodeTag::T_FuncExpr => {
                    let f = cast::<pg_sys::FuncExpr>(n);
                    self.word(u64::from(f.funcid.to_u32()));
                    self.list(f.args);
                }
                NodeTag::T_NamedArgExpr => {
                    let a = cast::<pg_sys::NamedArgExpr>(n);
                    self.word(u64::from(a.argnumber as u32));
                    self.node(a.arg.cast());
                }
                // DistinctExpr and NullIfExpr are OpExprs by another tag.
                NodeTag::T_OpExpr | NodeTag::T_DistinctExpr | NodeTag::T_NullIfExpr => {
                    let o = cast::<pg_sys::OpExpr>(n);
                    self.word(u64::from(o.opno.to_u32()));
                    self.list(o.args);
                }
                NodeTag::T_ScalarArrayOpExpr => {
                    let o = cast::<pg_sys::ScalarArrayOpExpr>(n);
                    self.word(u64::from(o.opno.to_u32()));
                    self.flag(o.useOr);
                    self.list(o.args);
                }
                NodeTag::T_BoolExpr => {
                    let b = cast::<pg_sys::BoolExpr>(n);
                    self.word(u64::from(b.boolop));
                    self.list(b.args);
                }
                NodeTag::T_SubLink => {
                    let s = cast::<pg_sys::SubLink>(n);
                    self.word(u64::from(s.subLinkType));
                    self.word(u64::from(s.subLinkId as u32));
                    self.node(s.testexpr);
                    self.query(s.subselect.cast());
                }
                NodeTag::T_FieldSelect => {
                    let f = cast::<pg_sys::FieldSelect>(n);
                    self.word(u64::from(f.fieldnum as u16));
                    self.node(f.arg.cast());
                }
                NodeTag::T_FieldStore => {
                    let f = cast::<pg_sys::FieldStore>(n);
                    self.node(f.arg.cast());
                    self.list(f.newvals);
                }
                NodeTag::T_RelabelType => {
                    let r = cast::<pg_sys::RelabelType>(n);
                    self.word(u64::from(r.resulttype.to_u32()));
                    self.node(r.arg.cast());
                }
                NodeTag::T_CoerceViaIO => {
                    let c = cast::<pg_sys::CoerceViaIO>(n);
                    self.word(u64::from(c.resulttype.to_u32()));
                    self.node(c.arg.cast());
                }
                NodeTag::T_ArrayCoerceExpr => {
                    let c = cast::<pg_sys::ArrayCoerceExpr>(n);
                    self.word(u64::from(c.resulttype.to_u32()));
                    self.node(c.arg.cast());
                    self.node(c.elemexpr.cast());
                }
                NodeTag::T_ConvertRowtypeExpr => {
                    let c = cast::<pg_sys::ConvertRowtypeExpr>(n);
                    self.word(u64::from(c.resulttype.to_u32()));
                    self.node(c.arg.cast());
                }
                NodeTag::T_CollateExpr => {
                    let c = cast::<pg_sys::CollateExpr>(n);
                    self.word(u64::from(c.collOid.to_u32()));
                    self.node(c.arg.cast());
                }
                NodeTag::T_CaseExpr => {
                    let c = cast::<pg_sys::CaseExpr>(n);
                    self.node(c.arg.cast());
                    for w in cells(c.args) {
                        let w = &*w.cast::<pg_sys::CaseWhen>();
                        self.node(w.expr.cast());
                        self.node(w.result.cast());
                    }
                    self.node(c.defresult.cast());
                }
                NodeTag::T_CaseTestExpr => self.word(u64::from(cast::<pg_sys::CaseTestExpr>(n).typeId.to_u32())),
                NodeTag::T_ArrayExpr => self.list(cast::<pg_sys::ArrayExpr>(n).elements),
                NodeTag::T_RowExpr => self.list(cast::<pg_sys::RowExpr>(n).args),
                NodeTag::T_RowCompareExpr => {
                    let r = cast::<pg_sys::RowCompareExpr>(n);
                    self.word(u64::from(r.rctype));
                    self.list(r.largs);
                    self.list(r.rargs);
                }
                NodeTag::T_CoalesceExpr => self.list(cast::<pg_sys::CoalesceExpr>(n).args),
                NodeTag::T_MinMaxExpr => {
                    let m = cast::<pg_sys::MinMaxExpr>(n);
                    self.word(u64::from(m.op));
                    self.list(m.args);
                }
                NodeTag::T_SQLValueFunction => {
                    let s = cast::<pg_sys::SQLValueFunction>(n);
                    self.word(u64::from(s.op));
                    self.word(u64::from(s.typmod as u32));
                }
                NodeTag::T_XmlExpr => {
                    let x = cast::<pg_sys::XmlExpr>(n);
                    self.word(u64::from(x.op));
                    self.list(x.named_args);
                    self.list(x.args);
                }
                NodeTag::T_NullTest => {
                    let t = cast::<pg_sys::NullTest>(n);
                    self.word(u64::from(t.nulltesttype));
                    self.node(t.arg.cast());
                }
                NodeTag::T_BooleanTest => {
                    let t = cast::<pg_sys::BooleanTest>(n);
                    self.word(u64::from(t.booltesttype));
                    self.node(t.arg.cast());
                }
                NodeTag::T_CoerceToDomain => {
                    let c = cast::<pg_sys::CoerceToDomain>(n);
                    self.word(u64::from(c.resulttype.to_u32()));
                    self.node(c.arg.cast());
                }
                NodeTag::T_CoerceToDomainValue => {
                    self.word(u64::from(cast::<pg_sys::CoerceToDomainValue>(n).typeId.to_u32()))
                }
                NodeTag::T_SetToDefault => self.word(u64::from(cast::<pg_sys::SetToDefault>(n).typeId.to_u32())),
                NodeTag::T_CurrentOfExpr => {
                    let c = cast::<pg_sys::CurrentOfExpr>(n);
                    self.word(u64::from(c.cvarno));
                    self.string(c.cursor_name);
                    self.word(u64::from(c.cursor_param as u32));
                }
                NodeTag::T_NextValueExpr => {
                    let v = cast::<pg_sys::NextValueExpr>(n);
                    self.word(u64::from(v.seqid.to_u32()));
                    self.word(u64::from(v.typeId.to_u32()));
                }
                NodeTag::T_InferenceElem => {
                    let e = cast::<pg_sys::InferenceElem>(n);
                    self.word(u64::from(e.infercollid.to_u32()));
                    self.word(u64::from(e.inferopclass.to_u32()));
                    self.node(e.expr);
                }
                NodeTag::T_TargetEntry => {
                    let t = cast::<pg_sys::TargetEntry>(n);
                    self.word(u64::from(t.resno as u16));
                    self.word(u64::from(t.ressortgroupref));
                    self.node(t.expr.cast());
                }
                NodeTag::T_RangeTblRef => self.word(u64::from(cast::<pg_sys::RangeTblRef>(n).rtindex as u32)),
                NodeTag::T_JoinExpr => {
                    let j = cast::<pg_sys::JoinExpr>(n);
                    self.word(u64::from(j.jointype));
                    self.flag(j.isNatural);
                    self.word(u64::from(j.rtindex as u32));
                    self.node(j.larg);
                    self.node(j.rarg);
                    self.node(j.quals);
                }
                NodeTag::T_FromExpr => {
                    let f = cast::<pg_sys::FromExpr>(n);
                    self.list(f.fromlist);
                    self.node(f.quals);
                }
                NodeTag::T_OnConflictExpr => {
                    let c = cast::<pg_sys::OnConflictExpr>(n);
                    self.word(u64::from(c.action));
                    self.list(c.arbiterElems);
                    self.node(c.arbiterWhere);
                    self.list(c.onConflictSet);
                    self.node(c.onConflictWhere);
                    self.word(u64::from(c.constraint.to_u32()));
                    self.word(u64::from(c.exclRelIndex as u32));
                    self.list(c.exclRelTlist);
                }
                NodeTag::T_MergeAction => {
                    let m = cast::<pg_sys::MergeAction>(n);
                    self.flag(m.matched);
                    self.word(u64::from(m.commandType));
                    self.node(m.qual);
                    self.list(m.targetList);
                }
                NodeTag::T_SortGroupClause => {
                    let s = cast::<pg_sys::SortGroupClause>(n);
                    self.word(u64::from(s.tleSortGroupRef));
                    self.word(u64::from(s.eqop.to_u32()));
                    self.word(u64::from(s.sortop.to_u32()));
                    self.flag(s.nulls_first);
                }
                NodeTag::T_GroupingSet => {
                    let g = cast::<pg_sys::GroupingSet>(n);
                    self.word(u64::from(g.kind));
                    self.list(g.content);
                }
                NodeTag::T_WindowClause => {
                    let w = cast::<pg_sys::WindowClause>(n);
                    self.word(u64::from(w.winref));
                    self.word(u64::from(w.frameOptions as u32));
                    self.list(w.partitionClause);
                    self.list(w.orderClause);
                    self.node(w.startOffset);
                    self.node(w.endOffset);
                }
                NodeTag::T_CommonTableExpr => {
                    let c = cast::<pg_sys::CommonTableExpr>(n);
                    self.string(c.ctename);
                    self.word(u64::from(c.ctematerialized));
                    self.query(c.ctequery.cast());
                }
                NodeTag::T_SetOperationStmt => {
                    let s = cast::<pg_sys::SetOperationStmt>(n);
                    self.word(u64::from(s.op));
                    self.flag(s.all);
                    self.node(s.larg);
                    self.node(s.rarg);
                }
                NodeTag::T_RangeTblFunction => self.node(cast::<pg_sys::RangeTblFunction>(n).funcexpr),
                NodeTag::T_TableFunc => {
                    let t = cast::<pg_sys::TableFunc>(n);
                    self.node(t.docexpr);
                    self.node(t.rowexpr);
                    self.list(t.colexprs);
                }
                NodeTag::T_TableSampleClause => {
                    let t = cast::<pg_sys::TableSampleClause>(n);
                    self.word(u64::from(t.tsmhandler.to_u32()));
                    self.list(t.args);
                    self.node(t.repeatable.cast());
                }
                // Any other node (none is expected after parse analysis): its kind alone.
                _ => {}
            }
        }
        self.depth -= 1;
    }
}

/// The pointers of a list's cells (none for NIL).
///
/// # Safety
/// `l` is null or a valid pointer list that outlives the iteration.
unsafe fn cells(l: *const pg_sys::List) -> impl Iterator<Item = *mut std::ffi::c_void> {
    let (elements, length) = if l.is_null() {
        (std::ptr::null_mut(), 0)
    } else {
        // SAFETY: the caller's guarantee.
        unsafe { ((*l).elements, (*l).length) }
    };
    // SAFETY: `elements` holds `length` cells.
    (0..length.max(0) as usize).map(move |i| unsafe { (*elements.add(i)).ptr_value })
}
