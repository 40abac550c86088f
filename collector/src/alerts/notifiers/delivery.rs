//! The delivery loops: one task for the Alertmanager replicas, one per webhook. They read the
//! incidents the evaluator published and never hold it up: a receiver that is down only
//! delays its own messages.
//!
//! - Alertmanager: every `resend_every` (and at once after an evaluation that changed
//!   something) each replica gets every alert ([`super::alertmanager::alerts`]); a failed POST
//!   is retried twice (after 1 s and 2 s), then waits for the next round. Failures are counted
//!   per replica (`alertmanager-<n>`).
//! - Webhooks: each incident whose severity or status differs from what the receiver last
//!   heard is sent, oldest first; a failure is retried with backoff (1 s doubling to 60 s);
//!   after `give_up_after` the notification is dropped, counted and logged. What a receiver
//!   heard is saved in the state file as soon as it heard it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{Message, Request, alertmanager, webhook_request};
use crate::alerts::Alert;
use crate::alerts::config::{Webhook, WebhookFormat};
use crate::alerts::incidents::{Incident, Status};
use crate::alerts::service::ServiceShared;
use crate::alerts::state::Notified;
use crate::clock;

/// Longest wait between retries of a webhook notification.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The HTTP client for every receiver: rustls with ring, the platform's trust store (public
/// chat services), HTTP/1.1.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| format!("TLS for alert delivery: {e}"))?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("stallwatch-collector/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("building the alert delivery client: {e}"))
}

/// Sends `request`; `Ok` when the receiver took it (a 2xx, and for chat services a body
/// without an error code).
pub async fn send(
    client: &reqwest::Client,
    format: Option<WebhookFormat>,
    request: &Request,
) -> Result<(), String> {
    let mut r = client
        .post(&request.url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(request.body.clone());
    for (name, value) in &request.headers {
        r = r.header(name.as_str(), value.as_str());
    }
    let response = r.send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", super::truncate(body.trim(), 300)));
    }
    accepted(format, &body)
}

/// Chat services answer 200 with an error code in the body: Feishu `code`, DingTalk and WeCom
/// `errcode`; 0 means taken. Slack answers `ok`.
pub fn accepted(format: Option<WebhookFormat>, body: &str) -> Result<(), String> {
    let field = match format {
        Some(WebhookFormat::Feishu) => "code",
        Some(WebhookFormat::Dingtalk | WebhookFormat::Wecom) => "errcode",
        _ => return Ok(()),
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else { return Ok(()) };
    match v.get(field).and_then(serde_json::Value::as_i64) {
        None | Some(0) => Ok(()),
        Some(code) => Err(format!("{field} {code}: {}", super::truncate(body.trim(), 300))),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Returns when the service stops.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps `d`, or less if the service stops; true if it stops.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stopped(stop) => return true,
    }
    *stop.borrow()
}

/// Sends every alert to every Alertmanager replica, every `resend_every` and after changes.
pub async fn alertmanager_loop(
    shared: Arc<ServiceShared>,
    client: reqwest::Client,
    mut changed: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let d = shared.delivery.clone();
    if d.alertmanagers.is_empty() {
        return;
    }
    let options = alertmanager::Options {
        ends_at_after_ms: d.ends_at_after_ms,
        runbook_template: d.runbook_template.clone(),
        external_url: d.external_url.clone(),
    };
    loop {
        let now = clock::unix_ms();
        let alerts = {
            let core = shared.lock();
            alertmanager::alerts(&core.state.incidents, now, &options)
        };
        let body = serde_json::to_vec(&alerts).unwrap_or_default();
        for (i, base) in d.alertmanagers.iter().enumerate() {
            let receiver = format!("alertmanager-{i}");
            let request = Request {
                url: format!("{}/api/v2/alerts", base.trim_end_matches('/')),
                headers: Vec::new(),
                body: body.clone(),
            };
            for attempt in 0..3u32 {
                if attempt > 0
                    && sleep_or_stop(Duration::from_secs(1 << (attempt - 1)), &mut stop).await
                {
                    return;
                }
                match send(&client, None, &request).await {
                    Ok(()) => {
                        shared.telemetry.delivered(&receiver);
                        break;
                    }
                    Err(e) => {
                        shared.telemetry.failed(&receiver);
                        warn!(receiver, url = %request.url, error = %e, attempt, "alert delivery to Alertmanager failed");
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(d.resend_every) => {}
            _ = changed.changed() => {
                // Let a burst of changes settle into one send.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ = stopped(&mut stop) => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// What `hook` should hear about `incident` now, given what it heard (`None`: nothing).
pub fn due(hook: &Webhook, incident: &Incident, heard: Option<&Notified>) -> Option<Notified> {
    if incident.alert == Alert::Watchdog {
        return None;
    }
    let now = Notified { severity: incident.severity, status: incident.status, dropped: false };
    if heard.is_some_and(|h| h.severity == now.severity && h.status == now.status) {
        return None;
    }
    let relevant = match incident.status {
        // Below the receiver's level: only to tell it an incident it heard of was lowered.
        Status::Open => incident.severity >= hook.min_severity || heard.is_some_and(|h| !h.dropped),
        // Resolutions only of incidents it heard of.
        Status::Resolved => heard.is_some_and(|h| !h.dropped),
    };
    relevant.then_some(now)
}

/// Notifies one webhook of every incident change, in order.
pub async fn webhook_loop(
    shared: Arc<ServiceShared>,
    client: reqwest::Client,
    index: usize,
    mut changed: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(hook) = shared.delivery.webhooks.get(index).cloned() else { return };
    let give_up_ms = shared.delivery.give_up_after_ms;
    let mut backoff = Duration::from_secs(1);
    // Incident id and when its current notification first failed.
    let mut failing: Option<(u64, Notified, u64)> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let next = {
            let core = shared.lock();
            let heard = core.state.notified.get(&hook.name);
            core.state.incidents.all.values().find_map(|incident| {
                let previous = heard.and_then(|h| h.get(&incident.id));
                let due = due(&hook, incident, previous)?;
                let previous = previous.filter(|p| !p.dropped).map(|p| p.severity);
                Some((incident.clone(), previous, due))
            })
        };
        let Some((incident, previous, due)) = next else {
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = stopped(&mut stop) => return,
            }
            continue;
        };
        let now = clock::unix_ms();
        let message = Message::of(&incident, previous, &shared.delivery.runbook_template);
        let request =
            webhook_request(hook.format, &hook.url, hook.secret.as_deref(), &message, now);
        match send(&client, Some(hook.format), &request).await {
            Ok(()) => {
                shared.telemetry.delivered(&hook.name);
                info!(receiver = %hook.name, incident = incident.id, severity = %incident.severity, status = ?incident.status, "alert notification delivered");
                shared.record(&hook.name, incident.id, due).await;
                backoff = Duration::from_secs(1);
                failing = None;
            }
            Err(e) => {
                shared.telemetry.failed(&hook.name);
                let first = match failing {
                    Some((id, n, since)) if id == incident.id && n == due => since,
                    _ => now,
                };
                failing = Some((incident.id, due, first));
                if now.saturating_sub(first) >= give_up_ms {
                    shared.telemetry.dropped(&hook.name);
                    error!(receiver = %hook.name, incident = incident.id, error = %e, "alert notification dropped after failing for delivery.give_up_after");
                    shared.record(&hook.name, incident.id, Notified { dropped: true, ..due }).await;
                    failing = None;
                    continue;
                }
                warn!(receiver = %hook.name, incident = incident.id, error = %e, retry_in = ?backoff, "alert notification failed");
                if sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
