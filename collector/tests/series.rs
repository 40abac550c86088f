//! Series and export: the exposition people read (golden files), its well-formedness, and
//! that it exports the whole metric catalogue (`stallwatch_proto::catalogue`) as the
//! committed family list and `docs/metrics.md` say.
//!
//! Regenerate the golden files after an intended change:
//! `UPDATE_GOLDEN=1 cargo test -p stallwatch-collector --test series`, then review the diff.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use stallwatch_collector::pki::{AgentIdentity, Ca, VerifiedAgent};
use stallwatch_collector::series::{Exposition, SeriesLimits, SeriesStore};
use stallwatch_collector::store::{HistoryStore, IngestItem, Outcome, SqliteStore, report_digest};
use stallwatch_collector::telemetry::Telemetry;
use stallwatch_proto::catalogue::{self, Counter, CounterUnit, Histogram, Kind};
use stallwatch_proto::hdr;
use stallwatch_proto::report::{
    DecodedReport, HistogramData, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series,
    SeriesLabels, decode_report, encode_report,
};
use stallwatch_proto::{Repair, Role, Transport};

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// An agent's certificate region and network type.
type Who = (&'static str, &'static str);

/// The collector's ingest path without the network: agents with certificates from the test's
/// own CA, verified as the listener verifies them; a history store in a temp dir; each batch
/// committed and its delta added to the series; the collector's own telemetry beside them.
struct Collector {
    dir: PathBuf,
    ca: Ca,
    agents: HashMap<(String, Who), VerifiedAgent>,
    history: SqliteStore,
    series: SeriesStore,
    telemetry: Telemetry,
    /// Holds `dir`; last, so the store closes before it goes.
    _scratch: tempfile::TempDir,
}

impl Collector {
    fn new(tag: &str, limits: SeriesLimits) -> Self {
        let scratch = stallwatch_tests::scratch_dir(tag);
        let dir = scratch.path().to_path_buf();
        let ca = Ca::init(&dir.join("ca"), Self::now(), false).unwrap();
        let history = SqliteStore::open(dir.join("history.sqlite")).unwrap();
        let series = SeriesStore::new(limits);
        Collector {
            dir,
            ca,
            agents: HashMap::new(),
            history,
            series,
            telemetry: Telemetry::default(),
            _scratch: scratch,
        }
    }

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    /// Commits one batch, each report received when its window ends and sent by the agent it
    /// names, of `who`; adds the delta to the series. The outcomes.
    fn ingest(&mut self, batch: &[(Who, &DecodedReport)]) -> Vec<Outcome> {
        for (who, r) in batch {
            let key = (r.report.agent.clone(), *who);
            if !self.agents.contains_key(&key) {
                let identity = AgentIdentity::new(&r.report.agent, who.0, who.1).unwrap();
                let agent = VerifiedAgent::issue_and_verify(&self.ca, &identity, Self::now());
                self.agents.insert(key, agent.unwrap());
            }
        }
        let items: Vec<IngestItem<'_>> = batch
            .iter()
            .map(|(who, r)| IngestItem {
                agent: &self.agents[&(r.report.agent.clone(), *who)],
                report: r,
                received_unix_ms: r.report.window_end_ms,
                digest: report_digest(&encode_report(&r.report)),
            })
            .collect();
        let committed = self.history.commit(&items).unwrap();
        self.series.apply(&committed.delta);
        committed.outcomes
    }

    /// Commits one report, which must be new.
    fn ingest_one(&mut self, who: Who, report: &DecodedReport) {
        assert_eq!(self.ingest(&[(who, report)]), [Outcome::Stored]);
    }

    fn render(&self, format: Exposition) -> Vec<u8> {
        self.series.render(format, &self.telemetry)
    }

    fn render_text(&self) -> String {
        self.series.render_text(&self.telemetry)
    }

    fn render_prometheus_text(&self) -> String {
        self.series.render_prometheus_text(&self.telemetry)
    }
}

/// A viewer's labels; `repair: None` as from an agent older than the label.
fn labels(probe: &str, transport: Transport, repair: Option<Repair>, target: &str) -> SeriesLabels {
    SeriesLabels {
        probe: probe.into(),
        repair,
        role: Role::Viewer,
        target: target.into(),
        transport,
    }
}

