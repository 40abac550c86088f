//! The stream registry, GOP caches and fan-out. No I/O: transports feed publishers' headers in
//! through a [`Publication`] and drain each viewer's bounded queue ([`Feed`]), so a slow viewer
//! never blocks its publisher or the other viewers.
//!
//! Architecture invariant: a joining viewer's cache replay and its first live packet are
//! queued under the same stream lock that live packets are fanned out under, so the viewer
//! gets a contiguous suffix of what the relay received: no duplicate, no gap.
//!
//! Memory: queues hold headers only (the writers add the zero payload when they send), a GOP
//! cache is capped in packets and in the bytes it describes, and at most
//! [`MAX_CONCURRENT_REPLAYS`] cache replays are queued at once over the whole relay, so many
//! viewers joining a stream with a large cached GOP cost a bounded amount of memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use stallwatch_measure::Time;
use stallwatch_measure::repair::{KeyframeGate, Nack, Retransmitter, SendHistory};
use stallwatch_proto::control::{Control, ErrorCode, StartAt};
use stallwatch_proto::media::{
    FLAG_FROM_CACHE, FLAG_RETRANSMITTED, MEDIA_HEADER_LEN, MediaError, MediaHeader,
};
use tokio::sync::{Notify, mpsc};

use super::stats::{Counters, Malformed};
use super::{Limits, Transport};

/// Largest payload of a quic-stream object the relay accepts (the protocol's cap).
pub(crate) const MAX_OBJECT_PAYLOAD: usize = stallwatch_proto::media::MAX_OBJECT_PAYLOAD as usize;
/// Live packets a viewer's queue holds on top of its cache replay.
const VIEWER_QUEUE: usize = 2048;
/// Most headers one GOP cache holds (a 2 s 1080p GOP over UDP is about 1,100 packets).
const MAX_CACHED: usize = 16_384;
/// Most bytes (headers plus payload) one GOP cache may describe: what a replay sends, about
/// 5 s at the default per-peer limit of 50 Mbit/s.
const MAX_CACHED_BYTES: u64 = 32 * 1024 * 1024;
/// Cache replays queued at once over the whole relay; a viewer joining beyond this starts
/// live (counted as `replays_refused`). Each costs at most [`MAX_CACHED`] queued headers.
pub(crate) const MAX_CONCURRENT_REPLAYS: usize = 32;
/// Largest media datagram (plain UDP or QUIC datagram) the relay takes from a publisher: the
/// UDP payload of a 1,500-byte IPv4 packet. Agents send at most 1,200 bytes.
pub(crate) const MAX_MEDIA_DATAGRAM: usize = 1472;
/// Size of the buffers datagram wire images are cut from.
const ARENA: usize = 64 * 1024;

/// The zeros every payload is regenerated from (in .bss, never written).
static ZEROS: [u8; MAX_OBJECT_PAYLOAD] = [0; MAX_OBJECT_PAYLOAD];

/// `len` bytes of zero payload, without allocating (`len` is capped at 4 MiB).
pub(crate) fn zeros(len: usize) -> Bytes {
    Bytes::from_static(&ZEROS[..len.min(MAX_OBJECT_PAYLOAD)])
}

/// Decodes a media datagram of the stream with id `stream_id`, or says why it is dropped.
pub(crate) fn decode_media(data: &[u8], stream_id: u32) -> Result<MediaHeader, Malformed> {
    if data.len() > MAX_MEDIA_DATAGRAM {
        // Bigger than any path MTU the fleet sends over: only a GOP cache inflater sends it.
        return Err(Malformed::PayloadTooLarge);
    }
    match MediaHeader::decode_packet(data) {
        Ok(header) if header.stream_id == stream_id => Ok(header),
        Ok(_) => Err(Malformed::WrongStreamId),
        Err(MediaError::PayloadLength { .. }) => Err(Malformed::PayloadLength),
        Err(_) => Err(Malformed::MediaHeader),
    }
}

/// One packet for one viewer: its header alone. The writer adds the zero payload when it
/// sends ([`WireBuilder`] for datagrams, [`zeros`] for quic-stream objects), so a queued packet
/// costs its header whatever its size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    /// The header as the viewer gets it (with `FROM_CACHE` on replays).
    pub header: MediaHeader,
}

/// Why the hub refused a publish or subscribe: becomes a `Control::Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: String) -> Refusal {
        Refusal { code, message }
    }

    pub(crate) fn to_control(&self) -> Control {
        Control::Error { code: self.code, message: self.message.clone() }
    }
}

