//! Receiver side: feed it every media packet with its arrival time; take per-window results.
//!
//! Shape follows `quinn-proto`: [`Receiver::on_packet`] and [`Receiver::handle_timeout`] take
//! `now`, [`Receiver::poll_timeout`] says when to call again, [`Receiver::poll_feedback`] hands
//! out what to send back (NACKs, keyframe requests), nothing here reads a clock.
//! Definitions of every figure are in `docs/metrics.md`.

use std::time::Duration;

use stallwatch_proto::media::{FLAG_RETRANSMITTED, MEDIA_HEADER_LEN, MediaHeader};

use crate::noise::SelfNoise;
use crate::player::{Medium, Player, PlayerCounters};
use crate::recorder::Recorder;
use crate::repair::{
    Feedback, KEYFRAME_REQUEST_IDLE, KeyframeGate, NackConfig, NackCounters, NackScheduler, Repair,
};
use crate::sequence::{Arrival, LossCounters, SeqTracker};
use crate::time::Time;

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The virtual player's playout delay (its jitter buffer).
    pub playout_delay: Duration,
    /// RFC 7680 wait time: a missing packet is lost this long after its gap is seen.
    pub loss_wait: Duration,
    /// The medium that drives the virtual player.
    pub medium: Medium,
    /// Sender clock minus receiver clock in ns, when known (0 when one process both publishes
    /// and views on one clock). Only then is one-way latency recorded.
    pub sender_clock_offset_ns: Option<i64>,
    /// Whether this viewer repairs loss. With [`Repair::Nack`] the caller MUST send what
    /// [`Receiver::poll_feedback`] returns; the default is [`Repair::None`], the raw stream.
    pub repair: Repair,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            playout_delay: Duration::from_millis(300),
            loss_wait: Duration::from_secs(2),
            medium: Medium::Video,
            sender_clock_offset_ns: None,
            repair: Repair::None,
        }
    }
}

/// Phases of a viewer's first frame, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Transport connection set up (QUIC handshake done, or UDP relay handshake answered).
    Connect,
    /// TLS handshake done, when it is separate from `Connect`.
    Handshake,
    /// The relay accepted the subscription.
    Subscribe,
    /// The first media byte arrived.
    FirstByte,
    /// The first keyframe was complete.
    FirstKeyframe,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Connect,
        Phase::Handshake,
        Phase::Subscribe,
        Phase::FirstByte,
        Phase::FirstKeyframe,
    ];

    /// Label value used in reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Handshake => "handshake",
            Phase::Subscribe => "subscribe",
            Phase::FirstByte => "first_byte",
            Phase::FirstKeyframe => "first_keyframe",
        }
    }
}

/// A complete first-frame measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstFrame {
    /// Each phase that was marked, with its duration from the end of the previous marked phase
    /// (or from the attempt start). They add up to `total`.
    pub phases: Vec<(Phase, Duration)>,
    /// Attempt start to the first complete keyframe.
    pub total: Duration,
    /// Attempt start to the first frame on screen (`None` if none was shown by the end).
    pub first_render: Option<Duration>,
}

/// What repair did in one window, and what it left missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairCounters {
    /// Sequence numbers decided on the repaired stream (originals and retransmissions); with
    /// [`Repair::None`], the network's `expected`.
    pub residual_expected: u64,
    /// Of those, never received by the end of their loss wait: residual loss after repair.
    pub residual_lost: u64,
    /// NACKs sent and what they asked for.
    pub nack: NackCounters,
    /// Packets marked retransmitted that arrived (duplicates included).
    pub retransmissions_received: u64,
    /// Missing packets whose first copy was a retransmission, within the loss wait.
    pub packets_repaired: u64,
    /// Keyframe requests sent.
    pub keyframe_requests: u64,
}

impl std::ops::AddAssign<&RepairCounters> for RepairCounters {
    fn add_assign(&mut self, o: &RepairCounters) {
        self.residual_expected += o.residual_expected;
        self.residual_lost += o.residual_lost;
        self.nack += &o.nack;
        self.retransmissions_received += o.retransmissions_received;
        self.packets_repaired += o.packets_repaired;
        self.keyframe_requests += o.keyframe_requests;
    }
}