fn series(
    labels: &SeriesLabels,
    counters: &[(&str, u64)],
    histograms: &[(&str, &[u64])],
) -> Series {
    Series {
        labels: labels.clone(),
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
fn golden_store() -> Collector {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let tag = format!("golden-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut store = Collector::new(&tag, SeriesLimits::default());
    let fra: Who = ("eu-fra", "4g");
    let sea: Who = ("us-sea", "wifi");
    let relay = labels("view", Transport::QuicDatagram, Some(Repair::Nack), "relay-fra");
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
            let stall = series(&relay, &[], &[("stall_duration_us", &[700_000])]);
            s.histograms.extend(stall.histograms);
        }
        if let Some(ff) = first_frame {
            let phases = series(
                &relay,
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
    store.ingest_one(
        fra,
        &report(
            "fra-1",
            "0.1.0",
            1_700_000_010_000,
            vec![viewer(1, &[1_800, 2_600], Some(640_000))],
        ),
    );
    store.ingest_one(
        fra,
        &report("fra-2", "0.1.0", 1_700_000_012_500, vec![viewer(0, &[31_000], Some(1_900_000))]),
    );
    let mut odd = viewer(0, &[900], None);
    odd.counters.insert("warp_factor".into(), 9);
    store.ingest_one(sea, &report("sea-1", "0.2.0", 1_700_000_011_000, vec![odd]));
    let telemetry = &store.telemetry;
    telemetry.report_accepted();
    telemetry.report_accepted();
    telemetry.report_accepted();
    telemetry.report_rejected("count_mismatch");
    telemetry.report_backfilled();
    telemetry.observe_ingest(Duration::from_micros(2_700));
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
type Sample = (String, Vec<(String, String)>, f64);

/// Parses one sample line.
fn parse_sample(line: &str) -> Sample {
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

/// A store in which every catalogue counter and histogram was reported once, by one agent,
/// each counter with its own value (`1_000 + index`) and each histogram with one value.
fn every_metric_store() -> Collector {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let tag = format!("every-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut store = Collector::new(&tag, SeriesLimits::default());
    let counters: Vec<(&str, u64)> =
        Counter::ALL.iter().map(|c| (c.report_name(), 1_000 + c.index() as u64)).collect();
    let histograms: Vec<(&str, &[u64])> =
        Histogram::ALL.iter().map(|h| (h.report_name(), &[7_000][..])).collect();
    let all = series(&labels("p", Transport::Udp, Some(Repair::None), "r"), &counters, &histograms);
    store.ingest_one(("eu-fra", "4g"), &report("fra-1", "0.1.0", 1_700_000_010_000, vec![all]));
    store
}

/// Every counter and histogram the catalogue has (so every one `measure` and the agent can
/// emit: they name metrics only by its variants) is exported in its family, under the
/// family's exported name, with its own labels and its own value.
#[test]
fn series_every_catalogue_metric_is_exported_in_its_family() {
    let text = every_metric_store().render_text();
    check_openmetrics(&text);
    let samples: Vec<Sample> =
        text.lines().filter(|l| !l.starts_with('#')).map(parse_sample).collect();
    let find = |name: &str, extra: &[(&str, &str)]| -> Vec<f64> {
        samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && labels.len() == 5 + extra.len()
                    && extra.iter().all(|&(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|&(_, _, v)| v)
            .collect()
    };
    for counter in Counter::ALL {
        let family = counter.family();
        let value = (1_000 + counter.index() as u64) as f64;
        let expected = match family.unit {
            CounterUnit::NanosAsSeconds => value / 1e9,
            CounterUnit::Count | CounterUnit::Bytes => value,
        };
        assert_eq!(
            find(&counter.exported_name(), counter.labels()),
            [expected],
            "{} as {}",
            counter.report_name(),
            counter.exported_name()
        );
        assert!(text.contains(&format!(
            "# HELP {} {}\n",
            exported_family(&text, family.name),
            family.help
        )));
    }
    for histogram in Histogram::ALL {
        let name = histogram.exported_name();
        let count = find(&format!("{name}_count"), histogram.labels());
        assert_eq!(count, [1.0], "{} as {name}", histogram.report_name());
        let mut extra = histogram.labels().to_vec();
        extra.push(("le", "+Inf"));
        assert_eq!(find(&format!("{name}_bucket"), &extra), [1.0], "{}", histogram.report_name());
        let buckets = samples
            .iter()
            .filter(|(n, labels, _)| {
                *n == format!("{name}_bucket")
                    && histogram
                        .labels()
                        .iter()
                        .all(|&(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .count();
        assert_eq!(buckets, histogram.family().bounds.len() + 1, "{}", histogram.report_name());
        assert!(text.contains(&format!("# HELP {name} {}\n", histogram.family().help)));
    }
}

/// The OpenMetrics family name (a counter's `# TYPE` name has no `_total`) of an exported
/// family whose name without its unit is `base`.
fn exported_family(text: &str, base: &str) -> String {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .find(|n| {
            *n == base || n.strip_prefix(base).is_some_and(|u| u == "_bytes" || u == "_seconds")
        })
        .unwrap_or_else(|| panic!("no family {base}"))
        .to_owned()
}

/// Every family the collector exports (with every catalogue metric observed), with its type,
/// against a committed list: renaming or dropping a family is a visible diff.
#[test]
fn series_exported_families_match_the_committed_list() {
    let text = every_metric_store().render_text();
    let families: String =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| format!("{l}\n")).collect();
    check_golden("families.txt", &families);
    // Each catalogue family is among them.
    for family in Counter::families() {
        assert!(families.contains(&format!("{} counter\n", exported_family(&text, family.name))));
    }
    for family in Histogram::families() {
        assert!(families.contains(&format!("{} histogram\n", family.exported_name())));
    }
}

/// `docs/metrics.md`'s catalogue table, as the catalogue writes it.
fn catalogue_table() -> String {
    let mut out = String::from("| family | type | report names | help |\n|---|---|---|---|\n");
    let members = |report_names: Vec<(&str, &[(&str, &str)])>| -> String {
        report_names
            .iter()
            .map(|(name, labels)| {
                if labels.is_empty() {
                    format!("`{name}`")
                } else {
                    let labels: Vec<String> =
                        labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                    format!("`{name}` `{{{}}}`", labels.join(","))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for family in Histogram::families() {
        let names = Histogram::ALL
            .iter()
            .filter(|h| h.family() == family)
            .map(|h| (h.report_name(), h.labels()))
            .collect();
        let row = (family.exported_name(), "histogram", members(names), family.help);
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", row.0, row.1, row.2, row.3));
    }
    for family in Counter::families() {
        let names = Counter::ALL
            .iter()
            .filter(|c| c.family() == family)
            .map(|c| (c.report_name(), c.labels()))
            .collect();
        let row = (family.exported_name(), "counter", members(names), family.help);
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", row.0, row.1, row.2, row.3));
    }
    out
}

/// `docs/metrics.md` lists the whole catalogue in one table, and every other table that maps
/// report names to families (`| report name | family | ...`) agrees with the catalogue.
#[test]
fn series_docs_metric_tables_match_the_catalogue() {
    let docs = std::fs::read_to_string(manifest_path("../docs/metrics.md")).unwrap();
    let table = catalogue_table();
    assert!(
        docs.contains(&table),
        "docs/metrics.md must hold the catalogue table exactly as the catalogue writes it:\n{table}"
    );
    let mut rows = 0;
    let mut in_table = false;
    for line in docs.lines() {
        if line.starts_with("| report name | family |") {
            in_table = true;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let Some(row) = line.strip_prefix("| ") else {
            in_table = false;
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let report = cells[0].trim_matches('`');
        let family = cells[1].split('`').nth(1).unwrap();
        let metric = catalogue::Metric::from_report_name(report)
            .unwrap_or_else(|| panic!("docs/metrics.md: {report:?} is not in the catalogue"));
        assert_eq!(family, metric.exported_name(), "docs/metrics.md: family of {report}");
        let kind = if cells[1].contains("(histogram") { Kind::Histogram } else { Kind::Counter };
        assert_eq!(kind, metric.kind(), "docs/metrics.md: kind of {report}");
        rows += 1;
    }
    assert!(rows >= 13, "{rows} rows in report-name tables");
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
    let fra = r#"region="eu-fra",network_type="4g",transport="quic-datagram",repair="nack",target="relay-fra""#;
    assert_eq!(samples[&format!("stallwatch_packets_lost_total{{{fra}}}")], 20.0);
    assert_eq!(samples[&format!("stallwatch_stall_seconds_total{{{fra}}}")], 0.7);
    assert_eq!(samples[&format!("stallwatch_jitter_seconds_count{{{fra}}}")], 3.0);
    assert_eq!(samples[&format!("stallwatch_jitter_seconds_sum{{{fra}}}")], 0.0354);
    assert_eq!(samples["stallwatch_collector_report_names_ignored_total{kind=\"counter\"}"], 1.0);
}

// ---------------------------------------------------------------------------------------
// Protobuf exposition: an independent decoder of `io.prometheus.client.MetricFamily`.

/// A decoded `MetricFamily`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Family {
    name: String,
    help: String,
    kind: u64,
    metrics: Vec<Metric>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Metric {
    labels: Vec<(String, String)>,
    counter: Option<f64>,
    gauge: Option<f64>,
    histogram: Option<Hist>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Hist {
    count: u64,
    sum: f64,
    /// (upper bound, cumulative count)
    buckets: Vec<(f64, u64)>,
    schema: Option<i64>,
    zero_threshold: f64,
    zero_count: u64,
    spans: Vec<(i64, u64)>,
    deltas: Vec<i64>,
}

impl Hist {
    /// Native buckets as absolute `index -> count` (non-empty only).
    fn native(&self) -> BTreeMap<i64, u64> {
        let mut out = BTreeMap::new();
        let mut deltas = self.deltas.iter();
        let mut index = 0i64;
        let mut count = 0i64;
        for (i, &(offset, length)) in self.spans.iter().enumerate() {
            // The first offset is absolute, later ones are gaps after the previous span.
            let _ = i;
            index += offset;
            for _ in 0..length {
                count += deltas.next().expect("a delta per bucket");
                assert!(count >= 0, "bucket count below zero");
                if count > 0 {
                    out.insert(index, count as u64);
                }
                index += 1;
            }
        }
        assert!(deltas.next().is_none(), "as many deltas as span buckets");
        out
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.buf.is_empty()
    }
    fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first().expect("truncated varint");
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
        }
        panic!("varint too long")
    }
    fn bytes(&mut self) -> &'a [u8] {
        let len = self.varint() as usize;
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        head
    }
    fn fixed64(&mut self) -> f64 {
        let (head, rest) = self.buf.split_at(8);
        self.buf = rest;
        f64::from_le_bytes(head.try_into().unwrap())
    }
    /// (field, wire type)
    fn key(&mut self) -> (u64, u64) {
        let k = self.varint();
        (k >> 3, k & 7)
    }
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn decode_families(mut bytes: &[u8]) -> Vec<Family> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let mut r = Reader { buf: bytes };
        let body = r.bytes();
        bytes = r.buf;
        out.push(decode_family(body));
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn decode_family(body: &[u8]) -> Family {
    let mut f = Family::default();
    let mut r = Reader { buf: body };
    while !r.done() {
        match r.key() {
            (1, 2) => f.name = text(r.bytes()),
            (2, 2) => f.help = text(r.bytes()),
            (3, 0) => f.kind = r.varint(),
            (4, 2) => f.metrics.push(decode_metric(r.bytes())),
            other => panic!("unexpected MetricFamily field {other:?}"),
        }
    }
    f
}

fn decode_metric(body: &[u8]) -> Metric {
    let mut m = Metric::default();
    let mut r = Reader { buf: body };
    let single_double = |b: &[u8]| {
        let mut r = Reader { buf: b };
        let mut v = 0.0;
        while !r.done() {
            match r.key() {
                (1, 1) => v = r.fixed64(),
                other => panic!("unexpected value field {other:?}"),
            }
        }
        v
    };
    while !r.done() {
        match r.key() {
            (1, 2) => {
                let mut l = Reader { buf: r.bytes() };
                let (mut name, mut value) = (String::new(), String::new());
                while !l.done() {
                    match l.key() {
                        (1, 2) => name = text(l.bytes()),
                        (2, 2) => value = text(l.bytes()),
                        other => panic!("unexpected LabelPair field {other:?}"),
                    }
                }
                m.labels.push((name, value));
            }
            (2, 2) => m.gauge = Some(single_double(r.bytes())),
            (3, 2) => m.counter = Some(single_double(r.bytes())),
            (7, 2) => m.histogram = Some(decode_histogram(r.bytes())),
            other => panic!("unexpected Metric field {other:?}"),
        }
    }
    m
}

fn decode_histogram(body: &[u8]) -> Hist {
    let mut h = Hist::default();
    let mut r = Reader { buf: body };
    while !r.done() {
        match r.key() {
            (1, 0) => h.count = r.varint(),
            (2, 1) => h.sum = r.fixed64(),
            (3, 2) => {
                let mut b = Reader { buf: r.bytes() };
                let (mut cumulative, mut upper) = (0, f64::NAN);
                while !b.done() {
                    match b.key() {
                        (1, 0) => cumulative = b.varint(),
                        (2, 1) => upper = b.fixed64(),
                        other => panic!("unexpected Bucket field {other:?}"),
                    }
                }
                h.buckets.push((upper, cumulative));
            }
            (5, 0) => h.schema = Some(unzigzag(r.varint())),
            (6, 1) => h.zero_threshold = r.fixed64(),
            (7, 0) => h.zero_count = r.varint(),
            (12, 2) => {
                let mut s = Reader { buf: r.bytes() };
                let (mut offset, mut length) = (0, 0);
                while !s.done() {
                    match s.key() {
                        (1, 0) => offset = unzigzag(s.varint()),
                        (2, 0) => length = s.varint(),
                        other => panic!("unexpected BucketSpan field {other:?}"),
                    }
                }
                h.spans.push((offset, length));
            }
            (13, 2) => {
                let mut d = Reader { buf: r.bytes() };
                while !d.done() {
                    h.deltas.push(unzigzag(d.varint()));
                }
            }
            (13, 0) => h.deltas.push(unzigzag(r.varint())),
            other => panic!("unexpected Histogram field {other:?}"),
        }
    }
    h
}

type Samples = BTreeMap<(String, BTreeSet<(String, String)>), f64>;

/// The samples a Prometheus server makes of a protobuf scrape *without* native histograms:
/// counters and gauges under the family name, histograms as `_bucket` (with `+Inf` from the
/// count when absent), `_sum` and `_count`.
fn protobuf_samples(families: &[Family]) -> Samples {
    let mut out = Samples::new();
    for f in families {
        for m in &f.metrics {
            let labels: BTreeSet<_> = m.labels.iter().cloned().collect();
            let mut put = |name: String, labels: BTreeSet<(String, String)>, v: f64| {
                assert!(out.insert((name.clone(), labels), v).is_none(), "duplicate {name}");
            };
            match f.kind {
                0 => put(f.name.clone(), labels, m.counter.expect("counter value")),
                1 => put(f.name.clone(), labels, m.gauge.expect("gauge value")),
                4 => {
                    let h = m.histogram.as_ref().expect("histogram value");
                    let mut buckets = h.buckets.clone();
                    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
                        buckets.push((f64::INFINITY, h.count));
                    }
                    for (upper, n) in buckets {
                        let mut l = labels.clone();
                        let le =
                            if upper.is_infinite() { "+Inf".into() } else { upper.to_string() };
                        l.insert(("le".into(), le));
                        put(format!("{}_bucket", f.name), l, n as f64);
                    }
                    put(format!("{}_sum", f.name), labels.clone(), h.sum);
                    put(format!("{}_count", f.name), labels, h.count as f64);
                }
                other => panic!("unexpected type {other} of {}", f.name),
            }
        }
    }
    out
}

/// The samples of a Prometheus 0.0.4 text exposition, `le` values normalised.
fn text_samples(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, labels, value) = parse_sample(line);
        let labels = labels
            .into_iter()
            .map(|(k, v)| {
                if k == "le" && v != "+Inf" {
                    let v = v.parse::<f64>().unwrap().to_string();
                    (k, v)
                } else {
                    (k, v)
                }
            })
            .collect();
        assert!(out.insert((name, labels), value).is_none(), "duplicate: {line}");
    }
    out
}

/// HELP and TYPE per family of a Prometheus 0.0.4 text exposition.
fn text_families(text: &str) -> BTreeMap<String, (String, String)> {
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            out.entry(name.into()).or_default().0 = help.into();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.into()).or_default().1 = kind.into();
        }
    }
    out
}

#[test]
fn series_protobuf_carries_every_family_and_sample_of_the_text_formats() {
    let store = golden_store();
    let families = decode_families(&store.render(Exposition::Protobuf));
    let text = store.render_prometheus_text();
    assert_eq!(protobuf_samples(&families), text_samples(&text));
    // Names, help and types agree too (families without samples are left out of protobuf).
    let declared = text_families(&text);
    for f in &families {
        let (help, kind) = &declared[&f.name];
        assert_eq!(&f.help, help, "{}", f.name);
        let kind = match kind.as_str() {
            "counter" => 0,
            "gauge" => 1,
            "histogram" => 4,
            other => panic!("{other}"),
        };
        assert_eq!(f.kind, kind, "{}", f.name);
        let text_has_samples = text.lines().any(|l| !l.starts_with('#') && l.starts_with(&f.name));
        assert!(text_has_samples, "{}", f.name);
    }
    // Every cohort histogram is native as well; the collector's own histogram is classic.
    for f in families.iter().filter(|f| f.kind == 4) {
        for m in &f.metrics {
            let h = m.histogram.as_ref().unwrap();
            if f.name.starts_with("stallwatch_collector_") {
                assert_eq!(h.schema, None, "{}", f.name);
                continue;
            }
            assert_eq!(h.schema, Some(3), "{}", f.name);
            assert_eq!(h.zero_threshold, 2f64.powi(-128));
            let native_total: u64 = h.native().values().sum::<u64>() + h.zero_count;
            assert_eq!(native_total, h.count, "{} {:?}", f.name, m.labels);
        }
    }
    // The text formats are unchanged by the protobuf path.
    assert_eq!(store.render(Exposition::PrometheusText), text.into_bytes());
    assert_eq!(store.render(Exposition::OpenMetrics), store.render_text().into_bytes());
}

#[test]
fn series_protobuf_matches_golden_file() {
    // Binary golden file: also what the manual Prometheus check served (BENCHMARKS.md).
    let bytes = golden_store().render(Exposition::Protobuf);
    let path = manifest_path("tests/golden/series.protobuf.bin");
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &bytes).unwrap();
        return;
    }
    let expected = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    assert!(expected == bytes, "{} differs; rerun with UPDATE_GOLDEN=1", path.display());
}

/// Native bucket of a positive value by the spec's formula, independently of the
/// implementation's table: the `k` with `2^((k-1)/8) < x <= 2^(k/8)`.
fn spec_index(x: f64) -> i64 {
    (x.log2() * 8.0).ceil() as i64
}

#[test]
fn series_native_buckets_follow_the_prometheus_spec() {
    // Values far from any bound (the formula's rounding cannot matter) and values exactly on
    // a bound: 2^k µs-to-seconds conversions that are exact, and powers of two in packets.
    let mut jitter_us: Vec<u64> = vec![1, 3, 700, 1_000, 1_500, 12_345, 49_000, 2_999_999];
    let bound_us = [15_625u64, 31_250, 62_500, 125_000, 250_000, 500_000, 1_000_000, 2_000_000];
    jitter_us.extend(bound_us);
    jitter_us.push(0);
    let packets = [1u64, 2, 3, 4, 5, 8, 11, 12, 16, 1_024, 1_025];
    let mut store = Collector::new("native-spec", SeriesLimits::default());
    let fra: Who = ("eu-fra", "4g");
    let labels = labels("p", Transport::Udp, None, "r");
    store.ingest_one(
        fra,
        &report(
            "a1",
            "0.1.0",
            1_700_000_010_000,
            vec![series(
                &labels,
                &[],
                &[("jitter_us", &jitter_us), ("reorder_distance_packets", &packets)],
            )],
        ),
    );
    let families = decode_families(&store.render(Exposition::Protobuf));
    let native = |family: &str| {
        let f = families.iter().find(|f| f.name == family).unwrap();
        f.metrics[0].histogram.clone().unwrap()
    };

    // Each value is placed by its HDR bucket's highest equivalent value, as the classic
    // buckets are: exact below 2048 µs, above that up to 1/1024 higher, so a value exactly
    // on a bound (all of which are >= 15,625 µs here) lands one bucket up.
    let h = {
        let mut h = hdr::new_histogram();
        for &v in &jitter_us {
            h.record(v).unwrap();
        }
        h
    };
    let jitter = native("stallwatch_jitter_seconds");
    let mut expected = BTreeMap::new();
    for &v in &jitter_us {
        if v > 0 {
            *expected.entry(spec_index(h.highest_equivalent(v) as f64 / 1e6)).or_insert(0u64) += 1;
        }
    }
    assert_eq!(jitter.native(), expected);
    assert_eq!(jitter.zero_count, 1);
    for (v, index) in bound_us.iter().zip([-48i64, -40, -32, -24, -16, -8, 0, 8]) {
        assert_eq!(spec_index(*v as f64 / 1e6), index, "{v} µs is the top of bucket {index}");
        assert!(jitter.native().contains_key(&(index + 1)), "{v} µs (HDR) in bucket {index} + 1");
    }
    // HDR-exact values: 1 µs and 700 µs.
    assert!(jitter.native().contains_key(&spec_index(1e-6)));
    assert!(jitter.native().contains_key(&spec_index(700e-6)));
    // A value just above a bound goes one bucket up.
    assert_eq!(stallwatch_collector::series::native::bucket_index(1.000_001), 1);
    assert_eq!(stallwatch_collector::series::native::bucket_index(1.0), 0);
    assert_eq!(stallwatch_collector::series::native::bucket_index(0.999_999), 0);

    let reorder = native("stallwatch_reorder_distance_packets");
    let mut expected = BTreeMap::new();
    for &v in &packets {
        *expected.entry(spec_index(v as f64)).or_insert(0u64) += 1;
    }
    // 1 -> 0, 2 -> 8, 4 -> 16, 8 -> 24, 16 -> 32, 1024 -> 80: powers of two are upper bounds.
    for (v, index) in [(1u64, 0i64), (2, 8), (4, 16), (8, 24), (16, 32), (1_024, 80)] {
        assert_eq!(spec_index(v as f64), index);
    }
    assert_eq!(reorder.native(), expected);
    assert_eq!(reorder.count, packets.len() as u64);
}

#[test]
fn series_native_bounds_match_the_spec_for_every_index() {
    use stallwatch_collector::series::native::{bucket_index, bucket_upper_bound};
    for index in -200..300 {
        let upper = bucket_upper_bound(index);
        let exact = 2f64.powf(index as f64 / 8.0);
        assert!((upper - exact).abs() <= exact * 4.0 * f64::EPSILON, "{index}: {upper} {exact}");
        // The bound is in its own bucket, the next float above it in the next one.
        assert_eq!(bucket_index(upper), index);
        assert_eq!(bucket_index(upper.next_up()), index + 1);
    }
}

/// Accept headers captured on the wire from Prometheus 2.42.0 (Debian 2.42.0+ds-5+deb12u1)
/// with and without `--enable-feature=native-histograms` (see BENCHMARKS.md); curl sends
/// `*/*`.
const PROMETHEUS_2_42_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROMETHEUS_2_42_CLASSIC: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[test]
fn series_negotiates_real_accept_headers() {
    use stallwatch_collector::series::negotiate;
    assert_eq!(negotiate(Some(PROMETHEUS_2_42_NATIVE)), Exposition::Protobuf);
    assert_eq!(negotiate(Some(PROMETHEUS_2_42_CLASSIC)), Exposition::OpenMetrics);
    // Later Prometheus versions rank protobuf below 1 but still first.
    assert_eq!(
        negotiate(Some(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        )),
        Exposition::Protobuf
    );
    assert_eq!(negotiate(Some("*/*")), Exposition::PrometheusText, "curl");
    assert_eq!(negotiate(None), Exposition::PrometheusText);
    assert_eq!(negotiate(Some("")), Exposition::PrometheusText);
    // Browsers: text/html is not offered, */* matches text.
    assert_eq!(
        negotiate(Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")),
        Exposition::PrometheusText
    );
    // q-values decide, not order; q=0 refuses; equal q: the first listed.
    assert_eq!(
        negotiate(Some("text/plain;q=0.9, application/openmetrics-text; version=1.0.0")),
        Exposition::OpenMetrics
    );
    assert_eq!(
        negotiate(Some("application/openmetrics-text;q=0.5,text/plain;version=0.0.4;q=0.6")),
        Exposition::PrometheusText
    );
    assert_eq!(
        negotiate(Some(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0,text/plain"
        )),
        Exposition::PrometheusText
    );
    assert_eq!(
        negotiate(Some("application/openmetrics-text, text/plain")),
        Exposition::OpenMetrics
    );
    // Protobuf only as length-delimited MetricFamily; case and spaces do not matter.
    assert_eq!(
        negotiate(Some(
            "Application/Vnd.Google.Protobuf; proto=\"io.prometheus.client.MetricFamily\"; encoding=delimited"
        )),
        Exposition::Protobuf
    );
    for other in [
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily",
        "application/vnd.google.protobuf;proto=other.Thing;encoding=delimited",
        "application/openmetrics-text;version=0.0.1",
        "text/plain;version=0.0.3",
        "application/json",
    ] {
        assert_eq!(negotiate(Some(other)), Exposition::PrometheusText, "{other}");
    }
    assert_eq!(
        Exposition::Protobuf.content_type(),
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
    );
    assert_eq!(
        Exposition::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        Exposition::PrometheusText.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

/// xorshift64*, in `lo..hi`.
fn rng(seed: u64) -> impl FnMut(u64, u64) -> u64 {
    let mut x = seed;
    move |lo: u64, hi: u64| {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        lo + x.wrapping_mul(0x2545_f491_4f6c_dd1d) % (hi - lo)
    }
}

#[test]
fn series_restored_from_history_render_exactly_as_the_series_that_ingested_it() {
    use stallwatch_collector::series::SERIES_PER_COHORT;
    use stallwatch_collector::store::Resolution;

    // 30 reports from 3 agents over 4 cohorts and three hours, with every kind of figure.
    let fra: Who = ("eu-fra", "4g");
    let sea: Who = ("us-sea", "wifi");
    let start = 1_700_000_000_000u64 - 1_700_000_000_000 % 3_600_000;
    let mut next = rng(0x1234_5678_9abc_def0);
    let mut reports = Vec::new();
    for i in 0..30u64 {
        let (agent, who) = match i % 3 {
            0 => ("fra-1", fra),
            1 => ("fra-2", fra),
            _ => ("sea-1", sea),
        };
        let jitter: Vec<u64> = (0..50).map(|_| next(0, 80_000)).collect();
        let pdv: Vec<u64> = (0..20).map(|_| next(1, 3_000_000)).collect();
        let stalls: Vec<u64> = (0..(i % 2)).map(|_| next(500_001, 9_000_000)).collect();
        let reorder: Vec<u64> = (0..5).map(|_| next(1, 3_000)).collect();
        let target = if i % 5 == 0 { "relay-b" } else { "relay-a" };
        let s = series(
            &labels("v", Transport::Udp, None, target),
            &[("packets", next(1, 5_000)), ("stall_time_ns", next(0, 2_000_000_000))],
            &[
                ("jitter_us", &jitter),
                ("pdv_us", &pdv),
                ("stall_duration_us", &stalls),
                ("reorder_distance_packets", &reorder),
            ],
        );
        // Spread over three hours: minutes within each.
        let end = start + (i % 3) * 3_600_000 + i * 61_000 + 10_000;
        let mut r = report(agent, "0.1.0", end, vec![s]);
        r.report.seq = i + 1;
        reports.push((who, r));
    }

    let mut live = Collector::new("restore", SeriesLimits::default());
    for batch in reports.chunks(7) {
        let batch: Vec<(Who, &DecodedReport)> = batch.iter().map(|(w, r)| (*w, r)).collect();
        assert!(live.ingest(&batch).iter().all(|o| *o == Outcome::Stored));
    }
    // The first two hours become hour rows; the third stays in minutes.
    live.history.downsample(start + 2 * 3_600_000).unwrap();
    let all = stallwatch_collector::store::CohortFilter::default();
    let hours = live.history.rows(Resolution::Hour, 0..u64::MAX, &all).unwrap();
    let minutes = live.history.rows(Resolution::Minute, 0..u64::MAX, &all).unwrap();
    assert!(!hours.is_empty() && !minutes.is_empty(), "{} {}", hours.len(), minutes.len());

    // A restart: the same history replayed into empty series renders the same, except the
    // collector's own ingest counts, which are this process's (restored: none refused).
    let restored = SeriesStore::default();
    let stats = live.history.replay(0, &mut |delta| {
        restored.apply(&delta);
    });
    // Two regions by two targets.
    assert_eq!(stats.unwrap().cohorts, 4);
    let telemetry = &live.telemetry;
    assert_eq!(
        restored.render_prometheus_text(telemetry),
        live.series.render_prometheus_text(telemetry)
    );
    assert_eq!(restored.render_text(telemetry), live.series.render_text(telemetry));
    assert_eq!(
        restored.render(Exposition::Protobuf, telemetry),
        live.series.render(Exposition::Protobuf, telemetry)
    );
    assert_eq!(restored.read().agents(), live.series.read().agents());

    // Replay respects the series limit: one cohort fits, the others are refused.
    let small =
        SeriesStore::new(SeriesLimits { max_series: SERIES_PER_COHORT, ..Default::default() });
    let stats = live.history.replay(0, &mut |delta| {
        small.apply(&delta);
    });
    assert_eq!((stats.unwrap().cohorts, small.read().len()), (4, 1));

    // A corrupt stored histogram leaves its minute of its cohort out, counters included, and
    // nothing else.
    let db = live.dir.join("history.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rowid, row_start): (i64, i64) = conn
        .query_row(
            "SELECT h.rowid, h.start_unix_ms FROM histograms h JOIN cohorts c ON c.id = h.cohort
             WHERE h.resolution_ms = 60000 AND c.region = 'us-sea' AND c.target = 'relay-a'
               AND h.metric = 'jitter_us'
             ORDER BY h.start_unix_ms LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    conn.execute("UPDATE histograms SET hdr = x'1c849314' WHERE rowid = ?1", [rowid]).unwrap();
    let lost: u64 = conn
        .query_row(
            "SELECT sum(k.value) FROM counters k JOIN cohorts c ON c.id = k.cohort
             WHERE k.resolution_ms = 60000 AND k.start_unix_ms = ?1 AND c.region = 'us-sea'
               AND c.target = 'relay-a'
               AND k.name = 'packets'",
            [row_start],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let after = SeriesStore::default();
    live.history
        .replay(0, &mut |delta| {
            after.apply(&delta);
        })
        .unwrap();
    // The third hour, still in minutes, is sea-1's.
    let cohort = stallwatch_collector::series::Cohort::new("us-sea", "wifi", "udp", "relay-a");
    let (before, now) = (live.series.read(), after.read());
    assert!(lost > 0);
    assert_eq!(
        now.counter(&cohort, "packets").unwrap() + lost,
        before.counter(&cohort, "packets").unwrap()
    );
    let other = stallwatch_collector::series::Cohort::new("eu-fra", "4g", "udp", "relay-a");
    assert_eq!(now.counter(&other, "packets"), before.counter(&other, "packets"));
}

#[test]
fn series_do_not_depend_on_how_reports_were_batched() {
    use stallwatch_collector::series::SERIES_PER_COHORT;
    use stallwatch_collector::store::MAX_REPORT_VALUE;

    let fra: Who = ("eu-fra", "4g");
    let sea: Who = ("us-sea", "wifi");
    let start = 1_700_000_000_000u64 - 1_700_000_000_000 % 3_600_000;
    let mut next = rng(0x0bad_5eed_1234_5678);
    // 40 reports over 6 cohorts (2 regions x 3 targets; a 2-cohort limit refuses 4) and two
    // minutes, each with a name outside the catalogue; every 7th repeats the one before it
    // (a resent report) and every 11th carries a counter the store refuses.
    let mut items: Vec<(Who, DecodedReport)> = Vec::new();
    for i in 0..40u64 {
        if i % 7 == 6 {
            let again = items.last().unwrap().clone();
            items.push(again);
            continue;
        }
        let (agent, who) = if i % 2 == 0 { ("fra-1", fra) } else { ("sea-1", sea) };
        let jitter: Vec<u64> = (0..200).map(|_| next(1, 90_000)).collect();
        let first_frame: Vec<u64> = (0..(i % 3)).map(|_| next(100_000, 3_000_000)).collect();
        let packets = if i % 11 == 10 { MAX_REPORT_VALUE + 1 } else { next(1, 5_000) };
        let target = ["relay-a", "relay-b", "relay-c"][(i % 3) as usize];
        let s = series(
            &labels("v", Transport::QuicDatagram, None, target),
            &[("packets", packets), ("stall_time_ns", next(0, 9_000_000)), ("nope", 1)],
            &[("jitter_us", &jitter), ("first_frame_us", &first_frame), ("nope_us", &[5])],
        );
        // Windows around a minute boundary, so some batches touch two minute rows.
        let end = start + 50_000 + i * 1_000;
        let mut r = report(agent, "0.1.0", end, vec![s]);
        r.report.seq = i + 1;
        items.push((who, r));
    }

    for limits in [
        SeriesLimits::default(),
        SeriesLimits { max_series: 2 * SERIES_PER_COHORT, ..Default::default() },
    ] {
        let tag = |batch: usize| format!("batched-{}-{batch}", limits.max_series);
        let mut one_by_one = Collector::new(&tag(1), limits);
        let mut batched = Collector::new(&tag(9), limits);
        let (mut stored, mut duplicates, mut rejected) = (0, 0, 0);
        for (who, r) in &items {
            one_by_one.ingest(&[(*who, r)]);
        }
        for batch in items.chunks(9) {
            let batch: Vec<(Who, &DecodedReport)> = batch.iter().map(|(w, r)| (*w, r)).collect();
            for outcome in batched.ingest(&batch) {
                match outcome {
                    Outcome::Stored => stored += 1,
                    Outcome::Duplicate => duplicates += 1,
                    Outcome::Rejected(_) | Outcome::Conflict => rejected += 1,
                }
            }
        }
        // The batches did hold every kind of outcome.
        assert!(
            stored > 20 && duplicates >= 5 && rejected >= 3,
            "{stored} {duplicates} {rejected}"
        );
        assert_eq!(batched.series.read().totals(), one_by_one.series.read().totals());
        assert_eq!(batched.render_prometheus_text(), one_by_one.render_prometheus_text());
        assert_eq!(batched.render_text(), one_by_one.render_text());
        assert_eq!(batched.render(Exposition::Protobuf), one_by_one.render(Exposition::Protobuf));
        let totals = batched.series.read().totals();
        assert_eq!(totals.series_folded + totals.cohorts_refused, stored);
        if limits.max_series == 2 * SERIES_PER_COHORT {
            assert_eq!(batched.series.read().len(), 2);
            assert!(totals.cohorts_refused > 0, "{totals:?}");
        } else {
            assert_eq!(batched.series.read().len(), 6);
            assert_eq!((totals.unknown_counters, totals.unknown_histograms), (stored, stored));
        }
    }
}
