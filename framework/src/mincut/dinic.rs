//! Dinic's maximum flow on a compact residual graph, warm-startable after capacity changes.
//!
//! Capacities are integers ([`UNBOUNDED`] is infinity). After a capacity *increase* the current flow stays
//! feasible and augmenting continues from it. After a *decrease* below the edge's flow, the excess is first
//! rerouted around the edge, the rest cancelled back to the source and from the sink (Kohli & Torr's dynamic
//! graph cuts), and augmenting resumes; work is proportional to the change, not to the graph.

use super::WorkCounters;
use super::network::UNBOUNDED;
use std::collections::VecDeque;

/// Residual network: edge `e` and its reverse `e ^ 1` are stored side by side.
#[derive(Debug, Clone)]
pub(crate) struct FlowNetwork {
    /// Head of each edge.
    to: Vec<u32>,
    /// Residual capacity of each edge.
    residual: Vec<u64>,
    /// Original capacity of each forward edge (reverse edges: 0).
    capacity: Vec<u64>,
    /// Edges leaving each node.
    adjacency: Vec<Vec<u32>>,
    source: u32,
    sink: u32,
    flow: u64,
    // Scratch reused across augmentations.
    level: Vec<i32>,
    next: Vec<usize>,
}

impl FlowNetwork {
    pub(crate) fn new(nodes: usize, source: u32, sink: u32) -> Self {
        FlowNetwork {
            to: Vec::new(),
            residual: Vec::new(),
            capacity: Vec::new(),
            adjacency: vec![Vec::new(); nodes],
            source,
            sink,
            flow: 0,
            level: vec![0; nodes],
            next: vec![0; nodes],
        }
    }

    /// Adds edge `from → to` with `capacity`; returns its id.
    pub(crate) fn add_edge(&mut self, from: u32, to: u32, capacity: u64) -> u32 {
        let id = self.to.len() as u32;
        self.to.extend([to, from]);
        self.residual.extend([capacity, 0]);
        self.capacity.extend([capacity, 0]);
        self.adjacency[from as usize].push(id);
        self.adjacency[to as usize].push(id + 1);
        id
    }

    /// Drops the flow and computes a maximum flow from scratch.
    pub(crate) fn recompute(&mut self, counters: &mut WorkCounters) {
        self.residual.copy_from_slice(&self.capacity);
        self.flow = 0;
        self.augment(counters);
    }

    /// Current flow value (the min cut once [`augment`](Self::augment) has run).
    pub(crate) fn flow(&self) -> u64 {
        self.flow
    }

    /// Capacity of forward edge `e`.
    pub(crate) fn capacity(&self, e: u32) -> u64 {
        self.capacity[e as usize]
    }

    /// Flow on forward edge `e`.
    fn edge_flow(&self, e: u32) -> u64 {
        self.residual[e as usize ^ 1]
    }

    /// Augments from the current flow to a maximum flow (Dinic: BFS levels, blocking flows).
    pub(crate) fn augment(&mut self, counters: &mut WorkCounters) {
        let (s, t) = (self.source, self.sink);
        let gained = self.max_flow_between(s, t, UNBOUNDED, counters);
        self.flow = self.flow.saturating_add(gained).min(UNBOUNDED);
    }

    /// Pushes up to `limit` units from `s` to `t` in the residual graph; returns the amount pushed.
    fn max_flow_between(&mut self, s: u32, t: u32, limit: u64, counters: &mut WorkCounters) -> u64 {
        let mut total = 0u64;
        while total < limit && self.bfs(s, t, counters) {
            self.next.iter_mut().for_each(|n| *n = 0);
            loop {
                let pushed = self.dfs(s, t, limit - total, counters);
                if pushed == 0 {
                    break;
                }
                total = total.saturating_add(pushed);
                counters.augmentations += 1;
                if total >= limit || total >= UNBOUNDED {
                    return total.min(UNBOUNDED);
                }
            }
        }
        total
    }

    fn bfs(&mut self, s: u32, t: u32, counters: &mut WorkCounters) -> bool {
        self.level.iter_mut().for_each(|l| *l = -1);
        self.level[s as usize] = 0;
        let mut queue = VecDeque::from([s]);
        while let Some(v) = queue.pop_front() {
            counters.nodes_touched += 1;
            for &e in &self.adjacency[v as usize] {
                counters.edges_scanned += 1;
                let w = self.to[e as usize];
                if self.residual[e as usize] > 0 && self.level[w as usize] < 0 {
                    self.level[w as usize] = self.level[v as usize] + 1;
                    queue.push_back(w);
                }
            }
        }
        self.level[t as usize] >= 0
    }

