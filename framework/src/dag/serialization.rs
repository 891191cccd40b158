//! JSON and compact binary encodings of a [`QueryDag`]. Both round-trip exactly (`assert_eq!(dag, restored)`).
//!
//! **JSON** (`to_json`/`from_json`) is for people and tools:
//! `{"format":"ruvector-dag","version":1,"nodes":[{"id":0,"op":{"kind":"SeqScan","table":"users"},...}],
//! "edges":[[0,1]]}`. Floats are written shortest-exact and parsed exactly; a non-finite estimate cannot be
//! written (JSON has no NaN) and is reported.
//!
//! **Binary** (`to_bytes`/`from_bytes`) is for storage and the network, version 1:
//!
//! ```text
//! magic "RVDG" | version u8 = 1 | node count (varint) | edge count (varint)
//! nodes:  id (varint) | operator kind u8 | operator fields | info
//! edges:  input position (varint) | consumer position (varint)     positions = insertion order
//! CRC-32 (IEEE, little endian) of everything before it
//! ```
//!
//! Strings are a varint length and UTF-8 bytes, `Option`s a 0/1 byte, floats 8 bytes little endian (bit-exact,
//! NaN included). Decoding checks the checksum first, never allocates more than the input could describe
//! (every count is bounded by the bytes left), and reports corrupt or truncated input as
//! [`Error::Binary`] — it never panics.

use super::operator_node::{
    Actuals, Estimates, JoinType, ModifyOperation, NodeInfo, OperatorKind, OperatorNode, Relationship,
};
use super::query_dag::QueryDag;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"RVDG";
const BINARY_VERSION: u8 = 1;
const JSON_FORMAT: &str = "ruvector-dag";
const JSON_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct JsonNode {
    id: usize,
    op: OperatorNode,
    #[serde(default, skip_serializing_if = "is_default_info")]
    info: NodeInfo,
}

