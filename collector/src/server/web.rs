//! The metrics listener: `/metrics` for Prometheus, the fleet view (`/api/v1/agents` and an
//! HTML page), the alerts (`/api/v1/alerts`), regional reports (`/api/v1/reports/{region}`)
//! and `/-/reload` for people.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::{Shared, json_response};
use crate::clock;
use crate::reports::render::escape_html as escape;
use crate::series::negotiate;

/// An agent is stale (it stopped reporting) after this many of its report intervals.
pub const STALE_AFTER_INTERVALS: u64 = 3;

/// `GET /metrics`: OpenMetrics or Prometheus text, or protobuf with native histograms,
/// as the scraper's `Accept` asks.
pub async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let format = negotiate(accept.as_deref());
    let series = shared.series.clone();
    let telemetry = shared.telemetry.clone();
    let alerts = shared.alerts.clone();
    // Rendering 50k series takes a good fraction of a second: keep it off the async workers.
    let render = move || {
        let mut body = series.render(format, &telemetry);
        if let Some(alerts) = alerts {
            alerts.append_metrics(format, &mut body);
        }
        body
    };
    match tokio::task::spawn_blocking(render).await {
        Ok(body) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()))], body)
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// One row of the fleet view.
#[derive(Debug, Serialize)]
pub struct AgentView {
    #[serde(flatten)]
    agent: crate::store::AgentFacts,
    /// Seconds since its latest report arrived.
    age_seconds: u64,
    /// It missed [`STALE_AFTER_INTERVALS`] report intervals.
    stale: bool,
}

fn fleet(shared: &Shared) -> Vec<AgentView> {
    let now = clock::unix_ms();
    let live = shared.live();
    let agents: Vec<_> = shared.series.read().agents().values().cloned().collect();
    agents
        .into_iter()
        .map(|agent| {
            let selector = crate::config::AgentSelector {
                name: agent.name.clone(),
                region: agent.region.clone(),
                network_type: agent.network_type.clone(),
            };
            let interval = live.config.plan_for(&selector, live.revision).report_interval;
            let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
            let age_ms = now.saturating_sub(agent.last_report_unix_ms);
            AgentView {
                stale: age_ms > interval_ms.saturating_mul(STALE_AFTER_INTERVALS),
                age_seconds: age_ms / 1000,
                agent,
            }
        })
        .collect()
}

/// `GET /api/v1/agents`.
pub async fn agents(State(shared): State<Arc<Shared>>) -> Response {
    let agents = fleet(&shared);
    let stale = agents.iter().filter(|a| a.stale).count();
    json_response(
        StatusCode::OK,
        &json!({
            "plans_revision": shared.live().revision,
            "agents": agents,
            "stale": stale,
        }),
    )
}

/// `GET /api/v1/alerts`: open and recent incidents (`docs/alerts.md`).
pub async fn alerts(State(shared): State<Arc<Shared>>) -> Response {
    let body = match &shared.alerts {
        Some(alerts) => alerts.api(clock::unix_ms()),
        None => json!({"enabled": false, "open": [], "recent": []}),
    };
    json_response(StatusCode::OK, &body)
}

