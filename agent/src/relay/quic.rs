//! The QUIC side: one endpoint, and the ALPN picks the transport. Control runs on the first
//! bidirectional stream the client opens. quic-stream media: objects (header, then payload)
//! back to back on unidirectional streams, one per GOP (video and audio in send order).
//! quic-datagram media: one packet per datagram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use quinn::{Connection, Endpoint, Incoming, RecvStream, SendStream};
use stallwatch_measure::repair::Retransmitter;
use stallwatch_proto::control::{Control, ControlError};
use stallwatch_proto::media::{MEDIA_HEADER_LEN, MediaHeader};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tracing::{debug, info};

use super::Transport;
use super::hub::{
    Backlog, Delivery, Feed, Hub, MAX_OBJECT_PAYLOAD, Publication, Refusal, Subscription,
    WireBuilder, decode_media, zeros,
};
use super::session::{Action, Session, bad_request};
use super::source::{Kind, SourceCaps, SourceGuard};
use super::stats::{Counters, Malformed, bump};
use super::udp::retransmit_budget;
use super::{start_publication, transport_from_alpn};
use crate::clock::Clock;
use crate::transport::Timer;

/// Application close code: a clean end (goodbye, stream over, relay shutting down).
const CLOSE_OK: u32 = 0;
/// Application close code: a protocol violation (no control stream, undecodable control).
const CLOSE_PROTOCOL: u32 = 1;
/// Stream reset code: a newer GOP superseded this one for this viewer.
const RESET_SUPERSEDED: u32 = 1;
/// STOP_SENDING code for media streams the relay does not take (from a viewer).
const STOP_REFUSED: u32 = 2;

/// How long a new connection has to open its control stream.
const CONTROL_STREAM_WAIT: Duration = Duration::from_secs(10);
/// How long a goodbye (or a last error) may take to be acknowledged before the close.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);
/// How long a viewer's last GOP streams may take to be acknowledged when its stream ends.
const FLUSH_WAIT: Duration = Duration::from_secs(2);
/// How long a publisher's open media streams may take to finish after its goodbye.
const DRAIN_WAIT: Duration = Duration::from_secs(1);
/// How long after subscribing a quic-datagram viewer's queue may wait for PMTUD to make room
/// for a datagram that does not fit yet (PMTUD takes a few round trips).
const MTU_GRACE: Duration = Duration::from_secs(1);
/// How often a waiting datagram checks the viewer's `max_datagram_size`.
const MTU_POLL: Duration = Duration::from_millis(1);
/// quinn's send window on viewer connections: data written but not yet acknowledged. Past it,
/// objects wait in the relay's queue, where a newer GOP can supersede them.
const VIEWER_SEND_WINDOW: u64 = 512 * 1024;

/// What every QUIC session needs.
#[derive(Clone)]
pub(crate) struct Context {
    pub hub: Arc<Hub>,
    pub counters: Arc<Counters>,
    /// Per-source-address caps on connections and streams.
    pub sources: Arc<SourceCaps>,
    /// How soon a connection must send its first publish or subscribe.
    pub request_timeout: Duration,
    pub shutdown: watch::Receiver<bool>,
}

/// Completes when the relay shuts down (or its handle is gone).
pub(crate) async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Accepts connections until shutdown, then gives sessions a bounded time to say goodbye.
pub(crate) async fn accept_loop(endpoint: Endpoint, ctx: Context) {
    let mut shutdown = ctx.shutdown.clone();
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    let remote = incoming.remote_address();
                    match ctx.sources.try_hold(remote.ip(), Kind::Session) {
                        Some(hold) => {
                            sessions.spawn(serve(incoming, ctx.clone(), hold));
                        }
                        None => {
                            // Before the handshake: a host over its cap costs no TLS work.
                            bump(&ctx.counters.source_cap_refusals);
                            debug!(%remote, "QUIC connection refused: its address holds its limit");
                            incoming.refuse();
                        }
                    }
                }
                None => break,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = until_shutdown(&mut shutdown) => break,
        }
    }
    let all_done = async { while sessions.join_next().await.is_some() {} };
    if timeout(2 * GOODBYE_WAIT, all_done).await.is_err() {
        debug!(left = sessions.len(), "QUIC sessions still open at shutdown; aborting them");
    }
    sessions.shutdown().await;
}

