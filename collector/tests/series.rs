//! Series and export: the exposition people read (golden files), its well-formedness, and the
//! name contract with `measure/src/report.rs`.
//!
//! Regenerate the golden files after an intended change:
//! `UPDATE_GOLDEN=1 cargo test -p stallwatch-collector --test series`, then review the diff.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use stallwatch_collector::series::catalogue::{COUNTERS, HISTOGRAMS};
use stallwatch_collector::series::{Identity, SeriesStore};
use stallwatch_proto::hdr;
use stallwatch_proto::report::{
    DecodedReport, HistogramData, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series,
    decode_report, encode_report,
};

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn series(
    labels: &[(&str, &str)],
    counters: &[(&str, u64)],
    histograms: &[(&str, &[u64])],
) -> Series {
    Series {
        labels: labels.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect(),
        counters: counters.iter().map(|&(k, v)| (k.to_owned(), v)).collect(),
        histograms: histograms
            .iter()
            .map(|&(name, values)| {
                let mut h = hdr::new_histogram();
                for &v in values {
                    h.record(v).unwrap();
                }
                (name.to_owned(), HistogramData::from_histogram(&h, values.iter().sum()))
            })
            .collect(),
    }
}

fn report(agent: &str, version: &str, window_end_ms: u64, series: Vec<Series>) -> DecodedReport {
    let report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        agent: agent.into(),
        agent_version: version.into(),
        seq: 1,
        window_start_ms: window_end_ms - 10_000,
        window_end_ms,
        plan_revision: 1,
        spool_depth: 0,
        series,
    };
    decode_report(&encode_report(&report), &ReportLimits::default()).unwrap()
}

/// A small deterministic fleet: two agents in one cohort (their probes merge), one in
/// another region, one unknown counter name, and the ingest hooks used once each.
fn golden_store() -> SeriesStore {
    let store = SeriesStore::default();
    let fra = Identity { region: "eu-fra", network_type: "4g" };
    let sea = Identity { region: "us-sea", network_type: "wifi" };
    let relay = [("probe", "view"), ("transport", "quic-datagram"), ("target", "relay-fra")];
    let viewer = |stalls: u64, jitter: &[u64], first_frame: Option<u64>| {
        let mut s = series(
            &relay,
            &[
                ("packets", 3_010),
                ("bytes", 3_500_000),
                ("packets_expected", 3_000),
                ("packets_received", 2_990),
                ("packets_lost", 10),
                ("loss_bursts", 1),
                ("loss_burst_lost", 4),
                ("loss_burst_packets", 6),
                ("loss_gap_lost", 6),
                ("loss_received_then_received", 2_982),
                ("loss_received_then_lost", 8),
                ("loss_lost_then_received", 8),
                ("loss_lost_then_lost", 1),
                ("frames_rendered", 295),
                ("frames_missing", 5),
                ("frames_late", 2),
                ("stalls", stalls),
                ("stall_time_ns", stalls * 700_000_000),
                ("play_time_ns", 9_300_000_000),
            ],
            &[
                ("jitter_us", jitter),
                ("pdv_us", &[0, 800, 4_000, 12_500]),
                ("ipdv_us", &[150, 900]),
                ("burst_length_packets", &[6]),
            ],
        );
        if stalls > 0 {
            let stall = series(&[], &[], &[("stall_duration_us", &[700_000])]);
            s.histograms.extend(stall.histograms);
        }
        if let Some(ff) = first_frame {
            let phases = series(
                &[],
                &[],
                &[
                    ("first_frame_us", &[ff]),
                    ("first_frame_first_byte_us", &[ff / 4]),
                    ("first_frame_first_keyframe_us", &[ff - ff / 4]),
                ],
            );
            s.histograms.extend(phases.histograms);
        }
        s
    };
    store.fold(
        fra,
        &report(
            "fra-1",
            "0.1.0",
            1_700_000_010_000,
            vec![viewer(1, &[1_800, 2_600], Some(640_000))],
        ),
    );
    store.fold(
        fra,
        &report("fra-2", "0.1.0", 1_700_000_012_500, vec![viewer(0, &[31_000], Some(1_900_000))]),
    );
    let mut odd = viewer(0, &[900], None);
    odd.counters.insert("warp_factor".into(), 9);
    store.fold(sea, &report("sea-1", "0.2.0", 1_700_000_011_000, vec![odd]));
    store.metrics().report_accepted();
    store.metrics().report_accepted();
    store.metrics().report_accepted();
    store.metrics().report_rejected("count_mismatch");
    store.metrics().report_backfilled();
    store.metrics().observe_ingest(Duration::from_micros(2_700));
    store
}

