//! Delivery: what a message says ([`Message`]), the payload each receiver takes (one file per
//! format, all pure functions of the message, `now` and the secret, checked by golden files),
//! and the loops that send them (`delivery.rs`).
//!
//! - Alertmanager (`alertmanager.rs`): every open incident is an alert, re-sent every
//!   `resend_every` with `endsAt` ahead; a severity the incident left, or its resolution, is
//!   sent with `endsAt` at that moment. Alertmanager does grouping, routing, inhibition and
//!   silences.
//! - Webhooks (`generic.rs`, `slack.rs`, `feishu.rs`, `dingtalk.rs`, `wecom.rs`): one message
//!   when an incident opens, changes severity or resolves; retried with backoff; what each
//!   receiver was told is kept in the state file, so a restart does not send it again.

pub mod alertmanager;
pub mod delivery;
pub mod dingtalk;
pub mod feishu;
pub mod generic;
pub mod slack;
pub mod wecom;

#[cfg(test)]
mod tests;

use ring::hmac;

use super::config::WebhookFormat;
use super::incidents::{Change, Incident, Scope, Status};
use super::timestamps::readable;
use super::{Alert, Evidence, Severity};

/// One notification: an incident at one change, as a receiver should hear it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Incident id.
    pub id: u64,
    /// What changed since the receiver last heard (opened, escalated, lowered, resolved).
    pub change: Change,
    /// The alert.
    pub alert: Alert,
    /// Severity now (for a resolution, the last one).
    pub severity: Severity,
    /// The severity the receiver last heard, if any.
    pub previous: Option<Severity>,
    /// What it is about.
    pub scope: Scope,
    /// One line.
    pub summary: String,
    /// The evidence, most severe first.
    pub evidence: Vec<Evidence>,
    /// Opened, unix ms.
    pub opened_unix_ms: u64,
    /// Resolved, unix ms.
    pub resolved_unix_ms: Option<u64>,
    /// Why it resolved.
    pub resolution: Option<String>,
    /// The runbook link.
    pub runbook_url: String,
}

/// The runbook link of `alert` from the template (`{runbook}` replaced).
pub fn runbook_url(template: &str, alert: Alert) -> String {
    template.replace("{runbook}", alert.runbook())
}

impl Message {
    /// The message for `incident`, to a receiver that last heard `previous` (`None`: never).
    pub fn of(incident: &Incident, previous: Option<Severity>, runbook_template: &str) -> Self {
        let change = match (incident.status, previous) {
            (Status::Resolved, _) => Change::Resolved,
            (Status::Open, None) => Change::Opened,
            (Status::Open, Some(p)) if incident.severity > p => Change::Escalated,
            (Status::Open, Some(_)) => Change::Deescalated,
        };
        Message {
            id: incident.id,
            change,
            alert: incident.alert,
            severity: incident.severity,
            previous,
            scope: incident.scope.clone(),
            summary: incident.summary.clone(),
            evidence: incident.evidence.clone(),
            opened_unix_ms: incident.opened_unix_ms,
            resolved_unix_ms: incident.resolved_unix_ms,
            resolution: incident.resolution.clone(),
            runbook_url: runbook_url(runbook_template, incident.alert),
        }
    }

    /// Whether it is a resolution.
    pub fn resolved(&self) -> bool {
        self.change == Change::Resolved
    }

    /// `[P1] viewers stalling: sea/4g/udp -> relay-1` or `[RESOLVED P1] ...`.
    pub fn headline(&self) -> String {
        let tag = match self.change {
            Change::Resolved => format!("RESOLVED {}", self.severity),
            Change::Escalated => {
                format!("{} (was {})", self.severity, self.previous.map_or("-", |p| p.as_str()))
            }
            Change::Deescalated => format!(
                "{} (lowered from {})",
                self.severity,
                self.previous.map_or("-", |p| p.as_str())
            ),
            Change::Opened => self.severity.to_string(),
        };
        format!("[{tag}] {}: {}", self.alert.title(), self.scope.describe())
    }

    /// `Since 2026-11-01 20:14 UTC (12 min)` or `From ... to ... (12 min)`.
    pub fn since(&self, now_unix_ms: u64) -> String {
        let end = self.resolved_unix_ms.unwrap_or(now_unix_ms);
        let minutes = end.saturating_sub(self.opened_unix_ms) / 60_000;
        match self.resolved_unix_ms {
            Some(r) => {
                format!("from {} to {} ({minutes} min)", readable(self.opened_unix_ms), readable(r))
            }
            None => format!("since {} ({minutes} min)", readable(self.opened_unix_ms)),
        }
    }

