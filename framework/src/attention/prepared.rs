//! Per-DAG precomputation shared by attention mechanisms.
//!
//! [`PreparedDag`] computes, once per plan, everything the mechanisms read: topology in compact form (CSR
//! adjacency by insertion position), depths and heights, own costs and their shares, the critical path with
//! slack, and incomparability ("parallel work") per node. Mechanisms then score a plan with
//! [`DagAttention::forward_prepared`](super::DagAttention::forward_prepared) without allocating.

use crate::dag::QueryDag;
use crate::mincut::DagMinCutEngine;
use crate::mincut::bottleneck::{critical_path, self_costs};

/// A stable signature of an operator: its kind, relation and index (not its estimates), so the same operator
/// in different plans and executions has the same signature.
pub fn operator_signature(op: &crate::OperatorNode) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&(op.kind(), op.table(), op.index()), &mut h);
    std::hash::Hasher::finish(&h)
}

/// A plan's structure and features, by insertion position.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedDag {
    /// Number of nodes.
    pub n: usize,
    /// Node ids.
    pub ids: Vec<usize>,
    /// Inputs of node `p`: `children[child_start[p]..child_start[p + 1]]`.
    pub child_start: Vec<u32>,
    /// Flattened inputs.
    pub children: Vec<u32>,
    /// Consumers of node `p`: `parents[parent_start[p]..parent_start[p + 1]]`.
    pub parent_start: Vec<u32>,
    /// Flattened consumers.
    pub parents: Vec<u32>,
    /// Topological order (inputs first).
    pub order: Vec<u32>,
    /// Longest distance to a sink (root = 0).
    pub depth: Vec<u32>,
    /// Longest distance from a source (scans = 0).
    pub height: Vec<u32>,
    /// Operator kind index ([`OperatorKind::index`](crate::OperatorKind::index)).
    pub kind: Vec<u8>,
    /// Estimated rows.
    pub rows: Vec<f64>,
    /// Own cost (total minus inputs, floored at passing rows).
    pub self_cost: Vec<f64>,
    /// Own cost over the sum of own costs (sums to 1; uniform for a zero-cost plan).
    pub share: Vec<f64>,
    /// Slack against the critical path (0 = on it).
    pub slack: Vec<f64>,
    /// Length of the critical path (sum of own costs).
    pub critical_length: f64,
    /// Share of the plan's own cost done by nodes neither above nor below this one (work that can overlap it).
    pub parallel_share: Vec<f64>,
    /// Operators on the plan's minimum cut (default cost model): cut operators, and producers of cut edges.
    pub in_cut: Vec<bool>,
    /// Min-cut criticality ([`DagMinCutEngine::criticality`](crate::mincut::DagMinCutEngine::criticality)); for
    /// an operator whose result is a cut edge, at least that edge's criticality.
    pub criticality: Vec<f64>,
    /// The minimum cut's value (cost units; 0 for plans without a single root).
    pub cut_value: f64,
    /// Fewest edges from a sink down to the node (BFS over inputs; sinks = 0).
    pub hops: Vec<u32>,
    /// Angle of the node in a Sarkar-style layout of the plan's spanning tree (first consumer as parent): each
    /// node owns an angular interval proportional to the scans below it; its angle is the interval's middle.
    pub angle: Vec<f64>,
    /// Structural signature of the operator (kind, relation, index), stable across plans.
    pub signature: Vec<u64>,
    /// Bitset rows (`words` u64 each): bit `u` of row `p` is set when `u` is an ancestor or descendant of `p`
    /// (or `p` itself).
    pub related: Vec<u64>,
    /// Words per row of `related`.
    pub words: usize,
}

