//! Signals per cohort and minute, read from the store's rows.
//!
//! Everything the rules look at over a window is a sum of [`Counts`] (exact: counters add, and
//! "first frames slower than the SLO" is counted from each minute's merged histogram), so any
//! window's ratio is exact. Quantiles are not additive: a minute's first-frame and jitter p95
//! come from that minute's merged HDR histogram (all agents of the cohort, exact to HDR's 3
//! significant figures) and are judged minute by minute (thresholds, trends), never averaged.
//!
//! The report names signals read are in one table, [`NAMES`]: when the viewer model reports
//! residual loss after repair, pointing `lost` at it is one edit.

use serde::{Deserialize, Serialize};
use stallwatch_proto::hdr::SparseHistogram;

use crate::store::CohortRow;

/// The report names (counters and histograms) the signals read.
#[derive(Debug, Clone, Copy)]
pub struct SignalNames {
    /// Viewing attempts started.
    pub view_attempts: &'static str,
    /// Prefix of the per-cause view failure counters (`view_failures_<cause>`).
    pub view_failure_cause_prefix: &'static str,
    /// Publishing attempts started.
    pub publish_attempts: &'static str,
    /// Prefix of the per-cause publish failure counters.
    pub publish_failure_cause_prefix: &'static str,
    /// Time in stalls, ns.
    pub stall_time: &'static str,
    /// Time playing, ns.
    pub play_time: &'static str,
    /// Packets lost (becomes the residual loss after repair once agents report it).
    pub lost: &'static str,
    /// Packets expected, the loss ratio's denominator.
    pub expected: &'static str,
    /// First-frame time histogram, µs.
    pub first_frame: &'static str,
    /// Jitter histogram, µs.
    pub jitter: &'static str,
}

/// The one table of report names (`measure/src/report.rs`, `agent/src/run/attempt.rs`).
pub const NAMES: SignalNames = SignalNames {
    view_attempts: "view_attempts",
    view_failure_cause_prefix: "view_failures_",
    publish_attempts: "publish_attempts",
    publish_failure_cause_prefix: "publish_failures_",
    stall_time: "stall_time_ns",
    play_time: "play_time_ns",
    lost: "packets_lost",
    expected: "packets_expected",
    first_frame: "first_frame_us",
    jitter: "jitter_us",
};

/// Failure causes agents report (`stallwatch_attempt_failures_total{cause}`); an unknown
/// suffix counts as `other`.
pub const CAUSES: [&str; 5] = ["unreachable", "tls", "stream_not_found", "refused", "other"];

/// Index of `unreachable` in [`CAUSES`].
pub const UNREACHABLE: usize = 0;

