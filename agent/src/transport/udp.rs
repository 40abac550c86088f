//! The plain UDP transport: a stateless-token handshake with the relay (docs/protocol.md), a
//! publisher paced on its own thread with a blocking socket, and a viewer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use stallwatch_measure::pacer::max_payload;
use stallwatch_measure::repair::{
    END_OF_STREAM_REPAIR, Nack, RetransmitConfig, Retransmitter, SendHistory,
};
use stallwatch_measure::{Packetizer, Phase, Receiver, Recorder, Repair, ScheduledFrame};
use stallwatch_proto::control::{
    CONTROL_VERSION, Control, NackRange, Role, SESSION_TRAILER_LEN, is_control, seal,
};
use stallwatch_proto::media::{MEDIA_HEADER_LEN, MediaHeader};
use tokio::net::UdpSocket;

use super::pacing::{self, FrameSink, frame_interval};
use super::timer::Timer;
use super::{
    FailureCause, Progress, PublishSpec, PublishStats, ViewEnd, ViewOutcome, ViewSpec, fail,
};
use crate::clock::Clock;
use crate::relay::{CREDENTIAL_LEN, credential_proof};

/// Largest datagram the UDP transport sends (the session trailer included).
pub const MAX_DATAGRAM: usize = 1200;
/// Largest media packet (header and payload) in a datagram, before the session trailer.
const MAX_PACKET: usize = MAX_DATAGRAM - SESSION_TRAILER_LEN;
/// How long to wait for an answer before resending a control frame.
const RESEND_AFTER: Duration = Duration::from_millis(250);
/// Resends before giving up.
const TRIES: u32 = 8;
/// How often a client pings the relay (keepalive and RTT).
const PING_EVERY: Duration = Duration::from_secs(1);

fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

async fn send_control(socket: &UdpSocket, relay: SocketAddr, msg: &Control) -> Result<()> {
    let sent = socket.send_to(&msg.encode(), relay).await;
    sent.map_err(|e| super::socket_error("sending to the relay over UDP", e))?;
    Ok(())
}

/// Sends a control message within the session, sealed with its nonce (docs/protocol.md).
async fn send_sealed(
    socket: &UdpSocket,
    relay: SocketAddr,
    msg: &Control,
    session: u64,
) -> Result<()> {
    let mut datagram = msg.encode();
    seal(&mut datagram, session);
    let sent = socket.send_to(&datagram, relay).await;
    sent.map_err(|e| super::socket_error("sending to the relay over UDP", e))?;
    Ok(())
}

/// Sends the media packet `buf[..len]` sealed with `session`. The trailer goes into `buf`
/// after the packet and is zeroed again, so the buffer's payload bytes stay zeros.
fn send_sealed_packet(
    socket: &std::net::UdpSocket,
    buf: &mut [u8],
    len: usize,
    session: u64,
    to: SocketAddr,
) -> bool {
    let end = len + SESSION_TRAILER_LEN;
    buf[len..end].copy_from_slice(&session.to_be_bytes());
    let sent = send_retrying(socket, &buf[..end], to);
    buf[len..end].fill(0);
    sent
}

/// Waits up to `wait` for a control frame from the relay, skipping anything else.
async fn recv_control(socket: &UdpSocket, relay: SocketAddr, wait: Duration) -> Option<Control> {
    let mut buf = [0u8; 2048];
    let deadline = Clock::global().tokio_instant() + wait;
    loop {
        let (len, from) =
            tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await.ok()?.ok()?;
        if from != relay || len == 0 || !is_control(buf[0]) {
            continue;
        }
        if let Ok(msg) = Control::decode_datagram(&buf[..len]) {
            return Some(msg);
        }
    }
}

/// Result of the UDP handshake.
struct Session {
    stream_id: u32,
    /// The nonce every later datagram to the relay is sealed with.
    nonce: u64,
    /// When the relay's challenge arrived (the path answers).
    challenged: stallwatch_measure::Time,
    /// When the relay accepted the publish or subscribe.
    accepted: stallwatch_measure::Time,
}

