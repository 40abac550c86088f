//! Relay counters: atomics bumped on the packet paths, read as a [`RelayStats`] snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::Transport;
use super::transport_index;

/// Why an input was dropped. Every reason has a stable snake_case name (the key in
/// [`RelayStats::malformed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// An empty UDP datagram.
    Empty,
    /// The 48-byte media header does not decode.
    MediaHeader,
    /// A media datagram's length is not the header plus `payload_len`.
    PayloadLength,
    /// A quic-stream object declares more than 4 MiB of payload, or a media datagram is over
    /// 1,472 bytes.
    PayloadTooLarge,
    /// A quic-stream media stream ended inside an object.
    TruncatedObject,
    /// Media carries another stream id than the one the relay gave the publisher.
    WrongStreamId,
    /// Media from a session that is not publishing.
    NotPublisher,
    /// A control frame does not decode.
    ControlFrame,
    /// A control message out of order, or one only the relay sends.
    UnexpectedControl,
    /// UDP input (other than a token-less hello) from an address that has not shown a token.
    Unverified,
    /// A UDP hello whose token is wrong or expired (answered with a fresh challenge).
    BadToken,
    /// A tokened UDP hello to a relay with a credential, without a proof or with a wrong one
    /// (answered with an unauthorized error).
    BadCredential,
    /// A datagram from a verified UDP address without its session's nonce (other than a
    /// repeated hello or request): a spoofer, or a client that lost its session.
    BadSession,
}

impl Malformed {
    const ALL: [Malformed; 13] = [
        Malformed::Empty,
        Malformed::MediaHeader,
        Malformed::PayloadLength,
        Malformed::PayloadTooLarge,
        Malformed::TruncatedObject,
        Malformed::WrongStreamId,
        Malformed::NotPublisher,
        Malformed::ControlFrame,
        Malformed::UnexpectedControl,
        Malformed::Unverified,
        Malformed::BadToken,
        Malformed::BadCredential,
        Malformed::BadSession,
    ];

    /// The key in [`RelayStats::malformed`].
    pub(crate) fn name(self) -> &'static str {
        match self {
            Malformed::Empty => "empty",
            Malformed::MediaHeader => "media_header",
            Malformed::PayloadLength => "payload_length",
            Malformed::PayloadTooLarge => "payload_too_large",
            Malformed::TruncatedObject => "truncated_object",
            Malformed::WrongStreamId => "wrong_stream_id",
            Malformed::NotPublisher => "not_publisher",
            Malformed::ControlFrame => "control_frame",
            Malformed::UnexpectedControl => "unexpected_control",
            Malformed::Unverified => "unverified",
            Malformed::BadToken => "bad_token",
            Malformed::BadCredential => "bad_credential",
            Malformed::BadSession => "bad_session",
        }
    }
}

/// Media packets and bytes (header plus payload) through one transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Media packets (objects on quic-stream) received from publishers.
    pub packets_in: u64,
    /// Their bytes, header plus payload.
    pub bytes_in: u64,
    /// Media packets handed to the transport for viewers (cache replays included).
    pub packets_out: u64,
    /// Their bytes, header plus payload.
    pub bytes_out: u64,
}

/// A snapshot of a relay's gauges and counters (counters since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Live streams now.
    pub streams: usize,
    /// Subscribed viewers now, over all streams.
    pub viewers: usize,
    /// UDP addresses that have shown a valid token and not been forgotten.
    pub udp_peers: usize,
    /// Media through quic-stream.
    pub quic_stream: TransportStats,
    /// Media through quic-datagram.
    pub quic_datagram: TransportStats,
    /// Media through plain UDP.
    pub udp: TransportStats,
    /// Dropped input by reason (see the reasons in docs/protocol.md); reasons never seen are
    /// absent.
    pub malformed: BTreeMap<&'static str, u64>,
    /// Datagrams not forwarded because they exceed a viewer's current `max_datagram_size`.
    pub datagrams_too_big: u64,
    /// Datagrams queued while quinn's datagram send buffer was full, so quinn dropped older
    /// unsent ones to make room (at least one each).
    pub datagrams_displaced: u64,
    /// Packets not queued for a viewer because its queue was full (a slow viewer).
    pub viewer_queue_drops: u64,
    /// quic-stream GOP streams reset (code 1) because a newer GOP started while they still
    /// had data queued: "newest group wins".
    pub gops_reset: u64,
    /// quic-stream objects not sent because their GOP was superseded for that viewer.
    pub objects_skipped: u64,
    /// Times a stream's GOP cache outgrew its cap and was dropped until the next GOP.
    pub gop_cache_overflows: u64,
    /// Viewers that asked for the cached GOP and started live instead, because the relay
    /// already had its limit of cache replays queued.
    pub replays_refused: u64,
    /// Sessions (QUIC connections, UDP peers) and publishes refused because their source
    /// address held its limit of them.
    pub source_cap_refusals: u64,
    /// QUIC connections closed for sending no publish or subscribe in time.
    pub request_timeouts: u64,
    /// UDP challenges sent.
    pub challenges_sent: u64,
    /// UDP input dropped by a per-peer token bucket or the challenge rate limit.
    pub rate_limited_drops: u64,
    /// NACKs received from viewers.
    pub nacks_received: u64,
    /// NACKs sent to publishers (repairing the publisher leg).
    pub nacks_sent: u64,
    /// Packets resent to viewers answering their NACKs.
    pub retransmitted: u64,
    /// Resent packets from publishers that the relay already had, dropped.
    pub duplicate_repairs: u64,
    /// Viewers' keyframe requests received, and those forwarded to the publisher (at most one
    /// per stream every 200 ms).
    pub keyframe_requests_received: u64,
    pub keyframe_requests_forwarded: u64,
}

