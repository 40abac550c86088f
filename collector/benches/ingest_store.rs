//! History store ingest throughput: group-committed batches of 64 reports (by default), each with one
//! series of 8 histograms (4 packet-level with ~500 samples, 4 sparse) and 30 counters, into
//! a SQLite store on disk (WAL, synchronous=NORMAL).
//!
//! ```text
//! cargo bench -p stallwatch-collector --bench ingest_store
//! STALLWATCH_BENCH_BATCHES=500 STALLWATCH_BENCH_BATCH=256 cargo bench -p stallwatch-collector --bench ingest_store
//! ```
//!
//! Two fleets: 10,000 agents in 96 cohorts (8 region x network type, 12 transport x target),
//! and the same agents in 4 cohorts. Agents report every 10 s of simulated time, so one
//! minute row merges up to 60,000 reports. Also prints what one row merge costs, by step.

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark reads the clock to time itself; it is not collector code"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stallwatch_collector::store::{
    HistoryStore, IngestItem, Outcome, STORED_HDR_LIMITS, SqliteStore,
};
use stallwatch_proto::hdr;
use stallwatch_proto::report::{
    DecodedReport, HistogramData, REPORT_SCHEMA_VERSION, Report, Series, encode_report,
};

const AGENTS: usize = 10_000;
/// Distinct report bodies; items reuse them under different agents and sequence numbers.
const POOL: usize = 16;
const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Log-uniform in `lo..hi`.
    fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo as f64) * ((hi as f64) / (lo as f64)).powf(u)) as u64
    }
}

fn histogram(rng: &mut Rng, samples: usize, lo: u64, hi: u64) -> (Histogram<u64>, u64) {
    let mut h = hdr::new_histogram();
    let mut sum = 0;
    for _ in 0..samples {
        let v = rng.log_uniform(lo, hi);
        h.record(v).expect("in range");
        sum += v;
    }
    (h, sum)
}

fn pool_report(rng: &mut Rng, i: usize, cohorts: usize) -> DecodedReport {
    let shapes: [(&str, usize, u64, u64); 8] = [
        ("jitter_us", 500, 200, 20_000),
        ("pdv_us", 500, 100, 50_000),
        ("ipdv_us", 500, 50, 20_000),
        ("latency_us", 500, 20_000, 80_000),
        ("first_frame_us", 1, 300_000, 900_000),
        ("stall_duration_us", 2, 500_000, 2_000_000),
        ("reorder_distance_packets", 5, 1, 10),
        ("burst_length_packets", 10, 1, 30),
    ];
    let mut decoded = BTreeMap::new();
    let mut data = BTreeMap::new();
    for (name, samples, lo, hi) in shapes {
        let (h, sum) = histogram(rng, samples, lo, hi);
        data.insert(name.to_string(), HistogramData::from_histogram(&h, sum));
        decoded.insert(name.to_string(), h);
    }
    let counters = (0..30).map(|c| (format!("counter_{c:02}"), rng.next() % 10_000)).collect();
    // Transport x target: 12 combinations, or 1 for the few-cohort fleet.
    let combo = if cohorts > 4 { i % 12 } else { 0 };
    let labels = BTreeMap::from([
        ("transport".to_string(), ["udp", "quic-stream", "quic-datagram"][combo % 3].to_string()),
        ("target".to_string(), format!("relay-{}", combo / 3)),
        ("probe".to_string(), "view".to_string()),
    ]);
    DecodedReport {
        report: Report {
            schema_version: REPORT_SCHEMA_VERSION,
            agent: String::new(),
            agent_version: "0.1.0".to_string(),
            seq: 0,
            window_start_ms: T0,
            window_end_ms: T0 + 10_000,
            plan_revision: 1,
            spool_depth: 0,
            series: vec![Series { labels, counters, histograms: data }],
        },
        histograms: vec![decoded],
    }
}

struct Fleet {
    name: &'static str,
    /// Region x network type combinations the agents spread over.
    region_nets: usize,
    cohorts: usize,
}

