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
    loop {
        // Before reading the config: a reload between the read and this mark would otherwise
        // be marked seen, and the long-poll would sleep through it to a stale 304.
        changes.mark_unchanged();
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
        if known.as_deref() != Some(etag.as_str()) {
            let selector = AgentSelector {
                name: identity.name.clone(),
                region: identity.region.clone(),
                network_type: identity.network_type.clone(),
            };
            let plan = live.config.plan_with_credentials(
                &selector,
                live.revision,
                &shared.relay_credentials,
            );
            return Ok((
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (header::ETAG, HeaderValue::from_str(&etag).expect("digits and quotes")),
                ],
                encode_plan(&plan),
            )
                .into_response());
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                return Ok(StatusCode::NOT_MODIFIED.into_response());
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(StatusCode::NOT_MODIFIED.into_response());
                }
            }
            _ = shutdown.changed() => return Ok(StatusCode::NOT_MODIFIED.into_response()),
        }
    }
}