/// Serves one connection; `_hold` is its slot in the per-address connection cap.
async fn serve(incoming: Incoming, ctx: Context, _hold: SourceGuard) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            debug!(%remote, error = %e, "QUIC handshake failed");
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    let Some(transport) = alpn.as_deref().and_then(transport_from_alpn) else {
        debug!(%remote, "QUIC connection without a stallwatch ALPN");
        conn.close(CLOSE_PROTOCOL.into(), b"no stallwatch ALPN");
        return;
    };
    debug!(%remote, %transport, "QUIC connection");
    QuicSession { conn, transport, remote, ctx }.run().await;
}

/// How a session ended.
enum End {
    /// The client said goodbye.
    Goodbye,
    /// The client finished its control stream.
    ControlFinished,
    /// The viewed stream ended (its publisher left).
    StreamEnded,
    /// The relay is shutting down.
    Shutdown,
    /// The client broke the control framing.
    Protocol(ControlFail),
    /// The connection is gone.
    Lost,
}

/// What the driver does after a control message.
enum Flow {
    Continue,
    End(End),
    /// An action only the current loop can carry out (a request, a NACK, a keyframe request).
    Act(Action),
}

/// The session's control state; QUIC keeps its publication and subscription in its loops.
type Machine = Session<(), ()>;

struct QuicSession {
    conn: Connection,
    transport: Transport,
    remote: SocketAddr,
    ctx: Context,
}

impl QuicSession {
    async fn run(self) {
        let mut shutdown = self.ctx.shutdown.clone();
        // Until the first publish or subscribe: a connection that only holds a slot (and
        // keeps itself alive with pings or QUIC keep-alives) is closed.
        let mut request_due = Some(Clock::global().tokio_instant() + self.ctx.request_timeout);
        let accepted = tokio::select! {
            accepted = timeout(CONTROL_STREAM_WAIT, self.conn.accept_bi()) => accepted,
            _ = sleep_until_due(request_due) => {
                self.no_request_in_time();
                return;
            }
            _ = until_shutdown(&mut shutdown) => {
                self.conn.close(CLOSE_OK.into(), b"relay shutting down");
                return;
            }
        };
        let (send, recv) = match accepted {
            Ok(Ok(streams)) => streams,
            Ok(Err(e)) => {
                debug!(remote = %self.remote, error = %e, "connection lost before its control stream");
                return;
            }
            Err(_) => {
                debug!(remote = %self.remote, "no control stream in time");
                self.conn.close(CLOSE_PROTOCOL.into(), b"no control stream");
                return;
            }
        };
        let mut control = ControlStream::new(send, recv);
        let mut machine = Machine::new(self.transport, 0);
        loop {
            let msg = tokio::select! {
                msg = control.next() => msg,
                _ = sleep_until_due(request_due) => {
                    self.no_request_in_time();
                    return;
                }
                _ = until_shutdown(&mut shutdown) => {
                    self.goodbye(&mut control, b"relay shutting down").await;
                    return;
                }
            };
            if matches!(msg, Ok(Some(Control::Publish { .. } | Control::Subscribe { .. }))) {
                // Refused ones count too: a viewer may wait for its publisher.
                request_due = None;
            }
            let flow = self.respond(&mut control, &mut machine, msg).await;
            let reply = match flow {
                Flow::Continue => continue,
                Flow::End(end) => return self.finish(&mut control, end).await,
                Flow::Act(Action::Publish { stream }) => {
                    let ctx = &self.ctx;
                    let started = start_publication(
                        &ctx.hub,
                        &ctx.sources,
                        &ctx.counters,
                        self.remote,
                        &stream,
                        self.transport,
                    );
                    match started {
                        Ok((publication, stream_hold)) => {
                            machine.published(&stream, publication.stream_id(), ());
                            if !control.send(&machine.ok(publication.stream_id())).await {
                                return;
                            }
                            return self.publish(control, machine, publication, stream_hold).await;
                        }
                        Err(refusal) => refusal,
                    }
                }
                Flow::Act(Action::Subscribe { stream, start }) => {
                    match self.ctx.hub.subscribe(&stream, self.transport, start) {
                        Ok(subscription) => {
                            machine.subscribed(&stream, subscription.stream_id, ());
                            if !control.send(&machine.ok(subscription.stream_id)).await {
                                return;
                            }
                            return self.view(control, machine, subscription).await;
                        }
                        Err(refusal) => refused(self.remote, &refusal, &stream),
                    }
                }
                // NACKs and keyframe requests: the machine asks for them only while viewing.
                Flow::Act(_) => continue,
            };
            if !control.send(&reply).await {
                return;
            }
        }
    }