impl PreparedDag {
    /// Precomputes everything for `dag`: O(V + E) plus O(V²/64) for incomparability.
    pub fn new(dag: &QueryDag) -> Self {
        let n = dag.node_count();
        let (child_start, children) = csr(dag.slots.iter().map(|s| &s.children[..]), n);
        let (parent_start, parents) = csr(dag.slots.iter().map(|s| &s.parents[..]), n);
        let order = dag.kahn().expect("a QueryDag is acyclic");
        let depth = dag.depths().into_iter().map(|d| d as u32).collect();
        let height = dag.heights().into_iter().map(|h| h as u32).collect();
        let self_cost = self_costs(dag);
        let total: f64 = self_cost.iter().sum();
        let share: Vec<f64> =
            if total > 0.0 { self_cost.iter().map(|c| c / total).collect() } else { vec![1.0 / n.max(1) as f64; n] };
        let cp = critical_path(dag);
        let (parallel_share, related) =
            incomparable_share(n, &order, &child_start, &children, &parent_start, &parents, &share);
        let hops = sink_hops(n, &order, &child_start, &children, &parent_start);
        let angle = layout_angles(n, &order, &child_start, &children, &parent_start, &parents);
        let signature = dag.nodes().map(|r| operator_signature(r.op)).collect();
        let mut in_cut = vec![false; n];
        let mut criticality = vec![0.0; n];
        let mut cut_value = 0.0;
        let mut engine = DagMinCutEngine::new();
        if engine.build_from_dag(dag).is_ok() {
            let cut = engine.min_cut();
            for id in cut.nodes.iter().chain(cut.edges.iter().map(|(from, _)| from)) {
                if let Some(p) = dag.position(*id) {
                    in_cut[p] = true;
                }
            }
            criticality = engine.criticality();
            // An operator whose result is a cut edge is as critical as that edge.
            for (from, _, c) in engine.edge_criticality() {
                if let Some(p) = dag.position(from) {
                    criticality[p] = criticality[p].max(c);
                }
            }
            cut_value = cut.value;
        }
        PreparedDag {
            n,
            ids: dag.node_ids().collect(),
            child_start,
            children,
            parent_start,
            parents,
            order,
            depth,
            height,
            kind: dag.nodes().map(|r| r.op.kind().index() as u8).collect(),
            rows: dag.nodes().map(|r| r.info.estimates.rows).collect(),
            self_cost,
            share,
            slack: cp.slack,
            critical_length: cp.length,
            parallel_share,
            in_cut,
            criticality,
            cut_value,
            hops,
            angle,
            signature,
            words: n.div_ceil(64),
            related,
        }
    }

    /// True when `u` is an ancestor or descendant of `p`, or `p` itself.
    #[inline]
    pub fn comparable(&self, p: usize, u: usize) -> bool {
        self.related[p * self.words + u / 64] >> (u % 64) & 1 == 1
    }

    /// Inputs of node `p`.
    #[inline]
    pub fn children_of(&self, p: usize) -> &[u32] {
        &self.children[self.child_start[p] as usize..self.child_start[p + 1] as usize]
    }

    /// Consumers of node `p`.
    #[inline]
    pub fn parents_of(&self, p: usize) -> &[u32] {
        &self.parents[self.parent_start[p] as usize..self.parent_start[p + 1] as usize]
    }
}

fn csr<'a>(lists: impl Iterator<Item = &'a [u32]>, n: usize) -> (Vec<u32>, Vec<u32>) {
    let mut start = Vec::with_capacity(n + 1);
    let mut flat = Vec::new();
    start.push(0);
    for l in lists {
        flat.extend_from_slice(l);
        start.push(flat.len() as u32);
    }
    (start, flat)
}

/// For every node, the share of work in nodes that are neither its descendants nor its ancestors, from bitset
/// reachability: descendant sets in topological order, ancestor sets in reverse. O(V·E/64).
fn incomparable_share(
    n: usize,
    order: &[u32],
    child_start: &[u32],
    children: &[u32],
    parent_start: &[u32],
    parents: &[u32],
    share: &[f64],
) -> (Vec<f64>, Vec<u64>) {
    let words = n.div_ceil(64);
    let closure = |sequence: &mut dyn Iterator<Item = usize>, start: &[u32], next: &[u32]| {
        let mut sets = vec![0u64; n * words];
        for v in sequence {
            sets[v * words + v / 64] |= 1 << (v % 64);
            for &c in &next[start[v] as usize..start[v + 1] as usize] {
                let c = c as usize;
                for w in 0..words {
                    sets[v * words + w] |= sets[c * words + w];
                }
            }
        }
        sets
    };
    let mut related = closure(&mut order.iter().map(|&v| v as usize), child_start, children);
    let above = closure(&mut order.iter().rev().map(|&v| v as usize), parent_start, parents);
    related.iter_mut().zip(&above).for_each(|(r, a)| *r |= a);
    let shares = (0..n)
        .map(|p| {
            let mut sum = 0.0;
            for w in 0..words {
                let mut free = !related[p * words + w];
                if w == words - 1 && !n.is_multiple_of(64) {
                    free &= (1u64 << (n % 64)) - 1;
                }
                while free != 0 {
                    let bit = free.trailing_zeros() as usize;
                    sum += share[w * 64 + bit];
                    free &= free - 1;
                }
            }
            sum
        })
        .collect();
    (shares, related)
}

