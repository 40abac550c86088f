//! README.md's demo command, as a user runs it.

use std::collections::BTreeMap;
use std::time::Duration;

use stallwatch_collector::demo::{DEGRADING_REGION, TROUBLED_COHORT};
use stallwatch_tests::demo::{DemoProcess, first_complete_summary};
use stallwatch_tests::fleet::wait_until;
use stallwatch_tests::{load_tolerant, scratch_dir};

use crate::{dashboards, webui};

/// Processes whose command line mentions `needle` (by /proc), other than this test's.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// 5 agents x 3 transports.
const COHORTS: usize = 15;

#[test]
fn demo_with_a_duration_stops_by_itself_leaving_nothing_behind() {
    let _tolerant = load_tolerant();
    let scratch = scratch_dir("e2e-demo-short");
    let dir = scratch.path().join("demo");
    let report = dir.with_extension("html");
    let mut demo =
        DemoProcess::start(&dir, &["--duration", "3s", "--report", report.to_str().unwrap()]);
    let code = demo.wait(Duration::from_secs(60));
    let stdout = demo.stdout();
    assert_eq!(code, Some(0), "demo --duration 3s:\n{}\n{stdout}", demo.stderr());
    assert!(stdout.contains("stopping the agents"), "{stdout}");
    // The report of a run too short for data is still written, and says so.
    let html = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(html.starts_with("<!doctype html>") && html.contains("me"), "{stdout}");
    assert!(stdout.contains(&format!("report      {}", report.display())), "{stdout}");
    assert_nothing_left(&dir);
}

/// No agent, relay or collector mentions the demo directory any more (its scratch directory
/// goes when the test drops it).
fn assert_nothing_left(dir: &std::path::Path) {
    let left = processes_mentioning(&dir.display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// An `alert +SECONDS  CHANGE  SUMMARY` line of the demo: when, the severity it reached, the
/// alert name and the region.
#[derive(Debug)]
struct AlertLine<'a> {
    secs: u64,
    severity: &'a str,
    alert: &'a str,
    region: &'a str,
    network_type: &'a str,
    text: &'a str,
}

fn alert_lines(stdout: &str) -> Vec<AlertLine<'_>> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("alert +")?;
            let (secs, rest) = rest.split_once("s  ")?;
            // CHANGE is `opened P2`, `P2 -> P1` or `resolved`; the summary follows two spaces.
            let (_, summary) = rest.split_once("  ")?;
            let mut words = summary.split_whitespace();
            let (severity, alert, scope) = (words.next()?, words.next()?, words.next()?);
            Some(AlertLine {
                secs: secs.parse().ok()?,
                severity,
                alert,
                region: scope.split('/').next()?,
                network_type: scope.split('/').nth(1)?,
                text: line,
            })
        })
        .collect()
}

