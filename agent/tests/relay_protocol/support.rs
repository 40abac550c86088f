//! A minimal relay client for tests: QUIC (both ALPNs) and plain UDP, plus synthetic media.

#![allow(dead_code, reason = "each test module uses a different part of the client")]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use stallwatch_agent::relay::{Relay, RelayConfig, RelayStats};
use stallwatch_agent::tls::{self, Identity, Trust};
use stallwatch_proto::control::{CONTROL_VERSION, Control, Role, StartAt, is_control, seal};
use stallwatch_proto::media::{FrameKind, MEDIA_HEADER_LEN, MediaHeader};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Every test body runs under this bound.
pub const TEST_BOUND: Duration = Duration::from_secs(30);
/// How long a client waits for one expected message.
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Runs a test body with a time bound.
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_BOUND, body).await.expect("test took too long");
}

/// An in-process relay and the pin to trust it by.
pub struct TestRelay {
    pub relay: Relay,
    pub pin: [u8; 32],
}

impl TestRelay {
    /// A loopback relay with default settings changed by `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut RelayConfig)) -> TestRelay {
        let identity = Identity::self_signed(&["localhost".into()]).unwrap();
        let pin = tls::parse_pin(&identity.fingerprint()).unwrap();
        let mut config = RelayConfig::loopback(identity);
        tweak(&mut config);
        TestRelay { relay: Relay::start(config).await.unwrap(), pin }
    }

    pub fn stats(&self) -> RelayStats {
        self.relay.stats()
    }

    /// Waits until the relay's stats satisfy `ok`.
    pub async fn wait_for(&self, what: &str, ok: impl Fn(&RelayStats) -> bool) -> RelayStats {
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        loop {
            let stats = self.stats();
            if ok(&stats) {
                return stats;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {stats:#?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A QUIC client with its control stream.
pub struct QuicClient {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    buf: Vec<u8>,
}

impl QuicClient {
    pub async fn connect(relay: &TestRelay, alpn: &[u8]) -> QuicClient {
        Self::connect_with(relay, alpn, |_| {}).await
    }

    /// Connects with transport settings changed by `tweak` (e.g. a small receive window).
    pub async fn connect_with(
        relay: &TestRelay,
        alpn: &[u8],
        tweak: impl FnOnce(&mut quinn::TransportConfig),
    ) -> QuicClient {
        Self::connect_to(relay.relay.quic_addr(), relay.pin, alpn, tweak).await
    }

    /// Connects to the relay at `addr` with certificate fingerprint `pin`.
    pub async fn connect_to(
        addr: SocketAddr,
        pin: [u8; 32],
        alpn: &[u8],
        tweak: impl FnOnce(&mut quinn::TransportConfig),
    ) -> QuicClient {
        let mut config = tls::client_config(&Trust::Pin(pin), alpn).unwrap();
        let mut transport = quinn::TransportConfig::default();
        transport.datagram_receive_buffer_size(Some(4 << 20));
        tweak(&mut transport);
        config.transport_config(Arc::new(transport));
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint.connect_with(config, addr, "localhost").unwrap().await.unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        QuicClient { endpoint, conn, send, recv, buf: Vec::new() }
    }

    pub async fn send(&mut self, msg: &Control) {
        self.send.write_all(&msg.encode()).await.unwrap();
    }

    /// The next control message, or `None` if the relay finished the stream.
    pub async fn recv(&mut self) -> Option<Control> {
        tokio::time::timeout(ANSWER_WAIT, async {
            loop {
                if let Some((msg, used)) = Control::decode_frame(&self.buf).unwrap() {
                    self.buf.drain(..used);
                    return Some(msg);
                }
                let mut chunk = [0u8; 1024];
                match self.recv.read(&mut chunk).await {
                    Ok(Some(n)) => self.buf.extend_from_slice(&chunk[..n]),
                    _ => return None,
                }
            }
        })
        .await
        .expect("no control message from the relay")
    }

    /// Hello with `role`, then `request`; the relay's answer.
    pub async fn request(&mut self, role: Role, request: Control) -> Control {
        self.send(&Control::Hello { version: CONTROL_VERSION, role, token: None, proof: None })
            .await;
        self.send(&request).await;
        self.recv().await.expect("an answer")
    }

    /// Publishes `stream`; the stream id.
    pub async fn publish(&mut self, stream: &str) -> u32 {
        match self.request(Role::Publisher, Control::Publish { stream: stream.into() }).await {
            Control::Ok { stream_id, .. } => stream_id,
            other => panic!("publish refused: {other:?}"),
        }
    }

    /// Subscribes to `stream`; the stream id.
    pub async fn subscribe(&mut self, stream: &str, start: StartAt) -> u32 {
        let request = Control::Subscribe { stream: stream.into(), start };
        match self.request(Role::Viewer, request).await {
            Control::Ok { stream_id, .. } => stream_id,
            other => panic!("subscribe refused: {other:?}"),
        }
    }

    /// The close the relay sent, waiting for it.
    pub async fn closed(&self) -> quinn::ConnectionError {
        tokio::time::timeout(ANSWER_WAIT, self.conn.closed()).await.expect("connection not closed")
    }
}

/// Whether a connection was closed by the relay with application code `code`.
pub fn closed_with(e: &quinn::ConnectionError, code: u32) -> bool {
    matches!(e, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == code.into())
}

/// Sends quic-stream objects: a uni stream per GOP (video and audio in send order), finished
/// when the next GOP starts.
pub struct ObjectWriter {
    conn: quinn::Connection,
    open: Option<(u32, quinn::SendStream)>,
}

impl ObjectWriter {
    pub fn new(conn: &quinn::Connection) -> ObjectWriter {
        ObjectWriter { conn: conn.clone(), open: None }
    }

    pub async fn write(&mut self, header: &MediaHeader) {
        if self.open.as_ref().is_none_or(|(gop, _)| *gop != header.gop) {
            if let Some((_, mut old)) = self.open.take() {
                old.finish().unwrap();
            }
            self.open = Some((header.gop, self.conn.open_uni().await.unwrap()));
        }
        let (_, stream) = self.open.as_mut().unwrap();
        stream.write_all(&packet(header)).await.unwrap();
    }

    pub fn finish(&mut self) {
        if let Some((_, mut s)) = self.open.take() {
            let _ = s.finish();
        }
    }
}

/// Reads every quic-stream object the relay sends a viewer (all GOP streams, in arrival order).
pub fn read_objects(conn: &quinn::Connection) -> mpsc::UnboundedReceiver<Result<MediaHeader, u64>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let conn = conn.clone();
    tokio::spawn(async move {
        while let Ok(mut stream) = conn.accept_uni().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let mut head = [0u8; MEDIA_HEADER_LEN];
                    match stream.read_exact(&mut head).await {
                        Ok(()) => {}
                        Err(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code))) => {
                            let _ = tx.send(Err(code.into_inner()));
                            return;
                        }
                        Err(_) => return,
                    }
                    let header = MediaHeader::decode(&head).unwrap();
                    let mut payload = vec![0u8; header.payload_len as usize];
                    match stream.read_exact(&mut payload).await {
                        Ok(()) => {}
                        Err(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code))) => {
                            let _ = tx.send(Err(code.into_inner()));
                            return;
                        }
                        Err(e) => panic!("object cut short: {e}"),
                    }
                    assert!(payload.iter().all(|&b| b == 0), "payload is regenerated as zeros");
                    let _ = tx.send(Ok(header));
                }
            });
        }
    });
    rx
}