/// `GET /`: the fleet page, plain HTML with no scripts or external assets.
pub async fn fleet_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    let agents = fleet(&shared);
    let revision = shared.live().revision;
    let stale = agents.iter().filter(|a| a.stale).count();
    let mut page = String::with_capacity(4096 + agents.len() * 400);
    page.push_str(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\"><title>stallwatch fleet</title><style>\
         body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
         th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}\
         td.n{text-align:right}tr.stale{background:#fde2e1;color:#8a1c14;font-weight:600}\
         </style></head><body><h1>stallwatch fleet</h1>",
    );
    let regions = &shared.live().config.labels.regions;
    page.push_str("<p>Regional reports (last 7 days):");
    for region in regions {
        let region = escape(region);
        let _ = write!(
            page,
            " <a href=\"/api/v1/reports/{region}?period=7d&amp;format=html\">{region}</a>"
        );
    }
    page.push_str(
        " · <a href=\"/api/v1/reports/REGION?period=7d&amp;format=md&amp;lang=zh\">\
                   also md, csv, json; lang=zh</a></p>",
    );
    let _ = write!(
        page,
        "<p>{} agents, <strong>{stale} stale</strong> (no report for {STALE_AFTER_INTERVALS} \
         report intervals). Plans revision {revision}. <a href=\"/metrics\">/metrics</a> \
         · <a href=\"/api/v1/agents\">JSON</a></p>",
        agents.len()
    );
    page.push_str(
        "<table><thead><tr><th>agent</th><th>region</th><th>network type</th><th>version</th>\
         <th>plan revision</th><th>last report</th><th>spool depth</th><th>reports</th>\
         <th>state</th></tr></thead><tbody>",
    );
    for a in &agents {
        let _ = write!(
            page,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td>{} s ago</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            if a.stale { "stale" } else { "ok" },
            escape(&a.agent.name),
            escape(&a.agent.region),
            escape(&a.agent.network_type),
            escape(&a.agent.version),
            a.agent.plan_revision,
            a.age_seconds,
            a.agent.spool_depth,
            a.agent.reports,
            if a.stale { "STALE" } else { "reporting" },
        );
    }
    page.push_str("</tbody></table></body></html>\n");
    Html(page)
}

/// Query of `GET /api/v1/reports/{region}`.
#[derive(Debug, serde::Deserialize)]
pub struct ReportQuery {
    /// Length ending at the last whole hour (`7d`); default 7d.
    period: Option<String>,
    /// Start (RFC 3339 or a date); with `to`.
    from: Option<String>,
    /// End; with `from`.
    to: Option<String>,
    /// `html` (default), `md`, `csv` or `json`.
    format: Option<String>,
    /// `en` (default) or `zh`.
    lang: Option<String>,
}

/// `GET /api/v1/reports/{region}?period=7d&format=html&lang=en`: a regional report from the
/// history store (`docs/reports.md`).
pub async fn report(
    State(shared): State<Arc<Shared>>,
    Path(region): Path<String>,
    Query(query): Query<ReportQuery>,
) -> Response {
    use crate::reports::cli::{FailureKind, PeriodSpec, report_from_config};
    let bad = |detail: String| {
        json_response(StatusCode::BAD_REQUEST, &json!({"error": "bad-request", "detail": detail}))
    };
    let format = match query.format.as_deref().unwrap_or("html").parse::<crate::reports::Format>() {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let lang = match query.lang.as_deref().unwrap_or("en").parse::<crate::reports::Lang>() {
        Ok(l) => l,
        Err(e) => return bad(e),
    };
    let period = match (query.from, query.to, query.period) {
        (Some(from), Some(to), None) => PeriodSpec::Between(from, to),
        (None, None, period) => {
            match stallwatch_proto::duration::parse_duration(period.as_deref().unwrap_or("7d")) {
                Ok(d) => PeriodSpec::Last(d),
                Err(e) => return bad(format!("period: {e}")),
            }
        }
        _ => return bad("give either period, or both from and to".into()),
    };
    let live = shared.live();
    // Reading history and rendering take a while: keep them off the async workers.
    let made = tokio::task::spawn_blocking(move || {
        report_from_config(&live.config, &region, &period, lang, clock::unix_ms())
            .map(|r| crate::reports::render(&r, format))
    })
    .await;
    match made {
        Ok(Ok(body)) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()))], body)
                .into_response()
        }
        Ok(Err(failure)) => {
            let (status, code) = match failure.kind {
                FailureKind::NotFound => (StatusCode::NOT_FOUND, "unknown-region"),
                FailureKind::BadRequest => (StatusCode::BAD_REQUEST, "bad-request"),
                FailureKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "report-failed"),
            };
            json_response(status, &json!({"error": code, "detail": failure.message}))
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `POST /-/reload`.
pub async fn reload(State(shared): State<Arc<Shared>>) -> Response {
    match shared.reload() {
        Ok(revision) => json_response(
            StatusCode::OK,
            &json!({"result": "reloaded", "plans_revision": revision}),
        ),
        Err(detail) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid-config", "detail": detail}),
        ),
    }
}

/// `GET /-/healthy`.
pub async fn healthy() -> &'static str {
    "ok\n"
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