/// Everything measured in one window.
#[derive(Debug, Clone, Default)]
pub struct WindowMetrics {
    pub start: Time,
    pub end: Time,
    /// Set in the window in which the first frame was shown (or, if none was, the last one
    /// after the first keyframe became complete).
    pub first_frame: Option<FirstFrame>,
    /// Packets that arrived (including duplicates and retransmissions) and their bytes on the
    /// wire, headers included.
    pub packets: u64,
    pub bytes: u64,
    /// Network loss, before repair: original transmissions only.
    pub loss: LossCounters,
    /// The player, on the repaired stream (the raw one with [`Repair::None`]).
    pub player: PlayerCounters,
    /// RFC 3550 interarrival jitter, sampled at every packet, µs.
    pub jitter: Recorder,
    /// RFC 3550 jitter at the end of the window, ns.
    pub jitter_now_ns: u64,
    /// RFC 5481 PDV: one-way delay minus the window's minimum, per packet, µs.
    pub pdv: Recorder,
    /// RFC 5481 IPDV magnitude between consecutive sequence numbers, µs.
    pub ipdv: Recorder,
    /// One-way latency, sender to receiver, µs; only with a known clock offset.
    pub latency: Recorder,
    /// Packets a relay replayed from its GOP cache (not used for jitter, PDV, IPDV, latency).
    pub packets_from_cache: u64,
    /// Live packets that queued behind a cache replay (not used for jitter, PDV, IPDV, latency).
    pub packets_behind_replay: u64,
    /// For reordered packets, NextExp minus the sequence number, packets.
    pub reorder_distance: Recorder,
    /// RFC 3611 burst lengths, packets.
    pub burst_length: Recorder,
    /// Stall durations, µs.
    pub stall_duration: Recorder,
    /// Repair figures (all zero but the residual loss with [`Repair::None`]).
    pub repair: RepairCounters,
    /// Gap detection to the arrival of the retransmission that repaired it, µs.
    pub repair_delay: Recorder,
    /// The agent's own lateness, and whether it marks this window.
    pub self_noise: SelfNoise,
}

impl WindowMetrics {
    /// Adds a later window into this one: counters summed, histograms merged, the span widened.
    pub fn merge(&mut self, w: &WindowMetrics) {
        if self.end == Time::ZERO {
            // Nothing merged yet.
            self.start = w.start;
        }
        self.first_frame = self.first_frame.take().or_else(|| w.first_frame.clone());
        self.packets += w.packets;
        self.bytes += w.bytes;
        self.packets_from_cache += w.packets_from_cache;
        self.packets_behind_replay += w.packets_behind_replay;
        self.loss += &w.loss;
        self.player += &w.player;
        self.repair += &w.repair;
        self.self_noise += &w.self_noise;
        self.jitter.merge(&w.jitter);
        self.pdv.merge(&w.pdv);
        self.ipdv.merge(&w.ipdv);
        self.latency.merge(&w.latency);
        self.reorder_distance.merge(&w.reorder_distance);
        self.burst_length.merge(&w.burst_length);
        self.stall_duration.merge(&w.stall_duration);
        self.repair_delay.merge(&w.repair_delay);
        self.jitter_now_ns = w.jitter_now_ns;
        self.end = w.end;
    }
}

/// The repair side of a viewer: the repaired stream's sequence numbers, the NACK scheduler and
/// keyframe requests.
#[derive(Debug, Clone)]
struct RepairState {
    /// Every copy, originals and retransmissions: residual loss.
    residual: SeqTracker,
    nack: NackScheduler,
    keyframe_gate: KeyframeGate,
    last_packet: Option<Time>,
    /// The last time feedback was polled.
    polled_at: Option<Time>,
    retransmissions_received: u64,
    packets_repaired: u64,
    keyframe_requests: u64,
    repair_delay: Recorder,
}

impl RepairState {
    fn new(loss_wait: Duration) -> Self {
        RepairState {
            residual: SeqTracker::new(loss_wait),
            nack: NackScheduler::new(NackConfig { max_age: loss_wait, ..NackConfig::default() }),
            keyframe_gate: KeyframeGate::default(),
            last_packet: None,
            polled_at: None,
            retransmissions_received: 0,
            packets_repaired: 0,
            keyframe_requests: 0,
            repair_delay: Recorder::new(),
        }
    }