    /// Hands the next control message (or the stream's end) to the machine and carries out
    /// what every phase does alike: replies, pongs, counting, goodbye.
    async fn respond(
        &self,
        control: &mut ControlStream,
        machine: &mut Machine,
        msg: Result<Option<Control>, ControlFail>,
    ) -> Flow {
        let msg = match msg {
            Ok(Some(msg)) => msg,
            Ok(None) => return Flow::End(End::ControlFinished),
            Err(ControlFail::Lost) => return Flow::End(End::Lost),
            Err(fail) => return Flow::End(End::Protocol(fail)),
        };
        let name = msg.kind();
        let reply = match machine.on_control(Clock::global().now(), msg) {
            Action::Nothing => return Flow::Continue,
            Action::Reply(reply) => reply,
            Action::Pong(pong) => pong.at(Clock::global().now().as_nanos()),
            Action::Goodbye => return Flow::End(End::Goodbye),
            Action::Unexpected { reply } => {
                self.ctx.counters.malformed(Malformed::UnexpectedControl);
                debug!(remote = %self.remote, msg = name, "unexpected control message");
                match reply {
                    Some(reply) => reply,
                    None => return Flow::Continue,
                }
            }
            other => return Flow::Act(other),
        };
        match control.send(&reply).await {
            true => Flow::Continue,
            false => Flow::End(End::Lost),
        }
    }

    /// Feeds a publisher's media into the hub until it leaves.
    async fn publish(
        self,
        mut control: ControlStream,
        mut machine: Machine,
        publication: Publication,
        _stream_hold: SourceGuard,
    ) {
        let publication = Arc::new(publication);
        info!(
            remote = %self.remote,
            stream = publication.name(),
            stream_id = publication.stream_id(),
            transport = %self.transport,
            "publisher started"
        );
        let counters = self.ctx.counters.clone();
        let mut shutdown = self.ctx.shutdown.clone();
        let mut readers = JoinSet::new();
        // quic-datagram: the relay repairs its publisher leg as viewers repair theirs.
        let mut nack_timer = Timer::new(Clock::global().now());
        let end = loop {
            let nack_due = machine.nack_due();
            if let Some(due) = nack_due {
                nack_timer.set(due);
            }
            tokio::select! {
                _ = nack_timer.wait(), if nack_due.is_some() => {
                    if !send_nacks(&mut machine, &mut control, &counters).await {
                        break End::Lost;
                    }
                }
                _ = publication.keyframe_requested() => {
                    if !control.send(&Control::KeyframeRequest { stream_id: publication.stream_id() }).await {
                        break End::Lost;
                    }
                    bump(&counters.keyframe_requests_forwarded);
                }
                msg = control.next() => match self.respond(&mut control, &mut machine, msg).await {
                    Flow::End(end) => break end,
                    // The machine asks a publisher for nothing else.
                    Flow::Continue | Flow::Act(_) => {}
                },
                uni = self.conn.accept_uni() => match uni {
                    Ok(recv) if self.transport == Transport::QuicStream => {
                        readers.spawn(read_objects(recv, publication.clone(), counters.clone()));
                    }
                    Ok(mut recv) => {
                        counters.malformed(Malformed::NotPublisher);
                        let _ = recv.stop(STOP_REFUSED.into());
                    }
                    Err(_) => break End::Lost,
                },
                datagram = self.conn.read_datagram() => match datagram {
                    Ok(data) if self.transport == Transport::QuicDatagram => {
                        match decode_media(&data, publication.stream_id()) {
                            Ok(header) => {
                                counters.media_in(Transport::QuicDatagram, data.len());
                                publication.on_packet(&header);
                                machine.on_media(Clock::global().now(), &header, Some(self.conn.rtt()));
                            }
                            Err(reason) => {
                                counters.malformed(reason);
                                debug!(remote = %self.remote, reason = reason.name(), "bad media datagram");
                            }
                        }
                    }
                    Ok(_) => counters.malformed(Malformed::NotPublisher),
                    Err(_) => break End::Lost,
                },
                Some(_) = readers.join_next(), if !readers.is_empty() => {}
                _ = until_shutdown(&mut shutdown) => break End::Shutdown,
            }
        };
        if matches!(end, End::Goodbye | End::ControlFinished) {
            // Objects sent before the goodbye may still be arriving on their own streams.
            let drained = async { while readers.join_next().await.is_some() {} };
            let _ = timeout(DRAIN_WAIT, drained).await;
        }
        readers.shutdown().await;
        publication.end();
        info!(remote = %self.remote, stream = publication.name(), "publisher ended");
        self.finish(&mut control, end).await;
    }

