//! Exact minimum cuts over plan DAGs: the plan's narrowest waist, how critical each operator is to it, and the
//! bottlenecks and alternatives that follow.
//!
//! A plan becomes a flow network ([`network`]): operators are split into `in → out` edges whose capacity comes
//! from a [`CostModel`] (by default the operator's own cost), data edges carry the size of the intermediate
//! result (by default `rows × width` in page-cost units), a super-source feeds every scan and the root drains to
//! a sink. The minimum `S`–`T` cut is the cheapest set of operators and intermediate results that every path from
//! the data to the answer crosses: the plan's narrow waist, where materialising, caching or speeding up pays.
//!
//! [`DagMinCutEngine`] computes it exactly: by O(n) dynamic programming for tree plans and Dinic's max flow for
//! DAGs with shared subplans. Capacity updates are incremental (the DP walks towards the root and stops when
//! nothing changes; the flow is warm-started) and their work is counted in [`WorkCounters`], so scaling is
//! measured in operations, not noisy timings. [`LocalKCut`] is a bounded-volume local search that returns a
//! valid cut whose value upper-bounds the exact one. [`bottleneck`] turns cuts, critical paths and cost shares
//! into typed recommendations.
//!
//! ```
//! use ruvector_dag::dag::generator::{generate, DagShape};
//! use ruvector_dag::mincut::DagMinCutEngine;
//!
//! let dag = generate(DagShape::BushyJoin, 200, 1);
//! let mut engine = DagMinCutEngine::new();
//! engine.build_from_dag(&dag)?;
//! let cut = engine.min_cut();
//! assert!(cut.value > 0.0 && !(cut.nodes.is_empty() && cut.edges.is_empty()));
//! let (from, to) = dag.edges().next().unwrap();
//! let after = engine.update_edge(from, to, 0.5)?;   // cheapen one intermediate result
//! assert!(after <= cut.value);
//! # Ok::<(), ruvector_dag::Error>(())
//! ```

pub mod bottleneck;
mod dinic;
mod local;
pub mod network;
mod tree;

pub use local::{LocalCut, LocalKCut};
pub use network::{CostModel, EdgeCapacity, NodeCapacity};

use crate::dag::QueryDag;
use crate::error::{Error, Result};
use dinic::FlowNetwork;
use network::{UNBOUNDED, from_units, to_units};
use rustc_hash::FxHashMap;
use tree::TreeCut;

/// Operations performed by cut computations and updates: deterministic, so scaling can be measured exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkCounters {
    /// Nodes whose value was recomputed (DP) or that were dequeued (flow searches).
    pub nodes_touched: u64,
    /// Edges examined.
    pub edges_scanned: u64,
    /// Augmenting paths pushed (flow only).
    pub augmentations: u64,
}

impl WorkCounters {
    /// Total of all counters.
    pub fn total(&self) -> u64 {
        self.nodes_touched + self.edges_scanned + self.augmentations
    }
}

/// A minimum cut of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct MinCut {
    /// Capacity of the cut, in cost units (infinite when nothing may be cut).
    pub value: f64,
    /// Operators (ids) whose own capacity is part of the cut.
    pub nodes: Vec<usize>,
    /// Data edges `(from, to)` that are part of the cut.
    pub edges: Vec<(usize, usize)>,
    /// Operators (ids) on the data side of the cut: their output is produced before the cut.
    pub source_side: Vec<usize>,
}

/// Settings of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MinCutConfig {
    /// How capacities are derived from estimates.
    pub cost_model: CostModel,
    /// Use max flow even for tree plans (for cross-checking; trees normally use the O(n) DP).
    pub force_flow: bool,
}

enum Solver {
    Tree(TreeCut),
    Flow {
        network: FlowNetwork,
        /// Edge id of each operator's split edge, by position.
        node_edge: Vec<u32>,
        /// Edge id of each data edge, by (from position, to position).
        data_edge: FxHashMap<(u32, u32), u32>,
    },
}

/// Exact s-t minimum cut of a plan DAG with incremental updates.
///
/// Build once per plan with [`build_from_dag`](Self::build_from_dag); read the cut with
/// [`min_cut`](Self::min_cut) or [`cut_value`](Self::cut_value); change capacities with
/// [`update_edge`](Self::update_edge) and [`update_node_cost`](Self::update_node_cost), which return the new
/// cut value and touch only what changed; read the work done in [`counters`](Self::counters).
pub struct DagMinCutEngine {
    config: MinCutConfig,
    solver: Option<Solver>,
    /// Node ids by position, and positions by id.
    ids: Vec<usize>,
    positions: FxHashMap<usize, u32>,
    /// Plan-tree parent by position (tree plans), for edge lookups.
    parent: Vec<Option<u32>>,
    counters: WorkCounters,
}

