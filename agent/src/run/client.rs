//! The collector's HTTPS API as the agent uses it (docs/protocol.md, "Collector API"): mutual
//! TLS with the bundle, `GET /api/v1/plan` long-polls, `POST /api/v1/reports`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::pki_types::CertificateRevocationListDer;
use stallwatch_proto::duration::format_duration;
use stallwatch_proto::plan::{MAX_PLAN_BYTES, Plan, decode_plan};

use super::bundle::Bundle;
use super::config::CollectorUrl;
use crate::report::SendOutcome;
use crate::tls::{collector_verifier, provider};

/// How long a report POST may take before it counts as a network error.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect timeout of every request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack on top of the plan wait before a plan request times out.
const PLAN_SLACK: Duration = Duration::from_secs(15);
/// Longest `Retry-After` honoured, so that a misconfigured proxy cannot park the agent's
/// reports for hours while its spool fills.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

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
/// as the only root, the fleet's collector CRLs if the agent holds any
/// ([`collector_verifier`]), and the bundle's certificate and key as the client identity.
pub fn tls_config(
    bundle: &Bundle,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("configuring TLS 1.3")?
        .with_webpki_verifier(collector_verifier(&bundle.ca, crls)?)
        .with_client_auth_cert(bundle.cert_chain.clone(), bundle.key.clone_key())
        .context("the bundle's certificate and private key do not match or are unsupported")?;
    // The agent speaks HTTP/1.1 only (reqwest is built without http2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl CollectorClient {
    /// A client for `url` authenticating with `bundle`, refusing collector certificates that
    /// `crls` (the fleet's collector CRL, if the agent holds it) revoke.
    pub fn new(
        url: CollectorUrl,
        bundle: &Bundle,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(bundle, crls)?)
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

    /// `POST /api/v1/reports` with one encoded report numbered `seq`, within `timeout`; the
    /// collector's answer as the spool understands it.
    pub async fn send_report(&self, seq: u64, body: Vec<u8>, timeout: Duration) -> SendOutcome {
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
                let reason = error_chain(&e);
                tracing::debug!(error = %reason, "report not sent");
                return SendOutcome::retry_later(reason);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match response.bytes().await {
            Ok(body) => outcome_for(status, retry_after.as_deref(), seq, &body),
            Err(e) => SendOutcome::retry_later(error_chain(&e)),
        }
    }
}

/// Maps the collector's answer to report `seq` to what the spool does with it
/// (docs/protocol.md, `POST /api/v1/reports`). Only an answer in the collector's own form
/// deletes a report or sets it aside, so that nothing in between (a proxy's 404, 408 or 429,
/// a captive portal's 200 page) can empty the spool:
///
/// - 200 `{"result": "stored" | "duplicate", "seq": seq}` -> delete;
/// - a refusal of the report for what it holds (400 `malformed`, 403 `agent-mismatch`,
///   422 `unstorable`) -> delete and count;
/// - a refusal for a collector setting or the clock (413 `too-large`, 422 `too-old`,
///   422 `clock-skew`) -> set aside in `refused/`;
/// - 409 `seq-conflict` -> renumber;
/// - anything else, refusals of the agent rather than the report (`label-not-allowed`,
///   `revoked`, `bad-certificate`) included -> keep and retry later, after `Retry-After`
///   (seconds, at most [`MAX_RETRY_AFTER`]) if given.
pub fn outcome_for(status: u16, retry_after: Option<&str>, seq: u64, body: &[u8]) -> SendOutcome {
    #[derive(serde::Deserialize)]
    struct Stored {
        result: String,
        seq: u64,
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
        #[allow(dead_code, reason = "required, so that only the collector's error form matches")]
        detail: String,
    }
    let later = |reason: String| SendOutcome::RetryLater {
        reason,
        after: retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER)),
    };
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<Stored>(body) {
            Ok(s) if s.seq == seq && s.result == "stored" => SendOutcome::Accepted,
            Ok(s) if s.seq == seq && s.result == "duplicate" => SendOutcome::Duplicate,
            _ => later(format!("{status} without the collector's answer: {}", snippet(body))),
        };
    }
    let Ok(error) = serde_json::from_slice::<ErrorBody>(body) else {
        return later(format!("{status}: {}", snippet(body)));
    };
    let code = error.error;
    match (status, code.as_str()) {
        (400, "malformed") | (403, "agent-mismatch") | (422, "unstorable") => {
            SendOutcome::Rejected(code)
        }
        (413, "too-large") | (422, "too-old" | "clock-skew") => SendOutcome::SetAside(code),
        (409, "seq-conflict") => SendOutcome::Conflict,
        _ => later(format!("{status} {code}")),
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
        Err(_) => snippet(body),
    }
}

