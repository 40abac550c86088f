//! Publisher and viewer drivers for the three transports. They own sockets and the clock and
//! feed the sans-IO core (`stallwatch-measure`): the pacer on the way out, the receiver on the
//! way in. Wire usage is specified in docs/protocol.md.

pub mod pacing;
pub mod quic;
mod timer;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use stallwatch_measure::{
    Feedback, ReceiverConfig, Recorder, Repair, StreamProfile, Time, WindowMetrics,
};
use stallwatch_proto::control::{Control, ErrorCode, StartAt};
pub use stallwatch_proto::plan::Transport;
pub(crate) use timer::Timer;

use crate::tls::Trust;

/// How long a client waits for the relay to answer before calling it unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a relay is and how to trust it.
#[derive(Debug, Clone)]
pub struct RelayTarget {
    /// The relay's QUIC address (quic-stream, quic-datagram).
    pub quic: SocketAddr,
    /// The relay's plain UDP address.
    pub udp: SocketAddr,
    /// Name to verify in the relay's certificate (with a CA) and to send as SNI.
    pub server_name: String,
    /// How to verify the relay's certificate; QUIC refuses to connect without it.
    pub trust: Option<Trust>,
    /// The relay's UDP credential, proven in the tokened hello (a relay run from a plan).
    pub udp_credential: Option<[u8; crate::relay::CREDENTIAL_LEN]>,
}

/// What a publisher does.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub target: RelayTarget,
    pub transport: Transport,
    pub stream: String,
    pub profile: StreamProfile,
    pub duration: Duration,
    /// The most the pacing thread spins before each frame (it adapts below; accuracy vs CPU).
    pub pacing_spin: Duration,
    /// Notified once the relay has accepted the stream (a loopback viewer waits for it).
    pub accepted: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// With `nack` (udp, quic-datagram) the publisher answers the relay's NACKs from its send
    /// history; with `none` it ignores them, so the whole path is unrepaired.
    pub repair: Repair,
    /// Where the pacing thread notes each frame's send-timer lateness, for in-process viewers'
    /// self-noise guard (`crate::lateness`).
    pub sender_lateness: std::sync::Arc<crate::lateness::Lateness>,
}

/// QUIC path statistics from quinn.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct QuicPath {
    pub rtt_ms: f64,
    pub cwnd_bytes: u64,
    pub sent_packets: u64,
    pub lost_packets: u64,
    pub congestion_events: u64,
}

impl QuicPath {
    pub fn of(conn: &quinn::Connection) -> Self {
        let path = conn.stats().path;
        QuicPath {
            rtt_ms: path.rtt.as_secs_f64() * 1e3,
            cwnd_bytes: path.cwnd,
            sent_packets: path.sent_packets,
            lost_packets: path.lost_packets,
            congestion_events: path.congestion_events,
        }
    }
}

/// What a publisher measured.
#[derive(Debug, Clone, Default)]
pub struct PublishStats {
    /// Attempt start to the relay accepting the stream.
    pub publish_time: Option<Duration>,
    pub frames: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Frames whose send started more than one frame interval after they were due (the
    /// transport was blocked by congestion or flow control).
    pub frames_late: u64,
    /// Datagrams the transport refused (too large, or the connection lost).
    pub send_errors: u64,
    /// How late the pacing timer woke, µs (irtt's "send call" error).
    pub timer_error: Recorder,
    /// Keyframe requests from the relay that started a new GOP.
    pub keyframes_forced: u64,
    /// Packets resent answering the relay's NACKs (udp, quic-datagram).
    pub retransmitted: u64,
    pub quic: Option<QuicPath>,
}

/// What a viewer does.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    pub target: RelayTarget,
    pub transport: Transport,
    pub stream: String,
    pub start: StartAt,
    /// Give up after this long even if the stream goes on.
    pub max_duration: Duration,
    pub receiver: ReceiverConfig,
    /// Start of the attempt (before any connect), for first-frame time.
    pub attempt_start: Time,
    /// Set to `true` to stop viewing early; the partial last window is still measured
    /// (`stallwatch-agent run` on a plan change or at shutdown).
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
    /// The agent's own lateness (the in-process publisher's send timer, the emulator), noted
    /// into each window before it is taken so a window where the agent ran late is marked
    /// self-noise. Empty when neither runs in this process.
    pub self_noise: crate::lateness::SelfNoiseFeed,
}

