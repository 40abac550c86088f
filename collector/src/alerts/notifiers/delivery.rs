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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;

    use super::*;
    use crate::alerts::Severity;
    use crate::alerts::config::Webhook;
    use crate::alerts::incidents::{Assessment, IncidentKey, Incidents, Scope};
    use crate::alerts::service::DeliveryPlan;
    use crate::alerts::state::State;

    /// A receiver that answers 500 to its first `failures` requests, then 200.
    async fn receiver(failures: usize) -> (String, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        let app = Router::new().route(
            "/hook",
            post(move || {
                let n = count.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < failures { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn shared(url: String, give_up_after_ms: u64) -> (Arc<ServiceShared>, tempfile::TempDir) {
        let mut incidents = Incidents::default();
        let key = IncidentKey {
            alert: Alert::Stalls,
            scope: Scope { region: "sea".into(), ..Scope::default() },
        };
        let firing = Assessment { severity: Some(Severity::P1), ..Assessment::default() };
        incidents.apply(1_000, &[(key, firing)].into(), 0);
        let state =
            State { version: crate::alerts::state::STATE_VERSION, incidents, ..State::default() };
        let delivery = DeliveryPlan {
            alertmanagers: Vec::new(),
            webhooks: vec![Webhook {
                name: "hook".into(),
                format: WebhookFormat::Generic,
                url,
                secret: Some("s".into()),
                min_severity: Severity::P2,
            }],
            resend_every: Duration::from_secs(60),
            ends_at_after_ms: 240_000,
            timeout: Duration::from_secs(5),
            give_up_after_ms,
            external_url: None,
            runbook_template: "https://r.example/{runbook}.md".into(),
        };
        let dir = stallwatch_tests::scratch_dir("delivery");
        (ServiceShared::for_test(state, delivery, dir.path().join("state.json")), dir)
    }

    fn heard(shared: &ServiceShared) -> Option<Notified> {
        shared.lock().state.notified.get("hook").and_then(|h| h.get(&1)).copied()
    }

    async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        while !done() {
            if waited >= limit {
                return false;
            }
            tokio::time::sleep(step).await;
            waited += step;
        }
        true
    }

    #[tokio::test]
    async fn a_failing_webhook_is_retried_until_delivered_and_the_delivery_is_saved() {
        let (url, seen) = receiver(2).await;
        let (shared, dir) = shared(url, 3_600_000);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(webhook_loop(
            shared.clone(),
            client(Duration::from_secs(5)).unwrap(),
            0,
            shared_changed(&shared),
            stop,
        ));
        assert!(
            until(Duration::from_secs(20), || heard(&shared).is_some()).await,
            "never delivered"
        );
        let t = shared.telemetry.totals();
        assert_eq!(
            (seen.load(Ordering::SeqCst), t.delivery_failures["hook"], t.notifications["hook"]),
            (3, 2, 1)
        );
        assert_eq!(
            heard(&shared),
            Some(Notified { severity: Severity::P1, status: Status::Open, dropped: false })
        );
        // Saved (right after it was recorded): a restart would not send it again.
        let saved = || {
            let (saved, _) = crate::alerts::state::load(&dir.path().join("state.json"));
            saved.notified.get("hook").and_then(|h| h.get(&1)).map(|n| n.severity)
        };
        assert!(until(Duration::from_secs(10), || saved() == Some(Severity::P1)).await);
        stop_tx.send_replace(true);
        task.await.unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 3, "sent again after it was heard");
        drop(dir);
    }

    #[tokio::test]
    async fn a_webhook_failing_past_give_up_is_dropped_counted_and_left_alone() {
        let (url, seen) = receiver(usize::MAX).await;
        let (shared, dir) = shared(url, 0);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(webhook_loop(
            shared.clone(),
            client(Duration::from_secs(5)).unwrap(),
            0,
            shared_changed(&shared),
            stop,
        ));
        assert!(until(Duration::from_secs(20), || heard(&shared).is_some()).await, "never dropped");
        assert!(heard(&shared).unwrap().dropped);
        let t = shared.telemetry.totals();
        assert_eq!((t.delivery_failures["hook"], t.dropped["hook"]), (1, 1));
        assert!(!t.notifications.contains_key("hook"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(seen.load(Ordering::SeqCst), 1, "a dropped notification was retried");
        stop_tx.send_replace(true);
        task.await.unwrap();
        drop(dir);
    }

    fn shared_changed(shared: &ServiceShared) -> watch::Receiver<u64> {
        shared.subscribe()
    }

    #[test]
    fn chat_answers_with_error_codes_are_failures() {
        assert!(accepted(Some(WebhookFormat::Feishu), r#"{"code":0,"msg":"success"}"#).is_ok());
        assert!(
            accepted(Some(WebhookFormat::Feishu), r#"{"code":19021,"msg":"sign match fail"}"#)
                .is_err()
        );
        assert!(
            accepted(
                Some(WebhookFormat::Dingtalk),
                r#"{"errcode":310000,"errmsg":"sign not match"}"#
            )
            .is_err()
        );
        assert!(accepted(Some(WebhookFormat::Wecom), r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert!(accepted(Some(WebhookFormat::Slack), "ok").is_ok());
    }
}
