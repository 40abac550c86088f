//! Loss repair, sans-IO: generic NACK and keyframe requests, as RTP/AVPF (RFC 4585 §6.2.1
//! Generic NACK, §6.3.1 PLI) and SRT's ARQ repair a live stream.
//!
//! The pieces compose for every role:
//! - a **viewer** runs a [`NackScheduler`] and asks for keyframes; the
//!   [`Receiver`](crate::Receiver) does both when its [`Repair`] mode is [`Repair::Nack`] and
//!   hands the requests out through [`Receiver::poll_feedback`](crate::Receiver::poll_feedback);
//! - a **sender** (the publisher, or a relay towards its viewers) keeps a [`SendHistory`] of
//!   the headers it sent and answers each peer's NACKs through that peer's [`Retransmitter`]
//!   (repeat suppression, a per-NACK cap and a byte budget); a publisher's
//!   [`Pacer::request_keyframe`](crate::Pacer::request_keyframe) starts a new GOP;
//! - a **relay** is both: a [`NackScheduler`] without a player towards the publisher, a
//!   [`SendHistory`] and one [`Retransmitter`] per viewer, and a [`KeyframeGate`] that forwards
//!   viewers' keyframe requests upstream at most every [`KEYFRAME_REQUEST_INTERVAL`].
//!
//! Nothing here encodes anything: [`Nack`] and [`Feedback`] are the values the transports will
//! put on the wire. Constants and their sources: `../shared/research/viewer-model.md`, and
//! `docs/metrics.md` section 18.

mod history;
mod nack;

use std::time::Duration;

pub use history::{
    HISTORY_PACKETS, RESEND_SLOTS, RetransmitConfig, RetransmitCounters, Retransmitter, SendHistory,
};
pub use nack::{
    MAX_NACK_LIST, MAX_RETRIES, MIN_RETRY_INTERVAL, NackConfig, NackCounters, NackScheduler,
    REORDER_ALLOWANCE,
};

use crate::time::Time;

/// Whether a viewer repairs loss (the plan's `repair` field; defined with the plan so the
/// collector and the agent share it).
pub use stallwatch_proto::plan::Repair;

/// Sequence numbers one NACK message may carry (and a sender answers at most). RFC 4585 packs
/// 17 per FCI and allows several FCIs per packet; 64 keeps one NACK in one small datagram and
/// bounds what one NACK can make a sender send.
pub const MAX_NACK_SEQS: usize = 64;

/// Round-trip time assumed until one is measured (libwebrtc `kDefaultRttMs`, SRT `INITIAL_RTT`).
pub const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// Keyframe requests are repeated, and forwarded upstream, at most this often (libwebrtc
/// `kMaxWaitForKeyFrame`).
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(200);

/// How long a publisher that repairs keeps answering NACKs after its last frame, before it says
/// goodbye. The last packets can be lost like any other; without this the end of every attempt
/// would show as residual loss (and a missing last frame) at each viewer. One second covers a
/// viewer's playout delay and a relay's NACK window towards the publisher
/// ([`NackConfig::default`]'s `max_age`).
pub const END_OF_STREAM_REPAIR: Duration = Duration::from_secs(1);

/// A viewer stops repeating keyframe requests when no packet has arrived for this long: a
/// dead path gets no stream of requests (libwebrtc asks only while packets keep coming).
pub const KEYFRAME_REQUEST_IDLE: Duration = Duration::from_secs(1);

/// A request to resend packets, by sequence number (RFC 4585 generic NACK).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Nack {
    /// Ascending, at most [`MAX_NACK_SEQS`].
    pub seqs: Vec<u64>,
}

/// What a viewer (or a relay) asks of the sender upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// Resend these packets.
    Nack(Nack),
    /// Start a new GOP now (RFC 4585 PLI): a frame could not be completed by its deadline.
    KeyframeRequest,
}

