//! The receiver's memory, repair included, does not grow with the length of the stream (no
//! per-packet storage).

use std::time::Duration;

use stallwatch_measure::Repair;
use stallwatch_measure::link::LinkConfig;
use stallwatch_measure::sim::{SimConfig, Simulation};
use stallwatch_tests::alloc::CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn heap_stays_flat_from_five_to_twenty_five_minutes_of_stream_with_repair_on() {
    // 1 % loss each way: NACKs, retransmissions, keyframe requests and their losses too.
    let link = LinkConfig {
        loss: 0.01,
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    let mut config = SimConfig::new(link, Duration::from_secs(1_500));
    config.receiver.repair = Repair::Nack;
    let before = CountingAllocator::live_bytes();
    // Sender (history, retransmitter, pacer), both links with what is in flight, receiver.
    let mut sim = Simulation::new(&config);
    let mut at_five_minutes = None;
    let mut repaired = 0;
    for window in sim.by_ref() {
        repaired += window.repair.packets_repaired;
        if window.end >= stallwatch_measure::Time::from_millis(300_000) && at_five_minutes.is_none()
        {
            at_five_minutes = Some(CountingAllocator::live_bytes() - before);
        }
        drop(window);
    }
    let at_end = CountingAllocator::live_bytes() - before;
    let at_five_minutes = at_five_minutes.unwrap();
    let result = sim.result();
    assert!(result.packets_sent > 390_000, "{} packets", result.packets_sent);
    assert!(repaired > 3_000, "only {repaired} packets repaired");
    // Well under a MiB, and not growing.
    assert!(at_end < 1024 * 1024, "{at_end} bytes after 25 minutes");
    assert!(
        at_end <= at_five_minutes + 16 * 1024,
        "heap grew from {at_five_minutes} to {at_end} bytes"
    );
    drop(sim);
}
