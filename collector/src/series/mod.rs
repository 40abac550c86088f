//! Per-cohort cumulative series and their Prometheus exposition (DESIGN.md section 6).
//!
//! Agents send *interval* reports: HDR histograms with exact sums and counts, and counter
//! increments. [`Cohorts::fold`] adds each one into running per-cohort totals, so everything
//! exports as Prometheus counters and cumulative histograms, never as snapshots.
//!
//! - **Cohort**: `region` and `network_type` from the agent's certificate (passed in as an
//!   [`Identity`], never read from the report), `transport` and `target` from the report
//!   series' labels. No agent label: per-agent facts are `stallwatch_agent_info{agent,
//!   region,network_type,version}` and `stallwatch_agent_last_report_timestamp_seconds{agent}`.
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
//!   Every counter name of `measure/src/report.rs` is mapped; unknown names are ignored and
//!   counted (`stallwatch_collector_report_names_ignored_total{kind}`).
//! - **Series limit**: a series is one histogram (buckets, sum and count together, as
//!   Prometheus counts a native histogram) or one counter of one cohort; each cohort holds
//!   [`SERIES_PER_COHORT`] of them. A report series that would start a cohort beyond
//!   [`SeriesLimits::max_series`] (default 50k: 1,136 cohorts) is dropped and counted.
//!
//! Exposition: [`SeriesStore::render_text`] writes OpenMetrics 1.0 text
//! ([`OPENMETRICS_CONTENT_TYPE`]), which Prometheus 2.42 and later scrape;
//! [`SeriesStore::render_prometheus_text`] writes the Prometheus 0.0.4 text format for
//! scrapers that do not ask for OpenMetrics. Native (sparse exponential) histograms in the
//! protobuf exposition are not built yet: only classic buckets are exported.

pub mod catalogue;
mod cohort;
mod cohorts;
mod export;
mod metrics;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use prometheus_client::registry::Registry;
use stallwatch_proto::report::DecodedReport;

pub use catalogue::SERIES_PER_COHORT;
pub use cohort::{CohortKey, HistogramView};
pub use cohorts::{
    AgentFacts, Cohorts, DEFAULT_MAX_AGENTS, DEFAULT_MAX_SERIES, FoldSummary, Identity,
    SeriesLimits,
};
pub use metrics::{CollectorMetrics, INGEST_DURATION_BOUNDS};

use export::CohortsCollector;

/// `Content-Type` of [`SeriesStore::render_text`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of [`SeriesStore::render_prometheus_text`].
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The shared, thread-safe series: [`Cohorts`] behind a lock, the collector's own metrics,
/// and the registry that exports both.
///
/// Folding takes the write lock; rendering holds the read lock only while it copies the
/// cohorts, then encodes the copy.
#[derive(Debug)]
pub struct SeriesStore {
    cohorts: Arc<RwLock<Cohorts>>,
    metrics: CollectorMetrics,
    registry: Registry,
    /// Length of the last exposition, to size the next one's buffer in one allocation.
    last_len: AtomicUsize,
}

impl Default for SeriesStore {
    fn default() -> Self {
        SeriesStore::new(SeriesLimits::default())
    }
}

impl SeriesStore {
    /// An empty store.
    pub fn new(limits: SeriesLimits) -> Self {
        let cohorts = Arc::new(RwLock::new(Cohorts::new(limits)));
        let metrics = CollectorMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        registry.register_collector(Box::new(CohortsCollector { cohorts: cohorts.clone() }));
        SeriesStore { cohorts, metrics, registry, last_len: AtomicUsize::new(0) }
    }

    /// Adds an interval report; see [`Cohorts::fold`].
    pub fn fold(&self, identity: Identity<'_>, decoded: &DecodedReport) -> FoldSummary {
        self.cohorts.write().unwrap_or_else(PoisonError::into_inner).fold(identity, decoded)
    }

    /// The cohorts, read-locked (for summaries and tests; do not hold it long).
    pub fn read(&self) -> RwLockReadGuard<'_, Cohorts> {
        self.cohorts.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hooks for ingest to count reports and time them.
    pub fn metrics(&self) -> &CollectorMetrics {
        &self.metrics
    }

    /// Everything, as OpenMetrics text ending in `# EOF` ([`OPENMETRICS_CONTENT_TYPE`]).
    pub fn render_text(&self) -> String {
        self.render(prometheus_client::encoding::text::encode)
    }

    /// Everything, as Prometheus text format 0.0.4 ([`PROMETHEUS_TEXT_CONTENT_TYPE`]).
    pub fn render_prometheus_text(&self) -> String {
        self.render(prometheus_client::encoding::prometheus_text::encode)
    }

    fn render(&self, encode: impl FnOnce(&mut String, &Registry) -> std::fmt::Result) -> String {
        let hint = self.last_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 8);
        encode(&mut out, &self.registry).expect("encoding into a String cannot fail");
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }
}
