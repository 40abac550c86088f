//! Loss, duplicates, reordering and loss bursts from sequence numbers.
//!
//! - Loss follows RFC 7680 with a declared wait time: a missing sequence number is declared
//!   lost once `wait` has passed since a later packet revealed the gap. Packets that arrive
//!   after that are still lost (and counted as `late_after_wait`).
//! - Reordering follows the RFC 4737 NextExp rule: a packet is reordered when its sequence
//!   number is below the next expected one (highest received + 1).
//! - Bursts follow RFC 3611 with Gmin = 16: a burst starts with a lost packet, contains no run
//!   of Gmin or more received packets, and ends with a lost packet. As in RFC 3611 Appendix
//!   A.2, a lone loss with at least Gmin received packets on both sides is a gap loss, not a
//!   burst, so every burst holds at least two losses.
//! - Gilbert-Elliott p and r are fitted from the loss indicator in sequence order:
//!   p = P(lost | previous received), r = P(received | previous lost). The tracker keeps the
//!   four transition counts so reports from many windows and agents merge exactly.
//!
//! Memory is bounded: one bit per sequence number over the last [`HISTORY`] numbers and at
//! most [`MAX_PENDING_GAPS`] undecided gaps, however long the stream runs.

use std::collections::VecDeque;
use std::time::Duration;

use crate::recorder::Recorder;
use crate::time::Time;

/// RFC 3611 Gmin: received packets that end a burst.
pub const GMIN: u64 = 16;
/// Sequence numbers remembered for duplicate detection and late arrivals (8 KiB of bits).
pub const HISTORY: u64 = 1 << 16;
/// Undecided gaps kept at once; beyond this the oldest is declared lost before its wait ends.
pub const MAX_PENDING_GAPS: usize = 4096;

/// What the tracker made of one arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First copy of this sequence number; `in_order` is false for a reordered packet.
    New { in_order: bool },
    /// First copy of a sequence number already declared lost (its wait had ended): it stays
    /// lost, and is counted as reordered and `late_after_wait`.
    LateAfterWait,
    /// A sequence number already received.
    Duplicate,
    /// Too far behind the highest sequence number to tell a duplicate from a late packet.
    Stale,
}

/// Counts for one window. Every packet is decided once, in the window where its fate became
/// known, so windows add up to the stream's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossCounters {
    /// Sequence numbers decided (received + lost).
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Packets that arrived after they had been declared lost.
    pub late_after_wait: u64,
    /// Packets too old to check (more than [`HISTORY`] behind).
    pub stale: u64,
    /// Sequence jumps of [`HISTORY`] or more (a restarted sender); the gap is not counted as loss.
    pub discontinuities: u64,
    /// Packets declared lost before their wait time ended, because history was full.
    pub wait_cut_short: u64,
    /// RFC 3611 bursts closed in this window.
    pub bursts: u64,
    /// Lost packets inside bursts.
    pub burst_lost: u64,
    /// Packets (lost and received) inside bursts.
    pub burst_packets: u64,
    /// Lost packets outside bursts.
    pub gap_lost: u64,
    /// Loss-indicator transitions, in sequence order, for the Gilbert-Elliott fit.
    pub received_then_received: u64,
    pub received_then_lost: u64,
    pub lost_then_received: u64,
    pub lost_then_lost: u64,
}

impl LossCounters {
    /// Fitted Gilbert-Elliott p = P(lost | previous received), if any transition was seen.
    pub fn gilbert_p(&self) -> Option<f64> {
        ratio(self.received_then_lost, self.received_then_received + self.received_then_lost)
    }

    /// Fitted Gilbert-Elliott r = P(received | previous lost), if any loss was followed.
    pub fn gilbert_r(&self) -> Option<f64> {
        ratio(self.lost_then_received, self.lost_then_received + self.lost_then_lost)
    }

    /// Lost / expected, if anything was expected.
    pub fn loss_ratio(&self) -> Option<f64> {
        ratio(self.lost, self.expected)
    }
}

