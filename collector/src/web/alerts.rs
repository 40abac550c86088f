//! The alerts page (`/alerts`): open and recently resolved incidents from the alert
//! evaluator's state, as `/api/v1/alerts` serves them (`AlertsHandle::api`), with severity,
//! cohort, evidence, since when, and the runbook.

use std::fmt::Write as _;

use serde_json::Value;

use super::layout::{Page, age, escape, page};

/// The watchdog's alertname: it always fires, so it is shown apart.
const WATCHDOG: &str = "StallwatchWatchdog";

/// The alerts page from `/api/v1/alerts`'s answer `api` at `now_ms`.
pub fn render(api: &Value, now_ms: u64) -> String {
    let mut body = String::with_capacity(8192);
    body.push_str("<h1>Alerts</h1>");
    if api["enabled"] == Value::Bool(false) {
        body.push_str("<p>The alert evaluator is off (<code>[alerts] enabled = false</code>).</p>");
        return page(Page::Alerts, "Alerts", Some(30), &body);
    }
    let list = |key: &str| api[key].as_array().cloned().unwrap_or_default();
    let (watchdog, open): (Vec<Value>, Vec<Value>) =
        list("open").into_iter().partition(|i| i["alertname"] == WATCHDOG);
    let recent = list("recent");
    let count = |sev: &str| open.iter().filter(|i| i["severity"] == sev).count();
    let _ = write!(
        body,
        "<div><span class=\"stat\">open<b class=\"{}\">{}</b></span>\
         <span class=\"stat\">P0<b>{}</b></span><span class=\"stat\">P1<b>{}</b></span>\
         <span class=\"stat\">P2<b>{}</b></span><span class=\"stat\">resolved, 24 h<b>{}</b></span></div>",
        if open.is_empty() { "" } else { "over" },
        open.len(),
        count("P0"),
        count("P1"),
        count("P2"),
        recent.len()
    );
    let evaluated = api["evaluated_at"].as_str().unwrap_or("not yet");
    let _ = write!(body, "<p class=\"muted\">Last evaluation: {}", escape(evaluated));
    if let Some(e) = api["last_error"].as_str() {
        let _ = write!(body, " · <span class=\"over\">failing: {}</span>", escape(e));
    }
    match watchdog.first() {
        Some(w) => {
            let since = w["opened_unix_ms"].as_u64().unwrap_or(now_ms);
            let _ = write!(
                body,
                " · the watchdog has fired for {} (it always fires: receivers that stop \
                 hearing it have lost the alert path)",
                age(now_ms.saturating_sub(since) / 1000)
            );
        }
        None => body.push_str(" · the watchdog is not firing"),
    }
    body.push_str(". The page refreshes every 30 s.</p>");

    body.push_str("<h2>Open</h2>");
    if open.is_empty() {
        body.push_str("<p>No open incident.</p>");
    } else {
        incidents_table(&mut body, &open, now_ms, false);
    }
    body.push_str("<h2>Resolved in the last 24 h</h2>");
    if recent.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        incidents_table(&mut body, &recent, now_ms, true);
    }
    let insufficient = list("insufficient_data");
    if !insufficient.is_empty() {
        body.push_str(
            "<h2>Too little data to judge</h2><p class=\"muted\">Cohorts whose last minutes \
             had too few probes for these signals: they neither fire nor count as healthy.</p><ul>",
        );
        for c in &insufficient {
            let signals: Vec<&str> =
                c["signals"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let _ = write!(body, "<li>{}: {}</li>", escape(&scope(c)), escape(&signals.join(", ")));
        }
        body.push_str("</ul>");
    }
    page(Page::Alerts, "Alerts", Some(30), &body)
}

/// `sea/4g/udp (nack) -> relay-1`, `agent sea-4g-1`, or `fleet`, from an incident's labels.
fn scope(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let parts: Vec<String> = ["region", "network_type", "transport"]
        .iter()
        .map(|k| s(k))
        .filter(|p| !p.is_empty())
        .collect();
    let mut out = parts.join("/");
    if !s("repair").is_empty() {
        out = format!("{out} ({})", s("repair"));
    }
    if !s("target").is_empty() {
        out = format!("{out} -> {}", s("target")).trim().to_owned();
    }
    if !s("agent").is_empty() {
        out = format!("agent {} {out}", s("agent")).trim().to_owned();
    }
    if out.is_empty() { "fleet".into() } else { out }
}

