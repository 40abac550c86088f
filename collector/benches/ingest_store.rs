//! History store ingest throughput: the whole per-report ingest path the server runs. Each
//! report is a JSON body (as an agent sends it) decoded with `proto::report::decode_report`,
//! then committed with `SqliteStore::commit` in group-commit batches, into a SQLite store on
//! disk (WAL, synchronous=NORMAL unless `STALLWATCH_BENCH_SYNC_FULL` is set), and in the
//! pipeline runs the committed delta is added to the series.
//!
//! ```text
//! cargo bench -p stallwatch-collector --bench ingest_store
//! STALLWATCH_BENCH_REPORTS=61440 STALLWATCH_BENCH_BATCHES=64,256,512 cargo bench -p stallwatch-collector --bench ingest_store
//! STALLWATCH_BENCH_PIPELINE_ONLY=1 STALLWATCH_BENCH_DECODERS=2 cargo bench -p stallwatch-collector --bench ingest_store
//! STALLWATCH_BENCH_COHORTS=72 (only that fleet shape; 72 or 4)
//! STALLWATCH_BENCH_DEFLATE_LEVEL=6 (histograms as agents sent them before stored blocks)
//! ```
//!
//! A report is one series of 8 histograms and 30 counters, shaped like 10 s of a 2 Mbit/s
//! 720p30 stream: about 2,670 packets, so the four packet-level histograms (jitter, PDV, IPDV,
//! latency) hold 2,670 samples each, and four sparse ones (first frame, stalls, reordering,
//! bursts) a few. Fleets: 3,000 agents over 2 regions x 3 network types x 3 transports x 4
//! targets (72 cohorts), and the same agents over 4 cohorts. Agents report every 10 s of
//! simulated time, so a run crosses several minutes and every batch hits rows that hold
//! earlier batches. Also prints what one row merge costs, by step.

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark reads the clock to time itself; it is not collector code"
)]

/// The collector binary's allocator, so this measures what runs.
#[global_allocator]
static ALLOCATOR: stallwatch_collector::Allocator = stallwatch_collector::Allocator;

mod shared;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stallwatch_collector::pki::{AgentIdentity, VerifiedAgent};
use stallwatch_collector::series::SeriesStore;
use stallwatch_collector::server::{MAX_BATCH, QUEUE_DEPTH};
use stallwatch_collector::store::{
    Delta, HistoryStore, IngestItem, Outcome, ROW_DEFLATE_LEVEL, STORED_HDR_LIMITS, SqliteStore,
};
use stallwatch_proto::hdr;
use stallwatch_proto::report::SeriesLabels;
use stallwatch_proto::report::{
    DecodedReport, HistogramData, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series,
    decode_report, encode_report,
};
use stallwatch_proto::{Role, Transport};
use stallwatch_tests::rng::Rng;

/// The ledger digest of a report. The store's cost is the same for any 32 bytes; the real
/// SHA-256 of the body runs on the request workers, not on the writer these benchmarks time.
fn digest_of(report: &DecodedReport) -> [u8; 32] {
    let mut digest = [0; 32];
    digest[..8].copy_from_slice(&report.report.seq.to_le_bytes());
    digest
}

const AGENTS: usize = 3_000;
/// Distinct report bodies; items reuse them under different agents and sequence numbers.
const POOL: usize = 16;
const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;

/// `STALLWATCH_BENCH_DEFLATE_LEVEL`: the DEFLATE level of the reports' histograms when not
/// what agents send ([`hdr::REPORT_DEFLATE_LEVEL`]); 6 is what agents sent before.
fn agent_deflate_level() -> Option<u32> {
    std::env::var("STALLWATCH_BENCH_DEFLATE_LEVEL").ok().map(|v| v.parse().expect("a level, 0-9"))
}

