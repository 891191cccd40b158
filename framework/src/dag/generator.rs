//! Seeded generators of realistic plan DAGs, for tests, benchmarks and demos.
//!
//! [`generate`] builds a DAG of a given [`DagShape`] with exactly the requested number of nodes, estimates that
//! compose the way a planner's do (a join's cost includes its inputs', a filter keeps a fraction of its rows),
//! and ids `0..n` in bottom-up insertion order. The same `(shape, nodes, seed)` always gives the same DAG, on
//! every platform and in every version of this crate: the generator uses its own SplitMix64 rather than a
//! general-purpose RNG whose streams may change between releases.
//!
//! ```
//! use ruvector_dag::dag::generator::{generate, DagShape};
//! let dag = generate(DagShape::BushyJoin, 100, 7);
//! assert_eq!(dag.node_count(), 100);
//! assert_eq!(dag, generate(DagShape::BushyJoin, 100, 7));
//! assert!(dag.root().is_some());
//! ```

use super::operator_node::{Estimates, JoinType, NodeInfo, OperatorNode};
use super::query_dag::QueryDag;

/// The families of plans the generator builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DagShape {
    /// One scan under a chain of unary operators (filter, sort, materialise, unique, limit).
    Chain,
    /// A left-deep join tree: each join's inner side is a base table (hash join with a `Hash` build, or a
    /// nested loop over an index scan).
    LeftDeepJoin,
    /// A balanced (bushy) tree of hash joins.
    BushyJoin,
    /// Vector search: HNSW / IVFFlat scans joined to metadata tables, several searches combined by `Append`,
    /// then sorted and limited.
    VectorSearch,
    /// A bushy join whose leaves read CTEs; each CTE is one subplan read by two scans, so the result is a DAG
    /// with shared subplans, not a tree.
    SharedSubplans,
}

impl DagShape {
    /// Every shape.
    pub const ALL: [DagShape; 5] = [
        DagShape::Chain,
        DagShape::LeftDeepJoin,
        DagShape::BushyJoin,
        DagShape::VectorSearch,
        DagShape::SharedSubplans,
    ];