impl std::fmt::Debug for DagMinCutEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DagMinCutEngine")
            .field("config", &self.config)
            .field("nodes", &self.ids.len())
            .field("tree", &self.is_tree())
            .field("counters", &self.counters)
            .finish()
    }
}

impl Default for DagMinCutEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl DagMinCutEngine {
    /// An engine with the default cost model.
    pub fn new() -> Self {
        Self::with_config(MinCutConfig::default())
    }

    /// An engine with `config`.
    pub fn with_config(config: MinCutConfig) -> Self {
        DagMinCutEngine {
            config,
            solver: None,
            ids: Vec::new(),
            positions: FxHashMap::default(),
            parent: Vec::new(),
            counters: WorkCounters::default(),
        }
    }

    /// Builds the network of `dag` and computes its minimum cut.
    ///
    /// # Errors
    /// [`Error::Plugin`]-free structural errors: an empty DAG, or one without a single root (the sink).
    pub fn build_from_dag(&mut self, dag: &QueryDag) -> Result<()> {
        let root = dag.root().ok_or_else(|| {
            Error::NotSupported(format!(
                "a minimum cut of a plan with {} sinks (exactly one root is needed)",
                dag.sinks().len()
            ))
        })?;
        let n = dag.node_count();
        self.ids = dag.node_ids().collect();
        self.positions = self.ids.iter().enumerate().map(|(p, &id)| (id, p as u32)).collect();
        let node_cap = self.config.cost_model.node_capacities(dag);
        let edge_cap_of: Vec<u64> = dag.nodes().map(|nr| self.config.cost_model.edge_capacity(nr.info)).collect();
        let is_tree = dag.slots.iter().all(|s| s.parents.len() <= 1);
        self.parent = dag.slots.iter().map(|s| s.parents.first().copied()).collect();
        let order = dag.kahn()?;
        let mut counters = WorkCounters::default();
        self.solver = Some(if is_tree && !self.config.force_flow {
            Solver::Tree(TreeCut::new(self.parent.clone(), node_cap, edge_cap_of, &order, &mut counters))
        } else {
            // Nodes: 0 = S, 1 = T, 2 + 2p = p_in, 3 + 2p = p_out.
            let mut network = FlowNetwork::new(2 + 2 * n, 0, 1);
            let node_edge = (0..n).map(|p| network.add_edge(2 + 2 * p as u32, 3 + 2 * p as u32, node_cap[p])).collect();
            let mut data_edge = FxHashMap::default();
            for (p, slot) in dag.slots.iter().enumerate() {
                if slot.children.is_empty() {
                    network.add_edge(0, 2 + 2 * p as u32, UNBOUNDED);
                }
                for &c in &slot.children {
                    let e = network.add_edge(3 + 2 * c, 2 + 2 * p as u32, edge_cap_of[c as usize]);
                    data_edge.insert((c, p as u32), e);
                }
            }
            let root_pos = self.positions[&root];
            network.add_edge(3 + 2 * root_pos, 1, UNBOUNDED);
            network.augment(&mut counters);
            Solver::Flow { network, node_edge, data_edge }
        });
        self.counters = counters;
        Ok(())
    }

    fn solver(&self) -> &Solver {
        self.solver.as_ref().expect("build_from_dag must be called first")
    }

    fn position(&self, id: usize) -> Result<u32> {
        self.positions.get(&id).copied().ok_or(Error::UnknownNode(id))
    }

    /// True when the plan is a tree (solved by DP), false for DAGs with shared subplans (max flow).
    pub fn is_tree(&self) -> bool {
        matches!(self.solver, Some(Solver::Tree(_)))
    }

    /// The cut's value in cost units.
    ///
    /// # Panics
    /// If [`build_from_dag`](Self::build_from_dag) has not succeeded.
    pub fn cut_value(&self) -> f64 {
        from_units(self.cut_units())
    }

    fn cut_units(&self) -> u64 {
        match self.solver() {
            Solver::Tree(t) => t.value(),
            Solver::Flow { network, .. } => network.flow(),
        }
    }

