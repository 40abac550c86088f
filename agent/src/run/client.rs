//! The collector's HTTPS API as the agent uses it (docs/protocol.md, "Collector API"): mutual
//! TLS with the bundle, `GET /api/v1/plan` long-polls, `POST /api/v1/reports`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::RootCertStore;
use stallwatch_proto::duration::format_duration;
use stallwatch_proto::plan::{Plan, decode_plan};

use super::bundle::Bundle;
use super::config::CollectorUrl;
use crate::report::SendOutcome;
use crate::tls::provider;

/// Largest plan body accepted.
pub const MAX_PLAN_BYTES: usize = 1024 * 1024;
/// How long a report POST may take before it counts as a network error.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect timeout of every request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack on top of the plan wait before a plan request times out.
const PLAN_SLACK: Duration = Duration::from_secs(15);

/// A client of one collector.
#[derive(Debug, Clone)]
pub struct CollectorClient {
    http: reqwest::Client,
    url: CollectorUrl,
}

/// What a plan request brought.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanAnswer {
    /// A new plan (200), decoded and validated.
    Plan(Plan),
    /// The plan is the one the agent has (304).
    NotModified,
}

/// Why a plan request failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The collector could not be reached, or did not answer in time.
    #[error("collector unreachable: {0}")]
    Network(String),
    /// The collector answered with an error status.
    #[error("collector answered {status}: {reason}")]
    Status { status: u16, reason: String },
    /// The collector sent a plan the agent cannot use.
    #[error("collector sent a bad plan: {0}")]
    BadPlan(String),
}

/// The rustls client configuration for the collector: ring, TLS 1.3 only, the bundle's CA
/// as the only root, and the bundle's certificate and key as the client identity.
pub fn tls_config(bundle: &Bundle) -> Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(bundle.ca.clone()).context("the bundle's CA certificate is unusable")?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("configuring TLS 1.3")?
        .with_root_certificates(roots)
        .with_client_auth_cert(bundle.cert_chain.clone(), bundle.key.clone_key())
        .context("the bundle's certificate and private key do not match or are unsupported")?;
    // The agent speaks HTTP/1.1 only (reqwest is built without http2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl CollectorClient {
    /// A client for `url` authenticating with `bundle`.
    pub fn new(url: CollectorUrl, bundle: &Bundle) -> Result<Self> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(bundle)?)
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .user_agent(concat!("stallwatch-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTPS client")?;
        Ok(CollectorClient { http, url })
    }

    /// The collector's URL.
    pub fn url(&self) -> &CollectorUrl {
        &self.url
    }

    /// `GET /api/v1/plan?wait=WAIT` with `If-None-Match: "<known>"` if the agent has a plan.
    pub async fn fetch_plan(
        &self,
        known: Option<u64>,
        wait: Duration,
    ) -> Result<PlanAnswer, PlanError> {
        let mut url = self.url.join("/api/v1/plan");
        if known.is_some() && !wait.is_zero() {
            url.query_pairs_mut().append_pair("wait", &format_duration(wait));
        }
        let mut request = self.http.get(url).timeout(wait + PLAN_SLACK);
        if let Some(revision) = known {
            request = request.header(reqwest::header::IF_NONE_MATCH, format!("\"{revision}\""));
        }
        let response = request.send().await.map_err(|e| PlanError::Network(error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| PlanError::Network(error_chain(&e)))?;
        match status {
            304 => Ok(PlanAnswer::NotModified),
            200 => decode_plan(&body, MAX_PLAN_BYTES)
                .map(PlanAnswer::Plan)
                .map_err(|e| PlanError::BadPlan(e.to_string())),
            _ => Err(PlanError::Status { status, reason: error_reason(&body) }),
        }
    }

    /// `POST /api/v1/reports` with one encoded report, within `timeout`; the collector's
    /// answer as the spool understands it.
    pub async fn send_report(&self, body: Vec<u8>, timeout: Duration) -> SendOutcome {
        let sent = self
            .http
            .post(self.url.join("/api/v1/reports"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "report not sent");
                return SendOutcome::RetryLater;
            }
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(body) => outcome_for(status, &body),
            Err(_) => SendOutcome::RetryLater,
        }
    }
}

/// Maps the collector's answer to a report to what the spool does with it
/// (docs/protocol.md, `POST /api/v1/reports`): 200 `stored` or `duplicate` -> delete;
/// 4xx -> delete and count, with the `error` reason code; 5xx, anything else, or a 200 whose
/// body is not understood -> keep and retry later.
pub fn outcome_for(status: u16, body: &[u8]) -> SendOutcome {
    #[derive(serde::Deserialize)]
    struct Stored {
        result: String,
    }
    match status {
        200..=299 => match serde_json::from_slice::<Stored>(body) {
            Ok(s) if s.result == "duplicate" => SendOutcome::Duplicate,
            Ok(s) if s.result == "stored" => SendOutcome::Accepted,
            // A 2xx the agent does not understand: the report was taken; do not resend.
            _ => SendOutcome::Accepted,
        },
        400..=499 => SendOutcome::Rejected(error_reason(body)),
        _ => SendOutcome::RetryLater,
    }
}

/// The `error` reason code of an error body, or a short form of the body.
fn error_reason(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(80)]).trim().to_string();
            if text.is_empty() { "unknown".into() } else { text }
        }
    }
}

/// An error with its causes, on one line.
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

/// Shares one client between the plan poller and the reporter.
pub type SharedClient = Arc<CollectorClient>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_spool_outcomes_as_the_contract_says() {
        assert_eq!(outcome_for(200, br#"{"result": "stored", "seq": 7}"#), SendOutcome::Accepted);
        assert_eq!(
            outcome_for(200, br#"{"result": "duplicate", "seq": 7}"#),
            SendOutcome::Duplicate
        );
        for (status, code) in [
            (400, "malformed"),
            (403, "agent-mismatch"),
            (403, "revoked"),
            (413, "too-large"),
            (415, "unsupported-encoding"),
            (422, "label-not-allowed"),
            (422, "clock-skew"),
            (422, "too-old"),
        ] {
            let body = format!(r#"{{"error": "{code}", "detail": "a sentence"}}"#);
            assert_eq!(
                outcome_for(status, body.as_bytes()),
                SendOutcome::Rejected(code.into()),
                "{status}"
            );
        }
        assert_eq!(
            outcome_for(413, b"<html>too big</html>"),
            SendOutcome::Rejected("<html>too big</html>".into())
        );
        assert_eq!(outcome_for(400, b""), SendOutcome::Rejected("unknown".into()));
        for status in [500, 502, 503, 504] {
            let body = br#"{"error": "store-unavailable", "detail": "x"}"#;
            assert_eq!(outcome_for(status, body), SendOutcome::RetryLater, "{status}");
        }
        assert_eq!(outcome_for(301, b""), SendOutcome::RetryLater);
    }

    #[test]
    fn the_tls_config_is_tls13_with_the_bundle_identity() {
        let (pem, _, _) = super::super::bundle::tests::make_bundle("edge-1");
        let bundle = super::super::bundle::parse_bundle(pem.as_bytes()).unwrap();
        let config = tls_config(&bundle).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(
            CollectorClient::new(CollectorUrl::parse("https://127.0.0.1:1").unwrap(), &bundle)
                .is_ok()
        );
    }
}
