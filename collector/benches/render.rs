//! `/metrics` at the series limit: render time, exposition size, memory per series, and the
//! cost of adding one report's committed delta to the series. Run:
//! `cargo bench -p stallwatch-collector --bench render`
//!
//! Fills the default 50,000-series budget (1,136 cohorts of 44 series) with every histogram
//! observed, the worst case for the exposition's size, then renders it.
#![allow(clippy::disallowed_methods, reason = "a benchmark reads the clock to time itself")]
#![cfg_attr(
    test,
    allow(dead_code, reason = "built as a libtest bench until Cargo.toml sets harness = false")
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stallwatch_collector::pki::{AgentIdentity, Ca, VerifiedAgent};
use stallwatch_collector::series::catalogue::{COUNTERS, HISTOGRAMS};
use stallwatch_collector::series::{
    Cohorts, Exposition, SERIES_PER_COHORT, SeriesLimits, SeriesStore,
};
use stallwatch_collector::store::{Delta, HistoryStore, IngestItem, SqliteStore, report_digest};
use stallwatch_collector::telemetry::Telemetry;
use stallwatch_proto::hdr;
use stallwatch_proto::report::SeriesLabels;
use stallwatch_proto::report::{
    DecodedReport, HistogramData, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series,
    decode_report, encode_report,
};
use stallwatch_proto::{Role, Transport};
use stallwatch_tests::alloc::CountingAllocator;
use stallwatch_tests::rng::Rng;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const REGIONS: [&str; 8] =
    ["eu-fra", "eu-lon", "us-sea", "us-iad", "ap-sin", "ap-tyo", "sa-gru", "af-jnb"];
const NETWORK_TYPES: [&str; 4] = ["fiber", "wifi", "4g", "3g"];
const TRANSPORTS: [Transport; 3] = Transport::ALL;

fn histogram(rng: &mut Rng, samples: usize, lo: f64, hi: f64) -> HistogramData {
    let mut h: Histogram<u64> = hdr::new_histogram();
    let mut sum = 0;
    for _ in 0..samples {
        let v = (lo * (hi / lo).powf(rng.unit())).round() as u64;
        h.record(v).unwrap();
        sum += v;
    }
    HistogramData::from_histogram(&h, sum)
}

/// A 10 s viewer window: `names` histograms with realistic sample counts, all counters.
fn report(names: &[&'static str]) -> DecodedReport {
    let mut rng = Rng::new(0x5eed);
    let histograms = names
        .iter()
        .map(|&name| {
            let data = match name {
                "jitter_us" | "pdv_us" | "ipdv_us" | "latency_us" => {
                    histogram(&mut rng, 3_000, 100.0, 60_000.0)
                }
                "reorder_distance_packets" | "burst_length_packets" => {
                    histogram(&mut rng, 20, 2.0, 200.0)
                }
                "stall_duration_us" => histogram(&mut rng, 3, 500_001.0, 5e6),
                _ => histogram(&mut rng, 1, 20_000.0, 3e6),
            };
            (name.to_owned(), data)
        })
        .collect();
    let counters = COUNTERS
        .iter()
        .enumerate()
        .map(|(i, c)| (c.report_name().to_owned(), 1_000 + i as u64))
        .collect();
    let labels = SeriesLabels {
        probe: "view".into(),
        repair: None,
        role: Role::Viewer,
        target: "relay".into(),
        transport: Transport::Udp,
    };
    let report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        agent: "bench-agent-0001".into(),
        agent_version: "0.1.0".into(),
        seq: 1,
        window_start_ms: 1_700_000_000_000,
        window_end_ms: 1_700_000_010_000,
        plan_revision: 1,
        spool_depth: 0,
        series: vec![Series { labels, counters, histograms }],
    };
    let bytes = encode_report(&report);
    decode_report(&bytes, &ReportLimits::default()).unwrap()
}

/// The production path's history store and agents: a temp dir with a CA and a database.
struct History {
    ca: Ca,
    store: SqliteStore,
    /// Holds the CA and the store's file; last, so the store closes before it goes.
    _dir: tempfile::TempDir,
}

impl History {
    fn new() -> Self {
        let dir = stallwatch_tests::scratch_dir("bench-render");
        let ca = Ca::init(&dir.path().join("ca"), now(), true).unwrap();
        let store = SqliteStore::open(dir.path().join("history.sqlite")).unwrap();
        History { ca, store, _dir: dir }
    }

    fn agent(&self, name: &str, region: &str, network_type: &str) -> VerifiedAgent {
        let identity = AgentIdentity::new(name, region, network_type).unwrap();
        VerifiedAgent::issue_and_verify(&self.ca, &identity, now()).unwrap()
    }

