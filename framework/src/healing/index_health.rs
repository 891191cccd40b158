//! Index health: what a measurement of one index says and which repair it calls for.
//!
//! A host measures (recall probes, buffers per probe, dead tuples, B-tree density); this module judges. The
//! signals follow what degrades in practice: an HNSW graph keeps pointing at deleted tuples until `VACUUM`, so
//! recall falls and scans return fewer rows than their `LIMIT`; an IVFFlat index fed a shifted distribution keeps
//! its recall but piles new rows into a few lists, so each probe reads many more buffers than lists × probes
//! predicts, until it is rebuilt; a B-tree loses leaf density to churn.

/// Index access method, as far as health checks care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexKind {
    /// pgvector HNSW graph.
    Hnsw,
    /// pgvector inverted lists.
    IvfFlat,
    /// B-tree.
    BTree,
    /// Any other access method (named), e.g. a GiST index with an ordering operator.
    Other(String),
}

impl IndexKind {
    /// From `pg_am.amname`.
    pub fn from_am(am: &str) -> Self {
        match am {
            "hnsw" => IndexKind::Hnsw,
            "ivfflat" => IndexKind::IvfFlat,
            "btree" => IndexKind::BTree,
            other => IndexKind::Other(other.to_owned()),
        }
    }

    /// The access method's name.
    pub fn name(&self) -> &str {
        match self {
            IndexKind::Hnsw => "hnsw",
            IndexKind::IvfFlat => "ivfflat",
            IndexKind::BTree => "btree",
            IndexKind::Other(s) => s,
        }
    }
}

/// What was measured about one index; `None` = not measured (not applicable, or the extension that measures it
/// is not installed).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexMeasurement {
    /// Access method.
    pub kind: IndexKind,
    /// Mean recall@k of the index's top-k against exact top-k over the probe's sample.
    pub recall: Option<f64>,
    /// Recall measured earlier with the same search settings (the best seen).
    pub baseline_recall: Option<f64>,
    /// Fraction of probes whose index scan returned fewer rows than the exact scan.
    pub under_returning: Option<f64>,
    /// Dead tuples / (live + dead) of the table.
    pub dead_ratio: Option<f64>,
    /// IVFFlat: buffers read per probe ÷ what balanced lists predict (pages × probes / lists, plus the heap rows).
    pub ivf_imbalance: Option<f64>,
    /// B-tree: average leaf density in 0..=1 (`pgstatindex`).
    pub leaf_density: Option<f64>,
}

/// When an index counts as degraded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexThresholds {
    /// Recall this far below the baseline (absolute) is degraded.
    pub recall_drop: f64,
    /// More than this fraction of under-returning probes is degraded.
    pub under_returning: f64,
    /// A dead-tuple ratio at or above this makes `VACUUM` the repair of a degraded index.
    pub dead_ratio: f64,
    /// A dead-tuple ratio at or above this degrades a B-tree by itself (autovacuum's default trigger is 0.2:
    /// beyond this, it is behind).
    pub btree_dead_ratio: f64,
    /// IVFFlat imbalance at or above this is degraded.
    pub ivf_imbalance: f64,
    /// B-tree leaf density below this is degraded (fresh B-trees fill leaves to 90%).
    pub min_leaf_density: f64,
}

impl Default for IndexThresholds {
    fn default() -> Self {
        IndexThresholds {
            recall_drop: 0.05,
            under_returning: 0.1,
            dead_ratio: 0.1,
            btree_dead_ratio: 0.3,
            ivf_imbalance: 4.0,
            min_leaf_density: 0.45,
        }
    }
}

/// The repair an index needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexAction {
    /// Healthy.
    None,
    /// `VACUUM` the table: dead tuples are what hurts.
    Vacuum,
    /// Rebuild the index (`REINDEX INDEX CONCURRENTLY`).
    Reindex,
}

impl IndexAction {
    /// Lower-case name, as repair rows record it.
    pub fn name(self) -> &'static str {
        match self {
            IndexAction::None => "none",
            IndexAction::Vacuum => "vacuum",
            IndexAction::Reindex => "reindex",
        }
    }
}

/// The judgement of one measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexAssessment {
    /// True when some signal crossed its threshold.
    pub degraded: bool,
    /// The repair to try first.
    pub action: IndexAction,
    /// 0 = pristine, 1 = worst: dead-tuple ratio for vector indexes, lost leaf density for B-trees.
    pub fragmentation: Option<f64>,
    /// The evidence, one sentence per crossed threshold.
    pub reasons: Vec<String>,
}

