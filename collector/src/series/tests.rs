use hdrhistogram::Histogram;
use stallwatch_proto::hdr;
use stallwatch_proto::report::{
    DecodedReport, HistogramData, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series,
    SeriesLabels, decode_report, encode_report,
};
use stallwatch_proto::{Repair, Role, Transport};

use super::catalogue::{BUCKET_OFFSETS, BUCKET_SLOTS, COUNTERS, DELAY_BOUNDS_US, HISTOGRAMS};
use super::cohort::CohortState;
use super::*;
use crate::store::{Delta, HistoryStore, IngestItem, Outcome, SqliteStore};

/// An agent's certificate region and network type.
type Who = (&'static str, &'static str);
const FRA_4G: Who = ("eu-fra", "4g");
const SEA_WIFI: Who = ("us-sea", "wifi");

/// The production path in miniature: each report is committed to a history store of its own
/// (with a fresh sequence number, received in call order, from an agent with a verified
/// certificate), and the series get the committed delta.
struct Ingest {
    store: SqliteStore,
    received: u64,
    /// Holds the store's file; last, so the store closes before it goes.
    _dir: tempfile::TempDir,
}

impl Ingest {
    fn new() -> Self {
        let dir = stallwatch_tests::scratch_dir("series");
        let store = SqliteStore::open(dir.path().join("history.sqlite")).unwrap();
        Ingest { store, received: 1_700_000_000_000, _dir: dir }
    }

    /// Commits `report` from agent `report.agent` of `who`; the delta.
    fn delta(&mut self, who: Who, report: &DecodedReport) -> Delta {
        let mut report = report.clone();
        self.received += 1;
        report.report.seq = self.received;
        let agent = crate::pki::verified::test_agent(&report.report.agent, who.0, who.1);
        let digest = crate::store::report_digest(&encode_report(&report.report));
        let item = IngestItem { agent, report: &report, received_unix_ms: self.received, digest };
        let committed = self.store.commit(&[item]).unwrap();
        assert_eq!(committed.outcomes, [Outcome::Stored]);
        committed.delta
    }
}

fn hist(values: &[u64]) -> Histogram<u64> {
    let mut h = hdr::new_histogram();
    for &v in values {
        h.record(v).unwrap();
    }
    h
}

/// A viewer's report series with `transport`/`target` (and a `probe`, and the `repair` an
/// agent sends by default) labels, counters, and histograms whose exact sums are the sums of
/// their values.
fn series(
    transport: &str,
    target: &str,
    counters: &[(&str, u64)],
    histograms: &[(&str, &[u64])],
) -> Series {
    let transport: Transport = transport.parse().unwrap();
    let repair = Repair::for_transport(transport, None);
    let labels = SeriesLabels::new("p1", transport, repair, target, Role::Viewer);
    Series {
        labels,
        counters: counters.iter().map(|&(k, v)| (k.to_owned(), v)).collect(),
        histograms: histograms
            .iter()
            .map(|&(name, values)| {
                (name.to_owned(), HistogramData::from_histogram(&hist(values), values.iter().sum()))
            })
            .collect(),
    }
}

/// A report as the collector receives it: encoded and decoded through the wire format.
fn report(agent: &str, window_end_ms: u64, series: Vec<Series>) -> DecodedReport {
    let report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        agent: agent.into(),
        agent_version: "0.1.0".into(),
        seq: 1,
        window_start_ms: window_end_ms.saturating_sub(10_000),
        window_end_ms,
        plan_revision: 1,
        spool_depth: 0,
        series,
    };
    decode_report(&encode_report(&report), &ReportLimits::default()).unwrap()
}

/// The cohort of [`series`]`(transport, target, ..)` from an agent in `region`/`network_type`.
fn key(region: &str, network_type: &str, transport: &str, target: &str) -> Cohort {
    let repair = Repair::for_transport(transport.parse().unwrap(), None);
    Cohort::new(region, network_type, transport, target).with_repair(repair.name())
}

/// Deterministic pseudo-random numbers (xorshift64*), so tests need no `rand`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform between `lo` and `hi`: heavy tails across many buckets.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> u64 {
        (lo * (hi / lo).powf(self.unit())).round() as u64
    }
}

