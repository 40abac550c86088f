//! The plain UDP side: one socket for control frames and media packets, told apart by the
//! first byte. An address is verified once it sends a `Hello` with a valid token
//! ([`super::token`]); until then the relay keeps no state for it and sends it nothing but
//! challenges no larger than the hellos that drew them, within a budget per source prefix.
//!
//! A verified address gets a random session nonce, told in its `Ok`; the client seals every
//! later datagram with it (`control::seal`). Only sealed datagrams reach the session and keep
//! it alive: an off-path spoofer who knows the address, but not the nonce, can only repeat
//! the handshake's hello and request.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use stallwatch_measure::Time;
use stallwatch_measure::repair::{Nack, RetransmitConfig, Retransmitter};
use stallwatch_proto::control::{Control, ErrorCode, Role, StartAt, is_control, unseal};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::hub::{Feed, Hub, Publication, ViewerGuard, WireBuilder, decode_media};
use super::quic::until_shutdown;
use super::session::{Action, Session};
use super::source::{Kind, SourceCaps, SourceGuard};
use super::stats::{Counters, Malformed, bump};
use super::token::Tokens;
use super::{Limits, Transport, refusal_for_cap, start_publication};
use crate::clock::Clock;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;
/// Challenges per second the relay sends to one source prefix (/24 for IPv4, /56 for IPv6),
/// also the burst: a spoofed-hello flood from one prefix starves that prefix only.
const CHALLENGES_PER_PREFIX_PER_SEC: f64 = 100.0;
/// Challenge buckets, chosen by a keyed hash of the prefix (prefixes that collide share one),
/// so the budget's memory is fixed however many prefixes a spoofer uses.
const CHALLENGE_BUCKETS: usize = 4096;
/// Burst of the viewer pacer: packets beyond it leave at the rate limit (cache replays).
const PACE_BURST: f64 = 64.0 * 1024.0;

