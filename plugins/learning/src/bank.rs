//! The ReasoningBank: learned plan patterns, searched by embedding.
//!
//! A **pattern** is a region of plan-embedding space (a unit centroid) with what was measured there: per set of
//! planner settings ("arm"), how many executions and their mean log latency. From those follow the pattern's best
//! settings, its **quality** (`1 − L_best / L_native`: the fraction of the native latency the best settings save;
//! 0 when nothing beats the native plan or the native plan was never measured) and **confidence** (grows with
//! the samples behind both arms).
//!
//! Search is an IVF index (Jégou et al., TPAMI 2011): k-means++ (Arthur & Vassilvitskii 2007) over the pattern
//! centroids into up to `clusters` lists, built off the query path by [`DagReasoningBank::rebuild_index`]; a query
//! probes the `nprobe` nearest lists plus patterns created since the last rebuild, then re-ranks exactly by cosine.
//! [`DagReasoningBank::brute_force_similar`] is the exact reference. Eviction removes the patterns with the lowest
//! `(0.1 + quality) × ln(2 + usage) × 0.5^(age / half_life)`: a score that changes as patterns are used.

use crate::dot;
use ruvector_dag::dag::generator::SplitMix64;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Measurements under one set of planner settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    /// The settings (empty = the native plan), sorted by name.
    pub settings: Vec<(String, String)>,
    /// Executions measured.
    pub count: u64,
    /// Mean of `ln(1 + latency_ms)`.
    pub mean_log_latency: f64,
}

/// A learned pattern.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pattern {
    /// Stable identifier.
    pub id: u64,
    /// Unit-length centroid of the embeddings it covers.
    pub centroid: Vec<f32>,
    /// Executions merged into it.
    pub samples: u64,
    /// Measurements per settings.
    pub arms: Vec<Arm>,
    /// Times it was returned by a search (changes eviction order).
    #[serde(with = "atomic")]
    pub usage: AtomicU64,
    /// Logical time of the last use or update.
    #[serde(with = "atomic")]
    pub last_used: AtomicU64,
}

mod atomic {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(super) fn serialize<S: Serializer>(v: &AtomicU64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.load(Ordering::Relaxed))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AtomicU64, D::Error> {
        u64::deserialize(d).map(AtomicU64::new)
    }
}

impl Clone for Pattern {
    fn clone(&self) -> Self {
        Pattern {
            id: self.id,
            centroid: self.centroid.clone(),
            samples: self.samples,
            arms: self.arms.clone(),
            usage: AtomicU64::new(self.usage.load(Ordering::Relaxed)),
            last_used: AtomicU64::new(self.last_used.load(Ordering::Relaxed)),
        }
    }
}

impl Pattern {
    fn arm(&self, settings: &[(String, String)]) -> Option<&Arm> {
        self.arms.iter().find(|a| a.settings == settings)
    }

    /// The arm with the lowest mean latency (the native plan on ties).
    pub fn best_arm(&self) -> Option<&Arm> {
        self.arms.iter().min_by(|a, b| {
            a.mean_log_latency.total_cmp(&b.mean_log_latency).then(a.settings.len().cmp(&b.settings.len()))
        })
    }

    /// `1 − L_best / L_native`: the fraction of the native latency the best settings save (0 without a native
    /// measurement, or when the native plan is best).
    pub fn quality(&self) -> f64 {
        match (self.arm(&[]), self.best_arm()) {
            (Some(native), Some(best)) => {
                let (n, b) = (native.mean_log_latency.exp_m1(), best.mean_log_latency.exp_m1());
                if n > 0.0 { (1.0 - b / n).clamp(0.0, 1.0) } else { 0.0 }
            }
            _ => 0.0,
        }
    }

