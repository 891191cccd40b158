//! [`QueryDag`]: a query plan as a directed acyclic graph of operators.

use super::operator_node::{NodeInfo, OperatorNode};
use crate::error::{Error, Result};
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;
use std::fmt;

/// Adjacency list of dense slot indices, kept sorted (slots are insertion order). Plan nodes have at most two
/// inputs and usually one consumer, so two fit inline without allocating.
pub(crate) type Adj = SmallVec<[u32; 2]>;

#[derive(Clone, PartialEq)]
pub(crate) struct Slot {
    pub(crate) id: usize,
    pub(crate) op: OperatorNode,
    pub(crate) info: NodeInfo,
    /// Inputs: nodes whose output flows into this one (plan-tree children).
    pub(crate) children: Adj,
    /// Consumers: nodes this one's output flows into (plan-tree parents).
    pub(crate) parents: Adj,
}

/// A query plan as a DAG of operators.
///
/// **Nodes** carry a caller-chosen `usize` id, an [`OperatorNode`] and a [`NodeInfo`] (estimates, filter,
/// actuals). **Edges** follow the data: `add_edge(from, to)` means `from`'s rows flow into `to`, so a scan feeds
/// the join above it and the plan's root is a *sink*. In plan-tree terms `from` is a *child* of `to`; accordingly
/// [`children`](Self::children) are a node's inputs, [`parents`](Self::parents) its consumers,
/// [`descendants`](Self::descendants) everything below it and [`ancestors`](Self::ancestors) everything above.
/// A node may have several parents: that is how shared subplans (a CTE read by two CTE scans) are expressed.
///
/// The graph is acyclic at all times: [`add_edge`](Self::add_edge) rejects an edge that would close a cycle,
/// names the cycle, and leaves the DAG unchanged. It keeps a topological order incrementally
/// (Pearce–Kelly), so adding an edge that agrees with the current order — the usual case when a plan is built
/// bottom-up — costs O(degree), and any other edge costs time proportional to the part of the order it
/// rearranges.
///
/// Iteration order (ids, edges, topological order) is deterministic: nodes in insertion order, each node's
/// inputs and consumers in their insertion order. Two DAGs are equal when they hold the same nodes, in the same
/// insertion order, with the same operators, infos and edges.
///
/// ```
/// use ruvector_dag::{OperatorNode, QueryDag};
/// let mut dag = QueryDag::new();
/// dag.add_node(0, OperatorNode::SeqScan { table: "users".into() });
/// dag.add_node(1, OperatorNode::Filter { predicate: "id > 0".into() });
/// dag.add_edge(0, 1).unwrap();
/// assert_eq!(dag.topological_sort().unwrap(), vec![0, 1]);
/// assert!(dag.add_edge(1, 0).is_err()); // would close the cycle 1 -> 0 -> 1
/// ```
#[derive(Clone, Default)]
pub struct QueryDag {
    pub(crate) slots: Vec<Slot>,
    index: FxHashMap<usize, u32>,
    edge_count: usize,
    /// Pearce–Kelly order: `ord[slot]` is the slot's position in a topological order; `at` is its inverse.
    ord: Vec<u32>,
    at: Vec<u32>,
}

impl PartialEq for QueryDag {
    fn eq(&self, other: &Self) -> bool {
        // The incremental order is bookkeeping (different histories give different valid orders): not compared.
        self.edge_count == other.edge_count && self.slots == other.slots
    }
}

impl Eq for QueryDag {}

impl fmt::Debug for QueryDag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Nodes<'a>(&'a QueryDag);
        impl fmt::Debug for Nodes<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.slots.iter().map(|s| (s.id, (&s.op, &s.info)))).finish()
            }
        }
        struct Edges<'a>(&'a QueryDag);
        impl fmt::Debug for Edges<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.edges().map(|(a, b)| format!("{a} -> {b}"))).finish()
            }
        }
        f.debug_struct("QueryDag").field("nodes", &Nodes(self)).field("edges", &Edges(self)).finish()
    }
}

/// A borrowed view of one node.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    /// Node id.
    pub id: usize,
    /// The operator.
    pub op: &'a OperatorNode,
    /// Estimates, filter, actuals.
    pub info: &'a NodeInfo,
}

impl QueryDag {
    /// An empty DAG.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty DAG with room for `nodes` nodes.
    pub fn with_capacity(nodes: usize) -> Self {
        QueryDag {
            slots: Vec::with_capacity(nodes),
            index: FxHashMap::with_capacity_and_hasher(nodes, Default::default()),
            edge_count: 0,
            ord: Vec::with_capacity(nodes),
            at: Vec::with_capacity(nodes),
        }
    }