    /// Delivers a stream to a viewer until it ends or the viewer leaves.
    async fn view(
        self,
        mut control: ControlStream,
        mut machine: Machine,
        subscription: Subscription,
    ) {
        let Subscription { stream_id: _, feed, guard } = subscription;
        debug!(
            remote = %self.remote,
            stream = guard.stream_name(),
            transport = %self.transport,
            "viewer subscribed"
        );
        let counters = self.ctx.counters.clone();
        let mut writer: JoinHandle<bool> = match self.transport {
            Transport::QuicStream => {
                self.conn.set_send_window(VIEWER_SEND_WINDOW);
                tokio::spawn(write_objects(self.conn.clone(), feed, counters.clone()))
            }
            _ => tokio::spawn(write_datagrams(self.conn.clone(), feed, counters.clone())),
        };
        let mut retransmitter = Retransmitter::new(retransmit_budget(DATAGRAM_VIEWER_BUDGET_BPS));
        let mut shutdown = self.ctx.shutdown.clone();
        let end = loop {
            tokio::select! {
                msg = control.next() => match self.respond(&mut control, &mut machine, msg).await {
                    Flow::Continue => {}
                    Flow::End(end) => break end,
                    Flow::Act(Action::Retransmit(nack)) => {
                        bump(&counters.nacks_received);
                        retransmitter.on_rtt_sample(self.conn.rtt());
                        let now = Clock::global().now();
                        for wire in guard.retransmit(now, &nack, &mut retransmitter) {
                            let len = wire.len();
                            if self.conn.send_datagram(wire).is_ok() {
                                counters.media_out(Transport::QuicDatagram, len);
                                bump(&counters.retransmitted);
                            }
                        }
                    }
                    Flow::Act(Action::ForwardKeyframeRequest { .. }) => {
                        bump(&counters.keyframe_requests_received);
                        // The hub wakes the publisher's session if the gate lets it through.
                        guard.forward_keyframe_request(Clock::global().now());
                    }
                    // The machine asks a viewing session for nothing else.
                    Flow::Act(_) => {}
                },
                stream_ended = &mut writer => {
                    break if stream_ended.unwrap_or(false) { End::StreamEnded } else { End::Lost };
                }
                uni = self.conn.accept_uni() => match uni {
                    Ok(mut recv) => {
                        counters.malformed(Malformed::NotPublisher);
                        let _ = recv.stop(STOP_REFUSED.into());
                    }
                    Err(_) => break End::Lost,
                },
                datagram = self.conn.read_datagram() => match datagram {
                    Ok(_) => counters.malformed(Malformed::NotPublisher),
                    Err(_) => break End::Lost,
                },
                _ = until_shutdown(&mut shutdown) => break End::Shutdown,
            }
        };
        if !matches!(end, End::StreamEnded) {
            writer.abort();
        }
        debug!(remote = %self.remote, stream = guard.stream_name(), "viewer left");
        drop(guard);
        self.finish(&mut control, end).await;
    }

    /// Closes the connection the way `end` calls for.
    async fn finish(&self, control: &mut ControlStream, end: End) {
        match end {
            End::Goodbye => self.conn.close(CLOSE_OK.into(), b"goodbye"),
            End::ControlFinished => self.conn.close(CLOSE_OK.into(), b"control stream finished"),
            End::StreamEnded => {
                let _ = timeout(GOODBYE_WAIT, control.send_last(&Control::Goodbye)).await;
                // Let the viewer close first: it does once every packet has arrived (or soon
                // after the goodbye), and until then QUIC keeps retransmitting what is still in
                // flight on earlier GOP streams; closing now would drop it and the viewer would
                // count it lost.
                let _ = timeout(FLUSH_WAIT, self.conn.closed()).await;
                self.conn.close(CLOSE_OK.into(), b"stream ended");
            }
            End::Shutdown => self.goodbye(control, b"relay shutting down").await,
            End::Protocol(fail) => self.protocol_error(control, fail).await,
            End::Lost => {}
        }
    }