    /// `1 − 1/√(1 + n)` with `n` the samples behind the less-measured of the native and best arms.
    pub fn confidence(&self) -> f64 {
        let n = match (self.arm(&[]), self.best_arm()) {
            (Some(native), Some(best)) if native.settings != best.settings => native.count.min(best.count),
            (_, Some(best)) => best.count,
            _ => 0,
        };
        1.0 - 1.0 / (1.0 + n as f64).sqrt()
    }
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternMatch {
    /// Pattern id.
    pub id: u64,
    /// Cosine similarity to the query.
    pub similarity: f32,
    /// The pattern's quality.
    pub quality: f64,
    /// The pattern's confidence.
    pub confidence: f64,
    /// Settings of its best arm (empty = native).
    pub best_settings: Vec<(String, String)>,
    /// Predicted latency ratio of the best arm to the native plan (1 without a native measurement).
    pub predicted_ratio: f64,
    /// Mean native latency measured for the pattern (geometric, in ms) and the executions behind it.
    pub native: Option<(f64, u64)>,
}

/// The pattern store (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct DagReasoningBank {
    dim: usize,
    patterns: Vec<Pattern>,
    next_id: u64,
    clock: u64,
    /// Cosine at or above which an execution joins an existing pattern.
    pub merge_threshold: f32,
    /// Lists probed per search.
    pub nprobe: usize,
    /// Logical half-life of eviction recency, in observations.
    pub half_life: f64,
    /// Coarse centroids (`lists × dim`).
    coarse: Vec<f32>,
    /// IVF-Flat layout: list `l` holds positions `list_start[l]..list_start[l + 1]` of `members` (pattern indices)
    /// and of `vectors` (copies of their centroids, contiguous so a probed list is one sequential scan). Empty when
    /// there is no index.
    list_start: Vec<usize>,
    members: Vec<u32>,
    vectors: Vec<f32>,
    /// Position of each pattern in `members`, `u32::MAX` for patterns added since the rebuild.
    slot: Vec<u32>,
    /// Patterns added since the last rebuild (searched exhaustively).
    unindexed: Vec<u32>,
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The best `k` (index, score) pairs offered, best first (ties keep the earlier).
#[derive(Debug)]
struct TopK(Vec<(u32, f32)>, usize);

impl TopK {
    fn new(k: usize) -> Self {
        TopK(Vec::with_capacity(k + 1), k)
    }

    #[inline]
    fn offer(&mut self, i: u32, s: f32) {
        let top = &mut self.0;
        if self.1 > 0 && (top.len() < self.1 || s > top[top.len() - 1].1) {
            let at = top.partition_point(|&(_, t)| t >= s);
            top.insert(at, (i, s));
            top.truncate(self.1);
        }
    }
}

/// A pattern from outside this server, for [`DagReasoningBank::import_pattern`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedPattern {
    /// Its centroid (any length-`dim` non-zero vector; stored normalised).
    pub centroid: Vec<f32>,
    /// `1 − L_best / L_native` as its source measured it.
    pub quality: f64,
    /// How sure the source is (for network patterns: the endorsing share of validator stake).
    pub confidence: f64,
    /// The settings that made it better, if the source shared them.
    pub settings: Vec<(String, String)>,
}

impl Default for DagReasoningBank {
    /// A bank for the default embedding dimension (`[learning] embedding_dim`, 256).
    fn default() -> Self {
        Self::new(ruvector_dag::config::LearningSection::default().embedding_dim)
    }
}

fn settings_key(settings: &[(String, String)]) -> Vec<(String, String)> {
    let mut s = settings.to_vec();
    s.sort();
    s
}

