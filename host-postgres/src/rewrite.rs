//! Rewrite advice: decorrelation of scalar aggregate subqueries (`dag_rewrite_query`).
//!
//! PostgreSQL pulls up `EXISTS`/`IN` sublinks but never a correlated scalar subquery: `WHERE x < (SELECT avg(y)
//! FROM t WHERE t.k = outer.k)` runs the subquery once per outer row (TPC-H Q2, Q17, Q20: 94% of SF1's time).
//! This module turns such a conjunct into a join with the pre-aggregated table, grouped by the correlation keys
//! and restricted to the keys the outer query can produce:
//!
//! ```sql
//! … FROM part, lineitem WHERE p_partkey = l_partkey AND p_brand = 'Brand#23'
//!     AND l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem WHERE l_partkey = p_partkey)
//! -- becomes
//! … FROM part, lineitem, (SELECT l_partkey AS _rv_k1, avg(l_quantity) AS _rv_agg FROM lineitem
//!                         WHERE l_partkey IN (SELECT p_partkey FROM part WHERE p_brand = 'Brand#23')
//!                         GROUP BY l_partkey) AS _rv_sq1
//!   WHERE p_partkey = l_partkey AND p_brand = 'Brand#23'
//!     AND l_quantity < (0.2 * _rv_sq1._rv_agg) AND p_partkey = _rv_sq1._rv_k1
//! ```
//!
//! Supported: a top-level `AND` conjunct `expr op (subquery)` of a `SELECT`'s `WHERE` (at any depth of the
//! query), whose subquery has one target holding one aggregate (`sum`, `avg`, `min`, `max`, `count`) and
//! constants, plain tables in `FROM`, no `GROUP BY`/`HAVING`/`DISTINCT`/`ORDER BY`/`LIMIT`/window/`WITH`, no
//! volatile function, and outer references only in top-level `AND`-ed equalities `inner_column = outer_column`.
//! `count` of no rows is 0, not NULL (the COUNT bug): it becomes a `LEFT JOIN` with `COALESCE(…, 0)` attached to
//! the one outer table holding the keys. Anything else is returned unchanged with the reason. PostgreSQL's parser
//! finds the structure (raw parse tree, node locations); the rewrite copies the user's own text for every part
//! and PostgreSQL parses and plans the result. It is advice: `dag_rewrite_query` returns the rewrite only when its
//! plan is cheaper, a measured run is faster and the result sets are equal.

use crate::rewrite_text::{AFTER_WHERE, Text, Tok, apply};
use crate::sql::fail;
use pgrx::prelude::*;
use pgrx::{PgList, pg_sys};
use std::ffi::CStr;

/// Why a query is left unchanged.
type Why = String;

unsafe fn tag(node: *mut pg_sys::Node) -> pg_sys::NodeTag {
    // SAFETY: callers pass valid nodes (or null, checked first).
    unsafe { if node.is_null() { pg_sys::NodeTag::T_Invalid } else { (*node).type_ } }
}

/// The strings of a name list (`String` nodes; `*` for `A_Star`).
unsafe fn names(list: *mut pg_sys::List) -> Vec<String> {
    // SAFETY: name lists of the raw parse tree hold String or A_Star nodes.
    unsafe {
        PgList::<pg_sys::Node>::from_pg(list)
            .iter_ptr()
            .map(|n| match tag(n) {
                pg_sys::NodeTag::T_String => {
                    CStr::from_ptr((*(n as *mut pg_sys::String)).sval).to_string_lossy().into_owned()
                }
                _ => "*".to_owned(),
            })
            .collect()
    }
}

unsafe fn nodes(list: *mut pg_sys::List) -> Vec<*mut pg_sys::Node> {
    // SAFETY: a List of nodes (or NIL).
    unsafe { PgList::<pg_sys::Node>::from_pg(list).iter_ptr().collect() }
}

fn offset(loc: i32) -> Result<usize, Why> {
    usize::try_from(loc).map_err(|_| "a part of the query has no position in its text".to_owned())
}

/// What an expression contains, found by a walk that knows every node it meets (anything else: not supported).
#[derive(Default)]
struct Contents {
    columns: Vec<*mut pg_sys::ColumnRef>,
    /// Calls, with their names.
    calls: Vec<(*mut pg_sys::FuncCall, String)>,
    sublinks: Vec<*mut pg_sys::SubLink>,
}