    /// The minimum cut: value, cut operators and edges, and the operators on the data side.
    pub fn min_cut(&self) -> MinCut {
        let id = |p: u32| self.ids[p as usize];
        match self.solver() {
            Solver::Tree(t) => {
                let (nodes, edges) = t.cut_set();
                // Data side: everything below a cut element.
                let mut below = vec![false; self.ids.len()];
                let mut stack: Vec<u32> = nodes.clone();
                stack.extend(edges.iter().copied());
                let children = self.children_by_position();
                while let Some(v) = stack.pop() {
                    if !below[v as usize] {
                        below[v as usize] = true;
                        stack.extend(children[v as usize].iter().copied());
                    }
                }
                // A cut operator's own output is on the sink side.
                for &v in &nodes {
                    below[v as usize] = false;
                }
                let parent = &self.parent;
                MinCut {
                    value: from_units(t.value()),
                    nodes: nodes.iter().map(|&p| id(p)).collect(),
                    edges: edges
                        .iter()
                        .map(|&p| (id(p), id(parent[p as usize].expect("cut edges have a parent"))))
                        .collect(),
                    source_side: (0..self.ids.len() as u32).filter(|&p| below[p as usize]).map(id).collect(),
                }
            }
            Solver::Flow { network, node_edge, data_edge } => {
                let side = network.source_side();
                let cut: std::collections::HashSet<u32> = network.cut_edges().into_iter().collect();
                let nodes = (0..self.ids.len()).filter(|&p| cut.contains(&node_edge[p])).map(|p| self.ids[p]).collect();
                let mut edges: Vec<(usize, usize)> =
                    data_edge.iter().filter(|(_, e)| cut.contains(e)).map(|(&(a, b), _)| (id(a), id(b))).collect();
                edges.sort_unstable();
                MinCut {
                    value: from_units(network.flow()),
                    nodes,
                    edges,
                    source_side: (0..self.ids.len()).filter(|&p| side[3 + 2 * p]).map(|p| self.ids[p]).collect(),
                }
            }
        }
    }

    fn children_by_position(&self) -> Vec<Vec<u32>> {
        let mut children = vec![Vec::new(); self.ids.len()];
        for (p, parent) in self.parent.iter().enumerate() {
            if let Some(q) = parent {
                children[*q as usize].push(p as u32);
            }
        }
        children
    }

    /// Sets the capacity (cost units) of data edge `from → to`; returns the new cut value.
    ///
    /// # Errors
    /// [`Error::UnknownNode`] for unknown ids; [`Error::NotSupported`] when the edge does not exist; a
    /// negative or NaN capacity is rejected the same way.
    pub fn update_edge(&mut self, from: usize, to: usize, capacity: f64) -> Result<f64> {
        let units = checked_capacity(capacity)?;
        let (a, b) = (self.position(from)?, self.position(to)?);
        let mut counters = self.counters;
        match self.solver.as_mut().expect("build_from_dag must be called first") {
            Solver::Tree(t) => {
                if self.parent[a as usize] != Some(b) {
                    return Err(Error::NotSupported(format!("updating edge {from} -> {to}: no such edge")));
                }
                t.set_edge(a, units, &mut counters);
            }
            Solver::Flow { network, data_edge, .. } => {
                let e = *data_edge
                    .get(&(a, b))
                    .ok_or_else(|| Error::NotSupported(format!("updating edge {from} -> {to}: no such edge")))?;
                network.set_capacity(e, units, &mut counters);
            }
        }
        self.counters = counters;
        Ok(self.cut_value())
    }

    /// Sets the capacity (cost units) of operator `id`; returns the new cut value.
    ///
    /// # Errors
    /// [`Error::UnknownNode`]; a negative or NaN capacity.
    pub fn update_node_cost(&mut self, id: usize, capacity: f64) -> Result<f64> {
        let units = checked_capacity(capacity)?;
        let p = self.position(id)?;
        let mut counters = self.counters;
        match self.solver.as_mut().expect("build_from_dag must be called first") {
            Solver::Tree(t) => t.set_node(p, units, &mut counters),
            Solver::Flow { network, node_edge, .. } => {
                network.set_capacity(node_edge[p as usize], units, &mut counters)
            }
        }
        self.counters = counters;
        Ok(self.cut_value())
    }

    /// Capacity of operator `id` in cost units.
    pub fn node_capacity(&self, id: usize) -> Result<f64> {
        let p = self.position(id)?;
        Ok(from_units(match self.solver() {
            Solver::Tree(t) => t.node_capacity(p),
            Solver::Flow { network, node_edge, .. } => network.capacity(node_edge[p as usize]),
        }))
    }

    /// Capacity of data edge `from → to` in cost units.
    pub fn edge_capacity(&self, from: usize, to: usize) -> Result<f64> {
        let (a, b) = (self.position(from)?, self.position(to)?);
        let none = || Error::NotSupported(format!("edge {from} -> {to}: no such edge"));
        Ok(from_units(match self.solver() {
            Solver::Tree(t) if self.parent[a as usize] == Some(b) => t.edge_capacity(a),
            Solver::Tree(_) => return Err(none()),
            Solver::Flow { network, data_edge, .. } => network.capacity(*data_edge.get(&(a, b)).ok_or_else(none)?),
        }))
    }

