//! The sending side of repair: what was sent, and how a NACK is answered.
//!
//! A [`SendHistory`] keeps the 48-byte headers of the last [`HISTORY_PACKETS`] packets a
//! stream sent (the payload is synthetic zeros, regenerated when a packet is resent). Each peer
//! that may send NACKs gets a [`Retransmitter`], which answers with the headers to resend,
//! marked [`FLAG_RETRANSMITTED`]:
//! - at most [`MAX_NACK_SEQS`](super::MAX_NACK_SEQS) packets per NACK;
//! - a packet resent to this peer less than one RTT ago is not resent again (libwebrtc's
//!   `RtpPacketHistory::VerifyRtt`): the earlier copy may still be on its way;
//! - within a byte budget, a token bucket: by default the stream's own rate with one second of
//!   burst, so repair at most doubles what a peer receives (libwebrtc caps retransmissions at
//!   the target bitrate over a 1 s window).

use std::time::Duration;

use stallwatch_proto::media::{FLAG_FROM_CACHE, FLAG_RETRANSMITTED, MEDIA_HEADER_LEN, MediaHeader};

use super::{MAX_NACK_SEQS, Nack, RttEstimate};
use crate::time::Time;

/// Packets a [`SendHistory`] keeps: 7.7 s of 720p30 and 3.8 s of 1080p30, beyond any deadline a
/// viewer repairs to (its loss wait, 2 s), at 48 bytes each (96 KiB).
pub const HISTORY_PACKETS: usize = 2048;

/// Recent resends a [`Retransmitter`] remembers per peer to ignore repeat NACKs (4 KiB). Two
/// numbers 256 apart share a slot; the older one's record is then lost, which can only cause a
/// duplicate resend, never a missed one.
pub const RESEND_SLOTS: usize = 256;

/// The headers of the last packets a stream sent, by sequence number.
#[derive(Debug, Clone)]
pub struct SendHistory {
    slots: Vec<Option<MediaHeader>>,
}

impl Default for SendHistory {
    fn default() -> Self {
        SendHistory::new(HISTORY_PACKETS)
    }
}

impl SendHistory {
    /// A history of `capacity` packets (at least 1).
    pub fn new(capacity: usize) -> Self {
        SendHistory { slots: vec![None; capacity.max(1)] }
    }

    fn index(&self, seq: u64) -> usize {
        (seq % self.slots.len() as u64) as usize
    }

    /// Records a packet as sent (or, at a relay, as received for forwarding); replay and
    /// retransmission flags are not kept.
    pub fn record(&mut self, header: &MediaHeader) {
        let i = self.index(header.seq);
        let flags = header.flags & !(FLAG_FROM_CACHE | FLAG_RETRANSMITTED);
        self.slots[i] = Some(MediaHeader { flags, ..*header });
    }

    /// The header of packet `seq`, if it is still held.
    pub fn get(&self, seq: u64) -> Option<&MediaHeader> {
        self.slots[self.index(seq)].as_ref().filter(|h| h.seq == seq)
    }
}

/// How a [`Retransmitter`] limits what it resends to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// Packets answered per NACK; further numbers in it are ignored.
    pub max_packets_per_nack: usize,
    /// Byte budget refill rate, bytes per second (headers included).
    pub budget_bytes_per_sec: u64,
    /// Byte budget depth, bytes.
    pub budget_burst_bytes: u64,
}

impl RetransmitConfig {
    /// For a stream of `bitrate_bps`: the stream's rate, one second deep.
    pub fn for_bitrate(bitrate_bps: u64) -> Self {
        let rate = (bitrate_bps / 8).max(MEDIA_HEADER_LEN as u64);
        RetransmitConfig {
            max_packets_per_nack: MAX_NACK_SEQS,
            budget_bytes_per_sec: rate,
            budget_burst_bytes: rate,
        }
    }
}