/// How far behind a quic-stream viewer is, shared between the hub (which queues) and the
/// viewer's writer task (which sends). A quic-stream viewer gets one QUIC stream per GOP.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    /// Objects queued and not yet handed to QUIC (the one being written included).
    queued: AtomicU64,
    /// Objects of GOPs below this are superseded and skipped.
    skip_below: AtomicU32,
    notify: Notify,
}

impl Backlog {
    /// Objects with a GOP below this are superseded.
    pub(crate) fn skip_below(&self) -> u32 {
        self.skip_below.load(Ordering::Acquire)
    }

    /// The writer has handled (sent or skipped) one queued object.
    pub(crate) fn done(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// Completes once GOP `gop` is superseded for this viewer.
    pub(crate) async fn superseded(&self, gop: u32) {
        loop {
            if self.skip_below() > gop {
                return;
            }
            // `notify_one` stores a permit, so a supersede between the check and this await
            // is not lost.
            self.notify.notified().await;
        }
    }

    fn supersede(&self, below: u32) {
        self.skip_below.fetch_max(below, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// The hub-side end of a viewer's queue.
struct ViewerSlot {
    id: u64,
    tx: mpsc::Sender<Delivery>,
    /// quic-stream viewers only.
    backlog: Option<Arc<Backlog>>,
    /// Newest GOP queued (quic-stream viewers only).
    last_gop: Option<u32>,
}

impl ViewerSlot {
    /// Queues one packet; false once the viewer's writer is gone.
    fn offer(&mut self, delivery: Delivery, counters: &Counters) -> bool {
        let gop = delivery.header.gop;
        if let Some(backlog) = &self.backlog {
            if let Some(last) = self.last_gop {
                // A newer GOP starts while older objects still wait: newest group wins.
                if gop > last && backlog.queued.load(Ordering::Acquire) > 0 {
                    backlog.supersede(gop);
                }
            }
            if self.last_gop.is_none_or(|last| gop > last) {
                self.last_gop = Some(gop);
            }
            // Counted before the send so the writer never sees its count go below zero.
            backlog.queued.fetch_add(1, Ordering::AcqRel);
        }
        match self.tx.try_send(delivery) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                super::stats::bump(&counters.viewer_queue_drops);
                if let Some(backlog) = &self.backlog {
                    backlog.done();
                    // A GOP with a hole is worthless on a stream: skip the rest of it.
                    backlog.supersede(gop.saturating_add(1));
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                if let Some(backlog) = &self.backlog {
                    backlog.done();
                }
                false
            }
        }
    }
}

/// Headers of the current GOP: every packet received since the first packet of the newest
/// GOP, in arrival order.
#[derive(Debug, Default)]
struct GopCache {
    enabled: bool,
    gop: Option<u32>,
    headers: Vec<MediaHeader>,
    /// Bytes (headers plus payload) the cached headers describe.
    bytes: u64,
    /// Outgrew [`MAX_CACHED`] or [`MAX_CACHED_BYTES`]: caching resumes at the next GOP.
    overflowed: bool,
}

impl GopCache {
    /// Records a live packet; true if the cache just overflowed.
    fn push(&mut self, header: &MediaHeader) -> bool {
        if !self.enabled {
            return false;
        }
        // Normally the keyframe's fragment 0 starts a GOP; if it was lost or overtaken, the
        // first packet of the newer GOP does, so the cache stays a contiguous run of arrivals.
        if self.gop.is_none_or(|gop| header.gop > gop) {
            self.gop = Some(header.gop);
            self.headers.clear();
            self.bytes = 0;
            self.overflowed = false;
        } else if self.overflowed {
            return false;
        }
        let bytes = self.bytes + (MEDIA_HEADER_LEN as u64 + u64::from(header.payload_len));
        if self.headers.len() >= MAX_CACHED || bytes > MAX_CACHED_BYTES {
            self.headers = Vec::new();
            self.bytes = 0;
            self.overflowed = true;
            return true;
        }
        self.headers.push(*header);
        self.bytes = bytes;
        false
    }
}

/// Cuts datagram wire images (header and zero payload) from shared buffers so a packet costs
/// no allocation of its own. Each writer has its own; the hub one serves retransmissions.
#[derive(Debug, Default)]
pub(crate) struct WireBuilder {
    arena: BytesMut,
}

impl WireBuilder {
    pub(crate) fn build(&mut self, header: &MediaHeader) -> Bytes {
        let len = MEDIA_HEADER_LEN + header.payload_len as usize;
        if self.arena.capacity() < len {
            self.arena.reserve(len.max(ARENA));
        }
        self.arena.resize(len, 0);
        header.encode_into(&mut self.arena[..MEDIA_HEADER_LEN]);
        self.arena.split().freeze()
    }
}

struct StreamState {
    cache: GopCache,
    viewers: Vec<ViewerSlot>,
    wire: WireBuilder,
    /// Headers of the last packets received, to answer viewers' NACKs from.
    history: SendHistory,
    /// Viewers' keyframe requests go upstream at most every 200 ms.
    keyframe_gate: KeyframeGate,
}

/// One live stream.
struct Stream {
    name: String,
    id: u32,
    transport: Transport,
    ended: AtomicBool,
    state: Mutex<StreamState>,
    /// Woken when a keyframe request is to go to the publisher (QUIC sessions wait on it).
    keyframe_wanted: Notify,
}

struct Registry {
    streams: HashMap<String, Arc<Stream>>,
    next_stream_id: u32,
}

/// All streams of a relay.
pub(crate) struct Hub {
    gop_cache: bool,
    limits: Limits,
    counters: Arc<Counters>,
    registry: Mutex<Registry>,
    next_viewer_id: AtomicU64,
    /// Cache replays queued and not yet taken off their viewers' queues.
    replays: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No critical section can leave the state half-updated in a way that matters more than
    // stopping the relay would, so a panic elsewhere does not poison the hub.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    pub(crate) fn new(gop_cache: bool, limits: Limits, counters: Arc<Counters>) -> Hub {
        Hub {
            gop_cache,
            limits,
            counters,
            registry: Mutex::new(Registry { streams: HashMap::new(), next_stream_id: 1 }),
            next_viewer_id: AtomicU64::new(1),
            replays: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Live streams now.
    pub(crate) fn stream_count(&self) -> usize {
        lock(&self.registry).streams.len()
    }

    /// Starts stream `name`, published over `transport`.
    pub(crate) fn publish(
        self: &Arc<Self>,
        name: &str,
        transport: Transport,
    ) -> Result<Publication, Refusal> {
        let mut registry = lock(&self.registry);
        if registry.streams.contains_key(name) {
            return Err(Refusal::new(
                ErrorCode::StreamExists,
                format!("stream {name:?} is already being published on this relay"),
            ));
        }
        if registry.streams.len() >= self.limits.max_streams {
            return Err(Refusal::new(
                ErrorCode::TooManyStreams,
                format!("the relay carries its limit of {} streams", self.limits.max_streams),
            ));
        }
        let id = registry.next_stream_id;
        registry.next_stream_id = registry.next_stream_id.checked_add(1).unwrap_or(1);
        let stream = Arc::new(Stream {
            name: name.to_owned(),
            id,
            transport,
            ended: AtomicBool::new(false),
            keyframe_wanted: Notify::new(),
            state: Mutex::new(StreamState {
                cache: GopCache { enabled: self.gop_cache, ..GopCache::default() },
                viewers: Vec::new(),
                wire: WireBuilder::default(),
                history: SendHistory::default(),
                keyframe_gate: KeyframeGate::default(),
            }),
        });
        registry.streams.insert(name.to_owned(), stream.clone());
        Ok(Publication { hub: self.clone(), stream })
    }

    /// Adds a viewer of stream `name` over `transport`. With [`StartAt::CachedGop`] (and the
    /// cache on) its queue starts with the cached GOP, flagged `FROM_CACHE`.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        name: &str,
        transport: Transport,
        start: StartAt,
    ) -> Result<Subscription, Refusal> {
        let not_found = || {
            Refusal::new(
                ErrorCode::StreamNotFound,
                format!("no stream {name:?} is being published on this relay"),
            )
        };
        let stream = lock(&self.registry).streams.get(name).cloned().ok_or_else(not_found)?;
        if stream.transport != transport {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!(
                    "stream {name:?} is published over {}; subscribe over {} to view it",
                    stream.transport, stream.transport
                ),
            ));
        }
        let mut guard = lock(&stream.state);
        if stream.ended.load(Ordering::Acquire) {
            return Err(not_found());
        }
        let state = &mut *guard;
        if state.viewers.len() >= self.limits.max_viewers_per_stream {
            return Err(Refusal::new(
                ErrorCode::TooManyViewers,
                format!(
                    "stream {name:?} has its limit of {} viewers",
                    self.limits.max_viewers_per_stream
                ),
            ));
        }
        let mut replay: &[MediaHeader] = match start {
            StartAt::CachedGop => &state.cache.headers,
            StartAt::Live => &[],
        };
        let permit = if replay.is_empty() {
            None
        } else {
            let permit = ReplayPermit::try_new(&self.replays, replay.len());
            if permit.is_none() {
                // Too many replays queued relay-wide: this viewer waits for the next keyframe.
                super::stats::bump(&self.counters.replays_refused);
                replay = &[];
            }
            permit
        };
        let (tx, rx) = mpsc::channel(replay.len() + VIEWER_QUEUE);
        let backlog = (transport == Transport::QuicStream).then(|| Arc::new(Backlog::default()));
        let id = self.next_viewer_id.fetch_add(1, Ordering::Relaxed);
        let mut slot = ViewerSlot { id, tx, backlog: backlog.clone(), last_gop: None };
        for cached in replay {
            let header = MediaHeader { flags: cached.flags | FLAG_FROM_CACHE, ..*cached };
            slot.offer(Delivery { header }, &self.counters);
        }
        state.viewers.push(slot);
        self.counters.viewers.fetch_add(1, Ordering::Relaxed);
        drop(guard);
        Ok(Subscription {
            stream_id: stream.id,
            feed: Feed { rx, backlog, replay: permit },
            guard: ViewerGuard { hub: self.clone(), stream, id },
        })
    }

    fn end(&self, stream: &Arc<Stream>) {
        if stream.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut registry = lock(&self.registry);
            if registry.streams.get(&stream.name).is_some_and(|s| Arc::ptr_eq(s, stream)) {
                registry.streams.remove(&stream.name);
            }
        }
        let mut state = lock(&stream.state);
        // Dropping the senders closes the viewers' queues once drained: that is their
        // end-of-stream signal.
        let viewers = std::mem::take(&mut state.viewers);
        self.counters.viewers.fetch_sub(viewers.len(), Ordering::Relaxed);
        state.cache = GopCache::default();
    }
}