fn is_default_info(info: &NodeInfo) -> bool {
    *info == NodeInfo::default()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDag {
    format: String,
    version: u32,
    nodes: Vec<JsonNode>,
    edges: Vec<(usize, usize)>,
}

impl QueryDag {
    /// Compact JSON (see the [module docs](self) for the layout).
    ///
    /// # Errors
    /// [`Error::NonFinite`] if an estimate or actual is NaN or infinite.
    pub fn to_json(&self) -> Result<String> {
        self.check_finite()?;
        serde_json::to_string(&self.json_view()).map_err(|e| Error::Json(e.to_string()))
    }

    /// Indented JSON, otherwise as [`to_json`](Self::to_json).
    pub fn to_json_pretty(&self) -> Result<String> {
        self.check_finite()?;
        serde_json::to_string_pretty(&self.json_view()).map_err(|e| Error::Json(e.to_string()))
    }

    fn json_view(&self) -> JsonDag {
        JsonDag {
            format: JSON_FORMAT.to_owned(),
            version: JSON_VERSION,
            nodes: self.slots.iter().map(|s| JsonNode { id: s.id, op: s.op.clone(), info: s.info.clone() }).collect(),
            edges: self.edges().collect(),
        }
    }

    fn check_finite(&self) -> Result<()> {
        for s in &self.slots {
            let e = &s.info.estimates;
            let mut fields = vec![("startup_cost", e.startup_cost), ("total_cost", e.total_cost), ("rows", e.rows)];
            if let Some(a) = &s.info.actual {
                fields.extend([
                    ("actual.startup_ms", a.startup_ms),
                    ("actual.total_ms", a.total_ms),
                    ("actual.rows", a.rows),
                    ("actual.loops", a.loops),
                ]);
            }
            if let Some(&(field, value)) = fields.iter().find(|(_, v)| !v.is_finite()) {
                return Err(Error::NonFinite { node: s.id, field, value });
            }
        }
        Ok(())
    }

    /// Parses [`to_json`](Self::to_json) output.
    ///
    /// # Errors
    /// [`Error::Json`] for malformed JSON or another format/version; the structural errors of
    /// [`try_from_parts`](Self::try_from_parts) for invalid graphs.
    pub fn from_json(json: &str) -> Result<Self> {
        let doc: JsonDag = serde_json::from_str(json).map_err(|e| Error::Json(e.to_string()))?;
        if doc.format != JSON_FORMAT {
            return Err(Error::Json(format!("format is `{}`, expected `{JSON_FORMAT}`", doc.format)));
        }
        if doc.version != JSON_VERSION {
            return Err(Error::Json(format!(
                "version {} is not supported (this build reads {JSON_VERSION})",
                doc.version
            )));
        }
        QueryDag::try_from_parts(doc.nodes.into_iter().map(|n| (n.id, n.op, n.info)), doc.edges)
    }

    /// Compact versioned binary encoding (see the [module docs](self)).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(16 + self.node_count() * 48 + self.edge_count() * 4));
        w.0.extend_from_slice(MAGIC);
        w.0.push(BINARY_VERSION);
        w.varint(self.node_count() as u64);
        w.varint(self.edge_count() as u64);
        for s in &self.slots {
            w.varint(s.id as u64);
            w.op(&s.op);
            w.info(&s.info);
        }
        for (slot, s) in self.slots.iter().enumerate() {
            for &c in &s.children {
                w.varint(u64::from(c));
                w.varint(slot as u64);
            }
        }
        let crc = crc32fast::hash(&w.0);
        w.0.extend_from_slice(&crc.to_le_bytes());
        w.0
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output.
    ///
    /// # Errors
    /// [`Error::Binary`] for a wrong magic, unknown version, checksum mismatch, truncation or invalid field;
    /// the structural errors of [`try_from_parts`](Self::try_from_parts) for invalid graphs.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let header = MAGIC.len() + 1;
        if bytes.len() < header + 4 {
            return Err(bin(format!("{} bytes is too short for a DAG (at least {})", bytes.len(), header + 4)));
        }
        if &bytes[..4] != MAGIC {
            return Err(bin("not a ruvector DAG (bad magic)"));
        }
        if bytes[4] != BINARY_VERSION {
            return Err(bin(format!("version {} is not supported (this build reads {BINARY_VERSION})", bytes[4])));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(bin(format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")));
        }
        decode_body(&body[header..])
    }
}

/// Decodes the part after magic and version, before the checksum.
pub(crate) fn decode_body(body: &[u8]) -> Result<QueryDag> {
    let mut r = Reader { buf: body, pos: 0 };
    // A node takes at least 1 (id) + 1 (kind) + 1 (info flags) + 24 (floats) + 1 (width) bytes; an edge 2.
    let nodes = r.count(28, "node count")?;
    let edges = r.count(2, "edge count")?;
    let mut parts = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        let id = r.usize("node id")?;
        let op = r.op()?;
        let info = r.info()?;
        parts.push((id, op, info));
    }
    let ids: Vec<usize> = parts.iter().map(|p| p.0).collect();
    let mut edge_list = Vec::with_capacity(edges);
    for _ in 0..edges {
        let from = r.position(nodes)?;
        let to = r.position(nodes)?;
        edge_list.push((ids[from], ids[to]));
    }
    if r.pos != body.len() {
        return Err(bin(format!("{} trailing bytes after the last edge", body.len() - r.pos)));
    }
    QueryDag::try_from_parts(parts, edge_list)
}

fn bin(msg: impl Into<String>) -> Error {
    Error::Binary(msg.into())
}

struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: &Option<String>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
        }
    }

    fn strs(&mut self, v: &[String]) {
        self.varint(v.len() as u64);
        for s in v {
            self.str(s);
        }
    }

    fn op(&mut self, op: &OperatorNode) {
        use OperatorNode as N;
        self.0.push(op.kind() as u8);
        match op {
            N::SeqScan { table } => self.str(table),
            N::SampleScan { table, method } => {
                self.str(table);
                self.str(method);
            }
            N::IndexScan { table, index, index_cond } | N::IndexOnlyScan { table, index, index_cond } => {
                self.str(table);
                self.str(index);
                self.opt_str(index_cond);
            }
            N::HnswScan { table, index, order_by } | N::IvfFlatScan { table, index, order_by } => {
                self.str(table);
                self.str(index);
                self.opt_str(order_by);
            }
            N::BitmapIndexScan { index, index_cond } => {
                self.str(index);
                self.opt_str(index_cond);
            }
            N::BitmapScan { table, recheck_cond } => {
                self.str(table);
                self.opt_str(recheck_cond);
            }
            N::TidScan { table, tid_cond } | N::TidRangeScan { table, tid_cond } => {
                self.str(table);
                self.opt_str(tid_cond);
            }
            N::SubqueryScan { alias: s }
            | N::FunctionScan { function: s }
            | N::TableFuncScan { function: s }
            | N::CteScan { cte: s }
            | N::NamedTuplestoreScan { name: s }
            | N::WorkTableScan { cte: s }
            | N::Filter { predicate: s }
            | N::Other { node_type: s } => self.str(s),
            N::ForeignScan { table } => self.opt_str(table),
            N::CustomScan { provider, table } => {
                self.str(provider);
                self.opt_str(table);
            }
            N::NestedLoop { join_type } => self.0.push(*join_type as u8),
            N::HashJoin { join_type, hash_cond: cond } | N::MergeJoin { join_type, merge_cond: cond } => {
                self.0.push(*join_type as u8);
                self.opt_str(cond);
            }
            N::GroupAggregate { group_keys: keys }
            | N::HashAggregate { group_keys: keys }
            | N::MixedAggregate { group_keys: keys }
            | N::Group { keys }
            | N::Sort { keys }
            | N::MergeAppend { sort_keys: keys } => self.strs(keys),
            N::IncrementalSort { keys, presorted_keys } => {
                self.strs(keys);
                self.strs(presorted_keys);
            }
            N::Result { one_time_filter: s } | N::Memoize { cache_key: s } => self.opt_str(s),
            N::Union { all } => self.bool(*all),
            N::Intersect { all, hashed } | N::Except { all, hashed } => {
                self.bool(*all);
                self.bool(*hashed);
            }
            N::ModifyTable { operation, table } => {
                self.0.push(*operation as u8);
                self.str(table);
            }
            N::Gather { workers_planned } | N::GatherMerge { workers_planned } => {
                self.varint(u64::from(*workers_planned));
            }
            N::BitmapAnd
            | N::BitmapOr
            | N::ValuesScan
            | N::Hash
            | N::Aggregate
            | N::WindowAgg
            | N::ProjectSet
            | N::Append
            | N::RecursiveUnion
            | N::Materialize
            | N::Limit
            | N::Unique
            | N::LockRows => {}
        }
    }

    fn info(&mut self, info: &NodeInfo) {
        let flags = u8::from(info.filter.is_some())
            | u8::from(info.relationship.is_some()) << 1
            | u8::from(info.subplan.is_some()) << 2
            | u8::from(info.parallel_aware) << 3
            | u8::from(info.actual.is_some()) << 4;
        self.0.push(flags);
        let e = &info.estimates;
        self.f64(e.startup_cost);
        self.f64(e.total_cost);
        self.f64(e.rows);
        self.varint(u64::from(e.width));
        if let Some(f) = &info.filter {
            self.str(f);
        }
        if let Some(r) = info.relationship {
            self.0.push(r as u8);
        }
        if let Some(s) = &info.subplan {
            self.str(s);
        }
        if let Some(a) = &info.actual {
            self.f64(a.startup_ms);
            self.f64(a.total_ms);
            self.f64(a.rows);
            self.f64(a.loops);
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        let b =
            *self.buf.get(self.pos).ok_or_else(|| bin(format!("truncated: {what} expected at byte {}", self.pos)))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self, what: &str) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(bin(format!("{what}: varint overflows 64 bits")));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bin(format!("{what}: varint longer than 10 bytes")))
    }

    fn usize(&mut self, what: &str) -> Result<usize> {
        let v = self.varint(what)?;
        usize::try_from(v).map_err(|_| bin(format!("{what} {v} does not fit in usize")))
    }

    /// A count of items that take at least `min_bytes` each: bounded by what the input can hold.
    fn count(&mut self, min_bytes: usize, what: &str) -> Result<usize> {
        let n = self.usize(what)?;
        if n > self.remaining() / min_bytes.max(1) {
            return Err(bin(format!("{what} {n} exceeds what the remaining {} bytes can hold", self.remaining())));
        }
        Ok(n)
    }

    fn position(&mut self, nodes: usize) -> Result<usize> {
        let p = self.usize("edge endpoint")?;
        if p >= nodes {
            return Err(bin(format!("edge endpoint {p} is out of range (the DAG has {nodes} nodes)")));
        }
        Ok(p)
    }

    fn f64(&mut self, what: &str) -> Result<f64> {
        let end = self.pos + 8;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| bin(format!("truncated: {what} expected at byte {}", self.pos)))?;
        self.pos = end;
        Ok(f64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    fn bool(&mut self, what: &str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(bin(format!("{what}: {b} is not a boolean (0 or 1)"))),
        }
    }

    fn str(&mut self, what: &str) -> Result<String> {
        let len = self.count(1, what)?;
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        String::from_utf8(bytes.to_vec()).map_err(|_| bin(format!("{what} is not valid UTF-8")))
    }

    fn opt_str(&mut self, what: &str) -> Result<Option<String>> {
        Ok(if self.bool(what)? { Some(self.str(what)?) } else { None })
    }

    fn strs(&mut self, what: &str) -> Result<Vec<String>> {
        let n = self.count(1, what)?;
        (0..n).map(|_| self.str(what)).collect()
    }

    fn join_type(&mut self) -> Result<JoinType> {
        let b = self.u8("join type")?;
        JoinType::ALL.get(b as usize).copied().ok_or_else(|| bin(format!("unknown join type {b}")))
    }

    fn op(&mut self) -> Result<OperatorNode> {
        use OperatorKind as K;
        use OperatorNode as N;
        let tag = self.u8("operator kind")?;
        let kind = K::from_index(tag as usize).ok_or_else(|| bin(format!("unknown operator kind {tag}")))?;
        Ok(match kind {
            K::SeqScan => N::SeqScan { table: self.str("table")? },
            K::SampleScan => N::SampleScan { table: self.str("table")?, method: self.str("method")? },
            K::IndexScan => N::IndexScan {
                table: self.str("table")?,
                index: self.str("index")?,
                index_cond: self.opt_str("index_cond")?,
            },
            K::IndexOnlyScan => N::IndexOnlyScan {
                table: self.str("table")?,
                index: self.str("index")?,
                index_cond: self.opt_str("index_cond")?,
            },
            K::HnswScan => N::HnswScan {
                table: self.str("table")?,
                index: self.str("index")?,
                order_by: self.opt_str("order_by")?,
            },
            K::IvfFlatScan => N::IvfFlatScan {
                table: self.str("table")?,
                index: self.str("index")?,
                order_by: self.opt_str("order_by")?,
            },
            K::BitmapIndexScan => {
                N::BitmapIndexScan { index: self.str("index")?, index_cond: self.opt_str("index_cond")? }
            }
            K::BitmapScan => N::BitmapScan { table: self.str("table")?, recheck_cond: self.opt_str("recheck_cond")? },
            K::BitmapAnd => N::BitmapAnd,
            K::BitmapOr => N::BitmapOr,
            K::TidScan => N::TidScan { table: self.str("table")?, tid_cond: self.opt_str("tid_cond")? },
            K::TidRangeScan => N::TidRangeScan { table: self.str("table")?, tid_cond: self.opt_str("tid_cond")? },
            K::SubqueryScan => N::SubqueryScan { alias: self.str("alias")? },
            K::FunctionScan => N::FunctionScan { function: self.str("function")? },
            K::TableFuncScan => N::TableFuncScan { function: self.str("function")? },
            K::ValuesScan => N::ValuesScan,
            K::CteScan => N::CteScan { cte: self.str("cte")? },
            K::NamedTuplestoreScan => N::NamedTuplestoreScan { name: self.str("name")? },
            K::WorkTableScan => N::WorkTableScan { cte: self.str("cte")? },
            K::ForeignScan => N::ForeignScan { table: self.opt_str("table")? },
            K::CustomScan => N::CustomScan { provider: self.str("provider")?, table: self.opt_str("table")? },
            K::NestedLoop => N::NestedLoop { join_type: self.join_type()? },
            K::HashJoin => N::HashJoin { join_type: self.join_type()?, hash_cond: self.opt_str("hash_cond")? },
            K::MergeJoin => N::MergeJoin { join_type: self.join_type()?, merge_cond: self.opt_str("merge_cond")? },
            K::Hash => N::Hash,
            K::Aggregate => N::Aggregate,
            K::GroupAggregate => N::GroupAggregate { group_keys: self.strs("group_keys")? },
            K::HashAggregate => N::HashAggregate { group_keys: self.strs("group_keys")? },
            K::MixedAggregate => N::MixedAggregate { group_keys: self.strs("group_keys")? },
            K::Group => N::Group { keys: self.strs("keys")? },
            K::WindowAgg => N::WindowAgg,
            K::Sort => N::Sort { keys: self.strs("keys")? },
            K::IncrementalSort => {
                N::IncrementalSort { keys: self.strs("keys")?, presorted_keys: self.strs("presorted_keys")? }
            }
            K::Filter => N::Filter { predicate: self.str("predicate")? },
            K::Result => N::Result { one_time_filter: self.opt_str("one_time_filter")? },
            K::ProjectSet => N::ProjectSet,
            K::Append => N::Append,
            K::MergeAppend => N::MergeAppend { sort_keys: self.strs("sort_keys")? },
            K::Union => N::Union { all: self.bool("all")? },
            K::Intersect => N::Intersect { all: self.bool("all")?, hashed: self.bool("hashed")? },
            K::Except => N::Except { all: self.bool("all")?, hashed: self.bool("hashed")? },
            K::RecursiveUnion => N::RecursiveUnion,
            K::Materialize => N::Materialize,
            K::Memoize => N::Memoize { cache_key: self.opt_str("cache_key")? },
            K::Limit => N::Limit,
            K::Unique => N::Unique,
            K::LockRows => N::LockRows,
            K::ModifyTable => {
                let b = self.u8("operation")?;
                let operation = ModifyOperation::ALL
                    .get(b as usize)
                    .copied()
                    .ok_or_else(|| bin(format!("unknown modify operation {b}")))?;
                N::ModifyTable { operation, table: self.str("table")? }
            }
            K::Gather => N::Gather { workers_planned: self.u32("workers_planned")? },
            K::GatherMerge => N::GatherMerge { workers_planned: self.u32("workers_planned")? },
            K::Other => N::Other { node_type: self.str("node_type")? },
        })
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let v = self.varint(what)?;
        u32::try_from(v).map_err(|_| bin(format!("{what} {v} does not fit in 32 bits")))
    }

    fn info(&mut self) -> Result<NodeInfo> {
        let flags = self.u8("info flags")?;
        if flags >> 5 != 0 {
            return Err(bin(format!("info flags {flags:#04x} has unknown bits")));
        }
        let estimates = Estimates {
            startup_cost: self.f64("startup_cost")?,
            total_cost: self.f64("total_cost")?,
            rows: self.f64("rows")?,
            width: self.u32("width")?,
        };
        let filter = if flags & 1 != 0 { Some(self.str("filter")?) } else { None };
        let relationship = if flags & 2 != 0 {
            let b = self.u8("relationship")?;
            Some(Relationship::ALL.get(b as usize).copied().ok_or_else(|| bin(format!("unknown relationship {b}")))?)
        } else {
            None
        };
        let subplan = if flags & 4 != 0 { Some(self.str("subplan")?) } else { None };
        let actual = if flags & 16 != 0 {
            Some(Actuals {
                startup_ms: self.f64("actual startup")?,
                total_ms: self.f64("actual total")?,
                rows: self.f64("actual rows")?,
                loops: self.f64("actual loops")?,
            })
        } else {
            None
        };
        Ok(NodeInfo { estimates, filter, relationship, subplan, parallel_aware: flags & 8 != 0, actual })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QueryDag {
        let mut dag = QueryDag::new();
        dag.add_node_with(
            10,
            OperatorNode::IndexScan { table: "users".into(), index: "users_pkey".into(), index_cond: None },
            NodeInfo {
                estimates: Estimates { startup_cost: 0.29, total_cost: 8.31, rows: 1.0, width: 244 },
                filter: Some("(name ~~ 'a%'::text)".into()),
                relationship: Some(Relationship::Outer),
                subplan: None,
                parallel_aware: true,
                actual: Some(Actuals { startup_ms: 0.01, total_ms: 0.02, rows: 1.0, loops: 3.0 }),
            },
        );
        dag.add_node(20, OperatorNode::Sort { keys: vec!["name".into(), "id DESC".into()] });
        dag.add_node(5, OperatorNode::Gather { workers_planned: 2 });
        dag.add_edge(10, 20).unwrap();
        dag.add_edge(20, 5).unwrap();
        dag
    }

    #[test]
    fn json_round_trip() {
        let dag = sample();
        let json = dag.to_json().unwrap();
        assert!(json.starts_with(r#"{"format":"ruvector-dag","version":1,"#), "{json}");
        assert_eq!(QueryDag::from_json(&json).unwrap(), dag);
        assert_eq!(QueryDag::from_json(&dag.to_json_pretty().unwrap()).unwrap(), dag);
    }

    #[test]
    fn binary_round_trip() {
        let dag = sample();
        let bytes = dag.to_bytes();
        assert_eq!(&bytes[..4], b"RVDG");
        assert_eq!(QueryDag::from_bytes(&bytes).unwrap(), dag);
        assert!(bytes.len() < dag.to_json().unwrap().len() / 2, "binary {} bytes", bytes.len());
    }

    #[test]
    fn json_rejects_non_finite() {
        let mut dag = sample();
        dag.info_mut(20).unwrap().estimates.rows = f64::NAN;
        let err = dag.to_json().unwrap_err();
        assert!(matches!(err, Error::NonFinite { node: 20, field: "rows", .. }), "{err}");
        // The binary format keeps it bit for bit.
        let back = QueryDag::from_bytes(&dag.to_bytes()).unwrap();
        assert!(back.info(20).unwrap().estimates.rows.is_nan());
    }

    #[test]
    fn json_rejects_other_formats_and_versions() {
        let json = sample().to_json().unwrap();
        let v2 = json.replace(r#""version":1"#, r#""version":2"#);
        assert!(QueryDag::from_json(&v2).unwrap_err().to_string().contains("version 2 is not supported"));
        let other = json.replace("ruvector-dag", "other");
        assert!(QueryDag::from_json(&other).unwrap_err().to_string().contains("format is `other`"));
        assert!(QueryDag::from_json("{").is_err());
    }

    #[test]
    fn binary_errors_are_specific() {
        let bytes = sample().to_bytes();
        let msg = |b: &[u8]| QueryDag::from_bytes(b).unwrap_err().to_string();
        assert!(msg(&bytes[..3]).contains("too short"));
        assert!(msg(b"XXXXX\0\0\0\0\0").contains("bad magic"));
        let mut v9 = bytes.clone();
        v9[4] = 9;
        assert!(msg(&v9).contains("version 9"));
        let mut flipped = bytes.clone();
        flipped[12] ^= 0x40;
        assert!(msg(&flipped).contains("checksum mismatch"));
        assert!(msg(&bytes[..bytes.len() - 1]).contains("checksum mismatch"));
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut body = Vec::new();
        let mut w = Writer(Vec::new());
        w.varint(u64::MAX >> 1);
        body.extend_from_slice(&w.0);
        let err = decode_body(&body).unwrap_err().to_string();
        assert!(err.contains("exceeds what the remaining"), "{err}");
    }
}
