//! `forward_prepared` allocates nothing once the output buffer has held a plan's weights: counted by a global
//! allocator that tallies this thread's allocations. (Its own test binary, so no other test shares the
//! allocator.)
#![allow(unsafe_code)] // a counting GlobalAlloc is inherently unsafe; it only forwards to the system allocator

use ruvector_dag::attention::{AttentionScores, PreparedDag};
use ruvector_dag::dag::generator::{DagShape, generate};
use ruvector_dag_attention::{AttentionConfig, all_mechanisms};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged; counting touches
// only a const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

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