/// A publisher's hold on its stream; dropping it (or [`Publication::end`]) ends the stream.
pub(crate) struct Publication {
    hub: Arc<Hub>,
    stream: Arc<Stream>,
}

impl Publication {
    /// The id the relay gave the stream; media must carry it.
    pub(crate) fn stream_id(&self) -> u32 {
        self.stream.id
    }

    /// The stream's name.
    pub(crate) fn name(&self) -> &str {
        &self.stream.name
    }

    /// Caches and fans out one packet's header.
    pub(crate) fn on_packet(&self, header: &MediaHeader) {
        // The relay is the only one that may say a packet came from its cache.
        let header = MediaHeader { flags: header.flags & !FLAG_FROM_CACHE, ..*header };
        let mut guard = lock(&self.stream.state);
        if self.stream.ended.load(Ordering::Acquire) {
            return;
        }
        let state = &mut *guard;
        if header.flags & FLAG_RETRANSMITTED != 0 && state.history.get(header.seq).is_some() {
            // A resend of a packet the relay already has (its NACK crossed the original).
            super::stats::bump(&self.hub.counters.duplicate_repairs);
            return;
        }
        state.history.record(&header);
        if state.cache.push(&header) {
            super::stats::bump(&self.hub.counters.gop_cache_overflows);
        }
        if state.viewers.is_empty() {
            return;
        }
        let counters = &*self.hub.counters;
        let before = state.viewers.len();
        state.viewers.retain_mut(|v| v.offer(Delivery { header }, counters));
        let gone = before - state.viewers.len();
        if gone > 0 {
            counters.viewers.fetch_sub(gone, Ordering::Relaxed);
        }
    }

