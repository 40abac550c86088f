//! Ingest against a hostile agent: a real collector process, agents with valid fleet
//! certificates (so every body reaches the decoder), and curl. Off-catalogue names, unbounded
//! windows, zero-histogram bombs, and a run of random and mutated bodies while a real agent
//! keeps reporting; the store is read back afterwards to show what was (not) kept.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stallwatch_collector::demo::fleet::{
    FleetAgent, FleetFiles, FleetSpec, RELAY_NAME, free_relay_port, write_fleet,
};
use stallwatch_collector::series::catalogue::HISTOGRAMS;
use stallwatch_collector::store::{Cohort, HistoryStore, SqliteStore};
use stallwatch_proto::report::{
    HistogramData, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series, SeriesLabels,
    decode_report, encode_report,
};
use stallwatch_proto::{Role, Transport};
use stallwatch_tests::fleet::{
    AgentProcess, CollectorProcess, free_tcp_port, post_report, wait_until,
};
use stallwatch_tests::rng::Rng;
use stallwatch_tests::{load_tolerant, scratch_dir};

/// The honest agent (probes the relay, really runs in the last test), and the hostile one
/// (a valid certificate in another region, driven by this test).
const HONEST: &str = "sea-4g-1";
const HOSTILE: &str = "latam-wifi-1";

struct Fleet {
    files: FleetFiles,
    /// Holds `files.dir`; removed on drop.
    _scratch: tempfile::TempDir,
}

impl Fleet {
    fn new(tag: &str, report_interval: &'static str) -> Fleet {
        let scratch = scratch_dir(&format!("e2e-{tag}"));
        let dir = scratch.path();
        let spec = FleetSpec {
            relay_agent: "relay-sea-1".into(),
            relay_region: "sea".into(),
            relay_port: free_relay_port().unwrap(),
            agents: vec![
                FleetAgent::new(HONEST, "sea", "4g", None, "360p15"),
                FleetAgent::new(HOSTILE, "latam", "wifi", None, "360p15"),
            ],
            every: "8s",
            duration: "6s",
            report_interval,
            ingest: format!("127.0.0.1:{}", free_tcp_port()),
            metrics: format!("127.0.0.1:{}", free_tcp_port()),
        };
        let files = write_fleet(dir, &spec, time::OffsetDateTime::now_utc()).unwrap();
        Fleet { files, _scratch: scratch }
    }

    fn bundle(&self, name: &str) -> PathBuf {
        self.files.bundles.iter().find(|(n, _)| n == name).unwrap().1.clone()
    }

    fn ca(&self) -> PathBuf {
        self.files.ca_dir.join("ca.pem")
    }

    fn post(&self, c: &CollectorProcess, agent: &str, body: &[u8]) -> (u16, String) {
        post_report(c, &self.bundle(agent), &self.ca(), body)
    }

    fn store(&self) -> PathBuf {
        self.files.dir.join("collector.db")
    }
}

#[allow(clippy::disallowed_methods, reason = "tests stamp reports with the wall clock")]
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[allow(clippy::disallowed_methods, reason = "tests time what they run")]
fn monotonic() -> Instant {
    Instant::now()
}

fn labels(probe: &str) -> SeriesLabels {
    SeriesLabels {
        probe: probe.into(),
        repair: None,
        role: Role::Viewer,
        target: RELAY_NAME.into(),
        transport: Transport::Udp,
    }
}

/// A valid report of `agent`: one series with a first-frame time and packet counters.
fn report(agent: &str, seq: u64, window: (u64, u64)) -> Report {
    let mut h = stallwatch_proto::hdr::new_histogram();
    h.record(850_000).unwrap();
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        agent: agent.into(),
        agent_version: "test".into(),
        seq,
        window_start_ms: window.0,
        window_end_ms: window.1,
        plan_revision: 1,
        spool_depth: 0,
        series: vec![Series {
            labels: labels("p1"),
            counters: BTreeMap::from([
                ("packets_expected".into(), 1000),
                ("packets_lost".into(), 7),
            ]),
            histograms: BTreeMap::from([(
                "first_frame_us".into(),
                HistogramData::from_histogram(&h, 850_000),
            )]),
        }],
    }
}

