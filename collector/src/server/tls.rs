//! The ingest listener's TLS: TLS 1.3 with a required client certificate from the fleet CA
//! (rustls with the ring provider), and an axum [`Listener`] that hands each request the
//! agent identity read from the verified certificate.
//!
//! Handshakes run in their own tasks, so a slow or silent client cannot hold up others;
//! finished connections reach `accept` through a bounded channel.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use crate::pki::{VerifiedAgent, certificate_serial};

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 1024;
/// Refused handshakes logged one by one per minute; beyond that, one line says how many more,
/// so a scanner or a misconfigured fleet cannot flood the log.
const REFUSALS_LOGGED_PER_MINUTE: u32 = 20;

/// Counts refused handshakes per minute for [`REFUSALS_LOGGED_PER_MINUTE`].
#[derive(Debug)]
struct RefusalLog {
    window_start: std::time::Instant,
    in_window: u32,
}

impl RefusalLog {
    /// Whether to log this refusal; logs the number suppressed when a new minute starts.
    fn admit(&mut self, now: std::time::Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(60) {
            if self.in_window > REFUSALS_LOGGED_PER_MINUTE {
                let more = self.in_window - REFUSALS_LOGGED_PER_MINUTE;
                warn!(
                    more,
                    "ingest: more TLS handshakes were refused in the last minute, not logged one by one"
                );
            }
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += 1;
        self.in_window <= REFUSALS_LOGGED_PER_MINUTE
    }
}

/// Why a TLS file could not be used, and which `[tls]` field named it.
#[derive(Debug)]
pub struct TlsFileError {
    /// Config field, e.g. `tls.cert`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Builds the ingest listener's rustls config: the collector's certificate chain and key,
/// client certificates required and verified against `ca` (which also rejects expired ones).
pub fn server_config(ca: &Path, cert: &Path, key: &Path) -> Result<ServerConfig, TlsFileError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_cert = crate::pki::load_ca_certificate(ca)
        .map_err(|e| TlsFileError { field: "tls.ca", reason: e.to_string() })?;
    let mut roots = RootCertStore::empty();
    roots
        .add(ca_cert)
        .map_err(|e| TlsFileError { field: "tls.ca", reason: format!("unusable CA: {e}") })?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsFileError { field: "tls.ca", reason: e.to_string() })?;
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsFileError { field: "tls.cert", reason: e.to_string() })?;
    if chain.is_empty() {
        let reason = "no PEM CERTIFICATE block".to_owned();
        return Err(TlsFileError { field: "tls.cert", reason });
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsFileError { field: "tls.key", reason: e.to_string() })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsFileError { field: "tls.cert", reason: e.to_string() })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsFileError { field: "tls.key", reason: e.to_string() })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Who is on the other end of an ingest connection: the address, and the identity from the
/// certificate rustls verified (an error if the certificate has no valid stallwatch identity).
/// Read once per connection; axum clones it into every request, so it is shared, not copied.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Remote address.
    pub addr: SocketAddr,
    /// Identity from the certificate's SAN URI.
    pub identity: Result<Arc<VerifiedAgent>, Arc<str>>,
    /// Certificate serial (lowercase hex), checked against the revocation list per request.
    pub serial: Arc<str>,
}

/// The TLS listener: accepted, handshaken connections.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `tcp` and performs handshakes in the background.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener { local, ready })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let refusals = Arc::new(std::sync::Mutex::new(RefusalLog {
        window_start: crate::clock::monotonic(),
        in_window: 0,
    }));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, addr) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "ingest: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let handed = ready.clone();
        let refusals = refusals.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = handed.send((tls, addr)).await;
                }
                // Wrong CA, expired or missing client certificate, plain HTTP: refused here.
                Ok(Err(e)) => {
                    let mut log =
                        refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if log.admit(crate::clock::monotonic()) {
                        warn!(peer = %addr, error = %e, "ingest: TLS handshake refused");
                    }
                }
                Err(_) => debug!(peer = %addr, "ingest: TLS handshake timed out"),
            }
        });
        if ready.is_closed() {
            return;
        }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let addr = *stream.remote_addr();
        let conn = stream.io().get_ref().1;
        // The handshake verified the certificate against the fleet CA (none: unreachable, the
        // verifier requires one).
        let cert = conn.peer_certificates().and_then(|chain| chain.first());
        Peer {
            addr,
            identity: VerifiedAgent::from_handshake(conn)
                .map(Arc::new)
                .map_err(|e| e.to_string().into()),
            serial: cert.and_then(|cert| certificate_serial(cert).ok()).unwrap_or_default().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_log_admits_a_minute_s_quota_then_starts_again() {
        let t0 = crate::clock::monotonic();
        let mut log = RefusalLog { window_start: t0, in_window: 0 };
        let admitted = (0..100).filter(|_| log.admit(t0 + Duration::from_secs(1))).count();
        assert_eq!(admitted, REFUSALS_LOGGED_PER_MINUTE as usize);
        assert!(log.admit(t0 + Duration::from_secs(61)), "a new minute logs again");
        assert_eq!(log.in_window, 1);
    }
}