impl DagReasoningBank {
    /// An empty bank for `dim`-dimensional embeddings.
    pub fn new(dim: usize) -> Self {
        DagReasoningBank {
            dim,
            patterns: Vec::new(),
            next_id: 1,
            clock: 0,
            merge_threshold: 0.98,
            nprobe: 8,
            half_life: 10_000.0,
            coarse: Vec::new(),
            list_start: Vec::new(),
            members: Vec::new(),
            vectors: Vec::new(),
            slot: Vec::new(),
            unindexed: Vec::new(),
        }
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Number of IVF lists (clusters) in the current index.
    pub fn clusters(&self) -> usize {
        self.list_start.len().saturating_sub(1)
    }

    /// The patterns.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The pattern with `id`.
    pub fn pattern(&self, id: u64) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.id == id)
    }

    fn matched(&self, i: usize, similarity: f32) -> PatternMatch {
        let p = &self.patterns[i];
        p.usage.fetch_add(1, Ordering::Relaxed);
        p.last_used.store(self.clock, Ordering::Relaxed);
        let best = p.best_arm();
        let ratio = match (p.arm(&[]), best) {
            (Some(n), Some(b)) => (b.mean_log_latency.exp_m1() / n.mean_log_latency.exp_m1().max(1e-9)).max(0.0),
            _ => 1.0,
        };
        PatternMatch {
            id: p.id,
            similarity,
            quality: p.quality(),
            confidence: p.confidence(),
            best_settings: best.map(|a| a.settings.clone()).unwrap_or_default(),
            predicted_ratio: ratio,
            native: p.arm(&[]).map(|a| (a.mean_log_latency.exp_m1(), a.count)),
        }
    }

    fn unit(&self, embedding: &[f32]) -> Vec<f32> {
        let mut q = embedding.to_vec();
        q.resize(self.dim, 0.0);
        normalize(&mut q);
        q
    }

    /// The `k` most similar patterns (cosine), through the IVF index plus unindexed patterns, re-ranked exactly.
    pub fn query_similar(&self, embedding: &[f32], k: usize) -> Vec<PatternMatch> {
        let q = self.unit(embedding);
        self.nearest(&q, k).into_iter().map(|(i, s)| self.matched(i as usize, s)).collect()
    }

    /// The exact `k` most similar patterns (reference for recall).
    pub fn brute_force_similar(&self, embedding: &[f32], k: usize) -> Vec<PatternMatch> {
        let q = self.unit(embedding);
        let mut top = TopK::new(k);
        for (i, p) in self.patterns.iter().enumerate() {
            top.offer(i as u32, dot(&q, &p.centroid));
        }
        top.0.into_iter().map(|(i, s)| self.matched(i as usize, s)).collect()
    }

    /// The `k` nearest patterns to the unit vector `q`: the `nprobe` nearest lists and the unindexed patterns
    /// (everything when there is no index), best first.
    fn nearest(&self, q: &[f32], k: usize) -> Vec<(u32, f32)> {
        let mut top = TopK::new(k);
        if self.list_start.is_empty() {
            for (i, p) in self.patterns.iter().enumerate() {
                top.offer(i as u32, dot(q, &p.centroid));
            }
            return top.0;
        }
        let d = self.dim;
        for l in self.top_lists(q, self.nprobe) {
            for pos in self.list_start[l]..self.list_start[l + 1] {
                top.offer(self.members[pos], dot(q, &self.vectors[pos * d..(pos + 1) * d]));
            }
        }
        for &i in &self.unindexed {
            top.offer(i, dot(q, &self.patterns[i as usize].centroid));
        }
        top.0
    }

    fn top_lists(&self, q: &[f32], n: usize) -> Vec<usize> {
        let lists = self.clusters();
        let mut scored: Vec<(usize, f32)> =
            (0..lists).map(|l| (l, dot(q, &self.coarse[l * self.dim..(l + 1) * self.dim]))).collect();
        let n = n.min(lists);
        scored.select_nth_unstable_by(n.saturating_sub(1), |a, b| b.1.total_cmp(&a.1));
        scored.truncate(n);
        scored.into_iter().map(|(l, _)| l).collect()
    }

    /// The id the next new pattern gets: ids below it belong to patterns that existed before.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Records one execution: joins the nearest pattern when similar enough (updating its centroid and the arm of
    /// `settings`), else starts a new pattern. Returns the pattern's id.
    pub fn observe(&mut self, embedding: &[f32], settings: &[(String, String)], latency_ms: f64) -> u64 {
        self.clock += 1;
        let q = self.unit(embedding);
        let nearest = self.nearest(&q, 1);
        let key = settings_key(settings);
        let y = (1.0 + latency_ms.max(0.0)).ln();
        let clock = self.clock;
        match nearest.first() {
            Some(&(i, s)) if s >= self.merge_threshold => {
                let p = &mut self.patterns[i as usize];
                p.samples += 1;
                let w = 1.0 / p.samples as f32;
                p.centroid.iter_mut().zip(&q).for_each(|(c, x)| *c += w * (x - *c));
                normalize(&mut p.centroid);
                match p.arms.iter_mut().find(|a| a.settings == key) {
                    Some(a) => {
                        a.count += 1;
                        a.mean_log_latency += (y - a.mean_log_latency) / a.count as f64;
                    }
                    None => p.arms.push(Arm { settings: key, count: 1, mean_log_latency: y }),
                }
                p.last_used.store(clock, Ordering::Relaxed);
                let id = p.id;
                // Keep the index's copy of the centroid current.
                if let Some(&pos) = self.slot.get(i as usize).filter(|&&pos| pos != u32::MAX) {
                    let d = self.dim;
                    self.vectors[pos as usize * d..(pos as usize + 1) * d]
                        .copy_from_slice(&self.patterns[i as usize].centroid);
                }
                id
            }
            _ => {
                let id = self.next_id;
                self.next_id += 1;
                self.patterns.push(Pattern {
                    id,
                    centroid: q,
                    samples: 1,
                    arms: vec![Arm { settings: key, count: 1, mean_log_latency: y }],
                    usage: AtomicU64::new(0),
                    last_used: AtomicU64::new(clock),
                });
                self.push_unindexed();
                id
            }
        }
    }

    /// Adds a pattern as given (an operator's or a peer's knowledge, not an observation): `embedding` becomes its
    /// unit centroid, `arms` its measurements. Returns the new pattern's id.
    ///
    /// # Errors
    /// When the embedding has the wrong dimension, is zero or not finite, or an arm has no executions or a
    /// non-finite mean.
    pub fn insert(&mut self, embedding: &[f32], arms: Vec<Arm>) -> ruvector_dag::Result<u64> {
        let invalid = |message: String| ruvector_dag::Error::Plugin { plugin: "reasoning_bank".into(), message };
        if embedding.len() != self.dim {
            return Err(invalid(format!("pattern has dimension {}, expected {}", embedding.len(), self.dim)));
        }
        if embedding.iter().any(|x| !x.is_finite()) || embedding.iter().all(|x| *x == 0.0) {
            return Err(invalid("pattern vector must be non-zero and finite".into()));
        }
        if let Some(a) = arms.iter().find(|a| a.count == 0 || !a.mean_log_latency.is_finite()) {
            return Err(invalid(format!("arm {:?} has no executions or a non-finite latency", a.settings)));
        }
        self.clock += 1;
        let id = self.next_id;
        self.next_id += 1;
        let samples = arms.iter().map(|a| a.count).sum::<u64>().max(1);
        let arms = arms.into_iter().map(|a| Arm { settings: settings_key(&a.settings), ..a }).collect();
        self.patterns.push(Pattern {
            id,
            centroid: self.unit(embedding),
            samples,
            arms,
            usage: AtomicU64::new(0),
            last_used: AtomicU64::new(self.clock),
        });
        self.push_unindexed();
        Ok(id)
    }

    /// Adds a pattern learned elsewhere (a peer's, finalized by the network), as a weak prior: one execution
    /// per arm, so this server's own measurements outweigh it after a few runs. Its latencies are unknown, so
    /// the arms are relative: the native plan at 1 ms, the shared settings (if any) at `1 − quality` of it,
    /// which reproduces the shared quality. Patterns with confidence below 0.5 are refused.
    ///
    /// # Errors
    /// As [`insert`](Self::insert), and when quality or confidence is outside [0, 1] or confidence is below 0.5.
    pub fn import_pattern(&mut self, pattern: impl Into<ImportedPattern>) -> ruvector_dag::Result<u64> {
        let p = pattern.into();
        let invalid = |message: String| ruvector_dag::Error::Plugin { plugin: "reasoning_bank".into(), message };
        if !(0.0..=1.0).contains(&p.quality) || !(0.0..=1.0).contains(&p.confidence) {
            return Err(invalid(format!("quality {} and confidence {} must be in [0, 1]", p.quality, p.confidence)));
        }
        if p.confidence < 0.5 {
            return Err(invalid(format!("consensus confidence {} is below 0.5", p.confidence)));
        }
        let native = Arm { settings: Vec::new(), count: 1, mean_log_latency: 1.0f64.ln_1p() };
        let mut arms = vec![native];
        if !p.settings.is_empty() {
            let relative = (1.0 - p.quality).max(0.0);
            arms.push(Arm { settings: p.settings, count: 1, mean_log_latency: relative.ln_1p() });
        }
        self.insert(&p.centroid, arms)
    }

    /// The IVF lists of the current index: each list's centroid and the ids of its patterns (patterns added since
    /// the last [`rebuild_index`](Self::rebuild_index) are in none).
    pub fn index_lists(&self) -> Vec<(Vec<f32>, Vec<u64>)> {
        let d = self.dim;
        (0..self.clusters())
            .map(|l| {
                let ids = self.members[self.list_start[l]..self.list_start[l + 1]]
                    .iter()
                    .map(|&i| self.patterns[i as usize].id)
                    .collect();
                (self.coarse[l * d..(l + 1) * d].to_vec(), ids)
            })
            .collect()
    }

    /// Forgets the measured settings of the patterns `ids` (all when `None`): each keeps only its native arm, so
    /// its quality is 0 until other settings are measured again. Returns how many patterns changed.
    pub fn reset_quality(&mut self, ids: Option<&[u64]>) -> usize {
        let mut changed = 0;
        for p in &mut self.patterns {
            if ids.is_some_and(|ids| !ids.contains(&p.id)) {
                continue;
            }
            let before = p.arms.len();
            p.arms.retain(|a| a.settings.is_empty());
            changed += usize::from(p.arms.len() != before);
        }
        changed
    }

    /// Mean silhouette of the IVF lists over at most `max_points` patterns (every n/max-th; cosine distance), in
    /// -1..=1: near 1 when patterns sit close to their own list and far from the next. `None` with fewer than two
    /// non-empty lists.
    pub fn silhouette(&self, max_points: usize) -> Option<f64> {
        let lists: Vec<Vec<u32>> = (0..self.clusters())
            .map(|l| self.members[self.list_start[l]..self.list_start[l + 1]].to_vec())
            .filter(|m| !m.is_empty())
            .collect();
        if lists.len() < 2 {
            return None;
        }
        let n: usize = lists.iter().map(Vec::len).sum();
        let step = n.div_ceil(max_points.max(1));
        let sampled: Vec<Vec<u32>> = lists.iter().map(|m| m.iter().copied().step_by(step).collect()).collect();
        let distance = |a: u32, b: u32| {
            f64::from(1.0 - dot(&self.patterns[a as usize].centroid, &self.patterns[b as usize].centroid))
        };
        let mean_to = |i: u32, members: &[u32]| {
            let others: Vec<f64> = members.iter().filter(|&&j| j != i).map(|&j| distance(i, j)).collect();
            (!others.is_empty()).then(|| others.iter().sum::<f64>() / others.len() as f64)
        };
        let mut total = 0.0;
        let mut count = 0usize;
        for (l, members) in sampled.iter().enumerate() {
            for &i in members {
                // A pattern alone in its list scores 0 (the usual convention).
                let Some(a) = mean_to(i, members) else {
                    count += 1;
                    continue;
                };
                let b = sampled
                    .iter()
                    .enumerate()
                    .filter(|(o, m)| *o != l && !m.is_empty())
                    .filter_map(|(_, m)| mean_to(i, m))
                    .fold(f64::INFINITY, f64::min);
                total += if a.max(b) > 0.0 { (b - a) / a.max(b) } else { 0.0 };
                count += 1;
            }
        }
        (count > 0).then(|| total / count as f64)
    }

    /// Rebuilds the IVF index: k-means++ seeding and spherical Lloyd iterations over the pattern centroids into at
    /// most `clusters` lists (deterministic in `seed`). Returns the number of lists.
    pub fn rebuild_index(&mut self, clusters: usize, seed: u64) -> usize {
        let n = self.patterns.len();
        let k = clusters.min(n);
        self.reset_index();
        if k == 0 {
            return 0;
        }
        let d = self.dim;
        let mut rng = SplitMix64::new(seed ^ 0xD1B5_4A32_D192_ED03);
        let mut next = || rng.unit();
        // k-means++: first centre uniform, then proportional to squared distance (2 − 2 cos for unit vectors).
        let mut centres: Vec<usize> = vec![(next() * n as f64) as usize % n];
        let mut dist: Vec<f64> = self
            .patterns
            .iter()
            .map(|p| f64::from(2.0 - 2.0 * dot(&p.centroid, &self.patterns[centres[0]].centroid)).max(0.0))
            .collect();
        while centres.len() < k {
            let total: f64 = dist.iter().sum();
            let pick = if total <= 0.0 {
                (0..n).find(|i| !centres.contains(i)).unwrap_or(0)
            } else {
                let mut r = next() * total;
                let mut chosen = n - 1;
                for (i, &w) in dist.iter().enumerate() {
                    if r < w {
                        chosen = i;
                        break;
                    }
                    r -= w;
                }
                chosen
            };
            centres.push(pick);
            for (i, p) in self.patterns.iter().enumerate() {
                let dd = f64::from(2.0 - 2.0 * dot(&p.centroid, &self.patterns[pick].centroid)).max(0.0);
                dist[i] = dist[i].min(dd);
            }
        }
        let mut coarse: Vec<f32> = centres.iter().flat_map(|&c| self.patterns[c].centroid.iter().copied()).collect();
        let mut assign = vec![0usize; n];
        for _ in 0..10 {
            let mut changed = false;
            for (i, p) in self.patterns.iter().enumerate() {
                let best = (0..k)
                    .max_by(|&a, &b| {
                        dot(&p.centroid, &coarse[a * d..(a + 1) * d])
                            .total_cmp(&dot(&p.centroid, &coarse[b * d..(b + 1) * d]))
                    })
                    .expect("k > 0");
                if assign[i] != best {
                    assign[i] = best;
                    changed = true;
                }
            }
            let mut sums = vec![0f32; k * d];
            for (i, p) in self.patterns.iter().enumerate() {
                sums[assign[i] * d..(assign[i] + 1) * d].iter_mut().zip(&p.centroid).for_each(|(s, x)| *s += x);
            }
            for c in 0..k {
                let s = &mut sums[c * d..(c + 1) * d];
                if s.iter().any(|&x| x != 0.0) {
                    normalize(s);
                    coarse[c * d..(c + 1) * d].copy_from_slice(s);
                }
            }
            if !changed {
                break;
            }
        }
        // Counting sort of the patterns by list into the contiguous layout.
        let mut start = vec![0usize; k + 1];
        for &a in &assign {
            start[a + 1] += 1;
        }
        for l in 0..k {
            start[l + 1] += start[l];
        }
        let mut fill = start.clone();
        self.members = vec![0; n];
        self.vectors = vec![0.0; n * d];
        self.slot = vec![0; n];
        for (i, &a) in assign.iter().enumerate() {
            let pos = fill[a];
            fill[a] += 1;
            self.members[pos] = i as u32;
            self.slot[i] = pos as u32;
            self.vectors[pos * d..(pos + 1) * d].copy_from_slice(&self.patterns[i].centroid);
        }
        self.coarse = coarse;
        self.list_start = start;
        k
    }

    /// Merges patterns whose centroids have cosine ≥ `threshold` (later ones into the earlier one). With an
    /// index, only patterns sharing an IVF list are compared (near-duplicates share their nearest coarse centroid),
    /// plus every unindexed pattern against all: Σ|list|² comparisons instead of n². Returns how many were merged
    /// away. Invalidates the index (rebuild after).
    pub fn consolidate(&mut self, threshold: f32) -> usize {
        let n = self.patterns.len();
        let mut groups: Vec<Vec<usize>> = if self.list_start.is_empty() {
            vec![(0..n).collect()]
        } else {
            (0..self.clusters())
                .map(|l| {
                    let list = self.members[self.list_start[l]..self.list_start[l + 1]].iter();
                    list.chain(&self.unindexed).map(|&i| i as usize).collect()
                })
                .collect()
        };
        // into[b] = a: b merges into a (a was not merged itself when compared; chains resolve to the root).
        let mut into: Vec<Option<usize>> = vec![None; n];
        for group in &mut groups {
            group.sort_unstable();
            for (x, &a) in group.iter().enumerate() {
                if into[a].is_some() {
                    continue;
                }
                for &b in &group[x + 1..] {
                    if into[b].is_none() && dot(&self.patterns[a].centroid, &self.patterns[b].centroid) >= threshold {
                        into[b] = Some(a);
                    }
                }
            }
        }
        let merged = into.iter().filter(|t| t.is_some()).count();
        if merged == 0 {
            return 0;
        }
        let root = |mut i: usize| {
            while let Some(t) = into[i] {
                i = t;
            }
            i
        };
        let mut slots: Vec<Option<Pattern>> = std::mem::take(&mut self.patterns).into_iter().map(Some).collect();
        for b in 0..n {
            if into[b].is_some() {
                let other = slots[b].take().expect("each pattern merges once");
                merge_into(slots[root(b)].as_mut().expect("a root is never merged"), other);
            }
        }
        self.patterns = slots.into_iter().flatten().collect();
        self.reset_index();
        merged
    }

    fn push_unindexed(&mut self) {
        if !self.list_start.is_empty() {
            self.slot.push(u32::MAX);
        }
        self.unindexed.push((self.patterns.len() - 1) as u32);
    }

    fn reset_index(&mut self) {
        self.coarse.clear();
        self.list_start.clear();
        self.members.clear();
        self.vectors.clear();
        self.slot.clear();
        self.unindexed.clear();
    }

    /// The eviction score of a pattern: `(0.1 + quality) × ln(2 + usage) × 0.5^(age / half_life)`.
    pub fn eviction_score(&self, p: &Pattern) -> f64 {
        let age = self.clock.saturating_sub(p.last_used.load(Ordering::Relaxed)) as f64;
        (0.1 + p.quality()) * (2.0 + p.usage.load(Ordering::Relaxed) as f64).ln() * 0.5f64.powf(age / self.half_life)
    }

    /// Keeps the `max` patterns with the highest eviction score; returns how many were evicted. Invalidates the
    /// index when anything is evicted.
    pub fn evict(&mut self, max: usize) -> usize {
        if self.patterns.len() <= max {
            return 0;
        }
        let mut scored: Vec<(f64, u64)> = self.patterns.iter().map(|p| (self.eviction_score(p), p.id)).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let keep: std::collections::HashSet<u64> = scored.iter().take(max).map(|s| s.1).collect();
        let before = self.patterns.len();
        self.patterns.retain(|p| keep.contains(&p.id));
        self.reset_index();
        before - self.patterns.len()
    }

    /// The persistent part of the bank: patterns with their ids, the next id and the logical clock (the IVF index
    /// is derived and rebuilt on restore).
    pub(crate) fn to_state(&self) -> BankState {
        BankState { patterns: self.patterns.clone(), next_id: self.next_id, clock: self.clock }
    }

    /// Replaces the bank's patterns with `state` (ids kept) and leaves it unindexed.
    ///
    /// # Errors
    /// When a centroid has the wrong dimension or two patterns share an id.
    pub(crate) fn restore(&mut self, state: BankState) -> ruvector_dag::Result<()> {
        let mut seen = std::collections::HashSet::with_capacity(state.patterns.len());
        for p in &state.patterns {
            if p.centroid.len() != self.dim {
                return Err(state_error(format!(
                    "pattern {} has dimension {}, expected {}",
                    p.id,
                    p.centroid.len(),
                    self.dim
                )));
            }
            if !seen.insert(p.id) || p.id >= state.next_id {
                return Err(state_error(format!("pattern id {} is duplicated or beyond next id", p.id)));
            }
        }
        self.patterns = state.patterns;
        self.next_id = state.next_id;
        self.clock = state.clock;
        self.reset_index();
        Ok(())
    }

    /// Serialises every pattern (JSON), for persistence.
    pub fn export(&self) -> String {
        serde_json::to_string(&self.patterns).expect("patterns serialise")
    }

    /// Adds patterns from [`export`](Self::export) output (new ids are assigned); returns how many were imported.
    ///
    /// # Errors
    /// When the text is not an export or an embedding has the wrong dimension.
    pub fn import(&mut self, json: &str) -> ruvector_dag::Result<usize> {
        let patterns: Vec<Pattern> = serde_json::from_str(json).map_err(|e| ruvector_dag::Error::Plugin {
            plugin: "reasoning_bank".into(),
            message: format!("import: {e}"),
        })?;
        if let Some(p) = patterns.iter().find(|p| p.centroid.len() != self.dim) {
            return Err(ruvector_dag::Error::Plugin {
                plugin: "reasoning_bank".into(),
                message: format!("import: pattern {} has dimension {}, expected {}", p.id, p.centroid.len(), self.dim),
            });
        }
        let n = patterns.len();
        for mut p in patterns {
            p.id = self.next_id;
            self.next_id += 1;
            normalize(&mut p.centroid);
            self.patterns.push(p);
            self.push_unindexed();
        }
        Ok(n)
    }
}

