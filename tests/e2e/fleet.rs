//! The whole fleet as real processes on loopback: a collector, a relay agent and probing
//! agents in two regions with real certificates, a real Prometheus scraping the collector,
//! plan edits, and collector crashes and outages. Every figure the collector exports is
//! checked against the reports the agents had acknowledged (their `archive_dir`), decoded
//! independently here.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use stallwatch_collector::demo::fleet::{
    FleetAgent, FleetFiles, FleetSpec, RELAY_NAME, config_text, free_relay_port, write_fleet,
};
use stallwatch_collector::series::catalogue::{DELAY_BOUNDS_US, FIRST_FRAME_BOUNDS_US};
use stallwatch_proto::report::{ReportLimits, decode_report};
use stallwatch_tests::fleet::{
    AgentProcess, CollectorProcess, Deadline, PrometheusProcess, free_tcp_port, wait_until,
};
use stallwatch_tests::{load_tolerant, scratch_dir};

struct TestFleet {
    spec: FleetSpec,
    files: FleetFiles,
    /// Holds `files.dir`: removed on drop, kept when a test fails.
    scratch: tempfile::TempDir,
}

impl TestFleet {
    fn new(
        tag: &str,
        agents: Vec<FleetAgent>,
        every: &'static str,
        duration: &'static str,
        report_interval: &'static str,
    ) -> Self {
        let scratch = scratch_dir(&format!("e2e-{tag}"));
        let dir = scratch.path();
        let spec = FleetSpec {
            relay_agent: "relay-sea-1".into(),
            relay_region: "sea".into(),
            relay_port: free_relay_port().unwrap(),
            agents,
            every,
            duration,
            report_interval,
            // Fixed ports: agents must find a restarted collector where it was.
            ingest: format!("127.0.0.1:{}", free_tcp_port()),
            metrics: format!("127.0.0.1:{}", free_tcp_port()),
        };
        let files = write_fleet(dir, &spec, time::OffsetDateTime::now_utc()).unwrap();
        TestFleet { spec, files, scratch }
    }

    fn start_agents(&self, collector: &CollectorProcess) -> Vec<AgentProcess> {
        let url = format!("https://{}", collector.ingest);
        self.files
            .bundles
            .iter()
            .map(|(name, bundle)| AgentProcess::start(&self.files.dir, name, bundle, &url))
            .collect()
    }

    /// (region, network type) of a probing agent.
    fn labels_of(&self, agent: &str) -> Option<(String, String)> {
        let a = self.spec.agents.iter().find(|a| a.name == agent)?;
        Some((a.region.clone(), a.network_type.clone()))
    }

    /// The cohort's labels as exported; the fleet's plans leave repair out, so each
    /// transport runs its default mode.
    fn cohort(&self, agent: &FleetAgent, transport: &str) -> String {
        let repair = stallwatch_proto::Repair::for_transport(transport.parse().unwrap(), None);
        self.cohort_with(agent, transport, repair.name())
    }

    /// The cohort's labels as exported, for probes that run `repair`.
    fn cohort_with(&self, agent: &FleetAgent, transport: &str, repair: &str) -> String {
        format!(
            "{{region=\"{}\",network_type=\"{}\",transport=\"{transport}\",repair=\"{repair}\",target=\"{RELAY_NAME}\"}}",
            agent.region, agent.network_type
        )
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.scratch.disable_cleanup(true);
            eprintln!("fleet files kept for inspection: {}", self.files.dir.display());
        }
    }
}

/// What the agents' acknowledged reports add up to, per cohort label string.
#[derive(Default)]
struct Totals {
    counters: BTreeMap<(String, String), u64>,
    histograms: BTreeMap<(String, String), (u64, u64, Histogram<u64>)>,
    reports: usize,
}

