//! The collector's own telemetry: what ingest did (reports accepted, refused by reason,
//! backfilled, and how long answering took), kept apart from the exported series. Cheap to
//! clone and safe to share: every handle updates the same totals. The series' own figures
//! (series, cohorts, refusals at the series limit) are encoded from
//! [`Cohorts`](crate::series::Cohorts) beside them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Unit;

/// Upper bounds of the ingest latency histogram, seconds: receipt to acknowledgement,
/// which includes the durable (group) commit.
pub const INGEST_DURATION_BOUNDS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Hooks for ingest: reports accepted, rejected by reason, backfilled, and ingest latency.
///
/// Plain totals behind one mutex (held for a few additions), so that every exposition,
/// protobuf included, reads the same figures.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    inner: Arc<Mutex<OwnTotals>>,
}

/// A copy of the collector's own ingest totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct OwnTotals {
    pub(crate) accepted: u64,
    pub(crate) rejected: BTreeMap<&'static str, u64>,
    pub(crate) backfilled: u64,
    /// Non-cumulative counts per bound of [`INGEST_DURATION_BOUNDS`], then `+Inf`.
    pub(crate) ingest_buckets: [u64; INGEST_DURATION_BOUNDS.len() + 1],
    pub(crate) ingest_sum: f64,
    pub(crate) ingest_count: u64,
}

/// Names and help of the own metrics, shared by every exposition. Names are without the
/// unit and `_total` suffixes the encoders add.
pub(crate) const ACCEPTED: (&str, &str) =
    ("stallwatch_collector_reports_accepted", "Agent reports acknowledged.");
pub(crate) const REJECTED: (&str, &str) =
    ("stallwatch_collector_reports_rejected", "Agent reports refused, by reason.");
pub(crate) const BACKFILLED: (&str, &str) = (
    "stallwatch_collector_reports_backfilled",
    "Accepted reports that came from an agent's disk spool.",
);
pub(crate) const INGEST_DURATION: (&str, &str) =
    ("stallwatch_collector_ingest_duration", "Time from receiving a report to answering it.");

impl Telemetry {
    fn update(&self, f: impl FnOnce(&mut OwnTotals)) {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub(crate) fn totals(&self) -> OwnTotals {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A report was acknowledged (it is durable and folded).
    pub fn report_accepted(&self) {
        self.update(|t| t.accepted += 1);
    }

    /// A report was refused; `reason` is a short snake_case label such as
    /// `ReportError::reason()`, or ingest's own (`certificate`, `label_not_allowed`, ...).
    /// Keep the set of reasons small and fixed: each is a series.
    pub fn report_rejected(&self, reason: &'static str) {
        self.update(|t| *t.rejected.entry(reason).or_default() += 1);
    }

    /// An accepted report came from an agent's disk spool (sent while others waited behind
    /// it, `spool_depth > 0`, or resent after an outage).
    pub fn report_backfilled(&self) {
        self.update(|t| t.backfilled += 1);
    }

    /// Time from receiving a report to answering it.
    pub fn observe_ingest(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = INGEST_DURATION_BOUNDS.partition_point(|&b| b < seconds);
        self.update(|t| {
            t.ingest_buckets[bucket] += 1;
            t.ingest_sum += seconds;
            t.ingest_count += 1;
        });
    }
}

/// Encodes [`Telemetry`] for the text formats.
#[derive(Debug)]
pub(crate) struct TelemetryCollector {
    pub(crate) telemetry: Telemetry,
}

impl Collector for TelemetryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let t = self.telemetry.totals();
        let (name, help) = ACCEPTED;
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(t.accepted).encode(metric)?;
        let (name, help) = REJECTED;
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (&reason, &value) in &t.rejected {
            ConstCounter::new(value).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        let (name, help) = BACKFILLED;
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(t.backfilled).encode(metric)?;
        let (name, help) = INGEST_DURATION;
        let mut metric =
            encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
        let buckets: Vec<(f64, u64)> = INGEST_DURATION_BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(t.ingest_buckets)
            .collect();
        metric.encode_histogram::<NoLabelSet>(t.ingest_sum, t.ingest_count, &buckets, None)
    }
}