    /// Feeds one packet; returns whether it is the first copy of its number on the repaired
    /// stream.
    fn on_packet(&mut self, now: Time, header: &MediaHeader, retransmitted: bool) -> bool {
        self.last_packet = Some(now);
        let gap_seen = retransmitted.then(|| self.residual.missing_since(header.seq)).flatten();
        let arrival = self.residual.on_packet(now, header.seq);
        self.nack.on_packet(now, header.seq, header.capture_ns);
        if retransmitted {
            self.retransmissions_received += 1;
        }
        if let (Some(seen), Arrival::New { .. }) = (gap_seen, arrival) {
            self.packets_repaired += 1;
            self.repair_delay.record_nanos_as_micros(now.saturating_since(seen).as_nanos() as u64);
        }
        matches!(arrival, Arrival::New { .. } | Arrival::LateAfterWait)
    }

    /// When a keyframe request would next be repeated, while one is needed and packets come
    /// (not a time already polled: nothing went out then, so nothing is due).
    fn keyframe_repeat_at(&self, needed: bool) -> Option<Time> {
        let next = self.keyframe_gate.next_pass()?;
        let active_until = self.last_packet? + KEYFRAME_REQUEST_IDLE;
        let fresh = self.polled_at.is_none_or(|t| next > t);
        (needed && fresh && next < active_until).then_some(next)
    }

    fn take_window(&mut self) -> (RepairCounters, Recorder) {
        let (residual, _, _) = self.residual.take_window();
        let counters = RepairCounters {
            residual_expected: residual.expected,
            residual_lost: residual.lost,
            nack: self.nack.take_counters(),
            retransmissions_received: std::mem::take(&mut self.retransmissions_received),
            packets_repaired: std::mem::take(&mut self.packets_repaired),
            keyframe_requests: std::mem::take(&mut self.keyframe_requests),
        };
        (counters, self.repair_delay.take())
    }
}

/// Tells live packets that queued behind a GOP-cache replay: after the replay, live packets
/// that arrive back to back at the rate the replay drained (at most twice the replay's mean
/// arrival time per byte after the previous packet) waited behind it; the first that arrives
/// later ends the queue.
#[derive(Debug, Clone, Copy, Default)]
struct ReplayQueue {
    first: Option<Time>,
    last: Time,
    bytes_after_first: u64,
    draining: bool,
}

impl ReplayQueue {
    /// Feeds one packet of `wire` bytes arriving at `now` after one at `previous`; returns
    /// whether it is a live packet that queued behind the replay.
    fn on_packet(
        &mut self,
        now: Time,
        previous: Option<Time>,
        header: &MediaHeader,
        wire: u64,
    ) -> bool {
        if header.from_cache() {
            match self.first {
                None => self.first = Some(now),
                Some(_) => self.bytes_after_first += wire,
            }
            self.last = now;
            self.draining = true;
            return false;
        }
        let Some(first) = self.first.filter(|_| self.draining) else { return false };
        if header.flags & FLAG_RETRANSMITTED != 0 {
            return false;
        }
        let span_ns = u128::from(self.last.saturating_since(first).as_nanos() as u64);
        let allowed_ns = match self.bytes_after_first {
            0 => 0,
            bytes => 2 * u128::from(wire) * span_ns / u128::from(bytes),
        };
        let gap_ns = u128::from(now.saturating_since(previous.unwrap_or(now)).as_nanos() as u64);
        self.draining = gap_ns <= allowed_ns;
        self.draining
    }
}

/// Measures one received stream.
#[derive(Debug, Clone)]
pub struct Receiver {
    attempt_start: Time,
    playout_delay: Duration,
    phases: [Option<Time>; 5],
    first_frame_reported: bool,
    window_start: Time,
    packets: u64,
    bytes: u64,
    /// Original transmissions: network loss.
    sequence: SeqTracker,
    repair: Option<RepairState>,
    player: Player,
    last_arrival: Option<Time>,
    replay: ReplayQueue,
    /// RFC 3550 state: last transit time and J, both in ns.
    last_transit: Option<i64>,
    jitter_ns: f64,
    jitter: Recorder,
    pdv: DelayVariation,
    last_in_sequence: Option<(u64, i64)>,
    ipdv: Recorder,
    clock_offset_ns: Option<i64>,
    latency: Recorder,
    packets_from_cache: u64,
    packets_behind_replay: u64,
    self_noise: SelfNoise,
}