impl std::ops::AddAssign<&LossCounters> for LossCounters {
    fn add_assign(&mut self, o: &LossCounters) {
        self.expected += o.expected;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.late_after_wait += o.late_after_wait;
        self.stale += o.stale;
        self.discontinuities += o.discontinuities;
        self.wait_cut_short += o.wait_cut_short;
        self.bursts += o.bursts;
        self.burst_lost += o.burst_lost;
        self.burst_packets += o.burst_packets;
        self.gap_lost += o.gap_lost;
        self.received_then_received += o.received_then_received;
        self.received_then_lost += o.received_then_lost;
        self.lost_then_received += o.lost_then_received;
        self.lost_then_lost += o.lost_then_lost;
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

#[derive(Debug, Clone, Copy)]
struct Gap {
    start: u64,
    /// One past the last missing sequence number.
    end: u64,
    missing: u64,
    detected: Time,
}

#[derive(Debug, Clone, Copy)]
struct Cluster {
    first_loss: u64,
    last_loss: u64,
    losses: u64,
}

/// Tracks one stream's sequence numbers. Sans-IO: callers pass arrival times in.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    wait: Duration,
    started: bool,
    highest: u64,
    /// Every sequence number below this is decided.
    frontier: u64,
    bits: Vec<u64>,
    gaps: VecDeque<Gap>,
    previous_received: Option<bool>,
    received_since_loss: u64,
    cluster: Option<Cluster>,
    /// Position of the next decision in the loss indicator.
    position: u64,
    counters: LossCounters,
    reorder_distance: Recorder,
    burst_length: Recorder,
}

impl SeqTracker {
    /// A tracker that declares a packet lost `wait` after its gap is seen (RFC 7680's wait time).
    pub fn new(wait: Duration) -> Self {
        SeqTracker {
            wait,
            started: false,
            highest: 0,
            frontier: 0,
            bits: vec![0; (HISTORY / 64) as usize],
            gaps: VecDeque::new(),
            previous_received: None,
            received_since_loss: 0,
            cluster: None,
            position: 0,
            counters: LossCounters::default(),
            reorder_distance: Recorder::new(),
            burst_length: Recorder::new(),
        }
    }

    fn bit(&self, seq: u64) -> bool {
        let i = seq % HISTORY;
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set_bit(&mut self, seq: u64, value: bool) {
        let i = seq % HISTORY;
        let word = &mut self.bits[(i / 64) as usize];
        if value {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
    }

    /// Feeds one arriving packet.
    pub fn on_packet(&mut self, now: Time, seq: u64) -> Arrival {
        if !self.started {
            self.started = true;
            self.highest = seq;
            self.frontier = seq;
            self.set_bit(seq, true);
            self.advance(now, 0);
            return Arrival::New { in_order: true };
        }
        if seq > self.highest {
            let jump = seq - self.highest;
            if jump >= HISTORY {
                // A restarted or misbehaving sender: settle what is pending and start over.
                self.advance(now, self.highest + 1);
                self.counters.discontinuities += 1;
                self.bits.fill(0);
                self.highest = seq;
                self.frontier = seq;
                self.set_bit(seq, true);
                self.advance(now, 0);
                return Arrival::New { in_order: true };
            }
            // Make room in the history before overwriting it.
            self.advance(now, (seq + 1).saturating_sub(HISTORY));
            if jump > 1 {
                self.gaps.push_back(Gap {
                    start: self.highest + 1,
                    end: seq,
                    missing: jump - 1,
                    detected: now,
                });
            }
            for s in self.highest + 1..seq {
                self.set_bit(s, false);
            }
            self.set_bit(seq, true);
            self.highest = seq;
            let overflow = self.gaps.len().saturating_sub(MAX_PENDING_GAPS);
            let must_decide = self.gaps.get(overflow.saturating_sub(1)).map(|g| g.end);
            self.advance(now, if overflow > 0 { must_decide.unwrap_or(0) } else { 0 });
            return Arrival::New { in_order: true };
        }
        if self.highest - seq >= HISTORY {
            self.counters.stale += 1;
            return Arrival::Stale;
        }
        if self.bit(seq) {
            self.counters.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.set_bit(seq, true);
        self.counters.reordered += 1;
        self.reorder_distance.record(self.highest + 1 - seq);
        if seq < self.frontier {
            self.counters.late_after_wait += 1;
            self.advance(now, 0);
            return Arrival::LateAfterWait;
        } else {
            // Fill the pending gap holding `seq`; gaps are sorted and disjoint.
            let i = self.gaps.partition_point(|g| g.end <= seq);
            if let Some(gap) = self.gaps.get_mut(i).filter(|g| g.start <= seq) {
                gap.missing -= 1;
                if gap.missing == 0 {
                    self.gaps.remove(i);
                }
            }
        }
        self.advance(now, 0);
        Arrival::New { in_order: false }
    }

    /// When the gap holding `seq` was seen, if `seq` is missing and not yet decided.
    pub fn missing_since(&self, seq: u64) -> Option<Time> {
        if !self.started || seq < self.frontier || seq > self.highest || self.bit(seq) {
            return None;
        }
        let i = self.gaps.partition_point(|g| g.end <= seq);
        self.gaps.get(i).filter(|g| g.start <= seq).map(|g| g.detected)
    }

    /// Declares lost every gap whose wait has ended by `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.started {
            self.advance(now, 0);
        }
    }

    /// When the oldest pending gap's wait ends, if any gap is pending.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.gaps.front().map(|g| g.detected + self.wait)
    }