    /// One augmenting path in the level graph, iteratively (plans can be thousands of nodes deep).
    fn dfs(&mut self, s: u32, t: u32, limit: u64, counters: &mut WorkCounters) -> u64 {
        let mut path: Vec<u32> = Vec::new();
        let mut v = s;
        loop {
            if v == t {
                let pushed = path.iter().map(|&e| self.residual[e as usize]).fold(limit, u64::min);
                for &e in &path {
                    if self.residual[e as usize] < UNBOUNDED {
                        self.residual[e as usize] -= pushed;
                    }
                    if self.residual[e as usize ^ 1] < UNBOUNDED {
                        self.residual[e as usize ^ 1] = (self.residual[e as usize ^ 1] + pushed).min(UNBOUNDED);
                    }
                }
                return pushed;
            }
            let adj = &self.adjacency[v as usize];
            let mut advanced = false;
            while self.next[v as usize] < adj.len() {
                let e = adj[self.next[v as usize]];
                counters.edges_scanned += 1;
                let w = self.to[e as usize];
                if self.residual[e as usize] > 0 && self.level[w as usize] == self.level[v as usize] + 1 {
                    path.push(e);
                    v = w;
                    advanced = true;
                    break;
                }
                self.next[v as usize] += 1;
            }
            if !advanced {
                // Dead end: retreat and skip the edge that led here.
                self.level[v as usize] = -1;
                match path.pop() {
                    None => return 0,
                    Some(e) => {
                        v = self.to[e as usize ^ 1];
                        self.next[v as usize] += 1;
                    }
                }
            }
        }
    }

    /// Sets the capacity of forward edge `e`, keeping the flow maximum.
    pub(crate) fn set_capacity(&mut self, e: u32, capacity: u64, counters: &mut WorkCounters) {
        let old = self.capacity[e as usize];
        if capacity == old {
            return;
        }
        let flow = self.edge_flow(e);
        self.capacity[e as usize] = capacity;
        if capacity >= flow {
            // The flow stays feasible: only the residual changes. An increase may open new augmenting paths.
            self.residual[e as usize] = if capacity >= UNBOUNDED { UNBOUNDED } else { capacity - flow };
            if capacity > old {
                self.augment(counters);
            }
            return;
        }
        // The flow exceeds the new capacity: take the excess off the edge, then repair conservation.
        let excess = flow - capacity;
        self.residual[e as usize] = 0;
        self.residual[e as usize ^ 1] = capacity;
        let (tail, head) = (self.to[e as usize ^ 1], self.to[e as usize]);
        // 1. Reroute the excess from the tail to the head around the edge.
        let rerouted = self.max_flow_between(tail, head, excess, counters);
        let rest = excess - rerouted;
        if rest > 0 {
            // 2. Cancel the rest: back from the tail to the source, and from the sink to the head.
            let (s, t) = (self.source, self.sink);
            let back = self.max_flow_between(tail, s, rest, counters);
            let forward = self.max_flow_between(t, head, rest, counters);
            debug_assert_eq!((back, forward), (rest, rest), "a feasible flow can always be cancelled");
            self.flow -= rest;
        }
        // 3. The changed graph may admit new augmenting paths.
        self.augment(counters);
    }

    /// Nodes on the source side of a minimum cut: reachable from the source in the residual graph.
    pub(crate) fn source_side(&self) -> Vec<bool> {
        let mut seen = vec![false; self.adjacency.len()];
        seen[self.source as usize] = true;
        let mut stack = vec![self.source];
        while let Some(v) = stack.pop() {
            for &e in &self.adjacency[v as usize] {
                let w = self.to[e as usize] as usize;
                if self.residual[e as usize] > 0 && !seen[w] {
                    seen[w] = true;
                    stack.push(w as u32);
                }
            }
        }
        seen
    }

    /// Forward edges crossing from the source side to the sink side.
    pub(crate) fn cut_edges(&self) -> Vec<u32> {
        let side = self.source_side();
        (0..self.to.len() as u32)
            .step_by(2)
            .filter(|&e| side[self.to[e as usize ^ 1] as usize] && !side[self.to[e as usize] as usize])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGES: [(u32, u32); 10] = [(0, 1), (0, 2), (1, 2), (2, 1), (1, 3), (3, 2), (2, 4), (4, 3), (3, 5), (4, 5)];

    /// The classic CLRS network (max flow 23 with these capacities).
    fn network(caps: &[u64]) -> (FlowNetwork, Vec<u32>) {
        let mut n = FlowNetwork::new(6, 0, 5);
        let ids = EDGES.iter().zip(caps).map(|(&(a, b), &c)| n.add_edge(a, b, c)).collect();
        (n, ids)
    }

    const CLRS: [u64; 10] = [16, 13, 10, 4, 12, 9, 14, 7, 20, 4];

    #[test]
    fn max_flow_and_cut() {
        let (mut n, _) = network(&CLRS);
        let mut c = WorkCounters::default();
        n.augment(&mut c);
        assert_eq!(n.flow(), 23);
        let cut: u64 = n.cut_edges().iter().map(|&e| n.capacity(e)).sum();
        assert_eq!(cut, 23);
        assert!(c.augmentations > 0 && c.edges_scanned > 0);
    }

    #[test]
    fn warm_updates_match_a_fresh_computation() {
        let mut caps = CLRS;
        let (mut warm, ids) = network(&caps);
        let mut c = WorkCounters::default();
        warm.augment(&mut c);
        for (i, cap) in [(8usize, 5u64), (0, 3), (6, 30), (4, 1), (8, 40), (9, 0), (0, 16), (2, UNBOUNDED), (4, 2)] {
            warm.set_capacity(ids[i], cap, &mut c);
            caps[i] = cap;
            let (mut fresh, _) = network(&caps);
            fresh.augment(&mut c);
            assert_eq!(warm.flow(), fresh.flow(), "after setting edge {i} to {cap}");
            let cut: u64 = warm.cut_edges().iter().map(|&e| warm.capacity(e)).sum();
            assert_eq!(cut, warm.flow(), "the residual cut matches the flow");
        }
    }
}
