//! Feishu/Lark custom bots: a rich-text `post` message (`msg_type: "post"`, a title and lines
//! of `text` and `a` elements). With the bot's "signature" security setting, the body carries
//! `timestamp` (unix seconds, as a string) and `sign`: Base64 of HMAC-SHA256 keyed with
//! `timestamp + "\n" + secret` over an empty message. Bodies are capped at 20 KB.

use base64::Engine as _;
use serde_json::json;

use super::{Message, Request, hmac_sha256, truncate};

/// Feishu's limit on a request body, bytes.
pub const BODY_MAX: usize = 20 * 1024;

/// The `sign` field for `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: u64) -> String {
    let key = format!("{timestamp}\n{secret}");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key.as_bytes(), b""))
}

/// The body.
pub fn body(m: &Message, secret: Option<&str>, now_unix_ms: u64) -> serde_json::Value {
    // Evidence lines are cut so the whole body stays well under the cap.
    let budget = BODY_MAX / 2 / (m.evidence.len() + 4);
    let mut content: Vec<serde_json::Value> = m
        .lines(now_unix_ms)
        .into_iter()
        .map(|(k, v)| json!([{"tag": "text", "text": truncate(&format!("{k}: {v}"), budget.max(200))}]))
        .collect();
    content.push(json!([{"tag": "a", "text": "Runbook", "href": m.runbook_url}]));
    let mut body = json!({
        "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": m.headline(), "content": content}}},
    });
    if let Some(secret) = secret {
        let timestamp = now_unix_ms / 1000;
        body["timestamp"] = json!(timestamp.to_string());
        body["sign"] = json!(sign(secret, timestamp));
    }
    body
}

/// The request.
pub fn request(url: &str, secret: Option<&str>, m: &Message, now_unix_ms: u64) -> Request {
    Request {
        url: url.to_owned(),
        headers: Vec::new(),
        body: serde_json::to_vec_pretty(&body(m, secret, now_unix_ms)).unwrap_or_default(),
    }
}