/// What the store holds, read back as a restarted collector would: (reports per agent,
/// cohorts with the counter and histogram names stored for each).
fn stored(path: &Path) -> (BTreeMap<String, u64>, BTreeMap<Cohort, Vec<String>>) {
    let store = SqliteStore::open(path).unwrap();
    let (mut agents, mut cohorts) = (BTreeMap::new(), BTreeMap::new());
    store
        .replay(0, &mut |delta| {
            for a in delta.agents() {
                agents.insert(a.facts().name.clone(), a.facts().reports);
            }
            for c in delta.cohorts() {
                let names: &mut Vec<String> = cohorts.entry(c.cohort().clone()).or_default();
                names.extend(c.counters().iter().map(|n| n.name().to_owned()));
                names.extend(c.histograms().iter().map(|n| n.name().to_owned()));
            }
        })
        .unwrap();
    (agents, cohorts)
}

/// The `error` code of an answer body.
fn code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

#[test]
fn ingest_refuses_off_catalogue_names_and_unbounded_windows_and_stores_nothing_of_them() {
    let _tolerant = load_tolerant();
    let fleet = Fleet::new("hostile-names", "10s");
    let mut collector = CollectorProcess::start(&fleet.files.config);
    let now = unix_ms();
    let recent = (now - 10_000, now);

    let mut counter = report(HONEST, 1, recent);
    counter.series[0].counters.insert("made_up_total".into(), 1);
    let mut histogram = report(HONEST, 2, recent);
    let extra = histogram.series[0].histograms["first_frame_us"].clone();
    histogram.series[0].histograms.insert("made_up_us".into(), extra);
    for bad in [counter, histogram] {
        let (status, body) = fleet.post(&collector, HONEST, &encode_report(&bad));
        assert_eq!((status, code(&body).as_str()), (422, "unstorable"), "{body}");
        assert!(body.contains("made_up"), "the refusal names the metric: {body}");
    }

    // A window from the epoch to now would land in 1998; one that started beyond the
    // backfill age (24 h) but ended within it would land in a minute ingest no longer takes.
    let epoch = report(HONEST, 3, (0, now));
    let (status, body) = fleet.post(&collector, HONEST, &encode_report(&epoch));
    assert_eq!((status, code(&body).as_str()), (413, "too-large"), "{body}");
    assert!(body.contains("window"), "{body}");
    let day = 86_400_000;
    let straddling = report(HONEST, 4, (now - day - 300_000, now - day + 300_000));
    let (status, body) = fleet.post(&collector, HONEST, &encode_report(&straddling));
    assert_eq!((status, code(&body).as_str()), (422, "too-old"), "{body}");

    let (_, metrics) = collector.get("/metrics");
    for reason in ["unknown_metric", "window_too_long", "too_old"] {
        let line = format!("stallwatch_collector_reports_rejected_total{{reason=\"{reason}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line} counted:\n{metrics}");
    }
    assert_eq!(collector.stop(), Some(0), "clean stop:\n{}", collector.log());
    let (agents, cohorts) = stored(&fleet.store());
    assert!(agents.is_empty() && cohorts.is_empty(), "stored {agents:?} {cohorts:?}");

    // The same report without the extra name is taken: the name alone was refused.
    collector.restart();
    let (status, body) = fleet.post(&collector, HONEST, &encode_report(&report(HONEST, 5, recent)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(collector.stop(), Some(0));
    let (agents, cohorts) = stored(&fleet.store());
    assert_eq!(agents.get(HONEST), Some(&1), "{agents:?}");
    let names: Vec<&String> = cohorts.values().flatten().collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| !n.contains("made_up")), "{names:?}");
}

/// An all-zero histogram padded with explicit zero counts to the 256 KiB per-histogram cap:
/// some 300 bytes compressed, valid (count 0), and 256 KiB to inflate.
fn zero_histogram() -> Vec<u8> {
    let inflated_len = 256 * 1024;
    let payload = vec![0u8; inflated_len - stallwatch_proto::hdr::V2_HEADER_LEN];
    let mut v2 = Vec::with_capacity(inflated_len);
    v2.extend_from_slice(&(stallwatch_proto::hdr::V2_COOKIE_BASE | 0x10).to_be_bytes());
    v2.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    v2.extend_from_slice(&0u32.to_be_bytes());
    v2.extend_from_slice(&3u32.to_be_bytes());
    v2.extend_from_slice(&1u64.to_be_bytes());
    v2.extend_from_slice(&stallwatch_proto::hdr::HIGHEST_TRACKABLE_US.to_be_bytes());
    v2.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
    v2.extend_from_slice(&payload);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&v2).unwrap();
    let compressed = z.finish().unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&stallwatch_proto::hdr::V2_COMPRESSED_COOKIE_BASE.to_be_bytes());
    out.extend_from_slice(&u32::try_from(compressed.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&compressed);
    out
}

