//! The collector's view of the metric catalogue (`stallwatch_proto::catalogue`, which owns
//! every name, help text, unit and bucket layout): the flat per-cohort layout of the
//! histograms' classic buckets, and the report-name lookups ingest uses.

use std::collections::HashMap;
use std::sync::LazyLock;

pub use stallwatch_proto::catalogue::bounds::{
    BURST as BURST_BOUNDS, DELAY_US as DELAY_BOUNDS_US, FIRST_FRAME_US as FIRST_FRAME_BOUNDS_US,
    PHASE_US as PHASE_BOUNDS_US, PUBLISH_US as PUBLISH_BOUNDS_US, REORDER as REORDER_BOUNDS,
    REPAIR_DELAY_US as REPAIR_DELAY_BOUNDS_US, RTT_US as RTT_BOUNDS_US,
    SEND_TIMER_US as SEND_TIMER_BOUNDS_US, STALL_US as STALL_BOUNDS_US,
};
pub use stallwatch_proto::catalogue::{
    Counter, CounterFamily, CounterUnit, Histogram, HistogramFamily, HistogramUnit,
};

/// Every report histogram, grouped by family in exposition order; a cohort's histograms are
/// kept in this order.
pub static HISTOGRAMS: [Histogram; Histogram::ALL.len()] = Histogram::ALL;
/// Every report counter, grouped by family in exposition order; a cohort's counters are kept
/// in this order.
pub static COUNTERS: [Counter; Counter::ALL.len()] = Counter::ALL;

/// Number of histograms each cohort keeps.
pub const HISTOGRAM_COUNT: usize = HISTOGRAMS.len();

/// Where each histogram's bucket counts start in a cohort's flat bucket array.
pub(crate) const BUCKET_OFFSETS: [usize; HISTOGRAM_COUNT] = {
    let mut out = [0; HISTOGRAM_COUNT];
    let mut offset = 0;
    let mut i = 0;
    while i < HISTOGRAM_COUNT {
        out[i] = offset;
        offset += Histogram::ALL[i].family().bounds.len() + 1;
        i += 1;
    }
    out
};

/// Bucket counts per cohort over all histograms, `+Inf` buckets included.
pub const BUCKET_SLOTS: usize = {
    let last = HISTOGRAM_COUNT - 1;
    BUCKET_OFFSETS[last] + Histogram::ALL[last].family().bounds.len() + 1
};

/// Number of counters each cohort keeps.
pub const COUNTER_COUNT: usize = COUNTERS.len();

/// Series each cohort holds: one per histogram (all its buckets, sum and count together, as
/// Prometheus counts a native histogram) and one per counter. The series limit is counted
/// in these.
pub const SERIES_PER_COHORT: usize = HISTOGRAM_COUNT + COUNTER_COUNT;

// Hashed rather than matched: ingest looks up every name of every report.
static HISTOGRAM_INDEX: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| HISTOGRAMS.iter().map(|h| (h.report_name(), h.index())).collect());
static COUNTER_INDEX: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| COUNTERS.iter().map(|c| (c.report_name(), c.index())).collect());

/// Index into [`HISTOGRAMS`] of a report histogram name.
pub fn histogram_index(report_name: &str) -> Option<usize> {
    HISTOGRAM_INDEX.get(report_name).copied()
}

/// Index into [`COUNTERS`] of a report counter name.
pub fn counter_index(report_name: &str) -> Option<usize> {
    COUNTER_INDEX.get(report_name).copied()
}

/// Indexes (into [`HISTOGRAMS`]) of the histograms exported in `family`.
pub(crate) fn histogram_members(family: &HistogramFamily) -> Vec<usize> {
    HISTOGRAMS.iter().filter(|h| h.family().name == family.name).map(|h| h.index()).collect()
}

/// Indexes (into [`COUNTERS`]) of the counters exported in `family`.
pub(crate) fn counter_members(family: &CounterFamily) -> Vec<usize> {
    COUNTERS.iter().filter(|c| c.family().name == family.name).map(|c| c.index()).collect()
}
