//! Per-cohort cumulative series and their Prometheus exposition (DESIGN.md section 6).
//!
//! Agents send *interval* reports: HDR histograms with exact sums and counts, and counter
//! increments. The store merges each committed batch per cohort into a [`Delta`], and
//! [`Cohorts::apply`] adds that into running per-cohort totals (the only way in), so
//! everything exports as Prometheus counters and cumulative histograms, never as snapshots.
//!
//! - **Cohort**: [`Cohort`]: `region` and `network_type` from the agent's verified
//!   certificate, never read from the report, `transport`, `repair` and `target` from the
//!   report series' labels. No agent label: per-agent facts ([`AgentFacts`], from the delta) are
//!   `stallwatch_agent_info{agent,region,network_type,version}` and
//!   `stallwatch_agent_last_report_timestamp_seconds{agent}`.
//! - **Histograms**: one fixed classic bucket layout per metric ([`catalogue`]). A cohort keeps
//!   bucket counts, the exact sum and the count per histogram in fixed arrays (about 2 KiB for
//!   the whole cohort), not HDR histograms. HDR counts are distributed exactly: each recorded
//!   HDR bucket goes into the first classic bucket whose bound is at least the HDR bucket's
//!   highest equivalent value, so boundaries are exact to the HDR's 3 significant figures and
//!   a value just under a bound may count one bucket up, never down.
//! - **First frame**: the total is `stallwatch_first_frame_seconds`; phases are a separate
//!   histogram, `stallwatch_first_frame_phase_seconds{phase}`, because they are durations of
//!   consecutive steps that add up to the total: one family with `phase="total"` would make
//!   `sum by (le)` silently count every attempt twice.
//! - **Counters** keep the reported unit (`u64`); `*_time_ns` export as `*_seconds_total`.
//!   Ingest refuses a report carrying a name outside the catalogue (422, `unknown_metric`),
//!   so committed deltas carry catalogue names only and
//!   `stallwatch_collector_report_names_ignored_total{kind}` (what the series skip in them)
//!   stays 0; restored history written by a build with more names is skipped too.
//! - **Series limit**: a series is one histogram (buckets, sum and count together, as
//!   Prometheus counts a native histogram) or one counter of one cohort; each cohort holds
//!   [`SERIES_PER_COHORT`] of them. A report series that would start a cohort beyond
//!   [`SeriesLimits::max_series`] (default 50k: 1,136 cohorts) is dropped and counted.
//!
//! - **Native histograms**: each histogram also keeps sparse exponential buckets (schema 3,
//!   factor 2^(1/8); see [`native`]) filled exactly from the HDR buckets when a delta is applied, and
//!   exported only in the protobuf exposition, beside the classic buckets.
//! - **Restore**: after a restart, the store replays its history as deltas
//!   ([`HistoryStore::replay`](crate::store::HistoryStore::replay)), which
//!   [`SeriesStore::apply`] adds exactly as the committed batches were added.
//!
//! Exposition: [`SeriesStore::render`] (with the collector's own [`Telemetry`]) in the
//! [`Exposition`] that [`negotiate`] picks from the
//! scrape's `Accept` header: OpenMetrics 1.0 text ([`OPENMETRICS_CONTENT_TYPE`]), the
//! Prometheus 0.0.4 text format ([`PROMETHEUS_TEXT_CONTENT_TYPE`], also the default), or
//! Prometheus protobuf with native histograms ([`PROTOBUF_CONTENT_TYPE`]), which Prometheus
//! asks for when started with `--enable-feature=native-histograms`. All three carry the same
//! families and samples; only protobuf adds native buckets.

pub mod catalogue;
mod cohort;
mod cohorts;
mod export;
mod exposition;
pub mod native;
mod protobuf;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use prometheus_client::registry::Registry;

pub use catalogue::SERIES_PER_COHORT;
pub use cohort::HistogramView;
pub use cohorts::{Cohorts, DEFAULT_MAX_AGENTS, DEFAULT_MAX_SERIES, FoldSummary, SeriesLimits};
pub use exposition::{
    Exposition, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE,
    negotiate,
};
pub use native::{NATIVE_SCHEMA, NATIVE_ZERO_THRESHOLD, NativeBuckets};