impl Receiver {
    /// A receiver for a viewing attempt that started at `attempt_start` (before any DNS,
    /// connect or handshake, so first-frame time covers them).
    pub fn new(config: ReceiverConfig, attempt_start: Time) -> Self {
        let repair = (config.repair == Repair::Nack).then(|| RepairState::new(config.loss_wait));
        let mut player = Player::new(config.medium, config.playout_delay);
        if let Some(repair) = &repair {
            player.set_repair_wait(repair.nack.retry_interval());
        }
        Receiver {
            attempt_start,
            playout_delay: config.playout_delay,
            phases: [None; 5],
            first_frame_reported: false,
            window_start: attempt_start,
            packets: 0,
            bytes: 0,
            sequence: SeqTracker::new(config.loss_wait),
            repair,
            player,
            last_arrival: None,
            replay: ReplayQueue::default(),
            last_transit: None,
            jitter_ns: 0.0,
            jitter: Recorder::new(),
            pdv: DelayVariation::default(),
            last_in_sequence: None,
            ipdv: Recorder::new(),
            clock_offset_ns: config.sender_clock_offset_ns,
            latency: Recorder::new(),
            packets_from_cache: 0,
            packets_behind_replay: 0,
            self_noise: SelfNoise::default(),
        }
    }

    /// Records that a first-frame phase ended at `now`. Only the first mark of a phase counts.
    pub fn mark_phase(&mut self, phase: Phase, now: Time) {
        let slot = &mut self.phases[phase as usize];
        if slot.is_none() {
            *slot = Some(now);
        }
    }

    /// When a phase ended, if it has.
    pub fn phase(&self, phase: Phase) -> Option<Time> {
        self.phases[phase as usize]
    }

    /// Feeds one media packet that arrived at `now` (receiver's monotonic clock). The sender
    /// timestamps in `header` are on the sender's clock; only their differences are used,
    /// unless the clock offset is known.
    pub fn on_packet(&mut self, now: Time, header: &MediaHeader) {
        // Time passes first: what was due before this packet arrived happens without it.
        self.handle_timeout(now);
        let wire = (MEDIA_HEADER_LEN as u64).saturating_add(u64::from(header.payload_len));
        self.packets += 1;
        self.bytes += wire;
        self.mark_phase(Phase::FirstByte, now);
        let previous = self.last_arrival.replace(now);
        let behind_replay = self.replay.on_packet(now, previous, header, wire);
        let retransmitted = header.flags & FLAG_RETRANSMITTED != 0;
        // Network loss and timing: original transmissions only.
        let network = (!retransmitted).then(|| self.sequence.on_packet(now, header.seq));
        let first_copy = match &mut self.repair {
            Some(repair) => repair.on_packet(now, header, retransmitted),
            None => matches!(network, Some(Arrival::New { .. } | Arrival::LateAfterWait)),
        };
        // A packet that crossed the path just now, at its own pace: a timing sample. Not a
        // replay (sent long before this viewer joined), not one queued behind a replay, not a
        // retransmission, not one already declared lost (its delay would be counted as loss
        // and as delay both).
        let on_path = !header.from_cache() && !behind_replay && !retransmitted;
        if on_path && matches!(network, Some(Arrival::New { .. })) {
            self.on_path_timing(now, header);
        }
        if first_copy {
            if header.from_cache() {
                self.packets_from_cache += 1;
            } else if behind_replay {
                self.packets_behind_replay += 1;
            }
            self.player.on_fragment(now, header, on_path);
            if let Some(t) = self.player.first_keyframe() {
                self.mark_phase(Phase::FirstKeyframe, t);
            }
        }
        self.handle_timeout(now);
    }

    /// Jitter, delay variation and latency of one packet that crossed the path just now.
    fn on_path_timing(&mut self, now: Time, header: &MediaHeader) {
        let transit = transit_ns(now, header.send_ns);
        if let Some(offset) = self.clock_offset_ns {
            // transit = receive - send on two clocks; add back sender minus receiver.
            let latency = i128::from(transit) + i128::from(offset);
            self.latency.record_nanos_as_micros(clamp_u64(latency));
        }
        // RFC 3550 section 6.4.1, in arrival order: D = (Rj - Ri) - (Sj - Si); J += (|D| - J) / 16.
        if let Some(last) = self.last_transit {
            let d = transit.saturating_sub(last).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
            self.jitter.record_nanos_as_micros(self.jitter_ns as u64);
        }
        self.last_transit = Some(transit);
        self.pdv.record(transit);
        // RFC 5481 IPDV between consecutive sequence numbers.
        match self.last_in_sequence {
            Some((seq, last)) if header.seq == seq + 1 => {
                self.ipdv.record_nanos_as_micros(transit.saturating_sub(last).unsigned_abs());
            }
            _ => {}
        }
        if self.last_in_sequence.is_none_or(|(seq, _)| header.seq > seq) {
            self.last_in_sequence = Some((header.seq, transit));
        }
    }