/// A signal: what a rule judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// First-frame time, p95 of a minute (seconds).
    FirstFrameP95,
    /// Share of first frames slower than `slo.first_frame_warn` (ratio; additive).
    SlowFirstFrames,
    /// Failed / attempted views (ratio).
    ViewFailureRatio,
    /// Failed / attempted publishes (ratio).
    PublishFailureRatio,
    /// Stall time / (play + stall time) (ratio).
    StallRatio,
    /// Packets lost / expected (ratio).
    LossRatio,
    /// Interarrival jitter, p95 of a minute (seconds).
    JitterP95,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 7] = [
        Signal::FirstFrameP95,
        Signal::SlowFirstFrames,
        Signal::ViewFailureRatio,
        Signal::PublishFailureRatio,
        Signal::StallRatio,
        Signal::LossRatio,
        Signal::JitterP95,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::FirstFrameP95 => "first_frame_p95",
            Signal::SlowFirstFrames => "slow_first_frames",
            Signal::ViewFailureRatio => "view_failure_ratio",
            Signal::PublishFailureRatio => "publish_failure_ratio",
            Signal::StallRatio => "stall_ratio",
            Signal::LossRatio => "loss_ratio",
            Signal::JitterP95 => "jitter_p95",
        }
    }

    /// The alert it raises.
    pub fn alert(self) -> super::Alert {
        use super::Alert;
        match self {
            Signal::FirstFrameP95 | Signal::SlowFirstFrames => Alert::FirstFrameSlow,
            Signal::ViewFailureRatio => Alert::ViewFailures,
            Signal::PublishFailureRatio => Alert::PublishFailures,
            Signal::StallRatio => Alert::Stalls,
            Signal::LossRatio => Alert::Loss,
            Signal::JitterP95 => Alert::Jitter,
        }
    }

    /// Whether the rules judge this signal on `cohort`. Jitter is wire jitter (DESIGN.md
    /// section 3: from the sender's timestamps), and on `quic-stream` an object arrives only
    /// after QUIC has retransmitted what it lost, so that cohort's jitter carries the
    /// retransmission waits of a lossy path (a round trip each) on top of the wire's: on the
    /// demo's Wi-Fi (8 ms of wire jitter) `quic-stream` read 32-68 ms while `udp` and
    /// `quic-datagram` on the same path read 5-6 ms. The loss itself is judged by the loss and
    /// stall signals; the path's jitter by its datagram cohorts. `quic-stream`'s jitter is
    /// still measured and exported.
    pub fn judged_on(self, cohort: &crate::store::Cohort) -> bool {
        !(self == Signal::JitterP95 && cohort.transport == "quic-stream")
    }

    /// Whether its values are ratios (else seconds).
    pub fn is_ratio(self) -> bool {
        !matches!(self, Signal::FirstFrameP95 | Signal::JitterP95)
    }

    /// What it is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Signal::FirstFrameP95 => "first-frame p95",
            Signal::SlowFirstFrames => "share of slow first frames",
            Signal::ViewFailureRatio => "view failure ratio",
            Signal::PublishFailureRatio => "publish failure ratio",
            Signal::StallRatio => "stall ratio",
            Signal::LossRatio => "loss ratio",
            Signal::JitterP95 => "jitter p95",
        }
    }

    /// A value with its unit: `1.42 %`, `2.31 s`, `45 ms`.
    pub fn format(self, v: f64) -> String {
        if self.is_ratio() {
            let pct = v * 100.0;
            if pct != 0.0 && pct.abs() < 0.1 {
                format!("{pct:.3} %")
            } else {
                format!("{pct:.2} %")
            }
        } else if v.abs() < 1.0 {
            format!("{:.0} ms", v * 1000.0)
        } else {
            format!("{v:.2} s")
        }
    }

    /// Its value over summed `counts`, or `None` when there is too little data (`min`). Only
    /// the ratio signals have one: a p95 is not additive.
    pub fn ratio(self, counts: &Counts, min: &Minimums) -> Option<f64> {
        let (bad, total, enough) = self.parts(counts, min)?;
        (enough && total > 0).then(|| bad.min(total) as f64 / total as f64)
    }

    /// The ratio of a minute not yet whole, as low as it can still end: its bad events over
    /// the largest of its own total and the totals of `wholes` (the cohort's recent minutes:
    /// what a whole minute holds). At or over a level, the minute breaches however the rest of
    /// it goes, so a few seconds' burst reads no worse than it would in the whole minute.
    /// `None` for the p95 signals (a p95 of part of a minute bounds nothing) and with too
    /// little data.
    pub fn lowest_ratio<'a>(
        self,
        counts: &Counts,
        wholes: impl IntoIterator<Item = &'a Counts>,
        min: &Minimums,
    ) -> Option<f64> {
        let (bad, own, enough) = self.parts(counts, min)?;
        let wholes = wholes.into_iter().filter_map(|w| self.parts(w, min).map(|p| p.1));
        let total = wholes.fold(own, u64::max);
        (enough && total > 0).then(|| bad.min(total) as f64 / total as f64)
    }

    /// (bad events, all events, enough data by `min`) of a ratio signal.
    fn parts(self, counts: &Counts, min: &Minimums) -> Option<(u64, u64, bool)> {
        Some(match self {
            Signal::SlowFirstFrames => (
                counts.slow_first_frames,
                counts.first_frames,
                counts.first_frames >= min.first_frames,
            ),
            Signal::ViewFailureRatio => {
                (counts.view_failures, counts.view_attempts, counts.view_attempts >= min.attempts)
            }
            Signal::PublishFailureRatio => (
                counts.publish_failures,
                counts.publish_attempts,
                counts.publish_attempts >= min.attempts,
            ),
            Signal::StallRatio => {
                let viewing = counts.stall_ns.saturating_add(counts.play_ns);
                (counts.stall_ns, viewing, viewing >= min.viewing_ns)
            }
            Signal::LossRatio => (
                counts.packets_lost,
                counts.packets_expected,
                counts.packets_expected >= min.packets,
            ),
            Signal::FirstFrameP95 | Signal::JitterP95 => return None,
        })
    }
}