    /// Adds node `id` with default [`NodeInfo`]. If `id` exists, its operator is replaced (edges and info are
    /// kept) and the previous operator returned, like `HashMap::insert`.
    pub fn add_node(&mut self, id: usize, op: OperatorNode) -> Option<OperatorNode> {
        match self.index.get(&id) {
            Some(&slot) => Some(std::mem::replace(&mut self.slots[slot as usize].op, op)),
            None => {
                self.push_slot(id, op, NodeInfo::default());
                None
            }
        }
    }

    /// Adds node `id` with its estimates and other info. If `id` exists, operator and info are replaced (edges
    /// are kept) and the previous operator returned.
    pub fn add_node_with(&mut self, id: usize, op: OperatorNode, info: NodeInfo) -> Option<OperatorNode> {
        match self.index.get(&id) {
            Some(&slot) => {
                let s = &mut self.slots[slot as usize];
                s.info = info;
                Some(std::mem::replace(&mut s.op, op))
            }
            None => {
                self.push_slot(id, op, info);
                None
            }
        }
    }

    fn push_slot(&mut self, id: usize, op: OperatorNode, info: NodeInfo) {
        let slot = u32::try_from(self.slots.len()).expect("a QueryDag holds at most u32::MAX nodes");
        self.index.insert(id, slot);
        self.slots.push(Slot { id, op, info, children: Adj::new(), parents: Adj::new() });
        self.ord.push(slot);
        self.at.push(slot);
    }

    /// Adds the edge `from -> to`: `from`'s output flows into `to`.
    ///
    /// # Errors
    /// [`Error::UnknownNode`] if either id is missing, [`Error::SelfLoop`] if `from == to`,
    /// [`Error::DuplicateEdge`] if the edge exists, [`Error::Cycle`] (naming the cycle) if `to` already reaches
    /// `from`. On error the DAG is unchanged.
    pub fn add_edge(&mut self, from: usize, to: usize) -> Result<()> {
        let x = self.slot(from)?;
        let y = self.slot(to)?;
        if x == y {
            return Err(Error::SelfLoop(from));
        }
        let parents = &self.slots[x as usize].parents;
        if parents.binary_search(&y).is_ok() {
            return Err(Error::DuplicateEdge { from, to });
        }
        if self.ord[x as usize] > self.ord[y as usize] {
            self.reorder(x, y)?;
        }
        insert_sorted(&mut self.slots[x as usize].parents, y);
        insert_sorted(&mut self.slots[y as usize].children, x);
        self.edge_count += 1;
        Ok(())
    }

    /// Pearce–Kelly: the new edge `x -> y` violates the order (`ord[y] < ord[x]`). Find the nodes reachable from
    /// `y` that sit before `x` (forward set) and the nodes reaching `x` that sit after `y` (backward set); if
    /// the forward search meets `x` the edge closes a cycle. Otherwise give the affected positions to the
    /// backward set first, then the forward set, each in its old relative order.
    fn reorder(&mut self, x: u32, y: u32) -> Result<()> {
        let (lb, ub) = (self.ord[y as usize], self.ord[x as usize]);

        // Forward search from y over consumers, bounded by ub; `pred` doubles as the visited set.
        let mut pred: FxHashMap<u32, u32> = FxHashMap::default();
        let mut forward = vec![y];
        let mut stack = vec![y];
        pred.insert(y, y);
        while let Some(n) = stack.pop() {
            for &w in &self.slots[n as usize].parents {
                if w == x {
                    let mut path = vec![self.slots[x as usize].id];
                    let mut cur = n;
                    let mut back = vec![self.slots[cur as usize].id];
                    while cur != y {
                        cur = pred[&cur];
                        back.push(self.slots[cur as usize].id);
                    }
                    path.extend(back.into_iter().rev());
                    path.push(self.slots[x as usize].id);
                    return Err(Error::Cycle { cycle: path });
                }
                if self.ord[w as usize] < ub && !pred.contains_key(&w) {
                    pred.insert(w, n);
                    forward.push(w);
                    stack.push(w);
                }
            }
        }

        // Backward search from x over inputs, bounded by lb.
        let mut seen: FxHashSet<u32> = FxHashSet::default();
        let mut backward = vec![x];
        stack.push(x);
        seen.insert(x);
        while let Some(n) = stack.pop() {
            for &w in &self.slots[n as usize].children {
                if self.ord[w as usize] > lb && seen.insert(w) {
                    backward.push(w);
                    stack.push(w);
                }
            }
        }

        backward.sort_unstable_by_key(|&s| self.ord[s as usize]);
        forward.sort_unstable_by_key(|&s| self.ord[s as usize]);
        let mut positions: Vec<u32> = backward.iter().chain(forward.iter()).map(|&s| self.ord[s as usize]).collect();
        positions.sort_unstable();
        for (&slot, &pos) in backward.iter().chain(forward.iter()).zip(&positions) {
            self.ord[slot as usize] = pos;
            self.at[pos as usize] = slot;
        }
        Ok(())
    }