/// Fewest hops from any sink down to each node.
fn sink_hops(n: usize, order: &[u32], child_start: &[u32], children: &[u32], parent_start: &[u32]) -> Vec<u32> {
    let mut hops = vec![u32::MAX; n];
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&v| parent_start[v] == parent_start[v + 1]).collect();
    for &v in &queue {
        hops[v] = 0;
    }
    while let Some(v) = queue.pop_front() {
        for &c in &children[child_start[v] as usize..child_start[v + 1] as usize] {
            if hops[c as usize] == u32::MAX {
                hops[c as usize] = hops[v] + 1;
                queue.push_back(c as usize);
            }
        }
    }
    debug_assert!(order.iter().all(|&v| hops[v as usize] != u32::MAX), "every node lies below some sink");
    hops
}

/// Sarkar-style angles: sinks share the circle, each node splits its interval among its spanning-tree children
/// (those whose first consumer it is) in proportion to the scans below them.
fn layout_angles(
    n: usize,
    order: &[u32],
    child_start: &[u32],
    children: &[u32],
    parent_start: &[u32],
    parents: &[u32],
) -> Vec<f64> {
    let first_parent = |v: usize| (parent_start[v] < parent_start[v + 1]).then(|| parents[parent_start[v] as usize]);
    let tree_children = |v: usize| {
        children[child_start[v] as usize..child_start[v + 1] as usize]
            .iter()
            .copied()
            .filter(move |&c| first_parent(c as usize) == Some(v as u32))
    };
    let mut leaves = vec![0f64; n];
    for &v in order {
        let v = v as usize;
        let sum: f64 = tree_children(v).map(|c| leaves[c as usize]).sum();
        leaves[v] = if sum == 0.0 { 1.0 } else { sum };
    }
    let mut start = vec![0f64; n];
    let mut width = vec![0f64; n];
    let total_sink_leaves: f64 = (0..n).filter(|&v| first_parent(v).is_none()).map(|v| leaves[v]).sum();
    let mut at = 0.0;
    for v in (0..n).filter(|&v| first_parent(v).is_none()) {
        start[v] = at;
        width[v] = std::f64::consts::TAU * leaves[v] / total_sink_leaves;
        at += width[v];
    }
    for &v in order.iter().rev() {
        let v = v as usize;
        let mut at = start[v];
        for c in tree_children(v) {
            let c = c as usize;
            start[c] = at;
            width[c] = width[v] * leaves[c] / leaves[v];
            at += width[c];
        }
    }
    (0..n).map(|v| start[v] + width[v] / 2.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OperatorNode;

    #[test]
    fn parallel_share_counts_only_incomparable_work() {
        // Two scans under a join: each scan runs in parallel with the other; the join with nothing.
        let mut dag = QueryDag::new();
        dag.add_node_with(
            0,
            OperatorNode::SeqScan { table: "a".into() },
            crate::NodeInfo::with_estimates(0.0, 30.0, 1.0, 8),
        );
        dag.add_node_with(
            1,
            OperatorNode::SeqScan { table: "b".into() },
            crate::NodeInfo::with_estimates(0.0, 10.0, 1.0, 8),
        );
        dag.add_node_with(2, OperatorNode::Hash, crate::NodeInfo::with_estimates(0.0, 70.0, 1.0, 8));
        dag.add_edge(0, 2).unwrap();
        dag.add_edge(1, 2).unwrap();
        let p = PreparedDag::new(&dag);
        assert_eq!(p.self_cost, vec![30.0, 10.0, 30.0]);
        assert!((p.parallel_share[0] - 10.0 / 70.0).abs() < 1e-12);
        assert!((p.parallel_share[1] - 30.0 / 70.0).abs() < 1e-12);
        assert_eq!(p.parallel_share[2], 0.0);
        assert_eq!(p.children_of(2), &[0, 1]);
        assert_eq!(p.parents_of(0), &[2]);
        assert_eq!(p.slack, vec![0.0, 20.0, 0.0]);
    }
}
