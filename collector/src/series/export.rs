//! Encodes [`Cohorts`] through a `prometheus-client` [`Collector`], so the same code serves
//! the OpenMetrics and the Prometheus text formats.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::catalogue::{
    Counter, CounterUnit, Histogram, HistogramUnit, counter_members, histogram_members,
};
use super::cohorts::Cohorts;
use crate::store::Cohort;

/// Exports the shared [`Cohorts`] on every scrape. It holds the read lock only to copy them
/// (about 1 ms at the series limit), not for the encoding, so folds wait that long at most.
#[derive(Debug)]
pub(crate) struct CohortsCollector {
    pub(crate) cohorts: Arc<RwLock<Cohorts>>,
}

impl Collector for CohortsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let cohorts = self.cohorts.read().unwrap_or_else(PoisonError::into_inner).clone();
        encode_histograms(&cohorts, &mut encoder)?;
        encode_counters(&cohorts, &mut encoder)?;
        encode_agents(&cohorts, &mut encoder)?;
        encode_own(&cohorts, &mut encoder)
    }
}

/// The five cohort labels, then any the metric adds (`phase`, `result`, ...).
struct CohortLabels<'a> {
    key: &'a Cohort,
    extra: &'a [(&'static str, &'static str)],
}

impl EncodeLabelSet for CohortLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        let k = self.key;
        for label in [
            ("region", k.region.as_str()),
            ("network_type", k.network_type.as_str()),
            ("transport", k.transport.as_str()),
            ("repair", k.repair.as_str()),
            ("target", k.target.as_str()),
        ] {
            label.encode(encoder.encode_label())?;
        }
        for label in self.extra {
            label.encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

fn histogram_unit(unit: HistogramUnit) -> Unit {
    match unit {
        HistogramUnit::Micros => Unit::Seconds,
        HistogramUnit::Packets => Unit::Other(unit.exported().to_owned()),
    }
}

fn encode_histograms(cohorts: &Cohorts, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for family in Histogram::families() {
        let members = histogram_members(family);
        let observed = |i: usize| cohorts.states().any(|(_, state)| state.histogram(i).count() > 0);
        if !members.iter().any(|&i| observed(i)) {
            continue;
        }
        let divisor = family.unit.divisor();
        let upper: Vec<f64> =
            family.bounds.iter().map(|&b| b as f64 / divisor).chain([f64::INFINITY]).collect();
        let unit = histogram_unit(family.unit);
        let mut metric = encoder.encode_descriptor(
            family.name,
            family.help,
            Some(&unit),
            MetricType::Histogram,
        )?;
        for (key, state) in cohorts.states() {
            for &i in &members {
                let h = state.histogram(i);
                if h.count() == 0 {
                    continue;
                }
                buckets.clear();
                buckets.extend(upper.iter().copied().zip(h.bucket_counts().iter().copied()));
                let labels = CohortLabels { key, extra: Histogram::ALL[i].labels() };
                metric.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    h.sum_base(),
                    h.count(),
                    &buckets,
                    None,
                )?;
            }
        }
    }
    Ok(())
}