    /// Decides every sequence number it can: up to the first gap still within its wait,
    /// and at least up to `decide_below` (declaring gaps below it lost early).
    fn advance(&mut self, now: Time, decide_below: u64) {
        loop {
            let Some(gap) = self.gaps.front().copied() else {
                self.decide_until(self.highest + 1);
                return;
            };
            let waited = now >= gap.detected + self.wait;
            if !waited && gap.start >= decide_below {
                self.decide_until(gap.start);
                return;
            }
            self.decide_until(gap.end);
            if !waited {
                self.counters.wait_cut_short += gap.missing;
            }
            self.gaps.pop_front();
        }
    }

    fn decide_until(&mut self, end: u64) {
        while self.frontier < end {
            let received = self.bit(self.frontier);
            self.decide(received);
            self.frontier += 1;
        }
    }

    fn decide(&mut self, received: bool) {
        let c = &mut self.counters;
        c.expected += 1;
        match (self.previous_received, received) {
            (Some(true), true) => c.received_then_received += 1,
            (Some(true), false) => c.received_then_lost += 1,
            (Some(false), true) => c.lost_then_received += 1,
            (Some(false), false) => c.lost_then_lost += 1,
            (None, _) => {}
        }
        self.previous_received = Some(received);
        if received {
            c.received += 1;
            self.received_since_loss += 1;
            if self.received_since_loss >= GMIN {
                self.close_cluster();
            }
        } else {
            c.lost += 1;
            self.received_since_loss = 0;
            match &mut self.cluster {
                // An open cluster has seen fewer than Gmin received packets since its last loss.
                Some(cluster) => {
                    cluster.last_loss = self.position;
                    cluster.losses += 1;
                }
                None => {
                    self.cluster = Some(Cluster {
                        first_loss: self.position,
                        last_loss: self.position,
                        losses: 1,
                    })
                }
            }
        }
        self.position += 1;
    }

    fn close_cluster(&mut self) {
        let Some(cluster) = self.cluster.take() else { return };
        if cluster.losses >= 2 {
            let length = cluster.last_loss - cluster.first_loss + 1;
            self.counters.bursts += 1;
            self.counters.burst_lost += cluster.losses;
            self.counters.burst_packets += length;
            self.burst_length.record(length);
        } else {
            self.counters.gap_lost += 1;
        }
    }

