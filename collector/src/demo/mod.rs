//! `stallwatch-collector demo`: a whole fleet on loopback, the product tour. It writes a
//! fleet CA, certificates and a config into a temporary directory, starts the collector in
//! this process and a relay agent plus probing agents (three healthy regions on emulated
//! network types, and one region whose emulated network degrades during the run) as real
//! `stallwatch-agent run` processes, prints the URLs, a live line per cohort with the open
//! alerts, and a line per alert change; on Ctrl-C or after `--duration` it stops everything
//! and writes the degrading region's report (HTML).
//!
//! - `fleet.rs`: the fleet's files (the end-to-end tests build their fleets with it too).
//! - `alerts.rs`: the demo's alert windows and its alert lines.
//! - `report.rs`: the closing report.

pub mod alerts;
pub mod fleet;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use stallwatch_proto::duration::{format_duration, parse_duration};
use stallwatch_proto::{Repair, Transport};
use tracing::{info, warn};

use crate::alerts::signals::NAMES;
use crate::clock;
use crate::reports::data::Counts as Merged;
use crate::series::{Cohort, SeriesStore};
use crate::store::{CohortFilter, CohortRow, HistoryStore, Resolution, SqliteStore};
use fleet::{FleetAgent, FleetSpec, RELAY_NAME, free_relay_port, write_fleet};

/// `demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. `60s`, `5m`); without it, run until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Directory for the CA, config, store, spools and agent logs [default: a new temporary
    /// directory, removed at the end unless --keep].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the directory at the end (to read the agents' logs or the store).
    #[arg(long)]
    pub keep: bool,
    /// The `stallwatch-agent` binary [default: the one next to this binary].
    #[arg(long, value_name = "FILE", env = "STALLWATCH_AGENT_BIN")]
    pub agent_bin: Option<PathBuf>,
    /// Seconds between the live summaries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub every: Duration,
    /// Also deliver the demo's alerts to this Alertmanager (base URL, e.g.
    /// `http://127.0.0.1:9093`); repeat for each replica.
    #[arg(long = "alertmanager", value_name = "URL")]
    pub alertmanagers: Vec<String>,
    /// Where to write the degrading region's report at the end [default: report-me.html in
    /// --dir, or stallwatch-demo-PID-me.html in the temporary directory].
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// The region whose network degrades during the demo.
pub const DEGRADING_REGION: &str = "me";

/// Its agents' emulation: a 4G link (the `4g` preset's delay, jitter and loss) on which, from
/// 5 s after the agent starts and over 20 s, random loss rises by 2 % and delay by 150 ms in
/// each direction, then stays there.
pub const DEGRADING_EMULATION: &str = "delay=45ms,jitter=10ms,loss=0.2%,ramp=5s/20s/2%/150ms";

/// A cohort the demo runs on a network too slow for a low-latency stream: 3G's round trip
/// (250 ms each way, 500 ms and more with its jitter, 1.2 Mbit/s) outlasts the 300 ms playout
/// delay. First frames take over 2 s on every transport. `udp` repairs by waiting for late
/// repairs and deepening its buffer (`simulate --emulate 3g --profile 360p15 --duration 5m`:
/// 5 rebuffers, stall ratio 0.3 %); the QUIC transports fall behind the stream there (a 5-minute
/// demo: 9-12 % loss, 11-22 % stall ratio). A real viewer there suffers too, so its alerts are
/// true; the demo says so at start, and the healthy cohorts are the others.
pub const TROUBLED_COHORT: (&str, &str) = ("sea", "3g");

/// The demo's agents: three regions on the published presets (DESIGN.md section 5
/// loss rates; healthy but for [`TROUBLED_COHORT`]), and [`DEGRADING_REGION`] on 4G, degrading. Three regions on 4G let the peer
/// outlier rule compare them.
pub fn demo_agents() -> Vec<FleetAgent> {
    vec![
        FleetAgent::new("sea-4g-1", "sea", "4g", Some("4g"), "360p30"),
        FleetAgent::new("sea-3g-1", "sea", "3g", Some("3g"), "360p15"),
        FleetAgent::new(
            "latam-wifi-1",
            "latam",
            "wifi",
            Some("delay=90ms,jitter=8ms,loss=0.3%"),
            "360p30",
        ),
        FleetAgent::new("eu-4g-1", "eu", "4g", Some("4g"), "360p30"),
        FleetAgent::new("me-4g-1", DEGRADING_REGION, "4g", Some(DEGRADING_EMULATION), "360p30"),
    ]
}

/// Region knowledge for the degrading region's report.
const DEMO_REPORTS_TOML: &str = r#"
[reports.regions.me]
name = "Middle East (the demo's degrading region)"
time_zone = "UTC+03:00"
notes = "In the demo, loss and delay on this region's emulated 4G rise from 5 s after start."
"#;

