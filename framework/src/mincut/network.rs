//! The flow network of a plan: capacities from a configurable cost model, integer arithmetic.
//!
//! Every operator `v` is split into `v_in → v_out` with the operator's capacity; every data edge `u → v` becomes
//! `u_out → v_in` with the edge's capacity; a super-source `S` feeds every source (scan) and the root's output
//! drains into the sink `T`, both without limit. A minimum `S`–`T` cut is then the cheapest set of operators and
//! intermediate results that every path from the data to the result must cross.
//!
//! Capacities are converted to integers (thousandths of a cost unit) so that max-flow is exact and terminates;
//! [`UNBOUNDED`] stands for "never cut".

use crate::dag::{NodeInfo, QueryDag};

/// Integer capacity meaning "cannot be cut".
pub const UNBOUNDED: u64 = u64::MAX / 4;

/// Integer units per cost unit.
pub(crate) const SCALE: f64 = 1000.0;

/// What an operator's split edge costs to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeCapacity {
    /// The operator's own cost: its total minus its inputs' totals (never below passing its rows through,
    /// `cpu_tuple_cost × rows`, so pass-through nodes such as `Hash` are not free).
    #[default]
    SelfCost,
    /// The operator's cumulative total cost.
    TotalCost,
    /// Operators are never cut: only edges (intermediate results) are.
    Unbounded,
}

/// What a data edge costs to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EdgeCapacity {
    /// Bytes of the intermediate result (`rows × width`), in page-cost units (`bytes / 8192`, the cost of writing
    /// it out once at `seq_page_cost = 1`), so that operators and results are commensurable.
    #[default]
    Bytes,
    /// Estimated rows, at `cpu_tuple_cost = 0.01` per row.
    Rows,
    /// Edges are never cut: only operators are.
    Unbounded,
}

/// How capacities are derived from plan estimates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CostModel {
    /// Capacity of operators.
    pub node: NodeCapacity,
    /// Capacity of data edges.
    pub edge: EdgeCapacity,
}

/// PostgreSQL's default `cpu_tuple_cost`.
const CPU_TUPLE_COST: f64 = 0.01;
/// Bytes per page: a page written costs `seq_page_cost = 1`.
const PAGE_BYTES: f64 = 8192.0;

/// Converts a capacity in cost units to integer units (saturating at [`UNBOUNDED`], never zero for positive
/// finite input so that no operator is free by rounding).
pub(crate) fn to_units(cost: f64) -> u64 {
    if !cost.is_finite() || cost >= (UNBOUNDED as f64) / SCALE {
        return UNBOUNDED;
    }
    if cost <= 0.0 {
        return 0;
    }
    ((cost * SCALE).round() as u64).clamp(1, UNBOUNDED)
}

/// Converts integer units back to cost units ([`UNBOUNDED`] → infinity).
pub(crate) fn from_units(units: u64) -> f64 {
    if units >= UNBOUNDED { f64::INFINITY } else { units as f64 / SCALE }
}

impl CostModel {
    /// Capacity of each operator, by insertion position, in integer units.
    pub(crate) fn node_capacities(&self, dag: &QueryDag) -> Vec<u64> {
        let totals: Vec<f64> = dag.nodes().map(|n| n.info.estimates.total_cost).collect();
        dag.slots
            .iter()
            .map(|s| match self.node {
                NodeCapacity::Unbounded => UNBOUNDED,
                NodeCapacity::TotalCost => to_units(s.info.estimates.total_cost.max(0.0)),
                NodeCapacity::SelfCost => {
                    let inputs: f64 = s.children.iter().map(|&c| totals[c as usize]).sum();
                    to_units(self_cost(&s.info, inputs))
                }
            })
            .collect()
    }

    /// Capacity of a data edge leaving an operator with `info`, in integer units.
    pub(crate) fn edge_capacity(&self, info: &NodeInfo) -> u64 {
        let e = &info.estimates;
        match self.edge {
            EdgeCapacity::Unbounded => UNBOUNDED,
            EdgeCapacity::Bytes => to_units((e.rows.max(0.0) * f64::from(e.width.max(1))) / PAGE_BYTES),
            EdgeCapacity::Rows => to_units(e.rows.max(0.0) * CPU_TUPLE_COST),
        }
    }
}

/// An operator's own cost: total minus inputs, at least the cost of passing its rows through.
pub(crate) fn self_cost(info: &NodeInfo, inputs_total: f64) -> f64 {
    let e = &info.estimates;
    (e.total_cost - inputs_total).max(e.rows.max(1.0) * CPU_TUPLE_COST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_conversion_round_trips_and_saturates() {
        assert_eq!(to_units(1.5), 1500);
        assert_eq!(from_units(1500), 1.5);
        assert_eq!(to_units(f64::INFINITY), UNBOUNDED);
        assert_eq!(to_units(1e300), UNBOUNDED);
        assert_eq!(from_units(UNBOUNDED), f64::INFINITY);
        assert_eq!(to_units(1e-9), 1, "positive capacities never round to zero");
        assert_eq!(to_units(-3.0), 0);
    }

    #[test]
    fn self_cost_has_a_floor() {
        let hash = NodeInfo::with_estimates(10.0, 10.0, 500.0, 8);
        assert_eq!(self_cost(&hash, 10.0), 5.0, "a Hash passing 500 rows costs at least 500 × 0.01");
        let sort = NodeInfo::with_estimates(90.0, 100.0, 10.0, 8);
        assert_eq!(self_cost(&sort, 40.0), 60.0);
    }
}