    /// Commits `reports` from their agents in one batch; the delta.
    fn commit(&mut self, reports: &[(VerifiedAgent, DecodedReport)]) -> Delta {
        let items: Vec<IngestItem<'_>> = reports
            .iter()
            .map(|(agent, report)| IngestItem {
                agent,
                report,
                received_unix_ms: report.report.window_end_ms,
                digest: report_digest(&encode_report(&report.report)),
            })
            .collect();
        self.store.commit(&items).unwrap().delta
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
}

/// One committed batch that fills `cohorts` cohorts: every cohort gets every histogram and
/// counter.
fn fill(history: &mut History, template: &mut DecodedReport, cohorts: usize) -> Delta {
    let mut agents = BTreeMap::new();
    let mut reports = Vec::with_capacity(cohorts);
    for i in 0..cohorts {
        let who =
            (REGIONS[i % REGIONS.len()], NETWORK_TYPES[(i / REGIONS.len()) % NETWORK_TYPES.len()]);
        let agent = agents
            .entry(who)
            .or_insert_with(|| history.agent(&template.report.agent, who.0, who.1))
            .clone();
        let labels = &mut template.report.series[0].labels;
        labels.transport = TRANSPORTS[i % TRANSPORTS.len()];
        labels.target = format!("relay-{:04}", i / 3);
        let mut report = template.clone();
        report.report.seq = i as u64;
        reports.push((agent, report));
    }
    history.commit(&reports)
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let started = Instant::now();
        let value = std::hint::black_box(f());
        best = best.min(started.elapsed());
        out = Some(value);
    }
    (best, out.expect("at least one run"))
}

fn main() {
    let all: Vec<&'static str> = HISTOGRAMS.iter().map(|h| h.report_name()).collect();
    let mut template = report(&all);

    let mut history = History::new();
    let cohorts = SeriesLimits::default().max_cohorts();
    let delta = fill(&mut history, &mut template, cohorts);
    let before = CountingAllocator::live_bytes();
    let store = SeriesStore::new(SeriesLimits::default());
    store.apply(&delta);
    let heap = CountingAllocator::live_bytes() - before;
    drop(delta);
    let telemetry = Telemetry::default();
    let series = store.read().series();
    assert_eq!(store.read().len(), cohorts);

    let (copy_time, _) = best_of(7, || store.read().clone());
    let (om_time, om) = best_of(7, || store.render_text(&telemetry));
    let (prom_time, prom) = best_of(7, || store.render_prometheus_text(&telemetry));
    let (pb_time, pb) = best_of(7, || store.render(Exposition::Protobuf, &telemetry));
    let lines = om.lines().count();
    let native_heap = store.read().native_heap_bytes();

    println!(
        "series limit: {series} series = {cohorts} cohorts x {SERIES_PER_COHORT}, every histogram observed"
    );
    println!(
        "render_text (OpenMetrics): {:.1} ms, {:.1} MiB, {lines} lines ({} bytes per series)",
        om_time.as_secs_f64() * 1e3,
        om.len() as f64 / (1024.0 * 1024.0),
        om.len() / series,
    );
    println!(
        "read lock held per render (copying the cohorts): {:.2} ms",
        copy_time.as_secs_f64() * 1e3
    );
    println!(
        "render_prometheus_text:    {:.1} ms, {:.1} MiB",
        prom_time.as_secs_f64() * 1e3,
        prom.len() as f64 / (1024.0 * 1024.0),
    );
    println!(
        "render protobuf (classic + native): {:.1} ms, {:.1} MiB ({} bytes per series)",
        pb_time.as_secs_f64() * 1e3,
        pb.len() as f64 / (1024.0 * 1024.0),
        pb.len() / series,
    );
    println!(
        "heap: {:.2} MiB for {cohorts} cohorts (one agent) = {} bytes per cohort, {} bytes per series",
        heap as f64 / (1024.0 * 1024.0),
        heap / cohorts as i64,
        heap / series as i64,
    );
    println!(
        "  of which native buckets: {:.2} MiB = {} bytes per cohort, {} bytes per histogram",
        native_heap as f64 / (1024.0 * 1024.0),
        native_heap / cohorts,
        native_heap / (cohorts * HISTOGRAMS.len()),
    );

    // Adding one report's committed delta (decoding and committing are ingest's), into an
    // existing cohort: a viewer report with 8 histograms of 3,000 / 1 / 3 / 20 samples and all
    // 31 counters.
    let eight = [
        "jitter_us",
        "pdv_us",
        "ipdv_us",
        "first_frame_us",
        "first_frame_first_byte_us",
        "first_frame_first_keyframe_us",
        "stall_duration_us",
        "burst_length_packets",
    ];
    let mut viewer = report(&eight);
    viewer.report.seq = u64::MAX >> 2;
    let agent = history.agent(&viewer.report.agent, "eu-fra", "4g");
    let delta = history.commit(&[(agent, viewer)]);
    let mut cohorts = Cohorts::default();
    let folds = 20_000;
    let (fold_time, ()) = best_of(3, || {
        for _ in 0..folds {
            cohorts.apply(&delta);
        }
    });
    println!(
        "apply: {:.2} µs per report's delta (8 histograms, 31 counters) = {:.0} reports/s on \
         one core",
        fold_time.as_secs_f64() * 1e6 / folds as f64,
        folds as f64 / fold_time.as_secs_f64(),
    );
}
