//! DingTalk custom robots: a `markdown` message (`msgtype: "markdown"`, `title` and `text`).
//! With the robot's "signature" security setting (加签), the URL carries `timestamp` (unix
//! milliseconds) and `sign`: Base64 of HMAC-SHA256 keyed with the secret over
//! `timestamp + "\n" + secret`, URL-encoded. A robot set to keyword security needs its keyword
//! in the text: every message contains "stallwatch" (in the alert name).

use base64::Engine as _;
use serde_json::json;

use super::{Message, Request, hmac_sha256};

/// The `sign` parameter (before URL encoding) for `timestamp` (unix ms).
pub fn sign(secret: &str, timestamp_ms: u64) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), to_sign.as_bytes()))
}

/// The Markdown text.
pub fn text(m: &Message, now_unix_ms: u64) -> String {
    let mut out = format!("#### {}\n\n", m.headline());
    for (k, v) in m.lines(now_unix_ms) {
        out.push_str(&format!("- **{k}:** {v}\n"));
    }
    out.push_str(&format!("\n[Runbook]({})\n", m.runbook_url));
    out
}

/// The body.
pub fn body(m: &Message, now_unix_ms: u64) -> serde_json::Value {
    json!({
        "msgtype": "markdown",
        "markdown": {"title": m.headline(), "text": text(m, now_unix_ms)},
    })
}

/// The request: the URL gains `timestamp` and `sign` when a secret is set.
pub fn request(url: &str, secret: Option<&str>, m: &Message, now_unix_ms: u64) -> Request {
    let url = match (secret, url.parse::<reqwest::Url>()) {
        (Some(secret), Ok(mut parsed)) => {
            parsed
                .query_pairs_mut()
                .append_pair("timestamp", &now_unix_ms.to_string())
                .append_pair("sign", &sign(secret, now_unix_ms));
            parsed.to_string()
        }
        _ => url.to_owned(),
    };
    Request {
        url,
        headers: Vec::new(),
        body: serde_json::to_vec_pretty(&body(m, now_unix_ms)).unwrap_or_default(),
    }
}
