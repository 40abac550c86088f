//! What the ingest benches (`ingest_store`, `ingest_http`) both send: one series shaped like
//! 10 s of a 2 Mbit/s 720p30 stream, so their figures describe the same reports.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use stallwatch_proto::catalogue::Counter;
use stallwatch_proto::hdr;
use stallwatch_tests::rng::Rng;

/// Packets in 10 s of a 2 Mbit/s 720p30 stream.
pub const PACKETS: usize = 2_670;

/// A series' 8 histograms: report name, samples, and the log-uniform range of their values.
pub const SHAPES: [(&str, usize, u64, u64); 8] = [
    ("jitter_us", PACKETS, 200, 20_000),
    ("pdv_us", PACKETS, 100, 50_000),
    ("ipdv_us", PACKETS, 50, 20_000),
    ("latency_us", PACKETS, 20_000, 80_000),
    ("first_frame_us", 1, 300_000, 900_000),
    ("stall_duration_us", 2, 500_000, 2_000_000),
    ("reorder_distance_packets", 5, 1, 10),
    ("burst_length_packets", 10, 1, 30),
];

/// `samples` log-uniform values in `lo..hi`, and their sum.
pub fn histogram(rng: &mut Rng, samples: usize, lo: u64, hi: u64) -> (Histogram<u64>, u64) {
    let mut h = hdr::new_histogram();
    let mut sum = 0;
    for _ in 0..samples {
        let v = rng.log_uniform(lo, hi);
        h.record(v).expect("in range");
        sum += v;
    }
    (h, sum)
}

/// A series' 30 counters: the catalogue's first 30 names, values below 10,000.
pub fn counters(rng: &mut Rng) -> BTreeMap<String, u64> {
    Counter::ALL[..30]
        .iter()
        .map(|c| (c.report_name().to_owned(), rng.next_u64() % 10_000))
        .collect()
}