    /// A round-trip-time sample towards the sender (a ping, the QUIC path RTT): paces NACKs.
    pub fn on_rtt_sample(&mut self, rtt: Duration) {
        if let Some(repair) = &mut self.repair {
            repair.nack.on_rtt_sample(rtt);
            self.player.set_repair_wait(repair.nack.retry_interval());
        }
    }

    /// Notes how late the publisher's send timer woke (when the publisher is this agent): a
    /// window where it exceeds a tenth of the playout delay is self-noise.
    pub fn note_sender_lateness(&mut self, late: Duration) {
        self.self_noise.note_sender(late);
    }

    /// Notes how late the agent's emulator delivered a packet of this stream: a window where it
    /// exceeds [`EMULATOR_LATENESS_BOUND`](crate::noise::EMULATOR_LATENESS_BOUND) is self-noise.
    pub fn note_emulator_lateness(&mut self, late: Duration) {
        self.self_noise.note_emulator(late);
    }

    /// What to send back to the sender at `now` (NACKs, keyframe requests); call until `None`
    /// after every [`Receiver::on_packet`] and [`Receiver::handle_timeout`]. Always `None` with
    /// [`Repair::None`].
    pub fn poll_feedback(&mut self, now: Time) -> Option<Feedback> {
        let repair = self.repair.as_mut()?;
        repair.polled_at = Some(now);
        // Keyframe requests stop when nothing arrives: a dead path gets no stream of them.
        let active = repair.last_packet.is_some_and(|t| now < t + KEYFRAME_REQUEST_IDLE);
        if self.player.needs_keyframe() && active && repair.keyframe_gate.try_pass(now) {
            repair.keyframe_requests += 1;
            return Some(Feedback::KeyframeRequest);
        }
        repair.nack.poll_nack(now, self.player.repair_clock()).map(Feedback::Nack)
    }