    /// Sends `Goodbye` on the control stream, waits (boundedly) for it to be acknowledged,
    /// then closes with code 0.
    async fn goodbye(&self, control: &mut ControlStream, reason: &'static [u8]) {
        let _ = timeout(GOODBYE_WAIT, control.send_last(&Control::Goodbye)).await;
        self.conn.close(CLOSE_OK.into(), reason);
    }

    /// An undecodable control frame: the stream cannot be resynchronised, so answer
    /// `BadRequest` and close with code 1.
    async fn protocol_error(&self, control: &mut ControlStream, fail: ControlFail) {
        self.ctx.counters.malformed(Malformed::ControlFrame);
        let message = match &fail {
            ControlFail::Malformed(e) => format!("bad control frame: {e}"),
            ControlFail::Truncated => "control stream ended inside a frame".to_owned(),
            ControlFail::Lost => return,
        };
        debug!(remote = %self.remote, error = %message, "closing a connection with bad control");
        let _ = timeout(GOODBYE_WAIT, control.send_last(&bad_request(&message))).await;
        self.conn.close(CLOSE_PROTOCOL.into(), b"bad control frame");
    }

    /// The connection sent no publish or subscribe in time: close it (code 1).
    fn no_request_in_time(&self) {
        bump(&self.ctx.counters.request_timeouts);
        debug!(remote = %self.remote, "no publish or subscribe in time; closing");
        self.conn.close(CLOSE_PROTOCOL.into(), b"no request in time");
    }
}

fn refused(remote: SocketAddr, refusal: &Refusal, stream: &str) -> Control {
    debug!(%remote, stream, code = ?refusal.code, reason = %refusal.message, "refused");
    refusal.to_control()
}

/// What the relay may resend to a quic-datagram viewer per second (QUIC's congestion control
/// paces it further).
const DATAGRAM_VIEWER_BUDGET_BPS: u64 = 50_000_000;

/// Sends the publisher the NACKs due now on its control stream; false if it is gone.
async fn send_nacks(
    machine: &mut Machine,
    control: &mut ControlStream,
    counters: &Counters,
) -> bool {
    for nack in machine.poll_nacks(Clock::global().now()) {
        if !control.send(&nack).await {
            return false;
        }
        bump(&counters.nacks_sent);
    }
    true
}

/// Why reading the control stream failed.
enum ControlFail {
    Malformed(ControlError),
    /// Finished inside a frame.
    Truncated,
    /// Reset or connection lost.
    Lost,
}

/// Control frames over a bidirectional stream.
struct ControlStream {
    send: SendStream,
    recv: RecvStream,
    buf: BytesMut,
    finished: bool,
}

impl ControlStream {
    fn new(send: SendStream, recv: RecvStream) -> ControlStream {
        ControlStream { send, recv, buf: BytesMut::with_capacity(256), finished: false }
    }

    /// The next message, `None` once the client finished the stream. Cancel-safe: bytes are
    /// only taken from quinn when a read completes, and kept here until a frame is whole.
    async fn next(&mut self) -> Result<Option<Control>, ControlFail> {
        loop {
            match Control::decode_frame(&self.buf) {
                Ok(Some((msg, used))) => {
                    self.buf.advance(used);
                    return Ok(Some(msg));
                }
                Ok(None) => {}
                Err(e) => return Err(ControlFail::Malformed(e)),
            }
            if self.finished {
                return if self.buf.is_empty() { Ok(None) } else { Err(ControlFail::Truncated) };
            }
            match self.recv.read_chunk(4096, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => self.finished = true,
                Err(_) => return Err(ControlFail::Lost),
            }
        }
    }

    /// Sends one message; false if the connection is gone.
    async fn send(&mut self, msg: &Control) -> bool {
        self.send.write_all(&msg.encode()).await.is_ok()
    }

    /// Sends a last message, finishes the stream and waits until the peer has it.
    async fn send_last(&mut self, msg: &Control) {
        if self.send(msg).await && self.send.finish().is_ok() {
            let _ = self.send.stopped().await;
        }
    }
}