    /// Builds a DAG from nodes and edges in one pass, validating everything; faster than repeated
    /// [`add_edge`](Self::add_edge) because acyclicity is checked once (Kahn's algorithm), not per edge.
    ///
    /// Used by deserialisation, plan import and generators.
    ///
    /// # Errors
    /// [`Error::DuplicateNode`], [`Error::UnknownNode`], [`Error::SelfLoop`], [`Error::DuplicateEdge`], or
    /// [`Error::Cycle`] naming one cycle.
    pub fn try_from_parts(
        nodes: impl IntoIterator<Item = (usize, OperatorNode, NodeInfo)>,
        edges: impl IntoIterator<Item = (usize, usize)>,
    ) -> Result<Self> {
        let nodes = nodes.into_iter();
        let mut dag = QueryDag::with_capacity(nodes.size_hint().0);
        for (id, op, info) in nodes {
            if dag.index.contains_key(&id) {
                return Err(Error::DuplicateNode(id));
            }
            dag.push_slot(id, op, info);
        }
        for (from, to) in edges {
            let x = dag.slot(from)?;
            let y = dag.slot(to)?;
            if x == y {
                return Err(Error::SelfLoop(from));
            }
            dag.slots[x as usize].parents.push(y);
            dag.slots[y as usize].children.push(x);
            dag.edge_count += 1;
        }
        for s in &mut dag.slots {
            s.parents.sort_unstable();
            s.children.sort_unstable();
        }
        for s in &dag.slots {
            if let Some(w) = s.parents.windows(2).find(|w| w[0] == w[1]) {
                return Err(Error::DuplicateEdge { from: s.id, to: dag.slots[w[0] as usize].id });
            }
        }
        let order = dag.kahn()?;
        for (pos, &slot) in order.iter().enumerate() {
            dag.ord[slot as usize] = pos as u32;
            dag.at[pos] = slot;
        }
        Ok(dag)
    }