    /// Completes when a viewer's keyframe request passed the stream's gate.
    pub(crate) async fn keyframe_requested(&self) {
        self.stream.keyframe_wanted.notified().await;
    }

    /// Ends the stream: its viewers' queues close after their last packets. Idempotent.
    pub(crate) fn end(&self) {
        self.hub.end(&self.stream);
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        self.end();
    }
}

/// A viewer's place on a stream.
pub(crate) struct Subscription {
    pub stream_id: u32,
    /// The queue, for the viewer's writer task.
    pub feed: Feed,
    /// Keeps the viewer registered; dropping it unsubscribes.
    pub guard: ViewerGuard,
}

/// A viewer's queue. It closes (after the queued packets) when the stream ends.
pub(crate) struct Feed {
    rx: mpsc::Receiver<Delivery>,
    /// Present for quic-stream viewers.
    pub backlog: Option<Arc<Backlog>>,
    /// Held while the cache replay is still queued.
    replay: Option<ReplayPermit>,
}

impl Feed {
    /// The next packet; `None` once the stream ended and the queue is drained.
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        let delivery = self.rx.recv().await;
        self.took_one(delivery.is_some());
        delivery
    }

    #[cfg(test)]
    fn try_recv(&mut self) -> Result<Delivery, mpsc::error::TryRecvError> {
        let delivery = self.rx.try_recv();
        self.took_one(delivery.is_ok());
        delivery
    }

    /// Packets queued now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.rx.len()
    }

    /// Releases the replay permit once the replayed packets are off the queue.
    fn took_one(&mut self, got: bool) {
        if let Some(permit) = &mut self.replay {
            permit.left = permit.left.saturating_sub(1);
            if !got || permit.left == 0 {
                self.replay = None;
            }
        }
    }
}