    /// Recomputes the cut from scratch on the current capacities (no incremental shortcut): O(n) for trees, a
    /// fresh max flow for DAGs. Returns the cut value.
    ///
    /// # Panics
    /// If [`build_from_dag`](Self::build_from_dag) has not succeeded.
    pub fn recompute(&mut self) -> f64 {
        let mut counters = self.counters;
        match self.solver.as_mut().expect("build_from_dag must be called first") {
            Solver::Tree(t) => t.recompute_all(&mut counters),
            Solver::Flow { network, .. } => network.recompute(&mut counters),
        }
        self.counters = counters;
        self.cut_value()
    }

    /// Work done since the engine was built (building included).
    pub fn counters(&self) -> WorkCounters {
        self.counters
    }

    /// Resets the work counters.
    pub fn reset_counters(&mut self) {
        self.counters = WorkCounters::default();
    }

    /// Criticality of every operator, by insertion position: the share of the cut that the operator's own
    /// capacity accounts for, `1 − cut / cut_without_limit`, where `cut_without_limit` is the cut when the
    /// operator could not be cut at all. 0 for operators no minimum cut needs; 1 when the operator is the only
    /// finite way to separate the data from the answer. Only operators in the found cut can be non-zero, so only
    /// they are recomputed.
    pub fn criticality(&mut self) -> Vec<f64> {
        let cut = self.min_cut();
        let base = self.cut_units();
        let mut out = vec![0.0; self.ids.len()];
        if base == 0 {
            return out;
        }
        let mut counters = self.counters;
        for id in cut.nodes {
            let p = self.positions[&id];
            out[p as usize] = share_of_cut(base, self.cut_without_limit(Unlimited::Node(p), &mut counters));
        }
        self.counters = counters;
        out
    }

    /// Criticality of every data edge in the found cut, as [`criticality`](Self::criticality) defines it for
    /// operators: `(from, to, 1 − cut / cut_without_limit)`.
    pub fn edge_criticality(&mut self) -> Vec<(usize, usize, f64)> {
        let cut = self.min_cut();
        let base = self.cut_units();
        if base == 0 {
            return cut.edges.into_iter().map(|(from, to)| (from, to, 0.0)).collect();
        }
        let mut counters = self.counters;
        let mut out = Vec::with_capacity(cut.edges.len());
        for (from, to) in cut.edges {
            let edge = Unlimited::Edge(self.positions[&from], self.positions[&to]);
            out.push((from, to, share_of_cut(base, self.cut_without_limit(edge, &mut counters))));
        }
        self.counters = counters;
        out
    }

    /// The cut value, in units, on a copy of the solver where `what` cannot be cut.
    fn cut_without_limit(&self, what: Unlimited, counters: &mut WorkCounters) -> u64 {
        match (self.solver.as_ref().expect("built"), what) {
            (Solver::Tree(t), Unlimited::Node(p)) => {
                let mut probe = t.clone();
                probe.set_node(p, UNBOUNDED, counters);
                probe.value()
            }
            (Solver::Tree(t), Unlimited::Edge(a, _)) => {
                let mut probe = t.clone();
                probe.set_edge(a, UNBOUNDED, counters);
                probe.value()
            }
            (Solver::Flow { network, node_edge, data_edge }, what) => {
                let edge = match what {
                    Unlimited::Node(p) => node_edge[p as usize],
                    Unlimited::Edge(a, b) => data_edge[&(a, b)],
                };
                let mut probe = network.clone();
                probe.set_capacity(edge, UNBOUNDED, counters);
                probe.flow()
            }
        }
    }
}

/// What a criticality probe makes uncuttable: an operator, or a data edge (from, to), by position.
#[derive(Debug, Clone, Copy)]
enum Unlimited {
    Node(u32),
    Edge(u32, u32),
}

/// `1 − cut / cut_without_limit` (1 when nothing finite is left to cut), for a non-zero cut.
fn share_of_cut(base: u64, without: u64) -> f64 {
    if without >= UNBOUNDED { 1.0 } else { 1.0 - base as f64 / without as f64 }
}

fn checked_capacity(capacity: f64) -> Result<u64> {
    if capacity.is_nan() || capacity < 0.0 {
        return Err(Error::NotSupported(format!("capacity {capacity} (expected a non-negative number)")));
    }
    Ok(to_units(capacity))
}
