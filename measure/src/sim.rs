//! A whole probe under virtual time: pacer -> packetizer -> [`Link`] -> [`Receiver`].
//!
//! Like quinn-proto's test `Pair`, it steps an event queue instead of sleeping, so a ten-minute
//! stream runs in milliseconds and every result is reproducible from the seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use stallwatch_proto::media::{MEDIA_HEADER_LEN, MediaHeader};

use crate::link::{Fate, Link, LinkConfig, LinkStats};
use crate::pacer::{Pacer, Packetizer, max_payload};
use crate::profile::StreamProfile;
use crate::receiver::{Receiver, ReceiverConfig, WindowMetrics};
use crate::time::Time;

/// One simulated probe.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub profile: StreamProfile,
    pub link: LinkConfig,
    pub receiver: ReceiverConfig,
    /// Seed for the link's random choices.
    pub seed: u64,
    /// How long the publisher sends.
    pub duration: Duration,
    /// Largest datagram, header included.
    pub max_datagram: usize,
    /// Report window length.
    pub window: Duration,
}

impl SimConfig {
    /// A 720p30 stream over `link` for `duration`, 1200-byte datagrams, 10 s windows.
    pub fn new(link: LinkConfig, duration: Duration) -> Self {
        SimConfig {
            profile: "720p30".parse().expect("preset exists"),
            link,
            receiver: ReceiverConfig::default(),
            seed: 1,
            duration,
            max_datagram: 1200,
            window: Duration::from_secs(10),
        }
    }
}

/// What a simulated probe measured, and what the link did.
#[derive(Debug, Clone)]
pub struct SimResult {
    pub windows: Vec<WindowMetrics>,
    pub link: LinkStats,
    pub packets_sent: u64,
    /// When the receiver was finished.
    pub end: Time,
}

struct Delivery {
    at: Time,
    order: u64,
    header: MediaHeader,
}

impl PartialEq for Delivery {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Delivery {}
impl PartialOrd for Delivery {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delivery {
    // Reversed: BinaryHeap is a max-heap and we want the earliest delivery first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// The packets of one simulated stream, in arrival order, with their arrival times: the
/// publisher's pacer and packetizer feeding a [`Link`]. Memory stays bounded: only packets in
/// flight are held.
pub struct Arrivals {
    pacer: Pacer,
    packetizer: Packetizer,
    link: Link,
    in_flight: BinaryHeap<Delivery>,
    send_end: Time,
    payload: usize,
    max_datagram: usize,
    order: u64,
    packets_sent: u64,
}

impl Arrivals {
    /// The stream of `config`, starting at time zero.
    pub fn new(config: &SimConfig) -> Self {
        Arrivals {
            pacer: Pacer::new(config.profile.clone(), Time::ZERO),
            packetizer: Packetizer::new(1),
            link: Link::new(config.link.clone(), config.seed),
            in_flight: BinaryHeap::new(),
            send_end: Time::ZERO + config.duration,
            payload: max_payload(config.max_datagram),
            max_datagram: config.max_datagram,
            order: 0,
            packets_sent: 0,
        }
    }

    /// Packets the publisher has sent so far.
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// What the link has done so far.
    pub fn link_stats(&self) -> &LinkStats {
        self.link.stats()
    }

    fn send_due(&mut self, now: Time) {
        while let Some(frame) = self.pacer.poll_frame(now) {
            for mut header in self.packetizer.packetize(&frame, frame.due.as_nanos(), self.payload)
            {
                header.send_ns = now.as_nanos();
                self.packets_sent += 1;
                let size = self.max_datagram.min(MEDIA_HEADER_LEN + header.payload_len as usize);
                if let Fate::Deliver(at) = self.link.send(now, size) {
                    self.in_flight.push(Delivery { at, order: self.order, header });
                    self.order += 1;
                }
            }
        }
    }
}

impl Iterator for Arrivals {
    type Item = (Time, MediaHeader);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let send_at = self.pacer.poll_timeout().filter(|&t| t < self.send_end);
            match (self.in_flight.peek().map(|d| d.at), send_at) {
                (Some(deliver), send) if send.is_none_or(|s| deliver < s) => {
                    let d = self.in_flight.pop()?;
                    return Some((d.at, d.header));
                }
                (_, Some(send)) => self.send_due(send),
                (_, None) => return None,
            }
        }
    }
}

/// Runs one probe to completion: sends for `duration`, then lets every packet land and the
/// loss wait and playout delay run out before finishing the receiver.
pub fn run(config: &SimConfig) -> SimResult {
    let mut arrivals = Arrivals::new(config);
    let mut receiver = Receiver::new(config.receiver.clone(), Time::ZERO);
    let mut windows = Vec::new();
    let mut next_window = Time::ZERO + config.window;
    let mut now = Time::ZERO;
    let mut advance_to = |receiver: &mut Receiver, now: Time, windows: &mut Vec<WindowMetrics>| {
        while next_window <= now {
            windows.push(receiver.take_window(next_window));
            next_window += config.window;
        }
        receiver.handle_timeout(now);
    };
    for (at, header) in arrivals.by_ref() {
        while let Some(timer) = receiver.poll_timeout().filter(|&t| t < at) {
            advance_to(&mut receiver, timer, &mut windows);
        }
        advance_to(&mut receiver, at, &mut windows);
        receiver.on_packet(at, &header);
        now = at;
    }
    while let Some(timer) = receiver.poll_timeout() {
        advance_to(&mut receiver, timer, &mut windows);
        now = timer;
    }
    advance_to(&mut receiver, now, &mut windows);
    windows.push(receiver.finish(now));
    SimResult {
        windows,
        link: arrivals.link_stats().clone(),
        packets_sent: arrivals.packets_sent(),
        end: now,
    }
}

/// Adds up the windows of a run (counters summed, histograms merged).
pub fn total(windows: &[WindowMetrics]) -> WindowMetrics {
    let mut t = WindowMetrics::default();
    for w in windows {
        t.merge(w);
    }
    t
}