/// One of the relay's [`MAX_CONCURRENT_REPLAYS`]; given back on drop.
struct ReplayPermit {
    active: Arc<AtomicUsize>,
    /// Replayed packets still on the queue.
    left: usize,
}

impl ReplayPermit {
    fn try_new(active: &Arc<AtomicUsize>, len: usize) -> Option<ReplayPermit> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONCURRENT_REPLAYS).then_some(n + 1)
            })
            .ok()
            .map(|_| ReplayPermit { active: active.clone(), left: len })
    }
}

impl Drop for ReplayPermit {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Unsubscribes its viewer on drop.
pub(crate) struct ViewerGuard {
    hub: Arc<Hub>,
    stream: Arc<Stream>,
    id: u64,
}

impl ViewerGuard {
    /// Name of the viewed stream.
    pub(crate) fn stream_name(&self) -> &str {
        &self.stream.name
    }

    /// Whether the viewed stream has ended.
    pub(crate) fn stream_ended(&self) -> bool {
        self.stream.ended.load(Ordering::Acquire)
    }

    /// Answers this viewer's NACK from what the stream received: the wire images to send
    /// (headers marked `RETRANSMITTED`, payload regenerated), within `retransmitter`'s limits.
    pub(crate) fn retransmit(
        &self,
        now: Time,
        nack: &Nack,
        retransmitter: &mut Retransmitter,
    ) -> Vec<Bytes> {
        let mut guard = lock(&self.stream.state);
        let state = &mut *guard;
        let headers = retransmitter.on_nack(now, nack, &state.history);
        headers.iter().map(|h| state.wire.build(h)).collect()
    }