/// Runs the demo until Ctrl-C or `--duration`.
pub async fn run(args: DemoArgs) -> Result<()> {
    let agent_bin = match args.agent_bin.clone() {
        Some(bin) => bin,
        None => std::env::current_exe()?.with_file_name("stallwatch-agent"),
    };
    if !agent_bin.exists() {
        bail!(
            "{} not found: build both binaries first (`cargo build --release`), or pass --agent-bin",
            agent_bin.display()
        );
    }
    let (dir, temporary) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "stallwatch-demo-{}-{}",
                std::process::id(),
                clock::unix_ms()
            ));
            (dir, true)
        }
    };
    let report = match (&args.report, &args.dir) {
        (Some(file), _) => file.clone(),
        (None, Some(dir)) => dir.join(format!("report-{DEGRADING_REGION}.html")),
        (None, None) => std::env::temp_dir()
            .join(format!("stallwatch-demo-{}-{DEGRADING_REGION}.html", std::process::id())),
    };
    let result = run_in(&args, &agent_bin, &dir, &report).await;
    if temporary && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("kept {}", dir.display());
    }
    result
}

async fn run_in(args: &DemoArgs, agent_bin: &Path, dir: &Path, report: &Path) -> Result<()> {
    let start_ms = clock::unix_ms();
    let spec = FleetSpec {
        relay_agent: "relay-sea-1".into(),
        relay_region: "sea".into(),
        relay_port: free_relay_port()?,
        agents: demo_agents(),
        every: "20s",
        duration: "15s",
        report_interval: "5s",
        ingest: "127.0.0.1:0".into(),
        metrics: "127.0.0.1:0".into(),
    };
    let now =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(clock::unix_ms()) * 1_000_000)?;
    let files = write_fleet(dir, &spec, now)?;
    let mut config = std::fs::read_to_string(&files.config)?;
    config.push_str(alerts::DEMO_ALERTS_TOML);
    config.push_str(DEMO_REPORTS_TOML);
    if !args.alertmanagers.is_empty() {
        config
            .push_str(&format!("\n[alerts.delivery]\nalertmanagers = {:?}\n", args.alertmanagers));
    }
    std::fs::write(&files.config, config)?;
    let running = crate::server::start(&files.config).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let collector = format!("https://{}", running.ingest_addr);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut agents = Vec::new();
    for (name, bundle) in &files.bundles {
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let child = Command::new(agent_bin)
            .arg("run")
            .arg("--collector")
            .arg(&collector)
            .arg("--bundle")
            .arg(bundle)
            .arg("--state-dir")
            .arg(dir.join("agents").join(name))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", agent_bin.display()))?;
        agents.push(AgentProcess { name: name.clone(), child });
    }
    let mut regions: Vec<&str> = spec.agents.iter().map(|a| a.region.as_str()).collect();
    regions.dedup();
    println!(
        "stallwatch demo: a collector, relay {RELAY_NAME} (agent {}) and {} probing agents in \
         regions {} on loopback",
        spec.relay_agent,
        spec.agents.len(),
        regions.join(", ")
    );
    println!(
        "  region {DEGRADING_REGION} degrades during the run: its emulated 4G is \"{DEGRADING_EMULATION}\""
    );
    let (troubled_region, troubled_network) = TROUBLED_COHORT;
    println!(
        "  {troubled_region}/{troubled_network} is troubled, as a viewer there would be: 3G's 500 ms \
         round trip makes first frames take over 2 s, and QUIC falls behind the stream there \
         (loss and stalls); expect its alerts (the other cohorts are healthy)"
    );
    println!("  {}", alerts::DEMO_ALERTS_NOTE);
    let addr = running.metrics_addr;
    let planned_end = start_ms + args.duration.map_or(3_600_000, |d| d.as_millis() as u64);
    let (from, to) = report::period(start_ms, planned_end);
    println!("  metrics     http://{addr}/metrics");
    println!("  web UI      http://{addr}/");
    println!("  fleet JSON  http://{addr}/api/v1/agents");
    println!("  alerts API  http://{addr}/api/v1/alerts");
    println!(
        "  report API  http://{addr}/api/v1/reports/{DEGRADING_REGION}?from={from}&to={to}&format=html"
    );
    println!("  files       {} (agent logs in logs/)", dir.display());
    match args.duration {
        Some(d) => println!("running for {}; Ctrl-C stops earlier", format_duration(d)),
        None => println!("Ctrl-C stops the demo"),
    }
    let expected: Vec<Cohort> = spec
        .agents
        .iter()
        .flat_map(|a| {
            // The demo's plans leave repair out: each transport's default mode.
            Transport::ALL.map(|t| {
                Cohort::new(&a.region, &a.network_type, t.as_str(), RELAY_NAME)
                    .with_repair(Repair::for_transport(t, None).name())
            })
        })
        .collect();
    let started = clock::monotonic();
    let mut tick = tokio::time::interval(args.every);
    tick.tick().await;
    let mut alert_tick = tokio::time::interval(Duration::from_secs(1));
    let mut alert_log = alerts::AlertLog::default();
    let alerts = running.shared().alerts().cloned();
    let outcome = loop {
        let until_end = args.duration.map(|d| d.saturating_sub(crate::clock::since(started)));
        tokio::select! {
            _ = tick.tick() => {
                let p95s = read_p95s(&running.shared().live().config.storage.path, start_ms).await;
                print_summary(running.shared().series_store(), &p95s, &expected, crate::clock::since(started));
                if let Some(alerts) = &alerts {
                    alerts::print_open(alerts);
                }
                if let Some(exited) = agents.iter_mut().find_map(|a| a.exited()) {
                    break Err(anyhow::anyhow!("{exited}; see {}", logs.display()));
                }
            }
            _ = alert_tick.tick(), if alerts.is_some() => {
                if let Some(alerts) = &alerts {
                    alerts::print_changes(&mut alert_log, alerts, crate::clock::since(started));
                }
            }
            _ = tokio::time::sleep(until_end.unwrap_or(Duration::MAX)), if until_end.is_some() => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    println!("stopping the agents and the collector");
    stop_agents(&mut agents).await;
    let p95s = read_p95s(&running.shared().live().config.storage.path, start_ms).await;
    print_summary(running.shared().series_store(), &p95s, &expected, crate::clock::since(started));
    if let Some(alerts) = &alerts {
        alerts::print_open(alerts);
    }
    // Stopping saves the alert state the report reads its incidents from.
    running.stop().await;
    let (from, to) = report::period(start_ms, clock::unix_ms());
    match report::write(&files.config, DEGRADING_REGION, &from, &to, report) {
        Ok(incidents) => println!(
            "report      {} (region {DEGRADING_REGION}, {from} - {to}, {incidents} incidents)",
            report.display()
        ),
        Err(e) => {
            println!("report      not written: {e:#}");
            return outcome.and(Err(e));
        }
    }
    outcome
}

struct AgentProcess {
    name: String,
    child: Child,
}

impl AgentProcess {
    /// A description of how it ended, if it did.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("agent {} exited ({status})", self.name)),
            _ => None,
        }
    }
}

