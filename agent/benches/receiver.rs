//! Receiver throughput and memory (of the sans-IO core, benchmarked here because the core
//! itself never reads a clock). Run: `cargo bench -p stallwatch-agent --bench receiver`
//!
//! Feeds a pre-generated 720p30 stream (1 % random loss, ±5 ms jitter so some packets
//! reorder) through one `Receiver` on one core and reports packets per second, without repair
//! and with it (the stream then carries the retransmissions a repaired run received, and the
//! receiver schedules NACKs), then shows that the heap of a whole simulated probe with repair
//! stays flat however long the stream runs.
#![allow(clippy::disallowed_methods, reason = "a benchmark reads the clock to time itself")]

use std::time::{Duration, Instant};

use stallwatch_measure::link::LinkConfig;
use stallwatch_measure::sim::{self, SimConfig, Simulation};
use stallwatch_measure::{Receiver, Repair, Time};
use stallwatch_tests::alloc::CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn stream(seconds: u64, repair: Repair) -> SimConfig {
    let link = LinkConfig {
        loss: 0.01,
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    let mut config = SimConfig::new(link, Duration::from_secs(seconds));
    config.receiver.repair = repair;
    config
}

fn throughput(repair: Repair) {
    // About 267 packets per second of stream: 4000 s is a little over a million packets.
    let config = stream(4_000, repair);
    let packets = sim::arrivals(&config);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut rx = Receiver::new(config.receiver.clone(), Time::ZERO);
        let mut next_window = Time::from_millis(10_000);
        let started = Instant::now();
        for (at, header) in &packets {
            if *at >= next_window {
                std::hint::black_box(rx.take_window(next_window));
                next_window += Duration::from_secs(10);
            }
            rx.on_packet(*at, header);
            while let Some(feedback) = rx.poll_feedback(*at) {
                std::hint::black_box(feedback);
            }
        }
        std::hint::black_box(rx.finish(packets.last().unwrap().0));
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "receiver throughput, repair {repair}: {} packets in {:.1} ms (best of 5) = {:.2} M packets/s on one core",
        packets.len(),
        best * 1e3,
        packets.len() as f64 / best / 1e6
    );
}

/// Live heap bytes of a whole simulated probe with repair (sender history, links, receiver)
/// after `seconds` of stream, windows dropped as they come.
fn heap_after(seconds: u64) -> (i64, u64) {
    let before = CountingAllocator::live_bytes();
    let mut sim = Simulation::new(&stream(seconds, Repair::Nack));
    sim.by_ref().for_each(drop);
    let live = CountingAllocator::live_bytes() - before;
    let packets = sim.result().packets_sent;
    std::hint::black_box(&sim);
    (live, packets)
}

fn main() {
    throughput(Repair::None);
    throughput(Repair::Nack);
    for seconds in [10, 600, 3_600, 4 * 3_600] {
        let (bytes, packets) = heap_after(seconds);
        println!(
            "simulated probe heap (repair on) after {:>6} s of stream ({:>8} packets): {:>7.1} KiB",
            seconds,
            packets,
            bytes as f64 / 1024.0
        );
    }
}