    /// Ends the stream: declares every pending gap lost now and closes any open burst.
    /// Losses after the last received packet cannot be seen and are not counted.
    pub fn finish(&mut self) {
        if !self.started {
            return;
        }
        while let Some(gap) = self.gaps.pop_front() {
            self.decide_until(gap.end);
        }
        self.decide_until(self.highest + 1);
        self.close_cluster();
    }

    /// Counters for the window so far.
    pub fn counters(&self) -> &LossCounters {
        &self.counters
    }

    /// Takes this window's counters and histograms (reorder distance in packets, burst length
    /// in packets), starting a new window.
    pub fn take_window(&mut self) -> (LossCounters, Recorder, Recorder) {
        (std::mem::take(&mut self.counters), self.reorder_distance.take(), self.burst_length.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(2);

    fn feed(t: &mut SeqTracker, arrivals: &[(u64, u64)]) -> Vec<Arrival> {
        arrivals.iter().map(|&(ms, seq)| t.on_packet(Time::from_millis(ms), seq)).collect()
    }

    #[test]
    fn scripted_sequence_gives_exact_loss_reorder_and_duplicate_counts() {
        let mut t = SeqTracker::new(WAIT);
        // 0 1 2 | 3 missing | 5 before 4 | 2 again | 6 7 | 8,9 missing | 10 | 9 after the wait.
        let got = feed(
            &mut t,
            &[(0, 0), (10, 1), (20, 2), (40, 5), (41, 4), (42, 2), (50, 6), (60, 7), (80, 10)],
        );
        assert_eq!(got[3], Arrival::New { in_order: true });
        assert_eq!(got[4], Arrival::New { in_order: false });
        assert_eq!(got[5], Arrival::Duplicate);
        // Before the wait ends nothing after the first gap is decided.
        assert_eq!(t.counters().expected, 3);
        t.handle_timeout(Time::from_millis(2_039));
        assert_eq!(t.counters().lost, 0);
        t.handle_timeout(Time::from_millis(2_040));
        assert_eq!(t.counters().lost, 1); // seq 3
        t.handle_timeout(Time::from_millis(2_080));
        assert_eq!(t.missing_since(9), None, "already declared lost");
        assert_eq!(t.on_packet(Time::from_millis(2_100), 9), Arrival::LateAfterWait);
        let (c, reorder, _) = t.take_window();
        assert_eq!(c.expected, 11);
        assert_eq!(c.received, 8);
        assert_eq!(c.lost, 3); // 3, 8, 9
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.reordered, 2); // 4 and the late 9
        assert_eq!(c.late_after_wait, 1);
        assert_eq!(reorder.count(), 2);
        assert_eq!(reorder.sum(), 2 + 2); // 4 arrived with NextExp 6; 9 with NextExp 11
    }

    #[test]
    fn a_gap_filled_within_the_wait_is_decided_at_once() {
        let mut t = SeqTracker::new(WAIT);
        feed(&mut t, &[(0, 0), (1, 2)]);
        assert_eq!(t.missing_since(1), Some(Time::from_millis(1)));
        assert_eq!(
            (t.missing_since(0), t.missing_since(2), t.missing_since(3)),
            (None, None, None)
        );
        feed(&mut t, &[(2, 1)]);
        assert_eq!(t.missing_since(1), None);
        assert_eq!(t.counters().expected, 3);
        assert_eq!(t.counters().lost, 0);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn isolated_losses_are_gap_losses_and_close_losses_make_a_burst() {
        let mut t = SeqTracker::new(WAIT);
        // Lose 20 (isolated), then 50, 52, 53 (a burst of length 4), then 100 received.
        let mut seq_ms = 0;
        for seq in 0..=100u64 {
            if [20, 50, 52, 53].contains(&seq) {
                continue;
            }
            t.on_packet(Time::from_millis(seq_ms), seq);
            seq_ms += 1;
        }
        t.finish();
        let (c, _, bursts) = t.take_window();
        assert_eq!(c.lost, 4);
        assert_eq!(c.gap_lost, 1);
        assert_eq!(c.bursts, 1);
        assert_eq!(c.burst_lost, 3);
        assert_eq!(c.burst_packets, 4);
        assert_eq!(bursts.sum(), 4);
        // Transitions: R->L three times (19->20, 49->50, 51->52), L->R three times, L->L once.
        assert_eq!(c.received_then_lost, 3);
        assert_eq!(c.lost_then_received, 3);
        assert_eq!(c.lost_then_lost, 1);
        assert_eq!(c.received_then_received, 100 - 7);
    }

    #[test]
    fn a_loss_followed_by_fewer_than_gmin_received_and_another_loss_is_one_burst() {
        let mut t = SeqTracker::new(WAIT);
        // Losses at 10 and 10 + GMIN (GMIN - 1 received between them): one burst.
        for seq in (0..60u64).filter(|&s| s != 10 && s != 10 + GMIN) {
            t.on_packet(Time::ZERO, seq);
        }
        t.finish();
        let c = t.counters();
        assert_eq!((c.bursts, c.burst_packets, c.gap_lost), (1, GMIN + 1, 0));
        // GMIN received between them: two gap losses.
        let mut t = SeqTracker::new(WAIT);
        for seq in (0..60u64).filter(|&s| s != 10 && s != 11 + GMIN) {
            t.on_packet(Time::ZERO, seq);
        }
        t.finish();
        assert_eq!((t.counters().bursts, t.counters().gap_lost), (0, 2));
    }

    #[test]
    fn nothing_is_decided_before_the_first_packet() {
        let mut t = SeqTracker::new(WAIT);
        t.handle_timeout(Time::from_millis(5_000));
        t.finish();
        assert_eq!(t.counters(), &LossCounters::default());
        t.on_packet(Time::from_millis(5_001), 100);
        assert_eq!((t.counters().expected, t.counters().lost), (1, 0));
    }

    #[test]
    fn a_huge_jump_is_a_discontinuity_not_a_loss() {
        let mut t = SeqTracker::new(WAIT);
        feed(&mut t, &[(0, 0), (1, 1), (2, 1_000_000), (3, 1_000_001)]);
        assert_eq!(t.counters().discontinuities, 1);
        assert_eq!(t.counters().lost, 0);
        assert_eq!(t.counters().expected, 4);
        assert_eq!(t.on_packet(Time::from_millis(4), 0), Arrival::Stale);
    }

    #[test]
    fn too_many_pending_gaps_decide_the_oldest_early() {
        let mut t = SeqTracker::new(WAIT);
        for i in 0..=(MAX_PENDING_GAPS as u64 + 10) {
            t.on_packet(Time::ZERO, i * 2);
        }
        let c = t.counters();
        assert_eq!(c.wait_cut_short, 10);
        assert_eq!(c.lost, 10);
        assert!(t.gaps.len() <= MAX_PENDING_GAPS);
    }

    #[test]
    fn windows_add_up_to_the_whole_stream() {
        let mut t = SeqTracker::new(WAIT);
        let mut total = LossCounters::default();
        // The last packet arrives: losses after the last arrival cannot be seen.
        let lost = |seq: u64| seq % 7 == 3 && seq < 9_990;
        for seq in 0..10_000u64 {
            if lost(seq) {
                continue;
            }
            t.on_packet(Time::from_millis(seq), seq);
            if seq % 1000 == 999 {
                let (c, _, _) = t.take_window();
                total.expected += c.expected;
                total.lost += c.lost;
            }
        }
        t.finish();
        let (c, _, _) = t.take_window();
        total.expected += c.expected;
        total.lost += c.lost;
        assert_eq!(total.expected, 10_000);
        assert_eq!(total.lost, (0..10_000u64).filter(|&s| lost(s)).count() as u64);
    }
}