/// The start of a body, for a log line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(80)]).trim().to_string();
    if text.is_empty() { "no body".into() } else { text }
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

    fn error(code: &str) -> Vec<u8> {
        format!(r#"{{"error": "{code}", "detail": "a sentence"}}"#).into_bytes()
    }

    #[test]
    fn answers_map_to_spool_outcomes_as_the_contract_says() {
        let ok = |body: &[u8]| outcome_for(200, None, 7, body);
        assert_eq!(ok(br#"{"result": "stored", "seq": 7}"#), SendOutcome::Accepted);
        assert_eq!(ok(br#"{"result": "duplicate", "seq": 7}"#), SendOutcome::Duplicate);
        for (status, code) in [(400, "malformed"), (403, "agent-mismatch"), (422, "unstorable")] {
            assert_eq!(
                outcome_for(status, None, 7, &error(code)),
                SendOutcome::Rejected(code.into()),
                "{status} {code}"
            );
        }
        for (status, code) in [(413, "too-large"), (422, "too-old"), (422, "clock-skew")] {
            assert_eq!(
                outcome_for(status, None, 7, &error(code)),
                SendOutcome::SetAside(code.into()),
                "{status} {code}"
            );
        }
        assert_eq!(outcome_for(409, None, 7, &error("seq-conflict")), SendOutcome::Conflict);
    }

    /// Whatever is not the collector's own final word on this report keeps it: a proxy's
    /// answers, refusals of the agent (not the report), a 2xx that is not the collector's.
    #[test]
    fn anything_but_a_per_report_refusal_keeps_the_report() {
        let kept = |status: u16, body: &[u8]| {
            let outcome = outcome_for(status, None, 7, body);
            assert!(
                matches!(outcome, SendOutcome::RetryLater { after: None, .. }),
                "{status} {:?}: {outcome:?}",
                String::from_utf8_lossy(body)
            );
        };
        for status in [404, 408, 429, 400, 403, 413, 415, 422, 500, 502, 503, 504, 301] {
            kept(status, b"<html><body>proxy error</body></html>");
            kept(status, b"");
        }
        kept(403, &error("revoked"));
        kept(403, &error("bad-certificate"));
        kept(403, &error("label-not-allowed"));
        kept(422, &error("label-not-allowed"));
        kept(415, &error("unsupported-encoding"));
        kept(404, &error("malformed"));
        kept(503, &error("store-unavailable"));
        kept(400, br#"{"error": "malformed"}"#);
        kept(200, b"<html>captive portal</html>");
        kept(200, br#"{"result": "stored", "seq": 8}"#);
        kept(200, br#"{"result": "queued", "seq": 7}"#);
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let after = |value: &str| match outcome_for(429, Some(value), 7, b"slow down") {
            SendOutcome::RetryLater { after, .. } => after,
            other => panic!("{other:?}"),
        };
        assert_eq!(after("17"), Some(Duration::from_secs(17)));
        assert_eq!(after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(after("Wed, 21 Oct 2015 07:28:00 GMT"), None, "HTTP dates are not read");
    }

    #[test]
    fn the_tls_config_is_tls13_with_the_bundle_identity() {
        let (pem, _, _) = super::super::bundle::tests::make_bundle("edge-1");
        let bundle = super::super::bundle::parse_bundle(pem.as_bytes()).unwrap();
        let config = tls_config(&bundle, Vec::new()).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(
            CollectorClient::new(
                CollectorUrl::parse("https://127.0.0.1:1").unwrap(),
                &bundle,
                Vec::new()
            )
            .is_ok()
        );
    }
}