    /// Short identifier (`chain`, `left_deep`, `bushy`, `vector`, `shared`).
    pub fn name(self) -> &'static str {
        match self {
            DagShape::Chain => "chain",
            DagShape::LeftDeepJoin => "left_deep",
            DagShape::BushyJoin => "bushy",
            DagShape::VectorSearch => "vector",
            DagShape::SharedSubplans => "shared",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The fewest nodes for which this shape is built as described; below it the generator builds a chain.
    pub fn min_nodes(self) -> usize {
        match self {
            DagShape::Chain => 1,
            DagShape::LeftDeepJoin => 3,
            DagShape::BushyJoin => 4,
            DagShape::VectorSearch => 7,
            DagShape::SharedSubplans => 7,
        }
    }
}

/// Builds a DAG of `shape` with exactly `nodes` nodes (none if `nodes == 0`), deterministic in `seed`.
pub fn generate(shape: DagShape, nodes: usize, seed: u64) -> QueryDag {
    let mut g =
        Gen { rng: SplitMix64(seed ^ 0x9E37_79B9_7F4A_7C15), parts: Vec::with_capacity(nodes), edges: Vec::new() };
    if nodes == 0 {
        return QueryDag::new();
    }
    let shape = if nodes < shape.min_nodes() { DagShape::Chain } else { shape };
    let root = match shape {
        DagShape::Chain => {
            let scan = g.scan();
            g.pad(scan, nodes - 1)
        }
        DagShape::LeftDeepJoin => g.left_deep(nodes),
        DagShape::BushyJoin => g.bushy(nodes, &mut |g| g.scan()),
        DagShape::VectorSearch => g.vector(nodes),
        DagShape::SharedSubplans => g.shared(nodes),
    };
    debug_assert_eq!(g.parts.len(), nodes, "{shape:?} built {} nodes for {nodes}", g.parts.len());
    debug_assert!(root < nodes);
    QueryDag::try_from_parts(g.parts, g.edges).expect("generated graphs are acyclic and well-formed")
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever, so seeded streams are the same on every
/// platform and version. The workspace's one seeded generator (plan generation, adapter initialisation, k-means++
/// seeding, tests and benches).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose state starts at `state`.
    pub fn new(state: u64) -> Self {
        SplitMix64(state)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in `0..n` (modulo bias below 2⁻⁴⁰ for the sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal (Box–Muller, cosine branch; two uniforms per value).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

struct Gen {
    rng: SplitMix64,
    parts: Vec<(usize, OperatorNode, NodeInfo)>,
    edges: Vec<(usize, usize)>,
}

const TABLES: [&str; 8] = ["lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region"];

impl Gen {
    fn est(&self, id: usize) -> Estimates {
        self.parts[id].2.estimates
    }

    fn push(&mut self, op: OperatorNode, estimates: Estimates, inputs: &[usize]) -> usize {
        let id = self.parts.len();
        self.parts.push((id, op, NodeInfo { estimates, ..NodeInfo::default() }));
        self.edges.extend(inputs.iter().map(|&c| (c, id)));
        id
    }

    fn table(&mut self) -> String {
        let i = self.rng.below(TABLES.len());
        let suffix = self.rng.below(100);
        format!("{}_{suffix}", TABLES[i])
    }

    fn scan(&mut self) -> usize {
        let rows = 10f64.powf(self.rng.range(1.0, 6.5)).round();
        let width = 8 + self.rng.below(200) as u32;
        let pages = (rows * f64::from(width) / 8192.0).ceil();
        let e = Estimates { startup_cost: 0.0, total_cost: pages + rows * 0.01, rows, width };
        let table = self.table();
        self.push(OperatorNode::SeqScan { table }, e, &[])
    }

    fn index_scan(&mut self, loops_hint: f64) -> usize {
        let rows = self.rng.range(1.0, 20.0).round();
        let e = Estimates {
            startup_cost: 0.29,
            total_cost: 0.29 + 4.0 * rows + 0.01 * loops_hint.log2().max(1.0),
            rows,
            width: 64,
        };
        let table = self.table();
        let index = format!("{table}_pkey");
        self.push(OperatorNode::IndexScan { table, index, index_cond: Some("(id = $0)".into()) }, e, &[])
    }

    /// One unary operator over `child`, with estimates derived from the child's.
    fn unary(&mut self, child: usize) -> usize {
        let c = self.est(child);
        let n_log_n = c.rows * c.rows.max(2.0).log2();
        let (op, rows, startup, own) = match self.rng.below(6) {
            0 => {
                let sel = self.rng.range(0.05, 0.9);
                (
                    OperatorNode::Filter { predicate: format!("(c{} > {})", self.rng.below(9), self.rng.below(1000)) },
                    c.rows * sel,
                    c.startup_cost,
                    c.rows * 0.0025,
                )
            }
            1 => (
                OperatorNode::Sort { keys: vec![format!("c{}", self.rng.below(9))] },
                c.rows,
                c.total_cost + n_log_n * 0.002,
                c.rows * 0.001,
            ),
            2 => (OperatorNode::Materialize, c.rows, c.startup_cost, c.rows * 0.0025),
            3 => (OperatorNode::Unique, (c.rows * 0.5).max(1.0), c.startup_cost, c.rows * 0.0025),
            4 => (
                OperatorNode::HashAggregate { group_keys: vec![format!("c{}", self.rng.below(9))] },
                (c.rows * 0.1).max(1.0),
                c.total_cost + c.rows * 0.005,
                c.rows * 0.0025,
            ),
            _ => (OperatorNode::Limit, c.rows.min(100.0), c.startup_cost, 0.0),
        };
        let total = startup.max(c.total_cost) + own;
        let e = Estimates { startup_cost: startup, total_cost: total, rows: rows.round().max(1.0), width: c.width };
        self.push(op, e, &[child])
    }

    /// `count` unary operators stacked on `node`; returns the top.
    fn pad(&mut self, mut node: usize, count: usize) -> usize {
        for _ in 0..count {
            node = self.unary(node);
        }
        node
    }

    fn join_estimates(&mut self, outer: usize, inner: usize) -> Estimates {
        let (l, r) = (self.est(outer), self.est(inner));
        let sel = self.rng.range(0.5, 2.0) / l.rows.max(r.rows).max(1.0);
        let rows = (l.rows * r.rows * sel).round().max(1.0);
        Estimates {
            startup_cost: r.total_cost,
            total_cost: l.total_cost + r.total_cost + (l.rows + r.rows) * 0.01 + rows * 0.01,
            rows,
            width: l.width + r.width,
        }
    }

    /// `outer ⋈ inner` as a hash join with a `Hash` build over `inner`: two nodes.
    fn hash_join(&mut self, outer: usize, inner: usize) -> usize {
        let i = self.est(inner);
        let hash = self.push(OperatorNode::Hash, Estimates { startup_cost: i.total_cost, ..i }, &[inner]);
        let e = self.join_estimates(outer, hash);
        let cond = Some(format!("(c{} = c{})", self.rng.below(9), self.rng.below(9)));
        self.push(OperatorNode::HashJoin { join_type: JoinType::Inner, hash_cond: cond }, e, &[outer, hash])
    }

    fn left_deep(&mut self, nodes: usize) -> usize {
        let mut top = self.scan();
        let mut left = nodes - 1;
        while left >= 2 {
            if left >= 3 && self.rng.below(3) != 0 {
                let inner = self.scan();
                top = self.hash_join(top, inner);
                left -= 3;
            } else {
                let outer_rows = self.est(top).rows;
                let inner = self.index_scan(outer_rows);
                let mut e = self.join_estimates(top, inner);
                e.total_cost += outer_rows * self.est(inner).total_cost;
                top = self.push(OperatorNode::NestedLoop { join_type: JoinType::Inner }, e, &[top, inner]);
                left -= 2;
            }
        }
        self.pad(top, left)
    }

    /// A balanced hash-join tree over leaves made by `leaf`, using exactly `budget` nodes.
    fn bushy(&mut self, budget: usize, leaf: &mut dyn FnMut(&mut Gen) -> usize) -> usize {
        if budget < 4 {
            let l = leaf(self);
            return self.pad(l, budget - 1);
        }
        let rest = budget - 2;
        let left_budget = rest / 2 + self.rng.below(2).min(rest - rest / 2 - 1);
        let outer = self.bushy(left_budget, leaf);
        let inner = self.bushy(rest - left_budget, leaf);
        self.hash_join(outer, inner)
    }

    fn vector_branch(&mut self) -> usize {
        let rows = 10f64.powf(self.rng.range(4.0, 7.0)).round();
        let table = format!("items_{}", self.rng.below(100));
        let k = (10 + self.rng.below(90)) as f64;
        let e =
            Estimates { startup_cost: rows.log2() * 5.0, total_cost: rows.log2() * 5.0 + k * 2.0, rows: k, width: 48 };
        let order_by = Some("(embedding <-> $1)".to_owned());
        let scan = if self.rng.below(2) == 0 {
            self.push(OperatorNode::HnswScan { index: format!("{table}_embedding_hnsw"), table, order_by }, e, &[])
        } else {
            self.push(
                OperatorNode::IvfFlatScan { index: format!("{table}_embedding_ivfflat"), table, order_by },
                e,
                &[],
            )
        };
        let meta = self.index_scan(k);
        let mut j = self.join_estimates(scan, meta);
        j.total_cost += k * self.est(meta).total_cost;
        let join = self.push(OperatorNode::NestedLoop { join_type: JoinType::Inner }, j, &[scan, meta]);
        let limit = Estimates { rows: k, ..self.est(join) };
        self.push(OperatorNode::Limit, limit, &[join])
    }

    fn vector(&mut self, nodes: usize) -> usize {
        let branches = (nodes - 3) / 4;
        let extra = (nodes - 3) % 4;
        let mut tops: Vec<usize> = (0..branches).map(|_| self.vector_branch()).collect();
        for i in 0..extra {
            let b = i % tops.len();
            tops[b] = self.unary(tops[b]);
        }
        let rows: f64 = tops.iter().map(|&t| self.est(t).rows).sum();
        let cost: f64 = tops.iter().map(|&t| self.est(t).total_cost).sum();
        let append =
            self.push(OperatorNode::Append, Estimates { startup_cost: 0.0, total_cost: cost, rows, width: 112 }, &tops);
        let sort_cost = cost + rows * rows.max(2.0).log2() * 0.002;
        let sort = self.push(
            OperatorNode::Sort { keys: vec!["distance".into()] },
            Estimates { startup_cost: sort_cost, total_cost: sort_cost + rows * 0.001, rows, width: 112 },
            &[append],
        );
        let limit =
            Estimates { startup_cost: sort_cost, total_cost: sort_cost + 1.0, rows: rows.min(10.0), width: 112 };
        self.push(OperatorNode::Limit, limit, &[sort])
    }

    fn shared(&mut self, nodes: usize) -> usize {
        // c CTEs of three nodes each; a bushy join over L leaves takes 3L - 2 nodes; pad the rest on top.
        let ctes = (nodes / 24).max(1);
        let leaves = ((nodes + 2 - 3 * ctes) / 3).max(2);
        let main = 3 * leaves - 2;
        let roots: Vec<usize> = (0..ctes)
            .map(|_| {
                let s = self.scan();
                let f = self.unary(s);
                let c = self.est(f);
                let agg = Estimates {
                    startup_cost: c.total_cost,
                    total_cost: c.total_cost + c.rows * 0.005,
                    rows: (c.rows * 0.1).round().max(1.0),
                    width: c.width,
                };
                self.push(OperatorNode::HashAggregate { group_keys: vec!["k".into()] }, agg, &[f])
            })
            .collect();
        let mut made = 0usize;
        let mut leaf = |g: &mut Gen| {
            let i = made;
            made += 1;
            if i < 2 * ctes {
                let root = roots[i % ctes];
                let e = g.est(root);
                let scan_e = Estimates { startup_cost: 0.0, total_cost: e.rows * 0.01, ..e };
                g.push(OperatorNode::CteScan { cte: format!("cte_{}", i % ctes) }, scan_e, &[root])
            } else {
                g.scan()
            }
        };
        let top = self.bushy(main, &mut leaf);
        self.pad(top, nodes - 3 * ctes - main)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sizes_single_root_and_determinism() {
        for shape in DagShape::ALL {
            for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 23, 24, 25, 48, 100, 500, 1000] {
                let dag = generate(shape, n, 42);
                assert_eq!(dag.node_count(), n, "{shape:?} n={n}");
                assert!(dag.root().is_some(), "{shape:?} n={n} has sinks {:?}", dag.sinks());
                assert_eq!(dag, generate(shape, n, 42));
                assert!(dag.edges().all(|(from, to)| from < to), "ids are bottom-up");
            }
        }
        assert_ne!(generate(DagShape::BushyJoin, 100, 1), generate(DagShape::BushyJoin, 100, 2));
        assert!(generate(DagShape::Chain, 0, 1).is_empty());
    }

    #[test]
    fn shared_subplans_have_several_consumers() {
        let dag = generate(DagShape::SharedSubplans, 100, 3);
        let shared = dag.node_ids().filter(|&id| dag.parents(id).unwrap().len() > 1).count();
        assert!(shared >= 1);
        assert!(dag.nodes().any(|n| matches!(n.op, OperatorNode::CteScan { .. })));
    }

    #[test]
    fn shapes_have_their_operators() {
        let has = |shape, kind| generate(shape, 200, 9).nodes().any(|n| n.op.kind() == kind);
        use crate::OperatorKind as K;
        assert!(has(DagShape::VectorSearch, K::Append));
        assert!(generate(DagShape::VectorSearch, 200, 9).nodes().any(|n| n.op.kind().is_vector_scan()));
        assert!(has(DagShape::BushyJoin, K::HashJoin));
        assert!(has(DagShape::LeftDeepJoin, K::NestedLoop) || has(DagShape::LeftDeepJoin, K::HashJoin));
    }

    #[test]
    fn costs_compose_upwards() {
        for shape in DagShape::ALL {
            let dag = generate(shape, 300, 5);
            for (from, to) in dag.edges() {
                // As in PostgreSQL, a CTE's cost is charged once to the CTE, not to each scan reading it.
                if matches!(dag.node(to), Some(OperatorNode::CteScan { .. })) {
                    continue;
                }
                let (a, b) = (dag.info(from).unwrap().estimates, dag.info(to).unwrap().estimates);
                assert!(b.total_cost >= a.total_cost * 0.999, "{shape:?}: {from}->{to} {a:?} {b:?}");
                assert!(a.rows >= 1.0 && a.total_cost.is_finite());
            }
        }
    }
}