/// A report of under 1 MiB holding thousands of [`zero_histogram`]s under catalogue names
/// and allowed labels: before the per-report inflation cap it passed every check.
fn zero_histogram_bomb(agent: &str, seq: u64) -> (Vec<u8>, usize) {
    let hdr = zero_histogram();
    let now = unix_ms();
    let mut bomb = report(agent, seq, (now - 10_000, now));
    bomb.series.clear();
    let mut histograms = 0;
    for probe in 0.. {
        let series = Series {
            labels: labels(&format!("p{probe}")),
            counters: BTreeMap::new(),
            histograms: HISTOGRAMS
                .iter()
                .map(|s| {
                    (
                        s.report_name().to_owned(),
                        HistogramData { hdr: hdr.clone(), sum: 0, count: 0 },
                    )
                })
                .collect(),
        };
        bomb.series.push(series);
        if encode_report(&bomb).len() > 1_000_000 || bomb.series.len() == 256 {
            bomb.series.pop();
            break;
        }
        histograms += HISTOGRAMS.len();
    }
    let body = encode_report(&bomb);
    // The bomb must be one the decoder would take (given the inflation).
    let unlimited = ReportLimits { max_inflated_bytes: usize::MAX, ..Default::default() };
    assert!(decode_report(&body, &unlimited).is_ok(), "a valid bomb");
    (body, histograms)
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Peak resident memory of a process, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_zero_histogram_bomb_costs_bounded_cpu_and_does_not_hold_up_another_agent() {
    let _tolerant = load_tolerant();
    let fleet = Fleet::new("hostile-bomb", "10s");
    let collector = CollectorProcess::start(&fleet.files.config);
    let (bomb, histograms) = zero_histogram_bomb(HOSTILE, 1);
    assert!(histograms > 2000, "{histograms} histograms in {} bytes", bomb.len());
    let inflatable_mib = histograms / 4;
    let rss_before = peak_rss_kib(collector.pid());
    let cpu_before = cpu_ticks(collector.pid());

    // The hostile agent sends bombs from four connections at once, ten rounds; meanwhile the
    // honest agent sends its reports one after another.
    const ROUNDS: usize = 10;
    const SEQUENTIAL: usize = 4;
    let (answers, honest) = std::thread::scope(|scope| {
        let hostile: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..ROUNDS)
                        .map(|_| fleet.post(&collector, HOSTILE, &bomb).0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut honest = Vec::new();
        for seq in 1..=10 {
            let now = unix_ms();
            let body = encode_report(&report(HONEST, seq, (now - 10_000, now)));
            let started = monotonic();
            let (status, answer) = fleet.post(&collector, HONEST, &body);
            honest.push((status, monotonic() - started, answer));
        }
        let mut answers: Vec<u16> = hostile.into_iter().flat_map(|h| h.join().unwrap()).collect();
        // Then bombs one at a time: with none in flight each one is read and decoded, so the
        // cap is exercised however the concurrent rounds fell.
        answers.extend((0..SEQUENTIAL).map(|_| fleet.post(&collector, HOSTILE, &bomb).0));
        (answers, honest)
    });
    let cpu = Duration::from_millis((cpu_ticks(collector.pid()) - cpu_before) * 10);
    let rss_growth_mib = peak_rss_kib(collector.pid()).saturating_sub(rss_before) / 1024;

    let decoded = answers.iter().filter(|&&s| s == 413).count();
    println!(
        "{decoded} bombs decoded ({inflatable_mib} MiB each uncapped): collector CPU {cpu:?}, \
         peak RSS +{rss_growth_mib} MiB; honest latencies {:?}",
        honest.iter().map(|h| h.1).collect::<Vec<_>>()
    );
    // Each bomb is refused once its inflation passes the report's cap (413, set aside), or
    // never read because the agent already has one in flight (429; curl may see the
    // connection reset, 0, as the collector answers before taking the 1 MiB body).
    assert!(answers.iter().all(|s| [413, 429, 0].contains(s)), "{answers:?}");
    let sequential = &answers[answers.len() - SEQUENTIAL..];
    assert!(sequential.iter().all(|&s| s == 413), "one at a time: {sequential:?}");
    assert!(decoded >= SEQUENTIAL, "{answers:?}");
    // Before the cap each decoded bomb inflated `inflatable_mib` (over 500 MiB, seconds of
    // CPU); now at most 8 MiB. Generous bounds for a loaded 2-core machine; exact figures
    // are in the ingest_bomb bench.
    assert!(cpu < Duration::from_secs(8), "the bombs cost {cpu:?} of CPU");
    assert!(rss_growth_mib < 256, "peak RSS grew {rss_growth_mib} MiB");
    for (status, latency, answer) in &honest {
        assert_eq!(*status, 200, "{answer}");
        assert!(*latency < Duration::from_secs(5), "an honest report took {latency:?}");
    }
}

/// What [`answered`] files a large body under when curl saw no answer.
const UNREAD: u16 = 1;

/// The status of a hostile post, with a connection reset (curl's 0) on a body over 64 KiB
/// filed as [`UNREAD`]: the collector answers a busy agent or an oversized body without reading
/// it and closes the connection, and curl, still sending, may see the reset first. A small
/// body always gets its answer.
fn answered(status: u16, body: &[u8]) -> u16 {
    if status == 0 && body.len() > 64 * 1024 { UNREAD } else { status }
}

/// One hostile body: random bytes, a valid report mutated (bytes flipped, cut, spliced), a
/// bomb, or a body over the size cap.
fn hostile_body(noise: &mut Rng, valid: &[u8], bomb: &[u8], seq: u64) -> Vec<u8> {
    match noise.below(10) {
        0 => (0..noise.below(4096)).map(|_| noise.next_u64() as u8).collect(),
        1 => bomb.to_vec(),
        2 => vec![b'['; 2 << 20],
        3 => valid[..noise.below(valid.len())].to_vec(),
        4 => {
            // A valid report with a fresh seq and one field's digits replaced.
            let text =
                String::from_utf8_lossy(valid).replace("\"seq\":1,", &format!("\"seq\":{seq},"));
            text.replacen("1000", &noise.next_u64().to_string(), 1).into_bytes()
        }
        _ => {
            let mut body = valid.to_vec();
            for _ in 0..=noise.below(8) {
                let at = noise.below(body.len());
                body[at] = noise.next_u64() as u8;
            }
            body
        }
    }
}

#[test]
fn hostile_bodies_at_ingest_leave_an_honest_agents_totals_exact() {
    let _tolerant = load_tolerant();
    let fleet = Fleet::new("hostile-run", "2s");
    let mut collector = CollectorProcess::start(&fleet.files.config);
    let url = format!("https://{}", collector.ingest);
    let mut agents: Vec<AgentProcess> = fleet
        .files
        .bundles
        .iter()
        .filter(|(name, _)| name != HOSTILE)
        .map(|(name, bundle)| AgentProcess::start(&fleet.files.dir, name, bundle, &url))
        .collect();
    let honest = agents.iter().position(|a| a.name == HONEST).unwrap();
    let archived = |agents: &[AgentProcess]| {
        std::fs::read_dir(&agents[honest].archive).map_or(0, |d| d.count())
    };
    assert!(wait_until(Duration::from_secs(60), || archived(&agents) >= 2), "the agent reports");

    // At most 400 hostile bodies or 60 s, whichever comes first, from one connection at a time
    // (it is one agent) and from a second that overlaps it.
    let now = unix_ms();
    let valid = encode_report(&report(HOSTILE, 1, (now - 10_000, now)));
    let (bomb, _) = zero_histogram_bomb(HOSTILE, 2);
    let deadline = monotonic() + Duration::from_secs(60);
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut healthy = 0;
    std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            let mut noise = Rng::new(0x5eed_0002);
            let mut seen = BTreeMap::<u16, usize>::new();
            for i in 0..200 {
                if monotonic() > deadline {
                    break;
                }
                let body = hostile_body(&mut noise, &valid, &bomb, 1_000_000 + i);
                *seen
                    .entry(answered(fleet.post(&collector, HOSTILE, &body).0, &body))
                    .or_default() += 1;
            }
            seen
        });
        let mut noise = Rng::new(0x5eed_0001);
        for i in 0..200 {
            if monotonic() > deadline {
                break;
            }
            let body = hostile_body(&mut noise, &valid, &bomb, 10 + i);
            *statuses
                .entry(answered(fleet.post(&collector, HOSTILE, &body).0, &body))
                .or_default() += 1;
            if i % 20 == 0 && collector.get("/-/healthy").0 == 200 {
                healthy += 1;
            }
        }
        for (status, n) in second.join().unwrap() {
            *statuses.entry(status).or_default() += n;
        }
    });
    println!("hostile answers by status: {statuses:?}");
    // Every body got an HTTP answer from the collector (no crash, no dropped connection),
    // and none was a server error.
    assert!(!statuses.contains_key(&0), "{statuses:?}");
    assert!(statuses.keys().all(|s| *s < 500), "{statuses:?}");
    assert!(statuses.values().sum::<usize>() >= 100, "{statuses:?}");
    assert!(healthy >= 5, "the metrics listener answered {healthy} times");

    // The honest agent went on reporting through it all; its totals are exact.
    let before = archived(&agents);
    assert!(
        wait_until(Duration::from_secs(30), || archived(&agents) >= before + 2),
        "reports after"
    );
    for a in &mut agents {
        assert_eq!(a.stop(), Some(0), "{} exits cleanly:\n{}", a.name, a.log());
    }
    assert_eq!(agents[honest].spooled(), 0, "every honest report was acknowledged");
    assert_eq!(collector.stop(), Some(0), "clean stop:\n{}", collector.log());
    let sent = sent_totals(&agents[honest].archive);
    assert!(sent.reports >= 4, "only {} reports", sent.reports);
    let kept = stored_totals(&fleet.store(), "sea", "4g");
    assert_eq!(kept.counters, sent.counters, "counters of the honest agent's cohorts");
    assert_eq!(kept.histograms, sent.histograms, "histogram counts and sums");
    assert!(kept.counters.len() >= 20, "compared {} counters", kept.counters.len());
}

