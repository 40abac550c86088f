//! The alert families on `/metrics`: `stallwatch_alerts_active{severity,alertname,region,
//! network_type}` (open incidents), and the evaluator's own counters (evaluations, failures,
//! deliveries) apart from the data the collector serves. They are appended to the series'
//! exposition in the same format: OpenMetrics and Prometheus text through `prometheus-client`,
//! protobuf written here (a gauge or counter `MetricFamily` is a few fields).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::Severity;
use super::incidents::Incidents;
use crate::series::Exposition;

/// Counters and gauges of the alert path.
#[derive(Debug, Default)]
pub struct Telemetry {
    inner: Mutex<Totals>,
}

/// A copy of the figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Evaluations done.
    pub evaluations: u64,
    /// Evaluations that failed (the store could not be read).
    pub evaluation_failures: u64,
    /// Last successful evaluation, unix ms.
    pub last_evaluation_unix_ms: u64,
    /// Cohort-signals with too little data at the last evaluation.
    pub insufficient_data: u64,
    /// Open incidents by (severity, alertname, region, network type).
    pub active: BTreeMap<(Severity, &'static str, String, String), u64>,
    /// Notifications delivered, by receiver.
    pub notifications: BTreeMap<String, u64>,
    /// Failed delivery attempts, by receiver.
    pub delivery_failures: BTreeMap<String, u64>,
    /// Notifications given up, by receiver.
    pub dropped: BTreeMap<String, u64>,
}

const ACTIVE: (&str, &str) =
    ("stallwatch_alerts_active", "Open alert incidents of the built-in evaluator.");
const EVALUATIONS: (&str, &str) =
    ("stallwatch_collector_alert_evaluations", "Alert evaluations completed.");
const EVALUATION_FAILURES: (&str, &str) = (
    "stallwatch_collector_alert_evaluation_failures",
    "Alert evaluations that failed (history unreadable).",
);
const LAST_EVALUATION: (&str, &str) = (
    "stallwatch_collector_alert_last_evaluation_timestamp",
    "When the alert evaluator last completed, unix time.",
);
const INSUFFICIENT: (&str, &str) = (
    "stallwatch_collector_alert_insufficient_data",
    "Cohort signals with too little data to judge at the last evaluation.",
);
const NOTIFICATIONS: (&str, &str) =
    ("stallwatch_collector_alert_notifications", "Alert notifications delivered, by receiver.");
const DELIVERY_FAILURES: (&str, &str) = (
    "stallwatch_collector_alert_delivery_failures",
    "Failed alert delivery attempts, by receiver (each is retried).",
);
const DROPPED: (&str, &str) = (
    "stallwatch_collector_alert_notifications_dropped",
    "Alert notifications given up after failing for delivery.give_up_after, by receiver.",
);

impl Telemetry {
    /// Telemetry whose delivery counters start at zero for each of `receivers`, so they are
    /// exported before the first notification (a counter that appears at 1 hides its first
    /// increase from `increase()`, and a rule over an absent series cannot tell "none").
    pub fn with_receivers(receivers: impl IntoIterator<Item = String>) -> Self {
        let telemetry = Telemetry::default();
        telemetry.update(|t| {
            for name in receivers {
                t.notifications.insert(name.clone(), 0);
                t.delivery_failures.insert(name.clone(), 0);
                t.dropped.insert(name, 0);
            }
        });
        telemetry
    }

