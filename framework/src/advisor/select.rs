//! Workload-level index selection under a storage budget.

use super::IndexCandidate;
use crate::error::Result;

/// The what-if cost of the workload with a set of hypothetical indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Σ over queries of frequency × plan cost, with the indexes in place.
    pub cost: f64,
    /// Per index of the set, in order: whether some plan uses it.
    pub used: Vec<bool>,
}

/// One chosen index and what it was measured to bring when it was picked.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Position in the candidate list.
    pub candidate: usize,
    /// Estimated size in bytes.
    pub size_bytes: u64,
    /// Workload cost before this pick (with the earlier picks).
    pub cost_before: f64,
    /// Workload cost with it.
    pub cost_after: f64,
    /// Estimated write-maintenance cost, in the workload's cost units.
    pub write_cost: f64,
}

impl Pick {
    /// Net benefit: the workload's cost saving minus the write cost.
    pub fn benefit(&self) -> f64 {
        self.cost_before - self.cost_after - self.write_cost
    }
}

/// What [`select`] chose.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selection {
    /// Workload cost without any new index.
    pub base_cost: f64,
    /// Chosen indexes, in the order picked.
    pub picks: Vec<Pick>,
    /// Candidates no plan used when added alone to the picks so far.
    pub unused: Vec<usize>,
    /// Candidates left out because they did not fit the remaining budget.
    pub over_budget: Vec<usize>,
    /// Candidates picked, then dropped because no plan used them once later picks were in place.
    pub superseded: Vec<usize>,
    /// Number of what-if evaluations made.
    pub evaluations: usize,
}

impl Selection {
    /// Bytes the picks take.
    pub fn total_bytes(&self) -> u64 {
        self.picks.iter().map(|p| p.size_bytes).sum()
    }

    /// Workload cost with every pick.
    pub fn final_cost(&self) -> f64 {
        self.picks.last().map_or(self.base_cost, |p| p.cost_after)
    }
}

