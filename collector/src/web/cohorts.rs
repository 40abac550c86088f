//! The cohorts page (`/cohorts`): per cohort (region, network type, transport, repair, target) the
//! current first-frame p95, stall ratio, loss and jitter p95, with a sparkline of each over
//! the last hours, from the store's per-minute rows.
//!
//! "Current" merges the histograms and adds the counters of the last [`CURRENT_MINUTES`]
//! minutes (never an average of per-minute quantiles); a sparkline point is one minute's value.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::layout::{Page, escape, page};
use super::svg::sparkline;
use crate::alerts::signals::{self, NAMES, RowProblem};
use crate::config::Slo;
use crate::reports::data::Counts as Merged;
use crate::store::{Cohort, CohortRow};

const MINUTE_MS: u64 = 60_000;

/// Minutes the "current" figures cover.
pub const CURRENT_MINUTES: u64 = 15;

/// Spans the page offers, hours.
pub const SPANS_H: [u64; 4] = [1, 3, 6, 12];

/// Default span, hours.
pub const DEFAULT_SPAN_H: u64 = 3;

/// One cohort's figures over some minutes; `None` where nothing was measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// First-frame time, p95, seconds.
    pub first_frame_p95_s: Option<f64>,
    /// Stall time / (play + stall time).
    pub stall_ratio: Option<f64>,
    /// Packets lost / expected.
    pub loss_ratio: Option<f64>,
    /// Interarrival jitter, p95, seconds.
    pub jitter_p95_s: Option<f64>,
    /// View attempts.
    pub views: u64,
}

impl Figures {
    fn of_counts(
        c: &signals::Counts,
        first_frame_p95_us: Option<u64>,
        jitter_p95_us: Option<u64>,
    ) -> Self {
        let ratio = |bad: u64, total: u64| (total > 0).then(|| bad as f64 / total as f64);
        Figures {
            first_frame_p95_s: first_frame_p95_us.map(|us| us as f64 / 1e6),
            stall_ratio: ratio(c.stall_ns, c.stall_ns.saturating_add(c.play_ns)),
            loss_ratio: ratio(c.packets_lost, c.packets_expected),
            jitter_p95_s: jitter_p95_us.map(|us| us as f64 / 1e6),
            views: c.view_attempts,
        }
    }
}

/// One cohort's current figures and one point per minute of the span.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortTrend {
    /// The cohort.
    pub cohort: Cohort,
    /// Over the last [`CURRENT_MINUTES`] minutes.
    pub current: Figures,
    /// One per minute from the span's start, oldest first (`Figures::default()` without rows).
    pub minutes: Vec<Figures>,
}

/// The trends of every cohort with rows in `[from_ms, to_ms)` (`rows`: minute rows, any
/// order), and the histograms that did not decode (the rest of their rows still counts).
pub fn trends(rows: &[CohortRow], from_ms: u64, to_ms: u64) -> (Vec<CohortTrend>, Vec<RowProblem>) {
    let from_ms = from_ms / MINUTE_MS * MINUTE_MS;
    let slots = usize::try_from(to_ms.saturating_sub(from_ms).div_ceil(MINUTE_MS)).unwrap_or(0);
    let current_from = to_ms.saturating_sub(CURRENT_MINUTES * MINUTE_MS);
    struct Acc {
        minutes: Vec<Figures>,
        counts: signals::Counts,
        first_frame: Merged,
        jitter: Merged,
    }
    let mut by_cohort: BTreeMap<&Cohort, Acc> = BTreeMap::new();
    let mut problems = Vec::new();
    for row in rows.iter().filter(|r| (from_ms..to_ms).contains(&r.start_unix_ms)) {
        let acc = by_cohort.entry(&row.cohort).or_insert_with(|| Acc {
            minutes: vec![Figures::default(); slots],
            counts: signals::Counts::default(),
            first_frame: Merged::default(),
            jitter: Merged::default(),
        });
        // The slow-first-frame bound does not matter here: the page shows p95s.
        let (minute, mut bad) = signals::from_row(row, u64::MAX);
        let slot = usize::try_from((row.start_unix_ms - from_ms) / MINUTE_MS).unwrap_or(0);
        acc.minutes[slot] =
            Figures::of_counts(&minute.counts, minute.first_frame_p95_us, minute.jitter_p95_us);
        if row.start_unix_ms >= current_from {
            acc.counts.add(&minute.counts);
            for (name, merged) in
                [(NAMES.first_frame, &mut acc.first_frame), (NAMES.jitter, &mut acc.jitter)]
            {
                // A histogram that did not decode is already in `bad`.
                if let Some(Ok(h)) = row.histograms.get(name).map(|h| h.decode_sparse()) {
                    merged.add_sparse(&h);
                }
            }
        }
        problems.append(&mut bad);
    }
    let trends = by_cohort
        .into_iter()
        .map(|(cohort, acc)| CohortTrend {
            cohort: cohort.clone(),
            current: Figures::of_counts(
                &acc.counts,
                acc.first_frame.quantile(0.95),
                acc.jitter.quantile(0.95),
            ),
            minutes: acc.minutes,
        })
        .collect();
    (trends, problems)
}