    /// Kahn's algorithm over slots: sources in insertion order first, consumers in insertion order. O(V + E).
    /// On a cycle, names one.
    pub(crate) fn kahn(&self) -> Result<Vec<u32>> {
        let n = self.slots.len();
        let mut indegree: Vec<u32> = self.slots.iter().map(|s| s.children.len() as u32).collect();
        let mut order: Vec<u32> = Vec::with_capacity(n);
        order.extend((0..n as u32).filter(|&s| indegree[s as usize] == 0));
        let mut head = 0;
        while head < order.len() {
            let s = order[head];
            head += 1;
            for &p in &self.slots[s as usize].parents {
                indegree[p as usize] -= 1;
                if indegree[p as usize] == 0 {
                    order.push(p);
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        // Every node left has an input that is also left: walk inputs until a node repeats.
        let start = (0..n).find(|&s| indegree[s] > 0).expect("some node is left") as u32;
        let mut on_walk: FxHashMap<u32, usize> = FxHashMap::default();
        let mut walk = Vec::new();
        let mut cur = start;
        while !on_walk.contains_key(&cur) {
            on_walk.insert(cur, walk.len());
            walk.push(cur);
            cur = *self.slots[cur as usize]
                .children
                .iter()
                .find(|&&c| indegree[c as usize] > 0)
                .expect("a node left by Kahn has an input that is left too");
        }
        // walk[k..] follows inputs backwards; reverse it so the cycle reads along the edges.
        let k = on_walk[&cur];
        let mut cycle: Vec<usize> = walk[k..].iter().rev().map(|&s| self.slots[s as usize].id).collect();
        cycle.push(cycle[0]);
        Err(Error::Cycle { cycle })
    }

    // ---- lookup ------------------------------------------------------------------------------------------

    /// Dense index of `id` (its insertion position).
    pub(crate) fn slot(&self, id: usize) -> Result<u32> {
        self.index.get(&id).copied().ok_or(Error::UnknownNode(id))
    }

    /// Insertion position of node `id`, in `0..node_count()`: the index of the node's entry in per-node vectors
    /// such as [`depths`](Self::depths).
    pub fn position(&self, id: usize) -> Option<usize> {
        self.index.get(&id).map(|&s| s as usize)
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.slots.len()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edge_count
    }

    /// True when the DAG has no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// True when node `id` exists.
    pub fn contains(&self, id: usize) -> bool {
        self.index.contains_key(&id)
    }

    /// True when the edge `from -> to` exists.
    pub fn has_edge(&self, from: usize, to: usize) -> bool {
        match (self.index.get(&from), self.index.get(&to)) {
            (Some(&x), Some(&y)) => self.slots[x as usize].parents.binary_search(&y).is_ok(),
            _ => false,
        }
    }

    /// The operator of node `id`.
    pub fn node(&self, id: usize) -> Option<&OperatorNode> {
        self.index.get(&id).map(|&s| &self.slots[s as usize].op)
    }

    /// The operator of node `id`, mutably.
    pub fn node_mut(&mut self, id: usize) -> Option<&mut OperatorNode> {
        self.index.get(&id).map(|&s| &mut self.slots[s as usize].op)
    }

    /// Estimates, filter and actuals of node `id`.
    pub fn info(&self, id: usize) -> Option<&NodeInfo> {
        self.index.get(&id).map(|&s| &self.slots[s as usize].info)
    }

    /// Estimates, filter and actuals of node `id`, mutably.
    pub fn info_mut(&mut self, id: usize) -> Option<&mut NodeInfo> {
        self.index.get(&id).map(|&s| &mut self.slots[s as usize].info)
    }

    /// Node ids in insertion order.
    pub fn node_ids(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.slots.iter().map(|s| s.id)
    }

    /// Nodes in insertion order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = NodeRef<'_>> + '_ {
        self.slots.iter().map(|s| NodeRef { id: s.id, op: &s.op, info: &s.info })
    }

    /// Edges `(from, to)`, grouped by consumer `to` in insertion order, inputs in insertion order.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.slots.iter().flat_map(move |s| s.children.iter().map(move |&c| (self.slots[c as usize].id, s.id)))
    }

    /// Inputs of node `id` (plan-tree children), in insertion order.
    pub fn children(&self, id: usize) -> Result<impl ExactSizeIterator<Item = usize> + '_> {
        let s = self.slot(id)?;
        Ok(self.slots[s as usize].children.iter().map(move |&c| self.slots[c as usize].id))
    }

    /// Consumers of node `id` (plan-tree parents), in insertion order.
    pub fn parents(&self, id: usize) -> Result<impl ExactSizeIterator<Item = usize> + '_> {
        let s = self.slot(id)?;
        Ok(self.slots[s as usize].parents.iter().map(move |&p| self.slots[p as usize].id))
    }
}