/// A smoothed round-trip time and its variation (RFC 6298: `rttvar += (|srtt - r| - rttvar)
/// / 4`, then `srtt += (r - srtt) / 8`; the first sample sets `srtt = r`, `rttvar = r / 2`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttEstimate {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimate {
    /// Adds one sample.
    pub fn on_sample(&mut self, rtt: Duration) {
        let Some(srtt) = self.srtt else {
            self.srtt = Some(rtt);
            self.rttvar = rtt / 2;
            return;
        };
        let deviation = srtt.abs_diff(rtt);
        self.rttvar = (self.rttvar * 3 + deviation) / 4;
        self.srtt = Some((srtt * 7 + rtt) / 8);
    }

    /// The smoothed RTT, if any sample was seen.
    pub fn get(&self) -> Option<Duration> {
        self.srtt
    }

    /// The smoothed RTT, or [`DEFAULT_RTT`] before the first sample.
    pub fn or_default(&self) -> Duration {
        self.srtt.unwrap_or(DEFAULT_RTT)
    }

    /// How long an answer to a request may take: `srtt + 4 rttvar` (RFC 6298's retransmission
    /// timeout without its 1 s floor), [`DEFAULT_RTT`] before the first sample.
    pub fn timeout(&self) -> Duration {
        self.srtt.map_or(DEFAULT_RTT, |srtt| srtt + self.rttvar * 4)
    }
}

/// Lets keyframe requests through at most once per interval: a viewer repeating its request
/// while it still needs a keyframe, or a relay forwarding its viewers' requests upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeGate {
    interval: Duration,
    last: Option<Time>,
}

impl Default for KeyframeGate {
    fn default() -> Self {
        KeyframeGate::new(KEYFRAME_REQUEST_INTERVAL)
    }
}

impl KeyframeGate {
    pub fn new(interval: Duration) -> Self {
        KeyframeGate { interval, last: None }
    }

    /// Whether a request may go out at `now`; if so, it is counted as sent.
    pub fn try_pass(&mut self, now: Time) -> bool {
        if self.next_pass().is_some_and(|next| now < next) {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// When the next request may go out (`None`: at once).
    pub fn next_pass(&self) -> Option<Time> {
        self.last.map(|t| t + self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_is_smoothed_like_rfc6298() {
        let ms = Duration::from_millis;
        let mut rtt = RttEstimate::default();
        assert_eq!((rtt.or_default(), rtt.timeout()), (DEFAULT_RTT, DEFAULT_RTT));
        rtt.on_sample(ms(80));
        assert_eq!((rtt.get(), rtt.timeout()), (Some(ms(80)), ms(80 + 4 * 40)));
        rtt.on_sample(ms(160));
        // rttvar = (3 * 40 + 80) / 4 = 50; srtt = (7 * 80 + 160) / 8 = 90.
        assert_eq!((rtt.get(), rtt.timeout()), (Some(ms(90)), ms(90 + 4 * 50)));
        // A steady RTT: the variation decays and the timeout approaches the RTT.
        for _ in 0..60 {
            rtt.on_sample(ms(90));
        }
        assert!(rtt.timeout() < ms(91), "{:?}", rtt.timeout());
    }

    #[test]
    fn the_gate_passes_one_request_per_interval() {
        let mut gate = KeyframeGate::default();
        assert!(gate.try_pass(Time::from_millis(1_000)));
        assert!(!gate.try_pass(Time::from_millis(1_199)));
        assert_eq!(gate.next_pass(), Some(Time::from_millis(1_200)));
        assert!(gate.try_pass(Time::from_millis(1_200)));
    }

    #[test]
    fn modes_parse_and_print() {
        assert_eq!("nack".parse::<Repair>(), Ok(Repair::Nack));
        assert_eq!(Repair::None.to_string(), "none");
        assert!("fec".parse::<Repair>().unwrap_err().contains("nack or none"));
    }
}
