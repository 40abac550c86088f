//! The receiving side of repair: which sequence numbers to NACK, and when.
//!
//! - A gap is seen when a packet arrives above the highest sequence number so far. Each missing
//!   number is asked for once [`REORDER_ALLOWANCE`] has passed (a reordered packet arriving in
//!   the meantime is not asked for), then again at most once per retry interval: at least one
//!   RTT, as libwebrtc's `NackRequester` does, with room for the path's variation, so that an
//!   answer still on its way is not asked for again: `max(SRTT + 4 RTTVAR, 20 ms)` (RFC 6298's
//!   timeout without its 1 s floor), 100 ms before an RTT is known.
//! - It is asked for while it can still be of use: until its playout deadline (the deadline of
//!   the packet that revealed the gap, an upper bound: a missing packet was captured no later),
//!   or, with no playout timeline (a relay, or a player not yet playing or rebuffering), until
//!   `max_age` after the gap was seen; and at most [`MAX_RETRIES`] times.
//! - One NACK carries at most [`MAX_NACK_SEQS`] numbers, oldest first; more due at once go in
//!   the next NACK of the same poll.
//! - The list is bounded: at most [`MAX_NACK_LIST`] missing numbers, the oldest dropped first.
//! - A sender that has no other RTT sample (a relay towards a plain-UDP publisher: its pings go
//!   the other way) learns one from its own repairs: a retransmission that answers a number
//!   asked for once arrived one round trip (plus the sender's turnaround) after the ask
//!   ([`NackScheduler::on_retransmission`]; Karn's rule: a number asked for more than once
//!   gives no sample, as its answer could be to any ask, except while no RTT is known, when
//!   the time since the first ask, an overestimate at worst, replaces the 100 ms guess).

use std::collections::VecDeque;
use std::time::Duration;

use super::{MAX_NACK_SEQS, Nack, RttEstimate};
use crate::player::PlayoutClock;
use crate::sequence::HISTORY;
use crate::time::Time;

/// How long a gap may be a reordering before its numbers are NACKed. libwebrtc NACKs on the
/// packet after the gap, with an optional 1-20 ms hold (`WebRTC-SendNackDelayMs`); SRT at once.
/// Access links deliver in order, so a short hold costs little and spares a NACK per reordering.
pub const REORDER_ALLOWANCE: Duration = Duration::from_millis(10);
/// Shortest interval between two NACKs of one number (libwebrtc's 20 ms tick, SRT's floor).
pub const MIN_RETRY_INTERVAL: Duration = Duration::from_millis(20);
/// NACKs per missing number (libwebrtc `kMaxNackRetries`).
pub const MAX_RETRIES: u32 = 10;
/// Missing numbers tracked at once (libwebrtc `kMaxNackPackets`).
pub const MAX_NACK_LIST: usize = 1000;

/// Settings of a [`NackScheduler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackConfig {
    /// See [`REORDER_ALLOWANCE`].
    pub reorder_allowance: Duration,
    /// How long a missing number is asked for when there is no playout deadline.
    pub max_age: Duration,
    /// See [`MAX_RETRIES`].
    pub max_retries: u32,
}

impl Default for NackConfig {
    /// A 1 s `max_age`: libwebrtc's NACK history (`kNackHistoryMs`) and RFC 4588's usual
    /// `rtx-time`; a viewer uses its loss wait instead.
    fn default() -> Self {
        NackConfig {
            reorder_allowance: REORDER_ALLOWANCE,
            max_age: Duration::from_secs(1),
            max_retries: MAX_RETRIES,
        }
    }
}

/// What a [`NackScheduler`] did in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackCounters {
    /// NACK messages handed out.
    pub nacks_sent: u64,
    /// Sequence numbers asked for at least once (counted at the first ask).
    pub packets_nacked: u64,
    /// Further asks for numbers already asked for.
    pub nack_retries: u64,
    /// Numbers no longer asked for, still missing: past their deadline or out of retries.
    pub nacks_given_up: u64,
    /// Numbers never asked for (or no longer) because the list was full.
    pub nack_list_overflow: u64,
    /// RTT samples taken from repairs ([`NackScheduler::on_retransmission`]).
    pub rtt_samples: u64,
}

