//! Fixed-size embeddings of operators and plans.
//!
//! **Operator features** (128 values, fixed layout, no overlaps):
//!
//! | dims | feature |
//! | --- | --- |
//! | 0..51 | operator kind, one-hot ([`OperatorKind::index`]) |
//! | 51..61 | operator category, one-hot ([`OperatorCategory`]) |
//! | 61..64 | `ln(1 + rows) / 20`, `ln(1 + total cost) / 30`, `ln(1 + width) / 10` |
//! | 64..66 | depth / (1 + max depth), height / (1 + max height) |
//! | 66..71 | filter shape: has a filter, `AND` terms / 10, `OR` terms / 10, pattern match (`~~`, `LIKE`), `ANY`/`IN` |
//! | 71..79 | join type one-hot (inner, left, right, full, semi, anti, right anti), then "not a join" |
//! | 79..95 | relation identity: 16 hashed buckets (feature hashing of the relation name) |
//! | 95..111 | index identity: 16 hashed buckets |
//! | 111..119 | parent relationship one-hot (6), parallel aware, has actuals |
//! | 119..124 | actuals: `ln(q-error of rows) / 10` (sign: over-estimate +), `ln(1 + loops) / 10`, never executed, `ln(1 + actual ms) / 10`, 0 |
//! | 124..128 | plan-level scalars, plan embeddings only: `ln(1 + nodes) / 10`, max depth / 64, `ln(1 + own cost total) / 30`, share of blocking operators |
//!
//! **Plan embedding** (`dim`, default 256): the first 128 values are the mean of the operators' features (plus the
//! plan-level scalars), the next 128 the cost-share-weighted (or attention-weighted) sum; then the vector is
//! L2-normalised. The same plan shape with the same estimates gives the same embedding on every machine (hashing
//! uses a fixed FNV-1a). For `dim ≠ 256` the 256 values are folded deterministically: value `i` is added, with a
//! fixed pseudo-random sign, to slot `i mod dim` (feature hashing), then normalised.

use crate::dag::{JoinType, OperatorCategory, OperatorKind, QueryDag, Relationship};
use crate::mincut::bottleneck::self_costs;

/// Length of an operator's feature vector.
pub const NODE_FEATURES: usize = 128;
/// Default plan embedding dimension.
pub const DEFAULT_DIM: usize = 256;

const CATEGORIES: [OperatorCategory; 10] = [
    OperatorCategory::Scan,
    OperatorCategory::Join,
    OperatorCategory::Aggregate,
    OperatorCategory::Sort,
    OperatorCategory::Filter,
    OperatorCategory::SetOp,
    OperatorCategory::Materialize,
    OperatorCategory::Utility,
    OperatorCategory::Parallel,
    OperatorCategory::Other,
];

/// FNV-1a: stable across platforms and versions, unlike `DefaultHasher`.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