fn archive_totals(fleet: &TestFleet, agents: &[AgentProcess]) -> Totals {
    let mut totals = Totals::default();
    for agent in agents {
        let Some((region, network_type)) = fleet.labels_of(&agent.name) else { continue };
        let Ok(dir) = std::fs::read_dir(&agent.archive) else { continue };
        for file in dir {
            let bytes = std::fs::read(file.unwrap().path()).unwrap();
            let decoded = decode_report(&bytes, &ReportLimits::default()).unwrap();
            totals.reports += 1;
            for (series, hists) in decoded.report.series.iter().zip(&decoded.histograms) {
                let cohort = format!(
                    "{{region=\"{region}\",network_type=\"{network_type}\",transport=\"{}\",repair=\"{}\",target=\"{}\"}}",
                    series.labels.transport,
                    series.labels.repair.expect("this build's agents send repair"),
                    series.labels.target
                );
                for (name, v) in &series.counters {
                    *totals.counters.entry((cohort.clone(), name.clone())).or_default() += v;
                }
                for (name, h) in hists {
                    let data = &series.histograms[name];
                    let entry = totals
                        .histograms
                        .entry((cohort.clone(), name.clone()))
                        .or_insert_with(|| (0, 0, stallwatch_proto::hdr::new_histogram()));
                    entry.0 += data.count;
                    entry.1 += data.sum;
                    entry.2.add(h.to_histogram().unwrap()).unwrap();
                }
            }
        }
    }
    totals
}

/// The reports `agent` had acknowledged so far, decoded.
fn archived_reports(agent: &AgentProcess) -> Vec<stallwatch_proto::report::Report> {
    let Ok(dir) = std::fs::read_dir(&agent.archive) else { return Vec::new() };
    dir.map(|file| {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        decode_report(&bytes, &ReportLimits::default()).unwrap().report
    })
    .collect()
}

/// Samples of a text exposition by `name{labels}`.
fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Checks the collector's exposition against the archive: counters and histogram counts
/// exactly, sums to a microsecond. Returns how many values were compared.
fn assert_exposition_matches(metrics: &str, totals: &Totals) -> usize {
    let samples = samples(metrics);
    let counter_names = [
        ("packets_expected", "stallwatch_packets_expected_total", ""),
        ("packets_lost", "stallwatch_packets_lost_total", ""),
        ("packets_received", "stallwatch_packets_received_total", ""),
        ("stalls", "stallwatch_stalls_total", ""),
        ("view_attempts", "stallwatch_attempts_total", ",role=\"viewer\""),
        ("sent_packets", "stallwatch_packets_sent_total", ""),
    ];
    let mut compared = 0;
    for ((cohort, name), value) in &totals.counters {
        let Some((_, exported, extra)) = counter_names.iter().find(|(n, _, _)| n == name) else {
            continue;
        };
        let key = format!("{exported}{}{extra}}}", cohort.trim_end_matches('}'));
        assert_eq!(samples.get(&key).copied(), Some(*value as f64), "{key}");
        compared += 1;
    }
    for ((cohort, name), (count, sum, _)) in &totals.histograms {
        let family = match name.as_str() {
            "jitter_us" => "stallwatch_jitter_seconds",
            "first_frame_us" => "stallwatch_first_frame_seconds",
            "rtt_us" => "stallwatch_rtt_seconds",
            _ => continue,
        };
        let count_key = format!("{family}_count{cohort}");
        assert_eq!(samples.get(&count_key).copied(), Some(*count as f64), "{count_key}");
        let sum_key = format!("{family}_sum{cohort}");
        let exported = samples.get(&sum_key).copied().unwrap_or(f64::NAN);
        assert!(
            (exported - *sum as f64 / 1e6).abs() < 1e-6 * (1.0 + exported),
            "{sum_key}: {exported} vs {sum} µs"
        );
        compared += 2;
    }
    compared
}