/// Walks an expression of the raw parse tree. `into_sublinks`: also walk sub-selects (then their contents count).
unsafe fn walk(node: *mut pg_sys::Node, out: &mut Contents, into_sublinks: bool) -> Result<(), Why> {
    use pg_sys::NodeTag as T;
    if node.is_null() {
        return Ok(());
    }
    // SAFETY: each branch reads the node as the type its tag names.
    unsafe {
        let each = |list: *mut pg_sys::List, out: &mut Contents| -> Result<(), Why> {
            for n in nodes(list) {
                walk(n, out, into_sublinks)?;
            }
            Ok(())
        };
        match tag(node) {
            T::T_ColumnRef => out.columns.push(node as *mut pg_sys::ColumnRef),
            T::T_A_Const | T::T_ParamRef | T::T_SQLValueFunction | T::T_A_Star => {}
            T::T_List => each(node as *mut pg_sys::List, out)?,
            T::T_A_Expr => {
                let e = node as *mut pg_sys::A_Expr;
                walk((*e).lexpr, out, into_sublinks)?;
                walk((*e).rexpr, out, into_sublinks)?;
            }
            T::T_BoolExpr => each((*(node as *mut pg_sys::BoolExpr)).args, out)?,
            T::T_FuncCall => {
                let f = node as *mut pg_sys::FuncCall;
                if !(*f).over.is_null() {
                    return Err("a window function".into());
                }
                out.calls.push((f, names((*f).funcname).last().cloned().unwrap_or_default().to_lowercase()));
                each((*f).args, out)?;
                each((*f).agg_order, out)?;
                walk((*f).agg_filter, out, into_sublinks)?;
            }
            T::T_SortBy => walk((*(node as *mut pg_sys::SortBy)).node, out, into_sublinks)?,
            T::T_ResTarget => walk((*(node as *mut pg_sys::ResTarget)).val, out, into_sublinks)?,
            T::T_TypeCast => walk((*(node as *mut pg_sys::TypeCast)).arg, out, into_sublinks)?,
            T::T_CollateClause => walk((*(node as *mut pg_sys::CollateClause)).arg, out, into_sublinks)?,
            T::T_NamedArgExpr => walk((*(node as *mut pg_sys::NamedArgExpr)).arg as _, out, into_sublinks)?,
            T::T_NullTest => walk((*(node as *mut pg_sys::NullTest)).arg as _, out, into_sublinks)?,
            T::T_BooleanTest => walk((*(node as *mut pg_sys::BooleanTest)).arg as _, out, into_sublinks)?,
            T::T_CaseExpr => {
                let c = node as *mut pg_sys::CaseExpr;
                walk((*c).arg as _, out, into_sublinks)?;
                each((*c).args, out)?;
                walk((*c).defresult as _, out, into_sublinks)?;
            }
            T::T_CaseWhen => {
                let w = node as *mut pg_sys::CaseWhen;
                walk((*w).expr as _, out, into_sublinks)?;
                walk((*w).result as _, out, into_sublinks)?;
            }
            T::T_CoalesceExpr => each((*(node as *mut pg_sys::CoalesceExpr)).args, out)?,
            T::T_MinMaxExpr => each((*(node as *mut pg_sys::MinMaxExpr)).args, out)?,
            T::T_A_ArrayExpr => each((*(node as *mut pg_sys::A_ArrayExpr)).elements, out)?,
            T::T_RowExpr => each((*(node as *mut pg_sys::RowExpr)).args, out)?,
            T::T_A_Indirection => walk((*(node as *mut pg_sys::A_Indirection)).arg, out, into_sublinks)?,
            T::T_SubLink => {
                let s = node as *mut pg_sys::SubLink;
                out.sublinks.push(s);
                walk((*s).testexpr, out, into_sublinks)?;
                if into_sublinks {
                    return Err("a nested subquery".into());
                }
            }
            other => return Err(format!("an expression of a kind the rewriter does not know ({other:?})")),
        }
    }
    Ok(())
}

/// Every `SELECT` of the statement, outermost first (set operations, `WITH` queries, `FROM` subqueries and
/// sublinks in any clause). Parts the walk does not know are not searched.
unsafe fn selects(node: *mut pg_sys::Node, out: &mut Vec<*mut pg_sys::SelectStmt>) {
    use pg_sys::NodeTag as T;
    // SAFETY: as in `walk`.
    unsafe {
        match tag(node) {
            T::T_SelectStmt => {
                let s = node as *mut pg_sys::SelectStmt;
                out.push(s);
                selects((*s).larg as _, out);
                selects((*s).rarg as _, out);
                if !(*s).withClause.is_null() {
                    for cte in nodes((*(*s).withClause).ctes) {
                        selects((*(cte as *mut pg_sys::CommonTableExpr)).ctequery, out);
                    }
                }
                for n in nodes((*s).fromClause) {
                    selects(n, out);
                }
                for expr in [(*s).targetList as *mut pg_sys::Node, (*s).whereClause, (*s).havingClause] {
                    let mut c = Contents::default();
                    // A walk that stops at an unknown node still found the sublinks before it.
                    let _ = walk(expr, &mut c, false);
                    for l in c.sublinks {
                        selects((*l).subselect, out);
                    }
                }
            }
            T::T_RangeSubselect => selects((*(node as *mut pg_sys::RangeSubselect)).subquery, out),
            T::T_JoinExpr => {
                let j = node as *mut pg_sys::JoinExpr;
                selects((*j).larg, out);
                selects((*j).rarg, out);
            }
            T::T_ResTarget => selects((*(node as *mut pg_sys::ResTarget)).val, out),
            _ => {}
        }
    }
}

