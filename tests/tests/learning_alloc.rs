//! MicroLoRA's adaptation step and prediction allocate nothing (its scratch buffers are owned by the adapter), with
//! or without the EWC++ penalty: counted by a global allocator that tallies this thread's allocations.

use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag_learning::{EwcPlusPlus, LoRa};
use ruvector_dag_tests::alloc::{CountingAllocator, allocations};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn micro_lora_adapt_does_not_allocate() {
    let x = generate(DagShape::BushyJoin, 100, 4).embedding();
    for rank in [1, 2] {
        let mut micro = LoRa::micro(256, rank, 0.1, 9);
        let mut ewc = EwcPlusPlus::new(micro.parameter_count(), 10.0, 0.999);
        micro.adapt(&x, 1.0, Some(&mut ewc));
        ewc.consolidate(micro.parameters());
        let before = allocations();
        for i in 0..100 {
            micro.adapt(&x, i as f32 * 0.01, None);
            micro.adapt(&x, 2.0, Some(&mut ewc));
            std::hint::black_box(micro.predict(&x));
        }
        assert_eq!(allocations() - before, 0, "rank {rank}");
    }
    // The counter does count: a new adapter allocates.
    let before = allocations();
    std::hint::black_box(LoRa::micro(256, 2, 0.1, 1));
    assert!(allocations() > before);
}
