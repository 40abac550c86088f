//! What a zero-histogram bomb costs ingest's decoder: a report under 1 MiB of thousands of
//! all-zero histograms, each padded with explicit zero counts to the 256 KiB per-histogram
//! inflation cap (some 300 bytes compressed). Times `decode_report` on it under the default
//! limits (refused at the 8 MiB per-report inflation cap), under limits without that cap (what
//! ingest did before: it inflated every histogram), and on an honest report for scale.
//!
//! ```text
//! cargo bench -p stallwatch-collector --bench ingest_bomb
//! ```
#![allow(clippy::disallowed_methods, reason = "a benchmark reads the clock to time itself")]

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use stallwatch_collector::series::catalogue::HISTOGRAMS;
use stallwatch_proto::hdr;
use stallwatch_proto::report::SeriesLabels;
use stallwatch_proto::report::{
    HistogramData, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series, decode_report,
    encode_report,
};
use stallwatch_proto::{Role, Transport};

fn zero_histogram() -> Vec<u8> {
    let inflated = 256 * 1024;
    let mut v2 = Vec::with_capacity(inflated);
    v2.extend_from_slice(&(hdr::V2_COOKIE_BASE | 0x10).to_be_bytes());
    v2.extend_from_slice(&u32::try_from(inflated - hdr::V2_HEADER_LEN).unwrap().to_be_bytes());
    v2.extend_from_slice(&0u32.to_be_bytes());
    v2.extend_from_slice(&3u32.to_be_bytes());
    v2.extend_from_slice(&1u64.to_be_bytes());
    v2.extend_from_slice(&hdr::HIGHEST_TRACKABLE_US.to_be_bytes());
    v2.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
    v2.resize(inflated, 0);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&v2).unwrap();
    let compressed = z.finish().unwrap();
    let mut out = hdr::V2_COMPRESSED_COOKIE_BASE.to_be_bytes().to_vec();
    out.extend_from_slice(&u32::try_from(compressed.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&compressed);
    out
}

fn labels(probe: usize) -> SeriesLabels {
    SeriesLabels {
        probe: format!("p{probe}"),
        repair: None,
        role: Role::Viewer,
        target: "relay-1".into(),
        transport: Transport::Udp,
    }
}

fn report(series: Vec<Series>) -> Report {
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        agent: "bench".into(),
        agent_version: "bench".into(),
        seq: 1,
        window_start_ms: 1_700_000_000_000,
        window_end_ms: 1_700_000_010_000,
        plan_revision: 1,
        spool_depth: 0,
        series,
    }
}

fn bomb() -> (Vec<u8>, usize) {
    let zero = zero_histogram();
    let mut bomb = report(Vec::new());
    for probe in 0..256 {
        bomb.series.push(Series {
            labels: labels(probe),
            counters: BTreeMap::new(),
            histograms: HISTOGRAMS
                .iter()
                .map(|s| {
                    (
                        s.report_name().to_owned(),
                        HistogramData { hdr: zero.clone(), sum: 0, count: 0 },
                    )
                })
                .collect(),
        });
        if encode_report(&bomb).len() > 1_000_000 {
            bomb.series.pop();
            break;
        }
    }
    let histograms = bomb.series.len() * HISTOGRAMS.len();
    (encode_report(&bomb), histograms)
}

fn honest() -> Vec<u8> {
    let mut h = hdr::new_histogram();
    let mut sum = 0;
    for i in 0..2_670u64 {
        let value = 1_000 + (i * 7_919) % 40_000;
        h.record(value).unwrap();
        sum += value;
    }
    let data = HistogramData::from_histogram(&h, sum);
    let histograms = ["jitter_us", "pdv_us", "ipdv_us", "latency_us"]
        .map(|n| (n.to_owned(), data.clone()))
        .into_iter()
        .collect();
    encode_report(&report(vec![Series {
        labels: labels(0),
        counters: BTreeMap::new(),
        histograms,
    }]))
}

/// Median wall time of `runs` calls.
fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let (bomb, histograms) = bomb();
    let capped = ReportLimits::default();
    let uncapped = ReportLimits { max_inflated_bytes: usize::MAX, ..capped };
    let e = decode_report(&bomb, &capped).unwrap_err();
    println!(
        "bomb: {} bytes, {histograms} histograms, {} MiB to inflate",
        bomb.len(),
        histograms / 4
    );
    println!("  default limits: {e}");
    let t = time(9, || assert!(decode_report(&bomb, &capped).is_err()));
    println!("  refused at the 8 MiB cap: {:.1} ms (median of 9)", t.as_secs_f64() * 1e3);
    let t = time(3, || assert!(decode_report(&bomb, &uncapped).is_ok()));
    println!(
        "  without the per-report cap (before): {:.1} ms (median of 3)",
        t.as_secs_f64() * 1e3
    );
    let honest = honest();
    assert!(decode_report(&honest, &capped).is_ok());
    let t = time(99, || assert!(decode_report(&honest, &capped).is_ok()));
    println!(
        "honest report ({} bytes, 4 histograms of 2,670 values): {:.3} ms (median of 99)",
        honest.len(),
        t.as_secs_f64() * 1e3
    );
}