/// Inserts `v` into a sorted adjacency list; appending, the common case when building bottom-up, is O(1).
fn insert_sorted(adj: &mut Adj, v: u32) {
    match adj.last() {
        Some(&last) if last > v => {
            let at = adj.binary_search(&v).unwrap_or_else(|e| e);
            adj.insert(at, v);
        }
        _ => adj.push(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(t: &str) -> OperatorNode {
        OperatorNode::SeqScan { table: t.into() }
    }

    fn chain(n: usize) -> QueryDag {
        let mut dag = QueryDag::new();
        for i in 0..n {
            dag.add_node(i, scan("t"));
        }
        for i in 1..n {
            dag.add_edge(i - 1, i).unwrap();
        }
        dag
    }

    #[test]
    fn milestone_snippet() {
        let mut dag = QueryDag::new();
        dag.add_node(0, OperatorNode::SeqScan { table: "users".into() });
        dag.add_node(1, OperatorNode::Filter { predicate: "id > 0".into() });
        dag.add_edge(0, 1).unwrap();
        assert_eq!(dag.topological_sort().unwrap(), vec![0, 1]);
    }

    #[test]
    fn edge_errors_are_typed_and_leave_the_dag_unchanged() {
        let mut dag = chain(4);
        let before = dag.clone();
        assert!(matches!(dag.add_edge(0, 9), Err(Error::UnknownNode(9))));
        assert!(matches!(dag.add_edge(2, 2), Err(Error::SelfLoop(2))));
        assert!(matches!(dag.add_edge(1, 2), Err(Error::DuplicateEdge { from: 1, to: 2 })));
        match dag.add_edge(3, 0) {
            Err(Error::Cycle { cycle }) => assert_eq!(cycle, vec![3, 0, 1, 2, 3]),
            other => panic!("expected a cycle, got {other:?}"),
        }
        assert_eq!(dag, before);
        assert_eq!(dag.topological_sort().unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn edges_against_the_order_reorder_it() {
        // Insert consumers before producers, so every edge goes against the insertion order.
        let mut dag = QueryDag::new();
        for i in (0..6).rev() {
            dag.add_node(i, scan("t"));
        }
        for i in 1..6 {
            dag.add_edge(i - 1, i).unwrap();
        }
        assert_eq!(dag.topological_sort().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        let err = dag.add_edge(5, 0).unwrap_err();
        assert_eq!(err.to_string(), "cycle 5 -> 0 -> 1 -> 2 -> 3 -> 4 -> 5");
        // The internal order is still a valid topological order.
        for (from, to) in dag.edges() {
            let (x, y) = (dag.slot(from).unwrap(), dag.slot(to).unwrap());
            assert!(dag.ord[x as usize] < dag.ord[y as usize]);
        }
    }

    #[test]
    fn add_node_replaces_operator_and_keeps_edges() {
        let mut dag = chain(2);
        let old = dag.add_node(1, OperatorNode::Limit);
        assert_eq!(old, Some(scan("t")));
        assert!(dag.has_edge(0, 1));
        assert_eq!(dag.node(1), Some(&OperatorNode::Limit));
    }

    #[test]
    fn from_parts_validates() {
        let nodes = || (0..3).map(|i| (i, scan("t"), NodeInfo::default()));
        let dag = QueryDag::try_from_parts(nodes(), [(0, 1), (1, 2)]).unwrap();
        assert_eq!(dag, chain(3));
        assert!(matches!(
            QueryDag::try_from_parts(nodes(), [(0, 1), (0, 1)]),
            Err(Error::DuplicateEdge { from: 0, to: 1 })
        ));
        assert!(matches!(QueryDag::try_from_parts(nodes(), [(0, 0)]), Err(Error::SelfLoop(0))));
        assert!(matches!(QueryDag::try_from_parts(nodes(), [(0, 7)]), Err(Error::UnknownNode(7))));
        let dup = (0..2).chain(0..1).map(|i| (i, scan("t"), NodeInfo::default()));
        assert!(matches!(QueryDag::try_from_parts(dup, []), Err(Error::DuplicateNode(0))));
        match QueryDag::try_from_parts(nodes(), [(0, 1), (1, 2), (2, 1)]) {
            Err(Error::Cycle { cycle }) => {
                assert_eq!(cycle.first(), cycle.last());
                assert_eq!(cycle.len(), 3);
                for w in cycle.windows(2) {
                    assert!([(1, 2), (2, 1)].contains(&(w[0], w[1])));
                }
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn edges_and_neighbours_are_in_insertion_order() {
        let mut dag = QueryDag::new();
        for i in 0..4 {
            dag.add_node(i, scan("t"));
        }
        dag.add_edge(2, 3).unwrap();
        dag.add_edge(0, 3).unwrap();
        dag.add_edge(1, 3).unwrap();
        assert_eq!(dag.children(3).unwrap().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(dag.edges().collect::<Vec<_>>(), vec![(0, 3), (1, 3), (2, 3)]);
        assert_eq!(dag.parents(0).unwrap().collect::<Vec<_>>(), vec![3]);
        assert!(dag.children(17).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// After any sequence of insertions, accepted or rejected, `ord`/`at` are inverse permutations and every
        /// edge goes forward in `ord`.
        #[test]
        fn incremental_order_stays_a_topological_order(
            n in 1usize..30,
            attempts in proptest::collection::vec((0usize..30, 0usize..30), 0..120),
        ) {
            let mut dag = QueryDag::new();
            for i in (0..n).rev() {
                dag.add_node(i * 3, OperatorNode::Limit);
            }
            for (a, b) in attempts {
                let _ = dag.add_edge((a % n) * 3, (b % n) * 3);
                for (pos, &slot) in dag.at.iter().enumerate() {
                    proptest::prop_assert_eq!(dag.ord[slot as usize] as usize, pos);
                }
                for (from, to) in dag.edges() {
                    let (x, y) = (dag.slot(from).unwrap(), dag.slot(to).unwrap());
                    proptest::prop_assert!(dag.ord[x as usize] < dag.ord[y as usize]);
                }
            }
        }
    }
}
