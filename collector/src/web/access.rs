//! Who the web listener answers, decided per request without I/O (docs/security.md, "The web
//! listener"):
//!
//! - **Host allow-list.** A `Host` that is not an IP address, `localhost` or a configured name
//!   is refused: a page on another site that rebinds its own name to the collector's address
//!   (DNS rebinding) sends its own name, so it cannot read `/metrics` or the API from a browser
//!   on the collector's network.
//! - **Bearer token** (optional): `/api/v1/*` and `/-/reload` need `Authorization: Bearer T`.
//! - **A custom header on anything but GET/HEAD** ([`POST_HEADER`]): a browser form cannot set
//!   one, and a script on another site cannot without a CORS preflight the listener never
//!   grants, so no web page can make a visitor's browser reload the config.
//! - **Render gate**: at most N `/metrics` renders at once; others wait, then get 503.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The header (and value) every request other than GET or HEAD must carry.
pub const POST_HEADER: (&str, &str) = ("x-stallwatch", "1");

/// What the listener checks, from `[web]`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Extra host names, lowercase, without a trailing dot.
    allowed_hosts: Vec<String>,
    /// The bearer token's SHA-256 (compared digest to digest, in constant time).
    token: Option<[u8; 32]>,
}

/// The parts of a request the policy looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The `Host` header (or the URI's authority).
    pub host: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The [`POST_HEADER`] header.
    pub post_header: Option<&'a str>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `Host` names a host this listener does not answer to (403).
    #[error(
        "host {0:?} is not allowed: use an IP address or localhost, or add the name to \
         [web] allowed_hosts"
    )]
    HostNotAllowed(String),
    /// No or a wrong bearer token (401).
    #[error("this path needs \"Authorization: Bearer TOKEN\" with the token in [web] token_file")]
    Unauthorized,
    /// A POST without [`POST_HEADER`] (403).
    #[error("{} requests need the header \"X-Stallwatch: 1\" (a browser form cannot send it)", .0)]
    MissingHeader(String),
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Unauthorized => 401,
            Refusal::HostNotAllowed(_) | Refusal::MissingHeader(_) => 403,
        }
    }

    /// The stable reason code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::HostNotAllowed(_) => "host-not-allowed",
            Refusal::Unauthorized => "unauthorized",
            Refusal::MissingHeader(_) => "missing-header",
        }
    }
}

impl Policy {
    /// A policy answering `allowed_hosts` besides loopback names and IP addresses, and
    /// requiring `token` (already read from its file) when given.
    pub fn new(allowed_hosts: &[String], token: Option<&str>) -> Self {
        Policy {
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            token: token.map(digest),
        }
    }

    /// Whether a token is required.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks `request`: host first, then the POST header, then the token.
    pub fn check(&self, request: &Request<'_>) -> Result<(), Refusal> {
        if let Some(host) = request.host
            && !self.host_allowed(host)
        {
            return Err(Refusal::HostNotAllowed(host.to_owned()));
        }
        if !matches!(request.method, "GET" | "HEAD") && request.post_header != Some(POST_HEADER.1) {
            return Err(Refusal::MissingHeader(request.method.to_owned()));
        }
        let protected = request.path.starts_with("/api/") || request.path.starts_with("/-/reload");
        if let (true, Some(want)) = (protected, &self.token) {
            let given = request.authorization.and_then(|a| a.strip_prefix("Bearer "));
            if !given.is_some_and(|t| equal(&digest(t.trim()), want)) {
                return Err(Refusal::Unauthorized);
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        // An IP address is safe: DNS rebinding needs the attacker's own name in `Host`.
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.allowed_hosts.contains(&name)
    }
}

/// `example.net:9464` -> `example.net`, `[::1]:9464` -> `::1`.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares every byte, whatever differs first.
fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The warning `run` logs at start when the listener is reachable from other hosts and no
/// token guards the API and reload; `None` on loopback or with a token.
pub fn exposure_warning(addr: SocketAddr, policy: &Policy) -> Option<String> {
    (!addr.ip().is_loopback() && !policy.has_token()).then(|| {
        format!(
            "the web listener {addr} is reachable from other hosts and has no [web] token_file: \
             anyone who can reach it can read the fleet and alerts (/api/v1/*) and reload the \
             config (/-/reload). Set [web] token_file, or bind listen.metrics to loopback behind \
             a proxy (docs/security.md)"
        )
    })
}

/// Bounds renders in progress (each takes a good fraction of a second and memory for its
/// body): at most `permits` at once; a request that waits longer than `wait` is turned away.
#[derive(Debug, Clone)]
pub struct RenderGate {
    permits: Arc<Semaphore>,
    wait: Duration,
}

/// The gate stayed closed for the whole wait (503, retry later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many renders in progress; retry shortly")]
pub struct Busy;

impl RenderGate {
    /// A gate of `permits` (at least 1) with a `wait` for a turn.
    pub fn new(permits: usize, wait: Duration) -> Self {
        RenderGate { permits: Arc::new(Semaphore::new(permits.max(1))), wait }
    }

    /// A turn to render, held until the permit is dropped.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Busy> {
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &'static str, host: &'static str) -> Request<'static> {
        Request { method: "GET", path, host: Some(host), ..Request::default() }
    }