/// SIGTERM to every agent (they spool and send their last report), then SIGKILL for any
/// still running after 10 s.
async fn stop_agents(agents: &mut [AgentProcess]) {
    for agent in agents.iter() {
        let _ = Command::new("kill").arg("-TERM").arg(agent.child.id().to_string()).status();
    }
    let deadline = clock::monotonic() + Duration::from_secs(10);
    for agent in agents.iter_mut() {
        loop {
            match agent.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if clock::monotonic() >= deadline => {
                    warn!(agent = %agent.name, "agent did not stop in 10 s; killing it");
                    let _ = agent.child.kill();
                    let _ = agent.child.wait();
                    break;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    info!("agents stopped");
}

/// Exact p95s per cohort (first frame and jitter, µs) over minute rows: the stored HDR
/// histograms merged, not the exported classic buckets, whose interpolation reads a first-frame
/// p95 of 227 ms as 490 ms (issue 10). Histograms that do not decode are left out.
fn hdr_p95s(rows: &[CohortRow]) -> BTreeMap<Cohort, P95s> {
    let mut merged: BTreeMap<&Cohort, [Merged; 2]> = BTreeMap::new();
    for row in rows {
        let [first_frame, jitter] = merged.entry(&row.cohort).or_default();
        for (name, h) in [(NAMES.first_frame, first_frame), (NAMES.jitter, jitter)] {
            if let Some(Ok(sparse)) = row.histograms.get(name).map(|h| h.decode_sparse()) {
                h.add_sparse(&sparse);
            }
        }
    }
    merged
        .into_iter()
        .map(|(c, [first_frame, jitter])| {
            let p95s = P95s {
                first_frame_us: first_frame.quantile(0.95),
                jitter_us: jitter.quantile(0.95),
            };
            (c.clone(), p95s)
        })
        .collect()
}

/// A cohort's exact p95s, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct P95s {
    first_frame_us: Option<u64>,
    jitter_us: Option<u64>,
}

/// [`hdr_p95s`] of the store's minute rows since the demo started (its store is its own), read
/// on a connection of its own off the async workers; empty, with a warning, if it cannot be.
async fn read_p95s(path: &Path, start_ms: u64) -> BTreeMap<Cohort, P95s> {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        let store = SqliteStore::open(&path).map_err(|e| e.to_string())?;
        let from = start_ms / 60_000 * 60_000;
        let to = clock::unix_ms().saturating_add(60_000);
        let rows = store
            .rows(Resolution::Minute, from..to, &CohortFilter::default())
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(hdr_p95s(&rows))
    })
    .await;
    match read {
        Ok(Ok(p95s)) => p95s,
        Ok(Err(e)) => {
            warn!(error = %e, "demo: cannot read the history store for the p95s");
            BTreeMap::new()
        }
        Err(e) => {
            warn!(error = %e, "demo: reading the p95s failed");
            BTreeMap::new()
        }
    }
}