/// Per (transport, target, name): counter totals, and histogram (count, sum).
#[derive(Debug, Default, PartialEq)]
struct Totals {
    reports: usize,
    counters: BTreeMap<(String, String, String), u64>,
    histograms: BTreeMap<(String, String, String), (u64, u64)>,
}

/// What the agent sent and had acknowledged (its archive), decoded here.
fn sent_totals(archive: &Path) -> Totals {
    let mut totals = Totals::default();
    for file in std::fs::read_dir(archive).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        let report = decode_report(&bytes, &ReportLimits::default()).unwrap().report;
        totals.reports += 1;
        for s in &report.series {
            let key = |name: &str| {
                (s.labels.transport.to_string(), s.labels.target.clone(), name.to_owned())
            };
            for (name, v) in s.counters.iter().filter(|(_, v)| **v > 0) {
                *totals.counters.entry(key(name)).or_default() += v;
            }
            for (name, h) in s.histograms.iter().filter(|(_, h)| h.count > 0) {
                let e = totals.histograms.entry(key(name)).or_default();
                e.0 += h.count;
                e.1 += h.sum;
            }
        }
    }
    totals
}

/// What the store holds for the cohorts of one region and network type.
fn stored_totals(path: &Path, region: &str, network_type: &str) -> Totals {
    let store = SqliteStore::open(path).unwrap();
    let mut totals = Totals::default();
    store
        .replay(0, &mut |delta| {
            for c in delta.cohorts() {
                let cohort = c.cohort();
                if cohort.region != region || cohort.network_type != network_type {
                    continue;
                }
                let key =
                    |name: &str| (cohort.transport.clone(), cohort.target.clone(), name.to_owned());
                for n in c.counters().iter().filter(|n| n.value() > 0) {
                    *totals.counters.entry(key(n.name())).or_default() += n.value();
                }
                for n in c.histograms().iter().filter(|n| n.histogram().count() > 0) {
                    let e = totals.histograms.entry(key(n.name())).or_default();
                    e.0 += n.histogram().count();
                    e.1 += n.histogram().sum();
                }
            }
        })
        .unwrap();
    totals
}
