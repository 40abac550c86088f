//! The receiver's memory does not grow with the length of the stream (no per-packet storage).
#![allow(unsafe_code, reason = "a counting global allocator needs `unsafe impl GlobalAlloc`")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use stallwatch_measure::link::LinkConfig;
use stallwatch_measure::sim::{Arrivals, SimConfig};
use stallwatch_measure::{Receiver, ReceiverConfig, Time};

struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn receiver_heap_stays_flat_from_five_to_twenty_five_minutes_of_stream() {
    let link = LinkConfig {
        loss: 0.01,
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    let config = SimConfig::new(link, Duration::from_secs(1_500));
    let before = LIVE.load(Ordering::Relaxed);
    let mut rx = Receiver::new(ReceiverConfig::default(), Time::ZERO);
    let mut arrivals = Arrivals::new(&config);
    let mut next_window = Time::from_millis(10_000);
    let mut at_five_minutes = None;
    let mut packets = 0u64;
    for (at, header) in arrivals.by_ref() {
        if at >= next_window {
            drop(rx.take_window(next_window));
            next_window += Duration::from_secs(10);
            if at >= Time::from_millis(300_000) && at_five_minutes.is_none() {
                at_five_minutes = Some(LIVE.load(Ordering::Relaxed) - before);
            }
        }
        rx.on_packet(at, &header);
        packets += 1;
    }
    let at_end = LIVE.load(Ordering::Relaxed) - before;
    let at_five_minutes = at_five_minutes.unwrap();
    assert!(packets > 390_000, "{packets} packets");
    // Receiver plus the generator's in-flight packets: well under a MiB, and not growing.
    assert!(at_end < 1024 * 1024, "{at_end} bytes after 25 minutes");
    assert!(
        at_end <= at_five_minutes + 16 * 1024,
        "heap grew from {at_five_minutes} to {at_end} bytes"
    );
    drop(rx);
}
