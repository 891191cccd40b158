//! Exact minimum cut of a tree-shaped plan by dynamic programming, with incremental updates.
//!
//! For operator `v` with capacity `c(v)` and inputs `u` joined by edges of capacity `e(u)`, the cheapest way to
//! separate the data from `v`'s output is
//!
//! ```text
//! f(v) = min( c(v), Σ_u min(e(u), f(u)) )        f(scan) = c(scan)   (scans are fed by the source)
//! ```
//!
//! and the plan's cut is `f(root)`. O(n) from scratch. A capacity change recomputes `f` from the changed node
//! towards the root and stops at the first node whose contribution to its parent is unchanged: O(depth) in the
//! worst case (Θ(n) for a left-deep plan flipped adversarially), a handful of nodes on average.

use super::WorkCounters;
use super::network::UNBOUNDED;

/// The DP state of a tree plan, by insertion position.
#[derive(Debug, Clone)]
pub(crate) struct TreeCut {
    parent: Vec<Option<u32>>,
    /// Children of node `v`: `child_list[child_start[v]..child_start[v + 1]]` (CSR).
    child_start: Vec<u32>,
    child_list: Vec<u32>,
    /// Inputs before consumers, for full recomputes.
    order: Vec<u32>,
    /// Operator capacities.
    node_cap: Vec<u64>,
    /// Capacity of the edge from a node to its parent (unused for the root).
    edge_cap: Vec<u64>,
    /// f(v) as defined in the module docs.
    f: Vec<u64>,
    root: u32,
}

impl TreeCut {
    /// Builds the DP over a forest given by `parent` (exactly one root) in `order` (inputs before consumers).
    pub(crate) fn new(
        parent: Vec<Option<u32>>,
        node_cap: Vec<u64>,
        edge_cap: Vec<u64>,
        order: &[u32],
        counters: &mut WorkCounters,
    ) -> Self {
        let n = parent.len();
        let mut child_start = vec![0u32; n + 1];
        let mut root = 0;
        for (v, p) in parent.iter().enumerate() {
            match p {
                Some(p) => child_start[*p as usize + 1] += 1,
                None => root = v as u32,
            }
        }
        for v in 0..n {
            child_start[v + 1] += child_start[v];
        }
        let mut fill = child_start.clone();
        let mut child_list = vec![0u32; n.saturating_sub(1)];
        for (v, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                child_list[fill[*p as usize] as usize] = v as u32;
                fill[*p as usize] += 1;
            }
        }
        let mut t =
            TreeCut { parent, child_start, child_list, order: order.to_vec(), node_cap, edge_cap, f: vec![0; n], root };
        t.recompute_all(counters);
        t
    }

    fn children(&self, v: u32) -> &[u32] {
        &self.child_list[self.child_start[v as usize] as usize..self.child_start[v as usize + 1] as usize]
    }

    /// Recomputes every `f` from scratch (inputs before consumers): O(n).
    pub(crate) fn recompute_all(&mut self, counters: &mut WorkCounters) {
        for i in 0..self.order.len() {
            let v = self.order[i];
            self.f[v as usize] = self.recompute(v, counters);
        }
    }

    fn contribution(&self, u: u32) -> u64 {
        self.edge_cap[u as usize].min(self.f[u as usize])
    }

    fn inputs_sum(&self, v: u32, counters: &mut WorkCounters) -> u64 {
        let children = self.children(v);
        if children.is_empty() {
            return UNBOUNDED;
        }
        counters.edges_scanned += children.len() as u64;
        children.iter().fold(0u64, |acc, &u| acc.saturating_add(self.contribution(u)).min(UNBOUNDED))
    }

    fn recompute(&self, v: u32, counters: &mut WorkCounters) -> u64 {
        counters.nodes_touched += 1;
        self.node_cap[v as usize].min(self.inputs_sum(v, counters))
    }

    /// The plan's cut value.
    pub(crate) fn value(&self) -> u64 {
        self.f[self.root as usize]
    }

    /// Sets the capacity of operator `v` and repairs the DP.
    pub(crate) fn set_node(&mut self, v: u32, cap: u64, counters: &mut WorkCounters) {
        self.node_cap[v as usize] = cap;
        self.propagate(v, counters);
    }

    /// Sets the capacity of the edge from `v` to its parent and repairs the DP.
    pub(crate) fn set_edge(&mut self, v: u32, cap: u64, counters: &mut WorkCounters) {
        let before = self.contribution(v);
        self.edge_cap[v as usize] = cap;
        if self.contribution(v) != before {
            if let Some(p) = self.parent[v as usize] {
                self.propagate(p, counters);
            }
        }
    }

    /// Recomputes `f` from `v` upwards, stopping when a node's contribution to its parent does not change.
    fn propagate(&mut self, mut v: u32, counters: &mut WorkCounters) {
        loop {
            let before = self.contribution(v);
            let old_f = self.f[v as usize];
            self.f[v as usize] = self.recompute(v, counters);
            if self.f[v as usize] == old_f || self.contribution(v) == before {
                return;
            }
            match self.parent[v as usize] {
                Some(p) => v = p,
                None => return,
            }
        }
    }

    /// Current capacity of operator `v`.
    pub(crate) fn node_capacity(&self, v: u32) -> u64 {
        self.node_cap[v as usize]
    }

    /// Current capacity of the edge from `v` to its parent.
    pub(crate) fn edge_capacity(&self, v: u32) -> u64 {
        self.edge_cap[v as usize]
    }

    /// The cut: operators whose split edge is cut, and nodes whose edge to their parent is cut.
    pub(crate) fn cut_set(&self) -> (Vec<u32>, Vec<u32>) {
        let (mut nodes, mut edges) = (Vec::new(), Vec::new());
        let mut stack = vec![self.root];
        let mut scratch = WorkCounters::default();
        while let Some(v) = stack.pop() {
            if self.children(v).is_empty() || self.node_cap[v as usize] <= self.inputs_sum(v, &mut scratch) {
                nodes.push(v);
                continue;
            }
            for &u in self.children(v) {
                if self.edge_cap[u as usize] <= self.f[u as usize] {
                    edges.push(u);
                } else {
                    stack.push(u);
                }
            }
        }
        nodes.sort_unstable();
        edges.sort_unstable();
        (nodes, edges)
    }
}