/// Only links that stay links: `http(s)://` or a path, never `javascript:` and the like.
fn safe_link(url: &str) -> Option<&str> {
    (url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/'))
        .then_some(url)
}

fn incidents_table(body: &mut String, incidents: &[Value], now_ms: u64, resolved: bool) {
    body.push_str(
        "<table><thead><tr><th>severity</th><th>alert</th><th>cohort</th><th>evidence</th>\
         <th>since</th>",
    );
    body.push_str(if resolved { "<th>resolved</th>" } else { "<th>severity since</th>" });
    body.push_str("<th>runbook</th></tr></thead><tbody>");
    for i in incidents {
        let severity = i["severity"].as_str().unwrap_or("none");
        let class = if matches!(severity, "P0" | "P1" | "P2") { severity } else { "none" };
        let peak = i["peak"].as_str().filter(|p| *p != severity);
        let _ = write!(body, "<tr><td><span class=\"badge {class}\">{}</span>", escape(severity));
        if let Some(peak) = peak {
            let _ = write!(body, " <span class=\"muted\">peak {}</span>", escape(peak));
        }
        let _ = write!(
            body,
            "</td><td><strong>{}</strong><br><span class=\"muted\">{}</span></td><td>{}</td><td><ul class=\"ev\">",
            escape(i["alertname"].as_str().unwrap_or("")),
            escape(i["summary"].as_str().unwrap_or("")),
            escape(&scope(&i["scope"]))
        );
        for e in i["evidence"].as_array().into_iter().flatten() {
            let _ = write!(body, "<li>{}</li>", escape(e["text"].as_str().unwrap_or("")));
        }
        let opened = i["opened_unix_ms"].as_u64().unwrap_or(now_ms);
        let _ = write!(
            body,
            "</ul></td><td>{}<br><span class=\"muted\">{} ago</span></td>",
            escape(i["opened_at"].as_str().unwrap_or("")),
            age(now_ms.saturating_sub(opened) / 1000)
        );
        if resolved {
            let _ = write!(
                body,
                "<td>{}<br><span class=\"muted\">{}</span></td>",
                escape(i["resolved_at"].as_str().unwrap_or("")),
                escape(i["resolution"].as_str().unwrap_or(""))
            );
        } else {
            let since = i["severity_since_unix_ms"].as_u64().unwrap_or(opened);
            let _ = write!(body, "<td>{} ago</td>", age(now_ms.saturating_sub(since) / 1000));
        }
        match i["runbook_url"].as_str().and_then(safe_link) {
            Some(url) => {
                let _ = write!(body, "<td><a href=\"{}\">runbook</a></td></tr>", escape(url));
            }
            None => body.push_str("<td>–</td></tr>"),
        }
    }
    body.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn open_and_resolved_incidents_show_severity_cohort_evidence_and_runbook() {
        let now = 10_000_000;
        let api = json!({
            "enabled": true, "evaluated_at": "2026-12-06T23:00:00Z",
            "open": [
                {"alertname": "StallwatchWatchdog", "severity": "none", "opened_unix_ms": now - 3_600_000},
                {"alert": "stalls", "alertname": "StallwatchStalls", "severity": "P1", "peak": "P1",
                 "scope": {"region": "sea", "network_type": "4g", "transport": "udp", "target": "<r>"},
                 "summary": "stalls", "evidence": [{"text": "stall ratio 2.10 % > 1.00 %"}],
                 "opened_unix_ms": now - 600_000, "opened_at": "2026-12-06T22:50:00Z",
                 "severity_since_unix_ms": now - 120_000,
                 "runbook_url": "https://example.net/runbooks/stalls.md"},
            ],
            "recent": [
                {"alert": "loss", "alertname": "StallwatchLoss", "severity": "P2", "peak": "P1",
                 "scope": {"agent": "sea-4g-1", "region": "sea", "network_type": "4g"},
                 "evidence": [], "opened_unix_ms": now - 7_200_000,
                 "resolved_at": "2026-12-06T22:00:00Z", "resolution": "clear",
                 "runbook_url": "javascript:alert(1)"},
            ],
            "insufficient_data": [{"region": "latam", "network_type": "wifi", "transport": "udp",
                                   "target": "relay", "signals": ["jitter_p95"]}],
        });
        let html = render(&api, now);
        assert!(html.contains("<span class=\"badge P1\">P1</span>"));
        assert!(html.contains("sea/4g/udp -&gt; &lt;r&gt;"), "scope escaped");
        assert!(html.contains("stall ratio 2.10 % &gt; 1.00 %"));
        assert!(html.contains("href=\"https://example.net/runbooks/stalls.md\""));
        assert!(html.contains("10 min ago") && html.contains("2 min ago"));
        assert!(html.contains("peak P1") && html.contains("clear"));
        assert!(!html.contains("javascript:"), "unsafe links are dropped");
        assert!(html.contains("watchdog has fired for 1 h 0 min"));
        assert!(html.contains("latam/wifi/udp -&gt; relay: jitter_p95"));
        let open = html.find("<h2>Open</h2>").unwrap();
        let resolved = html.find("Resolved in the last 24 h").unwrap();
        let p1 = html.find("StallwatchStalls").unwrap();
        assert!(open < p1 && p1 < resolved);
    }

    #[test]
    fn no_alerts_says_so() {
        let html = render(&json!({"enabled": false, "open": [], "recent": []}), 0);
        assert!(html.contains("alert evaluator is off"));
        let html = render(&json!({"enabled": true, "open": [], "recent": []}), 0);
        assert!(html.contains("No open incident.") && html.contains("watchdog is not firing"));
    }
}