    fn update(&self, f: impl FnOnce(&mut Totals)) {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// A copy of the figures.
    pub fn totals(&self) -> Totals {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// An evaluation completed at `now` with these incidents.
    pub fn evaluated(&self, now: u64, incidents: &Incidents, insufficient: usize) {
        let mut active = BTreeMap::new();
        for i in incidents.open_incidents() {
            let key =
                (i.severity, i.alert.name(), i.scope.region.clone(), i.scope.network_type.clone());
            *active.entry(key).or_insert(0) += 1;
        }
        self.update(|t| {
            t.evaluations += 1;
            t.last_evaluation_unix_ms = now;
            t.insufficient_data = insufficient as u64;
            t.active = active;
        });
    }

    /// An evaluation failed.
    pub fn evaluation_failed(&self) {
        self.update(|t| t.evaluation_failures += 1);
    }

    /// A notification reached `receiver`.
    pub fn delivered(&self, receiver: &str) {
        self.update(|t| *t.notifications.entry(receiver.to_owned()).or_default() += 1);
    }

    /// A delivery attempt to `receiver` failed.
    pub fn failed(&self, receiver: &str) {
        self.update(|t| *t.delivery_failures.entry(receiver.to_owned()).or_default() += 1);
    }

    /// A notification to `receiver` was given up.
    pub fn dropped(&self, receiver: &str) {
        self.update(|t| *t.dropped.entry(receiver.to_owned()).or_default() += 1);
    }

    /// Appends the alert families to `body`, an exposition in `format` (OpenMetrics: before
    /// its `# EOF`).
    pub fn append(&self, format: Exposition, body: &mut Vec<u8>) {
        let totals = self.totals();
        match format {
            Exposition::Protobuf => protobuf::encode(&totals, body),
            Exposition::OpenMetrics | Exposition::PrometheusText => {
                let mut registry = Registry::default();
                registry.register_collector(Box::new(TotalsCollector(totals)));
                let mut text = String::new();
                if format == Exposition::OpenMetrics {
                    const EOF: &[u8] = b"# EOF\n";
                    if body.ends_with(EOF) {
                        body.truncate(body.len() - EOF.len());
                    }
                    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
                } else {
                    let _ =
                        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
                }
                body.extend_from_slice(text.as_bytes());
            }
        }
    }
}

#[derive(Debug)]
struct TotalsCollector(Totals);

impl Collector for TotalsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let t = &self.0;
        let (name, help) = ACTIVE;
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for ((severity, alertname, region, network_type), &n) in &t.active {
            let labels = [
                ("severity", severity.as_str()),
                ("alertname", alertname),
                ("region", region.as_str()),
                ("network_type", network_type.as_str()),
            ];
            ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
        }
        for ((name, help), value) in
            [(EVALUATIONS, t.evaluations), (EVALUATION_FAILURES, t.evaluation_failures)]
        {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        let (name, help) = LAST_EVALUATION;
        let metric =
            encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Gauge)?;
        ConstGauge::new(t.last_evaluation_unix_ms as f64 / 1e3).encode(metric)?;
        let (name, help) = INSUFFICIENT;
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(t.insufficient_data as i64).encode(metric)?;
        for ((name, help), values) in [
            (NOTIFICATIONS, &t.notifications),
            (DELIVERY_FAILURES, &t.delivery_failures),
            (DROPPED, &t.dropped),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (receiver, &n) in values {
                ConstCounter::new(n)
                    .encode(family.encode_family(&[("receiver", receiver.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// The same families as length-delimited `io.prometheus.client.MetricFamily` messages
/// (field numbers from `prometheus/client_model` `metrics.proto`), with the names Prometheus
/// derives from the text formats (`_total` on counters, the unit on the timestamp).
mod protobuf {
    use super::*;

    const COUNTER: u64 = 0;
    const GAUGE: u64 = 1;

    fn varint(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    fn bytes(buf: &mut Vec<u8>, field: u64, data: &[u8]) {
        varint(buf, field << 3 | 2);
        varint(buf, data.len() as u64);
        buf.extend_from_slice(data);
    }

    fn double(field: u64, v: f64) -> Vec<u8> {
        let mut out = Vec::with_capacity(9);
        varint(&mut out, field << 3 | 1);
        out.extend_from_slice(&v.to_le_bytes());
        out
    }

    /// One family: (labels, value) per metric.
    fn family(
        out: &mut Vec<u8>,
        name: &str,
        help: &str,
        kind: u64,
        metrics: &[(Vec<(&str, &str)>, f64)],
    ) {
        // As in the series' protobuf: a family without samples is left out.
        if metrics.is_empty() {
            return;
        }
        let mut f = Vec::new();
        bytes(&mut f, 1, name.as_bytes());
        bytes(&mut f, 2, help.as_bytes());
        varint(&mut f, 3 << 3);
        varint(&mut f, kind);
        for (labels, value) in metrics {
            let mut m = Vec::new();
            for (k, v) in labels {
                let mut pair = Vec::new();
                bytes(&mut pair, 1, k.as_bytes());
                bytes(&mut pair, 2, v.as_bytes());
                bytes(&mut m, 1, &pair);
            }
            // Metric.gauge = 2, Metric.counter = 3; both hold `double value = 1`.
            bytes(&mut m, if kind == GAUGE { 2 } else { 3 }, &double(1, *value));
            bytes(&mut f, 4, &m);
        }
        varint(out, f.len() as u64);
        out.extend_from_slice(&f);
    }

    pub(super) fn encode(t: &Totals, out: &mut Vec<u8>) {
        let active: Vec<(Vec<(&str, &str)>, f64)> = t
            .active
            .iter()
            .map(|((severity, alertname, region, network_type), &n)| {
                let labels = vec![
                    ("severity", severity.as_str()),
                    ("alertname", *alertname),
                    ("region", region.as_str()),
                    ("network_type", network_type.as_str()),
                ];
                (labels, n as f64)
            })
            .collect();
        family(out, ACTIVE.0, ACTIVE.1, GAUGE, &active);
        for ((name, help), v) in
            [(EVALUATIONS, t.evaluations), (EVALUATION_FAILURES, t.evaluation_failures)]
        {
            family(out, &format!("{name}_total"), help, COUNTER, &[(vec![], v as f64)]);
        }
        let (name, help) = LAST_EVALUATION;
        family(
            out,
            &format!("{name}_seconds"),
            help,
            GAUGE,
            &[(vec![], t.last_evaluation_unix_ms as f64 / 1e3)],
        );
        let (name, help) = INSUFFICIENT;
        family(out, name, help, GAUGE, &[(vec![], t.insufficient_data as f64)]);
        for ((name, help), values) in [
            (NOTIFICATIONS, &t.notifications),
            (DELIVERY_FAILURES, &t.delivery_failures),
            (DROPPED, &t.dropped),
        ] {
            let metrics: Vec<(Vec<(&str, &str)>, f64)> =
                values.iter().map(|(r, &n)| (vec![("receiver", r.as_str())], n as f64)).collect();
            family(out, &format!("{name}_total"), help, COUNTER, &metrics);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Alert;
    use crate::alerts::incidents::{Assessment, IncidentKey, Scope};

    fn telemetry() -> Telemetry {
        let mut incidents = Incidents::default();
        let key = IncidentKey {
            alert: Alert::Stalls,
            scope: Scope { region: "sea".into(), network_type: "4g".into(), ..Scope::default() },
        };
        let firing = Assessment { severity: Some(Severity::P1), ..Assessment::default() };
        incidents.apply(1_000, &[(key, firing)].into(), 0);
        let t = Telemetry::default();
        t.evaluated(61_000, &incidents, 3);
        t.delivered("chat");
        t.failed("chat");
        t.failed("alertmanager-0");
        t
    }

    #[test]
    fn text_formats_carry_every_family_and_one_eof() {
        let t = telemetry();
        let mut body = b"# TYPE x counter\nx_total 1\n# EOF\n".to_vec();
        t.append(Exposition::OpenMetrics, &mut body);
        let text = String::from_utf8(body).unwrap();
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n") && text.starts_with("# TYPE x counter\nx_total 1\n"));
        for line in [
            "stallwatch_alerts_active{severity=\"P1\",alertname=\"StallwatchStalls\",region=\"sea\",network_type=\"4g\"} 1",
            "stallwatch_collector_alert_evaluations_total 1",
            "stallwatch_collector_alert_last_evaluation_timestamp_seconds 61.0",
            "stallwatch_collector_alert_insufficient_data 3",
            "stallwatch_collector_alert_delivery_failures_total{receiver=\"alertmanager-0\"} 1",
            "stallwatch_collector_alert_notifications_total{receiver=\"chat\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        let mut body = Vec::new();
        t.append(Exposition::PrometheusText, &mut body);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("stallwatch_collector_alert_evaluation_failures_total 0"), "{text}");
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn configured_receivers_are_exported_at_zero_before_any_notification() {
        let t = Telemetry::with_receivers(["alertmanager-0".to_owned(), "chat".to_owned()]);
        let mut body = Vec::new();
        t.append(Exposition::PrometheusText, &mut body);
        let text = String::from_utf8(body).unwrap();
        for family in
            ["notifications_total", "delivery_failures_total", "notifications_dropped_total"]
        {
            for receiver in ["alertmanager-0", "chat"] {
                let line =
                    format!("stallwatch_collector_alert_{family}{{receiver=\"{receiver}\"}} 0");
                assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
            }
        }
        t.delivered("chat");
        assert_eq!(t.totals().notifications["chat"], 1);
    }

    /// Reads a varint at `*at`.
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    /// The (field, bytes) of the length-delimited fields of one message.
    fn fields(m: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let (mut at, mut out) = (0, Vec::new());
        while at < m.len() {
            let key = varint(m, &mut at);
            let value = match key & 7 {
                0 => varint(m, &mut at).to_le_bytes().to_vec(),
                1 => {
                    at += 8;
                    m[at - 8..at].to_vec()
                }
                2 => {
                    let len = varint(m, &mut at) as usize;
                    at += len;
                    m[at - len..at].to_vec()
                }
                wire => panic!("wire type {wire}"),
            };
            out.push((key >> 3, value));
        }
        out
    }

    #[test]
    fn protobuf_families_are_length_delimited_metric_families() {
        let mut body = Vec::new();
        telemetry().append(Exposition::Protobuf, &mut body);
        let (mut at, mut families) = (0, Vec::new());
        while at < body.len() {
            let len = varint(&body, &mut at) as usize;
            families.push(fields(&body[at..at + len]));
            at += len;
        }
        let name = |f: &[(u64, Vec<u8>)]| String::from_utf8(f[0].1.clone()).unwrap();
        let names: Vec<String> = families.iter().map(|f| name(f)).collect();
        assert_eq!(
            names,
            [
                "stallwatch_alerts_active",
                "stallwatch_collector_alert_evaluations_total",
                "stallwatch_collector_alert_evaluation_failures_total",
                "stallwatch_collector_alert_last_evaluation_timestamp_seconds",
                "stallwatch_collector_alert_insufficient_data",
                "stallwatch_collector_alert_notifications_total",
                "stallwatch_collector_alert_delivery_failures_total",
            ]
        );
        // The active gauge: type GAUGE (1), one metric with four labels and value 1.0.
        let active = &families[0];
        assert_eq!(active[2], (3, 1u64.to_le_bytes().to_vec()));
        let metric = fields(&active[3].1);
        let labels: Vec<Vec<(u64, Vec<u8>)>> =
            metric.iter().filter(|(f, _)| *f == 1).map(|(_, m)| fields(m)).collect();
        assert_eq!(labels.len(), 4);
        assert_eq!(labels[1][1].1, b"StallwatchStalls");
        let gauge = fields(&metric.iter().find(|(f, _)| *f == 2).unwrap().1);
        assert_eq!(gauge[0].1, 1.0f64.to_le_bytes());
    }
}