/// A plain table of a `FROM` list.
struct Table {
    /// The name columns are qualified with: the alias, else the table's name.
    visible: String,
    columns: Vec<String>,
    location: usize,
    range_var: *mut pg_sys::RangeVar,
}

/// The tables of a `FROM` list; `None` for items that are not plain tables.
unsafe fn tables(from: *mut pg_sys::List) -> Result<Vec<Option<Table>>, Why> {
    // SAFETY: FROM lists hold RangeVar, RangeSubselect, JoinExpr, RangeFunction… nodes.
    unsafe {
        nodes(from)
            .into_iter()
            .map(|n| {
                if tag(n) != pg_sys::NodeTag::T_RangeVar {
                    return Ok(None);
                }
                let rv = n as *mut pg_sys::RangeVar;
                let relname = CStr::from_ptr((*rv).relname).to_string_lossy().into_owned();
                let qualified = match (*rv).schemaname.is_null() {
                    true => spi::quote_identifier(&relname),
                    false => format!(
                        "{}.{}",
                        spi::quote_identifier(CStr::from_ptr((*rv).schemaname).to_string_lossy()),
                        spi::quote_identifier(&relname)
                    ),
                };
                let columns = Spi::get_one_with_args::<Vec<String>>(
                    "SELECT array_agg(attname::text) FROM pg_attribute
                     WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                    &[qualified.as_str().into()],
                )
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{qualified} is not a table this session can see (a WITH query?)"))?;
                let visible = match (*rv).alias.is_null() {
                    true => relname,
                    false => CStr::from_ptr((*(*rv).alias).aliasname).to_string_lossy().into_owned(),
                };
                Ok(Some(Table { visible, columns, location: offset((*rv).location)?, range_var: rv }))
            })
            .collect()
    }
}

/// Which of `tables` a column reference names: `Some(i)`, or `None` when it names none of them.
/// `Err` when an unqualified name is ambiguous or cannot be resolved with certainty.
fn resolve(fields: &[String], tables: &[Option<Table>]) -> Result<Option<usize>, Why> {
    match fields {
        [column] => {
            let holders: Vec<usize> = tables
                .iter()
                .enumerate()
                .filter(|(_, t)| t.as_ref().is_some_and(|t| t.columns.contains(column)))
                .map(|(i, _)| i)
                .collect();
            match holders.as_slice() {
                [] if tables.iter().any(Option::is_none) => {
                    Err(format!("cannot tell where column {column} comes from (a FROM item is not a plain table)"))
                }
                [] => Ok(None),
                [one] => Ok(Some(*one)),
                _ => Err(format!("column {column} is ambiguous")),
            }
        }
        [.., table, _] => {
            let hit = tables.iter().position(|t| t.as_ref().is_some_and(|t| t.visible == *table));
            match hit {
                None if tables.iter().any(Option::is_none) => {
                    Err(format!("cannot tell where {table} comes from (a FROM item is not a plain table)"))
                }
                hit => Ok(hit),
            }
        }
        [] => Err("an empty column reference".into()),
    }
}

/// The aggregates the rewrite knows, and what each gives over no rows (`None`: NULL).
fn empty_value(aggregate: &str) -> Option<Option<&'static str>> {
    match aggregate {
        "sum" | "avg" | "min" | "max" => Some(None),
        "count" => Some(Some("0")),
        _ => None,
    }
}

/// The byte span of a column reference or a (qualified) table name at `offset`: `name(.name)*`.
fn dotted(text: &Text<'_>, offset: usize) -> Option<(usize, usize)> {
    let mut i = text.at(offset)?;
    while text.toks.get(i + 2).is_some_and(|t| matches!(t.kind, Tok::Word | Tok::Quoted)) && text.tok(i + 1) == "." {
        i += 2;
    }
    Some((offset, text.toks[i].end))
}

/// The span of a `FROM` item that is a plain table: `name [[AS] alias [(columns)]]`.
fn table_span(text: &Text<'_>, t: &Table) -> Option<(usize, usize)> {
    let (start, mut end) = dotted(text, t.location)?;
    // SAFETY: the RangeVar of a table found by `tables`.
    let aliased = unsafe { !(*t.range_var).alias.is_null() };
    if aliased {
        let mut i = text.at(text.toks.iter().find(|k| k.start >= end)?.start)?;
        if text.is_word(i, "as") {
            i += 1;
        }
        end = text.toks.get(i)?.end;
        if text.toks.get(i + 1).is_some_and(|k| k.kind == Tok::LParen) {
            end = text.toks[text.matching(i + 1)?].end;
        }
    }
    Some((start, end))
}

/// One decorrelated subquery: the edits to the text and what was done.
struct Plan {
    edits: Vec<(usize, usize, String)>,
    note: String,
}