/// What [`DagReasoningBank::to_state`] saves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BankState {
    pub(crate) patterns: Vec<Pattern>,
    pub(crate) next_id: u64,
    pub(crate) clock: u64,
}

fn state_error(message: String) -> ruvector_dag::Error {
    ruvector_dag::Error::Plugin { plugin: "reasoning_bank".into(), message: format!("state: {message}") }
}

fn merge_into(into: &mut Pattern, other: Pattern) {
    let (a, b) = (into.samples as f32, other.samples as f32);
    into.centroid.iter_mut().zip(&other.centroid).for_each(|(x, y)| *x = (a * *x + b * y) / (a + b));
    normalize(&mut into.centroid);
    into.samples += other.samples;
    for arm in other.arms {
        match into.arms.iter_mut().find(|x| x.settings == arm.settings) {
            Some(x) => {
                let total = x.count + arm.count;
                x.mean_log_latency =
                    (x.mean_log_latency * x.count as f64 + arm.mean_log_latency * arm.count as f64) / total as f64;
                x.count = total;
            }
            None => into.arms.push(arm),
        }
    }
    into.usage.fetch_add(other.usage.load(Ordering::Relaxed), Ordering::Relaxed);
    let last = other.last_used.load(Ordering::Relaxed).max(into.last_used.load(Ordering::Relaxed));
    into.last_used.store(last, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {

    #[test]
    fn imported_patterns_are_weak_priors_with_the_shared_quality() {
        let mut bank = DagReasoningBank::default();
        assert_eq!(bank.dim(), 256);
        let mut v = vec![0.0f32; 256];
        v[3] = 2.0;
        let settings = vec![("enable_nestloop".to_string(), "off".to_string())];
        let id = bank
            .import_pattern(ImportedPattern { centroid: v.clone(), quality: 0.4, confidence: 0.75, settings })
            .unwrap();
        let p = bank.pattern(id).unwrap();
        assert!((p.quality() - 0.4).abs() < 1e-9, "{}", p.quality());
        assert_eq!(p.arms.iter().map(|a| a.count).sum::<u64>(), 2);
        assert!((p.centroid[3] - 1.0).abs() < 1e-6);
        let low = ImportedPattern { centroid: v.clone(), quality: 0.4, confidence: 0.4, settings: vec![] };
        assert!(bank.import_pattern(low).unwrap_err().to_string().contains("confidence"));
        let short = ImportedPattern { centroid: vec![1.0; 8], quality: 0.4, confidence: 0.9, settings: vec![] };
        assert!(bank.import_pattern(short).is_err());
    }

    #[test]
    fn reset_quality_keeps_only_native_arms() {
        let mut bank = DagReasoningBank::new(4);
        let fast = vec![("enable_hashjoin".to_owned(), "off".to_owned())];
        let a = bank.observe(&[1.0, 0.0, 0.0, 0.0], &[], 10.0);
        bank.observe(&[1.0, 0.0, 0.0, 0.0], &fast, 2.0);
        let b = bank.observe(&[0.0, 1.0, 0.0, 0.0], &[], 10.0);
        bank.observe(&[0.0, 1.0, 0.0, 0.0], &fast, 2.0);
        assert!(bank.pattern(a).unwrap().quality() > 0.5);
        assert_eq!(bank.reset_quality(Some(&[a])), 1);
        assert_eq!(bank.pattern(a).unwrap().quality(), 0.0);
        assert!(bank.pattern(b).unwrap().quality() > 0.5);
        assert_eq!(bank.reset_quality(None), 1, "only b still had other arms");
        assert_eq!(bank.pattern(b).unwrap().arms.len(), 1);
    }

    #[test]
    fn silhouette_is_high_for_separated_clusters() {
        let mut bank = DagReasoningBank::new(4);
        assert_eq!(bank.silhouette(100), None);
        for i in 0..20 {
            let e = 0.01 * f32::from(i as u8);
            bank.insert(&[1.0, e, 0.0, 0.0], Vec::new()).unwrap();
            bank.insert(&[0.0, 0.0, 1.0, e], Vec::new()).unwrap();
        }
        bank.rebuild_index(2, 1);
        let s = bank.silhouette(1000).unwrap();
        assert!(s > 0.9, "{s}");
        assert!(bank.silhouette(4).unwrap() > 0.9, "sampled");
    }

    use super::*;

    fn v(dim: usize, hot: usize) -> Vec<f32> {
        let mut x = vec![0.01; dim];
        x[hot] = 1.0;
        x
    }

    #[test]
    fn inserted_patterns_are_searchable_and_listed_in_the_index() {
        let mut b = DagReasoningBank::new(8);
        let arms = vec![
            Arm { settings: vec![], count: 3, mean_log_latency: 100f64.ln_1p() },
            Arm { settings: vec![("enable_nestloop".into(), "off".into())], count: 3, mean_log_latency: 25f64.ln_1p() },
        ];
        let id = b.insert(&v(8, 2), arms).unwrap();
        let hit = &b.query_similar(&v(8, 2), 1)[0];
        assert_eq!(hit.id, id);
        assert!(hit.quality > 0.7 && hit.best_settings.len() == 1);
        assert!(b.insert(&[0.0; 8], vec![]).is_err());
        assert!(b.insert(&[1.0; 4], vec![]).is_err());
        b.observe(&v(8, 5), &[], 10.0);
        assert!(b.index_lists().is_empty(), "no index yet");
        b.rebuild_index(2, 1);
        let lists = b.index_lists();
        let mut ids: Vec<u64> = lists.iter().flat_map(|(_, ids)| ids.clone()).collect();
        ids.sort_unstable();
        assert_eq!(ids, b.patterns().iter().map(|p| p.id).collect::<Vec<_>>());
        assert!(lists.iter().all(|(c, _)| c.len() == 8));
    }

    #[test]
    fn observations_form_patterns_with_arms_quality_and_confidence() {
        let mut b = DagReasoningBank::new(8);
        let fast = vec![("enable_nestloop".to_owned(), "off".to_owned())];
        for _ in 0..4 {
            b.observe(&v(8, 0), &[], 100.0);
            b.observe(&v(8, 0), &fast, 25.0);
        }
        assert_eq!(b.len(), 1);
        let m = &b.query_similar(&v(8, 0), 1)[0];
        assert_eq!(m.best_settings, fast);
        assert!((m.quality - 0.75).abs() < 1e-9, "{}", m.quality);
        assert!(m.predicted_ratio < 0.3);
        assert!((m.confidence - (1.0 - 1.0 / 5f64.sqrt())).abs() < 1e-12);
        b.observe(&v(8, 3), &[], 10.0);
        assert_eq!(b.len(), 2, "a different embedding starts a new pattern");
    }

    #[test]
    fn consolidation_and_eviction() {
        let mut b = DagReasoningBank::new(8);
        b.merge_threshold = 1.1; // never merge on observe
        for _ in 0..3 {
            b.observe(&v(8, 1), &[], 10.0);
        }
        b.observe(&v(8, 2), &[], 10.0);
        assert_eq!(b.len(), 4);
        assert_eq!(b.consolidate(0.99), 2, "the three identical patterns merge into one");
        assert_eq!(b.len(), 2);
        assert_eq!(b.patterns()[0].samples + b.patterns()[1].samples, 4);
        // Use one pattern: the other goes first.
        for _ in 0..5 {
            b.query_similar(&v(8, 2), 1);
        }
        assert_eq!(b.evict(1), 1);
        assert!(b.query_similar(&v(8, 2), 1)[0].similarity > 0.99);
        let json = b.export();
        let mut c = DagReasoningBank::new(8);
        assert_eq!(c.import(&json).unwrap(), 1);
        assert!(c.import("[{").is_err());
        assert!(DagReasoningBank::new(4).import(&json).is_err());
    }
}