fn unblocked_error(relay: SocketAddr) -> anyhow::Error {
    fail(
        FailureCause::Unreachable,
        format!(
            "no answer from the relay at {relay} over UDP after {TRIES} tries: UDP may be \
             blocked on this path, or no relay listens on that port (a relay's UDP port is its \
             QUIC port + 1 unless set with --udp-listen)"
        ),
    )
}

/// Hello, challenge, tokened hello + request, until `Ok` or `Error`.
async fn handshake(
    socket: &UdpSocket,
    relay: SocketAddr,
    role: Role,
    request: Control,
    credential: Option<&[u8; CREDENTIAL_LEN]>,
) -> Result<Session> {
    let clock = Clock::global();
    let hello = Control::Hello { version: CONTROL_VERSION, role, token: None, proof: None };
    let mut token = None;
    for _ in 0..TRIES {
        send_control(socket, relay, &hello).await?;
        if let Some(Control::Challenge { token: t }) =
            recv_control(socket, relay, RESEND_AFTER).await
        {
            token = Some(t);
            break;
        }
    }
    let token = token.ok_or_else(|| unblocked_error(relay))?;
    let challenged = clock.now();
    let proof = credential.map(|c| credential_proof(c, &token));
    let hello = Control::Hello { version: CONTROL_VERSION, role, token: Some(token), proof };
    for _ in 0..TRIES {
        send_control(socket, relay, &hello).await?;
        send_control(socket, relay, &request).await?;
        let deadline = Clock::global().tokio_instant() + RESEND_AFTER;
        while let Some(msg) = recv_control(
            socket,
            relay,
            deadline.saturating_duration_since(Clock::global().tokio_instant()),
        )
        .await
        {
            match msg {
                Control::Ok { stream_id, session } => {
                    return Ok(Session {
                        stream_id,
                        nonce: session,
                        challenged,
                        accepted: clock.now(),
                    });
                }
                Control::Error { code, message } => {
                    return Err(super::refusal(code, &message));
                }
                // A stale challenge (our token expired): use the new one next time.
                Control::Challenge { .. } => {}
                _ => {}
            }
        }
    }
    Err(unblocked_error(relay))
}

async fn bind_for(relay: SocketAddr) -> Result<UdpSocket> {
    let socket = UdpSocket::bind(unspecified_for(relay)).await.context("binding a UDP socket")?;
    // A keyframe or a cached GOP arrives as a burst; the default buffer (about 200 KiB) can
    // overflow while the process is busy, which would show as loss that the path never had.
    if let Ok(state) = quinn::udp::UdpSocketState::new((&socket).into()) {
        let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
    }
    Ok(socket)
}

/// Socket buffer size asked for on client UDP sockets.
const SOCKET_BUFFER: usize = 2 * 1024 * 1024;

/// Sends frames as UDP datagrams from the pacing thread, with a blocking socket.
struct UdpSink {
    socket: std::net::UdpSocket,
    relay: SocketAddr,
    session: u64,
    packetizer: Packetizer,
    buf: Vec<u8>,
    interval: Duration,
    stats: PublishStats,
    /// What was sent, shared with the control loop that answers the relay's NACKs.
    history: Arc<Mutex<SendHistory>>,
}

impl FrameSink for UdpSink {
    fn send_frame(&mut self, frame: &ScheduledFrame) -> Result<()> {
        let clock = Clock::global();
        if clock.now().saturating_since(frame.due) > self.interval {
            self.stats.frames_late += 1;
        }
        let headers =
            self.packetizer.packetize(frame, frame.due.as_nanos(), max_payload(MAX_PACKET));
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        for header in &headers {
            history.record(header);
        }
        drop(history);
        for mut header in headers {
            header.send_ns = clock.now().as_nanos();
            header.encode_into(&mut self.buf);
            let len = MEDIA_HEADER_LEN + header.payload_len as usize;
            // The payload is the buffer's zeros: only the header is ever written into it.
            if send_sealed_packet(&self.socket, &mut self.buf, len, self.session, self.relay) {
                self.stats.packets += 1;
                self.stats.bytes += len as u64;
            } else {
                self.stats.send_errors += 1;
            }
        }
        Ok(())
    }
}

