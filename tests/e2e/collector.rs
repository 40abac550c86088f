//! The collector as agents and operators meet it: a real `stallwatch-collector run` process,
//! real certificates from the fleet CA, and curl with an agent's bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stallwatch_collector::demo::fleet::{FleetAgent, FleetFiles, FleetSpec, write_fleet};
use stallwatch_collector::pki::{AgentIdentity, Ca, Validity};
use stallwatch_proto::report::{
    HistogramData, REPORT_SCHEMA_VERSION, Report, Series, SeriesLabels, encode_report,
};
use stallwatch_proto::{Role, Transport};
use stallwatch_tests::fleet::{CollectorProcess, curl, mtls, post_report};
use stallwatch_tests::{load_tolerant, scratch_dir};

/// A fleet directory under the temp dir, removed on drop.
struct Fleet {
    files: FleetFiles,
    /// Holds `files.dir`; removed on drop.
    _scratch: tempfile::TempDir,
}

impl Fleet {
    fn new(tag: &str) -> Fleet {
        let scratch = scratch_dir(&format!("e2e-{tag}"));
        let dir = scratch.path();
        let spec = FleetSpec {
            relay_agent: "relay-sea-1".into(),
            relay_region: "sea".into(),
            relay_port: 45999,
            agents: vec![
                FleetAgent::new("sea-4g-1", "sea", "4g", Some("4g"), "360p30"),
                FleetAgent::new("latam-wifi-1", "latam", "wifi", None, "360p30"),
            ],
            every: "1m",
            duration: "20s",
            report_interval: "10s",
            ingest: "127.0.0.1:0".into(),
            metrics: "127.0.0.1:0".into(),
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

    fn curl_as(&self, bundle: &Path, url: &str) -> (u16, String) {
        let mut args = mtls(bundle, &self.ca());
        args.push(url.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args, None)
    }
}

#[allow(clippy::disallowed_methods, reason = "tests stamp reports with the wall clock")]
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A report as an agent sends it: one series with first-frame times and packet counters.
fn report(
    agent: &str,
    seq: u64,
    window_end_ms: u64,
    target: &str,
    first_frame_us: &[u64],
) -> Vec<u8> {
    let mut h = stallwatch_proto::hdr::new_histogram();
    for &v in first_frame_us {
        h.record(v).unwrap();
    }
    let series = Series {
        labels: SeriesLabels {
            probe: "p1".into(),
            repair: None,
            role: Role::Viewer,
            target: target.into(),
            transport: Transport::Udp,
        },
        counters: BTreeMap::from([("packets_expected".into(), 1000), ("packets_lost".into(), 7)]),
        histograms: BTreeMap::from([(
            "first_frame_us".into(),
            HistogramData::from_histogram(&h, first_frame_us.iter().sum()),
        )]),
    };
    encode_report(&Report {
        schema_version: REPORT_SCHEMA_VERSION,
        agent: agent.into(),
        agent_version: "test".into(),
        seq,
        window_start_ms: window_end_ms - 10_000,
        window_end_ms,
        plan_revision: 1,
        spool_depth: 0,
        series: vec![series],
    })
}

/// The value of the sample `name` (exact line prefix, labels included) in an exposition.
fn sample(exposition: &str, prefix: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// The collector keeps itself off transparent huge pages whatever the host's setting
/// (`keep_off_huge_pages`, first in `main`): with them, its allocator made ingest a fifth slower
/// (BENCHMARKS.md, "mimalloc, without transparent huge pages").
#[test]
fn the_collector_runs_without_transparent_huge_pages() {
    let fleet = Fleet::new("thp");
    let mut collector = CollectorProcess::start(&fleet.files.config);
    let status = std::fs::read_to_string(format!("/proc/{}/status", collector.pid())).unwrap();
    let thp = status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).map(str::trim);
    assert_eq!(thp, Some("0"), "{status}");
    assert_eq!(collector.stop(), Some(0), "clean stop:\n{}", collector.log());
}

#[test]
fn ingest_refuses_wrong_certificates_and_reports_and_counts_resends_once() {
    let _tolerant = load_tolerant();
    let fleet = Fleet::new("ingest");
    let collector = CollectorProcess::start(&fleet.files.config);
    let agent = fleet.bundle("sea-4g-1");
    let ca = fleet.ca();

    // A fleet agent gets its plan.
    let (status, plan) = fleet.curl_as(&agent, &collector.url("/api/v1/plan"));
    assert_eq!(status, 200, "{plan}");
    assert!(plan.contains("sea-4g-1-udp"), "{plan}");

    // A certificate from another CA: the TLS handshake is refused, and logged.
    let other = scratch_dir("e2e-otherca");
    let other_ca = Ca::init(other.path(), time::OffsetDateTime::now_utc(), true).unwrap();
    let id = AgentIdentity::new("sea-4g-1", "sea", "4g").unwrap();
    let stranger = other.path().join("stranger.pem");
    other_ca
        .issue_agent(&id, Validity::days_from(time::OffsetDateTime::now_utc(), 1).unwrap())
        .unwrap()
        .write_bundle(&stranger)
        .unwrap();
    let (status, _) = fleet.curl_as(&stranger, &collector.url("/api/v1/plan"));
    assert_eq!(status, 0, "another CA's certificate must not get an HTTP answer");

    // An expired certificate from the right CA: refused at the handshake too.
    let fleet_ca = Ca::load(&fleet.files.ca_dir).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let expired = fleet.files.dir.join("expired.pem");
    fleet_ca
        .issue_agent(
            &AgentIdentity::new("sea-old-1", "sea", "4g").unwrap(),
            Validity::new(now - time::Duration::days(10), now - time::Duration::days(1)).unwrap(),
        )
        .unwrap()
        .write_bundle(&expired)
        .unwrap();
    let (status, _) = fleet.curl_as(&expired, &collector.url("/api/v1/plan"));
    assert_eq!(status, 0, "an expired certificate must not get an HTTP answer");
    // rustls names the reasons ("UnknownIssuer", "certificate expired: ..."); match loosely.
    for reason in ["unknownissuer", "expired"] {
        let logged = stallwatch_tests::fleet::wait_until(Duration::from_secs(10), || {
            collector.log().to_lowercase().contains(reason)
        });
        assert!(logged, "the refusal is logged with its reason ({reason}):\n{}", collector.log());
    }

    // A report that names another agent is refused, and so is an unknown target.
    let now = unix_ms();
    let (status, body) = post_report(
        &collector,
        &agent,
        &ca,
        &report("latam-wifi-1", 1, now, "relay-1", &[200_000]),
    );
    assert_eq!((status, body.contains("agent-mismatch")), (403, true), "{body}");
    let (status, body) =
        post_report(&collector, &agent, &ca, &report("sea-4g-1", 1, now, "relay-x", &[200_000]));
    assert_eq!((status, body.contains("label-not-allowed")), (422, true), "{body}");
    // A repair mode, transport or label the collector does not know, or a missing transport,
    // is refused naming the series, the label and what it may hold (an agent keeps a report
    // refused 422).
    let with_labels = |edit: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut json: serde_json::Value =
            serde_json::from_slice(&report("sea-4g-1", 1, now, "relay-1", &[200_000])).unwrap();
        edit(json["series"][0]["labels"].as_object_mut().unwrap());
        serde_json::to_vec(&json).unwrap()
    };
    let refusals: [(&str, Vec<u8>, &[&str]); 4] = [
        (
            "fec",
            with_labels(&|l| {
                l.insert("repair".into(), "fec".into());
            }),
            &[
                "series 0 label \"repair\": value \"fec\" is not allowed: expected one of none, nack",
            ],
        ),
        (
            "quic",
            with_labels(&|l| {
                l.insert("transport".into(), "quic".into());
            }),
            &[
                "series 0 label \"transport\": value \"quic\"",
                "one of quic-stream, quic-datagram, udp",
            ],
        ),
        (
            "colour",
            with_labels(&|l| {
                l.insert("colour".into(), "red".into());
            }),
            &[
                "series 0 label \"colour\": not a series label",
                "probe, repair, role, target, transport",
            ],
        ),
        (
            "no transport",
            with_labels(&|l| {
                l.remove("transport");
            }),
            &[
                "series 0 label \"transport\": missing: expected one of quic-stream, quic-datagram, udp",
            ],
        ),
    ];
    for (case, body, parts) in refusals {
        let (status, answer) = post_report(&collector, &agent, &ca, &body);
        let answer = answer.replace("\\\"", "\"");
        assert_eq!((status, answer.contains("label-not-allowed")), (422, true), "{case}: {answer}");
        for part in parts {
            assert!(answer.contains(part), "{case}: {part:?} not in {answer}");
        }
    }
    // A histogram in another layout than stallwatch's (lowest 1, 3 significant figures) is
    // refused whole, naming the series and the histogram.
    let mut foreign: Report =
        serde_json::from_slice(&report("sea-4g-1", 1, now, "relay-1", &[200_000])).unwrap();
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(10, 3_600_000_000, 2).unwrap();
    h.record(200_000).unwrap();
    foreign.series[0]
        .histograms
        .insert("first_frame_us".into(), HistogramData::from_histogram(&h, 200_000));
    let (status, body) = post_report(&collector, &agent, &ca, &encode_report(&foreign));
    let named = body.contains("unstorable")
        && body.contains("series 0")
        && body.contains("first_frame_us")
        && body.contains("2 significant figures");
    assert_eq!((status, named), (422, true), "{body}");
    let (status, body) = post_report(
        &collector,
        &agent,
        &ca,
        &report("sea-4g-1", 1, now + 3_600_000, "relay-1", &[1]),
    );
    assert_eq!((status, body.contains("clock-skew")), (422, true), "{body}");
    let (status, body) = post_report(&collector, &agent, &ca, b"{\"schema_version\": 1");
    assert_eq!((status, body.contains("malformed")), (400, true), "{body}");
    let (status, body) = post_report(&collector, &agent, &ca, &vec![b' '; 2 << 20]);
    assert_eq!((status, body.contains("too-large")), (413, true), "{body}");

    // A good report is stored once; resending it is acknowledged as a duplicate.
    let good = report("sea-4g-1", 1, now, "relay-1", &[150_000, 250_000, 900_000]);
    let (status, body) = post_report(&collector, &agent, &ca, &good);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"stored\""), "{body}");
    let (status, body) = post_report(&collector, &agent, &ca, &good);
    assert_eq!((status, body.contains("\"duplicate\"")), (200, true), "{body}");
    // Another report under the same seq (an agent rolled back to a snapshot) is a conflict:
    // answered 409 so the agent renumbers it, counted, and not added to the series.
    let reused = report("sea-4g-1", 1, now - 1_000, "relay-1", &[5_000_000]);
    let (status, body) = post_report(&collector, &agent, &ca, &reused);
    assert_eq!((status, body.contains("\"seq-conflict\"")), (409, true), "{body}");
    let (status, metrics) = collector.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "stallwatch_collector_reports_rejected_total{reason=\"seq_conflict\"}"),
        Some(1.0),
        "{metrics}"
    );
    // relay-x and the four label refusals above.
    assert_eq!(
        sample(
            &metrics,
            "stallwatch_collector_reports_rejected_total{reason=\"label_not_allowed\"}"
        ),
        Some(5.0),
        "{metrics}"
    );
    // Without a repair label (an agent older than it), udp reads as repair "unknown".
    let cohort = "{region=\"sea\",network_type=\"4g\",transport=\"udp\",repair=\"unknown\",target=\"relay-1\"}";
    assert_eq!(
        sample(&metrics, &format!("stallwatch_first_frame_seconds_count{cohort}")),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("stallwatch_packets_lost_total{cohort}")),
        Some(7.0),
        "{metrics}"
    );
    let (_, agents) = collector.get("/api/v1/agents");
    assert!(agents.contains("\"name\":\"sea-4g-1\""), "{agents}");

    // Revoking the agent refuses it on its next request, without a restart, and logs it.
    let relay_plan = |collector: &CollectorProcess| {
        let (status, plan) =
            fleet.curl_as(&fleet.bundle("relay-sea-1"), &collector.url("/api/v1/plan"));
        assert_eq!(status, 200, "{plan}");
        serde_json::from_str::<serde_json::Value>(&plan).unwrap()
    };
    let before = relay_plan(&collector);
    assert!(before["relay"].is_object() && before["relay"].get("revoked_serials").is_none());
    let out = std::process::Command::new(stallwatch_tests::binary("stallwatch-collector"))
        .args(["ca", "revoke", "sea-4g-1", "--dir"])
        .arg(&fleet.files.ca_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = fleet.curl_as(&agent, &collector.url("/api/v1/plan"));
    assert_eq!((status, body.contains("revoked")), (403, true), "{body}");
    assert!(collector.wait_for_log("refused a revoked agent", Duration::from_secs(5)));
    // Another agent is unaffected.
    let (status, _) = fleet.curl_as(&fleet.bundle("latam-wifi-1"), &collector.url("/api/v1/plan"));
    assert_eq!(status, 200);
    // The relay agent's plan now hands its relay every serial issued to the revoked agent,
    // under a new revision (so a long-polling relay gets it), without a reload.
    let after = relay_plan(&collector);
    let issued = stallwatch_collector::pki::IssuedList::load(
        &Ca::load(&fleet.files.ca_dir).unwrap().issued_path(),
    )
    .unwrap()
    .serials_of("sea-4g-1");
    assert!(!issued.is_empty());
    let handed: Vec<String> =
        serde_json::from_value(after["relay"]["revoked_serials"].clone()).unwrap();
    for serial in &issued {
        assert!(handed.contains(serial), "{serial} not in {handed:?}");
    }
    assert_ne!(after["revision"], before["revision"]);
}