/// Receives `n` media datagrams on a QUIC connection.
pub async fn read_datagrams(conn: &quinn::Connection, n: usize) -> Vec<MediaHeader> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let bytes = tokio::time::timeout(ANSWER_WAIT, conn.read_datagram())
            .await
            .unwrap_or_else(|_| panic!("got {} of {n} datagrams", out.len()))
            .unwrap();
        out.push(MediaHeader::decode_packet(&bytes).unwrap());
    }
    out
}

/// A plain UDP client. Once it has an `Ok`, it seals what it sends with the session nonce.
pub struct UdpClient {
    pub socket: UdpSocket,
    pub relay: SocketAddr,
    /// The nonce of the last `Ok` received (0: none yet).
    session: AtomicU64,
}

/// What a UDP client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Control(Control),
    Media(MediaHeader),
}

impl UdpClient {
    pub async fn new(relay: &TestRelay) -> UdpClient {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        UdpClient { socket, relay: relay.relay.udp_addr(), session: AtomicU64::new(0) }
    }

    /// A client on `socket` (e.g. one sharing another's address with `SO_REUSEPORT`).
    pub fn on_socket(relay: &TestRelay, socket: UdpSocket) -> UdpClient {
        UdpClient { socket, relay: relay.relay.udp_addr(), session: AtomicU64::new(0) }
    }

    /// The session nonce from the relay's last `Ok` (0 before one).
    pub fn session(&self) -> u64 {
        self.session.load(Ordering::Relaxed)
    }

    pub async fn send(&self, msg: &Control) {
        self.send_raw(&msg.encode()).await;
    }

    /// Sends `bytes`, sealed with the session nonce once there is one.
    pub async fn send_raw(&self, bytes: &[u8]) {
        let mut datagram = bytes.to_vec();
        match self.session() {
            0 => {}
            session => seal(&mut datagram, session),
        }
        self.send_unsealed(&datagram).await;
    }