/// The flat bucket layout covers every histogram's buckets once (the names, families and
/// bounds are checked in `stallwatch_proto::catalogue`).
#[test]
fn bucket_layout_covers_every_histogram() {
    let slots: usize = HISTOGRAMS.iter().map(|s| s.family().bounds.len() + 1).sum();
    assert_eq!(slots, BUCKET_SLOTS);
    assert_eq!(BUCKET_OFFSETS[0], 0);
    for (i, h) in HISTOGRAMS.iter().enumerate().skip(1) {
        let previous = HISTOGRAMS[i - 1].family().bounds.len() + 1;
        assert_eq!(BUCKET_OFFSETS[i], BUCKET_OFFSETS[i - 1] + previous, "{}", h.report_name());
    }
}

#[test]
fn series_state_is_small_and_fixed() {
    let per_cohort = std::mem::size_of::<CohortState>();
    let per_series = per_cohort / SERIES_PER_COHORT;
    println!(
        "cohort state: {per_cohort} bytes for {SERIES_PER_COHORT} series \
         ({per_series} bytes per series), plus the key's four strings and the map entry"
    );
    // 197 bucket counts + 13 sums + 13 counts + 31 counters, 8 bytes each, and a native
    // bucket run (zero count, offset, Vec) per histogram.
    assert_eq!(
        per_cohort,
        (BUCKET_SLOTS + 2 * HISTOGRAMS.len() + COUNTERS.len()) * 8
            + HISTOGRAMS.len() * std::mem::size_of::<NativeBuckets>()
    );
    assert!(per_cohort <= 4096, "{per_cohort} bytes: state must stay in the low kilobytes");
    // One HDR histogram at the agents' range is about 190 KiB of counts.
    assert!(hist(&[1]).distinct_values() * 8 > 50 * per_cohort);
}

#[test]
fn series_values_land_in_known_buckets_with_exact_sums_and_counts() {
    let mut ingest = Ingest::new();
    // jitter bounds, µs: 1000 2000 5000 10000 20000 30000 50000 75000 100000 200000 500000
    // 1000000 2000000 5000000, then +Inf.
    let values = [
        500,       // le 0.001
        1_000,     // le 0.001: below 2048 HDR values are exact, so a bound takes its own value
        1_001,     // le 0.002
        2_000,     // le 0.002
        49_000,    // le 0.05 (HDR bucket 48992..=49023)
        50_000,    // le 0.075: HDR bucket 49984..=50015 reaches past the bound (documented)
        2_000_000, // le 5: HDR bucket 1999872..=2000895
        9_000_000, // +Inf
    ];
    let mut cohorts = Cohorts::default();
    let summary = cohorts.apply(&ingest.delta(
        FRA_4G,
        &report("a1", 1_000, vec![series("udp", "relay-1", &[], &[("jitter_us", &values)])]),
    ));
    assert_eq!(summary.series_folded, 1);
    let h = cohorts.histogram(&key("eu-fra", "4g", "udp", "relay-1"), "jitter_us").unwrap();
    let mut expected = [0u64; DELAY_BOUNDS_US.len() + 1];
    for (bucket, n) in [(0, 2), (1, 2), (6, 1), (7, 1), (13, 1), (14, 1)] {
        expected[bucket] = n;
    }
    assert_eq!(h.bucket_counts(), expected);
    assert_eq!(h.count(), values.len() as u64);
    assert_eq!(h.sum(), values.iter().sum::<u64>());
    assert_eq!(h.sum_base(), 11_103_501.0 / 1e6);
}

#[test]
fn series_buckets_follow_the_highest_equivalent_rule_for_any_value() {
    let mut ingest = Ingest::new();
    let mut rng = Rng(7);
    let values: Vec<u64> = (0..20_000).map(|_| rng.log_uniform(1.0, 3e8)).collect();
    let h = hist(&values);
    let mut cohorts = Cohorts::default();
    for name in ["jitter_us", "first_frame_us", "stall_duration_us", "burst_length_packets"] {
        cohorts.apply(&ingest.delta(
            FRA_4G,
            &report("a1", 1_000, vec![series("udp", "r", &[], &[(name, &values)])]),
        ));
        let view = cohorts.histogram(&key("eu-fra", "4g", "udp", "r"), name).unwrap();
        let mut expected = vec![0u64; view.bounds().len() + 1];
        for &v in &values {
            expected[view.bucket_of(h.highest_equivalent(v))] += 1;
        }
        assert_eq!(view.bucket_counts(), expected, "{name}");
    }
}