/// Least data for a value to count, scaled to the window it is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minimums {
    /// Viewing time, ns.
    pub viewing_ns: u64,
    /// Attempts.
    pub attempts: u64,
    /// First frames.
    pub first_frames: u64,
    /// Packets (expected, or jitter samples).
    pub packets: u64,
}

impl Minimums {
    /// Any data at all: for a window's ratio when enough data is judged separately.
    pub const ANY: Minimums = Minimums { viewing_ns: 1, attempts: 1, first_frames: 1, packets: 1 };

    /// The per-minute minimums of `settings`.
    pub fn per_minute(settings: &super::Settings) -> Self {
        Minimums {
            viewing_ns: settings.min_viewing_ns,
            attempts: settings.min_attempts,
            first_frames: settings.min_first_frames,
            packets: settings.min_packets,
        }
    }

    /// `self` times `minutes` (a window needs as much data per minute as one minute does).
    pub fn times(self, minutes: u64) -> Self {
        let m = minutes.max(1);
        Minimums {
            viewing_ns: self.viewing_ns.saturating_mul(m),
            attempts: self.attempts.saturating_mul(m),
            first_frames: self.first_frames.saturating_mul(m),
            packets: self.packets.saturating_mul(m),
        }
    }
}

/// Additive figures of one cohort over a minute (or, summed, any window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Viewing attempts.
    pub view_attempts: u64,
    /// Viewing attempts failed.
    pub view_failures: u64,
    /// Failed views by [`CAUSES`].
    pub view_failure_causes: [u32; 5],
    /// Publishing attempts.
    pub publish_attempts: u64,
    /// Publishing attempts failed.
    pub publish_failures: u64,
    /// Failed publishes by [`CAUSES`].
    pub publish_failure_causes: [u32; 5],
    /// First frames measured.
    pub first_frames: u64,
    /// Of those, slower than `slo.first_frame_warn`.
    pub slow_first_frames: u64,
    /// Time stalled, ns.
    pub stall_ns: u64,
    /// Time playing, ns.
    pub play_ns: u64,
    /// Packets lost.
    pub packets_lost: u64,
    /// Packets expected.
    pub packets_expected: u64,
    /// Jitter samples (one per packet).
    pub jitter_samples: u64,
}

impl Counts {
    /// Adds `other` in (saturating).
    pub fn add(&mut self, other: &Counts) {
        self.combine(other, u64::saturating_add, u32::saturating_add);
    }

    /// Takes `other` out again (saturating at 0), when a restated minute replaces its old
    /// figures.
    pub fn subtract(&mut self, other: &Counts) {
        self.combine(other, u64::saturating_sub, u32::saturating_sub);
    }

    fn combine(&mut self, o: &Counts, f: fn(u64, u64) -> u64, g: fn(u32, u32) -> u32) {
        self.view_attempts = f(self.view_attempts, o.view_attempts);
        self.view_failures = f(self.view_failures, o.view_failures);
        self.publish_attempts = f(self.publish_attempts, o.publish_attempts);
        self.publish_failures = f(self.publish_failures, o.publish_failures);
        self.first_frames = f(self.first_frames, o.first_frames);
        self.slow_first_frames = f(self.slow_first_frames, o.slow_first_frames);
        self.stall_ns = f(self.stall_ns, o.stall_ns);
        self.play_ns = f(self.play_ns, o.play_ns);
        self.packets_lost = f(self.packets_lost, o.packets_lost);
        self.packets_expected = f(self.packets_expected, o.packets_expected);
        self.jitter_samples = f(self.jitter_samples, o.jitter_samples);
        for i in 0..CAUSES.len() {
            self.view_failure_causes[i] = g(self.view_failure_causes[i], o.view_failure_causes[i]);
            self.publish_failure_causes[i] =
                g(self.publish_failure_causes[i], o.publish_failure_causes[i]);
        }
    }

    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    /// For a failure ratio, the failures by cause (`unreachable 4, refused 2`), most first;
    /// `None` for other signals or without failures.
    pub fn causes_text(&self, signal: Signal) -> Option<String> {
        let causes = match signal {
            Signal::ViewFailureRatio => &self.view_failure_causes,
            Signal::PublishFailureRatio => &self.publish_failure_causes,
            _ => return None,
        };
        let mut listed: Vec<(u32, &str)> =
            causes.iter().zip(CAUSES).filter(|(n, _)| **n > 0).map(|(n, c)| (*n, c)).collect();
        listed.sort_by_key(|&(n, _)| std::cmp::Reverse(n));
        (!listed.is_empty())
            .then(|| listed.iter().map(|(n, c)| format!("{c} {n}")).collect::<Vec<_>>().join(", "))
    }
}