    /// Sends `bytes` as they are.
    pub async fn send_unsealed(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.relay).await.unwrap();
    }

    /// The next datagram from the relay within `wait`, raw.
    pub async fn recv_raw(&self, wait: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (len, from) =
                tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await.ok()?.unwrap();
            if from == self.relay {
                return Some(buf[..len].to_vec());
            }
        }
    }

    /// The next datagram from the relay within `wait`, decoded.
    pub async fn recv_within(&self, wait: Duration) -> Option<Received> {
        let bytes = self.recv_raw(wait).await?;
        Some(if is_control(bytes[0]) {
            let msg = Control::decode_datagram(&bytes).unwrap();
            if let Control::Ok { session, .. } = msg {
                self.session.store(session, Ordering::Relaxed);
            }
            Received::Control(msg)
        } else {
            Received::Media(MediaHeader::decode_packet(&bytes).unwrap())
        })
    }

    /// The next control message, skipping media.
    pub async fn recv_control(&self) -> Control {
        loop {
            match self.recv_within(ANSWER_WAIT).await.expect("no answer from the relay") {
                Received::Control(msg) => return msg,
                Received::Media(_) => {}
            }
        }
    }

    /// Hello, challenge, hello with the token: the address is verified.
    pub async fn verify(&self, role: Role) {
        self.verify_proving(role, |_| None).await;
    }

    /// [`UdpClient::verify`] with the credential proof `proof` makes from the relay's token.
    pub async fn verify_proving(&self, role: Role, proof: impl Fn(&[u8; 16]) -> Option<[u8; 16]>) {
        self.send(&Control::Hello { version: CONTROL_VERSION, role, token: None, proof: None })
            .await;
        let Control::Challenge { token } = self.recv_control().await else {
            panic!("no challenge");
        };
        let proof = proof(&token);
        self.send(&Control::Hello { version: CONTROL_VERSION, role, token: Some(token), proof })
            .await;
    }

    pub async fn request(&self, role: Role, request: Control) -> Control {
        self.verify(role).await;
        self.send(&request).await;
        self.recv_control().await
    }

    pub async fn publish(&self, stream: &str) -> u32 {
        match self.request(Role::Publisher, Control::Publish { stream: stream.into() }).await {
            Control::Ok { stream_id, .. } => stream_id,
            other => panic!("publish refused: {other:?}"),
        }
    }

    pub async fn subscribe(&self, stream: &str, start: StartAt) -> u32 {
        let request = Control::Subscribe { stream: stream.into(), start };
        match self.request(Role::Viewer, request).await {
            Control::Ok { stream_id, .. } => stream_id,
            other => panic!("subscribe refused: {other:?}"),
        }
    }

    /// Receives `n` media packets, failing on anything else but pongs.
    pub async fn recv_media(&self, n: usize) -> Vec<MediaHeader> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.recv_within(ANSWER_WAIT).await {
                Some(Received::Media(h)) => out.push(h),
                Some(Received::Control(Control::Pong { .. })) => {}
                other => panic!("after {} of {n} packets: {other:?}", out.len()),
            }
        }
        out
    }
}

/// The wire image of a packet: header then zeros.
pub fn packet(header: &MediaHeader) -> Bytes {
    let mut out = vec![0u8; MEDIA_HEADER_LEN + header.payload_len as usize];
    header.encode_into(&mut out);
    out.into()
}

/// Synthetic media: GOPs of `frames` video frames (the keyframe in `key_frags` fragments)
/// with one audio packet after each frame; `seq` runs on from the last call.
pub struct Media {
    pub stream_id: u32,
    pub frames: u32,
    pub key_frags: u16,
    pub payload: u32,
    pub seq: u64,
}

impl Media {
    pub fn new(stream_id: u32) -> Media {
        Media { stream_id, frames: 6, key_frags: 3, payload: 400, seq: 0 }
    }

    /// The packets of GOP `gop`.
    pub fn gop(&mut self, gop: u32) -> Vec<MediaHeader> {
        let mut out = Vec::new();
        for f in 0..self.frames {
            let frame = gop * self.frames + f;
            let (kind, frags) =
                if f == 0 { (FrameKind::Key, self.key_frags) } else { (FrameKind::Predicted, 1) };
            for frag_index in 0..frags {
                out.push(self.header(kind, gop, frame, frag_index, frags));
            }
            out.push(self.header(FrameKind::Audio, gop, frame, 0, 1));
        }
        out
    }

    fn header(
        &mut self,
        kind: FrameKind,
        gop: u32,
        frame: u32,
        frag_index: u16,
        frag_count: u16,
    ) -> MediaHeader {
        let seq = self.seq;
        self.seq += 1;
        MediaHeader {
            kind,
            flags: 0,
            frag_index,
            frag_count,
            stream_id: self.stream_id,
            payload_len: self.payload,
            seq,
            frame,
            gop,
            capture_ns: 1_000 + seq,
            send_ns: 2_000 + seq,
        }
    }
}

/// Sequence numbers, for comparing what was sent with what arrived.
pub fn seqs(headers: &[MediaHeader]) -> Vec<u64> {
    headers.iter().map(|h| h.seq).collect()
}