/// Reads one publisher media stream: objects back to back, payload discarded unread.
async fn read_objects(
    mut recv: RecvStream,
    publication: Arc<Publication>,
    counters: Arc<Counters>,
) {
    let mut head = [0u8; MEDIA_HEADER_LEN];
    loop {
        match recv.read_exact(&mut head).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return,
            Err(quinn::ReadExactError::FinishedEarly(_)) => {
                counters.malformed(Malformed::TruncatedObject);
                return;
            }
            // Reset by the publisher (it dropped an old GOP) or the connection is gone.
            Err(quinn::ReadExactError::ReadError(_)) => return,
        }
        let header = match MediaHeader::decode(&head) {
            Ok(header) if header.payload_len as usize <= MAX_OBJECT_PAYLOAD => header,
            Ok(header) => {
                counters.malformed(Malformed::PayloadTooLarge);
                debug!(
                    payload_len = header.payload_len,
                    "media object too large; stopping its stream"
                );
                let _ = recv.stop(STOP_REFUSED.into());
                return;
            }
            Err(e) => {
                counters.malformed(Malformed::MediaHeader);
                debug!(error = %e, "bad media object header; stopping its stream");
                let _ = recv.stop(STOP_REFUSED.into());
                return;
            }
        };
        let mut left = header.payload_len as usize;
        while left > 0 {
            match recv.read_chunk(left, true).await {
                Ok(Some(chunk)) => left -= chunk.bytes.len(),
                Ok(None) => {
                    counters.malformed(Malformed::TruncatedObject);
                    return;
                }
                Err(_) => return,
            }
        }
        if header.stream_id != publication.stream_id() {
            counters.malformed(Malformed::WrongStreamId);
            continue;
        }
        counters.media_in(Transport::QuicStream, MEDIA_HEADER_LEN + header.payload_len as usize);
        publication.on_packet(&header);
    }
}