    #[test]
    fn loopback_names_ip_addresses_and_configured_names_are_answered() {
        let policy = Policy::new(&["Collector.Example.net.".into()], None);
        for host in [
            "127.0.0.1:9464",
            "localhost",
            "LOCALHOST:80",
            "grafana.localhost",
            "[::1]:9464",
            "10.1.2.3",
            "collector.example.net:9464",
            "collector.example.net.",
        ] {
            assert_eq!(policy.check(&get("/metrics", host)), Ok(()), "{host}");
        }
    }

    #[test]
    fn a_rebound_name_is_refused_before_anything_else() {
        let policy = Policy::new(&["collector.example.net".into()], None);
        for host in
            ["attacker.example:9464", "collector.example.net.attacker.example", "localhost.evil"]
        {
            let refused = policy.check(&get("/metrics", host));
            assert_eq!(refused, Err(Refusal::HostNotAllowed(host.into())), "{host}");
            assert_eq!(refused.unwrap_err().status(), 403);
        }
        // No Host at all (not a browser) is not a rebinding.
        let no_host = Request { method: "GET", path: "/metrics", ..Request::default() };
        assert_eq!(policy.check(&no_host), Ok(()));
    }

    #[test]
    fn posts_need_the_custom_header() {
        let policy = Policy::new(&[], None);
        let post = Request {
            method: "POST",
            path: "/-/reload",
            host: Some("localhost"),
            ..Request::default()
        };
        assert_eq!(policy.check(&post), Err(Refusal::MissingHeader("POST".into())));
        let wrong = Request { post_header: Some("yes"), ..post };
        assert!(policy.check(&wrong).is_err());
        let ok = Request { post_header: Some("1"), ..post };
        assert_eq!(policy.check(&ok), Ok(()));
    }

    #[test]
    fn a_token_guards_the_api_and_reload_but_not_the_pages_or_metrics() {
        let policy = Policy::new(&[], Some("s3cret-token-of-enough-length"));
        for path in ["/api/v1/agents", "/api/v1/reports/sea", "/-/reload"] {
            let method = if path == "/-/reload" { "POST" } else { "GET" };
            let base = Request {
                method,
                path,
                host: Some("localhost"),
                post_header: Some("1"),
                ..Request::default()
            };
            assert_eq!(policy.check(&base), Err(Refusal::Unauthorized), "{path}");
            let wrong =
                Request { authorization: Some("Bearer s3cret-token-of-enough-lengtX"), ..base };
            assert_eq!(policy.check(&wrong), Err(Refusal::Unauthorized), "{path}");
            let basic =
                Request { authorization: Some("Basic s3cret-token-of-enough-length"), ..base };
            assert_eq!(policy.check(&basic), Err(Refusal::Unauthorized), "{path}");
            let right =
                Request { authorization: Some("Bearer s3cret-token-of-enough-length"), ..base };
            assert_eq!(policy.check(&right), Ok(()), "{path}");
        }
        for path in ["/", "/cohorts", "/metrics", "/-/healthy"] {
            assert_eq!(policy.check(&get(path, "localhost")), Ok(()), "{path}");
        }
        assert_eq!(Refusal::Unauthorized.status(), 401);
    }

    #[test]
    fn binding_off_loopback_without_a_token_warns() {
        let open = Policy::new(&[], None);
        let guarded = Policy::new(&[], Some("t0ken-t0ken-t0ken"));
        let public: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let private: SocketAddr = "10.0.0.5:9464".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        assert!(exposure_warning(public, &open).is_some_and(|w| w.contains("token_file")));
        assert!(exposure_warning(private, &open).is_some());
        assert!(exposure_warning("[::1]:9464".parse().unwrap(), &open).is_none());
        assert!(exposure_warning(local, &open).is_none());
        assert!(exposure_warning(public, &guarded).is_none());
    }

    #[tokio::test]
    async fn the_render_gate_admits_its_permits_and_turns_away_the_rest() {
        let gate = RenderGate::new(2, Duration::from_millis(50));
        let first = gate.enter().await.expect("first turn");
        let _second = gate.enter().await.expect("second turn");
        assert_eq!(gate.enter().await.unwrap_err(), Busy, "a third waits, then is turned away");
        drop(first);
        assert!(gate.enter().await.is_ok(), "a freed permit is a turn");
    }
}