#[test]
fn series_accumulate_across_folds_and_merge_agents_and_probes() {
    let mut ingest = Ingest::new();
    let mut cohorts = Cohorts::default();
    let one = |jitter: &[u64], lost: u64| {
        series(
            "quic-datagram",
            "relay-fra",
            &[("packets_lost", lost), ("stall_time_ns", 1_500_000_000)],
            &[("jitter_us", jitter)],
        )
    };
    cohorts.apply(&ingest.delta(FRA_4G, &report("a1", 10_000, vec![one(&[1_500, 3_000], 2)])));
    // Another agent, same certificate cohort: merged, no agent label.
    let mut other_probe = one(&[700], 5);
    other_probe.labels.probe = "p2".into();
    cohorts
        .apply(&ingest.delta(FRA_4G, &report("a2", 20_000, vec![one(&[40_000], 1), other_probe])));
    // Same labels, another region: another cohort.
    cohorts.apply(&ingest.delta(SEA_WIFI, &report("a3", 20_000, vec![one(&[9_000], 7)])));

    let fra = key("eu-fra", "4g", "quic-datagram", "relay-fra");
    let h = cohorts.histogram(&fra, "jitter_us").unwrap();
    assert_eq!(h.count(), 4);
    assert_eq!(h.sum(), 1_500 + 3_000 + 40_000 + 700);
    assert_eq!(&h.bucket_counts()[..7], &[1, 1, 1, 0, 0, 0, 1]);
    assert_eq!(cohorts.counter(&fra, "packets_lost"), Some(8));
    assert_eq!(cohorts.counter(&fra, "stall_time_ns"), Some(4_500_000_000));
    assert_eq!(cohorts.counter(&fra, "packets_expected"), Some(0));
    let sea = key("us-sea", "wifi", "quic-datagram", "relay-fra");
    assert_eq!(cohorts.counter(&sea, "packets_lost"), Some(7));
    assert_eq!(cohorts.len(), 2);
    assert_eq!(cohorts.series(), 2 * SERIES_PER_COHORT);
}

/// The issue's acceptance idea, in-process: `histogram_quantile` over the classic buckets
/// lands within one bucket of the quantile of the merged HDR histograms.
#[test]
fn series_quantiles_agree_with_merged_hdr_within_one_bucket() {
    let mut ingest = Ingest::new();
    let mut rng = Rng(42);
    let mut cohorts = Cohorts::default();
    let names = ["jitter_us", "pdv_us", "first_frame_us", "stall_duration_us"];
    let ranges = [(200.0, 80_000.0), (1.0, 3e6), (40_000.0, 3e7), (500_001.0, 9e7)];
    let mut merged: Vec<Histogram<u64>> = names.iter().map(|_| hdr::new_histogram()).collect();
    for agent in 0..6 {
        for window in 0..20 {
            let per_agent: Vec<Vec<u64>> = ranges
                .iter()
                .map(|&(lo, hi)| {
                    let spread = 1.0 + agent as f64;
                    (0..50).map(|_| rng.log_uniform(lo, hi / spread)).collect()
                })
                .collect();
            for (m, values) in merged.iter_mut().zip(&per_agent) {
                m.add(hist(values)).unwrap();
            }
            let hists: Vec<(&str, &[u64])> =
                names.iter().zip(&per_agent).map(|(n, v)| (*n, v.as_slice())).collect();
            cohorts.apply(&ingest.delta(
                FRA_4G,
                &report(
                    &format!("a{agent}"),
                    10_000 * (window + 1),
                    vec![series("udp", "r", &[], &hists)],
                ),
            ));
        }
    }
    let cohort = key("eu-fra", "4g", "udp", "r");
    for (name, hdr) in names.iter().zip(&merged) {
        let view = cohorts.histogram(&cohort, name).unwrap();
        assert_eq!(view.count(), hdr.len());
        for q in [0.5, 0.9, 0.95, 0.99] {
            let estimate_us = view.quantile(q).unwrap() * 1e6;
            let exact_us = hdr.value_at_quantile(q);
            // The bucket the interpolation ran in: estimates lie in (lower, upper].
            let estimated = view.bounds().partition_point(|&b| (b as f64) < estimate_us - 1e-3);
            let exact = view.bucket_of(exact_us);
            assert!(
                estimated.abs_diff(exact) <= 1,
                "{name} q{q}: classic {estimate_us} µs in bucket {estimated}, \
                 HDR {exact_us} µs in bucket {exact}"
            );
            // With highest-equivalent bucketing they are in fact the same bucket, except past
            // the highest bound, where histogram_quantile answers that bound.
            if exact < view.bounds().len() {
                assert_eq!(estimated, exact, "{name} q{q}");
            }
        }
    }
}

