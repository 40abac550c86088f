//! Reading one region's history for a period and adding it up, exactly: counters are summed
//! and HDR histograms merged bucket by bucket (never averages of percentiles).
//!
//! [`read_period`] walks the period an hour at a time (hour rows, then minute rows: the store
//! keeps recent history per minute and folds older minutes into hours), decodes only the
//! histograms the report uses, and adds each row to every slice the report shows: the whole
//! region, each network type, transport and target, each local day, and per local hour of day.
//! The store is read nowhere else in the report.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::LazyLock;

use stallwatch_proto::hdr::SparseHistogram;
use time::Date;

use super::zone::Zone;
use crate::store::{CohortFilter, CohortRow, HOUR_MS, HistoryStore, Resolution, StoreError};

/// The viewer counters a report adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Time playing, ns.
    pub play_ns: u64,
    /// Time stalled, ns.
    pub stall_ns: u64,
    /// Stalls (gaps over 500 ms).
    pub stalls: u64,
    /// Sequence numbers decided.
    pub expected: u64,
    /// Sequence numbers lost (network loss, before any repair).
    pub lost: u64,
    /// RFC 3611 loss bursts.
    pub bursts: u64,
    /// Packets lost inside bursts.
    pub burst_lost: u64,
    /// Packets inside bursts, first to last loss.
    pub burst_packets: u64,
    /// Viewer attempts started.
    pub view_attempts: u64,
    /// Viewer attempts that failed, any cause.
    pub view_failures: u64,
}

type Field = fn(&mut Counters) -> &mut u64;

/// Every report counter the report reads, and the figure it adds to: the one place that
/// names them. (The viewer model's residual-loss and repair counters go here when they land.)
pub const COUNTERS_READ: [(&str, Field); 14] = [
    ("play_time_ns", |c| &mut c.play_ns),
    ("stall_time_ns", |c| &mut c.stall_ns),
    ("stalls", |c| &mut c.stalls),
    ("packets_expected", |c| &mut c.expected),
    ("packets_lost", |c| &mut c.lost),
    ("loss_bursts", |c| &mut c.bursts),
    ("loss_burst_lost", |c| &mut c.burst_lost),
    ("loss_burst_packets", |c| &mut c.burst_packets),
    ("view_attempts", |c| &mut c.view_attempts),
    ("view_failures_unreachable", |c| &mut c.view_failures),
    ("view_failures_tls", |c| &mut c.view_failures),
    ("view_failures_stream_not_found", |c| &mut c.view_failures),
    ("view_failures_refused", |c| &mut c.view_failures),
    ("view_failures_other", |c| &mut c.view_failures),
];

/// The histograms a report reads, by position in [`HISTOGRAMS_READ`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hist {
    /// Attempt start to the first complete keyframe, µs.
    FirstFrame = 0,
    /// The `first_keyframe` phase: first media byte to first complete keyframe, µs.
    FirstKeyframe = 1,
    /// RFC 3550 interarrival jitter, µs.
    Jitter = 2,
    /// Length of each stall, µs.
    StallDuration = 3,
    /// Path round-trip time, µs.
    Rtt = 4,
}

/// Report histogram names, in [`Hist`] order.
pub const HISTOGRAMS_READ: [&str; 5] =
    ["first_frame_us", "first_frame_first_keyframe_us", "jitter_us", "stall_duration_us", "rtt_us"];

impl Counters {
    /// Adds `other`.
    pub fn add(&mut self, other: &Counters) {
        let pairs: [(&mut u64, u64); 10] = [
            (&mut self.play_ns, other.play_ns),
            (&mut self.stall_ns, other.stall_ns),
            (&mut self.stalls, other.stalls),
            (&mut self.expected, other.expected),
            (&mut self.lost, other.lost),
            (&mut self.bursts, other.bursts),
            (&mut self.burst_lost, other.burst_lost),
            (&mut self.burst_packets, other.burst_packets),
            (&mut self.view_attempts, other.view_attempts),
            (&mut self.view_failures, other.view_failures),
        ];
        for (a, b) in pairs {
            *a = a.saturating_add(b);
        }
    }

    /// Viewing time (play + stall), minutes.
    pub fn viewing_minutes(&self) -> f64 {
        (self.play_ns as f64 + self.stall_ns as f64) / 60e9
    }

