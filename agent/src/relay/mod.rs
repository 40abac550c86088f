//! The relay: accepts publishers and viewers over QUIC (streams, datagrams) and plain UDP,
//! keeps a GOP cache per stream and fans out to viewers. docs/protocol.md is the spec.
//!
//! - [`hub`]: the stream registry, GOP caches and fan-out to per-viewer queues; no I/O.
//! - [`session`]: one session's control handling (phases, replies, NACKs), shared by both
//!   drivers; no I/O and no clock.
//! - [`quic`]: the QUIC endpoint; the ALPN picks `quic-stream` or `quic-datagram`.
//! - [`udp`]: the plain UDP socket, its stateless handshake ([`token`]) and per-peer limits.
//! - [`args`]: the `stallwatch-agent relay` command line and [`main`].
//!
//! The relay never stores payload bytes: it keeps and forwards headers and regenerates the
//! payload as zeros of the same length.

mod args;
mod hub;
mod quic;
mod session;
mod source;
mod stats;
mod token;

pub use token::{CREDENTIAL_LEN, credential_proof};
mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use stallwatch_proto::control::ErrorCode;

use crate::tls;

pub use args::{RelayArgs, main};
pub use stats::{RelayStats, TransportStats};

use hub::Hub;
use stats::Counters;

/// Socket buffer size the relay asks for on both sockets (the kernel may cap it at
/// `net.core.rmem_max` / `wmem_max`).
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// How long [`Relay::shutdown`] waits for sessions to say goodbye and the endpoint to go idle.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

pub use stallwatch_proto::plan::Transport;

/// The QUIC transport an ALPN selects.
pub fn transport_from_alpn(alpn: &[u8]) -> Option<Transport> {
    match alpn {
        tls::ALPN_STREAM => Some(Transport::QuicStream),
        tls::ALPN_DATAGRAM => Some(Transport::QuicDatagram),
        _ => None,
    }
}

/// A transport's slot in per-transport counters, in [`Transport::ALL`] order.
pub(crate) fn transport_index(t: Transport) -> usize {
    match t {
        Transport::QuicStream => 0,
        Transport::QuicDatagram => 1,
        Transport::Udp => 2,
    }
}

/// What a relay serves and how much of it.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// QUIC address (both quic-stream and quic-datagram); port 0 picks a free port.
    pub listen: SocketAddr,
    /// Plain UDP address; port 0 picks a free port.
    pub udp_listen: SocketAddr,
    /// Keep the current GOP's headers per stream and replay them to joining viewers.
    pub gop_cache: bool,
    /// Certificate chain and key of the QUIC endpoint.
    pub identity: tls::Identity,
    /// Per-relay, per-stream and per-peer limits.
    pub limits: Limits,
    /// QUIC clients must present a certificate issued by this CA (a relay run from a plan:
    /// only the fleet's agents may use it). `None`: open to anyone (a relay run by hand).
    pub fleet_ca: Option<Vec<CertificateDer<'static>>>,
    /// With `fleet_ca`: client certificates refused by serial (the collector's revoked agents,
    /// kept current from the plan while the relay runs).
    pub revoked_clients: tls::RevokedClients,
    /// Plain UDP clients must prove they hold this credential in their tokened hello (a relay
    /// run from a plan; the collector derives it per relay). `None`: open to anyone.
    pub udp_credential: Option<[u8; CREDENTIAL_LEN]>,
}

impl RelayConfig {
    /// A relay on loopback with free ports, a GOP cache and default limits (for tests).
    pub fn loopback(identity: tls::Identity) -> RelayConfig {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        RelayConfig {
            listen: any,
            udp_listen: any,
            gop_cache: true,
            identity,
            limits: Limits::default(),
            fleet_ca: None,
            revoked_clients: tls::RevokedClients::default(),
            udp_credential: None,
        }
    }
}

