//! Orders and reachability over a [`QueryDag`].
//!
//! Everything here is O(V + E) and deterministic (ties broken by insertion order). Per-node results come back
//! as vectors indexed by insertion position (see [`QueryDag::position`]), so callers that score every node
//! never hash.

use super::query_dag::QueryDag;
use crate::error::Result;

impl QueryDag {
    /// Node ids in a topological order: every edge's `from` comes before its `to`. Kahn's algorithm, O(V + E):
    /// sources (scans) in insertion order first, then each node as soon as all its inputs are placed.
    ///
    /// # Errors
    /// Never for a DAG built through this API (it cannot hold a cycle); kept fallible so that a future
    /// unchecked construction path cannot return a wrong order silently.
    pub fn topological_sort(&self) -> Result<Vec<usize>> {
        Ok(self.kahn()?.into_iter().map(|s| self.slots[s as usize].id).collect())
    }

    /// Nodes without inputs (scans and other leaves of the plan tree), in insertion order.
    pub fn sources(&self) -> Vec<usize> {
        self.slots.iter().filter(|s| s.children.is_empty()).map(|s| s.id).collect()
    }

    /// Nodes without consumers (the plan's root, and roots of unattached subplans), in insertion order.
    pub fn sinks(&self) -> Vec<usize> {
        self.slots.iter().filter(|s| s.parents.is_empty()).map(|s| s.id).collect()
    }

    /// The plan's root: the only sink, or `None` if there are zero or several.
    pub fn root(&self) -> Option<usize> {
        let mut sinks = self.slots.iter().filter(|s| s.parents.is_empty());
        match (sinks.next(), sinks.next()) {
            (Some(s), None) => Some(s.id),
            _ => None,
        }
    }

    /// Every node that `id`'s output reaches (its consumers, their consumers, …), in insertion order.
    pub fn ancestors(&self, id: usize) -> Result<Vec<usize>> {
        let start = self.slot(id)?;
        Ok(self.reach(start, |s| &self.slots[s as usize].parents))
    }

    /// Every node that feeds `id` directly or indirectly (its whole subplan), in insertion order.
    pub fn descendants(&self, id: usize) -> Result<Vec<usize>> {
        let start = self.slot(id)?;
        Ok(self.reach(start, |s| &self.slots[s as usize].children))
    }

    fn reach<'a>(&'a self, start: u32, next: impl Fn(u32) -> &'a [u32]) -> Vec<usize> {
        let mut seen = vec![false; self.slots.len()];
        let mut stack = vec![start];
        seen[start as usize] = true;
        while let Some(s) = stack.pop() {
            for &n in next(s) {
                if !seen[n as usize] {
                    seen[n as usize] = true;
                    stack.push(n);
                }
            }
        }
        seen[start as usize] = false;
        seen.iter().enumerate().filter(|&(_, &v)| v).map(|(s, _)| self.slots[s].id).collect()
    }

    /// Depth of every node, indexed by insertion position: the length of the longest path from the node up to a
    /// sink. The root has depth 0; a scan under a join under the root has depth 2.
    pub fn depths(&self) -> Vec<usize> {
        let order = self.kahn().expect("a QueryDag is acyclic");
        let mut depth = vec![0usize; self.slots.len()];
        for &s in order.iter().rev() {
            let d = self.slots[s as usize].parents.iter().map(|&p| depth[p as usize] + 1).max();
            depth[s as usize] = d.unwrap_or(0);
        }
        depth
    }

    /// Height of every node, indexed by insertion position: the length of the longest path from a source up to
    /// the node. Scans have height 0; the root's height is the plan's height.
    pub fn heights(&self) -> Vec<usize> {
        let order = self.kahn().expect("a QueryDag is acyclic");
        let mut height = vec![0usize; self.slots.len()];
        for &s in &order {
            let h = self.slots[s as usize].children.iter().map(|&c| height[c as usize] + 1).max();
            height[s as usize] = h.unwrap_or(0);
        }
        height
    }

    /// Depth of one node (see [`depths`](Self::depths); computes all of them, O(V + E)).
    pub fn depth(&self, id: usize) -> Result<usize> {
        let s = self.slot(id)?;
        Ok(self.depths()[s as usize])
    }

    /// Height of one node (see [`heights`](Self::heights); computes all of them, O(V + E)).
    pub fn height(&self, id: usize) -> Result<usize> {
        let s = self.slot(id)?;
        Ok(self.heights()[s as usize])
    }
}

#[cfg(test)]
mod tests {
    use crate::{OperatorNode, QueryDag};

    /// scan0, scan1 -> join2 -> sort3 -> limit4; scan0 also -> sort3 (a shared input).
    fn sample() -> QueryDag {
        let mut dag = QueryDag::new();
        dag.add_node(0, OperatorNode::SeqScan { table: "a".into() });
        dag.add_node(1, OperatorNode::SeqScan { table: "b".into() });
        dag.add_node(2, OperatorNode::NestedLoop { join_type: Default::default() });
        dag.add_node(3, OperatorNode::Sort { keys: vec![] });
        dag.add_node(4, OperatorNode::Limit);
        for (a, b) in [(0, 2), (1, 2), (2, 3), (0, 3), (3, 4)] {
            dag.add_edge(a, b).unwrap();
        }
        dag
    }

    #[test]
    fn orders_and_reachability() {
        let dag = sample();
        assert_eq!(dag.topological_sort().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(dag.sources(), vec![0, 1]);
        assert_eq!(dag.sinks(), vec![4]);
        assert_eq!(dag.root(), Some(4));
        assert_eq!(dag.ancestors(0).unwrap(), vec![2, 3, 4]);
        assert_eq!(dag.ancestors(4).unwrap(), Vec::<usize>::new());
        assert_eq!(dag.descendants(3).unwrap(), vec![0, 1, 2]);
        assert_eq!(dag.depths(), vec![3, 3, 2, 1, 0]);
        assert_eq!(dag.heights(), vec![0, 0, 1, 2, 3]);
        assert_eq!(dag.depth(0).unwrap(), 3);
        assert_eq!(dag.height(4).unwrap(), 3);
        assert!(dag.depth(99).is_err());
    }

    #[test]
    fn root_is_none_for_forests_and_empty_dags() {
        assert_eq!(QueryDag::new().root(), None);
        let mut dag = QueryDag::new();
        dag.add_node(0, OperatorNode::Limit);
        dag.add_node(1, OperatorNode::Limit);
        assert_eq!(dag.root(), None);
        assert_eq!(dag.sinks(), vec![0, 1]);
    }
}