/// Rewrites every supported correlated scalar aggregate subquery of `sql`. `Ok((text, notes))`; `Err(why)` when
/// nothing could be rewritten.
pub(crate) fn decorrelate(sql: &str) -> Result<(String, Vec<String>), Why> {
    let c = std::ffi::CString::new(sql).map_err(|_| "the query text contains a NUL byte".to_owned())?;
    // SAFETY: the raw parser reads the text and allocates the tree in the current memory context; a syntax
    // error raises an ERROR (the caller's clear message).
    let stmts = unsafe { nodes(pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT)) };
    let [raw] = stmts.as_slice() else { return Err(format!("expected one statement, found {}", stmts.len())) };
    // SAFETY: raw_parser returns RawStmt nodes.
    let stmt = unsafe { (*(*raw as *mut pg_sys::RawStmt)).stmt };
    // SAFETY: a node of the tree.
    if unsafe { tag(stmt) } != pg_sys::NodeTag::T_SelectStmt {
        return Err("only a SELECT can be rewritten".into());
    }
    if sql.contains("_rv_sq") {
        return Err("the query already uses the names the rewrite would add (_rv_sq…)".into());
    }
    let text = Text::new(sql);
    let mut all = Vec::new();
    // SAFETY: walking the tree just parsed.
    unsafe { selects(stmt, &mut all) };
    let (mut edits, mut notes, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    for select in all {
        // SAFETY: a SelectStmt of the tree.
        match unsafe { rewrite_select(select, &text, notes.len() + 1) } {
            Ok(Some(plan)) => {
                edits.extend(plan.edits);
                notes.push(plan.note);
            }
            Ok(None) => {}
            Err(why) => reasons.push(why),
        }
    }
    if notes.is_empty() {
        return Err(reasons
            .into_iter()
            .next()
            .unwrap_or_else(|| "no correlated scalar aggregate subquery in a WHERE clause".into()));
    }
    let out = apply(sql, edits).ok_or_else(|| "the rewrites overlap".to_owned())?;
    Ok((out, notes))
}

/// The top-level `AND`-ed conjuncts of a condition (itself when it is not an `AND`).
unsafe fn and_args(condition: *mut pg_sys::Node) -> Vec<*mut pg_sys::Node> {
    // SAFETY: a node of the raw parse tree, read as its tag says.
    unsafe {
        if tag(condition) == pg_sys::NodeTag::T_BoolExpr
            && (*(condition as *mut pg_sys::BoolExpr)).boolop == pg_sys::BoolExprType::AND_EXPR
        {
            nodes((*(condition as *mut pg_sys::BoolExpr)).args)
        } else {
            vec![condition]
        }
    }
}

/// The first supported conjunct of `select`'s `WHERE`: `Ok(None)` when it has no scalar subquery conjunct.
unsafe fn rewrite_select(select: *mut pg_sys::SelectStmt, text: &Text<'_>, n: usize) -> Result<Option<Plan>, Why> {
    // SAFETY: fields of a SelectStmt and the nodes they hold.
    unsafe {
        let s = &*select;
        if s.op != pg_sys::SetOperation::SETOP_NONE || s.whereClause.is_null() {
            return Ok(None);
        }
        let conjuncts = and_args(s.whereClause);
        let mut first_error = None;
        for (i, &conj) in conjuncts.iter().enumerate() {
            if tag(conj) != pg_sys::NodeTag::T_A_Expr {
                continue;
            }
            let e = conj as *mut pg_sys::A_Expr;
            let scalar = |n: *mut pg_sys::Node| {
                (tag(n) == pg_sys::NodeTag::T_SubLink
                    && (*(n as *mut pg_sys::SubLink)).subLinkType == pg_sys::SubLinkType::EXPR_SUBLINK)
                    .then_some(n as *mut pg_sys::SubLink)
            };
            let sublink = match (scalar((*e).lexpr), scalar((*e).rexpr)) {
                (Some(l), None) | (None, Some(l)) if (*e).kind == pg_sys::A_Expr_Kind::AEXPR_OP => l,
                _ => continue,
            };
            match decorrelate_conjunct(s, &conjuncts, i, sublink, text, n) {
                Ok(plan) => return Ok(Some(plan)),
                Err(why) => {
                    first_error.get_or_insert(why);
                }
            }
        }
        first_error.map_or(Ok(None), Err)
    }
}

