//! `exclusive_cost`: an attention mechanism shipped as a plugin library.
//!
//! PostgreSQL's plan costs are cumulative: a node's total cost includes everything below it, so weighing nodes
//! by total cost always points at the root. This mechanism weighs each operator by the cost it adds itself (its
//! total cost minus its inputs' total costs), which is where a plan spends its effort. When the plan carries
//! measured actuals, the measured exclusive time is blended in with weight `actual_weight`.
//!
//! Parameters (`[attention.exclusive_cost]` in `ruvector.toml`):
//! - `actual_weight`, in 0..=1 (default 0.5): share of measured exclusive time, when the plan has actuals.
//! - `floor`, in 0..=1 (default 0.01): every node gets at least this share of the largest weight, so no
//!   operator is ignored entirely.
//!
//! Build it with `cargo build --release -p plugin-example-attention` and list
//! `target/release/libplugin_example_attention.so` under `[[plugins.dynamic]]`; docs/plugin-authors.md walks
//! through it.

use ruvector_dag_plugin_abi::{AttentionPlugin, DagView, Params, PluginDescriptor, export_plugins};

/// Weighs operators by the cost they add themselves.
#[derive(Debug)]
pub struct ExclusiveCost {
    actual_weight: f64,
    floor: f64,
}

impl ExclusiveCost {
    /// Own cost of the node at `p`: its cumulative value minus its inputs', never negative.
    fn own(dag: &DagView<'_>, p: usize, value: impl Fn(usize) -> f64) -> f64 {
        let inputs: f64 = dag.inputs(p).map(&value).sum();
        (value(p) - inputs).max(0.0)
    }
}

impl AttentionPlugin for ExclusiveCost {
    fn new(params: &Params<'_>) -> Result<Self, String> {
        params.deny_unknown(&["actual_weight", "floor"])?;
        Ok(ExclusiveCost {
            actual_weight: params.number_in("actual_weight", 0.5, 0.0..=1.0)?,
            floor: params.number_in("floor", 0.01, 0.0..=1.0)?,
        })
    }

    fn forward(&self, dag: &DagView<'_>, scores: &mut [f32]) -> Result<(), String> {
        let nodes = dag.nodes();
        let planned: Vec<f64> = (0..dag.len()).map(|p| Self::own(dag, p, |q| nodes[q].total_cost.max(0.0))).collect();
        let planned_sum: f64 = planned.iter().sum();
        let measured = nodes.iter().all(|n| n.has_actuals != 0);
        let actual: Vec<f64> = if measured {
            // Actual times are per loop; the node's whole time is time × loops.
            (0..dag.len())
                .map(|p| Self::own(dag, p, |q| (nodes[q].actual_total_ms * nodes[q].actual_loops).max(0.0)))
                .collect()
        } else {
            Vec::new()
        };
        let actual_sum: f64 = actual.iter().sum();
        let blend = if measured && actual_sum > 0.0 { self.actual_weight } else { 0.0 };
        let share = |v: f64, sum: f64| if sum > 0.0 { v / sum } else { 0.0 };
        let mut max = 0.0f64;
        for (p, s) in scores.iter_mut().enumerate() {
            let a = if blend > 0.0 { share(actual[p], actual_sum) } else { 0.0 };
            let w = (1.0 - blend) * share(planned[p], planned_sum) + blend * a;
            max = max.max(w);
            *s = w as f32;
        }
        let floor = (self.floor * max) as f32;
        scores.iter_mut().for_each(|s| *s = s.max(floor));
        Ok(())
    }
}

export_plugins![PluginDescriptor::attention::<ExclusiveCost>(
    "exclusive_cost",
    env!("CARGO_PKG_VERSION"),
    "weight by the cost each operator adds itself (total minus inputs), blended with measured time"
)];

#[cfg(test)]
mod tests {
    use super::*;
    use ruvector_dag_plugin_abi::{FfiEdge, FfiNode, FfiParam};

    fn mech(items: &[FfiParam<'_>]) -> Result<ExclusiveCost, String> {
        ExclusiveCost::new(&Params::from_items("attention.exclusive_cost", items))
    }

    /// Seq Scan (cost 100) and Index Scan (cost 10) feed a Hash Join (total 130, so 20 of its own).
    fn join() -> ([FfiNode<'static>; 3], [FfiEdge; 2]) {
        let nodes = [
            FfiNode::new(1, "Seq Scan", 100.0, 1000.0),
            FfiNode::new(2, "Index Scan", 10.0, 10.0),
            FfiNode::new(3, "Hash Join", 130.0, 10.0),
        ];
        (nodes, [FfiEdge { input: 0, consumer: 2 }, FfiEdge { input: 1, consumer: 2 }])
    }

    #[test]
    fn weighs_own_cost_not_cumulative_cost() {
        let (nodes, edges) = join();
        let dag = DagView::new(&nodes, &edges).unwrap();
        let mut scores = [0.0; 3];
        mech(&[FfiParam::number("floor", 0.0)]).unwrap().forward(&dag, &mut scores).unwrap();
        let sum: f32 = scores.iter().sum();
        let shares: Vec<f32> = scores.iter().map(|s| s / sum).collect();
        assert!((shares[0] - 100.0 / 130.0).abs() < 1e-6, "{shares:?}");
        assert!((shares[2] - 20.0 / 130.0).abs() < 1e-6, "{shares:?}");
    }

    #[test]
    fn measured_time_moves_the_weight() {
        let (mut nodes, edges) = join();
        // Measured: the index scan ran 50 loops of 2 ms; the seq scan 1 ms; the join 1 ms on top.
        for (n, (ms, loops)) in nodes.iter_mut().zip([(1.0, 1.0), (2.0, 50.0), (102.0, 1.0)]) {
            n.has_actuals = 1;
            n.actual_total_ms = ms;
            n.actual_loops = loops;
        }
        let dag = DagView::new(&nodes, &edges).unwrap();
        let mut planned = [0.0; 3];
        let mut blended = [0.0; 3];
        mech(&[FfiParam::number("actual_weight", 0.0)]).unwrap().forward(&dag, &mut planned).unwrap();
        mech(&[FfiParam::number("actual_weight", 1.0)]).unwrap().forward(&dag, &mut blended).unwrap();
        assert!(planned[0] > planned[1]);
        assert!(blended[1] > blended[0], "measured time points at the index scan: {blended:?}");
    }

    #[test]
    fn parameters_are_validated() {
        assert_eq!(
            mech(&[FfiParam::number("floor", 2.0)]).unwrap_err(),
            "attention.exclusive_cost.floor = 2: expected a number in 0..=1"
        );
        assert_eq!(
            mech(&[FfiParam::boolean("decay", true)]).unwrap_err(),
            "unknown key `attention.exclusive_cost.decay`; known parameters: actual_weight, floor"
        );
    }
}
