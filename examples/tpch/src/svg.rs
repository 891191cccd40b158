//! A small SVG line chart: total time of each round (the learning curve) over faint per-query lines.

use std::fmt::Write;

/// Renders `totals[round]` (seconds) and `per_query[query][round]` (milliseconds, scaled to the same axis as a
/// share of its first round) as an SVG document.
pub(crate) fn learning_curve(title: &str, totals: &[f64], per_query: &[Vec<f64>]) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 70.0, 20.0, 40.0, 50.0);
    let rounds = totals.len().max(2);
    let ymax = totals.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.15;
    let x = |i: usize| left + (w - left - right) * i as f64 / (rounds - 1) as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / ymax);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{title}</text>
<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">round</text>
<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">total time of the 22 queries (s)</text>
"#,
        w / 2.0,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        (left + w - right) / 2.0,
        h - 12.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
    );
    for t in 0..=4 {
        let v = ymax * f64::from(t) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/><text x="{2}" y="{3}" text-anchor="end">{v:.2}</text>"##,
            y(v),
            w - right,
            left - 6.0,
            y(v) + 4.0
        );
    }
    for i in 0..totals.len() {
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, x(i), h - bottom + 16.0, i + 1);
    }
    // Per-query lines, each scaled so its first round sits at the first round's total share.
    let first_total = totals.first().copied().unwrap_or(0.0);
    for q in per_query {
        let Some(&first) = q.first() else { continue };
        if first <= 0.0 {
            continue;
        }
        let share = first / 1000.0 / first_total.max(1e-9);
        let points: Vec<String> = q
            .iter()
            .enumerate()
            .map(|(i, ms)| format!("{:.1},{:.1}", x(i), y(first_total * share * ms / first)))
            .collect();
        let _ =
            writeln!(s, r##"<polyline points="{}" fill="none" stroke="#9ecae1" stroke-width="1"/>"##, points.join(" "));
    }
    let points: Vec<String> = totals.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
    let _ = writeln!(s, r##"<polyline points="{}" fill="none" stroke="#08519c" stroke-width="3"/>"##, points.join(" "));
    for (i, v) in totals.iter().enumerate() {
        let _ = writeln!(s, r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#08519c"/>"##, x(i), y(*v));
    }
    s.push_str("</svg>\n");
    s
}
