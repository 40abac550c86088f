//! Hand-written inline SVG charts: the hour-of-day heatmap, the first-frame CDF, the stall
//! duration bars and the daily trend. No scripts; `<title>` elements give native tooltips.

use std::fmt::Write as _;

use super::html::esc;
use crate::reports::i18n::{Texts, ms, pct};
use crate::reports::report::{Bin, CdfPoint, Day, Heatmap, SloView};

/// Colour of a stall ratio: green below half the warning threshold, through yellow and
/// orange to red at twice the critical one.
pub fn stall_color(ratio: f64, slo: &SloView) -> String {
    let stops = [
        (0.0, (232, 245, 233)),
        (slo.stall_ratio_warn * 0.5, (200, 230, 201)),
        (slo.stall_ratio_warn, (255, 236, 153)),
        (slo.stall_ratio_critical, (255, 167, 38)),
        (slo.stall_ratio_critical * 2.0, (211, 47, 47)),
    ];
    let mut rgb = stops[stops.len() - 1].1;
    for w in stops.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if ratio <= b {
            let f = if b > a { ((ratio - a) / (b - a)).clamp(0.0, 1.0) } else { 1.0 };
            let mix =
                |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * f).round() as u8;
            rgb = (mix(ca.0, cb.0), mix(ca.1, cb.1), mix(ca.2, cb.2));
            break;
        }
    }
    format!("#{:02x}{:02x}{:02x}", rgb.0, rgb.1, rgb.2)
}

/// The heatmap: one row per network type (all first), one column per local hour.
pub fn heatmap(h: &Heatmap, slo: &SloView, t: &Texts) -> String {
    const LABEL: f64 = 96.0;
    const W: f64 = 35.0;
    const H: f64 = 26.0;
    const TOP: f64 = 22.0;
    let width = LABEL + 24.0 * W + 2.0;
    let height = TOP + H * h.rows.len() as f64 + 46.0;
    let mut s = String::with_capacity(32 * 1024);
    let _ = write!(
        s,
        "<svg class=\"chart heatmap\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(t.heatmap)
    );
    for hour in 0..24u8 {
        let x = LABEL + f64::from(hour) * W + W / 2.0;
        let peak = h.peak_hours.contains(&hour);
        let _ = write!(
            s,
            "<text x=\"{x}\" y=\"15\" class=\"axis{}\" text-anchor=\"middle\">{hour:02}</text>",
            if peak { " peak" } else { "" }
        );
    }
    for (i, row) in h.rows.iter().enumerate() {
        let y = TOP + H * i as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" class=\"rowlabel{}\" text-anchor=\"end\">{}</text>",
            LABEL - 8.0,
            y + H / 2.0 + 4.0,
            if i == 0 { " strong" } else { "" },
            esc(&row.label)
        );
        for c in &row.cells {
            let x = LABEL + f64::from(c.hour) * W;
            let (fill, text) = match c.stall_ratio {
                Some(r) => (stall_color(r, slo), format!("{:.1}", r * 100.0)),
                None => ("#f1f3f5".to_owned(), "–".to_owned()),
            };
            let dark = c.stall_ratio.is_some_and(|r| r >= slo.stall_ratio_critical * 1.4);
            let _ = write!(
                s,
                "<g><title>{} {:02}:00 · {} {} · {:.0} min</title>\
                 <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\" rx=\"2\"/>\
                 <text x=\"{}\" y=\"{}\" class=\"cell{}\" text-anchor=\"middle\">{text}</text></g>",
                esc(&row.label),
                c.hour,
                t.stall_ratio,
                c.stall_ratio.map_or_else(|| "-".to_owned(), pct),
                c.viewing_minutes,
                x + 1.0,
                y + 1.0,
                W - 2.0,
                H - 2.0,
                x + W / 2.0,
                y + H / 2.0 + 3.5,
                if dark { " light" } else { "" },
            );
        }
    }
    // Peak hours outlined, as runs of adjacent hours.
    let rows_h = H * h.rows.len() as f64;
    let mut hour = 0u8;
    while hour < 24 {
        if h.peak_hours.contains(&hour) {
            let start = hour;
            while hour < 24 && h.peak_hours.contains(&hour) {
                hour += 1;
            }
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" class=\"peakbox\"/>",
                LABEL + f64::from(start) * W,
                TOP - 1.0,
                f64::from(hour - start) * W,
                rows_h + 2.0
            );
        } else {
            hour += 1;
        }
    }
    // Legend.
    let ly = TOP + rows_h + 16.0;
    let marks = [
        0.0,
        slo.stall_ratio_warn * 0.5,
        slo.stall_ratio_warn,
        slo.stall_ratio_critical,
        slo.stall_ratio_critical * 2.0,
    ];
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"end\">{}</text>",
        LABEL - 8.0,
        ly + 12.0,
        esc(t.stall_ratio)
    );
    for (i, m) in marks.iter().enumerate() {
        let x = LABEL + i as f64 * 70.0;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{ly}\" width=\"22\" height=\"14\" fill=\"{}\" rx=\"2\"/>\
             <text x=\"{}\" y=\"{}\" class=\"axis\">{}{}</text>",
            stall_color(*m, slo),
            x + 27.0,
            ly + 11.0,
            if i == marks.len() - 1 { "≥ " } else { "" },
            pct(*m)
        );
    }
    let _ = write!(
        s,
        "<rect x=\"{}\" y=\"{ly}\" width=\"22\" height=\"14\" class=\"peakbox\"/>\
         <text x=\"{}\" y=\"{}\" class=\"axis\">{}</text>",
        LABEL + 5.0 * 70.0 + 10.0,
        LABEL + 5.0 * 70.0 + 37.0,
        ly + 11.0,
        esc(t.peak_hours)
    );
    s.push_str("</svg>");
    s
}

