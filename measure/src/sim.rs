//! A whole probe under virtual time: pacer -> packetizer -> [`Link`] -> [`Receiver`], and, with
//! repair, the reverse path: the viewer's NACKs, keyframe requests and pings over a second
//! [`Link`] to the sender, which answers from its [`SendHistory`] over the first.
//!
//! Like quinn-proto's test `Pair`, it steps an event queue instead of sleeping, so a ten-minute
//! stream runs in a moment and every result is reproducible from the seed. It models a datagram
//! transport (`udp`, `quic-datagram`) with the publisher and viewer on either end of one path; a
//! relay in between repairs each leg the same way. With [`Repair::None`] nothing goes back and
//! the link carries media only.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use stallwatch_proto::media::{MEDIA_HEADER_LEN, MediaHeader};

use crate::link::{Fate, Link, LinkConfig, LinkStats};
use crate::pacer::{Pacer, Packetizer, max_payload};
use crate::profile::StreamProfile;
use crate::receiver::{Receiver, ReceiverConfig, WindowMetrics};
use crate::repair::{
    Feedback, Repair, RetransmitConfig, RetransmitCounters, Retransmitter, SendHistory,
};
use crate::time::Time;

/// How often the viewer pings the sender for an RTT sample, as the UDP viewer does.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Modelled size of a ping, a pong and a keyframe request on the wire, bytes.
pub const CONTROL_BYTES: usize = 48;
/// Modelled size of a NACK: [`CONTROL_BYTES`] plus this per sequence number.
pub const NACK_BYTES_PER_SEQ: usize = 8;

/// One simulated probe.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub profile: StreamProfile,
    /// Sender to viewer: media, retransmissions, pongs.
    pub link: LinkConfig,
    /// Viewer to sender: NACKs, keyframe requests, pings (used only with repair).
    pub uplink: LinkConfig,
    pub receiver: ReceiverConfig,
    /// Seed for the links' random choices (each direction draws its own stream).
    pub seed: u64,
    /// How long the publisher sends.
    pub duration: Duration,
    /// Largest datagram, header included.
    pub max_datagram: usize,
    /// Report window length.
    pub window: Duration,
}

impl SimConfig {
    /// A 720p30 stream over `link` (both ways) for `duration`, 1200-byte datagrams, 10 s
    /// windows, no repair.
    pub fn new(link: LinkConfig, duration: Duration) -> Self {
        SimConfig {
            profile: "720p30".parse().expect("preset exists"),
            uplink: link.clone(),
            link,
            receiver: ReceiverConfig::default(),
            seed: 1,
            duration,
            max_datagram: 1200,
            window: Duration::from_secs(10),
        }
    }
}

/// What a simulated probe measured, and what the links and the sender did.
#[derive(Debug, Clone)]
pub struct SimResult {
    pub windows: Vec<WindowMetrics>,
    /// Sender to viewer.
    pub link: LinkStats,
    /// Viewer to sender.
    pub uplink: LinkStats,
    /// Original media packets the publisher sent.
    pub packets_sent: u64,
    /// How the sender answered NACKs.
    pub retransmit: RetransmitCounters,
    /// Keyframe requests that reached the sender, and the keyframes it started for them.
    pub keyframe_requests_received: u64,
    pub keyframes_forced: u64,
    /// When the receiver was finished.
    pub end: Time,
}

#[derive(Debug)]
enum Down {
    Media(MediaHeader),
    Pong { ping_sent: Time },
}

#[derive(Debug)]
enum Up {
    Feedback(Feedback),
    Ping { sent: Time },
}

#[derive(Debug)]
struct InFlight<T> {
    at: Time,
    order: u64,
    item: T,
}

impl<T> PartialEq for InFlight<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<T> Eq for InFlight<T> {}
impl<T> PartialOrd for InFlight<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for InFlight<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest delivery first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// One direction of the path: a [`Link`] and what is in flight on it.
#[derive(Debug)]
struct Path<T> {
    link: Link,
    in_flight: BinaryHeap<InFlight<T>>,
    order: u64,
}

impl<T> Path<T> {
    fn new(config: LinkConfig, seed: u64) -> Self {
        Path { link: Link::new(config, seed), in_flight: BinaryHeap::new(), order: 0 }
    }