/// Relay limits (docs/protocol.md, "Relay limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Live streams per relay.
    pub max_streams: usize,
    /// Viewers per stream.
    pub max_viewers_per_stream: usize,
    /// Token bucket on the bytes each verified UDP peer sends, in bits per second (burst: one
    /// second's worth). 0 turns the limit off.
    pub udp_rate_limit_bps: u64,
    /// A UDP peer silent this long is forgotten (a publisher's stream ends).
    pub udp_peer_timeout: Duration,
    /// Sessions (QUIC connections plus verified UDP peers) one IP address may hold at once.
    pub max_sessions_per_source: usize,
    /// Streams one IP address may publish at once.
    pub max_streams_per_source: usize,
    /// A QUIC connection must send its first publish or subscribe this soon after it is
    /// accepted, or it is closed (code 1).
    pub quic_request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams: 64,
            max_viewers_per_stream: 256,
            udp_rate_limit_bps: 50_000_000,
            udp_peer_timeout: Duration::from_secs(10),
            max_sessions_per_source: 256,
            max_streams_per_source: 16,
            quic_request_timeout: Duration::from_secs(10),
        }
    }
}

/// A running relay. Dropping it stops the relay abruptly; [`Relay::shutdown`] says goodbye.
pub struct Relay {
    quic_addr: SocketAddr,
    udp_addr: SocketAddr,
    hub: Arc<Hub>,
    counters: Arc<Counters>,
    endpoint: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("quic_addr", &self.quic_addr)
            .field("udp_addr", &self.udp_addr)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Binds both sockets and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: RelayConfig) -> Result<Relay> {
        let counters = Arc::new(Counters::default());
        let hub = Arc::new(Hub::new(config.gop_cache, config.limits.clone(), counters.clone()));
        let sources = Arc::new(source::SourceCaps::new(
            config.limits.max_sessions_per_source,
            config.limits.max_streams_per_source,
        ));
        let server_config = tls::server_config(
            &config.identity,
            config.fleet_ca.as_deref(),
            &config.revoked_clients,
        )?;

        let quic_socket = std::net::UdpSocket::bind(config.listen)
            .with_context(|| format!("binding the QUIC socket on {}", config.listen))?;
        let udp_socket = std::net::UdpSocket::bind(config.udp_listen)
            .with_context(|| format!("binding the UDP socket on {}", config.udp_listen))?;
        // quinn configures its own socket through this state; the plain UDP socket only needs
        // its buffers raised, which the same (stateless) setters do for any socket.
        let state = quinn::udp::UdpSocketState::new((&quic_socket).into())
            .context("configuring the QUIC socket")?;
        raise_buffers(&state, &quic_socket, "quic");
        raise_buffers(&state, &udp_socket, "udp");
        udp_socket.set_nonblocking(true).context("configuring the UDP socket")?;
        let udp_socket = Arc::new(
            tokio::net::UdpSocket::from_std(udp_socket).context("registering the UDP socket")?,
        );
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            quic_socket,
            Arc::new(quinn::TokioRuntime),
        )
        .context("starting the QUIC endpoint")?;
        let quic_addr = endpoint.local_addr().context("reading the QUIC address")?;
        let udp_addr = udp_socket.local_addr().context("reading the UDP address")?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let quic_task = tokio::spawn(quic::accept_loop(
            endpoint.clone(),
            quic::Context {
                hub: hub.clone(),
                counters: counters.clone(),
                sources: sources.clone(),
                request_timeout: config.limits.quic_request_timeout,
                shutdown: shutdown_rx.clone(),
            },
        ));
        let udp_relay = udp::UdpRelay::new(
            udp_socket,
            hub.clone(),
            counters.clone(),
            config.limits.clone(),
            token::Tokens::new()?.with_credential(config.udp_credential),
            sources,
        );
        let udp_task = tokio::spawn(udp_relay.run(shutdown_rx));
        debug!(%quic_addr, %udp_addr, gop_cache = config.gop_cache, "relay started");
        Ok(Relay {
            quic_addr,
            udp_addr,
            hub,
            counters,
            endpoint,
            shutdown,
            tasks: vec![quic_task, udp_task],
        })
    }

    /// The bound QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The bound plain UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// A snapshot of the relay's gauges and counters.
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot(self.hub.stream_count())
    }

    /// Says `Goodbye` to every session (QUIC: on the control stream, then close code 0; UDP: a
    /// Goodbye frame to every verified peer) and waits, boundedly, for the endpoint to go idle.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(SHUTDOWN_WAIT, task).await.is_err() {
                warn!("relay task did not stop in time");
            }
        }
        self.endpoint.close(0u32.into(), b"relay shutting down");
        if tokio::time::timeout(SHUTDOWN_WAIT, self.endpoint.wait_idle()).await.is_err() {
            debug!("QUIC endpoint not idle after shutdown wait");
        }
        info!("relay stopped");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
        self.endpoint.close(0u32.into(), b"relay stopped");
    }
}