/// Plans the rewrite of conjunct `i` of `outer`'s `WHERE`, whose scalar subquery is `sublink`.
unsafe fn decorrelate_conjunct(
    outer: &pg_sys::SelectStmt,
    conjuncts: &[*mut pg_sys::Node],
    i: usize,
    sublink: *mut pg_sys::SubLink,
    text: &Text<'_>,
    n: usize,
) -> Result<Plan, Why> {
    // SAFETY: nodes of the parse tree, read as their tags say.
    unsafe {
        let sub = (*sublink).subselect as *mut pg_sys::SelectStmt;
        let q = &*sub;
        if q.op != pg_sys::SetOperation::SETOP_NONE
            || !q.groupClause.is_null()
            || !q.havingClause.is_null()
            || !q.windowClause.is_null()
            || !q.distinctClause.is_null()
            || !q.sortClause.is_null()
            || !q.limitCount.is_null()
            || !q.limitOffset.is_null()
            || !q.lockingClause.is_null()
            || !q.withClause.is_null()
            || !q.valuesLists.is_null()
            || q.whereClause.is_null()
        {
            return Err(
                "the subquery has GROUP BY, HAVING, DISTINCT, ORDER BY, LIMIT, a window, WITH or no WHERE".into()
            );
        }
        // The outer SELECT must not show the derived table's columns.
        for t in nodes(outer.targetList) {
            let v = (*(t as *mut pg_sys::ResTarget)).val;
            if tag(v) == pg_sys::NodeTag::T_ColumnRef && names((*(v as *mut pg_sys::ColumnRef)).fields) == ["*"] {
                return Err("SELECT * would show the columns of the derived table".into());
            }
        }
        let inner = tables(q.fromClause)?;
        if inner.iter().any(Option::is_none) {
            return Err("the subquery's FROM has something other than plain tables".into());
        }
        let outer_tables = tables(outer.fromClause)?;
        let column_text = |c: *mut pg_sys::ColumnRef| -> Result<&str, Why> {
            let (a, b) = dotted(text, offset((*c).location)?).ok_or("a column's text")?;
            Ok(&text.sql[a..b])
        };
        let is_inner =
            |c: *mut pg_sys::ColumnRef| -> Result<bool, Why> { Ok(resolve(&names((*c).fields), &inner)?.is_some()) };

        // The target: one aggregate over inner columns, and constants.
        let targets = nodes(q.targetList);
        let [target] = targets.as_slice() else { return Err("the subquery has several targets".into()) };
        let target = *target as *mut pg_sys::ResTarget;
        let mut tc = Contents::default();
        walk((*target).val, &mut tc, true)?;
        let aggregates: Vec<&(*mut pg_sys::FuncCall, String)> =
            tc.calls.iter().filter(|(_, name)| empty_value(name).is_some()).collect();
        let [(agg, agg_name)] = aggregates.as_slice() else {
            return Err("the subquery's target is not exactly one sum/avg/min/max/count".into());
        };
        if (**agg).agg_within_group {
            return Err("an ordered-set aggregate".into());
        }
        let mut in_agg = Contents::default();
        walk(*agg as _, &mut in_agg, true)?;
        if tc.columns.len() != in_agg.columns.len() {
            return Err("the subquery's target uses a column outside its aggregate".into());
        }
        for &c in &tc.columns {
            if !is_inner(c)? {
                return Err("the aggregate uses a column of the outer query".into());
            }
        }
        // The subquery's WHERE: local conjuncts, and correlation keys inner = outer.
        let sub_conjuncts = and_args(q.whereClause);
        let mut keys: Vec<(*mut pg_sys::ColumnRef, *mut pg_sys::ColumnRef)> = Vec::new(); // (inner, outer)
        let mut local = Vec::new();
        let mut calls = tc.calls.iter().map(|(_, name)| name.clone()).collect::<Vec<_>>();
        for (k, &c) in sub_conjuncts.iter().enumerate() {
            let mut cc = Contents::default();
            walk(c, &mut cc, true)?;
            calls.extend(cc.calls.iter().map(|(_, name)| name.clone()));
            let mut inner_refs = Vec::new();
            let mut outer_refs = Vec::new();
            for &col in &cc.columns {
                if is_inner(col)? { inner_refs.push(col) } else { outer_refs.push(col) }
            }
            if outer_refs.is_empty() {
                local.push(k);
                continue;
            }
            let e = c as *mut pg_sys::A_Expr;
            let equality = tag(c) == pg_sys::NodeTag::T_A_Expr
                && (*e).kind == pg_sys::A_Expr_Kind::AEXPR_OP
                && names((*e).name) == ["="]
                && tag((*e).lexpr) == pg_sys::NodeTag::T_ColumnRef
                && tag((*e).rexpr) == pg_sys::NodeTag::T_ColumnRef
                && inner_refs.len() == 1
                && outer_refs.len() == 1;
            if !equality {
                return Err("the subquery refers to the outer query outside a top-level equality of columns".into());
            }
            keys.push((inner_refs[0], outer_refs[0]));
        }
        if keys.is_empty() {
            return Err("the subquery is not correlated (PostgreSQL already runs it once)".into());
        }
        // Outer references must be to the enclosing SELECT's tables.
        let mut holders = Vec::new();
        for &(_, o) in &keys {
            match resolve(&names((*o).fields), &outer_tables)? {
                Some(t) => holders.push(t),
                None => return Err("the subquery refers to a query further out than the enclosing one".into()),
            }
        }
        volatile_free(&calls)?;

        // Text.
        let spans = |list: &[*mut pg_sys::Node], open: &str, sep: Option<Tok>, closers: &[&str]| {
            let starts = list.iter().map(|&n| offset(pg_sys::exprLocation(n))).collect::<Result<Vec<_>, Why>>()?;
            text.list_spans(&starts, open, sep, closers)
                .ok_or_else(|| format!("the text around a {open} clause is not understood"))
        };
        let outer_spans = spans(conjuncts, "where", None, &AFTER_WHERE)?;
        let sub_spans = spans(&sub_conjuncts, "where", None, &AFTER_WHERE)?;
        let from_starts = inner.iter().flatten().map(|t| t.location).collect::<Vec<_>>();
        let from_spans = text
            .list_spans(&from_starts, "from", Some(Tok::Comma), &["where"])
            .ok_or("the subquery's FROM text is not understood")?;
        let inner_from = &text.sql[from_spans[0].0..from_spans[from_spans.len() - 1].1];
        let target_span = {
            let start = offset(pg_sys::exprLocation((*target).val))?;
            let span = text.list_spans(&[start], "select", Some(Tok::Comma), &["from"]).ok_or("the target's text")?[0];
            if (*target).name.is_null() {
                span
            } else {
                // Without its `[AS] name`.
                let last = text.toks.iter().rposition(|t| t.end <= span.1).ok_or("the target's name")?;
                let cut = if last > 0 && text.is_word(last - 1, "as") { last - 1 } else { last };
                (span.0, text.toks[cut - 1].end)
            }
        };
        let agg_span = text.call_at(offset((**agg).location)?).ok_or("the aggregate's text")?;
        let sublink_span = text.parens_at(offset((*sublink).location)?).ok_or("the subquery's text")?;

        let alias = format!("_rv_sq{n}");
        let empty = empty_value(agg_name).flatten();
        let agg_ref = match empty {
            Some(zero) => format!("COALESCE({alias}._rv_agg, {zero})"),
            None => format!("{alias}._rv_agg"),
        };
        let target_text = &text.sql[target_span.0..target_span.1];
        let new_target =
            format!("{}{agg_ref}{}", &text.sql[target_span.0..agg_span.0], &text.sql[agg_span.1..target_span.1]);
        let inner_keys: Vec<&str> = keys.iter().map(|&(i, _)| column_text(i)).collect::<Result<_, _>>()?;
        let outer_keys: Vec<&str> = keys.iter().map(|&(_, o)| column_text(o)).collect::<Result<_, _>>()?;
        let key_list = |cols: &[&str]| cols.join(", ");
        let on = outer_keys
            .iter()
            .enumerate()
            .map(|(k, o)| format!("{o} = {alias}._rv_k{}", k + 1))
            .collect::<Vec<_>>()
            .join(" AND ");

        // The outer table holding every key, when there is one: restrict the pre-aggregation to its keys.
        let holder = holders.first().copied().filter(|h| holders.iter().all(|x| x == h));
        let holder_table = holder.and_then(|h| outer_tables[h].as_ref());
        let restriction = match holder_table {
            Some(t) => {
                let mut filters = Vec::new();
                for (k, &c) in conjuncts.iter().enumerate() {
                    if k == i {
                        continue;
                    }
                    let mut cc = Contents::default();
                    let only_t = walk(c, &mut cc, true).is_ok()
                        && cc.sublinks.is_empty()
                        && !cc.columns.is_empty()
                        && cc.columns.iter().all(|&col| {
                            matches!(resolve(&names((*col).fields), &outer_tables), Ok(Some(x)) if Some(x) == holder)
                        });
                    if only_t {
                        filters.push(&text.sql[outer_spans[k].0..outer_spans[k].1]);
                    }
                }
                if filters.is_empty() {
                    None
                } else {
                    let (a, b) = table_span(text, t).ok_or("the outer table's text")?;
                    let lhs = if inner_keys.len() == 1 {
                        inner_keys[0].to_owned()
                    } else {
                        format!("({})", key_list(&inner_keys))
                    };
                    Some(format!(
                        "{lhs} IN (SELECT {} FROM {} WHERE {})",
                        key_list(&outer_keys),
                        &text.sql[a..b],
                        filters.join(" AND ")
                    ))
                }
            }
            None => None,
        };
        let mut filters: Vec<&str> = local.iter().map(|&k| &text.sql[sub_spans[k].0..sub_spans[k].1]).collect();
        if let Some(r) = &restriction {
            filters.push(r);
        }
        let derived = format!(
            "(SELECT {}, {} AS _rv_agg FROM {inner_from}{} GROUP BY {}) AS {alias}",
            inner_keys.iter().enumerate().map(|(k, c)| format!("{c} AS _rv_k{}", k + 1)).collect::<Vec<_>>().join(", "),
            &text.sql[agg_span.0..agg_span.1],
            if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) },
            key_list(&inner_keys),
        );
        let mut edits = vec![(sublink_span.0, sublink_span.1, format!("({new_target})"))];
        let how = if empty.is_some() {
            // count: rows without a match keep count 0, so the outer rows must all stay.
            let t = holder_table.ok_or("count needs its correlation keys in one table of the outer FROM")?;
            let (_, end) = table_span(text, t).ok_or("the outer table's text")?;
            edits.push((end, end, format!(" LEFT JOIN {derived} ON {on}")));
            format!("LEFT JOIN on {} with COALESCE(…, 0)", t.visible)
        } else {
            let where_at = text.keyword_before(outer_spans[0].0, "where").ok_or("the outer WHERE's text")?;
            edits.push((outer_spans[i].1, outer_spans[i].1, format!(" AND {on}")));
            edits.push((where_at, where_at, format!(", {derived}\n")));
            "join".to_owned()
        };
        let note = format!(
            "{target_text} decorrelated into {alias} ({how}, grouped by {}{})",
            key_list(&inner_keys),
            if restriction.is_some() { ", restricted to the outer keys" } else { "" }
        );
        Ok(Plan { edits, note })
    }
}