fn check_golden(file: &str, actual: &str) {
    let path = manifest_path(&format!("tests/golden/{file}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        expected == actual,
        "{} differs from the exposition; if the change is intended, rerun with UPDATE_GOLDEN=1 \
         and review the diff. Actual:\n{actual}",
        path.display()
    );
}

#[test]
fn series_openmetrics_exposition_matches_golden_file() {
    let text = golden_store().render_text();
    check_openmetrics(&text);
    check_golden("series.openmetrics.txt", &text);
}

#[test]
fn series_prometheus_text_exposition_matches_golden_file() {
    check_golden("series.prometheus.txt", &golden_store().render_prometheus_text());
}

/// One sample line: name, labels in order, value.
fn parse_sample(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?}: {line}")),
    };
    let Some((name, rest)) = head.split_once('{') else {
        return (head.to_owned(), Vec::new(), value);
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert!(is_name(&key, false), "bad label name {key:?}: {line}");
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut val = String::new();
        loop {
            match chars.next().unwrap_or_else(|| panic!("unterminated: {line}")) {
                '\\' => match chars.next() {
                    Some('\\') => val.push('\\'),
                    Some('"') => val.push('"'),
                    Some('n') => val.push('\n'),
                    other => panic!("bad escape {other:?}: {line}"),
                },
                '"' => break,
                c => val.push(c),
            }
        }
        labels.push((key, val));
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            other => panic!("unexpected {other:?}: {line}"),
        }
    }
    assert_eq!(chars.next(), None, "{line}");
    (name.to_owned(), labels, value)
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

/// The OpenMetrics 1.0 text rules Prometheus' parser enforces, checked in-process: each
/// family declared once with all its samples together, sample names match the family's
/// type, units are the name's suffix, label names valid and unique, histogram buckets
/// cumulative with `+Inf` equal to `_count`, and `# EOF` last.
fn check_openmetrics(text: &str) {
    assert!(text.ends_with("# EOF\n"), "ends with # EOF");
    let mut seen = BTreeSet::new();
    let mut family: Option<(String, String)> = None;
    // Per histogram label set (without `le`): bucket values in order, and `_count`.
    let mut buckets: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    let mut counts: HashMap<String, f64> = HashMap::new();
    for line in text.lines().take_while(|&l| l != "# EOF") {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, arg) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
            assert!(is_name(name, true), "{line}");
            match kind {
                Some("HELP") => {
                    assert!(seen.insert(name.to_owned()), "family {name} declared twice");
                    family = Some((name.to_owned(), String::new()));
                }
                Some("TYPE") => {
                    let current = family.as_mut().expect("TYPE after HELP");
                    assert_eq!(current.0, name, "{line}");
                    assert!(["counter", "gauge", "histogram", "info"].contains(&arg), "{line}");
                    current.1 = arg.to_owned();
                }
                Some("UNIT") => {
                    assert!(
                        name.ends_with(&format!("_{arg}")),
                        "unit is the name's suffix: {line}"
                    );
                }
                _ => panic!("unexpected comment: {line}"),
            }
            continue;
        }
        let (name, labels, value) = parse_sample(line);
        let (family, kind) =
            family.as_ref().unwrap_or_else(|| panic!("sample before TYPE: {line}"));
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "gauge" => &[""],
            "info" => &["_info"],
            "histogram" => &["_bucket", "_sum", "_count"],
            other => panic!("type {other}"),
        };
        let suffix = suffixes
            .iter()
            .find(|s| name == format!("{family}{s}"))
            .unwrap_or_else(|| panic!("sample {name} outside its family {family}"));
        let names: BTreeSet<_> = labels.iter().map(|(k, _)| k).collect();
        assert_eq!(names.len(), labels.len(), "duplicate label: {line}");
        assert!(value >= 0.0, "{line}");
        if kind == "histogram" {
            let key = format!(
                "{family}{:?}",
                labels.iter().filter(|(k, _)| k != "le").collect::<Vec<_>>()
            );
            match *suffix {
                "_bucket" => {
                    let le = &labels.iter().find(|(k, _)| k == "le").expect("le").1;
                    let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
                    buckets.entry(key).or_default().push((le, value));
                }
                "_count" => {
                    counts.insert(key, value);
                }
                _ => {}
            }
        }
    }
    assert_eq!(buckets.len(), counts.len());
    for (key, b) in &buckets {
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{key}: {b:?}");
        assert_eq!(b.last().unwrap(), &(f64::INFINITY, counts[key]), "{key}");
    }
}