/// README's first command as a user runs it, and the product tour's story as issue 11
/// accepts it: the URLs are printed; every cohort has data within a minute; the degrading
/// region (`me`, whose emulated loss and delay ramp up from 5 s) raises a P2 and then a P1,
/// and it alone is singled out as an outlier among its peers; Ctrl-C stops everything and
/// leaves its report with the incidents.
///
/// One demo for this and for two more checks that need a running demo with data, while it
/// goes on towards its P1: the shipped dashboards and rules against Prometheus scraping it
/// (`dashboards.rs`) and every web UI page in Chromium (`webui.rs`). A demo is the heaviest
/// process the tests start and takes a minute to have data; one demo instead of three took
/// about 90 s of two-at-a-time test time off the end-to-end run (BENCHMARKS.md). Each step
/// says on stderr when it starts, so a failure names its step.
///
/// The bound: within two minutes of start, a P2 and then a P1. The P2 (peer outlier)
/// comes when the first minute with data settles; the P1 when a second minute shows the loss,
/// since a threshold counts a minute before it settles once it breaches however it ends
/// (docs/alerts.md): the P1 comes 40-100 s after start on the idle machine, wherever in a
/// wall-clock minute the demo starts.
///
/// That the healthy cohorts raise nothing is the five-minute test's (below).
#[test]
fn demo_shows_every_cohort_feeds_the_dashboards_and_web_ui_then_a_p2_and_a_p1_and_stops_on_ctrl_c()
{
    let _tolerant = load_tolerant();
    let scratch = scratch_dir("e2e-demo");
    let dir = scratch.path().join("demo");
    // Prometheus and Alertmanager files: beside the demo's directory, which must be left
    // without processes mentioning it.
    let peers = dir.with_extension("peers");
    let alertmanager = dashboards::start_alertmanager(&peers.join("alertmanager"));
    let alertmanager_url = format!("http://{}", alertmanager.addr);
    // --duration only bounds a run whose P1 never comes.
    let mut demo =
        DemoProcess::start(&dir, &["--duration", "300s", "--alertmanager", &alertmanager_url]);
    let out = demo.stdout();
    for url in ["/metrics", "web UI", "/api/v1/alerts", "/api/v1/reports/me?from="] {
        assert!(out.contains(url), "{url} not printed:\n{out}");
    }

    eprintln!("step 1 of 3: every dashboard query and rule against Prometheus scraping the demo");
    dashboards::every_dashboard_query_and_rule_returns_data(&demo, &alertmanager, &peers);
    eprintln!("step 2 of 3: every web UI page in Chromium");
    webui::every_ui_page_renders_in_chromium_loading_nothing_from_elsewhere(&demo);
    eprintln!("step 3 of 3: every cohort within a minute, then a P2 and a P1 in me, then Ctrl-C");
    // Some live summary within a minute shows data for all fifteen cohorts (5 agents x 3
    // transports), none still waiting. (The steps above take longer than that; the demo's
    // own clock, printed on its summaries, says when.)
    let complete = wait_until(Duration::from_secs(75), || {
        first_complete_summary(&demo.stdout(), COHORTS).is_some()
    });
    let me_p1 = |stdout: &str| {
        alert_lines(stdout)
            .iter()
            .find(|a| a.region == "me" && a.alert == "StallwatchLoss" && a.severity != "P2")
            .map(|a| a.secs)
    };
    let raised = wait_until(Duration::from_secs(200), || me_p1(&demo.stdout()).is_some());
    let code = demo.interrupt();
    drop(alertmanager);
    let stdout = demo.stdout();
    assert!(complete, "no summary with data for all {COHORTS} cohorts:\n{stdout}");
    let secs = first_complete_summary(&stdout, COHORTS).unwrap();
    assert!(secs <= 60, "all {COHORTS} cohorts only after {secs} s:\n{stdout}");
    for region_type in ["sea/4g", "sea/3g", "latam/wifi", "eu/4g", "me/4g"] {
        assert!(stdout.contains(region_type), "{region_type} missing:\n{stdout}");
    }
    assert!(stdout.contains("  alerts: "), "no alert lines under the summaries:\n{stdout}");
    assert!(raised, "no P1 for the loss in me:\n{stdout}");
    let lines = alert_lines(&stdout);
    let p2 = lines.iter().find(|a| a.region == "me" && a.severity == "P2");
    let p2 = p2.unwrap_or_else(|| panic!("no P2 for me:\n{stdout}"));
    let p1 = me_p1(&stdout).unwrap();
    eprintln!("me: P2 at {} s ({}), P1 (loss) at {p1} s", p2.secs, p2.text);
    assert!(p2.secs < p1, "the P2 did not come first:\n{stdout}");
    assert!(p1 <= 120, "P1 only after {p1} s, not within two minutes:\n{stdout}");
    // The peer-outlier rule (a region far worse than the others on the same network type)
    // singles out me and no healthy region.
    let outliers: Vec<&AlertLine<'_>> =
        lines.iter().filter(|a| a.text.contains("other regions")).collect();
    assert!(outliers.iter().any(|a| a.region == "me"), "me is no outlier:\n{stdout}");
    for a in &outliers {
        assert_eq!(a.region, "me", "a healthy region is an outlier: {}", a.text);
    }
    assert_eq!(code, Some(0), "demo failed on Ctrl-C:\n{}\n{stdout}", demo.stderr());
    // Ctrl-C writes the report too, into --dir by default; it lists the incidents the
    // evaluator raised in me.
    assert!(stdout.contains("report      "), "{stdout}");
    let html = std::fs::read_to_string(dir.join("report-me.html")).unwrap_or_default();
    assert!(html.contains("StallwatchLoss"), "no loss incident in the report:\n{stdout}");
    assert_nothing_left(&dir);
}