#[test]
fn series_quantile_interpolates_like_prometheus() {
    let mut ingest = Ingest::new();
    let mut cohorts = Cohorts::default();
    // Stall bounds (s): 0.5 0.6 1 2 3 5 10 20 60; four stalls in le 1, four in le 2.
    let stalls = [700_000, 800_000, 900_000, 950_000, 1_200_000, 1_500_000, 1_700_000, 1_900_000];
    cohorts.apply(&ingest.delta(
        FRA_4G,
        &report("a1", 1, vec![series("udp", "r", &[], &[("stall_duration_us", &stalls)])]),
    ));
    let h = cohorts.histogram(&key("eu-fra", "4g", "udp", "r"), "stall_duration_us").unwrap();
    // rank 4 of 8 is the top of the le=1 bucket; rank 6 is half-way through (1, 2].
    assert_eq!(h.quantile(0.5), Some(1.0));
    assert_eq!(h.quantile(0.75), Some(1.5));
    assert_eq!(h.quantile(1.0), Some(2.0));
    assert_eq!(h.quantile(1.5), None);
    // A rank in the first bucket interpolates from 0; in +Inf it is the highest bound.
    cohorts.apply(&ingest.delta(
        FRA_4G,
        &report(
            "a1",
            2,
            vec![series("udp", "r", &[], &[("reorder_distance_packets", &[1, 1, 5000])])],
        ),
    ));
    let h =
        cohorts.histogram(&key("eu-fra", "4g", "udp", "r"), "reorder_distance_packets").unwrap();
    assert_eq!(h.quantile(0.5), Some(0.75));
    assert_eq!(h.quantile(0.99), Some(1024.0));
    let empty = cohorts.histogram(&key("eu-fra", "4g", "udp", "r"), "latency_us").unwrap();
    assert_eq!(empty.quantile(0.5), None);
}

#[test]
fn series_limit_refuses_new_cohorts_and_counts_them() {
    let mut ingest = Ingest::new();
    let limits = SeriesLimits { max_series: 2 * SERIES_PER_COHORT + 1, ..Default::default() };
    let store = SeriesStore::new(limits);
    let mut fold =
        |target: &str| {
            store.apply(&ingest.delta(
                FRA_4G,
                &report("a1", 1, vec![series("udp", target, &[("stalls", 1)], &[])]),
            ))
        };
    assert_eq!(fold("t1").cohorts_created, 1);
    assert_eq!(fold("t2").cohorts_created, 1);
    let refused = fold("t3");
    assert_eq!((refused.cohorts_refused, refused.series_folded), (1, 0));
    assert_eq!(fold("t3").cohorts_refused, 1);
    // Existing cohorts keep folding.
    assert_eq!(fold("t1").series_folded, 1);
    let cohorts = store.read();
    assert_eq!(cohorts.len(), 2);
    assert_eq!(cohorts.counter(&key("eu-fra", "4g", "udp", "t1"), "stalls"), Some(2));
    assert_eq!(cohorts.totals().cohorts_refused, 2);
    drop(cohorts);
    let text = store.render_text(&Telemetry::default());
    assert!(text.contains("stallwatch_collector_cohorts_refused_total 2\n"), "{text}");
    assert!(text.contains(&format!("stallwatch_collector_series {}\n", 2 * SERIES_PER_COHORT)));
    assert!(!text.contains("target=\"t3\""));
    assert_eq!(SeriesLimits::default().max_cohorts(), 50_000 / SERIES_PER_COHORT);
}