/// `Err` when one of the functions named may be volatile (then running it once per group is not the same).
fn volatile_free(calls: &[String]) -> Result<(), Why> {
    if calls.is_empty() {
        return Ok(());
    }
    let volatile = Spi::get_one_with_args::<Vec<String>>(
        "SELECT array_agg(DISTINCT proname::text) FROM pg_proc WHERE proname = ANY($1) AND provolatile = 'v'",
        &[calls.to_vec().into()],
    )
    .map_err(|e| e.to_string())?;
    match volatile {
        Some(v) if !v.is_empty() => Err(format!("the subquery calls a volatile function ({})", v.join(", "))),
        _ => Ok(()),
    }
}

// `enable_timeout_after`/`disable_timeout` of PostgreSQL's `utils/timeout.h` (not in pgrx's bindings).
unsafe extern "C-unwind" {
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
}
/// `STATEMENT_TIMEOUT` of `TimeoutId` (the fourth since PostgreSQL 9.3).
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;

/// Runs `f` (SPI work) in a subtransaction cancelled after `timeout_ms` as a statement timeout would cancel it;
/// `Err(message)` on any error. The caller's own `statement_timeout` restarts afterwards.
#[allow(ffi_unwind_calls)] // each call is inside pg_guard_ffi_boundary
fn with_timeout<T>(timeout_ms: i32, f: impl FnOnce() -> T) -> Result<T, String> {
    use pg_sys::submodules::ffi::pg_guard_ffi_boundary as guard;
    // SAFETY: the timeout module's documented API; the timer is disabled on every path before returning.
    unsafe { guard(|| enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms.max(1))) };
    let out = crate::advisor::in_rolled_back_subtransaction(f);
    // SAFETY: as above; StatementTimeout is the GUC's current value.
    unsafe {
        guard(|| disable_timeout(STATEMENT_TIMEOUT, false));
        if pg_sys::StatementTimeout > 0 {
            guard(|| enable_timeout_after(STATEMENT_TIMEOUT, pg_sys::StatementTimeout));
        }
    }
    out
}