use crate::store::Delta;
#[doc(no_inline)]
pub use crate::store::{AgentFacts, Cohort};
use crate::telemetry::{Telemetry, TelemetryCollector};
use export::CohortsCollector;

/// The shared, thread-safe series: [`Cohorts`] behind a lock.
///
/// Applying a delta takes the write lock; rendering holds the read lock only while it copies
/// the cohorts, then encodes the copy.
#[derive(Debug)]
pub struct SeriesStore {
    cohorts: Arc<RwLock<Cohorts>>,
    /// Length of the last text exposition, to size the next one's buffer in one allocation.
    last_len: AtomicUsize,
    /// The same for the protobuf exposition.
    last_protobuf_len: AtomicUsize,
}

impl Default for SeriesStore {
    fn default() -> Self {
        SeriesStore::new(SeriesLimits::default())
    }
}

impl SeriesStore {
    /// An empty store.
    pub fn new(limits: SeriesLimits) -> Self {
        SeriesStore {
            cohorts: Arc::new(RwLock::new(Cohorts::new(limits))),
            last_len: AtomicUsize::new(0),
            last_protobuf_len: AtomicUsize::new(0),
        }
    }

    /// Adds a delta the store made; see [`Cohorts::apply`].
    pub fn apply(&self, delta: &Delta) -> FoldSummary {
        self.cohorts.write().unwrap_or_else(PoisonError::into_inner).apply(delta)
    }

    /// The cohorts, read-locked (for summaries and tests; do not hold it long).
    pub fn read(&self) -> RwLockReadGuard<'_, Cohorts> {
        self.cohorts.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The series and the collector's own `telemetry`, in `format`; answer with
    /// `format.content_type()`.
    pub fn render(&self, format: Exposition, telemetry: &Telemetry) -> Vec<u8> {
        match format {
            Exposition::OpenMetrics => self.render_text(telemetry).into_bytes(),
            Exposition::PrometheusText => self.render_prometheus_text(telemetry).into_bytes(),
            Exposition::Protobuf => self.render_protobuf(telemetry),
        }
    }

    /// Everything, as OpenMetrics text ending in `# EOF` ([`OPENMETRICS_CONTENT_TYPE`]).
    pub fn render_text(&self, telemetry: &Telemetry) -> String {
        self.render_with(telemetry, prometheus_client::encoding::text::encode)
    }

    /// Everything, as Prometheus text format 0.0.4 ([`PROMETHEUS_TEXT_CONTENT_TYPE`]).
    pub fn render_prometheus_text(&self, telemetry: &Telemetry) -> String {
        self.render_with(telemetry, prometheus_client::encoding::prometheus_text::encode)
    }

    /// Everything, as length-delimited Prometheus protobuf with native histograms
    /// ([`PROTOBUF_CONTENT_TYPE`]). Holds the read lock only to copy the cohorts.
    pub fn render_protobuf(&self, telemetry: &Telemetry) -> Vec<u8> {
        let own = telemetry.totals();
        let cohorts = self.read().clone();
        let hint = self.last_protobuf_len.load(Ordering::Relaxed);
        let out = protobuf::encode(&cohorts, &own, hint + hint / 8);
        self.last_protobuf_len.store(out.len(), Ordering::Relaxed);
        out
    }

    fn render_with(
        &self,
        telemetry: &Telemetry,
        encode: impl FnOnce(&mut String, &Registry) -> std::fmt::Result,
    ) -> String {
        // Two collectors behind shared handles: building the registry per render is cheap.
        let mut registry = Registry::default();
        registry.register_collector(Box::new(TelemetryCollector { telemetry: telemetry.clone() }));
        registry.register_collector(Box::new(CohortsCollector { cohorts: self.cohorts.clone() }));
        let hint = self.last_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 8);
        encode(&mut out, &registry).expect("encoding into a String cannot fail");
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }
}