/// Starts `stream` for a publisher at `remote` (either transport): a slot in its address's
/// stream cap, then the hub. `Err` is the refusal to send.
pub(crate) fn start_publication(
    hub: &Arc<Hub>,
    sources: &Arc<source::SourceCaps>,
    counters: &Counters,
    remote: SocketAddr,
    stream: &str,
    transport: Transport,
) -> std::result::Result<(hub::Publication, source::SourceGuard), stallwatch_proto::control::Control>
{
    let refused = |refusal: hub::Refusal| {
        debug!(%remote, stream, code = ?refusal.code, reason = %refusal.message, "refused");
        refusal.to_control()
    };
    let Some(hold) = sources.try_hold(remote.ip(), source::Kind::Stream) else {
        stats::bump(&counters.source_cap_refusals);
        return Err(refused(refusal_for_cap(sources, source::Kind::Stream)));
    };
    match hub.publish(stream, transport) {
        Ok(publication) => Ok((publication, hold)),
        Err(refusal) => Err(refused(refusal)),
    }
}

/// The refusal of a session or publish whose source address holds its cap of `kind`.
pub(crate) fn refusal_for_cap(caps: &source::SourceCaps, kind: source::Kind) -> hub::Refusal {
    let max = caps.max(kind);
    match kind {
        source::Kind::Session => hub::Refusal {
            code: ErrorCode::RateLimited,
            message: format!("this address holds the relay's limit of {max} sessions per address"),
        },
        source::Kind::Stream => hub::Refusal {
            code: ErrorCode::TooManyStreams,
            message: format!(
                "this address publishes the relay's limit of {max} streams per address"
            ),
        },
    }
}

fn raise_buffers(state: &quinn::udp::UdpSocketState, socket: &std::net::UdpSocket, what: &str) {
    if let Err(e) = state.set_recv_buffer_size(socket.into(), SOCKET_BUFFER) {
        debug!(socket = what, error = %e, "could not raise the receive buffer");
    }
    if let Err(e) = state.set_send_buffer_size(socket.into(), SOCKET_BUFFER) {
        debug!(socket = what, error = %e, "could not raise the send buffer");
    }
    let recv = state.recv_buffer_size(socket.into()).unwrap_or(0);
    let send = state.send_buffer_size(socket.into()).unwrap_or(0);
    // Linux reports twice the size it was asked for (bookkeeping overhead).
    if recv < SOCKET_BUFFER || send < SOCKET_BUFFER {
        info!(
            socket = what,
            recv_bytes = recv,
            send_bytes = send,
            "socket buffers are smaller than the 4 MiB asked for; raise net.core.rmem_max and \
             net.core.wmem_max for many viewers"
        );
    } else {
        debug!(socket = what, recv_bytes = recv, send_bytes = send, "socket buffers");
    }
}
