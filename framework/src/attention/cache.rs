//! An LRU cache of attention scores, keyed by mechanism and a 128-bit structural fingerprint of the plan.
//!
//! The fingerprint covers every node's id, operator (kind and fields) and estimates, and every edge, so two
//! plans that differ in anything a mechanism reads do not collide in practice (two independent 64-bit SipHash
//! streams). Lookups and inserts are O(1): a hash map into a slab of entries linked in recency order.

use super::AttentionScores;
use crate::dag::QueryDag;
use rustc_hash::FxHashMap;
use std::hash::{Hash, Hasher};

/// A 128-bit structural fingerprint of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlanFingerprint(pub u128);

impl PlanFingerprint {
    /// Fingerprint of `dag`: ids, operators, estimates, filters and edges, in insertion order.
    pub fn of(dag: &QueryDag) -> Self {
        let mut a = std::collections::hash_map::DefaultHasher::new();
        let mut b = std::collections::hash_map::DefaultHasher::new();
        0xA5A5_u16.hash(&mut b); // a different stream for the high half
        for h in [&mut a, &mut b] {
            dag.node_count().hash(h);
            for n in dag.nodes() {
                n.id.hash(h);
                // Debug output covers every field of the operator, including its kind.
                format_args!("{:?}", n.op).to_string().hash(h);
                let e = n.info.estimates;
                e.startup_cost.to_bits().hash(h);
                e.total_cost.to_bits().hash(h);
                e.rows.to_bits().hash(h);
                e.width.hash(h);
                n.info.filter.hash(h);
            }
            for e in dag.edges() {
                e.hash(h);
            }
        }
        PlanFingerprint(u128::from(a.finish()) << 64 | u128::from(b.finish()))
    }
}

/// Hit and miss counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries held now.
    pub len: usize,
    /// Maximum entries.
    pub capacity: usize,
}

impl CacheStats {
    /// Hits over lookups (0 before any lookup).
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 { 0.0 } else { self.hits as f64 / lookups as f64 }
    }
}

type Key = (u32, PlanFingerprint);

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Entry {
    key: Key,
    scores: AttentionScores,
    prev: u32,
    next: u32,
}

/// Least-recently-used cache of attention scores (see the [module docs](self)).
///
/// ```
/// use ruvector_dag::attention::{AttentionCache, AttentionScores, PlanFingerprint};
/// use ruvector_dag::{OperatorNode, QueryDag};
/// let mut dag = QueryDag::new();
/// dag.add_node(0, OperatorNode::SeqScan { table: "t".into() });
/// let key = PlanFingerprint::of(&dag);
/// let mut cache = AttentionCache::new(10_000);
/// assert!(cache.get(3, key).is_none());
/// cache.insert(3, key, AttentionScores::uniform(&dag));
/// assert_eq!(cache.get(3, key).unwrap().as_slice(), &[1.0]);
/// assert_eq!(cache.stats().hits, 1);
/// ```
#[derive(Debug, Clone)]
pub struct AttentionCache {
    capacity: usize,
    map: FxHashMap<Key, u32>,
    entries: Vec<Entry>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    stats: CacheStats,
}

impl AttentionCache {
    /// A cache holding at most `capacity` entries (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        AttentionCache {
            capacity,
            map: FxHashMap::default(),
            entries: Vec::new(),
            head: NIL,
            tail: NIL,
            stats: CacheStats { capacity, ..CacheStats::default() },
        }
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats { len: self.map.len(), ..self.stats }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = (self.entries[i as usize].prev, self.entries[i as usize].next);
        if prev == NIL {
            self.head = next
        } else {
            self.entries[prev as usize].next = next
        }
        if next == NIL { self.tail = prev } else { self.entries[next as usize].prev = prev }
    }

    fn push_front(&mut self, i: u32) {
        self.entries[i as usize].prev = NIL;
        self.entries[i as usize].next = self.head;
        if self.head != NIL {
            self.entries[self.head as usize].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    /// The scores cached for `mechanism` (an index into the caller's mechanism list) and `plan`; marks the
    /// entry most recently used.
    pub fn get(&mut self, mechanism: u32, plan: PlanFingerprint) -> Option<&AttentionScores> {
        match self.map.get(&(mechanism, plan)).copied() {
            Some(i) => {
                self.stats.hits += 1;
                self.unlink(i);
                self.push_front(i);
                Some(&self.entries[i as usize].scores)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Caches `scores`, evicting the least recently used entry when full.
    pub fn insert(&mut self, mechanism: u32, plan: PlanFingerprint, scores: AttentionScores) {
        if self.capacity == 0 {
            return;
        }
        let key = (mechanism, plan);
        if let Some(&i) = self.map.get(&key) {
            self.entries[i as usize].scores = scores;
            self.unlink(i);
            self.push_front(i);
            return;
        }
        let i = if self.map.len() >= self.capacity {
            let victim = self.tail;
            self.unlink(victim);
            let old = self.entries[victim as usize].key;
            self.map.remove(&old);
            self.stats.evictions += 1;
            self.entries[victim as usize] = Entry { key, scores, prev: NIL, next: NIL };
            victim
        } else {
            self.entries.push(Entry { key, scores, prev: NIL, next: NIL });
            (self.entries.len() - 1) as u32
        };
        self.map.insert(key, i);
        self.push_front(i);
    }

    /// Drops every entry (counters are kept).
    pub fn clear(&mut self) {
        self.map.clear();
        self.entries.clear();
        self.head = NIL;
        self.tail = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeInfo, OperatorNode};

    fn plan(rows: f64) -> QueryDag {
        let mut dag = QueryDag::new();
        dag.add_node_with(0, OperatorNode::SeqScan { table: "t".into() }, NodeInfo::with_estimates(0.0, 1.0, rows, 8));
        dag
    }

    #[test]
    fn fingerprints_see_estimates_and_operators() {
        assert_eq!(PlanFingerprint::of(&plan(10.0)), PlanFingerprint::of(&plan(10.0)));
        assert_ne!(PlanFingerprint::of(&plan(10.0)), PlanFingerprint::of(&plan(11.0)));
        let mut other = plan(10.0);
        other.add_node(0, OperatorNode::SeqScan { table: "u".into() });
        assert_ne!(PlanFingerprint::of(&plan(10.0)), PlanFingerprint::of(&other));
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let mut c = AttentionCache::new(2);
        let k = |r| PlanFingerprint::of(&plan(r));
        let s = AttentionScores::uniform(&plan(1.0));
        c.insert(0, k(1.0), s.clone());
        c.insert(0, k(2.0), s.clone());
        assert!(c.get(0, k(1.0)).is_some()); // 1 is now most recent
        c.insert(0, k(3.0), s.clone()); // evicts 2
        assert!(c.get(0, k(2.0)).is_none());
        assert!(c.get(0, k(1.0)).is_some() && c.get(0, k(3.0)).is_some());
        assert!(c.get(1, k(1.0)).is_none(), "mechanisms are separate");
        let st = c.stats();
        assert_eq!((st.len, st.evictions, st.hits, st.misses), (2, 1, 3, 2));
        assert!((st.hit_rate() - 0.6).abs() < 1e-12);
        let mut off = AttentionCache::new(0);
        off.insert(0, k(1.0), s);
        assert!(off.is_empty());
    }
}