/// Non-overlapping occurrences of the ASCII `needle` in `hay`, ignoring ASCII case (what
/// `hay.to_ascii_uppercase().matches(needle).count()` counts, without allocating).
fn count_ignore_case(hay: &[u8], needle: &[u8]) -> usize {
    let (mut count, mut i) = (0, 0);
    while i + needle.len() <= hay.len() {
        if hay[i..i + needle.len()].eq_ignore_ascii_case(needle) {
            count += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    count
}

fn log_scaled(v: f64, scale: f64) -> f32 {
    ((1.0 + v.max(0.0)).ln() / scale) as f32
}

/// The 128 features of every operator, by insertion position, written into `out` (`n × 128`).
pub fn node_features(dag: &QueryDag, out: &mut Vec<f32>) {
    write_node_features(dag, &dag.depths(), out);
}

/// [`node_features`] with the plan's depths already computed.
fn write_node_features(dag: &QueryDag, depths: &[usize], out: &mut Vec<f32>) {
    let n = dag.node_count();
    out.clear();
    out.resize(n * NODE_FEATURES, 0.0);
    let heights = dag.heights();
    let max_depth = depths.iter().copied().max().unwrap_or(0) as f32;
    let max_height = heights.iter().copied().max().unwrap_or(0) as f32;
    for (p, node) in dag.nodes().enumerate() {
        let f = &mut out[p * NODE_FEATURES..(p + 1) * NODE_FEATURES];
        let kind = node.op.kind();
        f[kind.index()] = 1.0;
        let cat = CATEGORIES.iter().position(|&c| c == kind.category()).expect("every category is listed");
        f[51 + cat] = 1.0;
        let e = node.info.estimates;
        f[61] = log_scaled(e.rows, 20.0);
        f[62] = log_scaled(e.total_cost, 30.0);
        f[63] = log_scaled(f64::from(e.width), 10.0);
        f[64] = depths[p] as f32 / (1.0 + max_depth);
        f[65] = heights[p] as f32 / (1.0 + max_height);
        if let Some(filter) = node.info.filter.as_deref().or(node.op.condition()) {
            let b = filter.as_bytes();
            f[66] = 1.0;
            f[67] = (count_ignore_case(b, b" AND ") as f32 / 10.0).min(1.0);
            f[68] = (count_ignore_case(b, b" OR ") as f32 / 10.0).min(1.0);
            f[69] = f32::from(filter.contains("~~") || count_ignore_case(b, b" LIKE ") > 0);
            f[70] = f32::from(count_ignore_case(b, b"ANY (") > 0 || count_ignore_case(b, b" IN (") > 0);
        }
        match node.op.join_type() {
            Some(j) => f[71 + JoinType::ALL.iter().position(|&x| x == j).expect("listed")] = 1.0,
            None => f[78] = 1.0,
        }
        if let Some(t) = node.op.table() {
            f[79 + (fnv(t.as_bytes()) % 16) as usize] = 1.0;
        }
        if let Some(i) = node.op.index() {
            f[95 + (fnv(i.as_bytes()) % 16) as usize] = 1.0;
        }
        if let Some(r) = node.info.relationship {
            f[111 + Relationship::ALL.iter().position(|&x| x == r).expect("listed")] = 1.0;
        }
        f[117] = f32::from(node.info.parallel_aware);
        if let Some(a) = node.info.actual {
            f[118] = 1.0;
            if a.loops > 0.0 {
                f[119] = ((e.rows.max(1.0) / a.rows.max(1.0)).ln() / 10.0) as f32;
                f[120] = log_scaled(a.loops, 10.0);
                f[122] = log_scaled(a.total_ms, 10.0);
            } else {
                f[121] = 1.0;
            }
        }
    }
}

/// The plan embedding of `dag` with `dim` values (see the [module docs](self)); `weights` (one per operator,
/// insertion order, e.g. attention scores) weigh the second half, cost shares when `None`.
pub fn plan_embedding(dag: &QueryDag, dim: usize, weights: Option<&[f32]>) -> Vec<f32> {
    let n = dag.node_count();
    let mut v = vec![0f32; DEFAULT_DIM];
    if n > 0 {
        let depths = dag.depths();
        let mut features = Vec::new();
        write_node_features(dag, &depths, &mut features);
        let costs = self_costs(dag);
        let total: f64 = costs.iter().sum();
        let share: Vec<f32> = match weights {
            Some(w) if w.len() == n => w.to_vec(),
            _ if total > 0.0 => costs.iter().map(|c| (c / total) as f32).collect(),
            _ => vec![1.0 / n as f32; n],
        };
        for p in 0..n {
            let f = &features[p * NODE_FEATURES..(p + 1) * NODE_FEATURES];
            for i in 0..NODE_FEATURES {
                v[i] += f[i] / n as f32;
                v[NODE_FEATURES + i] += share[p] * f[i];
            }
        }
        v[124] = log_scaled(n as f64, 10.0);
        v[125] = (depths.iter().copied().max().unwrap_or(0) as f32 / 64.0).min(1.0);
        v[126] = log_scaled(total, 30.0);
        v[127] = dag.nodes().filter(|r| r.op.kind().is_blocking()).count() as f32 / n as f32;
    }
    let mut out = if dim == DEFAULT_DIM {
        v
    } else {
        let slots = dim.max(1);
        let mut folded = vec![0f32; slots];
        for (i, x) in v.iter().enumerate() {
            let sign = if fnv(&(i as u64).to_le_bytes()) & 1 == 0 { 1.0 } else { -1.0 };
            folded[i % slots] += sign * x;
        }
        folded
    };
    let norm = out.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
    out
}

impl QueryDag {
    /// The plan's 256-dimensional, L2-normalised embedding (see [`plan_embedding`]).
    pub fn embedding(&self) -> Vec<f32> {
        plan_embedding(self, DEFAULT_DIM, None)
    }
}

/// Which kinds are represented: all of them, one slot each.
const _: () = assert!(OperatorKind::COUNT == 51);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::generator::{DagShape, generate};

    #[test]
    fn counting_ignores_case_without_overlaps() {
        assert_eq!(count_ignore_case(b"a and b AND c", b" AND "), 2);
        assert_eq!(count_ignore_case(b" AND AND ", b" AND "), 1);
        assert_eq!(count_ignore_case(b"x in (1)", b" IN ("), 1);
        assert_eq!(count_ignore_case(b"", b" OR "), 0);
    }

    #[test]
    fn embeddings_are_normalised_deterministic_and_shape_sensitive() {
        let a = generate(DagShape::BushyJoin, 40, 1);
        let e = a.embedding();
        assert_eq!(e.len(), 256);
        let norm: f64 = e.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(e, generate(DagShape::BushyJoin, 40, 1).embedding());
        assert_ne!(e, generate(DagShape::LeftDeepJoin, 40, 1).embedding());
        let small = plan_embedding(&a, 64, None);
        assert_eq!(small.len(), 64);
        assert!((small.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() - 1.0).abs() < 1e-5);
        assert!(QueryDag::new().embedding().iter().all(|&x| x == 0.0));
    }

    #[test]
    fn features_do_not_overlap() {
        let dag = generate(DagShape::VectorSearch, 30, 2);
        let mut f = Vec::new();
        node_features(&dag, &mut f);
        for p in 0..dag.node_count() {
            let row = &f[p * NODE_FEATURES..(p + 1) * NODE_FEATURES];
            assert_eq!(row[..51].iter().sum::<f32>(), 1.0, "exactly one kind");
            assert_eq!(row[51..61].iter().sum::<f32>(), 1.0, "exactly one category");
            assert_eq!(row[71..79].iter().sum::<f32>(), 1.0, "a join type or not-a-join");
            assert!(row[124..].iter().all(|&x| x == 0.0), "plan-level slots are empty per operator");
        }
    }
}