/// What a [`Retransmitter`] did. Counters accumulate; take them to start over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetransmitCounters {
    pub nacks_received: u64,
    /// Sequence numbers asked for.
    pub packets_requested: u64,
    /// Packets resent, and their bytes (header included).
    pub retransmitted: u64,
    pub retransmitted_bytes: u64,
    /// No longer (or never) in the history.
    pub not_in_history: u64,
    /// Resent to this peer less than one RTT before.
    pub repeats_ignored: u64,
    /// Beyond the per-NACK cap.
    pub over_packet_cap: u64,
    /// Refused for want of byte budget.
    pub over_budget: u64,
}

/// Answers one peer's NACKs from a [`SendHistory`].
#[derive(Debug, Clone)]
pub struct Retransmitter {
    config: RetransmitConfig,
    rtt: RttEstimate,
    tokens: u64,
    refilled: Option<Time>,
    /// `(seq + 1, when)` of recent resends by `seq % RESEND_SLOTS`; 0 is an empty slot.
    resent: Vec<(u64, Time)>,
    counters: RetransmitCounters,
}

impl Retransmitter {
    pub fn new(config: RetransmitConfig) -> Self {
        Retransmitter {
            tokens: config.budget_burst_bytes,
            config,
            rtt: RttEstimate::default(),
            refilled: None,
            resent: vec![(0, Time::ZERO); RESEND_SLOTS],
            counters: RetransmitCounters::default(),
        }
    }

    /// A round-trip-time sample towards this peer.
    pub fn on_rtt_sample(&mut self, rtt: Duration) {
        self.rtt.on_sample(rtt);
    }

    fn refill(&mut self, now: Time) {
        if let Some(last) = self.refilled {
            let elapsed = now.saturating_since(last).as_nanos();
            let add = elapsed * u128::from(self.config.budget_bytes_per_sec) / 1_000_000_000;
            let tokens = u128::from(self.tokens) + add;
            self.tokens = tokens.min(u128::from(self.config.budget_burst_bytes)) as u64;
            if add == 0 {
                // Keep the fraction for later instead of losing it.
                return;
            }
        }
        self.refilled = Some(now);
    }

    /// Notes that packet `seq` was just sent to this peer as a retransmission without a NACK
    /// from it: a relay forwarding what it repaired on its publisher leg. A NACK for it from
    /// this peer within one RTT (sent before the forward arrived) is then a repeat.
    pub fn note_resent(&mut self, now: Time, seq: u64) {
        self.resent[(seq % RESEND_SLOTS as u64) as usize] = (seq + 1, now);
    }

    /// Answers `nack` at `now`: the headers to send again, in the order asked, each marked
    /// [`FLAG_RETRANSMITTED`]. The transport stamps `send_ns` as it sends them and regenerates
    /// the payload (`payload_len` zero bytes).
    pub fn on_nack(&mut self, now: Time, nack: &Nack, history: &SendHistory) -> Vec<MediaHeader> {
        self.refill(now);
        let c = &mut self.counters;
        c.nacks_received += 1;
        c.packets_requested += nack.seqs.len() as u64;
        let cap = self.config.max_packets_per_nack;
        c.over_packet_cap += nack.seqs.len().saturating_sub(cap) as u64;
        let rtt = self.rtt.or_default();
        let mut out = Vec::new();
        for &seq in nack.seqs.iter().take(cap) {
            let Some(header) = history.get(seq) else {
                c.not_in_history += 1;
                continue;
            };
            let slot = &mut self.resent[(seq % RESEND_SLOTS as u64) as usize];
            if slot.0 == seq + 1 && now < slot.1 + rtt {
                c.repeats_ignored += 1;
                continue;
            }
            let bytes = (MEDIA_HEADER_LEN as u64).saturating_add(u64::from(header.payload_len));
            if bytes > self.tokens {
                c.over_budget += 1;
                continue;
            }
            self.tokens -= bytes;
            *slot = (seq + 1, now);
            c.retransmitted += 1;
            c.retransmitted_bytes += bytes;
            out.push(MediaHeader { flags: header.flags | FLAG_RETRANSMITTED, ..*header });
        }
        out
    }

