//! `forward_prepared` allocates nothing once the output buffer has held a plan's weights: counted by a global
//! allocator that tallies this thread's allocations. (Its own test binary, so no other test shares the
//! allocator.)

use ruvector_dag::attention::{AttentionScores, PreparedDag};
use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag_attention::{AttentionConfig, all_mechanisms};
use ruvector_dag_tests::alloc::{CountingAllocator, allocations};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn forward_prepared_does_not_allocate() {
    let mechanisms = all_mechanisms(AttentionConfig::default());
    for shape in DagShape::ALL {
        for n in [10, 100, 1000] {
            let dag = generate(shape, n, 5);
            let prepared = PreparedDag::new(&dag);
            let mut out = AttentionScores::default();
            for m in &mechanisms {
                m.forward_prepared(&prepared, &mut out).unwrap(); // sizes the buffer
                let before = allocations();
                for _ in 0..5 {
                    m.forward_prepared(&prepared, &mut out).unwrap();
                }
                assert_eq!(allocations() - before, 0, "{} allocated on {shape:?} n={n}", m.name());
            }
        }
    }
    // The counter does count: building a DAG allocates.
    let before = allocations();
    let _ = generate(DagShape::Chain, 10, 1);
    assert!(allocations() > before);
}
