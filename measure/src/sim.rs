//! A whole probe under virtual time: pacer -> packetizer -> [`Link`] -> [`Receiver`].
//!
//! Like quinn-proto's test `Pair`, it steps an event queue instead of sleeping, so a ten-minute
//! stream runs in milliseconds and every result is reproducible from the seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use stallwatch_proto::media::MediaHeader;

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

/// Runs one probe to completion: sends for `duration`, then lets every packet land and the
/// loss wait and playout delay run out before finishing the receiver.
pub fn run(config: &SimConfig) -> SimResult {
    let start = Time::ZERO;
    let send_end = start + config.duration;
    let mut pacer = Pacer::new(config.profile.clone(), start);
    let mut packetizer = Packetizer::new(1);
    let mut link = Link::new(config.link.clone(), config.seed);
    let mut receiver = Receiver::new(config.receiver.clone(), start);
    let mut in_flight = BinaryHeap::new();
    let mut windows = Vec::new();
    let mut next_window = start + config.window;
    let payload = max_payload(config.max_datagram);
    let mut packets_sent = 0u64;
    let mut order = 0u64;
    let mut last_event = start;

    loop {
        let send_at = pacer.poll_timeout().filter(|&t| t < send_end);
        let deliver_at = in_flight.peek().map(|d: &Delivery| d.at);
        let timer_at = receiver.poll_timeout();
        let Some(now) = [send_at, deliver_at, timer_at].into_iter().flatten().min() else {
            break;
        };
        while next_window <= now {
            windows.push(receiver.take_window(next_window));
            next_window += config.window;
        }
        last_event = now;
        if send_at == Some(now) {
            while let Some(frame) = pacer.poll_frame(now) {
                for mut header in packetizer.packetize(&frame, frame.due.as_nanos(), payload) {
                    header.send_ns = now.as_nanos();
                    packets_sent += 1;
                    let size = config.max_datagram.min(48 + header.payload_len as usize);
                    if let Fate::Deliver(at) = link.send(now, size) {
                        in_flight.push(Delivery { at, order, header });
                        order += 1;
                    }
                }
            }
        }
        while let Some(d) = in_flight.peek().filter(|d| d.at <= now) {
            let header = d.header;
            in_flight.pop();
            receiver.on_packet(now, &header);
        }
        receiver.handle_timeout(now);
    }
    let end = last_event;
    windows.push(receiver.finish(end));
    SimResult { windows, link: link.stats().clone(), packets_sent, end }
}

/// Adds up the windows of a run (counters summed, histograms merged).
pub fn total(windows: &[WindowMetrics]) -> WindowMetrics {
    let mut t = WindowMetrics::default();
    for w in windows {
        t.first_frame = t.first_frame.take().or_else(|| w.first_frame.clone());
        t.packets += w.packets;
        t.bytes += w.bytes;
        t.loss += &w.loss;
        t.player += &w.player;
        t.jitter.merge(&w.jitter);
        t.pdv.merge(&w.pdv);
        t.ipdv.merge(&w.ipdv);
        t.reorder_distance.merge(&w.reorder_distance);
        t.burst_length.merge(&w.burst_length);
        t.stall_duration.merge(&w.stall_duration);
        t.jitter_now_ns = w.jitter_now_ns;
        t.end = w.end;
    }
    t.start = windows.first().map(|w| w.start).unwrap_or_default();
    t
}