/// Resolves when `cancel` turns `true` (or its sender is gone); never without one.
pub(crate) async fn cancelled(cancel: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match cancel {
        Some(rx) => {
            let _ = rx.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

/// Why a viewer stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewEnd {
    /// The publisher ended the stream.
    StreamEnded,
    /// `max_duration` passed.
    Duration,
    /// The connection to the relay was lost.
    ConnectionLost(String),
    /// The viewer was told to stop ([`ViewSpec::cancel`]).
    Cancelled,
}

/// What a viewer measured.
#[derive(Debug, Clone)]
pub struct ViewOutcome {
    pub total: WindowMetrics,
    /// Round-trip samples to the relay, µs (QUIC: quinn's RTT each second; UDP: ping).
    pub rtt: Recorder,
    pub quic: Option<QuicPath>,
    pub end: ViewEnd,
}

/// The control message that carries a viewer's repair feedback for stream `stream_id`.
/// `None` only for a NACK the receiver never makes (empty, unordered or over 64 numbers).
pub(crate) fn feedback_message(stream_id: u32, feedback: Feedback) -> Option<Control> {
    match feedback {
        Feedback::Nack(nack) => Control::nack(stream_id, &nack.seqs),
        Feedback::KeyframeRequest => Some(Control::KeyframeRequest { stream_id }),
    }
}

/// Why an attempt failed, as its failure counter's `cause` label says
/// (`stallwatch_attempt_failures_total{role,cause}`); the catalogue owns the label values.
pub use stallwatch_proto::catalogue::FailureCause;

/// The cause of `error`: the variant of the first [`TransportError`] in its chain, so
/// rewording a message never moves a count; `Other` if there is none.
pub fn failure_cause(error: &anyhow::Error) -> FailureCause {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<TransportError>())
        .map_or(FailureCause::Other, |e| e.cause)
}

/// A transport's failure at the I/O edge: what it means for the failure counters, and what to
/// tell a person. Carried inside an `anyhow::Error` (context may wrap it).
#[derive(Debug)]
pub struct TransportError {
    pub cause: FailureCause,
    message: String,
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TransportError {}

/// An error of `cause`, worded for people.
pub fn fail(cause: FailureCause, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(TransportError { cause, message: message.into() })
}

/// What a relay's error code means for the failure counters.
fn refusal_cause(code: ErrorCode) -> FailureCause {
    match code {
        ErrorCode::StreamNotFound => FailureCause::StreamNotFound,
        ErrorCode::StreamExists
        | ErrorCode::TooManyStreams
        | ErrorCode::TooManyViewers
        | ErrorCode::RateLimited
        | ErrorCode::Unauthorized
        | ErrorCode::BadRequest => FailureCause::Refused,
        ErrorCode::VersionMismatch | ErrorCode::Internal | ErrorCode::Other(_) => {
            FailureCause::Other
        }
    }
}

/// Explains a relay's refusal in a user's words.
pub fn refusal(code: ErrorCode, message: &str) -> anyhow::Error {
    let what = match code {
        ErrorCode::StreamNotFound => "stream not found",
        ErrorCode::StreamExists => "a stream with that name is already being published",
        ErrorCode::TooManyStreams => "the relay is at its stream limit",
        ErrorCode::TooManyViewers => "the stream is at its viewer limit",
        ErrorCode::RateLimited => "rate limited by the relay",
        ErrorCode::VersionMismatch => "the relay speaks another protocol version",
        ErrorCode::Unauthorized => {
            "not authorized by the relay (a relay run from a plan takes only UDP clients that \
             prove its credential; by hand: `probe --udp-credential-file`)"
        }
        ErrorCode::BadRequest => "the relay rejected the request",
        ErrorCode::Internal | ErrorCode::Other(_) => "the relay failed",
    };
    fail(refusal_cause(code), format!("{what}: {message}"))
}

/// A relay that stopped a stream under way (`Control::Error` after `Ok`): caused as a refusal.
pub fn stopped(code: ErrorCode, message: &str) -> anyhow::Error {
    fail(refusal_cause(code), format!("the relay stopped the stream: {message} ({code:?})"))
}

/// A failed socket operation: unreachable if the network said so (ICMP), else local.
pub fn socket_error(what: &str, e: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind as K;
    let cause = match e.kind() {
        K::ConnectionRefused | K::NetworkUnreachable | K::HostUnreachable => {
            FailureCause::Unreachable
        }
        _ => FailureCause::Other,
    };
    fail(cause, format!("{what}: {e}"))
}

/// A function each viewer window is handed to as it is taken.
pub type WindowSink = Box<dyn Fn(&WindowMetrics) + Send + Sync>;

/// Live figures for a progress line, updated about once a second, and optionally every
/// window as it is taken (about one a second, and the last partial one).
#[derive(Default)]
pub struct Progress {
    inner: Mutex<WindowMetrics>,
    sink: Option<WindowSink>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("sink", &self.sink.is_some()).finish_non_exhaustive()
    }
}

impl Progress {
    /// Progress that also hands every window to `sink` (e.g. a report builder).
    pub fn with_sink(sink: WindowSink) -> Self {
        Progress { inner: Mutex::default(), sink: Some(sink) }
    }

    /// Adds a window of results.
    pub fn add(&self, window: &WindowMetrics) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).merge(window);
        if let Some(sink) = &self.sink {
            sink(window);
        }
    }

    /// The results so far.
    pub fn snapshot(&self) -> WindowMetrics {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