    /// The scope as `key value` pairs for people.
    pub fn scope_text(&self) -> String {
        let labels = self.scope.labels();
        if labels.is_empty() {
            return "the fleet".into();
        }
        labels
            .iter()
            .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The lines of the body, shared by every chat format (each escapes and decorates them).
    pub fn lines(&self, now_unix_ms: u64) -> Vec<(String, String)> {
        let mut lines = vec![
            ("Severity".to_owned(), self.severity_text()),
            ("Alert".to_owned(), self.alert.name().to_owned()),
            ("Cohort".to_owned(), self.scope_text()),
            ("When".to_owned(), self.since(now_unix_ms)),
        ];
        if let Some(r) = &self.resolution {
            lines.push(("Resolved".to_owned(), r.clone()));
        }
        for e in &self.evidence {
            lines.push(("Evidence".to_owned(), format!("[{}] {}", e.method.as_str(), e.text)));
        }
        lines
    }

    fn severity_text(&self) -> String {
        let meaning = match self.severity {
            Severity::P0 => "the whole service",
            Severity::P1 => "part of the service beyond its SLO",
            Severity::P2 => "early warning",
            Severity::None => "no impact",
        };
        format!("{} ({meaning})", self.severity)
    }
}

/// An HTTP request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The URL (with query parameters a format adds).
    pub url: String,
    /// Extra headers (`Content-Type: application/json` is always sent).
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The request for a webhook of `format` at `url`, signed with `secret` where the format
/// signs, at `now_unix_ms`.
pub fn webhook_request(
    format: WebhookFormat,
    url: &str,
    secret: Option<&str>,
    message: &Message,
    now_unix_ms: u64,
) -> Request {
    match format {
        WebhookFormat::Generic => generic::request(url, secret.unwrap_or(""), message, now_unix_ms),
        WebhookFormat::Slack => slack::request(url, message, now_unix_ms),
        WebhookFormat::Feishu => feishu::request(url, secret, message, now_unix_ms),
        WebhookFormat::Dingtalk => dingtalk::request(url, secret, message, now_unix_ms),
        WebhookFormat::Wecom => wecom::request(url, message, now_unix_ms),
    }
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message).as_ref().to_vec()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mark = " [...]";
    let mut end = max.saturating_sub(mark.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{mark}", &text[..end])
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! The message the golden files are made from.
    use super::*;
    use crate::alerts::{Method, Signal};

    /// 2026-11-01T20:14:05Z.
    pub const NOW: u64 = 1_793_564_045_000;

    /// A P1 stall incident that escalated from a P2, opened 12 minutes before [`NOW`].
    pub fn message() -> Message {
        Message {
            id: 42,
            change: Change::Escalated,
            alert: Alert::Stalls,
            severity: Severity::P1,
            previous: Some(Severity::P2),
            scope: Scope {
                region: "sea".into(),
                network_type: "4g".into(),
                transport: "udp".into(),
                target: "relay-sg-1".into(),
                ..Scope::default()
            },
            summary: "P1 StallwatchStalls sea/4g/udp -> relay-sg-1: stall ratio 1.42 %".into(),
            evidence: vec![
                Evidence {
                    method: Method::Threshold,
                    signal: Some(Signal::StallRatio),
                    severity: Severity::P1,
                    value: 0.0142,
                    limit: 0.01,
                    window: "2 of the last 3 minutes".into(),
                    text: "stall ratio 1.42 % (worst 1.61 %) against 1.00 % in 3 of the last 3 \
                           judged minutes (fires at 2 of 3, clears below 0.80 %)"
                        .into(),
                },
                Evidence {
                    method: Method::Trend,
                    signal: Some(Signal::StallRatio),
                    severity: Severity::P2,
                    value: 0.0142,
                    limit: 0.01,
                    window: "30m".into(),
                    text: "stall ratio 1.42 % and rising 0.05 % per minute over the last 30m <&>"
                        .into(),
                },
            ],
            opened_unix_ms: NOW - 12 * 60_000,
            resolved_unix_ms: None,
            resolution: None,
            runbook_url: "https://runbooks.example/stalls.md".into(),
        }
    }

    /// The same incident, resolved at [`NOW`].
    pub fn resolved() -> Message {
        Message {
            change: Change::Resolved,
            previous: Some(Severity::P1),
            resolved_unix_ms: Some(NOW),
            resolution: Some("clear".into()),
            ..message()
        }
    }
}
