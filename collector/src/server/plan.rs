//! `GET /api/v1/plan`: the calling agent's plan, chosen by its certificate identity, with an
//! ETag and long-poll so agents see a plan edit as soon as the collector reloads its config.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use stallwatch_proto::duration::parse_duration;
use stallwatch_proto::plan::encode_plan;
use tokio::sync::watch;

use super::tls::Peer;
use super::{ApiError, Shared};
use crate::config::AgentSelector;

/// Longest `wait` honoured; longer requests are cut to it.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Query parameters.
#[derive(Debug, Deserialize)]
pub struct PlanQuery {
    /// How long to hold the request if the plan has not changed (human duration).
    wait: Option<String>,
}

/// The handler.
pub async fn get_plan(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Query(query): Query<PlanQuery>,
    headers: HeaderMap,
) -> Response {
    match plan(&shared, &peer, &query, &headers).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(peer = %peer.addr, reason = e.code, detail = %e.detail, "plan: refused");
            e.into_response()
        }
    }
}

async fn plan(
    shared: &Shared,
    peer: &Peer,
    query: &PlanQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let identity = shared.check_peer(peer)?.identity().clone();
    let wait = match &query.wait {
        None => Duration::ZERO,
        Some(text) => parse_duration(text)
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad-wait", format!("wait={text:?}: {e}"))
            })?
            .min(MAX_WAIT),
    };
    let known = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let deadline = crate::clock::tokio_now() + wait;
    let mut changes = shared.plans.subscribe();
    let mut shutdown = shared.shutdown.clone();
    let answer = long_poll(&mut changes, &mut shutdown, deadline, || {
        let live = shared.live();
        let labels = &live.config.labels;
        if !labels.allows_region(&identity.region)
            || !labels.allows_network_type(&identity.network_type)
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "label-not-allowed",
                format!(
                    "this collector does not own region {:?} / network type {:?}",
                    identity.region, identity.network_type
                ),
            ));
        }
        let etag = format!("\"{}\"", live.revision);
        if known.as_deref() == Some(etag.as_str()) {
            return Ok(None);
        }
        let selector = AgentSelector {
            name: identity.name.clone(),
            region: identity.region.clone(),
            network_type: identity.network_type.clone(),
        };
        let mut plan =
            live.config.plan_with_credentials(&selector, live.revision, &shared.relay_credentials);
        if let Some(relay) = &mut plan.relay {
            relay.revoked_serials.clone_from(&live.revoked_serials);
        }
        Ok(Some(
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (header::ETAG, HeaderValue::from_str(&etag).expect("digits and quotes")),
                ],
                encode_plan(&plan),
            )
                .into_response(),
        ))
    })
    .await?;
    Ok(answer.unwrap_or_else(|| StatusCode::NOT_MODIFIED.into_response()))
}

/// Calls `answer` (which reads the live config) until it has an answer, again after every
/// change of `changes`, until `deadline` or shutdown (then `None`: not modified).
async fn long_poll<T, E>(
    changes: &mut watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
    deadline: tokio::time::Instant,
    mut answer: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    loop {
        // Before reading the config: a reload between the read and this mark would otherwise
        // be marked seen, and the long-poll would sleep through it to a stale 304.
        changes.mark_unchanged();
        if let Some(found) = answer()? {
            return Ok(Some(found));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(None),
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(None);
                }
            }
            _ = shutdown.changed() => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A reload that lands just after the long-poll read the config (the reload swaps the
    /// config, then announces the new revision) wakes it with the new plan, not a 304 at the
    /// deadline.
    #[tokio::test]
    async fn a_reload_right_after_the_config_is_read_is_not_missed() {
        let (plans, mut changes) = watch::channel(1u64);
        let (_stop, mut shutdown) = watch::channel(false);
        let live = Mutex::new(1u64);
        let mut reloaded = false;
        let deadline = crate::clock::tokio_now() + Duration::from_secs(10);
        let answer = long_poll(&mut changes, &mut shutdown, deadline, || {
            let revision = *live.lock().unwrap();
            if !reloaded {
                // The reload, between this read and whatever the long-poll does next.
                reloaded = true;
                *live.lock().unwrap() = 2;
                plans.send_replace(2);
            }
            Ok::<_, ()>((revision != 1).then_some(revision))
        })
        .await;
        assert_eq!(answer, Ok(Some(2)), "the long-poll slept through the reload");
    }

    /// Without a change the long-poll ends at its deadline with nothing (a 304).
    #[tokio::test]
    async fn without_a_reload_the_long_poll_ends_at_its_deadline() {
        let (_plans, mut changes) = watch::channel(1u64);
        let (_stop, mut shutdown) = watch::channel(false);
        let deadline = crate::clock::tokio_now() + Duration::from_millis(20);
        let answer =
            long_poll(&mut changes, &mut shutdown, deadline, || Ok::<Option<u64>, ()>(None)).await;
        assert_eq!(answer, Ok(None));
    }
}
