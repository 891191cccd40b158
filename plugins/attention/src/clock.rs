//! Clocks for mechanisms that learn over time: injected, so tests control time and results are reproducible.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A monotonic clock in milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since an arbitrary, fixed origin; never decreases.
    fn now_ms(&self) -> f64;
}

/// Real time, from `Instant`, relative to the clock's creation.
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1000.0
    }
}

/// A clock that only moves when told to (tests, replays). Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `ms` (negative or NaN values are ignored: the clock never goes back).
    pub fn advance(&self, ms: f64) {
        if ms > 0.0 {
            let now = f64::from_bits(self.0.load(Ordering::Acquire));
            self.0.store((now + ms).to_bits(), Ordering::Release);
        }
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Acquire))
    }
}