/// Plot area of the line and bar charts.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl Frame {
    fn x(&self, f: f64) -> f64 {
        self.left + f * (self.w - self.left - self.right)
    }
    fn y(&self, f: f64) -> f64 {
        self.top + (1.0 - f) * (self.h - self.top - self.bottom)
    }
    fn open(&self, s: &mut String, class: &str, label: &str) {
        let _ = write!(
            s,
            "<svg class=\"chart {class}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" \
             xmlns=\"http://www.w3.org/2000/svg\">",
            self.w,
            self.h,
            esc(label)
        );
    }
    /// Horizontal grid lines with labels at `ticks` (fractions of the y range).
    fn y_grid(&self, s: &mut String, ticks: &[(f64, String)]) {
        for (f, label) in ticks {
            let y = self.y(*f);
            let _ = write!(
                s,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" class=\"grid\"/>\
                 <text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"end\">{}</text>",
                self.left,
                self.w - self.right,
                self.left - 6.0,
                y + 4.0,
                esc(label)
            );
        }
    }
}

/// First-frame CDF, this period (solid) and the previous one (dashed), with the SLO's good
/// and warning thresholds.
pub fn cdf(
    now: &[CdfPoint],
    before: &[CdfPoint],
    slo: &SloView,
    t: &Texts,
    previous: &str,
) -> String {
    let f = Frame { w: 520.0, h: 260.0, left: 44.0, top: 14.0, right: 14.0, bottom: 40.0 };
    // Show up to where both curves pass 99 %, at least the warning threshold.
    let reach = |pts: &[CdfPoint]| pts.iter().find(|p| p.fraction >= 0.99).map_or(20_000, |p| p.ms);
    let max_ms = reach(now)
        .max(if before.is_empty() { 0 } else { reach(before) })
        .max((slo.first_frame_warn_ms * 1.25) as u64)
        .clamp(1000, 20_000) as f64;
    let mut s = String::with_capacity(8 * 1024);
    f.open(&mut s, "cdf", t.first_frame_cdf);
    let ticks: Vec<(f64, String)> =
        [0.0, 0.25, 0.5, 0.75, 1.0].iter().map(|&v| (v, format!("{:.0}%", v * 100.0))).collect();
    f.y_grid(&mut s, &ticks);
    let step = if max_ms > 8000.0 {
        2000.0
    } else if max_ms > 3000.0 {
        1000.0
    } else {
        500.0
    };
    let mut v = 0.0;
    while v <= max_ms + 1.0 {
        let x = f.x(v / max_ms);
        let _ = write!(
            s,
            "<text x=\"{x}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
            f.h - f.bottom + 16.0,
            if v == 0.0 { "0".to_owned() } else { format!("{} s", v / 1000.0) }
        );
        v += step;
    }
    for (limit, class) in
        [(slo.first_frame_good_ms, "slo good"), (slo.first_frame_warn_ms, "slo warn")]
    {
        if limit <= max_ms {
            let x = f.x(limit / max_ms);
            let _ = write!(
                s,
                "<line x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\" class=\"{class}\"/>",
                f.y(1.0),
                f.y(0.0)
            );
        }
    }
    let path = |pts: &[CdfPoint]| {
        let mut d = format!("M{} {}", f.x(0.0), f.y(0.0));
        for p in pts.iter().filter(|p| (p.ms as f64) <= max_ms) {
            let _ = write!(d, " L{:.1} {:.1}", f.x(p.ms as f64 / max_ms), f.y(p.fraction));
        }
        d
    };
    if !before.is_empty() {
        let _ = write!(
            s,
            "<path d=\"{}\" class=\"line previous\"><title>{}</title></path>",
            path(before),
            esc(previous)
        );
    }
    if !now.is_empty() {
        let _ = write!(
            s,
            "<path d=\"{}\" class=\"line current\"><title>{}</title></path>",
            path(now),
            esc(t.this_period)
        );
        for p in now.iter().filter(|p| (p.ms as f64) <= max_ms) {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.2\" class=\"dot\"><title>≤ {}: {}</title></circle>",
                f.x(p.ms as f64 / max_ms),
                f.y(p.fraction),
                ms(p.ms as f64),
                pct(p.fraction)
            );
        }
    }
    // Legend.
    let ly = f.h - 8.0;
    let _ = write!(
        s,
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{ly}\" y2=\"{ly}\" class=\"line current\"/><text x=\"{2}\" y=\"{3}\" class=\"axis\">{4}</text>\
         <line x1=\"{5}\" x2=\"{6}\" y1=\"{ly}\" y2=\"{ly}\" class=\"line previous\"/><text x=\"{7}\" y=\"{3}\" class=\"axis\">{8}</text>\
         <line x1=\"{9}\" x2=\"{9}\" y1=\"{10}\" y2=\"{11}\" class=\"slo warn\"/><text x=\"{12}\" y=\"{3}\" class=\"axis\">SLO</text>",
        f.left,
        f.left + 22.0,
        f.left + 27.0,
        ly + 4.0,
        esc(t.this_period),
        f.left + 130.0,
        f.left + 152.0,
        f.left + 157.0,
        esc(previous),
        f.left + 290.0,
        ly - 6.0,
        ly + 6.0,
        f.left + 296.0,
    );
    s.push_str("</svg>");
    s
}