    /// Stall time over viewing time; `None` without viewing time.
    pub fn stall_ratio(&self) -> Option<f64> {
        let viewing = self.play_ns as f64 + self.stall_ns as f64;
        (viewing > 0.0).then(|| self.stall_ns as f64 / viewing)
    }

    /// Stalls per hour of viewing; `None` without viewing time.
    pub fn stalls_per_hour(&self) -> Option<f64> {
        let hours = (self.play_ns as f64 + self.stall_ns as f64) / 3600e9;
        (hours > 0.0).then(|| self.stalls as f64 / hours)
    }

    /// Lost over expected; `None` when nothing was expected.
    pub fn loss_ratio(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.lost as f64 / self.expected as f64)
    }
}

/// Merged HDR counts in stallwatch's layout (lowest discernible 1 µs, 3 significant figures),
/// indexed as the stored histograms are: adding is exact.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    counts: Vec<u64>,
    total: u64,
}

/// A histogram of stallwatch's layout with nothing in it, to map indexes to values.
static LAYOUT: LazyLock<SparseHistogram> = LazyLock::new(|| {
    SparseHistogram::from_stallwatch_counts(&[]).expect("an empty counts array fits")
});

impl Counts {
    /// Adds a decoded histogram of stallwatch's layout.
    pub fn add_sparse(&mut self, h: &SparseHistogram) {
        let Some(last) = h.last_index() else { return };
        let needed = usize::try_from(last).unwrap_or(usize::MAX).saturating_add(1);
        if self.counts.len() < needed {
            self.counts.resize(needed, 0);
        }
        for (index, count) in h.raw_buckets() {
            // Indexes are below the layout's slot count: `needed` covers them.
            let slot = &mut self.counts[index as usize];
            *slot = slot.saturating_add(count);
            self.total = self.total.saturating_add(count);
        }
    }

    /// Records `count` values of `value` (µs or packets), for tests that build data by hand.
    #[cfg(test)]
    pub(crate) fn record(&mut self, value: u64, count: u64) {
        let index = stallwatch_proto::hdr::stallwatch_index(value).expect("in range");
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += count;
        self.total += count;
    }

    /// Adds another accumulator.
    pub fn add(&mut self, other: &Counts) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.total = self.total.saturating_add(other.total);
    }

    /// Number of values.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The value at quantile `q` as `hdrhistogram`'s `value_at_quantile` gives it: the
    /// highest value equivalent to the bucket holding the value of rank `ceil(q * n)` (at
    /// least 1), so at most 1/1024 above the recorded value. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(count);
            if count > 0 && seen >= rank {
                return Some(LAYOUT.highest_at(index as u64));
            }
        }
        None
    }

    /// `(highest value of the bucket, count)` of every non-empty bucket, ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| (LAYOUT.highest_at(i as u64), c))
    }

    /// Fraction of values at or below `value` (bucket by bucket: a bucket counts when its
    /// highest value is at most `value`).
    pub fn fraction_at_most(&self, value: u64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let below: u64 = self.buckets().take_while(|(v, _)| *v <= value).map(|(_, c)| c).sum();
        Some(below as f64 / self.total as f64)
    }
}

/// Counters and histograms of one slice of the data.
#[derive(Debug, Clone, Default)]
pub struct Acc {
    /// Counters.
    pub counters: Counters,
    /// Histograms, by [`Hist`].
    pub hist: [Counts; 5],
}

impl Acc {
    /// One histogram.
    pub fn h(&self, which: Hist) -> &Counts {
        &self.hist[which as usize]
    }

    fn add_row(&mut self, row: &DecodedRow) {
        self.counters.add(&row.counters);
        for (acc, h) in self.hist.iter_mut().zip(&row.hist) {
            if let Some(h) = h {
                acc.add_sparse(h);
            }
        }
    }
}

/// What one row holds of what the report reads.
struct DecodedRow {
    counters: Counters,
    hist: [Option<SparseHistogram>; 5],
}

/// The data of one period, in every slice the report shows.
#[derive(Debug, Clone, Default)]
pub struct PeriodData {
    /// The whole region.
    pub total: Acc,
    /// By network type.
    pub by_network: BTreeMap<String, Acc>,
    /// By transport and repair mode, `udp (nack)`.
    pub by_transport: BTreeMap<String, Acc>,
    /// By target (relay or endpoint).
    pub by_target: BTreeMap<String, Acc>,
    /// By local date.
    pub by_day: BTreeMap<Date, Acc>,
    /// Counters by network type and local hour of day.
    pub by_network_hour: BTreeMap<String, [Counters; 24]>,
    /// Rows read.
    pub rows: u64,
    /// Rows left out because a histogram in them could not be decoded.
    pub rows_unreadable: u64,
}

