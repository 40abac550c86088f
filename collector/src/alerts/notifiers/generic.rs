//! The generic webhook: stallwatch's own JSON, signed so the receiver can check it came from
//! this collector and was not replayed.
//!
//! Headers: `X-Stallwatch-Timestamp: <unix seconds>` and
//! `X-Stallwatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. A receiver
//! recomputes the HMAC over the timestamp, a dot and the raw body, compares in constant time,
//! and refuses timestamps more than a few minutes old (`docs/alerts.md` has an example).

use serde_json::json;

use super::{Message, Request, hex, hmac_sha256};
use crate::alerts::timestamps::rfc3339;

/// Payload version.
pub const VERSION: u32 = 1;

/// The body (before signing).
pub fn body(m: &Message, now_unix_ms: u64) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = [
        ("alertname", m.alert.name()),
        ("severity", m.severity.as_str()),
        ("service", m.alert.service()),
    ]
    .into_iter()
    .chain(m.scope.labels())
    .map(|(k, v)| (k.to_owned(), json!(v)))
    .collect();
    json!({
        "version": VERSION,
        "source": "stallwatch",
        "status": if m.resolved() { "resolved" } else { "firing" },
        "change": m.change,
        "incident": {
            "id": m.id,
            "alertname": m.alert.name(),
            "title": m.alert.title(),
            "severity": m.severity,
            "previous_severity": m.previous,
            "service": m.alert.service(),
            "labels": labels,
            "summary": m.summary,
            "evidence": m.evidence,
            "opened_at": rfc3339(m.opened_unix_ms),
            "resolved_at": m.resolved_unix_ms.map(rfc3339),
            "resolution": m.resolution,
            "runbook_url": m.runbook_url,
        },
        "sent_at": rfc3339(now_unix_ms),
    })
}

/// The signature header's value for `body` sent at `timestamp` (unix seconds).
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), &signed)))
}

/// The request.
pub fn request(url: &str, secret: &str, m: &Message, now_unix_ms: u64) -> Request {
    let body = serde_json::to_vec_pretty(&body(m, now_unix_ms)).unwrap_or_default();
    let timestamp = now_unix_ms / 1000;
    Request {
        url: url.to_owned(),
        headers: vec![
            ("X-Stallwatch-Timestamp".into(), timestamp.to_string()),
            ("X-Stallwatch-Signature".into(), signature(secret, timestamp, &body)),
        ],
        body,
    }
}
