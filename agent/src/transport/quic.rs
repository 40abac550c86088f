//! The QUIC transports: `quic-stream` (an object per frame, a unidirectional stream per GOP) and `quic-datagram` (a fragment per RFC 9221 datagram). Control runs on the first
//! bidirectional stream (docs/protocol.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use stallwatch_measure::pacer::max_payload;
use stallwatch_measure::repair::{
    END_OF_STREAM_REPAIR, Nack, RetransmitConfig, Retransmitter, SendHistory,
};
use stallwatch_measure::{Packetizer, Phase, Receiver, Recorder, Repair, ScheduledFrame, Time};
use stallwatch_proto::control::{CONTROL_VERSION, Control, NackRange, Role};
use stallwatch_proto::media::{MAX_OBJECT_PAYLOAD, MEDIA_HEADER_LEN, MediaHeader};
use tokio::sync::mpsc;

use super::pacing::{self, FrameSink, frame_interval};
use super::timer::Timer;
use super::{
    CONNECT_TIMEOUT, FailureCause, Progress, PublishSpec, PublishStats, QuicPath, RelayTarget,
    Transport, ViewEnd, ViewOutcome, ViewSpec, fail,
};
use crate::clock::Clock;
use crate::tls;

/// Zeros to write as synthetic payload, shared without copying (`Bytes::from_static`); a
/// 1080p keyframe is about 100 KiB.
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

fn alpn(transport: Transport) -> &'static [u8] {
    match transport {
        Transport::QuicDatagram => tls::ALPN_DATAGRAM,
        _ => tls::ALPN_STREAM,
    }
}

/// A connected QUIC session with its control stream.
struct Session {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    control_tx: quinn::SendStream,
    control_rx: mpsc::Receiver<Control>,
    stream_id: u32,
    handshake_done: Time,
    accepted: Time,
}

/// Connects, says hello and sends `request`; waits for `Ok`.
async fn open(
    target: &RelayTarget,
    transport: Transport,
    role: Role,
    request: Control,
) -> Result<Session> {
    let clock = Clock::global();
    let trust = target.trust.as_ref().ok_or_else(|| {
        fail(
            FailureCause::Tls,
            "no way to verify the relay's certificate: pass --pin FINGERPRINT (the relay prints \
             it at start), --ca FILE (the fleet CA) or --bundle FILE (an agent's)",
        )
    })?;
    let bind: SocketAddr = match target.quic.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let endpoint = quinn::Endpoint::client(bind).context("binding a UDP socket for QUIC")?;
    let config = tls::client_config(trust, alpn(transport))?;
    let connecting = endpoint
        .connect_with(config, target.quic, &target.server_name)
        .with_context(|| format!("connecting to {}", target.quic))?;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => {
            return Err(fail(
                FailureCause::Unreachable,
                format!(
                    "relay {} unreachable over QUIC: no answer within {}s (is a relay listening \
                     there, and is UDP allowed on this path?)",
                    target.quic,
                    CONNECT_TIMEOUT.as_secs()
                ),
            ));
        }
        Ok(Err(e)) => return Err(connect_error(target, e)),
        Ok(Ok(conn)) => conn,
    };
    let handshake_done = clock.now();
    // In TLS 1.3 the client is done before the relay has checked its certificate: a refusal
    // of it arrives as the connection closing under the first request.
    let refused = |e: anyhow::Error| match conn.close_reason() {
        Some(
            reason @ (quinn::ConnectionError::ConnectionClosed(_)
            | quinn::ConnectionError::TimedOut),
        ) => connect_error(target, reason),
        _ => e,
    };
    let (mut control_tx, control_rx) =
        conn.open_bi().await.context("opening the control stream").map_err(refused)?;
    let hello = Control::Hello { version: CONTROL_VERSION, role, token: None, proof: None };
    let mut out = hello.encode();
    out.extend(request.encode());
    control_tx.write_all(&out).await.context("sending hello to the relay").map_err(refused)?;
    let mut control_rx = spawn_control_reader(control_rx);
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, control_rx.recv()).await.map_err(|_| {
        let secs = CONNECT_TIMEOUT.as_secs();
        fail(FailureCause::Unreachable, format!("the relay did not answer within {secs}s"))
    })?;
    match answer {
        Some(Control::Ok { stream_id, .. }) => Ok(Session {
            _endpoint: endpoint,
            conn,
            control_tx,
            control_rx,
            stream_id,
            handshake_done,
            accepted: clock.now(),
        }),
        Some(Control::Error { code, message }) => Err(super::refusal(code, &message)),
        Some(other) => bail!("the relay answered with an unexpected {other:?}"),
        None => Err(refused(anyhow!("the relay closed the control stream without answering"))),
    }
}