/// Answers the relay's NACKs from the publisher's send history: the relay repairs its
/// publisher leg as viewers repair theirs.
struct Resender {
    socket: std::net::UdpSocket,
    relay: SocketAddr,
    stream_id: u32,
    session: u64,
    history: Arc<Mutex<SendHistory>>,
    retransmitter: Retransmitter,
    buf: Vec<u8>,
    /// Packets resent.
    sent: u64,
}

impl Resender {
    fn answer(&mut self, ranges: &[NackRange]) {
        let clock = Clock::global();
        let nack = Nack { seqs: ranges.iter().flat_map(|r| r.seqs()).collect() };
        let headers = {
            let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            self.retransmitter.on_nack(clock.now(), &nack, &history)
        };
        for mut header in headers {
            debug_assert_eq!(header.stream_id, self.stream_id);
            header.send_ns = clock.now().as_nanos();
            header.encode_into(&mut self.buf);
            let len = (MEDIA_HEADER_LEN + header.payload_len as usize).min(MAX_PACKET);
            // The payload is the buffer's zeros, regenerated: only headers are kept.
            if send_sealed_packet(&self.socket, &mut self.buf, len, self.session, self.relay) {
                self.sent += 1;
            }
        }
    }
}

/// Sends one datagram on a non-blocking socket (it is shared with the async side, and the
/// blocking flag is per file description), retrying briefly while the send buffer is full.
fn send_retrying(socket: &std::net::UdpSocket, datagram: &[u8], to: SocketAddr) -> bool {
    for _ in 0..1_000 {
        match socket.send_to(datagram, to) {
            Ok(_) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(_) => return false,
        }
    }
    false
}

