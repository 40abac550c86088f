//! Inline SVG sparklines: a line per run of minutes with data (gaps stay gaps), an optional
//! dashed limit line (the SLO), and the range in a tooltip.

use std::fmt::Write as _;

use super::layout::escape;

/// Size of a sparkline, px.
pub const WIDTH: f64 = 150.0;
/// Height of a sparkline, px.
pub const HEIGHT: f64 = 30.0;

/// A sparkline of `points` (oldest first, one per slot, `None` where there was no data),
/// scaled from 0 to the larger of the highest point and `limit`; `limit`, when given, is drawn
/// dashed and the line turns red where it is above. `label` is the tooltip's first line.
pub fn sparkline(points: &[Option<f64>], limit: Option<f64>, label: &str) -> String {
    let finite = || points.iter().flatten().copied().filter(|v| v.is_finite());
    let (low, top) =
        finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let high = top.max(limit.unwrap_or(0.0));
    let mut out = format!(
        "<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         role=\"img\" aria-label=\"{}\"><title>{}",
        escape(label),
        escape(label)
    );
    if low.is_finite() {
        let _ = write!(out, " (min {}, max {})", short(low), short(top));
    } else {
        out.push_str(" (no data)");
    }
    out.push_str("</title><rect width=\"100%\" height=\"100%\" fill=\"#f3f6fa\"/>");
    if points.is_empty() || !low.is_finite() {
        return out + "</svg>";
    }
    let step = if points.len() > 1 { WIDTH / (points.len() - 1) as f64 } else { 0.0 };
    let scale = if high > 0.0 { (HEIGHT - 4.0) / high } else { 0.0 };
    let y = |v: f64| HEIGHT - 2.0 - v * scale;
    if let Some(limit) = limit.filter(|l| *l > 0.0) {
        let _ = write!(
            out,
            "<line x1=\"0\" x2=\"{WIDTH}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#b42318\" \
             stroke-width=\"1\" stroke-dasharray=\"3 3\" opacity=\".6\"/>",
            y(limit)
        );
    }
    // One polyline per run of consecutive points; a lone point is a dot.
    let mut run: Vec<(f64, f64)> = Vec::new();
    let flush = |run: &mut Vec<(f64, f64)>, out: &mut String| {
        match run.as_slice() {
            [] => {}
            [(x, y)] => {
                let _ =
                    write!(out, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"1.5\" fill=\"#2458c6\"/>");
            }
            many => {
                out.push_str(
                    "<polyline fill=\"none\" stroke=\"#2458c6\" stroke-width=\"1.5\" points=\"",
                );
                for (x, y) in many {
                    let _ = write!(out, "{x:.1},{y:.1} ");
                }
                out.push_str("\"/>");
            }
        }
        run.clear();
    };
    for (i, p) in points.iter().enumerate() {
        match p.filter(|v| v.is_finite()) {
            Some(v) => run.push((i as f64 * step, y(v))),
            None => flush(&mut run, &mut out),
        }
    }
    flush(&mut run, &mut out);
    if let Some(limit) = limit {
        // Points above the limit, marked so a breach shows at a glance.
        for (i, v) in points.iter().enumerate() {
            if let Some(v) = v.filter(|v| v.is_finite() && *v > limit) {
                let _ = write!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"#b42318\"/>",
                    i as f64 * step,
                    y(v)
                );
            }
        }
    }
    out + "</svg>"
}

/// A number in a few significant digits, for tooltips.
fn short(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 { format!("{v:.2e}") } else { format!("{v:.3}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_split_the_line_and_lone_points_are_dots() {
        let svg = sparkline(&[Some(1.0), Some(2.0), None, Some(3.0), None], None, "x");
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("(min 1.000, max 3.000)"));
    }

    #[test]
    fn the_highest_point_touches_the_top_and_zero_the_bottom() {
        let svg = sparkline(&[Some(0.0), Some(4.0)], None, "x");
        // x from 0 to WIDTH; y from HEIGHT - 2 (zero) to 2 (the highest).
        assert!(svg.contains("points=\"0.0,28.0 150.0,2.0 "), "{svg}");
    }

    #[test]
    fn points_over_the_limit_are_marked_and_the_limit_is_drawn() {
        let svg = sparkline(&[Some(0.5), Some(2.0), Some(0.5)], Some(1.0), "x");
        assert!(svg.contains("stroke-dasharray") && svg.contains("(min 0.500, max 2.000)"));
        let under = sparkline(&[Some(0.5)], Some(1.0), "x");
        assert!(under.contains("(min 0.500, max 0.500)"), "the limit is not data");
        assert_eq!(svg.matches("fill=\"#b42318\"").count(), 1);
    }

    #[test]
    fn no_data_is_an_empty_box_and_labels_are_escaped() {
        let svg = sparkline(&[None, None], Some(1.0), "<b>");
        assert!(svg.contains("&lt;b&gt; (no data)") && !svg.contains("<polyline"));
        assert!(svg.ends_with("</svg>"));
    }
}