    fn send(&mut self, now: Time, size: usize, item: T) {
        if let Fate::Deliver(at) = self.link.send(now, size) {
            self.in_flight.push(InFlight { at, order: self.order, item });
            self.order += 1;
        }
    }

    fn next_at(&self) -> Option<Time> {
        self.in_flight.peek().map(|d| d.at)
    }

    fn pop_due(&mut self, now: Time) -> Option<T> {
        (self.next_at()? <= now).then(|| self.in_flight.pop().map(|d| d.item)).flatten()
    }
}

/// A simulated probe, stepped one report window at a time: iterate it for the windows (the
/// last one is the finished receiver's), then read [`Simulation::result`]. Memory stays
/// bounded: only packets in flight are held.
#[derive(Debug)]
pub struct Simulation {
    pacer: Pacer,
    packetizer: Packetizer,
    history: SendHistory,
    retransmitter: Retransmitter,
    down: Path<Down>,
    up: Path<Up>,
    receiver: Receiver,
    repair: bool,
    payload: usize,
    max_datagram: usize,
    window: Duration,
    send_end: Time,
    now: Time,
    next_window: Time,
    next_ping: Time,
    packets_sent: u64,
    keyframe_requests_received: u64,
    keyframes_forced: u64,
    finished: bool,
    trace: Option<Vec<(Time, MediaHeader)>>,
}

impl Simulation {
    /// The probe of `config`, starting at time zero.
    pub fn new(config: &SimConfig) -> Self {
        Simulation {
            pacer: Pacer::new(config.profile.clone(), Time::ZERO),
            packetizer: Packetizer::new(1),
            history: SendHistory::default(),
            retransmitter: Retransmitter::new(RetransmitConfig::for_bitrate(
                config.profile.total_bitrate_bps(),
            )),
            down: Path::new(config.link.clone(), config.seed),
            // Another stream of draws, or both directions would lose the same packets.
            up: Path::new(config.uplink.clone(), config.seed ^ 0x9e37_79b9_7f4a_7c15),
            receiver: Receiver::new(config.receiver.clone(), Time::ZERO),
            repair: config.receiver.repair == Repair::Nack,
            payload: max_payload(config.max_datagram),
            max_datagram: config.max_datagram,
            window: config.window,
            send_end: Time::ZERO + config.duration,
            now: Time::ZERO,
            next_window: Time::ZERO + config.window,
            next_ping: Time::ZERO,
            packets_sent: 0,
            keyframe_requests_received: 0,
            keyframes_forced: 0,
            finished: false,
            trace: None,
        }
    }

    /// What the links and the sender did so far (`windows` is left empty).
    pub fn result(&self) -> SimResult {
        SimResult {
            windows: Vec::new(),
            link: self.down.link.stats().clone(),
            uplink: self.up.link.stats().clone(),
            packets_sent: self.packets_sent,
            retransmit: *self.retransmitter.counters(),
            keyframe_requests_received: self.keyframe_requests_received,
            keyframes_forced: self.keyframes_forced,
            end: self.now,
        }
    }

    fn media_bytes(&self, header: &MediaHeader) -> usize {
        self.max_datagram.min(MEDIA_HEADER_LEN + header.payload_len as usize)
    }

    /// The publisher has sent everything, nothing is in flight, and the viewer has played all
    /// it will play: the viewer stops here, as it does a playout delay after the publisher's
    /// goodbye (waiting out the loss wait would count the silence after the end as a stall).
    fn stream_over(&self) -> bool {
        self.pacer.poll_timeout().is_none_or(|t| t >= self.send_end)
            && self.down.next_at().is_none()
            && self.up.next_at().is_none()
            && self.receiver.playout_done()
    }