/// Waits up to 30 s until this collector process has accepted at least `n` reports.
fn accepted_at_least(collector: &CollectorProcess, n: u64) -> bool {
    wait_until(Duration::from_secs(30), || {
        let (_, metrics) = collector.get("/metrics");
        samples(&metrics).get("stallwatch_collector_reports_accepted_total").copied().unwrap_or(0.0)
            >= n as f64
    })
}

fn bucket_index(bounds: &[u64], seconds: f64) -> usize {
    bounds.iter().position(|&b| seconds * 1e6 <= b as f64 + 0.5).unwrap_or(bounds.len())
}

#[test]
fn fleet_with_prometheus_quantiles_agree_and_plan_edits_apply_live() {
    let _tolerant = load_tolerant();
    let agents = vec![
        FleetAgent::new("sea-4g-1", "sea", "4g", Some("4g"), "360p15"),
        FleetAgent::new("sea-fiber-1", "sea", "fiber", None, "360p15"),
        FleetAgent::new("latam-wifi-1", "latam", "wifi", Some("delay=60ms,jitter=5ms"), "360p15"),
    ];
    let fleet = TestFleet::new("fleet", agents, "8s", "6s", "2s");
    let collector = CollectorProcess::start(&fleet.files.config);
    let prometheus =
        PrometheusProcess::start(&fleet.files.dir.join("prometheus"), collector.metrics, "2s");
    let mut processes = fleet.start_agents(&collector);

    // Every agent gets its plan and reports; every cohort gets data.
    let cohorts: Vec<String> = fleet
        .spec
        .agents
        .iter()
        .flat_map(|a| ["quic-stream", "quic-datagram", "udp"].map(|t| fleet.cohort(a, t)))
        .collect();
    let all_reporting = wait_until(Duration::from_secs(90), || {
        let (_, metrics) = collector.get("/metrics");
        cohorts.iter().all(|c| metrics.contains(&format!("stallwatch_jitter_seconds_count{c}")))
    });
    assert!(all_reporting, "not every cohort reported:\n{}", collector.get("/metrics").1);

    // A plan edit reaches the running agents at once (long-poll), without a restart. It also
    // turns repair off on every udp probe, which must start cohorts of their own.
    let before: Vec<u32> = processes.iter().map(AgentProcess::pid).collect();
    let mut edited = fleet.spec.clone();
    edited.duration = "5s";
    let text = config_text(&edited)
        .replace("transport = \"udp\"\n", "transport = \"udp\"\nrepair = \"none\"\n");
    assert_eq!(text.matches("repair = \"none\"").count(), fleet.spec.agents.len());
    std::fs::write(&fleet.files.config, text).unwrap();
    let old_revision = collector.get("/api/v1/agents").1;
    collector.signal("-HUP");
    assert!(collector.wait_for_log("config reloaded: new plans", Duration::from_secs(10)));
    let (_, agents_json) = collector.get("/api/v1/agents");
    let revision =
        serde_json::from_str::<serde_json::Value>(&agents_json).unwrap()["plans_revision"]
            .as_u64()
            .unwrap();
    assert!(!old_revision.contains(&revision.to_string()), "the revision changed");
    let applied = format!("plan applied revision={revision}");
    for p in &mut processes {
        assert!(
            wait_until(Duration::from_secs(10), || p.log().contains(&applied)),
            "{} did not apply plan {revision} within 10 s:\n{}",
            p.name,
            p.log()
        );
        assert!(p.running(), "{} restarted or died", p.name);
    }
    let after: Vec<u32> = processes.iter().map(AgentProcess::pid).collect();
    assert_eq!(before, after, "same processes");

    // The fleet view lists every agent, none stale.
    let (status, page) = collector.get("/");
    assert_eq!(status, 200);
    for (name, _) in &fleet.files.bundles {
        assert!(page.contains(name.as_str()), "fleet page lacks {name}");
    }

    // Every probing agent runs probes under the new plan, then the agents stop (their last
    // reports are delivered).
    let ran = wait_until(Duration::from_secs(60), || {
        processes.iter().filter(|p| fleet.labels_of(&p.name).is_some()).all(|p| {
            archived_reports(p).iter().any(|r| r.plan_revision == revision && !r.series.is_empty())
        })
    });
    assert!(ran, "not every agent reported probes under plan {revision}");
    // The unrepaired udp probes report under repair="none", beside (not merged into) the
    // repaired cohorts of before the edit.
    let unrepaired: Vec<String> =
        fleet.spec.agents.iter().map(|a| fleet.cohort_with(a, "udp", "none")).collect();
    let split = wait_until(Duration::from_secs(60), || {
        let (_, metrics) = collector.get("/metrics");
        unrepaired.iter().all(|c| metrics.contains(&format!("stallwatch_jitter_seconds_count{c}")))
    });
    let (_, metrics) = collector.get("/metrics");
    assert!(split, "no repair=\"none\" udp cohort for every agent:\n{metrics}");
    for a in &fleet.spec.agents {
        let repaired = fleet.cohort_with(a, "udp", "nack");
        assert!(
            metrics.contains(&format!("stallwatch_jitter_seconds_count{repaired}")),
            "{repaired}"
        );
    }
    for p in &mut processes {
        assert_eq!(p.stop(), Some(0), "{} exits cleanly:\n{}", p.name, p.log());
        assert_eq!(p.spooled(), 0, "{} left reports unsent", p.name);
    }
    let totals = archive_totals(&fleet, &processes);
    let (_, metrics) = collector.get("/metrics");
    let compared = assert_exposition_matches(&metrics, &totals);
    assert!(compared >= 30, "compared only {compared} values");

    // Prometheus has scraped the final totals once every histogram count it holds is the
    // archive's.
    let histogram_counts: Vec<(String, u64)> = totals
        .histograms
        .iter()
        .filter_map(|((cohort, name), (count, _, _))| {
            let family = match name.as_str() {
                "jitter_us" => "stallwatch_jitter_seconds",
                "first_frame_us" => "stallwatch_first_frame_seconds",
                _ => return None,
            };
            Some((format!("{family}_count{cohort}"), *count))
        })
        .collect();
    let scraped = wait_until(Duration::from_secs(30), || {
        histogram_counts.iter().all(|(q, count)| prometheus.scalar(q) == Some(*count as f64))
    });
    assert!(scraped, "Prometheus did not scrape the final counts");

    // Prometheus' histogram_quantile agrees with the p95 of the merged HDR histograms within
    // one bucket, and its counts are exact.
    let mut checked = 0;
    for ((cohort, name), (count, _, hdr)) in &totals.histograms {
        let (family, bounds): (&str, &[u64]) = match name.as_str() {
            "jitter_us" => ("stallwatch_jitter_seconds", &DELAY_BOUNDS_US),
            "first_frame_us" => ("stallwatch_first_frame_seconds", &FIRST_FRAME_BOUNDS_US),
            _ => continue,
        };
        let promql = format!("histogram_quantile(0.95, {family}_bucket{cohort})");
        let prom = prometheus.scalar(&promql).unwrap_or_else(|| panic!("no answer to {promql}"));
        let hdr_p95 = hdr.value_at_quantile(0.95) as f64 / 1e6;
        let (a, b) = (bucket_index(bounds, prom), bucket_index(bounds, hdr_p95));
        assert!(
            a.abs_diff(b) <= 1,
            "{promql}: Prometheus {prom} s (bucket {a}) vs HDR {hdr_p95} s (bucket {b})"
        );
        let prom_count = prometheus.scalar(&format!("{family}_count{cohort}"));
        assert_eq!(prom_count, Some(*count as f64), "{family}_count{cohort}");
        checked += 1;
    }
    assert!(checked >= 2 * cohorts.len(), "checked {checked} histograms");
}