/// TLS alerts a relay sends about a client certificate.
const ALERT_CERTIFICATE_REVOKED: u8 = 44;

/// The TLS alert a peer closed the handshake with, if it did (QUIC `CRYPTO_ERROR`,
/// 0x100 + alert).
fn tls_alert(close: &quinn::ConnectionClose) -> Option<u8> {
    let code = u64::from(close.error_code);
    (0x100..0x200).contains(&code).then(|| (code - 0x100) as u8)
}

/// Explains a failed QUIC connection: whose side refused and why.
fn connect_error(target: &RelayTarget, e: quinn::ConnectionError) -> anyhow::Error {
    use quinn::ConnectionError as E;
    match e {
        E::TimedOut => fail(
            FailureCause::Unreachable,
            format!("relay {} unreachable over QUIC: the handshake timed out", target.quic),
        ),
        // Our own verifier's refusal of the relay's certificate arrives as a local transport
        // error whose reason quinn words; there is no type to match.
        E::TransportError(t)
            if t.to_string().contains("certificate") || t.to_string().contains("fingerprint") =>
        {
            fail(
                FailureCause::Tls,
                format!(
                    "TLS handshake with the relay at {} failed on this probe's side: {t} (check \
                     --pin or --ca and --server-name)",
                    target.quic
                ),
            )
        }
        E::TransportError(t) => fail(
            FailureCause::Other,
            format!("QUIC handshake with the relay at {} failed: {t}", target.quic),
        ),
        E::ConnectionClosed(c) if tls_alert(&c).is_some() => {
            let fleet = matches!(target.trust, Some(tls::Trust::Fleet { .. }));
            let why = match tls_alert(&c) {
                Some(ALERT_CERTIFICATE_REVOKED) => {
                    "it refuses this agent certificate: the fleet has revoked it"
                }
                _ if !fleet => {
                    "it serves only the fleet's agents (a relay run from a plan): pass --bundle \
                     with an agent's bundle"
                }
                _ => "it does not accept this bundle's certificate (another fleet's, or expired?)",
            };
            fail(
                FailureCause::Tls,
                format!("the relay at {} refused the TLS handshake: {why} ({c})", target.quic),
            )
        }
        E::ConnectionClosed(c) => fail(
            FailureCause::Tls,
            format!(
                "the relay at {} refused the QUIC/TLS handshake: {c} (relay side; does it speak \
                 stallwatch and this transport?)",
                target.quic
            ),
        ),
        other => fail(
            FailureCause::Other,
            format!("connecting to the relay at {}: {other}", target.quic),
        ),
    }
}

