//! Slack incoming webhooks (Block Kit): `text` is the notification fallback; `blocks` hold a
//! `header` (plain text, at most 150 characters), a `section` in `mrkdwn` (at most 3000
//! characters) and a `context` with the runbook link. `&`, `<` and `>` are escaped as Slack
//! asks, so measured text can never mention a channel.

use serde_json::json;

use super::{Message, Request, truncate};

/// Slack's limit on a header block's text, characters.
pub const HEADER_MAX: usize = 150;
/// Slack's limit on a section block's text, characters.
pub const SECTION_MAX: usize = 3000;

/// Escapes text for Slack's `mrkdwn` and plain text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The body.
pub fn body(m: &Message, now_unix_ms: u64) -> serde_json::Value {
    let emoji = if m.resolved() {
        ":white_check_mark:"
    } else {
        match m.severity {
            crate::alerts::Severity::P0 => ":rotating_light:",
            crate::alerts::Severity::P1 => ":red_circle:",
            _ => ":large_orange_circle:",
        }
    };
    let headline = m.headline();
    let details: Vec<String> = m
        .lines(now_unix_ms)
        .into_iter()
        .map(|(k, v)| format!("*{}:* {}", escape(&k), escape(&v)))
        .collect();
    json!({
        "text": escape(&headline),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": truncate(&format!("{emoji} {headline}"), HEADER_MAX), "emoji": true},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&details.join("\n"), SECTION_MAX)},
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": format!("<{}|Runbook> · incident #{}", escape(&m.runbook_url), m.id)}],
            },
        ],
    })
}

/// The request.
pub fn request(url: &str, m: &Message, now_unix_ms: u64) -> Request {
    Request {
        url: url.to_owned(),
        headers: Vec::new(),
        body: serde_json::to_vec_pretty(&body(m, now_unix_ms)).unwrap_or_default(),
    }
}