/// Publishes `spec.stream` over UDP for `spec.duration`, or until `stop` is set.
pub async fn publish(spec: &PublishSpec, stop: Arc<AtomicBool>) -> Result<PublishStats> {
    let clock = Clock::global();
    let relay = spec.target.udp;
    let attempt = clock.now();
    let socket = bind_for(relay).await?;
    let session = handshake(
        &socket,
        relay,
        Role::Publisher,
        Control::Publish { stream: spec.stream.clone() },
        spec.target.udp_credential.as_ref(),
    )
    .await
    .with_context(|| format!("publishing {:?} over UDP", spec.stream))?;
    let publish_time = session.accepted.saturating_since(attempt);
    if let Some(accepted) = &spec.accepted {
        accepted.notify_one();
    }

    let std_socket = socket.into_std().context("UDP socket")?;
    let send_socket = std_socket.try_clone().context("UDP socket")?;
    let socket = UdpSocket::from_std(std_socket).context("UDP socket")?;

    let history = Arc::new(Mutex::new(SendHistory::default()));
    let mut resender = Resender {
        socket: send_socket.try_clone().context("UDP socket")?,
        relay,
        stream_id: session.stream_id,
        session: session.nonce,
        history: history.clone(),
        retransmitter: Retransmitter::new(RetransmitConfig::for_bitrate(
            spec.profile.total_bitrate_bps(),
        )),
        buf: vec![0u8; MAX_DATAGRAM],
        sent: 0,
    };
    let mut sink = UdpSink {
        socket: send_socket,
        relay,
        session: session.nonce,
        packetizer: Packetizer::new(session.stream_id),
        buf: vec![0u8; MAX_DATAGRAM],
        interval: frame_interval(&spec.profile),
        stats: PublishStats { publish_time: Some(publish_time), ..Default::default() },
        history,
    };
    let profile = spec.profile.clone();
    let duration = spec.duration;
    let spin = spec.pacing_spin;
    // `keyframe` is set by a keyframe request from the relay, read by the pacing thread.
    let signals = pacing::PaceSignals {
        stop: stop.clone(),
        keyframe: Arc::new(AtomicBool::new(false)),
        lateness: spec.sender_lateness.clone(),
    };
    let keyframe = signals.keyframe.clone();
    let start = clock.now();
    let pacer = std::thread::Builder::new()
        .name("udp-pacer".into())
        .spawn(move || {
            let (pace, result) = pacing::run(profile, start, duration, spin, &mut sink, &signals);
            (sink.stats, pace, result)
        })
        .context("starting the pacing thread")?;

    // Keep the session alive (a ping a second) and listen for the relay while the thread paces.
    let mut ping_id = 0u64;
    let mut refused = None;
    let mut next_ping = Clock::global().tokio_instant();
    while !pacer.is_finished() {
        if Clock::global().tokio_instant() >= next_ping {
            ping_id += 1;
            let ping = Control::Ping { id: ping_id, send_ns: clock.now().as_nanos() };
            send_sealed(&socket, relay, &ping, session.nonce).await?;
            next_ping += PING_EVERY;
        }
        // Wake at least every 100 ms to notice the end of pacing promptly.
        let wait = next_ping
            .saturating_duration_since(Clock::global().tokio_instant())
            .min(Duration::from_millis(100));
        match recv_control(&socket, relay, wait).await {
            Some(Control::Error { code, message }) => {
                refused = Some(super::stopped(code, &message));
                stop.store(true, Ordering::Relaxed);
            }
            Some(Control::Goodbye) => {
                refused = Some(anyhow!("the relay ended the session"));
                stop.store(true, Ordering::Relaxed);
            }
            Some(Control::KeyframeRequest { stream_id }) if stream_id == session.stream_id => {
                keyframe.store(true, Ordering::Relaxed);
            }
            Some(Control::Nack { stream_id, ranges })
                if stream_id == session.stream_id && spec.repair == Repair::Nack =>
            {
                resender.answer(&ranges);
            }
            Some(Control::Pong { echo_send_ns, .. }) => {
                let rtt = clock.now().as_nanos().saturating_sub(echo_send_ns);
                resender.retransmitter.on_rtt_sample(Duration::from_nanos(rtt));
            }
            _ => {}
        }
    }
    // The last packets may be lost like any other: answer NACKs a while before the goodbye.
    if spec.repair == Repair::Nack && refused.is_none() {
        let until = Clock::global().tokio_instant() + END_OF_STREAM_REPAIR;
        loop {
            let wait = until.saturating_duration_since(Clock::global().tokio_instant());
            if wait.is_zero() {
                break;
            }
            match recv_control(&socket, relay, wait).await {
                Some(Control::Nack { stream_id, ranges }) if stream_id == session.stream_id => {
                    resender.answer(&ranges);
                }
                Some(Control::Goodbye | Control::Error { .. }) => break,
                _ => {}
            }
        }
    }
    let (mut stats, pace, result) =
        pacer.join().map_err(|_| anyhow!("the pacing thread panicked"))?;
    // Goodbye twice: it is one datagram and its loss would leave viewers waiting.
    for _ in 0..2 {
        let _ = send_sealed(&socket, relay, &Control::Goodbye, session.nonce).await;
    }
    result?;
    if let Some(e) = refused {
        return Err(e);
    }
    stats.frames = pace.frames;
    stats.keyframes_forced = pace.keyframes_forced;
    stats.retransmitted = resender.sent;
    stats.timer_error = pace.timer_error;
    Ok(stats)
}