/// Plan cost of `sql` (planned, not run).
pub(crate) fn plan_cost(sql: &str) -> f64 {
    // SAFETY: `with_planned` passes a valid PlannedStmt.
    crate::explain::with_planned(sql, |_, stmt| unsafe { (*(*stmt).planTree).total_cost })
}

/// Server-side execution time of `sql`, or `None` when it did not finish within `timeout_ms`.
fn run_ms(sql: &str, timeout_ms: i32) -> Result<Option<f64>, String> {
    let explain = format!("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}");
    match with_timeout(timeout_ms, || {
        crate::hooks::suppressed(|| Spi::get_one::<pgrx::Json>(&explain).map(|j| j.map(|j| j.0)))
    }) {
        Ok(Ok(Some(json))) => Ok(json[0]["Execution Time"].as_f64()),
        Ok(Ok(None)) => Err("EXPLAIN returned nothing".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) if e.contains("statement timeout") => Ok(None),
        Err(e) => Err(e),
    }
}

/// True when `a` and `b` return the same rows (as multisets), `None` when that could not be decided in time.
pub(crate) fn same_results(a: &str, b: &str, timeout_ms: i32) -> Result<Option<bool>, String> {
    let sql = format!(
        "SELECT NOT EXISTS (({a}) EXCEPT ALL ({b})) AND NOT EXISTS (({b}) EXCEPT ALL ({a}))",
        a = a.trim().trim_end_matches(';'),
        b = b.trim().trim_end_matches(';')
    );
    match with_timeout(timeout_ms, || crate::hooks::suppressed(|| Spi::get_one::<bool>(&sql))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) if e.contains("statement timeout") => Ok(None),
        Err(e) => Err(e),
    }
}

/// What `dag_rewrite_report` found.
struct Report {
    rewritten: Option<String>,
    status: &'static str,
    detail: String,
    cost_before: Option<f64>,
    cost_after: Option<f64>,
    ms_before: Option<f64>,
    ms_after: Option<f64>,
    results_equal: Option<bool>,
}