/// Reads control frames from the relay and hands them over until the stream ends.
fn spawn_control_reader(mut rx: quinn::RecvStream) -> mpsc::Receiver<Control> {
    let (tx, out) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        loop {
            loop {
                match Control::decode_frame(&buf) {
                    Ok(Some((msg, used))) => {
                        buf.drain(..used);
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return, // A malformed control stream: stop listening.
                }
            }
            match rx.read(&mut chunk).await {
                Ok(Some(n)) => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
    });
    out
}

/// Sends frames as datagrams, fragmented to the connection's current maximum datagram size.
struct DatagramSink {
    conn: quinn::Connection,
    /// The largest datagram at connection start.
    floor: usize,
    packetizer: Packetizer,
    interval: Duration,
    stats: PublishStats,
    /// What was sent, shared with the control loop that answers the relay's NACKs.
    history: Arc<Mutex<SendHistory>>,
}

impl FrameSink for DatagramSink {
    fn send_frame(&mut self, frame: &ScheduledFrame) -> Result<()> {
        let clock = Clock::global();
        if clock.now().saturating_since(frame.due) > self.interval {
            self.stats.frames_late += 1;
        }
        let current = self
            .conn
            .max_datagram_size()
            .ok_or_else(|| anyhow!("the relay does not accept QUIC datagrams"))?;
        // Never above the size at connection start (the 1200-byte MTU every QUIC path carries):
        // PMTUD may raise this connection's maximum, but the relay forwards each datagram as is
        // to viewers whose paths may not have grown. Below it, the current size wins.
        let max = current.min(self.floor);
        let headers = self.packetizer.packetize(frame, frame.due.as_nanos(), max_payload(max));
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        for header in &headers {
            history.record(header);
        }
        drop(history);
        for mut header in headers {
            header.send_ns = clock.now().as_nanos();
            let len = MEDIA_HEADER_LEN + header.payload_len as usize;
            let mut packet = BytesMut::with_capacity(len);
            packet.put_slice(&header.to_bytes());
            packet.put_bytes(0, header.payload_len as usize);
            match self.conn.send_datagram(packet.freeze()) {
                Ok(()) => {
                    self.stats.packets += 1;
                    self.stats.bytes += len as u64;
                }
                Err(quinn::SendDatagramError::ConnectionLost(e)) => {
                    bail!("the connection to the relay was lost: {e}")
                }
                Err(_) => self.stats.send_errors += 1,
            }
        }
        Ok(())
    }
}

/// Resends what the relay NACKs, from the publisher's send history, as datagrams.
fn answer_nack(
    conn: &quinn::Connection,
    history: &Mutex<SendHistory>,
    retransmitter: &mut Retransmitter,
    ranges: &[NackRange],
) -> u64 {
    let clock = Clock::global();
    retransmitter.on_rtt_sample(conn.rtt());
    let nack = Nack { seqs: ranges.iter().flat_map(|r| r.seqs()).collect() };
    let headers = {
        let history = history.lock().unwrap_or_else(PoisonError::into_inner);
        retransmitter.on_nack(clock.now(), &nack, &history)
    };
    let mut sent = 0;
    for mut header in headers {
        header.send_ns = clock.now().as_nanos();
        let mut packet = BytesMut::with_capacity(MEDIA_HEADER_LEN + header.payload_len as usize);
        packet.put_slice(&header.to_bytes());
        // The payload is regenerated: only headers are kept.
        packet.put_bytes(0, header.payload_len as usize);
        if conn.send_datagram(packet.freeze()).is_ok() {
            sent += 1;
        }
    }
    sent
}

/// Hands frames from the pacing thread to the async stream writer.
struct ChannelSink(mpsc::UnboundedSender<ScheduledFrame>);

impl FrameSink for ChannelSink {
    fn send_frame(&mut self, frame: &ScheduledFrame) -> Result<()> {
        self.0.send(*frame).map_err(|_| anyhow!("the stream writer stopped"))
    }
}

/// Writes each frame as an object on its GOP's stream (one stream per GOP and medium).
async fn write_objects(
    conn: quinn::Connection,
    stream_id: u32,
    interval: Duration,
    mut frames: mpsc::UnboundedReceiver<ScheduledFrame>,
) -> Result<PublishStats> {
    let clock = Clock::global();
    let mut packetizer = Packetizer::new(stream_id);
    let mut stats = PublishStats::default();
    // One stream per GOP carries its video and audio in send order; audio takes the GOP of the
    // video being sent, so GOP numbers never go back.
    let mut current: Option<(u32, quinn::SendStream)> = None;
    // The chunks of one object (header, then static zeros), reused from object to object.
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Some(frame) = frames.recv().await {
        let now = clock.now();
        if now.saturating_since(frame.due) > interval {
            stats.frames_late += 1;
        }
        let slot = &mut current;
        if slot.as_ref().is_none_or(|(gop, _)| *gop != frame.gop) {
            if let Some((_, mut old)) = slot.take() {
                let _ = old.finish();
            }
            let stream = conn.open_uni().await.context("opening a GOP stream")?;
            *slot = Some((frame.gop, stream));
        }
        let (_, stream) = slot.as_mut().expect("set above");
        for mut header in packetizer.packetize(&frame, frame.due.as_nanos(), usize::MAX) {
            header.send_ns = clock.now().as_nanos();
            // One write per object: the header and static zero chunks, no copies.
            chunks.clear();
            chunks.push(Bytes::copy_from_slice(&header.to_bytes()));
            let mut left = header.payload_len as usize;
            while left > 0 {
                let n = left.min(ZEROS.len());
                chunks.push(Bytes::from_static(&ZEROS[..n]));
                left -= n;
            }
            let written = stream.write_all_chunks(&mut chunks);
            match written.await {
                Ok(()) => {
                    stats.packets += 1;
                    stats.bytes += (MEDIA_HEADER_LEN + header.payload_len as usize) as u64;
                }
                // The relay reset this GOP's stream: the rest of the GOP is dropped.
                Err(quinn::WriteError::Stopped(_)) => stats.send_errors += 1,
                Err(e) => bail!("writing to the relay: {e}"),
            }
        }
    }
    if let Some((_, mut stream)) = current {
        let _ = stream.finish();
    }
    Ok(stats)
}

/// Publishes `spec.stream` over QUIC (streams or datagrams) for `spec.duration`.
pub async fn publish(spec: &PublishSpec, stop: Arc<AtomicBool>) -> Result<PublishStats> {
    let clock = Clock::global();
    let attempt = clock.now();
    let mut session = open(
        &spec.target,
        spec.transport,
        Role::Publisher,
        Control::Publish { stream: spec.stream.clone() },
    )
    .await
    .with_context(|| format!("publishing {:?} over {}", spec.stream, spec.transport))?;
    let publish_time = session.accepted.saturating_since(attempt);
    if let Some(accepted) = &spec.accepted {
        accepted.notify_one();
    }
    let interval = frame_interval(&spec.profile);
    let profile = spec.profile.clone();
    let duration = spec.duration;
    let spin = spec.pacing_spin;
    let start = clock.now();
    // `keyframe` is set by a keyframe request from the relay (quic-datagram), read by the pacing thread.
    let signals = pacing::PaceSignals {
        stop: stop.clone(),
        keyframe: Arc::new(AtomicBool::new(false)),
        lateness: spec.sender_lateness.clone(),
    };
    let keyframe = signals.keyframe.clone();
    let (paced_tx, mut paced_rx) = tokio::sync::oneshot::channel::<()>();

    let history = Arc::new(Mutex::new(SendHistory::default()));
    let mut retransmitter =
        Retransmitter::new(RetransmitConfig::for_bitrate(spec.profile.total_bitrate_bps()));
    let mut retransmitted = 0;
    let (writer, pacer) = match spec.transport {
        Transport::QuicDatagram => {
            let floor = session.conn.max_datagram_size().unwrap_or(1_100);
            let mut sink = DatagramSink {
                floor,
                conn: session.conn.clone(),
                packetizer: Packetizer::new(session.stream_id),
                interval,
                stats: PublishStats::default(),
                history: history.clone(),
            };
            let pacer = std::thread::Builder::new().name("quic-pacer".into()).spawn(move || {
                let (pace, result) =
                    pacing::run(profile, start, duration, spin, &mut sink, &signals);
                let _ = paced_tx.send(());
                (sink.stats, pace, result)
            });
            (None, pacer)
        }
        _ => {
            let (tx, rx) = mpsc::unbounded_channel();
            let writer =
                tokio::spawn(write_objects(session.conn.clone(), session.stream_id, interval, rx));
            let pacer = std::thread::Builder::new().name("quic-pacer".into()).spawn(move || {
                let mut sink = ChannelSink(tx);
                let (pace, result) =
                    pacing::run(profile, start, duration, spin, &mut sink, &signals);
                let _ = paced_tx.send(());
                (PublishStats::default(), pace, result)
            });
            (Some(writer), pacer)
        }
    };
    let pacer = pacer.context("starting the pacing thread")?;
    // Listen to the relay until the pacing thread says it is done (no polling: wake-ups cost CPU).
    let mut refused = None;
    let mut control_open = true;
    loop {
        tokio::select! {
            _ = &mut paced_rx => break,
            msg = session.control_rx.recv(), if control_open => match msg {
                Some(Control::Error { code, message }) => {
                    refused = Some(super::stopped(code, &message));
                    stop.store(true, Ordering::Relaxed);
                }
                Some(Control::KeyframeRequest { stream_id }) if stream_id == session.stream_id => {
                    keyframe.store(true, Ordering::Relaxed);
                }
                Some(Control::Nack { stream_id, ranges })
                    if stream_id == session.stream_id
                        && spec.transport == Transport::QuicDatagram
                        && spec.repair == Repair::Nack =>
                {
                    retransmitted +=
                        answer_nack(&session.conn, &history, &mut retransmitter, &ranges);
                }
                Some(_) => {}
                None => {
                    refused = Some(anyhow!("the relay closed the session"));
                    stop.store(true, Ordering::Relaxed);
                    control_open = false;
                }
            },
        }
    }
    // The last datagrams may be lost like any other: answer NACKs a while before the goodbye.
    if spec.transport == Transport::QuicDatagram
        && spec.repair == Repair::Nack
        && refused.is_none()
        && control_open
    {
        let tail = tokio::time::sleep(END_OF_STREAM_REPAIR);
        tokio::pin!(tail);
        loop {
            tokio::select! {
                _ = &mut tail => break,
                msg = session.control_rx.recv() => match msg {
                    Some(Control::Nack { stream_id, ranges }) if stream_id == session.stream_id => {
                        retransmitted +=
                            answer_nack(&session.conn, &history, &mut retransmitter, &ranges);
                    }
                    Some(Control::Error { .. } | Control::Goodbye) | None => break,
                    Some(_) => {}
                },
            }
        }
    }
    let (mut stats, pace, result) =
        pacer.join().map_err(|_| anyhow!("the pacing thread panicked"))?;
    if let Some(writer) = writer {
        let written = writer.await.map_err(|e| anyhow!("the stream writer failed: {e}"))??;
        stats = written;
    }
    result?;
    let _ = session.control_tx.write_all(&Control::Goodbye.encode()).await;
    let _ = session.control_tx.finish();
    stats.quic = Some(QuicPath::of(&session.conn));
    // Let the relay read everything before the connection closes.
    let _ = tokio::time::timeout(Duration::from_secs(2), session.control_tx.stopped()).await;
    session.conn.close(0u32.into(), b"done");
    if let Some(e) = refused {
        return Err(e);
    }
    stats.publish_time = Some(publish_time);
    stats.frames = pace.frames;
    stats.keyframes_forced = pace.keyframes_forced;
    stats.retransmitted = retransmitted;
    stats.timer_error = pace.timer_error;
    Ok(stats)
}

/// Reads back-to-back objects from one GOP stream, stamping each with its arrival time.
async fn read_objects(
    mut stream: quinn::RecvStream,
    out: mpsc::UnboundedSender<(Time, MediaHeader)>,
) {
    let clock = Clock::global();
    let mut header = [0u8; MEDIA_HEADER_LEN];
    let mut sink = vec![0u8; 16 * 1024];
    loop {
        match stream.read_exact(&mut header).await {
            Ok(()) => {}
            Err(_) => return, // End of the GOP, or a reset: missing objects show as loss.
        }
        let Ok(h) = MediaHeader::decode(&header) else { return };
        if h.payload_len > MAX_OBJECT_PAYLOAD {
            return;
        }
        let mut left = h.payload_len as usize;
        while left > 0 {
            let n = left.min(sink.len());
            if stream.read_exact(&mut sink[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        if out.send((clock.now(), h)).is_err() {
            return;
        }
    }
}

/// Views `spec.stream` over QUIC until the stream ends or `spec.max_duration` passes.
pub async fn view(spec: &ViewSpec, progress: &Progress) -> Result<ViewOutcome> {
    let clock = Clock::global();
    let mut receiver = Receiver::new(spec.receiver.clone(), spec.attempt_start);
    let mut session = open(
        &spec.target,
        spec.transport,
        Role::Viewer,
        Control::Subscribe { stream: spec.stream.clone(), start: spec.start },
    )
    .await
    .with_context(|| format!("viewing {:?} over {}", spec.stream, spec.transport))?;
    receiver.mark_phase(Phase::Handshake, session.handshake_done);
    receiver.mark_phase(Phase::Subscribe, session.accepted);

    // quic-stream: a reader per GOP stream feeds one channel; quic-datagram reads inline.
    let (objects_tx, mut objects) = mpsc::unbounded_channel();
    if spec.transport == Transport::QuicStream {
        let conn = session.conn.clone();
        tokio::spawn(async move {
            while let Ok(stream) = conn.accept_uni().await {
                tokio::spawn(read_objects(stream, objects_tx.clone()));
            }
        });
    } else {
        drop(objects_tx);
    }

    let give_up = spec.attempt_start + spec.max_duration;
    let mut cancel = spec.cancel.clone();
    let mut rtt = Recorder::new();
    let mut total = stallwatch_measure::WindowMetrics::default();
    let mut next_window = clock.now() + Duration::from_secs(1);
    let mut stream_end: Option<Time> = None;
    let mut last_now = clock.now();
    // One timer for the whole loop, moved only when the deadline changes: a fresh `Sleep` per
    // packet re-registers with tokio's timer wheel each time, and an earlier registration
    // wakes the I/O driver through its eventfd (this was a fifth of the agent's CPU).
    let mut timer = Timer::new(clock.now());
    let mut objects_open = spec.transport == Transport::QuicStream;
    let end = loop {
        let now = clock.now();
        if now >= give_up {
            break ViewEnd::Duration;
        }
        if let Some(end) = stream_end
            && (receiver.playout_done() || now >= end + Duration::from_secs(1))
        {
            break ViewEnd::StreamEnded;
        }
        if now >= next_window {
            spec.self_noise.note_into(&mut receiver);
            let w = receiver.take_window(now);
            progress.add(&w);
            total.merge(&w);
            rtt.record_nanos_as_micros(session.conn.rtt().as_nanos() as u64);
            receiver.on_rtt_sample(session.conn.rtt());
            next_window = now + Duration::from_secs(1);
        }
        // Repair feedback due after the last packet or timeout, on the control stream (QUIC
        // delivers it reliably; it is small and rare next to the media).
        let mut feedback = Vec::new();
        while let Some(f) = receiver.poll_feedback(now) {
            feedback.extend(super::feedback_message(session.stream_id, f).map(|m| m.encode()));
        }
        if !feedback.is_empty() && stream_end.is_none() {
            let frames = feedback.concat();
            if session.control_tx.write_all(&frames).await.is_err() {
                break ViewEnd::ConnectionLost("the control stream to the relay closed".into());
            }
        }
        let wake = [receiver.poll_timeout(), Some(next_window), Some(give_up)]
            .into_iter()
            .flatten()
            .min()
            .expect("at least one deadline");
        timer.set(wake);
        tokio::select! {
            datagram = session.conn.read_datagram(), if spec.transport == Transport::QuicDatagram && stream_end.is_none() => {
                match datagram {
                    Ok(bytes) => {
                        let now = clock.now();
                        if let Ok(h) = MediaHeader::decode_packet(&bytes)
                            && h.stream_id == session.stream_id
                        {
                            receiver.on_packet(now, &h);
                        }
                    }
                    Err(e) => match stream_end_reason(&e) {
                        Some(()) => stream_end = Some(clock.now() + spec.receiver.playout_delay),
                        None => break ViewEnd::ConnectionLost(e.to_string()),
                    },
                }
            }
            object = objects.recv(), if objects_open => {
                // Once the relay closes the connection every reader ends and the channel
                // closes: stop polling it (a closed channel is always ready, and polling it
                // would spin a core until the last frames have played).
                objects_open = object.is_some();
                // Take every object already queued in one pass (a frame's readers often finish
                // together), then go round the loop once.
                let mut next = object;
                while let Some((at, h)) = next {
                    // Readers race each other; time never runs backwards for the receiver.
                    last_now = last_now.max(at);
                    if h.stream_id == session.stream_id {
                        receiver.on_packet(last_now, &h);
                    }
                    next = objects.try_recv().ok();
                }
            }
            msg = session.control_rx.recv(), if stream_end.is_none() => match msg {
                Some(Control::Goodbye) | None => {
                    stream_end = Some(clock.now() + spec.receiver.playout_delay);
                }
                Some(_) => {}
            },
            _ = super::cancelled(&mut cancel) => break ViewEnd::Cancelled,
            _ = timer.wait() => receiver.handle_timeout(clock.now()),
        }
    };
    let quic = QuicPath::of(&session.conn);
    let _ = session.control_tx.write_all(&Control::Goodbye.encode()).await;
    session.conn.close(0u32.into(), b"done");
    let now = clock.now();
    spec.self_noise.note_into(&mut receiver);
    let last = receiver.finish(stream_end.map_or(now, |end| end.min(now)));
    progress.add(&last);
    total.merge(&last);
    Ok(ViewOutcome { total, rtt, quic: Some(quic), end })
}

/// Whether a connection error is the relay ending the stream normally (close code 0).
fn stream_end_reason(e: &quinn::ConnectionError) -> Option<()> {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) if close.error_code == 0u32.into() => {
            Some(())
        }
        quinn::ConnectionError::LocallyClosed => Some(()),
        _ => None,
    }
}
