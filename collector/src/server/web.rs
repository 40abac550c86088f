//! The web listener (`listen.metrics`, plain HTTP): `/metrics` for Prometheus, the web UI
//! (`/`, `/cohorts`, `/alerts`, `/reports`), the API (`/api/v1/agents`, `/api/v1/alerts`,
//! `/api/v1/reports/{region}`) and `/-/reload`. Thin handlers: they gather data, the pages
//! are rendered by `crate::web`, and every request passes `web::access` first.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tracing::warn;

use super::{Shared, json_response};
use crate::clock;
use crate::config::Config;
use crate::series::negotiate;
use crate::store::{CohortFilter, HistoryStore, Resolution, SqliteStore};
use crate::web::access::{Policy, RenderGate, exposure_warning};
use crate::web::fleet::AgentView;
use crate::web::{alerts as alerts_page, cohorts, fleet, layout, reports as reports_page};

/// How long a render waits for its turn before the answer is 503.
const RENDER_WAIT: Duration = Duration::from_secs(10);

/// Shortest bearer token accepted from `[web] token_file`.
const MIN_TOKEN_CHARS: usize = 16;

/// What the web handlers share.
pub struct Web {
    shared: Arc<Shared>,
    policy: Policy,
    renders: RenderGate,
}

/// The web listener's routes for `config`: reads the token file, and warns when the
/// listener is reachable from other hosts without one. `Err` names the field and the problem.
pub fn routes(shared: Arc<Shared>, config: &Config) -> Result<Router, (&'static str, String)> {
    let token = match &config.web.token_file {
        Some(path) => Some(read_token(path).map_err(|e| ("web.token_file", e))?),
        None => None,
    };
    let policy = Policy::new(&config.web.allowed_hosts, token.as_deref());
    if let Some(warning) = exposure_warning(config.listen.metrics, &policy) {
        warn!("{warning}");
    }
    let web = Arc::new(Web {
        shared,
        policy,
        renders: RenderGate::new(config.web.max_concurrent_renders, RENDER_WAIT),
    });
    Ok(Router::new()
        .route("/", get(fleet_page))
        .route("/cohorts", get(cohorts_page))
        .route("/alerts", get(alerts_page))
        .route("/reports", get(reports_page))
        .route("/metrics", get(metrics))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/reports/{region}", get(report))
        .route("/api/v1/alerts", get(alerts))
        .route("/-/reload", post(reload))
        .route("/-/healthy", get(healthy))
        .layer(middleware::from_fn_with_state(web.clone(), guard))
        .with_state(web))
}

/// The token in `path`: its first line, trimmed; at least [`MIN_TOKEN_CHARS`] characters.
fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(format!(
            "{}: the token must be at least {MIN_TOKEN_CHARS} characters on the first line",
            path.display()
        ));
    }
    Ok(token)
}

