//! The bounded, lock-free buffer of executions between the query path and the background tier.
//!
//! A [`DagTrajectoryBuffer`] wraps crossbeam's `ArrayQueue`. **Overflow policy: drop oldest.** When full, a push
//! replaces the oldest waiting trajectory (the freshest evidence is the most useful to the next cycle) and counts
//! it as dropped. Pushes and drains never block each other.

use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};

/// One execution, as the learning tiers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct DagTrajectory {
    /// The plan's embedding.
    pub embedding: Vec<f32>,
    /// Structural hash of the plan (its class).
    pub plan_hash: u64,
    /// The ReasoningBank pattern the execution was recorded in.
    pub pattern_id: u64,
    /// Measured latency in milliseconds.
    pub latency_ms: f64,
    /// Planner settings in force (empty for the native plan).
    pub settings: Vec<(String, String)>,
}

/// Lock-free bounded buffer of trajectories (see the [module docs](self)).
#[derive(Debug)]
pub struct DagTrajectoryBuffer {
    queue: ArrayQueue<DagTrajectory>,
    seen: AtomicU64,
    dropped: AtomicU64,
}

impl DagTrajectoryBuffer {
    /// A buffer holding at most `capacity` trajectories (at least 1).
    pub fn new(capacity: usize) -> Self {
        DagTrajectoryBuffer {
            queue: ArrayQueue::new(capacity.max(1)),
            seen: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Adds a trajectory; when full, the oldest waiting one is dropped (and counted).
    pub fn push(&self, t: DagTrajectory) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        if self.queue.force_push(t).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes every waiting trajectory, oldest first.
    pub fn drain(&self) -> Vec<DagTrajectory> {
        let mut out = Vec::with_capacity(self.queue.len());
        while let Some(t) = self.queue.pop() {
            out.push(t);
        }
        out
    }

    /// Trajectories waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when none are waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Trajectories pushed since creation.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Trajectories dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: f64) -> DagTrajectory {
        DagTrajectory { embedding: vec![], plan_hash: 0, pattern_id: 0, latency_ms: ms, settings: vec![] }
    }

    #[test]
    fn drops_the_oldest_when_full() {
        let b = DagTrajectoryBuffer::new(3);
        for i in 0..5 {
            b.push(t(f64::from(i)));
        }
        assert_eq!((b.seen(), b.dropped(), b.len()), (5, 2, 3));
        let kept: Vec<f64> = b.drain().iter().map(|x| x.latency_ms).collect();
        assert_eq!(kept, vec![2.0, 3.0, 4.0]);
        assert!(b.is_empty());
    }
}
