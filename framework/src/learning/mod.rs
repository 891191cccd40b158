//! Learning from executed queries.
//!
//! A [`LearningTier`] sees every plan before it runs ([`pre_query`](LearningTier::pre_query), where it may
//! [`Advise`](Advice) different planner settings) and after it ran
//! ([`post_query`](LearningTier::post_query), with the measured [`ExecutionMetrics`]); periodically, off the
//! query path, [`run_cycle`](LearningTier::run_cycle) does the heavy work (clustering, consolidation). The
//! product ships two tiers — an instant one (µs budget, per query) and a background one (batch) — and a tier
//! set is a `Vec` of them.

pub mod embedding;

use crate::dag::QueryDag;
use crate::error::Result;

/// What happened when a plan ran.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutionMetrics {
    /// Wall-clock execution time in milliseconds.
    pub latency_ms: f64,
    /// Planning time in milliseconds, when measured.
    pub planning_ms: Option<f64>,
    /// Rows returned by the plan's root, when known.
    pub rows: Option<f64>,
    /// Planner settings that were in force because of [`Advice`] (empty for the native plan).
    pub settings: Vec<(String, String)>,
}

/// A tier's recommendation for a plan about to run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Advice {
    /// Planner settings to apply (`enable_nestloop = off`, `work_mem = 64MB`, …); empty means "keep native".
    pub settings: Vec<(String, String)>,
    /// Predicted latency under `settings` relative to the native plan (0.5 = twice as fast).
    pub predicted_ratio: f64,
    /// Confidence in `[0, 1]`.
    pub confidence: f64,
    /// The learned pattern the advice comes from, if any.
    pub pattern_id: Option<u64>,
}

/// What one background cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CycleReport {
    /// Trajectories consumed.
    pub trajectories_processed: usize,
    /// Patterns created or changed.
    pub patterns_updated: usize,
    /// New clusters formed.
    pub new_clusters: usize,
    /// Parameters whose EWC anchor or importance changed.
    pub ewc_constraints_updated: usize,
}

impl std::ops::AddAssign for CycleReport {
    fn add_assign(&mut self, o: Self) {
        self.trajectories_processed += o.trajectories_processed;
        self.patterns_updated += o.patterns_updated;
        self.new_clusters += o.new_clusters;
        self.ewc_constraints_updated += o.ewc_constraints_updated;
    }
}

/// One tier of learning.
///
/// Every hook has a no-op default, so a tier implements only what it does: an instant tier overrides
/// `pre_query` and `post_query`, a background tier `post_query` (to collect) and `run_cycle`. `pre_query` takes
/// `&self` because it runs on the query path and must not contend; learning happens in `post_query` and
/// `run_cycle`.
///
/// `Option<T>` is a tier (`None` does nothing), and so is `Vec<T>`: it asks every tier and returns the most
/// confident advice, and feeds every tier the same feedback.
///
/// ```
/// use ruvector_dag::learning::{Advice, ExecutionMetrics, LearningTier};
/// use ruvector_dag::{QueryDag, Result};
///
/// /// Remembers the last latency and advises nothing.
/// #[derive(Default)]
/// struct LastLatency(f64);
///
/// impl LearningTier for LastLatency {
///     fn name(&self) -> &str { "last_latency" }
///     fn post_query(&mut self, _dag: &QueryDag, m: &ExecutionMetrics) -> Result<()> {
///         self.0 = m.latency_ms;
///         Ok(())
///     }
/// }
///
/// let mut tiers = vec![LastLatency::default()];
/// tiers.post_query(&QueryDag::new(), &ExecutionMetrics { latency_ms: 4.5, ..Default::default() })?;
/// assert_eq!(tiers[0].0, 4.5);
/// assert_eq!(tiers.pre_query(&QueryDag::new())?, None);
/// # Ok::<(), ruvector_dag::Error>(())
/// ```
pub trait LearningTier: Send {
    /// The tier's registered name, e.g. `instant`.
    fn name(&self) -> &str;