/// One cohort-minute: its counts and the quantiles of its merged histograms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MinuteSignals {
    /// Additive figures.
    pub counts: Counts,
    /// First-frame p95, µs (`None` without first frames).
    pub first_frame_p95_us: Option<u64>,
    /// Jitter p95, µs (`None` without samples).
    pub jitter_p95_us: Option<u64>,
}

impl MinuteSignals {
    /// The minute's value of `signal`, or `None` when the minute has too little data for it.
    pub fn value(&self, signal: Signal, min: &Minimums) -> Option<f64> {
        match signal {
            Signal::FirstFrameP95 => self
                .first_frame_p95_us
                .filter(|_| self.counts.first_frames >= min.first_frames)
                .map(|us| us as f64 / 1e6),
            Signal::JitterP95 => self
                .jitter_p95_us
                .filter(|_| self.counts.jitter_samples >= min.packets)
                .map(|us| us as f64 / 1e6),
            ratio => ratio.ratio(&self.counts, min),
        }
    }

    /// Whether the minute measured `signal` at all (perhaps too little to judge).
    pub fn measured(&self, signal: Signal) -> bool {
        let c = &self.counts;
        match signal {
            Signal::FirstFrameP95 | Signal::SlowFirstFrames => c.first_frames > 0,
            Signal::ViewFailureRatio => c.view_attempts > 0,
            Signal::PublishFailureRatio => c.publish_attempts > 0,
            Signal::StallRatio => c.stall_ns > 0 || c.play_ns > 0,
            Signal::LossRatio => c.packets_expected > 0,
            Signal::JitterP95 => c.jitter_samples > 0,
        }
    }
}

/// Why part of a row could not be read (the rest of the row still counts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("histogram {name:?} of the row at {start_unix_ms} is unreadable: {reason}")]
pub struct RowProblem {
    /// Histogram name.
    pub name: String,
    /// Row start.
    pub start_unix_ms: u64,
    /// The decode error.
    pub reason: String,
}

/// The signals of one stored row (minute or hour). `slow_first_frame_us` is the SLO bound a
/// first frame is "slow" above. A histogram that does not decode is left out and reported.
pub fn from_row(row: &CohortRow, slow_first_frame_us: u64) -> (MinuteSignals, Vec<RowProblem>) {
    let counter = |name: &str| row.counters.get(name).copied().unwrap_or(0);
    let causes = |prefix: &str| {
        let mut out = [0u32; 5];
        for (name, &v) in row.counters.range(prefix.to_owned()..) {
            let Some(cause) = name.strip_prefix(prefix) else { break };
            let i = CAUSES.iter().position(|&c| c == cause).unwrap_or(CAUSES.len() - 1);
            out[i] = out[i].saturating_add(u32::try_from(v).unwrap_or(u32::MAX));
        }
        out
    };
    let mut counts = Counts {
        view_attempts: counter(NAMES.view_attempts),
        view_failure_causes: causes(NAMES.view_failure_cause_prefix),
        publish_attempts: counter(NAMES.publish_attempts),
        publish_failure_causes: causes(NAMES.publish_failure_cause_prefix),
        stall_ns: counter(NAMES.stall_time),
        play_ns: counter(NAMES.play_time),
        packets_lost: counter(NAMES.lost),
        packets_expected: counter(NAMES.expected),
        ..Counts::default()
    };
    // Agents count failures by cause only (`view_failures_<cause>`); the total is their sum.
    counts.view_failures = counts.view_failure_causes.iter().map(|&v| u64::from(v)).sum();
    counts.publish_failures = counts.publish_failure_causes.iter().map(|&v| u64::from(v)).sum();
    let mut problems = Vec::new();
    let mut read = |name: &str| -> Option<SparseHistogram> {
        let stored = row.histograms.get(name)?;
        match stored.decode_sparse() {
            Ok(h) => Some(h),
            Err(e) => {
                problems.push(RowProblem {
                    name: name.to_owned(),
                    start_unix_ms: row.start_unix_ms,
                    reason: e.to_string(),
                });
                None
            }
        }
    };
    let mut signals = MinuteSignals::default();
    if let Some(h) = read(NAMES.first_frame) {
        counts.first_frames = h.len();
        counts.slow_first_frames = count_above(&h, slow_first_frame_us);
        signals.first_frame_p95_us = quantile(&h, 0.95);
    }
    if let Some(h) = read(NAMES.jitter) {
        counts.jitter_samples = h.len();
        signals.jitter_p95_us = quantile(&h, 0.95);
    }
    signals.counts = counts;
    (signals, problems)
}