    fn next_event(&self) -> Option<Time> {
        let sending = |t: Time| t < self.send_end;
        [
            self.pacer.poll_timeout().filter(|&t| sending(t)),
            Some(self.next_ping).filter(|&t| self.repair && sending(t)),
            self.down.next_at(),
            self.up.next_at(),
            self.receiver.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Everything that happens at `now`, in order: the publisher sends, the viewer pings, what
    /// reaches the sender is answered, what reaches the viewer is received, the viewer's timers
    /// run and its feedback leaves.
    fn step(&mut self, now: Time) {
        self.now = now;
        let sending = now < self.send_end;
        while let Some(frame) = self.pacer.poll_frame(now).filter(|_| sending) {
            for mut header in self.packetizer.packetize(&frame, frame.due.as_nanos(), self.payload)
            {
                header.send_ns = now.as_nanos();
                self.packets_sent += 1;
                if self.repair {
                    self.history.record(&header);
                }
                let size = self.media_bytes(&header);
                self.down.send(now, size, Down::Media(header));
            }
        }
        if self.repair && self.next_ping <= now && sending {
            self.up.send(now, CONTROL_BYTES, Up::Ping { sent: now });
            self.next_ping += PING_INTERVAL;
        }
        while let Some(item) = self.up.pop_due(now) {
            match item {
                Up::Ping { sent } => {
                    self.down.send(now, CONTROL_BYTES, Down::Pong { ping_sent: sent })
                }
                Up::Feedback(Feedback::KeyframeRequest) => {
                    self.keyframe_requests_received += 1;
                    self.keyframes_forced += u64::from(self.pacer.request_keyframe(now));
                }
                Up::Feedback(Feedback::Nack(nack)) => {
                    for mut header in self.retransmitter.on_nack(now, &nack, &self.history) {
                        header.send_ns = now.as_nanos();
                        let size = self.media_bytes(&header);
                        self.down.send(now, size, Down::Media(header));
                    }
                }
            }
        }
        while let Some(item) = self.down.pop_due(now) {
            match item {
                Down::Media(header) => {
                    if let Some(trace) = &mut self.trace {
                        trace.push((now, header));
                    }
                    self.receiver.on_packet(now, &header);
                }
                Down::Pong { ping_sent } => {
                    // The sender gets the same sample (a QUIC path RTT, or carried in feedback).
                    let rtt = now.saturating_since(ping_sent);
                    self.receiver.on_rtt_sample(rtt);
                    self.retransmitter.on_rtt_sample(rtt);
                }
            }
        }
        self.receiver.handle_timeout(now);
        while let Some(feedback) = self.receiver.poll_feedback(now) {
            let size = match &feedback {
                Feedback::Nack(nack) => CONTROL_BYTES + NACK_BYTES_PER_SEQ * nack.seqs.len(),
                Feedback::KeyframeRequest => CONTROL_BYTES,
            };
            self.up.send(now, size, Up::Feedback(feedback));
        }
    }
}

impl Iterator for Simulation {
    type Item = WindowMetrics;

    /// Runs to the next window boundary. Sends for the configured duration, then lets every
    /// packet land and the last frame play before finishing the receiver.
    fn next(&mut self) -> Option<WindowMetrics> {
        if self.finished {
            return None;
        }
        loop {
            let event = if self.stream_over() { None } else { self.next_event() };
            match event {
                // Never back in time (a timer already due is run now).
                Some(t) if t < self.next_window => self.step(t.max(self.now)),
                Some(_) => break,
                None if self.next_window <= self.now => break,
                None => {
                    self.finished = true;
                    return Some(self.receiver.finish(self.now));
                }
            }
        }
        let boundary = self.next_window;
        self.next_window += self.window;
        Some(self.receiver.take_window(boundary))
    }
}

/// Runs one probe to completion.
pub fn run(config: &SimConfig) -> SimResult {
    let mut sim = Simulation::new(config);
    let windows: Vec<WindowMetrics> = sim.by_ref().collect();
    SimResult { windows, ..sim.result() }
}

/// Every media packet the receiver of `config` got, with its arrival time, retransmissions
/// included: the input a receiver benchmark replays.
pub fn arrivals(config: &SimConfig) -> Vec<(Time, MediaHeader)> {
    let mut sim = Simulation::new(config);
    sim.trace = Some(Vec::new());
    sim.by_ref().for_each(drop);
    sim.trace.unwrap_or_default()
}

/// Adds up the windows of a run (counters summed, histograms merged).
pub fn total(windows: &[WindowMetrics]) -> WindowMetrics {
    let mut t = WindowMetrics::default();
    for w in windows {
        t.merge(w);
    }
    t
}