fn encode_counters(cohorts: &Cohorts, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    if cohorts.is_empty() {
        return Ok(());
    }
    for family in Counter::families() {
        let members = counter_members(family);
        let unit = match family.unit {
            CounterUnit::Count => None,
            CounterUnit::Bytes => Some(Unit::Bytes),
            CounterUnit::NanosAsSeconds => Some(Unit::Seconds),
        };
        let mut metric = encoder.encode_descriptor(
            family.name,
            family.help,
            unit.as_ref(),
            MetricType::Counter,
        )?;
        for (key, state) in cohorts.states() {
            for &i in &members {
                let value = state.counter(i);
                let labels = CohortLabels { key, extra: Counter::ALL[i].labels() };
                let encoder = metric.encode_family(&labels)?;
                match family.unit {
                    CounterUnit::NanosAsSeconds => {
                        ConstCounter::new(value as f64 / 1e9).encode(encoder)?;
                    }
                    CounterUnit::Count | CounterUnit::Bytes => {
                        ConstCounter::new(value).encode(encoder)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `stallwatch_agent` (info) name and help.
pub(crate) const AGENT_INFO: (&str, &str) = (
    "stallwatch_agent",
    "One per agent: the region and network type of its certificate and its build version.",
);
/// `stallwatch_agent_last_report_timestamp` (gauge, seconds) name and help.
pub(crate) const LAST_REPORT: (&str, &str) = (
    "stallwatch_agent_last_report_timestamp",
    "End of the newest report window an agent sent, unix time (agent clock).",
);

fn encode_agents(cohorts: &Cohorts, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let agents = cohorts.agents();
    if agents.is_empty() {
        return Ok(());
    }
    let (name, help) = AGENT_INFO;
    let mut info = encoder.encode_descriptor(name, help, None, MetricType::Info)?;
    for (name, facts) in agents {
        info.encode_info(&[
            ("agent", name.as_str()),
            ("region", facts.region.as_str()),
            ("network_type", facts.network_type.as_str()),
            ("version", facts.version.as_str()),
        ])?;
    }
    let (name, help) = LAST_REPORT;
    let mut last =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Gauge)?;
    for (name, facts) in agents {
        ConstGauge::new(facts.last_window_end_ms as f64 / 1e3)
            .encode(last.encode_family(&[("agent", name.as_str())])?)?;
    }
    Ok(())
}

/// The store's gauges: name, help, value.
pub(crate) fn own_gauges(cohorts: &Cohorts) -> [(&'static str, &'static str, u64); 4] {
    [
        (
            "stallwatch_collector_series",
            "Series held: every histogram and counter of every cohort.",
            cohorts.series() as u64,
        ),
        (
            "stallwatch_collector_series_limit",
            "Most series the collector holds; reports that would start a cohort beyond it are \
             dropped.",
            cohorts.limits().max_series as u64,
        ),
        ("stallwatch_collector_cohorts", "Cohorts held.", cohorts.len() as u64),
        ("stallwatch_collector_agents", "Agents tracked.", cohorts.agents().len() as u64),
    ]
}

/// The store's counters without labels: name (without `_total`), help, value.
pub(crate) fn own_counters(cohorts: &Cohorts) -> [(&'static str, &'static str, u64); 3] {
    let totals = cohorts.totals();
    [
        (
            "stallwatch_collector_cohorts_refused",
            "Report series dropped because their cohort would be new beyond the series limit.",
            totals.cohorts_refused,
        ),
        (
            "stallwatch_collector_agents_refused",
            "Reports from new agents beyond the agent limit, whose facts were not kept.",
            totals.agents_refused,
        ),
        // Always 0 since labels are typed (proto's `SeriesLabels`: a series without
        // `transport` or `target` is refused whole at decode, 422 `label-not-allowed`); kept so
        // the exported family list (tests/golden/families.txt) and what scrapes it stay as
        // they were. Remove it in a release that says so.
        (
            "stallwatch_collector_report_series_missing_labels",
            "Report series dropped for lacking a transport or target label.",
            0,
        ),
    ]
}

/// Name (without `_total`), help and `(kind, value)` samples of the ignored-names counter.
pub(crate) fn names_ignored(
    cohorts: &Cohorts,
) -> (&'static str, &'static str, [(&'static str, u64); 2]) {
    let totals = cohorts.totals();
    (
        "stallwatch_collector_report_names_ignored",
        "Counter and histogram names in reports that the collector does not know, ignored.",
        [("counter", totals.unknown_counters), ("histogram", totals.unknown_histograms)],
    )
}

/// The series' part of the collector's own metrics; [`Telemetry`](crate::telemetry::Telemetry)
/// has the rest.
fn encode_own(cohorts: &Cohorts, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    for (name, help, value) in own_gauges(cohorts) {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(value).encode(metric)?;
    }
    for (name, help, value) in own_counters(cohorts) {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(metric)?;
    }
    let (name, help, values) = names_ignored(cohorts);
    let mut ignored = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (kind, value) in values {
        ConstCounter::new(value).encode(ignored.encode_family(&[("kind", kind)])?)?;
    }
    Ok(())
}