/// Picks indexes greedily by net benefit per byte: each round costs every remaining candidate together with
/// the picks so far (`evaluate`), keeps those some plan uses, subtracts their write cost (`write_cost`), and
/// takes the best benefit per byte that fits `budget_bytes`. Stops when no candidate saves more than
/// `min_gain` (a fraction of the base cost). Finally drops picks that no plan uses once all picks are in place
/// (a narrow index superseded by a wider one picked later) and re-measures the rest in pick order.
///
/// `size(i)` is candidate `i`'s estimated size; `evaluate(set)` the workload's what-if cost with the
/// candidates `set` (positions in `candidates`) as hypothetical indexes.
///
/// # Errors
/// The first error of `evaluate`.
pub fn select(
    candidates: &[IndexCandidate],
    budget_bytes: u64,
    min_gain: f64,
    size: impl Fn(usize) -> u64,
    write_cost: impl Fn(usize) -> f64,
    mut evaluate: impl FnMut(&[usize]) -> Result<Evaluation>,
) -> Result<Selection> {
    let base = evaluate(&[])?;
    let mut sel = Selection { base_cost: base.cost, evaluations: 1, ..Selection::default() };
    let threshold = min_gain.max(0.0) * base.cost;
    let mut chosen: Vec<usize> = Vec::new();
    let mut current = base.cost;
    let mut used_bytes = 0u64;
    let mut open: Vec<usize> = (0..candidates.len()).collect();
    loop {
        let mut best: Option<(f64, Pick)> = None;
        let mut drop = Vec::new();
        for &i in &open {
            let bytes = size(i);
            if used_bytes.saturating_add(bytes) > budget_bytes {
                continue;
            }
            let mut set = chosen.clone();
            set.push(i);
            let e = evaluate(&set)?;
            sel.evaluations += 1;
            if !e.used.last().copied().unwrap_or(false) {
                drop.push(i);
                continue;
            }
            let pick = Pick {
                candidate: i,
                size_bytes: bytes,
                cost_before: current,
                cost_after: e.cost,
                write_cost: write_cost(i),
            };
            let benefit = pick.benefit();
            if benefit <= threshold || benefit <= 0.0 {
                continue;
            }
            let per_byte = benefit / bytes.max(1) as f64;
            if best.as_ref().is_none_or(|(b, _)| per_byte > *b) {
                best = Some((per_byte, pick));
            }
        }
        // A candidate no plan uses now will not be used once more indexes exist either (they only compete).
        open.retain(|i| !drop.contains(i));
        sel.unused.extend(drop);
        let Some((_, pick)) = best else { break };
        open.retain(|&i| i != pick.candidate);
        chosen.push(pick.candidate);
        used_bytes += pick.size_bytes;
        current = pick.cost_after;
        sel.picks.push(pick);
    }
    // Benefit per byte favours a small index that helps a little before the wider one that helps most; once the
    // wider one is in, the plans stop using the small one. Drop such picks, then re-measure in pick order.
    loop {
        let e = evaluate(&chosen)?;
        sel.evaluations += 1;
        let idle: Vec<usize> = chosen.iter().zip(&e.used).filter(|(_, used)| !**used).map(|(&c, _)| c).collect();
        if idle.is_empty() || chosen.is_empty() {
            break;
        }
        chosen.retain(|c| !idle.contains(c));
        sel.picks.retain(|p| !idle.contains(&p.candidate));
        sel.superseded.extend(idle);
    }
    if !sel.superseded.is_empty() {
        let mut before = base.cost;
        for k in 0..sel.picks.len() {
            let e = evaluate(&chosen[..=k])?;
            sel.evaluations += 1;
            sel.picks[k].cost_before = before;
            sel.picks[k].cost_after = e.cost;
            before = e.cost;
        }
        used_bytes = sel.total_bytes();
    }
    sel.over_budget = open.into_iter().filter(|&i| used_bytes.saturating_add(size(i)) > budget_bytes).collect();
    sel.unused.sort_unstable();
    sel.superseded.sort_unstable();
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(n: usize) -> Vec<IndexCandidate> {
        (0..n)
            .map(|i| IndexCandidate {
                table: "t".into(),
                columns: vec![format!("c{i}")],
                weight: 1.0,
                queries: vec![i],
                correlated: false,
            })
            .collect()
    }

    /// Workload of independent queries: query i costs `base[i]`, or `with[i]` when index i exists and is used.
    fn independent(base: Vec<f64>, with: Vec<f64>) -> impl FnMut(&[usize]) -> Result<Evaluation> {
        move |set: &[usize]| {
            let cost = (0..base.len()).map(|q| if set.contains(&q) { with[q].min(base[q]) } else { base[q] }).sum();
            Ok(Evaluation { cost, used: set.iter().map(|&i| with[i] < base[i]).collect() })
        }
    }

    #[test]
    fn picks_by_benefit_per_byte_and_respects_the_budget() {
        // Saves 90 for 100 bytes, 50 for 10 bytes, 40 for 100 bytes.
        let c = cands(3);
        let sizes = [100u64, 10, 100];
        let sel =
            select(&c, 120, 0.0, |i| sizes[i], |_| 0.0, independent(vec![100.0, 60.0, 50.0], vec![10.0, 10.0, 10.0]))
                .unwrap();
        let picked: Vec<usize> = sel.picks.iter().map(|p| p.candidate).collect();
        assert_eq!(picked, [1, 0], "5 per byte first, then 0.9 per byte; the third no longer fits");
        assert_eq!(sel.total_bytes(), 110);
        assert!(sel.total_bytes() <= 120);
        assert_eq!(sel.over_budget, [2]);
        assert_eq!(sel.base_cost, 210.0);
        assert_eq!(sel.final_cost(), 70.0);
    }

    #[test]
    fn unused_and_write_heavy_candidates_are_not_picked() {
        let c = cands(3);
        // Index 0 is never used by a plan; index 2 saves 10 but costs 15 in writes.
        let sel = select(
            &c,
            u64::MAX,
            0.0,
            |_| 1,
            |i| if i == 2 { 15.0 } else { 0.0 },
            independent(vec![50.0, 50.0, 50.0], vec![50.0, 5.0, 40.0]),
        )
        .unwrap();
        assert_eq!(sel.picks.iter().map(|p| p.candidate).collect::<Vec<_>>(), [1]);
        assert_eq!(sel.unused, [0]);
        assert!((sel.picks[0].benefit() - 45.0).abs() < 1e-9);
    }

    #[test]
    fn recosts_after_each_pick_so_redundant_indexes_are_skipped() {
        // Both candidates serve the same query: after one is picked the other saves nothing more.
        let c = cands(2);
        let eval = |set: &[usize]| {
            let cost = if set.is_empty() {
                100.0
            } else if set.contains(&0) {
                10.0
            } else {
                20.0
            };
            Ok(Evaluation { cost, used: set.iter().map(|&i| i == 0 || !set.contains(&0)).collect() })
        };
        let sel = select(&c, u64::MAX, 0.01, |_| 1, |_| 0.0, eval).unwrap();
        assert_eq!(sel.picks.len(), 1);
        assert_eq!(sel.picks[0].candidate, 0);
        assert_eq!(sel.unused, [1], "with index 0 in place, index 1 goes unused");
    }

    #[test]
    fn a_narrow_pick_superseded_by_a_wider_one_is_dropped() {
        // Q20's shape: (a) is small and halves the cost; (a, b) is twice the size and removes nearly all of it;
        // once (a, b) exists the plan no longer uses (a).
        let c = cands(2);
        let sizes = [10u64, 20];
        let eval = |set: &[usize]| {
            let cost = if set.contains(&1) {
                2.0
            } else if set.contains(&0) {
                50.0
            } else {
                100.0
            };
            Ok(Evaluation { cost, used: set.iter().map(|&i| i == 1 || !set.contains(&1)).collect() })
        };
        let sel = select(&c, u64::MAX, 0.0, |i| sizes[i], |_| 0.0, eval).unwrap();
        assert_eq!(sel.picks.iter().map(|p| p.candidate).collect::<Vec<_>>(), [1]);
        assert_eq!(sel.superseded, [0], "picked first by benefit per byte, then superseded");
        assert_eq!((sel.picks[0].cost_before, sel.picks[0].cost_after), (100.0, 2.0), "re-measured alone");
        assert_eq!(sel.total_bytes(), 20);
    }

    #[test]
    fn negligible_gains_stop_the_search() {
        let c = cands(1);
        let sel = select(&c, u64::MAX, 0.05, |_| 1, |_| 0.0, independent(vec![100.0], vec![99.0])).unwrap();
        assert!(sel.picks.is_empty(), "a 1% gain is below the 5% threshold");
    }
}