fn report(query: &str, timeout_ms: i32) -> Report {
    let query = query.trim().trim_end_matches(';').trim_end();
    let mut r = Report {
        rewritten: None,
        status: "unchanged",
        detail: String::new(),
        cost_before: None,
        cost_after: None,
        ms_before: None,
        ms_after: None,
        results_equal: None,
    };
    // Checks the text as PostgreSQL would (and that it is a read-only SELECT the caller may run).
    r.cost_before = Some(plan_cost(query));
    let (rewritten, notes) = match decorrelate(query) {
        Ok(x) => x,
        Err(why) => {
            r.detail = why;
            return r;
        }
    };
    r.rewritten = Some(rewritten.clone());
    match crate::advisor::in_subtransaction(|| plan_cost(&rewritten)) {
        Ok(cost) => r.cost_after = Some(cost),
        Err(e) => {
            r.status = "failed";
            r.detail = format!("the rewrite does not plan: {e}");
            return r;
        }
    }
    let notes = notes.join("; ");
    if r.cost_after >= r.cost_before {
        r.status = "not cheaper";
        r.detail = format!(
            "{notes}; the rewrite's plan costs {:.0}, the original's {:.0}",
            r.cost_after.unwrap_or(0.0),
            r.cost_before.unwrap_or(0.0)
        );
        return r;
    }
    let measured = (|| -> Result<(), String> {
        r.ms_after = run_ms(&rewritten, timeout_ms)?;
        r.ms_before = run_ms(query, timeout_ms)?;
        if r.ms_after.is_some() && r.ms_before.is_some() {
            r.results_equal = same_results(query, &rewritten, timeout_ms.saturating_mul(2))?;
        }
        Ok(())
    })();
    let ms = |m: Option<f64>| m.map_or_else(|| format!("over {timeout_ms} ms"), |m| format!("{m:.1} ms"));
    let figures = format!(
        "{notes}; plan cost {:.0} -> {:.0}, run {} -> {}",
        r.cost_before.unwrap_or(0.0),
        r.cost_after.unwrap_or(0.0),
        ms(r.ms_before),
        ms(r.ms_after)
    );
    (r.status, r.detail) = match (measured, r.ms_before, r.ms_after, r.results_equal) {
        (Err(e), ..) => ("failed", format!("{figures}; {e}")),
        (_, _, None, _) => ("not faster", format!("{figures}: the rewrite did not finish")),
        (_, Some(b), Some(a), _) if a >= b => ("not faster", figures),
        (_, Some(_), Some(_), Some(true)) => ("verified", format!("{figures}; results equal")),
        (_, Some(_), Some(_), Some(false)) => ("results differ", format!("{figures}; RESULTS DIFFER: not suggested")),
        (_, Some(_), Some(_), None) => ("unverified", format!("{figures}; results not compared within the time")),
        (_, None, Some(_), _) => {
            ("unverified", format!("{figures}; the original did not finish, so the results were not compared"))
        }
    };
    r
}

/// Decorrelates the query's correlated scalar aggregate subqueries (see `docs/advisor.md`) and returns the
/// rewrite when its plan is cheaper, a measured run faster and its result set equal to the original's (each run
/// limited to `ruvector.rewrite_timeout_ms`… here 60 s); otherwise the query unchanged, with a NOTICE saying why.
/// Advice only: nothing is applied.
#[pg_extern]
fn dag_rewrite_query(query_text: &str) -> String {
    let r = report(query_text, 60_000);
    if r.status == "verified" {
        notice!("ruvector_dag: rewrite verified: {}", r.detail);
        return r.rewritten.unwrap_or_else(|| query_text.to_owned());
    }
    notice!("ruvector_dag: query unchanged ({}): {}", r.status, r.detail);
    query_text.to_owned()
}

/// The decorrelating rewrite of `query_text` and how it was judged: `status` is `verified` (cheaper plan,
/// faster run, equal results), `unverified` (cheaper and faster, results not compared: the original ran past
/// `timeout_ms`), `not cheaper`, `not faster`, `results differ`, `failed` or `unchanged` (nothing to rewrite:
/// `detail` says why). Runs both queries (each within `timeout_ms`).
#[pg_extern]
#[allow(clippy::type_complexity)]
fn dag_rewrite_report(
    query_text: &str,
    timeout_ms: default!(i32, 60000),
) -> TableIterator<
    'static,
    (
        name!(rewritten_query, Option<String>),
        name!(status, String),
        name!(detail, String),
        name!(cost_before, Option<f64>),
        name!(cost_after, Option<f64>),
        name!(ms_before, Option<f64>),
        name!(ms_after, Option<f64>),
        name!(results_equal, Option<bool>),
    ),
> {
    if !(1..=3_600_000).contains(&timeout_ms) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("timeout_ms {timeout_ms} is out of range: expected 1..=3600000"),
        );
    }
    let r = report(query_text, timeout_ms);
    TableIterator::once((
        r.rewritten,
        r.status.to_owned(),
        r.detail,
        r.cost_before,
        r.cost_after,
        r.ms_before,
        r.ms_after,
        r.results_equal,
    ))
}