fn pool_report(rng: &mut Rng, i: usize, transport_targets: usize) -> DecodedReport {
    let mut decoded = BTreeMap::new();
    let mut data = BTreeMap::new();
    for (name, samples, lo, hi) in shared::SHAPES {
        let (h, sum) = shared::histogram(rng, samples, lo, hi);
        let mut d = HistogramData::from_histogram(&h, sum);
        if let Some(level) = agent_deflate_level() {
            d.hdr.clear();
            hdr::Encoder::with_level(level).encode_into(&h, &mut d.hdr).expect("encodes");
        }
        decoded.insert(name.to_string(), hdr::decode_sparse(&d.hdr, &Default::default()).unwrap());
        data.insert(name.to_string(), d);
    }
    let counters = shared::counters(rng);
    // Transport x target combinations (3 transports x up to 4 targets).
    let combo = i % transport_targets;
    let labels = SeriesLabels {
        probe: "view".into(),
        repair: None,
        role: Role::Viewer,
        target: format!("relay-{}", combo / 3),
        transport: [Transport::Udp, Transport::QuicStream, Transport::QuicDatagram][combo % 3],
    };
    DecodedReport {
        report: Report {
            schema_version: REPORT_SCHEMA_VERSION,
            agent: "agent00000".to_string(),
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
    /// Transport x target combinations each agent's reports spread over.
    transport_targets: usize,
}

impl Fleet {
    fn cohorts(&self) -> usize {
        self.region_nets * self.transport_targets
    }
}

/// Ingests `reports` reports in batches of `batch`; returns reports/s.
fn run(ca: &Ca, fleet: &Fleet, reports: usize, batch: usize) -> f64 {
    let scratch = stallwatch_tests::scratch_dir("bench-store");
    let dir = scratch.path();
    let db = dir.join("history.sqlite");
    let mut store = SqliteStore::open(&db).expect("open store");
    store.set_synchronous_full(sync_full()).expect("pragma");

    let mut rng = Rng::new(0x5eed_0000 + fleet.cohorts() as u64);
    // Bodies as agents send them; reports reuse them under different agents and sequence
    // numbers (decoding costs the same whatever the seq).
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|i| encode_report(&pool_report(&mut rng, i, fleet.transport_targets).report))
        .collect();
    let agents = fleet_agents(ca, fleet);
    let limits = ReportLimits::default();

    let batches = reports.div_ceil(batch);
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut decode_time, mut commit_time) = (Duration::ZERO, Duration::ZERO);
    let mut stored = 0u64;
    let start = Instant::now();
    for b in 0..batches {
        let t = Instant::now();
        let decoded: Vec<DecodedReport> = (0..batch)
            .map(|i| {
                let n = b * batch + i;
                let mut d =
                    decode_report(&pool[(n * 7 + n / AGENTS) % POOL], &limits).expect("decodes");
                // Every agent reports once per 10 s of simulated time.
                let window_start = T0 + (n / AGENTS) as u64 * 10_000;
                d.report.seq = (n / AGENTS) as u64;
                d.report.window_start_ms = window_start;
                d.report.window_end_ms = window_start + 10_000;
                d
            })
            .collect();
        let decoded_at = Instant::now();
        decode_time += decoded_at - t;
        let items: Vec<IngestItem<'_>> = decoded
            .iter()
            .enumerate()
            .map(|(i, report)| IngestItem {
                agent: &agents[(b * batch + i) % AGENTS],
                report,
                received_unix_ms: report.report.window_end_ms + 500,
                digest: digest_of(report),
            })
            .collect();
        let outcomes = store.commit(&items).expect("commit").outcomes;
        let elapsed = decoded_at.elapsed();
        commit_time += elapsed;
        latencies.saturating_record(elapsed.as_micros() as u64);
        stored += outcomes.iter().filter(|o| **o == Outcome::Stored).count() as u64;
    }
    let elapsed = start.elapsed();
    assert_eq!(stored, (batches * batch) as u64, "every report is new");
    let db_bytes: u64 = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let rate = stored as f64 / elapsed.as_secs_f64();
    let (cached_rows, cached_bytes) = store.row_cache_usage();
    println!(
        "{:<10} {:>2} cohorts, batch {batch:>3}: {rate:>6.0} reports/s ({:>6.0} histograms/s); \
         per report: decode {:>5.1} us, commit {:>5.1} us; commit p50 {:.1} ms, p99 {:.1} ms per \
         batch; {} reports in {:.2?}; database {:.1} MiB; row cache {} rows, {:.1} MiB",
        fleet.name,
        fleet.cohorts(),
        rate * 8.0,
        decode_time.as_secs_f64() * 1e6 / stored as f64,
        commit_time.as_secs_f64() * 1e6 / stored as f64,
        latencies.value_at_quantile(0.5) as f64 / 1e3,
        latencies.value_at_quantile(0.99) as f64 / 1e3,
        stored,
        elapsed,
        db_bytes as f64 / (1024.0 * 1024.0),
        cached_rows,
        cached_bytes as f64 / (1024.0 * 1024.0),
    );
    drop(store);
    rate
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
    let mut rng = Rng::new(7);
    let report = pool_report(&mut rng, 0, 12);
    let body = encode_report(&report.report);
    let limits = ReportLimits::default();
    let jitter_bytes = report.report.series[0].histograms["jitter_us"].hdr.clone();
    let jitter = hdr::decode_sparse(&jitter_bytes, &limits.hdr).expect("decodes");
    let jitter_full = hdr::decode(&jitter_bytes, &limits.hdr).expect("decodes");
    let mut minute_row = hdr::new_histogram();
    for r in (0..64).map(|i| pool_report(&mut rng, i, 12)) {
        minute_row.add(r.histograms[0]["jitter_us"].to_histogram().unwrap()).expect("same layout");
    }
    let encoded = hdr::encode(&minute_row);
    let mut row = hdr::decode(&encoded, &STORED_HDR_LIMITS).expect("decodes");
    let mut fast = hdr::Encoder::with_level(ROW_DEFLATE_LEVEL);
    let mut out = Vec::new();
    fast.encode_into(&minute_row, &mut out).expect("encodes");
    let n = 300;
    println!(
        "one report: decode_report {:.1?} ({} B JSON); its jitter ({} buckets): decode sparse \
         {:.1?}, full {:.1?}",
        time(n, || decode_report(&body, &limits).expect("decodes")),
        body.len(),
        jitter.bucket_count(),
        time(n, || hdr::decode_sparse(&jitter_bytes, &limits.hdr).expect("decodes")),
        time(n, || hdr::decode(&jitter_bytes, &limits.hdr).expect("decodes")),
    );
    // The same report as agents sent it before stored blocks (DEFLATE level 6).
    let mut deflated = report.report.clone();
    for h in deflated.series.iter_mut().flat_map(|s| s.histograms.values_mut()) {
        let decoded = hdr::decode(&h.hdr, &limits.hdr).expect("decodes");
        h.hdr = hdr::encode(&decoded);
    }
    let deflated_body = encode_report(&deflated);
    let deflated_jitter = deflated.series[0].histograms["jitter_us"].hdr.clone();
    println!(
        "the same report at DEFLATE level 6: decode_report {:.1?} ({} B JSON); its jitter: \
         decode sparse {:.1?}",
        time(n, || decode_report(&deflated_body, &limits).expect("decodes")),
        deflated_body.len(),
        time(n, || hdr::decode_sparse(&deflated_jitter, &limits.hdr).expect("decodes")),
    );
    // The store's row: a plain counts array of the stallwatch layout.
    let mut counts = vec![0u64; hdr::STALLWATCH_SLOTS];
    for r in (0..64).map(|i| pool_report(&mut rng, i, 12)) {
        for (i, c) in r.histograms[0]["jitter_us"].raw_buckets() {
            counts[i as usize] += c;
        }
    }
    let last = counts.iter().rposition(|&c| c != 0).unwrap_or(0);
    counts.truncate(last + 1);
    let row_counts = counts.clone();
    println!(
        "one row of 64 reports' jitter: decode {:.1?} ({} B at level 6, {} B at level \
         {ROW_DEFLATE_LEVEL}); add a report's jitter: by index into a counts array {:.1?}, \
         Histogram::add {:.1?}; encode at level 6 {:.1?}, at level {ROW_DEFLATE_LEVEL} with a \
         reused encoder {:.1?}, from the counts array {:.1?}",
        time(n, || hdr::decode(&encoded, &STORED_HDR_LIMITS).expect("decodes")),
        encoded.len(),
        out.len(),
        time(n, || {
            for (i, c) in jitter.raw_buckets() {
                if let Some(slot) = counts.get_mut(i as usize) {
                    *slot = slot.saturating_add(c);
                }
            }
        }),
        time(n, || row.add(&jitter_full).expect("auto-resizing")),
        time(n, || hdr::encode(&minute_row)),
        time(n, || fast.encode_into(&minute_row, &mut out).expect("encodes")),
        time(n, || fast.encode_counts_into(&row_counts, &mut out).expect("encodes")),
    );
}