/// A token bucket over bytes (or any unit).
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` units per second, at most `burst` saved up; starts full.
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket { rate, burst, tokens: burst, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` if there are that many.
    pub(crate) fn take(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Takes `n`, going into debt if need be; returns how long to wait until out of debt.
    pub(crate) fn pace(&mut self, n: f64, now: Instant) -> Option<Duration> {
        self.refill(now);
        self.tokens -= n;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// Challenge budgets per source prefix.
pub(crate) struct ChallengeBudget {
    buckets: Vec<TokenBucket>,
    /// Random keys per relay: a spoofer cannot aim at another prefix's bucket.
    hasher: std::collections::hash_map::RandomState,
}

impl ChallengeBudget {
    pub(crate) fn new(now: Instant) -> ChallengeBudget {
        let bucket =
            TokenBucket::new(CHALLENGES_PER_PREFIX_PER_SEC, CHALLENGES_PER_PREFIX_PER_SEC, now);
        ChallengeBudget {
            buckets: vec![bucket; CHALLENGE_BUCKETS],
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Takes one challenge from the budget of `addr`'s prefix, if there is one left.
    pub(crate) fn take(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let slot = self.hasher.hash_one(source_prefix(addr.ip())) as usize % CHALLENGE_BUCKETS;
        self.buckets[slot].take(1.0, now)
    }
}

/// The /24 of an IPv4 address (IPv4-mapped IPv6 included) or the /56 of an IPv6 address, with
/// the family in the top byte: the block one site or subscriber usually holds.
fn source_prefix(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => (4 << 120) | u128::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => (6 << 120) | (u128::from(v6) >> 72),
    }
}

/// A verified address.
struct Peer {
    /// The session nonce: told in `Ok`, sealing every later datagram from the client.
    nonce: u64,
    /// Control state, with the stream this peer publishes or views.
    session: Session<Published, UdpViewer>,
    last_seen: Instant,
    /// Received bytes; `None` when the limit is off.
    bucket: Option<TokenBucket>,
    /// Bytes the bucket has dropped.
    dropped_bytes: u64,
    /// The peer's slot in its address's session cap.
    session_hold: SourceGuard,
}

impl Peer {
    /// Tells the session its viewed stream ended (only the hub knows when).
    fn note_stream_end(&mut self) {
        if self.session.viewing().is_some_and(|(_, viewer)| viewer.guard.stream_ended()) {
            self.session.on_stream_ended();
        }
    }
}

/// A UDP publisher's stream and its slot in its address's stream cap.
struct Published {
    publication: Publication,
    _stream_hold: SourceGuard,
}

/// A UDP viewer's writer task and its place on the stream.
struct UdpViewer {
    task: JoinHandle<()>,
    guard: ViewerGuard,
    /// Answers this viewer's NACKs, within its byte budget.
    retransmitter: Retransmitter,
}

impl Drop for UdpViewer {
    fn drop(&mut self) {
        // Before `guard` unsubscribes, so the task never mistakes it for the stream ending.
        self.task.abort();
    }
}

/// The UDP relay loop's state; only its own task touches it.
pub(crate) struct UdpRelay {
    socket: Arc<UdpSocket>,
    hub: Arc<Hub>,
    counters: Arc<Counters>,
    limits: Limits,
    tokens: Tokens,
    sources: Arc<SourceCaps>,
    peers: HashMap<SocketAddr, Peer>,
    max_peers: usize,
    challenges: ChallengeBudget,
    rng: SystemRandom,
    /// When a publisher's NACK may next be due (`None`: nothing missing).
    nack_wake: Option<Time>,
}

impl UdpRelay {
    pub(crate) fn new(
        socket: Arc<UdpSocket>,
        hub: Arc<Hub>,
        counters: Arc<Counters>,
        limits: Limits,
        tokens: Tokens,
        sources: Arc<SourceCaps>,
    ) -> UdpRelay {
        let max_peers =
            limits.max_streams.saturating_mul(limits.max_viewers_per_stream.saturating_add(1));
        let now = Clock::global().instant();
        UdpRelay {
            socket,
            hub,
            counters,
            limits,
            tokens,
            sources,
            peers: HashMap::new(),
            max_peers,
            challenges: ChallengeBudget::new(now),
            rng: SystemRandom::new(),
            nack_wake: None,
        }
    }

    /// Serves until shutdown, then says goodbye to every verified peer.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let socket = self.socket.clone();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let sweep_every = (self.limits.udp_peer_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let nack_wake = self.nack_wake.map(|t| Clock::global().instant_at(t));
            tokio::select! {
                received = socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.on_datagram(&buf[..len], from).await,
                    // e.g. an ICMP error surfaced on the socket; nothing to do about it.
                    Err(e) => debug!(error = %e, "UDP receive error"),
                },
                _ = sleep_until(nack_wake) => self.send_publisher_nacks().await,
                _ = sweep.tick() => self.sweep(),
                _ = until_shutdown(&mut shutdown) => break,
            }
        }
        self.goodbye_all().await;
    }

    async fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        if data.is_empty() {
            self.counters.malformed(Malformed::Empty);
            return;
        }
        let now = Clock::global().instant();
        let mut data = data;
        let mut sealed = false;
        if let Some(peer) = self.peers.get_mut(&from)
            && let Some(inner) = unseal(data, peer.nonce)
        {
            // Only the session's own datagrams keep it alive and count against its budget.
            data = inner;
            sealed = true;
            peer.last_seen = now;
            if let Some(bucket) = &mut peer.bucket
                && !bucket.take(data.len() as f64, now)
            {
                bump(&self.counters.rate_limited_drops);
                peer.dropped_bytes += data.len() as u64;
                // One second's worth dropped: a publisher that persistently overdrives.
                let persistent = peer.dropped_bytes as f64 > bucket.burst;
                if persistent && peer.session.published_stream_id().is_some() {
                    info!(peer = %from, "UDP publisher over its rate limit; dropping it");
                    let error = Control::Error {
                        code: ErrorCode::RateLimited,
                        message: format!(
                            "over the relay's limit of {} bit/s per peer",
                            self.limits.udp_rate_limit_bps
                        ),
                    };
                    self.send(&error, from).await;
                    self.forget(from);
                }
                return;
            }
        }
        if is_control(data[0]) {
            self.on_control(data, from, now, sealed).await;
        } else if !sealed {
            let reason = match self.peers.contains_key(&from) {
                true => Malformed::BadSession,
                false => Malformed::Unverified,
            };
            self.counters.malformed(reason);
        } else if self.on_media(data, from) {
            self.send_publisher_nacks().await;
        }
    }

    /// Takes a publisher's packet; true if it revealed a gap to NACK.
    fn on_media(&mut self, data: &[u8], from: SocketAddr) -> bool {
        let Some(peer) = self.peers.get_mut(&from) else {
            self.counters.malformed(Malformed::Unverified);
            return false;
        };
        let Some((stream_id, published)) = peer.session.publishing() else {
            self.counters.malformed(Malformed::NotPublisher);
            return false;
        };
        match decode_media(data, stream_id) {
            Ok(header) => {
                self.counters.media_in(Transport::Udp, data.len());
                published.publication.on_packet(&header);
                // The publisher's pings give the relay no RTT; its answers to the relay's
                // NACKs do, and space the relay's re-asks.
                peer.session.on_media(Clock::global().now(), &header, None);
                let due = peer.session.nack_due();
                self.nack_wake = earliest(self.nack_wake, due);
                due.is_some()
            }
            Err(reason) => {
                self.counters.malformed(reason);
                debug!(peer = %from, reason = reason.name(), "bad media packet");
                false
            }
        }
    }

    /// Sends every publisher the NACKs due now (the relay repairs its publisher leg as its
    /// viewers repair theirs) and sets when to look again.
    async fn send_publisher_nacks(&mut self) {
        let now = Clock::global().now();
        if self.nack_wake.is_none_or(|t| now < t) {
            return;
        }
        let mut due = Vec::new();
        let mut wake = None;
        for (addr, peer) in &mut self.peers {
            due.extend(peer.session.poll_nacks(now).into_iter().map(|m| (*addr, m)));
            wake = earliest(wake, peer.session.nack_due());
        }
        self.nack_wake = wake;
        for (addr, msg) in due {
            self.send(&msg, addr).await;
            bump(&self.counters.nacks_sent);
        }
    }

    /// `sealed`: the datagram carried the session nonce of the verified peer at `from`.
    async fn on_control(&mut self, data: &[u8], from: SocketAddr, now: Instant, sealed: bool) {
        let msg = match Control::decode_datagram(data) {
            Ok(msg) => msg,
            Err(e) => {
                self.counters.malformed(Malformed::ControlFrame);
                debug!(peer = %from, error = %e, "bad control frame");
                return;
            }
        };
        if let Control::Hello { role, token, proof, .. } = msg {
            return self.on_hello(from, msg, role, token, proof, now).await;
        }
        let Some(peer) = self.peers.get_mut(&from) else {
            if msg == Control::Goodbye {
                // Clients send goodbye more than once; the first one made the relay forget.
                return;
            }
            self.counters.malformed(Malformed::Unverified);
            debug!(peer = %from, ?msg, "control from an unverified address");
            return;
        };
        peer.note_stream_end();
        if !sealed && !peer.session.awaiting_request() {
            // A client sends unsealed only until it has its Ok: a repeated request for the
            // same stream gets the same Ok again (to the address, so a spoofer learns
            // nothing); anything else is a spoofer's, or from a client that lost its session.
            match peer.session.repeated_ok(&msg) {
                Some(ok) => self.send(&ok, from).await,
                None => {
                    self.counters.malformed(Malformed::BadSession);
                    debug!(peer = %from, ?msg, "unsealed control for a UDP session; dropped");
                }
            }
            return;
        }
        if !sealed && !matches!(msg, Control::Publish { .. } | Control::Subscribe { .. }) {
            // Before its Ok a client sends nothing but its request.
            self.counters.malformed(Malformed::BadSession);
            debug!(peer = %from, ?msg, "unsealed control before the session's Ok; dropped");
            return;
        }
        let kind = msg.kind();
        let reply = match peer.session.on_control(Clock::global().now(), msg) {
            Action::Nothing => None,
            Action::Reply(reply) => Some(reply),
            Action::Pong(pong) => Some(pong.at(Clock::global().now().as_nanos())),
            Action::Unexpected { reply } => {
                self.counters.malformed(Malformed::UnexpectedControl);
                debug!(peer = %from, msg = kind, "unexpected control message");
                reply
            }
            Action::Goodbye => {
                debug!(peer = %from, "UDP peer said goodbye");
                self.forget(from);
                None
            }
            Action::Publish { stream } => Some(self.on_publish(from, &stream)),
            Action::Subscribe { stream, start } => self.on_subscribe(from, &stream, start).await,
            Action::Retransmit(nack) => {
                self.on_nack(from, &nack).await;
                None
            }
            Action::ForwardKeyframeRequest { stream_id } => {
                self.on_keyframe_request(from, stream_id).await;
                None
            }
        };
        if let Some(reply) = reply {
            self.send(&reply, from).await;
        }
    }

    /// A hello (`msg`, with its `role`, `token` and `proof`).
    async fn on_hello(
        &mut self,
        from: SocketAddr,
        msg: Control,
        role: Role,
        token: Option<[u8; 16]>,
        proof: Option<[u8; 16]>,
        now: Instant,
    ) {
        let now_ns = Clock::global().now().as_nanos();
        let Some(token) = token else {
            return self.challenge(from, now_ns, now).await;
        };
        if !self.tokens.check(from, &token, now_ns) {
            self.counters.malformed(Malformed::BadToken);
            debug!(peer = %from, "hello with a wrong or expired token; challenging again");
            return self.challenge(from, now_ns, now).await;
        }
        // Verified from here on: answers may be sent. The session checks the version.
        let nonce = self.new_nonce();
        let mut session = Session::new(Transport::Udp, nonce);
        if let Action::Reply(refusal) = session.on_control(Clock::global().now(), msg) {
            return self.send(&refusal, from).await;
        }
        if !self.tokens.credential_ok(&token, proof.as_ref()) {
            // Answered, not dropped: the address is verified, and a probe without the
            // credential should say why rather than time out.
            self.counters.malformed(Malformed::BadCredential);
            debug!(peer = %from, has_proof = proof.is_some(), "UDP hello without the relay's credential");
            let refusal = Control::Error {
                code: ErrorCode::Unauthorized,
                message: if proof.is_some() {
                    "wrong UDP credential for this relay (it runs from a plan; probes get its \
                     credential in theirs)"
                } else {
                    "this relay needs its UDP credential (it runs from a plan; probes get it in \
                     theirs)"
                }
                .to_owned(),
            };
            return self.send(&refusal, from).await;
        }
        if let Some(known) = self.peers.get(&from).and_then(|p| p.session.role()) {
            if known != role
                && let Some(old) = self.peers.remove(&from)
            {
                debug!(peer = %from, ?role, "new session from a known address");
                // The new session takes the old one's slot in the address's cap.
                let peer = self.new_peer(nonce, session, now, old.session_hold);
                self.peers.insert(from, peer);
            }
            // Otherwise a resent hello: nothing to do.
            return;
        }
        if self.peers.len() >= self.max_peers {
            let code = match role {
                Role::Publisher => ErrorCode::TooManyStreams,
                Role::Viewer => ErrorCode::TooManyViewers,
            };
            let message = format!("the relay serves its limit of {} UDP peers", self.max_peers);
            return self.send(&Control::Error { code, message }, from).await;
        }
        let Some(hold) = self.sources.try_hold(from.ip(), Kind::Session) else {
            bump(&self.counters.source_cap_refusals);
            debug!(peer = %from, "UDP peer refused: its address holds its limit of sessions");
            return self
                .send(&refusal_for_cap(&self.sources, Kind::Session).to_control(), from)
                .await;
        };
        debug!(peer = %from, ?role, "UDP peer verified");
        let peer = self.new_peer(nonce, session, now, hold);
        self.peers.insert(from, peer);
        self.counters.udp_peers.store(self.peers.len(), Ordering::Relaxed);
    }

    fn new_peer(
        &self,
        nonce: u64,
        session: Session<Published, UdpViewer>,
        now: Instant,
        session_hold: SourceGuard,
    ) -> Peer {
        let bytes_per_sec = self.limits.udp_rate_limit_bps as f64 / 8.0;
        Peer {
            nonce,
            session,
            last_seen: now,
            bucket: (bytes_per_sec > 0.0)
                .then(|| TokenBucket::new(bytes_per_sec, bytes_per_sec, now)),
            dropped_bytes: 0,
            session_hold,
        }
    }

    /// A random, non-zero session nonce.
    fn new_nonce(&self) -> u64 {
        let mut bytes = [0u8; 8];
        loop {
            // The system generator does not fail on Linux once the process runs; should it,
            // a counter-like nonce is still unknown to an off-path spoofer less than random.
            if self.rng.fill(&mut bytes).is_err() {
                let t = Clock::global().now().as_nanos();
                bytes = (t ^ (self.peers.len() as u64).rotate_left(32)).to_be_bytes();
            }
            let nonce = u64::from_be_bytes(bytes);
            if nonce != 0 {
                return nonce;
            }
        }
    }

    async fn challenge(&mut self, to: SocketAddr, now_ns: u64, now: Instant) {
        if !self.challenges.take(to, now) {
            bump(&self.counters.rate_limited_drops);
            return;
        }
        // 19 bytes, answering a 22-byte hello: never an amplifier.
        let challenge = Control::Challenge { token: self.tokens.mint(to, now_ns) };
        self.send(&challenge, to).await;
        bump(&self.counters.challenges_sent);
    }

    /// Starts the stream the session asked for; the reply (`Ok` or the refusal).
    fn on_publish(&mut self, from: SocketAddr, stream: &str) -> Control {
        let peer = self.peers.get_mut(&from).expect("checked by the caller");
        let started = start_publication(
            &self.hub,
            &self.sources,
            &self.counters,
            from,
            stream,
            Transport::Udp,
        );
        let (publication, hold) = match started {
            Ok(started) => started,
            Err(refusal) => return refusal,
        };
        let stream_id = publication.stream_id();
        info!(peer = %from, stream, stream_id, transport = "udp", "publisher started");
        peer.session.published(stream, stream_id, Published { publication, _stream_hold: hold });
        peer.session.ok(stream_id)
    }

    /// Subscribes as the session asked. `None` when the reply has been sent already (an `Ok`
    /// must precede the media).
    async fn on_subscribe(
        &mut self,
        from: SocketAddr,
        stream: &str,
        start: StartAt,
    ) -> Option<Control> {
        let subscription = match self.hub.subscribe(stream, Transport::Udp, start) {
            Ok(subscription) => subscription,
            Err(refusal) => {
                debug!(peer = %from, stream, code = ?refusal.code, reason = %refusal.message, "refused");
                return Some(refusal.to_control());
            }
        };
        let stream_id = subscription.stream_id;
        let ok = self.peers.get(&from)?.session.ok(stream_id);
        self.send(&ok, from).await;
        let task = tokio::spawn(deliver(
            self.socket.clone(),
            from,
            subscription.feed,
            self.counters.clone(),
            self.limits.udp_rate_limit_bps,
        ));
        let retransmitter = Retransmitter::new(retransmit_budget(self.limits.udp_rate_limit_bps));
        let viewer = UdpViewer { task, guard: subscription.guard, retransmitter };
        debug!(peer = %from, stream, "UDP viewer subscribed");
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.session.subscribed(stream, stream_id, viewer);
        }
        None
    }

    /// Resends what a viewer asks for, from the stream's history, within its budget.
    async fn on_nack(&mut self, from: SocketAddr, nack: &Nack) {
        let Some((_, viewer)) = self.peers.get_mut(&from).and_then(|p| p.session.viewing()) else {
            return;
        };
        bump(&self.counters.nacks_received);
        let now = Clock::global().now();
        let wires = viewer.guard.retransmit(now, nack, &mut viewer.retransmitter);
        for wire in wires {
            match self.socket.send_to(&wire, from).await {
                Ok(_) => {
                    self.counters.media_out(Transport::Udp, wire.len());
                    bump(&self.counters.retransmitted);
                }
                Err(e) => debug!(peer = %from, error = %e, "UDP retransmission not sent"),
            }
        }
    }

    /// Forwards a viewer's keyframe request to the stream's publisher, at most one per stream
    /// every 200 ms.
    async fn on_keyframe_request(&mut self, from: SocketAddr, stream_id: u32) {
        let Some((_, viewer)) = self.peers.get_mut(&from).and_then(|p| p.session.viewing()) else {
            return;
        };
        bump(&self.counters.keyframe_requests_received);
        if !viewer.guard.forward_keyframe_request(Clock::global().now()) {
            return;
        }
        let publisher = self.peers.iter().find_map(|(addr, peer)| {
            (peer.session.published_stream_id() == Some(stream_id)).then_some(*addr)
        });
        if let Some(publisher) = publisher {
            self.send(&Control::KeyframeRequest { stream_id }, publisher).await;
            bump(&self.counters.keyframe_requests_forwarded);
        }
    }

    /// Forgets peers silent for longer than the timeout (a publisher's stream ends).
    fn sweep(&mut self) {
        let now = Clock::global().instant();
        let timeout = self.limits.udp_peer_timeout;
        let before = self.peers.len();
        self.peers.retain(|addr, peer| {
            let alive = now.saturating_duration_since(peer.last_seen) < timeout;
            if !alive {
                debug!(peer = %addr, "UDP peer timed out");
            }
            alive
        });
        if self.peers.len() != before {
            self.counters.udp_peers.store(self.peers.len(), Ordering::Relaxed);
        }
    }

    fn forget(&mut self, addr: SocketAddr) {
        if self.peers.remove(&addr).is_some() {
            self.counters.udp_peers.store(self.peers.len(), Ordering::Relaxed);
        }
    }

    async fn goodbye_all(&mut self) {
        // Stop the viewer tasks first so that no ended stream sends its own goodbye too.
        for peer in self.peers.values_mut() {
            if let Some((_, viewer)) = peer.session.viewing() {
                viewer.task.abort();
            }
        }
        let peers: Vec<SocketAddr> = self.peers.drain().map(|(addr, _)| addr).collect();
        self.counters.udp_peers.store(0, Ordering::Relaxed);
        let goodbye = Control::Goodbye.encode();
        for addr in peers {
            if let Err(e) = self.socket.send_to(&goodbye, addr).await {
                debug!(peer = %addr, error = %e, "goodbye not sent");
            }
        }
    }

    async fn send(&self, msg: &Control, to: SocketAddr) {
        if let Err(e) = self.socket.send_to(&msg.encode(), to).await {
            debug!(peer = %to, error = %e, "UDP send failed");
        }
    }
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sleeps until `deadline`; never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// What the relay may resend to one viewer: at most the per-peer rate limit, one second deep
/// (the retransmitter's own default rate when the limit is off).
pub(crate) fn retransmit_budget(rate_limit_bps: u64) -> RetransmitConfig {
    RetransmitConfig::for_bitrate(if rate_limit_bps > 0 { rate_limit_bps } else { 50_000_000 })
}