    /// Whether a viewer's keyframe request goes on to the publisher now: at most one per
    /// stream every 200 ms, whichever viewer asks. If so, a QUIC publisher's session is woken
    /// ([`Publication::keyframe_requested`]); the UDP relay sends it itself.
    pub(crate) fn forward_keyframe_request(&self, now: Time) -> bool {
        let pass = lock(&self.stream.state).keyframe_gate.try_pass(now);
        if pass {
            self.stream.keyframe_wanted.notify_one();
        }
        pass
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.stream.state);
        if let Some(i) = state.viewers.iter().position(|v| v.id == self.id) {
            state.viewers.swap_remove(i);
            self.hub.counters.viewers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use stallwatch_proto::media::FrameKind;

    use super::*;

    fn hub(gop_cache: bool, limits: Limits) -> Arc<Hub> {
        Arc::new(Hub::new(gop_cache, limits, Arc::new(Counters::default())))
    }

    /// `gops` GOPs of `frames` video frames (2 fragments per keyframe) plus one audio packet
    /// per frame, numbered by seq from `first_seq`.
    fn packets(stream_id: u32, gops: std::ops::Range<u32>, frames: u32) -> Vec<MediaHeader> {
        let mut out = Vec::new();
        let mut seq = u64::from(gops.start) * 1000;
        for gop in gops {
            for f in 0..frames {
                let (kind, frag_count) =
                    if f == 0 { (FrameKind::Key, 2) } else { (FrameKind::Predicted, 1) };
                for frag_index in 0..frag_count {
                    out.push(header(
                        stream_id,
                        kind,
                        gop,
                        gop * frames + f,
                        frag_index,
                        frag_count,
                        seq,
                    ));
                    seq += 1;
                }
                out.push(header(stream_id, FrameKind::Audio, gop, gop * frames + f, 0, 1, seq));
                seq += 1;
            }
        }
        out
    }

    fn header(
        stream_id: u32,
        kind: FrameKind,
        gop: u32,
        frame: u32,
        frag_index: u16,
        frag_count: u16,
        seq: u64,
    ) -> MediaHeader {
        MediaHeader {
            kind,
            flags: 0,
            frag_index,
            frag_count,
            stream_id,
            payload_len: 100,
            seq,
            frame,
            gop,
            capture_ns: 0,
            send_ns: 0,
        }
    }

    fn drain(feed: &mut Feed) -> Vec<MediaHeader> {
        let mut out = Vec::new();
        while let Ok(d) = feed.try_recv() {
            out.push(d.header);
        }
        out
    }

    #[test]
    fn a_joining_viewer_gets_the_cached_gop_then_live_without_gap_or_duplicate() {
        let hub = hub(true, Limits::default());
        let publication = hub.publish("s", Transport::Udp).unwrap();
        let all = packets(publication.stream_id(), 0..3, 10);
        // Join in the middle of GOP 1.
        let join_at = all.iter().position(|h| h.gop == 1).unwrap() + 7;
        for h in &all[..join_at] {
            publication.on_packet(h);
        }
        let mut sub = hub.subscribe("s", Transport::Udp, StartAt::CachedGop).unwrap();
        for h in &all[join_at..] {
            publication.on_packet(h);
        }
        let got = drain(&mut sub.feed);
        let first_of_gop1 = all.iter().position(|h| h.gop == 1).unwrap();
        let seqs: Vec<u64> = got.iter().map(|h| h.seq).collect();
        let want: Vec<u64> = all[first_of_gop1..].iter().map(|h| h.seq).collect();
        assert_eq!(seqs, want);
        for (i, h) in got.iter().enumerate() {
            assert_eq!(h.from_cache(), i < join_at - first_of_gop1, "packet {i}");
        }
        assert_eq!(got[0].kind, FrameKind::Key);
    }

    #[test]
    fn without_a_cache_or_starting_live_a_viewer_gets_live_packets_only() {
        for (cache, start) in [(false, StartAt::CachedGop), (true, StartAt::Live)] {
            let hub = hub(cache, Limits::default());
            let publication = hub.publish("s", Transport::QuicDatagram).unwrap();
            let all = packets(publication.stream_id(), 0..2, 5);
            for h in &all[..7] {
                publication.on_packet(h);
            }
            let mut sub = hub.subscribe("s", Transport::QuicDatagram, start).unwrap();
            for h in &all[7..] {
                publication.on_packet(h);
            }
            let got = drain(&mut sub.feed);
            assert_eq!(got.len(), all.len() - 7);
            assert!(got.iter().all(|h| !h.from_cache()));
            assert_eq!(got[0].seq, all[7].seq);
        }
    }

    #[test]
    fn the_cache_restarts_at_the_first_packet_of_a_newer_gop_even_without_its_keyframe() {
        let mut cache = GopCache { enabled: true, ..GopCache::default() };
        let all = packets(1, 0..2, 3);
        for h in all.iter().filter(|h| !(h.gop == 1 && h.kind == FrameKind::Key)) {
            cache.push(h);
        }
        assert_eq!(cache.gop, Some(1));
        assert!(cache.headers.iter().all(|h| h.gop == 1));
        assert_eq!(cache.headers[0].kind, FrameKind::Audio);
        // A late packet of an older GOP is kept: the cache is a contiguous run of arrivals.
        cache.push(&all[0]);
        assert_eq!(cache.headers.last().unwrap().seq, all[0].seq);
    }

    #[test]
    fn the_cache_has_a_cap() {
        let counters = Arc::new(Counters::default());
        let hub = Arc::new(Hub::new(true, Limits::default(), counters.clone()));
        let publication = hub.publish("s", Transport::Udp).unwrap();
        let mut h = header(1, FrameKind::Predicted, 0, 0, 0, 1, 0);
        for seq in 0..(MAX_CACHED as u64 + 10) {
            h.seq = seq;
            publication.on_packet(&h);
        }
        let sub = hub.subscribe("s", Transport::Udp, StartAt::CachedGop).unwrap();
        assert_eq!(sub.feed.len(), 0);
        assert_eq!(counters.snapshot(0).gop_cache_overflows, 1);
        h.gop = 1;
        publication.on_packet(&h);
        let sub = hub.subscribe("s", Transport::Udp, StartAt::CachedGop).unwrap();
        assert_eq!(sub.feed.len(), 1);
    }

    #[test]
    fn refusals_name_their_reason() {
        let limits = Limits { max_streams: 1, max_viewers_per_stream: 1, ..Limits::default() };
        let hub = hub(true, limits);
        fn code<T>(r: Result<T, Refusal>) -> Option<ErrorCode> {
            r.err().map(|e| e.code)
        }
        assert_eq!(
            code(hub.subscribe("s", Transport::Udp, StartAt::Live)),
            Some(ErrorCode::StreamNotFound)
        );
        let publication = hub.publish("s", Transport::Udp).unwrap();
        assert_eq!(code(hub.publish("s", Transport::Udp)), Some(ErrorCode::StreamExists));
        assert_eq!(code(hub.publish("t", Transport::Udp)), Some(ErrorCode::TooManyStreams));
        let err = hub.subscribe("s", Transport::QuicStream, StartAt::Live).err().unwrap();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("udp"), "{}", err.message);
        let viewer = hub.subscribe("s", Transport::Udp, StartAt::Live).unwrap();
        assert_eq!(
            code(hub.subscribe("s", Transport::Udp, StartAt::Live)),
            Some(ErrorCode::TooManyViewers)
        );
        drop(viewer);
        let mut viewer = hub.subscribe("s", Transport::Udp, StartAt::Live).unwrap();
        assert_eq!(hub.counters.viewers.load(Ordering::Relaxed), 1);
        drop(publication);
        assert_eq!(hub.stream_count(), 0);
        assert_eq!(hub.counters.viewers.load(Ordering::Relaxed), 0);
        assert!(viewer.guard.stream_ended());
        assert!(matches!(viewer.feed.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        // The name is free again.
        hub.publish("s", Transport::Udp).unwrap();
    }

    #[test]
    fn a_quic_stream_viewer_behind_a_gop_has_that_gop_superseded() {
        let hub = hub(true, Limits::default());
        let publication = hub.publish("s", Transport::QuicStream).unwrap();
        let all = packets(publication.stream_id(), 0..3, 4);
        let mut sub = hub.subscribe("s", Transport::QuicStream, StartAt::Live).unwrap();
        let backlog = sub.feed.backlog.clone().unwrap();
        // The writer keeps up with GOP 0: nothing superseded when GOP 1 starts.
        for h in all.iter().filter(|h| h.gop == 0) {
            publication.on_packet(h);
            sub.feed.try_recv().unwrap();
            backlog.done();
        }
        for h in all.iter().filter(|h| h.gop == 1) {
            publication.on_packet(h);
        }
        assert_eq!(backlog.skip_below(), 0);
        // GOP 1 is still queued when GOP 2 starts: GOP 1 is superseded.
        publication.on_packet(all.iter().find(|h| h.gop == 2).unwrap());
        assert_eq!(backlog.skip_below(), 2);
        drain(&mut sub.feed);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let counters = Arc::new(Counters::default());
        let hub = Arc::new(Hub::new(false, Limits::default(), counters.clone()));
        let publication = hub.publish("s", Transport::QuicStream).unwrap();
        let sub = hub.subscribe("s", Transport::QuicStream, StartAt::Live).unwrap();
        let mut h = header(publication.stream_id(), FrameKind::Predicted, 5, 0, 0, 1, 0);
        for seq in 0..VIEWER_QUEUE as u64 + 3 {
            h.seq = seq;
            publication.on_packet(&h);
        }
        assert_eq!(counters.snapshot(0).viewer_queue_drops, 3);
        // The rest of GOP 5 is skipped for this viewer.
        assert_eq!(sub.feed.backlog.as_ref().unwrap().skip_below(), 6);
    }

    #[test]
    fn a_queued_packet_is_its_header_alone() {
        // The GOP replay attack: a cached GOP of large packets copied, payload and all, into
        // each joining viewer's queue. A queued packet must cost its header whatever its size.
        assert_eq!(std::mem::size_of::<Delivery>(), std::mem::size_of::<MediaHeader>());
    }

    #[test]
    fn cache_replays_queued_at_once_are_bounded_relay_wide() {
        let counters = Arc::new(Counters::default());
        let hub = Arc::new(Hub::new(true, Limits::default(), counters.clone()));
        let publication = hub.publish("s", Transport::Udp).unwrap();
        let mut h = header(publication.stream_id(), FrameKind::Predicted, 0, 0, 0, 1, 0);
        h.payload_len = 1400;
        for seq in 0..MAX_CACHED as u64 {
            h.seq = seq;
            publication.on_packet(&h);
        }
        let mut viewers: Vec<Subscription> = (0..3 * MAX_CONCURRENT_REPLAYS)
            .map(|_| hub.subscribe("s", Transport::Udp, StartAt::CachedGop).unwrap())
            .collect();
        let queued: usize = viewers.iter().map(|v| v.feed.len()).sum();
        assert_eq!(queued, MAX_CONCURRENT_REPLAYS * MAX_CACHED);
        assert_eq!(counters.snapshot(0).replays_refused, 2 * MAX_CONCURRENT_REPLAYS as u64);
        // A viewer whose writer took its replay off the queue gives its permit back, and so
        // does one that leaves mid-replay.
        let first = &mut viewers[0];
        while first.feed.try_recv().is_ok() {}
        drop(viewers.remove(1));
        for _ in 0..2 {
            let late = hub.subscribe("s", Transport::Udp, StartAt::CachedGop).unwrap();
            assert_eq!(late.feed.len(), MAX_CACHED);
            viewers.push(late);
        }
        let late = hub.subscribe("s", Transport::Udp, StartAt::CachedGop).unwrap();
        assert_eq!(late.feed.len(), 0);
        assert_eq!(counters.snapshot(0).replays_refused, 2 * MAX_CONCURRENT_REPLAYS as u64 + 1);
    }

    #[test]
    fn the_cache_is_capped_in_bytes() {
        let counters = Arc::new(Counters::default());
        let hub = Arc::new(Hub::new(true, Limits::default(), counters.clone()));
        let publication = hub.publish("s", Transport::QuicStream).unwrap();
        let mut h = header(publication.stream_id(), FrameKind::Predicted, 0, 0, 0, 1, 0);
        h.payload_len = MAX_OBJECT_PAYLOAD as u32;
        let fits = MAX_CACHED_BYTES / (MEDIA_HEADER_LEN + MAX_OBJECT_PAYLOAD) as u64;
        for seq in 0..fits {
            h.seq = seq;
            publication.on_packet(&h);
        }
        let sub = hub.subscribe("s", Transport::QuicStream, StartAt::CachedGop).unwrap();
        assert_eq!(sub.feed.len() as u64, fits);
        assert_eq!(counters.snapshot(0).gop_cache_overflows, 0);
        h.seq = fits;
        publication.on_packet(&h);
        assert_eq!(counters.snapshot(0).gop_cache_overflows, 1);
        let sub = hub.subscribe("s", Transport::QuicStream, StartAt::CachedGop).unwrap();
        assert_eq!(sub.feed.len(), 0);
    }

    #[test]
    fn media_datagrams_over_the_path_mtu_are_refused() {
        let mut h = header(7, FrameKind::Key, 0, 0, 0, 1, 0);
        let mut wires = WireBuilder::default();
        h.payload_len = (MAX_MEDIA_DATAGRAM - MEDIA_HEADER_LEN) as u32;
        assert_eq!(decode_media(&wires.build(&h), 7), Ok(h));
        h.payload_len += 1;
        assert_eq!(decode_media(&wires.build(&h), 7), Err(Malformed::PayloadTooLarge));
        h.payload_len = 60_000;
        assert_eq!(decode_media(&wires.build(&h), 7), Err(Malformed::PayloadTooLarge));
    }

    #[test]
    fn wire_images_carry_zero_payload() {
        let mut wire = WireBuilder::default();
        let h = header(3, FrameKind::Key, 0, 0, 0, 1, 9);
        for _ in 0..1000 {
            let bytes = wire.build(&h);
            assert_eq!(bytes.len(), MEDIA_HEADER_LEN + 100);
            assert_eq!(MediaHeader::decode_packet(&bytes), Ok(h));
            assert!(bytes[MEDIA_HEADER_LEN..].iter().all(|&b| b == 0));
        }
        assert_eq!(zeros(10).as_ref(), &[0; 10]);
    }
}