/// Views `spec.stream` over UDP until the stream ends or `spec.max_duration` passes.
pub async fn view(spec: &ViewSpec, progress: &Progress) -> Result<ViewOutcome> {
    let clock = Clock::global();
    let relay = spec.target.udp;
    let mut receiver = Receiver::new(spec.receiver.clone(), spec.attempt_start);
    let socket = bind_for(relay).await?;
    let session = handshake(
        &socket,
        relay,
        Role::Viewer,
        Control::Subscribe { stream: spec.stream.clone(), start: spec.start },
        spec.target.udp_credential.as_ref(),
    )
    .await
    .with_context(|| format!("viewing {:?} over UDP", spec.stream))?;
    receiver.mark_phase(Phase::Connect, session.challenged);
    receiver.mark_phase(Phase::Subscribe, session.accepted);

    let give_up = spec.attempt_start + spec.max_duration;
    let mut cancel = spec.cancel.clone();
    let mut rtt = Recorder::new();
    let mut total = stallwatch_measure::WindowMetrics::default();
    let mut next_window = clock.now() + Duration::from_secs(1);
    let mut next_ping = clock.now();
    let mut ping_id = 0u64;
    let mut buf = vec![0u8; 65_536];
    let mut drain_until = None;
    // When the last frame would have played; the viewer does not count time after it.
    let mut stream_end = None;
    // One timer for the loop, moved only when its deadline changes (see `Timer`).
    let mut timer = Timer::new(clock.now());
    let end = loop {
        let now = clock.now();
        if now >= give_up {
            break ViewEnd::Duration;
        }
        // Repair feedback (NACKs, keyframe requests) due after the last packet or timeout.
        while let Some(feedback) = receiver.poll_feedback(now) {
            if let Some(msg) = super::feedback_message(session.stream_id, feedback) {
                send_sealed(&socket, relay, &msg, session.nonce).await?;
            }
        }
        if let Some(until) = drain_until {
            // The stream has ended: play out what is buffered, then stop (pending loss waits
            // are settled by `finish`).
            if now >= until || receiver.playout_done() {
                break ViewEnd::StreamEnded;
            }
        }
        if now >= next_window {
            spec.self_noise.note_into(&mut receiver);
            let w = receiver.take_window(now);
            progress.add(&w);
            total.merge(&w);
            next_window = now + Duration::from_secs(1);
        }
        if now >= next_ping && drain_until.is_none() {
            ping_id += 1;
            let ping = Control::Ping { id: ping_id, send_ns: now.as_nanos() };
            send_sealed(&socket, relay, &ping, session.nonce).await?;
            next_ping = now + PING_EVERY;
        }
        let ping_due = drain_until.is_none().then_some(next_ping);
        let wake = [receiver.poll_timeout(), Some(next_window), ping_due, Some(give_up)]
            .into_iter()
            .flatten()
            .chain(drain_until)
            .min()
            .expect("at least one deadline");
        timer.set(wake);
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, from) = match received {
                    Ok(r) => r,
                    Err(e) => break ViewEnd::ConnectionLost(e.to_string()),
                };
                let now = clock.now();
                if from != relay || len == 0 {
                    continue;
                }
                if is_control(buf[0]) {
                    match Control::decode_datagram(&buf[..len]) {
                        Ok(Control::Pong { echo_send_ns, .. }) => {
                            let sample = now.as_nanos().saturating_sub(echo_send_ns);
                            rtt.record_nanos_as_micros(sample);
                            receiver.on_rtt_sample(Duration::from_nanos(sample));
                        }
                        Ok(Control::Goodbye) if drain_until.is_none() => {
                            stream_end = Some(now + spec.receiver.playout_delay);
                            drain_until = Some(now + spec.receiver.playout_delay + Duration::from_secs(1));
                        }
                        Ok(Control::Error { code, message }) => {
                            break ViewEnd::ConnectionLost(format!("the relay said: {message} ({code:?})"));
                        }
                        _ => {}
                    }
                } else if let Ok(header) = MediaHeader::decode_packet(&buf[..len])
                    && header.stream_id == session.stream_id
                {
                    receiver.on_packet(now, &header);
                }
            }
            _ = super::cancelled(&mut cancel) => break ViewEnd::Cancelled,
            _ = timer.wait() => receiver.handle_timeout(clock.now()),
        }
    };
    let _ = send_sealed(&socket, relay, &Control::Goodbye, session.nonce).await;
    let now = clock.now();
    spec.self_noise.note_into(&mut receiver);
    let last =
        receiver.finish(stream_end.map_or(now, |end: stallwatch_measure::Time| end.min(now)));
    progress.add(&last);
    total.merge(&last);
    Ok(ViewOutcome { total, rtt, quic: None, end })
}