/// Applies `web::access` to every request.
async fn guard(State(web): State<Arc<Web>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let check = crate::web::access::Request {
        method: request.method().as_str(),
        path: request.uri().path(),
        host: text(header::HOST.as_str()).or_else(|| request.uri().authority().map(|a| a.as_str())),
        authorization: text(header::AUTHORIZATION.as_str()),
        post_header: text(crate::web::access::POST_HEADER.0),
    };
    match web.policy.check(&check) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
            let mut response = json_response(
                status,
                &json!({"error": refusal.code(), "detail": refusal.to_string()}),
            );
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

fn busy() -> Response {
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": "busy", "detail": "too many renders in progress; retry shortly"}),
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// An HTML page with the headers that keep it from loading anything.
fn html(page: String) -> Response {
    let mut response = Html(page).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(layout::CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `GET /metrics`: OpenMetrics or Prometheus text, or protobuf with native histograms,
/// as the scraper's `Accept` asks; at most `[web] max_concurrent_renders` at once.
async fn metrics(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let Ok(permit) = web.renders.enter().await else { return busy() };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let format = negotiate(accept.as_deref());
    let series = web.shared.series.clone();
    let telemetry = web.shared.telemetry.clone();
    let alerts = web.shared.alerts.clone();
    // Rendering 50k series takes a good fraction of a second: keep it off the async workers.
    let render = move || {
        let _permit = permit;
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

fn fleet_view(shared: &Shared) -> Vec<AgentView> {
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
            AgentView::of(agent, u64::try_from(interval.as_millis()).unwrap_or(u64::MAX), now)
        })
        .collect()
}

/// `GET /api/v1/agents`.
async fn agents(State(web): State<Arc<Web>>) -> Response {
    let agents = fleet_view(&web.shared);
    let stale = agents.iter().filter(|a| a.stale).count();
    json_response(
        StatusCode::OK,
        &json!({
            "plans_revision": web.shared.live().revision,
            "agents": agents,
            "stale": stale,
        }),
    )
}

fn alerts_value(shared: &Shared, now: u64) -> serde_json::Value {
    match &shared.alerts {
        Some(alerts) => alerts.api(now),
        None => json!({"enabled": false, "open": [], "recent": []}),
    }
}

/// `GET /api/v1/alerts`: open and recent incidents (`docs/alerts.md`).
async fn alerts(State(web): State<Arc<Web>>) -> Response {
    json_response(StatusCode::OK, &alerts_value(&web.shared, clock::unix_ms()))
}

/// `GET /`: the fleet page.
async fn fleet_page(State(web): State<Arc<Web>>) -> Response {
    html(fleet::render(&fleet_view(&web.shared), web.shared.live().revision))
}

/// `GET /alerts`: open and recent incidents.
async fn alerts_page(State(web): State<Arc<Web>>) -> Response {
    let now = clock::unix_ms();
    html(alerts_page::render(&alerts_value(&web.shared, now), now))
}

/// Query of `GET /cohorts`.
#[derive(Debug, serde::Deserialize)]
struct CohortsQuery {
    /// Span of the sparklines, hours (one of `cohorts::SPANS_H`).
    hours: Option<u64>,
}

/// `GET /cohorts?hours=3`: cohorts with sparklines, from the store's minute rows (read on a
/// connection of its own, like the reports; counted against the render gate).
async fn cohorts_page(State(web): State<Arc<Web>>, Query(query): Query<CohortsQuery>) -> Response {
    let hours =
        query.hours.filter(|h| cohorts::SPANS_H.contains(h)).unwrap_or(cohorts::DEFAULT_SPAN_H);
    let Ok(permit) = web.renders.enter().await else { return busy() };
    let live = web.shared.live();
    let made = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let to = clock::unix_ms();
        let from = to.saturating_sub(hours * 3_600_000);
        let store = SqliteStore::open(&live.config.storage.path).map_err(|e| e.to_string())?;
        let rows = store
            .rows(Resolution::Minute, from..to, &CohortFilter::default())
            .map_err(|e| e.to_string())?;
        let (trends, problems) = cohorts::trends(&rows, from, to);
        if let Some(p) = problems.first() {
            warn!(count = problems.len(), first = %p, "cohorts page: unreadable stored histograms");
        }
        Ok::<_, String>(cohorts::render(&trends, hours, &live.config.slo, problems.len()))
    })
    .await;
    match made {
        Ok(Ok(page)) => html(page),
        Ok(Err(e)) => {
            warn!(error = %e, "cohorts page: cannot read the history store");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "store-unavailable", "detail": e}),
            )
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Query of `GET /reports`.
#[derive(Debug, serde::Deserialize)]
struct ReportsPageQuery {
    region: Option<String>,
    period: Option<String>,
    lang: Option<String>,
}

/// `GET /reports`: links to each region's report.
async fn reports_page(State(web): State<Arc<Web>>, Query(q): Query<ReportsPageQuery>) -> Response {
    let live = web.shared.live();
    let regions = &live.config.labels.regions;
    let choice = reports_page::Choice::of(
        regions,
        q.region.as_deref().filter(|r| !r.is_empty()),
        q.period.as_deref(),
        q.lang.as_deref(),
    );
    html(reports_page::render(regions, &choice))
}

/// Query of `GET /api/v1/reports/{region}`.
#[derive(Debug, serde::Deserialize)]
struct ReportQuery {
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
async fn report(
    State(web): State<Arc<Web>>,
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
    let live = web.shared.live();
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

/// `POST /-/reload` (with `X-Stallwatch: 1`, and the token when one is set).
async fn reload(State(web): State<Arc<Web>>) -> Response {
    match web.shared.reload() {
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
async fn healthy() -> &'static str {
    "ok\n"
}