impl RelayStats {
    /// The media counters of one transport.
    pub fn transport(&self, transport: Transport) -> &TransportStats {
        match transport {
            Transport::QuicStream => &self.quic_stream,
            Transport::QuicDatagram => &self.quic_datagram,
            Transport::Udp => &self.udp,
        }
    }

    /// Dropped input for one reason (0 when never seen).
    pub fn malformed(&self, reason: &str) -> u64 {
        self.malformed.get(reason).copied().unwrap_or(0)
    }

    /// All dropped input.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// The live counters behind [`RelayStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    packets_in: [AtomicU64; 3],
    bytes_in: [AtomicU64; 3],
    packets_out: [AtomicU64; 3],
    bytes_out: [AtomicU64; 3],
    malformed: [AtomicU64; Malformed::ALL.len()],
    pub(crate) viewers: AtomicUsize,
    pub(crate) udp_peers: AtomicUsize,
    pub(crate) datagrams_too_big: AtomicU64,
    pub(crate) datagrams_displaced: AtomicU64,
    pub(crate) viewer_queue_drops: AtomicU64,
    pub(crate) gops_reset: AtomicU64,
    pub(crate) objects_skipped: AtomicU64,
    pub(crate) gop_cache_overflows: AtomicU64,
    pub(crate) replays_refused: AtomicU64,
    pub(crate) source_cap_refusals: AtomicU64,
    pub(crate) request_timeouts: AtomicU64,
    pub(crate) challenges_sent: AtomicU64,
    pub(crate) rate_limited_drops: AtomicU64,
    pub(crate) nacks_received: AtomicU64,
    pub(crate) nacks_sent: AtomicU64,
    pub(crate) retransmitted: AtomicU64,
    pub(crate) duplicate_repairs: AtomicU64,
    pub(crate) keyframe_requests_received: AtomicU64,
    pub(crate) keyframe_requests_forwarded: AtomicU64,
}

impl Counters {
    pub(crate) fn media_in(&self, transport: Transport, bytes: usize) {
        self.packets_in[transport_index(transport)].fetch_add(1, Relaxed);
        self.bytes_in[transport_index(transport)].fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn media_out(&self, transport: Transport, bytes: usize) {
        self.packets_out[transport_index(transport)].fetch_add(1, Relaxed);
        self.bytes_out[transport_index(transport)].fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn malformed(&self, reason: Malformed) {
        self.malformed[reason as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, streams: usize) -> RelayStats {
        let transport = |t: Transport| TransportStats {
            packets_in: self.packets_in[transport_index(t)].load(Relaxed),
            bytes_in: self.bytes_in[transport_index(t)].load(Relaxed),
            packets_out: self.packets_out[transport_index(t)].load(Relaxed),
            bytes_out: self.bytes_out[transport_index(t)].load(Relaxed),
        };
        let malformed = Malformed::ALL
            .iter()
            .map(|&r| (r.name(), self.malformed[r as usize].load(Relaxed)))
            .filter(|&(_, n)| n > 0)
            .collect();
        RelayStats {
            streams,
            viewers: self.viewers.load(Relaxed),
            udp_peers: self.udp_peers.load(Relaxed),
            quic_stream: transport(Transport::QuicStream),
            quic_datagram: transport(Transport::QuicDatagram),
            udp: transport(Transport::Udp),
            malformed,
            datagrams_too_big: self.datagrams_too_big.load(Relaxed),
            datagrams_displaced: self.datagrams_displaced.load(Relaxed),
            viewer_queue_drops: self.viewer_queue_drops.load(Relaxed),
            gops_reset: self.gops_reset.load(Relaxed),
            objects_skipped: self.objects_skipped.load(Relaxed),
            gop_cache_overflows: self.gop_cache_overflows.load(Relaxed),
            replays_refused: self.replays_refused.load(Relaxed),
            source_cap_refusals: self.source_cap_refusals.load(Relaxed),
            request_timeouts: self.request_timeouts.load(Relaxed),
            challenges_sent: self.challenges_sent.load(Relaxed),
            rate_limited_drops: self.rate_limited_drops.load(Relaxed),
            nacks_received: self.nacks_received.load(Relaxed),
            nacks_sent: self.nacks_sent.load(Relaxed),
            retransmitted: self.retransmitted.load(Relaxed),
            duplicate_repairs: self.duplicate_repairs.load(Relaxed),
            keyframe_requests_received: self.keyframe_requests_received.load(Relaxed),
            keyframe_requests_forwarded: self.keyframe_requests_forwarded.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_distinct_names_and_slots() {
        let names: std::collections::BTreeSet<_> =
            Malformed::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Malformed::ALL.len());
        for (i, r) in Malformed::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let c = Counters::default();
        c.malformed(Malformed::BadToken);
        c.malformed(Malformed::BadToken);
        c.media_in(Transport::Udp, 100);
        let s = c.snapshot(0);
        assert_eq!(s.malformed("bad_token"), 2);
        assert_eq!(s.malformed_total(), 2);
        assert_eq!(s.transport(Transport::Udp).bytes_in, 100);
    }
}