/// A column of the table: which figure, how it reads, what it is.
type Column = (fn(&Figures) -> Option<f64>, fn(Option<f64>) -> String, &'static str);

/// `1.42 s`, `230 ms`, or `–` for no data.
fn seconds(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v < 1.0 => format!("{:.0} ms", v * 1000.0),
        Some(v) => format!("{v:.2} s"),
    }
}

/// `0.42 %`, or `–` for no data.
fn percent(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v != 0.0 && v < 0.001 => format!("{:.3} %", v * 100.0),
        Some(v) => format!("{:.2} %", v * 100.0),
    }
}

/// The cohorts page for trends over the last `span_h` hours, with `slo`'s warning levels
/// as the sparklines' limits.
pub fn render(trends: &[CohortTrend], span_h: u64, slo: &Slo, problems: usize) -> String {
    let mut body = String::with_capacity(4096 + trends.len() * 3000);
    body.push_str("<h1>Cohorts</h1><p class=\"muted\">Current figures: the last ");
    let _ = write!(
        body,
        "{CURRENT_MINUTES} minutes, from merged histograms and summed counters. Sparklines: one \
         point per minute over the last {span_h} h; dashed: the SLO warning level; red: minutes \
         above it. Span:"
    );
    for h in SPANS_H {
        if h == span_h {
            let _ = write!(body, " <strong>{h} h</strong>");
        } else {
            let _ = write!(body, " <a href=\"/cohorts?hours={h}\">{h} h</a>");
        }
    }
    body.push_str("</p>");
    if problems > 0 {
        let _ = write!(
            body,
            "<p class=\"over\">{problems} stored histograms could not be read and are left out \
             (the collector's log names them).</p>"
        );
    }
    if trends.is_empty() {
        let _ = write!(body, "<p>No cohort has data in the last {span_h} h.</p>");
        return page(Page::Cohorts, "Cohorts", Some(60), &body);
    }
    let warn = [
        Some(slo.first_frame_warn.as_secs_f64()),
        Some(slo.stall_ratio_warn),
        Some(slo.loss_warn),
        Some(slo.jitter_warn.as_secs_f64()),
    ];
    body.push_str(
        "<table><thead><tr><th>region</th><th>network</th><th>transport</th><th>repair</th>\
         <th>target</th>\
         <th>views</th><th>first-frame p95</th><th>stall ratio</th><th>loss</th>\
         <th>jitter p95</th></tr></thead><tbody>",
    );
    for t in trends {
        let c = &t.cohort;
        let _ = write!(
            body,
            "<tr><td class=\"k\">{}</td><td class=\"k\">{}</td><td class=\"k\">{}</td>\
             <td class=\"k\">{}</td><td class=\"k\">{}</td><td class=\"n\">{}</td>",
            escape(&c.region),
            escape(&c.network_type),
            escape(&c.transport),
            escape(&c.repair),
            escape(&c.target),
            t.current.views
        );
        let series: [Column; 4] = [
            (|f| f.first_frame_p95_s, seconds, "first-frame p95, s"),
            (|f| f.stall_ratio, percent, "stall ratio"),
            (|f| f.loss_ratio, percent, "loss ratio"),
            (|f| f.jitter_p95_s, seconds, "jitter p95, s"),
        ];
        for ((get, show, label), limit) in series.into_iter().zip(warn) {
            let value = get(&t.current);
            let over = matches!((value, limit), (Some(v), Some(l)) if v > l);
            let points: Vec<Option<f64>> = t.minutes.iter().map(get).collect();
            let label = format!(
                "{}/{}/{} ({}) -> {}: {label} per minute",
                c.region, c.network_type, c.transport, c.repair, c.target
            );
            let _ = write!(
                body,
                "<td class=\"n\"><div class=\"spark\">{}<span class=\"{}\">{}</span></div></td>",
                sparkline(&points, limit, &label),
                if over { "over" } else { "" },
                show(value)
            );
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    page(Page::Cohorts, "Cohorts", Some(60), &body)
}

#[cfg(test)]
mod tests {
    use stallwatch_proto::hdr;

    use super::*;
    use crate::store::{Resolution, StoredHistogram};

    fn row(cohort: &Cohort, start: u64, first_frames_us: &[u64], stall_ns: u64) -> CohortRow {
        let mut h = hdr::new_histogram();
        for &v in first_frames_us {
            h.record(v).unwrap();
        }
        let stored = StoredHistogram {
            hdr: hdr::encode(&h),
            sum: first_frames_us.iter().sum(),
            count: first_frames_us.len() as u64,
        };
        CohortRow {
            start_unix_ms: start,
            resolution: Resolution::Minute,
            cohort: cohort.clone(),
            histograms: [(NAMES.first_frame.to_owned(), stored)].into(),
            counters: [
                (NAMES.stall_time.to_owned(), stall_ns),
                (NAMES.play_time.to_owned(), 60_000_000_000 - stall_ns),
                (NAMES.view_attempts.to_owned(), first_frames_us.len() as u64),
            ]
            .into(),
        }
    }

    #[test]
    fn current_figures_merge_histograms_and_sum_counters_and_minutes_keep_their_slots() {
        let sea = Cohort::new("sea", "4g", "udp", "relay-1");
        let to = 100 * MINUTE_MS;
        let from = to - 60 * MINUTE_MS;
        // Minute 95: 19 first frames of 100 ms and one of 5 s; minute 99: 20 of 200 ms.
        // Merged, the p95 (rank 38 of 40) is 200 ms; an average of the minutes' p95s would
        // say 150 ms, and the slowest frame is 5 s.
        let rows = [
            row(&sea, 95 * MINUTE_MS, &[&[100_000; 19][..], &[5_000_000]].concat(), 6_000_000_000),
            row(&sea, 99 * MINUTE_MS, &[200_000; 20], 0),
            // Outside the span: ignored.
            row(&sea, 10 * MINUTE_MS, &[9_000_000; 5], 0),
        ];
        let (trends, problems) = trends(&rows, from, to);
        assert!(problems.is_empty());
        assert_eq!(trends.len(), 1);
        let t = &trends[0];
        assert_eq!(t.minutes.len(), 60);
        let p95 = t.current.first_frame_p95_s.unwrap();
        assert!((p95 - 0.2).abs() < 0.2 * 0.001, "{p95}");
        // 6 s stalled of 120 s watched.
        assert!((t.current.stall_ratio.unwrap() - 0.05).abs() < 1e-12);
        assert_eq!(t.current.views, 40);
        assert_eq!(t.minutes[55].stall_ratio, Some(0.1));
        assert!(t.minutes[55].first_frame_p95_s.unwrap() > 0.09);
        assert_eq!(t.minutes[56], Figures::default(), "no row, no figure");
        assert_eq!(t.current.loss_ratio, None, "nothing expected, no loss figure");
    }

    #[test]
    fn figures_format_with_units_and_dashes_for_no_data() {
        assert_eq!(seconds(Some(0.2304)), "230 ms");
        assert_eq!(seconds(Some(1.5)), "1.50 s");
        assert_eq!(seconds(None), "–");
        assert_eq!(percent(Some(0.0142)), "1.42 %");
        assert_eq!(percent(Some(0.000_05)), "0.005 %");
        assert_eq!(percent(None), "–");
    }
}
