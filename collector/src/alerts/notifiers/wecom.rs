//! WeCom (WeChat Work) group robots: a `markdown` message (`msgtype: "markdown"`,
//! `markdown.content`, at most 4096 bytes of UTF-8). The robot's key is in its URL; there is
//! no signature. Severity is coloured with WeCom's `<font color="warning">`.

use serde_json::json;

use super::{Message, Request, truncate};

/// WeCom's limit on `markdown.content`, bytes.
pub const CONTENT_MAX: usize = 4096;

/// The Markdown content.
pub fn content(m: &Message, now_unix_ms: u64) -> String {
    let colour = if m.resolved() { "info" } else { "warning" };
    let mut out = format!("### <font color=\"{colour}\">{}</font>\n", m.headline());
    for (k, v) in m.lines(now_unix_ms) {
        out.push_str(&format!("> **{k}:** {v}\n"));
    }
    out.push_str(&format!("[Runbook]({})", m.runbook_url));
    truncate(&out, CONTENT_MAX)
}

/// The body.
pub fn body(m: &Message, now_unix_ms: u64) -> serde_json::Value {
    json!({"msgtype": "markdown", "markdown": {"content": content(m, now_unix_ms)}})
}

/// The request.
pub fn request(url: &str, m: &Message, now_unix_ms: u64) -> Request {
    Request {
        url: url.to_owned(),
        headers: Vec::new(),
        body: serde_json::to_vec_pretty(&body(m, now_unix_ms)).unwrap_or_default(),
    }
}