/// Issue 11's last demo point in full: over a 5-minute run the healthy cohorts raise nothing.
/// The healthy cohorts are all but the degrading region and the demo's 3G cohort
/// (`TROUBLED_COHORT`: slow first frames, QUIC behind the stream; the demo says so at start).
/// Ignored by `cargo test` (it is five minutes long, and the end-to-end tests stay under five);
/// `scripts/test` runs it on its own after the suite. Before the player waited for late
/// repairs, two runs of three raised a `latam/wifi/udp` stall P1: a retransmission lost on one
/// of two lossy 90 ms legs cost a keyframe request and a 0.7 s stall (README demo section).
#[test]
#[ignore = "5 minutes: scripts/test runs it on its own after the suite"]
fn over_five_minutes_the_healthy_regions_raise_nothing() {
    let _tolerant = load_tolerant();
    let scratch = scratch_dir("e2e-demo-quiet");
    let dir = scratch.path().join("demo");
    let mut demo = DemoProcess::start(&dir, &["--duration", "5m"]);
    let code = demo.wait(Duration::from_secs(420));
    let stdout = demo.stdout();
    assert_eq!(code, Some(0), "demo --duration 5m:\n{}\n{stdout}", demo.stderr());
    let (troubled_region, troubled_network) = TROUBLED_COHORT;
    let healthy: Vec<&str> = alert_lines(&stdout)
        .iter()
        .filter(|a| a.region != DEGRADING_REGION)
        .filter(|a| (a.region, a.network_type) != (troubled_region, troubled_network))
        .map(|a| a.text)
        .collect();
    assert!(healthy.is_empty(), "the healthy regions raised:\n{}", healthy.join("\n"));
    // Issue 10's demo point: 4G and Wi-Fi stall under 1 % of play on every transport (the
    // last live summary: figures since the start).
    let mut last_summary = BTreeMap::new();
    for line in stdout.lines().filter(|l| l.starts_with("   ") && l.ends_with("% of play)")) {
        let cohort = line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let pct = line.rsplit_once('(').and_then(|(_, p)| p.split('%').next());
        let pct: f64 = pct.and_then(|p| p.trim().parse().ok()).unwrap_or(f64::NAN);
        last_summary.insert(cohort, pct);
    }
    let stalling: Vec<String> = last_summary
        .iter()
        .filter(|(cohort, _)| {
            let region = cohort.split('/').next().unwrap_or_default();
            let network = cohort.split(['/', ' ']).nth(1).unwrap_or_default();
            region != DEGRADING_REGION && (region, network) != (troubled_region, troubled_network)
        })
        .filter(|(_, pct)| pct.is_nan() || **pct >= 1.0)
        .map(|(cohort, pct)| format!("{cohort}: {pct} % of play"))
        .collect();
    assert!(last_summary.len() >= 15, "no full live summary:\n{stdout}");
    assert!(stalling.is_empty(), "healthy cohorts stalled:\n{}\n{stdout}", stalling.join("\n"));
    assert_nothing_left(&dir);
}