#[test]
fn unknown_names_are_ignored_and_counted() {
    // (Series without a transport or target label no longer reach the series: the decoder
    // refuses them, proto's `SeriesLabels`.)
    let mut ingest = Ingest::new();
    let mut cohorts = Cohorts::default();
    let mut odd = series("udp", "r", &[("stalls", 1), ("warp_factor", 9)], &[("jitter_us", &[10])]);
    odd.histograms.insert("mystery_us".into(), HistogramData::from_histogram(&hist(&[5]), 5));
    let summary = cohorts.apply(&ingest.delta(FRA_4G, &report("a1", 1, vec![odd])));
    assert_eq!(summary.series_folded, 1);
    assert_eq!((summary.unknown_counters, summary.unknown_histograms), (1, 1));
    assert_eq!(cohorts.counter(&key("eu-fra", "4g", "udp", "r"), "stalls"), Some(1));
    assert_eq!(cohorts.totals(), summary);
}

#[test]
fn series_agent_facts_come_from_the_certificate_and_keep_the_newest_window() {
    let mut ingest = Ingest::new();
    let mut cohorts = Cohorts::new(SeriesLimits { max_agents: 2, ..Default::default() });
    cohorts.apply(&ingest.delta(FRA_4G, &report("a1", 50_000, vec![])));
    let mut later = report("a1", 40_000, vec![]);
    later.report.agent_version = "0.2.0".into();
    cohorts.apply(&ingest.delta(SEA_WIFI, &later));
    let a1 = &cohorts.agents()["a1"];
    assert_eq!((a1.region.as_str(), a1.network_type.as_str()), ("us-sea", "wifi"));
    assert_eq!(a1.version, "0.2.0");
    assert_eq!(a1.last_window_end_ms, 50_000, "a backfilled older window does not move it back");
    cohorts.apply(&ingest.delta(FRA_4G, &report("a2", 1, vec![])));
    assert_eq!(cohorts.apply(&ingest.delta(FRA_4G, &report("a3", 1, vec![]))).agents_refused, 1);
    assert_eq!(cohorts.agents().len(), 2);
}

#[test]
fn series_exposition_in_both_text_formats() {
    let mut ingest = Ingest::new();
    let store = SeriesStore::default();
    store.apply(&ingest.delta(
        FRA_4G,
        &report(
            "a1",
            1_700_000_010_500,
            vec![series(
                "udp",
                "relay \"1\"",
                &[("frames_late", 3), ("play_time_ns", 9_500_000_000), ("bytes", 4096)],
                &[("first_frame_us", &[850_000]), ("burst_length_packets", &[2, 9])],
            )],
        ),
    ));
    let telemetry = Telemetry::default();
    telemetry.report_accepted();
    telemetry.report_rejected("count_mismatch");
    telemetry.observe_ingest(std::time::Duration::from_millis(3));

    let om = store.render_text(&telemetry);
    let labels =
        r#"region="eu-fra",network_type="4g",transport="udp",repair="nack",target="relay \"1\"""#;
    for line in [
        "# TYPE stallwatch_first_frame_seconds histogram",
        "# UNIT stallwatch_first_frame_seconds seconds",
        &format!("stallwatch_first_frame_seconds_bucket{{le=\"0.75\",{labels}}} 0"),
        &format!("stallwatch_first_frame_seconds_bucket{{le=\"1.0\",{labels}}} 1"),
        &format!("stallwatch_first_frame_seconds_bucket{{le=\"+Inf\",{labels}}} 1"),
        &format!("stallwatch_first_frame_seconds_sum{{{labels}}} 0.85"),
        &format!("stallwatch_loss_burst_length_packets_bucket{{le=\"16.0\",{labels}}} 2"),
        "# TYPE stallwatch_frames counter",
        &format!("stallwatch_frames_total{{{labels},result=\"late\"}} 3"),
        &format!("stallwatch_play_seconds_total{{{labels}}} 9.5"),
        &format!("stallwatch_received_bytes_total{{{labels}}} 4096"),
        "# TYPE stallwatch_agent info",
        r#"stallwatch_agent_info{agent="a1",region="eu-fra",network_type="4g",version="0.1.0"} 1"#,
        r#"stallwatch_agent_last_report_timestamp_seconds{agent="a1"} 1700000010.5"#,
        "stallwatch_collector_reports_accepted_total 1",
        r#"stallwatch_collector_reports_rejected_total{reason="count_mismatch"} 1"#,
        "stallwatch_collector_ingest_duration_seconds_count 1",
    ] {
        assert!(om.lines().any(|l| l == line), "missing {line:?} in\n{om}");
    }
    assert!(om.ends_with("# EOF\n"));
    // Families never observed are left out rather than exported empty.
    assert!(!om.contains("stallwatch_latency_seconds"));

    let prom = store.render_prometheus_text(&telemetry);
    assert!(!prom.contains("# EOF") && !prom.contains("# UNIT"));
    for line in [
        "# TYPE stallwatch_frames_total counter",
        "# TYPE stallwatch_agent_info gauge",
        "# TYPE stallwatch_first_frame_seconds histogram",
        &format!("stallwatch_frames_total{{{labels},result=\"late\"}} 3"),
    ] {
        assert!(prom.lines().any(|l| l == line), "missing {line:?} in\n{prom}");
    }
}