/// Judges `m`: which signals crossed `t`, and which repair to try first. Dead tuples come first (cheap
/// `VACUUM`, and the cause of HNSW's lost recall); a rebuild is for what `VACUUM` cannot fix (IVF imbalance, low
/// recall without dead tuples, B-tree density).
pub fn assess(m: &IndexMeasurement, t: &IndexThresholds) -> IndexAssessment {
    let mut reasons = Vec::new();
    if let Some(r) = m.recall {
        // Judged against the index's own history only: what recall a setting buys (an IVFFlat index probing one
        // list of many) is the user's choice, not a fault.
        if let Some(b) = m.baseline_recall.filter(|b| r < b - t.recall_drop) {
            reasons.push(format!("recall {r:.2} below its baseline {b:.2}"));
        }
    }
    if let Some(u) = m.under_returning.filter(|&u| u > t.under_returning) {
        reasons.push(format!("{:.0}% of probe scans returned fewer rows than asked", u * 100.0));
    }
    if let Some(i) = m.ivf_imbalance.filter(|&i| i >= t.ivf_imbalance) {
        reasons.push(format!("{i:.1}x the buffers balanced lists would read"));
    }
    if let Some(d) = m.leaf_density.filter(|&d| d < t.min_leaf_density) {
        reasons.push(format!("leaf density {:.0}%", d * 100.0));
    }
    let dead = m.dead_ratio.filter(|&d| d >= t.dead_ratio);
    if m.kind == IndexKind::BTree
        && let Some(d) = m.dead_ratio.filter(|&d| d >= t.btree_dead_ratio)
    {
        reasons.push(format!("{:.0}% dead tuples", d * 100.0));
    }
    let degraded = !reasons.is_empty();
    let action = if !degraded {
        IndexAction::None
    } else if let Some(d) = dead {
        if !reasons.iter().any(|r| r.ends_with("dead tuples")) {
            reasons.push(format!("{:.0}% dead tuples", d * 100.0));
        }
        IndexAction::Vacuum
    } else {
        IndexAction::Reindex
    };
    let fragmentation = match m.kind {
        IndexKind::BTree => m.leaf_density.map(|d| (1.0 - d / 0.9).clamp(0.0, 1.0)).or(m.dead_ratio),
        _ => m.dead_ratio,
    };
    IndexAssessment { degraded, action, fragmentation, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hnsw() -> IndexMeasurement {
        IndexMeasurement {
            kind: IndexKind::Hnsw,
            recall: Some(0.80),
            baseline_recall: Some(0.80),
            under_returning: Some(0.0),
            dead_ratio: Some(0.0),
            ivf_imbalance: None,
            leaf_density: None,
        }
    }

    #[test]
    fn a_healthy_index_needs_nothing() {
        let a = assess(&hnsw(), &IndexThresholds::default());
        assert!(!a.degraded);
        assert_eq!(a.action, IndexAction::None);
        assert!(a.reasons.is_empty());
    }

    #[test]
    fn hnsw_after_deletes_is_vacuumed() {
        // The measured scenario: half the rows deleted without VACUUM, recall 0.80 → 0.53, ~6 of 10 rows.
        let m = IndexMeasurement { recall: Some(0.53), under_returning: Some(0.9), dead_ratio: Some(0.5), ..hnsw() };
        let a = assess(&m, &IndexThresholds::default());
        assert!(a.degraded);
        assert_eq!(a.action, IndexAction::Vacuum);
        assert_eq!(a.fragmentation, Some(0.5));
        assert_eq!(a.reasons.len(), 3, "{:?}", a.reasons);
        assert!(a.reasons[0].contains("baseline 0.80"), "{:?}", a.reasons);
    }

    #[test]
    fn dead_tuples_alone_do_not_degrade_a_vector_index() {
        let m = IndexMeasurement { dead_ratio: Some(0.3), ..hnsw() };
        assert_eq!(assess(&m, &IndexThresholds::default()).action, IndexAction::None);
    }

    #[test]
    fn lost_recall_without_dead_tuples_is_rebuilt() {
        let m = IndexMeasurement { recall: Some(0.6), ..hnsw() };
        assert_eq!(assess(&m, &IndexThresholds::default()).action, IndexAction::Reindex);
        let small_drop = IndexMeasurement { recall: Some(0.77), ..hnsw() };
        assert!(!assess(&small_drop, &IndexThresholds::default()).degraded);
    }

    #[test]
    fn ivf_imbalance_is_rebuilt() {
        let m = IndexMeasurement {
            kind: IndexKind::IvfFlat,
            recall: Some(0.95),
            baseline_recall: Some(0.95),
            ivf_imbalance: Some(31.0),
            ..hnsw()
        };
        let a = assess(&m, &IndexThresholds::default());
        assert_eq!(a.action, IndexAction::Reindex);
        assert!(a.reasons[0].starts_with("31.0x"), "{:?}", a.reasons);
    }

    #[test]
    fn btree_density_and_dead_tuples() {
        let base = IndexMeasurement {
            kind: IndexKind::BTree,
            recall: None,
            baseline_recall: None,
            under_returning: None,
            dead_ratio: Some(0.0),
            ivf_imbalance: None,
            leaf_density: Some(0.9),
        };
        let t = IndexThresholds::default();
        assert!(!assess(&base, &t).degraded);
        assert_eq!(assess(&base, &t).fragmentation, Some(0.0));
        let sparse = IndexMeasurement { leaf_density: Some(0.3), ..base.clone() };
        assert_eq!(assess(&sparse, &t).action, IndexAction::Reindex);
        let dead = IndexMeasurement { dead_ratio: Some(0.4), leaf_density: None, ..base.clone() };
        let a = assess(&dead, &t);
        assert_eq!(a.action, IndexAction::Vacuum);
        assert_eq!(a.fragmentation, Some(0.4));
        assert_eq!(a.reasons, ["40% dead tuples"]);
        // What autovacuum will soon handle by itself is no fault.
        let few = IndexMeasurement { dead_ratio: Some(0.25), leaf_density: None, ..base };
        assert!(!assess(&few, &t).degraded);
    }

    #[test]
    fn kinds_round_trip() {
        for am in ["hnsw", "ivfflat", "btree", "gist"] {
            assert_eq!(IndexKind::from_am(am).name(), am);
        }
    }
}