/// The server's shape on this machine: `decoders` threads decode report bodies (the tokio
/// workers) and queue them to one writer thread, which takes everything queued (up to
/// `MAX_BATCH`), commits it in one transaction and adds the committed delta to the series
/// (`SeriesStore::apply`), as `server::ingest` does.
/// Returns end-to-end reports/s.
fn pipeline(ca: &Ca, fleet: &Fleet, reports: usize, decoders: usize) -> f64 {
    let scratch = stallwatch_tests::scratch_dir("bench-pipe");
    let dir = scratch.path();
    let mut store = SqliteStore::open(dir.join("history.sqlite")).expect("open store");
    store.set_synchronous_full(sync_full()).expect("pragma");
    let series = SeriesStore::default();
    let mut rng = Rng::new(0x5eed_0000 + fleet.cohorts() as u64);
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|i| encode_report(&pool_report(&mut rng, i, fleet.transport_targets).report))
        .collect();
    let agents = fleet_agents(ca, fleet);
    let limits = ReportLimits::default();
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, DecodedReport)>(QUEUE_DEPTH);
    let (mut commit_time, mut fold_time, mut batches, mut stored) =
        (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
    let (start, cpu_start) = (Instant::now(), stallwatch_tests::process_cpu());
    // As the server hands each report back with its answer, so the request task frees it:
    // the fold thread returns each batch's reports to the threads that decoded them.
    let (returns, returned): (Vec<_>, Vec<_>) =
        (0..decoders).map(|_| std::sync::mpsc::channel::<Vec<DecodedReport>>()).unzip();
    std::thread::scope(|scope| {
        for (d, returned) in returned.into_iter().enumerate() {
            let (tx, pool, limits) = (tx.clone(), &pool, &limits);
            scope.spawn(move || {
                for n in (d..reports).step_by(decoders) {
                    while let Ok(done) = returned.try_recv() {
                        drop(done);
                    }
                    let mut r =
                        decode_report(&pool[(n * 7 + n / AGENTS) % POOL], limits).expect("decodes");
                    let window_start = T0 + (n / AGENTS) as u64 * 10_000;
                    r.report.seq = (n / AGENTS) as u64;
                    r.report.window_start_ms = window_start;
                    r.report.window_end_ms = window_start + 10_000;
                    if tx.send((n, r)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        // As the server's `series-fold` thread: folds each committed batch into the series
        // while the writer commits the next, then hands the reports back.
        let (folds, to_fold) =
            std::sync::mpsc::sync_channel::<(Delta, Vec<(usize, DecodedReport)>)>(1);
        let series = &series;
        let folder = scope.spawn(move || {
            let mut fold_time = Duration::ZERO;
            for (delta, mut batch) in to_fold {
                let t = Instant::now();
                series.apply(&delta);
                fold_time += t.elapsed();
                let mut back: Vec<Vec<DecodedReport>> = vec![Vec::new(); decoders];
                for (n, report) in batch.drain(..) {
                    back[n % decoders].push(report);
                }
                for (to, reports) in returns.iter().zip(back) {
                    // A decoder that has finished is gone; then this thread frees them.
                    let _ = to.send(reports);
                }
            }
            fold_time
        });
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let t = Instant::now();
            let items: Vec<IngestItem<'_>> = batch
                .iter()
                .map(|(n, report)| IngestItem {
                    agent: &agents[n % AGENTS],
                    report,
                    received_unix_ms: report.report.window_end_ms + 500,
                    digest: digest_of(report),
                })
                .collect();
            let committed = store.commit(&items).expect("commit");
            drop(items);
            commit_time += t.elapsed();
            stored += committed.outcomes.iter().filter(|o| **o == Outcome::Stored).count() as u64;
            batches += 1;
            let done = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
            folds.send((committed.delta, done)).expect("the fold thread runs");
        }
        drop(folds);
        fold_time = folder.join().expect("the fold thread ends");
    });
    let elapsed = start.elapsed();
    let cpu = stallwatch_tests::process_cpu().saturating_sub(cpu_start);
    assert_eq!(stored, reports as u64, "every report is new");
    let rate = stored as f64 / elapsed.as_secs_f64();
    println!(
        "pipeline  {:>2} cohorts, {decoders} decoder thread(s) + writer + fold: {rate:>6.0} \
         reports/s ({:>6.0} histograms/s) end to end; CPU {:.0} us per report ({:.2} cores \
         busy); per report: commit {:>5.1} us, fold {:>5.1} us; {:.0} reports per batch on average; \
         {} reports in {:.2?}",
        fleet.cohorts(),
        rate * 8.0,
        cpu.as_secs_f64() * 1e6 / stored as f64,
        cpu.as_secs_f64() / elapsed.as_secs_f64(),
        commit_time.as_secs_f64() * 1e6 / stored as f64,
        fold_time.as_secs_f64() * 1e6 / stored as f64,
        stored as f64 / batches as f64,
        stored,
        elapsed,
    );
    drop(store);
    rate
}

/// `STALLWATCH_BENCH_SYNC_FULL=1` measures with `synchronous=FULL`, as the collector runs;
/// without it the bench uses `NORMAL`, to show what FULL costs.
fn sync_full() -> bool {
    std::env::var_os("STALLWATCH_BENCH_SYNC_FULL").is_some()
}

/// A fleet CA made with rcgen directly: `Ca` records every certificate it issues in a file,
/// too slow for thousands of agents per run.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    /// One key for every agent certificate: only the signatures differ.
    agent_key: rcgen::KeyPair,
}

impl Ca {
    fn new() -> Self {
        use rcgen::{BasicConstraints, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256};
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "bench CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("a CA");
        let agent_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a key");
        Ca { params, key, cert, agent_key }
    }

    /// An agent certificate as `ca issue-agent` makes it, verified as the listener verifies it.
    fn agent(&self, identity: &AgentIdentity) -> VerifiedAgent {
        use rcgen::{ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, identity.name.as_str());
        let uri = rcgen::string::Ia5String::try_from(identity.to_uri()).expect("an ia5 uri");
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&self.agent_key, &issuer).expect("signed");
        let now = std::time::Duration::from_millis(T0);
        let now = rustls_pki_types::UnixTime::since_unix_epoch(now);
        VerifiedAgent::verify(cert.der(), self.cert.der(), now).expect("verifies")
    }
}

/// The fleet's agents, each with a certificate from `ca` verified as ingest verifies it.
fn fleet_agents(ca: &Ca, fleet: &Fleet) -> Vec<VerifiedAgent> {
    let regions = ["eu", "us"];
    let nets = ["wifi", "4g", "fiber"];
    (0..AGENTS)
        .map(|a| {
            let rn = a % fleet.region_nets;
            let identity =
                AgentIdentity::new(format!("agent{a:05}"), regions[rn / 3 % 2], nets[rn % 3])
                    .expect("a valid identity");
            ca.agent(&identity)
        })
        .collect()
}

fn main() {
    stallwatch_collector::keep_off_huge_pages();
    println!("synchronous={}", if sync_full() { "FULL" } else { "NORMAL" });
    println!(
        "{} cores; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let reports: usize = std::env::var("STALLWATCH_BENCH_REPORTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_720);
    let batches: Vec<usize> = std::env::var("STALLWATCH_BENCH_BATCHES")
        .ok()
        .map(|v| v.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 256, 512]);
    let mut rng = Rng::new(1);
    let sample = pool_report(&mut rng, 0, 12);
    let hist_bytes: usize = sample.report.series[0].histograms.values().map(|h| h.hdr.len()).sum();
    println!(
        "report: 1 series, 8 histograms ({hist_bytes} B encoded), 30 counters; \
         {} B as JSON on the wire",
        encode_report(&sample.report).len()
    );
    let only_pipeline = std::env::var_os("STALLWATCH_BENCH_PIPELINE_ONLY").is_some();
    // Decoder threads of the pipeline runs; empty for none.
    let decoder_counts: Vec<usize> = std::env::var("STALLWATCH_BENCH_DECODERS")
        .map(|v| v.split(',').filter_map(|d| d.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![1, 2]);
    let ca = Ca::new();
    let cohorts: Option<usize> =
        std::env::var("STALLWATCH_BENCH_COHORTS").ok().and_then(|v| v.parse().ok());
    for fleet in [
        Fleet { name: "per-target", region_nets: 6, transport_targets: 12 },
        Fleet { name: "per-region", region_nets: 4, transport_targets: 1 },
    ] {
        if cohorts.is_some_and(|c| c != fleet.cohorts()) {
            continue;
        }
        for &batch in batches.iter().filter(|_| !only_pipeline) {
            run(&ca, &fleet, reports, batch);
        }
        for &decoders in &decoder_counts {
            pipeline(&ca, &fleet, reports, decoders);
        }
    }
    components();
}
