//! Hierarchical Lorentz attention: the plan's hierarchy embedded in the hyperboloid, attention by hyperbolic
//! distance to the hierarchy's cost centroid.
//!
//! Embedding (deterministic, Sarkar-style; Sala et al., ICML 2018): each operator sits at hyperbolic radius
//! `depth · edge_length` from the origin (the result), at the angle of its interval in an angular layout where
//! every node's interval is split among its inputs in proportion to the scans below them. With curvature
//! `κ = −1/K`, the point is `x = √K (cosh(r/√K), sinh(r/√K)·cos θ, sinh(r/√K)·sin θ)`, which satisfies
//! `⟨x, x⟩_L = −K` (Lorentz product `⟨x, y⟩_L = −x₀y₀ + x₁y₁ + x₂y₂`); distances are
//! `d(x, y) = √K · arcosh(−⟨x, y⟩_L / K)` (Nickel & Kiela, ICML 2018).
//!
//! The query point is the cost-weighted centroid of the points (the weighted mean of their logarithms at the
//! origin, mapped back: a tangent-space Fréchet-mean approximation, well-conditioned at any radius): it leans
//! towards the subtrees where the plan's work is. Then
//! `w_i ∝ exp(−d(x_i, q) / temperature)`. Points are recomputed on the fly from depth and angle: nothing is
//! allocated per call.
//!
//! Numerics (Yu & De Sa, NeurIPS 2019: far from the origin the ambient coordinates lose precision): distances
//! are computed from polar coordinates, `cosh(d/√K) = cosh(Δr) + 2·sinh r₁·sinh r₂·sin²(Δθ/2)` (in log space
//! when large), which is exact for coincident points; radii are capped at `MAX_RADIUS·√K` so coordinates stay
//! finite for plans hundreds of levels deep.

use crate::config::{AttentionConfig, LorentzParams};
use ruvector_dag::Result;
use ruvector_dag::attention::{AttentionScores, DagAttention, PreparedDag};

/// A point on the hyperboloid (ambient coordinates).
pub type LorentzPoint = [f64; 3];

/// Largest radius (in units of `√K`) a point is placed at; deeper operators share it.
pub(crate) const MAX_RADIUS: f64 = 300.0;

/// Lorentz (Minkowski) inner product.
#[inline]
pub fn lorentz_inner(x: &LorentzPoint, y: &LorentzPoint) -> f64 {
    -x[0] * y[0] + x[1] * y[1] + x[2] * y[2]
}

/// Hyperbolic attention (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HierarchicalLorentzAttention {
    params: LorentzParams,
}

impl HierarchicalLorentzAttention {
    /// Registered name.
    pub const NAME: &'static str = "hierarchical_lorentz";

    /// From the shared configuration.
    pub fn new(config: AttentionConfig) -> Self {
        Self::with_params(config.hierarchical_lorentz)
    }

    /// From this mechanism's parameters.
    pub fn with_params(params: LorentzParams) -> Self {
        HierarchicalLorentzAttention { params }
    }

    fn k(&self) -> f64 {
        -1.0 / self.params.curvature
    }

    /// Polar coordinates of operator `i`: radius in units of `√K` (capped at 300) and angle.
    #[inline]
    pub fn polar(&self, dag: &PreparedDag, i: usize) -> (f64, f64) {
        let r = (f64::from(dag.depth[i]) * self.params.edge_length / self.k().sqrt()).min(MAX_RADIUS);
        (r, dag.angle[i])
    }

    /// The embedding of operator `i` (ambient coordinates, `⟨x, x⟩_L = −K`).
    #[inline]
    pub fn point(&self, dag: &PreparedDag, i: usize) -> LorentzPoint {
        let (r, theta) = self.polar(dag, i);
        from_polar(self.k(), r, theta)
    }

    /// Hyperbolic distance between two points given in polar coordinates (radius in units of `√K`).
    pub fn polar_distance(&self, (r1, t1): (f64, f64), (r2, t2): (f64, f64)) -> f64 {
        let half = ((t1 - t2) / 2.0).sin();
        let s = half * half;
        let dr = (r1 - r2).abs();
        let d = if s == 0.0 || r1 == 0.0 || r2 == 0.0 {
            dr
        } else if r1 + r2 < 600.0 {
            (dr.cosh() + 2.0 * r1.sinh() * r2.sinh() * s).acosh()
        } else {
            // ln(cosh(dr) + 2 sinh r1 sinh r2 s) ≈ ln of the dominant term; acosh(A) = ln(2A) for huge A.
            let ln_t = ln_sinh(r1) + ln_sinh(r2) + (2.0 * s).ln();
            let ln_c = dr - std::f64::consts::LN_2 + (1.0 + (-2.0 * dr).exp()).ln();
            let ln_a = ln_t.max(ln_c) + (1.0 + (-(ln_t - ln_c).abs()).exp()).ln();
            std::f64::consts::LN_2 + ln_a
        };
        self.k().sqrt() * d
    }

    /// Hyperbolic distance between two points of this mechanism's hyperboloid (ambient coordinates).
    pub fn distance(&self, x: &LorentzPoint, y: &LorentzPoint) -> f64 {
        self.polar_distance(to_polar(self.k(), x), to_polar(self.k(), y))
    }

    /// The cost-weighted centroid of the plan's points, in polar coordinates: the weighted mean of the
    /// points' logarithms at the origin (tangent vectors `r·(cos θ, sin θ)`), mapped back by the exponential
    /// map. It lies on the hyperboloid by construction and stays well-conditioned at any radius.
    pub fn centroid_polar(&self, dag: &PreparedDag) -> (f64, f64) {
        let (mut vx, mut vy) = (0.0, 0.0);
        for i in 0..dag.n {
            let (r, theta) = self.polar(dag, i);
            let (s, c) = theta.sin_cos();
            vx += dag.share[i] * r * c;
            vy += dag.share[i] * r * s;
        }
        (vx.hypot(vy).min(MAX_RADIUS), vy.atan2(vx))
    }

    /// The centroid in ambient coordinates.
    pub fn centroid(&self, dag: &PreparedDag) -> LorentzPoint {
        let (r, theta) = self.centroid_polar(dag);
        from_polar(self.k(), r, theta)
    }
}

/// `ln(sinh r)` for `r > 0`, stable for large `r`.
fn ln_sinh(r: f64) -> f64 {
    r - std::f64::consts::LN_2 + (1.0 - (-2.0 * r).exp()).ln()
}

fn from_polar(k: f64, r: f64, theta: f64) -> LorentzPoint {
    let sk = k.sqrt();
    let (s, c) = theta.sin_cos();
    [sk * r.cosh(), sk * r.sinh() * c, sk * r.sinh() * s]
}

fn to_polar(k: f64, x: &LorentzPoint) -> (f64, f64) {
    let sk = k.sqrt();
    // The radius from the spatial part is accurate near the origin and far from it alike.
    let spatial = (x[1] * x[1] + x[2] * x[2]).sqrt() / sk;
    (spatial.asinh(), x[2].atan2(x[1]))
}

impl DagAttention for HierarchicalLorentzAttention {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn forward(&self, dag: &ruvector_dag::QueryDag) -> Result<AttentionScores> {
        crate::forward_via_prepared(self, dag)
    }

    fn forward_prepared(&self, dag: &PreparedDag, out: &mut AttentionScores) -> Result<()> {
        let q = self.centroid_polar(dag);
        out.fill_softmax(dag.n, self.params.temperature, |i| -self.polar_distance(self.polar(dag, i), q))
    }
}