/// Sends a UDP viewer its queue, paced at the per-peer rate limit beyond a small burst (a
/// cache replay would otherwise overrun the viewer's socket buffer), then a goodbye when the
/// stream ends.
async fn deliver(
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    mut feed: Feed,
    counters: Arc<Counters>,
    rate_bps: u64,
) {
    let bytes_per_sec = rate_bps as f64 / 8.0;
    let mut pacer = (bytes_per_sec > 0.0)
        .then(|| TokenBucket::new(bytes_per_sec, PACE_BURST, Clock::global().instant()));
    let mut wires = WireBuilder::default();
    while let Some(delivery) = feed.recv().await {
        // The payload is added only now: the queue holds headers alone.
        let wire = wires.build(&delivery.header);
        let len = wire.len();
        if let Some(wait) =
            pacer.as_mut().and_then(|p| p.pace(len as f64, Clock::global().instant()))
        {
            tokio::time::sleep(wait).await;
        }
        match socket.send_to(&wire, to).await {
            Ok(_) => counters.media_out(Transport::Udp, len),
            Err(e) => debug!(peer = %to, error = %e, "UDP send failed"),
        }
    }
    // The stream ended (the relay aborts this task when it drops the viewer itself).
    if let Err(e) = socket.send_to(&Control::Goodbye.encode(), to).await {
        debug!(peer = %to, error = %e, "goodbye not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_limits_and_refills() {
        let t0 = Clock::global().instant();
        let mut b = TokenBucket::new(1000.0, 1000.0, t0);
        assert!(b.take(600.0, t0));
        assert!(!b.take(600.0, t0));
        assert!(b.take(600.0, t0 + Duration::from_millis(200)));
        // Never more than the burst saved up.
        assert!(!b.take(1001.0, t0 + Duration::from_secs(100)));
    }

    #[test]
    fn a_hello_flood_from_one_prefix_starves_that_prefix_only() {
        let t0 = Clock::global().instant();
        let mut budget = ChallengeBudget::new(t0);
        let flooder = |i: u32| SocketAddr::from(([192, 0, 2, (i % 256) as u8], 1000 + i as u16));
        let mut sent = 0;
        for i in 0..10_000 {
            sent += u32::from(budget.take(flooder(i), t0));
        }
        assert_eq!(sent, CHALLENGES_PER_PREFIX_PER_SEC as u32);
        // Every address of that /24 is starved, whatever its port ...
        assert!(!budget.take("192.0.2.200:443".parse().unwrap(), t0));
        // ... while other prefixes are not: all but those whose bucket the flooder's shares
        // (keyed hash, 1 in 4,096 each).
        let others: Vec<SocketAddr> = (0..1000u32)
            .map(|i| SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 5000)))
            .collect();
        let served = others.iter().filter(|a| budget.take(**a, t0)).count();
        assert!(served >= 990, "{served} of 1000 other prefixes got a challenge");
        // The bucket refills.
        assert!(budget.take(flooder(0), t0 + Duration::from_secs(1)));
    }

    #[test]
    fn source_prefixes_are_slash_24_and_slash_56() {
        let p = |s: &str| source_prefix(s.parse().unwrap());
        assert_eq!(p("192.0.2.1"), p("192.0.2.254"));
        assert_ne!(p("192.0.2.1"), p("192.0.3.1"));
        assert_eq!(p("::ffff:192.0.2.9"), p("192.0.2.1"));
        assert_eq!(p("2001:db8:0:ff::1"), p("2001:db8:0:42:1:2:3:4"));
        assert_ne!(p("2001:db8:0:ff::1"), p("2001:db8:0:1ff::1"));
        // IPv4 and IPv6 never share a prefix.
        assert_ne!(p("0.0.0.1"), p("::1"));
    }

    #[test]
    fn a_pacer_says_how_long_to_wait() {
        let t0 = Clock::global().instant();
        let mut p = TokenBucket::new(1000.0, 100.0, t0);
        assert_eq!(p.pace(100.0, t0), None);
        let wait = p.pace(50.0, t0).unwrap();
        assert_eq!(wait, Duration::from_millis(50));
        assert_eq!(p.pace(10.0, t0 + Duration::from_millis(100)), None);
    }
}