impl std::ops::AddAssign<&NackCounters> for NackCounters {
    fn add_assign(&mut self, o: &NackCounters) {
        self.nacks_sent += o.nacks_sent;
        self.packets_nacked += o.packets_nacked;
        self.nack_retries += o.nack_retries;
        self.nacks_given_up += o.nacks_given_up;
        self.nack_list_overflow += o.nack_list_overflow;
        self.rtt_samples += o.rtt_samples;
    }
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    seq: u64,
    /// When the gap holding it was seen.
    detected: Time,
    /// Capture time of the packet that revealed the gap: no later than this packet's.
    capture_bound_ns: u64,
    /// When it may next be asked for.
    next_at: Time,
    /// When it was first asked for (meaningful once `tries > 0`).
    first_asked: Time,
    tries: u32,
}

/// Decides which missing sequence numbers to NACK, and when. Sans-IO: feed it every arriving
/// packet's sequence number ([`NackScheduler::on_packet`]), RTT samples, and poll it.
#[derive(Debug, Clone)]
pub struct NackScheduler {
    config: NackConfig,
    highest: Option<u64>,
    /// Ascending by sequence number.
    list: VecDeque<Missing>,
    /// No entry is due before this (a lower bound; `None` when the list is empty).
    next_due: Option<Time>,
    rtt: RttEstimate,
    counters: NackCounters,
}

impl NackScheduler {
    pub fn new(config: NackConfig) -> Self {
        NackScheduler {
            config,
            highest: None,
            list: VecDeque::new(),
            next_due: None,
            rtt: RttEstimate::default(),
            counters: NackCounters::default(),
        }
    }

    /// A round-trip-time sample (a ping, the QUIC path RTT).
    pub fn on_rtt_sample(&mut self, rtt: Duration) {
        self.rtt.on_sample(rtt);
    }

    /// The retry interval: `max(SRTT + 4 RTTVAR, 20 ms)`, 100 ms before an RTT is known.
    pub fn retry_interval(&self) -> Duration {
        self.rtt.timeout().max(MIN_RETRY_INTERVAL)
    }

    /// Missing numbers being tracked.
    pub fn pending(&self) -> usize {
        self.list.len()
    }

