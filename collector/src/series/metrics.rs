//! The collector's own metrics that ingest updates. Cheap to clone and safe to share: every
//! handle updates the same atomics. The store's own figures (series, cohorts, refusals) are
//! encoded from [`Cohorts`](super::Cohorts) instead.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the ingest latency histogram, seconds: receipt to acknowledgement,
/// which includes the durable (group) commit.
pub const INGEST_DURATION_BOUNDS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

type ReasonLabel = [(&'static str, &'static str); 1];

/// Hooks for ingest: reports accepted, rejected by reason, backfilled, and ingest latency.
#[derive(Debug, Clone)]
pub struct CollectorMetrics {
    accepted: Counter,
    rejected: Family<ReasonLabel, Counter>,
    backfilled: Counter,
    ingest_duration: Histogram,
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        CollectorMetrics {
            accepted: Counter::default(),
            rejected: Family::default(),
            backfilled: Counter::default(),
            ingest_duration: Histogram::new(INGEST_DURATION_BOUNDS),
        }
    }
}

impl CollectorMetrics {
    /// A report was acknowledged (it is durable and folded).
    pub fn report_accepted(&self) {
        self.accepted.inc();
    }

    /// A report was refused; `reason` is a short snake_case label such as
    /// `ReportError::reason()`, or ingest's own (`certificate`, `label_not_allowed`, ...).
    /// Keep the set of reasons small and fixed: each is a series.
    pub fn report_rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&[("reason", reason)]).inc();
    }

    /// An accepted report came from an agent's disk spool (sent while others waited behind
    /// it, `spool_depth > 0`, or resent after an outage).
    pub fn report_backfilled(&self) {
        self.backfilled.inc();
    }

    /// Time from receiving a report to answering it.
    pub fn observe_ingest(&self, elapsed: Duration) {
        self.ingest_duration.observe(elapsed.as_secs_f64());
    }

    /// Reports accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.get()
    }

    /// Reports rejected so far for `reason`.
    pub fn rejected(&self, reason: &'static str) -> u64 {
        self.rejected.get(&[("reason", reason)]).map_or(0, |c| c.get())
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "stallwatch_collector_reports_accepted",
            "Agent reports acknowledged",
            self.accepted.clone(),
        );
        registry.register(
            "stallwatch_collector_reports_rejected",
            "Agent reports refused, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "stallwatch_collector_reports_backfilled",
            "Accepted reports that came from an agent's disk spool",
            self.backfilled.clone(),
        );
        registry.register_with_unit(
            "stallwatch_collector_ingest_duration",
            "Time from receiving a report to answering it",
            Unit::Seconds,
            self.ingest_duration.clone(),
        );
    }
}