/// Stall durations as bars, with counts.
pub fn stall_bars(bins: &[Bin], t: &Texts) -> String {
    let f = Frame { w: 520.0, h: 260.0, left: 44.0, top: 20.0, right: 10.0, bottom: 40.0 };
    let total: u64 = bins.iter().map(|b| b.count).sum();
    let max = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let mut s = String::with_capacity(4 * 1024);
    f.open(&mut s, "bars", t.stall_durations);
    let ticks: Vec<(f64, String)> =
        [0.0, 0.5, 1.0].iter().map(|&v| (v, format!("{:.0}", v * max))).collect();
    f.y_grid(&mut s, &ticks);
    let n = bins.len().max(1) as f64;
    let slot = (f.w - f.left - f.right) / n;
    for (i, b) in bins.iter().enumerate() {
        let x = f.left + slot * i as f64;
        let frac = b.count as f64 / max;
        let label = match b.to_ms {
            Some(to) => format!("{}-{}", secs(b.from_ms), secs(to)),
            None => format!("> {}", secs(b.from_ms)),
        };
        let share = if total > 0 { pct(b.count as f64 / total as f64) } else { "-".into() };
        let _ = write!(
            s,
            "<g><title>{label} s: {} ({share})</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"bar\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"middle\">{label}</text></g>",
            b.count,
            x + 4.0,
            f.y(frac),
            slot - 8.0,
            f.y(0.0) - f.y(frac),
            x + slot / 2.0,
            f.y(frac) - 4.0,
            b.count,
            x + slot / 2.0,
            f.h - f.bottom + 16.0,
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">s</text>",
        f.w / 2.0,
        f.h - 6.0
    );
    s.push_str("</svg>");
    s
}

fn secs(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if s.fract() == 0.0 { format!("{s:.0}") } else { format!("{s:.1}") }
}

/// Daily stall ratio as bars with the SLO's warning line, and first-frame p95 as a line.
pub fn daily(days: &[Day], slo: &SloView, t: &Texts) -> String {
    let f = Frame { w: 1060.0, h: 220.0, left: 52.0, top: 16.0, right: 58.0, bottom: 34.0 };
    let max_ratio =
        days.iter().filter_map(|d| d.figures.stall_ratio).fold(slo.stall_ratio_critical, f64::max)
            * 1.1;
    let max_ff = days
        .iter()
        .filter_map(|d| d.figures.first_frame_p95_ms)
        .fold(slo.first_frame_warn_ms, f64::max)
        * 1.1;
    let mut s = String::with_capacity(8 * 1024);
    f.open(&mut s, "daily", t.daily);
    let ticks: Vec<(f64, String)> =
        [0.0, 0.5, 1.0].iter().map(|&v| (v, pct(v * max_ratio))).collect();
    f.y_grid(&mut s, &ticks);
    for v in [0.0, 0.5, 1.0] {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" class=\"axis ff\">{}</text>",
            f.w - f.right + 6.0,
            f.y(v) + 4.0,
            ms(v * max_ff)
        );
    }
    let n = days.len().max(1) as f64;
    let slot = (f.w - f.left - f.right) / n;
    let mut line = String::new();
    for (i, d) in days.iter().enumerate() {
        let x = f.left + slot * i as f64;
        if let Some(r) = d.figures.stall_ratio {
            let class = if r >= slo.stall_ratio_critical {
                "bar critical"
            } else if r >= slo.stall_ratio_warn {
                "bar warn"
            } else {
                "bar"
            };
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"{class}\"><title>{} · {} {}</title></rect>",
                x + slot * 0.2,
                f.y(r / max_ratio),
                slot * 0.6,
                f.y(0.0) - f.y(r / max_ratio),
                d.date,
                t.stall_ratio,
                pct(r)
            );
        }
        if let Some(ff) = d.figures.first_frame_p95_ms {
            let _ = write!(
                line,
                "{}{:.1} {:.1}",
                if line.is_empty() { "M" } else { " L" },
                x + slot / 2.0,
                f.y(ff / max_ff)
            );
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" class=\"ffdot\"><title>{} · {} {}</title></circle>",
                x + slot / 2.0,
                f.y(ff / max_ff),
                d.date,
                t.first_frame_p95,
                ms(ff)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
            x + slot / 2.0,
            f.h - f.bottom + 16.0,
            d.date.get(5..).unwrap_or(&d.date)
        );
    }
    let warn_y = f.y(slo.stall_ratio_warn / max_ratio);
    let _ = write!(
        s,
        "<line x1=\"{}\" x2=\"{}\" y1=\"{warn_y}\" y2=\"{warn_y}\" class=\"slo warn\"/><path d=\"{line}\" class=\"line ff\"/>",
        f.left,
        f.w - f.right
    );
    let ly = f.h - 6.0;
    let _ = write!(
        s,
        "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"10\" class=\"bar\"/><text x=\"{}\" y=\"{ly}\" class=\"axis\">{}</text>\
         <line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" class=\"line ff\"/><text x=\"{}\" y=\"{ly}\" class=\"axis\">{}</text>",
        f.left,
        ly - 9.0,
        f.left + 19.0,
        esc(t.stall_ratio),
        f.left + 160.0,
        f.left + 182.0,
        ly - 4.0,
        ly - 4.0,
        f.left + 187.0,
        esc(t.first_frame_p95),
    );
    s.push_str("</svg>");
    s
}