    /// Feeds one arriving packet (original or retransmission) with its capture time.
    pub fn on_packet(&mut self, now: Time, seq: u64, capture_ns: u64) {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return;
        };
        if seq <= highest {
            if let Ok(i) = self.list.binary_search_by_key(&seq, |m| m.seq) {
                self.list.remove(i);
            }
            return;
        }
        self.highest = Some(seq);
        let jump = seq - highest;
        if jump >= HISTORY {
            // A restarted sender (see `sequence`): nothing before the jump is worth asking for.
            self.list.clear();
            self.next_due = None;
            return;
        }
        let missing = jump - 1;
        if missing == 0 {
            return;
        }
        let kept = missing.min(MAX_NACK_LIST as u64);
        self.counters.nack_list_overflow += missing - kept;
        let next_at = now + self.config.reorder_allowance;
        for s in seq - kept..seq {
            self.list.push_back(Missing {
                seq: s,
                detected: now,
                capture_bound_ns: capture_ns,
                next_at,
                first_asked: now,
                tries: 0,
            });
        }
        let overflow = self.list.len().saturating_sub(MAX_NACK_LIST);
        self.list.drain(..overflow);
        self.counters.nack_list_overflow += overflow as u64;
        self.next_due = Some(self.next_due.map_or(next_at, |t| t.min(next_at)));
    }

    /// Feeds an arriving retransmission (a packet the sender marked as resent): as
    /// [`NackScheduler::on_packet`], and, if it answers a number this scheduler asked for, an
    /// RTT sample from the ask to now (module docs). For a sender that answers from its own
    /// history; a viewer behind a relay has pongs, and the relay may have to ask upstream.
    pub fn on_retransmission(&mut self, now: Time, seq: u64, capture_ns: u64) {
        if let Ok(i) = self.list.binary_search_by_key(&seq, |m| m.seq) {
            let m = self.list[i];
            let clean = m.tries == 1 || (m.tries > 1 && self.rtt.get().is_none());
            if clean {
                self.rtt.on_sample(now.saturating_since(m.first_asked));
                self.counters.rtt_samples += 1;
            }
        }
        self.on_packet(now, seq, capture_ns);
    }

    /// The smoothed RTT, if any sample was seen.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.get()
    }

    /// When a NACK may next be due (`None`: nothing is missing).
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_due
    }

    /// The next NACK due at `now`, if any; call until `None`. `playout` is the player's
    /// timeline (`None` for a relay, or a player not playing): numbers past their deadline, or
    /// out of retries, are dropped.
    pub fn poll_nack(&mut self, now: Time, playout: Option<PlayoutClock>) -> Option<Nack> {
        if self.next_due.is_none_or(|t| t > now) {
            return None;
        }
        let interval = self.retry_interval();
        let (max_age, max_retries) = (self.config.max_age, self.config.max_retries);
        let mut seqs = Vec::new();
        let mut next_due: Option<Time> = None;
        let counters = &mut self.counters;
        self.list.retain_mut(|m| {
            let give_up_at = m.detected + max_age;
            let deadline =
                playout.map_or(give_up_at, |p| p.deadline(m.capture_bound_ns).min(give_up_at));
            let out_of_tries = m.tries >= max_retries && m.next_at <= now;
            if now >= deadline || out_of_tries {
                counters.nacks_given_up += 1;
                return false;
            }
            if m.next_at <= now && m.tries < max_retries && seqs.len() < MAX_NACK_SEQS {
                seqs.push(m.seq);
                if m.tries == 0 {
                    counters.packets_nacked += 1;
                    m.first_asked = now;
                } else {
                    counters.nack_retries += 1;
                }
                m.tries += 1;
                m.next_at = now + interval;
            }
            next_due = Some(next_due.map_or(m.next_at, |t| t.min(m.next_at)));
            true
        });
        self.next_due = next_due;
        if seqs.is_empty() {
            return None;
        }
        self.counters.nacks_sent += 1;
        Some(Nack { seqs })
    }

    /// Counters so far in this window.
    pub fn counters(&self) -> &NackCounters {
        &self.counters
    }

    /// Takes this window's counters.
    pub fn take_counters(&mut self) -> NackCounters {
        std::mem::take(&mut self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    fn drain(n: &mut NackScheduler, now: Time, playout: Option<PlayoutClock>) -> Vec<Vec<u64>> {
        std::iter::from_fn(|| n.poll_nack(now, playout)).map(|nack| nack.seqs).collect()
    }

    #[test]
    fn a_gap_is_nacked_after_the_reorder_allowance_and_again_once_per_rtt() {
        let mut n = NackScheduler::new(NackConfig::default());
        n.on_packet(ms(0), 0, 0);
        n.on_packet(ms(10), 1, 0);
        n.on_packet(ms(30), 4, 0); // 2 and 3 missing
        assert_eq!(n.poll_timeout(), Some(ms(40)));
        assert!(drain(&mut n, ms(39), None).is_empty());
        assert_eq!(drain(&mut n, ms(40), None), vec![vec![2, 3]]);
        // No RTT yet: asked again 100 ms later.
        assert_eq!(n.poll_timeout(), Some(ms(140)));
        n.on_packet(ms(60), 3, 0); // a retransmission (or the late original) of 3
        n.on_rtt_sample(Duration::from_millis(40)); // srtt 40 ms, rttvar 20 ms
        assert!(drain(&mut n, ms(139), None).is_empty());
        assert_eq!(drain(&mut n, ms(140), None), vec![vec![2]]);
        // Now the RTT is known: the next ask is srtt + 4 rttvar = 120 ms later.
        assert_eq!(n.poll_timeout(), Some(ms(260)));
        let c = n.take_counters();
        assert_eq!((c.nacks_sent, c.packets_nacked, c.nack_retries), (2, 2, 1));
    }

    #[test]
    fn repairs_give_rtt_samples_by_karns_rule() {
        let mut n = NackScheduler::new(NackConfig::default());
        assert_eq!((n.rtt(), n.retry_interval()), (None, Duration::from_millis(100)));
        n.on_packet(ms(0), 0, 0);
        n.on_packet(ms(0), 3, 0); // 1 and 2 missing
        assert_eq!(drain(&mut n, ms(10), None), vec![vec![1, 2]]);
        // No RTT known: 1 and 2 are asked again 100 ms later, before a 300 ms answer is back.
        assert_eq!(drain(&mut n, ms(110), None), vec![vec![1, 2]]);
        // The answer to the first ask: asked twice, but with no RTT known the time since the
        // first ask (at worst an overestimate) replaces the guess.
        n.on_retransmission(ms(310), 1, 0);
        assert_eq!(n.rtt(), Some(Duration::from_millis(300)));
        // Now 2 is asked twice and an RTT is known: its answer could be to either ask.
        n.on_retransmission(ms(315), 2, 0);
        assert_eq!(n.rtt(), Some(Duration::from_millis(300)));
        assert_eq!(n.counters().rtt_samples, 1);
        // srtt 300, rttvar 150: the next ask of a new gap waits 900 ms, then clean samples
        // (asked once) bring it down towards the RTT.
        assert_eq!(n.retry_interval(), Duration::from_millis(900));
        let mut t = 400;
        for seq in (5..200).step_by(2) {
            n.on_packet(ms(t), seq, 0);
            assert_eq!(drain(&mut n, ms(t + 10), None), vec![vec![seq - 1]]);
            n.on_retransmission(ms(t + 10 + 300), seq - 1, 0);
            t += 1_000;
        }
        assert!(n.retry_interval() < Duration::from_millis(310), "{:?}", n.retry_interval());
        assert_eq!(n.counters().rtt_samples, 1 + 98);
        // A retransmission nobody here asked for (or already received) is no sample.
        n.on_retransmission(ms(t), 1, 0);
        assert_eq!(n.counters().rtt_samples, 99);
        assert_eq!(n.pending(), 0);
    }

    #[test]
    fn a_reordered_packet_within_the_allowance_is_not_nacked() {
        let mut n = NackScheduler::new(NackConfig::default());
        for (t, seq) in [(0, 0), (1, 2), (5, 1), (6, 3)] {
            n.on_packet(ms(t), seq, 0);
        }
        assert_eq!(n.pending(), 0);
        assert!(drain(&mut n, ms(100), None).is_empty());
        assert_eq!(n.counters().nacks_sent, 0);
    }

    #[test]
    fn numbers_are_asked_for_until_their_deadline_or_max_retries() {
        // With a playout timeline, packet 1 (revealed by packet 2, captured at 100 ms) is due
        // at 100 + 250 = 350 ms on the receiver's clock.
        let playout = PlayoutClock::from_offset_ns(250_000_000);
        let mut n = NackScheduler::new(NackConfig::default());
        n.on_packet(ms(0), 0, 0);
        n.on_packet(ms(100), 2, 100_000_000);
        for _ in 0..100 {
            n.on_rtt_sample(Duration::from_millis(100)); // a steady 100 ms: rttvar decays to 0
        }
        let asked: Vec<u64> =
            (100..450u64).filter(|&t| !drain(&mut n, ms(t), Some(playout)).is_empty()).collect();
        assert_eq!(asked, vec![110, 210, 310]);
        // Dropped when it would next have been due (410 ms): past its deadline.
        assert_eq!(n.pending(), 0);
        assert_eq!(n.counters().nacks_given_up, 1);
        // Without one, `max_retries` ends it: 3 asks, then dropped when the third ask's retry
        // interval is over.
        let config = NackConfig { max_retries: 3, ..NackConfig::default() };
        let mut n = NackScheduler::new(config);
        n.on_packet(ms(0), 0, 0);
        n.on_packet(ms(0), 2, 0);
        n.on_rtt_sample(Duration::from_millis(4)); // 4 + 4 x 2 ms: the 20 ms floor
        let asked: Vec<u64> =
            (0..200u64).filter(|&t| !drain(&mut n, ms(t), None).is_empty()).collect();
        assert_eq!(asked, vec![10, 30, 50]);
        assert_eq!(n.pending(), 0);
        assert_eq!(n.poll_timeout(), None);
    }

    #[test]
    fn one_nack_carries_at_most_64_numbers_and_the_list_is_bounded() {
        let mut n = NackScheduler::new(NackConfig::default());
        n.on_packet(ms(0), 0, 0);
        n.on_packet(ms(0), 101, 0); // 100 missing
        let nacks = drain(&mut n, ms(10), None);
        assert_eq!(nacks.iter().map(Vec::len).collect::<Vec<_>>(), vec![64, 36]);
        assert_eq!(nacks.concat(), (1..101).collect::<Vec<u64>>());
        // A gap larger than the list keeps the newest numbers only.
        n.on_packet(ms(20), 101 + 2_000, 0);
        assert_eq!(n.pending(), MAX_NACK_LIST);
        assert_eq!(n.counters().nack_list_overflow, 1_999 - 1_000 + 100);
        // A sender restart (a jump beyond the sequence history) clears it.
        n.on_packet(ms(30), 1 << 20, 0);
        assert_eq!((n.pending(), n.poll_timeout()), (0, None));
    }
}