#[test]
fn series_native_buckets_hold_every_sample_by_its_highest_equivalent_value() {
    let mut ingest = Ingest::new();
    let mut rng = Rng(11);
    let mut values: Vec<u64> = (0..20_000).map(|_| rng.log_uniform(1.0, 6e10)).collect();
    values.extend([0, 0, 1, 2_048, 2_049, 1_000_000]);
    let h = hist(&values);
    let mut cohorts = Cohorts::default();
    for name in ["jitter_us", "reorder_distance_packets"] {
        // Twice: the buckets accumulate.
        for _ in 0..2 {
            cohorts.apply(&ingest.delta(
                FRA_4G,
                &report("a1", 1_000, vec![series("udp", "r", &[], &[(name, &values)])]),
            ));
        }
        let view = cohorts.histogram(&key("eu-fra", "4g", "udp", "r"), name).unwrap();
        let divisor = view.spec().family().unit.divisor();
        let mut expected = std::collections::BTreeMap::new();
        for &v in &values {
            let x = h.highest_equivalent(v) as f64 / divisor;
            if v > 0 {
                // The spec's formula; no sample here sits within rounding of a bound.
                *expected.entry((x.log2() * 8.0).ceil() as i32).or_insert(0u64) += 2;
            }
        }
        let native = view.native();
        let actual: std::collections::BTreeMap<i32, u64> = native.buckets().collect();
        assert_eq!(actual, expected, "{name}");
        assert_eq!(native.zero_count(), 4);
        assert_eq!(actual.values().sum::<u64>() + native.zero_count(), view.count());
        // Bounded: 1 µs .. 2^36 µs is under 290 buckets of 8 bytes.
        assert!(native.counts().len() <= 290, "{}", native.counts().len());
    }
}

#[test]
fn series_native_spans_fold_small_gaps_and_delta_encode() {
    let mut n = NativeBuckets::default();
    for (index, count) in [(5, 3), (6, 1), (9, 2), (20, 7), (-3, 4)] {
        n.add(index, count);
    }
    let (mut spans, mut deltas) = (Vec::new(), Vec::new());
    n.spans_and_deltas(&mut spans, &mut deltas);
    // -3 alone; 5, 6, (7, 8 empty), 9 in one span; 20 alone.
    assert_eq!(spans, [(-3, 1), (7, 5), (10, 1)]);
    assert_eq!(deltas, [4, -1, -2, -1, 0, 2, 5]);
    assert_eq!(n.offset(), -3);
    assert_eq!(n.counts().len(), 24);
}