    /// Advice for a plan about to run, or `None` to keep the native plan. Default: `None`.
    fn pre_query(&self, dag: &QueryDag) -> Result<Option<Advice>> {
        let _ = dag;
        Ok(None)
    }

    /// Learns from one execution. Default: ignores it.
    fn post_query(&mut self, dag: &QueryDag, metrics: &ExecutionMetrics) -> Result<()> {
        let _ = (dag, metrics);
        Ok(())
    }

    /// Periodic batch work, off the query path. Default: nothing.
    fn run_cycle(&mut self) -> Result<CycleReport> {
        Ok(CycleReport::default())
    }
}

impl<T: LearningTier + ?Sized> LearningTier for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn pre_query(&self, dag: &QueryDag) -> Result<Option<Advice>> {
        (**self).pre_query(dag)
    }
    fn post_query(&mut self, dag: &QueryDag, metrics: &ExecutionMetrics) -> Result<()> {
        (**self).post_query(dag, metrics)
    }
    fn run_cycle(&mut self) -> Result<CycleReport> {
        (**self).run_cycle()
    }
}

impl<T: LearningTier> LearningTier for Option<T> {
    fn name(&self) -> &str {
        self.as_ref().map_or("none", T::name)
    }
    fn pre_query(&self, dag: &QueryDag) -> Result<Option<Advice>> {
        self.as_ref().map_or(Ok(None), |t| t.pre_query(dag))
    }
    fn post_query(&mut self, dag: &QueryDag, metrics: &ExecutionMetrics) -> Result<()> {
        self.as_mut().map_or(Ok(()), |t| t.post_query(dag, metrics))
    }
    fn run_cycle(&mut self) -> Result<CycleReport> {
        self.as_mut().map_or(Ok(CycleReport::default()), T::run_cycle)
    }
}

impl<T: LearningTier> LearningTier for Vec<T> {
    fn name(&self) -> &str {
        "tiers"
    }

    /// The most confident advice of any tier (the first one on ties).
    fn pre_query(&self, dag: &QueryDag) -> Result<Option<Advice>> {
        let mut best: Option<Advice> = None;
        for tier in self {
            if let Some(a) = tier.pre_query(dag)? {
                if best.as_ref().is_none_or(|b| a.confidence > b.confidence) {
                    best = Some(a);
                }
            }
        }
        Ok(best)
    }

    fn post_query(&mut self, dag: &QueryDag, metrics: &ExecutionMetrics) -> Result<()> {
        self.iter_mut().try_for_each(|t| t.post_query(dag, metrics))
    }

    fn run_cycle(&mut self) -> Result<CycleReport> {
        let mut total = CycleReport::default();
        for t in self.iter_mut() {
            total += t.run_cycle()?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(f64);

    impl LearningTier for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn pre_query(&self, _: &QueryDag) -> Result<Option<Advice>> {
            Ok(Some(Advice { confidence: self.0, ..Advice::default() }))
        }
        fn run_cycle(&mut self) -> Result<CycleReport> {
            Ok(CycleReport { trajectories_processed: 2, ..CycleReport::default() })
        }
    }

    #[test]
    fn vec_picks_the_most_confident_and_sums_cycles() {
        let mut tiers = vec![Fixed(0.2), Fixed(0.9), Fixed(0.5)];
        let dag = QueryDag::new();
        assert_eq!(tiers.pre_query(&dag).unwrap().unwrap().confidence, 0.9);
        assert_eq!(tiers.run_cycle().unwrap().trajectories_processed, 6);
    }

    #[test]
    fn none_does_nothing() {
        let mut none: Option<Fixed> = None;
        assert_eq!(none.pre_query(&QueryDag::new()).unwrap(), None);
        assert_eq!(none.run_cycle().unwrap(), CycleReport::default());
        assert_eq!(none.name(), "none");
    }
}
