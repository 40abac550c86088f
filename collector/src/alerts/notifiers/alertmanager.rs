//! Alertmanager's `POST /api/v2/alerts` body: a list of postable alerts.
//!
//! An open incident is one alert, its labels `alertname`, `severity`, `service`,
//! `source="stallwatch"` and the scope's labels; `startsAt` is when it took its severity,
//! `endsAt` is `ends_at_after` ahead, renewed on every resend. When an incident changes
//! severity the old label set is another alert: it is sent with `endsAt` = the moment of the
//! change, which resolves it, and the new one starts. A resolution is sent the same way.
//! Resolved label sets are re-sent for `ends_at_after`, so a replica that missed one resend
//! still hears it. Annotations carry the summary, the evidence, since when, and the runbook.

use serde_json::{Value, json};

use super::runbook_url;
use crate::alerts::Severity;
use crate::alerts::incidents::{Incident, Incidents};
use crate::alerts::timestamps::rfc3339;

/// What the payload needs besides the incidents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `endsAt` of an active alert is this far ahead, ms.
    pub ends_at_after_ms: u64,
    /// The runbook URL template.
    pub runbook_template: String,
    /// The collector's external URL, for `generatorURL`.
    pub external_url: Option<String>,
}

/// The labels of `incident` with `severity`.
pub fn labels(incident: &Incident, severity: Severity) -> serde_json::Map<String, Value> {
    [
        ("alertname", incident.alert.name()),
        ("severity", severity.as_str()),
        ("service", incident.alert.service()),
        ("source", "stallwatch"),
    ]
    .into_iter()
    .chain(incident.scope.labels())
    .map(|(k, v)| (k.to_owned(), json!(v)))
    .collect()
}

fn alert(incident: &Incident, severity: Severity, starts: u64, ends: u64, o: &Options) -> Value {
    let description: Vec<String> =
        incident.evidence.iter().map(|e| format!("[{}] {}", e.method.as_str(), e.text)).collect();
    let mut annotations = serde_json::Map::new();
    annotations.insert("summary".into(), json!(incident.summary));
    annotations.insert("description".into(), json!(description.join("\n")));
    annotations
        .insert("runbook_url".into(), json!(runbook_url(&o.runbook_template, incident.alert)));
    annotations.insert("incident_id".into(), json!(incident.id.to_string()));
    annotations.insert("opened_at".into(), json!(rfc3339(incident.opened_unix_ms)));
    if let Some(r) = &incident.resolution {
        annotations.insert("resolution".into(), json!(r));
    }
    let mut alert = json!({
        "labels": labels(incident, severity),
        "annotations": annotations,
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
    });
    if let Some(url) = &o.external_url {
        alert["generatorURL"] = json!(format!("{}/api/v1/alerts", url.trim_end_matches('/')));
    }
    alert
}

/// Every alert to send at `now`: the open incidents, and label sets resolved within the last
/// `ends_at_after_ms`.
pub fn alerts(incidents: &Incidents, now: u64, o: &Options) -> Vec<Value> {
    let mut out = Vec::new();
    for incident in incidents.all.values() {
        if incident.is_open() {
            let starts = incident.severity_since_unix_ms;
            out.push(alert(incident, incident.severity, starts, now + o.ends_at_after_ms, o));
        }
        for r in &incident.retired {
            // The same label set firing again is the open alert above, not a resolution.
            let again = incident.is_open() && r.severity == incident.severity;
            if !again && now.saturating_sub(r.until_unix_ms) <= o.ends_at_after_ms {
                out.push(alert(incident, r.severity, r.since_unix_ms, r.until_unix_ms, o));
            }
        }
    }
    out
}