/// One line per cohort: what a viewer felt so far (p95s from `p95s`, the rest from `series`).
fn print_summary(
    series: &SeriesStore,
    p95s: &BTreeMap<Cohort, P95s>,
    expected: &[Cohort],
    elapsed: Duration,
) {
    let cohorts = series.read();
    let mut keys: Vec<&Cohort> = cohorts.keys().collect();
    for key in expected {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return;
    }
    keys.sort();
    println!("-- {:>4}s  {} cohorts", elapsed.as_secs(), keys.len());
    for key in keys {
        let name = format!(
            "{}/{} {} ({}) {}",
            key.region, key.network_type, key.transport, key.repair, key.target
        );
        let counter = |n: &str| cohorts.counter(key, n).unwrap_or(0);
        let first_frame = cohorts.histogram(key, "first_frame_us");
        let attempts = first_frame.as_ref().map_or(0, |h| h.count());
        let expected_packets = counter("packets_expected");
        if expected_packets == 0 && attempts == 0 {
            println!("   {name:<47} waiting for the first report");
            continue;
        }
        let exact = p95s.get(key).copied().unwrap_or_default();
        let ms = |us: Option<u64>| {
            us.map_or_else(|| "-".to_owned(), |us| format!("{:.0} ms", us as f64 / 1000.0))
        };
        let loss = if expected_packets > 0 {
            100.0 * counter("packets_lost") as f64 / expected_packets as f64
        } else {
            0.0
        };
        let (stall, play) = (counter("stall_time_ns") as f64, counter("play_time_ns") as f64);
        let stall_ratio = if stall + play > 0.0 { 100.0 * stall / (stall + play) } else { 0.0 };
        println!(
            "   {name:<47} first frame p95 {:>7}  jitter p95 {:>6}  loss {loss:5.2}%  stalls {:>3} ({stall_ratio:4.1}% of play)",
            ms(exact.first_frame_us),
            ms(exact.jitter_us),
            counter("stalls"),
        );
    }
}

#[cfg(test)]
mod tests {
    use stallwatch_proto::hdr;

    use super::*;
    use crate::store::StoredHistogram;

    fn row(cohort: &Cohort, start: u64, first_frames_us: &[u64]) -> CohortRow {
        let mut h = hdr::new_histogram();
        for &v in first_frames_us {
            h.record(v).unwrap();
        }
        let stored = StoredHistogram {
            hdr: hdr::encode(&h),
            sum: first_frames_us.iter().sum(),
            count: first_frames_us.len() as u64,
        };
        CohortRow {
            start_unix_ms: start,
            resolution: Resolution::Minute,
            cohort: cohort.clone(),
            histograms: [(NAMES.first_frame.to_owned(), stored)].into(),
            counters: BTreeMap::new(),
        }
    }

    /// The live lines' p95 is the merged HDR histograms' (what `hdrhistogram` says for all
    /// the values together), per cohort: not the classic buckets' interpolation (here
    /// 100-200 ms would sit in the 0.1-0.2 s bucket and read as anything in it), not an
    /// average of minutes.
    #[test]
    fn live_p95s_are_exact_over_merged_hdr_rows_per_cohort() {
        let udp = Cohort::new("sea", "4g", "udp", "relay").with_repair("nack");
        let unrepaired = udp.clone().with_repair("none");
        let minute_one: Vec<u64> = [&[100_000; 19][..], &[5_000_000]].concat();
        let minute_two = [227_000; 20];
        let rows = [
            row(&udp, 60_000, &minute_one),
            row(&udp, 120_000, &minute_two),
            row(&unrepaired, 60_000, &[900_000; 3]),
        ];
        let p95s = hdr_p95s(&rows);
        let mut all = hdr::new_histogram();
        for &v in minute_one.iter().chain(&minute_two) {
            all.record(v).unwrap();
        }
        assert_eq!(p95s[&udp].first_frame_us, Some(all.value_at_quantile(0.95)));
        assert!(p95s[&udp].first_frame_us.unwrap().abs_diff(227_000) < 227, "{p95s:?}");
        assert_eq!(p95s[&udp].jitter_us, None, "no jitter rows");
        // The unrepaired cohort is its own.
        let none = p95s[&unrepaired].first_frame_us.unwrap();
        assert!(none.abs_diff(900_000) < 900, "{p95s:?}");
    }
}