#[test]
fn collector_crash_and_outage_lose_nothing_and_count_nothing_twice() {
    let _tolerant = load_tolerant();
    let agents = vec![
        FleetAgent::new("sea-4g-1", "sea", "4g", None, "360p15"),
        FleetAgent::new("latam-wifi-1", "latam", "wifi", None, "360p15"),
    ];
    // Reports every second: the outage below fills the spools in seconds, not minutes.
    let fleet = TestFleet::new("faults", agents, "8s", "6s", "1s");
    // A report counts as backfilled 5 s late instead of the production 30 s, so the outage
    // that makes 30 of them lasts 25 s instead of 42 (the product's threshold is the same
    // code either way).
    let mut config = std::fs::read_to_string(&fleet.files.config).unwrap();
    config.push_str("\n[ingest]\nbackfill_after = \"5s\"\n");
    std::fs::write(&fleet.files.config, config).unwrap();
    let mut collector = CollectorProcess::start(&fleet.files.config);
    let mut processes = fleet.start_agents(&collector);
    let reported = |c: &CollectorProcess| {
        let (_, a) = c.get("/api/v1/agents");
        fleet.spec.agents.iter().all(|x| a.contains(&format!("\"name\":\"{}\"", x.name)))
    };
    assert!(wait_until(Duration::from_secs(60), || reported(&collector)), "agents report");

    // kill -9 while reports arrive, then restart at once.
    assert!(accepted_at_least(&collector, 8), "reports keep arriving");
    collector.kill9();
    collector.restart();
    // The restarted collector takes reports, then stops cleanly for an outage in which the
    // probing agents spool at least 20 reports each, and which lasts long enough that at
    // least 30 spooled reports are older than the collector's 5 s backfill threshold when it
    // returns (3 agents, the relay's included, report every second: 3 x (25 - 5) = 60).
    assert!(accepted_at_least(&collector, 6), "the restarted collector takes reports");
    assert_eq!(collector.stop(), Some(0), "clean stop:\n{}", collector.log());
    let long_enough = Deadline::after(Duration::from_secs(25));
    let probing: Vec<usize> =
        (0..processes.len()).filter(|&i| fleet.labels_of(&processes[i].name).is_some()).collect();
    let spooled = |processes: &[AgentProcess]| -> usize {
        probing.iter().map(|&i| processes[i].spooled()).sum()
    };
    let filled = wait_until(Duration::from_secs(90), || {
        long_enough.remaining().is_zero() && spooled(&processes) >= 2 * 20
    });
    assert!(filled, "agents spooled only {} reports", spooled(&processes));
    collector.restart();
    // Backfill: every spool drains, in order, and live reports follow.
    let drained =
        wait_until(Duration::from_secs(60), || processes.iter().all(|p| p.spooled() <= 1));
    assert!(drained, "spools did not drain");
    let accepted = samples(&collector.get("/metrics").1)
        .get("stallwatch_collector_reports_accepted_total")
        .copied()
        .unwrap_or(0.0) as u64;
    assert!(accepted_at_least(&collector, accepted + 6), "live reports after the backfill");
    for p in &mut processes {
        assert_eq!(p.stop(), Some(0), "{} exits cleanly:\n{}", p.name, p.log());
        assert_eq!(p.spooled(), 0, "{} left reports unsent", p.name);
    }
    // Everything acknowledged is counted exactly once, across a crash, a restart and an
    // outage: the totals equal those of the reports the agents measured and delivered.
    let totals = archive_totals(&fleet, &processes);
    assert!(totals.reports > 60, "only {} reports archived", totals.reports);
    let (_, metrics) = collector.get("/metrics");
    let compared = assert_exposition_matches(&metrics, &totals);
    assert!(compared >= 20, "compared only {compared} values");
    // The collector counted the backfill.
    let backfilled = samples(&metrics)
        .iter()
        .filter(|(k, _)| k.starts_with("stallwatch_collector_reports_backfilled_total"))
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert!(backfilled >= 30.0, "backfilled {backfilled}");
}