impl PeriodData {
    /// Counters per local hour over every network type.
    pub fn hours_all(&self) -> [Counters; 24] {
        let mut all = [Counters::default(); 24];
        for hours in self.by_network_hour.values() {
            for (a, h) in all.iter_mut().zip(hours) {
                a.add(h);
            }
        }
        all
    }

    fn add(&mut self, row: &CohortRow, decoded: &DecodedRow, zone: &Zone) {
        let c = &row.cohort;
        let local = zone.local_hour(row.start_unix_ms);
        self.total.add_row(decoded);
        slot(&mut self.by_network, &c.network_type).add_row(decoded);
        // Per transport and repair mode (`udp (nack)`): repaired and unrepaired stalls of one
        // transport are different figures and never share a line.
        let transport = if c.transport.is_empty() { "-" } else { &c.transport };
        let transport = format!("{transport} ({})", c.repair);
        slot(&mut self.by_transport, &transport).add_row(decoded);
        let target = if c.target.is_empty() { "-" } else { &c.target };
        slot(&mut self.by_target, target).add_row(decoded);
        self.by_day.entry(local.date).or_default().add_row(decoded);
        slot(&mut self.by_network_hour, &c.network_type)[usize::from(local.hour)]
            .add(&decoded.counters);
    }
}

/// The entry for `key`, made on first use (without allocating a key for every row).
fn slot<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Reads `region`'s rows starting in `range` (unix ms; hour-aligned for hour rows to count
/// whole) and adds them up, local times in `zone`.
pub fn read_period(
    store: &dyn HistoryStore,
    region: &str,
    range: Range<u64>,
    zone: &Zone,
) -> Result<PeriodData, StoreError> {
    let filter = CohortFilter { region: Some(region.to_owned()), ..CohortFilter::default() };
    let mut data = PeriodData::default();
    let mut start = range.start;
    while start < range.end {
        let end = (start - start % HOUR_MS + HOUR_MS).min(range.end);
        for resolution in [Resolution::Hour, Resolution::Minute] {
            for row in store.rows(resolution, start..end, &filter)? {
                data.rows += 1;
                match decode_row(&row) {
                    Some(decoded) => data.add(&row, &decoded, zone),
                    None => data.rows_unreadable += 1,
                }
            }
        }
        start = end;
    }
    Ok(data)
}

/// The counters and histograms the report reads from one row; `None` if a histogram is
/// corrupt or not of stallwatch's layout.
fn decode_row(row: &CohortRow) -> Option<DecodedRow> {
    let mut counters = Counters::default();
    for (name, field) in COUNTERS_READ {
        if let Some(&v) = row.counters.get(name) {
            let slot = field(&mut counters);
            *slot = slot.saturating_add(v);
        }
    }
    let mut hist: [Option<SparseHistogram>; 5] = Default::default();
    for (slot, name) in hist.iter_mut().zip(HISTOGRAMS_READ) {
        if let Some(stored) = row.histograms.get(name) {
            let h = stored.decode_sparse().ok().filter(|h| h.is_stallwatch_layout())?;
            *slot = Some(h);
        }
    }
    Some(DecodedRow { counters, hist })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stallwatch_proto::hdr;

    #[test]
    fn quantiles_match_hdrhistogram() {
        let mut h = hdr::new_histogram();
        for v in [1u64, 5, 999, 1_000, 1_001, 12_345, 250_000, 250_000, 3_999_999] {
            h.record(v).unwrap();
        }
        let sparse = hdr::decode_sparse(&hdr::encode(&h), &Default::default()).unwrap();
        let mut counts = Counts::default();
        counts.add_sparse(&sparse);
        for q in [0.1, 0.5, 0.5556, 0.9, 0.95, 0.99, 1.0] {
            assert_eq!(counts.quantile(q), Some(h.value_at_quantile(q)), "q={q}");
        }
        assert_eq!(counts.len(), 9);
        assert_eq!(Counts::default().quantile(0.5), None);
    }
}