/// Sleeps until `due`; never without one.
async fn sleep_until_due(due: Option<tokio::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A viewer's QUIC stream for one GOP. `send` is `None` once that GOP is dead for the viewer
/// (reset by the relay or stopped by the viewer).
struct Track {
    gop: u32,
    send: Option<SendStream>,
}

impl Track {
    fn finish(&mut self) {
        if let Some(mut send) = self.send.take() {
            let _ = send.finish();
        }
    }
}

/// A quic-stream viewer's open GOP streams: the newest GOP's, and the one before it. The
/// publisher's GOP streams are independent, so the last objects of a GOP can reach the relay
/// after the next GOP's first ones (a retransmission on the publisher's leg): the previous
/// GOP's stream stays open for them until the GOP after next starts. Finishing it at once
/// dropped them, and the viewer counted them lost on a reliable transport.
#[derive(Default)]
struct Tracks {
    current: Option<Track>,
    previous: Option<Track>,
}

/// Writes a quic-stream viewer's queue: a uni stream per GOP, newest group wins. True if the
/// viewed stream ended, false if the connection was lost.
async fn write_objects(conn: Connection, mut feed: Feed, counters: Arc<Counters>) -> bool {
    let backlog = feed.backlog.take().unwrap_or_default();
    let mut tracks = Tracks::default();
    while let Some(delivery) = feed.recv().await {
        let result = write_object(&conn, &mut tracks, &backlog, &delivery, &counters).await;
        backlog.done();
        if result.is_err() {
            return false;
        }
    }
    if let Some(previous) = tracks.previous.as_mut() {
        previous.finish();
    }
    if let Some(mut send) = tracks.current.and_then(|t| t.send) {
        // The last GOP: give it time to arrive before the goodbye.
        let _ = send.finish();
        let _ = timeout(FLUSH_WAIT, send.stopped()).await;
    }
    true
}

/// The connection is gone.
struct Lost;

async fn write_object(
    conn: &Connection,
    tracks: &mut Tracks,
    backlog: &Backlog,
    delivery: &Delivery,
    counters: &Counters,
) -> Result<(), Lost> {
    let gop = delivery.header.gop;
    let skip_below = backlog.skip_below();
    if gop < skip_below {
        // Superseded while queued: drop the rest of that GOP, and its stream if still open.
        for t in [&mut tracks.current, &mut tracks.previous].into_iter().flatten() {
            if t.gop < skip_below
                && let Some(mut send) = t.send.take()
            {
                let _ = send.reset(RESET_SUPERSEDED.into());
                bump(&counters.gops_reset);
            }
        }
        bump(&counters.objects_skipped);
        return Ok(());
    }
    let t = match &mut tracks.current {
        // A late object of the previous GOP: its stream is still open.
        Some(t) if gop < t.gop => match &mut tracks.previous {
            Some(previous) if previous.gop == gop => previous,
            // Older still: this viewer has moved past it.
            _ => {
                bump(&counters.objects_skipped);
                return Ok(());
            }
        },
        Some(t) if gop == t.gop => t,
        _ => {
            if let Some(older) = &tracks.current
                && older.gop < gop
            {
                // The GOP before the current one is done; the current one may still get late
                // objects until the GOP after it starts.
                if let Some(previous) = tracks.previous.as_mut() {
                    previous.finish();
                }
                tracks.previous = tracks.current.take();
            }
            let opened = tokio::select! {
                biased;
                _ = backlog.superseded(gop) => None,
                opened = conn.open_uni() => Some(opened.map_err(|_| Lost)?),
            };
            if let Some(send) = &opened {
                // quinn sends higher priorities first: newer GOPs.
                let _ = send.set_priority(i32::try_from(gop).unwrap_or(i32::MAX));
            }
            tracks.current.insert(Track { gop, send: opened })
        }
    };
    let Some(send) = t.send.as_mut() else {
        bump(&counters.objects_skipped);
        return Ok(());
    };
    let payload = delivery.header.payload_len as usize;
    let mut chunks = [Bytes::copy_from_slice(&delivery.header.to_bytes()), zeros(payload)];
    let written = tokio::select! {
        biased;
        _ = backlog.superseded(gop) => None,
        written = send.write_all_chunks(&mut chunks) => Some(written),
    };
    match written {
        Some(Ok(())) => counters.media_out(Transport::QuicStream, MEDIA_HEADER_LEN + payload),
        Some(Err(quinn::WriteError::ConnectionLost(_))) => return Err(Lost),
        Some(Err(_)) => {
            // The viewer stopped this GOP's stream: skip the rest of the GOP.
            t.send = None;
            bump(&counters.objects_skipped);
        }
        None => {
            if let Some(mut send) = t.send.take() {
                let _ = send.reset(RESET_SUPERSEDED.into());
            }
            bump(&counters.gops_reset);
            bump(&counters.objects_skipped);
        }
    }
    Ok(())
}

/// Writes a quic-datagram viewer's queue. True if the viewed stream ended, false if the
/// connection was lost.
///
/// A new connection's `max_datagram_size` starts at QUIC's minimum and grows as PMTUD probes
/// the path, while the publisher's has usually grown already: for [`MTU_GRACE`] after the
/// subscription a datagram that does not fit yet waits (and the queue behind it) instead of
/// being dropped, so a joining viewer gets the cached GOP. After that, too big is dropped.
async fn write_datagrams(conn: Connection, mut feed: Feed, counters: Arc<Counters>) -> bool {
    let clock = Clock::global();
    let grace_until = clock.instant() + MTU_GRACE;
    let mut wires = WireBuilder::default();
    while let Some(delivery) = feed.recv().await {
        let len = MEDIA_HEADER_LEN + delivery.header.payload_len as usize;
        let fits = loop {
            if conn.max_datagram_size().is_some_and(|max| len <= max) {
                break true;
            }
            if conn.close_reason().is_some() {
                return false;
            }
            if clock.instant() >= grace_until {
                break false;
            }
            tokio::time::sleep(MTU_POLL).await;
        };
        if !fits {
            bump(&counters.datagrams_too_big);
            continue;
        }
        if conn.datagram_send_buffer_space() < len {
            // quinn will drop older unsent datagrams to make room.
            bump(&counters.datagrams_displaced);
        }
        // The payload is added only now: the queue holds headers alone.
        match conn.send_datagram(wires.build(&delivery.header)) {
            Ok(()) => counters.media_out(Transport::QuicDatagram, len),
            Err(quinn::SendDatagramError::ConnectionLost(_)) => return false,
            Err(_) => bump(&counters.datagrams_too_big),
        }
    }
    true
}