fn run(fleet: &Fleet, batches: usize, batch: usize) {
    let dir = std::env::temp_dir().join(format!("stallwatch-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("history.sqlite");
    let mut store = SqliteStore::open(&db).expect("open store");

    let mut rng = Rng(0x5eed_0000 + fleet.cohorts as u64);
    let mut pool: Vec<DecodedReport> =
        (0..POOL).map(|i| pool_report(&mut rng, i, fleet.cohorts)).collect();
    let agents: Vec<(String, String, String)> = (0..AGENTS)
        .map(|a| {
            let rn = a % fleet.region_nets;
            (
                format!("agent{a:05}"),
                format!("region{}", rn / 2),
                ["4g", "wifi"][rn % 2].to_string(),
            )
        })
        .collect();

    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut stored = 0u64;
    let start = Instant::now();
    for b in 0..batches {
        // Every agent reports once per 10 s of simulated time.
        let window_start = T0 + (b * batch / AGENTS) as u64 * 10_000;
        for r in &mut pool {
            r.report.seq = b as u64;
            r.report.window_start_ms = window_start;
            r.report.window_end_ms = window_start + 10_000;
        }
        let items: Vec<IngestItem<'_>> = (0..batch)
            .map(|i| {
                let (agent, region, network_type) = &agents[(b * batch + i) % AGENTS];
                IngestItem {
                    agent,
                    region,
                    network_type,
                    report: &pool[(i + b) % POOL],
                    received_unix_ms: window_start + 10_500,
                }
            })
            .collect();
        let t = Instant::now();
        let outcomes = store.commit_batch(&items).expect("commit");
        latencies.saturating_record(t.elapsed().as_micros() as u64);
        stored += outcomes.iter().filter(|o| **o == Outcome::Stored).count() as u64;
    }
    let elapsed = start.elapsed();
    assert_eq!(stored, (batches * batch) as u64, "every report is new");
    let db_bytes: u64 = std::fs::read_dir(&dir)
        .expect("read dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{:<11} {:>3} cohorts: {:>7.0} reports/s ({:>7.0} histograms/s), {} reports in {:.2?}; \
         batch of {batch}: p50 {:.1} ms, p99 {:.1} ms; database {:.1} MiB",
        fleet.name,
        fleet.cohorts,
        stored as f64 / elapsed.as_secs_f64(),
        stored as f64 * 8.0 / elapsed.as_secs_f64(),
        stored,
        elapsed,
        latencies.value_at_quantile(0.5) as f64 / 1e3,
        latencies.value_at_quantile(0.99) as f64 / 1e3,
        db_bytes as f64 / (1024.0 * 1024.0),
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Times `f`, averaged over `n` runs.
fn time<T>(n: u32, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    start.elapsed() / n
}

fn components() {
    let mut rng = Rng(7);
    let report = pool_report(&mut rng, 0, 96);
    let jitter = &report.histograms[0]["jitter_us"];
    let mut minute_row = hdr::new_histogram();
    for r in (0..64).map(|i| pool_report(&mut rng, i, 96)) {
        minute_row.add(&r.histograms[0]["jitter_us"]).expect("same layout");
    }
    let encoded = hdr::encode(&minute_row);
    let n = 300;
    println!(
        "one row merge: decode stored row {:.1?} ({} B), add a report histogram {:.1?}, \
         encode row {:.1?}",
        time(n, || hdr::decode(&encoded, &STORED_HDR_LIMITS).expect("decodes")),
        encoded.len(),
        time(n, || minute_row.add(jitter).expect("same layout")),
        time(n, || hdr::encode(&minute_row)),
    );
}

fn main() {
    let env = |name: &str, default: usize| {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let batch = env("STALLWATCH_BENCH_BATCH", 64);
    let batches = env("STALLWATCH_BENCH_BATCHES", 200 * 64 / batch);
    let mut rng = Rng(1);
    let sample = pool_report(&mut rng, 0, 96);
    let hist_bytes: usize = sample.report.series[0].histograms.values().map(|h| h.hdr.len()).sum();
    println!(
        "report: 1 series, 8 histograms ({hist_bytes} B encoded), 30 counters; \
         {} B as JSON on the wire",
        encode_report(&sample.report).len()
    );
    for fleet in [
        Fleet { name: "per-target", region_nets: 8, cohorts: 96 },
        Fleet { name: "per-region", region_nets: 4, cohorts: 4 },
    ] {
        run(&fleet, batches, batch);
    }
    components();
}