    /// Advances loss decisions and playback to `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.sequence.handle_timeout(now);
        if let Some(repair) = &mut self.repair {
            repair.residual.handle_timeout(now);
        }
        self.player.handle_timeout(now);
    }

    /// When [`Receiver::handle_timeout`] or [`Receiver::poll_feedback`] next has work to do, if
    /// ever without new packets.
    pub fn poll_timeout(&self) -> Option<Time> {
        let repair = self.repair.as_ref();
        [
            self.sequence.poll_timeout(),
            self.player.poll_timeout(),
            repair.and_then(|r| r.residual.poll_timeout()),
            repair.and_then(|r| r.nack.poll_timeout()),
            repair.and_then(|r| r.keyframe_repeat_at(self.player.needs_keyframe())),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether playback has nothing left to do without new packets: no frame left to play (or
    /// the next one never arrived) and no missing packet still being asked for. A viewer whose
    /// stream has ended can be finished then.
    pub fn playout_done(&self) -> bool {
        self.player.poll_timeout().is_none()
            && self.repair.as_ref().is_none_or(|r| r.nack.pending() == 0)
    }

    /// The first-frame measurement, once the first keyframe is complete.
    pub fn first_frame(&self) -> Option<FirstFrame> {
        let end = self.phase(Phase::FirstKeyframe)?;
        let mut previous = self.attempt_start;
        let mut phases = Vec::new();
        for phase in Phase::ALL {
            if let Some(t) = self.phase(phase) {
                // A phase marked out of order (e.g. first byte before subscribe-ok) counts as zero.
                let t = t.max(previous);
                phases.push((phase, t.saturating_since(previous)));
                previous = t;
            }
        }
        Some(FirstFrame {
            phases,
            total: end.saturating_since(self.attempt_start),
            first_render: self
                .player
                .first_render()
                .map(|t| t.saturating_since(self.attempt_start)),
        })
    }

    /// Closes the window at `now` and returns its results; the next window starts at `now`.
    pub fn take_window(&mut self, now: Time) -> WindowMetrics {
        self.take_window_with(now, Player::take_window, false)
    }

    fn take_window_with(
        &mut self,
        now: Time,
        close_player: fn(&mut Player, Time) -> (PlayerCounters, Recorder),
        last: bool,
    ) -> WindowMetrics {
        self.handle_timeout(now);
        let first_frame = match self.first_frame() {
            Some(ff) if !self.first_frame_reported && (ff.first_render.is_some() || last) => {
                self.first_frame_reported = true;
                Some(ff)
            }
            _ => None,
        };
        let (loss, reorder_distance, burst_length) = self.sequence.take_window();
        let (repair, repair_delay) = match &mut self.repair {
            Some(repair) => repair.take_window(),
            None => (
                RepairCounters {
                    residual_expected: loss.expected,
                    residual_lost: loss.lost,
                    ..RepairCounters::default()
                },
                Recorder::new(),
            ),
        };
        let (player, stall_duration) = close_player(&mut self.player, now);
        let start = std::mem::replace(&mut self.window_start, now);
        WindowMetrics {
            start,
            end: now,
            first_frame,
            packets: std::mem::take(&mut self.packets),
            bytes: std::mem::take(&mut self.bytes),
            loss,
            player,
            jitter: self.jitter.take(),
            jitter_now_ns: self.jitter_ns as u64,
            pdv: self.pdv.take_window(),
            ipdv: self.ipdv.take(),
            latency: self.latency.take(),
            packets_from_cache: std::mem::take(&mut self.packets_from_cache),
            packets_behind_replay: std::mem::take(&mut self.packets_behind_replay),
            reorder_distance,
            burst_length,
            stall_duration,
            repair,
            repair_delay,
            self_noise: self.self_noise.take_window(self.playout_delay),
        }
    }

    /// Ends the stream at `now`: pending gaps are declared lost, and the last window returned.
    /// A viewer that stops at `now` counts a stall if nothing rendered in the last 500 ms, so
    /// after a normal end of stream, finish once the last frame's deadline has passed
    /// ([`Receiver::playout_done`]).
    pub fn finish(&mut self, now: Time) -> WindowMetrics {
        self.handle_timeout(now);
        self.sequence.finish();
        if let Some(repair) = &mut self.repair {
            repair.residual.finish();
        }
        self.take_window_with(now, Player::finish, true)
    }
}

/// Receiver clock minus sender clock for one packet, ns. Clocks differ by an unknown offset;
/// every use below takes differences, which cancel it.
fn transit_ns(now: Time, send_ns: u64) -> i64 {
    let t = i128::from(now.as_nanos()) - i128::from(send_ns);
    t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// RFC 5481 PDV over a window without keeping every packet's delay: delays are recorded
/// relative to the window's first packet (small values, so HDR keeps them precise) into two
/// histograms by sign, then shifted by the exact window minimum when the window closes.
#[derive(Debug, Clone, Default)]
struct DelayVariation {
    anchor: Option<i64>,
    min: i64,
    above: Recorder,
    below: Recorder,
    /// Exact sum of (delay - anchor), ns.
    sum_from_anchor: i128,
}

impl DelayVariation {
    fn record(&mut self, delay: i64) {
        let anchor = *self.anchor.get_or_insert(delay);
        if self.above.count() + self.below.count() == 0 || delay < self.min {
            self.min = delay;
        }
        let d = i128::from(delay) - i128::from(anchor);
        self.sum_from_anchor += d;
        let micros = (d.unsigned_abs() + 500) / 1_000;
        let micros = u64::try_from(micros).unwrap_or(u64::MAX);
        if d >= 0 { self.above.record(micros) } else { self.below.record(micros) }
    }

    fn take_window(&mut self) -> Recorder {
        let mut pdv = Recorder::new();
        let Some(anchor) = self.anchor.take() else { return pdv };
        let shift = i128::from(anchor) - i128::from(self.min); // >= 0
        let shift_us = (shift + 500) / 1_000;
        for v in self.above.histogram().iter_recorded() {
            let value = i128::from(self.above.histogram().median_equivalent(v.value_iterated_to()));
            pdv.record_n(clamp_u64(value + shift_us), v.count_at_value());
        }
        for v in self.below.histogram().iter_recorded() {
            let value = i128::from(self.below.histogram().median_equivalent(v.value_iterated_to()));
            pdv.record_n(clamp_u64(shift_us - value), v.count_at_value());
        }
        // The sum stays exact: sum(delay - min) = sum(delay - anchor) + n * (anchor - min).
        let n = i128::from(pdv.count());
        pdv.set_sum(clamp_u64((self.sum_from_anchor + n * shift + 500) / 1_000));
        self.above.reset();
        self.below.reset();
        pdv
    }
}

fn clamp_u64(v: i128) -> u64 {
    v.clamp(0, i128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use stallwatch_proto::media::FrameKind;

    use super::*;

    fn packet(
        seq: u64,
        frame: u32,
        kind: FrameKind,
        frag: (u16, u16),
        send_ms: u64,
    ) -> MediaHeader {
        MediaHeader {
            kind,
            flags: 0,
            frag_index: frag.0,
            frag_count: frag.1,
            stream_id: 1,
            payload_len: 1000,
            seq,
            frame,
            gop: 0,
            capture_ns: u64::from(frame) * 33_333_333,
            send_ns: send_ms * 1_000_000,
        }
    }

    fn audio(seq: u64, send_ms: u64) -> MediaHeader {
        packet(seq, seq as u32, FrameKind::Audio, (0, 1), send_ms)
    }

    #[test]
    fn rfc3550_jitter_matches_an_independent_computation() {
        // Sent every 20 ms; arrivals with irregular delays (ms). Sender clock is 1000 s ahead.
        let delays = [30u64, 34, 29, 45, 31, 30, 52, 33, 30, 31];
        let mut rx = Receiver::new(ReceiverConfig::default(), Time::ZERO);
        for (i, d) in delays.iter().enumerate() {
            let send = 1_000_000 + 20 * i as u64;
            rx.on_packet(Time::from_millis(20 * i as u64 + d), &audio(i as u64, send));
        }
        // Independently: D_i = delay_i - delay_{i-1}; J_i = J_{i-1} + (|D_i| - J_{i-1}) / 16.
        let mut j = 0.0f64;
        let mut expected_samples = Vec::new();
        for w in delays.windows(2) {
            let d = (w[1] as f64 - w[0] as f64).abs() * 1e6;
            j += (d - j) / 16.0;
            expected_samples.push((j / 1_000.0).round() as u64);
        }
        let window = rx.take_window(Time::from_millis(1_000));
        assert_eq!(window.jitter_now_ns, j as u64);
        assert_eq!(window.jitter.count(), 9);
        assert_eq!(window.jitter.sum(), expected_samples.iter().sum::<u64>());
    }

    #[test]
    fn scripted_arrivals_give_exact_loss_reorder_duplicate_and_pdv() {
        let mut rx = Receiver::new(ReceiverConfig::default(), Time::ZERO);
        // seq: 0 1 3 2 3 5 ... (4 lost, 3 duplicated, 2 reordered), one-way delay 10 ms except
        // seq 3 (first copy) at 25 ms.
        let script =
            [(0, 0, 10), (1, 20, 30), (3, 60, 85), (2, 40, 86), (3, 60, 87), (5, 100, 110)];
        for (seq, send, arrive) in script {
            rx.on_packet(Time::from_millis(arrive), &audio(seq, send));
        }
        let w = rx.finish(Time::from_millis(3_000));
        assert_eq!(w.packets, 6);
        assert_eq!(w.loss.expected, 6);
        assert_eq!(w.loss.received, 5);
        assert_eq!(w.loss.lost, 1);
        assert_eq!(w.loss.duplicates, 1);
        assert_eq!(w.loss.reordered, 1);
        // PDV: delays 10, 10, 25, 46, 10 ms -> minus min 10 ms: 0, 0, 15, 36, 0 ms.
        assert_eq!(w.pdv.count(), 5);
        assert_eq!(w.pdv.sum(), 51_000);
        assert_eq!(w.pdv.histogram().max(), w.pdv.histogram().highest_equivalent(36_000));
        // IPDV between consecutive sequence numbers as they arrive: (0,1) = 0 ms, (2 after 3)
        // is not consecutive with 3, (1,2) is not the last in-sequence pair either.
        assert_eq!(w.ipdv.count(), 1);
    }

    #[test]
    fn cached_packets_count_for_frames_but_not_for_timing_and_latency_needs_the_offset() {
        let config = ReceiverConfig { sender_clock_offset_ns: Some(0), ..Default::default() };
        let mut rx = Receiver::new(config, Time::ZERO);
        let mut cached = packet(0, 0, FrameKind::Key, (0, 1), 0);
        cached.flags = stallwatch_proto::media::FLAG_FROM_CACHE;
        rx.on_packet(Time::from_millis(900), &cached);
        rx.on_packet(Time::from_millis(925), &packet(1, 1, FrameKind::Predicted, (0, 1), 905));
        rx.on_packet(Time::from_millis(950), &packet(2, 2, FrameKind::Predicted, (0, 1), 930));
        let w = rx.take_window(Time::from_millis(2_000));
        assert_eq!(w.packets_from_cache, 1);
        assert_eq!(w.loss.received, 3);
        // The cached keyframe is decoded to reach the live edge, not shown.
        assert_eq!((w.player.frames_caught_up, w.player.frames_rendered), (1, 2));
        assert_eq!(w.pdv.count(), 2);
        assert_eq!(w.jitter.count(), 1);
        assert_eq!((w.latency.count(), w.latency.sum()), (2, 40_000));
        // Without a known offset, no latency.
        let mut rx = Receiver::new(ReceiverConfig::default(), Time::ZERO);
        rx.on_packet(Time::from_millis(925), &packet(1, 1, FrameKind::Key, (0, 1), 905));
        assert_eq!(rx.take_window(Time::from_millis(2_000)).latency.count(), 0);
    }

    #[test]
    fn first_frame_time_is_the_arrival_of_the_last_fragment_of_the_first_keyframe() {
        let start = Time::from_millis(1_000);
        let mut rx = Receiver::new(ReceiverConfig::default(), start);
        rx.mark_phase(Phase::Connect, Time::from_millis(1_040));
        rx.mark_phase(Phase::Subscribe, Time::from_millis(1_080));
        // A P frame of an earlier GOP, then a 3-fragment keyframe whose fragments arrive out of order.
        rx.on_packet(Time::from_millis(1_100), &packet(10, 59, FrameKind::Predicted, (0, 1), 0));
        rx.on_packet(Time::from_millis(1_120), &packet(11, 60, FrameKind::Key, (0, 3), 0));
        rx.on_packet(Time::from_millis(1_150), &packet(13, 60, FrameKind::Key, (2, 3), 0));
        assert_eq!(rx.first_frame(), None);
        rx.on_packet(Time::from_millis(1_163), &packet(12, 60, FrameKind::Key, (1, 3), 0));
        let ff = rx.first_frame().unwrap();
        assert_eq!(ff.total, Duration::from_millis(163));
        assert_eq!(
            ff.phases,
            vec![
                (Phase::Connect, Duration::from_millis(40)),
                (Phase::Subscribe, Duration::from_millis(40)),
                (Phase::FirstByte, Duration::from_millis(20)),
                (Phase::FirstKeyframe, Duration::from_millis(63)),
            ]
        );
        // Reported once, in the window where it happened.
        assert!(rx.take_window(Time::from_millis(2_000)).first_frame.is_some());
        assert!(rx.take_window(Time::from_millis(3_000)).first_frame.is_none());
    }

    #[test]
    fn a_scripted_gap_gives_a_stall_of_known_length() {
        // Audio-driven player, 20 ms packets, fixed 5 ms delay; packets 50..=79 never arrive, so
        // nothing renders from packet 49 (t = 980 ms) until packet 80 (t = 1600 ms): 620 ms.
        let config = ReceiverConfig { medium: Medium::Audio, ..ReceiverConfig::default() };
        let mut rx = Receiver::new(config, Time::ZERO);
        for seq in (0..150u64).filter(|s| !(50..80).contains(s)) {
            let mut p = audio(seq, seq * 20);
            p.capture_ns = p.send_ns;
            rx.on_packet(Time::from_millis(seq * 20 + 5), &p);
        }
        // Finish as the last packet (149, captured at 2980 ms) renders: 5 ms delay + 300 ms playout.
        let w = rx.finish(Time::from_millis(2_980 + 305));
        assert_eq!(w.player.stalls, 1);
        assert_eq!(w.player.stalls_600ms, 1);
        assert_eq!(w.player.stall_time_ns, 620_000_000);
        assert_eq!(w.player.frames_missing, 30);
        assert_eq!(w.player.frames_rendered, 120);
        assert_eq!(w.stall_duration.sum(), 620_000);
        assert_eq!(w.player.play_time_ns, (49 + 69) * 20_000_000);
        assert_eq!(w.loss.lost, 30);
        assert_eq!(w.loss.bursts, 1);
        assert_eq!(w.burst_length.sum(), 30);
    }
}