    /// What it has done so far.
    pub fn counters(&self) -> &RetransmitCounters {
        &self.counters
    }

    /// Takes the counters, starting over.
    pub fn take_counters(&mut self) -> RetransmitCounters {
        std::mem::take(&mut self.counters)
    }
}

#[cfg(test)]
mod tests {
    use stallwatch_proto::media::FrameKind;

    use super::*;

    fn header(seq: u64, payload_len: u32) -> MediaHeader {
        MediaHeader {
            kind: FrameKind::Predicted,
            flags: FLAG_FROM_CACHE,
            frag_index: 0,
            frag_count: 1,
            stream_id: 1,
            payload_len,
            seq,
            frame: seq as u32,
            gop: 0,
            capture_ns: seq,
            send_ns: seq,
        }
    }

    fn nack(seqs: impl IntoIterator<Item = u64>) -> Nack {
        Nack { seqs: seqs.into_iter().collect() }
    }

    #[test]
    fn the_history_holds_the_last_packets_by_sequence_number() {
        let mut h = SendHistory::new(4);
        for seq in 0..6 {
            h.record(&header(seq, 100));
        }
        assert!(h.get(1).is_none(), "overwritten by 5");
        let got = h.get(5).unwrap();
        assert_eq!((got.seq, got.flags), (5, 0), "flags are not kept");
        assert!(h.get(9).is_none(), "never sent");
        assert_eq!(std::mem::size_of::<Option<MediaHeader>>(), 48);
    }

    #[test]
    fn a_nack_is_answered_once_per_rtt_within_the_cap() {
        let mut h = SendHistory::default();
        for seq in 0..200 {
            h.record(&header(seq, 1_000));
        }
        let mut r = Retransmitter::new(RetransmitConfig::for_bitrate(100_000_000));
        let sent = r.on_nack(Time::from_millis(0), &nack([3, 5, 500]), &h);
        assert_eq!(sent.iter().map(|h| h.seq).collect::<Vec<_>>(), vec![3, 5]);
        assert!(sent.iter().all(|h| h.flags == FLAG_RETRANSMITTED));
        // The same packet within one RTT (100 ms before any sample) is a repeat.
        assert!(r.on_nack(Time::from_millis(99), &nack([3]), &h).is_empty());
        assert_eq!(r.on_nack(Time::from_millis(100), &nack([3]), &h).len(), 1);
        // A NACK of 100 numbers gets 64 answers.
        assert_eq!(r.on_nack(Time::from_millis(200), &nack(100..200), &h).len(), MAX_NACK_SEQS);
        let c = r.counters();
        assert_eq!(c.nacks_received, 4);
        assert_eq!(c.packets_requested, 3 + 1 + 1 + 100);
        assert_eq!((c.retransmitted, c.retransmitted_bytes), (67, 67 * 1_048));
        assert_eq!((c.not_in_history, c.repeats_ignored, c.over_packet_cap), (1, 1, 36));
    }

    #[test]
    fn the_byte_budget_refills_at_its_rate() {
        let mut h = SendHistory::default();
        for seq in 0..100 {
            h.record(&header(seq, 952)); // 1000 bytes with the header
        }
        // 8 kbit/s: 1000 bytes per second, one second deep.
        let mut r = Retransmitter::new(RetransmitConfig::for_bitrate(8_000));
        assert_eq!(r.on_nack(Time::ZERO, &nack([1, 2]), &h).len(), 1);
        assert_eq!(r.counters().over_budget, 1);
        assert!(r.on_nack(Time::from_millis(999), &nack([2]), &h).is_empty());
        assert_eq!(r.on_nack(Time::from_millis(1_000), &nack([2]), &h).len(), 1);
        // Never more than one second's worth at once, however long it waited.
        assert_eq!(r.on_nack(Time::from_millis(60_000), &nack([3, 4]), &h).len(), 1);
    }
}