/// Every counter and histogram name `measure` writes (read from its source) is exported,
/// and the collector knows no name `measure` does not write.
#[test]
fn series_catalogue_maps_every_name_measure_reports() {
    let report = std::fs::read_to_string(manifest_path("../measure/src/report.rs")).unwrap();
    let receiver = std::fs::read_to_string(manifest_path("../measure/src/receiver.rs")).unwrap();

    let block = report.split("let counters").nth(1).unwrap().split(".into_iter()").next().unwrap();
    let measured: BTreeSet<&str> =
        block.lines().filter_map(|l| l.trim().strip_prefix("(\"")?.split('"').next()).collect();
    assert!(measured.len() >= 30, "parsed {measured:?}");
    let known: BTreeSet<&str> = COUNTERS.iter().map(|c| c.report).collect();
    assert_eq!(measured, known, "counter names");

    let module = report.split("pub mod histograms {").nth(1).unwrap().split("\n}").next().unwrap();
    let mut measured: BTreeSet<String> = module
        .lines()
        .filter(|l| l.contains("pub const") && !l.contains("PREFIX"))
        .map(|l| l.split('"').nth(1).unwrap().to_owned())
        .collect();
    let names =
        receiver.split("pub fn name(self)").nth(1).unwrap().split("\n    }").next().unwrap();
    let phases: Vec<&str> = names.lines().filter_map(|l| l.split('"').nth(1)).collect();
    assert_eq!(phases.len(), 5, "{phases:?}");
    measured.extend(phases.iter().map(|p| format!("first_frame_{p}_us")));
    let known: BTreeSet<String> = HISTOGRAMS.iter().map(|h| h.report.to_owned()).collect();
    assert_eq!(measured, known, "histogram names");
}

#[test]
fn series_counters_from_two_agents_add_up_in_the_exposition() {
    let text = golden_store().render_text();
    let samples: BTreeMap<String, f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (head, value) = l.rsplit_once(' ').unwrap();
            (head.to_owned(), value.parse().unwrap_or(f64::INFINITY))
        })
        .collect();
    let fra = r#"region="eu-fra",network_type="4g",transport="quic-datagram",target="relay-fra""#;
    assert_eq!(samples[&format!("stallwatch_packets_lost_total{{{fra}}}")], 20.0);
    assert_eq!(samples[&format!("stallwatch_stall_seconds_total{{{fra}}}")], 0.7);
    assert_eq!(samples[&format!("stallwatch_jitter_seconds_count{{{fra}}}")], 3.0);
    assert_eq!(samples[&format!("stallwatch_jitter_seconds_sum{{{fra}}}")], 0.0354);
    assert_eq!(samples["stallwatch_collector_report_names_ignored_total{kind=\"counter\"}"], 1.0);
}