/// The value at quantile `q` as `hdrhistogram`'s `value_at_quantile` gives it: the highest
/// value equivalent to the bucket holding the `ceil(q * count)`-th value. `None` when empty.
pub fn quantile(h: &SparseHistogram, q: f64) -> Option<u64> {
    let total = h.len();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for bucket in h.iter() {
        seen += bucket.count;
        if seen >= rank {
            return Some(bucket.highest);
        }
    }
    Some(h.max())
}

/// Values recorded above `bound`: every bucket whose lowest value exceeds it (a bucket is at
/// most 0.1 % wide, so a value within 0.1 % above the bound may count as not above it).
pub fn count_above(h: &SparseHistogram, bound: u64) -> u64 {
    h.iter().filter(|b| b.value > bound).map(|b| b.count).sum()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use stallwatch_proto::hdr;

    use super::*;

    #[test]
    fn a_minute_in_progress_breaches_only_if_it_would_however_it_ends() {
        let whole = Counts { packets_expected: 3000, packets_lost: 3, ..Counts::default() };
        let min = Minimums { viewing_ns: 1, attempts: 1, first_frames: 1, packets: 100 };
        // 250 packets in, 25 lost: 10 % so far, but at most 25 / 3000 = 0.83 % when whole.
        let burst = Counts { packets_expected: 250, packets_lost: 25, ..Counts::default() };
        assert_eq!(Signal::LossRatio.ratio(&burst, &min), Some(0.1));
        assert_eq!(Signal::LossRatio.lowest_ratio(&burst, [&whole], &min), Some(25.0 / 3000.0));
        // 40 lost: 1.33 % at least, whatever comes.
        let plain = Counts { packets_lost: 40, ..burst };
        assert_eq!(Signal::LossRatio.lowest_ratio(&plain, [&whole], &min), Some(40.0 / 3000.0));
        // A minute already bigger than the whole one is judged on its own total.
        let big = Counts { packets_expected: 6000, packets_lost: 90, ..Counts::default() };
        assert_eq!(Signal::LossRatio.lowest_ratio(&big, [&whole], &min), Some(0.015));
        // Too little data, or a p95: nothing.
        let few = Counts { packets_expected: 50, packets_lost: 50, ..Counts::default() };
        assert_eq!(Signal::LossRatio.lowest_ratio(&few, [&whole], &min), None);
        assert_eq!(Signal::JitterP95.lowest_ratio(&plain, [&whole], &min), None);
    }
    use crate::store::{Cohort, Resolution, StoredHistogram};

    fn stored(values: &[u64]) -> StoredHistogram {
        let mut h = hdr::new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        StoredHistogram {
            hdr: hdr::encode(&h),
            sum: values.iter().sum(),
            count: values.len() as u64,
        }
    }

    fn row(counters: &[(&str, u64)], histograms: Vec<(&str, StoredHistogram)>) -> CohortRow {
        CohortRow {
            start_unix_ms: 60_000,
            resolution: Resolution::Minute,
            cohort: Cohort {
                region: "sea".into(),
                network_type: "4g".into(),
                transport: "udp".into(),
                repair: "nack".into(),
                target: "relay-1".into(),
            },
            histograms: histograms.into_iter().map(|(n, h)| (n.to_owned(), h)).collect(),
            counters: counters.iter().map(|&(n, v)| (n.to_owned(), v)).collect::<BTreeMap<_, _>>(),
        }
    }

    /// The quantile agrees with hdrhistogram's own `value_at_quantile` on the same values.
    #[test]
    fn quantile_matches_hdrhistogram() {
        let values: Vec<u64> = (1..=1000).map(|i| i * 1_731 % 4_000_000 + 1).collect();
        let mut h = hdr::new_histogram();
        for &v in &values {
            h.record(v).unwrap();
        }
        let sparse =
            hdr::decode_sparse(&hdr::encode(&h), &crate::store::STORED_HDR_LIMITS).unwrap();
        for q in [0.0, 0.5, 0.9, 0.95, 0.99, 1.0] {
            assert_eq!(quantile(&sparse, q), Some(h.value_at_quantile(q)), "q = {q}");
        }
    }

    #[test]
    fn a_row_gives_exact_counts_causes_and_quantiles() {
        let first_frames: Vec<u64> = (1..=20).map(|i| i * 200_000).collect(); // 0.2 .. 4.0 s
        let r = row(
            &[
                ("view_attempts", 20),
                ("view_failures_unreachable", 2),
                ("view_failures_mystery", 1),
                ("publish_attempts", 4),
                ("stall_time_ns", 1_000_000_000),
                ("play_time_ns", 99_000_000_000),
                ("packets_lost", 7),
                ("packets_expected", 1000),
                ("w_unrelated", 5),
            ],
            vec![("first_frame_us", stored(&first_frames)), ("jitter_us", stored(&[1_000; 600]))],
        );
        let (s, problems) = from_row(&r, 2_000_000);
        assert!(problems.is_empty());
        let c = s.counts;
        assert_eq!((c.view_attempts, c.view_failures, c.publish_attempts), (20, 3, 4));
        assert_eq!(c.view_failure_causes, [2, 0, 0, 0, 1], "unknown causes count as other");
        assert_eq!(
            c.causes_text(Signal::ViewFailureRatio).as_deref(),
            Some("unreachable 2, other 1")
        );
        assert_eq!(c.causes_text(Signal::PublishFailureRatio), None);
        assert_eq!(c.causes_text(Signal::StallRatio), None);
        assert_eq!((c.first_frames, c.slow_first_frames), (20, 10), "2.2 s .. 4.0 s are slow");
        assert_eq!(c.jitter_samples, 600);
        // 19th of 20 values is 3.8 s; HDR reports its bucket's highest equivalent value.
        let p95 = s.first_frame_p95_us.unwrap();
        assert!((3_800_000..=3_802_000).contains(&p95), "{p95}");
        let min = Minimums::ANY;
        assert_eq!(s.value(Signal::StallRatio, &min), Some(0.01));
        assert_eq!(s.value(Signal::ViewFailureRatio, &min), Some(0.15));
        assert_eq!(s.value(Signal::LossRatio, &min), Some(0.007));
        assert_eq!(s.value(Signal::SlowFirstFrames, &min), Some(0.5));
        assert_eq!(s.value(Signal::PublishFailureRatio, &min), Some(0.0));
    }

    #[test]
    fn too_little_data_is_no_value() {
        let r = row(&[("stall_time_ns", 1_000_000_000), ("play_time_ns", 9_000_000_000)], vec![]);
        let (s, _) = from_row(&r, 2_000_000);
        let min =
            Minimums { viewing_ns: 20_000_000_000, attempts: 1, first_frames: 1, packets: 500 };
        assert_eq!(s.value(Signal::StallRatio, &min), None, "10 s of viewing is under 20 s");
        assert_eq!(s.value(Signal::ViewFailureRatio, &min), None, "no attempts");
        assert_eq!(s.value(Signal::FirstFrameP95, &min), None);
        let min = Minimums { viewing_ns: 5_000_000_000, ..min };
        assert_eq!(s.value(Signal::StallRatio, &min), Some(0.1));
    }

    #[test]
    fn a_corrupt_histogram_is_reported_and_the_rest_counts() {
        let bad = StoredHistogram { hdr: vec![1, 2, 3], sum: 0, count: 1 };
        let r = row(&[("view_attempts", 5)], vec![("first_frame_us", bad)]);
        let (s, problems) = from_row(&r, 2_000_000);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].name, "first_frame_us");
        assert_eq!(s.counts.view_attempts, 5);
        assert_eq!(s.first_frame_p95_us, None);
    }

    #[test]
    fn counts_add_and_subtract_back() {
        let a = Counts {
            view_attempts: 3,
            stall_ns: 10,
            view_failure_causes: [1, 0, 0, 0, 2],
            ..Counts::default()
        };
        let b = Counts {
            view_attempts: 4,
            packets_lost: 2,
            view_failure_causes: [0, 1, 0, 0, 0],
            ..Counts::default()
        };
        let mut sum = a;
        sum.add(&b);
        assert_eq!(sum.view_attempts, 7);
        assert_eq!(sum.view_failure_causes, [1, 1, 0, 0, 2]);
        sum.subtract(&b);
        assert_eq!(sum, a);
    }
}
