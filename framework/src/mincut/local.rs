//! `LocalKCut`: a bounded-volume local search for a cut near a seed operator.
//!
//! The name follows the literature's local cut oracles, but what this computes is stated exactly: starting from
//! a seed, a region `R` is grown breadth-first over inputs and consumers until `budget` edges have been explored.
//! Every operator outside `R` is then pinned to a side — consumers (transitively) of `R` to the answer's side,
//! everything else to the data's side — and the minimum cut of the resulting small network is computed exactly.
//! Pinning restricts the choice, never invents capacity, so:
//!
//! - the result is always a valid cut of the whole plan (every data-to-answer path crosses it), and its value is
//!   **at least** the exact minimum cut;
//! - it **equals** the exact value whenever some minimum cut agrees with the pinning outside `R` — in particular
//!   when `R` covers the plan.
//!
//! Work is proportional to the region plus the consumers above it, not to the plan.

use super::WorkCounters;
use super::dinic::FlowNetwork;
use super::network::{CostModel, UNBOUNDED, from_units};
use crate::dag::QueryDag;
use crate::error::{Error, Result};
use rustc_hash::FxHashMap;

/// The bounded-volume local search (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalKCut {
    /// Edges the region may explore.
    pub budget: usize,
    /// Capacities.
    pub cost_model: CostModel,
}

/// A cut found by [`LocalKCut`].
#[derive(Debug, Clone, PartialEq)]
pub struct LocalCut {
    /// Value of the cut, at least the exact minimum.
    pub value: f64,
    /// Operators (ids) whose capacity is cut.
    pub nodes: Vec<usize>,
    /// Data edges `(from, to)` that are cut.
    pub edges: Vec<(usize, usize)>,
    /// Operators in the explored region.
    pub region: usize,
    /// True when the region is the whole plan (the value is then exact).
    pub covers_plan: bool,
    /// Work done.
    pub counters: WorkCounters,
}

impl LocalKCut {
    /// A search exploring at most `budget` edges, with the default cost model.
    pub fn new(budget: usize) -> Self {
        LocalKCut { budget, cost_model: CostModel::default() }
    }

    /// A cut near `seed`.
    ///
    /// # Errors
    /// [`Error::UnknownNode`] for an unknown seed; [`Error::NotSupported`] for a plan without a single root.
    pub fn cut(&self, dag: &QueryDag, seed: usize) -> Result<LocalCut> {
        let seed = dag.slot(seed)?;
        let root =
            dag.root().ok_or_else(|| Error::NotSupported("a local cut of a plan without a single root".into()))?;
        let root = dag.slot(root)?;
        let n = dag.node_count();
        let mut counters = WorkCounters::default();

        // 1. Grow the region breadth-first over inputs and consumers within the edge budget.
        let mut in_region = vec![false; n];
        let mut region = vec![seed];
        in_region[seed as usize] = true;
        let mut head = 0;
        let mut explored = 0usize;
        'grow: while head < region.len() {
            let v = region[head];
            head += 1;
            counters.nodes_touched += 1;
            let slot = &dag.slots[v as usize];
            for &w in slot.children.iter().chain(slot.parents.iter()) {
                if explored >= self.budget {
                    break 'grow;
                }
                explored += 1;
                counters.edges_scanned += 1;
                if !in_region[w as usize] {
                    in_region[w as usize] = true;
                    region.push(w);
                }
            }
        }

        // 2. Consumers of the region outside it go to the answer's side.
        let mut above = vec![false; n];
        let mut stack: Vec<u32> = region.clone();
        while let Some(v) = stack.pop() {
            for &p in &dag.slots[v as usize].parents {
                counters.edges_scanned += 1;
                if !in_region[p as usize] && !above[p as usize] {
                    above[p as usize] = true;
                    counters.nodes_touched += 1;
                    stack.push(p);
                }
            }
        }

        // 3. The pinned network: S, T, and the region's split operators.
        let node_cap = self.cost_model.node_capacities(dag);
        let local: FxHashMap<u32, u32> = region.iter().enumerate().map(|(i, &v)| (v, i as u32)).collect();
        let mut network = FlowNetwork::new(2 + 2 * region.len(), 0, 1);
        let mut split = Vec::with_capacity(region.len());
        let mut edge_of: Vec<(u32, (u32, u32))> = Vec::new();
        for (i, &v) in region.iter().enumerate() {
            let (vin, vout) = (2 + 2 * i as u32, 3 + 2 * i as u32);
            split.push(network.add_edge(vin, vout, node_cap[v as usize]));
            let slot = &dag.slots[v as usize];
            if slot.children.is_empty() {
                network.add_edge(0, vin, UNBOUNDED);
            }
            if v == root {
                network.add_edge(vout, 1, UNBOUNDED);
            }
            for &u in &slot.children {
                let cap = self.cost_model.edge_capacity(&dag.slots[u as usize].info);
                let e = match local.get(&u) {
                    Some(&j) => network.add_edge(3 + 2 * j, vin, cap),
                    // An input outside the region is on the data side unless it is also above the region.
                    None if !above[u as usize] => network.add_edge(0, vin, cap),
                    None => continue,
                };
                edge_of.push((e, (u, v)));
            }
            for &w in &slot.parents {
                if !in_region[w as usize] {
                    let cap = self.cost_model.edge_capacity(&slot.info);
                    let e = network.add_edge(vout, 1, cap);
                    edge_of.push((e, (v, w)));
                }
            }
        }
        // Edges from the data side straight into the answer's side, outside the region, are cut regardless.
        let mut fixed = 0u64;
        let mut fixed_edges = Vec::new();
        for w in (0..n).filter(|&w| above[w]) {
            for &u in &dag.slots[w].children {
                counters.edges_scanned += 1;
                if !in_region[u as usize] && !above[u as usize] {
                    fixed = fixed.saturating_add(self.cost_model.edge_capacity(&dag.slots[u as usize].info));
                    fixed_edges.push((u, w as u32));
                }
            }
        }
        network.augment(&mut counters);

        let cut: std::collections::HashSet<u32> = network.cut_edges().into_iter().collect();
        let id = |p: u32| dag.slots[p as usize].id;
        let mut nodes: Vec<usize> =
            region.iter().zip(&split).filter(|(_, e)| cut.contains(e)).map(|(&v, _)| id(v)).collect();
        nodes.sort_unstable();
        let mut edges: Vec<(usize, usize)> = edge_of
            .iter()
            .filter(|(e, _)| cut.contains(e))
            .map(|&(_, (a, b))| (id(a), id(b)))
            .chain(fixed_edges.iter().map(|&(a, b)| (id(a), id(b))))
            .collect();
        edges.sort_unstable();
        Ok(LocalCut {
            value: from_units(network.flow().saturating_add(fixed).min(UNBOUNDED)),
            nodes,
            edges,
            region: region.len(),
            covers_plan: region.len() == n,
            counters,
        })
    }
}
